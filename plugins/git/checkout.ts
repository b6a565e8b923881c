import { lstatSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { ApexError } from "../../core/errors.js";
import { isDirectory } from "../../core/config/locate.js";
import { BEFORE_GIT_FIRED_ENV, exists, firstLine, gitOutput, noRepository, runGit } from "./git.js";
import { asGitState, formatChangedFile, readWorkingTree, shortCommit } from "./state.js";

export interface CheckoutResult {
  branch: string;
  commit: string;
}

/**
 * For `apex start --continue --git-checkout`: checks out the commit a checkpoint's git_state
 * recorded, on a new branch `branchName`, in the repository at `repoDir`. Refuses, changing
 * nothing, when the working tree has uncommitted changes, a rebase, merge, cherry-pick, revert,
 * am or bisect is in progress, HEAD is detached with commits no branch has, or files git
 * ignores would be overwritten by the commit's (APEX_E_DIRTY_TREE, exit 4), or the branch exists or clashes with one (`apex` when asked for
 * `apex/x`: APEX_E_BRANCH_EXISTS, exit 4); fails when the checkpoint recorded no commit or
 * the commit is not in the repository (APEX_E_GIT_COMMIT_MISSING, exit 3), when there is no
 * repository (APEX_E_NOT_A_REPOSITORY, exit 3) or the name is not a valid branch name
 * (APEX_E_USAGE, exit 2).
 *
 * The checkout does not fire beforeGit through APEX's hooks: it restores a checkpoint, there is
 * nothing to save first.
 */
export async function checkoutCheckpoint(repoDir: string, gitState: unknown, branchName: string, ignore: readonly string[] = []): Promise<CheckoutResult> {
  return applyCheckout(await planCheckout(repoDir, gitState, branchName, ignore));
}

/** A checkout every check passed for: `applyCheckout` makes it. */
export interface CheckoutPlan {
  repository: string;
  branch: string;
  commit: string;
}

/**
 * Every check of checkoutCheckpoint, changing nothing: so that a command can refuse before it
 * does anything else (`apex start --continue --git-checkout` refuses before stopping a session
 * in the way).
 */
export async function planCheckout(repoDir: string, gitState: unknown, branchName: string, ignore: readonly string[] = [], keep: readonly string[] = []): Promise<CheckoutPlan> {
  const state = asGitState(gitState);
  if (!state || state.commit === null) {
    throw new ApexError("APEX_E_GIT_COMMIT_MISSING", "The checkpoint recorded no git commit, so there is nothing to check out.", {
      hint: "Continue without --git-checkout; the checkpoint was taken outside a git repository or before its first commit.",
    });
  }
  const tree = await readWorkingTree(repoDir, { ignore });
  if (!tree) throw noRepository(repoDir, isDirectory(repoDir) ? undefined : "the directory does not exist");
  // Checked before the changed files: a conflict is both, and the operation is what to finish.
  const operation = await operationInProgress(repoDir);
  if (operation) {
    throw new ApexError(
      "APEX_E_DIRTY_TREE",
      `Refusing to check out the checkpoint's commit ${shortCommit(state.commit)}: a ${operation.name} is in progress in ${repoDir}` +
        ` (checking out now would make it carry on, or finish, from the wrong commit).`,
      { hint: `Finish it (${operation.finish}) or abort it (${operation.abort}), then run the command again.`, details: { repository: repoDir, operation: operation.name } },
    );
  }
  // `keep` (the project's apex.config.yaml) untracked is no change of the work's: the checkout leaves it as it is, unless the
  // commit has a file there. Refused, it had to go into a stash, and the command run again found no config and ran the default agents.
  for (const path of keep.map((file) => relative(repoDir, file))) {
    if (!tree.files.some((file) => file.status === "??" && file.path === path)) continue;
    if ((await runGit(repoDir, ["cat-file", "-e", `${state.commit}:${path}`])).exitCode !== 0) tree.files = tree.files.filter((file) => file.path !== path);
  }
  if (tree.files.length > 0) {
    const shown = tree.files.slice(0, 10).map((file) => `  ${formatChangedFile(file)}`);
    if (tree.files.length > 10) shown.push(`  … and ${tree.files.length - 10} more`);
    throw new ApexError(
      "APEX_E_DIRTY_TREE",
      `Refusing to check out the checkpoint's commit ${shortCommit(state.commit)}: the working tree has uncommitted changes:\n${shown.join("\n")}`,
      {
        hint: "Commit them, or put them aside with `git stash --include-untracked`, then run the command again.",
        details: { repository: repoDir, files: tree.files.map((file) => ({ ...file })) },
      },
    );
  }
  if ((await runGit(repoDir, ["check-ref-format", "--branch", branchName])).exitCode !== 0) {
    throw new ApexError("APEX_E_USAGE", `'${branchName}' is not a valid git branch name.`, { hint: "See `git help check-ref-format`." });
  }
  const taken = await branchClash(repoDir, branchName);
  if (taken !== undefined) {
    const why = taken === branchName ? "the branch exists" : `git cannot have it beside the branch '${taken}'`;
    throw new ApexError("APEX_E_BRANCH_EXISTS", `Refusing to check out the checkpoint on branch '${branchName}': ${why}.`, {
      hint: `Choose another branch name, or delete the branch first (git branch -D ${taken}).`,
      details: { branch: branchName, ...(taken === branchName ? {} : { clashes_with: taken }) },
    });
  }
  if ((await runGit(repoDir, ["cat-file", "-e", `${state.commit}^{commit}`])).exitCode !== 0) {
    // A shallow clone has no history below its depth: fetching more of the same depth brings nothing.
    const shallow = (await runGit(repoDir, ["rev-parse", "--is-shallow-repository"])).stdout.trim() === "true";
    throw new ApexError("APEX_E_GIT_COMMIT_MISSING", `The checkpoint's commit ${state.commit} is not in the repository at ${repoDir}${shallow ? " (a shallow clone)" : ""}.`, {
      hint: shallow
        ? "Fetch the history it lacks (git fetch --unshallow), or continue without --git-checkout."
        : "Fetch it (git fetch --all) if it lives on a remote, or continue without --git-checkout.",
      details: { commit: state.commit },
    });
  }
  if (tree.branch === null && tree.commit !== null) {
    // On a detached HEAD, commits no branch, tag or remote has would be left behind, to be garbage-collected.
    const left = await runGit(repoDir, ["rev-list", "--count", tree.commit, "--not", "--branches", "--tags", "--remotes", state.commit, "--"]);
    const count = left.exitCode === 0 ? Number(left.stdout.trim()) : 0;
    if (count > 0) {
      throw new ApexError(
        "APEX_E_DIRTY_TREE",
        `Refusing to check out the checkpoint's commit ${shortCommit(state.commit)}: HEAD is detached at ${shortCommit(tree.commit)}, with ${count === 1 ? "1 commit" : `${count} commits`} no branch has, which the checkout would leave behind.`,
        { hint: `Keep them on a branch first (git branch <name> ${shortCommit(tree.commit)}), then run the command again.`, details: { repository: repoDir, head: tree.commit, commits: count } },
      );
    }
  }
  const overwritten = await ignoredFilesInTheWay(repoDir, tree.commit, state.commit);
  if (overwritten.length > 0) {
    const shown = overwritten.slice(0, 10).map((path) => `  ${path}`);
    if (overwritten.length > 10) shown.push(`  … and ${overwritten.length - 10} more`);
    throw new ApexError(
      "APEX_E_DIRTY_TREE",
      `Refusing to check out the checkpoint's commit ${shortCommit(state.commit)}: it has files where the working tree has files git ignores, which the checkout would overwrite:\n${shown.join("\n")}`,
      { hint: "Move them out of the way (or delete them if you do not need them), then run the command again.", details: { repository: repoDir, ignored: overwritten } },
    );
  }
  return { repository: repoDir, branch: branchName, commit: state.commit };
}

/** What `git checkout` would leave half done: the operations that keep state in the git directory, and how to end each. */
const OPERATIONS = [
  { file: "rebase-merge", name: "rebase", finish: "git rebase --continue", abort: "git rebase --abort" },
  { file: "rebase-apply/applying", name: "git am", finish: "git am --continue", abort: "git am --abort" },
  { file: "rebase-apply", name: "rebase", finish: "git rebase --continue", abort: "git rebase --abort" },
  { file: "MERGE_HEAD", name: "merge", finish: "git commit", abort: "git merge --abort" },
  { file: "CHERRY_PICK_HEAD", name: "cherry-pick", finish: "git cherry-pick --continue", abort: "git cherry-pick --abort" },
  { file: "REVERT_HEAD", name: "revert", finish: "git revert --continue", abort: "git revert --abort" },
  { file: "BISECT_LOG", name: "bisect", finish: "git bisect reset", abort: "git bisect reset" },
] as const;

/** The operation in progress in the working tree at `repoDir` (its own git directory: a linked worktree has its own), if any. */
async function operationInProgress(repoDir: string): Promise<(typeof OPERATIONS)[number] | undefined> {
  // Relative to repoDir (or absolute): --path-format=absolute needs git 2.31.
  const paths = (await gitOutput(repoDir, ["rev-parse", ...OPERATIONS.flatMap(({ file }) => ["--git-path", file])])).split("\n");
  return OPERATIONS.find((_, index) => paths[index] !== undefined && exists(resolve(repoDir, paths[index]!)));
}

/**
 * Files the commit has that HEAD does not, where the working tree has a file (or directory)
 * already: with a clean tree, only files git ignores, which `git checkout` overwrites without a
 * word (a `.env`, a build output the commit tracked). Paths relative to the top level.
 */
async function ignoredFilesInTheWay(repoDir: string, head: string | null, commit: string): Promise<string[]> {
  const top = (await gitOutput(repoDir, ["rev-parse", "--show-toplevel"])).trim();
  const listing =
    head === null
      ? await gitOutput(repoDir, ["ls-tree", "-r", "-z", "--full-tree", "--name-only", commit])
      : await gitOutput(repoDir, ["diff", "--no-renames", "--no-ext-diff", "--name-only", "-z", "--diff-filter=A", head, commit, "--"]);
  const inTheWay: string[] = [];
  for (const path of listing.split("\0")) {
    if (path === "") continue;
    const parts = path.split("/");
    // The path itself, or a directory of it that is a file (or link) here.
    const blocked = parts.some((_, index) => {
      const at = join(top, ...parts.slice(0, index + 1));
      const last = index === parts.length - 1;
      try {
        const stat = lstatSync(at);
        return last || !stat.isDirectory();
      } catch {
        return false;
      }
    });
    if (blocked) inTheWay.push(path);
  }
  return inTheWay;
}

/** Checks out a planned checkout: a new branch at the commit, in the plan's repository (working tree). */
export async function applyCheckout(plan: CheckoutPlan): Promise<CheckoutResult> {
  // --no-overwrite-ignore: should an ignored file have appeared since the plan, git refuses rather than overwrite it.
  // No timeout: killing a checkout (of a large tree, or whose post-checkout hook installs packages)
  // would leave the working tree half updated and the index locked, or report a checkout that was made as failed.
  const result = await runGit(plan.repository, ["checkout", "--quiet", "--no-overwrite-ignore", "-b", plan.branch, plan.commit], {
    env: { [BEFORE_GIT_FIRED_ENV]: "1" },
    timeoutMs: 0,
  });
  if (result.exitCode !== 0) {
    throw new ApexError("APEX_E_GIT_FAILED", `git checkout -b ${plan.branch} ${shortCommit(plan.commit)} failed: ${firstLine(result.stderr)}`, {
      details: { stderr: result.stderr },
    });
  }
  return { branch: plan.branch, commit: plan.commit };
}

/**
 * A branch name for restoring a checkpoint that no branch has yet: `apex/<session>/<checkpoint>`,
 * then with `-2`, `-3`, … appended. Characters git does not allow in branch names become '-'.
 * With a branch `apex` (or `apex/<session>`), no such name can be created: the first comes back,
 * and planCheckout says which branch is in the way.
 */
export async function restoreBranchName(repoDir: string, sessionId: string, checkpointName: string): Promise<string> {
  const base = `apex/${refSafe(sessionId)}/${refSafe(checkpointName)}`;
  for (let attempt = 1; ; attempt++) {
    const name = attempt === 1 ? base : `${base}-${attempt}`;
    const clash = await branchClash(repoDir, name);
    // A branch named like a directory of it (`apex`) takes every suffix too: planCheckout names it.
    if (clash === undefined || !(clash === name || clash.startsWith(`${name}/`))) return name;
  }
}

/**
 * The branch that keeps `branch` from being created: itself when it exists, a branch named like
 * one of its directories (`apex` for `apex/s/c`: refs are files), or one below it (`apex/s/c/x`).
 */
async function branchClash(repoDir: string, branch: string): Promise<string | undefined> {
  const parts = branch.split("/");
  const prefixes = parts.slice(0, -1).map((_, index) => `refs/heads/${parts.slice(0, index + 1).join("/")}`);
  const full = `refs/heads/${branch}`;
  // A pattern matches the ref it names and the refs below it.
  const result = await runGit(repoDir, ["for-each-ref", "--format=%(refname)", full, ...prefixes]);
  const refs = result.exitCode === 0 ? result.stdout.split("\n").filter(Boolean) : [];
  const clash = refs.find((ref) => ref === full) ?? refs.find((ref) => prefixes.includes(ref)) ?? refs.find((ref) => ref.startsWith(`${full}/`));
  return clash?.slice("refs/heads/".length);
}

function refSafe(part: string): string {
  const cleaned = part
    .replace(/[\x00-\x20\x7f~^:?*[\\/]+/g, "-")
    .replace(/\.{2,}/g, ".")
    .replace(/@\{/g, "-")
    .replace(/^[.-]+|[.]+$|\.lock$/g, "");
  return cleaned.length > 0 ? cleaned : "restore";
}
