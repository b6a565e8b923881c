import type { ProjectLocation } from "../config/locate.js";
import { ApexError } from "../errors.js";
import { compileGlob } from "../store/glob.js";
import { checkPath } from "../store/paths.js";
import type { Entry, JsonValue, Store } from "../store/store.js";
import { openStore, storeExists } from "../store/open.js";
import type { OpenSessionOptions, SessionClient } from "./client.js";
import { checkOwnedWrite, importEntries, memoryReadMethods, stringParam, type SessionMethod } from "./memory-methods.js";
import { MemoryView, memoryViewOf } from "./memory-view.js";
import { boundSessionId } from "./sessions.js";

/**
 * The session methods run in this process on the store: reads on a read-only store; writes
 * (only when no supervisor runs) on a writable one, with the project's plugins loaded so that
 * hooks fire as they would in the supervisor.
 */
export async function directClient(location: ProjectLocation, access: "read" | "write", options: OpenSessionOptions): Promise<SessionClient> {
  // The session records' module only when a session is needed (`memory show` is benchmarked).
  const noStore = async () => options.noStore?.() ?? (await import("./sessions.js")).noSessionError();
  if (access === "read") {
    if (!(await storeExists(location))) return clientOver(undefined, readMethods(undefined, location, options.session, false), noStore);
    const store = await openStore(location, { readOnly: true });
    return clientOver(store, readMethods(store, location, options.session, options.records === true), noStore);
  }
  if (options.direct === "store") {
    await assertConfigValid(location);
    const store = await openStore(location);
    return clientOver(store, memoryWriteMethods(store), noStore);
  }
  if (!(await storeExists(location))) throw await noStore();
  const { currentSession, noSessionToActOn, resolveSessionId } = await import("./sessions.js");
  const store = await openStore(location);
  let sessionId: string;
  try {
    // A write names a session only to reach its records (`apex session share ENDED-SESSION`).
    sessionId = options.session !== undefined ? resolveSessionId(store, options.session) : (currentSession(store) ?? throwError(noSessionToActOn(store))).session_id;
  } catch (error) {
    await store.close();
    throw error;
  }
  // The config and the plugins are loaded by the first method called, not by the open: work run
  // on the store itself (`run`: ApexSaver.getTuple, a resumed graph's first call in a new
  // process) needs neither, and loading them was most of what that call paid before it read
  // anything. Nothing is written before they are loaded; one that failed to load is tried again.
  let methods: Promise<Record<string, SessionMethod>> | undefined;
  const loadMethods = async (): Promise<Record<string, SessionMethod>> => {
    const [{ loadConfig }, { createSessionEngine }, { SessionService }, { sessionMethods }, { checkpointServiceFor }] = await Promise.all([import("../config/load.js"), import("./hooks.js"), import("./service.js"), import("./methods.js"), import("./checkpoints.js")]);
    const engine = await createSessionEngine(await loadConfig(location), store, (message) => process.stderr.write(`warning: ${message}\n`));
    // With plugins loaded, the checkpoint service's methods too (checkpoint.*, langgraph.*), as the supervisor serves them.
    return { ...(checkpointServiceFor(store)?.methods ?? {}), ...sessionMethods(new SessionService(store, sessionId, engine)) };
  };
  return clientOver(store, async (method) => (await (methods ??= loadMethods().catch((error: unknown) => ((methods = undefined), Promise.reject(error)))))[method], noStore);
}

function throwError(error: ApexError): never { throw error; }

type MethodLookup = (method: string) => SessionMethod | undefined | Promise<SessionMethod | undefined>;

/**
 * Reads: those of the project's memory and session list need no session (and load nothing
 * more than the store: `memory get` is benchmarked); the rest are the session methods over the
 * session `session` names, else the current one, else the one that ended last.
 */
function readMethods(store: Store | undefined, location: ProjectLocation, session: string | undefined, records: boolean): MethodLookup {
  const own: Record<string, SessionMethod> = {
    ...(store ? memoryReadMethods(store, records ? () => MemoryView.ROOT : () => boundView(store)) : emptyMemory),
    "session.list": async () => (store ? (await import("./sessions.js")).allSessions(store) : []),
    "session.history": async () => (store ? (await import("./sessions.js")).historySessions(store) : []),
  };
  let sessionMethods: Record<string, SessionMethod> | undefined;
  return async (method) => {
    if (method === "session.status" && !store) {
      const { emptyStatusReport } = await import("./status-report.js");
      return () => emptyStatusReport() as unknown as JsonValue;
    }
    if (method === "session.status" && store) {
      const { buildStatusReport } = await import("./status-report.js");
      return (params) => (params.session === undefined && params.readable !== true ? buildStatusReport(store, location.storeDir) : sessionMethod(method).then((fn) => fn?.(params)));
    }
    return own[method] ?? (await sessionMethod(method));
  };
  async function sessionMethod(method: string): Promise<SessionMethod | undefined> {
    const { noSessionError, readableSessionId } = await import("./sessions.js");
    if (!store) throw noSessionError();
    if (!sessionMethods) {
      const [{ SessionService }, methods] = await Promise.all([import("./service.js"), import("./methods.js")]);
      // Reads also work once the session ended: the latest one, or the one --session names.
      sessionMethods = methods.sessionMethods(new SessionService(store, readableSessionId(store, session), { fire: async () => {} }));
    }
    return sessionMethods[method];
  }
}

/** The memory of a project with no store yet: nothing is there. */
const emptyMemory: Record<string, SessionMethod> = {
  "memory.get": (params) => void checkPath(stringParam(params, "path")),
  "memory.query": (params) => (compileGlob(stringParam(params, "glob")), []),
  "memory.changes": () => ({ revision: 0, changes: [] }),
};


/**
 * The working memory of the session this command is bound to (binding.ts: its own root when it
 * runs in a git worktree), decided once per command. The modules are loaded here, on the first
 * memory call, so that nothing else pays for them.
 */
const views = new WeakMap<Store, MemoryView>();
function boundView(store: Store): MemoryView {
  let view = views.get(store);
  if (!view) views.set(store, (view = memoryViewOf(store, boundSessionId(store))));
  return view;
}

/** Memory writes with no supervisor: on the store, without a session or plugins, into the bound session's working memory. */
function memoryWriteMethods(store: Store): MethodLookup {
  const view = () => boundView(store);
  const methods: Record<string, SessionMethod> = {
    "memory.set": async (params) => {
      await checkOwnedWrite("memory set", [String(params.path)], params);
      return { revision: await store.set(view().path(String(params.path)), params.value as JsonValue) };
    },
    "memory.delete": async (params) => {
      await checkOwnedWrite("memory delete", [String(params.path)], params);
      return store.delete(view().path(String(params.path)), { recursive: params.recursive === true });
    },
    "memory.import": async (params) => {
      const entries: Entry[] = importEntries(params);
      await checkOwnedWrite("memory import", entries.map((entry) => entry.path), params);
      const { revision } = await store.batch((batch) => {
        for (const entry of entries) batch.set(view().path(entry.path), entry.value);
      });
      return { count: entries.length, revision };
    },
  };
  return (method) => methods[method];
}

function clientOver(store: Store | undefined, lookup: MethodLookup, noStore: () => Promise<ApexError>): SessionClient {
  return {
    via: "store",
    async call(method, params = {}) {
      const fn = await lookup(method);
      // A name every object has (constructor, toString) is no method: it ran Object's, echoing the params or failing.
      if (!fn || method in Object.prototype) {
        // details.needs_supervisor: what callers test (a method a plugin adds to supervisors only), never the message's text.
        throw new ApexError("APEX_E_SESSION_STATE", `${method} needs the session's supervisor, which is not running.`, {
          hint: "See `apex status`; `apex start --continue last` brings an interrupted session back.", details: { needs_supervisor: method },
        });
      }
      return fn(params);
    },
    async run(_method, _params, here) {
      if (!store) throw await noStore();
      return here(store);
    },
    subscribe(method) {
      throw new ApexError("APEX_E_SESSION_STATE", `${method} needs the session's supervisor, which is not running.`, { hint: "See `apex status`; `apex start --continue last` brings an interrupted session back." });
    },
    empty: store === undefined,
    close: async () => {
      await store?.close();
    },
  };
}

/**
 * The checks `apex config validate` makes, before a direct write: the config is valid and every
 * plugin it enables is usable. Built-in plugins are known to load; a third-party plugin (a file
 * or a package) is imported with the rest as `start` would, so one that exists but fails to load
 * blocks the write too. With built-ins only, nothing is imported (start-up time).
 */
export async function assertConfigValid(location: ProjectLocation): Promise<void> {
  if (!location.configPath) return;
  const { loadConfig } = await import("../config/load.js");
  const config = await loadConfig(location);
  const { checkPluginSources, loadPlugins } = await import("../plugins.js");
  const { isBuiltinPlugin } = await import("../config/schemas.js");
  // An unknown plugin makes the config invalid here too (as for `start`), without importing any.
  checkPluginSources(config);
  if (config.plugins.some((entry) => entry.enabled && !isBuiltinPlugin(entry.name))) await loadPlugins(config);
}
