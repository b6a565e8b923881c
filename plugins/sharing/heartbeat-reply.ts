import type { ServerResponse } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";
import { errorBody } from "../../core/rpc/protocol.js";

/**
 * A call through `apex serve` that waits on plugin hooks in the supervisor (pause, resume, stop,
 * a task claim, done or fail, a milestone) may take any time. A client that asks for it is told
 * that the supervisor is still at work, and waits as long as it is, as a local caller does:
 *
 *   POST …/rpc/<method>   accept: application/x-ndjson   body: {…params, "heartbeat_ms": N}
 *
 * The server passes heartbeat_ms on to the supervisor, and waits on it while its heartbeat comes
 * (only one silent for the server's idle window, APEX_PLUGIN_COMMAND_IDLE_MS, is given up on). An
 * answer before the first heartbeat is the plain one (its HTTP status, a JSON body); once one has
 * come the reply is 200 `application/x-ndjson`: a `{"heartbeat":true}` line for each, then one
 * line `{"result": …}` (or `{}`) or `{"error": {code, message, hint}}`. A request without that
 * accept header is answered as always (the plain reply only): older clients see no change.
 */
export const NDJSON = "application/x-ndjson";

export interface HeartbeatReply {
  /** The supervisor's events on the call: each heartbeat is sent on as a line (the first begins the reply). */
  onEvent(event: unknown): void;
  /** Whether the reply has begun (200, lines): its end is then `end`, not a plain reply. */
  readonly streaming: boolean;
  /** The final line: the result, or the error the call ended with. */
  end(outcome: { result?: unknown } | { error: unknown }): void;
}

/** A heartbeat relay for this request, if its client asked for one; else undefined (the plain reply). */
export function heartbeatReply(request: FastifyRequest, reply: FastifyReply, params: Record<string, unknown>): HeartbeatReply | undefined {
  if (typeof params.heartbeat_ms !== "number" || !String(request.headers.accept ?? "").includes(NDJSON)) return undefined;
  let res: ServerResponse | undefined;
  return {
    onEvent(event) {
      if (!event || typeof event !== "object" || (event as { heartbeat?: unknown }).heartbeat !== true) return;
      if (!res) {
        // The headers set so far (CORS, nosniff) are the reply's, which hijacking leaves behind.
        const headers = reply.getHeaders() as Record<string, string>;
        reply.hijack();
        res = reply.raw;
        // A client gone meanwhile (Ctrl-C) is written nothing: the call goes on in the supervisor all the same.
        if (!res.destroyed) res.writeHead(200, { ...headers, "content-type": `${NDJSON}; charset=utf-8`, "cache-control": "no-store", "x-accel-buffering": "no" });
      }
      if (!res.destroyed && !res.writableEnded) res.write('{"heartbeat":true}\n');
    },
    get streaming() {
      return res !== undefined;
    },
    end(outcome) {
      if (!res || res.destroyed || res.writableEnded) return;
      const body = "error" in outcome ? { error: errorBody(outcome.error) } : outcome.result === undefined ? {} : { result: outcome.result };
      res.end(`${JSON.stringify(body)}\n`);
    },
  };
}
