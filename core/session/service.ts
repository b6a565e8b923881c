import { withLease } from "./lease.js";
import { ApexError } from "../errors.js";
import type { ErrorContext, MilestoneContext, SessionContext } from "../engine.js";
import type { JsonValue, Store, WriteBatch } from "../store/store.js";
import type { SessionEngine } from "./hooks.js";
import {
  AGENT_NAME,
  CONTEXT_SUFFIX,
  agentContextPath,
  agentPath,
  agentsPrefix,
  countersPath,
  eventPath,
  eventsPrefix,
  historyPath,
  milestonePath,
  nowIso,
  sessionPath,
  taskId,
  taskNumber,
  taskCountsPath,
  taskPath,
  tasksPrefix,
  type AgentRecord,
  type Counters,
  type TaskCounts,
  type MilestoneRecord,
  type SessionEvent,
  type SessionRecord,
  type TaskRecord,
  type TaskStatus,
  limitedText,
  MAX_REASON_CHARS,
} from "./records.js";

/** Reads a session's records; works on a read-only store. */
export class SessionReader {
  constructor(
    readonly store: Store,
    readonly sessionId: string,
  ) {}

  /** The session record, wherever it is (current or history), with its lease (lease.ts withLease). */
  session(): SessionRecord {
    const record = withLease(this.store, (this.store.get(sessionPath(this.sessionId)) ?? this.store.get(historyPath(this.sessionId))) as SessionRecord | undefined);
    if (!record) throw new ApexError("APEX_E_NO_SESSION", `The session ${this.sessionId} does not exist.`);
    return record;
  }

  agents(): AgentRecord[] {
    const out: AgentRecord[] = [];
    for (const { path, value } of this.store.query(`${agentsPrefix(this.sessionId)}/*`)) if (!path.endsWith(CONTEXT_SUFFIX)) out.push(value as AgentRecord);
    return out;
  }

  agent(name: string): AgentRecord | undefined {
    return this.store.get(agentPath(this.sessionId, name)) as AgentRecord | undefined;
  }

  tasks(status?: TaskStatus): TaskRecord[] {
    const out: TaskRecord[] = [];
    for (const { value } of this.store.query(`${tasksPrefix(this.sessionId)}/*`)) {
      const task = value as TaskRecord;
      if (task !== null && (status === undefined || task.status === status)) out.push(task); // null: no task (as `task show` reads it)
    }
    return out.sort((a, b) => taskNumber(a.id) - taskNumber(b.id) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  task(id: string): TaskRecord {
    const task = this.store.get(taskPath(this.sessionId, (id = this.taskIdOf(id)))) as TaskRecord | undefined;
    if (!task) throw taskNotFound(id, this.sessionId);
    return task;
  }

  // A task id written the canonical way; in a branch session `t-5` is its own t-0005.<name> when it has no t-0005 (`apex task list` shows that id).
  taskIdOf(ref: string): string {
    const id = checkTaskId(ref), tag = id.includes(".") ? null : branchTag((this.store.get(sessionPath(this.sessionId)) ?? this.store.get(historyPath(this.sessionId))) as SessionRecord | undefined);
    return tag && !this.store.get(taskPath(this.sessionId, id)) && this.store.get(taskPath(this.sessionId, `${id}.${tag}`)) ? `${id}.${tag}` : id;
  }

  milestones(): MilestoneRecord[] {
    // By number: keys are 4 digits wide, so past 9999 their order is not the milestones' (10000 came before 9999).
    return Array.from(this.store.query(`/sessions/${this.sessionId}/milestones/*`), (entry) => entry.value as MilestoneRecord).filter((item) => item !== null).sort((a, b) => a.n - b.n); // null: no milestone
  }
}

export interface TaskAddRequest {
  title: string;
  milestone?: boolean;
  assign?: string | undefined;
}

/**
 * The operations on one session's records, with the hooks they fire. The supervisor runs
 * them (it is the store's one writer); CLI commands run them directly only when no supervisor
 * does. Every change and its audit event are written in one transaction.
 */
export class SessionService extends SessionReader {
  /** Called with every event after it is committed (the supervisor streams them to `--attach`). */
  onEvent: ((event: SessionEvent) => void) | undefined;
  /** Called when an agent does something (reports, task changes, memory writes): resets the idle timeout. */
  onAgentActivity: ((agent: string) => void) | undefined;
  /** Set by the supervisor: how `agent` ended when it has and will not be restarted (a task it claimed would stay active for good), else undefined. */
  ended: ((agent: string) => string | undefined) | undefined;
  /** Set by the supervisor: the agent's record as stored, or a new one under its name when what is stored is no object (written by hand). */
  agentRecord: ((stored: JsonValue | undefined, agent: string) => AgentRecord) | undefined;
  private claimQueue: Promise<unknown> = Promise.resolve();

  constructor(
    store: Store,
    sessionId: string,
    readonly engine: Pick<SessionEngine, "fire">,
  ) {
    super(store, sessionId);
  }

  context(): SessionContext { return { sessionId: this.sessionId, session: this.session() }; }

  /** Commits `fn` and the events it records; returns fn's value. */
  async write<T>(fn: (batch: WriteBatch, record: EventRecorder) => T, actor: string): Promise<T> {
    const events: SessionEvent[] = [];
    const { value } = await this.store.batch((batch) => {
      events.length = 0;
      const record: EventRecorder = (type, data = {}, by = actor) => {
        const event = appendEvent(batch, this.sessionId, type, by, data);
        events.push(event);
        return event;
      };
      return fn(batch, record);
    }, actor);
    for (const event of events) this.onEvent?.(event);
    return value;
  }

  noteActivity(actor: string): void { if (actor.startsWith("agent:")) this.onAgentActivity?.(actor.slice("agent:".length)); }

  async addTask(request: TaskAddRequest, actor: string): Promise<TaskRecord> {
    const title = limitedText(request.title.trim(), "A task's title", "title");
    if (title === "") throw new ApexError("APEX_E_BAD_INPUT", "A task needs a title.", { hint: 'apex task add "Write the login form"' });
    if (request.assign !== undefined) this.requireAgent(request.assign, "assigned to");
    const task = await this.write((batch, record) => {
      const counters = readCounters(batch, this.sessionId);
      const tag = branchTag(batch.get(sessionPath(this.sessionId)) as SessionRecord | undefined);
      // Past an id already taken (counters set lower by hand, or rewound): a new task never replaces one.
      do counters.tasks += 1; while (batch.get(taskPath(this.sessionId, taskId(counters.tasks, tag))) !== undefined);
      batch.set(countersPath(this.sessionId), counters);
      const created: TaskRecord = {
        id: taskId(counters.tasks, tag),
        title,
        status: "pending",
        assignee: request.assign ?? null,
        milestone: Boolean(request.milestone),
        created_at: nowIso(),
        created_by: actor,
        claimed_at: null,
        completed_at: null,
        result: null,
        reason: null,
        reopened: 0,
      };
      batch.set(taskPath(this.sessionId, created.id), created);
      moveTaskCount(batch, this.sessionId, undefined, "pending");
      record("task.added", { task: created.id, title, assignee: created.assignee, milestone: created.milestone });
      return created;
    }, actor);
    this.noteActivity(actor);
    return task;
  }

  /**
   * Assigns the next pending task to `agent`: its own assigned tasks first, then unassigned
   * ones, lowest id first. beforeTask fires before the assignment (a tap that throws vetoes
   * it); the assignment itself re-checks the task inside the write transaction, so two
   * claimants never get the same task, even from two processes.
   */
  claimTask(agent: string, actor = `agent:${agent}`): Promise<TaskRecord> {
    this.requireAgent(agent, "claimed for");
    // One claim at a time in this process: beforeTask fires once per assignment.
    const run = this.claimQueue.then(() => this.claimNext(agent, actor));
    this.claimQueue = run.catch(() => undefined);
    return run;
  }

  private async claimNext(agent: string, actor: string): Promise<TaskRecord> {
    for (let attempt = 0; attempt < 1000; attempt++) {
      const candidate = this.nextClaimable(agent);
      if (!candidate) {
        throw new ApexError("APEX_E_NO_TASK", `No pending task for ${agent}.`, { hint: 'Add one with `apex task add "…"`, or check `apex task list --status pending`.' });
      }
      await this.engine.fire("beforeTask", { ...this.context(), task: { ...candidate, assignee: candidate.assignee ?? undefined }, agent });
      const claimed = await this.write((batch, record) => {
        // Asked again as the claim is written: the agent may have ended for good while beforeTask ran (its own
        // claim under way as it exited), and the task, claimed after its exit released what it held, stayed active for good.
        this.requireAgent(agent, "claimed for");
        const current = batch.get(taskPath(this.sessionId, candidate.id)) as TaskRecord | undefined;
        if (!current || current.status !== "pending" || (current.assignee !== null && current.assignee !== agent)) return undefined;
        const task: TaskRecord = { ...current, status: "active", assignee: agent, claimed_at: nowIso() };
        batch.set(taskPath(this.sessionId, task.id), task);
        moveTaskCount(batch, this.sessionId, current.status, task.status);
        const agentRecord = batch.get(agentPath(this.sessionId, agent)) as AgentRecord | undefined;
        if (agentRecord) batch.set(agentPath(this.sessionId, agent), { ...agentRecord, task: task.id });
        // Another agent that reported it as its task while no one held it (`agent report --task`) has it no more: status showed both on it.
        for (const other of this.agents()) if (other.name !== agent && other.task === task.id) clearAgentTask(batch, this.sessionId, other.name, task.id);
        record("task.claimed", { task: task.id, title: task.title, agent });
        return task;
      }, actor);
      if (claimed) {
        this.noteActivity(actor);
        return claimed;
      }
    }
    throw new ApexError("APEX_E_CONFLICT", "Could not claim a task: every candidate was taken by someone else first.", { hint: "Try again." });
  }

  private nextClaimable(agent: string): TaskRecord | undefined {
    let unassigned: TaskRecord | undefined;
    for (const task of this.tasks("pending")) {
      if (task.assignee === agent) return task;
      if (task.assignee === null && unassigned === undefined) unassigned = task;
    }
    return unassigned;
  }

  async completeTask(id: string, result: JsonValue, actor: string): Promise<TaskRecord> {
    id = this.taskIdOf(id);
    const { task, milestone } = await this.write((batch, record) => {
      const current = checkFinishable(this.taskInBatch(batch, id), actor);
      const done: TaskRecord = { ...current, status: "completed", completed_at: nowIso(), result, completed_by: actor };
      batch.set(taskPath(this.sessionId, id), done);
      moveTaskCount(batch, this.sessionId, current.status, done.status);
      clearAgentTask(batch, this.sessionId, done.assignee, id);
      record("task.completed", { task: id, title: done.title, agent: done.assignee });
      const milestone = done.milestone ? this.recordMilestone(batch, record, done.title, actor, id) : undefined;
      return { task: done, milestone };
    }, actor);
    this.noteActivity(actor);
    return { ...task, ...(milestone ? await this.afterMilestone({ ...this.context(), milestone: milestone.text, taskId: id, agent: agentOf(actor) }) : {}) };
  }

  /** A plugin failing in afterMilestone is a warning: the milestone is recorded (the command's error made a retry record it twice, or refused the task done as done). */
  private afterMilestone(context: MilestoneContext): Promise<{ warnings?: string[] }> {
    return this.engine.fire("afterMilestone", context).then(() => ({}), (error: Error) => ({ warnings: [error.message] }));
  }

  async failTask(id: string, reason: string, actor: string): Promise<TaskRecord> {
    limitedText(reason, "A task's reason", "reason", MAX_REASON_CHARS);
    id = this.taskIdOf(id);
    const task = await this.write((batch, record) => {
      const current = checkFinishable(this.taskInBatch(batch, id), actor);
      const failed: TaskRecord = { ...current, status: "failed", completed_at: nowIso(), reason, failed_by: actor };
      batch.set(taskPath(this.sessionId, id), failed);
      moveTaskCount(batch, this.sessionId, current.status, failed.status);
      clearAgentTask(batch, this.sessionId, failed.assignee, id);
      record("task.failed", { task: id, title: failed.title, agent: failed.assignee, reason });
      return failed;
    }, actor);
    this.noteActivity(actor);
    const error = new ApexError("APEX_E_TASK_FAILED", `Task ${id} (${task.title}) failed: ${reason}`, { details: { task: id, reason } });
    await this.fireError({ sessionId: this.sessionId, error, origin: actor, details: { task: id, reason } });
    return task;
  }

  /** Sends a task back to pending (the adversary rejecting work, or a retry after a failure). */
  async reopenTask(id: string, reason: string | undefined, assign: string | undefined, actor: string): Promise<TaskRecord> {
    limitedText(reason, "A task's reason", "reason", MAX_REASON_CHARS);
    id = this.taskIdOf(id);
    if (assign !== undefined) this.requireAgent(assign, "assigned to");
    const task = await this.write((batch, record) => {
      const current = this.taskInBatch(batch, id);
      // A pending task is given to another agent (--assign), or to any: the one it was assigned may have ended for good.
      if (current.status === "pending" && (assign ?? null) === current.assignee) throw new ApexError("APEX_E_TASK_STATE", `Task ${id} is already pending${current.assignee ? `, assigned to ${current.assignee}` : ""}.`, { hint: current.assignee ? `\`apex task reopen ${id}\` leaves it to any agent; --assign AGENT gives it to another.` : undefined });
      const reopened: TaskRecord = {
        ...current,
        status: "pending",
        assignee: assign ?? null,
        claimed_at: null,
        completed_at: null,
        reason: reason ?? null,
        reopened: (current.reopened ?? 0) + (current.status === "pending" ? 0 : 1),
      };
      batch.set(taskPath(this.sessionId, id), reopened);
      moveTaskCount(batch, this.sessionId, current.status, reopened.status);
      clearAgentTask(batch, this.sessionId, current.assignee, id);
      record("task.reopened", { task: id, title: current.title, from: current.status, reason: reason ?? null, by: actor, assignee: reopened.assignee });
      return reopened;
    }, actor);
    this.noteActivity(actor);
    return task;
  }

  async addMilestone(text: string, actor: string, taskRef?: string): Promise<MilestoneRecord> {
    const trimmed = limitedText(text.trim(), "A milestone's text", "text");
    if (trimmed === "") throw new ApexError("APEX_E_BAD_INPUT", "A milestone needs a text.", { hint: 'apex milestone "Login works end to end"' });
    if (taskRef !== undefined) taskRef = this.task(taskRef).id;
    const milestone = await this.write((batch, record) => this.recordMilestone(batch, record, trimmed, actor, taskRef ?? null), actor);
    this.noteActivity(actor);
    return { ...milestone, ...(await this.afterMilestone({ ...this.context(), milestone: trimmed, taskId: taskRef, agent: agentOf(actor) })) };
  }

  private recordMilestone(batch: WriteBatch, record: EventRecorder, text: string, actor: string, task: string | null): MilestoneRecord {
    const counters = readCounters(batch, this.sessionId);
    do counters.milestones += 1; while (batch.get(milestonePath(this.sessionId, counters.milestones)) !== undefined); // (never over one recorded)
    batch.set(countersPath(this.sessionId), counters);
    const milestone: MilestoneRecord = { n: counters.milestones, text, at: nowIso(), by: actor, task };
    batch.set(milestonePath(this.sessionId, milestone.n), milestone);
    record("milestone", { n: milestone.n, text, task });
    return milestone;
  }

  /** `apex agent report`: what the agent says it is doing, and the context it wants back after a restore. */
  async reportAgent(
    name: string,
    report: { status?: string | undefined; task?: string | null | undefined; context?: JsonValue | undefined },
  ): Promise<AgentRecord> {
    this.requireAgent(name);
    limitedText(report.status, "An agent's reported status", "status");
    const actor = `agent:${name}`;
    const agent = await this.write((batch, record) => {
      const stored = batch.get(agentPath(this.sessionId, name));
      // A record written by hand as a string was spread into {"0": "g", "1": "a", …}: a new one under the agent's name (storedAgentRecord).
      const current = this.agentRecord ? this.agentRecord(stored, name) : (stored as unknown as AgentRecord);
      const next: AgentRecord = { ...current, last_report_at: nowIso() };
      if (report.status !== undefined) next.reported_status = report.status;
      // A task id names one of the session's tasks (written the canonical way); an unknown one is refused, and nothing is written.
      // Nor one another agent holds or is assigned (status and `apex status` would show two agents on it): its completed work may be reviewed.
      if (report.task !== undefined) next.task = report.task === null ? null : notOthers(this.taskInBatch(batch, this.taskIdOf(report.task)), name, "report it as its task").id;
      batch.set(agentPath(this.sessionId, name), next);
      if (report.context !== undefined) batch.set(agentContextPath(this.sessionId, name), report.context);
      if (next.reported_status !== current.reported_status || next.task !== current.task) {
        record("agent.report", { agent: name, status: next.reported_status, task: next.task });
      }
      return next;
    }, actor);
    this.noteActivity(actor);
    return agent;
  }

  /** Fires onError; a failing onError tap never hides the error being reported (the engine warns). */
  async fireError(context: ErrorContext): Promise<void> {
    try {
      await this.engine.fire("onError", context);
    } catch {
      // The engine already reported it; an error report must not fail the operation.
    }
  }

  /** `toHold`: a task is to be claimed for or assigned to the agent, refused once it ended for good (nothing would do or hand back the task). */
  requireAgent(name: string, toHold?: string): void {
    if (!AGENT_NAME.test(name) || !this.store.get(agentPath(this.sessionId, name))) {
      const known = this.agents().map((agent) => agent.name);
      throw new ApexError("APEX_E_AGENT_NOT_FOUND", `The session has no agent named ${JSON.stringify(name)}.`, { hint: known.length ? `Its agents: ${known.join(", ")}.` : "The session has no agents." });
    }
    const ended = toHold === undefined ? undefined : this.ended?.(name);
    if (ended) throw new ApexError("APEX_E_SESSION_STATE", `Agent ${name} ${ended} and will not be restarted: a task ${toHold} it would stay ${toHold === "claimed for" ? "active" : "pending"} with no one to do it.`, { hint: "Choose an agent that runs (`apex agent list`); `apex stop`, then `apex start --continue`, runs every agent again." });
  }

  private taskInBatch(batch: WriteBatch, id: string): TaskRecord {
    const task = batch.get(taskPath(this.sessionId, id)) as TaskRecord | undefined;
    if (!task) throw taskNotFound(id, this.sessionId);
    return task;
  }
}

function taskNotFound(id: string, sessionId: string): ApexError {
  return new ApexError("APEX_E_TASK_NOT_FOUND", `No task ${id} in session ${sessionId}.`, { hint: "List the tasks with `apex task list`." });
}

/**
 * The session's events with a sequence number above `seq`, oldest first (a range read from there on). A record without
 * a sequence number (null, a string or `{}` written by hand with --force) is no event, passed over: an event stream's
 * replay failed on one that is no object, and one without its number made a stream read from the store send the whole
 * history again at every poll (it could not go on past it).
 */
export function* eventsAfter(store: Store, sessionId: string, seq: number): Iterable<SessionEvent> {
  for (const { value } of store.entries({ start: eventPath(sessionId, seq + 1), end: `${eventsPrefix(sessionId)}0` })) if (typeof (value as { seq?: unknown } | null)?.seq === "number") yield value as unknown as SessionEvent;
}

/** Records an event in the write's batch; `by` names who asked for it when that is not the writer (a stop requested by a user). */
export type EventRecorder = (type: string, data?: Record<string, JsonValue>, by?: string) => SessionEvent;

/** Appends one audit event to the session inside `batch`. */
export function appendEvent(batch: WriteBatch, sessionId: string, type: string, actor: string, data: Record<string, JsonValue> = {}): SessionEvent {
  const counters = readCounters(batch, sessionId);
  do counters.events += 1; while (batch.get(eventPath(sessionId, counters.events)) !== undefined); // (never over an event of the audit trail)
  batch.set(countersPath(sessionId), counters);
  const event: SessionEvent = { ...data, seq: counters.events, at: nowIso(), type, actor };
  batch.set(eventPath(sessionId, event.seq), event);
  return event;
}

/** Keeps /sessions/<sid>/task-counts in step with a task's status change (from undefined: a new task). */
export function moveTaskCount(batch: WriteBatch, sessionId: string, from: TaskStatus | undefined, to: TaskStatus): void {
  const stored = batch.get(taskCountsPath(sessionId)) as TaskCounts | undefined;
  const counts: TaskCounts = stored ? { ...stored } : { pending: 0, active: 0, completed: 0, failed: 0, total: 0 };
  if (from !== undefined) counts[from] = Math.max(0, (counts[from] ?? 0) - 1);
  else counts.total += 1;
  counts[to] = (counts[to] ?? 0) + 1;
  batch.set(taskCountsPath(sessionId), counts);
}

/**
 * Rebuilds /sessions/<sid>/task-counts from the tasks themselves. Code that writes tasks
 * other than through SessionService (a checkpoint restore) calls it in the same batch.
 */
export function recountTasks(batch: WriteBatch, store: Store, sessionId: string): TaskCounts {
  const counts: TaskCounts = { pending: 0, active: 0, completed: 0, failed: 0, total: 0 };
  let highest = 0;
  for (const key of store.keysBelow(tasksPrefix(sessionId))) {
    const task = batch.get(key) as TaskRecord | undefined;
    if (!task || !(task.status in counts)) continue;
    counts[task.status] += 1;
    counts.total += 1;
    const n = taskNumber(key.slice(key.lastIndexOf("/") + 1));
    if (Number.isFinite(n) && n > highest) highest = n;
  }
  batch.set(taskCountsPath(sessionId), counts);
  // Tasks a restore brought (a branch's first run, a merge) keep their ids: new ones are numbered after them.
  const counters = readCounters(batch, sessionId);
  if (highest > counters.tasks) batch.set(countersPath(sessionId), { ...counters, tasks: highest });
  return counts;
}

export function readCounters(batch: Pick<WriteBatch, "get">, sessionId: string): Counters {
  const stored = batch.get(countersPath(sessionId)) as Partial<Counters> | undefined;
  return { tasks: stored?.tasks ?? 0, milestones: stored?.milestones ?? 0, events: stored?.events ?? 0 };
}

function clearAgentTask(batch: WriteBatch, sessionId: string, agent: string | null, id: string): void {
  if (!agent) return;
  const record = batch.get(agentPath(sessionId, agent)) as AgentRecord | undefined;
  if (record && record.task === id) batch.set(agentPath(sessionId, agent), { ...record, task: null });
}

/**
 * A task is completed or failed once, and by an agent only when it is not another agent's (claimed
 * by it, or assigned to it); a user may finish any open task. Checked inside the write, so a claim
 * that wins a race decides.
 */
function checkFinishable(task: TaskRecord, actor: string): TaskRecord {
  if (task.status === "completed" || task.status === "failed") throw new ApexError("APEX_E_TASK_STATE", `Task ${task.id} is already ${task.status}.`, { hint: `Send it back with \`apex task reopen ${task.id}\` first.` });
  return notOthers(task, agentOf(actor), "complete or fail it");
}

/** An open task `agent` may act on: not another agent's (claimed by it, or assigned to it). A user (no agent) may. */
function notOthers(task: TaskRecord, agent: string | undefined, action: string): TaskRecord {
  if (agent === undefined || (task.status !== "pending" && task.status !== "active") || task.assignee === null || task.assignee === agent) return task;
  throw new ApexError("APEX_E_TASK_HELD", `Task ${task.id} is ${task.status === "active" ? "held by" : "assigned to"} agent ${task.assignee}: agent ${agent} cannot ${action}.`, {
    hint: `${action.startsWith("complete") ? `Only ${task.assignee} (or a user, outside the agents) finishes it` : `It is ${task.assignee}'s`}; to take it over, \`apex task reopen ${task.id} --assign ${agent}\` and claim it.`,
    details: { task: task.id, assignee: task.assignee, status: task.status },
  });
}

function agentOf(actor: string): string | undefined { return actor.startsWith("agent:") ? actor.slice("agent:".length) : undefined; }

/** Checks a task id and writes it the canonical way ("t-1" and "1" name t-0001; "t-5.exp" a branch's t-0005.exp). */
export function checkTaskId(id: string): string {
  const match = /^(?:t-)?(\d+)(?:\.([A-Za-z][A-Za-z0-9._-]*))?$/.exec(id.trim());
  // Past 2^53 a number is not itself: t-99999999999999999999 would be looked up (and named) as t-100000000000000000000.
  if (!match || !(Number(match[1]) >= 1 && Number(match[1]) <= Number.MAX_SAFE_INTEGER)) {
    throw new ApexError("APEX_E_BAD_INPUT", `${JSON.stringify(id)} is not a task id.`, { hint: "Task ids look like t-0001; see `apex task list`." });
  }
  return taskId(Number(match[1]), match[2]);
}

/** A branch session's tasks carry its name (records.ts: taskId); a session branched from nothing numbers plainly. */
function branchTag(record: SessionRecord | undefined): string | null {
  const branched = record && (record as { parent_checkpoint?: unknown }).parent_checkpoint;
  return branched && typeof record.name === "string" ? record.name : null;
}
