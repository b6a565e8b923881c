import { ApexError } from "../errors.js";
import type { Store } from "../store/store.js";
import type { CheckpointService } from "./checkpoints.js";
import { boundSession, type Binding } from "./binding.js";
import { sessionIdByName } from "./names.js";
import { leaseValid, onOtherHost, withLease, type RecordSource } from "./lease.js";
import { isOwnProcess, supervisorMarker } from "./proc.js";
import { CURRENT_SESSION_PATH, ENDED_STATUSES, HISTORY_PREFIX, historyPath, MEMORY_OWNER_PATH, memoryRootOf, readActiveSessions, RESERVED_SESSION_NAMES, sessionPath, type SessionRecord, type SessionStatus } from "./records.js";

/**
 * The record of the session this command acts on (binding.ts: the agent's, `--session`, the one
 * bound to this worktree, the only active one), if that session is not ended. Several active
 * sessions and nothing to choose between them: APEX_E_AMBIGUOUS_SESSION.
 */
export function currentSession(store: Pick<Store, "get" | "query"> & RecordSource): SessionRecord | undefined {
  const id = boundSessionId(store);
  return id === undefined ? undefined : withLease(store, store.get(sessionPath(id)) as SessionRecord | undefined);
}

/** The id of the session this command acts on (binding.ts), active or ended; undefined when nothing decides. */
export function boundSessionId(store: Pick<Store, "get" | "query">): string | undefined {
  return sessionBinding(store)?.sessionId;
}

/** The session this command acts on and which rule chose it (binding.ts); undefined when nothing decides. */
export function sessionBinding(store: Pick<Store, "get" | "query">): Binding | undefined {
  return boundSession(store, (ref) => resolveSessionId(store as Store, ref));
}

/** The session active in the project's own working tree (/sessions/current), whatever this command is bound to. */
export function projectSession(store: RecordSource): SessionRecord | undefined {
  const current = store.get(CURRENT_SESSION_PATH) as { session_id?: string } | undefined;
  return current?.session_id ? withLease(store, store.get(sessionPath(current.session_id)) as SessionRecord | undefined) : undefined;
}

/** Every session not ended (/sessions/active), in no particular order. */
export function activeSessions(store: RecordSource): SessionRecord[] {
  const out: SessionRecord[] = [];
  for (const id of Object.keys(readActiveSessions(store))) {
    const record = store.get(sessionPath(id)) as SessionRecord | undefined;
    if (record && typeof record === "object") out.push(withLease(store, record));
  }
  return out;
}

/** A session's record, live or ended; read from the store (not a write batch), it carries its lease (lease.ts withLease). */
export function findSession(store: RecordSource, sessionId: string): SessionRecord | undefined {
  return withLease(store, (store.get(sessionPath(sessionId)) ?? store.get(historyPath(sessionId))) as SessionRecord | undefined);
}

/**
 * True when the session's recorded supervisor still runs. The one liveness rule every caller
 * uses. On its own host: the same process (pid and start time) carrying the supervisor's nonce
 * in its environment, so a pid reused by another program, or a record naming a foreign process,
 * never counts. On another host a pid means nothing: the lease must not have expired (the
 * record must come from a reader that adds it: sessions.ts's readers over the store).
 */
export function supervisorAlive(record: SessionRecord, now = Date.now()): boolean {
  const supervisor = record.supervisor;
  if (!supervisor) return false;
  if (onOtherHost(supervisor)) return leaseValid(supervisor, now);
  return isOwnProcess(supervisor.pid, supervisor.start_time, supervisorMarker(supervisor.nonce));
}

/** The status to show: a stored active or paused session whose supervisor is gone is `interrupted`. */
export function effectiveStatus(record: SessionRecord): SessionStatus {
  return (record.status === "active" || record.status === "paused") && !supervisorAlive(record) ? "interrupted" : record.status;
}

export const isEnded = (record: SessionRecord): boolean => ENDED_STATUSES.has(record.status);

/** A session record's history; a record written by hand (`memory set`) may have none. */
export const historyOf = (record: SessionRecord): SessionRecord["history"] => (Array.isArray(record.history) ? record.history : []);

/** The session's ended state as stored, with no clock read in it: an end, or a continue, recorded since changes it. */
export const endedMark = (record: SessionRecord): string => `${historyOf(record).length}/${record.status}/${String(record.ended_at)}`;

/** Ended sessions, most recently ended first. */
export function historySessions(store: Store): SessionRecord[] {
  const out: SessionRecord[] = [];
  for (const { value } of store.query(`${HISTORY_PREFIX}/*`)) if (value !== null && typeof value === "object" && !Array.isArray(value)) out.push(value as SessionRecord); // else no record (null, by hand)
  // ISO timestamps sort as strings; a plain comparison avoids initialising ICU (localeCompare).
  const key = (record: SessionRecord) => record.ended_at ?? record.updated_at ?? "";
  return out.sort((a, b) => (key(a) < key(b) ? 1 : key(a) > key(b) ? -1 : 0));
}

/** The active sessions (the project's own first), then the ended ones (reconstructed sessions are kept with them). */
export function allSessions(store: Store): SessionRecord[] {
  const project = projectSession(store);
  const active = activeSessions(store).filter((record) => record.session_id !== project?.session_id);
  if (project) active.unshift(project);
  const ids = new Set(active.map((record) => record.session_id));
  return [...active, ...historySessions(store).filter((record) => !ids.has(record.session_id))];
}

/**
 * The session whose state the live keyspace holds: the current one, else the one that ran last
 * (the latest "started" or "continued" in the records' history, since its "imported" for a session
 * brought in from another project). A branch that never ran, an older session, or one imported
 * that has not run here holds nothing of it: continuing one restores its latest checkpoint instead.
 */
export function liveMemoryOwner(store: Store): string | undefined {
  const current = projectSession(store);
  if (current) return current.session_id;
  let owner: string | undefined;
  let latest = "";
  for (const record of historySessions(store)) {
    if (memoryRootOf(record) !== "") continue; // a worktree session's memory has its own root
    const at = lastRunAt(record);
    if (at > latest) [latest, owner] = [at, record.session_id];
  }
  // An owner archived since (MEMORY_OWNER_PATH) keeps it until a session runs after it: it was given to the one that ran before it.
  const departed = store.get(MEMORY_OWNER_PATH) as { session_id?: unknown; ran_at?: unknown } | undefined;
  if (typeof departed?.session_id === "string" && typeof departed.ran_at === "string" && departed.ran_at >= latest) return departed.session_id;
  return owner;
}

/** When the session last started or continued here ("" for never): only its runs since it was imported count (before, it ran on another project's store). */
export function lastRunAt(record: SessionRecord): string {
  const history = historyOf(record);
  let latest = "";
  for (const entry of history.slice(history.map((entry) => entry.event).lastIndexOf("imported") + 1)) {
    if (ran(entry) && typeof entry.at === "string" && entry.at > latest) latest = entry.at;
  }
  return latest;
}

/**
 * True when the keyspace holds `sessionId`'s working memory: for a session of the project's own
 * working tree, when it owns the root (liveMemoryOwner); for a worktree session, once it has run
 * (its own root, /sessions/<sid>/memory, is written by its first start from its checkpoint).
 */
export function holdsLiveMemory(store: Store, sessionId: string): boolean {
  const record = findSession(store, sessionId);
  return record && memoryRootOf(record) !== "" ? hasRun(record) : liveMemoryOwner(store) === sessionId;
}

const ran = (entry: { event?: unknown }) => entry.event === "started" || entry.event === "continued";
/** True once the session ran: a "started" or "continued" in its history (a branch made and not continued since has neither). */
export const hasRun = (record: SessionRecord) => historyOf(record).some(ran);

/**
 * The session that ended last, which reads, relative checkpoint names and `--continue last` fall back to. A branch
 * not continued since it was made is recorded ended then, but never ran: it is taken only when no other session ended.
 */
export function lastSession(store: Store): SessionRecord | undefined {
  const ended = historySessions(store);
  return ended.find((record) => !record.parent_checkpoint || hasRun(record)) ?? ended[0];
}

export interface ContinueTarget {
  sessionId: string;
  /** The checkpoint to restore, when the argument named one. */
  checkpoint: string | undefined;
}

/**
 * Resolves `apex start --continue <last|SESSION|CHECKPOINT>`: "last" is the current session,
 * else the most recently ended one; a session id may be abbreviated to a unique prefix; any
 * other argument is a checkpoint reference, resolved by the checkpoint service when one is
 * provided (uuid, unique id prefix, `<session>/checkpoint-007`, `checkpoint-007` or `latest` of
 * the current session), else looked up among the sessions' checkpoint manifests.
 */
export async function resolveContinueTarget(store: Store, argument: string, service?: Pick<CheckpointService, "resolve">): Promise<ContinueTarget> {
  if (argument === "last") {
    const last = currentSession(store) ?? lastSession(store);
    if (!last) throw new ApexError("APEX_E_NO_SESSION", "There is no session to continue.", { hint: 'Start one: apex start --task "…"' });
    return { sessionId: last.session_id, checkpoint: undefined };
  }
  // A session as every command names it (resolveSessionId), any with a record (a reconstructed one too); else a checkpoint.
  try {
    return { sessionId: resolveSessionId(store, argument), checkpoint: undefined };
  } catch (error) {
    if ((error as ApexError).code !== "APEX_E_NO_SESSION") throw error;
  }
  const resolved = await service?.resolve?.(argument);
  if (resolved) return resolved;
  const checkpoint = findCheckpoint(store, argument);
  if (checkpoint) return checkpoint;
  throw new ApexError("APEX_E_NOT_FOUND", `No session or checkpoint ${JSON.stringify(argument)}.`, { hint: "See `apex session list` and `apex checkpoint list`; `--continue last` continues the most recent session." });
}

function safeFind(store: Store, sessionId: string): SessionRecord | undefined {
  try {
    const record = findSession(store, sessionId);
    return record && typeof record === "object" && record.session_id === sessionId && typeof record.status === "string" ? record : undefined;
  } catch {
    return undefined; // not a valid path segment: not a session id
  }
}

/** Finds a checkpoint manifest by its id (or a unique prefix of it) or by `<session>/checkpoint-<NNN>`. */
function findCheckpoint(store: Store, argument: string): ContinueTarget | undefined {
  const matches: ContinueTarget[] = [];
  for (const { path, value } of store.query("/sessions/*/checkpoint-*")) {
    const sessionId = path.split("/")[2]!;
    const id = (value as { id?: unknown } | null)?.id;
    const name = path.slice(path.lastIndexOf("/") + 1);
    if (argument === `${sessionId}/${name}` || id === argument || (typeof id === "string" && argument.length >= 6 && id.startsWith(argument))) {
      matches.push({ sessionId, checkpoint: typeof id === "string" ? id : `${sessionId}/${name}` });
    }
  }
  if (matches.length > 1) {
    throw new ApexError("APEX_E_AMBIGUOUS", `${argument} matches ${matches.length} checkpoints.`, { hint: "Give more characters of the checkpoint id." });
  }
  return matches[0];
}

/**
 * The session `ref` names, read the one way every command reads it: `last` and `current` (cli/session-ref.ts), else
 * an id, a branch's name, or a unique prefix of an id (4+ characters), among the sessions with a record (current,
 * ended, reconstructed) and those `scope.also` adds (the ids of sessions with checkpoints only, for the checkpoint
 * and retention commands). Several match: APEX_E_AMBIGUOUS (exit 2) naming them; none: APEX_E_NO_SESSION (exit 3),
 * with `scope.hint` as its hint when given.
 */
export function resolveSessionId(store: Store, ref: string, scope: { also?: Iterable<string>; hint?: string } = {}): string {
  const text = ref.trim();
  if (text === "last") return readableSessionId(store);
  const current = text === "current" ? currentSession(store) : undefined;
  if (current) return current.session_id;
  if (text === "current") throw new ApexError("APEX_E_NO_SESSION", "No session is current in this project.", { hint: "`last` names the one that ended last; `apex session list` shows them all." });
  const ids = new Set(scope.also);
  if (text && !text.includes("/") && safeFind(store, text)) ids.add(text);
  // Keys only, the records' (a session's own keys below its record are passed over, never decoded); longer than 64 is no id.
  for (const base of text.length >= 4 && text.length <= 64 && !text.includes("/") ? ["/sessions/", `${HISTORY_PREFIX}/`] : []) {
    // A uuid is read whatever its case (3F2A finds 3f2a…): lowercase, as APEX writes them; an id chosen with --as, as it is written.
    for (const start of new Set([base + text, base + text.toLowerCase()])) for (const key of store.keys({ start, end: `${start}\u{10ffff}` })) if (!key.includes("/", base.length)) ids.add(key.slice(base.length));
  }
  return pickSession(text, ids, () => sessionIdByName(store, text), scope.hint);
}

/** Which of `ids` `text` names: that id, else the session `named` finds by its name, else the one id it is a prefix of (4+ characters). */
export function pickSession(text: string, ids: Iterable<string>, named: () => string | undefined, hint = "See `apex session list`."): string {
  const known = [...ids].filter((id) => !RESERVED_SESSION_NAMES.has(id));
  if (known.includes(text)) return text;
  const byName = named();
  if (byName !== undefined) return byName;
  const matches = text.length >= 4 ? known.filter((id) => id.startsWith(text) || id.startsWith(text.toLowerCase())).sort() : [];
  if (matches.length === 1) return matches[0]!;
  const list = `${matches.slice(0, 10).join(", ")}${matches.length > 10 ? ", …" : ""}`;
  if (matches.length > 1) throw new ApexError("APEX_E_AMBIGUOUS", `${JSON.stringify(text)} matches ${matches.length} sessions: ${list}.`, { hint: "Give more characters of the session id (`apex session list`).", details: { candidates: matches } });
  throw new ApexError("APEX_E_NO_SESSION", `No session ${JSON.stringify(text)} in this project.`, { hint: text.length < 4 ? "Give at least 4 characters of the session id (`apex session list`)." : hint });
}

/**
 * The session a read (task list, milestones, agents) is about: `ref` when given, else the
 * current session, else the one that ended last, so that an ended session stays readable.
 */
export function readableSessionId(store: Store, ref?: string): string {
  if (ref !== undefined) return resolveSessionId(store, ref);
  const bound = boundSessionId(store);
  if (bound !== undefined && findSession(store, bound)) return bound;
  const session = lastSession(store);
  if (!session) throw noSessionError();
  return session.session_id;
}

/**
 * Why there is no session to act on: the session the command is bound to (`--session`, the
 * worktree's binding) when that one has ended (APEX_E_SESSION_STATE), else that none is active.
 */
export function noSessionToActOn(store: Store, action?: string): ApexError {
  const id = boundSessionId(store);
  const ended = id === undefined ? undefined : findSession(store, id);
  if (!ended) return noSessionError(lastSession(store) !== undefined);
  const name = typeof ended.name === "string" ? ended.name : undefined;
  const what = `session ${name ? `${name} (${ended.session_id})` : ended.session_id} has ended (${ended.status})`;
  return new ApexError("APEX_E_SESSION_STATE", action ? `Cannot ${action}: ${what}.` : `S${what.slice(1)}; this acts on a running session.`, {
    hint: `\`apex start --continue ${name ?? ended.session_id}\` runs it again; \`apex session list\` shows the active ones.`,
    details: { session_id: ended.session_id, status: ended.status },
  });
}

/** `ended`: whether a session of the project has ended, which `start --continue last` would continue (not said when none ever ran). */
export function noSessionError(ended = false): ApexError {
  return new ApexError("APEX_E_NO_SESSION", "No session is active in this project.", { hint: `Start one with \`apex start --task "…"\`${ended ? ", or continue the last one with `apex start --continue last`" : ""}.` });
}
