// Tasks and milestones through the real CLI and socket: atomic claims under concurrency,
// the agent-facing commands (which never touch LMDB), hooks, and the idle timeout.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { callSupervisor } from "../dist/core/rpc/call.js";
import { FIXTURES, Project, events, isAlive, nodeAgent, waitFor } from "./fixtures/agents/harness.js";
import { slowHooksProject } from "./support/slow-hooks.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const idle = ["  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");

function readLines(file: string): Array<Record<string, unknown>> {
  try {
    return readFileSync(file, "utf8").trim().split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
  } catch {
    return [];
  }
}

describe("tasks", () => {
  it("two agents claiming concurrently (2 × 50 claims over 100 tasks) get every task exactly once", async () => {
    project = new Project(["agents:", nodeAgent("c1", "claimer.mjs", { args: ["50"] }), nodeAgent("c2", "claimer.mjs", { args: ["50"] }), "plugins: {}", ""].join("\n"));
    const ready = project.start();
    // 100 tasks, pipelined over the socket.
    await Promise.all(Array.from({ length: 100 }, (_, i) => callSupervisor(ready.socket, "task.add", { title: `task ${i + 1}`, actor: "user:test" })));
    expect(project.status().tasks).toMatchObject({ pending: 100, total: 100 });
    await callSupervisor(ready.socket, "memory.set", { path: "/test/go", value: true, actor: "user:test" });

    const claimedBy = await waitFor(
      "both claimers to finish",
      () => {
        const logs = ["c1", "c2"].map((agent) => readFileSync(join(project!.storeDir, "logs", ready.session_id, `${agent}.log`), "utf8"));
        if (!logs.every((log) => /claimed \d+/.test(log))) return undefined;
        return logs.map((log) => log.split("\n").filter((line) => /^t-\d+$/.test(line)));
      },
      60_000,
    );
    expect(claimedBy.map((ids) => ids.length)).toEqual([50, 50]);
    const all = claimedBy.flat();
    expect(new Set(all).size).toBe(100);

    const tasks = JSON.parse(project.apex(["task", "list", "--json"]).stdout) as Array<{ id: string; status: string; assignee: string }>;
    expect(tasks).toHaveLength(100);
    for (const task of tasks) {
      expect(task.status).toBe("completed");
      expect(claimedBy[task.assignee === "c1" ? 0 : 1]).toContain(task.id);
    }
    const claims = events(project, ready.session_id).filter((event) => event.type === "task.claimed");
    expect(claims).toHaveLength(100);
    expect(new Set(claims.map((event) => event.task)).size).toBe(100);
    expect(project.status().tasks).toEqual({ pending: 0, active: 0, completed: 100, failed: 0, total: 100 });
  });

  it("agent-facing commands go through the socket: they work with APEX_HOME pointing nowhere", async () => {
    project = new Project("");
    const out = join(project.dir, "agent-cli.json");
    project.writeConfig(["agents:", nodeAgent("one", "agent-cli.mjs", { env: { APEX_TEST_OUT: out } }), "plugins: {}", ""].join("\n"));
    const ready = project.start();
    const results = await waitFor("the agent's results", () => {
      try {
        return JSON.parse(readFileSync(out, "utf8")) as Record<string, { ok: boolean; out?: string; err?: string; status?: number }>;
      } catch {
        return undefined;
      }
    }, 60_000);
    for (const [name, result] of Object.entries(results)) expect(result.ok, `${name}: ${result.err}`).toBe(true);
    expect(JSON.parse(results.add!.out!)).toMatchObject({ id: "t-0001", created_by: "agent:one" });
    expect(JSON.parse(results.claim!.out!)).toMatchObject({ id: "t-0001", status: "active", assignee: "one" });
    expect(JSON.parse(results.report!.out!)).toMatchObject({ reported_status: "busy", task: "t-0001" });
    expect(JSON.parse(results.show!.out!)).toEqual({ path: "/agent/note", value: { hello: "world" } });
    expect(JSON.parse(results.status!.out!).session.session_id).toBe(ready.session_id);
    const watched = results.watch!.out!.trim().split("\n").map((line) => JSON.parse(line));
    expect(watched).toEqual([expect.objectContaining({ kind: "put", path: "/agent/note", value: { hello: "world" }, actor: "agent:one" })]);
    // Without --since, the current values come first, read through the supervisor too.
    const current = results.watchCurrent!.out!.trim().split("\n").map((line) => JSON.parse(line));
    expect(current).toEqual([expect.objectContaining({ kind: "current", path: "/agent/note", value: { hello: "world" } })]);
    expect(JSON.parse(results.export!.out!)).toEqual({ "/agent/note": { hello: "world" } });
    // What the agent wrote is in the store, by the agent.
    const context = JSON.parse(project.apex(["memory", "show", `/sessions/${ready.session_id}/agents/one.context`, "--json"]).stdout);
    expect(context.value).toEqual({ step: 7 });
    expect(JSON.parse(project.apex(["milestone", "--json"]).stdout)).toEqual([expect.objectContaining({ n: 1, text: "agent milestone", by: "agent:one" })]);
  });

  it("add, claim, done, fail, reopen and milestones from the CLI, with their hooks", async () => {
    project = new Project("");
    const hookLog = join(project.dir, "hooks.jsonl");
    project.writeConfig(
      [
        "agents:",
        idle,
        "  other:",
        "    command: sh",
        `    args: ["-c", "while true; do sleep 0.5; done"]`,
        "plugins:",
        `  ${JSON.stringify(join(FIXTURES, "hook-recorder.mjs"))}:`,
        `    file: ${JSON.stringify(hookLog)}`,
        `    veto: "forbidden work"`,
        "",
      ].join("\n"),
    );
    project.start();
    await waitFor("onStart", () => readLines(hookLog).some((line) => line.hook === "onStart"));

    const add = (args: string[]) => JSON.parse(project!.apex(["task", "add", ...args, "--json"]).stdout) as { id: string };
    expect(add(["Write the login form", "--milestone"]).id).toBe("t-0001");
    expect(add(["Only for other", "--assign", "other"]).id).toBe("t-0002");
    expect(add(["forbidden work"]).id).toBe("t-0003");

    // idle gets t-0001 (t-0002 is other's); other gets its own t-0002 first.
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0001", status: "active", assignee: "idle" });
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "other", "--json"]).stdout)).toMatchObject({ id: "t-0002", assignee: "other" });
    // beforeTask can veto an assignment: the claim fails, the task stays pending.
    const vetoed = project.apex(["task", "claim", "--agent", "idle"]);
    expect(vetoed.status).toBe(1);
    expect(vetoed.stderr).toContain("vetoed t-0003");
    expect(JSON.parse(project.apex(["task", "show", "t-3", "--json"]).stdout)).toMatchObject({ status: "pending", assignee: null });

    // A result with a key given twice is refused, the task left as it was (JSON.parse kept the last value).
    const twice = project.apex(["task", "done", "t-0001", "--result", '{"files": [], "files": ["login.ts"]}']);
    expect(twice.status).toBe(2);
    expect(twice.stderr).toContain('--result has the key "files" twice, at /files in it');
    expect(JSON.parse(project.apex(["task", "show", "t-0001", "--json"]).stdout)).toMatchObject({ status: "active" });
    const done = project.apex(["task", "done", "t-0001", "--result", '{"files": ["login.ts"]}', "--json"]);
    expect(JSON.parse(done.stdout)).toMatchObject({ status: "completed", result: { files: ["login.ts"] } });
    expect(project.apex(["task", "done", "t-0001"]).status).toBe(4);
    expect(project.apex(["task", "fail", "t-0002", "--reason", "tests do not pass"]).status).toBe(0);
    const reopened = JSON.parse(project.apex(["task", "reopen", "t-0002", "--reason", "try again", "--json"]).stdout);
    expect(reopened).toMatchObject({ status: "pending", reopened: 1, assignee: null, reason: "try again" });
    expect(project.apex(["milestone", "Login works end to end"]).stdout).toContain("milestone 2: Login works end to end");
    // Without text, --task lists that task's milestones (it was read by nothing: every milestone was listed).
    expect((JSON.parse(project.apex(["milestone", "--task", "t-1", "--json"]).stdout) as Array<{ text: string }>).map((item) => item.text)).toEqual(["Write the login form"]);

    expect(project.apex(["task", "show", "t-0099"]).status).toBe(3);
    expect(project.apex(["task", "claim", "--agent", "ghost"]).status).toBe(3);
    expect(project.apex(["task", "list", "--status", "bogus"]).status).toBe(2);
    const pending = JSON.parse(project.apex(["task", "list", "--status", "pending", "--json"]).stdout);
    expect(pending.map((task: { id: string }) => task.id)).toEqual(["t-0002", "t-0003"]);
    // In any case, as names are elsewhere (it was refused as an unknown status).
    const upper = project.apex(["task", "list", "--status", "PENDING", "--json"]);
    expect([upper.status, upper.stderr]).toEqual([0, ""]);
    expect(JSON.parse(upper.stdout)).toEqual(pending);
    expect(project.apex(["task", "list", "--status", "Completed"]).stdout).toMatch(/t-0001\s+completed/);
    expect(project.status().tasks).toEqual({ pending: 2, active: 0, completed: 1, failed: 0, total: 3 });
    expect(project.apex(["task", "list"]).stdout).toMatch(/t-0001\s+completed\s+idle\s+Write the login form \[milestone\]/);

    expect(project.apex(["pause"]).status).toBe(0);
    expect(project.apex(["resume"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);

    const hooks = readLines(hookLog);
    const names = hooks.map((line) => line.hook);
    // beforeTask fires before each assignment (and the vetoed one).
    expect(hooks.filter((line) => line.hook === "beforeTask").map((line) => [line.task, line.agent])).toEqual([
      ["t-0001", "idle"],
      ["t-0002", "other"],
      ["t-0003", "idle"],
    ]);
    expect(hooks.filter((line) => line.hook === "afterMilestone").map((line) => [line.milestone, line.taskId ?? null])).toEqual([
      ["Write the login form", "t-0001"],
      ["Login works end to end", null],
    ]);
    expect(hooks.filter((line) => line.hook === "onError").map((line) => line.message)).toContainEqual(expect.stringContaining("t-0002 (Only for other) failed: tests do not pass"));
    expect(names.indexOf("onPause")).toBeLessThan(names.indexOf("onResume"));
    expect(hooks.find((line) => line.hook === "onPause")).toMatchObject({ status: "active" });
    expect(hooks.find((line) => line.hook === "onStop")).toMatchObject({ reason: "stopped by the user" });
    // Every hook ran in the supervisor process, the one writer.
    expect(new Set(hooks.map((line) => line.pid)).size).toBe(1);
  });

  it("a task whose agent exits, crashes or is restarted while holding it goes back to pending, and another agent claims it", async () => {
    // quitter claims and, once crasher holds the other task, exits 3 (never restarted); crasher claims and is killed with SIGKILL, then restarted by policy (and claims nothing more).
    const wait = "until [ -e go ]; do sleep 0.1; done";
    project = new Project(
      [
        "agents:",
        idle,
        "  quitter:",
        "    command: sh",
        `    args: ["-c", ${JSON.stringify(`${wait}; apex task claim --json > quitter.part && mv quitter.part quitter.json; until [ -e crasher.json ]; do sleep 0.1; done; exit 3`)}]`,
        "    restart: never",
        "  crasher:",
        "    command: sh",
        `    args: ["-c", ${JSON.stringify(`[ -e crasher.json ] && exec sleep 60; ${wait}; apex task claim --json > crasher.part && mv crasher.part crasher.json; exec sleep 60`)}]`,
        "    restart: on-failure",
        "    restart_delay: 0.2",
        "plugins: {}",
        "",
      ].join("\n"),
    );
    project.start();
    for (const title of ["first", "second"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    writeFileSync(join(project.dir, "go"), "");
    const crasher = await waitFor("both claims", () => {
      const agent = project!.status().agents.find((entry) => entry.name === "crasher");
      return ["crasher", "quitter"].every((name) => existsSync(join(project!.dir, `${name}.json`))) && agent?.pid ? agent.pid : undefined;
    });
    process.kill(crasher, "SIGKILL");
    const held = (name: string) => (JSON.parse(readFileSync(join(project!.dir, `${name}.json`), "utf8")) as { id: string }).id;
    const [quitterTask, crasherTask] = [held("quitter"), held("crasher")];
    expect(new Set([quitterTask, crasherTask]).size).toBe(2);

    const released = await waitFor("both tasks back to pending", () => {
      const tasks = JSON.parse(project!.apex(["task", "list", "--json"]).stdout) as Array<{ id: string; status: string; assignee: string | null; reason: string | null }>;
      return tasks.every((task) => task.status === "pending") && tasks;
    });
    expect(released.find((task) => task.id === quitterTask)).toMatchObject({ assignee: null, reason: "quitter exited with code 3 while holding it" });
    expect(released.find((task) => task.id === crasherTask)).toMatchObject({ assignee: null, reason: "crasher was killed by SIGKILL while holding it" });
    const status = project.status();
    expect(status.tasks).toEqual({ pending: 2, active: 0, completed: 0, failed: 0, total: 2 });
    for (const name of ["quitter", "crasher"]) expect(status.agents.find((agent) => agent.name === name)).toMatchObject({ task: null });
    expect(project.apex(["session", "history", "last"]).stdout).toContain(`quitter exited with code 3 → failed; back to pending: ${quitterTask}`);
    // quitter is not restarted: a claim for it is refused (it took a task that stayed active for good), nothing written.
    const refused = project.apex(["task", "claim", "--agent", "quitter"]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("error[APEX_E_SESSION_STATE]: Agent quitter has failed and will not be restarted");
    // Nor can a task be assigned to it (it stayed pending for good, only quitter allowed to claim it).
    const assigned = project.apex(["task", "add", "for quitter", "--assign", "quitter"]);
    expect(assigned.status).toBe(4);
    expect(assigned.stderr).toContain("a task assigned to it would stay pending with no one to do it");
    // Another agent takes them over, the first first.
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0001", status: "active", assignee: "idle" });
  });

  it("an agent holding two tasks across apex stop and start --continue is given both (APEX_RESUME_TASKS), the one its record names first (APEX_RESUME_TASK)", async () => {
    const record = 'if [ -n "$APEX_RESUME_TASK" ]; then printf "%s|%s" "$APEX_RESUME_TASK" "$APEX_RESUME_TASKS" > resumed.part && mv resumed.part resumed.txt; fi; while true; do sleep 0.5; done';
    project = new Project(["agents:", "  worker:", "    command: sh", `    args: ["-c", ${JSON.stringify(record)}]`, "plugins: {}", ""].join("\n"));
    const file = join(project.dir, "resumed.txt");
    const resumed = () => waitFor("the worker's resume file", () => existsSync(file) && readFileSync(file, "utf8"));
    project.start([]);
    for (const title of ["first", "second", "third"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    for (const id of ["t-0001", "t-0002"]) expect(JSON.parse(project.apex(["task", "claim", "--agent", "worker", "--json"]).stdout)).toMatchObject({ id });
    expect(project.apex(["stop"]).status).toBe(0);
    // Before, only APEX_RESUME_TASK, naming one of them: the agent never learned it still held the other.
    const continued = project.start(["--continue", "last"]) as unknown as { reconciled: unknown };
    expect(continued.reconciled).toEqual({ requeued: [], resumed: [{ agent: "worker", task: "t-0002", tasks: ["t-0002", "t-0001"] }], stopped_agents: [] });
    expect(await resumed()).toBe("t-0002|t-0002 t-0001");
    // Said in the text too: each task the agent goes back to.
    expect(project.apex(["stop"]).status).toBe(0);
    rmSync(file);
    const again = project.apex(["start", "--continue", "last"]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain("t-0002, t-0001 go back to worker (APEX_RESUME_TASKS)");
    expect(await resumed()).toBe("t-0002|t-0002 t-0001");
  });

  it("a task claimed for an agent while it waits to be restarted is given to its restart as APEX_RESUME_TASK, as on --continue", async () => {
    const record = 'echo "${APEX_RESUME_TASK:-none}|${APEX_RESUME_TASKS:-none}" >> starts.txt; while true; do sleep 0.5; done';
    project = new Project(["agents:", "  worker:", "    command: sh", `    args: ["-c", ${JSON.stringify(record)}]`, "    restart_delay: 0.1", "plugins: {}", ""].join("\n"));
    const starts = join(project.dir, "starts.txt");
    const lines = () => (existsSync(starts) ? readFileSync(starts, "utf8").trim().split("\n") : []);
    project.start([]);
    expect(project.apex(["task", "add", "first"]).status).toBe(0);
    await waitFor("the worker's first start", () => lines().length === 1);
    // Paused, its restart waits for the resume: the claim lands between its exit and its restart.
    expect(project.apex(["pause"]).status).toBe(0);
    const pid = project.status().agents[0]!.pid!;
    process.kill(pid, "SIGKILL");
    await waitFor("the worker's restart to wait for the resume", () => project!.status().agents[0]!.status === "restarting");
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "worker", "--json"]).stdout)).toMatchObject({ id: "t-0001", status: "active", assignee: "worker" });
    expect(project.apex(["resume"]).status).toBe(0);
    // Before, "none|none": the restarted worker held t-0001 (apex status said so) and was never told.
    expect(await waitFor("the worker's restart", () => lines().length === 2 && lines())).toEqual(["none|none", "t-0001|t-0001"]);
    expect(project.status().agents[0]).toMatchObject({ status: "running", task: "t-0001", restarts: 1 });
  });

  it("a pending task assigned to an agent that then ended for good is named by status, task list and a claim that finds nothing, and reopen --assign gives it to another agent", async () => {
    project = new Project(["agents:", idle, "  quick:", "    command: sh", `    args: ["-c", "until [ -e go ]; do sleep 0.1; done; exit 0"]`, "    restart: never", "plugins: {}", ""].join("\n"));
    project.start();
    for (const args of [["for quick", "--assign", "quick"], ["for idle", "--assign", "idle"]]) expect(project.apex(["task", "add", ...args]).status).toBe(0);
    // While quick runs, nothing is said.
    expect(project.apex(["status", "--json"]).stdout).not.toContain("stranded_tasks");
    writeFileSync(join(project.dir, "go"), "");
    await waitFor("quick to exit", () => project!.status().agents.find((agent) => agent.name === "quick")?.status === "exited");
    // Before, t-0001 stayed pending for good, and nothing said so: a claim for idle said only "No pending task".
    const status = JSON.parse(project.apex(["status", "--json"]).stdout) as { stranded_tasks?: unknown };
    expect(status.stranded_tasks).toEqual([{ id: "t-0001", title: "for quick", assignee: "quick", agent_status: "exited (code 0)" }]);
    const hint = "Give it to another agent with `apex task reopen t-0001 --assign AGENT`, or to any with `apex task reopen t-0001`.";
    expect(project.apex(["status"]).stdout).toContain(`Pending, assigned to an agent that has ended and will not be restarted (no agent will claim it):\n  t-0001  quick, exited (code 0): for quick\n${hint}`);
    const list = project.apex(["task", "list"]).stdout;
    expect(list).toMatch(/t-0001\s+pending\s+quick \(ended\)\s+for quick/);
    expect(list).toMatch(/t-0002\s+pending\s+idle\s+for idle/);
    expect(list).toContain(hint);
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0002" });
    const none = project.apex(["task", "claim", "--agent", "idle", "--json"]);
    expect(none.status).toBe(4);
    expect(JSON.parse(none.stderr).error).toEqual({
      code: "APEX_E_NO_TASK",
      message: "No pending task for idle: the pending task is assigned to another agent: t-0001 (quick, which has ended and will not be restarted).",
      exitCode: 4,
      exit_code: 4,
      hint: "`apex task reopen t-0001 --assign idle` gives t-0001 to idle; `apex task list --status pending` lists them.",
      details: { agent: "idle", assigned_to_others: [{ id: "t-0001", assignee: "quick", agent_ended: true }] },
    });
    // A pending task is given to another agent (it was "already pending"), or to any; not counted as sent back.
    expect(JSON.parse(project.apex(["task", "reopen", "t-0001", "--assign", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0001", status: "pending", assignee: "idle", reopened: 0 });
    const again = project.apex(["task", "reopen", "t-0001", "--assign", "idle"]);
    expect([again.status, again.stderr]).toEqual([4, expect.stringContaining("error[APEX_E_TASK_STATE]: Task t-0001 is already pending, assigned to idle.")]);
    expect(JSON.parse(project.apex(["task", "reopen", "t-0001", "--json"]).stdout)).toMatchObject({ assignee: null, reopened: 0 });
    expect(project.apex(["task", "reopen", "t-0001"]).stderr).toContain("error[APEX_E_TASK_STATE]: Task t-0001 is already pending.");
    expect(project.apex(["status", "--json"]).stdout).not.toContain("stranded_tasks");
    expect(project.apex(["task", "list"]).stdout).not.toContain("ended");
    expect(project.apex(["session", "history", "last"]).stdout).toMatch(/task t-0001 reassigned to idle by user:\S+[\s\S]*task t-0001 left to any agent by user:/);
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0001", assignee: "idle" });
  });

  it("a claim for an agent that exits for good while the claim's beforeTask runs is refused (APEX_E_SESSION_STATE), the task left pending for another agent", async () => {
    project = slowHooksProject({ idle: "while true; do sleep 0.5; done", quick: "until [ -e go ]; do sleep 0.1; done; exit 0" });
    project.start([]);
    expect(project.apex(["task", "add", "first"]).status).toBe(0);
    // The claim's beforeTask waits for `release`: quick exits (code 0, not restarted) while it runs.
    writeFileSync(join(project.dir, "beforeTask"), "wait release");
    const claim = project.apexAsync(["task", "claim", "--agent", "quick", "--json"]);
    await waitFor("the claim's beforeTask", () => existsSync(join(project!.dir, "beforeTask.began")));
    writeFileSync(join(project.dir, "go"), "");
    await waitFor("quick to exit", () => project!.status().agents.find((agent) => agent.name === "quick")?.status === "exited");
    writeFileSync(join(project.dir, "release"), "");
    // Before, the claim was written after quick's exit had released what it held: t-0001 stayed active, quick's, for good.
    const refused = await claim.done;
    expect(refused.status).toBe(4);
    expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_SESSION_STATE", message: expect.stringContaining("Agent quick has exited and will not be restarted") });
    expect(JSON.parse(project.apex(["task", "show", "t-0001", "--json"]).stdout)).toMatchObject({ status: "pending", assignee: null });
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0001", status: "active", assignee: "idle" });
  });

  it("an agent whose name has a dot (as the config allows) is assigned, claims and reports like any other", async () => {
    project = new Project(["agents:", "  web.ui:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins: {}", ""].join("\n"));
    project.start();
    // Before, every command naming it was refused: "The session has no agent named "web.ui"", its agents: web.ui.
    expect(JSON.parse(project.apex(["task", "add", "styles", "--assign", "web.ui", "--json"]).stdout)).toMatchObject({ id: "t-0001", assignee: "web.ui" });
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "web.ui", "--json"]).stdout)).toMatchObject({ id: "t-0001", status: "active", assignee: "web.ui" });
    expect(project.apex(["agent", "report", "--agent", "web.ui", "--status", "working", "--task", "t-0001"]).status).toBe(0);
    expect(project.apex(["task", "done", "t-0001"]).status).toBe(0);
    expect(project.status().tasks).toMatchObject({ completed: 1, total: 1 });
  });

  it("agent report --task refuses a task another agent holds or is assigned (APEX_E_TASK_HELD, nothing written), through the supervisor and straight to the store; a completed one may be reported (a review)", async () => {
    project = new Project(["agents:", idle, "  other:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    for (const args of [["held"], ["assigned", "--assign", "other"], ["free"], ["reviewed"]]) expect(project.apex(["task", "add", ...args]).status).toBe(0);
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "other", "--json"]).stdout)).toMatchObject({ id: "t-0002" });
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "other", "--json"]).stdout)).toMatchObject({ id: "t-0001" });
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "idle", "--json"]).stdout)).toMatchObject({ id: "t-0003" });
    const record = () => project!.apex(["memory", "show", `/sessions/${ready.session_id}/agents/idle`, "--json"]).stdout;
    const check = (via: string) => {
      const before = record();
      // Before, idle was recorded working on other's t-0001: status showed two agents on one task.
      const held = project!.apex(["agent", "report", "--agent", "idle", "--status", "working", "--task", "t-1", "--json"]);
      expect(held.status, `${via}: ${held.stderr}`).toBe(4);
      expect(JSON.parse(held.stderr).error).toMatchObject({
        code: "APEX_E_TASK_HELD",
        message: "Task t-0001 is held by agent other: agent idle cannot report it as its task.",
        hint: "It is other's; to take it over, `apex task reopen t-0001 --assign idle` and claim it.",
        details: { task: "t-0001", assignee: "other", status: "active" },
      });
      expect(record(), via).toBe(before);
      return before;
    };
    // t-0002, assigned to other and pending again (other gave it back), is refused as assigned.
    expect(project.apex(["task", "reopen", "t-0002", "--assign", "other"]).status).toBe(0);
    const assigned = project.apex(["agent", "report", "--agent", "idle", "--task", "t-0002"]);
    expect([assigned.status, assigned.stderr]).toEqual([4, expect.stringContaining("error[APEX_E_TASK_HELD]: Task t-0002 is assigned to agent other: agent idle cannot report it as its task.")]);
    check("supervisor");
    // Its own, an unassigned pending one and a completed one (reviewed by another agent) are taken.
    expect(project.apex(["task", "done", "t-0004"]).status).toBe(0);
    for (const task of ["t-0003", "t-0004"]) expect(project.apex(["agent", "report", "--agent", "idle", "--status", "reviewing", "--task", task]).status).toBe(0);
    expect(project.apex(["agent", "report", "--agent", "other", "--status", "working", "--task", "t-0001"]).status).toBe(0);
    // With no supervisor (killed) the report goes straight to the store: the same check.
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project!.status().session?.status === "interrupted");
    check("store");
  });

  it("a claim takes the task from an agent that reported it as its own while no one held it: status showed both agents on it", () => {
    project = new Project(["agents:", idle, "  other:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins: {}", ""].join("\n"));
    project.start();
    expect(project.apex(["task", "add", "free"]).status).toBe(0);
    // Pending and unassigned: idle may say it is on it.
    expect(project.apex(["agent", "report", "--agent", "idle", "--status", "looking", "--task", "t-0001"]).status).toBe(0);
    expect(JSON.parse(project.apex(["task", "claim", "--agent", "other", "--json"]).stdout)).toMatchObject({ id: "t-0001", assignee: "other" });
    const agents = Object.fromEntries(project.status().agents.map((agent) => [agent.name, agent.task]));
    expect(agents).toEqual({ idle: null, other: "t-0001" });
    // What idle said it was doing stays; only the task it named went to the agent that holds it.
    const record = JSON.parse(project.apex(["memory", "show", `/sessions/${project.status().session!.session_id}/agents/idle`, "--json"]).stdout).value;
    expect(record).toMatchObject({ reported_status: "looking", task: null });
  });
});

describe("timers", () => {
  it("session_timeout stops a session without agent activity, and its clock stands still while paused", async () => {
    project = new Project(["session:", "  session_timeout: 3", "agents:", idle, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    // Paused for longer than the timeout: the session must still be there after resume.
    expect(project.apex(["pause"]).status).toBe(0);
    await new Promise((r) => setTimeout(r, 3500));
    expect(project.status().session?.status).toBe("paused");
    expect(project.apex(["resume"]).status).toBe(0);
    // The supervisor exits once it recorded the session's end: watched in /proc, not by a command every few tenths of a second.
    await waitFor("the timeout to end the supervisor", () => !isAlive(ready.supervisor_pid), 20_000);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)[0]).toMatchObject({ session_id: ready.session_id, status: "stopped", outcome: "timed out: no agent activity for 3 s" });
  });

  it("a session_timeout longer than one Node.js timer (30 days) holds: the session runs on (it stopped as it started)", async () => {
    project = new Project(["session:", "  session_timeout: 30d", "agents:", idle, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    await new Promise((r) => setTimeout(r, 1500));
    // Resumed, the timer is armed again from what was left of it.
    expect(project.apex(["pause"]).status).toBe(0);
    expect(project.apex(["resume"]).status).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    expect(project.status().session).toMatchObject({ session_id: ready.session_id, status: "active" });
    expect(project.apex(["stop"]).status).toBe(0);
  });

  it("the checkpoint service plugs in: interval checkpoints stop while paused, --continue restores", async () => {
    project = new Project("");
    const calls = join(project.dir, "checkpoints.jsonl");
    project.writeConfig(
      [
        "session:",
        "  auto_checkpoint_interval: 1",
        "agents:",
        idle,
        "plugins:",
        `  ${JSON.stringify(join(FIXTURES, "checkpoint-probe.mjs"))}:`,
        `    file: ${JSON.stringify(calls)}`,
        "",
      ].join("\n"),
    );
    const ready = project.start();
    const creates = () => readLines(calls).filter((line) => line.call === "create" && line.trigger === "interval");
    await waitFor("two interval checkpoints", () => creates().length >= 2, 15_000);
    // The start asked for the session's first checkpoint before any interval one.
    expect(readLines(calls).find((line) => line.call === "create")).toMatchObject({ trigger: "onStart" });
    expect(project.apex(["pause"]).status).toBe(0);
    const whilePaused = creates().length;
    await new Promise((r) => setTimeout(r, 2500));
    expect(creates().length).toBe(whilePaused);
    expect(project.apex(["resume"]).status).toBe(0);
    await waitFor("checkpoints after resume", () => creates().length > whilePaused, 15_000);
    expect(project.apex(["stop"]).status).toBe(0);

    // A checkpoint manifest (as the checkpoint plugin writes them) names the checkpoint to continue from.
    expect(project.apex(["memory", "set", "--force", `/sessions/${ready.session_id}/checkpoint-001`, JSON.stringify({ id: "cp-0123456789", sequence: 1, trigger: "manual" })]).status).toBe(0);
    const continued = project.start(["--continue", "cp-012345"]);
    expect(continued).toMatchObject({ session_id: ready.session_id, continued: true });
    expect(readLines(calls).filter((line) => line.call === "restore")).toEqual([{ call: "restore", sessionId: ready.session_id, checkpoint: "cp-0123456789" }]);
    const status = project.status();
    expect(status.session).toMatchObject({ status: "active", restored_from: "cp-0123456789" });
    expect(status.last_checkpoint).toMatchObject({ id: "cp-0123456789", sequence: 1, trigger: "manual" });
    expect(JSON.parse(project.apex(["memory", "show", "/probe/restored", "--json"]).stdout).value).toEqual({ checkpoint: "cp-0123456789" });
  });

  it("SIGTERM to the supervisor stops the session cleanly instead of orphaning the agents", async () => {
    project = new Project(["agents:", idle, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGTERM");
    await waitFor("the supervisor to exit", () => !isAlive(ready.supervisor_pid));
    expect(project!.alive(ready.agents[0]!.pid!)).toBe(false);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)[0]).toMatchObject({
      status: "stopped",
      outcome: "the supervisor received SIGTERM",
    });
  });
});
