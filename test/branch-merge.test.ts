import { beforeEach, describe, expect, it } from "vitest";
import { isApexError, type ApexError } from "../core/errors.js";
import type { JsonValue, Store } from "../core/store/store.js";
import { createBranch } from "../plugins/checkpoint/branch.js";
import { writeDerivedCheckpoint } from "../plugins/checkpoint/branch.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { createCheckpoint, deleteCheckpoint, diffCheckpoints, getCheckpointValue, loadManifest, readCheckpointMemory, showCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { manifestPath } from "../plugins/checkpoint/manifest.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { resolveCheckpoint } from "../plugins/checkpoint/refs.js";
import { resolveSessionRef } from "../plugins/checkpoint/plugin-sessions.js";
import { resolveSessionId } from "../core/session/sessions.js";
import { applyToTree, describeConflict, objectView, type MergeChange, type MergeConflict } from "../plugins/checkpoint/merge.js";
import { findMergeBase } from "../plugins/checkpoint/merge-base.js";
import { mergeSessions } from "../plugins/checkpoint/session-merge.js";
import { SessionCheckpoints } from "../plugins/checkpoint/plugin-service.js";
import { drawTree, sessionTree, type SessionTree } from "../plugins/checkpoint/tree.js";
import { applyRetention } from "../plugins/retention/cleanup.js";
import { runCleanupCommand } from "../plugins/retention/command.js";
import { Engine } from "../core/engine.js";
import type { Config } from "../core/config/types.js";
import { reconstructSession } from "../plugins/checkpoint/recover.js";
import { forEachBackend } from "./support/backends.js";
import { commandContext } from "./support/command-context.js";

let store: Store;
let tick = 0;
/** Creation times one second apart, so "created last" is never a tie by accident. */
const now = () => new Date(Date.UTC(2026, 0, 1, 0, 0, tick++));

async function seed(fresh: Store): Promise<void> {
  store = fresh;
  await store.batch((batch) => {
    batch.set("/sessions/main", { session_id: "main", status: "active", agents: ["coder"], created_at: "2026-01-01T00:00:00.000Z" });
    batch.set("/sessions/current", { session_id: "main" });
    batch.set("/sessions/main/tasks/t-0001", { id: "t-0001", title: "first", status: "pending", result: null });
    for (let i = 0; i < 20; i++) batch.set(`/app/k${i}`, { i });
    batch.set("/notes/x", "base");
  });
}

const latest = (sessionId: string) => loadManifest(store, { ...Catalog.of(store).latest(sessionId)!, sessionId, id: Catalog.of(store).latest(sessionId)!.id });
/** A merge checkpoint of `from` on session `into` after `base`, written by hand with /a set as dst-1 (a criss-cross's other merge). */
async function mergeByHand(into: string, base: ReturnType<typeof latest>, fromSession: string, from: ReturnType<typeof latest>): Promise<void> {
  await store.transaction(() => {
    const view = objectView(store);
    const m = applyToTree(view, base.memory.root, [{ path: "/a", kind: "added", hash: view.writeValue("dst-1") }]);
    writeDerivedCheckpoint(store, {
      sessionId: into,
      trigger: "merge",
      description: "criss",
      parent: base.id,
      mergeParent: from.id,
      createdAt: now().toISOString(),
      roots: { memory: { ...base.memory, root: m.root, keys: base.memory.keys + m.delta }, tasks: base.tasks, agents: base.agents },
      gitState: null,
      data: { merge: { from: { session_id: fromSession, sequence: from.sequence, id: from.id, name: from.name } } },
      actor: "user:test",
    });
  });
}

const located = (sessionId: string) => {
  const summary = Catalog.of(store).latest(sessionId)!;
  return { sessionId, sequence: summary.sequence, id: summary.id };
};
const value = (sessionId: string, path: string) => getCheckpointValue(store, latest(sessionId), path);
// Interval checkpoints: retention keeps manual ones on their own account.
const checkpoint = async (sessionId = "main") => (await createCheckpoint(store, { sessionId, trigger: "interval", now })).manifest;

/** A checkpoint on a session that is not running: its latest trees with `memory` and `tasks` changed (null: deleted; `nulls`: set to null). */
async function commit(sessionId: string, memory: Record<string, JsonValue | null>, tasks: Record<string, JsonValue | null> = {}, nulls: string[] = []) {
  await store.transaction(() => {
    const parent = latest(sessionId);
    const view = objectView(store);
    const changes = (entries: Record<string, JsonValue | null>): MergeChange[] =>
      Object.entries(entries).map(([path, v]) => (v === null ? { path, kind: "deleted" } : { path, kind: "modified", hash: view.writeValue(v) }));
    const m = applyToTree(view, parent.memory.root, [...changes(memory), ...nulls.map((path): MergeChange => ({ path, kind: "modified", hash: view.writeValue(null) }))]);
    const t = applyToTree(view, parent.tasks.root, changes(Object.fromEntries(Object.entries(tasks).map(([id, v]) => [`/${id}`, v]))));
    writeDerivedCheckpoint(store, {
      sessionId,
      trigger: "interval",
      description: "work",
      parent: parent.id,
      createdAt: now().toISOString(),
      roots: { memory: { ...parent.memory, root: m.root, keys: parent.memory.keys + m.delta }, tasks: { root: t.root, count: parent.tasks.count + t.delta }, agents: parent.agents },
      gitState: null,
      data: {},
      actor: "user:test",
    });
  });
}

async function branch(from: string, name: string): Promise<string> {
  return (await createBranch(store, from, name, { now })).session_id;
}

async function refusal(promise: Promise<unknown>): Promise<ApexError> {
  try {
    await promise;
  } catch (error) {
    if (isApexError(error)) return error;
    throw error;
  }
  throw new Error("expected a refusal");
}

/** Two branches of main's first checkpoint, neither running: "dst" and "src". */
async function twoBranches() {
  const c1 = await checkpoint();
  const dst = await branch(c1.id, "dst");
  const src = await branch(c1.id, "src");
  return { c1, dst, src };
}

forEachBackend((backend) => {
beforeEach(async () => seed(await backend.fresh()));

describe("branch", () => {
  it("is a session named NAME whose first checkpoint holds the very trees of the checkpoint, copying nothing", async () => {
    const c1 = await checkpoint();
    const objectsBefore = Catalog.of(store).count("main");
    const revision = store.revision();
    const report = await createBranch(store, c1.id, "experimental-feature", { now });
    const first = latest(report.session_id);
    expect(first.parent).toBe(c1.id);
    expect(first.trigger).toBe("branch");
    expect([first.memory.root, first.tasks.root, first.agents.root]).toEqual([c1.memory.root, c1.tasks.root, c1.agents.root]);
    expect(Catalog.of(store).count("main")).toBe(objectsBefore);
    // A record, a manifest and two audit events (with their counters): no memory key is written.
    const written = [...store.changesSince(revision)].map((change) => change.path);
    expect(written.every((path) => path.startsWith("/sessions/"))).toBe(true);
    const record = store.get(`/sessions/history/${report.session_id}`) as Record<string, JsonValue>;
    expect(record).toMatchObject({ name: "experimental-feature", status: "stopped", parent_checkpoint: { id: c1.id, session_id: "main", sequence: 1 } });
    expect(validateStore(store).problems).toEqual([]);
  });

  it("neither a branch's first checkpoint nor a merge written as a checkpoint is what validate compares the live memory with", async () => {
    // A project's store (validate compares the live memory with its sessions' checkpoints).
    await store.set("/projects/config", { project_id: "p-live" });
    await store.set("/sessions/main", { ...(store.get("/sessions/main") as Record<string, JsonValue>), project_id: "p-live" });
    const c1 = await checkpoint();
    await store.set("/app/new", 1);
    await checkpoint();
    // A branch of the older checkpoint: its trees are c1's, its revision is now. Compared with the
    // live memory, /app/new "appeared with no logged write" (record-unlogged): a sound store failed validation.
    const older = await branch(c1.id, "older");
    expect(validateStore(store).problems).toEqual([]);
    await store.set("/app/late", 2);
    // A merge into the branch, which does not hold the live memory: written as a checkpoint of its trees.
    const report = await mergeSessions(store, { source: "main", destination: "older", actor: "user:test" });
    expect(report.applied).toBe("checkpoint");
    expect(value(older, "/app/new")).toBe(1);
    expect(validateStore(store).problems).toEqual([]);
  });

  it("refuses a taken or invalid name, writing nothing", async () => {
    const c1 = await checkpoint();
    await createBranch(store, c1.id, "exp", { now });
    const revision = store.revision();
    expect((await refusal(createBranch(store, c1.id, "exp"))).code).toBe("APEX_E_CONFLICT");
    // Nor in another case: EXP beside exp was made, one git branch (apex/exp) where the file system ignores case.
    for (const alike of ["EXP", "Exp"]) {
      const refused = await refusal(createBranch(store, c1.id, alike));
      expect([refused.code, refused.exitCode], alike).toEqual(["APEX_E_CONFLICT", 4]);
      expect(refused.message).toContain(`A session named "exp" already exists (`);
      expect(refused.message).toContain(`"${alike}" differs from it only in case`);
      expect(refused.details).toMatchObject({ name: alike, existing: { name: "exp" } });
    }
    expect((await refusal(createBranch(store, c1.id, "latest"))).code).toBe("APEX_E_USAGE");
    // A name that reads as the start of an id: `--session cafe` would also match a session whose id starts with it.
    // Checkpoint refs ignore case (`checkpoint show F34C2A84` finds f34c2a84-…): so does this check.
    for (const hexLike of ["cafe", "deadbeef", "f34c2a84", "deadbeef-1a", "CAFE", "F34C2A84", "DeadBeef-1A"]) {
      const refused = await refusal(createBranch(store, c1.id, hexLike));
      expect(refused.code, hexLike).toBe("APEX_E_USAGE");
      expect(refused.message).toContain("start of a session or checkpoint id");
    }
    expect(store.revision()).toBe(revision);
    // Short ones, names with other letters and names that do not fit an id's shape stay fine.
    for (const name of ["abc", "cafe-latte", "a-10", "add-feed", "deadbeef0"]) await createBranch(store, c1.id, name, { now });
  });

  it("takes <session>/checkpoint-NNN and <session>/latest with the session as APEX prints it: a branch's name or an id prefix", async () => {
    const c1 = await checkpoint();
    const exp = await branch(c1.id, "exp");
    await commit(exp, { "/exp": 1 });
    const second = latest(exp);
    for (const ref of ["exp/latest", "exp/checkpoint-002", `${exp.slice(0, 8)}/checkpoint-002`, `${exp}/latest`]) {
      expect(resolveCheckpoint(store, ref).id, ref).toBe(second.id);
    }
    expect(resolveCheckpoint(store, "exp/checkpoint-001").id).toBe(latest(exp).parent);
    const fromPrinted = await createBranch(store, `${exp.slice(0, 8)}/checkpoint-002`, "from-printed", { now });
    expect(fromPrinted.parent_checkpoint).toMatchObject({ id: second.id, session_id: exp });
    expect((await refusal(Promise.resolve().then(() => resolveCheckpoint(store, "exp/checkpoint-009")))).code).toBe("APEX_E_CHECKPOINT_NOT_FOUND");
    expect((await refusal(Promise.resolve().then(() => resolveCheckpoint(store, "nosuch/latest")))).code).toBe("APEX_E_CHECKPOINT_NOT_FOUND");
  });

  it("reads checkpoint names whatever their case, as it reads ids; a reference with a second '/' is said to be malformed, not a missing session", async () => {
    const c1 = await checkpoint();
    const exp = await branch(c1.id, "exp");
    await commit(exp, { "/exp": 1 });
    const second = latest(exp);
    // Id prefixes ignored case (`F2C89AB9`) but names did not: `CHECKPOINT-002` was not found.
    for (const ref of ["exp/CHECKPOINT-002", "exp/Checkpoint-2", "exp/LATEST", `${exp.slice(0, 8)}/Latest`, second.id.slice(0, 8).toUpperCase()]) {
      expect(resolveCheckpoint(store, ref).id, ref).toBe(second.id);
    }
    expect(resolveCheckpoint(store, "CHECKPOINT-001").id).toBe(c1.id);
    // So a session may not be named as a checkpoint is, in any case.
    expect((await refusal(createBranch(store, c1.id, "CHECKPOINT-7"))).message).toContain("would read as a checkpoint name");
    // `<id>/checkpoint-002/x` said `No session "checkpoint-002"`.
    for (const ref of [`${exp}/checkpoint-002/x`, "exp/latest/", "exp/"]) {
      const refused = await refusal(Promise.resolve().then(() => resolveCheckpoint(store, ref)));
      expect(refused, ref).toMatchObject({ code: "APEX_E_USAGE", details: { ref } });
      expect(refused.message).toMatch(/is not a checkpoint reference: (it has more than one "\/"|nothing follows the "\/")\.$/);
      expect(refused.message).not.toContain("No session");
    }
  });

  it("refuses to merge a session into itself naming it as other messages do, not by its whole id", async () => {
    const { dst } = await twoBranches();
    const self = await refusal(mergeSessions(store, { source: "dst", destination: dst, actor: "user:test" }));
    expect(self).toMatchObject({ code: "APEX_E_USAGE", message: "Cannot merge session dst into itself.", details: { session_id: dst } });
    const unnamed = await refusal(mergeSessions(store, { source: "main", destination: "main", actor: "user:test" }));
    expect(unnamed.message).toBe("Cannot merge session main into itself.");
  });

  it("refuses a destination with no checkpoint naming it as other messages do (its short id), not by its whole id", async () => {
    const { src } = await twoBranches();
    const old = "0f1e2d3c-4b5a-4968-8776-655443322110";
    await store.batch((batch) => batch.set(`/sessions/history/${old}`, { session_id: old, status: "stopped", agents: [], created_at: "2026-01-01T00:00:00.000Z" }));
    const none = await refusal(mergeSessions(store, { source: src, destination: old, actor: "user:test" }));
    expect(none).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND", message: "Session 0f1e2d3c has no checkpoint to merge into." });
  });

  it("reads `current` as the current session, as `session share current` does, never as a session of that id", async () => {
    const { dst } = await twoBranches();
    expect(resolveSessionRef(store, "current")).toBe("main");
    expect(resolveCheckpoint(store, "current/latest").sessionId).toBe("main");
    await commit(dst, { "/from-dst": 1 });
    const report = await mergeSessions(store, { source: "dst", destination: "current" });
    expect(report.destination.session_id).toBe("main");
    expect(await value("main", "/from-dst")).toBe(1);
    // With no current session it is not found, rather than a session "current" with no checkpoints.
    await store.batch((batch) => batch.delete("/sessions/current"));
    const refused = await refusal(Promise.resolve().then(() => resolveSessionRef(store, "current")));
    expect(refused.code).toBe("APEX_E_NO_SESSION");
  });

  it("/sessions/active, the list of running sessions, is no session: not in the tree, not a name taken, not found by merge", async () => {
    const { src } = await twoBranches();
    await commit(src, { "/x": 1 });
    await store.batch((batch) => batch.set("/sessions/active", { main: { worktree: null, name: null } }));
    expect(sessionTree(store).sessions.map((session) => session.session_id)).not.toContain("active");
    const named = await refusal(createBranch(store, "main/latest", "active"));
    expect([named.code, named.exitCode]).toEqual(["APEX_E_USAGE", 2]);
    for (const ref of ["active", "acti"]) {
      expect((await refusal(mergeSessions(store, { source: ref, destination: "main", dryRun: true }))).code, ref).toBe("APEX_E_NO_SESSION");
      expect((await refusal(mergeSessions(store, { source: "src", destination: ref, dryRun: true }))).code, ref).toBe("APEX_E_NO_SESSION");
    }
  });

  it("a reconstructed branch does not take its name, and --as cannot take a name another session has", async () => {
    const { src } = await twoBranches();
    await commit(src, { "/x": 1 });
    const rebuilt = await reconstructSession(store, src, { now });
    const record = store.get(`/sessions/history/${rebuilt.sessionId}`) as Record<string, JsonValue>;
    expect(record.name ?? null).toBeNull();
    // The report names the session it came from by its name too (reconstruct's text prints it so).
    expect(rebuilt.from).toMatchObject({ sessionId: src, name: "src" });
    expect(resolveSessionRef(store, "src")).toBe(src);
    // The tree prints an id that is no uuid whole: its first 8 characters are the branch's id too.
    expect(drawTree(sessionTree(store)).some((line) => line.includes(` [${rebuilt.sessionId}] checkpoint-001 reconstruct`))).toBe(true);
    const revision = store.revision();
    const taken = await refusal(reconstructSession(store, src, { newSessionId: "dst", now }));
    expect([taken.code, taken.exitCode]).toEqual(["APEX_E_CONFLICT", 4]);
    expect(taken.message).toContain("dst");
    expect(store.revision()).toBe(revision);
    expect(resolveSessionRef(store, "dst")).not.toBe("dst");
    // The start of another session's id is how that one is printed and found: it was taken, and unreachable.
    const prefix = await refusal(reconstructSession(store, src, { newSessionId: src.slice(0, 8), now }));
    expect([prefix.code, prefix.exitCode]).toEqual(["APEX_E_CONFLICT", 4]);
    expect(prefix.details).toMatchObject({ id: src.slice(0, 8), prefix_of: expect.stringMatching(new RegExp(`^${src}`)) });
    expect(store.revision()).toBe(revision);
  });

  it("session tree says of a branch point deleted with --force which of the branches made from it still record it, not that nothing did", async () => {
    await checkpoint();
    const point = await checkpoint();
    const kept = await branch(point.id, "kept");
    const lost = await branch(point.id, "lost");
    await commit(lost, { "/x": 1 });
    await checkpoint();
    await deleteCheckpoint(store, point.id, { force: true });
    // lost's first checkpoint, which recorded the branch point, goes too; kept's still records it.
    await deleteCheckpoint(store, `${lost}/checkpoint-001`, { force: true });
    const tree = sessionTree(store);
    expect(tree.sessions.find((session) => session.session_id === kept)!.parent).toMatchObject({ checkpoint: point.id, deleted: "recorded by its branch" });
    expect(tree.sessions.find((session) => session.session_id === lost)!.parent).toMatchObject({ checkpoint: point.id, deleted: "not recorded" });
    const node = tree.nodes.find((candidate) => candidate.id === point.id)!;
    expect(node).toMatchObject({ trigger: "deleted", deleted: "recorded by some of its branches", recorded_by: [kept] });
    expect([...node.branched_by!].sort()).toEqual([kept, lost].sort());
    const names = node.branched_by!.map((id) => (id === kept ? "kept" : "lost")).join(", ");
    expect(drawTree(tree).find((line) => line.includes(`${point.id.slice(0, 8)} (deleted)`))).toContain(
      `deleted: ${names} branched from it (kept recorded it: a merge of kept still diffs against it; nothing recorded it for lost: a merge of lost falls back to an older base)`,
    );
  });

  it("a session reconstructed from one that merged takes none of its merge checkpoints' edges, which name the old session's sequences", async () => {
    const { src, dst } = await twoBranches();
    await commit(src, { "/x": 1 });
    const merged = await mergeSessions(store, { source: "src", destination: "dst", actor: "user:test" });
    expect((store.get(`/sessions/history/${dst}`) as Record<string, JsonValue>).merges).toMatchObject([{ id: merged.checkpoint!.id }]);
    const rebuilt = await reconstructSession(store, dst, { now });
    const record = store.get(`/sessions/history/${rebuilt.sessionId}`) as Record<string, JsonValue>;
    expect(record.merges).toBeUndefined();
    // Its tree drew the old session's merge as a deleted merge checkpoint of the new one.
    expect(sessionTree(store).nodes.filter((node) => node.session_id === rebuilt.sessionId).map((node) => node.trigger)).toEqual(["reconstruct"]);
  });

  it("says when SRC wrote memory or tasks after the checkpoint a merge takes (a worktree session keeps them when stopped)", async () => {
    const c1 = await checkpoint();
    const src = (await createBranch(store, c1.id, "src", { now, worktree: { path: "/nowhere/src", branch: "apex/src", commit: null } })).session_id;
    const dst = await branch(c1.id, "dst");
    await commit(src, { "/x": 1 });
    const clean = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(clean.source).toMatchObject({ session_name: "src", changed_since_checkpoint: false });
    // Another session's memory (the root here) is not SRC's.
    await store.set("/elsewhere", 1);
    expect((await mergeSessions(store, { source: "src", destination: "dst", dryRun: true })).source.changed_since_checkpoint).toBe(false);
    await store.set(`/sessions/${src}/memory/late`, 1);
    expect((await mergeSessions(store, { source: "src", destination: "dst", dryRun: true })).source.changed_since_checkpoint).toBe("stopped");
    await store.batch((batch) => batch.set("/sessions/active", { [src]: { worktree: "/nowhere/src", name: "src" } }));
    expect((await mergeSessions(store, { source: "src", destination: dst, dryRun: true })).source.changed_since_checkpoint).toBe("running");
  });

  it("a session reference longer than any id is not found, not a key too long for the store", async () => {
    await checkpoint();
    const long = "z".repeat(3000);
    expect((await refusal(Promise.resolve().then(() => resolveSessionRef(store, long)))).code).toBe("APEX_E_NO_SESSION");
    expect((await refusal(Promise.resolve().then(() => resolveSessionId(store, long)))).code).toBe("APEX_E_NO_SESSION");
    expect((await refusal(Promise.resolve().then(() => resolveCheckpoint(store, `${long}/latest`)))).code).toBe("APEX_E_CHECKPOINT_NOT_FOUND");
    expect((await refusal(mergeSessions(store, { source: long, destination: "main" }))).code).toBe("APEX_E_NO_SESSION");
  });
});

describe("merge cases", () => {
  it("clean: each side's changes are kept, the result has two parents, and the audit trail names both", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/app/k1": "dst", "/dst-only": 1 });
    await commit(src, { "/app/k2": "src", "/app/k3": null });
    const report = await mergeSessions(store, { source: "src", destination: "dst", actor: "user:test" });
    expect(report.applied).toBe("checkpoint");
    expect(report.base?.id).toBe(latest("main").id);
    const merged = latest(dst);
    expect(merged.trigger).toBe("merge");
    expect(merged.merge_parent).toBe(latest(src).id);
    expect(value(dst, "/app/k1")).toBe("dst");
    expect(value(dst, "/app/k2")).toBe("src");
    expect(value(dst, "/app/k3")).toBeUndefined();
    expect(value(dst, "/dst-only")).toBe(1);
    expect(merged.memory.keys).toBe([...readCheckpointMemory(store, merged)].length);
    const events = [...store.query(`/sessions/${dst}/events/*`)].map((entry) => entry.value as Record<string, JsonValue>);
    expect(events.at(-1)).toMatchObject({ type: "session.merged", actor: "user:test", parents: [merged.parent, latest(src).id] });
    expect(validateStore(store).problems).toEqual([]);
  });

  it("conflict: refused with exit 4 and every conflict, nothing written; --dry-run shows the same and writes nothing", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/app/k1": "dst" });
    await commit(src, { "/app/k1": "src", "/app/k2": "src" });
    const revision = store.revision();
    const count = Catalog.of(store).count(dst);
    const error = await refusal(mergeSessions(store, { source: "src", destination: "dst" }));
    expect(error.code).toBe("APEX_E_MERGE_CONFLICT");
    expect(error.exitCode).toBe(4);
    // The sessions by their names, as the merge's other output names them.
    expect(error.message).toMatch(/^Merging src into dst conflicts at 1 path: \/app\/k1\./);
    expect(store.revision()).toBe(revision);
    expect(Catalog.of(store).count(dst)).toBe(count);
    const dry = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(dry.refused).toBe(true);
    expect(dry.memory.conflicts).toEqual([{ path: "/app/k1", base: { i: 1 }, ours: "dst", theirs: "src", absent: [], resolution: "none" }]);
    expect(dry.memory.changes).toEqual([{ path: "/app/k2", kind: "modified" }]);
    expect(store.revision()).toBe(revision);
  });

  it.each([
    ["ours", "dst"],
    ["theirs", "src"],
  ])("--strategy %s settles a conflict with that side", async (strategy, winner) => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/app/k1": "dst" });
    await commit(src, { "/app/k1": "src", "/app/k2": "src" });
    const report = await mergeSessions(store, { source: "src", destination: "dst", strategy });
    expect(report.memory.conflicts.map((conflict) => conflict.resolution)).toEqual([strategy]);
    expect(value(dst, "/app/k1")).toBe(winner);
    expect(value(dst, "/app/k2")).toBe("src");
  });

  it("delete vs modify is a conflict; a deletion on one side only is taken", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/app/k1": "changed", "/app/k5": null });
    await commit(src, { "/app/k1": null, "/app/k6": null });
    const dry = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(dry.memory.conflicts).toEqual([{ path: "/app/k1", base: { i: 1 }, ours: "changed", theirs: null, absent: ["theirs"], resolution: "none" }]);
    await mergeSessions(store, { source: "src", destination: "dst", strategy: "theirs" });
    expect(value(dst, "/app/k1")).toBeUndefined();
    expect(value(dst, "/app/k5")).toBeUndefined();
    expect(value(dst, "/app/k6")).toBeUndefined();
  });

  it("a null value against a deletion is a conflict that tells them apart (in --json and in the text)", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, {}, {}, ["/app/k1", "/app/k2"]);
    await commit(src, { "/app/k1": null, "/app/k3": "src" }, {}, ["/app/k2"]);
    const dry = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    // Both sides set /app/k2 to null: the same change.
    expect(dry.memory.conflicts).toEqual([{ path: "/app/k1", base: { i: 1 }, ours: null, theirs: null, absent: ["theirs"], resolution: "none" }]);
    expect(describeConflict(dry.memory.conflicts[0]!)).toBe('/app/k1: base {"i":1}, ours null, theirs (none)');
    await commit(dst, { "/app/new": "dst" });
    await commit(src, {}, {}, ["/app/new"]);
    const added = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(added.memory.conflicts.find((conflict) => conflict.path === "/app/new")).toMatchObject({ base: null, ours: "dst", theirs: null, absent: ["base"] });
  });

  it("the same change on both sides is not a conflict; merging twice is a no-op", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/app/k1": "same", "/app/k9": null });
    await commit(src, { "/app/k1": "same", "/app/k9": null, "/new": true });
    const first = await mergeSessions(store, { source: "src", destination: "dst" });
    expect(first.memory.conflicts).toEqual([]);
    expect(first.memory.same).toBe(2);
    expect(first.memory.changes).toEqual([{ path: "/new", kind: "added" }]);
    const revision = store.revision();
    const again = await mergeSessions(store, { source: "src", destination: "dst" });
    expect(again.relation).toBe("up-to-date");
    expect(again.checkpoint).toBeNull();
    expect(store.revision()).toBe(revision);
  });

  it("lists changes and conflicts by path, also in a directory large enough to be kept in buckets by hash (they came bucket by bucket)", async () => {
    const { c1, dst, src } = await twoBranches();
    const paths = Array.from({ length: 20 }, (_, i) => `/app/k${i}`);
    const byPath = (list: string[]) => [...list].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    await commit(dst, Object.fromEntries(paths.filter((_, i) => i % 2 === 0).map((path) => [path, "dst"])));
    await commit(src, Object.fromEntries(paths.map((path) => [path, "src"])));
    const dry = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(dry.memory.changes.map((change) => change.path)).toEqual(byPath(paths.filter((_, i) => i % 2 === 1)));
    expect(dry.memory.conflicts.map((conflict) => conflict.path)).toEqual(byPath(paths.filter((_, i) => i % 2 === 0)));
    expect(diffCheckpoints(store, c1, latest(src)).memory.changed).toEqual(byPath(paths));
  });

  it("branch of a branch: the base is found through both branch points", async () => {
    const c1 = await checkpoint();
    const exp = await branch(c1.id, "exp");
    await commit(exp, { "/app/k1": "exp" });
    const deeper = await branch(latest(exp).id, "deeper");
    await commit(deeper, { "/app/k2": "deeper" });
    const dst = await branch(c1.id, "dst");
    await commit(dst, { "/app/k3": "dst" });
    const base = findMergeBase(store, located(dst), located(deeper));
    expect(base.base?.id).toBe(c1.id);
    await mergeSessions(store, { source: "deeper", destination: "dst" });
    expect([value(dst, "/app/k1"), value(dst, "/app/k2"), value(dst, "/app/k3")]).toEqual(["exp", "deeper", "dst"]);
  });

  it("merge back and forth: each merge takes only what is new since the last one", async () => {
    const { dst, src } = await twoBranches();
    await commit(src, { "/app/k1": "src-1" });
    const merged = latest(src);
    await mergeSessions(store, { source: "src", destination: "dst" });
    // dst changes the path src changed; merged back, it is no conflict (src did not change it since).
    await commit(dst, { "/app/k1": "dst-2" });
    const back = await mergeSessions(store, { source: "dst", destination: "src" });
    expect(back.base?.id).toBe(merged.id);
    expect(back.memory.conflicts).toEqual([]);
    expect(value(src, "/app/k1")).toBe("dst-2");
    await commit(src, { "/app/k4": "src-3" });
    const forth = await mergeSessions(store, { source: "src", destination: "dst" });
    expect(forth.memory.conflicts).toEqual([]);
    expect(forth.memory.changes).toEqual([{ path: "/app/k4", kind: "modified" }]);
    expect(value(dst, "/app/k1")).toBe("dst-2");
  });

  it("criss-cross: of the two maximal common ancestors the one created last is the base, every time", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/a": "dst-1" });
    const dst1 = latest(dst);
    await commit(src, { "/b": "src-1" });
    const src1 = latest(src);
    await mergeSessions(store, { source: "src", destination: "dst" }); // dst: merge of src1
    // src merges dst1 (not the merge): written by hand as a merge checkpoint of dst1 on src.
    await mergeByHand(src, src1, dst, dst1);
    await commit(dst, { "/c": "dst-2" });
    await commit(src, { "/d": "src-2" });
    const found = findMergeBase(store, located(dst), located(src));
    expect(found.candidates.map((candidate) => candidate.id).sort()).toEqual([dst1.id, src1.id].sort());
    // src1 was created after dst1.
    expect(found.base?.id).toBe(src1.id);
    expect(findMergeBase(store, located(dst), located(src)).base?.id).toBe(src1.id);
    const report = await mergeSessions(store, { source: "src", destination: "dst" });
    expect(report.other_bases).toEqual([dst1.id]);
    expect(report.memory.conflicts).toEqual([]);
    expect([value(dst, "/a"), value(dst, "/b"), value(dst, "/c"), value(dst, "/d")]).toEqual(["dst-1", "src-1", "dst-2", "src-2"]);
  });

  it("criss-cross: the merge diffs against a virtual ancestor of both candidates, so a path changed again on one side after both merges is no conflict, and one the sides settled differently still is", async () => {
    const { dst, src } = await twoBranches();
    await commit(dst, { "/a": "dst-1", "/x": "dst-1" });
    const dst1 = latest(dst);
    await commit(src, { "/b": "src-1", "/x": "src-1" });
    const src1 = latest(src);
    // dst merges src1, settling /x its way; src merges dst1 (written by hand as a merge checkpoint), settling /x the other way.
    await mergeSessions(store, { source: "src", destination: "dst", strategy: "ours" });
    await mergeByHand(src, src1, dst, dst1);
    // dst changes /a (dst1's) again; src leaves it as it merged it.
    await commit(dst, { "/a": "dst-2" });
    await commit(src, { "/d": "src-2" });
    const report = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(report.other_bases).toEqual([dst1.id]);
    // Against src1 alone (no /a there), /a was dst-2 on one side and dst-1 on the other: a conflict. /x was settled
    // dst-1 on dst and src-1 on src: the virtual ancestor holds their base's value there, so it conflicts still.
    expect(report.memory.conflicts.map((conflict) => conflict.path)).toEqual(["/x"]);
    await mergeSessions(store, { source: "src", destination: "dst", strategy: "ours" });
    expect([value(dst, "/a"), value(dst, "/b"), value(dst, "/d"), value(dst, "/x")]).toEqual(["dst-2", "src-1", "src-2", "dst-1"]);
    expect((latest(dst).data as { merge: { other_bases?: string[] } }).merge.other_bases).toEqual([dst1.id]);
  });

  it("a branch point deleted with --force is still the base, from the branch's first checkpoint (one an older APEX recorded too); with that checkpoint deleted as well, the base falls back and the merge names what it fell back from", async () => {
    // The branch is made from, and merged into, a session that is not running (trunk): the merge is of checkpoints.
    const trunk = await branch((await checkpoint()).id, "trunk");
    const c0 = latest(trunk);
    await commit(trunk, { "/notes/z": "fork" });
    const fork = latest(trunk);
    const exp = await branch(fork.id, "exp");
    await commit(exp, { "/notes/z": "exp" });
    await commit(trunk, { "/notes/w": "trunk" });
    // As a branch made before it recorded more: where its branch point is, and nothing else (its trees are the checkpoint's own).
    const path = manifestPath(exp, 1);
    const manifest = store.get(path) as { data: { branch: { from: Record<string, JsonValue> } } };
    const { id, session_id, sequence, name } = manifest.data.branch.from;
    expect(manifest.data.branch.from).toMatchObject({ memory_root: fork.memory.root, tasks_root: fork.tasks.root, created_at: fork.created_at, ancestry: { [trunk]: fork.sequence, main: 1 } });
    await store.set(path, { ...manifest, data: { branch: { ...manifest.data.branch, from: { id, session_id, sequence, name } } } } as unknown as JsonValue);
    await deleteCheckpoint(store, fork.id, { force: true });

    const found = findMergeBase(store, located(trunk), located(exp));
    expect(found.base).toMatchObject({ id: fork.id, session_id: trunk, sequence: fork.sequence, by: "branch" });
    expect(found.lost).toEqual([]);
    const plan = await mergeSessions(store, { source: "exp", destination: "trunk", dryRun: true });
    expect(plan.base).toMatchObject({ id: fork.id, name: fork.name, deleted: "recorded by its branch" });
    expect(plan.base_fell_back_from).toBeUndefined();
    expect(plan.memory).toMatchObject({ changes: [{ path: "/notes/z", kind: "modified" }], conflicts: [] });

    // Nothing records it any more: an older common checkpoint is the base, and the report says which one it fell back from.
    await deleteCheckpoint(store, `${exp}/checkpoint-001`, { force: true });
    const fallen = findMergeBase(store, located(trunk), located(exp));
    expect(fallen.base?.id).toBe(c0.id);
    expect(fallen.lost).toEqual([{ sessionId: trunk, sequence: fork.sequence }]);
    const fell = await mergeSessions(store, { source: "exp", destination: "trunk", dryRun: true });
    expect(fell.base).toMatchObject({ id: c0.id });
    expect(fell.base_fell_back_from).toEqual([{ session_id: trunk, session_name: "trunk", sequence: fork.sequence, name: fork.name }]);
    expect(fell.memory.conflicts.map((conflict) => conflict.path)).toEqual(["/notes/z"]);
  });

  it("a deleted branch point that was a merge checkpoint keeps the edge to what it merged in, from the ancestry its branch recorded", async () => {
    const { dst, src } = await twoBranches();
    await commit(src, { "/s": "src-1" });
    const src1 = latest(src);
    await mergeSessions(store, { source: "src", destination: "dst" });
    const merged = latest(dst);
    const exp = await branch(merged.id, "exp");
    await commit(exp, { "/e": "exp" });
    await commit(src, { "/s": "src-2" });
    await deleteCheckpoint(store, merged.id, { force: true });
    // src1, which the deleted merge took in, is the base (it was main's first checkpoint, before either changed /s).
    expect(findMergeBase(store, located(src), located(exp)).base?.id).toBe(src1.id);
    const plan = await mergeSessions(store, { source: "exp", destination: "src", dryRun: true });
    expect(plan.memory.conflicts).toEqual([]);
    expect(plan.memory.changes).toEqual([{ path: "/e", kind: "added" }]);
  });
});

describe("tasks and live memory", () => {
  it("tasks: union by id, a completed task stays completed, different results are a conflict", async () => {
    const { dst, src } = await twoBranches();
    const done = (result: string) => ({ id: "t-0001", title: "first", status: "completed", result });
    await commit(dst, {}, { "t-0002": { id: "t-0002", title: "dst task", status: "pending", result: null } });
    await commit(src, {}, { "t-0001": done("ok"), "t-0003": { id: "t-0003", title: "src task", status: "pending", result: null } });
    await mergeSessions(store, { source: "src", destination: "dst" });
    const tasks = showCheckpoint(store, latest(dst)).tasks as Record<string, { status: string; result: JsonValue }>;
    expect(Object.keys(tasks).sort()).toEqual(["t-0001", "t-0002", "t-0003"]);
    expect(tasks["t-0001"]!.status).toBe("completed");
    // Both complete t-0001, with different results.
    await commit(dst, {}, { "t-0001": done("dst") });
    await commit(src, {}, { "t-0001": done("src") });
    const error = await refusal(mergeSessions(store, { source: "src", destination: "dst" }));
    expect(error.code).toBe("APEX_E_MERGE_CONFLICT");
    const conflicts = (error.details as { tasks: { conflicts: MergeConflict[] } }).tasks.conflicts;
    expect(conflicts).toMatchObject([{ path: "/t-0001", reason: "completed on both sides with different results" }]);
    // The text names what differs: it showed each task's first 60 characters, the same on both sides.
    expect(describeConflict(conflicts[0]!)).toBe('/t-0001 (completed on both sides with different results): result: base "ok", ours "dst", theirs "src"');
    const long = { a: "x".repeat(70), deep: { b: 1 } };
    const record: MergeConflict = { path: "/cfg", base: long, ours: { ...long, deep: { b: 2 } }, theirs: { ...long, deep: { b: 3 }, added: true }, absent: [], resolution: "none" };
    expect(describeConflict(record)).toBe('/cfg: added: base (none), ours (none), theirs true; deep: base {"b":1}, ours {"b":2}, theirs {"b":3}');
  });

  it("a merge deletes no task: one SRC deleted stays in DST, one DST deleted stays deleted unless SRC changed it, a task the other side completed is kept", async () => {
    await store.batch((batch) => {
      for (const id of ["t-0002", "t-0003", "t-0004"]) batch.set(`/sessions/main/tasks/${id}`, { id, title: id, status: "pending", result: null });
    });
    const { dst, src } = await twoBranches();
    const done = (id: string, result: string) => ({ id, title: id, status: "completed", result });
    // Each side deletes one task the other leaves, and one the other completes.
    await commit(dst, {}, { "t-0001": null, "t-0003": done("t-0003", "dst"), "t-0004": null });
    await commit(src, {}, { "t-0002": null, "t-0003": null, "t-0004": done("t-0004", "src") });
    const into = async (source: string, destination: string) => (await mergeSessions(store, { source, destination, dryRun: true })).tasks;
    // Neither way is a deletion taken: only the task the other side completed comes over.
    expect(await into(src, dst)).toMatchObject({ changes: [{ path: "/t-0004", kind: "added" }], conflicts: [] });
    expect(await into(dst, src)).toMatchObject({ changes: [{ path: "/t-0003", kind: "added" }], conflicts: [] });
    await mergeSessions(store, { source: src, destination: dst });
    const merged = latest(dst);
    const tasks = showCheckpoint(store, merged).tasks as Record<string, { status: string; result: JsonValue }>;
    expect(Object.entries(tasks).map(([id, task]) => [id, task.status, task.result]).sort()).toEqual([["t-0002", "pending", null], ["t-0003", "completed", "dst"], ["t-0004", "completed", "src"]]);
    expect(merged.tasks.count).toBe(3);
    expect(validateStore(store).problems).toEqual([]);
  });

  it("a subtree deleted on one side (memory delete --recursive): a path below it the other changed is a conflict, one it added is kept, both ways", async () => {
    await store.batch((batch) => {
      batch.set("/notes/sub", "self");
      batch.set("/notes/sub/x", "x");
      batch.set("/notes/sub/y", "y");
    });
    const { dst, src } = await twoBranches();
    await commit(src, { "/notes/sub": null, "/notes/sub/x": null, "/notes/sub/y": null });
    await commit(dst, { "/notes/sub/y": "dst changed", "/notes/sub/z": "dst added" });
    const into = async (source: string, destination: string) => (await mergeSessions(store, { source, destination, dryRun: true })).memory;
    expect(await into(src, dst)).toMatchObject({ changes: [{ path: "/notes/sub", kind: "deleted" }, { path: "/notes/sub/x", kind: "deleted" }], conflicts: [{ path: "/notes/sub/y", base: "y", ours: "dst changed", absent: ["theirs"] }] });
    expect(await into(dst, src)).toMatchObject({ changes: [{ path: "/notes/sub/z", kind: "added" }], conflicts: [{ path: "/notes/sub/y", base: "y", theirs: "dst changed", absent: ["ours"] }] });
    expect((await refusal(mergeSessions(store, { source: src, destination: dst }))).code).toBe("APEX_E_MERGE_CONFLICT");
    await mergeSessions(store, { source: src, destination: dst, strategy: "theirs" });
    expect(["/notes/sub", "/notes/sub/x", "/notes/sub/y", "/notes/sub/z"].map((path) => value(dst, path) ?? "(none)")).toEqual(["(none)", "(none)", "(none)", "dst added"]);
  });

  it("into the session that holds live memory: memory, tasks and the merge checkpoint in one transaction", async () => {
    const c1 = await checkpoint();
    const exp = await branch(c1.id, "exp");
    await commit(exp, { "/app/k1": "exp", "/app/k2": null }, { "t-0007": { id: "t-0007", title: "from exp", status: "pending", result: null } });
    await store.set("/app/k3", "live, not yet checkpointed");
    const report = await mergeSessions(store, { source: "exp", destination: "main" });
    expect(report.applied).toBe("live");
    expect(store.get("/app/k1")).toBe("exp");
    expect(store.has("/app/k2")).toBe(false);
    expect(store.get("/app/k3")).toBe("live, not yet checkpointed");
    expect(store.get("/sessions/main/tasks/t-0007")).toMatchObject({ title: "from exp" });
    expect(store.get("/sessions/main/counters")).toMatchObject({ tasks: 7 });
    const merged = latest("main");
    expect(merged.merge_parent).toBe(latest(exp).id);
    expect(value("main", "/app/k3")).toBe("live, not yet checkpointed");
    expect(value("main", "/app/k1")).toBe("exp");
    // A live change on the same path is a conflict with the live state, refused with nothing written.
    await store.set("/app/k5", "live");
    await commit(exp, { "/app/k5": "exp" });
    const revision = store.revision();
    expect((await refusal(mergeSessions(store, { source: "exp", destination: "main" }))).code).toBe("APEX_E_MERGE_CONFLICT");
    expect(store.revision()).toBe(revision);
    expect(store.get("/app/k5")).toBe("live");
  });

  it("into live memory, the merge checkpoint is what hashing the live state gives, with or without a memory base to hash it from, each live record hashed once", async () => {
    const c1 = await checkpoint();
    const exp = await branch(c1.id, "exp");
    await commit(exp, { "/app/k1": "exp", "/app/k2": null, "/new/deep/path": [1, { two: 2 }] }, { "t-0007": { id: "t-0007", title: "from exp", status: "pending", result: null } });
    await store.batch((batch) => {
      batch.set("/app/k3", "live");
      batch.delete("/app/k4");
      batch.set("/sessions/main/tasks/t-0001", { id: "t-0001", title: "first", status: "active", result: null });
    });
    const sameAsHashed = async (report: Awaited<ReturnType<typeof mergeSessions>>) => {
      const merged = latest("main");
      expect(merged.id).toBe(report.checkpoint!.id);
      const hashed = (await createCheckpoint(store, { sessionId: "main", trigger: "interval", now })).manifest;
      expect([hashed.memory, hashed.tasks, hashed.agents]).toEqual([merged.memory, merged.tasks, merged.agents]);
    };
    const first = await mergeSessions(store, { source: "exp", destination: "main" });
    expect(first).toMatchObject({ applied: "live", hashed: { memory: 2, tasks: 1, agents: 0 } });
    await sameAsHashed(first);

    // No memory base (none built yet, or dropped): the live memory is hashed whole, once.
    await commit(exp, { "/app/k5": "exp again" });
    await store.set("/app/k6", "live again");
    await store.transaction(() => {
      for (const { scopeKey } of [...Catalog.of(store).bases()]) Catalog.of(store).removeBase(scopeKey);
    });
    const records = [...store.tree("/")].filter((entry) => !entry.path.startsWith("/sessions")).length;
    const second = await mergeSessions(store, { source: "exp", destination: "main" });
    expect(second).toMatchObject({ applied: "live", hashed: { memory: records, tasks: 0, agents: 0 } });
    await sameAsHashed(second);
    expect(validateStore(store)).toMatchObject({ ok: true });
  });

  it("into the live memory of a session in its own git worktree (below its own root), the same", async () => {
    const c1 = await checkpoint();
    const wt = (await createBranch(store, c1.id, "wt", { now, worktree: { path: "/nowhere/wt", branch: "apex/wt", commit: null } })).session_id;
    const exp = await branch(c1.id, "exp");
    const mount = `/sessions/${wt}/memory`;
    // It ran: its checkpoint's memory restored below its root, then written to.
    const record = store.get(`/sessions/history/${wt}`) as { history: JsonValue[] };
    await store.batch((batch) => {
      batch.set(`/sessions/history/${wt}`, { ...record, history: [...record.history, { event: "continued", at: now().toISOString() }] });
      for (const entry of readCheckpointMemory(store, c1.id)) batch.set(`${mount}${entry.path}`, entry.value);
    });
    await store.batch((batch) => batch.set(`${mount}/app/k3`, "live in wt"));
    await commit(exp, { "/app/k1": "exp", "/app/k2": null });
    // No memory base below its root yet: its memory hashed whole, once.
    const records = [...store.keysBelow(mount)].length;
    const report = await mergeSessions(store, { source: "exp", destination: "wt" });
    expect(report).toMatchObject({ applied: "live", hashed: { memory: records }, memory: { changes: [{ path: "/app/k1" }, { path: "/app/k2" }] } });
    expect([store.get(`${mount}/app/k1`), store.has(`${mount}/app/k2`), store.get("/app/k1")]).toEqual(["exp", false, { i: 1 }]);
    const merged = latest(wt);
    const hashed = (await createCheckpoint(store, { sessionId: wt, trigger: "interval", now })).manifest;
    expect([hashed.memory, hashed.tasks, hashed.agents]).toEqual([merged.memory, merged.tasks, merged.agents]);
    expect(validateStore(store)).toMatchObject({ ok: true });
  });

  it("a merge written on a session after `start --continue` pinned its latest checkpoint, before its claim, is what the restore brings back", async () => {
    const c1 = await checkpoint();
    const dst = await branch(c1.id, "dst");
    const src = await branch(c1.id, "src");
    await commit(src, { "/app/k1": "src" });
    // The supervisor's steps for a session that does not hold the live memory: its latest, pinned and verified; the claim; the restore.
    const service = new SessionCheckpoints(store).service();
    const pinned = (await service.prepare!({ sessionId: dst, checkpoint: undefined })).checkpoint!;
    await service.prepare!({ sessionId: dst, checkpoint: pinned });
    // Not running yet, so the merge is a checkpoint on it.
    const report = await mergeSessions(store, { source: "src", destination: "dst" });
    expect(report.applied).toBe("checkpoint");
    const restored = await service.restore({ sessionId: dst, checkpoint: pinned, replacesOtherSession: "main" });
    // It restored the checkpoint pinned: the merge, reported saved, was not in the session that ran.
    expect(restored!.checkpoint).toBe(report.checkpoint!.id);
    expect(store.get("/app/k1")).toBe("src");
    // A checkpoint named (`--continue CHECKPOINT`) is restored as named, merges after it or not.
    await commit(src, { "/app/k2": "src" });
    const named = (await service.prepare!({ sessionId: dst, checkpoint: c1.id })).checkpoint!;
    await mergeSessions(store, { source: "src", destination: "dst" });
    expect((await service.restore({ sessionId: dst, checkpoint: named }))!.checkpoint).toBe(c1.id);
  });

  it("session tree draws the branch and merge points", async () => {
    const { dst, src } = await twoBranches();
    await commit(src, { "/x": 1 });
    await mergeSessions(store, { source: "src", destination: "dst" });
    const tree = sessionTree(store);
    const merge = tree.nodes.find((node) => node.trigger === "merge")!;
    expect(merge.parents).toEqual([tree.nodes.find((node) => node.session_id === dst && node.trigger === "branch")!.id, latest(src).id]);
    expect(tree.sessions.find((session) => session.session_id === src)).toMatchObject({ name: "src", parent: { session_id: "main", sequence: 1 } });
    const lines = drawTree(tree);
    expect(lines[0]).toMatch(/^\* +\w{8} \[dst\] checkpoint-002 merge/);
    expect(lines.some((line) => /^\|\\$/.test(line))).toBe(true);
    expect(lines.at(-1)).toMatch(/\[main\] checkpoint-001 interval/);
    expect(lines).not.toContain("");
  });

  it("session tree draws an edge to a column further than the next one across the columns between (a lone '/' named the next session's)", () => {
    const node = (id: string, session: string, sequence: number, parents: string[]) => ({ id: id.padEnd(8, "0"), session_id: session, name: `checkpoint-00${sequence}`, sequence, trigger: "manual", description: "", created_at: "", parents: parents.map((parent) => parent.padEnd(8, "0")), folded: 0, head: false });
    const sessions = ["m", "x", "y", "z"].map((id) => ({ session_id: id, name: id, status: "stopped", created_at: "", parent: null, checkpoints: 2, latest: null }));
    // A criss-cross: x merged y in, z (branched from y) merged x in.
    const nodes = [node("x4", "x", 4, ["x3", "y2"]), node("z2", "z", 2, ["z1", "x3"]), node("z1", "z", 1, ["y2"]), node("y2", "y", 2, ["y1"]), node("x3", "x", 3, ["x1"]), node("y1", "y", 1, ["b"]), node("x1", "x", 1, ["b"]), node("b", "m", 1, [])];
    const lines = drawTree({ sessions, nodes } as unknown as SessionTree).map((line) => line.replace(/ {2}\w{8} .*$/, ""));
    expect(lines).toEqual(["*", "|\\", "| | *", "|_|/|", "| | *", "| |/", "| *", "* |", "| *", "* |", "|/", "*"]);
    // Rightwards, to a column further right that awaits the second parent already, the same way.
    const right = drawTree({ sessions, nodes: [node("p", "x", 2, ["p0"]), node("q", "y", 2, ["q0"]), node("r", "z", 2, ["r0"]), node("p0", "x", 1, ["b", "r0"]), node("q0", "y", 1, ["b"]), node("r0", "z", 1, ["b"]), node("b", "m", 1, [])] } as unknown as SessionTree);
    expect(right.map((line) => line.replace(/ {2}\w{8} .*$/, "")).slice(3, 5)).toEqual(["* | |", "|\\|_|"]);
  });

  it("session tree separates unrelated histories with a blank line (git draws one column through both)", () => {
    const node = (id: string, session: string, sequence: number, parents: string[]) => ({ id: id.padEnd(8, "0"), session_id: session, name: `checkpoint-00${sequence}`, sequence, trigger: "manual", description: "", created_at: "", parents: parents.map((parent) => parent.padEnd(8, "0")), folded: 0, head: sequence === 2 });
    const sessions = ["one", "two"].map((id) => ({ session_id: id, name: id, status: "stopped", created_at: "", parent: null, checkpoints: 2, latest: null }));
    const lines = drawTree({ sessions, nodes: [node("b2", "two", 2, ["b1"]), node("b1", "two", 1, []), node("a2", "one", 2, ["a1"]), node("a1", "one", 1, [])] } as unknown as SessionTree);
    expect(lines.map((line) => line.slice(0, 16))).toEqual(["*  b2000000 [two", "*  b1000000 [two", "", "*  a2000000 [one", "*  a1000000 [one"]);
  });

  it("session tree draws no checkpoint straight under a root of the column it ended in: not when that column was the last one either", () => {
    const node = (id: string, session: string, sequence: number, parents: string[]) => ({ id: id.padEnd(8, "0"), session_id: session, name: `checkpoint-00${sequence}`, sequence, trigger: "manual", description: "", created_at: "", parents: parents.map((parent) => parent.padEnd(8, "0")), folded: 0, head: false });
    const sessions = ["x", "r", "n"].map((id) => ({ session_id: id, name: id, status: "stopped", created_at: "", parent: null, checkpoints: 1, latest: null }));
    // x's latest, then r's and n's only checkpoints (two sessions started anew while x was stopped), then x's first.
    const lines = drawTree({ sessions, nodes: [node("x2", "x", 2, ["x1"]), node("r1", "r", 1, []), node("n1", "n", 1, []), node("x1", "x", 1, [])] } as unknown as SessionTree);
    // n1 was drawn in r1's column, "| *" under "| *": r's start read as made from n's.
    expect(lines.map((line) => line.replace(/ {2}(\w{2})0{6} .*$/, " $1"))).toEqual(["* x2", "| * r1", "|   * n1", "* x1"]);
  });
});

describe("retention", () => {
  it("keeps the checkpoints branches and merges need as a base, so the next merge finds the same base", async () => {
    const { c1, dst, src } = await twoBranches();
    for (let i = 0; i < 3; i++) await commit(src, { [`/src/${i}`]: i });
    const mergedIn = latest(src);
    await mergeSessions(store, { source: "src", destination: "dst" });
    const mergePoint = latest(dst);
    for (let i = 0; i < 3; i++) await commit(dst, { [`/dst/${i}`]: i });
    for (let i = 3; i < 6; i++) await commit(src, { [`/src/${i}`]: i });
    for (let i = 0; i < 3; i++) await checkpoint();
    const outcome = await applyRetention(store, { keepLast: 1, maxCheckpoints: 100 }, { sweep: "always" });
    const deleted = new Set(outcome.deleted.map((entry) => entry.id));
    expect(deleted.size).toBeGreaterThan(0);
    for (const kept of [c1.id, mergedIn.id, mergePoint.id]) expect(deleted.has(kept)).toBe(false);
    const reasons = outcome.plan.sessions.flatMap((plan) => plan.result.decisions).filter((decision) => decision.item.id === mergedIn.id)[0]!.reasons;
    expect(reasons).toContain(`merged into ${dst}`);
    // Cleanup's text names the sessions in its reasons as the other commands do, by name (it printed whole ids); --json keeps the ids.
    const lines: string[] = [];
    const json: unknown[] = [];
    const context = commandContext({
      config: { storeDir: store.dir, session: {} } as Config,
      projectDir: store.dir,
      engine: new Engine(),
      store: async () => store,
      storeExists: async () => true,
      print: (text: string) => lines.push(text),
      printJson: (value: unknown) => json.push(value),
    });
    expect(await runCleanupCommand({ args: [], options: { dryRun: true } }, context, { keepLast: 1, maxCheckpoints: 100 })).toBe(0);
    const text = lines.join("\n");
    expect(text).toContain("Session src (stopped): 3 checkpoints, keep 3, remove 0");
    expect(text).toMatch(/^ {2}keep {3}checkpoint-001 .* {2}branch dst, branch src$/m);
    expect(text).toMatch(new RegExp(`^ {2}keep {3}${mergedIn.name} .* {2}merged into dst$`, "m"));
    expect(text).toMatch(new RegExp(`^ {2}keep {3}${mergePoint.name} .* {2}merge point of dst, last$`, "m"));
    for (const id of [dst, src]) expect(text).not.toContain(id);
    expect(await runCleanupCommand({ args: [], options: { dryRun: true, json: true } }, context, { keepLast: 1, maxCheckpoints: 100 })).toBe(0);
    expect(JSON.stringify(json[0])).toContain(`"merged into ${dst}"`);
    const report = await mergeSessions(store, { source: "src", destination: "dst", dryRun: true });
    expect(report.base?.id).toBe(mergedIn.id);
    expect(report.memory.changes.map((change) => change.path)).toEqual(["/src/3", "/src/4", "/src/5"]);
    expect(validateStore(store).problems).toEqual([]);
  });
});
});
