import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { isDirectory, isFile } from "./config/locate.js";
import { BUILTIN_PLUGIN_NAMES, configSchema, isBuiltinPlugin, packageRoot } from "./config/schemas.js";
import { Engine, type ApexPlugin, type EngineOptions, type PluginSource } from "./engine.js";
import { ApexError, thrownMessage } from "./errors.js";
import { didYouMean } from "./suggest.js";
import type { Config, PluginEntry, SourcePosition } from "./config/types.js";

export type { ApexApi, ApexPlugin, PluginSource } from "./engine.js";

/** Types a plugin for its author; at runtime it returns the plugin unchanged. */
export const definePlugin = <Options = Record<string, unknown>>(plugin: ApexPlugin<Options>): ApexPlugin<Options> => plugin;

/** APEX's own version, which the built-in plugins share. */
export const APEX_VERSION: string = (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;

/** The built-in plugins, by name, in the order `apex plugins list` shows them. */
export async function builtinPlugins(): Promise<ReadonlyMap<string, ApexPlugin<any>>> {
  // Imported lazily: the built-ins import definePlugin from this module.
  const { loadBuiltinPlugins } = await import("../plugins/index.js");
  return new Map((await loadBuiltinPlugins()).map((plugin) => [plugin.name, plugin]));
}

/** The built-in plugins `config.plugins` names, by name (loaded in parallel, only those). */
async function configuredBuiltins(config: Config): Promise<ReadonlyMap<string, ApexPlugin<any>>> {
  const names = [...new Set(config.plugins.map((entry) => entry.name).filter(isBuiltinPlugin))];
  const { loadBuiltinPlugin } = await import("../plugins/index.js");
  const plugins = await Promise.all(names.map((name) => loadBuiltinPlugin(name)));
  return new Map(plugins.flatMap((plugin) => (plugin ? [[plugin.name, plugin] as const] : [])));
}

interface Resolved {
  entry: PluginEntry;
  plugin: ApexPlugin<any>;
  source: PluginSource;
  /** How messages name it: the built-in name, the package name, or the path as written. */
  label: string;
  /** Why a disabled entry could not be loaded (enabled entries throw instead). */
  problem?: string;
}

/**
 * Config → engine with its plugins applied: the one place where `plugins:` in
 * apex.config.yaml becomes plugin instances (like webpack's WebpackOptionsApply).
 * Resolves every entry (built-in, npm package, or file relative to the config), refuses
 * duplicates, checks dependencies, validates third-party options against the plugin's own
 * schema, then applies the enabled plugins in config order (a plugin's `requires` first).
 */
export async function loadPlugins(config: Config, options: Omit<EngineOptions, "config"> = {}, plugins?: ResolvedPlugins): Promise<Engine> {
  const { resolved, enabled, optionsByEntry } = plugins ?? (await resolvePlugins(config));
  const engine = new Engine({ ...options, config });
  for (const item of applyOrder(resolved, enabled)) {
    const init = { source: item.source, enabled: item.entry.enabled, at: formatPosition(item.entry.position) };
    await engine.use(item.plugin, item.problem ? { ...init, problem: item.problem } : { ...init, options: optionsByEntry.get(item) ?? item.entry.options });
  }
  return engine;
}

export type ResolvedPlugins = Awaited<ReturnType<typeof resolvePlugins>>;

/** The config's plugins found, their dependencies and options checked, none applied: what loadPlugins refuses, before anything is opened. */
export async function resolvePlugins(config: Config) {
  // Only the built-ins the config names are loaded: the others are never applied.
  const builtins = await configuredBuiltins(config);
  const resolved: Resolved[] = [];
  for (const entry of config.plugins) resolved.push(await resolveEntry(entry, config, builtins));
  refuseDuplicates(resolved);
  const enabled = new Map(resolved.filter((item) => item.entry.enabled).map((item) => [item.plugin.name, item]));
  checkDependencies(resolved, enabled, config);
  return { resolved, enabled, optionsByEntry: await validateThirdPartyOptions(resolved, config) };
}

export function formatPosition(position: SourcePosition): string {
  return `${position.file}:${position.line}:${position.col}`;
}

async function resolveEntry(entry: PluginEntry, config: Config, builtins: ReadonlyMap<string, ApexPlugin<any>>): Promise<Resolved> {
  const builtin = builtins.get(entry.name);
  if (builtin) return { entry, plugin: builtin, source: { kind: "built-in", label: "built-in" }, label: entry.name };
  if (entry.enabled) return resolveThirdParty(entry, config);
  // A disabled plugin is only located, to be listed, never imported: its module's top-level code ran before.
  const disabled = { entry, plugin: { name: entry.name, apply() {} }, label: entry.name };
  try {
    return { ...disabled, source: locateThirdParty(entry, config, BUILTIN_PLUGIN_NAMES).source };
  } catch (error) {
    if (!(error instanceof ApexError)) throw error;
    // A disabled entry may point at something not installed here; list it, do not fail.
    const source: PluginSource = isPathLike(entry.name) ? { kind: "file", label: `file:${entry.name}` } : { kind: "npm", label: `npm:${entry.name}` };
    return { ...disabled, source, problem: error.message };
  }
}

/** The storage backends a `store:` section may name (its schema's enum). */
function storageBackendNames(): string[] {
  const store = (configSchema().properties as Record<string, { properties: { backend: { enum: string[] } } }>).store!;
  return store.properties.backend.enum;
}

/**
 * Where a third-party plugin's module is: a local file (relative to the config file) or an
 * installed npm package. Throws APEX_E_PLUGIN_UNKNOWN (with a did-you-mean among the
 * built-ins) when there is none. Nothing is imported.
 */
function locateThirdParty(entry: PluginEntry, config: Config, builtinNames: Iterable<string>): { file: string; source: PluginSource } {
  const at = formatPosition(entry.position);
  // A storage backend's name (an `lmdb:` section left beside a PostgreSQL store): said as such. It was an npm package to
  // install, or, where APEX's own lmdb resolves, a module that is no plugin.
  if (storageBackendNames().includes(entry.name)) {
    throw new ApexError("APEX_E_PLUGIN_UNKNOWN", `'${entry.name}' at ${at} is a storage backend, not a plugin: the store: section chooses the backend (store: {backend: ${entry.name}, …}), and plugins.${entry.name} does nothing: remove it.`, {
      hint: "`apex config show` shows the store in use.",
      details: { plugin: entry.name },
    });
  }
  const base = config.configPath ? dirname(config.configPath) : config.projectDir;
  // A bare `x.js` is a file beside the config, or else an npm package so named (as chart.js is): before, only the file was looked for.
  const packaged = /^(?:@[\w.-]+\/)?[\w][\w.-]*$/.test(entry.name) && !isFile(resolve(base, entry.name)) ? resolvePackage(entry.name, config.projectDir) : undefined;
  if (isPathLike(entry.name) && packaged === undefined) {
    const file = resolve(base, entry.name);
    if (!isFile(file)) {
      // A directory is no module to import (Node refuses one): name it as what it is, not as missing.
      const directory = isDirectory(file);
      throw new ApexError("APEX_E_PLUGIN_UNKNOWN", `The plugin file ${entry.name} at ${at} ${directory ? "is a directory, not a module file" : "does not exist"} (looked for ${file}).`, {
        hint: directory ? "Name the plugin's module file itself, e.g. ./my-plugin/index.mjs (for a package, its main file)." : "Paths of local plugins are relative to the directory of the config file.",
        details: { plugin: entry.name, file },
      });
    }
    return { file, source: { kind: "file", label: `file:${entry.name}`, file } };
  }
  const file = packaged ?? resolvePackage(entry.name, config.projectDir);
  if (!file) {
    const names = [...builtinNames];
    const guess = didYouMean(entry.name, names);
    throw new ApexError("APEX_E_PLUGIN_UNKNOWN", `Unknown plugin '${entry.name}' at ${at}.${guess ? ` Did you mean '${guess}'?` : ""}`, {
      hint:
        `Built-in plugins: ${names.join(", ")}. An npm plugin must be installed in ${config.projectDir} ` +
        `(npm install ${entry.name}); a local file is written as a path (./plugins/my-plugin.js).`,
      details: { plugin: entry.name, ...(guess ? { suggestion: guess } : {}) },
    });
  }
  return { file, source: { kind: "npm", label: `npm:${entry.name}`, file } };
}

/**
 * The cheap part of loadPlugins' checks, for commands that write the store without running
 * plugins (`memory set` with no supervisor): every enabled plugin is a built-in, an existing
 * file or an installed package. Nothing is imported.
 */
export function checkPluginSources(config: Config): void {
  for (const entry of config.plugins) {
    if (!entry.enabled || isBuiltinPlugin(entry.name)) continue;
    locateThirdParty(entry, config, BUILTIN_PLUGIN_NAMES);
  }
}

async function resolveThirdParty(entry: PluginEntry, config: Config): Promise<Resolved> {
  const at = formatPosition(entry.position);
  const { file, source } = locateThirdParty(entry, config, BUILTIN_PLUGIN_NAMES);
  const label = entry.name;
  const module = await importPlugin(file, label, at);
  const plugin = pluginOf(module, label, at);
  if (plugin.schema !== undefined) {
    const { compileSchema } = await import("./config/validate.js");
    try {
      compileSchema(plugin.schema);
    } catch (error) {
      const problem = (error as Error).message.replace(/^The options schema (?:is not a valid JSON Schema|cannot be compiled): /, "").replace(/\.$/, "");
      throw new ApexError(
        "APEX_E_PLUGIN_SCHEMA",
        `Plugin '${plugin.name}' (${label}) ships an invalid options schema: ${problem} — this is a bug in the plugin, not in your config.`,
        { hint: `Report it to the plugin's author; meanwhile you can disable it at ${at}.`, cause: error, details: { plugin: plugin.name } },
      );
    }
  }
  return { entry, plugin, source, label };
}

/** "./x.js", "../x.mjs", "/abs/x.js", "plugins/x.js": a path relative to the config file's directory. */
function isPathLike(name: string): boolean {
  return name.startsWith("./") || name.startsWith("../") || isAbsolute(name) || /\.(?:[cm]?js|[cm]?ts)$/.test(name);
}

/** The entry file of an npm package installed for the project, or undefined when it is not installed. */
function resolvePackage(name: string, projectDir: string): string | undefined {
  const require = createRequire(join(projectDir, "package.json"));
  try {
    const file = require.resolve(name);
    return isAbsolute(file) ? file : undefined; // "fs" and other Node built-ins are not plugins
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return resolveImportOnly(name, projectDir);
    if (code === "MODULE_NOT_FOUND" || code === "ERR_INVALID_MODULE_SPECIFIER") return undefined;
    throw new ApexError("APEX_E_PLUGIN_INVALID", `Cannot resolve the plugin package '${name}': ${(error as Error).message}`, { cause: error });
  }
}

/** For ESM-only packages whose `exports` have no "require" condition, which require.resolve refuses. */
function resolveImportOnly(name: string, projectDir: string): string | undefined {
  for (let dir = projectDir; ; dir = dirname(dir)) {
    const packageDir = join(dir, "node_modules", name);
    if (isFile(join(packageDir, "package.json"))) {
      const manifest = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8")) as { exports?: unknown; main?: string };
      const exported = manifest.exports;
      const root = exported !== null && typeof exported === "object" && !Array.isArray(exported) && "." in exported ? (exported as Record<string, unknown>)["."] : exported;
      const entry = pickCondition(root) ?? manifest.main ?? "index.js";
      return join(packageDir, entry);
    }
    if (dirname(dir) === dir) return undefined;
  }
}

function pickCondition(target: unknown): string | undefined {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) return pickCondition(target[0]);
  const condition = target !== null && typeof target === "object" ? ["import", "node", "default"].find((name) => name in target) : undefined;
  return condition === undefined ? undefined : pickCondition((target as Record<string, unknown>)[condition]);
}

/** A plugin's module. In the CLI's one-file bundle, a script that Node 20 cannot import() from, scripts/bundle.mjs makes it the loader's (cli/bundle.ts). */
const importFile = (url: string): Promise<unknown> => import(url);

async function importPlugin(file: string, label: string, at: string): Promise<Record<string, unknown>> {
  // A top-level await that nothing settles leaves the import pending and nothing to run: Node then exited 0, the command never done.
  let stalled = (): void => undefined;
  try {
    const never = new Promise<never>((_, reject) => process.once("beforeExit", (stalled = () => reject(new Error("its top-level code awaits something that never settles")))));
    return (await Promise.race([importFile(pathToFileURL(file).href), never])) as Record<string, unknown>;
  } catch (error) {
    const typescript = (error as { code?: string } | undefined)?.code === "ERR_UNKNOWN_FILE_EXTENSION";
    // Where in the file: a syntax error's position, or the line of the file that threw while it ran.
    const frame = String((error as Error)?.stack ?? "").split("\n").find((line) => line.includes(`${pathToFileURL(file).href}:`) || line.includes(`${file}:`));
    const thrownAt = /:(\d+:\d+)\)?$/.exec(frame ?? "")?.[1];
    const where = error instanceof SyntaxError ? syntaxErrorAt(file) : thrownAt && `${file}:${thrownAt}`;
    throw new ApexError("APEX_E_PLUGIN_INVALID", `The plugin ${label} at ${at} could not be loaded: ${thrownMessage(error)}${where ? ` (${where})` : ""}`, {
      hint: typescript ? "Node cannot load TypeScript directly: compile the plugin to JavaScript and point the config at the .js file." : `Check ${file}.`,
      cause: error,
      details: { plugin: label, file },
    });
  } finally {
    process.off("beforeExit", stalled);
  }
}

/**
 * Where a module's syntax error is, `file:line:col`: Node's SyntaxError from import() names no
 * position ("Unexpected token ';'"), `node --check` prints it. Undefined when the file itself
 * parses (the error is in a module it imports, whose own message says more).
 */
function syntaxErrorAt(file: string): string | undefined {
  // When the file parses, --check prints no position line, and there is none to give.
  const lines = String(spawnSync(process.execPath, ["--check", file], { encoding: "utf8", timeout: 10_000 }).stderr).split("\n");
  const at = lines.findIndex((line) => line.startsWith(`${file}:`));
  const [line, caret] = [/:(\d+)$/.exec(lines[at] ?? "")?.[1], lines[at + 2]?.indexOf("^") ?? -1];
  return line === undefined ? undefined : `${file}:${line}${caret >= 0 ? `:${caret + 1}` : ""}`;
}

/**
 * The plugin a module exports (default export, or a named `plugin` export), checked for shape.
 * TypeScript or Babel compiled to CommonJS write `exports.default = plugin` (and `__esModule`),
 * which import() gives as the default export's `default`: before, such a plugin was refused as nameless.
 */
function pluginOf(module: Record<string, unknown>, label: string, at: string): ApexPlugin<any> {
  const outer = module.default as Record<string, unknown> | null | undefined;
  const candidate = outer?.__esModule === true ? (outer.default ?? outer.plugin) : (outer ?? module.plugin);
  const problem = shapeProblem(candidate);
  if (problem) {
    throw new ApexError("APEX_E_PLUGIN_INVALID", `The module ${label} at ${at} does not export a valid APEX plugin: ${problem}.`, {
      hint: "A plugin module default-exports an object: export default { name, version, requires, schema, apply(apex, options) { … } }.",
      details: { plugin: label },
    });
  }
  return candidate as ApexPlugin<any>;
}

function shapeProblem(candidate: unknown): string | undefined {
  if (candidate === undefined) return "it has no default export";
  if (typeof candidate === "function") return "its default export is a function; export the plugin object itself";
  if (candidate === null || typeof candidate !== "object") return `its default export is ${candidate === null ? "null" : `a ${typeof candidate}`}, not a plugin object`;
  const plugin = candidate as Record<string, unknown>;
  if (typeof plugin.name !== "string" || !/^[^\s]+$/.test(plugin.name)) return "`name` must be a non-empty string without spaces";
  if (typeof plugin.apply !== "function") return "`apply` must be a function (apex, options) => void";
  if (plugin.version !== undefined && typeof plugin.version !== "string") return "`version` must be a string";
  if (plugin.requires !== undefined && !(Array.isArray(plugin.requires) && plugin.requires.every((name) => typeof name === "string"))) {
    return "`requires` must be a list of plugin names";
  }
  if (plugin.schema !== undefined && (plugin.schema === null || typeof plugin.schema !== "object" || Array.isArray(plugin.schema))) {
    return "`schema` must be a JSON Schema object";
  }
  return undefined;
}

function refuseDuplicates(resolved: Resolved[]): void {
  const seen = new Map<string, Resolved>();
  for (const item of resolved) {
    if (item.problem || !item.entry.enabled) continue; // a disabled entry is not loaded: its key is all it has of a name
    const name = item.plugin.name;
    const first = seen.get(name);
    if (first) {
      const twice = `Plugin '${name}' is configured twice: as ${first.label} at ${formatPosition(first.entry.position)} and as ${item.label} at ${formatPosition(item.entry.position)}.`;
      throw new ApexError("APEX_E_PLUGIN_DUPLICATE", twice, { hint: "Keep one of the two entries; a plugin is loaded once.", details: { plugin: name } });
    }
    if (item.source.kind !== "built-in" && isBuiltinPlugin(name)) {
      const clash = `The plugin ${item.label} at ${formatPosition(item.entry.position)} is named '${name}', like the built-in plugin '${name}'.`;
      throw new ApexError("APEX_E_PLUGIN_DUPLICATE", clash, { hint: "Plugin names must be unique; rename the plugin (its `name` field).", details: { plugin: name } });
    }
    seen.set(name, item);
  }
}

function checkDependencies(resolved: Resolved[], enabled: Map<string, Resolved>, config: Config): void {
  const configFile = config.source?.displayFile ?? "apex.config.yaml";
  for (const item of enabled.values()) {
    for (const dependency of item.plugin.requires ?? []) {
      if (enabled.has(dependency)) continue;
      const disabled = resolved.find((other) => !other.entry.enabled && (other.plugin.name === dependency || other.entry.name === dependency));
      // A disabled local or npm plugin is not imported: its name is unknown, and it may be this one.
      const unread = resolved.filter((other) => !other.entry.enabled && !isBuiltinPlugin(other.entry.name)).map((other) => `${other.label} at ${formatPosition(other.entry.position)}`);
      const where = `plugin '${item.plugin.name}' is enabled at ${formatPosition(item.entry.position)}`;
      const how = disabled
        ? `'${dependency}' is disabled at ${formatPosition(disabled.entry.position)}: enable it there.`
        : isBuiltinPlugin(dependency)
          ? `Enable the built-in plugin '${dependency}' under \`plugins:\` in ${configFile}.`
          : `${unread.length ? `If it is a plugin turned off here (${unread.join(", ")}), enable it; else install` : "Install"} the plugin named '${dependency}' and add it under \`plugins:\` in ${configFile}.`;
      throw new ApexError("APEX_E_PLUGIN_DEPENDENCY", `The dependency '${dependency}' of plugin '${item.plugin.name}' is not enabled (${where}).`, {
        hint: how,
        details: { plugin: item.plugin.name, dependency },
      });
    }
  }
}

/** Built-ins were validated (and defaulted) by loadConfig; third-party options are checked here. */
async function validateThirdPartyOptions(resolved: Resolved[], config: Config): Promise<Map<Resolved, Record<string, unknown>>> {
  const validated = new Map<Resolved, Record<string, unknown>>();
  const toCheck = resolved.filter((item) => item.entry.enabled && item.source.kind !== "built-in");
  if (toCheck.length === 0) return validated;
  const { resolveOptions, formatIssues } = await import("./config/validate.js");
  const issues = [];
  for (const item of toCheck) {
    // No schema: the plugin takes no options, and says so when given some.
    const schema = item.plugin.schema ?? { type: "object", properties: {}, additionalProperties: false };
    if (!config.source) throw new ApexError("APEX_E_INTERNAL", `No config source to check the options of plugin ${item.label} against.`);
    const checked = resolveOptions(schema, item.entry.options ?? {}, { source: config.source, path: ["plugins", item.entry.name] });
    issues.push(...checked.issues);
    validated.set(item, checked.options);
  }
  if (issues.length > 0) {
    throw new ApexError("APEX_E_PLUGIN_OPTIONS", formatIssues(issues), {
      hint: "Each plugin's options are described by the schema it ships; check the plugin's documentation.",
      details: { issues },
    });
  }
  return validated;
}

/** Config order, except that a plugin's enabled dependencies are applied before it. */
function applyOrder(resolved: Resolved[], enabled: Map<string, Resolved>): Resolved[] {
  const order: Resolved[] = [];
  const state = new Map<Resolved, "visiting" | "done">();
  const visit = (item: Resolved, chain: string[]) => {
    if (state.get(item) === "done") return;
    if (state.get(item) === "visiting") {
      throw new ApexError("APEX_E_PLUGIN_DEPENDENCY", `Plugins require each other in a cycle: ${[...chain, item.plugin.name].join(" → ")} (plugin ${item.plugin.name} at ${formatPosition(item.entry.position)}).`, {
        hint: "One of them must drop the other from its `requires`.",
      });
    }
    state.set(item, "visiting");
    if (item.entry.enabled) for (const dependency of item.plugin.requires ?? []) visit(enabled.get(dependency)!, [...chain, item.plugin.name]);
    state.set(item, "done");
    order.push(item);
  };
  for (const item of resolved) visit(item, []);
  return order;
}
