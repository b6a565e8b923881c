/** Settings the environment overrides, checked like the config file. */
import { isDuration, parseDuration } from "./duration.js";
import type { ConfigIssue } from "./types.js";

export const CHECKPOINT_INTERVAL_VARIABLE = "APEX_CHECKPOINT_INTERVAL";

/**
 * APEX_CHECKPOINT_INTERVAL: a positive whole number of seconds that overrides
 * session.auto_checkpoint_interval. Unset or empty means no override.
 */
export function checkpointIntervalFromEnv(env: NodeJS.ProcessEnv): { seconds?: number; issues: ConfigIssue[] } {
  const raw = env[CHECKPOINT_INTERVAL_VARIABLE];
  if (raw === undefined || raw.trim() === "") return { issues: [] };
  const text = raw.trim();
  if (/^[0-9]+$/.test(text) && Number(text) >= 1 && Number.isSafeInteger(Number(text))) return { seconds: Number(text), issues: [] };
  const expected = "a whole number of seconds ≥ 1";
  const seconds = isDuration(text) ? parseDuration(text) : undefined;
  const suggestion = seconds !== undefined && seconds >= 1 ? String(seconds) : undefined;
  let message = `must be ${expected} (got ${JSON.stringify(raw)}). It overrides session.auto_checkpoint_interval.`;
  if (suggestion) message += ` Did you mean "${suggestion}"?`;
  return {
    issues: [{ file: "environment", line: 0, col: 0, path: CHECKPOINT_INTERVAL_VARIABLE, message, expected, ...(suggestion ? { suggestion } : {}) }],
  };
}
