/**
 * The actions behind `apex checkpoint create|show|diff|pin|unpin|delete` and
 * `apex session validate|repair|reconstruct` (`apex checkpoint list` lives in plugin-list.ts,
 * which must stay light).
 *
 * Where they run:
 *  - reads (show, diff): on the store opened read-only; inside an agent, by the supervisor;
 *  - writes (create, pin, unpin, delete, reconstruct): by the live supervisor when one runs (it
 *    is the store's one writer), else in this process on the store opened for writing;
 *    `create` then loads the project's plugins, so that beforeCheckpoint (git state, …) and
 *    afterCheckpoint (retention, …) run as they would in the supervisor;
 *  - validate: always in a child process (a damaged record can make the decoder read far);
 *  - repair: refused while a supervisor runs, except --dry-run. It rewrites objects, catalog
 *    records and manifests of the whole store, which the running supervisor caches and writes.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { currentActor } from "../../core/actor.js";
import type { ProjectLocation } from "../../core/config/locate.js";
import { paint, plural, printJson, printLine, visibleText } from "../../cli/output.js";
import { clippedText } from "../../cli/terminal-text.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { callSupervisor } from "../../core/rpc/call.js";
import { unknownMethod } from "../../core/rpc/protocol.js";
import { hookedCall, type HookedWait } from "../../cli/session/hooked-call.js";
import { checkpointServiceFor } from "../../core/session/checkpoints.js";
import { liveSessionClient, openSessionClient, type SessionClient } from "../../core/session/client.js";
import { checkSessionName } from "./session-name.js";
import { liveSupervisors } from "../../core/session/runtime.js";
import { activeSessions, supervisorAlive } from "../../core/session/sessions.js";
import { holderText, onOtherHost, supervisorHost } from "../../core/session/lease.js";
import { lmdbDataDir, type Store, type JsonValue } from "../../core/store/store.js";
import { openStore, resolveStoreSpec, storeExists } from "../../core/store/open.js";
import type { CheckpointSummary } from "./catalog.js";
import {
  deleteCheckpoint,
  recordDeletion,
  diffCheckpoints,
  pinCheckpoint,
  type CheckpointDiff,
} from "./checkpoints.js";
import { reconstructSession, type ReconstructReport } from "./recover.js";
import { repairStore, sessionLabeller, type RepairAction, type RepairResult, type StoreProblem, type ValidationReport } from "./validate.js";
import { validateOutOfProcess } from "./validate-process.js";
import { summaryOf } from "./catalog.js";
import { resolveSessionRef, sessionFor } from "./plugin-sessions.js";
import { sessionFlag } from "../../core/session/binding.js";
import { shortSessionId } from "../../core/session/names.js";
import type { Handover } from "../../cli/session/handover.js";
import { checkpointRecord, type KeysPage } from "./record.js";
import { refuseNeeded } from "./dependents.js";

// ------------------------------------------------------------------------------------ routing

export function noStore(): ApexError {
  return new ApexError("APEX_E_NO_SESSION", "No session in this project yet.", { hint: 'Start one with `apex start --task "…"`.' });
}

/**
 * The store's writer, if a supervisor runs (inside an agent, or for a remote session: always
 * that one): `sessionId`'s own when it runs, else the one of the session this command is bound
 * to, else any live one (each supervisor's checkpoint service writes any session's checkpoints).
 */
export async function writerClient(location: ProjectLocation, sessionId?: string): Promise<SessionClient | undefined> {
  if (process.env.APEX_REMOTE || process.env.APEX_SOCKET) return liveSessionClient(location);
  if (sessionId !== undefined) {
    const own = await liveSessionClient(location, { session: sessionId });
    if (own) return own;
  }
  try {
    const bound = await liveSessionClient(location);
    if (bound) return bound;
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_AMBIGUOUS_SESSION") throw error;
  }
  // `--session` named one that does not run, or the working tree the command runs in (a branch's
  // worktree, or the project's own tree with its session interrupted or ended) binds it to a session
  // that does not run: another session's supervisor is not its writer (it reads `latest`, `current`
  // and a bare checkpoint name as its own session's, and a checkpoint would be that session's); the
  // command goes to the store, which acts on the bound session or names the problem.
  // (A merge into a session that does not run, too: its `current` is the one this command is bound to.)
  if (sessionFlag() !== undefined || (await boundByTree(location))) return undefined;
  for (const any of liveSupervisors(location.storeDir)) {
    const client = await liveSessionClient(location, { session: any.session_id });
    if (client) return client; // one on another store than this command names is not its writer
  }
  return undefined;
}

/**
 * True when the store decides which session the command is for: the working tree it runs in binds
 * it (binding.ts, rule 3: a branch's worktree, or the project's tree and its current session), or
 * several sessions are active and nothing binds it.
 */
async function boundByTree(location: ProjectLocation): Promise<boolean> {
  if (!(await storeExists(location))) return false;
  const { sessionBinding } = await import("../../core/session/sessions.js");
  return withReadStore(location, (store) => {
    try {
      const source = sessionBinding(store)?.source;
      return source === "worktree" || source === "project";
    } catch (error) {
      // Several sessions active and none bound here: no supervisor is this command's; the store
      // acts on a session the command names, and refuses to guess one it does not.
      return isApexError(error) && error.code === "APEX_E_AMBIGUOUS_SESSION";
    }
  });
}

/** What the supervisor is at while a write of a checkpoint is waited on, and what one given up on (or Ctrl-C) may leave. */
const WRITER_WAITS: Record<string, HookedWait> = {
  "checkpoint.create": {
    doing: "creating a checkpoint",
    work: "its plugins' beforeCheckpoint and afterCheckpoint hooks run then, and a large memory takes a while to store",
    underWay: "The checkpoint may still be written once the supervisor goes on: `apex checkpoint list` shows whether it is.",
  },
  "checkpoint.delete": {
    doing: "deleting a checkpoint",
    work: "a checkpoint of a large memory takes a while to delete",
    underWay: "The checkpoint may still be deleted once the supervisor goes on: `apex checkpoint list` shows whether it is.",
  },
  "session.branch": {
    doing: "branching a session",
    work: "it records the new session from the checkpoint",
    underWay: "The branch may still be recorded once the supervisor goes on: `apex session list` shows whether it is.",
  },
  "session.merge": {
    doing: "merging a session",
    work: "it writes the merge checkpoint: its plugins' beforeCheckpoint and afterCheckpoint hooks run then, and a large memory takes a while to store",
    underWay: "The merge may still be made once the supervisor goes on: `apex checkpoint list` shows whether its merge checkpoint is there.",
  },
};

/** `json`: no notes on stderr while it waits, and a Ctrl-C said in JSON (session branch and merge: their --json, as main reads it for errors). */
export async function callWriter(writer: SessionClient, method: string, params: Record<string, unknown>, json = process.argv.includes("--json")): Promise<unknown> {
  try {
    // With a heartbeat: a checkpoint of a large memory (or slow hooks) is waited for as long as the
    // supervisor works on it; Ctrl-C says that only the wait ended (it was a silent exit 130).
    return await hookedCall(writer, method, params, WRITER_WAITS[method] ?? { doing: `waiting on ${method}`, work: "it works on it", underWay: "It may still be done once the supervisor goes on." }, json);
  } catch (error) {
    // Not served by the session's supervisor (nor, through --remote, by the supervisor behind `apex serve`).
    if (unknownMethod(error) === method) {
      throw new ApexError("APEX_E_USAGE", `The running session has no checkpoint plugin, so it cannot ${method.replace(".", " ")}.`, {
        hint: "Enable `checkpoint` under `plugins:` in apex.config.yaml; it applies once the session is continued (`apex stop`, then `apex start --continue last`).",
      });
    }
    // Refused by a supervisor as it stopped, nothing done: once it has exited, the command makes the write again (againAfterStop).
    const { StopWaitedOut, waitOutStop } = await import("../../cli/stopping-retry.js");
    const session = await waitOutStop(writer, error, json);
    if (session) throw new StopWaitedOut(session, error as ApexError);
    throw error;
  }
}

/**
 * Runs `command`, and once more when a supervisor refused its write as it stopped (callWriter:
 * nothing of it was done) and has exited since: the command then goes where it goes (the store, or
 * a supervisor a `start --continue` started meanwhile).
 */
export async function againAfterStop<T>(command: () => Promise<T>, json: boolean): Promise<T> {
  const { StopWaitedOut } = await import("../../cli/stopping-retry.js");
  try {
    return await command();
  } catch (error) {
    if (!(error instanceof StopWaitedOut)) throw error;
    try {
      const result = await command();
      if (!json) process.stderr.write(`note: session ${error.session} was stopping; the command was made once it had stopped.\n`);
      return result;
    } catch (again) {
      if (!json) process.stderr.write(`note: session ${error.session} was stopping; once it had stopped, the command was made again:\n`);
      // (stopping again, a second supervisor: its refusal stands)
      throw again instanceof StopWaitedOut ? again.refusal : again;
    }
  }
}

export async function withReadStore<T>(location: ProjectLocation, fn: (store: Store) => T | Promise<T>): Promise<T> {
  if (!(await storeExists(location))) throw noStore();
  const store = await openStore(location, { readOnly: true });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * A read where the session is: `method` on the supervisor inside an agent or on a remote
 * session's server, else `here` on the store opened read-only in this process.
 */
export async function readAtSession<T>(location: ProjectLocation, method: string, params: Record<string, unknown>, here: (store: Store) => T | Promise<T>): Promise<T> {
  const client = await openSessionClient(location, "read", { noStore });
  try {
    return await client.run(method, params, here, 30_000);
  } finally {
    await client.close();
  }
}

async function withWriteStore<T>(location: ProjectLocation, fn: (store: Store) => T | Promise<T>): Promise<T> {
  if (!(await storeExists(location))) throw noStore();
  // Nothing is written while apex.config.yaml is invalid (as for every other write).
  const { loadConfig } = await import("../../core/config/load.js");
  await loadConfig(location);
  const store = await openStore(location);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

// ------------------------------------------------------------------------------------ create

export async function createCheckpointCommand(location: ProjectLocation, description: string | undefined, options: { pin?: boolean; json?: boolean }): Promise<void> {
  // The actor: the audit trail names who checkpointed (the supervisor records it as given).
  // On one line, as the checkpoint keeps it: a supervisor killed mid-call is asked for a checkpoint of this very description
  // (one with a line break was reported "not saved" when it was).
  const params = { description: (description ?? "").replace(/\s+/g, " ").trim(), pin: options.pin === true, actor: currentActor() };
  const writer = await writerClient(location);
  let summary: CreatedCheckpoint;
  if (writer) {
    const asked = new Date().toISOString();
    try {
      summary = (await callWriter(writer, "checkpoint.create", params, Boolean(options.json))) as CreatedCheckpoint;
    } catch (error) {
      summary = await createdBeforeTheEnd(location, writer, params.description, asked, error);
    }
  } else {
    if (!(await storeExists(location))) throw noStore();
    const { loadConfig } = await import("../../core/config/load.js");
    const { createSessionEngine } = await import("../../core/session/hooks.js");
    const config = await loadConfig(location);
    const store = await openStore(location);
    try {
      // The engine binds beforeCheckpoint and afterCheckpoint for checkpoints of this store.
      await createSessionEngine(config, store, (message) => process.stderr.write(`warning: ${message}\n`));
      const method = checkpointServiceFor(store)?.methods?.["checkpoint.create"];
      if (!method) {
        throw new ApexError("APEX_E_USAGE", "The checkpoint plugin is disabled in apex.config.yaml, so no checkpoint is created.", {
          hint: "Enable `checkpoint` under `plugins:` in apex.config.yaml.",
        });
      }
      summary = (await method(params)) as CreatedCheckpoint;
    } finally {
      await store.close();
    }
  }
  if (options.json) return printJson(summary);
  // By its name, else the uuid's short form (a supervisor older than session_name leaves it out).
  printLine(`Created ${paint(summary.name, "bold")} (${summary.id}) of session ${summary.session_name ?? shortSessionId(summary.session_id)}${summary.pinned ? ", pinned" : ""}.`);
  const contexts = summary.agent_contexts > 0 ? ` (${summary.agent_contexts === summary.agents.length ? "each" : summary.agent_contexts} with its context)` : "";
  printLine(`  ${plural(summary.memory_keys, "memory key")}, ${plural(summary.task_count, "task")}, ${plural(summary.agents.length, "agent")}${contexts}${summary.agents.length > 0 ? `: ${summary.agents.join(", ")}` : ""}`);
  // A plugin failing in afterCheckpoint, the checkpoint written (without a supervisor, the engine's warn printed it already).
  if (writer) for (const warning of summary.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
}

/**
 * The supervisor ended (kill -9, OOM) before it answered `checkpoint.create`: the checkpoint may
 * have been committed all the same. The store says which: a manual checkpoint of its session with
 * this description, taken since the call was made, is reported as created (with a warning that the
 * session is interrupted); otherwise the error says that none was saved. Any other error is rethrown.
 * How the connection broke is told by details.connection (set where the socket's close or error
 * became the ApexError), never by the message, which an error relayed from elsewhere may share.
 */
async function createdBeforeTheEnd(location: ProjectLocation, writer: SessionClient, description: string, asked: string, error: unknown): Promise<CreatedCheckpoint> {
  const sessionId = writer.supervisor?.session_id;
  if (!isApexError(error) || error.code !== "APEX_E_RPC" || !["closed", "ECONNRESET", "EPIPE"].includes(String(error.details?.connection)) || writer.via !== "socket" || !sessionId) throw error;
  const { pid, start_time: startTime } = writer.supervisor!;
  // A supervisor still alive could yet commit it: only one that ended settles the question.
  const { isSameProcessAlive } = await import("../../core/session/proc.js");
  for (let wait = 0; isSameProcessAlive(pid, startTime); wait++) {
    if (wait === 20) throw error;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let status = "interrupted";
  const found = await withReadStore(location, async (store) => {
    const { Catalog } = await import("./catalog.js");
    const { agentsOf } = await import("./record.js");
    const { effectiveStatus, findSession } = await import("../../core/session/sessions.js");
    const record = findSession(store, sessionId);
    if (record) status = effectiveStatus(record);
    const latest = Catalog.of(store).latest(sessionId);
    if (!latest || latest.trigger !== "manual" || latest.description !== description || latest.created_at < asked) return undefined;
    const { sessionName } = await import("./merge-base.js");
    return { ...latest, session_name: sessionName(store, sessionId), ...agentsOf(store, latest.agents_root) };
  });
  // A supervisor that ended the session itself (an `apex stop` that came meanwhile) left it stopped, not interrupted: said as the store has it.
  const next = status === "interrupted" ? "`apex status` shows the session interrupted; `apex start --continue last` goes on from the live state" : `the session is ${status} now (\`apex session history\` shows how it ended); \`apex start --continue last\` continues it`;
  if (!found) {
    throw new ApexError("APEX_E_RPC", `The supervisor (pid ${pid}) ended before it answered checkpoint.create, and no checkpoint was saved.`, {
      hint: `${next}; \`apex checkpoint create\` then saves one.`,
      details: { session_id: sessionId, supervisor_pid: pid },
    });
  }
  process.stderr.write(`warning: the supervisor (pid ${pid}) ended right after saving ${found.name}; ${next}.\n`);
  return found as CreatedCheckpoint;
}

/** What `checkpoint.create` answers: the summary, with the agents it holds by name. */
type CreatedCheckpoint = CheckpointSummary & { session_name?: string | null; agents: string[]; agent_contexts: number; warnings?: string[] };

// ------------------------------------------------------------------------------------ show, diff

export interface ReadOptions {
  session?: string;
  json?: boolean;
}

export async function showCheckpointCommand(location: ProjectLocation, ref: string, options: ReadOptions & KeysPage): Promise<void> {
  const page: KeysPage = {
    ...(options.keysLimit !== undefined ? { keysLimit: options.keysLimit } : {}),
    ...(options.keysOffset !== undefined ? { keysOffset: options.keysOffset } : {}),
  };
  const record = await readAtSession(location, "checkpoint.show", { ref, session: options.session, ...page }, (store) =>
    checkpointRecord(store, ref, { sessionId: sessionFor(store, options.session), ...page }),
  );
  if (options.json) return printJson(record);
  const m = record.manifest;
  printLine(`${paint(visibleText(m.name), "bold")}  ${visibleText(m.id)}`);
  // One line each, whatever the value holds (a description, a LangGraph step's ids and metadata: a line break started a line of its own).
  const row = (label: string, value: string) => printLine(`  ${label.padEnd(12)} ${visibleText(value)}`);
  // The session as session list prints it, by name or short id (a supervisor older than session_name leaves it out); --json has the whole id.
  row("session", record.session_name || shortSessionId(m.session_id));
  row("created", m.created_at);
  row("trigger", m.trigger);
  row("description", m.description || "-");
  row("pinned", m.pinned ? "yes" : "no");
  row("parent", m.parent ?? "-");
  if (m.merge_parent) row("merged from", m.merge_parent);
  row("revision", String(m.revision));
  row("memory", `${plural(m.memory.keys, "key")}${m.memory.root ? ` (root ${m.memory.root.slice(0, 12)})` : ""}; paths ${m.memory.scope.include.join(", ")}`);
  const git = m.git_state as { branch?: unknown; commit?: unknown; dirty?: unknown } | null;
  if (git && typeof git === "object") {
    row("git", `${typeof git.branch === "string" ? git.branch : "(detached)"} @ ${typeof git.commit === "string" ? git.commit.slice(0, 12) : "-"}${git.dirty === true ? " (dirty)" : ""}`);
  }
  const langgraph = describeLangGraph(m.data.langgraph);
  // (a LangGraph step's data has rows of its own)
  const dataKeys = Object.keys(m.data).filter((key) => !(langgraph && key === "langgraph"));
  if (dataKeys.length > 0) row("data", dataKeys.join(", "));
  if (langgraph) langgraph.forEach((line, i) => row(i === 0 ? "langgraph" : "", line));
  const tasks = Object.entries(record.tasks);
  printLine(`  tasks (${tasks.length})`);
  for (const [id, task] of tasks) printLine(`    ${visibleText(id).padEnd(8)} ${visibleText(describeTask(task))}`);
  const agents = Object.entries(record.agent_states);
  printLine(`  agents (${agents.length})`);
  for (const [name, agent] of agents) printLine(`    ${visibleText(name).padEnd(12)} ${visibleText(describeAgent(agent))}${agent.context !== undefined ? ", context saved" : ""}`);
  if (record.memory_keys.length === 0 && (options.keysOffset ?? 0) > 0 && record.memory_keys_count > 0) {
    // Past the last page: say so, as `checkpoint list` does past its last checkpoint (it printed nothing).
    printLine(`  memory keys (${record.memory_keys_count}): none past offset ${options.keysOffset}`);
  } else if (record.memory_keys.length > 0) {
    printLine(`  memory keys (${record.memory_keys_count})`);
    for (const key of record.memory_keys) printLine(`    ${visibleText(key)}`);
    if (record.memory_keys_next_offset !== null) {
      printLine(paint(`    … ${record.memory_keys_count - record.memory_keys_next_offset} more (--keys-offset ${record.memory_keys_next_offset})`, "gray"));
    }
  }
}

/**
 * A checkpoint as every other command's --json names it ({id, name, session_id, sequence}); the
 * camelCase `sessionId` these two printed alone stays, for scripts written against it.
 */
function snakeCased<T extends { sessionId: string; sequence?: number; id: string; name: string }>(side: T): T & { session_id: string } {
  const { id, name, sessionId, sequence, ...rest } = side;
  return { id, name, session_id: sessionId, ...(sequence !== undefined ? { sequence } : {}), sessionId, ...rest } as T & { session_id: string };
}

/**
 * A value naming its session as every other command's --json does, `session_id` (the camelCase
 * `sessionId` it had alone stays, for scripts written against it).
 */
function withSessionId<T extends { sessionId: string }>(value: T): T & { session_id: string } {
  return { session_id: value.sessionId, ...value };
}

/**
 * A validation report for --json (validate, and repair's before and after) in the keys every other
 * command's --json uses: each damaged checkpoint's session_id, a problem's checkpoint_id, the
 * object counts' unreferenced_values, unreferenced_trees, pack_bytes, garbage_bytes. The
 * camelCase keys it had alone stay beside them, for scripts written against them.
 */
function validationJson(report: ValidationReport) {
  // session_names is for text (the messages keep the whole ids, which --json has always had).
  const { objects, session_names: _names, ...rest } = report;
  return {
    ...rest,
    problems: report.problems.map((problem) => (problem.checkpointId === undefined ? problem : { ...problem, checkpoint_id: problem.checkpointId })),
    checkpoints: { ...report.checkpoints, damaged: report.checkpoints.damaged.map(withSessionId) },
    objects: {
      ...objects,
      unreferenced_values: objects.unreferencedValues,
      unreferenced_trees: objects.unreferencedTrees,
      pack_bytes: objects.packBytes,
      garbage_bytes: objects.garbageBytes,
    },
  };
}

function field(record: JsonValue | undefined, name: string): JsonValue | undefined {
  return record && typeof record === "object" && !Array.isArray(record) ? record[name] : undefined;
}

/**
 * A LangGraph step's rows (ApexSaver's checkpoints, data.langgraph): the ids a LangGraph user
 * passes back (thread, namespace, checkpoint id: `graph.getState({configurable: …})`) and what
 * the step was, which the description gives only in part (a thread id with "/" reads as a namespace).
 */
function describeLangGraph(data: JsonValue | undefined): string[] | undefined {
  if (!data || typeof data !== "object" || Array.isArray(data) || typeof data.thread_id !== "string") return undefined;
  const meta = data.metadata && typeof data.metadata === "object" && !Array.isArray(data.metadata) ? data.metadata : {};
  const lines = [
    `thread ${JSON.stringify(data.thread_id)}${typeof data.checkpoint_ns === "string" && data.checkpoint_ns !== "" ? `, namespace ${JSON.stringify(data.checkpoint_ns)}` : ""}`,
    `checkpoint ${String(data.checkpoint_id)}${typeof data.parent_id === "string" ? ` (parent ${data.parent_id})` : ""}`,
  ];
  const writes = meta.writes && typeof meta.writes === "object" && !Array.isArray(meta.writes) ? Object.keys(meta.writes) : [];
  const step = [typeof meta.step === "number" ? `step ${meta.step}` : undefined, typeof meta.source === "string" ? `source ${meta.source}` : undefined, writes.length > 0 ? `writes of ${writes.join(", ")}` : undefined];
  if (step.some(Boolean)) lines.push(step.filter(Boolean).join(", "));
  if (typeof data.memory === "string") lines.push(`channels in ${data.memory}`);
  return lines;
}

function describeTask(task: JsonValue): string {
  const status = String(field(task, "status") ?? "?");
  const assignee = field(task, "assignee");
  return `${status.padEnd(9)} ${typeof assignee === "string" ? `(${assignee}) ` : ""}${String(field(task, "title") ?? "")}`;
}

function describeAgent(agent: JsonValue): string {
  const status = String(field(agent, "status") ?? "?");
  const task = field(agent, "current_task");
  return `${status}${typeof task === "string" ? `, task ${task}` : ""}`;
}

const DIFF_LINES = 100;

export async function diffCheckpointsCommand(location: ProjectLocation, a: string, b: string, options: ReadOptions): Promise<void> {
  const diff = await readAtSession(location, "checkpoint.diff", { from: a, to: b, session: options.session }, (store) =>
    diffCheckpoints(store, a, b, { sessionId: sessionFor(store, options.session) }),
  );
  if (options.json) return printJson({ ...diff, from: snakeCased(diff.from), to: snakeCased(diff.to) });
  // Each path, id and value on its line: a task's title may hold a line break, and anything a server sent may.
  const printText = (text: string) => printLine(visibleText(text));
  // Each side's session as the other commands print it, by name or short id (a supervisor older than session_name leaves it out).
  const name = (side: CheckpointDiff["from"]) => `${side.session_name ?? shortSessionId(side.sessionId)}/${side.name} (${side.id.slice(0, 8)})`;
  printText(`From ${name(diff.from)} to ${name(diff.to)}`);
  const { memory, tasks, agents } = diff;
  printText(`Memory: ${memory.added.length} added, ${memory.removed.length} removed, ${memory.changed.length} changed`);
  const lines: string[] = [
    ...memory.added.map((path) => `  + ${path}`),
    ...memory.removed.map((path) => `  - ${path}`),
    ...memory.changed.map((path) => `  ~ ${path}`),
  ];
  for (const line of lines.slice(0, DIFF_LINES)) printText(line);
  if (lines.length > DIFF_LINES) printLine(paint(`  … ${lines.length - DIFF_LINES} more (--json lists every path)`, "gray"));
  printText(`Tasks: ${tasks.added.length} added, ${tasks.removed.length} removed, ${tasks.changed.length} changed`);
  for (const id of tasks.added) printText(`  + ${id}`);
  for (const id of tasks.removed) printText(`  - ${id}`);
  for (const change of tasks.changed) printText(`  ~ ${change.id}: ${changedFields(change.before, change.after, ["status", "assignee", "title", "result", "reason"])}`);
  const agentChanges = {
    added: agents.added.filter((id) => !id.endsWith(".context")),
    removed: agents.removed.filter((id) => !id.endsWith(".context")),
  };
  const contexts = new Set([...agents.added, ...agents.removed, ...agents.changed.map((change) => change.id)].filter((id) => id.endsWith(".context")));
  const changedAgents = agents.changed.filter((change) => !change.id.endsWith(".context"));
  const contextOnly = [...contexts].map((id) => id.slice(0, -".context".length)).filter((agent) => !changedAgents.some((change) => change.id === agent));
  printText(`Agents: ${agentChanges.added.length} added, ${agentChanges.removed.length} removed, ${changedAgents.length + contextOnly.length} changed`);
  for (const id of agentChanges.added) printText(`  + ${id}`);
  for (const id of agentChanges.removed) printText(`  - ${id}`);
  for (const change of changedAgents) {
    const context = contexts.has(`${change.id}.context`) ? "; context changed" : "";
    printText(`  ~ ${change.id}: ${changedFields(change.before, change.after, ["status", "task", "reported_status", "restarts"])}${context}`);
  }
  for (const agent of contextOnly) printText(`  ~ ${agent}: context changed`);
}

/** "status pending → active, assignee - → coder"; when only unlisted fields differ, their names ("pid, pgid, start_time changed"). */
function changedFields(before: JsonValue, after: JsonValue, names: string[]): string {
  const show = (value: JsonValue | undefined) => (value === undefined || value === null ? "-" : typeof value === "string" ? value : JSON.stringify(value));
  const parts: string[] = [];
  for (const name of names) {
    const from = field(before, name);
    const to = field(after, name);
    if (JSON.stringify(from) !== JSON.stringify(to)) parts.push(`${name} ${clipText(show(from))} → ${clipText(show(to))}`);
  }
  if (parts.length > 0) return parts.join(", ");
  const keys = [...new Set([...Object.keys(isObject(before) ? before : {}), ...Object.keys(isObject(after) ? after : {})])].sort();
  const differ = keys.filter((key) => JSON.stringify(field(before, key)) !== JSON.stringify(field(after, key)));
  if (differ.length === 0) return "other fields";
  return `${differ.slice(0, 6).join(", ")}${differ.length > 6 ? ` and ${differ.length - 6} more` : ""} changed`;
}

function isObject(value: JsonValue): value is { [key: string]: JsonValue } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function clipText(text: string): string {
  return clippedText(text, 40);
}

// ------------------------------------------------------------------------------------ pin, delete

export async function pinCheckpointCommand(location: ProjectLocation, ref: string, pinned: boolean, options: ReadOptions): Promise<void> {
  const writer = await writerClient(location);
  const summary = writer
    ? ((await callWriter(writer, "checkpoint.pin", { ref, pinned, session: options.session })) as CheckpointSummary & { session_name?: string | null; was_pinned?: boolean })
    : await withWriteStore(location, async (store) => {
        let wasPinned = false;
        const manifest = await pinCheckpoint(store, ref, pinned, { sessionId: sessionFor(store, options.session), before: (was) => void (wasPinned = was) });
        const { sessionName } = await import("./merge-base.js");
        return { ...summaryOf(manifest), session_name: sessionName(store, manifest.session_id), was_pinned: wasPinned };
      });
  if (options.json) return printJson(summary);
  // The session by its name, else its uuid's short form (a supervisor older than session_name leaves it out); --json has the whole id.
  const label = `${summary.session_name ?? shortSessionId(summary.session_id)}/${summary.name}`;
  // An unpin of a checkpoint never pinned said it "is no longer pinned" (a supervisor older than was_pinned leaves it out).
  if (!pinned && summary.was_pinned === false) printLine(`${label} is not pinned (it was not pinned before either): nothing changed.`);
  else printLine(`${label} is ${pinned ? "pinned: retention never deletes it" : "no longer pinned"}.`);
}

export async function deleteCheckpointCommand(location: ProjectLocation, ref: string, options: ReadOptions & { force?: boolean }): Promise<void> {
  const writer = await writerClient(location);
  const deleted = writer
    ? ((await callWriter(writer, "checkpoint.delete", { ref, force: options.force === true, session: options.session, actor: currentActor() }, Boolean(options.json))) as { sessionId: string; session_name?: string | null; name: string; id: string })
    : await withWriteStore(location, (store) =>
        deleteCheckpoint(store, ref, { sessionId: sessionFor(store, options.session), force: options.force === true, refuse: (located) => refuseNeeded(store, located), record: recordDeletion(store, currentActor(), options.force === true) }),
      );
  if (options.json) return printJson(snakeCased(deleted));
  printLine(`Deleted ${deleted.session_name ?? shortSessionId(deleted.sessionId)}/${deleted.name} (${deleted.id}). Objects no other checkpoint uses are freed by the next sweep (\`apex session cleanup\`).`);
}

// ------------------------------------------------------------------------------------ session validate

/** Validates in a child process; a crash of the reader becomes a `validator-crashed` problem. */
async function validate(location: ProjectLocation, sessionId: string | undefined): Promise<ValidationReport> {
  if (process.env.APEX_SOCKET) return (await callSupervisor(process.env.APEX_SOCKET, "session.validate", sessionId ? { session_id: sessionId } : {}, 600_000)) as ValidationReport;
  return validateOutOfProcess(await resolveStoreSpec(location), sessionId ? { sessionId } : {});
}

async function sessionIdOf(location: ProjectLocation, ref: string | undefined): Promise<string | undefined> {
  return (await sessionOf(location, ref))?.id;
}

/**
 * The session `ref` names, and how text prints it (its name, else its uuid's short form, as
 * session list does): a reference `session repair` and `checkpoint show <label>/checkpoint-007`
 * resolve. Where the store is not read here (inside an agent, a damaged store) the label is
 * what was given, shortened when it is a whole uuid.
 */
async function sessionOf(location: ProjectLocation, ref: string | undefined): Promise<{ id: string; label: string } | undefined> {
  if (ref === undefined) return undefined;
  if (process.env.APEX_SOCKET) return { id: ref, label: shortSessionId(ref) };
  try {
    const { sessionLabel } = await import("./merge-base.js");
    return await withReadStore(location, (store) => {
      const id = resolveSessionRef(store, ref);
      return { id, label: sessionLabel(store, id) };
    });
  } catch (error) {
    // Validate and repair are what a damaged store needs: a session list they cannot read does not stop them.
    if (isApexError(error) && error.code === "APEX_E_STORE_DAMAGED") return { id: ref, label: shortSessionId(ref) };
    throw error;
  }
}

export async function validateCommand(location: ProjectLocation, ref: string | undefined, options: { json?: boolean }): Promise<void> {
  if (!process.env.APEX_SOCKET && !(await storeExists(location))) throw noStore();
  const session = await sessionOf(location, ref);
  const sessionId = session?.id;
  const report = await validate(location, sessionId);
  process.exitCode = report.ok ? 0 : 1;
  if (options.json) return printJson({ session_id: sessionId ?? null, ...validationJson(report) });
  // Sessions as session list prints them, by name or short id (--json has the whole ids).
  const what = session ? `Session ${session.label}` : "The project store";
  const c = report.checkpoints;
  // A truncated file's: the checkpoints the cut took, which `total` (what is left) does not count.
  const maybe = c.lost_after?.length ? (c.lost?.length ? " (perhaps more)" : ", some perhaps lost with the cut") : "";
  const lost = `${c.lost?.length ? `, ${c.lost.length} lost with the cut` : ""}${maybe}`;
  const counts = `${c.total} checkpoint${c.total === 1 ? "" : "s"}, ${c.verified} verif${c.verified === 1 ? "ies" : "y"}${lost}; ${plural(report.records, "record")} decoded`;
  if (report.ok && report.problems.length === 0) {
    printLine(`${what} is valid: ${counts}.`);
    return;
  }
  printLine(`${what} ${report.ok ? "is valid, with warnings" : paint("has problems", "red")}: ${counts}.`);
  const named = sessionLabeller(report);
  printProblems(report.problems, named);
  if (c.damaged.length > 0) {
    printLine(`Checkpoints that do not verify (${c.damaged.length}):`);
    // `<label>/checkpoint-007`: a reference `checkpoint show` and `start --force-recovery` resolve (a name, or a unique id prefix).
    for (const damaged of c.damaged) printLine(`  ${damaged.session_name ?? shortSessionId(damaged.sessionId)}/${damaged.name}${damaged.id ? ` (${damaged.id.slice(0, 8)})` : ""}: ${named(damaged.reasons.join("; "))}`);
  }
  const errors = report.problems.filter((problem) => problem.severity === "error");
  if (errors.length > 0 && errors.every((problem) => LEFT_TO_USER.has(problem.code))) {
    // Repair would change nothing (it says so): the way on is the user's write, or the checkpoint.
    printLine(paint(leftToUserHint(errors, named)!, "gray"));
  } else if (errors.length > 0 && errors.every((problem) => problem.code === "record-malformed")) {
    // Repair leaves these records as they are (it would say so): each problem says how to mend its record.
    printLine(paint("hint: repair leaves these records as they are: write each back, or delete it, as its problem says.", "gray"));
  } else if (!report.ok) {
    const target = session?.label ?? "";
    printLine(paint(`Next: apex session repair ${target} --dry-run (shows what repair would do; it never deletes a checkpoint that verifies)`.replace("  ", " "), "gray"));
    // Not on a store file that is itself damaged (truncated: its checkpoints were checked in what is left): start cannot open it before the repair.
    if (c.damaged.length > 0 && !report.problems.some((problem) => problem.code === "store-damaged")) printLine(paint(`      apex start --force-recovery <checkpoint> (restores what still verifies of a damaged checkpoint)`, "gray"));
  } else if (report.problems.some((problem) => problem.code.startsWith("langgraph-"))) {
    // Warnings: LangGraph records of checkpoints no longer stored, which no read reaches (validate.ts, checkLangGraph).
    printLine(paint(`Next: apex session repair ${session?.label ?? ""} (removes those LangGraph records and moves the heads; --dry-run lists them)`.replace("  ", " "), "gray"));
  }
}

function printProblems(problems: StoreProblem[], named: (text: string) => string): void {
  if (problems.length === 0) return;
  printLine(`Problems (${problems.length}):`);
  for (const problem of problems) {
    printLine(`  ${problem.severity.padEnd(7)} ${problem.code.padEnd(24)} ${named(`${problem.checkpoint ? `${problem.checkpoint}: ` : ""}${problem.message}`)}`);
  }
}

// ------------------------------------------------------------------------------------ session repair

export async function repairCommand(location: ProjectLocation, ref: string | undefined, options: { dryRun?: boolean; json?: boolean }): Promise<void> {
  const dryRun = options.dryRun === true;
  if (process.env.APEX_SOCKET) {
    // An agent would stop its own session: repair is for the user's terminal.
    throw new ApexError("APEX_E_SESSION_ACTIVE", `A session is running (supervisor pid ${Number(process.env.APEX_SUPERVISOR_PID) || 0}); repair needs it stopped.`, {
      hint: "Repair rewrites objects, checkpoint records and manifests of the whole store, which the running supervisor uses: run `apex session repair` from a terminal outside the session.",
    });
  }
  if (!(await storeExists(location))) throw noStore();
  // The session named is resolved before anything stops: a name that is not there (or `current`,
  // which stopping would end) must be refused with the session left running.
  const session = await sessionOf(location, ref);
  if (!dryRun) await refuseRemoteSupervisor(location);
  // Repair rewrites objects, checkpoint records and manifests the running supervisor caches and
  // writes: a running session is checkpointed and stopped first, and continued afterwards.
  let handover: Handover | undefined;
  let validated: ValidationReport | undefined;
  const live = !dryRun && Boolean(await liveSessionClient(location, { local: true }));
  if (live) {
    // A store with nothing to repair leaves the session running: stopping it ended its agents,
    // took a checkpoint (which retention may answer by removing others) and restarted them, for
    // nothing. A validation reads one snapshot of the store, the supervisor's writes aside.
    const report = await validateOutOfProcess(await resolveStoreSpec(location));
    if (report.problems.length === 0) validated = report;
  }
  if (live && !validated) {
    const { makeWay, handoverLine } = await import("../../cli/session/handover.js");
    handover = await makeWay(location, { target: undefined, rollback: false, reason: "repair the store", liveOnly: true, json: Boolean(options.json) });
    if (handover && !options.json) printLine(handoverLine(handover));
  }
  try {
    await repairStopped(location, session, { dryRun, json: options.json === true, ...(validated ? { validated } : {}) });
  } finally {
    if (handover) await continueAfterRepair(location, handover, options.json === true);
  }
}

/**
 * A session whose supervisor runs on another host (a store shared by several hosts) cannot be
 * stopped from here for the repair, and repair must not rewrite what that supervisor uses under it.
 */
async function refuseRemoteSupervisor(location: ProjectLocation): Promise<void> {
  let remote;
  try {
    remote = await withReadStore(location, (store) => activeSessions(store).find((record) => onOtherHost(record.supervisor) && supervisorAlive(record)));
  } catch (error) {
    if (isApexError(error) && error.code === "APEX_E_STORE_DAMAGED") return; // a damaged file is LMDB's, on this host
    throw error;
  }
  if (!remote) return;
  const host = supervisorHost(remote.supervisor);
  throw new ApexError("APEX_E_SESSION_REMOTE", `Cannot repair the store while session ${remote.session_id} runs on ${holderText(remote.supervisor)}: repair rewrites objects and checkpoint records its supervisor uses, and this host cannot stop it.`, {
    hint: `Stop the session on ${host} (or through \`apex --remote\`), then repair; \`apex session repair --dry-run\` shows what it would do meanwhile.`,
    details: { session_id: remote.session_id, host, lease_expires_at: remote.supervisor?.lease_expires_at ?? null },
  });
}

/** Brings the session repair stopped back, from the live state (repair never touches memory, tasks or agent records). */
async function continueAfterRepair(location: ProjectLocation, handover: Handover, json: boolean): Promise<void> {
  const [{ launchSupervisor }, { sessionText }, { callOffOnInterrupt }] = await Promise.all([import("../../cli/session/launch.js"), import("../../cli/session/handover.js"), import("../../cli/session/call-off.js")]);
  // Ctrl-C calls the continue off: the session stays stopped, as the repair left it.
  const ready = await callOffOnInterrupt(json, () => launchSupervisor(location, { mode: "continue", continueTarget: handover.session_id }));
  if (json) process.stderr.write(`${JSON.stringify({ notice: { continued: ready.session_id, supervisor_pid: ready.supervisor_pid, handover } })}\n`);
  // The session as the handover line named it (its name, else its uuid's short form); the notice in --json has the whole id.
  else printLine(`Session ${paint(sessionText({ session_id: ready.session_id, name: handover.name }), "bold")} continued after the repair (supervisor pid ${ready.supervisor_pid}${handover.was === "paused" ? "; it was paused and runs again" : ""}).`);
}

async function repairStopped(location: ProjectLocation, session: { id: string; label: string } | undefined, options: { dryRun: boolean; json: boolean; validated?: ValidationReport }): Promise<void> {
  const sessionId = session?.id;
  const dryRun = options.dryRun;
  const spec = await resolveStoreSpec(location);
  // LMDB's file is repaired out of process (a damaged page can crash the reader); a server store in process.
  const lmdbDir = spec.backend === "lmdb" ? lmdbDataDir(spec) : undefined;
  // Read out of process first: if reading the store crashes the reader, repairing it here would crash too.
  const before = options.validated ?? (await validateOutOfProcess(spec));
  const crashed = before.problems.find((problem) => problem.code === "validator-crashed");
  if (crashed) {
    throw new ApexError("APEX_E_INTEGRITY", `Cannot repair: ${crashed.message}`, {
      hint: "Repair would read the store the same way. Recover what still verifies into a new session with `apex session reconstruct <session>`, or restore a backup of .apex/.",
    });
  }
  let result: RepairResult;
  if (lmdbDir && before.problems.some((problem) => problem.code === "store-damaged")) result = await repairDamagedFile(location, lmdbDir, before, dryRun);
  else if (before.problems.length === 0) result = { dryRun, actions: [], before, ...(dryRun ? {} : { after: before }) };
  else if (dryRun || !lmdbDir) {
    const store = await openStore(spec, { readOnly: dryRun });
    try {
      result = await repairStore(store, { dryRun });
    } finally {
      await store.close();
    }
  } else {
    const repaired = repairOutOfProcess(lmdbDir);
    // A damaged page crashed the repairer: copy what reads into a fresh file and repair that.
    result = "crashed" in repaired ? await repairDamagedFile(location, lmdbDir, before, false, repaired.crashed) : repaired;
  }
  const after = result.after;
  process.exitCode = dryRun || after?.ok ? 0 : 1;
  const removed = result.actions.filter((action) => action.action === "remove-checkpoint").length;
  // After a copy of the store file, the checkpoints were first read in the copy: `after` counts them, and a dry run's `copy`.
  const kept = after?.checkpoints.total ?? (result.copy ?? result.before).checkpoints.total - removed - result.actions.filter((action) => action.action === "remove-index" && action.target.includes("/checkpoint-")).length;
  if (options.json) {
    printJson({ session_id: sessionId ?? null, dry_run: dryRun, actions: result.actions, checkpoints: { removed, kept }, before: validationJson(result.before), after: after ? validationJson(after) : null });
    return;
  }
  // The session as session list prints it, by name or short id (--json has the whole id).
  const scope = session ? ` (session ${session.label}; objects are shared between sessions, so repair covers the whole store)` : "";
  // Sessions by name or short id here too (`remove-checkpoint 3f2a9c1e/checkpoint-002: …`); --json has the whole ids.
  const named = sessionLabeller(result.before, after, result.copy);
  if (result.actions.length === 0) {
    // Problems repair leaves as they are (a live record that reads as a value) are not a valid store.
    const left = (after ?? result.before).problems.filter((problem) => problem.severity === "error");
    if (left.length === 0) {
      printLine(`Nothing to repair${scope}: the store is valid (${plural(before.checkpoints.total, "checkpoint")} ${before.checkpoints.total === 1 ? "verifies" : "verify"}).`);
      return;
    }
    printLine(`${dryRun ? `Dry run${scope}: repair would change nothing` : `Repair changes nothing${scope}`}: the store is not valid, and repair leaves ${left.length === 1 ? "this problem as it is" : `these ${left.length} problems as they are`}.`);
    printProblems(left, named);
    const hint = leftToUserHint(left, named);
    if (hint) printLine(paint(hint, "gray"));
    return;
  }
  printLine(dryRun ? `Dry run${scope}: nothing was changed. Repair would:` : `Repaired the store${scope}:`);
  for (const action of result.actions) printLine(`  ${action.action.padEnd(22)} ${named(`${action.target}: ${action.reason}`)}`);
  // A truncated file's checkpoints that the cut took whole (validate names them): no action brings them back, so they were in no line above.
  const lostWhole = result.before.problems.filter((problem) => problem.code === "checkpoint-lost");
  if (lostWhole.length > 0) {
    printLine("Lost with the cut, which repair cannot bring back:");
    for (const problem of lostWhole) printLine(`  ${named(problem.message)}`);
  }
  // A dry run of a copy of the store file could not read the checkpoints past the damage: no count to give.
  if (dryRun && result.actions.some((action) => action.action === "copy-store") && !result.copy && result.before.checkpoints.total === 0) printLine("Which checkpoints verify is checked once the records that read are copied: the damage keeps them from being read now (repair never deletes a checkpoint that verifies).");
  else printLine(
    `${dryRun ? "It would remove" : "Removed"} ${removed} checkpoint${removed === 1 ? "" : "s"} that do${removed === 1 ? "es" : ""} not verify; ${dryRun ? "it keeps" : "kept"} ${kept} that verif${kept === 1 ? "ies" : "y"} (repair never deletes a checkpoint that verifies).`,
  );
  if (dryRun) printLine(paint(`Apply: apex session repair${session ? ` ${session.label}` : ""}`, "gray"));
  else if (after?.ok) printLine(`The store is valid now.`);
  else {
    printLine(paint(`Problems remain:`, "red"));
    printProblems(after?.problems ?? [], named);
    const hint = leftToUserHint(after?.problems ?? [], named);
    if (hint) printLine(paint(hint, "gray"));
  }
}

/** Live memory records repair never overwrites (validate-live.ts): the revision log could be what is damaged. */
const LEFT_TO_USER = new Set(["record-damaged", "record-missing", "record-unlogged"]);

/** What settles the live records repair leaves (a write of the path, or the checkpoint restored), for the first of them; undefined when there is none. */
function leftToUserHint(problems: StoreProblem[], named: (text: string) => string): string | undefined {
  const first = problems.find((problem) => LEFT_TO_USER.has(problem.code) && problem.path !== undefined);
  if (!first) return undefined;
  const path = /^[\w/.@%+=:,-]+$/.test(first.path!) ? first.path! : `'${first.path!.replace(/'/g, "'\\''")}'`;
  const restore = first.checkpoint ? `, or go back to the checkpoint it differs from (\`apex start --continue ${named(first.checkpoint)}\`, which saves the state it replaces first)` : "";
  return `hint: repair never overwrites a memory record that reads as a value (the revision log could be what is damaged): look at it (\`apex memory show ${path}\`), then write what it should hold (\`apex memory set ${path} VALUE\`, or \`apex memory delete ${path}\` for one that should not be there)${restore}.`;
}

/**
 * LMDB-level damage (validate read the file record by record): every record that still reads is
 * copied into a fresh store file, which takes the damaged file's place (kept beside it); then
 * the new file is validated and repaired as any store is. Acknowledged writes that still read
 * are all in the copy.
 */
async function repairDamagedFile(location: ProjectLocation, dataDir: string, before: ValidationReport, dryRun: boolean, crashed?: string): Promise<RepairResult> {
  const regions = crashed ? 1 : before.problems.filter((problem) => problem.code === "store-damaged").length - 1;
  if (dryRun) {
    // What the real run refuses, the dry run does not promise: it said it would copy 0 records.
    if (before.records === 0) throw (await import("../lmdb/salvage-process.js")).nothingReadable(`${dataDir}/store.mdb`);
    const rehearsed = await rehearseOnCopy(dataDir);
    if (rehearsed) {
      const copy: RepairAction = {
        action: "copy-store",
        target: `${dataDir}/store.mdb`,
        reason: `${regions} damaged region${regions === 1 ? "" : "s"}: would copy the ${plural(rehearsed.copied, "record")} that read into a fresh store file (${rehearsed.lost} could not be read)`,
      };
      return { dryRun, actions: [copy, ...rehearsed.repair.actions], before, copy: rehearsed.repair.before };
    }
    // No scratch copy to repair (no room for it in the temporary directory): what validate saw of the checkpoints.
    // A truncated file's checkpoints were checked in what is left of it (validate-process.ts): those that do not verify there go with the repair.
    const removals: RepairAction[] = before.checkpoints.damaged.map((damaged) => ({ action: "remove-checkpoint", target: `${damaged.sessionId}/${damaged.name}`, reason: damaged.reasons.join("; ") }));
    // The catalog records of checkpoints whose manifests the cut took go too, as the repair of the copy removes them
    // (validate.ts): the dry run listed none, and counted those checkpoints among the ones it keeps.
    const indexes: RepairAction[] = before.problems.flatMap((problem): RepairAction[] => {
      if (problem.code === "manifest-missing" && problem.checkpoint) return [{ action: "remove-index", target: problem.checkpoint, reason: "the catalog lists it but its manifest does not exist" }];
      if (problem.code === "index-dangling" && problem.checkpointId) return [{ action: "remove-index", target: problem.checkpointId, reason: "id record of a checkpoint that does not exist" }];
      return [];
    });
    return { dryRun, actions: [{ action: "copy-store", target: `${dataDir}/store.mdb`, reason: `${regions} damaged region${regions === 1 ? "" : "s"}: would copy the ${plural(before.records, "record")} that read into a fresh store file` }, ...removals, ...indexes], before };
  }
  const { replaceWithSalvage } = await import("../lmdb/salvage-process.js");
  const salvaged = replaceWithSalvage(dataDir);
  const copyAction: RepairAction = {
    action: "copy-store",
    target: `${dataDir}/store.mdb`,
    reason: `${crashed ? `repairing in place ${crashed}; ` : ""}${regions} damaged region${regions === 1 ? "" : "s"}: copied the ${plural(salvaged.copied, "record")} that read into a fresh store file (${salvaged.lost} could not be read); the damaged file is kept as ${salvaged.damagedFile}`,
  };
  const copied = await validateOutOfProcess(await resolveStoreSpec(location));
  if (copied.problems.length === 0) return { dryRun, actions: [copyAction], before, after: copied };
  const rest = repairOutOfProcess(dataDir);
  if ("crashed" in rest) {
    throw new ApexError("APEX_E_STORE_DAMAGED", `The store file was copied (${copyAction.reason}), but repairing the copy ${rest.crashed}.`, {
      hint: "Restore a backup of .apex/, or recover what still verifies into a new session with `apex session reconstruct <session>`.",
    });
  }
  return { ...rest, actions: [copyAction, ...rest.actions], before };
}

/**
 * The dry run of a damaged store file's repair: what reads is copied into a scratch store in the
 * temporary directory (the damaged file only read), and the repair of that copy is run there in
 * dry-run mode, out of process, as the real run repairs its copy: the dry run lists the same
 * actions (healed values, counters raised, tasks unassigned, objects removed, …), where it listed
 * the copy and the checkpoints validate named alone. Undefined when there is no room for the copy
 * or its repair fails; the copy is removed after.
 */
async function rehearseOnCopy(dataDir: string): Promise<{ repair: RepairResult; copied: number; lost: number } | undefined> {
  const { salvageOutOfProcess, nothingReadable } = await import("../lmdb/salvage-process.js");
  let work: string;
  try {
    work = mkdtempSync(join(tmpdir(), "apex-repair-dry-run-"));
  } catch {
    return undefined;
  }
  try {
    let scan;
    try {
      scan = salvageOutOfProcess(join(dataDir, "store.mdb"), { copyTo: join(work, "store.mdb") });
    } catch (error) {
      if (isApexError(error) && error.code === "APEX_E_STORE_DAMAGED") throw error; // the real run meets it too
      return undefined; // no room for the copy
    }
    if (scan.tables.every((table) => table.records === 0)) throw nothingReadable(`${dataDir}/store.mdb`, scan.crashes[0]?.signal);
    let copied = 0;
    let lost = 0;
    for (const table of scan.tables) {
      copied += table.records;
      lost += Math.max(0, table.entries - table.records);
    }
    let repair: RepairResult | { crashed: string };
    try {
      repair = repairOutOfProcess(work, { dryRun: true });
    } catch {
      return undefined;
    }
    return "crashed" in repair ? undefined : { repair, copied, lost };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

const REPAIR_WORKER = fileURLToPath(new URL("./repair-worker.js", import.meta.url));

/** repairStore in a child process (repair-worker.ts): a damaged page that crashes the reader ends the child, not the command. */
function repairOutOfProcess(storeDir: string, options: { dryRun?: boolean } = {}): RepairResult | { crashed: string } {
  const work = mkdtempSync(join(tmpdir(), "apex-repair-"));
  try {
    const resultFile = join(work, "result.json");
    const child = spawnSync(process.execPath, [REPAIR_WORKER, storeDir, resultFile, ...(options.dryRun ? ["--dry-run"] : [])], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"], maxBuffer: 16 * 1024 * 1024 });
    if (child.signal) return { crashed: `was killed by ${child.signal}` };
    // APEX's damage error, or LMDB's own from a raw table read (the object store's).
    if (child.status !== 0 && /APEX_E_STORE_DAMAGED|store file .* is damaged|MDB_CORRUPTED|MDB_PAGE_NOTFOUND|MDB_BAD_TXN/.test(child.stderr ?? "")) return { crashed: "met damage LMDB cannot read past" };
    if (child.status !== 0 || !existsSync(resultFile)) {
      throw new ApexError("APEX_E_INTEGRITY", `Repair failed: ${(child.stderr ?? "").trim().split("\n").slice(-3).join(" | ") || `exit code ${child.status}`}.`);
    }
    return JSON.parse(readFileSync(resultFile, "utf8")) as RepairResult;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------ session reconstruct

export async function reconstructCommand(location: ProjectLocation, ref: string, options: { as?: string; json?: boolean }): Promise<void> {
  // Before anything is read or validated: `--as "x y"` is a usage error, whichever way the reconstruction would go.
  if (options.as !== undefined) checkSessionName(options.as, "id");
  if (!process.env.APEX_SOCKET && !(await storeExists(location))) throw noStore();
  const sessionId = (await sessionIdOf(location, ref))!;
  if (!process.env.APEX_SOCKET) {
    const check = await validateOutOfProcess(await resolveStoreSpec(location), { sessionId });
    const crashed = check.problems.find((problem) => problem.code === "validator-crashed");
    if (crashed) throw new ApexError("APEX_E_INTEGRITY", `Cannot reconstruct: ${crashed.message}`, { hint: "Restore a backup of .apex/." });
  }
  const writer = await writerClient(location);
  const params = { session_id: sessionId, ...(options.as ? { new_session_id: options.as } : {}) };
  const report = writer
    ? ((await callWriter(writer, "session.reconstruct", params)) as ReconstructReport & { checkpoint: CheckpointSummary })
    : await withWriteStore(location, async (store) => {
        const built = await reconstructSession(store, sessionId, options.as ? { newSessionId: options.as } : {});
        return { ...built, checkpoint: summaryOf(built.checkpoint), current: false };
      });
  if (options.json) {
    const { from, skippedCheckpoints } = report;
    // skipped_checkpoints as every other --json spells its keys (skippedCheckpoints, which it had alone, stays for scripts).
    return printJson(withSessionId({ ...report, from: withSessionId({ ...from, checkpoint: from.checkpoint && withSessionId(from.checkpoint) }), skipped_checkpoints: skippedCheckpoints, skippedCheckpoints }));
  }
  // Sessions as session list prints them: the one it came from by its name, else its uuid's short
  // form (a supervisor older than from.name leaves it out); the new one has no name, and an id
  // that is no uuid (<id>-r1, --as) prints whole. --json has the whole ids.
  const newSession = shortSessionId(report.sessionId);
  const source = report.from.name ?? shortSessionId(report.from.sessionId);
  const from = report.from.checkpoint ? `${report.from.checkpoint.name}, the latest checkpoint that verifies` : "no checkpoint verifies: live records only";
  printLine(`Reconstructed session ${paint(newSession, "bold")} from ${source} (${from}).`);
  const count = (items: Array<{ source: string }>, source: string) => items.filter((item) => item.source === source).length;
  printLine(`  tasks   ${report.tasks.length} (${count(report.tasks, "live")} live, ${count(report.tasks, "checkpoint")} from the checkpoint)`);
  const agents = report.agents.filter((agent) => !agent.id.endsWith(".context"));
  printLine(`  agents  ${agents.length} (${count(agents, "live")} live, ${count(agents, "checkpoint")} from the checkpoint)`);
  printLine(`  memory  ${plural(report.memory.recovered.length, "undecodable value")} taken from the checkpoint, ${report.memory.lost.length} lost`);
  printLine(`  first checkpoint ${report.checkpoint.name} (${report.checkpoint.id})`);
  if (report.missing.length === 0) printLine("Nothing is missing.");
  else {
    printLine(paint(`Missing (${report.missing.length}):`, "red"));
    for (const line of report.missing) printLine(`  - ${line}`);
  }
  printLine(
    paint(`It is listed by \`apex session list\` as stopped and blocks nothing. Next: apex start --continue ${newSession} (a running session is checkpointed and stopped first)`, "gray"),
  );
}
