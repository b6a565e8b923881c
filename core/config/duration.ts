/**
 * The one duration grammar of APEX, for apex.config.yaml and the command line alike:
 *
 *   duration := number                   seconds: 90, "90", "0.5"
 *             | part (" "? part)*        "30m", "2h30m", "7d", "30days", "4w", "1h 30m", "2 weeks"
 *   part     := number " "? unit
 *   number   := digits ("." digits)?
 *   unit     := s sec secs second seconds | m min mins minute minutes | h hr hrs hour hours
 *             | d day days | w wk wks week weeks
 *
 * Units are lowercase. The schemas (schemas/**\/*.schema.json, `definitions.duration`) carry
 * DURATION_PATTERN verbatim, so an editor, the config check and the CLI accept the same text;
 * a test keeps them equal. Hand-written rather than a library: `ms` and `parse-duration` read a
 * bare number as milliseconds and accept forms no JSON Schema pattern can mirror.
 */

const UNIT_NAMES: ReadonlyArray<readonly [seconds: number, names: readonly string[]]> = [
  [1, ["seconds", "second", "secs", "sec", "s"]],
  [60, ["minutes", "minute", "mins", "min", "m"]],
  [3600, ["hours", "hour", "hrs", "hr", "h"]],
  [86_400, ["days", "day", "d"]],
  [604_800, ["weeks", "week", "wks", "wk", "w"]],
];
const UNIT_SECONDS: ReadonlyMap<string, number> = new Map(UNIT_NAMES.flatMap(([seconds, names]) => names.map((name) => [name, seconds] as const)));

const NUMBER = "[0-9]+(?:\\.[0-9]+)?";
const UNIT = `(?:${UNIT_NAMES.flatMap(([, names]) => names).join("|")})`;
const PART = `${NUMBER} ?${UNIT}`;

/** The grammar as a JSON Schema `pattern` (ECMA-262, anchored). */
export const DURATION_PATTERN = `^(?:${NUMBER}|${PART}(?: ?${PART})*)$`;
const DURATION = new RegExp(DURATION_PATTERN);
const PARTS = new RegExp(`(${NUMBER}) ?(${UNIT})(?![a-z])`, "g");

/**
 * The longest duration APEX takes, in apex.config.yaml (plugins/config-ranges.ts) and on the command line alike: 36525
 * days, about 100 years. Longer ones (`older_than: 1e308`) were taken, then printed as "older than Infinityd", with a
 * cutoff in the year -271821.
 */
export const MAX_DURATION_SECONDS = 36_525 * 86_400;
export const MAX_DURATION_TEXT = 'at most 36525 days ("36525d", about 100 years)';

/** What a duration looks like, for messages. */
export const DURATION_FORMS = '90 (seconds), "30m", "2h30m", "7d", "30days", "4w"';

export function isDuration(value: unknown): value is number | string {
  return (typeof value === "number" && Number.isFinite(value) && value >= 0) || (typeof value === "string" && DURATION.test(value));
}

/** Seconds in a duration ("2h" → 7200, 90 → 90, "90" → 90). Throws a RangeError for anything else. */
export function parseDuration(value: number | string): number {
  if (!isDuration(value)) throw new RangeError(`Not a duration: ${JSON.stringify(value)} (expected ${DURATION_FORMS}).`);
  if (typeof value === "number") return value;
  if (/^[0-9.]+$/.test(value)) return Number(value);
  let seconds = 0;
  for (const [, amount, unit] of value.matchAll(PARTS)) seconds += Number(amount) * UNIT_SECONDS.get(unit!)!;
  return seconds;
}

