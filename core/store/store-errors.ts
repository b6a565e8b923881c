import { existsSync, readFileSync, realpathSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { ApexError } from "../errors.js";

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

/** The filesystem holding `dir`: its mount point, type and free space (undefined where it cannot be told). */
export function filesystemOf(dir: string): { mount: string; type: string; source: string; free: number } | undefined {
  let real: string;
  let free: number;
  try {
    real = realpathSync(dir);
    const stats = statfsSync(real);
    free = stats.bavail * stats.bsize;
  } catch {
    return undefined;
  }
  let best = { mount: "/", type: "unknown", source: "" };
  try {
    // mountinfo: id parent major:minor root MOUNT options [optional…] - TYPE SOURCE super-options
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const fields = line.split(" ");
      const dash = fields.indexOf("-");
      if (dash < 0 || fields.length < 5) continue;
      const mount = fields[4]!.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
      const inside = mount === "/" || real === mount || real.startsWith(`${mount}/`);
      if (inside && mount.length >= best.mount.length) best = { mount, type: fields[dash + 1] ?? "unknown", source: fields[dash + 2] ?? "" };
    }
  } catch {
    // no /proc: the mount point stays unknown ("/")
  }
  return { ...best, free };
}

function errnoOf(error: unknown): number | string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "number" || typeof code === "string" ? code : undefined;
}

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

/**
 * The APEX_E_DISK_FULL error for a file APEX writes outside the store (a bundle, a backup),
 * naming the file and its filesystem.
 */
export function fileDiskFullError(path: string, cause?: unknown): ApexError {
  const fs = filesystemOf(existingAncestor(path));
  const where = fs ? `${fs.mount} (${fs.type}${fs.source && fs.source !== fs.type ? ` ${fs.source}` : ""}, ${formatFree(fs.free)} free)` : dirname(path);
  return new ApexError("APEX_E_DISK_FULL", `The disk is full: cannot write ${path}, on the filesystem ${where}. Nothing of it was kept.`, {
    hint: `Free space on ${fs?.mount ?? dirname(path)}, or write to another filesystem, and run the command again.`,
    details: { file: path, ...(fs ? { filesystem: fs.mount, type: fs.type, free: fs.free } : {}) },
    cause,
  });
}

/** True for a file-system error (node:fs) that means the disk or the user's quota is full. */
export function isFileDiskFull(error: unknown): boolean {
  const code = errnoOf(error);
  return code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG";
}

function existingAncestor(path: string): string {
  let dir = dirname(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

function formatFree(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
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
