import type { Command } from "commander";
import type { ProjectLocation } from "../core/config/locate.js";
import type { Config, ConfigIssue, PluginEntry } from "../core/config/types.js";
import { isApexError, type ApexError } from "../core/errors.js";
import { projectOf } from "./context.js";
import { paint, plural, printJson, printLine } from "./output.js";

/** `apex config …`: check and inspect apex.config.yaml. The loaders are imported only when a command runs. */
export function registerConfigCommands(program: Command): void {
  const config = program
    .command("config")
    .description("check and inspect apex.config.yaml (validate, show the effective settings, where files are)")
    .addHelpText(
      "after",
      `
APEX uses the apex.config.yaml in the current directory or the nearest parent;
--config PATH or APEX_CONFIG picks another. Without one, the built-in defaults apply.
The file is checked against schemas/apex.config.schema.json; editors complete and check
it when its first line is:
  # yaml-language-server: $schema=<path to apex>/schemas/apex.config.schema.json

Examples:
  apex config validate
  apex config validate --config ci/apex.config.yaml --json
  apex config show
  apex config path`,
    );

  config
    .command("validate")
    .description("check apex.config.yaml and list every problem with file:line:col (exit 2 when invalid)")
    .option("--json", "print {valid, file, errors: [{file, line, col, path, message, expected?, suggestion?, code?}], warnings: [{file, line, col, path, message}]} (code: a plugin's error, APEX_E_PLUGIN_…)")
    .addHelpText(
      "after",
      `
Nothing is started or written. Each problem names where it is, the setting's path,
what was expected and, for typos, a suggestion:
  apex.config.yaml:7:5: plugins.retention.keep_lst: unknown option. Expected one of keep_last, … Did you mean "keep_last"?
A setting the enabled plugins leave without effect (session.max_checkpoints without the
retention plugin, interval checkpoints without the checkpoint plugin) is a warning on
stderr; the config is still valid (exit 0).

Examples:
  apex config validate
  APEX_CONFIG=staging.yaml apex config validate --json`,
    )
    .action(async (options: { json?: boolean }, command: Command) => {
      await validateCommand(projectOf(command), Boolean(options.json));
    });

  config
    .command("show")
    .description("print the effective config: your file with every default filled in")
    .option("--json", "print {session: {…}, store: {backend, url, project?}, agents: {NAME: {command, args, env, cwd, restart, …}}, plugins: [{name, options, enabled, position}], projectDir, storeDir, configPath, and warnings: [text] when apex start would refuse a plugin} (durations in seconds, plugins in config order, a store url without its password)")
    .addHelpText(
      "after",
      `
Durations are shown in seconds. Environment overrides (APEX_CHECKPOINT_INTERVAL, APEX_STORE_URL)
are applied; the store's url is shown without its password.

Examples:
  apex config show
  apex config show --json | jq '.session'`,
    )
    .action(async (options: { json?: boolean }, command: Command) => {
      await showCommand(projectOf(command), Boolean(options.json));
    });

  config
    .command("path")
    .description("print where the config file, the project, the store and the config schema are")
    .option("--json", "print {config, projectDir, storeDir, store: {backend, location, project}, schema} as JSON (config is null without a file; storeDir holds the logs and socket, store is where the data is)")
    .addHelpText(
      "after",
      `
Examples:
  apex config path
  $EDITOR "$(apex config path --json | jq -r .config)"`,
    )
    .action(async (options: { json?: boolean }, command: Command) => {
      await pathCommand(projectOf(command), Boolean(options.json));
    });
}

async function validateCommand(location: ProjectLocation, json: boolean): Promise<void> {
  const { loadConfig } = await import("../core/config/load.js");
  const { displayPath } = await import("../core/config/source.js");
  const file = location.configPath === undefined ? null : displayPath(location.configPath);
  let config: Config;
  try {
    config = await loadConfig(location);
    // A program that cannot be found is a config error too, as `apex start` reports it; so is a
    // store URL that opening the store would refuse (a bad port). Both checks, every problem.
    const { assertAgentProgramsExist } = await import("./agent-programs.js");
    const later = [...(await issuesOf(async () => assertAgentProgramsExist(config))), ...(await issuesOf(() => checkStore(location, config)))];
    if (later.length > 0) throw (await import("../core/config/validate.js")).configError(later);
  } catch (error) {
    const issues = configIssuesOf(error);
    if (!issues) throw error;
    if (json) printJson({ valid: false, file, errors: issues, warnings: [] });
    else reportInvalid(file === null ? "The built-in defaults cannot be used" : `${file} is invalid`, issues);
    process.exitCode = 2;
    return;
  }
  // Plugin names, dependencies and third-party options are checked by loading the plugins,
  // as `apex start` would: an unknown plugin is a config error too (did-you-mean, exit 2).
  // So are plugin commands that clash with APEX's own or each other's.
  let pluginNames: string[];
  try {
    const { loadPlugins } = await import("../core/plugins.js");
    const engine = await loadPlugins(config);
    await (await import("./plugin-commands.js")).assertPluginsApply(config, engine);
    pluginNames = engine.plugins.filter((plugin) => plugin.enabled).map((plugin) => plugin.name);
  } catch (error) {
    // With --json, a plugin the config cannot have is one of the report's errors, as the file's own problems are (stdout had nothing).
    if (!json || !isApexError(error) || !error.code.startsWith("APEX_E_PLUGIN_") || error.exitCode !== 2) throw error;
    printJson({ valid: false, file, errors: pluginIssues(error, config, (await import("../core/config/source.js")).formatPath), warnings: [] });
    process.exitCode = 2;
    return;
  }
  // Settings the enabled plugins leave without effect: said, and the config is still valid.
  const { inertSettings, warningText } = await import("./config-warnings.js");
  const warnings = inertSettings(config, process.env, pluginNames);
  if (json) {
    printJson({ valid: true, file, errors: [], warnings });
    return;
  }
  for (const warning of warnings) process.stderr.write(`${paint("warning:", "yellow", process.stderr)} ${warningText(warning)}\n`);
  const summary = `${countSummary(config)}${warnings.length > 0 ? `, ${plural(warnings.length, "warning")}` : ""}`;
  if (file === null) printLine(`No apex.config.yaml found here or in a parent directory; the built-in defaults apply (${summary}).`);
  else printLine(`${file} is valid (${summary})`);
}

/**
 * The store APEX_STORE_URL or the config's `store:` section names, through the checks its
 * backend makes when it is opened (StorageBackendFactory.check: the URL and its port for
 * PostgreSQL, a store directory that is a file for LMDB). A problem is thrown as a config issue
 * placed where the setting is: APEX_STORE_URL in the environment, else `store.url`.
 */
async function checkStore(location: ProjectLocation, config: Config): Promise<void> {
  const { backendFactory, resolveStoreSpec } = await import("../core/store/open.js");
  try {
    const spec = await resolveStoreSpec(location);
    (await backendFactory(spec.backend)).check?.(spec);
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_CONFIG" || configIssuesOf(error)) throw error;
    const [{ displayPath, positionOf }, { configError }] = await Promise.all([import("../core/config/source.js"), import("../core/config/validate.js")]);
    const message = `${error.message}${error.hint ? ` ${error.hint}` : ""}`;
    const source = config.configPath === undefined ? undefined : config.source;
    if ((process.env.APEX_STORE_URL ?? "") !== "") throw configError([{ file: "environment", line: 0, col: 0, path: "APEX_STORE_URL", message }]);
    if (source?.doc.hasIn(["store", "url"])) throw configError([{ ...positionOf(source, ["store", "url"]), path: "store.url", message }]);
    // The default store directory (.apex/, or APEX_HOME) is what is wrong.
    throw configError([{ file: displayPath(location.storeDir), line: 0, col: 0, path: "", message }]);
  }
}

/** The issues of the config error `check` throws; none when it passes. Any other error is thrown. */
async function issuesOf(check: () => Promise<void>): Promise<ConfigIssue[]> {
  try {
    await check();
    return [];
  } catch (error) {
    const issues = configIssuesOf(error);
    if (!issues) throw error;
    return issues;
  }
}

/** A plugin error as config issues, with its code: the options' own issues, else one at the plugin's entry. */
function pluginIssues(error: ApexError, config: Config, formatPath: (path: string[]) => string): Array<ConfigIssue & { code: string }> {
  const issues = error.details?.issues;
  if (Array.isArray(issues)) return (issues as ConfigIssue[]).map((issue) => ({ ...issue, code: error.code }));
  const plugin = error.details?.plugin;
  // By its position in the message, else in the hint ("set it to false … at apex.config.yaml:7:3"): a third-party plugin's name is not its key (`./a.mjs`).
  const named = (text: string | undefined) => config.plugins.find((each) => text?.includes(` at ${each.position.file}:${each.position.line}:${each.position.col}`));
  const entry = config.plugins.find((each) => each.name === plugin) ?? named(error.message) ?? named(error.hint);
  const at = entry ? { ...entry.position, path: formatPath(["plugins", entry.name]) } : { file: config.source?.displayFile ?? "", line: 0, col: 0, path: "plugins" };
  return [{ ...at, message: `${error.message}${error.hint ? ` ${error.hint}` : ""}`, code: error.code }];
}

/** The issues of a config error (APEX_E_CONFIG, APEX_E_YAML), or undefined for any other error. */
function configIssuesOf(error: unknown): ConfigIssue[] | undefined {
  if (!isApexError(error) || (error.code !== "APEX_E_CONFIG" && error.code !== "APEX_E_YAML")) return undefined;
  const issues = error.details?.errors;
  return Array.isArray(issues) ? (issues as ConfigIssue[]) : undefined;
}

function reportInvalid(verdict: string, issues: ConfigIssue[]): void {
  const stream = process.stderr;
  for (const issue of issues) {
    const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.col}` : issue.file;
    const path = issue.path ? `${paint(issue.path, "bold", stream)}: ` : "";
    stream.write(`${paint(where, "cyan", stream)}: ${path}${issue.message}\n`);
  }
  const count = issues.length === 1 ? "1 problem" : `${issues.length} problems`;
  stream.write(`${paint(verdict, "red", stream)} (${count}).\n`);
}

function countSummary(config: Config): string {
  const agents = Object.keys(config.agents).length;
  const enabled = config.plugins.filter((plugin) => plugin.enabled).length;
  const disabled = config.plugins.length - enabled;
  const parts = [plural(agents, "agent"), plural(enabled, "plugin")];
  if (disabled > 0) parts.push(`${disabled} disabled`);
  return parts.join(", ");
}

async function showCommand(location: ProjectLocation, json: boolean): Promise<void> {
  const { loadConfig } = await import("../core/config/load.js");
  const config = await loadConfig(location);
  // A config `apex start` refuses for its plugins (an unknown one, bad options) is printed all the same, with a
  // warning, as `apex status` gives one: it was printed without a word.
  const { warnings, options } = await pluginWarnings(config);
  // A third-party plugin's options as its schema fills them in, as the built-ins' are (they were shown as written).
  const optionsOf = (entry: PluginEntry) => options.get(entry) ?? entry.options;
  // The store the commands use, as `store:` says it (APEX_STORE_URL applied, no password): the section was left out, the file's own too.
  const store = await effectiveStore(location, warnings);
  // Settings that do nothing, as `apex config validate` names them (a store: section APEX_STORE_URL puts another backend's store over, …):
  // shown among the effective settings without a word, as if they applied.
  const { inertSettings, warningText } = await import("./config-warnings.js");
  warnings.push(...inertSettings(config).map(warningText));
  const withStore = (fields: Record<string, unknown>) => (store ? { session: config.session, store, ...fields } : { session: config.session, ...fields });
  if (json) {
    const { session: _session, ...rest } = config;
    const plugins = config.plugins.map((entry) => (options.has(entry) ? { ...entry, options: optionsOf(entry) } : entry));
    printJson(withStore({ ...rest, plugins, ...(warnings.length > 0 ? { warnings } : {}) }));
    return;
  }
  for (const warning of warnings) process.stderr.write(`${paint("warning:", "yellow", process.stderr)} ${warning}\n`);
  const { displayPath, yaml } = await import("../core/config/source.js");
  const { stringify } = yaml();
  const origin = config.configPath ? `${displayPath(config.configPath)} with defaults filled in` : "the built-in defaults (no apex.config.yaml found)";
  const plugins = Object.fromEntries(config.plugins.map((plugin) => [plugin.name, plugin.enabled ? optionsOf(plugin) : false]));
  const document = withStore({ agents: config.agents, plugins });
  const fromEnv = store && (process.env.APEX_STORE_URL ?? "") !== "" ? " The store is APEX_STORE_URL's." : "";
  process.stdout.write(`# Effective config: ${origin}. Durations are in seconds.${fromEnv}\n`);
  process.stdout.write(stringify(document, { lineWidth: 0 }));
}

/**
 * The store section in effect: the file's `store:`, APEX_STORE_URL over it, else LMDB in the store
 * directory; an LMDB url as the absolute directory, a PostgreSQL url without its password. A store
 * that cannot be told (an APEX_STORE_URL no backend reads) is left out, and why is added to `warnings`.
 */
async function effectiveStore(location: ProjectLocation, warnings: string[]): Promise<{ backend: string; url: string; project?: string } | undefined> {
  try {
    const { backend, location: url, project } = await (await import("./plugins.js")).storageInUse(location);
    return { backend, url, ...(project === undefined ? {} : { project }) };
  } catch (error) {
    if (!isApexError(error)) throw error;
    warnings.push(`the store is left out: ${error.message}${error.hint ? ` ${error.hint}` : ""}`);
    return undefined;
  }
}

/**
 * What `apex start` would refuse in the config's plugins, as `apex status` words it (none when they load and apply),
 * and the options of the third-party plugins with their schemas' defaults, as they are checked before any applies.
 */
async function pluginWarnings(config: Config): Promise<{ warnings: string[]; options: Map<PluginEntry, Record<string, unknown>> }> {
  const { assertPluginsApply, refusedConfigWarning } = await import("./plugin-commands.js");
  const options = new Map<PluginEntry, Record<string, unknown>>();
  try {
    const { isBuiltinPlugin } = await import("../core/config/schemas.js");
    if (config.plugins.some((entry) => entry.enabled && !isBuiltinPlugin(entry.name))) {
      const { loadPlugins, resolvePlugins } = await import("../core/plugins.js");
      const resolved = await resolvePlugins(config);
      // Copied before any apply runs: a plugin may change the options it is given.
      for (const [item, checked] of resolved.optionsByEntry) options.set(item.entry, structuredClone(checked));
      await assertPluginsApply(config, await loadPlugins(config, { warn: () => undefined }, resolved));
    }
    return { warnings: [], options };
  } catch (error) {
    if (!isApexError(error)) throw error;
    const { displayPath } = await import("../core/config/source.js");
    return { warnings: [refusedConfigWarning(config.configPath === undefined ? "The built-in defaults" : displayPath(config.configPath), "`apex start`", error)], options };
  }
}

async function pathCommand(location: ProjectLocation, json: boolean): Promise<void> {
  const { schemasDir } = await import("../core/config/schemas.js");
  const schema = `${schemasDir()}/apex.config.schema.json`;
  const { store, problem } = await storeOf(location);
  // A store that cannot be told (a bad APEX_STORE_URL or store: section) is said, as every command that opens it refuses it:
  // the text named the LMDB directory as the store, which no command would use.
  if (problem !== undefined) process.stderr.write(`warning: the store is not known: ${problem}\n`);
  if (json) {
    printJson({ config: location.configPath ?? null, projectDir: location.projectDir, storeDir: location.storeDir, store, schema });
    return;
  }
  printLine(`config:  ${location.configPath ?? "none (the built-in defaults apply)"}`);
  printLine(`project: ${location.projectDir}`);
  // Where the data is (a PostgreSQL database, an LMDB directory elsewhere), and the directory of the logs and socket when apart from it.
  const where = store ? `${store.location}${store.project !== undefined ? ` (project ${store.project})` : ""}` : "not known (see the warning above)";
  printLine(`store:   ${where}`);
  if (where !== location.storeDir) printLine(`runtime: ${location.storeDir}`);
  printLine(`schema:  ${schema}`);
}

/** The store APEX_STORE_URL or the config names (no password); null, with the reason, when that cannot be told (a bad store: section, which `config validate` names). */
async function storeOf(location: ProjectLocation): Promise<{ store: { backend: string; location: string; project?: string } | null; problem?: string }> {
  try {
    return { store: await (await import("./plugins.js")).storageInUse(location) };
  } catch (error) {
    return { store: null, problem: (error as Error).message };
  }
}
