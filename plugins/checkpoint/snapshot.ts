import { ApexError, isApexError } from "../../core/errors.js";
import { decodeValue } from "../value-codec.js";
import { ChangeSet, EncodedValue, canonicalJson, isObjectDamage, updateTree, type Hash, type ObjectView } from "./engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import type { MemoryBase } from "./catalog.js";
import { agentsRoot, tasksRoot } from "./manifest.js";
import { inScope, keysInScope, pathSegments, segmentsPath, type MemoryScope } from "./scope.js";

/**
 * Hashes the store's current state into trees: the project memory of a scope and,
 * optionally, one session's tasks and agent states. Starts from earlier trees of the same
 * data ("bases") and applies only the paths the revision log says changed since; without a
 * usable base (none yet, a gap in the log, a damaged base node) it builds from scratch.
 */

/** Session trees of an earlier checkpoint, with the revision they match. */
export interface SessionBase {
  revision: number;
  tasks: { root: Hash | null; count: number };
  agents: { root: Hash | null; count: number };
}

export interface TreeResult {
  root: Hash | null;
  count: number;
  /** Paths re-read from the store (all of them for a full build). */
  changed: number;
  full: boolean;
}

export interface Snapshot {
  revision: number;
  memory?: TreeResult;
  tasks?: TreeResult;
  agents?: TreeResult;
}

export interface SnapshotOptions {
  /** Hash the project memory of this scope; `mount`: below this keyspace root (a worktree session's own memory). */
  memory?: { scope: MemoryScope; base?: MemoryBase | undefined; mount?: string | undefined };
  /** Hash this session's tasks and agent states. */
  session?: { id: string; base?: SessionBase | undefined };
  /**
   * Leave out records that cannot be decoded or are not JSON instead of failing. For trees
   * used only as a source of intact objects (repair, forced recovery), never for checkpoints.
   */
  skipUnreadable?: boolean;
}

/** Beyond this many log records between two bases, session trees are rebuilt instead (they are small). */
const MAX_SESSION_LOG_SCAN = 100_000;

export function buildSnapshot(store: Store, view: ObjectView, options: SnapshotOptions): Snapshot {
  const revision = store.revision();
  const scope = options.memory?.scope;
  const mount = options.memory?.mount ?? "";
  const memoryPrefix = `${mount}/`;
  const sessionId = options.session?.id;
  let memoryBase = options.memory?.base && options.memory.base.revision <= revision ? options.memory.base : undefined;
  let sessionBase = options.session?.base && options.session.base.revision <= revision ? options.session.base : undefined;
  if (memoryBase && sessionBase && memoryBase.revision - sessionBase.revision > MAX_SESSION_LOG_SCAN) sessionBase = undefined;

  const memoryChanges = new ChangeSet();
  const taskChanges = new ChangeSet();
  const agentChanges = new ChangeSet();
  const tasksPrefix = sessionId ? `${tasksRoot(sessionId)}/` : undefined;
  const agentsPrefix = sessionId ? `${agentsRoot(sessionId)}/` : undefined;

  // The changed paths, to be read in one go where the backend can (prefetchRecords).
  const collect = store.getEncodedMany !== undefined;
  const memoryPaths: string[] = [];
  const sessionPaths: string[] = [];
  const bases = [memoryBase?.revision, sessionBase?.revision].filter((value): value is number => value !== undefined);
  if (bases.length > 0) {
    const from = Math.min(...bases);
    let expected = from + 1;
    let complete = true;
    for (const change of store.changesSince(from)) {
      if (change.revision !== expected) {
        complete = false; // the log was trimmed or has a hole: changes cannot be trusted
        break;
      }
      expected += 1;
      const path = change.path;
      if (memoryBase && change.revision > memoryBase.revision && (mount === "" ? inScope(scope!, path) : path.startsWith(memoryPrefix) && inScope(scope!, path.slice(mount.length)))) {
        memoryChanges.add(pathSegments(mount === "" ? path : path.slice(mount.length)));
        if (collect) memoryPaths.push(path);
      } else if (sessionBase && change.revision > sessionBase.revision) {
        if (tasksPrefix && path.startsWith(tasksPrefix)) {
          taskChanges.add(pathSegments(path.slice(tasksPrefix.length - 1)));
          if (collect) sessionPaths.push(path);
        } else if (agentsPrefix && path.startsWith(agentsPrefix)) {
          agentChanges.add(pathSegments(path.slice(agentsPrefix.length - 1)));
          if (collect) sessionPaths.push(path);
        }
      }
    }
    if (complete && expected <= revision) complete = false;
    if (!complete) {
      memoryBase = undefined;
      sessionBase = undefined;
    }
  }

  const snapshot: Snapshot = { revision };
  const prefetched = prefetchRecords(store, memoryBase || sessionBase ? [...memoryPaths, ...sessionPaths] : []);
  if (scope) {
    const label = (segments: readonly string[]) => `${mount}${segmentsPath(segments)}`;
    // A full build reads every record: those read ahead with the keys (prefetchRecords) instead of a round trip each.
    let whole: ReadonlyMap<string, Buffer | undefined> | undefined;
    const readMemory = (segments: readonly string[]) => readRecord(store, label(segments), options.skipUnreadable, whole ?? prefetched);
    const base = memoryBase && { root: memoryBase.root, count: memoryBase.keys };
    snapshot.memory = buildTree(view, base, memoryChanges, readMemory, label, () => {
      const all = new ChangeSet();
      const paths: string[] | undefined = collect ? [] : undefined;
      if (mount === "")
        for (const key of keysInScope(store, scope)) {
          all.add(pathSegments(key));
          paths?.push(key);
        }
      else
        for (const key of store.keysBelow(mount)) {
          const relative = key.slice(mount.length);
          if (!inScope(scope, relative)) continue;
          all.add(pathSegments(relative));
          paths?.push(key);
        }
      whole = paths && prefetchRecords(store, paths);
      return all;
    });
  }
  if (sessionId) {
    const skip = options.skipUnreadable ?? false;
    snapshot.tasks = buildMountTree(store, view, tasksRoot(sessionId), sessionBase?.tasks, taskChanges, skip, prefetched);
    snapshot.agents = buildMountTree(store, view, agentsRoot(sessionId), sessionBase?.agents, agentChanges, skip, prefetched);
  }
  return snapshot;
}

/** A tree of the paths below `mount`, keyed relative to it. */
function buildMountTree(
  store: Store,
  view: ObjectView,
  mount: string,
  base: { root: Hash | null; count: number } | undefined,
  changes: ChangeSet,
  skipUnreadable: boolean,
  prefetched?: ReadonlyMap<string, Buffer | undefined>,
): TreeResult {
  const label = (segments: readonly string[]) => `${mount}${segmentsPath(segments)}`;
  let whole: ReadonlyMap<string, Buffer | undefined> | undefined;
  const read = (segments: readonly string[]) => readRecord(store, label(segments), skipUnreadable, whole ?? prefetched);
  return buildTree(view, base, changes, read, label, () => {
    const all = new ChangeSet();
    // (listed only to be read ahead: where the backend reads each record in place, they are read as the tree is built)
    const paths: string[] | undefined = store.getEncodedMany ? [] : undefined;
    for (const key of store.keysBelow(mount)) {
      all.add(pathSegments(key.slice(mount.length)));
      paths?.push(key);
    }
    whole = paths && prefetchRecords(store, paths);
    return all;
  });
}

function buildTree(
  view: ObjectView,
  base: { root: Hash | null; count: number } | undefined,
  changes: ChangeSet,
  read: (segments: readonly string[]) => JsonValue | EncodedValue | undefined,
  label: (segments: readonly string[]) => string,
  everything: () => ChangeSet,
): TreeResult {
  if (base) {
    try {
      const updated = updateTree(view, base.root, changes, read, label);
      return { root: updated.root, count: base.count + updated.valueDelta, changed: changes.size, full: false };
    } catch (error) {
      // A damaged base node on a changed path: rebuild from the store, which is the truth.
      if (!isObjectDamage(error)) throw error;
    }
  }
  const all = everything();
  const built = updateTree(view, null, all, read, label);
  return { root: built.root, count: built.valueDelta, changed: all.size, full: true };
}

/** Paths read ahead per getEncodedMany call, and the bytes past which the rest are read one by one (a full build's records are held until hashed). */
const PREFETCH_CHUNK = 2000;
const PREFETCH_BYTES = 256 * 1024 * 1024;

/**
 * The records at `paths` read in one go, where the backend reads many at once (getEncodedMany:
 * PostgreSQL, whose every read is a round trip: a first checkpoint of 30k memory keys read them
 * one by one, 30k of its 72k statements); undefined where it does not (LMDB reads each in
 * place for less than a map costs) or when there is nothing to read, or the read fails (each
 * record is then read on its own, and its own error names its path). Past PREFETCH_BYTES the
 * map stops: the paths it lacks are read on their own.
 */
function prefetchRecords(store: Store, paths: readonly string[]): ReadonlyMap<string, Buffer | undefined> | undefined {
  if (paths.length === 0 || !store.getEncodedMany) return undefined;
  const found = new Map<string, Buffer | undefined>();
  let bytes = 0;
  for (let start = 0; start < paths.length && bytes < PREFETCH_BYTES; start += PREFETCH_CHUNK) {
    const chunk = paths.slice(start, start + PREFETCH_CHUNK);
    let records: Array<Buffer | undefined>;
    try {
      records = store.getEncodedMany(chunk);
    } catch {
      return found.size > 0 ? found : undefined;
    }
    for (let i = 0; i < chunk.length; i++) {
      found.set(chunk[i]!, records[i]);
      bytes += records[i]?.length ?? 0;
    }
  }
  return found;
}

/**
 * Reads one record for hashing, as stored (in the value encoding, so it is hashed without
 * being decoded), naming the path if it cannot be read or is not JSON (or, with `skip`,
 * leaving it out). `prefetched`: records already read (prefetchRecords).
 */
export function readRecord(store: Store, path: string, skip = false, prefetched?: ReadonlyMap<string, Buffer | undefined>): EncodedValue | undefined {
  let bytes: Buffer | undefined;
  try {
    bytes = prefetched?.has(path) ? prefetched.get(path) : store.getEncoded(path);
  } catch (error) {
    if (skip) return undefined;
    if (isApexError(error) && error.code === "APEX_E_BAD_JSON") throw new ApexError("APEX_E_BAD_JSON", `${path}: ${error.message}`, { details: { path } });
    if (isApexError(error)) throw error;
    throw new ApexError("APEX_E_INTEGRITY", `The record at ${path} cannot be decoded: ${(error as Error).message}`, {
      hint: "Run `apex session validate` and `apex session repair`.",
      details: { path },
      cause: error,
    });
  }
  if (bytes === undefined) return undefined;
  if (skip) {
    // Only intact records go into trees used as a source of intact objects.
    try {
      decodeValue(bytes);
    } catch {
      return undefined;
    }
  }
  return new EncodedValue(bytes);
}

/** Reads a record that must be JSON: `ok: false` when it cannot be decoded or decodes to something that is not JSON. */
export function readJsonRecord(store: Store, path: string): { ok: true; value: JsonValue | undefined } | { ok: false; reason: string } {
  let value: JsonValue | undefined;
  try {
    value = store.get(path);
  } catch (error) {
    return { ok: false, reason: `cannot be decoded: ${(error as Error).message}` };
  }
  if (value === undefined) return { ok: true, value };
  try {
    canonicalJson(value);
  } catch (error) {
    return { ok: false, reason: `is not JSON: ${(error as Error).message}` };
  }
  return { ok: true, value };
}
