// Crashes and endings: a supervisor killed with SIGKILL (interrupted, then continued with no
// orphan left), agents crashing and restarting by policy, sessions completing or failing.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, events, groupMembers, isAlive, nodeAgent, procInfo, waitFor } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

describe("supervisor crash and --continue", () => {
  it("kill -9 of the supervisor: status says interrupted and names the leftovers; --continue last reaps them and starts fresh agents", async () => {
    project = new Project("");
    const out = join(project.dir, "resume-context.json");
    project.writeConfig([
      // auto_recovery would continue the session at the `apex start --task` below (tested in checkpoint-cli.e2e).
      "session:",
      "  auto_recovery: false",
      "agents:",
      "  loop:",
      "    command: sh",
      `    args: ["-c", "sh -c 'sleep 1000 & wait' & while true; do sleep 0.2; done"]`,
      nodeAgent("keeper", "context.mjs", { env: { APEX_TEST_OUT: out } }),
      "plugins: {}",
      "",
    ].join("\n"));

    const ready = project.start(["--task", "survive a crash"]);
    // The keeper reports its context once it runs.
    await waitFor("the keeper's report", () => project!.status().agents.find((agent) => agent.name === "keeper")?.reported_status === "ready");
    await waitFor("loop's processes", () => groupMembers(ready.agents[0]!.pgid!).length >= 3);
    const oldProcesses = ready.agents.flatMap((agent) => groupMembers(agent.pgid!)).map((member) => ({ pid: member.pid, start: member.startTime }));

    process.kill(ready.supervisor_pid, "SIGKILL");
    const interrupted = await waitFor(
      "status interrupted",
      () => {
        const status = project!.status();
        return status.session?.status === "interrupted" ? status : undefined;
      },
      5000,
    );
    expect(interrupted.session!.supervisor).toMatchObject({ pid: ready.supervisor_pid, alive: false });
    expect(interrupted.left_running.map((left) => left.agent).sort()).toEqual(["keeper", "loop"]);
    expect(interrupted.agents.every((agent) => agent.status === "orphaned")).toBe(true);
    const text = project.apex(["status"]).stdout;
    expect(text).toContain("interrupted");
    expect(text).toMatch(/still running: loop \(pids \d+/);

    // Live-process commands explain what to do instead of hanging.
    const pause = project.apex(["pause"]);
    expect(pause.status).toBe(4);
    expect(pause.stderr).toContain("start --continue last");
    // A new session is refused while this one is interrupted.
    expect(project.apex(["start", "--task", "new"]).stderr).toContain("start --continue last");
    // Writes go straight to the store while no supervisor runs.
    expect(project.apex(["task", "add", "written without a supervisor"]).status).toBe(0);
    // An agent's report written to the store is held to the session's tasks as through the supervisor: nothing of it is written.
    const keeper = () => project!.apex(["memory", "show", `/sessions/${ready.session_id}/agents/keeper`, "--json"]).stdout;
    const before = keeper();
    const unknown = project.apex(["agent", "report", "--agent", "keeper", "--status", "elsewhere", "--task", "t-0042", "--context", '{"note": "lost"}', "--json"]);
    expect(unknown.status).toBe(3);
    expect(JSON.parse(unknown.stderr).error).toMatchObject({ code: "APEX_E_TASK_NOT_FOUND", message: `No task t-0042 in session ${ready.session_id}.` });
    expect(keeper()).toBe(before);

    const continued = project.start(["--continue", "last"]);
    expect(continued).toMatchObject({ session_id: ready.session_id, continued: true });
    expect(continued.reaped.map((item) => item.agent).sort()).toEqual(["keeper", "loop"]);
    // No orphan: every process of the old groups is gone.
    for (const { pid, start } of oldProcesses) expect(isAlive(pid, start), `old pid ${pid} still runs`).toBe(false);
    for (const agent of ready.agents) expect(groupMembers(agent.pgid!)).toEqual([]);

    const status = project.status();
    expect(status.session).toMatchObject({ session_id: ready.session_id, status: "active" });
    expect(status.tasks.pending).toBe(1);
    for (const agent of status.agents) {
      expect(agent.alive).toBe(true);
      expect(oldProcesses.map((p) => p.pid)).not.toContain(agent.pid);
    }
    // The keeper got its last reported context back through APEX_RESUME_CONTEXT.
    const context = await waitFor("the resume context", () => {
      try {
        return JSON.parse(readFileSync(out, "utf8")) as { pid: number; note: string };
      } catch {
        return undefined;
      }
    });
    expect(context.note).toBe("remember me");
    expect(context.pid).toBe(ready.agents.find((agent) => agent.name === "keeper")!.pid);
    // The continuation is in the session's history.
    const record = JSON.parse(project.apex(["memory", "show", `/sessions/${ready.session_id}`, "--json"]).stdout).value;
    expect(record.history.map((entry: { event: string }) => entry.event)).toEqual(["started", "continued"]);
    expect(record.history[1]).toMatchObject({ from: "interrupted" });
  });

  it("pause and stop sent while --continue still reaps (its supervisor alive, not yet listening) wait for it, then act on the continued session", async () => {
    // The leftover ignores SIGTERM: the reap waits out its 2 s grace before the new supervisor listens.
    // Each agent writes its pid to `trapped` once it ignores SIGTERM: one killed before that (a loaded
    // machine may stop or kill it before its shell has run a line) would end at the reap's SIGTERM, at once.
    project = new Project(["agents:", "  stubborn:", "    command: sh", `    args: ["-c", "trap '' TERM; echo $$ >> trapped; while true; do sleep 0.2; done"]`, "plugins: {}", ""].join("\n"));
    const p = project;
    const trapped = (pid: number | null | undefined) => waitFor(`agent ${pid} to ignore SIGTERM`, () => existsSync(join(p.dir, "trapped")) && readFileSync(join(p.dir, "trapped"), "utf8").split("\n").includes(String(pid)), 10_000);
    const ready = p.start();
    await trapped(ready.agents[0]!.pid);
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("interrupted", () => p.status().session?.status === "interrupted", 5000);
    const continuing = p.apexAsync(["start", "--continue", "last", "--json"]);
    try {
      await waitFor("the new supervisor to start reaping", () => /continuing \(pid \d+\)/.test(p.supervisorLog()), 30_000);
      expect(p.supervisorLog()).not.toContain("reaped the old processes");
      // It was: pause said the session's supervisor was not running (exit 4, hint --continue), and stop
      // that it did not answer (exit 4, hint --force, which would kill it in the middle of its start).
      const paused = p.apex(["pause", "--json"]);
      expect(paused.status, paused.stderr).toBe(0);
      expect(JSON.parse(paused.stdout)).toMatchObject({ session_id: ready.session_id, status: "paused", agents: 1 });
      const continued = await continuing.done;
      expect(continued.status, continued.stderr).toBe(0);
      const again = JSON.parse(continued.stdout) as { supervisor_pid: number; agents: Array<{ pid: number; pgid: number }> };
      const members = groupMembers(again.agents[0]!.pgid);
      expect(members.length).toBeGreaterThan(0);
      // Stopped (T), or in I/O (D) with its SIGSTOP pending, which pause counts as paused: it stops the moment the I/O ends.
      for (const member of members) expect(`${member.pid}:${member.state}`).toMatch(new RegExp(`^${member.pid}:[TD]$`));

      // Once more, with a stop: it ends the session once it has started. The agent was stopped as it
      // started: resumed until it ignores SIGTERM, then paused again, it is a stopped leftover to reap.
      expect(p.apex(["resume"]).status).toBe(0);
      await trapped(again.agents[0]!.pid);
      expect(p.apex(["pause"]).status).toBe(0);
      process.kill(again.supervisor_pid, "SIGKILL");
      await waitFor("interrupted again", () => p.status().session?.status === "interrupted", 5000);
      const log = p.supervisorLog().length;
      const last = p.apexAsync(["start", "--continue", "last", "--json"]);
      try {
        await waitFor("the next supervisor to start reaping", () => /continuing \(pid \d+\)/.test(p.supervisorLog().slice(log)), 30_000);
        expect(p.supervisorLog().slice(log)).not.toContain("reaped the old processes");
        const stopped = p.apex(["stop", "--grace", "0.2", "--json"]);
        expect(stopped.status, stopped.stderr).toBe(0);
        expect(JSON.parse(stopped.stdout)).toMatchObject({ session_id: ready.session_id, status: "stopped" });
        const lastStart = await last.done;
        expect(lastStart.status, lastStart.stderr).toBe(0);
        const ended = JSON.parse(lastStart.stdout) as { status: string; agents: Array<{ pgid: number | null }> };
        // The start's report says stopped when the stop came before the start ended, active when it came
        // just after (a loaded machine runs the stop's CLI later than the 2 s reap): either way, stopped now.
        expect(["stopped", "active"]).toContain(ended.status);
        await waitFor("the session to be recorded stopped", () => {
          const record = p.apex(["memory", "show", `/sessions/history/${ready.session_id}`, "--json"]);
          return record.status === 0 && JSON.parse(record.stdout).value?.status === "stopped";
        }, 10_000);
        expect(p.status().session).toBeNull();
        for (const agent of [...again.agents, ...ended.agents]) if (agent.pgid) expect(groupMembers(agent.pgid)).toEqual([]);
      } finally {
        await last.done;
      }
    } finally {
      await continuing.done;
    }
  });

  it("stop of an interrupted session ends the leftovers without a supervisor", async () => {
    project = new Project(["agents:", "  loop:", "    command: sh", `    args: ["-c", "while true; do sleep 0.2; done"]`, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    const leader = { pid: ready.agents[0]!.pid!, start: procInfo(ready.agents[0]!.pid!)!.startTime };
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("interrupted", () => project!.status().session?.status === "interrupted", 5000);
    const stopped = project.apex(["stop", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    // The whole id and the name (none) in --json, as with a supervisor.
    expect(JSON.parse(stopped.stdout)).toMatchObject({ session_id: ready.session_id, name: null, status: "stopped" });
    expect(isAlive(leader.pid, leader.start)).toBe(false);
    expect(groupMembers(leader.pid)).toEqual([]);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)[0]).toMatchObject({ status: "stopped" });
  });
});

describe("agent exits", () => {
  it("a crashing agent is restarted by its policy, each crash fires onError (recorded as an event), then the session fails", async () => {
    project = new Project(["agents:", nodeAgent("crasher", "crasher.mjs", { restart: "on-failure", maxRestarts: 2, delay: 0.1 }), "plugins: {}", ""].join("\n"));
    const ready = project.start();
    const history = await waitFor("the session to end", () => {
      const rows = JSON.parse(project!.apex(["session", "history", "--json"]).stdout) as Array<{ status: string; outcome: string }>;
      return rows.length > 0 ? rows : undefined;
    }, 30_000);
    expect(history[0]).toMatchObject({ status: "failed", outcome: expect.stringContaining("crasher") });

    const all = events(project, ready.session_id);
    const exits = all.filter((event) => event.type === "agent.exited");
    expect(exits.map((event) => event.code)).toEqual([3, 3, 3]);
    expect(exits.map((event) => event.status)).toEqual(["restarting", "restarting", "failed"]);
    const errors = all.filter((event) => event.type === "error");
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatchObject({ origin: "agent:crasher", message: "Agent crasher exited with code 3." });
    expect((errors[0]!.details as { logTail: string[] }).logTail).toContain("stderr: crasher: something went wrong");
    expect(all.filter((event) => event.type === "agent.started")).toHaveLength(3);
    const agent = JSON.parse(project.apex(["memory", "show", `/sessions/${ready.session_id}/agents/crasher`, "--json"]).stdout).value;
    expect(agent).toMatchObject({ restarts: 2, status: "failed", last_exit: { code: 3, signal: null } });
    expect(project.apex(["logs", "crasher"]).stdout.match(/crasher pid \d+ starting/g)).toHaveLength(3);
  });

  it("agents that finish every task and exit 0 complete the session", async () => {
    project = new Project(["agents:", nodeAgent("w1", "worker.mjs"), nodeAgent("w2", "worker.mjs"), "plugins: {}", ""].join("\n"));
    // The workers wait for /test/go, then claim until no task is left and exit 0.
    const ready = project.start();
    for (let i = 1; i <= 4; i++) expect(project.apex(["task", "add", `job ${i}`]).status).toBe(0);
    expect(project.apex(["memory", "set", "/test/go", "true"]).status).toBe(0);
    const ended = await waitFor("the session to end", () => {
      const rows = JSON.parse(project!.apex(["session", "history", "--json"]).stdout) as Array<{ session_id: string; status: string; outcome: string }>;
      return rows[0];
    }, 40_000);
    expect(ended.session_id).toBe(ready.session_id);
    expect(ended.status).toBe("completed");
    expect(ended.outcome).toContain("no task is pending or active");
    await waitFor("the supervisor to exit", () => !isAlive(ready.supervisor_pid));
    const tasks = JSON.parse(project.apex(["memory", "query", `/sessions/${ready.session_id}/tasks/*`, "--json"]).stdout);
    expect(Object.values(tasks).map((task) => (task as { status: string }).status)).toEqual(["completed", "completed", "completed", "completed"]);
  });

  it("agents that exit 0 while tasks remain end the session as failed, saying why", async () => {
    // The quitter exits 0 once /test/go is set (through `apex`, which agents have on PATH).
    const quitter = "until apex memory show /test/go >/dev/null 2>&1; do sleep 0.2; done; exit 0";
    project = new Project(["agents:", "  quitter:", "    command: sh", `    args: ["-c", ${JSON.stringify(quitter)}]`, "plugins: {}", ""].join("\n"));
    project.start();
    expect(project.apex(["task", "add", "nobody will do this"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/test/go", "true"]).status).toBe(0);
    const ended = await waitFor("the session to end", () => JSON.parse(project!.apex(["session", "history", "--json"]).stdout)[0], 20_000);
    expect(ended).toMatchObject({ status: "failed", outcome: "all agents exited while 1 task was still pending or active" });
  });
});
