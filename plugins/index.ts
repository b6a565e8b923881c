/**
 * The one built-in registry: the only module of plugins/ that core imports. Core reaches the
 * built-in plugins, the storage backends (LMDB too) and the few plugin
 * services core commands call (`apex start --continue` resolving a checkpoint, `memory show`
 * of a checkpoint record) through it, each loaded on first use.
 */
import type { ApexPlugin } from "../core/engine.js";
import type { StorageBackendFactory, StoreSpec } from "../core/store/port.js";
import type { SessionTransport } from "../core/session/client.js";
import type { SessionMethod } from "../core/session/memory-methods.js";
import type { SessionService } from "../core/session/service.js";

/** The built-in plugins by name, in the order `apex plugins list` shows them (BUILTIN_PLUGIN_NAMES). */
const PLUGINS: Readonly<Record<string, () => Promise<{ default: ApexPlugin<any> }>>> = {
  checkpoint: () => import("./checkpoint/index.js"),
  retention: () => import("./retention/index.js"),
  git: () => import("./git/index.js"),
  compression: () => import("./compression/index.js"),
  sharing: () => import("./sharing/index.js"),
  metrics: () => import("./metrics/index.js"),
  history: () => import("./history/index.js"),
  archive: () => import("./archive/index.js"),
};

/** The built-in plugins, in the order `apex plugins list` shows them. */
export async function loadBuiltinPlugins(): Promise<ApexPlugin<any>[]> {
  return (await Promise.all(Object.values(PLUGINS).map((load) => load()))).map((module) => module.default);
}

/**
 * One built-in plugin, or undefined when none has that name: a process loads only the
 * built-ins its config names (a command, or a LangGraph saver's first call, pays for no other).
 */
export async function loadBuiltinPlugin(name: string): Promise<ApexPlugin<any> | undefined> {
  const load = Object.prototype.hasOwnProperty.call(PLUGINS, name) ? PLUGINS[name] : undefined;
  return load ? (await load()).default : undefined;
}

/** The config checks no schema can express (plugins/config-ranges.ts), which core's loadConfig runs after the schemas. */
export const builtinConfigChecks = async () => (await import("./config-ranges.js")).withRanges;

/** Plugin code that core commands call, loaded when they run. */
export const builtinServices = {
  checkpointRefs: () => import("./checkpoint/refs.js"),
  checkpointSessions: () => import("./checkpoint/plugin-sessions.js"),
  checkpointRecord: () => import("./checkpoint/record.js"),
  checkpointRecovery: () => import("./checkpoint/plugin-recovery.js"),
  gitStart: () => import("./git/start.js"),
  /** `memory.changes`, the batches `apex memory watch` reads through a supervisor or `apex serve`. */
  memoryChanges: () => import("./memory-changes.js"),
  /** `memory.page`, the pages `apex memory query`, `show` and `export` read through a supervisor. */
  memoryPages: () => import("./memory-pages.js"),
  /** The paths APEX owns, which memory writes refuse (core's session methods ask it). */
  ownedPaths: () => import("./owned-paths.js"),
};

/**
 * Session methods of built-in plugins that the supervisor (or a command writing to the store
 * directly) serves whatever the config, because their commands exist whatever the config: the
 * sharing plugin's grants (`apex session share|unshare|shares`, and `apex serve` checking a
 * token). The names are listed here; the code is loaded on the first call of one of them.
 */
export const builtinSessionMethods: ReadonlyArray<{
  names: readonly string[];
  load: () => Promise<(service: SessionService, actorOf: (params: Record<string, unknown>) => string) => Record<string, SessionMethod>>;
}> = [{ names: ["share.create", "share.revoke", "share.list", "share.authenticate", "share.touch"], load: async () => (await import("./sharing/grants.js")).grantMethods }];

/**
 * The storage backends, each loaded only when a project's store is on it: LMDB (the default,
 * plugins/lmdb/), and those a project's `store:` or APEX_STORE_URL names. Their drivers stay
 * out of CLI start-up.
 */
export const builtinStorageBackends: Readonly<Record<string, () => Promise<StorageBackendFactory>>> = {
  lmdb: async () => (await import("./lmdb/backend.js")).lmdbBackend,
  postgres: async () => (await import("./postgres/backend.js")).postgresBackend,
};

/**
 * Which store a spec names, as one string without a password, per backend: what a supervisor
 * records of its store and a command compares with the store it names (core/session/client.ts).
 * Light modules: neither loads its backend's driver.
 */
export const builtinStoreIdentities: Readonly<Record<string, () => Promise<(spec: StoreSpec) => string>>> = {
  lmdb: async () => (await import("./lmdb/identity.js")).storeIdentity,
  postgres: async () => (await import("./postgres/identity.js")).storeIdentity,
};

/**
 * The transports to sessions on other hosts, behind openSessionClient (`apex --remote`,
 * `apex connect`): `http`, `apex serve`'s HTTP(S) API (the sharing plugin), loaded only when
 * a command names a remote session.
 */
export const builtinTransports: Readonly<Record<string, () => Promise<SessionTransport>>> = {
  http: async () => (await import("./sharing/transport.js")).httpTransport,
};
