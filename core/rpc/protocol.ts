import { ApexError, ErrorCodes, tooDeepError, type ErrorCode } from "../errors.js";

/**
 * The control protocol: newline-delimited JSON over a unix socket.
 *
 *   request   {"id": 1, "method": "task.claim", "params": {"agent": "coder"}}
 *   reply     {"id": 1, "result": {...}}
 *   failure   {"id": 1, "error": {"code": "APEX_E_NO_TASK", "message": "…", "hint": "…"}}
 *   stream    {"id": 1, "event": {...}}      (only for streaming methods such as events.subscribe)
 *
 * Requests on one connection are answered in any order; ids pair them up.
 */
export interface RpcRequest {
  id: number | string;
  method: string;
  params?: unknown;
}

export interface RpcErrorBody {
  code: string;
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
}

export interface RpcReply {
  id: number | string | null;
  result?: unknown;
  error?: RpcErrorBody;
  event?: unknown;
}

/** How long a long call (a plugin command, a checkpoint) may go with no answer, output or heartbeat: 10 minutes, or APEX_PLUGIN_COMMAND_IDLE_MS (ms). */
export const idleWindowMs = (): number => (Number(process.env.APEX_PLUGIN_COMMAND_IDLE_MS) > 0 ? Number(process.env.APEX_PLUGIN_COMMAND_IDLE_MS) : 600_000);

/** JSON one request or reply carries (a memory import travels in one request); a line may have 64 KiB more around it (LINE_LIMIT). */
// APEX_RPC_MAX_LINE_BYTES (a positive integer) replaces it: it exists so that tests cross the limit with small values.
export const MAX_LINE_BYTES = Number.isSafeInteger(Number(process.env.APEX_RPC_MAX_LINE_BYTES)) && Number(process.env.APEX_RPC_MAX_LINE_BYTES) > 0 ? Number(process.env.APEX_RPC_MAX_LINE_BYTES) : 256 * 1024 * 1024;
export const LINE_LIMIT = MAX_LINE_BYTES + 64 * 1024;

/**
 * A request's JSON text, made before anything is sent (and outside any socket handler): a value
 * nested too deep for JSON.stringify's stack is refused as the store refuses it.
 */
export function sendableJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch (error) {
    throw error instanceof RangeError ? tooDeepError() : error;
  }
}

/** A request to a supervisor as the line sent (see sendableJson). */
export function requestLine(id: number, method: string, params: unknown): string {
  return `${sendableJson({ id, method, params })}\n`;
}

/**
 * A reply as the line sent. One longer than the other end reads (MAX_LINE_BYTES), or too large
 * for a string at all, is replaced by APEX_E_TOO_LARGE: before, the caller got an unreadable
 * "reply is too long" (APEX_E_RPC) after the whole of it had been sent, or "Invalid string length".
 */
export function replyLine(reply: RpcReply): string {
  let line = "";
  try {
    line = JSON.stringify(reply);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
  }
  return line && line.length <= LINE_LIMIT ? `${line}\n` : `${JSON.stringify({ id: reply.id, error: TOO_LARGE_REPLY })}\n`;
}

/** What an answer too large for one reply is told (by the supervisor, or by the CLI reading one). */
export const TOO_LARGE_REPLY: RpcErrorBody = { code: "APEX_E_TOO_LARGE", message: `The answer is larger than one reply over the supervisor's socket carries (${MAX_LINE_BYTES / 1024 / 1024} MiB of JSON).`, hint: "Ask for less at a time (a deeper memory path, a narrower query or export), or run the command with no session running: the store is then read directly." };

export function errorBody(error: unknown): RpcErrorBody {
  if (error instanceof ApexError) {
    return {
      code: error.code,
      message: error.message,
      ...(error.hint ? { hint: error.hint } : {}),
      ...(error.details ? { details: error.details } : {}),
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "APEX_E_INTERNAL", message };
}

/**
 * The method a call named that its supervisor (or `apex serve`) does not have, from the error it
 * got (`details.unknown_method`, whatever its code and message: the server answers it 404), else undefined.
 */
export const unknownMethod = (error: unknown): string | undefined => (error instanceof ApexError && typeof error.details?.unknown_method === "string" ? error.details.unknown_method : undefined);

/** Turns an error reply back into the ApexError the supervisor raised. */
export function errorFromBody(body: RpcErrorBody): ApexError {
  // The other end may not be APEX (a remote server): only its own codes keep their exit code, and only text is a message.
  const code: ErrorCode = typeof body.code === "string" && Object.hasOwn(ErrorCodes, body.code) ? (body.code as ErrorCode) : "APEX_E_RPC";
  const message = typeof body.message === "string" ? body.message : `The other end failed without a message (${JSON.stringify(String(body.code)).slice(0, 80)}).`;
  return new ApexError(code, message, {
    ...(typeof body.hint === "string" && body.hint ? { hint: body.hint } : {}),
    ...(body.details && typeof body.details === "object" && !Array.isArray(body.details) ? { details: body.details } : {}),
  });
}

/**
 * Splits a byte stream into lines; `onLine` gets each complete line without its newline. Linear in
 * the bytes: a chunk is searched once, and the parts of a long line are joined once, when its
 * newline comes (appending to one string and searching all of it again for every chunk made a
 * 50 MB `memory set` through a supervisor take 20 s).
 */
export function lineSplitter(onLine: (line: string) => void, onOverflow: () => void, options: { blankLines?: boolean } = {}): (chunk: string) => void {
  let parts: string[] = [];
  let partsLength = 0;
  // Blank lines are skipped, unless they mean something (`blankLines`: they end server-sent events).
  const emit = (line: string): void => {
    if (options.blankLines || line.trim() !== "") onLine(line);
  };
  return (chunk: string) => {
    let start = 0;
    let newline = chunk.indexOf("\n");
    while (newline >= 0) {
      // The whole line is measured, its last piece too: a line ending in the chunk that passed the limit was taken.
      const long = partsLength + newline - start > LINE_LIMIT;
      const piece = long ? "" : chunk.slice(start, newline);
      const line = parts.length > 0 ? parts.concat(piece).join("") : piece;
      parts = [];
      partsLength = 0;
      if (long) onOverflow();
      else emit(line);
      start = newline + 1;
      newline = chunk.indexOf("\n", start);
    }
    if (start < chunk.length) {
      parts.push(start === 0 ? chunk : chunk.slice(start));
      partsLength += chunk.length - start;
      if (partsLength > LINE_LIMIT) {
        parts = [];
        partsLength = 0;
        onOverflow();
      }
    }
  };
}

/**
 * What a streaming method returns (rpc/server.ts): the call stays open. Here, beside the wire
 * format, so that the session methods name it without loading the server (and node:net).
 */
export const STREAM: unique symbol = Symbol("rpc.stream");
