import { existsSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import type { Database, RootDatabase } from "lmdb";
import type {
  BackendInfo,
  Change,
  ChangeKind,
  Entry,
  JsonValue,
  KeyRange,
  StorageBackend,
  StorageBackendFactory,
  StoreOpenOptions,
  Table,
  TableKey,
  TableOptions,
  WriteBatch,
} from "../../core/store/port.js";
import { deleteOne, setOne } from "../../core/store/port.js";
import { currentActor } from "../../core/actor.js";
import { ApexError } from "../../core/errors.js";
import { compileGlob } from "../../core/store/glob.js";
import { checkPath, keyBound, pathProblem, subtreeRange } from "../../core/store/paths.js";
import { checkStoreAccess, checkStoreFileLength, storeWriteRefused, writePermissionCode } from "./file-check.js";
import { repairStaleStart, STALE_START } from "./last-commit.js";
import { committed, fileKey, handleClosed, handleOpened, readOnlyHandles, readOnlyHere, whenWritable, type SnapshotHolder } from "./shared-env.js";
import { makePrivate, makePrivateDir } from "../../core/store/private.js";
import { tightenStoreDir } from "./tighten.js";
import { openRoot } from "./open-env.js";
import { fileDiskFullError, isFileDiskFull } from "../../core/store/store-errors.js";
import { RecordDamage, damageError, diskFullError, isDamage, writeFailure } from "./errors.js";
import { assertNotPostgresUrl } from "./url.js";
import { commitBound, freeBytes, quickBound, sizeOf, tallyWrite, type DbPages, type DbTally } from "./room.js";
import { decodeValue, encodeJson, isEncodedValue, VALUE_TAG } from "../value-codec.js";

/**
 * One log record per write batch, keyed by the batch's first revision: the i-th path got
 * revision key + i. Grouping keeps a 100k-key import from writing 100k log records.
 */
interface LogRecord {
  /** Changed paths, in revision order. */
  p: string[];
  /** Kinds, one character per path: "p" put, "d" delete. */
  k: string;
  a: string;
  t: number;
}

// lmdb's CommonJS build is one bundled file: it loads in about half the time of its ESM
// module graph, and every CLI command pays that time at start-up.
const requireLmdb = createRequire(import.meta.url);
const { open, asBinary } = requireLmdb("lmdb") as typeof import("lmdb");

interface Decoder {
  decode(bytes: Uint8Array, size?: unknown): unknown;
}

let legacyDecoder: Decoder | undefined;

/**
 * Records written before the value encoding are lmdb-js's default msgpack (msgpackr, as lmdb-js
 * configures it for a database without shared structures): decoded with lmdb-js's own copy.
 */
function legacy(): Decoder {
  if (!legacyDecoder) {
    const { Encoder } = createRequire(requireLmdb.resolve("lmdb"))("msgpackr") as { Encoder: new (options: object) => Decoder };
    legacyDecoder = new Encoder({ copyBuffers: true });
  }
  return legacyDecoder;
}

/** A keyspace record: the value encoding, or a record written before it. A record that does not decode is damage (RecordDamage). */
function decodeRecord(bytes: Uint8Array, size?: unknown): JsonValue {
  const length = typeof size === "number" ? size : bytes.length;
  try {
    if (length > 0 && bytes[0] === VALUE_TAG) return decodeValue(bytes, length);
    return legacy().decode(bytes, size) as JsonValue;
  } catch (error) {
    throw new RecordDamage(`a record does not decode: ${(error as Error).message}`, { cause: error });
  }
}

const KV_ENCODER = { encode: (value: unknown) => encodeJson(value), decode: decodeRecord };

const REVISION_KEY = "revision";
/** Logged batches of this many changes or more are kept decoded between reads of the log (changesSinceRaw). */
const LOG_RECORD_CACHED = 10_000;
/** The LMDB data file in the store directory. */
export { STORE_FILE } from "../../core/store/store.js";
import { STORE_FILE, lmdbDataDir, lmdbStoreExists } from "../../core/store/store.js";
/** The keyspace's own databases: not tables (tableNames() leaves them out; table() gives their raw records). */
const KEYSPACE_DB_NAMES = ["kv", "log", "meta"];
const KEYSPACE_DBS = new Set(KEYSPACE_DB_NAMES);
/** How often subscribe() polls the revision. */
const SUBSCRIBE_POLL_MS = 50;
/**
 * Virtual address space reserved up front (the file itself grows only as data is written).
 * Growing the map in small steps during a large import costs more than the import.
 */
const INITIAL_MAP_SIZE = 4 * 1024 ** 3;
/** What creating a named database may write: its record in the main database, and the meta page. */
const SMALL_COMMIT_BYTES = 64 * 1024;
/** How often a write transaction that started from a set-back commit id is run again (last-commit.ts); once is the rule. */
const STALE_START_ATTEMPTS = 5;

/**
 * The LMDB backend: the project keyspace as one ordered, path-keyed LMDB database with a
 * global revision and a change log, and the named tables as further databases of the same
 * environment. Every write bumps the revision once per changed path and appends a log
 * record, so "changes since revision R" is a range read over the log. This is the only
 * module that imports lmdb.
 */
export class LmdbStore implements StorageBackend {
  readonly info: BackendInfo;
  readonly dir: string;
  readonly readOnly: boolean;
  readonly actor: string;
  private readonly root: RootDatabase;
  private kv!: Database<JsonValue, string>;
  private log!: Database<LogRecord, number>;
  /** The last logged batch of LOG_RECORD_CACHED changes or more that changesSince decoded. */
  private lastLogRecord: { key: number; value: LogRecord; bytes: Buffer } | undefined;
  private meta!: Database<unknown, string>;
  private readonly tables = new Map<string, { options: TableOptions; table: Table<any, any> }>();
  /** LMDB's lock file beside the data file. */
  private readonly lockFile: string;
  /** Set as close() begins (the port's `closed`). */
  closed = false;
  /** The data file's identity, as this process counts its handles of it (shared-env.ts). */
  private handleKey: string | undefined;
  /** True while a transaction() callback runs. */
  private inTransaction = false;
  /** What the open write transaction puts into each database: checked against the free space before it commits (room.ts). */
  private tally: Map<Database<any, any>, DbTally> | undefined;
  /** The log segment of the batch recording now (applyBatch): its changes not yet logged. */
  private openSegment: { pending: number; close(): void } | undefined;
  /** The tables whose database the open write transaction created (openTableDb): made stale if it aborts (staleTable). */
  private createdTables: Array<{ table: Table; dbOptions: Record<string, unknown>; keys: TableOptions["keys"] | undefined }> | undefined;

  private constructor(dir: string, dataDir: string, root: RootDatabase, options: StoreOpenOptions) {
    this.info = { backend: "lmdb", location: dataDir };
    this.dir = dir;
    this.readOnly = options.readOnly ?? false;
    this.actor = options.actor ?? currentActor();
    this.root = root;
    // Each named database of a writable environment is opened by lmdb-js in a write transaction
    // of its own, whose native begin ignores mdb_txn_begin's result: with twenty processes
    // opening one store at once, a begin that fails leaves the open with no transaction ("No
    // current read transaction available", "No transaction to renew"). Opening the three in one
    // transaction was measured and made it worse (5 failures in 1,200 fresh-process writes
    // against 0 in 2,400: docs/architecture.md), so they are opened one by one, as lmdb-js does.
    // Values are stored in the value encoding (value-codec.ts), the bytes a checkpoint hashes.
    // (lmdb-js takes an `encoder` for any database; its types list it for the root only.)
    this.lockFile = join(dataDir, `${STORE_FILE}-lock`);
    const openAll = () => {
      this.kv = root.openDB<JsonValue, string>({ name: "kv", encoder: KV_ENCODER } as { name: string });
      this.log = root.openDB<LogRecord, number>({ name: "log" });
      this.meta = root.openDB<unknown, string>({ name: "meta" });
    };
    // Creating a database commits: in a new store that is done inside transactionSync(), which
    // makes sure the commit builds on the newest state (last-commit.ts). Opening existing ones
    // writes nothing.
    if (!this.readOnly && !KEYSPACE_DB_NAMES.every((name) => namedDatabaseExists(root, name))) this.transactionSync(openAll);
    else openAll();
  }

  /** True when a store has been created in `dir` (LMDB's data directory). */
  static exists(dir: string): boolean {
    return existsSync(join(dir, STORE_FILE));
  }

  /**
   * Opens the store whose data is in `dataDir` (`dir`, the project's store directory, unless
   * the spec names another). Read-only opens of a missing store fail with APEX_E_NO_STORE;
   * writable opens create it.
   */
  static open(dir: string, options: StoreOpenOptions = {}, dataDir: string = dir): LmdbStore {
    const file = join(dataDir, STORE_FILE);
    if (options.readOnly && !existsSync(file)) {
      throw new ApexError("APEX_E_NO_STORE", `No APEX store at ${dataDir} yet.`, {
        hint: "Write something first (`apex memory set /hello '\"world\"'`) or start a session.",
      });
    }
    // Private whatever the umask (core/store/private.ts); a store made before that is tightened once.
    const tightened = tightenStoreDir(dataDir);
    if (tightened.length > 0) {
      const notice = options.onNotice ?? ((message: string) => process.stderr.write(`notice: ${message}\n`));
      notice(`${dataDir} could be read by other users; ${tightened.length} entr${tightened.length === 1 ? "y was" : "ies were"} made owner-only (directories 0700, files 0600).`);
    }
    // A truncated file would crash the first read (SIGBUS): named as damage instead (file-check.ts).
    checkStoreFileLength(file, dataDir, options.readOnly ?? false);
    if (!options.readOnly) {
      const created = !existsSync(file);
      try {
        makePrivateDir(dataDir);
        if (created) writeStoreGitignore(dataDir);
      } catch (error) {
        const code = writePermissionCode(error);
        throw code ? storeWriteRefused(dataDir, code) : error;
      }
    }
    // lmdb-js would give this open the read-only environment of this process's open handles, and
    // its own open fails on it after taking a reference to it that nothing can drop (shared-env.ts).
    if (!options.readOnly && readOnlyHandles(fileKey(file)) > 0) throw readOnlyHere(file, readOnlyHandles(fileKey(file)));
    let root: RootDatabase | undefined;
    try {
      // overlappingSync (lmdb-js's default on Linux) defers syncing the meta page past the
      // commit. With several processes on one store and writers killed with SIGKILL, the crash
      // test saw it corrupt the free list ("freelist entry had bad/duplicate entries",
      // "mdb_page_touch no parent"), lose a checkpoint already reported as saved, and serve a
      // stale tree: in 5 of 20 runs of 200 kills. LMDB's own durable commit never did (0 of
      // 8+ runs), at no measurable cost here: every commit is synced before it returns.
      // (opened so that an open racing another process's last close goes on: open-env.ts)
      root = openRoot(open, { path: file, maxDbs: 16, readOnly: options.readOnly ?? false, compression: false, mapSize: INITIAL_MAP_SIZE, overlappingSync: false });
      // lmdb creates the data and lock files with the umask's mode.
      if (!options.readOnly) for (const name of [STORE_FILE, `${STORE_FILE}-lock`]) makePrivate(join(dataDir, name));
      // A file whose first write (which makes the keyspace's databases) is still under way: no store yet, as no file
      // (a read in that moment failed on the databases it could not open, APEX_E_INTERNAL).
      if (options.readOnly && !KEYSPACE_DB_NAMES.every((name) => namedDatabaseExists(root!, name))) {
        throw new ApexError("APEX_E_NO_STORE", `No APEX store at ${dataDir} yet: it is being made.`, { hint: "Try again in a moment: the write that makes it is under way." });
      }
      const store = new LmdbStore(dir, dataDir, root, options);
      handleOpened((store.handleKey = fileKey(file)!), options.readOnly ?? false, root as unknown as SnapshotHolder);
      return store;
    } catch (error) {
      // An open that failed after lmdb's keeps no environment: lmdb-js would give it to every later open of the file in this process.
      void root?.close().catch(() => undefined);
      if (error instanceof ApexError) throw error;
      const code = options.readOnly ? undefined : writePermissionCode(error);
      if (code) throw storeWriteRefused(dataDir, code);
      throw new ApexError("APEX_E_STORE", `Cannot open the store at ${file}: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * A named table: lmdb-js's own database handle's methods, bound (so that the object store's
   * hot reads cost what LMDB's do), wrapped only where they must be (bindTable). Keys "string" and "tuple" use lmdb-js's ordered-binary key
   * encoding (tuples are its ordered arrays), "uint32" and "binary" its key encodings of those
   * names; values "binary" are raw bytes, "structured" lmdb-js's default msgpack. In a
   * read-only store a table that does not exist yet reads as empty. The keyspace's own
   * databases (kv, log, meta) give their raw records, whatever the options: for repair and
   * the tests that plant damage.
   */
  table<K extends TableKey = TableKey, V = Buffer>(name: string, options: TableOptions): Table<K, V> {
    const known = this.tables.get(name);
    if (known) {
      if (known.options.keys !== options.keys || known.options.values !== options.values) {
        throw new ApexError("APEX_E_INTERNAL", `Table ${name} is opened with keys "${known.options.keys}" and values "${known.options.values}", not "${options.keys}"/"${options.values}".`);
      }
      return known.table as Table<K, V>;
    }
    const dbOptions: Record<string, unknown> = { name };
    if (KEYSPACE_DBS.has(name)) dbOptions.encoding = "binary";
    else {
      if (options.values === "binary") dbOptions.encoding = "binary";
      if (options.keys === "uint32" || options.keys === "binary") dbOptions.keyEncoding = options.keys;
    }
    const keys = KEYSPACE_DBS.has(name) ? undefined : options.keys;
    const table = {} as Table;
    const db = this.openTableDb(table, dbOptions, keys);
    if (!db) return emptyTable() as unknown as Table<K, V>;
    this.bindTable(table, db, keys);
    this.tables.set(name, { options, table });
    return table as unknown as Table<K, V>;
  }

  /**
   * Opens (creating it in a writable store) a table's database. A read-only environment returns
   * nothing for a database it does not contain yet. A creation commits inside transactionSync(),
   * on the newest state (last-commit.ts); inside an open write transaction it is part of it.
   */
  private openTableDb(table: Table, dbOptions: Record<string, unknown>, keys: TableOptions["keys"] | undefined): Database | undefined {
    const name = dbOptions.name as string;
    const creating = !this.readOnly && !namedDatabaseExists(this.root, name);
    // Creating a database is a commit of its own: it needs room too (room.ts).
    if (creating) this.assertRoom(SMALL_COMMIT_BYTES, `creating the table ${name}`);
    const openIt = () => {
      const db = this.root.openDB(dbOptions as { name: string }) as Database | undefined;
      // Created by the write transaction open: if it aborts, the handle is stale (see transactionSync).
      if (creating) this.createdTables?.push({ table, dbOptions, keys });
      return db;
    };
    return creating ? this.transactionSync(openIt) : openIt();
  }

  /**
   * lmdb's own handle for reads (the object store's hot path pays nothing but getBinaryFast's
   * view, see exactView), with put and
   * remove refused outside transaction(): lmdb-js would otherwise queue them as asynchronous
   * writes, committed later by its write thread, outside any APEX transaction. The methods are
   * set on `table`, the object the caller holds, so that they can be set again (staleTable).
   */
  private bindTable(table: Table, db: Database, keys: TableOptions["keys"] | undefined): void {
    const raw = db as unknown as Table;
    const writing = (what: string) => {
      if (!this.inTransaction) throw new ApexError("APEX_E_INTERNAL", `Table ${what} outside a transaction: use store.transaction().`);
    };
    // lmdb-js ends a reverse range without `end` before its "beginning key" (exclusive), which is
    // a key of uint32 and binary tables: 0 and <00> were left out. They are the range's end, inclusive.
    const beginning = keys === "uint32" ? 0 : keys === "binary" ? Buffer.from([0]) : undefined;
    // lmdb-js writes its own flags into the range it is given (getKeys: values false, getCount:
    // onlyCount) and reads it again as the iteration starts: each call gets a copy, so that a
    // caller's range read with getKeys and then getRange does not yield keys as entries.
    const ranged = (range: KeyRange<TableKey> | undefined) => {
      const copy: KeyRange<TableKey> & { inclusiveEnd?: boolean } = { ...range };
      if (copy.reverse && copy.end === undefined && beginning !== undefined) [copy.end, copy.inclusiveEnd] = [beginning, true];
      return copy;
    };
    Object.assign(table, {
      get: raw.get.bind(db),
      getBinaryFast: (key: TableKey) => exactView(raw.getBinaryFast.call(db, key)),
      doesExist: raw.doesExist.bind(db),
      getKeys: (range?: KeyRange<TableKey>) => raw.getKeys.call(db, ranged(range)),
      getRange: (range?: KeyRange<TableKey>) => raw.getRange.call(db, ranged(range)),
      // lmdb-js counts past the range's limit: the count is of what getKeys would yield.
      getCount: (range?: KeyRange<TableKey>) => {
        const count = raw.getCount.call(db, ranged(range));
        return range?.limit === undefined ? count : Math.max(0, Math.min(count, range.limit));
      },
      getStats: raw.getStats.bind(db),
      put: (key: TableKey, value: unknown, options?: { append?: boolean }) => {
        writing("put");
        this.count(db, sizeOf(key), sizeOf(value));
        return raw.put(key, value as Buffer, options);
      },
      remove: (key: TableKey) => {
        writing("remove");
        this.count(db, sizeOf(key), 0);
        return raw.remove(key);
      },
    } satisfies Table);
  }

  /**
   * A table whose database the aborted write transaction created: LMDB closed its handle with
   * the transaction, and the next database opened took its slot, so that it read and wrote that
   * other table. Each of its methods opens (creates) the database again on first use, then runs.
   */
  private staleTable(table: Table, dbOptions: Record<string, unknown>, keys: TableOptions["keys"] | undefined): void {
    for (const method of Object.keys(table) as Array<keyof Table>) {
      (table as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
        const db = this.openTableDb(table, dbOptions, keys);
        if (!db) throw new ApexError("APEX_E_INTERNAL", `Table ${String(dbOptions.name)} cannot be opened again.`);
        this.bindTable(table, db, keys);
        return (table[method] as (...args: unknown[]) => unknown)(...args);
      };
    }
  }

  tableNames(): string[] {
    if (this.closed) throw storeClosed();
    const names: string[] = [];
    // The root database lists the named databases.
    for (const key of this.root.getKeys()) {
      if (typeof key === "string" && !KEYSPACE_DBS.has(key)) names.push(key);
    }
    // By their UTF-8 bytes, as keys are ordered and PostgreSQL lists them (sort() put U+1F600 before U+FFFF).
    return names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  /**
   * A keyspace range as lmdb-js is given it: a copy (it sets `values: false` on the range it is
   * given, see bindTable), its bounds ones it can seek to (keyBound: a bound past its key size was
   * a bare Error, and an unpaired surrogate was encoded two ways by string length). A bound
   * changed so is inclusive at the range's lower end and exclusive at its upper end.
   */
  private kvRange(range: KeyRange<string>): KeyRange<string> & { exclusiveStart?: boolean; inclusiveEnd?: boolean } {
    const out: KeyRange<string> & { exclusiveStart?: boolean; inclusiveEnd?: boolean } = { ...range };
    if (range.start !== undefined) {
      const { key, exact } = keyBound(range.start);
      if (!exact) [out.start, out.exclusiveStart] = [key, range.reverse === true];
    }
    if (range.end !== undefined) {
      const { key, exact } = keyBound(range.end);
      if (!exact) [out.end, out.inclusiveEnd] = [key, range.reverse === true];
    }
    return out;
  }

  keys(range: KeyRange<string>): Iterable<string> {
    return this.readingAll("reading the keyspace", this.kv.getKeys(this.kvRange(range)) as Iterable<string>);
  }

  *entries(range: KeyRange<string>): Iterable<Entry> {
    for (const { key, value } of this.readingAll("reading the keyspace", this.kv.getRange(this.kvRange(range)))) yield { path: key, value };
  }

  subscribe(listener: () => void): () => void {
    let last = this.revision();
    const timer = setInterval(() => {
      if (this.closed) return;
      let now: number;
      try {
        now = this.revision();
      } catch {
        return;
      }
      if (now !== last) {
        last = now;
        listener();
      }
    }, SUBSCRIBE_POLL_MS);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * A consistent, compacted copy of the LMDB file at `file`, made in one read transaction
   * (writers are not blocked). LMDB-only: archive backups use it.
   */
  async snapshotTo(file: string): Promise<void> {
    try {
      await this.root.backup(file, true);
    } catch (error) {
      // lmdb-js reports a failed copy by its message only ("No space left on device").
      if (isFileDiskFull(error) || /No space left on device|Disk quota exceeded|File too large/.test((error as Error).message ?? "")) throw fileDiskFullError(file, error);
      throw error;
    }
  }

  get(path: string): JsonValue | undefined {
    checkPath(path);
    return this.reading(`reading ${path}`, () => this.kv.get(path));
  }

  /**
   * The record at `path` in the value encoding (value-codec.ts), as stored: a checkpoint
   * hashes it without decoding it. A record written before that encoding is re-encoded;
   * one that is not JSON throws APEX_E_BAD_JSON.
   */
  getEncoded(path: string): Buffer | undefined {
    checkPath(path);
    const bytes = this.reading(`reading ${path}`, () => this.kv.getBinary(path));
    if (bytes === undefined || isEncodedValue(bytes)) return bytes;
    return encodeJson(legacy().decode(bytes));
  }

  has(path: string): boolean {
    checkPath(path);
    return this.reading(`reading ${path}`, () => this.kv.doesExist(path));
  }

  /** The current global revision (0 for a new store). */
  revision(): number {
    // Inside a batch, with the changes it made so far (logged when its segment ends).
    return this.reading("reading the revision", () => (this.meta.get(REVISION_KEY) as number | undefined) ?? 0) + (this.openSegment?.pending ?? 0);
  }

  /** Entries whose path matches the glob, in key order. */
  *query(glob: string, options: { limit?: number } = {}): Iterable<Entry> {
    yield* this.readingAll(`reading ${glob}`, this.queryRaw(glob, options));
  }

  private *queryRaw(glob: string, options: { limit?: number }): Iterable<Entry> {
    const compiled = compileGlob(glob);
    const limit = options.limit ?? Infinity;
    // A limit of 0 (a page of nothing) yields nothing: the count was checked only after a match was yielded.
    if (limit <= 0) return;
    if (compiled.literal) {
      // A literal glob that is no path names no key (one past LMDB's key size would throw a bare Error).
      if (pathProblem(compiled.prefix) !== undefined) return;
      const value = this.kv.get(compiled.prefix);
      if (value !== undefined) yield { path: compiled.prefix, value };
      return;
    }
    let count = 0;
    for (const { key, value } of this.kv.getRange(this.kvRange(compiled.range as KeyRange<string>))) {
      if (!compiled.matches(key)) continue;
      yield { path: key, value };
      if (++count >= limit) return;
    }
  }

  /** The entry at `path` and every entry below it, in key order. */
  *tree(path: string): Iterable<Entry> {
    yield* this.readingAll(`reading ${path}`, this.treeRaw(path));
  }

  private *treeRaw(path: string): Iterable<Entry> {
    if (path !== "/") {
      const own = this.kv.get(checkPath(path));
      if (own !== undefined) yield { path, value: own };
    }
    for (const { key, value } of this.kv.getRange(this.kvRange(subtreeRange(path)))) yield { path: key, value };
  }

  /** Paths directly or indirectly below `path` (without values). */
  *keysBelow(path: string): Iterable<string> {
    for (const key of this.readingAll(`reading the paths below ${path}`, this.kv.getKeys(this.kvRange(subtreeRange(path))))) yield key as string;
  }

  /** Changes with a revision greater than `since`, oldest first. */
  *changesSince(since: number, options: { limit?: number } = {}): Iterable<Change> {
    yield* this.readingAll("reading the revision log", this.changesSinceRaw(since, options));
  }

  private *changesSinceRaw(since: number, options: { limit?: number }): Iterable<Change> {
    // Read inside a batch: the changes it made so far are logged first (as PostgreSQL sends them).
    this.openSegment?.close();
    let remaining = options.limit ?? Infinity;
    // Nothing past the latest revision: the last batch, which may hold 200,000 changes (an import), is not read to find none.
    if (remaining <= 0 || since >= ((this.meta.get(REVISION_KEY) as number | undefined) ?? 0)) return;
    // The batch holding revision since+1 may start before it.
    let start = since + 1;
    for (const key of this.log.getKeys({ start: since + 1, reverse: true, limit: 1 })) start = key as number;
    // A batch of many changes read again from its middle (memory.changes catching up on an import, 10,000 changes a
    // call) is the one decoded last, when its bytes are still those (a batch rolled back frees its revisions): not decoded again at each call.
    const cached = this.lastLogRecord;
    const hit = cached?.key === start && this.log.getBinaryFast(start)?.equals(cached.bytes) === true;
    const records: Iterable<{ key: number; value: LogRecord }> = hit ? [cached!, ...this.log.getRange({ start: start + 1 })] : this.log.getRange({ start });
    for (const { key, value } of records) {
      if (!hit && key === start && value.p.length >= LOG_RECORD_CACHED) this.lastLogRecord = { key, value, bytes: Buffer.from(this.log.getBinaryFast(key) ?? []) };
      for (let i = Math.max(0, since + 1 - key); i < value.p.length; i++) {
        yield { revision: key + i, path: value.p[i]!, kind: value.k[i] === "d" ? "delete" : "put", actor: value.a, time: value.t };
        if (--remaining <= 0) return;
      }
    }
  }

  /** Sets one value. Resolves once the write is durable; returns its revision. */
  async set(path: string, value: JsonValue, actor?: string): Promise<number> {
    checkPath(path);
    return setOne(this, path, value, actor);
  }

  /** Deletes one path (and, with `recursive`, everything below it). Returns how many were deleted. */
  async delete(path: string, options: { recursive?: boolean; actor?: string } = {}): Promise<{ deleted: number; revision: number }> {
    checkPath(path);
    return deleteOne(this, path, options);
  }

  /**
   * Runs `fn` inside one write transaction. Every set/delete is logged with its own
   * revision; the whole batch commits atomically or not at all.
   */
  async batch<T>(fn: (batch: WriteBatch) => T, actor = this.actor): Promise<{ value: T; revision: number }> {
    // A synchronous transaction, committed (and synced) before it returns: lmdb-js's
    // asynchronous one reports a failed commit as "Commit failed" with the cause in a promise
    // that rejects unhandled, after printing it with its stack.
    return this.transaction(() => this.batchSync(fn, actor));
  }

  /**
   * Runs `fn` in one write transaction over every database of the environment (the keyspace
   * and what plugins keep beside it: objects, catalogs) and resolves with its result once
   * the commit is on disk. Use batch()/batchSync() inside it for logged keyspace writes.
   */
  async transaction<T>(fn: () => T): Promise<T> {
    if (this.inTransaction) return this.transactionSync(fn);
    const out = this.transactionSync(fn);
    try {
      await this.root.flushed;
    } catch (error) {
      throw writeFailure(error, this.dir, "this write");
    }
    return out;
  }

  /**
   * The one synchronous write transaction under transaction() and batchSync(): joins the
   * transaction already open, else commits (synced: overlappingSync is off) before it
   * returns. Not part of the port; tests and tools that write between synchronous steps call
   * it directly.
   */
  transactionSync<T>(fn: () => T): T {
    this.assertWritable();
    if (this.inTransaction) return fn();
    let out!: T;
    for (let attempt = 1; ; attempt++) {
      let created: NonNullable<typeof this.createdTables> = [];
      try {
        this.root.transactionSync(() => {
          // Another process's open may have set LMDB's last commit id back (last-commit.ts):
          // committed on that older state, this write would replace the newest commit.
          if (this.startedStale()) throw STALE_START;
          this.inTransaction = true;
          this.tally = new Map();
          this.createdTables = created = [];
          try {
            out = fn();
            // Thrown here, the error aborts the transaction: LMDB writes nothing.
            this.assertCommitRoom();
          } finally {
            this.inTransaction = false;
            this.tally = undefined;
            this.createdTables = undefined;
          }
        });
        // The process's other handles of the file read this commit from now on (shared-env.ts).
        if (this.handleKey !== undefined) committed(this.handleKey, this.root as unknown as SnapshotHolder);
        return out;
      } catch (error) {
        for (const { table, dbOptions, keys } of created) this.staleTable(table, dbOptions, keys);
        // Put right and aborted before `fn` ran: run it again from the newest commit.
        if (error === STALE_START && attempt < STALE_START_ATTEMPTS) continue;
        if (error === STALE_START) throw new ApexError("APEX_E_STORE", `The store's last commit id kept being set back by other processes (${attempt} tries); nothing was written.`, { hint: "Try again." });
        throw writeFailure(error, this.dir, "this write");
      }
    }
  }

  /** True (and LMDB's lock file put right) when the open write transaction started from an older commit than the newest. */
  private startedStale(): boolean {
    const txnId = (this.root as unknown as { getWriteTxnId(): number }).getWriteTxnId();
    const newest = (this.root as unknown as { env: { info(): { lastTxnId: number } } }).env.info().lastTxnId;
    return repairStaleStart(this.lockFile, txnId, newest);
  }

  /** Counts a put (or, with no value bytes, a delete) into `db` for the commit's room check. */
  private count(db: Database<any, any>, keyBytes: number, valueBytes: number): void {
    if (!this.tally) return;
    let tally = this.tally.get(db);
    if (!tally) this.tally.set(db, (tally = { ops: 0, inlineBytes: 0, overflowPages: 0 }));
    tallyWrite(tally, keyBytes, valueBytes);
  }

  /** An upper bound of what the open transaction's commit may add to the store file. */
  private commitBytes(): number {
    if (!this.tally || this.tally.size === 0) return 0;
    const touched = Array.from(this.tally, ([db, tally]) => ({ tally, pages: db.getStats() as unknown as DbPages }));
    return commitBound(touched, this.root.getStats() as unknown as DbPages);
  }

  /**
   * Refuses a commit that may not fit on the store's filesystem, before LMDB writes any of it
   * (room.ts: LMDB's own failure on a full disk corrupts the process's heap).
   */
  private assertRoom(bytes: number, doing: string, free = freeBytes(this.info.location)): void {
    if (bytes > 0 && bytes > free) throw diskFullError(this.info.location, doing, undefined, bytes);
  }

  /** assertRoom() for the open transaction: the databases' pages are read only when the disk is nearly full. */
  private assertCommitRoom(): void {
    if (!this.tally || this.tally.size === 0) return;
    const free = freeBytes(this.info.location);
    if (quickBound(this.tally.values()) <= free) return;
    this.assertRoom(this.commitBytes(), "this write", free);
  }

  /** Synchronous variant of {@link batch}: holds the write lock only for the call. */
  batchSync<T>(fn: (batch: WriteBatch) => T, actor = this.actor): { value: T; revision: number } {
    // Inside transaction() it is part of that transaction: a nested LMDB transaction would
    // cost a copy of the dirty page list and buy nothing, since an error aborts both.
    return this.transactionSync(() => this.applyBatch(fn, actor));
  }

  private applyBatch<T>(fn: (batch: WriteBatch) => T, actor: string): { value: T; revision: number } {
    // As PostgreSQL, whose text cannot hold it (msgpack logged each unpaired surrogate as three U+FFFD).
    if (/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(actor)) {
      throw new ApexError("APEX_E_INTERNAL", `The actor ${JSON.stringify(actor)} cannot be recorded in the revision log: it holds NUL or an unpaired surrogate. Nothing was written.`);
    }
    // A batch's changes are logged in segments of consecutive revisions: a batch run inside this
    // one (batchSync in its callback) or a read of the log ends the segment open so far, and this
    // batch's next change starts a new one after it. One record at the end, keyed by the batch's
    // first revision, gave a nested batch the same revisions and let this record overwrite its own.
    const enclosing = this.openSegment;
    enclosing?.close();
    const time = Date.now();
    let first = 0;
    let paths: string[] = [];
    let kinds = "";
    const segment = {
      pending: 0,
      close: () => {
        if (paths.length > 0) {
          const entry: LogRecord = { p: paths, k: kinds, a: actor, t: time };
          this.log.put(first, entry);
          this.count(this.log, 8, sizeOf(entry));
          this.meta.put(REVISION_KEY, first - 1 + paths.length);
          this.count(this.meta, REVISION_KEY.length, 9);
        }
        [paths, kinds, segment.pending] = [[], "", 0];
        if (this.openSegment === segment) this.openSegment = undefined;
      },
    };
    const record = (path: string, kind: ChangeKind) => {
      if (this.openSegment !== segment) {
        this.openSegment?.close();
        this.openSegment = segment;
      }
      if (paths.length === 0) first = this.revision() + 1;
      paths.push(path);
      kinds += kind === "put" ? "p" : "d";
      segment.pending = paths.length;
    };
    const kv = this.kv;
    const kvRange = (range: KeyRange<string>) => this.kvRange(range);
    const count = (key: string, valueBytes: number) => this.count(kv, Buffer.byteLength(key), valueBytes);
    const batch: WriteBatch = {
      set(path, value) {
        checkPath(path);
        if (value === undefined) throw new ApexError("APEX_E_BAD_JSON", `No value given for ${path}.`);
        let bytes: Buffer;
        try {
          bytes = encodeJson(value);
        } catch (error) {
          if (error instanceof ApexError) throw new ApexError(error.code, `${path}: ${error.message}`, { ...(error.hint ? { hint: error.hint } : {}), details: { path } });
          throw error;
        }
        kv.put(path, asBinary(bytes) as unknown as JsonValue);
        count(path, bytes.length);
        record(path, "put");
      },
      setEncoded(path, bytes) {
        checkPath(path);
        if (!isEncodedValue(bytes)) throw new ApexError("APEX_E_INTERNAL", `setEncoded(${path}): not in the value encoding.`);
        kv.put(path, asBinary(bytes) as unknown as JsonValue);
        count(path, bytes.length);
        record(path, "put");
      },
      delete(path) {
        checkPath(path);
        if (!kv.doesExist(path)) return false;
        kv.remove(path);
        count(path, 0);
        record(path, "delete");
        return true;
      },
      deleteDamaged(key) {
        if (!kv.doesExist(key)) return false;
        kv.remove(key);
        count(key, 0);
        // A key that is not a path was never written as one: the log (which checkpoints read) keeps paths only.
        if (pathProblem(key) === undefined) record(key, "delete");
        return true;
      },
      deleteTree(path) {
        const keys = Array.from(kv.getKeys(kvRange(subtreeRange(path)))) as string[];
        for (const key of keys) {
          kv.remove(key);
          count(key, 0);
          record(key, "delete");
        }
        return keys.length;
      },
      get(path) {
        return kv.get(checkPath(path));
      },
    };
    let value: T;
    try {
      value = fn(batch);
      if (value instanceof Promise) throw new Error("Store.batch callbacks must be synchronous");
      segment.close();
    } finally {
      // (a throw aborts the transaction: nothing of the segment is kept)
      this.openSegment = enclosing;
    }
    return { value, revision: this.revision() };
  }

  /**
   * Runs a read, turning an LMDB error that means a damaged file into APEX_E_STORE_DAMAGED,
   * which names the store and points to `apex session validate` and `repair`.
   */
  private reading<T>(doing: string, read: () => T): T {
    try {
      return read();
    } catch (error) {
      throw this.readFailure(error, doing);
    }
  }

  /**
   * A read's failure as the ApexError it means: a damaged file (APEX_E_STORE_DAMAGED), or a read
   * after close(), which lmdb-js refuses with a bare Error ("Can not renew a transaction from a
   * closed database"): APEX_E_STORE, as a write after close() and PostgreSQL's reads.
   */
  private readFailure(error: unknown, doing: string): unknown {
    if (this.closed) return storeClosed(error);
    return isDamage(error) ? damageError(this.dir, doing, error) : error;
  }

  /** reading(), for an iteration. */
  private *readingAll<T>(doing: string, items: Iterable<T>): Iterable<T> {
    const iterator = this.reading(doing, () => items[Symbol.iterator]());
    let done = false;
    try {
      for (;;) {
        let next: IteratorResult<T>;
        try {
          next = iterator.next();
        } catch (error) {
          done = true;
          throw this.readFailure(error, doing);
        }
        if (next.done) {
          done = true;
          return;
        }
        yield next.value;
      }
    } finally {
      // A consumer that stops early: let LMDB's range close its cursor.
      if (!done) iterator.return?.();
    }
  }

  private assertWritable(): void {
    if (this.closed) throw storeClosed();
    if (this.readOnly) throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
  }

  /** Waits for pending writes and closes the environment. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // The tables' methods are lmdb-js's own, bound: after close() they refuse as the keyspace's reads do.
    for (const { table } of this.tables.values()) {
      for (const method of Object.keys(table)) (table as unknown as Record<string, unknown>)[method] = () => {
        throw storeClosed();
      };
    }
    try {
      await this.root.close();
    } finally {
      if (this.handleKey !== undefined) handleClosed(this.handleKey, this.root as unknown as SnapshotHolder);
    }
  }
}


/**
 * A new store's directory, with a `.gitignore` of `*` so that the store (which changes with
 * every command) never shows in `git status` of the project around it. An existing
 * `.gitignore` is left as it is.
 */
function writeStoreGitignore(dir: string): void {
  try {
    writeFileSync(join(dir, ".gitignore"), "# APEX's store: never part of the project's history\n*\n", { flag: "wx", mode: 0o600 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
}


/**
 * Whether the environment holds a named database. The root database lists them by name, but
 * its `doesExist(name)` always answers false: a named database's record is not a value that
 * LMDB's get returns. The root's keys are read instead (a seek, not a scan). A database
 * created by another process after this one's read snapshot reads as missing: the creating
 * path then opens it, which is correct, only slower.
 */
export function namedDatabaseExists(root: RootDatabase, name: string): boolean {
  for (const key of root.getKeys({ start: name, limit: 1 })) return key === name;
  return false;
}

/**
 * lmdb-js's getBinaryFast hands out its shared read buffer with an own `length` property set to
 * the value's size. Buffer methods that take the array's real size ignore it: on every Node
 * version equals, compare and hashing; from Node 24 also toString with an encoding, subarray(),
 * slice(), indexOf and Buffer.concat, which then read the bytes of earlier, larger values. The
 * port hands out an exact view instead: no copy, still only valid until the next read.
 * A value larger than that buffer (16 MiB) comes as a plain Uint8Array of its own, without
 * Buffer's methods (readUInt32LE, toString with an encoding): a Buffer over its bytes instead.
 */
export function exactView(bytes: Buffer | undefined): Buffer | undefined {
  if (bytes === undefined || bytes === null) return bytes;
  if (!Buffer.isBuffer(bytes)) return Buffer.from((bytes as Uint8Array).buffer, (bytes as Uint8Array).byteOffset, (bytes as Uint8Array).byteLength);
  const length = bytes.length;
  if (length === bytes.byteLength) return bytes;
  if (length > SMALL_VIEW_BYTES) return bytes.subarray(0, length);
  // A small value's view is the same for every read of that size (the shared buffer's first
  // bytes, valid until the next read either way): made once, not per read (a whole-tree read
  // locates 14k objects, each an index record of a few bytes, and each view is an object).
  if (viewsOf !== bytes) {
    viewsOf = bytes;
    smallViews = [];
  }
  return (smallViews[length] ??= bytes.subarray(0, length));
}

/** Values up to this size get a view made once per size (exactView). */
const SMALL_VIEW_BYTES = 64;
/** The shared read buffer the views in `smallViews` are of, by size. */
let viewsOf: Buffer | undefined;
let smallViews: Array<Buffer | undefined> = [];

/** What a read or write of a store after its close() throws. */
function storeClosed(cause?: unknown): ApexError {
  return new ApexError("APEX_E_STORE", "The store is closed.", cause === undefined ? {} : { cause });
}

/** A table that does not exist yet in a read-only store: reads as empty, refuses writes. */
function emptyTable(): Table<TableKey, unknown> {
  const refuse = () => {
    throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
  };
  return {
    get: () => undefined,
    getBinaryFast: () => undefined,
    put: refuse,
    remove: refuse,
    doesExist: () => false,
    getKeys: () => [],
    getRange: () => [],
    getCount: () => 0,
    getStats: () => ({ entryCount: 0 }),
  };
}

/**
 * A store directory that is a file, or below one (`APEX_STORE_URL=lmdb:notes.txt`, a file named
 * `.apex`): a config error naming it, not the ENOTDIR of the first stat that meets it.
 */
function assertStoreDirectory(dataDir: string): void {
  assertNotPostgresUrl(dataDir);
  for (let at = dataDir; ; at = dirname(at)) {
    let stat: ReturnType<typeof statSync> | undefined;
    try {
      stat = statSync(at, { throwIfNoEntry: false });
    } catch (error) {
      // ENOTDIR: a file above it, met on the way up; anything else is left to the open.
      if ((error as NodeJS.ErrnoException).code !== "ENOTDIR") return;
    }
    if (stat) {
      if (stat.isDirectory()) return;
      throw new ApexError("APEX_E_CONFIG", `The LMDB store directory ${dataDir} cannot be used: ${at} is a file, not a directory.`, {
        hint: "Point store.url in apex.config.yaml (or APEX_STORE_URL=lmdb:PATH) at a directory, or at a path where one can be made.",
        details: { dir: dataDir, file: at },
      });
    }
    if (dirname(at) === at) return;
  }
}

/** The built-in default backend. */
export const lmdbBackend: StorageBackendFactory = {
  // A writable open waits while this process's handles of the file share a read-only environment (shared-env.ts).
  open: (spec, options) => {
    assertStoreDirectory(lmdbDataDir(spec));
    checkStoreAccess(lmdbDataDir(spec));
    return options.readOnly ? LmdbStore.open(spec.dir, options, lmdbDataDir(spec)) : whenWritable(join(lmdbDataDir(spec), STORE_FILE), () => LmdbStore.open(spec.dir, options, lmdbDataDir(spec)));
  },
  exists: (spec) => lmdbStoreExists(spec),
  // What open() checks first: the store directory is not a file.
  check: (spec) => assertStoreDirectory(lmdbDataDir(spec)),
};
