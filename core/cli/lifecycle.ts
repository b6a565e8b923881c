import type { Command } from "commander";
import { projectOf } from "./context.js";
import { parseCount, parseSeconds } from "./memory.js";

/** `apex start|status|pause|resume|stop|logs`: a session's life. Actions import their code lazily. */
export function registerLifecycleCommands(program: Command): void {
  program
    .command("start")
    .description("start a session: a detached supervisor runs the configured agents")
    .option("-t, --task <text>", "what the session is for (recorded as its initial task)")
    .option("-c, --continue <last|SESSION|CHECKPOINT>", "continue an interrupted or ended session (ends its leftover agents first)")
    .option("-a, --attach", "stay in the foreground and stream the session's events; Ctrl-C detaches")
    .option("--json", "print the started session as JSON (with --attach: one event per line)")
    .addHelpText(
      "after",
      `
Agents get APEX_SESSION_ID, APEX_AGENT, APEX_SOCKET, APEX_HOME, APEX_CONFIG, APEX_BIN,
APEX_SUPERVISOR_PID, APEX_INITIAL_TASK and, when continued, APEX_RESUME_CONTEXT.

Examples:
  apex start --task "Implement user authentication"
  apex start --task "Fix the flaky tests" --attach
  apex start --continue last`,
    )
    .action(async (options: { task?: string; continue?: string; attach?: boolean; json?: boolean }, command: Command) => {
      const { startSession } = await import("../session/cli/start.js");
      await startSession(projectOf(command), options);
    });

  program
    .command("status")
    .description("the session, its agents (pid, state, uptime, CPU), task counts and last checkpoint")
    .option("--json", "print the status as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const { showStatus } = await import("../session/cli/status.js");
      await showStatus(projectOf(command), Boolean(options.json));
    });

  program
    .command("pause")
    .description("stop every agent process (SIGSTOP to each process group), checkpoint, mark the session paused")
    .option("--json", "print the result as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const { pauseSession } = await import("../session/cli/control.js");
      await pauseSession(projectOf(command), Boolean(options.json));
    });

  program
    .command("resume")
    .description("continue a paused session (SIGCONT to each agent's process group)")
    .option("--json", "print the result as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const { resumeSession } = await import("../session/cli/control.js");
      await resumeSession(projectOf(command), Boolean(options.json));
    });

  program
    .command("stop")
    .description("end the session: SIGTERM to the agents (SIGKILL after a grace period), record it in the history")
    .option("-f, --force", "SIGKILL the agents at once")
    .option("--grace <seconds>", "seconds between SIGTERM and SIGKILL (default 5)", parseSeconds)
    .option("--json", "print the result as JSON")
    .action(async (options: { force?: boolean; grace?: number; json?: boolean }, command: Command) => {
      const { stopSession } = await import("../session/cli/control.js");
      await stopSession(projectOf(command), options);
    });

  program
    .command("logs")
    .description("show the agents' output (stdout lines 'agent |', stderr lines 'agent !')")
    .argument("[agent]", "only this agent")
    .option("-f, --follow", "keep printing new lines until Ctrl-C")
    .option("-n, --lines <n>", "lines per log file (default 50; 10 with --follow)", parseCount)
    .option("--session <id>", "a past session (default: the current or latest one)")
    .option("--json", "one JSON object per line: {agent, stream, line}")
    .action(async (agent: string | undefined, options: { follow?: boolean; lines?: number; session?: string; json?: boolean }, command: Command) => {
      const { showLogs } = await import("../session/cli/logs.js");
      await showLogs(projectOf(command), agent, options);
    });
}
