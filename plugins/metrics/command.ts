import { table, visibleText } from "../../cli/output.js";
import { shortSessionId } from "../../core/session/names.js";
import type { CommandContext, CommandInput } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import { effectiveStatus, findSession, readableSessionId, sessionBinding } from "../../core/session/sessions.js";
import { formatMs, metricRows, repositoriesOf, timingsOf, utilizationRows } from "./format.js";
import { checkpointsNow, inStatusNow, isRecord, metricsPath, type SessionMetrics } from "./record.js";
import type { MetricsRuntime } from "./runtime.js";

/** How many of the costliest plugin hooks the text output lists. */
const TOP_TIMINGS = 10;

/**
 * `apex session metrics [--json]`: the current session's metrics, sampled now when its
 * supervisor runs the command, else as last recorded (for an interrupted session, or the last
 * one that ended when none is current).
 */
export async function runMetricsCommand(input: CommandInput, context: CommandContext, runtime: MetricsRuntime): Promise<number> {
  const live = runtime.attach(context.engine);
  const metrics = live ? await live.sample("command") : await recorded(context);
  if (!metrics) throw new ApexError("APEX_E_NO_SESSION", "The session ended while its metrics were being sampled.", { hint: "Run `apex session metrics` again." });
  if (input.options.json) context.printJson(metrics);
  else for (const line of formatMetrics(metrics, await sessionNameOf(context, metrics.session_id))) context.print(line);
  return 0;
}

/** The session's name (a branch's), from the store the metrics came from (the supervisor's, or the one the recorded metrics were read from); null for none. */
async function sessionNameOf(context: CommandContext, sessionId: string): Promise<string | null> {
  try {
    const name = findSession(context.engine.store ?? (await context.store()), sessionId)?.name;
    return typeof name === "string" && name ? name : null;
  } catch {
    return null; // an unreadable record names nothing: the short id is printed
  }
}

async function recorded(context: CommandContext): Promise<SessionMetrics> {
  // Opening the store for writing would create it: a project that never ran APEX has no session.
  if (!(await context.storeExists())) throw noSession();
  const store = await context.store();
  // A --session that names no session (or several active ones with nothing to choose) says so itself.
  sessionBinding(store);
  let session;
  try {
    session = findSession(store, readableSessionId(store));
  } catch {
    session = undefined;
  }
  if (!session) throw noSession();
  const stored = store.get(metricsPath(session.session_id));
  if (!isRecord(stored) || stored.session_id !== session.session_id) {
    throw new ApexError("APEX_E_NOT_FOUND", `No metrics were recorded for session ${session.session_id}.`, {
      hint: "The metrics plugin records them while a session runs; `apex plugins list` shows whether it is enabled.",
    });
  }
  // As last recorded, but in the status the session has now (as `apex status` and `session list` say it),
  // with the checkpoints it keeps now (a cleanup since the last sample removed some).
  const now = checkpointsNow(stored as SessionMetrics, store.query(`/sessions/${session.session_id}/checkpoint-*`));
  return inStatusNow(now, effectiveStatus(session));
}

/** `name`: the session's name, which the text names it by, else its uuid's short form, as session list does (--json has the whole id). */
export function formatMetrics(metrics: SessionMetrics, name: string | null = null): string[] {
  const lines = [`Metrics of session ${name ? visibleText(name) : shortSessionId(String(metrics.session_id))} (${metrics.status}), sampled ${metrics.updated_at} (${metrics.reason})`, ""];
  const rows = metricRows(metrics);
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, value] of rows) lines.push(`  ${label.padEnd(width)}  ${value}`);
  const agents = utilizationRows(metrics);
  if (agents.length > 0) {
    lines.push("", table(["AGENT", "STATUS", "WORKING", "SHARE", "CPU"], agents.map((row) => [row.agent, row.status, row.working, row.share, row.cpu])));
  }
  const repositories = repositoriesOf(metrics);
  if (repositories.length > 0) {
    lines.push(
      "",
      table(
        ["REPOSITORY", "FROM", "TO", "COMMITS", "LINES"],
        repositories.map((repository) => [
          `${repository.name} (${repository.path})`,
          repository.start_commit?.slice(0, 7) ?? "(start)",
          repository.head?.slice(0, 7) ?? "-",
          String(repository.commits),
          `+${repository.lines_added} -${repository.lines_removed}${repository.error ? `  (${repository.error})` : ""}`,
        ]),
      ),
    );
  }
  const timings = timingsOf(metrics).slice(0, TOP_TIMINGS);
  if (timings.length > 0) {
    lines.push(
      "",
      table(
        ["PLUGIN", "HOOK", "CALLS", "TOTAL", "MAX"],
        timings.map((timing) => [timing.plugin, timing.hook, String(timing.calls), formatMs(timing.total_ms), formatMs(timing.max_ms)]),
      ),
    );
  }
  return lines;
}

function noSession(): ApexError {
  return new ApexError("APEX_E_NO_SESSION", "This project has no session yet, so no metrics.", { hint: 'Start one: apex start --task "…"' });
}
