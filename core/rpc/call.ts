import { connect } from "node:net";
import { ApexError } from "../errors.js";
import { errorFromBody, lineSplitter, requestLine, type RpcReply } from "./protocol.js";

/**
 * One request over the supervisor's control socket. The protocol is newline-delimited
 * JSON: `{id, method, params}` answered by `{id, result}` or `{id, error: {code, message, hint}}`.
 * Errors come back as the ApexError the supervisor raised (same code, message and hint).
 */
export function callSupervisor(socketPath: string, method: string, params: unknown, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const line = requestLine(1, method, params);
    const socket = connect(socketPath);
    let settled = false;
    const finish = (error: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value);
    };
    const timer = setTimeout(() => {
      finish(
        new ApexError("APEX_E_TIMEOUT", `The supervisor did not answer ${method} within ${Math.round(timeoutMs / 1000)} s.`, {
          hint: "It may be overloaded or stopped; `apex status` shows whether it is alive.",
        }),
      );
    }, timeoutMs);
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
        },
        () => finish(new ApexError("APEX_E_RPC", "The supervisor's reply is too long.")),
      ),
    );
    socket.on("close", () => finish(new ApexError("APEX_E_RPC", `The supervisor closed the connection before answering ${method}.`)));
    socket.on("error", (error: NodeJS.ErrnoException) => finish(unreachable(socketPath, error)));
  });
}

export interface Subscription {
  /** Resolves when the stream ends (the supervisor exited or closed it); rejects on errors. */
  done: Promise<void>;
  close(): void;
}

/** Waits for a subscription to end, closing it on Ctrl-C or SIGTERM (`logs -f`, `connect`). */
export async function followUntilInterrupted(subscription: Subscription): Promise<void> {
  const stop = () => subscription.close();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await subscription.done;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
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

function unreachable(socketPath: string, error: NodeJS.ErrnoException): ApexError {
  return new ApexError("APEX_E_RPC", `Cannot reach the supervisor at ${socketPath}: ${error.code ?? error.message}.`, {
    hint: "Check `apex status`; if the session is interrupted, `apex start --continue last` recovers it.",
  });
}

/**
 * One long-lived connection to a supervisor, with requests multiplexed by id: for a process
 * that calls it often (`apex serve`), which then pays the connection set-up once instead of
 * per call. Reconnects on the next call after the connection drops.
 */
export class SupervisorChannel {
  private socket: ReturnType<typeof connect> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout; method: string }>();

  constructor(readonly socketPath: string) {}

  call(method: string, params: unknown, timeoutMs = 30_000): Promise<unknown> {
    const id = this.nextId++;
    let line: string;
    try {
      line = requestLine(id, method, params);
    } catch (error) {
      return Promise.reject(error);
    }
    const socket = this.open();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ApexError("APEX_E_TIMEOUT", `The supervisor did not answer ${method} within ${Math.round(timeoutMs / 1000)} s.`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, method });
      socket.write(line);
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private open(): ReturnType<typeof connect> {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = connect(this.socketPath);
    this.socket = socket;
    socket.setEncoding("utf8");
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
          const waiting = typeof reply.id === "number" ? this.pending.get(reply.id) : undefined;
          if (!waiting || reply.event !== undefined) return;
          this.pending.delete(reply.id as number);
          clearTimeout(waiting.timer);
          if (reply.error) waiting.reject(errorFromBody(reply.error));
          else waiting.resolve(reply.result);
        },
        () => socket.destroy(),
      ),
    );
    const fail = (error?: NodeJS.ErrnoException) => {
      if (this.socket === socket) this.socket = undefined;
      for (const [id, waiting] of this.pending) {
        this.pending.delete(id);
        clearTimeout(waiting.timer);
        waiting.reject(error ? unreachable(this.socketPath, error) : new ApexError("APEX_E_RPC", `The supervisor closed the connection before answering ${waiting.method}.`));
      }
    };
    socket.on("error", (error: NodeJS.ErrnoException) => fail(error));
    socket.on("close", () => fail());
    return socket;
  }
}
