// `apex status` by its fast path (bin/apex.js: dist/cli/status-main.js), benchmarked against
// `node -e 0` (bench/status.bench.mjs): what it loads, and in which order, in a new process of the
// built CLI asking a real session's supervisor, as Node's own debug output (NODE_DEBUG) and module
// hooks (--import) show them.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { APEX_BIN, REPO_ROOT, cleanEnv, expectDiskFullReport } from "./helpers/cli.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

/** A hook that names every module loaded (LOADED url), on stderr. */
const HOOKS = `
import { writeSync } from "node:fs";
export async function load(url, context, next) {
  writeSync(2, "LOADED " + url + "\\n");
  return next(url, context);
}
`;

/** The modules under dist/ that `apex ARGS` loads, in a new process of the built CLI. */
function loadedModules(p: Project, args: string[]): { status: number | null; stderr: string; loaded: string[] } {
  const hooks = join(p.dir, "hooks.mjs");
  writeFileSync(hooks, HOOKS);
  const register = join(p.dir, "register.mjs");
  writeFileSync(register, `import { register } from "node:module"; register(${JSON.stringify(pathToFileURL(hooks).href)});\n`);
  const result = spawnSync(process.execPath, ["--import", pathToFileURL(register).href, APEX_BIN, ...args], { cwd: p.dir, env: { ...cleanEnv(), NO_COLOR: "1" }, encoding: "utf8", timeout: 60_000 });
  const loaded = result.stderr
    .split("\n")
    .filter((line) => line.startsWith("LOADED file:"))
    .map((line) => new URL(line.slice("LOADED ".length)).pathname)
    .filter((path) => path.startsWith(join(REPO_ROOT, "dist")));
  return { status: result.status, stderr: result.stderr, loaded };
}

describe("apex status by its fast path", () => {
  it("asks the supervisor before it loads the printer, which loads while the supervisor answers", () => {
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait" }), "apex-status-fast-");
    project.start(["--task", "status fast path"]);
    for (const args of [["status"], ["status", "--json"]]) {
      // Node's own debug lines, written in order from the one thread that connects and compiles: the
      // connection to the supervisor (net) is made before the printer's modules are compiled (esm).
      const result = project.apex(args, { env: { NODE_DEBUG: "esm,net" } });
      expect(result.status, result.stderr).toBe(0);
      const lines = result.stderr.split("\n");
      const connected = lines.findIndex((line) => /^NET \d+: createConnection/.test(line));
      expect(connected, args.join(" ")).toBeGreaterThanOrEqual(0);
      for (const printer of ["cli/session/status.js", "cli/output.js"]) {
        const compiled = lines.findIndex((line) => line.startsWith("ESM ") && line.includes(`Translating StandardModule file:`) && line.includes(`/dist/${printer}`));
        expect(compiled, `${args.join(" ")}: ${printer}`).toBeGreaterThan(connected);
      }
      // The report is the whole one, as printed without them.
      if (args.includes("--json")) expect(JSON.parse(result.stdout)).toMatchObject({ session: { status: "active" }, agents: [{ name: "alpha" }] });
      else expect(result.stdout).toMatch(/^Session \S+ {2}active\n[\s\S]*\nalpha +running /);
    }
  });

  it("reports a failed write and an error before its printer has loaded as every command does (output.ts loads with the printer)", () => {
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait" }), "apex-status-fast-");
    for (const args of [["status"], ["status", "--json"]]) expectDiskFullReport(project.dir, args);
    // The project not found (APEX_CONFIG naming no file): before anything is asked or loaded for the printer.
    const missing = project.apex(["status", "--json"], { env: { APEX_CONFIG: join(project.dir, "missing.yaml") } });
    expect(missing.status).toBe(2);
    expect(JSON.parse(missing.stderr)).toEqual({ error: expect.objectContaining({ code: "APEX_E_CONFIG_NOT_FOUND", exitCode: 2 }) });
  });

  it("loads no module holding a regular expression literal with a Unicode property (\\p{…}): each costs ICU's tables as its module loads", () => {
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait" }), "apex-status-fast-");
    project.start(["--task", "status fast path"]);
    const result = loadedModules(project, ["status"]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.loaded.length).toBeGreaterThan(5);
    // In a literal, `\p{` follows no other backslash; in a string given to new RegExp (made when first needed), it is written `\\p{`.
    const withLiteral = result.loaded.filter((path) => /(?<!\\)\\p\{/.test(readFileSync(path, "utf8")));
    expect(withLiteral.map((path) => relative(join(REPO_ROOT, "dist"), path))).toEqual([]);
  });
});
