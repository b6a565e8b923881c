import type { Hash } from "./engine/objects.js";
import type { Store } from "../../core/store/store.js";
import type { CheckpointManifest } from "./manifest.js";

/**
 * The `checkpoints` sub-database: everything needed to find and list checkpoints without
 * decoding manifests. Keys are lmdb-js ordered arrays; values msgpack.
 *
 *   ["n", sid]        -> last sequence number allocated in the session (never decreases)
 *   ["s", sid, seq]   -> CheckpointSummary (what `list` shows, plus the tree roots)
 *   ["i", uuid]       -> { s: sid, n: seq }        (lookup by id and unique id prefix)
 *   ["b", scopeKey]   -> MemoryBase                (the last memory tree built for a scope)
 *
 * Written in the same LMDB transaction as the manifest, so they always agree with it.
 */
export const CATALOG_DB = "checkpoints";
/** Tuple keys, structured values. */
export const CATALOG_TABLE = { keys: "tuple", values: "structured" } as const;

/** What listing needs of a manifest: its own fields, and its trees' roots and sizes flattened. */
export interface CheckpointSummary
  extends Pick<CheckpointManifest, "id" | "session_id" | "sequence" | "name" | "parent" | "created_at" | "description" | "pinned" | "revision"> {
  /** As stored; a trigger a later version no longer knows still lists. */
  trigger: string;
  memory_keys: number;
  task_count: number;
  agent_count: number;
  memory_root: Hash | null;
  tasks_root: Hash | null;
  agents_root: Hash | null;
  manifest_hash: Hash;
}

/**
 * The memory tree matching the store's state at `revision` for one scope: the starting
 * point of the next incremental build. Its root is kept alive by sweeps.
 */
export interface MemoryBase {
  root: Hash | null;
  revision: number;
  keys: number;
}

export interface IdRecord {
  s: string;
  n: number;
}

export interface Located {
  sessionId: string;
  sequence: number;
  id: string;
}

type CatalogKey = (string | number)[];

interface CatalogDb {
  get(key: CatalogKey): unknown;
  put(key: CatalogKey, value: unknown): unknown;
  remove(key: CatalogKey): unknown;
  getRange(options: { start?: CatalogKey; end?: CatalogKey; reverse?: boolean; offset?: number; limit?: number }): Iterable<{ key: CatalogKey; value: unknown }>;
  getKeys(options: { start?: CatalogKey; end?: CatalogKey; reverse?: boolean; limit?: number }): Iterable<CatalogKey>;
  getCount(options: { start?: CatalogKey; end?: CatalogKey }): number;
}

const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;
const catalogs = new WeakMap<Store, Catalog>();

export class Catalog {
  private readonly db: CatalogDb;

  private constructor(store: Store) {
    this.db = store.table<CatalogKey, unknown>(CATALOG_DB, CATALOG_TABLE) as CatalogDb;
  }

  static of(store: Store): Catalog {
    let catalog = catalogs.get(store);
    if (!catalog) {
      catalog = new Catalog(store);
      catalogs.set(store, catalog);
    }
    return catalog;
  }

  lastSequence(sessionId: string): number {
    const value = this.db.get(["n", sessionId]);
    return typeof value === "number" ? value : 0;
  }

  /** Takes the next sequence number. Call inside the write transaction that writes the manifest. */
  allocateSequence(sessionId: string): number {
    const next = this.lastSequence(sessionId) + 1;
    this.db.put(["n", sessionId], next);
    return next;
  }

  setLastSequence(sessionId: string, sequence: number): void {
    this.db.put(["n", sessionId], sequence);
  }

  /** Every session with a sequence counter, with its value. */
  *counters(): Iterable<{ sessionId: string; last: unknown }> {
    for (const { key, value } of this.db.getRange({ start: ["n"], end: ["o"] })) yield { sessionId: String(key[1]), last: value };
  }

  summary(sessionId: string, sequence: number): CheckpointSummary | undefined {
    return this.db.get(["s", sessionId, sequence]) as CheckpointSummary | undefined;
  }

  /** Summaries of a session by sequence (newest first with `reverse`). */
  summaries(sessionId: string, options: { reverse?: boolean; offset?: number; limit?: number; start?: number } = {}): Iterable<CheckpointSummary> {
    const range: { start: CatalogKey; end: CatalogKey; reverse?: boolean } = options.reverse
      ? { start: ["s", sessionId, MAX_SEQUENCE], end: ["s", sessionId, 0], reverse: true }
      : { start: ["s", sessionId, options.start ?? 0], end: ["s", sessionId, MAX_SEQUENCE] };
    const iterable = this.db.getRange({
      ...range,
      ...(options.offset ? { offset: options.offset } : {}),
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
    });
    return mapValues(iterable);
  }

  count(sessionId: string): number {
    return this.db.getCount({ start: ["s", sessionId, 0], end: ["s", sessionId, MAX_SEQUENCE] });
  }

  latest(sessionId: string): CheckpointSummary | undefined {
    for (const summary of this.summaries(sessionId, { reverse: true, limit: 1 })) return summary;
    return undefined;
  }

  /** Keys of every summary (session id, sequence), without decoding the records. */
  *summaryKeys(): Iterable<{ sessionId: string; sequence: number }> {
    for (const key of this.db.getKeys({ start: ["s"], end: ["t"] })) {
      yield { sessionId: String(key[1]), sequence: Number(key[2]) };
    }
  }

  /** The session and sequence of a checkpoint id. */
  locate(id: string): IdRecord | undefined {
    return this.db.get(["i", id]) as IdRecord | undefined;
  }

  /** Ids starting with `prefix` (at most `limit`). */
  idsWithPrefix(prefix: string, limit: number): Located[] {
    const found: Located[] = [];
    for (const { key, value } of this.db.getRange({ start: ["i", prefix], end: ["i", `${prefix}\u{10ffff}`], limit })) {
      const record = value as IdRecord;
      found.push({ id: String(key[1]), sessionId: record.s, sequence: record.n });
    }
    return found;
  }

  /** Every id record key, without decoding values. */
  *idKeys(): Iterable<string> {
    for (const key of this.db.getKeys({ start: ["i"], end: ["j"] })) yield String(key[1]);
  }

  putCheckpoint(manifest: CheckpointManifest): void {
    this.db.put(["s", manifest.session_id, manifest.sequence], summaryOf(manifest));
    this.db.put(["i", manifest.id], { s: manifest.session_id, n: manifest.sequence } satisfies IdRecord);
  }

  removeSummary(sessionId: string, sequence: number): void {
    this.db.remove(["s", sessionId, sequence]);
  }

  /**
   * Drops everything the catalog holds of a session (archived away): its summaries, the id
   * records of its checkpoints (those listed in `ids` and those its summaries name) and its
   * sequence counter. Call inside the write transaction that removes the session.
   */
  removeSession(sessionId: string, ids: Iterable<string> = []): void {
    const all = new Set(ids);
    for (const key of [...this.db.getKeys({ start: ["s", sessionId, 0], end: ["s", sessionId, MAX_SEQUENCE] })]) {
      try {
        const summary = this.db.get(key) as { id?: unknown } | undefined;
        if (typeof summary?.id === "string") all.add(summary.id);
      } catch {
        // an undecodable summary: removed all the same
      }
      this.db.remove(key);
    }
    for (const id of all) {
      let record: IdRecord | undefined;
      try {
        record = this.db.get(["i", id]) as IdRecord | undefined;
      } catch {
        record = undefined;
      }
      if (record?.s === sessionId) this.db.remove(["i", id]);
    }
    this.db.remove(["n", sessionId]);
  }

  removeId(id: string): void {
    this.db.remove(["i", id]);
  }

  /** The memory base of a scope; undefined if there is none or its record is unreadable (the next build is then a full one). */
  base(scopeKey: string): MemoryBase | undefined {
    let base: unknown;
    try {
      base = this.db.get(["b", scopeKey]);
    } catch {
      return undefined;
    }
    if (typeof base !== "object" || base === null) return undefined;
    const { root, revision, keys } = base as Record<string, unknown>;
    const rootOk = root === null || (typeof root === "string" && /^[0-9a-f]{64}$/.test(root));
    if (!rootOk || !Number.isSafeInteger(revision) || !Number.isSafeInteger(keys)) return undefined;
    return { root: root as Hash | null, revision: revision as number, keys: keys as number };
  }

  setBase(scopeKey: string, base: MemoryBase): void {
    this.db.put(["b", scopeKey], base);
  }

  removeBase(scopeKey: string): void {
    this.db.remove(["b", scopeKey]);
  }

  *bases(): Iterable<{ scopeKey: string; base: unknown }> {
    for (const { key, value } of this.db.getRange({ start: ["b"], end: ["c"] })) yield { scopeKey: String(key[1]), base: value };
  }

  /** Reads a raw record, for validation (may throw on a corrupt record). */
  raw(key: CatalogKey): unknown {
    return this.db.get(key);
  }
}

function* mapValues(iterable: Iterable<{ value: unknown }>): Iterable<CheckpointSummary> {
  for (const { value } of iterable) yield value as CheckpointSummary;
}

export function summaryOf(manifest: CheckpointManifest): CheckpointSummary {
  return {
    id: manifest.id,
    session_id: manifest.session_id,
    sequence: manifest.sequence,
    name: manifest.name,
    parent: manifest.parent,
    created_at: manifest.created_at,
    trigger: manifest.trigger,
    description: manifest.description,
    pinned: manifest.pinned,
    revision: manifest.revision,
    memory_keys: manifest.memory.keys,
    task_count: manifest.tasks.count,
    agent_count: manifest.agents.count,
    memory_root: manifest.memory.root,
    tasks_root: manifest.tasks.root,
    agents_root: manifest.agents.root,
    manifest_hash: manifest.hash,
  };
}
