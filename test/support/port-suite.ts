/**
 * The storage port's conformance suite, written once over any StorageBackend: every backend
 * (LMDB, PostgreSQL, …) must pass it unchanged, so that what runs on one runs on the other.
 *
 * `harness.fresh()` makes a new, empty store and returns a function that opens it (again, as a
 * second independent instance, or read-only); the suite closes every instance it opens.
 */
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { ApexError } from "../../core/errors.js";
import { readView, type StorageBackend, type StoreOpenOptions, type Table } from "../../core/store/port.js";
import { encodeJson } from "../../plugins/value-codec.js";

export interface PortHarness {
  /** A new empty store; `open` opens an instance of it (each call a separate instance). */
  fresh(): { open(options?: StoreOpenOptions): StorageBackend };
}

const utf8Order = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

async function eventually(check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out waiting");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function describePort(name: string, harness: PortHarness): void {
  describe(`storage port: ${name}`, () => {
    const opened: StorageBackend[] = [];
    afterEach(async () => {
      for (const backend of opened.splice(0).reverse()) await backend.close();
    });
    const fresh = () => {
      const store = harness.fresh();
      const open = (options: StoreOpenOptions = {}) => {
        const backend = store.open({ actor: "user:test", ...options });
        opened.push(backend);
        return backend;
      };
      return { store: open(), open };
    };

    it("gets, sets and deletes values; every changed path bumps the revision by one", async () => {
      const { store } = fresh();
      expect(store.revision()).toBe(0);
      expect(store.get("/a")).toBeUndefined();
      expect(await store.set("/a", { n: 1, s: "x", list: [1.5, null, true] })).toBe(1);
      expect(store.get("/a")).toEqual({ n: 1, s: "x", list: [1.5, null, true] });
      expect(store.has("/a")).toBe(true);
      // The stored bytes are APEX's value encoding: a checkpoint hashes the same bytes on every backend.
      expect(store.getEncoded("/a")!.equals(encodeJson({ list: [1.5, null, true], n: 1, s: "x" }))).toBe(true);
      const { revision } = await store.batch((batch) => {
        batch.set("/b", "two");
        batch.set("/c", 3);
        batch.set("/b", "two again");
      });
      expect(revision).toBe(4);
      expect(store.revision()).toBe(4);
      expect(store.get("/b")).toBe("two again");
      expect(await store.delete("/a")).toEqual({ deleted: 1, revision: 5 });
      expect(await store.delete("/a")).toEqual({ deleted: 0, revision: 5 });
      expect(store.has("/a")).toBe(false);
      expect(() => store.get("no-slash")).toThrowError(ApexError);
    });

    it("orders keys by their UTF-8 bytes, outside the BMP too, in tree, keysBelow, query, keys and entries", async () => {
      const { store } = fresh();
      // UTF-16 order would put U+1F600 (a surrogate pair, 0xD83D…) before U+E000; UTF-8 puts it after.
      const names = ["a", "é", "\u{E000}", "\u{1F600}", "z", "A", "a0", "a/deeper"];
      await store.batch((batch) => {
        for (const [i, n] of names.entries()) batch.set(`/k/${n}`, i);
        batch.set("/k", "own");
        batch.set("/kz", "outside");
      });
      const expected = names.map((n) => `/k/${n}`).sort(utf8Order);
      expect(Array.from(store.keysBelow("/k"))).toEqual(expected);
      expect(Array.from(store.tree("/k"), (e) => e.path)).toEqual(["/k", ...expected]);
      expect(Array.from(store.query("/k/*"), (e) => e.path)).toEqual(expected.filter((p) => p !== "/k/a/deeper"));
      expect(Array.from(store.query("/k/**", { limit: 3 }), (e) => e.path)).toEqual(expected.slice(0, 3));
      expect(Array.from(store.query("/k/\u{1F600}"))).toEqual([{ path: "/k/\u{1F600}", value: 3 }]);
      expect(Array.from(store.keys({ start: "/k/", end: "/k0" }))).toEqual(expected);
      expect(Array.from(store.keys({ start: "/k/\u{E000}", end: "/k0", limit: 2 }))).toEqual(["/k/\u{E000}", "/k/\u{1F600}"]);
      expect(Array.from(store.keys({ start: "/k/\u{1F600}", end: "/k/", reverse: true }))).toEqual([...expected].reverse());
      expect(Array.from(store.keys({ start: "/k/z", end: "/k/a", reverse: true, limit: 2 }))).toEqual(["/k/z", "/k/a0"]);
      expect(Array.from(store.entries({ start: "/k/\u{1F600}", end: "/k0" }))).toEqual([{ path: "/k/\u{1F600}", value: 3 }]);
      // A range read past many keys pages through them in order.
      await store.batch((batch) => {
        for (let i = 0; i < 1500; i++) batch.set(`/many/${String(i).padStart(5, "0")}`, i);
      });
      const many = Array.from(store.entries({ start: "/many/", end: "/many0" }));
      expect(many.length).toBe(1500);
      expect(many[1499]).toEqual({ path: "/many/01499", value: 1499 });
      expect(Array.from(store.keys({ start: "/many0", end: "/many/", reverse: true })).slice(0, 2)).toEqual(["/many/01499", "/many/01498"]);
      // An offset skips entries of the range first (a page of a listing), in both directions.
      expect(Array.from(store.keys({ start: "/many/", end: "/many0", offset: 1300, limit: 2 }))).toEqual(["/many/01300", "/many/01301"]);
      expect(Array.from(store.entries({ start: "/many0", end: "/many/", reverse: true, offset: 1498 }))).toEqual([
        { path: "/many/00001", value: 1 },
        { path: "/many/00000", value: 0 },
      ]);
    });

    it("reads a range object given to one call as it was given to the next: keys then entries, a table's getKeys, getCount then getRange", async () => {
      const { store } = fresh();
      await store.batch((batch) => {
        for (const p of ["/r/a", "/r/b", "/r/c"]) batch.set(p, p);
      });
      // lmdb-js wrote its own flags into the range it was given (values: false, onlyCount), and the next read with it yielded keys as entries.
      const range = { start: "/r/", end: "/r0" };
      expect(Array.from(store.keys(range))).toEqual(["/r/a", "/r/b", "/r/c"]);
      expect(Array.from(store.entries(range))).toEqual([
        { path: "/r/a", value: "/r/a" },
        { path: "/r/b", value: "/r/b" },
        { path: "/r/c", value: "/r/c" },
      ]);
      expect(range).toEqual({ start: "/r/", end: "/r0" });
      const table = store.table<string, unknown>("ranged", { keys: "string", values: "structured" });
      await store.transaction(() => {
        for (const k of ["a", "b", "c"]) table.put(k, { k });
      });
      const rows = { start: "a", end: "c" };
      expect(Array.from(table.getKeys(rows))).toEqual(["a", "b"]);
      expect(table.getCount(rows)).toBe(2);
      expect(Array.from(table.getRange(rows))).toEqual([
        { key: "a", value: { k: "a" } },
        { key: "b", value: { k: "b" } },
      ]);
      expect(rows).toEqual({ start: "a", end: "c" });
    });

    it("reads ranges whose bounds no key can hold (NUL, an unpaired surrogate, past the key size) as the keys order them", async () => {
      const { store } = fresh();
      const keys = ["/b", "/b/x", "/b\uD7FF", "/b\uE000", "/b\u{1F600}", "/c"];
      await store.batch((batch) => {
        for (const k of keys) batch.set(k, k);
      });
      const read = (range: Parameters<StorageBackend["keys"]>[0]) => Array.from(store.keys(range));
      // NUL: PostgreSQL's text refused it (APEX_E_STORE); every key orders after a bound cut there.
      expect(read({ start: "/b\u0000" })).toEqual(keys.slice(1));
      expect(read({ end: "/b\u0000zz" })).toEqual(["/b"]);
      expect(read({ start: "/b\u0000", reverse: true })).toEqual(["/b"]);
      expect(read({ start: "/c", end: "/b\u0000", reverse: true })).toEqual(keys.slice(1).reverse());
      expect(Array.from(store.entries({ start: "/b\u0000", limit: 1 }))).toEqual([{ path: "/b/x", value: "/b/x" }]);
      expect(Array.from(store.query("/b\u0000*"))).toEqual([]);
      expect(Array.from(store.keysBelow("/b\u0000"))).toEqual([]);
      // An unpaired surrogate orders between U+D7FF and U+E000 (lmdb-js: so for a short bound, as U+FFFD for a long one; PostgreSQL: as U+FFFD).
      const long = "x".repeat(80);
      for (const tail of ["", long]) {
        expect(read({ start: `/b\uD800${tail}` }), tail).toEqual(["/b\uE000", "/b\u{1F600}", "/c"]);
        expect(read({ end: `/b\uDC00${tail}` }), tail).toEqual(["/b", "/b/x", "/b\uD7FF"]);
        expect(read({ start: `/b\uD800${tail}`, reverse: true }), tail).toEqual(["/b\uD7FF", "/b/x", "/b"]);
        expect(read({ start: "/c", end: `/b\uD800${tail}`, reverse: true }), tail).toEqual(["/c", "/b\u{1F600}", "/b\uE000"]);
      }
      // Longer than any key (and than LMDB's key size, where lmdb-js threw a bare Error).
      const past = `/${"z".repeat(2100)}`;
      expect(read({ start: "/b", end: past })).toEqual(keys);
      expect(read({ start: past, reverse: true, limit: 1 })).toEqual(["/c"]);
      expect(read({ start: past })).toEqual([]);
      expect(Array.from(store.query(past))).toEqual([]);
      expect(Array.from(store.keysBelow(past))).toEqual([]);
    });

    it("deleteDamaged of a key no store holds (NUL, an unpaired surrogate) deletes nothing, and the batch goes on", async () => {
      const { store } = fresh();
      await store.set("/d/\uFFFD", 1);
      const { value, revision } = await store.batch((batch) => [batch.deleteDamaged("/d/\u0000"), batch.deleteDamaged("/d/\uD800"), batch.deleteDamaged("/d/\uDC00x"), batch.set("/d/after", 2)]);
      // PostgreSQL: NUL failed the statement and the transaction with it; the surrogate was sent as U+FFFD and deleted /d/\uFFFD.
      expect(value).toEqual([false, false, false, undefined]);
      expect(revision).toBe(2);
      expect(store.get("/d/\uFFFD")).toBe(1);
      expect(store.get("/d/after")).toBe(2);
    });

    it("queries with a limit: 0 yields nothing, for a glob and for a literal path alike", async () => {
      const { store } = fresh();
      await store.batch((batch) => {
        for (const p of ["/q/a", "/q/b"]) batch.set(p, p);
      });
      expect(Array.from(store.query("/q/*", { limit: 0 }))).toEqual([]);
      expect(Array.from(store.query("/q/a", { limit: 0 }))).toEqual([]);
      expect(Array.from(store.query("/q/*", { limit: -1 }))).toEqual([]);
      expect(Array.from(store.query("/q/*", { limit: 1 }))).toEqual([{ path: "/q/a", value: "/q/a" }]);
      expect(Array.from(store.query("/q/b", { limit: 1 }))).toEqual([{ path: "/q/b", value: "/q/b" }]);
    });

    it("keeps a table first opened inside a transaction that aborts apart from the tables opened after it", async () => {
      const { store, open } = fresh();
      await expect(
        store.transaction(() => {
          store.table<string, unknown>("first", { keys: "string", values: "structured" }).put("lost", 1);
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      // LMDB closed the aborted transaction's new database handle, and the next database opened took its slot: the
      // first table's handle then read and wrote the second table.
      const first = store.table<string, unknown>("first", { keys: "string", values: "structured" });
      const second = store.table<string, unknown>("second", { keys: "string", values: "structured" });
      await store.transaction(() => second.put("s", 2));
      expect(Array.from(first.getKeys())).toEqual([]);
      await store.transaction(() => first.put("f", 1));
      expect(Array.from(second.getRange())).toEqual([{ key: "s", value: 2 }]);
      expect(Array.from(first.getRange())).toEqual([{ key: "f", value: 1 }]);
      const other = open();
      expect(Array.from(other.table<string, unknown>("first", { keys: "string", values: "structured" }).getKeys())).toEqual(["f"]);
      expect(Array.from(other.table<string, unknown>("second", { keys: "string", values: "structured" }).getKeys())).toEqual(["s"]);
    });

    it("reaches a table's smallest key in reverse (uint32 0, binary <00>), and counts what a range with a limit yields", async () => {
      const { store } = fresh();
      const numbers = store.table<number, Buffer>("smallest-n", { keys: "uint32", values: "binary" });
      const bytes = store.table<Buffer, Buffer>("smallest-b", { keys: "binary", values: "binary" });
      await store.transaction(() => {
        for (const k of [0, 1, 7]) numbers.put(k, Buffer.from([k]));
        for (const hex of ["00", "0000", "01"]) bytes.put(Buffer.from(hex, "hex"), Buffer.from(hex, "hex"));
      });
      // lmdb-js ends a reverse range without `end` before its "beginning key", exclusive: 0 and <00> were left out.
      expect(Array.from(numbers.getKeys({ reverse: true }))).toEqual([7, 1, 0]);
      expect(Array.from(numbers.getRange({ start: 1, reverse: true }), (e) => e.key)).toEqual([1, 0]);
      expect(Array.from(bytes.getKeys({ reverse: true }), (k) => k.toString("hex"))).toEqual(["01", "0000", "00"]);
      expect(numbers.getCount({ reverse: true })).toBe(3);
      // lmdb-js's count went past the limit.
      expect(numbers.getCount({ limit: 2 })).toBe(2);
      expect(numbers.getCount({ limit: 0 })).toBe(0);
      expect(numbers.getCount({ start: 1, limit: 5 })).toBe(2);
      expect(numbers.getCount({ offset: 1, limit: 1 })).toBe(1);
      expect(bytes.getCount({ start: Buffer.from("00", "hex"), end: Buffer.from("01", "hex"), limit: 1 })).toBe(1);
    });

    it("logs one revision per changed path; changesSince starts inside a batch and honours limit", async () => {
      const { store } = fresh();
      await store.set("/x", 1, "user:alice");
      await store.batch((batch) => {
        batch.set("/y", 2);
        batch.delete("/x");
        batch.set("/z", 3);
      }, "agent:bob");
      await store.delete("/z", { actor: "plugin:p" });
      const all = Array.from(store.changesSince(0));
      expect(all.map((c) => [c.revision, c.path, c.kind, c.actor])).toEqual([
        [1, "/x", "put", "user:alice"],
        [2, "/y", "put", "agent:bob"],
        [3, "/x", "delete", "agent:bob"],
        [4, "/z", "put", "agent:bob"],
        [5, "/z", "delete", "plugin:p"],
      ]);
      expect(all[1]!.time).toBe(all[2]!.time);
      expect(Array.from(store.changesSince(2), (c) => c.revision)).toEqual([3, 4, 5]);
      expect(Array.from(store.changesSince(1, { limit: 2 }), (c) => c.revision)).toEqual([2, 3]);
      expect(Array.from(store.changesSince(5))).toEqual([]);
      // Many batches: the log pages too.
      for (let i = 0; i < 300; i++) store.batchSync((batch) => batch.set(`/n/${i}`, i));
      const since = Array.from(store.changesSince(5));
      expect(since.length).toBe(300);
      expect(since[299]).toMatchObject({ revision: 305, path: "/n/299", kind: "put" });
    });

    it("reads a batch of many changes from its middle, call after call, and a batch rolled back and written again anew as it is now", async () => {
      const { store } = fresh();
      await store.batch((batch) => {
        for (let i = 0; i < 25_000; i++) batch.set(`/big/${i}`, i);
      });
      const read = (since: number, limit: number) => Array.from(store.changesSince(since, { limit }), (change) => `${change.revision}:${change.path}`);
      for (const since of [0, 10_000, 20_000, 24_999]) expect(read(since, 3), `since ${since}`).toEqual([1, 2, 3].map((i) => `${since + i}:/big/${since + i - 1}`).slice(0, 25_000 - since));
      // Read inside a transaction that then fails: the batch it read is gone, and the next takes its revisions.
      await expect(
        store.transaction(() => {
          store.batchSync((batch) => {
            for (let i = 0; i < 20_000; i++) batch.set(`/gone/${i}`, i);
          });
          expect(read(25_010, 1)).toEqual(["25011:/gone/10"]);
          throw new Error("rolled back");
        }),
      ).rejects.toThrow("rolled back");
      await store.batch((batch) => {
        for (let i = 0; i < 20_000; i++) batch.set(`/kept/${i}`, i);
      });
      expect(read(25_010, 2)).toEqual(["25011:/kept/10", "25012:/kept/11"]);
      expect(read(24_999, 2)).toEqual(["25000:/big/24999", "25001:/kept/0"]);
    });

    it("gives a batch run inside another its own revisions, and logs both in revision order", async () => {
      const { store } = fresh();
      await store.set("/x", 0);
      const { value, revision } = await store.batch((outer) => {
        outer.set("/a", 1);
        const seen = [store.revision()];
        const inner = store.batchSync((nested) => {
          nested.set("/b", 2);
          nested.delete("/x");
          return store.revision();
        }, "agent:inner");
        outer.set("/c", 3);
        seen.push(store.revision(), ...Array.from(store.changesSince(3), (c) => c.revision));
        outer.set("/d", 4);
        return { seen, inner };
      }, "agent:outer");
      // LMDB logged the whole outer batch at its end, keyed by its first revision, over the inner one's record (the
      // same revisions); PostgreSQL appended the outer batch's later changes to its first record, with the inner's revisions.
      expect(value).toEqual({ seen: [2, 5, 4, 5], inner: { value: 4, revision: 4 } });
      expect(revision).toBe(6);
      expect(store.revision()).toBe(6);
      expect(Array.from(store.changesSince(0), (c) => [c.revision, c.path, c.kind, c.actor])).toEqual([
        [1, "/x", "put", "user:test"],
        [2, "/a", "put", "agent:outer"],
        [3, "/b", "put", "agent:inner"],
        [4, "/x", "delete", "agent:inner"],
        [5, "/c", "put", "agent:outer"],
        [6, "/d", "put", "agent:outer"],
      ]);
    });

    it("refuses an actor the revision log cannot record (NUL, an unpaired surrogate), writing nothing", async () => {
      const { store } = fresh();
      // PostgreSQL failed the commit with a bare store error; LMDB logged NUL, and an unpaired surrogate as three U+FFFD.
      for (const actor of ["user:a\u0000b", "user:\uD800", "agent:\uDC00x"]) {
        await expect(store.set("/a", 1, actor), JSON.stringify(actor)).rejects.toThrowError(expect.objectContaining({ code: "APEX_E_INTERNAL" }));
      }
      expect(store.revision()).toBe(0);
      expect(await store.set("/a", 1, "user:é\u{1F600}\nx")).toBe(1);
      expect(Array.from(store.changesSince(0), (c) => c.actor)).toEqual(["user:é\u{1F600}\nx"]);
    });

    it("deletes trees, recursively, each deleted path logged", async () => {
      const { store } = fresh();
      await store.batch((batch) => {
        for (const p of ["/t", "/t/a", "/t/a/b", "/t/\u{1F600}", "/t0", "/u"]) batch.set(p, p);
      });
      expect(await store.delete("/t", { recursive: true })).toEqual({ deleted: 4, revision: 10 });
      expect(Array.from(store.keysBelow("/"))).toEqual(["/t0", "/u"]);
      expect(Array.from(store.changesSince(6), (c) => `${c.kind}:${c.path}`)).toEqual(["delete:/t", "delete:/t/a", "delete:/t/a/b", "delete:/t/\u{1F600}"]);
    });

    it("writes a batch all or nothing: a throw writes nothing and bumps no revision", async () => {
      const { store, open } = fresh();
      await store.set("/keep", 1);
      await expect(
        store.batch((batch) => {
          batch.set("/keep", 2);
          batch.set("/new", 3);
          throw new Error("changed my mind");
        }),
      ).rejects.toThrow("changed my mind");
      expect(() =>
        store.batchSync((batch) => {
          for (let i = 0; i < 50; i++) batch.set(`/sync/${i}`, i);
          throw new Error("no");
        }),
      ).toThrow("no");
      const other = open();
      for (const reader of [store, other]) {
        expect(reader.get("/keep")).toBe(1);
        expect(reader.has("/new")).toBe(false);
        expect(Array.from(reader.keysBelow("/sync"))).toEqual([]);
        expect(reader.revision()).toBe(1);
      }
      // A value JSON cannot hold is refused before anything is written.
      await expect(store.set("/bad", Number.NaN as unknown as number)).rejects.toThrow();
      expect(store.revision()).toBe(1);
    });

    it("runs a transaction over the keyspace and tables at once, seen by another instance once it resolves", async () => {
      const { store, open } = fresh();
      const objects = store.table<Buffer, Buffer>("objects", { keys: "binary", values: "binary" });
      const hash = Buffer.from("00ff10", "hex");
      const result = await store.transaction(() => {
        objects.put(hash, Buffer.from("payload"));
        // Reads inside see the transaction's own writes: point and range, keyspace and table.
        expect(objects.get(hash)).toEqual(Buffer.from("payload"));
        expect(Array.from(objects.getKeys())).toEqual([hash]);
        const inner = store.batchSync((batch) => batch.set("/ref", hash.toString("hex")));
        expect(store.get("/ref")).toBe("00ff10");
        expect(Array.from(store.keysBelow("/"))).toEqual(["/ref"]);
        return inner.revision;
      });
      expect(result).toBe(1);
      const other = open();
      expect(other.get("/ref")).toBe("00ff10");
      expect(other.table<Buffer, Buffer>("objects", { keys: "binary", values: "binary" }).get(hash)).toEqual(Buffer.from("payload"));
      expect(other.tableNames()).toContain("objects");

      await expect(
        store.transaction(() => {
          objects.put(Buffer.from("01", "hex"), Buffer.from("lost"));
          store.batchSync((batch) => batch.set("/lost", true));
          throw new Error("abort");
        }),
      ).rejects.toThrow("abort");
      expect(other.has("/lost")).toBe(false);
      expect(objects.doesExist(Buffer.from("01", "hex"))).toBe(false);
      expect(other.revision()).toBe(1);
      // Table writes outside a transaction are refused.
      expect(() => objects.put(Buffer.from("02", "hex"), Buffer.from("x"))).toThrow();
    });

    it("orders and ranges tables of every key kind as LMDB does", async () => {
      const { store } = fresh();
      const strings = store.table<string, Buffer>("strings", { keys: "string", values: "binary" });
      const numbers = store.table<number, unknown>("numbers", { keys: "uint32", values: "structured" });
      const bytes = store.table<Buffer, Buffer>("bytes", { keys: "binary", values: "binary" });
      const tuples = store.table<Array<string | number>, unknown>("tuples", { keys: "tuple", values: "structured" });
      const stringKeys = ["b", "a", "\u{1F600}", "\u{E000}", "ab", "é"];
      const numberKeys = [65536, 1, 256, 0, 4294967295, 2];
      const byteKeys = ["02", "01", "0100", "ff", "00ff", "01ff"].map((h) => Buffer.from(h, "hex"));
      const tupleKeys: Array<Array<string | number>> = [["b", 0], ["a", 10], ["a", 2], ["a", 1], ["a", "x"], ["ab", 0]];
      await store.transaction(() => {
        for (const k of stringKeys) strings.put(k, Buffer.from(k));
        for (const k of numberKeys) numbers.put(k, { n: k, nested: { list: [k, "s"] } });
        for (const k of byteKeys) bytes.put(k, k);
        for (const k of tupleKeys) tuples.put(k, { k });
      });
      expect(Array.from(strings.getKeys())).toEqual([...stringKeys].sort(utf8Order));
      expect(Array.from(numbers.getKeys())).toEqual([0, 1, 2, 256, 65536, 4294967295]);
      expect(Array.from(bytes.getKeys(), (k) => k.toString("hex"))).toEqual(["00ff", "01", "0100", "01ff", "02", "ff"]);
      expect(Array.from(tuples.getKeys())).toEqual([["a", 1], ["a", 2], ["a", 10], ["a", "x"], ["ab", 0], ["b", 0]]);

      expect(numbers.get(256)).toEqual({ n: 256, nested: { list: [256, "s"] } });
      expect(Array.from(numbers.getKeys({ start: 2, end: 65536 }))).toEqual([2, 256]);
      expect(Array.from(numbers.getKeys({ start: 65536, end: 1, reverse: true }))).toEqual([65536, 256, 2]);
      expect(Array.from(numbers.getRange({ start: 1, limit: 2 }), (e) => e.key)).toEqual([1, 2]);
      expect(Array.from(numbers.getRange({ start: 1, offset: 1, limit: 2 }), (e) => e.key)).toEqual([2, 256]);
      expect(Array.from(strings.getKeys({ start: "\u{E000}", reverse: true, limit: 3 }))).toEqual(["\u{E000}", "é", "b"]);
      expect(Array.from(bytes.getRange({ start: Buffer.from("01", "hex"), end: Buffer.from("02", "hex") }), (e) => e.value.toString("hex"))).toEqual(["01", "0100", "01ff"]);
      expect(Array.from(tuples.getKeys({ start: ["a"], end: ["a", "z"] }))).toEqual([["a", 1], ["a", 2], ["a", 10], ["a", "x"]]);
      expect(Array.from(tuples.getRange({ start: ["a", 5], limit: 1 }))).toEqual([{ key: ["a", 10], value: { k: ["a", 10] } }]);
      expect(strings.getCount()).toBe(6);
      expect(numbers.getCount({ start: 2 })).toBe(4);
      expect(bytes.getStats().entryCount).toBe(6);
      expect(strings.getBinaryFast("é")?.toString("hex")).toBe(Buffer.from("é").toString("hex"));
      // An exact view, whatever the backend reads into (lmdb-js: a shared buffer with an own `length`).
      const fast = strings.getBinaryFast("é")!;
      expect([fast.byteLength, fast.length, fast.equals(Buffer.from("é")), fast.subarray().length]).toEqual([2, 2, true, 2]);

      await store.transaction(() => {
        expect(numbers.remove(256)).toBeTruthy();
        expect(numbers.doesExist(256)).toBe(false);
        expect(Array.from(numbers.getKeys({ start: 2, end: 65537 }))).toEqual([2, 65536]);
      });
      expect(numbers.get(256)).toBeUndefined();
      expect(store.tableNames().filter((n) => ["strings", "numbers", "bytes", "tuples"].includes(n)).sort()).toEqual(["bytes", "numbers", "strings", "tuples"]);
      // Names listed in the order of their UTF-8 bytes, as keys are (LMDB sorted them as UTF-16: U+1F600 before U+FFFF).
      await store.transaction(() => {
        for (const name of ["\u{1F600}", "\uFFFF", "é"]) store.table<string, Buffer>(name, { keys: "string", values: "binary" }).put("k", Buffer.from("v"));
      });
      expect(store.tableNames().filter((n) => ["\u{1F600}", "\uFFFF", "é", "tuples"].includes(n))).toEqual(["tuples", "é", "\uFFFF", "\u{1F600}"]);
      // Tables are not the keyspace: no revision, no log.
      expect(store.revision()).toBe(0);
    });

    it("hands out a value larger than 16 MiB as a Buffer, from get and getBinaryFast (lmdb-js: a plain Uint8Array past its read buffer)", async () => {
      const { store, open } = fresh();
      const table = store.table<number, Buffer>("large", { keys: "uint32", values: "binary" });
      const large = Buffer.alloc(17 * 1024 * 1024, 0x61);
      large.writeUInt32LE(0xdeadbeef, large.length - 4);
      await store.transaction(() => {
        table.put(1, large);
        table.put(2, Buffer.from("small"));
      });
      for (const reader of [store, open({ readOnly: true })]) {
        const read = reader.table<number, Buffer>("large", { keys: "uint32", values: "binary" });
        const fast = read.getBinaryFast(1)!;
        expect([Buffer.isBuffer(fast), fast.length, fast.readUInt32LE(fast.length - 4), fast.subarray(0, 2).toString("latin1")]).toEqual([true, large.length, 0xdeadbeef, "aa"]);
        expect(Buffer.isBuffer(read.get(1))).toBe(true);
        expect(read.getBinaryFast(2)!.toString("latin1")).toBe("small");
      }
    });

    it("keeps a binary-keyed table of thousands of entries in order through inserts, overwrites and deletes (PostgreSQL: many to a row)", async () => {
      const { store, open } = fresh();
      const table = store.table<Buffer, Buffer>("many", { keys: "binary", values: "binary" });
      let seed = 7;
      const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 0x1_0000_0000);
      const keyOf = (i: number) => createHash("sha256").update(`k${i}`).digest();
      const model = new Map<string, Buffer>();
      const check = (reader: StorageBackend) => {
        const t = reader.table<Buffer, Buffer>("many", { keys: "binary", values: "binary" });
        const keys = [...model.keys()].sort();
        expect(Array.from(t.getKeys(), (k) => k.toString("hex"))).toEqual(keys);
        expect(t.getStats().entryCount).toBe(keys.length);
        for (let probe = 0; probe < 6; probe++) {
          const a = keys[Math.floor(next() * keys.length)]!;
          const b = keys[Math.floor(next() * keys.length)]!;
          const [low, high] = a < b ? [a, b] : [b, a];
          const start = Buffer.from(low, "hex");
          const end = Buffer.from(high, "hex");
          const inside = keys.filter((k) => k >= low && k < high);
          expect(Array.from(t.getKeys({ start, end }), (k) => k.toString("hex"))).toEqual(inside);
          expect(t.getCount({ start, end })).toBe(inside.length);
          const down = keys.filter((k) => k <= high && k > low).reverse();
          expect(Array.from(t.getKeys({ start: end, end: start, reverse: true }), (k) => k.toString("hex"))).toEqual(down);
          expect(Array.from(t.getRange({ start, offset: 3, limit: 50 }), (e) => e.key.toString("hex"))).toEqual(keys.filter((k) => k >= low).slice(3, 53));
          // A key between two stored ones, and one below them all.
          const between = Buffer.concat([start, Buffer.from([0])]);
          expect(t.get(between)).toBeUndefined();
          expect(t.get(Buffer.from([0]))).toEqual(model.get("00"));
          expect(t.get(start)).toEqual(model.get(low));
        }
        expect(Array.from(t.getKeys({ reverse: true, limit: 5 }), (k) => k.toString("hex"))).toEqual(keys.slice(-5).reverse());
        // Many at once (a backend may read them in a few statements): present, absent, repeated; few and many.
        if (t.getBinaryMany) {
          for (const size of [3, 400]) {
            const wanted = Array.from({ length: size }, (_, i) => (i % 5 === 4 ? Buffer.from(`absent${i}`) : Buffer.from(keys[Math.floor(next() * keys.length)]!, "hex")));
            wanted.push(wanted[0]!);
            expect(t.getBinaryMany(wanted)).toEqual(wanted.map((k) => model.get(k.toString("hex"))));
          }
        }
      };
      // Inserts in rounds (a row fills and is cut), values of every size (one past the size of a row).
      for (let round = 0; round < 4; round++) {
        await store.transaction(() => {
          for (let i = round * 700; i < (round + 1) * 700; i++) {
            const value = Buffer.alloc(i % 97 === 0 ? 2500 : 1 + (i % 9), i % 251);
            table.put(keyOf(i), value);
            model.set(keyOf(i).toString("hex"), value);
          }
          // Read back inside the transaction, before it is sent.
          expect(table.get(keyOf(round * 700 + 1))).toEqual(model.get(keyOf(round * 700 + 1).toString("hex")));
          if (table.getBinaryMany) expect(table.getBinaryMany([keyOf(round * 700 + 2), keyOf(0)])).toEqual([keyOf(round * 700 + 2), keyOf(0)].map((k) => model.get(k.toString("hex"))));
        });
        check(store);
      }
      // Overwrites and deletes of a third, and every key of a stretch (whole rows emptied).
      const sorted = [...model.keys()].sort();
      await store.transaction(() => {
        for (const [at, hex] of sorted.entries()) {
          if (at % 3 === 0 || (at > 1000 && at < 1400)) {
            expect(table.remove(Buffer.from(hex, "hex"))).toBeTruthy();
            model.delete(hex);
          } else if (at % 3 === 1) {
            const value = Buffer.from(`new ${at}`);
            table.put(Buffer.from(hex, "hex"), value);
            model.set(hex, value);
          }
        }
      });
      check(store);
      // Keys below every stored one, and the lowest stored keys removed.
      await store.transaction(() => {
        for (const hex of ["00", "0000", "000001"]) {
          table.put(Buffer.from(hex, "hex"), Buffer.from(hex));
          model.set(hex, Buffer.from(hex));
        }
        for (const hex of [...model.keys()].sort().slice(3, 8)) {
          table.remove(Buffer.from(hex, "hex"));
          model.delete(hex);
        }
      });
      check(store);
      check(open({ readOnly: true }));
    });

    it("reads in a scan what another instance committed after an earlier scan ended, in the same turn", () => {
      const { store, open } = fresh();
      const reader = open();
      store.batchSync((batch) => batch.set("/s/a", 1));
      expect(Array.from(reader.keys({ start: "/s/" }))).toEqual(["/s/a"]);
      store.batchSync((batch) => batch.set("/s/b", 2));
      // PostgreSQL: the read view the first scan left open (until the next statement, else the end of the turn) was
      // taken up by the next scan, which missed /s/b; the revision, read outside it, had it.
      expect(Array.from(reader.keys({ start: "/s/" }))).toEqual(["/s/a", "/s/b"]);
      expect(Array.from(reader.changesSince(0), (c) => c.path)).toEqual(["/s/a", "/s/b"]);
      store.batchSync((batch) => batch.set("/s/c", 3));
      expect(readView(reader, () => [reader.revision(), Array.from(reader.keysBelow("/s"))])).toEqual([3, ["/s/a", "/s/b", "/s/c"]]);
      expect(Array.from(reader.query("/s/*"), (e) => e.path)).toEqual(["/s/a", "/s/b", "/s/c"]);
    });

    it("signals a change made by another instance to subscribers", async () => {
      const { store, open } = fresh();
      const watcher = open();
      let calls = 0;
      const stop = watcher.subscribe(() => calls++);
      // Let the subscription settle (LISTEN in place, or a first poll).
      await new Promise((resolve) => setTimeout(resolve, 300));
      const before = calls;
      await store.set("/watched", 1);
      await eventually(() => calls > before);
      stop();
      const after = calls;
      await store.set("/watched", 2);
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(calls).toBe(after);
      expect(watcher.get("/watched")).toBe(2);
    });

    it("refuses reads and writes after close() with APEX_E_STORE, tables' too", async () => {
      const { open } = fresh();
      const store = open();
      await store.set("/x", 1);
      const table = store.table<string, unknown>("closing", { keys: "string", values: "structured" });
      await store.transaction(() => table.put("a", 1));
      await store.close();
      expect(store.closed).toBe(true);
      // lmdb-js refused them with a bare Error ("Can not renew a transaction from a closed database").
      const closed = expect.objectContaining({ code: "APEX_E_STORE" });
      for (const read of [
        () => store.get("/x"),
        () => store.has("/x"),
        () => store.getEncoded("/x"),
        () => store.revision(),
        () => Array.from(store.keys({})),
        () => Array.from(store.entries({ start: "/" })),
        () => Array.from(store.query("/*")),
        () => Array.from(store.tree("/")),
        () => Array.from(store.keysBelow("/")),
        () => Array.from(store.changesSince(0)),
        () => store.tableNames(),
        () => table.get("a"),
        () => table.getBinaryFast("a"),
        () => table.doesExist("a"),
        () => Array.from(table.getKeys()),
        () => table.getCount(),
      ]) {
        expect(read, String(read)).toThrowError(closed);
      }
      await expect(store.set("/x", 2)).rejects.toThrowError(closed);
      expect(() => store.batchSync((batch) => batch.set("/x", 3))).toThrowError(closed);
    });

    it("refuses writes on a read-only open, and a read-only open of a missing store", async () => {
      const { store, open } = fresh();
      expect(() => harness.fresh().open({ readOnly: true })).toThrowError(expect.objectContaining({ code: "APEX_E_NO_STORE" }));
      await store.set("/x", 1);
      const reader = open({ readOnly: true });
      expect(reader.readOnly).toBe(true);
      expect(reader.get("/x")).toBe(1);
      await expect(reader.set("/x", 2)).rejects.toThrowError(ApexError);
      expect(() => reader.batchSync((batch) => batch.set("/y", 1))).toThrowError(ApexError);
      await expect(reader.transaction(() => 1)).rejects.toThrowError(ApexError);
      expect(store.get("/x")).toBe(1);
    });
  });
}

export type { Table };
