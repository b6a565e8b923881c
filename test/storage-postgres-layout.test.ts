/**
 * The PostgreSQL schema's layouts (plugins/postgres/backend.ts, LAYOUT): a database laid out by
 * an APEX before layout 2 (a row of apex.rows per hash index entry, revisions in apex.projects)
 * is read as it is by a read-only open, and upgraded by the first writable open, every project
 * in it, with the same objects; after that an older APEX is refused at its first statement, and
 * a layout newer than this code knows is refused by it.
 *
 * The layout-1 database is written here with the statements the APEX before layout 2 ran, from a
 * real checkpoint store (LMDB, through the port): an upgrade is tested on what that APEX wrote,
 * not on what this one would.
 */
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { StorageBackend, StoreSpec, TableOptions } from "../core/store/port.js";
import { CATALOG_DB, CATALOG_TABLE } from "../plugins/checkpoint/catalog.js";
import { createCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { FILTER_DB } from "../plugins/checkpoint/engine/hash-filter.js";
import { JOURNAL_DB, ObjectStore, PACKS_DB, TREES_DB, VALUES_DB } from "../plugins/checkpoint/engine/objects.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { LAYOUT, postgresBackend } from "../plugins/postgres/backend.js";
import { encodeKey, encodeTableValue } from "../plugins/postgres/keys.js";
import { tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { query, sharedPostgres, type SharedPostgres } from "./support/postgres.js";

let cluster: SharedPostgres;
const cleanups: Array<() => void> = [];
const opened: StorageBackend[] = [];

beforeAll(async () => {
  cluster = await sharedPostgres();
}, 120_000);
afterEach(async () => {
  for (const backend of opened.splice(0).reverse()) await backend.close();
});
afterAll(() => {
  for (const cleanup of cleanups) cleanup();
});

const track = <T extends StorageBackend>(backend: T) => (opened.push(backend), backend);


/** The schema as the APEX before layout 2 created it. */
const LAYOUT_1 = [
  `CREATE SCHEMA IF NOT EXISTS apex`,
  `CREATE TABLE IF NOT EXISTS apex.projects (project text COLLATE "C" PRIMARY KEY, revision bigint NOT NULL DEFAULT 0, created timestamptz NOT NULL DEFAULT now())`,
  `CREATE TABLE IF NOT EXISTS apex.kv (project text COLLATE "C" NOT NULL, path text COLLATE "C" NOT NULL, value bytea NOT NULL, codec smallint NOT NULL, PRIMARY KEY (project, path))`,
  `CREATE TABLE IF NOT EXISTS apex.log (project text COLLATE "C" NOT NULL, first bigint NOT NULL, paths text[] NOT NULL, kinds text NOT NULL, actor text NOT NULL, time bigint NOT NULL, PRIMARY KEY (project, first))`,
  `CREATE TABLE IF NOT EXISTS apex.tables (project text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, keys text NOT NULL, vals text NOT NULL, PRIMARY KEY (project, name))`,
  `CREATE TABLE IF NOT EXISTS apex.rows (project text COLLATE "C" NOT NULL, tbl text COLLATE "C" NOT NULL, key bytea NOT NULL, value bytea NOT NULL, codec smallint NOT NULL, PRIMARY KEY (project, tbl, key))`,
];

/** The checkpoint engine's tables and their kinds. */
const TABLES: Record<string, TableOptions> = {
  [VALUES_DB]: { keys: "binary", values: "binary" },
  [TREES_DB]: { keys: "binary", values: "binary" },
  [PACKS_DB]: { keys: "uint32", values: "binary" },
  [JOURNAL_DB]: { keys: "uint32", values: "binary" },
  [FILTER_DB]: { keys: "uint32", values: "binary" },
  [CATALOG_DB]: CATALOG_TABLE,
};

/** Writes `source` into a layout-1 database as project `project`, row by row as that APEX stored it (codec 0: raw). */
async function writeLayout1(database: string, project: string, source: StorageBackend): Promise<void> {
  const client = new pg.Client({ connectionString: database });
  await client.connect();
  try {
    for (const text of LAYOUT_1) await client.query(text);
    await client.query(`INSERT INTO apex.projects (project, revision) VALUES ($1, $2)`, [project, source.revision()]);
    const paths = Array.from(source.keys({}));
    await client.query(`INSERT INTO apex.kv (project, path, value, codec) SELECT $1, p, v, 0 FROM unnest($2::text[], $3::bytea[]) AS x(p, v)`, [project, paths, paths.map((path) => source.getEncoded(path)!)]);
    for (const change of source.changesSince(0)) {
      await client.query(`INSERT INTO apex.log (project, first, paths, kinds, actor, time) VALUES ($1, $2, $3, $4, $5, $6)`, [
        project,
        change.revision,
        [change.path],
        change.kind === "delete" ? "d" : "p",
        change.actor,
        change.time,
      ]);
    }
    for (const name of source.tableNames()) {
      const options = TABLES[name];
      if (!options) throw new Error(`unexpected table ${name}`);
      await client.query(`INSERT INTO apex.tables (project, name, keys, vals) VALUES ($1, $2, $3, $4)`, [project, name, options.keys, options.values]);
      const keys: Buffer[] = [];
      const values: Buffer[] = [];
      for (const { key, value } of source.table(name, options).getRange()) {
        keys.push(encodeKey(options.keys, key, name));
        values.push(encodeTableValue(options.values, value, name));
      }
      await client.query(`INSERT INTO apex.rows (project, tbl, key, value, codec) SELECT $1, $2, k, v, 0 FROM unnest($3::bytea[], $4::bytea[]) AS x(k, v)`, [project, name, keys, values]);
    }
  } finally {
    await client.end();
  }
}

/** A checkpoint store on LMDB: checkpoints whose objects are in the hash indexes (a journal merge) and in the journal. */
async function checkpointStore(): Promise<StorageBackend> {
  const { dir, cleanup } = tempDir("apex-layout-");
  cleanups.push(cleanup);
  const store = track(LmdbStore.open(dir, { actor: "user:test" }));
  await store.batch((batch) => {
    batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
    for (let i = 0; i < 400; i++) batch.set(`/state/k${i}`, { i, note: `note ${i} `.repeat(1 + (i % 7)) });
  });
  await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
  for (let step = 1; step <= 5; step++) {
    await store.batch((batch) => {
      for (let i = step; i < 400; i += 13) batch.set(`/state/k${i}`, { i, step });
    });
    await createCheckpoint(store, { sessionId: "s1", trigger: "interval" });
    if (step === 3) await store.transaction(() => ObjectStore.of(store).mergeJournal());
  }
  return store;
}

const hashesOf = (store: StorageBackend) => ({
  values: [...ObjectStore.of(store).hashes("value")].sort(),
  trees: [...ObjectStore.of(store).hashes("tree")].sort(),
});

describe("postgres schema layouts", () => {
  it("reads a layout-1 database as it is, upgrades it on the first writable open (every project), and refuses an older APEX after", async () => {
    const source = await checkpointStore();
    const expected = hashesOf(source);
    expect(source.table(VALUES_DB, TABLES[VALUES_DB]!).getStats().entryCount).toBeGreaterThan(400);
    const database = await cluster.createDatabase();
    await writeLayout1(database, "one", source);
    await writeLayout1(database, "two", source);
    const specOf = (project: string): StoreSpec => ({ backend: "postgres", dir: "/nonexistent/.apex", url: database, project });
    const layoutTable = async () => (await query(database, `SELECT to_regclass('apex.layout') IS NOT NULL AS present`))[0]!.present;

    // Read-only: the rows as they are; nothing changes.
    const reader = track(postgresBackend.open(specOf("one"), { readOnly: true }));
    expect(validateStore(reader)).toMatchObject({ ok: true, checkpoints: { total: 6, verified: 6 } });
    expect(hashesOf(reader)).toEqual(expected);
    expect(await layoutTable()).toBe(false);

    // The first writable open upgrades the whole schema, in one transaction.
    const writer = track(postgresBackend.open(specOf("one"), { actor: "user:test" }));
    expect(await layoutTable()).toBe(true);
    expect(await query(database, `SELECT version FROM apex.layout`)).toEqual([{ version: LAYOUT }]);
    expect((await query(database, `SELECT relkind FROM pg_class WHERE oid = 'apex.projects'::regclass`))[0]).toEqual({ relkind: "v" });
    expect(await query(database, `SELECT count(*)::int AS n FROM apex.rows WHERE tbl IN ($1, $2)`, [VALUES_DB, TREES_DB])).toEqual([{ n: 0 }]);
    const grouped = await query(database, `SELECT project, tbl, count(*)::int AS rows, sum(n)::int AS entries FROM apex.groups GROUP BY 1, 2 ORDER BY 1, 2`);
    // The hash indexes' entries (the journal's stay rows of apex.rows).
    const entries = Object.fromEntries([VALUES_DB, TREES_DB].map((name) => [name, source.table(name, TABLES[name]!).getStats().entryCount]));
    expect(grouped.map((row) => [row.project, row.tbl, row.entries])).toEqual(["one", "two"].flatMap((project) => [VALUES_DB, TREES_DB].map((tbl) => [project, tbl, entries[tbl]])));
    // Many entries to a row.
    for (const row of grouped) expect(row.rows * 10).toBeLessThan(row.entries);
    for (const project of ["one", "two"]) {
      const store = project === "one" ? writer : track(postgresBackend.open(specOf(project), { readOnly: true }));
      expect(validateStore(store)).toMatchObject({ ok: true, checkpoints: { total: 6, verified: 6 } });
      expect(hashesOf(store)).toEqual(expected);
      expect(store.revision()).toBe(source.revision());
      expect(store.get("/state/k13")).toEqual(source.get("/state/k13"));
    }
    // Checkpoints go on, and a journal merge writes into the groups.
    await writer.set("/state/k0", { after: "upgrade" });
    await createCheckpoint(writer, { sessionId: "s1", trigger: "manual" });
    await writer.transaction(() => ObjectStore.of(writer).mergeJournal());
    expect(validateStore(writer)).toMatchObject({ ok: true, checkpoints: { total: 7, verified: 7 } });
    // A second writable open (another host) finds nothing to do.
    track(postgresBackend.open(specOf("two"), { actor: "user:test" }));
    expect(validateStore(track(postgresBackend.open(specOf("two"), { readOnly: true })))).toMatchObject({ ok: true, checkpoints: { total: 6, verified: 6 } });

    // An APEX before layout 2: its probe passes, its first statement on the project is refused.
    const [probe] = await query(
      database,
      `SELECT to_regclass('apex.projects') IS NOT NULL AND to_regclass('apex.rows') IS NOT NULL AS schema,
        (SELECT count(*) FROM pg_attribute WHERE attrelid IN (to_regclass('apex.kv'), to_regclass('apex.rows')) AND attname = 'codec' AND NOT attisdropped) = 2 AS codec`,
    );
    expect(probe).toEqual({ schema: true, codec: true });
    await expect(query(database, `SELECT 1 FROM apex.projects WHERE project = $1`, ["one"])).rejects.toThrow(/upgraded \(layout 2.*by a newer APEX/);
    await expect(query(database, `SELECT revision FROM apex.projects WHERE project = $1`, ["new"])).rejects.toThrow(/newer APEX/);
    await expect(query(database, `INSERT INTO apex.projects (project) VALUES ($1)`, ["new"])).rejects.toThrow();
  });

  it("refuses a schema laid out by a newer APEX, writable or read-only, and writes nothing", async () => {
    const database = await cluster.createDatabase();
    const spec: StoreSpec = { backend: "postgres", dir: "/nonexistent/.apex", url: database, project: "p" };
    const store = track(postgresBackend.open(spec, { actor: "user:test" }));
    await store.set("/x", 1);
    await query(database, `UPDATE apex.layout SET version = $1`, [LAYOUT + 1]);
    for (const readOnly of [false, true]) {
      expect(() => track(postgresBackend.open(spec, { readOnly }))).toThrowError(expect.objectContaining({ code: "APEX_E_STORE_VERSION", exitCode: 4 }));
    }
    expect(await query(database, `SELECT version FROM apex.layout`)).toEqual([{ version: LAYOUT + 1 }]);
  });

  it("refuses a schema missing a table dropped by hand, naming it, read-only or not, and creates nothing; apex.layout put back as the hint says reads again", async () => {
    const database = await cluster.createDatabase();
    const spec: StoreSpec = { backend: "postgres", dir: "/nonexistent/.apex", url: database, project: "p" };
    const store = track(postgresBackend.open(spec, { actor: "user:test" }));
    await store.set("/x", 1);
    await store.close();
    const attempts = [() => postgresBackend.exists(spec), () => track(postgresBackend.open(spec, { readOnly: true })), () => track(postgresBackend.open(spec, {}))];
    // Without apex.layout, the database read as layout 1 was refused as "upgraded by a newer APEX".
    await query(database, "DROP TABLE apex.layout");
    for (const attempt of attempts) {
      expect(attempt).toThrowError(
        expect.objectContaining({ code: "APEX_E_STORE_DAMAGED", exitCode: 1, message: expect.stringContaining("apex.layout is missing"), hint: expect.stringContaining("CREATE TABLE apex.layout") }),
      );
    }
    await query(database, `CREATE TABLE apex.layout (version integer NOT NULL); INSERT INTO apex.layout VALUES (${LAYOUT})`);
    const back = track(postgresBackend.open(spec, { readOnly: true }));
    expect(back.get("/x")).toBe(1);
    await back.close();
    // A data table dropped: its records are gone, and an empty one made anew would hide that.
    await query(database, "DROP TABLE apex.kv");
    for (const attempt of attempts) {
      let caught: unknown;
      try {
        attempt();
      } catch (error) {
        caught = error;
      }
      expect(caught).toMatchObject({ code: "APEX_E_STORE_DAMAGED", details: { missing: ["apex.kv"] } });
      expect((caught as Error).message).not.toContain(cluster.password);
    }
    expect(await query(database, "SELECT to_regclass('apex.kv') AS kv")).toEqual([{ kv: null }]);
  });

  it("refuses a table changed by hand (a column dropped, retyped or recollated, its primary key dropped), naming the change, read-only or not, and writes nothing", async () => {
    const template = await cluster.createDatabase();
    const spec: StoreSpec = { backend: "postgres", dir: "/nonexistent/.apex", url: template, project: "p" };
    const store = track(postgresBackend.open(spec, { actor: "user:test" }));
    await store.set("/note", { text: "compressed ".repeat(40) });
    await store.close();
    const changes: Array<[string, string]> = [
      // A compressed value's codec lost: a writable open added the column again with 0 for every row.
      ["ALTER TABLE apex.kv DROP COLUMN codec", "apex.kv has no column codec"],
      // Reads got undefined (APEX_E_INTERNAL) while writes stored text.
      ["ALTER TABLE apex.kv ALTER COLUMN value TYPE text USING encode(value, 'hex')", "apex.kv.value is text, not bytea"],
      ["ALTER TABLE apex.log RENAME COLUMN actor TO who", "apex.log has no column actor"],
      ["ALTER TABLE apex.rows DROP CONSTRAINT rows_pkey", "apex.rows has no primary key (APEX's is (project, tbl, key))"],
      [`ALTER TABLE apex.kv ALTER COLUMN path TYPE text COLLATE "und-x-icu"`, 'apex.kv.path is text COLLATE "und-x-icu", not text COLLATE "C"'],
    ];
    const templateName = new URL(template).pathname.slice(1);
    for (const [index, [change, said]] of changes.entries()) {
      // A copy of the store for each change.
      await query(cluster.adminUrl, `CREATE DATABASE "${templateName}_${index}" TEMPLATE "${templateName}"`);
      const database = cluster.url(`${templateName}_${index}`);
      await query(database, change);
      const before = await query(database, "SELECT (SELECT revision FROM apex.stores) AS revision, (SELECT count(*) FROM pg_attribute WHERE attrelid = 'apex.kv'::regclass AND attnum > 0) AS columns");
      const theirs = { ...spec, url: database };
      for (const attempt of [() => postgresBackend.exists(theirs), () => track(postgresBackend.open(theirs, { readOnly: true })), () => track(postgresBackend.open(theirs, {}))]) {
        expect(attempt, change).toThrowError(expect.objectContaining({ code: "APEX_E_STORE_DAMAGED", exitCode: 1, message: expect.stringContaining(said), hint: expect.stringContaining("CREATE TABLE apex.") }));
      }
      expect(await query(database, "SELECT (SELECT revision FROM apex.stores) AS revision, (SELECT count(*) FROM pg_attribute WHERE attrelid = 'apex.kv'::regclass AND attnum > 0) AS columns")).toEqual(before);
    }
    // A column added beside APEX's is no change to what it reads and writes.
    await query(template, "ALTER TABLE apex.kv ADD COLUMN note text");
    const added = track(postgresBackend.open(spec, {}));
    await added.set("/more", 1);
    expect(added.get("/note")).toEqual({ text: "compressed ".repeat(40) });
  });

  it("names a schema this role may not read as the store's error, from exists() and open() alike", async () => {
    const database = await cluster.createDatabase();
    const spec: StoreSpec = { backend: "postgres", dir: "/nonexistent/.apex", url: database, project: "p" };
    const store = track(postgresBackend.open(spec, { actor: "user:test" }));
    await store.set("/x", 1);
    const role = `r_${process.pid}_${Date.now().toString(36)}`;
    await query(database, `CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    await query(database, `GRANT USAGE ON SCHEMA apex TO ${role}`);
    try {
      // The role connects and may look into the schema, but not read its tables.
      const url = new URL(database);
      url.username = role;
      url.password = "pw";
      const theirs: StoreSpec = { ...spec, url: url.toString() };
      for (const attempt of [() => postgresBackend.exists(theirs), () => track(postgresBackend.open(theirs, { readOnly: true }))]) {
        expect(attempt).toThrowError(expect.objectContaining({ code: "APEX_E_STORE_PERMISSION", exitCode: 4, message: expect.stringMatching(/permission denied/), hint: expect.stringMatching(/SELECT/) }));
      }
    } finally {
      await query(database, `DROP OWNED BY ${role}`);
      await query(database, `DROP ROLE ${role}`);
    }
  });
});
