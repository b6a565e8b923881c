import { isRecord, type AgentUtilization, type PluginTiming, type RepositoryMetrics, type SessionMetrics } from "./record.js";

/**
 * What a stored metrics record lists, as arrays whatever the record holds: one from an earlier
 * version, or replaced by hand (`memory set --force`), may lack them, which failed `session
 * metrics` and `session report` as a crash of their plugin ("Cannot read properties of undefined").
 */
export function repositoriesOf(metrics: SessionMetrics | null | undefined): RepositoryMetrics[] {
  const repositories = isRecord(metrics?.git) ? metrics.git.repositories : undefined;
  return Array.isArray(repositories) ? (repositories.filter(isRecord) as RepositoryMetrics[]) : [];
}

export function timingsOf(metrics: SessionMetrics): PluginTiming[] {
  return Array.isArray(metrics.plugin_timings) ? (metrics.plugin_timings.filter(isRecord) as PluginTiming[]) : [];
}

/** A count for people: a record that lacks it reads "?", not "undefined". */
function count(value: unknown): string {
  return typeof value === "number" && Number.isFinite(value) ? String(value) : "?";
}

/** "0.4s", "12s", "3m 05s", "2h 04m": durations for people. */
export function formatSeconds(seconds: number | null | undefined): string {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "-";
  if (seconds < 10) return `${Math.round(seconds * 10) / 10}s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes}m ${String(whole % 60).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

/** 0.4213 → "42%". */
export function formatShare(share: number | null | undefined): string {
  return typeof share === "number" && Number.isFinite(share) ? `${Math.round(share * 100)}%` : "-";
}

export function formatMs(ms: number): string {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "-";
  return ms < 10 ? `${Math.round(ms * 100) / 100} ms` : `${Math.round(ms)} ms`;
}

/** The headline numbers as label/value pairs (the text of `session metrics`, the table of the report). */
export function metricRows(metrics: SessionMetrics): Array<[string, string]> {
  const tasks = `${count(metrics.tasks_completed)} completed, ${count(metrics.tasks_failed)} failed, ${count(metrics.tasks_active)} active, ${count(metrics.tasks_pending)} pending (of ${count(metrics.tasks_total)})`;
  const reopened = metrics.tasks_reopened > 0 ? `; ${metrics.tasks_reopened} sent back` : "";
  const checkpoints = isRecord(metrics.checkpoints) ? metrics.checkpoints : { created: undefined, kept: undefined, latest: null };
  const latest = isRecord(checkpoints.latest) ? `, latest ${checkpoints.latest.name} (${checkpoints.latest.trigger ?? "?"})` : "";
  const source = metrics.issues_source === "none" || typeof metrics.issues_source !== "string" ? "none reported" : `from ${metrics.issues_source}`;
  return [
    ["Session duration", metrics.session_duration_seconds === null ? "unknown (the session record has no start time)" : formatSeconds(metrics.session_duration_seconds)],
    ["Active time", `${formatSeconds(metrics.active_seconds)} (paused ${formatSeconds(metrics.paused_seconds)})`],
    ["Tasks", `${tasks}${reopened}`],
    ["Milestones", count(metrics.milestones)],
    ["Commits made", count(metrics.commits_made)],
    ["Lines of code", `+${count(metrics.lines_added)} / -${count(metrics.lines_removed)}`],
    ["Issues found", `${count(metrics.issues_found)} (${source})`],
    ["Checkpoints", `${count(checkpoints.created)} created, ${count(checkpoints.kept)} kept${latest}`],
  ];
}

export interface UtilizationRow {
  agent: string;
  status: string;
  working: string;
  share: string;
  cpu: string;
}

export function utilizationRows(metrics: SessionMetrics): UtilizationRow[] {
  // Records from before agent_utilization_detail kept the detail in agent_utilization (as the sampler reads them too).
  const detail = isRecord(metrics.agent_utilization_detail) ? metrics.agent_utilization_detail : isRecord(metrics.agent_utilization) ? metrics.agent_utilization : {};
  return Object.entries(detail).map(([agent, value]) => {
    const usage: Partial<AgentUtilization> = isRecord(value) ? value : {};
    return {
      agent,
      status: typeof usage.reported_status === "string" ? usage.reported_status : "-",
      working: formatSeconds(usage.working_seconds),
      share: formatShare(usage.share),
      cpu: `${typeof usage.cpu_seconds === "number" && Number.isFinite(usage.cpu_seconds) ? `${usage.cpu_seconds.toFixed(2)}s` : "-"} (${formatShare(usage.cpu_share)})`,
    };
  });
}
