// Durations on the command line: option values (parseDurationOption) and how durations are printed (formatDuration), in the grammar of core/config/duration.ts.
import { ApexError } from "../core/errors.js";
import { DURATION_FORMS, isDuration, MAX_DURATION_SECONDS, MAX_DURATION_TEXT, parseDuration } from "../core/config/duration.js";

/**
 * A duration given as the value of a command-line option, in milliseconds. Anything else is
 * APEX_E_USAGE (exit 2) naming the option, with the corrected spelling when only case or
 * surrounding spaces were wrong ("30D" → "30d").
 */
export function parseDurationOption(text: unknown, option: string, { positive = false }: { positive?: boolean } = {}): number {
  const raw = typeof text === "number" ? String(text) : text;
  if (typeof raw === "string" && isDuration(raw)) {
    const ms = Math.round(parseDuration(raw) * 1000);
    if (ms > MAX_DURATION_SECONDS * 1000) throw new ApexError("APEX_E_USAGE", `${option}: ${JSON.stringify(raw)} is too long: it must be ${MAX_DURATION_TEXT}.`);
    if (positive && ms === 0) {
      // Above 0 but under half a millisecond, the unit it is kept in: it was said not to be above 0.
      if (parseDuration(raw) > 0) throw new ApexError("APEX_E_USAGE", `${option}: ${JSON.stringify(raw)} is shorter than the shortest duration it takes, 1 ms (0.001).`, { details: { option, value: raw, min_seconds: 0.001 } });
      throw new ApexError("APEX_E_USAGE", `${option}: Expected a duration above 0, got ${JSON.stringify(raw)}.`);
    }
    return ms;
  }
  const fixed = typeof raw === "string" ? raw.trim().toLowerCase() : "";
  const suggestion = fixed !== raw && isDuration(fixed) ? ` Did you mean "${fixed}"?` : "";
  throw new ApexError("APEX_E_USAGE", `${option}: Expected a duration, got ${JSON.stringify(raw ?? "")}.${suggestion}`, {
    hint: `A duration is a number of seconds or numbers with units: ${DURATION_FORMS}, "90min", "2 weeks" (units s, m/min, h/hr, d/days, w/weeks).`,
  });
}

/**
 * The help of an option that takes a duration: what it does (WHAT), then that its value is a duration, with
 * EXAMPLES in units, and that a number alone is seconds. Every such option says it so (`--timeout <seconds>`
 * said "stop after this many seconds", and nothing of `30s` or `5m`, which it takes).
 */
export function durationHelp(what: string, examples: string): string {
  return `${what}: a duration, e.g. ${examples} (a number alone is seconds; units s, m, h, d, w)`;
}

/** "30d", "12h", "1d12h", "0s": a duration in milliseconds, in days, hours, minutes and seconds. */
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
