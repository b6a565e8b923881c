import { roleAllows, type Role } from "./grants.js";

/**
 * What a remote caller is shown of APEX's own records, by role. Two rules, applied on every
 * route that returns them (calls, the event stream, memory reads of /sessions/…):
 *
 * - Who was granted what is the owners' business: `share.list` needs owner, and so do the audit
 *   trail's share events (`share.created`, `share.revoked`: users, roles, token ids). A viewer or
 *   an operator gets the trail without them (its seq numbers then skip theirs); the event stream
 *   sends, in their place, a `events.skipped` event with the seq alone, so that a client that
 *   counts events (the dashboard compares the last seq it has with the status's `event_seq`)
 *   knows it missed nothing.
 *   Who else is connected (status's `connected`: users and their roles) is too: a viewer or an
 *   operator is shown there only themselves (their own user's connections), an owner everyone.
 * - The server's own files and process proofs mean nothing on another machine, and tell its
 *   layout to whoever holds a token: the supervisor's socket path, the log path `session.continue`
 *   answers, a branch's worktree path (its branch and commit stay), and the nonces that prove a pid
 *   is APEX's are never sent, to any role. Pids stay: agents' log lines and `agent.started`
 *   events carry them anyway, and an operator pausing a session reads them in `status`.
 */

/** The least role that sees share events. */
const SEES_GRANTS: Role = "owner";

export function hiddenEvent(event: unknown, role: Role): boolean {
  const type = (event as { type?: unknown } | null)?.type;
  return typeof type === "string" && type.startsWith("share.") && !roleAllows(role, SEES_GRANTS);
}

/** A session event as `role` may see it: undefined when hidden, else without the server's paths. */
export function remoteEvent(event: unknown, role: Role): unknown {
  if (hiddenEvent(event, role)) return undefined;
  if (!isObject(event) || event.type !== "session.branched" || !isObject(event.worktree)) return event;
  return { ...event, worktree: withoutPath(event.worktree) };
}

/** A stored value at `path` as a remote caller may see it: APEX's records there redacted, anything else (memory) as it is. */
export function remoteEntryValue(path: string, value: unknown, role: Role): unknown {
  const parts = path.split("/");
  if (parts[1] !== "sessions" || parts.length < 3) return value;
  const rest = parts[2] === "history" ? parts.slice(4) : parts.slice(3);
  if (parts[2] === "history" && parts.length < 4) return value;
  if (rest.length === 0) return sessionRecord(value);
  if (rest[0] === "agents" && rest.length === 2) return agentRecord(value);
  if (rest[0] === "events" && rest.length === 2) return remoteEvent(value, role);
  if (rest.length === 1 && rest[0]!.startsWith("checkpoint-")) return checkpointRecord(value);
  return value;
}

/**
 * The result of `method` as a caller of `role` receives it through `apex serve` (after the
 * session scoping of scope.ts).
 */
export function remoteResult(method: string, result: unknown, role: Role, user: string): unknown {
  switch (method) {
    case "session.status":
      return statusReport(result, role, user);
    case "session.list":
    case "session.history":
      return Array.isArray(result) ? result.map(sessionRecord) : result;
    case "session.continue":
      return isObject(result) ? omit(result, ["socket", "log"]) : result;
    case "events.list":
      return Array.isArray(result) ? result.filter((event) => !hiddenEvent(event, role)).map((event) => remoteEvent(event, role)) : result;
    case "agent.list":
      return Array.isArray(result) ? result.map(agentRecord) : result;
    case "checkpoint.show":
      return checkpointRecord(result);
    case "checkpoint.diff":
      return agentsDiff(result);
    case "memory.get":
      return result; // redacted by the caller, which knows the path
    case "memory.query":
      return Array.isArray(result) ? entries(result, role) : result;
    case "memory.page":
      return isObject(result) && Array.isArray(result.entries) ? { ...result, entries: entries(result.entries, role) } : result;
    case "memory.changes":
      return isObject(result) && Array.isArray(result.changes) ? { ...result, changes: entries(result.changes, role) } : result;
    default:
      return result;
  }
}

/** Memory entries ({path, value}): APEX's records redacted, hidden events left out. */
function entries(list: unknown[], role: Role): unknown[] {
  const out: unknown[] = [];
  for (const entry of list) {
    if (!isObject(entry) || typeof entry.path !== "string" || !("value" in entry)) {
      out.push(entry);
      continue;
    }
    const value = remoteEntryValue(entry.path, entry.value, role);
    if (value === undefined && entry.value !== undefined) continue; // a hidden event
    out.push(value === entry.value ? entry : { ...entry, value });
  }
  return out;
}

function statusReport(report: unknown, role: Role, user: string): unknown {
  if (!isObject(report)) return report;
  const connected = Array.isArray(report.connected) && !roleAllows(role, SEES_GRANTS) ? { connected: report.connected.filter((entry: unknown) => isObject(entry) && entry.user === user) } : {};
  if (!isObject(report.session)) return { ...report, ...connected };
  const session = report.session;
  return {
    ...report,
    ...connected,
    session: {
      ...session,
      supervisor: isObject(session.supervisor) ? omit(session.supervisor, ["socket", "nonce"]) : session.supervisor,
      // The path of a branch's git worktree on the server: `session list` has its branch.
      ...(typeof session.worktree === "string" ? { worktree: null } : {}),
    },
    ...(Array.isArray(report.agents) ? { agents: report.agents.map(agentRecord) } : {}),
  };
}

function sessionRecord(record: unknown): unknown {
  if (!isObject(record)) return record;
  return {
    ...record,
    ...(isObject(record.supervisor) ? { supervisor: omit(record.supervisor, ["socket", "nonce"]) } : {}),
    ...(isObject(record.worktree) ? { worktree: withoutPath(record.worktree) } : {}),
    // An imported session's entries name the worktree it ran in on the exporting host.
    ...(Array.isArray(record.history) ? { history: record.history.map((entry: unknown) => (isObject(entry) && "worktree_from" in entry ? omit(entry, ["worktree_from"]) : entry)) } : {}),
  };
}

function agentRecord(record: unknown): unknown {
  return isObject(record) && ("nonce" in record || "spawn_nonce" in record) ? omit(record, ["nonce", "spawn_nonce"]) : record;
}

function checkpointRecord(result: unknown): unknown {
  if (!isObject(result)) return result;
  const out: Record<string, unknown> = { ...result };
  if (isObject(result.agent_states)) out.agent_states = Object.fromEntries(Object.entries(result.agent_states).map(([name, state]) => [name, agentRecord(state)]));
  if (isObject(result.git_state)) out.git_state = omit(result.git_state, ["worktree"]);
  if (isObject(result.manifest) && isObject(result.manifest.git_state)) out.manifest = { ...result.manifest, git_state: omit(result.manifest.git_state, ["worktree"]) };
  return out;
}

/** A diff's agents changed: each side an agent record. */
function agentsDiff(result: unknown): unknown {
  if (!isObject(result) || !isObject(result.agents) || !Array.isArray(result.agents.changed)) return result;
  const changed = result.agents.changed.map((change: unknown) => (isObject(change) ? { ...change, before: agentRecord(change.before), after: agentRecord(change.after) } : change));
  return { ...result, agents: { ...result.agents, changed } };
}

function withoutPath(worktree: Record<string, unknown>): Record<string, unknown> {
  return omit(worktree, ["path"]);
}

function omit(value: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out = { ...value };
  for (const key of keys) delete out[key];
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
