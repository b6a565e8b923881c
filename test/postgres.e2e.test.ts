// A whole session on PostgreSQL through the built CLI: the project's config says
// `store: { backend: postgres, url }`, and every command of the flow works there — start,
// memory, checkpoints and their diff, pause (seen in /proc), resume, stop, validation, ended
// sessions — with nothing of the session written to LMDB in .apex/.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { Project, events, groupMembers, isAlive, procInfo, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { tempDirs } from "./support/cleanup.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { json } from "./helpers/cli.js";
import { postgresRelay, query, sharedPostgres, type SharedPostgres } from "./support/postgres.js";

let cluster: SharedPostgres;
// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

beforeAll(async () => {
  cluster = await sharedPostgres();
}, 120_000);
const extra = tempDirs();

const { git } = isolatedGit("apex-pg-git-home-");

const AGENTS = shellAgents({ alpha: "while true; do sleep 0.2; done", beta: "while true; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

describe("a session on PostgreSQL", () => {
  it("runs the session flow with the store in the database, not in .apex/", async () => {
    const url = await cluster.createDatabase();
    project = new Project(`${AGENTS}\nstore:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n  project: e2e\n`);
    const plugins = json<{ storage: { backend: string; location: string } }>(project.apex(["plugins", "list", "--json"]));
    expect(plugins.storage.backend).toBe("postgres");
    expect(plugins.storage.location).not.toContain(cluster.password);

    const ready = project.start(["--task", "on postgres"]);
    expect(project.apex(["memory", "set", "/design/auth", '{"method":"jwt"}']).status).toBe(0);
    const first = json<{ id: string }>(project.apex(["checkpoint", "create", "before change", "--json"]));
    expect(project.apex(["memory", "set", "/design/auth", '{"method":"oauth"}']).status).toBe(0);
    const second = json<{ id: string }>(project.apex(["checkpoint", "create", "after change", "--json"]));
    const diff = json<{ memory: { changed: Array<string | { path: string }> } }>(project.apex(["checkpoint", "diff", first.id, second.id, "--json"]));
    expect(diff.memory.changed.map((change) => (typeof change === "string" ? change : change.path))).toContain("/design/auth");
    expect(json<{ value: unknown }>(project.apex(["memory", "show", "/design/auth", "--json"])).value).toEqual({ method: "oauth" });

    // Pause reaches every agent process (state T in /proc), and resume continues them. A process
    // still in uninterruptible I/O (state D: this cluster fsyncs every commit) has its stop pending
    // and runs nothing before it stops: pause names it as stopping, and it is in D or T by now.
    const paused = project.apex(["pause", "--json"]);
    expect(paused.status, paused.stderr).toBe(0);
    const stopping = new Set((JSON.parse(paused.stdout) as { stopping: Array<{ pid: number }> }).stopping.map(({ pid }) => pid));
    for (const agent of ready.agents) {
      const members = groupMembers(agent.pgid!);
      expect(members.length).toBeGreaterThan(0);
      expect(members.map((member) => `${member.pid}:${member.state}`)).toEqual(members.map((member) => `${member.pid}:${stopping.has(member.pid) && member.state === "D" ? "D" : "T"}`));
    }
    expect(project.apex(["resume"]).status).toBe(0);
    for (const agent of ready.agents) expect(groupMembers(agent.pgid!).some((member) => member.state === "T")).toBe(false);

    expect(project.apex(["stop"]).status).toBe(0);
    const validate = json<{ ok: boolean; checkpoints: { total: number; verified: number } }>(project.apex(["session", "validate", "--json"]));
    expect(validate.ok).toBe(true);
    expect(validate.checkpoints.verified).toBe(validate.checkpoints.total);
    expect(validate.checkpoints.total).toBeGreaterThanOrEqual(4);
    // The ended session stays readable, from the database.
    const sessions = json<Array<{ session_id: string; status: string }>>(project.apex(["session", "list", "--json"]));
    expect(sessions.map((session) => [session.session_id, session.status])).toContainEqual([ready.session_id, "stopped"]);
    const list = json<{ items: Array<{ id: string }> }>(project.apex(["checkpoint", "list", "--json"]));
    expect(list.items.map((checkpoint) => checkpoint.id)).toEqual(expect.arrayContaining([first.id, second.id]));
    // Logs and the socket live in .apex/; the data does not.
    expect(existsSync(join(project.dir, ".apex", "store.mdb"))).toBe(false);
  }, 180_000);

  it("outlives the server ending every connection (a restart): the supervisor connects again, keeps its agents and lease, and a watch goes on", async () => {
    const url = await cluster.createDatabase();
    const database = new URL(url).pathname.slice(1);
    // With the plugins that read the store on timers (metrics, the audit trail's git poll).
    const plugins = AGENTS.replace("plugins:\n  checkpoint: {}\n", "plugins:\n  checkpoint: {}\n  metrics: {}\n  history: {}\n");
    project = new Project(`${plugins}\nstore:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n  project: restart\n`);
    const ready = project.start(["--task", "through a restart"]);
    expect(project.apex(["memory", "set", "/w/before", "1"]).status).toBe(0);
    const watch = project.apexAsync(["memory", "watch", "/w/**", "--json", "--timeout", "90"]);
    try {
      await waitFor("the watch to print the current value", () => watch.output().includes('"/w/before"'));
      const ended = await query(cluster.adminUrl, "SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()) AS t", [database]);
      // The supervisor's connection and its LISTEN connection at least.
      expect(ended[0]!.n).toBeGreaterThanOrEqual(2);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(project.apex(["memory", "set", "/w/after", "2"]).status).toBe(0);
      await waitFor("the watch to print the write made after the restart", () => watch.output().includes('"/w/after"'), 30_000);
      const checkpoint = project.apex(["checkpoint", "create", "after the restart", "--json"]);
      expect(checkpoint.status, checkpoint.stderr).toBe(0);
      // A lease renewal or two later (every ttl/3), the session is still the same supervisor's, with the same agents.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const status = project.status();
      expect(status.session?.status).toBe("active");
      expect(status.session?.supervisor).toMatchObject({ pid: ready.supervisor_pid, alive: true });
      expect(status.agents.map((agent) => [agent.name, agent.pid, agent.status])).toEqual(ready.agents.map((agent) => [agent.name, agent.pid, "running"]));
      expect(project.apex(["memory", "show", "/w/after", "--json"]).stdout).toContain("2");
      const log = project.supervisorLog();
      expect(log).not.toContain("unhandled rejection");
      expect(log).not.toContain("lease ran out");
    } finally {
      watch.child.kill("SIGINT");
      await watch.done;
    }
    expect(watch.errors()).not.toContain("error[");
    expect(project.apex(["stop"]).status).toBe(0);
  }, 180_000);

  it("a watch waits out a server it cannot reach, says so, and then prints what was written meanwhile", async () => {
    const url = await cluster.createDatabase();
    const database = new URL(url).pathname.slice(1);
    const relay = await postgresRelay();
    // No session: the watch reads the store itself, through the relay; writes go straight to the server.
    project = new Project(`${AGENTS}\nstore:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n  project: outage\n`);
    try {
      expect(project.apex(["memory", "set", "/w/before", "1"]).status).toBe(0);
      const watch = project.apexAsync(["memory", "watch", "/w/**", "--json", "--timeout", "60"], { env: { APEX_STORE_URL: relay.url(database) } });
      try {
        await waitFor("the watch to print the current value", () => watch.output().includes('"/w/before"'));
        await relay.down();
        await waitFor("the watch to say the store is out of reach", () => watch.errors().includes("Still watching"), 15_000);
        expect(watch.errors()).toContain("Cannot reach PostgreSQL");
        expect(watch.errors()).not.toContain(cluster.password);
        expect(project.apex(["memory", "set", "/w/during", "2"]).status).toBe(0);
        expect(project.apex(["memory", "delete", "/w/before"]).status).toBe(0);
        await relay.up();
        // (stderr and stdout are two pipes: what the watch says on one can reach this process after what it prints on the other)
        await waitFor("the watch to print the writes made while it could not read", () => watch.output().includes('"/w/during"') && watch.output().includes('"delete"') && watch.errors().includes("reachable again"), 30_000);
        expect(watch.child.exitCode).toBeNull();
      } finally {
        watch.child.kill("SIGINT");
        await watch.done;
      }
      const lines = watch.output().trim().split("\n").map((line) => JSON.parse(line) as { kind: string; path: string });
      expect(lines.map((line) => [line.kind, line.path])).toEqual([
        ["current", "/w/before"],
        ["put", "/w/during"],
        ["delete", "/w/before"],
      ]);
    } finally {
      await relay.down();
    }
  }, 120_000);

  it("a supervisor cut off from its database ends its agents before its lease runs out, instead of waiting on the network", async () => {
    const url = await cluster.createDatabase();
    const relay = await postgresRelay();
    const through = relay.url(new URL(url).pathname.slice(1));
    project = new Project(`${AGENTS}\nsession:\n  lease_ttl: 3\nstore:\n  backend: postgres\n  url: ${JSON.stringify(through)}\n  project: cut\n`);
    try {
      const ready = project.start(["--task", "cut off"]);
      const pids = ready.agents.map((agent) => agent.pid!);
      expect(pids.every((pid) => procInfo(pid) !== undefined)).toBe(true);
      // Every packet to the database is dropped from now on: a call waits for an answer that
      // never comes (the network would give up after minutes).
      relay.freeze();
      const cut = Date.now();
      await waitFor("the agents and the supervisor to end", () => [...pids, ready.supervisor_pid].every((pid) => !isAlive(pid)), 20_000);
      // Within the lease (3 s) and the grace of ending the agents, not after the network's timeout.
      expect(Date.now() - cut).toBeLessThan(12_000);
      const log = project.supervisorLog();
      expect(log).toMatch(/lease lost: its lease ran out and could not be renewed \(Cannot reach PostgreSQL/);
      // Not a normal end: a line on stderr (the log) says so, and the exit code is APEX_E_LEASE_LOST's.
      expect(log).toMatch(new RegExp(`error\\[APEX_E_LEASE_LOST\\]: this supervisor lost its lease on session ${ready.session_id}: its lease ran out and could not be renewed \\(Cannot reach PostgreSQL .*\\)\\. It ended its agents and exits with code 4\\.`));
      expect(log).toContain("supervisor exits (4)");
      // Seen from the database directly, the session is interrupted, and can be continued.
      relay.thaw();
      const status = project.apex(["status", "--json"], { env: { APEX_STORE_URL: url } });
      expect(JSON.parse(status.stdout).session.status).toBe("interrupted");
      // And why, from the supervisor's log (it could not tell the store).
      expect(JSON.parse(status.stdout).interrupted_because).toMatch(/^its lease ran out and could not be renewed \(Cannot reach PostgreSQL at postgres:\/\/apex@127\.0\.0\.1:\d+\/t_/);
      expect(project.apex(["status"], { env: { APEX_STORE_URL: url } }).stdout).toContain("Its supervisor ended its agents and exited: its lease ran out and could not be renewed (Cannot reach PostgreSQL");
    } finally {
      relay.thaw();
      await relay.down();
    }
  }, 120_000);

  it("while the server is down: commands fail at once, `apex serve` answers 503, an agent that exits is recorded and restarted once it is back, and a stop is recorded then", async () => {
    const url = await cluster.createDatabase();
    const relay = await postgresRelay();
    const through = relay.url(new URL(url).pathname.slice(1));
    project = new Project(`${AGENTS}\nsession:\n  lease_ttl: 8\nstore:\n  backend: postgres\n  url: ${JSON.stringify(through)}\n  project: outage-agents\n`);
    const serve = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    try {
      const ready = project.start(["--task", "through an outage"]);
      const alpha = ready.agents.find((agent) => agent.name === "alpha")!;
      const share = json<{ token: string }>(project.apex(["session", "share", "current", "bob@example.com", "--role", "owner", "--json"]));
      await waitFor("apex serve to listen", () => serve.output().includes('"port"'));
      const base = (JSON.parse(serve.output()) as { url: string }).url;
      const status = () => fetch(`${base}/api/sessions/${ready.session_id}/rpc/session.status`, { method: "POST", headers: { authorization: `Bearer ${share.token}`, "content-type": "application/json" }, body: "{}" });
      expect((await status()).status).toBe(200);

      await relay.down();
      const down = Date.now();
      // The agent exits while nothing can be written: its supervisor has to record that later.
      process.kill(-alpha.pgid!, "SIGTERM");
      const started = Date.now();
      const set = project.apex(["memory", "set", "/o/during", "1"]);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(set.status).toBe(1);
      expect(set.stderr).toContain("APEX_E_STORE_UNREACHABLE");
      const refused = await status();
      expect(refused.status).toBe(503);
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("APEX_E_STORE_UNREACHABLE");
      // A restart's worth of outage (well within the lease), then the server is back.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 2_000 - (Date.now() - down))));
      await relay.up();

      const again = await waitFor("alpha to be restarted", () => {
        const agent = project!.status().agents.find((one) => one.name === "alpha");
        return agent?.status === "running" && agent.pid !== alpha.pid ? agent : undefined;
      }, 20_000);
      expect(again.restarts).toBe(1);
      const now = project.status();
      expect(now.session?.supervisor).toMatchObject({ pid: ready.supervisor_pid, alive: true });
      expect(now.agents.find((agent) => agent.name === "beta")).toMatchObject({ pid: ready.agents.find((agent) => agent.name === "beta")!.pid, status: "running" });
      const exits = project.apex(["memory", "query", `/sessions/${ready.session_id}/events/*`, "--json"]).stdout;
      expect(exits).toContain('"agent.exited"');
      expect(exits).toContain('"agent.restarting"');
      expect((await status()).status).toBe(200);
      expect(project.apex(["memory", "set", "/o/after", "2"]).status).toBe(0);
      const log = project.supervisorLog();
      expect(log).toContain("cannot reach the store yet, retrying while the lease holds");
      expect(log).not.toContain("cannot handle its exit");
      expect(log).not.toContain("lease lost");

      // The connection is lost once the COMMIT of alpha's next exit record was sent: the server
      // commits it, and its answer never comes (`committed: "unknown"`). The supervisor tries
      // again, finds the exit there and writes it no second time: the events hold it once.
      await relay.cut(`/sessions/${ready.session_id}/agents/alpha`, "commit");
      process.kill(-again.pgid!, "SIGTERM");
      const third = await waitFor("alpha to be restarted again", () => {
        const agent = project!.status().agents.find((one) => one.name === "alpha");
        return agent?.status === "running" && agent.pid !== again.pid ? agent : undefined;
      }, 20_000);
      const trail = events(project, ready.session_id);
      expect(trail.filter((event) => event.type === "agent.exited" && event.pid === again.pid)).toHaveLength(1);
      expect(trail.filter((event) => event.type === "agent.restarting")).toHaveLength(2);
      expect(project.supervisorLog()).toMatch(/event \d+ \(agent\.exited\) was committed by an attempt that got no answer: not written again/);

      // `apex stop` during another outage ends the agents and records the session stopped once the
      // server is back (it failed, leaving the session to read as interrupted, so that the next
      // `apex start` would have continued it).
      // The server comes back once the stop has ended alpha, in the outage: after a fixed 1.5 s, a loaded machine's
      // stop could still be starting, and the stop was made with the server up.
      await relay.down();
      const stopping = project.apexAsync(["stop"]);
      await waitFor("the stop to end alpha", () => groupMembers(third.pgid!).length === 0, 30_000);
      await relay.up();
      const stopped = await stopping.done;
      expect(stopped.status, stopped.stderr).toBe(0);
      const sessions = json<Array<{ session_id: string; status: string }>>(project.apex(["session", "list", "--json"]));
      expect(sessions.find((session) => session.session_id === ready.session_id)?.status).toBe("stopped");
    } finally {
      serve.child.kill("SIGINT");
      await serve.done;
      await relay.down();
    }
  }, 120_000);

  it("a session whose last agent exits as the connection drops is recorded completed once the store answers, not left active with no agent", async () => {
    const url = await cluster.createDatabase();
    const relay = await postgresRelay();
    const through = relay.url(new URL(url).pathname.slice(1));
    const dir = mkdtempSync(join(tmpdir(), "apex-pg-done-"));
    extra.push(dir);
    const done = join(dir, "done");
    project = new Project(`${shellAgents({ alpha: `while [ ! -f ${done} ]; do sleep 0.1; done` })}store:\n  backend: postgres\n  url: ${JSON.stringify(through)}\n  project: ending\n`);
    try {
      const ready = project.start([]);
      // The read of the session's tasks that decides it is over is lost on the way: the
      // supervisor reads again while its lease holds, and ends the session then.
      await relay.cut(`/sessions/${ready.session_id}/tasks`, "marker");
      writeFileSync(done, "");
      await waitFor("the supervisor to end the session and exit", () => !isAlive(ready.supervisor_pid), 15_000);
      const log = project.supervisorLog();
      expect(log).toContain("cannot reach the store yet, retrying while the lease holds");
      expect(log).toContain("session completed: all agents exited with code 0");
      expect(log).not.toContain("cannot end the session");
      const sessions = json<Array<{ session_id: string; status: string }>>(project.apex(["session", "list", "--json"]));
      expect(sessions.find((session) => session.session_id === ready.session_id)?.status).toBe("completed");
    } finally {
      await relay.down();
    }
  }, 60_000);

  it("a branch's git worktree reaches the project's data (default project id), with APEX_HOME set and with no .apex/ in the project's tree", async () => {
    const url = await cluster.createDatabase();
    // The agent records, through `apex memory set`, which session it runs in.
    const agent = shellAgents({ alpha: 'eval "$APEX_BIN memory set /seen/$APEX_SESSION_ID true"; while true; do sleep 0.2; done' }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n  git: {}\n");
    project = new Project(`${agent}store:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n`, "apex-pg-wt-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-pg-wt-parent-"));
    extra.push(parent);
    const wt = join(parent, "feature");
    p.start(["--task", "main line"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", wt]).status).toBe(0);
    const feature = json<{ session_id: string }>(p.apex(["start", "--continue", "feature", "--json"])).session_id;

    const inWorktree = (args: string[], env: NodeJS.ProcessEnv = {}) => p.apex(args, { cwd: wt, env });
    const statusIn = (env: NodeJS.ProcessEnv = {}) => json<{ session: { session_id: string } }>(inWorktree(["status", "--json"], env)).session.session_id;
    expect(statusIn()).toBe(feature);
    // APEX_HOME (as git hooks set it) names the store directory, not the project: still the project's id.
    expect(statusIn({ APEX_HOME: join(p.dir, ".apex") })).toBe(feature);
    await waitFor("the branch's agent to write through apex", () => inWorktree(["memory", "show", `/seen/${feature}`]).status === 0);
    expect(inWorktree(["memory", "set", "/wt/note", "1"]).status).toBe(0);
    expect(json<{ value: unknown }>(inWorktree(["memory", "show", "/wt/note", "--json"])).value).toBe(1);

    // On PostgreSQL .apex/ holds only logs and sockets: without it the worktree is still the project's.
    expect(inWorktree(["stop"]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    rmSync(join(p.dir, ".apex"), { recursive: true, force: true });
    expect(inWorktree(["memory", "show", "/wt/note"]).status).toBe(0);
    const again = inWorktree(["start", "--continue", "feature", "--json"]);
    expect(json<{ session_id: string }>(again).session_id).toBe(feature);
    expect(statusIn()).toBe(feature);
    expect(inWorktree(["stop"]).status).toBe(0);
    const projects = await query(url, "SELECT project FROM apex.stores");
    expect(projects.map((row) => row.project)).toEqual([basename(p.dir)]);
  }, 120_000);

  it("store migrate, rename-project and session archive, refused while a branch runs in its worktree, name the stop that ends that branch: `apex --session NAME stop`, not the project's `apex stop`", async () => {
    const url = await cluster.createDatabase();
    project = new Project(`${AGENTS.replace("plugins:\n", "plugins:\n  git: {}\n  archive: {}\n")}store:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n`, "apex-pg-stop-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-pg-stop-parent-"));
    extra.push(parent);
    p.start(["--task", "main line"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", join(parent, "feature")]).status).toBe(0);
    const feature = json<{ session_id: string }>(p.apex(["start", "--continue", "feature", "--json"])).session_id;
    expect(p.apex(["stop"]).status).toBe(0);
    const target = join(parent, "copy");
    for (const args of [["store", "migrate", "--to", `lmdb:${target}`], ["store", "rename-project", basename(p.dir), "elsewhere"]]) {
      const refused = p.apex([...args, "--json"]);
      expect(refused.status, refused.stderr).toBe(4);
      const error = JSON.parse(refused.stderr.trim().split("\n").at(-1)!).error;
      expect(error).toMatchObject({ code: "APEX_E_SESSION_ACTIVE", details: { session_id: feature } });
      // It said `apex stop`: in the project's tree that is the project's session, not the branch named.
      expect(error.hint).toContain("Stop it (`apex --session feature stop`)");
    }
    expect(existsSync(target)).toBe(false);
    // So does session archive of it (only ended sessions are archived).
    const running = p.apex(["session", "archive", "feature", "--json"]);
    expect(running.status, running.stderr).toBe(4);
    expect(JSON.parse(running.stderr.trim().split("\n").at(-1)!).error.hint).toContain("Stop it first (`apex --session feature stop`)");
    expect(p.apex(["--session", "feature", "stop"]).status).toBe(0);
    expect(p.apex(["store", "migrate", "--to", `lmdb:${target}`]).status).toBe(0);
  }, 120_000);

  it("store projects lists the database's project ids; rename-project moves one id's data (a worktree-named project) to an id holding none, never over data or under a running session", async () => {
    const url = await cluster.createDatabase();
    const config = `${AGENTS}\nstore:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n`;
    // The project's own id (its directory's name) holds nothing yet; the data went to another id,
    // as an older APEX did with a session started in a git worktree (the worktree's directory name).
    project = new Project(config, "apex-pg-main-");
    const phantom = new Project(config, "apex-pg-main-feature-");
    const other = new Project(config, "apex-pg-other-");
    const [mine, lost] = [basename(project.dir), basename(phantom.dir)];
    try {
      const ready = phantom.start(["--task", "in the worktree"]);
      expect(phantom.apex(["memory", "set", "/design", '"kept"']).status).toBe(0);
      expect(phantom.apex(["checkpoint", "create", "in the worktree"]).status).toBe(0);
      expect(other.apex(["memory", "set", "/other", "1"]).status).toBe(0);

      const listing = project.apex(["store", "projects", "--json"]);
      expect(listing.status, listing.stderr).toBe(0);
      const listed = JSON.parse(listing.stdout) as { database: string; current: string; projects: Array<{ project: string; revision: number; current: boolean; sessions: number; active: Array<{ session_id: string; running: boolean }> }> };
      expect(listed.current).toBe(mine);
      expect(listed.database).not.toContain(cluster.password);
      expect(listed.projects.map((row) => row.project)).toEqual([lost, basename(other.dir)].sort());
      const before = listed.projects.find((row) => row.project === lost)!;
      expect(before).toMatchObject({ current: false, sessions: 1, active: [{ session_id: ready.session_id, running: true }] });
      expect(project.apex(["store", "projects"]).stdout).toContain(`${ready.session_id.slice(0, 8)} on `);

      // Its session runs: nothing moves under it.
      const busy = project.apex(["store", "rename-project", lost, mine, "--json"]);
      expect(busy.status).toBe(4);
      expect(busy.stdout + busy.stderr).toContain("APEX_E_SESSION_ACTIVE");
      expect(busy.stdout + busy.stderr).toContain(ready.session_id);
      expect(phantom.apex(["stop"]).status).toBe(0);
      const revision = json<{ projects: Array<{ project: string; revision: number }> }>(project.apex(["store", "projects", "--json"])).projects.find((row) => row.project === lost)!.revision;

      // Ids that are not there, the same id twice, an id no project can have, another backend.
      for (const [args, status, code] of [
        [["nope", mine], 3, "APEX_E_NOT_FOUND"],
        [[lost, lost], 2, "APEX_E_USAGE"],
        [[lost, "a/b"], 2, "APEX_E_USAGE"],
      ] as const) {
        const refused = project.apex(["store", "rename-project", ...args]);
        expect(refused.status, refused.stderr).toBe(status);
        expect(refused.stderr).toContain(code);
      }
      const lmdb = project.apex(["store", "projects"], { env: { APEX_STORE_URL: `lmdb:${join(project.dir, "elsewhere")}` } });
      expect(lmdb.status).toBe(2);
      expect(lmdb.stderr).toContain("APEX_E_USAGE");

      // Over another project's data: refused, nothing changed.
      const over = project.apex(["store", "rename-project", lost, basename(other.dir)]);
      expect(over.status).toBe(4);
      expect(over.stderr).toContain("APEX_E_CONFLICT");

      const moved = project.apex(["store", "rename-project", lost, mine, "--json"]);
      expect(moved.status, moved.stderr).toBe(0);
      expect(JSON.parse(moved.stdout)).toMatchObject({ from: lost, to: mine, revision, sessions: 1 });
      // The project sees the session, its memory and its checkpoints, which verify; the old id is gone.
      expect(json<Array<{ session_id: string }>>(project.apex(["session", "list", "--json"])).map((session) => session.session_id)).toEqual([ready.session_id]);
      expect(json<{ value: unknown }>(project.apex(["memory", "show", "/design", "--json"])).value).toBe("kept");
      const validate = json<{ ok: boolean; checkpoints: { total: number; verified: number } }>(project.apex(["session", "validate", "--json"]));
      expect(validate.ok).toBe(true);
      expect(validate.checkpoints.verified).toBe(validate.checkpoints.total);
      expect(validate.checkpoints.total).toBeGreaterThanOrEqual(2);
      const after = json<{ projects: Array<{ project: string; revision: number; current: boolean }> }>(project.apex(["store", "projects", "--json"])).projects;
      expect(after.map((row) => [row.project, row.current])).toEqual([[basename(other.dir), false], [mine, true]].sort());
      expect(after.find((row) => row.project === mine)!.revision).toBe(revision);
      // And goes on from there: a write takes the next revision.
      expect(json<{ revision: number }>(project.apex(["memory", "set", "/next", "1", "--json"])).revision).toBe(revision + 1);
      // Now it holds data: nothing more moves onto it.
      const twice = project.apex(["store", "rename-project", basename(other.dir), mine]);
      expect(twice.status).toBe(4);
      expect(twice.stderr).toContain("APEX_E_CONFLICT");
    } finally {
      phantom.cleanup();
      other.cleanup();
    }
  }, 120_000);

  it("says which database it cannot reach, without its password (exit 1, nothing written)", () => {
    const url = cluster.url("postgres", { port: 1 });
    project = new Project(`${AGENTS}\nstore:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n`);
    const result = project.apex(["memory", "set", "/a", "1"]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("APEX_E_STORE_UNREACHABLE");
    expect(result.stderr).not.toContain(cluster.password);
    expect(existsSync(join(project.dir, ".apex", "store.mdb"))).toBe(false);

    // A password elsewhere in the URL is kept out of messages too: in a `password=` parameter
    // (the driver reads it), and in user info that breaks parsing (an unencoded "/", "#" or "?"),
    // where the bad-port message quoted part of it.
    const secret = "s3cret-Pw";
    const inQuery = `postgres://127.0.0.1:${cluster.port}/postgres?user=apex&password=${secret}`;
    for (const [env, code, args] of [
      [inQuery, "APEX_E_STORE_AUTH", ["memory", "show", "/a", "--json"]],
      [`postgres://apex:${secret}/x@127.0.0.1:${cluster.port}/postgres`, "APEX_E_CONFIG", ["memory", "set", "/a", "1"]],
      [`postgres://apex:${secret}#x@127.0.0.1:${cluster.port}/postgres`, "APEX_E_CONFIG", ["config", "validate"]],
      [`postgres://apex:${secret}@[bad/postgres`, "APEX_E_CONFIG", ["memory", "set", "/a", "1"]],
    ] as const) {
      const failed = project.apex([...args], { env: { APEX_STORE_URL: env } });
      expect(failed.status, `${env} ${args.join(" ")}: ${failed.stderr}`).toBe(2);
      if (args[0] !== "config") expect(failed.stdout + failed.stderr).toContain(code);
      expect(failed.stdout + failed.stderr).not.toContain(secret);
    }
    const listed = project.apex(["plugins", "list", "--json"], { env: { APEX_STORE_URL: inQuery } });
    expect(listed.status).toBe(0);
    expect(json<{ storage: { location: string } }>(listed).storage.location).toBe(`postgres://127.0.0.1:${cluster.port}/postgres?user=apex&password=***`);
  });
});
