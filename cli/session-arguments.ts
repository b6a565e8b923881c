/**
 * The positional arguments that name the session a command acts on: `apex session history [id]`,
 * `session validate [id]`, a plugin's `{ syntax: "[id]", session: true }`. Each such command takes
 * `--session` too (every command does, main.ts): named both ways, the two must be one session.
 * The shared resolver in main.ts cannot tell a session from any other word on the line, so the
 * commands declare theirs here.
 */
import { createRequire } from "node:module";
import type { Argument as ArgumentType, Command } from "commander";
import { ApexError } from "../core/errors.js";

// commander as main.ts has it (required: the same module, not wrapped as an ES module again).
const { Argument } = createRequire(import.meta.url)("commander") as typeof import("commander");
const SESSION_ARGUMENTS = new WeakSet<ArgumentType>();

/** An argument (for commander's `addArgument`) that names the session the command acts on. */
export function sessionArgument(syntax: string, description: string): ArgumentType {
  const argument = new Argument(syntax, description);
  SESSION_ARGUMENTS.add(argument);
  return argument;
}

/**
 * Run before the command's action, with `--session`'s session (already resolved: main.ts). Its
 * session argument left out is that session (`apex session cleanup --session S` cleans up S, not
 * every session); one naming another session is a usage error, before anything is written (the
 * argument won, silently). `last` and `current` as the argument mean the session the command is
 * bound to, `--session`'s: never another.
 */
export async function reconcileSessionArguments(command: Command, flag: string, args: string[]): Promise<void> {
  for (const [index, argument] of command.registeredArguments.entries()) {
    if (!SESSION_ARGUMENTS.has(argument)) continue;
    const given = command.processedArgs[index] as unknown;
    if (given === undefined || given === "") {
      command.processedArgs[index] = flag;
      continue;
    }
    if (typeof given !== "string" || given === flag) continue;
    const { SESSION_WORDS, wholeSessionId } = await import("./session-ref.js");
    if (SESSION_WORDS.has(given)) continue;
    // Read as --session was (a prefix, a name: the whole id); through --remote neither is looked up here.
    const named = process.env.APEX_REMOTE ? given : await wholeSessionId(given, args);
    if (named === flag) continue;
    const line = commandPath(command);
    throw new ApexError("APEX_E_USAGE", `\`apex ${line}\` was given two sessions: ${given} as its ${argument.name().toUpperCase()} and ${flag} with --session.`, {
      hint: `Name the session once: \`apex ${line} ${given}\` or \`apex ${line} --session ${flag}\`.`,
      details: { argument: given, session: flag },
    });
  }
}

function commandPath(command: Command): string {
  const words: string[] = [];
  for (let current: Command | null = command; current?.parent; current = current.parent) words.unshift(current.name());
  return words.join(" ");
}
