import { Command, CommanderError, Option } from "commander";
import { reportError } from "./output.js";
import { commandGroups } from "./commands.js";

export const VERSION = "0.1.0";

/** Builds the commander program with every core command group registered. */
export function buildProgram(): Command {
  const program = new Command("apex");
  program
    .description("APEX: supervised multi-agent development sessions with checkpoints, restore and plugins.")
    .version(VERSION, "-V, --version")
    .addOption(new Option("--config <path>", "use this apex.config.yaml (default: search upwards; env APEX_CONFIG)"))
    .showHelpAfterError("(run with --help for usage)")
    .configureHelp({ sortSubcommands: false, showGlobalOptions: true })
    .addHelpText(
      "after",
      `
Environment:
  APEX_CONFIG                path of apex.config.yaml (like --config)
  APEX_HOME                  store directory (default: .apex/ beside the config file)
  APEX_CHECKPOINT_INTERVAL   seconds between automatic checkpoints
  NO_COLOR                   disable colours

Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 not found, 4 conflict or refused.
Examples:
  apex start --task "Implement user authentication" --attach
  apex memory set /notes/today '{"todo": 3}'
  apex memory query '/notes/**' --json`,
    );
  for (const register of commandGroups) register(program);
  return program;
}

/** Runs the CLI and resolves to the process exit code; never throws. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  const json = argv.includes("--json");
  program.exitOverride();
  program.configureOutput({
    writeErr: (text) => process.stderr.write(text),
  });
  const finalizers: Array<() => Promise<void>> = [];
  try {
    if (argv === process.argv) {
      const { assertArgumentsUtf8 } = await import("./input-text.js");
      assertArgumentsUtf8(argv);
    }
    if (needsPluginCommands(program, argv)) {
      const { registerPluginCommands, closeAfterParse } = await import("./plugin-commands.js");
      await registerPluginCommands(program, argv);
      finalizers.push(() => Promise.all(closeAfterParse.map((close) => close())).then(() => undefined));
    }
    throwInsteadOfExit(program);
    await program.parseAsync(argv);
    for (const finalize of finalizers) await finalize();
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version" || error.code === "commander.help") return 0;
      // commander already printed its message; usage errors exit with 2
      return 2;
    }
    return reportError(error, json);
  }
}

/**
 * For the entry point: a promise that rejected with nobody waiting for it (a library's, or a
 * bug) is reported as an error like any other, without a stack trace, and the command fails.
 */
export function reportUnhandledRejection(reason: unknown): void {
  process.exitCode = Math.max(1, reportError(reason, process.argv.includes("--json")));
}

/** Commander exits by itself on usage errors unless every (sub)command is told not to. */
function throwInsteadOfExit(command: Command): void {
  command.exitOverride();
  for (const sub of command.commands) throwInsteadOfExit(sub);
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

/** The leading words of the command line that are not options (at most two levels deep). */
function commandWords(args: string[]): string[] {
  const words: string[] = [];
  for (let i = 0; i < args.length && words.length < 2; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg === "--config") {
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
