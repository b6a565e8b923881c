/**
 * The store as the rest of APEX sees it: the storage port (port.ts), whatever the backend.
 * Open one with openStore() (open.ts).
 */
import { existsSync } from "node:fs";
import { join, resolve, sep } from "node:path";
import { ApexError } from "../errors.js";
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
 * An LMDB url that is a PostgreSQL URL (`store: {backend: lmdb, url: postgres://…}`: the backend
 * left as it was, or `lmdb:postgres://…`): a config error. It was taken as a directory under the
 * project, `postgres:/user:password@host:5432/db`, made and written there, and that path, the
 * password in it, printed by `config show`, `config path` and `plugins list`. The path is not
 * quoted, for the password in it.
 */
export function assertNotPostgresUrl(dataDir: string): void {
  if (!dataDir.split(sep).some((segment) => /^postgres(ql)?:$/i.test(segment))) return;
  throw new ApexError("APEX_E_CONFIG", "The LMDB store's url is a PostgreSQL URL (postgres://…), which is no directory: an LMDB url is the directory of the store.", {
    hint: "To use that PostgreSQL server, set `backend: postgres` in the store: section (APEX_STORE_URL: the postgres://… URL itself, without lmdb:); for LMDB, give a directory.",
  });
}

/**
 * True when an LMDB store exists for the spec: a stat or two, without loading lmdb; a url that is
 * a PostgreSQL URL throws its config error. A directory
 * this user may not enter (another user's store: `dir/.` does not stat) counts as one, so that
 * opening it says so (plugins/lmdb, APEX_E_FORBIDDEN) instead of reads answering "no session yet".
 */
export function lmdbStoreExists(spec: StoreSpec): boolean {
  // A url that is no directory is the config error opening the store gives, not "no store yet":
  // reads (`apex status`, `session list`) answered "no session" of the path it made.
  assertNotPostgresUrl(lmdbDataDir(spec));
  return existsSync(join(lmdbDataDir(spec), STORE_FILE)) || (existsSync(lmdbDataDir(spec)) && !existsSync(`${lmdbDataDir(spec)}/.`));
}
