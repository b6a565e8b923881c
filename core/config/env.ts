/** Settings the environment overrides, checked like the config file. */
import { isDuration, parseDuration } from "./duration.js";
import type { ConfigIssue } from "./types.js";

export const CHECKPOINT_INTERVAL_VARIABLE = "APEX_CHECKPOINT_INTERVAL";

/**
 * APEX_CHECKPOINT_INTERVAL: a duration of at least 1 second (seconds, or "5m" and the like: the
 * config's grammar) that overrides session.auto_checkpoint_interval, or 0, which turns interval
 * checkpoints off as 0 does in the config. Unset or empty means no override.
 */
export function checkpointIntervalFromEnv(env: NodeJS.ProcessEnv): { seconds?: number; issues: ConfigIssue[] } {
  const raw = env[CHECKPOINT_INTERVAL_VARIABLE];
  if (raw === undefined || raw.trim() === "") return { issues: [] };
  const text = raw.trim();
  const seconds = isDuration(text) ? parseDuration(text) : undefined;
  // At most the longest timer Node.js keeps (MAX_TIMER_SECONDS in plugins/config-ranges.ts): a longer one fires at once.
  if (seconds !== undefined && (seconds === 0 || (seconds >= 1 && seconds <= 2_147_483))) return { seconds, issues: [] };
  const expected = `0 (no interval checkpoints) or a duration of at least 1 second and at most 2147483 seconds (about 24 days), in seconds or with units such as "5m"`;
  const message = `must be ${expected} (got ${JSON.stringify(raw)}). It overrides session.auto_checkpoint_interval.`;
  return { issues: [{ file: "environment", line: 0, col: 0, path: CHECKPOINT_INTERVAL_VARIABLE, message, expected }] };
}
