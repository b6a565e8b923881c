import { statSync } from "node:fs";
import type { ProjectLocation } from "../config/locate.js";
import { ApexError } from "../errors.js";
import type { Subscription } from "../rpc/call.js";
import { resolveStoreSpec, storeIdentity, storeSourceDigest, type StoreLocation } from "../store/open.js";
import type { Store } from "../store/store.js";
import { agentSession } from "./binding.js";
import { isSameProcessAlive, readProcStat, sleep } from "./proc.js";
import { liveSupervisor, liveSupervisorOf, liveSupervisors, type SupervisorRuntime } from "./runtime.js";

/**
 * How CLI commands reach a session, decided here and nowhere else:
 *  - a remote session (`apex --remote`, APEX_REMOTE): always `apex serve` over HTTP(S);
 *  - inside an agent (APEX_SOCKET set): always the supervisor's socket; the agent's process
 *    group never opens LMDB, so a SIGSTOPped agent can never hold the store's lock (naming
 *    another store than its supervisor's is APEX_E_STORE_MISMATCH);
 *  - writes from anyone else: the socket while a supervisor is alive on the store the command
 *    names (it is the one writer; its runtime file says which store: `onNamedStore`), else that
 *    store directly, with the same code the supervisor would run;
 *  - reads from anyone else: the store, read-only (`supervisorFirstMs`: the live supervisor
 *    first, the store when it does not answer in time).
 * Actions only a live supervisor can do (pause, resume, stop) take `liveSessionClient`.
 */
export interface SessionClient {
  /** The supervisor's unix socket, `apex serve` over HTTP(S), or the store in this process. */
  readonly via: "socket" | "remote" | "store";
  /** The same method names and params as the control socket. On a socket, `onEvent` gets the method's progress events, and `timeoutMs` counts from the last. */
  call(method: string, params?: Record<string, unknown>, timeoutMs?: number, onEvent?: (event: unknown) => void): Promise<unknown>;
  /**
   * Where the session is reached over a socket or HTTP, calls `method`; where it is the store in
   * this process, runs `here` on it (read-only for reads). For work a plugin does on the store
   * itself (a checkpoint record, a diff) that its supervisor serves under `method`.
   */
  run<T>(method: string, params: Record<string, unknown>, here: (store: Store) => T | Promise<T>, timeoutMs?: number): Promise<T>;
  /** A streaming method (`logs.follow`, `events.subscribe`): each event to `onEvent` until the stream ends. */
  subscribe(method: string, params: Record<string, unknown>, onEvent: (event: unknown) => void): Subscription;
  /** True when the session is read here and the project has no store yet: every read finds nothing. */
  readonly empty: boolean;
  /** The local supervisor a socket client talks to (its pid and start time tell when it exited). */
  readonly supervisor?: SupervisorRuntime;
  close(): Promise<void>;
}

/**
 * A way to reach sessions on other hosts, registered in the built-in registry
 * (`builtinTransports` in plugins/index.ts; the sharing plugin's `http` is `apex serve`'s API).
 */
export interface SessionTransport {
  /** A client for the session `target` names (`HOST[:PORT]/SESSION`, `HOST:SESSION`, either with http(s)://). */
  connect(target: string): SessionClient;
}

export interface OpenSessionOptions {
  /** For reads, the session `--session` names (else the current one, or the one that ended last); for writes, whose records. */
  session?: string;
  /** Reads: ask a live supervisor first, reading the store when it has not answered within this time (`apex status`). */
  supervisorFirstMs?: number;
  /**
   * Writes with no supervisor: "session" (default) loads the project's plugins so hooks fire
   * as in the supervisor, and needs a session; "store" only checks the config (nothing is
   * written while it is invalid) and works without a session (memory writes).
   */
  direct?: "session" | "store";
  /**
   * Reads of the sessions' records only (`session list`, `history`): memory paths as stored, with
   * no session binding to decide (and none to be ambiguous about when several sessions run).
   */
  records?: boolean;
  /** The error when the project has no store yet and something must be read or written there. */
  noStore?: () => ApexError;
}

export async function openSessionClient(location: ProjectLocation, access: "read" | "write", options: OpenSessionOptions | string = {}): Promise<SessionClient> {
  const opts: OpenSessionOptions = typeof options === "string" ? { session: options } : options;
  if (access === "write") {
    const writer = (await liveSessionClient(location)) ?? (await boundWriter(location));
    if (writer) return writer;
  } else {
    const forced = await forcedClient(location);
    if (forced) return forced;
    const runtime = opts.supervisorFirstMs === undefined ? undefined : await onNamedStore(location, liveSupervisor(location.storeDir));
    if (runtime) return supervisorFirst(socketClient(runtime.socket, runtime), opts.supervisorFirstMs!, () => openDirect(location, access, opts));
  }
  return openDirect(location, access, opts);
}

/**
 * When the runtime files alone could not tell (a worktree of the project that no running branch
 * is bound to), the store's binding decides which session a write is for; if that session's
 * supervisor runs, the write goes through it, never around it.
 */
async function boundWriter(location: ProjectLocation): Promise<SessionClient | undefined> {
  // Only supervisors on the store this command names can serve it (none: the store is opened directly).
  const live = await Promise.all(liveSupervisors(location.storeDir).map((runtime) => onNamedStore(location, runtime)));
  if (!live.some(Boolean)) return undefined;
  const [{ openStore }, { boundSessionId }] = await Promise.all([import("../store/open.js"), import("./sessions.js")]);
  const store = await openStore(location, { readOnly: true });
  let sessionId: string | undefined;
  try {
    sessionId = boundSessionId(store);
  } catch {
    return undefined; // ambiguous: the direct client says so
  } finally {
    await store.close();
  }
  const runtime = sessionId === undefined ? undefined : await onNamedStore(location, liveSupervisorOf(location.storeDir, sessionId));
  return runtime ? socketClient(runtime.socket, runtime) : undefined;
}

/**
 * The session's writer, for what only a live supervisor can do: a remote session's server,
 * else inside an agent its supervisor, else the local supervisor when it is alive and runs on
 * the store this command names; undefined when none runs. `local`: never a remote one, for work
 * that then runs here. `elsewhere: "refuse"`: a local supervisor on another store is
 * APEX_E_STORE_MISMATCH (pause, resume, stop: that session is not this store's) rather than none.
 */
export async function liveSessionClient(location: StoreLocation, options: { local?: boolean; session?: string; elsewhere?: "refuse" } = {}): Promise<SessionClient | undefined> {
  if (process.env.APEX_REMOTE) return options.local ? undefined : remoteClient(process.env.APEX_REMOTE);
  const refuse = options.elsewhere === "refuse";
  // `session`: that session's own supervisor, whatever this command is bound to (side by side, each has one).
  if (options.session !== undefined) {
    const own = await onNamedStore(location, liveSupervisorOf(location.storeDir, options.session), refuse);
    return own ? socketClient(own.socket, own) : undefined;
  }
  if (process.env.APEX_SOCKET) return forcedClient(location);
  const runtime = await onNamedStore(location, liveSupervisor(location.storeDir), refuse);
  return runtime ? socketClient(runtime.socket, runtime) : undefined;
}

/**
 * `runtime` when that supervisor runs on the store this command names (APEX_STORE_URL, else
 * `store:`, else LMDB in the store directory); else undefined (the command acts on the store it
 * names), or with `refuse` APEX_E_STORE_MISMATCH naming both. A runtime file without `store`
 * (written by an older APEX) counts as the named store, as before.
 */
export async function onNamedStore(location: StoreLocation, runtime: SupervisorRuntime | undefined, refuse = false): Promise<SupervisorRuntime | undefined> {
  if (!runtime?.store || runtime.store_source === storeSourceDigest(location)) return runtime;
  const named = await storeIdentity(await resolveStoreSpec(location));
  if (named === runtime.store) return runtime;
  if (!refuse) return undefined;
  throw new ApexError("APEX_E_STORE_MISMATCH", `Session ${runtime.session_id}'s supervisor (pid ${runtime.pid}) runs on the store ${runtime.store}, and this command names another: ${named}.`, {
    hint: "Run it without APEX_STORE_URL (and with the store: the session started with) to act on that session; stop it first to run one on the other store.",
    details: { session_id: runtime.session_id, supervisor_store: runtime.store, named_store: named },
  });
}

/**
 * A session on another host, reached through `apex serve`: the one named (`apex connect
 * HOST/SESSION`), else the one `apex --remote` (APEX_REMOTE) names, else none: for commands
 * that otherwise work on local files (`apex logs`) or launch here (`apex start`).
 */
export function remoteSessionClient(target: string | undefined = process.env.APEX_REMOTE): SessionClient | undefined {
  return target ? remoteClient(target) : undefined;
}

/**
 * What a command must use instead of the store, if anything: a remote session
 * (`apex --remote HOST/SESSION`, or APEX_REMOTE), else, inside an agent, its supervisor's
 * socket (APEX_SOCKET): the agent's process group never opens a store, so a store other than
 * its supervisor's is refused.
 */
async function forcedClient(location: StoreLocation): Promise<SessionClient | undefined> {
  const remote = process.env.APEX_REMOTE;
  if (remote) return remoteClient(remote);
  const socket = process.env.APEX_SOCKET;
  if (!socket) return undefined;
  const session = agentSession();
  const own = session === undefined ? undefined : liveSupervisorOf(location.storeDir, session);
  if (own?.socket !== socket) return socketClient(socket);
  await onNamedStore(location, own, true);
  return socketClient(socket, own);
}

/**
 * A session on another host, through the registered transport. The transport (and with it
 * node:http) is loaded on the first call, as before, so that a local command never loads it;
 * a target it cannot read fails that call.
 */
function remoteClient(target: string): SessionClient {
  const connected = import("../../plugins/index.js").then(async ({ builtinTransports }) => (await builtinTransports.http!()).connect(target));
  connected.catch(() => {}); // reported by the call that awaits it
  return {
    via: "remote",
    call: async (method, params, timeoutMs, onEvent) => (await connected).call(method, params, timeoutMs, onEvent),
    run: async (method, params, here, timeoutMs) => (await connected).run(method, params, here, timeoutMs),
    subscribe: (method, params, onEvent) => deferredSubscription(connected.then((client) => () => client.subscribe(method, params, onEvent))),
    empty: false,
    close: async () => {},
  };
}

/** A subscription whose connection is made once `start` has loaded; closing it before then cancels it. */
function deferredSubscription(start: Promise<() => Subscription>): Subscription {
  let inner: Subscription | undefined;
  let closed = false;
  const done = start.then((open) => {
    if (closed) return;
    inner = open();
    return inner.done;
  });
  return {
    done,
    close() {
      closed = true;
      inner?.close();
    },
  };
}

async function openDirect(location: ProjectLocation, access: "read" | "write", options: OpenSessionOptions): Promise<SessionClient> {
  const { directClient } = await import("./direct.js");
  return directClient(location, access, options);
}

/** The control socket's client code, loaded on the first call (a command that reads the store here never needs it). */
const rpc = () => import("../rpc/call.js");

function socketClient(socket: string, supervisor?: SupervisorRuntime): SessionClient {
  const send = async (method: string, params: Record<string, unknown>, timeoutMs: number, onEvent?: (event: unknown) => void) =>
    (await rpc()).callSupervisor(socket, method, params, timeoutMs, supervisor && whenStopped(supervisor, method), onEvent);
  // Its socket gone (ENOENT) or a socket file there that no one listens on (ECONNREFUSED: an old one put back), nothing
  // sent, while it runs: the supervisor listens there again within half a second (RpcServer), and the call is made once more.
  const call = async (method: string, params: Record<string, unknown> = {}, timeoutMs = 120_000, onEvent?: (event: unknown) => void) =>
    send(method, params, timeoutMs, onEvent).catch(async (error: ApexError) => (supervisor && (await socketBack(socket, supervisor, error?.details?.connection)) ? send(method, params, timeoutMs, onEvent) : Promise.reject(error)));
  return {
    via: "socket",
    call,
    run: async (method, params, _here, timeoutMs) => (await call(method, params, timeoutMs)) as never,
    subscribe: (method, params, onEvent) => deferredSubscription(rpc().then(({ subscribeSupervisor }) => () => subscribeSupervisor(socket, method, params, onEvent))),
    empty: false,
    ...(supervisor ? { supervisor } : {}),
    close: async () => {},
  };
}

/**
 * After a connect that failed with `connection` (ENOENT: no file; ECONNREFUSED: a socket file no one
 * listens on), true once the socket of a live supervisor is back (within 1.5 s): a file there, or for
 * ECONNREFUSED one that accepts; false when it exits first (a stop: the socket goes last, and the
 * caller waits for the exit), has not made it again, or another failure. Another kind of file there
 * (ECONNREFUSED too) is never made a socket again: false at once.
 */
async function socketBack(socket: string, runtime: SupervisorRuntime, connection: unknown): Promise<boolean> {
  if (connection !== "ENOENT" && connection !== "ECONNREFUSED") return false;
  for (const end = Date.now() + 1500; Date.now() < end && isSameProcessAlive(runtime.pid, runtime.start_time); await sleep(25)) {
    const found = statSync(socket, { throwIfNoEntry: false });
    if (connection === "ENOENT" && found) return true;
    if (connection === "ECONNREFUSED" && found && !found.isSocket()) return false;
    if (connection === "ECONNREFUSED" && found && (await (await import("../rpc/server.js")).socketAnswers(socket, 250))) return true;
  }
  return false;
}

/**
 * Fails a call that waits on a supervisor seen stopped (state T: SIGSTOP, SIGTSTP) twice in a row,
 * a second apart: it answers nothing before a SIGCONT, and the call would wait out its timeout.
 */
function whenStopped(runtime: SupervisorRuntime, method: string): () => ApexError | undefined {
  let seen = 0;
  return () => {
    const stat = readProcStat(runtime.pid);
    seen = stat?.state === "T" && stat.startTime === runtime.start_time ? seen + 1 : 0;
    if (seen < 2) return undefined;
    return new ApexError("APEX_E_TIMEOUT", `Session ${runtime.session_id}'s supervisor (pid ${runtime.pid}) is stopped (SIGSTOP): it cannot answer ${method}.`, {
      hint: `\`kill -CONT ${runtime.pid}\` lets it go on, and it may then still carry out this call (its request was sent); \`apex stop --force\` ends the session.`,
      details: { stopped: true, pid: runtime.pid, session_id: runtime.session_id },
    });
  };
}

/** Calls go to the supervisor; one that fails or does not answer in time is made on the store instead. */
function supervisorFirst(live: SessionClient, timeoutMs: number, openStoreClient: () => Promise<SessionClient>): SessionClient {
  let fallback: Promise<SessionClient> | undefined;
  const store = () => (fallback ??= openStoreClient());
  return {
    via: live.via,
    async call(method, params = {}) {
      try {
        return await live.call(method, params, timeoutMs);
      } catch {
        return (await store()).call(method, params);
      }
    },
    async run(method, params, here) {
      try {
        return (await live.call(method, params, timeoutMs)) as never;
      } catch {
        return (await store()).run(method, params, here);
      }
    },
    subscribe: live.subscribe,
    empty: false,
    ...(live.supervisor ? { supervisor: live.supervisor } : {}),
    async close() {
      if (fallback) await (await fallback).close();
    },
  };
}
