import { execFile } from "node:child_process";
import { lstatSync } from "node:fs";
import { isDirectory } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";

/**
 * How long one read-only git call may take before APEX gives up on it: 10 s. An object, so that a
 * test of what must not be cut short (a checkout) can shorten it in its own process and wait less.
 */
export const gitLimits = { timeoutMs: 10_000 };

/**
 * Set in the environment of git commands APEX runs itself (`apex git --`, the checkout of
 * `start --continue --git-checkout`): the hooks APEX installed see it and do not fire beforeGit
 * a second time for the same operation.
 */
export const BEFORE_GIT_FIRED_ENV = "APEX_GIT_BEFORE_FIRED";

/**
 * Variables that point git at another repository, index or object store. Git sets some of them
 * for the hooks it runs (GIT_INDEX_FILE during `git commit`, relative to the work tree), and
 * APEX may be started from such a hook; APEX always names its repository by directory instead.
 */
const REPOSITORY_VARIABLES = [
  "GIT_DIR",
  "GIT_WORK_TREE",
  "GIT_INDEX_FILE",
  "GIT_OBJECT_DIRECTORY",
  "GIT_ALTERNATE_OBJECT_DIRECTORIES",
  "GIT_COMMON_DIR",
  "GIT_NAMESPACE",
  "GIT_PREFIX",
  "GIT_QUARANTINE_PATH",
];

/** A value as one single-quoted shell word. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export interface GitResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunGitOptions {
  timeoutMs?: number;
  /** Extra environment for this call. */
  env?: NodeJS.ProcessEnv;
  /** Ends git (SIGKILL) once it aborts: runGit then rejects with APEX_E_GIT_FAILED. */
  signal?: AbortSignal;
}

/**
 * Runs `git <args>` in `cwd` and resolves with its exit code and output, whatever the exit code.
 * Rejects with APEX_E_GIT_UNAVAILABLE when git is not installed, APEX_E_GIT_FAILED when it could
 * not run or did not finish within the timeout.
 */
export function runGit(cwd: string, args: string[], options: RunGitOptions = {}): Promise<GitResult> {
  const timeout = options.timeoutMs ?? gitLimits.timeoutMs;
  // A missing working directory makes spawn fail with ENOENT too: tell it from a missing git.
  if (!isDirectory(cwd)) return Promise.reject(noRepository(cwd, "the directory does not exist"));
  return new Promise((resolve, reject) => {
    execFile(
      "git",
      args,
      { cwd, env: gitEnvironment(options.env), timeout, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024, encoding: "utf8", windowsHide: true, ...(options.signal ? { signal: options.signal } : {}) },
      (error, stdout, stderr) => {
        if (!error) return resolve({ exitCode: 0, stdout, stderr });
        const failure = error as NodeJS.ErrnoException & { code?: number | string; killed?: boolean; signal?: string | null };
        if (failure.code === "ENOENT") return reject(gitUnavailable(failure));
        if (options.signal?.aborted) return reject(new ApexError("APEX_E_GIT_FAILED", `git ${args[0] ?? ""} was cut short in ${cwd}: its result was no longer wanted.`, { details: { args, cwd } }));
        if (failure.killed || failure.signal) {
          return reject(
            new ApexError("APEX_E_GIT_FAILED", `git ${args[0] ?? ""} did not finish within ${Math.round(timeout / 1000)} s in ${cwd}.`, {
              hint: "The repository may be very large or locked by another git process; try again.",
              details: { args, cwd },
            }),
          );
        }
        if (typeof failure.code === "number") return resolve({ exitCode: failure.code, stdout, stderr });
        reject(new ApexError("APEX_E_GIT_FAILED", `Cannot run git in ${cwd}: ${failure.message}`, { cause: error, details: { args, cwd } }));
      },
    );
  });
}

/** Like runGit, but a non-zero exit is an APEX_E_GIT_FAILED error carrying git's message. */
export async function gitOutput(cwd: string, args: string[], options: RunGitOptions = {}): Promise<string> {
  const result = await runGit(cwd, args, options);
  if (result.exitCode !== 0) {
    throw new ApexError("APEX_E_GIT_FAILED", `git ${args.join(" ")} failed in ${cwd}: ${firstLine(result.stderr) || `exit code ${result.exitCode}`}`, {
      details: { args, cwd, exitCode: result.exitCode, stderr: result.stderr },
    });
  }
  return result.stdout;
}

/**
 * The environment git runs with: the caller's, without the variables that redirect git to
 * another repository, with optional locks off (a status taken while `git commit` holds the
 * index lock must neither wait for it nor refresh the index) and without terminal prompts.
 */
export function gitEnvironment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of REPOSITORY_VARIABLES) delete env[name];
  return { ...env, GIT_OPTIONAL_LOCKS: "0", GIT_TERMINAL_PROMPT: "0", LC_ALL: "C", ...extra };
}

/** APEX_E_NOT_A_REPOSITORY for `dir`, saying why. */
export function noRepository(dir: string, why = "it is not inside a git repository"): ApexError {
  return new ApexError("APEX_E_NOT_A_REPOSITORY", `No git repository at ${dir}: ${why}.`, {
    hint: `${initHint(dir)}, or point the git plugin's \`repository\` option (apex.config.yaml) at the repository.`,
    details: { repository: dir },
  });
}

/**
 * How to make a repository at `dir`: "Run `git init` there" sent the user to a directory that is not
 * there (and `apex git -- init`, run in it, was refused): `git init DIR` makes the directory too.
 */
export function initHint(dir: string, apex = false): string {
  return isDirectory(dir) ? `Run ${apex ? "`apex git -- init` (or `git init`)" : "`git init`"} there` : `Make it with \`git init ${shellQuote(dir)}\` (which creates the directory)`;
}

export function isGitUnavailable(error: unknown): boolean {
  return error instanceof ApexError && error.code === "APEX_E_GIT_UNAVAILABLE";
}

function gitUnavailable(cause: Error): ApexError {
  return new ApexError("APEX_E_GIT_UNAVAILABLE", "git is not installed (or not on PATH).", {
    hint: "Install git, or disable the git plugin (`git: false` under `plugins:` in apex.config.yaml).",
    cause,
  });
}

/** Whether anything is at `path`, a dangling symlink included (lstat: the link itself, not what it names). */
export function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export function firstLine(text: string): string {
  return text.trim().split("\n")[0]?.replace(/^(fatal|error): /, "") ?? "";
}
