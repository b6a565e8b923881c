import { builtinPluginSchema } from "../../core/config/schemas.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { GitAudit } from "./audit.js";

const PLUGIN_NAME = "history" as const;

export interface HistoryOptions {
  enabled?: boolean;
}

export type { SessionReport } from "./report.js";

/**
 * The session's audit trail and reports. The core writes lifecycle, task, checkpoint and
 * restore events, and the retention plugin its deletions, each in the transaction of the change;
 * this plugin adds the git ones (`git.operation` on beforeGit, `git.synced` after
 * `apex session sync-git`) and `apex session report`, which renders a session with its metrics,
 * tasks, checkpoints, git range and events as Markdown or JSON.
 * `apex session history <ID>` (core) lists the trail itself.
 */
export default definePlugin<HistoryOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    if (options.enabled === false) return;
    const audit = new GitAudit(apex);
    apex.hooks.onStart.tapPromise(PLUGIN_NAME, async (context) => audit.start(context));
    apex.hooks.beforeGit.tapPromise(PLUGIN_NAME, (context) => audit.gitOperation(context));
    apex.hooks.onStop.tapPromise(PLUGIN_NAME, (context) => audit.finish(context.sessionId));

    apex.registerCommand({
      name: "session report",
      description: "a session's report: the session, its metrics, tasks, checkpoints, git range and audit trail, as Markdown or JSON",
      examples: ["apex session report", "apex session report 3f2a --format json", "apex session report last -o report.md", "apex session report last -o report.md --force --json"],
      // FILE is relative to where the user runs the command; the report only reads the store.
      runsIn: "cli",
      arguments: [{ syntax: "[id]", description: "the session: id, unique prefix, a branch's name, `current` or `last` (default: the one this command is bound to, as for every command, else the one that ended last)", session: true }],
      options: [
        { flags: "--format <format>", description: "md (default) or json" },
        { flags: "--json", description: "the same as --format json: {format, generated_at, session, metrics, tasks: {counts, items}, milestones, agents, checkpoints, git, events}; with -o, the report goes to FILE and stdout gets {session_id, format, file, bytes}" },
        { flags: "-o, --output <file>", description: "write the report to FILE instead of printing it (refused, exit 4, when FILE exists; written whole or not at all)" },
        { flags: "--force", description: "with -o: replace FILE if it exists" },
      ],
      async action(input, context) {
        const { runReportCommand } = await import("./command.js");
        return runReportCommand(input, context);
      },
    });
  },
});
