/**
 * Salvage of a truncated store file (a copy cut short, a full disk), page by page, without LMDB.
 *
 * LMDB maps the file: a page past its end is a SIGBUS, so the record-by-record reader
 * (salvage.ts) dies on every table whose tree reaches past the cut, and when the list of tables
 * (the main database, rooted where the meta page says) is past it, nothing can be read at all.
 * Here the file is read with bounds-checked reads, page by page, and never mapped:
 *
 * - The newest meta page whose main database root is still in the file gives the list of
 *   tables; when that is the newest meta page, every table is walked as it was at the last
 *   commit, and every record in a page that is still there is taken.
 * - When no meta page's root is left, the file is scanned for leaf pages of the main database
 *   (nodes flagged F_SUBDATA: a table's name and its MDB_db record); the newest one (by the
 *   transaction id every page carries) is the list of tables as it was at that commit: the
 *   store is read as it was then, and what later commits wrote is reported lost.
 *
 * LMDB copies a page on write (a new page, the old one freed and later reused), so a page a
 * parent names is taken only if its header names that page and a transaction no later than the
 * parent's: a page reused since is not the one the parent named. What is read is therefore a
 * consistent state of the store as of one commit, less the pages that are gone; nothing is
 * pieced together from pages of different commits. Values are copied byte for byte.
 *
 * Offsets are those of lmdb-js's LMDB (mdb.c): a 24-byte page header (page number, txn id, pad,
 * flags, lower, upper; an overflow page's count where lower and upper are), nodes of an 8-byte
 * header (lo, hi, flags, key size) and their key and data; MDB_meta after a page header: magic,
 * version, address, map size, two 48-byte MDB_db records (pad, flags, depth, three page counts,
 * entries, root), last page, txn id.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { RootDatabase } from "lmdb";
import { openCopyTarget, tableWriter, type DamagedRegion, type ScanResult, type TableScan } from "./salvage.js";

const MAGIC = 0xbeefc0de;
const HEADER = 24;
const META_AT = HEADER;
const DB_RECORD = 48;
const MAIN_DB_AT = META_AT + 24 + DB_RECORD;
const LAST_PAGE_AT = META_AT + 24 + 2 * DB_RECORD;
const TXNID_AT = LAST_PAGE_AT + 8;
const NO_PAGE = 0xffffffffffffffffn;
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_OVERFLOW = 0x04;
const P_LEAF2 = 0x20;
const P_SUBP = 0x40;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
const F_DUPDATA = 0x04;
const INTEGER_KEY = 0x08;
/** lmdb-js's largest key. */
const MAX_KEY_BYTES = 1978;
/** Bounds the walk of a damaged file whose pages point in circles. */
const MAX_PAGES = 1 << 24;

interface TableRecord {
  name: string;
  flags: number;
  entries: number;
  root: bigint;
}

/** The file, read page by page with bounds-checked reads: a page past its end is undefined, never a signal. */
class PageFile {
  /** Whole pages in the file (a page cut inside is not one). */
  readonly pages: number;
  readonly size: number;
  private readonly fd: number;
  constructor(
    file: string,
    readonly pageSize: number,
  ) {
    this.fd = openSync(file, "r");
    this.size = fstatSync(this.fd).size;
    this.pages = Math.floor(this.size / pageSize);
  }
  read(pgno: bigint, count = 1): Buffer | undefined {
    if (pgno < 0n || pgno + BigInt(count) > BigInt(this.pages)) return undefined;
    const buffer = Buffer.alloc(count * this.pageSize);
    return readSync(this.fd, buffer, 0, buffer.length, Number(pgno) * this.pageSize) === buffer.length ? buffer : undefined;
  }
  close(): void {
    closeSync(this.fd);
  }
}

interface Meta {
  txnid: bigint;
  mainRoot: bigint;
  mainDepth: number;
}

function readMetas(head: Buffer, pageSize: number): Meta[] {
  const metas: Meta[] = [];
  for (const page of [0, 1]) {
    const at = page * pageSize;
    if (at + TXNID_AT + 8 > head.length || head.readUInt32LE(at + META_AT) !== MAGIC) continue;
    metas.push({ txnid: head.readBigUInt64LE(at + TXNID_AT), mainRoot: head.readBigUInt64LE(at + MAIN_DB_AT + 40), mainDepth: head.readUInt16LE(at + MAIN_DB_AT + 6) });
  }
  return metas.sort((a, b) => (a.txnid > b.txnid ? -1 : a.txnid < b.txnid ? 1 : 0));
}

interface Node {
  flags: number;
  key: Buffer;
  /** Leaf: the data size; branch: unused. */
  size: number;
  /** Branch: the child page. */
  child: bigint;
  /** Where the node's data starts in the page. */
  data: number;
}

/** The nodes of a branch or leaf page, or undefined when the page is not one (damaged, an overflow page, another page's bytes). */
function nodesOf(page: Buffer, pageSize: number): Node[] | undefined {
  const flags = page.readUInt16LE(18);
  const branch = (flags & P_BRANCH) !== 0;
  if (branch === ((flags & P_LEAF) !== 0) || (flags & (P_LEAF2 | P_SUBP | P_OVERFLOW)) !== 0) return undefined;
  const lower = page.readUInt16LE(20);
  const upper = page.readUInt16LE(22);
  if (lower > upper || HEADER + upper > pageSize) return undefined;
  const nodes: Node[] = [];
  for (let index = 0; index < lower >> 1; index++) {
    const at = HEADER + page.readUInt16LE(HEADER + 2 * index);
    if (at < HEADER + lower || at + 8 > pageSize) return undefined;
    const lo = page.readUInt16LE(at);
    const hi = page.readUInt16LE(at + 2);
    const nodeFlags = page.readUInt16LE(at + 4);
    const keySize = page.readUInt16LE(at + 6);
    const data = at + 8 + keySize;
    if (data > pageSize) return undefined;
    const size = lo | (hi << 16);
    if (!branch && data + ((nodeFlags & F_BIGDATA) !== 0 ? 8 : size) > pageSize) return undefined;
    nodes.push({ flags: nodeFlags, key: page.subarray(at + 8, data), size: size >>> 0, child: BigInt(lo) | (BigInt(hi) << 16n) | (BigInt(nodeFlags) << 32n), data });
  }
  return nodes;
}

/** A page as its parent names it: undefined, with why, when it is past the end, is another page now, or is no tree page. */
function treePage(file: PageFile, pgno: bigint, notAfter: bigint): { page: Buffer; txnid: bigint; nodes: Node[] } | { missing: "cut" | "reused" | "damaged" } {
  const page = file.read(pgno);
  if (!page) return { missing: "cut" };
  const txnid = page.readBigUInt64LE(8);
  if (page.readBigUInt64LE(0) !== pgno) return { missing: "damaged" };
  if (txnid > notAfter) return { missing: "reused" };
  const nodes = nodesOf(page, file.pageSize);
  return nodes ? { page, txnid, nodes } : { missing: "damaged" };
}

function tableRecords(nodes: Node[], page: Buffer): TableRecord[] {
  const records: TableRecord[] = [];
  for (const node of nodes) {
    if ((node.flags & (F_SUBDATA | F_BIGDATA)) !== F_SUBDATA || node.size !== DB_RECORD || node.key.length === 0 || node.data + DB_RECORD > page.length) continue;
    const db = page.subarray(node.data, node.data + DB_RECORD);
    records.push({ name: node.key.toString("utf8").replace(/\0$/, ""), flags: db.readUInt16LE(4), entries: Number(db.readBigUInt64LE(32)), root: db.readBigUInt64LE(40) });
  }
  return records;
}

/** The list of tables from the main database's tree rooted at `root`, as of `txnid`; undefined when its root page is not there. */
function listFromRoot(file: PageFile, root: bigint, txnid: bigint): TableRecord[] | undefined {
  if (root === NO_PAGE) return [];
  const top = treePage(file, root, txnid);
  if ("missing" in top) return undefined;
  const records: TableRecord[] = [];
  const todo = [top];
  let walked = 0;
  while (todo.length > 0 && walked++ < MAX_PAGES) {
    const at = todo.pop()!;
    if ((at.page.readUInt16LE(18) & P_LEAF) !== 0) {
      records.push(...tableRecords(at.nodes, at.page));
      continue;
    }
    for (const node of at.nodes) {
      const child = treePage(file, node.child, at.txnid);
      if (!("missing" in child)) todo.push(child);
    }
  }
  return records;
}

/**
 * The newest leaf pages of the main database left in the file (nodes flagged F_SUBDATA), at
 * most as new as the newest meta page: its records, and the commit they are of. A main database
 * of one page (its depth in the meta page) is that page alone; a deeper one takes each table's
 * newest record.
 */
function listFromScan(file: PageFile, newest: Meta): { records: TableRecord[]; txnid: bigint } | undefined {
  const CHUNK = 256;
  const found: Array<{ txnid: bigint; records: TableRecord[] }> = [];
  for (let first = 2; first < file.pages; first += CHUNK) {
    const count = Math.min(CHUNK, file.pages - first);
    const chunk = file.read(BigInt(first), count);
    if (!chunk) break;
    for (let index = 0; index < count; index++) {
      const page = chunk.subarray(index * file.pageSize, (index + 1) * file.pageSize);
      if (page.readBigUInt64LE(0) !== BigInt(first + index) || (page.readUInt16LE(18) & P_LEAF) === 0) continue;
      const txnid = page.readBigUInt64LE(8);
      if (txnid > newest.txnid) continue;
      const nodes = nodesOf(page, file.pageSize);
      if (!nodes || nodes.length === 0 || !nodes.every((node) => (node.flags & F_SUBDATA) !== 0)) continue;
      const records = tableRecords(nodes, page);
      if (records.length > 0) found.push({ txnid, records });
    }
  }
  if (found.length === 0) return undefined;
  found.sort((a, b) => (a.txnid > b.txnid ? -1 : a.txnid < b.txnid ? 1 : 0));
  if (newest.mainDepth <= 1) return found[0]!;
  const byName = new Map<string, TableRecord>();
  for (const { records } of found) for (const record of records) if (!byName.has(record.name)) byName.set(record.name, record);
  return { records: [...byName.values()], txnid: found[0]!.txnid };
}

type Key = Buffer | number;

function keyText(key: Key | undefined): string | null {
  if (key === undefined) return null;
  return typeof key === "number" ? String(key) : key.toString("hex");
}

const WHY: Record<"cut" | "reused" | "damaged", string> = {
  cut: "past the end of the file",
  reused: "written again by a later commit",
  damaged: "not the page the tree names",
};

/** Every record of one table that is in a page still there, in key order, as of `txnid`. */
function walkTable(file: PageFile, table: TableRecord, txnid: bigint, put: (key: Key, value: Buffer) => void): TableScan {
  const integerKeys = (table.flags & INTEGER_KEY) !== 0;
  const scan: TableScan = { name: table.name, integerKeys, records: 0, entries: table.entries, damaged: [] };
  let last: Key | undefined;
  // Pages lost one after the other, with no record read between them, are one region.
  let open: { region: DamagedRegion; pages: number; values: number; why: Set<string> } | undefined;
  const lose = (why: "cut" | "reused" | "damaged", what: "pages" | "values" = "pages") => {
    if (!open || open.region.after !== keyText(last)) {
      open = { region: { table: table.name, after: keyText(last), message: "" }, pages: 0, values: 0, why: new Set() };
      scan.damaged.push(open.region);
    }
    open[what] += 1;
    open.why.add(WHY[why]);
    const parts = [open.pages > 0 ? (open.pages === 1 ? "a page of it" : `${open.pages} pages of it`) : "", open.values > 0 ? (open.values === 1 ? "the overflow pages of a value" : `the overflow pages of ${open.values} values`) : ""];
    open.region.message = `${parts.filter(Boolean).join(" and ")} ${open.pages === 1 && open.values === 0 ? "is" : "are"} ${[...open.why].join(", or ")}`;
  };
  const loseRecord = (why: string) => {
    scan.damaged.push({ table: table.name, after: keyText(last), message: why });
    open = undefined;
  };
  if (table.root === NO_PAGE) return scan;
  const todo: Array<{ pgno: bigint; notAfter: bigint }> = [{ pgno: table.root, notAfter: txnid }];
  const seen = new Set<bigint>();
  while (todo.length > 0) {
    const { pgno, notAfter } = todo.pop()!;
    if (seen.has(pgno) || seen.size >= MAX_PAGES) {
      lose("damaged");
      continue;
    }
    seen.add(pgno);
    const at = treePage(file, pgno, notAfter);
    if ("missing" in at) {
      lose(at.missing);
      continue;
    }
    if ((at.page.readUInt16LE(18) & P_BRANCH) !== 0) {
      // Children last to first on the stack: the leftmost is read first, so records come in key order.
      for (let index = at.nodes.length - 1; index >= 0; index--) todo.push({ pgno: at.nodes[index]!.child, notAfter: at.txnid });
      continue;
    }
    for (const node of at.nodes) {
      let key: Key = Buffer.from(node.key);
      // No page LMDB wrote holds such a key (lmdb-js's limit is 1978 bytes): damage, which the copy could not hold either.
      if (node.key.length === 0 || node.key.length > MAX_KEY_BYTES) {
        loseRecord(`a key of ${node.key.length} bytes, which no record can have`);
        continue;
      }
      if (integerKeys) {
        if (node.key.length !== 4) {
          loseRecord(`a key of ${node.key.length} bytes in a table of 4-byte integer keys`);
          continue;
        }
        key = node.key.readUInt32LE(0);
      }
      if ((node.flags & (F_DUPDATA | F_SUBDATA)) !== 0) {
        loseRecord(`key ${keyText(key)} holds duplicates or a table, which salvage does not copy`);
        continue;
      }
      let value: Buffer;
      if ((node.flags & F_BIGDATA) !== 0) {
        const read = overflowValue(file, at.page.readBigUInt64LE(node.data), node.size, at.txnid);
        if (typeof read === "string") {
          lose(read, "values");
          continue;
        }
        value = read;
      } else value = Buffer.from(at.page.subarray(node.data, node.data + node.size));
      last = key;
      open = undefined;
      scan.records += 1;
      put(key, value);
    }
  }
  return scan;
}

/** A value kept in overflow pages: undefined when its pages are not all there, or are another value's now. */
function overflowValue(file: PageFile, first: bigint, size: number, notAfter: bigint): Buffer | "cut" | "reused" | "damaged" {
  const head = file.read(first);
  if (!head) return "cut";
  if (head.readBigUInt64LE(0) !== first || (head.readUInt16LE(18) & P_OVERFLOW) === 0) return "damaged";
  if (head.readBigUInt64LE(8) > notAfter) return "reused";
  const count = head.readUInt32LE(20);
  if (count === 0 || HEADER + size > count * file.pageSize) return "damaged";
  const run = file.read(first, count);
  return run ? Buffer.from(run.subarray(HEADER, HEADER + size)) : "cut";
}

export interface PageSalvage extends ScanResult {
  /** How many commits before the file's last the tables were read as (0: as of the last commit). */
  commitsLost: number;
}

/**
 * Reads every record of a truncated store file `file` that is still in it (see above); with
 * `copyTo`, copies them into a new store file there, table by table (uint32 tables keep their
 * integer keys). The source is only read.
 */
export function salvagePages(file: string, options: { copyTo?: string } = {}): PageSalvage {
  const probe = openSync(file, "r");
  const head = Buffer.alloc(2 * 65536);
  let length: number;
  try {
    length = readSync(probe, head, 0, head.length, 0);
  } finally {
    closeSync(probe);
  }
  const pageSize = length >= META_AT + 28 ? head.readUInt32LE(META_AT + 24) : 0;
  if (length < META_AT + 28 || head.readUInt32LE(META_AT) !== MAGIC || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    return { tables: [], damaged: [{ table: "", after: null, message: "it does not start with an LMDB store's header: no record of it can be read" }], commitsLost: 0 };
  }
  const file_ = new PageFile(file, pageSize);
  const metas = readMetas(head.subarray(0, length), pageSize);
  const damaged: DamagedRegion[] = [];
  try {
    const newest = metas[0];
    if (!newest) return { tables: [], damaged: [{ table: "", after: null, message: "neither of its two header pages is whole: no record of it can be read" }], commitsLost: 0 };
    let list: { records: TableRecord[]; txnid: bigint } | undefined;
    for (const meta of metas) {
      const records = listFromRoot(file_, meta.mainRoot, meta.txnid);
      if (records) {
        list = { records, txnid: meta.txnid };
        break;
      }
    }
    const cutAt = `the file ends at ${file_.size} bytes`;
    if (!list) {
      list = listFromScan(file_, newest);
      if (!list) {
        return { tables: [], damaged: [{ table: "", after: null, message: `the list of tables is past the end of the file (${cutAt}), and no earlier copy of it is left in the file: no record of it can be read` }], commitsLost: 0 };
      }
    }
    const commitsLost = Number(newest.txnid - list.txnid);
    if (commitsLost > 0) {
      damaged.push({
        table: "",
        after: null,
        message: `the list of tables as of the last commit is past the end of the file (${cutAt}): the store was read as it was ${commitsLost} commit${commitsLost === 1 ? "" : "s"} before its last (LMDB transaction ${list.txnid} of ${newest.txnid}), so what ${commitsLost === 1 ? "that last commit" : `those last ${commitsLost} commits`} wrote is lost`,
      });
    }
    const target = options.copyTo ? openCopyTarget(options.copyTo) : undefined;
    try {
      const tables = list.records.map((record) => copyTable(file_, record, list!.txnid, target));
      for (const scan of tables) {
        const lost = scan.entries - scan.records;
        // A cut that ends a range without a missing page (a reused page's records) shows in the count only.
        if (lost > 0 && scan.damaged.length === 0) scan.damaged.push({ table: scan.name, after: null, message: `${lost} of its ${scan.entries} record${scan.entries === 1 ? "" : "s"} could not be read (${cutAt})` });
      }
      return { tables, damaged, commitsLost };
    } finally {
      target?.close();
    }
  } finally {
    file_.close();
  }
}

function copyTable(file: PageFile, record: TableRecord, txnid: bigint, target: RootDatabase | undefined): TableScan {
  const out = tableWriter(target, record.name, (record.flags & INTEGER_KEY) !== 0);
  const scan = walkTable(file, record, txnid, (key, value) => out?.add(key, value));
  out?.flush();
  return scan;
}
