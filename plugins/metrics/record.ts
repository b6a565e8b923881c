import type { JsonValue } from "../../core/store/store.js";

/**
 * What the metrics plugin keeps, and where.
 *
 * ```
 * /sessions/<sid>/metrics                  SessionMetrics, rewritten on every sample
 * /sessions/current/metrics                the same record while <sid> is the current session (for
 *                                          `apex memory watch /sessions/current/metrics`); removed when it ends
 * /sessions/<sid>/metrics-input/<name>     numbers agents report (`apex memory set …/issues_found 3`)
 * ```
 */
export const METRICS_FORMAT = 1;
export const CURRENT_METRICS_PATH = "/sessions/current/metrics";
export const metricsPath = (sid: string) => `/sessions/${sid}/metrics`;
export const metricsInputPrefix = (sid: string) => `/sessions/${sid}/metrics-input`;
/** The counter agents set to report issues: `apex memory set /sessions/$APEX_SESSION_ID/metrics-input/issues_found 3`. */
export const ISSUES_INPUT = "issues_found";
/** The reference adversary's review counters ({session, reviews, issues, sent_back}). */
export const REVIEW_STATS_PATH = "/review/stats";

export interface AgentUtilization {
  [key: string]: JsonValue;
  /** What the agent last reported (`apex agent report --status`). */
  reported_status: string | null;
  /** Seconds of the session's active time in which its last reported status was a working one. */
  working_seconds: number;
  /** working_seconds / active_seconds (0 to 1). */
  share: number;
  /** utime + stime of the agent's process groups (every process it ran, restarts included), from /proc. */
  cpu_seconds: number;
  /** cpu_seconds / active_seconds: 1 means one core busy all the time. */
  cpu_share: number;
}

export interface RepositoryMetrics {
  [key: string]: JsonValue;
  /** "project" (the project repository) or "workspace" (the agents' repository at <store>/workspace). */
  name: string;
  path: string;
  /** HEAD when the session started; null when the repository had no commit (or did not exist) then. */
  start_commit: string | null;
  head: string | null;
  branch: string | null;
  /** Commits reachable from HEAD but not from start_commit (`git rev-list --count start..HEAD`). */
  commits: number;
  /** `git diff --numstat start_commit` against the working tree: committed and uncommitted changes to tracked files. */
  lines_added: number;
  lines_removed: number;
  files_changed: number;
  /** Why the numbers could not be read (git missing, start commit gone), else null. */
  error: string | null;
}

export interface PluginTiming {
  [key: string]: JsonValue;
  plugin: string;
  hook: string;
  calls: number;
  failures: number;
  total_ms: number;
  max_ms: number;
}

export interface SessionMetrics {
  [key: string]: JsonValue;
  format: number;
  session_id: string;
  /** The session's status when sampled: active, paused, stopped, completed or failed. */
  status: string;
  updated_at: string;
  /** What caused this sample: start, interval, change, pause, resume, checkpoint, stop, command. */
  reason: string;
  samples: number;
  /** null when the session record holds no start time that parses (a record replaced by hand). */
  started_at: string | null;
  ended_at: string | null;
  /** session_duration_seconds for people: "42s", "3m 05s", "2h 45m"; "unknown" without a start time. */
  session_duration: string;
  /** Wall-clock seconds from the start to the end (or now), pauses and interruptions included; null when the start is unknown. */
  session_duration_seconds: number | null;
  /** Seconds in which the session ran and was not paused. */
  active_seconds: number;
  paused_seconds: number;
  tasks_total: number;
  tasks_pending: number;
  tasks_active: number;
  tasks_completed: number;
  tasks_failed: number;
  /** How often a task was sent back (task.reopened events). */
  tasks_reopened: number;
  milestones: number;
  commits_made: number;
  /** Lines written in the session: lines_added of every repository (committed or not). */
  lines_of_code: number;
  lines_added: number;
  lines_removed: number;
  issues_found: number;
  /** Where issues_found comes from: "metrics-input" (reported by an agent), "review-stats" (/review/stats) or "none". */
  issues_source: string;
  /** Every number under /sessions/<sid>/metrics-input. */
  reported: { [name: string]: number };
  checkpoints: {
    /** Checkpoints written in the session (checkpoint events; at least the ones still kept). */
    created: number;
    /**
     * Checkpoint manifests still stored (retention, `session cleanup` or `checkpoint delete` may have
     * removed others): the sample's count in the record; `session metrics` and the report count them
     * (and `latest`) again in the store as it is when they read it (checkpointsNow).
     */
    kept: number;
    latest: { name: string; id: string | null; trigger: string | null; created_at: string | null } | null;
  };
  /** Each agent's share of the active time in a working status, for people: {"coder": "92%"}. */
  agent_utilization: { [agent: string]: string };
  /** What agent_utilization is computed from, with CPU time. */
  agent_utilization_detail: { [agent: string]: AgentUtilization };
  git: { repositories: RepositoryMetrics[] };
  /** The supervisor's tap timings (engine.timings()) per plugin and hook, summed over every run of the session; costliest first. */
  plugin_timings: PluginTiming[];
  /**
   * For each earlier run of the session whose supervisor died (kill -9, power loss), the time of
   * its last sample: active and working time count up to it, not through the time the session
   * lay dead until `start --continue` or `apex stop`.
   */
  interrupted_runs_seen_at: string[];
}

/**
 * Recorded metrics in the status their session has now (`apex status`'s, as the caller read it):
 * the last sample's is the status then. A session whose supervisor died was sampled "active" and is
 * interrupted; one imported from a live export was sampled where it ran and is stopped here.
 */
export function inStatusNow(metrics: SessionMetrics, status: string): SessionMetrics {
  return metrics.status === status ? metrics : { ...metrics, status };
}

const MANIFEST_NAME = /^checkpoint-(\d+)$/;

/**
 * The checkpoints of a session its manifests (`/sessions/<sid>/checkpoint-*`, path and value) say it
 * keeps: how many, the latest, and `created`, the checkpoints made, at least as many as are kept.
 */
export function checkpointCounts(manifests: Iterable<{ path: string; value: JsonValue }>, created: number): SessionMetrics["checkpoints"] {
  let kept = 0;
  let latest: SessionMetrics["checkpoints"]["latest"] = null;
  let latestSequence = 0;
  for (const { path, value } of manifests) {
    const name = path.slice(path.lastIndexOf("/") + 1);
    const match = MANIFEST_NAME.exec(name);
    if (!match || !isRecord(value)) continue;
    kept += 1;
    const sequence = Number(match[1]);
    if (sequence <= latestSequence) continue;
    latestSequence = sequence;
    const text = (key: string) => (typeof value[key] === "string" ? (value[key] as string) : null);
    latest = { name, id: text("id"), trigger: text("trigger"), created_at: text("created_at") };
  }
  return { created: Math.max(created, kept), kept, latest };
}

/**
 * Recorded metrics with the checkpoints the store keeps now (its manifests, as checkpointCounts reads
 * them): a cleanup, retention after the last sample or a `checkpoint delete` of an ended session
 * removed some, and the last sample's `kept` and `latest` named them still. `created` stays the count
 * of checkpoints made.
 */
export function checkpointsNow(metrics: SessionMetrics, manifests: Iterable<{ path: string; value: JsonValue }>): SessionMetrics {
  const recorded = isRecord(metrics.checkpoints) && typeof metrics.checkpoints.created === "number" ? metrics.checkpoints.created : 0;
  return { ...metrics, checkpoints: checkpointCounts(manifests, recorded) };
}

export function isRecord(value: unknown): value is Record<string, JsonValue> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Rounds to `digits` decimals; metrics are for people, not for nanosecond accounting. */
export function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
