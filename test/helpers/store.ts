import { LmdbStore } from "../../plugins/lmdb/backend.js";
import type { Store } from "../../core/store/store.js";

export { LmdbStore };

/** One synchronous LMDB write transaction (tests that plant damage or write between synchronous steps). */
export function transactionSync<T>(store: Store, fn: () => T): T {
  if (!(store instanceof LmdbStore)) throw new Error("transactionSync: an LMDB store only");
  return store.transactionSync(fn);
}
