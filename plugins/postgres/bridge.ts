/**
 * Synchronous calls over node-postgres, which is asynchronous: the client runs in a worker
 * thread, and the calling thread posts a request on a MessagePort and blocks in Atomics.wait
 * until the worker has posted the answer and flipped a shared flag; it then takes the answer
 * with receiveMessageOnPort. One crossing costs a few tens of microseconds (bench/sync-bridge.bench.mjs
 * measures it against synckit), and a request may carry several statements, which the worker
 * runs one after the other on its one connection.
 *
 * The worker's code is the function workerMain below, sent as source (an `eval` worker):
 * that works the same from the compiled dist/ and from the TypeScript sources under test,
 * and it loads `pg` by the path this module resolves, so nothing else ever loads it.
 */
import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import { ApexError } from "../../core/errors.js";
import { NO_HOST, parsePostgresUrl } from "./identity.js";

/** One statement: text and parameters; `name` makes it a prepared statement (parsed once per connection). */
export interface Statement {
  text: string;
  values?: unknown[];
  name?: string;
}

/** The rows of one statement, each an array of column values (rowMode "array"). */
export type Rows = unknown[][];

/** What the worker reports for a failed request: enough for the caller to build a clear ApexError. */
export interface WorkerFailure {
  message: string;
  /** A Node system error code (ECONNREFUSED, ENOTFOUND, …) or PostgreSQL's SQLSTATE (28P01, 3D000, …). */
  code?: string;
  /** The index of the statement that failed in a `run` request. */
  step?: number;
  /** The connection was found lost before anything of the request was sent: it can be sent on a new one. */
  unsent?: boolean;
}

export class BridgeError extends Error {
  readonly failure: WorkerFailure;
  constructor(failure: WorkerFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

type Request =
  | { op: "connect"; url: string; setup: string[]; timeoutMs: number }
  | { op: "run"; steps: Statement[] }
  | { op: "close" }
  | { op: "abort" };

/** How long one call may block before the caller gives up (a statement_timeout should fire long before). */
const CALL_TIMEOUT_MS = 10 * 60_000;

/** A wait for the worker's answer that ends this much later than asked means this process was stopped meanwhile (see SyncBridge.call). */
const STOPPED_MS = 1000;

/** How long a connection may take to be ready when neither the URL nor the environment says. */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;

/**
 * How long connecting to `url` may take, in milliseconds, as libpq reads it: the URL's
 * `connect_timeout`, else PGCONNECT_TIMEOUT, in seconds (0: no limit); else 10 s. node-postgres
 * has no limit of its own, so a host that drops packets, or a server that accepts the connection
 * and never answers (another service on the port), would block the caller until CALL_TIMEOUT_MS.
 */
export function connectTimeoutMs(url: string, env: NodeJS.ProcessEnv = process.env): number {
  let given: string | null | undefined;
  try {
    given = parsePostgresUrl(url).searchParams.get("connect_timeout");
  } catch {
    given = undefined;
  }
  given ??= env.PGCONNECT_TIMEOUT;
  const seconds = given !== undefined && given !== null && given.trim() !== "" ? Number(given) : DEFAULT_CONNECT_TIMEOUT_S;
  if (!Number.isFinite(seconds) || seconds < 0) return DEFAULT_CONNECT_TIMEOUT_S * 1000;
  // libpq: 0 waits for ever; a timeout below 2 s is taken as 2 s.
  return seconds === 0 ? 0 : Math.max(2, Math.floor(seconds)) * 1000;
}

/**
 * The connection strings the driver is given for a store URL, in the order they are tried, so
 * that `sslmode` means what it means to libpq (psql, pg_dump), which is how the URL is written:
 * - `require`: encrypted, the certificate not checked (with `sslrootcert`, checked as verify-ca);
 *   `verify-ca`: checked against `sslrootcert`, the host name not; `verify-full`: both;
 *   `prefer`: as require, or unencrypted from a server without SSL; `allow`: unencrypted, or as
 *   require from a server that takes only SSL connections; `disable`: unencrypted.
 * node-postgres 8 reads prefer, require and verify-ca as verify-full, warns so on stderr
 * ("SECURITY WARNING: The SSL modes 'prefer', 'require', and 'verify-ca' are treated as aliases
 * for 'verify-full'", many lines, from every command), and has no fallback: `uselibpqcompat=true`
 * is its documented switch to libpq's meaning (its next major version's default). A URL that
 * sets `uselibpqcompat` itself is given as it is.
 */
export function driverUrls(url: string, env: NodeJS.ProcessEnv = process.env): string[] {
  let query: URLSearchParams;
  let hostname: string;
  try {
    const parsed = parsePostgresUrl(url);
    query = parsed.searchParams;
    hostname = parsed.hostname === NO_HOST ? "" : decodeURIComponent(parsed.hostname);
  } catch {
    return [url];
  }
  // PGSSLMODE stands for a URL's missing sslmode, as for libpq (the driver reads it as verify-full too).
  const given = query.get("sslmode");
  const mode = given ?? (query.has("ssl") ? null : (env.PGSSLMODE ?? null));
  // libpq never uses SSL on a unix socket, whatever the sslmode; the driver asked for it there, and failed ("does not support SSL").
  const socket = (query.get("host") || hostname || env.PGHOST || "").startsWith("/") && mode !== null && mode !== "disable";
  if (!socket && (query.has("uselibpqcompat") || (mode !== "prefer" && mode !== "require" && mode !== "verify-ca" && mode !== "allow"))) return [url];
  // (the URL's own text is kept: only its sslmode changes and parameters are added, before any fragment)
  const hash = url.indexOf("#");
  const [head, tail] = hash < 0 ? [url, ""] : [url.slice(0, hash), url.slice(hash)];
  const join = (text: string, parameter: string) => `${text}${text.includes("?") ? "&" : "?"}${parameter}`;
  const withMode = (to: string, compat: boolean) => {
    const moded = given === null ? join(head, `sslmode=${to}`) : head.replace(/([?&]sslmode=)[^&]*/g, `$1${to}`);
    return `${compat ? join(moded, "uselibpqcompat=true") : moded}${tail}`;
  };
  if (socket) return [withMode("disable", false)];
  if (mode === "prefer") return [withMode("prefer", true), withMode("disable", false)];
  if (mode === "allow") return [withMode("disable", false), withMode("require", true)];
  return [withMode(mode, true)];
}

/** The sslmode values a URL may give: libpq's, and node-postgres's `no-verify` (encrypted, nothing checked). */
const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full", "no-verify"];

/**
 * What makes a URL's SSL parameters unusable, as a sentence and a hint, or undefined: a file
 * (sslrootcert, sslcert, sslkey) this process cannot read, an sslmode libpq
 * does not know (the driver took any for verify-full), or verify-ca without `sslrootcert`, the
 * CA it checks the certificate against (the driver failed each connection with a many-line
 * "SECURITY WARNING").
 */
export function sslModeProblem(url: string): { problem: string; hint: string } | undefined {
  let query: URLSearchParams;
  try {
    query = parsePostgresUrl(url).searchParams;
  } catch {
    return undefined;
  }
  // The driver reads these files as it connects: one it cannot read failed as a server out of reach ("Is the server running?").
  for (const name of ["sslrootcert", "sslcert", "sslkey"]) {
    const file = query.get(name);
    if (!file) continue;
    try {
      accessSync(file, constants.R_OK);
    } catch (error) {
      return { problem: `has ${name}=${file}, which cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, hint: `${name} names a PEM file this user can read: fix the path or the file's permissions.` };
    }
  }
  const mode = query.get("sslmode");
  if (mode === null) return undefined;
  if (!SSL_MODES.includes(mode)) {
    return { problem: `has an unknown sslmode ${JSON.stringify(mode)}`, hint: `sslmode is one of ${SSL_MODES.slice(0, 6).join(", ")}, as for psql.` };
  }
  if (mode === "verify-ca" && !query.get("sslrootcert") && !query.has("uselibpqcompat")) {
    return {
      problem: "has sslmode=verify-ca without sslrootcert",
      hint: "verify-ca checks the server's certificate against the CA in sslrootcert=FILE (a PEM file): add it, or use sslmode=verify-full to check it, and the host name, against the system's CAs.",
    };
  }
  return undefined;
}

/**
 * Whether a connection refused with `failure` may be made with the next of driverUrls: a server
 * without SSL (after prefer's encrypted attempt), or one that takes only encrypted connections
 * (after allow's unencrypted one: pg_hba.conf's `hostssl`, "… no encryption").
 */
export function fallsBack(failure: WorkerFailure): boolean {
  return /does not support SSL/i.test(failure.message) || (failure.code === "28000" && /no encryption/i.test(failure.message));
}

/** The longest time calls fail at once after a failed reconnection, before the next attempt. */
export const RECONNECT_BACKOFF_MS = 1000;

/**
 * How long calls fail at once after a reconnection that failed in `elapsedMs`: ten times what the
 * attempt blocked the caller, up to RECONNECT_BACKOFF_MS, so attempts take at most about a tenth
 * of the caller's time. A server that refuses at once ("shutting down", "starting up") is asked
 * again within milliseconds, and a call made once it is back succeeds: with a flat second, a call
 * up to a second after a restart failed on the attempt made during it. (A refused connection,
 * ECONNREFUSED, is asked again at the next call: SyncBridge.reconnect.) One that makes the caller
 * wait (a host dropping packets, until connect_timeout) is asked once a second.
 */
export function reconnectBackoffMs(elapsedMs: number): number {
  return Math.min(RECONNECT_BACKOFF_MS, Math.max(0, Math.ceil(elapsedMs * 10)));
}

export class SyncBridge {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag: Int32Array;
  private closed = false;
  /**
   * Set when the worker reported a fatal problem. A lost connection (`reconnect`) is made anew
   * by the next call that is not pinned to it; a worker that stopped answering is not.
   */
  private broken: (WorkerFailure & { reconnect: boolean }) | undefined;
  /** What connect() was given, to connect again after a loss: the URL and the session settings (with addSetup's). */
  private target: { url: string; setup: string[] } | undefined;
  /** No reconnection is tried before this time (Date.now()): the last one failed. */
  private retryAt = 0;
  private connections = 0;
  /** Set by boundCalls: the time (performance.now()) a call begun at `startedAt` may wait until. */
  bound: ((startedAt: number) => number) | undefined;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.flag = new Int32Array(new SharedArrayBuffer(4));
    const pgPath = createRequire(import.meta.url).resolve("pg");
    this.worker = new Worker(`(${workerMain.toString()})()`, {
      eval: true,
      workerData: { port: port2, flag: this.flag, pgPath },
      transferList: [port2],
      // The worker's source is CommonJS. A worker inherits the process's execArgv by default, and
      // with --input-type=module (node -e scripts) it would fail to load before it could answer,
      // leaving the caller blocked until CALL_TIMEOUT_MS: it needs none of the process's flags.
      execArgv: [],
    });
    // The worker never keeps the process alive: pending writes are awaited by their callers.
    this.worker.unref();
    this.worker.on("error", () => undefined);
    this.port = port1;
    this.port.unref();
  }

  /** Connects the worker's client and runs `setup` (session settings) on it; gives up after connectTimeoutMs(url). */
  connect(url: string, setup: string[]): void {
    this.connectTo(url, setup);
    this.target = { url, setup: [...setup] };
    this.connections += 1;
  }

  /** Connects with each of driverUrls(url) in turn while the server refuses one that the next may suit. */
  private connectTo(url: string, setup: string[]): void {
    const urls = driverUrls(url);
    for (let i = 0; ; i++) {
      try {
        this.call({ op: "connect", url: urls[i]!, setup, timeoutMs: connectTimeoutMs(url) });
        return;
      } catch (error) {
        if (i + 1 >= urls.length || !(error instanceof BridgeError) || !fallsBack(error.failure)) throw error;
      }
    }
  }

  /** Runs a session setting now and again on every later connection (a reconnection included, also when running it now failed). */
  addSetup(text: string): void {
    this.target?.setup.push(text);
    this.run([{ text }]);
  }

  /**
   * Which connection the calls go to: it changes when a lost connection is made anew. What
   * lives in a connection (an open transaction, a read view) is gone with it: a caller that
   * holds one passes its connection to run() (`pinned`), and the call then fails instead of
   * running on another connection.
   */
  get connection(): number {
    return this.connections;
  }

  /**
   * Runs statements one after the other on the connection; returns the rows of each. After the
   * connection was lost, a call connects again first (with the same URL and settings), as does
   * one that finds it lost before anything was sent; a reconnection that fails is not tried
   * again for reconnectBackoffMs of the time it took. A `pinned` call never reconnects: it fails unless its
   * connection is the one in use and alive.
   */
  run(steps: Statement[], pinned?: number): Rows[] {
    if (pinned !== undefined && pinned !== this.connections) {
      throw new BridgeError({ message: "lost the connection to PostgreSQL (a new one was made since: what ran on the old one is gone)", code: "ECONNRESET" });
    }
    const request: Request = { op: "run", steps };
    if (pinned === undefined && this.reconnectable()) this.reconnect();
    try {
      return this.call(request) as Rows[];
    } catch (error) {
      // Lost while idle (the server restarted, an idle connection was ended): nothing was sent,
      // so the request goes to a new connection.
      if (pinned === undefined && error instanceof BridgeError && error.failure.unsent && this.reconnectable()) {
        this.reconnect();
        return this.call(request) as Rows[];
      }
      throw error;
    }
  }

  private reconnectable(): boolean {
    return this.broken?.reconnect === true && !this.closed && this.target !== undefined;
  }

  private reconnect(): void {
    const lost = this.broken!;
    if (Date.now() < this.retryAt) throw new BridgeError(lost);
    const { url, setup } = this.target!;
    this.broken = undefined;
    const started = performance.now();
    try {
      this.connectTo(url, setup);
    } catch (error) {
      const failure = error instanceof BridgeError ? error.failure : { message: String((error as Error)?.message ?? error) };
      // Not connected: still lost, whatever the attempt said (a refused connection, a timeout),
      // unless the worker stopped answering (call() marked it so).
      const stuck = (this.broken as { reconnect: boolean } | undefined)?.reconnect === false;
      this.broken = { ...failure, code: failure.code ?? lost.code ?? "ECONNRESET", reconnect: !stuck };
      // A refused connection (nothing listens there: a server restarting) is asked again at the next call, however long
      // the attempt took: on a loaded machine a refusal measured 0.1 s, and calls failed for a second after the server was back.
      this.retryAt = failure.code === "ECONNREFUSED" ? 0 : Date.now() + reconnectBackoffMs(performance.now() - started);
      throw new BridgeError(this.broken);
    }
    this.connections += 1;
    this.retryAt = 0;
  }

  /** Runs one statement and returns its rows. */
  query(text: string, values?: unknown[], name?: string): Rows {
    const statement: Statement = { text };
    if (values) statement.values = values;
    if (name) statement.name = name;
    return this.run([statement])[0]!;
  }

  private call(request: Request): unknown {
    if (this.closed) throw new ApexError("APEX_E_STORE", "The PostgreSQL store is closed.");
    if (this.broken) throw new BridgeError(this.broken);
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage(request);
    const started = performance.now();
    let limit = started + CALL_TIMEOUT_MS;
    let bound = request.op === "close" ? Infinity : (this.bound?.(started) ?? Infinity);
    /** How long this process was stopped during the call: time the server and the worker had no chance to use. */
    let stoppedMs = 0;
    // Only the flag says the answer is there. A wait can end with "ok" while it is still 0: the
    // worker notifies after storing the flag of the previous answer, and that notify may land
    // in this call's wait (taken for an answer, it made the call fail with no message to read).
    while (Atomics.load(this.flag, 0) === 0) {
      const left = Math.min(limit, bound) - performance.now();
      if (left <= 0) {
        if (bound < limit && this.abort()) {
          const stopped = stoppedMs > 0 ? ` (not counting the ${(stoppedMs / 1000).toFixed(1)} s this process was stopped)` : "";
          this.broken = { message: `no answer from PostgreSQL within ${((performance.now() - started - stoppedMs) / 1000).toFixed(1)} s, the time this process's lease allows${stopped}`, code: "ETIMEDOUT", reconnect: true };
          throw new BridgeError(this.broken);
        }
        this.broken = { message: `no answer from the PostgreSQL client within ${CALL_TIMEOUT_MS / 1000} s`, code: "ETIMEDOUT", reconnect: false };
        throw new ApexError("APEX_E_TIMEOUT", `The PostgreSQL store did not answer within ${CALL_TIMEOUT_MS / 1000} s.`);
      }
      const waitedFrom = performance.now();
      Atomics.wait(this.flag, 0, 0, Math.max(1, left));
      // Woken far later than asked: this process was stopped meanwhile (SIGSTOP, a host put to
      // sleep), the worker with it, and the server's answer may be waiting unread in its socket.
      // That wait does not count against the call. Counted, the call timed out as soon as the
      // process ran again, before the worker could read an answer the server had sent: it failed
      // as "Cannot reach PostgreSQL", and a supervisor that another host had meanwhile taken the
      // session from said its store was out of reach.
      const waited = performance.now() - waitedFrom;
      if (waited - Math.max(1, left) >= STOPPED_MS) {
        stoppedMs += waited;
        limit += waited;
        bound += waited;
      }
    }
    const message = this.takeAnswer();
    if (!message) throw new ApexError("APEX_E_INTERNAL", "The PostgreSQL client signalled an answer but sent none.");
    const reply = message.message as { ok?: unknown; error?: WorkerFailure; fatal?: boolean };
    if (reply.error) {
      if (reply.fatal) this.broken = { ...reply.error, reconnect: true };
      throw new BridgeError(reply.error);
    }
    return reply.ok;
  }

  /**
   * Gives up the request in flight: the worker cuts its connection (the request then fails
   * there), and its answer is taken and dropped. False if it does not come within 5 s (the
   * worker itself is stuck).
   */
  private abort(): boolean {
    this.port.postMessage({ op: "abort" } satisfies Request);
    const until = performance.now() + 5_000;
    while (Atomics.load(this.flag, 0) === 0) {
      const left = until - performance.now();
      if (left <= 0) return false;
      Atomics.wait(this.flag, 0, 0, Math.max(1, left));
    }
    return this.takeAnswer() !== undefined;
  }

  /**
   * The answer the flag announced. The worker posts the message before it stores the flag, so
   * the message is queued by now; should it not be readable yet, it is waited for, a
   * millisecond at a time, for up to 5 s.
   */
  private takeAnswer(): { message: unknown } | undefined {
    let message = receiveMessageOnPort(this.port);
    for (let waited = 0; !message && waited < 5_000; waited++) {
      Atomics.wait(this.flag, 0, 1, 1);
      message = receiveMessageOnPort(this.port);
    }
    return message;
  }

  /** Ends the connection and the worker. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.broken) this.call({ op: "close" });
    } catch {
      /* closing anyway */
    }
    this.closed = true;
    this.port.close();
    await this.worker.terminate();
  }
}

/**
 * The worker: one pg.Client, requests handled one at a time (the caller is blocked while it
 * waits, so there is never more than one). Self-contained: it is sent as source text.
 */
function workerMain(): void {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { workerData } = require("node:worker_threads") as typeof import("node:worker_threads");
  const { port, flag, pgPath } = workerData as { port: import("node:worker_threads").MessagePort; flag: Int32Array; pgPath: string };
  const pg = require(pgPath) as typeof import("pg");
  // int8 (revisions, counts) as numbers: APEX's revisions stay far below 2^53.
  const arrayOfText = (pg.types.getTypeParser as unknown as (oid: number) => (value: string) => string[])(1009);
  const parsers: Record<number, (value: string) => unknown> = { 20: Number, 1016: (value: string) => arrayOfText(value).map(Number) };
  const types = { getTypeParser: (oid: number, format?: string) => parsers[oid] ?? pg.types.getTypeParser(oid, format as "text") };
  let client: import("pg").Client | undefined;
  let lost: { message: string; code?: string } | undefined;

  const failure = (error: unknown, step?: number) => {
    const e = error as { message?: string; code?: string };
    const out: { message: string; code?: string; step?: number } = { message: String(e?.message ?? error) };
    if (typeof e?.code === "string") out.code = e.code;
    if (step !== undefined) out.step = step;
    return out;
  };

  /** True while a request is being handled: only then may an answer be posted (the caller takes exactly one). */
  let busy = false;
  const answer = (reply: unknown) => {
    if (!busy) return;
    busy = false;
    port.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  };

  // Anything thrown outside a request's handling still answers the caller blocked on it.
  process.on("uncaughtException", (error) => {
    lost = { message: `the PostgreSQL client failed: ${error.message}`, code: "ECONNRESET" };
    answer({ error: lost, fatal: true });
  });

  port.on("message", async (request: { op: string; url?: string; setup?: string[]; timeoutMs?: number; steps?: Array<{ text: string; values?: unknown[]; name?: string }> }) => {
    if (request.op === "abort") {
      // The caller gave up the request in flight: its connection is cut, so that the request
      // fails now (and answers) instead of when the network gives up. Nothing in flight: nothing to do.
      if (!busy) return;
      lost = { message: "the request was given up (no answer in time)", code: "ETIMEDOUT" };
      const socket = (client as unknown as { connection?: { stream?: { destroy(): void } } } | undefined)?.connection?.stream;
      if (socket) socket.destroy();
      else answer({ error: lost, fatal: true });
      return;
    }
    busy = true;
    if (lost && request.op !== "connect") return answer({ error: { ...lost, unsent: true }, fatal: true });
    try {
      if (request.op === "connect") {
        // A new connection, replacing one that was lost (whose socket is gone: not waited for).
        const previous = client;
        client = undefined;
        void previous?.end().catch(() => undefined);
        const timeoutMs = request.timeoutMs ?? 0;
        const connection = new pg.Client({ connectionString: request.url, types, application_name: "apex", connectionTimeoutMillis: timeoutMs } as import("pg").ClientConfig);
        client = connection;
        connection.on("error", (error) => {
          // (an old connection ending late does not mark its successor lost)
          if (client === connection) lost = { message: `lost the connection to PostgreSQL: ${error.message}`, code: (error as { code?: string }).code ?? "ECONNRESET" };
        });
        lost = undefined;
        const started = Date.now();
        // What the server says first: a PostgreSQL server answers a startup (or SSL) request
        // with one of these message types. Anything else is another service on the port (HTTP,
        // SSH, …), which the driver would wait on until connect_timeout, taking its bytes for the
        // length of a message still to come: cut off at its first bytes instead.
        let heard: Buffer | undefined;
        const stream = (connection as unknown as { connection?: { stream?: import("node:net").Socket } }).connection?.stream;
        stream?.once("data", (chunk: Buffer) => {
          heard = chunk;
          if (!"REvNS".includes(String.fromCharCode(chunk[0]!))) stream.destroy();
        });
        try {
          await connection.connect();
          for (const text of request.setup ?? []) await connection.query(text);
        } catch (error) {
          client = undefined;
          void connection.end().catch(() => undefined);
          if (heard && !"REvNS".includes(String.fromCharCode(heard[0]!))) {
            const shown = heard.subarray(0, 40).toString("latin1").replace(/[^\x20-\x7e]/g, ".");
            return answer({ error: { message: `the server there does not speak PostgreSQL's protocol (it answered ${JSON.stringify(shown)})`, code: "EPROTO" } });
          }
          const code = (error as { code?: unknown })?.code;
          if (!heard && (code === "ECONNRESET" || (code === undefined && /terminated unexpectedly/i.test(String((error as Error)?.message))))) {
            return answer({ error: { message: "the server closed the connection without a word (not a PostgreSQL server, or a proxy in front of one that refused it)", code: "ECONNRESET" } });
          }
          // node-postgres ends a connection that is not ready in time with a plain "timeout expired" (or "… due to connection timeout").
          if (timeoutMs > 0 && Date.now() - started >= timeoutMs - 50 && typeof (error as { code?: unknown })?.code !== "string") {
            return answer({ error: { message: `no answer within ${timeoutMs / 1000} s (connect_timeout)`, code: "ETIMEDOUT" } });
          }
          throw error;
        }
        return answer({ ok: null });
      }
      if (request.op === "close") {
        const c = client;
        client = undefined;
        if (c) await c.end();
        return answer({ ok: null });
      }
      if (!client) throw new Error("not connected");
      const results: unknown[][][] = [];
      const steps = request.steps ?? [];
      for (let i = 0; i < steps.length; i++) {
        const step = steps[i]!;
        try {
          const config: import("pg").QueryArrayConfig = { text: step.text, rowMode: "array" };
          if (step.values) config.values = step.values;
          if (step.name) config.name = step.name;
          const result = await client.query(config);
          results.push(result.rows);
        } catch (error) {
          // A connection that ended with no word from the server ("Connection terminated
          // unexpectedly": the server or the network went away mid-statement) gives the statement
          // an error without a code: it is the loss's, so that it reads as a server out of reach.
          const out = failure(error, i);
          // A FATAL answer (the server ended the session: terminated, shutting down, an idle
          // timeout) ends the connection, whether or not the client's own error came first: the
          // next request connects again instead of failing on the dead one.
          const severity = (error as { severity?: string })?.severity;
          if (!lost && (severity === "FATAL" || severity === "PANIC")) lost = { message: `lost the connection to PostgreSQL: ${out.message}`, code: out.code ?? "ECONNRESET" };
          if (lost && out.code === undefined && lost.code !== undefined) out.code = lost.code;
          return answer({ error: out, fatal: lost !== undefined });
        }
      }
      return answer({ ok: results });
    } catch (error) {
      return answer({ error: failure(error), fatal: lost !== undefined });
    }
  });
}
