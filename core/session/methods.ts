import { isDeepStrictEqual } from "node:util";
import { actorParam } from "../actor.js";
import type { CommandContext } from "../engine.js";
import { ApexError } from "../errors.js";
import { STREAM } from "../rpc/protocol.js";
import type { RpcHandler, RpcServer } from "../rpc/server.js";
import { checkPath } from "../store/paths.js";
import type { JsonValue } from "../store/store.js";
import { MAX_STOP_GRACE_SECONDS, TASK_STATUSES, type SessionEvent, type TaskStatus } from "./records.js";
import { buildStatusReport, sessionReport } from "./status-report.js";
import { eventsAfter, SessionReader, type SessionService } from "./service.js";
import type { Supervisor } from "./supervisor.js";
import { allSessions, historySessions, resolveSessionId } from "./sessions.js";
import { builtinSessionMethods } from "../../plugins/index.js";
import { checkOwnedWrite, importEntries, memoryReadMethods, stringParam, type SessionMethod } from "./memory-methods.js";
import { memoryViewOf, type MemoryView } from "./memory-view.js";

export type { SessionMethod };

/**
 * The methods on a session's records: memory, tasks, milestones, agent reports. The
 * supervisor serves them on its socket; with no supervisor running, CLI commands call the
 * same functions on the store directly.
 */
export function sessionMethods(service: SessionService): Record<string, SessionMethod> {
  const store = service.store;
  // Reads may name another session (`--session ID`, also an ended one); writes are the service's own.
  const reader = (params: Record<string, unknown>): SessionReader => {
    const ref = optionalString(params, "session");
    if (ref === undefined) return service;
    const id = resolveSessionId(store, ref);
    return id === service.sessionId ? service : new SessionReader(store, id);
  };
  // The session's working memory: its own root when it runs in a git worktree (memory-view.ts).
  let cachedView: MemoryView | undefined;
  const view = () => (cachedView ??= memoryViewOf(store, service.sessionId));
  return {
    ...memoryReadMethods(store, view),
    "memory.set": async (params) => {
      const path = checkPath(stringParam(params, "path"));
      if (!("value" in params) || params.value === undefined) throw new ApexError("APEX_E_BAD_JSON", `No value given for ${path}.`);
      await checkOwnedWrite("memory set", [path], params);
      const actor = actorParam(params);
      // A set of the value the path already has (in any key order) changed nothing: no activity either, as for a delete that found nothing.
      const unchanged = isDeepStrictEqual(store.get(view().path(path)), params.value);
      const revision = await store.set(view().path(path), params.value as JsonValue, actor);
      if (!unchanged) service.noteActivity(actor);
      return { revision };
    },
    "memory.delete": async (params) => {
      const path = checkPath(stringParam(params, "path"));
      await checkOwnedWrite("memory delete", [path], params);
      const actor = actorParam(params);
      const result = await store.delete(view().path(path), { recursive: params.recursive === true, actor });
      // A delete that found nothing (the CLI's APEX_E_NOT_FOUND) changed nothing: no activity that keeps the session from its session_timeout.
      if (result.deleted > 0) service.noteActivity(actor);
      return result;
    },
    "memory.import": async (params) => {
      const entries = importEntries(params);
      await checkOwnedWrite("memory import", entries.map((entry) => entry.path), params);
      const actor = actorParam(params);
      const { revision } = await store.batch((batch) => {
        for (const entry of entries) batch.set(view().path(entry.path), entry.value);
      }, actor);
      // An import of no entries (`{}`) wrote nothing: no activity either.
      if (entries.length > 0) service.noteActivity(actor);
      return { count: entries.length, revision };
    },

    "task.add": (params) =>
      service.addTask(
        { title: stringParam(params, "title"), milestone: params.milestone === true, assign: optionalString(params, "assign") },
        actorParam(params),
      ),
    "task.list": (params) => reader(params).tasks(statusParam(params)),
    "task.get": (params) => reader(params).task(stringParam(params, "id")),
    "task.claim": (params) => {
      const agent = stringParam(params, "agent");
      return service.claimTask(agent, optionalString(params, "actor") ?? `agent:${agent}`);
    },
    "task.done": (params) => service.completeTask(stringParam(params, "id"), (params.result ?? null) as JsonValue, actorParam(params)),
    "task.fail": (params) => service.failTask(stringParam(params, "id"), stringParam(params, "reason"), actorParam(params)),
    "task.reopen": (params) =>
      service.reopenTask(stringParam(params, "id"), optionalString(params, "reason"), optionalString(params, "assign"), actorParam(params)),
    "milestone.add": (params) => service.addMilestone(stringParam(params, "text"), actorParam(params), optionalString(params, "task")),
    "milestone.list": (params) => reader(params).milestones(),
    "agent.report": (params) =>
      service.reportAgent(stringParam(params, "agent"), {
        status: optionalString(params, "status"),
        task: params.task === null ? null : optionalString(params, "task"),
        context: params.context as JsonValue | undefined,
      }),
    "events.list": (params) => Array.from(eventsAfter(store, service.sessionId, typeof params.from_seq === "number" ? params.from_seq : 0)),
    // The current session's report; with `session`, or with none current, that (or the last) session's.
    "session.status": (params) => {
      const ref = optionalString(params, "session");
      if (ref === undefined && params.readable !== true) return buildStatusReport(store, "") as unknown as JsonValue;
      return sessionReport(store, reader(params).session()) as unknown as JsonValue;
    },
    "session.list": () => allSessions(store),
    "session.history": () => historySessions(store),
    ...builtinPluginMethods(service),
  };
}

/** The methods built-in plugins add to every session (builtinSessionMethods), each group loaded on its first call. */
function builtinPluginMethods(service: SessionService): Record<string, SessionMethod> {
  const methods: Record<string, SessionMethod> = {};
  for (const group of builtinSessionMethods) {
    let loaded: Promise<Record<string, SessionMethod>> | undefined;
    for (const name of group.names) {
      methods[name] = async (params) => {
        loaded ??= group.load().then((make) => make(service, actorParam));
        return (await loaded)[name]!(params);
      };
    }
  }
  return methods;
}

/**
 * The control socket's methods: the session methods plus those only a live supervisor has
 * (pause, resume, stop, the event stream). To add a method: add it to `sessionMethods` if it
 * only needs the store, or register it here if it needs the supervisor; clients call it with
 * `callSupervisor(socket, name, params)`.
 */
export function registerSupervisorMethods(server: RpcServer, supervisor: Supervisor): void {
  // Every method but those that read any session (`session` picks it) acts on the supervisor's own: one naming another is refused.
  const own: Registrar = {
    register(name, handler) {
      if (ANY_SESSION_METHODS.has(name) || builtinSessionMethods.some((group) => group.names.includes(name))) server.register(name, handler);
      else server.register(name, (params, ctx) => {
        refuseOtherSession(supervisor, name, params);
        return handler(params, ctx);
      });
      return own;
    },
  };
  for (const [name, method] of Object.entries(sessionMethods(supervisor.service))) if (name !== "session.status") own.register(name, method);
  own
    .register("session.status", () => {
      const report = { ...buildStatusReport(supervisor.store, ""), connected: supervisor.connections() };
      // A stop (or the end) under way: hooks run, agents are reaped, and the record says active until it is written.
      return (report.session?.session_id === supervisor.sessionId && supervisor.isStopping() ? { ...report, session: { ...report.session, status: "stopping" } } : report) as unknown as JsonValue;
    })
    .register("hello", () => ({
      session_id: supervisor.sessionId,
      pid: process.pid,
      status: supervisor.service.session().status,
      methods: server.methods(),
    }))
    // caller_pid: the asking process, when it runs on this host (`apex pause` sends it): refused if the pause would stop it.
    .register("session.pause", (params) => supervisor.pause(actorParam(params), typeof params.caller_pid === "number" ? params.caller_pid : undefined))
    .register("session.resume", (params) => supervisor.resume(actorParam(params)))
    // `apex serve` reports who is connected through it; `session.status` shows them.
    .register("session.connections", (params) => supervisor.noteConnections(stringParam(params, "server"), params.users))
    .register("session.stop", (params) =>
      supervisor.stop({
        force: params.force === true,
        ...(params.grace_ms !== undefined && params.grace_ms !== null ? { graceMs: graceParam(params.grace_ms) } : {}),
        ...(typeof params.reason === "string" ? { reason: params.reason } : {}),
        ...(checkpointParam(params.checkpoint) ? { checkpoint: checkpointParam(params.checkpoint)! } : {}),
        actor: actorParam(params),
      }),
    )
    .register("agent.list", () => supervisor.agentsView())
    // A plugin command forwarded by the CLI: it runs here, where the store's one writer is.
    .register("plugin.command", async (params, ctx) => {
      const name = stringParam(params, "name");
      // The CLI names the plugin its config gives the command: one enabled since this supervisor loaded its plugins.
      if (typeof params.plugin === "string" && !supervisor.engine.commands.some((command) => command.spec.name === name)) {
        const loaded = supervisor.engine.plugin(params.plugin)?.enabled === true; // or it is, from a module that has changed since
        throw new ApexError("APEX_E_SESSION_STATE", `\`apex ${name}\` runs in the running session's supervisor, which ${loaded ? `loaded the ${params.plugin} plugin when it started: its module had no such command then (it changed since)` : `was started without the ${params.plugin} plugin (enabled in the config since)`}.`, {
          hint: "A session loads its plugins when it starts: `apex stop`, then `apex start --continue last`, runs it with the config as it is now (or run the command once the session has ended).",
          details: { command: name, plugin: params.plugin },
        });
      }
      // JSON turns a missing optional argument into null; the action expects undefined, as in the CLI.
      const args = Array.isArray(params.args) ? params.args.map((arg: unknown) => (arg === null ? undefined : arg)) : [];
      const input = { args, options: (params.options ?? {}) as Record<string, unknown> };
      let output = "";
      // `stream` (the CLI's): output is sent as it is printed (with the server's heartbeat between, `heartbeat_ms`), so that the caller waits on progress, not a fixed time.
      const print = (text: string) => (params.stream === true ? ctx.push({ output: text }) : (output += text));
      const context: CommandContext = {
        config: supervisor.config,
        projectDir: supervisor.config.projectDir,
        engine: supervisor.engine,
        store: async () => supervisor.store,
        storeExists: async () => true,
        invoke: async (other, otherInput) => (await supervisor.engine.runCommand(other, otherInput, context)) ?? 0,
        print: (text) => print(`${text}\n`),
        printJson: (value) => print(`${JSON.stringify(value, null, 2)}\n`),
      };
      const exitCode = (await supervisor.engine.runCommand(name, input, context)) ?? 0;
      return { output, exitCode };
    })
    .register("events.subscribe", (params, ctx) => {
      // Replay what the caller has not seen, then stream live events; seq numbers de-duplicate.
      let last = typeof params.from_seq === "number" ? params.from_seq : supervisor.eventSeq();
      const send = (event: SessionEvent) => {
        if (event.seq <= last) return;
        last = event.seq;
        ctx.push(event);
      };
      const unsubscribe = supervisor.subscribe(send);
      ctx.onClose(unsubscribe);
      for (const event of eventsAfter(supervisor.store, supervisor.sessionId, last)) send(event);
      return STREAM;
    });
}

interface Registrar {
  register(name: string, handler: RpcHandler): Registrar;
}

/** The methods that read the session their `session` parameter names, any of the project's; the others act on the supervisor's own. */
const ANY_SESSION_METHODS = new Set(["task.list", "task.get", "milestone.list", "session.status", "session.list", "session.history"]);

/**
 * Refuses a request that names (`session`) another session than the one this supervisor serves,
 * before anything of it is done: a write (`task.add`), a pause or a stop was done to this session.
 * Its own id, a prefix or name of it, and `current` (over its socket: its own) pass.
 */
function refuseOtherSession(supervisor: Supervisor, method: string, params: Record<string, unknown>): void {
  const ref = optionalString(params, "session");
  if (ref === undefined || ref === supervisor.sessionId || ref.trim() === "current") return;
  let named: string | null = null;
  try {
    named = resolveSessionId(supervisor.store, ref);
  } catch {
    // No such session (or several match it): not this one either.
  }
  if (named === supervisor.sessionId) return;
  throw new ApexError("APEX_E_SESSION_MISMATCH", `This supervisor serves session ${supervisor.sessionId}, and the request names ${named === null ? `${JSON.stringify(ref)}, no session of this project it knows` : `another one, ${named}`}: nothing of ${method} was done.`, {
    hint: "Send it to that session's own supervisor (its runtime file, `.apex/run/ID.json`, names its socket), or leave `session` out to act on this one.",
    details: { method, session_id: supervisor.sessionId, named: ref, named_session_id: named },
  });
}

function optionalString(params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} must be a string.`);
  return value;
}

function statusParam(params: Record<string, unknown>): TaskStatus | undefined {
  const status = optionalString(params, "status");
  if (status === undefined) return undefined;
  if (!TASK_STATUSES.includes(status as TaskStatus)) {
    throw new ApexError("APEX_E_USAGE", `Unknown task status ${JSON.stringify(status)}.`, { hint: `One of: ${TASK_STATUSES.join(", ")}.` });
  }
  return status as TaskStatus;
}

/** session.stop's `grace_ms`: at most MAX_STOP_GRACE_SECONDS, as `apex stop --grace` takes (a caller could hold agents for days). */
function graceParam(value: unknown): number {
  if (typeof value === "number" && value >= 0 && value <= MAX_STOP_GRACE_SECONDS * 1000) return value;
  throw new ApexError("APEX_E_BAD_INPUT", `session.stop: grace_ms must be a number of milliseconds from 0 to ${MAX_STOP_GRACE_SECONDS * 1000} (an hour, the most \`apex stop --grace\` takes).`);
}

/** session.stop's `checkpoint` parameter: the trigger and description of a checkpoint to write before stopping. */
function checkpointParam(value: unknown): { trigger: string; description: string } | undefined {
  if (!value || typeof value !== "object") return undefined;
  const { trigger, description } = value as { trigger?: unknown; description?: unknown };
  if (typeof trigger !== "string" || !/^[A-Za-z][\w.:-]{0,63}$/.test(trigger)) throw new ApexError("APEX_E_BAD_INPUT", "session.stop: checkpoint.trigger must be a trigger name.");
  return { trigger, description: typeof description === "string" ? description : trigger };
}
