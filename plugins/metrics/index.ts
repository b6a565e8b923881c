import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { MetricsRuntime, type MetricsOptions } from "./runtime.js";

const PLUGIN_NAME = "metrics" as const;

export type { SessionMetrics, AgentUtilization, RepositoryMetrics, PluginTiming } from "./record.js";
export { CURRENT_METRICS_PATH, metricsPath, metricsInputPrefix } from "./record.js";

/**
 * Keeps the session's metrics at /sessions/<id>/metrics (and, while it is the current
 * session, at /sessions/current/metrics): duration and active time, tasks, commits and lines
 * of code, issues found, checkpoints, each agent's utilization and CPU time, and the tap
 * timings of every plugin. Sampled inside the supervisor on an interval, soon after anything
 * that changes them, on pause, resume and checkpoints, and once more when the session ends.
 */
export default definePlugin<MetricsOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    if (options.enabled === false) return;
    const runtime = new MetricsRuntime(apex, options);

    apex.hooks.onStart.tapPromise(PLUGIN_NAME, (context) => runtime.start(context));
    apex.hooks.onPause.tapPromise(PLUGIN_NAME, async (context) => runtime.request("pause", context.sessionId));
    apex.hooks.onResume.tapPromise(PLUGIN_NAME, async (context) => runtime.request("resume", context.sessionId));
    apex.hooks.afterCheckpoint.tapPromise(PLUGIN_NAME, async (info) => runtime.request("checkpoint", info.sessionId));
    apex.hooks.onStop.tapPromise(PLUGIN_NAME, (context) => runtime.stop(context));

    apex.registerCommand({
      name: "session metrics",
      description: "the current session's metrics: tasks, time, commits, lines, issues, checkpoints, agent utilization, plugin costs",
      examples: ["apex session metrics", "apex session metrics --json", "apex memory watch /sessions/current/metrics"],
      options: [{ flags: "--json", description: "print the metrics record {format, session_id, status, updated_at, reason, samples, started_at, ended_at, session_duration, session_duration_seconds, active_seconds, paused_seconds, tasks_total, tasks_pending, tasks_active, tasks_completed, tasks_failed, tasks_reopened, milestones, commits_made, lines_of_code, lines_added, lines_removed, issues_found, issues_source, reported: {NAME: number}, checkpoints: {created, kept, latest: {name, id, trigger, created_at} | null}, agent_utilization: {AGENT: \"92%\"}, agent_utilization_detail: {AGENT: {reported_status, working_seconds, share, cpu_seconds, cpu_share}}, git: {repositories: [{name, path, start_commit, head, branch, commits, lines_added, lines_removed, files_changed, error}]}, plugin_timings: [{plugin, hook, calls, failures, total_ms, max_ms}], interrupted_runs_seen_at: [time]}" }],
      async action(input, context) {
        const { runMetricsCommand } = await import("./command.js");
        return runMetricsCommand(input, context, runtime);
      },
    });
  },
});
