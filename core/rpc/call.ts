import { connect } from "node:net";
import { ApexError, withDetail } from "../errors.js";
import { errorFromBody, lineSplitter, requestLine, TOO_LARGE_REPLY, type RpcReply } from "./protocol.js";

/**
 * One request over the supervisor's control socket. The protocol is newline-delimited
 * JSON: `{id, method, params}` answered by `{id, result}` or `{id, error: {code, message, hint}}`.
 * Errors come back as the ApexError the supervisor raised (same code, message and hint).
 * `stalled`, asked every second while no answer has come (a call answered sooner never asks it),
 * ends the call with the error it returns: a supervisor that cannot answer (stopped) fails it now.
 * `onEvent` gets the events the method sends before its reply (progress): the timeout then counts
 * from the last of them, so a long call that reports progress is not cut off.
 */
export function callSupervisor(socketPath: string, method: string, params: unknown, timeoutMs = 30_000, stalled?: () => ApexError | undefined, onEvent?: (event: unknown) => void): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const line = requestLine(1, method, params);
    const socket = connect(socketPath);
    let settled = false;
    const finish = (error: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(poll);
      socket.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    let started = Date.now();
    let graced = false;
    const expire = (): void => {
      // Fired late, this process was stopped (SIGSTOP: `apex pause` of an agent): a second more, in
      // which a reply that came meanwhile is read (the timer runs before pending input is read).
      if (!graced && Date.now() - started > timeoutMs + 100) return void ((graced = true), (timer = setTimeout(expire, 1000)));
      const what = onEvent ? `sent nothing on ${method} (no output, no heartbeat) for` : `did not answer ${method} within`;
      finish(new ApexError("APEX_E_TIMEOUT", `The supervisor ${what} ${Math.round(timeoutMs / 1000)} s.`, { hint: `It may be overloaded or stopped; \`apex status\` shows whether it is alive.${onEvent ? " What it was asked may still be running there." : ""}` }));
    };
    let timer = setTimeout(expire, timeoutMs);
    const poll = stalled && setInterval(() => {
      const error = stalled();
      if (error) finish(error);
    }, 1000);
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(line));
    socket.on(
      "data",
      lineSplitter(
        (text) => {
          let reply: RpcReply;
          try {
            reply = JSON.parse(text) as RpcReply;
          } catch (error) {
            finish(new ApexError("APEX_E_RPC", `Unreadable reply from the supervisor: ${(error as Error).message}`));
            return;
          }
          if (reply.id !== 1 && reply.id !== null) return;
          if (reply.error) finish(errorFromBody(reply.error));
          else if (reply.event === undefined) finish(undefined, reply.result);
          // With `onEvent`, each event is progress: the timeout counts from the last one.
          else if (onEvent && !settled) {
            clearTimeout(timer);
            [started, graced, timer] = [Date.now(), false, setTimeout(expire, timeoutMs)];
            onEvent(reply.event);
          }
        },
        () => finish(errorFromBody(TOO_LARGE_REPLY)),
      ),
    );
    // It died (kill -9, OOM) or exited with the request read: done or not, only the store can say.
    // details.connection says how the connection broke ("closed", or unreachable's errno code): callers match on it, never on the message.
    socket.on("close", () => finish(new ApexError("APEX_E_RPC", `The supervisor closed the connection before answering ${method}; whether it was done is not known.`, { hint: "Check `apex status` and what the command would have changed before running it again; if the session is interrupted, `apex start --continue last` recovers it.", details: { connection: "closed" } })));
    socket.on("error", (error: NodeJS.ErrnoException) => finish(unreachable(socketPath, error)));
  });
}

export interface Subscription {
  /** Resolves when the stream ends (the supervisor exited or closed it); rejects on errors. */
  done: Promise<void>;
  close(): void;
}

/** Calls a streaming method and hands each event to `onEvent` until the stream ends. */
export function subscribeSupervisor(socketPath: string, method: string, params: unknown, onEvent: (event: unknown) => void): Subscription {
  const request = requestLine(1, method, params);
  const socket = connect(socketPath);
  let closedByUs = false;
  const done = new Promise<void>((resolve, reject) => {
    socket.setEncoding("utf8");
    socket.on("connect", () => socket.write(request));
    socket.on(
      "data",
      lineSplitter(
        (line) => {
          let reply: RpcReply;
          try {
            reply = JSON.parse(line) as RpcReply;
          } catch {
            return;
          }
          if (reply.error) {
            reject(errorFromBody(reply.error));
            socket.destroy();
          } else if (reply.event !== undefined) onEvent(reply.event);
          else socket.end();
        },
        () => socket.destroy(),
      ),
    );
    socket.on("close", () => resolve());
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (closedByUs) resolve();
      else reject(unreachable(socketPath, error));
    });
  });
  return {
    done,
    close() {
      closedByUs = true;
      socket.destroy();
    },
  };
}

export function unreachable(socketPath: string, error: NodeJS.ErrnoException): ApexError {
  return new ApexError("APEX_E_RPC", withDetail(`Cannot reach the supervisor at ${socketPath}`, error.code ?? error.message), {
    hint: "Check `apex status`; if the session is interrupted, `apex start --continue last` recovers it.", details: { connection: error.code ?? "error" },
  });
}
