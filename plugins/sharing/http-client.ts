import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { ApexError, withDetail } from "../../core/errors.js";
import { MAX_LINE_BYTES, errorFromBody, lineSplitter, sendableJson, type RpcErrorBody } from "../../core/rpc/protocol.js";
import { NDJSON } from "./heartbeat-reply.js";
import { borrowedTokenSession, tokenFor } from "./remote.js";
import { roleNeeded } from "./roles.js";
import type { Subscription } from "../../core/rpc/call.js";

/**
 * The remote transport behind callSupervisor and subscribeSupervisor: the same methods and
 * params as the control socket, over `apex serve`'s HTTP API.
 *
 *   POST <endpoint>/rpc/<method>   body: params     → 200 {"result": …} | 4xx/5xx {"error": {code, message, hint}}
 *   POST <endpoint>/stream         body: {<method>: params, …} → text/event-stream, one SSE event per item
 *
 * The token travels in the Authorization header only (never in a URL). A server's self-signed
 * certificate is trusted with NODE_EXTRA_CA_CERTS.
 */
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/**
 * A token refused that was saved for another session of the host (the host's last saved, sent for
 * a session with none of its own): the hint says so, and how to save this session's. It said only
 * to ask the owner for an invite, of a token the user may well hold for this session too.
 */
function borrowedTokenRefused(endpoint: string, error: ApexError): ApexError {
  if (error.code !== "APEX_E_UNAUTHORIZED") return error;
  const url = new URL(endpoint);
  const session = /^\/api\/sessions\/([^/]+)/.exec(url.pathname)?.[1];
  if (session === undefined) return error;
  const host = `${url.hostname}:${url.port || (url.protocol === "https:" ? 443 : 80)}`;
  const target = decodeURIComponent(session);
  const saved = borrowedTokenSession(host, target);
  if (saved === undefined) return error;
  return new ApexError(error.code, error.message, {
    hint: `The token sent is the one saved for session ${saved} of ${host}; none is saved for ${target}. Save its own with \`apex login ${host}/${target}\`, or give --token-file FILE or APEX_TOKEN.`,
    ...(error.details ? { details: error.details } : {}),
  });
}

/**
 * `what`: the method called (or the stream), named when the connection closes once the request
 * was sent; `write`: whether it may change something, whose outcome is then not known.
 */
function open(endpoint: string, path: string, body: unknown, timeoutMs: number, what: string, write: boolean, accept?: string): { done: Promise<IncomingMessage>; abort: () => void; silent: () => boolean } {
  const url = new URL(`${endpoint}${path}`);
  const secure = url.protocol === "https:";
  const host = `${url.hostname}:${url.port || (secure ? 443 : 80)}`;
  const payload = Buffer.from(sendableJson(body ?? {}));
  // The session the endpoint names (/api/sessions/<session>/…): its own saved token, as a grant is for one session.
  const session = /^\/api\/sessions\/([^/]+)\//.exec(url.pathname)?.[1];
  const token = tokenFor(host, session === undefined ? undefined : decodeURIComponent(session));
  const send = secure ? httpsRequest : httpRequest;
  let abort: () => void = () => {};
  /** Whether the socket was silent for timeoutMs (and closed for it), before or after the reply began. */
  let silent = false;
  const done = new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(
      url,
      {
        method: "POST",
        agent: secure ? agents.https : agents.http,
        headers: { "content-type": "application/json", "content-length": payload.length, authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) },
        timeout: timeoutMs,
      },
      resolve,
    );
    abort = () => req.destroy();
    // The whole request went out: a connection closed from now on may have been closed by a server that acted on it.
    let sent = false;
    req.on("finish", () => (sent = true));
    req.on("timeout", () => {
      // Timers run before input waiting on the socket is read: a process stopped (Ctrl-Z, SIGSTOP) or not run for
      // a while (a loaded machine) past the timeout would give up on an answer that came meanwhile. What is there
      // is read first (setImmediate runs after that read); only a socket that still read nothing is silent.
      const read = req.socket?.bytesRead ?? 0;
      setImmediate(() => {
        if (req.destroyed || (req.socket?.bytesRead ?? 0) !== read) return;
        silent = true;
        req.destroy(new ApexError("APEX_E_TIMEOUT", `${host} did not answer within ${Math.round(timeoutMs / 1000)} s.`));
      });
    });
    req.on("error", (error: NodeJS.ErrnoException) => {
      if (error instanceof ApexError) reject(error);
      else if (sent && (error.code === "ECONNRESET" || error.code === "EPIPE")) {
        // It was not refused: it took the request and closed without an answer (killed, restarted, a proxy that gave up).
        reject(
          new ApexError("APEX_E_RPC", `${url.origin} closed the connection before answering ${what} (${error.code})${write ? "; whether it was done is not known" : ""}.`, {
            hint: write
              ? `Check what ${what} would have changed (\`apex --remote HOST/SESSION status\`) before running it again.${url.protocol === "http:" ? ` If the server serves HTTPS (--tls-cert), write https://${url.host}/SESSION.` : ""}`
              : unreachableHint(url, error),
            details: { connection: error.code },
          }),
        );
      } else if (secure && isCertificateError(error)) reject(untrustedCertificate(url, error));
      else reject(new ApexError("APEX_E_RPC", withDetail(`Cannot reach ${url.origin}`, error.code ?? error.message), { hint: unreachableHint(url, error), details: { connection: error.code ?? "error" } }));
    });
    req.end(payload);
  });
  return { done, abort, silent: () => silent };
}

/** A certificate this client refused (OpenSSL's verification codes, Node's for a name it does not hold). */
function isCertificateError(error: NodeJS.ErrnoException): boolean {
  return typeof error.code === "string" && (error.code === "ERR_TLS_CERT_ALTNAME_INVALID" || /CERT|SIGNED|UNABLE_TO_(GET|VERIFY)|CA_/.test(error.code));
}

/**
 * The server answered, with a certificate this client does not trust: said so, with what to do
 * for that reason. It read "Cannot reach …" and asked whether `apex serve` ran there, which it did.
 */
function untrustedCertificate(url: URL, error: NodeJS.ErrnoException): ApexError {
  const code = error.code!;
  const hint =
    code === "ERR_TLS_CERT_ALTNAME_INVALID"
      ? `Connect by a name or address the certificate holds, or serve one made for ${url.hostname} (its subjectAltName).`
      : /EXPIRED|NOT_YET_VALID/.test(code)
        ? "The server's operator renews its certificate (--tls-cert); check this host's clock too."
        : "A self-signed certificate (or one of a private authority) is trusted with NODE_EXTRA_CA_CERTS=cert.pem: the server's --tls-cert, or the authority's.";
  return new ApexError("APEX_E_RPC", `${url.origin} answered with a certificate this client does not trust: ${error.message.replace(/\.$/, "")} (${code}).`, { hint, details: { tls: code } });
}

/**
 * What to try when a server cannot be reached: the other scheme when the answer says it speaks
 * it (a TLS handshake answered in plain HTTP: EPROTO, "wrong version number"; plain HTTP cut off
 * by a TLS server: a reset), as a host without a scheme is reached over https unless it is loopback.
 */
function unreachableHint(url: URL, error: NodeJS.ErrnoException): string {
  const other = `${url.protocol === "https:" ? "http" : "https"}://${url.host}/SESSION`;
  if (url.protocol === "https:" && (error.code === "EPROTO" || error.code === "ERR_SSL_WRONG_VERSION_NUMBER" || /wrong version number/i.test(error.message))) {
    return `The server there did not answer in TLS (plain HTTP? an \`apex serve\` without --tls-cert): write ${other}.`;
  }
  if (error.code === "ECONNRESET" && url.protocol === "http:") return `Is \`apex serve\` running there? If it serves HTTPS (--tls-cert), write ${other}.`;
  if (url.protocol === "https:") return "Is `apex serve` running there?";
  return "Is `apex serve` running there?";
}

/** A reply or event longer than a socket line may be (MAX_LINE_BYTES) is refused: a server streaming without end must not fill this process's memory. */
function tooLong(endpoint: string, what: string): ApexError {
  return new ApexError("APEX_E_RPC", `${new URL(endpoint).origin} sent ${what} larger than ${MAX_LINE_BYTES / 1024 / 1024} MiB; it was not read further.`, {
    hint: "Is it `apex serve`? Ask for less (a narrower glob, fewer lines).",
  });
}

async function readAll(endpoint: string, response: IncomingMessage): Promise<string> {
  response.setEncoding("utf8");
  let text = "";
  for await (const chunk of response) {
    text += chunk;
    if (text.length > MAX_LINE_BYTES) {
      response.destroy();
      throw tooLong(endpoint, "a reply");
    }
  }
  return text;
}

/**
 * A reply of heartbeat lines then one final line (heartbeat-reply.ts): each heartbeat handed to
 * `heard`, the final line returned as the reply's text. A line past MAX_LINE_BYTES is refused.
 */
async function readLines(endpoint: string, response: IncomingMessage, heard: (event: unknown) => void): Promise<string> {
  response.setEncoding("utf8");
  const lines: string[] = [];
  let overflow = false;
  const split = lineSplitter((line) => lines.push(line), () => (overflow = true));
  let last = "";
  for await (const chunk of response) {
    split(chunk as string);
    if (overflow) {
      response.destroy();
      throw tooLong(endpoint, "a reply");
    }
    for (const line of lines.splice(0)) {
      if (line.trim() === '{"heartbeat":true}') heard({ heartbeat: true });
      else if (line.trim()) last = line;
    }
  }
  return last;
}

/**
 * Server-sent events, a chunk at a time: the blocks (events) that chunk completes, split by the
 * socket's own linear line splitter keeping blank lines (which end an event); undefined once an
 * unfinished event passes MAX_LINE_BYTES.
 */
function sseBlocks(): (chunk: string) => string[] | undefined {
  let lines: string[] = [];
  let overflow = false;
  const split = lineSplitter((line) => lines.push(line), () => (overflow = true), { blankLines: true });
  let block: string[] = [];
  let blockLength = 0;
  return (chunk) => {
    split(chunk);
    const blocks: string[] = [];
    for (const line of lines) {
      if (line !== "") {
        block.push(line);
        blockLength += line.length + 1;
      } else if (block.length > 0) {
        blocks.push(block.join("\n"));
        block = [];
        blockLength = 0;
      }
    }
    lines = [];
    // One event (many short lines, or one long one) past the bound a socket line has.
    return overflow || blockLength > MAX_LINE_BYTES ? undefined : blocks;
  };
}

function replyError(endpoint: string, response: IncomingMessage, text: string): ApexError {
  try {
    const parsed = JSON.parse(text) as { error?: RpcErrorBody };
    if (parsed.error?.code) return borrowedTokenRefused(endpoint, errorFromBody(parsed.error));
  } catch {
    // not ours: fall through
  }
  return notApex(endpoint, response, text);
}

/**
 * A reply `apex serve` would not give (another kind of server at that address, or a proxy's
 * page): said so in one line, with the start of its text stripped of markup, never the page.
 */
function notApex(endpoint: string, response: IncomingMessage, text: string): ApexError {
  // A proxy whose upstream is down (or an older `apex serve` closing, which answered with
  // fastify's own body): the server is out of reach for now, as when nothing listens at all.
  if (response.statusCode === 503) {
    return new ApexError("APEX_E_RPC", `Cannot reach ${new URL(endpoint).origin}: HTTP 503 Service Unavailable (shutting down, restarting, or behind a proxy whose server is down).`, {
      hint: "Try again in a moment; if it lasts, check that `apex serve` runs there.",
      details: { http_status: 503 },
    });
  }
  // A proxy or gateway in front of the server that could not reach it (or gave up waiting for it): the server is
  // out of reach, as above. It was said as a server that is not `apex serve` ("check the host and port").
  if (response.statusCode === 502 || response.statusCode === 504) {
    const status = response.statusCode === 502 ? "502 Bad Gateway" : "504 Gateway Timeout";
    return new ApexError("APEX_E_RPC", `Cannot reach ${new URL(endpoint).origin}: HTTP ${status} (a proxy or gateway in front of it could not reach \`apex serve\`).`, {
      hint: "Try again in a moment; if it lasts, check that `apex serve` runs behind that proxy, and the proxy's own address for it.",
      details: { http_status: response.statusCode },
    });
  }
  const type = String(response.headers["content-type"] ?? "no content type").split(";")[0];
  const gist = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 80);
  return new ApexError("APEX_E_RPC", `${new URL(endpoint).origin} did not answer as \`apex serve\` does (HTTP ${response.statusCode}, ${type}${gist ? `: ${JSON.stringify(gist)}` : ""}).`, {
    hint: "Check the host and port: is it the address `apex serve` printed?",
  });
}

/**
 * One call, answered whole within `timeoutMs` (else APEX_E_TIMEOUT): the socket's own timeout
 * covers silence only, and a server that sends a byte now and then would hold the call for ever.
 * With `onEvent` (and `heartbeat_ms` in the params), the server may answer with the supervisor's
 * heartbeat lines before the result (heartbeat-reply.ts): `timeoutMs` then counts from the last.
 */
export async function callRemote(endpoint: string, method: string, params: unknown, timeoutMs: number, onEvent?: (event: unknown) => void): Promise<unknown> {
  const opened = open(endpoint, `/rpc/${encodeURIComponent(method)}`, params, timeoutMs, method, roleNeeded(method, {}) !== "viewer", onEvent ? `${NDJSON}, application/json` : undefined);
  let late = false;
  let settled = false;
  // As the socket's timeout above: what came while this process was stopped or not run is read before giving up.
  const expire = () => {
    const fired = deadline;
    setImmediate(() => {
      if (settled || deadline !== fired) return; // answered, or heard, meanwhile
      late = true;
      opened.abort();
    });
  };
  let deadline = setTimeout(expire, timeoutMs);
  const heard = (event: unknown) => {
    clearTimeout(deadline);
    deadline = setTimeout(expire, timeoutMs);
    onEvent?.(event);
  };
  let response: IncomingMessage;
  let text: string;
  let streamed = false;
  try {
    response = await opened.done;
    streamed = Boolean(onEvent) && String(response.headers["content-type"] ?? "").startsWith(NDJSON);
    text = streamed ? await readLines(endpoint, response, heard) : await readAll(endpoint, response);
  } catch (error) {
    if (late || opened.silent()) {
      const what = onEvent ? `sent nothing on ${method} (no answer, no heartbeat) for` : `did not answer ${method} within`;
      throw new ApexError("APEX_E_TIMEOUT", `${new URL(endpoint).host} ${what} ${Math.round(timeoutMs / 1000)} s.`);
    }
    if (error instanceof ApexError) throw error;
    // Cut once the reply had begun (the server killed while the supervisor's heartbeat came): said as
    // a connection closed before the answer is (it was a bare "broke during", no hint, no details.connection).
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const write = roleNeeded(method, {}) !== "viewer";
    throw new ApexError("APEX_E_RPC", `${new URL(endpoint).origin} closed the connection before answering ${method} (${code})${write ? "; whether it was done is not known" : ""}.`, {
      hint: write ? `Check what ${method} would have changed (\`apex --remote HOST/SESSION status\`) before running it again.` : "Is `apex serve` still running there?",
      details: { connection: code },
      cause: error,
    });
  } finally {
    settled = true;
    clearTimeout(deadline);
  }
  if (response.statusCode !== 200) throw replyError(endpoint, response, text);
  let reply: unknown;
  try {
    reply = JSON.parse(text);
  } catch {
    reply = undefined;
  }
  if (streamed && text === "") {
    throw new ApexError("APEX_E_RPC", `${new URL(endpoint).origin} ended its reply to ${method} without an answer; whether it was done is not known.`, {
      hint: `Check what ${method} would have changed (\`apex --remote HOST/SESSION status\`) before running it again.`,
      details: { connection: "closed" },
    });
  }
  if (reply === null || typeof reply !== "object" || Array.isArray(reply)) throw notApex(endpoint, response, text);
  // After heartbeats, an error comes as the final line of a 200 reply.
  const failed = streamed ? (reply as { error?: RpcErrorBody }).error : undefined;
  if (failed?.code) throw errorFromBody(failed);
  return (reply as { result?: unknown }).result;
}

/**
 * How long a stream may stay silent before its connection is taken as lost: `apex serve` sends a
 * keep-alive every 15 s, so three missed ones (APEX_STREAM_IDLE_MS, ms, to change it). A network
 * that goes away under an open connection (a laptop asleep, a VPN gone) neither answers nor
 * closes it: without this, `connect`, `logs -f` and `memory watch` waited for ever, showing nothing.
 */
const streamIdleMs = (): number => (Number(process.env.APEX_STREAM_IDLE_MS) > 0 ? Number(process.env.APEX_STREAM_IDLE_MS) : 45_000);

/** One streaming method over server-sent events; `onEvent` gets each event's data. */
export function subscribeRemote(endpoint: string, method: string, params: unknown, onEvent: (event: unknown) => void): Subscription {
  let closedByUs = false;
  let abort: () => void = () => {};
  const done = (async () => {
    const idleMs = streamIdleMs();
    // The socket's idle timeout: silence before the reply or between its chunks (keep-alives included).
    const opened = open(endpoint, "/stream", { [method]: params ?? {} }, idleMs, method, false);
    const silent = () =>
      new ApexError("APEX_E_TIMEOUT", `${new URL(endpoint).origin} sent nothing on the ${method} stream for ${idleMs / 1000} s, not even its keep-alive: the connection is taken as lost.`, {
        hint: "Check the network to the server (and that `apex serve` runs there), then follow the session again.",
        details: { connection: "silent" },
      });
    abort = opened.abort;
    let response: IncomingMessage;
    try {
      response = await opened.done;
    } catch (error) {
      if (closedByUs) return;
      if (opened.silent()) throw silent();
      throw error;
    }
    if (response.statusCode !== 200) throw replyError(endpoint, response, await readAll(endpoint, response));
    if (!String(response.headers["content-type"] ?? "").startsWith("text/event-stream")) {
      response.destroy(); // its body may never end: not read
      throw notApex(endpoint, response, "");
    }
    response.setEncoding("utf8");
    const split = sseBlocks();
    try {
      for await (const chunk of response) {
        const blocks = split(chunk as string);
        if (!blocks) {
          response.destroy();
          throw tooLong(endpoint, "an event");
        }
        for (const block of blocks) {
          const message = parseSse(block);
          if (!message) continue;
          if (message.event === "error") throw errorFromBody(eventData(endpoint, message.data) as RpcErrorBody);
          // Why the server ended it, as the value `done` resolves to (a Subscription's done carries no value otherwise).
          if (message.event === "end") return endReason(message.data);
          if (message.event === method) onEvent(eventData(endpoint, message.data));
        }
      }
    } catch (error) {
      if (closedByUs) return;
      if (opened.silent()) throw silent();
      if (error instanceof ApexError) throw error;
      // The connection broke (the server killed, the network gone): said so, not as an internal error.
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ApexError("APEX_E_RPC", withDetail(`The event stream from ${new URL(endpoint).origin} broke`, code), {
        hint: "Is `apex serve` still running there?",
        details: { connection: code },
        cause: error,
      });
    }
    // Closed without its `end` event (a proxy that gave up, a server gone between two events): what it
    // followed may go on. It resolved as an end, and `connect` and `logs -f` exited 0 as if the session had ended.
    if (closedByUs) return;
    throw new ApexError("APEX_E_RPC", `The ${method} stream from ${new URL(endpoint).origin} was closed before it ended: the connection was lost.`, {
      hint: "Is `apex serve` still running there? Follow the session again once it answers.",
      details: { connection: "closed" },
    });
  })();
  return {
    done: done as Promise<void>,
    close() {
      closedByUs = true;
      abort();
    },
  };
}

/** An event's data: a JSON object, as `apex serve` sends them; anything else is said in one line (APEX_E_RPC). */
function eventData(endpoint: string, data: string): unknown {
  try {
    const value: unknown = JSON.parse(data);
    if (value !== null && typeof value === "object") return value;
  } catch {
    // said below
  }
  throw new ApexError("APEX_E_RPC", `${new URL(endpoint).origin} sent a stream event that is not a JSON object; the stream was closed.`, {
    hint: "Is it `apex serve`, of this version of APEX?",
  });
}

function endReason(data: string): string | undefined {
  try {
    const reason = (JSON.parse(data) as { reason?: unknown }).reason;
    return typeof reason === "string" ? reason : undefined;
  } catch {
    return undefined;
  }
}

function parseSse(block: string): { event: string; data: string } | undefined {
  let event = "message";
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event, data: data.join("\n") } : undefined;
}
