/** A checked document becomes the typed, deeply frozen Config the rest of APEX reads. */
import type { ProjectLocation } from "./locate.js";
import { parseDuration } from "./duration.js";
import { positionOf } from "./source.js";
import { configError } from "./validate.js";
import { deepFreeze } from "./handoff.js";
import type { AgentConfig, Config, ConfigSource, PluginEntry, RestartPolicy, SessionSettings } from "./types.js";

export interface BuildInput {
  /** Checked data, schema defaults filled in. */
  data: Record<string, unknown>;
  source: ConfigSource;
  location: ProjectLocation;
  /** Sections taken from the built-in defaults, with the file they come from. */
  fallback: { agents?: Record<string, unknown>; plugins?: { data: Record<string, unknown>; source: ConfigSource } };
  /** APEX_CHECKPOINT_INTERVAL, already checked. */
  checkpointInterval?: number;
}

export function buildConfig(input: BuildInput): Config {
  const { data, source, location, fallback } = input;
  const config: Config = {
    session: sessionOf(data.session as Record<string, unknown>, input.checkpointInterval, source),
    agents: agentsOf((fallback.agents ?? data.agents ?? {}) as Record<string, Record<string, unknown>>),
    plugins: fallback.plugins
      ? pluginsOf(fallback.plugins.data, fallback.plugins.source)
      : pluginsOf((data.plugins ?? {}) as Record<string, unknown>, source),
    ...(location.configPath ? { configPath: location.configPath } : {}),
    projectDir: location.projectDir,
    storeDir: location.storeDir,
  };
  Object.defineProperty(config, "source", { value: source, enumerable: false, writable: false, configurable: false });
  return deepFreeze(config, new Set([source]));
}

function sessionOf(session: Record<string, unknown>, checkpointInterval: number | undefined, source: ConfigSource): SessionSettings {
  return {
    auto_checkpoint_interval: checkpointInterval ?? parseDuration(session.auto_checkpoint_interval as number | string),
    max_checkpoints: session.max_checkpoints as number,
    auto_recovery: session.auto_recovery as boolean,
    session_timeout: parseDuration(session.session_timeout as number | string),
    lease_ttl: leaseTtl(session.lease_ttl, source),
    ...(session.plugin_timeout === undefined ? {} : { plugin_timeout: parseDuration(session.plugin_timeout as number | string) }),
    ...(session.plugin_timeouts === undefined ? {} : { plugin_timeouts: Object.fromEntries(Object.entries(session.plugin_timeouts as Record<string, number | string>).map(([name, value]) => [name, parseDuration(value)])) }),
    backup_location: session.backup_location as string,
  };
}

function agentsOf(agents: Record<string, Record<string, unknown>>): Record<string, AgentConfig> {
  const result: Record<string, AgentConfig> = {};
  for (const [name, agent] of Object.entries(agents)) {
    result[name] = {
      ...(typeof agent.description === "string" ? { description: agent.description } : {}),
      command: agent.command as string,
      args: (agent.args as unknown[]).map(String),
      env: Object.fromEntries(Object.entries(agent.env as Record<string, unknown>).map(([key, value]) => [key, String(value)])),
      cwd: agent.cwd as string,
      restart: agent.restart as RestartPolicy,
      max_restarts: agent.max_restarts as number,
      restart_delay: parseDuration(agent.restart_delay as number | string),
      max_restart_delay: parseDuration(agent.max_restart_delay as number | string),
      min_uptime: parseDuration(agent.min_uptime as number | string),
    };
  }
  return result;
}

function pluginsOf(plugins: Record<string, unknown>, source: ConfigSource): PluginEntry[] {
  return Object.entries(plugins).map(([name, value]) => ({
    name,
    options: value !== null && typeof value === "object" ? (value as Record<string, unknown>) : {},
    enabled: value !== false,
    position: positionOf(source, ["plugins", name], "key"),
  }));
}

/** `session.lease_ttl` in seconds: a lease shorter than a second would expire between renewals. */
function leaseTtl(value: unknown, source: ConfigSource): number {
  const seconds = parseDuration(value as number | string);
  if (seconds >= 1) return seconds;
  const at = positionOf(source, ["session", "lease_ttl"]);
  const expected = "a duration of at least 1 second";
  throw configError([{ ...at, path: "session.lease_ttl", message: `must be ${expected} (got ${JSON.stringify(value)}). The supervisor renews its lease every third of it.`, expected }]);
}
