import { canonicalJson, decodeValueObject, sha256, walkTree, type Hash, type ObjectView } from "./engine/objects.js";
import type { Store } from "../../core/store/store.js";
import { encodedByPath } from "../../core/store/port.js";
import { isEncodedValue } from "../value-codec.js";
import { checkpointName, type CheckpointManifest } from "./manifest.js";
import { inScope, isDetached, keysInScope, segmentsPath, type MemoryScope } from "./scope.js";

/**
 * Live memory records have no hash of their own, so a damaged byte in one can read back as a
 * different, valid value. But every write is logged: a record that no write touched since the
 * latest verifying checkpoint must still be what that checkpoint holds. This finds records
 * that differ from it, are gone, or appeared, with no logged change, and gives repair the
 * checkpoint's value to put back.
 */

export interface LiveRecordFinding {
  kind: "record-damaged" | "record-missing" | "record-unlogged";
  path: string;
  /** The checkpoint's value object for the path (absent for record-unlogged). */
  hash?: Hash;
  /** "<session>/checkpoint-007". */
  checkpoint: string;
  /** The record no longer decodes: repair puts the checkpoint's value back. */
  restorable?: boolean;
}

/**
 * What the revision log says about the writes after each of several revisions (the checkpoints
 * the live memories are compared with), read once from the earliest of them: the project's
 * memory and each worktree session's own are compared with different checkpoints, and a log
 * read again for each would cost as many passes over it.
 */
export interface LoggedChanges {
  /** Each path written after the earliest revision asked for, with the last revision that wrote it. */
  last: Map<string, number>;
  /** The revisions asked for that the log reaches back to: the store's latest, or one whose next revision it holds. */
  complete: Set<number>;
}

export function loggedChanges(store: Store, revisions: readonly number[]): LoggedChanges {
  const last = new Map<string, number>();
  const complete = new Set<number>();
  if (revisions.length === 0) return { last, complete };
  const latest = store.revision();
  // The revision just after each one asked for: the log must hold it, else it was trimmed there (or has a hole).
  const next = new Map<number, number[]>();
  for (const revision of revisions) {
    if (latest <= revision) complete.add(revision);
    else next.set(revision + 1, [...(next.get(revision + 1) ?? []), revision]);
  }
  for (const change of store.changesSince(Math.min(...revisions))) {
    last.set(change.path, change.revision);
    for (const revision of next.get(change.revision) ?? []) complete.add(revision);
  }
  return { last, complete };
}

/**
 * Compares unchanged live records with `manifest` (the latest verifying checkpoint of that
 * memory); undefined when the revision log cannot tell what changed since. `mount`: where that
 * memory is in the keyspace, "" for the project's (the root), `/sessions/<sid>/memory` for a
 * worktree session's own (core/session/records.ts: memoryRootOf), whose checkpoints hold its
 * paths as its agents name them. Findings name the record's keyspace path, which repair writes.
 */
export function checkLiveRecords(
  store: Store,
  view: ObjectView,
  manifest: CheckpointManifest,
  undecodable: ReadonlySet<string>,
  mount = "",
  logged: LoggedChanges = loggedChanges(store, [manifest.revision]),
): LiveRecordFinding[] | undefined {
  // The log must reach back to the checkpoint; otherwise nothing can be said.
  if (!logged.complete.has(manifest.revision)) return undefined;
  const changed = (path: string) => (logged.last.get(path) ?? 0) > manifest.revision;
  const label = `${manifest.session_id}/${checkpointName(manifest.sequence)}`;
  const scope = manifest.memory.scope;
  const findings: LiveRecordFinding[] = [];
  const inTree = new Set<string>();
  // The records to compare, RECORDS_AT_ONCE at a time: read together where the backend can
  // (getEncodedMany: PostgreSQL, where a round trip each made 30k of a validate's reads for 30k memory keys).
  let pending: Array<{ path: string; hash: Hash; undecodable: boolean }> = [];
  const compare = () => {
    const reads = pending.filter((entry) => !entry.undecodable).map((entry) => entry.path);
    const records = readMany(store, reads);
    for (const { path, hash, undecodable: damaged } of pending) {
      if (damaged) {
        findings.push({ kind: "record-damaged", path, hash, checkpoint: label, restorable: true });
        continue;
      }
      const bytes = records?.has(path) ? records.get(path) : store.getEncoded(path);
      if (bytes === undefined) findings.push({ kind: "record-missing", path, hash, checkpoint: label });
      else if (sha256(bytes) !== hash && !sameLegacyValue(view, hash, store, path)) findings.push({ kind: "record-damaged", path, hash, checkpoint: label });
    }
    pending = [];
  };
  for (const { segments, hash } of walkTree(view, manifest.memory.root)) {
    const relative = segmentsPath(segments);
    const path = `${mount}${relative}`;
    inTree.add(path);
    if (changed(path) || !inScope(scope, relative) || isDetached(relative)) continue; // detached: no live record (scope.ts)
    pending.push({ path, hash, undecodable: undecodable.has(path) });
    if (pending.length >= RECORDS_AT_ONCE) compare();
  }
  compare();
  for (const path of liveKeys(store, scope, mount)) {
    if (!inTree.has(path) && !changed(path)) findings.push({ kind: "record-unlogged", path, checkpoint: label });
  }
  return findings;
}

/** Records read with one getEncodedMany. */
export const RECORDS_AT_ONCE = 2000;

/** The records at `paths` by path, where the backend reads many at once; undefined where it does not, or the read fails (each is then read on its own, and fails on its own). */
export function readMany(store: Store, paths: readonly string[]): Map<string, Buffer | undefined> | undefined {
  if (!store.getEncodedMany || paths.length === 0) return undefined;
  try {
    return encodedByPath(store, paths);
  } catch {
    return undefined;
  }
}

/** The keyspace paths of a memory's records in scope: the project's at the root, a worktree session's below its own root (as snapshot.ts hashes them). */
function* liveKeys(store: Store, scope: MemoryScope, mount: string): Iterable<string> {
  if (mount === "") {
    yield* keysInScope(store, scope);
    return;
  }
  for (const key of store.keysBelow(mount)) if (inScope(scope, key.slice(mount.length))) yield key;
}

/** A value object written before the value encoding (canonical JSON text) holds the record's value in another form. */
function sameLegacyValue(view: ObjectView, hash: Hash, store: Store, path: string): boolean {
  try {
    const bytes = view.valueBytes(hash);
    if (isEncodedValue(bytes)) return false;
    return canonicalJson(decodeValueObject(bytes)) === canonicalJson(store.get(path));
  } catch {
    return false;
  }
}
