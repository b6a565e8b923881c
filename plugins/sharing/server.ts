import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import { isIP, type Socket } from "node:net";
import { createSecureContext, TLSSocket } from "node:tls";
import type { Duplex } from "node:stream";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError, isApexError, type ErrorCode, withDetail } from "../../core/errors.js";
import { APEX_VERSION } from "../../core/plugins.js";
import { callSupervisor, subscribeSupervisor, type Subscription } from "../../core/rpc/call.js";
import { SupervisorChannel } from "./supervisor-channel.js";
import { errorBody, idleWindowMs, unknownMethod } from "../../core/rpc/protocol.js";
import { heartbeatReply } from "./heartbeat-reply.js";
import { httpStatus, publicError } from "./internal-error.js";
import { FORCE_IDLE_MS, heartbeatFor } from "../../cli/session/lifecycle-wait.js";
import { MAX_DEPTH } from "../value-codec.js";
import { compileGlob } from "../../core/store/glob.js";
import { isLoopback, SESSION_REF } from "./remote.js";
import { authenticate, grantPath, INVALID_TOKEN, isTokenShaped, revokedAccess, roleAllows, touchGrant, TOUCH_INTERVAL_MS, unauthorized, type Caller, type Role } from "./grants.js";
import { GrantWatch } from "./grant-watch.js";
import { AcceptedTokens, clientKey, ConnectionLimit, LoginThrottle, RefusedTokens, type ThrottleOptions } from "./throttle.js";
import type { SessionEvent, SessionRecord } from "../../core/session/records.js";
import { readableByUser, readOnlySession, readStored, sessionAncestry, STORED_READS, storedEvents, storedSession, withReadStore } from "./archive.js";
import { refuseInexactNumbers } from "../../cli/json-numbers.js";
import { refuseRepeatedKeys } from "../../cli/memory-actions.js";
import { followLogs, logFiles, readLogTail, requireAgentLogs, supervisorEnded, type LogFile, type LogLine } from "../../cli/session/logs.js";
import { agentLogDir, liveSupervisorOf, liveSupervisors, type SupervisorRuntime } from "../../core/session/runtime.js";
import { effectiveStatus, resolveSessionId } from "../../core/session/sessions.js";
import { shortSessionId } from "../../core/session/names.js";
import { remotePluginCommand, type CommandSessionLookup } from "./command-scope.js";
import { isInternalMethod, isPinningCreate, isProjectMethod, roleNeeded, roleTable } from "./roles.js";
import { remoteEntryValue, remoteEvent, remoteResult } from "./redact.js";
import { StagedImports } from "./staged-imports.js";
import { forceStopOnHost, isStopped, withStoppedFlag } from "./frozen.js";
import { CHECKPOINT_WRITES, checkRemoteWrite, hiddenRead, pinnedParams, scopedError, scopedListing, scopedResult, SESSION_LISTINGS } from "./scope.js";

/**
 * `apex serve`: a project's session over HTTP(S) for the users it is shared with. Every
 * request carries a grant's token (Authorization: Bearer …); the server checks it and the
 * role the method needs, then passes the call to the session's writer — the live
 * supervisor's socket, or the store directly when none runs — with the caller as the actor,
 * so the audit trail names them. The server keeps no state of its own beyond open streams.
 */
export interface ServeOptions {
  location: ProjectLocation;
  /** host:port; port 0 picks a free one. */
  listen: string;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  /** Plain HTTP on a non-loopback address. */
  insecure?: boolean | undefined;
  /** Origins allowed to call the API from a browser (none by default: no CORS headers at all). */
  corsOrigins?: string[] | undefined;
  /** Host names a request may be addressed to besides loopback ones (a proxy's, a tunnel's, the server's own): checked on a loopback address always, on another once some are given. */
  allowHosts?: string[] | undefined;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number | undefined;
  /** One line per request (never a token) and per notable event. */
  log?: ((line: string) => void) | undefined;
  /** Where a failure of the server's own is written whole, under the reference its 500 gives (internal-error.ts); default: `log`. */
  errorLog?: ((line: string) => void) | undefined;
  /** How failed logins slow a client down, and how many client addresses are remembered (plugins/sharing/throttle.ts). */
  throttle?: ThrottleOptions | undefined;
  /**
   * A supervisor's own server (`sharing.serve`), which stops with its session: its memory.changes
   * replies say so (`server: "sharing.serve"`), so that `memory watch` can tell, once nothing listens
   * at its address any more, that no server will come back there as a restarted `apex serve` does.
   */
  closesWithSession?: boolean | undefined;
  /** Connections held at once (default DEFAULT_MAX_CONNECTIONS); past it, new ones are refused (503) until some close. */
  maxConnections?: number | undefined;
  /** Connections held at once from one client address (an IPv6 /64); default a quarter of maxConnections. */
  maxConnectionsPerAddress?: number | undefined;
  /** How long a connection refused for the limits may take in all, its TLS handshake and reading its answer (REFUSED_LINGER_MS). */
  refusedLingerMs?: number | undefined;
}

export interface RunningServer {
  url: string;
  port: number;
  /**
   * Stops serving. `ended`: the session whose end closes the server (a supervisor's server, at its
   * session's onStop): its streams end as a session's end does; every other stream is told the
   * server went away (APEX_E_RPC, `details.connection: "closing"`), which its client exits non-zero on.
   */
  close(ended?: { sessionId: string; name?: string | null }): Promise<void>;
}

const DASHBOARD_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "../../../plugins/sharing/dashboard");
/** The charting library, served from the installed package (no CDN: the dashboard works offline). */
const VENDORED: Record<string, string> = { "uplot.js": "uplot/dist/uPlot.iife.min.js", "uplot.css": "uplot/dist/uPlot.min.css" };
/** The most lines `logs.read` sends a remote caller in one reply. */
const REMOTE_LOG_LINES = 100_000;
const STREAM_METHODS = ["events.subscribe", "logs.follow", "memory.watch"] as const;
const RECHECK_MS = 1000;
/** Open streams one grant may hold at once (dashboard tabs, `apex connect`, `logs -f`, `memory watch`). */
export const MAX_STREAMS_PER_GRANT = 16;
const STORED_EVENTS_POLL_MS = 500;
const HEARTBEAT_MS = 15_000;
const REPORT_MS = 10_000;
/** A user who made a request this recently is listed as connected (`apex status`). */
const RECENT_MS = 30_000;
/** The deepest request body: a value at the deepest a value may be (MAX_DEPTH), inside a few levels of parameters. */
const MAX_BODY_DEPTH = MAX_DEPTH + 8;
/**
 * How long a read (a token's check, a status) waits on the session's supervisor before the store is
 * read instead (5 s, or the idle window APEX_PLUGIN_COMMAND_IDLE_MS when shorter): a supervisor frozen (a hook that holds its process) or stopped held every request
 * to its session for 120 s, and then failed it (504), while the store had the answer.
 */
const supervisorReadMs = (): number => Math.min(5_000, idleWindowMs());
/** How long a client may take to send a whole request (headers and body, at most 1 MiB by default). */
const REQUEST_TIMEOUT_MS = 60_000;
/** How much of a stream its client may leave unread (in this process's memory) before the stream ends. */
const MAX_UNREAD_BYTES = 16 * 1024 * 1024;
/** Connections held at once by default: a client sending half a request holds one for REQUEST_TIMEOUT_MS; thousands would use up the process's file descriptors. */
export const DEFAULT_MAX_CONNECTIONS = 1000;
/** How often (at most) the log says that connections are refused for the limit. */
const REFUSED_LOG_MS = 60_000;
/** How long a refused connection may take to read its answer before it is cut. */
const REFUSED_LINGER_MS = 2000;
/** At close, how long requests under way may take to finish before their connections are cut. */
const CLOSE_GRACE_MS = 5000;
/** At a supervisor's own server's close, how long its session's streams may take to send what the session wrote up to its end. */
const SESSION_END_DRAIN_MS = 2000;
/**
 * A caller that polled memory.changes of a session this recently (`apex --remote … memory watch`
 * polls every 100 ms, once a second while the server is away) is waited for as a supervisor's own
 * server closes with that session, until it has been answered the session's end (`ended`).
 */
const CHANGES_POLLER_MS = 1500;

interface OpenStream {
  caller: Caller;
  token: string;
  /** The session the stream follows. */
  sid: string;
  /** Ends the stream as complete: the client is told why (an `end` event). */
  close(reason: string): void;
  /**
   * Its session has ended (a supervisor's own server closing at its onStop): each part reads to the
   * session's end (its events from the store, its logs to their ends) and ends; resolves once the stream has.
   */
  sessionEnded(): Promise<void>;
  /** Ends the stream with an error: the client did not get all it followed. */
  fail(error: unknown): void;
}

/** The methods each path of the server takes (for a 405's Allow header); the routes below are the truth. */
const ROUTE_METHODS: Array<[RegExp, string]> = [
  [/^\/(assets\/[^/]+|api\/health)?$/, "GET, HEAD"],
  [/^\/api\/sessions\/[^/]+\/(rpc\/[^/]+|stream)$/, "POST, OPTIONS"],
];
const POST_ROUTE = "POST, OPTIONS";

/** The routes whose caller is authenticated (in an onRequest hook, before the body is read); `auth` is its result. */
const AUTHENTICATED_ROUTES = new Set(["/api/sessions/:sid/rpc/:method", "/api/sessions/:sid/stream"]);
type Authenticated = FastifyRequest & { auth?: { sid: string; caller: Caller; token: string } };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Why the address could not be listened on, for people: taken (4), or not one of this host's (2). */
function listenError(error: unknown, listen: string): unknown {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === "EADDRINUSE") {
    return new ApexError("APEX_E_CONFLICT", `Cannot listen on ${listen}: another process listens there.`, { hint: "Choose another port: --listen HOST:PORT, or sharing.serve.listen in apex.config.yaml (port 0: any free port).", cause: error });
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "EADDRNOTAVAIL" || code === "EACCES" || code === "EAFNOSUPPORT") {
    const why = code === "EACCES" ? "this user may not listen on that port" : "that is not an address of this host";
    return new ApexError("APEX_E_USAGE", `Cannot listen on ${listen}: ${why} (${code}).`, { hint: "Listen on one of this host's addresses (--listen, or sharing.serve.listen in apex.config.yaml), e.g. 127.0.0.1:7433; port 0: any free port.", cause: error });
  }
  return error;
}

/**
 * An --allow-host value (sharing.serve.allow_hosts): a name as a request's Host header names the
 * server, without its port. A scheme, a port or a path would never match, silently: every request
 * through that proxy or tunnel was refused (403), e.g. for `--allow-host https://tunnel.example`.
 */
function checkAllowedHost(name: string): void {
  const isName = (text: string) => isIP(text.replace(/^\[(.*)\]$/, "$1")) !== 0 || /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*$/.test(text);
  if (isName(name)) return;
  // The name in a URL or HOST:PORT given instead, to say what to write.
  const host = /^(?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?(\[[^\]]*\]|[^:/?#\s]+)(?:[:/?#]\S*)?$/.exec(name.trim())?.[1];
  throw new ApexError("APEX_E_USAGE", `--allow-host ${JSON.stringify(name.slice(0, 200))} is not a host name as requests name the server.`, {
    hint: `Give the name alone, without a scheme, port or path${host && isName(host) ? ` (here ${host})` : ""}: requests addressed to it are answered whatever the port (--allow-host, or sharing.serve.allow_hosts in apex.config.yaml).`,
  });
}

/** HOST[:PORT] (--listen, sharing.serve.listen): the port is 7433 when left out, the host 127.0.0.1 (`:PORT`). */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]+)?:(\d{1,5})$/.exec(text) ?? /^(\[[0-9A-Fa-f:.]+\]|[^:\s[\]]+)$/.exec(text);
  const port = match?.[2] === undefined ? 7433 : Number(match[2]);
  if (!match || port > 65535) {
    throw new ApexError("APEX_E_USAGE", `Cannot read --listen ${JSON.stringify(text)}.`, { hint: "Write HOST[:PORT] (port 7433 when left out), e.g. 127.0.0.1, 127.0.0.1:7433, 0.0.0.0:7433 or [::1]:0 (0: any free port)." });
  }
  return { host: (match[1] ?? "127.0.0.1").replace(/^\[|\]$/g, ""), port };
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const { host, port } = parseListen(options.listen);
  const tls = Boolean(options.tlsCert || options.tlsKey);
  if (tls && !(options.tlsCert && options.tlsKey)) throw new ApexError("APEX_E_USAGE", "--tls-cert and --tls-key go together.");
  if (!tls && !isLoopback(host) && !options.insecure) {
    throw new ApexError("APEX_E_USAGE", `Refusing to serve plain HTTP on ${host}: tokens would cross the network in clear.`, {
      hint: "Pass --tls-cert and --tls-key, listen on 127.0.0.1 (and tunnel), or accept the risk with --insecure.",
    });
  }
  // An origin as a browser sends it (no path, no trailing '/'): anything else would never match, silently.
  for (const origin of options.corsOrigins ?? []) {
    let parsed: string | undefined;
    try {
      parsed = new URL(origin).origin;
    } catch {
      parsed = undefined;
    }
    if (parsed !== origin) {
      throw new ApexError("APEX_E_USAGE", `--cors ${JSON.stringify(origin)} is not an origin as a browser sends it.`, {
        hint: `Write SCHEME://HOST[:PORT] without a path or a trailing '/'${parsed && parsed !== "null" ? `, e.g. ${parsed}` : ", e.g. https://ui.example.com"}.`,
      });
    }
  }
  for (const name of options.allowHosts ?? []) checkAllowedHost(name);
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const perAddress = options.maxConnectionsPerAddress ?? Math.max(1, Math.ceil(maxConnections / 4));
  for (const [name, value] of [["--max-connections", maxConnections], ["the connections per address", perAddress]] as const) {
    if (!Number.isSafeInteger(value) || value < 1) throw new ApexError("APEX_E_USAGE", `${name} must be a whole number, 1 or more (not ${JSON.stringify(value)}).`, { hint: `The default is ${DEFAULT_MAX_CONNECTIONS}.` });
  }
  const https = tls ? { cert: readPem(options.tlsCert!, "--tls-cert"), key: readPem(options.tlsKey!, "--tls-key") } : null;
  const { default: Fastify } = await import("fastify");
  let app: FastifyInstance;
  // Without a request timeout (fastify's default is none), a client that never finishes sending
  // its request would hold its connection, and keep a closing server alive, for ever.
  const settings = {
    logger: false,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    requestTimeout: REQUEST_TIMEOUT_MS,
    // A request that arrives while the server closes gets the API's error body (below), not fastify's own.
    return503OnClosing: false,
    // What fastify and Node answer by themselves gets the API's error body too.
    frameworkErrors: (_error: Error, _request: FastifyRequest, reply: FastifyReply) =>
      void sendError(reply, new ApexError("APEX_E_BAD_INPUT", "The request's path is not a valid URL (a bad %-escape).", { hint: "Escape the path's characters as UTF-8 (encodeURIComponent)." })),
    clientErrorHandler: answerClientError,
  };
  try {
    app = (https ? Fastify({ ...settings, https }) : Fastify(settings)) as unknown as FastifyInstance;
  } catch (error) {
    // Node reads the PEM files here: not PEM, or a key that is not the certificate's.
    if (!https) throw error;
    throw new ApexError("APEX_E_USAGE", withDetail(`The TLS certificate and key (--tls-cert, --tls-key) cannot be used`, (error as Error).message), {
      hint: "Give a PEM certificate and its own PEM private key (openssl x509 -in CERT -noout checks the certificate).",
      cause: error,
    });
  }
  // JSON bodies: parsed here, not by fastify's parser, which refuses a `__proto__` key (or
  // `constructor.prototype`) as "Body is not valid JSON" — misleading for valid JSON. Such keys
  // are refused all the same (merged into an object they could change its prototype), saying so.
  app.removeContentTypeParser("application/json");
  // Bodies are JSON only: text/plain (fastify's other parser) would reach a method as a string, refused as "not an object" although it may be one.
  app.removeContentTypeParser("text/plain");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    try {
      done(null, parseBody(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });
  const log = options.log ?? (() => {});
  const errorLog = options.errorLog ?? log;
  /** Set once close() begins: requests from then on are refused (503). */
  let closing = false;
  /**
   * Why the server closes, as its refusals say it: `apex serve` stopped, or a supervisor's own server
   * (`sharing.serve`) stopping with its session. Both said "apex serve was stopped", which no one had run.
   */
  let closingWhy = { what: "apex serve was stopped", back: "once it is back; if it does not come back, check that `apex serve` runs there" };
  /** The session whose end closes this server (a supervisor's own, `sharing.serve`): its memory.changes are still answered as it closes. */
  let endedSession: string | undefined;
  /**
   * Who polled memory.changes lately, by grant and session: when, and whether the answer was the
   * session's end. A supervisor's own server closing with its session waits for those polling it
   * to be told that end: `memory watch` through it, refused (503) or finding no server, retried for ever.
   */
  const changesPolls = new Map<string, { sid: string; at: number; ended: boolean }>();
  /**
   * Requests under way (not yet answered), in all and by the session whose method they call. A
   * supervisor's own server closes in its session's onStop, which the supervisor's answers to that
   * session's calls under way (the `session.stop` that stopped it) wait for: its close waits for the others only.
   */
  let underWay = 0;
  const underWayBySession = new Map<string, number>();
  const countUnderWay = (reply: FastifyReply, sid?: string) => {
    if (sid === undefined) underWay++;
    else underWayBySession.set(sid, (underWayBySession.get(sid) ?? 0) + 1);
    reply.raw.once("close", () => {
      if (sid === undefined) underWay--;
      else if ((underWayBySession.get(sid) ?? 1) <= 1) underWayBySession.delete(sid);
      else underWayBySession.set(sid, underWayBySession.get(sid)! - 1);
    });
  };
  app.addHook("onRequest", async (_request, reply) => countUnderWay(reply));
  const cutConnections = limitConnections(app, new ConnectionLimit(maxConnections, perAddress), https, log, options.refusedLingerMs ?? REFUSED_LINGER_MS);
  // The store this server serves: a supervisor of the project on another one is not its sessions' writer.
  const { resolveStoreSpec, storeIdentity } = await import("../../core/store/open.js");
  const served = await storeIdentity(await resolveStoreSpec(options.location));
  const onServedStore = (runtime: SupervisorRuntime | undefined) => (runtime && (!runtime.store || runtime.store === served) ? runtime : undefined);
  const gate = new Gate(options.location, onServedStore);
  const streams = new Set<OpenStream>();
  const failures = new LoginThrottle(options.throttle);
  const refused = new RefusedTokens();
  const accepted = new AcceptedTokens();
  const serverId = randomUUID();
  const connections = new ConnectionReporter(options.location, serverId, streams, onServedStore);
  const grantWatch = new GrantWatch((sessionId, tokens) => gate.checkGrants(sessionId, tokens), RECHECK_MS);

  // A server on loopback answers requests addressed to loopback only: a web page whose name its
  // site re-points at 127.0.0.1 (DNS rebinding) is then its own origin, able to read what the
  // server answers and to send it guesses, unthrottled by any other origin. The Host header
  // says which name the browser used; names a proxy or tunnel sends are allowed by --allow-host.
  // An IPv6 address as given, with its brackets or without: compared without, as names are below.
  const allowedHosts = new Set((options.allowHosts ?? []).map((name) => name.toLowerCase().replace(/^\[|\]$/g, "")));
  const hostRefused = (request: FastifyRequest): string | undefined => {
    // Off loopback the names the server is reached by are not known: checked only when given.
    if (!isLoopback(host) && allowedHosts.size === 0) return undefined;
    const header = request.headers.host;
    if (header === undefined) return undefined; // HTTP/1.0: no browser sends that
    const name = /^(\[[^\]]*\]|[^:]*)/.exec(header)![1]!.toLowerCase();
    return isLoopback(name) || allowedHosts.has(name.replace(/^\[|\]$/g, "")) ? undefined : name;
  };
  const corsAllowed = (request: FastifyRequest) => Boolean(request.headers.origin && options.corsOrigins?.includes(request.headers.origin));
  app.addHook("onRequest", async (request, reply) => {
    if (corsAllowed(request)) {
      reply.header("access-control-allow-origin", request.headers.origin);
      reply.header("access-control-allow-headers", "authorization, content-type");
      reply.header("access-control-allow-methods", "POST");
    }
    // With --cors, every reply's CORS headers depend on its Origin (present for one, absent for
    // another or none): said on all of them, else a cache between could give one origin's reply to another.
    if (options.corsOrigins?.length) reply.header("vary", "origin");
    reply.header("x-content-type-options", "nosniff");
    // The API's answers (a share's token, session data) are kept by no cache, the browser's or one between.
    if (request.url.startsWith("/api/")) reply.header("cache-control", "no-store");
  });
  // Once the server closes (Ctrl-C, SIGTERM), a request still arriving on an open connection is
  // refused with the API's error body, 503 and Retry-After, and its connection closed: fastify's
  // own 503 body had no code a client could act on.
  const refuseClosing = async (reply: FastifyReply) => {
    const refused = new ApexError("APEX_E_RPC", `The server is shutting down (${closingWhy.what}): it takes no new requests.`, {
      hint: `Try again ${closingWhy.back}.`,
      details: { connection: "closing", retry_after_s: 1 },
    });
    await reply.code(503).header("retry-after", "1").header("connection", "close").send({ error: errorBody(refused) });
  };
  app.addHook("onRequest", async (request, reply) => {
    if (!closing) return;
    // Closing with its session: a poll of memory.changes is answered (once its session is known, the ended one's only), the session's end with it.
    if (endedSession !== undefined && request.method === "POST" && /^\/api\/sessions\/[^/?]+\/rpc\/memory\.changes(\?|$)/.test(request.url)) return;
    await refuseClosing(reply);
  });
  // After the headers above: a request refused for its Host carries them too (nosniff; Vary: Origin under --cors).
  app.addHook("onRequest", async (request) => {
    const name = hostRefused(request);
    if (name === undefined) return;
    throw new ApexError("APEX_E_FORBIDDEN", `This server answers requests addressed to ${["localhost, 127.0.0.1, [::1]", ...allowedHosts].join(", ")}, not to ${JSON.stringify(name.slice(0, 100))}.`, {
      hint: "Open it as http://127.0.0.1:PORT (a page of another site may have pointed its name at this host); behind a proxy or tunnel that sends its own name, start `apex serve` with --allow-host NAME.",
    });
  });
  // A body sent compressed (Content-Encoding: gzip, br, …) was read as if plain: gzip's bytes
  // failed as "Request body size did not match Content-Length" (400), or as JSON. Refused, as RFC
  // 9110 has it for a coding the server does not take: 415, saying Accept-Encoding: identity.
  app.addHook("onRequest", async (request, reply) => {
    const coding = String(request.headers["content-encoding"] ?? "").trim().toLowerCase();
    if (coding === "" || coding === "identity") return;
    const refused = new ApexError("APEX_E_BAD_INPUT", `The request body is sent with Content-Encoding: ${JSON.stringify(coding.slice(0, 100))}; this server takes bodies as they are only, not compressed.`, {
      hint: "Send the JSON object uncompressed, without a Content-Encoding header (or with Content-Encoding: identity).",
    });
    await reply.code(415).header("accept-encoding", "identity").send({ error: errorBody(refused) });
  });
  // The API's caller is authenticated before its body is read: an unauthenticated client had its
  // body parsed (up to 1 MiB of JSON walked for keys, numbers and depth: a tenth of a second each)
  // and was answered about it (400, 413, 415) before its missing token was looked at.
  app.addHook("onRequest", async (request) => {
    const sessionRef = (request.params as { sid?: unknown } | undefined)?.sid;
    if (request.method !== "POST" || typeof sessionRef !== "string" || !AUTHENTICATED_ROUTES.has(request.routeOptions.url ?? "")) return;
    (request as Authenticated).auth = await authenticate(request, sessionRef);
  });
  // A browser asks before every API call (they carry an Authorization header): an origin --cors
  // names gets a 204 with the CORS headers above (else the call is never made); any other, none.
  // Only the paths that take POST: another (`/api/health`, `/api/nothing`) is answered as any method it does not take is, 405 or 404.
  app.options("/api/*", async (request, reply) => {
    if (ROUTE_METHODS.find(([pattern]) => pattern.test(request.url.split("?")[0]!))?.[1] !== POST_ROUTE) return noRoute(request, reply);
    if (corsAllowed(request)) reply.header("access-control-max-age", "600");
    await reply.code(204).header("allow", "POST, OPTIONS").send();
  });
  app.addHook("onResponse", async (request, reply) => {
    // Tokens travel in the Authorization header only; the query is left out all the same, in case a client put one there.
    const who = (request as FastifyRequest & { caller?: Caller }).caller?.user ?? "-";
    log(`${request.method} ${request.url.split("?")[0]} ${reply.statusCode} ${who} ${Math.round(reply.elapsedTime)}ms`);
  });
  // A body nested deeper than any value may be would overflow the stack where it is turned
  // back into JSON for the supervisor: refused here, as a bad request.
  app.addHook("preValidation", async (request) => {
    if (nestingExceeds(request.body, MAX_BODY_DEPTH)) {
      throw new ApexError("APEX_E_TOO_DEEP", `The request body nests arrays and objects more than ${MAX_BODY_DEPTH} levels deep.`, {
        hint: `Values may nest at most ${MAX_DEPTH} levels; store deeper structures flattened, or split across paths.`,
      });
    }
  });
  app.setNotFoundHandler(noRoute);

  async function noRoute(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const path = request.url.split("?")[0]!;
    // A path that exists, asked with another method: 405 and the methods it takes (Allow).
    const allow = ROUTE_METHODS.find(([pattern]) => pattern.test(path))?.[1];
    if (allow) {
      // The hint says what this path takes (it said "API calls are POST" to a POST of /api/health, which takes GET).
      const hint = allow === POST_ROUTE ? "Send POST with a JSON object of parameters; OPTIONS asks what the path takes." : `Read ${path} with GET (HEAD for its headers only); API calls are POST to /api/sessions/SESSION/rpc/METHOD.`;
      await reply.code(405).header("allow", allow).send({ error: { code: "APEX_E_BAD_INPUT", message: `${path} takes ${allow}, not ${request.method}.`, hint } });
      return;
    }
    await reply.code(404).send({ error: notFoundBody(request.method, path) });
  }

  /**
   * A path nothing is served at, the dashboard's files included: the path in quotes, so that one ending in a
   * dot reads as it was asked (`/assets/.` was "No such file: .." and `/assets/` "No such file: .").
   */
  function notFoundBody(method: string, path: string): { code: string; message: string; hint: string } {
    const hint = path.startsWith("/assets/") ? "The dashboard is at /; /assets/ holds only the files it loads." : "The API is under /api/sessions/SESSION/…";
    return { code: "APEX_E_NOT_FOUND", message: `No such path: ${method} ${JSON.stringify(path)}.`, hint };
  }
  app.setErrorHandler(async (error, request, reply) => {
    const fastifyError = error as { code?: string; statusCode?: number; message: string };
    if (isApexError(error)) return sendError(reply, error, errorLog);
    if (fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      const limit = options.bodyLimit ?? 1024 * 1024;
      const size = limit % (1024 * 1024) === 0 ? `${limit / (1024 * 1024)} MiB (${limit} bytes)` : `${limit} bytes`;
      // Its size, when the request said it (it named only the limit).
      const length = Number(request.headers["content-length"]);
      const bytes = Number.isSafeInteger(length) && length > limit ? length : undefined;
      return sendError(reply, new ApexError("APEX_E_TOO_LARGE", `The request body is ${bytes === undefined ? "larger than" : `${bytes} bytes, more than`} this server takes: at most ${size}.`, {
        hint: "Send less in one call: split a large value across several paths (one memory.set each), or write it on the server's host with `apex memory set` or `apex memory import`.",
        details: { ...(bytes === undefined ? {} : { bytes }), limit_bytes: limit },
      }));
    }
    if (fastifyError.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      const type = String(request.headers["content-type"] ?? "").split(";")[0]!.trim().slice(0, 100);
      const refused = new ApexError("APEX_E_BAD_INPUT", `The request body is ${type ? JSON.stringify(type) : "sent without a Content-Type"}; the API takes JSON only.`, { hint: "Send the parameters as a JSON object with Content-Type: application/json." });
      await reply.code(415).send({ error: errorBody(refused) });
      return;
    }
    if (fastifyError.statusCode && fastifyError.statusCode < 500) {
      const code: ErrorCode = /JSON|json/.test(fastifyError.message) || fastifyError.code?.startsWith("FST_ERR_CTP") ? "APEX_E_BAD_JSON" : "APEX_E_BAD_INPUT";
      return sendError(reply, new ApexError(code, withDetail(`Bad request`, fastifyError.message), { hint: "Send a JSON object (Content-Type: application/json)." }));
    }
    // Anything else is the server's failure: its message (a path, a library's internals) is logged, not answered.
    return sendError(reply, error, errorLog);
  });

  /**
   * The session a request's URL names and its caller, or a 401 (slowed down after repeated
   * failures from that client). The token's shape is checked first: a request without one is
   * refused before anything reads the store or asks a supervisor (not even to resolve a
   * session's name in the URL).
   */
  const authenticate = async (request: FastifyRequest, sessionRef: string): Promise<{ sid: string; caller: Caller; token: string }> => {
    const header = request.headers.authorization ?? "";
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const client = clientKey(request.ip);
    // Its last failure's answer is still delayed, or too many failed server-wide: refused at once,
    // and not counted (nothing was tried); a token accepted here lately passes (still checked below).
    const [addressWait, serverWait] = token !== undefined && accepted.has(token) ? [0, 0] : [failures.waiting(client), failures.globalWaiting()];
    if (addressWait > 0 || serverWait > 0) {
      const seconds = Math.ceil(Math.max(addressWait, serverWait) / 1000);
      throw new ApexError("APEX_E_RATE_LIMITED", `Too many failed logins ${addressWait >= serverWait ? "from this address" : "on this server"}: try again in ${seconds} s.`, {
        hint: "Check the token (`apex session share` prints it once); a correct one works once the wait is over.",
        details: { retry_after_s: seconds },
      });
    }
    try {
      if (!token) throw new ApexError("APEX_E_UNAUTHORIZED", header.trim() ? `No token: the Authorization header is not a bearer token${/^basic\s/i.test(header) ? " (Basic, a user and password, is not taken)" : ""}; send Authorization: Bearer <token>.` : "No token: send Authorization: Bearer <token>.", { hint: "Tokens come from `apex session share SESSION USER`." });
      if (!isTokenShaped(token)) throw unauthorized(INVALID_TOKEN);
      // Not the shape of a session (an escaped '/', say): no grant of it can exist, and it must not reach a store path.
      if (!SESSION_REF.test(sessionRef)) throw unauthorized(INVALID_TOKEN);
      // Refused lately for this session: refused again without a lookup (no store opened, no supervisor asked).
      const known = refused.get(sessionRef, token);
      if (known !== undefined) throw unauthorized(known);
      const sid = await gate.sessionInUrl(sessionRef);
      const caller = await gate.authenticate(sid, token).catch((error: unknown) => {
        // A token accepted here lately for this session whose grant is gone: its holder is told it was revoked,
        // as `apex connect` is (`memory watch` polling through it said the token was unknown, revoked or mistyped).
        const holder = accepted.holder(token);
        if (isApexError(error) && error.message === INVALID_TOKEN && holder?.session === sid) error = revokedAccess(holder.user, sid);
        if (isApexError(error) && error.code === "APEX_E_UNAUTHORIZED") refused.add(sessionRef, token, error.message, Date.now(), sid);
        throw error;
      });
      // The address's failures are not forgotten (a valid token sent between guesses would reset them); this token passes its waits.
      accepted.add(token, Date.now(), { user: caller.user, session: sid });
      (request as FastifyRequest & { caller?: Caller }).caller = caller;
      return { sid, caller, token };
    } catch (error) {
      // A refused token is a failed login. The server failing to check one (the session's supervisor
      // ending in the middle of the call, a store that cannot be read) is not: counted, a dashboard
      // watching its session stop slowed down, then refused (429), every client at its address.
      if (isApexError(error) && error.code === "APEX_E_UNAUTHORIZED") {
        if (token !== undefined) accepted.delete(token); // revoked or expired since: it waits as any other
        const delay = failures.failed(client);
        if (delay > 0) {
          log(`failed logins from ${client}: its answer waits ${Math.round(delay)}ms, its other requests are refused meanwhile`);
          await sleep(delay);
        }
      }
      throw error;
    }
  };

  app.get("/", async (_request, reply) => sendStatic(reply, "index.html"));
  app.get<{ Params: { file: string } }>("/assets/:file", async (request, reply) => sendStatic(reply, request.params.file, request));
  // The version lets a client tell a server of another APEX from one that is down or misbehaves.
  app.get("/api/health", async () => ({ ok: true, version: APEX_VERSION }));

  /** The parts of imports larger than one request body, until their last part (staged-imports.ts). */
  const staged = new StagedImports();
  app.addHook("onClose", async () => staged.clear());
  app.post<{ Params: { sid: string; method: string }; Body: unknown }>("/api/sessions/:sid/rpc/:method", async (request, reply) => {
    const { method } = request.params;
    const { sid, caller } = (request as Authenticated).auth ?? (await authenticate(request, request.params.sid));
    if (closing && sid !== endedSession) return refuseClosing(reply);
    countUnderWay(reply, sid);
    let params = objectBody(request.body);
    if (isInternalMethod(method)) throw noSuchMethod(method);
    // A stream never answers as a call: it would hold the request open, and its subscription the supervisor's channel.
    if ((STREAM_METHODS as readonly string[]).includes(method)) {
      throw new ApexError("APEX_E_BAD_INPUT", `${method} is a stream, not a call.`, { hint: `POST /api/sessions/SESSION/stream with {"${method}": {…}}.` });
    }
    const needed = roleNeeded(method, params);
    if (!roleAllows(caller.role, needed)) {
      // A name that is no method at all needs owner only by default: it is unknown (404) to every role, not a grant to ask for.
      if (!roleTable().has(method) && !(await isKnownMethod(method))) throw noSuchMethod(method);
      throw forbidden(caller, isPinningCreate(method, params) ? "checkpoint.create with pin" : method, needed);
    }
    checkRemoteWrite(method, params);
    if (method === "share.create") checkGrantLifetime(caller, params);
    // A share names its session: another than the grant's is refused, as a merge's destination is.
    // Pinned to the grant's session, `apex --remote H/A session unshare B bob` revoked bob's access to A.
    if (method.startsWith("share.")) await gate.requireOwnSession(sid, method, params.session);
    if (isProjectMethod(method)) {
      throw new ApexError("APEX_E_FORBIDDEN", `${method} makes a new session of the project; a grant is for session ${sid} only. Nothing was done.`, { hint: "Run it on the server's host." });
    }
    // An import sent in parts: each part but the last kept here; the last sends them all as one import.
    if (method === "memory.stage") {
      await gate.requireSession(sid);
      const length = Number(request.headers["content-length"]);
      return reply.send({ result: staged.stage(caller.token_id, sid, params, Number.isSafeInteger(length) && length > 0 ? length : JSON.stringify(params).length) });
    }
    if (method === "memory.import" && params.upload !== undefined) {
      const { upload: _, ...rest } = params;
      params = { ...rest, entries: staged.take(caller.token_id, sid, params) };
    }
    // Another session's checkpoint: not found, as for checkpoint.show, before anything is written.
    if (CHECKPOINT_WRITES.has(method)) {
      const lookup = { ref: params.ref, session: sid, keysLimit: 0 };
      scopedResult(sid, "checkpoint.show", params, await gate.call(sid, "checkpoint.show", lookup).catch((error: unknown) => Promise.reject(scopedError("checkpoint.show", lookup, error))));
    }
    connections.saw(caller);
    // The caller is the actor: whatever the body says, the audit trail names the grant's user.
    // The grant's session, whatever the body names (a grant is for one session).
    const actorParams: Record<string, unknown> = { ...pinnedParams(sid, params), actor: `user:${caller.user}` };
    // A grant made through a grant records it (whatever the body says): revoking the caller's grant revokes this one too.
    if (method === "share.create") actorParams.via_token_id = caller.token_id;
    // A plugin command's arguments: pinned to this session, or refused (command-scope.ts), before it runs.
    // It may run for any time (a compress of a large session): waited on as long as the supervisor
    // sends its heartbeat, whatever the client asked (a fixed 120 s cut it off while it went on).
    // Its output comes in the answer: printed output streamed as events was dropped here, and the
    // answer came without it.
    if (method === "plugin.command") Object.assign(actorParams, await remotePluginCommand(sid, params, gate.commandLookup(sid)), { stream: false, heartbeat_ms: heartbeatFor(idleWindowMs()) });
    // A merge reads its source: the caller needs a grant of it too, not only owner of the destination.
    if (method === "session.merge") Object.assign(actorParams, { source: await gate.mergeSource(caller, sid, params), destination: await gate.mergeDestination(sid, params) });
    // What the caller's role may see of APEX's records, without the server's paths (redact.ts).
    const shown = (value: unknown) => (method === "memory.get" && typeof params.path === "string" ? remoteEntryValue(params.path, value, caller.role) : remoteResult(method, value, caller.role, caller.user));
    let result: unknown;
    if (method === "whoami") result = { user: caller.user, role: caller.role, session_id: sid };
    else if (method === "logs.read") result = await gate.readLogs(sid, params);
    else if (method === "session.continue") result = shown(await gate.continueSession(sid, params));
    else if (hiddenRead(sid, method, params)) result = undefined;
    // Its supervisor stopping with this server: the store has the session ended, and the changes it made up to its end (the supervisor's answer says neither).
    else if (method === "memory.changes" && closing && sid === endedSession) result = shown(scopedResult(sid, method, params, await withReadStore(options.location, (store) => readStored(store, sid, method, actorParams))));
    else if (method === "events.list") result = eventsPage(params, shown(await gate.call(sid, method, actorParams)));
    else if (SESSION_LISTINGS.has(method)) result = shown(withEffectiveStatus(method, scopedListing(method, await gate.call(sid, method, actorParams), await gate.ancestry(sid))));
    else {
      // A call waiting on hooks (pause, stop, a claim): the client is told the supervisor still works on it (heartbeat-reply.ts).
      const beats = heartbeatReply(request, reply, params);
      try {
        // A client gone (Ctrl-C) while the call waits for a supervisor to start: it is not made then. Gone
        // once its end of the connection is read (readableEnded), not only once this side closed it a few turns later.
        const call = (over: Record<string, unknown> = {}) => gate.call(sid, method, { ...actorParams, ...over }, beats?.onEvent, () => request.raw.socket.destroyed || request.raw.socket.readableEnded);
        const visible = (answer: unknown) => shown(scopedResult(sid, method, params, answer));
        result = QUERIES.has(method) && typeof params.limit === "number" ? await limitedQuery(method, params.limit, (limit) => call({ limit }), visible) : visible(await call());
      } catch (thrown) {
        // Another session's checkpoint, or one of a session that does not exist: the same answer (scope.ts).
        const error = scopedError(method, params, thrown);
        if (!beats?.streaming) throw error;
        return beats.end({ error: publicError(error, errorLog, `${request.method} ${request.url.split("?")[0]}`) });
      }
      if (beats?.streaming) return beats.end({ result });
    }
    if (method === "memory.changes") {
      notePoll(caller.token_id, sid, (result as { ended?: unknown } | undefined)?.ended === true);
      if (options.closesWithSession && result !== null && typeof result === "object") result = { ...result, server: "sharing.serve" };
    }
    await reply.send(result === undefined ? {} : { result });
  });

  app.post<{ Params: { sid: string }; Body: unknown }>("/api/sessions/:sid/stream", async (request, reply) => {
    const { sid, caller, token } = (request as Authenticated).auth ?? (await authenticate(request, request.params.sid));
    const body = objectBody(request.body);
    const wanted = Object.keys(body);
    const unknown = wanted.filter((key) => !(STREAM_METHODS as readonly string[]).includes(key));
    if (wanted.length === 0 || unknown.length > 0) {
      throw new ApexError("APEX_E_BAD_INPUT", `A stream names one or more of ${STREAM_METHODS.join(", ")}${unknown.length ? `; not ${unknown.join(", ")}` : ""}.`);
    }
    for (const method of wanted) {
      if (!roleAllows(caller.role, roleNeeded(method, {}))) throw forbidden(caller, method, roleNeeded(method, {}));
      checkStreamParams(method, body[method]);
    }
    await gate.requireSession(sid);
    // logs.follow of an agent with no logs sent nothing, for ever: refused, as logs.read refuses it.
    const followed = (body["logs.follow"] as Record<string, unknown> | undefined)?.agent;
    if (typeof followed === "string") requireAgentLogs(agentLogDir(options.location.storeDir, sid), sid, followed);
    // Each open stream polls for what it follows (its grant is re-checked with the session's others): a grant may hold only so many.
    const open = [...streams].filter((stream) => stream.caller.token_id === caller.token_id).length;
    if (open >= MAX_STREAMS_PER_GRANT) {
      throw new ApexError("APEX_E_RATE_LIMITED", `${caller.user}'s token already holds ${open} open streams, the most one grant may hold.`, {
        hint: "Close another view of this session (a dashboard tab, an `apex connect` or `logs -f`) first; one stream can follow several methods at once.",
      });
    }
    // The headers set so far (CORS, nosniff) are the reply's, which hijacking leaves behind.
    const headers = reply.getHeaders();
    reply.hijack();
    openStream(request.raw, reply.raw, caller, token, sid, body as Record<string, Record<string, unknown>>, headers);
  });

  function openStream(req: IncomingMessage, res: ServerResponse, caller: Caller, token: string, sid: string, body: Record<string, Record<string, unknown>>, headers: Record<string, unknown>): void {
    // The client went away while its request was checked: the close that ends a stream is past, so
    // such a stream was never ended, counted against its grant for ever (16 of them: every stream
    // refused, 429) and listed by `apex status` as connected. Nothing is opened for it.
    if (res.destroyed || req.socket.destroyed) return;
    res.writeHead(200, { ...(headers as Record<string, string>), "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
    res.write(": apex\n\n");
    let closed = false;
    /** The session has ended (sessionEnded): every part ends once it has sent what the session wrote. */
    let over = false;
    let whenClosed = () => {};
    const finished = new Promise<void>((resolve) => (whenClosed = resolve));
    const subscriptions: Subscription[] = [];
    const timers: NodeJS.Timeout[] = [];
    let unwatch = () => {};
    const send = (event: string, data: unknown) => {
      if (closed) return;
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      // A client that does not read (stalled, or on purpose): what it has not taken stays in this
      // process's memory, without bound. Past MAX_UNREAD_BYTES its connection is cut (a reason
      // would only queue behind the rest), which frees it; the log says why.
      if (res.writableLength > MAX_UNREAD_BYTES) {
        log(`stream of ${caller.user} cut: more than ${MAX_UNREAD_BYTES / 1024 / 1024} MiB unread`);
        finish();
        res.destroy();
      }
    };
    const stream: OpenStream = {
      caller,
      token,
      sid,
      close(reason) {
        if (closed) return;
        send("end", { reason });
        finish();
      },
      fail: (error) => fail(error),
      sessionEnded() {
        over = true;
        // The supervisor's event subscription gives way to the store, which holds the session's end and ends the part.
        for (const subscription of subscriptions) subscription.close();
        return finished;
      },
    };
    const finish = () => {
      if (closed) return;
      closed = true;
      streams.delete(stream);
      connections.changed();
      for (const timer of timers) clearInterval(timer);
      unwatch();
      for (const subscription of subscriptions) subscription.close();
      res.end();
      whenClosed();
    };
    const fail = (error: unknown) => {
      send("error", errorBody(publicError(error, errorLog, `stream of ${caller.user} (session ${shortSessionId(sid)})`)));
      finish();
    };
    /** A session event as the caller's role sees it; one hidden from it (redact.ts) is sent as its seq alone. */
    const sendEvent = (event: unknown) => {
      const seen = remoteEvent(event, caller.role);
      if (seen !== undefined) send("events.subscribe", seen);
      else send("events.skipped", { seq: (event as { seq?: unknown }).seq });
    };
    /**
     * The parts of the stream still going (each method it follows). One that ends (the session's
     * events once it has ended, its logs once read to their end) is said with an `ended` event,
     * `{method, reason}`, while the others go on; the stream ends with the last, saying why. Before,
     * the first part to end closed the whole stream: the session's last log lines (an agent's last
     * words as it was stopped, APEX's `exited` line) were cut off by the event part's end.
     */
    const going = new Set(Object.keys(body));
    const partEnded = (method: string, reason: string) => {
      if (closed || !going.delete(method)) return;
      if (going.size === 0) stream.close(reason);
      else send("ended", { method, reason });
    };
    streams.add(stream);
    connections.changed();
    res.on("close", finish);
    timers.push(setInterval(() => !closed && res.write(": keep-alive\n\n"), HEARTBEAT_MS));
    // A revoked or expired grant ends its streams within a second, whoever revoked it: checked
    // once a second for all of the session's open streams together (not once per stream).
    // A grant gone under its open stream was revoked: said as such (`logs -f` said the token was unknown, revoked or mistyped).
    // Access ended (revoked, expired): the client gets the reason as an error and the stream closes. A check
    // that failed (the store unreadable) is the server's failure, ended as any (fail: a reference, the log has
    // it whole), never said as the token's refusal: it was, with the store file's path and the decode error.
    unwatch = grantWatch.add(sid, token, (error) => fail(isApexError(error) && error.code === "APEX_E_UNAUTHORIZED" && error.message === INVALID_TOKEN ? revokedAccess(caller.user, sid) : error));
    if (body["events.subscribe"]) {
      const socket = gate.supervisorSocket(sid);
      // (It returned here: a stream of a session no supervisor ran followed its events alone, never its logs nor its memory.)
      if (!socket) followStoredEvents(sid, body["events.subscribe"]);
      else followSupervisorEvents(socket);
    }
    function followSupervisorEvents(socket: string): void {
      let last = typeof body["events.subscribe"].from_seq === "number" ? body["events.subscribe"].from_seq : undefined;
      const subscription = subscribeSupervisor(socket, "events.subscribe", body["events.subscribe"], (event) => {
        const data = event as { type?: string; token_ids?: string[]; seq?: unknown };
        sendEvent(event);
        if (typeof data.seq === "number") last = data.seq;
        if (data.type === "share.revoked" && data.token_ids?.includes(caller.token_id)) fail(revokedAccess(caller.user, sid));
      });
      // The supervisor gone: the store says whether the session has ended (the part ends, naming it), or was
      // left interrupted (killed): its events are then read from the store, as a `start --continue` writes them.
      // Before, either way was "the session's supervisor ended the stream". So too when its socket cannot be
      // reached (the supervisor ending as the stream opened, its socket file gone), as calls are answered from
      // the store then: the stream failed, naming the server's socket path to the remote user.
      const fromStore = () => !closed && followStoredEvents(sid, last === undefined ? {} : { from_seq: last });
      subscription.done.then(fromStore, (error: ApexError) => (error.details?.connection !== undefined ? fromStore() : fail(error)));
      subscriptions.push(subscription);
    }
    /**
     * Events of a session no supervisor serves: read from the store (replayed from `from_seq`,
     * as the supervisor does), polled while the session may still change, ended once it has.
     */
    function followStoredEvents(sessionId: string, params: Record<string, unknown>): void {
      void (async () => {
        let last = typeof params.from_seq === "number" ? params.from_seq : undefined;
        while (!closed) {
          // Without from_seq, only what comes next (as from the supervisor).
          if (last === undefined) last = (await gate.storedEvents(sessionId, 0)).events.at(-1)?.seq ?? 0;
          const { events, ended, name } = await gate.storedEvents(sessionId, last);
          for (const event of events) {
            sendEvent(event);
            last = event.seq;
          }
          // The session as session list prints it (the client says why its stream ended: `The event stream ended: session experiment has ended.`).
          if (ended) return partEnded("events.subscribe", `session ${name ?? shortSessionId(sessionId)} has ended`);
          // A supervisor that took the session back writes its events to the store too.
          await sleep(STORED_EVENTS_POLL_MS);
        }
      })().catch(fail);
    }
    if (body["logs.follow"]) {
      const agent = typeof body["logs.follow"].agent === "string" ? body["logs.follow"].agent : undefined;
      const dir = agentLogDir(options.location.storeDir, sid);
      const initial = logFiles(dir).filter((file) => agent === undefined || file.agent === agent);
      // Where logs.read read each log to (`read_to`, sent back by the client): a line written between the two requests is sent too.
      const readTo = body["logs.follow"].read_to;
      for (const file of initial) file.readTo = logPosition(readTo && typeof readTo === "object" ? (readTo as Record<string, unknown>)[`${file.agent}.${file.stream}`] : undefined);
      // A running session's logs are followed until it ends, as `apex logs -f` follows them here (the stream went on for ever).
      // One not running then, once a `start --continue` of it runs, until that ends.
      const ended = supervisorEnded(options.location.storeDir, sid, liveSupervisorOf(options.location.storeDir, sid), true);
      followLogs(dir, initial, agent, (line: LogLine) => send("logs.follow", line), () => closed, () => over || ended())
        .then((over) => (over ? partEnded("logs.follow", `session ${ended.session()} has ended`) : undefined))
        .catch(fail);
    }
    if (body["memory.watch"]) {
      const glob = typeof body["memory.watch"].glob === "string" ? body["memory.watch"].glob : "/**";
      let since = typeof body["memory.watch"].since === "number" ? body["memory.watch"].since : undefined;
      void (async () => {
        while (!closed) {
          const params = { since, glob, session: sid };
          const reply = remoteResult("memory.changes", scopedResult(sid, "memory.changes", params, await gate.call(sid, "memory.changes", params)), caller.role, caller.user) as { revision: number; changes: unknown[]; ended?: boolean };
          for (const change of reply.changes) send("memory.watch", change);
          // An ended session's memory changes no more, once what it changed up to its end is sent (the stream polled it for ever).
          if (reply.ended === true) return partEnded("memory.watch", `session ${shortSessionId(sid)} has ended`);
          // A stream far behind (`since` many revisions back) reads on at once while the batches are full (10,000 revisions), as `apex memory watch` does.
          const behind = since !== undefined && reply.revision - since >= 10_000;
          since = reply.revision;
          if (!behind) await sleep(250);
        }
      })().catch(fail);
    }
  }

  connections.start();
  try {
    await app.listen({ host, port });
  } catch (error) {
    connections.stop();
    grantWatch.close();
    await app.close().catch(() => {});
    gate.close();
    throw listenError(error, options.listen);
  }
  const address = app.server.address();
  const boundPort = typeof address === "object" && address ? address.port : port;
  const shownHost = host.includes(":") ? `[${host}]` : host;
  const url = `${https ? "https" : "http"}://${shownHost}:${boundPort}`;
  log(`serving ${options.location.projectDir} at ${url}`);
  // Accepted with --insecure, and said every time the server starts: its log is where an operator looks.
  if (!https && !isLoopback(host)) log(`warning: plain HTTP on ${shownHost} (--insecure): every token sent here crosses the network in clear; serve with --tls-cert and --tls-key, or on 127.0.0.1 behind a tunnel`);
  return {
    url,
    port: boundPort,
    async close(ended) {
      if (ended) {
        const label = ended.name || shortSessionId(ended.sessionId);
        closingWhy = { what: `session ${label} has ended, and its supervisor's own server (sharing.serve) stops with it`, back: `once session ${label} runs again (\`apex start --continue ${label}\`), or at an \`apex serve\` of the project` };
        endedSession = ended.sessionId;
      }
      closing = true;
      // The server going away is no end of what a stream follows: said as an error, so that `apex connect`
      // and `logs -f` exit non-zero (they exited 0 on an `end` event, as when the session had ended).
      const gone = new ApexError("APEX_E_RPC", `The server is shutting down (${closingWhy.what}): the stream was cut before its end.`, {
        hint: `Follow the session again ${closingWhy.back}.`,
        details: { connection: "closing" },
      });
      // Unref'd: a stream that ended sooner leaves no timer holding the process.
      const drained = new Promise<void>((resolve) => setTimeout(resolve, SESSION_END_DRAIN_MS).unref());
      const endings: Array<Promise<void>> = [];
      for (const stream of [...streams]) {
        if (stream.sid !== ended?.sessionId) stream.fail(gone);
        else {
          // What the session wrote up to its end (its stop event, its agents' last lines) is sent first: it was cut off.
          const reason = `session ${ended.name || shortSessionId(ended.sessionId)} has ended`;
          endings.push(Promise.race([stream.sessionEnded(), drained]).then(() => stream.close(reason)));
        }
      }
      // `memory watch` polls: those polling the session are answered its end before the server goes (they waited for it for ever).
      if (ended) endings.push(Promise.race([pollersTold(ended.sessionId), drained]));
      await Promise.all(endings);
      grantWatch.close();
      await connections.end();
      // Requests under way may finish; then connections still open (a client that stopped
      // half-way through its request) are cut, so that the process ends and the port is free.
      // Node's closeAllConnections cuts those HTTP knows of: not one still in its TLS handshake,
      // which held a closing server up to TLS's handshake timeout (120 s).
      const cut = setTimeout(() => {
        app.server.closeAllConnections();
        cutConnections();
      }, CLOSE_GRACE_MS);
      const closed = (async () => {
        try {
          await app.close();
        } finally {
          clearTimeout(cut);
        }
        gate.close();
      })();
      if (!ended) return closed;
      // Closing with its session (in its onStop): the calls of that session still under way are answered by its
      // supervisor once this returns (the stop that ended it says the session stopped), then their replies
      // are sent and the server ends. Waiting for them here, the stop's own request waited out the grace, its
      // connection cut: `apex --remote … stop` said the server closed the connection, whether the stop was done unknown.
      let settled = false;
      const watched = closed.then(() => void (settled = true), () => void (settled = true));
      while (!settled && underWay > (underWayBySession.get(ended.sessionId) ?? 0)) await Promise.race([watched, sleep(20)]);
      if (settled) return closed;
      closed.catch((error: unknown) => errorLog(`closing: ${(error as Error).message}`));
    },
  };

  function notePoll(tokenId: string, sid: string, ended: boolean): void {
    const now = Date.now();
    // Those that stopped polling are forgotten: the map holds the recent pollers only.
    if (changesPolls.size >= 1000) for (const [key, poll] of changesPolls) if (now - poll.at > CHANGES_POLLER_MS) changesPolls.delete(key);
    changesPolls.set(`${tokenId} ${sid}`, { sid, at: now, ended });
  }

  /** Resolves once every recent poller of `sid`'s memory.changes has been answered its end (or none polls it). */
  async function pollersTold(sid: string): Promise<void> {
    const waiting = () => [...changesPolls.values()].some((poll) => poll.sid === sid && !poll.ended && Date.now() - poll.at < CHANGES_POLLER_MS);
    while (waiting()) await sleep(50);
  }

  async function sendStatic(reply: FastifyReply, file: string, request?: FastifyRequest): Promise<void> {
    // No file of the dashboard's (`.`, `..`, a name with a dot first, none): a plain 404, as for any path nothing is served at.
    const missing = () => reply.code(404).send({ error: notFoundBody(request?.method ?? "GET", (request?.url ?? `/assets/${file}`).split("?")[0]!) });
    if (!/^[A-Za-z0-9_.-]+$/.test(file) || file.startsWith(".")) return missing();
    // Own keys only: /assets/constructor is no vendored file (it was a 500 naming Node's require).
    const vendored = Object.hasOwn(VENDORED, file) ? VENDORED[file] : undefined;
    const path = vendored ? createRequire(import.meta.url).resolve(vendored) : join(DASHBOARD_DIR, file);
    if (!existsSync(path)) return missing();
    const type = file.endsWith(".html") ? "text/html; charset=utf-8" : file.endsWith(".js") ? "text/javascript; charset=utf-8" : file.endsWith(".css") ? "text/css; charset=utf-8" : file.endsWith(".svg") ? "image/svg+xml" : "application/octet-stream";
    // Never framed by another site's page (clickjacking a signed-in tab's controls): frame-ancestors, and X-Frame-Options for browsers without it.
    reply.header("content-security-policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'");
    reply.header("x-frame-options", "DENY");
    await reply.type(type).send(readFileSync(path));
  }
}

/**
 * Where a session's calls go: its live supervisor's socket, or, when none runs, the store
 * directly (reads read-only; writes with the project's plugins, as the CLI does).
 */
class Gate {
  /** One connection per supervisor (sessions run side by side), by its socket's path. */
  private readonly channels = new Map<string, SupervisorChannel>();
  /** When this server last recorded each grant's use (token id → ms). */
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly location: ProjectLocation,
    private readonly onServedStore: (runtime: SupervisorRuntime | undefined) => SupervisorRuntime | undefined,
  ) {}

  /** The session's live supervisor, if it runs on the store this server serves (an older runtime file: taken as it). */
  private supervisorOf(sessionId: string): SupervisorRuntime | undefined {
    return this.onServedStore(liveSupervisorOf(this.location.storeDir, sessionId));
  }

  /**
   * The connection to a live supervisor, kept open between requests (one that dropped, as when a
   * new supervisor took the socket's path, reconnects on the next call). Each supervisor has its
   * own: with one kept for the last supervisor asked, a call to another session's closed it,
   * failing the calls still under way there.
   */
  private channelTo(socket: string): SupervisorChannel {
    let channel = this.channels.get(socket);
    if (!channel) {
      // Connections to supervisors that no longer run (ended sessions) go first, once nothing waits on them.
      const live = new Set(liveSupervisors(this.location.storeDir).map((runtime) => runtime.socket));
      for (const [path, old] of this.channels) {
        if (!live.has(path) && !old.busy) {
          old.close();
          this.channels.delete(path);
        }
      }
      channel = new SupervisorChannel(socket);
      this.channels.set(socket, channel);
    }
    return channel;
  }

  close(): void {
    for (const channel of this.channels.values()) channel.close();
    this.channels.clear();
  }

  supervisorSocket(sessionId: string): string | undefined {
    // Sessions run side by side: the supervisor of this session, whichever else runs.
    return this.supervisorOf(sessionId)?.socket;
  }

  /** A session of this project (any: live, interrupted, ended), or APEX_E_NO_SESSION. */
  async requireSession(sessionId: string): Promise<void> {
    if (this.supervisorSocket(sessionId)) return;
    await withReadStore(this.location, (store) => storedSession(store, sessionId));
  }

  async authenticate(sessionId: string, token: string): Promise<Caller> {
    const runtime = this.supervisorOf(sessionId);
    let caller: (Caller & { last_used_at: string | null }) | undefined;
    // A supervisor that ends before it answers (its session stopping): the grant is read from the store, as when none runs.
    // So does one that does not answer this read in a few seconds (frozen, stopped).
    // One stopped (SIGSTOP) is not asked: it answers nothing, and each request waited its read's time for that (frozen.ts).
    if (runtime && !isStopped(runtime)) caller = (await this.channelTo(runtime.socket).call("share.authenticate", { session: sessionId, token }, supervisorReadMs()).catch(unlessSupervisorSilent)) as typeof caller;
    if (!caller) {
      // No supervisor: read the grant from the store (the session may have ended; its grants stay).
      const { openStore, storeExists } = await import("../../core/store/open.js");
      if (!(await storeExists(this.location))) throw unauthorized(INVALID_TOKEN);
      const store = await openStore(this.location, { readOnly: true });
      try {
        caller = authenticate(store, sessionId, token);
      } finally {
        await store.close();
      }
    }
    this.touch(caller);
    return { user: caller.user, role: caller.role, token_id: caller.token_id, session_id: sessionId, expires_at: caller.expires_at ?? null };
  }

  /**
   * Open streams' grants of one session, checked together (GrantWatch): for each token, undefined
   * while it passes, else the error that ends its streams: its refusal (APEX_E_UNAUTHORIZED), or the
   * failure to read its grant (a damaged store), which is no refusal. With no supervisor, the store
   * is opened once for all of them.
   */
  async checkGrants(sessionId: string, tokens: string[]): Promise<Map<string, unknown>> {
    const verdicts = new Map<string, unknown>();
    if (this.supervisorOf(sessionId)) {
      await Promise.all(tokens.map((token) => this.authenticate(sessionId, token).then(() => verdicts.set(token, undefined), (error: unknown) => verdicts.set(token, error))));
      return verdicts;
    }
    const { openStore, storeExists } = await import("../../core/store/open.js");
    if (!(await storeExists(this.location))) throw unauthorized(INVALID_TOKEN);
    const store = await openStore(this.location, { readOnly: true });
    try {
      for (const token of tokens) {
        try {
          this.touch(authenticate(store, sessionId, token));
          verdicts.set(token, undefined);
        } catch (error) {
          verdicts.set(token, error);
        }
      }
    } finally {
      await store.close();
    }
    return verdicts;
  }

  /**
   * Records when a grant was last used: by the session's writer (the live supervisor, else the
   * store directly), at most once per TOUCH_INTERVAL_MS per grant, so that requests cost no commit.
   */
  private touch(caller: Caller & { last_used_at: string | null }): void {
    const now = Date.now();
    const stored = caller.last_used_at ? Date.parse(caller.last_used_at) : 0;
    const last = Math.max(stored, this.touched.get(caller.token_id) ?? 0);
    if (now - last < TOUCH_INTERVAL_MS) return;
    this.touched.set(caller.token_id, now);
    const params = { session: caller.session_id, token_id: caller.token_id };
    const runtime = this.supervisorOf(caller.session_id);
    const done = runtime
      ? this.channelTo(runtime.socket).call("share.touch", params, 120_000)
      : (async () => {
          const { openStore } = await import("../../core/store/open.js");
          const store = await openStore(this.location);
          try {
            await touchGrant(store, caller.session_id, caller.token_id, now);
          } finally {
            await store.close();
          }
        })();
    // Forget the attempt if it failed, so that the next request tries again.
    done.catch(() => this.touched.delete(caller.token_id));
  }

  /**
   * A method of a session: the live supervisor's when it serves that session; else reads come
   * from the store (any session of the project), and writes go to the store directly only for a
   * session of its working tree whose supervisor is down (interrupted); any other is read-only.
   */
  async call(sessionId: string, method: string, params: Record<string, unknown>, onEvent?: (event: unknown) => void, gone?: () => boolean): Promise<unknown> {
    try {
      const result = await this.callSession(sessionId, method, params, onEvent, gone);
      // Whether the supervisor is stopped, which a local status says (the client, elsewhere, cannot tell).
      return method === "session.status" ? withStoppedFlag(result) : result;
    } catch (error) {
      // A method no supervisor knows is the caller's mistake (404), not a bad gateway (502), and
      // the list of the supervisor's methods (internal ones included) is not the caller's to see.
      if (unknownMethod(error) === method) throw noSuchMethod(method);
      // A method only a supervisor serves, asked while none runs: unless it is none at all.
      if (isApexError(error) && error.details?.needs_supervisor === method && !(await isKnownMethod(method))) throw noSuchMethod(method);
      throw error;
    }
  }

  private async callSession(sessionId: string, method: string, params: Record<string, unknown>, onEvent?: (event: unknown) => void, gone?: () => boolean): Promise<unknown> {
    const runtime = this.supervisorOf(sessionId);
    const socket = runtime?.socket;
    const read = STORED_READS.has(method);
    // With a heartbeat asked for (heartbeat_ms): waited on as long as the supervisor sends it, as a local caller does.
    const sent = (socket: string) => (typeof params.heartbeat_ms === "number" ? this.channelTo(socket).call(method, params, idleWindowMs(), onEvent ?? (() => {})) : this.channelTo(socket).call(method, params, 120_000));
    // `stop --force` of a supervisor stopped, or silent for the idle window: killed and the session stopped without it, as on the host (frozen.ts).
    if (socket && method === "session.stop" && params.force === true) {
      // Its heartbeat meanwhile, as the supervisor would send it: the client waits as long as it comes.
      const beat = typeof params.heartbeat_ms === "number" && onEvent ? () => onEvent({ heartbeat: true }) : undefined;
      const force = () => forceStopOnHost(this.location, sessionId, beat && { beat, everyMs: params.heartbeat_ms as number });
      if (isStopped(runtime)) return force();
      // The server's own heartbeat while it waits on the supervisor: one silent for the server's window is
      // forced then. Without it, the client's window (the same by default) ran out with the server's, and the
      // client gave up as the force began.
      const beating = beat && setInterval(beat, Math.max(100, params.heartbeat_ms as number));
      // A few seconds of silence, as a local `stop --force` waits (cli/session/lifecycle-wait.ts FORCE_IDLE_MS), not the whole idle window (10 minutes by default).
      const asked = typeof params.heartbeat_ms === "number" ? this.channelTo(socket).call(method, params, Math.min(idleWindowMs(), FORCE_IDLE_MS), onEvent ?? (() => {})) : sent(socket);
      return asked
        .finally(() => clearInterval(beating))
        .catch((error: unknown) => {
          if (isApexError(error) && error.code === "APEX_E_TIMEOUT" && this.supervisorOf(sessionId)?.pid === runtime!.pid) return force();
          throw error;
        });
    }
    if (socket && !read) return sent(socket);
    // A read of a stopped supervisor is the store's at once (frozen.ts).
    if (socket && !isStopped(runtime)) {
      // A read of a session whose supervisor is ending (the session stopping while it is viewed):
      // answered from the store when the supervisor closes the connection before it answers (that
      // was a 502 saying "whether it was done is not known", for a read), and, for the status, when
      // the supervisor no longer finds its own session current (that was no session at all: the
      // dashboard showed "no session" and no agents until the next refresh).
      // So is one it does not answer in a few seconds (frozen, stopped): the store has it.
      const answer = await this.channelTo(socket).call(method, params, supervisorReadMs()).catch((error: unknown) => {
        unlessSupervisorSilent(error);
        return GONE;
      });
      if (answer !== GONE && (method !== "session.status" || sessionOfStatus(answer) === sessionId)) return answer;
    }
    if (read) return withReadStore(this.location, (store) => readStored(store, sessionId, method, params, this.location));
    const session = await withReadStore(this.location, (store) => storedSession(store, sessionId));
    // Read-only for the methods that would change it; a name no writer serves is unknown (404) here as anywhere.
    // A merge's dry run changes nothing (its report is a read): it was refused as a write, where locally it runs.
    const dryRunMerge = method === "session.merge" && params.dry_run === true;
    // Its grants are no part of what it holds: an ended session is shared and unshared as on the host (an owner
    // could not revoke, once the session ended, a grant it had made through the server: refused as a change).
    const grantWrite = method === "share.create" || method === "share.revoke";
    if (session.frozen && !dryRunMerge && !grantWrite) throw (await isKnownMethod(method)) ? readOnlySession(session, method) : noSuchMethod(method);
    const { directClient } = await import("../../core/session/direct.js");
    // That session's records and working memory, whatever this server's directory is bound to.
    const client = await directClient(this.location, "write", { session: sessionId });
    let starting: { pid: number; start_time: number } | undefined;
    try {
      const { heartbeat_ms: _heartbeat, ...stored } = params;
      return await client.call(method, stored);
    } catch (error) {
      // Its supervisor has claimed it and does not listen yet (`start --continue` restoring it): the
      // write is that supervisor's to make. Sent to it once it listens, as the local command does
      // (it was refused, "run the merge again"); the client told it works on it meanwhile.
      if (!isApexError(error) || error.details?.supervisor_elsewhere !== true) throw error;
      starting = error.details as { pid: number; start_time: number };
    } finally {
      await client.close();
    }
    const { waitForStart } = await import("../../cli/session/starting-wait.js");
    const name = session.record.name;
    const label = typeof name === "string" && name ? name : shortSessionId(sessionId);
    const listening = await waitForStart(this.location, { pid: starting.pid, start_time: starting.start_time, label }, method === "session.merge" ? "session merge" : method, true, sessionId, () => onEvent?.({ heartbeat: true }), gone);
    await listening?.close();
    // Listening: the call goes to it; exited meanwhile (its start failed): to the store, which says where the session stands.
    return this.callSession(sessionId, method, params, onEvent, gone);
  }

  /** The sessions a grant of `sessionId` sees in listings: its own and those it descends from. */
  ancestry(sessionId: string): Promise<Map<string, number>> {
    return withReadStore(this.location, (store) => sessionAncestry(store, sessionId));
  }

  /**
   * The source of a merge into `sessionId`, resolved, if the caller holds a grant of it; else
   * APEX_E_FORBIDDEN (the same for a session that does not exist), before anything is written.
   */
  async mergeSource(caller: Caller, sessionId: string, params: Record<string, unknown>): Promise<string> {
    const ref = params.source;
    if (typeof ref !== "string" || ref.length === 0) throw new ApexError("APEX_E_BAD_INPUT", "The parameter source is required.");
    const source = await withReadStore(this.location, (store) => readableByUser(store, caller.user, ref));
    if (source) return source;
    throw new ApexError("APEX_E_FORBIDDEN", `${caller.user} may not read session ${JSON.stringify(ref)}; merging it into ${sessionId} needs owner of ${sessionId} and a grant of the source. Nothing was merged.`, {
      hint: "The source session's owner can share it: `apex session share SOURCE USER --role viewer`.",
    });
  }

  /**
   * The destination of a merge through a grant of `sessionId`: that session. A destination the
   * body names must be it; another (or one that does not exist) is APEX_E_FORBIDDEN.
   */
  async mergeDestination(sessionId: string, params: Record<string, unknown>): Promise<string> {
    const ref = params.destination;
    // `current` through a grant: the grant's session (as `session share current` is the bound one locally).
    if (ref === undefined || ref === null || ref === "" || ref === sessionId || ref === "current") return sessionId;
    if (typeof ref === "string" && (await this.resolveSession(ref)) === sessionId) return sessionId;
    throw new ApexError("APEX_E_FORBIDDEN", `A merge through this grant goes into session ${sessionId}, not into ${JSON.stringify(ref)}. Nothing was merged.`, {
      hint: "Name this session as the destination (or leave it out).",
    });
  }

  /** A session a call names (`params.session`): absent, `current` or the grant's own session passes; any other is APEX_E_FORBIDDEN. */
  async requireOwnSession(sessionId: string, method: string, ref: unknown): Promise<void> {
    if (ref === undefined || ref === null || ref === "" || ref === sessionId || ref === "current") return;
    if (typeof ref === "string" && (await this.resolveSession(ref)) === sessionId) return;
    throw new ApexError("APEX_E_FORBIDDEN", `${method} through this grant acts on session ${sessionId}, not on ${JSON.stringify(ref)}. Nothing was done.`, {
      hint: "Name this session (or `current`), or use a token of that session: apex --remote HOST/SESSION.",
    });
  }

  /**
   * The session a URL names: an id as it is; a branch's name or a unique id prefix resolved, as
   * everywhere else; anything else as written (its token then fails like any other).
   */
  async sessionInUrl(ref: string): Promise<string> {
    if (UUID.test(ref)) return ref;
    return (await this.resolveSession(ref)) ?? ref;
  }

  /** The id a session reference names in this project, or undefined (unknown or ambiguous). */
  resolveSession(ref: string): Promise<string | undefined> {
    return withReadStore(this.location, (store) => resolveSessionId(store, ref)).catch(() => undefined);
  }

  /** What command-scope.ts needs to pin a forwarded plugin command to `sessionId`. */
  commandLookup(sessionId: string): CommandSessionLookup {
    return { resolve: (ref) => this.resolveSession(ref), live: () => this.supervisorSocket(sessionId) !== undefined };
  }

  /** Events of a session no supervisor serves, after `seq`, from the store. */
  storedEvents(sessionId: string, seq: number): Promise<{ events: SessionEvent[]; ended: boolean; name: string | null }> {
    return withReadStore(this.location, (store) => storedEvents(store, sessionId, seq));
  }

  /** `start --continue` of this session by an operator: the supervisor is launched here, as `apex start --continue` would. */
  async continueSession(sessionId: string, params: Record<string, unknown>): Promise<unknown> {
    const target = typeof params.continue === "string" ? params.continue : "";
    if (!(target === "last" || target === sessionId || (target.length >= 4 && sessionId.startsWith(target)) || (await this.resolveSession(target)) === sessionId)) {
      throw new ApexError("APEX_E_USAGE", `A remote --continue names this session (${sessionId}) or \`last\`, not ${JSON.stringify(target)}.`);
    }
    // Sessions run side by side: only this session's own supervisor is in the way (the claim checks its working tree).
    const runtime = this.supervisorOf(sessionId);
    if (runtime) {
      throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${runtime.session_id} is running.`, {
        hint: runtime.session_id === sessionId ? "It is already running: `apex status`." : "Its owner ends it first.",
      });
    }
    const [{ loadConfig }, { launchSupervisor }] = await Promise.all([import("../../core/config/load.js"), import("../../cli/session/launch.js")]);
    const ready = await launchSupervisor(this.location, { mode: "continue", continueTarget: sessionId }, await loadConfig(this.location)).catch((error: unknown) => {
      throw anotherSessionInTheWay(error, sessionId);
    });
    // Its name (a branch's, null for another) from the runtime file its supervisor wrote: the client prints the session by it, as a local start does.
    const name = this.supervisorOf(sessionId)?.name;
    return { ...ready, name: typeof name === "string" && name ? name : null };
  }

  async readLogs(sessionId: string, params: Record<string, unknown>): Promise<{ agents: string[]; lines: LogLine[]; read_to: Record<string, LogFile["readTo"]> }> {
    // A wrong type was read as no value (all agents, 50 lines), and 1.5 lines as 2, without a word.
    if (params.agent !== undefined && params.agent !== null && typeof params.agent !== "string") throw new ApexError("APEX_E_BAD_INPUT", "logs.read: agent must be an agent's name (a string), or null for every agent.");
    if (params.lines !== undefined && !(Number.isSafeInteger(params.lines) && (params.lines as number) >= 0)) throw new ApexError("APEX_E_BAD_INPUT", `logs.read: lines must be a whole number ≥ 0, not ${typeof params.lines === "number" ? params.lines : `a ${params.lines === null ? "null" : Array.isArray(params.lines) ? "list" : typeof params.lines}`}.`, { hint: "Leave it out for the last 50 lines of each log." });
    // At most REMOTE_LOG_LINES, said rather than cut to without a word (`-n 200000` got 100,000 lines).
    if (typeof params.lines === "number" && params.lines > REMOTE_LOG_LINES) throw new ApexError("APEX_E_BAD_INPUT", `logs.read: lines must be at most ${REMOTE_LOG_LINES.toLocaleString("en-US")} through apex serve, not ${params.lines}.`, { hint: "Read more on the session's host with `apex logs -n N`, or follow it with `-f`." });
    // A session whose agents never ran here (a branch not started yet): refused as `apex logs --session` refuses it, exit 3.
    // It was an empty answer, exit 0, and with -f a wait for ever; a running session's logs still to come are followed.
    if (!existsSync(agentLogDir(this.location.storeDir, sessionId)) && (params.follow !== true || liveSupervisorOf(this.location.storeDir, sessionId) === undefined)) {
      const { record } = await withReadStore(this.location, (store) => storedSession(store, sessionId));
      const name = typeof record.name === "string" && record.name ? record.name : shortSessionId(sessionId);
      throw new ApexError("APEX_E_NO_SESSION", `Session ${name} has no logs in this project: its agents never ran here.`, {
        hint: "An agent's output is kept from its first start; `apex session list` shows the sessions.",
        details: { session_id: sessionId },
      });
    }
    const agent = typeof params.agent === "string" ? params.agent : undefined;
    const lines = typeof params.lines === "number" ? params.lines : 50;
    // `follow`: the client follows from read_to next, so a last line a running session has not finished yet is left to it, to be sent whole.
    const tail = readLogTail(this.location.storeDir, sessionId, agent, lines, params.follow === true && liveSupervisorOf(this.location.storeDir, sessionId) !== undefined);
    const readTo = Object.fromEntries(tail.chosen.filter((file) => file.readTo).map((file) => [`${file.agent}.${file.stream}`, file.readTo]));
    // Each agent once (chosen has a file per stream: an agent with stdout and stderr was listed twice).
    return { agents: [...new Set(tail.chosen.map((file) => file.agent))], lines: tail.lines, read_to: readTo };
  }
}

/**
 * Session records as `apex session list` shows them: one whose supervisor is gone is
 * `interrupted`, not the `active` or `paused` its record still says (the dashboard's session
 * tree called a crashed session active beside its "interrupted" badge). The CLI decides this
 * on its side; a browser cannot, so the server does, on the host that runs the supervisors.
 */
function withEffectiveStatus(method: string, result: unknown): unknown {
  if ((method !== "session.list" && method !== "session.history") || !Array.isArray(result)) return result;
  const statusOf = (record: SessionRecord) => {
    try {
      return effectiveStatus(record);
    } catch {
      return record.status; // a record damaged or replaced by hand: as stored
    }
  };
  return result.map((record: unknown) => (record && typeof record === "object" && !Array.isArray(record) ? { ...record, status: statusOf(record as SessionRecord) } : record));
}

/** Undefined for a supervisor that closed the connection (or could not be reached) before it answered: one that is ending; any other error as it is. */
function unlessSupervisorGone(error: unknown): undefined {
  // APEX_E_SESSION_STOPPING: it is exiting, its session stopped, and took the call no more.
  if (isApexError(error) && (error.code === "APEX_E_RPC" || error.code === "APEX_E_SESSION_STOPPING")) return undefined;
  throw error;
}

/** Undefined for a supervisor gone (unlessSupervisorGone) or silent for a read's time (frozen, stopped); any other error as it is. */
function unlessSupervisorSilent(error: unknown): undefined {
  if (isApexError(error) && error.code === "APEX_E_TIMEOUT") return undefined;
  return unlessSupervisorGone(error);
}

/**
 * Another session of the project in the way of this one's continue (it runs, or is interrupted,
 * in the working tree this one needs): its hint named `apex stop` and `apex status`, which the
 * client then sent through `--remote` to this session, already stopped (the stop refused, the
 * status not the session in the way). The way is the other session's owner's, on the host or
 * through a grant of that session; said so, in words the client leaves as they are.
 */
function anotherSessionInTheWay(error: unknown, sessionId: string): unknown {
  const other = isApexError(error) && error.code === "APEX_E_SESSION_ACTIVE" ? error.details?.session_id : undefined;
  if (typeof other !== "string" || other === sessionId) return error;
  return new ApexError("APEX_E_SESSION_ACTIVE", (error as ApexError).message, {
    hint: `It is another session than this one: its owner ends it (or continues it, when interrupted) on the server's host, or through a grant of session ${other}; then continue this one again.`,
    ...((error as ApexError).details ? { details: (error as ApexError).details } : {}),
  });
}

/** A call the supervisor left unanswered as it ended (unlessSupervisorGone). */
const GONE = Symbol("supervisor gone");

/** The session a status report is of, or undefined (a report without one). */
function sessionOfStatus(report: unknown): unknown {
  return (report as { session?: { session_id?: unknown } | null } | null)?.session?.session_id;
}

/** Tells the supervisor who is connected here (it shows them in `apex status`). */
class ConnectionReporter {
  private readonly recent = new Map<string, { caller: Caller; since: string; seen: number }>();
  private timer: NodeJS.Timeout | undefined;
  private pending = false;
  private ended = false;

  constructor(
    private readonly location: ProjectLocation,
    private readonly serverId: string,
    private readonly streams: Set<OpenStream>,
    private readonly onServedStore: (runtime: SupervisorRuntime | undefined) => SupervisorRuntime | undefined,
  ) {}

  saw(caller: Caller): void {
    if (this.ended) return;
    const known = this.recent.get(caller.token_id);
    this.recent.set(caller.token_id, { caller, since: known?.since ?? new Date().toISOString(), seen: Date.now() });
    if (!known) this.changed();
    // A grant that expires while its user is still listed: reported again then, without them.
    const left = caller.expires_at ? Date.parse(caller.expires_at) - Date.now() : Infinity;
    if (!known && left < RECENT_MS) setTimeout(() => this.changed(), Math.max(0, left) + 10).unref();
  }

  changed(): void {
    if (this.pending || this.ended) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      void this.report();
    });
  }

  start(): void {
    this.timer = setInterval(() => void this.report(), REPORT_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * The server is closing: tells each supervisor that nobody is connected through it any more,
   * so `apex status` stops listing its users at once (not when their last report grows stale).
   */
  async end(): Promise<void> {
    this.stop();
    this.ended = true;
    this.recent.clear();
    await this.report(true);
  }

  private async report(final = false): Promise<void> {
    if (this.ended && !final) return;
    // Per session: sessions run side by side, and each supervisor shows the users of its own session.
    // record: the grant, so that the supervisor stops listing a user as soon as it is revoked.
    const bySession = new Map<string, Map<string, { user: string; role: Role; since: string; streams: number; record: string }>>();
    const usersOf = (sessionId: string) => bySession.get(sessionId) ?? bySession.set(sessionId, new Map()).get(sessionId)!;
    // A user whose grant has expired is not connected any more (its streams close within a second).
    const expired = (caller: Caller) => Boolean(caller.expires_at && Date.parse(caller.expires_at) <= Date.now());
    for (const stream of this.streams) {
      if (expired(stream.caller)) continue;
      const users = usersOf(stream.caller.session_id);
      const entry = users.get(stream.caller.token_id) ?? { user: stream.caller.user, role: stream.caller.role, since: this.recent.get(stream.caller.token_id)?.since ?? new Date().toISOString(), streams: 0, record: grantPath(stream.caller.session_id, stream.caller.token_id) };
      entry.streams++;
      users.set(stream.caller.token_id, entry);
    }
    for (const [tokenId, seen] of this.recent) {
      const users = usersOf(seen.caller.session_id);
      if (Date.now() - seen.seen > RECENT_MS || expired(seen.caller)) this.recent.delete(tokenId);
      else if (!users.has(tokenId)) users.set(tokenId, { user: seen.caller.user, role: seen.caller.role, since: seen.since, streams: 0, record: grantPath(seen.caller.session_id, tokenId) });
    }
    for (const runtime of liveSupervisors(this.location.storeDir)) {
      if (!this.onServedStore(runtime)) continue;
      const users = final ? new Map() : (bySession.get(runtime.session_id) ?? new Map());
      await callSupervisor(runtime.socket, "session.connections", { server: this.serverId, users: [...users.values()] }, 5000).catch(() => undefined);
    }
  }
}

/** What a stream's parameters must be, checked before the stream opens (after, an error could only end it). */
const STREAM_PARAMS: Record<(typeof STREAM_METHODS)[number], Record<string, "string" | "count">> = {
  "events.subscribe": { from_seq: "count" },
  "logs.follow": { agent: "string" },
  "memory.watch": { glob: "string", since: "count" },
};

function checkStreamParams(method: string, params: unknown): void {
  const bad = (what: string) => new ApexError("APEX_E_BAD_INPUT", `${method}: ${what}.`, { hint: `Parameters of ${method}: ${Object.keys(STREAM_PARAMS[method as keyof typeof STREAM_PARAMS]).join(", ")} (or {} for none).` });
  if (params === null || typeof params !== "object" || Array.isArray(params)) throw bad("the parameters must be a JSON object");
  const kinds = STREAM_PARAMS[method as keyof typeof STREAM_PARAMS];
  for (const [name, value] of Object.entries(params)) {
    const kind = Object.hasOwn(kinds, name) ? kinds[name] : undefined; // `constructor`, `toString`: not parameters either
    if (kind === undefined || value === undefined || value === null) continue; // others are not read
    if (kind === "string" ? typeof value !== "string" : !(Number.isSafeInteger(value) && (value as number) >= 0)) {
      throw bad(`${name} must be ${kind === "string" ? "a string" : "a whole number, 0 or more"}`);
    }
  }
  if (method === "memory.watch" && typeof (params as { glob?: unknown }).glob === "string") compileGlob((params as { glob: string }).glob);
}

/**
 * A grant made through a grant ends no later than the grant that makes it: else an owner shared
 * for an hour could make itself (under another name) an owner for ever.
 */
function checkGrantLifetime(caller: Caller, params: Record<string, unknown>): void {
  if (!caller.expires_at) return;
  const until = Date.parse(caller.expires_at);
  const asked = typeof params.expires_in_s === "number" ? Date.now() + params.expires_in_s * 1000 : Infinity;
  if (asked <= until) return;
  const left = Math.max(1, Math.floor((until - Date.now()) / 1000));
  throw new ApexError("APEX_E_FORBIDDEN", `${caller.user}'s access ends at ${caller.expires_at}; a grant made with it may not last longer${asked === Infinity ? " (this one has no end)" : ""}. Nothing was shared.`, {
    hint: `Give --expires ${left}s or less; the session's owner on the server's host can share for longer.`,
  });
}

function forbidden(caller: Caller, method: string, needed: Role): ApexError {
  return new ApexError("APEX_E_FORBIDDEN", `${caller.user} is ${article(caller.role)} ${caller.role} of this session; ${method} needs ${needed}.`, {
    hint: `The session's owner can grant ${needed} (a new token): \`apex session share SESSION ${caller.user} --role ${needed}\`.`,
  });
}

function article(role: string): string {
  return /^[aeiou]/.test(role) ? "an" : "a";
}

/**
 * A session's events as a remote caller asks for them: `type` keeps one kind, `last` the last N
 * (after `type`). The dashboard and `apex connect` show the last 20 and the merges; the whole
 * list, which grows with every report, task and checkpoint of a long session, went over the
 * network on every page load.
 */
function eventsPage(params: Record<string, unknown>, events: unknown): unknown {
  if (params.type !== undefined && typeof params.type !== "string") throw new ApexError("APEX_E_BAD_INPUT", "events.list: type must be a string (an event type, e.g. session.merged).");
  if (params.last !== undefined && !(Number.isSafeInteger(params.last) && (params.last as number) >= 0)) throw new ApexError("APEX_E_BAD_INPUT", "events.list: last must be a whole number ≥ 0.");
  if (!Array.isArray(events)) return events;
  const kept = params.type === undefined ? events : events.filter((event: { type?: unknown } | null) => event?.type === params.type);
  return params.last === undefined ? kept : kept.slice(kept.length - (params.last as number));
}

function objectBody(body: unknown): Record<string, unknown> {
  // No body at all (no Content-Type either) is a call without parameters; JSON's null is no object.
  if (body === undefined) return {};
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new ApexError("APEX_E_BAD_INPUT", "The request body must be a JSON object of parameters.");
  return body as Record<string, unknown>;
}

/** An error's answer; a 500 without what failed (publicError), which `log` gets under the answer's reference. */
async function sendError(reply: FastifyReply, thrown: unknown, log: (line: string) => void = () => {}): Promise<void> {
  const error = publicError(thrown, log, `${reply.request.method} ${reply.request.url.split("?")[0]}`);
  const status = httpStatus(error);
  if (error.code === "APEX_E_UNAUTHORIZED") reply.header("www-authenticate", 'Bearer realm="apex"');
  if (status === 503) reply.header("retry-after", "1");
  // A client's failed logins are answered late; its requests meanwhile are told when to come back (RFC 9110 Retry-After).
  const retryAfter = error.details?.retry_after_s;
  if (status === 429 && typeof retryAfter === "number") reply.header("retry-after", String(retryAfter));
  await reply.code(status).send({ error: errorBody(error) });
}

/**
 * A request Node could not read (headers over its limit, not HTTP, sent too slowly): answered on
 * the socket itself, since there is no request to reply to, with the API's error body.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const [status, apexError] =
    error.code === "HPE_HEADER_OVERFLOW"
      ? [431, new ApexError("APEX_E_TOO_LARGE", "The request's headers (its URL included) are larger than 16 KiB.")]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, new ApexError("APEX_E_TIMEOUT", `The request did not arrive whole within ${REQUEST_TIMEOUT_MS / 1000} s.`)]
        : [400, new ApexError("APEX_E_BAD_INPUT", "The request is not valid HTTP.")];
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(rawReply(status, apexError));
}

/** A whole HTTP reply with the API's error body, written on a socket that has no request to reply to; it closes the connection. */
function rawReply(status: number, error: ApexError, headers = ""): string {
  const body = JSON.stringify({ error: errorBody(error) });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${headers}connection: close\r\n\r\n${body}`;
}

/**
 * Holds the server to `limit`: a connection past it never reaches the HTTP parser (nor the
 * server's TLS). It is answered at once (in TLS once its handshake is done), 503 (the server full)
 * or 429 (that address), APEX_E_RATE_LIMITED with Retry-After, whatever it sends, then closed;
 * it may take `lingerMs` (REFUSED_LINGER_MS) in all. The log says so at most once a minute, with how many since.
 */
function limitConnections(app: FastifyInstance, limit: ConnectionLimit, tls: { cert: Buffer; key: Buffer } | null, log: (line: string) => void, lingerMs: number): () => void {
  const server = app.server;
  /** Every connection open, admitted or being refused: what the returned function cuts. */
  const open = new Set<Socket>();
  const secureContext = tls ? createSecureContext(tls) : undefined;
  // Node's own (HTTP's parser, or TLS's handshake): they see only the connections admitted.
  const accept = server.listeners("connection") as Array<(socket: Socket) => void>;
  server.removeAllListeners("connection");
  let refused = 0;
  let logged = -Infinity;
  server.on("connection", (socket: Socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    const admitted = limit.admit(socket.remoteAddress);
    if (typeof admitted === "function") {
      socket.once("close", admitted);
      for (const listener of accept) listener.call(server, socket);
      return;
    }
    refused++;
    const full = admitted === "server";
    if (Date.now() - logged >= REFUSED_LOG_MS) {
      logged = Date.now();
      const why = full ? `${limit.held()} open, the most this server holds (--max-connections ${limit.max})` : `${limit.held(socket.remoteAddress)} open from ${clientKey(socket.remoteAddress ?? "?")}, the most one address holds (${limit.perAddress})`;
      log(`refusing connections: ${why}; ${refused} refused since this was last logged`);
      refused = 0;
    }
    socket.on("error", () => {});
    // At most this long in all (not idle: a client sending a byte now and then would hold it).
    const cut = setTimeout(() => socket.destroy(), lingerMs);
    socket.once("close", () => clearTimeout(cut));
    const error = new ApexError("APEX_E_RATE_LIMITED", full ? `The server holds ${limit.max} connections, the most it takes at once; try again in a moment.` : `This address holds ${limit.perAddress} connections to the server, the most one address may; close some, or try again in a moment.`, {
      hint: full ? "If it lasts, the server's operator can raise it (`apex serve --max-connections`, or sharing.serve.max_connections)." : "Each open dashboard, `apex connect` and `logs -f` holds some; behind a proxy or tunnel every user comes from its address.",
      details: { retry_after_s: 5 },
    });
    const answer = (stream: Duplex) => {
      // Whatever the client sends is read and dropped (closing with it unread would reset the connection, losing the answer).
      stream.resume();
      stream.on("end", () => stream.destroy());
      stream.end(rawReply(full ? 503 : 429, error, "retry-after: 5\r\n"));
    };
    if (!secureContext) return answer(socket);
    const secure = new TLSSocket(socket, { isServer: true, secureContext });
    secure.on("error", () => socket.destroy());
    secure.once("secure", () => answer(secure));
  });
  return () => {
    for (const socket of open) socket.destroy();
  };
}

/**
 * A file --tls-cert or --tls-key names that cannot be read is a usage error (exit 2), as an
 * unreadable --token-file is: the command line names the wrong file (it was APEX_E_NOT_FOUND, exit 3).
 */
function readPem(path: string, option: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ApexError("APEX_E_USAGE", withDetail(`Cannot read ${option} ${JSON.stringify(path)}`, (error as NodeJS.ErrnoException).code ?? (error as Error).message), {
      hint: "Give the PEM files of the certificate and its private key (`sharing.serve.tls_cert`/`tls_key` for a session's own server).",
    });
  }
}

/**
 * A request body: JSON, without a `__proto__` key or a `constructor` holding `prototype` anywhere
 * (APEX_E_BAD_INPUT, naming where); not JSON, or empty, is APEX_E_BAD_JSON. Nesting is checked after.
 */
function parseBody(text: string): unknown {
  if (text.trim() === "") throw new ApexError("APEX_E_BAD_JSON", "Bad request: the body is empty; with Content-Type: application/json it must be JSON.", { hint: "Send a JSON object ({} for no parameters)." });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ApexError("APEX_E_BAD_JSON", `Bad request: the body is not valid JSON (${(error as Error).message}).`, { hint: "Send a JSON object (Content-Type: application/json)." });
  }
  // A number JSON.parse reads as another (1e-400 as 0, an id past 2^53 rounded) is refused, as `apex memory set` refuses it.
  refuseInexactNumbers(text, "The request body");
  // A key given twice (`{"path": "/a", "path": "/b"}`): JSON.parse keeps the last, and the call would act on what the sender may not have meant.
  refuseRepeatedKeys(text, value, "The request body");
  // Only a body whose text names such a key (or escapes characters, which could spell one) is walked.
  if (!/__proto__|prototype|\\u/.test(text)) return value;
  const pending: Array<[unknown, string, number]> = [[value, "$", 0]];
  while (pending.length > 0) {
    const [item, at, depth] = pending.pop()!;
    if (item === null || typeof item !== "object" || depth > MAX_BODY_DEPTH) continue;
    if (!Array.isArray(item)) {
      const constructor = Object.hasOwn(item, "constructor") ? (item as { constructor: unknown }).constructor : undefined;
      const key = Object.hasOwn(item, "__proto__") ? "__proto__" : constructor !== null && typeof constructor === "object" && Object.hasOwn(constructor, "prototype") ? "constructor.prototype" : undefined;
      if (key) {
        throw new ApexError("APEX_E_BAD_INPUT", `The request body has a key "${key}" (at ${at.length > 200 ? `${at.slice(0, 200)}…` : at}): such keys are refused, since they could change what objects inherit.`, {
          hint: "Rename the key; memory values and parameters may not use __proto__, nor constructor.prototype.",
          details: { key, at },
        });
      }
    }
    for (const [name, child] of Object.entries(item)) pending.push([child, Array.isArray(item) ? `${at}[${name}]` : `${at}.${name}`, depth + 1]);
  }
  return value;
}

/** The reads of memory entries a limit counts: memory.query's answer, memory.page's page. */
const QUERIES = new Set(["memory.query", "memory.page"]);

/**
 * memory.query (or a memory.page) with a limit, as a grant sees it: what it may not see (another
 * session's records, hidden events) is left out before the limit counts, not after (`--limit 63`
 * gave 62 entries, or none, while more matched). Asked again with a larger limit until it has
 * enough or there are no more. A page that ended for its size, not the limit, is given as it is
 * (with its `next`: the caller asks on); one cut here at the limit has no `next` (the caller has
 * all it asked for).
 */
async function limitedQuery(method: string, limit: number, ask: (limit: number) => Promise<unknown>, visible: (answer: unknown) => unknown): Promise<unknown> {
  const entriesOf = (answer: unknown) => (method === "memory.page" ? (answer as { entries?: unknown } | undefined)?.entries : answer);
  for (let asked = limit; ; asked *= 4) {
    const raw = await ask(asked);
    const shown = visible(raw);
    const [rawEntries, shownEntries] = [entriesOf(raw), entriesOf(shown)];
    if (!Array.isArray(rawEntries) || !Array.isArray(shownEntries)) return shown;
    if (shownEntries.length >= limit) return method === "memory.page" ? { entries: shownEntries.slice(0, limit) } : shownEntries.slice(0, limit);
    if (rawEntries.length < asked) return shown;
  }
}

/** Whether `value` nests arrays and objects more than `limit` levels deep (without recursion: it may be very deep). */
function nestingExceeds(value: unknown, limit: number): boolean {
  const pending: Array<[unknown, number]> = [[value, 0]];
  while (pending.length > 0) {
    const [item, depth] = pending.pop()!;
    if (item === null || typeof item !== "object") continue;
    if (depth + 1 > limit) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) pending.push([child, depth + 1]);
  }
  return false;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A log position a client sent back (logs.read's `read_to`), if it is one: only where following starts, whatever it says. */
function logPosition(value: unknown): LogFile["readTo"] {
  if (!value || typeof value !== "object") return undefined;
  const { dev, ino, size, cut, held } = value as Record<string, unknown>;
  if (![dev, ino, size].every((n) => typeof n === "number" && Number.isSafeInteger(n) && n >= 0)) return undefined;
  // The cut record logs.read saw (a short line of JSON), or null for none; anything else: not known, as from a client that sends none.
  // `held`: logs.read held back the last line of .1 (cli/session/logs.ts acrossCut), read from there again.
  return { dev: dev as number, ino: ino as number, size: size as number, ...(cut === null || (typeof cut === "string" && cut.length <= 1000) ? { cut } : {}), ...(held === "cut" || held === "rest" ? { held } : {}) };
}

function noSuchMethod(method: string): ApexError {
  return new ApexError("APEX_E_NOT_FOUND", `Unknown method ${JSON.stringify(method)}.`, { hint: "The methods are those of `apex`'s control channel (README: Remote and shared sessions).", details: { unknown_method: method } });
}

/** Whether any writer of a session serves `method` (known-methods.ts, loaded on the error paths that ask). */
async function isKnownMethod(method: string): Promise<boolean> {
  return (await import("./known-methods.js")).isKnownMethod(method);
}
