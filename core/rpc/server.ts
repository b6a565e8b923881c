import { isUtf8 } from "node:buffer";
import { chmodSync, existsSync, rmSync, statSync } from "node:fs";
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

/** Per connection: the answers it is owed, and whether its caller has shut down its sending side. */
interface OwedCalls {
  open: number;
  ended: boolean;
}

/**
 * The control socket server. Methods are registered by name; each request line is
 * dispatched on arrival, so a slow method does not hold up the others on the connection.
 */
export class RpcServer {
  readonly path: string;
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  /** Requests under way, each with the answer it gets when the grace ends first; `closing` (when the grace ends): no new ones are taken. */
  private readonly underWay = new Set<(graceMs: number) => void>();
  private closing: number | undefined;
  private repair: NodeJS.Timeout | undefined;
  /** The inode of the socket file it listens on: another file at its path (one put back by hand) is not its socket. */
  private inode = 0;

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
        throw new ApexError("APEX_E_SESSION_ACTIVE", `Another supervisor already listens on ${this.path}.`, { hint: "Run `apex status` to see the session it serves." });
      }
      rmSync(this.path, { force: true });
    }
    // allowHalfOpen: a caller that shuts down its sending side once its requests are sent (`nc -N`, socat,
    // a Python agent's shutdown(SHUT_WR)) still gets their answers; Node's default ended the connection
    // at once, and an answer that came after (a claim, a memory set) was lost, though it was done.
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // The umask only while the path is bound (in listen itself): a listen again mid-session leaves none to an agent started meanwhile.
      const previousMask = process.umask(0o177);
      try {
        server.listen(this.path, () => {
          server.off("error", reject);
          resolve();
        });
      } finally {
        process.umask(previousMask);
      }
    });
    chmodSync(this.path, 0o600);
    this.inode = statSync(this.path).ino;
    // Its socket file deleted while it listens (`rm`, a temp cleaner), or an old socket file put back
    // in its place (moved aside and back): no command could reach it, and each waited for it to exit.
    // Checked twice a second, it listens there again, on a new server (the old one closed first:
    // closing it unlinks whatever is at the path; the connections it took go on). Never while
    // closing, and never over a file there that is not a socket (someone's own: left, and commands
    // are told the socket is gone).
    this.repair ??= setInterval(() => void (this.closing || ((found) => found && (found.ino === this.inode || !found.isSocket()))(statSync(this.path, { throwIfNoEntry: false })) || (this.server?.close(), this.listen().catch(() => undefined))), 500).unref();
  }

  /**
   * Takes no new request (each is answered APEX_E_SESSION_STOPPING: nothing of it was done), waits up
   * to `graceMs` for those under way, and answers any still running APEX_E_RPC, its outcome unknown
   * (`details.outcome`; `connection: "closed"`, as its callers read a close); then ends the
   * connections and removes the socket file. Before, a request under way had its connection closed
   * unanswered however soon its answer would have come.
   */
  async close(graceMs = 0): Promise<void> {
    const server = this.server;
    if (!server || this.closing) return;
    clearInterval(this.repair);
    const deadline = (this.closing = Date.now() + graceMs);
    while (this.underWay.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const unanswered of this.underWay) unanswered(graceMs);
    // Each connection is destroyed once its last answer is written (end's callback), and any still open a second
    // on is cut: a caller that kept an idle connection and never closed it after the end (a script's own client,
    // not reading) kept server.close, and so the supervisor's exit, waiting for good, the store open, after
    // `apex stop` had said it stopped.
    for (const socket of this.sockets) socket.end(() => socket.destroy());
    const cut = setTimeout(() => this.sockets.forEach((socket) => socket.destroy()), 1000);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    clearTimeout(cut);
    for (const socket of this.sockets) socket.destroy();
    rmSync(this.path, { force: true });
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    // Read as latin1 (a byte a character, nothing lost), each line checked to be UTF-8 before it is read as such:
    // decoded as UTF-8 on arrival, bytes that are none became U+FFFD, and were stored so without a word.
    socket.setEncoding("latin1");
    const closeListeners: Array<() => void> = [];
    // The answers the connection is owed (a stream counts until its caller closes): once its caller has shut
    // down its sending side (allowHalfOpen), the connection is ended when none is left.
    const calls: OwedCalls = { open: 0, ended: false };
    socket.on("close", () => {
      this.sockets.delete(socket);
      for (const listener of closeListeners.splice(0)) listener();
    });
    socket.on("error", () => socket.destroy());
    socket.on("end", () => {
      // A last request without its newline (`printf '{…}' | nc -N`) is a line all the same: answered, not dropped.
      split("\n");
      calls.ended = true;
      if (calls.open === 0) socket.end();
    });
    const send = (reply: RpcReply): boolean => {
      if (socket.destroyed || !socket.writable) return false;
      socket.write(replyLine(reply));
      return true;
    };
    const split = lineSplitter(
      (line) => {
        const bytes = Buffer.from(line, "latin1");
        if (isUtf8(bytes)) void this.dispatch(bytes.toString("utf8"), send, socket, closeListeners, calls);
        else send({ id: lossyId(bytes), error: NOT_UTF8 });
      },
      () => {
        // What was asked is too large for one request (a value or import over 256 MiB of JSON): the caller's input, not a fault.
        send({ id: null, error: { code: "APEX_E_TOO_LARGE", message: `The request is larger than the supervisor takes (${MAX_LINE_BYTES / 1024 / 1024} MiB of JSON); nothing of it was done.`, hint: "Send it in parts, or with no session running: then the store is written directly." } });
        socket.end();
      },
    );
    socket.on("data", split);
  }

  private async dispatch(
    line: string,
    send: (reply: RpcReply) => boolean,
    socket: Socket,
    closeListeners: Array<() => void>,
    calls: OwedCalls,
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
    const method = String(request.method);
    if (this.closing) return void send({ id, error: errorBody(new ApexError("APEX_E_SESSION_STOPPING", `The session is stopping: its supervisor takes no new request, and did nothing of ${method}.`, { hint: "Once it has stopped (`apex status` says so), run the command again if it is still wanted: it then acts on the store.", details: { status: "stopping", method, grace_left_ms: Math.max(0, this.closing - Date.now()) } })) });
    const handler = typeof request.method === "string" ? this.handlers.get(request.method) : undefined;
    if (!handler) {
      // details.unknown_method: what callers test (unknownMethod in protocol.ts), never the message's text.
      return void send({ id, error: { code: "APEX_E_RPC", message: `Unknown method ${JSON.stringify(request.method)}.`, hint: `Known: ${this.methods().join(", ")}`, details: { unknown_method: request.method } } });
    }
    const params = request.params && typeof request.params === "object" ? (request.params as Record<string, unknown>) : {};
    const ctx: RpcCallContext = {
      method,
      push: (event) => send({ id, event }),
      onClose: (listener) => void (socket.destroyed ? listener() : closeListeners.push(listener)),
      socket,
    };
    // A caller that asks for a heartbeat (`heartbeat_ms`) gets one at that interval while the method runs: it waits on progress, not a fixed time.
    // At most what a timer holds: Node takes a longer one (a remote caller's 1e10) as 1 ms, a heartbeat a millisecond.
    const heartbeat = typeof params.heartbeat_ms === "number" ? setInterval(() => ctx.push({ heartbeat: true }), Math.min(2 ** 31 - 1, Math.max(50, params.heartbeat_ms))) : undefined;
    const unanswered = (graceMs: number) => send({ id, error: errorBody(new ApexError("APEX_E_RPC", `The supervisor is exiting, its session ended, and ${method}, under way, did not finish within the ${graceMs / 1000} s it is given: whether it was done is not known.`, { hint: "Check what it would have changed (`apex status`, the memory, the checkpoints) before running it again.", details: { connection: "closed", outcome: "unknown", method } })) });
    this.underWay.add(unanswered);
    calls.open += 1;
    let stream = false;
    try {
      const result = await handler(params, ctx);
      // A stream stays owed (counted open) until its caller closes the connection.
      stream = result === STREAM;
      if (stream) return;
      // No result key means "no value" (memory.get of an absent path), unlike an explicit null.
      send(result === undefined ? { id } : { id, result });
    } catch (error) {
      send({ id, error: errorBody(error) });
    } finally {
      this.underWay.delete(unanswered);
      clearInterval(heartbeat);
      if (!stream) {
        calls.open -= 1;
        if (calls.open === 0 && calls.ended) socket.end();
      }
    }
  }
}

/** What a request whose bytes are not UTF-8 is answered: nothing of it is done. */
const NOT_UTF8 = {
  code: "APEX_E_BAD_INPUT",
  message: "The request is not UTF-8 text: it holds bytes that UTF-8 does not allow (Latin-1 or other text, binary data, a character cut short); nothing of it was done.",
  hint: "Send the JSON encoded as UTF-8: convert text in another encoding first, and put bytes in a string as base64.",
};

/** The id of a request that is not UTF-8, read with U+FFFD in place of what is not, so that its caller has its answer; null when there is none. */
function lossyId(bytes: Buffer): RpcRequest["id"] | null {
  try {
    const id: unknown = (JSON.parse(bytes.toString("utf8")) as Partial<RpcRequest> | null)?.id;
    return typeof id === "number" || typeof id === "string" ? id : null;
  } catch {
    return null;
  }
}

/** True when something accepts connections on the unix socket `path`. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    const done = (answers: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answers);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true)).once("error", () => done(false));
  });
}
