/**
 * The symlink-resolving path the checks that compare locations share (an output file against the
 * store, backup_location against .apex, a branch's --worktree against .git and .apex). It lives
 * under plugins/ because config loading checks backup_location and must load no CLI module.
 */
import { realpathSync } from "node:fs";
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
