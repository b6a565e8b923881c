import { describe, expect, it } from "vitest";
import { didYouMean, editDistance } from "../core/suggest.js";

describe("did you mean", () => {
  it.each([
    ["keep_lst", "keep_last", 1],
    ["levle", "level", 1],
    ["retension", "retention", 1],
    ["abc", "abc", 0],
    ["", "abc", 3],
  ])("distance(%s, %s) = %i", (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
  });

  it("suggests the closest candidate only when it is plausibly meant", () => {
    expect(didYouMean("keep_lst", ["keep_last", "keep_daily", "auto_cleanup"])).toBe("keep_last");
    expect(didYouMean("levle", ["level", "algorithm"])).toBe("level");
    expect(didYouMean("zzzzzz", ["keep_last", "git"])).toBeUndefined();
  });
});
