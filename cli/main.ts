import { createRequire } from "node:module";
import type { Command as CommandType, CommanderError as CommanderErrorType } from "commander";

// commander is CommonJS: required, it is not also parsed for its export names (cjs-module-lexer)
// and wrapped as an ES module on every start; the classes are the same as an `import` would give.
const { Command, CommanderError, Option } = createRequire(import.meta.url)("commander") as typeof import("commander");
type Command = CommandType;
type CommanderError = CommanderErrorType;
import { ApexError } from "../core/errors.js";
import { jsonAsked, reportError, useColor } from "./output.js";
import { guardTerminalOutput } from "./terminal-text.js";
import { COMMAND_GROUPS, groupsFor, loadGroups } from "./commands.js";
import { blankValue, refuseBlankValues } from "./option-values.js";
// What works against a remote session; anything else would act on the local project, so it is refused rather than run.
import { REMOTE_COMMANDS, worksRemotely } from "./remote-commands.js";

export const VERSION = "0.1.0";

// What bin/apex.js needs of this module besides main (output.ts: the fast path of `apex status` has them too).
export { outputGone, reportOutputError, reportUnhandledRejection } from "./output.js";

/** Builds the commander program with command groups registered (`loadGroups()`: every one). */
export function buildProgram(groups: ReadonlyArray<(program: Command) => void>): Command {
  const program = new Command("apex");
  program
    .description("APEX: supervised multi-agent development sessions with checkpoints, restore and plugins.")
    .version(VERSION, "-V, --version")
    .addOption(new Option("--config <path>", "use this apex.config.yaml (default: search upwards; env APEX_CONFIG)"))
    .addOption(new Option("--remote <host/session>", "act on a session served by `apex serve` elsewhere: HOST[:PORT]/SESSION (env APEX_REMOTE)"))
    .addOption(new Option("--token-file <file>", "read the token of an invite from FILE (- : standard input), for --remote, `apex connect` and `apex login` (or env APEX_TOKEN, or `apex login HOST`)"))
    .addOption(new Option("--token <token>", "the token itself: visible to every user of this machine (ps) and kept in shell history, so prefer --token-file or APEX_TOKEN"))
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ sortSubcommands: false, showGlobalOptions: true })
    .addHelpText(
      "after",
      `
Session:
  --session ID|NAME          act on this session of the project, before or after the command
                             (default: the one bound to this worktree, else the project's,
                             else the only active one; inside an agent, always the agent's
                             own: another is refused); \`last\`: that default, else the
                             session that ended last; \`current\`: it while it runs

Environment:
  APEX_CONFIG                path of apex.config.yaml (like --config)
  APEX_HOME                  store directory (default: .apex/ beside the config file)
  APEX_STORE_URL             the store, postgres://… or lmdb:PATH (overrides store: in the config)
  APEX_HOST                  this machine's name in session records (default: its host name)
  APEX_CHECKPOINT_INTERVAL   time between automatic checkpoints, a duration (300, 5m) or 0 for none
  APEX_REMOTE, APEX_TOKEN    like --remote and --token (an environment is the owner's only;
                             a command line is every user's: prefer APEX_TOKEN or --token-file)
  APEX_WORKTREE              the working tree that binds the session, instead of the current
                             directory (APEX's git hooks set it)
  NO_COLOR                   disable colours

Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 not found, 4 conflict or refused,
130 interrupted (Ctrl-C: the command says what it left).
Examples:
  apex start --task "Implement user authentication" --attach
  apex memory set /notes/today '{"todo": 3}'
  apex memory query '/notes/**' --json`,
    );
  // Every command's --help names the global --session too (commander lists only declared options under "Global Options").
  program.addHelpText("afterAll", ({ command }) =>
    command === program || command.options.some((option) => option.long === "--session")
      ? ""
      : noSessionFlag(commandPathWords(command))
        ? `\nSession:\n  --session is refused here: ${noSessionFlag(commandPathWords(command))}.`
        : "\nSession:\n  --session ID|NAME        act on this session of the project (see `apex --help`)",
  );
  for (const register of groups) register(program);
  return program;
}

/**
 * Runs the CLI and resolves to the process exit code; never throws. `handOver` (bin/apex.js: its
 * Ctrl-C handler, which says nothing was done, goes) is called before the command's action runs.
 */
export async function main(argv: string[], handOver?: () => void): Promise<number> {
  const json = jsonAsked(argv);
  const make = async (groups: ReturnType<typeof groupsFor>) => {
    const made = buildProgram(await loadGroups(groups));
    made.exitOverride();
    // An unknown command gets APEX's suggestion (unknownCommandHint), which knows the groups' subcommands.
    made.showSuggestionAfterError(false);
    made.configureOutput({
      writeErr: (text) => process.stderr.write(text),
    });
    return made;
  };
  // Only the groups of the command named (`apex status`: its group's modules alone), every group where more may be wanted.
  // `apex --version` (-V) alone prints the version, which no group's commands change: none is loaded for it.
  const versionOnly = argv.length === 3 && (argv[2] === "--version" || argv[2] === "-V");
  const groups = versionOnly ? [] : groupsFor(commandWords(argv.slice(2), 1)[0]);
  let program = await make(groups);
  argv = helpAsFlag(program, argv);
  const finalizers: Array<() => Promise<void>> = [];
  let synonym: string | undefined;
  try {
    if (argv === process.argv) {
      // Text from other users, agents and remote servers is printed: none of it may act on the terminal.
      guardTerminalOutput(useColor);
      const { assertArgumentsUtf8 } = await import("./input-text.js");
      assertArgumentsUtf8(argv);
    }
    refuseBlankGlobalFlags(argv.slice(2));
    applyRemoteFlags(argv.slice(2));
    // --token and --token-file (token-flags.ts), read only when given.
    if (argv.slice(2).some((arg) => arg.startsWith("--token"))) await (await import("./token-flags.js")).applyTokenFlags(argv.slice(2));
    const sessionGiven = argv.slice(2).some((arg) => arg === "--session" || arg.startsWith("--session="));
    argv = await applySessionFlag(program, argv);
    if (process.env.APEX_REMOTE) checkRemoteCommand(commandWords(argv.slice(2)));
    // A plugin's command, or help on a group plugins add to: every group, as a plugin's command may go below any of them.
    if (groups !== COMMAND_GROUPS && (needsPluginCommands(program, argv) || wantsGroupHelp(program, argv) || bareGroup(program, argv.slice(2)))) program = await make(COMMAND_GROUPS);
    if (needsPluginCommands(program, argv)) {
      const { registerPluginCommands, closeAfterParse } = await import("./plugin-commands.js");
      await registerPluginCommands(program, argv, commandWords(argv.slice(2)), wantsHelp(argv.slice(2)));
      finalizers.push(() => Promise.all(closeAfterParse.map((close) => close())).then(() => undefined));
    } else if (wantsGroupHelp(program, argv) || bareGroup(program, argv.slice(2))) {
      // `apex session --help` (and `apex session` alone) lists what the enabled plugins add. Help never fails for that:
      // with a config that cannot be loaded, it shows the core commands (and says why).
      const { registerPluginCommands } = await import("./plugin-commands.js");
      try {
        await registerPluginCommands(program, argv);
      } catch (error) {
        const note = `\n(Commands added by plugins are not listed: ${(error as Error).message.split("\n")[0]})\n`;
        program.addHelpText("after", note);
        for (const group of program.commands) group.addHelpText("after", note);
      }
    }
    // `apex memory get`: a group's word that is none of its commands may be another tool's name for one (command-synonyms.ts).
    const [groupWord, subWord] = commandWords(argv.slice(2));
    const group = program.commands.find((command) => command.name() === groupWord);
    if (group && subWord !== undefined && !group.commands.some((sub) => sub.name() === subWord || sub.aliases().includes(subWord))) {
      synonym = (await import("./command-synonyms.js")).synonymHint(program, commandWords(argv.slice(2)), argv.slice(2));
    }
    refuseBareGroup(program, argv.slice(2), json);
    throwInsteadOfExit(program, json);
    if (handOver) program.hook("preAction", handOver);
    refuseHelpOnUnknownCommand(program, argv.slice(2));
    refuseBlankValues(program);
    // A command's session argument and --session name one session, or the command does not run (session-arguments.ts).
    if (sessionGiven) {
      const { withSessionFlag } = await import("./session-arguments.js");
      if (!wantsHelp(argv.slice(2))) withSessionFlag(program);
      program.hook("preAction", async (_program, action) => {
        const flag = (await import("../core/session/binding.js")).sessionFlag();
        if (flag !== undefined) await (await import("./session-arguments.js")).reconcileSessionArguments(action, flag, argv.slice(2));
      });
    }
    await program.parseAsync(argv);
    for (const finalize of finalizers) await finalize();
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version" || error.code === "commander.help") return 0;
      // commander already printed its message (not with --json: there it is the error's JSON); usage errors exit with 2
      const sessionHint = (error.code === "commander.unknownCommand" ? synonym : undefined) ?? sessionWordHint(error, argv) ?? gitArgumentsHint(error, argv) ?? unknownCommandHint(program, error, argv, (await import("../core/suggest.js")).didYouMean);
      if (json) return reportError(new ApexError("APEX_E_USAGE", `${error.message.replace(/^error: /, "")}.`.replace(/\.\.$/, "."), { hint: sessionHint ?? "Run the command with --help for its usage." }), true);
      if (sessionHint) process.stderr.write(`hint: ${sessionHint}\n`);
      return 2;
    }
    return reportError(await (await import("./archived-hint.js")).withArchivedHint(error, argv), json);
  }
}

/**
 * `apex help session cleanup` is `apex session cleanup --help` (so is `apex session help cleanup`): commander's own
 * help command knew no plugin's command (`apex help git` printed APEX's help on stderr) and no group's subcommands
 * (`apex help session cleanup` printed the session group's).
 */
function helpAsFlag(program: Command, argv: string[]): string[] {
  const args = argv.slice(2);
  const words = commandWords(args, 3);
  // Below a group only (`apex logs help` shows the logs of an agent named help).
  const group = program.commands.find((command) => command.name() === words[0]);
  const at = words[0] === "help" ? 0 : words[1] === "help" && group !== undefined && group.commands.length > 0 ? 1 : -1;
  if (at < 0 || words.length === at + 1) return argv;
  // Where that word stands, as commandWords reads the line (a global flag's value is no word: `--config help`).
  let index = -1;
  for (let i = 0, seen = 0; index < 0; i++) {
    if (["--config", "--remote", "--token", "--token-file", "--session"].includes(args[i]!)) i++;
    else if (!args[i]!.startsWith("-") && seen++ === at) index = i;
  }
  return [...argv.slice(0, 2), ...args.slice(0, index), ...args.slice(index + 1), "--help"];
}

/**
 * `apex statsu --help`, `apex session nonsense --help`: help on a command no group has is the usage error the command
 * without --help is (exit 2, APEX_E_USAGE, with --json as JSON); it printed the program's or the group's help, exit 0.
 */
function refuseHelpOnUnknownCommand(program: Command, args: string[]): void {
  const end = args.indexOf("--");
  const flags = end < 0 ? args : args.slice(0, end);
  if (!flags.includes("--help") && !flags.includes("-h")) return;
  let current = program;
  for (const word of commandWords(args, 3)) {
    if (current.commands.length === 0) return;
    const next = current.commands.find((command) => command.name() === word || command.aliases().includes(word));
    if (!next) {
      current.args = [word];
      (current as unknown as { unknownCommand(): never }).unknownCommand();
    }
    current = next!;
  }
}

/**
 * The group a command line names and nothing more (`apex memory`, `apex session --json`): a group with commands and
 * no action of its own, with no word, option or `--` after it but global flags and --json; `apex` alone is the
 * program, the group of them all. Anything else on the line is commander's to judge (`--help`, an unknown option).
 */
function bareGroup(program: Command, args: string[]): Command | undefined {
  let group = program;
  for (const word of commandWords(args, 3)) {
    const next = group.commands.find((command) => command.name() === word || command.aliases().includes(word));
    if (!next) return undefined;
    group = next;
  }
  // `apex git` runs git itself: a group with an action is a command.
  if (group.commands.length === 0 || (group as unknown as { _actionHandler?: unknown })._actionHandler) return undefined;
  const rest = args.filter((arg, at) => arg !== "--json" && !GLOBAL_VALUE_FLAGS.includes(arg) && !GLOBAL_VALUE_FLAGS.includes(args[at - 1]!) && !GLOBAL_VALUE_FLAGS.some((flag) => arg.startsWith(`${flag}=`)));
  return rest.length === commandPathWords(group).length ? group : undefined;
}

/** The global flags that take a value (`--config FILE`): neither they nor their value are command words. */
const GLOBAL_VALUE_FLAGS = ["--config", "--remote", "--token", "--token-file", "--session"];

/**
 * `apex memory`: a group without one of its commands is a usage error (exit 2), after the group's help on stderr
 * (with --json, the error's JSON alone). Commander printed the help and exited 0, so a script that left the command
 * out took it for done; `apex memory --help` and `apex help memory` are the help, on stdout, exit 0. `apex` alone
 * is the same error, with the program's help.
 */
function refuseBareGroup(program: Command, args: string[], json: boolean): void {
  const group = bareGroup(program, args);
  if (!group) return;
  const named = ["apex", ...commandPathWords(group)].join(" ");
  const visible = group.commands.filter((command) => !(command as unknown as { _hidden?: boolean })._hidden).map((command) => command.name());
  if (!json) group.outputHelp({ error: true });
  throw new ApexError("APEX_E_USAGE", `${named} needs one of its commands: ${visible.join(", ")}.`, {
    hint: `Run \`${named} COMMAND\`; \`${named} --help\` says what each does.`,
  });
}

/** `apex git commit -m x`: git's options are read as APEX's unless they come after `--`. */
function gitArgumentsHint(error: CommanderError, argv: string[]): string | undefined {
  const args = argv.slice(2);
  const at = args.indexOf("git");
  if (error.code !== "commander.unknownOption" || commandWords(args, 1)[0] !== "git" || args.includes("--")) return undefined;
  return `Put git's arguments after --, so that APEX does not read them as its own: apex git -- ${args
    .slice(at + 1)
    .map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`))
    .join(" ")}`;
}

/** `apex stop feat`: the commands that act on "the session" take it as --session, which the error then says. */
function sessionWordHint(error: CommanderError, argv: string[]): string | undefined {
  const words = commandWords(argv.slice(2), 3);
  // `apex session metrics ID` too: its neighbours (history, report, sync-git) take the session as an argument.
  const length = words[0] === "session" && words[1] === "metrics" ? 2 : ["status", "pause", "resume", "stop"].includes(words[0]!) ? 1 : 0;
  const extra = words[length];
  if (error.code !== "commander.excessArguments" || length === 0 || extra === undefined) return undefined;
  return `A session is named with --session: apex ${words.slice(0, length).join(" ")} --session ${extra}`;
}

/**
 * `apex report`: a command at the top level that is not one. A group's subcommand of that name
 * (`apex session report`, which a plugin may add) is what was meant; else a close top-level
 * name ("statuss": status). Commander's own guess knows only the top level and offered
 * "memory" for "report".
 */
function unknownCommandHint(program: Command, error: CommanderError, argv: string[], didYouMean: (input: string, candidates: string[]) => string | undefined): string | undefined {
  const [word] = commandWords(argv.slice(2));
  if (error.code !== "commander.unknownCommand" || word === undefined || !error.message.includes(`'${word}'`)) return undefined;
  const visible = (command: Command) => !(command as unknown as { _hidden?: boolean })._hidden;
  const groups = program.commands.filter((group) => visible(group) && group.commands.some((sub) => visible(sub) && (sub.name() === word || sub.aliases().includes(word))));
  if (groups.length === 1) return `Did you mean apex ${groups[0]!.name()} ${word}? (\`apex ${groups[0]!.name()} --help\` lists that group's commands)`;
  if (groups.length > 1) return `Did you mean ${groups.map((group) => `apex ${group.name()} ${word}`).join(", ")}?`;
  const names = program.commands.filter(visible).flatMap((command) => [command.name(), ...command.aliases()]);
  const close = didYouMean(word, names);
  return close ? `Did you mean apex ${close}?` : undefined;
}

/**
 * `--config`, `--remote`, `--token` and `--session` are read before commander parses anything
 * (they choose the project, the transport and the session): an empty value there must be the
 * same usage error commander's parsers give for every other option, not "flag not given".
 */
function refuseBlankGlobalFlags(args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return;
    for (const flag of ["--config", "--remote", "--token", "--token-file", "--session"]) {
      const value = arg === flag ? args[i + 1] : arg.startsWith(`${flag}=`) ? arg.slice(flag.length + 1) : undefined;
      if (value !== undefined && value.trim() === "") {
        throw blankValue(flag, value);
      }
    }
  }
}

/**
 * `--remote` is read before commander parses anything and sets APEX_REMOTE, which the session
 * routing (openSessionClient) reads; `--token` and `--token-file` set APEX_TOKEN (token-flags.ts).
 */
function applyRemoteFlags(args: string[]): void {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return;
    // (--token and --token-file: cli/token-flags.ts)
    if (arg === "--remote" && args[i + 1] !== undefined) process.env.APEX_REMOTE = args[i + 1];
    else if (arg.startsWith("--remote=")) process.env.APEX_REMOTE = arg.slice("--remote=".length);
  }
}

/**
 * Commands for which --session would choose nothing: they refuse it rather than seem to take it (`apex config show
 * --session S`, `apex session list --session S` went on as if S were not named). A group's entry is every command of it.
 */
const NO_SESSION_FLAG: Record<string, string> = {
  serve: "apex serve serves every session of the project, each only to the users it is shared with (`apex session share SESSION USER`)",
  connect: "apex connect names its session in its target, HOST[:PORT]/SESSION",
  login: "apex login names its session in its target, HOST[:PORT]/SESSION",
  config: "the config is the project's, every session's alike",
  plugins: "the plugins are the project's, every session's alike",
  store: "the store is the project's, with every session in it",
  backup: "apex backup copies the whole store, every session in it",
  "session list": "apex session list lists every session of the project",
  "session tree": "apex session tree draws every session of the project",
  "session import": "apex session import adds the session its bundle holds",
  "session unarchive": "apex session unarchive brings back the session its bundle holds (name the archived session as BUNDLE)",
};

/** `apex help …`, or `--help` (`-h`) before any `--`: the command is not run. */
function wantsHelp(args: string[]): boolean {
  const end = args.indexOf("--");
  return commandWords(args, 1)[0] === "help" || (end < 0 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

/** Why `apex WORDS` takes no --session, or undefined when it takes one. */
function noSessionFlag(words: string[]): string | undefined {
  return NO_SESSION_FLAG[words.slice(0, 2).join(" ")] ?? NO_SESSION_FLAG[words[0] ?? ""];
}

/** The words of a command below the program: [] for the program, ["session", "list"] for `apex session list`. */
function commandPathWords(command: Command): string[] {
  const words: string[] = [];
  for (let at: Command | null = command; at?.parent; at = at.parent) words.unshift(at.name());
  return words;
}

/**
 * `--session ID|NAME` selects the session a command acts on (core/session/binding.ts), before or
 * after the command words. Commands that declare their own `--session` (task list, checkpoint
 * show, …) also get it as their option; for the others it is taken out of the arguments here.
 */
async function applySessionFlag(program: Command, argv: string[]): Promise<string[]> {
  const args = argv.slice(2);
  // Every --session on the line: given twice, it must name one session (the first was taken and the other was an
  // unknown option, or went unread where the command declares --session).
  const given: Array<{ at: number; width: number; value: string }> = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    // No session id or name starts with "-": `apex status --session --json` read --json as the session (exit 3, `No session
    // "--json"`), and a --session last on the line was an unknown option to the commands that do not declare it.
    if (arg === "--session" && (args[i + 1] === undefined || args[i + 1]!.startsWith("-"))) {
      throw new ApexError("APEX_E_USAGE", "option '--session <ID|NAME>' argument missing.", { hint: "Name the session after --session: its id, a unique prefix, its name, `last` or `current` (`apex session list`)." });
    }
    if (arg === "--session") given.push({ at: i, width: 2, value: args[++i]! });
    else if (arg.startsWith("--session=")) given.push({ at: i, width: 1, value: arg.slice("--session=".length) });
  }
  if (given.length === 0) return argv;
  let value = given[0]!.value;
  // Before the value is read: a command that takes no session refuses any, whatever it names (its help is shown).
  const words = commandWords(args);
  let command: Command | undefined = program;
  for (const word of words) command = command?.commands.find((sub) => sub.name() === word || sub.aliases().includes(word)) ?? command;
  const refused = wantsHelp(args) ? undefined : noSessionFlag(words);
  if (refused) {
    // The command as it was given (`apex config show`), a plugin's by the words that name it (`apex session import`).
    const named = command && command !== program && command.commands.length === 0 ? commandPathWords(command) : words.slice(0, NO_SESSION_FLAG[words.slice(0, 2).join(" ")] ? 2 : 1);
    throw new ApexError("APEX_E_USAGE", `--session ${value} does not work with \`apex ${named.join(" ")}\`: ${refused}.`, { hint: "Leave --session out." });
  }
  const others = [...new Set(given.map((flag) => flag.value))].filter((other) => other !== value);
  if (process.env.APEX_REMOTE) {
    // A remote command acts on the session of --remote HOST/SESSION, whatever else is named: say so rather than answer for it.
    // --session is read as locally (an id, a unique prefix, a name; `last` and `current`, the remote session): only the exact
    // text of --remote's session passed, and its prefix or name, which name the same session, were refused.
    const { remoteSessionFlag } = await import("./session-ref.js");
    value = await remoteSessionFlag(process.env.APEX_REMOTE, [value, ...others]);
  }
  // `last` and `current` stand for a session id, the same for every command and plugin: resolved here, once.
  const { resolveSessionWord } = await import("./session-ref.js");
  if (!process.env.APEX_REMOTE) {
    const first = value;
    value = await resolveSessionWord(value, args);
    for (const other of others) {
      if ((await resolveSessionWord(other, args)) === value) continue;
      throw new ApexError("APEX_E_USAGE", `--session was given twice, naming two sessions: ${first} and ${other}.`, {
        hint: `Name the session once: --session ${first} or --session ${other}.`,
        details: { sessions: [first, other] },
      });
    }
  }
  const { setSessionFlag } = await import("../core/session/binding.js");
  setSessionFlag(value);
  const declares = command !== program && command?.options.some((option) => option.long === "--session");
  const rest = args.filter((_arg, index) => !given.some((flag) => index >= flag.at && index < flag.at + flag.width));
  if (declares) {
    // Given to the command as its own option, wherever it stood on the line.
    const end = rest.indexOf("--");
    rest.splice(end < 0 ? rest.length : end, 0, "--session", value);
  }
  return [...argv.slice(0, 2), ...rest];
}

function checkRemoteCommand(words: string[]): void {
  if (words.length === 0) return;
  // A group alone (`apex memory`) is the usage error main gives it, with its help.
  if (words[1] === undefined ? Object.hasOwn(REMOTE_COMMANDS, words[0]!) : worksRemotely(words[0]!, words[1])) return;
  const list = Object.entries(REMOTE_COMMANDS)
    .filter(([name]) => name !== "help")
    .map(([name, subs]) => (subs === true ? name : `${name} ${subs.join("|")}`))
    .join(", ");
  throw new ApexError("APEX_E_USAGE", `\`apex ${words.join(" ")}\` does not work on a remote session (--remote / APEX_REMOTE).`, {
    hint: `Remote commands: ${list}.`,
  });
}

/**
 * Commander exits by itself on usage errors unless every (sub)command is told not to. With
 * --json it prints nothing of its own either: main() reports the error as JSON.
 */
function throwInsteadOfExit(command: Command, json = false): void {
  command.exitOverride();
  if (json) command.configureOutput({ ...command.configureOutput(), outputError: () => undefined }).showHelpAfterError(false);
  // Commander's own errors (a missing argument, an unknown option) in the form of every other error: error[APEX_E_USAGE]: …
  else command.configureOutput({ ...command.configureOutput(), outputError: (text, write) => write(text.replace(/^error: /, "error[APEX_E_USAGE]: ")) });
  for (const sub of command.commands) throwInsteadOfExit(sub, json);
}

/**
 * True when the command words do not name a core command: a plugin may provide it, either
 * at the top (`apex hello`) or inside a core group (`apex session cleanup`).
 */
export function needsPluginCommands(program: Command, argv: string[]): boolean {
  const words = commandWords(argv.slice(2));
  let current = program;
  for (const word of words) {
    if (word === "help") return false;
    const next = current.commands.find((command) => command.name() === word || command.aliases().includes(word));
    if (!next) return current.commands.length > 0;
    current = next;
  }
  return false;
}

/**
 * True for help on the program or a command group (`apex --help`, `apex session -h`,
 * `apex help session`): the groups plugins add to.
 */
export function wantsGroupHelp(program: Command, argv: string[]): boolean {
  const args = argv.slice(2);
  const words = commandWords(args);
  const asked = words[0] === "help" ? words.slice(1) : args.includes("--help") || args.includes("-h") ? words : undefined;
  if (!asked) return false;
  if (asked.length === 0) return true;
  const group = program.commands.find((command) => command.name() === asked[0]);
  return asked.length === 1 && group !== undefined && group.commands.length > 0;
}

/** The leading words of the command line that are not options (at most two levels deep). */
export function commandWords(args: string[], limit = 2): string[] {
  const words: string[] = [];
  for (let i = 0; i < args.length && words.length < limit; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg === "--config" || arg === "--remote" || arg === "--token" || arg === "--token-file" || arg === "--session") {
      i++;
      continue;
    }
    if (arg.startsWith("-")) {
      if (words.length > 0) break;
      continue;
    }
    words.push(arg);
  }
  return words;
}
