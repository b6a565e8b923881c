// yaml loads from the one-file bundle the build makes (dist/vendor/yaml.cjs, scripts/bundle.mjs),
// and from its package when the bundle is missing or was made from another yaml version.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { REPO_ROOT } from "./fixtures/agents/harness.js";

const INSTALLED = (JSON.parse(readFileSync(join(REPO_ROOT, "node_modules/yaml/package.json"), "utf8")) as { version: string }).version;

/** Runs `node -e` with `source` as the module that gives yaml(); prints which file yaml came from and what it parsed. */
function loadYaml(source: string): { from: string[]; parsed: unknown } {
  const script = `
    import { createRequire } from "node:module";
    import { pathToFileURL } from "node:url";
    const { yaml } = await import(pathToFileURL(${JSON.stringify(source)}).href);
    const parsed = yaml().parse("a: [1, two]");
    const from = Object.keys(createRequire(import.meta.url).cache).filter((file) => /yaml/.test(file) && !file.endsWith(".json"));
    console.log(JSON.stringify({ from, parsed }));`;
  const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  expect(result.stderr).toBe("");
  return JSON.parse(result.stdout) as { from: string[]; parsed: unknown };
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A copy of the built config source module, laid out as in dist/ (core/config/, vendor/), the project's node_modules beside it. */
function layout(vendor?: string): string {
  const dir = mkdtempSync(join(tmpdir(), "apex-yaml-vendor-"));
  dirs.push(dir);
  mkdirSync(join(dir, "core/config"), { recursive: true });
  copyFileSync(join(REPO_ROOT, "dist/core/config/source.js"), join(dir, "core/config/source.js"));
  writeFileSync(join(dir, "package.json"), '{"type":"module"}');
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  if (vendor !== undefined) {
    mkdirSync(join(dir, "vendor"));
    writeFileSync(join(dir, "vendor/yaml.cjs"), vendor);
  }
  return join(dir, "core/config/source.js");
}

describe("yaml's one-file bundle", () => {
  it("is what the built CLI loads, parsing as the package does, with none of the package's files", () => {
    const { from, parsed } = loadYaml(join(REPO_ROOT, "dist/core/config/source.js"));
    expect(from).toEqual([join(REPO_ROOT, "dist/vendor/yaml.cjs")]);
    expect(parsed).toEqual({ a: [1, "two"] });
    // Made from the installed version (its banner says which).
    expect(readFileSync(join(REPO_ROOT, "dist/vendor/yaml.cjs"), "utf8").split("\n")[0]).toContain(`yaml ${INSTALLED} `);
  });

  it("gives way to the package when it is missing, or made from another version than the one installed", () => {
    const fake = (version: string) => `module.exports = { version: ${JSON.stringify(version)}, yaml: { parse: () => "from the bundle" } };`;
    // The bundle of the installed version is used as it is.
    expect(loadYaml(layout(fake(INSTALLED))).parsed).toBe("from the bundle");
    for (const source of [layout(), layout(fake("0.0.1"))]) {
      const { from, parsed } = loadYaml(source);
      expect(parsed).toEqual({ a: [1, "two"] });
      expect(from.some((file) => file.startsWith(join(REPO_ROOT, "node_modules/yaml/")))).toBe(true);
    }
  });
});
