import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DURATION_PATTERN, isDuration, parseDuration } from "../core/config/duration.js";
import { formatDuration, parseDurationOption } from "../cli/durations.js";
import { seconds } from "../cli/option-values.js";
import { REPO_ROOT } from "./helpers/cli.js";

const MINUTE = 60;
const HOUR = 3600;
const DAY = 86_400;
const WEEK = 7 * DAY;

// One grammar for apex.config.yaml and the command line (issue 12).
const VALID: Array<[number | string, number]> = [
  [90, 90],
  ["90", 90],
  [0, 0],
  ["0", 0],
  [0.5, 0.5],
  ["0.5", 0.5],
  ["90s", 90],
  ["30m", 30 * MINUTE],
  ["2h30m", 2 * HOUR + 30 * MINUTE],
  ["1h 30m", HOUR + 30 * MINUTE],
  ["7d", 7 * DAY],
  ["30days", 30 * DAY],
  ["1day", DAY],
  ["4w", 4 * WEEK],
  ["2 weeks", 2 * WEEK],
  ["2wk", 2 * WEEK],
  ["90min", 90 * MINUTE],
  ["90 minutes", 90 * MINUTE],
  ["12hrs", 12 * HOUR],
  ["1hour", HOUR],
  ["45sec", 45],
  ["10 seconds", 10],
  ["1.5h", 1.5 * HOUR],
  ["1d12h", DAY + 12 * HOUR],
  ["1w2d3h4m5s", WEEK + 2 * DAY + 3 * HOUR + 4 * MINUTE + 5],
];

const INVALID: Array<unknown> = [
  "",
  " ",
  "-1",
  -1,
  "-1d",
  "d",
  "30x",
  "30D",
  "2 Hours",
  " 30m",
  "30m ",
  "1h  30m",
  "30days ago",
  "1d 2",
  "1.d",
  ".5h",
  "1e3",
  "1mo",
  "1y",
  "1ms",
  Number.NaN,
  Number.POSITIVE_INFINITY,
  null,
  true,
];

describe("the duration grammar", () => {
  it.each(VALID)("%j is %d seconds", (text, expected) => {
    expect(isDuration(text)).toBe(true);
    expect(parseDuration(text)).toBeCloseTo(expected, 9);
    expect(parseDurationOption(text, "--older-than")).toBe(Math.round(expected * 1000));
  });

  it.each(INVALID)("%j is not a duration", (text) => {
    expect(isDuration(text)).toBe(false);
    expect(() => parseDuration(text as string)).toThrow(RangeError);
    expect(() => parseDurationOption(text, "--older-than")).toThrow(expect.objectContaining({ code: "APEX_E_USAGE", exitCode: 2 }));
  });

  it("names the option and suggests the lowercase spelling", () => {
    expect(() => parseDurationOption("30D", "--older-than")).toThrow('--older-than: Expected a duration, got "30D". Did you mean "30d"?');
    expect(() => parseDurationOption("soon", "--older-than")).toThrow('--older-than: Expected a duration, got "soon".');
  });

  it("refuses 0 where a duration must be above 0", () => {
    expect(() => parseDurationOption("0", "--grace", { positive: true })).toThrow("--grace: Expected a duration above 0");
    expect(seconds("--grace")("90")).toBe(90);
    expect(seconds("--grace")("2m")).toBe(120);
    expect(seconds("--grace")("0.5")).toBe(0.5);
    expect(() => seconds("--grace")("0")).toThrow(expect.objectContaining({ code: "APEX_E_USAGE" }));
    // Above 0, but less than the millisecond it is kept in: said to be too short (it was said not to be above 0).
    expect(() => seconds("--timeout")("0.0001")).toThrow('--timeout: "0.0001" is shorter than the shortest duration it takes, 1 ms (0.001).');
    expect(seconds("--timeout")("0.001")).toBe(0.001);
  });

  it("formats milliseconds back in days, hours, minutes and seconds", () => {
    expect([0, 1000, 90_000, 5_400_000, 30 * DAY * 1000, (DAY + 12 * HOUR) * 1000].map(formatDuration)).toEqual(["0s", "1s", "1m30s", "1h30m", "30d", "1d12h"]);
  });
});

describe("every schema carries the grammar's pattern", () => {
  const files = ["schemas/apex.config.schema.json", ...readdirSync(join(REPO_ROOT, "schemas/plugins")).map((name) => `schemas/plugins/${name}`)];
  const withDuration = files.filter((file) => readFileSync(join(REPO_ROOT, file), "utf8").includes('"duration"'));

  it("in each schema that defines a duration", () => {
    expect(withDuration.length).toBeGreaterThanOrEqual(5);
    for (const file of withDuration) {
      const schema = JSON.parse(readFileSync(join(REPO_ROOT, file), "utf8")) as { definitions?: { duration?: { anyOf?: Array<{ type: string; pattern?: string }> } } };
      const forms = schema.definitions?.duration?.anyOf ?? [];
      expect(forms.find((form) => form.type === "string")?.pattern, file).toBe(DURATION_PATTERN);
      expect(forms.find((form) => form.type === "number"), file).toEqual({ type: "number", minimum: 0 });
    }
  });

  it("which accepts what the parser accepts, and nothing else", () => {
    const pattern = new RegExp(DURATION_PATTERN, "u");
    for (const [text] of VALID) if (typeof text === "string") expect(pattern.test(text), text).toBe(true);
    for (const text of INVALID) if (typeof text === "string") expect(pattern.test(text), text).toBe(false);
  });
});
