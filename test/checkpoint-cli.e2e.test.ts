// Checkpoints and recovery through the real CLI: `apex checkpoint …`, checkpoints taken by
// lifecycle hooks and by the interval timer, `apex start --continue` after a kill -9 of the
// supervisor, `--force-recovery` of a damaged checkpoint, `apex session validate|repair|
// reconstruct`, session.auto_recovery, and a third-party trigger. Real processes in temporary
// projects; every process is ended by pid or process group in afterEach.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { ObjectStore, lookupEntry } from "../plugins/checkpoint/engine/objects.js";
import { openStore } from "../core/store/open.js";
import { getCheckpoint, getCheckpointValue } from "../plugins/checkpoint/checkpoints.js";
import { FIXTURES, Project, groupMembers, isAlive, waitFor, type CliResult } from "./fixtures/agents/harness.js";
import { REPO_ROOT } from "./helpers/cli.js";
import { callSupervisor } from "../core/rpc/call.js";
import type { JsonValue } from "../core/store/store.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { manifestPath, signManifest } from "../plugins/checkpoint/manifest.js";
import type { ApexError } from "../core/errors.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

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
  const store = await openStore(project!.storeDir);
  try {
    const manifest = getCheckpoint(store, checkpointId);
    const objects = ObjectStore.of(store);
    const hash = lookupEntry(objects.view(), manifest.memory.root, path.slice(1).split("/"))!.value!;
    const location = objects.locate("value", hash)!;
    const pack = Buffer.from(objects.packs.get(location.pack)!);
    pack[location.offset + 1] = pack[location.offset + 1]! ^ 0x20;
    await store.transaction(() => objects.packs.put(location.pack, pack));
    return hash;
  } finally {
    await store.close();
  }
}

/** Writes bytes that do not decode as a record under `path` (no supervisor may run). */
async function undecodable(path: string): Promise<void> {
  const store = await openStore(project!.storeDir);
  try {
    const raw = store.table("kv", { keys: "string", values: "binary" });
    await store.transaction(() => raw.put(path, Buffer.from([0xc1])));
  } finally {
    await store.close();
  }
}

describe("apex checkpoint", () => {
  it("create, list, show and diff; beforeTask, onError and onPause take checkpoints; clear errors", async () => {
    project = new Project(config());
    const ready = project.start(["--task", "checkpoint commands"]); // the start takes checkpoint-001 (onStart)
    ok(["task", "add", "first"]);
    ok(["task", "add", "second"]);
    // A claim takes a beforeTask checkpoint before the task is assigned.
    expect(ok(["task", "claim", "--agent", "worker", "--json"])).toMatchObject({ id: "t-0001", status: "active", assignee: "worker" });
    expect(list().items[0]).toMatchObject({ name: "checkpoint-002", trigger: "beforeTask", description: "before task t-0001: first (worker)" });

    ok(["memory", "set", "/notes/plan", '{"step": 1}']);
    const created = ok(["checkpoint", "create", "Before major refactoring", "--pin", "--json"]);
    expect(created).toMatchObject({ name: "checkpoint-003", trigger: "manual", description: "Before major refactoring", pinned: true, session_id: ready.session_id, task_count: 2 });
    ok(["memory", "set", "/notes/plan", '{"step": 2}']);
    ok(["memory", "set", "/notes/extra", "true"]);
    ok(["task", "done", "t-0001"]);
    // -m gives the description, as git commit -m does (there was no such option: "unknown option '-m'").
    expect(ok(["checkpoint", "create", "-m", "after the refactoring"])).toContain("Created checkpoint-004");
    expect(fails(["checkpoint", "create", "one", "-m", "two", "--json"], 2).stderr).toContain('"code":"APEX_E_USAGE","message":"Give the description once: as the argument (\\"one\\") or with -m (\\"two\\"), not both."');

    const all = list();
    expect(all).toMatchObject({ session_id: ready.session_id, total: 4 });
    expect(all.items.map((item) => item.name)).toEqual(["checkpoint-004", "checkpoint-003", "checkpoint-002", "checkpoint-001"]);
    expect(all.items[0]).toMatchObject({ trigger: "manual", description: "after the refactoring" });
    expect(list(["--oldest", "--limit", "1", "--offset", "2"]).items.map((item) => item.name)).toEqual(["checkpoint-003"]);
    const text = ok(["checkpoint", "list", "--limit", "2"]);
    expect(text).toMatch(/checkpoint-003 +[0-9a-f]{8} +\S+ +manual +pinned +Before major refactoring/);
    expect(text).toContain("Showing 1–2 of 4; next page: apex checkpoint list --offset 2 --limit 2");
    // The session as session list prints it, its uuid's short form (it printed the whole id); --json has it whole, with session_name.
    expect(text).toContain(`Checkpoints of session ${ready.session_id.slice(0, 8)} (4, newest first)`);
    expect(text).not.toContain(ready.session_id);
    expect(all).toMatchObject({ session_name: null });

    // show: by name, by unique id prefix, latest.
    const shown = ok(["checkpoint", "show", "checkpoint-003", "--json"]);
    expect(shown.manifest).toMatchObject({ id: created.id, description: "Before major refactoring", trigger: "manual", pinned: true });
    expect(shown.tasks["t-0001"]).toMatchObject({ status: "active", assignee: "worker" });
    expect(ok(["checkpoint", "show", created.id.slice(0, 8), "--json"]).manifest.id).toBe(created.id);
    expect(ok(["checkpoint", "show", "latest", "--json"]).manifest.name).toBe("checkpoint-004");
    const shownText = ok(["checkpoint", "show", "checkpoint-003"]);
    expect(shownText).toMatch(/t-0001 +active +\(worker\) first/);
    expect(shownText).toContain(`\n  session      ${ready.session_id.slice(0, 8)}\n`);
    expect(shownText).not.toContain(ready.session_id);
    expect(shown).toMatchObject({ session_id: ready.session_id, session_name: null });

    // diff: memory paths, task and agent changes.
    const diff = ok(["checkpoint", "diff", "checkpoint-003", "latest", "--json"]);
    expect(diff.memory).toEqual({ added: ["/notes/extra"], removed: [], changed: ["/notes/plan"] });
    // Named as every other --json names a checkpoint (it had only camelCase sessionId).
    expect(diff.from).toMatchObject({ name: "checkpoint-003", session_id: diff.to.session_id, sequence: 3, id: expect.any(String) });
    expect(diff.tasks.changed).toEqual([expect.objectContaining({ id: "t-0001", before: expect.objectContaining({ status: "active" }), after: expect.objectContaining({ status: "completed" }) })]);
    expect(diff.agents.changed.map((change: { id: string }) => change.id)).toEqual(["worker"]);
    const diffText = ok(["checkpoint", "diff", "checkpoint-003", "checkpoint-004"]);
    expect(diffText).toContain("Memory: 1 added, 0 removed, 1 changed");
    expect(diffText).toContain("  + /notes/extra");
    expect(diffText).toContain("  ~ t-0001: status active → completed");
    expect(diffText).toContain("  ~ worker: task t-0001 → -");

    // A failed task fires onError: one checkpoint, no loop.
    ok(["task", "fail", "t-0002", "--reason", "tests are red"]);
    const afterError = list().items[0]!;
    expect(afterError).toMatchObject({ trigger: "onError" });
    expect(afterError.description).toMatch(/^error in user:\S+: Task t-0002 \(second\) failed: tests are red$/);
    expect(list().total).toBe(5);

    // Pause takes an onPause checkpoint (with the agents stopped); pin, unpin and delete.
    ok(["pause"]);
    expect(list().items[0]).toMatchObject({ name: "checkpoint-006", trigger: "onPause", description: "pause" });
    ok(["resume"]);
    expect(ok(["checkpoint", "unpin", "checkpoint-003", "--json"])).toMatchObject({ pinned: false });
    expect(ok(["checkpoint", "pin", "checkpoint-004", "--json"])).toMatchObject({ pinned: true, session_id: ready.session_id, session_name: null });
    expect(ok(["checkpoint", "pin", "checkpoint-004"])).toBe(`${ready.session_id.slice(0, 8)}/checkpoint-004 is pinned: retention never deletes it.\n`);
    // An unpin of a checkpoint never pinned said it "is no longer pinned".
    expect(ok(["checkpoint", "unpin", "checkpoint-005"])).toBe(`${ready.session_id.slice(0, 8)}/checkpoint-005 is not pinned (it was not pinned before either): nothing changed.\n`);
    expect(ok(["checkpoint", "unpin", "checkpoint-005", "--json"])).toMatchObject({ pinned: false, was_pinned: false });
    expect(ok(["checkpoint", "unpin", "checkpoint-004"])).toBe(`${ready.session_id.slice(0, 8)}/checkpoint-004 is no longer pinned.\n`);
    expect(ok(["checkpoint", "pin", "checkpoint-004", "--json"])).toMatchObject({ pinned: true, was_pinned: false });
    expect(fails(["checkpoint", "delete", "checkpoint-004"], 4).stderr).toContain("is pinned");
    expect(ok(["checkpoint", "delete", "checkpoint-002", "--json"])).toMatchObject({ name: "checkpoint-002", sequence: 2, session_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(list().items.map((item) => item.name)).toEqual(["checkpoint-006", "checkpoint-005", "checkpoint-004", "checkpoint-003", "checkpoint-001"]);

    // Errors: not found 3, ambiguous 4, too short a prefix 2.
    expect(fails(["checkpoint", "show", "checkpoint-099"], 3).stderr).toContain("No checkpoint-099 in session");
    expect(fails(["checkpoint", "show", "abcdef12"], 3).stderr).toContain("APEX_E_CHECKPOINT_NOT_FOUND");
    expect(fails(["checkpoint", "show", "ab"], 2).stderr).toContain("too short");
    // A prefix longer than any id (here past LMDB's key size) is not found, not an internal error.
    for (const args of [["checkpoint", "show", "a".repeat(3000)], ["checkpoint", "diff", "latest", "b".repeat(3000)], ["checkpoint", "show", `${ready.session_id.slice(0, 8)}/${"c".repeat(3000)}`]]) {
      expect(fails(args, 3).stderr).toContain("error[APEX_E_CHECKPOINT_NOT_FOUND]: No checkpoint id starts with");
    }
    expect(fails(["checkpoint", "list", "--limit", "0"], 2).stderr).toContain("Expected a whole number ≥ 1");
    // A session id prefix too short to name one: said so (it read as if no such session existed).
    const short = ready.session_id.slice(0, 3);
    expect(fails(["checkpoint", "diff", `${short}/latest`, "latest"], 3).stderr).toContain(`No session "${short}" in this project (an id prefix names a session from 4 characters on)`);
    expect(fails(["checkpoint", "list", "--session", short], 3).stderr).toContain("hint: Give at least 4 characters of the session id");
    // A description longer than is kept is refused, nothing saved (it was cut to 240 characters without a word).
    const tooLong = fails(["checkpoint", "create", "d".repeat(241), "--json"], 2);
    expect(JSON.parse(tooLong.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: "The checkpoint description is 241 characters long; at most 240 are kept.", details: { length: 241, limit: 240 } });
    expect(list().total).toBe(5);
    // One that is kept is cut to the row in the list (it printed whole on every row), whole in --json; on one line, its controls escaped.
    const long = `line one\nline two \u001b[2J ${"w".repeat(200)}`;
    ok(["checkpoint", "create", long]);
    expect(list().items[0]!.description).toBe(long.replace(/\s+/g, " "));
    const row = project.apex(["checkpoint", "list", "--limit", "1"], { env: { COLUMNS: "100" } }).stdout.split("\n").find((line: string) => line.startsWith("checkpoint-007"))!;
    expect(row).toMatch(/manual +line one line two \\u001b\[2J w+…$/);
    expect(row.length).toBe(100);
    // Piped without COLUMNS, whole: grep finds what was written.
    expect(project.apex(["checkpoint", "list", "--limit", "1"], { env: { COLUMNS: "" } }).stdout).toMatch(/manual +line one line two \\u001b\[2J w{200}$/m);
    ok(["stop"]);
    // Listing works on an ended session too (the one that ended last).
    expect(list().session_id).toBe(ready.session_id);
    expect(fails(["checkpoint", "create", "no session"], 3).stderr).toContain("APEX_E_NO_SESSION");
    // Two ids sharing a prefix: ambiguous.
    const twin = `${created.id.slice(0, 8)}-ffff-4fff-8fff-ffffffffffff`;
    const store = await openStore(project.storeDir);
    try {
      const catalog = store.table<Array<string | number>, unknown>("checkpoints", { keys: "tuple", values: "structured" });
      await store.transaction(() => catalog.put(["i", twin], { s: ready.session_id, n: 4 }));
    } finally {
      await store.close();
    }
    const ambiguous = fails(["checkpoint", "show", created.id.slice(0, 8)], 2);
    expect(ambiguous.stderr).toContain("APEX_E_AMBIGUOUS");
    expect(ambiguous.stderr).toContain(created.id);
  }, 120_000);

  it("a description is counted and cut in characters, an emoji one: 240 emoji are kept, a milestone's is cut between two, never inside one", () => {
    project = new Project(config());
    project.start(["--task", "emoji descriptions"]);
    // 240 emoji are 240 characters (the README's count, "an emoji is one"): kept whole. They were counted as 480 and refused.
    const emoji = "\u{1F600}";
    expect(ok(["checkpoint", "create", emoji.repeat(240), "--json"])).toMatchObject({ description: emoji.repeat(240) });
    const tooLong = fails(["checkpoint", "create", emoji.repeat(241), "--json"], 2);
    expect(JSON.parse(tooLong.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: "The checkpoint description is 241 characters long; at most 240 are kept.", details: { length: 241, limit: 240 } });
    // A description APEX writes (afterMilestone: "after milestone: <text>") is cut to 239 characters and an ellipsis:
    // after "after milestone: x" (18), 221 whole emoji. It was cut at 239 UTF-16 units, inside an emoji, keeping its
    // first half (an unpaired surrogate, printed as U+FFFD).
    ok(["milestone", `x${emoji.repeat(300)}`]);
    const taken = list().items[0]!;
    expect(taken.trigger).toBe("afterMilestone");
    expect(taken.description).toBe(`after milestone: x${emoji.repeat(221)}…`);
    expect(ok(["checkpoint", "show", "latest"])).toContain(`description  after milestone: x${emoji.repeat(221)}…\n`);
    // Its catalog summary agrees with its manifest (the half emoji made them differ: index-mismatch).
    expect(ok(["session", "validate"])).toContain("is valid");
  });

  it("a description never holds an unpaired surrogate, which the checkpoint catalog cannot keep: one given is refused, one in a text a description is made of is U+FFFD; the store validates (it did not, and repair could not mend it)", async () => {
    project = new Project(config());
    const ready = project.start(["--task", "unpaired surrogates"]);
    // JSON's escapes carry an unpaired surrogate, which a command line cannot (arguments must be UTF-8): an agent's
    // client of the socket, or `apex serve`'s, can send one. The catalog's summary of the checkpoint kept U+FFFD
    // for it and its manifest the surrogate: validate found them differing (index-mismatch), and repair's rebuild
    // of the summary wrote U+FFFD again.
    const refused = await callSupervisor(ready.socket, "checkpoint.create", { description: "api \udc00 description" }).then(() => undefined, (error: unknown) => error as ApexError);
    expect(refused).toMatchObject({ code: "APEX_E_BAD_INPUT", message: expect.stringContaining("unpaired surrogate (U+DC00)") });
    expect(list().total).toBe(1);
    // A milestone's text keeps it (its record holds it exactly); the afterMilestone checkpoint's description has U+FFFD there.
    expect(await callSupervisor(ready.socket, "milestone.add", { text: "half \ud83d of an emoji", task: null, actor: "user:test" })).toMatchObject({ text: "half \ud83d of an emoji" });
    await waitFor("the afterMilestone checkpoint", () => list().items[0]?.trigger === "afterMilestone", 10_000);
    expect(list().items[0]!.description).toBe("after milestone: half \ufffd of an emoji");
    expect(ok(["session", "validate"])).toContain("is valid");
    ok(["stop"]);
    // Checkpoints an older APEX wrote with one in their descriptions (their manifests keep it, their catalog summaries
    // hold U+FFFD for it: one in a long string, three in a short one) validate: the summary is what the catalog can
    // keep of the manifest. They were index-mismatch, which repair's rebuild of the summary did not mend.
    const store = await openStore(project.storeDir);
    const emoji = "\u{1F600}";
    try {
      const [latest, previous] = list().items;
      const catalog = store.table<Array<string | number>, unknown>("checkpoints", { keys: "tuple", values: "structured" });
      await store.transaction(() => {
        for (const [item, description] of [[latest!, "after milestone: x\ud83d…"], [previous!, `after milestone: x${emoji.repeat(220)}\ud83d…`]] as const) {
          const { hash: _hash, ...unsigned } = getCheckpoint(store, item.id);
          const older = signManifest({ ...unsigned, description });
          store.batchSync((batch) => batch.set(manifestPath(older.session_id, older.sequence), older as unknown as JsonValue));
          // The summary as the older APEX wrote it: the description as it was, the surrogate in it.
          catalog.put(["s", older.session_id, older.sequence], { ...(Catalog.of(store).summary(older.session_id, older.sequence) as object), description, manifest_hash: older.hash });
        }
      });
    } finally {
      await store.close();
    }
    expect(ok(["checkpoint", "show", "latest", "--json"])).toMatchObject({ description: "after milestone: x\ud83d…" });
    expect(ok(["session", "validate"])).toContain("is valid");
  });

  it("interval checkpoints: taken while something changed, skipped when nothing did, none while paused", async () => {
    project = new Project(config());
    // The supervisor takes its interval from the environment of `apex start`.
    const started = project.apex(["start", "--task", "interval", "--json"], { env: { APEX_CHECKPOINT_INTERVAL: "1" } });
    project.remember();
    expect(started.status, started.stderr).toBe(0);
    const intervals = () => list().items.filter((item) => item.trigger === "interval").length;
    // The start's onStart checkpoint holds the state, and nothing changes: the ticks write nothing.
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a tick and a half
    expect(intervals()).toBe(0);
    ok(["memory", "set", "/notes/n", "0"]);
    await waitFor("the first interval checkpoint", () => intervals() === 1, 10_000);
    // Nothing changes: the next ticks write nothing.
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a tick and a half
    expect(intervals()).toBe(1);
    ok(["memory", "set", "/notes/n", "1"]);
    await waitFor("an interval checkpoint of the change", () => intervals() === 2, 10_000);

    ok(["pause"]);
    expect(list().items[0]!.trigger).toBe("onPause");
    ok(["memory", "set", "/notes/n", "2"]); // a change while paused: the timer is stopped all the same
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a tick and a half
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
    expect(list().total).toBe(1); // the start's onStart only: no built-in trigger configured, fewer than 2 completed at each claim
    ok(["task", "claim", "--agent", "worker"]); // 2 completed: the trigger fires before t-0003 is assigned
    expect(list().items).toEqual([expect.objectContaining({ trigger: "everyNTasks", description: "after 2 completed tasks" }), expect.objectContaining({ trigger: "onStart" })]);
    expect(ok(["checkpoint", "show", "latest", "--json"]).tasks["t-0003"]).toMatchObject({ status: "pending" });
    ok(["task", "done", "t-0003"]);
    ok(["task", "claim", "--agent", "worker"]); // 3 completed: no new multiple of 2
    expect(list().total).toBe(2);

    // The trigger plugin failing is reported (an error event naming it) but neither vetoes the
    // milestone nor takes an onError checkpoint (which would fire the failing tap again).
    expect(ok(["milestone", "halfway"])).toContain("halfway");
    const errors = Object.values(ok(["memory", "query", `/sessions/${session}/events/*`, "--json"]) as Record<string, { type: string; origin?: string }>).filter(
      (event) => event.type === "error",
    );
    expect(errors).toEqual([expect.objectContaining({ origin: "plugin:every-n-tasks-checkpoint" })]);
    expect(list().total).toBe(2);
    // Other errors still take their onError checkpoint.
    ok(["task", "fail", "t-0004", "--reason", "broken"]);
    expect(list().items.map((item) => item.trigger)).toEqual(["onError", "everyNTasks", "onStart"]);
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
    // Retention ran here: of the manual checkpoints (given a rule of their own) it kept the latest
    // only; the session's first checkpoint is the last of its own trigger.
    expect(items.map((item) => [item.trigger, item.description])).toEqual([["beforeTask", expect.any(String)], ["manual", "two"], ["onStart", "session start"]]);
    expect(list()).toMatchObject({ total: 3, taken: 4 });
    expect(ok(["checkpoint", "list"])).toContain("(3 kept of 4 taken, newest first)");
    expect(ok(["checkpoint", "show", "latest", "--json"]).manifest.git_state).toMatchObject({ branch: "main", commit: head });
  });

  it("an error the supervisor answered checkpoint create with, just before it ended, is that error, though its text says a connection closed (told by details.connection, not the message)", () => {
    // A plugin whose upload fails with a connection reset, in a supervisor killed right after it answered.
    const errors = pathToFileURL(join(REPO_ROOT, "dist/core/errors.js")).href;
    project = new Project(config({ plugins: ["  checkpoint: {}", "  ./upload.mjs: {}"] }));
    writeFileSync(
      join(project.dir, "upload.mjs"),
      [
        'import { existsSync } from "node:fs";',
        `import { ApexError } from ${JSON.stringify(errors)};`,
        'export default { name: "upload", apply(apex) {',
        '  apex.hooks.beforeCheckpoint.tapPromise("upload", async (x) => {',
        '    if (!existsSync("fail")) return x;',
        '    setTimeout(() => process.kill(process.pid, "SIGKILL"), 100);',
        '    throw new ApexError("APEX_E_RPC", "the backup server closed the connection (ECONNRESET)");',
        "  });",
        "} };",
        "",
      ].join("\n"),
    );
    project!.start(["--task", "uploads fail"]);
    writeFileSync(join(project!.dir, "fail"), "");
    // It said "The supervisor (pid …) ended before it answered checkpoint.create, and no checkpoint was saved": the upload's failure was lost.
    const failed = fails(["checkpoint", "create", "uploaded", "--json"], 1);
    const error = JSON.parse(failed.stderr).error;
    expect(error).toMatchObject({ code: "APEX_E_RPC", details: { plugin: "upload", hook: "beforeCheckpoint" } });
    expect(error.message).toContain("the backup server closed the connection (ECONNRESET)");
  });

  it("a plugin whose beforeCheckpoint draft holds data JSON cannot hold, or that returns no draft, is named as failing there (a circular value said as such); its data is not saved", () => {
    // `kind` names what the tap puts in its draft: each checkpoint create below is refused for it.
    const tap = [
      'import { existsSync, readFileSync } from "node:fs";',
      'export default { name: "bad-data", apply(apex) {',
      '  apex.hooks.beforeCheckpoint.tapPromise("bad-data", async (draft) => {',
      '    const kind = existsSync("kind") ? readFileSync("kind", "utf8") : "";',
      '    const loop = { name: "loop" };',
      "    loop.self = loop;",
      '    const values = { bigint: 10n, date: new Date(0), function: () => 1, nan: NaN, circular: loop };',
      '    if (kind === "none") return null;',
      '    if (kind === "inplace") { draft.data.inplace = true; return undefined; }',
      "    if (kind in values) draft.data.bad = { inner: [values[kind]] };",
      "    return draft;",
      "  });",
      "} };",
      "",
    ].join("\n");
    project = new Project(config({ plugins: ["  checkpoint: {}", "  ./bad-data.mjs: {}", "  git: false"] }));
    writeFileSync(join(project.dir, "bad-data.mjs"), tap);
    project!.start(["--task", "bad checkpoint data"]);
    const taken = list().taken;
    const said: Record<string, string> = {
      bigint: "a bigint",
      date: "an instance of Date",
      function: "a function",
      nan: "the number NaN",
      circular: "a circular reference (back to data.bad.inner[0])",
    };
    for (const [kind, what] of Object.entries(said)) {
      writeFileSync(join(project!.dir, "kind"), kind);
      const error = JSON.parse(fails(["checkpoint", "create", kind, "--json"], 1).stderr).error;
      // It said "beforeCheckpoint produced data that is not JSON: …", naming no plugin; a circular value "nests … more than 512 levels deep".
      const at = kind === "circular" ? "data.bad.inner[0].self" : "data.bad.inner[0]";
      expect(error.message).toBe(`plugin bad-data failed in beforeCheckpoint: the checkpoint draft it returned holds data that is not JSON: Not a JSON value at ${at}: ${what}.`);
      expect(error).toMatchObject({ code: "APEX_E_PLUGIN_FAILED", details: { plugin: "bad-data", hook: "beforeCheckpoint" } });
      expect(error.hint).toContain("The plugin bad-data (file:./bad-data.mjs) caused this");
    }
    writeFileSync(join(project!.dir, "kind"), "none");
    const none = JSON.parse(fails(["checkpoint", "create", "none", "--json"], 1).stderr).error;
    expect(none.message).toMatch(/^plugin bad-data failed in beforeCheckpoint: it returned null, not the checkpoint draft \(a waterfall tap has to return its argument/);
    expect(none.code).toBe("APEX_E_PLUGIN_FAILED");
    expect(list().taken).toBe(taken);
    // Nothing returned keeps the draft it was given, changed in place, as tapable's waterfall has it.
    writeFileSync(join(project!.dir, "kind"), "inplace");
    expect(ok(["checkpoint", "create", "in place", "--json"])).toMatchObject({ description: "in place" });
    expect(ok(["checkpoint", "show", "latest", "--json"]).manifest.data).toMatchObject({ inplace: true });
    writeFileSync(join(project!.dir, "kind"), "");
    expect(ok(["checkpoint", "create", "fine", "--json"])).toMatchObject({ description: "fine" });
  });

  it("kill -9 of the supervisor during checkpoint create: a checkpoint it committed is reported created, one it did not is said not saved; the next command works", () => {
    // The supervisor kills itself (SIGKILL) in beforeCheckpoint while die-before exists (nothing
    // committed yet) and in afterCheckpoint while die-after exists (committed, not answered).
    const die = (hook: string, file: string) => `    apex.hooks.${hook}.tapPromise("die", async (x) => { if (existsSync(${JSON.stringify(file)})) process.kill(process.pid, "SIGKILL"); return x; });`;
    project = new Project(config({ plugins: ["  checkpoint: {}", "  ./die.mjs: {}"] }));
    writeFileSync(join(project.dir, "die.mjs"), ['import { existsSync } from "node:fs";', 'export default { name: "die", apply(apex) {', die("beforeCheckpoint", "die-before"), die("afterCheckpoint", "die-after"), "} };", ""].join("\n"));
    project!.start(["--task", "killed while checkpointing"]);
    writeFileSync(join(project!.dir, "die-after"), "");
    // It said `APEX_E_RPC: The supervisor closed the connection before answering` (exit 1) of a checkpoint that was saved.
    // Its description on two lines (kept on one): it was reported not saved, compared as given.
    const saved = project!.apex(["checkpoint", "create", "committed,\n  then killed", "--json"]);
    expect(saved.status, saved.stderr).toBe(0);
    expect(JSON.parse(saved.stdout)).toMatchObject({ name: "checkpoint-002", trigger: "manual", description: "committed, then killed", agents: ["worker"] });
    expect(saved.stderr).toMatch(/^warning: the supervisor \(pid \d+\) ended right after saving checkpoint-002; .*apex start --continue last/);
    rmSync(join(project!.dir, "die-after"));
    expect(project!.status().session?.status).toBe("interrupted");

    ok(["start", "--continue", "last"]);
    writeFileSync(join(project!.dir, "die-before"), "");
    const lost = fails(["checkpoint", "create", "killed first", "--json"], 1);
    expect(JSON.parse(lost.stderr).error).toMatchObject({ code: "APEX_E_RPC", message: expect.stringMatching(/ended before it answered checkpoint\.create, and no checkpoint was saved/) });
    rmSync(join(project!.dir, "die-before"));
    expect(list().items.map((item) => item.description)).not.toContain("killed first");
    // The next command works (no supervisor: in this process).
    const after = ok(["checkpoint", "create", "after", "--json"]);
    expect(after).toMatchObject({ description: "after" });
    // The worker was restarted in between: diff names the fields that changed (it said "other fields").
    expect(ok(["checkpoint", "diff", "checkpoint-002", after.name])).toContain("  ~ worker: nonce, pgid, pid, spawn_nonce, start_time, started_at changed");
    // Continuing the checkpoint that holds the state already writes no copy, and says so (it read
    // "the state it replaced is saved as <the checkpoint restored>").
    expect(ok(["start", "--continue", after.name])).toContain(`restored ${after.name} (${after.id.slice(0, 8)}): memory 0 set, 0 deleted; the state it replaced was that checkpoint already\n`);
  });

  it("apex stop --force while checkpoint create waits on its afterCheckpoint hook: the checkpoint is reported created, and the session stopped (it said interrupted)", async () => {
    project = new Project(config({ plugins: ["  checkpoint: {}", "  ./slow-hooks.mjs: {}"] }));
    writeFileSync(join(project.dir, "slow-hooks.mjs"), readFileSync(join(PLUGIN_FIXTURES, "slow-hooks.mjs")));
    const ready = project.start(["--task", "stopped while checkpointing"]);
    writeFileSync(join(project.dir, "afterCheckpoint"), "sleep 60000");
    const create = project.apexAsync(["checkpoint", "create", "mine", "--json"]);
    await waitFor("afterCheckpoint", () => existsSync(join(project!.dir, "afterCheckpoint.began")));
    const stopped = ok(["stop", "--force", "--json"]);
    expect(stopped).toMatchObject({ session_id: ready.session_id, status: "stopped" });
    const saved = await create.done;
    expect(saved.status, saved.stderr).toBe(0);
    expect(JSON.parse(saved.stdout)).toMatchObject({ name: "checkpoint-002", trigger: "manual", description: "mine" });
    expect(saved.stderr).toBe(`warning: the supervisor (pid ${ready.supervisor_pid}) ended right after saving checkpoint-002; the session is stopped now (\`apex session history\` shows how it ended); \`apex start --continue last\` continues it.\n`);
    expect(ok(["session", "history", "--json"])[0]).toMatchObject({ session_id: ready.session_id, status: "stopped" });
  });
});

describe("the onStop trigger", () => {
  /** A value of a checkpoint's memory, read from the store (no supervisor may run). */
  async function valueIn(checkpointId: string, path: string): Promise<unknown> {
    const store = await openStore(project!.storeDir, { readOnly: true });
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
      ["onStart", ["last"]],
    ]);
  });

  it("after kill -9: --continue last goes on from the live state (every acknowledged write kept), active tasks go back to their agent with its saved context", async () => {
    project = new Project(config());
    const ready = project.start(["--task", "survive a crash"]);
    ok(["task", "add", "first"]);
    ok(["task", "add", "second"]);
    ok(["task", "claim", "--agent", "worker"]);
    ok(["agent", "report", "--agent", "worker", "--context", '{"note": "at the checkpoint", "step": 3}']);
    ok(["memory", "set", "/notes/a", "1"]);
    const saved = ok(["checkpoint", "create", "known good", "--json"]);
    // Work after the checkpoint: acknowledged, so it survives the crash.
    ok(["memory", "set", "/notes/a", "2"]);
    ok(["memory", "set", "/notes/b", "3"]);
    ok(["task", "add", "third"]);
    ok(["task", "claim", "--agent", "worker"]);
    ok(["agent", "report", "--agent", "worker", "--context", '{"note": "later"}']);
    const oldWorker = ready.agents[0]!;
    const before = list().items.length;

    await supervisorKilled(ready.supervisor_pid);
    const continued = ok(["start", "--continue", "last", "--json"]);
    project.remember();
    expect(continued).toMatchObject({ session_id: ready.session_id, continued: true, restored_from: null, restore: null });
    expect(continued.reconciled).toEqual({ requeued: [], resumed: [{ agent: "worker", task: "t-0002", tasks: ["t-0002", "t-0001"] }], stopped_agents: [] });
    expect(continued.reaped.map((item: { agent: string }) => item.agent)).toEqual(["worker"]);
    expect(project!.alive(oldWorker.pid!)).toBe(false);
    expect(groupMembers(oldWorker.pgid!)).toEqual([]);

    // Memory as it was when the supervisor died: nothing rolled back.
    expect(memory("/notes/a")).toBe(2);
    expect(memory("/notes/b")).toBe(3);
    // The active tasks stay with their agent, restarted with its latest context and its task.
    expect(ok(["task", "list", "--json"]).map((task: { id: string; status: string }) => [task.id, task.status])).toEqual([
      ["t-0001", "active"],
      ["t-0002", "active"],
      ["t-0003", "pending"],
    ]);
    const resume = await waitFor("the worker's resume files", () => {
      try {
        return { context: JSON.parse(readFileSync(join(project!.dir, "resume-worker.json"), "utf8")), task: readFileSync(join(project!.dir, "task-worker.txt"), "utf8") };
      } catch {
        return undefined;
      }
    });
    expect(resume).toEqual({ context: { note: "later" }, task: "t-0002" });
    expect(project.status()).toMatchObject({ session: { session_id: ready.session_id, status: "active" }, tasks: { active: 2, pending: 1, completed: 0 } });
    // No restore, so no replaced state: the continued state is checkpointed as it is.
    const items = list().items;
    expect(items.map((item) => item.trigger)).not.toContain("beforeRestore");
    expect(items.slice(0, items.length - before).map((item) => item.trigger)).toEqual(["continue"]);
    expect(ok(["checkpoint", "diff", saved.id, items[0]!.id, "--json"]).memory).toEqual({ added: ["/notes/b"], removed: [], changed: ["/notes/a"] });
    const record = memory(`/sessions/${ready.session_id}`) as { history: Array<Record<string, unknown>> };
    expect(record.history.map((entry) => entry.event)).toEqual(["started", "continued"]);
    expect(record.history[1]).toMatchObject({ from: "interrupted", checkpoint: null });

    // Only a named checkpoint rolls back. The running session is checkpointed (beforeRestore) and stopped first, as the output says.
    const back = project.apex(["start", "--continue", saved.id.slice(0, 8)]);
    project.remember();
    expect(back.status, back.stderr).toBe(0);
    // The session as session list prints it, its uuid's short form (it printed the whole id).
    expect(back.stdout).toMatch(new RegExp(`Session ${ready.session_id.slice(0, 8)} was active: saved as (checkpoint-\\d+) \\(beforeRestore\\), stopped`));
    const replaced = /saved as (checkpoint-\d+)/.exec(back.stdout)![1]!;
    expect(back.stdout).toContain(`restored ${saved.name} (${saved.id.slice(0, 8)})`);
    expect(back.stdout).toContain(`the state it replaced is saved as ${replaced}`);
    expect(memory("/notes/a")).toBe(1);
    expect(memory("/notes/b")).toBeUndefined();
    // Tasks too: t-0002 was pending at the checkpoint, t-0003 did not exist yet.
    expect(ok(["task", "list", "--json"]).map((task: { id: string; status: string }) => [task.id, task.status])).toEqual([
      ["t-0001", "active"],
      ["t-0002", "pending"],
    ]);
    const replacedItem = list().items.find((item) => item.name === replaced)!;
    expect(replacedItem).toMatchObject({ trigger: "beforeRestore" });
    expect(ok(["checkpoint", "diff", saved.id, replaced, "--json"]).memory).toEqual({ added: ["/notes/b"], removed: [], changed: ["/notes/a"] });
    expect(project.status().session).toMatchObject({ session_id: ready.session_id, status: "active", restored_from: saved.id });
  });

  it("apex start takes the session's first checkpoint; --continue of the running session itself is refused, a bad reference stops nothing", () => {
    project = new Project(config());
    const ready = project.start(["--task", "first checkpoint"]);
    expect((ready as unknown as { checkpoint: unknown }).checkpoint).toMatchObject({ name: "checkpoint-001", trigger: "onStart" });
    expect(project.status().last_checkpoint).toMatchObject({ sequence: 1, trigger: "onStart" });
    expect(ok(["status"])).toMatch(/checkpoint\s+1 \(onStart\)/);

    const same = fails(["start", "--continue", "last"], 4);
    expect(same.stderr).toContain("there is nothing to continue");
    expect(fails(["start", "--continue", "no-such-checkpoint"], 3).stderr).toContain("APEX_E_NOT_FOUND");
    expect(project.status().session).toMatchObject({ session_id: ready.session_id, status: "active", supervisor: { pid: ready.supervisor_pid, alive: true } });
  });

  it("--force-recovery restores what still verifies of a damaged checkpoint and lists what was lost, checkpointing and stopping the running session first; validate, repair (of a running session), reconstruct", async () => {
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
    expect(ok(["session", "validate"])).toContain("The project store is valid: 3 checkpoints, 3 verify");

    // "v1" is held by the first manual checkpoint only.
    const hash = await damageValue(first.id, "/old/x");
    const invalid = fails(["session", "validate", sid.slice(0, 8), "--json"], 1);
    const report = JSON.parse(invalid.stdout);
    expect(report).toMatchObject({ session_id: sid, ok: false, checkpoints: { total: 3, verified: 2 } });
    expect(report.problems).toEqual([expect.objectContaining({ code: "value-corrupt", hash, path: "/old/x", checkpoint: `${sid}/${first.name}`, checkpoint_id: first.id, checkpointId: first.id })]);
    // Object counts in snake_case as every other --json spells its keys; the camelCase ones it had alone stay for scripts.
    const { objects } = report;
    expect(objects).toMatchObject({ unreferenced_values: objects.unreferencedValues, unreferenced_trees: objects.unreferencedTrees, pack_bytes: objects.packBytes, garbage_bytes: objects.garbageBytes });
    // Its session as every other --json names it, session_id (the camelCase sessionId it had alone is kept for scripts).
    expect(report.checkpoints.damaged).toEqual([expect.objectContaining({ session_id: sid, sessionId: sid, session_name: null, name: first.name, id: first.id })]);
    const text = fails(["session", "validate"], 1).stdout;
    expect(text).toContain("value-corrupt");
    // The checkpoint as a reference checkpoint show takes, its session as session list prints it (it printed the whole id).
    expect(text).toContain(`\n  ${sid.slice(0, 8)}/${first.name} (${first.id.slice(0, 8)}): its memory tree references damaged objects`);
    // Each problem line too: the checkpoint it is about as `3f2a9c1e/checkpoint-002` (it printed the whole id).
    expect(text).toMatch(new RegExp(`^  error +value-corrupt +${sid.slice(0, 8)}/${first.name}: `, "m"));
    expect(text).not.toContain(sid);

    // A plain --continue refuses it before anything changes.
    const refused = fails(["start", "--continue", first.id], 1);
    expect(refused.stderr).toContain(`${first.name} does not verify`);
    expect(refused.stderr).toContain(`apex start --force-recovery ${first.id}`);
    expect(ok(["session", "history", "--json"])[0]).toMatchObject({ session_id: sid, status: "stopped" });

    // --force-recovery while the session runs: it is checkpointed and stopped first; what was lost is printed before the agents start.
    ok(["start", "--continue", "last"]);
    project.remember();
    // The reference validate printed.
    const recovered = project.apex(["start", "--force-recovery", `${sid.slice(0, 8)}/${first.name}`]);
    project.remember();
    expect(recovered.status, recovered.stderr).toBe(0);
    const out = recovered.stdout;
    // Its session as session list prints it, in every line (it printed the whole id).
    expect(out).toContain(`Force recovery from ${sid.slice(0, 8)}/${first.name} (${first.id})`);
    expect(out).toMatch(new RegExp(`^Session ${sid.slice(0, 8)} continued \\(supervisor pid \\d+\\), recovered from ${sid.slice(0, 8)}/${first.name} \\(1 item lost\\)\\.$`, "m"));
    expect(out).not.toContain(sid);
    expect(out).toContain(`memory  /old/x: value ${hash.slice(0, 12)} is corrupt`);
    expect(out).toMatch(new RegExp(`Session ${sid.slice(0, 8)} was active: saved as checkpoint-004 \\(beforeRestore\\), stopped`));
    expect(out.indexOf("Lost (1):")).toBeLessThan(out.indexOf("continued (supervisor pid"));
    expect(out).toContain("recovered from");
    expect(memory("/keep/a")).toBe(1); // restored from the checkpoint
    expect(memory("/old/x")).toBe("v2"); // lost from the checkpoint: its current value stays
    expect(ok(["task", "list", "--json"]).map((task: { title: string }) => task.title)).toEqual(["keep me"]);
    // The replaced state is the beforeRestore checkpoint the handover wrote: no second copy.
    expect(list().items.map((item) => [item.name, item.trigger])).toEqual([
      ["checkpoint-005", "recovery"],
      ["checkpoint-004", "beforeRestore"],
      [second.name, "manual"],
      [first.name, "manual"],
      ["checkpoint-001", "onStart"],
    ]);
    expect(list().items[0]!.description).toBe(`force-recovered from ${sid.slice(0, 8)}/${first.name}: 1 item lost`);

    // A session that is not there is refused before the running one is checkpointed or stopped.
    const taken = list().items.length;
    const unknown = fails(["session", "repair", "nosuchsession"], 3);
    expect(unknown.stderr).toContain("APEX_E_NO_SESSION");
    expect(unknown.stdout).not.toContain("was active");
    expect(list().items.length).toBe(taken);
    // Repair of a running session: checkpointed, stopped, repaired, continued (--dry-run leaves it running).
    // Its text names the checkpoints to remove as validate does (--json below has the whole ids).
    const planText = ok(["session", "repair", sid, "--dry-run"]);
    expect(planText).toMatch(new RegExp(`^  remove-checkpoint +${sid.slice(0, 8)}/${first.name}: `, "m"));
    expect(planText).not.toContain(sid);
    const plan = ok(["session", "repair", sid, "--dry-run", "--json"]);
    expect(plan.dry_run).toBe(true);
    expect(plan.actions).toEqual(expect.arrayContaining([expect.objectContaining({ action: "remove-checkpoint", target: `${sid}/${first.name}` })]));
    expect(plan.actions.filter((action: { action: string }) => action.action === "remove-checkpoint")).toHaveLength(1);
    expect(plan.before.checkpoints.damaged).toEqual([expect.objectContaining({ session_id: sid, name: first.name })]);
    const repaired = ok(["session", "repair", sid]);
    project.remember();
    // The session by its uuid's short form, as session list prints it (it printed the whole id).
    expect(repaired).toContain(`Session ${sid.slice(0, 8)} was active: saved as checkpoint-006 (onStop), stopped`);
    expect(repaired).toContain(`Repaired the store (session ${sid.slice(0, 8)}; objects are shared`);
    expect(repaired).toContain("Removed 1 checkpoint that does not verify; kept 5 that verify");
    expect(repaired).toContain("The store is valid now.");
    expect(repaired).toContain(`Session ${sid.slice(0, 8)} continued after the repair`);
    expect(repaired).not.toContain(sid);
    expect(project.status().session).toMatchObject({ session_id: sid, status: "active" });
    expect(memory("/keep/a")).toBe(1);
    ok(["stop"]);
    ok(["session", "validate"]);
    expect(list().items.map((item) => item.name)).toEqual(["checkpoint-006", "checkpoint-005", "checkpoint-004", second.name, "checkpoint-001"]);

    // Reconstruct from damaged live records: the task comes from the checkpoint, the memory value is named as missing.
    await undecodable(`/sessions/${sid}/tasks/t-0001`);
    await undecodable("/notes/only-live");
    const scoped = fails(["session", "validate", sid], 1).stdout;
    expect(scoped).toContain("record-undecodable");
    // A record's keyspace path stays whole: it is the record's address, which `memory show` takes.
    expect(scoped).toContain(`The record at /sessions/${sid}/tasks/t-0001 cannot be decoded`);
    // The session as session list prints it, in the summary and the repair it suggests (it printed the whole id).
    expect(scoped).toMatch(new RegExp(`^Session ${sid.slice(0, 8)} has problems: `, "m"));
    expect(scoped).toContain(`Next: apex session repair ${sid.slice(0, 8)} --dry-run`);
    const rebuilt = ok(["session", "reconstruct", sid.slice(0, 8), "--json"]);
    // session_id as in every other --json (sessionId, which it had alone, kept for scripts).
    expect(rebuilt).toMatchObject({ session_id: `${sid}-r1`, sessionId: `${sid}-r1`, from: { session_id: sid, sessionId: sid, name: null, checkpoint: { session_id: sid, name: "checkpoint-006", sequence: 6 } }, current: false });
    expect(rebuilt).toMatchObject({ skipped_checkpoints: [], skippedCheckpoints: [] });
    // Its --help names each of them, the keys kept from before too (sessionId and skippedCheckpoints were printed, unnamed).
    const reconstructHelp = project.apex(["session", "reconstruct", "--help"], { env: { COLUMNS: "1000" } }).stdout;
    for (const key of new Set([...Object.keys(rebuilt), ...Object.keys(rebuilt.from), ...Object.keys(rebuilt.from.checkpoint)])) expect(reconstructHelp, key).toMatch(new RegExp(`[{ (]${key}[,}:) ]`));
    // Its checkpoint's description names the session as session list does (it had the whole id); data keeps the whole id.
    expect(rebuilt.checkpoint.description).toBe(`Reconstructed from session ${sid.slice(0, 8)} (checkpoint-006)`);
    expect(rebuilt.tasks).toEqual([{ id: "t-0001", source: "checkpoint" }]);
    expect(rebuilt.missing).toEqual(["Memory /notes/only-live: the value cannot be decoded and no verifying checkpoint has it."]);
    expect(list(["--session", `${sid}-r1`]).items.map((item) => item.trigger)).toEqual(["reconstruct"]);
    ok(["session", "validate", `${sid}-r1`]);
    expect(fails(["session", "reconstruct", "nosuchsession"], 3).stderr).toContain("APEX_E_NO_SESSION");
    // The reconstructed session is listed and stands in nobody's way; --continue brings it back.
    expect(ok(["session", "list", "--json"]).find((row: { session_id: string }) => row.session_id === `${sid}-r1`)).toMatchObject({ status: "stopped" });
    const fresh = project.start(["--task", "after the reconstruction"]);
    expect(fresh.session_id).not.toBe(`${sid}-r1`);
    const back = project.apex(["start", "--continue", `${sid}-r1`]);
    project.remember();
    expect(back.status, back.stderr).toBe(0);
    expect(back.stdout).toContain(`Session ${fresh.session_id.slice(0, 8)} was active: saved as`);
    expect(project.status().session).toMatchObject({ session_id: `${sid}-r1`, status: "active" });
    expect(ok(["task", "list", "--json"]).map((task: { title: string }) => task.title)).toEqual(["keep me"]);
  }, 180_000);

  it("session.auto_recovery: status only reports the interrupted session; the next start (any form) or resume continues it from the live state, with a notice", async () => {
    project = new Project(config({ autoRecovery: true }));
    const ready = project.start(["--task", "auto"]);
    ok(["memory", "set", "/state", '"checkpointed"']);
    ok(["checkpoint", "create", "good", "--json"]);
    ok(["memory", "set", "/state", '"written after the checkpoint"']);
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(ready.supervisor_pid), 5000);

    // A read command: it reports, starts nothing, and names the command that recovers.
    const status = project.apex(["status", "--json"]);
    expect(status.status, status.stderr).toBe(0);
    expect(status.stderr).toBe("");
    expect(JSON.parse(status.stdout)).toMatchObject({
      session: { session_id: ready.session_id, status: "interrupted", supervisor: { pid: ready.supervisor_pid, alive: false } },
      recover_with: "apex start --continue last",
    });
    expect(ok(["status"])).toContain("apex start --continue last");
    expect(project.apex(["status"]).stderr).toBe("");
    expect(project.status().session).toMatchObject({ status: "interrupted" });

    // `apex start --task …` recovers it from the live state, and says why no new session started.
    const start = project.apex(["start", "--task", "something new"]);
    project.remember();
    expect(start.status).toBe(4);
    // The session as session list prints it, in the notice and the lines after it (they printed the whole id).
    expect(start.stderr).toContain(`notice: session ${ready.session_id.slice(0, 8)} was interrupted; auto_recovery continues it from the live state`);
    expect(start.stderr).toContain(`the recovered session ${ready.session_id.slice(0, 8)} runs now`);
    expect(start.stderr).toContain("No new session was started");
    expect(start.stdout).toContain(`Session ${ready.session_id.slice(0, 8)} continued`);
    expect(start.stdout + start.stderr).not.toContain(ready.session_id);
    expect(start.stdout).toContain("continued from the live state: memory as it is");
    expect(memory("/state")).toBe("written after the checkpoint");
    const shown = project.status();
    expect(shown.session).toMatchObject({ session_id: ready.session_id, status: "active" });
    expect(shown.session!.supervisor!.pid).not.toBe(ready.supervisor_pid);

    // `apex resume` recovers it too.
    ok(["memory", "set", "/state", '"written before the second crash"']);
    process.kill(shown.session!.supervisor!.pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(shown.session!.supervisor!.pid), 5000);
    const resumed = project.apex(["resume", "--json"]);
    project.remember();
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stderr.trim())).toEqual({ notice: { auto_recovery: true, session_id: ready.session_id, from: "live" } });
    expect(JSON.parse(resumed.stdout)).toMatchObject({ session_id: ready.session_id, continued: true, restored_from: null });
    expect(memory("/state")).toBe("written before the second crash");
    expect(list().items.map((item) => item.trigger)).not.toContain("beforeRestore");
  });
});
