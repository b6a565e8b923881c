/**
 * Reading a store file record by record past LMDB-level damage, and copying what reads into a
 * fresh file. The store's own reads stop at the first damaged page (APEX_E_STORE_DAMAGED); a
 * scan here notes the damage, seeks past it and goes on, so `session validate` can list every
 * damaged region and `session repair` can keep every record that still reads.
 *
 * Every table of the environment is read raw (binary keys and values, or uint32 keys for a
 * table created with integer keys), so a copy is byte for byte whatever the table holds, and
 * the plugins that made the tables need not be known.
 *
 * A damaged page can also crash the reader (SIGSEGV/SIGBUS: LMDB maps the file). So this runs
 * in a child process (salvage-process.ts): after each record it appends the record's key to a
 * progress file, and when the child dies by a signal the parent starts it again, telling it
 * where it crashed, and the scan skips past that point as it does past damage it is told of.
 */
import { appendFileSync, existsSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { Database, RootDatabase } from "lmdb";
import { isDamage } from "./errors.js";

const requireLmdb = createRequire(import.meta.url);
const { open } = requireLmdb("lmdb") as typeof import("lmdb");

/** LMDB's MDB_INTEGERKEY flag, as kept in a table's record in the main database. */
const INTEGER_KEY = 0x08;
/** Same as the store (store.ts): address space, not disk. */
const MAP_SIZE = 4 * 1024 ** 3;
/** After this many seeks past one damaged region without reading a record, the rest of the table is given up. */
const MAX_SKIP_LEVEL = 64;

type Key = Buffer | number;

export interface DamagedRegion {
  table: string;
  /** The last key read before the damage (hex, or the number for uint32 tables); null at the table's start. */
  after: string | null;
  /** What LMDB said, or the signal that ended the reader. */
  message: string;
}

export interface TableScan {
  name: string;
  integerKeys: boolean;
  /** Records that read (and, in a copy, were copied). */
  records: number;
  /** How many records the table's header says it holds. */
  entries: number;
  damaged: DamagedRegion[];
}

export interface ScanResult {
  tables: TableScan[];
  /** Damage in the list of tables itself: tables after it may be missing. */
  damaged: DamagedRegion[];
}

/** A point where an earlier reader died: `attempts` is how many times it died there. */
export interface CrashPoint {
  table: string;
  after: string | null;
  attempts: number;
  signal: string;
}

export interface ScanOptions {
  /** Copy every record that reads into a new store file at this path (its directory is created). */
  copyTo?: string;
  /** Where the reader appends `<table>\t<key>` after each record it read: what a parent reads when the reader dies. */
  progressFile?: string;
  crashes?: CrashPoint[];
}

function keyText(key: Key | undefined): string | null {
  if (key === undefined) return null;
  return typeof key === "number" ? String(key) : key.toString("hex");
}

/**
 * Where to go on after damage that follows `last`: at level 1 just after it; each further
 * level skips a wider range (the last byte of a shorter prefix incremented, or a larger step
 * of an integer key), so a damaged page whose keys are unknown is eventually passed. Undefined:
 * nothing is left to try.
 */
export function seekPast(last: Key | undefined, level: number): Key | undefined {
  if (typeof last === "number") {
    const next = last + (level <= 1 ? 1 : 2 ** Math.min(32, 2 * (level - 1)));
    return next > 0xffffffff ? undefined : next;
  }
  if (last === undefined) return undefined;
  if (level <= 1) return Buffer.concat([last, Buffer.from([0])]);
  // Level 2 increments the last byte, level 3 the one before it (dropping what follows), …
  for (let length = last.length - (level - 2); length > 0; length--) {
    const prefix = Buffer.from(last.subarray(0, length));
    if (prefix[length - 1]! < 0xff) {
      prefix[length - 1]! += 1;
      return prefix;
    }
  }
  return undefined;
}

/** A new store file at `path` (its directory made, a file an earlier run left there removed) for the records a salvage copies. */
/** Records copied into table `name` of `target`, a thousand to a write transaction; undefined without a target (a dry run). */
export function tableWriter(target: RootDatabase | undefined, name: string, integerKeys: boolean): { add(key: Buffer | number, value: Buffer): void; flush(): void } | undefined {
  if (!target) return undefined;
  const out = target.openDB<Buffer, Key>({ name, encoding: "binary", keyEncoding: integerKeys ? "uint32" : "binary" } as { name: string });
  const pending: Array<[Key, Buffer]> = [];
  const flush = () => {
    if (pending.length === 0) return;
    target.transactionSync(() => {
      for (const [key, value] of pending) out.put(key, value);
    });
    pending.length = 0;
  };
  return {
    add(key, value) {
      pending.push([key, value]);
      if (pending.length >= 1000) flush();
    },
    flush,
  };
}

export function openCopyTarget(path: string): RootDatabase {
  mkdirSync(join(path, ".."), { recursive: true, mode: 0o700 });
  if (existsSync(path)) rmSync(path);
  if (existsSync(`${path}-lock`)) rmSync(`${path}-lock`);
  return open({ path, maxDbs: 64, compression: false, mapSize: MAP_SIZE, overlappingSync: false });
}

/**
 * The damaged file, read-only. LMDB marks a read transaction that met damage as failed (every
 * later read in it is MDB_BAD_TXN), so after damage the environment is opened again.
 */
class Source {
  root: RootDatabase<Buffer, string>;
  constructor(private readonly file: string) {
    this.root = this.open();
  }
  private open(): RootDatabase<Buffer, string> {
    return open({ path: this.file, readOnly: true, maxDbs: 64, compression: false, mapSize: MAP_SIZE, encoding: "binary" }) as RootDatabase<Buffer, string>;
  }
  reopen(): void {
    this.root.close();
    this.root = this.open();
  }
  table(name: string, keyEncoding: "uint32" | "binary"): Database<Buffer, Key> {
    return this.root.openDB<Buffer, Key>({ name, encoding: "binary", keyEncoding } as { name: string });
  }
}

/** Reads every table of the store file `file` record by record, going on past damage. */
export function scanStoreFile(file: string, options: ScanOptions = {}): ScanResult {
  const source = new Source(file);
  const target = options.copyTo ? openCopyTarget(options.copyTo) : undefined;
  // `<table>\t` alone marks the start of a table (the list of tables is table "").
  const progress = (table: string, key: Key | undefined) => {
    if (options.progressFile) appendFileSync(options.progressFile, `${table}\t${keyText(key) ?? ""}\n`);
  };
  try {
    progress("", undefined);
    const listed = listTables(source, options);
    const tables = listed.tables.map(({ name, integerKeys, entries }) => {
      const scan = scanTable(source, target, name, integerKeys, options, progress);
      scan.entries = entries;
      // Damage that sends a branch to the wrong page ends a range early without an error: only the count shows it.
      if (scan.records < entries && scan.damaged.length === 0) {
        scan.damaged.push({ table: name, after: null, message: `${entries - scan.records} of the ${entries} record${entries === 1 ? "" : "s"} the table's header counts could not be reached` });
      }
      return scan;
    });
    return { tables, damaged: listed.damaged };
  } finally {
    source.root.close();
    target?.close();
  }
}

function listTables(source: Source, options: ScanOptions): { tables: Array<{ name: string; integerKeys: boolean; entries: number }>; damaged: DamagedRegion[] } {
  const tables: Array<{ name: string; integerKeys: boolean; entries: number }> = [];
  const damaged: DamagedRegion[] = [];
  if (options.crashes?.some((crash) => crash.table === "")) {
    damaged.push({ table: "", after: null, message: "the list of tables crashed the reader" });
    return { tables, damaged };
  }
  try {
    for (const { key, value } of source.root.getRange()) {
      // The table's MDB_db record: md_pad (4 bytes), md_flags (2), md_depth (2), three page counts (8 each), md_entries (8), md_root.
      if (!Buffer.isBuffer(value) || value.length < 40) continue;
      tables.push({ name: String(key), integerKeys: (value.readUInt16LE(4) & INTEGER_KEY) !== 0, entries: Number(value.readBigUInt64LE(32)) });
    }
  } catch (error) {
    if (!isDamage(error)) throw error;
    damaged.push({ table: "", after: tables.at(-1)?.name ?? null, message: (error as Error).message });
  }
  return { tables, damaged };
}

function scanTable(
  source: Source,
  target: RootDatabase | undefined,
  name: string,
  integerKeys: boolean,
  options: ScanOptions,
  progress: (table: string, key: Key | undefined) => void,
): TableScan {
  const keyEncoding = integerKeys ? "uint32" : "binary";
  const scan: TableScan = { name, integerKeys, records: 0, entries: 0, damaged: [] };
  let db: Database<Buffer, Key>;
  try {
    db = source.table(name, keyEncoding);
  } catch (error) {
    if (!isDamage(error)) throw error;
    scan.damaged.push({ table: name, after: null, message: (error as Error).message });
    return scan;
  }
  const out = tableWriter(target, name, integerKeys);
  const crashes = new Map((options.crashes ?? []).filter((crash) => crash.table === name).map((crash) => [crash.after, crash]));
  let last: Key | undefined;
  let start: Key | undefined;
  let level = 0;
  const skip = (message: string, atLevel: number): boolean => {
    // Seeking wider past the same damage is still one damaged region.
    const previous = scan.damaged.at(-1);
    if (!previous || previous.after !== keyText(last)) scan.damaged.push({ table: name, after: keyText(last), message });
    level = atLevel;
    start = last === undefined ? undefined : seekPast(last, level);
    return start !== undefined && level <= MAX_SKIP_LEVEL;
  };
  progress(name, undefined);
  // A crash before the first record: nothing of the table can be read safely.
  const atStart = crashes.get(null);
  if (atStart) {
    scan.damaged.push({ table: name, after: null, message: `the reader was killed by ${atStart.signal}` });
    return scan;
  }
  for (;;) {
    let stoppedAt: CrashPoint | undefined;
    try {
      for (const { key, value } of db.getRange(start === undefined ? {} : { start })) {
        if (last !== undefined && compareKeys(key, last) <= 0) continue;
        last = key;
        level = 0;
        scan.records += 1;
        out?.add(key, Buffer.from(value));
        progress(name, key);
        stoppedAt = crashes.get(keyText(key));
        if (stoppedAt) break;
      }
    } catch (error) {
      if (!isDamage(error)) throw error;
      source.reopen();
      db = source.table(name, keyEncoding);
      if (skip((error as Error).message, level + 1)) continue;
      break;
    }
    // An earlier reader died reading what follows this key: go past it without reading it.
    if (stoppedAt && skip(`the reader was killed by ${stoppedAt.signal}`, stoppedAt.attempts + 1)) continue;
    break;
  }
  out?.flush();
  return scan;
}

function compareKeys(a: Key, b: Key): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return Buffer.compare(a as Buffer, b as Buffer);
}
