// Remote targets and what `apex --remote` says back: a scheme in capitals (URL schemes are
// case-insensitive), an invite's address as a URL parser writes it, a grant revoked under
// `logs -f` and `memory watch`, the commands an error's hint names (they reach the remote session). A real `apex serve` on
// loopback in front of a live session; the built CLI.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { endChild } from "./support/cleanup.js";
import { ok, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do echo tick; sleep 0.5; done" });

let p: Project;
let url: string;
let sid: string;
let viewer: string, operator: string;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  sid = p.start().session_id;
  url = await serve(p, stops);
  viewer = share(p, "current", "vera", "viewer").token;
  operator = share(p, "current", "otto", "operator").token;
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

describe("remote targets", () => {
  it("take a scheme in capitals, as URLs do (HTTP://… was refused as a target that cannot be read)", async () => {
    const upper = `${url.replace(/^http:/, "HTTP:")}/${sid}`;
    const status = p.apex(["--remote", upper, "status", "--json"], { env: { APEX_TOKEN: viewer } });
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).session.session_id).toBe(sid);
    const mixed = p.apex(["--remote", `${url.replace(/^http:/, "Http:")}/${sid}`, "status", "--json"], { env: { APEX_TOKEN: viewer } });
    expect(mixed.status, mixed.stderr).toBe(0);

    const connect = p.apexAsync(["connect", upper, "--json"], { env: { APEX_TOKEN: viewer } });
    stops.push(() => endChild(connect));
    const first = await waitFor("connect's first line", () => (connect.output().includes("\n") ? connect.output().split("\n")[0] : connect.child.exitCode !== null ? connect.errors() || "exited" : undefined));
    await endChild(connect);
    expect(JSON.parse(first!)).toMatchObject({ connected: { user: "vera", role: "viewer", session_id: sid } });
  });

  it("login takes a host with a scheme (any case) and no session, as it takes one with a session (it could not read the host)", () => {
    const file = join(p.dir, "token-vera.txt");
    writeFileSync(file, `${viewer}\n`);
    const env = { APEX_CREDENTIALS: join(p.dir, "credentials-scheme.json") };
    for (const scheme of ["http", "HTTP"]) {
      const login = p.apex(["login", url.replace(/^http/, scheme), "--token-file", file, "--json"], { env });
      expect(login.status, login.stderr).toBe(0);
      expect(JSON.parse(login.stdout)).toMatchObject({ host: url.replace(/^http:\/\//, ""), session: null });
    }
    expect(JSON.parse(ok(p.apex(["--remote", `${url.replace(/^http:\/\//, "")}/${sid}`, "status", "--json"], { env }))).session.session_id).toBe(sid);
  });

  it("a token saved for a host in capitals is found for it in small letters, as host names are (login kept the host as typed; requests looked it up in small letters)", async () => {
    const port = new URL(url).port;
    const file = join(p.dir, "token-vera-case.txt");
    writeFileSync(file, `${viewer}\n`);
    const credentials = join(p.dir, "credentials-case.json");
    const env = { APEX_CREDENTIALS: credentials };
    const login = p.apex(["login", `http://LOCALHOST:${port}/${sid}`, "--token-file", file, "--json"], { env });
    expect(login.status, login.stderr).toBe(0);
    expect(JSON.parse(login.stdout)).toMatchObject({ host: `localhost:${port}`, session: sid });
    expect(Object.keys(JSON.parse(readFileSync(credentials, "utf8")).hosts)).toEqual([`localhost:${port}`]);
    // Without a scheme, LOCALHOST is loopback too (reached over http, as localhost is): it was tried over https.
    for (const target of [`http://localhost:${port}/${sid}`, `HTTP://LocalHost:${port}/${sid}`, `localhost:${port}/${sid}`, `LOCALHOST:${port}/${sid}`]) {
      const status = p.apex(["--remote", target, "status", "--json"], { env });
      expect(status.status, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout).session.session_id).toBe(sid);
    }
    const connect = p.apexAsync(["connect", `http://Localhost:${port}/${sid}`, "--json"], { env });
    stops.push(() => endChild(connect));
    const first = await waitFor("connect's first line", () => (connect.output().includes("\n") ? connect.output().split("\n")[0] : connect.child.exitCode !== null ? connect.errors() || "exited" : undefined));
    await endChild(connect);
    expect(JSON.parse(first!)).toMatchObject({ connected: { user: "vera", role: "viewer", session_id: sid } });
  });

  it("a credentials file an older APEX wrote, with a host in capitals, is read by the host in small letters, and the next login folds its keys of one host into one", () => {
    const port = new URL(url).port;
    const credentials = join(p.dir, "credentials-old.json");
    const env = { APEX_CREDENTIALS: credentials };
    // The session's token under the host in capitals; a later one, of no grant, for the host under its name in small letters.
    const older = { token: viewer, saved_at: "2026-01-01T00:00:00.000Z", session: sid, sessions: { [sid]: { token: viewer, saved_at: "2026-01-01T00:00:00.000Z" } } };
    const later = { token: `apx_0123456789abcdef_${"A".repeat(43)}`, saved_at: "2026-02-01T00:00:00.000Z" };
    writeFileSync(credentials, `${JSON.stringify({ version: 1, hosts: { [`LOCALHOST:${port}`]: older, [`localhost:${port}`]: later } })}\n`, { mode: 0o600 });
    const status = p.apex(["--remote", `localhost:${port}/${sid}`, "status", "--json"], { env });
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).session.session_id).toBe(sid);

    // A login to the host alone: its token is the host's last saved, the session's own stays.
    const file = join(p.dir, "token-otto-case.txt");
    writeFileSync(file, `${operator}\n`);
    ok(p.apex(["login", `Localhost:${port}`, "--token-file", file, "--json"], { env }));
    const saved = JSON.parse(readFileSync(credentials, "utf8")).hosts;
    expect(Object.keys(saved)).toEqual([`localhost:${port}`]);
    expect(saved[`localhost:${port}`]).toMatchObject({ token: operator, sessions: { [sid]: { token: viewer } } });
    const whoami = p.apex(["--remote", `LOCALHOST:${port}/${sid}`, "status", "--json"], { env });
    expect(whoami.status, whoami.stderr).toBe(0);
  });

  it("share --url: the invite names the server as a URL parser writes it (host in small letters, the scheme's own port left out)", () => {
    const made = JSON.parse(ok(p.apex(["session", "share", "current", "ines", "--url", "HTTPS://Build-Box.EXAMPLE.com:443/", "--json"]))) as { url: string; connect: string };
    expect(made.url.startsWith("https://build-box.example.com/#session=")).toBe(true);
    expect(made.connect).toMatch(/ apex connect https:\/\/build-box\.example\.com:443\//);
    const plain = JSON.parse(ok(p.apex(["session", "share", "current", "ivo", "--url", "http://LOCALHOST:80", "--json"]))) as { url: string };
    expect(plain.url.startsWith("http://localhost/#session=")).toBe(true);
  });

  it("logs -f and memory watch through a grant revoked meanwhile say whose access was revoked, as connect does (they said the token is not valid: unknown, revoked or mistyped)", async () => {
    const { token } = share(p, "current", "rita", "viewer");
    ok(p.apex(["memory", "set", "/notes/seen", "1"]));
    const target = `${url.replace(/^http:\/\//, "")}/${sid}`;
    const logs = p.apexAsync(["--remote", target, "logs", "-f"], { env: { APEX_TOKEN: token } });
    const watch = p.apexAsync(["--remote", target, "memory", "watch", "/notes/**", "--json"], { env: { APEX_TOKEN: token } });
    stops.push(() => endChild(logs), () => endChild(watch));
    await waitFor("logs -f to print a line", () => logs.output().includes("tick"));
    await waitFor("memory watch to print the current value", () => watch.output().includes('"/notes/seen"'));
    ok(p.apex(["session", "unshare", "current", "rita"]));
    const followed = await logs.done;
    expect(followed.status, followed.stderr).toBe(4);
    expect(followed.stderr).toContain(`error[APEX_E_UNAUTHORIZED]: rita's access to session ${sid} was revoked.`);
    const watched = await watch.done;
    expect(watched.status, watched.stderr).toBe(4);
    expect(JSON.parse(watched.stderr).error).toMatchObject({ code: "APEX_E_UNAUTHORIZED", message: `rita's access to session ${sid} was revoked.` });
  });

  it("the hint of an error the server sends names its commands with --remote, as they reach the remote session (`apex status` read this machine's project)", () => {
    const target = `${url.replace(/^http:\/\//, "")}/${sid}`;
    const as = (token: string, args: string[]) => p.apex(["--remote", target, ...args, "--json"], { env: { APEX_TOKEN: token } });
    const running = as(operator, ["start", "--continue", sid]);
    expect(running.status).toBe(4);
    expect(JSON.parse(running.stderr).error.hint).toBe(`It is already running: \`apex --remote ${target} status\`.`);
    ok(as(operator, ["pause"]));
    try {
      const again = as(operator, ["pause"]);
      expect(again.status).toBe(4);
      expect(JSON.parse(again.stderr).error.hint).toBe(`\`apex --remote ${target} resume\` continues it.`);
      // Printed as text too.
      const text = p.apex(["--remote", target, "pause"], { env: { APEX_TOKEN: operator } });
      expect(text.stderr).toContain(`hint: \`apex --remote ${target} resume\` continues it.`);
    } finally {
      ok(as(operator, ["resume"]));
    }
    // What is run on the server's host, or by the session's owner, stays as it is.
    const many = as(viewer, ["logs", "-n", "200000"]);
    expect(many.status).toBe(2);
    expect(JSON.parse(many.stderr).error.hint).toContain("on the session's host with `apex logs -n N`");
    const forbidden = as(viewer, ["pause"]);
    expect(forbidden.status).toBe(4);
    expect(JSON.parse(forbidden.stderr).error.hint).toBe("The session's owner can grant operator (a new token): `apex session share SESSION vera --role operator`.");
  });
});

describe("remote targets of a session whose id is digits alone", () => {
  it("HOST:SESSION takes a session id, or prefix, of digits alone (the short id APEX prints: 28261587), which a port cannot be; digits a port could be after HOST alone are said to be read as its port", async () => {
    // A session whose id is digits alone (a short id is so once in 40 sessions; reconstruct names one as asked).
    const q = new Project(CONFIG.replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n"));
    ok(q.apex(["session", "reconstruct", q.start().session_id, "--as", "12345678"]));
    const digits = share(q, "12345678", "dina", "viewer").token;
    const hostPort = (await serve(q, stops)).replace(/^http:\/\//, "");
    // After HOST:PORT, digits are the session whatever their number: `127.0.0.1:PORT:12345678` could not be read.
    for (const target of [`${hostPort}:12345678`, `${hostPort}:123456`, `${hostPort}:1234`]) {
      const status = q.apex(["--remote", target, "status", "--json"], { env: { APEX_TOKEN: digits } });
      expect(status.status, `${target}: ${status.stderr}`).toBe(0);
      expect(JSON.parse(status.stdout).session.session_id).toBe("12345678");
    }
    // After HOST alone, more digits than a port has are the session, at the default port (7433): sent there, not refused as unreadable (exit 2).
    const atDefault = q.apex(["connect", "127.0.0.1:12345678", "--json"], { env: { APEX_TOKEN: digits } });
    expect(atDefault.status).not.toBe(2);
    expect(JSON.parse(atDefault.stderr).error.code).not.toBe("APEX_E_USAGE");
    // Digits that may be a port are its port: said so, with both ways to write what was meant.
    const port = q.apex(["--remote", "127.0.0.1:1234", "status", "--json"], { env: { APEX_TOKEN: digits } });
    expect(port.status).toBe(2);
    expect(JSON.parse(port.stderr).error).toMatchObject({
      code: "APEX_E_USAGE",
      message: 'Cannot read the remote session "127.0.0.1:1234": 1234 after the host is read as its port, and no session is named.',
      hint: "Name the session after a slash: HOST:1234/SESSION, or HOST[:PORT]/1234 for a session whose id starts with 1234.",
    });
  });
});

describe("apex serve --listen", () => {
  it("says, in its help and in the hint of an address it cannot read, that the port may be left out (7433)", () => {
    const help = ok(p.apex(["serve", "--help"]));
    expect(help.replace(/\s+/g, " ")).toContain("--listen <host[:port]> address to listen on: HOST[:PORT], port 7433 when left out (0 picks a free one)");
    const refused = p.apex(["serve", "--listen", "127.0.0.1:port", "--json"]);
    expect(refused.status).toBe(2);
    expect(JSON.parse(refused.stderr).error.hint).toBe("Write HOST[:PORT] (port 7433 when left out), e.g. 127.0.0.1, 127.0.0.1:7433, 0.0.0.0:7433 or [::1]:0 (0: any free port).");
  });
});
