import { chmodSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { ApexError } from "../../core/errors.js";
import { fileError } from "../../cli/output-file.js";
import { sha256 } from "../checkpoint/engine/objects.js";
import { BUNDLE_EXTENSION, DEFAULT_MAX_BUNDLE_BYTES, HEADER_BYTES } from "./bundle.js";

/**
 * The file side of bundles: names, directories, bounded reads (atomic writes: cli/output-file.ts). No file-system path ever
 * comes from inside a bundle: names derive from the session id only after it was checked,
 * and only through bundleFileName.
 */

const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$/;

/** The file name an archived session gets in the backup directory: its id when that is a plain name, else a digest of it. */
export function bundleFileName(sessionId: string): string {
  return PLAIN_NAME.test(sessionId) ? `${sessionId}${BUNDLE_EXTENSION}` : `session-${sha256(sessionId).slice(0, 24)}${BUNDLE_EXTENSION}`;
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
  // Nothing to make: it must be a directory (a path under a file, `--to notes.txt/x`, failed later as the plugin's ENOTDIR).
  if (missing.length === 0) {
    try {
      if (!statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
    } catch (error) {
      throw fileError("create", dir, error);
    }
  }
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
    // It is there, so not APEX_E_NOT_FOUND (exit 3, as before): bad input (exit 2), as `memory import` says of a directory or a device.
    const kind = stat.isDirectory() ? "a directory" : stat.isFIFO() ? "a named pipe" : stat.isSocket() ? "a socket" : "a device";
    if (!stat.isFile()) throw new ApexError("APEX_E_BAD_INPUT", `${path} is ${kind}, not a bundle file.`, { hint: "Give the path of a .apexbundle file. Nothing was written." });
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
  // Node.js reads at most 2 GiB in one go: past that readFileSync threw, and the import failed as the plugin's fault.
  if (size > MAX_READ_BYTES) {
    throw new ApexError("APEX_E_FILE_TOO_LARGE", `Cannot read the bundle ${path}: it is ${size} bytes, and APEX reads bundle files of up to ${MAX_READ_BYTES} bytes (2 GiB).`, {
      hint: "Nothing was written. Move a session this large with its whole store instead (`apex backup` on the source, then use that copy).",
      details: { file: path, bytes: size, limit: MAX_READ_BYTES },
    });
  }
  try {
    return readFileSync(path);
  } catch (error) {
    throw fileError("read", path, error);
  }
}

/** The largest file readFileSync reads (Node.js's kIoMaxLength). */
export const MAX_READ_BYTES = 2 ** 31 - 1;
