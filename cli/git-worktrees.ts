import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

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
