import { describe, expect, it } from "vitest";
import { applyPolicy, bucketKey, hasRules, isoWeek, periodIndex, type PolicyItem, type RetentionPolicy } from "../plugins/retention/policy.js";
import { random } from "./helpers/cli.js";
import { capOnly, describePolicy, policyFromOptions, policyJson } from "../plugins/retention/options.js";
import type { Config } from "../core/config/types.js";

/**
 * Checkpoints at the given UTC times, oldest first: sequence numbers follow the list order,
 * ids are the times as written ("2021-01-01 12:00").
 */
function checkpoints(...times: string[]): PolicyItem[] {
  return times.map((time, index) => ({ id: time, time: utc(time), sequence: index + 1 }));
}

function utc(text: string): number {
  const iso = text.includes("T") ? text : `${text.replace(" ", "T")}${text.length <= 10 ? "T00:00" : ""}`;
  const time = Date.parse(/[Z+-]\d\d:?\d\d$|Z$/.test(iso.slice(10)) ? iso : `${iso}Z`);
  if (!Number.isFinite(time)) throw new Error(`bad test time ${text}`);
  return time;
}

/** "id: reasons" for kept ones, newest first; removed ones are left out. */
function kept(items: PolicyItem[], policy: RetentionPolicy, now?: number): string[] {
  return applyPolicy(items, policy, now === undefined ? {} : { now })
    .decisions.filter((decision) => decision.keep)
    .map((decision) => `${decision.item.id}: ${decision.reasons.join(", ")}`);
}

function removed(items: PolicyItem[], policy: RetentionPolicy): string[] {
  return applyPolicy(items, policy).remove.map((item) => item.id);
}

describe("periods (UTC)", () => {
  it.each([
    ["2020-12-31 12:00", "2020-W53"], // Thursday: week 53 of 2020
    ["2021-01-01 00:00", "2020-W53"], // Friday, a new calendar year, still ISO year 2020
    ["2021-01-03 23:59", "2020-W53"], // Sunday ends the ISO week
    ["2021-01-04 00:00", "2021-W01"], // Monday starts week 1
    ["2019-12-30 08:00", "2020-W01"], // a December Monday in week 1 of the next ISO year
    ["2018-12-31 08:00", "2019-W01"],
    ["2024-12-30 08:00", "2025-W01"],
    ["2026-11-22 23:59", "2026-W47"], // Sunday
    ["2026-11-23 00:00", "2026-W48"], // the Monday after
    ["2027-01-01 12:00", "2026-W53"],
    ["2016-01-03 12:00", "2015-W53"],
    // Years 0 to 99 are not 1900 to 1999 (Date.UTC's reading of them).
    ["0050-06-15 00:00", "0050-W24"],
    ["0100-01-01 00:00", "0099-W53"],
    ["0099-12-31 12:00", "0099-W53"],
  ])("ISO week of %s is %s", (time, week) => {
    expect(isoWeek(utc(time))).toBe(week);
    expect(bucketKey("weekly", utc(time))).toBe(week);
  });

  it.each([
    ["hourly", "2026-11-20 14:59", "2026-11-20 14"],
    ["daily", "2026-11-20 23:59", "2026-11-20"],
    ["monthly", "2026-11-30 23:59", "2026-11"],
    ["monthly", "2026-12-01 00:00", "2026-12"],
    ["daily", "2021-12-31 23:59", "2021-12-31"],
    ["daily", "2022-01-01 00:00", "2022-01-01"],
    // Written with an offset, bucketed in UTC: 00:30 in UTC+2 is 22:30 UTC the day before.
    ["daily", "2022-01-01T00:30:00+02:00", "2021-12-31"],
    ["hourly", "2022-01-01T00:30:00+02:00", "2021-12-31 22"],
    ["monthly", "2022-01-01T00:30:00+02:00", "2021-12"],
  ] as const)("%s period of %s is %s", (rule, time, key) => {
    expect(bucketKey(rule, utc(time))).toBe(key);
  });
});

describe("period numbers (what the policy compares)", () => {
  it("two times share a period number exactly when they share a period", () => {
    const next = random(12);
    const start = utc("1969-12-01 00:00");
    for (let i = 0; i < 20_000; i++) {
      const a = start + Math.floor(next() * 60 * 365 * 86_400_000);
      const b = a + Math.floor((next() < 0.5 ? next() * 3_600_000 * 2 : next() * 86_400_000 * 40) * (next() < 0.5 ? -1 : 1));
      for (const rule of ["hourly", "daily", "weekly", "monthly"] as const) {
        expect(periodIndex(rule, a) === periodIndex(rule, b), `${rule} ${new Date(a).toISOString()} ${new Date(b).toISOString()}`).toBe(bucketKey(rule, a) === bucketKey(rule, b));
        const same = bucketKey(rule, a) === bucketKey(rule, b);
        expect(Math.sign(periodIndex(rule, a) - periodIndex(rule, b))).toBe(same ? 0 : Math.sign(a - b));
      }
    }
  });
});

describe("applyPolicy", () => {
  it.each<[string, string[], RetentionPolicy, string[]]>([
    [
      "keep_last keeps the newest N",
      ["2026-11-20 10:00", "2026-11-20 11:00", "2026-11-20 12:00", "2026-11-20 13:00", "2026-11-20 14:00"],
      { keepLast: 3 },
      ["2026-11-20 14:00: latest, last", "2026-11-20 13:00: last", "2026-11-20 12:00: last"],
    ],
    [
      "keep_hourly keeps the newest of each hour",
      ["2026-11-20 10:05", "2026-11-20 10:55", "2026-11-20 11:00", "2026-11-20 11:59", "2026-11-20 12:30"],
      { keepHourly: 2 },
      ["2026-11-20 12:30: latest, hourly", "2026-11-20 11:59: hourly"],
    ],
    [
      "unfilled count: keep_daily 7 over 3 days keeps 3 and does not reach back",
      ["2026-11-10 09:00", "2026-11-10 18:00", "2026-11-12 08:00", "2026-11-12 09:00", "2026-11-12 23:00", "2026-11-15 07:00"],
      { keepDaily: 7 },
      ["2026-11-15 07:00: latest, daily", "2026-11-12 23:00: daily", "2026-11-10 18:00: daily"],
    ],
    [
      "keep_daily counts only days that have a checkpoint, and stops when used up",
      ["2026-11-01 12:00", "2026-11-05 12:00", "2026-11-05 13:00", "2026-11-09 12:00", "2026-11-20 12:00"],
      { keepDaily: 2 },
      ["2026-11-20 12:00: latest, daily", "2026-11-09 12:00: daily"],
    ],
    [
      "ISO week 53 of 2020 spans 2020-12-31 to 2021-01-03; Monday 2021-01-04 starts 2021-W01",
      ["2020-12-28 09:00", "2020-12-31 09:00", "2021-01-01 09:00", "2021-01-03 22:00", "2021-01-04 00:00"],
      { keepWeekly: 2 },
      ["2021-01-04 00:00: latest, weekly", "2021-01-03 22:00: weekly"],
    ],
    [
      "the week before 2020-W53 is reached only with a third weekly count",
      ["2020-12-20 09:00", "2020-12-27 23:59", "2021-01-01 09:00", "2021-01-04 00:00"],
      { keepWeekly: 3 },
      ["2021-01-04 00:00: latest, weekly", "2021-01-01 09:00: weekly", "2020-12-27 23:59: weekly"],
    ],
    [
      "Sunday 23:59 and the following Monday 00:00 are different weeks; Monday to Sunday is one",
      ["2026-11-16 00:00", "2026-11-22 23:59", "2026-11-23 00:00"],
      { keepWeekly: 3 },
      ["2026-11-23 00:00: latest, weekly", "2026-11-22 23:59: weekly"],
    ],
    [
      "Dec 31 and Jan 1 are different days and months",
      ["2021-12-30 10:00", "2021-12-31 23:59", "2022-01-01 00:00", "2022-01-01 00:30"],
      { keepDaily: 2, keepMonthly: 2 },
      ["2022-01-01 00:30: latest, daily, monthly", "2021-12-31 23:59: daily, monthly"],
    ],
    [
      "keep_monthly over a year boundary",
      ["2021-11-15 10:00", "2021-11-30 10:00", "2021-12-01 10:00", "2021-12-31 10:00", "2022-01-01 10:00", "2022-02-01 10:00"],
      { keepMonthly: 3 },
      ["2022-02-01 10:00: latest, monthly", "2022-01-01 10:00: monthly", "2021-12-31 10:00: monthly"],
    ],
    [
      "rules are ORed; each rule keeps its own checkpoints and lists itself",
      ["2026-11-18 10:00", "2026-11-18 20:00", "2026-11-19 09:00", "2026-11-20 08:00", "2026-11-20 09:00"],
      { keepLast: 2, keepDaily: 3, keepWeekly: 1 },
      ["2026-11-20 09:00: latest, last, daily, weekly", "2026-11-20 08:00: last", "2026-11-19 09:00: daily", "2026-11-18 20:00: daily"],
    ],
    [
      "the seed's policy: keep_last 5, keep_daily 7, keep_weekly 4",
      [
        "2026-10-20 12:00", // week 43, beyond 4 weeks with a checkpoint
        "2026-10-27 12:00", // week 44
        "2026-11-03 12:00", // week 45
        "2026-11-10 12:00", // week 46
        "2026-11-16 09:00", // week 47, day 16
        "2026-11-16 10:00",
        "2026-11-17 10:00",
        "2026-11-18 10:00",
        "2026-11-19 10:00",
        "2026-11-20 10:00",
        "2026-11-20 11:00",
        "2026-11-20 12:00",
      ],
      { keepLast: 5, keepDaily: 7, keepWeekly: 4 },
      [
        "2026-11-20 12:00: latest, last, daily, weekly",
        "2026-11-20 11:00: last",
        "2026-11-20 10:00: last",
        "2026-11-19 10:00: last, daily",
        "2026-11-18 10:00: last, daily",
        "2026-11-17 10:00: daily",
        "2026-11-16 10:00: daily",
        "2026-11-10 12:00: daily, weekly",
        "2026-11-03 12:00: daily, weekly",
        "2026-10-27 12:00: weekly",
      ],
    ],
  ])("%s", (_name, times, policy, expected) => {
    expect(kept(checkpoints(...times), policy)).toEqual(expected);
  });

  it("does not keep the oldest checkpoint to fill unused counts (restic ≥ 0.17 would)", () => {
    const items = checkpoints("2026-11-10 09:00", "2026-11-10 18:00", "2026-11-12 08:00");
    expect(removed(items, { keepDaily: 30, keepWeekly: 10, keepMonthly: 12 })).toEqual(["2026-11-10 09:00"]);
  });

  describe("keep_within", () => {
    const items = checkpoints("2026-11-17 12:00", "2026-11-18 12:00", "2026-11-18 12:01", "2026-11-19 00:00", "2026-11-20 12:00");
    const twoDays = { keepWithinMs: 2 * 86_400_000, keepWithinLabel: "2d" };

    it("is measured back from the newest checkpoint, not from now; exactly 2d older is out", () => {
      const expected = ["2026-11-20 12:00: latest, within 2d", "2026-11-19 00:00: within 2d", "2026-11-18 12:01: within 2d"];
      expect(kept(items, twoDays)).toEqual(expected);
      // Years later, the same checkpoints are still "within 2d" of the newest one.
      expect(kept(items, twoDays, utc("2030-01-01 00:00"))).toEqual(expected);
    });

    it("does not measure from a checkpoint dated in the future (a clock that ran ahead)", () => {
      const withFuture = [...items, { id: "2027-06-01 00:00 (clock ahead)", time: utc("2027-06-01 00:00"), sequence: 6 }];
      expect(kept(withFuture, twoDays, utc("2026-11-20 13:00"))).toEqual([
        "2027-06-01 00:00 (clock ahead): latest, within 2d",
        "2026-11-20 12:00: within 2d",
        "2026-11-19 00:00: within 2d",
        "2026-11-18 12:01: within 2d",
      ]);
      expect(applyPolicy(withFuture, twoDays, { now: utc("2026-11-20 13:00") }).withinAnchor).toBe(utc("2026-11-20 12:00"));
    });

    it("ORs with the other rules", () => {
      expect(kept(items, { ...twoDays, keepDaily: 4 })).toEqual([
        "2026-11-20 12:00: latest, daily, within 2d",
        "2026-11-19 00:00: daily, within 2d",
        "2026-11-18 12:01: daily, within 2d",
        "2026-11-17 12:00: daily",
      ]);
    });
  });

  describe("protected checkpoints", () => {
    it("keeps pinned, branched-from and latest checkpoints that no rule keeps", () => {
      const items = checkpoints("2026-01-01 00:00", "2026-02-01 00:00", "2026-03-01 00:00", "2026-11-19 00:00", "2026-11-20 00:00");
      items[0]!.pinned = true;
      items[1]!.protected = "branch s-2";
      const result = applyPolicy(items, { keepLast: 1 });
      expect(result.decisions.map((decision) => [decision.item.id, decision.keep, decision.reasons.join(", ")])).toEqual([
        ["2026-11-20 00:00", true, "latest, last"],
        ["2026-11-19 00:00", false, ""],
        ["2026-03-01 00:00", false, ""],
        ["2026-02-01 00:00", true, "branch s-2"],
        ["2026-01-01 00:00", true, "pinned"],
      ]);
      expect(result.decisions.filter((decision) => !decision.keep).map((decision) => decision.removedBy)).toEqual(["rules", "rules"]);
    });

    it("takes the latest by sequence, even when the clock went back", () => {
      const items: PolicyItem[] = [
        { id: "seq-1", time: utc("2026-11-20 12:00"), sequence: 1 },
        { id: "seq-2", time: utc("2026-11-20 11:00"), sequence: 2 },
        { id: "seq-3", time: utc("2026-11-20 10:00"), sequence: 3 },
      ];
      expect(kept(items, { keepLast: 1 })).toEqual(["seq-1: last", "seq-3: latest"]);
    });

    it("accepts protection reasons as true, a string or a list", () => {
      const items: PolicyItem[] = [
        { id: "a", time: utc("2026-11-20 09:00"), protected: true },
        { id: "b", time: utc("2026-11-20 10:00"), protected: ["branch s-2", "branch s-3"] },
        { id: "c", time: utc("2026-11-20 11:00"), protected: false },
        { id: "d", time: utc("2026-11-20 12:00") },
      ];
      expect(kept(items, { keepLast: 1 })).toEqual(["d: latest, last", "b: branch s-2, branch s-3", "a: protected"]);
    });

    it("keeps a checkpoint without a valid time, outside every period", () => {
      const items: PolicyItem[] = [...checkpoints("2026-11-19 00:00", "2026-11-20 00:00"), { id: "undated", time: Number.NaN, sequence: 0 }];
      expect(kept(items, { keepLast: 1 })).toEqual(["2026-11-20 00:00: latest, last", "undated: undated"]);
    });
  });

  describe("hard cap (max_checkpoints)", () => {
    const eight = checkpoints(...Array.from({ length: 8 }, (_, day) => `2026-11-${String(day + 10).padStart(2, "0")} 12:00`));

    it("removes the oldest checkpoints the rules keep beyond the cap", () => {
      const result = applyPolicy(eight, { keepDaily: 10, maxCheckpoints: 5 });
      expect(result.keep.map((item) => item.id)).toEqual(["2026-11-17 12:00", "2026-11-16 12:00", "2026-11-15 12:00", "2026-11-14 12:00", "2026-11-13 12:00"]);
      expect(result.decisions.filter((decision) => !decision.keep).map((decision) => [decision.item.id, decision.removedBy, decision.reasons])).toEqual([
        ["2026-11-12 12:00", "cap", ["daily"]],
        ["2026-11-11 12:00", "cap", ["daily"]],
        ["2026-11-10 12:00", "cap", ["daily"]],
      ]);
      expect(result.overCap).toBe(0);
    });

    it("applies after the rules: what the rules remove does not count", () => {
      expect(removed(eight, { keepLast: 3, maxCheckpoints: 5 })).toHaveLength(5);
      expect(applyPolicy(eight, { keepLast: 3, maxCheckpoints: 5 }).decisions.every((decision) => decision.keep || decision.removedBy === "rules")).toBe(true);
    });

    it("caps a policy without rules (every checkpoint kept, then the oldest over the cap removed)", () => {
      expect(removed(eight, { maxCheckpoints: 6 })).toEqual(["2026-11-11 12:00", "2026-11-10 12:00"]);
      expect(removed(eight, capOnly({ keepLast: 1, keepDaily: 1, maxCheckpoints: 6 }))).toEqual(["2026-11-11 12:00", "2026-11-10 12:00"]);
    });

    it("never removes protected checkpoints; they count toward the cap", () => {
      const items = checkpoints("2026-11-10 12:00", "2026-11-11 12:00", "2026-11-12 12:00", "2026-11-13 12:00", "2026-11-14 12:00", "2026-11-15 12:00");
      items[0]!.pinned = true;
      items[1]!.protected = "branch s-2";
      const result = applyPolicy(items, { keepLast: 10, maxCheckpoints: 3 });
      expect(result.keep.map((item) => item.id)).toEqual(["2026-11-15 12:00", "2026-11-11 12:00", "2026-11-10 12:00"]);
      expect(result.remove.map((item) => item.id)).toEqual(["2026-11-14 12:00", "2026-11-13 12:00", "2026-11-12 12:00"]);
      expect(result.overCap).toBe(0);
    });

    it("reports when protected checkpoints alone exceed the cap", () => {
      const items = checkpoints("2026-11-10 12:00", "2026-11-11 12:00", "2026-11-12 12:00", "2026-11-13 12:00");
      items[0]!.pinned = true;
      items[1]!.pinned = true;
      const result = applyPolicy(items, { keepLast: 4, maxCheckpoints: 1 });
      expect(result.keep.map((item) => item.id)).toEqual(["2026-11-13 12:00", "2026-11-11 12:00", "2026-11-10 12:00"]);
      expect(result.overCap).toBe(2);
    });
  });

  describe("trigger classes (issue 12: retention must never surprise)", () => {
    /** Checkpoints of the given triggers, one a minute from 12:00 UTC, oldest first; ids are "<n>:<trigger>". */
    function taken(...triggers: string[]): PolicyItem[] {
      return triggers.map((trigger, index) => ({ id: `${index + 1}:${trigger}`, trigger, time: utc("2026-11-20 12:00") + index * 60_000, sequence: index + 1 }));
    }
    const burst = (trigger: string, count: number) => Array.from({ length: count }, () => trigger);

    it.each<[string, string[], RetentionPolicy, string[]]>([
      [
        "a burst of beforeTask checkpoints does not push out a manual one (the seed's policy)",
        ["interval", "manual", ...burst("beforeTask", 12)],
        { keepLast: 5, keepDaily: 7, keepWeekly: 4, maxCheckpoints: 100 },
        ["14:beforeTask: latest, last, daily, weekly", "13:beforeTask: last", "12:beforeTask: last", "11:beforeTask: last", "10:beforeTask: last", "2:manual: manual", "1:interval: last, daily, weekly"],
      ],
      [
        "keep_last counts each trigger on its own",
        ["interval", "beforeTask", "interval", "beforeTask", "interval", "beforeTask", "onError"],
        { keepLast: 2 },
        ["7:onError: latest, last", "6:beforeTask: last", "5:interval: last", "4:beforeTask: last", "3:interval: last"],
      ],
      [
        "the state a restore replaced is kept until deleted, like a manual checkpoint",
        ["beforeRestore", "restore", ...burst("beforeTask", 4), "beforeRestore", "restore"],
        { keepLast: 1 },
        ["8:restore: latest, last", "7:beforeRestore: before restore", "6:beforeTask: last", "1:beforeRestore: before restore"],
      ],
      [
        "a rule for manual checkpoints makes them count like the others",
        ["manual", "manual", "manual", "beforeTask"],
        { keepLast: 5, byTrigger: { manual: { keepLast: 1 } } },
        ["4:beforeTask: latest, last", "3:manual: last"],
      ],
      [
        "an age rule for beforeRestore removes only those older than it (measured from the session's newest checkpoint)",
        ["beforeRestore", "beforeRestore", "interval", "interval"],
        { keepLast: 1, byTrigger: { beforeRestore: { keepWithinMs: 150_000, keepWithinLabel: "150s" } } },
        ["4:interval: latest, last", "2:beforeRestore: within 150s"],
      ],
      [
        "a trigger with its own rules uses them instead of the general ones",
        [...burst("interval", 4), ...burst("beforeTask", 4)],
        { keepLast: 3, byTrigger: { interval: { keepLast: 1 } } },
        ["8:beforeTask: latest, last", "7:beforeTask: last", "6:beforeTask: last", "4:interval: last"],
      ],
      [
        "a trigger given no rules ({}) keeps all of its checkpoints",
        [...burst("onError", 3), ...burst("beforeTask", 3)],
        { keepLast: 1, byTrigger: { onError: {} } },
        ["6:beforeTask: latest, last", "3:onError: no rules", "2:onError: no rules", "1:onError: no rules"],
      ],
      [
        "checkpoints without a trigger form one class",
        ["", "", ""],
        { keepLast: 1 },
        ["3:: latest, last"],
      ],
    ])("%s", (_title, triggers, policy, expected) => {
      const items = taken(...triggers).map((item) => (item.trigger === "" ? { ...item, trigger: undefined } : item));
      expect(kept(items, policy)).toEqual(expected);
    });

    it("the cap never removes kept classes or pinned checkpoints, and says when they alone exceed it", () => {
      const result = applyPolicy(taken("manual", "beforeRestore", "manual", "beforeTask", "beforeTask", "beforeTask"), { keepLast: 5, maxCheckpoints: 3 });
      expect(result.keep.map((item) => item.id)).toEqual(["6:beforeTask", "3:manual", "2:beforeRestore", "1:manual"]);
      expect(result.remove.map((item) => item.id)).toEqual(["5:beforeTask", "4:beforeTask"]);
      expect(result.overCap).toBe(1);
    });

    it("the cap alone (auto_cleanup off) keeps each class's standing", () => {
      const items = taken("manual", "manual", "interval", "interval");
      // Manual checkpoints and the latest are protected: only the older interval one can go.
      expect(removed(items, capOnly({ keepLast: 1, maxCheckpoints: 2 }))).toEqual(["3:interval"]);
      // Manual checkpoints with rules of their own go by those rules only, never by the cap.
      expect(removed(items, capOnly({ keepLast: 1, byTrigger: { manual: { keepLast: 1 } }, maxCheckpoints: 2 }))).toEqual(["3:interval"]);
      const full = applyPolicy(items, { keepLast: 5, byTrigger: { manual: { keepLast: 1 } }, maxCheckpoints: 1 });
      expect(full.decisions.map((decision) => [decision.item.id, decision.keep, decision.removedBy])).toEqual([
        ["4:interval", true, undefined],
        ["3:interval", false, "cap"],
        ["2:manual", true, undefined],
        ["1:manual", false, "rules"],
      ]);
      expect(full.overCap).toBe(1);
    });

    it("checks the rules of each trigger", () => {
      expect(() => applyPolicy([], { byTrigger: { manual: { keepLast: -1 } } })).toThrow("Retention policy: byTrigger.manual.keepLast must be a non-negative integer (got -1).");
    });
  });

  it("keeps everything when the policy has no rules", () => {
    const items = checkpoints("2026-11-10 12:00", "2026-11-11 12:00");
    expect(hasRules({ keepLast: 0, keepDaily: 0 })).toBe(false);
    expect(kept(items, { keepLast: 0 })).toEqual(["2026-11-11 12:00: latest, no rules", "2026-11-10 12:00: no rules"]);
  });

  it("handles an empty session", () => {
    expect(applyPolicy([], { keepLast: 3, maxCheckpoints: 1 })).toEqual({ decisions: [], keep: [], remove: [], withinAnchor: undefined, overCap: 0 });
  });

  it("orders checkpoints of the same millisecond by sequence", () => {
    const same = utc("2026-11-20 12:00");
    const items: PolicyItem[] = [
      { id: "first", time: same, sequence: 1 },
      { id: "third", time: same, sequence: 3 },
      { id: "second", time: same, sequence: 2 },
    ];
    expect(kept(items, { keepLast: 2 })).toEqual(["third: latest, last", "second: last"]);
  });

  it.each([[{ keepLast: -1 }], [{ keepDaily: 1.5 }], [{ keepWithinMs: Number.NaN }], [{ maxCheckpoints: -3 }]])("refuses an invalid policy %j", (policy) => {
    expect(() => applyPolicy([], policy as RetentionPolicy)).toThrow(RangeError);
  });

  it("takes counts beyond the safe integers (YAML reads 99999999999999999999 as 1e20) as counts that keep everything", () => {
    const items = checkpoints("2026-11-10 12:00", "2026-11-11 12:00", "2026-11-12 12:00");
    expect(kept(items, { keepLast: 1e20, maxCheckpoints: 1e20 })).toEqual(["2026-11-12 12:00: latest, last", "2026-11-11 12:00: last", "2026-11-10 12:00: last"]);
    expect(kept(items, { keepDaily: 2 ** 60, byTrigger: { manual: { keepLast: 1e300 } } })).toHaveLength(3);
  });

  it("takes keep_within: 1e308 (seconds, the config's schema takes it; Infinity in milliseconds) as keeping everything: every cleanup failed as a crash of the plugin", () => {
    const items = checkpoints("2026-11-10 12:00", "2026-11-11 12:00", "2026-11-12 12:00");
    const policy = policyFromOptions({ keep_last: 1, keep_within: 1e308 }, undefined);
    expect(policy.keepWithinMs).toBe(Number.POSITIVE_INFINITY);
    expect(kept(items, policy)).toEqual(["2026-11-12 12:00: latest, last, within 1e+308s", "2026-11-11 12:00: within 1e+308s", "2026-11-10 12:00: within 1e+308s"]);
  });
});

describe("policy from options", () => {
  const config: Pick<Config, "session"> = { session: { max_checkpoints: 100, auto_checkpoint_interval: 300, auto_recovery: true, session_timeout: 0, lease_ttl: 15, backup_location: ".apex/backups" } };

  it("reads the seed's options and session.max_checkpoints", () => {
    const policy = policyFromOptions({ keep_last: 5, keep_daily: 7, keep_weekly: 4, auto_cleanup: true }, config);
    expect(policy).toMatchObject({ keepLast: 5, keepDaily: 7, keepWeekly: 4, maxCheckpoints: 100 });
    expect(describePolicy(policy)).toBe("keep_last 5, keep_daily 7, keep_weekly 4 per trigger; manual, beforeRestore kept until deleted; max_checkpoints 100");
  });

  it.each([
    ["2d", 2 * 86_400_000, "2d"],
    ["1h30m", 5_400_000, "1h30m"],
    [90, 90_000, "90s"],
  ] as const)("keep_within %j is %d ms", (value, ms, label) => {
    const policy = policyFromOptions({ keep_within: value }, undefined);
    expect(policy.keepWithinMs).toBe(ms);
    expect(policy.keepWithinLabel).toBe(label);
    expect(describePolicy(policy)).toBe(`keep_within ${label} per trigger; manual, beforeRestore kept until deleted`);
  });

  it("reads rules by trigger; manual and beforeRestore stay kept unless given rules", () => {
    const policy = policyFromOptions({ keep_last: 5, by_trigger: { manual: { keep_last: 20 }, beforeRestore: { keep_within: "30days" }, interval: {} } }, config);
    expect(policy.byTrigger).toEqual({
      manual: { keepLast: 20 },
      beforeRestore: { keepWithinMs: 30 * 86_400_000, keepWithinLabel: "30days" },
      interval: {},
    });
    expect(describePolicy(policy)).toBe("keep_last 5 per trigger; manual: keep_last 20; beforeRestore: keep_within 30days; interval: every one kept; max_checkpoints 100");
    expect(policyJson(policy)).toMatchObject({ keep_last: 5, by_trigger: { manual: { keep_last: 20 }, beforeRestore: { keep_within: "30days" } }, kept_until_deleted: [] });
    expect(policyJson(policyFromOptions({ keep_last: 5 }, config)).kept_until_deleted).toEqual(["manual", "beforeRestore"]);
    expect(() => policyFromOptions({ by_trigger: { manual: { keep_within: "soon" } } }, config)).toThrow(/plugins\.retention\.by_trigger\.manual\.keep_within/);
  });

  it("describes a policy without rules", () => {
    expect(describePolicy(policyFromOptions({}, config))).toBe("no keep rules (every checkpoint is kept); manual, beforeRestore kept until deleted; max_checkpoints 100");
  });
});
