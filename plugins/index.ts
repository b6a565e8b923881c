import type { ApexPlugin } from "../core/engine.js";
import type { StorageBackendFactory } from "../core/store/port.js";
import archive from "./archive/index.js";
import checkpoint from "./checkpoint/index.js";
import compression from "./compression/index.js";
import git from "./git/index.js";
import history from "./history/index.js";
import metrics from "./metrics/index.js";
import retention from "./retention/index.js";
import sharing from "./sharing/index.js";

/** The built-in plugins, in the order `apex plugins list` shows them. */
export const builtinPlugins: readonly ApexPlugin<any>[] = [checkpoint, retention, git, compression, sharing, metrics, history, archive];

/**
 * The storage backends beside LMDB (built into core/store/lmdb.ts), loaded only when a
 * project's `store:` or APEX_STORE_URL names them: their drivers stay out of CLI start-up.
 */
export const builtinStorageBackends: Readonly<Record<string, () => Promise<StorageBackendFactory>>> = {
  postgres: async () => {
    // Named through a variable: the module ships with the PostgreSQL backend (and needs `pg`).
    const specifier = "./postgres/backend.js";
    return ((await import(specifier)) as { postgresBackend: StorageBackendFactory }).postgresBackend;
  },
};
