import { inspect } from "node:util";
/**
 * One error type for all of APEX: a stable code, a sentence for people and an exit code.
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or config error, 3 not found, 4 conflict or refused.
 * The session's supervisor exits 0 once its session ended, 4 (APEX_E_LEASE_LOST) when it lost its lease.
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Every stable error code APEX emits, with the exit code it maps to. */
export const ErrorCodes = {
  // usage and input (2)
  APEX_E_USAGE: ExitCode.usage,
  APEX_E_BAD_PATH: ExitCode.usage,
  APEX_E_BAD_GLOB: ExitCode.usage,
  APEX_E_BAD_JSON: ExitCode.usage,
  APEX_E_BAD_INPUT: ExitCode.usage,
  APEX_E_TOO_DEEP: ExitCode.usage,
  // config (2)
  APEX_E_CONFIG: ExitCode.usage,
  APEX_E_CONFIG_NOT_FOUND: ExitCode.usage,
  APEX_E_YAML: ExitCode.usage,
  APEX_E_PLUGIN_UNKNOWN: ExitCode.usage,
  APEX_E_PLUGIN_DEPENDENCY: ExitCode.usage,
  APEX_E_PLUGIN_DUPLICATE: ExitCode.usage,
  APEX_E_PLUGIN_INVALID: ExitCode.usage,
  APEX_E_PLUGIN_SCHEMA: ExitCode.usage,
  APEX_E_PLUGIN_OPTIONS: ExitCode.usage,
  /** A command of a built-in plugin the config does not enable. */
  APEX_E_PLUGIN_DISABLED: ExitCode.usage,
  /** The configured storage backend (store: or APEX_STORE_URL) cannot be loaded: its module or its driver is missing. */
  APEX_E_BACKEND_UNAVAILABLE: ExitCode.usage,
  // runtime (1)
  APEX_E_PLUGIN_FAILED: ExitCode.failure,
  APEX_E_PLUGIN_TIMEOUT: ExitCode.failure,
  APEX_E_STORE: ExitCode.failure,
  APEX_E_DISK_FULL: ExitCode.failure,
  APEX_E_FILE_TOO_LARGE: ExitCode.failure,
  APEX_E_STORE_DAMAGED: ExitCode.failure,
  APEX_E_RPC: ExitCode.failure,
  /** A live supervisor whose socket file is gone (deleted and not made again, or another file in its place): no command reaches it; `apex stop` signals it to stop. */
  APEX_E_SOCKET_GONE: ExitCode.failure,
  APEX_E_PROCESS: ExitCode.failure,
  APEX_E_TIMEOUT: ExitCode.failure,
  /** Ctrl-C while `apex start` waited for its supervisor, which goes on (the process exits 130, as after any SIGINT). */
  APEX_E_INTERRUPTED: ExitCode.interrupted,
  APEX_E_INTERNAL: ExitCode.failure,
  APEX_E_INTEGRITY: ExitCode.failure,
  // not found (3)
  APEX_E_NOT_FOUND: ExitCode.notFound,
  APEX_E_NO_STORE: ExitCode.notFound,
  APEX_E_NO_SESSION: ExitCode.notFound,
  APEX_E_TASK_NOT_FOUND: ExitCode.notFound,
  APEX_E_AGENT_NOT_FOUND: ExitCode.notFound,
  APEX_E_CHECKPOINT_NOT_FOUND: ExitCode.notFound,
  // conflict (4)
  APEX_E_CONFLICT: ExitCode.conflict,
  APEX_E_SESSION_ACTIVE: ExitCode.conflict,
  APEX_E_SESSION_STATE: ExitCode.conflict,
  /** A request a supervisor got as it exits, its session stopping or ended: it did nothing of it. */
  APEX_E_SESSION_STOPPING: ExitCode.conflict,
  /** The project's live supervisor runs on another store than the one the command names (APEX_STORE_URL, store:). */
  APEX_E_STORE_MISMATCH: ExitCode.conflict,
  /** A request on a supervisor's socket that names (`session`) another session than the one it serves, for a method that acts on its own: nothing of it was done. */
  APEX_E_SESSION_MISMATCH: ExitCode.conflict,
  /** The store file is open in another process, and the command must replace it (repair of a damaged file); or open read-only in this one, and a write cannot wait (LMDB: one environment per file per process). */
  APEX_E_STORE_IN_USE: ExitCode.conflict,
  // several hosts: the session's supervisor runs on another host (its pids cannot be signalled
  // from here), or this supervisor's lease on it is gone
  APEX_E_SESSION_REMOTE: ExitCode.conflict,
  APEX_E_LEASE_LOST: ExitCode.conflict,
  APEX_E_TASK_STATE: ExitCode.conflict,
  /** `task done|fail` by an agent of a task another agent holds or is assigned. */
  APEX_E_TASK_HELD: ExitCode.conflict,
  APEX_E_NO_TASK: ExitCode.conflict,
  // ambiguous references (2, usage: the command names too little): an id prefix matching several sessions, checkpoints or archives;
  // several sessions active and nothing (agent, --session, worktree) saying which one a command means
  APEX_E_AMBIGUOUS: ExitCode.usage,
  APEX_E_AMBIGUOUS_SESSION: ExitCode.usage,
  APEX_E_LOCKED: ExitCode.conflict,
  // session merge: paths changed on both sides to different values, under --strategy fail (4)
  APEX_E_MERGE_CONFLICT: ExitCode.conflict,
  // plugins: no backend registered under a name (2)
  APEX_E_BACKEND_UNKNOWN: ExitCode.usage,
  // git plugin: git missing or failing (1), no repository or commit (3), dirty tree, taken branch, foreign hook (4)
  APEX_E_GIT_UNAVAILABLE: ExitCode.failure,
  APEX_E_GIT_FAILED: ExitCode.failure,
  APEX_E_NOT_A_REPOSITORY: ExitCode.notFound,
  APEX_E_GIT_COMMIT_MISSING: ExitCode.notFound,
  APEX_E_DIRTY_TREE: ExitCode.conflict,
  APEX_E_BRANCH_EXISTS: ExitCode.conflict,
  APEX_E_HOOK_CONFLICT: ExitCode.conflict,
  // sessions: the codes of the errors onError receives when an agent crashes or a task fails (1)
  APEX_E_AGENT_CRASHED: ExitCode.failure,
  APEX_E_TASK_FAILED: ExitCode.failure,
  // archive plugin: a bundle that fails verification (bad input, 2); another format version, a session that is already there (4)
  APEX_E_BUNDLE_INVALID: ExitCode.usage,
  APEX_E_BUNDLE_VERSION: ExitCode.conflict,
  APEX_E_SESSION_EXISTS: ExitCode.conflict,
  /** A memory write (set, delete, import) that reaches a record APEX owns (plugins/owned-paths.ts), without --force. */
  APEX_E_RESERVED_PATH: ExitCode.conflict,
  // remote access (apex serve): no or a bad token, a role that does not allow the action, too many failures (4); a body too large (2).
  // FORBIDDEN also: a local store directory this user may not read (another user's, owner-only)
  APEX_E_UNAUTHORIZED: ExitCode.conflict,
  APEX_E_FORBIDDEN: ExitCode.conflict,
  APEX_E_RATE_LIMITED: ExitCode.conflict,
  APEX_E_TOO_LARGE: ExitCode.usage,
  // a server store (PostgreSQL): not reachable (1), credentials refused (2), no such database (3), laid out by a newer APEX or a privilege missing (4)
  APEX_E_STORE_UNREACHABLE: ExitCode.failure,
  APEX_E_STORE_AUTH: ExitCode.usage,
  APEX_E_STORE_NO_DATABASE: ExitCode.notFound,
  APEX_E_STORE_VERSION: ExitCode.conflict,
  /** The server refused the statement for want of a privilege (a role that may only read, asked to write) (4). */
  APEX_E_STORE_PERMISSION: ExitCode.conflict,
} as const satisfies Record<string, ExitCodeValue>;
export type ErrorCode = keyof typeof ErrorCodes;

export interface ApexErrorOptions {
  /** A next step for the user ("run `apex stop` first"). */
  hint?: string;
  /** Structured details, printed with --json. */
  details?: Record<string, unknown>;
  cause?: unknown;
}

/** `head: detail.` with another's text (a driver's, the OS's) as detail: no second period after its own punctuation ("failed.."), no ": ." when it is empty. */
export const withDetail = (head: string, detail: unknown): string => ((text) => (text ? `${head}: ${text}${/[.!?…]$/.test(text) ? "" : "."}` : `${head}.`))(String(detail ?? "").trim());

/** What a thrown value says: an Error's message, else the value itself (`throw undefined` read "undefined", `throw {…}` "[object Object]"). */
export const thrownMessage = (value: unknown): string => (value instanceof Error ? value.message || value.name : typeof value === "string" ? value : `threw ${inspect(value, { breakLength: Infinity })}, not an Error`);

/** Marks an ApexError of any copy of this module (see ApexError's Symbol.hasInstance). */
const APEX_ERROR = Symbol.for("apex-sessions.ApexError");

export class ApexError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly [APEX_ERROR] = true;

  /**
   * An ApexError of another copy of this module is one too: the CLI runs from its one-file bundle
   * (cli/bundle.ts), and a plugin that throws one imported from "apex-sessions" made it with dist/'s.
   * A subclass still checks its own prototype chain.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== ApexError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === "object" && value !== null && (value as { [APEX_ERROR]?: unknown })[APEX_ERROR] === true;
  }

  constructor(code: ErrorCode, message: string, options: ApexErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ApexError";
    this.code = code;
    this.exitCode = ErrorCodes[code];
    this.hint = options.hint;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      error: {
        code: this.code,
        message: this.message,
        exitCode: this.exitCode,
        // snake_case as every other --json key; exitCode, which it printed alone before, is kept for scripts.
        exit_code: this.exitCode,
        ...(this.hint ? { hint: this.hint } : {}),
        ...(this.details ? { details: this.details } : {}),
      },
    };
  }
}

/**
 * The deepest nesting of arrays and objects a value may have: `[[1]]` is 2 levels. Deeper values
 * are refused at write (APEX_E_TOO_DEEP), so every accepted value can be read, printed (JSON
 * text for it is built recursively by V8), exported and checkpointed. The decoder has no limit
 * and no recursion: values stored before the limit existed still read.
 */
export const MAX_DEPTH = 512;

/** The error for a value nested deeper than MAX_DEPTH. */
export function tooDeepError(where = ""): ApexError {
  return new ApexError("APEX_E_TOO_DEEP", `The value${where ? ` at ${where}` : ""} nests arrays and objects more than ${MAX_DEPTH} levels deep.`, {
    hint: `Values may nest at most ${MAX_DEPTH} levels; store deeper structures flattened, or split across paths.`,
  });
}

export function isApexError(error: unknown): error is ApexError {
  return error instanceof ApexError;
}

/** Wraps anything thrown into an ApexError, keeping ApexErrors as they are. */
export function toApexError(error: unknown, code: ErrorCode = "APEX_E_INTERNAL"): ApexError {
  if (isApexError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ApexError(code, message, { cause: error });
}
