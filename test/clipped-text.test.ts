import { describe, expect, it } from "vitest";
import { clippedText, displayWidth } from "../cli/terminal-text.js";
import { describeConflict } from "../plugins/checkpoint/merge.js";

const UNPAIRED = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe("values cut to fit a line", () => {
  it("never keep half of an emoji, and end in … only when cut", () => {
    const emoji = "😀".repeat(50);
    const cut = clippedText(emoji, 40);
    // Cut by UTF-16 units, 39 of them kept 19 emoji and half of the 20th.
    expect(UNPAIRED.test(cut)).toBe(false);
    expect(cut.endsWith("…")).toBe(true);
    expect(displayWidth(cut)).toBeLessThanOrEqual(40);
    expect(clippedText("short", 40)).toBe("short");
    expect(clippedText("x".repeat(40), 40)).toBe("x".repeat(40));
    expect(clippedText("x".repeat(41), 40)).toBe(`${"x".repeat(39)}…`);
  });

  it("look only at the start of a long value", () => {
    const long = `${"é".repeat(10)}${"x".repeat(5_000_000)}`;
    const started = performance.now();
    const cut = clippedText(long, 60);
    expect(performance.now() - started).toBeLessThan(500);
    expect(cut).toBe(`${"é".repeat(10)}${"x".repeat(49)}…`);
  });

  it("a merge conflict's line keeps each side's emoji whole", () => {
    const line = describeConflict({ path: "/notes/x", base: "a", ours: `${"x".repeat(57)}😀😀`, theirs: "b", resolution: "none" } as Parameters<typeof describeConflict>[0]);
    expect(UNPAIRED.test(line)).toBe(false);
    expect(line).toContain("…");
  });
});
