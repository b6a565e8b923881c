// What `apex memory watch --timeout` says of the time left, checked whatever the machine's load: a loaded one
// starts the watch's tries late, and the watch rightly says less is left (1.4 s, 0.8 s … of a --timeout of 2.5 s).
import { expect } from "vitest";

/** TEXT, matched as it is in a regular expression. */
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A line's "the --timeout ends the watch in N s" (or "now": 0), in seconds; undefined if it says no such thing. */
export function leftIn(line: string): number | undefined {
  const said = / the --timeout ends the watch (?:in (\d+(?:\.\d)?) s|now)\b/.exec(line);
  return said ? Number(said[1] ?? 0) : undefined;
}

/**
 * The first warning of a watch whose --timeout is TIMEOUT seconds, checked whatever the machine's load (a loaded one
 * starts the watch's tries late and rightly says less is left): what is left is a time no more than the --timeout, and
 * the plan it says fits it: tries every second (RETRYING, ending with that time) only with more than a second left, the
 * watch's end alone with a second or less (a try promised past the --timeout). Returns the time it said was left.
 */
export function firstPlan(line: string | undefined, before: string, retrying: string, timeout: number): number {
  const left = leftIn(line ?? "");
  expect(left, line).toBeDefined();
  expect(left, line).toBeLessThanOrEqual(timeout);
  const plan = left! > 1 ? `${escape(retrying)} the --timeout ends the watch in \\d+(\\.\\d)? s` : "the --timeout ends the watch (in 0(\\.\\d)? s|in 1 s|now)";
  expect(line).toMatch(new RegExp(`^${escape(before)} ${plan} \\(Ctrl-C ends\\)\\.$`));
  return left!;
}

/**
 * The warnings a remote watch gives at each try after its first (WAITS), the server out of reach (WHY: how, as the
 * first warning said it), when its next wait would pass the --timeout: each says the watch's end instead, in no more
 * time than the line before said was left; the first of them a whole second after the first warning (FIRST: what it
 * said was left), whose wait was a second. How many there are is the load's: none when the --timeout passed before
 * the second try failed.
 */
export function expectWatchEnds(waits: string[], why: string, first: number): void {
  let before = first;
  for (const line of waits) {
    expect(line).toMatch(new RegExp(`^warning: the server has not answered for \\d+(\\.\\d)? s \\(${escape(why)}\\); the --timeout ends the watch (in \\d+(\\.\\d)? s|now)\\.$`));
    const left = leftIn(line)!;
    // A tenth of a second's rounding aside.
    expect(left, line).toBeLessThanOrEqual(before === first && first > 1 ? Math.max(0, first - 0.9) : before);
    before = left;
  }
}
