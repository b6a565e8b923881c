import { ApexError } from "../../core/errors.js";
import { errnoOf, filesystemOf, formatFree } from "../../core/store/store-errors.js";

/**
 * What LMDB's failures mean to a person. LMDB reports a write that ran out of space as EIO
 * when the write was short (mdb.c: "TODO: Use which error code?"), as ENOSPC or EDQUOT when
 * nothing was written, and MDB_MAP_FULL when the map is full; a damaged file surfaces as
 * MDB_CORRUPTED, MDB_PAGE_NOTFOUND, MDB_BAD_TXN or a page that fails its own checks.
 */

const ENOSPC = 28;
const EDQUOT = 122;
const EFBIG = 27;
const EIO = 5;
const MDB_MAP_FULL = -30792;
/** LMDB codes that mean the file's pages are not what LMDB wrote (MDB_PAGE_NOTFOUND, MDB_CORRUPTED, MDB_PANIC, MDB_BAD_TXN, MDB_PROBLEM, MDB_INVALID). */
const DAMAGE_CODES = new Set([-30797, -30796, -30795, -30782, -30779, -30793]);
/** Below this much free space, an I/O error while writing is a full disk. */
const NEARLY_FULL_BYTES = 1024 * 1024;

/** True when `error` (from LMDB or a file write) means the disk holding `dir` is full. */
export function isDiskFull(error: unknown, dir: string): boolean {
  const code = errnoOf(error);
  if (code === ENOSPC || code === EDQUOT || code === EFBIG || code === MDB_MAP_FULL) return true;
  if (code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG") return true;
  if (code === EIO || code === "EIO") {
    const fs = filesystemOf(dir);
    return fs !== undefined && fs.free < NEARLY_FULL_BYTES;
  }
  return false;
}

/** The APEX_E_DISK_FULL error for the store in `dir`, naming its filesystem. */
export function diskFullError(dir: string, doing: string, cause?: unknown, needed?: number): ApexError {
  const fs = filesystemOf(dir);
  const where = fs ? `${fs.mount} (${fs.type}${fs.source && fs.source !== fs.type ? ` ${fs.source}` : ""}, ${formatFree(fs.free)} free)` : dir;
  const room = needed === undefined ? "more room" : `up to ${formatFree(needed)}`;
  return new ApexError("APEX_E_DISK_FULL", `The disk is full: ${doing} needs ${room} on the filesystem of the store, ${where}. Nothing of it was written.`, {
    hint: `Free space on ${fs?.mount ?? dir} and run the command again; what was saved before is intact (\`apex session validate\` checks it).`,
    details: { store: dir, ...(fs ? { filesystem: fs.mount, type: fs.type, free: fs.free } : {}), ...(needed === undefined ? {} : { needed }) },
    cause,
  });
}

/** A keyspace record whose bytes do not decode. */
export class RecordDamage extends Error {}

/** True when an LMDB error says the store file's pages are damaged, or a record does not decode. */
export function isDamage(error: unknown): boolean {
  if (error instanceof RecordDamage) return true;
  const code = errnoOf(error);
  if (typeof code === "number" && DAMAGE_CODES.has(code)) return true;
  const message = error instanceof Error ? error.message : "";
  return /MDB_CORRUPTED|MDB_PAGE_NOTFOUND|MDB_PANIC|MDB_BAD_TXN|MDB_PROBLEM|MDB_INVALID|Assertion .* failed/.test(message);
}

/** The error for damage LMDB found while reading the store in `dir`. */
export function damageError(dir: string, doing: string, cause: unknown): ApexError {
  const message = cause instanceof Error ? cause.message : String(cause);
  return new ApexError("APEX_E_STORE_DAMAGED", `The store file ${dir}/store.mdb is damaged: ${doing} failed (${message}).`, {
    hint: "Run `apex session validate` to see what is damaged, then `apex session repair ID` to recover what still verifies.",
    details: { store: dir },
    cause,
  });
}

/**
 * What a failed LMDB write means: a full disk, damage, or another failure of the store. An
 * ApexError (thrown by APEX's own code inside the transaction) is returned as it is.
 */
export function writeFailure(error: unknown, dir: string, doing: string): unknown {
  if (error instanceof ApexError) return error;
  if (isDiskFull(error, dir)) return diskFullError(dir, doing, error);
  if (isDamage(error)) return damageError(dir, doing, error);
  return error;
}
