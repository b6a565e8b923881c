import { isAbsolute, relative } from "node:path";
import { ApexError } from "../../core/errors.js";
import { firstLine, runGit, type RunGitOptions } from "./git.js";
import type { GitRunner } from "./runner.js";
import { visibleText } from "../../cli/terminal-text.js";

/**
 * The git state a checkpoint records as `git_state`. `branch` is null on a detached HEAD,
 * `commit` null on an unborn branch (no commit yet); `dirty` is true when anything is staged,
 * modified or untracked (what `git status --porcelain` lists), APEX's own store excepted.
 */
export type GitState = {
  branch: string | null;
  commit: string | null;
  dirty: boolean;
};

/** One entry of `git status`: `status` is the two-letter XY code of `git status --porcelain` ("M ", " M", "??", "R "). */
export type ChangedFile = {
  status: string;
  path: string;
  /** The old path of a rename or copy. */
  from?: string;
};

/** The git state with the changed files it was derived from. */
export type WorkingTree = GitState & {
  files: ChangedFile[];
};

export interface ReadTreeOptions extends RunGitOptions {
  /**
   * Directories whose contents never make the tree dirty: APEX's store (`.apex/`, or wherever
   * APEX_HOME puts it), which changes with every command. Those outside `repoDir` are left out
   * (git refuses a pathspec outside the repository).
   */
  ignore?: readonly string[];
  /** Runs git through this runner (a process that reads the git state again and again: a supervisor's checkpoints). */
  runner?: GitRunner;
}

/** `:(exclude)<dir>` pathspecs for the directories inside `repoDir`; git then still lists everything else. */
function excludePathspecs(repoDir: string, dirs: readonly string[]): string[] {
  const specs: string[] = [];
  for (const dir of dirs) {
    const inside = relative(repoDir, dir);
    if (inside === "" || inside.startsWith("..") || isAbsolute(inside)) continue;
    specs.push(`:(exclude)${inside}`);
  }
  return specs;
}

/**
 * Reads branch, HEAD commit and changed files with one `git status --porcelain=v2 --branch`.
 * Resolves to null when `repoDir` is not in a git repository (or does not exist); rejects when
 * git is missing (APEX_E_GIT_UNAVAILABLE) or fails otherwise (APEX_E_GIT_FAILED).
 */
export async function readWorkingTree(repoDir: string, options: ReadTreeOptions = {}): Promise<WorkingTree | null> {
  let result;
  try {
    const args = ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal", "--ignore-submodules=none"];
    const excluded = excludePathspecs(repoDir, options.ignore ?? []);
    const argv = excluded.length > 0 ? [...args, "--", ...excluded] : args;
    result = await (options.runner ? options.runner.run(repoDir, argv, options) : runGit(repoDir, argv, options));
  } catch (error) {
    if ((error as { code?: string }).code === "APEX_E_NOT_A_REPOSITORY") return null;
    throw error;
  }
  if (result.exitCode !== 0) {
    if (/not a git repository/i.test(result.stderr)) return null;
    throw new ApexError("APEX_E_GIT_FAILED", `git status failed in ${repoDir}: ${firstLine(result.stderr) || `exit code ${result.exitCode}`}`, {
      ...(/dubious ownership/.test(result.stderr) ? { hint: `Mark the repository safe: git config --global --add safe.directory ${repoDir}` } : {}),
      details: { repository: repoDir, stderr: result.stderr },
    });
  }
  return parseStatus(result.stdout);
}

/**
 * The project repository's git state for a checkpoint: null when there is no repository, and
 * null with a warning when git is missing or fails (a checkpoint never fails because of git).
 */
export async function readGitState(repoDir: string, warn: (message: string) => void, options: ReadTreeOptions = {}): Promise<GitState | null> {
  try {
    const tree = await readWorkingTree(repoDir, options);
    return tree && { branch: tree.branch, commit: tree.commit, dirty: tree.dirty };
  } catch (error) {
    warn(`no git state recorded: ${(error as Error).message}`);
    return null;
  }
}

/** Parses `git status --porcelain=v2 --branch -z`. */
export function parseStatus(output: string): WorkingTree {
  let branch: string | null = null;
  let commit: string | null = null;
  const files: ChangedFile[] = [];
  const tokens = output.split("\0");
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token === "") continue;
    if (token.startsWith("# branch.oid ")) {
      const oid = token.slice("# branch.oid ".length);
      commit = oid === "(initial)" ? null : oid;
    } else if (token.startsWith("# branch.head ")) {
      const head = token.slice("# branch.head ".length);
      branch = head === "(detached)" ? null : head;
    } else if (token.startsWith("# ")) {
      continue; // branch.upstream, branch.ab, stash: not part of the state
    } else if (token.startsWith("1 ")) {
      files.push({ status: xy(token), path: afterFields(token, 8) });
    } else if (token.startsWith("2 ")) {
      files.push({ status: xy(token), path: afterFields(token, 9), from: tokens[++i] ?? "" });
    } else if (token.startsWith("u ")) {
      files.push({ status: xy(token), path: afterFields(token, 10) });
    } else if (token.startsWith("? ")) {
      files.push({ status: "??", path: token.slice(2) });
    }
  }
  return { branch, commit, dirty: files.length > 0, files };
}

/** The XY field of a v2 entry in v1 notation: '.' (unchanged) becomes ' '. */
function xy(entry: string): string {
  return entry.slice(2, 4).replace(/\./g, " ");
}

/** What follows the first `count` space-separated fields (a path may itself contain spaces). */
function afterFields(entry: string, count: number): string {
  let index = -1;
  for (let field = 0; field < count; field++) {
    index = entry.indexOf(" ", index + 1);
    if (index < 0) return "";
  }
  return entry.slice(index + 1);
}

/** "M  src/a.ts", "R  old.txt -> new.txt": a changed file as `git status --short` shows it. */
export function formatChangedFile(file: ChangedFile): string {
  // A file name may hold any byte but NUL, a newline too (`git status -z` gives it as it is): each
  // control character is shown as its escape, as the CLI shows text it did not write, so one file
  // is one line (a name with a newline printed as two, the second read as another file).
  return `${file.status} ${file.from !== undefined ? `${visibleText(file.from)} -> ${visibleText(file.path)}` : visibleText(file.path)}`;
}

/** "main @ 1a2b3c4", "detached HEAD @ 1a2b3c4", "main (no commits yet)". */
export function describeState(state: Pick<GitState, "branch" | "commit">): string {
  const where = state.branch === null ? "detached HEAD" : state.branch;
  return state.commit === null ? `${where} (no commits yet)` : `${where} @ ${shortCommit(state.commit)}`;
}

export function shortCommit(commit: string): string {
  return commit.slice(0, 7);
}

/** Reads a git_state as stored in a manifest, tolerating anything that is not one. */
export function asGitState(value: unknown): GitState | null {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const record = value as Record<string, unknown>;
  const branch = typeof record.branch === "string" ? record.branch : null;
  const commit = typeof record.commit === "string" ? record.commit : null;
  if (!("branch" in record) && !("commit" in record)) return null;
  return { branch, commit, dirty: record.dirty === true };
}
