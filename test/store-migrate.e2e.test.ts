// `apex store migrate --to URL` through the built CLI: a project with a real session (the
// reference agents, memory, checkpoints) copied from LMDB to a real throwaway PostgreSQL
// cluster and back to an LMDB directory. Every read command gives the same answer on each
// copy, object hashes are identical, the source's file is byte for byte unchanged, and the
// refusals (running supervisor, non-empty target, bad URL) write nothing.
import { redactUrl } from "../core/store/open.js";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, REPO_ROOT } from "./fixtures/agents/harness.js";
import pg from "pg";
import { COPY_LOCK_CLASS } from "../plugins/postgres/backend.js";
import { postgresRelay, query, sharedPostgres, type SharedPostgres } from "./support/postgres.js";

let cluster: SharedPostgres;
let project: Project;
let backDir: string;

const agent = (name: string) => [`  ${name}:`, "    command: node", `    args: [${JSON.stringify(join(REPO_ROOT, "agents", `${name}.mjs`))}]`, "    env:", '      APEX_AGENT_PACE: "0.2"'].join("\n");
const CONFIG = ["session:", "  auto_recovery: false", "agents:", agent("supervisor"), agent("coder"), agent("adversary"), "plugins:", "  checkpoint: {}", "  retention: {}", "  metrics: {}", "  history: {}", ""].join("\n");

beforeAll(async () => {
  cluster = await sharedPostgres();
  project = new Project(CONFIG, "apex-migrate-");
  backDir = mkdtempSync(join(tmpdir(), "apex-migrate-back-"));
  rmSync(backDir, { recursive: true });
}, 120_000);
afterAll(async () => {
  project?.cleanup();
  if (backDir) rmSync(backDir, { recursive: true, force: true });
});

const env = (url?: string) => (url ? { APEX_STORE_URL: url } : {});

function ok(args: string[], url?: string): any {
  const result = project.apex(args, { env: env(url) });
  if (result.status !== 0) throw new Error(`apex ${args.join(" ")} exited ${result.status}: ${result.stderr}\n${result.stdout}`);
  return args.includes("--json") ? JSON.parse(result.stdout) : result.stdout;
}

const dataFile = () => join(project.storeDir, "store.mdb");
const hashFile = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** What the read commands say of the project's store (APEX_STORE_URL = url, else the source). */
function reads(url?: string) {
  const checkpoints = ok(["checkpoint", "list", "--oldest", "--json"], url);
  return {
    sessions: ok(["session", "list", "--json"], url),
    notes: ok(["memory", "show", "/notes", "--json"], url),
    plan: ok(["memory", "show", "/notes/plan", "--json"], url),
    checkpoints,
    diff: ok(["checkpoint", "diff", checkpoints.items[0].id, checkpoints.items.at(-1).id, "--json"], url),
    shows: checkpoints.items.map((item: { id: string }) => ok(["checkpoint", "show", item.id, "--json"], url)),
    validate: ok(["session", "validate", "--json"], url),
  };
}

describe("apex store migrate", () => {
  let source: ReturnType<typeof reads>;
  let pgUrl: string;

  it("refuses while a supervisor runs, writing nothing to the target", async () => {
    const started = project.start(["--task", "migrate me"]);
    ok(["memory", "set", "/notes/plan", JSON.stringify({ steps: ["copy", "verify"], owner: "ann" })]);
    ok(["checkpoint", "create", "before the second note"]);
    ok(["memory", "set", "/notes/second", JSON.stringify("é and \u{1F600}")]);
    ok(["checkpoint", "create", "after the second note", "--pin"]);

    pgUrl = await cluster.createDatabase();
    const refused = project.apex(["store", "migrate", "--to", pgUrl, "--json"]);
    expect(refused.status, refused.stderr).toBe(4);
    expect(JSON.parse(refused.stderr.trim().split("\n").at(-1)!).error.code).toBe("APEX_E_SESSION_ACTIVE");
    const lmdbTarget = join(backDir, "..", `${backDir.split("/").at(-1)}-refused`);
    const refusedLmdb = project.apex(["store", "migrate", "--to", `lmdb:${lmdbTarget}`]);
    expect(refusedLmdb.status).toBe(4);
    // It names the session and its supervisor (on this host: no host named).
    expect(refusedLmdb.stderr).toContain(`Session ${started.session_id} is running (supervisor pid ${started.supervisor_pid}): the store would change under the copy.`);
    expect(existsSync(lmdbTarget)).toBe(false);
    ok(["stop"]);
    // The target stayed empty: a migration into it now succeeds (it refuses a target with data, below).
  }, 120_000);

  it("copies LMDB to PostgreSQL: same answers, same hashes, the source file unchanged", () => {
    source = reads();
    expect(source.checkpoints.items.length).toBeGreaterThanOrEqual(2);
    expect(source.validate.ok).toBe(true);
    const before = hashFile(dataFile());

    const result = project.apex(["store", "migrate", "--to", pgUrl, "--json"]);
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ source: { backend: "lmdb" }, target: { backend: "postgres" }, verified: true });
    expect(report.checkpoints.total).toBe(source.validate.checkpoints.total);
    expect(report.checkpoints.verified).toBe(report.checkpoints.total);
    expect(report.tables.checkpoints).toBeGreaterThan(0);
    // The password is never printed: the URL is shown with *** in its place.
    expect(report.switch.env).toBe(`APEX_STORE_URL=${redactUrl(pgUrl)}`);
    expect(redactUrl(pgUrl)).not.toBe(pgUrl);
    expect(result.stdout).not.toContain(new URL(pgUrl).password);
    expect(report.switch.config).toContain("backend: postgres");
    expect(result.stderr).toMatch(/copied table blobs: \d+ rows/);
    expect(result.stderr).toContain("validating checkpoints on the target");

    expect(hashFile(dataFile())).toBe(before);
    const target = reads(pgUrl);
    expect(target).toEqual(source);
    // Object hashes: checkpoint ids and the memory roots of their manifests.
    expect(target.shows.map((show: any) => [show.checkpoint_id, show.manifest])).toEqual(source.shows.map((show: any) => [show.checkpoint_id, show.manifest]));
    expect(source.plan.value).toEqual({ steps: ["copy", "verify"], owner: "ann" });
  }, 240_000);

  it("prints the config line to switch in human output, and refuses a target that holds data", () => {
    const again = project.apex(["store", "migrate", "--to", pgUrl]);
    expect(again.status, again.stderr).toBe(4);
    expect(again.stderr).toContain("error[APEX_E_CONFLICT]");
    // The target holds this store's whole copy (a migration stopped after its copy, before its report, leaves the same): said, with how to use it.
    expect(again.stderr).toContain("already holds a whole copy of this store (revision ");
    expect(again.stderr).toContain("hint: That copy can be used as it is: put `store: { backend: postgres");
    expect(again.stderr).not.toContain(new URL(pgUrl).password);
    // Still the same copy afterwards.
    expect(reads(pgUrl)).toEqual(source);
  }, 120_000);

  it("refuses the project's own store as the target however --to writes it (postgresql://, parameters, a symlink), saying so, and changes nothing", () => {
    // The same database and project id: before, taken for another store (refused as holding data,
    // or, while a command wrote to it meanwhile, as an interrupted copy to empty).
    const own = `${pgUrl.replace(/^postgres:/, "postgresql:")}?application_name=elsewhere`;
    const link = join(mkdtempSync(join(tmpdir(), "apex-migrate-link-")), "store");
    symlinkSync(project.storeDir, link);
    const before = hashFile(dataFile());
    try {
      for (const [to, from] of [[own, pgUrl], [`lmdb:${link}`, undefined]] as const) {
        const result = project.apex(["store", "migrate", "--to", to, "--json"], { env: env(from) });
        expect(result.status, result.stderr).toBe(4);
        expect(JSON.parse(result.stdout || result.stderr).error).toMatchObject({ code: "APEX_E_CONFLICT", message: "The target is the project's own store." });
      }
      expect(ok(["memory", "show", "/notes/plan", "--json"], pgUrl)).toEqual(source.plan);
      expect(hashFile(dataFile())).toBe(before);
    } finally {
      rmSync(dirname(link), { recursive: true, force: true });
    }
  }, 120_000);

  it("starts again over what an interrupted migration left in the target, and still refuses a target something else wrote to", async () => {
    // What a migration stopped half-way leaves (Ctrl-C, a lost connection): tables copied (the
    // last of them in part) and no keyspace, which is written last, in one transaction.
    const copy = await cluster.createDatabase();
    const id = basename(project.dir);
    const full = project.apex(["store", "migrate", "--to", copy, "--json"]);
    expect(full.status, full.stderr).toBe(0);
    const revision = 0;
    for (const table of ["kv", "log"]) await query(copy, `DELETE FROM apex.${table} WHERE project = $1`, [id]);
    await query(copy, "UPDATE apex.stores SET revision = 0 WHERE project = $1", [id]);
    await query(copy, "DELETE FROM apex.rows WHERE project = $1 AND tbl = 'checkpoints'", [id]);
    const again = project.apex(["store", "migrate", "--to", copy, "--json"]);
    expect(again.status, again.stderr).toBe(0);
    const report = JSON.parse(again.stdout);
    expect(again.stderr).toContain(`the target holds an interrupted copy of this store (revision ${revision} of ${report.revision}): emptied, copying again`);
    // (the migration verified the copy record by record, and every checkpoint on it)
    expect(report).toMatchObject({ verified: true, checkpoints: { total: source.validate.checkpoints.total, verified: source.validate.checkpoints.total } });
    // A whole copy is refused as before, named so; so is one a command wrote to since (its log is not the source's).
    const whole = project.apex(["store", "migrate", "--to", copy, "--json"]);
    expect(whole.status).toBe(4);
    expect(JSON.parse(whole.stdout || whole.stderr).error).toMatchObject({ code: "APEX_E_CONFLICT", details: { whole_copy: true, revision: report.revision } });
    await query(copy, "DELETE FROM apex.rows WHERE project = $1 AND tbl = 'checkpoints'", [id]);
    expect(ok(["memory", "set", "/elsewhere", "1"], copy)).toContain("/elsewhere");
    const written = project.apex(["store", "migrate", "--to", copy]);
    expect(written.status).toBe(4);
    expect(written.stderr).toContain("already holds data;");
    // The target named as the report names it: it read `…/db#ID`, a URL with a fragment.
    expect(written.stderr).toContain(`(postgres at ${redactUrl(copy, "")}, project ${id}) already holds data;`);
    expect(written.stderr).not.toContain(`#${id}`);
  }, 120_000);

  it("refuses to copy into a target another migration is copying into, and copies once it ended", async () => {
    // Two copies into one target at once emptied each other's rows as an interrupted copy, and
    // one of them could print success over a copy the other then changed.
    const copy = await cluster.createDatabase();
    const other = new pg.Client({ connectionString: copy });
    await other.connect();
    try {
      await other.query("SELECT pg_advisory_lock($1, hashtext($2))", [COPY_LOCK_CLASS, basename(project.dir)]);
      const refused = project.apex(["store", "migrate", "--to", copy, "--json"]);
      expect(refused.status, refused.stderr).toBe(4);
      expect(JSON.parse(refused.stdout || refused.stderr).error).toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("Another `apex store migrate` into") });
      expect(await query(copy, "SELECT (SELECT count(*) FROM apex.kv) + (SELECT count(*) FROM apex.rows) AS n")).toEqual([{ n: "0" }]);
    } finally {
      await other.end();
    }
    const copied = project.apex(["store", "migrate", "--to", copy, "--json"]);
    expect(copied.status, copied.stderr).toBe(0);
  }, 120_000);

  it("a target lost during the copy is named as the target, and the next run copies again", async () => {
    const relay = await postgresRelay();
    try {
      const database = new URL(await cluster.createDatabase()).pathname.slice(1);
      // The connection is cut as it sends the replay of the log (statements carry the paths).
      await relay.cut("/notes/plan", "marker");
      const cut = project.apex(["store", "migrate", "--to", relay.url(database), "--json"]);
      expect(cut.status, cut.stderr).toBe(1);
      const error = JSON.parse(cut.stdout || cut.stderr.split("\n").find((line) => line.startsWith("{"))!).error;
      expect(error.code).toBe("APEX_E_STORE_UNREACHABLE");
      // (before: "Is the server running, and are the host and port in the store URL right (store.url in apex.config.yaml, or APEX_STORE_URL)?")
      expect(error.hint).toContain("The copy's target (--to) failed during the copy");
      const again = project.apex(["store", "migrate", "--to", relay.url(database), "--json"]);
      expect(again.status, again.stderr).toBe(0);
    } finally {
      await relay.down();
    }
  }, 120_000);

  it("rejects a bad URL with a usage error and writes nothing", () => {
    for (const bad of ["mysql://localhost/apex", "lmdb:", "postgres-ish"]) {
      const result = project.apex(["store", "migrate", "--to", bad, "--json"]);
      expect(result.status, `${bad}: ${result.stderr}`).toBe(2);
      expect(JSON.parse(result.stderr.trim().split("\n").at(-1)!).error.code).toBe("APEX_E_USAGE");
    }
    const missing = project.apex(["store", "migrate"]);
    expect(missing.status).toBe(2);
    expect(existsSync(join(project.dir, "postgres-ish"))).toBe(false);
    // A postgres:// URL that is not a URL (a port out of range or not a number) is named as the bad --to.
    for (const bad of ["postgres://apex:secret@127.0.0.1:99999/apex", "postgres://apex:secret@127.0.0.1:abc/apex"]) {
      const result = project.apex(["store", "migrate", "--to", bad, "--json"]);
      expect(result.status, `${bad}: ${result.stderr}`).toBe(2);
      const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
      expect(error.code).toBe("APEX_E_USAGE");
      expect(error.message).toContain("--to");
      expect(result.stderr).not.toContain("secret");
    }
    // An LMDB target that is a file, or below one, is a usage error, not an internal one.
    const file = join(backDir, "..", `${backDir.split("/").at(-1)}-file`);
    writeFileSync(file, "not a directory\n");
    try {
      for (const target of [file, join(file, "below")]) {
        const result = project.apex(["store", "migrate", "--to", `lmdb:${target}`, "--json"]);
        expect(result.status, `${target}: ${result.stderr}`).toBe(2);
        const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
        expect(error.code).toBe("APEX_E_USAGE");
        expect(error.message).toContain(file);
      }
      expect(readFileSync(file, "utf8")).toBe("not a directory\n");
    } finally {
      rmSync(file, { force: true });
    }
    // A directory that holds other files is not an empty target: refused before anything in it is touched
    // (the store would have made it and every file in it owner-only).
    const busy = join(backDir, "..", `${backDir.split("/").at(-1)}-busy`);
    mkdirSync(busy, { mode: 0o755 });
    writeFileSync(join(busy, "notes.txt"), "mine\n", { mode: 0o644 });
    chmodSync(busy, 0o755);
    chmodSync(join(busy, "notes.txt"), 0o644);
    try {
      const result = project.apex(["store", "migrate", "--to", `lmdb:${busy}`, "--json"]);
      expect(result.status, result.stderr).toBe(4);
      const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
      expect(error.code).toBe("APEX_E_CONFLICT");
      expect(error.message).toContain("notes.txt");
      expect(readdirSync(busy)).toEqual(["notes.txt"]);
      expect([statSync(busy).mode & 0o777, statSync(join(busy, "notes.txt")).mode & 0o777]).toEqual([0o755, 0o644]);
    } finally {
      rmSync(busy, { recursive: true, force: true });
    }
  }, 60_000);

  it("gives up on a server that accepts the connection but never answers, with APEX_E_STORE_UNREACHABLE (no hang)", async () => {
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as AddressInfo).port;
    // PGCONNECT_TIMEOUT shortens the default 10 s (connectTimeoutMs has its own test) to the least a URL may ask.
    const run = project.apexAsync(["store", "migrate", "--to", `postgres://apex:secret@127.0.0.1:${port}/apex`, "--json"], { env: { PGCONNECT_TIMEOUT: "2" } });
    const started = Date.now();
    // A hang is ended here (by its pid), so that it fails the test rather than outliving it.
    const guard = setTimeout(() => run.child.kill("SIGKILL"), 90_000);
    try {
      const result = await run.done;
      expect(result.status, result.stderr).toBe(1);
      const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
      expect(error.code).toBe("APEX_E_STORE_UNREACHABLE");
      expect(error.message).toContain(`127.0.0.1:${port}`);
      expect(result.stderr).not.toContain("secret");
      expect(error.message).toContain("no answer within 2 s");
      // What to fix is --to, not the project's own store URL.
      expect(error.hint).toContain("in --to right");
      // A hang would last until the call timeout (10 min).
      expect(Date.now() - started).toBeLessThan(60_000);
    } finally {
      clearTimeout(guard);
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
      silent.close();
    }
  }, 120_000);

  it("copies PostgreSQL back to an LMDB directory with the same answers", () => {
    const result = project.apex(["store", "migrate", "--to", `lmdb:${backDir}`], { env: env(pgUrl) });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain(`store: { backend: lmdb, url: ${JSON.stringify(backDir)} }`);
    expect(result.stdout).toMatch(/(\d+) of \1 checkpoints verified on the target/);
    expect(reads(`lmdb:${backDir}`)).toEqual(source);

    // An LMDB target that holds data is refused too, and its file left as it was.
    const copied = hashFile(join(backDir, "store.mdb"));
    const again = project.apex(["store", "migrate", "--to", `lmdb:${backDir}`]);
    expect(again.status, again.stderr).toBe(4);
    expect(again.stderr).toContain("error[APEX_E_CONFLICT]");
    expect(hashFile(join(backDir, "store.mdb"))).toBe(copied);

    // A directory with a space (and not ASCII): the printed variable can be pasted into a shell as it is.
    const spaced = `${backDir} copy ü`;
    try {
      const copy = project.apex(["store", "migrate", "--to", `lmdb:${spaced}`, "--json"], { env: env(pgUrl) });
      expect(copy.status, copy.stderr).toBe(0);
      const report = JSON.parse(copy.stdout);
      expect(report.switch.env).toBe(`APEX_STORE_URL='lmdb:${spaced}'`);
      const shell = spawnSync("/bin/sh", ["-c", `${report.switch.env}; printf %s "$APEX_STORE_URL"`], { encoding: "utf8" });
      expect(shell.stdout).toBe(`lmdb:${spaced}`);
      expect(ok(["memory", "show", "/notes/plan", "--json"], `lmdb:${spaced}`)).toEqual(source.plan);
    } finally {
      rmSync(spaced, { recursive: true, force: true });
    }
  }, 240_000);
});

describe("the lines apex store migrate prints to switch to the target", () => {
  it("say that the password shown as *** is to be written back (or kept in ~/.pgpass or PGPASSWORD), only when the URL has one", async () => {
    const own = new Project(CONFIG, "apex-migrate-lines-");
    try {
      expect(own.apex(["memory", "set", "/a", "1"]).status).toBe(0);
      const note = "(with the password where *** stands, or without it in the URL and kept in ~/.pgpass or PGPASSWORD)";
      // Pasted as printed, the config line's URL had the password *** and was refused (APEX_E_STORE_AUTH).
      const withPassword = own.apex(["store", "migrate", "--to", await cluster.createDatabase()]);
      expect(withPassword.status, withPassword.stderr).toBe(0);
      expect(withPassword.stdout).toContain(":***@");
      expect(withPassword.stdout).toContain(note);
      // Without one in the URL (a trusted unix socket), and to LMDB, there is nothing to write back.
      const name = new URL(await cluster.createDatabase()).pathname.slice(1);
      const socket = `postgres://${new URL(cluster.adminUrl).username}@/${name}?host=${encodeURIComponent(cluster.socketDir)}&port=${cluster.port}`;
      const lmdb = join(mkdtempSync(join(tmpdir(), "apex-migrate-lines-lmdb-")), "copy");
      for (const to of [socket, `lmdb:${lmdb}`]) {
        const copied = own.apex(["store", "migrate", "--to", to]);
        expect(copied.status, copied.stderr).toBe(0);
        expect(copied.stdout).toContain("To use it, put in apex.config.yaml:");
        expect(copied.stdout).not.toContain(note);
      }
      rmSync(join(lmdb, ".."), { recursive: true, force: true });
    } finally {
      own.cleanup();
    }
  }, 120_000);
});
