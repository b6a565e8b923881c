/**
 * The public API for plugin authors and embedders: `import { definePlugin } from "apex-sessions"`.
 */
export { definePlugin } from "./plugins.js";
export { Engine } from "./engine.js";
export type {
  ApexApi,
  ApexPlugin,
  CheckpointDraft,
  CheckpointInfo,
  CommandContext,
  CommandInput,
  CommandSpec,
  ErrorContext,
  GitContext,
  MilestoneContext,
  SessionContext,
  StopContext,
  TaskContext,
} from "./engine.js";
export { ApexError, ErrorCodes, ExitCode, type ErrorCode } from "./errors.js";
export type { Store, JsonValue, Change, Entry } from "./store/store.js";
export type { StorageBackend, StorageBackendFactory, StoreSpec, Table, TableOptions } from "./store/port.js";
export { openStore, storeExists } from "./store/open.js";
export { loadConfig } from "./config/load.js";
export { locateProject } from "./config/locate.js";
export type { Config } from "./config/types.js";
