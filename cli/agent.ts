import type { Command } from "commander";
import { projectOf } from "./context.js";
import { examples } from "./output.js";

/** `apex agent …`: what agents say about themselves, and what the supervisor knows of them. */
export function registerAgentCommands(program: Command): void {
  const agent = program
    .command("agent")
    .description("agents of the session: report, list")
    .addHelpText("after", examples("apex agent list", 'apex agent report --status working --task t-0003 --context \'{"step": 2}\''));

  agent
    .command("report")
    .description("an agent tells the session its status, current task and context (restored on --continue)")
    .option("--agent <name>", "which agent (default: APEX_AGENT)")
    .option("-s, --status <status>", "free text: working, idle, reviewing, …")
    .option("-t, --task <id>", "the task it works on, one of the session's (e.g. t-0003); '-' clears it")
    .option("--context <json>", "JSON the agent wants back after a restore (APEX_RESUME_CONTEXT)")
    .option("--json", "print the agent record {name, status, pid, pgid, command, started_at, start_time, reported_status, task, last_report_at, restarts, restart_at, last_exit: {at, code, signal} | null, nonce, spawn_nonce} (start_time: the process's start in clock ticks since boot; nonce, spawn_nonce: APEX's proof that the process is the one it started)")
    .addHelpText("after", examples("apex agent report --status reviewing --task t-0002", `apex agent report --agent coder --context '{"plan": ["tests"]}' --json`))
    .action(async (options: { agent?: string; status?: string; task?: string; context?: string; json?: boolean }, command: Command) => {
      const { reportAgent } = await import("./session/tasks.js");
      await reportAgent(projectOf(command), options);
    });

  agent
    .command("list")
    .description("the session's agents with their process state and what they reported (with no session running: the one that ended last)")
    .option("--session <id>", "another session's agents (an id, a unique prefix, a branch's name, or `last`)")
    .option("--json", "print [{name, status, pid, pgid, last_pid, restart_at, alive, process_state, processes, stopping, stopped, task, reported_status, restarts, uptime_seconds, cpu_seconds, last_exit: {code, signal, at} | null}]")
    .addHelpText("after", examples("apex agent list", "apex agent list --session 3f2a --json"))
    .action(async (options: { session?: string; json?: boolean }, command: Command) => {
      const { listAgents } = await import("./session/tasks.js");
      await listAgents(projectOf(command), Boolean(options.json), options.session);
    });
}
