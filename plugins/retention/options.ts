import { parseDuration } from "../../core/config/duration.js";
import type { Config } from "../../core/config/types.js";
import { ApexError } from "../../core/errors.js";
import type { RetentionPolicy } from "./policy.js";

/** The plugin's options as apex.config.yaml gives them (schemas/plugins/retention.schema.json). */
export interface RetentionOptions {
  keep_last?: number;
  keep_hourly?: number;
  keep_daily?: number;
  keep_weekly?: number;
  keep_monthly?: number;
  /** Seconds, or a duration string ("2d"). */
  keep_within?: number | string;
  auto_cleanup?: boolean;
}

/** The policy the options and `session.max_checkpoints` describe. */
export function policyFromOptions(options: RetentionOptions, config: Pick<Config, "session"> | undefined): RetentionPolicy {
  const policy: RetentionPolicy = {
    keepLast: options.keep_last,
    keepHourly: options.keep_hourly,
    keepDaily: options.keep_daily,
    keepWeekly: options.keep_weekly,
    keepMonthly: options.keep_monthly,
    maxCheckpoints: config?.session.max_checkpoints,
  };
  if (options.keep_within !== undefined) {
    let seconds: number;
    try {
      seconds = parseDuration(options.keep_within);
    } catch (error) {
      throw new ApexError("APEX_E_PLUGIN_OPTIONS", `plugins.retention.keep_within: ${(error as Error).message}`, { cause: error });
    }
    policy.keepWithinMs = seconds * 1000;
    policy.keepWithinLabel = typeof options.keep_within === "string" ? options.keep_within : `${options.keep_within}s`;
  }
  return policy;
}

/** The policy without its rules: only the hard cap (what runs after each checkpoint when auto_cleanup is off). */
export function capOnly(policy: RetentionPolicy): RetentionPolicy {
  return { maxCheckpoints: policy.maxCheckpoints };
}

/** The policy in the words of apex.config.yaml: "keep_last 5, keep_daily 7, max_checkpoints 100". */
export function describePolicy(policy: RetentionPolicy): string {
  const parts: string[] = [];
  const add = (name: string, value: number | string | undefined) => {
    if (value !== undefined && value !== 0) parts.push(`${name} ${value}`);
  };
  add("keep_last", policy.keepLast);
  add("keep_hourly", policy.keepHourly);
  add("keep_daily", policy.keepDaily);
  add("keep_weekly", policy.keepWeekly);
  add("keep_monthly", policy.keepMonthly);
  if (policy.keepWithinMs) add("keep_within", policy.keepWithinLabel ?? `${policy.keepWithinMs / 1000}s`);
  if (parts.length === 0) parts.push("no keep rules (every checkpoint is kept)");
  if (policy.maxCheckpoints !== undefined) parts.push(`max_checkpoints ${policy.maxCheckpoints}`);
  return parts.join(", ");
}

/** The policy as JSON output shows it, in config names. */
export function policyJson(policy: RetentionPolicy): Record<string, number | string | null> {
  return {
    keep_last: policy.keepLast ?? null,
    keep_hourly: policy.keepHourly ?? null,
    keep_daily: policy.keepDaily ?? null,
    keep_weekly: policy.keepWeekly ?? null,
    keep_monthly: policy.keepMonthly ?? null,
    keep_within: policy.keepWithinMs ? (policy.keepWithinLabel ?? `${policy.keepWithinMs / 1000}s`) : null,
    max_checkpoints: policy.maxCheckpoints ?? null,
  };
}
