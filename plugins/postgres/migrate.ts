/**
 * Copies a store from one storage backend to another through the port alone (LMDB → PostgreSQL,
 * PostgreSQL → LMDB, or between two servers), then verifies the copy against the source.
 *
 * - Every table named by `tableNames()`, row by row, keys and values as the table's kinds say.
 *   The port does not say a table's kinds; they come from `tables` (the plugins that own them
 *   know them), else from the source when it can say (the PostgreSQL backend's tableOptions()).
 * - Then the keyspace and its revision log, in one transaction: the source's log is replayed on
 *   the target, batch by batch, with the same paths, kinds and actors in the same order, so every
 *   path gets the same revision number on both sides (checkpoints record revisions and read
 *   changes since them). Only a path's last put in the log carries its value (as stored, in the
 *   value encoding, so checkpoint hashes stay equal); earlier puts write a placeholder that later
 *   changes replace, so a copy stopped before its commit must leave no keyspace at all.
 *   The log's times are the copy's: the port writes a batch with the time of its commit.
 * - Verification reads both stores back: every keyspace record byte for byte, the revision and
 *   every change (revision, path, kind, actor), every table's rows.
 * The source is only read. The target must be empty: nothing is written to a store that
 * already holds data.
 */
import { isDeepStrictEqual } from "node:util";
import { ApexError, withDetail } from "../../core/errors.js";
import { encodedByPath, type Change, type StorageBackend, type TableKey, type TableOptions } from "../../core/store/port.js";
import { encodeJson } from "../value-codec.js";

export interface MigrateOptions {
  /** The kinds of each table, by name (the tables' owners know them). */
  tables?: Record<string, TableOptions>;
  /** Progress lines ("copied 10000 changes"). */
  onProgress?: (message: string) => void;
  /**
   * Empties the target when it holds an interrupted copy of this source (see copyState),
   * so the copy starts again; without it such a target is refused like any other that holds data.
   */
  clearInterrupted?: () => void;
}

export interface MigrateReport {
  revision: number;
  changes: number;
  entries: number;
  tables: Record<string, number>;
  verified: true;
}

/** A backend that can say the kinds of its tables (the PostgreSQL backend can). */
interface TableCatalog {
  tableOptions(name: string): TableOptions | undefined;
}

/** A progress line every this many changes replayed. */
const CHANGES_PER_PROGRESS = 5000;
const ROWS_PER_TRANSACTION = 2000;
const PLACEHOLDER = encodeJson(null);
/**
 * Keyspace records the verification compares at a time, each side read together (encodedByPath).
 * The replay reads its group's (ROWS_PER_TRANSACTION) so too. Read a round trip each on
 * PostgreSQL, they made 60k of the reads of a migration of 30k memory keys to LMDB: 16.6 s, 3.1 s
 * read together; from LMDB, 77 s and 6.1 s with the checkpoints' validation.
 */
const RECORDS_AT_ONCE = 2000;

export async function migrateStore(source: StorageBackend, target: StorageBackend, options: MigrateOptions = {}): Promise<MigrateReport> {
  const progress = options.onProgress ?? (() => undefined);
  if (target.readOnly) throw new ApexError("APEX_E_USAGE", "The target store was opened read-only.");
  const names = source.tableNames();
  const tableOptions = new Map<string, TableOptions>();
  const unknown: string[] = [];
  for (const name of names) {
    const known = options.tables?.[name] ?? (source as unknown as Partial<TableCatalog>).tableOptions?.(name);
    if (known) tableOptions.set(name, known);
    else unknown.push(name);
  }
  if (unknown.length > 0) {
    throw new ApexError("APEX_E_USAGE", `Cannot copy table${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: ${unknown.length > 1 ? "their" : "its"} key and value kinds are not known.`, {
      hint: "Enable the plugins that own them (they declare their tables), then run the migration again. Nothing was written.",
      details: { tables: unknown },
    });
  }
  if (holdsData(target)) {
    const state = copyState(source, target, tableOptions);
    const interrupted = state === "interrupted";
    if (state === "whole") {
      // A migration that finished its copy and was stopped before it said so (kill -9, a closed terminal): nothing to redo.
      throw new ApexError("APEX_E_CONFLICT", `The target store (${targetLabel(target)}) already holds a whole copy of this store (revision ${source.revision()}, checked record by record now); a migration copies into an empty store only.`, {
        hint: "That copy can be used as it is (an earlier migration into it finished its copy); to copy again, empty the target first.",
        details: { whole_copy: true, revision: source.revision() },
      });
    }
    if (!interrupted || !options.clearInterrupted) {
      throw new ApexError(
        "APEX_E_CONFLICT",
        `The target store (${targetLabel(target)}) already holds ${interrupted ? `an interrupted copy of this store (revision ${target.revision()} of ${source.revision()})` : "data"}; a migration copies into an empty store only.`,
        {
          hint: interrupted
            ? "Remove the target directory (it holds only that copy) and run the migration again."
            : "Point --to at a new database (or another project id), or an empty directory.",
        },
      );
    }
    progress(`the target holds an interrupted copy of this store (revision ${target.revision()} of ${source.revision()}): emptied, copying again`);
    options.clearInterrupted();
  }

  // Tables, row by row, before the keyspace that names what they hold (a copy stopped half-way
  // leaves objects nothing refers to, not checkpoints whose objects are missing).
  const tableCounts: Record<string, number> = {};
  for (const name of names) {
    const kinds = tableOptions.get(name)!;
    const from = source.table<TableKey, unknown>(name, kinds);
    const to = target.table<TableKey, unknown>(name, kinds);
    let rows: Array<{ key: TableKey; value: unknown }> = [];
    let count = 0;
    const flushRows = async () => {
      const pending = rows;
      rows = [];
      await target.transaction(() => {
        for (const { key, value } of pending) to.put(key, value);
      });
    };
    for (const row of from.getRange()) {
      rows.push({ key: row.key, value: kinds.values === "binary" ? Buffer.from(row.value as Buffer) : row.value });
      count++;
      if (rows.length >= ROWS_PER_TRANSACTION) {
        await flushRows();
        progress(`copying table ${name}: ${count} rows so far`);
      }
    }
    if (rows.length > 0) await flushRows();
    tableCounts[name] = count;
    progress(`copied table ${name}: ${count} row${count === 1 ? "" : "s"}`);
  }

  // The keyspace: which put of each path is its last (the one that carries the value).
  const revision = source.revision();
  const lastPut = new Map<string, number>();
  let changes = 0;
  for (const change of source.changesSince(0)) {
    changes++;
    if (change.kind === "put") lastPut.set(change.path, change.revision);
  }
  progress(`replaying ${changes} change${changes === 1 ? "" : "s"} (revision ${revision})`);
  // One transaction for the whole log: a copy stopped before its commit (Ctrl-C, kill -9, a lost
  // connection) leaves no keyspace at all, never records that still hold the placeholder of an
  // earlier put (a store opened half-copied showed sessions and memory as null). Consecutive
  // changes by one actor at one instant were one batch; each stays one batch.
  let replayed = 0;
  let nextProgress = CHANGES_PER_PROGRESS;
  await target.transaction(() => {
    // Under the target's write lock: nothing else may have written its keyspace since the check
    // above (another migration into it, a command pointed at it), or the replay would go on after
    // its revisions and a copy that verified would end up with its log twice.
    if (target.revision() !== 0 || !firstOf(target.keys({})).done) {
      throw new ApexError("APEX_E_CONFLICT", `The target store (${targetLabel(target)}) was written to while this copy ran (it is at revision ${target.revision()}): another migration into it, or a command using it. This copy wrote no memory there.`, {
        hint: "If another `apex store migrate` into it succeeded, that copy is whole (it verified); else find what writes there, empty the target and run the migration again.",
      });
    }
    let group: Change[] = [];
    const flushGroup = () => {
      const values = encodedByPath(source, group.filter((change) => change.kind === "put" && lastPut.get(change.path) === change.revision).map((change) => change.path));
      target.batchSync((batch) => {
        for (const change of group) {
          if (change.kind === "delete") {
            if (!batch.delete(change.path)) throw integrity(`the log deletes ${change.path} at revision ${change.revision}, which the copy does not hold`);
            continue;
          }
          const bytes = lastPut.get(change.path) === change.revision ? values.get(change.path) : undefined;
          batch.setEncoded(change.path, bytes ?? PLACEHOLDER);
        }
      }, group[0]!.actor);
      replayed += group.length;
      if (replayed >= nextProgress) {
        progress(`replayed ${replayed} of ${changes} changes`);
        nextProgress = replayed + CHANGES_PER_PROGRESS;
      }
      group = [];
    };
    for (const change of source.changesSince(0)) {
      if (group.length > 0 && (change.actor !== group[0]!.actor || change.time !== group[0]!.time)) flushGroup();
      group.push(change);
    }
    if (group.length > 0) flushGroup();
  });

  const entries = verify(source, target, tableOptions);
  progress(`verified: ${entries} record${entries === 1 ? "" : "s"}, revision ${revision}, ${names.length} table${names.length === 1 ? "" : "s"}`);
  return { revision, changes, entries, tables: tableCounts, verified: true };
}

function integrity(message: string): ApexError {
  return new ApexError("APEX_E_INTEGRITY", withDetail(`The copy does not match its source`, message));
}

function holdsData(target: StorageBackend): boolean {
  return target.revision() > 0 || !firstOf(target.keys({})).done || target.tableNames().length > 0;
}

/**
 * "interrupted" when `target` is what an interrupted migration of `source` leaves (Ctrl-C, a lost
 * connection, a source found damaged half-way): tables among the source's and no keyspace at all
 * (the keyspace and its log are copied last, in one transaction), and not a whole copy. "whole"
 * when it is a whole copy (it verifies); undefined for anything else. A target with a keyspace that
 * does not verify is never taken for an interrupted copy: an earlier copy of this store written to
 * since (its log can still match the source's change for change, the values differing) was
 * emptied, and what was written there lost.
 */
function copyState(source: StorageBackend, target: StorageBackend, tables: Map<string, TableOptions>): "interrupted" | "whole" | undefined {
  if (target.revision() > source.revision()) return undefined;
  const keyspace = target.revision() > 0 || !firstOf(target.keys({})).done;
  const theirs = source.changesSince(0)[Symbol.iterator]();
  try {
    for (const change of target.changesSince(0)) {
      const next = theirs.next();
      if (next.done || next.value.revision !== change.revision || next.value.path !== change.path || next.value.kind !== change.kind || next.value.actor !== change.actor) return undefined;
    }
  } finally {
    theirs.return?.();
  }
  const names = new Set(source.tableNames());
  if (!target.tableNames().every((name) => names.has(name))) return undefined;
  try {
    verify(source, target, tables);
    return "whole";
  } catch (error) {
    if (error instanceof ApexError && error.code === "APEX_E_INTEGRITY") return keyspace ? undefined : "interrupted";
    throw error;
  }
}

function firstOf<T>(items: Iterable<T>): IteratorResult<T> {
  const iterator = items[Symbol.iterator]();
  const first = iterator.next();
  iterator.return?.();
  return first;
}

/** Reads both stores back in step; the first difference throws APEX_E_INTEGRITY. Returns the number of keyspace records. */
function verify(source: StorageBackend, target: StorageBackend, tables: Map<string, TableOptions>): number {
  if (source.revision() !== target.revision()) throw integrity(`revision ${target.revision()}, the source's is ${source.revision()}`);
  let entries = 0;
  const sourceKeys = source.keys({})[Symbol.iterator]();
  const targetKeys = target.keys({})[Symbol.iterator]();
  // The keys in step, their values compared RECORDS_AT_ONCE at a time; the first difference is the one said.
  for (let done = false; !done; ) {
    const paths: string[] = [];
    let keyDifference: ApexError | undefined;
    while (paths.length < RECORDS_AT_ONCE) {
      const a = sourceKeys.next();
      const b = targetKeys.next();
      if (a.done || b.done) {
        if (!a.done || !b.done) keyDifference = integrity(`${a.done ? `the copy has ${b.value} more` : `the copy lacks ${a.value}`}`);
        done = true;
        break;
      }
      if (a.value !== b.value) {
        keyDifference = integrity(`key ${b.value} where the source has ${a.value}`);
        break;
      }
      paths.push(a.value);
    }
    const lefts = encodedByPath(source, paths);
    const rights = encodedByPath(target, paths);
    for (const path of paths) {
      const left = lefts.get(path);
      const right = rights.get(path);
      if (!left || !right || !left.equals(right)) throw integrity(`the value of ${path} differs`);
      entries++;
    }
    if (keyDifference) throw keyDifference;
  }
  const sourceChanges = source.changesSince(0)[Symbol.iterator]();
  const targetChanges = target.changesSince(0)[Symbol.iterator]();
  for (;;) {
    const a = sourceChanges.next();
    const b = targetChanges.next();
    if (a.done || b.done) {
      if (!a.done || !b.done) throw integrity("the revision logs differ in length");
      break;
    }
    const x = a.value;
    const y = b.value;
    if (x.revision !== y.revision || x.path !== y.path || x.kind !== y.kind || x.actor !== y.actor) {
      throw integrity(`change ${y.revision} is ${y.kind} ${y.path} by ${y.actor}; the source's is ${x.kind} ${x.path} by ${x.actor}`);
    }
  }
  for (const [name, kinds] of tables) {
    const left = source.table<TableKey, unknown>(name, kinds).getRange()[Symbol.iterator]();
    const right = target.table<TableKey, unknown>(name, kinds).getRange()[Symbol.iterator]();
    for (;;) {
      const a = left.next();
      const b = right.next();
      if (a.done || b.done) {
        if (!a.done || !b.done) throw integrity(`table ${name} has a different number of rows`);
        break;
      }
      if (!isDeepStrictEqual(normal(a.value.key), normal(b.value.key)) || !isDeepStrictEqual(normal(a.value.value), normal(b.value.value))) {
        throw integrity(`table ${name} differs at key ${JSON.stringify(normal(a.value.key))}`);
      }
    }
  }
  return entries;
}

/** Buffers compare by content whatever their class (a Uint8Array view, a pooled Buffer). */
function normal(value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString("hex") : value;
}

/**
 * The target as the migration's report names it: `postgres at URL, project ID` (a PostgreSQL
 * backend's location is `URL#ID`, which read as a URL with a fragment), or `lmdb at DIR`.
 */
function targetLabel(target: StorageBackend): string {
  const { backend, location } = target.info;
  const mark = backend === "postgres" ? location.indexOf("#") : -1;
  return mark < 0 ? `${backend} at ${location}` : `${backend} at ${location.slice(0, mark)}, project ${location.slice(mark + 1)}`;
}
