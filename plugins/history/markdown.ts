import { formatEvent } from "../../cli/session/format.js";
import type { SessionEvent } from "../../core/session/records.js";
import type { JsonValue } from "../../core/store/store.js";
import { formatMs, formatSeconds, metricRows, timingsOf, utilizationRows } from "../metrics/format.js";
import { isRecord } from "../metrics/record.js";
import { visibleText } from "../../cli/terminal-text.js";
import type { SessionReport } from "./report.js";

/** The report as Markdown: a summary, then one section each for metrics, tasks, checkpoints, git and events. */
export function renderMarkdown(report: SessionReport): string {
  const { session, metrics } = report;
  const out: string[] = [`# Session report: ${inline(String(session.session_id ?? "unknown"))}`, "", `Generated ${report.generated_at}.`, ""];

  out.push("## Session", "");
  out.push(
    ...table(
      ["Field", "Value"],
      [
        ["Status", `${session.effective_status ?? "unknown"}${session.outcome ? ` (${session.outcome})` : ""}`],
        ["Initial task", session.initial_task ?? "-"],
        ["Started", session.created_at ?? "-"],
        ["Ended", session.ended_at ?? "-"],
        ["Agents", (Array.isArray(session.agents) ? session.agents.join(", ") : "") || "-"],
        ["Restored from", session.restored_from ?? "-"],
        ["Lifecycle", (Array.isArray(session.history) ? session.history : []).map((entry) => `${entry.event} ${entry.at}`).join("; ") || "-"],
      ],
    ),
    "",
  );

  out.push("## Metrics", "");
  if (!metrics) {
    out.push("No metrics were recorded for this session (the metrics plugin was not enabled while it ran).", "");
  } else {
    out.push(`Sampled ${inline(String(metrics.updated_at))} (${inline(String(metrics.reason))}, sample ${metrics.samples}).`, "");
    out.push(...table(["Metric", "Value"], metricRows(metrics)), "");
    const agents = utilizationRows(metrics);
    if (agents.length > 0) {
      out.push("### Agent utilization", "", "Working time is the share of the session's active time in which the agent's last reported status was a working one.", "");
      out.push(...table(["Agent", "Reported status", "Working", "Share", "CPU"], agents.map((row) => [row.agent, row.status, row.working, row.share, row.cpu])), "");
    }
    const timings = timingsOf(metrics);
    if (timings.length > 0) {
      out.push("### Plugin costs", "");
      out.push(
        ...table(
          ["Plugin", "Hook", "Calls", "Failures", "Total", "Max"],
          timings.map((timing) => [timing.plugin, timing.hook, String(timing.calls), String(timing.failures), formatMs(timing.total_ms), formatMs(timing.max_ms)]),
        ),
        "",
      );
    }
  }

  const { counts, items } = report.tasks;
  out.push("## Tasks", "", `${counts.total} task${counts.total === 1 ? "" : "s"}: ${counts.completed} completed, ${counts.failed} failed, ${counts.active} active, ${counts.pending} pending.`, "");
  if (items.length > 0) {
    out.push(
      ...table(
        ["Task", "Title", "Status", "Assignee", "Finished", "Result or reason"],
        items.map((task) => [
          task.id,
          `${task.title}${task.milestone ? " (milestone)" : ""}`,
          task.reopened > 0 ? `${task.status} (reopened ${task.reopened}×)` : task.status,
          task.assignee ?? "-",
          task.completed_at ?? "-",
          task.status === "failed" || (task.status === "pending" && task.reason) ? (task.reason ?? "-") : compact(task.result),
        ]),
      ),
      "",
    );
  }
  if (report.milestones.length > 0) {
    out.push("### Milestones", "");
    // One line each: a line break in a milestone's text started a line of its own (`# …` a heading of the report).
    for (const milestone of report.milestones) out.push(`- ${inline(String(milestone.at))}: ${inline(milestone.text)} (${inline(`${milestone.by}${milestone.task ? `, ${milestone.task}` : ""}`)})`);
    out.push("");
  }

  out.push("## Checkpoints", "");
  if (report.checkpoints.length === 0) out.push("No checkpoints are kept for this session.", "");
  else {
    out.push(
      ...table(
        ["Checkpoint", "Trigger", "Created", "Description", "Git"],
        report.checkpoints.map((checkpoint) => [
          `${checkpoint.name}${checkpoint.pinned ? " (pinned)" : ""}`,
          checkpoint.trigger ?? "-",
          checkpoint.created_at ?? "-",
          checkpoint.description ?? "-",
          describeGitState(checkpoint.git_state),
        ]),
      ),
      "",
    );
  }

  out.push("## Git", "");
  const { repositories } = report.git;
  if (repositories.length > 0) {
    out.push(
      ...table(
        ["Repository", "Range", "Commits", "Lines added", "Lines removed"],
        repositories.map((repository) => [
          `${repository.name} (${repository.path})`,
          `${repository.start_commit?.slice(0, 7) ?? "(no commit at start)"}..${repository.head?.slice(0, 7) ?? "-"}${repository.branch ? ` on ${repository.branch}` : ""}`,
          String(repository.commits),
          String(repository.lines_added),
          String(repository.lines_removed),
        ]),
      ),
      "",
    );
  } else out.push("No repository was measured (no metrics, or no git repository).", "");
  out.push(`- First checkpoint: ${inline(describeGitState(report.git.first_checkpoint))}`);
  out.push(`- Last checkpoint: ${inline(describeGitState(report.git.last_checkpoint))}`);
  out.push(`- Last \`apex session sync-git\`: ${inline(`${describeGitState(report.git.synced)}${isRecord(report.git.synced) && typeof report.git.synced.synced_at === "string" ? ` at ${report.git.synced.synced_at}` : ""}`)}`, "");

  out.push("## Events", "", `${report.events.length} event${report.events.length === 1 ? "" : "s"}, oldest first.`, "");
  if (report.events.length > 0) {
    out.push(...table(["#", "Time", "Actor", "Event"], report.events.map((event) => [String(event.seq), event.at, event.actor, describeEvent(event)])), "");
  }
  if (metrics) out.push(`_Session duration ${formatSeconds(metrics.session_duration_seconds)}, active ${formatSeconds(metrics.active_seconds)}._`, "");
  return `${out.join("\n").trimEnd()}\n`;
}

/** The event as `apex start --attach` describes it, without its time and colours. */
export function describeEvent(event: SessionEvent): string {
  // eslint-disable-next-line no-control-regex
  return formatEvent(event).replace(/\u001b\[[0-9;]*m/g, "").slice("00:00:00  ".length);
}

function describeGitState(state: JsonValue): string {
  if (!isRecord(state)) return "-";
  const branch = typeof state.branch === "string" ? state.branch : "detached HEAD";
  const commit = typeof state.commit === "string" ? state.commit.slice(0, 7) : "no commit";
  return `${branch} @ ${commit}${state.dirty === true ? " (dirty)" : ""}`;
}

function compact(value: JsonValue): string {
  if (value === null || value === undefined) return "-";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

function oneLine(text: string): string {
  return String(text).replace(/\r?\n|\r/g, " ");
}

/** Text that looks like an HTML entity ("&lt;", "&#60;"): its '&' is escaped, so it shows as written. */
const ENTITY_START = /&(?=#?[0-9A-Za-z]+;)/g;

/**
 * Text agents and users wrote (titles, statuses, milestones, descriptions, branch names), as
 * Markdown shows it: on one line, and literal. Left as it was, a title `<img src=x onerror=…>`
 * or `<script>` was live HTML wherever the report is rendered (a Markdown preview, a wiki, a
 * static site), `[text](javascript:…)` a link, `__init__` bold and a '|' a new table cell.
 * '<' becomes an entity (every Markdown renderer keeps those as text, even one without
 * backslash escapes for it); the other characters Markdown acts on are backslash-escaped.
 * Control characters show as their escapes, as on a terminal: the file may well be read with
 * `cat` or `less`, where an escape sequence in a title would act on the reader's terminal.
 */
export function inline(text: string): string {
  return visibleText(
    oneLine(String(text))
      .replace(/[\\`*_[\]|~]/g, "\\$&")
      .replace(ENTITY_START, "&amp;")
      .replace(/</g, "&lt;"),
  );
}

function table(headers: string[], rows: string[][]): string[] {
  return [`| ${headers.map(inline).join(" | ")} |`, `|${headers.map(() => " --- ").join("|")}|`, ...rows.map((row) => `| ${row.map(inline).join(" | ")} |`)];
}
