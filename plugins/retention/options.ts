import { parseDuration } from "../../core/config/duration.js";
import type { Config } from "../../core/config/types.js";
import { ApexError } from "../../core/errors.js";
import { keptTriggers, type RetentionPolicy, type RetentionRules } from "./policy.js";

/** Keep rules as apex.config.yaml gives them, for every trigger class or for one. */
export interface RetentionRuleOptions {
  keep_last?: number;
  keep_hourly?: number;
  keep_daily?: number;
  keep_weekly?: number;
  keep_monthly?: number;
  /** Seconds, or a duration string ("2d"). */
  keep_within?: number | string;
}

/** The plugin's options as apex.config.yaml gives them (schemas/plugins/retention.schema.json). */
export interface RetentionOptions extends RetentionRuleOptions {
  /** Rules for the checkpoints of one trigger, instead of the ones above. */
  by_trigger?: Record<string, RetentionRuleOptions>;
  /** Default true (the schema's default). */
  auto_cleanup?: boolean;
}

/** The policy the options and `session.max_checkpoints` describe. */
export function policyFromOptions(options: RetentionOptions, config: Pick<Config, "session"> | undefined): RetentionPolicy {
  const policy: RetentionPolicy = { ...rulesFromOptions(options, "plugins.retention"), maxCheckpoints: config?.session.max_checkpoints };
  if (options.by_trigger !== undefined) {
    policy.byTrigger = Object.fromEntries(
      Object.entries(options.by_trigger).map(([trigger, rules]) => [trigger, rulesFromOptions(rules ?? {}, `plugins.retention.by_trigger.${trigger}`)]),
    );
  }
  return policy;
}

function rulesFromOptions(options: RetentionRuleOptions, where: string): RetentionRules {
  const rules: RetentionRules = {
    keepLast: options.keep_last,
    keepHourly: options.keep_hourly,
    keepDaily: options.keep_daily,
    keepWeekly: options.keep_weekly,
    keepMonthly: options.keep_monthly,
  };
  if (options.keep_within !== undefined) {
    let seconds: number;
    try {
      seconds = parseDuration(options.keep_within);
    } catch (error) {
      throw new ApexError("APEX_E_PLUGIN_OPTIONS", `${where}.keep_within: ${(error as Error).message}`, { cause: error });
    }
    rules.keepWithinMs = seconds * 1000;
    rules.keepWithinLabel = typeof options.keep_within === "string" && !/^[0-9.]+$/.test(options.keep_within) ? options.keep_within : `${seconds}s`;
  }
  return rules;
}

/**
 * The policy without its rules: only the hard cap (what runs after each checkpoint when
 * auto_cleanup is off). The trigger classes keep their standing: a class kept whole stays
 * protected from the cap; one the user gave rules to does not.
 */
export function capOnly(policy: RetentionPolicy): RetentionPolicy {
  const byTrigger = policy.byTrigger && Object.fromEntries(Object.keys(policy.byTrigger).map((trigger) => [trigger, {}]));
  return { maxCheckpoints: policy.maxCheckpoints, ...(byTrigger ? { byTrigger } : {}) };
}

/**
 * The policy in the words of apex.config.yaml: "keep_last 5, keep_daily 7 per trigger;
 * manual, beforeRestore kept until deleted; max_checkpoints 100".
 */
export function describePolicy(policy: RetentionPolicy): string {
  const general = describeRules(policy);
  const parts = [general === undefined ? "no keep rules (every checkpoint is kept)" : `${general} per trigger`];
  for (const [trigger, rules] of Object.entries(policy.byTrigger ?? {})) parts.push(`${trigger}: ${describeRules(rules) ?? "every one kept"}`);
  const kept = keptTriggers(policy);
  if (kept.length > 0) parts.push(`${kept.join(", ")} kept until deleted`);
  if (policy.maxCheckpoints !== undefined) parts.push(`max_checkpoints ${policy.maxCheckpoints}`);
  return parts.join("; ");
}

function describeRules(rules: RetentionRules): string | undefined {
  const parts: string[] = [];
  const add = (name: string, value: number | string | undefined) => {
    if (value !== undefined && value !== 0) parts.push(`${name} ${value}`);
  };
  add("keep_last", rules.keepLast);
  add("keep_hourly", rules.keepHourly);
  add("keep_daily", rules.keepDaily);
  add("keep_weekly", rules.keepWeekly);
  add("keep_monthly", rules.keepMonthly);
  if (rules.keepWithinMs) add("keep_within", withinLabel(rules));
  return parts.length > 0 ? parts.join(", ") : undefined;
}

function withinLabel(rules: RetentionRules): string {
  return rules.keepWithinLabel ?? `${(rules.keepWithinMs ?? 0) / 1000}s`;
}

/** The rules as JSON output shows them, in config names. */
function rulesJson(rules: RetentionRules): Record<string, number | string | null> {
  return {
    keep_last: rules.keepLast ?? null,
    keep_hourly: rules.keepHourly ?? null,
    keep_daily: rules.keepDaily ?? null,
    keep_weekly: rules.keepWeekly ?? null,
    keep_monthly: rules.keepMonthly ?? null,
    keep_within: rules.keepWithinMs ? withinLabel(rules) : null,
  };
}

/** The policy as JSON output shows it, in config names. */
export function policyJson(policy: RetentionPolicy) {
  return {
    ...rulesJson(policy),
    by_trigger: Object.fromEntries(Object.entries(policy.byTrigger ?? {}).map(([trigger, rules]) => [trigger, rulesJson(rules)])),
    kept_until_deleted: keptTriggers(policy),
    max_checkpoints: policy.maxCheckpoints ?? null,
  };
}
