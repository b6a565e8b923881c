// Every session of a project over `apex serve`, not only the running one: an ended session is
// readable (status, tasks, checkpoints, memory as of its latest checkpoint, logs, events) and
// read-only; a grant reads its own session and no other; grants record when they were last used
// also when no supervisor runs. A real server on loopback, the built CLI and HTTP.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAlive, Project, REPO_ROOT, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { remote, rpc, serve, share } from "./support/serve.js";
import { stopsAfterEach } from "./support/cleanup.js";

const CONFIG = shellAgents({ alpha: "while true; do echo tick; sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const stops = stopsAfterEach();

describe("apex serve: every session of the project", () => {
  it("reads an ended session while another runs, refuses to change it, and keeps each grant to its own session", async () => {
    project = new Project(CONFIG);
    const a = project.start().session_id;
    expect(project.apex(["task", "add", "parse the logs"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    expect(project.apex(["checkpoint", "create", "the first one"]).status).toBe(0);
    // After A's manual checkpoint: B's start saves A's final state (memory 2) before B takes the live memory.
    expect(project.apex(["memory", "set", "/notes/a", "2"]).status).toBe(0);
    for (const key of ["a", "\ue000", "\uffff", "😀"]) expect(project.apex(["memory", "set", `/o/${key}`, "1"]).status).toBe(0);
    const viewerA = share(project, "current", "vera", "viewer");
    const operatorA = share(project, "current", "otto", "operator");
    const ownerA = share(project, "current", "olga", "owner");
    await waitFor("a log line of A", () => project!.apex(["logs", "-n", "1"]).stdout.includes("alpha | tick"));
    expect(project.apex(["stop"]).status).toBe(0);

    const b = project.start().session_id;
    expect(project.apex(["memory", "set", "/notes/a", "3"]).status).toBe(0);
    expect(project.apex(["task", "add", "only in B"]).status).toBe(0);
    const viewerB = share(project, "current", "vic", "viewer");
    const url = await serve(project, stops);

    // Reads of ended A: the same output as the local commands that name A.
    const status = JSON.parse(remote(project, url, a, viewerA.token, ["status", "--json"]).stdout);
    expect(status.session).toMatchObject({ session_id: a, status: "stopped" });
    expect(status.last_checkpoint.description).toBe("final state, saved before another session takes the live memory");
    for (const [far, near] of [
      [["task", "list"], ["task", "list", "--session", a]],
      [["checkpoint", "list"], ["checkpoint", "list", "--session", a]],
      [["session", "history", a], ["session", "history", a]],
      // `last` and `current` through --remote: the session it names (it said there was none).
      [["session", "history", "last"], ["session", "history", a]],
      [["session", "history", "current"], ["session", "history", a]],
      // No ID through --remote: the remote session's trail, as `--session A` gives it (it was the list of ended sessions the grant sees).
      [["session", "history", "--json"], ["session", "history", "--session", a, "--json"]],
    ]) {
      // An owner's grant: the trail whole, its share events too (a viewer's leaves them out).
      const result = remote(project, url, a, ownerA.token, far!);
      expect(result.status, result.stderr).toBe(0);
      expect(result.stdout).toBe(project.apex(near!).stdout);
    }
    expect(remote(project, url, a, viewerA.token, ["task", "list"]).stdout).not.toContain("only in B");
    expect(remote(project, url, a, ownerA.token, ["session", "history", a]).stdout).toMatch(/share\.created|shared/);
    expect(remote(project, url, a, viewerA.token, ["session", "history", a]).stdout).not.toMatch(/share\.created|shared/);
    // Memory as of A's latest checkpoint, not the live value B wrote since.
    expect(JSON.parse(remote(project, url, a, viewerA.token, ["memory", "show", "/notes/a", "--json"]).stdout)).toEqual({ path: "/notes/a", value: 2 });
    expect(JSON.parse(remote(project, url, b, viewerB.token, ["memory", "show", "/notes/a", "--json"]).stdout)).toEqual({ path: "/notes/a", value: 3 });
    // A watch of ended A: the changes A made, up to its end (not B's), then it ends, saying so. It printed nothing, until --timeout.
    const watched = remote(project, url, a, viewerA.token, ["memory", "watch", "/notes/**", "--since", "0", "--timeout", "5", "--json"]);
    expect(watched.status, watched.stderr).toBe(0);
    expect(watched.stdout.trim().split("\n").map((line) => JSON.parse(line)).map((change) => [change.kind, change.path, change.value, change.overwritten])).toEqual([
      ["put", "/notes/a", null, true],
      ["put", "/notes/a", null, true], // B wrote 3 since
    ]);
    expect(watched.stderr).toBe("The session has ended: its memory changes no more, so the watch ends.\n");
    // In the store's order (of UTF-8 bytes, as locally), not of UTF-16 units, which put 😀 before U+E000.
    expect(remote(project, url, a, viewerA.token, ["memory", "query", "/o/*", "--keys"]).stdout).toBe("/o/a\n/o/\ue000\n/o/\uffff\n/o/😀\n");
    expect(project.apex(["memory", "query", "/o/*", "--keys"]).stdout).toBe("/o/a\n/o/\ue000\n/o/\uffff\n/o/😀\n");
    expect(remote(project, url, a, viewerA.token, ["logs", "-n", "5"]).stdout).toContain("alpha | tick");
    const events = await rpc(url, a, "events.list", viewerA.token);
    expect(events.body.result.map((event: { type: string }) => event.type)).toEqual(expect.arrayContaining(["session.started", "session.stopped"]));
    // The last N, and one kind, are what is sent (the dashboard's seed), not every event of the session.
    const all = events.body.result as Array<{ seq: number; type: string }>;
    expect((await rpc(url, a, "events.list", viewerA.token, { last: 2 })).body.result).toEqual(all.slice(-2));
    expect((await rpc(url, a, "events.list", viewerA.token, { last: 0 })).body.result).toEqual([]);
    expect((await rpc(url, a, "events.list", viewerA.token, { type: "session.stopped", last: 5 })).body.result).toEqual(all.filter((event) => event.type === "session.stopped"));
    for (const bad of [{ last: -1 }, { last: 1.5 }, { last: "2" }, { type: 3 }]) {
      expect(await rpc(url, a, "events.list", viewerA.token, bad)).toMatchObject({ status: 400, body: { error: { code: "APEX_E_BAD_INPUT" } } });
    }

    // The event stream of an ended session replays from from_seq, then ends.
    const stream = await fetch(`${url}/api/sessions/${a}/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewerA.token}` },
      body: JSON.stringify({ "events.subscribe": { from_seq: 0 } }),
    });
    const text = await stream.text();
    expect(text).toContain('"type":"session.stopped"');
    // Ended, says why, naming the session as session list does (it had the whole id).
    expect(text).toMatch(new RegExp(`event: end\ndata: .*session ${a.slice(0, 8)} has ended`));
    expect(text).not.toContain(`${a} has ended`);
    // So does the memory.watch stream, once it has sent what A changed (it polled for ever).
    const memoryStream = await fetch(`${url}/api/sessions/${a}/stream`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${viewerA.token}` },
      body: JSON.stringify({ "memory.watch": { glob: "/notes/**", since: 0 } }),
      signal: AbortSignal.timeout(10_000),
    });
    const memoryText = await memoryStream.text();
    expect(memoryText.match(/"path":"\/notes\/a"/g)).toHaveLength(2);
    expect(memoryText).toMatch(new RegExp(`event: end\ndata: .*session ${a.slice(0, 8)} has ended`));

    // Read-only: an operator of A can change nothing of it (exit 4, nothing written).
    for (const args of [["pause"], ["memory", "set", "/notes/a", "9"], ["task", "add", "late"]]) {
      const refused = remote(project, url, a, operatorA.token, args);
      expect(refused.status, args.join(" ")).toBe(4);
      expect(refused.stderr).toContain("APEX_E_SESSION_STATE");
      expect(refused.stderr).toContain(`Session ${a} is ended (stopped): it can be read, not changed`);
    }
    // A name no writer serves is unknown (404), for an owner too, as on a running session; a real write stays 409.
    for (const method of ["no.such", "memory.explode", "constructor"]) {
      const unknown = await rpc(url, a, method, ownerA.token, {});
      expect(unknown.status, `${method}: ${JSON.stringify(unknown.body)}`).toBe(404);
      expect(unknown.body.error).toMatchObject({ code: "APEX_E_NOT_FOUND", details: { unknown_method: method } });
    }
    for (const method of ["task.add", "checkpoint.create", "session.stop"]) {
      const write = await rpc(url, a, method, ownerA.token, { title: "late" });
      expect(write.status, `${method}: ${JSON.stringify(write.body)}`).toBe(409);
      expect(write.body.error.code).toBe("APEX_E_SESSION_STATE");
    }
    expect(project.apex(["task", "list", "--session", a, "--json"]).stdout).not.toContain("late");
    // A merge into ended A: its dry run is a read, answered as locally (it was refused as a write); the merge itself is refused.
    share(project, b, "olga", "viewer");
    const checkpointsOfA = () => project!.apex(["checkpoint", "list", "--session", a, "--json"]).stdout;
    const beforeMerge = checkpointsOfA();
    for (const extra of [[], ["--json"]]) {
      const args = ["session", "merge", b, a, "--dry-run", "--strategy", "theirs", ...extra];
      const remoteDryRun = remote(project, url, a, ownerA.token, args);
      expect(remoteDryRun.status, remoteDryRun.stderr).toBe(0);
      expect(remoteDryRun.stdout).toBe(project.apex(args).stdout);
    }
    expect(JSON.parse(remote(project, url, a, ownerA.token, ["session", "merge", b, a, "--dry-run", "--json"]).stdout)).toMatchObject({ dry_run: true, source: { session_id: b }, destination: { session_id: a } });
    const realMerge = remote(project, url, a, ownerA.token, ["session", "merge", b, a, "--strategy", "theirs"]);
    expect(realMerge.status).toBe(4);
    expect(realMerge.stderr).toContain(`Session ${a} is ended (stopped): it can be read, not changed (session.merge)`);
    expect(checkpointsOfA()).toBe(beforeMerge);
    expect(JSON.parse(project.apex(["memory", "show", "/notes/a", "--json"]).stdout).value).toBe(3);

    // A grant is for its own session: B's token does not open A, and naming A in the body does not either.
    expect((await rpc(url, a, "session.status", viewerB.token)).status).toBe(401);
    const pinned = await rpc(url, b, "task.list", viewerB.token, { session: a });
    expect(pinned.body.result.map((task: { title: string }) => task.title)).toContain("only in B");
    expect(pinned.body.result.map((task: { title: string }) => task.title)).not.toContain("parse the logs");
    const foreign = await rpc(url, b, "checkpoint.show", viewerB.token, { ref: `${a}/checkpoint-002` });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe("APEX_E_CHECKPOINT_NOT_FOUND");
    const records = (await rpc(url, b, "memory.query", viewerB.token, { glob: "/sessions/**" })).body.result as Array<{ path: string }>;
    expect(records.some((entry) => entry.path.startsWith(`/sessions/${b}/tasks/`))).toBe(true);
    expect(records.filter((entry) => entry.path.includes(a) || entry.path.includes("/grants/"))).toEqual([]);
    expect((await rpc(url, b, "memory.get", viewerB.token, { path: `/sessions/${a}` })).body).toEqual({});

    // An ended session can be shared too; the invite reads it.
    const late = share(project, a, "lena", "viewer");
    expect(late.session_id).toBe(a);
    expect(remote(project, url, a, late.token, ["task", "list"]).stdout).toContain("parse the logs");
    expect(project.apex(["session", "shares", a.slice(0, 8), "--json"]).stdout).toContain('"user": "lena"');
    // Unsharing an ended session closes its user's open streams within a second too: each of
    // them (their grants are checked together, once a second, not once per stream), and no one else's.
    const follow = (token: string, abort?: AbortSignal) =>
      fetch(`${url}/api/sessions/${a}/stream`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ "logs.follow": {} }),
        signal: abort,
      });
    const lenas = await Promise.all([1, 2, 3].map(() => follow(late.token)));
    expect(lenas.map((response) => response.status)).toEqual([200, 200, 200]);
    const bystander = new AbortController();
    const kept = await follow(viewerA.token, bystander.signal);
    let keptEnded = false;
    const keptText = kept.text().then(
      (text) => ((keptEnded = true), text),
      () => "",
    );
    const followed = lenas.map((response) => response.text());
    const revokedAt = Date.now();
    expect(project.apex(["session", "unshare", a, "lena"]).status).toBe(0);
    for (const text of followed) expect(await text).toContain("APEX_E_UNAUTHORIZED");
    expect(Date.now() - revokedAt).toBeLessThan(5000);
    // Checked in the same round as lena's grant: it would have ended with them.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(keptEnded, "another user's stream ended with lena's grant").toBe(false);
    bystander.abort();
    await keptText;
    expect((await rpc(url, a, "task.list", late.token)).status).toBe(401);
    // Unknown sessions: 401 for any token (no grant can exist), never a look at the store's other records.
    expect((await rpc(url, "0000aaaa-0000-0000-0000-000000000000", "session.status", viewerA.token)).status).toBe(401);

    // Two sessions of one server, each with its own token (a grant is for one session): `apex login`
    // keeps both, and --remote and connect use each session's own, by its id, prefix or name as logged in.
    // The file kept one token per host: the second login replaced the first, and A was refused (401).
    const credentials = join(project.dir, "credentials.json");
    const hostPort = url.replace(/^http:\/\//, "");
    const saved = { APEX_CREDENTIALS: credentials };
    expect(project.apex(["login", `${hostPort}/${a}`], { env: { ...saved, APEX_TOKEN: viewerA.token } }).status).toBe(0);
    expect(project.apex(["login", `${hostPort}/${b.slice(0, 8)}`], { env: { ...saved, APEX_TOKEN: viewerB.token } }).status).toBe(0);
    for (const [ref, sid] of [[a, a], [a.slice(0, 8), a], [b, b], [b.slice(0, 8), b]] as const) {
      const status = project.apex(["--remote", `${hostPort}/${ref}`, "status", "--json"], { env: saved });
      expect(status.status, `${ref}: ${status.stderr}`).toBe(0);
      expect(JSON.parse(status.stdout).session.session_id).toBe(sid);
    }
    // Long: two sessions, their grants and a server for everything a grant of each may and may not do.
  }, 120_000);
});

describe("apex serve: sharing an ended session through an owner's grant", () => {
  it("shares and unshares it as on the host, while another session runs: an owner can revoke the grant it made once the session ended", async () => {
    project = new Project(CONFIG);
    const a = project.start().session_id;
    const ownerA = share(project, "current", "olga", "owner");
    const url = await serve(project, stops);
    // A grant made through the server while A runs, then A ends and B runs (A is no writer's now).
    const made = JSON.parse(remote(project, url, a, ownerA.token, ["session", "share", "current", "bob", "--json"]).stdout) as { token: string };
    expect(project.apex(["stop"]).status).toBe(0);
    project.start();
    expect((await rpc(url, a, "whoami", made.token)).status).toBe(200);
    // Refused as a change of the ended session (409, exit 4): bob kept reading A for as long as no one on the host revoked him.
    const revoked = remote(project, url, a, ownerA.token, ["session", "unshare", "current", "bob"]);
    expect(revoked.status, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`Revoked bob's access to session ${a.slice(0, 8)} (1 token).`);
    expect((await rpc(url, a, "whoami", made.token)).status).toBe(401);
    // And shared, read-only, as `apex session share` on the host shares an ended session.
    const late = remote(project, url, a, ownerA.token, ["session", "share", "current", "lena", "--json"]);
    expect(late.status, late.stderr).toBe(0);
    const lena = JSON.parse(late.stdout) as { token: string; session_id: string; via_token_id: string };
    expect(lena).toMatchObject({ session_id: a, via_token_id: ownerA.token.split("_")[1] });
    expect((await rpc(url, a, "session.status", lena.token)).body.result.session).toMatchObject({ session_id: a, status: "stopped" });
    expect((await rpc(url, a, "task.add", ownerA.token, { title: "late" })).status).toBe(409);
    const trail = project.apex(["session", "history", a]).stdout;
    expect(trail).toMatch(/access of bob revoked {2}\[user:olga\]$/m);
    expect(trail).toMatch(/shared with lena as viewer {2}\[user:olga\]$/m);
  });
});

describe("apex serve: a client on another host", () => {
  it("shows the session's status as the server judged it, whatever the client's clock and host name", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const owner = share(project, "current", "olga", "owner");
    const url = await serve(project, stops);
    // A client two minutes ahead, on a host of another name: the supervisor's lease, judged by its clock, ran out long ago.
    const elsewhere = { APEX_TOKEN: owner.token, APEX_HOST: "client-host", NODE_OPTIONS: `--require ${join(REPO_ROOT, "test/fixtures/processes/skewed-clock.cjs")}`, APEX_TEST_CLOCK_SKEW_MS: "120000" };
    const far = (args: string[]) => project!.apex(["--remote", `${url.replace(/^http:\/\//, "")}/${sid}`, ...args], { env: elsewhere });
    // Before, both said interrupted: the client judged the lease again, by its own clock and host name.
    const listed = far(["session", "list", "--json"]);
    expect(listed.status, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ session_id: sid, status: "active" })]);
    const trail = far(["session", "history", sid, "--json"]);
    expect(trail.status, trail.stderr).toBe(0);
    expect(JSON.parse(trail.stdout)).toMatchObject({ session_id: sid, status: "active" });
  });
});

describe("apex serve: grants' last use", () => {
  it("records last_used_at without a supervisor, at most once a minute per grant", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const viewer = share(project, "current", "vera", "viewer");
    expect(project.apex(["stop"]).status).toBe(0);
    const url = await serve(project, stops);
    const lastUsed = () => (JSON.parse(project!.apex(["session", "shares", sid, "--json"]).stdout) as Array<{ user: string; last_used_at: string | null }>).find((g) => g.user === "vera")!.last_used_at;
    expect(lastUsed()).toBeNull();
    const before = Date.now();
    expect((await rpc(url, sid, "session.status", viewer.token)).status).toBe(200);
    const first = await waitFor("last_used_at", () => lastUsed() ?? undefined);
    expect(Date.parse(first)).toBeGreaterThanOrEqual(before - 1000);
    const records = () => project!.apex(["memory", "query", "/sessions/**", "--json"]).stdout;
    const snapshot = records();
    // More requests within the minute: nothing written.
    for (let i = 0; i < 5; i++) expect((await rpc(url, sid, "task.list", viewer.token)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(lastUsed()).toBe(first);
    expect(records()).toBe(snapshot);
  });
});

describe("apex serve: merging is the owner's", () => {
  it("refuses session.merge to viewers and operators with the usual 403, and lets an owner's call through to the session", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const url = await serve(project, stops);
    const events = () => project!.apex(["session", "history", sid, "--json"]).stdout;
    const before = events();
    for (const [user, role, article] of [["vera", "viewer", "a"], ["otto", "operator", "an"]] as const) {
      const grant = share(project, "current", user, role);
      const refused = await rpc(url, sid, "session.merge", grant.token, { from: "some-branch" });
      expect(refused.status).toBe(403);
      expect(refused.body).toEqual({
        error: {
          code: "APEX_E_FORBIDDEN",
          message: `${user} is ${article} ${role} of this session; session.merge needs owner.`,
          // The role it needs, not always operator (before, the hint offered operator for an owner's method).
          hint: `The session's owner can grant owner (a new token): \`apex session share SESSION ${user} --role owner\`.`,
        },
      });
    }
    const owner = share(project, "current", "olga", "owner");
    const passed = await rpc(url, sid, "session.merge", owner.token, { from: "some-branch" });
    expect(passed.status).not.toBe(403);
    // Nothing merged, nothing recorded but the three shares.
    expect(JSON.parse(events()).events.length).toBe(JSON.parse(before).events.length + 3);

    // An owner shares over --remote: the invite names the server as they reached it.
    const port = new URL(url).port;
    const invite = project.apex(["--remote", `localhost:${port}/${sid}`, "session", "share", "current", "nina", "--json"], { env: { APEX_TOKEN: owner.token } });
    expect(invite.status, invite.stderr).toBe(0);
    const shared = JSON.parse(invite.stdout) as { url: string; connect: string; created_by: string };
    expect(shared.url).toMatch(new RegExp(`^http://localhost:${port}/#session=${sid}&token=apx_`));
    expect(shared.connect).toContain(`apex connect localhost:${port}/${sid}`);
    expect(shared.created_by).toBe("user:olga");
  });
});

describe("apex serve: sessions side by side", () => {
  it("answers each running session from its own supervisor, and an interrupted branch stays its own session: its live memory, writable", async () => {
    // The git plugin records the commit the branch's worktree starts from.
    project = new Project(CONFIG.replace("  checkpoint: {}\n", "  checkpoint: {}\n  git: {}\n"));
    const p = project;
    const { git } = isolatedGit("apex-serve-sessions-git-");
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-serve-wt-"));
    stops.push(async () => rmSync(parent, { recursive: true, force: true }));
    const wt = join(parent, "alpha");

    const mainStart = p.start();
    const main = mainStart.session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "alpha", "--worktree", wt]).status).toBe(0);
    const alphaStart = p.start(["--continue", "alpha"]);
    const alpha = alphaStart.session_id;
    expect(p.apex(["memory", "set", "/notes/where", '"main"']).status).toBe(0);
    expect(p.apex(["memory", "set", "/notes/where", '"alpha"'], { cwd: wt }).status).toBe(0);
    const ownerMain = share(p, main, "mia", "owner");
    const ownerAlpha = share(p, alpha, "al", "owner");
    const url = await serve(p, stops);

    // Both run: each answered by its own supervisor, with its own memory.
    for (const [sid, token, pid, where] of [
      [main, ownerMain.token, mainStart.supervisor_pid, "main"],
      [alpha, ownerAlpha.token, alphaStart.supervisor_pid, "alpha"],
    ] as const) {
      const hello = await rpc(url, sid, "hello", token);
      expect(hello.body.result).toMatchObject({ session_id: sid });
      const status = await rpc(url, sid, "session.status", token);
      expect(status.body.result.session).toMatchObject({ session_id: sid, status: "active" });
      expect(status.body.result.session.supervisor.pid).toBe(pid);
      expect((await rpc(url, sid, "memory.get", token, { path: "/notes/where" })).body.result).toBe(where);
    }
    // Calls to both at once: each answered. One session's call closed the connection the server kept
    // to the other's supervisor, failing the calls under way there ("whether it was done is not known").
    const both = await Promise.all(
      Array.from({ length: 24 }, (_, i) => (i % 2 === 0 ? rpc(url, main, "session.status", ownerMain.token) : rpc(url, alpha, "session.status", ownerAlpha.token))),
    );
    for (const [i, reply] of both.entries()) {
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
      expect(reply.body.result.session.session_id).toBe(i % 2 === 0 ? main : alpha);
    }
    // The session in the URL by its branch name or an id prefix, as everywhere else: the same session, the same grant.
    for (const ref of ["alpha", alpha.slice(0, 8)]) {
      const byRef = remote(p, url, ref, ownerAlpha.token, ["status", "--json"]);
      expect(byRef.status, `${ref}: ${byRef.stderr}`).toBe(0);
      expect(JSON.parse(byRef.stdout).session.session_id).toBe(alpha);
      expect((await rpc(url, ref, "memory.get", ownerAlpha.token, { path: "/notes/where" })).body.result).toBe("alpha");
    }
    // The branch's worktree is a path of the server's disk: not sent (its branch and commit are), locally shown.
    expect(JSON.parse(p.apex(["status", "--json"], { cwd: wt }).stdout).session.worktree).toContain(parent);
    const farStatus = await rpc(url, alpha, "session.status", ownerAlpha.token);
    expect(farStatus.body.result.session.worktree).toBeNull();
    const farRecords = { list: (await rpc(url, alpha, "session.list", ownerAlpha.token)).body, query: (await rpc(url, alpha, "memory.query", ownerAlpha.token, { glob: "/sessions/**" })).body, events: (await rpc(url, alpha, "events.list", ownerAlpha.token)).body, checkpoints: (await rpc(url, alpha, "checkpoint.list", ownerAlpha.token)).body, checkpoint: (await rpc(url, alpha, "checkpoint.show", ownerAlpha.token, { ref: "latest" })).body };
    for (const [what, reply] of Object.entries(farRecords)) expect(JSON.stringify(reply), what).not.toContain(parent);
    const record = (farRecords.list.result as Array<{ session_id: string; worktree?: Record<string, unknown> }>).find((entry) => entry.session_id === alpha)!;
    expect(record.worktree).toMatchObject({ branch: expect.any(String) });
    expect(record.worktree).not.toHaveProperty("path");
    // A name is no way around the grant: main's token is not alpha's.
    expect((await rpc(url, "alpha", "session.status", ownerMain.token)).status).toBe(401);
    // Without a grant (a local owner too) the API answers nothing of either.
    for (const sid of [main, alpha]) {
      const anonymous = await fetch(`${url}/api/sessions/${sid}/rpc/session.status`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      expect(anonymous.status).toBe(401);
    }

    // alpha's supervisor dies: alpha is interrupted, still a session of its own worktree, not a frozen one.
    process.kill(alphaStart.supervisor_pid, "SIGKILL");
    await waitFor("alpha's supervisor to be gone", () => !isAlive(alphaStart.supervisor_pid), 30_000);
    const interrupted = await rpc(url, alpha, "session.status", ownerAlpha.token);
    expect(interrupted.body.result.session).toMatchObject({ session_id: alpha, status: "interrupted" });
    // So says the session list the dashboard draws its tree from, as `apex session list` does (it said "active").
    const listed = (await rpc(url, alpha, "session.list", ownerAlpha.token)).body.result as Array<{ session_id: string; status: string }>;
    expect(listed.find((record) => record.session_id === alpha)?.status).toBe("interrupted");
    expect((await rpc(url, alpha, "hello", ownerAlpha.token)).body.result).toMatchObject({ session_id: alpha, read_only: false });
    expect((await rpc(url, alpha, "memory.get", ownerAlpha.token, { path: "/notes/where" })).body.result).toBe("alpha");
    const written = await rpc(url, alpha, "memory.set", ownerAlpha.token, { path: "/notes/where", value: "alpha again" });
    expect(written.status, JSON.stringify(written.body)).toBe(200);
    expect(JSON.parse(p.apex(["memory", "show", "/notes/where", "--json"], { cwd: wt }).stdout).value).toBe("alpha again");
    expect(JSON.parse(p.apex(["memory", "show", "/notes/where", "--json"]).stdout).value).toBe("main");
    expect((await rpc(url, main, "memory.get", ownerMain.token, { path: "/notes/where" })).body.result).toBe("main");
  });

  it("a continue of a branch that the running session's working tree holds names that session's owner as the way, not commands sent to the branch", async () => {
    project = new Project(CONFIG);
    const p = project;
    const main = p.start().session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "experiment"]).status).toBe(0);
    const owner = share(p, "experiment", "olga", "owner");
    const url = await serve(p, stops);
    const refused = remote(p, url, "experiment", owner.token, ["start", "--continue", "experiment", "--json"]);
    expect(refused.status, refused.stderr).toBe(4);
    const error = JSON.parse(refused.stderr).error;
    expect(error).toMatchObject({ code: "APEX_E_SESSION_ACTIVE", details: { session_id: main } });
    // Before: "End it with `apex --remote …/experiment stop` first …": a stop of the branch, which is not running (refused), and its status.
    expect(error.hint).not.toContain("--remote");
    expect(error.hint).toContain(`through a grant of session ${main}`);
    expect(p.status().session?.session_id).toBe(main);
  });

  it("writes to an interrupted branch after a read that held the store while the grant's use was recorded", async () => {
    // The server reads an interrupted session from a read-only store and records a grant's use
    // through a writable one, side by side in one process. LMDB gives every open of a file in a
    // process the environment of the first one still open: the recording, opened while the read
    // waited for a module it loads on first use, got a read-only environment, failed, and kept
    // it; every later write of the server failed ("No transaction to renew").
    const { git } = isolatedGit("apex-serve-renew-git-");
    project = new Project(CONFIG.replace("  checkpoint: {}\n", "  checkpoint: {}\n  git: {}\n"));
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-serve-renew-wt-"));
    stops.push(async () => rmSync(parent, { recursive: true, force: true }));
    const wt = join(parent, "alpha");
    p.start();
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "alpha", "--worktree", wt]).status).toBe(0);
    const alphaStart = p.start(["--continue", "alpha"]);
    const alpha = alphaStart.session_id;
    // Not used before the kill: its first request records its use, beside that request's read.
    const owner = share(p, alpha, "al", "owner");
    const url = await serve(p, stops);
    process.kill(alphaStart.supervisor_pid, "SIGKILL");
    await waitFor("alpha's supervisor to be gone", () => !isAlive(alphaStart.supervisor_pid), 30_000);

    // session.tree loads its module while it holds the read-only store.
    const tree = await rpc(url, alpha, "session.tree", owner.token);
    expect(tree.status, JSON.stringify(tree.body)).toBe(200);
    for (const value of ["first", "second"]) {
      const written = await rpc(url, alpha, "memory.set", owner.token, { path: "/notes/where", value });
      expect(written.status, JSON.stringify(written.body)).toBe(200);
      expect(JSON.parse(p.apex(["memory", "show", "/notes/where", "--json"], { cwd: wt }).stdout).value).toBe(value);
    }
    // The use was recorded too (it waited for the read instead of failing).
    const lastUsed = () => (JSON.parse(p.apex(["session", "shares", alpha, "--json"]).stdout) as Array<{ user: string; last_used_at: string | null }>).find((g) => g.user === "al")!.last_used_at;
    await waitFor("the grant's use to be recorded", () => lastUsed() ?? undefined, 30_000);

    // share and unshare name it as session list does (they printed the whole id; the invite's addresses keep it),
    // and connect's header as apex status does, its name with the whole id after it (the whole id alone was printed).
    const shared = p.apex(["session", "share", "alpha", "zed"]);
    expect(shared.stdout.split("\n")[0], shared.stderr).toBe("Shared session alpha with zed as viewer (until revoked).");
    expect(shared.stdout).toContain(`/${alpha}`);
    expect(p.apex(["session", "unshare", "alpha", "zed"]).stdout.split("\n")[0]).toBe("Revoked zed's access to session alpha (1 token).");
    const connect = p.apexAsync(["connect", `${url.replace("http://", "")}/alpha`], { env: { APEX_TOKEN: owner.token } });
    try {
      await waitFor("connect's header", () => connect.output().includes("\nSession "));
      expect(connect.output().split("\n")[1]).toBe(`Session alpha (${alpha})  interrupted`);
    } finally {
      connect.child.kill("SIGINT");
      await connect.done;
    }

    // Brought back through the server, the branch is printed by its name, as a local start prints it
    // (the short id was printed); --json would have the whole id and the name.
    const back = remote(p, url, "alpha", owner.token, ["start", "--continue", "alpha"]);
    expect(back.status, back.stderr).toBe(0);
    expect(back.stdout.split("\n")[0]).toMatch(/^Session alpha continued \(supervisor pid \d+\)\.$/);
    expect(back.stdout).not.toContain(alpha.slice(0, 8));
  });
});
