import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { memoryReadMethods } from "../core/session/memory-methods.js";
import type { Change, JsonValue, Store } from "../core/store/store.js";
import { runApex, tempDir } from "./helpers/cli.js";
import { forEachBackend } from "./support/backends.js";

/**
 * memory.changes, which `apex memory watch` polls through a supervisor or `apex serve`, a batch at
 * a time: a watcher far behind read, for each batch, the whole rest of the revision log (to know
 * whether a put's path changed again after it), so catching up was quadratic and each call held
 * the supervisor for as long as the rest of the log took to read. The work is counted here (the
 * changes the log yields), not timed.
 */
forEachBackend((backend) =>
  describe("memory.changes for a watcher far behind", () => {
    /** The store with every read of its revision log counted. */
    function counted(store: Store): { reads: () => number } {
      let reads = 0;
      const changesSince = store.changesSince.bind(store);
      store.changesSince = function* (since, options) {
        for (const change of changesSince(since, options)) {
          reads++;
          yield change;
        }
      };
      return { reads: () => reads };
    }

    /** What a watcher from `since` must be told of `change`: the value its path holds now, or that it changed again since. */
    function expected(store: Store, log: Change[], change: Change): Record<string, unknown> {
      const overwritten = change.kind === "put" && log.some((later) => later.path === change.path && later.revision > change.revision);
      return { ...change, value: change.kind === "put" && !overwritten ? (store.get(change.path) ?? null) : null, ...(overwritten ? { overwritten } : {}) };
    }

    it("reads the log once in all to catch up, and each batch reads about a batch of it, however far behind; a put changed again later is said to be overwritten, in batches read before and after more writes", async () => {
      const store = await backend.fresh();
      // 2,000 changes in commits of 10, a path changed again now and then, some deleted.
      const write = async (from: number, commits: number) => {
        for (let i = from; i < from + commits; i++) {
          await store.batch((batch) => {
            for (let j = 0; j < 10; j++) {
              const n = i * 10 + j;
              if (n % 97 === 0) batch.delete(`/w/k${(n * 7) % 600}`);
              else batch.set(`/w/k${(n * 7) % 600}`, n);
            }
          });
        }
      };
      await write(0, 200);
      const changes = memoryReadMethods(store)["memory.changes"]!;
      const log = counted(store);
      const limit = 100;
      const seen: unknown[] = [];
      const perCall: number[] = [];
      let since = 0;
      for (let call = 0; ; call++) {
        // Half-way, more writes: puts already sent are not told again, those still to come are judged by them.
        if (call === 10) await write(200, 20);
        const before = log.reads();
        const reply = (await changes({ since, glob: "/w/**", limit })) as { revision: number; changes: unknown[] };
        perCall.push(log.reads() - before);
        seen.push(...reply.changes);
        if (reply.revision === since) break;
        since = reply.revision;
      }
      const reads = log.reads();
      const total = store.revision();
      expect(total).toBeGreaterThan(2100);
      // What was sent before the second writes was judged by the log then; everything sent after them, by the whole log.
      const all = [...store.changesSince(0)];
      const firstSent = (seen as Array<{ revision: number }>).findIndex((change) => change.revision > 10 * limit);
      expect(seen.slice(firstSent)).toEqual(all.slice(firstSent).map((change) => expected(store, all, change)));
      expect(seen.map((change) => (change as { revision: number }).revision)).toEqual(all.map((change) => change.revision));
      // It read the rest of the log for each batch: about total²/(2·limit), 24,000 changes here.
      expect(reads).toBeLessThan(3 * total);
      // After the first call (which reads the log past its batch once), each reads its batch and what was written since.
      expect(Math.max(...perCall.slice(1))).toBeLessThanOrEqual(limit + 200 + 1);
    }, 60_000);

    it("a second watcher further back than the first is answered as rightly, and one caught up reads only its batch", async () => {
      const store = await backend.fresh();
      for (let i = 0; i < 30; i++) {
        await store.batch((batch) => {
          for (let j = 0; j < 10; j++) batch.set(`/v/k${(i * 10 + j) % 45}`, i * 10 + j);
        });
      }
      const changes = memoryReadMethods(store)["memory.changes"]!;
      const all = [...store.changesSince(0)];
      const walk = async (from: number) => {
        const out: unknown[] = [];
        for (let since = from; ; ) {
          const reply = (await changes({ since, limit: 40 })) as { revision: number; changes: unknown[] };
          out.push(...reply.changes);
          if (reply.revision === since) return out;
          since = reply.revision;
        }
      };
      const want = (from: number) => all.filter((change) => change.revision > from).map((change) => expected(store, all, change) as JsonValue);
      expect(await walk(150)).toEqual(want(150));
      expect(await walk(20)).toEqual(want(20));
      expect(await walk(150)).toEqual(want(150));
      const log = counted(store);
      expect(await changes({ since: 290, limit: 40 })).toEqual({ revision: 300, changes: want(290) });
      expect(log.reads()).toBe(10);
    }, 60_000);

    it("a poll with nothing new reads no record of the revision log, however many changes the last commit holds (an import's)", async () => {
      const store = await backend.fresh();
      const { revision } = await store.batch((batch) => {
        for (let i = 0; i < 20_000; i++) batch.set(`/i/k${i}`, i);
      });
      // The log's records as the backend reads them: LMDB's log database, PostgreSQL's rows of apex.log.
      let records = 0;
      const backendStore = store as unknown as { log?: { getRange: (...args: unknown[]) => Iterable<unknown> }; sql?: (text: string, ...rest: unknown[]) => unknown[] };
      if (backend.name === "lmdb") {
        const log = backendStore.log!;
        const getRange = log.getRange.bind(log);
        log.getRange = function* (...args: unknown[]) {
          for (const record of getRange(...args)) {
            records++;
            yield record;
          }
        };
      } else {
        const sql = backendStore.sql!.bind(store);
        backendStore.sql = (text: string, ...rest: unknown[]) => {
          const rows = sql(text, ...rest);
          if (/FROM apex\.log WHERE/.test(text) && /^\s*SELECT first, paths/.test(text)) records += rows.length;
          return rows;
        };
      }
      // Before, each one read (and decoded) the commit of 20,000 paths to find nothing after it: a watcher up to date polls every 100 ms.
      expect([...store.changesSince(revision)]).toEqual([]);
      expect(await memoryReadMethods(store)["memory.changes"]!({ since: revision })).toEqual({ revision, changes: [] });
      expect(records).toBe(0);
      expect([...store.changesSince(revision - 1)].map((change) => change.path)).toEqual(["/i/k19999"]);
      expect(records).toBeGreaterThan(0); // (the counting sees reads)
    }, 60_000);

    // Counted by the server: the index scans of apex.kv (a value read path by path is one each).
    if (backend.name === "postgres") {
      it("apex memory watch --since with no supervisor reads the values it replays many at a time, not a statement each", async () => {
        const { dir, cleanup } = tempDir();
        const client = new pg.Client({ connectionString: (await backend.env()).APEX_STORE_URL });
        await client.connect();
        try {
          const env = await backend.env();
          writeFileSync(join(dir, "apex.config.yaml"), "plugins: {}\n");
          writeFileSync(join(dir, "bulk.json"), JSON.stringify(Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`/w/k${i}`, i]))));
          expect(runApex(["memory", "import", "bulk.json"], { cwd: dir, env }).status).toBe(0);
          const scans = async () => {
            await client.query("SELECT pg_stat_clear_snapshot()");
            return Number((await client.query("SELECT idx_scan FROM pg_stat_user_tables WHERE schemaname = 'apex' AND relname = 'kv'")).rows[0]?.idx_scan ?? 0);
          };
          const before = await scans();
          const watched = runApex(["memory", "watch", "/w/**", "--since", "0", "--timeout", "0.1", "--json"], { cwd: dir, env });
          expect(watched.stdout.trim().split("\n").length).toBe(3000);
          // The command's connection reports its counts as it ends.
          let after = before;
          for (let tries = 0; tries < 200 && after === before; tries++) {
            await new Promise((resolve) => setTimeout(resolve, 100));
            after = await scans();
          }
          // Before: one statement (an index scan) per put, 3,000 and more.
          expect(after - before).toBeGreaterThan(0);
          expect(after - before).toBeLessThan(300);
        } finally {
          await client.end();
          cleanup();
        }
      }, 60_000);
    }

    it("refuses a since, limit or glob of the wrong kind (APEX_E_BAD_INPUT), and sends at most a batch of 10,000 whatever limit is asked for", async () => {
      const store = await backend.fresh();
      await store.batch((batch) => {
        for (let i = 0; i < 10_050; i++) batch.set(`/b/k${i}`, i);
      });
      const changes = memoryReadMethods(store)["memory.changes"]!;
      // Through apex serve, any grant's call: a limit past the log had the whole log read and sent in one reply.
      const reply = (await changes({ since: 0, limit: 1e12 })) as { revision: number; changes: unknown[] };
      expect([reply.revision, reply.changes.length]).toEqual([10_000, 10_000]);
      // 1.5 was read as a revision (LMDB answered revision 2.5) or failed as the store's own error (PostgreSQL, APEX_E_STORE); a glob not a string was no filter at all.
      for (const params of [{ since: 1.5 }, { since: -1 }, { since: "3" }, { since: null }, { since: 1e300 }, { since: 0, limit: 0 }, { since: 0, limit: 2.5 }, { since: 0, glob: 5 }]) {
        await expect(changes(params), JSON.stringify(params)).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT", message: expect.stringMatching(/^memory\.changes: (since|limit|glob) must be /) });
      }
    }, 60_000);
  }),
);
