import { ApexError } from "../../core/errors.js";

/**
 * Durations given on the command line: one or more `<number><unit>` parts, units from
 * seconds to weeks, short or spelled out: "30d", "30days", "12h", "1h30m", "2 weeks",
 * "90min". A bare number is refused: "30" could mean seconds or days.
 */
const UNITS: ReadonlyMap<string, number> = new Map([
  ...["s", "sec", "secs", "second", "seconds"].map((unit): [string, number] => [unit, 1]),
  ...["m", "min", "mins", "minute", "minutes"].map((unit): [string, number] => [unit, 60]),
  ...["h", "hr", "hrs", "hour", "hours"].map((unit): [string, number] => [unit, 3600]),
  ...["d", "day", "days"].map((unit): [string, number] => [unit, 86_400]),
  ...["w", "wk", "wks", "week", "weeks"].map((unit): [string, number] => [unit, 604_800]),
]);
const PART = /(\d+(?:\.\d+)?)\s*([a-z]+)\s*/gy;

/** Milliseconds in a duration such as "30days"; throws APEX_E_USAGE (exit 2) for anything else. */
export function parseCliDuration(text: unknown, flag = "--older-than"): number {
  const value = typeof text === "string" ? text.trim().toLowerCase() : "";
  let seconds = 0;
  let parts = 0;
  PART.lastIndex = 0;
  let at = 0;
  if (value !== "") {
    for (let match = PART.exec(value); match; match = PART.exec(value)) {
      const unit = UNITS.get(match[2]!);
      if (unit === undefined) return invalid(text, flag, `unknown unit "${match[2]}"`);
      seconds += Number(match[1]) * unit;
      parts += 1;
      at = PART.lastIndex;
    }
  }
  if (parts === 0 || at !== value.length) return invalid(text, flag, /^\d+(\.\d+)?$/.test(value) ? "it has no unit" : undefined);
  const ms = Math.round(seconds * 1000);
  if (!Number.isSafeInteger(ms)) return invalid(text, flag, "it is too long");
  return ms;
}

function invalid(text: unknown, flag: string, why: string | undefined): never {
  throw new ApexError("APEX_E_USAGE", `Invalid duration ${JSON.stringify(text)} for ${flag}${why ? `: ${why}` : ""}.`, {
    hint: 'Give a number and a unit: "30d" or "30days", "12h", "90min", "2w", "1d12h" (units s, m/min, h, d/days, w/weeks).',
  });
}

/** "30d", "12h", "1d12h": a duration in days, hours, minutes and seconds. */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms / 1000);
  if (rest === 0) return "0s";
  let out = "";
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}
