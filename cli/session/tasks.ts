/**
 * `apex task …`, `apex milestone`, `apex agent …`: thin wrappers over the session methods,
 * reached through {@link openSessionClient} (socket inside agents and while a supervisor
 * runs, the store otherwise).
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { known, paint, printJson, printLine, table, visibleText } from "../output.js";
import type { JsonValue } from "../../core/store/store.js";
import { currentActor } from "../../core/actor.js";
import { openSessionClient, type SessionClient } from "../../core/session/client.js";
import { TASK_STATUSES, type AgentRecord, type MilestoneRecord, type TaskRecord, type TaskStatus } from "../../core/session/records.js";
import type { StatusReport } from "../../core/session/status-report.js";
import { agentStatusText, formatDuration, paintStatus } from "./format.js";
import { refuseInexactNumbers } from "../json-numbers.js";
import { refuseRepeatedKeys } from "../memory-actions.js";
import { printStranded, strandedAmong } from "./stranded.js";
import { hookedCall, type HookedWait } from "./hooked-call.js";
import { openWriteClient } from "../stopping-retry.js";
import { shortSessionId } from "../../core/session/names.js";

/** A claim runs the beforeTask hooks before it assigns the task, after any claim queued before it. */
const CLAIM_WAIT = (agent: string): HookedWait => ({
  doing: `claiming a task for ${agent}`,
  work: "its plugins' beforeTask hooks run before the task is assigned: a checkpoint may take a while",
  underWay: `The claim may still be made once the supervisor goes on: \`apex task list --status active\` shows whether ${agent} holds a task.`,
});

async function withClient<T>(location: ProjectLocation, access: "read" | "write", fn: (client: SessionClient) => Promise<T>, session?: string): Promise<T> {
  // A write refused by a supervisor that is stopping is made again once it has exited (stopping-retry.ts).
  const client = access === "write" ? await openWriteClient(location, session === undefined ? {} : { session }) : await openSessionClient(location, access, session);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

function taskLine(task: TaskRecord): string {
  // Each on this line, as the title: a task from another host may have a line break anywhere.
  return `${visibleText(known(task.id))} ${paintStatus(typeof task.status === "string" ? visibleText(task.status) : task.status)}${task.assignee ? ` (${visibleText(String(task.assignee))})` : ""}: ${visibleText(known(task.title))}${task.milestone ? paint(" [milestone]", "magenta") : ""}`;
}

export async function addTask(location: ProjectLocation, title: string, options: { milestone?: boolean; assign?: string; json?: boolean }): Promise<void> {
  const { task, stopping } = await withClient(location, "write", async (client) => {
    const task = (await client.call("task.add", { title, milestone: Boolean(options.milestone), assign: options.assign ?? null, actor: currentActor() })) as TaskRecord;
    return { task, stopping: await stoppingSession(client) };
  });
  if (options.json) printJson(task);
  else printLine(`added ${taskLine(task)}`);
  // Added to a session being stopped: no agent will claim it before `start --continue` (it said only "added").
  if (stopping) process.stderr.write(`warning: session ${stopping} is stopping: no agent will claim ${task.id} in it now; the task stays pending for \`apex start --continue\`.\n`);
}

/** The name (or short id) of the session the supervisor is stopping; undefined when it is not, or cannot say in 5 s (it may have stopped). */
async function stoppingSession(client: SessionClient): Promise<string | undefined> {
  if (client.via !== "socket") return undefined;
  const report = (await client.call("session.status", {}, 5_000).catch(() => undefined)) as StatusReport | undefined;
  const session = report?.session;
  if (session?.status !== "stopping") return undefined;
  return typeof session.name === "string" && session.name ? session.name : shortSessionId(session.session_id);
}

/** `{session}` when --session names one: reads of an ended session go to the store, or through the supervisor inside an agent. */
function sessionParam(session: string | undefined): Record<string, unknown> {
  return session === undefined ? {} : { session };
}

export async function listTasks(location: ProjectLocation, options: { status?: string; session?: string; json?: boolean }): Promise<void> {
  // In any case, as names are elsewhere (`--status PENDING` was refused as unknown).
  if (options.status !== undefined) options = { ...options, status: options.status.toLowerCase() };
  if (options.status !== undefined && !TASK_STATUSES.includes(options.status as TaskStatus)) {
    throw new ApexError("APEX_E_USAGE", `Unknown task status ${JSON.stringify(options.status)}.`, { hint: `One of: ${TASK_STATUSES.join(", ")}.` });
  }
  const params = { ...(options.status ? { status: options.status } : {}), ...sessionParam(options.session) };
  const { tasks, stranded } = await withClient(
    location,
    "read",
    async (client) => {
      const tasks = (await client.call("task.list", params)) as TaskRecord[];
      // A pending task only an agent that ended for good may claim is named below the table (--json lists the tasks alone).
      return { tasks, stranded: options.json ? [] : await strandedAmong(client, tasks, sessionParam(options.session)).catch(() => []) };
    },
    options.session,
  );
  if (options.json) {
    printJson(tasks);
    return;
  }
  if (tasks.length === 0) {
    printLine(options.status ? `No ${options.status} tasks.` : 'No tasks yet. Add one with `apex task add "…"`.');
    return;
  }
  const ended = new Set(stranded.map((task) => task.id));
  const rows = tasks.map((task) => [task.id, paintStatus(task.status), task.assignee ? `${task.assignee}${ended.has(task.id) ? paint(" (ended)", "yellow") : ""}` : "-", typeof task.title === "string" ? `${visibleText(task.title)}${task.milestone ? " [milestone]" : ""}` : undefined]);
  printLine(table(["ID", "STATUS", "ASSIGNEE", "TITLE"], rows));
  printStranded(stranded);
}

export async function showTask(location: ProjectLocation, id: string, json: boolean, session?: string): Promise<void> {
  const task = (await withClient(location, "read", (client) => client.call("task.get", { id, ...sessionParam(session) }), session)) as TaskRecord;
  if (json) printJson(task);
  else {
    printLine(taskLine(task));
    for (const key of ["created_at", "created_by", "claimed_at", "completed_at", "reason", "reopened"] as const) {
      if (task[key] !== null && task[key] !== undefined && task[key] !== 0) printLine(`  ${key.padEnd(13)} ${visibleText(String(task[key]))}`);
    }
    if (task.result !== null && task.result !== undefined) printLine(`  ${"result".padEnd(13)} ${JSON.stringify(task.result)}`);
  }
}

export async function claimTask(location: ProjectLocation, options: { agent?: string; json?: boolean }): Promise<void> {
  const agent = options.agent ?? process.env.APEX_AGENT;
  if (!agent) {
    throw new ApexError("APEX_E_USAGE", "Say which agent claims the task: --agent NAME (agents have APEX_AGENT set).", {
      hint: "apex task claim --agent NAME, NAME one of the session's agents (`apex status` lists them).",
    });
  }
  const task = (await withClient(location, "write", async (client) => {
    try {
      return await hookedCall(client, "task.claim", { agent, actor: currentActor() }, CLAIM_WAIT(agent), Boolean(options.json));
    } catch (error) {
      // "No pending task" while some are, assigned to other agents: said, and how to give one to this agent (not inside an agent, which polls).
      if (!isApexError(error) || error.code !== "APEX_E_NO_TASK" || process.env.APEX_AGENT) throw error;
      throw await othersPending(client, agent, error);
    }
  })) as TaskRecord;
  if (options.json) printJson(task);
  else printLine(`claimed ${taskLine(task)}`);
}

/** APEX_E_NO_TASK naming the pending tasks assigned to other agents, those whose agent ended for good first. */
async function othersPending(client: SessionClient, agent: string, error: ApexError): Promise<ApexError> {
  let pending: TaskRecord[];
  let stranded: Set<string>;
  try {
    pending = ((await client.call("task.list", { status: "pending" })) as TaskRecord[]).filter((task) => task.assignee !== null && task.assignee !== agent);
    stranded = new Set((await strandedAmong(client, pending, {})).map((task) => task.id));
  } catch {
    return error; // the claim's answer stands
  }
  if (pending.length === 0) return error;
  const first = pending.find((task) => stranded.has(task.id)) ?? pending[0]!;
  const shown = pending.slice(0, 5).map((task) => `${task.id} (${task.assignee}${stranded.has(task.id) ? ", which has ended and will not be restarted" : ""})`);
  const more = pending.length > 5 ? ` and ${pending.length - 5} more` : "";
  return new ApexError("APEX_E_NO_TASK", `${error.message.replace(/\.$/, "")}: ${pending.length === 1 ? "the pending task is assigned to another agent" : "the pending tasks are assigned to other agents"}: ${shown.join(", ")}${more}.`, {
    hint: `\`apex task reopen ${first.id} --assign ${agent}\` gives ${first.id} to ${agent}; \`apex task list --status pending\` lists them.`,
    details: { agent, assigned_to_others: pending.map((task) => ({ id: task.id, assignee: task.assignee, agent_ended: stranded.has(task.id) })) },
  });
}

export async function completeTask(location: ProjectLocation, id: string, options: { result?: string; json?: boolean }): Promise<void> {
  const result = options.result === undefined ? null : parseLooseJson(options.result);
  const done = { doing: `completing task ${id}`, work: "a milestone task's afterMilestone hooks run then: a checkpoint may take a while", underWay: `Task ${id} is most likely recorded completed already (the hooks run after): \`apex task show ${id}\` says.` };
  const task = (await withClient(location, "write", (client) => hookedCall(client, "task.done", { id, result, actor: currentActor() }, done, Boolean(options.json)))) as TaskRecord;
  if (options.json) printJson(task);
  else printLine(`completed ${taskLine(task)}`);
  printWarnings(task, options.json);
}

export async function failTask(location: ProjectLocation, id: string, options: { reason: string; json?: boolean }): Promise<void> {
  const failing = { doing: `failing task ${id}`, work: "its plugins' onError hooks run then, which may take a while", underWay: `Task ${id} is most likely recorded failed already (the hooks run after): \`apex task show ${id}\` says.` };
  const task = (await withClient(location, "write", (client) => hookedCall(client, "task.fail", { id, reason: options.reason, actor: currentActor() }, failing, Boolean(options.json)))) as TaskRecord;
  if (options.json) printJson(task);
  else printLine(`failed ${taskLine(task)}: ${visibleText(options.reason)}`);
}

export async function reopenTask(location: ProjectLocation, id: string, options: { reason?: string; assign?: string; json?: boolean }): Promise<void> {
  const task = (await withClient(location, "write", (client) =>
    client.call("task.reopen", { id, reason: options.reason ?? null, assign: options.assign ?? null, actor: currentActor() }),
  )) as TaskRecord;
  if (options.json) printJson(task);
  else printLine(`reopened ${taskLine(task)}`);
}

export async function milestone(location: ProjectLocation, text: string | undefined, options: { task?: string; session?: string; json?: boolean }): Promise<void> {
  if (text === undefined) {
    // With --task, that task's milestones (the option was read by nothing: every milestone was listed).
    let task = options.task === undefined ? undefined : (await import("../../core/session/service.js")).checkTaskId(options.task);
    const all = (await withClient(location, "read", async (client) => {
      // The task's id as the session has it (`t-2` in a branch session: its own t-0002.<name>); one it does not have lists none.
      if (options.task !== undefined) task = ((await client.call("task.get", { id: options.task, ...sessionParam(options.session) }).catch(() => undefined)) as TaskRecord | undefined)?.id ?? task;
      return client.call("milestone.list", sessionParam(options.session));
    }, options.session)) as MilestoneRecord[];
    const list = task === undefined ? all : all.filter((item) => item.task === task);
    if (options.json) printJson(list);
    else if (list.length === 0) printLine(task === undefined ? 'No milestones yet. Record one with `apex milestone "…"`.' : `No milestones of ${task}.`);
    else for (const item of list) printLine(`${visibleText(String(item.n ?? "?")).padStart(3)}  ${visibleText(known(item.at))}  ${visibleText(known(item.text))}${item.task ? ` (${visibleText(String(item.task))})` : ""}  ${paint(visibleText(known(item.by)), "gray")}`);
    return;
  }
  const recording = { doing: "recording a milestone", work: "its plugins' afterMilestone hooks run then: a checkpoint may take a while", underWay: "The milestone is most likely recorded already (the hooks run after): `apex milestone` lists them." };
  const recorded = (await withClient(location, "write", (client) =>
    hookedCall(client, "milestone.add", { text, task: options.task ?? null, actor: currentActor() }, recording, Boolean(options.json)),
  )) as MilestoneRecord;
  if (options.json) printJson(recorded);
  else printLine(`milestone ${recorded.n}: ${visibleText(recorded.text)}`);
  printWarnings(recorded, options.json);
}

/** A plugin that failed in afterMilestone once the milestone was recorded: `warning:` lines (in --json, the reply's `warnings`). */
function printWarnings(reply: object, json: boolean | undefined): void {
  const { warnings } = reply as { warnings?: unknown };
  if (!json && Array.isArray(warnings)) for (const warning of warnings) process.stderr.write(`warning: ${String(warning)}\n`);
}

export async function reportAgent(location: ProjectLocation, options: { agent?: string; status?: string; task?: string; context?: string; json?: boolean }): Promise<void> {
  const agent = options.agent ?? process.env.APEX_AGENT;
  if (!agent) throw new ApexError("APEX_E_USAGE", "Say which agent reports: --agent NAME (agents have APEX_AGENT set).");
  if (options.status === undefined && options.task === undefined && options.context === undefined) {
    throw new ApexError("APEX_E_USAGE", "Nothing to report: give --status, --task or --context.");
  }
  let context: JsonValue | undefined;
  // A leading byte order mark is dropped, as `memory set` drops it (it was "Unexpected token '\ufeff'", the character invisible).
  const contextText = options.context?.replace(/^\uFEFF/, "");
  if (contextText !== undefined) {
    try {
      context = JSON.parse(contextText) as JsonValue;
    } catch (error) {
      throw new ApexError("APEX_E_BAD_JSON", `--context is not valid JSON: ${(error as Error).message}`, { hint: `apex agent report --context '{"step": 3}'` });
    }
    refuseRepeatedKeys(contextText, context, "--context");
    refuseInexactNumbers(contextText, "--context");
  }
  const params: Record<string, unknown> = { agent };
  if (options.status !== undefined) params.status = options.status;
  if (options.task !== undefined) params.task = options.task === "-" ? null : options.task;
  if (context !== undefined) params.context = context;
  const record = (await withClient(location, "write", (client) => client.call("agent.report", params))) as AgentRecord;
  if (options.json) printJson(record);
  else printLine(`${record.name}: ${visibleText(record.reported_status ?? "-")}${record.task ? ` (${record.task})` : ""}`);
}

export async function listAgents(location: ProjectLocation, json: boolean, session?: string): Promise<void> {
  // `readable`: with no session current, the one that ended last (older supervisors ignore it).
  const report = (await withClient(location, "read", (client) => client.call("session.status", { readable: true, ...sessionParam(session) }), session)) as StatusReport;
  // No store yet, so no session: said as with a store and no session (it printed an empty table, `[]`).
  if (!report.session) throw (await import("../../core/session/sessions.js")).noSessionError();
  if (json) {
    printJson(report.agents);
    return;
  }
  const rows = report.agents.map((agent) => [
    agent.name,
    agentStatusText(agent, Date.now(), report.session?.status),
    agent.pid,
    agent.reported_status ?? "-",
    agent.task ?? "-",
    formatDuration(agent.uptime_seconds),
    agent.restarts,
  ]);
  printLine(table(["AGENT", "STATUS", "PID", "REPORTED", "TASK", "UPTIME", "RESTARTS"], rows));
}

/** `--result` is JSON when it parses (each key once), else the text itself. */
function parseLooseJson(given: string): JsonValue {
  // A leading byte order mark (`--result "$(cat result.json)"` of a file an editor saved with one) is not part of the JSON:
  // with it, the JSON was kept as text.
  const text = given.replace(/^\uFEFF/, "");
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch {
    return given;
  }
  refuseRepeatedKeys(text, value, "--result");
  refuseInexactNumbers(text, "--result");
  return value;
}
