import { existsSync, readFileSync, realpathSync, statfsSync } from "node:fs";
import { dirname } from "node:path";
import { ApexError } from "../errors.js";

/**
 * A full disk, told to a person: the filesystem a path is on and what is free there. The
 * storage backends map their own failures onto these (plugins/lmdb/errors.ts: LMDB's codes).
 */

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

export function errnoOf(error: unknown): number | string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "number" || typeof code === "string" ? code : undefined;
}

/**
 * The APEX_E_DISK_FULL error for a file APEX writes outside the store (a bundle, a backup),
 * naming the file and its filesystem.
 */
export function fileDiskFullError(path: string, cause?: unknown): ApexError {
  // EFBIG: the file passed a size limit (the process's, `ulimit -f`, or the filesystem's), not the free space.
  if (errnoOf(cause) === "EFBIG") {
    return new ApexError("APEX_E_FILE_TOO_LARGE", `Cannot write ${path}: it would pass the largest file size allowed. Nothing of it was kept.`, {
      hint: "Raise the file size limit (`ulimit -f`) or write to a filesystem that takes larger files, and run the command again.",
      details: { file: path },
      cause,
    });
  }
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

export function formatFree(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

