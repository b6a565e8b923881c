import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it, vi } from "vitest";
import { callSupervisor } from "../core/rpc/call.js";
import { RpcServer } from "../core/rpc/server.js";
import { MAX_LINE_BYTES, STREAM, errorFromBody, lineSplitter, type RpcReply } from "../core/rpc/protocol.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";
import { waitFor } from "./fixtures/agents/harness.js";

// The socket's limit lowered from 256 MiB to 64 MiB (APEX_RPC_MAX_LINE_BYTES, read as protocol.js
// loads: hoisted above the imports), so that the lines crossing it are a quarter as large: the
// same code paths, seconds and 200 MiB of memory less. The 50 MB line below stays under it.
vi.hoisted(() => {
  process.env.APEX_RPC_MAX_LINE_BYTES = String(64 * 1024 * 1024);
});
afterAll(() => {
  delete process.env.APEX_RPC_MAX_LINE_BYTES;
});

/** A splitter that records the lines and overflows it sees. */
function recorder() {
  const lines: string[] = [];
  let overflows = 0;
  const split = lineSplitter(
    (line) => lines.push(line),
    () => overflows++,
  );
  return { lines, split, overflows: () => overflows };
}

describe("lineSplitter (the socket protocol's framing)", () => {
  it("gives each line once, whatever the chunk boundaries", () => {
    const text = '{"id":1}\n{"id":2,"x":"a\\nb"}\n\n  \n{"id":3}\n{"id":4}';
    for (let size = 1; size <= text.length; size++) {
      const { lines, split } = recorder();
      for (let at = 0; at < text.length; at += size) split(text.slice(at, at + size));
      // Blank lines are skipped; the last line has no newline yet.
      expect(lines, `chunks of ${size}`).toEqual(['{"id":1}', '{"id":2,"x":"a\\nb"}', '{"id":3}']);
      split("\n");
      expect(lines.at(-1)).toBe('{"id":4}');
    }
  });

  it("splits a 50 MB line sent in 64 KiB chunks in linear time", () => {
    // Appending every chunk to one string and searching it all again took 15 s here; joining the
    // parts once takes tens of milliseconds. The bound leaves room for a loaded machine.
    const { lines, split } = recorder();
    const chunk = "y".repeat(64 * 1024);
    const started = performance.now();
    for (let i = 0; i < 800; i++) split(chunk);
    split('"}\n{"id":2}\n');
    const elapsed = performance.now() - started;
    expect(lines.map((line) => line.length)).toEqual([800 * chunk.length + 2, 8]);
    expect(elapsed).toBeLessThan(3000);
  });

  it("reports a line longer than the limit once and starts afresh", () => {
    expect(MAX_LINE_BYTES).toBe(64 * 1024 * 1024);
    const { lines, split, overflows } = recorder();
    const chunk = "z".repeat(4 * 1024 * 1024);
    const chunks = Math.floor(MAX_LINE_BYTES / chunk.length) + 1;
    for (let i = 0; i < chunks; i++) split(chunk);
    expect(overflows()).toBe(1);
    split("tail\nnext\n");
    // What followed the overflow up to its newline is a line of its own; the caller ends the
    // connection on overflow, so it is never read in practice.
    expect(lines).toEqual(["tail", "next"]);
  });
});

describe("lineSplitter's limit", () => {
  it("is exact: a line ending in the chunk that takes it past the limit is an overflow, one at the limit is a line", () => {
    // The limit was checked only on what a chunk left unfinished: a line whose newline came in
    // the chunk that passed it was taken, up to a chunk (~64 KiB on a socket) past the limit.
    const limit = MAX_LINE_BYTES + 64 * 1024;
    const chunk = "z".repeat(4 * 1024 * 1024);
    for (const extra of [0, 1]) {
      const { lines, split, overflows } = recorder();
      for (let sent = 0; sent + chunk.length <= MAX_LINE_BYTES; sent += chunk.length) split(chunk);
      split(`${"z".repeat(limit - MAX_LINE_BYTES + extra)}\n{"id":2}\n`);
      expect(overflows(), `limit + ${extra}`).toBe(extra);
      expect(lines.map((line) => line.length), `limit + ${extra}`).toEqual(extra ? [8] : [limit, 8]);
    }
  });
});

describe("callSupervisor (the socket's client)", () => {
  it("a caller stopped (SIGSTOP: `apex pause` of an agent) past its timeout takes the answer that came meanwhile, not APEX_E_TIMEOUT", async () => {
    const { dir, cleanup } = tempDir("apex-rpc-stopped-");
    const socket = join(dir, "s.sock");
    let child: ChildProcess | undefined;
    // Answers 200 ms after the request, while the caller is stopped; continues it 2.5 s later (its timeout is 1 s).
    const server = createServer((connection) => {
      connection.on("error", () => undefined);
      connection.on("data", (data) => {
        process.kill(child!.pid!, "SIGSTOP");
        setTimeout(() => connection.write(`${JSON.stringify({ id: JSON.parse(String(data)).id, result: "answered" })}\n`), 200);
        setTimeout(() => process.kill(child!.pid!, "SIGCONT"), 2500);
      });
    });
    try {
      await new Promise<void>((resolve) => server.listen(socket, resolve));
      const call = `import { callSupervisor } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, "dist/core/rpc/call.js")).href)};
        console.log(JSON.stringify(await callSupervisor(${JSON.stringify(socket)}, "langgraph.put", {}, 1000).catch((error) => error.code)));`;
      child = spawn(process.execPath, ["--input-type=module", "-e", call], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout!.on("data", (chunk) => (out += String(chunk)));
      const [code] = await once(child, "exit");
      expect(code).toBe(0);
      // It said "APEX_E_TIMEOUT": the timer ran before the answer waiting on the socket was read.
      expect(out.trim()).toBe('"answered"');
    } finally {
      if (child && child.exitCode === null) child.kill("SIGKILL");
      server.close();
      cleanup();
    }
  });

  it("a request larger than the supervisor takes (a memory set of a value over the limit: 256 MiB, 64 MiB here) is APEX_E_TOO_LARGE (exit 2) saying what to do, and the supervisor serves on", async () => {
    const { dir, cleanup } = tempDir("apex-rpc-large-");
    const server = new RpcServer(join(dir, "s.sock"));
    let calls = 0;
    server.register("memory.set", () => ({ revision: ++calls }));
    await server.listen();
    try {
      // The start of a request line that does not end within the limit (sent as bytes: a client's JSON.stringify of it takes seconds).
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(server.path);
        let text = "";
        socket.on("data", (data) => (text += String(data)));
        socket.on("close", () => resolve(text));
        socket.on("error", reject);
        const chunk = Buffer.alloc(1024 * 1024, "x");
        socket.on("connect", () => {
          socket.write('{"id":1,"method":"memory.set","params":{"path":"/big","value":"');
          for (let sent = 0; sent <= MAX_LINE_BYTES; sent += chunk.length) socket.write(chunk);
        });
      });
      const error = errorFromBody((JSON.parse(reply.trim()) as RpcReply).error!);
      // It was APEX_E_RPC (exit 1) "Request line too long.", as if the supervisor had failed.
      expect(error).toMatchObject({ code: "APEX_E_TOO_LARGE", exitCode: 2, message: "The request is larger than the supervisor takes (64 MiB of JSON); nothing of it was done.", hint: expect.stringContaining("in parts") });
      expect(calls).toBe(0);
      expect(await callSupervisor(server.path, "memory.set", { path: "/small", value: 1 })).toEqual({ revision: 1 });
    } finally {
      await server.close();
      cleanup();
    }
  });

  it("a request line that is JSON but not an object (null, a number, a list) gets an APEX_E_RPC answer, and the connection serves on", async () => {
    const { dir, cleanup } = tempDir("apex-rpc-shape-");
    const server = new RpcServer(join(dir, "s.sock"));
    server.register("memory.get", () => 42);
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on("unhandledRejection", onRejection);
    await server.listen();
    try {
      // One connection, each line in turn: every one answered, in order.
      const lines = ["null", "5", '"memory.get"', "[]", "true", '{"id":9,"method":"memory.get"}'];
      const replies = await new Promise<RpcReply[]>((resolve, reject) => {
        const socket = connect(server.path);
        const got: RpcReply[] = [];
        socket.setEncoding("utf8");
        socket.on("data", lineSplitter((line) => {
          got.push(JSON.parse(line) as RpcReply);
          if (got.length === lines.length) {
            socket.end();
            resolve(got);
          }
        }, () => reject(new Error("overflow"))));
        socket.on("error", reject);
        socket.on("connect", () => socket.write(lines.map((line) => `${line}\n`).join("")));
        setTimeout(() => reject(new Error(`${got.length} of ${lines.length} requests answered`)), 5_000);
      });
      for (const reply of replies.slice(0, -1)) expect(reply).toEqual({ id: null, error: { code: "APEX_E_RPC", message: "The request is not a JSON object {id, method, params}." } });
      expect(replies.at(-1)).toEqual({ id: 9, result: 42 });
      await new Promise((resolve) => setImmediate(resolve));
      expect(rejections).toEqual([]);
    } finally {
      process.off("unhandledRejection", onRejection);
      await server.close();
      cleanup();
    }
  });

  it("a caller that shuts down its sending side after its requests (nc -N, shutdown(SHUT_WR)) gets every answer, then the end of the connection", async () => {
    const { dir, cleanup } = tempDir("apex-rpc-half-");
    const server = new RpcServer(join(dir, "s.sock"));
    // Answers only once the caller's end has arrived: a claim or a memory set still under way then.
    server.register("task.claim", (_params, ctx) => new Promise((resolve) => (ctx.socket.readableEnded ? setImmediate : (fn: () => void) => ctx.socket.once("end", () => setImmediate(fn)))(() => resolve({ id: "t-0001" }))));
    server.register("memory.get", () => 42);
    server.register("events.subscribe", (_params, ctx) => {
      ctx.socket.once("end", () => setImmediate(() => ctx.push({ seq: 1 })));
      return STREAM;
    });
    await server.listen();
    // Sends the lines, shuts down its side, and reads to the end (or to `lines` replies, then closes).
    const halfClosed = (text: string, stopAfter = Infinity) =>
      new Promise<{ replies: RpcReply[]; ended: boolean }>((resolve, reject) => {
        const socket = connect(server.path);
        const replies: RpcReply[] = [];
        socket.setEncoding("utf8");
        socket.on("data", lineSplitter((line) => {
          replies.push(JSON.parse(line) as RpcReply);
          if (replies.length === stopAfter) socket.destroy(), resolve({ replies, ended: false });
        }, () => reject(new Error("overflow"))));
        socket.on("end", () => resolve({ replies, ended: true }));
        socket.on("error", reject);
        socket.on("connect", () => socket.end(text));
        setTimeout(() => reject(new Error(`${replies.length} replies, and the connection neither answered nor ended`)), 5_000);
      });
    try {
      // Before, the claim's answer was dropped (the server ended its side with the caller's): the
      // caller read the end of the connection and no answer, though the task was claimed.
      expect(await halfClosed('{"id":1,"method":"memory.get"}\n{"id":2,"method":"task.claim","params":{"agent":"coder"}}\n')).toEqual({
        replies: [{ id: 1, result: 42 }, { id: 2, result: { id: "t-0001" } }],
        ended: true,
      });
      // With nothing under way the connection ends at once; a stream stays open for its events.
      expect(await halfClosed('{"id":3,"method":"memory.get"}\n')).toEqual({ replies: [{ id: 3, result: 42 }], ended: true });
      expect(await halfClosed('{"id":4,"method":"events.subscribe"}\n', 1)).toEqual({ replies: [{ id: 4, event: { seq: 1 } }], ended: false });
      // A last request without its newline (printf '{…}' | nc -N): answered, where it was dropped without a word.
      expect(await halfClosed('{"id":5,"method":"memory.get"}\n{"id":6,"method":"task.claim","params":{"agent":"coder"}}')).toEqual({
        replies: [{ id: 5, result: 42 }, { id: 6, result: { id: "t-0001" } }],
        ended: true,
      });
    } finally {
      await server.close();
      cleanup();
    }
  });

  it("closing (the supervisor's exit) does not wait for a caller that keeps its connection open: it is answered, then cut", async () => {
    const { dir, cleanup } = tempDir("apex-rpc-idle-");
    const server = new RpcServer(join(dir, "s.sock"));
    server.register("memory.get", () => 42);
    await server.listen();
    // A client that keeps one connection for its calls and does not close it at the server's end
    // (allowHalfOpen: as a Python script's socket, which only learns of it at its next read).
    const socket = connect({ path: server.path, allowHalfOpen: true });
    const replies: RpcReply[] = [];
    socket.setEncoding("utf8");
    socket.on("data", lineSplitter((line) => replies.push(JSON.parse(line) as RpcReply), () => undefined));
    const ended = new Promise<void>((resolve) => socket.on("end", () => resolve()));
    try {
      socket.write('{"id":1,"method":"memory.get"}\n');
      await waitFor("the answer", () => replies.length === 1);
      // Before, close() waited for the caller to close its side, for good: the supervisor never exited.
      const closed = await Promise.race([server.close().then(() => "closed"), new Promise((resolve) => setTimeout(() => resolve("still waiting"), 10_000))]);
      expect(closed).toBe("closed");
      await ended;
      expect(replies).toEqual([{ id: 1, result: 42 }]);
    } finally {
      socket.destroy();
      await server.close();
      cleanup();
    }
  });

  it("a supervisor that closes the connection with the request read (killed mid-call) is an error saying the outcome is unknown, and how to recover", async () => {
    const dir = mkdtempSync(join(tmpdir(), "apex-rpc-close-"));
    const socketPath = join(dir, "s.sock");
    // It read the request, then went away without a word: what a kill -9 during memory.import leaves.
    const server = createServer((socket) => socket.once("data", () => socket.destroy()));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const error = await callSupervisor(socketPath, "memory.import", { entries: [] }).then(
        () => undefined,
        (rejected: unknown) => rejected,
      );
      // It said only "The supervisor closed the connection before answering memory.import.", no hint.
      expect(error).toMatchObject({
        code: "APEX_E_RPC",
        message: "The supervisor closed the connection before answering memory.import; whether it was done is not known.",
        hint: expect.stringContaining("`apex start --continue last` recovers it"),
      });
    } finally {
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
