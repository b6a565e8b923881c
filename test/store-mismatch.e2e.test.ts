// A command that names another store (APEX_STORE_URL, or a `store:` the supervisor did not start
// with) than the project's running supervisor runs on: through the built CLI, the command acts
// on the store it names and the supervisor's store is left alone; the same store spelled another
// way still goes through the socket; what only that supervisor can do is refused
// (APEX_E_STORE_MISMATCH, exit 4) naming both stores, with nothing written.
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { Project, groupMembers, isAlive, procInfo, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { sharedPostgres, type SharedPostgres } from "./support/postgres.js";

const AGENT = shellAgents({ idle: "while true; do sleep 0.2; done" });
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

function newProject(config = AGENT): Project {
  const project = new Project(config, "apex-store-mismatch-");
  cleanups.push(() => project.cleanup());
  return project;
}

/** A directory outside the project for another store; `store` inside it does not exist yet. */
function elsewhere(): string {
  const dir = mkdtempSync(join(tmpdir(), "apex-other-store-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `memory show PATH`: its value, or (a path with only children) the children by path. */
function shown(project: Project, path: string, env: NodeJS.ProcessEnv = {}): unknown {
  const result = project.apex(["memory", "show", path, "--json"], { env });
  expect(result.status, result.stderr).toBe(0);
  const parsed = JSON.parse(result.stdout) as { value: unknown; children?: Record<string, unknown> };
  return parsed.value ?? parsed.children;
}

/** Where a process's file descriptors lead (/proc/PID/fd). */
function openFiles(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  return readdirSync(dir).flatMap((fd) => {
    try {
      return [readlinkSync(join(dir, fd))];
    } catch {
      return []; // closed meanwhile
    }
  });
}

/** The supervisor stopped (SIGSTOP) while `fn` runs: anything that goes through its socket waits. */
async function withSupervisorStopped<T>(pid: number, fn: () => Promise<T>): Promise<T> {
  process.kill(pid, "SIGSTOP");
  try {
    return await fn();
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

describe("a command naming another store than the running supervisor's", () => {
  it("acts on the store it names and leaves the supervisor's alone; the same store spelled otherwise goes through the socket", async () => {
    const project = newProject();
    const ready = project.start();
    const runtime = JSON.parse(readFileSync(join(project.storeDir, "supervisor.json"), "utf8")) as { store: string; store_source: string };
    expect(runtime.store).toBe(`lmdb:${realpathSync(project.storeDir)}`);
    expect(runtime.store_source).toMatch(/^[0-9a-f]{32}$/);
    expect(project.apex(["memory", "set", "/where", '"supervisor"']).status).toBe(0);

    const other = join(elsewhere(), "store");
    const otherEnv = { APEX_STORE_URL: `lmdb:${other}` };
    const link = join(elsewhere(), "link");
    symlinkSync(project.storeDir, link);
    const spellings = [`lmdb:${link}/`, "lmdb:.apex/", `lmdb:${project.storeDir}`];

    const pending = await withSupervisorStopped(ready.supervisor_pid, async () => {
      // The other store: written and read here, while the supervisor cannot answer anything.
      const set = project.apex(["memory", "set", "/where", '"other"'], { env: otherEnv });
      expect(set.status, set.stderr).toBe(0);
      expect(shown(project, "/where", otherEnv)).toBe("other");
      const status = project.apex(["status", "--json"], { env: otherEnv });
      expect(status.status, status.stderr).toBe(0);
      expect(JSON.parse(status.stdout).session).toBeNull(); // the other store has no session; the supervisor's is not shown
      // The supervisor's own store, spelled three other ways: each write goes to its socket (none opens the store),
      // where the supervisor, stopped, cannot answer: each fails naming it, well before the 120 s limit of a call.
      const writes = spellings.map((url, i) => project.apexAsync(["memory", "set", `/spelled/${i}`, JSON.stringify(url)], { env: { APEX_STORE_URL: url } }));
      await waitFor("the writes connected to the socket", () => writes.every((write) => openFiles(write.child.pid!).some((target) => target.startsWith("socket:"))) || undefined, 10_000);
      for (const write of writes) expect(openFiles(write.child.pid!).filter((target) => target.includes("store.mdb"))).toEqual([]);
      const results = await Promise.all(writes.map((write) => write.done));
      for (const result of results) {
        expect(result.status, result.stderr).toBe(1);
        expect(result.stderr).toContain(`APEX_E_TIMEOUT]: Session ${ready.session_id}'s supervisor (pid ${ready.supervisor_pid}) is stopped (SIGSTOP)`);
      }
      return results;
    });
    expect(pending).toHaveLength(3);
    // Their requests were sent: the supervisor, going on, carries them out (as the error's hint says it may).
    await waitFor("the sent writes carried out", () => {
      const result = project.apex(["memory", "show", "/spelled", "--json"]);
      return (result.status === 0 && Object.keys((JSON.parse(result.stdout) as { children?: object }).children ?? {}).length === spellings.length) || undefined;
    }, 15_000);

    expect(project.apex(["stop"]).status).toBe(0);
    // Read afterwards, store by store.
    expect(shown(project, "/where")).toBe("supervisor");
    expect(shown(project, "/spelled")).toEqual(Object.fromEntries(spellings.map((url, i) => [`/spelled/${i}`, url])));
    expect(shown(project, "/where", otherEnv)).toBe("other");
    expect(project.apex(["memory", "show", "/spelled"], { env: otherEnv }).status).toBe(3);
  }, 120_000);

  it("pause, resume, stop and start naming another store are refused (exit 4) naming both stores, and write nothing", () => {
    const project = newProject();
    const ready = project.start();
    const runtimeBefore = readFileSync(join(project.storeDir, "supervisor.json"), "utf8");
    const other = join(elsewhere(), "store");
    const env = { APEX_STORE_URL: `lmdb:${other}` };
    for (const args of [["pause"], ["resume"], ["stop"], ["stop", "--force"], ["start", "--task", "on the other store"]]) {
      const result = project.apex(args, { env });
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(4);
      expect(result.stderr).toContain("APEX_E_STORE_MISMATCH");
      expect(result.stderr).toContain(`lmdb:${realpathSync(project.storeDir)}`);
      expect(result.stderr).toContain(`lmdb:${other}`);
    }
    // A URL no backend reads is a config error (exit 2) while a supervisor runs too, not a write through it.
    const bogus = project.apex(["memory", "set", "/bogus", "1"], { env: { APEX_STORE_URL: "mysql://db/apex" } });
    expect(bogus.status).toBe(2);
    expect(bogus.stderr).toContain("APEX_E_CONFIG");
    expect(bogus.stderr).toContain("APEX_STORE_URL must be postgres://… or lmdb:PATH");
    expect(project.apex(["memory", "show", "/bogus"]).status).toBe(3);
    expect(existsSync(other)).toBe(false);
    expect(readFileSync(join(project.storeDir, "supervisor.json"), "utf8")).toBe(runtimeBefore);
    expect(isAlive(ready.supervisor_pid, procInfo(ready.supervisor_pid)!.startTime)).toBe(true);
    const agent = ready.agents[0]!;
    expect(groupMembers(agent.pgid!).some((member) => member.state === "T")).toBe(false);
    // Without the other store named, the same commands reach the session.
    expect(project.apex(["pause"]).status).toBe(0);
    expect(project.apex(["resume"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
  }, 120_000);

  it("a checkpoint command naming another store works there, not in the running session", () => {
    const project = newProject(AGENT.replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n"));
    project.start();
    const list = () => (JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ id: string }> }).items.map((item) => item.id);
    const before = list();
    const other = join(elsewhere(), "store");
    const env = { APEX_STORE_URL: `lmdb:${other}` };
    // The other store has no session to checkpoint: said so, where before the running session got the checkpoint.
    const created = project.apex(["checkpoint", "create", "on the other store"], { env });
    expect(created.status, created.stderr).toBe(3);
    expect(created.stderr).toContain("APEX_E_NO_SESSION");
    expect(list()).toEqual(before);
    expect(project.apex(["checkpoint", "create", "here"]).status).toBe(0);
    expect(list().length).toBe(before.length + 1);
  }, 120_000);

  it("a `store:` edited into the config while the supervisor runs names another store too", async () => {
    const project = newProject();
    const ready = project.start();
    const other = join(elsewhere(), "store");
    project.writeConfig(`${AGENT}store:\n  backend: lmdb\n  url: ${JSON.stringify(other)}\n`);
    await withSupervisorStopped(ready.supervisor_pid, async () => {
      const set = project.apex(["memory", "set", "/edited", "1"]);
      expect(set.status, set.stderr).toBe(0);
    });
    expect(project.apex(["pause"]).status).toBe(4);
    project.writeConfig(AGENT);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["memory", "show", "/edited"]).status).toBe(3);
    expect(shown(project, "/edited", { APEX_STORE_URL: `lmdb:${other}` })).toBe(1);
  }, 120_000);

  it("an agent naming another store is refused: its process group never opens a store", async () => {
    const out = elsewhere();
    const other = join(out, "store");
    const script = [
      `apex memory set /agent/same 1 2> ${out}/same.err; echo $? > ${out}/same.rc`,
      `APEX_STORE_URL=lmdb:${other} apex memory set /agent/other 1 2> ${out}/other.err; echo $? > ${out}/other.rc`,
      "while true; do sleep 0.2; done",
    ].join("; ");
    const project = newProject(shellAgents({ writer: script }));
    project.start();
    await waitFor("the agent's commands", () => existsSync(join(out, "other.rc")), 60_000);
    expect(readFileSync(join(out, "same.rc"), "utf8").trim()).toBe("0");
    expect(readFileSync(join(out, "other.rc"), "utf8").trim()).toBe("4");
    expect(readFileSync(join(out, "other.err"), "utf8")).toContain("APEX_E_STORE_MISMATCH");
    expect(existsSync(other)).toBe(false);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(shown(project, "/agent")).toEqual({ "/agent/same": 1 });
  }, 120_000);

  it("logs shows the named store's session and store migrate refuses only for a supervisor on its source or target store", () => {
    const project = newProject();
    const other = join(elsewhere(), "store");
    const otherEnv = { APEX_STORE_URL: `lmdb:${other}` };
    // A session on the other store, stopped; then one on the project's store, running.
    const first = project.apex(["start", "--json"], { env: otherEnv });
    expect(first.status, first.stderr).toBe(0);
    const onOther = JSON.parse(first.stdout) as { session_id: string; agents: Array<{ pid: number }> };
    expect(project.apex(["stop"], { env: otherEnv }).status).toBe(0);
    const ready = project.start();
    const started = (pid: number) => `started pid ${pid} `;
    // logs: the session of the store the command names (it showed the running supervisor's, of another store).
    const logs = (env: NodeJS.ProcessEnv) => project.apex(["logs", "--json"], { env });
    const mine = logs({});
    expect(mine.status, mine.stderr).toBe(0);
    expect(mine.stdout).toContain(started(ready.agents[0]!.pid!));
    const theirs = logs(otherEnv);
    expect(theirs.status, theirs.stderr).toBe(0);
    expect(theirs.stdout).toContain(started(onOther.agents[0]!.pid));
    expect(theirs.stdout).not.toContain(started(ready.agents[0]!.pid!));
    expect(project.apex(["logs", "--session", onOther.session_id.slice(0, 8), "--json"]).stdout).toContain(started(onOther.agents[0]!.pid));

    // migrate: the other store (no supervisor on it) copies while the project's supervisor runs; the project's store is refused, as source or target.
    const copy = join(elsewhere(), "copy");
    const migrated = project.apex(["store", "migrate", "--to", `lmdb:${copy}`, "--json"], { env: otherEnv });
    expect(migrated.status, migrated.stderr).toBe(0);
    expect(JSON.parse(migrated.stdout)).toMatchObject({ source: { location: realpathSync(other) }, verified: true });
    const again = join(elsewhere(), "again");
    for (const [args, env] of [
      [["store", "migrate", "--to", `lmdb:${again}`], {}],
      [["store", "migrate", "--to", `lmdb:${project.storeDir}`], otherEnv],
    ] as const) {
      const refused = project.apex([...args], { env });
      expect(refused.status, refused.stderr).toBe(4);
      expect(refused.stderr).toContain("APEX_E_SESSION_ACTIVE");
      expect(refused.stderr).toContain(ready.session_id);
    }
    expect(existsSync(again)).toBe(false);
    expect(project.apex(["stop"]).status).toBe(0);
  }, 120_000);

  it("a supervisor.json written by an older APEX (no `store`) is taken as the store named, as before", () => {
    const project = newProject();
    const ready = project.start();
    const files = [join(project.storeDir, "supervisor.json"), ...readdirSync(join(project.storeDir, "run")).filter((name) => name.endsWith(".json")).map((name) => join(project.storeDir, "run", name))];
    for (const file of files) {
      const { store: _store, store_source: _source, ...older } = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      writeFileSync(file, JSON.stringify(older), { mode: 0o600 });
    }
    const other = join(elsewhere(), "store");
    const env = { APEX_STORE_URL: `lmdb:${other}` };
    expect(project.apex(["memory", "set", "/old", "1"], { env }).status).toBe(0);
    expect(project.apex(["pause"], { env }).status).toBe(0);
    expect(project.apex(["resume"], { env }).status).toBe(0);
    // store migrate of the project's store refuses while it runs.
    const migrate = project.apex(["store", "migrate", "--to", `lmdb:${join(elsewhere(), "copy")}`]);
    expect(migrate.stderr).toContain("APEX_E_SESSION_ACTIVE");
    expect(existsSync(other)).toBe(false);
    expect(isAlive(ready.supervisor_pid, procInfo(ready.supervisor_pid)!.startTime)).toBe(true);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(shown(project, "/old")).toBe(1);
  }, 120_000);
});

describe("apex serve naming another store than the running supervisor's", () => {
  async function served(project: Project, env: NodeJS.ProcessEnv, fn: (url: string) => Promise<void>): Promise<void> {
    const run = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"], { env });
    try {
      const url = await waitFor("apex serve's address", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
      await fn(url);
    } finally {
      if (run.child.exitCode === null) run.child.kill("SIGTERM");
      await run.done;
    }
  }

  it("does not hand the supervisor's session out: its grant is unknown on the store the server serves", async () => {
    const project = newProject();
    const ready = project.start();
    const shared = project.apex(["session", "share", ready.session_id, "vera", "--role", "viewer", "--json"]);
    expect(shared.status, shared.stderr).toBe(0);
    const { token } = JSON.parse(shared.stdout) as { token: string };
    const status = async (url: string) => (await fetch(`${url}/api/sessions/${ready.session_id}/rpc/session.status`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: "{}" })).status;
    await served(project, {}, async (url) => expect(await status(url)).toBe(200));
    await served(project, { APEX_STORE_URL: `lmdb:${join(elsewhere(), "store")}` }, async (url) => expect(await status(url)).toBe(401));
  }, 120_000);
});

describe("a supervisor on LMDB, a command naming PostgreSQL", () => {
  let cluster: SharedPostgres;
  beforeAll(async () => {
    cluster = await sharedPostgres();
  }, 120_000);

  it("memory commands act on the database; pause is refused naming both stores, without the password", async () => {
    const url = await cluster.createDatabase();
    const project = newProject();
    project.start();
    const env = { APEX_STORE_URL: url };
    expect(project.apex(["memory", "set", "/pg", '"in the database"'], { env }).status).toBe(0);
    expect(shown(project, "/pg", env)).toBe("in the database");
    const pause = project.apex(["pause"], { env });
    expect(pause.status).toBe(4);
    expect(pause.stderr).toContain("APEX_E_STORE_MISMATCH");
    expect(pause.stderr).toContain(`lmdb:${realpathSync(project.storeDir)}`);
    expect(pause.stderr).toMatch(/postgres:\/\/[^ ]+:\d+\/[^ ]+ \(project apex-store-mismatch-/);
    expect(pause.stderr).not.toContain(cluster.password);
    expect(project.apex(["memory", "show", "/pg"]).status).toBe(3);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["memory", "show", "/pg"]).status).toBe(3);
    expect(shown(project, "/pg", env)).toBe("in the database");
  }, 120_000);

  it("a supervisor started with APEX_STORE_URL names that store to its agents without its password: their commands go through its socket", async () => {
    const url = await cluster.createDatabase();
    const out = elsewhere();
    // The agent keeps its environment and runs the commands an agent runs, each through the socket.
    const commands = [["memory", "set", "/agent/same", "1"], ["status", "--json"], ["task", "list"], ["session", "list"], ["logs", "-n", "1"], ["logs", "-n", "1", "--session", "$APEX_SESSION_ID"]];
    // One that opens the store itself is told where the password can come from.
    const direct = `apex store projects 2> ${out}/direct.err; echo $? > ${out}/direct.rc`;
    const script = [`env > ${out}/env`, direct, ...commands.map((args, n) => `apex ${args.join(" ")} > /dev/null 2> ${out}/${n}.err; echo $? > ${out}/${n}.rc`), "while true; do sleep 0.2; done"].join("; ");
    const project = new Project(shellAgents({ writer: script }), "apex-store-mismatch-", { APEX_STORE_URL: `${url}?application_name=apex-agent&sslpassword=${cluster.password}` });
    cleanups.push(() => project.cleanup());
    const ready = project.start();
    const last = join(out, `${commands.length - 1}.rc`);
    await waitFor("the agent's commands", () => existsSync(last) && readFileSync(last, "utf8").endsWith("\n"), 60_000);
    commands.forEach((args, n) => {
      expect(readFileSync(join(out, `${n}.err`), "utf8"), args.join(" ")).toBe("");
      expect(readFileSync(join(out, `${n}.rc`), "utf8").trim(), args.join(" ")).toBe("0");
    });
    expect(shown(project, "/agent")).toEqual({ "/agent/same": 1 });
    expect(readFileSync(join(out, "direct.rc"), "utf8").trim()).toBe("2");
    expect(readFileSync(join(out, "direct.err"), "utf8")).toContain("asks for a password, and none was given");
    expect(readFileSync(join(out, "direct.err"), "utf8")).toContain("An agent is given the store's URL without its password");
    // Neither its environment (which everything it runs inherits) nor its /proc/PID/environ holds the password.
    const bare = new URL(url);
    bare.password = "";
    bare.searchParams.set("application_name", "apex-agent");
    const env = readFileSync(join(out, "env"), "utf8");
    expect(env).toContain(`APEX_STORE_URL=${bare}\n`);
    expect(env).not.toContain(cluster.password);
    expect(readFileSync(`/proc/${ready.agents[0]!.pid}/environ`, "latin1")).not.toContain(cluster.password);
    expect(project.apex(["stop"]).status).toBe(0);
  }, 120_000);

  it("PGPASSWORD, the store's password when its URL holds none, is not passed to the agents; one an agent's env sets is", async () => {
    const url = new URL(await cluster.createDatabase());
    url.password = "";
    const out = elsewhere();
    const config = [
      "agents:",
      "  plain:",
      "    command: sh",
      `    args: ["-c", ${JSON.stringify(`env > ${out}/plain; apex memory set /agent/plain 1 2> ${out}/plain.err; echo $? > ${out}/plain.rc; while true; do sleep 0.2; done`)}]`,
      "  own:",
      "    command: sh",
      `    args: ["-c", ${JSON.stringify(`env > ${out}/own; while true; do sleep 0.2; done`)}]`,
      "    env: { PGPASSWORD: agents-own }",
      "plugins: {}",
      "store:",
      "  backend: postgres",
      `  url: ${JSON.stringify(url.toString())}`,
      "  project: pgpassword",
      "",
    ].join("\n");
    const project = new Project(config, "apex-store-mismatch-", { PGPASSWORD: cluster.password });
    cleanups.push(() => project.cleanup());
    project.start();
    const done = (file: string) => existsSync(join(out, file)) && readFileSync(join(out, file), "utf8").endsWith("\n");
    await waitFor("the agents' environments", () => done("plain.rc") && done("own"), 60_000);
    expect(readFileSync(join(out, "plain.rc"), "utf8").trim(), readFileSync(join(out, "plain.err"), "utf8")).toBe("0");
    expect(readFileSync(join(out, "plain"), "utf8")).not.toContain(cluster.password);
    expect(readFileSync(join(out, "own"), "utf8")).toContain("PGPASSWORD=agents-own\n");
    expect(shown(project, "/agent")).toEqual({ "/agent/plain": 1 });
    expect(project.apex(["stop"]).status).toBe(0);
  }, 120_000);

  it("a supervisor on PostgreSQL: the same database spelled otherwise (password, scheme, parameters) still reaches it", async () => {
    const url = await cluster.createDatabase();
    const project = newProject(`${AGENT}store:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n  project: spelled\n`);
    const ready = project.start();
    const runtime = readFileSync(join(project.storeDir, "supervisor.json"), "utf8");
    expect(runtime).not.toContain(cluster.password);
    expect((JSON.parse(runtime) as { store: string }).store).toMatch(/^postgres:\/\/[^/@]+:\d+\/[^/ ]+ \(project spelled\)$/);
    const respelled = new URL(url.replace(/^postgres:/, "postgresql:"));
    respelled.password = "not-the-password";
    respelled.searchParams.set("application_name", "apex-respelled");
    const env = { APEX_STORE_URL: respelled.toString() };
    const pause = project.apex(["pause", "--json"], { env });
    expect(pause.status, pause.stderr).toBe(0);
    expect((JSON.parse(pause.stdout) as { session_id: string }).session_id).toBe(ready.session_id);
    expect(project.apex(["resume"], { env }).status).toBe(0);
    const startTime = procInfo(ready.supervisor_pid)!.startTime;
    expect(project.apex(["stop"], { env }).status).toBe(0);
    await waitFor("the supervisor's exit", () => !isAlive(ready.supervisor_pid, startTime), 30_000);
  }, 120_000);
});
