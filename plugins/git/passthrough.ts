import { spawn } from "node:child_process";
import { realpathSync } from "node:fs";
import { constants } from "node:os";
import { isAbsolute, relative } from "node:path";
import { isDirectory } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { BEFORE_GIT_FIRED_ENV, initHint, noRepository, runGit } from "./git.js";
import { gitCommandOf } from "./repository.js";

/**
 * git commands that only read: `apex git -- <command>` runs them without firing beforeGit.
 * Anything else (including commands that read or write depending on their arguments, such as
 * `branch` or `stash`) fires it.
 */
export const READ_ONLY_GIT_COMMANDS: ReadonlySet<string> = new Set([
  "annotate", "blame", "cat-file", "check-attr", "check-ignore", "check-mailmap", "check-ref-format", "cherry",
  "count-objects", "describe", "diff", "diff-files", "diff-index", "diff-tree", "for-each-ref", "fsck", "grep",
  "help", "log", "ls-files", "ls-remote", "ls-tree", "merge-base", "name-rev", "range-diff", "rev-list",
  "rev-parse", "shortlog", "show", "show-branch", "show-ref", "status", "var", "verify-commit", "verify-pack",
  "verify-tag", "version", "whatchanged",
]);

/**
 * git commands that fail outside a repository (`fatal: not a git repository`): with the project
 * repository missing, `apex git -- <command>` says so in APEX's words, before firing beforeGit.
 * Commands that may run outside one (init, clone, config, ls-remote, diff --no-index, apply, …)
 * are not listed: git runs them and answers itself.
 */
const NEEDS_REPOSITORY: ReadonlySet<string> = new Set([
  ...[...READ_ONLY_GIT_COMMANDS].filter((command) => !["help", "version", "diff", "ls-remote", "var", "check-ref-format", "verify-pack"].includes(command)),
  "add", "am", "bisect", "branch", "checkout", "cherry-pick", "clean", "commit", "fetch", "gc", "merge", "mv", "notes", "pull",
  "push", "rebase", "remote", "reset", "restore", "revert", "rm", "sparse-checkout", "stash", "submodule", "switch", "tag", "worktree",
]);

/** git's own options that choose the repository: with one, git is left to find it. */
const REPOSITORY_OPTIONS = ["-C", "--git-dir", "--work-tree"];

/**
 * Refuses (APEX_E_NOT_A_REPOSITORY, exit 3) a git command that needs a repository when the
 * project repository is none, naming it: before, git's bare `fatal: not a git repository` came
 * through with exit 128, after beforeGit had already taken a checkpoint for it.
 */
export async function assertRepositoryFor(repoDir: string, args: readonly string[]): Promise<void> {
  const command = gitCommandOf(args);
  if (command === undefined || !NEEDS_REPOSITORY.has(command)) return;
  const leading = args.slice(0, args.indexOf(command));
  if (leading.some((arg) => REPOSITORY_OPTIONS.some((option) => arg === option || arg.startsWith(`${option}=`)))) return;
  if (process.env.GIT_DIR !== undefined) return;
  if (isDirectory(repoDir) && (await runGit(repoDir, ["rev-parse", "--git-dir"])).exitCode === 0) return;
  const error = noRepository(repoDir, isDirectory(repoDir) ? "it is not inside a git repository" : "the directory does not exist");
  throw new ApexError(error.code, `${error.message.replace(/\.$/, "")}, so \`git ${command}\` cannot run there. Nothing was run.`, {
    hint: `${initHint(repoDir, true)}, or point the git plugin's \`repository\` option (apex.config.yaml) at the repository.`,
    details: { ...error.details, command },
  });
}

/** True when the git command only reads (`status`, `log`, `--version`, …): no beforeGit for it. */
export function isReadOnlyGitCommand(args: readonly string[]): boolean {
  const command = gitCommandOf(args);
  if (command === undefined) return true; // `git --version`, `git --help`
  return READ_ONLY_GIT_COMMANDS.has(command);
}

/**
 * Where `apex git --` runs git: in the current directory when it is inside the project
 * repository (so relative paths mean what the user sees), else at the repository itself.
 */
export async function passthroughDirectory(repoDir: string, cwd: string): Promise<string> {
  if (!isDirectory(repoDir)) throw noRepository(repoDir, "the directory does not exist");
  const top = await runGit(repoDir, ["rev-parse", "--show-toplevel"]);
  if (top.exitCode !== 0) return repoDir; // not a repository yet: `apex git -- init` makes one
  const inside = relative(realpathSync(top.stdout.trim()), realpathSync(cwd));
  return inside === "" || (!inside.startsWith("..") && !isAbsolute(inside)) ? cwd : repoDir;
}

/** Signals `apex git --` passes on to git rather than act on: git decides, and APEX waits for it. */
const FORWARDED_SIGNALS = ["SIGINT", "SIGQUIT", "SIGTERM", "SIGHUP"] as const;

/**
 * Runs git with the terminal (stdin, stdout, stderr inherited) and resolves with its exit code
 * (128 + the signal number when a signal ended it). APEX's hooks see BEFORE_GIT_FIRED_ENV and
 * do not fire beforeGit again. A signal APEX gets (Ctrl-C, which git gets from the terminal too,
 * a `kill` of APEX's pid alone, a timeout) goes to git, which decides; APEX waits for it, and
 * never leaves git running on its own.
 */
export function runGitInteractive(cwd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const forward = (signal: NodeJS.Signals) => {
      try {
        child.kill(signal);
      } catch {
        // git has ended: its close event follows
      }
    };
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    const release = () => {
      for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    };
    const child = spawn("git", [...args], { cwd, stdio: "inherit", env: { ...process.env, [BEFORE_GIT_FIRED_ENV]: "1" } });
    child.on("error", (error: NodeJS.ErrnoException) => {
      release();
      if (error.code === "ENOENT") {
        reject(new ApexError("APEX_E_GIT_UNAVAILABLE", "git is not installed (or not on PATH).", { hint: "Install git.", cause: error }));
      } else reject(new ApexError("APEX_E_GIT_FAILED", `Cannot run git: ${error.message}`, { cause: error }));
    });
    child.on("close", (code, signal) => {
      release();
      if (code !== null) resolve(code);
      else resolve(128 + ((signal && constants.signals[signal]) || 1));
    });
  });
}
