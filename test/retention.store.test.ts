import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import type { Config } from "../core/config/types.js";
import { Engine } from "../core/engine.js";
import { ObjectStore, sha256 } from "../plugins/checkpoint/engine/objects.js";
import { encodeValue } from "../plugins/value-codec.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import {
  checkpointInfo,
  createCheckpoint,
  deleteCheckpoint,
  holdCheckpoint,
  listCheckpoints,
  pinCheckpoint,
  readCheckpointMemory,
  restoreCheckpoint,
  type CheckpointManifest,
} from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import retention from "../plugins/retention/index.js";
import { applyRetention, planRetention, DELETE_EVENT, RETENTION_ACTOR } from "../plugins/retention/cleanup.js";
import { runCleanupCommand } from "../plugins/retention/command.js";
import { knownSessions } from "../plugins/retention/sessions.js";
import { findTemporaryFiles, removeTemporaryFiles } from "../plugins/retention/temporary.js";
import { applyPolicy, type RetentionPolicy } from "../plugins/retention/policy.js";
import type { RetentionOptions } from "../plugins/retention/options.js";
import { forEachBackend } from "./support/backends.js";
import { commandContext } from "./support/command-context.js";

let dir: string;
let store: Store;

const SESSION = "s-main";

function sessionRecord(sessionId: string, extra: Record<string, JsonValue> = {}): Record<string, JsonValue> {
  const at = "2026-01-01T00:00:00.000Z";
  return {
    session_id: sessionId,
    project_id: "p-test",
    created_at: at,
    updated_at: at,
    status: "active",
    initial_task: null,
    agents: [],
    supervisor: null,
    history: [],
    outcome: null,
    ended_at: null,
    restored_from: null,
    ...extra,
  };
}

async function startSession(sessionId = SESSION, extra: Record<string, JsonValue> = {}): Promise<void> {
  await store.set(`/sessions/${sessionId}`, sessionRecord(sessionId, extra));
  await store.set("/sessions/current", { session_id: sessionId });
}

function configWith(maxCheckpoints: number): Config {
  return { session: { max_checkpoints: maxCheckpoints, auto_checkpoint_interval: 300, auto_recovery: true, session_timeout: 0, backup_location: ".apex/backups" } } as Config;
}

async function engineWith(options: RetentionOptions, maxCheckpoints = 100): Promise<Engine> {
  const engine = new Engine({ config: configWith(maxCheckpoints), store, warn: (message) => { throw new Error(`unexpected warning: ${message}`); } });
  await engine.use(retention, { options, source: { kind: "built-in", label: "built-in" } });
  return engine;
}

/** The project memory (outside /sessions) as a plain object. */
function memory(): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const { path, value } of store.tree("/")) if (!path.startsWith("/sessions")) out[path] = value;
  return out;
}

function surviving(sessionId = SESSION): string[] {
  return listCheckpoints(store, sessionId, { limit: 1000, order: "oldest" }).items.map((summary) => summary.name);
}

/** Writes memory that changes with every checkpoint (a unique value, a value shared by a few, a constant one). */
async function writeStep(step: number): Promise<void> {
  await store.batch((batch) => {
    batch.set("/notes/constant", { text: "the same in every checkpoint" });
    batch.set("/notes/step", { step, text: `unique to step ${step}` });
    batch.set("/notes/phase", { phase: Math.floor(step / 4) });
    batch.set(`/log/${String(step).padStart(3, "0")}`, { step });
  });
}

const HOUR = 3_600_000;
const START = Date.parse("2026-11-16T06:00:00Z"); // a Monday

forEachBackend((backend) => {
beforeEach(async () => {
  store = await backend.fresh();
  dir = store.dir;
});

describe("auto_cleanup after every checkpoint", () => {
  it("keeps exactly what the policy keeps over the whole history, at every step", async () => {
    await startSession();
    const options: RetentionOptions = { keep_last: 3, keep_hourly: 2, keep_daily: 3, keep_weekly: 2, auto_cleanup: true };
    const policy: RetentionPolicy = { keepLast: 3, keepHourly: 2, keepDaily: 3, keepWeekly: 2, maxCheckpoints: 100 };
    const engine = await engineWith(options);
    const history: Array<{ id: string; name: string; time: number; sequence: number }> = [];
    // Irregular gaps: several per hour, then whole days apart, across a week boundary.
    const gaps = [0, 0.25, 0.5, 1, 1.1, 5, 20, 24, 24.5, 30, 48, 72, 96, 97, 98, 99];
    for (const [step, gap] of gaps.entries()) {
      await writeStep(step);
      const time = START + gap * HOUR;
      const { manifest } = await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(time) });
      history.push({ id: manifest.id, name: manifest.name, time, sequence: manifest.sequence });
      await engine.fire("afterCheckpoint", checkpointInfo(manifest));
      const expected = applyPolicy(history, policy).keep.map((item) => item.name).sort();
      expect(surviving().sort(), `after ${manifest.name}`).toEqual(expected);
    }
    expect(surviving().length).toBeLessThan(history.length);
  });

  it("records every deletion in the session's audit trail", async () => {
    await startSession();
    const engine = await engineWith({ keep_last: 2, auto_cleanup: true });
    const created: CheckpointManifest[] = [];
    for (let step = 0; step < 5; step++) {
      await writeStep(step);
      const { manifest } = await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * HOUR) });
      created.push(manifest);
      await engine.fire("afterCheckpoint", checkpointInfo(manifest));
    }
    const events = [...store.query(`/sessions/${SESSION}/events/*`)].map((entry) => entry.value as Record<string, JsonValue>);
    expect(events.map((event) => [event.type, event.actor, event.name, event.checkpoint, event.reason, event.run])).toEqual(
      created.slice(0, 3).map((manifest) => [DELETE_EVENT, RETENTION_ACTOR, manifest.name, manifest.id, "no rule keeps it", "auto"]),
    );
    expect(events.map((event) => event.seq)).toEqual([1, 2, 3]);
    expect(events[0]!.policy).toBe("keep_last 2 per trigger; manual, beforeRestore kept until deleted; max_checkpoints 100");
  });

  it("with auto_cleanup off, still enforces session.max_checkpoints and nothing else", async () => {
    await startSession();
    const engine = await engineWith({ keep_last: 1, auto_cleanup: false }, 3);
    for (let step = 0; step < 5; step++) {
      await writeStep(step);
      const { manifest } = await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * HOUR) });
      await engine.fire("afterCheckpoint", checkpointInfo(manifest));
    }
    expect(surviving()).toEqual(["checkpoint-003", "checkpoint-004", "checkpoint-005"]);
    const reasons = [...store.query(`/sessions/${SESSION}/events/*`)].map((entry) => (entry.value as { reason: string }).reason);
    expect(reasons).toEqual(["over max_checkpoints 3", "over max_checkpoints 3"]);
  });
});

describe("deleting and sweeping", () => {
  it("sweeps what only removed checkpoints used, and every kept checkpoint still restores exactly", async () => {
    await startSession();
    const expected = new Map<string, Record<string, JsonValue>>();
    for (let step = 0; step < 10; step++) {
      await writeStep(step);
      const { manifest } = await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * 7 * HOUR) });
      expected.set(manifest.name, memory());
    }
    // Pin an old one: it and its unique value must survive.
    await pinCheckpoint(store, `${SESSION}/checkpoint-002`, true);
    const before = { values: [...ObjectStore.of(store).hashes("value")].length, trees: [...ObjectStore.of(store).hashes("tree")].length };

    const outcome = await applyRetention(store, { keepLast: 2, keepDaily: 2, maxCheckpoints: 100 }, { sweep: "always" });
    const kept = surviving();
    expect(kept).toEqual(["checkpoint-002", "checkpoint-006", "checkpoint-009", "checkpoint-010"]);
    expect(outcome.deleted.map((entry) => entry.name).sort()).toEqual(["checkpoint-001", "checkpoint-003", "checkpoint-004", "checkpoint-005", "checkpoint-007", "checkpoint-008"]);
    expect(outcome.skipped).toEqual([]);
    expect(outcome.sweepError).toBeUndefined();

    // Values only deleted checkpoints held are gone; those kept ones need are not.
    const objects = ObjectStore.of(store);
    const valueHash = (value: JsonValue) => sha256(encodeValue(value));
    expect(objects.getRaw("value", valueHash({ step: 4, text: "unique to step 4" }))).toBeUndefined();
    expect(objects.getRaw("value", valueHash({ step: 0, text: "unique to step 0" }))).toBeUndefined();
    expect(objects.getRaw("value", valueHash({ step: 1, text: "unique to step 1" }))).toBeDefined(); // pinned checkpoint-002
    expect(objects.getRaw("value", valueHash({ text: "the same in every checkpoint" }))).toBeDefined();
    expect(outcome.sweep!.removed.values).toBeGreaterThan(0);
    expect(outcome.sweep!.removed.trees).toBeGreaterThan(0);
    expect(outcome.sweep!.removed.bytes).toBeGreaterThan(0);
    expect([...objects.hashes("value")].length).toBe(before.values - outcome.sweep!.removed.values);
    expect([...objects.hashes("tree")].length).toBe(before.trees - outcome.sweep!.removed.trees);

    const report = validateStore(store);
    expect(report.problems.filter((problem) => problem.severity === "error")).toEqual([]);
    expect(report.objects.unreferencedValues).toBe(0);
    expect(report.objects.unreferencedTrees).toBe(0);

    for (const name of kept) {
      const held = Object.fromEntries([...readCheckpointMemory(store, `${SESSION}/${name}`)].map((entry) => [entry.path, entry.value]));
      expect(held, name).toEqual(expected.get(name));
      await restoreCheckpoint(store, `${SESSION}/${name}`);
      expect(memory(), `memory after restoring ${name}`).toEqual(expected.get(name));
    }
  });

  it("a second cleanup finds nothing more to delete or sweep", async () => {
    await startSession();
    for (let step = 0; step < 6; step++) {
      await writeStep(step);
      await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * HOUR) });
    }
    const first = await applyRetention(store, { keepLast: 2 });
    expect(first.deleted).toHaveLength(4);
    const second = await applyRetention(store, { keepLast: 2 });
    expect(second.deleted).toEqual([]);
    expect(second.sweep!.removed).toEqual({ values: 0, trees: 0, bytes: 0 });
  });
});

describe("planning against the store", () => {
  it("protects pinned, latest and branched-from checkpoints, and buckets each session separately", async () => {
    await startSession("s-a");
    for (let step = 0; step < 4; step++) {
      await writeStep(step);
      await createCheckpoint(store, { sessionId: "s-a", trigger: "interval", now: () => new Date(START + step * HOUR) });
    }
    await startSession("s-b");
    const ids: string[] = [];
    for (let step = 0; step < 5; step++) {
      await writeStep(10 + step);
      const { manifest } = await createCheckpoint(store, { sessionId: "s-b", trigger: "interval", now: () => new Date(START + step * HOUR) });
      ids.push(manifest.id);
    }
    await pinCheckpoint(store, "s-a/checkpoint-001", true);
    // Branches: a current session naming a checkpoint by id, an ended one by <session>/<name>,
    // another with a bare name and its parent session, and one whose target is gone.
    await store.set("/sessions/s-branch-1", sessionRecord("s-branch-1", { parent_checkpoint: ids[1]! }));
    await store.set("/sessions/history/s-branch-2", sessionRecord("s-branch-2", { status: "stopped", branched_from: "s-a/checkpoint-002" }));
    await store.set("/sessions/history/s-branch-3", sessionRecord("s-branch-3", { status: "stopped", branched_from: { id: "checkpoint-003", session_id: "s-b" } }));
    await store.set("/sessions/history/s-branch-4", sessionRecord("s-branch-4", { status: "stopped", parent_checkpoint: "checkpoint-004" }));

    const plan = planRetention(store, { keepLast: 1 });
    const table = Object.fromEntries(
      plan.sessions.map((session) => [
        session.session.sessionId,
        session.result.decisions.map((decision) => `${decision.item.name} ${decision.keep ? "keep" : "remove"} ${decision.reasons.join(", ")}`.trim()),
      ]),
    );
    expect(table).toEqual({
      "s-a": ["checkpoint-004 keep latest, last", "checkpoint-003 remove", "checkpoint-002 keep branch s-branch-2", "checkpoint-001 keep pinned"],
      "s-b": [
        "checkpoint-005 keep latest, last",
        "checkpoint-004 remove", // a bare name without its session protects nothing
        "checkpoint-003 keep branch s-branch-3",
        "checkpoint-002 keep branch s-branch-1",
        "checkpoint-001 remove",
      ],
    });
    expect(planRetention(store, { keepLast: 1 }, { sessionId: "s-b" }).sessions.map((session) => session.session.sessionId)).toEqual(["s-b"]);
    expect(() => planRetention(store, { keepLast: 1 }, { sessionId: "s-nope" })).toThrow(/No session "s-nope"/);
  });

  it("keeps the checkpoint a session was last restored from while its record names it, and manual ones among a burst", async () => {
    await startSession();
    const ids: string[] = [];
    const take = async (trigger: string, step: number) => {
      await writeStep(step);
      ids.push((await createCheckpoint(store, { sessionId: SESSION, trigger, now: () => new Date(START + step * 60_000) })).manifest.id);
    };
    await take("beforeTask", 0);
    await take("manual", 1);
    for (let step = 2; step < 12; step++) await take("beforeTask", step);
    const record = store.get(`/sessions/${SESSION}`) as Record<string, JsonValue>;
    await store.set(`/sessions/${SESSION}`, { ...record, restored_from: ids[0]! });
    const engine = await engineWith({ keep_last: 3, auto_cleanup: true });
    await engine.fire("afterCheckpoint", { ...checkpointInfo((await createCheckpoint(store, { sessionId: SESSION, trigger: "beforeTask", now: () => new Date(START + 12 * 60_000) })).manifest) });
    expect(surviving()).toEqual(["checkpoint-001", "checkpoint-002", "checkpoint-011", "checkpoint-012", "checkpoint-013"]);
    const reasons = planRetention(store, { keepLast: 3 }).sessions[0]!.result.decisions.map((decision) => `${decision.item.name}: ${decision.reasons.join(", ")}`);
    expect(reasons).toEqual(["checkpoint-013: latest, last", "checkpoint-012: last", "checkpoint-011: last", "checkpoint-002: manual", "checkpoint-001: base of s-main"]);

    // Restored from another checkpoint since: the old base is no longer protected.
    await store.set(`/sessions/${SESSION}`, { ...record, restored_from: ids[1]! });
    await applyRetention(store, { keepLast: 3 });
    expect(surviving()).toEqual(["checkpoint-002", "checkpoint-011", "checkpoint-012", "checkpoint-013"]);
  });

  it("keeps a checkpoint held in use (a restore reading it) and deleteCheckpoint refuses it, until released", async () => {
    await startSession();
    const ids: string[] = [];
    for (let step = 0; step < 3; step++) {
      await writeStep(step);
      ids.push((await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * HOUR) })).manifest.id);
    }
    const release = holdCheckpoint(store, ids[0]!, "restore");
    const reasons = () => planRetention(store, { keepLast: 1 }).sessions[0]!.result.decisions.map((decision) => `${decision.item.name} ${decision.keep ? "keep" : "remove"} ${decision.reasons.join(", ")}`.trim());
    expect(reasons()).toEqual(["checkpoint-003 keep latest, last", "checkpoint-002 remove", "checkpoint-001 keep in use: restore"]);
    await expect(deleteCheckpoint(store, ids[0]!)).rejects.toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("in use (restore)") });
    expect((await applyRetention(store, { keepLast: 1 })).deleted.map((item) => item.name)).toEqual(["checkpoint-002"]);
    release();
    release(); // twice is harmless
    expect(reasons()).toEqual(["checkpoint-003 keep latest, last", "checkpoint-001 remove"]);
    expect((await applyRetention(store, { keepLast: 1 })).deleted.map((item) => item.name)).toEqual(["checkpoint-001"]);
  });

  it("writes nothing while planning", async () => {
    await startSession();
    for (let step = 0; step < 3; step++) {
      await writeStep(step);
      await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * HOUR) });
    }
    const revision = store.revision();
    const plan = planRetention(store, { keepLast: 1 });
    expect(plan.sessions[0]!.result.remove).toHaveLength(2);
    expect(store.revision()).toBe(revision);
    expect(surviving()).toHaveLength(3);
  });
});

describe("temporary files", () => {
  it("finds stale runtime files and resume contexts of sessions that are not running, and nothing else", async () => {
    await startSession("s-live");
    await store.set("/sessions/history/s-ended", sessionRecord("s-ended", { status: "stopped" }));
    const write = (path: string) => {
      mkdirSync(join(dir, path, ".."), { recursive: true });
      writeFileSync(join(dir, path), "{}\n");
    };
    for (const sessionId of ["s-live", "s-ended", "s-gone"]) {
      write(`logs/${sessionId}/coder.resume.json`);
      write(`logs/${sessionId}/coder.log`);
    }
    write("supervisor.json.999999999.tmp");
    write(`supervisor.json.${process.pid}.tmp`); // a live process is still writing it
    write("supervisor.json");

    const scope = { storeDir: dir, projectDir: join(dir, ".."), sessions: knownSessions(store) };
    const found = findTemporaryFiles(scope);
    expect(found.map((file) => [file.path.slice(dir.length + 1), file.why])).toEqual([
      ["logs/s-ended/coder.resume.json", "resume context of ended session s-ended"],
      ["logs/s-gone/coder.resume.json", "resume context of removed session s-gone"],
      ["supervisor.json.999999999.tmp", "unfinished runtime file of exited process 999999999"],
    ]);
    expect(findTemporaryFiles({ ...scope, sessionId: "s-ended" }).map((file) => file.path.slice(dir.length + 1))).toEqual([
      "logs/s-ended/coder.resume.json",
      "supervisor.json.999999999.tmp",
    ]);
    const removal = removeTemporaryFiles(found);
    expect(removal.bytes).toBe(9);
    expect(removal.failed).toEqual([]);
    expect(found.every((file) => !existsSync(file.path))).toBe(true);
    expect(existsSync(join(dir, "logs/s-live/coder.resume.json"))).toBe(true);
    expect(existsSync(join(dir, "logs/s-ended/coder.log"))).toBe(true);
    expect(existsSync(join(dir, `supervisor.json.${process.pid}.tmp`))).toBe(true);
  });
});

describe("the cleanup command, in process", () => {
  function context() {
    const lines: string[] = [];
    const json: unknown[] = [];
    return {
      lines,
      json,
      value: commandContext({
        config: { ...configWith(100), storeDir: dir, projectDir: dir } as Config,
        projectDir: dir,
        engine: new Engine(),
        store: async () => store,
        storeExists: async () => true,
        print: (text: string) => lines.push(text),
        printJson: (value: unknown) => json.push(value),
      }),
    };
  }

  it("a sweep that could not run is its sweep_error {code, message, hint} in --json, hint null when the error has none (it was left out)", async () => {
    await startSession();
    await writeStep(0);
    await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START) });
    // Nothing to delete, so the sweep is the first write: refused by a store opened read-only, an error without a hint.
    const writable = store;
    store = await backend.reopen(writable, { readOnly: true });
    const run = context();
    expect(await runCleanupCommand({ args: [], options: { json: true } }, run.value, { keepLast: 5, maxCheckpoints: 100 })).toBe(1);
    expect((run.json[0] as { sweep_error: unknown }).sweep_error).toEqual({ code: "APEX_E_INTERNAL", message: "The store was opened read-only.", hint: null });
    store = writable;
  });

  it("names at most 10 removed checkpoints in its text, then counts the rest (it printed one line of every name)", async () => {
    await startSession();
    for (let step = 0; step < 14; step++) {
      await writeStep(step);
      await createCheckpoint(store, { sessionId: SESSION, trigger: "interval", now: () => new Date(START + step * HOUR) });
    }
    const run = context();
    expect(await runCleanupCommand({ args: [], options: {} }, run.value, { keepLast: 1, maxCheckpoints: 100 })).toBe(0);
    const names = Array.from({ length: 10 }, (_, i) => `checkpoint-${String(13 - i).padStart(3, "0")}`).join(", ");
    expect(run.lines).toContain(`Session s-main (interrupted): removed 13 checkpoints (${names} and 3 more: --json lists them), kept 1`);
    expect(surviving()).toEqual(["checkpoint-014"]);
  });

  it("prints the plan with --dry-run, then applies it; text names sessions as the other commands do, --json by whole ids", async () => {
    // Sessions as APEX makes them (uuids), one a branch with a name: the text prints a session by
    // its name, else its uuid's short form (it printed whole ids, in reasons too).
    const main = "3f2a9c1e-0b7d-4c55-9e61-2d8f3a4b5c6d";
    const branch = "7d0b2e4f-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
    await startSession(main);
    const ids: string[] = [];
    for (let step = 0; step < 3; step++) {
      await writeStep(step);
      ids.push((await createCheckpoint(store, { sessionId: main, trigger: "interval", now: () => new Date(START + step * 24 * HOUR) })).manifest.id);
    }
    await store.set(`/sessions/history/${branch}`, sessionRecord(branch, { status: "stopped", name: "experiment", parent_checkpoint: ids[1]! }));
    const policy: RetentionPolicy = { keepLast: 1, keepWithinMs: 30 * HOUR, keepWithinLabel: "30h", maxCheckpoints: 100 };
    const dry = context();
    expect(await runCleanupCommand({ args: [], options: { dryRun: true } }, dry.value, policy)).toBe(0);
    expect(dry.lines).toEqual([
      "Retention policy: keep_last 1, keep_within 30h per trigger; manual, beforeRestore kept until deleted; max_checkpoints 100",
      "Hours, days, ISO weeks and months are counted in UTC; times shown are UTC.",
      "",
      "Session 3f2a9c1e (interrupted): 3 checkpoints, keep 2, remove 1",
      "  keep   checkpoint-003  2026-11-18 06:00  latest, last, within 30h",
      "  keep   checkpoint-002  2026-11-17 06:00  branch experiment, within 30h",
      "  remove checkpoint-001  2026-11-16 06:00  no rule keeps it",
      "",
      "Would sweep 1 value and 3 tree nodes no kept checkpoint would reference: 238 B freed on disk (objects dropped: 268 B uncompressed).",
      "",
      "Dry run: nothing was changed. Run `apex session cleanup` without --dry-run to apply.",
    ]);
    // --dry-run --json has the real run's keys, and what it would delete and sweep (it had neither: no bytes_freed).
    const dryJson = context();
    expect(await runCleanupCommand({ args: ["3f2a"], options: { dryRun: true, json: true } }, dryJson.value, policy)).toBe(0);
    expect(surviving(main)).toHaveLength(3);

    const real = context();
    expect(await runCleanupCommand({ args: ["3f2a"], options: { json: true } }, real.value, policy)).toBe(0);
    const { dry_run: dryFlag, ...dryRest } = dryJson.json[0] as Record<string, unknown>;
    const { dry_run: realFlag, ...realRest } = real.json[0] as Record<string, unknown>;
    expect([dryFlag, realFlag]).toEqual([true, false]);
    expect(dryRest).toEqual(realRest);
    expect(realRest.bytes_freed).toBeGreaterThan(0);
    expect(real.json[0]).toMatchObject({
      dry_run: false,
      deleted: [{ session_id: main, name: "checkpoint-001", reason: "no rule keeps it" }],
      sessions: [{ session_id: main, kept: 2, removed: 1, keep_within_from: "2026-11-18T06:00:00.000Z", checkpoints: [{}, { name: "checkpoint-002", reasons: expect.arrayContaining([`branch ${branch}`]) }, {}] }],
      sweep_error: null,
    });
    expect(surviving(main)).toEqual(["checkpoint-002", "checkpoint-003"]);
    const again = context();
    expect(await runCleanupCommand({ args: [], options: {} }, again.value, policy)).toBe(0);
    expect(again.lines).toContain("Session 3f2a9c1e (interrupted): removed 0 checkpoints, kept 2");
  });
});
});
