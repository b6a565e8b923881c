// Several hosts, one PostgreSQL database: two project directories with the same project id,
// APEX_HOST=host-a and host-b, the built CLI, real supervisors and agents. One host's session is
// seen (and refused) from the other; a frozen supervisor's lease runs out, the other host takes
// the session over, and the frozen one, woken up, finds its lease gone, ends its agents and exits;
// one stopped in the middle of a write says the same, not that the store is out of reach.
// Claims racing from two processes on one database: exactly one wins.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { claimNewSession } from "../dist/core/session/claim.js";
import { readLease } from "../dist/core/session/lease.js";
import { sessionPath, type SessionRecord } from "../dist/core/session/records.js";
import { openStore } from "../dist/core/store/open.js";
import { LOCK_CLASS } from "../dist/plugins/postgres/backend.js";
import { Project, REPO_ROOT, events, groupMembers, isAlive, procInfo, signalIfAlive, type CliResult, waitFor } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { createSharedDatabase, query } from "./support/postgres.js";

// Each test's database is one of the run's shared cluster (a cluster of its own cost an initdb and a
// start): made before the test, handed out by createDatabase(), once.
let cluster: { createDatabase(): string };
const frozen: Array<{ pid: number; startTime: number }> = [];

beforeEach(async () => {
  const url = await createSharedDatabase("hosts");
  let given = false;
  cluster = {
    createDatabase: () => {
      if (given) throw new Error("one database per test: await createSharedDatabase() for another");
      given = true;
      return url;
    },
  };
}, 120_000);
// A frozen supervisor is continued after the test; then the harness ends its project's processes.
afterEach(() => {
  for (const { pid, startTime } of frozen.splice(0)) signalIfAlive(pid, "SIGCONT", startTime);
});

/** A project directory that plays one host: every command runs with APEX_HOST set. */
class HostProject extends Project {
  constructor(
    readonly host: string,
    config: string,
    /** Added to every command's environment (a clock set off, say). */
    readonly hostEnv: NodeJS.ProcessEnv = {},
  ) {
    super(config, `apex-${host}-`);
  }

  override apex(args: string[], options: { env?: NodeJS.ProcessEnv; timeout?: number; cwd?: string } = {}): CliResult {
    return super.apex(args, { ...options, env: { APEX_HOST: this.host, ...this.hostEnv, ...options.env } });
  }
}

/** The environment of a host whose clock is `skewMs` off: every Date of its processes reads so. */
const skewedClock = (skewMs: number): NodeJS.ProcessEnv => ({ NODE_OPTIONS: `--require ${join(REPO_ROOT, "test/fixtures/processes/skewed-clock.cjs")}`, APEX_TEST_CLOCK_SKEW_MS: String(skewMs) });

// The agent copies the context it is given back (APEX_RESUME_CONTEXT) into its working directory.
const AGENT = 'if [ -n "$APEX_RESUME_CONTEXT" ]; then cp "$APEX_RESUME_CONTEXT" resumed.json; fi; while true; do sleep 0.2; done';

function config(url: string, project: string, ttl: number, plugins = "plugins: {}"): string {
  return [
    "session:",
    `  lease_ttl: ${ttl}`,
    "agents:",
    "  worker:",
    "    command: sh",
    `    args: ["-c", ${JSON.stringify(AGENT)}]`,
    plugins,
    "store:",
    "  backend: postgres",
    `  url: ${JSON.stringify(url)}`,
    `  project: ${project}`,
    "",
  ].join("\n");
}

interface Status {
  session: null | {
    session_id: string;
    status: string;
    host: string | null;
    remote: boolean;
    lease_expires_at: string | null;
    supervisor: { pid: number; alive: boolean; host: string | null; generation: number | null } | null;
  };
  agents: Array<{ name: string; pid: number | null; pgid: number | null; alive: boolean; status: string }>;
  recover_with?: string | null;
}

const status = (project: Project) => json<Status>(project.apex(["status", "--json"]));

describe("two hosts on one PostgreSQL database", () => {
  it("see one session, refuse a second, and hand it over once the holder's lease expired; the old holder ends its agents and exits", async () => {
    const url = cluster.createDatabase();
    // Metrics sampled every second: host-a's sampler is due the moment its supervisor is woken up, its lease lost.
    const metrics = "plugins:\n  metrics: { interval: 1 }";
    // A lease of 6 s: a renewal may wait on a commit's fsync, which a loaded disk can hold for seconds.
    const a = new HostProject("host-a", config(url, "shared", 6, metrics));
    const b = new HostProject("host-b", config(url, "shared", 6, metrics));

    const ready = a.start(["--task", "work across hosts"]);
    const sid = ready.session_id;
    const agentA = ready.agents[0]!;
    expect(agentA.pid).toBeGreaterThan(0);

    // From host-b: the session runs on host-a (no local pid check: its agents are as recorded).
    const seen = status(b);
    expect(seen.session, a.supervisorLog()).toMatchObject({ session_id: sid, status: "active", host: "host-a", remote: true, supervisor: { pid: ready.supervisor_pid, alive: true, host: "host-a", generation: 1 } });
    expect(seen.agents).toMatchObject([{ name: "worker", status: "running", alive: false }]);
    expect(b.apex(["status"]).stdout).toMatch(new RegExp(`active on host host-a[\\s\\S]*supervisor  pid ${ready.supervisor_pid} on host host-a \\(lease until `));
    expect(json<Array<{ session_id: string; status: string; host: string }>>(b.apex(["session", "list", "--json"]))).toEqual([expect.objectContaining({ session_id: sid, status: "active", host: "host-a" })]);
    expect(b.apex(["session", "list"]).stdout).toMatch(new RegExp(`HOST[\\s\\S]*${sid}  active  host-a`));

    // A second session from host-b is refused, naming host-a; so are pause and stop, which would signal host-a's pids.
    const second = b.apex(["start", "--task", "another"]);
    expect(second.status, second.stderr).toBe(4);
    expect(second.stderr).toContain("APEX_E_SESSION_ACTIVE");
    expect(second.stderr).toContain("on host host-a");
    for (const command of [["pause"], ["stop"], ["stop", "--force"], ["session", "repair"]]) {
      const refused = b.apex(command);
      expect(refused.status, `${command.join(" ")}: ${refused.stderr}`).toBe(4);
      expect(refused.stderr).toContain("APEX_E_SESSION_REMOTE");
      expect(refused.stderr).toContain("runs on host host-a");
    }
    // Repair's dry run only reads: it goes ahead.
    expect(b.apex(["session", "repair", "--dry-run"]).status).toBe(0);
    // So is a migration of the store from host-b: it names the host and pid to stop, and writes nothing.
    const target = join(b.dir, "migrated");
    const migrate = b.apex(["store", "migrate", "--to", `lmdb:${target}`, "--json"]);
    expect(migrate.status, migrate.stderr).toBe(4);
    const refusal = JSON.parse(migrate.stderr.trim().split("\n").at(-1)!).error;
    expect(refusal).toMatchObject({ code: "APEX_E_SESSION_ACTIVE", details: { session_id: sid, host: "host-a", pid: ready.supervisor_pid } });
    expect(refusal.message).toMatch(new RegExp(`^Session ${sid} is running on host host-a \\(supervisor pid ${ready.supervisor_pid}, lease until \\d{4}-`));
    expect(refusal.hint).toContain("Stop it on host-a");
    expect(existsSync(target)).toBe(false);
    const early = b.apex(["start", "--continue", sid]);
    expect(early.status, early.stderr).toBe(4);
    expect(early.stderr).toContain("host-a");
    expect(isAlive(ready.supervisor_pid)).toBe(true);
    expect(isAlive(agentA.pid!)).toBe(true);

    // The agent's context, saved through host-a's supervisor.
    expect(a.apex(["agent", "report", "--agent", "worker", "--context", '{"step":7}']).status).toBe(0);

    // A frozen laptop: host-a's supervisor stops renewing; once the lease expires host-b sees the session interrupted.
    const supervisorStart = procInfo(ready.supervisor_pid)!.startTime;
    frozen.push({ pid: ready.supervisor_pid, startTime: supervisorStart });
    process.kill(ready.supervisor_pid, "SIGSTOP");
    const interrupted = await waitFor("host-b to see the session interrupted", () => {
      const report = status(b);
      return report.session?.status === "interrupted" ? report : undefined;
    }, 60_000);
    expect(interrupted.session).toMatchObject({ host: "host-a", remote: true, supervisor: { alive: false } });
    expect(Date.parse(interrupted.session!.lease_expires_at!)).toBeLessThanOrEqual(Date.now());
    expect(interrupted.recover_with).toBe(`apex start --continue ${sid}`);
    const text = b.apex(["status"]).stdout;
    expect(text).toContain(`The supervisor on host host-a stopped renewing its lease, which expired at ${interrupted.session!.lease_expires_at}`);
    // A migration from host-b now copies the store, and warns that host-a may still write to the source.
    const copy = join(b.dir, "copy");
    const migrated = b.apex(["store", "migrate", "--to", `lmdb:${copy}`, "--json"]);
    expect(migrated.status, migrated.stderr).toBe(0);
    const warning = `session ${sid} is interrupted: its supervisor on host host-a (pid ${ready.supervisor_pid}) stopped renewing its lease, which expired at ${interrupted.session!.lease_expires_at}`;
    expect(migrated.stderr).toContain(`warning: ${warning}`);
    expect((JSON.parse(migrated.stdout) as { warnings: string[] }).warnings).toEqual([expect.stringContaining(warning)]);

    // host-b takes it over: its agents start here with their saved context; nothing of host-a's is reaped here.
    const taken = b.start(["--continue", sid]);
    expect(taken).toMatchObject({ session_id: sid, continued: true, reaped: [] });
    const agentB = taken.agents[0]!;
    expect(agentB.pid).not.toBe(agentA.pid);
    expect(readlinkSync(`/proc/${agentB.pid}/cwd`)).toBe(b.dir);
    await waitFor("the resumed context on host-b", () => existsSync(join(b.dir, "resumed.json")));
    expect(JSON.parse(readFileSync(join(b.dir, "resumed.json"), "utf8"))).toEqual({ step: 7 });
    const owner = status(b);
    expect(owner.session).toMatchObject({ status: "active", host: "host-b", remote: false, supervisor: { pid: taken.supervisor_pid, alive: true, generation: 2 } });
    const trail = events(b, sid);
    expect(trail.find((event) => event.type === "session.taken_over")).toMatchObject({ from_host: "host-a", to_host: "host-b", generation: 2 });
    const record = json<{ value: SessionRecord }>(b.apex(["memory", "show", `/sessions/${sid}`, "--json"])).value;
    expect(record.history.at(-1)).toMatchObject({ event: "continued", from: "interrupted", host: "host-b", taken_over_from: { host: "host-a", generation: 1 } });

    // host-a wakes up: its renewal finds the session taken, so it ends its own agents and exits.
    process.kill(ready.supervisor_pid, "SIGCONT");
    await waitFor("host-a's supervisor to exit", () => !isAlive(ready.supervisor_pid, supervisorStart), 60_000);
    await waitFor("host-a's agents to end", () => groupMembers(agentA.pgid!).length === 0, 30_000);
    expect(a.supervisorLog()).toContain(`host host-b (pid ${taken.supervisor_pid}) took it over (generation 2)`);
    expect(a.supervisorLog()).toContain("stopping this supervisor's agents and exiting");
    // It did not end the session: it says to whom it lost it, on stderr (the log), and exits 4 (APEX_E_LEASE_LOST), not 0.
    expect(a.supervisorLog()).toContain(`error[APEX_E_LEASE_LOST]: this supervisor lost its lease on session ${sid}: host host-b (pid ${taken.supervisor_pid}) took it over (generation 2). It ended its agents and exits with code 4.`);
    expect(a.supervisorLog()).toContain("supervisor exits (4)");
    // Its metrics stop with it, unsaid: before, "plugin metrics: cannot sample the session's metrics: This supervisor no longer
    // holds session …" or "cannot read the revision log: The store is closed" followed, as if sampling had failed.
    const afterLoss = a.supervisorLog().slice(a.supervisorLog().indexOf("lease lost:"));
    expect(afterLoss).not.toContain("plugin metrics");

    // host-b stays the owner, seen so from both hosts; its agent still runs.
    expect(status(b).session).toMatchObject({ status: "active", host: "host-b", supervisor: { alive: true, generation: 2 } });
    expect(status(a).session).toMatchObject({ status: "active", host: "host-b", remote: true, supervisor: { alive: true, generation: 2 } });
    expect(json<Array<{ host: string }>>(a.apex(["session", "list", "--json"]))[0]).toMatchObject({ host: "host-b" });
    expect(isAlive(agentB.pid!)).toBe(true);
    expect(json<{ value: SessionRecord }>(b.apex(["memory", "show", `/sessions/${sid}`, "--json"])).value.supervisor).toMatchObject({ host: "host-b", generation: 2 });

    // A second project directory on host-b (the same host name, the same database): the session's
    // supervisor answers only in b's directory. Not "not running", nor "alive but does not answer"
    // with --force for a hint, which killed b's supervisor from there.
    const c = new HostProject("host-b", config(url, "shared", 6));
    for (const command of [["stop", "--force"], ["pause"]]) {
      const refused = c.apex(command);
      expect(refused.status, `${command.join(" ")}: ${refused.stderr}`).toBe(4);
      expect(refused.stderr).toContain("APEX_E_SESSION_REMOTE");
      expect(refused.stderr).toContain(`its supervisor (pid ${taken.supervisor_pid}) runs from another project directory on this host`);
    }
    expect(isAlive(taken.supervisor_pid)).toBe(true);
    expect(status(b).session).toMatchObject({ status: "active", supervisor: { alive: true } });

    const stopped = b.apex(["stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    await waitFor("host-b's agent to end", () => !isAlive(agentB.pid!), 30_000);
  }, 300_000);

  it("a supervisor stopped inside a write, whose connection the server ended, says once continued that host-b took the session over, not that PostgreSQL is out of reach, and writes nothing more", async () => {
    const url = cluster.createDatabase();
    // host-a's connections end a transaction left idle for 3 s (not 60), and name their host to
    // the database (a setting of the connection), for the audit below.
    const aUrl = `${url}?options=${encodeURIComponent("-c idle_in_transaction_session_timeout=3s -c apex_test.host=host-a")}`;
    const metrics = "plugins:\n  metrics: { interval: 1 }";
    // A lease of 9 s: a write of the supervisor waits for a lock at least a second (a third of what its lease leaves), time to stop it there.
    const a = new HostProject("host-a", config(aUrl, "stopped", 9, metrics));
    const b = new HostProject("host-b", config(url, "stopped", 9, metrics));
    const ready = a.start(["--task", "stopped mid-write"]);
    const sid = ready.session_id;
    const agentA = ready.agents[0]!;

    // Every statement that writes APEX's tables is recorded with the host its connection names.
    await query(url, `CREATE TABLE public.writes (host text, tbl text, at timestamptz DEFAULT clock_timestamp());
      CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO public.writes (host, tbl) VALUES (coalesce(current_setting('apex_test.host', true), 'other'), TG_TABLE_NAME); RETURN NULL; END $$;
      ${["stores", "kv", "log", "tables", "rows", "groups"].map((table) => `CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON apex.${table} FOR EACH STATEMENT EXECUTE FUNCTION public.audit();`).join("\n")}`);
    const writesOf = async (host: string) => Number((await query(url, "SELECT count(*) AS n FROM public.writes WHERE host = $1", [host]))[0]!.n);
    expect(a.apex(["agent", "report", "--agent", "worker", "--context", '{"step":1}']).status).toBe(0);
    expect(await writesOf("host-a")).toBeGreaterThan(0);

    // Another connection holds the project's write lock until host-a's supervisor waits for it
    // (a renewal, or a write of its own); the supervisor is stopped there, and the lock let go:
    // its transaction begins on the server while the process is stopped, and sits idle until the
    // server ends it, connection and all.
    const supervisorStart = procInfo(ready.supervisor_pid)!.startTime;
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query("SELECT pg_advisory_lock($1, hashtext($2))", [LOCK_CLASS, "stopped"]);
      await waitFor("host-a's supervisor to wait for the lock", async () => (await holder.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_xact_lock%'")).rowCount, 30_000);
      frozen.push({ pid: ready.supervisor_pid, startTime: supervisorStart });
      process.kill(ready.supervisor_pid, "SIGSTOP");
      await holder.query("SELECT pg_advisory_unlock($1, hashtext($2))", [LOCK_CLASS, "stopped"]);
      await waitFor("host-a's transaction to sit idle", async () => (await holder.query("SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()")).rowCount, 2000);
    } finally {
      await holder.end();
    }

    // Its lease runs out; host-b takes the session over once the server ended host-a's transaction.
    await waitFor("host-b to see the session interrupted", () => status(b).session?.status === "interrupted", 60_000);
    const taken = b.start(["--continue", sid]);
    expect(taken).toMatchObject({ session_id: sid, continued: true });
    const writesBefore = await writesOf("host-a");

    process.kill(ready.supervisor_pid, "SIGCONT");
    await waitFor("host-a's supervisor to exit", () => !isAlive(ready.supervisor_pid, supervisorStart), 60_000);
    await waitFor("host-a's agents to end", () => groupMembers(agentA.pgid!).length === 0, 30_000);
    const log = a.supervisorLog();
    const by = `host host-b (pid ${taken.supervisor_pid}) took it over (generation 2)`;
    // What happened, as the records say, not "its lease ran out and could not be renewed (Cannot reach PostgreSQL at …)".
    expect(log).toContain(`lease lost: ${by}`);
    // The first thing it says once continued: not a failure of the write it was stopped in (a
    // renewal, or a metrics sample: "cannot sample the session's metrics: … connection error").
    expect(log.slice(log.indexOf("agent worker started")).split("\n")[1]).toMatch(new RegExp(`^\\[[^\\]]+\\] lease lost: ${by.replace(/[()]/g, "\\$&")}$`));
    expect(log).toContain(`error[APEX_E_LEASE_LOST]: this supervisor lost its lease on session ${sid}: ${by}. It ended its agents and exits with code 4.`);
    expect(log).not.toContain("Cannot reach PostgreSQL");
    expect(log).not.toContain("could not be renewed");
    // The agent's log says why it ended.
    const logs = a.apex(["logs", "--session", sid]);
    expect(logs.stdout).toContain(`this supervisor lost its lease on the session: ${by}; ending pid ${agentA.pid}`);
    // Nothing of host-a's was written once it was stopped; host-b's supervisor writes as the holder.
    expect(await writesOf("host-a")).toBe(writesBefore);
    expect(await writesOf("other")).toBeGreaterThan(0);
    expect(status(b).session).toMatchObject({ status: "active", host: "host-b", supervisor: { pid: taken.supervisor_pid, alive: true, generation: 2 } });
    expect(b.apex(["stop"]).status).toBe(0);
  }, 300_000);

  it("a stop whose beforeStop hooks outlast the lease keeps it renewed: the other host never sees the session interrupted", async () => {
    const url = cluster.createDatabase();
    // A plugin whose beforeStop takes more than two leases' time (a slow git push, an upload).
    const plugins = ["plugins:", "  ./slow-stop.mjs: {}"].join("\n");
    const a = new HostProject("host-a", config(url, "slow", 2, plugins));
    const b = new HostProject("host-b", config(url, "slow", 2));
    writeFileSync(
      join(a.dir, "slow-stop.mjs"),
      'export default { name: "slow-stop", version: "1.0.0", apply(apex) { apex.hooks.beforeStop.tapPromise("slow-stop", () => new Promise((done) => setTimeout(done, 4500))); } };\n',
    );
    a.start(["--task", "a slow stop"]);
    const stopping = a.apexAsync(["stop", "--json"], { env: { APEX_HOST: "host-a" } });
    const seen: string[] = [];
    // (host-b only looks: a takeover tried while the stop is ending could win once it has ended.)
    while (stopping.child.exitCode === null) {
      seen.push(status(b).session?.status ?? "none");
      await new Promise((done) => setTimeout(done, 200));
    }
    const stopped = await stopping.done;
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(seen).toContain("active");
    expect(seen).not.toContain("interrupted");
    expect(status(b).session).toBeNull();
    expect(a.supervisorLog()).not.toContain("lease lost");
    expect(a.supervisorLog()).toContain("session stopped");
  }, 120_000);

  it("a supervisor kept busy by a run of writes renews its lease as it writes: the lease never comes close to running out", async () => {
    const url = cluster.createDatabase();
    // afterMilestone writes for more than a lease's time without yielding: the renewal timer cannot fire meanwhile.
    const a = new HostProject("host-a", config(url, "busy", 3, ["plugins:", "  ./busy.mjs: {}"].join("\n")));
    writeFileSync(
      join(a.dir, "busy.mjs"),
      'export default { name: "busy", version: "1.0.0", apply(apex) { apex.hooks.afterMilestone.tap("busy", () => { const end = performance.now() + 4000; for (let i = 0; performance.now() < end; i++) apex.store.batchSync((batch) => batch.set("/busy/n", i), "busy"); }); } };\n',
    );
    const ready = a.start(["--task", "a busy supervisor"]);
    const store = await openStore({ backend: "postgres", dir: tmpdir(), url, project: "busy" }, { readOnly: true });
    try {
      const margins: number[] = [];
      const reached = a.apexAsync(["milestone", "busy", "--json"]);
      await waitFor("the busy writes to begin", () => store.get("/busy/n") !== undefined, 30_000);
      while (reached.child.exitCode === null) {
        const row = readLease(store, ready.session_id)!;
        margins.push(Date.parse(row.expires_at) - store.now!());
        await new Promise((done) => setTimeout(done, 10));
      }
      expect((await reached.done).status).toBe(0);
      expect(margins.length).toBeGreaterThan(50);
      // Renewed every third of the lease: what is left never falls far below two thirds of it (2 s).
      expect(Math.min(...margins), JSON.stringify(margins)).toBeGreaterThan(1000);
      expect(a.supervisorLog()).not.toContain("lease lost");
    } finally {
      await store.close();
    }
  }, 120_000);
});

describe("a merge from another host", () => {
  it("into a session running on host-a is refused on host-b before anything is written, git's merge included; a dry run reads, and host-a merges", () => {
    const url = cluster.createDatabase();
    const plugins = "plugins:\n  checkpoint: {}";
    const a = new HostProject("host-a", config(url, "shared", 6, plugins));
    const b = new HostProject("host-b", config(url, "shared", 6, plugins));
    const main = a.start(["--task", "main work"]).session_id;
    expect(a.apex(["memory", "set", "/notes/a", '"base"']).status).toBe(0);
    const base = json<{ id: string }>(a.apex(["checkpoint", "create", "base", "--json"])).id;
    expect(a.apex(["session", "branch", base, "side"]).status).toBe(0);
    a.start(["--continue", "side"]);
    expect(a.apex(["memory", "set", "/notes/b", '"side"']).status).toBe(0);
    expect(a.apex(["checkpoint", "create", "side done"]).status).toBe(0);
    const running = a.start(["--continue", main]);
    const checkpoints = () => json<{ total: number }>(b.apex(["checkpoint", "list", "--session", main, "--json"])).total;
    const before = checkpoints();

    for (const args of [["session", "merge", "side", main], ["session", "merge", "side", main, "--git"], ["session", "merge", "side", main, "--strategy", "theirs", "--json"]]) {
      const refused = b.apex(args);
      expect(refused.status, `${args.join(" ")}: ${refused.stderr}`).toBe(4);
      expect(refused.stderr).toContain("APEX_E_SESSION_REMOTE");
      expect(refused.stderr).toContain(`Cannot merge into session ${main} from here: it runs on host host-a (supervisor pid ${running.supervisor_pid}`);
      expect(refused.stderr).toContain("`apex --remote HOST/SESSION session merge SRC`");
    }
    expect(checkpoints()).toBe(before);
    expect(json<{ children: Record<string, string> }>(b.apex(["memory", "show", "/notes", "--json"])).children).toEqual({ "/notes/a": "base" });
    // A dry run only reads: it goes ahead from host-b.
    const planned = b.apex(["session", "merge", "side", main, "--dry-run"]);
    expect(planned.status, planned.stderr).toBe(0);
    expect(planned.stdout).toMatch(/added +\/notes\/b/);

    // On host-a the merge goes to the session's supervisor.
    const merged = a.apex(["session", "merge", "side", main]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(checkpoints()).toBe(before + 1);
    expect(json<{ children: Record<string, string> }>(b.apex(["memory", "show", "/notes", "--json"])).children).toEqual({ "/notes/a": "base", "/notes/b": "side" });
    expect(a.apex(["stop"]).status).toBe(0);
  }, 180_000);
});

describe("a host whose supervisor died", () => {
  it("sees the agents it left running after another host took the session over, with the command that ends them", async () => {
    const url = cluster.createDatabase();
    const a = new HostProject("host-a", config(url, "died", 3));
    const b = new HostProject("host-b", config(url, "died", 3));
    const ready = a.start(["--task", "dies on host-a"]);
    const agent = ready.agents[0]!;
    // Killed at once: nothing ends its agents, and no renewal will tell it the session was taken.
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("host-b to see the session interrupted", () => status(b).session?.status === "interrupted", 30_000);
    const taken = b.start(["--continue", ready.session_id]);
    const left = json<Status & { left_running: Array<{ agent: string; pids: number[]; pgids: number[] }> }>(a.apex(["status", "--json"]));
    expect(left.session).toMatchObject({ status: "active", host: "host-b", remote: true });
    expect(left.left_running).toEqual([expect.objectContaining({ agent: "worker", pgids: [agent.pgid] })]);
    expect(left.left_running[0]!.pids).toContain(agent.pid);
    const text = a.apex(["status"]).stdout;
    expect(text).toContain("Left running on this host from before host host-b took the session over");
    expect(text).toContain(`kill -TERM -- -${agent.pgid}`);
    // host-b's own agents are not this host's leftovers, there or here.
    expect(json<{ left_running: unknown[] }>(b.apex(["status", "--json"])).left_running).toEqual([]);
    expect(left.left_running.flatMap((entry) => entry.pids)).not.toContain(taken.agents[0]!.pid);
    process.kill(-agent.pgid!, "SIGTERM");
    await waitFor("host-a's leftovers to end", () => groupMembers(agent.pgid!).length === 0, 30_000);
    expect(json<{ left_running: unknown[] }>(a.apex(["status", "--json"])).left_running).toEqual([]);
    expect(a.apex(["status"]).stdout).not.toContain("Left running on this host");
  }, 120_000);
});

describe("hosts whose clocks differ", () => {
  it("judge a lease on the database's clock: a host whose clock is ahead neither sees a running session interrupted nor takes it over, and one whose clock is behind sees an expired lease at once", async () => {
    const url = cluster.createDatabase();
    // host-a's clock half a minute behind the database's (the lease it writes, as its clock reads, ran out long ago);
    // host-b's half a minute ahead, host-c's a minute and a half behind.
    const a = new HostProject("host-a", config(url, "skewed", 3), skewedClock(-30_000));
    const ahead = new HostProject("host-b", config(url, "skewed", 3), skewedClock(30_000));
    const behind = new HostProject("host-c", config(url, "skewed", 3), skewedClock(-90_000));
    const ready = a.start(["--task", "on one clock"]);
    const sid = ready.session_id;
    for (const host of [ahead, behind]) expect(status(host).session, host.host).toMatchObject({ session_id: sid, status: "active", host: "host-a", supervisor: { alive: true } });
    expect(json<{ status: string }>(ahead.apex(["session", "history", sid, "--json"])).status).toBe("active");
    const taken = ahead.apex(["start", "--continue", sid]);
    expect(taken.status, taken.stderr).toBe(4);
    expect(taken.stderr).toContain("APEX_E_SESSION_ACTIVE");
    expect(isAlive(ready.supervisor_pid)).toBe(true);

    // host-a's supervisor frozen: once the lease ran out on the database's clock, host-c sees it interrupted too.
    const startTime = procInfo(ready.supervisor_pid)!.startTime;
    frozen.push({ pid: ready.supervisor_pid, startTime });
    process.kill(ready.supervisor_pid, "SIGSTOP");
    await waitFor("host-c to see the session interrupted", () => status(behind).session?.status === "interrupted", 20_000);
  }, 120_000);
});

describe("an agent's reads through its supervisor's socket", () => {
  it("judge another host's lease with their host's clock set right against the database's, as a read of the store does", async () => {
    const url = cluster.createDatabase();
    const { git } = isolatedGit("apex-hosts-git-");
    // host-a's clock a minute ahead of the database's: by it alone, a lease of 3 s ran out long ago.
    const a = new HostProject("host-a", config(url, "offset", 3, "plugins:\n  checkpoint: {}\n  git: {}"), skewedClock(60_000));
    initRepo(git, a.dir, { ".gitignore": ".apex/\n" });
    const main = a.start(["--task", "main line"]);
    expect(a.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const parent = mkdtempSync(join(tmpdir(), "apex-hosts-wt-"));
    const wt = join(parent, "feature");
    // host-b runs a branch beside it, in a git worktree of the project, on a clock in step with the database's.
    const hostB = { APEX_HOST: "host-b", NODE_OPTIONS: "", APEX_TEST_CLOCK_SKEW_MS: "0" };
    try {
      expect(a.apex(["session", "branch", "latest", "feature", "--worktree", wt]).status).toBe(0);
      const feature = json<{ session_id: string }>(a.apex(["start", "--continue", "feature", "--json"], { cwd: wt, env: hostB })).session_id;
      const statusOf = (listed: CliResult) => json<Array<{ session_id: string; status: string; host: string }>>(listed).find((session) => session.session_id === feature);
      // Read from the store on host-a: running on host-b.
      expect(statusOf(a.apex(["session", "list", "--json"]))).toMatchObject({ status: "active", host: "host-b" });
      // The same from one of host-a's agents (APEX_SOCKET: through its supervisor). Before, interrupted: the
      // supervisor's correction of the clock was lost on the way, and the agent judged the lease by its clock alone.
      const agent = { APEX_SOCKET: main.socket, APEX_SESSION_ID: main.session_id, APEX_AGENT: "worker" };
      expect(statusOf(a.apex(["session", "list", "--json"], { env: agent }))).toMatchObject({ status: "active", host: "host-b" });
      expect(json<{ status: string }>(a.apex(["session", "history", feature, "--json"], { env: agent })).status).toBe("active");
      expect(a.apex(["stop"], { cwd: wt, env: hostB }).status).toBe(0);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("claims racing on one database", () => {
  /** Runs `body` (an async function of (store, round)) in a child process per host; each round starts at the same instant in both. */
  async function race(hosts: string[], url: string, projectOf: string, rounds: number, body: string): Promise<Array<Array<{ ok: boolean; code?: string; message?: string; generation?: number }>>> {
    const dir = mkdtempSync(join(tmpdir(), "apex-race-"));
    try {
      const script = join(dir, "race.mjs");
      writeFileSync(
        script,
        `
        import { openStore } from ${JSON.stringify(join(REPO_ROOT, "dist/core/store/open.js"))};
        import * as claims from ${JSON.stringify(join(REPO_ROOT, "dist/core/session/claim.js"))};
        const [url, prefix, rounds, start] = process.argv.slice(2);
        const config = { agents: { w: { command: "sh", args: [], env: {}, cwd: ".", restart: "never", max_restarts: 0, restart_delay: 0 } } };
        const host = process.env.APEX_HOST;
        const self = { pid: process.pid, start_time: 0, socket: "/x.sock", started_at: new Date().toISOString(), nonce: null, host, lease_ttl_ms: 60000 };
        const run = async (store, round) => { ${body} };
        const out = [];
        for (let round = 0; round < Number(rounds); round++) {
          const store = await openStore({ backend: "postgres", dir: ${JSON.stringify(dir)}, url, project: prefix + round });
          const at = Number(start) + round * 500;
          while (Date.now() < at - 5) await new Promise((resolve) => setTimeout(resolve, 1));
          while (Date.now() < at) {}
          try { const claim = await run(store, round); out.push({ ok: true, generation: claim.generation }); }
          catch (error) { out.push({ ok: false, code: error.code, message: error.message }); }
          await store.close();
        }
        process.stdout.write(JSON.stringify(out));`,
      );
      const start = Date.now() + 1500;
      const runs = hosts.map(
        (host) =>
          new Promise<Array<{ ok: boolean; code?: string; message?: string; generation?: number }>>((resolve, reject) => {
            const child = spawn(process.execPath, [script, url, projectOf, String(rounds), String(start)], { env: { ...process.env, APEX_HOST: host } });
            let out = "";
            let err = "";
            child.stdout.on("data", (chunk) => (out += chunk));
            child.stderr.on("data", (chunk) => (err += chunk));
            child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${host}: exit ${code}: ${err}`))));
          }),
      );
      return await Promise.all(runs);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  const ROUNDS = 8;

  it("two new sessions at once from two processes: exactly one is claimed, the other refused naming its host", async () => {
    const url = cluster.createDatabase();
    const [x, y] = await race(["host-x", "host-y"], url, "new-", ROUNDS, `return claims.claimNewSession(store, config, { mode: "start", task: "race" }, self);`);
    for (let round = 0; round < ROUNDS; round++) {
      const outcomes = [x![round]!, y![round]!];
      expect(outcomes.filter((outcome) => outcome.ok), `round ${round}: ${JSON.stringify(outcomes)}`).toHaveLength(1);
      const winner = outcomes[0]!.ok ? "host-x" : "host-y";
      const loser = outcomes.find((outcome) => !outcome.ok)!;
      expect(loser.code).toBe("APEX_E_SESSION_ACTIVE");
      expect(loser.message).toContain(`on host ${winner}`);
    }
  }, 120_000);

  it("two takeovers of one expired session at once: exactly one wins, with generation 2", async () => {
    const url = cluster.createDatabase();
    const sessions: string[] = [];
    // Each round's session was started by a host whose lease ran out at once.
    for (let round = 0; round < ROUNDS; round++) {
      const store = await openStore({ backend: "postgres", dir: tmpdir(), url, project: `take-${round}` });
      try {
        const config = { agents: { w: { command: "sh", args: [], env: {}, cwd: ".", restart: "never", max_restarts: 0, restart_delay: 0 } } } as never;
        const claim = await claimNewSession(store, config, { mode: "start", projectDir: tmpdir(), configPath: undefined, storeDir: tmpdir(), task: "old" }, { pid: 1, start_time: 0, socket: "/x.sock", started_at: new Date().toISOString(), nonce: null, host: "host-gone", lease_ttl_ms: 1 });
        sessions.push(claim.sessionId);
      } finally {
        await store.close();
      }
    }
    const body = `const sessionId = ${JSON.stringify(sessions)}[round]; return claims.claimContinuedSession(store, config, { sessionId, checkpoint: undefined }, self);`;
    const [x, y] = await race(["host-x", "host-y"], url, "take-", ROUNDS, body);
    for (let round = 0; round < ROUNDS; round++) {
      const outcomes = [x![round]!, y![round]!];
      expect(outcomes.filter((outcome) => outcome.ok), `round ${round}: ${JSON.stringify(outcomes)}`).toHaveLength(1);
      expect(outcomes.find((outcome) => outcome.ok)!.generation).toBe(2);
      expect(outcomes.find((outcome) => !outcome.ok)!.code).toBe("APEX_E_SESSION_ACTIVE");
      const store = await openStore({ backend: "postgres", dir: tmpdir(), url, project: `take-${round}` }, { readOnly: true });
      try {
        const record = store.get(sessionPath(sessions[round]!)) as SessionRecord;
        expect(record.supervisor).toMatchObject({ host: outcomes[0]!.ok ? "host-x" : "host-y", generation: 2 });
        expect(record.history.filter((entry) => entry.event === "continued")).toHaveLength(1);
      } finally {
        await store.close();
      }
    }
  }, 120_000);
});
