import type { Command } from "commander";
import { projectOf } from "./context.js";
import { durationHelp } from "./durations.js";
import { seconds, wholeNumber } from "./option-values.js";
import { examples } from "./output.js";
import { MAX_STOP_GRACE_SECONDS } from "../core/session/records.js";

/** `apex start|status|pause|resume|stop|logs`: a session's life. Actions import their code lazily. */
export function registerLifecycleCommands(program: Command): void {
  program
    .command("start")
    .description("start a session: a detached supervisor runs the configured agents")
    .option("-t, --task <text>", "what the session is for (recorded as its initial task)")
    .option("-c, --continue <last|SESSION|CHECKPOINT>", "continue an interrupted or ended session: last|SESSION from the live state, CHECKPOINT rolled back to it; ends its leftover agents first")
    .option("--force-recovery <CHECKPOINT>", "continue from a damaged checkpoint: restore what still verifies and list exactly what was lost")
    .option("--git-checkout", "with --continue: first check out the checkpoint's git commit on a new branch apex/<session>/<checkpoint>, in the session's own git worktree (a branch made with --worktree), else in the project's")
    .option("-a, --attach", "stay in the foreground and stream the session's events; Ctrl-C detaches")
    .option("--json", "print {session_id, status, supervisor_pid, socket, log, continued, restored_from, restore, reconciled: {requeued, resumed, stopped_agents} | null, checkpoint: {id, name, trigger} | null, reaped: [{agent, pids}], agents: [{name, pid, pgid, status}], event_seq, warnings?, handover?: {session_id, name, was, checkpoint, processes_ended}, git_checkout?: {repository, branch, commit}, recovery?: {session_id, session_name, name, lost, memory, tasks, agents, …}} (handover: the session stopped to make way for --continue; recovery: with --force-recovery, what was restored and what lost; with --attach: then one event {seq, at, type, actor, …} per line)")
    .addHelpText(
      "after",
      `
Agents get APEX_SESSION_ID, APEX_AGENT, APEX_SOCKET, APEX_HOME, APEX_CONFIG, APEX_BIN,
APEX_SUPERVISOR_PID, APEX_INITIAL_TASK and, when continued, APEX_RESUME_CONTEXT (the
context the agent reported, as the checkpoint holds it), APEX_RESUME_TASK (its active task) and
APEX_RESUME_TASKS (every task it holds, that one first, separated by spaces); these two also
when restarted by its policy, holding tasks claimed for it after its exit.

--continue last|SESSION goes on from the live state: memory as it is (every acknowledged
write kept), leftover agents ended, active tasks back to their restarted agents.
--continue CHECKPOINT rolls memory, tasks and agent states back to that checkpoint, after
saving the state it replaces as a beforeRestore checkpoint (retention keeps it).
A session that holds the project is checkpointed and stopped first (said in the output).
With session.auto_recovery (the default), any \`apex start\` and \`apex resume\` continue an
interrupted session from the live state, with a notice; \`apex status\` only reports it.
Ctrl-C before the start has reported calls it off: nothing is launched, or the session
its supervisor claimed is stopped once started (no agent is left running); it says which.

Examples:
  apex start --task "Implement user authentication"
  apex start --task "Fix the flaky tests" --attach
  apex start --continue last
  apex start --continue 3f2a9c1e           # a session, from its live state (a checkpoint id: rolled back to it)
  apex start --continue alpha --git-checkout   # the code too: the commit of alpha's latest checkpoint
  apex start --force-recovery checkpoint-007`,
    )
    .action(async (options: { task?: string; continue?: string; forceRecovery?: string; attach?: boolean; json?: boolean; gitCheckout?: boolean }, command: Command) => {
      // Ctrl-C until the start has reported calls it off, whatever step it is at (call-off.ts).
      const { callOffOnInterrupt } = await import("./session/call-off.js");
      await callOffOnInterrupt(Boolean(options.json), () => start(options, command));
    });

  program
    .command("status")
    .description("the session, its agents (pid, state, uptime, CPU), task counts and last checkpoint")
    .option("--json", "print {session: {session_id, name, project_id, status, stored_status, initial_task, created_at, updated_at, supervisor: {pid, alive, socket, host, generation, lease_expires_at, stopped?, socket_gone?} | null, host, remote, lease_expires_at, restored_from, worktree, event_seq} | null, agents: [{name, status, pid, pgid, last_pid, restart_at, alive, process_state, processes, stopping, stopped, task, reported_status, restarts, uptime_seconds, cpu_seconds, last_exit: {code, signal, at} | null}], tasks: {pending, active, completed, failed, total}, last_checkpoint: {key, id, sequence, trigger, created_at, description} | null, left_running: [{agent, pids, stopped}], recover_with, last_session: {session_id, name, status, ended_at, outcome} | null, connected?, stranded_tasks?, warnings?} (recover_with: the command that recovers an interrupted session, else null; stranded_tasks: [{id, title, assignee, agent_status}], pending tasks assigned to an agent that ended for good; connected: [{user, role, since, streams}] through `apex serve`, when the supervisor answers; warnings: an invalid config, when no session is active or it is interrupted)")
    .addHelpText("after", examples("apex status", "apex status --json | jq .tasks"))
    .action(async (options: { json?: boolean }, command: Command) => {
      const location = projectOf(command);
      // A read command: an interrupted session is reported with the command that recovers it, never acted on.
      const { showStatus } = await import("./session/status.js");
      await showStatus(location, Boolean(options.json));
    });

  program
    .command("pause")
    .description("stop every agent process (SIGSTOP to each process group), checkpoint, mark the session paused")
    .option("--json", "print {session_id, name, status: \"paused\", agents, processes, stopping: [{agent, pid}], warnings}")
    .addHelpText("after", examples("apex pause", "apex pause --json"))
    .action(async (options: { json?: boolean }, command: Command) => {
      const { pauseSession } = await import("./session/control.js");
      await pauseSession(projectOf(command), Boolean(options.json));
    });

  program
    .command("resume")
    .description("continue a paused session (SIGCONT to each agent's process group)")
    .option("--json", "print {session_id, name, status: \"active\", agents, processes, restarted, warnings}")
    .addHelpText("after", examples("apex resume"))
    .action(async (options: { json?: boolean }, command: Command) => {
      const { resumeSession } = await import("./session/control.js");
      await resumeSession(projectOf(command), Boolean(options.json));
    });

  program
    .command("stop")
    .description("end the session: SIGTERM to the agents (SIGKILL after a grace period), record it in the history")
    .option("-f, --force", "SIGKILL the agents at once (no --grace)")
    .option("--grace <duration>", durationHelp(`the time between SIGTERM and SIGKILL (default 5s, at most 1h: ${MAX_STOP_GRACE_SECONDS} seconds)`, "10s, 2m"), seconds("--grace", { maxSeconds: MAX_STOP_GRACE_SECONDS }))
    .option("--json", "print {session_id, name, status: \"stopped\", reason, processes_ended, checkpoint, warnings?, signalled?} (signalled: the pid of a supervisor whose socket was gone, sent SIGTERM: it stopped the session itself, and processes_ended and checkpoint are left out)")
    .addHelpText("after", examples("apex stop", "apex stop --grace 30s", "apex stop --force"))
    .action(async (options: { force?: boolean; grace?: number; json?: boolean }, command: Command) => {
      const { stopSession } = await import("./session/control.js");
      await stopSession(projectOf(command), options);
    });

  program
    .command("logs")
    .description("show the agents' output (stdout lines 'agent |', stderr lines 'agent !')")
    .argument("[agent]", "only this agent")
    .option("-f, --follow", "keep printing new lines: until the session ends (it says so on stderr, exit 0) when it runs, else until Ctrl-C (with --remote, a server that stops or a connection lost is exit 1, APEX_E_RPC); like tail -F, a log rotated (renamed and made anew) or emptied is read to its end, then from the new file's start")
    .option("-n, --lines <n>", "lines per log file (default 50; 10 with --follow)", wholeNumber("--lines"))
    .option("--session <id>", "a past session (default: the current or latest one)")
    .option("--json", "one JSON object per line: {agent, stream: stdout|stderr, line}, and line_base64 (the exact bytes) for a line that is not valid UTF-8")
    .option("--raw", "print the agents' own escape sequences (their colours) as they are, instead of showing control characters visibly; only for logs of this host you trust")
    .addHelpText("after", examples("apex logs", "apex logs coder -f", "apex logs coder --raw", "apex logs -n 200 --session 3f2a9c1e --json"))
    .action(async (agent: string | undefined, options: { follow?: boolean; lines?: number; session?: string; json?: boolean; raw?: boolean }, command: Command) => {
      const { showLogs } = await import("./session/logs.js");
      await showLogs(projectOf(command), agent, options);
    });
}

/** `apex start`: a new session, a continued one (auto recovery first), or --force-recovery. */
async function start(options: { task?: string; continue?: string; forceRecovery?: string; attach?: boolean; json?: boolean; gitCheckout?: boolean }, command: Command): Promise<void> {
  const location = projectOf(command);
  // Through --remote, start only continues the remote session (startSession sends it, or refuses): nothing here reads
  // or starts this machine's project. --force-recovery recovered the local project's session, and an interrupted local
  // session was announced as continued by auto_recovery, then sent to the server as the session to continue.
  if (process.env.APEX_REMOTE) return (await import("./session/start.js")).startSession(location, options);
  if (options.gitCheckout && options.continue === undefined) {
    const { ApexError } = await import("../core/errors.js");
    throw new ApexError("APEX_E_USAGE", "--git-checkout checks out the commit of the checkpoint a session continues from; give --continue.");
  }
  if (options.forceRecovery !== undefined) {
    if (options.task !== undefined || options.continue !== undefined) {
      const { ApexError } = await import("../core/errors.js");
      throw new ApexError("APEX_E_USAGE", "--force-recovery names the checkpoint to continue from; leave out --task and --continue.");
    }
    const { forceRecoveryStart } = await (await import("../plugins/index.js")).builtinServices.checkpointRecovery();
    await forceRecoveryStart(location, options.forceRecovery, options);
    return;
  }
  const { startSession } = await import("./session/start.js");
  if (options.continue === undefined) {
    // session.auto_recovery: an interrupted session is continued from the live store first.
    const { findAutoRecoverable, autoRecoveryNotice } = await import("./session/auto-recovery.js");
    const recoverable = await findAutoRecoverable(location);
    if (recoverable) {
      autoRecoveryNotice(recoverable, Boolean(options.json));
      await startSession(location, { continue: recoverable.sessionId, json: Boolean(options.json), attach: Boolean(options.attach) && options.task === undefined });
      if (options.task !== undefined) {
        const { ApexError } = await import("../core/errors.js");
        throw new ApexError("APEX_E_SESSION_ACTIVE", `No new session was started: the recovered session ${recoverable.label} runs now (a project runs one session at a time).`, {
          hint: 'Add the work to it (`apex task add "…"`), or end it (`apex stop`) and start again.',
        });
      }
      return;
    }
  }
  await startSession(location, options);
}
