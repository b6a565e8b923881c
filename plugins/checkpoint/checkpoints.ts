// Checkpoint ids are random UUIDs (v4) from node:crypto: the uuid package is 15 modules more
// for every process that loads this one (LangGraph reads in a new process do).
import { randomUUID } from "node:crypto";
import type { CheckpointDraft, CheckpointInfo } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import {
  ChangeSet,
  ObjectStore,
  canonicalJson,
  compareCodePoints,
  countValues,
  isObjectDamage,
  updateTree,
  diffTrees,
  visitReachable,
  lookupEntry,
  walkTree,
  type Hash,
  type ObjectView,
  type WriteStats,
} from "./engine/objects.js";
import { checkpointRecorderFor } from "../../core/session/checkpoints.js";
import { appendEvent } from "../../core/session/service.js";
import { describeNotJson } from "../value-codec.js";
import { checkPath } from "../../core/store/paths.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog, type CheckpointSummary, type Located } from "./catalog.js";
import { sessionLabel, sessionName } from "./session-name.js";
import type { ContainmentProblem } from "./contained.js";
import {
  checkSessionId,
  checkTrigger,
  checkpointName,
  isRecord,
  manifestPath,
  signManifest,
  agentsRoot,
  tasksRoot,
  MANIFEST_FORMAT,
  type CheckpointManifest,
  type CheckpointTrigger,
} from "./manifest.js";
import {
  ACTORS,
  assertWritable,
  getCheckpoint,
  liveRoots,
  readManifestRecord,
  removeCheckpointRecords,
  requireSession,
  resolveCheckpoint,
  type ResolveOptions,
} from "./refs.js";
import { baseKey, DETACHED_ROOTS, isDetached, isProjectRecord, memoryMountOf, normalizeScope, pathSegments, segmentsPath, type MemoryScope } from "./scope.js";
import { buildSnapshot, type SessionBase, type Snapshot, type TreeResult } from "./snapshot.js";

export type { CheckpointManifest, CheckpointTrigger } from "./manifest.js";
export type { CheckpointSummary, Located } from "./catalog.js";
export type { MemoryScope } from "./scope.js";
export { BUILTIN_TRIGGERS, checkpointName, manifestPath } from "./manifest.js";
export { DEFAULT_SCOPE } from "./scope.js";
export {
  ACTORS,
  currentSessionId,
  getCheckpoint,
  loadManifest,
  resolveCheckpoint,
  type LoadOptions,
  type ResolveOptions,
} from "./refs.js";

// ---------------------------------------------------------------------------------------------
// Create

export interface CreateCheckpointOptions {
  sessionId: string;
  trigger: CheckpointTrigger;
  description?: string;
  pin?: boolean;
  /**
   * Lets plugins add data before the checkpoint is written (the engine's beforeCheckpoint
   * waterfall). `data.git_state` becomes the manifest's git_state; the rest its `data`.
   */
  enrich?: (draft: CheckpointDraft) => Promise<CheckpointDraft> | CheckpointDraft;
  /** Which paths the memory covers; default DEFAULT_SCOPE (everything outside /sessions). */
  scope?: Partial<MemoryScope>;
  /** Actor for the manifest write in the revision log. */
  actor?: string;
  /** Clock, for tests. */
  now?: () => Date;
}

export interface CreateStats extends WriteStats {
  memory: Omit<TreeResult, "root" | "count">;
  tasks: Omit<TreeResult, "root" | "count">;
  agents: Omit<TreeResult, "root" | "count">;
}

export interface CreatedCheckpoint {
  manifest: CheckpointManifest;
  stats: CreateStats;
}

/**
 * Creates a checkpoint of a session. Objects, manifest, sequence number and indexes are
 * written in one LMDB write transaction, so a crash at any instant leaves all of it or
 * none; the returned promise resolves once the commit is flushed to disk.
 */
export async function createCheckpoint(store: Store, options: CreateCheckpointOptions): Promise<CreatedCheckpoint> {
  assertWritable(store);
  const sessionId = checkSessionId(options.sessionId);
  const trigger = checkTrigger(options.trigger);
  const description = options.description ?? "";
  if (typeof description !== "string") throw new ApexError("APEX_E_BAD_INPUT", "A checkpoint description must be a string.");
  const scope = normalizeScope(options.scope);
  requireSession(store, sessionId);

  let draft: CheckpointDraft = { sessionId, trigger, description, data: {} };
  if (options.enrich) draft = checkDraft(await options.enrich(draft));
  const { git_state: gitState, ...data } = draft.data;
  try {
    canonicalJson({ gitState: gitState ?? null, data });
  } catch (error) {
    throw new ApexError("APEX_E_PLUGIN_FAILED", `beforeCheckpoint produced data that is not JSON: ${(error as Error).message}`, { cause: error });
  }

  let created!: CreatedCheckpoint;
  await store.transaction(() => {
    created = writeCheckpoint(store, {
      sessionId,
      trigger,
      description: draft.description,
      pinned: options.pin ?? false,
      gitState: (gitState ?? null) as JsonValue | null,
      data,
      scope,
      createdAt: (options.now?.() ?? new Date()).toISOString(),
      actor: options.actor ?? ACTORS.checkpoint,
      audit: true,
    });
  });
  return created;
}

export interface CheckpointParams {
  sessionId: string;
  trigger: CheckpointTrigger;
  description: string;
  pinned: boolean;
  gitState: JsonValue | null;
  data: { [key: string]: JsonValue };
  scope: MemoryScope;
  createdAt: string;
  actor: string;
  /** A merge checkpoint's second parent (the merged source checkpoint's id). */
  mergeParent?: string;
  /**
   * Whether the checkpoint goes in its session's audit trail here, in its own transaction, by
   * what the session bound to the store for that (core/session/checkpoints.ts: a store without
   * a supervisor; a supervisor records its own after the commit, from afterCheckpoint).
   */
  audit?: boolean;
  /**
   * Changes the memory tree built from the keyspace before it is recorded, e.g. to put a
   * detached subtree (scope.ts: DETACHED_ROOTS) in it; returns the new root and value count.
   */
  graft?: (view: ObjectView, memory: { root: Hash | null; count: number }) => { root: Hash | null; count: number };
  /**
   * The trees of the current state, hashed already (their objects stored) at `revision`, the
   * store's: taken instead of hashing it (a merge into live memory, which hashed it to plan).
   */
  built?: Required<Omit<Snapshot, "revision">> & { revision: number };
}

/**
 * Writes a checkpoint of the current state. Must run inside a write transaction
 * (`store.transaction`), which makes the sequence number, objects,
 * manifest and index records one atomic unit.
 */
export function writeCheckpoint(store: Store, params: CheckpointParams): CreatedCheckpoint {
  const { sessionId, scope } = params;
  requireSession(store, sessionId);
  const catalog = Catalog.of(store);
  const view = ObjectStore.of(store).view();
  const parent = latestSummary(catalog, sessionId);
  // A session in a git worktree has its own memory root: its checkpoints capture that, from its own base.
  const mount = memoryMountOf(store, sessionId);
  const key = baseKey(scope, mount);
  const base = catalog.base(key);
  const snapshot =
    params.built ??
    buildSnapshot(store, view, {
      memory: { scope, base, mount },
      session: { id: sessionId, base: parent && sessionBaseOf(parent) },
    });
  let memory = snapshot.memory!;
  // Rebuilt from the keyspace alone, the tree lacks the detached subtrees: the base still has them.
  if (memory.full && base) memory = { ...memory, ...carryDetached(view, base, memory) };
  // A session's first checkpoint (a new session's start) holds no detached subtree: the memory
  // base carries those of the sessions before it in this tree, whose LangGraph threads are
  // theirs (indexed there, not here). Kept, every later session's checkpoints held them: `session
  // branch` at one named each as a step deleted since, and their values could never be freed.
  // A reconstructed session keeps what its damaged session's checkpoint held.
  if (!parent && params.trigger !== "reconstruct") memory = { ...memory, ...dropDetached(store, mount, view, memory) };
  if (params.graft) memory = { ...memory, ...params.graft(view, memory) };
  const tasks = snapshot.tasks!;
  const agents = snapshot.agents!;
  const sequence = catalog.allocateSequence(sessionId);
  const manifest = signManifest({
    format: MANIFEST_FORMAT,
    id: randomUUID(),
    session_id: sessionId,
    sequence,
    name: checkpointName(sequence),
    parent: parent?.id ?? null,
    ...(params.mergeParent ? { merge_parent: params.mergeParent } : {}),
    created_at: params.createdAt,
    description: params.description,
    trigger: params.trigger,
    pinned: params.pinned,
    revision: snapshot.revision,
    memory: { root: memory.root, keys: memory.count, scope },
    tasks: { root: tasks.root, count: tasks.count },
    agents: { root: agents.root, count: agents.count },
    git_state: params.gitState,
    data: params.data,
  });
  store.batchSync((batch) => {
    batch.set(manifestPath(sessionId, sequence), manifest as unknown as JsonValue);
    if (params.audit) checkpointRecorderFor(store)?.(batch, checkpointInfo(manifest));
  }, params.actor);
  catalog.putCheckpoint(manifest);
  catalog.setBase(key, { root: memory.root, revision: snapshot.revision, keys: memory.count });
  return { manifest, stats: { ...view.stats, memory: buildInfo(memory), tasks: buildInfo(tasks), agents: buildInfo(agents) } };
}

/**
 * Puts the detached subtrees (DETACHED_ROOTS) of `base` into `memory`, a tree rebuilt from the
 * keyspace. A base node that cannot be read leaves that subtree out (validate reports it).
 */
function carryDetached(view: ObjectView, base: { root: Hash | null }, memory: { root: Hash | null; count: number }): { root: Hash | null; count: number } {
  let { root, count } = memory;
  for (const path of DETACHED_ROOTS) {
    const segments = pathSegments(path);
    try {
      const old = lookupEntry(view, base.root, segments);
      if (!old?.tree || lookupEntry(view, root, segments)?.tree) continue;
      const changes = new ChangeSet();
      changes.graft(segments, old.tree);
      root = updateTree(view, root, changes, () => undefined).root;
      count += countValues(view, old.tree);
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
    }
  }
  return { root, count };
}

/**
 * `memory` without its detached subtrees (DETACHED_ROOTS). One that live records were written
 * in by hand (`apex memory set /langgraph/…`) stays as it is, and so does one with a node that
 * cannot be read (validate reports it).
 */
function dropDetached(store: Store, mount: string, view: ObjectView, memory: { root: Hash | null; count: number }): { root: Hash | null; count: number } {
  let { root, count } = memory;
  for (const path of DETACHED_ROOTS) {
    const segments = pathSegments(path);
    if (store.has(`${mount}${path}`) || !store.keysBelow(`${mount}${path}`)[Symbol.iterator]().next().done) continue;
    try {
      const old = lookupEntry(view, root, segments);
      if (!old?.tree) continue;
      const values = countValues(view, old.tree);
      const changes = new ChangeSet();
      changes.graft(segments, null);
      root = updateTree(view, root, changes, () => undefined).root;
      count -= values;
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
    }
  }
  return { root, count };
}

function buildInfo(result: TreeResult): Omit<TreeResult, "root" | "count"> {
  return { changed: result.changed, full: result.full };
}

/**
 * The beforeCheckpoint waterfall's test of each tap's draft (core/engine.ts): its data must be JSON,
 * which the checkpoint's canonical JSON holds. What it throws is said as that plugin's failure.
 */
export function checkDraftData(draft: CheckpointDraft): void {
  const problem = describeNotJson(draft.data, "data");
  if (problem) throw new ApexError("APEX_E_PLUGIN_FAILED", `the checkpoint draft it returned holds data that is not JSON: ${problem.message}`);
}

function checkDraft(draft: unknown): CheckpointDraft {
  if (!isRecord(draft) || !isRecord(draft.data) || typeof draft.description !== "string") {
    throw new ApexError("APEX_E_PLUGIN_FAILED", "beforeCheckpoint must return the draft it was given, with `data` an object.", {
      hint: "A waterfall tap has to return its argument: `async (draft) => { draft.data.x = …; return draft; }`.",
    });
  }
  return draft as unknown as CheckpointDraft;
}

export function sessionBaseOf(summary: CheckpointSummary): SessionBase {
  return {
    revision: summary.revision,
    tasks: { root: summary.tasks_root, count: summary.task_count },
    agents: { root: summary.agents_root, count: summary.agent_count },
  };
}

function latestSummary(catalog: Catalog, sessionId: string): CheckpointSummary | undefined {
  try {
    return catalog.latest(sessionId);
  } catch {
    return undefined; // an undecodable summary: validate reports it; build this one from scratch
  }
}

/** What the engine's afterCheckpoint hook receives. */
export function checkpointInfo(manifest: CheckpointManifest): CheckpointInfo {
  return { sessionId: manifest.session_id, id: manifest.id, sequence: manifest.sequence, trigger: manifest.trigger };
}

// ---------------------------------------------------------------------------------------------
// List, resolve, load

export interface ListOptions {
  /** Default 50. */
  limit?: number;
  offset?: number;
  /** Default "newest" (highest sequence first). */
  order?: "newest" | "oldest";
}

export interface CheckpointList {
  sessionId: string;
  total: number;
  items: CheckpointSummary[];
}

/** A page of a session's checkpoints, read from compact summaries (no manifest is decoded). */
export function listCheckpoints(store: Store, sessionId: string, options: ListOptions = {}): CheckpointList {
  checkSessionId(sessionId);
  const catalog = Catalog.of(store);
  const limit = options.limit ?? 50;
  if (!Number.isSafeInteger(limit) || limit < 0) throw new ApexError("APEX_E_USAGE", `Invalid limit ${limit}.`);
  const offset = options.offset ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ApexError("APEX_E_USAGE", `Invalid offset ${offset}.`);
  const items = [...catalog.summaries(sessionId, { reverse: (options.order ?? "newest") === "newest", offset, limit })];
  return { sessionId, total: catalog.count(sessionId), items };
}

// ---------------------------------------------------------------------------------------------
// Show, read, diff

export interface CheckpointDetails {
  manifest: CheckpointManifest;
  /** Task id (path below /sessions/<sid>/tasks) -> task record. */
  tasks: Record<string, JsonValue>;
  /** Agent name (path below /sessions/<sid>/agents) -> agent state. */
  agent_states: Record<string, JsonValue>;
}

export function showCheckpoint(store: Store, ref: string | CheckpointManifest, options: ResolveOptions = {}): CheckpointDetails {
  const manifest = getCheckpoint(store, ref, options);
  const view = ObjectStore.of(store).view();
  return {
    manifest,
    tasks: readTreeRecords(view, manifest.tasks.root),
    agent_states: readTreeRecords(view, manifest.agents.root),
  };
}

function readTreeRecords(view: ObjectView, root: Hash | null): Record<string, JsonValue> {
  const records: Record<string, JsonValue> = {};
  for (const { segments, hash } of walkTree(view, root)) records[segments.join("/")] = view.readValue(hash);
  return records;
}

export interface MemoryEntry {
  path: string;
  value: JsonValue;
}

/**
 * The memory a checkpoint holds (optionally only `prefix` and below), in tree order:
 * each directory's children sorted by name, a path before the paths below it.
 * Every value and node read is verified; damage throws APEX_E_INTEGRITY.
 */
export function* readCheckpointMemory(store: Store, ref: string | CheckpointManifest, options: { prefix?: string } & ResolveOptions = {}): Generator<MemoryEntry> {
  const manifest = getCheckpoint(store, ref, options);
  const view = ObjectStore.of(store).view();
  if (!options.prefix || options.prefix === "/") {
    for (const { segments, hash } of walkTree(view, manifest.memory.root)) yield { path: segmentsPath(segments), value: view.readValue(hash) };
    return;
  }
  const segments = pathSegments(checkPath(options.prefix, "prefix"));
  const entry = lookupEntry(view, manifest.memory.root, segments);
  if (!entry) return;
  if (entry.value) yield { path: options.prefix, value: view.readValue(entry.value) };
  for (const item of walkTree(view, entry.tree ?? null, segments)) yield { path: segmentsPath(item.segments), value: view.readValue(item.hash) };
}

/** One value of a checkpoint's memory (undefined: not there). O(depth). */
export function getCheckpointValue(store: Store, ref: string | CheckpointManifest, path: string, options: ResolveOptions = {}): JsonValue | undefined {
  const manifest = getCheckpoint(store, ref, options);
  const view = ObjectStore.of(store).view();
  const entry = lookupEntry(view, manifest.memory.root, pathSegments(checkPath(path)));
  return entry?.value ? view.readValue(entry.value) : undefined;
}

export interface RecordChange {
  id: string;
  before: JsonValue;
  after: JsonValue;
}

export interface RecordDiff {
  added: string[];
  removed: string[];
  changed: RecordChange[];
}

/** A checkpoint as diff and delete name it; `session_name`: its session's name (null: none), which text prints the session by. */
export type NamedCheckpoint = Located & { name: string; session_name: string | null };

export interface CheckpointDiff {
  from: NamedCheckpoint;
  to: NamedCheckpoint;
  memory: { added: string[]; removed: string[]; changed: string[] };
  tasks: RecordDiff;
  agents: RecordDiff;
}

/** What changed from checkpoint `a` to checkpoint `b`; equal subtrees are skipped by hash. */
export function diffCheckpoints(store: Store, a: string | CheckpointManifest, b: string | CheckpointManifest, options: ResolveOptions = {}): CheckpointDiff {
  const from = getCheckpoint(store, a, options);
  const to = getCheckpoint(store, b, options);
  const view = ObjectStore.of(store).view();
  const memory = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
  diffTrees(view, from.memory.root, to.memory.root, (change) => {
    const path = segmentsPath(change.segments);
    if (isProjectRecord(path)) return; // held by checkpoints made before it left the scope: no state of the session (scope.ts)
    if (!change.before) memory.added.push(path);
    else if (!change.after) memory.removed.push(path);
    else memory.changed.push(path);
  });
  // By path: a large tree's diff comes bucket by bucket (by hash), and the text shows the first 100.
  for (const list of Object.values(memory)) list.sort(compareCodePoints);
  return {
    from: describe(store, from),
    to: describe(store, to),
    memory,
    tasks: diffRecords(view, from.tasks.root, to.tasks.root),
    agents: diffRecords(view, from.agents.root, to.agents.root),
  };
}

function describe(store: Store, manifest: CheckpointManifest): NamedCheckpoint {
  return { sessionId: manifest.session_id, sequence: manifest.sequence, id: manifest.id, name: manifest.name, session_name: sessionName(store, manifest.session_id) };
}

function diffRecords(view: ObjectView, a: Hash | null, b: Hash | null): RecordDiff {
  const diff: RecordDiff = { added: [], removed: [], changed: [] };
  diffTrees(view, a, b, (change) => {
    const id = change.segments.join("/");
    if (!change.before) diff.added.push(id);
    else if (!change.after) diff.removed.push(id);
    else diff.changed.push({ id, before: view.readValue(change.before), after: view.readValue(change.after) });
  });
  diff.added.sort(compareCodePoints);
  diff.removed.sort(compareCodePoints);
  diff.changed.sort((x, y) => compareCodePoints(x.id, y.id));
  return diff;
}

// ---------------------------------------------------------------------------------------------
// Restore

export interface RestoreOptions extends ResolveOptions {
  actor?: string;
  /** Compute the changes without writing them. */
  dryRun?: boolean;
}

export interface PathChanges {
  /** Paths written (added or changed), in tree order. */
  set: string[];
  /** Paths deleted. */
  deleted: string[];
}

export interface RestoreResult extends PathChanges {
  checkpoint: Located & { name: string };
  /** Store revision after the restore (unchanged for a dry run or when nothing differed). */
  revision: number;
}

/**
 * Puts the project memory back exactly as the checkpoint holds it, within the checkpoint's
 * scope: paths it does not hold are deleted, differing ones set. The current state is
 * hashed incrementally and diffed against the checkpoint's tree, so the cost follows the
 * size of the difference. One write batch, logged with actor `system:restore`.
 */
export async function restoreMemory(store: Store, ref: string | CheckpointManifest, options: RestoreOptions = {}): Promise<RestoreResult> {
  const result = await restoreCheckpoint(store, ref, { ...options, tasks: false, agents: false });
  return { checkpoint: result.checkpoint, set: result.memory.set, deleted: result.memory.deleted, revision: result.revision };
}

export interface RestoreCheckpointOptions extends RestoreOptions {
  /** Session whose tasks and agents are replaced; default the checkpoint's own (another one: a branch). */
  targetSessionId?: string;
  /** Restore the project memory (default true). */
  memory?: boolean;
  /** Restore /sessions/<target>/tasks/* exactly (default true). */
  tasks?: boolean;
  /** Restore /sessions/<target>/agents/* exactly, agent records and their `.context` (default true). */
  agents?: boolean;
}

export interface RestoreCheckpointResult {
  checkpoint: Located & { name: string };
  targetSessionId: string;
  memory: PathChanges;
  tasks: PathChanges;
  agents: PathChanges;
  revision: number;
}

/**
 * Restores a checkpoint: project memory, and the tasks and agent states of the target
 * session, each exactly (what the checkpoint lacks is deleted). Everything read is
 * verified first; one write batch, all or nothing.
 */
export async function restoreCheckpoint(store: Store, ref: string | CheckpointManifest, options: RestoreCheckpointOptions = {}): Promise<RestoreCheckpointResult> {
  if (!options.dryRun) assertWritable(store);
  // Loaded here, not with this module: a supervisor writing its checkpoints (every start) never runs it.
  const { refuseEscapes, writeProblem } = await import("./contained.js");
  let result!: RestoreCheckpointResult;
  const run = () => {
    const manifest = getCheckpoint(store, ref, options);
    const target = checkSessionId(options.targetSessionId ?? manifest.session_id);
    const withSession = options.tasks !== false || options.agents !== false;
    if (withSession) requireSession(store, target);
    const catalog = Catalog.of(store);
    const scope = normalizeScope(manifest.memory.scope);
    // The memory goes back where the target session keeps it: the root, or its own root in a git worktree.
    const mount = memoryMountOf(store, target);
    const key = baseKey(scope, mount);
    const view = ObjectStore.of(store).view({ overlay: true });
    const current = buildSnapshot(store, view, {
      ...(options.memory !== false ? { memory: { scope, base: catalog.base(key), mount } } : {}),
      ...(withSession ? { session: { id: target } } : {}),
    });
    // The differences first, the values they need then, read grouped by pack (a whole-tree
    // read in tree order would visit the packs in another order than they were written).
    const writes: Array<{ path: string; hash?: Hash; bytes?: Buffer }> = [];
    // Every path written is checked to stay inside the session (contained.ts): the cost follows the difference.
    const escapes: ContainmentProblem[] = [];
    const collect = (tree: "memory" | "tasks" | "agents", root: string, from: Hash | null, to: Hash | null): PathChanges => {
      const changes: PathChanges = { set: [], deleted: [] };
      diffTrees(view, from, to, (change) => {
        const relative = segmentsPath(change.segments);
        const path = `${root}${relative}`;
        // No live record mirrors a detached path; the project's record is this store's, not the checkpoint's (scope.ts).
        if (tree === "memory" && (isDetached(relative) || isProjectRecord(relative))) return;
        const escape = change.after ? writeProblem(tree, tree === "memory" ? "" : root, change.segments) : undefined;
        if (escape) escapes.push(escape);
        if (change.after) {
          writes.push({ path, hash: change.after });
          changes.set.push(path);
        } else {
          writes.push({ path });
          changes.deleted.push(path);
        }
      });
      return changes;
    };
    const none = (): PathChanges => ({ set: [], deleted: [] });
    const memory = options.memory !== false ? collect("memory", mount, current.memory!.root, manifest.memory.root) : none();
    const tasks = options.tasks !== false ? collect("tasks", tasksRoot(target), current.tasks!.root, manifest.tasks.root) : none();
    const agents = options.agents !== false ? collect("agents", agentsRoot(target), current.agents!.root, manifest.agents.root) : none();
    refuseEscapes(manifest, escapes);
    view.prefetchValues(writes.flatMap((write) => (write.hash ? [write.hash] : [])));
    for (const write of writes) if (write.hash) write.bytes = view.encodedValue(write.hash); // a value object goes back as it is
    let revision = current.revision;
    if (!options.dryRun && writes.length > 0) {
      revision = store.batchSync((batch) => {
        for (const write of writes) {
          if (write.bytes === undefined) batch.delete(write.path);
          else batch.setEncoded(write.path, write.bytes);
        }
      }, options.actor ?? ACTORS.restore).revision;
    }
    // The memory now equals the checkpoint's tree: the next checkpoint starts from it.
    if (!options.dryRun && options.memory !== false) catalog.setBase(key, { root: manifest.memory.root, revision, keys: manifest.memory.keys });
    result = { checkpoint: { sessionId: manifest.session_id, sequence: manifest.sequence, id: manifest.id, name: manifest.name }, targetSessionId: target, memory, tasks, agents, revision };
  };
  if (options.dryRun) run();
  else await store.transaction(run);
  return result;
}

// ---------------------------------------------------------------------------------------------
// Pin, delete, sweep

/** Sets or clears a checkpoint's pinned flag (retention never deletes pinned checkpoints). Re-signs the manifest. */
export async function pinCheckpoint(store: Store, ref: string, pinned: boolean, options: ResolveOptions & { actor?: string; /** Told whether it was pinned before. */ before?: (wasPinned: boolean) => void } = {}): Promise<CheckpointManifest> {
  assertWritable(store);
  let updated!: CheckpointManifest;
  await store.transaction(() => {
    const manifest = getCheckpoint(store, ref, options);
    const { hash: _old, ...unsigned } = manifest;
    updated = signManifest({ ...unsigned, pinned });
    options.before?.(manifest.pinned === true);
    if (manifest.pinned === pinned) return;
    store.batchSync((batch) => batch.set(manifestPath(manifest.session_id, manifest.sequence), updated as unknown as JsonValue), options.actor ?? ACTORS.checkpoint);
    Catalog.of(store).putCheckpoint(updated);
  });
  return updated;
}

export interface DeleteOptions extends ResolveOptions {
  /** Delete even if pinned, held or refused by `refuse`. */
  force?: boolean;
  /**
   * Throws when the checkpoint must stay for a reason this module cannot see: `apex checkpoint
   * delete` passes dependents.ts's refuseNeeded (branch and merge points). Runs inside the
   * delete's transaction, after the checkpoint is resolved; not with force.
   */
  refuse?: (located: Located) => void;
  actor?: string;
  /**
   * Writes what must be committed with the deletion, in its transaction, after its records are
   * removed (retention's audit event): a process killed right after the deletion leaves both or
   * neither.
   */
  record?: (deleted: NamedCheckpoint, about: { trigger: string | null }) => void;
}

const holds = new WeakMap<Store, Map<string, string[]>>();

/**
 * Marks a checkpoint as in use by this process (e.g. "restore" while `start --continue`
 * reads it) until the returned function is called: deleteCheckpoint refuses it and
 * retention keeps it, whatever the policy says.
 */
export function holdCheckpoint(store: Store, id: string, reason: string): () => void {
  let held = holds.get(store);
  if (!held) holds.set(store, (held = new Map()));
  held.set(id, [...(held.get(id) ?? []), reason]);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const reasons = held.get(id) ?? [];
    reasons.splice(reasons.indexOf(reason), 1);
    if (reasons.length === 0) held.delete(id);
  };
}

/** Checkpoints held in this process (id -> why), see holdCheckpoint. */
export function checkpointHolds(store: Store): ReadonlyMap<string, readonly string[]> {
  return holds.get(store) ?? new Map();
}

/**
 * Deletes a checkpoint's manifest and index records (objects stay until sweepUnreferenced), and
 * a LangGraph step's records with it (forgetLangGraphStep).
 * Its sequence number is not reused. Pinned and held (holdCheckpoint) checkpoints, and those
 * `refuse` refuses, are refused unless `force`.
 */
export async function deleteCheckpoint(store: Store, ref: string, options: DeleteOptions = {}): Promise<NamedCheckpoint> {
  assertWritable(store);
  // Loaded here, not with this module: a start (which writes a checkpoint and deletes none) does not load LangGraph's index.
  const { forgetLangGraphStep } = await import("./langgraph-index.js");
  const [{ MERGE_TRIGGER, recordDeletedMerge, recordDeletedPoint }, { graphNeeds }] = await Promise.all([import("./merge-base.js"), import("./dependents.js")]);
  let deleted!: NamedCheckpoint;
  await store.transaction(() => {
    const located = resolveCheckpoint(store, ref, options);
    const catalog = Catalog.of(store);
    let pinned = false;
    let trigger: string | null = null;
    try {
      const summary = catalog.summary(located.sessionId, located.sequence);
      pinned = summary?.pinned ?? false;
      trigger = typeof summary?.trigger === "string" ? summary.trigger : null;
      const manifest = readManifestRecord(store, located.sessionId, located.sequence);
      if (isRecord(manifest) && manifest.pinned === true) pinned = true;
    } catch {
      // an unreadable record cannot tell us it is pinned; deleting a damaged checkpoint is allowed
    }
    const held = checkpointHolds(store).get(located.id);
    // Its session as the other commands print it, by name or short id: a reference that resolves.
    const label = () => `${sessionLabel(store, located.sessionId)}/${checkpointName(located.sequence)}`;
    if (held && !options.force) {
      throw new ApexError("APEX_E_CONFLICT", `${label()} is in use (${held.join(", ")}); not deleting it.`, {
        hint: "Try again once it is done.",
      });
    }
    if (pinned && !options.force) {
      throw new ApexError("APEX_E_CONFLICT", `${label()} is pinned; not deleting it.`, {
        hint: "Unpin it first (`apex checkpoint unpin`) or delete with --force.",
      });
    }
    if (!options.force) options.refuse?.(located);
    // A LangGraph step's index, writes and head go with it (langgraph-index.ts), before its manifest, which names them.
    forgetLangGraphStep(store, located, options.actor ?? ACTORS.checkpoint);
    // A merge checkpoint's edge to what it merged in lives in its manifest: its session's record keeps it, for the next merge's base.
    if (trigger === MERGE_TRIGGER) recordDeletedMerge(store, located, options.actor ?? ACTORS.checkpoint);
    // One other sessions' edges name (a branch point, one merged in; only --force deletes those): its session's records keep
    // its id, the one a grant's ancestry follows such an edge under once it is gone (merge-base.ts DELETED_POINTS_FIELD).
    if (options.force && graphNeeds(store, located).some((reason) => /^(branch|merged into) /.test(reason))) recordDeletedPoint(store, located, options.actor ?? ACTORS.checkpoint);
    removeCheckpointRecords(store, located, options.actor ?? ACTORS.checkpoint);
    deleted = { ...located, name: checkpointName(located.sequence), session_name: sessionName(store, located.sessionId) };
    options.record?.(deleted, { trigger });
  });
  return deleted;
}

/** The audit event of a checkpoint deleted by `apex checkpoint delete`. */
export const DELETED_EVENT = "checkpoint.deleted";

/**
 * deleteCheckpoint's `record` for a deletion someone asked for (`apex checkpoint delete`, by a user
 * or an agent): a `checkpoint.deleted` event in the session's audit trail, by `actor`, written in
 * the deletion's transaction. The trail named the checkpoint as made and nothing said it was gone,
 * nor who removed it (retention's deletions were there: `retention.delete`).
 */
export function recordDeletion(store: Store, actor: string, forced: boolean): NonNullable<DeleteOptions["record"]> {
  return (deleted, { trigger }) => {
    store.batchSync((batch) => {
      appendEvent(batch, deleted.sessionId, DELETED_EVENT, actor, { checkpoint: deleted.id, name: deleted.name, sequence: deleted.sequence, trigger, forced });
    }, actor);
  };
}

export interface SweepOptions {
  dryRun?: boolean;
  /**
   * Sweep even though some kept checkpoint has a missing or corrupt tree node. What lies
   * below such a node cannot be seen and is swept. Default: refuse (repair first).
   */
  allowDamaged?: boolean;
  /** With dryRun: what the sweep would remove once these checkpoints are deleted (a cleanup's dry run). */
  without?: ReadonlyArray<{ sessionId: string; sequence: number }>;
}

export interface SweepResult {
  dryRun: boolean;
  /** Objects dropped, and the bytes they held. */
  removed: { values: number; trees: number; bytes: number };
  kept: { values: number; trees: number };
  /** Packs deleted, packs rewritten without their garbage, and the pack bytes that freed. */
  packs: { removed: number; rewritten: number; bytesFreed: number };
  /** Tree nodes of kept checkpoints that could not be read (only with allowDamaged). */
  damaged: Hash[];
}

/** Why a sweep did not run, as `session cleanup` and `session archive` report it (`sweep_error` in --json). */
export interface SweepFailure {
  code: string;
  message: string;
  /** null when the error has none: the key is there whatever the error, as in every error object of the output. */
  hint: string | null;
}

export function sweepFailure(error: ApexError): SweepFailure {
  return { code: error.code, message: error.message, hint: error.hint ?? null };
}

/**
 * Mark and sweep: deletes every value and tree node that no checkpoint (and no memory
 * base) references, then deletes packs left empty and rewrites packs that are mostly
 * garbage. Runs in one write transaction, so a checkpoint created concurrently cannot
 * come to rely on an object being swept.
 */
export async function sweepUnreferenced(store: Store, options: SweepOptions = {}): Promise<SweepResult> {
  if (!options.dryRun) assertWritable(store);
  let result!: SweepResult;
  const run = () => {
    const objects = ObjectStore.of(store);
    const view = objects.view({ fresh: true }); // every kept node read from disk: damage must show
    const marked = { values: new Set<Hash>(), trees: new Set<Hash>() };
    const damaged: Hash[] = [];
    visitReachable(view, liveRoots(store, options.dryRun ? options.without : undefined), {
      tree: (hash) => void marked.trees.add(hash),
      value: (hash) => void marked.values.add(hash),
      damaged: (hash) => void damaged.push(hash),
    });
    if (damaged.length > 0 && !options.allowDamaged) {
      throw new ApexError("APEX_E_INTEGRITY", `Not sweeping: ${damaged.length === 1 ? "1 tree node of kept checkpoints is" : `${damaged.length} tree nodes of kept checkpoints are`} damaged, so what they reference is unknown.`, {
        hint: "Run `apex session repair` first, or sweep with allowDamaged.",
        details: { damaged },
      });
    }
    const reclaimed = objects.reclaim((kind, hash) => (kind === "value" ? marked.values : marked.trees).has(hash), { dryRun: options.dryRun ?? false });
    const removed = { values: reclaimed.values, trees: reclaimed.trees, bytes: reclaimed.valueBytes + reclaimed.treeBytes };
    result = {
      dryRun: options.dryRun ?? false,
      removed,
      kept: { values: marked.values.size, trees: marked.trees.size - damaged.length },
      packs: { removed: reclaimed.packsRemoved, rewritten: reclaimed.packsRewritten, bytesFreed: reclaimed.bytesFreed },
      damaged,
    };
  };
  if (options.dryRun) run();
  else await store.transaction(run);
  return result;
}
