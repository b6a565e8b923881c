import type { SessionMetrics } from "./record.js";

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
  const tasks = `${metrics.tasks_completed} completed, ${metrics.tasks_failed} failed, ${metrics.tasks_active} active, ${metrics.tasks_pending} pending (of ${metrics.tasks_total})`;
  const reopened = metrics.tasks_reopened > 0 ? `; ${metrics.tasks_reopened} sent back` : "";
  const latest = metrics.checkpoints.latest ? `, latest ${metrics.checkpoints.latest.name} (${metrics.checkpoints.latest.trigger ?? "?"})` : "";
  const source = metrics.issues_source === "none" ? "none reported" : `from ${metrics.issues_source}`;
  return [
    ["Session duration", metrics.session_duration_seconds === null ? "unknown (the session record has no start time)" : formatSeconds(metrics.session_duration_seconds)],
    ["Active time", `${formatSeconds(metrics.active_seconds)} (paused ${formatSeconds(metrics.paused_seconds)})`],
    ["Tasks", `${tasks}${reopened}`],
    ["Milestones", String(metrics.milestones)],
    ["Commits made", String(metrics.commits_made)],
    ["Lines of code", `+${metrics.lines_added} / -${metrics.lines_removed}`],
    ["Issues found", `${metrics.issues_found} (${source})`],
    ["Checkpoints", `${metrics.checkpoints.created} created, ${metrics.checkpoints.kept} kept${latest}`],
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
  return Object.entries(metrics.agent_utilization_detail).map(([agent, usage]) => ({
    agent,
    status: usage.reported_status ?? "-",
    working: formatSeconds(usage.working_seconds),
    share: formatShare(usage.share),
    cpu: `${typeof usage.cpu_seconds === "number" && Number.isFinite(usage.cpu_seconds) ? `${usage.cpu_seconds.toFixed(2)}s` : "-"} (${formatShare(usage.cpu_share)})`,
  }));
}
