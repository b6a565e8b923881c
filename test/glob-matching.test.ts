// Globs with several wildcards of any length are matched without a regex (core/store/glob.ts): in
// time linear in the path, and with the regex's answers. Checked here against that regex, built as
// the glob's documentation has it, on seeded random globs and paths, and on the globs that made the
// regex backtrack for ever.
import { describe, expect, it } from "vitest";
import { compileGlob } from "../core/store/glob.js";

/** The regex a glob stood for: `*` within a segment, `**` any depth, `/**\/` also nothing, `?` one code point but '/'. */
function referenceRegex(glob: string): RegExp {
  const chars = Array.from(glob);
  let pattern = "^";
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (char === "\\" && /^[*?\\]$/.test(chars[i + 1] ?? "")) pattern += `\\${chars[++i]}`;
    else if (char === "*" && chars[i + 1] === "*") {
      i++;
      const whole = (i - 1 === 0 || chars[i - 2] === "/") && chars[i + 1] === "/";
      pattern += whole ? "(?:.*/)?" : ".*";
      if (whole) i++;
    } else if (char === "*") pattern += "[^/]*";
    else if (char === "?") pattern += "[^/]";
    else pattern += char.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`${pattern}$`, "su");
}

describe("a glob of several wildcards", () => {
  it("matches what its regex matched (seeded random globs and paths, astral characters and newlines among them)", () => {
    const parts = ["a", "b", "/", "*", "**", "?", "\\*", "\\\\", "é", "😀", "/**/", "\n"];
    const pathParts = ["a", "b", "/", "é", "😀", "*", "\n", "?", "\\"];
    let seed = 7;
    const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const differences: string[] = [];
    for (let i = 0; i < 3000; i++) {
      let glob = "/";
      for (let k = random(8); k > 0; k--) glob += parts[random(parts.length)];
      const compiled = compileGlob(glob);
      const reference = referenceRegex(glob);
      for (let j = 0; j < 20; j++) {
        let path = "/";
        for (let k = random(10); k > 0; k--) path += pathParts[random(pathParts.length)];
        if (compiled.matches(path) !== reference.test(path)) differences.push(`${JSON.stringify(glob)} ${JSON.stringify(path)}`);
      }
    }
    expect(differences).toEqual([]);
  });

  it("answers at once on a long path, where the regex backtracked exponentially", () => {
    const path = `/${"a/".repeat(200)}${"a".repeat(300)}`;
    for (const glob of [`/${"**/".repeat(12)}x`, `/*${"a*".repeat(14)}b`, `/${"*".repeat(31)}b`, `/**${"/**".repeat(40)}/z`, `/${"a/".repeat(200)}${"*a".repeat(20)}*b`]) {
      const started = performance.now();
      expect(compileGlob(glob).matches(path), glob).toBe(false);
      expect(performance.now() - started, glob).toBeLessThan(1000);
    }
    expect(compileGlob(`/**/**/*${"a".repeat(300)}`).matches(path)).toBe(true);
  });
});
