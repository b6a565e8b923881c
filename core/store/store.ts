/**
 * The store as the rest of APEX sees it: the storage port (port.ts), whatever the backend.
 * Open one with openStore() (open.ts).
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { StorageBackend, StoreSpec } from "./port.js";

export type { Change, ChangeKind, Entry, JsonValue, StoreOpenOptions, Table, TableOptions, WriteBatch } from "./port.js";

/** A project's store: the storage port. */
export type Store = StorageBackend;

/** LMDB's data file in a store directory (archive backups copy it). */
export const STORE_FILE = "store.mdb";

/** The LMDB data directory a spec names: `url` "lmdb:PATH" (APEX_STORE_URL), else the store directory. */
export function lmdbDataDir(spec: StoreSpec): string {
  return spec.url?.startsWith("lmdb:") ? resolve(spec.dir, spec.url.slice("lmdb:".length)) : spec.dir;
}

/**
 * True when an LMDB store exists for the spec: a stat or two, without loading lmdb. A directory
 * this user may not enter (another user's store: `dir/.` does not stat) counts as one, so that
 * opening it says so (plugins/lmdb, APEX_E_FORBIDDEN) instead of reads answering "no session yet".
 */
export function lmdbStoreExists(spec: StoreSpec): boolean {
  return existsSync(join(lmdbDataDir(spec), STORE_FILE)) || (existsSync(lmdbDataDir(spec)) && !existsSync(`${lmdbDataDir(spec)}/.`));
}
