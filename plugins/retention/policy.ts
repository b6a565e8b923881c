/**
 * The retention policy as a pure function: which checkpoints of one session to keep, and why.
 *
 * Semantics follow restic's `forget` (internal/data/snapshot_policy.go, before restic 0.17
 * added "keep the oldest snapshot while counts remain"): checkpoints are sorted newest first;
 * each rule walks that list and keeps a checkpoint when it is the newest one of a period the
 * rule has not seen yet, until the rule's count is used up. Rules are ORed. Only periods that
 * hold a checkpoint use up a count, and a rule never reaches back to keep an older checkpoint
 * to fill unused counts: keep_daily 7 over checkpoints on 3 days keeps 3.
 *
 * Periods are calendar periods in UTC (see {@link RETENTION_TIME_ZONE}).
 *
 * The rules apply to each trigger class separately (a class is a trigger name: interval,
 * beforeTask, onError, …), so a burst of one kind cannot push out another: keep_last 5 keeps
 * the newest 5 beforeTask checkpoints and, besides them, the newest 5 interval ones. A class
 * may have its own rules (`byTrigger`). The classes a person or a restore made
 * ({@link KEPT_TRIGGERS}: manual checkpoints, and the state a restore replaced) are kept until
 * deleted, unless `byTrigger` gives them rules; the cap never removes them.
 */

/** The time zone of hourly, daily, weekly and monthly periods. */
export const RETENTION_TIME_ZONE = "UTC";

/** The keep rules of the policy, or of one trigger class. */
export interface RetentionRules {
  /** Keep the newest N checkpoints. */
  keepLast?: number | undefined;
  /** Keep the newest checkpoint of each of the newest N hours (UTC) that have one. */
  keepHourly?: number | undefined;
  keepDaily?: number | undefined;
  /** ISO 8601 weeks (Monday to Sunday, numbered within their ISO week-year). */
  keepWeekly?: number | undefined;
  keepMonthly?: number | undefined;
  /** Keep every checkpoint taken less than this many milliseconds before the newest one. */
  keepWithinMs?: number | undefined;
  /** How keep_within was written ("2d"), for reasons; default: the milliseconds in seconds. */
  keepWithinLabel?: string | undefined;
}

export interface RetentionPolicy extends RetentionRules {
  /**
   * Rules for the checkpoints of one trigger instead of the ones above; a class given here is
   * no longer kept whole when it is one of KEPT_TRIGGERS. `{}` (no rules) keeps all of its
   * checkpoints, though the cap may then remove them.
   */
  byTrigger?: Readonly<Record<string, RetentionRules>> | undefined;
  /**
   * Hard cap, applied after the rules: while more checkpoints are kept than this, the oldest
   * kept one that is not protected is removed. Protected checkpoints, and those of
   * KEPT_TRIGGERS even when byTrigger gives them rules, are never removed by it, so they alone
   * may exceed the cap.
   */
  maxCheckpoints?: number | undefined;
}

/**
 * Trigger classes kept until deleted while the policy has no byTrigger rules for them, with
 * the reason shown for them: checkpoints a person asked for (`apex checkpoint create`), and
 * the state a restore replaced (which may hold work nothing else has).
 */
export const KEPT_TRIGGERS: Readonly<Record<string, string>> = Object.freeze({ manual: "manual", beforeRestore: "before restore" });

/** One checkpoint as the policy sees it. */
export interface PolicyItem {
  id: string;
  /** What took it (its trigger class); items without one form a class of their own. */
  trigger?: string | undefined;
  /** When it was taken, in milliseconds since the epoch. NaN (unknown): always kept, never counted. */
  time: number;
  /** The per-session sequence number: orders checkpoints taken in the same millisecond, and names the latest. */
  sequence?: number | undefined;
  pinned?: boolean | undefined;
  /** Kept whatever the rules say: `true`, or the reason(s) why ("branch 1f2e…"). */
  protected?: boolean | string | readonly string[] | undefined;
}

export type BucketRule = "last" | "hourly" | "daily" | "weekly" | "monthly";
export const BUCKET_RULES: readonly BucketRule[] = ["last", "hourly", "daily", "weekly", "monthly"];

export interface PolicyDecision<T extends PolicyItem = PolicyItem> {
  item: T;
  keep: boolean;
  /**
   * Why it is kept: protections first ("pinned", "latest", "manual", "before restore",
   * "branch …", "base of …", "undated"), then the
   * rules that kept it ("last", "hourly", "daily", "weekly", "monthly", "within 2d"), or
   * "no rules" when the policy has none. For a checkpoint the cap removed: the rules that
   * would have kept it.
   */
  reasons: string[];
  /** Only for removed checkpoints: "rules" (no rule keeps it) or "cap" (over maxCheckpoints). */
  removedBy?: "rules" | "cap";
  /** True when pinned or protected: the cap never removes it. */
  protected: boolean;
}

export interface PolicyResult<T extends PolicyItem = PolicyItem> {
  /** Every item, newest first (undated ones last). */
  decisions: PolicyDecision<T>[];
  keep: T[];
  remove: T[];
  /** What keep_within was measured back from (ms), when the policy has keep_within. */
  withinAnchor: number | undefined;
  /** How many kept checkpoints are over maxCheckpoints because they are protected (0 normally). */
  overCap: number;
}

export interface ApplyOptions {
  /**
   * The current time (ms). Checkpoints dated after it (a clock that was ahead) are not taken
   * as the newest for keep_within, as restic does. Default: no such check.
   */
  now?: number | undefined;
}

/** True when the rules have at least one rule (keep_* > 0 or keep_within > 0). Without one, every checkpoint is kept. */
export function hasRules(rules: RetentionRules): boolean {
  return BUCKET_RULES.some((rule) => countOf(rules, rule) > 0) || (rules.keepWithinMs ?? 0) > 0;
}

/** The rules for one trigger class: its own, none when it is kept whole (undefined), else the policy's. */
export function rulesFor(policy: RetentionPolicy, trigger: string | undefined): RetentionRules | undefined {
  const key = trigger ?? "";
  if (policy.byTrigger && Object.hasOwn(policy.byTrigger, key)) return policy.byTrigger[key];
  if (Object.hasOwn(KEPT_TRIGGERS, key)) return undefined;
  return policy;
}

/** The trigger classes kept until deleted under this policy (KEPT_TRIGGERS without rules of their own). */
export function keptTriggers(policy: RetentionPolicy): string[] {
  return Object.keys(KEPT_TRIGGERS).filter((trigger) => rulesFor(policy, trigger) === undefined);
}

/** Per trigger class, while walking newest first: what each rule has left and the last period it kept. */
interface ClassState {
  rules: RetentionRules;
  remaining: Map<BucketRule, number>;
  lastBucket: Map<BucketRule, number>;
}

/** Decides, for the checkpoints of one session, which to keep and which to remove. */
export function applyPolicy<T extends PolicyItem>(items: readonly T[], policy: RetentionPolicy, options: ApplyOptions = {}): PolicyResult<T> {
  checkPolicy(policy);
  const indexed = items.map((item, index) => ({ item, index }));
  const dated = indexed.filter(({ item }) => Number.isFinite(item.time)).sort(newestFirst);
  const undated = indexed.filter(({ item }) => !Number.isFinite(item.time)).sort((a, b) => bySequence(a.item, b.item) || a.index - b.index);
  const latest = latestOf(items);

  const decisions: PolicyDecision<T>[] = [];
  const protectionsOf = (item: T): string[] => {
    const reasons: string[] = [];
    if (item.pinned) reasons.push("pinned");
    if (item === latest) reasons.push("latest");
    if (rulesFor(policy, item.trigger) === undefined) reasons.push(KEPT_TRIGGERS[item.trigger!]!);
    for (const reason of protectionReasons(item.protected)) if (!reasons.includes(reason)) reasons.push(reason);
    return reasons;
  };

  // keep_within counts back from the session's newest checkpoint, whichever class it is in.
  const anyWithin = [policy, ...Object.values(policy.byTrigger ?? {})].some((rules) => (rules.keepWithinMs ?? 0) > 0);
  const withinAnchor = anyWithin && dated.length > 0 ? anchorOf(dated.map(({ item }) => item.time), options.now) : undefined;
  const classes = new Map<string, ClassState | undefined>();
  const classOf = (item: T): ClassState | undefined => {
    const key = item.trigger ?? "";
    if (!classes.has(key)) {
      const rules = rulesFor(policy, item.trigger);
      classes.set(key, rules && { rules, remaining: new Map(BUCKET_RULES.map((rule) => [rule, countOf(rules, rule)])), lastBucket: new Map() });
    }
    return classes.get(key);
  };

  dated.forEach(({ item }, position) => {
    const protections = protectionsOf(item);
    const matched: string[] = [];
    const state = classOf(item);
    if (state) {
      const { rules, remaining, lastBucket } = state;
      for (const rule of BUCKET_RULES) {
        if (remaining.get(rule)! <= 0) continue;
        const bucket = rule === "last" ? position : periodIndex(rule, item.time);
        if (bucket === lastBucket.get(rule)) continue;
        lastBucket.set(rule, bucket);
        remaining.set(rule, remaining.get(rule)! - 1);
        matched.push(rule);
      }
      const withinMs = rules.keepWithinMs ?? 0;
      if (withinMs > 0 && withinAnchor !== undefined && item.time > withinAnchor - withinMs) {
        matched.push(`within ${rules.keepWithinLabel ?? `${withinMs / 1000}s`}`);
      }
      if (!hasRules(rules)) matched.push("no rules");
    }
    const reasons = [...protections, ...matched];
    const keep = reasons.length > 0;
    decisions.push({ item, keep, reasons, protected: protections.length > 0, ...(keep ? {} : { removedBy: "rules" as const }) });
  });
  for (const { item } of undated) {
    decisions.push({ item, keep: true, reasons: [...protectionsOf(item), "undated"], protected: true });
  }

  const overCap = applyCap(decisions, policy.maxCheckpoints);
  return {
    decisions,
    keep: decisions.filter((decision) => decision.keep).map((decision) => decision.item),
    remove: decisions.filter((decision) => !decision.keep).map((decision) => decision.item),
    withinAnchor,
    overCap,
  };
}

/** Removes the oldest unprotected kept checkpoints until at most `max` are kept; returns how many remain over it. */
function applyCap(decisions: PolicyDecision<PolicyItem>[], max: number | undefined): number {
  if (max === undefined) return 0;
  let kept = decisions.filter((decision) => decision.keep).length;
  // Decisions are newest first, so walking backwards meets the oldest first.
  for (let i = decisions.length - 1; i >= 0 && kept > max; i--) {
    const decision = decisions[i]!;
    // Manual and replaced-state checkpoints go only by their own rules (by_trigger), never by the cap.
    if (!decision.keep || decision.protected || Object.hasOwn(KEPT_TRIGGERS, decision.item.trigger ?? "")) continue;
    decision.keep = false;
    decision.removedBy = "cap";
    kept -= 1;
  }
  return Math.max(0, kept - max);
}

function checkPolicy(policy: RetentionPolicy): void {
  checkRules(policy, "");
  for (const [trigger, rules] of Object.entries(policy.byTrigger ?? {})) checkRules(rules, `byTrigger.${trigger}.`);
}

function checkRules(rules: RetentionRules, prefix: string): void {
  for (const [key, value] of Object.entries(rules)) {
    const name = `${prefix}${key}`;
    if (key === "keepWithinLabel" || key === "byTrigger" || value === undefined) continue;
    // Any whole count, however large: YAML reads keep_last: 99999999999999999999 as 1e20, beyond the
    // safe integers, and the config's schema takes it, so refusing it here failed every checkpoint.
    // So does keep_within: 1e308 (seconds), Infinity in milliseconds: it keeps every checkpoint.
    const valid = typeof value === "number" && value >= 0 && (key === "keepWithinMs" ? !Number.isNaN(value) : Number.isInteger(value));
    if (!valid) throw new RangeError(`Retention policy: ${name} must be a non-negative ${key === "keepWithinMs" ? "number" : "integer"} (got ${String(value)}).`);
  }
}

function countOf(policy: RetentionRules, rule: BucketRule): number {
  switch (rule) {
    case "last":
      return policy.keepLast ?? 0;
    case "hourly":
      return policy.keepHourly ?? 0;
    case "daily":
      return policy.keepDaily ?? 0;
    case "weekly":
      return policy.keepWeekly ?? 0;
    case "monthly":
      return policy.keepMonthly ?? 0;
  }
}

function protectionReasons(value: PolicyItem["protected"]): string[] {
  if (value === undefined || value === false) return [];
  if (value === true) return ["protected"];
  if (typeof value === "string") return value ? [value] : [];
  return value.filter((reason) => typeof reason === "string" && reason !== "");
}

function newestFirst<T extends PolicyItem>(a: { item: T; index: number }, b: { item: T; index: number }): number {
  return b.item.time - a.item.time || bySequence(a.item, b.item) || a.index - b.index;
}

/** Higher sequence first; items without one after those with one. */
function bySequence(a: PolicyItem, b: PolicyItem): number {
  return (b.sequence ?? -Infinity) - (a.sequence ?? -Infinity) || 0;
}

/** The latest checkpoint: the highest sequence number, or, without sequence numbers, the newest. */
function latestOf<T extends PolicyItem>(items: readonly T[]): T | undefined {
  let latest: T | undefined;
  for (const item of items) {
    if (latest === undefined) {
      latest = item;
      continue;
    }
    if (item.sequence !== undefined || latest.sequence !== undefined) {
      if ((item.sequence ?? -Infinity) > (latest.sequence ?? -Infinity)) latest = item;
    } else if (Number.isFinite(item.time) && !(item.time <= latest.time)) {
      latest = item;
    }
  }
  return latest;
}

/** The newest time not after `now` (a checkpoint from a clock that ran ahead does not count); the newest if all are. */
function anchorOf(times: number[], now: number | undefined): number {
  const candidates = now === undefined ? times : times.filter((time) => time <= now);
  return Math.max(...(candidates.length > 0 ? candidates : times));
}

// ---------------------------------------------------------------------------------------------
// Periods (UTC)

/** The period of a rule a time falls into: "2026-11-20 14", "2026-11-20", "2020-W53", "2026-11". */
export function bucketKey(rule: Exclude<BucketRule, "last">, time: number): string {
  const date = new Date(time);
  switch (rule) {
    case "hourly":
      return `${ymd(date)} ${pad(date.getUTCHours(), 2)}`;
    case "daily":
      return ymd(date);
    case "weekly":
      return isoWeek(time);
    case "monthly":
      return `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1, 2)}`;
  }
}

/**
 * The period of a rule a time falls into, as a number that orders and compares like
 * {@link bucketKey} (cheaper: no Date, no string, for each of thousands of checkpoints).
 * Weeks count from the Monday before the epoch (1970-01-01 was a Thursday), so they are ISO weeks.
 */
export function periodIndex(rule: Exclude<BucketRule, "last">, time: number): number {
  switch (rule) {
    case "hourly":
      return Math.floor(time / HOUR_MS);
    case "daily":
      return Math.floor(time / DAY_MS);
    case "weekly":
      return Math.floor((Math.floor(time / DAY_MS) + 3) / 7);
    case "monthly": {
      const date = new Date(time);
      return date.getUTCFullYear() * 12 + date.getUTCMonth();
    }
  }
}

/**
 * The ISO 8601 week of a time in UTC, as strftime's `%G-W%V`: weeks start on Monday, and week 1
 * is the week holding the year's first Thursday, so 2021-01-01 (a Friday) is in 2020-W53.
 */
export function isoWeek(time: number): string {
  const date = new Date(time);
  // Not Date.UTC(year, …): it reads years 0 to 99 as 1900 to 1999.
  const midnight = Math.floor(time / DAY_MS) * DAY_MS;
  const mondayBased = (date.getUTCDay() + 6) % 7;
  // The Thursday of the same week decides the week-year.
  const thursday = new Date(midnight + (3 - mondayBased) * DAY_MS);
  const weekYear = thursday.getUTCFullYear();
  const january1 = new Date(0);
  january1.setUTCFullYear(weekYear, 0, 1);
  const week = 1 + Math.floor((thursday.getTime() - january1.getTime()) / (7 * DAY_MS));
  return `${pad(weekYear, 4)}-W${pad(week, 2)}`;
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

function ymd(date: Date): string {
  return `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)}`;
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, "0");
}
