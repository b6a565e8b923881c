import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import { linkedWorktreeOf, worktreeBranchOf } from "../config/locate.js";
import { ApexError } from "../errors.js";
import type { JsonValue } from "../store/store.js";
import { ACTIVE_SESSIONS_PATH, CURRENT_SESSION_PATH, HISTORY_PREFIX, readActiveSessions, worktreeOf, type SessionRecord } from "./records.js";

/**
 * Which session a command acts on, when several of a project run side by side (one per working
 * tree: the project's own, and each branch's git worktree). In this order:
 *   1. agent     the agent's own session (APEX_SESSION_ID, set by its supervisor); a `--session`
 *                naming another is refused there (cli/session-ref.ts), not passed over;
 *   2. flag      `--session ID|NAME`;
 *   3. worktree  the session bound to the git worktree the command runs in (`session branch
 *                --worktree`), else, in the project's own working tree, the session current there;
 *   4. only      the only session not ended;
 * and when none of these decides while several sessions are active, APEX_E_AMBIGUOUS_SESSION
 * (exit 2) naming them. `/sessions/current` answers for the session chosen so.
 */
export type BindingSource = "agent" | "flag" | "worktree" | "project" | "only-active";

export interface BindingCandidate {
  session_id: string;
  name: string | null;
  /** Its git worktree; null: the project's own working tree. */
  worktree: string | null;
}

export interface BindingInput {
  agentSession?: string | undefined;
  /** `--session`, already resolved to a session id. */
  flagSession?: string | undefined;
  /** The linked git worktree the command runs in; undefined: the project's own working tree. */
  worktree?: string | undefined;
  /** A session (active or ended) whose record binds it to `worktree`. */
  worktreeSession?: string | undefined;
  /** The session /sessions/current names (the one active in the project's own working tree). */
  projectSession?: string | undefined;
  /** The sessions not ended. */
  active: readonly BindingCandidate[];
}

export interface Binding {
  sessionId: string;
  source: BindingSource;
}

/** The rule itself, on plain data (test/binding.test.ts holds its table). */
export function chooseSession(input: BindingInput): Binding | undefined {
  if (input.agentSession) return { sessionId: input.agentSession, source: "agent" };
  if (input.flagSession) return { sessionId: input.flagSession, source: "flag" };
  if (input.worktreeSession) return { sessionId: input.worktreeSession, source: "worktree" };
  if (input.projectSession) return { sessionId: input.projectSession, source: "project" };
  if (input.active.length === 1) return { sessionId: input.active[0]!.session_id, source: "only-active" };
  if (input.active.length > 1) throw ambiguousSession(input.active);
  return undefined;
}

export function ambiguousSession(candidates: readonly BindingCandidate[]): ApexError {
  const list = candidates.map((candidate) => `${candidate.name ?? candidate.session_id.slice(0, 8)} (${candidate.session_id}${candidate.worktree ? `, worktree ${candidate.worktree}` : ", project"})`);
  return new ApexError("APEX_E_AMBIGUOUS_SESSION", `${candidates.length} sessions of this project are active and nothing says which one is meant: ${list.join("; ")}.`, {
    hint: "Name one with --session ID|NAME, or run the command in that session's worktree.",
    details: { candidates: candidates.map((candidate) => ({ ...candidate })) as unknown as JsonValue },
  });
}

// ------------------------------------------------------------------------------ process state

let flagSession: string | undefined;
let ownSession: string | undefined;

/** `--session ID|NAME` as given on the command line (main.ts). */
export function setSessionFlag(ref: string | undefined): void { flagSession = ref; }

export function sessionFlag(): string | undefined { return flagSession; }

/** A supervisor acts on its own session whatever its environment or directory says. */
export function setOwnSession(sessionId: string): void { ownSession = sessionId; }

/**
 * The directory whose working tree binds a command (rule 3): where it runs, or APEX_WORKTREE when
 * set. APEX's git hooks set it: they run APEX in the project directory, for a git operation that
 * may be in a branch's worktree.
 */
export function commandDirectory(): string { return process.env.APEX_WORKTREE || process.cwd(); }

export function agentSession(): string | undefined { return ownSession ?? (process.env.APEX_SESSION_ID || undefined); }

interface Readable {
  get(path: string): JsonValue | undefined;
  query(glob: string): Iterable<{ path: string; value: JsonValue }>;
}

/**
 * The session this process acts on, read from the store (the flag resolved by `resolveRef`).
 * Undefined when no rule decides and no session is active.
 */
export function boundSession(store: Readable, resolveRef: (ref: string) => string, cwd = commandDirectory()): Binding | undefined {
  const agent = agentSession();
  if (agent) return { sessionId: agent, source: "agent" };
  const flag = flagSession !== undefined ? resolveRef(flagSession) : undefined;
  if (flag) return { sessionId: flag, source: "flag" };
  const activeMap = readActiveSessions(store);
  const active: BindingCandidate[] = Object.entries(activeMap).map(([id, entry]) => ({ session_id: id, name: entry.name ?? null, worktree: entry.worktree ?? null }));
  const worktree = linkedWorktreeOf(cwd);
  let worktreeSession: string | undefined;
  if (worktree) {
    worktreeSession = active.find((candidate) => candidate.worktree !== null && samePath(candidate.worktree, worktree))?.session_id;
    if (!worktreeSession) {
      const records = [...active.map(({ session_id }) => store.get(`/sessions/${session_id}`)), ...[...store.query(`${HISTORY_PREFIX}/*`)].map(({ value }) => value)] as SessionRecord[];
      const path = (record: SessionRecord) => (record && typeof record === "object" ? worktreeOf(record) : null);
      worktreeSession = [...records].reverse().find((record) => path(record) !== null && samePath(path(record)!, worktree))?.session_id;
      // Moved by hand (mv, git worktree move): not at its recorded path, but on its session's own branch, which git checks out once.
      const branch = worktreeBranchOf(worktree);
      worktreeSession ??= branch ? records.find((record) => path(record) !== null && (record.worktree as { branch?: unknown }).branch === branch)?.session_id : undefined;
    }
  }
  const pointer = store.get(CURRENT_SESSION_PATH) as { session_id?: unknown } | undefined;
  const projectSession = typeof pointer?.session_id === "string" ? pointer.session_id : undefined;
  return chooseSession({ worktree, worktreeSession, projectSession, active });
}

export { ACTIVE_SESSIONS_PATH, linkedWorktreeOf };

export function samePath(a: string, b: string): boolean { return a === b || canonicalPath(a) === canonicalPath(b); }

export function canonicalPath(path: string): string { try { return realpathSync(path); } catch { return resolve(path); } }
