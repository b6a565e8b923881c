/**
 * Which LMDB store a spec names, as one string: `lmdb:` and the real path of its data directory.
 * A relative path, a trailing slash or a symlink on the way name the same store (a supervisor's
 * runtime file records this; core/session/client.ts compares it). Loads no lmdb.
 */
import { realpathSync } from "node:fs";
import { resolve } from "node:path";
import type { StoreSpec } from "../../core/store/port.js";
import { lmdbDataDir } from "../../core/store/store.js";

export function storeIdentity(spec: StoreSpec): string {
  const dir = lmdbDataDir(spec);
  try {
    return `lmdb:${realpathSync.native(dir)}`;
  } catch {
    return `lmdb:${resolve(dir)}`; // not made yet: no store a supervisor runs on
  }
}
