/**
 * A throwaway PostgreSQL cluster for tests: initdb in a temporary directory, a free TCP port on
 * 127.0.0.1 (password authentication) and a unix socket directory inside the temporary directory
 * (trusted), run by a non-root user. Run as root, the cluster belongs to Debian's `postgres`
 * system user (runuser), and the temporary directory is handed to it. Stopped by its pid and the
 * directory removed by stop().
 *
 * Used by the tests (test/support/postgres.ts) and the benchmarks (bench/postgres.bench.mjs).
 *
 * Debian's server binaries live in /usr/lib/postgresql/<version>/bin (the `postgresql` package,
 * which .ci/run installs when it is missing); PG_BIN overrides the directory.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";

/**
 * @typedef {object} PostgresCluster
 * @property {string} host
 * @property {number} port
 * @property {string} user
 * @property {string} password
 * @property {string} socketDir the unix socket directory (trusted connections)
 * @property {(database: string, options?: { password?: string, port?: number }) => string} url a URL for `database` over TCP with the password
 * @property {(name?: string) => string} createDatabase creates a new, empty database and returns its URL
 * @property {number} pid the server's pid (the postmaster)
 * @property {string} root the cluster's temporary directory (data, socket, log)
 * @property {() => Promise<void>} stop
 */

const SUPERUSER = "apex";
const PASSWORD = "apex-test-secret";

export function postgresBinDir() {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).filter((name) => existsSync(join(root, name, "bin", "initdb"))) : [];
  versions.sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error("PostgreSQL server binaries not found (install Debian's `postgresql` package or set PG_BIN)");
  return join(root, versions[0], "bin");
}

/** A TCP port nothing listens on right now. */
/** @returns {Promise<number>} */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

let databaseCounter = 0;

/** @returns {Promise<PostgresCluster>} */
export async function startPostgres() {
  const bin = postgresBinDir();
  const asRoot = userInfo().uid === 0;
  const root = mkdtempSync(join(asRoot ? baseDirForPostgres() : tmpdir(), "apex-pg-"));
  // As root, everything runs as the `postgres` system user, which must own the directory.
  const run = (command, args) => {
    const file = join(bin, command);
    const result = asRoot
      ? spawnSync("runuser", ["-u", "postgres", "--", file, ...args], { encoding: "utf8", cwd: root })
      : spawnSync(file, args, { encoding: "utf8", cwd: root });
    if (result.status !== 0) throw new Error(`${command} failed (${result.status}): ${result.stderr || result.stdout}`);
    return result.stdout;
  };
  const data = join(root, "data");
  const socketDir = join(root, "socket");
  let port;
  let pid;
  try {
    const pwfile = join(root, "pwfile");
    writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
    execFileSync("mkdir", ["-p", socketDir]);
    if (asRoot) {
      const { uid, gid } = postgresUser();
      for (const path of [root, socketDir, pwfile]) chownSync(path, uid, gid);
      chmodSync(root, 0o700);
    }
    run("initdb", ["-D", data, "-U", SUPERUSER, `--pwfile=${pwfile}`, "-E", "UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]);
    // The port is free when looked for, not held: another process may take it before the server binds it
    // (the tests' other files start servers of their own meanwhile). Such a start is tried again on another one.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const options = [
        `-p ${port}`,
        `-k ${socketDir}`,
        "-c listen_addresses=127.0.0.1",
        // A test cluster: small, quiet, durable commits kept (the crash test relies on them).
        "-c shared_buffers=32MB",
        "-c max_connections=100",
        "-c fsync=on",
        "-c synchronous_commit=on",
      ].join(" ");
      const log = join(root, "server.log");
      try {
        run("pg_ctl", ["-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start"]);
        break;
      } catch (error) {
        if (attempt >= 3 || !(existsSync(log) && /Address already in use/.test(readFileSync(log, "utf8")))) throw error;
        rmSync(log, { force: true });
      }
    }
    pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch (error) {
    // A cluster that did not come up leaves nothing behind: its server (if any) and its directory.
    const started = existsSync(join(data, "postmaster.pid")) ? Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]) : 0;
    if (started > 0 && alive(started)) signal(started, "SIGKILL");
    rmSync(root, { recursive: true, force: true });
    throw error;
  }

  const url = (database, over = {}) =>
    `postgres://${SUPERUSER}:${encodeURIComponent(over.password ?? PASSWORD)}@127.0.0.1:${over.port ?? port}/${database}`;
  const psql = (sql) => run("psql", ["-h", socketDir, "-p", String(port), "-U", SUPERUSER, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql]);

  let stopped = false;
  return {
    host: "127.0.0.1",
    port,
    user: SUPERUSER,
    password: PASSWORD,
    socketDir,
    pid,
    root,
    url,
    createDatabase(name = `t${process.pid}_${++databaseCounter}`) {
      psql(`CREATE DATABASE "${name}"`);
      return url(name);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopPostgres({ pid, root });
    },
  };
}

/** Sends `sig` to `pid`; a process that ended after it was last seen alive (ESRCH) is no error. */
function signal(pid, sig) {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone meanwhile */
  }
}

/**
 * Stops a cluster by its postmaster's pid (fast shutdown: SIGINT, SIGKILL after 30 s) and removes
 * its directory. Also for a cluster another process started (the tests' shared cluster is started
 * by the first test file that needs it and stopped by the test run's teardown).
 * @param {{ pid: number, root: string }} cluster
 */
export async function stopPostgres({ pid, root }) {
  signal(pid, "SIGINT");
  const deadline = Date.now() + 30_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  if (alive(pid)) signal(pid, "SIGKILL");
  rmSync(root, { recursive: true, force: true });
}

/**
 * For a process that owns its cluster (a bench): the server is killed, and its directory removed,
 * when this process ends without stop(), by an exception, `process.exit` or SIGINT/SIGTERM/SIGHUP
 * (which then end the process as they would have). A cluster shared between processes (the
 * tests') must not use this: its first user's exit would stop it under the others.
 * @param {PostgresCluster} cluster
 */
export function stopWhenThisProcessEnds(cluster) {
  const { pid, root } = cluster;
  let stopped = false;
  const stop = cluster.stop;
  cluster.stop = () => {
    stopped = true; // its pid may then be another process's
    return stop();
  };
  const kill = () => {
    if (stopped || !alive(pid)) return;
    stopped = true;
    try {
      process.kill(pid, "SIGKILL"); // the server's children end with their postmaster
      rmSync(root, { recursive: true, force: true });
    } catch {
      /* gone meanwhile, or a child still writing: the directory stays */
    }
  };
  process.on("exit", kill);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(signal, () => {
      kill();
      // Alone, this listener kept the signal from ending the process: end it the same way.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }
}

/**
 * Run as root, the cluster's directory must be reachable by the `postgres` user: the temporary
 * directory when every directory above it lets others through, else /var/tmp (a /tmp made 0700
 * would otherwise stop initdb at the first chdir).
 */
function baseDirForPostgres() {
  const traversable = (dir) => {
    for (let at = resolve(dir); ; at = dirname(at)) {
      if ((statSync(at).mode & 0o001) === 0) return false;
      if (at === dirname(at)) return true;
    }
  };
  for (const candidate of [tmpdir(), "/var/tmp"]) if (traversable(candidate)) return candidate;
  throw new Error(`no temporary directory the postgres user can reach (${tmpdir()} and /var/tmp are closed to others)`);
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function postgresUser() {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((entry) => entry.startsWith("postgres:"));
  if (!line) throw new Error("running as root needs the `postgres` system user (Debian's postgresql package creates it)");
  const fields = line.split(":");
  return { uid: Number(fields[2]), gid: Number(fields[3]) };
}
