import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
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
    throw isFileDiskFull(error) ? fileDiskFullError(path, error) : error;
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
    throw new ApexError(code === "ENOENT" || code === "ENOTDIR" ? "APEX_E_NOT_FOUND" : "APEX_E_STORE", `Cannot read ${path}: ${(error as Error).message}`, {
      hint: "Give the path of a .apexbundle file (`apex session export` writes one).",
    });
  }
  // Compressed data can be a little larger than the data: zlib's worst case is far below 1/64.
  if (size > HEADER_BYTES + maxBytes + Math.ceil(maxBytes / 64) + 1024 * 1024) {
    throw new ApexError("APEX_E_BUNDLE_INVALID", `Refusing the bundle: ${path} is ${size} bytes, more than a bundle within the limit of ${maxBytes} bytes can be.`, {
      hint: "Raise plugins.archive.max_bundle_bytes if you trust this bundle.",
    });
  }
  return readFileSync(path);
}
