import type { Command, Option } from "commander";
import { parseDurationOption } from "./durations.js";
import { ApexError } from "../core/errors.js";

/**
 * Parsers for commander options, each naming its option in the error (APEX_E_USAGE, exit 2), so
 * `apex checkpoint list --limit 0` says which value is wrong. Plugins that parse their own
 * option values (their options reach them as text) use {@link parseWholeNumber} the same way.
 */

export interface WholeNumberRange {
  /** The smallest value taken (a page size takes 1: 0 would show nothing). Default 0. */
  min?: number;
  /** The largest value taken. Default Number.MAX_SAFE_INTEGER: above it a number is no longer exact. */
  max?: number;
}

/**
 * A whole number written in decimal digits only, from `min` to `max`. Anything Number() would
 * also read is refused: "1e20" (past exact integers), "0x10", "1.0", " 5", "" (which is 0 to
 * Number()), so a value is taken exactly as typed or not at all.
 */
export function parseWholeNumber(text: unknown, option: string, { min = 0, max = Number.MAX_SAFE_INTEGER }: WholeNumberRange = {}): number {
  const shown = typeof text === "string" ? JSON.stringify(text) : String(text);
  const value = typeof text === "string" && /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    // Digits past the largest value (past exact integers, Number() rounds them) say what the largest is.
    const tooLarge = typeof text === "string" && /^[0-9]+$/.test(text) && value >= min;
    const range = tooLarge || max !== Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : `≥ ${min}`;
    throw new ApexError("APEX_E_USAGE", `${option}: Expected a whole number ${range}, got ${shown}.`, {
      hint: `Write it in digits, e.g. ${option} ${Math.max(min, Math.min(max, 20))}.`,
      details: { option, value: typeof text === "string" ? text : null, min, max },
    });
  }
  return value;
}

/** A commander parser for {@link parseWholeNumber}. */
export function wholeNumber(option: string, range: number | WholeNumberRange = {}): (text: string) => number {
  const bounds = typeof range === "number" ? { min: range } : range;
  return (text) => parseWholeNumber(text, option, bounds);
}

/**
 * A duration above 0 in the grammar of core/config/duration.ts ("90" is seconds, "2m", "1h30m"),
 * as seconds, at most `maxSeconds` when given.
 */
export function seconds(option: string, { maxSeconds }: { maxSeconds?: number } = {}): (text: string) => number {
  return (text) => {
    const value = parseDurationOption(text, option, { positive: true }) / 1000;
    if (maxSeconds !== undefined && value > maxSeconds) {
      throw new ApexError("APEX_E_USAGE", `${option}: ${JSON.stringify(text)} is longer than the longest allowed, ${maxSeconds} seconds.`, {
        details: { option, value: text, max_seconds: maxSeconds },
      });
    }
    return value;
  };
}

/**
 * Makes every option of `command` and its subcommands that takes a value refuse an empty or
 * blank one, as a usage error naming the option. Commander passes `--as ''` on as "", which
 * code reading `if (options.as)` would treat as if --as had not been given: silently doing
 * something else than asked. Called once on the whole program (plugins' commands included), so
 * no command has to remember it. Parsers the options already have run after the check.
 */
export function refuseBlankValues(command: Command): void {
  for (const option of command.options) {
    if (!option.required && !option.optional) continue; // a flag takes no value
    const parse = option.parseArg as ((value: string, previous: unknown) => unknown) | undefined;
    option.argParser((value: string, previous: unknown) => {
      if (value.trim() === "") throw blankValue(option, value, command);
      if (parse) return parse(value, previous);
      // commander concatenates a variadic option's values only when it has no parser of its own
      return option.variadic ? [...(Array.isArray(previous) && previous !== option.defaultValue ? previous : []), value] : value;
    });
  }
  // Likewise an argument given as '' (`apex session compress ''` compressed every session).
  // Variadic ones are passed through as they are (`apex git commit -m ''`).
  for (const argument of command.registeredArguments) {
    if (argument.variadic) continue;
    const parse = argument.parseArg as ((value: string, previous: unknown) => unknown) | undefined;
    argument.argParser((value: string, previous: unknown) => {
      if (value.trim() === "") {
        throw new ApexError("APEX_E_USAGE", `${argument.name().toUpperCase()}: Expected a value, got ${JSON.stringify(value)}.`, {
          // Left out, an optional argument does what the command's help says (`apex milestone` lists the milestones), not always a default.
          hint: argument.required ? `Run \`apex ${commandPath(command)} --help\` for what ${argument.name().toUpperCase()} is.` : `Give a value, or leave ${argument.name().toUpperCase()} out (\`apex ${commandPath(command)} --help\` says what that does).`,
          details: { argument: argument.name(), value },
        });
      }
      return parse ? parse(value, previous) : value;
    });
  }
  for (const sub of command.commands) refuseBlankValues(sub);
}

function commandPath(command: Command): string {
  const names: string[] = [];
  for (let at: Command | null = command; at?.parent; at = at.parent) names.unshift(at.name());
  return names.join(" ");
}

/**
 * The refusal of an empty value for `name` (an option of `command`, or a global flag read before
 * commander). Its hint offers leaving the option out only where that is allowed, and names a
 * default only where one is declared: `task fail --reason ''` was told to leave out the option
 * the command requires, and `start --continue ''` to leave it out "for its default", which
 * starts a new session instead.
 */
export function blankValue(option: Option | string, value: string, command?: Command): ApexError {
  const name = typeof option === "string" ? option : (option.long ?? option.flags);
  const help = command?.parent ? ` (\`apex ${commandPath(command)} --help\` says what ${typeof option !== "string" && option.mandatory ? "it takes" : "that does"})` : "";
  let hint = `Give a value, or leave ${name} out for its default.`;
  if (typeof option !== "string") {
    // Commander marks `--listen <host[:port]>` optional too (a '[' in its flags), but it needs its value: `--listen` alone is "argument missing".
    if (option.optional && !option.required) hint = `Give a value, or ${name} alone for its default.`;
    else if (option.mandatory) hint = `Give a value: ${name} is required${help}.`;
    else if (option.defaultValue === undefined && help) hint = `Give a value, or leave ${name} out${help}.`;
  }
  return new ApexError("APEX_E_USAGE", `${name}: Expected a value, got ${JSON.stringify(value)}.`, { hint, details: { option: name, value } });
}
