import type { Document, LineCounter } from "yaml";

/** A place in a config file, 1-based. `file` is relative to the working directory when inside it. */
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

/**
 * One problem found in a config document. `message` is the whole sentence after the path
 * ("unknown option. Expected one of …. Did you mean "keep_last"?"); `expected` and
 * `suggestion` repeat its parts for tools reading --json.
 */
export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  /** The path in the document, e.g. `plugins.retention.keep_lst` or `agents.coder.args[0]`; "" for the whole file. */
  path: string;
  message: string;
  expected?: string;
  suggestion?: string;
}

/** A parsed config file, kept so later checks (plugin options) can point at lines and columns. */
export interface ConfigSource {
  /** Absolute path of the file. */
  file: string;
  /** How messages name the file: relative to the working directory when inside it, else absolute. */
  displayFile: string;
  text: string;
  doc: Document.Parsed;
  lineCounter: LineCounter;
}

/** Seconds are always numbers here: durations such as "2h" are converted while loading. */
export interface SessionSettings {
  /** Seconds between automatic checkpoints (APEX_CHECKPOINT_INTERVAL overrides it). */
  auto_checkpoint_interval: number;
  max_checkpoints: number;
  auto_recovery: boolean;
  /** Seconds a session may run; 0 means no limit. */
  session_timeout: number;
  /** Seconds a supervisor's lease on its session lasts (renewed every third of it); at least 1. */
  lease_ttl: number;
  /** Seconds a plugin's tap or apply may take, 0: no limit (unset: the engine's, 30 s); plugin_timeouts: by plugin name. */
  plugin_timeout?: number;
  plugin_timeouts?: Readonly<Record<string, number>>;
  /** As written; relative paths are relative to `Config.projectDir`. */
  backup_location: string;
}

export type RestartPolicy = "never" | "on-failure" | "always";

export interface AgentConfig {
  description?: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  /** As written (default "."); relative to `Config.projectDir`. */
  cwd: string;
  restart: RestartPolicy;
  max_restarts: number;
  /** Seconds to wait before a restart: the first; each crash in a row doubles it, up to max_restart_delay. */
  restart_delay: number;
  max_restart_delay: number;
  /** Seconds a run must last for its crash to start the count of max_restarts afresh. */
  min_uptime: number;
}

/** One entry of `plugins:`, in document order. */
export interface PluginEntry {
  /** A built-in name (`retention`), an npm package name, or a path relative to the config file (`./my-plugin.js`). */
  name: string;
  /**
   * For built-in plugins: validated, with schema defaults filled in. For other plugins: as
   * written; the plugin loader checks them against the plugin's own schema. `{}` when disabled.
   */
  options: Record<string, unknown>;
  /** false when the document says `name: false`. */
  enabled: boolean;
  /** Where the plugin's key is written (in the built-in defaults file when it comes from there). */
  position: SourcePosition;
}

export interface Config {
  session: SessionSettings;
  agents: Record<string, AgentConfig>;
  plugins: PluginEntry[];
  /** The config file in force; undefined when the built-in defaults apply. */
  configPath?: string;
  projectDir: string;
  storeDir: string;
  /**
   * The parsed document, for positions in later checks. Non-enumerable: JSON output and
   * `apex config show` leave it out. With no config file it is the built-in defaults file.
   */
  source?: ConfigSource;
}
