/**
 * What an LMDB store's url cannot be, checked without loading lmdb (by the backend's open and
 * check, and by the commands that only describe the store: `config show`, `config path`, `plugins list`).
 * The check itself is core's (core/store/store.ts), which runs it before it looks for a store.
 */
import { assertNotPostgresUrl, lmdbDataDir } from "../../core/store/store.js";
import type { StoreSpec } from "../../core/store/port.js";

export { assertNotPostgresUrl };

/** The same for a spec of any backend (an LMDB one is checked), for the commands that describe the store without opening it. */
export function assertLmdbUrl(spec: StoreSpec): void {
  if (spec.backend === "lmdb") assertNotPostgresUrl(lmdbDataDir(spec));
}
