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
        waiting.reject(error ? unreachable(this.socketPath, error) : new ApexError("APEX_E_RPC", `The supervisor closed the connection before answering ${waiting.method}; whether it was done is not known.`, { hint: "Check `apex status` and what the command would have changed before running it again; if the session is interrupted, `apex start --continue last` recovers it.", details: { connection: "closed" } }));
      }
    };
    socket.on("error", (error: NodeJS.ErrnoException) => fail(error));
    socket.on("close", () => fail());
    return socket;
  }
}
