/**
 * What a checkpoint, a validation and a migration cost on PostgreSQL in statements, counted by
 * the server itself: every read is a round trip there, and one per key made a first checkpoint
 * of 30k memory keys take 16-18 s, `session validate` 51-57 s (216k statements) and `store
 * migrate` from LMDB 77 s. The server logs every statement of this file's database
 * (log_statement = all, set on the database alone), each with its parameters, the first of which
 * is the store's project id: the statements of one store are the log's lines that name it.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import type { Store } from "../core/store/store.js";
import { createCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { migrateStore } from "../plugins/postgres/migrate.js";
import { tempDir } from "./helpers/cli.js";
import { query, sharedPostgres, type SharedPostgres } from "./support/postgres.js";

const KEYS = 600;

let cluster: SharedPostgres;
let url: string;
let serverLog: string;

beforeAll(async () => {
  cluster = await sharedPostgres();
  url = await cluster.createDatabase();
  const database = new URL(url).pathname.slice(1);
  // New connections to this database log every statement with its parameters (cut short: the project id is the first).
  await query(cluster.adminUrl, `ALTER DATABASE "${database}" SET log_statement = 'all'`);
  await query(cluster.adminUrl, `ALTER DATABASE "${database}" SET log_parameter_max_length = 80`);
  serverLog = join(dirname(cluster.socketDir), "server.log");
}, 180_000);

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let projects = 0;

async function freshStore(): Promise<Store> {
  const { dir, cleanup } = tempDir("apex-pg-trips-");
  cleanups.push(cleanup);
  const store = await openStore({ backend: "postgres", dir: join(dir, ".apex"), url, project: `trips_${process.pid}_${++projects}` }, { actor: "user:test" });
  cleanups.push(() => store.close());
  return store;
}

/** The statements the server ran for `store`'s project while `fn` ran (the log's lines from its size before). */
async function statementsOf(store: Store, fn: () => unknown): Promise<number> {
  const from = statSync(serverLog).size;
  await fn();
  const to = statSync(serverLog).size;
  const bytes = Buffer.alloc(to - from);
  const fd = openSync(serverLog, "r");
  try {
    readSync(fd, bytes, 0, bytes.length, from);
  } finally {
    closeSync(fd);
  }
  const named = `parameters: $1 = '${store.spec!.project}'`;
  return bytes.toString("utf8").split("\n").filter((line) => line.includes(named)).length;
}

describe("round trips of the checkpoint engine on PostgreSQL", () => {
  it(`a first checkpoint and a validation of ${KEYS} memory keys read them in a few statements, not one per key or object`, async () => {
    const store = await freshStore();
    await store.batch((batch) => {
      batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
      batch.set("/sessions/current", { session_id: "s1" });
      batch.set("/sessions/s1/agents/coder", { name: "coder", status: "running", pid: 10 });
      batch.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "first", status: "active", assignee: "coder" });
      for (let i = 0; i < KEYS; i++) batch.set(`/notes/n${i}`, { i, text: `note ${i}` });
    });
    // The log counts this store's statements: a read names its project.
    expect(await statementsOf(store, () => store.get("/notes/n1"))).toBe(1);

    let created!: Awaited<ReturnType<typeof createCheckpoint>>;
    const checkpoint = await statementsOf(store, async () => {
      created = await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
    });
    // Built from scratch: every record read and hashed, every object written.
    expect(created.stats).toMatchObject({ memory: { full: true, changed: KEYS } });
    expect(created.stats.valuesWritten).toBe(KEYS + 2);
    // One statement per key, or per object looked up, would be more than KEYS (1,543 statements before they were read together).
    expect(checkpoint).toBeLessThan(KEYS / 10);

    let report!: ReturnType<typeof validateStore>;
    const validation = await statementsOf(store, () => {
      report = validateStore(store);
    });
    expect(report.ok).toBe(true);
    expect(report.checkpoints).toMatchObject({ total: 1, verified: 1 });
    expect(report.objects.values).toBe(KEYS + 2);
    // Records, objects and index records read one at a time would be several per key (2,221 statements before they were read together);
    // what is left (117) is a few per pack (~20 of them) and the scans of ranges.
    expect(validation).toBeLessThan(KEYS / 3);
  }, 120_000);

  it(`a migration of ${KEYS} memory keys from LMDB verifies the copy a few statements at a time, not one per key`, async () => {
    const { dir, cleanup } = tempDir("apex-pg-trips-lmdb-");
    cleanups.push(cleanup);
    const source = await openStore({ backend: "lmdb", dir: join(dir, ".apex") }, { actor: "user:test" });
    cleanups.push(() => source.close());
    await source.batch((batch) => {
      for (let i = 0; i < KEYS; i++) batch.set(`/notes/n${i}`, { i, text: `note ${i}` });
    });
    await source.set("/notes/n7", "changed since");
    const target = await freshStore();
    let report!: Awaited<ReturnType<typeof migrateStore>>;
    const statements = await statementsOf(target, async () => {
      report = await migrateStore(source, target);
    });
    expect(report).toMatchObject({ entries: KEYS, changes: KEYS + 1, verified: true });
    expect(target.get("/notes/n7")).toBe("changed since");
    // Each record of the copy read back on its own would be more than KEYS (610 statements before they were read together).
    expect(statements).toBeLessThan(KEYS / 10);
  }, 120_000);
});
