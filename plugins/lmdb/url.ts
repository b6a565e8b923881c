/**
 * What an LMDB store's url cannot be, checked without loading lmdb (by the backend's open and
 * check, and by the commands that only describe the store: `config show`, `config path`, `plugins list`).
 */
import { sep } from "node:path";
import { ApexError } from "../../core/errors.js";
import { lmdbDataDir } from "../../core/store/store.js";
import type { StoreSpec } from "../../core/store/port.js";

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

/** The same for a spec of any backend (an LMDB one is checked), for the commands that describe the store without opening it. */
export function assertLmdbUrl(spec: StoreSpec): void {
  if (spec.backend === "lmdb") assertNotPostgresUrl(lmdbDataDir(spec));
}
