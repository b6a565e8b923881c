import { statfsSync } from "node:fs";

/**
 * Room on disk for an LMDB commit, checked before LMDB writes anything.
 *
 * LMDB writes a transaction's pages at commit. When the filesystem has no block left for them,
 * lmdb-js 3.5.x (mdb.c, mdb_page_flush) formats its "Attempting to write page at position …"
 * message into a 100-byte heap buffer that the message can outgrow (it prints three iovec
 * lengths, two of them uninitialised), corrupting the heap: the process dies later with SIGABRT
 * ("free(): invalid size"), typically a supervisor at its exit. So APEX never lets LMDB reach
 * that path on its own: before a commit, while it holds the write lock, it compares the free
 * space of the store's filesystem with an upper bound of what the commit may write, and aborts
 * the transaction with APEX_E_DISK_FULL when it may not fit. What remains is a race with
 * another process filling the disk between the check and the write, of a few milliseconds.
 */

/** Per database touched by a transaction: how many puts and deletes, and what they bring. */
export interface DbTally {
  ops: number;
  /** Bytes of keys and values small enough to live in leaf pages. */
  inlineBytes: number;
  /** Overflow pages of the large values put. */
  overflowPages: number;
}

/** What lmdb-js's getStats() gives for a database, as seen inside the write transaction. */
export interface DbPages {
  pageSize: number;
  treeDepth: number;
  treeBranchPageCount: number;
  treeLeafPageCount: number;
  overflowPages: number;
}

/** Page header size in LMDB (PAGEHDRSZ), and the size above which a value goes to overflow pages (about half a 4 KiB page). */
const PAGE_HEADER = 16;
const NODE_OVERHEAD = 8;
/** Room kept beyond the estimate: the meta page, the main database's path, rounding. */
const SLACK_BYTES = 256 * 1024;

/** Counts one put of `keyBytes` and `valueBytes` (a delete is a put of nothing). */
export function tallyWrite(tally: DbTally, keyBytes: number, valueBytes: number, pageSize = 4096): void {
  tally.ops += 1;
  const node = keyBytes + valueBytes + NODE_OVERHEAD;
  if (node > pageSize / 2) {
    tally.inlineBytes += keyBytes + NODE_OVERHEAD + 8;
    tally.overflowPages += Math.ceil((valueBytes + PAGE_HEADER) / pageSize);
  } else tally.inlineBytes += node;
}

/** The size in bytes of a key or value as lmdb-js will store it (an estimate for structured values). */
export function sizeOf(value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (value instanceof Uint8Array) return value.length;
  if (typeof value === "string") return Buffer.byteLength(value);
  if (typeof value === "number") return 9;
  // lmdb-js's asBinary() wrapper around stored bytes.
  const bytes = (value as { ["\x10binary-data\x02"]?: unknown })["\x10binary-data\x02"];
  if (bytes instanceof Uint8Array) return bytes.length;
  try {
    return Buffer.byteLength(JSON.stringify(value) ?? "") + 16;
  } catch {
    return 4096;
  }
}

/**
 * An upper bound of the bytes a commit may add to the file. Every page a transaction dirties
 * is written to a page of its own (copy on write), so each database touched may write at most
 * all its pages as the transaction sees them, and at most the path of every operation twice
 * (copy, and a split up to a new root) plus the pages its data fills. The free list records
 * the replaced pages (8 bytes each).
 */
export function commitBound(touched: Array<{ tally: DbTally; pages: DbPages }>, main: DbPages | undefined): number {
  let pageSize = 4096;
  let dirty = 0;
  for (const { tally, pages } of touched) {
    pageSize = pages.pageSize || pageSize;
    const depth = Math.max(1, pages.treeDepth);
    const total = pages.treeBranchPageCount + pages.treeLeafPageCount + pages.overflowPages;
    const fill = Math.ceil((4 * tally.inlineBytes) / pageSize);
    const byOps = tally.ops * (2 * depth + 2) + fill + tally.overflowPages;
    dirty += Math.min(total + 1, byOps);
  }
  if (main) dirty += 2 * Math.max(1, main.treeDepth) * Math.max(1, touched.length);
  const freeList = Math.ceil((8 * dirty) / pageSize) + 4;
  return (dirty + freeList) * pageSize + SLACK_BYTES;
}

/**
 * commitBound() without reading the databases' pages, for a tree no deeper than 24 levels
 * (LMDB's pages hold at least two keys, so that is 2^24 leaves even for the largest keys):
 * when it fits, the commit fits, and the statistics need not be read.
 */
export function quickBound(tallies: Iterable<DbTally>, pageSize = 4096): number {
  const touched = Array.from(tallies, (tally) => ({
    tally,
    pages: { pageSize, treeDepth: 24, treeBranchPageCount: Infinity, treeLeafPageCount: 0, overflowPages: 0 },
  }));
  return commitBound(touched, { pageSize, treeDepth: 24, treeBranchPageCount: 0, treeLeafPageCount: 0, overflowPages: 0 });
}

/** Free bytes on the filesystem holding `dir` for this process (root may use the reserved blocks), or Infinity when it cannot be told. */
export function freeBytes(dir: string): number {
  try {
    const stats = statfsSync(dir);
    // A filesystem that reports no size at all (some FUSE ones) tells nothing about its room.
    if (stats.blocks === 0) return Infinity;
    const blocks = process.getuid?.() === 0 ? stats.bfree : stats.bavail;
    return blocks * stats.bsize;
  } catch {
    return Infinity;
  }
}
