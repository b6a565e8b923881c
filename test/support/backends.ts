/**
 * The storage backends the suites run on, and one way to run a suite on each of them.
 *
 *   forEachBackend((backend) => {
 *     it("…", async () => {
 *       const store = await backend.fresh();        // a new, empty store for this test
 *       …apex(args, { env: await backend.env() })   // the CLI on the same backend
 *     });
 *   });
 *
 * runs the block once per backend, as `describe("lmdb", …)` and `describe("postgres", …)`.
 * - LMDB: a store in a new temporary directory per test.
 * - PostgreSQL: one throwaway cluster per test run (sharedPostgres, started by the first file
 *   that needs it), one database per test file (created on first use: CREATE DATABASE costs
 *   ~0.2 s), one project id per test (a project's rows are apart from every other's, the
 *   backend's own guarantee). The CLI gets `APEX_STORE_URL` and takes the project id from the
 *   project directory's name, which is a fresh temporary directory per test.
 * APEX_TEST_BACKENDS=lmdb (or postgres) runs one of them only, e.g. while working on one.
 *
 * What stays on LMDB only, by nature, and is not run through this fixture:
 * - file modes and owner-only permissions of .apex/ and store.mdb (store-privacy.test.ts);
 * - damaged or truncated store.mdb files, their salvage and repair (store-damage.test.ts,
 *   the salvage cases of checkpoints.test.ts), LMDB's page counts and free list;
 * - `apex backup` (snapshotTo: LMDB's compacting copy; the port makes it optional);
 * - several processes writing one LMDB environment (parallel-writers.test.ts); PostgreSQL's
 *   own crash and concurrency cases are in storage-postgres*.test.ts.
 * And, to keep the run's time in bounds, what does not depend on the store: the Merkle tree's
 * shape and update costs (objects.test.ts), tampered bundles (checked before anything is
 * written, archive.test.ts), the CLI's compress command (compression.test.ts; the same code in
 * process runs on both).
 */
import { basename, join } from "node:path";
import pg from "pg";
import { afterEach, describe } from "vitest";
import { openStore } from "../../core/store/open.js";
import type { StoreOpenOptions, StoreSpec } from "../../core/store/port.js";
import type { Store } from "../../core/store/store.js";
import { tempDir } from "../helpers/cli.js";
import { createSharedDatabase } from "./postgres.js";

export type BackendName = "lmdb" | "postgres";

const ALL: BackendName[] = ["lmdb", "postgres"];

/** The backends this run covers: all, unless APEX_TEST_BACKENDS names some. */
export const BACKENDS: BackendName[] = (() => {
  const named = process.env.APEX_TEST_BACKENDS?.split(",").map((name) => name.trim()).filter(Boolean);
  if (!named || named.length === 0) return ALL;
  const unknown = named.filter((name) => !ALL.includes(name as BackendName));
  if (unknown.length > 0) throw new Error(`APEX_TEST_BACKENDS: unknown backend ${unknown.join(", ")} (known: ${ALL.join(", ")})`);
  return named as BackendName[];
})();

export interface TestBackend {
  readonly name: BackendName;
  /** The spec of a new, empty store whose store directory (logs, sockets) is `storeDir`. */
  spec(storeDir: string): Promise<StoreSpec>;
  /** The spec the CLI resolves in `projectDir` with env() (its store directory is `projectDir/.apex`). */
  projectSpec(projectDir: string): Promise<StoreSpec>;
  /** A new, empty store in a new temporary directory; closed and removed after the test. */
  fresh(options?: StoreOpenOptions): Promise<Store>;
  /** Another handle on the store `store` (read-only, another actor, …); closed after the test. */
  reopen(store: Store, options?: StoreOpenOptions): Promise<Store>;
  /** Opens the store the CLI uses in `projectDir` with env(); closed after the test. */
  openProject(projectDir: string, options?: StoreOpenOptions): Promise<Store>;
  /** The environment that puts the CLI (and the supervisors and agents it starts) on this backend. */
  env(): Promise<Record<string, string>>;

  // Damage, planted below the port (as a disk or a hand in the database would), for validation and repair.
  /** Writes `bytes` as the keyspace record at `key`, as stored, bypassing the value encoding and the revision log. */
  putRawRecord(store: Store, key: string, bytes: Buffer): Promise<void>;
  /** Removes the revision log record of the batch whose first revision is `first`. */
  removeLogRecord(store: Store, first: number): Promise<void>;
}

/** Runs `body` (its tests and hooks) once for each backend, in a describe block named after it. */
export function forEachBackend(body: (backend: TestBackend) => void): void {
  describe.each(BACKENDS)("%s", (name) => {
    const backend = testBackend(name);
    afterEach(async () => {
      await backend.cleanup();
    });
    body(backend);
  });
}

let fileDatabase: Promise<string> | undefined;
/** This test file's database on the shared cluster. */
function database(): Promise<string> {
  return (fileDatabase ??= createSharedDatabase("suite"));
}

let projects = 0;

/** One statement on a PostgreSQL store's database, `$1` being its project id. */
async function sql(store: Store, text: string, values: unknown[]): Promise<void> {
  const spec = store.spec!;
  const client = new pg.Client({ connectionString: spec.url });
  await client.connect();
  try {
    await client.query(text, [spec.project, ...values]);
  } finally {
    await client.end();
  }
}

function testBackend(name: BackendName): TestBackend & { cleanup(): Promise<void> } {
  const closers: Array<() => Promise<void> | void> = [];
  const track = (store: Store): Store => {
    closers.push(() => store.close());
    return store;
  };
  const spec = async (storeDir: string): Promise<StoreSpec> =>
    name === "lmdb" ? { backend: "lmdb", dir: storeDir } : { backend: "postgres", dir: storeDir, url: await database(), project: `p${process.pid}-${++projects}` };
  const projectSpec = async (projectDir: string): Promise<StoreSpec> => {
    const storeDir = join(projectDir, ".apex");
    return name === "lmdb" ? { backend: "lmdb", dir: storeDir } : { backend: "postgres", dir: storeDir, url: await database(), project: basename(projectDir) };
  };
  return {
    name,
    spec,
    projectSpec,
    async fresh(options = {}) {
      const temp = tempDir(`apex-${name}-`);
      closers.push(temp.cleanup);
      return track(await openStore(await spec(temp.dir), { actor: "user:test", ...options }));
    },
    async reopen(store, options = {}) {
      if (!store.spec) throw new Error("reopen: a store opened by openStore (it carries its spec)");
      return track(await openStore(store.spec, { actor: "user:test", ...options }));
    },
    async openProject(projectDir, options = {}) {
      return track(await openStore(await projectSpec(projectDir), { actor: "user:test", ...options }));
    },
    async env(): Promise<Record<string, string>> {
      return name === "lmdb" ? {} : { APEX_STORE_URL: await database() };
    },
    async putRawRecord(store, key, bytes) {
      if (name === "lmdb") {
        const kv = store.table<string, Buffer>("kv", { keys: "string", values: "binary" });
        await store.transaction(() => kv.put(key, bytes));
      } else {
        await sql(store, `INSERT INTO apex.kv (project, path, value, codec) VALUES ($1, $2, $3, 0) ON CONFLICT (project, path) DO UPDATE SET value = EXCLUDED.value, codec = 0`, [key, bytes]);
      }
    },
    async removeLogRecord(store, first) {
      if (name === "lmdb") {
        const log = store.table<number>("log", { keys: "tuple", values: "binary" });
        await store.transaction(() => log.remove(first));
      } else {
        await sql(store, `DELETE FROM apex.log WHERE project = $1 AND first = $2`, [first]);
      }
    },
    async cleanup() {
      // Stores first (newest first), then their directories.
      for (const close of closers.splice(0).reverse()) await close();
    },
  };
}
