/**
 * The current LMDB Store seen through the storage port, for the conformance suite: the Store
 * already has the keyspace; this adds what the port has beyond it (raw key ranges, named tables
 * in LMDB sub-databases with lmdb's own key encodings, a revision poll for subscribe) from the
 * Store's public handles. The LMDB backend proper implements the port itself; until it does,
 * this lets the suite check that other backends order and answer exactly as LMDB does.
 */
import type { Database } from "lmdb";
import type { Entry, KeyRange, StorageBackend, StoreOpenOptions, Table, TableKey, TableOptions } from "../../core/store/port.js";
import { Store } from "../../core/store/store.js";

const KEYSPACE_DBS = new Set(["kv", "log", "meta"]);

export function openLmdbPort(dir: string, options: StoreOpenOptions = {}): StorageBackend {
  const store = Store.open(dir, options);
  const kv = store.openDatabase<unknown, string>("kv");
  let inTransaction = false;
  const tables = new Map<string, Table>();
  const range = <K>(r: KeyRange<K>) => r as unknown as Parameters<Database["getRange"]>[0];

  const backend: StorageBackend = {
    info: { backend: "lmdb", location: dir },
    dir,
    readOnly: store.readOnly,
    actor: store.actor,
    get: (path) => store.get(path),
    getEncoded: (path) => store.getEncoded(path),
    has: (path) => store.has(path),
    revision: () => store.revision(),
    query: (glob, o) => store.query(glob, o),
    tree: (path) => store.tree(path),
    keysBelow: (path) => store.keysBelow(path),
    *keys(r) {
      for (const key of kv.getKeys(range(r))) yield key as string;
    },
    *entries(r): Iterable<Entry> {
      for (const { key, value } of kv.getRange(range(r))) yield { path: key, value: value as Entry["value"] };
    },
    changesSince: (since, o) => store.changesSince(since, o),
    subscribe(listener) {
      let last = store.revision();
      const timer = setInterval(() => {
        const now = store.revision();
        if (now !== last) {
          last = now;
          listener();
        }
      }, 20);
      return () => clearInterval(timer);
    },
    set: (path, value, actor) => store.set(path, value, actor),
    delete: (path, o) => store.delete(path, o),
    batch: (fn, actor) => store.batch(fn, actor),
    batchSync: (fn, actor) => store.batchSync(fn, actor),
    table<K extends TableKey = TableKey, V = Buffer>(name: string, o: TableOptions): Table<K, V> {
      let table = tables.get(name);
      if (!table) {
        const keyEncoding = o.keys === "uint32" ? "uint32" : o.keys === "binary" ? "binary" : "ordered-binary";
        const db = store.environment.openDB({ name, keyEncoding, encoding: o.values === "binary" ? "binary" : "msgpack" }) as unknown as Database<unknown, TableKey>;
        const write = <T>(fn: () => T): T => {
          if (!inTransaction) throw new Error(`Writes to table ${name} must run inside transaction().`);
          return fn();
        };
        table = {
          get: (key) => db.get(key) as Buffer | undefined,
          // lmdb-js answers getBinaryFast with a view of its shared read buffer (16 MiB long here): a copy keeps the suite exact.
          getBinaryFast: (key) => db.getBinary(key) as Buffer | undefined,
          put: (key, value) => write(() => db.putSync(key, value)),
          remove: (key) => write(() => db.removeSync(key)),
          doesExist: (key) => db.doesExist(key),
          getKeys: (r) => db.getKeys(range(r ?? {})) as Iterable<TableKey>,
          getRange: (r) => db.getRange(range(r ?? {})) as unknown as Iterable<{ key: TableKey; value: Buffer }>,
          getCount: (r) => db.getCount(range(r ?? {})),
          getStats: () => db.getStats() as { entryCount?: number },
        };
        tables.set(name, table);
      }
      return table as unknown as Table<K, V>;
    },
    tableNames() {
      const names: string[] = [];
      for (const key of store.environment.getKeys()) if (typeof key === "string" && !KEYSPACE_DBS.has(key)) names.push(key);
      return names;
    },
    async transaction(fn) {
      if (inTransaction) return fn();
      return store.transaction(() => {
        inTransaction = true;
        try {
          return fn();
        } finally {
          inTransaction = false;
        }
      });
    },
    close: () => store.close(),
  };
  return backend;
}
