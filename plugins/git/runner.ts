import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { randomBytes } from "node:crypto";
import { ApexError } from "../../core/errors.js";
import { sealedStdio } from "../../core/session/proc.js";
import { isDirectory } from "../../core/config/locate.js";
import { gitEnvironment, gitLimits, runGit, shellQuote, type GitResult, type RunGitOptions } from "./git.js";

/** How long a runner shell waits for the next git command before it ends. */
export const RUNNER_IDLE_MS = 60_000;
/** The most output one command may print, as for runGit. */
const MAX_OUTPUT = 64 * 1024 * 1024;

/**
 * Runs read-only git commands (`git status` for every checkpoint) through a long-lived shell
 * instead of spawning git from this process each time.
 *
 * Why: a supervisor is a large process (V8 heap, LMDB), and Node spawns with fork(): copying its
 * page tables and the copy-on-write faults that follow cost the supervisor ~2 ms of CPU per git
 * process, about half of a checkpoint's CPU. A small `/bin/sh` forks git for a fraction of that,
 * and the supervisor only writes a line and reads the answer.
 *
 * Each call runs git afresh (nothing is cached: the answer is git's own, at the time of the call).
 * A process that runs git only now and then (a CLI command) spawns it directly: the shell starts
 * when a second call comes within `idleMs` of the one before, and ends after `idleMs` without a
 * call (or when this process ends: it reads its commands from a pipe and stops at its end). A call
 * with its own `env` or in a directory that does not exist, a shell that cannot start or dies, a
 * git the shell cannot run (exit code 126, 127) and a git killed by a signal fall back to runGit,
 * which reports exactly what went wrong. A call that times out kills the shell with its git.
 */
export class GitRunner {
  private shell: Shell | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private lastCall: number | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly idleMs: number;
  private readonly shellPath: string;

  constructor(options: { idleMs?: number; shell?: string } = {}) {
    this.idleMs = options.idleMs ?? RUNNER_IDLE_MS;
    this.shellPath = options.shell ?? "/bin/sh";
  }

  /** The pid of the runner shell while one runs. */
  get pid(): number | undefined {
    return this.shell?.child.pid;
  }

  /** Like runGit (same results and errors); read-only commands only, as a command that failed is run again directly. */
  run(cwd: string, args: string[], options: RunGitOptions = {}): Promise<GitResult> {
    const now = Date.now();
    const warm = this.shell !== undefined || (this.lastCall !== undefined && now - this.lastCall < this.idleMs);
    this.lastCall = now;
    // runGit tells a missing directory apart; a call with its own environment is not the shell's.
    if (!warm || options.env !== undefined || !isDirectory(cwd)) return runGit(cwd, args, options);
    const result = this.queue.then(() => this.runInShell(cwd, args, options));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Ends the runner shell (a later call starts a new one when it needs to). */
  close(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.shell?.end();
    this.shell = undefined;
  }

  private async runInShell(cwd: string, args: string[], options: RunGitOptions): Promise<GitResult> {
    clearTimeout(this.idleTimer);
    let answer: GitResult | undefined;
    try {
      answer = await this.shellFor(gitEnvironment()).run(cwd, args, options.timeoutMs ?? gitLimits.timeoutMs);
    } catch (error) {
      this.close();
      // A timeout or too much output is git's failure; anything else (the shell could not start, died) is the shell's.
      if (error instanceof ApexError) throw error;
    }
    this.idleTimer = setTimeout(() => this.close(), this.idleMs);
    this.idleTimer.unref();
    // 126, 127: the shell could not run git; above 128: git was killed by a signal. runGit says why.
    if (answer && answer.exitCode !== 126 && answer.exitCode !== 127 && answer.exitCode <= 128) return answer;
    return runGit(cwd, args, options);
  }

  /** The running shell, or a new one; one whose environment differs from git's current one is replaced. */
  private shellFor(env: NodeJS.ProcessEnv): Shell {
    const key = JSON.stringify(env);
    if (this.shell && (this.shell.envKey !== key || this.shell.gone)) this.close();
    this.shell ??= new Shell(this.shellPath, env, key);
    return this.shell;
  }
}

/** The shell could not run the command (it did not start, died or was killed): the caller runs git directly. */
class ShellGone extends Error {}

/** One `sh -s` reading commands from its stdin; every command ends with a random marker on stdout and stderr. */
class Shell {
  readonly child: ChildProcessWithoutNullStreams;
  gone = false;
  private stdout: Buffer[] = [];
  private stderr: Buffer[] = [];
  private size = 0;
  private wake: (() => void) | undefined;

  constructor(
    path: string,
    env: NodeJS.ProcessEnv,
    readonly envKey: string,
  ) {
    // Its own process group: a command that times out is killed with the git it runs. It lives
    // as long as the supervisor, so it must not hold the store's data file open (sealedStdio).
    const sealed = sealedStdio();
    try {
      this.child = spawn(path, ["-s"], { env, stdio: ["pipe", "pipe", "pipe", ...sealed.extra], detached: true, windowsHide: true }) as ChildProcessWithoutNullStreams;
    } finally {
      sealed.release();
    }
    const ended = () => {
      this.gone = true;
      this.wake?.();
    };
    this.child.on("error", ended);
    this.child.on("exit", ended);
    this.child.stdin.on("error", ended);
    this.child.stdout.on("data", (chunk: Buffer) => this.take(this.stdout, chunk));
    this.child.stderr.on("data", (chunk: Buffer) => this.take(this.stderr, chunk));
    // Idle, it must not keep this process alive; a pending call's timer does while it waits.
    this.child.unref();
    for (const stream of [this.child.stdin, this.child.stdout, this.child.stderr]) (stream as unknown as { unref?: () => void }).unref?.();
  }

  async run(cwd: string, args: string[], timeoutMs: number): Promise<GitResult> {
    if (this.gone) throw new ShellGone();
    const nonce = randomBytes(16).toString("hex");
    const outEnd = Buffer.from(`\0apex-end-${nonce} `);
    const errEnd = Buffer.from(`\0apex-end-${nonce}\n`);
    this.stdout = [];
    this.stderr = [];
    this.size = 0;
    this.child.stdin.write(
      `(cd -- ${shellQuote(cwd)} && exec git ${args.map(shellQuote).join(" ")}) </dev/null; ` +
        `printf '\\0apex-end-%s %s\\n' ${nonce} "$?"; printf '\\0apex-end-%s\\n' ${nonce} >&2\n`,
    );
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.kill();
      this.wake?.();
    }, timeoutMs);
    try {
      for (;;) {
        if (timedOut) {
          throw new ApexError("APEX_E_GIT_FAILED", `git ${args[0] ?? ""} did not finish within ${Math.round(timeoutMs / 1000)} s in ${cwd}.`, {
            hint: "The repository may be very large or locked by another git process; try again.",
            details: { args, cwd },
          });
        }
        if (this.size > MAX_OUTPUT) {
          this.kill();
          throw new ApexError("APEX_E_GIT_FAILED", `Cannot run git in ${cwd}: git ${args[0] ?? ""} printed more than ${MAX_OUTPUT} bytes.`, { details: { args, cwd } });
        }
        // The markers come last, after git ended: look for them at the end only.
        const outTail = tail(this.stdout, outEnd.length + 16);
        const outAt = outTail.indexOf(outEnd);
        if (outAt >= 0 && outTail[outTail.length - 1] === 0x0a && tail(this.stderr, errEnd.length).equals(errEnd)) {
          const out = Buffer.concat(this.stdout);
          const err = Buffer.concat(this.stderr);
          const code = out.subarray(out.length - outTail.length + outAt + outEnd.length, out.length - 1);
          return {
            exitCode: Number(code.toString("latin1")),
            stdout: out.subarray(0, out.length - outTail.length + outAt).toString("utf8"),
            stderr: err.subarray(0, err.length - errEnd.length).toString("utf8"),
          };
        }
        if (this.gone) throw new ShellGone();
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes its stdin: the shell ends after the command it runs. */
  end(): void {
    if (this.gone) return;
    this.gone = true;
    this.child.stdin.end();
  }

  private take(into: Buffer[], chunk: Buffer): void {
    into.push(chunk);
    this.size += chunk.length;
    this.wake?.();
  }

  private kill(): void {
    this.gone = true;
    try {
      if (this.child.pid !== undefined) process.kill(-this.child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** The last `length` bytes of what `chunks` hold (fewer when they hold fewer). */
function tail(chunks: Buffer[], length: number): Buffer {
  let taken = 0;
  let first = chunks.length;
  while (first > 0 && taken < length) taken += chunks[--first]!.length;
  const joined = Buffer.concat(chunks.slice(first));
  return joined.subarray(Math.max(0, joined.length - length));
}
