/**
 * File-system helpers that modules config loading may load share with the CLI (it must load no CLI
 * module): the symlink-resolving path the checks that compare locations use (an output file against
 * the store, backup_location against .apex, a branch's --worktree against .git and .apex), and the
 * sync of a directory after a rename in it (an output file, a backup, a repaired store file).
 */
import { closeSync, fsyncSync, openSync, realpathSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/**
 * The path with its symbolic links resolved; one that does not exist (yet) is its nearest existing
 * directory's real path with the rest appended: `backup --to link/new`, link a symlink to .apex/,
 * is in .apex/ (it was taken as a path of its own, and the copy written there).
 */
export function realPath(path: string): string {
  const whole = resolve(path);
  try {
    return realpathSync(whole);
  } catch {
    const parent = dirname(whole);
    return parent === whole ? whole : join(realPath(parent), basename(whole));
  }
}

/**
 * Makes a file's bytes durable before it is given its name (link or rename): a copy written by
 * another's code that closes it unsynced (LMDB's mdb_env_copy) could be lost, or be there
 * truncated, after a power loss that came after the backup said it was saved.
 */
export function syncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes a rename in `dir` durable; a file system that cannot sync a directory is left as it is (the rename itself is atomic). */
export function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some file systems do not sync directories
  }
}
