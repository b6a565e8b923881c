/**
 * Pending tasks no agent will claim: assigned (`--assign`) to an agent of a running session that
 * has ended and will not be restarted (it exited, or failed past its restart policy). A claim takes
 * an agent's own assigned tasks or unassigned ones, so such a task stays pending for good unless it
 * is given to another agent: `apex status` and `apex task list` name it with the command that does
 * (`apex task reopen ID --assign AGENT`, or without --assign to any agent). Once the session is
 * continued every agent runs again, so only a running session's tasks are named.
 */
import type { SessionClient } from "../../core/session/client.js";
import type { TaskRecord } from "../../core/session/records.js";
import type { StatusReport } from "../../core/session/status-report.js";
import { paint, printLine, visibleText } from "../output.js";

export interface StrandedTask {
  id: string;
  title: string;
  assignee: string;
  /** How its agent ended, as status shows it: `exited (code 0)`, `failed (SIGKILL)`. */
  agent_status: string;
}

/** Agent statuses that no restart follows (a restart due is `restarting`). */
const ENDED_FOR_GOOD = new Set(["exited", "failed"]);

/** The pending tasks of `tasks` assigned to an agent that ended for good, when `report` is of a running session. */
export function strandedTasks(tasks: TaskRecord[], report: Pick<StatusReport, "session" | "agents">): StrandedTask[] {
  if (report.session?.status !== "active" && report.session?.status !== "paused") return [];
  const ended = new Map(report.agents.filter((agent) => ENDED_FOR_GOOD.has(agent.status) && !agent.alive).map((agent) => [agent.name, agent]));
  if (ended.size === 0) return [];
  return tasks
    .filter((task) => task.status === "pending" && task.assignee !== null && ended.has(task.assignee))
    .map((task) => ({ id: task.id, title: task.title, assignee: task.assignee!, agent_status: endedText(ended.get(task.assignee!)!) }));
}

/** `exited (code 0)`, `failed (SIGKILL)`: as status shows it, uncoloured (it goes into --json too). */
function endedText(agent: StatusReport["agents"][number]): string {
  const exit = agent.last_exit;
  return exit ? `${agent.status} (${exit.signal ?? `code ${exit.code ?? "?"}`})` : agent.status;
}

/**
 * For a read of tasks: those of `tasks` stranded, reading the session's report (one call more) only
 * when some pending task is assigned at all.
 */
export async function strandedAmong(client: SessionClient, tasks: TaskRecord[], params: Record<string, unknown>): Promise<StrandedTask[]> {
  if (!tasks.some((task) => task.status === "pending" && task.assignee !== null)) return [];
  return strandedTasks(tasks, (await client.call("session.status", { readable: true, ...params })) as StatusReport);
}

/** For `apex status`: the pending tasks, read only when some agent ended for good. */
export async function pendingTasks(client: SessionClient, report: Pick<StatusReport, "agents" | "tasks">, params: Record<string, unknown> = {}): Promise<TaskRecord[]> {
  if (!(report.tasks.pending > 0) || !report.agents.some((agent) => ENDED_FOR_GOOD.has(agent.status))) return [];
  try {
    return (await client.call("task.list", { ...params, status: "pending" })) as TaskRecord[];
  } catch {
    return []; // a server that does not let this user list the tasks: the report is shown without them
  }
}

export function printStranded(stranded: StrandedTask[]): void {
  if (stranded.length === 0) return;
  printLine();
  printLine(paint(`Pending, assigned to an agent that has ended and will not be restarted (no agent will claim ${stranded.length === 1 ? "it" : "them"}):`, "yellow"));
  for (const task of stranded) printLine(`  ${task.id}  ${task.assignee}, ${visibleText(task.agent_status)}: ${visibleText(task.title)}`);
  const id = stranded.length === 1 ? stranded[0]!.id : "ID";
  printLine(paint(`Give ${stranded.length === 1 ? "it" : "one"} to another agent with \`apex task reopen ${id} --assign AGENT\`, or to any with \`apex task reopen ${id}\`.`, "gray"));
}
