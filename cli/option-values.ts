import { parseDurationOption } from "../core/config/duration.js";
import { ApexError } from "../core/errors.js";

/**
 * Parsers for commander options, each naming its option in the error (exit 2), so
 * `apex checkpoint list --limit 0` says which value is wrong.
 */

/** A whole number from `min` up (a page size takes 1: 0 would show nothing). */
export function wholeNumber(option: string, min = 0): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) {
      throw new ApexError("APEX_E_USAGE", `${option}: Expected a whole number ≥ ${min}, got ${JSON.stringify(text)}.`);
    }
    return value;
  };
}

/** A duration above 0 in the grammar of core/config/duration.ts ("90" is seconds, "2m", "1h30m"), as seconds. */
export function seconds(option: string): (text: string) => number {
  return (text) => parseDurationOption(text, option, { positive: true }) / 1000;
}
