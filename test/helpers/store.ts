import { LmdbStore } from "../../plugins/lmdb/backend.js";
import type { Store } from "../../core/store/store.js";

export { LmdbStore };

/**
 * One synchronous write transaction (tests that plant damage or write between synchronous steps);
 * joins one already open. Both backends have one underneath transaction() (LMDB's, and
 * PostgreSQL's, which waits on its driver's worker); the port offers only the asynchronous form.
 */
export function transactionSync<T>(store: Store, fn: () => T): T {
  const sync = (store as unknown as { transactionSync?: (fn: () => T) => T }).transactionSync;
  if (typeof sync !== "function") throw new Error(`transactionSync: the ${store.info.backend} backend has no synchronous transaction`);
  return sync.call(store, fn);
}
