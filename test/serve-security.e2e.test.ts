// Remote access as a careful operator expects it: a real `apex serve` on loopback (the built CLI),
// real sessions and real clients (the built CLI with --remote, HTTP). Errors callers act on are
// told by stable codes and details, never by the text of a message.
import { readFileSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { request as httpRequest } from "node:http";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, asleepInEventLoop, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { CLOSE_WAIT, remote, rpc, serve, serveLogged, serverConnectionStates, share } from "./support/serve.js";
import { random } from "./helpers/cli.js";

const cleanups: Array<() => Promise<unknown> | unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function project(config = shellAgents({ alpha: "sleep 600" })): Project {
  const p = new Project(config, "apex-serve-security-");
  cleanups.push(() => p.cleanup());
  return p;
}

describe("a method nobody serves", () => {
  it("is told by details.unknown_method, locally and through `apex serve`, so the CLI says what is missing", async () => {
    // No checkpoint plugin: the supervisor has no checkpoint.create.
    const p = project();
    const sid = p.start().session_id;
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const url = await serve(p, stops);
    const owner = share(p, sid, "olga", "owner");
    // Through the API: 404 with the method in details (no list of the supervisor's methods), internal ones alike.
    // Names an object has of its own (constructor, toString, __proto__) too: they were a 500, APEX_E_INTERNAL
    // "paths.find is not a function", from a table of memory writes looked up by any key.
    for (const method of ["memory.explode", "share.authenticate", "constructor", "toString", "__proto__"]) {
      const reply = await rpc(url, sid, method, owner.token);
      expect(reply.status).toBe(404);
      expect(reply.body.error).toMatchObject({ code: "APEX_E_NOT_FOUND", details: { unknown_method: method } });
      expect(JSON.stringify(reply.body)).not.toContain("Known:");
    }
    // Nor is /assets/constructor a vendored file (a 500 naming Node's require): 404 as any other missing file.
    for (const file of ["constructor", "toString", "__proto__"]) {
      const asset = await fetch(`${url}/assets/${file}`);
      expect(asset.status).toBe(404);
      expect((await asset.json()).error.code).toBe("APEX_E_NOT_FOUND");
    }
    // A stream's parameters it does not read are left alone, whatever their names (`constructor` was
    // taken for one it reads: 400 "constructor must be a whole number").
    for (const params of [{ constructor: "x" }, { toString: "x", from_seq: 0 }]) {
      const aborted = new AbortController();
      const stream = await fetch(`${url}/api/sessions/${sid}/stream`, { method: "POST", headers: { authorization: `Bearer ${owner.token}`, "content-type": "application/json" }, body: JSON.stringify({ "events.subscribe": params, "logs.follow": params }), signal: aborted.signal });
      expect(stream.status, stream.status === 200 ? "" : await stream.text()).toBe(200);
      aborted.abort();
    }
    // Nor does `hello` list them through the API: its list of methods named the server's plumbing too
    // (share.authenticate, share.touch, session.connections), which every caller is refused.
    const hello = (await rpc(url, sid, "hello", owner.token)).body.result as { methods: string[] };
    expect(hello.methods).toContain("session.status");
    expect(hello.methods.filter((method) => method.startsWith("share.a") || method === "share.touch" || method === "session.connections")).toEqual([]);
    // The CLI says the session has no checkpoint plugin, locally and through --remote alike (through
    // --remote it said `Unknown method "checkpoint.create"`, exit 3, as if a checkpoint were missing).
    const local = p.apex(["checkpoint", "create", "here"]);
    const far = remote(p, url, sid, owner.token, ["checkpoint", "create", "there"]);
    for (const result of [local, far]) {
      expect(result.status, result.stderr).toBe(2);
      expect(result.stderr).toContain("error[APEX_E_USAGE]: The running session has no checkpoint plugin, so it cannot checkpoint create.");
    }
  }, 60_000);
});

describe("the token of a remote command", () => {
  it("is taken from --token-file (or standard input) off the command line; --token VALUE is warned of and hidden from the process list", async () => {
    const p = project();
    const sid = p.start().session_id;
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const url = await serve(p, stops);
    const vera = share(p, sid, "vera", "viewer");
    const target = `${url.replace(/^http:\/\//, "")}/${sid}`;
    const file = join(p.dir, "token.txt");
    writeFileSync(file, `${vera.token}\n`, { mode: 0o600 });

    // From a file, and from standard input (-): no warning, the token nowhere on the command line.
    const fromFile = p.apex(["--remote", target, "--token-file", file, "status", "--json"]);
    expect(fromFile.status, fromFile.stderr).toBe(0);
    expect(JSON.parse(fromFile.stdout).session.session_id).toBe(sid);
    expect(fromFile.stderr).toBe("");
    const piped = p.apexAsync(["--remote", target, "--token-file=-", "status", "--json"]);
    piped.child.stdin.end(`${vera.token}\n`);
    const fromStdin = await piped.done;
    expect(fromStdin.status, fromStdin.stderr).toBe(0);
    expect(fromStdin.stderr).toBe("");
    // A pipe that has nothing yet (standard input may be non-blocking: it was EAGAIN), a file
    // saved with a byte-order mark and CRLF: read as the token.
    const late = p.apexAsync(["--remote", target, "--token-file", "-", "status", "--json"]);
    setTimeout(() => late.child.stdin.end(`${vera.token}\n`), 700);
    const lateResult = await late.done;
    expect(lateResult.status, lateResult.stderr).toBe(0);
    writeFileSync(join(p.dir, "bom.txt"), `\uFEFF${vera.token}\r\n`);
    expect(p.apex(["--remote", target, "--token-file", join(p.dir, "bom.txt"), "status"]).status).toBe(0);
    // A file or a pipe without end (/dev/zero, `yes |`) is read no further than a line: exit 2 at once (it never ended).
    const endless = p.apexAsync(["--remote", target, "--token-file", "-", "status", "--json"]);
    const feed = setInterval(() => endless.child.stdin.write("y".repeat(1024)), 5);
    endless.child.stdin.on("error", () => {});
    const endlessResult = await endless.done;
    clearInterval(feed);
    expect(endlessResult.status, endlessResult.stderr).toBe(2);
    const zero = p.apex(["--remote", target, "--token-file", "/dev/zero", "status", "--json"], { timeout: 10_000 });
    expect(zero.status, zero.stderr).toBe(2);
    expect(JSON.parse(zero.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: '--token-file "/dev/zero" does not hold a token: its first line has control characters.' });
    // `apex login` saves it from the file too.
    const credentials = join(p.dir, "credentials.json");
    const login = p.apex(["login", target, "--token-file", file, "--json"], { env: { APEX_CREDENTIALS: credentials } });
    expect(login.status, login.stderr).toBe(0);
    expect(readFileSync(credentials, "utf8")).toContain(vera.token);

    // Unreadable, empty, or given with --token too: exit 2, APEX_E_USAGE, nothing sent.
    writeFileSync(join(p.dir, "empty.txt"), "\n");
    for (const args of [["--token-file", join(p.dir, "missing.txt")], ["--token-file", join(p.dir, "empty.txt")], ["--token-file", file, "--token", vera.token]]) {
      const refused = p.apex(["--remote", target, ...args, "status", "--json"]);
      expect(refused.status, refused.stderr).toBe(2);
      expect(JSON.parse(refused.stderr.trim().split("\n").at(-1)!).error.code).toBe("APEX_E_USAGE");
      expect(refused.stderr).not.toContain(vera.token);
    }

    // --token VALUE still works, with a warning; the running process's command line (what `ps`
    // shows every user) holds "***" instead of the token while it follows the session.
    const follow = p.apexAsync(["--token", vera.token, "connect", target, "--json"]);
    try {
      await waitFor("apex connect's first line", () => (follow.output().includes("\n") ? true : undefined), 30_000);
      const cmdline = readFileSync(`/proc/${follow.child.pid}/cmdline`, "utf8");
      expect(cmdline).not.toContain(vera.token);
      expect(cmdline).toContain("--token *** connect");
      expect(follow.errors()).toContain("warning: --token puts the token on the command line");
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
    // The help recommends the file or the environment.
    const help = p.apex(["--help"]).stdout;
    expect(help).toContain("--token-file <file>");
    expect(help).toMatch(/--token <token>\s+the token itself: visible to every user/);
  }, 60_000);
});

/** A request with the Host header a browser would send for `host` (fetch cannot set it). */
function requestAs(url: string, path: string, host: string, method = "GET", extra: { headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method, agent: false, headers: { host, "content-type": "application/json", ...extra.headers } }, (response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text.startsWith("{") ? JSON.parse(text) : text, headers: response.headers }));
    });
    // A body the server refuses before reading it all (413) may meet a closed connection: the reply counts.
    req.on("error", (error) => setTimeout(() => reject(error), 1000));
    req.end(method === "POST" ? (extra.body ?? "{}") : undefined);
  });
}

describe("a server on loopback", () => {
  it("answers only requests addressed to a loopback name (DNS rebinding), and the names --allow-host gives", async () => {
    const p = project();
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const url = await serve(p, stops);
    const port = new URL(url).port;
    // A page of evil.example whose name now resolves to 127.0.0.1: its requests say Host: evil.example.
    for (const [path, method] of [["/", "GET"], ["/api/health", "GET"], ["/assets/app.js", "GET"], ["/api/sessions/abc/rpc/whoami", "POST"], ["/api/sessions/abc/stream", "POST"]] as const) {
      for (const host of [`evil.example:${port}`, `0.0.0.0:${port}`, "evil.example"]) {
        const refused = await requestAs(url, path, host, method);
        expect(refused.status, `${method} ${path} as ${host}`).toBe(403);
        expect(refused.body.error.code).toBe("APEX_E_FORBIDDEN");
      }
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`, `127.0.0.2:${port}`]) {
      const health = await requestAs(url, "/api/health", host);
      expect(health.status, host).toBe(200);
      expect(health.body.ok).toBe(true);
    }
    // Behind a proxy or tunnel that sends its own name: allowed by name.
    const proxied = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--allow-host", "apex.internal", "--json"]);
    stops.push(async () => {
      if (proxied.child.exitCode === null) proxied.child.kill("SIGTERM");
      await proxied.done;
    });
    const proxiedUrl = await waitFor("the second server's address", () => (proxied.output().includes("}") ? (JSON.parse(proxied.output()) as { url: string }).url : undefined), 30_000);
    expect((await requestAs(proxiedUrl, "/api/health", "apex.internal:8443")).status).toBe(200);
    expect((await requestAs(proxiedUrl, "/api/health", "evil.example")).status).toBe(403);
    // Off loopback, --allow-host restricts the names likewise (it was taken and ignored); without it, any name is answered.
    for (const [extra, evil] of [[["--allow-host", "build-box.example"], 403], [[], 200]] as const) {
      const wide = p.apexAsync(["serve", "--listen", "0.0.0.0:0", "--insecure", ...extra, "--json"]);
      stops.push(async () => {
        if (wide.child.exitCode === null) wide.child.kill("SIGTERM");
        await wide.done;
      });
      const wideUrl = `http://127.0.0.1:${await waitFor("the wide server's port", () => (wide.output().includes("}") ? (JSON.parse(wide.output()) as { port: number }).port : undefined), 30_000)}`;
      expect((await requestAs(wideUrl, "/api/health", "build-box.example:7433")).status).toBe(200);
      expect((await requestAs(wideUrl, "/api/health", "evil.example")).status).toBe(evil);
    }
  }, 60_000);
});

describe("--allow-host", () => {
  it("refuses a value no request's Host could match (a scheme, a port, a path: exit 2, nothing served), and takes an IPv6 address in brackets", async () => {
    const p = project();
    // Before, each was taken, and every request through that proxy or tunnel was refused (403).
    for (const [value, named] of [["https://tunnel.example", "tunnel.example"], ["tunnel.example:8443", "tunnel.example"], ["tunnel.example/apex", "tunnel.example"], ["a b", undefined]] as const) {
      const refused = p.apex(["serve", "--listen", "127.0.0.1:0", "--allow-host", value, "--json"], { timeout: 20_000 });
      expect(refused.status, `${value}: ${refused.stdout}`).toBe(2);
      expect(refused.stdout).toBe("");
      const error = JSON.parse(refused.stderr).error;
      expect(error.code).toBe("APEX_E_USAGE");
      expect(error.message).toBe(`--allow-host ${JSON.stringify(value)} is not a host name as requests name the server.`);
      if (named) expect(error.hint).toContain(`(here ${named})`);
      else expect(error.hint).not.toContain("(here");
    }
    // An IPv6 address with its brackets, as a Host header writes it: it never matched.
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const served = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--allow-host", "[FD00::1]", "--json"]);
    stops.push(async () => {
      if (served.child.exitCode === null) served.child.kill("SIGTERM");
      await served.done;
    });
    const url = await waitFor("the server's address", () => (served.output().includes("}") ? (JSON.parse(served.output()) as { url: string }).url : undefined), 30_000);
    expect((await requestAs(url, "/api/health", "[fd00::1]:8443")).status).toBe(200);
    expect((await requestAs(url, "/api/health", "[fd00::2]:8443")).status).toBe(403);
  });
});

describe("a server's refusals", () => {
  it("carry the headers of every reply (a wrong Host: nosniff, Vary: Origin under --cors), and a body over 1 MiB says the limit and what to do", async () => {
    // Before, the 403 for a wrong Host was sent before the hook that adds these headers, and the 413 had no hint.
    const p = project();
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    // A body is answered about to a caller the server has authenticated only: the 413 needs a grant.
    const sid = p.start().session_id;
    const grant = share(p, sid, "otto", "operator");
    const server = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--cors", "https://ui.example", "--json"]);
    stops.push(async () => {
      if (server.child.exitCode === null) server.child.kill("SIGTERM");
      await server.done;
    });
    const url = await waitFor("the server's address", () => (server.output().includes("}") ? (JSON.parse(server.output()) as { url: string }).url : undefined), 30_000);
    const port = new URL(url).port;
    for (const host of ["evil.example", `127.0.0.1:${port}`]) {
      const reply = await requestAs(url, "/api/health", host, "GET", { headers: { origin: "https://ui.example" } });
      expect(reply.status, host).toBe(host === "evil.example" ? 403 : 200);
      expect(reply.headers, host).toMatchObject({ "x-content-type-options": "nosniff", vary: "origin", "access-control-allow-origin": "https://ui.example", "cache-control": "no-store" });
    }
    const big = await requestAs(url, `/api/sessions/${sid}/rpc/memory.set`, `127.0.0.1:${port}`, "POST", { headers: { authorization: `Bearer ${grant.token}` }, body: JSON.stringify({ path: "/big", value: "x".repeat(1024 * 1024) }) });
    expect(big.status).toBe(413);
    // The body's size is said beside the limit (it named only the limit).
    const bytes = Buffer.byteLength(JSON.stringify({ path: "/big", value: "x".repeat(1024 * 1024) }));
    expect(big.body.error).toMatchObject({ code: "APEX_E_TOO_LARGE", message: `The request body is ${bytes} bytes, more than this server takes: at most 1 MiB (1048576 bytes).`, details: { bytes, limit_bytes: 1048576 } });
    expect(big.body.error.hint).toContain("split a large value across several paths");
    expect(big.headers["x-content-type-options"]).toBe("nosniff");
    // No cache keeps an API answer (a share's token, session data): said on every one, refused ones too.
    expect(big.headers["cache-control"]).toBe("no-store");
  }, 60_000);
});

describe("an event stream whose client goes away while its request is checked", () => {
  it("is not opened: it was never ended, and 16 of them used up the grant's streams (every next one 429) and stayed in `apex status`", async () => {
    const p = project();
    const sid = p.start().session_id;
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const { url, pid } = await serveLogged(p, stops);
    const vera = share(p, sid, "vera", "viewer");
    const port = Number(new URL(url).port);
    const body = JSON.stringify({ "events.subscribe": {} });
    const request = `POST /api/sessions/${sid}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${vera.token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    // Clients that close their connection within 3 ms of sending the request (a tab closed, a
    // network gone): some while the server checks the token, before the stream opens.
    const next = random(11);
    const closed: Array<Promise<unknown>> = [];
    for (let i = 0; i < 150; i++) {
      const socket = netConnect(port, "127.0.0.1");
      socket.on("error", () => {});
      closed.push(once(socket, "close"));
      await once(socket, "connect");
      socket.write(request);
      const [start, wait] = [process.hrtime.bigint(), BigInt(Math.floor(next() * 3_000_000))];
      const spin = () => (process.hrtime.bigint() - start >= wait ? socket.destroy() : setImmediate(spin));
      spin();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await Promise.all(closed);
    // Once the server has taken each of those closes (no end of a connection it has not closed yet, CLOSE_WAIT; then
    // asleep in its event loop, a reset taken too), not after a fixed 0.5 s: on a loaded machine streams of clients
    // gone, not yet ended, were counted against vera.
    await waitFor("the server to take the closes", () => !serverConnectionStates(port).includes(CLOSE_WAIT), 30_000);
    await waitFor("the server to take the resets", () => asleepInEventLoop(pid), 30_000);
    const aborted = new AbortController();
    const stream = await fetch(`${url}/api/sessions/${sid}/stream`, { method: "POST", headers: { authorization: `Bearer ${vera.token}`, "content-type": "application/json" }, body, signal: aborted.signal });
    expect(stream.status, stream.status === 200 ? "" : await stream.text()).toBe(200);
    aborted.abort();
    // No stream is left of them: vera is listed with none open, or not at all.
    await waitFor("vera's streams closed", () => ((p.status() as { connected?: Array<{ user: string; streams: number }> }).connected ?? []).every((user) => user.streams === 0) || undefined, 15_000);
  }, 60_000);
});
