import type { JsonValue, Store } from "../../core/store/store.js";
import { shortSessionId } from "../../core/session/names.js";
import { Catalog, type CheckpointSummary, type Located } from "./catalog.js";
import { isRecord, manifestPath } from "./manifest.js";

/**
 * The checkpoint graph and the nearest common ancestor of two checkpoints.
 *
 * Edges: within a session, each checkpoint follows the one before it (sequence order, so a
 * checkpoint retention deleted does not cut the chain); a branch session starts from the
 * checkpoint its record names (`parent_checkpoint`: {id, session_id, sequence}); a merge
 * checkpoint also descends from the checkpoint it merged in (`data.merge.from`, its
 * `merge_parent`). Since a session's checkpoints form a line, the ancestors of a checkpoint
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
}

/** The checkpoint a branch session started from, from its record. */
export function branchPointOf(store: Store, sessionId: string): Point | undefined {
  const record = sessionRecord(store, sessionId);
  const parent = record?.parent_checkpoint;
  if (!isRecord(parent) || typeof parent.session_id !== "string" || !Number.isSafeInteger(parent.sequence)) return undefined;
  return { sessionId: parent.session_id, sequence: parent.sequence as number };
}

export function sessionRecord(store: Store, sessionId: string): Record<string, JsonValue> | undefined {
  for (const path of [`/sessions/${sessionId}`, `/sessions/history/${sessionId}`]) {
    try {
      const value = store.get(path);
      if (isRecord(value)) return value as Record<string, JsonValue>;
    } catch {
      // an undecodable record: no edge from it
    }
  }
  return undefined;
}

/** The checkpoints a session's merge checkpoints (up to `upTo`) merged in. */
export function mergedInto(store: Store, sessionId: string, upTo: number): Point[] {
  const points: Point[] = [];
  for (const summary of Catalog.of(store).summaries(sessionId)) {
    if (summary.sequence > upTo) break;
    if (summary.trigger !== MERGE_TRIGGER) continue;
    const from = mergeSourceOf(store, summary);
    if (from) points.push(from);
  }
  return points;
}

/** A branch session's name; null for an unnamed session or one without a record. */
export function sessionName(store: Store, id: string): string | null {
  const name = sessionRecord(store, id)?.name;
  return typeof name === "string" ? name : null;
}

/** How a session is printed for people: its name, else its short id. */
export function sessionLabel(store: Store, id: string): string {
  return sessionName(store, id) ?? shortSessionId(id);
}

export const MERGE_TRIGGER = "merge";
export const BRANCH_TRIGGER = "branch";

/** The checkpoint a merge checkpoint merged in (`data.merge.from`). */
export function mergeSourceOf(store: Store, summary: CheckpointSummary): (Point & { id?: string; name?: string }) | undefined {
  let manifest: JsonValue | undefined;
  try {
    manifest = store.get(manifestPath(summary.session_id, summary.sequence));
  } catch {
    return undefined;
  }
  const from = isRecord(manifest) && isRecord(manifest.data) && isRecord(manifest.data.merge) ? manifest.data.merge.from : undefined;
  if (!isRecord(from) || typeof from.session_id !== "string" || !Number.isSafeInteger(from.sequence)) return undefined;
  return { sessionId: from.session_id, sequence: from.sequence as number, ...(typeof from.id === "string" ? { id: from.id } : {}), ...(typeof from.name === "string" ? { name: from.name } : {}) };
}

/** Every ancestor of `point` (itself included), as session -> highest sequence. */
export function ancestryOf(store: Store, point: Point, memo: Map<string, Ancestry> = new Map()): Ancestry {
  const key = `${point.sessionId}\0${point.sequence}`;
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
    }
    for (const from of mergedInto(store, sessionId, sequence)) stack.push(from);
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

/** The nearest common ancestor of `ours` and `theirs` under the rule above. */
export function findMergeBase(store: Store, ours: Located, theirs: Located): MergeBase {
  if (ours.id === theirs.id) {
    const same = Catalog.of(store).summary(ours.sessionId, ours.sequence) ?? null;
    return { relation: "same", base: same, candidates: same ? [same] : [] };
  }
  const memo = new Map<string, Ancestry>();
  const a = ancestryOf(store, ours, memo);
  const b = ancestryOf(store, theirs, memo);
  if (contains(a, theirs)) {
    const base = Catalog.of(store).summary(theirs.sessionId, theirs.sequence) ?? null;
    return { relation: "up-to-date", base, candidates: base ? [base] : [] };
  }
  if (contains(b, ours)) {
    const base = Catalog.of(store).summary(ours.sessionId, ours.sequence) ?? null;
    return { relation: "fast-forward", base, candidates: base ? [base] : [] };
  }
  const candidates: CheckpointSummary[] = [];
  for (const [sessionId, sequence] of a) {
    const other = b.get(sessionId);
    if (other === undefined) continue;
    const found = existingAtOrBelow(store, sessionId, Math.min(sequence, other));
    if (found) candidates.push(found);
  }
  const maximal = candidates.filter(
    (candidate) =>
      !candidates.some(
        (other) => other !== candidate && contains(ancestryOf(store, { sessionId: other.session_id, sequence: other.sequence }, memo), { sessionId: candidate.session_id, sequence: candidate.sequence }),
      ),
  );
  maximal.sort((x, y) => (x.created_at < y.created_at ? 1 : x.created_at > y.created_at ? -1 : x.id < y.id ? 1 : x.id > y.id ? -1 : 0));
  return { relation: maximal.length > 0 ? "diverged" : "unrelated", base: maximal[0] ?? null, candidates: maximal };
}
