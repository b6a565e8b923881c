import { chmodSync, closeSync, fchmodSync, lstatSync, mkdirSync, openSync, statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * The store directory (`.apex/`) is private: APEX creates it and everything in it (the
 * LMDB store and its lock, logs, the supervisor's runtime file and socket, backups,
 * bundles) owner-only, 0700 directories and 0600 files (0700 for the `bin/apex` shim),
 * whatever the umask. Memory values and agents' logs are nobody else's business. A store
 * made before that is tightened the first time it is opened, with a notice.
 *
 * Modes are set explicitly (chmod after create), not by changing the process umask: agents
 * inherit the supervisor's umask, and the files they write in the project must keep the
 * user's usual modes.
 */

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_EXECUTABLE_MODE = 0o700;

/** Bits that let others than the owner in. */
export const GROUP_OTHER = 0o077;

/** Ignores what the caller cannot change: another user's file, a read-only file system, a file gone meanwhile. */
function tolerant(fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (!["EPERM", "EROFS", "ENOENT", "EACCES"].includes((error as NodeJS.ErrnoException).code ?? "")) throw error;
  }
}

/**
 * Creates `dir` (and missing parents) owner-only (0700); an existing `dir` loses its group and
 * other bits only: an owner's stricter mode (0500, made read-only) is not APEX's to undo.
 */
export function makePrivateDir(dir: string): void {
  const created = mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  // mkdir's mode is cut by the umask: set it on every directory made here, and on `dir`.
  const made: string[] = [resolve(dir)];
  // mkdir returns the first directory it made as `dir` was given (relative when `dir` is):
  // compared unresolved, the loop went on up to / and made the cwd's parents (/tmp) owner-only.
  const first = created === undefined ? undefined : resolve(created);
  if (first) for (let at = dirname(made[0]!); at.length >= first.length && at !== dirname(at); at = dirname(at)) made.push(at);
  for (const path of made) {
    tolerant(() => {
      const mode = statSync(path).mode & 0o777;
      const wanted = first ? PRIVATE_DIR_MODE : mode & ~GROUP_OTHER;
      if (mode !== wanted) chmodSync(path, wanted);
    });
  }
}

/** Opens (creating if needed) a file owner-only: the mode is set on the descriptor, whatever the umask or its earlier mode. */
export function openPrivate(file: string, flags: string): number {
  const fd = openSync(file, flags, PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "EROFS") {
      closeSync(fd);
      throw error;
    }
  }
  return fd;
}

/** Writes a whole file owner-only. */
export function writePrivateFile(file: string, data: string | Buffer, mode = PRIVATE_FILE_MODE): void {
  writeFileSync(file, data, { mode });
  tolerant(() => chmodSync(file, mode));
}

/** Makes one existing path owner-only (its group and other bits taken away; the owner's kept); no-op when it already is. */
export function makePrivate(path: string): void {
  tolerant(() => {
    const stat = lstatSync(path);
    if (stat.isSymbolicLink() || !(stat.mode & GROUP_OTHER)) return;
    chmodSync(path, stat.mode & 0o700);
  });
}
