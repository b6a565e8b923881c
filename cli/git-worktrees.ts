import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

/**
 * The directory of the project's git worktree that has `branch` checked out and still exists, if
 * one does: where a session's worktree went when it was moved by hand (`git worktree move`, or
 * `mv` and `git worktree repair`), which git refuses to check out a second time.
 */
export function worktreeOnBranch(projectDir: string, branch: string): string | undefined {
  const listed = spawnSync("git", ["worktree", "list", "--porcelain"], { cwd: projectDir, encoding: "utf8" });
  if (listed.status !== 0 || typeof listed.stdout !== "string") return undefined;
  for (const entry of listed.stdout.split("\n\n")) {
    const lines = entry.split("\n");
    const dir = lines.find((line) => line.startsWith("worktree "))?.slice("worktree ".length);
    if (dir && lines.includes(`branch refs/heads/${branch}`) && existsSync(dir)) return dir;
  }
  return undefined;
}

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/** Directories looked at for a worktree moved with `mv`: enough for a renamed sibling, not a walk of the disk. */
const MOVED_SCAN_LIMIT = 2000;

/** The repository's record of the worktree at `path` (`<git-common-dir>/worktrees/<id>`), while git keeps one. */
function worktreeRecord(projectDir: string, path: string): string | undefined {
  const common = spawnSync("git", ["rev-parse", "--git-common-dir"], { cwd: projectDir, encoding: "utf8" });
  if (common.status !== 0 || typeof common.stdout !== "string" || !common.stdout.trim()) return undefined;
  const worktrees = join(resolve(projectDir, common.stdout.trim()), "worktrees");
  try {
    for (const name of readdirSync(worktrees)) {
      let recorded: string;
      try {
        recorded = readFileSync(join(worktrees, name, "gitdir"), "utf8").trim();
      } catch {
        continue;
      }
      if (resolve(dirname(recorded)) === resolve(path) || real(dirname(recorded)) === real(path)) return real(join(worktrees, name));
    }
  } catch {
    // no worktrees at all
  }
  return undefined;
}

/**
 * Where the git worktree recorded as `record` (worktreeRecord) went when it was moved with `mv`
 * (git was not told: `git worktree list` shows it at its old place, prunable): a directory beside
 * `path` or beside the project whose `.git` file points at that record.
 */
function movedWorktree(projectDir: string, path: string, record: string): string | undefined {
  for (const parent of new Set([dirname(resolve(path)), dirname(resolve(projectDir))])) {
    let entries: string[];
    try {
      entries = readdirSync(parent).slice(0, MOVED_SCAN_LIMIT);
    } catch {
      continue;
    }
    for (const entry of entries) {
      const dir = join(parent, entry);
      let pointer: string;
      try {
        pointer = readFileSync(join(dir, ".git"), "utf8");
      } catch {
        continue; // not a worktree (no .git file, or a .git directory)
      }
      const match = /^gitdir: (.+)$/m.exec(pointer);
      if (match && real(resolve(dir, match[1]!.trim())) === record) return dir;
    }
  }
  return undefined;
}

/**
 * What to run, from the project, to bring back the git worktree of a session, recorded at `path`
 * and no longer there. Moved with `mv` (git still records it there): `git worktree repair` tells
 * git where it is (keeping its files and branch) and `git worktree move` puts it back; the
 * directory is named when found beside, else NEW-DIR. Deleted: made again on its branch (`-b` at
 * `commit`, the one it was made at, when the branch is gone too).
 */
export function worktreeBackHint(projectDir: string, path: string, branch: string | undefined, commit?: string | null): { hint: string; movedTo?: string } {
  const away = existsSync(path) ? " (after moving the directory there now away)" : "";
  const record = worktreeRecord(projectDir, path);
  const moved = record === undefined ? undefined : movedWorktree(projectDir, path, record);
  const back = (from: string) => `git worktree repair ${JSON.stringify(from)} && git worktree move ${JSON.stringify(from)} ${JSON.stringify(path)}${away}`;
  if (moved !== undefined) return { hint: `It was moved to ${moved} without git knowing: move it back, from the project: ${back(moved)}`, movedTo: moved };
  const branchGone = branch !== undefined && spawnSync("git", ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`], { cwd: projectDir }).status === 1;
  const add = `${record === undefined ? "" : "git worktree prune && "}git worktree add ${branchGone ? `-b ${branch} ${JSON.stringify(path)} ${commit ?? "COMMIT"}` : `${JSON.stringify(path)}${branch ? ` ${branch}` : ""}`}${away}`;
  // Not recorded by git any more (git worktree remove, or prune): it was not moved with mv.
  if (record === undefined) return { hint: `Recreate it from the project: ${add}${branchGone ? ` (its git branch ${branch} is gone too: made again at the commit it was made at)` : ""}` };
  return { hint: `Moved by hand (mv), bring it back from the project: ${back("NEW-DIR")}; deleted, recreate it: ${add}` };
}
