// `apex status` by its fast path (bin/apex.js: dist/cli/status-main.js), benchmarked against
// `node -e 0` (bench/status.bench.mjs): what it loads, and in which order, in a new process of the
// built CLI asking a real session's supervisor, as a preload (--import) records them on the CLI's own
// thread: Node's module hooks (V8's report of each script compiled on Node 20) and net's connect()
// (test/helpers/load-order.mjs).
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { APEX_BIN, REPO_ROOT, cleanEnv, expectDiskFullReport } from "./helpers/cli.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

/** Records the modules loaded and the connections begun, in their order (test/helpers/load-order.mjs). */
const LOAD_ORDER = fileURLToPath(new URL("./helpers/load-order.mjs", import.meta.url));

/**
 * What `apex ARGS` does, in a new process of the built CLI: its output, the modules under dist/ it
 * loads (`loaded`, their paths) and, in order, those and each connection it begins (`order`:
 * `connect PATH`, or the module's path under dist/). Its modules (APEX_BUNDLE=0), each a file: its
 * bundle (dist/bundle/status.cjs) holds the same ones, each run when it is first imported.
 */
function loadOrder(p: Project, args: string[], env: NodeJS.ProcessEnv = { APEX_BUNDLE: "0" }): { status: number | null; stdout: string; stderr: string; loaded: string[]; order: string[] } {
  const record = join(p.dir, "load-order.txt");
  rmSync(record, { force: true });
  const result = spawnSync(process.execPath, ["--import", pathToFileURL(LOAD_ORDER).href, APEX_BIN, ...args], { cwd: p.dir, env: { ...cleanEnv(), NO_COLOR: "1", LOAD_ORDER: record, ...env }, encoding: "utf8", timeout: 60_000 });
  const dist = join(REPO_ROOT, "dist");
  const order = readFileSync(record, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => (line.startsWith("loaded file:") ? fileURLToPath(line.slice("loaded ".length)) : line))
    .filter((event) => event.startsWith("connect ") || event.startsWith(`${dist}/`));
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, loaded: order.filter((event) => !event.startsWith("connect ")), order };
}

describe("apex status by its fast path", () => {
  it("asks the supervisor before it loads the printer, which loads while the supervisor answers", () => {
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait" }), "apex-status-fast-");
    project.start(["--task", "status fast path"]);
    for (const args of [["status"], ["status", "--json"]]) {
      // The connection to the supervisor's socket is begun before the printer's modules load (seen as they happen, on
      // any Node: not Node's own debug text, which changes between versions). Node 22 and later load a module at once
      // when asked: there, the printer asked for first loads before the connection is begun.
      const result = loadOrder(project, args);
      expect(result.status, result.stderr).toBe(0);
      const connected = result.order.findIndex((event) => event.startsWith("connect ") && event.endsWith(".sock"));
      expect(connected, `${args.join(" ")}: ${result.order.join("\n")}`).toBeGreaterThanOrEqual(0);
      for (const printer of ["cli/session/status.js", "cli/output.js"]) {
        const compiled = result.order.indexOf(join(REPO_ROOT, "dist", printer));
        expect(compiled, `${args.join(" ")}: ${printer}: ${result.order.join("\n")}`).toBeGreaterThan(connected);
      }
      // The report is the whole one, as printed without them.
      if (args.includes("--json")) expect(JSON.parse(result.stdout)).toMatchObject({ session: { status: "active" }, agents: [{ name: "alpha" }] });
      else expect(result.stdout).toMatch(/^Session \S+ {2}active\n[\s\S]*\nalpha +running /);
    }
  });

  it("runs from its bundle (dist/bundle/status.cjs), which holds every module a running session's status runs: none loads from its own file", () => {
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait" }), "apex-status-fast-");
    project.start(["--task", "status fast path"]);
    for (const args of [["status"], ["status", "--json"]]) {
      const modules = loadOrder(project, args);
      expect(modules.loaded.map((path) => relative(join(REPO_ROOT, "dist"), path)), args.join(" ")).toEqual(expect.arrayContaining(["cli/status-main.js", "cli/session/status.js", "cli/output.js"]));
      const bundled = loadOrder(project, args, {});
      expect(bundled.status, bundled.stderr).toBe(0);
      // The same report (its times and uptimes aside: a second may have passed).
      const report = (stdout: string) => stdout.replace(/\d+/g, "N");
      expect(report(bundled.stdout)).toBe(report(modules.stdout));
      // Its loader as CommonJS, which a hook of ES modules sees on Node 22 and later, and the bundle, which V8's report names on Node 20;
      // Node's own compile cache turned on first where Node has one (22 and later).
      const others = bundled.loaded.map((path) => relative(join(REPO_ROOT, "dist"), path)).filter((path) => !["cli/bundle.cjs", "bundle/status.cjs", "core/compile-cache.js"].includes(path));
      expect(others, args.join(" ")).toEqual([]);
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
    const result = loadOrder(project, ["status"]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.loaded.length).toBeGreaterThan(5);
    // In a literal, `\p{` follows no other backslash; in a string given to new RegExp (made when first needed), it is written `\\p{`.
    const withLiteral = result.loaded.filter((path) => /(?<!\\)\\p\{/.test(readFileSync(path, "utf8")));
    expect(withLiteral.map((path) => relative(join(REPO_ROOT, "dist"), path))).toEqual([]);
  });
});
