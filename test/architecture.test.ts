import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { cycles, importGraph } from "../scripts/import-cycles.mjs";
import { writeFileSync } from "node:fs";
import { REPO_ROOT, runApex, tempDir } from "./helpers/cli.js";

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Lines holding code: blank lines and lines that are only comment (`//`, or inside `/* … *\/`) are not counted. */
function codeLines(text: string): number {
  const stripped = text.replace(/\/\*[\s\S]*?\*\//g, (comment) => "\n".repeat(comment.split("\n").length - 1));
  return stripped.split("\n").filter((line) => {
    const trimmed = line.trim();
    return trimmed !== "" && !trimmed.startsWith("//");
  }).length;
}

describe("the module structure", () => {
  it("no import cycle runs through core/ (static and dynamic imports; core reaches plugins only through the registry)", () => {
    const graph = importGraph({ dynamic: true }) as Map<string, string[]>;
    expect(graph.size).toBeGreaterThan(100);
    const throughCore = (cycles(graph) as string[][]).filter((component) => component.some((file) => file.startsWith("core/")));
    expect(throughCore).toEqual([]);
  });

  it("the cycle check finds a cycle when there is one", () => {
    const graph = new Map([
      ["/r/core/a.ts", ["/r/plugins/b.ts"]],
      ["/r/plugins/b.ts", ["/r/core/c.ts"]],
      ["/r/core/c.ts", ["/r/core/a.ts"]],
      ["/r/core/d.ts", []],
    ]);
    expect((cycles(graph) as string[][]).map((component) => component.length)).toEqual([3]);
  });

  it("core imports no plugin module except the built-in registry (plugins/index.ts)", () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(join(REPO_ROOT, "core"))) {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:from\s+|import\()\s*"((?:\.\.\/)+plugins\/[^"]+)"/g)) {
        if (!match[1]!.endsWith("plugins/index.js")) offenders.push(`${relative(REPO_ROOT, file)}: ${match[1]}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it("core never imports the CLI front end (cli/): the CLI is a client of core, like a plugin's commands", () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(join(REPO_ROOT, "core"))) {
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/(?:from\s+|import\()\s*"((?:\.\.\/)+cli\/[^"]+)"/g)) offenders.push(`${relative(REPO_ROOT, file)}: ${match[1]}`);
    }
    expect(offenders).toEqual([]);
  });

  it("core stays under 7,000 lines of code (blank lines and comments not counted)", () => {
    let code = 0;
    for (const file of sourceFiles(join(REPO_ROOT, "core"))) code += codeLines(readFileSync(file, "utf8"));
    expect(code).toBeGreaterThan(3000);
    expect(code).toBeLessThan(7000);
  });

  it("the line count leaves out comments and blank lines, and counts code after a closed comment", () => {
    expect(codeLines("/**\n * doc\n */\nconst a = 1; // note\n\n// only a comment\nlet b = /* inline */ 2;\n")).toBe(2);
  });

  it("tests use vitest's supported entry point, not vitest/suite (deprecated in 4.1: it warns on every run)", () => {
    const offenders = sourceFiles(join(REPO_ROOT, "test")).filter((file) => /from\s+["']vitest\/suite["']|import\(\s*["']vitest\/suite["']/.test(readFileSync(file, "utf8")));
    expect(offenders.map((file) => relative(REPO_ROOT, file))).toEqual([]);
  });

  it("the checkpoint engine lives in its plugin, not in core", () => {
    const core = sourceFiles(join(REPO_ROOT, "core")).map((file) => relative(REPO_ROOT, file));
    for (const name of ["objects.ts", "index-journal.ts", "hash-filter.ts"]) {
      expect(core.filter((file) => file.endsWith(`/${name}`))).toEqual([]);
    }
  });

  it.each(["archive", "compression"])("%s requires the checkpoint plugin: enabling it alone is a config error (exit 2)", (name) => {
    const { dir, cleanup } = tempDir("apex-requires-");
    try {
      writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${name}: {}\n`);
      const result = runApex(["plugins", "list"], { cwd: dir });
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(`APEX_E_PLUGIN_DEPENDENCY`);
      expect(result.stderr).toContain(`The dependency 'checkpoint' of plugin '${name}' is not enabled`);
      writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  checkpoint: {}\n  ${name}: {}\n`);
      expect(runApex(["plugins", "list"], { cwd: dir }).status).toBe(0);
    } finally {
      cleanup();
    }
  });
});
