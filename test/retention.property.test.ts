import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import { createCheckpoint, pinCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { previewRetention } from "../plugins/retention/cleanup.js";
import { policyFromOptions, type RetentionOptions, type RetentionRuleOptions } from "../plugins/retention/options.js";
import { applyPolicy, bucketKey, periodIndex, RETENTION_TIME_ZONE, type PolicyItem, type RetentionPolicy, type RetentionRules } from "../plugins/retention/policy.js";
import { random, runApex, tempDir } from "./helpers/cli.js";

/**
 * Retention against a reference model written from the README's description of the policy
 * (restic's `forget`, with APEX's own choices: rules per trigger class, calendar periods in
 * UTC, keep_within back from the newest checkpoint not in the future, protections, the cap),
 * on seeded random histories and policies: in the policy function for many cases, and through
 * `apex session cleanup --dry-run --json` for a few.
 */

// ---------------------------------------------------------------------------------------------
// The reference model

type Rule = "hourly" | "daily" | "weekly" | "monthly";

interface ModelDecision {
  id: string;
  keep: boolean;
  reasons: string[];
  removedBy?: "rules" | "cap";
  protected: boolean;
}

interface ModelResult {
  decisions: ModelDecision[];
  withinAnchor: number | undefined;
  overCap: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** The calendar fields of a time in a time zone, read through Intl (not the code's arithmetic). */
function calendar(time: number, timeZone: string): { year: number; month: number; day: number; hour: number; weekday: number } {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", { timeZone, year: "numeric", month: "numeric", day: "numeric", hour: "numeric", hourCycle: "h23", weekday: "short", era: "short" });
    formatters.set(timeZone, format);
  }
  const parts = Object.fromEntries(format.formatToParts(new Date(time)).map((part) => [part.type, part.value]));
  const era = parts.era === "BC" ? -1 : 1;
  const year = era === 1 ? Number(parts.year) : 1 - Number(parts.year);
  const weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].indexOf(parts.weekday!) + 1;
  return { year, month: Number(parts.month), day: Number(parts.day), hour: Number(parts.hour), weekday };
}

/** Days since 1970-01-01 of a calendar date (proleptic Gregorian). */
function dayNumber(year: number, month: number, day: number): number {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return Math.round(date.getTime() / 86_400_000);
}

/** ISO 8601 week: week 1 of year Y starts on the Monday of the week holding January 4. */
function isoWeekOf(year: number, month: number, day: number): string {
  const today = dayNumber(year, month, day);
  const week1Monday = (y: number) => {
    const jan4 = dayNumber(y, 1, 4);
    const weekday = ((((jan4 + 3) % 7) + 7) % 7) + 1; // 1970-01-01 (day 0) was a Thursday (4)
    return jan4 - (weekday - 1);
  };
  let weekYear = year;
  if (today >= week1Monday(year + 1)) weekYear = year + 1;
  else if (today < week1Monday(year)) weekYear = year - 1;
  const week = Math.floor((today - week1Monday(weekYear)) / 7) + 1;
  return `${weekYear}-W${week}`;
}

function periodOf(rule: Rule, time: number, timeZone: string): string {
  const { year, month, day, hour } = calendar(time, timeZone);
  switch (rule) {
    case "hourly":
      return `${year}-${month}-${day} ${hour}`;
    case "daily":
      return `${year}-${month}-${day}`;
    case "weekly":
      return isoWeekOf(year, month, day);
    case "monthly":
      return `${year}-${month}`;
  }
}

const KEPT_WHOLE: Record<string, string> = { manual: "manual", beforeRestore: "before restore" };
const COUNTS: Array<["last" | Rule, keyof RetentionRules]> = [
  ["last", "keepLast"],
  ["hourly", "keepHourly"],
  ["daily", "keepDaily"],
  ["weekly", "keepWeekly"],
  ["monthly", "keepMonthly"],
];

function modelRulesFor(policy: RetentionPolicy, trigger: string): RetentionRules | undefined {
  if (policy.byTrigger && Object.keys(policy.byTrigger).includes(trigger)) return policy.byTrigger[trigger];
  if (Object.keys(KEPT_WHOLE).includes(trigger)) return undefined;
  return policy;
}

/** Newer first: later time, then the higher sequence number. */
function newer(a: PolicyItem, b: PolicyItem): number {
  return b.time - a.time || (b.sequence ?? -Infinity) - (a.sequence ?? -Infinity);
}

function model(items: readonly PolicyItem[], policy: RetentionPolicy, now: number | undefined, timeZone = RETENTION_TIME_ZONE): ModelResult {
  const dated = items.filter((item) => Number.isFinite(item.time)).sort(newer);
  const undated = items.filter((item) => !Number.isFinite(item.time)).sort((a, b) => (b.sequence ?? -Infinity) - (a.sequence ?? -Infinity));
  // The latest checkpoint: the highest sequence number (every generated history has them).
  const latest = items.reduce<PolicyItem | undefined>((best, item) => (best === undefined || item.sequence! > best.sequence! ? item : best), undefined);

  // keep_within: back from the session's newest checkpoint, not counting one dated after now (unless all are).
  const hasWithin = [policy, ...Object.values(policy.byTrigger ?? {})].some((rules) => (rules.keepWithinMs ?? 0) > 0);
  const notFuture = dated.filter((item) => now === undefined || item.time <= now);
  const anchorFrom = notFuture.length > 0 ? notFuture : dated;
  const withinAnchor = hasWithin && dated.length > 0 ? anchorFrom[0]!.time : undefined;

  const ruleReasons = new Map<PolicyItem, string[]>();
  for (const item of dated) ruleReasons.set(item, []);
  const classes = new Set(dated.map((item) => item.trigger ?? ""));
  for (const trigger of classes) {
    const rules = modelRulesFor(policy, trigger);
    if (rules === undefined) continue;
    const members = dated.filter((item) => (item.trigger ?? "") === trigger);
    const anyRule = COUNTS.some(([, key]) => ((rules[key] as number | undefined) ?? 0) > 0) || (rules.keepWithinMs ?? 0) > 0;
    for (const [rule, key] of COUNTS) {
      const count = (rules[key] as number | undefined) ?? 0;
      if (count <= 0) continue;
      if (rule === "last") {
        for (const item of members.slice(0, count)) ruleReasons.get(item)!.push("last");
        continue;
      }
      // The newest checkpoint of each of the newest `count` periods that hold one.
      const newestOfPeriod = new Map<string, PolicyItem>();
      for (const item of members) {
        const period = periodOf(rule, item.time, timeZone);
        if (!newestOfPeriod.has(period)) newestOfPeriod.set(period, item);
      }
      const periods = [...newestOfPeriod.values()].sort(newer).slice(0, count);
      for (const item of periods) ruleReasons.get(item)!.push(rule);
    }
    const within = rules.keepWithinMs ?? 0;
    for (const item of members) {
      if (within > 0 && withinAnchor !== undefined && item.time > withinAnchor - within) ruleReasons.get(item)!.push(`within ${rules.keepWithinLabel ?? `${within / 1000}s`}`);
      if (!anyRule) ruleReasons.get(item)!.push("no rules");
    }
  }

  const protections = (item: PolicyItem): string[] => {
    const reasons: string[] = [];
    if (item.pinned) reasons.push("pinned");
    if (item === latest) reasons.push("latest");
    const trigger = item.trigger ?? "";
    if (modelRulesFor(policy, trigger) === undefined) reasons.push(KEPT_WHOLE[trigger]!);
    const given = item.protected === true ? ["protected"] : typeof item.protected === "string" ? [item.protected] : Array.isArray(item.protected) ? item.protected : [];
    for (const reason of given) if (reason !== "" && !reasons.includes(reason)) reasons.push(reason);
    return reasons;
  };

  const decisions: ModelDecision[] = [];
  for (const item of dated) {
    const guarded = protections(item);
    const reasons = [...guarded, ...ruleReasons.get(item)!];
    decisions.push({ id: item.id, keep: reasons.length > 0, reasons, protected: guarded.length > 0, ...(reasons.length > 0 ? {} : { removedBy: "rules" as const }) });
  }
  for (const item of undated) decisions.push({ id: item.id, keep: true, reasons: [...protections(item), "undated"], protected: true });

  // The cap: the oldest kept checkpoints that are neither protected nor of a kept-whole trigger go first.
  let overCap = 0;
  if (policy.maxCheckpoints !== undefined) {
    const byId = new Map(items.map((item) => [item.id, item]));
    const removable = decisions.filter((decision) => decision.keep && !decision.protected && !Object.keys(KEPT_WHOLE).includes(byId.get(decision.id)!.trigger ?? ""));
    const kept = decisions.filter((decision) => decision.keep).length;
    const excess = Math.max(0, kept - policy.maxCheckpoints);
    for (const decision of removable.reverse().slice(0, excess)) {
      decision.keep = false;
      decision.removedBy = "cap";
    }
    overCap = Math.max(0, kept - Math.min(excess, removable.length) - policy.maxCheckpoints);
  }
  return { decisions, withinAnchor, overCap };
}

// ---------------------------------------------------------------------------------------------
// Generators

const DAY = 86_400_000;
const HOUR = 3_600_000;
/** Instants near which calendar periods turn: month and year ends, ISO week-years, leap days, DST changes elsewhere, the epoch. */
const ANCHORS = [
  "2020-12-31T23:30:00Z", // Thursday; ISO 2020 has 53 weeks
  "2021-01-03T23:59:00Z",
  "2024-02-29T12:00:00Z",
  "2024-12-29T22:00:00Z", // a Sunday before 2025-W01 starts in December
  "2026-03-08T07:00:00Z", // America/New_York springs forward
  "2026-03-29T01:00:00Z", // Europe/Berlin springs forward
  "2026-10-25T01:00:00Z", // Europe/Berlin falls back
  "2026-11-01T06:00:00Z", // America/New_York falls back
  "2026-11-30T23:59:59Z",
  "2026-12-31T23:00:00Z",
  "1970-01-01T00:00:00Z",
].map((text) => Date.parse(text));

const TRIGGERS = ["interval", "beforeTask", "onError", "manual", "beforeRestore", "afterMilestone", "toString"];
/** The ends of what a Date holds, and years before the epoch and before 100 (two-digit years in Date.UTC). */
const FAR = ["-000001-12-31T23:00:00Z", "0001-01-01T00:00:00Z", "0099-12-31T23:59:59Z", "1969-12-29T00:00:00Z", "+275760-09-12T23:00:00Z"].map((text) => Date.parse(text));

function pick<T>(rand: () => number, list: readonly T[]): T {
  return list[Math.floor(rand() * list.length)]!;
}

function int(rand: () => number, low: number, high: number): number {
  return low + Math.floor(rand() * (high - low + 1));
}

/** Times of a history: a few clusters (seconds to days apart) near period boundaries, some repeated exactly, some far apart. */
function historyTimes(rand: () => number, count: number, base = pick(rand, ANCHORS)): number[] {
  const times: number[] = [];
  const spans = [60_000, 10 * 60_000, HOUR, 6 * HOUR, DAY, 3 * DAY, 10 * DAY, 45 * DAY];
  let center = base;
  while (times.length < count) {
    if (rand() < 0.25) center = base + Math.round((rand() - 0.6) * pick(rand, spans) * 8);
    const offset = Math.round((rand() - 0.5) * pick(rand, spans));
    const time = times.length > 0 && rand() < 0.12 ? pick(rand, times) : center + offset;
    times.push(time);
  }
  return times;
}

/** Gaps between checkpoint times, so that keep_within sometimes ends exactly on one. */
let gaps: number[] = [];

function randomRules(rand: () => number): RetentionRules {
  const count = () => (rand() < 0.45 ? undefined : rand() < 0.1 ? 0 : rand() < 0.05 ? 1e6 : int(rand, 1, 6));
  const rules: RetentionRules = { keepLast: count(), keepHourly: count(), keepDaily: count(), keepWeekly: count(), keepMonthly: count() };
  if (rand() < 0.35) {
    const seconds = gaps.length > 0 && rand() < 0.4 ? pick(rand, gaps) / 1000 : pick(rand, [90, 1800, 3600, 36 * 3600, 2 * 86_400, 10 * 86_400, 0.5, 0]);
    rules.keepWithinMs = seconds * 1000;
    if (rand() < 0.5) rules.keepWithinLabel = `${seconds}s`;
  }
  if (rand() < 0.03) rules.keepWithinMs = Infinity;
  return rules;
}

function randomPolicy(rand: () => number): RetentionPolicy {
  const policy: RetentionPolicy = randomRules(rand);
  if (rand() < 0.4) {
    const byTrigger: Record<string, RetentionRules> = {};
    policy.byTrigger = byTrigger;
    for (const trigger of TRIGGERS) if (rand() < 0.3) byTrigger[trigger] = rand() < 0.2 ? {} : randomRules(rand);
  }
  if (rand() < 0.5) policy.maxCheckpoints = int(rand, 0, 25);
  return policy;
}

function randomItems(rand: () => number): PolicyItem[] {
  const count = int(rand, 0, 40);
  const times = historyTimes(rand, count);
  // Sequence numbers in taking order; a clock that jumped back makes them disagree with the times.
  const order = times.map((time, index) => ({ time, index, key: time + (rand() < 0.15 ? (rand() - 0.5) * 20 * DAY : 0) }));
  order.sort((a, b) => a.key - b.key || a.index - b.index);
  const sequences = new Map(order.map((entry, position) => [entry.index, position + 1]));
  return times.map((time, index) => {
    const item: PolicyItem = {
      id: `c${String(index).padStart(2, "0")}`,
      trigger: rand() < 0.05 ? undefined : pick(rand, TRIGGERS.slice(0, rand() < 0.5 ? 2 : TRIGGERS.length)),
      time: rand() < 0.03 ? NaN : rand() < 0.02 ? pick(rand, FAR) : time,
      sequence: sequences.get(index)!,
    };
    if (rand() < 0.08) item.pinned = true;
    if (rand() < 0.05) item.protected = pick(rand, [true, "branch s-x", ["merged into s-y", "in use: restore"], "", ["", "base of s-z"]] as const);
    return item;
  });
}

/** APEX's decisions in the model's shape. */
function actual(items: readonly PolicyItem[], policy: RetentionPolicy, now: number | undefined): ModelResult {
  const result = applyPolicy(items, policy, now === undefined ? {} : { now });
  return {
    decisions: result.decisions.map((decision) => ({
      id: decision.item.id,
      keep: decision.keep,
      reasons: decision.reasons,
      ...(decision.removedBy ? { removedBy: decision.removedBy } : {}),
      protected: decision.protected,
    })),
    withinAnchor: result.withinAnchor,
    overCap: result.overCap,
  };
}

// ---------------------------------------------------------------------------------------------

describe("retention against a reference model", () => {
  it("the model reads periods as the README describes them (UTC, ISO weeks)", () => {
    const at = (text: string) => Date.parse(text);
    expect(periodOf("weekly", at("2021-01-01T00:00:00Z"), "UTC")).toBe("2020-W53");
    expect(periodOf("weekly", at("2021-01-04T00:00:00Z"), "UTC")).toBe("2021-W1");
    expect(periodOf("weekly", at("2024-12-30T08:00:00Z"), "UTC")).toBe("2025-W1");
    expect(periodOf("weekly", at("1969-12-28T12:00:00Z"), "UTC")).toBe("1969-W52");
    expect(periodOf("daily", at("2026-03-29T23:30:00Z"), "UTC")).toBe("2026-3-29");
    expect(periodOf("hourly", at("2026-10-25T01:30:00Z"), "UTC")).toBe("2026-10-25 1");
    // The model itself takes a zone with DST: Berlin's fall-back hour is two hours of the same local day.
    expect(periodOf("daily", at("2026-10-24T22:30:00Z"), "Europe/Berlin")).toBe("2026-10-25");
    expect(periodOf("hourly", at("2026-10-25T00:30:00Z"), "Europe/Berlin")).toBe(periodOf("hourly", at("2026-10-25T01:30:00Z"), "Europe/Berlin"));
  });

  it("applyPolicy agrees with the model on random histories and policies", () => {
    const cases = 1500;
    for (let seed = 1; seed <= cases; seed++) {
      const rand = random(seed);
      const items = randomItems(rand);
      const times = items.map((item) => item.time).filter(Number.isFinite);
      gaps = times.length > 0 ? times.map((time) => Math.max(...times) - time).filter((gap) => gap > 0) : [];
      const policy = randomPolicy(rand);
      // Now: none, after everything, or among the checkpoints (some are then in the future).
      const now = rand() < 0.2 || times.length === 0 ? undefined : rand() < 0.5 ? Math.max(...times) + HOUR : pick(rand, times) + int(rand, -1, 1) * 1000;
      const expected = model(items, policy, now);
      const got = actual(items, policy, now);
      expect(got, `seed ${seed}: ${JSON.stringify({ policy, now, items })}`).toEqual(expected);
      if (seed % 5 !== 0) continue;
      // The period names (bucketKey) and numbers (periodIndex) split times as the model's calendar does.
      const sorted = times.sort((a, b) => a - b);
      for (let i = 1; i < sorted.length; i++) {
        const [a, b] = [sorted[i - 1]!, sorted[i]!];
        for (const rule of ["hourly", "daily", "weekly", "monthly"] as const) {
          const same = periodOf(rule, a, "UTC") === periodOf(rule, b, "UTC");
          expect(bucketKey(rule, a) === bucketKey(rule, b), `${rule} ${a} ${b}`).toBe(same);
          expect(periodIndex(rule, a) === periodIndex(rule, b), `${rule} ${a} ${b}`).toBe(same);
        }
        expect(bucketKey("weekly", b).replace(/-W0?/, "-W").replace(/^(-?)0+(?=\d)/, "$1"), `${b}`).toBe(periodOf("weekly", b, "UTC"));
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// End to end

function yamlRules(rules: RetentionRuleOptions, indent: string): string {
  const keys = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_within"];
  return Object.entries(rules)
    .filter(([key, value]) => keys.includes(key) && value !== undefined)
    .map(([key, value]) => `${indent}${key}: ${typeof value === "string" ? JSON.stringify(value) : value}\n`)
    .join("");
}

function randomRuleOptions(rand: () => number): RetentionRuleOptions {
  const options: RetentionRuleOptions = {};
  for (const key of ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"] as const) if (rand() < 0.55) options[key] = int(rand, 1, 5);
  if (rand() < 0.4) options.keep_within = pick(rand, ["36h", "2d", 5400, "1h 30m", "3days"]);
  return options;
}

describe("retention against a reference model (end to end)", () => {
  it.each([
    [11, "UTC", "2026-11-30T23:59:59Z"],
    [12, "Europe/Berlin", "2026-10-25T01:00:00Z"],
    [13, "America/New_York", "2026-11-01T06:00:00Z"],
  ])("session cleanup --dry-run --json agrees with the model (seed %i, TZ=%s)", async (seed, zone, around) => {
    const { dir, cleanup } = tempDir("apex-retention-prop-");
    try {
      const rand = random(seed * 7919);
      const options: RetentionOptions = { ...randomRuleOptions(rand), auto_cleanup: false };
      options.by_trigger = { beforeTask: randomRuleOptions(rand), ...(rand() < 0.7 ? { manual: { keep_last: 1 } } : {}) };
      const maxCheckpoints = int(rand, 8, 20);
      let yaml = `session:\n  max_checkpoints: ${maxCheckpoints}\nplugins:\n  retention:\n${yamlRules(options, "    ")}    auto_cleanup: false\n    by_trigger:\n`;
      for (const [trigger, rules] of Object.entries(options.by_trigger)) yaml += `      ${trigger}:\n${yamlRules(rules, "        ") || "        {}\n"}`;
      writeFileSync(join(dir, "apex.config.yaml"), yaml);
      const policy = policyFromOptions(options, { session: { max_checkpoints: maxCheckpoints } } as never);

      // A history around a DST change of the process's zone (which must not matter: periods are UTC's), none
      // later than an hour ago but a few a day or two ahead of the clock.
      const now = Date.now();
      const base = Math.min(Date.parse(around), now - 20 * DAY);
      const times = historyTimes(rand, 28, base).map((time) => Math.min(time, now - HOUR));
      for (let i = 0; i < 3; i++) times.push(now + int(rand, 2, 48) * HOUR);
      const store = await openStore(join(dir, ".apex"));
      const items: PolicyItem[] = [];
      try {
        await store.set("/sessions/s-prop", { session_id: "s-prop", project_id: "p", created_at: new Date(base).toISOString(), updated_at: new Date(base).toISOString(), status: "active", initial_task: null, agents: [], supervisor: null, history: [], outcome: null, ended_at: null, restored_from: null });
        await store.set("/sessions/current", { session_id: "s-prop" });
        // Taken in an order that is not the times' (a clock that jumped), so sequence and time disagree now and then.
        const order = times.map((time, index) => ({ time, index, key: rand() < 0.2 ? rand() : index / times.length }));
        order.sort((a, b) => a.key - b.key);
        for (const [position, { time }] of order.entries()) {
          await store.set("/work/state", { position });
          const trigger = pick(rand, ["interval", "interval", "interval", "beforeTask", "beforeTask", "onError", "manual", "beforeRestore"]);
          const { manifest } = await createCheckpoint(store, { sessionId: "s-prop", trigger, now: () => new Date(time) });
          const pinned = rand() < 0.08;
          if (pinned) await pinCheckpoint(store, `s-prop/${manifest.name}`, true);
          items.push({ id: manifest.name, trigger, time: Date.parse(manifest.created_at), sequence: manifest.sequence, ...(pinned ? { pinned } : {}) });
        }
        // The same plan in process, through the store, for a cheap cross-check of the CLI's reading.
        const preview = await previewRetention(store, policy, { now });
        expect(preview.plan.sessions[0]!.result.decisions.map((decision) => [decision.item.name, decision.keep, decision.reasons])).toEqual(
          model(items, policy, now).decisions.map((decision) => [decision.id, decision.keep, decision.reasons]),
        );
      } finally {
        await store.close();
      }

      const result = runApex(["session", "cleanup", "--dry-run", "--json"], { cwd: dir, env: { TZ: zone } });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
      const report = JSON.parse(result.stdout) as {
        time_zone: string;
        sessions: Array<{ checkpoints: Array<{ name: string; action: string; reasons: string[]; removed_by?: string; protected: boolean }>; over_cap: number; keep_within_from: string | null }>;
      };
      expect(report.time_zone).toBe("UTC");
      const expected = model(items, policy, now);
      expect(report.sessions).toHaveLength(1);
      const session = report.sessions[0]!;
      expect(session.checkpoints.map((c) => ({ id: c.name, keep: c.action === "keep", reasons: c.reasons, ...(c.removed_by ? { removedBy: c.removed_by } : {}), protected: c.protected }))).toEqual(expected.decisions);
      expect(session.over_cap).toBe(expected.overCap);
      expect(session.keep_within_from).toBe(expected.withinAnchor === undefined ? null : new Date(expected.withinAnchor).toISOString());

      // `checkpoint list` shows the same reasons (none for one the next cleanup removes).
      const list = runApex(["checkpoint", "list", "--session", "s-prop", "--limit", "100", "--json"], { cwd: dir, env: { TZ: zone } });
      expect(list.stderr).toBe("");
      const listed = (JSON.parse(list.stdout) as { items: Array<{ name: string; kept_by: string[] | null }> }).items;
      const reasonsOf = new Map(expected.decisions.map((decision) => [decision.id, decision.keep ? decision.reasons : []]));
      expect(new Map(listed.map((item) => [item.name, item.kept_by]))).toEqual(reasonsOf);

      // The real run removes exactly what the model removes.
      const run = runApex(["session", "cleanup", "--json"], { cwd: dir, env: { TZ: zone } });
      expect(run.stderr).toBe("");
      expect(run.status).toBe(0);
      const deleted = (JSON.parse(run.stdout) as { deleted: Array<{ name: string }> }).deleted.map((entry) => entry.name).sort();
      expect(deleted).toEqual(expected.decisions.filter((decision) => !decision.keep).map((decision) => decision.id).sort());
    } finally {
      cleanup();
    }
  });
});
