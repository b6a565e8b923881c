import type { Command } from "commander";
import type { Config } from "../core/config/types.js";
import type { Engine } from "../core/engine.js";
import type { ApexError } from "../core/errors.js";
import { projectOf } from "./context.js";
import { examples, printJson, printLine, table } from "./output.js";

/** One line of `apex plugins list`. */
export interface PluginListRow {
  name: string;
  /** "built-in", "npm:<package>" or "file:<path as configured>". */
  source: string;
  version: string | null;
  enabled: boolean;
  requires: string[];
  /** Hooks and triggers the plugin taps, read from the hooks after applying it. */
  hooks: string[];
  /** Triggers, commands and backends it registers. */
  triggers: string[];
  commands: string[];
  backends: string[];
  /** Where the config names it; null for built-ins the config does not mention. */
  at: string | null;
  /** Why a disabled plugin could not be loaded, or why an enabled one keeps `apex start` from running (a command clash). */
  problem?: string;
}

/** `apex plugins …`: what extends this APEX. */
export function registerPluginsCommands(program: Command): void {
  const plugins = program
    .command("plugins")
    .description("list the built-in and configured plugins, where they come from and the hooks they tap")
    .addHelpText("after", examples("apex plugins list", "apex plugins list --json"));
  plugins
    .command("list")
    .description("list every plugin: source, version, enabled, hooks tapped, and what it adds")
    .option("--json", "print {storage: {backend, location}, plugins: [{name, source, version, enabled, requires, hooks, triggers, commands, backends, at, problem?}], warnings}")
    .addHelpText("after", examples("apex plugins list", "apex plugins list --json | jq '.plugins[] | select(.enabled) | .name'"))
    .action(async (options: { json?: boolean }, command: Command) => {
      const location = projectOf(command);
      const { rows, warnings } = await listPluginsChecked(location);
      const { backend, location: where } = await storageInUse(location);
      const storage = { backend, location: where };
      if (options.json) printJson({ storage, plugins: rows, warnings });
      else {
        printPluginTable(rows);
        printLine(`storage: ${storage.backend} (${storage.location})`);
        // A listing, like `apex status`: what `apex start` would refuse is a warning, exit 0.
        for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
      }
    });
}

/**
 * The storage backend the project's store is on and where (a server URL without its password), and a
 * server store's project, without opening it; throws what makes it unusable (a bad url, one of the other backend).
 */
export async function storageInUse(location: ReturnType<typeof projectOf>): Promise<{ backend: string; location: string; project?: string }> {
  const { describeStore, resolveStoreSpec } = await import("../core/store/open.js");
  const spec = await resolveStoreSpec(location);
  (await import("../plugins/lmdb/url.js")).assertLmdbUrl(spec);
  return { ...describeStore(spec), ...(spec.backend === "lmdb" || spec.project === undefined ? {} : { project: spec.project }) };
}

/**
 * The plugin list, with what `apex config validate` and `apex start` would refuse in the plugins
 * that did load (a command APEX already has, or two plugins adding one command): a warning with
 * its fix, and the row's `problem`. Before, the list showed such a plugin as enabled and fine.
 */
export async function listPluginsChecked(location: ReturnType<typeof projectOf>): Promise<{ rows: PluginListRow[]; warnings: string[] }> {
  const { loadConfig } = await import("../core/config/load.js");
  const config = await loadConfig(location);
  const { loadPlugins } = await import("../core/plugins.js");
  const engine = await loadPlugins(config);
  const rows = await listPlugins(location, engine, config);
  const warnings: string[] = [];
  try {
    await (await import("./plugin-commands.js")).assertPluginsApply(config, engine);
  } catch (error) {
    const { code, message, hint, details } = error as ApexError;
    if (code !== "APEX_E_PLUGIN_DUPLICATE" && code !== "APEX_E_PLUGIN_INVALID") throw error;
    const plugin = typeof details?.plugin === "string" ? details.plugin : undefined;
    const row = rows.find((candidate) => candidate.name === plugin);
    if (row) row.problem = message;
    warnings.push(`${message} \`apex start\` refuses this config.${hint ? ` ${hint}` : ""}`);
  }
  return { rows, warnings };
}

/** Loads the config, applies the enabled plugins to an engine and reports what each one tapped. */
export async function listPlugins(location: ReturnType<typeof projectOf>, loaded?: Engine, loadedConfig?: Config): Promise<PluginListRow[]> {
  const { loadConfig } = await import("../core/config/load.js");
  const { builtinPlugins, loadPlugins } = await import("../core/plugins.js");
  const config = loadedConfig ?? (await loadConfig(location));
  const engine = loaded ?? (await loadPlugins(config));
  const rows: PluginListRow[] = engine.plugins.map((record) => {
    const row: PluginListRow = {
      name: record.name,
      source: record.source.label,
      version: record.version ?? null,
      enabled: record.enabled,
      requires: record.requires,
      hooks: record.enabled ? engine.tapsOf(record.name) : [],
      triggers: [...engine.triggers].filter(([, trigger]) => trigger.plugin === record.name).map(([name]) => name),
      commands: engine.commands.filter((command) => command.plugin === record.name).map((command) => command.spec.name),
      backends: engine.backends.filter((backend) => backend.plugin === record.name).map((backend) => `${backend.kind}:${backend.name}`),
      at: record.at ?? null,
    };
    if (record.problem !== undefined) row.problem = record.problem;
    return row;
  });
  for (const plugin of (await builtinPlugins()).values()) {
    if (rows.some((row) => row.name === plugin.name)) continue;
    rows.push({
      name: plugin.name,
      source: "built-in",
      version: plugin.version ?? null,
      enabled: false,
      requires: [...(plugin.requires ?? [])],
      hooks: [],
      triggers: [],
      commands: [],
      backends: [],
      at: null,
    });
  }
  return rows;
}

function printPluginTable(rows: PluginListRow[]): void {
  const list = (items: string[]) => (items.length ? items.join(", ") : "-");
  printLine(
    table(
      ["NAME", "SOURCE", "VERSION", "ENABLED", "HOOKS", "ADDS"],
      rows.map((row) => [
        row.name,
        row.source,
        row.version ?? "-",
        row.enabled ? "yes" : "no",
        list(row.hooks),
        list([
          ...row.commands.map((name) => `command ${name}`),
          ...row.triggers.map((name) => `trigger ${name}`),
          ...row.backends.map((name) => `backend ${name}`),
        ]),
      ]),
    ),
  );
  for (const row of rows) if (row.problem && !row.enabled) printLine(`note: ${row.name} is disabled and could not be loaded: ${row.problem}`);
}
