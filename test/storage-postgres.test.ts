/**
 * The PostgreSQL backend against a real server (a throwaway cluster, test/support/postgres.ts):
 * the port's conformance suite, then what only a server store has: several projects in one
 * database, connection errors, read-only opens that write nothing, LISTEN/NOTIFY.
 */
import { createHash, randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ApexError } from "../core/errors.js";
import type { StorageBackend, StoreSpec } from "../core/store/port.js";
import { decodeValue, encodeJson } from "../plugins/value-codec.js";
import { IDLE_IN_TRANSACTION_TIMEOUT_S, LOCK_CLASS, LOCK_TIMEOUT_S, PostgresBackend, postgresBackend, postgresUrlProblem, redactUrl, sessionSettings } from "../plugins/postgres/backend.js";
import { storeIdentity } from "../plugins/postgres/identity.js";
import { CODEC_DEFLATE, CODEC_RAW, storedForm, writtenForm } from "../plugins/postgres/codec.js";
import { GROUP_BYTES } from "../plugins/postgres/groups.js";
import { currentSessionId } from "../plugins/checkpoint/refs.js";
import { SyncBridge, connectTimeoutMs, reconnectBackoffMs } from "../plugins/postgres/bridge.js";
import { describePort } from "./support/port-suite.js";
import { freePort, postgresRelay, query, sharedPostgres, type SharedPostgres } from "./support/postgres.js";
import { REPO_ROOT, waitFor } from "./fixtures/agents/harness.js";
import { registerProcess } from "./support/process-registry.js";

let cluster: SharedPostgres;
let url: string;
let projects = 0;

beforeAll(async () => {
  cluster = await sharedPostgres();
  url = await cluster.createDatabase();
}, 120_000);


/** What `attempt` throws (undefined when it returns). */
function thrownBy(attempt: () => unknown): unknown {
  try {
    attempt();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** Each test's store is a new project in the file's database. */
const require = createRequire(import.meta.url);
const spec = (project = `p${++projects}`): StoreSpec => ({ backend: "postgres", dir: "/nonexistent/.apex", url, project });

describePort("postgres", {
  fresh() {
    const s = spec();
    return { open: (options) => postgresBackend.open(s, options ?? {}) };
  },
});

describe("postgres value codec", () => {
  const hashes = Buffer.concat(Array.from({ length: 40 }, (_, i) => createHash("sha256").update(String(i)).digest()));
  it.each([
    ["a short value", Buffer.from("y".repeat(127)), CODEC_RAW],
    ["a value that compresses", Buffer.from("y".repeat(128)), CODEC_DEFLATE],
    ["JSON text", Buffer.from(JSON.stringify(Array.from({ length: 30 }, (_, i) => ({ id: i, status: "done" })))), CODEC_DEFLATE],
    ["SHA-256 hashes (not tried)", hashes, CODEC_RAW],
    ["random bytes", randomBytes(4096), CODEC_RAW],
    ["base64 of random bytes (saves more than 1/8)", Buffer.from(randomBytes(3072).toString("base64")), CODEC_DEFLATE],
  ])("%s: stored with the codec that pays, read back as written", (_name, bytes, codec) => {
    const stored = storedForm(bytes);
    expect(stored.codec).toBe(codec);
    if (codec === CODEC_DEFLATE) expect(stored.bytes.length).toBeLessThanOrEqual(bytes.length * (7 / 8));
    else expect(stored.bytes).toBe(bytes);
    expect(writtenForm(stored.bytes, stored.codec)).toEqual(bytes);
  });

  it("reads a row that does not inflate, or has an unknown codec, as empty bytes (which no value decodes from)", () => {
    const { bytes } = storedForm(Buffer.from("z".repeat(500)));
    expect(writtenForm(bytes.subarray(0, 3), CODEC_DEFLATE)).toEqual(Buffer.alloc(0));
    expect(writtenForm(Buffer.from("not deflate at all"), CODEC_DEFLATE)).toEqual(Buffer.alloc(0));
    expect(writtenForm(bytes, 7)).toEqual(Buffer.alloc(0));
    expect(writtenForm(bytes, CODEC_RAW)).toBe(bytes);
  });
});

describe("postgres backend", () => {
  const opened: StorageBackend[] = [];
  afterEach(async () => {
    for (const backend of opened.splice(0).reverse()) await backend.close();
  });
  const open = (s: StoreSpec, readOnly = false) => {
    const backend = postgresBackend.open(s, { actor: "user:test", readOnly });
    opened.push(backend);
    return backend;
  };

  it("reads a range as one snapshot: a commit by another connection in the middle of a long scan is not in it", async () => {
    const s = spec();
    const store = open(s);
    const other = open(s);
    const key = (i: number) => `/r/${String(i).padStart(5, "0")}`;
    await store.batch((batch) => {
      for (let i = 0; i < 3000; i++) batch.set(key(i), i);
    });
    const seen: Array<[string, unknown]> = [];
    // Pages of 128, 512, 2048, …: the write lands after the first page, before the later ones.
    for (const { path, value } of store.tree("/r")) {
      seen.push([path, value]);
      if (seen.length === 200) {
        other.batchSync((batch) => {
          batch.set(key(2999), "changed");
          batch.delete(key(1500));
          batch.set("/r/99999", "added");
        });
      }
    }
    expect(seen).toHaveLength(3000);
    expect(seen.at(-1)).toEqual([key(2999), 2999]);
    expect(seen).toContainEqual([key(1500), 1500]);
    expect(seen.map(([path]) => path)).not.toContain("/r/99999");
    // The revision log, read in pages of 128 batches, likewise.
    for (let i = 0; i < 150; i++) await store.set(`/log/${i}`, i);
    const revision = store.revision();
    let changes = 0;
    for (const _change of store.changesSince(3003)) {
      if (++changes === 50) other.batchSync((batch) => batch.set("/r/late", 1));
    }
    expect(changes).toBe(revision - 3003);
    // Once the scan is over, reads see the commits.
    expect(store.get(key(2999))).toBe("changed");
    expect(store.get(key(1500))).toBeUndefined();
    expect(Array.from(store.keysBelow("/r"))).toHaveLength(3001);
    expect(Array.from(store.changesSince(revision), (change) => change.path)).toEqual(["/r/late"]);
    // readView: several reads, one view; afterwards, the present.
    const [before, after] = store.readView!(() => {
      const first = store.get("/r/late");
      other.batchSync((batch) => batch.set("/r/late", 2));
      return [first, store.get("/r/late")];
    });
    expect(after).toBe(before);
    expect(store.get("/r/late")).toBe(2);
  });

  it("keeps two projects in one database apart", async () => {
    const a = open(spec("alpha"));
    const b = open(spec("beta"));
    await a.set("/same/path", "alpha's");
    await b.batch((batch) => {
      batch.set("/same/path", "beta's");
      batch.set("/only/beta", 1);
    });
    const table = (backend: StorageBackend) => backend.table<string, Buffer>("t", { keys: "string", values: "binary" });
    await a.transaction(() => table(a).put("k", Buffer.from("a")));
    expect(a.get("/same/path")).toBe("alpha's");
    expect(b.get("/same/path")).toBe("beta's");
    expect(a.revision()).toBe(1);
    expect(b.revision()).toBe(2);
    expect(Array.from(a.keysBelow("/"))).toEqual(["/same/path"]);
    expect(Array.from(b.changesSince(0), (c) => c.path)).toEqual(["/same/path", "/only/beta"]);
    expect(table(a).get("k")).toEqual(Buffer.from("a"));
    expect(table(b).get("k")).toBeUndefined();
    expect(b.tableNames()).toEqual([]);
    expect(a.info).toEqual({ backend: "postgres", location: `${redactUrl(url)}#alpha` });
    expect(a.info.location).not.toContain(cluster.password);
    // Any id store.project takes (1 to 255 characters), not only up to 200.
    const long = open(spec("l".repeat(255)));
    await long.set("/x", 1);
    expect(long.get("/x")).toBe(1);
    expect(() => open(spec("l".repeat(256)))).toThrow(expect.objectContaining({ code: "APEX_E_CONFIG" }));
  });

  it("says cheaply whether a project's store exists, and a read-only open creates nothing", async () => {
    const s = spec();
    expect(postgresBackend.exists(s)).toBe(false);
    expect(() => open(s, true)).toThrowError(expect.objectContaining({ code: "APEX_E_NO_STORE" }));
    expect(postgresBackend.exists(s)).toBe(false);
    // On a database APEX never used, a read-only open does not even create the schema.
    const empty = await cluster.createDatabase();
    const emptySpec = { ...s, url: empty };
    expect(postgresBackend.exists(emptySpec)).toBe(false);
    expect(() => open(emptySpec, true)).toThrowError(expect.objectContaining({ code: "APEX_E_NO_STORE" }));
    const writer = open(s);
    expect(postgresBackend.exists(s)).toBe(true);
    await writer.set("/x", 1);
    const reader = open(s, true);
    // The server itself refuses writes on a read-only connection.
    expect(() => (reader as PostgresBackend)["run"]([{ text: "INSERT INTO apex.projects (project) VALUES ('intruder')" }], "testing")).toThrowError(ApexError);
    expect(reader.get("/x")).toBe(1);
    // exists() is one query on a connection it keeps for the open() that usually follows it.
    const apexConnections = async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        return Number((await client.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'apex' AND datname = current_database()")).rows[0].n);
      } finally {
        await client.end();
      }
    };
    const before = await apexConnections();
    for (let i = 0; i < 5; i++) expect(postgresBackend.exists(s)).toBe(true);
    expect(await apexConnections()).toBe(before + 1);
    open(s, true);
    expect(await apexConnections()).toBe(before + 1);
    // The read-only attempts did not create the schema in the empty database.
    const client = new pg.Client({ connectionString: empty });
    await client.connect();
    try {
      const { rows } = await client.query("SELECT to_regclass('apex.projects') AS t, (SELECT count(*) FROM pg_namespace WHERE nspname = 'apex') AS n");
      expect(rows[0]).toEqual({ t: null, n: "0" });
    } finally {
      await client.end();
    }
  });

  it("turns connection refused, bad credentials and a missing database into clear errors without the password", async () => {
    const deadPort = await freePort();
    const cases: Array<[string, string, RegExp]> = [
      [cluster.url("postgres", { port: deadPort }), "APEX_E_STORE_UNREACHABLE", /Cannot reach PostgreSQL/],
      [cluster.url("postgres", { password: "wrong-secret" }), "APEX_E_STORE_AUTH", /refused the credentials/],
      [cluster.url("no_such_db"), "APEX_E_STORE_NO_DATABASE", /"no_such_db" does not exist/],
    ];
    for (const [target, code, message] of cases) {
      const s = { ...spec(), url: target };
      for (const attempt of [() => postgresBackend.open(s, {}), () => postgresBackend.exists(s)]) {
        const caught = thrownBy(attempt);
        expect(caught).toBeInstanceOf(ApexError);
        const error = caught as ApexError;
        expect(error.code).toBe(code);
        expect(error.message).toMatch(message);
        expect(error.message).toContain(`127.0.0.1:${target.includes(String(deadPort)) ? deadPort : cluster.port}`);
        expect(error.message).not.toContain(cluster.password);
        expect(error.message).not.toContain("wrong-secret");
        expect(error.hint).toBeTruthy();
      }
    }
    expect(() => postgresBackend.open({ backend: "postgres", dir: "/x" }, {})).toThrowError(expect.objectContaining({ code: "APEX_E_CONFIG" }));
  });

  it("takes libpq's URL of a unix socket with a user and no host (postgres://user:password@/db?host=/dir), as the driver does", async () => {
    const database = new URL(await cluster.createDatabase()).pathname.slice(1);
    const socket = `host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}`;
    const hostless = `postgres://apex:unused-secret@/${database}?${socket}&connect_timeout=3`;
    expect(postgresUrlProblem(hostless)).toBeUndefined();
    const writer = open({ ...spec("sock"), url: hostless });
    await writer.set("/via/socket", 1);
    expect(open({ ...spec("sock"), url: `postgres:///${database}?${socket}&user=apex` }, true).get("/via/socket")).toBe(1);
    // The same store as that URL without user info names; its own settings are read from it.
    expect(storeIdentity({ ...spec("sock"), url: hostless })).toBe(storeIdentity({ ...spec("sock"), url: `postgres:///${database}?${socket}&user=apex` }));
    expect(storeIdentity({ ...spec("sock"), url: hostless })).toContain(`${cluster.socketDir}:${cluster.port}/${database}`);
    expect(connectTimeoutMs(hostless, {})).toBe(3000);
    expect(redactUrl(hostless)).not.toContain("unused-secret");
    // An unencoded / in its password is still a URL that does not parse.
    expect(postgresUrlProblem(`postgres://apex:a/b@/${database}?${socket}`)).toBe("is not a valid URL");
  });

  it("gives up connecting after the URL's connect_timeout (else PGCONNECT_TIMEOUT, else 10 s) to a server that never answers", async () => {
    // Accepted by the kernel, never answered: the caller is blocked in the bridge meanwhile.
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const target = `postgres://apex:secret@127.0.0.1:${port}/db?connect_timeout=2`;
      for (const attempt of [() => postgresBackend.open({ ...spec(), url: target }, {}), () => postgresBackend.exists({ ...spec(), url: target })]) {
        const started = Date.now();
        const caught = thrownBy(attempt);
        expect(caught).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE" });
        expect((caught as Error).message).toContain("no answer within 2 s");
        expect((caught as Error).message).not.toContain("secret");
        expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
        expect(Date.now() - started).toBeLessThan(30_000);
      }
    } finally {
      silent.close();
    }
    expect(connectTimeoutMs("postgres://h/db", {})).toBe(10_000);
    expect(connectTimeoutMs("postgres://h/db", { PGCONNECT_TIMEOUT: "5" })).toBe(5_000);
    expect(connectTimeoutMs("postgres://h/db?connect_timeout=7", { PGCONNECT_TIMEOUT: "5" })).toBe(7_000);
    expect(connectTimeoutMs("postgres://h/db?connect_timeout=0", {})).toBe(0);
    expect(connectTimeoutMs("postgres://h/db?connect_timeout=1", {})).toBe(2_000);
    expect(connectTimeoutMs("postgres://h/db?connect_timeout=soon", {})).toBe(10_000);
    // After a failed reconnection: a refusal within milliseconds is retried within milliseconds,
    // a connect timeout (the caller blocked for seconds) a second later.
    expect([reconnectBackoffMs(0.4), reconnectBackoffMs(3), reconnectBackoffMs(60), reconnectBackoffMs(2_000)]).toEqual([4, 30, 600, 1_000]);
  }, 90_000);

  it("says at once that the server on the port is not PostgreSQL (another service answering, or one closing the connection), instead of waiting for connect_timeout", async () => {
    // Another process (this thread blocks in the bridge): an HTTP-like service, and one that hangs up once asked.
    const services = spawn(
      process.execPath,
      [
        "-e",
        `const net = require("node:net");
         const http = net.createServer((s) => { s.on("error", () => {}); s.on("data", () => s.write("HTTP/1.1 400 Bad Request\\r\\nContent-Length: 0\\r\\n\\r\\n")); }).listen(0, "127.0.0.1", () => {
           const hangup = net.createServer((s) => { s.on("error", () => {}); s.on("data", () => s.end()); }).listen(0, "127.0.0.1", () => console.log(JSON.stringify([http.address().port, hangup.address().port])));
         });`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const [httpPort, hangupPort] = JSON.parse(await new Promise<string>((resolve) => services.stdout!.once("data", (data) => resolve(String(data))))) as [number, number];
      const cases: Array<[number, RegExp]> = [
        [httpPort, /does not speak PostgreSQL's protocol \(it answered "HTTP\/1\.1 400 Bad Request/],
        [hangupPort, /closed the connection without a word/],
      ];
      for (const [port, message] of cases) {
        const target = `postgres://apex:secret-pw@127.0.0.1:${port}/db?connect_timeout=20`;
        for (const attempt of [() => postgresBackend.open({ ...spec(), url: target }, {}), () => postgresBackend.exists({ ...spec(), url: target })]) {
          const started = Date.now();
          const caught = thrownBy(attempt);
          expect(caught).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE", exitCode: 1, hint: expect.stringContaining("host and port") });
          expect((caught as Error).message).toMatch(message);
          expect((caught as Error).message).toContain(`127.0.0.1:${port}`);
          expect((caught as Error).message).not.toContain("secret-pw");
          expect(Date.now() - started).toBeLessThan(5_000);
        }
      }
    } finally {
      services.kill("SIGKILL");
    }
  });

  it("watches through LISTEN on the project's channel, not by polling", async () => {
    const s = spec();
    const writer = open(s);
    const watcher = open(s);
    let calls = 0;
    const stop = watcher.subscribe(() => calls++);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const listening = async () =>
        (await client.query("SELECT query FROM pg_stat_activity WHERE application_name = 'apex-listen' AND datname = current_database()")).rows.map((r) => r.query as string);
      const deadline = Date.now() + 10_000;
      while (!(await listening()).some((q) => /^LISTEN apex_[0-9a-f]{32}$/.test(q)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect((await listening()).some((q) => /^LISTEN apex_[0-9a-f]{32}$/.test(q))).toBe(true);
      // A table-only transaction changes no revision and wakes nobody; a keyspace write does.
      await writer.transaction(() => writer.table<string, Buffer>("t", { keys: "string", values: "binary" }).put("k", Buffer.from("v")));
      await new Promise((r) => setTimeout(r, 200));
      expect(calls).toBe(0);
      await writer.set("/w", 1);
      const until = Date.now() + 5000;
      while (calls === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      expect(calls).toBe(1);
      // The last unsubscribe closes the LISTEN connection (it would hold the process open).
      stop();
      const gone = Date.now() + 10_000;
      while ((await listening()).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 20));
      expect(await listening()).toEqual([]);
    } finally {
      stop();
      await client.end();
    }
  });

  /** The pid of the backend's own connection (the bridge's worker), read on that connection. */
  const serverPid = (store: StorageBackend) => (store as unknown as { bridge: SyncBridge }).bridge.query("SELECT pg_backend_pid()")[0]![0] as number;
  /** Ends one server connection, synchronously (a second bridge), as a server restart or an idle timeout would. */
  const terminate = (pid: number) => {
    const killer = new SyncBridge();
    try {
      killer.connect(url, []);
      expect(killer.query("SELECT pg_terminate_backend($1)", [pid])[0]![0]).toBe(true);
    } finally {
      void killer.close();
    }
  };
  const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

  it("connects again after the server ended its connection: what was committed is there, and the next calls work", async () => {
    const store = open(spec());
    await store.set("/x", 1);
    const before = serverPid(store);
    terminate(before);
    sleepSync(200); // the driver sees the connection end
    // Nothing was sent on the lost connection: the read goes to a new one.
    expect(store.get("/x")).toBe(1);
    expect(serverPid(store)).not.toBe(before);
    await store.set("/y", 2);
    expect(store.get("/y")).toBe(2);
    // A connection lost again is made again again.
    terminate(serverPid(store));
    sleepSync(200);
    await store.set("/z", 3);
    expect([store.get("/x"), store.get("/y"), store.get("/z")]).toEqual([1, 2, 3]);
  });

  it("a write transaction whose connection is lost fails and writes nothing: its statements never go to the new connection", async () => {
    const store = open(spec()) as PostgresBackend;
    await store.set("/kept", 1);
    const pid = serverPid(store);
    let caught: unknown;
    try {
      await store.batch((batch) => {
        batch.set("/a", 1);
        terminate(pid);
        sleepSync(200);
        // A read inside the transaction after the loss: not answered from another connection.
        let inner: unknown;
        try {
          batch.get("/not-cached");
        } catch (error) {
          inner = error;
        }
        expect(inner).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE" });
        batch.set("/b", 2);
      });
    } catch (error) {
      caught = error;
    }
    expect(caught).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE" });
    expect((caught as Error).message).not.toContain(cluster.password);
    // Nothing of it on the server, and the store goes on (on a new connection).
    expect([store.get("/a"), store.get("/b"), store.get("/kept")]).toEqual([undefined, undefined, 1]);
    const revision = store.revision();
    await store.set("/after", 3);
    expect(store.revision()).toBe(revision + 1);
    const rows = await query(url, "SELECT count(*)::int AS n FROM apex.stores WHERE revision > 0");
    expect(rows[0]!.n).toBeGreaterThan(0);
  });

  it("a COMMIT whose connection is lost once sent is reported as perhaps committed, not as failed", async () => {
    const own = await cluster.createDatabase();
    const store = open({ ...spec(), url: own });
    await store.set("/kept", 1);
    const pid = serverPid(store);
    // The COMMIT waits (a deferred trigger), and another process ends the connection meanwhile: the answer never
    // comes, whatever the server did. It ends it once the COMMIT runs (pg_stat_activity), not 0.5 s after it started
    // against a COMMIT of 1.5 s: on a loaded machine it came after the COMMIT, or before it was sent.
    await query(own, "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$");
    await query(own, "CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON apex.log DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()");
    const killer = spawn(
      process.execPath,
      [
        "-e",
        `const pg = require(${JSON.stringify(require.resolve("pg"))});
        (async () => {
          const c = new pg.Client({ connectionString: ${JSON.stringify(own)} });
          await c.connect();
          const committing = async () => (await c.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query ILIKE 'COMMIT%'", [${pid}])).rows.length > 0;
          while (!(await committing())) await new Promise((resolve) => setTimeout(resolve, 20));
          await c.query("SELECT pg_terminate_backend(${pid})");
          await c.end();
        })();`,
      ],
      { stdio: "ignore" },
    );
    const killed = new Promise((resolve) => killer.once("exit", resolve));
    let caught: unknown;
    try {
      await store.set("/maybe", 2);
    } catch (error) {
      caught = error;
    } finally {
      await killed;
    }
    expect(caught).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE", details: { committed: "unknown" } });
    expect((caught as Error).message).toContain("after the COMMIT was sent: it may or may not have been committed");
    expect((caught as Error).message).not.toContain(cluster.password);
    // A statement lost before the COMMIT still fails as a whole, as before (the test above); and the store goes on.
    await query(own, "DROP TRIGGER slow ON apex.log");
    await store.set("/after", 3);
    expect(store.get("/after")).toBe(3);
  });

  it("the bridge never sends a statement pinned to a lost connection to a new one", () => {
    const bridge = new SyncBridge();
    try {
      bridge.connect(url, ["SET application_name = 'apex-pinned'"]);
      const first = bridge.connection;
      const pid = bridge.query("SELECT pg_backend_pid()")[0]![0] as number;
      terminate(pid);
      sleepSync(200);
      expect(() => bridge.run([{ text: "SELECT 1" }], first)).toThrow(/lost the connection/);
      // Unpinned: a new connection, with the settings connect() was given.
      expect(bridge.query("SELECT current_setting('application_name')")[0]![0]).toBe("apex-pinned");
      expect(bridge.connection).toBe(first + 1);
      expect(() => bridge.run([{ text: "SELECT 1" }], first)).toThrow(/a new one was made since/);
      expect(bridge.run([{ text: "SELECT 2" }], first + 1)).toEqual([[[2]]]);
    } finally {
      void bridge.close();
    }
  });

  it("a server out of reach is reported as unreachable, naming the URL, and used again by the first call once it is back", async () => {
    // The store reaches the server through a relay: down() is the network (or the server) going
    // away, up() its return.
    const relay = await postgresRelay();
    const relayPort = relay.port;
    try {
      const store = open({ ...spec(), url: relay.url(new URL(url).pathname.slice(1)) });
      await store.set("/x", 1);
      await relay.down();
      sleepSync(200);
      const caught = thrownBy(() => store.get("/x"));
      expect(caught).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE" });
      expect((caught as Error).message).toContain(`127.0.0.1:${relayPort}`);
      expect((caught as Error).message).not.toContain(cluster.password);
      // Asked which session a checkpoint is for, that is the answer too, not "no current session".
      expect(() => currentSessionId(store)).toThrow(expect.objectContaining({ code: "APEX_E_STORE_UNREACHABLE" }));
      await relay.up();
      // A server that refused at once (as one restarting does) is asked again at the next call:
      // right after it is back, nothing fails on the attempt made while it was down.
      expect(store.get("/x")).toBe(1);
      await store.set("/y", 2);
      expect(store.get("/y")).toBe(2);
    } finally {
      await relay.down();
    }
  });

  it("a statement the server cancels at the database's statement_timeout, or SSL the server does not offer, is said with what to change", async () => {
    const database = await cluster.createDatabase();
    const name = new URL(database).pathname.slice(1);
    await query(database, `ALTER DATABASE "${name}" SET statement_timeout = '1ms'`);
    // (before: the driver's words and no hint)
    expect(() => open({ ...spec(), url: database })).toThrowError(expect.objectContaining({ code: "APEX_E_STORE", message: expect.stringContaining("statement timeout"), hint: expect.stringContaining("options=-c%20statement_timeout%3D0") }));
    // As the hint says: the URL's options end it for APEX's connections.
    const store = open({ ...spec(), url: `${database}?options=-c%20statement_timeout%3D0` });
    await store.set("/after", 1);
    expect(store.get("/after")).toBe(1);
    expect(() => open({ ...spec(), url: `${database}?sslmode=verify-full` })).toThrowError(expect.objectContaining({ hint: expect.stringContaining("asks for SSL") }));
  });

  it("a connection the server ended for idling (idle_session_timeout) just as a statement went out is a lost connection: unreachable, and the next call connects again", async () => {
    const relay = await postgresRelay();
    try {
      const database = await cluster.createDatabase();
      const name = new URL(database).pathname.slice(1);
      await query(database, `ALTER DATABASE "${name}" SET idle_session_timeout = '1s'`);
      const store = open({ ...spec(), url: relay.url(name) });
      await store.set("/kept", 1);
      // The server ends the idle connection; its word (FATAL, 57P05) waits in the frozen relay, and
      // reaches the client as the answer to the next statement once another process thaws it.
      const pid = serverPid(store);
      relay.freeze();
      // Once the server has ended it (gone from pg_stat_activity), not after a fixed 1.5 s for a timeout of 1 s.
      await waitFor("the server to end the idle connection", async () => (await query(database, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", [pid])).length === 0, 30_000);
      spawn(process.execPath, ["-e", `setTimeout(() => process.kill(${relay.pid()}, "SIGCONT"), 300)`], { stdio: "ignore" });
      // (before: APEX_E_STORE "terminating connection due to idle-session timeout", which a watch or a supervisor gives up on)
      // (the relay may also cut the connection before it passes the server's word on: unreachable as well)
      expect(thrownBy(() => store.get("/kept"))).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE" });
      // The next call connects again (before, a FATAL answer left the dead connection in use).
      expect(store.get("/kept")).toBe(1);
    } finally {
      relay.thaw();
      await relay.down();
    }
  });

  it("a store whose database is dropped, or whose password is changed, under it says so at its next call (not a bare store error)", async () => {
    const own = await cluster.createDatabase();
    const name = new URL(own).pathname.slice(1);
    const role = `r_${name}`;
    await query(cluster.adminUrl, `CREATE ROLE ${role} LOGIN PASSWORD 'first'`);
    await query(own, `GRANT ALL ON SCHEMA public TO ${role}`);
    await query(cluster.adminUrl, `GRANT ALL ON DATABASE ${name} TO ${role}`);
    const asRole = own.replace(/\/\/[^@]*@/, `//${role}:first@`);
    const store = open({ ...spec(), url: asRole });
    await store.set("/x", 1);
    await query(cluster.adminUrl, `ALTER ROLE ${role} PASSWORD 'second'`);
    // The error of the next call that connects again (a call that was in flight when the server
    // ended the connection fails as unreachable, and the one after it connects again).
    const nextError = (): unknown => {
      for (let attempt = 0; ; attempt++) {
        try {
          store.get("/x");
        } catch (error) {
          if (attempt === 0 && (error as { details?: { code?: string } }).details?.code === "57P01") continue;
          return error;
        }
        if (attempt > 0) return undefined;
      }
    };
    await query(cluster.adminUrl, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", [role]);
    sleepSync(200);
    expect(nextError()).toMatchObject({ code: "APEX_E_STORE_AUTH" });
    sleepSync(1100);
    await query(cluster.adminUrl, `DROP DATABASE ${name} WITH (FORCE)`);
    await query(cluster.adminUrl, `ALTER ROLE ${role} PASSWORD 'first'`);
    expect(nextError()).toMatchObject({ code: "APEX_E_STORE_NO_DATABASE" });
    await query(cluster.adminUrl, `DROP ROLE ${role}`);
  });

  it("a server with no connection to spare (the role's CONNECTION LIMIT, max_connections) is a passing state, said so: not a bare store error", async () => {
    const own = await cluster.createDatabase();
    const name = new URL(own).pathname.slice(1);
    const role = `c_${name}`;
    await query(cluster.adminUrl, `CREATE ROLE ${role} LOGIN PASSWORD 'pw' CONNECTION LIMIT 1`);
    await query(cluster.adminUrl, `GRANT ALL ON DATABASE ${name} TO ${role}`);
    const asRole = own.replace(/\/\/[^@]*@/, `//${role}:pw@`);
    const holder = new (require("pg") as typeof import("pg")).Client({ connectionString: asRole });
    await holder.connect();
    try {
      const refused = thrownBy(() => open({ ...spec(), url: asRole }).get("/x"));
      // It was APEX_E_STORE "Cannot open the PostgreSQL store …: too many connections for role", which the supervisor's wait for a server that comes back does not take.
      expect(refused).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE", details: { code: "53300" } });
      expect((refused as Error).message).toContain("has no connection to spare: too many connections for role");
      expect((refused as Error).message).not.toContain("pw@");
      expect((refused as { hint?: string }).hint).toContain("CONNECTION LIMIT");
    } finally {
      await holder.end();
      await query(cluster.adminUrl, `DROP DATABASE ${name} WITH (FORCE)`);
      await query(cluster.adminUrl, `DROP ROLE ${role}`);
    }
  });

  it("a server that accepts only reads (a standby, default_transaction_read_only) refuses writes as the server's doing, not as APEX's own bug; reads go on", async () => {
    const own = await cluster.createDatabase();
    const s = { ...spec(), url: own };
    const before = open(s);
    await before.set("/x", 1);
    await before.close();
    await query(cluster.adminUrl, `ALTER DATABASE ${new URL(own).pathname.slice(1)} SET default_transaction_read_only = on`);
    const store = open(s);
    const refusal = expect.objectContaining({
      code: "APEX_E_STORE",
      message: expect.stringMatching(/accepts only reads: .*read-only transaction.*nothing was written/),
      hint: expect.stringContaining("hot standby"),
      details: expect.objectContaining({ sqlstate: "25006" }),
    });
    await expect(store.set("/x", 2)).rejects.toThrowError(refusal);
    expect([store.get("/x"), store.revision()]).toEqual([1, 1]);
    // A project's first writable open, which makes its row, says the same.
    expect(() => open({ ...s, project: `${s.project}-new` })).toThrowError(refusal);
  });

  it("a writer frozen inside its transaction holds up the project's other writers only until the server's idle-in-transaction timeout", async () => {
    // Every connection of the backend carries the timeout (60 s), unless the URL sets its own.
    const store = open(spec());
    const setting = (backend: StorageBackend) => (backend as unknown as { bridge: SyncBridge }).bridge.query("SHOW idle_in_transaction_session_timeout")[0]![0];
    expect(setting(store)).toBe(`${IDLE_IN_TRANSACTION_TIMEOUT_S / 60}min`);
    const quick = `${url}?options=${encodeURIComponent("-c idle_in_transaction_session_timeout=2s")}`;
    const s = { ...spec(), url: quick };
    const writer = open(s);
    expect(setting(writer)).toBe("2s");
    await writer.set("/before", 1);
    // A process of APEX's frozen in the middle of a write transaction (a laptop asleep): it
    // holds the project's lock, on a connection set up as the backend sets up its own.
    const frozen = new SyncBridge();
    try {
      frozen.connect(quick, sessionSettings(quick));
      frozen.run([{ text: "BEGIN" }, { text: "SELECT pg_advisory_xact_lock($1, hashtext($2))", values: [LOCK_CLASS, s.project] }]);
      const started = Date.now();
      await writer.set("/after", 2); // waits for the lock until the server ends the frozen transaction
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThan(1000);
      expect(waited).toBeLessThan(20_000);
      expect(writer.get("/after")).toBe(2);
      // The frozen process, woken, finds its transaction gone: nothing it does next commits.
      expect(() => frozen.run([{ text: "COMMIT" }], frozen.connection)).toThrow();
    } finally {
      void frozen.close();
    }
  });

  it("a write held up by another connection's lock fails with APEX_E_LOCKED, writing nothing, instead of waiting; a supervisor's (bounded) one before its bound, on the same connection", async () => {
    // Every connection carries a lock timeout (75 s, longer than the idle-in-transaction one),
    // unless the URL sets its own: here 1 s.
    expect(sessionSettings(url)).toContain(`SET lock_timeout = '${LOCK_TIMEOUT_S}s'`);
    const quick = `${url}?options=${encodeURIComponent("-c lock_timeout=1s")}`;
    const s = { ...spec(), url: quick };
    const store = open(s);
    const bounded = open({ ...spec(), url }) as PostgresBackend;
    expect((store as unknown as { bridge: SyncBridge }).bridge.query("SHOW lock_timeout")[0]![0]).toBe("1s");
    expect((bounded as unknown as { bridge: SyncBridge }).bridge.query("SHOW lock_timeout")[0]![0]).toBe(`${LOCK_TIMEOUT_S}s`);
    await store.set("/x", 1);
    await bounded.set("/x", 1);
    // Another client (a psql session, say) holds the records' rows inside a transaction.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT 1 FROM apex.kv WHERE path = '/x' FOR UPDATE");
      const refused = async (write: () => Promise<unknown>): Promise<{ error: ApexError; ms: number }> => {
        const started = Date.now();
        const error = await write().then(() => undefined, (e: unknown) => e);
        return { error: error as ApexError, ms: Date.now() - started };
      };
      const plain = await refused(() => store.set("/x", 2));
      expect(plain.error).toMatchObject({ code: "APEX_E_LOCKED", exitCode: 4, details: { sqlstate: "55P03" } });
      expect(plain.error.message).toMatch(/waiting for a lock another connection holds.*nothing was written/);
      expect(plain.error.hint).toContain("pg_stat_activity");
      expect(plain.error.message).not.toContain(cluster.password);
      expect(plain.ms).toBeLessThan(10_000);
      expect([store.get("/x"), store.revision()]).toEqual([1, 1]);
      // A supervisor's calls may wait only as long as its lease allows (here 3 s): its write fails
      // on the lock well before that, and its connection stays (not cut as a server out of reach).
      const pid = serverPid(bounded);
      bounded.boundCalls((startedAt) => startedAt + 3000);
      const supervised = await refused(() => bounded.set("/x", 2));
      expect(supervised.error).toMatchObject({ code: "APEX_E_LOCKED" });
      expect(supervised.ms).toBeLessThan(2500);
      expect(serverPid(bounded)).toBe(pid);
      expect(bounded.get("/x")).toBe(1);
      // The project's lock went with the failed transaction: other writes go on meanwhile.
      await bounded.set("/y", 1);
      await holder.query("ROLLBACK");
      // A table locked whole (an ALTER TABLE, VACUUM FULL) holds up reads too: the supervisor's
      // fail as its writes do.
      await holder.query("BEGIN");
      await holder.query("LOCK TABLE apex.kv IN ACCESS EXCLUSIVE MODE");
      const started = Date.now();
      expect(() => bounded.get("/x")).toThrowError(expect.objectContaining({ code: "APEX_E_LOCKED", message: expect.stringContaining("reading /x") }));
      expect(Date.now() - started).toBeLessThan(2500);
      expect(serverPid(bounded)).toBe(pid);
      await holder.query("ROLLBACK");
      await store.set("/x", 2);
      await bounded.set("/x", 2);
      expect([store.get("/x"), bounded.get("/x")]).toEqual([2, 2]);
    } finally {
      await holder.end();
    }
  });

  it("the driver bridge takes only its answer flag for an answer: a stray notify while a call waits does not end it", async () => {
    const { SyncBridge } = await import("../plugins/postgres/bridge.js");
    const { Worker } = await import("node:worker_threads");
    const bridge = new SyncBridge();
    bridge.connect(url, []);
    const flag = (bridge as unknown as { flag: Int32Array }).flag;
    // Another thread notifies the bridge's flag over and over, as a late notify of the previous
    // answer does; each call below waits ~20 ms for the server, long enough to be woken.
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const noise = new Worker(
      `const { workerData: { flag, stop } } = require("node:worker_threads");
       while (Atomics.load(stop, 0) === 0) { Atomics.notify(flag, 0); Atomics.wait(stop, 0, 0, 1); }`,
      { eval: true, workerData: { flag, stop } },
    );
    try {
      for (let i = 0; i < 20; i++) expect(bridge.query("SELECT $1::int AS n, pg_sleep(0.02)", [i])[0]![0]).toBe(i);
    } finally {
      Atomics.store(stop, 0, 1);
      await noise.terminate();
      await bridge.close();
    }
  });

  it("a call whose process was stopped while it waited takes the server's answer once continued, not the time stopped for the server's silence", async () => {
    // A supervisor's calls are bounded (here 3 s). Its process is stopped (SIGSTOP, a laptop
    // asleep) for 6 s while its statement waits on the server, which answers just after the
    // process was continued. The time stopped does not count: the call returns the answer. It
    // failed at once as "no answer from PostgreSQL within 6.0 s", which a supervisor logged as
    // "Cannot reach PostgreSQL" (and when the answer came while it was stopped, as it mostly does,
    // it failed whenever the call looked before the driver's thread had read it).
    const bridge = pathToFileURL(join(REPO_ROOT, "dist/plugins/postgres/bridge.js")).href;
    const key = 424242;
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    await holder.query("SELECT pg_advisory_lock($1)", [key]);
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { SyncBridge } = await import(${JSON.stringify(bridge)});
        const bridge = new SyncBridge();
        bridge.connect(${JSON.stringify(url)}, []);
        bridge.bound = (startedAt) => startedAt + 3000;
        const started = performance.now();
        try {
          console.log(JSON.stringify(bridge.query("SELECT 'stopped meanwhile', pg_advisory_lock(${key})")[0]));
        } catch (error) {
          console.log(error.message);
        }
        console.log(Math.round(performance.now() - started));
        await bridge.close();`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    registerProcess(child.pid);
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      // Its statement waits for the lock: the process is stopped, continued, then the lock let go (the server answers).
      const waiting = async () => (await holder.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE '%stopped meanwhile%' AND wait_event_type = 'Lock'")).rowCount;
      for (const until = Date.now() + 30_000; !(await waiting()) && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(child.kill("SIGSTOP")).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 6000));
      child.kill("SIGCONT");
      await new Promise((resolve) => setTimeout(resolve, 300));
      await holder.query("SELECT pg_advisory_unlock($1)", [key]);
      await exited;
      const [answer, took] = out.trim().split("\n");
      expect(answer).toBe(JSON.stringify(["stopped meanwhile", ""]));
      // The call spanned the stop.
      expect(Number(took)).toBeGreaterThanOrEqual(6000);
      expect(child.exitCode).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGCONT");
        child.kill("SIGKILL");
      }
      await holder.end();
    }
  });

  it("serialises writers of one project: a second writer waits for the first's commit", async () => {
    const s = spec();
    const a = open(s);
    const b = open(s);
    await a.set("/counter", 0);
    // Read-modify-write from two instances: under the project's lock none is lost.
    for (let i = 0; i < 20; i++) {
      for (const writer of [a, b]) {
        await writer.batch((batch) => batch.set("/counter", (batch.get("/counter") as number) + 1));
      }
    }
    expect(a.get("/counter")).toBe(40);
    expect(b.revision()).toBe(41);
  });

  it("a writer that waited for the project's lock sees what its holder committed, whatever isolation the database defaults to", async () => {
    // A database (or role) whose transactions default to REPEATABLE READ or SERIALIZABLE: a write
    // transaction's snapshot was taken as its lock statement began, before the wait, so it read
    // the revision the holder had just replaced and failed on the log's key (or a serialization error).
    for (const isolation of ["repeatable read", "serializable"]) {
      const database = await cluster.createDatabase();
      await query(database, `ALTER DATABASE "${new URL(database).pathname.slice(1)}" SET default_transaction_isolation = '${isolation}'`);
      const s = { ...spec(), url: database };
      const store = open(s);
      await store.set("/first", 1);
      // Another writer holds the project's lock, then commits a change (revision 2), as APEX writes one.
      const holder = spawn(
        process.execPath,
        [
          "-e",
          `const pg = require(${JSON.stringify(require.resolve("pg"))});
          (async () => {
            const c = new pg.Client({ connectionString: ${JSON.stringify(database)} });
            await c.connect();
            await c.query("BEGIN ISOLATION LEVEL READ COMMITTED");
            await c.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [${LOCK_CLASS}, ${JSON.stringify(s.project)}]);
            console.log("locked");
            await new Promise((resolve) => setTimeout(resolve, 500));
            await c.query("UPDATE apex.stores SET revision = 2 WHERE project = $1", [${JSON.stringify(s.project)}]);
            await c.query("INSERT INTO apex.log (project, first, paths, kinds, actor, time) VALUES ($1, 2, '{/other}', 'p', 'user:other', 0)", [${JSON.stringify(s.project)}]);
            await c.query("INSERT INTO apex.kv (project, path, value, codec) VALUES ($1, '/other', $2, 0)", [${JSON.stringify(s.project)}, Buffer.from(${JSON.stringify([...encodeJson(2)])})]);
            await c.query("COMMIT");
            await c.end();
          })();`,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      const exited = new Promise((resolve) => holder.once("exit", resolve));
      await new Promise((resolve) => holder.stdout!.once("data", resolve));
      // Begun while the lock is held: it waits, then goes on after the holder's revision.
      expect(await store.set("/mine", 3)).toBe(3);
      await exited;
      expect(store.get("/other")).toBe(2);
      expect(Array.from(store.changesSince(0), (change) => `${change.revision} ${change.path}`)).toEqual(["1 /first", "2 /other", "3 /mine"]);
    }
  });

  it("reads many records in one go as getEncoded reads them one by one, seeing a transaction's own writes", async () => {
    const store = open(spec());
    await store.batch((batch) => {
      for (let i = 0; i < 2500; i++) batch.set(`/many/${String(i).padStart(4, "0")}`, { i });
      batch.set("/gone", "soon");
    });
    // More paths than one statement takes, a missing one and a repeated one.
    const paths = [...Array.from({ length: 2500 }, (_, i) => `/many/${String(i).padStart(4, "0")}`), "/missing", "/many/0007"];
    const many = store.getEncodedMany!(paths);
    expect(many.length).toBe(paths.length);
    paths.forEach((path, i) => expect(many[i]).toEqual(store.getEncoded(path)));
    expect(many[2500]).toBeUndefined();
    await store.transaction(() => {
      store.batchSync((batch) => {
        batch.set("/many/0001", "changed");
        batch.delete("/gone");
      });
      const inside = store.getEncodedMany!(["/many/0001", "/gone", "/many/0002"]);
      expect(inside).toEqual([store.getEncoded("/many/0001"), undefined, store.getEncoded("/many/0002")]);
      expect(store.get("/many/0001")).toBe("changed");
    });
    expect(() => store.getEncodedMany!(["not a path"])).toThrowError(expect.objectContaining({ code: expect.stringMatching(/^APEX_E_/) }));
  });

  it("a checkpoint reads the records that changed since the last one in one go, not path by path", async () => {
    const { createCheckpoint } = await import("../plugins/checkpoint/checkpoints.js");
    const store = open(spec()) as PostgresBackend;
    await store.batch((batch) => {
      batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: [] });
      for (let i = 0; i < 200; i++) batch.set(`/notes/${i}`, { i });
    });
    await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
    await store.batch((batch) => {
      for (let i = 0; i < 50; i++) batch.set(`/notes/${i}`, { i, changed: true });
    });
    const many: string[][] = [];
    const single: string[] = [];
    const original = { many: store.getEncodedMany.bind(store), one: store.getEncoded.bind(store) };
    store.getEncodedMany = (paths) => (many.push([...paths]), original.many(paths));
    store.getEncoded = (path) => (single.push(path), original.one(path));
    const { manifest } = await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
    expect(many.length).toBe(1);
    expect(new Set(many[0])).toEqual(new Set(Array.from({ length: 50 }, (_, i) => `/notes/${i}`)));
    expect(single.filter((path) => path.startsWith("/notes/"))).toEqual([]);
    expect(manifest.memory.keys).toBe(200);
  });

  it("stores values that compress (keyspace and tables) deflated, others as they are, and reads back the bytes written", async () => {
    const s = spec();
    const store = open(s);
    const text = { note: "the same few words again and again ".repeat(40) };
    const random = randomBytes(2048);
    const rowBytes = Buffer.from("row ".repeat(500));
    const hashes = Buffer.concat(Array.from({ length: 64 }, (_, i) => createHash("sha256").update(String(i)).digest()));
    const table = store.table<string, Buffer>("t", { keys: "string", values: "binary" });
    await store.batch((batch) => {
      batch.set("/c/text", text);
      batch.set("/c/small", "tiny");
    });
    await store.transaction(() => {
      table.put("text", rowBytes);
      table.put("hashes", hashes);
      table.put("random", random);
    });
    const stored = await query(url, `SELECT path AS key, codec, octet_length(value) AS bytes FROM apex.kv WHERE project = $1
      UNION ALL SELECT convert_from(key, 'UTF8'), codec, octet_length(value) FROM apex.rows WHERE project = $1 ORDER BY 1`, [s.project]);
    const byKey = Object.fromEntries(stored.map((row) => [row.key, row]));
    expect(byKey["/c/text"]).toMatchObject({ codec: 1 });
    expect(byKey["/c/text"].bytes).toBeLessThan(store.getEncoded("/c/text")!.length / 4);
    expect(byKey["text"]).toMatchObject({ codec: 1 });
    expect(byKey["text"].bytes).toBeLessThan(rowBytes.length / 4);
    // Random bytes, short values and SHA-256 hashes (tree nodes, hash indexes) are not worth it.
    for (const key of ["random", "/c/small", "hashes"]) expect(byKey[key]).toMatchObject({ codec: 0 });
    for (const reader of [store, open(s, true)]) {
      expect(reader.get("/c/text")).toEqual(text);
      expect(reader.getEncodedMany!(["/c/text", "/c/small"]).map((bytes) => decodeValue(bytes!))).toEqual([text, "tiny"]);
      expect(Array.from(reader.tree("/c"), (entry) => [entry.path, entry.value])).toEqual([
        ["/c/small", "tiny"],
        ["/c/text", text],
      ]);
      const readerTable = reader.table<string, Buffer>("t", { keys: "string", values: "binary" });
      expect(readerTable.get("text")).toEqual(rowBytes);
      expect(readerTable.get("hashes")).toEqual(hashes);
      expect(Array.from(readerTable.getRange(), ({ key, value }) => [key, value])).toEqual([
        ["hashes", hashes],
        ["random", random],
        ["text", rowBytes],
      ]);
    }
    // Overwritten with a value too short to compress: the row's codec goes back to 0.
    await store.set("/c/text", "short");
    expect(open(s, true).get("/c/text")).toBe("short");
    expect((await query(url, `SELECT codec FROM apex.kv WHERE project = $1 AND path = '/c/text'`, [s.project]))[0]).toEqual({ codec: 0 });
  });

  it("reads a store whose tables predate the codec column, and adds the column on the first writable open", async () => {
    const old = await cluster.createDatabase();
    const s = { ...spec("old"), url: old };
    // The schema and rows as an APEX without compression left them.
    await query(old, `CREATE SCHEMA apex`);
    await query(old, `CREATE TABLE apex.projects (project text COLLATE "C" PRIMARY KEY, revision bigint NOT NULL DEFAULT 0, created timestamptz NOT NULL DEFAULT now())`);
    await query(old, `CREATE TABLE apex.kv (project text COLLATE "C" NOT NULL, path text COLLATE "C" NOT NULL, value bytea NOT NULL, PRIMARY KEY (project, path))`);
    await query(old, `CREATE TABLE apex.log (project text COLLATE "C" NOT NULL, first bigint NOT NULL, paths text[] NOT NULL, kinds text NOT NULL, actor text NOT NULL, time bigint NOT NULL, PRIMARY KEY (project, first))`);
    await query(old, `CREATE TABLE apex.tables (project text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, keys text NOT NULL, vals text NOT NULL, PRIMARY KEY (project, name))`);
    await query(old, `CREATE TABLE apex.rows (project text COLLATE "C" NOT NULL, tbl text COLLATE "C" NOT NULL, key bytea NOT NULL, value bytea NOT NULL, PRIMARY KEY (project, tbl, key))`);
    const note = { note: "x".repeat(3000) };
    const rowBytes = Buffer.from("row ".repeat(500));
    await query(old, `INSERT INTO apex.projects (project, revision) VALUES ($1, 1)`, [s.project]);
    await query(old, `INSERT INTO apex.kv (project, path, value) VALUES ($1, '/old/note', $2)`, [s.project, encodeJson(note)]);
    await query(old, `INSERT INTO apex.log (project, first, paths, kinds, actor, time) VALUES ($1, 1, '{/old/note}', 'p', 'user:test', 0)`, [s.project]);
    await query(old, `INSERT INTO apex.tables VALUES ($1, 't', 'string', 'binary')`, [s.project]);
    await query(old, `INSERT INTO apex.rows VALUES ($1, 't', $2, $3)`, [s.project, Buffer.from("k"), rowBytes]);
    const codecColumns = async () => Number((await query(old, `SELECT count(*) AS n FROM pg_attribute WHERE attrelid IN ('apex.kv'::regclass, 'apex.rows'::regclass) AND attname = 'codec'`))[0].n);
    // Read-only, it reads the old rows and changes nothing.
    const reader = open(s, true);
    expect(reader.get("/old/note")).toEqual(note);
    expect(Array.from(reader.tree("/old"), (entry) => entry.value)).toEqual([note]);
    expect(reader.table<string, Buffer>("t", { keys: "string", values: "binary" }).get("k")).toEqual(rowBytes);
    expect(await codecColumns()).toBe(0);
    await reader.close();
    // Writable, it adds the column; old rows read as they are, new ones are compressed.
    const writer = open(s);
    expect(await codecColumns()).toBe(2);
    expect(writer.get("/old/note")).toEqual(note);
    expect(writer.table<string, Buffer>("t", { keys: "string", values: "binary" }).get("k")).toEqual(rowBytes);
    await writer.set("/new/note", note);
    expect(open(s, true).get("/new/note")).toEqual(note);
    expect(await query(old, `SELECT path, codec FROM apex.kv ORDER BY path`)).toEqual([
      { path: "/new/note", codec: 1 },
      { path: "/old/note", codec: 0 },
    ]);
    expect(Array.from(writer.changesSince(0), (change) => change.path)).toEqual(["/old/note", "/new/note"]);
    // An older APEX's write names no codec: it is refused, not stored raw under codec 1.
    await expect(
      query(old, `INSERT INTO apex.kv (project, path, value) VALUES ($1, '/new/note', $2) ON CONFLICT (project, path) DO UPDATE SET value = EXCLUDED.value`, [s.project, encodeJson({ raw: true })]),
    ).rejects.toThrow(/codec/);
    await expect(query(old, `INSERT INTO apex.rows VALUES ($1, 't', $2, $3)`, [s.project, Buffer.from("k2"), rowBytes])).rejects.toThrow(/codec/);
    expect(open(s, true).get("/new/note")).toEqual(note);
  });

  it("reads a record once per write transaction (nobody else writes under the project's lock), and then what it wrote", async () => {
    const s = spec();
    const store = open(s) as PostgresBackend;
    const table = store.table<string, Buffer>("t", { keys: "string", values: "binary" });
    await store.transaction(() => table.put("header", Buffer.from("one")));
    await store.set("/config", { a: 1 });
    const bridge = store["bridge"];
    const run = bridge.run.bind(bridge);
    let crossings = 0;
    bridge.run = (steps) => (crossings++, run(steps));
    try {
      await store.transaction(() => {
        const start = crossings;
        for (let i = 0; i < 3; i++) {
          expect(table.get("header")).toEqual(Buffer.from("one"));
          expect(table.get("absent")).toBeUndefined();
          expect(store.has("/config")).toBe(true);
          expect(store.get("/config")).toEqual({ a: 1 });
          expect(store.has("/nothing")).toBe(false);
        }
        expect(crossings - start).toBe(4);
        table.put("header", Buffer.from("two"));
        table.put("absent", Buffer.from("now here"));
        store.batchSync((batch) => {
          batch.delete("/config");
          batch.set("/nothing", "something");
        });
        // A range read sends the writes; the reads after it get them without asking the server.
        expect(Array.from(table.getKeys())).toEqual(["absent", "header"]);
        expect(Array.from(store.keysBelow("/"))).toEqual(["/nothing"]);
        const sent = crossings;
        expect(table.get("header")).toEqual(Buffer.from("two"));
        expect(table.get("absent")).toEqual(Buffer.from("now here"));
        expect(store.get("/config")).toBeUndefined();
        expect(store.get("/nothing")).toBe("something");
        expect(crossings).toBe(sent);
      });
      // The next transaction reads afresh: a commit by another connection in between is seen.
      const other = open(s);
      await other.transaction(() => other.table<string, Buffer>("t", { keys: "string", values: "binary" }).put("header", Buffer.from("three")));
      await store.transaction(() => expect(table.get("header")).toEqual(Buffer.from("three")));
      // A transaction that rolls back leaves nothing behind it either.
      await expect(
        store.transaction(() => {
          table.put("header", Buffer.from("rolled back"));
          Array.from(table.getKeys());
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      await store.transaction(() => expect(table.get("header")).toEqual(Buffer.from("three")));
      expect(table.get("header")).toEqual(Buffer.from("three"));
    } finally {
      bridge.run = run;
    }
  });

  it("stores a binary-keyed table many entries to a row, each row under the TOAST threshold, and no other table so", async () => {
    const s = spec();
    const store = open(s);
    const index = store.table<Buffer, Buffer>("index", { keys: "binary", values: "binary" });
    const other = store.table<number, Buffer>("other", { keys: "uint32", values: "binary" });
    const keyOf = (i: number) => createHash("sha256").update(`h${i}`).digest();
    for (let round = 0; round < 3; round++) {
      await store.transaction(() => {
        for (let i = round * 3000; i < (round + 1) * 3000; i++) index.put(keyOf(i), Buffer.from([1, i & 0x7f, 2, 3, 4, 5]));
        other.put(round, Buffer.from("row"));
      });
    }
    // A sweep: every other entry removed.
    await store.transaction(() => {
      for (let i = 0; i < 9000; i += 2) index.remove(keyOf(i));
    });
    const [rows] = await query(url, `SELECT count(*)::int AS rows, sum(n)::int AS entries, max(octet_length(entries)) AS widest FROM apex.groups WHERE project = $1 AND tbl = 'index'`, [s.project]);
    expect(rows!.entries).toBe(4500);
    expect(rows!.rows).toBeLessThan(4500 / 10);
    expect(rows!.widest).toBeLessThanOrEqual(GROUP_BYTES);
    expect(await query(url, `SELECT tbl, count(*)::int AS n FROM apex.rows WHERE project = $1 GROUP BY tbl`, [s.project])).toEqual([{ tbl: "other", n: 3 }]);
    expect(index.getStats().entryCount).toBe(4500);
    expect(index.get(keyOf(1))).toEqual(Buffer.from([1, 1, 2, 3, 4, 5]));
    expect(index.get(keyOf(2))).toBeUndefined();
  });

  it("sends a large batch in bounded pieces and still commits it as one", async () => {
    const s = spec();
    const store = open(s);
    const value = "v".repeat(1000);
    // ~24 MB of writes: more than one flush inside the transaction.
    const { revision } = await store.batch((batch) => {
      for (let i = 0; i < 24_000; i++) batch.set(`/big/${String(i).padStart(6, "0")}`, value);
    });
    expect(revision).toBe(24_000);
    const other = open(s);
    expect(Array.from(other.keysBelow("/big")).length).toBe(24_000);
    const changes = Array.from(other.changesSince(0));
    expect(changes.length).toBe(24_000);
    expect(changes.map((c) => c.revision)).toEqual(Array.from({ length: 24_000 }, (_, i) => i + 1));
    expect(changes[23_999]!.path).toBe("/big/023999");
  });
});
