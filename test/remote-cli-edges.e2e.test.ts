// `apex --remote HOST/SESSION …` as a user meets it: `apex milestone` (a command of its own, which
// the list of remote commands named as `task milestone`), memory writes to APEX's records (refused
// through a grant whatever --force says: the refusal's hint said to add --force), and
// `session share|unshare --json`, which name the session beside its id; `logs` of a session
// whose agents never ran; a refused token saved for another session; expired grants in
// `session shares`; `start --continue`'s next commands; and `memory watch` through a
// supervisor's own server (sharing.serve), which ends with its session, even when the network
// to it was away as it stopped (a relay in this process, cut and restored). A real `apex serve` on
// loopback in front of a live session; the built CLI.
import { readFileSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { ok, remote, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

let p: Project;
let url: string;
let sid: string;
let owner: string, viewer: string;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  sid = p.start().session_id;
  ok(p.apex(["checkpoint", "create", "base"]));
  url = await serve(p, stops);
  owner = share(p, "current", "olga", "owner").token;
  viewer = share(p, "current", "vera", "viewer").token;
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

describe("apex --remote", () => {
  it("records and lists milestones, as locally (it was refused as a command that does not work remotely)", () => {
    const recorded = remote(p, url, sid, owner, ["milestone", "login works"]);
    expect(recorded.status, recorded.stderr).toBe(0);
    expect(recorded.stdout).toBe("milestone 1: login works\n");
    const listed = JSON.parse(ok(remote(p, url, sid, viewer, ["milestone", "--json"]))) as Array<{ n: number; text: string; by: string }>;
    expect(listed.map(({ n, text, by }) => ({ n, text, by }))).toEqual([{ n: 1, text: "login works", by: "user:olga" }]);
    expect(JSON.parse(ok(p.apex(["milestone", "--json"])))).toEqual(listed);
    // A viewer reads them and records none.
    const refused = remote(p, url, sid, viewer, ["milestone", "not mine"]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("error[APEX_E_FORBIDDEN]");
    expect(JSON.parse(ok(p.apex(["milestone", "--json"])))).toHaveLength(1);

    // The list of remote commands names it as the command it is (it said `task …|milestone`, which is no command).
    const other = remote(p, url, sid, owner, ["config", "show"]);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/Remote commands: [^\n]*, milestone, /);
    expect(other.stderr).not.toContain("reopen|milestone");
  });

  it("refuses a memory write to APEX's records the same way with and without --force, with no hint to add --force, writing nothing", () => {
    const file = join(p.dir, "records.json");
    writeFileSync(file, JSON.stringify({ "/notes/fine": 1, "/projects/config": {} }));
    const writes: string[][] = [
      ["memory", "set", `/sessions/${sid}/status`, '"stopped"'],
      ["memory", "delete", "/sessions/current"],
      ["memory", "import", file],
    ];
    for (const write of writes) {
      for (const args of [write, [...write, "--force"]]) {
        const refused = remote(p, url, sid, owner, [...args, "--json"]);
        expect(refused.status, args.join(" ")).toBe(4);
        const { error } = JSON.parse(refused.stderr) as { error: { code: string; message: string; hint: string } };
        expect(error.code, args.join(" ")).toBe("APEX_E_FORBIDDEN");
        expect(error.message).toContain("is refused through apex serve");
        expect(error.hint).not.toContain("--force");
      }
    }
    expect(JSON.parse(ok(p.apex(["status", "--json"]))).session.status).toBe("active");
    expect(JSON.parse(ok(p.apex(["memory", "show", "/sessions/current", "--json"]))).value).toBeTruthy();
    expect(p.apex(["memory", "show", "/notes/fine"]).status).toBe(3);
  });

  it("session share and unshare --json name the session beside its id, a branch by its name", () => {
    ok(p.apex(["session", "branch", "latest", "feature"]));
    const branch = JSON.parse(ok(p.apex(["session", "share", "feature", "fay", "--json"]))) as { session_id: string; name: string | null };
    expect(branch.name).toBe("feature");
    expect(branch.session_id).not.toBe(sid);
    const revoked = JSON.parse(ok(p.apex(["session", "unshare", "feature", "fay", "--json"]))) as { session_id: string; name: string | null };
    expect(revoked).toMatchObject({ session_id: branch.session_id, name: "feature", revoked: 1 });

    const plain = JSON.parse(ok(p.apex(["session", "share", "current", "pat", "--json"]))) as Record<string, unknown>;
    expect(plain).toMatchObject({ session_id: sid, name: null, user: "pat" });
    // Through an owner's grant too.
    const made = JSON.parse(ok(remote(p, url, sid, owner, ["session", "share", "current", "quinn", "--json"]))) as Record<string, unknown>;
    expect(made).toMatchObject({ session_id: sid, name: null, user: "quinn", via_token_id: expect.any(String) });
  });

  it("logs of a session whose agents never ran (a branch not started) is APEX_E_NO_SESSION, exit 3, as locally, with -f too (it printed nothing, exit 0, and -f waited for ever)", () => {
    ok(p.apex(["session", "branch", "latest", "idle"]));
    const feature = JSON.parse(ok(p.apex(["session", "list", "--json"]))).find((session: { name: string | null }) => session.name === "idle") as { session_id: string };
    const local = p.apex(["logs", "--session", "idle", "--json"]);
    expect(local.status).toBe(3);
    const { token } = share(p, "idle", "lou", "viewer");
    for (const args of [["logs", "--json"], ["logs", "-f", "--json"]]) {
      const refused = remote(p, url, feature.session_id, token, args);
      expect(refused.status, args.join(" ")).toBe(3);
      expect(refused.stdout).toBe("");
      // Its hint's `apex session list` reaches the remote session's server.
      const expected = JSON.parse(local.stderr).error as { hint: string };
      const target = `${url.replace(/^http:\/\//, "")}/${feature.session_id}`;
      expect(JSON.parse(refused.stderr).error).toEqual({ ...expected, hint: expected.hint.replace("`apex session list`", `\`apex --remote ${target} session list\``), details: { session_id: feature.session_id } });
    }
    // A session that ran has its logs, as ever.
    expect(ok(remote(p, url, sid, viewer, ["logs", "-n", "1", "--json"])).trim().split("\n").length).toBeGreaterThan(0);
  });

  it("a token saved for another session of the host, refused, has a hint saying so and the apex login that saves this session's", () => {
    ok(p.apex(["session", "branch", "latest", "saved"]));
    const credentials = { APEX_CREDENTIALS: join(p.dir, "credentials.json") };
    const host = url.replace(/^http:\/\//, "");
    const { token } = share(p, "saved", "sam", "viewer");
    writeFileSync(join(p.dir, "token.txt"), `${token}\n`);
    const login = p.apex(["login", `${host}/saved`, "--token-file", join(p.dir, "token.txt")], { env: credentials });
    expect(login.status, login.stderr).toBe(0);
    expect(JSON.parse(ok(p.apex(["--remote", `${host}/saved`, "status", "--json"], { env: credentials }))).session.name).toBe("saved");
    // The host's last saved token is sent for a session with none of its own: refused, and the hint said to ask for an invite.
    const refused = p.apex(["--remote", `${host}/${sid}`, "status", "--json"], { env: credentials });
    expect(refused.status).toBe(4);
    const { error } = JSON.parse(refused.stderr) as { error: { code: string; hint: string } };
    expect(error.code).toBe("APEX_E_UNAUTHORIZED");
    expect(error.hint).toBe(`The token sent is the one saved for session saved of ${host}; none is saved for ${sid}. Save its own with \`apex login ${host}/${sid}\`, or give --token-file FILE or APEX_TOKEN.`);
    // A token given is refused as it was.
    const given = p.apex(["--remote", `${host}/${sid}`, "status", "--json"], { env: { ...credentials, APEX_TOKEN: token } });
    expect(JSON.parse(given.stderr).error.hint).toBe("Ask the session's owner for an invite: `apex session share SESSION USER`.");
  });

  it("session shares says which grants have expired (they are listed until revoked, their tokens refused)", async () => {
    const short = JSON.parse(ok(p.apex(["session", "share", "current", "eve", "--expires", "1s", "--json"]))) as { expires_at: string };
    ok(p.apex(["session", "share", "current", "lasting", "--expires", "7d"]));
    await waitFor("eve's grant to expire", () => Date.now() > Date.parse(short.expires_at) || undefined);
    const rows = ok(p.apex(["session", "shares"])).split("\n");
    expect(rows.find((row) => row.startsWith("eve "))).toContain(`${short.expires_at} (expired)`);
    expect(rows.find((row) => row.startsWith("lasting "))).not.toContain("expired");
    // --json as it was: the time alone.
    expect((JSON.parse(ok(p.apex(["session", "shares", "--json"]))) as Array<{ user: string; expires_at: string }>).find((grant) => grant.user === "eve")!.expires_at).toBe(short.expires_at);
  });

  it("start --continue names, as the next commands, those that reach the remote session (apex status read the local project)", () => {
    ok(remote(p, url, sid, owner, ["stop"]));
    const continued = remote(p, url, sid, owner, ["start", "--continue", sid]);
    expect(continued.status, continued.stderr).toBe(0);
    const target = `${url.replace(/^http:\/\//, "")}/${sid}`;
    expect(continued.stdout.trim().split("\n").at(-1)).toBe(`Next: apex --remote ${target} status · apex --remote ${target} logs -f · apex --remote ${target} pause · apex --remote ${target} stop`);
  });
});

describe("apex --remote memory watch through a supervisor's own server (sharing.serve)", () => {
  it("ends (exit 0) once the session stops, with the changes it made up to its end (it retried the server gone with it for ever)", async () => {
    const own = new Project(CONFIG.replace("plugins:\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'));
    try {
      const session = own.start().session_id;
      const { url } = JSON.parse(readFileSync(join(own.storeDir, "serve.json"), "utf8")) as { url: string };
      const { token } = share(own, "current", "wanda", "viewer");
      ok(own.apex(["memory", "set", "/notes/first", "1"]));
      const watch = own.apexAsync(["--remote", `${url.replace("http://", "")}/${session}`, "memory", "watch", "/notes/**", "--json", "--timeout", "30s"], { env: { APEX_TOKEN: token } });
      try {
        await waitFor("the watch to print the current value", () => watch.output().includes('"/notes/first"'));
        ok(own.apex(["memory", "set", "/notes/last", "2"]));
        ok(own.apex(["stop"]));
        const ended = await watch.done;
        expect(ended.status, ended.stderr).toBe(0);
        expect(ended.stderr).toContain("The session has ended: its memory changes no more, so the watch ends.");
        expect(ended.stderr).not.toContain("Still watching");
        const seen = ended.stdout.trim().split("\n").map((line) => JSON.parse(line) as { kind: string; path: string });
        expect(seen.map(({ kind, path }) => `${kind} ${path}`)).toEqual(["current /notes/first", "put /notes/last"]);
      } finally {
        if (watch.child.exitCode === null) watch.child.kill("SIGINT");
        await watch.done;
      }
    } finally {
      own.cleanup();
    }
  });

  it("reached again only once the server has gone with its session, ends with APEX_E_RPC saying so (exit 1) after refusals for 10 s (it retried for ever)", async () => {
    const own = new Project(CONFIG.replace("plugins:\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'));
    const relay = new Relay();
    try {
      const session = own.start().session_id;
      const { url } = JSON.parse(readFileSync(join(own.storeDir, "serve.json"), "utf8")) as { url: string };
      const { token } = share(own, "current", "wendy", "viewer");
      ok(own.apex(["memory", "set", "/notes/first", "1"]));
      const port = await relay.open(Number(new URL(url).port));
      const target = `127.0.0.1:${port}/${session}`;
      const watch = own.apexAsync(["--remote", target, "memory", "watch", "/notes/**", "--json", "--timeout", "45s"], { env: { APEX_TOKEN: token } });
      try {
        await waitFor("the watch to print the current value", () => watch.output().includes('"/notes/first"'));
        // A short cut while the session runs is waited out, as ever: nothing is missed.
        await relay.cut();
        await waitFor("the watch to retry", () => watch.errors().includes("Still watching"));
        ok(own.apex(["memory", "set", "/notes/during", "2"]));
        await relay.open(Number(new URL(url).port), port);
        // (stderr and stdout are two pipes: what the watch says on one can reach this process after what it prints on the other)
        await waitFor("the watch to print the change made meanwhile", () => watch.output().includes('"/notes/during"') && watch.errors().includes("is reachable again"));
        // Cut again, and the session stops meanwhile: its server, told of no poller, closes with it.
        await relay.cut();
        await waitFor("the watch to retry again", () => watch.errors().split("Still watching").length === 3);
        ok(own.apex(["stop"]));
        // The path back: nothing listens at the server's port any more, which the relay passes on by not listening.
        const ended = await watch.done;
        expect(ended.status, ended.stderr).toBe(1);
        const { error } = JSON.parse(ended.stderr.trim().split("\n").at(-1)!) as { error: { code: string; message: string; hint: string; details: { connection: string; revision: number } } };
        expect(error.code).toBe("APEX_E_RPC");
        expect(error.message).toBe(`http://127.0.0.1:${port} has refused every connection for 10 s: it is session ${session}'s supervisor's own server (sharing.serve), which stops with the session, so the session has ended (or its supervisor is gone) and the watch ends. Every change up to revision ${error.details.revision} was printed.`);
        expect(error.details.connection).toBe("ECONNREFUSED");
        expect(error.hint).toContain(`\`apex --remote ${target} memory watch GLOB --since ${error.details.revision}\``);
        const seen = ended.stdout.trim().split("\n").map((line) => JSON.parse(line) as { kind: string; path: string; revision: number });
        expect(seen.map(({ kind, path }) => `${kind} ${path}`)).toEqual(["current /notes/first", "put /notes/during"]);
        expect(error.details.revision).toBe(seen.at(-1)!.revision);
      } finally {
        if (watch.child.exitCode === null) watch.child.kill("SIGINT");
        await watch.done;
      }
    } finally {
      await relay.cut();
      own.cleanup();
    }
  }, 90_000);
});

/** A TCP relay to a port of loopback: the network path between a client and a server, to cut (nothing listens then) and restore. */
class Relay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();

  /** Listens (on `port`, or a free one) and forwards each connection to `target`; resolves to the port. */
  async open(target: number, port = 0): Promise<number> {
    const server = createServer((socket) => {
      const upstream = createConnection({ host: "127.0.0.1", port: target });
      for (const end of [socket, upstream]) {
        this.sockets.add(end);
        end.on("close", () => this.sockets.delete(end));
        end.on("error", () => {
          socket.destroy();
          upstream.destroy();
        });
      }
      socket.pipe(upstream).pipe(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
    return (server.address() as { port: number }).port;
  }

  /** Closes the listener and every connection through it. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
