import { chmodSync, existsSync, rmSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { ApexError } from "../errors.js";
import { errorBody, lineSplitter, MAX_LINE_BYTES, replyLine, STREAM, type RpcReply, type RpcRequest } from "./protocol.js";

/** What a handler knows about the call it serves. */
export interface RpcCallContext {
  method: string;
  /** Sends one event on a streaming call; false once the client is gone. */
  push(event: unknown): boolean;
  /** Runs `listener` when the client disconnects (streaming handlers unsubscribe here). */
  onClose(listener: () => void): void;
  /** Peer credentials are not available from node; the socket's 0600 mode is the access check. */
  readonly socket: Socket;
}

/**
 * A method: returns the result, or throws (an ApexError keeps its code). A streaming method
 * returns {@link STREAM}: the call stays open and the handler pushes events with `ctx.push`.
 */
export type RpcHandler = (params: Record<string, unknown>, ctx: RpcCallContext) => unknown | Promise<unknown>;

export { STREAM };

/**
 * The control socket server. Methods are registered by name; each request line is
 * dispatched on arrival, so a slow method does not hold up the others on the connection.
 */
export class RpcServer {
  readonly path: string;
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /** Adds a method; a second registration under the same name is a programming error. */
  register(method: string, handler: RpcHandler): this {
    if (this.handlers.has(method)) throw new ApexError("APEX_E_INTERNAL", `The RPC method ${method} is registered twice.`);
    this.handlers.set(method, handler);
    return this;
  }

  methods(): string[] {
    return [...this.handlers.keys()].sort();
  }

  /**
   * Listens on the socket path with mode 0600. A leftover socket file from a dead server is
   * replaced; one that still answers means another supervisor serves it, which is refused.
   */
  async listen(): Promise<void> {
    if (existsSync(this.path)) {
      if (await socketAnswers(this.path)) {
        throw new ApexError("APEX_E_SESSION_ACTIVE", `Another supervisor already listens on ${this.path}.`, {
          hint: "Run `apex status` to see the session it serves.",
        });
      }
      rmSync(this.path, { force: true });
    }
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    const previousMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.path, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } finally {
      process.umask(previousMask);
    }
    chmodSync(this.path, 0o600);
  }

  /** Stops accepting connections, ends open ones and removes the socket file. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const socket of this.sockets) socket.end();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    rmSync(this.path, { force: true });
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setEncoding("utf8");
    const closeListeners: Array<() => void> = [];
    socket.on("close", () => {
      this.sockets.delete(socket);
      for (const listener of closeListeners.splice(0)) listener();
    });
    socket.on("error", () => socket.destroy());
    const send = (reply: RpcReply): boolean => {
      if (socket.destroyed || !socket.writable) return false;
      socket.write(replyLine(reply));
      return true;
    };
    socket.on(
      "data",
      lineSplitter(
        (line) => void this.dispatch(line, send, socket, closeListeners),
        () => {
          // What was asked is too large for one request (a value or import over 256 MiB of JSON): the caller's input, not a fault.
          send({ id: null, error: { code: "APEX_E_TOO_LARGE", message: `The request is larger than the supervisor takes (${MAX_LINE_BYTES / 1024 / 1024} MiB of JSON); nothing of it was done.`, hint: "Send it in parts, or with no session running: then the store is written directly." } });
          socket.end();
        },
      ),
    );
  }

  private async dispatch(
    line: string,
    send: (reply: RpcReply) => boolean,
    socket: Socket,
    closeListeners: Array<() => void>,
  ): Promise<void> {
    let request: RpcRequest;
    try {
      request = JSON.parse(line) as RpcRequest;
    } catch {
      send({ id: null, error: { code: "APEX_E_RPC", message: "The request is not valid JSON." } });
      return;
    }
    // Valid JSON that is not an object (`null`, `5`, `[]`) named no method: it was read as one, `null` threw (no answer, an unhandled rejection).
    if (request === null || typeof request !== "object" || Array.isArray(request)) return void send({ id: null, error: { code: "APEX_E_RPC", message: "The request is not a JSON object {id, method, params}." } });
    const id = request.id ?? null;
    const handler = typeof request.method === "string" ? this.handlers.get(request.method) : undefined;
    if (!handler) {
      // details.unknown_method: what callers test (unknownMethod in protocol.ts), never the message's text.
      return void send({ id, error: { code: "APEX_E_RPC", message: `Unknown method ${JSON.stringify(request.method)}.`, hint: `Known: ${this.methods().join(", ")}`, details: { unknown_method: request.method } } });
    }
    const params = request.params && typeof request.params === "object" ? (request.params as Record<string, unknown>) : {};
    const ctx: RpcCallContext = {
      method: request.method,
      push: (event) => send({ id, event }),
      onClose: (listener) => {
        if (socket.destroyed) listener();
        else closeListeners.push(listener);
      },
      socket,
    };
    // A caller that asks for a heartbeat (`heartbeat_ms`) gets one at that interval while the method runs: it waits on progress, not a fixed time.
    const heartbeat = typeof params.heartbeat_ms === "number" ? setInterval(() => ctx.push({ heartbeat: true }), Math.max(50, params.heartbeat_ms)) : undefined;
    try {
      const result = await handler(params, ctx);
      if (result === STREAM) return;
      // No result key means "no value" (memory.get of an absent path), unlike an explicit null.
      send(result === undefined ? { id } : { id, result });
    } catch (error) {
      send({ id, error: errorBody(error) });
    } finally {
      clearInterval(heartbeat);
    }
  }
}

/** True when something accepts connections on the unix socket `path`. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(false);
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}
