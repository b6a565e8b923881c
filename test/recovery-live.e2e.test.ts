// Recovery never loses an acknowledged write: writer agents log every `apex memory set` that
// succeeded; the supervisor is killed with SIGKILL at random moments, ten times, while interval
// checkpoints are taken every second; after each recovery (`start --continue last`, a plain
// `start` or `resume` through session.auto_recovery) every logged write is in memory. Real
// processes in a temporary project; every process is ended by pid or process group.
import { readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, groupMembers, isAlive, procInfo, waitFor, type StartJson } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

/** Writes /acks/<agent>/<pid>-<n> in a loop and appends the path to acks-<agent>.log once the write was acknowledged. */
const WRITER = [
  "n=0",
  "while true; do",
  "  n=$((n+1))",
  '  k="/acks/$APEX_AGENT/$$-$n"',
  '  if apex memory set "$k" "$n" >/dev/null 2>&1; then printf "%s\\n" "$k" >> "acks-$APEX_AGENT.log"; fi',
  "done",
].join("\n");

function config(): string {
  const agent = (name: string) => [`  ${name}:`, "    command: sh", `    args: ["-c", ${JSON.stringify(WRITER)}]`].join("\n");
  return ["session:", "  auto_recovery: true", "agents:", agent("w1"), agent("w2"), "plugins:", "  checkpoint:", "    interval: 1", ""].join("\n");
}

/** Every write acknowledged so far: complete lines of the ack logs (a writer killed mid-line did not finish acknowledging). */
function acknowledged(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!/^acks-.*\.log$/.test(name)) continue;
    const text = readFileSync(join(dir, name), "utf8");
    const complete = text.slice(0, text.lastIndexOf("\n") + 1);
    for (const line of complete.split("\n")) if (line) out.push(line);
  }
  return out;
}

function memoryKeys(): Set<string> {
  const result = project!.apex(["memory", "export", "/acks/**"]);
  if (result.status !== 0) throw new Error(`memory export: ${result.stderr}`);
  return new Set(Object.keys(JSON.parse(result.stdout) as Record<string, unknown>));
}

function memoryOf(project: Project, path: string): unknown {
  const result = project.apex(["memory", "show", path, "--json"]);
  return result.status === 0 ? JSON.parse(result.stdout).value : undefined;
}

function json(result: { status: number; stdout: string; stderr: string }, what: string): StartJson & { restored_from: string | null } {
  if (result.status !== 0) throw new Error(`${what} exited ${result.status}: ${result.stderr}\n${project!.supervisorLog().slice(-3000)}`);
  return JSON.parse(result.stdout) as StartJson & { restored_from: string | null };
}

describe("kill -9 of the supervisor, ten times", () => {
  it("after every recovery, every acknowledged write is in memory", async () => {
    project = new Project(config());
    let ready = project.start(["--task", "write and acknowledge"]);
    const sessionId = ready.session_id;
    const recoveries = ["continue", "start", "resume"] as const;
    const figures: Array<{ kill: number; how: string; acknowledged: number; kept: number; killedAt: string; acknowledgedAtKill: number }> = [];
    for (let kill = 1; kill <= 10; kill++) {
      const before = acknowledged(project.dir).length;
      // Writes go on for a random while (at least a few acknowledged), then the supervisor dies mid-stride.
      await waitFor("new acknowledged writes", () => acknowledged(project!.dir).length >= before + 3, 30_000);
      // 0.2 to 1.2 s: anywhere in a checkpoint interval (1 s).
      await new Promise((resolve) => setTimeout(resolve, 200 + Math.floor(Math.random() * 1000)));
      const supervisor = { pid: ready.supervisor_pid, start: procInfo(ready.supervisor_pid)!.startTime };
      const oldGroups = ready.agents.map((agent) => agent.pgid!);
      const killedAt = new Date().toISOString();
      process.kill(supervisor.pid, "SIGKILL");
      await waitFor("the supervisor to die", () => !isAlive(supervisor.pid, supervisor.start), 5000);
      const acknowledgedAtKill = acknowledged(project.dir).length;
      // What the writers acknowledged until the leftovers are reaped counts too: read it after recovery.
      const how = recoveries[kill % recoveries.length]!;
      const result = how === "continue" ? project.apex(["start", "--continue", "last", "--json"]) : project.apex([how, "--json"]);
      project.remember();
      ready = json(result, how);
      expect(ready).toMatchObject({ session_id: sessionId, continued: true, restored_from: null });
      if (how !== "continue") expect(result.stderr).toContain('"auto_recovery":true');
      for (const pgid of oldGroups) expect(groupMembers(pgid), `old group ${pgid} reaped`).toEqual([]);

      const acks = acknowledged(project.dir);
      const keys = memoryKeys();
      const missing = acks.filter((key) => !keys.has(key));
      figures.push({ kill, how, acknowledged: acks.length, kept: acks.length - missing.length, killedAt, acknowledgedAtKill });
      expect(missing, `kill ${kill} (${how}): acknowledged writes missing from memory`).toEqual([]);
    }
    // Interval checkpoints were taken all along: a rollback to the latest one would have dropped writes.
    // One list at the end (nothing prunes checkpoints here: no retention plugin) rather than one a kill.
    const checkpoints = (JSON.parse(project.apex(["checkpoint", "list", "--limit", "1000", "--json"]).stdout) as { items: Array<{ trigger: string; created_at: string; memory_keys: number }> }).items;
    const triggers = checkpoints.map((item) => item.trigger);
    expect(triggers).toContain("interval");
    expect(triggers).not.toContain("beforeRestore");
    // How many writes a rollback to the latest checkpoint before each crash would have dropped
    // (memory holds nothing but /acks, so that checkpoint's key count is the writes it holds).
    const report = figures.map(({ killedAt, acknowledgedAtKill, ...figure }) => {
      const latestBefore = checkpoints.find((item) => item.created_at < killedAt);
      return { ...figure, afterLatestCheckpoint: Math.max(0, acknowledgedAtKill - (latestBefore?.memory_keys ?? 0)) };
    });
    const total = report[report.length - 1]!;
    const exposed = report.reduce((sum, figure) => sum + figure.afterLatestCheckpoint, 0);
    console.log(
      `acknowledged writes kept: ${total.kept} of ${total.acknowledged} over ${report.length} supervisor kills; ${exposed} of them were newer than the latest checkpoint at their kill`,
      JSON.stringify(report),
    );
  }, 300_000);
});

describe("a session in the way of --continue", () => {
  /** Fails every checkpoint while `no-checkpoints` exists in the project directory (the supervisor's working directory). */
  const FAILING_PLUGIN = [
    'import { existsSync } from "node:fs";',
    "export default {",
    '  name: "refuse-checkpoints",',
    "  apply(apex) {",
    '    apex.hooks.beforeCheckpoint.tapPromise("refuse-checkpoints", async (draft) => {',
    '      if (existsSync("no-checkpoints")) throw new Error("checkpoints are refused here");',
    "      return draft;",
    "    });",
    "  },",
    "};",
    "",
  ].join("\n");

  it("is checkpointed and stopped, running or interrupted; when its checkpoint cannot be written nothing is stopped (exit 4, naming apex stop)", async () => {
    project = new Project(
      [
        "session:",
        "  auto_recovery: false",
        "agents:",
        "  worker:",
        "    command: sh",
        '    args: ["-c", "while true; do sleep 0.2; done"]',
        "plugins:",
        "  checkpoint: {}",
        "  ./refuse-checkpoints.mjs: {}",
        "",
      ].join("\n"),
    );
    writeFileSync(join(project.dir, "refuse-checkpoints.mjs"), FAILING_PLUGIN);
    const first = project.start(["--task", "first"]);
    expect(project.apex(["stop"]).status).toBe(0);
    const second = project.start(["--task", "second"]);

    // Its checkpoint fails: nothing is stopped, and the refusal names the command that stops it anyway.
    writeFileSync(join(project.dir, "no-checkpoints"), "");
    const refused = project.apex(["start", "--continue", first.session_id]);
    expect(refused.status, refused.stdout + refused.stderr).toBe(4);
    // The session as session list prints it, its uuid's short form (it printed the whole id).
    expect(refused.stderr).toContain(`Session ${second.session_id.slice(0, 8)} is active and could not be checkpointed before stopping it`);
    expect(refused.stderr).toContain("checkpoints are refused here");
    expect(refused.stderr).toContain("`apex stop`");
    expect(project.status().session).toMatchObject({ session_id: second.session_id, status: "active", supervisor: { pid: second.supervisor_pid, alive: true } });
    expect(isAlive(second.agents[0]!.pid!)).toBe(true);

    // Interrupted: stopped without a supervisor (its leftovers ended), checkpointed, then the other session continues.
    rmSync(join(project.dir, "no-checkpoints"));
    process.kill(second.supervisor_pid, "SIGKILL");
    await waitFor("interrupted", () => project!.status().session?.status === "interrupted", 5000);
    const continued = project.apex(["start", "--continue", first.session_id, "--json"]);
    project.remember();
    expect(continued.status, continued.stderr).toBe(0);
    const ready = JSON.parse(continued.stdout);
    expect(ready).toMatchObject({
      session_id: first.session_id,
      continued: true,
      // The live memory was the second session's: the first comes back with its own latest checkpoint.
      restored_from: expect.any(String),
      handover: { session_id: second.session_id, name: null, was: "interrupted", checkpoint: { trigger: "onStop" }, processes_ended: expect.any(Number) },
    });
    expect(ready.handover.processes_ended).toBeGreaterThanOrEqual(1); // the leftover worker (and its sleep)
    expect(groupMembers(second.agents[0]!.pgid!)).toEqual([]);
    const history = JSON.parse(project.apex(["session", "history", "--json"]).stdout) as Array<{ session_id: string; status: string; outcome: string }>;
    // The session continued named as session list and checkpoint show name it, its id's short form (it was the whole uuid).
    const short = (id: string) => id.slice(0, 8);
    expect(history.find((row) => row.session_id === second.session_id)).toMatchObject({ status: "stopped", outcome: `stopped to continue session ${short(first.session_id)}` });
    const secondCheckpoints = JSON.parse(project.apex(["checkpoint", "list", "--session", second.session_id, "--json"]).stdout) as { items: Array<{ name: string; trigger: string; description: string }> };
    expect(secondCheckpoints.items[0]).toMatchObject({ name: ready.handover.checkpoint.name, trigger: "onStop", description: `session end: stopped to continue session ${short(first.session_id)}` });

    // A checkpoint of the ended session, continued while the first runs: the first's memory is
    // saved in the first (its handover checkpoint), not as the second's state before the restore
    // (it was: a beforeRestore of the second held /only-first, a path the second never wrote).
    expect(project.apex(["memory", "set", "/only-first", "1"]).status).toBe(0);
    const back = project.apex(["start", "--continue", `${second.session_id}/checkpoint-001`, "--json"]);
    project.remember();
    expect(back.status, back.stderr).toBe(0);
    const backReady = JSON.parse(back.stdout);
    expect(backReady).toMatchObject({ session_id: second.session_id, handover: { session_id: first.session_id, checkpoint: { trigger: "onStop" } }, restore: { saved_before: `${first.session_id.slice(0, 8)}/${backReady.handover.checkpoint.name}` } });
    const secondAfter = JSON.parse(project.apex(["checkpoint", "list", "--session", second.session_id, "--json"]).stdout) as { items: Array<{ trigger: string }> };
    expect(secondAfter.items.map((item) => item.trigger)).not.toContain("beforeRestore");
    const firstFinal = JSON.parse(project.apex(["checkpoint", "show", `${first.session_id}/${backReady.handover.checkpoint.name}`, "--json"]).stdout) as { memory_keys: string[]; description: string };
    expect(firstFinal.memory_keys).toContain("/only-first");
    // The checkpoint continued from, given by the whole session id, is named as `<short id>/checkpoint-NNN`.
    expect(firstFinal.description).toBe(`session end: stopped to continue from checkpoint ${short(second.session_id)}/checkpoint-001`);
    expect(memoryOf(project, "/only-first")).toBeUndefined();
  }, 120_000);
});

describe("continuing from the live state", () => {
  it("requeues the active tasks of an agent the config no longer runs, gives the others back to their agents, and marks the gone agent stopped", async () => {
    const loop = ["    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]'];
    const configWith = (agents: string[]) =>
      ["session:", "  auto_recovery: false", "agents:", ...agents.flatMap((name) => [`  ${name}:`, ...loop]), "plugins:", "  checkpoint: {}", ""].join("\n");
    project = new Project(configWith(["worker", "helper"]));
    const ready = project.start(["--task", "reconcile"]);
    for (const title of ["one", "two", "three"]) expect(project.apex(["task", "add", title]).status).toBe(0);
    expect(project.apex(["task", "claim", "--agent", "worker"]).status).toBe(0); // t-0001
    expect(project.apex(["task", "claim", "--agent", "helper"]).status).toBe(0); // t-0002
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("interrupted", () => project!.status().session?.status === "interrupted", 5000);

    project.writeConfig(configWith(["worker"]));
    const continued = project.apex(["start", "--continue", "last", "--json"]);
    project.remember();
    expect(continued.status, continued.stderr).toBe(0);
    expect(JSON.parse(continued.stdout)).toMatchObject({
      continued: true,
      restored_from: null,
      reconciled: { requeued: ["t-0002"], resumed: [{ agent: "worker", task: "t-0001" }], stopped_agents: ["helper"] },
    });
    const tasks = JSON.parse(project.apex(["task", "list", "--json"]).stdout) as Array<{ id: string; status: string; assignee: string | null }>;
    expect(tasks.map((task) => [task.id, task.status, task.assignee])).toEqual([
      ["t-0001", "active", "worker"],
      ["t-0002", "pending", null],
      ["t-0003", "pending", null],
    ]);
    const agents = JSON.parse(project.apex(["agent", "list", "--json"]).stdout) as Array<{ name: string; status: string; task: string | null }>;
    expect(agents.find((agent) => agent.name === "helper")).toMatchObject({ status: "stopped", task: null });
    expect(project.status().tasks).toMatchObject({ active: 1, pending: 2 });
    // The old helper's processes were reaped all the same.
    expect(groupMembers(ready.agents.find((agent) => agent.name === "helper")!.pgid!)).toEqual([]);
  }, 120_000);
});
