import { createHash } from "node:crypto";
import { execFile, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { brotliCompressSync, brotliDecompressSync } from "node:zlib";
import { basename, join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { ObjectStore } from "../plugins/checkpoint/engine/objects.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import {
  createCheckpoint,
  deleteCheckpoint,
  listCheckpoints,
  readCheckpointMemory,
  resolveCheckpoint,
  showCheckpoint,
} from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { compressColdData } from "../plugins/compression/compress.js";
import { BUNDLE_VERSION, HEADER_BYTES, encodeBundle, readBundle, type BundleContent, type BundleInput } from "../plugins/archive/bundle.js";
import { archiveSessions } from "../plugins/archive/archive.js";
import { createBranch, writeDerivedCheckpoint } from "../plugins/checkpoint/branch.js";
import { loadManifest } from "../plugins/checkpoint/checkpoints.js";
import { applyToTree, objectView, type MergeChange } from "../plugins/checkpoint/merge.js";
import { mergeSessions } from "../plugins/checkpoint/session-merge.js";
import { APEX_BIN, cleanEnv, runApex, tempDir } from "./helpers/cli.js";
import { sessionDir } from "./support/cleanup.js";
import { forEachBackend, type TestBackend } from "./support/backends.js";
import { createSharedDatabase, query } from "./support/postgres.js";

let root: string;
let cleanup: () => void;
beforeEach(() => {
  // Sessions some tests start are ended even when the test fails before its stop.
  ({ dir: root, cleanup } = sessionDir("apex-archive-"));
});
afterEach(() => cleanup());

const CONFIG = "plugins:\n  checkpoint: {}\n  archive: {}\n";
const DAY = 86_400_000;
const NOW = Date.now();

/**
 * The backend the CLI and withStore use: LMDB unless a block runs on each backend
 * (forEachBackend below sets it for its tests).
 */
let backend: TestBackend | undefined;
let env: Record<string, string> = {};

/** A project directory with the archive plugin enabled (named apart per test: a PostgreSQL project id is the directory's name). */
function project(name: string): string {
  const dir = join(root, `${name}-${basename(root)}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
  return dir;
}

const apexIn = (dir: string) => (...args: string[]) => runApex(args, { cwd: dir, env });

function record(sessionId: string, at: number): Record<string, JsonValue> {
  const iso = new Date(at).toISOString();
  return {
    session_id: sessionId,
    project_id: "p-archive",
    created_at: iso,
    updated_at: iso,
    status: "active",
    initial_task: `task of ${sessionId}`,
    agents: ["coder"],
    supervisor: null,
    history: [{ event: "started", at: iso }],
    outcome: null,
    ended_at: null,
    restored_from: null,
  };
}

/**
 * A session with `steps` checkpoints (memory, tasks and agent states changing each step),
 * events and milestones; ended `endedDaysAgo` days ago (moved to /sessions/history) or,
 * with null, left live and current.
 */
async function makeSession(store: Store, sessionId: string, steps: number, endedDaysAgo: number | null): Promise<void> {
  const started = NOW - ((endedDaysAgo ?? 0) + steps) * DAY;
  await store.batch((batch) => {
    batch.set(`/sessions/${sessionId}`, record(sessionId, started));
    batch.set("/sessions/current", { session_id: sessionId });
    batch.set(`/sessions/${sessionId}/counters`, { tasks: steps, milestones: 1, events: steps });
    batch.set(`/sessions/${sessionId}/milestones/0001`, { n: 1, text: "halfway", at: new Date(started).toISOString(), by: "coder", task: null });
  });
  for (let step = 0; step < steps; step++) {
    const tid = `t-${String(step + 1).padStart(4, "0")}`;
    await store.batch((batch) => {
      batch.set(`/notes/${sessionId}/step`, { step, text: `step ${step} of ${sessionId}`.repeat(20) });
      batch.set(`/notes/shared/counter`, { value: step });
      batch.set(`/work/${sessionId}/file-${step}`, { lines: Array.from({ length: 30 }, (_, i) => `line ${i} of step ${step}`) });
      batch.set(`/sessions/${sessionId}/tasks/${tid}`, { id: tid, title: `task ${step}`, status: "completed", assignee: "coder" });
      batch.set(`/sessions/${sessionId}/agents/coder`, { name: "coder", status: "running", task: tid, pid: 1000 + step });
      batch.set(`/sessions/${sessionId}/agents/coder.context`, { notes: `context after ${step}` });
      batch.set(`/sessions/${sessionId}/events/${String(step + 1).padStart(8, "0")}`, { seq: step + 1, at: new Date(started + step * DAY).toISOString(), type: "task.completed", actor: "agent:coder" });
    });
    await createCheckpoint(store, { sessionId, trigger: step % 2 ? "interval" : "manual", description: `step ${step}`, now: () => new Date(started + step * DAY) });
  }
  if (endedDaysAgo === null) return;
  const ended = new Date(NOW - endedDaysAgo * DAY).toISOString();
  await store.batch((batch) => {
    const live = batch.get(`/sessions/${sessionId}`) as Record<string, JsonValue>;
    batch.delete(`/sessions/${sessionId}`);
    batch.set(`/sessions/history/${sessionId}`, { ...live, status: "stopped", outcome: "stopped by the user", ended_at: ended, updated_at: ended });
    batch.delete("/sessions/current");
  });
}

/** Everything about a session the store holds: records, checkpoints, and each checkpoint's memory, tasks and agents. */
function snapshot(store: Store, sessionId: string) {
  const list = listCheckpoints(store, sessionId, { limit: 1000, order: "oldest" });
  return {
    ended: store.get(`/sessions/history/${sessionId}`) ?? null,
    live: store.get(`/sessions/${sessionId}`) ?? null,
    records: [...store.tree(`/sessions/${sessionId}`)],
    checkpoints: list,
    lastSequence: Catalog.of(store).lastSequence(sessionId),
    memory: list.items.map((item) => [...readCheckpointMemory(store, item.id)]),
    details: list.items.map((item) => {
      const details = showCheckpoint(store, item.id);
      return { tasks: details.tasks, agents: details.agent_states };
    }),
  };
}

async function withStore<T>(dir: string, fn: (store: Store) => Promise<T> | T): Promise<T> {
  const store = backend ? await openStore(await backend.projectSpec(dir)) : await openStore(join(dir, ".apex"));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * Three sessions: one ended 60 days ago (its first checkpoint deleted), one ended a day ago, one live.
 * Made once per backend, in a project of the file's own, then copied into each project that starts
 * from them (the store's files on LMDB, the project's rows on PostgreSQL): the same store, ~0.15 s
 * (LMDB) or ~0.5 s (PostgreSQL) less in each of the 25 tests that made it anew.
 */
async function threeSessions(dir: string): Promise<Awaited<ReturnType<typeof makeThreeSessions>>> {
  const key = backend?.name ?? "lmdb";
  let template = templates.get(key);
  if (!template) {
    const made = join(templateRoot.dir, key);
    mkdirSync(made);
    template = { dir: made, state: await makeThreeSessions(made) };
    templates.set(key, template);
  }
  if (backend?.name === "postgres") {
    const [from, to] = await Promise.all([backend.projectSpec(template.dir), backend.projectSpec(dir)]);
    if (!to.url || !from.project || !to.project) throw new Error("threeSessions: a PostgreSQL project's spec names its database and project");
    // Every table of the project's rows (plugins/postgres/backend.ts), its id changed.
    await query(
      to.url,
      `WITH stores AS (INSERT INTO apex.stores (project, revision, created) SELECT $2, revision, created FROM apex.stores WHERE project = $1),
            kv AS (INSERT INTO apex.kv (project, path, value, codec) SELECT $2, path, value, codec FROM apex.kv WHERE project = $1),
            log AS (INSERT INTO apex.log (project, first, paths, kinds, actor, time) SELECT $2, first, paths, kinds, actor, time FROM apex.log WHERE project = $1),
            tables AS (INSERT INTO apex.tables (project, name, keys, vals) SELECT $2, name, keys, vals FROM apex.tables WHERE project = $1),
            rows AS (INSERT INTO apex.rows (project, tbl, key, value, codec) SELECT $2, tbl, key, value, codec FROM apex.rows WHERE project = $1)
       INSERT INTO apex.groups (project, tbl, first, n, entries, codec) SELECT $2, tbl, first, n, entries, codec FROM apex.groups WHERE project = $1`,
      [from.project, to.project],
    );
  } else {
    cpSync(join(template.dir, ".apex"), join(dir, ".apex"), { recursive: true });
  }
  return structuredClone(template.state);
}
const templateRoot = tempDir("apex-archive-template-");
afterAll(() => templateRoot.cleanup());
const templates = new Map<string, { dir: string; state: Awaited<ReturnType<typeof makeThreeSessions>> }>();

async function makeThreeSessions(dir: string) {
  return withStore(dir, async (store) => {
    await store.set("/projects/config", { project_id: "p-archive", created_at: new Date(NOW - 100 * DAY).toISOString() });
    await makeSession(store, "s-old", 4, 60);
    await deleteCheckpoint(store, "s-old/checkpoint-001");
    await makeSession(store, "s-recent", 3, 1);
    await makeSession(store, "s-live", 2, null);
    return { old: snapshot(store, "s-old"), recent: snapshot(store, "s-recent"), live: snapshot(store, "s-live"), revision: store.revision() };
  });
}

/** A checkpoint of ended session `sessionId`: its latest trees with `memory` set, dated `at`. */
async function commitOn(store: Store, sessionId: string, memory: Record<string, JsonValue>, at: number): Promise<void> {
  await store.transaction(() => {
    const latest = Catalog.of(store).latest(sessionId)!;
    const parent = loadManifest(store, { ...latest, sessionId });
    const view = objectView(store);
    const changes: MergeChange[] = Object.entries(memory).map(([path, value]) => ({ path, kind: "modified", hash: view.writeValue(value) }));
    const applied = applyToTree(view, parent.memory.root, changes);
    writeDerivedCheckpoint(store, {
      sessionId,
      trigger: "interval",
      description: "work",
      parent: parent.id,
      createdAt: new Date(at).toISOString(),
      roots: { memory: { ...parent.memory, root: applied.root, keys: parent.memory.keys + applied.delta }, tasks: parent.tasks, agents: parent.agents },
      gitState: null,
      data: {},
      actor: "user:test",
    });
  });
}

/** Ended sessions `ids` dated as ended `days` ago. */
async function endedDaysAgo(store: Store, ids: readonly string[], days: number): Promise<void> {
  for (const id of ids) {
    const ended = store.get(`/sessions/history/${id}`) as Record<string, JsonValue>;
    await store.set(`/sessions/history/${id}`, { ...ended, ended_at: new Date(NOW - days * DAY).toISOString() });
  }
}

function json(result: { stdout: string }): any {
  return JSON.parse(result.stdout);
}

function errorOf(result: { stderr: string }): { code: string; exitCode: number; message: string } {
  return JSON.parse(result.stderr).error;
}

forEachBackend((each) => {
beforeEach(async () => {
  backend = each;
  env = await each.env();
});
afterEach(() => {
  backend = undefined;
  env = {};
});

describe("apex session archive / unarchive", () => {
  it("moves ended sessions older than the cutoff into one bundle each and brings one back identical", async () => {
    const dir = project("p1");
    const apex = apexIn(dir);
    const before = await threeSessions(dir);
    expect(before.old.checkpoints.total).toBe(3);
    expect(before.old.lastSequence).toBe(4);
    const oldIds = before.old.checkpoints.items.map((item) => item.id);

    // The dry run says what the sweep after it frees, as the run then does (it said sweep: null).
    const dry = apex("session", "archive", "--older-than", "30days", "--dry-run", "--json");
    expect(dry.status, dry.stderr).toBe(0);
    await withStore(dir, (store) => expect(store.revision()).toBe(before.revision));
    const archived = apex("session", "archive", "--older-than", "30days", "--json");
    expect(archived.stderr).toBe("");
    expect(archived.status).toBe(0);
    const result = json(archived);
    expect(result.archived.map((session: { session_id: string }) => session.session_id)).toEqual(["s-old"]);
    expect(result.archived[0]).toMatchObject({ checkpoints: 3, file: join(dir, ".apex/backups/s-old.apexbundle") });
    expect(result.archived[0].file_bytes).toBeLessThan(result.archived[0].body_bytes);
    expect(result.sweep.values).toBeGreaterThan(0); // values only s-old's checkpoints used
    expect(json(dry).sweep).toEqual(result.sweep);
    // The dry run names the file the run writes (it said file: null), and its text says where it goes.
    expect(json(dry).archived[0].file).toBe(result.archived[0].file);
    // The packs' freed bytes are bytes_freed, as every other key is snake_case; bytesFreed, which the
    // --json help listed, stays beside it for scripts.
    expect(result.sweep.packs).toEqual({ removed: expect.any(Number), rewritten: expect.any(Number), bytes_freed: expect.any(Number), bytesFreed: result.sweep.packs.bytes_freed });
    expect(result.sweep.packs.bytes_freed).toBeGreaterThan(0);
    expect(existsSync(join(dir, ".apex/backups/s-old.apexbundle"))).toBe(true);

    await withStore(dir, (store) => {
      expect(store.get("/sessions/history/s-old")).toBeUndefined();
      expect([...store.keysBelow("/sessions/s-old")]).toEqual([]);
      expect(listCheckpoints(store, "s-old").total).toBe(0);
      expect(Catalog.of(store).lastSequence("s-old")).toBe(0);
      expect([...Catalog.of(store).counters()].map((counter) => counter.sessionId).sort()).toEqual(["s-live", "s-recent"]);
      for (const id of oldIds) expect(() => resolveCheckpoint(store, id)).toThrow(expect.objectContaining({ code: "APEX_E_CHECKPOINT_NOT_FOUND" }));
      expect(snapshot(store, "s-recent")).toEqual(before.recent);
      expect(snapshot(store, "s-live")).toEqual(before.live);
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });

    const back = apex("session", "unarchive", "s-old", "--json");
    expect(back.stderr).toBe("");
    expect(back.status).toBe(0);
    expect(json(back)).toMatchObject({ session_id: "s-old", bundle_kind: "archive", checkpoints: 3, converted_to_ended: false, bundle_removed: true });
    expect(existsSync(join(dir, ".apex/backups/s-old.apexbundle"))).toBe(false);
    await withStore(dir, (store) => {
      expect(snapshot(store, "s-old")).toEqual(before.old);
      expect(snapshot(store, "s-recent")).toEqual(before.recent);
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
    // Sequence numbers are never reused: the next checkpoint of s-old would be 5.
    await withStore(dir, (store) => expect(Catalog.of(store).lastSequence("s-old")).toBe(4));
  });

  it("accepts 30d and 12h, refuses bad durations (2) and live sessions (4) without writing anything", async () => {
    const dir = project("p1");
    const apex = apexIn(dir);
    const before = await threeSessions(dir);

    const names = (result: { stdout: string }) => json(result).archived.map((session: { session_id: string }) => session.session_id);
    const thirty = apex("session", "archive", "--older-than", "30d", "--dry-run", "--json");
    expect(thirty.status).toBe(0);
    expect(names(thirty)).toEqual(["s-old"]);
    const twelve = apex("session", "archive", "--older-than", "12h", "--dry-run", "--json");
    expect(twelve.status).toBe(0);
    expect(names(twelve)).toEqual(["s-old", "s-recent"]);
    expect(json(twelve).dry_run).toBe(true);
    const text = apex("session", "archive", "--older-than", "12h", "--dry-run");
    expect(text.stdout).toMatch(/Would archive 2 sessions/);
    expect(text.stdout).toContain("-> .apex/backups/s-old.apexbundle");
    expect(text.stdout).toMatch(/Dry run: nothing was written or removed/);

    for (const bad of ["30dayz", "-30", "soon"]) {
      const result = apex("session", "archive", "--older-than", bad, "--json");
      expect(result.status, bad).toBe(2);
      expect(errorOf(result).code).toBe("APEX_E_USAGE");
    }
    const none = apex("session", "archive", "--json");
    expect(none.status).toBe(2);
    expect(errorOf(none).code).toBe("APEX_E_USAGE");

    const live = apex("session", "archive", "s-live", "--json");
    expect(live.status).toBe(4);
    expect(errorOf(live).code).toBe("APEX_E_SESSION_ACTIVE");
    // Its record says active, with no supervisor: interrupted, as apex status says (it said "status active").
    expect(errorOf(live).message).toBe("Session s-live has not ended (it is interrupted: its supervisor is gone); only ended sessions are archived.");
    const missing = apex("session", "archive", "s-nope", "--json");
    expect(missing.status).toBe(3);

    // A duration longer than a Date reaches back is refused by the config check, naming the field (it failed, exit 1,
    // "Invalid time value"; then it was taken, with a cutoff in the year -271821).
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG.replace("archive: {}", 'archive: {older_than: "99999999999999999999w"}'));
    const ages = apex("session", "archive", "--dry-run", "--json");
    expect(ages.status).toBe(2);
    expect(errorOf(ages)).toMatchObject({ code: "APEX_E_CONFIG", details: { errors: [{ path: "plugins.archive.older_than", expected: 'at most 36525 days ("36525d", about 100 years)' }] } });

    expect(existsSync(join(dir, ".apex/backups"))).toBe(false);
    await withStore(dir, (store) => {
      expect(store.revision()).toBe(before.revision);
      expect(snapshot(store, "s-old")).toEqual(before.old);
    });
  });

  it("unarchive finishes for a session back as its archive holds it, refuses one back in another state and an unknown id", async () => {
    const dir = project("p1");
    const apex = apexIn(dir);
    await threeSessions(dir);
    // An ended session's record keeps the supervisor it had (unarchive clears it).
    await withStore(dir, async (store) => {
      const supervisor = { pid: spawnSync("true").pid!, host: "vm", started_at: new Date(NOW - 40 * DAY).toISOString() };
      await store.set("/sessions/history/s-old", { ...(store.get("/sessions/history/s-old") as Record<string, JsonValue>), supervisor });
    });
    // By a unique prefix, as the help's example does (it said "No session s-ol").
    const archived = apex("session", "archive", "s-ol", "--json");
    expect(archived.status, archived.stderr).toBe(0);
    expect(json(archived).archived.map((session: { session_id: string }) => session.session_id)).toEqual(["s-old"]);
    expect(apex("session", "unarchive", "s-old", "--keep").status).toBe(0);
    // Again, with the session here exactly as its archive holds it (what an unarchive killed before
    // removing the bundle leaves): said so, nothing written. It was refused (APEX_E_SESSION_EXISTS,
    // "archive or delete that session first"), of a session that was back.
    const revision = await withStore(dir, (store) => store.revision());
    const again = apex("session", "unarchive", "s-old", "--keep", "--json");
    expect(again.status, again.stderr).toBe(0);
    expect(json(again)).toMatchObject({ session_id: "s-old", already_back: true, bundle_removed: false });
    expect(apex("session", "unarchive", "s-old", "--keep").stdout).toContain("Session s-old is back already, as .apex/backups/s-old.apexbundle holds it");
    await withStore(dir, (store) => expect(store.revision()).toBe(revision));
    expect(existsSync(join(dir, ".apex/backups/s-old.apexbundle"))).toBe(true);
    // The session here and its bundle beside it, as an archive killed after writing the bundle (or an
    // unarchive killed before removing it) leaves them. Archiving again was refused with "move that
    // file away (or unarchive it)", which unarchive refuses: stuck. The bundle holds the session as it
    // is, so it is the archive; one of another state of the session is not taken for it.
    const bundle = join(dir, ".apex/backups/s-old.apexbundle");
    const bundleBytes = readFileSync(bundle);
    const rerun = apex("session", "archive", "s-old", "--json");
    expect(rerun.status, rerun.stderr).toBe(0);
    expect(json(rerun).archived[0]).toMatchObject({ session_id: "s-old", file: bundle });
    expect(readFileSync(bundle)).toEqual(bundleBytes);
    await withStore(dir, (store) => expect(store.get("/sessions/history/s-old")).toBeUndefined());
    expect(apex("session", "unarchive", "s-old", "--keep").status).toBe(0);
    await withStore(dir, async (store) => {
      await store.set("/sessions/history/s-old", { ...(store.get("/sessions/history/s-old") as Record<string, JsonValue>), outcome: "changed since" });
    });
    const changed = apex("session", "archive", "s-old", "--json");
    expect(changed.status, changed.stderr).toBe(4);
    expect(errorOf(changed)).toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("holding another state of it") });
    await withStore(dir, (store) => expect((store.get("/sessions/history/s-old") as Record<string, JsonValue>).outcome).toBe("changed since"));
    const otherState = apex("session", "unarchive", "s-old", "--json");
    expect(otherState.status).toBe(4);
    expect(errorOf(otherState).code).toBe("APEX_E_SESSION_EXISTS");
    expect(existsSync(bundle)).toBe(true);
    const unknown = apex("session", "unarchive", "s-nothing", "--json");
    expect(unknown.status).toBe(3);
    expect(errorOf(unknown).code).toBe("APEX_E_NOT_FOUND");
    // A bundle named outside the backup directory (an export) is the user's file: kept. Before, unarchive removed it.
    const mine = join(root, "mine.apexbundle");
    expect(apex("session", "export", "s-recent", "-o", mine, "--force").status).toBe(0);
    const elsewhere = apexIn(project("p-elsewhere"))("session", "unarchive", mine, "--json");
    expect(elsewhere.status, elsewhere.stderr).toBe(0);
    expect(json(elsewhere)).toMatchObject({ session_id: "s-recent", bundle_kind: "export", bundle_removed: false });
    expect(existsSync(mine)).toBe(true);
  });

  it("an export of the session as it is, where its archive goes, is refused as that: an export of the same state (it said another state, which unarchive of that file denied), and the hint's way works", async () => {
    const dir = project("export-in-the-way");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const file = join(dir, ".apex/backups/s-old.apexbundle");
    mkdirSync(join(dir, ".apex/backups"), { recursive: true });
    const exported = apex("session", "export", "s-old", "-o", file, "--json");
    expect(exported.status, exported.stderr).toBe(0);
    const bytes = readFileSync(file);
    const refused = apex("session", "archive", "s-old", "--json");
    expect(refused.status, refused.stderr).toBe(4);
    const error = JSON.parse(refused.stderr).error as { code: string; message: string; hint: string; details: Record<string, unknown> };
    expect(error.code).toBe("APEX_E_CONFLICT");
    expect(error.message).toContain("an export of it as it is now (`apex session export`), not an archive");
    expect(error.message).not.toContain("another state");
    expect(error.details).toMatchObject({ session_id: "s-old", file, bundle_kind: "export", same_state: true });
    expect(error.hint).toContain(`mv ${file} ${file}.export`);
    // What unarchive of that file says: the same state is here.
    const back = apex("session", "unarchive", file, "--json");
    expect(back.status, back.stderr).toBe(0);
    expect(json(back)).toMatchObject({ already_back: true, bundle_removed: false });
    // In a run over old sessions: left, a failure (exit 1), with the same reason.
    const all = apex("session", "archive", "--older-than", "30d", "--json");
    expect(all.status, all.stderr).toBe(1);
    expect(json(all).skipped).toEqual([expect.objectContaining({ session_id: "s-old", code: "APEX_E_CONFLICT", reason: expect.stringContaining("an export of it as it is now") })]);
    expect(readFileSync(file)).toEqual(bytes);
    await withStore(dir, (store) => expect(store.get("/sessions/history/s-old")).toBeDefined());
    // The hint's way: the export moved aside, the archive is written where it was.
    renameSync(file, `${file}.export`);
    const archived = apex("session", "archive", "s-old", "--json");
    expect(archived.status, archived.stderr).toBe(0);
    expect(json(archived).archived[0]).toMatchObject({ session_id: "s-old", file });
    expect(readBundle(readFileSync(file)).manifest.kind).toBe("archive");
  });

  it("a session whose name another session took meanwhile is not brought back: two sessions of one name would take each other's commands", async () => {
    const dir = project("p-names");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const named = (id: string, name: string) => withStore(dir, async (store) => {
      await store.set(`/sessions/history/${id}`, { ...(store.get(`/sessions/history/${id}`) as Record<string, JsonValue>), name });
    });
    await named("s-recent", "exp");
    // By its name, as every other command takes a session (it was "No session \"exp\""); export too.
    expect(apex("session", "export", "exp", "-o", join(root, "exp.apexbundle")).status).toBe(0);
    const archived = apex("session", "archive", "exp", "--json");
    expect(archived.status, archived.stderr).toBe(0);
    expect(json(archived).archived.map((session: { session_id: string }) => session.session_id)).toEqual(["s-recent"]);
    // The name is free while it is archived: another branch takes it.
    await named("s-old", "exp");
    const revision = await withStore(dir, (store) => store.revision());
    const back = apex("session", "unarchive", "s-recent", "--json");
    expect(back.status, back.stderr).toBe(4);
    expect(errorOf(back)).toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("already has a session named exp (s-old)") });
    await withStore(dir, (store) => {
      expect(store.revision()).toBe(revision);
      expect(store.get("/sessions/history/s-recent")).toBeUndefined();
    });
    expect(existsSync(join(dir, ".apex/backups/s-recent.apexbundle"))).toBe(true);
    // Nor one whose name differs only in case: apex/exp and apex/EXP are one git branch where the file system ignores case.
    await named("s-old", "EXP");
    const alike = apex("session", "unarchive", "s-recent", "--json");
    expect(alike.status, alike.stderr).toBe(4);
    expect(errorOf(alike)).toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("already has a session named EXP (s-old); refusing to bring back s-recent, which has a name that differs from it only in case (exp)") });
    await withStore(dir, (store) => expect(store.get("/sessions/history/s-recent")).toBeUndefined());
    // The name freed again, it comes back.
    await named("s-old", "exp-2");
    expect(apex("session", "unarchive", "s-recent").status).toBe(0);
  });

  it("a branch whose archive fails stays, and so does the session it was branched from: branches go first", async () => {
    const dir = project("p-branch");
    const apex = apexIn(dir);
    await threeSessions(dir);
    // s-kid, ended 2 days ago, was branched from s-old (ended 60 days ago), so it ends up after s-old by age.
    await withStore(dir, async (store) => {
      await makeSession(store, "s-kid", 1, 2);
      const parent = resolveCheckpoint(store, "s-old/checkpoint-002").id;
      await store.set("/sessions/history/s-kid", { ...(store.get("/sessions/history/s-kid") as Record<string, JsonValue>), name: "kid", parent_checkpoint: parent });
    });
    // s-kid cannot be archived: a bundle of another state of it is in the way.
    mkdirSync(join(dir, ".apex/backups"), { recursive: true });
    writeFileSync(join(dir, ".apex/backups/s-kid.apexbundle"), "another state");
    // The dry run says what the run does: neither would go (it listed both as archived, s-old's bundle too).
    const preview = apex("session", "archive", "--older-than", "36h", "--dry-run", "--json");
    expect(preview.status, preview.stderr).toBe(1);
    expect(json(preview).archived).toEqual([]);
    expect(json(preview).skipped.map((skipped: { session_id: string; code: string }) => `${skipped.session_id} ${skipped.code}`)).toEqual(["s-kid APEX_E_CONFLICT", "s-old APEX_E_CONFLICT"]);
    const named = apex("session", "archive", "s-kid", "--dry-run", "--json");
    expect(named.status).toBe(4);
    expect(errorOf(named)).toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("holding another state of it") });
    // A session that could not be archived is a failure (exit 1), as a damaged one is: it exited 0,
    // saying there was nothing to archive, and a cron job took the session for archived.
    const blocked = apex("session", "archive", "--older-than", "36h", "--json");
    expect(blocked.status, blocked.stderr).toBe(1);
    // s-old stays too (it was archived first, leaving the branch without the checkpoint it starts from).
    expect(json(blocked).archived).toEqual([]);
    expect(json(blocked).skipped.map((skipped: { session_id: string; code: string }) => `${skipped.session_id} ${skipped.code}`)).toEqual(["s-kid APEX_E_CONFLICT", "s-old APEX_E_CONFLICT"]);
    // The branch named as session list names it (its name; it gave the whole id).
    expect(json(blocked).skipped[1].reason).toMatch(/^session kid was branched from its checkpoint /);
    await withStore(dir, (store) => {
      expect(store.get("/sessions/history/s-old")).toBeDefined();
      expect(listCheckpoints(store, "s-old").items.map((item) => item.name)).toContain("checkpoint-002");
    });

    const text = apex("session", "archive", "--older-than", "36h");
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/^Nothing archived: 1 session could not be archived \(ended sessions older than 1d12h, i\.e\. ended before /);
    expect(text.stdout).toContain("left in the store: s-kid: Session kid already has a bundle at");

    rmSync(join(dir, ".apex/backups/s-kid.apexbundle"));
    const dry = apex("session", "archive", "--older-than", "36h", "--dry-run", "--json");
    expect(dry.status, dry.stderr).toBe(0);
    expect(json(dry).archived.map((session: { session_id: string }) => session.session_id)).toEqual(["s-kid", "s-old"]);
    const both = apex("session", "archive", "--older-than", "36h", "--json");
    expect(both.status, both.stderr).toBe(0);
    expect(json(both).archived.map((session: { session_id: string }) => session.session_id)).toEqual(["s-kid", "s-old"]);
  });

  it("a branch made from the session's checkpoint while its bundle is written keeps the session (and the checkpoint it starts from)", async () => {
    const dir = project("p-branch-race");
    await threeSessions(dir);
    await withStore(dir, async (store) => {
      const parent = resolveCheckpoint(store, "s-old/checkpoint-002").id;
      await makeSession(store, "s-kid", 1, 2);
      const kid = store.get("/sessions/history/s-kid") as Record<string, JsonValue>;
      // The branch is recorded after the bundle was written, just before the session is removed.
      let branched = false;
      const racing = new Proxy(store, {
        get(target, name, receiver) {
          if (name === "transaction" && !branched) {
            return async (fn: () => unknown) => {
              branched = true;
              await target.set("/sessions/history/s-kid", { ...kid, name: "kid", parent_checkpoint: parent });
              return target.transaction(fn);
            };
          }
          const value = Reflect.get(target, name, receiver);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      await expect(archiveSessions(racing, { sessionId: "s-old", directory: join(dir, ".apex/backups"), codec: "gzip" })).rejects.toMatchObject({
        code: "APEX_E_CONFLICT",
        // The branch and the session by name, else short id, as session list prints them (it gave the branch's id).
        message: expect.stringMatching(/^Session kid was branched from checkpoint \S+ of session s-old while it was being archived; it stays\.$/),
      });
      expect(branched).toBe(true);
      expect(store.get("/sessions/history/s-old")).toBeDefined();
      expect(resolveCheckpoint(store, "s-old/checkpoint-002").id).toBe(parent);
      // No bundle passes for the archive of a session that stayed.
      expect(existsSync(join(dir, ".apex/backups/s-old.apexbundle"))).toBe(false);
    });
  });

  it("a branch merged back into a session that stays is archived: merging back and archiving the branch is the usual end of a track", async () => {
    const dir = project("p-merged-back");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const { src, dst } = await withStore(dir, async (store) => {
      const from = resolveCheckpoint(store, "s-old/checkpoint-002").id;
      const dst = (await createBranch(store, from, "dst", { now: () => new Date(NOW - 57 * DAY) })).session_id;
      const src = (await createBranch(store, from, "src", { now: () => new Date(NOW - 55 * DAY) })).session_id;
      await commitOn(store, src, { "/notes/shared/counter": "src" }, NOW - 54 * DAY);
      await mergeSessions(store, { source: "src", destination: "dst" });
      await endedDaysAgo(store, [src], 40);
      await endedDaysAgo(store, [dst], 1);
      return { src, dst };
    });
    const merged = await withStore(dir, (store) => ({ from: Catalog.of(store).latest(src)!, merge: Catalog.of(store).latest(dst)! }));
    const archived = apex("session", "archive", "src", "--json");
    expect(archived.status, archived.stderr).toBe(0);
    expect(json(archived).archived.map((session: { session_id: string }) => session.session_id)).toEqual([src]);
    expect(existsSync(join(dir, ".apex/backups", `${src}.apexbundle`))).toBe(true);
    // The session that merged it in keeps its merge checkpoint and what it merged, and the store verifies.
    await withStore(dir, (store) => {
      expect(store.get(`/sessions/history/${src}`)).toBeUndefined();
      expect(Catalog.of(store).latest(dst)?.trigger).toBe("merge");
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
    // session tree keeps the merge's edge, to what the merge recorded of the archived checkpoint (it drew none).
    type Tree = { nodes: Array<{ id: string; session_id: string; name: string; trigger: string; parents: string[]; archived?: boolean }> };
    const tree = json(apex("session", "tree", "--json")) as Tree;
    expect(tree.nodes.find((node) => node.id === merged.merge.id)!.parents).toContain(merged.from.id);
    expect(tree.nodes.find((node) => node.id === merged.from.id)).toMatchObject({ session_id: src, name: merged.from.name, trigger: "archived", parents: [], archived: true });
    const text = apex("session", "tree").stdout.split("\n");
    const at = text.findIndex((line) => line.includes(merged.merge.id.slice(0, 8)));
    expect(text[at + 1]).toContain("\\"); // the merge's second parent, opened to the right ("|\\")
    // By the branch's name, which the merge recorded (it drew the short id).
    expect(text.find((line) => line.includes(merged.from.id.slice(0, 8)))).toMatch(new RegExp(`\\*  ${merged.from.id.slice(0, 8)} \\[src\\] ${merged.from.name} archived \\(\`apex session unarchive ${src.slice(0, 8)}\` brings its session back\\)$`));
    // Brought back, it is drawn from its own records again.
    expect(apex("session", "unarchive", src.slice(0, 8)).status).toBe(0);
    const back = json(apex("session", "tree", "--json")) as Tree;
    expect(back.nodes.find((node) => node.id === merged.from.id)).toMatchObject({ session_id: src, trigger: merged.from.trigger });
    expect(back.nodes.some((node) => node.archived)).toBe(false);
  });

  it("session tree suggests unarchive for a merged-in checkpoint's session only when an archive of it is in the backup directory: not for one an imported merge names, nor once its archive was moved away", async () => {
    const dir = project("p-tree-here");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const src = await withStore(dir, async (store) => {
      const from = resolveCheckpoint(store, "s-old/checkpoint-002").id;
      await createBranch(store, from, "dst", { now: () => new Date(NOW - 57 * DAY) });
      const src = (await createBranch(store, from, "src", { now: () => new Date(NOW - 55 * DAY) })).session_id;
      await commitOn(store, src, { "/notes/shared/counter": "src" }, NOW - 54 * DAY);
      await mergeSessions(store, { source: "src", destination: "dst" });
      return src;
    });
    const from = await withStore(dir, (store) => Catalog.of(store).latest(src)!);
    type Tree = { nodes: Array<{ id: string; archived?: boolean; archive?: { file: string; unarchive: string } | null }> };
    const lineOf = (result: { stdout: string }) => result.stdout.split("\n").find((line) => line.includes(from.id.slice(0, 8)))!;

    // dst, with its merge of src, imported into another project without src: src was never archived there.
    const bundle = join(root, "dst.apexbundle");
    expect(apex("session", "export", "dst", "-o", bundle).status).toBe(0);
    const elsewhere = project("p-tree-imported");
    const there = apexIn(elsewhere);
    const imported = there("session", "import", bundle);
    expect(imported.status, imported.stderr).toBe(0);
    const tree = there("session", "tree");
    expect(tree.status, tree.stderr).toBe(0);
    // It suggested `apex session unarchive <src>`, which finds no archive there.
    expect(tree.stdout).not.toContain("unarchive");
    expect(lineOf(tree)).toMatch(new RegExp(`\\*  ${from.id.slice(0, 8)} \\[src\\] ${from.name} absent \\(its session is not in this store, and \\.apex/backups holds no archive of it: it was not imported here, or its archive was moved away\\)$`));
    expect((json(there("session", "tree", "--json")) as Tree).nodes.find((node) => node.id === from.id)).toMatchObject({ archived: true, archive: null });

    // Archived here, it is suggested, by the archive's file; moved away from the backup directory, it is not.
    expect(apex("session", "archive", "src").status).toBe(0);
    const file = join(dir, ".apex/backups", `${src}.apexbundle`);
    expect(lineOf(apex("session", "tree"))).toContain(`${from.name} archived (\`apex session unarchive ${src.slice(0, 8)}\` brings its session back)`);
    expect((json(apex("session", "tree", "--json")) as Tree).nodes.find((node) => node.id === from.id)!.archive).toEqual({ file: `.apex/backups/${src}.apexbundle`, unarchive: src.slice(0, 8) });
    renameSync(file, join(root, "moved.apexbundle"));
    const moved = apex("session", "tree");
    expect(moved.stdout).not.toContain("unarchive");
    expect(lineOf(moved)).toContain(`${from.name} absent (its session is not in this store, and .apex/backups holds no archive of it`);
  });

  it("archives compressed checkpoint data too: the bundle holds the uncompressed bytes", async () => {
    const dir = project("p1");
    const apex = apexIn(dir);
    const before = await threeSessions(dir);
    await withStore(dir, async (store) => {
      const result = await compressColdData(store, { algorithm: "gzip", policy: { after: 0 } });
      expect(result.values.compressed).toBeGreaterThan(0);
    });
    expect(apex("session", "archive", "--older-than", "30d").status).toBe(0);
    expect(apex("session", "unarchive", "s-old").status).toBe(0);
    await withStore(dir, (store) => {
      expect(snapshot(store, "s-old")).toEqual(before.old);
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
  });
});

describe("apex session export / import", () => {
  it("round-trips a session into a fresh project; importing it twice is a no-op saying so, over a session changed since refused", async () => {
    const source = project("source");
    const target = project("target");
    const before = await threeSessions(source);
    const file = join(root, "recent.apexbundle");

    const exported = apexIn(source)("session", "export", "s-rec", "-o", file, "--json");
    expect(exported.stderr).toBe("");
    expect(exported.status).toBe(0);
    expect(json(exported)).toMatchObject({ session_id: "s-recent", state: "ended", checkpoints: 3, file });
    // Export reads only: the source is unchanged.
    await withStore(source, (store) => expect(store.revision()).toBe(before.revision));
    expect(apexIn(source)("session", "export", "s-recent", "-o", file).status).toBe(4); // exists: --force to replace

    await withStore(target, (store) => store.set("/projects/config", { project_id: "p-target" }));
    const imported = apexIn(target)("session", "import", file, "--json");
    expect(imported.stderr).toBe("");
    expect(imported.status).toBe(0);
    // From another project: the agent's process ids (of another machine) are cleared, and the record's
    // history says it was imported (its runs were on that project's store); nothing else changes.
    expect(json(imported)).toMatchObject({ session_id: "s-recent", bundle_kind: "export", checkpoints: 3, agents_process_ids_cleared: 1 });
    // --help names every key --json prints (it left out name, agents_process_ids_cleared and worktree).
    const help = apexIn(target)("session", "import", "--help").stdout.replace(/\s+/g, " ");
    for (const key of Object.keys(json(imported))) expect(help, key).toMatch(new RegExp(`[{,] ?${key}[,}]`));
    const revision = await withStore(target, (store) => {
      const after = snapshot(store, "s-recent");
      expect(after.records.find((entry) => entry.path === "/sessions/s-recent/agents/coder")?.value).toMatchObject({ pid: null, task: "t-0003" });
      const withoutPids = (records: typeof after.records) =>
        records.map((entry) => (entry.path === "/sessions/s-recent/agents/coder" ? { ...entry, value: { ...(entry.value as object), pid: null } } : entry));
      const { history, ...ended } = after.ended as { history: JsonValue[] };
      expect(history.at(-1)).toMatchObject({ event: "imported", from_project: "p-archive" });
      const record = { ...ended, history: history.slice(0, -1) };
      expect({ ...after, ended: record, records: withoutPids(after.records) }).toEqual({ ...before.recent, records: withoutPids(before.recent.records) });
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
      return store.revision();
    });

    // The same bundle again (a script's rerun) is a no-op that says so: it exited 4, "refusing to import
    // the bundle over it", as if some other session were in the way.
    expect(json(imported).already_imported).toBe(false);
    const twice = apexIn(target)("session", "import", file, "--json");
    expect(twice.stderr).toBe("");
    expect(twice.status).toBe(0);
    expect(json(twice)).toMatchObject({ session_id: "s-recent", checkpoints: 3, already_imported: true, objects: { written: 0 }, revision });
    const text = apexIn(target)("session", "import", file);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toBe(`Session s-recent is already here as ${file} holds it (imported before, or exported from this project and unchanged since); nothing written.\n`);
    await withStore(target, (store) => expect(store.revision()).toBe(revision));
    // The session as exported, in the project it came from (unchanged since): here already, the same.
    expect(json(apexIn(source)("session", "import", file, "--json"))).toMatchObject({ already_imported: true });
    await withStore(source, (store) => expect(store.revision()).toBe(before.revision));

    // Once the session changed here, the bundle is no repeat: refused, saying it differs.
    await withStore(target, (store) => store.set("/sessions/s-recent/tasks/t-9999", { title: "added here" }));
    const changed = apexIn(target)("session", "import", file, "--json");
    expect(changed.status).toBe(4);
    expect(errorOf(changed)).toMatchObject({ code: "APEX_E_SESSION_EXISTS", details: { session_id: "s-recent", identical: false } });
    expect(errorOf(changed).message).toBe("This project already has an ended session s-recent, not as this bundle holds it (it changed since, or the bundle is of another time); refusing to import the bundle over it.");
    // Its hint named a command there is not ("archive or delete that session first").
    expect(JSON.parse(changed.stderr).error.hint).toBe("Nothing was written. To replace it by the bundle's, archive it first (`apex session archive s-recent`); or import into another project.");
    expect(existsSync(file)).toBe(true); // import never removes the file
  });

  it("moves a session between projects through a pipe: export -o - writes the bundle to standard output, import - reads it from standard input", async () => {
    const source = project("source");
    const target = project("target");
    const before = await threeSessions(source);
    await withStore(target, (store) => store.set("/projects/config", { project_id: "p-target" }));
    const shell = (script: string, input?: string) => spawnSync("sh", ["-c", script], { cwd: source, env: { ...cleanEnv(), NO_COLOR: "1", ...env }, encoding: "utf8", ...(input === undefined ? {} : { input }) });
    const apexCommand = `${JSON.stringify(process.execPath)} ${JSON.stringify(APEX_BIN)}`;
    // A real pipe between the two commands, as `… -o - | ssh HOST apex session import -` has it.
    const piped = shell(`${apexCommand} session export s-rec -o - | (cd ${JSON.stringify(target)} && ${apexCommand} session import - --json)`);
    expect(piped.status, piped.stderr).toBe(0);
    // The summary of the export is on stderr; stdout carried the bundle, whole (it was refused: "-o - would write a file named -").
    expect(piped.stderr).toMatch(/^Exported session s-recent \(ended\) to standard output: 3 checkpoints, /);
    expect(JSON.parse(piped.stdout)).toMatchObject({ session_id: "s-recent", file: "-", checkpoints: 3, already_imported: false });
    await withStore(target, (store) => {
      expect(snapshot(store, "s-recent").checkpoints).toEqual(before.recent.checkpoints);
      expect((store.get("/sessions/history/s-recent") as { history: JsonValue[] }).history.at(-1)).toMatchObject({ event: "imported", from_project: "p-archive" });
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
    // The same bundle piped again is recognised as already here; nothing is left in the temporary directory.
    const again = shell(`${apexCommand} session export s-rec -o - | (cd ${JSON.stringify(target)} && ${apexCommand} session import -)`);
    expect(again.stdout).toBe("Session s-recent is already here as standard input holds it (imported before, or exported from this project and unchanged since); nothing written.\n");
    // -o - with --json (stdout would carry both) and an empty standard input are refused, writing nothing.
    const both = apexIn(source)("session", "export", "s-rec", "-o", "-", "--json");
    expect([both.status, JSON.parse(both.stderr).error.code]).toEqual([2, "APEX_E_USAGE"]);
    const empty = runApex(["session", "import", "-"], { cwd: target, env, input: "" });
    expect([empty.status, empty.stderr.split("\n")[0]]).toEqual([2, "error[APEX_E_BAD_INPUT]: Standard input was empty: there is no bundle to import."]);
    // A bundle's bytes are not written to a terminal (script(1) gives the command one).
    const terminal = spawnSync("script", ["-qfec", `${apexCommand} session export s-rec -o -`, "/dev/null"], { cwd: source, env: { ...cleanEnv(), NO_COLOR: "1", ...env }, encoding: "utf8" });
    expect(terminal.status).toBe(2);
    expect(terminal.stdout).toContain("error[APEX_E_USAGE]: -o - writes the bundle's bytes to standard output, which is a terminal here.");
  });

  it("unarchive of an archive holding another state of a session that is here gives the whole way in its hint (move the bundle in the way aside, archive, unarchive), and that way works", async () => {
    const dir = project("replace");
    await threeSessions(dir);
    const bundle = join(dir, ".apex", "backups", "s-recent.apexbundle");
    expect(apexIn(dir)("session", "archive", "s-recent").status).toBe(0);
    expect(apexIn(dir)("session", "unarchive", "s-recent", "--keep").status).toBe(0);
    await withStore(dir, (store) => store.set("/sessions/s-recent/tasks/t-9999", { id: "t-9999", title: "added since", status: "completed", assignee: "coder" }));
    const refused = apexIn(dir)("session", "unarchive", "s-recent", "--json");
    expect(refused.status).toBe(4);
    expect(errorOf(refused)).toMatchObject({ code: "APEX_E_SESSION_EXISTS", details: { session_id: "s-recent", archive_file: bundle } });
    // It said "archive it first", and that archive stopped on this very bundle ("Move that file away first").
    expect(JSON.parse(refused.stderr).error.hint).toBe(`Nothing was written. To replace it by the bundle's: move the bundle archiving it would write aside (\`mv ${bundle} ${bundle}.older\`), archive it (\`apex session archive s-recent\`), then bring this one back (\`apex session unarchive ${bundle}.older\`); or import into another project.`);
    renameSync(bundle, `${bundle}.older`);
    const archived = apexIn(dir)("session", "archive", "s-recent");
    expect(archived.status, archived.stderr).toBe(0);
    const back = apexIn(dir)("session", "unarchive", `${bundle}.older`, "--json");
    expect(back.status, back.stderr).toBe(0);
    await withStore(dir, (store) => expect(store.get("/sessions/s-recent/tasks/t-9999")).toBeUndefined());
    expect(existsSync(bundle)).toBe(true); // the state replaced, archived
    // A bundle elsewhere (an export), none in the way: archive, then unarchive it.
    const exported = join(dir, "s-recent.export");
    expect(apexIn(dir)("session", "export", "s-recent", "-o", exported).status).toBe(0);
    await withStore(dir, (store) => store.set("/sessions/s-recent/tasks/t-9999", { id: "t-9999", title: "added since", status: "completed", assignee: "coder" }));
    renameSync(bundle, join(dir, "kept.apexbundle"));
    const other = apexIn(dir)("session", "unarchive", exported, "--json");
    expect(other.status).toBe(4);
    expect(JSON.parse(other.stderr).error.hint).toBe(`Nothing was written. To replace it by the bundle's: archive it (\`apex session archive s-recent\`), then bring this one back (\`apex session unarchive ${exported}\`); or import into another project.`);
  });

  it("unarchive of an export whose session is here exactly as it holds it says so, exit 0, as import does (it was refused, exit 4, with a hint to archive the session and bring the same state back)", async () => {
    const dir = project("p1");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const exported = join(dir, "s-recent.export");
    expect(apex("session", "export", "s-recent", "-o", exported).status).toBe(0);
    expect(apex("session", "import", exported).status).toBe(0); // already here: nothing written, exit 0
    const revision = await withStore(dir, (store) => store.revision());
    const again = apex("session", "unarchive", exported, "--json");
    expect(again.status, again.stderr).toBe(0);
    expect(json(again)).toMatchObject({ session_id: "s-recent", bundle_kind: "export", already_back: true, bundle_removed: false });
    const text = apex("session", "unarchive", exported);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toBe(`Session s-recent is back already, as s-recent.export holds it (imported or brought back before, or exported from this project and unchanged since); nothing written.\nKept the bundle s-recent.export (unarchive removes only archives of the backup directory).\n`);
    await withStore(dir, (store) => expect(store.revision()).toBe(revision));
    expect(existsSync(exported)).toBe(true);
    // A session that changed since is still refused, as import refuses it.
    await withStore(dir, (store) => store.set("/sessions/s-recent/tasks/t-9999", { id: "t-9999", title: "added since", status: "completed", assignee: "coder" }));
    expect(apex("session", "unarchive", exported).status).toBe(4);
  });

  it("unarchive of another project's archive that is back already (unarchive --keep, or killed before removing it) says so, as of this project's own", async () => {
    const source = project("source");
    const target = project("target");
    await threeSessions(source);
    expect(apexIn(source)("session", "archive", "s-recent").status).toBe(0);
    mkdirSync(join(target, ".apex", "backups"), { recursive: true });
    writeFileSync(join(target, ".apex", "backups", "s-recent.apexbundle"), readFileSync(join(source, ".apex", "backups", "s-recent.apexbundle")));
    await withStore(target, (store) => store.set("/projects/config", { project_id: "p-target" }));
    const first = apexIn(target)("session", "unarchive", "s-recent", "--keep", "--json");
    expect(first.status, first.stderr).toBe(0);
    expect(json(first)).toMatchObject({ already_back: false });
    const revision = await withStore(target, (store) => store.revision());
    // It was refused (exit 4, "already has an ended session"): the record here has the "imported"
    // event another project's session gets, which the archive has not.
    const again = apexIn(target)("session", "unarchive", "s-recent", "--json");
    expect(again.status, again.stderr).toBe(0);
    expect(json(again)).toMatchObject({ session_id: "s-recent", already_back: true, bundle_removed: true });
    await withStore(target, (store) => expect(store.revision()).toBe(revision));
  });

  it("a live session comes in as an ended (stopped) one with the same checkpoints", async () => {
    const source = project("source");
    const target = project("target");
    const before = await threeSessions(source);
    const file = join(root, "live.apexbundle");
    // A branch: export and import name it as session list does (they printed the whole id), --json has both.
    await withStore(source, (store) => store.set("/sessions/s-live", { ...(store.get("/sessions/s-live") as object), name: "experiment" }));
    before.live = await withStore(source, (store) => snapshot(store, "s-live"));
    const exported = apexIn(source)("session", "export", "s-live", "-o", file);
    expect(exported.status, exported.stderr).toBe(0);
    expect(exported.stdout).toMatch(/^Exported session experiment \(live\) to /);
    const imported = apexIn(target)("session", "import", file);
    expect(imported.status).toBe(0);
    expect(imported.stdout).toMatch(/^Imported session experiment from /);
    expect(imported.stdout).toMatch(/it is here as an ended \(stopped\) session: `apex start --continue experiment` resumes it/);
    await withStore(target, (store) => {
      const after = snapshot(store, "s-live");
      expect(after.live).toBeNull();
      expect(after.ended).toMatchObject({ session_id: "s-live", status: "stopped", supervisor: null });
      expect(after.checkpoints).toEqual(before.live.checkpoints);
      expect(after.memory).toEqual(before.live.memory);
      expect(after.details).toEqual(before.live.details);
      expect(store.get("/sessions/current")).toBeUndefined();
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
  });

  it("usage errors: no -o, unknown session", async () => {
    const dir = project("p1");
    await threeSessions(dir);
    const apex = apexIn(dir);
    const noOutput = apex("session", "export", "s-old", "--json");
    expect(noOutput.status).toBe(2);
    expect(errorOf(noOutput).code).toBe("APEX_E_USAGE");
    expect(apex("session", "export", "s-none", "-o", join(root, "x.apexbundle")).status).toBe(3);
    expect(existsSync(join(root, "x.apexbundle"))).toBe(false);
    expect(apex("session", "import", join(root, "missing.apexbundle")).status).toBe(3);
    // -o naming a directory (with --force too: never replaced), or a file in a directory that does not exist.
    const folder = join(root, "bundles");
    mkdirSync(join(folder, "inside"), { recursive: true });
    for (const args of [["-o", folder], ["-o", folder, "--force"]]) {
      const result = apex("session", "export", "s-old", ...args, "--json");
      expect(result.status, result.stderr).toBe(2);
      expect(errorOf(result)).toMatchObject({ code: "APEX_E_USAGE" });
      expect(errorOf(result).message).toContain(`${folder} is a directory`);
    }
    expect(readdirSync(folder)).toEqual(["inside"]);
    const nowhere = apex("session", "export", "s-old", "-o", join(root, "no-such-dir", "s.apexbundle"), "--json");
    expect(nowhere.status, nowhere.stderr).toBe(3);
    expect(errorOf(nowhere)).toMatchObject({ code: "APEX_E_NOT_FOUND" });
    expect(errorOf(nowhere).message).toContain(join(root, "no-such-dir"));
    expect(existsSync(join(root, "no-such-dir"))).toBe(false);
  });
});

});

// The bundle's checks run before anything is written, whatever the backend: LMDB only.
describe("tampered bundles are refused and nothing is written", () => {
  // One exported bundle and one target project for the block's tests: every import below is refused,
  // each checks that it wrote nothing, and the bundle is only ever read (each change is made to a copy).
  let made: Promise<{ file: Buffer; content: BundleContent; target: string; revision: number }> | undefined;
  let removeMade: (() => void) | undefined;
  afterAll(() => removeMade?.());
  function exported(): Promise<{ file: Buffer; content: BundleContent; target: string; revision: number }> {
    return (made ??= (async () => {
      const { dir: base, cleanup } = tempDir("apex-archive-tampered-");
      removeMade = cleanup;
      const [source, target] = ["source", "target"].map((name) => {
        const dir = join(base, name);
        mkdirSync(dir);
        writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
        return dir;
      });
      await threeSessions(source!);
      const path = join(base, "good.apexbundle");
      expect(apexIn(source!)("session", "export", "s-recent", "-o", path).status).toBe(0);
      const revision = await withStore(target!, async (store) => {
        await store.set("/notes/mine", "untouched");
        return store.revision();
      });
      const file = readFileSync(path);
      return { file, content: readBundle(file), target: target!, revision };
    })());
  }

  /** Re-encodes a bundle with its checksums consistent: only the content checks can catch the change. */
  function reencode(content: BundleContent, change: (input: BundleInput) => void): Promise<{ file: Buffer }> {
    const input = readBundleInput(content);
    change(input);
    return encodeBundle(input, "brotli");
  }

  async function expectRefused(target: string, revision: number, bytes: Buffer, code: string, message: RegExp): Promise<void> {
    const path = join(root, `bad-${Math.random().toString(36).slice(2)}.apexbundle`);
    writeFileSync(path, bytes);
    const result = runApex(["session", "import", path, "--json"], { cwd: target });
    expect(result.status, result.stderr).toBe(code === "APEX_E_BUNDLE_INVALID" ? 2 : 4);
    const error = errorOf(result);
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
    await withStore(target, (store) => {
      expect(store.revision()).toBe(revision);
      expect([...store.keysBelow("/sessions")]).toEqual([]);
      expect(ObjectStore.of(store).count("value")).toBe(0);
    });
  }

  it("a flipped byte, a truncated file, another version, a foreign file", async () => {
    const { file, target, revision } = await exported();
    const flipped = Buffer.from(file);
    flipped[HEADER_BYTES + Math.floor((file.length - HEADER_BYTES) / 2)] ^= 0x01;
    // Where the flipped bit lands in the compressed stream (the bundle holds times and ids, so each run's
    // bytes differ) decides which check refuses it: the stream, its length, its end or the checksum.
    await expectRefused(target, revision, flipped, "APEX_E_BUNDLE_INVALID", /truncated or damaged|checksum does not match|decompresses to more than|follows? the end of its compressed body|the header says/);
    await expectRefused(target, revision, file.subarray(0, file.length - 100), "APEX_E_BUNDLE_INVALID", /does not decompress|truncated/);
    await expectRefused(target, revision, file.subarray(0, 30), "APEX_E_BUNDLE_INVALID", /52-byte header/);
    const version = Buffer.from(file);
    version.writeUInt16BE(BUNDLE_VERSION + 1, 8);
    await expectRefused(target, revision, version, "APEX_E_BUNDLE_VERSION", /format version 2; this APEX reads version 1/);
    const digest = Buffer.from(file);
    digest[25] ^= 0x80;
    await expectRefused(target, revision, digest, "APEX_E_BUNDLE_INVALID", /checksum does not match/);
    await expectRefused(target, revision, Buffer.from("PK\u0003\u0004 this is a zip file, not a bundle ........................................"), "APEX_E_BUNDLE_INVALID", /not an APEX session bundle/);
    // Bytes after the compressed body (it runs to the end of the file): two bundles joined, an appended
    // tail. Brotli stops at its stream's end, so these imported as if nothing followed.
    await expectRefused(target, revision, Buffer.concat([file, file]), "APEX_E_BUNDLE_INVALID", new RegExp(`^Refusing the bundle: ${file.length} bytes follow the end of its compressed body`));
    await expectRefused(target, revision, Buffer.concat([file, Buffer.alloc(100)]), "APEX_E_BUNDLE_INVALID", /100 bytes follow the end of its compressed body/);
    const { file: gzipped } = await encodeBundle(readBundleInput(readBundle(file)), "gzip");
    await expectRefused(target, revision, Buffer.concat([gzipped, Buffer.alloc(100)]), "APEX_E_BUNDLE_INVALID", /100 bytes follow the end of its compressed body/);
  });

  it("paths outside the session's keyspace: '../x', '/a/../b', other sessions, project memory", async () => {
    const { content, target, revision } = await exported();
    const sid = content.manifest.session_id;
    const add = (path: string) => (input: BundleInput) => {
      input.records.push([path, { evil: true }]);
    };
    const cases: Array<[string, RegExp]> = [
      ["../x", /not a valid keyspace path/],
      ["/a/../b", /not a valid keyspace path: segment 2 is '..'/],
      [`/sessions/${sid}/../../etc`, /not a valid keyspace path/],
      [`/sessions/${sid}/./tasks`, /not a valid keyspace path/],
      ["/notes/mine", /outside session s-recent's own paths/],
      ["/sessions/current", /outside session s-recent's own paths/],
      ["/sessions/s-other/tasks/t-0001", /outside session s-recent's own paths/],
      [`/sessions/${sid}-evil/x`, /outside session s-recent's own paths/],
    ];
    for (const [path, message] of cases) {
      const { file } = await reencode(content, add(path));
      await expectRefused(target, revision, file, "APEX_E_BUNDLE_INVALID", message);
    }
  });

  it("objects and manifests that do not add up", async () => {
    const { content, target, revision } = await exported();
    const sid = content.manifest.session_id;
    const refuse = async (change: (input: BundleInput) => void, message: RegExp) => {
      const { file } = await reencode(content, change);
      expect(() => readBundle(file)).toThrow(message);
      await expectRefused(target, revision, file, "APEX_E_BUNDLE_INVALID", message);
    };
    // A checkpoint manifest edited after it was signed.
    await refuse((input) => {
      const entry = input.records.find(([path]) => path === `/sessions/${sid}/checkpoint-002`)!;
      (entry[1] as Record<string, JsonValue>).description = "rewritten history";
    }, /checkpoint-002 does not match its hash/);
    // An object the checkpoints need is left out.
    await refuse((input) => {
      input.objects = input.objects.filter((object) => object.kind !== "value" || input.objects.indexOf(object) !== input.objects.findIndex((o) => o.kind === "value"));
    }, /value [0-9a-f]{12} of checkpoint-\d+ is missing/);
    // An extra object nothing references.
    await refuse((input) => {
      const bytes = Buffer.from('{"smuggled":true}');
      input.objects.push({ kind: "value", hash: createHash("sha256").update(bytes).digest("hex"), bytes });
    }, /is not referenced by any of its checkpoints/);
    // The session record names another session.
    await refuse((input) => {
      const entry = input.records.find(([path]) => path === `/sessions/history/${sid}`)!;
      (entry[1] as Record<string, JsonValue>).session_id = "someone-else";
    }, /is not a record of session/);
    // A checkpoint the manifest lists is missing from the records.
    await refuse((input) => {
      input.records = input.records.filter(([path]) => path !== `/sessions/${sid}/checkpoint-003`);
    }, /lists checkpoint\(s\) the records lack: 3/);
    // last_sequence below the checkpoints.
    await refuse((input) => {
      input.last_sequence = 1;
    }, /last_sequence 1 is below checkpoint 3/);
  });

  /** Rewrites the decompressed body of a (brotli) bundle and fixes up the header, so that only the content checks can catch the change. */
  function rewriteBody(file: Buffer, change: (body: Buffer) => Buffer): Buffer {
    const body = change(brotliDecompressSync(file.subarray(HEADER_BYTES)));
    const header = Buffer.from(file.subarray(0, HEADER_BYTES));
    header.writeBigUInt64BE(BigInt(body.length), 12);
    createHash("sha256").update(body).digest().copy(header, 20);
    return Buffer.concat([header, brotliCompressSync(body)]);
  }

  function rewriteManifest(file: Buffer, change: (manifest: Record<string, unknown>) => string): Buffer {
    return rewriteBody(file, (body) => {
      const length = body.readUInt32BE(0);
      const manifest = Buffer.from(change(JSON.parse(body.subarray(4, 4 + length).toString("utf8"))));
      const prefix = Buffer.alloc(4);
      prefix.writeUInt32BE(manifest.length);
      return Buffer.concat([prefix, manifest, body.subarray(4 + length)]);
    });
  }

  it("bodies and manifests that do not follow the format", async () => {
    const { file, target, revision } = await exported();
    expect(readBundle(rewriteBody(file, (body) => body)).manifest.session_id).toBe("s-recent"); // the helper itself keeps bundles valid
    await expectRefused(target, revision, rewriteBody(file, (body) => Buffer.concat([body, Buffer.from("extra")])), "APEX_E_BUNDLE_INVALID", /5 bytes follow the last blob/);
    await expectRefused(target, revision, rewriteBody(file, (body) => body.subarray(0, body.length - 1)), "APEX_E_BUNDLE_INVALID", /runs past the end of the body/);
    await expectRefused(target, revision, rewriteManifest(file, (manifest) => JSON.stringify(manifest, null, 1)), "APEX_E_BUNDLE_INVALID", /manifest is not in canonical form/);
    const withField = rewriteManifest(file, (manifest) => {
      const { ...rest } = manifest;
      return `{"aaa":1,${JSON.stringify(rest).slice(1)}`;
    });
    await expectRefused(target, revision, withField, "APEX_E_BUNDLE_INVALID", /unknown field\(s\) aaa/);
    await expectRefused(target, revision, rewriteManifest(file, (manifest) => JSON.stringify({ ...manifest, version: 1 }).replace('"version":1', '"version":2')), "APEX_E_BUNDLE_INVALID", /disagrees with the header/);
    await expectRefused(target, revision, rewriteManifest(file, (manifest) => JSON.stringify(manifest).replace(/"session_id":"s-recent"/, '"session_id":"../etc"')), "APEX_E_BUNDLE_INVALID", /session id is not valid/);
  });

  it("sizes are bounded before anything is decompressed", async () => {
    const { file, content } = await exported();
    expect(() => readBundle(file, { maxBytes: 1024 })).toThrow(/more than the limit of 1024/);
    const huge = Buffer.from(file);
    huge.writeBigUInt64BE(2n ** 62n, 12);
    expect(() => readBundle(huge)).toThrow(expect.objectContaining({ code: "APEX_E_BUNDLE_INVALID" }));
    // A body longer than its header says is cut off at one byte past it, and refused.
    const longer = Buffer.from(file);
    longer.writeBigUInt64BE(BigInt(Number(file.readBigUInt64BE(12)) - 10), 12);
    expect(() => readBundle(longer)).toThrow(/decompresses to more than the \d+ bytes its header declares/);
    // gzip bundles read as well.
    const gzip = await encodeBundle(readBundleInput(content), "gzip");
    expect(readBundle(gzip.file).records).toEqual(content.records);
  });
});

function readBundleInput(content: BundleContent): BundleInput {
  const { manifest } = content;
  return {
    kind: manifest.kind,
    created_at: manifest.created_at,
    apex_version: manifest.apex_version,
    project_id: manifest.project_id,
    session_id: manifest.session_id,
    session_state: manifest.session_state,
    last_sequence: manifest.last_sequence,
    checkpoints: manifest.checkpoints.map((entry) => ({ ...entry })),
    records: content.records.map(([path, value]): [string, JsonValue] => [path, structuredClone(value)]),
    objects: [...content.objects].map(([hash, { kind, bytes }]) => ({ kind, hash, bytes })),
  };
}

describe("apex backup", () => {
  it("has the copy's bytes on disk (fsync) before it gives it its name: LMDB's copy closes it unsynced", async () => {
    const dir = project("synced");
    await threeSessions(dir);
    // strace (Debian's; .ci/run installs it) sees the system calls themselves: what no kill -9 can show, only a power loss.
    const trace = join(dir, "trace.txt");
    const run = spawnSync("strace", ["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync,link,linkat", "-o", trace, process.execPath, APEX_BIN, "backup", "--to", "copy", "--json"], { cwd: dir, env, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const calls = readFileSync(trace, "utf8").split("\n");
    const linked = calls.findIndex((line) => /\blink(at)?\(.*\.apex-backup-partial-[^/]+\/store\.mdb", .*copy\/store\.mdb"/.test(line) && line.endsWith("= 0"));
    expect(linked, calls.join("\n")).toBeGreaterThan(0);
    const synced = calls.findIndex((line) => /\bf(data)?sync\(\d+<[^>]*\.apex-backup-partial-[^/]+\/store\.mdb>\) = 0$/.test(line));
    expect(synced, calls.join("\n")).toBeGreaterThanOrEqual(0);
    expect(synced).toBeLessThan(linked);
  });

  it("writes a compacted copy that opens read-only and validates, and never overwrites one", async () => {
    const dir = project("p1");
    const apex = apexIn(dir);
    const before = await threeSessions(dir);
    await withStore(dir, async (store) => {
      await compressColdData(store, { algorithm: "brotli", policy: { after: 1 } });
    });
    const revision = await withStore(dir, (store) => store.revision());

    const made = apex("backup", "--to", "copy", "--json");
    expect(made.stderr).toBe("");
    expect(made.status).toBe(0);
    const result = json(made);
    expect(result).toMatchObject({ directory: join(dir, "copy"), file: join(dir, "copy/store.mdb"), revision, validation: { ok: true, errors: 0 } });
    expect(result.bytes).toBeGreaterThan(0);
    expect(result.bytes).toBeLessThanOrEqual(result.source_bytes);
    expect(readdirSync(join(dir, "copy"))).toEqual(["store.mdb"]); // no partial or lock files left

    const copy = await openStore(join(dir, "copy"), { readOnly: true });
    try {
      expect(copy.revision()).toBe(revision);
      expect(validateStore(copy)).toMatchObject({ ok: true, problems: [] });
      expect(snapshot(copy, "s-old")).toEqual(before.old);
      expect(snapshot(copy, "s-live")).toEqual(before.live);
      expect(result.counts.checkpoints).toBe(8);
    } finally {
      await copy.close();
    }

    const again = apex("backup", "--to", "copy", "--json");
    expect(again.status).toBe(4);
    expect(errorOf(again).code).toBe("APEX_E_CONFLICT");
    // Never among APEX's own files or in a repository's .git, as -o FILE (before, both were written).
    mkdirSync(join(dir, ".git"));
    // Through a symlink to .apex/ or .git/ too, to a directory not made yet (that was written: `--to link/new`).
    symlinkSync(".apex", join(dir, "to-apex"));
    symlinkSync(join(dir, ".git"), join(dir, "to-git"));
    for (const [to, inside] of [[".apex/logs/copy", ".apex"], [".git/copy", ".git"], ["to-apex/copy", ".apex"], ["to-apex/new/copy", ".apex"], ["to-git/copy", ".git"]] as const) {
      const refused = apex("backup", "--to", to, "--json");
      expect(refused.status, refused.stderr).toBe(4);
      expect(errorOf(refused)).toMatchObject({ code: "APEX_E_RESERVED_PATH" });
      expect(errorOf(refused).message).toContain(`is in ${join(dir, inside)},`);
      expect(existsSync(join(dir, to))).toBe(false);
    }

    // What backups killed while copying left (kill -9, OOM): each a partial copy as large as the store,
    // named with its pid, and by default a store-<time> directory holding nothing else, looking like a
    // backup. They stayed forever; the next backup removes them, never a partial copy whose process runs.
    const dead = spawnSync("true").pid!;
    const stale = join(dir, ".apex/backups/store-20200101T000000Z");
    mkdirSync(join(stale, `.apex-backup-partial-${dead}-0be86e09`), { recursive: true });
    writeFileSync(join(stale, `.apex-backup-partial-${dead}-0be86e09`, "store.mdb"), "cut short");
    const ours = join(dir, "copy2", `.apex-backup-partial-${process.pid}-00000000`);
    const theirs = join(dir, "copy2", `.apex-backup-partial-${dead}-11111111`);
    for (const partial of [ours, theirs]) mkdirSync(partial, { recursive: true });
    const swept = apex("backup", "--to", "copy2", "--json");
    expect(swept.status, swept.stderr).toBe(0);
    expect(json(swept).swept).toEqual([theirs]);
    expect(readdirSync(join(dir, "copy2")).sort()).toEqual([basename(ours), "store.mdb"]);

    const defaults = apex("backup");
    expect(defaults.status).toBe(0);
    expect(defaults.stdout).toMatch(/Verified: the copy opens read-only and validates clean/);
    expect(defaults.stdout).toContain("Removed what an interrupted backup left: .apex/backups/store-20200101T000000Z\n");
    const [made2] = readdirSync(join(dir, ".apex/backups"));
    expect(made2).toMatch(/^store-\d{8}T\d{6}Z$/);
    expect(existsSync(join(dir, ".apex/backups", made2!, "store.mdb"))).toBe(true);
  });

  it("paths the system refuses (pseudo file systems, unreadable files) are bad input (2) naming the path and the reason, not a failure of the plugin, and leave nothing", async () => {
    const dir = project("p1");
    await threeSessions(dir);
    const run = (...args: string[]) => runApex([...args, "--json"], { cwd: dir, env, timeout: 30_000 });
    // Refused even to root: mkdir in /proc/self fails with ENOENT although it exists (Node's recursive
    // mkdir retried that forever, at 100% CPU), in /sys with EPERM; an open for writing there too.
    for (const [to, failing] of [
      ["/proc/self", "/proc/self/.apex-backup-partial-"],
      ["/proc/self/x/y", "/proc/self/x:"],
      ["/sys/apex-backup", "/sys/apex-backup:"],
    ] as const) {
      const result = run("backup", "--to", to);
      expect(result.status, `${to}: ${result.stderr}`).toBe(2);
      expect(errorOf(result)).toMatchObject({ code: "APEX_E_BAD_INPUT" });
      expect(errorOf(result).message).toContain(`Cannot create the directory ${failing}`);
    }
    for (const file of ["/proc/self/s.apexbundle", "/sys/s.apexbundle"]) {
      const result = run("session", "export", "s-old", "-o", file);
      expect(result.status, `${file}: ${result.stderr}`).toBe(2);
      expect(errorOf(result)).toMatchObject({ code: "APEX_E_BAD_INPUT" });
      expect(errorOf(result).message).toMatch(new RegExp(`^Cannot write ${file}: .* \\(E[A-Z]+\\)\\.$`));
    }
    // A file that stats as a regular file but cannot be read.
    const unreadable = run("session", "import", "/proc/self/mem");
    expect(unreadable.status, unreadable.stderr).toBe(2);
    expect(errorOf(unreadable)).toMatchObject({ code: "APEX_E_BAD_INPUT", message: "Cannot read /proc/self/mem: EIO: i/o error, read (EIO)." });
    expect(readdirSync(join(dir, ".apex")).filter((name) => name.includes("backup"))).toEqual([]);
  });

  it("two backups to one new directory at once: the one that fails never removes the copy the other reported saved", async () => {
    const dir = project("p1");
    // A store large enough that both copies take a while (written here: a CLI import of it cost seconds more).
    await withStore(dir, (store) =>
      store.batch((batch) => {
        for (let i = 0; i < 20_000; i++) batch.set(`/notes/${i}`, { i, text: "word ".repeat(50) });
      }),
    );
    const backup = (target: string) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, [APEX_BIN, "backup", "--to", target, "--json"], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" } }, (error, stdout, stderr) =>
          done({ status: error ? Number(error.code) : 0, stdout, stderr }),
        );
      });
    // Both pass the "no store there yet" check, both copy; the second to link its copy in fails.
    // That one had made the directory (or thought so) and removed it, with the first one's copy in it.
    for (let round = 0; round < 4; round++) {
      const target = join(root, `race-${round}`, "backup");
      const runs = await Promise.all([backup(target), backup(target)]);
      const saved = runs.filter((run) => run.status === 0);
      expect(saved.length, runs.map((run) => run.stderr).join("\n")).toBe(1);
      for (const run of runs.filter((run) => run.status !== 0)) expect(errorOf(run)).toMatchObject({ code: "APEX_E_CONFLICT" });
      expect(readdirSync(target)).toEqual(["store.mdb"]);
      expect(statSync(join(target, "store.mdb")).size).toBe(json(saved[0]!).bytes);
    }
  }, 120_000);
  it("backups without --to each get a directory of their own, made in the same second too, one after another or at once", async () => {
    const dir = project("same-second");
    await threeSessions(dir);
    const location = join(dir, ".apex/backups");
    // Backups made in this second and the next ones already there: the directory a backup made now
    // would take holds a store. The next backup was refused (exit 4, APEX_E_CONFLICT, "Give a directory
    // without a store.mdb to --to", to one that gave no --to); `apex backup && apex backup` failed so.
    const taken: string[] = [];
    for (let second = 0; second < 60; second++) {
      const name = `store-${new Date(Date.now() + second * 1000).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`;
      mkdirSync(join(location, name), { recursive: true });
      writeFileSync(join(location, name, "store.mdb"), "an earlier backup");
      taken.push(name);
    }
    const made = apexIn(dir)("backup", "--json");
    expect(made.status, made.stderr).toBe(0);
    const directory = json(made).directory as string;
    expect(basename(directory)).toMatch(/^store-\d{8}T\d{6}Z-2$/);
    expect(taken).toContain(basename(directory).replace(/-2$/, ""));
    expect(readdirSync(directory)).toEqual(["store.mdb"]);
    expect(statSync(directory).mode & 0o777).toBe(0o700);
    for (const name of taken) expect(readFileSync(join(location, name, "store.mdb"), "utf8")).toBe("an earlier backup");

    // Three at once: each its own directory, none refused.
    const backup = () =>
      new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, [APEX_BIN, "backup", "--json"], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1", ...env } }, (error, stdout, stderr) => done({ status: error ? Number(error.code) : 0, stdout, stderr }));
      });
    const runs = await Promise.all([backup(), backup(), backup()]);
    for (const run of runs) expect(run.status, run.stderr).toBe(0);
    const directories = runs.map((run) => json(run).directory as string);
    expect(new Set(directories).size).toBe(3);
    for (const at of directories) {
      expect(readdirSync(at)).toEqual(["store.mdb"]);
      const copy = await openStore(at, { readOnly: true });
      try {
        expect(validateStore(copy).ok).toBe(true);
      } finally {
        await copy.close();
      }
    }
  }, 120_000);

  it("the APEX_HOME it suggests works as printed from where it ran: a subdirectory of the project, a path with spaces", async () => {
    // It printed the copy's path relative to the project, which APEX_HOME (read against the working
    // directory) took as a path below the subdirectory, and did not quote a path with a space.
    const dir = project("with space");
    await threeSessions(dir);
    const sub = join(dir, "sub dir");
    mkdirSync(sub);
    const sessions = (home: string) => {
      const listed = spawnSync("sh", ["-c", `${home} node ${APEX_BIN} session list --json`], { cwd: sub, env: { ...cleanEnv(), NO_COLOR: "1" }, encoding: "utf8" });
      expect(listed.status, listed.stderr).toBe(0);
      return (JSON.parse(listed.stdout) as Array<{ session_id: string }>).map((session) => session.session_id).sort();
    };
    for (const args of [["backup"], ["backup", "--to", "a copy"]]) {
      const made = runApex(args, { cwd: sub });
      expect(made.status, made.stderr).toBe(0);
      const home = /Use it with `(APEX_HOME=.*) apex <command>`/.exec(made.stdout)?.[1];
      expect(home, made.stdout).toBeDefined();
      // The default backup directory is not below the subdirectory: its whole path, quoted for its space.
      expect(home).toMatch(args.length === 1 ? /^APEX_HOME='\/.* .*\/\.apex\/backups\/store-[^/]+'$/ : /^APEX_HOME='a copy'$/);
      expect(sessions(home!)).toEqual(["s-live", "s-old", "s-recent"]);
    }
  }, 60_000);

  it("copies the store APEX_STORE_URL names, not an older one left in .apex/", async () => {
    const dir = project("elsewhere");
    await withStore(dir, (store) => store.set("/where", "old .apex store"));
    const other = join(dir, "moved");
    const moved = { APEX_STORE_URL: `lmdb:${other}` };
    expect(runApex(["memory", "set", "/where", '"moved store"'], { cwd: dir, env: moved }).status).toBe(0);
    const made = runApex(["backup", "--to", "copy", "--json"], { cwd: dir, env: moved });
    expect(made.status).toBe(0);
    expect(json(made).source_bytes).toBe(statSync(join(other, "store.mdb")).size);
    const copy = await openStore(join(dir, "copy"), { readOnly: true });
    try {
      expect(copy.get("/where")).toBe("moved store");
    } finally {
      await copy.close();
    }
  });

  it("on PostgreSQL: refused as unsupported (2), naming what backs it up, writing nothing", async () => {
    const dir = project("pg-backup");
    const url = await createSharedDatabase("backup");
    const password = new URL(url).password;
    const onServer = { APEX_STORE_URL: url };
    expect(runApex(["memory", "set", "/a", "1"], { cwd: dir, env: onServer }).status).toBe(0);
    // An LMDB store left in .apex/ (as after `apex store migrate`) is not what it copies either.
    await withStore(dir, (store) => store.set("/a", 0));
    for (const args of [["backup"], ["backup", "--to", "copy", "--json"]]) {
      const refused = runApex(args, { cwd: dir, env: onServer });
      expect(refused.status).toBe(2);
      expect(refused.stdout).toBe("");
      expect(refused.stderr).toContain("APEX_E_USAGE");
      expect(refused.stderr).toMatch(/copies an LMDB store; this project's store is on postgres/);
      expect(refused.stderr).toContain("pg_dump");
      expect(refused.stderr).not.toContain(password);
    }
    expect(errorOf(runApex(["backup", "--json"], { cwd: dir, env: onServer })).code).toBe("APEX_E_USAGE");
    expect(existsSync(join(dir, "copy"))).toBe(false);
    expect(existsSync(join(dir, ".apex/backups"))).toBe(false);
  });

  it("a project without a store: not found (3)", () => {
    const dir = project("empty");
    const result = runApex(["backup", "--json"], { cwd: dir });
    expect(result.status).toBe(3);
    expect(errorOf(result).code).toBe("APEX_E_NO_STORE");
  });
});

// Processes racing on one LMDB store (timing decides which one loses, so several rounds).
describe("archive commands at once", () => {
  it("two archives of one session at once: one archives it, the other says it is gone, never that the store is damaged", async () => {
    const archive = (dir: string) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, [APEX_BIN, "session", "archive", "s-old", "--json"], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" } }, (error, stdout, stderr) =>
          done({ status: error ? Number(error.code) : 0, stdout, stderr }),
        );
      });
    // The loser read the session's objects while the winner's sweep removed them: APEX_E_INTEGRITY,
    // "Tree node … is missing", exit 1, with a hint to validate and repair a store that was fine.
    // Each round ends with s-old brought back as it was (unarchive): the next round races on it again.
    const dir = project("race");
    await threeSessions(dir);
    for (let round = 0; round < 8; round++) {
      const runs = await Promise.all([archive(dir), archive(dir)]);
      expect(runs.filter((run) => run.status === 0), runs.map((run) => run.stderr).join("\n")).toHaveLength(1);
      for (const run of runs.filter((run) => run.status !== 0)) {
        expect([3, 4], run.stderr).toContain(run.status);
        expect(["APEX_E_NO_SESSION", "APEX_E_CONFLICT"]).toContain(errorOf(run).code);
      }
      const back = apexIn(dir)("session", "unarchive", "s-old", "--json");
      expect(back.status, back.stderr).toBe(0);
    }
  }, 120_000);

  it("two archives of every old session at once: each session is archived once, and the other run says another process archived it (it said the session changed and stays), exit 0", async () => {
    const archive = (dir: string) =>
      new Promise<{ status: number; stdout: string; stderr: string }>((done) => {
        execFile(process.execPath, [APEX_BIN, "session", "archive", "--older-than", "0", "--json"], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1", ...env } }, (error, stdout, stderr) =>
          done({ status: error ? Number(error.code) : 0, stdout, stderr }),
        );
      });
    const dir = project("race-all");
    await threeSessions(dir);
    const more = ["s-a", "s-b", "s-c", "s-d"];
    await withStore(dir, async (store) => {
      const current = store.get("/sessions/current");
      for (const id of more) await makeSession(store, id, 1, 2);
      await store.set("/sessions/current", current!);
    });
    const old = ["s-old", "s-recent", ...more].sort();
    let raced = 0;
    for (let round = 0; round < 6; round++) {
      const runs = await Promise.all([archive(dir), archive(dir)]);
      for (const run of runs) expect(run.status, run.stderr).toBe(0);
      const results = runs.map((run) => json(run) as { archived: Array<{ session_id: string }>; skipped: Array<{ session_id: string; reason: string; code: string; archived_elsewhere: boolean }> });
      // Every old session archived, by one run or the other.
      expect(results.flatMap((result) => result.archived.map((archived) => archived.session_id)).sort()).toEqual(old);
      for (const skipped of results.flatMap((result) => result.skipped)) {
        expect(skipped.reason).not.toMatch(/changed while it was being archived/);
        expect(skipped).toMatchObject({ code: "APEX_E_NO_SESSION", archived_elsewhere: true });
        expect(skipped.reason).toMatch(/was archived or removed by another process while it was being (read|archived)/);
        expect(old).toContain(skipped.session_id);
        raced += 1;
      }
      for (const id of old) {
        const back = apexIn(dir)("session", "unarchive", id, "--json");
        expect(back.status, back.stderr).toBe(0);
      }
    }
    // The runs did race: some session each time was in both runs' hands.
    expect(raced).toBeGreaterThan(0);
  }, 180_000);
});

describe("a branch's archive found by the branch's name", () => {
  it("unarchive NAME brings back the archive of that branch (gzip and brotli bundles alike); two archives of one name are ambiguous; the not-found hint names the branches", async () => {
    const dir = project("p-unarchive-name");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const branch = (name: string) => {
      const made = apex("session", "branch", "s-recent/checkpoint-003", name, "--json");
      expect(made.status, made.stderr).toBe(0);
      return json(made).session_id as string;
    };
    const first = branch("exp");
    expect(apex("session", "archive", "exp").status).toBe(0);
    // The name is free while archived: a second branch takes it, archived in gzip this time.
    const second = branch("exp");
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n  archive: { algorithm: gzip }\n");
    expect(apex("session", "archive", "exp").status).toBe(0);
    expect(readdirSync(join(dir, ".apex/backups")).sort()).toEqual([`${first}.apexbundle`, `${second}.apexbundle`].sort());

    const ambiguous = apex("session", "unarchive", "exp", "--json");
    expect(ambiguous.status, ambiguous.stderr).toBe(2);
    expect(errorOf(ambiguous)).toMatchObject({ code: "APEX_E_AMBIGUOUS", message: expect.stringContaining('"exp" names 2 archived sessions') });
    expect(ambiguous.stderr).toContain(first);
    expect(ambiguous.stderr).toContain(second);

    const missing = apex("session", "unarchive", "nothing-of-that-name");
    expect(missing.status).toBe(3);
    expect(missing.stderr).toContain(`${first} (exp)`);
    expect(missing.stderr).toContain(`${second} (exp)`);
    // A command naming the first by its id is told the way back by its id: "exp" names two (it said `unarchive exp`, which unarchive refused as ambiguous).
    const shown = apex("checkpoint", "show", `${first}/latest`, "--json");
    expect(shown.status, shown.stderr).toBe(3);
    expect(JSON.parse(shown.stderr).error.hint).toContain(`bring it back with \`apex session unarchive ${first}\``);
    // An id prefix in capitals finds the archive, as the hints' lookup finds it (unarchive said "no archived session").
    const upper = apex("session", "unarchive", second.slice(0, 8).toUpperCase(), "--keep", "--json");
    expect(upper.status, upper.stderr).toBe(0);
    expect(json(upper)).toMatchObject({ session_id: second, bundle_removed: false });
    expect(apex("session", "archive", "exp").status).toBe(0);
    // One archive of that name left, the name finds it (it was APEX_E_NOT_FOUND, "no archived session \"exp\"").
    rmSync(join(dir, `.apex/backups/${second}.apexbundle`));
    const byName = apex("session", "unarchive", "exp", "--json");
    expect(byName.status, byName.stderr).toBe(0);
    expect(json(byName)).toMatchObject({ session_id: first, name: "exp", bundle_removed: true });
  });
});

describe("a session that was archived, named by a command that reads the store", () => {
  it("branch, start --continue, checkpoint show, --session and session list say it was archived and how to bring it back (it was only 'No session')", async () => {
    const dir = project("p-archived-hint");
    const apex = apexIn(dir);
    await threeSessions(dir);
    const checkpointId = await withStore(dir, (store) => resolveCheckpoint(store, "s-recent/checkpoint-002").id);
    const made = apex("session", "branch", "s-recent/checkpoint-003", "exp", "--json");
    expect(made.status, made.stderr).toBe(0);
    const branch = json(made).session_id as string;
    // The branch first (a session a branch starts from is kept), then the session.
    for (const id of ["exp", "s-recent"]) expect(apex("session", "archive", id).status).toBe(0);
    const file = (id: string) => join(dir, `.apex/backups/${id}.apexbundle`);
    const hint = (what: string, id: string) => `${what} to .apex/backups/${id}.apexbundle: bring it back with \`apex session unarchive ${id === branch ? "exp" : id}\`, then run this command again.`;
    for (const [args, code, exit, what, id, checkpoint] of [
      [["session", "branch", "s-recent/checkpoint-003", "other"], "APEX_E_CHECKPOINT_NOT_FOUND", 3, "Session s-recent was archived", "s-recent", null],
      [["session", "branch", checkpointId.slice(0, 8), "other"], "APEX_E_CHECKPOINT_NOT_FOUND", 3, `Checkpoint ${checkpointId} is of session s-recent, which was archived`, "s-recent", checkpointId],
      [["start", "--continue", "exp"], "APEX_E_NOT_FOUND", 3, "Session exp was archived", branch, null],
      [["checkpoint", "show", "exp/latest"], "APEX_E_CHECKPOINT_NOT_FOUND", 3, "Session exp was archived", branch, null],
      [["task", "list", "--session", "s-recent"], "APEX_E_NO_SESSION", 3, "Session s-recent was archived", "s-recent", null],
    ] as Array<[string[], string, number, string, string, string | null]>) {
      const result = apex(...args, "--json");
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(exit);
      const error = JSON.parse(result.stderr).error;
      expect(error, args.join(" ")).toMatchObject({ code, hint: hint(what, id), details: { archived: { session_id: id, file: file(id), checkpoint } } });
    }
    // A name or id no archive holds keeps its own hint.
    const unknown = apex("session", "branch", "s-nothing/latest", "other", "--json");
    expect(unknown.status).toBe(3);
    expect(JSON.parse(unknown.stderr).error.hint).not.toContain("archived");
    // With every ended session archived (the live one stopped and archived too), the store has none: said so, not "No sessions yet".
    await withStore(dir, (store) => store.batch((batch) => {
      const live = batch.get("/sessions/s-live") as Record<string, JsonValue>;
      batch.delete("/sessions/s-live");
      batch.set("/sessions/history/s-live", { ...live, status: "stopped", ended_at: new Date().toISOString() });
      batch.delete("/sessions/current");
    }));
    for (const id of ["s-live", "s-old"]) expect(apex("session", "archive", id).status).toBe(0);
    const ids = [branch, "s-live", "s-old", "s-recent"].sort().map((id) => id.slice(0, 8)).join(", ");
    expect(apex("session", "list").stdout).toBe(`No sessions in the store; 4 sessions of this project are archived in .apex/backups: ${ids} (\`apex session unarchive ID\` brings one back).\n`);
    const last = apex("--session", "last", "task", "list", "--json");
    expect(last.status).toBe(3);
    expect(JSON.parse(last.stderr).error.hint).toBe(`Start one with \`apex start --task "…"\`. 4 sessions of this project are archived in .apex/backups: ${ids} (\`apex session unarchive ID\` brings one back).`);
    const none = apex("task", "list", "--json");
    expect([none.status, JSON.parse(none.stderr).error.hint]).toEqual([3, `Start one with \`apex start --task "…"\`. 4 sessions of this project are archived in .apex/backups: ${ids} (\`apex session unarchive ID\` brings one back).`]);
    expect(apex("session", "unarchive", "exp").status).toBe(0);
  });
});

describe("a PostgreSQL role that may only read", () => {
  it("reads work and write nothing; writes are refused (4, APEX_E_STORE_PERMISSION); archive fails (exit 1), leaving the session and no bundle", async () => {
    const dir = project("ro");
    const url = await createSharedDatabase("readonly");
    const spec = { backend: "postgres" as const, dir: join(dir, ".apex"), url, project: basename(dir) };
    const store = await openStore(spec);
    try {
      await store.set("/projects/config", { project_id: "p-archive", created_at: new Date(NOW - 100 * DAY).toISOString() });
      await makeSession(store, "s-old", 2, 60);
    } finally {
      await store.close();
    }
    const role = `apex_ro_${process.pid}_${Date.now().toString(36)}`;
    const database = new URL(url).pathname.slice(1);
    for (const statement of [
      `CREATE ROLE ${role} LOGIN PASSWORD 'ro-secret-pw'`,
      `GRANT CONNECT ON DATABASE "${database}" TO ${role}`,
    ]) await query(url, statement);
    await query(url, `GRANT USAGE ON SCHEMA apex TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA apex TO ${role}`);
    const readOnly = Object.assign(new URL(url), { username: role, password: "ro-secret-pw" }).toString();
    const state = async () => (await query(url, "SELECT (SELECT string_agg(revision::text, ',') FROM apex.stores) AS revision, (SELECT count(*) FROM apex.log) AS log, (SELECT md5(string_agg(r::text, ',' ORDER BY r::text)) FROM apex.rows r) AS rows, (SELECT md5(string_agg(k::text, ',' ORDER BY k::text)) FROM apex.kv k) AS kv"))[0];
    const before = await state();
    const asReader = (...args: string[]) => runApex(args, { cwd: dir, env: { APEX_STORE_URL: readOnly } });

    for (const args of [["status"], ["session", "list"], ["session", "tree"], ["checkpoint", "list", "--session", "s-old"], ["session", "validate"], ["memory", "show", "/notes/shared/counter"]]) {
      const read = asReader(...args);
      expect(read.status, `${args.join(" ")}: ${read.stderr}`).toBe(0);
    }
    const archived = asReader("session", "archive", "--older-than", "30d", "--json");
    expect(archived.status, archived.stderr).toBe(1);
    expect(json(archived)).toMatchObject({ archived: [], skipped: [{ session_id: "s-old", code: "APEX_E_STORE_PERMISSION" }] });
    expect(json(archived).skipped[0].reason).toMatch(/permission denied/);
    const human = asReader("session", "archive", "--older-than", "30d");
    expect(human.status).toBe(1);
    expect(human.stdout).toMatch(/^Nothing archived: 1 session could not be archived/);
    expect(human.stdout).not.toContain("ro-secret-pw");
    // A write is refused (4) with what to grant, never a bare driver message; the password is not in it.
    for (const args of [["memory", "set", "/x", "1", "--json"], ["checkpoint", "pin", "s-old/checkpoint-002", "--json"], ["checkpoint", "delete", "s-old/checkpoint-001", "--force", "--json"]]) {
      const refused = asReader(...args);
      expect(refused.status, `${args.join(" ")}: ${refused.stderr}`).toBe(4);
      const error = JSON.parse(refused.stderr.trim().split("\n").at(-1)!).error;
      expect(error).toMatchObject({ code: "APEX_E_STORE_PERMISSION", details: { sqlstate: "42501" } });
      expect(error.message).toMatch(/refused writing: permission denied for table/);
      expect(error.hint).toMatch(/INSERT, UPDATE and DELETE/);
      expect(refused.stderr).not.toContain("ro-secret-pw");
    }
    // On a database without APEX's schema, the first write would create it: refused the same way.
    const empty = await createSharedDatabase("readonly_empty");
    await query(url.replace(/\/[^/]*$/, `/${new URL(empty).pathname.slice(1)}`), `GRANT CONNECT ON DATABASE "${new URL(empty).pathname.slice(1)}" TO ${role}`);
    const emptyReadOnly = Object.assign(new URL(empty), { username: role, password: "ro-secret-pw" }).toString();
    expect(runApex(["status"], { cwd: dir, env: { APEX_STORE_URL: emptyReadOnly } }).status).toBe(0);
    const setUp = runApex(["memory", "set", "/x", "1"], { cwd: dir, env: { APEX_STORE_URL: emptyReadOnly } });
    expect(setUp.status, setUp.stderr).toBe(4);
    expect(setUp.stderr).toMatch(/APEX_E_STORE_PERMISSION.*refused opening the store: permission denied for database/);
    expect(await query(empty, "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'apex'")).toEqual([{ n: 0 }]);
    const backups = join(dir, ".apex/backups");
    expect(existsSync(backups) ? readdirSync(backups) : []).toEqual([]);
    expect(await state()).toEqual(before);
    for (const database of [url, empty]) await query(database, `DROP OWNED BY ${role}`);
    await query(url, `DROP ROLE ${role}`);
  });
});

// Continuing a session brought in from another project (LMDB: the same on each backend, and it starts a session).
describe("an imported session continued in its new project", () => {
  const AGENT_CONFIG = `agents:\n  worker:\n    command: sh\n    args: ["-c", "sleep 600"]\n${CONFIG}`;

  /** A project with one agent, s-recent of threeSessions exported from another project and imported into it after `/notes/mine` was written. */
  async function imported(): Promise<{ target: string; apex: (...args: string[]) => ReturnType<typeof runApex> }> {
    const source = project("source");
    await threeSessions(source);
    const file = join(root, "recent.apexbundle");
    expect(apexIn(source)("session", "export", "s-recent", "-o", file).status).toBe(0);
    const target = project("target");
    writeFileSync(join(target, "apex.config.yaml"), AGENT_CONFIG);
    const apex = apexIn(target);
    expect(apex("memory", "set", "/notes/mine", '{"v":1}').status).toBe(0);
    const result = apex("session", "import", file);
    expect(result.status, result.stderr).toBe(0);
    return { target, apex };
  }

  it("restoring one of its checkpoints saves this project's live memory first: the revision the checkpoint names is the other store's", async () => {
    const { target, apex } = await imported();
    // This store's log goes past the revision checkpoint-003 names (of the source's store), with no
    // write to memory, tasks or agents after it: read as this store's, it said nothing changed since.
    await withStore(target, async (store) => {
      const latest = (store.get("/sessions/s-recent/checkpoint-003") as { revision: number }).revision;
      const count = Math.max(1, latest - store.revision() + 1);
      await store.batch((batch) => {
        for (let seq = 90_000_001; seq <= 90_000_000 + count; seq++) batch.set(`/sessions/s-recent/events/${seq}`, { seq, at: new Date().toISOString(), type: "note", actor: "test" });
      });
      expect(store.revision()).toBeGreaterThan(latest);
    });
    try {
      const started = apex("start", "--continue", "s-recent/checkpoint-003");
      expect(started.status, started.stderr).toBe(0);
      // Before, "the state it replaced was that checkpoint already", and /notes/mine was gone with no checkpoint holding it.
      expect(started.stdout).toContain("restored checkpoint-003");
      expect(started.stdout).toContain("the state it replaced is saved as checkpoint-004");
    } finally {
      expect(apex("stop").status).toBe(0);
    }
    await withStore(target, (store) => {
      expect(store.get("/notes/mine")).toBeUndefined();
      expect([...readCheckpointMemory(store, "s-recent/checkpoint-004")]).toContainEqual({ path: "/notes/mine", value: { v: 1 } });
    });
  });

  it("the bundle of a session running in this very project is refused as the session it has (exit 4), not as a forged one", async () => {
    const dir = project("running");
    writeFileSync(join(dir, "apex.config.yaml"), AGENT_CONFIG);
    const apex = apexIn(dir);
    const started = apex("start", "--task", "running", "--json");
    expect(started.status, started.stderr).toBe(0);
    const sessionId = JSON.parse(started.stdout).session_id as string;
    try {
      const file = join(root, "running.apexbundle");
      expect(apex("session", "export", sessionId, "-o", file).status).toBe(0);
      // Before: exit 2, APEX_E_BUNDLE_INVALID, "names process N … which is running on this machine and is not an agent of this session".
      const again = apex("session", "import", file, "--json");
      expect(again.status, again.stderr).toBe(4);
      expect(errorOf(again)).toMatchObject({ code: "APEX_E_SESSION_EXISTS", message: expect.stringContaining(`already has a session ${sessionId}`) });
    } finally {
      expect(apex("stop").status).toBe(0);
    }
  });

  it("`start --continue SID` brings back its memory (its latest checkpoint), not this project's, and goes on from the live state once it ran here", async () => {
    const { target, apex } = await imported();
    const expected = await withStore(target, (store) => [...readCheckpointMemory(store, "s-recent/checkpoint-003")]);
    expect(expected.length).toBeGreaterThan(0);
    try {
      // Before, it "continued from the live state: memory as it is": this project's /notes/mine, none of its own.
      const first = apex("start", "--continue", "s-recent");
      expect(first.status, first.stderr).toBe(0);
      expect(first.stdout).toContain("restored checkpoint-003");
      expect(first.stdout).toContain("the state it replaced is saved as checkpoint-004");
      expect(apex("stop").status).toBe(0);
      const again = apex("start", "--continue", "s-recent");
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).toContain("continued from the live state");
    } finally {
      expect(apex("stop").status).toBe(0);
    }
    await withStore(target, (store) => {
      for (const { path, value } of expected) expect(store.get(path)).toEqual(value);
      expect(store.get("/notes/mine")).toBeUndefined();
      expect([...readCheckpointMemory(store, "s-recent/checkpoint-004")]).toContainEqual({ path: "/notes/mine", value: { v: 1 } });
      // The record says when it came in, and from which project.
      expect((store.get("/sessions/history/s-recent") as { history: Array<Record<string, unknown>> }).history).toContainEqual(expect.objectContaining({ event: "imported", from_project: "p-archive" }));
    });
  });
});

describe("--help of every command shows its options and examples", () => {
  it.each([
    [["session", "archive"], ["--older-than", "--dry-run", "--json"]],
    [["session", "unarchive"], ["<bundle>", "--keep", "--json"]],
    [["session", "export"], ["-o, --output", "--force", "--json"]],
    [["session", "import"], ["<file>", "--json"]],
    [["backup"], ["--to", "--json"]],
  ])("apex %s --help", (words, flags) => {
    const dir = project("help");
    const help = runApex([...words, "--help"], { cwd: dir });
    expect(help.status).toBe(0);
    for (const flag of flags) expect(help.stdout).toContain(flag);
    expect(help.stdout).toMatch(new RegExp(`Examples:\\n  apex ${words.join(" ")}`));
  });
});

describe("unarchive given a directory", () => {
  it("says the path is a directory, not a bundle file, and names the bundle files in it", async () => {
    // It said "No bundle file DIR", as if nothing were there.
    const dir = project("p-unarchive-dir");
    const apex = apexIn(dir);
    await threeSessions(dir);
    mkdirSync(join(dir, "empty"));
    const empty = apex("session", "unarchive", "empty", "--json");
    expect(empty.status, empty.stderr).toBe(3);
    expect(errorOf(empty)).toMatchObject({
      code: "APEX_E_NOT_FOUND",
      message: expect.stringContaining(`${join(dir, "empty")} is a directory, not a bundle file`),
      hint: expect.stringContaining("It holds no .apexbundle file"),
    });
    mkdirSync(join(dir, "bundles"));
    writeFileSync(join(dir, "bundles", "a.apexbundle"), "");
    const text = apex("session", "unarchive", "bundles");
    expect(text.status).toBe(3);
    expect(text.stderr).toContain("is a directory, not a bundle file");
    expect(text.stderr).toContain(`Give one of its bundle files (${join(dir, "bundles", "a.apexbundle")})`);
    expect(text.stderr).not.toContain("No bundle file");
  });
});
