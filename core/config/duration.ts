/**
 * Durations in apex.config.yaml: a number is seconds; a string is one or more
 * `<integer><unit>` parts with units s, m, h, d, w ("90s", "30m", "2h", "1d", "1h30m").
 * The schemas check the shape; this converts a checked value to seconds.
 */
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
const DURATION = /^(?:[0-9]+[smhdw])+$/;
const PART = /([0-9]+)([smhdw])/g;

export function isDuration(value: unknown): value is number | string {
  return (typeof value === "number" && Number.isFinite(value) && value >= 0) || (typeof value === "string" && DURATION.test(value));
}

/** Seconds in a duration ("2h" → 7200, 90 → 90). Throws a RangeError for anything else. */
export function parseDuration(value: number | string): number {
  if (!isDuration(value)) throw new RangeError(`Not a duration: ${JSON.stringify(value)} (expected seconds, or a string like "30m", "2h", "1d").`);
  if (typeof value === "number") return value;
  let seconds = 0;
  for (const [, amount, unit] of value.matchAll(PART)) seconds += Number(amount) * UNIT_SECONDS[unit!]!;
  return seconds;
}
