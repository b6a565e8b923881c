/**
 * The one built-in registry: the only module of plugins/ that core imports. Core reaches the
 * built-in plugins, their command groups, the storage backends (LMDB too) and the few plugin
 * services core commands call (`apex start --continue` resolving a checkpoint, `memory show`
 * of a checkpoint record) through it, each loaded on first use.
 */
import type { Command } from "commander";
import { registerSessionBranchCommands } from "./checkpoint/branch-commands.js";
import type { ApexPlugin } from "../core/engine.js";
import type { StorageBackendFactory } from "../core/store/port.js";
import type { SessionTransport } from "../core/session/client.js";
import type { SessionMethod } from "../core/session/memory-methods.js";
import type { SessionService } from "../core/session/service.js";
import { registerCheckpointCommands } from "./checkpoint/cli.js";
import { registerStoreCommands } from "./postgres/cli.js";
import { registerRemoteCommands } from "./sharing/remote-cli.js";

const PLUGINS: ReadonlyArray<() => Promise<{ default: ApexPlugin<any> }>> = [
  () => import("./checkpoint/index.js"),
  () => import("./retention/index.js"),
  () => import("./git/index.js"),
  () => import("./compression/index.js"),
  () => import("./sharing/index.js"),
  () => import("./metrics/index.js"),
  () => import("./history/index.js"),
  () => import("./archive/index.js"),
];

/** The built-in plugins, in the order `apex plugins list` shows them. */
export async function loadBuiltinPlugins(): Promise<ApexPlugin<any>[]> {
  return (await Promise.all(PLUGINS.map((load) => load()))).map((module) => module.default);
}

/**
 * Command groups of built-in plugins that the CLI defines whatever the config (their actions
 * load the plugin's code): `apex checkpoint …` with the integrity commands of `apex session
 * …`, and `apex serve|connect|login` with `apex session share…`, and `apex store migrate`. Each is placed after the core
 * group it names, so `apex --help` keeps its order.
 */
export const builtinCommandGroups: ReadonlyArray<{ name: string; after: string; register: (program: Command) => void }> = [
  { name: "checkpoint", after: "session", register: registerCheckpointCommands },
  { name: "session-branch", after: "checkpoint", register: registerSessionBranchCommands },
  { name: "remote", after: "session-branch", register: registerRemoteCommands },
  { name: "store", after: "plugins", register: registerStoreCommands },
];

/** Plugin code that core commands call, loaded when they run. */
export const builtinServices = {
  checkpointRefs: () => import("./checkpoint/refs.js"),
  checkpointSessions: () => import("./checkpoint/plugin-sessions.js"),
  checkpointRecord: () => import("./checkpoint/record.js"),
  checkpointRecovery: () => import("./checkpoint/plugin-recovery.js"),
  gitStart: () => import("./git/start.js"),
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
 * The transports to sessions on other hosts, behind openSessionClient (`apex --remote`,
 * `apex connect`): `http`, `apex serve`'s HTTP(S) API (the sharing plugin), loaded only when
 * a command names a remote session.
 */
export const builtinTransports: Readonly<Record<string, () => Promise<SessionTransport>>> = {
  http: async () => (await import("./sharing/transport.js")).httpTransport,
};
