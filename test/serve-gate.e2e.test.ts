// What `apex serve` does before it knows who is asking: a request without a well-formed token
// is refused before the store is opened or a session named in the URL is looked up, and failed
// logins slow a client address down in a record that stays bounded however many addresses fail.
// A real server on loopback (the built CLI, and startServer in this process for the throttle's
// limits), real requests from several loopback addresses.
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { get as httpsGet } from "node:https";
import { connect as netConnect, createServer as netServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { startServer, type RunningServer } from "../plugins/sharing/server.js";
import { tempDir } from "./helpers/cli.js";
import { serveLogged, share } from "./support/serve.js";

const SID = "3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b";
const cleanups: Array<() => Promise<unknown> | unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A POST to the API from `localAddress` (any address of 127.0.0.0/8 is this host's). */
function post(url: string, path: string, authorization: string | undefined, localAddress = "127.0.0.1", body = "{}"): Promise<{ status: number; body: any; ms: number; retryAfter?: string }> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${url}${path}`,
      { method: "POST", localAddress, agent: false, headers: { "content-type": "application/json", ...(authorization === undefined ? {} : { authorization }) } },
      (response) => {
        let text = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        const retryAfter = response.headers["retry-after"];
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text ? JSON.parse(text) : undefined, ms: performance.now() - started, ...(retryAfter !== undefined ? { retryAfter } : {}) }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("apex serve: a request without a well-formed token", () => {
  it("is refused (401) without opening the store, even for a session named by a branch name", async () => {
    // The project's store is a PostgreSQL URL at a port where this test counts connections: every store open is seen.
    const opens: Socket[] = [];
    const fakeStore: Server = netServer((socket) => {
      opens.push(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve) => fakeStore.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => fakeStore.close(resolve)));
    const port = (fakeStore.address() as { port: number }).port;
    const project = new Project(shellAgents({ alpha: "sleep 1" }), "apex-serve-gate-", { APEX_STORE_URL: `postgres://apex@127.0.0.1:${port}/apex?connect_timeout=5` });
    cleanups.push(() => project.cleanup());
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    cleanups.push(async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    });
    const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);

    const headers = [undefined, "", "Bearer", "Basic dXNlcjpwdw==", "Bearer not-a-token", `Bearer apx_0123456789abcdef_short`, `Bearer apx_0123456789ABCDEF_${"a".repeat(43)}`];
    let address = 1;
    for (const authorization of headers) {
      for (const path of [`/api/sessions/${SID}/rpc/session.status`, "/api/sessions/feature/rpc/whoami", "/api/sessions/feature/stream"]) {
        // Each from its own address, so that no reply is slowed down by the ones before.
        const body = path.endsWith("/stream") ? '{"events.subscribe":{}}' : "{}";
        const reply = await post(url, path, authorization, `127.0.0.${++address}`, body);
        expect(reply.status, `${authorization} ${path}`).toBe(401);
        expect(reply.body.error.code).toBe("APEX_E_UNAUTHORIZED");
      }
    }
    expect(opens).toHaveLength(0);
    // A token of the right shape is looked up in the store: the count above would have seen it.
    const looked = await post(url, `/api/sessions/${SID}/rpc/session.status`, `Bearer apx_0123456789abcdef_${"a".repeat(43)}`, "127.0.1.1");
    expect(looked.status).not.toBe(200);
    expect(opens.length).toBeGreaterThan(0);
    // A store that cannot be reached is not a failed login, however often: each answer says so, at
    // once. Before, it counted as one: from the fourth on, the address was slowed down (the eighth
    // waited 1.6 s) and meanwhile refused (429), whoever asked from it, with a valid token or not.
    for (let i = 0; i < 7; i++) {
      const again = await post(url, `/api/sessions/${SID}/rpc/session.status`, `Bearer apx_0123456789abcdef_${"a".repeat(43)}`, "127.0.1.1");
      expect(again.body.error.code).toBe(looked.body.error.code);
      expect(again.body.error.code).not.toBe("APEX_E_UNAUTHORIZED");
    }
    // None of them held back, as the server's log would say (it is said by the log, not by the eighth's time: it
    // waited 1.6 s, which a loaded machine's answer can take too). Its log is in order: once the answer it holds
    // for another address's fourth failed login is logged, any it held for these is already there.
    for (let i = 0; i < 4; i++) expect((await post(url, `/api/sessions/${SID}/rpc/whoami`, "Bearer not-a-token", "127.0.2.1")).status).toBe(401);
    await waitFor("the server's log of the answer it holds", () => / failed logins from 127\.0\.2\.1: /.test(run.errors()), 30_000);
    expect(run.errors()).not.toMatch(/ failed logins from 127\.0\.1\.1: /);
  });
});

describe("apex serve: failed logins", () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("slow down the address that keeps failing, and forget the oldest addresses once the record is full", async () => {
    const temp = tempDir();
    cleanups.push(temp.cleanup);
    // One failure free, then a delay of 4 s; four addresses remembered at most.
    const logged: string[] = [];
    server = await startServer({ location: { configPath: undefined, projectDir: temp.dir, storeDir: `${temp.dir}/.apex` }, listen: "127.0.0.1:0", throttle: { freeFailures: 1, baseDelayMs: 4000, maxDelayMs: 4000, maxClients: 4 }, log: (line) => logged.push(line) });
    const bad = `Bearer apx_0123456789abcdef_${"x".repeat(43)}`;
    const path = `/api/sessions/${SID}/rpc/whoami`;
    const first = await post(server.url, path, bad, "127.0.0.2");
    expect(first.status).toBe(401);
    expect(first.ms).toBeLessThan(4000);
    // The second failure from that address waits; meanwhile its other requests are refused at once (429), their token not even looked at.
    const pending = post(server.url, path, bad, "127.0.0.2");
    // Once the server has counted it (its log says so): a request sent before would be counted as the second failure instead.
    await waitFor("the second failure's answer held", () => logged.some((line) => line.startsWith("failed logins from 127.0.0.2: ")), 30_000);
    const meanwhile = await post(server.url, path, `Bearer apx_fedcba9876543210_${"y".repeat(43)}`, "127.0.0.2");
    expect(meanwhile.status).toBe(429);
    expect(meanwhile.body.error.code).toBe("APEX_E_RATE_LIMITED");
    expect(meanwhile.body.error.message).toMatch(/try again in \d s/);
    // When, also as HTTP says it (Retry-After, in seconds), for clients that read headers and not messages.
    const seconds = Number(/try again in (\d) s/.exec(meanwhile.body.error.message)![1]);
    expect(meanwhile.retryAfter).toBe(String(seconds));
    expect(meanwhile.body.error.details).toEqual({ retry_after_s: seconds });
    const slowed = await pending;
    expect(slowed.status).toBe(401);
    expect(slowed.ms).toBeGreaterThanOrEqual(3900);
    // Another address is not slowed down by it.
    expect((await post(server.url, path, bad, "127.0.0.3")).ms).toBeLessThan(4000);
    // Four more addresses fail: the record keeps four, so 127.0.0.2, the oldest, is forgotten and starts again.
    for (const address of ["127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"]) expect((await post(server.url, path, bad, address)).status).toBe(401);
    const again = await post(server.url, path, bad, "127.0.0.2");
    expect(again.status).toBe(401);
    expect(again.ms).toBeLessThan(4000);
    // 127.0.0.7 is still remembered: its second failure waits.
    expect((await post(server.url, path, bad, "127.0.0.7")).ms).toBeGreaterThanOrEqual(3900);
  }, 60_000);
});

describe("apex serve: failed logins from an address others share, or from many addresses", () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("keep valid tokens working at that address, are not forgotten for a valid token sent between guesses, and are capped server-wide", async () => {
    const project = new Project(shellAgents({ alpha: "sleep 600" }), "apex-serve-gate-");
    cleanups.push(() => project.cleanup());
    const sid = project.start().session_id;
    const vera = `Bearer ${share(project, sid, "vera", "viewer").token}`;
    const otto = `Bearer ${share(project, sid, "otto", "viewer").token}`;
    // One failure free, then 3 s per failure; six failures server-wide per minute.
    const logged: string[] = [];
    server = await startServer({ location: { configPath: `${project.dir}/apex.config.yaml`, projectDir: project.dir, storeDir: project.storeDir }, listen: "127.0.0.1:0", throttle: { freeFailures: 1, baseDelayMs: 3000, maxDelayMs: 3000, globalMaxFailures: 6 }, log: (line) => logged.push(line) });
    const path = `/api/sessions/${sid}/rpc/whoami`;
    const bad = `Bearer apx_0123456789abcdef_${"x".repeat(43)}`;
    // Vera works from 127.0.0.2 (a NAT, a tunnel); someone else there guesses.
    expect((await post(server.url, path, vera, "127.0.0.2")).status).toBe(200);
    expect((await post(server.url, path, bad, "127.0.0.2")).status).toBe(401);
    const pending = post(server.url, path, bad, "127.0.0.2");
    // Once the server holds its answer (its log says so): before, the requests below could come first and find no wait.
    await waitFor("the second failure's answer held", () => logged.some((line) => line.startsWith("failed logins from 127.0.0.2: ")), 30_000);
    // Meanwhile the address waits; Vera's token, accepted here before, does not (it was 429 too).
    // Otto's first: it is refused without a look at the store, well within the wait.
    const unknown = await post(server.url, path, otto, "127.0.0.2");
    expect(unknown.status).toBe(429);
    expect(unknown.body.error.message).toContain("from this address");
    expect((await post(server.url, path, vera, "127.0.0.2")).status).toBe(200);
    expect((await pending).ms).toBeGreaterThanOrEqual(2900);
    // A valid token between guesses does not wipe the address's failures (it did: the next guess was answered at once).
    expect((await post(server.url, path, vera, "127.0.0.2")).status).toBe(200);
    expect((await post(server.url, path, bad, "127.0.0.2")).ms).toBeGreaterThanOrEqual(2900);
    // Guesses from other addresses, one each (none slowed down): past six server-wide, a token
    // not accepted lately is refused from any address until the minute ends (it was let through).
    for (const address of ["127.0.0.3", "127.0.0.4", "127.0.0.5"]) expect((await post(server.url, path, bad, address)).status).toBe(401);
    const capped = await post(server.url, path, otto, "127.0.0.6");
    expect(capped.status).toBe(429);
    expect(capped.body.error).toMatchObject({ code: "APEX_E_RATE_LIMITED", message: expect.stringContaining("on this server") });
    expect(Number(capped.retryAfter)).toBeGreaterThan(40);
    expect(capped.body.error.details.retry_after_s).toBe(Number(capped.retryAfter));
    expect((await post(server.url, path, vera, "127.0.0.6")).status).toBe(200);
  }, 60_000);
});

describe("apex serve: open streams per grant", () => {
  it("holds at most 16 per grant (the next is 429 APEX_E_RATE_LIMITED); another grant is not counted against it, and a closed one frees its place", async () => {
    const project = new Project(shellAgents({ alpha: "while true; do sleep 0.5; done" }));
    cleanups.push(() => project.cleanup());
    project.start();
    cleanups.push(() => project.apex(["stop"]));
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const { url, log } = await serveLogged(project, stops);
    const vera = share(project, "current", "vera", "viewer");
    const otto = share(project, "current", "otto", "viewer");
    const aborts: AbortController[] = [];
    cleanups.push(() => aborts.forEach((abort) => abort.abort()));
    const open = async (token: string) => {
      const abort = new AbortController();
      aborts.push(abort);
      const response = await fetch(`${url}/api/sessions/${vera.session_id}/stream`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ "memory.watch": { glob: "/notes/**" } }),
        signal: abort.signal,
      });
      return { response, abort };
    };
    const held = [];
    for (let i = 0; i < 16; i++) {
      const stream = await open(vera.token);
      expect(stream.response.status, `stream ${i + 1}`).toBe(200);
      held.push(stream);
    }
    const refused = await open(vera.token);
    expect(refused.response.status).toBe(429);
    expect(((await refused.response.json()) as { error: { code: string } }).error.code).toBe("APEX_E_RATE_LIMITED");
    expect((await open(otto.token)).response.status).toBe(200);
    held[0]!.abort.abort();
    await waitFor("a place freed by the closed stream", async () => {
      const again = await open(vera.token);
      if (again.response.status === 200) return true;
      again.abort.abort();
      return undefined;
    }, 30_000);

    // A stream its client does not read: what it leaves unread is held in the server's memory, so
    // past 16 MiB the connection is cut. Before, the server kept buffering for as long as events came.
    const rita = share(project, "current", "rita", "viewer");
    const oscar = share(project, "current", "oscar", "operator");
    const { connect } = await import("node:net");
    const port = Number(new URL(url).port);
    const reader = connect(port, "127.0.0.1");
    cleanups.push(() => reader.destroy());
    let closed = false;
    let received = 0;
    reader.on("close", () => (closed = true));
    reader.on("error", () => {});
    await new Promise((resolve) => reader.once("connect", resolve));
    const body = JSON.stringify({ "memory.watch": { glob: "/big/**" } });
    reader.write(`POST /api/sessions/${rita.session_id}/stream HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${rita.token}\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    reader.pause();
    const value = "x".repeat(900 * 1024);
    for (let i = 0; i < 28; i++) expect((await post(url, `/api/sessions/${oscar.session_id}/rpc/memory.set`, `Bearer ${oscar.token}`, "127.0.0.1", JSON.stringify({ path: `/big/${i}`, value }))).status).toBe(200);
    // The watch's polls send what was written until the server cuts the stream it holds unread; read only then.
    await waitFor("the unread stream cut", () => log().includes("stream of rita cut: more than 16 MiB unread"), 30_000);
    reader.on("data", (chunk: Buffer) => (received += chunk.length));
    reader.resume();
    await waitFor("the cut stream closed", () => closed || undefined, 15_000);
    expect(received).toBeLessThan(28 * value.length);
  }, 120_000);
});

/** An HTTP server on loopback that answers `{}` and counts the requests that reach it. */
async function countingServer(): Promise<{ host: string; requests: () => number }> {
  let requests = 0;
  const { createServer } = await import("node:http");
  const server = createServer((_request, response) => {
    requests++;
    response.end("{}");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return { host: `127.0.0.1:${(server.address() as { port: number }).port}`, requests: () => requests };
}

describe("the client's token", () => {
  it("is refused before anything is sent when it is not an APEX token (exit 2, never repeated), from --token, APEX_TOKEN or the credentials file", async () => {
    const project = new Project(shellAgents({}));
    cleanups.push(() => project.cleanup());
    // A server that counts what reaches it: nothing should.
    const { host, requests } = await countingServer();
    const secret = "hunter2-secret\nInjected: header";
    for (const [args, env] of [
      [["--remote", `${host}/abcdefgh`, "status", "--json"], { APEX_TOKEN: secret }],
      [["--remote", `${host}/abcdefgh`, "--token", "apx_short", "status", "--json"], {}],
      [["connect", `${host}/abcdefgh`, "--json"], { APEX_TOKEN: "tokén" }],
    ] as const) {
      const result = await project.apexAsync([...args], { env }).done;
      expect(result.status, result.stderr).toBe(2);
      // (--token VALUE: a warning line first, that the token shows on the command line)
      const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error as { code: string; message: string };
      expect(error.code).toBe("APEX_E_USAGE");
      expect(error.message).toContain("--token / APEX_TOKEN is not an APEX token");
      expect(result.stderr).not.toContain("hunter2");
    }
    // The dashboard's invite pasted whole, or a token where the host goes: refused without repeating the token
    // (error messages end up in logs) and, for the host, before its name is looked up; nothing saved.
    const token = `apx_0123456789abcdef_${"S3cr3t".repeat(7)}x`;
    const invite = `http://${host}/#session=abcdefgh&token=${token}`;
    for (const args of [["connect", invite, "--json"], ["--remote", invite, "status", "--json"], ["login", invite, "--token", token, "--json"], ["login", token, "--token", token, "--json"]]) {
      const result = await project.apexAsync(args, { env: { APEX_TOKEN: token, APEX_CREDENTIALS: `${project.dir}/saved.json` } }).done;
      expect(result.status, result.stderr).toBe(2);
      const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error as { code: string; hint: string };
      expect(error.code).toBe("APEX_E_USAGE");
      expect(result.stderr.toLowerCase()).not.toContain("s3cr3t");
      if (args[1] === invite) expect(error.hint).toContain(`apex connect http://${host}/abcdefgh`);
    }
    // Nothing on stdin: said so (it was "That is not an APEX token"); a bad address is said before a token is read.
    const nothing = project.apex(["login", `${host}/abcdefgh`], { env: { APEX_CREDENTIALS: `${project.dir}/saved.json` } });
    expect(nothing.status, nothing.stderr).toBe(2);
    expect(nothing.stderr).toContain(`No token for ${host}: nothing was read from stdin.`);
    const badHost = project.apex(["login", "bad host"], { env: { APEX_CREDENTIALS: `${project.dir}/saved.json` } });
    expect(badHost.status, badHost.stderr).toBe(2);
    expect(badHost.stderr).toContain('Cannot read the host "bad host"');
    const { existsSync } = await import("node:fs");
    expect(existsSync(`${project.dir}/saved.json`)).toBe(false);
    // A token saved by hand in a file others may read: refused just the same, naming the file; a good one is used, with a warning about the mode.
    const credentials = `${project.dir}/credentials.json`;
    const { writeFileSync, chmodSync } = await import("node:fs");
    writeFileSync(credentials, JSON.stringify({ version: 1, hosts: { [host]: { token: "hunter2", saved_at: "2026-12-01T00:00:00.000Z" } } }));
    chmodSync(credentials, 0o644);
    const saved = await project.apexAsync(["--remote", `${host}/abcdefgh`, "status", "--json"], { env: { APEX_CREDENTIALS: credentials } }).done;
    expect(saved.status).toBe(2);
    expect(saved.stderr).toContain(`the token saved for ${host} in ${credentials} is not an APEX token`);
    expect(saved.stderr).toContain(`warning: ${credentials} holds tokens and other users may read it (mode 0644): chmod 600 ${credentials}`);
    expect(requests()).toBe(0);
    writeFileSync(credentials, JSON.stringify({ version: 1, hosts: { [host]: { token: `apx_0123456789abcdef_${"a".repeat(43)}`, saved_at: "2026-12-01T00:00:00.000Z" } } }));
    chmodSync(credentials, 0o600);
    const quiet = await project.apexAsync(["--remote", `${host}/abcdefgh`, "status", "--json"], { env: { APEX_CREDENTIALS: credentials } }).done;
    expect(quiet.stderr).not.toContain("warning");
    expect(requests()).toBeGreaterThan(0);
  }, 60_000);

  it("missing is a usage error, exit 2 (APEX_E_USAGE), for --remote, connect and login alike, nothing sent", async () => {
    const project = new Project(shellAgents({}));
    cleanups.push(() => project.cleanup());
    const { host, requests } = await countingServer();
    const env = { APEX_CREDENTIALS: `${project.dir}/none.json` };
    // Before, --remote and connect said APEX_E_UNAUTHORIZED, exit 4 (a server's refusal), while login said exit 2.
    for (const args of [["--remote", `${host}/abcdefgh`, "status", "--json"], ["--remote", `${host}/abcdefgh`, "logs", "-f", "--json"], ["connect", `${host}/abcdefgh`, "--json"], ["login", `${host}/abcdefgh`, "--json"]]) {
      const result = project.apex(args, { env });
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      const error = JSON.parse(result.stderr).error as { code: string; message: string };
      expect(error.code).toBe("APEX_E_USAGE");
      expect(error.message).toContain(`No token for ${host}`);
    }
    expect(requests()).toBe(0);
  }, 60_000);
});

describe("apex --remote start --continue", () => {
  it("with --attach or --git-checkout is refused naming the option (exit 2), nothing sent", async () => {
    const project = new Project(shellAgents({}));
    cleanups.push(() => project.cleanup());
    const { host, requests } = await countingServer();
    // It said that start only continues a remote session, sending the user to the `start --continue` they had typed.
    for (const option of ["--attach", "--git-checkout"]) {
      const result = project.apex(["--remote", `${host}/abcdefgh`, "start", "--continue", "abcdefgh", option, "--json"], { env: { APEX_TOKEN: `apx_0123456789abcdef_${"a".repeat(43)}` } });
      expect(result.status, result.stderr).toBe(2);
      const error = JSON.parse(result.stderr).error as { code: string; message: string };
      expect(error).toMatchObject({ code: "APEX_E_USAGE" });
      expect(error.message).toContain(`${option} is refused on a remote session`);
    }
    expect(requests()).toBe(0);
  }, 60_000);
});

describe("apex serve: connections held at once", () => {
  it("are bounded (--max-connections): one more is answered 503 at once and closed, the log says so once, and a place freed is taken again", async () => {
    const project = new Project(shellAgents({ alpha: "sleep 1" }), "apex-serve-limit-");
    cleanups.push(() => project.cleanup());
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--max-connections", "4", "--json"]);
    cleanups.push(async () => {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    });
    const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
    const port = Number(new URL(url).port);
    // Clients that send half a request and wait (each was held 60 s, and nothing bounded how many):
    // four, from one loopback address (this host, or a tunnel: they count in the total only).
    const slow: Socket[] = [];
    cleanups.push(() => slow.forEach((socket) => socket.destroy()));
    for (let i = 0; i < 4; i++) {
      const socket = netConnect(port, "127.0.0.1");
      socket.on("error", () => {});
      await new Promise((resolve) => socket.once("connect", resolve));
      socket.write("POST /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      slow.push(socket);
    }
    const health = (localAddress: string) => post(url, "/api/health", undefined, localAddress).catch((error: Error): Awaited<ReturnType<typeof post>> => ({ status: 0, body: String(error), ms: 0 }));
    for (const localAddress of ["127.0.0.1", "127.0.0.3"]) {
      const refused = await health(localAddress);
      expect(refused.status, JSON.stringify(refused.body)).toBe(503);
      expect(refused.retryAfter).toBe("5");
      expect(refused.body.error).toMatchObject({ code: "APEX_E_RATE_LIMITED", message: "The server holds 4 connections, the most it takes at once; try again in a moment." });
    }
    expect(run.errors().match(/refusing connections: 4 open, the most this server holds \(--max-connections 4\)/g)).toHaveLength(1);
    // A place freed is taken again (POST /api/health is the API's 405: answered, not refused).
    slow.shift()!.destroy();
    const served = await waitFor("a place", async () => ((await health("127.0.0.2")).status === 405 ? true : undefined), 30_000);
    expect(served).toBe(true);
    // Refused before it starts: 0 or not a number is exit 2.
    for (const value of ["0", "many"]) {
      const bad = project.apex(["serve", "--listen", "127.0.0.1:0", "--max-connections", value]);
      expect(bad.status, bad.stderr).toBe(2);
      expect(bad.stderr).toContain("APEX_E_USAGE");
    }
  }, 60_000);
});

describe("apex serve over TLS: connections held at once", () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("answers one past the limit once its handshake is done (503, APEX_E_RATE_LIMITED), and cuts one that only trickles within 2 s", async () => {
    const temp = tempDir();
    cleanups.push(temp.cleanup);
    const [cert, key] = [`${temp.dir}/cert.pem`, `${temp.dir}/key.pem`];
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    // A refused connection may take 2 s in all, its handshake included: on a loaded machine this process (client and
    // server both) could take longer, and the refused client was cut before its answer. Here it has a minute; the
    // trickler below is cut within the 2 s.
    const full = async (refusedLingerMs?: number) => {
      server = await startServer({ location: { configPath: undefined, projectDir: temp.dir, storeDir: `${temp.dir}/.apex` }, listen: "127.0.0.1:0", tlsCert: cert, tlsKey: key, maxConnections: 1, refusedLingerMs });
      // Accepted before the connections below (the listening socket's queue keeps their order).
      const held = netConnect(server.port, "127.0.0.1");
      held.on("error", () => {});
      cleanups.push(() => held.destroy());
      await once(held, "connect");
      return held;
    };
    const held = await full(60_000);
    const reply = await new Promise<{ status: number; body: any }>((resolve, reject) => {
      httpsGet(`${server!.url}/api/health`, { ca: readFileSync(cert), agent: false }, (response) => {
        let text = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
      }).on("error", reject);
    });
    // It was closed before its handshake, which a client took for a server that was not there (ECONNRESET).
    expect(reply.status).toBe(503);
    expect(reply.body.error.code).toBe("APEX_E_RATE_LIMITED");
    // One that sends a byte now and then (of a TLS record that says it is 16 KiB long) is cut all the same.
    held.destroy();
    await server!.close();
    const heldAgain = await full();
    const trickler = netConnect(server!.port, "127.0.0.1");
    trickler.on("error", () => {});
    await once(trickler, "connect");
    const started = Date.now();
    trickler.write(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00]));
    const timer = setInterval(() => trickler.writable && trickler.write(Buffer.from([0])), 100);
    await once(trickler, "close");
    clearInterval(timer);
    expect(Date.now() - started).toBeLessThan(4000);
    heldAgain.destroy();
  });

  it("closes within its grace though a client never starts its TLS handshake: Node's closeAllConnections does not know of it", async () => {
    const temp = tempDir();
    cleanups.push(temp.cleanup);
    const [cert, key] = [`${temp.dir}/cert.pem`, `${temp.dir}/key.pem`];
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"], { stdio: "ignore" });
    const running = await startServer({ location: { configPath: undefined, projectDir: temp.dir, storeDir: `${temp.dir}/.apex` }, listen: "127.0.0.1:0", tlsCert: cert, tlsKey: key });
    const silent = netConnect(running.port, "127.0.0.1");
    silent.on("error", () => {});
    cleanups.push(() => silent.destroy());
    await once(silent, "connect");
    const started = Date.now();
    // It waited for TLS's handshake timeout (120 s): SIGTERM left `apex serve` running that long, its port taken.
    await running.close();
    expect(Date.now() - started).toBeLessThan(9000);
    if (!silent.closed) await once(silent, "close"); // cut by the server
  }, 30_000);
});

describe("apex serve with --cors", () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("says Vary: Origin on every reply, whichever origin asks (or none): its CORS headers depend on it", async () => {
    const temp = tempDir();
    cleanups.push(temp.cleanup);
    server = await startServer({ location: { configPath: undefined, projectDir: temp.dir, storeDir: `${temp.dir}/.apex` }, listen: "127.0.0.1:0", corsOrigins: ["https://ui.example"] });
    const api = `${server.url}/api/sessions/${SID}/rpc/whoami`;
    const replies: Array<[string, Response]> = [];
    for (const origin of ["https://ui.example", "https://evil.example", undefined]) {
      const headers: Record<string, string> = origin ? { origin } : {};
      replies.push([`health ${origin}`, await fetch(`${server.url}/api/health`, { headers })]);
      replies.push([`401 ${origin}`, await fetch(api, { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: "{}" })]);
      replies.push([`preflight ${origin}`, await fetch(api, { method: "OPTIONS", headers: { ...headers, "access-control-request-method": "POST" } })]);
      replies.push([`404 ${origin}`, await fetch(`${server.url}/api/nothing`, { headers })]);
    }
    for (const [what, reply] of replies) {
      // Only for the origin --cors names are the CORS headers there (a cache keyed without Origin gave one origin's reply to the other).
      expect(reply.headers.get("vary")?.toLowerCase(), what).toBe("origin");
      expect(reply.headers.get("access-control-allow-origin"), what).toBe(what.endsWith("https://ui.example") ? "https://ui.example" : null);
    }
  });
});

describe("a supervisor's own server (sharing.serve) closing with its session", () => {
  it("refuses what still comes saying its session ended, not that apex serve was stopped", async () => {
    const project = new Project(shellAgents({ alpha: "sleep 600" }), "apex-serve-gate-");
    cleanups.push(() => project.cleanup());
    const sid = project.start().session_id;
    cleanups.push(() => project.apex(["stop"]));
    const vera = share(project, sid, "vera", "viewer");
    // As the sharing plugin runs it in the supervisor, and closes it at its session's onStop.
    const server = await startServer({ location: { configPath: `${project.dir}/apex.config.yaml`, projectDir: project.dir, storeDir: project.storeDir }, listen: "127.0.0.1:0" });
    cleanups.push(() => server.close());
    const abort = new AbortController();
    cleanups.push(() => abort.abort());
    const stream = await fetch(`${server.url}/api/sessions/${sid}/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${vera.token}` },
      body: JSON.stringify({ "memory.watch": { glob: "/notes/**" } }),
      signal: abort.signal,
    });
    expect(stream.status).toBe(200);
    // The session's stream holds the close while it sends what the session wrote up to its end (2 s at most): a request meanwhile is refused.
    const closed = server.close({ sessionId: sid, name: "exp" });
    const refused = await post(server.url, `/api/sessions/${sid}/rpc/whoami`, `Bearer ${vera.token}`);
    expect(refused.status).toBe(503);
    expect(refused.body.error.message).toBe("The server is shutting down (session exp has ended, and its supervisor's own server (sharing.serve) stops with it): it takes no new requests.");
    expect(refused.body.error.hint).toContain("apex start --continue exp");
    await closed;
  }, 30_000);
});
