import { paint, type Color } from "../output.js";
import { terminalSafe } from "../terminal-text.js";
import type { SessionEvent } from "../../core/session/records.js";
import { shortSessionId } from "../../core/session/names.js";

/** 3725 → "1h 2m 5s". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) return `${h}h ${m}m ${rest}s`;
  if (m > 0) return `${m}m ${rest}s`;
  return `${rest}s`;
}

/** The colour of each session, agent and task status, in every view (status, connect's live view). */
export const STATUS_COLORS: Record<string, Color> = {
  active: "green",
  running: "green",
  completed: "green",
  paused: "yellow",
  stopping: "yellow",
  restarting: "yellow",
  starting: "yellow",
  interrupted: "red",
  failed: "red",
  gone: "red",
  orphaned: "red",
  stopped: "gray",
  exited: "gray",
  pending: "cyan",
};

export function paintStatus(status: string | undefined): string {
  // A hand-written record may have none: "unknown", not "undefined".
  if (typeof status !== "string") return "unknown";
  const color = STATUS_COLORS[status];
  return color ? paint(status, color) : status;
}

/**
 * An agent's status for people: with how its process ended once it is not running ("exited (code
 * 0)", "failed (SIGKILL)"), and when a restart is due ("restarting in 1.6s"). In a paused session
 * a restart waits for the resume too ("restarting in 1.6s once resumed", "restarting on resume").
 * A server older than these fields leaves them out: the status alone.
 */
export function agentStatusText(agent: { status: string; alive?: boolean; last_exit?: { code: number | null; signal: string | null } | null; restart_at?: string | null }, now = Date.now(), sessionStatus?: string): string {
  const status = paintStatus(agent.status);
  if (agent.status === "restarting" && typeof agent.restart_at === "string") {
    const wait = (Date.parse(agent.restart_at) - now) / 1000;
    const paused = sessionStatus === "paused";
    return Number.isFinite(wait) ? `${status} ${wait > 0 ? `in ${wait.toFixed(1)}s${paused ? " once resumed" : ""}` : paused ? "on resume" : "(due)"}` : status;
  }
  const exit = agent.last_exit;
  if (agent.alive || !exit || ["running", "paused", "starting", "orphaned"].includes(agent.status)) return status;
  return `${status} (${exit.signal ? terminalSafe(String(exit.signal), { singleLine: true }) : `code ${exit.code ?? "?"}`})`;
}

/**
 * One line per event for `apex start --attach`, `apex connect` and the live view. Each field is
 * kept on the line (a newline in a task title shows as \u000a): an event may come from another
 * user or a remote server, and must not pass for several.
 */
export function formatEvent(event: SessionEvent): string {
  const { time, what, color } = eventParts(event);
  return `${paint(time, "gray")}  ${color ? paint(what, color) : what}`;
}

/**
 * An event's line in parts, uncoloured (its time, what happened, the colour for it), for a view
 * that colours as it draws: the live view of `apex connect` makes every text terminal-safe before
 * colouring it, so colour codes already in a text would show as `\u001b[90m`.
 */
export function eventParts(event: SessionEvent): { time: string; what: string; color: Color | undefined } {
  // A hand-written event may lack any field: a time of dashes, never a failed listing.
  const time = typeof event.at === "string" ? event.at.slice(11, 19) : "--:--:--";
  const e = event as Record<string, unknown>;
  const text = (name: string) => (e[name] === null || e[name] === undefined ? "" : terminalSafe(String(e[name]), { singleLine: true }));
  const type = event.type === undefined || event.type === null ? "unknown event" : terminalSafe(String(event.type), { singleLine: true });
  let what: string;
  switch (event.type) {
    case "session.started":
      what = `session started${e.initial_task ? `: ${text("initial_task")}` : ""}`;
      break;
    case "session.continued":
      what = `session continued (was ${text("from")})`;
      break;
    case "session.paused":
      what = `session paused (${e.processes === 1 ? "1 process" : `${text("processes")} processes`} stopped${Array.isArray(e.stopping) ? `, ${e.stopping.length} of them once their uninterruptible I/O ends` : ""})`;
      break;
    case "session.resumed":
      what = "session resumed";
      break;
    case "session.stopped":
    case "session.completed":
    case "session.failed":
      what = `session ${type.slice("session.".length)}: ${text("reason")}`;
      break;
    case "agent.started":
      what = `${text("agent")} started (pid ${text("pid")}${Number(e.restarts) > 0 ? `, restart ${text("restarts")}` : ""})`;
      break;
    case "agent.exited":
      what = `${text("agent")} ${e.signal ? `killed by ${text("signal")}` : `exited with code ${text("code")}`} → ${text("status")}${Array.isArray(e.released) && e.released.length > 0 ? `; back to pending: ${terminalSafe(e.released.join(", "), { singleLine: true })}` : ""}`;
      break;
    case "agent.restarting":
      what = `${text("agent")} restarts in ${text("delay_seconds")} s (restart ${text("restarts")})`;
      break;
    case "agent.report":
      what = `${text("agent")}: ${text("status")}${e.task ? ` (${text("task")})` : ""}`;
      break;
    case "task.added":
      what = `task ${text("task")} added: ${text("title")}${e.assignee ? ` → ${text("assignee")}` : ""}`;
      break;
    case "task.claimed":
      what = `task ${text("task")} claimed by ${text("agent")}: ${text("title")}`;
      break;
    case "task.completed":
      what = `task ${text("task")} completed: ${text("title")}`;
      break;
    case "task.failed":
      what = `task ${text("task")} failed: ${text("reason")}`;
      break;
    case "task.reopened":
      // From pending: given to another agent (or to any), not sent back.
      what = e.from === "pending" ? `task ${text("task")} ${e.assignee ? `reassigned to ${text("assignee")}` : "left to any agent"} by ${text("by")}` : `task ${text("task")} reopened by ${text("by")}`;
      if (e.reason) what += `: ${text("reason")}`;
      break;
    case "milestone":
      what = `milestone ${text("n")}: ${text("text")}`;
      break;
    case "checkpoint":
      what = `checkpoint ${text("sequence")} (${text("trigger")})`;
      break;
    case "error":
      what = `error in ${text("origin")}: ${text("message")}`;
      break;
    // Branches, merges, takeovers, restores, shares, git operations and syncs, retention's deletions: in words, as the events above (each showed as its type and raw JSON).
    case "session.branched":
      what = `session branched as ${text("name")} from ${checkpointRef(e.from)}${typeof e.worktree === "string" ? ` (worktree ${text("worktree")})` : ""}`;
      break;
    case "session.branch":
      what = `branch ${text("name")} made from this session`;
      break;
    case "session.merged":
      what = `merged ${checkpointRef(e.from)} in as ${text("name")} (${countOf(e.changes, "change")}${Number(e.conflicts_settled) > 0 ? `, ${countOf(e.conflicts_settled, "conflict")} settled: ${text("strategy")}` : ""})`;
      break;
    case "session.taken_over":
      what = `session taken over by host ${text("to_host")} from ${text("from_host")}, whose lease had expired`;
      break;
    case "session.restored":
      // Named as `checkpoint show` takes it (3f2a9c1e/checkpoint-004), from what the restore reported; its id when that is missing.
      what = `session restored from checkpoint ${hasName(e.details) ? checkpointRef(e.details) : text("checkpoint")}${e.forced === true ? " (forced recovery)" : ""}`;
      break;
    case "session.reconciled": {
      const requeued = Array.isArray(e.requeued) ? e.requeued.length : 0;
      const stopped = Array.isArray(e.stopped_agents) ? e.stopped_agents.length : 0;
      what = `records matched to what runs (from the ${e.from === "checkpoint" ? "checkpoint" : "live state"}): ${countOf(requeued, "task")} back to pending${stopped > 0 ? `, ${countOf(stopped, "agent")} ended` : ""}`;
      break;
    }
    case "share.created":
      what = `shared with ${text("user")} as ${text("role")}${e.expires_at ? ` until ${text("expires_at")}` : ""}`;
      break;
    case "share.revoked":
      what = `access of ${text("user")} revoked`;
      break;
    case "git.operation": {
      const args = Array.isArray(e.args) ? e.args.map((arg) => shellWord(String(arg))).join(" ") : "";
      const source = e.source === "cli" ? "apex git" : e.source === "git-hook" ? "git hook" : text("source");
      what = `git${args ? ` ${terminalSafe(args, { singleLine: true })}` : ""}${source ? ` (${source})` : ""}`;
      break;
    }
    case "checkpoint.deleted": {
      const which = [e.name ? text("name") : "", e.trigger ? text("trigger") : ""].filter(Boolean).join(", ");
      what = `checkpoint ${text("sequence") || "?"}${which ? ` (${which})` : ""} deleted${e.forced === true ? " with --force" : ""}`;
      break;
    }
    case "retention.delete": {
      const which = [e.name ? text("name") : "", e.trigger ? text("trigger") : ""].filter(Boolean).join(", ");
      what = `checkpoint ${text("sequence") || "?"}${which ? ` (${which})` : ""} removed by retention${e.run === "command" ? " (apex session cleanup)" : ""}${e.reason ? `: ${text("reason")}` : ""}`;
      break;
    }
    case "git.synced":
      what = `git synced: ${e.branch ? text("branch") : "detached HEAD"}${typeof e.commit === "string" ? ` at ${terminalSafe(e.commit.slice(0, 12), { singleLine: true })}` : ""}${e.dirty === true ? " (uncommitted changes)" : ""}`;
      break;
    default:
      what = `${type} ${terminalSafe(JSON.stringify(Object.fromEntries(Object.entries(e).filter(([key]) => !["seq", "at", "type", "actor"].includes(key)))), { singleLine: true })}`;
  }
  const color: Color | undefined = type === "error" || type.endsWith("failed") ? "red" : type === "milestone" ? "magenta" : undefined;
  return { time, what, color };
}

/** A command-line argument as a shell would need it written: as it is when plain, else in double quotes (JSON's escapes). */
function shellWord(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg);
}

/** A checkpoint an event names ({session_id, name}, as branches and merges record it): `3f2a9c1e/checkpoint-004`. */
function checkpointRef(value: unknown): string {
  if (typeof value !== "object" || value === null) return typeof value === "string" ? terminalSafe(value, { singleLine: true }) : "a checkpoint";
  const { session_id: session, name } = value as { session_id?: unknown; name?: unknown };
  const shown = `${typeof session === "string" ? `${shortSessionId(session)}/` : ""}${typeof name === "string" ? name : "a checkpoint"}`;
  return terminalSafe(shown, { singleLine: true });
}

function hasName(value: unknown): boolean {
  return typeof value === "object" && value !== null && typeof (value as { name?: unknown }).name === "string";
}

function countOf(value: unknown, noun: string): string {
  const n = Number(value);
  return Number.isFinite(n) ? `${n} ${n === 1 ? noun : `${noun}s`}` : `? ${noun}s`;
}
