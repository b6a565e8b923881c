/**
 * The storage port: the one way anything in APEX reaches storage.
 *
 * A backend (LMDB, the embedded default; PostgreSQL, for teams) implements
 * {@link StorageBackend}. Nothing outside a backend imports its driver. The rest of APEX
 * (core, plugins, the CLI) sees a store only through this interface, and `apex.store` in
 * the plugin API is typed as it.
 *
 * Two parts, and transactions that span both:
 * - the **keyspace**: one ordered, path-keyed namespace of JSON values with a global
 *   revision bumped once per changed path, a change log (`changesSince`), ordered prefix
 *   ranges and a change signal (`subscribe`);
 * - **named tables** for plugins (the checkpoint engine's packs and indexes, catalogs,
 *   leases): ordered key → value maps that are not logged and bump no revision.
 *
 * Reads are synchronous (LMDB answers in microseconds and the checkpoint engine walks trees
 * record by record); writes go through `batch`/`transaction`, which resolve once the commit is
 * durable. A backend whose driver is asynchronous provides the synchronous calls itself (the
 * PostgreSQL backend runs its client in a worker and waits on it).
 */

/** A JSON value as stored in the keyspace. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export type ChangeKind = "put" | "delete";

/** One entry of the revision log. */
export interface Change {
  revision: number;
  path: string;
  kind: ChangeKind;
  /** Who made the change: "user:<name>", "agent:<name>", "plugin:<name>", "supervisor". */
  actor: string;
  /** Milliseconds since the epoch. */
  time: number;
}

export interface Entry {
  path: string;
  value: JsonValue;
}

/** A write batch applied in one transaction: all or nothing. Every changed path gets its own revision. */
export interface WriteBatch {
  set(path: string, value: JsonValue): void;
  /** Sets a value given in its encoding (plugins/value-codec.ts), e.g. a checkpoint's value object. */
  setEncoded(path: string, bytes: Buffer): void;
  delete(path: string): boolean;
  deleteTree(path: string): number;
  /** Deletes a key that damage made (it may not even be a valid path), logged like any delete. For repair. */
  deleteDamaged(key: string): boolean;
  get(path: string): JsonValue | undefined;
}

/** An ordered range of keys: `start` inclusive, `end` exclusive (with `reverse`, from `start` down to `end`). */
export interface KeyRange<K> {
  start?: K;
  end?: K;
  reverse?: boolean;
  /** Skips this many entries of the range first (a page of a listing). */
  offset?: number;
  limit?: number;
}

/** How a table orders and stores its keys: as UTF-8 strings, unsigned 32-bit integers, raw bytes, or tuples of strings and numbers (ordered element by element). */
export type TableKeyKind = "string" | "uint32" | "binary" | "tuple";
/** How a table stores its values: raw bytes, or structured values (JSON-like, numbers included). */
export type TableValueKind = "binary" | "structured";

export type TableKey = string | number | Buffer | Array<string | number>;

export interface TableOptions {
  keys: TableKeyKind;
  values: TableValueKind;
}

/**
 * A named table. Writes (put, remove) must run inside {@link StorageBackend.transaction};
 * reads may run anywhere and see the transaction's own writes when inside one.
 */
export interface Table<K extends TableKey = TableKey, V = Buffer> {
  get(key: K): V | undefined;
  /**
   * For binary tables: the value, possibly a view of a buffer the next read reuses (copy it to
   * keep it). Always an exact view: its length, byteLength and every Buffer method see the value only.
   */
  getBinaryFast(key: K): Buffer | undefined;
  /** Optional, for a backend whose reads are round trips: the values of many keys in a few statements. */
  getBinaryMany?(keys: readonly K[]): Array<Buffer | undefined>;
  put(key: K, value: V, options?: { append?: boolean }): unknown;
  remove(key: K): unknown;
  doesExist(key: K): boolean;
  getKeys(range?: KeyRange<K>): Iterable<K>;
  getRange(range?: KeyRange<K>): Iterable<{ key: K; value: V }>;
  getCount(range?: KeyRange<K>): number;
  getStats(): { entryCount?: number } & Record<string, unknown>;
}

/** What a backend says about itself (`apex plugins list`, `apex status --json`, errors). */
export interface BackendInfo {
  /** "lmdb", "postgres", … */
  backend: string;
  /** Where the data lives, printable: a directory, or a URL without its password. */
  location: string;
}

export interface StoreOpenOptions {
  readOnly?: boolean;
  /** Default actor recorded in the revision log. */
  actor?: string;
  /** Where notices go (an existing store made owner-only, …); default stderr. */
  onNotice?: (message: string) => void;
}

export interface StorageBackend {
  readonly info: BackendInfo;
  /** The project's store directory (`.apex/`): logs, sockets and bundles live there whatever the backend. */
  readonly dir: string;
  readonly readOnly: boolean;
  readonly actor: string;
  /** How it was opened (openStore sets it), so that a child process (a validator, say) can open the same store. */
  spec?: StoreSpec;

  // The keyspace: reads.
  get(path: string): JsonValue | undefined;
  /** The record at `path` in the value encoding (plugins/value-codec.ts), as stored. */
  getEncoded(path: string): Buffer | undefined;
  /**
   * getEncoded of many paths, in their order (undefined where there is no record). Optional: a
   * backend whose reads are round trips (PostgreSQL) answers them in one; callers without it
   * read path by path.
   */
  getEncodedMany?(paths: readonly string[]): Array<Buffer | undefined>;
  has(path: string): boolean;
  /** The current global revision (0 for a new store). */
  revision(): number;
  /**
   * Runs `fn` (synchronous) with all its reads in one view of the store: a commit by another
   * process meanwhile is not seen. For answers built from several reads (a status report, a
   * checkpoint's tree). Ranges are views of their own. Optional: LMDB's reads within one turn of
   * the event loop share one read transaction already (lmdb-js renews it at the next turn), so it
   * has nothing to add; PostgreSQL runs them in a REPEATABLE READ READ ONLY transaction.
   * {@link readView} calls it where there is one.
   */
  readView?<T>(fn: () => T): T;
  /** Entries whose path matches the glob, in key order. */
  query(glob: string, options?: { limit?: number }): Iterable<Entry>;
  /** The entry at `path` and every entry below it, in key order. */
  tree(path: string): Iterable<Entry>;
  /** Paths directly or indirectly below `path` (without values). */
  keysBelow(path: string): Iterable<string>;
  /** Keyspace keys in a raw key range (UTF-8 byte order), without values. */
  keys(range: KeyRange<string>): Iterable<string>;
  /** Keyspace entries in a raw key range (UTF-8 byte order). */
  entries(range: KeyRange<string>): Iterable<Entry>;
  /** Changes with a revision greater than `since`, oldest first. */
  changesSince(since: number, options?: { limit?: number }): Iterable<Change>;
  /**
   * Calls `listener` (at most every few milliseconds) after the revision may have changed, by
   * this process or another. LMDB: a poll of the revision; PostgreSQL: LISTEN/NOTIFY.
   * Returns the function that stops it.
   */
  subscribe(listener: () => void): () => void;

  // The keyspace: writes.
  set(path: string, value: JsonValue, actor?: string): Promise<number>;
  delete(path: string, options?: { recursive?: boolean; actor?: string }): Promise<{ deleted: number; revision: number }>;
  batch<T>(fn: (batch: WriteBatch) => T, actor?: string): Promise<{ value: T; revision: number }>;
  /** Synchronous variant of batch: committed (durably) before it returns. */
  batchSync<T>(fn: (batch: WriteBatch) => T, actor?: string): { value: T; revision: number };

  // Tables and transactions.
  /**
   * Opens a named table (LMDB creates it as it is opened in a writable store, PostgreSQL on its
   * first write). The same name always gets the same options.
   */
  table<K extends TableKey = TableKey, V = Buffer>(name: string, options: TableOptions): Table<K, V>;
  /**
   * The names of the tables that exist (for copying a store to another backend, backups and
   * validation), ordered by the UTF-8 bytes of their names. On LMDB that includes a table opened
   * and never written (no rows).
   */
  tableNames(): string[];
  /**
   * Runs `fn` (synchronous) in one write transaction over the keyspace and every table, and
   * resolves with its result once the commit is durable. batch()/batchSync() inside it join it.
   */
  transaction<T>(fn: () => T): Promise<T>;

  /**
   * Optional, for backends that keep the store in one file: writes a consistent, compacted
   * copy of it to `file` without blocking writers (LMDB: its copy with compaction). `apex
   * archive backup` uses it; a backend without it has no such backup.
   */
  snapshotTo?(file: string): Promise<void>;

  /**
   * Optional, for backends that wait on a server: bounds how long one call may block. `until`
   * gives, for a call started at `startedAt` (performance.now()), the time it may wait until;
   * past it the call fails (APEX_E_STORE_UNREACHABLE) and the connection is made anew. A
   * supervisor bounds its calls by its lease, so that a cut network cannot hold it past it.
   */
  boundCalls?(until: (startedAt: number) => number): void;

  /**
   * Optional, for a store several hosts share: its server's clock (ms since the epoch), which
   * leases are written and judged by (lease.ts), so that hosts whose clocks differ agree.
   */
  now?(): number;

  /** True once close() was called: nothing more is read or written (periodic work, a plugin's timer, stops quietly). */
  readonly closed?: boolean;

  /** Waits for pending writes and releases the backend. */
  close(): Promise<void>;
}

/** Which backend holds a project's data, resolved from `APEX_STORE_URL`, else the config's `store:` section, else LMDB in `dir`. */
export interface StoreSpec {
  /** "lmdb" (default) or a registered backend's name ("postgres"). */
  backend: string;
  /** The project's store directory (`.apex/`, or APEX_HOME). LMDB keeps its data there; every backend keeps logs and sockets there. */
  dir: string;
  /** Where a server backend's data is (`postgres://…`). */
  url?: string;
  /** The project id a shared backend keys its data by (two hosts with one id see the same sessions). */
  project?: string;
}

/** What a backend registers (`registerBackend("storage", name, …)`, or the built-in registry). */
export interface StorageBackendFactory {
  /** Opens (creating it unless read-only) the store, or resolves with it once it can be opened. Read-only opens of a missing store throw APEX_E_NO_STORE. */
  open(spec: StoreSpec, options: StoreOpenOptions): StorageBackend | Promise<StorageBackend>;
  /** True when a store exists for the spec (cheap: CLI commands ask it before anything else). */
  exists(spec: StoreSpec): boolean;
  /**
   * Optional: throws the config error (APEX_E_CONFIG) open() would throw for this spec, without
   * connecting or creating anything (`apex config validate` runs it: one check, two callers).
   */
  check?(spec: StoreSpec): void;
}

/** `fn`'s reads in one view of the store (StorageBackend.readView), on any backend. */
export function readView<T>(store: Pick<StorageBackend, "readView">, fn: () => T): T {
  return store.readView ? store.readView(fn) : fn();
}

/**
 * The encoded records at `paths`, by path: read together where the backend can (getEncodedMany:
 * PostgreSQL, whose every read is a round trip; it splits a long list itself), else one by one.
 */
export function encodedByPath(store: Pick<StorageBackend, "getEncoded" | "getEncodedMany">, paths: readonly string[]): Map<string, Buffer | undefined> {
  const records = store.getEncodedMany ? store.getEncodedMany(paths) : paths.map((path) => store.getEncoded(path));
  return new Map(paths.map((path, i) => [path, records[i]]));
}

/** `set` of the port, for any backend: one path in one batch; resolves with its revision once durable. */
export async function setOne(store: StorageBackend, path: string, value: JsonValue, actor?: string): Promise<number> {
  const result = await store.batch((batch) => batch.set(path, value), actor);
  return result.revision;
}

/** `delete` of the port, for any backend: one path (and, with `recursive`, everything below it) in one batch. */
export async function deleteOne(store: StorageBackend, path: string, options: { recursive?: boolean; actor?: string } = {}): Promise<{ deleted: number; revision: number }> {
  const result = await store.batch((batch) => {
    let deleted = batch.delete(path) ? 1 : 0;
    if (options.recursive) deleted += batch.deleteTree(path);
    return deleted;
  }, options.actor);
  return { deleted: result.value, revision: result.revision };
}
