// Remote and shared sessions end to end: a real `apex serve` on loopback, real sessions, real
// clients (the built CLI with --remote, and HTTP). Roles, revocation during a stream, two
// operators at once, TLS with a certificate made here, bad input and abuse.
import { execFileSync } from "node:child_process";
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect as netConnect, createServer as netServer, type Socket } from "node:net";
import { hostname } from "node:os";
import { brotliCompressSync, gzipSync } from "node:zlib";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FIXTURES, Project, groupMembers, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { FULL_CLI_ENV, REPO_ROOT } from "./helpers/cli.js";
import { expectWatchEnds, firstPlan } from "./helpers/watch-timeout.js";
import { endChild } from "./support/cleanup.js";
import { readByServer } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do echo tick; sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

interface Served {
  url: string;
  pid: number;
  /** What it has logged so far (its stderr). */
  log(): string;
  stop(): Promise<string>;
}

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const servers: Served[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

/** Resolves true when a connection to `port` is refused: the server no longer listens (it is closing). */
function refusesConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = netConnect(port, "127.0.0.1");
    probe.once("connect", () => (probe.destroy(), resolve(false)));
    probe.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

/** `apex serve` as a child process; stop() ends it by its pid and returns what it logged. */
async function serve(p: Project, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const run = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json", ...args], { env });
  const url = await waitFor("apex serve's address", () => {
    const out = run.output();
    return out.includes("}") ? (JSON.parse(out) as { url: string }).url : undefined;
  }, 30_000);
  const served: Served = {
    url,
    pid: run.child.pid!,
    log: run.errors,
    async stop() {
      await endChild(run);
      return run.errors();
    },
  };
  servers.push(served);
  return served;
}

function share(p: Project, user: string, role: string, extra: string[] = []): { token: string; token_id: string; url: string; connect: string; session_id: string } {
  const result = p.apex(["session", "share", "current", user, "--role", role, "--json", ...extra]);
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout);
}

async function rpc(url: string, sid: string, method: string, token: string | undefined, body: unknown = {}): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}/api/sessions/${sid}/rpc/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/**
 * A POST whose body the server may refuse before reading it all (413): the reply is read
 * even if the server closes the connection while the body is still being written.
 */
function postLarge(url: string, token: string, body: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: "POST", headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: `Bearer ${token}` } }, (response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
    });
    let answered = false;
    req.on("response", () => (answered = true));
    req.on("error", (error) => {
      if (!answered) setTimeout(() => (answered ? undefined : reject(error)), 1000);
    });
    req.end(body);
  });
}

function remote(p: Project, url: string, sid: string, token: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return p.apex(["--remote", `${url.replace(/^http:\/\//, "")}/${sid}`, ...args], { env: { APEX_TOKEN: token, ...env } });
}

describe("apex serve: roles", () => {
  it("lets each role do what it may, through HTTP and through the CLI, with the same output and exit codes as locally", async () => {
    project = new Project(CONFIG);
    const ready = project.start();
    const sid = ready.session_id;
    const server = await serve(project);
    const viewer = share(project, "vera@example.com", "viewer");
    const operator = share(project, "otto", "operator");
    const owner = share(project, "olga", "owner");
    // The invite names the running server; the token rides in the fragment, which browsers never send.
    expect(viewer.url).toBe(`${server.url}/#session=${sid}&token=${viewer.token}`);
    expect(viewer.connect).toContain(`apex connect 127.0.0.1:${new URL(server.url).port}/${sid}`);

    // Reads: every role.
    for (const who of [viewer, operator, owner]) {
      const status = await rpc(server.url, sid, "session.status", who.token);
      expect(status.status).toBe(200);
      expect(status.body.result.session.session_id).toBe(sid);
    }
    // The CLI over --remote prints what it prints locally.
    project.apex(["task", "add", "write the parser"]);
    for (const args of [["task", "list"], ["task", "list", "--json"]]) {
      const local = project.apex(args);
      const far = remote(project, server.url, sid, viewer.token, args);
      expect(far.status, far.stderr).toBe(0);
      expect(far.stdout).toBe(local.stdout);
    }
    // The whole keyspace as the owner sees it, less the grants (their hashes are nobody else's business)
    // and the project-wide records (which sessions run now, the project's id): a grant is for one session.
    const everything = JSON.parse(project.apex(["memory", "query", "/**", "--json"]).stdout) as Record<string, unknown>;
    const grants = Object.keys(everything).filter((path) => path.startsWith(`/sessions/${sid}/grants/`));
    expect(grants).toHaveLength(3);
    for (const path of [...grants, "/sessions/current", "/sessions/active", "/projects/config"]) delete everything[path];
    // Nor, to a viewer, the trail's share events (who was granted what); nor, to anyone remote, the
    // server's socket path and the nonces that prove its processes.
    for (const [path, value] of Object.entries(everything) as Array<[string, Record<string, any>]>) {
      if (path.includes("/events/") && String(value.type).startsWith("share.")) delete everything[path];
      if (value?.supervisor) for (const key of ["socket", "nonce"]) delete value.supervisor[key];
      if (path.includes("/agents/")) for (const key of ["nonce", "spawn_nonce"]) delete value[key];
    }
    expect(Object.keys(everything).some((path) => path.includes("/events/"))).toBe(true);
    // The supervisor renews its lease in the session record every few seconds: the two reads may see two renewals.
    const withoutLease = (records: Record<string, unknown>) => {
      for (const value of Object.values(records)) {
        const supervisor = (value as { supervisor?: Record<string, unknown> } | null)?.supervisor;
        if (supervisor && typeof supervisor === "object") delete supervisor.lease_expires_at;
      }
      return records;
    };
    expect(withoutLease(JSON.parse(remote(project, server.url, sid, viewer.token, ["memory", "query", "/**", "--json"]).stdout))).toEqual(withoutLease(everything));
    expect(remote(project, server.url, sid, viewer.token, ["logs", "-n", "1"]).stdout).toContain("alpha | tick");

    // Acts: viewer refused (403 / exit 4, nothing done), operator allowed.
    const refused = remote(project, server.url, sid, viewer.token, ["pause"]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("APEX_E_FORBIDDEN");
    expect(refused.stderr).toContain("vera@example.com is a viewer of this session; session.pause needs operator");
    expect(project.status().session!.status).toBe("active");
    expect((await rpc(server.url, sid, "memory.set", viewer.token, { path: "/notes/x", value: 1 })).status).toBe(403);
    expect(project.apex(["memory", "show", "/notes/x"]).status).toBe(3);

    const paused = remote(project, server.url, sid, operator.token, ["pause"]);
    expect(paused.status, paused.stderr).toBe(0);
    // Named as locally: the uuid's short form (the supervisor's reply passes through the server).
    // A process caught in I/O with its SIGSTOP pending (a loaded machine) is named after: it stops (T) the moment the I/O ends.
    expect(paused.stdout).toMatch(new RegExp(`^Paused session ${sid.slice(0, 8)}: \\d+ process(es)? of 1 agent stopped\\.( [^\\n]* (is|are) in uninterruptible I/O with the stop pending: [^\\n]*)?\\n$`));
    for (const agent of project.status().agents) for (const member of groupMembers(agent.pgid!)) expect(member.state).toMatch(/^[TD]$/);
    // Pausing twice: the same conflict as locally (exit 4, APEX_E_SESSION_STATE).
    const twice = remote(project, server.url, sid, operator.token, ["pause"]);
    expect(twice.status).toBe(4);
    expect(twice.stderr).toContain("APEX_E_SESSION_STATE");
    const checkpoint = remote(project, server.url, sid, operator.token, ["checkpoint", "create", "by otto"]);
    expect(checkpoint.status, checkpoint.stderr).toBe(0);
    // Made pinned, it is a pin (owner): retention would never remove it, and the operator could not unpin it. It was created, pinned.
    const pinned = remote(project, server.url, sid, operator.token, ["checkpoint", "create", "pinned by otto", "--pin"]);
    expect([pinned.status, pinned.stderr]).toEqual([4, expect.stringContaining("otto is an operator of this session; checkpoint.create with pin needs owner.")]);
    expect(project.apex(["checkpoint", "list"]).stdout).not.toContain("pinned by otto");
    expect(remote(project, server.url, sid, owner.token, ["checkpoint", "create", "pinned by the owner", "--pin"]).status).toBe(0);
    expect(remote(project, server.url, sid, viewer.token, ["checkpoint", "list"]).stdout).toContain("by otto");
    const newest = JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout).items[0].id as string;
    for (const args of [["checkpoint", "show", newest], ["checkpoint", "list"]]) {
      expect(remote(project, server.url, sid, viewer.token, args).stdout).toBe(project.apex(args).stdout);
    }
    // memory set as operator, memory show and watch as viewer.
    expect(remote(project, server.url, sid, operator.token, ["memory", "set", "/notes/from-otto", '{"n": 1}']).status).toBe(0);
    expect(JSON.parse(remote(project, server.url, sid, viewer.token, ["memory", "show", "/notes/from-otto", "--json"]).stdout)).toEqual({ path: "/notes/from-otto", value: { n: 1 } });
    const watched = remote(project, server.url, sid, viewer.token, ["memory", "watch", "/notes/**", "--since", "0", "--timeout", "0.1", "--json"]);
    expect(watched.status, watched.stderr).toBe(0);
    expect(JSON.parse(watched.stdout.trim().split("\n")[0]!)).toMatchObject({ path: "/notes/from-otto", kind: "put", actor: "user:otto", value: { n: 1 } });
    // --limit counts the entries the grant sees: /projects/config, which it does not, was counted (`--limit 2` gave one entry).
    expect(remote(project, server.url, sid, operator.token, ["memory", "set", "/q/after", "2"]).status).toBe(0);
    expect(remote(project, server.url, sid, viewer.token, ["memory", "query", "/**", "--keys"]).stdout).toMatch(/^\/notes\/from-otto\n\/q\/after\n\/sessions\//);
    expect(remote(project, server.url, sid, viewer.token, ["memory", "query", "/**", "--keys", "--limit", "2"]).stdout).toBe("/notes/from-otto\n/q/after\n");
    // export, as query --json, so that `export | import` round-trips through the server too (it was refused, exit 2, while import was served).
    const exported = remote(project, server.url, sid, viewer.token, ["memory", "export", "/q"]);
    expect(exported.status, exported.stderr).toBe(0);
    expect(exported.stdout).toBe('{\n  "/q/after": 2\n}\n');
    expect(remote(project, server.url, sid, operator.token, ["resume"]).status).toBe(0);

    // Owner only: sharing and stopping.
    expect((await rpc(server.url, sid, "share.create", operator.token, { user: "mallory", role: "owner" })).status).toBe(403);
    expect((await rpc(server.url, sid, "session.stop", operator.token)).status).toBe(403);
    const created = await rpc(server.url, sid, "share.create", owner.token, { user: "nina", role: "viewer" });
    expect(created.status).toBe(200);
    expect(created.body.result.grant.created_by).toBe("user:olga");

    // Everyone's actions are attributed in the audit trail, and status shows who is connected.
    expect(project.apex(["checkpoint", "create", "by the owner"], { env: { USER: "olivia" } }).status).toBe(0);
    const history = project.apex(["session", "history", sid]).stdout;
    expect(history).toMatch(/checkpoint \d+ \(manual\).*\[user:olivia\]/);
    expect(history).toMatch(/session paused .*\[user:otto\]/);
    expect(history).toMatch(/checkpoint \d+ \(manual\).*\[user:otto\]/);
    expect(history).toMatch(/resumed.*\[user:otto\]/);
    await waitFor("connected users in status", () => (project!.apex(["status"]).stdout.match(/connected\s+(.*)/)?.[1] ?? "").includes("otto (operator)"));
    expect(project.apex(["status"]).stdout).toMatch(/connected .*vera@example.com \(viewer\)/);
    // Who else holds a grant is the owners' business: a viewer or an operator is shown only themselves.
    const connectedFor = async (token: string) => ((await rpc(server.url, sid, "session.status", token)).body.result.connected as Array<{ user: string }>).map((entry) => entry.user).sort();
    expect(await connectedFor(owner.token)).toEqual(expect.arrayContaining(["olga", "otto", "vera@example.com"]));
    expect(await connectedFor(viewer.token)).toEqual(["vera@example.com"]);
    expect(await connectedFor(operator.token)).toEqual(["otto"]);
    const viewerStatus = remote(project, server.url, sid, viewer.token, ["status"]).stdout;
    expect(viewerStatus).toMatch(/connected +vera@example.com \(viewer\)\n/);
    expect(viewerStatus).not.toContain("otto");
    // A remote session in the environment (APEX_REMOTE) is `apex status`'s fast path: as `--remote` (the full CLI) prints it, and as the full
    // CLI does for the same line. Its agent's shell starts a `sleep` after another and its CPU time grows: the pids of its processes,
    // their CPU time, state and uptime are left out of what is compared (the JSON's fields; the text's durations, with the table's padding).
    const target = `${server.url.replace(/^http:\/\//, "")}/${sid}`;
    const steady = (result: { status: number; stdout: string; stderr: string }, json: boolean) => {
      if (result.status !== 0) return result;
      if (!json) return { ...result, stdout: result.stdout.replace(/\b\d+(?:\.\d+)?s\b/g, "(time)").replace(/ {2,}/g, "  ") };
      const report = JSON.parse(result.stdout) as { agents: Array<Record<string, unknown>> };
      for (const agent of report.agents) for (const key of ["processes", "cpu_seconds", "uptime_seconds", "process_state"]) delete agent[key];
      return { ...result, stdout: report };
    };
    for (const args of [["status"], ["status", "--json"]]) {
      const three = () =>
        [
          project!.apex(args, { env: { APEX_REMOTE: target, APEX_TOKEN: viewer.token } }),
          project!.apex(["--remote", target, ...args], { env: { APEX_TOKEN: viewer.token } }),
          project!.apex(args, { env: { APEX_REMOTE: target, APEX_TOKEN: viewer.token, ...FULL_CLI_ENV } }),
        ].map((result) => steady(result, args.includes("--json")));
      let [fast, flag, full] = three();
      for (let i = 1; i < 5 && (JSON.stringify(fast) !== JSON.stringify(flag) || JSON.stringify(fast) !== JSON.stringify(full)); i++) [fast, flag, full] = three();
      expect(fast!.status, fast!.stderr).toBe(0);
      expect(flag, args.join(" ")).toEqual(fast);
      expect(full, args.join(" ")).toEqual(fast);
    }

    // Internal plumbing is not reachable remotely, even by an owner.
    expect((await rpc(server.url, sid, "share.authenticate", owner.token, { token: viewer.token })).status).toBe(404);
    // A method no supervisor has: 404 (the caller's mistake, not a bad gateway), without the supervisor's list of methods.
    const unknown = await rpc(server.url, sid, "memory.explode", owner.token);
    expect(unknown.status).toBe(404);
    // For a viewer too: it was 403 "memory.explode needs owner", with the share command that grants owner.
    for (const who of [viewer, operator]) {
      const asked = await rpc(server.url, sid, "memory.explode", who.token);
      expect(asked.status, JSON.stringify(asked.body)).toBe(404);
      expect(asked.body.error).toMatchObject({ code: "APEX_E_NOT_FOUND", details: { unknown_method: "memory.explode" } });
    }
    // A real method above the role stays 403.
    expect((await rpc(server.url, sid, "session.stop", viewer.token)).status).toBe(403);
    expect(unknown.body.error).toMatchObject({ code: "APEX_E_NOT_FOUND", message: 'Unknown method "memory.explode".' });
    expect(JSON.stringify(unknown.body)).not.toContain("share.authenticate");

    // A remote watch waits out the server's restart, and misses nothing written meanwhile (it ended, exit 1, APEX_E_RPC "Cannot reach").
    const address = `${server.url.replace(/^http:\/\//, "")}/${sid}`;
    const watch = project.apexAsync(["--remote", address, "memory", "watch", "/outage/**", "--changes-only", "--json"], { env: { APEX_TOKEN: viewer.token } });
    const watchedPaths = () => watch.output().trim().split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { path: string }).path);
    await waitFor("the watch to follow", () => project!.apex(["memory", "set", `/outage/${Date.now()}`, "1"]) && watchedPaths().length > 0);

    // Tokens never appear in what the server logs.
    const log = await server.stop();
    expect(log).toContain(`/api/sessions/${sid}/rpc/session.pause 200 otto`);
    for (const token of [viewer.token, operator.token, owner.token]) expect(log).not.toContain(token.slice(-20));

    expect(project.apex(["memory", "set", "/outage/while-down", "1"]).status).toBe(0);
    const again = project.apexAsync(["serve", "--listen", address.split("/")[0]!, "--json"]);
    try {
      await waitFor("apex serve again", () => again.output().includes("}"));
      expect(project.apex(["memory", "set", "/outage/after", "1"]).status).toBe(0);
      await waitFor("the changes made while the server was down and after", () => watchedPaths().includes("/outage/after"));
      expect(watchedPaths().slice(-2)).toEqual(["/outage/while-down", "/outage/after"]);
      // (a wait under way when the server stopped: its connection closed unanswered, or the server's refusal)
      expect(watch.errors()).toMatch(/^warning: (Cannot reach http:\/\/127\.0\.0\.1:\d+: (ECONNREFUSED|HTTP 503 Service Unavailable \(shutting down[^)]*\))\.|http:\/\/127\.0\.0\.1:\d+ closed the connection before answering memory\.changes \(ECONNRESET\)\.|The server is shutting down \(apex serve was stopped\): it takes no new requests\.) Still watching; retrying in 1 s, then less and less often \(up to every 16 s\), and giving up if the server has not answered for 5 min \(Ctrl-C ends\)\.\n(warning: the server has not answered for [^\n]*\n)*warning: the server is reachable again after \d+\.\d s; nothing was missed\.\n$/);
      watch.child.kill("SIGTERM");
      expect((await watch.done).status).toBe(0);
    } finally {
      if (watch.child.exitCode === null) watch.child.kill("SIGKILL");
      if (again.child.exitCode === null) again.child.kill("SIGTERM");
      await again.done;
    }
  });
});

describe("apex serve: streams, revocation and concurrency", () => {
  it("streams events live and closes a user's stream as soon as they are unshared", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = await serve(project);
    const viewer = share(project, "vera", "viewer");
    const operator = share(project, "otto", "operator");

    const response = await fetch(`${server.url}/api/sessions/${sid}/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewer.token}` },
      body: JSON.stringify({ "events.subscribe": {}, "logs.follow": {} }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const reader = response.body!.getReader();
    let text = "";
    const read = (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        text += new TextDecoder().decode(value);
      }
    })();
    await waitFor("a log line on the stream", () => text.includes("event: logs.follow"));
    // `--remote … logs -f` reads the last lines, then follows from where the server read them
    // (read_to): a line written between the two requests is sent too (before, it was lost).
    const tail = await rpc(server.url, sid, "logs.read", viewer.token, { lines: 1 });
    expect(tail.status).toBe(200);
    expect(tail.body.result.read_to["alpha.stdout"].size).toBeGreaterThan(0);
    appendFileSync(join(project.storeDir, "logs", sid, "alpha.log"), "between the requests\n");
    const followed = new AbortController();
    const from = await fetch(`${server.url}/api/sessions/${sid}/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewer.token}` },
      body: JSON.stringify({ "logs.follow": { read_to: tail.body.result.read_to } }),
      signal: followed.signal,
    });
    let fromText = "";
    const decoder = new TextDecoder();
    const fromReader = from.body!.getReader();
    await waitFor("the line written between the requests", async () => {
      fromText += decoder.decode((await fromReader.read()).value);
      return fromText.includes("between the requests");
    });
    followed.abort();
    expect(remote(project, server.url, sid, operator.token, ["pause"]).status).toBe(0);
    await waitFor("the pause on the stream", () => text.includes('"type":"session.paused"'));
    expect(text).toMatch(/"actor":"user:otto"/);

    // `apex status` lists who is connected through the server; a user revoked is not, at once
    // (before, for up to 30 s after their last request, or while their stream was still closing).
    const connected = () => (JSON.parse(project!.apex(["status", "--json"]).stdout) as { connected?: Array<{ user: string }> }).connected ?? [];
    expect((await rpc(server.url, sid, "session.status", viewer.token)).status).toBe(200);
    await waitFor("vera listed as connected", () => connected().some((user) => user.user === "vera"));
    const started = Date.now();
    expect(project.apex(["session", "unshare", "current", "vera"]).status).toBe(0);
    expect(connected().map((user) => user.user)).not.toContain("vera");
    await read; // the server ended the stream
    // Within its recheck of grants (1 s) after two commands: 10 s leaves a loaded machine room, and is far from the 30 s of before.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(text).toContain("event: error");
    expect(text).toContain("APEX_E_UNAUTHORIZED");
    const after = await rpc(server.url, sid, "session.status", viewer.token);
    expect(after.status).toBe(401);
    // The others keep their access.
    expect((await rpc(server.url, sid, "session.status", operator.token)).status).toBe(200);
    // `apex connect` as a revoked user: refused with exit 4.
    const connect = project.apex(["connect", `${server.url.replace("http://", "")}/${sid}`], { env: { APEX_TOKEN: viewer.token } });
    expect(connect.status).toBe(4);
    expect(connect.stderr).toContain("APEX_E_UNAUTHORIZED");

    // Nor is a user whose grant has expired (before, for 30 s after their last request).
    const brief = share(project, "bree", "viewer", ["--expires", "3s"]) as ReturnType<typeof share> & { expires_at: string };
    expect((await rpc(server.url, sid, "session.status", brief.token)).status).toBe(200);
    await waitFor("bree listed as connected", () => connected().some((user) => user.user === "bree"));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(brief.expires_at) - Date.now()) + 500));
    expect(connected().map((user) => user.user)).not.toContain("bree");

    // Nobody is listed once the server has stopped (before, its users stayed listed until their
    // last report was 30 s old).
    await waitFor("otto listed as connected", () => connected().some((user) => user.user === "otto"));
    await server.stop();
    expect(connected()).toEqual([]);

    // `--remote … logs -f` ends with the session, as `apex logs -f` does here (it followed on for ever).
    const again = await serve(project);
    expect(remote(project, again.url, sid, operator.token, ["resume"]).status).toBe(0);
    const following = project.apexAsync(["--remote", `${again.url.replace(/^http:\/\//, "")}/${sid}`, "logs", "-f", "-n", "1"], { env: { APEX_TOKEN: operator.token } });
    await waitFor("a line followed", () => following.output().split("\n").filter(Boolean).length >= 2, 15_000);
    expect(project.apex(["stop"]).status).toBe(0);
    const ended = await Promise.race([following.done, new Promise<undefined>((resolve) => setTimeout(resolve, 10_000))]);
    expect(ended, "still following 10 s after the session stopped").toBeDefined();
    expect(ended!.status, ended!.stderr).toBe(0);
    expect(ended!.stderr).toBe(`The log stream ended: session ${sid.slice(0, 8)} has ended.\n`);
    expect(ended!.stdout).toMatch(/alpha \| \[apex [^\]]+\] pid \d+ was killed by SIGTERM\n$/);
  });

  it("serializes two operators acting at once: one pause wins, the other gets the conflict; both are in the audit trail", async () => {
    project = new Project(CONFIG);
    // onStop takes a second: the session is recorded as stopped while its supervisor still runs.
    const recorder = JSON.stringify(join(FIXTURES, "hook-recorder.mjs"));
    project.writeConfig(CONFIG.replace("plugins:\n", `plugins:\n  ${recorder}:\n    file: ${JSON.stringify(join(project.dir, "hooks.jsonl"))}\n    stop_delay_ms: 1000\n`));
    const sid = project.start().session_id;
    const server = await serve(project);
    const a = share(project, "ann", "operator");
    const b = share(project, "bob", "operator");
    const [first, second] = await Promise.all([rpc(server.url, sid, "session.pause", a.token), rpc(server.url, sid, "session.pause", b.token)]);
    expect([first.status, second.status].sort()).toEqual([200, 409]);
    const loser = first.status === 409 ? first : second;
    expect(loser.body.error.code).toBe("APEX_E_SESSION_STATE");
    const [c1, c2] = await Promise.all([
      rpc(server.url, sid, "checkpoint.create", a.token, { description: "ann's" }),
      rpc(server.url, sid, "checkpoint.create", b.token, { description: "bob's" }),
    ]);
    expect([c1.status, c2.status]).toEqual([200, 200]);
    expect(c1.body.result.sequence).not.toBe(c2.body.result.sequence);
    const trail = JSON.parse(project.apex(["session", "history", sid, "--json"]).stdout) as { events: Array<{ type: string; actor: string; trigger?: string }> };
    const paused = trail.events.filter((event) => event.type === "session.paused");
    expect(paused).toHaveLength(1);
    expect(["user:ann", "user:bob"]).toContain(paused[0]!.actor);
    const manual = trail.events.filter((event) => event.type === "checkpoint" && event.trigger === "manual").map((event) => event.actor);
    expect(manual.sort()).toEqual(["user:ann", "user:bob"]);

    // The session stops while it is viewed (a dashboard refreshes its status): every answer names
    // it, paused and then stopped. Before, its ending supervisor answered with no session at all
    // until it exited (the dashboard showed "no session" and no agents), or closed the connection
    // first: a 502 saying "whether it was done is not known" for a read, and for the token's check
    // a failed login, which slowed the address down.
    const stopping = project.apexAsync(["stop"]);
    const answers = new Set<string>();
    let stopped = false;
    const deadline = Date.now() + 20_000;
    while (!stopped && Date.now() < deadline) {
      const replies = await Promise.all([a, b, a, b].map((grant) => rpc(server.url, sid, "session.status", grant.token)));
      for (const reply of replies) {
        const status = reply.body.result?.session?.status;
        answers.add(reply.status === 200 && reply.body.result.session?.session_id === sid ? status : `${reply.status} ${JSON.stringify(reply.body)}`);
        if (status === "stopped") stopped = stopping.child.exitCode !== null;
      }
    }
    expect((await stopping.done).status).toBe(0);
    // Paused, then stopping while its stop runs (when a refresh falls in it), then stopped.
    expect([...answers].filter((answer) => !["paused", "stopping", "stopped"].includes(answer))).toEqual([]);
    expect(answers.has("stopped")).toBe(true);
  });
});

describe("apex serve: TLS and addresses", () => {
  it("serves HTTPS with a certificate made here, and refuses plain HTTP off loopback unless --insecure", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const cert = join(project.dir, "cert.pem");
    const key = join(project.dir, "key.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], {
      stdio: "ignore",
    });
    const refused = project.apex(["serve", "--listen", "0.0.0.0:0"]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain("Refusing to serve plain HTTP on 0.0.0.0");
    // A file that is no PEM, or a key that is not the certificate's: a usage error naming the options, not an internal one.
    const otherKey = join(project.dir, "other-key.pem");
    execFileSync("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", otherKey], { stdio: "ignore" });
    writeFileSync(join(project.dir, "junk.pem"), "not a certificate\n");
    for (const [certFile, keyFile] of [["junk.pem", "junk.pem"], [cert, otherKey]]) {
      const unusable = project.apex(["serve", "--listen", "127.0.0.1:0", "--tls-cert", certFile!, "--tls-key", keyFile!, "--json"], { timeout: 30_000 });
      expect(unusable.status, unusable.stderr).toBe(2);
      expect(JSON.parse(unusable.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringContaining("--tls-cert, --tls-key") });
    }
    // A file that cannot be read: a usage error (exit 2), as an unreadable --token-file is, not "not found" (exit 3).
    for (const [certFile, keyFile, named] of [[join(project.dir, "missing.pem"), key, "--tls-cert"], [cert, join(project.dir, "no-key.pem"), "--tls-key"]]) {
      const missing = project.apex(["serve", "--listen", "127.0.0.1:0", "--tls-cert", certFile!, "--tls-key", keyFile!, "--json"], { timeout: 30_000 });
      expect(missing.status, missing.stderr).toBe(2);
      expect(JSON.parse(missing.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringContaining(`Cannot read ${named}`) });
    }
    const server = await serve(project, ["--tls-cert", cert, "--tls-key", key]);
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const viewer = share(project, "vera", "viewer", ["--url", server.url]);
    expect(viewer.connect).toContain(`apex connect https://127.0.0.1:${new URL(server.url).port}/${sid}`);
    const target = `https://127.0.0.1:${new URL(server.url).port}/${sid}`;
    // Without trusting the certificate: refused by the client.
    const untrusted = project.apex(["--remote", target, "status"], { env: { APEX_TOKEN: viewer.token } });
    expect(untrusted.status).toBe(1);
    const trusted = project.apex(["--remote", target, "status", "--json"], { env: { APEX_TOKEN: viewer.token, NODE_EXTRA_CA_CERTS: cert } });
    expect(trusted.status, trusted.stderr).toBe(0);
    expect(JSON.parse(trusted.stdout).session.session_id).toBe(sid);

    // Plain HTTP off loopback (--insecure): the invite's targets say http://, since without a
    // scheme a host other than loopback is reached over https (they were unusable: EPROTO).
    const wide = await serve(project, ["--listen", "0.0.0.0:0", "--insecure"]);
    const widePort = new URL(wide.url).port;
    const lan = share(project, "lana", "viewer", ["--url", `http://0.0.0.0:${widePort}`]);
    const lanTarget = `http://0.0.0.0:${widePort}/${sid}`;
    expect(lan.connect).toBe(`APEX_TOKEN=${lan.token} apex connect ${lanTarget}`);
    const reached = project.apex(["--remote", lan.connect.split(" ").at(-1)!, "status", "--json"], { env: { APEX_TOKEN: lan.token } });
    expect(reached.status, reached.stderr).toBe(0);
    expect(JSON.parse(reached.stdout).session.session_id).toBe(sid);
    // Without --url, the invite names this host, not the address it listens on (0.0.0.0 reaches no teammate).
    const named = share(project, "nina", "viewer");
    expect(named.url).toBe(`http://${hostname()}:${widePort}/#session=${sid}&token=${named.token}`);
    expect(named.connect).toBe(`APEX_TOKEN=${named.token} apex connect http://${hostname()}:${widePort}/${sid}`);
    // An address without a port: the invite's page and its connect line reach the same port (the line said 7433, the page 80).
    const portless = share(project, "paul", "viewer", ["--url", "http://build-box.example"]);
    expect(portless.url.startsWith("http://build-box.example/#session=")).toBe(true);
    expect(portless.connect).toBe(`APEX_TOKEN=${portless.token} apex connect http://build-box.example:80/${sid}`);
    // Accepted with --insecure, not silently: its log says the tokens cross the network in clear.
    servers.splice(servers.indexOf(wide), 1);
    expect(await wide.stop()).toContain("warning: plain HTTP on 0.0.0.0 (--insecure): every token sent here crosses the network in clear");
  });
});

describe("apex serve before the first session", () => {
  it("records its address once the store is made, so the invites of sessions started later name it", async () => {
    project = new Project(CONFIG);
    const server = await serve(project);
    const sid = project.start().session_id;
    // It was never recorded (no store directory at start): invites named the default 127.0.0.1:7433.
    // apex serve tries again every 0.5 s: on a loaded machine its timer may come late.
    await waitFor("serve.json", () => existsSync(join(project!.storeDir, "serve.json")), 30_000);
    expect(share(project, "vera", "viewer").url).toMatch(new RegExp(`^${server.url}/#session=${sid}&token=`));
    await server.stop();
    servers.splice(servers.indexOf(server), 1);
    expect(existsSync(join(project.storeDir, "serve.json"))).toBe(false);
  });
});

describe("apex serve: bad input and abuse", () => {
  it("answers 4xx with a clear message and changes nothing", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = await serve(project);
    const operator = share(project, "otto", "operator");
    const revision = () => JSON.parse(project!.apex(["memory", "query", "/**", "--json"]).stdout).length as number;
    const before = revision();

    const malformed = await rpc(server.url, sid, "memory.set", operator.token, '{"path": "/a", "value": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("APEX_E_BAD_JSON");
    // Valid JSON with a key that could reach an object's prototype: refused as such, not as "not valid JSON".
    for (const [body, key, at] of [
      ['{"path": "/p", "value": {"__proto__": {"polluted": true}}}', "__proto__", "$.value"],
      ['{"path": "/p", "value": [1, {"constructor": {"prototype": {}}}]}', "constructor.prototype", "$.value[1]"],
    ]) {
      const poisoned = await rpc(server.url, sid, "memory.set", operator.token, body);
      expect(poisoned.status, JSON.stringify(poisoned.body)).toBe(400);
      expect(poisoned.body.error).toMatchObject({ code: "APEX_E_BAD_INPUT", details: { key, at } });
      expect(poisoned.body.error.message).toContain("such keys are refused");
    }
    // A number JSON reads as another (1e-400 as 0, an id past 2^53 rounded) was stored so without a word.
    for (const [body, number] of [['{"path": "/n", "value": [1e-400]}', "1e-400"], ['{"path": "/n", "value": 12345678901234567891}', "12345678901234567891"]]) {
      const inexact = await rpc(server.url, sid, "memory.set", operator.token, body);
      expect(inexact.status, JSON.stringify(inexact.body)).toBe(400);
      expect(inexact.body.error).toMatchObject({ code: "APEX_E_BAD_INPUT", details: { number } });
    }
    // A body that is not JSON by its type (a form, text, no type at all): 415, whatever it holds.
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", undefined]) {
      const reply = await fetch(`${server.url}/api/sessions/${sid}/rpc/memory.set`, {
        method: "POST",
        headers: { ...(type ? { "content-type": type } : {}), authorization: `Bearer ${operator.token}` },
        body: type ? '{"path": "/typed", "value": 1}' : new Blob(['{"path": "/typed", "value": 1}']),
      });
      const body = (await reply.json()) as { error: { code: string; message: string } };
      expect(reply.status, `${type}: ${JSON.stringify(body)}`).toBe(415);
      expect(body.error.code).toBe("APEX_E_BAD_INPUT");
      expect(body.error.message).toContain("the API takes JSON only");
    }
    // A compressed body (Content-Encoding) was read as if plain: gzip failed as "Request body size did not match Content-Length" (400 APEX_E_BAD_JSON). 415, saying so, and nothing written.
    for (const [coding, body] of [["gzip", gzipSync('{"path": "/zipped", "value": 1}')], ["br", brotliCompressSync('{"path": "/zipped", "value": 1}')], ["deflate, gzip", Buffer.from('{"path": "/zipped", "value": 1}')]] as const) {
      const reply = await fetch(`${server.url}/api/sessions/${sid}/rpc/memory.set`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": coding, authorization: `Bearer ${operator.token}` }, body });
      const answer = (await reply.json()) as { error: { code: string; message: string } };
      expect(reply.status, `${coding}: ${JSON.stringify(answer)}`).toBe(415);
      expect(reply.headers.get("accept-encoding")).toBe("identity");
      expect(answer.error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: `The request body is sent with Content-Encoding: ${JSON.stringify(coding)}; this server takes bodies as they are only, not compressed.` });
    }
    expect(project.apex(["memory", "show", "/zipped"]).status).not.toBe(0);
    // identity is no coding: read as the plain body it is.
    const plain = await fetch(`${server.url}/api/sessions/${sid}/rpc/session.status`, { method: "POST", headers: { "content-type": "application/json", "content-encoding": "identity", authorization: `Bearer ${operator.token}` }, body: "{}" });
    expect(plain.status).toBe(200);
    const empty = await rpc(server.url, sid, "memory.set", operator.token, "");
    expect(empty.body.error.code).toBe("APEX_E_BAD_JSON");
    const array = await rpc(server.url, sid, "memory.set", operator.token, "[1,2]");
    expect(array.status).toBe(400);
    expect(array.body.error.message).toContain("must be a JSON object");
    // A key given twice, in the parameters or in a value: JSON keeps the last, so it is refused, as `memory set` refuses it (it was written, 200).
    for (const [body, at] of [['{"path": "/twice", "value": {"a": 1, "a": 2}}', "/value/a"], ['{"path": "/twice", "path": "/other", "value": 1}', "/path"]] as const) {
      const twice = await rpc(server.url, sid, "memory.set", operator.token, body);
      expect(twice.status, JSON.stringify(twice.body)).toBe(400);
      expect(twice.body.error).toMatchObject({ code: "APEX_E_BAD_INPUT", details: { at } });
    }
    expect(project.apex(["memory", "show", "/twice"]).status).not.toBe(0);
    expect(project.apex(["memory", "show", "/other"]).status).not.toBe(0);
    // JSON's null is no object either, on calls and streams alike (it was taken as {}: the call ran, 200).
    for (const path of ["rpc/session.status", "stream"]) {
      const reply = await fetch(`${server.url}/api/sessions/${sid}/${path}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${operator.token}` }, body: "null" });
      const body = (await reply.json()) as { error: { code: string; message: string } };
      expect(reply.status, `${path}: ${JSON.stringify(body)}`).toBe(400);
      expect(body.error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: "The request body must be a JSON object of parameters." });
    }
    // logs.read's lines and agent of a wrong type: refused (a string, -3 were read as 50 lines, 1.5 as 2, agent 5 as every agent, 100,001 as 100,000).
    for (const params of [{ lines: "abc" }, { lines: -3 }, { lines: 1.5 }, { lines: null }, { agent: 5 }, { lines: 100_001 }]) {
      const refused = await rpc(server.url, sid, "logs.read", operator.token, params);
      expect(refused.status, `${JSON.stringify(params)}: ${JSON.stringify(refused.body)}`).toBe(400);
      expect(refused.body.error.code).toBe("APEX_E_BAD_INPUT");
      expect(refused.body.error.message).toMatch(/^logs\.read: (lines|agent) must be /);
    }
    // Each agent once in agents (it was listed once per log: alpha, alpha).
    const read = await rpc(server.url, sid, "logs.read", operator.token, { lines: 1 });
    expect(read.status).toBe(200);
    expect(read.body.result.agents).toEqual(["alpha"]);
    expect(Object.keys(read.body.result.read_to).sort()).toEqual(["alpha.stderr", "alpha.stdout"]);
    const big = await postLarge(`${server.url}/api/sessions/${sid}/rpc/memory.set`, operator.token, JSON.stringify({ path: "/big", value: "x".repeat(2 * 1024 * 1024) }));
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe("APEX_E_TOO_LARGE");
    const badPath = await rpc(server.url, sid, "memory.set", operator.token, { path: "/a/../b", value: 1 });
    expect(badPath.status).toBe(400);
    expect(badPath.body.error.code).toBe("APEX_E_BAD_PATH");
    const nowhere = await fetch(`${server.url}/api/nothing/here`);
    expect(nowhere.status).toBe(404);
    expect(((await nowhere.json()) as { error: { message: string } }).error.message).toContain("No such path");
    const unknownSession = await rpc(server.url, "0000aaaa-0000-0000-0000-000000000000", "session.status", operator.token);
    expect(unknownSession.status).toBe(401);
    const noToken = await rpc(server.url, sid, "session.status", undefined);
    expect(noToken.status).toBe(401);
    expect(noToken.body.error.message).toContain("No token");
    // A token sent as Basic, the way many tools send credentials: said as such, not as no header at all.
    const basic = await fetch(`${server.url}/api/sessions/${sid}/rpc/session.status`, { method: "POST", headers: { authorization: `Basic ${operator.token}`, "content-type": "application/json" }, body: "{}" });
    expect(basic.status).toBe(401);
    expect(((await basic.json()) as { error: { message: string } }).error.message).toBe("No token: the Authorization header is not a bearer token (Basic, a user and password, is not taken); send Authorization: Bearer <token>.");
    const unknownMethod = await rpc(server.url, sid, "memory.explode", operator.token);
    expect(unknownMethod.status).toBe(404); // unknown to every role, as to an owner (not "needs owner")
    expect(revision()).toBe(before);

    // Expired tokens.
    const brief = share(project, "brief", "viewer", ["--expires", "1s"]) as ReturnType<typeof share> & { expires_at: string };
    expect((await rpc(server.url, sid, "session.status", brief.token)).status).toBe(200);
    // Past the moment it expires (a grant is expired from its expires_at on), not a fixed time after the share.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(brief.expires_at) - Date.now()) + 50));
    const expired = await rpc(server.url, sid, "session.status", brief.token);
    expect(expired.status).toBe(401);
    expect(expired.body.error.message).toContain("expired");
    expect(project.apex(["session", "share", "current", "x", "--expires", "soon"]).status).toBe(2);
    // Read as every duration option reads one: the spelling it takes is suggested, and 0 is no expiry.
    expect(project.apex(["session", "share", "current", "x", "--expires", "7D"]).stderr).toContain('--expires: Expected a duration, got "7D". Did you mean "7d"?');
    expect(project.apex(["session", "share", "current", "x", "--expires", "0"]).stderr).toContain("--expires: Expected a duration above 0");
    expect(project.apex(["session", "share", "current", "x", "--role", "admin"]).status).toBe(2);
    // An expiry past what a date can hold, an invite address that is no URL: usage errors, and no grant is made (its token would be lost).
    const grantsBefore = project.apex(["session", "shares", "current", "--json"]).stdout;
    // An address under a path (a proxy's prefix) or with a query: the dashboard and API are at the root, and the connect line would drop the path.
    // Port 0 is no server's address: its invite was made, with a connect line that connect refuses (exit 2).
    for (const extra of [["--expires", "99999999d"], ["--url", "notaurl"], ["--url", "ftp://host/"], ["--url", "https://proxy.example/apex"], ["--url", "http://host:7433/?x=1"], ["--url", "http://host:0"]]) {
      const refused = project.apex(["session", "share", "current", "xavier", ...extra, "--json"]);
      expect(refused.status, `${extra.join(" ")}: ${refused.stderr}`).toBe(2);
      expect(JSON.parse(refused.stderr).error.code).toBe("APEX_E_USAGE");
    }
    expect(project.apex(["session", "shares", "current", "--json"]).stdout).toBe(grantsBefore);

    // An address in use, or not of this host: said so (4 and 2), not an internal error; nothing keeps running.
    const port = new URL(server.url).port;
    for (const [listen, code, exit] of [
      [`127.0.0.1:${port}`, "APEX_E_CONFLICT", 4],
      ["nonexistent.invalid:0", "APEX_E_USAGE", 2],
    ] as const) {
      const taken = project.apex(["serve", "--listen", listen, "--insecure", "--json"], { timeout: 30_000 });
      expect(taken.status, `${listen}: ${taken.stderr}`).toBe(exit);
      expect(JSON.parse(taken.stderr).error.code).toBe(code);
    }

    // No CORS headers unless configured.
    const cross = await fetch(`${server.url}/api/sessions/${sid}/rpc/session.status`, {
      method: "POST",
      headers: { origin: "https://evil.example", "content-type": "application/json", authorization: `Bearer ${operator.token}` },
      body: "{}",
    });
    expect(cross.headers.get("access-control-allow-origin")).toBeNull();
    const allowed = await serve(project, ["--cors", "https://ui.example"]);
    const granted = await fetch(`${allowed.url}/api/sessions/${sid}/rpc/session.status`, {
      method: "POST",
      headers: { origin: "https://ui.example", "content-type": "application/json", authorization: `Bearer ${operator.token}` },
      body: "{}",
    });
    expect(granted.headers.get("access-control-allow-origin")).toBe("https://ui.example");
    // An origin written as a URL (a path, a trailing '/') would never match: refused at start.
    for (const written of ["https://ui.example/", "ui.example", "https://ui.example/app"]) {
      const refused = project.apex(["serve", "--listen", "127.0.0.1:0", "--cors", written, "--json"], { timeout: 30_000 });
      expect(refused.status, `${written}: ${refused.stderr}`).toBe(2);
      expect(JSON.parse(refused.stderr).error.code).toBe("APEX_E_USAGE");
    }

    // Repeated failures from one client are slowed down. The client is an address of its own
    // (127.0.0.0/8 is this host's): from 127.0.0.1, the failures above counted too, and its sixth
    // here was its ninth or tenth, answered after 3.2 or 5 s (~11 s of waits in all, for a
    // threshold of 350 ms); from a fresh address the sixth waits 400 ms.
    const timeOf = async () => {
      const started = Date.now();
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const request = httpRequest(
          `${server.url}/api/sessions/${sid}/rpc/session.status`,
          { method: "POST", localAddress: "127.0.0.2", agent: false, headers: { "content-type": "application/json", authorization: `Bearer apx_0123456789abcdef_${"A".repeat(43)}` } },
          (response) => response.resume().on("end", () => resolve(response.statusCode)),
        );
        request.on("error", reject);
        request.end("{}");
      });
      expect(status).toBe(401);
      return Date.now() - started;
    };
    for (let i = 0; i < 5; i++) await timeOf();
    const sixth = await timeOf();
    expect(sixth).toBeGreaterThanOrEqual(350);
    // The server says each answer it holds back, and for how long: the first three failures not at all (an answer's
    // time says as much only on an idle machine), then twice as long each time. Its log comes on a pipe of its own.
    const held = () => server.log().split("\n").filter((line) => / failed logins from 127\.0\.0\.2: /.test(line));
    await waitFor("the server's log of the sixth failure", () => held().length >= 3);
    expect(held().map((line) => /its answer waits (\d+)ms/.exec(line)?.[1])).toEqual(["100", "200", "400"]);
  });
});

describe("apex serve: crafted requests", () => {
  it("answers each with a status and an APEX error body, never an internal error, and changes nothing", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = await serve(project);
    const operator = share(project, "otto", "operator");
    const keys = () => Object.keys(JSON.parse(project!.apex(["memory", "query", "/deep*", "--json"]).stdout) as object);
    const nested = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;

    // Nested deeper than a value may be: a bad request (the supervisor's JSON would overflow the stack).
    for (const levels of [600, 5000]) {
      const deep = await rpc(server.url, sid, "memory.set", operator.token, `{"path": "/deep", "value": ${nested(levels)}}`);
      expect(deep.status, JSON.stringify(deep.body)).toBe(400);
      expect(deep.body.error.code).toBe("APEX_E_TOO_DEEP");
    }
    expect(keys()).toEqual([]);
    // As deep as a value may be (512 levels) is stored.
    const deepest = await rpc(server.url, sid, "memory.set", operator.token, `{"path": "/deepest", "value": ${nested(512)}}`);
    expect(deepest.status, JSON.stringify(deepest.body)).toBe(200);
    expect(keys()).toEqual(["/deepest"]);

    // A path that exists, with a method it does not take: 405 and what it takes; a path that does not: 404.
    // Its hint says what the path takes (a POST of /api/health was told "API calls are POST").
    const readHint = (path: string) => `Read ${path} with GET (HEAD for its headers only); API calls are POST to /api/sessions/SESSION/rpc/METHOD.`;
    const postHint = "Send POST with a JSON object of parameters; OPTIONS asks what the path takes.";
    for (const [method, path, allow, hint] of [
      ["GET", `/api/sessions/${sid}/rpc/session.status`, "POST, OPTIONS", postHint],
      ["PUT", `/api/sessions/${sid}/stream`, "POST, OPTIONS", postHint],
      ["DELETE", "/", "GET, HEAD", readHint("/")],
      ["POST", "/assets/app.js", "GET, HEAD", readHint("/assets/app.js")],
      ["POST", "/api/health", "GET, HEAD", readHint("/api/health")],
      // OPTIONS too, on an /api path that takes no POST (it was 204 "Allow: POST, OPTIONS" for any /api path).
      ["OPTIONS", "/api/health", "GET, HEAD", readHint("/api/health")],
    ]) {
      const wrong = await fetch(`${server.url}${path}`, { method, headers: { authorization: `Bearer ${operator.token}` } });
      expect(wrong.status, `${method} ${path}`).toBe(405);
      expect(wrong.headers.get("allow")).toBe(allow);
      expect(((await wrong.json()) as { error: { code: string; hint: string } }).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: `${path} takes ${allow}, not ${method}.`, hint });
    }
    const missing = await fetch(`${server.url}/api/sessions/${sid}/nothing`, { method: "POST" });
    expect(missing.status).toBe(404);
    const missingAsked = await fetch(`${server.url}/api/sessions/${sid}/nothing`, { method: "OPTIONS" });
    expect(missingAsked.status).toBe(404);
    expect(((await missingAsked.json()) as { error: { code: string } }).error.code).toBe("APEX_E_NOT_FOUND");
    // A path that takes POST is asked about as before: 204 and what it takes.
    const asked = await fetch(`${server.url}/api/sessions/${sid}/rpc/session.status`, { method: "OPTIONS" });
    expect([asked.status, asked.headers.get("allow")]).toEqual([204, "POST, OPTIONS"]);

    // A session in the URL with escaped slashes: no grant of it exists (401), and no store path is shown.
    for (const escaped of [`${sid}%2F..%2F${sid}`, "..%2F..%2Fprojects", `${sid}%2Fgrants`]) {
      const crafted = await rpc(server.url, escaped, "whoami", operator.token);
      expect(crafted.status, escaped).toBe(401);
      expect(crafted.body.error.code).toBe("APEX_E_UNAUTHORIZED");
      expect(crafted.body.error.message).not.toContain("/sessions/");
    }
    // A token put in the query by mistake is answered, but never logged.
    expect((await fetch(`${server.url}/api/sessions/${sid}/rpc/whoami?token=${operator.token}`, { method: "POST", headers: { authorization: `Bearer ${operator.token}`, "content-type": "application/json" }, body: "{}" })).status).toBe(200);

    // A stream's parameters are checked before it opens: a 400, not a 200 stream that never says anything (or ends in an error).
    for (const [body, code] of [
      [{ "logs.follow": null }, "APEX_E_BAD_INPUT"],
      [{ "events.subscribe": 5 }, "APEX_E_BAD_INPUT"],
      [{ "events.subscribe": { from_seq: "abc" } }, "APEX_E_BAD_INPUT"],
      [{ "memory.watch": { since: -1 } }, "APEX_E_BAD_INPUT"],
      [{ "memory.watch": { glob: "[[" } }, "APEX_E_BAD_GLOB"],
      [{ "events.subscribe": {}, "logs.follow": { agent: 7 } }, "APEX_E_BAD_INPUT"],
    ] as const) {
      const response = await fetch(`${server.url}/api/sessions/${sid}/stream`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${operator.token}` }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      expect(response.status, JSON.stringify(body)).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code, JSON.stringify(body)).toBe(code);
    }

    // logs.follow of an agent with no logs: refused, as logs.read refuses it (it was a stream that never sent anything).
    const noAgent = await fetch(`${server.url}/api/sessions/${sid}/stream`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${operator.token}` }, body: JSON.stringify({ "logs.follow": { agent: "nobody" } }), signal: AbortSignal.timeout(10_000) });
    expect(noAgent.status).toBe(404);
    expect(((await noAgent.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "APEX_E_AGENT_NOT_FOUND", message: expect.stringContaining('"nobody"') });

    // A stream asked as a call: refused at once (it would never answer, and its subscription would outlive the request).
    for (const method of ["events.subscribe", "logs.follow", "memory.watch"]) {
      const started = Date.now();
      const response = await fetch(`${server.url}/api/sessions/${sid}/rpc/${method}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${operator.token}` }, body: "{}", signal: AbortSignal.timeout(30_000) });
      expect(response.status, method).toBe(400);
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain("is a stream");
      expect(Date.now() - started).toBeLessThan(10_000);
    }

    // What the HTTP layer answers by itself has the API's error body too.
    const badEscape = await fetch(`${server.url}/assets/%ff`);
    expect(badEscape.status).toBe(400);
    expect(((await badEscape.json()) as { error: { code: string } }).error.code).toBe("APEX_E_BAD_INPUT");
    const port = Number(new URL(server.url).port);
    const hugeHeader = await rawHttp(port, `GET / HTTP/1.1\r\nHost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`);
    expect(hugeHeader.status).toBe(431);
    expect(JSON.parse(hugeHeader.body).error.code).toBe("APEX_E_TOO_LARGE");
    const notHttp = await rawHttp(port, "GARBAGE\r\n\r\n");
    expect(notHttp.status).toBe(400);
    expect(JSON.parse(notHttp.body).error.code).toBe("APEX_E_BAD_INPUT");

    const log = await server.stop();
    expect(log).toContain(`POST /api/sessions/${sid}/rpc/whoami 200 otto`);
    expect(log).not.toContain(operator.token);
  });
});

/** Sends `text` as it is on a new connection; the reply's status and body, once the server closes. */
function rawHttp(port: number, text: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let reply = "";
    const socket = netConnect(port, "127.0.0.1", () => socket.write(text));
    socket.setEncoding("utf8").on("data", (chunk: string) => (reply += chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0), body: reply.slice(reply.indexOf("\r\n\r\n") + 4) }));
  });
}

describe("apex serve: stopping", () => {
  it("ends on SIGTERM and frees its port even while a client is half-way through sending a request", async () => {
    project = new Project(CONFIG);
    // A serve.json left readable by others (as by an older version): written owner-only all the same.
    const serveFile = join(project.storeDir, "serve.json");
    mkdirSync(project.storeDir, { mode: 0o700 });
    writeFileSync(serveFile, "{}\n", { mode: 0o644 });
    chmodSync(serveFile, 0o644);
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    let slow: Socket | undefined;
    try {
      const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
      await waitFor("serve.json", () => readFileSync(serveFile, "utf8").includes(url));
      expect(statSync(serveFile).mode & 0o777).toBe(0o600);
      const port = Number(new URL(url).port);
      // Headers sent, then 3 bytes of a 100-byte body, and nothing more.
      slow = await new Promise<Socket>((resolve, reject) => {
        const socket = netConnect(port, "127.0.0.1", () => {
          socket.write("POST /api/health HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a");
          resolve(socket);
        });
        socket.on("error", reject);
      });
      slow.on("error", () => {});
      // Read by the server (a request under way), not only sent, when SIGTERM comes.
      await waitFor("the server to read the request's start", () => readByServer(port, slow!.localPort!));
      const stopped = Date.now();
      run.child.kill("SIGTERM");
      const ended = await Promise.race([run.done, new Promise<undefined>((resolve) => setTimeout(resolve, 30_000, undefined))]);
      expect(ended, "apex serve still runs 30 s after SIGTERM").toBeDefined();
      expect(ended!.status, ended!.stderr).toBe(0);
      expect(Date.now() - stopped).toBeLessThan(30_000);
      // The port is free again.
      const again = netServer();
      await new Promise<void>((resolve, reject) => again.once("error", reject).listen(port, "127.0.0.1", resolve));
      await new Promise((resolve) => again.close(resolve));
      expect(existsSync(serveFile)).toBe(false);
    } finally {
      slow?.destroy();
      if (run.child.exitCode === null) run.child.kill("SIGKILL");
      await run.done;
    }
  });
  it("goes on serving once the reader of its log has gone (a script that waited for its first line), and stops as asked", async () => {
    project = new Project(CONFIG);
    mkdirSync(project.storeDir, { mode: 0o700 });
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    try {
      const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
      // Its stderr's reader goes (`apex serve 2>&1 | grep -m1 serving`): every log line after meets a closed pipe (EPIPE).
      await waitFor("the first log line", () => run.errors().includes("serving"));
      run.child.stderr.destroy();
      // Before, the server exited (0) at its next log line, the first request's, serving no more and leaving its record.
      for (let i = 0; i < 3; i++) expect((await fetch(`${url}/api/health`)).status).toBe(200);
      expect(run.child.exitCode).toBeNull();
      run.child.kill("SIGTERM");
      expect((await run.done).status).toBe(0);
      expect(existsSync(join(project.storeDir, "serve.json"))).toBe(false);
    } finally {
      if (run.child.exitCode === null) run.child.kill("SIGKILL");
      await run.done;
    }
  });

  it("stops as asked, removing its record, when SIGTERM comes the instant its address is printed", () => {
    project = new Project(CONFIG);
    mkdirSync(project.storeDir, { mode: 0o700 });
    // Before, the signal handlers were set only after the address was printed: a SIGTERM then
    // ended the process at once, leaving serve.json naming a dead server.
    const stopWhenPrinted = { NODE_OPTIONS: `--import ${join(REPO_ROOT, "test/fixtures/processes/stop-when-printed.mjs")}` };
    const result = project.apex(["serve", "--listen", "127.0.0.1:0", "--json"], { env: stopWhenPrinted, timeout: 30_000 });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(existsSync(join(project.storeDir, "serve.json"))).toBe(false);
  });
});

describe("apex serve: a request while it stops", () => {
  it("is refused with the API's error body (503, APEX_E_RPC, details.connection closing, Retry-After), not fastify's own", async () => {
    project = new Project(CONFIG);
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    let socket: Socket | undefined;
    try {
      const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
      // A request under way when the server is told to stop (its body not all sent): the server waits for it,
      // and a second request sent after it on the same connection arrives while the server closes.
      let reply = "";
      socket = await new Promise<Socket>((resolve, reject) => {
        const opened = netConnect(Number(new URL(url).port), "127.0.0.1", () => resolve(opened));
        opened.on("error", reject);
      });
      socket.setEncoding("utf8").on("data", (chunk: string) => (reply += chunk));
      const closed = new Promise((resolve) => socket!.on("close", resolve));
      socket.write('POST /api/sessions/x/rpc/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{');
      // The server has read the request's start before it is told to stop, and has begun to close (it no longer
      // listens) before the rest comes: each was a fixed wait (0.3 s, 0.5 s) that a loaded machine could outlast.
      const port = Number(new URL(url).port);
      await waitFor("the server to read the request's start", () => readByServer(port, socket!.localPort!));
      run.child.kill("SIGTERM");
      await waitFor("the server to stop listening", () => refusesConnections(port));
      socket.write("}GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      await closed;
      const second = reply.slice(reply.indexOf("HTTP/1.1", 1));
      expect(second).toMatch(/^HTTP\/1\.1 503 /);
      expect(second.toLowerCase()).toContain("retry-after: 1");
      expect(second.toLowerCase()).toContain("connection: close");
      const body = JSON.parse(second.slice(second.indexOf("\r\n\r\n") + 4));
      expect(body.error).toMatchObject({ code: "APEX_E_RPC", details: { connection: "closing", retry_after_s: 1 } });
      expect(body.error.message).toContain("shutting down");
      expect((await run.done).status).toBe(0);
    } finally {
      socket?.destroy();
      if (run.child.exitCode === null) run.child.kill("SIGKILL");
      await run.done;
    }
  });
});

describe("apex serve without a supervisor", () => {
  it("still answers reads of an interrupted session, and refuses what needs the supervisor", async () => {
    project = new Project(CONFIG);
    const ready = project.start();
    const sid = ready.session_id;
    const server = await serve(project);
    const operator = share(project, "otto", "operator");
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project!.status().session?.status === "interrupted");
    const status = remote(project, server.url, sid, operator.token, ["status", "--json"]);
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).session.status).toBe("interrupted");
    expect(remote(project, server.url, sid, operator.token, ["task", "list"]).status).toBe(0);
    // Checkpoints are read from the store too (the checkpoint plugin's methods live in the supervisor).
    const checkpoints = remote(project, server.url, sid, operator.token, ["checkpoint", "list"]);
    expect(checkpoints.status, checkpoints.stderr).toBe(0);
    expect(checkpoints.stdout).toBe(project.apex(["checkpoint", "list"]).stdout);
    const pause = remote(project, server.url, sid, operator.token, ["pause"]);
    expect(pause.status).toBe(4);
    expect(pause.stderr).toContain("APEX_E_SESSION_STATE");
    // A name every object has is no method of the store's writer either: it ran Object's (constructor
    // answered 200 with the params echoed back, hasOwnProperty a 500), as an unknown method is refused.
    const owner = share(project, "olga", "owner");
    // It is unknown (404), as on a running session; a method only a supervisor serves is refused (409).
    for (const method of ["constructor", "toString", "hasOwnProperty", "memory.explode"]) {
      const reply = await rpc(server.url, sid, method, owner.token, { title: "x" });
      expect(reply.status, `${method}: ${JSON.stringify(reply.body)}`).toBe(404);
      expect(reply.body.error).toMatchObject({ code: "APEX_E_NOT_FOUND", details: { unknown_method: method } });
    }
    const stop = await rpc(server.url, sid, "session.stop", owner.token, {});
    expect(stop.status, JSON.stringify(stop.body)).toBe(409);
    expect(stop.body.error).toMatchObject({ code: "APEX_E_SESSION_STATE", details: { needs_supervisor: "session.stop" } });

    // A wrong token, once refused, is refused again without opening the store (while no supervisor
    // runs, each lookup opens it): with the store file swapped for a damaged one, the same token
    // is still a plain 401, by the session's id or a prefix of it, while a token not seen before
    // reaches the store (and its damage). Before, each of them opened the store.
    const wrong = `apx_${operator.token_id}_${"A".repeat(43)}`;
    for (const ref of [sid, sid.slice(0, 8)]) expect((await rpc(server.url, ref, "whoami", wrong)).status).toBe(401);
    const storeFile = join(project.dir, ".apex", "store.mdb");
    renameSync(storeFile, `${storeFile}.kept`);
    try {
      writeFileSync(storeFile, Buffer.alloc(65_536, 7));
      for (const ref of [sid, sid.slice(0, 8)]) {
        const again = await rpc(server.url, ref, "whoami", wrong);
        expect(again.status, JSON.stringify(again.body)).toBe(401);
        expect(again.body.error).toMatchObject({ code: "APEX_E_UNAUTHORIZED", message: "The token is not valid for this session (unknown, revoked or mistyped)." });
      }
      expect((await rpc(server.url, sid, "whoami", `apx_0123456789abcdef_${"B".repeat(43)}`)).body.error.code).toBe("APEX_E_STORE_DAMAGED");
    } finally {
      renameSync(`${storeFile}.kept`, storeFile);
    }
    // Refusals only are remembered: a grant revoked on the host is refused at its very next request.
    const ria = share(project, "ria", "viewer");
    expect((await rpc(server.url, sid, "whoami", ria.token)).status).toBe(200);
    expect(project.apex(["session", "unshare", "current", "ria"]).status).toBe(0);
    expect((await rpc(server.url, sid, "whoami", ria.token)).status).toBe(401);

    // An operator brings it back (`start --continue` of that session); a viewer may not.
    const viewer = share(project, "vera", "viewer");
    const refused = remote(project, server.url, sid, viewer.token, ["start", "--continue", sid]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("session.continue needs operator");
    expect(remote(project, server.url, sid, operator.token, ["start", "--continue", "someone-else"]).status).toBe(2);
    const back = remote(project, server.url, sid, operator.token, ["start", "--continue", sid.slice(0, 8), "--json"]);
    expect(back.status, back.stderr).toBe(0);
    const continued = JSON.parse(back.stdout) as { session_id: string; supervisor_pid: number; continued: boolean };
    expect(continued).toMatchObject({ session_id: sid, continued: true });
    project.remember();
    expect(project.status().session).toMatchObject({ status: "active", supervisor: { pid: continued.supervisor_pid, alive: true } });
    const again = remote(project, server.url, sid, operator.token, ["start", "--continue", sid]);
    expect(again.status).toBe(4);
    expect(again.stderr).toContain("APEX_E_SESSION_ACTIVE");
    expect(project.apex(["session", "history", sid]).stdout).toMatch(/continued.*\[/);
  });
});

describe("the sharing plugin's serve option", () => {
  it("serves the session from its supervisor while it runs", async () => {
    project = new Project(CONFIG.replace("plugins:\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'));
    const sid = project.start().session_id;
    const served = JSON.parse(readFileSync(join(project.storeDir, "serve.json"), "utf8")) as { url: string; pid: number };
    expect(served.pid).toBe(JSON.parse(readFileSync(join(project.storeDir, "supervisor.json"), "utf8")).pid);
    const viewer = share(project, "vera", "viewer");
    expect(viewer.url).toBe(`${served.url}/#session=${sid}&token=${viewer.token}`);
    const status = remote(project, served.url, sid, viewer.token, ["status", "--json"]);
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).session.session_id).toBe(sid);

    // An `apex serve` of the same project, started since, records itself over the supervisor's
    // server, and when it stops, the supervisor's is recorded again (before, none was: invites
    // said the server had stopped while the supervisor's still served).
    const serveFile = join(project.storeDir, "serve.json");
    // The health check names the server's APEX version, which a client compares with its own.
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { version: string }).version;
    expect(await (await fetch(`${served.url}/api/health`)).json()).toEqual({ ok: true, version });
    const first = await serve(project);
    await waitFor("apex serve in serve.json", () => readFileSync(serveFile, "utf8").includes(first.url));
    expect(JSON.parse(readFileSync(serveFile, "utf8")).before).toEqual([expect.objectContaining({ url: served.url, pid: served.pid })]);
    await first.stop();
    expect(JSON.parse(readFileSync(serveFile, "utf8"))).toMatchObject({ url: served.url, pid: served.pid });
    expect(share(project, "wim", "viewer").url.startsWith(`${served.url}/#session=${sid}&token=`)).toBe(true);
    // One started since crashes (kill -9: it puts nothing back): invites name the supervisor's server,
    // which still serves. Before, they said no server ran and named none.
    const crashed = await serve(project);
    await waitFor("apex serve in serve.json", () => readFileSync(serveFile, "utf8").includes(crashed.url));
    process.kill(crashed.pid, "SIGKILL");
    await crashed.stop();
    expect(share(project, "xia", "viewer").url.startsWith(`${served.url}/#session=${sid}&token=`)).toBe(true);

    // Another, started since: the supervisor's stop leaves that record (before, it removed it,
    // and invites fell back to the default port).
    const standalone = await serve(project);
    await waitFor("apex serve in serve.json", () => readFileSync(serveFile, "utf8").includes(standalone.url));
    expect(project.apex(["stop"]).status).toBe(0);
    await expect(fetch(`${served.url}/api/health`)).rejects.toThrow();
    expect(JSON.parse(readFileSync(serveFile, "utf8"))).toMatchObject({ url: standalone.url, pid: standalone.pid });
    const shareEnded = (user: string) => JSON.parse(project!.apex(["session", "share", sid, user, "--json"]).stdout);
    expect(shareEnded("ivo").url.startsWith(`${standalone.url}/#session=${sid}&token=`)).toBe(true);

    // That server crashes (kill -9: it removes nothing): invites no longer name its dead port,
    // they say it is gone and how to start one; the token is printed all the same.
    process.kill(standalone.pid, "SIGKILL");
    await standalone.stop();
    const stale = shareEnded("una") as { url: string | null; connect: string | null; token: string; server?: string; hint?: string };
    expect(stale).toMatchObject({ url: null, connect: null, server: "stopped" });
    expect(stale.hint).toContain(`listened at ${standalone.url} has stopped`);
    expect(stale.hint).toContain("Start `apex serve`");
    const text = project.apex(["session", "share", sid, "uma"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/token {4}apx_/);
    expect(text.stdout).toContain("has stopped");
    expect(text.stdout).not.toContain("#session=");
    expect(text.stdout).not.toContain("apex connect");
  });

  it("answers the stop it is stopped by: an owner's `--remote … stop` through it says the session stopped, exit 0", async () => {
    project = new Project(CONFIG.replace("plugins:\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'));
    const sid = project.start().session_id;
    const served = JSON.parse(readFileSync(join(project.storeDir, "serve.json"), "utf8")) as { url: string };
    const owner = share(project, "olga", "owner");
    // The server closes in its session's onStop, which the supervisor's answer to that stop waits
    // for: it waited for the stop's own request, until its 5 s grace cut the connection, and the
    // client said `closed the connection before answering session.stop (ECONNRESET); whether it was done is not known`, exit 1.
    // (Said by its exit and answer, not by how long it took: a loaded machine takes seconds to start the CLI alone.)
    const stopped = remote(project, served.url, sid, owner.token, ["stop", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ session_id: sid, status: "stopped" });
    expect(project.apex(["session", "history", sid]).stdout).toMatch(/session stopped: stopped by the user {2}\[user:olga\]/);
  });
});

describe("--remote refuses commands that would act on the local project", () => {
  it.each([
    [["session", "validate"], "does not work on a remote session"],
    [["config", "show"], "does not work on a remote session"],
    [["checkpoint", "delete", "x"], "does not work on a remote session"],
    [["session", "export", "x"], "does not work on a remote session"],
    [["start", "--task", "new work"], "start only continues it"],
  ])("apex --remote … %j", (args, message) => {
    const p = new Project(CONFIG);
    try {
      const result = p.apex(["--remote", `127.0.0.1:9/${"a".repeat(8)}`, ...args], { env: { APEX_TOKEN: "x" } });
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(message);
      expect(statSyncOrNull(p.storeDir)).toBeNull();
    } finally {
      p.cleanup();
    }
  });
});

describe("apex --remote … start never acts on the local project", () => {
  it("refuses --force-recovery by name and, without --continue, says start only continues: the local project's interrupted session is neither recovered nor announced as continued", async () => {
    const p = new Project(CONFIG);
    const local = p.start().session_id;
    process.kill(p.status().session!.supervisor!.pid, "SIGKILL");
    await waitFor("the local session interrupted", () => p.status().session?.status === "interrupted");
    const target = `127.0.0.1:9/${"a".repeat(8)}`;
    // It recovered the local session from its checkpoint (a supervisor started here), the server never asked.
    const recovery = p.apex(["--remote", target, "start", "--force-recovery", "latest"], { env: { APEX_TOKEN: "x" } });
    expect(recovery.status, recovery.stdout).toBe(2);
    expect(recovery.stderr).toContain("error[APEX_E_USAGE]: --force-recovery is refused on a remote session");
    expect(recovery.stdout).toBe("");
    // auto_recovery said it continued the local session, then sent that session's id to the server as the one to continue.
    for (const args of [["start"], ["start", "--task", "new work"]]) {
      const started = p.apex(["--remote", target, ...args], { env: { APEX_TOKEN: "x" } });
      expect(started.status).toBe(2);
      expect(started.stderr).toContain("start only continues it");
      expect(started.stderr).not.toContain("auto_recovery");
      expect(started.stderr).not.toContain(local.slice(0, 8));
    }
    expect(p.status().session).toMatchObject({ session_id: local, status: "interrupted" });
  });
});

describe("apex --remote … memory watch with the server not up yet", () => {
  it("waits for it, saying so, whatever it replays, and fails with the server's error once --timeout passes first (exit 1)", async () => {
    const p = new Project(CONFIG);
    try {
      // With --since (or the current values first) it failed at once, unlike a server that went away later.
      // The three watches run side by side: each mostly waits out its --timeout (run one after another, 4.5 s of waiting).
      const watches = [["--since", "0"], ["--changes-only"], []].map((mode) => {
        const started = Date.now();
        const run = p.apexAsync(["--remote", `127.0.0.1:9/${"a".repeat(8)}`, "memory", "watch", "/w/**", "--timeout", "1.5", ...mode], { env: { APEX_TOKEN: `apx_${"0".repeat(16)}_${"A".repeat(43)}` } });
        return run.done.then((result) => ({ result, took: Date.now() - started }));
      });
      for (const { result, took } of await Promise.all(watches)) {
        expect(result.status, result.stderr).toBe(1);
        // What is said of the waiting ends with the --timeout (it said it would give up after 5 min, the watch ending 1.5 s later).
        // (How much is left when it first says so is the machine's load: less on a loaded one, which starts the tries late.)
        const lines = result.stderr.trim().split("\n");
        const first = firstPlan(lines[0], "warning: Cannot reach http://127.0.0.1:9: ECONNREFUSED. Still watching;", "retrying in 1 s, then less and less often, until", 1.5);
        const failed = lines.findIndex((line) => line.startsWith("error["));
        expectWatchEnds(lines.slice(1, failed), "Cannot reach http://127.0.0.1:9: ECONNREFUSED", first);
        expect(lines[failed]).toMatch(/^error\[APEX_E_RPC\]: Cannot reach /);
        expect(result.stderr).not.toContain("5 min");
        expect(took).toBeGreaterThanOrEqual(1400);
      }
    } finally {
      p.cleanup();
    }
  });
});

describe("--remote with --session naming another session", () => {
  it("is refused rather than answered for the remote session (a session it does not know: exit 3, as locally); the remote session's own id is fine", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = await serve(project);
    const viewer = share(project, "vera", "viewer");
    for (const args of [["--session", "other", "status", "--json"], ["task", "list", "--session", "other", "--json"]]) {
      const refused = remote(project, server.url, sid, viewer.token, args);
      expect(refused.status, args.join(" ")).toBe(3);
      expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_NO_SESSION", message: expect.stringContaining('No session "other" among those the grant of') });
      expect(refused.stdout).toBe("");
    }
    const same = remote(project, server.url, sid, viewer.token, ["--session", sid, "status", "--json"]);
    expect(same.status, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout).session.session_id).toBe(sid);
  });
});

function statSyncOrNull(path: string) {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/**
 * Runs argv[1:] on a pseudo-terminal, types $TYPED once the prompt "Token: " shows, and prints
 * {status, screen}: what the terminal showed (echo included), and the exit status.
 */
const TYPE_ON_TERMINAL = `
import json, os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
screen, typed = b"", False
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    screen += chunk
    if not typed and b"Token: " in screen:
        os.write(fd, os.environ["TYPED"].encode())
        typed = True
_, status = os.waitpid(pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "screen": screen.decode("utf8", "replace")}))
`;

describe("apex login and credentials", () => {
  it("keeps the token in a 0600 file that --remote uses", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = await serve(project);
    const viewer = share(project, "vera", "viewer");
    const credentials = join(project.dir, "creds", "credentials.json");
    const hostPort = server.url.replace("http://", "");
    const login = project.apex(["login", `${hostPort}/${sid}`], { env: { APEX_CREDENTIALS: credentials, APEX_TOKEN: viewer.token } });
    expect(login.status, login.stderr).toBe(0);
    expect(statSync(credentials).mode & 0o777).toBe(0o600);
    expect(readFileSync(credentials, "utf8")).toContain(viewer.token);
    const status = project.apex(["--remote", `${hostPort}/${sid}`, "status", "--json"], { env: { APEX_CREDENTIALS: credentials } });
    expect(status.status, status.stderr).toBe(0);
    const none = project.apex(["--remote", `${hostPort}/${sid}`, "status"], { env: { APEX_CREDENTIALS: join(project.dir, "none.json") } });
    // No token at all is a usage error (exit 2), as for `apex login`: nothing was sent, no server refused it.
    expect(none.status).toBe(2);
    expect(none.stderr).toContain(`apex login ${hostPort}`);
    const wrong = project.apex(["login", hostPort], { env: { APEX_CREDENTIALS: credentials, APEX_TOKEN: "hunter2" } });
    expect(wrong.status).toBe(2);
    // HOST:SESSION with an id that starts with a digit is a session to check, not a port that cannot be read.
    for (const target of ["127.0.0.1:0f238b37-353f-4093-982e-f93db4268018", "127.0.0.1:9abc"]) {
      const digitFirst = project.apex(["login", target, "--json"], { env: { APEX_CREDENTIALS: credentials, APEX_TOKEN: viewer.token } });
      expect(digitFirst.status, digitFirst.stderr).not.toBe(0);
      expect(JSON.parse(digitFirst.stderr).error.code, target).not.toBe("APEX_E_USAGE");
    }
    expect(project.apex(["login", "127.0.0.1:7433", "--json"], { env: { APEX_CREDENTIALS: join(project.dir, "other.json"), APEX_TOKEN: viewer.token } }).status).toBe(0);
    // APEX_CREDENTIALS naming a directory: a usage error, and no temporary copy of the token left beside it.
    const directory = join(project.dir, "creds");
    const intoDirectory = project.apex(["login", hostPort, "--json"], { env: { APEX_CREDENTIALS: directory, APEX_TOKEN: viewer.token } });
    expect(intoDirectory.status, intoDirectory.stderr).toBe(2);
    expect(JSON.parse(intoDirectory.stderr).error.message).toContain("is a directory");
    expect(readdirSync(project.dir).filter((name) => name.endsWith(".tmp"))).toEqual([]);

    // Typed on a terminal, the token is not echoed (as a password prompt): the screen shows the prompt only.
    const typed = join(project.dir, "typed.json");
    const terminal = JSON.parse(
      execFileSync("python3", ["-c", TYPE_ON_TERMINAL, process.execPath, join(REPO_ROOT, "bin", "apex.js"), "login", `${hostPort}/${sid}`], {
        cwd: project.dir,
        env: { ...process.env, APEX_CREDENTIALS: typed, APEX_TOKEN: "", TYPED: `${viewer.token}\r` },
        encoding: "utf8",
        timeout: 30_000,
      }),
    ) as { status: number; screen: string };
    expect(terminal.status, terminal.screen).toBe(0);
    expect(terminal.screen).toContain("Token: ");
    expect(terminal.screen).toContain("Saved the token");
    expect(terminal.screen).not.toContain(viewer.token.slice(4, 24));
    expect(readFileSync(typed, "utf8")).toContain(viewer.token);
  });

  it("refuses a credentials file it cannot read rather than overwrite the tokens in it, and keeps a looser file's tokens at 0600", () => {
    project = new Project(CONFIG);
    const credentials = join(project.dir, "credentials.json");
    const token = `apx_0123456789abcdef_${"A".repeat(43)}`;
    const env = { APEX_CREDENTIALS: credentials, APEX_TOKEN: token };
    for (const damaged of ['{"version": 1, "hosts": {"build-box:7433": {"token": "apx_', "[]", '{"hosts": null}']) {
      writeFileSync(credentials, damaged);
      const login = project.apex(["login", "127.0.0.1:7433", "--json"], { env });
      expect(login.status, `${damaged}: ${login.stderr}`).toBe(2);
      const error = JSON.parse(login.stderr).error as { code: string; message: string };
      expect(error.code).toBe("APEX_E_CONFIG");
      expect(error.message).toContain(credentials);
      expect(readFileSync(credentials, "utf8")).toBe(damaged);
      // Reading it for a command is the same error, not "no token".
      const remoteStatus = project.apex(["--remote", "127.0.0.1:9/3f2a9c1e", "status", "--json"], { env: { APEX_CREDENTIALS: credentials } });
      expect(remoteStatus.status, remoteStatus.stderr).toBe(2);
      expect(JSON.parse(remoteStatus.stderr).error.code).toBe("APEX_E_CONFIG");
    }
    // A file made readable by others: rewritten 0600 at the next login, earlier tokens kept.
    writeFileSync(credentials, JSON.stringify({ version: 1, hosts: { "build-box:7433": { token, saved_at: "2026-12-01T00:00:00.000Z" } } }), { mode: 0o644 });
    chmodSync(credentials, 0o644);
    expect(project.apex(["login", "127.0.0.1:7433", "--json"], { env }).status).toBe(0);
    expect(statSync(credentials).mode & 0o777).toBe(0o600);
    expect(Object.keys(JSON.parse(readFileSync(credentials, "utf8")).hosts).sort()).toEqual(["127.0.0.1:7433", "build-box:7433"]);
    expect(readdirSync(project.dir).filter((name) => name.endsWith(".tmp"))).toEqual([]);

    // The default place: $XDG_CONFIG_HOME/apex, owner-only (0700) even when it was made looser.
    const config = join(project.dir, "xdg");
    mkdirSync(join(config, "apex"), { recursive: true, mode: 0o755 });
    chmodSync(join(config, "apex"), 0o755);
    expect(project.apex(["login", "127.0.0.1:7433", "--json"], { env: { XDG_CONFIG_HOME: config, APEX_TOKEN: token } }).status).toBe(0);
    expect(statSync(join(config, "apex")).mode & 0o777).toBe(0o700);
    expect(statSync(join(config, "apex", "credentials.json")).mode & 0o777).toBe(0o600);
  });
});
