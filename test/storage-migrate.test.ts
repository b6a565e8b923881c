/**
 * Copying a store between backends through the port (plugins/postgres/migrate.ts): LMDB (the
 * current Store) to PostgreSQL and back, revisions, log, values and tables identical, the source
 * untouched, and refusals that write nothing.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { StorageBackend, StoreSpec, TableOptions } from "../core/store/port.js";
import { postgresBackend } from "../plugins/postgres/backend.js";
import { migrateStore } from "../plugins/postgres/migrate.js";
import { tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { sharedPostgres, type SharedPostgres } from "./support/postgres.js";

let cluster: SharedPostgres;
let url: string;
let projects = 0;
const cleanups: Array<() => void> = [];
const opened: StorageBackend[] = [];

beforeAll(async () => {
  cluster = await sharedPostgres();
  url = await cluster.createDatabase();
}, 120_000);
afterEach(async () => {
  for (const backend of opened.splice(0).reverse()) await backend.close();
});
afterAll(async () => {
  for (const cleanup of cleanups) cleanup();
});

const pgSpec = (): StoreSpec => ({ backend: "postgres", dir: "/x", url, project: `m${++projects}` });
const track = <T extends StorageBackend>(backend: T) => (opened.push(backend), backend);
const lmdbDir = () => {
  const { dir, cleanup } = tempDir("apex-migrate-");
  cleanups.push(cleanup);
  return dir;
};
const TABLES: Record<string, TableOptions> = {
  objects: { keys: "binary", values: "binary" },
  catalog: { keys: "tuple", values: "structured" },
  packs: { keys: "uint32", values: "binary" },
};

/** A store with history: puts, overwrites, deletes, a tree delete, several actors, and tables. */
async function fill(store: StorageBackend): Promise<void> {
  await store.set("/notes/a", { text: "first" }, "user:ann");
  await store.batch((batch) => {
    for (let i = 0; i < 300; i++) batch.set(`/mem/${i}`, { i, s: "é\u{1F600}".repeat(i % 5) });
    batch.set("/notes/a", { text: "second" });
    batch.set("/tmp/x", 1);
  }, "agent:bob");
  await store.delete("/tmp/x", { actor: "plugin:retention" });
  await store.batch((batch) => {
    batch.set("/gone/1", 1);
    batch.set("/gone/2", 2);
    batch.deleteTree("/gone");
    batch.set("/notes/a", { text: "third" });
  }, "agent:bob");
  await store.delete("/mem", { recursive: true, actor: "user:ann" });
  await store.set("/mem/again", [1, 2, 3], "user:ann");
  await store.transaction(() => {
    const objects = store.table<Buffer, Buffer>("objects", TABLES.objects!);
    for (let i = 0; i < 50; i++) objects.put(Buffer.from([i, 255 - i]), Buffer.alloc(100, i));
    store.table<Array<string | number>, unknown>("catalog", TABLES.catalog!).put(["s1", 3], { checkpoints: [1, 2], label: "x" });
    store.table<number, Buffer>("packs", TABLES.packs!).put(70000, Buffer.from("pack"));
  });
}

describe("store migration between backends", () => {
  it("copies LMDB to PostgreSQL and back with identical revisions, log, values and tables", async () => {
    const lmdb = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    await fill(lmdb);
    const before = { revision: lmdb.revision(), changes: Array.from(lmdb.changesSince(0)) };

    const pg = track(postgresBackend.open(pgSpec(), {}));
    const report = await migrateStore(lmdb, pg, { tables: TABLES });
    expect(report).toMatchObject({ revision: before.revision, changes: before.revision, entries: 2, tables: { objects: 50, catalog: 1, packs: 1 }, verified: true });
    expect(pg.revision()).toBe(before.revision);
    expect(pg.get("/notes/a")).toEqual({ text: "third" });
    expect(Array.from(pg.changesSince(0), (c) => [c.revision, c.path, c.kind, c.actor])).toEqual(before.changes.map((c) => [c.revision, c.path, c.kind, c.actor]));
    expect(pg.getEncoded("/mem/again")!.equals(lmdb.getEncoded("/mem/again")!)).toBe(true);
    // The source is untouched.
    expect(lmdb.revision()).toBe(before.revision);

    // And back to a new LMDB store, with the kinds from the PostgreSQL source itself.
    const back = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    const again = await migrateStore(pg, back);
    expect(again.verified).toBe(true);
    expect(Array.from(back.tree("/"))).toEqual(Array.from(lmdb.tree("/")));
    expect(back.table<number, Buffer>("packs", TABLES.packs!).get(70000)).toEqual(Buffer.from("pack"));
  });

  it("refuses a target that holds data, and tables of unknown kinds, writing nothing", async () => {
    const lmdb = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    await fill(lmdb);
    const busy = track(postgresBackend.open(pgSpec(), {}));
    await busy.set("/already", true);
    await expect(migrateStore(lmdb, busy, { tables: TABLES })).rejects.toMatchObject({ code: "APEX_E_CONFLICT" });
    expect(busy.revision()).toBe(1);

    const empty = track(postgresBackend.open(pgSpec(), {}));
    await expect(migrateStore(lmdb, empty, { tables: { objects: TABLES.objects! } })).rejects.toMatchObject({ code: "APEX_E_USAGE", details: { tables: ["catalog", "packs"] } });
    expect(empty.revision()).toBe(0);
    expect(empty.tableNames()).toEqual([]);
  });

  it("writes no keyspace into a target written to while it copied (another migration, a command), and says so", async () => {
    const lmdb = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    await fill(lmdb);
    for (const spec of [pgSpec(), { backend: "lmdb", dir: lmdbDir() } satisfies StoreSpec]) {
      const open = () => track(spec.backend === "lmdb" ? LmdbStore.open(spec.dir, { actor: "user:test" }) : postgresBackend.open(spec, {}));
      const [target, other] = [open(), open()];
      // Between the tables and the keyspace, another writer of the target commits.
      const onProgress = (line: string) => {
        if (line.startsWith("replaying")) other.batchSync((batch) => batch.set("/meanwhile", 1), "user:other");
      };
      // (before: the replay went on after revision 1, and the copy failed verification with every revision shifted)
      await expect(migrateStore(lmdb, target, { tables: TABLES, onProgress })).rejects.toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("was written to while this copy ran") });
      expect(target.revision()).toBe(1);
      expect(Array.from(target.keys({}))).toEqual(["/meanwhile"]);
    }
  });

  it("refuses a target holding an earlier copy of this store written to since, or behind it, rather than emptying it as an interrupted copy", async () => {
    const lmdb = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    await fill(lmdb);
    const target = track(postgresBackend.open(pgSpec(), {}));
    await migrateStore(lmdb, target, { tables: TABLES });
    // Both stores written since, at the same path by the same actor: the logs still agree change for change, the values do not.
    await target.set("/notes/x", "written on the copy", "user:ann");
    await lmdb.set("/notes/x", "written on the source", "user:ann");
    let emptied = 0;
    const clearInterrupted = () => void emptied++;
    // (before: "the target holds an interrupted copy of this store: emptied, copying again", and the copy's own write was gone)
    await expect(migrateStore(lmdb, target, { tables: TABLES, clearInterrupted })).rejects.toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("already holds data") });
    expect(target.get("/notes/x")).toBe("written on the copy");
    // Only the source moved on: the copy is whole but older, not an interrupted one either (it said so, and emptied it).
    const source = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    await fill(source);
    const older = track(postgresBackend.open(pgSpec(), {}));
    await migrateStore(source, older, { tables: TABLES });
    await source.set("/notes/y", "later on the source", "user:ann");
    const revision = older.revision();
    await expect(migrateStore(source, older, { tables: TABLES, clearInterrupted })).rejects.toMatchObject({ code: "APEX_E_CONFLICT", message: expect.stringContaining("already holds data") });
    expect(older.revision()).toBe(revision);
    expect(emptied).toBe(0);
  });

  it("leaves no keyspace in a target whose copy stopped half-way, never records holding an earlier put's placeholder", async () => {
    const lmdb = track(LmdbStore.open(lmdbDir(), { actor: "user:test" }));
    // More changes than a transaction of the copy once held (5,000), then the usual history.
    await lmdb.batch((batch) => {
      for (let i = 0; i < 6000; i++) batch.set(`/bulk/${i}`, i);
    });
    await fill(lmdb);
    // The source fails as a lost connection would, at the log's last value (/mem/again): by then
    // every earlier change was replayed, with placeholders for the puts a later one overwrites.
    const failing = new Proxy(lmdb, {
      get(target, name, receiver) {
        if (name === "getEncoded") {
          return (path: string) => {
            if (path === "/mem/again") throw Object.assign(new Error("connection lost"), { code: "ECONNRESET" });
            return target.getEncoded(path);
          };
        }
        const value = Reflect.get(target, name, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    for (const target of [track(postgresBackend.open(pgSpec(), {})), track(LmdbStore.open(lmdbDir(), { actor: "user:test" }))]) {
      await expect(migrateStore(failing, target, { tables: TABLES })).rejects.toThrow("connection lost");
      expect(target.revision()).toBe(0);
      expect(Array.from(target.keys({}))).toEqual([]);
      expect(target.get("/notes/a")).toBeUndefined();
      // The tables were copied first: objects nothing names yet.
      expect(target.tableNames().sort()).toEqual(["catalog", "objects", "packs"]);
    }
  });
});
