import type { JsonValue, Store } from "../../core/store/store.js";
import { sessionName, sessionRecord } from "./session-name.js";
import { Catalog, type CheckpointSummary, type Located } from "./catalog.js";
import { isRecord, manifestPath } from "./manifest.js";
import { ObjectStore } from "./engine/objects.js";

// Also here for the modules that import them from this one; the checkpoint code every start runs imports session-name.ts, not this module.
export { sessionLabel, sessionName, sessionRecord } from "./session-name.js";

/**
 * The checkpoint graph and the nearest common ancestor of two checkpoints.
 *
 * Edges: within a session, each checkpoint follows the one before it (sequence order, so a
 * checkpoint retention deleted does not cut the chain); a branch session starts from the
 * checkpoint its record names (`parent_checkpoint`: {id, session_id, sequence}); a merge
 * checkpoint also descends from the checkpoint it merged in (`data.merge.from`, its
 * `merge_parent`; its session's record keeps it too, `merges`, recordMerge, so that the edge
 * outlives the checkpoint, deleted with `checkpoint delete --force` or by a repair). Since a session's checkpoints form a line, the ancestors of a checkpoint
 * are, for each session, every checkpoint up to some sequence: an ancestry is a map
 * session -> highest sequence.
 *
 * The common ancestors of A and B are then, per session both reach, everything up to the
 * smaller of the two sequences; the candidates are those highest common points (the newest
 * checkpoint that still exists at or below it). Candidates that are ancestors of another
 * candidate are dropped; of the maximal ones that remain (several only in criss-cross
 * histories, where each side merged the other), the base is the one created last, ties broken
 * by the larger id, so the choice is deterministic. With several, session-merge.ts diffs against
 * a virtual ancestor built from them (merge.ts virtualAncestor), as git's recursive strategy does.
 */

export type Ancestry = Map<string, number>;

export interface Point {
  sessionId: string;
  sequence: number;
}

/** How two checkpoints relate. */
export type Relation = "same" | "up-to-date" | "fast-forward" | "diverged" | "unrelated";

export interface MergeBase {
  relation: Relation;
  /** The nearest common ancestor (null when unrelated). */
  base: CheckpointSummary | null;
  /** The maximal common ancestors it was chosen from (more than one: a criss-cross history). */
  candidates: CheckpointSummary[];
  /**
   * Common ancestors that would be candidates but are no longer in the store, with nothing that
   * recorded them (no branch or merge: deleted with `checkpoint delete --force` or by a repair, and
   * their branch's first checkpoint too): the base fell back from them to an older checkpoint, or to
   * none. Empty when nothing fell back.
   */
  lost: Point[];
}

/** The checkpoint a branch session started from, from its record. */
export function branchPointOf(store: Store, sessionId: string): Point | undefined {
  const record = sessionRecord(store, sessionId);
  const parent = record?.parent_checkpoint;
  if (!isRecord(parent) || typeof parent.session_id !== "string" || !Number.isSafeInteger(parent.sequence)) return undefined;
  return { sessionId: parent.session_id, sequence: parent.sequence as number };
}

export type MergeSource = Point & { id?: string; name?: string; recorded?: RecordedSource };

/**
 * The checkpoints a session's merge checkpoints (up to `upTo`) merged in: from their manifests,
 * and from its record (recordMerge) for those no longer in the store or whose manifest no longer
 * reads: a merge checkpoint deleted with `checkpoint delete --force`, or dropped by a repair, still
 * lends its ancestry, so a later merge finds the checkpoint it took in as the base, not an older
 * one where more paths conflict.
 */
export function mergedInto(store: Store, sessionId: string, upTo: number): MergeSource[] {
  const points: MergeSource[] = [];
  const catalog = Catalog.of(store);
  const recorded = recordedMergesOf(store, sessionId);
  for (const summary of catalog.summaries(sessionId)) {
    if (summary.sequence > upTo) break;
    if (summary.trigger !== MERGE_TRIGGER) continue;
    const from = mergeSourceOf(store, summary) ?? recorded.find((merge) => merge.id === summary.id)?.from;
    if (from) points.push(from);
  }
  for (const merge of deletedMergesOf(store, sessionId)) if (merge.sequence <= upTo) points.push(merge.from);
  return points;
}

/**
 * Where a session's record keeps its merge checkpoints' edges, written with each merge
 * (recordMerge): [{id, sequence, created_at, description, from}], `from` as `data.merge.from`
 * (the rest, for `session tree`). Kept there, not only in the merge checkpoint's manifest, so that
 * the edge outlives the checkpoint however it goes (`checkpoint delete --force`, a repair).
 */
export const MERGES_FIELD = "merges";

/**
 * Where an APEX that did not write MERGES_FIELD kept, in the same form, the edges of merge
 * checkpoints deleted with `checkpoint delete --force` (recordDeletedMerge): read as MERGES_FIELD is.
 */
export const DELETED_MERGES_FIELD = "deleted_merges";

/**
 * Where the edges of a session with no record are kept ({merges: [...]}, MERGES_FIELD's form): one
 * known by its checkpoints only (its record deleted by hand, or lost with a damaged store file) can
 * still be merged into, and its merge checkpoints' edges must outlive them as a record's do.
 */
export const recordlessMergesPath = (sessionId: string) => `/sessions/${sessionId}/merges`;

/**
 * Where a session's record keeps its checkpoints that edges of other sessions named (a branch
 * point, a checkpoint merged in) once deleted with `checkpoint delete --force`, or dropped by
 * `session repair` (pointsEdgesName), by recordDeletedPoint: [{id, sequence}], in its record, else
 * at recordlessMergesPath. Such an edge is kept by the other session's record, which says what its
 * bundle said: a grant's ancestry (sharing/archive.ts sessionAncestry) follows one to a deleted
 * checkpoint only under the id its own session kept here. Only those checkpoints, which only
 * --force and a repair delete: retention keeps them, and the list stays small.
 */
export const DELETED_POINTS_FIELD = "deleted_points";

export interface DeletedMerge {
  id: string;
  sequence: number;
  createdAt: string | null;
  description: string;
  from: MergeSource;
}

/** The merge checkpoints of `sessionId` as its record kept them (MERGES_FIELD, DELETED_MERGES_FIELD), or recordlessMergesPath, by id once; none for a record without them. */
export function recordedMergesOf(store: Store, sessionId: string): DeletedMerge[] {
  const merges: DeletedMerge[] = [];
  // The record's, then those kept while the session had none (recordlessMergesPath).
  for (const record of [sessionRecord(store, sessionId), recordlessMerges(store, sessionId)]) {
    for (const field of [MERGES_FIELD, DELETED_MERGES_FIELD]) {
      const kept = record?.[field];
      if (!Array.isArray(kept)) continue;
      for (const entry of kept) {
        if (!isRecord(entry) || typeof entry.id !== "string" || !Number.isSafeInteger(entry.sequence)) continue;
        const from = parseMergeSource(entry.from);
        const createdAt = typeof entry.created_at === "string" ? entry.created_at : null;
        if (from && !merges.some((merge) => merge.id === entry.id)) merges.push({ id: entry.id, sequence: entry.sequence as number, createdAt, description: typeof entry.description === "string" ? entry.description : "", from });
      }
    }
  }
  return merges;
}

/**
 * The merge checkpoints of `sessionId` no longer in the store, as its record kept them (an entry
 * whose sequence holds another checkpoint is not this session's, and is passed over).
 */
export function deletedMergesOf(store: Store, sessionId: string): DeletedMerge[] {
  const catalog = Catalog.of(store);
  return recordedMergesOf(store, sessionId).filter((merge) => !catalog.summary(sessionId, merge.sequence));
}

/**
 * Keeps the edge of merge checkpoint `located` (what it merged in, its `data.merge.from`) in its
 * session's record, where its branch point is kept too: written in the merge's transaction, so
 * that whatever removes the checkpoint later leaves the edge; for a session without a record, at
 * recordlessMergesPath.
 */
export function recordMerge(store: Store, located: Located, entry: { createdAt: string; description: string; from: JsonValue }, actor: string): void {
  writeMergeEntry(store, located, { id: located.id, sequence: located.sequence, created_at: entry.createdAt, description: entry.description, from: entry.from }, MERGES_FIELD, actor);
}

/**
 * Keeps what merge checkpoint `located` merged in in its session's record before it is deleted,
 * when the record does not have it yet (a merge made by an APEX that did not recordMerge): its
 * manifest, which held that edge, goes with it. Called in the deletion's transaction; nothing for a
 * checkpoint that merged nothing in.
 */
export function recordDeletedMerge(store: Store, located: Located, actor: string): void {
  if (recordedMergesOf(store, located.sessionId).some((merge) => merge.id === located.id)) return;
  let manifest: JsonValue | undefined;
  try {
    manifest = store.get(manifestPath(located.sessionId, located.sequence));
  } catch {
    return; // a damaged manifest records nothing to keep
  }
  const from = isRecord(manifest) && isRecord(manifest.data) && isRecord(manifest.data.merge) ? manifest.data.merge.from : undefined;
  if (!parseMergeSource(from)) return;
  const summary = Catalog.of(store).summary(located.sessionId, located.sequence);
  writeMergeEntry(store, located, { id: located.id, sequence: located.sequence, created_at: summary?.created_at ?? null, description: summary?.description ?? "", from: from! }, DELETED_MERGES_FIELD, actor);
}

/** Keeps `located`, a checkpoint other sessions' edges name, in its session's records as it is deleted (DELETED_POINTS_FIELD). */
export function recordDeletedPoint(store: Store, located: Located, actor: string): void {
  writeMergeEntry(store, located, { id: located.id, sequence: located.sequence }, DELETED_POINTS_FIELD, actor);
}

/**
 * Whether `sessionId`'s own records keep its checkpoint `id` at `sequence`, deleted since: a merge
 * checkpoint (recordedMergesOf), or one other sessions' edges named (DELETED_POINTS_FIELD). What a
 * grant's ancestry follows an edge to a deleted checkpoint under (sharing/archive.ts sessionAncestry).
 */
export function keptUnderId(store: Store, sessionId: string, sequence: number, id: string): boolean {
  if (recordedMergesOf(store, sessionId).some((merge) => merge.id === id && merge.sequence === sequence)) return true;
  return [sessionRecord(store, sessionId), recordlessMerges(store, sessionId)].some((record) => {
    const kept = record?.[DELETED_POINTS_FIELD];
    return Array.isArray(kept) && kept.some((entry) => isRecord(entry) && entry.id === id && entry.sequence === sequence);
  });
}

/**
 * Of `slots` (checkpoints a repair drops, with the ids their catalog summary and manifest give),
 * those an edge of another session names under one of those ids (a branch's `parent_checkpoint`,
 * what a merge took in), with that id: what recordDeletedPoint keeps, as `checkpoint delete
 * --force` keeps them, so that a grant's ancestry still follows the edge. Read before any of them
 * goes; a session whose records do not read names nothing (the repair may be removing them).
 */
export function pointsEdgesName(store: Store, slots: ReadonlyArray<Point & { ids: ReadonlyArray<string | undefined> }>): Located[] {
  if (slots.length === 0) return [];
  const named = new Set<string>();
  const name = (point: Point, id: unknown) => {
    if (typeof id === "string") named.add(`${point.sessionId}\u0000${point.sequence}\u0000${id}`);
  };
  // Keys only, as dependents.ts knownSessions reads them: a damaged record must not stop the repair.
  const sessions = new Set<string>();
  for (const path of store.keysBelow("/sessions")) {
    const segments = path.slice("/sessions/".length).split("/");
    if (segments.length === 1) sessions.add(segments[0]!);
    else if (segments.length === 2 && segments[0] === "history") sessions.add(segments[1]!);
  }
  try {
    for (const { sessionId } of Catalog.of(store).counters()) sessions.add(sessionId);
  } catch {
    // a counter that does not read: its session is known by its record, if by anything
  }
  for (const sessionId of sessions) {
    try {
      const branch = branchPointOf(store, sessionId);
      const parent = sessionRecord(store, sessionId)?.parent_checkpoint;
      if (branch && isRecord(parent)) name(branch, parent.id);
      for (const from of mergedInto(store, sessionId, Number.MAX_SAFE_INTEGER)) name(from, from.id);
    } catch {
      // records that do not read: no edge from them
    }
  }
  return slots.flatMap((slot) => {
    const id = [...new Set(slot.ids)].find((candidate) => candidate !== undefined && named.has(`${slot.sessionId}\u0000${slot.sequence}\u0000${candidate}`));
    return id === undefined ? [] : [{ sessionId: slot.sessionId, sequence: slot.sequence, id }];
  });
}

function writeMergeEntry(store: Store, located: Located, entry: { [key: string]: JsonValue }, field: string, actor: string): void {
  for (const path of [`/sessions/${located.sessionId}`, `/sessions/history/${located.sessionId}`]) {
    let record: JsonValue | undefined;
    try {
      record = store.get(path);
    } catch {
      continue;
    }
    if (!isRecord(record)) continue;
    addEntry(store, path, record, located, entry, field, actor);
    return;
  }
  // No record: the edge goes beside the session's checkpoints (recordlessMergesPath), not nowhere.
  const path = recordlessMergesPath(located.sessionId);
  addEntry(store, path, recordlessMerges(store, located.sessionId) ?? {}, located, entry, field, actor);
}

function addEntry(store: Store, path: string, record: { [key: string]: JsonValue }, located: Located, entry: { [key: string]: JsonValue }, field: string, actor: string): void {
  const kept = Array.isArray(record[field]) ? (record[field] as JsonValue[]) : [];
  if (kept.some((other) => isRecord(other) && other.id === located.id)) return;
  store.batchSync((batch) => batch.set(path, { ...record, [field]: [...kept, entry] }), actor);
}

/** What recordlessMergesPath holds; undefined when nothing (or nothing that decodes). */
function recordlessMerges(store: Store, sessionId: string): { [key: string]: JsonValue } | undefined {
  try {
    const value = store.get(recordlessMergesPath(sessionId));
    return isRecord(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

export const MERGE_TRIGGER = "merge";
export const BRANCH_TRIGGER = "branch";

/**
 * What a merge recorded of the checkpoint it merged in, beyond where it is: enough to stand in
 * for it as a merge base once its session was archived (its trees' roots, which sweeps keep
 * alive, refs.ts liveRoots; its ancestry, session -> highest sequence). Merges made before
 * APEX recorded these have none.
 */
export interface RecordedSource {
  memoryRoot: string | null;
  tasksRoot: string | null;
  createdAt: string;
  sessionName: string | null;
  ancestry: Ancestry;
}

/** The checkpoint a merge checkpoint merged in (`data.merge.from`). */
export function mergeSourceOf(store: Store, summary: CheckpointSummary): MergeSource | undefined {
  let manifest: JsonValue | undefined;
  try {
    manifest = store.get(manifestPath(summary.session_id, summary.sequence));
  } catch {
    return undefined;
  }
  return parseMergeSource(isRecord(manifest) && isRecord(manifest.data) && isRecord(manifest.data.merge) ? manifest.data.merge.from : undefined);
}

function parseMergeSource(from: JsonValue | undefined): MergeSource | undefined {
  if (!isRecord(from) || typeof from.session_id !== "string" || !Number.isSafeInteger(from.sequence)) return undefined;
  const recorded = recordedSourceOf(from);
  return {
    sessionId: from.session_id,
    sequence: from.sequence as number,
    ...(typeof from.id === "string" ? { id: from.id } : {}),
    ...(typeof from.name === "string" ? { name: from.name } : {}),
    ...(recorded ? { recorded } : {}),
  };
}

function recordedSourceOf(from: Record<string, JsonValue>): RecordedSource | undefined {
  const root = (value: JsonValue | undefined) => typeof value === "string" || value === null;
  if (!root(from.memory_root) || !root(from.tasks_root) || typeof from.created_at !== "string" || !isRecord(from.ancestry)) return undefined;
  const ancestry: Ancestry = new Map();
  for (const [sessionId, sequence] of Object.entries(from.ancestry)) {
    if (!Number.isSafeInteger(sequence)) return undefined;
    ancestry.set(sessionId, sequence as number);
  }
  return {
    memoryRoot: from.memory_root as string | null,
    tasksRoot: from.tasks_root as string | null,
    createdAt: from.created_at,
    sessionName: typeof from.session_name === "string" ? from.session_name : null,
    ancestry,
  };
}

/**
 * A checkpoint no longer in the store, standing in for it as what recorded it holds it: a merge that
 * merged it in (once its session was archived, or it was deleted), or a branch made from it (`by`
 * "branch": the branch point, deleted with `checkpoint delete --force`; the branch's first
 * checkpoint records it, and holds its very trees).
 */
export type RecordedSummary = CheckpointSummary & { recorded: true; by: "merge" | "branch"; session_name: string | null; ancestry: Ancestry };

/**
 * The checkpoints merges in `sessions` (each up to its sequence) merged in that are no longer in
 * the store (their sessions archived, or they were deleted with `checkpoint delete --force`), as
 * those merges recorded them, and the branch points of `sessions` deleted so, as their branches
 * recorded them: key `session\0sequence`.
 */
function recordedSources(store: Store, sessions: Iterable<[string, number]>): Map<string, RecordedSummary> {
  const found = new Map<string, RecordedSummary>();
  const objects = ObjectStore.of(store);
  for (const [sessionId, upTo] of sessions) {
    const branch = recordedBranchPoint(store, sessionId);
    if (branch) found.set(pointKey({ sessionId: branch.session_id, sequence: branch.sequence }), branch);
    for (const from of mergedInto(store, sessionId, upTo)) {
      if (!from.recorded || !from.id || Catalog.of(store).summary(from.sessionId, from.sequence)) continue;
      const { recorded } = from;
      // Trees swept by an APEX that did not keep them: that checkpoint cannot be the base (an older one is).
      if ([recorded.memoryRoot, recorded.tasksRoot].some((root) => root !== null && !objects.has("tree", root))) continue;
      found.set(pointKey(from), {
        ...absentSummary({ id: from.id, sessionId: from.sessionId, sequence: from.sequence, name: from.name, createdAt: recorded.createdAt, trigger: "archived", memoryRoot: recorded.memoryRoot, tasksRoot: recorded.tasksRoot }),
        recorded: true,
        by: "merge",
        session_name: recorded.sessionName,
        ancestry: recorded.ancestry,
      });
    }
  }
  return found;
}

/**
 * The checkpoint branch session `sessionId` was branched from, when it is no longer in the store
 * (deleted with `checkpoint delete --force`), and what the branch's first checkpoint recorded of
 * it (`data.branch.from`) with that checkpoint's summary. Undefined when the branch point is still
 * there, or nothing records it (the branch's first checkpoint deleted too).
 */
function deletedBranchPoint(store: Store, sessionId: string): { point: Point; from: Record<string, JsonValue>; summary: CheckpointSummary } | undefined {
  const point = branchPointOf(store, sessionId);
  const catalog = Catalog.of(store);
  if (!point || catalog.summary(point.sessionId, point.sequence)) return undefined;
  const parent = sessionRecord(store, sessionId)?.parent_checkpoint;
  const parentId = isRecord(parent) && typeof parent.id === "string" ? parent.id : undefined;
  for (const summary of catalog.summaries(sessionId)) {
    if (summary.trigger !== BRANCH_TRIGGER) continue;
    let manifest: JsonValue | undefined;
    try {
      manifest = store.get(manifestPath(sessionId, summary.sequence));
    } catch {
      return undefined;
    }
    const from = isRecord(manifest) && isRecord(manifest.data) && isRecord(manifest.data.branch) ? manifest.data.branch.from : undefined;
    if (!isRecord(from) || from.session_id !== point.sessionId || from.sequence !== point.sequence || typeof from.id !== "string" || (parentId !== undefined && from.id !== parentId)) return undefined;
    return { point, from: from as Record<string, JsonValue>, summary };
  }
  return undefined;
}

/**
 * A deleted branch point (deletedBranchPoint) standing in as its branch recorded it: its trees are
 * the branch's first checkpoint's own (a branch copies nothing), and a branch made by this APEX
 * also records the branch point's time and ancestry; one made before has them taken from the
 * branch checkpoint and from the store. Undefined when nothing stands in for it (as deletedBranchPoint),
 * or its trees were swept: the merge base falls back from it, and `session tree` says so.
 */
export function recordedBranchPoint(store: Store, sessionId: string): RecordedSummary | undefined {
  const found = deletedBranchPoint(store, sessionId);
  if (!found) return undefined;
  const { point, from, summary } = found;
  const recorded = recordedSourceOf(from);
  const objects = ObjectStore.of(store);
  const roots = recorded ? [recorded.memoryRoot, recorded.tasksRoot] : [summary.memory_root, summary.tasks_root];
  if (roots.some((root) => root !== null && !objects.has("tree", root))) return undefined;
  return {
    ...absentSummary({
      id: from.id as string,
      ...point,
      name: typeof from.name === "string" ? from.name : undefined,
      createdAt: recorded?.createdAt ?? summary.created_at,
      trigger: "deleted",
      memoryRoot: recorded ? recorded.memoryRoot : summary.memory_root,
      tasksRoot: recorded ? recorded.tasksRoot : summary.tasks_root,
    }),
    recorded: true,
    by: "branch",
    session_name: sessionName(store, point.sessionId),
    ancestry: recorded?.ancestry ?? ancestryOf(store, point),
  };
}

/**
 * The summary of a checkpoint no longer in the store, from what recorded it (a merge, a branch):
 * its place, name (`checkpoint-NNN` when none was recorded), time and trees; no manifest, counts
 * or pin to tell.
 */
export function absentSummary(of: Point & { id: string; name?: string | undefined; createdAt: string; trigger: string; memoryRoot: string | null; tasksRoot: string | null }): CheckpointSummary {
  return {
    id: of.id,
    session_id: of.sessionId,
    sequence: of.sequence,
    name: of.name ?? `checkpoint-${String(of.sequence).padStart(3, "0")}`,
    parent: null,
    created_at: of.createdAt,
    description: "",
    pinned: false,
    revision: 0,
    trigger: of.trigger,
    memory_keys: 0,
    task_count: 0,
    agent_count: 0,
    memory_root: of.memoryRoot,
    tasks_root: of.tasksRoot,
    agents_root: null,
    manifest_hash: "",
  };
}

/** Whether a merge base stands for a checkpoint no longer in the store (read from what its merge recorded). */
export function isRecordedSummary(summary: CheckpointSummary): summary is RecordedSummary {
  return (summary as Partial<RecordedSummary>).recorded === true;
}

/**
 * Every ancestor of `point` (itself included), as session -> highest sequence. A checkpoint merged
 * in whose session was archived brings the ancestry its merge recorded (its own edges left the
 * store with it); so does a branch point deleted with `checkpoint delete --force`, the ancestry its
 * branch recorded.
 */
export function ancestryOf(store: Store, point: Point, memo: Map<string, Ancestry> = new Map()): Ancestry {
  const key = pointKey(point);
  const known = memo.get(key);
  if (known) return known;
  const result: Ancestry = new Map();
  const stack: Point[] = [point];
  while (stack.length > 0) {
    const { sessionId, sequence } = stack.pop()!;
    if ((result.get(sessionId) ?? 0) >= sequence) continue;
    const scannedUpTo = result.get(sessionId) ?? 0;
    result.set(sessionId, sequence);
    if (scannedUpTo === 0) {
      const branch = branchPointOf(store, sessionId);
      if (branch) stack.push(branch);
      // A branch point deleted since: its own edges (a merge checkpoint's to what it merged in) went with it; the branch recorded them.
      const deleted = branch && deletedBranchPoint(store, sessionId);
      const recorded = deleted ? recordedSourceOf(deleted.from) : undefined;
      if (recorded) for (const [ancestor, upTo] of recorded.ancestry) stack.push({ sessionId: ancestor, sequence: upTo });
    }
    for (const from of mergedInto(store, sessionId, sequence)) {
      stack.push(from);
      if (!from.recorded || sessionRecord(store, from.sessionId)) continue;
      for (const [ancestor, upTo] of from.recorded.ancestry) stack.push({ sessionId: ancestor, sequence: upTo });
    }
  }
  memo.set(key, result);
  return result;
}

function contains(ancestry: Ancestry, point: Point): boolean {
  return (ancestry.get(point.sessionId) ?? 0) >= point.sequence;
}

/** The newest checkpoint of `sessionId` at or below `sequence` that still exists. */
function existingAtOrBelow(store: Store, sessionId: string, sequence: number): CheckpointSummary | undefined {
  const catalog = Catalog.of(store);
  const exact = catalog.summary(sessionId, sequence);
  if (exact) return exact;
  for (const summary of catalog.summaries(sessionId, { reverse: true })) if (summary.sequence <= sequence) return summary;
  return undefined;
}

function pointKey(point: Point): string {
  return `${point.sessionId}\0${point.sequence}`;
}

/**
 * The nearest common ancestor of `ours` and `theirs` under the rule above. A common ancestor whose
 * session was archived is the checkpoint as the merge that merged it in recorded it (a
 * RecordedSummary; `known`: those already found, for a virtual ancestor's own merges).
 */
export function findMergeBase(store: Store, ours: Located, theirs: Located, known: Iterable<CheckpointSummary> = []): MergeBase {
  const recorded = new Map<string, RecordedSummary>();
  const memo = new Map<string, Ancestry>();
  const remember = (summary: RecordedSummary) => {
    const key = pointKey({ sessionId: summary.session_id, sequence: summary.sequence });
    if (recorded.has(key)) return;
    recorded.set(key, summary);
    memo.set(key, summary.ancestry);
  };
  for (const summary of known) if (isRecordedSummary(summary)) remember(summary);
  const summaryAt = (point: Point): CheckpointSummary | null => Catalog.of(store).summary(point.sessionId, point.sequence) ?? recorded.get(pointKey(point)) ?? null;
  if (ours.id === theirs.id) {
    const same = summaryAt(ours);
    return { relation: "same", base: same, candidates: same ? [same] : [], lost: [] };
  }
  const a = ancestryOf(store, ours, memo);
  const b = ancestryOf(store, theirs, memo);
  // A checkpoint merged in that is no longer in the store: the merges that merged it in recorded it.
  let loaded = false;
  const loadRecorded = () => {
    if (loaded) return;
    loaded = true;
    for (const summary of recordedSources(store, [...a, ...b]).values()) remember(summary);
  };
  // A session in either history that is no longer in the store (archived).
  if ([...a.keys(), ...b.keys()].some((sessionId) => !sessionRecord(store, sessionId))) loadRecorded();
  if (contains(a, theirs)) {
    const base = summaryAt(theirs);
    return { relation: "up-to-date", base, candidates: base ? [base] : [], lost: [] };
  }
  if (contains(b, ours)) {
    const base = summaryAt(ours);
    return { relation: "fast-forward", base, candidates: base ? [base] : [], lost: [] };
  }
  const candidates: CheckpointSummary[] = [];
  // Common points whose checkpoint nothing stands in for: the candidate of their session is an older one, or none.
  const deleted: Point[] = [];
  for (const [sessionId, sequence] of a) {
    const other = b.get(sessionId);
    if (other === undefined) continue;
    const at = Math.min(sequence, other);
    // Deleted (`checkpoint delete --force`, repair): as a branch or merge recorded it, else the newest older one.
    if (!Catalog.of(store).summary(sessionId, at)) loadRecorded();
    const exact = summaryAt({ sessionId, sequence: at });
    if (!exact) deleted.push({ sessionId, sequence: at });
    const found = exact ?? newer(existingAtOrBelow(store, sessionId, at), recordedAtOrBelow(recorded, sessionId, at));
    if (found) candidates.push(found);
  }
  const ancestryOfCandidate = (candidate: CheckpointSummary) => ancestryOf(store, { sessionId: candidate.session_id, sequence: candidate.sequence }, memo);
  const maximal = candidates.filter(
    (candidate) => !candidates.some((other) => other !== candidate && contains(ancestryOfCandidate(other), { sessionId: candidate.session_id, sequence: candidate.sequence })),
  );
  maximal.sort((x, y) => (x.created_at < y.created_at ? 1 : x.created_at > y.created_at ? -1 : x.id < y.id ? 1 : x.id > y.id ? -1 : 0));
  // A deleted point another candidate descends from was no nearer base: only those none does made the base fall back.
  const lost = deleted.filter((point) => !candidates.some((candidate) => contains(ancestryOfCandidate(candidate), point)));
  return { relation: maximal.length > 0 ? "diverged" : "unrelated", base: maximal[0] ?? null, candidates: maximal, lost };
}

function newer(x: CheckpointSummary | undefined, y: CheckpointSummary | undefined): CheckpointSummary | undefined {
  if (!x || !y) return x ?? y;
  return y.sequence > x.sequence ? y : x;
}

/** The newest checkpoint of `sessionId` at or below `sequence` that a merge recorded (no longer in the store). */
function recordedAtOrBelow(recorded: ReadonlyMap<string, RecordedSummary>, sessionId: string, sequence: number): RecordedSummary | undefined {
  let best: RecordedSummary | undefined;
  for (const summary of recorded.values()) {
    if (summary.session_id !== sessionId || summary.sequence > sequence) continue;
    if (!best || summary.sequence > best.sequence) best = summary;
  }
  return best;
}
