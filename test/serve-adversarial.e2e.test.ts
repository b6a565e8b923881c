// `apex serve` as a hostile client meets it: real HTTP on loopback against a real server (the built
// CLI), real grants of one session of a project that has others. What a grant may not do is refused
// with a stable code and writes nothing; what it may not see is not told, not even whether it exists;
// crafted input is a 4xx, never an internal error, and no answer carries the server's paths or a token.
import { request as httpRequest } from "node:http";
import { connect as netConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { ok, rpc, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

const stops: Array<() => Promise<unknown>> = [];
let p: Project;
let url: string;
/** The grant's session (running), an ended session of the project, and a branch of it. */
let sid: string, other: string;
let owner: { token: string }, operator: { token: string }, viewer: { token: string }, otherOwner: { token: string };

beforeAll(async () => {
  p = new Project(CONFIG, "apex-serve-adversarial-");
  other = p.start(["--task", "other: an unrelated secret"]).session_id;
  ok(p.apex(["memory", "set", "/notes/other", "1"]));
  ok(p.apex(["checkpoint", "create", "other's work"]));
  ok(p.apex(["session", "branch", "latest", "secret-branch"]));
  ok(p.apex(["stop"]));
  sid = p.start(["--task", "main"]).session_id;
  ok(p.apex(["checkpoint", "create", "main's work"]));
  url = await serve(p, stops);
  owner = share(p, sid, "olga", "owner");
  operator = share(p, sid, "otto", "operator");
  viewer = share(p, sid, "vera", "viewer");
  otherOwner = share(p, other, "olga", "owner");
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

/**
 * What a write would change: every memory entry's path (APEX's records included: events, tasks,
 * checkpoints, grants), and each value but a grant's (its last use is recorded as it is used).
 */
function written(): string {
  const entries = JSON.parse(ok(p.apex(["memory", "query", "/**", "--json"]))) as Record<string, unknown>;
  return JSON.stringify(Object.entries(entries).map(([path, value]) => (/\/grants\//.test(path) ? [path] : [path, value])));
}

/**
 * A POST of the API from a loopback address of its own (127.0.0.N): each is a client of its own to
 * the server, whose failed logins (3 free, then slowed down) are counted per address.
 */
function postFrom(address: string, path: string, token: string | undefined, body: unknown, raw?: { type: string }): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = httpRequest({ host: target.hostname, port: target.port, path, method: "POST", localAddress: address, headers: { "content-type": raw?.type ?? "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) } }, (response) => {
      let text = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
      response.on("end", () => resolve({ status: response.statusCode!, body: JSON.parse(text) }));
    });
    request.on("error", reject);
    request.end(raw ? (body as string) : JSON.stringify(body));
  });
}

/** Whether an answer shows the server's paths or a token. */
function leaks(text: string): string | undefined {
  return [p.dir, p.storeDir, "token_sha256", owner.token, operator.token, viewer.token, otherOwner.token].find((secret) => text.includes(secret));
}

describe("apex serve: a checkpoint reference through a grant", () => {
  it("tells nothing of other sessions: one that exists and one that does not are answered alike (404), nothing deleted", async () => {
    const checkpoints = ok(p.apex(["checkpoint", "list", "--session", other, "--json"])) + ok(p.apex(["checkpoint", "list", "--json"]));
    // Pairs: a reference to what exists in another session, and the same kind of reference to nothing.
    // The store's answers told them apart: `No session "nonesuch" in this project`, `"secret-branch" is a session, not a checkpoint`.
    const refs = ["secret-branch/latest", "nonesuch/latest", "secret-branch", "nonesuch", other.slice(0, 8), "abcd1234", `${other.slice(0, 8)}/checkpoint-001`, "abcd1234/checkpoint-001", other, "0000aaaa-0000-4000-8000-000000000000", "checkpoint-999"];
    for (const method of ["checkpoint.show", "checkpoint.diff", "checkpoint.delete", "checkpoint.pin"]) {
      for (const ref of refs) {
        const reply = await rpc(url, sid, method, owner.token, method === "checkpoint.diff" ? { from: ref, to: "latest" } : { ref });
        expect(reply.status, `${method} ${ref}: ${JSON.stringify(reply.body)}`).toBe(404);
        expect(reply.body.error, `${method} ${ref}`).toEqual({ code: "APEX_E_CHECKPOINT_NOT_FOUND", message: `No checkpoint ${JSON.stringify(ref)} in this session.`, hint: "`apex checkpoint list` shows the session's checkpoints." });
      }
    }
    expect(ok(p.apex(["checkpoint", "list", "--session", other, "--json"])) + ok(p.apex(["checkpoint", "list", "--json"]))).toBe(checkpoints);
    // The grant's own checkpoints are found as before.
    expect((await rpc(url, sid, "checkpoint.show", viewer.token, { ref: "latest" })).status).toBe(200);
  });
});

describe("apex serve: crafted parameters", () => {
  it("memory.import of entries that are no objects is a bad request (400), not an internal error, and writes nothing", async () => {
    const before = written();
    for (const entries of [[null], [5], [[]], ["/a"], [{ path: "/ok", value: 1 }, null]]) {
      const reply = await rpc(url, sid, "memory.import", owner.token, { entries });
      expect(reply.status, `${JSON.stringify(entries)}: ${JSON.stringify(reply.body)}`).toBe(400);
      expect(reply.body.error.code).toBe("APEX_E_BAD_INPUT");
    }
    expect(written()).toBe(before);
  });

  it("memory.get of a path that is none is refused as locally (400 APEX_E_BAD_PATH), not answered as an empty value", async () => {
    for (const path of [`/sessions/./${other}`, `/sessions/${other}/`, `/sessions/history/${other}/`, `/sessions/${sid}/./grants`]) {
      const reply = await rpc(url, sid, "memory.get", viewer.token, { path });
      expect(reply.status, `${path}: ${JSON.stringify(reply.body)}`).toBe(400);
      expect(reply.body.error.code).toBe("APEX_E_BAD_PATH");
    }
    // A valid path of another session's records: hidden as before (nothing there, as far as the grant can tell).
    expect(await rpc(url, sid, "memory.get", viewer.token, { path: `/sessions/${other}` })).toEqual({ status: 200, body: {} });
  });

  it("a heartbeat asked for beyond what a timer holds does not make the supervisor beat every millisecond", async () => {
    const reply = await rpc(url, sid, "task.add", operator.token, { title: "beats", heartbeat_ms: 1e10 });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    // Node takes a timer past 2^31-1 ms as 1 ms, and says so on the supervisor's stderr (its log).
    expect(p.supervisorLog()).not.toContain("TimeoutOverflowWarning");
  });

  it("a glob of many wildcards is answered at once: the regex it was matched by backtracked for ever on a long path, holding the supervisor", async () => {
    const deep = `/notes/${"a/".repeat(200)}${"a".repeat(300)}`;
    ok(p.apex(["memory", "set", deep, "1"]));
    for (const glob of [`/notes/${"**/".repeat(12)}x`, `/notes/${"a/".repeat(200)}${"*a".repeat(14)}b`, `/notes/**${"/**".repeat(40)}/z`]) {
      const started = Date.now();
      const reply = await fetch(`${url}/api/sessions/${sid}/rpc/memory.query`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${viewer.token}` }, body: JSON.stringify({ glob }), signal: AbortSignal.timeout(20_000) });
      expect(reply.status).toBe(200);
      expect(await reply.json()).toEqual({ result: [] });
      expect(Date.now() - started, glob).toBeLessThan(5_000);
    }
    // What those wildcards do match is found as before.
    const found = await rpc(url, sid, "memory.query", viewer.token, { glob: `/notes/**/**/*${"a".repeat(300)}` });
    expect(found.body.result).toEqual([{ path: deep, value: 1 }]);
    ok(p.apex(["memory", "delete", deep]));
  });

  it("an owner's session.stop with a grace beyond an hour, negative or of another type is refused (400) and the session runs on", async () => {
    for (const grace_ms of [1e12, 3_600_001, -1, "600000", true]) {
      const reply = await rpc(url, sid, "session.stop", owner.token, { grace_ms });
      expect(reply, JSON.stringify(grace_ms)).toMatchObject({ status: 400, body: { error: { code: "APEX_E_BAD_INPUT" } } });
      expect(reply.body.error.message).toContain("grace_ms");
    }
    expect((await rpc(url, sid, "session.status", owner.token)).body.result.session).toMatchObject({ session_id: sid, status: "active" });
  });

  it("of every type where another is expected: a 4xx with an APEX error, never an internal error, nothing leaked", async () => {
    const methods = ((await rpc(url, sid, "hello", owner.token)).body.result.methods as string[]).filter((method) => !["session.stop", "session.pause"].includes(method));
    const bodies: unknown[] = [{ ref: {} }, { ref: 5 }, { path: 5 }, { path: {} }, { glob: 7 }, { limit: "x" }, { limit: -1 }, { user: 5, role: [] }, { token_id: {} }, { source: {} }, { from: 1, to: [] }, { name: [], args: "x" }, { name: "session report", args: [{}] }, { name: "session report", options: [] }, { id: {} }, { entries: "x" }, { entries: [null] }, { session: {} }, { type: 5 }, { last: "x" }, { expires_in_s: "x" }, { thread_id: {}, checkpoint_ns: 5 }];
    const failures: string[] = [];
    for (const method of methods) {
      // A method's bodies side by side (each is refused, or does what it says to the grant's own session).
      await Promise.all(
        bodies.map(async (body) => {
          const reply = await rpc(url, sid, method, owner.token, body);
          const text = JSON.stringify(reply.body);
          if (reply.status >= 500 || (reply.status !== 200 && !/^APEX_E_/.test(reply.body.error?.code)) || leaks(text)) failures.push(`${method} ${JSON.stringify(body)}: ${reply.status} ${text.slice(0, 200)}`);
        }),
      );
    }
    expect(failures).toEqual([]);
  });
});

describe("apex serve: a grant's reach", () => {
  it("a viewer and an operator are refused every method above their role (403, or 404 for none), and nothing is written", async () => {
    const methods = (await rpc(url, sid, "hello", owner.token)).body.result.methods as string[];
    const viewerMay = ["hello", "whoami", "session.status", "session.list", "session.history", "session.tree", "agent.list", "task.list", "task.get", "milestone.list", "events.list", "events.subscribe", "memory.get", "memory.query", "memory.page", "memory.changes", "checkpoint.list", "checkpoint.show", "checkpoint.diff", "logs.read"];
    const operatorMay = [...viewerMay, "session.pause", "session.resume", "checkpoint.create", "task.add", "task.reopen", "memory.set", "session.continue"];
    const before = written();
    for (const [who, token, may] of [["viewer", viewer.token, viewerMay], ["operator", operator.token, operatorMay]] as const) {
      for (const method of methods.filter((name) => !may.includes(name))) {
        // Parameters that would act, were it allowed: the grant's own session, a plugin command it could run.
        const body = method === "plugin.command" ? { name: "session report", args: [] } : method === "memory.delete" ? { path: "/notes/other" } : method === "share.create" ? { user: "mallory", role: "owner" } : {};
        const reply = await rpc(url, sid, method, token, body);
        expect(reply.status, `${who} ${method}: ${JSON.stringify(reply.body)}`).toBe(403);
        expect(reply.body.error.code).toBe("APEX_E_FORBIDDEN");
      }
    }
    expect(written()).toBe(before);
  });

  it("names of methods crafted to pass for another, or for an object's own key, are unknown (404) to an owner", async () => {
    for (const method of ["__proto__", "constructor", "toString", "hasOwnProperty", "share.create%00", "Share.Create", "%C5%BFhare.create", "share.authenticate%20", "..%2Fshare.create", "share.touch", "session.connections"]) {
      const reply = await rpc(url, sid, method, owner.token, {});
      expect(reply.status, `${method}: ${JSON.stringify(reply.body)}`).toBe(404);
      expect(reply.body.error.code).toBe("APEX_E_NOT_FOUND");
    }
  });

  it("another session's token, or a session ref crafted to reach one, is refused (401) on calls and streams alike", async () => {
    const refs = [other, other.slice(0, 8), "secret-branch", `${sid}%00`, `${sid}.`, "%E2%80%8B" + sid, `${sid.slice(0, -1)}%D0%B0`];
    for (const [index, ref] of refs.entries()) {
      const reply = await postFrom(`127.0.0.${10 + index}`, `/api/sessions/${ref}/rpc/whoami`, owner.token, {});
      expect(reply.status, `${ref}: ${JSON.stringify(reply.body)}`).toBe(401);
      expect(reply.body.error.code).toBe("APEX_E_UNAUTHORIZED");
    }
    const crossed = await postFrom("127.0.0.30", `/api/sessions/${sid}/rpc/whoami`, otherOwner.token, {});
    expect([crossed.status, crossed.body.error.code]).toEqual([401, "APEX_E_UNAUTHORIZED"]);
    for (const token of [otherOwner.token, undefined]) {
      const stream = await postFrom("127.0.0.31", `/api/sessions/${sid}/stream`, token, { "events.subscribe": {} });
      expect([stream.status, stream.body.error.code]).toEqual([401, "APEX_E_UNAUTHORIZED"]);
    }
    // The grant's own session by any name it has is the grant's.
    for (const ref of ["current", sid.slice(0, 8), sid.toUpperCase()]) expect((await rpc(url, ref, "whoami", viewer.token, {})).body.result).toMatchObject({ session_id: sid, role: "viewer" });
  });

  it("is looked at before the request's body: without a valid token, a body is neither read nor answered about (401)", async () => {
    const bodies: Array<[string, string]> = [
      ['{"path": "/a", "value": ', "application/json"],
      [`{"path": "/a", "value": ${"[".repeat(100_000)}${"]".repeat(100_000)}}`, "application/json"],
      ['{"path": "/a", "value": {"__proto__": {}}}', "application/json"],
      ['{"path": "/a"}', "text/plain"],
      [`{"path": "/a", "value": "${"x".repeat(2 * 1024 * 1024)}"}`, "application/json"],
    ];
    for (const [index, [body, type]] of bodies.entries()) {
      for (const [at, token] of [[40, undefined], [50, `apx_0123456789abcdef_${"A".repeat(43)}`], [60, otherOwner.token]] as const) {
        for (const path of [`/api/sessions/${sid}/rpc/memory.set`, `/api/sessions/${sid}/stream`]) {
          const reply = await postFrom(`127.0.0.${at + index}`, path, token, body, { type });
          expect(reply.status, `${path} ${body.slice(0, 40)} (${type}, ${token ? "a wrong token" : "no token"}): ${JSON.stringify(reply.body)}`).toBe(401);
          expect(reply.body.error.code).toBe("APEX_E_UNAUTHORIZED");
        }
      }
    }
    // With a valid token, the body is answered about as before.
    const malformed = await postFrom("127.0.0.70", `/api/sessions/${sid}/rpc/memory.set`, operator.token, bodies[0]![0], { type: "application/json" });
    expect([malformed.status, malformed.body.error.code]).toEqual([400, "APEX_E_BAD_JSON"]);
  });

  it("holds at most 16 streams however many are asked for at once (the rest 429), and frees them as they close", async () => {
    const grant = share(p, sid, "sam", "viewer");
    const aborts = Array.from({ length: 40 }, () => new AbortController());
    const replies = await Promise.all(aborts.map((abort) => fetch(`${url}/api/sessions/${sid}/stream`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${grant.token}` }, body: JSON.stringify({ "events.subscribe": {} }), signal: abort.signal })));
    const statuses = replies.map((reply) => reply.status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(16);
    expect(statuses.filter((status) => status === 429)).toHaveLength(24);
    for (const abort of aborts) abort.abort();
    await waitFor("the streams closed", async () => (await fetch(`${url}/api/sessions/${sid}/stream`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${grant.token}` }, body: JSON.stringify({ "events.subscribe": {} }), signal: AbortSignal.timeout(5000) }).then((reply) => (reply.status === 200 ? (reply.body?.cancel(), true) : false))));
  });

  it("is never upgraded to another protocol: a WebSocket handshake on the stream is refused (no 101)", async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      let text = "";
      const socket = netConnect(Number(new URL(url).port), "127.0.0.1", () =>
        socket.write(`GET /api/sessions/${sid}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${viewer.token}\r\n\r\n`),
      );
      socket.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
        if (text.includes("\r\n\r\n")) socket.destroy();
      });
      socket.on("error", reject).on("close", () => resolve(text));
    });
    expect(reply).not.toMatch(/^HTTP\/1\.1 101/);
  });
});

describe("apex serve: the dashboard", () => {
  it("is served to anyone (it holds no data) but never inside another site's frame, and its file names reach no other file", async () => {
    for (const path of ["/", "/assets/app.js", "/assets/uplot.css"]) {
      const page = await fetch(`${url}${path}`);
      expect(page.status, path).toBe(200);
      expect(page.headers.get("content-security-policy"), path).toContain("frame-ancestors 'none'");
      expect(page.headers.get("x-frame-options"), path).toBe("DENY");
    }
    for (const file of ["..%2Fserver.js", "%2e%2e%2f%2e%2e%2fpackage.json", "..%252Fapp.js", "app.js%00", ".htaccess", "__proto__", "constructor", "%EF%BC%8E%EF%BC%8E%EF%BC%8Fapp.js"]) {
      const reply = await fetch(`${url}/assets/${file}`);
      const text = await reply.text();
      expect(reply.status, `${file}: ${text}`).toBeGreaterThanOrEqual(400);
      expect(reply.status, file).toBeLessThan(500);
      expect(leaks(text), file).toBeUndefined();
    }
  });
});
