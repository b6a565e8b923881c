import { connect } from "node:net";
import { ApexError } from "../../core/errors.js";
import { unreachable } from "../../core/rpc/call.js";
import { errorFromBody, lineSplitter, requestLine, type RpcReply } from "../../core/rpc/protocol.js";

/**
 * One long-lived connection to a supervisor, with requests multiplexed by id: for a process
 * that calls it often (`apex serve`), which then pays the connection set-up once instead of
 * per call. Reconnects on the next call after the connection drops.
 */
export class SupervisorChannel {
  private socket: ReturnType<typeof connect> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout; method: string; onEvent?: (event: unknown) => void; expire: () => void; timeoutMs: number }>();

  constructor(readonly socketPath: string) {}

  /** With `onEvent`, each event the method sends (its heartbeat) is progress: the timeout counts from the last one. */
  call(method: string, params: unknown, timeoutMs = 30_000, onEvent?: (event: unknown) => void): Promise<unknown> {
    const id = this.nextId++;
    let line: string;
    try {
      line = requestLine(id, method, params);
    } catch (error) {
      return Promise.reject(error);
    }
    const socket = this.open();
    return new Promise((resolve, reject) => {
      const expire = () => {
        this.pending.delete(id);
        const what = onEvent ? `sent nothing on ${method} (not even its heartbeat) for` : `did not answer ${method} within`;
        // idle_ms: the window this server gave up after, which its client names (cli/session/lifecycle-wait.ts).
        reject(new ApexError("APEX_E_TIMEOUT", `The supervisor ${what} ${Math.round(timeoutMs / 1000)} s.`, onEvent ? { details: { idle_ms: timeoutMs } } : {}));
      };
      this.pending.set(id, { resolve, reject, timer: setTimeout(expire, timeoutMs), method, expire, timeoutMs, ...(onEvent ? { onEvent } : {}) });
      socket.write(line);
    });
  }

  /** Whether calls are under way (waiting for their answer). */
  get busy(): boolean {
    return this.pending.size > 0;
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
          if (!waiting) return;
          if (reply.event !== undefined) {
            if (!waiting.onEvent) return;
            clearTimeout(waiting.timer);
            waiting.timer = setTimeout(waiting.expire, waiting.timeoutMs);
            return waiting.onEvent(reply.event);
          }
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
        waiting.reject(error ? unreachable(this.socketPath, error) : new ApexError("APEX_E_RPC", `The supervisor closed the connection before answering ${waiting.method}; whether it was done is not known.`, { hint: "Check `apex status` and what the command would have changed before running it again; if the session is interrupted, `apex start --continue last` recovers it.", details: { connection: "closed" } }));
      }
    };
    socket.on("error", (error: NodeJS.ErrnoException) => fail(error));
    socket.on("close", () => fail());
    return socket;
  }
}
