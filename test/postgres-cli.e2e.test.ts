// The PostgreSQL backend as a user meets it through the built CLI: what its errors say (--json
// details), which URLs name the same store, the SSL modes of a URL, and a watch started while the
// server cannot be reached.
import { execFileSync, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "./fixtures/agents/harness.js";
import { APEX_BIN, cleanEnv, runApex, tempDir } from "./helpers/cli.js";
import { createSharedDatabase, postgresRelay, query, sharedPostgres, type SharedPostgres } from "./support/postgres.js";

let cluster: SharedPostgres;
beforeAll(async () => {
  cluster = await sharedPostgres();
}, 180_000);

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A project directory whose store is `url` under project id `id`. */
function projectOn(url: string, id = "cli"): string {
  const { dir, cleanup } = tempDir("apex-pg-cli-");
  cleanups.push(cleanup);
  writeFileSync(join(dir, "apex.config.yaml"), `store:\n  backend: postgres\n  url: ${JSON.stringify(url)}\n  project: ${id}\n`);
  return dir;
}

/**
 * A PostgreSQL server with SSL, as far as a client can tell: a process on a port of its own that
 * answers an SSLRequest with 'S', ends TLS with a self-signed certificate for CN=localhost (made
 * here with openssl; `ca`: its file) and relays the rest to the shared cluster, which has no SSL.
 * A client that starts without SSL is relayed as it is. Stopped by pid.
 */
async function sslServer(): Promise<{ port: number; ca: string; stop(): Promise<void> }> {
  const { dir, cleanup } = tempDir("apex-pg-ssl-");
  const key = join(dir, "key.pem");
  const ca = join(dir, "cert.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", ca, "-subj", "/CN=localhost", "-days", "2"], { stdio: "ignore" });
  const script = `const net = require("node:net"), tls = require("node:tls"), fs = require("node:fs");
    const context = { key: fs.readFileSync(${JSON.stringify(key)}), cert: fs.readFileSync(${JSON.stringify(ca)}) };
    net.createServer((client) => {
      client.once("data", (first) => {
        const upstream = net.connect(${cluster.port}, "127.0.0.1");
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
        if (first.length === 8 && first.readUInt32BE(4) === 80877103) {
          client.write("S");
          const secure = new tls.TLSSocket(client, { isServer: true, ...context });
          secure.on("error", () => upstream.destroy());
          secure.pipe(upstream).pipe(secure);
        } else {
          upstream.write(first);
          client.pipe(upstream).pipe(client);
        }
      });
    }).listen(0, "127.0.0.1", function () { console.log(this.address().port); });`;
  // A port of its own (0), said once it listens: a port looked up as free before could be taken meanwhile.
  const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (chunk: Buffer) => resolve(Number(String(chunk).trim())));
    child.once("exit", (code) => reject(new Error(`the SSL relay exited (${code})`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }
    cleanup();
  };
  cleanups.push(stop);
  return { port, ca, stop };
}

describe("the PostgreSQL store through the CLI", () => {
  it("sslmode means what it means to psql, and the driver's many-line SECURITY WARNING is never printed", async () => {
    const url = await createSharedDatabase();
    const database = new URL(url).pathname.slice(1);
    const ssl = await sslServer();
    const through = (parameters: string) => `${cluster.url(database, { port: ssl.port })}?${parameters}`;
    const dir = projectOn(url, "ssl");
    let value = 0;
    const works = (storeUrl: string, env: NodeJS.ProcessEnv = {}) => {
      value += 1;
      const set = runApex(["memory", "set", "/v", String(value)], { cwd: dir, env: { ...env, APEX_STORE_URL: storeUrl } });
      expect(set.stderr, storeUrl).toBe("");
      expect(set.status, storeUrl).toBe(0);
    };
    // require: encrypted, a self-signed certificate taken (as libpq does); with sslrootcert it is checked.
    works(through("sslmode=require"));
    // verify-ca checks the certificate against sslrootcert, not the host name (the certificate is for localhost).
    works(through(`sslmode=verify-ca&sslrootcert=${encodeURIComponent(ssl.ca)}`));
    // prefer: encrypted where the server has SSL, else not (the shared cluster has none); allow the same.
    works(through("sslmode=prefer"));
    works(`${url}?sslmode=prefer`);
    works(`${url}?sslmode=allow`);
    // PGSSLMODE stands for the URL's missing sslmode; on a unix socket libpq uses no SSL, whatever the mode.
    works(cluster.url(database, { port: ssl.port }), { PGSSLMODE: "require" });
    works(`postgres://apex@/${database}?host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}&sslmode=require`);
    works(`postgres://apex@/${database}?host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}`, { PGSSLMODE: "verify-full" });
    // A watch, whose LISTEN connection is made apart, says nothing either.
    const watch = runApex(["memory", "watch", "/v", "--json", "--timeout", "1"], { cwd: dir, env: { APEX_STORE_URL: through("sslmode=require") } });
    expect(watch.stderr).toBe("");
    expect(watch.status).toBe(0);
    expect(JSON.parse(watch.stdout)).toMatchObject({ kind: "current", path: "/v", value });

  }, 60_000);

  it("an sslmode the driver would fail on late or read wrongly is refused before connecting, and a certificate that fails its check says what to change", async () => {
    const database = new URL(await createSharedDatabase()).pathname.slice(1);
    const ssl = await sslServer();
    const through = (parameters: string) => `${cluster.url(database, { port: ssl.port })}?${parameters}`;
    const dir = projectOn(cluster.url(database), "ssl");
    // verify-full checks the host name too: 127.0.0.1 is not the certificate's; refused, without the warning.
    const full = runApex(["memory", "show", "/v"], { cwd: dir, env: { APEX_STORE_URL: through(`sslmode=verify-full&sslrootcert=${encodeURIComponent(ssl.ca)}`) } });
    expect(full.status).toBe(1);
    expect(full.stderr).not.toContain("SECURITY WARNING");
    expect(full.stderr).toContain("127.0.0.1");
    expect(full.stderr).toContain("use sslmode=require to encrypt without checking it");
    // Refused before any connection, as a config error (exit 2): verify-ca without its CA, an sslmode libpq does not know, a CA file that is not there.
    for (const [parameters, said] of [
      ["sslmode=verify-ca", "sslmode=verify-ca without sslrootcert"],
      ["sslmode=requir", 'unknown sslmode "requir"'],
      [`sslmode=require&sslrootcert=${encodeURIComponent(join(dir, "missing.pem"))}`, "cannot be read (ENOENT)"],
    ]) {
      const refused = runApex(["memory", "show", "/v", "--json"], { cwd: dir, env: { APEX_STORE_URL: through(parameters!) } });
      expect(refused.status, parameters).toBe(2);
      const { error } = JSON.parse(refused.stderr) as { error: { code: string; message: string } };
      expect(error.code).toBe("APEX_E_CONFIG");
      expect(error.message).toContain(said);
      expect(refused.stderr).not.toContain("SECURITY WARNING");
    }
    // As a migration's target: a usage error with the same hint.
    expect(runApex(["memory", "set", "/v", "1"], { cwd: dir }).status).toBe(0);
    const migrate = runApex(["store", "migrate", "--to", through("sslmode=verify-ca"), "--json"], { cwd: dir });
    expect(migrate.status).toBe(2);
    expect(JSON.parse(migrate.stderr).error.hint).toContain("sslrootcert=FILE");
  }, 60_000);

  it("an error's details name the URL as given (no password) and the project on its own, not an internal url#project", async () => {
    const database = await createSharedDatabase();
    const dir = projectOn(database, "details");
    expect(runApex(["memory", "set", "/x", "1"], { cwd: dir }).status).toBe(0);
    const role = `ro_${process.pid}_${Date.now().toString(36)}`;
    await query(database, `CREATE ROLE ${role} LOGIN PASSWORD 'ro-secret'; GRANT USAGE ON SCHEMA apex TO ${role}; GRANT SELECT ON ALL TABLES IN SCHEMA apex TO ${role}`);
    cleanups.push(async () => {
      await query(database, `DROP OWNED BY ${role}; DROP ROLE ${role}`);
    });
    const theirs = new URL(database);
    theirs.username = role;
    theirs.password = "ro-secret";
    const result = runApex(["memory", "set", "/x", "2", "--json"], { cwd: dir, env: { APEX_STORE_URL: theirs.toString() } });
    expect(result.status).toBe(4);
    const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; details: Record<string, unknown> } };
    theirs.password = "";
    expect(error.code).toBe("APEX_E_STORE_PERMISSION");
    expect(error.details).toEqual({ url: theirs.toString(), project: "details", sqlstate: "42501" });
    expect(error.message).not.toContain("#details");
    expect(error.message).toContain('(project "details")');
    expect(result.stderr).not.toContain("ro-secret");
  });

  it("a record whose bytes do not decode (changed by hand) is APEX_E_STORE_DAMAGED naming it, as on LMDB, not APEX_E_INTERNAL; validate finds it and repair removes it", async () => {
    const database = await createSharedDatabase();
    const dir = projectOn(database, "damaged");
    for (const path of ["/notes/raw", "/notes/packed", "/notes/fine"]) expect(runApex(["memory", "set", path, "1"], { cwd: dir }).status).toBe(0);
    // One row's bytes replaced, another's marked compressed though they do not inflate.
    await query(database, `UPDATE apex.kv SET value = '\\xc1'::bytea WHERE project = 'damaged' AND path = '/notes/raw'`);
    await query(database, `UPDATE apex.kv SET value = '\\xdeadbeef'::bytea, codec = 1 WHERE project = 'damaged' AND path = '/notes/packed'`);
    const redacted = new URL(database);
    redacted.password = "";
    for (const [args, path] of [
      [["memory", "show", "/notes/raw"], "/notes/raw"],
      [["memory", "show", "/notes/packed"], "/notes/packed"],
      [["memory", "query", "/notes/*"], "/notes/packed"],
      [["memory", "export"], "/notes/packed"],
    ] as const) {
      const result = runApex([...args, "--json"], { cwd: dir });
      expect(result.status, result.stderr).toBe(1);
      const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; hint: string; details: Record<string, unknown> } };
      expect(error.code).toBe("APEX_E_STORE_DAMAGED");
      expect(error.message).toContain(`the record at ${path} does not decode`);
      expect(error.hint).toContain("apex session validate");
      expect(error.details).toEqual({ url: redacted.toString(), project: "damaged", path });
      expect(result.stderr).not.toContain(new URL(database).password);
    }
    const validate = runApex(["session", "validate"], { cwd: dir });
    expect(validate.status).toBe(1);
    expect(validate.stdout).toMatch(/record-undecodable +The record at \/notes\/raw cannot be decoded/);
    expect(validate.stdout).toMatch(/record-undecodable +The record at \/notes\/packed cannot be decoded/);
    expect(runApex(["session", "repair"], { cwd: dir }).status).toBe(0);
    expect(runApex(["session", "validate"], { cwd: dir }).status).toBe(0);
    expect(runApex(["memory", "export"], { cwd: dir }).stdout).toContain('"/notes/fine": 1');
  });

  it("a server's own message that ends in punctuation is joined as it is: no \"..\" after it", async () => {
    const database = await createSharedDatabase();
    const dir = projectOn(database, "frozen");
    expect(runApex(["memory", "set", "/x", "1"], { cwd: dir }).status).toBe(0);
    // A maintenance freeze as a DBA writes one: a trigger on every table of the schema refusing writes, in a sentence.
    await query(database, `CREATE FUNCTION public.frozen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'Writes are frozen for maintenance.' USING ERRCODE = '42501'; END $$;
      DO $$ DECLARE t text; BEGIN FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'apex' LOOP EXECUTE format('CREATE TRIGGER frozen BEFORE INSERT OR UPDATE OR DELETE ON apex.%I FOR EACH ROW EXECUTE FUNCTION public.frozen()', t); END LOOP; END $$`);
    const result = runApex(["memory", "set", "/x", "2", "--json"], { cwd: dir });
    expect(result.status, result.stderr).toBe(4);
    const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string } };
    expect(error.code).toBe("APEX_E_STORE_PERMISSION");
    expect(error.message).toMatch(/: Writes are frozen for maintenance\.$/);
  });

  it("two unix-socket directories whose names differ only in case are two stores: migrate does not take the other for the project's own", async () => {
    const database = new URL(await createSharedDatabase()).pathname.slice(1);
    const own = `postgres://apex@/${database}?host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}`;
    const dir = projectOn(own, "sockets");
    expect(runApex(["memory", "set", "/x", "1"], { cwd: dir }).status).toBe(0);
    // The same path but for its case: another directory (none here, so no server).
    const other = cluster.socketDir.replace(/socket$/, "SOCKET");
    for (const to of [`postgres://apex@/${database}?host=${encodeURIComponent(other)}&port=${cluster.port}`, `postgres://${encodeURIComponent(other)}:${cluster.port}/${database}`]) {
      const result = runApex(["store", "migrate", "--to", to, "--json"], { cwd: dir });
      const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string } };
      expect(error.code, error.message).toBe("APEX_E_STORE_UNREACHABLE");
      expect(error.message).toContain(`${other}/.s.PGSQL.${cluster.port}`);
    }
  });

  it("a watch started while the server cannot be reached waits for it, says so once, then prints as usual; Ctrl-C or --timeout ends the wait", async () => {
    const url = await createSharedDatabase();
    const database = new URL(url).pathname.slice(1);
    const dir = projectOn(url, "waiting");
    expect(runApex(["memory", "set", "/w/before", "1"], { cwd: dir }).status).toBe(0);
    const relay = await postgresRelay();
    cleanups.push(() => relay.down());
    await relay.down();
    const env = { ...cleanEnv(), NO_COLOR: "1", APEX_STORE_URL: relay.url(database) };
    const child = spawn(process.execPath, [APEX_BIN, "memory", "watch", "/w/**", "--json", "--timeout", "60"], { cwd: dir, env });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    cleanups.push(() => void child.kill("SIGKILL"));
    await waitFor("the watch to say it waits for the server", () => stderr.includes("Waiting for it"), 15_000);
    // Still there after a few attempts, and said once.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(child.exitCode).toBeNull();
    expect(stderr.match(/Cannot reach PostgreSQL/g)).toHaveLength(1);
    expect(stderr).not.toContain(cluster.password);
    expect(runApex(["memory", "set", "/w/during", "2"], { cwd: dir }).status).toBe(0);
    await relay.up();
    await waitFor("the watch to print the current values once the server is reached", () => stdout.includes('"/w/during"'), 15_000);
    expect(stderr).toContain("reachable again");
    expect(runApex(["memory", "set", "/w/after", "3"], { cwd: dir }).status).toBe(0);
    await waitFor("the watch to print a change", () => stdout.includes('"/w/after"'), 15_000);
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(stderr).not.toContain("error[");

    // Never reached before --timeout: the server's error, as a command that needs it fails.
    await relay.down();
    const timedOut = runApex(["memory", "watch", "/w/**", "--timeout", "1"], { cwd: dir, env: { APEX_STORE_URL: relay.url(database) } });
    expect(timedOut.status).toBe(1);
    expect(timedOut.stderr).toContain("Waiting for it");
    expect(timedOut.stderr).toContain("error[APEX_E_STORE_UNREACHABLE]");
    // Another refusal (a wrong password) is not waited for.
    const refused = runApex(["memory", "watch", "/w/**", "--timeout", "30"], { cwd: dir, env: { APEX_STORE_URL: cluster.url(database, { password: "wrong" }) } });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain("APEX_E_STORE_AUTH");
    expect(refused.stderr).not.toContain("Waiting");
  }, 60_000);

  it("a URL libpq reads but the driver cannot (a bad port= parameter, a list of hosts) is a config error (exit 2), not a failure to connect", async () => {
    const dir = projectOn(await createSharedDatabase(), "urls");
    const base = cluster.url("postgres");
    const refusals: Array<[string, string]> = [
      [`${base}?port=abc`, 'has a bad port "abc"'],
      [base.replace(`:${cluster.port}/`, `:${cluster.port},127.0.0.1:${cluster.port}/`), "names several hosts"],
      [base.replace("127.0.0.1", "127.0.0.1,localhost"), "names several hosts"],
    ];
    for (const [url, said] of refusals) {
      const result = runApex(["memory", "show", "/x", "--json"], { cwd: dir, env: { APEX_STORE_URL: url } });
      expect(result.status, url).toBe(2);
      const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string } };
      expect(error.code, url).toBe("APEX_E_CONFIG");
      expect(error.message).toContain(said);
      expect(result.stderr).not.toContain(cluster.password);
    }
  });

  it("a URL without a database whose default database is missing names it (the user's name, or PGDATABASE), with a createdb that makes it", async () => {
    const dir = projectOn(await createSharedDatabase(), "urls");
    const base = cluster.url("postgres");
    // No database in the URL: the driver connects to the one named after the user (apex), or PGDATABASE's.
    const bare = base.replace(/\/postgres$/, "");
    for (const [env, name] of [[{}, "apex"], [{ PGDATABASE: "no_such_db" }, "no_such_db"]] as const) {
      const result = runApex(["memory", "show", "/x", "--json"], { cwd: dir, env: { ...env, APEX_STORE_URL: bare } });
      expect(result.status).toBe(3);
      const { error } = JSON.parse(result.stderr) as { error: { code: string; hint: string; details: { database: string } } };
      expect(error.code).toBe("APEX_E_STORE_NO_DATABASE");
      expect(error.details.database).toBe(name);
      expect(error.hint).toContain(`createdb ${name}`);
    }
  });
});
