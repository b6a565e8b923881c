import { Command } from "commander";
import { locateProject } from "../core/config/locate.js";
import { displayPath } from "../core/config/source.js";
import type { Config } from "../core/config/types.js";
import { ApexError, isApexError } from "../core/errors.js";
import { idleWindowMs } from "../core/rpc/protocol.js";
import type { CommandContext, CommandInput, CommandRegistration, Engine } from "../core/engine.js";
import { printJson, printLine, reportError } from "./output.js";
import { configFlagOf } from "./session-ref.js";
import { sessionArgument } from "./session-arguments.js";
import { sessionFlag } from "../core/session/binding.js";
import { type Store } from "../core/store/store.js";
import { openStore, storeExists, type StoreLocation } from "../core/store/open.js";

/** Work main does after the command ran (closing the store a plugin command opened). */
export const closeAfterParse: Array<() => Promise<void>> = [];

/**
 * Loads the config and its plugins, and adds the subcommands the plugins register to the
 * program, so that `apex <plugin-command>` runs like any core command. Called by main only
 * when the first command word is not a core command. `help`: the command line asks for help
 * (main's wantsHelp), so a disabled built-in's command is added to show its help, not refused.
 */
export async function registerPluginCommands(program: Command, argv: string[], words: readonly string[] = [], help = false): Promise<void> {
  const location = locateProject({ configFlag: configFlagOf(argv.slice(2)) });
  const { loadConfig } = await import("../core/config/load.js");
  const config = await loadConfig(location);
  const { loadPlugins } = await import("../core/plugins.js");
  const engine = await loadPlugins(config);
  let store: Store | undefined;
  const context: CommandContext = {
    config,
    projectDir: config.projectDir,
    engine,
    store: async () => (store ??= await openStore(config)),
    storeExists: async () => store !== undefined || storeExists(config),
    invoke: (name, input) => runAtWriter(engine, name, input, context, config),
    print: (text) => printLine(text),
    printJson: (value) => printJson(value),
  };
  closeAfterParse.push(async () => {
    await store?.close();
  });
  addPluginCommands(program, engine, context);
  if (words.length > 0 && !namesCommand(program, words)) {
    const disabled = await disabledPluginCommand(config, words);
    if (!disabled) return;
    // `--help` of it teaches it all the same (it was the refusal): its help, with the plugin's state and how to turn it on first.
    if (!help) throw disabled.refusal;
    const how = (disabled.refusal.hint ?? "").replace(/, then run the command again\.$/, ".");
    const spec = { ...disabled.registration.spec, description: `${disabled.registration.spec.description} (${disabled.refusal.message} ${how})` };
    const name = spec.name.split(" ");
    const parent = name.length > 1 ? program.commands.find((command) => command.name() === name[0]) : program;
    parent?.addCommand(toCommander(parent, disabled.engine, { ...disabled.registration, spec }, context, name[name.length - 1]!));
  }
}


function addPluginCommands(program: Command, engine: Engine, context: CommandContext): void {
  for (const registration of engine.commands) {
    // "session cleanup" goes below the core `session` group; "hello" at the top.
    const words = registration.spec.name.split(" ");
    const parent = words.length > 1 ? program.commands.find((command) => command.name() === words[0]) : program;
    if (!parent) {
      throw new ApexError("APEX_E_PLUGIN_INVALID", `Plugin ${registration.plugin} adds '${registration.spec.name}', but APEX has no '${words[0]}' command group.`, {
        hint: disableHint(engine, registration.plugin),
        details: { plugin: registration.plugin, command: registration.spec.name },
      });
    }
    parent.addCommand(toCommander(parent, engine, registration, context, words[words.length - 1]!));
  }
}

/**
 * Refuses, before anything is written, a config whose third-party plugins cannot run: one whose
 * apply throws, two plugins adding one command, or a plugin command APEX already has (`status`,
 * `session list`: the core command would run and the plugin's never, silently). `apex config
 * validate` and `apex start` call it; built-ins alone are known to apply, so nothing is loaded then.
 */
export async function assertPluginsApply(config: Config, loaded?: Engine): Promise<void> {
  const { isBuiltinPlugin } = await import("../core/config/schemas.js");
  if (!config.plugins.some((entry) => entry.enabled && !isBuiltinPlugin(entry.name))) return;
  const engine = loaded ?? (await (await import("../core/plugins.js")).loadPlugins(config, { warn: () => undefined }));
  const [{ buildProgram }, { loadGroups }] = await Promise.all([import("./main.js"), import("./commands.js")]);
  // Only the clashes matter here: the commands are added to a program that never runs.
  addPluginCommands(buildProgram(await loadGroups()), engine, {} as CommandContext);
}

/** How to run without a plugin: its line under `plugins:`. */
function disableHint(engine: Engine, plugin: string): string {
  const record = engine.plugin(plugin);
  const where = record?.at ? ` (${record.source.label} at ${record.at})` : record ? ` (${record.source.label})` : "";
  return `Set plugin ${plugin}${where} to false under \`plugins:\`, or ask its author to rename the command.`;
}

/** True when the words name a command of the program (or lead into a group, which commander handles). */
function namesCommand(program: Command, words: readonly string[]): boolean {
  let current = program;
  for (const word of words) {
    if (current.commands.length === 0) return true;
    const next = current.commands.find((command) => command.name() === word || command.aliases().includes(word));
    if (!next) return false;
    current = next;
  }
  return true;
}

/**
 * A command no enabled plugin provides may belong to a built-in plugin the config leaves out
 * (`apex session compress` without `compression`): the refusal that says which plugin and how to
 * enable it (rather than commander's "unknown command"), with the command as that plugin registers it. Each disabled built-in is applied to a scratch
 * engine to learn its commands; applying only taps hooks and registers things.
 */
async function disabledPluginCommand(config: Config, words: readonly string[]): Promise<{ refusal: ApexError; registration: CommandRegistration; engine: Engine } | undefined> {
  const { builtinPlugins } = await import("../core/plugins.js");
  const { Engine } = await import("../core/engine.js");
  // A built-in listed but idle (`metrics: {enabled: false}`, `history: {enabled: false}`) adds no command either.
  const idle = new Set(config.plugins.filter((entry) => entry.enabled && entry.options.enabled === false).map((entry) => entry.name));
  const enabled = new Set(config.plugins.filter((entry) => entry.enabled && !idle.has(entry.name)).map((entry) => entry.name));
  const typed = words.join(" ");
  const builtins = await builtinPlugins();
  for (const [name, plugin] of builtins) {
    if (enabled.has(name)) continue;
    const scratch = new Engine({ config, warn: () => undefined });
    // The built-ins it requires first (archive and compression build on checkpoint), as loadPlugins applies them.
    const applied = new Set<string>();
    const apply = async (current: typeof plugin): Promise<void> => {
      if (applied.has(current.name)) return;
      applied.add(current.name);
      for (const dependency of current.requires ?? []) {
        const required = builtins.get(dependency);
        if (required) await apply(required);
      }
      await scratch.use(current, { options: {}, source: { kind: "built-in", label: "built-in" } });
    };
    try {
      await apply(plugin);
    } catch {
      continue;
    }
    // Only its own commands: those of the built-ins it requires, applied with it, may be enabled (`git` for sharing).
    const provided = scratch.commands.find(({ plugin: owner, spec }) => owner === name && (spec.name === typed || spec.name === words[0]));
    if (!provided) continue;
    const file = config.configPath ? displayPath(config.configPath) : "apex.config.yaml";
    const state = idle.has(name)
      ? `is listed but idle (\`enabled: false\` under plugins.${name}) in ${file}`
      : config.plugins.some((entry) => entry.name === name)
        ? `is turned off (\`${name}: false\`) in ${file}`
        : `is not enabled in ${file}`;
    const hint = idle.has(name)
      ? `Turn it on: remove \`enabled: false\` from plugins.${name} in ${file} (or set it to true), then run the command again.`
      : `Enable it: put \`${name}: {}\` in the plugins: section of ${file} (a plugins: section lists every plugin to run; \`apex plugins list\` shows them), then run the command again.`;
    const refusal = new ApexError("APEX_E_PLUGIN_DISABLED", `\`apex ${provided.spec.name}\` is a command of the ${name} plugin, which ${state}.`, {
      hint,
      details: { command: provided.spec.name, plugin: name },
    });
    return { refusal, registration: provided, engine: scratch };
  }
  return undefined;
}

function toCommander(
  parent: Command,
  engine: Engine,
  { plugin, spec }: CommandRegistration,
  context: CommandContext,
  name: string,
): Command {
  // `help` is commander's own command in every group (`apex help start`): a plugin's would silently replace it.
  const clash = name === "help" || parent.commands.some((command) => command.name() === name || command.aliases().includes(name));
  if (clash) {
    throw new ApexError("APEX_E_PLUGIN_DUPLICATE", `Plugin ${plugin} adds the command '${spec.name}', which APEX already has.`, {
      hint: disableHint(engine, plugin),
      details: { plugin, command: spec.name },
    });
  }
  const command = new Command(name);
  try {
    command.description(`${spec.description ?? ""} (plugin ${plugin})`.trim());
    for (const { syntax, description, session } of spec.arguments ?? []) command.addArgument(session === true ? sessionArgument(syntax, description ?? "") : command.createArgument(syntax, description ?? ""));
    if (spec.examples?.length) command.addHelpText("after", `\nExamples:\n${spec.examples.map((line) => `  ${line}`).join("\n")}`);
    for (const option of spec.options ?? []) {
      if (option.default === undefined) command.option(option.flags, option.description ?? "");
      else command.option(option.flags, option.description ?? "", option.default);
    }
  } catch (error) {
    throw new ApexError("APEX_E_PLUGIN_INVALID", `Plugin ${plugin} declares the command '${spec.name}' wrongly: ${(error as Error).message}`, {
      cause: error,
      details: { plugin, command: spec.name },
    });
  }
  // An option APEX or the command's group takes (--config, --remote) never reached the command: APEX read it (`--config x` loaded
  // the config x), silently.
  const outer: Command[] = [];
  for (let group: Command | null = parent; group; group = group.parent) outer.push(group);
  const taken = command.options.find((option) => outer.some((group) => group.options.some((own) => (option.long && own.long === option.long) || (option.short && own.short === option.short))));
  if (taken) {
    throw new ApexError("APEX_E_PLUGIN_DUPLICATE", `Plugin ${plugin} gives the command '${spec.name}' the option ${taken.flags}, which APEX takes itself: the command would never get it.`, {
      hint: disableHint(engine, plugin).replace("rename the command", "rename the option"),
      details: { plugin, command: spec.name, option: taken.flags },
    });
  }
  command.action(async (...params: unknown[]) => {
    // commander passes the declared arguments, then the options, then the command itself
    const self = params[params.length - 1] as Command;
    const input = { args: params.slice(0, -2), options: self.opts() };
    // `--session X` left the line before plugin commands were added (main.ts, applySessionFlag): one that declares it gets it all the same.
    const flag = sessionFlag();
    if (flag !== undefined && input.options.session === undefined && self.options.some((option) => option.long === "--session")) input.options.session = flag;
    const code =
      spec.runsIn === "cli"
        ? await engine.runCommand(spec.name, input, context)
        : await runAtWriter(engine, spec.name, input, context, context.config!);
    if (typeof code === "number" && code !== 0) process.exitCode = code;
  });
  return command;
}

/**
 * Runs a plugin command where the store's one writer is: forwarded to the live supervisor
 * (which runs it with its own engine and store and sends the output back), or here. A supervisor
 * that refused it as it stopped (nothing of it run) is waited for, and the command run once more
 * where it goes then (here, or a supervisor `start --continue` started meanwhile), as other writes
 * are (stopping-retry.ts). `again`: that second run.
 */
async function runAtWriter(engine: Engine, name: string, input: CommandInput, context: CommandContext, location: StoreLocation, again = false): Promise<number> {
  const { liveSessionClient } = await import("../core/session/client.js");
  // With a remote session the command runs here, and its own calls go to the remote server; so
  // does one whose store is not the supervisor's (APEX_STORE_URL naming another).
  const supervisor = await liveSessionClient(location, { local: true }).catch((error: unknown) => {
    // Several sessions run side by side and none is this command's (the project's tree with its own
    // session ended, branches running in their worktrees): no supervisor is its writer, so it runs
    // here, on the store, as with none running. A command that names its session (`session archive
    // ID`, `--older-than`) was refused as ambiguous; one that needs the bound session is, by the store.
    if (isApexError(error) && error.code === "APEX_E_AMBIGUOUS_SESSION") return undefined;
    throw error;
  });
  if (!supervisor) return (await engine.runCommand(name, input, context)) ?? 0;
  // The supervisor loaded its plugins when the session started: told which plugin the config gives the
  // command, it refuses one enabled since with APEX_E_SESSION_STATE (core/session/methods.ts).
  const plugin = engine.commands.find((command) => command.spec.name === name)?.plugin;
  // Its output comes as it is printed, with a heartbeat in between: only a supervisor that sends
  // nothing for the whole window (APEX_PLUGIN_COMMAND_IDLE_MS, 10 minutes) cuts the wait short.
  const idleMs = idleWindowMs();
  const params = { name, plugin, args: input.args, options: input.options, stream: true, heartbeat_ms: Math.max(50, Math.floor(idleMs / 4)) };
  // Ctrl-C ends the wait, not the command, which goes on in the supervisor: said (it was a silent exit 130).
  const pid = supervisor.supervisor?.pid;
  const interrupted = () => {
    const error = new ApexError("APEX_E_INTERRUPTED", `Interrupted while \`apex ${name}\` ran in the session's supervisor${pid ? ` (pid ${pid})` : ""}: it goes on there, and what it prints from now on is not shown.`, {
      hint: "`apex status` shows whether the supervisor is alive.",
      details: { command: name, ...(pid ? { pid } : {}), may_be_under_way: true },
    });
    process.exit(reportError(error, input.options.json === true));
  };
  process.once("SIGINT", interrupted);
  let failed: unknown;
  try {
    const reply = (await supervisor.call("plugin.command", params, idleMs, (event) => {
      const { output } = event as { output?: unknown };
      if (typeof output === "string") process.stdout.write(output);
    })) as { output: string; exitCode: number };
    if (reply.output) process.stdout.write(reply.output);
    return reply.exitCode;
  } catch (error) {
    failed = error;
  } finally {
    process.off("SIGINT", interrupted);
  }
  const json = input.options.json === true;
  // (a second supervisor stopping as well: its refusal stands)
  const session = again ? undefined : await (await import("./stopping-retry.js")).waitOutStop(supervisor, failed, json);
  if (!session) throw failed;
  try {
    const code = await runAtWriter(engine, name, input, context, location, true);
    if (!json) process.stderr.write(`note: session ${session} was stopping; the command was run once it had stopped.\n`);
    return code;
  } catch (error) {
    if (!json) process.stderr.write(`note: session ${session} was stopping; once it had stopped, the command was run again:\n`);
    throw error;
  }
}

/**
 * The warning a command that shows a config gives when `next` (`apex start`) would refuse it:
 * `apex status` before a start, `apex config show`. `file`: the config as the user names it.
 */
export function refusedConfigWarning(file: string, next: string, error: ApexError): string {
  const problems = error.message.split("\n").map((line) => `  ${line}`).join("\n");
  return `${file} is invalid (${error.code}), so ${next} would refuse it; \`apex config validate\` lists every problem:\n${problems}`;
}
