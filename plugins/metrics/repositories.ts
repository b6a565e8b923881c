import { existsSync } from "node:fs";
import { join } from "node:path";
import { firstLine, gitLimits, runGit, type GitResult, type RunGitOptions } from "../git/git.js";
import { readWorkingTree } from "../git/state.js";
import type { RepositoryMetrics } from "./record.js";

/** A repository whose work the session's metrics count. */
export interface RepositorySpec {
  name: "project" | "workspace";
  dir: string;
}

/**
 * The repositories counted: the project repository (the git plugin's `repository`, else the
 * project directory) and the agents' workspace at <store>/workspace (where the reference coder
 * commits), once it has its own .git.
 */
export function repositoriesOf(projectRepository: string, storeDir: string): RepositorySpec[] {
  return [
    { name: "project", dir: projectRepository },
    { name: "workspace", dir: join(storeDir, "workspace") },
  ];
}

/**
 * HEAD and branch of a repository (commit null: no commit yet), and whether any tracked file
 * (or the index) differs from HEAD, untracked files aside; undefined when there is no repository.
 */
export type Head = { commit: string | null; branch: string | null; changed: boolean } | undefined;

/** The repository's Head. Rejects when git fails. */
export async function headOf(spec: RepositorySpec, options: RunGitOptions = {}): Promise<Head> {
  // The workspace must have its own .git: git would otherwise find an enclosing repository.
  if (spec.name === "workspace" && !existsSync(join(spec.dir, ".git"))) return undefined;
  const tree = await readWorkingTree(spec.dir, options);
  return tree ? { commit: tree.commit, branch: tree.branch, changed: tree.files.some((file) => file.status !== "??") } : undefined;
}

/**
 * Commits since `start` and lines added and removed since then (`git diff --numstat <start>`
 * against the working tree, so uncommitted changes to tracked files count; binary files count
 * as changed files without lines). Undefined when the repository does not exist (yet). `known`:
 * its Head read a moment ago, not read again. `within`: git's calls end by `deadline` (a
 * Date.now() time; each within git's own timeout too), and are cut short once `signal` aborts;
 * what is not counted then (or fails) is said in `error`, the figures counted so far kept.
 */
export async function measureRepository(spec: RepositorySpec, start: string | null, known?: { head: Head }, within: { deadline?: number; signal?: AbortSignal } = {}): Promise<RepositoryMetrics | undefined> {
  const { deadline, signal } = within;
  // The options of git's next call; undefined once there is no time left for one.
  const timed = (): RunGitOptions | undefined => {
    if (signal?.aborted) return undefined;
    if (deadline === undefined) return signal ? { signal } : {};
    const left = deadline - Date.now();
    return left > 0 ? { timeoutMs: Math.min(gitLimits.timeoutMs, left), ...(signal ? { signal } : {}) } : undefined;
  };
  const late = "not counted: git did not finish before the metrics were due";
  let head: Head;
  try {
    const options = timed();
    if (!options) return { ...empty(spec, start), error: late };
    head = known ? known.head : await headOf(spec, options);
  } catch (error) {
    return { ...empty(spec, start), error: (error as Error).message };
  }
  if (!head) return undefined;
  const metrics: RepositoryMetrics = { ...empty(spec, start), head: head.commit, branch: head.branch };
  // Read a moment ago at the start commit itself (a new session's first sample): no commit since, and
  // with no tracked file changed, no line either (with no commit, the index is empty: every entry
  // would show as added). Nothing for git to count, so none of its processes on the start's way.
  const atStart = known !== undefined && head.commit === start;
  if (atStart && !head.changed) return metrics;
  const problems: string[] = [];
  // One git call within the deadline: its result, or undefined with the reason in `problems`.
  const git = async (args: string[], what: string): Promise<GitResult | undefined> => {
    const options = timed();
    if (!options) {
      problems.push(`${what}: ${late}`);
      return undefined;
    }
    try {
      return await runGit(spec.dir, args, options);
    } catch (error) {
      problems.push(`${what}: ${(error as Error).message}`);
      return undefined;
    }
  };
  // A session imported from another project (`apex session import`) started at a commit of that
  // project's repository: nothing here counts against it, so one plain note says so, not git's "bad object".
  if (start && !atStart) {
    const found = await git(["cat-file", "-e", `${start}^{commit}`], `cannot find the start commit ${start.slice(0, 7)}`);
    if (!found) return { ...metrics, error: problems.join("; ") };
    if (found.exitCode !== 0) {
      metrics.error = `commits and changed lines are not counted: the session's start commit ${start.slice(0, 7)} is not in this repository (a session imported from another project, or its history rewritten)`;
      return metrics;
    }
  }
  if (head.commit !== null && !atStart) {
    const what = `cannot count commits since ${start?.slice(0, 7) ?? "the start"}`;
    const counted = await git(["rev-list", "--count", "HEAD", ...(start ? ["--not", start] : [])], what);
    if (counted?.exitCode === 0) metrics.commits = Number(counted.stdout.trim()) || 0;
    else if (counted) problems.push(`${what}: ${firstLine(counted.stderr)}`);
  }
  const base = start ?? (await emptyTree(spec.dir).catch(() => undefined));
  if (base) {
    const what = `cannot diff against ${base.slice(0, 7)}`;
    const diff = await git(["diff", "--numstat", "--no-renames", "--no-ext-diff", base, "--"], what);
    if (diff?.exitCode === 0) Object.assign(metrics, sumNumstat(diff.stdout));
    else if (diff) problems.push(`${what}: ${firstLine(diff.stderr)}`);
  }
  metrics.error = problems.length > 0 ? problems.join("; ") : null;
  return metrics;
}

/** Sums `git diff --numstat` output: "added<TAB>removed<TAB>path" per file, "-" for binary files. */
export function sumNumstat(output: string): { lines_added: number; lines_removed: number; files_changed: number } {
  const totals = { lines_added: 0, lines_removed: 0, files_changed: 0 };
  for (const line of output.split("\n")) {
    const [added, removed] = line.split("\t", 3);
    if (added === undefined || removed === undefined || line.trim() === "") continue;
    totals.files_changed += 1;
    totals.lines_added += Number(added) || 0;
    totals.lines_removed += Number(removed) || 0;
  }
  return totals;
}

const emptyTrees = new Map<string, string>();

/** The empty tree's id in this repository's hash format (sha1 or sha256): what "no start commit" diffs against. */
async function emptyTree(dir: string): Promise<string | undefined> {
  const known = emptyTrees.get(dir);
  if (known) return known;
  const result = await runGit(dir, ["hash-object", "-t", "tree", "/dev/null"]);
  if (result.exitCode !== 0) return undefined;
  const id = result.stdout.trim();
  emptyTrees.set(dir, id);
  return id;
}

function empty(spec: RepositorySpec, start: string | null): RepositoryMetrics {
  return {
    name: spec.name,
    path: spec.dir,
    start_commit: start,
    head: null,
    branch: null,
    commits: 0,
    lines_added: 0,
    lines_removed: 0,
    files_changed: 0,
    error: null,
  };
}
