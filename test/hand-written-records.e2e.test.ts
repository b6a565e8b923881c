// A session record that is no object (null, or a string), written by hand with `memory set --force` (repair by hand),
// through the built CLI: the commands that read the session's tasks and events pass over it, as `apex task show`
// reads a null task (not found). `task list`, `task claim` and `session report` failed with "Cannot read properties of
// null", and `start --continue` failed the session with it; `session history` and the report showed "undefined".
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Project, isAlive, procInfo, shellAgents, waitFor, type StatusJson } from "./fixtures/agents/harness.js";
import { runApex } from "./helpers/cli.js";
import { openStore } from "../core/store/open.js";

const config = shellAgents({ worker: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n  history: {}\n  archive: {}\n");

let project: Project | undefined;
afterEach(() => project?.cleanup());

describe("session records written by hand that are no object", () => {
  it("a null task and null or string events leave task list, claim, report, history and start --continue working", () => {
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    for (const title of ["broken", "kept"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    const force = (path: string, value: string) => expect(project!.apex(["memory", "set", path, value, "--force"]).status).toBe(0);
    force(`/sessions/${sid}/tasks/t-0001`, "null");
    force(`/sessions/${sid}/events/00000001`, "null");
    force(`/sessions/${sid}/events/00000002`, '"garbage"');

    const list = project.apex(["task", "list", "--json"]);
    expect(list.status, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as Array<{ id: string }>).map((task) => task.id)).toEqual(["t-0002"]);
    const claim = project.apex(["task", "claim", "--agent", "worker", "--json"]);
    expect(claim.status, claim.stderr).toBe(0);
    expect(JSON.parse(claim.stdout)).toMatchObject({ id: "t-0002", status: "active" });

    const report = project.apex(["session", "report"]);
    expect(report.status, report.stderr).toBe(0);
    expect(report.stdout).not.toMatch(/undefined|function|garbage/);
    expect(report.stdout).toContain("| t-0002 | kept | active | worker |");
    const history = project.apex(["session", "history", "last", "--json"]);
    expect(history.status, history.stderr).toBe(0);
    const events = (JSON.parse(history.stdout) as { events: Array<{ seq: number }> }).events;
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((event) => typeof event === "object" && event !== null && event.seq > 2)).toBe(true);
    expect(project.apex(["session", "history", "last"]).status).toBe(0);

    expect(project.apex(["stop"]).status).toBe(0);
    const continued = project.apex(["start", "--continue", "last", "--json"]);
    expect(continued.status, continued.stderr).toBe(0);
    expect(project.status().session).toMatchObject({ session_id: sid, status: "active" });

    // An export refuses it before writing, naming the record (it wrote the bundle, found that it did not read back,
    // and failed with APEX_E_INTERNAL, saying to report the archive plugin to its author).
    const file = join(project.dir, "s.apexbundle");
    const refused = project.apex(["session", "export", sid, "-o", file, "--json"]);
    expect([refused.status, JSON.parse(refused.stderr).error]).toEqual([1, expect.objectContaining({ code: "APEX_E_INTEGRITY", details: { session_id: sid, path: `/sessions/${sid}/tasks/t-0001` } })]);
    expect(JSON.parse(refused.stderr).error.message).toContain(`record /sessions/${sid}/tasks/t-0001 is not the task record of t-0001 (its id is null)`);
    expect(existsSync(file)).toBe(false);
    expect(project.apex(["memory", "delete", `/sessions/${sid}/tasks/t-0001`, "--force"]).status).toBe(0);
    const exported = project.apex(["session", "export", sid, "-o", file]);
    expect(exported.status, exported.stderr).toBe(0);
  });

  it("a null agent, milestone or event record of an ended session without task counts leaves agent list, milestone and the metrics of its next run working", async () => {
    // agent list and milestone failed with APEX_E_INTERNAL ("reading 'pgid'", "reading 'n'", and with no task counts kept,
    // a null task: "reading 'status'"); the metrics plugin warned at every sample and at the stop that it could not record them.
    project = new Project(config.replace("  history: {}", "  history: {}\n  metrics: {}"), "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    expect(project.apex(["task", "add", "broken"]).status).toBe(0);
    expect(project.apex(["milestone", "m1"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    for (const key of ["agents/worker", "milestones/0001", "tasks/t-0001", "events/00000002"]) {
      expect(project.apex(["memory", "set", `/sessions/${sid}/${key}`, "null", "--force"]).status).toBe(0);
    }
    // No task counts kept, as in a store older than them (memory delete refuses that, even with --force): they are scanned.
    const store = await openStore(join(project.dir, ".apex"));
    await store.batch((batch) => void batch.delete(`/sessions/${sid}/task-counts`));
    await store.close();
    for (const args of [["agent", "list"], ["milestone"], ["task", "list"]]) {
      const result = project.apex([...args, "--json"]);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      expect(JSON.parse(result.stdout)).toEqual([]);
    }
    expect(project.apex(["start", "--continue", "last"]).status).toBe(0);
    const agents = project.apex(["agent", "list", "--json"]);
    expect(agents.status, agents.stderr).toBe(0);
    expect(JSON.parse(agents.stdout)).toEqual([expect.objectContaining({ name: "worker", status: "running" })]);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(readFileSync(join(project.dir, ".apex", "supervisor.log"), "utf8")).not.toContain("Cannot read properties");
  });

  it("an ended session's record written null leaves the other commands working, and the session reconstructed from it continues", () => {
    // Every command that reads the ended sessions (status, task list, session list, logs, start --continue) failed with
    // APEX_E_INTERNAL "Cannot read properties of null"; the session reconstructed from it had no agents, and its continue
    // failed with "record.agents is not iterable".
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    expect(project.apex(["task", "add", "kept"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["memory", "set", `/sessions/history/${sid}`, "null", "--force"]).status).toBe(0);
    for (const args of [["status"], ["session", "list"], ["session", "history"]]) {
      const result = project.apex([...args, "--json"]);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
    }
    const reconstructed = project.apex(["session", "reconstruct", sid, "--json"]);
    expect(reconstructed.status, reconstructed.stderr).toBe(0);
    const rebuilt = (JSON.parse(reconstructed.stdout) as { session_id: string }).session_id;
    const continued = project.apex(["start", "--continue", rebuilt, "--json"]);
    expect(continued.status, continued.stderr).toBe(0);
    expect(project.status().session).toMatchObject({ session_id: rebuilt, status: "active" });
    const tasks = project.apex(["task", "list", "--json"]);
    expect((JSON.parse(tasks.stdout) as Array<{ title: string }>).map((task) => task.title)).toEqual(["kept"]);
  });

  it("a forced write that would leave a session's id sequences or task counts unusable is refused, even with --force, and a later task keeps its own id", () => {
    // With its counters written null, {} or deleted, the next task was numbered t-0001 and replaced that task (held by an
    // agent or not), and the next event the first of the audit trail; task counts that are no numbers failed every task change.
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    for (const title of ["first", "second"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    const counters = `/sessions/${sid}/counters`;
    const taskCounts = `/sessions/${sid}/task-counts`;
    const attempts: Array<[string[], string | undefined]> = [
      [["memory", "set", counters, "null", "--force", "--json"], undefined],
      [["memory", "set", counters, "{}", "--force", "--json"], undefined],
      [["memory", "set", counters, '{"tasks": 0, "milestones": 0, "events": -1}', "--force", "--json"], undefined],
      [["memory", "delete", counters, "--force", "--json"], undefined],
      [["memory", "import", "-", "--force", "--json"], JSON.stringify({ [counters]: null })],
      [["memory", "set", taskCounts, '{"pending": "x"}', "--force", "--json"], undefined],
      [["memory", "delete", taskCounts, "--force", "--json"], undefined],
    ];
    for (const [args, input] of attempts) {
      const result = input === undefined ? project.apex(args) : runApex(args, { cwd: project.dir, input });
      expect([result.status, JSON.parse(result.stderr).error], args.join(" ")).toEqual([2, expect.objectContaining({ code: "APEX_E_BAD_INPUT", details: { path: args[2] === "-" ? counters : args[2] } })]);
      expect(JSON.parse(result.stderr).error.message).toContain("refused, even with --force");
    }
    const added = project.apex(["task", "add", "third", "--json"]);
    expect(JSON.parse(added.stdout)).toMatchObject({ id: "t-0003", title: "third" });
    expect((JSON.parse(project.apex(["task", "list", "--json"]).stdout) as Array<{ id: string; title: string }>).map(({ id, title }) => [id, title])).toEqual([["t-0001", "first"], ["t-0002", "second"], ["t-0003", "third"]]);
    // A repair of the record's shape is still written, with the warning --force gives.
    const repaired = project.apex(["memory", "set", counters, '{"tasks": 10, "milestones": 0, "events": 100}', "--force"]);
    expect([repaired.status, repaired.stderr]).toEqual([0, expect.stringContaining("warning: memory set --force writes")]);
    expect(JSON.parse(project.apex(["task", "add", "fourth", "--json"]).stdout)).toMatchObject({ id: "t-0011" });
  });

  it("id sequences set below the ids a session has (a repair of the right shape, or a rewind) never make a new task, milestone or event replace one", async () => {
    // It was: with {"tasks": 0, "milestones": 0, "events": 0} written by hand, the next task took t-0001's id and replaced
    // that task, the next milestone replaced milestone 1, and the next event the first of the audit trail.
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    for (const title of ["first", "second"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    expect(project.apex(["milestone", "m1"]).status).toBe(0);
    const before = (JSON.parse(project.apex(["session", "history", "last", "--json"]).stdout) as { events: Array<{ seq: number; type: string }> }).events;
    expect(project.apex(["memory", "set", `/sessions/${sid}/counters`, '{"tasks": 0, "milestones": 0, "events": 0}', "--force"]).status).toBe(0);

    expect(JSON.parse(project.apex(["task", "add", "third", "--json"]).stdout)).toMatchObject({ id: "t-0003", title: "third" });
    expect((JSON.parse(project.apex(["task", "list", "--json"]).stdout) as Array<{ id: string; title: string }>).map(({ id, title }) => [id, title])).toEqual([["t-0001", "first"], ["t-0002", "second"], ["t-0003", "third"]]);
    expect(project.apex(["milestone", "m2"]).status).toBe(0);
    const milestones = JSON.parse(project.apex(["milestone", "--json"]).stdout) as Array<{ n: number; text: string }>;
    expect(milestones.map(({ n, text }) => [n, text])).toEqual([[1, "m1"], [2, "m2"]]);
    const after = (JSON.parse(project.apex(["session", "history", "last", "--json"]).stdout) as { events: Array<{ seq: number; type: string }> }).events;
    // Every event recorded before is still there as it was, and the new ones come after the last of them.
    expect(after.slice(0, before.length)).toEqual(before);
    expect(after.slice(before.length).map((event) => event.type)).toEqual(expect.arrayContaining(["task.added", "milestone"]));
    expect(after.slice(before.length).every((event) => event.seq > before[before.length - 1]!.seq)).toBe(true);
    const counters = JSON.parse(project.apex(["memory", "show", `/sessions/${sid}/counters`, "--json"]).stdout).value as { tasks: number; milestones: number; events: number };
    expect(counters).toMatchObject({ tasks: 3, milestones: 2, events: after[after.length - 1]!.seq });
  });

  it("session validate names a task, agent or session record that is no object, repair removes the task and agent ones, and reconstruct says the session record was not one", () => {
    // validate said the store was valid, though export and archive refuse such a session with APEX_E_INTEGRITY naming the
    // record; reconstruct said "Nothing is missing" of a session whose record was null.
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    for (const title of ["broken", "kept", "renamed"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    const task = `/sessions/${sid}/tasks/t-0001`;
    const agent = `/sessions/${sid}/agents/worker`;
    const renamed = `/sessions/${sid}/tasks/t-0003`;
    expect(project.apex(["memory", "set", task, "null", "--force"]).status).toBe(0);
    expect(project.apex(["memory", "set", agent, '"garbage"', "--force"]).status).toBe(0);
    expect(project.apex(["memory", "set", renamed, '{"id": "t-0009", "title": "renamed", "status": "pending"}', "--force"]).status).toBe(0);

    const validated = project.apex(["session", "validate", "--json"]);
    expect(validated.status, validated.stderr).toBe(1);
    const problems = (JSON.parse(validated.stdout) as { problems: Array<{ code: string; path?: string; message: string }> }).problems;
    expect(problems.map(({ code, path }) => [code, path]).sort()).toEqual([["record-malformed", renamed], ["record-no-object", agent], ["record-no-object", task]]);
    expect(problems.find((problem) => problem.path === task)!.message).toContain(`record ${task} is not the task record of t-0001 (its id is null)`);
    expect(problems.find((problem) => problem.path === renamed)!.message).toContain(`apex memory delete ${renamed} --force`);
    const text = project.apex(["session", "validate"]);
    expect(text.stdout).toContain("record-no-object");

    const repaired = project.apex(["session", "repair", "--json"]);
    const actions = (JSON.parse(repaired.stdout) as { actions: Array<{ action: string; target: string }> }).actions;
    expect(actions.map(({ action, target }) => [action, target]).sort()).toEqual([["remove-record", agent], ["remove-record", task]]);
    expect(repaired.status).toBe(1); // the renamed task is left to be mended by hand
    expect(project.apex(["memory", "show", task]).status).not.toBe(0);
    const counts = project.apex(["memory", "show", `/sessions/${sid}/task-counts`, "--json"]);
    expect(JSON.parse(counts.stdout).value).toMatchObject({ pending: 2, total: 2 }); // kept and renamed
    const left = project.apex(["session", "validate"]);
    expect([left.status, left.stdout]).toEqual([1, expect.stringContaining("hint: repair leaves these records as they are")]);
    expect(project.apex(["memory", "delete", renamed, "--force"]).status).toBe(0);
    expect(project.apex(["session", "validate"]).status).toBe(0);

    expect(project.apex(["memory", "set", `/sessions/history/${sid}`, "null", "--force"]).status).toBe(0);
    const session = project.apex(["session", "validate", "--json"]);
    expect(session.status).toBe(1);
    expect((JSON.parse(session.stdout) as { problems: Array<{ code: string; path?: string; message: string }> }).problems).toEqual([
      expect.objectContaining({ code: "record-malformed", path: `/sessions/history/${sid}`, message: expect.stringContaining(`apex session reconstruct ${sid}`) }),
    ]);
    const reconstructed = project.apex(["session", "reconstruct", sid]);
    expect(reconstructed.status, reconstructed.stderr).toBe(0);
    expect(reconstructed.stdout).not.toContain("Nothing is missing");
    expect(reconstructed.stdout).toContain(`The session record /sessions/history/${sid} is not an object (it is null)`);
  });


  it("a running session's record written as a string while its supervisor runs: pause and resume say so, not 'The session is undefined', and stop ends it", async () => {
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    const agent = await waitFor("the agent", () => project!.status().agents.find((one) => one.pid !== null));
    const started = procInfo(agent.pid!)!.startTime;
    expect(project.apex(["memory", "set", `/sessions/${sid}`, '"x"', "--force"]).status).toBe(0);
    for (const action of ["pause", "resume"]) {
      const refused = project.apex([action, "--json"]);
      expect(refused.status).toBe(4);
      expect(JSON.parse(refused.stderr).error).toMatchObject({
        code: "APEX_E_SESSION_STATE",
        message: `The session is of no known status (its record, written by hand, has none); it cannot ${action}.`,
        hint: "`apex stop` ends it.",
        details: { session_id: sid, status: null },
      });
    }
    expect(project.apex(["stop"]).status).toBe(0);
    await waitFor("the agent to end", () => !isAlive(agent.pid!, started));
  });

  it("a running agent's record written by hand as no object is made whole again by its supervisor (pause, resume, stop): it was spread into an object without a name, which validate reports and repair leaves", async () => {
    project = new Project(config, "apex-hand-records-");
    const sid = project.start(["--task", "records"]).session_id;
    await waitFor("the agent", () => project!.status().agents.find((one) => one.pid !== null));
    const agent = `/sessions/${sid}/agents/worker`;
    // An agent's own report through its supervisor too: it spread the string as the others did.
    expect(project.apex(["memory", "set", agent, '"garbage"', "--force"]).status).toBe(0);
    const reported = project.apex(["agent", "report", "--agent", "worker", "--status", "reviewing"]);
    expect(reported.status, reported.stderr).toBe(0);
    const afterReport = JSON.parse(project.apex(["memory", "show", agent]).stdout);
    expect(afterReport).toMatchObject({ name: "worker", reported_status: "reviewing", command: expect.any(String) });
    expect(Object.keys(afterReport)).not.toContain("0");
    for (const [value, action] of [['"garbage"', "pause"], ["[1, 2]", "resume"], ['"garbage"', "stop"]] as const) {
      expect(project.apex(["memory", "set", agent, value, "--force"]).status).toBe(0);
      const done = project.apex([action]);
      expect(done.status, done.stderr).toBe(0);
      const record = JSON.parse(project.apex(["memory", "show", agent]).stdout);
      expect(record).toMatchObject({ name: "worker", status: { pause: "paused", resume: "running", stop: "stopped" }[action], command: expect.any(String) });
      expect(Object.keys(record)).not.toContain("0");
    }
    const validated = project.apex(["session", "validate", "--json"]);
    expect(validated.status, validated.stdout).toBe(0);
  });

  for (const [what, value, shown] of [
    ["a string", '"x"', "is a string, not an object"],
    ["null", "null", "is null, not an object"],
    ["an object without its fields", "{}", "has no session id of its own"],
  ] as const) {
    it(`a running session's record written as ${what} after its supervisor was killed: status shows its agents, start names it, stop ends them and frees the tree`, async () => {
      // It was: status "Session unknown unknown" with no agent (null: "No session is active"), start "Session undefined is
      // undefined", and stop APEX_E_INTERNAL ("reading 'history'"), the agents left running with nothing to end them.
      project = new Project(config, "apex-hand-records-");
      const ready = project.start(["--task", "records"]);
      const sid = ready.session_id;
      const agent = await waitFor("the agent", () => project!.status().agents.find((one) => one.pid !== null));
      const started = procInfo(agent.pid!)!.startTime;
      process.kill(ready.supervisor_pid, "SIGKILL");
      await waitFor("the supervisor to exit", () => !isAlive(ready.supervisor_pid));
      expect(project.apex(["memory", "set", `/sessions/${sid}`, value, "--force"]).status).toBe(0);

      const status = project.apex(["status", "--json"]);
      expect(status.status, status.stderr).toBe(0);
      const report = JSON.parse(status.stdout) as StatusJson & { warnings: string[] };
      expect(report.session).toMatchObject({ session_id: sid });
      expect(report.agents).toEqual([expect.objectContaining({ name: "worker", pid: agent.pid, alive: true })]);
      expect(report.warnings).toEqual([expect.stringContaining(`the record of session ${sid} is not one APEX can read`)]);
      expect(report.warnings[0]).toContain("`apex stop` ends what runs of it");

      for (const args of [["start", "--task", "another"], ["start", "--task", "another", "--json"]]) {
        const refused = project.apex(args);
        expect(refused.status).toBe(4);
        expect(refused.stderr).toContain(`Session ${sid} is listed as running (its record cannot be read) in the project's working tree`);
        expect(refused.stderr).not.toContain("undefined");
      }

      const stopped = project.apex(["stop", "--json"]);
      expect(stopped.status, stopped.stderr).toBe(0);
      expect(JSON.parse(stopped.stdout)).toMatchObject({ session_id: sid, status: "stopped" });
      expect(stopped.stderr).toContain(`the record of session ${sid} (/sessions/${sid}) ${shown}: it was moved to the ended sessions as it is`);
      await waitFor("the agent to end", () => !isAlive(agent.pid!, started));
      // The record moved as it was (an object gets the stop's fields), and the tree is free for the next session.
      const moved = JSON.parse(project.apex(["memory", "show", `/sessions/history/${sid}`, "--json"]).stdout).value;
      if (value === "{}") expect(moved).toMatchObject({ status: "stopped" });
      else expect(moved).toEqual(JSON.parse(value));
      const store = await openStore(join(project.dir, ".apex"), { readOnly: true });
      expect([store.get(`/sessions/${sid}`), (store.get("/sessions/active") as Record<string, unknown> | undefined)?.[sid]]).toEqual([undefined, undefined]);
      await store.close();
      const next = project.start(["--task", "next"]);
      expect(next.session_id).not.toBe(sid);
      expect(project.apex(["stop"]).status).toBe(0);
    });
  }
});

describe("JSON options given with a byte order mark", () => {
  it("agent report --context and task done --result drop a leading byte order mark, as memory set does", () => {
    // --context was refused ("Unexpected token '\ufeff'", the character invisible), and --result kept the JSON as text.
    project = new Project(config, "apex-hand-records-");
    project.start(["--task", "bom"]);
    const report = project.apex(["agent", "report", "--agent", "worker", "--context", '\ufeff{"step": 3}', "--json"]);
    expect(report.status, report.stderr).toBe(0);
    expect(project.apex(["task", "add", "with a result"]).status).toBe(0);
    const done = project.apex(["task", "done", "t-1", "--result", '\ufeff{"ok": true}', "--json"]);
    expect(done.status, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ id: "t-0001", result: { ok: true } });
    const context = project.apex(["memory", "show", `/sessions/${project.status().session!.session_id}/agents/worker.context`, "--json"]);
    expect(JSON.parse(context.stdout).value).toEqual({ step: 3 });
  });
});
