// Checkpoints and recovery through the real CLI: `apex checkpoint …`, checkpoints taken by
// lifecycle hooks and by the interval timer, `apex start --continue` after a kill -9 of the
// supervisor, `--force-recovery` of a damaged checkpoint, `apex session validate|repair|
// reconstruct`, session.auto_recovery, and a third-party trigger. Real processes in temporary
// projects; every process is ended by pid or process group in afterEach.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ObjectStore, lookupEntry } from "../core/store/objects.js";
import { Store } from "../core/store/store.js";
import { getCheckpoint, getCheckpointValue } from "../plugins/checkpoint/checkpoints.js";
import { FIXTURES, Project, groupMembers, isAlive, waitFor, type CliResult } from "./fixtures/agents/harness.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

const PLUGIN_FIXTURES = join(FIXTURES, "..", "plugins");

/**
 * A worker agent (a shell loop) that, when continued, copies APEX_RESUME_CONTEXT and
 * APEX_RESUME_TASK into the project directory, so the test can see what it was given.
 */
const WORKER = [
  "  worker:",
  "    command: sh",
  `    args: ["-c", ${JSON.stringify(
    'if [ -n "$APEX_RESUME_CONTEXT" ]; then cp "$APEX_RESUME_CONTEXT" "resume-$APEX_AGENT.json"; printf "%s" "$APEX_RESUME_TASK" > "task-$APEX_AGENT.txt"; fi; while true; do sleep 0.2; done',
  )}]`,
].join("\n");

function config(options: { autoRecovery?: boolean; plugins?: string[] } = {}): string {
  return [
    "session:",
    `  auto_recovery: ${options.autoRecovery ?? false}`,
    "agents:",
    WORKER,
    "plugins:",
    ...(options.plugins ?? ["  checkpoint: {}"]),
    "",
  ].join("\n");
}

/** Runs the CLI and expects exit 0; returns stdout parsed as JSON when `--json` is among the args. */
function ok(args: string[]): any {
  const result = project!.apex(args);
  if (result.status !== 0) throw new Error(`apex ${args.join(" ")} exited ${result.status}: ${result.stderr}\n${result.stdout}`);
  return args.includes("--json") ? JSON.parse(result.stdout) : result.stdout;
}

function fails(args: string[], code: number): CliResult {
  const result = project!.apex(args);
  expect(result.status, `apex ${args.join(" ")}: ${result.stdout}${result.stderr}`).toBe(code);
  return result;
}

interface ListItem {
  id: string;
  name: string;
  trigger: string;
  description: string;
  pinned: boolean;
  kept_by: string[] | null;
}

function list(args: string[] = []): { session_id: string; total: number; taken: number; items: ListItem[] } {
  return ok(["checkpoint", "list", "--limit", "1000", ...args, "--json"]);
}

function triggers(): string[] {
  return list(["--oldest"]).items.map((item) => item.trigger);
}

function memory(path: string): unknown {
  const result = project!.apex(["memory", "show", path, "--json"]);
  return result.status === 0 ? JSON.parse(result.stdout).value : undefined;
}

function supervisorKilled(pid: number): Promise<unknown> {
  process.kill(pid, "SIGKILL");
  return waitFor("the session to show as interrupted", () => project!.status().session?.status === "interrupted", 5000);
}

/** Flips one bit of the stored bytes of a checkpoint's memory value (no supervisor may run). */
async function damageValue(checkpointId: string, path: string): Promise<string> {
  const store = Store.open(project!.storeDir);
  try {
    const manifest = getCheckpoint(store, checkpointId);
    const objects = ObjectStore.of(store);
    const hash = lookupEntry(objects.view(), manifest.memory.root, path.slice(1).split("/"))!.value!;
    const location = objects.locate("value", hash)!;
    const pack = Buffer.from(objects.packs.get(location.pack)!);
    pack[location.offset + 1] = pack[location.offset + 1]! ^ 0x20;
    store.environment.transactionSync(() => objects.packs.put(location.pack, pack));
    await store.environment.flushed;
    return hash;
  } finally {
    await store.close();
  }
}

/** Writes bytes that do not decode as a record under `path` (no supervisor may run). */
async function undecodable(path: string): Promise<void> {
  const store = Store.open(project!.storeDir);
  try {
    const raw = store.environment.openDB({ name: "kv", encoding: "binary" });
    store.environment.transactionSync(() => raw.put(path, Buffer.from([0xc1])));
    await store.environment.flushed;
  } finally {
    await store.close();
  }
}

describe("apex checkpoint", () => {
  it("create, list, show and diff; beforeTask, onError and onPause take checkpoints; clear errors", async () => {
    project = new Project(config());
    const ready = project.start(["--task", "checkpoint commands"]);
    ok(["task", "add", "first"]);
    ok(["task", "add", "second"]);
    // A claim takes a beforeTask checkpoint before the task is assigned.
    expect(ok(["task", "claim", "--agent", "worker", "--json"])).toMatchObject({ id: "t-0001", status: "active", assignee: "worker" });
    expect(list().items[0]).toMatchObject({ name: "checkpoint-001", trigger: "beforeTask", description: "before task t-0001: first (worker)" });

    ok(["memory", "set", "/notes/plan", '{"step": 1}']);
    const created = ok(["checkpoint", "create", "Before major refactoring", "--pin", "--json"]);
    expect(created).toMatchObject({ name: "checkpoint-002", trigger: "manual", description: "Before major refactoring", pinned: true, session_id: ready.session_id, task_count: 2 });
    ok(["memory", "set", "/notes/plan", '{"step": 2}']);
    ok(["memory", "set", "/notes/extra", "true"]);
    ok(["task", "done", "t-0001"]);
    expect(ok(["checkpoint", "create", "after the refactoring"])).toContain("Created checkpoint-003");

    const all = list();
    expect(all).toMatchObject({ session_id: ready.session_id, total: 3 });
    expect(all.items.map((item) => item.name)).toEqual(["checkpoint-003", "checkpoint-002", "checkpoint-001"]);
    expect(list(["--oldest", "--limit", "1", "--offset", "1"]).items.map((item) => item.name)).toEqual(["checkpoint-002"]);
    const text = ok(["checkpoint", "list", "--limit", "2"]);
    expect(text).toMatch(/checkpoint-002 +[0-9a-f]{8} +\S+ +manual +pinned +Before major refactoring/);
    expect(text).toContain("Showing 1–2 of 3; next page: apex checkpoint list --offset 2 --limit 2");
    expect(text).toContain("(3, newest first)");

    // show: by name, by unique id prefix, latest.
    const shown = ok(["checkpoint", "show", "checkpoint-002", "--json"]);
    expect(shown.manifest).toMatchObject({ id: created.id, description: "Before major refactoring", trigger: "manual", pinned: true });
    expect(shown.tasks["t-0001"]).toMatchObject({ status: "active", assignee: "worker" });
    expect(ok(["checkpoint", "show", created.id.slice(0, 8), "--json"]).manifest.id).toBe(created.id);
    expect(ok(["checkpoint", "show", "latest", "--json"]).manifest.name).toBe("checkpoint-003");
    expect(ok(["checkpoint", "show", "checkpoint-002"])).toMatch(/t-0001 +active +\(worker\) first/);

    // diff: memory paths, task and agent changes.
    const diff = ok(["checkpoint", "diff", "checkpoint-002", "latest", "--json"]);
    expect(diff.memory).toEqual({ added: ["/notes/extra"], removed: [], changed: ["/notes/plan"] });
    expect(diff.tasks.changed).toEqual([expect.objectContaining({ id: "t-0001", before: expect.objectContaining({ status: "active" }), after: expect.objectContaining({ status: "completed" }) })]);
    expect(diff.agents.changed.map((change: { id: string }) => change.id)).toEqual(["worker"]);
    const diffText = ok(["checkpoint", "diff", "checkpoint-002", "checkpoint-003"]);
    expect(diffText).toContain("Memory: 1 added, 0 removed, 1 changed");
    expect(diffText).toContain("  + /notes/extra");
    expect(diffText).toContain("  ~ t-0001: status active → completed");
    expect(diffText).toContain("  ~ worker: task t-0001 → -");

    // A failed task fires onError: one checkpoint, no loop.
    ok(["task", "fail", "t-0002", "--reason", "tests are red"]);
    const afterError = list().items[0]!;
    expect(afterError).toMatchObject({ trigger: "onError" });
    expect(afterError.description).toMatch(/^error in user:\S+: Task t-0002 \(second\) failed: tests are red$/);
    expect(list().total).toBe(4);

    // Pause takes an onPause checkpoint (with the agents stopped); pin, unpin and delete.
    ok(["pause"]);
    expect(list().items[0]).toMatchObject({ name: "checkpoint-005", trigger: "onPause", description: "pause" });
    ok(["resume"]);
    expect(ok(["checkpoint", "unpin", "checkpoint-002", "--json"])).toMatchObject({ pinned: false });
    expect(ok(["checkpoint", "pin", "checkpoint-003", "--json"])).toMatchObject({ pinned: true });
    expect(fails(["checkpoint", "delete", "checkpoint-003"], 4).stderr).toContain("is pinned");
    expect(ok(["checkpoint", "delete", "checkpoint-001", "--json"])).toMatchObject({ name: "checkpoint-001" });
    expect(list().items.map((item) => item.name)).toEqual(["checkpoint-005", "checkpoint-004", "checkpoint-003", "checkpoint-002"]);

    // Errors: not found 3, ambiguous 4, too short a prefix 2.
    expect(fails(["checkpoint", "show", "checkpoint-099"], 3).stderr).toContain("No checkpoint-099 in session");
    expect(fails(["checkpoint", "show", "abcdef12"], 3).stderr).toContain("APEX_E_CHECKPOINT_NOT_FOUND");
    expect(fails(["checkpoint", "show", "ab"], 2).stderr).toContain("too short");
    expect(fails(["checkpoint", "list", "--limit", "0"], 2).stderr).toContain("Expected a whole number ≥ 1");
    ok(["stop"]);
    // Listing works on an ended session too (the one that ended last).
    expect(list().session_id).toBe(ready.session_id);
    expect(fails(["checkpoint", "create", "no session"], 3).stderr).toContain("APEX_E_NO_SESSION");
    // Two ids sharing a prefix: ambiguous.
    const twin = `${created.id.slice(0, 8)}-ffff-4fff-8fff-ffffffffffff`;
    const store = Store.open(project.storeDir);
    try {
      const catalog = store.environment.openDB({ name: "checkpoints" });
      store.environment.transactionSync(() => catalog.put(["i", twin], { s: ready.session_id, n: 3 }));
      await store.environment.flushed;
    } finally {
      await store.close();
    }
    const ambiguous = fails(["checkpoint", "show", created.id.slice(0, 8)], 4);
    expect(ambiguous.stderr).toContain("APEX_E_AMBIGUOUS");
    expect(ambiguous.stderr).toContain(created.id);
  });

  it("interval checkpoints: taken while something changed, skipped when nothing did, none while paused", async () => {
    project = new Project(config());
    // The supervisor takes its interval from the environment of `apex start`.
    const started = project.apex(["start", "--task", "interval", "--json"], { env: { APEX_CHECKPOINT_INTERVAL: "1" } });
    project.remember();
    expect(started.status, started.stderr).toBe(0);
    const intervals = () => list().items.filter((item) => item.trigger === "interval").length;
    await waitFor("the first interval checkpoint", () => intervals() === 1, 10_000);
    // Nothing changes: the next ticks write nothing.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(intervals()).toBe(1);
    ok(["memory", "set", "/notes/n", "1"]);
    await waitFor("an interval checkpoint of the change", () => intervals() === 2, 10_000);

    ok(["pause"]);
    expect(list().items[0]!.trigger).toBe("onPause");
    ok(["memory", "set", "/notes/n", "2"]); // a change while paused: the timer is stopped all the same
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(intervals()).toBe(2);
    ok(["resume"]);
    await waitFor("an interval checkpoint after resume", () => intervals() === 3, 10_000);
    const latest = ok(["checkpoint", "show", "latest", "--json"]);
    expect(latest.manifest).toMatchObject({ trigger: "interval", description: "every 1 s" });
  });

  it("a third-party plugin adds a trigger: every 2 completed tasks, an everyNTasks checkpoint; its failures never loop", () => {
    project = new Project(
      config({
        plugins: [
          "  checkpoint:",
          "    triggers: [onError]",
          `  ${JSON.stringify(join(PLUGIN_FIXTURES, "every-n-tasks-checkpoint.mjs"))}:`,
          "    n: 2",
          "    fail_on_hook: afterMilestone",
        ],
      }),
    );
    const session = project.start(["--task", "third-party trigger"]).session_id;
    for (const title of ["one", "two", "three", "four", "five"]) ok(["task", "add", title]);
    for (const id of ["t-0001", "t-0002"]) {
      ok(["task", "claim", "--agent", "worker"]);
      ok(["task", "done", id]);
    }
    expect(list().total).toBe(0); // no built-in trigger configured, fewer than 2 completed at each claim
    ok(["task", "claim", "--agent", "worker"]); // 2 completed: the trigger fires before t-0003 is assigned
    expect(list().items).toEqual([expect.objectContaining({ trigger: "everyNTasks", description: "after 2 completed tasks" })]);
    expect(ok(["checkpoint", "show", "latest", "--json"]).tasks["t-0003"]).toMatchObject({ status: "pending" });
    ok(["task", "done", "t-0003"]);
    ok(["task", "claim", "--agent", "worker"]); // 3 completed: no new multiple of 2
    expect(list().total).toBe(1);

    // The trigger plugin failing is reported (an error event naming it) but neither vetoes the
    // milestone nor takes an onError checkpoint (which would fire the failing tap again).
    expect(ok(["milestone", "halfway"])).toContain("halfway");
    const errors = Object.values(ok(["memory", "query", `/sessions/${session}/events/*`, "--json"]) as Record<string, { type: string; origin?: string }>).filter(
      (event) => event.type === "error",
    );
    expect(errors).toEqual([expect.objectContaining({ origin: "plugin:every-n-tasks-checkpoint" })]);
    expect(list().total).toBe(1);
    // Other errors still take their onError checkpoint.
    ok(["task", "fail", "t-0004", "--reason", "broken"]);
    expect(list().items.map((item) => item.trigger)).toEqual(["onError", "everyNTasks"]);
  });

  it("checkpoints a hook takes without a supervisor run beforeCheckpoint (git state) and afterCheckpoint (retention)", async () => {
    project = new Project(
      config({
        plugins: ["  checkpoint:", "    triggers: [beforeTask]", "  git: {}", "  retention:", "    keep_last: 1", "    by_trigger: {manual: {keep_last: 1}}", "    auto_cleanup: true"],
      }),
    );
    for (const args of [["init", "-q", "-b", "main"], ["add", "apex.config.yaml"], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "config"]]) {
      execFileSync("git", args, { cwd: project.dir });
    }
    const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: project.dir, encoding: "utf8" }).trim();
    const ready = project.start(["--task", "hooks without a supervisor"]);
    ok(["checkpoint", "create", "one"]);
    ok(["checkpoint", "create", "two"]);
    await supervisorKilled(ready.supervisor_pid);

    // No supervisor runs: `task claim` fires beforeTask in this CLI process.
    ok(["task", "add", "offline work"]);
    ok(["task", "claim", "--agent", "worker"]);
    const items = list().items;
    // Retention ran here: of the manual checkpoints (given a rule of their own) it kept the latest only.
    expect(items.map((item) => [item.trigger, item.description])).toEqual([["beforeTask", expect.any(String)], ["manual", "two"]]);
    expect(list()).toMatchObject({ total: 2, taken: 3 });
    expect(ok(["checkpoint", "list"])).toContain("(2 kept of 3 taken, newest first)");
    expect(ok(["checkpoint", "show", "latest", "--json"]).manifest.git_state).toMatchObject({ branch: "main", commit: head });
  });
});

describe("the onStop trigger", () => {
  /** A value of a checkpoint's memory, read from the store (no supervisor may run). */
  async function valueIn(checkpointId: string, path: string): Promise<unknown> {
    const store = Store.open(project!.storeDir, { readOnly: true });
    try {
      return getCheckpointValue(store, checkpointId, path);
    } finally {
      await store.close();
    }
  }

  it("saves the session's final state just before it ends, with its supervisor and without it", async () => {
    project = new Project(config({ plugins: ["  checkpoint:", "    triggers: [onStop]"] }));
    const first = project.start().session_id;
    ok(["memory", "set", "/notes/final", JSON.stringify("written last")]);
    const stopped = project.apex(["stop"]);
    expect(stopped.status).toBe(0);
    expect(stopped.stderr).toBe(""); // no warning that the trigger is ignored
    const saved = list(["--session", first]).items;
    expect(saved[0]).toMatchObject({ trigger: "onStop", description: "session end: stopped by the user" });
    expect(await valueIn(saved[0]!.id, "/notes/final")).toBe("written last");

    // The supervisor killed: `apex stop` ends the session itself, and still saves it first.
    const ready = project.start();
    ok(["memory", "set", "/notes/final", JSON.stringify("written before the crash")]);
    await supervisorKilled(ready.supervisor_pid);
    ok(["stop"]);
    const second = list(["--session", ready.session_id]).items;
    expect(second[0]).toMatchObject({ trigger: "onStop", description: "session end: stopped by the user (the supervisor was not running)" });
    expect(await valueIn(second[0]!.id, "/notes/final")).toBe("written before the crash");
    // Continuing it starts from exactly that state.
    expect(ok(["start", "--continue", ready.session_id, "--json"])).toMatchObject({ session_id: ready.session_id });
    expect(memory("/notes/final")).toBe("written before the crash");
  });
});

describe("apex start --continue", () => {
  it("retention never removes the checkpoint a restore is reading, even when keep_last: 1 would", async () => {
    project = new Project(config({ plugins: ["  checkpoint: {}", "  retention:", "    keep_last: 1", "    auto_cleanup: true"] }));
    const ready = project.start(["--task", "retention while continuing"]);
    ok(["memory", "set", "/project/x", "1"]);
    const target = ok(["checkpoint", "create", "x is 1", "--json"]) as { id: string; name: string };
    ok(["memory", "set", "/project/x", "2"]);
    await supervisorKilled(ready.supervisor_pid);

    // The state being replaced is checkpointed first; with keep_last: 1 that would make the target removable.
    const continued = ok(["start", "--continue", target.id, "--json"]);
    project.remember();
    expect(continued).toMatchObject({ continued: true, restored_from: target.id });
    expect(continued.restore).toMatchObject({ id: target.id, saved_before: expect.any(String) });
    expect(memory("/project/x")).toBe(1);
    // Held while it was read; since then kept as a manual checkpoint and as the session's base.
    // The replaced state (beforeRestore) is kept too, whatever keep_last says.
    expect(list().items.map((item) => [item.trigger, item.kept_by])).toEqual([
      ["restore", ["latest", "last"]],
      ["beforeRestore", ["before restore"]],
      ["manual", ["manual", `base of ${ready.session_id}`]],
    ]);
  });

  it("after kill -9: restores memory exactly, active tasks go back to their agent, agents get their saved context; the replaced state is saved", async () => {
    project = new Project(config());
    const ready = project.start(["--task", "survive a crash"]);
    ok(["task", "add", "first"]);
    ok(["task", "add", "second"]);
    ok(["task", "claim", "--agent", "worker"]);
    ok(["agent", "report", "--agent", "worker", "--context", '{"note": "at the checkpoint", "step": 3}']);
    ok(["memory", "set", "/notes/a", "1"]);
    const saved = ok(["checkpoint", "create", "known good", "--json"]);
    // Work after the checkpoint, lost in the crash as far as the restore is concerned.
    ok(["memory", "set", "/notes/a", "2"]);
    ok(["memory", "set", "/notes/b", "3"]);
    ok(["task", "done", "t-0001"]);
    ok(["agent", "report", "--agent", "worker", "--context", '{"note": "later"}']);
    const oldWorker = ready.agents[0]!;

    await supervisorKilled(ready.supervisor_pid);
    const continued = ok(["start", "--continue", "last", "--json"]);
    project.remember();
    expect(continued).toMatchObject({ session_id: ready.session_id, continued: true, restored_from: saved.id });
    expect(continued.restore).toMatchObject({ id: saved.id, name: "checkpoint-002", forced: false, tasks: { active: [{ id: "t-0001", assignee: "worker" }] } });
    expect(continued.reaped.map((item: { agent: string }) => item.agent)).toEqual(["worker"]);
    expect(isAlive(oldWorker.pid!)).toBe(false);
    expect(groupMembers(oldWorker.pgid!)).toEqual([]);

    // Memory exactly as it was at the checkpoint.
    expect(memory("/notes/a")).toBe(1);
    expect(memory("/notes/b")).toBeUndefined();
    // The active task went back to its agent, which got its saved context and the task.
    expect(ok(["task", "show", "t-0001", "--json"])).toMatchObject({ status: "active", assignee: "worker" });
    expect(ok(["task", "show", "t-0002", "--json"])).toMatchObject({ status: "pending" });
    const agent = ok(["agent", "list", "--json"]).find((item: { name: string }) => item.name === "worker");
    expect(agent).toMatchObject({ task: "t-0001" });
    const resume = await waitFor("the worker's resume files", () => {
      try {
        return { context: JSON.parse(readFileSync(join(project!.dir, "resume-worker.json"), "utf8")), task: readFileSync(join(project!.dir, "task-worker.txt"), "utf8") };
      } catch {
        return undefined;
      }
    });
    expect(resume).toEqual({ context: { note: "at the checkpoint", step: 3 }, task: "t-0001" });
    expect(project.status()).toMatchObject({ session: { session_id: ready.session_id, status: "active", restored_from: saved.id }, tasks: { active: 1, pending: 1, completed: 0 } });

    // The state the restore replaced was checkpointed first; the restored one is the latest now.
    const items = list().items;
    expect(items.slice(0, 2).map((item) => [item.name, item.trigger])).toEqual([
      ["checkpoint-004", "restore"],
      ["checkpoint-003", "beforeRestore"],
    ]);
    const replaced = ok(["checkpoint", "diff", "checkpoint-002", "checkpoint-003", "--json"]);
    expect(replaced.memory).toEqual({ added: ["/notes/b"], removed: [], changed: ["/notes/a"] });
    expect(ok(["checkpoint", "diff", "checkpoint-002", "checkpoint-004", "--json"]).memory).toEqual({ added: [], removed: [], changed: [] });
    // The session kept its id and recorded the resume.
    const record = memory(`/sessions/${ready.session_id}`) as { history: Array<Record<string, unknown>> };
    expect(record.history.map((entry) => entry.event)).toEqual(["started", "continued"]);
    expect(record.history[1]).toMatchObject({ from: "interrupted", checkpoint: saved.id });

    // `--continue` of a checkpoint by id goes back to it (here: the saved state of the crash).
    ok(["stop"]);
    const back = ok(["start", "--continue", items[1]!.id.slice(0, 8), "--json"]);
    project.remember();
    expect(back).toMatchObject({ session_id: ready.session_id, restored_from: items[1]!.id });
    expect(memory("/notes/b")).toBe(3);
    expect(ok(["task", "show", "t-0001", "--json"])).toMatchObject({ status: "completed" });
  });

  it("--force-recovery restores what still verifies of a damaged checkpoint and lists what was lost; validate, repair, reconstruct", async () => {
    project = new Project(config());
    const ready = project.start(["--task", "damage"]);
    const sid = ready.session_id;
    ok(["task", "add", "keep me"]);
    ok(["memory", "set", "/keep/a", "1"]);
    ok(["memory", "set", "/old/x", '"v1"']);
    const first = ok(["checkpoint", "create", "one", "--json"]);
    ok(["memory", "set", "/old/x", '"v2"']);
    ok(["memory", "set", "/keep/a", "5"]);
    const second = ok(["checkpoint", "create", "two", "--json"]);
    ok(["stop"]);
    expect(ok(["session", "validate"])).toContain("The project store is valid: 2 checkpoints, 2 verify");

    // "v1" is held by checkpoint-001 only.
    const hash = await damageValue(first.id, "/old/x");
    const invalid = fails(["session", "validate", sid.slice(0, 8), "--json"], 1);
    const report = JSON.parse(invalid.stdout);
    expect(report).toMatchObject({ session_id: sid, ok: false, checkpoints: { total: 2, verified: 1 } });
    expect(report.problems).toEqual([expect.objectContaining({ code: "value-corrupt", hash, path: "/old/x", checkpoint: `${sid}/checkpoint-001` })]);
    const text = fails(["session", "validate"], 1).stdout;
    expect(text).toContain("value-corrupt");
    expect(text).toContain(`${sid}/checkpoint-001 (${first.id.slice(0, 8)}): its memory tree references damaged objects`);

    // A plain --continue refuses it before anything changes.
    const refused = fails(["start", "--continue", first.id], 1);
    expect(refused.stderr).toContain("checkpoint-001 does not verify");
    expect(refused.stderr).toContain(`apex start --force-recovery ${first.id}`);
    expect(ok(["session", "history", "--json"])[0]).toMatchObject({ session_id: sid, status: "stopped" });

    // --force-recovery: what was lost is printed before the agents start.
    const recovered = project.apex(["start", "--force-recovery", `${sid}/checkpoint-001`]);
    project.remember();
    expect(recovered.status, recovered.stderr).toBe(0);
    const out = recovered.stdout;
    expect(out).toContain(`Force recovery from ${sid}/checkpoint-001`);
    expect(out).toContain(`memory  /old/x: value ${hash.slice(0, 12)} is corrupt`);
    expect(out.indexOf("Lost (1):")).toBeLessThan(out.indexOf("continued (supervisor pid"));
    expect(out).toContain("recovered from");
    expect(memory("/keep/a")).toBe(1); // restored from the checkpoint
    expect(memory("/old/x")).toBe("v2"); // lost from the checkpoint: its current value stays
    expect(ok(["task", "list", "--json"]).map((task: { title: string }) => task.title)).toEqual(["keep me"]);
    // Nothing changed since checkpoint-002, so no copy of the replaced state was needed.
    expect(list().items.map((item) => [item.name, item.trigger, item.description])).toEqual([
      ["checkpoint-003", "recovery", `force-recovered from ${sid}/checkpoint-001: 1 item lost`],
      ["checkpoint-002", "manual", "two"],
      ["checkpoint-001", "manual", "one"],
    ]);

    // Repair needs the session stopped; --dry-run does not.
    expect(fails(["session", "repair"], 4).stderr).toContain("repair needs it stopped");
    const plan = ok(["session", "repair", sid, "--dry-run", "--json"]);
    expect(plan.dry_run).toBe(true);
    expect(plan.actions).toEqual(expect.arrayContaining([expect.objectContaining({ action: "remove-checkpoint", target: `${sid}/checkpoint-001` })]));
    expect(plan.actions.filter((action: { action: string }) => action.action === "remove-checkpoint")).toHaveLength(1);
    ok(["stop"]);
    const repaired = ok(["session", "repair", sid]);
    expect(repaired).toContain("Removed 1 checkpoint that does not verify; kept 2 that verify");
    expect(repaired).toContain("The store is valid now.");
    ok(["session", "validate"]);
    expect(list().items.map((item) => item.name)).toEqual(["checkpoint-003", "checkpoint-002"]);

    // Reconstruct from damaged live records: the task comes from the checkpoint, the memory value is named as missing.
    await undecodable(`/sessions/${sid}/tasks/t-0001`);
    await undecodable("/notes/only-live");
    expect(fails(["session", "validate", sid], 1).stdout).toContain("record-undecodable");
    const rebuilt = ok(["session", "reconstruct", sid.slice(0, 8), "--json"]);
    expect(rebuilt).toMatchObject({ sessionId: `${sid}-r1`, from: { sessionId: sid, checkpoint: { name: "checkpoint-003" } }, current: true });
    expect(rebuilt.tasks).toEqual([{ id: "t-0001", source: "checkpoint" }]);
    expect(rebuilt.missing).toEqual(["Memory /notes/only-live: the value cannot be decoded and no verifying checkpoint has it."]);
    expect(list(["--session", `${sid}-r1`]).items.map((item) => item.trigger)).toEqual(["reconstruct"]);
    ok(["session", "validate", `${sid}-r1`]);
    expect(fails(["session", "reconstruct", "nosuchsession"], 3).stderr).toContain("APEX_E_NO_SESSION");
  });

  it("session.auto_recovery: the next status, or start, continues an interrupted session from its latest checkpoint", async () => {
    project = new Project(config({ autoRecovery: true }));
    const ready = project.start(["--task", "auto"]);
    ok(["memory", "set", "/state", '"checkpointed"']);
    const saved = ok(["checkpoint", "create", "good", "--json"]);
    ok(["memory", "set", "/state", '"lost in the crash"']);
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(ready.supervisor_pid), 5000);

    const status = project.apex(["status", "--json"]);
    project.remember();
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stderr.trim())).toMatchObject({ notice: { auto_recovery: true, session_id: ready.session_id, checkpoint: { id: saved.id } } });
    const shown = JSON.parse(status.stdout);
    expect(shown.session).toMatchObject({ session_id: ready.session_id, status: "active", restored_from: saved.id });
    expect(shown.session.supervisor.pid).not.toBe(ready.supervisor_pid);
    expect(memory("/state")).toBe("checkpointed");
    // A status with nothing interrupted does nothing of the sort.
    expect(project.apex(["status"]).stderr).toBe("");

    // `apex start --task …` recovers it too, and says why no new session started.
    process.kill(shown.session.supervisor.pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(shown.session.supervisor.pid), 5000);
    const start = project.apex(["start", "--task", "something new"]);
    project.remember();
    expect(start.status).toBe(4);
    expect(start.stderr).toContain(`notice: session ${ready.session_id} was interrupted; auto_recovery continued it`);
    expect(start.stderr).toContain("No new session was started");
    expect(start.stdout).toContain(`Session ${ready.session_id} continued`);
    expect(project.status().session).toMatchObject({ session_id: ready.session_id, status: "active" });
  });
});
