/**
 * A throwaway PostgreSQL cluster for tests (scripts/pg-cluster.mjs, shared with the benchmarks):
 * initdb in a temporary directory, a free port, run by a non-root user, stopped by pid.
 *
 * sharedPostgres(): the one cluster of a test run, for the suites that run on every backend
 * (test/support/backends.ts). The first test file that asks starts it (the others wait for it);
 * the run's global setup (postgres-global.ts) stops it at the end.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { inject } from "vitest";
import { startPostgres } from "../../scripts/pg-cluster.mjs";
import { registerDir, registerProcess } from "./process-registry.js";

export { freePort, postgresBinDir, startPostgres } from "../../scripts/pg-cluster.mjs";
export type { PostgresCluster } from "../../scripts/pg-cluster.mjs";

export interface SharedPostgres {
  /** A URL of the maintenance database, with the superuser's password. */
  adminUrl: string;
  port: number;
  password: string;
  /** The directory of the cluster's unix socket (trusted connections). */
  socketDir: string;
  /** The URL of `database` on the cluster (another password or port, for tests of failures). */
  url(database: string, over?: { password?: string; port?: number }): string;
  /** A new, empty database; returns its URL. */
  createDatabase(): Promise<string>;
}

let shared: Promise<SharedPostgres> | undefined;

/** The test run's shared cluster, started on first use. */
export function sharedPostgres(): Promise<SharedPostgres> {
  return (shared ??= connectShared());
}

async function connectShared(): Promise<SharedPostgres> {
  const state = inject("apexPostgresState");
  if (!state) throw new Error("the shared PostgreSQL cluster needs vitest's global setup (test/support/postgres-global.ts)");
  const info = join(state, "cluster.json");
  const failed = join(state, "failed.txt");
  let starter = false;
  try {
    mkdirSync(join(state, "lock"));
    starter = true;
  } catch {
    /* another test file starts it */
  }
  if (starter) {
    try {
      const cluster = await startPostgres();
      // Stopped by postgres-global.ts's teardown; killed by the run's safety net when the run is interrupted (Ctrl-C), which skips that teardown.
      registerProcess(cluster.pid);
      registerDir(cluster.root);
      const url = cluster.url("postgres");
      writeFileSync(join(state, "cluster.tmp"), JSON.stringify({ pid: cluster.pid, root: cluster.root, url, port: cluster.port, user: cluster.user, password: cluster.password }));
      // Renamed into place only once complete: the waiting files read it whole.
      renameSync(join(state, "cluster.tmp"), info);
    } catch (error) {
      writeFileSync(failed, String((error as Error).stack ?? error));
      throw error;
    }
  }
  const deadline = Date.now() + 180_000;
  while (!existsSync(info)) {
    if (existsSync(failed)) throw new Error(`the shared PostgreSQL cluster did not start: ${readFileSync(failed, "utf8")}`);
    if (Date.now() > deadline) throw new Error("timed out waiting for the shared PostgreSQL cluster to start");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const { url: adminUrl, port, user, password, root } = JSON.parse(readFileSync(info, "utf8")) as { url: string; port: number; user: string; password: string; root: string };
  const url = (database: string, over: { password?: string; port?: number } = {}) =>
    `postgres://${user}:${encodeURIComponent(over.password ?? password)}@127.0.0.1:${over.port ?? port}/${database}`;
  return { adminUrl, port, password, socketDir: join(root, "socket"), url, createDatabase: () => createSharedDatabase() };
}

let databases = 0;

/** A new, empty database on the shared cluster; returns its URL. */
export async function createSharedDatabase(prefix = "t"): Promise<string> {
  const cluster = await sharedPostgres();
  const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${++databases}`;
  const client = new pg.Client({ connectionString: cluster.adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}"`);
  } finally {
    await client.end();
  }
  return cluster.url(name);
}

/** Rows of one statement on a connection of its own. */
export async function query(database: string, text: string, values: unknown[] = []): Promise<Array<Record<string, any>>> {
  const client = new pg.Client({ connectionString: database });
  await client.connect();
  try {
    return (await client.query(text, values)).rows;
  } finally {
    await client.end();
  }
}

/**
 * A TCP relay to the shared cluster on a port of its own, in a process of its own (a store's
 * calls block the thread that makes them): `down()` kills it, cutting every connection through
 * it, as a server restart or a network drop would; `up()` starts it again on the same port.
 * `freeze()` stops it (SIGSTOP) with its connections open: packets go nowhere, and nothing
 * fails until a timeout; `thaw()` continues it. `cut(marker, at)`: the first connection that
 * sends `marker` (a key path, say: statements carry them as text) from now on is cut at the
 * message carrying it (`at: "marker"`: dropped, so the statement fails unanswered), or once it
 * sends its next COMMIT (`at: "commit"`: the COMMIT reaches the server, which commits; its
 * answer never comes back). `url(database)`: the database's URL through the relay; `pid()`: the
 * relay process's (a process that thaws it while the test's thread is blocked). Stopped by pid.
 */
export async function postgresRelay(): Promise<{ port: number; pid(): number | undefined; url(database: string): string; up(): Promise<void>; down(): Promise<void>; freeze(): void; thaw(): void; cut(marker: string, at: "marker" | "commit"): Promise<void> }> {
  const cluster = await sharedPostgres();
  // Its first start takes a port of its own (0): a port looked up as free before could be taken meanwhile. Restarted, it
  // listens on that port again, as a server that comes back does.
  let port = 0;
  // The simple-query message node-postgres sends for COMMIT: 'Q', its length (4 + 7), the text.
  const script = `const net = require("node:net");
    const COMMIT = Buffer.from("Q\\0\\0\\0\\x0bCOMMIT\\0", "latin1");
    let cut;
    process.stdin.setEncoding("utf8").on("data", (text) => {
      for (const line of text.split("\\n").filter(Boolean)) cut = JSON.parse(line);
      console.log("armed");
    });
    net.createServer((client) => {
      const upstream = net.connect(${cluster.port}, "127.0.0.1");
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      upstream.pipe(client);
      let at;
      client.on("data", (chunk) => {
        if (!at && cut && chunk.includes(cut.marker)) [at, cut] = [cut.at, undefined];
        if (at === "marker") return (upstream.destroy(), client.destroy());
        if (at === "commit" && chunk.includes(COMMIT)) return (upstream.unpipe(client), upstream.end(chunk), client.destroy());
        upstream.write(chunk);
      });
      client.on("end", () => upstream.end());
    }).listen(Number(process.argv[1]), "127.0.0.1", function () { console.log(this.address().port); });`;
  let child: ChildProcess | undefined;
  const down = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  };
  const up = async () => {
    await down();
    const started = spawn(process.execPath, ["-e", script, String(port)], { stdio: ["pipe", "pipe", "inherit"] });
    child = started;
    port = await new Promise<number>((resolve, reject) => {
      started.stdout!.once("data", (chunk: Buffer) => resolve(Number(String(chunk).trim())));
      started.once("exit", (code) => reject(new Error(`the relay exited (${code})`)));
    });
  };
  await up();
  // Stopped (SIGSTOP), the relay keeps its connections open and forwards nothing: a network that
  // drops every packet, where nothing fails until a timeout.
  const signal = (name: NodeJS.Signals) => child?.pid && process.kill(child.pid, name);
  const cut = async (marker: string, at: "marker" | "commit") => {
    const running = child!;
    const armed = new Promise((resolve) => running.stdout!.once("data", resolve));
    running.stdin!.write(`${JSON.stringify({ marker, at })}\n`);
    await armed;
  };
  return { port, pid: () => child?.pid, url: (database) => cluster.url(database, { port }), up, down, freeze: () => signal("SIGSTOP"), thaw: () => signal("SIGCONT"), cut };
}
