import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { ApexError } from "../../core/errors.js";

/**
 * A cheap look at a store file before LMDB maps it. LMDB reads pages through a memory map, so a
 * page beyond the end of the file (a truncated copy, a partial restore) is not an error but a
 * SIGBUS that ends the process without a word. The newest of the two meta pages names the root
 * pages of the free list and of the main database, which every open reads: when the file ends
 * before them, the store is reported as damaged instead. One open and an 8 KiB read.
 *
 * Offsets are those of lmdb-js's LMDB (a 24-byte page header, then MDB_meta: magic, version,
 * address, map size, two 48-byte MDB_db records, last page, txn id).
 */
const MAGIC = 0xbeefc0de;
const META_AT = 24;
const DB_RECORD = 48;
const ROOT_IN_DB = 40;
const INVALID_PAGE = 0xffffffffffffffffn;

export function checkStoreFileLength(file: string, dir: string): void {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return; // missing: LMDB creates it, or says why it cannot
  }
  let size: number;
  const head = Buffer.alloc(8192);
  let length: number;
  try {
    // The meta pages first, the size after: another process may commit between the two, and
    // LMDB extends the file before it writes the meta page naming the new pages (the file
    // never shrinks). Taken the other way round, a commit in between read as truncation.
    length = readSync(fd, head, 0, head.length, 0);
    size = fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
  if (length < META_AT + 160) return; // a new file LMDB has not written yet
  const pageSize = head.readUInt32LE(META_AT + 24);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return; // not this format: LMDB decides
  let newest: { txnid: bigint; roots: bigint[] } | undefined;
  for (const page of [0, 1]) {
    const meta = page * pageSize + META_AT;
    if (meta + 160 > length || head.readUInt32LE(meta) !== MAGIC) continue;
    const txnid = head.readBigUInt64LE(meta + 24 + 2 * DB_RECORD + 8);
    const roots = [0, 1].map((db) => head.readBigUInt64LE(meta + 24 + db * DB_RECORD + ROOT_IN_DB)).filter((root) => root !== INVALID_PAGE);
    if (!newest || txnid > newest.txnid) newest = { txnid, roots };
  }
  if (!newest) return;
  const needed = newest.roots.reduce((max, root) => (root + 1n > max ? root + 1n : max), 0n) * BigInt(pageSize);
  if (BigInt(size) >= needed) return;
  throw new ApexError("APEX_E_STORE_DAMAGED", `The store file ${file} is damaged: it ends at ${size} bytes, but its index needs ${needed} (it was truncated). Reading it would crash APEX.`, {
    hint: "Run `apex session validate` to see what can still be read, then `apex session repair` (it copies what reads into a fresh file), or restore a backup of .apex/.",
    details: { store: dir },
  });
}
