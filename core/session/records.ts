/**
 * The session part of the keyspace: where each record lives and what it holds.
 *
 * ```
 * /projects/config                         { project_id, created_at }
 * /sessions/current                        CurrentSession: the session active in the project's own working tree
 * /sessions/active                         ActiveSessions: every session not ended, with its working tree
 * /sessions/<sid>                          SessionRecord (while the session is not ended)
 * /sessions/<sid>/memory/<path>            the working memory of a session that runs in its own git
 *                                          worktree (`session branch --worktree`); others use the root
 * /sessions/history/<sid>                  SessionRecord (once it ended: stopped, completed, failed)
 * /sessions/<sid>/agents/<name>            AgentRecord
 * /sessions/<sid>/agents/<name>.context    the agent's last reported context (any JSON)
 * /sessions/<sid>/tasks/<tid>              TaskRecord (tid: t-0001, t-0002, …)
 * /sessions/<sid>/milestones/<nnnn>        MilestoneRecord
 * /sessions/<sid>/events/<nnnnnnnn>        SessionEvent: the audit trail, in order
 * /sessions/<sid>/counters                 { tasks, milestones, events }: the id sequences
 * /sessions/<sid>/task-counts              TaskCounts: tasks by status, kept in the same transaction
 *                                          as every task change (so `apex status` need not scan tasks)
 * /sessions/<sid>/checkpoint-<NNN>         checkpoint manifests (written by the checkpoint plugin)
 * ```
 */
import { ApexError } from "../errors.js";
import type { JsonValue, WriteBatch } from "../store/store.js";

/** Stored statuses, plus `interrupted`, which is derived: active or paused with no live supervisor. */
export type SessionStatus = "active" | "paused" | "interrupted" | "completed" | "failed" | "stopped";
export const ENDED_STATUSES: ReadonlySet<SessionStatus> = new Set(["completed", "failed", "stopped"]);

/** Process lifecycle of one agent, as the supervisor sees it. */
export type AgentStatus = "starting" | "running" | "paused" | "restarting" | "exited" | "failed" | "stopped";

export type TaskStatus = "pending" | "active" | "completed" | "failed";
export const TASK_STATUSES: readonly TaskStatus[] = ["pending", "active", "completed", "failed"];

export interface SessionHistoryEntry {
  /** "started", "continued", "paused", "resumed", "stopped", "completed", "failed", "interrupted". */
  event: string;
  at: string;
  [key: string]: JsonValue;
}

export interface SessionRecord {
  [key: string]: JsonValue;
  session_id: string;
  project_id: string;
  created_at: string;
  updated_at: string;
  status: Exclude<SessionStatus, "interrupted">;
  initial_task: string | null;
  /** Names of the session's agents, in config order. */
  agents: string[];
  /**
   * nonce: the APEX_SUPERVISOR_NONCE in the supervisor's environment, which proves a pid is it
   * (core/session/proc.ts). host, generation: who holds the lease (core/session/lease.ts); the
   * generation is bumped by every claim of the session. lease_expires_at is not stored: the lease
   * is a row of the `leases` table, renewed every ttl/3, and the session readers (sessions.ts)
   * add its expiry to the records they return.
   */
  supervisor: {
    pid: number;
    start_time: number;
    socket: string;
    started_at: string;
    nonce?: string | null;
    host?: string;
    generation?: number;
    lease_expires_at?: string;
    /** The store's clock minus the reader's when read (another host's lease; not stored): what leaseExpiry takes off. */
    lease_clock_offset_ms?: number;
  } | null;
  history: SessionHistoryEntry[];
  /** How it ended ("stopped by the user", "all agents exited with code 0 and …"); null while it runs. */
  outcome: string | null;
  ended_at: string | null;
  /** The checkpoint this session (or its latest continuation) was restored from. */
  restored_from: string | null;
  // A branch session's record also holds `name`, `parent_checkpoint` and `worktree` ({path, branch, commit}): see worktreeOf.
}

/**
 * A type rather than an interface with a `[key: string]: JsonValue` index as the other records:
 * an object type is a JsonValue as it stands, and an index would refuse the optional `restart_at`
 * (its `undefined`), which records written before it lack.
 */
export type AgentRecord = {
  name: string;
  status: AgentStatus;
  pid: number | null;
  pgid: number | null;
  /** /proc/<pid>/stat field 22 of the agent's process: with pid, it identifies the process. */
  start_time: number | null;
  /** The APEX_AGENT_NONCE in the agent's environment: with the pid and start time, proof the process is APEX's own. */
  nonce: string | null;
  /** The nonce of the process being started, recorded before it is spawned: one a crash left unrecorded (no pid yet) is found by it. */
  spawn_nonce?: string | null;
  started_at: string | null;
  restarts: number;
  /** What the agent last said about itself (`apex agent report --status`). */
  reported_status: string | null;
  /** The task the agent works on: from its last claim or report. */
  task: string | null;
  last_report_at: string | null;
  last_exit: { code: number | null; signal: string | null; at: string } | null;
  /** While `restarting`, when the restart is due (restart_delay, doubled for each crash in a row up to max_restart_delay); absent in older records. */
  restart_at?: string | null;
  command: string;
};

export interface TaskRecord {
  [key: string]: JsonValue;
  id: string;
  title: string;
  status: TaskStatus;
  assignee: string | null;
  milestone: boolean;
  created_at: string;
  created_by: string;
  claimed_at: string | null;
  completed_at: string | null;
  result: JsonValue;
  reason: string | null;
  reopened: number;
}

export interface MilestoneRecord {
  [key: string]: JsonValue;
  n: number;
  text: string;
  at: string;
  by: string;
  task: string | null;
}

export interface SessionEvent {
  [key: string]: JsonValue;
  seq: number;
  at: string;
  type: string;
  actor: string;
}

export interface TaskCounts {
  [key: string]: number;
  pending: number;
  active: number;
  completed: number;
  failed: number;
  total: number;
}

export interface Counters {
  [key: string]: number;
  tasks: number;
  milestones: number;
  events: number;
}

/**
 * What /sessions/current holds: which session is active, with what people look for first
 * (`apex memory show /sessions/current`). Readers need only `session_id`; the rest is written
 * in the same transaction as every change of the session record while it is current, so it
 * never disagrees with it. `status` is the stored one: a session whose supervisor died shows
 * `active` here and `interrupted` in `apex status`.
 */
export interface CurrentSession {
  [key: string]: JsonValue;
  session_id: string;
  project_id: string;
  created_at: string;
  status: SessionRecord["status"];
  agents: string[];
  initial_task: string | null;
}

export function currentSessionOf(session: SessionRecord): CurrentSession {
  return {
    session_id: session.session_id,
    project_id: session.project_id,
    created_at: session.created_at,
    status: session.status,
    agents: session.agents,
    initial_task: session.initial_task,
  };
}

/** Writes a session's record and, when it is the current session, /sessions/current with it. */
export function setSessionRecord(batch: WriteBatch, session: SessionRecord): void {
  // The lease's expiry lives in the leases table; a record read with it does not store it.
  if (session.supervisor?.lease_expires_at !== undefined) {
    const { lease_expires_at: _expiry, lease_clock_offset_ms: _offset, ...supervisor } = session.supervisor;
    session = { ...session, supervisor };
  }
  batch.set(sessionPath(session.session_id), session);
  const current = batch.get(CURRENT_SESSION_PATH) as { session_id?: unknown } | undefined;
  if (current?.session_id === session.session_id) batch.set(CURRENT_SESSION_PATH, currentSessionOf(session));
}

export const PROJECT_CONFIG_PATH = "/projects/config";
export const CURRENT_SESSION_PATH = "/sessions/current";
/**
 * The sessions not ended, each with the working tree it is bound to: sessions of one project run
 * side by side, one per working tree (the project's own, or a branch's git worktree). Written in
 * the same transaction as each claim and each end, so a lookup reads one record, not every session.
 */
export const ACTIVE_SESSIONS_PATH = "/sessions/active";
/**
 * `{session_id, ran_at}`: the session whose memory the project's live keyspace holds, written when
 * its records leave the store (`apex session archive`): liveMemoryOwner finds the owner from the
 * records' runs, and without this the session that ran before it was taken for the owner.
 */
export const MEMORY_OWNER_PATH = "/sessions/memory-owner";
/** Names under /sessions that are not session ids: the current session's record, the ended ones', the running ones' list (/sessions/active), the departed owner's claim. */
export const RESERVED_SESSION_NAMES: ReadonlySet<string> = new Set(["current", "history", "active", "memory-owner"]);

export interface ActiveSessionEntry {
  [key: string]: JsonValue;
  /** The git worktree it runs in; null: the project's own working tree. */
  worktree: string | null;
  name: string | null;
}
export type ActiveSessions = { [sessionId: string]: ActiveSessionEntry };

export function readActiveSessions(store: { get(path: string): JsonValue | undefined }): ActiveSessions {
  const value = store.get(ACTIVE_SESSIONS_PATH);
  return value && typeof value === "object" && !Array.isArray(value) ? (value as ActiveSessions) : {};
}

/** Adds (entry) or removes (null) a session in /sessions/active; call inside the claim's or end's batch. */
export function setActiveSession(batch: WriteBatch, sessionId: string, entry: ActiveSessionEntry | null): void {
  const next = { ...readActiveSessions(batch) };
  if (entry) next[sessionId] = entry;
  else delete next[sessionId];
  if (Object.keys(next).length === 0) batch.delete(ACTIVE_SESSIONS_PATH);
  else batch.set(ACTIVE_SESSIONS_PATH, next);
}

export function activeEntryOf(session: SessionRecord): ActiveSessionEntry {
  return { worktree: worktreeOf(session), name: typeof session.name === "string" ? session.name : null };
}

/** The git worktree a session runs in, or null for the project's own working tree. */
export function worktreeOf(session: { [key: string]: JsonValue }): string | null {
  const path = (session.worktree as { path?: unknown } | null | undefined)?.path;
  return typeof path === "string" && path ? path : null;
}

/**
 * Where a session's working memory lives in the keyspace: "" (the root: paths as agents name
 * them) for a session of the project's own working tree, `/sessions/<sid>/memory` for one that
 * runs in its own git worktree. Two sessions active at once are in different working trees
 * (claim.ts), so no two of them share a memory root, and a write in one is not seen in the other.
 */
export function memoryRootOf(session: { [key: string]: JsonValue; session_id: string }): string {
  return worktreeOf(session) ? `/sessions/${session.session_id}/memory` : "";
}
export const HISTORY_PREFIX = "/sessions/history";

export const sessionPath = (sid: string) => `/sessions/${sid}`;
export const historyPath = (sid: string) => `${HISTORY_PREFIX}/${sid}`;
export const agentsPrefix = (sid: string) => `/sessions/${sid}/agents`;
export const agentPath = (sid: string, name: string) => `/sessions/${sid}/agents/${name}`;
export const agentContextPath = (sid: string, name: string) => `/sessions/${sid}/agents/${name}.context`;
export const tasksPrefix = (sid: string) => `/sessions/${sid}/tasks`;
export const taskPath = (sid: string, tid: string) => `/sessions/${sid}/tasks/${tid}`;
export const milestonesPrefix = (sid: string) => `/sessions/${sid}/milestones`;
export const milestonePath = (sid: string, n: number) => `/sessions/${sid}/milestones/${String(n).padStart(4, "0")}`;
export const eventsPrefix = (sid: string) => `/sessions/${sid}/events`;
export const eventPath = (sid: string, seq: number) => `/sessions/${sid}/events/${String(seq).padStart(8, "0")}`;
export const countersPath = (sid: string) => `/sessions/${sid}/counters`;
export const taskCountsPath = (sid: string) => `/sessions/${sid}/task-counts`;
export const checkpointPrefix = (sid: string) => `/sessions/${sid}/checkpoint-`;

export const CONTEXT_SUFFIX = ".context";

/**
 * Task ids: t-0001, t-0002, … (more digits past 9999). Listings sort by number. A branch session
 * adds its name (`t-0005.experiment`): the main line and each branch go on numbering from the
 * same checkpoint, so without it two different tasks would share an id and a merge (a union by
 * id) would take one for the other.
 */
export function taskId(n: number, branch?: string | null): string {
  return `t-${String(n).padStart(4, "0")}${branch ? `.${branch}` : ""}`;
}

export function taskNumber(id: string): number {
  const match = /^t-(\d+)(?:\.[A-Za-z][A-Za-z0-9._-]*)?$/.exec(id);
  return match ? Number(match[1]) : Number.NaN;
}

export function nowIso(): string {
  return new Date().toISOString();
}

/** Agent names become path segments and file names: keep them plain (as the config's schema has them: `agents` names). */
export const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The longest grace a stop gives agents between SIGTERM and SIGKILL (`apex stop --grace`, session.stop's grace_ms): a stop that waits longer is a hung one. */
export const MAX_STOP_GRACE_SECONDS = 3600;

/** The most characters a task's title, a milestone's text or an agent's reported status keeps; a reason (task fail, reopen) may explain more. */
const MAX_TEXT_CHARS = 1000;
export const MAX_REASON_CHARS = 10_000;

/** `text` as it is; past `limit` characters (code points: an emoji is one) refused, APEX_E_BAD_INPUT, before anything is written. */
export function limitedText<T extends string | undefined>(text: T, what: string, field: string, limit = MAX_TEXT_CHARS): T {
  const length = text === undefined || text.length <= limit ? 0 : text.length - (text.match(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g)?.length ?? 0);
  if (length <= limit) return text;
  throw new ApexError("APEX_E_BAD_INPUT", `${what} is ${length.toLocaleString("en-US")} characters long; at most ${limit.toLocaleString("en-US")} are kept.`, { hint: "Nothing was written. Give a shorter one; keep longer notes in the memory (`apex memory set /notes/NAME '\"…\"'`) and name them here.", details: { field, length, limit } });
}
