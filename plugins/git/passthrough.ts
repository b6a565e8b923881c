import { spawn } from "node:child_process";
import { realpathSync, statSync } from "node:fs";
import { constants } from "node:os";
import { isAbsolute, relative } from "node:path";
import { ApexError } from "../../core/errors.js";
import { BEFORE_GIT_FIRED_ENV, noRepository, runGit } from "./git.js";

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

/** git's own options that take the next argument as their value (`git -C dir status`). */
const OPTIONS_WITH_VALUE = new Set(["-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--config-env"]);

/** The git command in an argument list, after git's own options: "commit" in `-c a=b commit -m x`. */
export function gitCommandOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (OPTIONS_WITH_VALUE.has(arg)) {
      i++;
      continue;
    }
    if (arg === "--") return args[i + 1];
    if (arg.startsWith("-")) continue;
    return arg;
  }
  return undefined;
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

/**
 * Runs git with the terminal (stdin, stdout, stderr inherited) and resolves with its exit code
 * (128 + the signal number when a signal ended it). APEX's hooks see BEFORE_GIT_FIRED_ENV and
 * do not fire beforeGit again. Ctrl-C reaches git, which decides; APEX waits for it.
 */
export function runGitInteractive(cwd: string, args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const ignore = () => {};
    for (const signal of ["SIGINT", "SIGQUIT"] as const) process.on(signal, ignore);
    const release = () => {
      for (const signal of ["SIGINT", "SIGQUIT"] as const) process.off(signal, ignore);
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

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
