import { accessSync, closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats } from "node:fs";
import { dirname } from "node:path";
import { isDirectory } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";

/**
 * A cheap look at a store file before LMDB maps it. LMDB reads pages through a memory map, so a
 * page beyond the end of the file (a truncated copy, a partial restore) is not an error but a
 * SIGBUS that ends the process without a word. The newest of the two meta pages names the root
 * pages of the free list and of the main database, which every open reads: when the file ends
 * before them, or (a file shorter than its last used page) before a page their trees name, the
 * store is reported as damaged instead. lmdb-js also crashes (SIGSEGV) on a
 * file whose first meta page is not LMDB's (a few bytes, text, random bytes): such a file is
 * named as damaged too, and so is a directory where the file or its lock file should be. One
 * open and an 8 KiB read.
 *
 * Offsets are those of lmdb-js's LMDB (a 24-byte page header, then MDB_meta: magic, version,
 * address, map size, two 48-byte MDB_db records, last page, txn id).
 */
const MAGIC = 0xbeefc0de;
const META_AT = 24;
const META_BYTES = 160;
const DB_RECORD = 48;
const ROOT_IN_DB = 40;
const INVALID_PAGE = 0xffffffffffffffffn;
/** How long a file without a header is given to get one: another process may be creating the store right now. */
const CREATION_WAIT_MS = 200;

type Look =
  | { kind: "missing" | "directory" | "ok" }
  | { kind: "empty" | "not-lmdb"; size: number }
  | { kind: "truncated"; size: number; needed: bigint };

function look(file: string): Look {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return { kind: "missing" }; // LMDB creates it, or says why it cannot
  }
  let size: number;
  const head = Buffer.alloc(8192);
  let length: number;
  try {
    if (fstatSync(fd).isDirectory()) return { kind: "directory" };
    // The meta pages first, the size after: another process may commit between the two, and
    // LMDB extends the file before it writes the meta page naming the new pages (the file
    // never shrinks). Taken the other way round, a commit in between read as truncation.
    length = readSync(fd, head, 0, head.length, 0);
    size = fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
  if (length === 0) return { kind: "empty", size };
  if (length < META_AT + META_BYTES || head.readUInt32LE(META_AT) !== MAGIC) return { kind: "not-lmdb", size };
  const pageSize = head.readUInt32LE(META_AT + 24);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return { kind: "not-lmdb", size };
  let newest: { txnid: bigint; roots: bigint[]; lastPage: bigint } | undefined;
  for (const page of [0, 1]) {
    const meta = page * pageSize + META_AT;
    if (meta + META_BYTES > length || head.readUInt32LE(meta) !== MAGIC) continue;
    const txnid = head.readBigUInt64LE(meta + 24 + 2 * DB_RECORD + 8);
    const lastPage = head.readBigUInt64LE(meta + 24 + 2 * DB_RECORD);
    const roots = [0, 1].map((db) => head.readBigUInt64LE(meta + 24 + db * DB_RECORD + ROOT_IN_DB)).filter((root) => root !== INVALID_PAGE);
    if (!newest || txnid > newest.txnid) newest = { txnid, roots, lastPage };
  }
  if (!newest) return { kind: "ok" };
  const needed = newest.roots.reduce((max, root) => (root + 1n > max ? root + 1n : max), 0n) * BigInt(pageSize);
  if (BigInt(size) < needed) return { kind: "truncated", size, needed };
  // The file may still end before pages deeper in the trees. It holds every page up to the
  // last one used unless pages freed in the commit that took them were never written: only a
  // file shorter than that is walked, page by page, for a page it lacks.
  if (BigInt(size) >= (newest.lastPage + 1n) * BigInt(pageSize)) return { kind: "ok" };
  const walked = pagesNeeded(file, pageSize, size, newest.roots);
  return walked !== undefined && BigInt(size) < walked ? { kind: "truncated", size, needed: walked } : { kind: "ok" };
}

/** lmdb-js's LMDB page header: page number, txn id, pad, flags, lower (overflow: page count), upper. */
const PAGE_HEADER = 24;
const P_BRANCH = 0x01;
const P_LEAF = 0x02;
const P_LEAF2 = 0x20;
const P_SUBP = 0x40;
const F_BIGDATA = 0x01;
const F_SUBDATA = 0x02;
/** Bounds the walk of a damaged file whose pages point in circles. */
const MAX_WALKED_PAGES = 1 << 22;

/**
 * The bytes the trees rooted at `roots` (the free list's and the main database's, and through
 * the main database every table's) need: one past the end of the highest page a branch page, an
 * overflow value or a table record names. Pages past `size` cannot be read, and are counted
 * without being followed. Undefined when the walk gives up (a file too damaged to say).
 */
function pagesNeeded(file: string, pageSize: number, size: number, roots: bigint[]): bigint | undefined {
  const pages = BigInt(Math.floor(size / pageSize));
  const page = Buffer.alloc(pageSize);
  const seen = new Set<bigint>();
  const todo = [...roots];
  let needed = 0n;
  const fd = openSync(file, "r");
  try {
    while (todo.length > 0) {
      const pgno = todo.pop()!;
      if (pgno + 1n > needed) needed = pgno + 1n;
      if (pgno >= pages || seen.has(pgno)) continue;
      seen.add(pgno);
      if (seen.size > MAX_WALKED_PAGES) return undefined;
      if (readSync(fd, page, 0, pageSize, Number(pgno) * pageSize) !== pageSize) continue;
      const flags = page.readUInt16LE(18);
      // Overflow, LEAF2 (fixed-size keys without nodes), sub-page or damage: nothing to follow.
      if ((flags & (P_BRANCH | P_LEAF)) === 0 || (flags & (P_LEAF2 | P_SUBP)) !== 0) continue;
      // lower and the node offsets count from the end of the header (PAGEBASE): lower / 2 nodes.
      const count = page.readUInt16LE(20) >> 1;
      for (let index = 0; index < count && PAGE_HEADER + 2 * index + 2 <= pageSize; index++) {
        const node = PAGE_HEADER + page.readUInt16LE(PAGE_HEADER + 2 * index);
        if (node + 8 > pageSize) continue;
        const low = BigInt(page.readUInt16LE(node)) | (BigInt(page.readUInt16LE(node + 2)) << 16n);
        const nodeFlags = page.readUInt16LE(node + 4);
        if (flags & P_BRANCH) {
          todo.push(low | (BigInt(nodeFlags) << 32n));
          continue;
        }
        const data = node + 8 + page.readUInt16LE(node + 6);
        if (nodeFlags & F_BIGDATA) {
          if (data + 8 > pageSize) continue;
          const first = page.readBigUInt64LE(data);
          // The overflow run's length is in its first page: that page, then the run's end.
          needed = maxOf(needed, first + 1n);
          if (first < pages && readSync(fd, page.subarray(0, PAGE_HEADER), 0, PAGE_HEADER, Number(first) * pageSize) === PAGE_HEADER) {
            needed = maxOf(needed, first + BigInt(page.readUInt32LE(20)));
            readSync(fd, page, 0, pageSize, Number(pgno) * pageSize); // the leaf again, for its next nodes
          }
        } else if (nodeFlags & F_SUBDATA) {
          if (data + DB_RECORD > pageSize) continue;
          const root = page.readBigUInt64LE(data + ROOT_IN_DB);
          if (root !== INVALID_PAGE) todo.push(root);
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return needed * BigInt(pageSize);
}

function maxOf(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** Where a truncated store file ends and what its index needs (bytes), or undefined when it is not cut short before a page its trees name. */
export function truncation(file: string): { size: number; needed: bigint } | undefined {
  const seen = look(file);
  return seen.kind === "truncated" ? { size: seen.size, needed: seen.needed } : undefined;
}

/** Why no record of the store file can be read at all (its header is unusable), or undefined. */
export function unreadableHeader(file: string): string | undefined {
  const seen = look(file);
  if (seen.kind === "directory") return "it is a directory";
  if (seen.kind === "empty") return "it is empty (0 bytes)";
  if (seen.kind === "not-lmdb") return `${seen.size === 1 ? "its 1 byte does" : `its ${seen.size} bytes do`} not start with an LMDB store's header`;
  return undefined;
}

export function checkStoreFileLength(file: string, dir: string, readOnly = false): void {
  if (isDirectory(`${file}-lock`)) throw notAFile(`${file}-lock`, dir, "Remove it: LMDB makes the lock file anew.");
  let seen = look(file);
  // LMDB writes a new file's two meta pages right after creating it: wait for them once.
  if (seen.kind === "empty" || seen.kind === "not-lmdb") {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, CREATION_WAIT_MS);
    seen = look(file);
  }
  switch (seen.kind) {
    case "missing":
    case "ok":
      return;
    case "directory":
      throw notAFile(file, dir, `Move it away, or restore a backup of ${dir}; without the file, the next write starts an empty store.`);
    case "empty":
      if (!readOnly) return; // a writable open lays a new store out in it, as in a new file
      throw damaged(file, dir, "it is empty (0 bytes): it was truncated, or its creation was cut short");
    case "not-lmdb":
      throw damaged(file, dir, `${seen.size === 1 ? "its 1 byte does" : `its ${seen.size} bytes do`} not start with an LMDB store's header (damaged, or another kind of file)`);
    case "truncated":
      throw damaged(file, dir, `it ends at ${seen.size} bytes, but its index needs ${seen.needed} (it was truncated)`);
  }
}

function damaged(file: string, dir: string, why: string): ApexError {
  return new ApexError("APEX_E_STORE_DAMAGED", `The store file ${file} is damaged: ${why}. Reading it would crash APEX.`, {
    hint: "Run `apex session validate` to see what can still be read, then `apex session repair` (it copies what reads into a fresh file), or restore a backup of .apex/.",
    details: { store: dir },
  });
}

function notAFile(path: string, dir: string, hint: string): ApexError {
  return new ApexError("APEX_E_STORE_DAMAGED", `${path} is a directory, not a file of the store.`, {
    hint,
    details: { store: dir },
  });
}

/**
 * A store directory this user may not enter (another user's: stores are owner-only) is refused
 * as such: to a stat it looks like no store at all, which read commands took for "no session yet".
 */
export function checkStoreAccess(dir: string): void {
  try {
    accessSync(dir, constants.R_OK | constants.X_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EPERM") return; // missing: no store yet
    throw new ApexError("APEX_E_FORBIDDEN", `This user may not read the store at ${dir} (${code}).`, {
      hint: "A store is private to the user who made it (directories 0700): run APEX as that user.",
      details: { store: dir },
    });
  }
}

/**
 * The errno of a failure to write in a store directory for want of permission (Node's code, or
 * the text lmdb gives: "Permission denied: Attempting to setup locks"), else undefined.
 */
export function writePermissionCode(error: unknown): "EACCES" | "EPERM" | "EROFS" | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "EACCES" || code === "EPERM" || code === "EROFS") return code;
  const message = String((error as Error | undefined)?.message ?? "");
  if (/permission denied/i.test(message)) return "EACCES";
  if (/read-only file system/i.test(message)) return "EROFS";
  return undefined;
}

/**
 * A store directory (or the directory it is to be made in) this user may read but not write:
 * another user's, made read-only, or on a read-only file system. Named with its owner and mode,
 * as APEX_E_FORBIDDEN (exit 4) like a store it may not read, instead of lmdb's or Node's words
 * (APEX_E_STORE "Attempting to setup locks", APEX_E_INTERNAL "EACCES: … open supervisor.log").
 */
export function storeWriteRefused(dir: string, code: "EACCES" | "EPERM" | "EROFS"): ApexError {
  let at = dir;
  let stat: Stats | undefined;
  for (;;) {
    try {
      stat = statSync(at);
      break;
    } catch {
      if (dirname(at) === at) break;
      at = dirname(at);
    }
  }
  const owner = stat ? `; ${at} belongs to uid ${stat.uid} (mode ${(stat.mode & 0o7777).toString(8).padStart(4, "0")}) and this user is uid ${process.getuid?.() ?? "?"}` : "";
  const readOnly = code === "EROFS";
  return new ApexError("APEX_E_FORBIDDEN", `This user may not write the store at ${dir} (${code}${readOnly ? ": a read-only file system" : ""})${readOnly ? "" : owner}. Nothing was written.`, {
    hint: readOnly
      ? "Reading commands (status, session list, memory show, logs) work as they are; to write, use a copy of the project on a writable file system."
      : stat && stat.uid === process.getuid?.()
        // This user's own, made read-only (APEX only ever takes group and other bits away, never gives the owner's back).
        ? `It is this user's, made read-only: \`chmod u+rwx ${JSON.stringify(at)}\` lets APEX write it again; reading commands (status, session list, memory show, logs) work as they are.`
        : "Run APEX as the user who owns the store, or give it to this user (chown -R); reading commands (status, session list, memory show, logs) work as they are.",
    details: { store: dir },
  });
}
