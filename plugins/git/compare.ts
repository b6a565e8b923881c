import { ApexError } from "../../core/errors.js";
import { runGit } from "./git.js";
import { asGitState, describeState, formatChangedFile, readWorkingTree, shortCommit, type ChangedFile, type GitState, type WorkingTree } from "./state.js";

/** How many commits the short log of a comparison lists at most. */
export const LOG_LIMIT = 20;

export interface CommitSummary {
  commit: string;
  subject: string;
}

/** What changed in the repository since a checkpoint recorded its git_state. */
export interface GitChanges {
  /** The repository's state now (with its changed files); null when there is no repository. */
  current: WorkingTree | null;
  /** The checkpoint's git_state; null when it recorded none. */
  checkpoint: GitState | null;
  branch_changed: boolean;
  commit_changed: boolean;
  /** Commits reachable from HEAD but not from the checkpoint's commit (`git rev-list --count A..B`); null when unknown. */
  commits_since: number | null;
  /** Commits of the checkpoint that HEAD no longer contains (after a reset or a rebase); null when unknown. */
  commits_behind: number | null;
  /** Newest first, at most LOG_LIMIT. */
  log: CommitSummary[];
  /** False when the checkpoint's commit is not in the repository (null when it recorded none). */
  checkpoint_commit_present: boolean | null;
  dirty_changed: boolean;
  /** The uncommitted changes now. */
  dirty_files: ChangedFile[];
}

/**
 * Compares the repository at `repoDir` with a checkpoint's git_state. Throws when git is
 * missing or fails (APEX_E_GIT_UNAVAILABLE, APEX_E_GIT_FAILED); a missing repository is
 * `current: null`, not an error.
 */
export async function diffGitState(repoDir: string, checkpointGitState: unknown, ignore: readonly string[] = []): Promise<GitChanges> {
  const checkpoint = asGitState(checkpointGitState);
  const current = await readWorkingTree(repoDir, { ignore });
  const changes: GitChanges = {
    current,
    checkpoint,
    branch_changed: false,
    commit_changed: false,
    commits_since: null,
    commits_behind: null,
    log: [],
    checkpoint_commit_present: null,
    dirty_changed: false,
    dirty_files: current?.files ?? [],
  };
  if (!current || !checkpoint) return changes;
  changes.branch_changed = current.branch !== checkpoint.branch;
  changes.commit_changed = current.commit !== checkpoint.commit;
  changes.dirty_changed = current.dirty !== checkpoint.dirty;
  if (checkpoint.commit !== null) changes.checkpoint_commit_present = await commitExists(repoDir, checkpoint.commit);
  if (current.commit === null) {
    changes.commits_since = 0;
    changes.commits_behind = checkpoint.commit === null ? 0 : null;
  } else if (checkpoint.commit === null) {
    // The checkpoint was taken before the first commit: everything is new.
    changes.commits_since = await countCommits(repoDir, ["HEAD"]);
    changes.commits_behind = 0;
    changes.log = await shortLog(repoDir, ["HEAD"]);
  } else if (changes.checkpoint_commit_present) {
    const [behind, since] = await leftRightCount(repoDir, checkpoint.commit, current.commit);
    changes.commits_since = since;
    changes.commits_behind = behind;
    if (since > 0) changes.log = await shortLog(repoDir, [`${checkpoint.commit}..${current.commit}`]);
  }
  return changes;
}

export interface GitComparison {
  /** True when the branch, the HEAD commit or the dirtiness differ, or the repository is gone. */
  differs: boolean;
  /** One sentence per difference, for people. */
  messages: string[];
  /** The details; undefined when git could not be asked (its message is then in `messages`). */
  changes: GitChanges | undefined;
}

/**
 * For `apex start --continue`: how the project repository differs from the checkpoint's
 * git_state. Never throws for git problems: a missing git, or a checkpoint without git_state,
 * is reported (or ignored) rather than stopping the session.
 */
export async function compareGitState(repoDir: string, checkpointGitState: unknown, ignore: readonly string[] = []): Promise<GitComparison> {
  let changes: GitChanges;
  try {
    changes = await diffGitState(repoDir, checkpointGitState, ignore);
  } catch (error) {
    if (error instanceof ApexError && (error.code === "APEX_E_GIT_UNAVAILABLE" || error.code === "APEX_E_GIT_FAILED")) {
      return { differs: false, messages: [`The git state was not compared with the checkpoint's: ${error.message}`], changes: undefined };
    }
    throw error;
  }
  const messages = differenceMessages(changes, repoDir);
  return { differs: messages.length > 0, messages, changes };
}

/** Sentences for people, one per difference between the checkpoint's git state and now. */
export function differenceMessages(changes: GitChanges, repoDir: string): string[] {
  const { current, checkpoint } = changes;
  if (!checkpoint) return [];
  if (!current) return [`The checkpoint was taken in a git repository (${describeState(checkpoint)}), but there is none at ${repoDir} now.`];
  const messages: string[] = [];
  if (changes.branch_changed) {
    messages.push(`Branch changed: the checkpoint was taken on ${branchLabel(checkpoint.branch)}, the repository is on ${branchLabel(current.branch)} now.`);
  }
  if (changes.commit_changed) messages.push(commitMessage(changes, checkpoint, current));
  if (changes.dirty_changed) {
    messages.push(
      current.dirty
        ? `Uncommitted changes since the checkpoint (${countOf(current.files.length, "file")}): ${listFiles(current.files)}.`
        : "The working tree was dirty when the checkpoint was taken and is clean now (APEX does not save uncommitted changes).",
    );
  }
  return messages;
}

function commitMessage(changes: GitChanges, checkpoint: GitState, current: WorkingTree): string {
  const then = checkpoint.commit === null ? "no commit yet" : shortCommit(checkpoint.commit);
  const now = current.commit === null ? "no commit" : shortCommit(current.commit);
  const base = `HEAD moved: ${then} at the checkpoint, ${now} now`;
  if (changes.checkpoint_commit_present === false) return `${base} (the checkpoint's commit is not in this repository).`;
  const parts: string[] = [];
  if (changes.commits_since) parts.push(`${countOf(changes.commits_since, "commit")} since`);
  if (changes.commits_behind) parts.push(`${countOf(changes.commits_behind, "commit")} of the checkpoint no longer on HEAD`);
  return parts.length > 0 ? `${base} (${parts.join(", ")}).` : `${base}.`;
}

function branchLabel(branch: string | null): string {
  return branch === null ? "a detached HEAD" : `'${branch}'`;
}

export function countOf(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function listFiles(files: ChangedFile[], limit = 5): string {
  const shown = files.slice(0, limit).map((file) => formatChangedFile(file).trim());
  return files.length > limit ? `${shown.join(", ")}, …` : shown.join(", ");
}

async function commitExists(repoDir: string, commit: string): Promise<boolean> {
  const result = await runGit(repoDir, ["cat-file", "-e", `${commit}^{commit}`]);
  return result.exitCode === 0;
}

async function countCommits(repoDir: string, range: string[]): Promise<number> {
  const result = await runGit(repoDir, ["rev-list", "--count", ...range, "--"]);
  return result.exitCode === 0 ? Number(result.stdout.trim()) : 0;
}

/** [commits only in `left`, commits only in `right`]. */
async function leftRightCount(repoDir: string, left: string, right: string): Promise<[number, number]> {
  const result = await runGit(repoDir, ["rev-list", "--left-right", "--count", `${left}...${right}`, "--"]);
  if (result.exitCode !== 0) return [0, 0];
  const [behind, since] = result.stdout.trim().split(/\s+/).map(Number);
  return [behind ?? 0, since ?? 0];
}

async function shortLog(repoDir: string, range: string[]): Promise<CommitSummary[]> {
  const result = await runGit(repoDir, ["log", `--max-count=${LOG_LIMIT}`, "--format=%H %s", ...range, "--"]);
  if (result.exitCode !== 0) return [];
  return result.stdout
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => {
      const space = line.indexOf(" ");
      return space < 0 ? { commit: line, subject: "" } : { commit: line.slice(0, space), subject: line.slice(space + 1) };
    });
}
