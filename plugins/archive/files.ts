import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ApexError } from "../../core/errors.js";
import { fileDiskFullError, isFileDiskFull } from "../../core/store/store-errors.js";
import { sha256 } from "../checkpoint/engine/objects.js";
import { BUNDLE_EXTENSION, DEFAULT_MAX_BUNDLE_BYTES, HEADER_BYTES } from "./bundle.js";

/**
 * The file side of bundles: names, atomic writes, bounded reads. No file-system path ever
 * comes from inside a bundle: names derive from the session id only after it was checked,
 * and only through bundleFileName.
 */

const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$/;

/** The file name an archived session gets in the backup directory: its id when that is a plain name, else a digest of it. */
export function bundleFileName(sessionId: string): string {
  return PLAIN_NAME.test(sessionId) ? `${sessionId}${BUNDLE_EXTENSION}` : `session-${sha256(sessionId).slice(0, 24)}${BUNDLE_EXTENSION}`;
}

/**
 * Writes a file so that it is either complete or absent: a temporary file beside it,
 * flushed to disk, then renamed (or, without `overwrite`, hard-linked, which fails if the
 * name is taken) into place, and the directory flushed.
 */
export function writeFileAtomic(path: string, data: Buffer, options: { overwrite: boolean }): void {
  const temporary = join(dirname(path), `.${basename(path)}.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
  let fd: number;
  try {
    fd = openSync(temporary, "wx", 0o600);
  } catch (error) {
    throw isFileDiskFull(error) ? fileDiskFullError(path, error) : fileError("write", path, error);
  }
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, Math.min(data.length - at, 1 << 24));
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    // A full disk is the machine's failure, not the plugin's: named as such, with the file and its filesystem.
    throw isFileDiskFull(error) ? fileDiskFullError(path, error) : error;
  }
  closeSync(fd);
  try {
    if (options.overwrite) renameSync(temporary, path);
    else {
      try {
        linkSync(temporary, path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") {
          throw new ApexError("APEX_E_CONFLICT", `${path} already exists; not overwriting it.`, { hint: "Choose another file, or pass --force to replace it." });
        }
        throw error;
      }
      unlinkSync(temporary);
    }
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // already renamed or gone
    }
    throw error;
  }
  syncDirectory(dirname(path));
}

export function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some file systems do not sync directories; the rename itself is atomic
  }
}

/**
 * A file the user named (a bundle to read or write, a backup directory) that the system refuses
 * (no permission, a read-only or pseudo file system, a path that leads nowhere) is their input's
 * problem, said as such: exit 2, the path and the system's reason, nothing written. Anything
 * else (not an errno error) is passed on as it is.
 */
export function fileError(action: "read" | "write" | "create", path: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return error;
  const reasons: Record<string, string> = {
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EROFS: "read-only file system",
    ENOENT: "no such file or directory",
    ENOTDIR: "a part of the path is not a directory",
    EISDIR: "it is a directory",
    EEXIST: "a file or a dangling link is in the way",
  };
  const what = action === "create" ? `Cannot create the directory ${path}` : `Cannot ${action} ${path}`;
  return new ApexError("APEX_E_BAD_INPUT", `${what}: ${reasons[code] ?? (error as Error).message} (${code}).`, {
    hint: action === "read" ? "Check the path and that this user may read the file." : "Choose a directory this user may write to. Nothing was written.",
    cause: error,
  });
}

/**
 * Makes `dir` and its missing parents, owner-only, one level at a time: Node's recursive mkdir
 * never returns where a parent exists but refuses children with ENOENT (/proc/self/x). Returns
 * the directories it made, parents first.
 */
export function makeBackupDirectory(dir: string): string[] {
  const missing: string[] = [];
  const absent = (path: string) => {
    try {
      return statSync(path, { throwIfNoEntry: false }) === undefined;
    } catch {
      return false; // there, but not to be looked into: its mkdir below says why
    }
  };
  for (let at = dir; absent(at) && dirname(at) !== at; at = dirname(at)) missing.unshift(at);
  const made: string[] = [];
  for (const path of missing) {
    try {
      mkdirSync(path, { mode: 0o700 });
      chmodSync(path, 0o700); // mkdir's mode is cut by the umask
      made.push(path);
    } catch (error) {
      // Another process (a second backup or archive) made it meanwhile: it is there, and not ours.
      if ((error as NodeJS.ErrnoException).code === "EEXIST" && statSync(path, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw fileError("create", path, error);
    }
  }
  return made;
}

/** Reads a bundle file, refusing one too large to be a bundle within the limit before reading it. */
export function readBundleFile(path: string, maxBytes = DEFAULT_MAX_BUNDLE_BYTES): Buffer {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new ApexError("APEX_E_NOT_FOUND", `${path} is not a file.`, { hint: "Give the path of a .apexbundle file." });
    size = stat.size;
  } catch (error) {
    if (error instanceof ApexError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw fileError("read", path, error);
    throw new ApexError("APEX_E_NOT_FOUND", `Cannot read ${path}: ${(error as Error).message}`, {
      hint: "Give the path of a .apexbundle file (`apex session export` writes one).",
    });
  }
  // Compressed data can be a little larger than the data: zlib's worst case is far below 1/64.
  if (size > HEADER_BYTES + maxBytes + Math.ceil(maxBytes / 64) + 1024 * 1024) {
    throw new ApexError("APEX_E_BUNDLE_INVALID", `Refusing the bundle: ${path} is ${size} bytes, more than a bundle within the limit of ${maxBytes} bytes can be.`, {
      hint: "Raise plugins.archive.max_bundle_bytes if you trust this bundle.",
    });
  }
  try {
    return readFileSync(path);
  } catch (error) {
    throw fileError("read", path, error);
  }
}
