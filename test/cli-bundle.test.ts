// The full CLI runs from its one-file bundle (dist/bundle/cli.cjs, scripts/bundle.mjs) with a V8
// code cache kept between runs (cli/bundle.ts): the same commands, output and errors as its ES
// modules (APEX_BUNDLE=0), a cache per command group written by the first command that succeeds
// and used by the next, and one that does not fit replaced.
import { isAscii } from "node:buffer";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pathTag } from "../dist/cli/bundle.js";
import { supervisorProgram } from "../dist/cli/session/launch.js";
import { APEX_BIN, REPO_ROOT, cleanEnv } from "./helpers/cli.js";

let dir: string;
let cache: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "apex-cli-bundle-"));
  cache = join(dir, "cache");
  mkdirSync(join(dir, "project/plugins"), { recursive: true });
  // A third-party plugin, an ES module: the bundle's one import() of a file that is not its own.
  copyFileSync(join(REPO_ROOT, "test/fixtures/plugins/hello.mjs"), join(dir, "project/plugins/hello.mjs"));
  // One that throws APEX's error, imported from the package as a plugin author does: the package's modules, not the bundle's.
  writeFileSync(
    join(dir, "project/plugins/thrower.mjs"),
    'import { ApexError } from "apex-sessions";\nexport default { name: "thrower", version: "1.0.0", apply(apex) { apex.registerCommand({ name: "boom", description: "fails", action() { throw new ApexError("APEX_E_NOT_FOUND", "Nothing to boom here.", { hint: "Boom elsewhere." }); } }); } };\n',
  );
  // One with a bug of its own (a TypeError), which APEX reports as the plugin's failure.
  writeFileSync(join(dir, "project/plugins/crasher.mjs"), 'export default { name: "crasher", version: "1.0.0", apply(apex) { apex.registerCommand({ name: "crash", description: "fails", action() { return crash(null); } }); } };\nfunction crash(value) {\n  return value.field;\n}\n');
  mkdirSync(join(dir, "project/node_modules"));
  symlinkSync(REPO_ROOT, join(dir, "project/node_modules/apex-sessions"));
  writeFileSync(join(dir, "project/apex.config.yaml"), "plugins:\n  checkpoint: {}\n  ./plugins/hello.mjs:\n    greeting: Hi\n  ./plugins/thrower.mjs: {}\n  ./plugins/crasher.mjs: {}\n");
  // The files loaded by require() (bin/apex.js requires the bundles' loader), which a loader hook of ES modules does not see on Node 20.
  writeFileSync(
    join(dir, "required.cjs"),
    'const Module = require("node:module");\nconst { writeSync } = require("node:fs");\nconst { pathToFileURL } = require("node:url");\nconst load = Module._load;\nModule._load = function (request, parent, isMain) {\n  const loaded = load.apply(this, arguments);\n  const file = Module._resolveFilename(request, parent, isMain);\n  if (file.startsWith("/")) writeSync(2, "LOADED " + pathToFileURL(file).href + "\\n");\n  return loaded;\n};\n',
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The built CLI in the project, with its own cache directory; `modules`: the files of APEX's it loaded (loader hooks report them). */
function apex(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string; modules: string[] } {
  const hook = `data:text/javascript,${encodeURIComponent('import { register } from "node:module"; register("data:text/javascript," + encodeURIComponent("import { writeSync } from \\"node:fs\\"; export async function load(url, context, next) { writeSync(2, \\"LOADED \\" + url + \\"\\\\n\\"); return next(url, context); }"));')}`;
  const result = spawnSync(process.execPath, ["--require", join(dir, "required.cjs"), "--import", hook, APEX_BIN, ...args], { cwd: join(dir, "project"), env: { ...cleanEnv(), NO_COLOR: "1", XDG_CACHE_HOME: cache, ...env }, encoding: "utf8" });
  const lines = result.stderr.split("\n");
  const modules = [...new Set(lines.filter((line) => line.startsWith("LOADED file:")).map((line) => relative(REPO_ROOT, new URL(line.slice(7)).pathname)))];
  return { status: result.status, stdout: result.stdout, stderr: lines.filter((line) => !line.startsWith("LOADED ")).join("\n"), modules };
}

const cacheFiles = () => {
  try {
    return readdirSync(join(cache, "apex/code-cache")).sort();
  } catch {
    return [];
  }
};
/**
 * The rule each of the bundles' loaders follows, checked through `choose`: the bundle while it exists and is
 * not older than tsc's last build of the modules (`buildInfo`), else what it gives way to.
 */
function expectBundleWhileCurrent(choose: () => string, files: { bundle: string; buildInfo: string }, answers: { bundle: string; otherwise: string }): void {
  const at = (file: string, seconds: number) => utimesSync(file, seconds, seconds);
  at(files.buildInfo, 1_000_000);
  at(files.bundle, 1_000_010);
  expect(choose()).toBe(answers.bundle);
  // tsc built the modules again after the bundle was made (`tsc -b` alone): the bundle is stale.
  at(files.buildInfo, 1_000_020);
  expect(choose()).toBe(answers.otherwise);
  rmSync(files.buildInfo);
  expect(choose()).toBe(answers.bundle);
  rmSync(files.bundle);
  expect(choose()).toBe(answers.otherwise);
}

// With the tag of the bundle's path: V8's cache keeps the file name it was made with (stack traces gave another checkout's path).
const BUNDLE_HASH = `${/^\/\/ apex-bundle ([0-9a-f]{16})/.exec(readFileSync(join(REPO_ROOT, "dist/bundle/cli.cjs"), "utf8"))![1]!}-${pathTag(join(REPO_ROOT, "dist/bundle/cli.cjs"))}`;

describe("the CLI's one-file bundle", () => {
  it("is what the built CLI runs, with the same output and errors as its modules, a third-party ES module plugin included", () => {
    for (const args of [["plugins", "list", "--json"], ["hello", "--name", "x"], ["config", "validate", "--json"], ["checkpoint", "list", "--json"], ["nosuch"], ["boom"], ["--help"]]) {
      const bundled = apex(args);
      const modules = apex(args, { APEX_BUNDLE: "0" });
      expect({ status: bundled.status, stdout: bundled.stdout, stderr: bundled.stderr }, args.join(" ")).toEqual({ status: modules.status, stdout: modules.stdout, stderr: modules.stderr });
      // Of the CLI's modules, only the bundles' loader, as CommonJS (the plugin that imports "apex-sessions" loads the package's core modules).
      expect(bundled.modules.filter((file) => file.startsWith("dist/cli/")), args.join(" ")).toEqual(["dist/cli/bundle.cjs"]);
      expect(modules.modules, args.join(" ")).toContain("dist/cli/main.js");
      // commander, yaml's bundle and the validators are in the bundle too (scripts/bundle.mjs INLINE_PACKAGES, HELD_FILES),
      // compiled with its cache: none is loaded from its file, as the modules load them. (tapable is too, but the plugin
      // that imports "apex-sessions" loads it with the package's engine.)
      const outside = (loaded: string[]) => loaded.filter((file) => /^(node_modules\/commander\/|dist\/vendor\/yaml\.cjs$|dist\/validators\/)/.test(file));
      expect(outside(bundled.modules), args.join(" ")).toEqual([]);
      expect(outside(modules.modules), args.join(" ")).toEqual(expect.arrayContaining(["node_modules/commander/index.js", "dist/vendor/yaml.cjs"]));
    }
    expect(JSON.parse(apex(["plugins", "list", "--json"]).stdout).plugins.find((plugin: { name: string }) => plugin.name === "hello")).toMatchObject({ version: "1.2.3" });
    expect(apex(["nosuch"]).status).toBe(2);
    // The plugin's ApexError is APEX's error to the bundle too: its code, exit code and hint, as the modules say it.
    const boom = apex(["boom"]);
    expect(boom.status).toBe(3);
    expect(boom.stderr).toBe("error[APEX_E_NOT_FOUND]: Nothing to boom here.\n  hint: Boom elsewhere.\n");
  });

  it("gives way to the modules under APEX_DEBUG, which prints where an error began: a plugin's bug at its line, APEX's error where APEX raised it", () => {
    const plain = apex(["crash"]);
    expect(plain.status).toBe(1);
    expect(plain.stderr).toMatch(/^error\[APEX_E_PLUGIN_FAILED\]: plugin crasher failed in command crash: Cannot read properties of null \(reading 'field'\)\n  hint: [^\n]*\n$/);
    for (const off of ["0", ""]) expect(apex(["crash"], { APEX_DEBUG: off }).stderr).toBe(plain.stderr);
    const debug = apex(["crash"], { APEX_DEBUG: "1" });
    expect(debug.status).toBe(1);
    // The message and hint as without it, then the plugin's own error with its frames: its file and line first.
    expect(debug.stderr.startsWith(plain.stderr)).toBe(true);
    const stack = debug.stderr.slice(plain.stderr.length);
    expect(stack).toMatch(/^TypeError: Cannot read properties of null \(reading 'field'\)\n +at crash \(file:\/\/[^\n]*\/project\/plugins\/crasher\.mjs:3:16\)\n/);
    // The CLI ran from its modules: the frames name their files, never the bundle's lines.
    expect(debug.modules).toContain("dist/cli/main.js");
    expect(stack).toMatch(/dist\/[a-z/-]+\.js:\d+:\d+/);
    expect(stack).not.toContain("dist/bundle/");
    // APEX's own error with --json (the project has no session yet): the stack in the report, where APEX raised it.
    const missing = apex(["checkpoint", "show", "nope", "--json"], { APEX_DEBUG: "1" });
    expect(missing.status).toBe(3);
    const report = JSON.parse(missing.stderr.trim()) as { error: { code: string }; stack: string };
    expect(report.error.code).toBe("APEX_E_NO_SESSION");
    expect(report.stack).toMatch(/^ApexError: [^\n]*\n +at [^\n]*dist\/plugins\/checkpoint\/[a-z-]+\.js:\d+:\d+/);
    expect(JSON.parse(apex(["checkpoint", "show", "nope", "--json"]).stderr.trim())).not.toHaveProperty("stack");
  });

  it("runs the fast paths of `apex status` and `apex pause`/`resume` from bundles of their own, with what their common run loads and the same output and errors", () => {
    for (const args of [["status"], ["status", "--json"], ["pause"], ["resume", "--json"]]) {
      const bundled = apex(args);
      const modules = apex(args, { APEX_BUNDLE: "0" });
      expect({ status: bundled.status, stdout: bundled.stdout, stderr: bundled.stderr }, args.join(" ")).toEqual({ status: modules.status, stdout: modules.stdout, stderr: modules.stderr });
      expect(modules.modules, args.join(" ")).toContain(args[0] === "status" ? "dist/cli/status-main.js" : "dist/cli/lifecycle-main.js");
      // The fast path is in its bundle. What it reads only with no session running (the config, to name what `apex start`
      // would refuse) or for an error's hint, its bundle does not hold: those modules come from the CLI's bundle, not from
      // their files (status-fast-path.e2e: a running session's status loads nothing more than its bundle).
      expect(bundled.modules, args.join(" ")).toContain("dist/cli/bundle.cjs");
      expect(modules.modules, args.join(" ")).toContain(args[0] === "status" ? "dist/cli/plugin-commands.js" : "dist/cli/archived-hint.js");
      // (The plugin that imports "apex-sessions" loads the package's core modules.)
      expect(bundled.modules.filter((file) => file.startsWith("dist/cli/")), args.join(" ")).toEqual(["dist/cli/bundle.cjs"]);
    }
    // No session: `apex status` succeeds, and keeps its cache and one of the CLI's bundle as it loaded it; `apex pause` fails.
    expect(apex(["status"]).status).toBe(0);
    expect(cacheFiles().filter((file) => /^(status|cli)-[0-9a-f]{16}-.*-status\.bin$/.test(file)).map((file) => file.split("-")[0]).sort()).toEqual(["cli", "status"]);
    expect(apex(["pause"]).status).not.toBe(0);
  });

  it("keeps a code cache per command group, written by the first command that succeeds and used by the next; one V8 refuses is replaced", () => {
    rmSync(cache, { recursive: true, force: true });
    // A command that fails writes none.
    expect(apex(["nosuch"]).status).toBe(2);
    expect(apex(["checkpoint", "show", "nope"]).status).toBe(3);
    expect(cacheFiles()).toEqual([]);
    expect(apex(["plugins", "list"]).status).toBe(0);
    const name = `cli-${BUNDLE_HASH}-${process.version}-${process.arch}-plugins.bin`;
    expect(cacheFiles()).toEqual([name]);
    const file = join(cache, "apex/code-cache", name);
    const written = statSync(file);
    expect(written.size).toBeGreaterThan(10_000);
    expect(written.mode & 0o777).toBe(0o600);
    // The next command of the group reads it and, V8 taking it, leaves it as it is (made again by none of the runs: see below).
    expect(apex(["plugins", "list"], { APEX_CODE_CACHE_REFRESH: "0" }).status).toBe(0);
    expect(statSync(file)).toMatchObject({ ino: written.ino, mtimeMs: written.mtimeMs });
    // Another group has its own.
    expect(apex(["config", "validate"]).status).toBe(0);
    expect(cacheFiles()).toEqual([`cli-${BUNDLE_HASH}-${process.version}-${process.arch}-config.bin`, name]);
    // Bytes that are no cache of this bundle: V8 refuses them, the command runs as without, and writes a cache anew.
    writeFileSync(file, Buffer.alloc(4096, 7));
    const again = apex(["plugins", "list", "--json"]);
    expect(again.status).toBe(0);
    expect(JSON.parse(again.stdout).plugins.length).toBeGreaterThan(8);
    expect(readFileSync(file).equals(Buffer.alloc(4096, 7))).toBe(false);
    expect(statSync(file).size).toBeGreaterThan(10_000);
    // Node's switch for its own compile cache turns this one off too: nothing read or written.
    rmSync(cache, { recursive: true, force: true });
    expect(apex(["plugins", "list"], { NODE_DISABLE_COMPILE_CACHE: "1" }).status).toBe(0);
    expect(cacheFiles()).toEqual([]);
  });

  it("makes its cache again in a share of the runs that used it (APEX_CODE_CACHE_REFRESH), kept when the run compiled more than it held", () => {
    rmSync(cache, { recursive: true, force: true });
    const size = () => {
      const [file, ...more] = cacheFiles().filter((name) => name.endsWith("-memory.bin"));
      expect(more).toEqual([]);
      return statSync(join(cache, "apex/code-cache", file!)).size;
    };
    expect(apex(["memory", "set", "/refresh", "1"]).status).toBe(0);
    const first = size();
    // In none of the runs: what `memory show` compiled besides is not kept.
    expect(apex(["memory", "show", "/refresh"], { APEX_CODE_CACHE_REFRESH: "0" }).status).toBe(0);
    expect(size()).toBe(first);
    // In every run: it is.
    expect(apex(["memory", "show", "/refresh"], { APEX_CODE_CACHE_REFRESH: "1" }).status).toBe(0);
    const grown = size();
    expect(grown).toBeGreaterThan(first);
    // A run that compiled nothing more leaves it as it was.
    expect(apex(["memory", "show", "/refresh"], { APEX_CODE_CACHE_REFRESH: "1" }).status).toBe(0);
    expect(size()).toBe(grown);
  });

  it("runs without a cache it cannot write: a cache directory that is a file changes nothing but the time", () => {
    rmSync(cache, { recursive: true, force: true });
    mkdirSync(join(cache, "apex"), { recursive: true });
    writeFileSync(join(cache, "apex/code-cache"), "not a directory");
    const result = apex(["plugins", "list", "--json"]);
    expect(result.status).toBe(0);
    expect(result.stderr).toBe("");
    expect(JSON.parse(result.stdout).plugins.length).toBeGreaterThan(8);
  });

  it("gives way to the modules when it is missing, older than tsc's last build of them, or APEX_BUNDLE=0", () => {
    // The loader laid out as in dist/ (cli/bundle.js, bundle/cli.cjs, .tsbuildinfo), with a bundle and modules that say which they are.
    const layout = join(dir, "layout");
    mkdirSync(join(layout, "cli"), { recursive: true });
    mkdirSync(join(layout, "bundle"));
    copyFileSync(join(REPO_ROOT, "dist/cli/bundle.js"), join(layout, "cli/bundle.js"));
    writeFileSync(join(layout, "package.json"), '{"type":"module"}');
    writeFileSync(join(layout, "cli/main.js"), 'export const from = "modules";\n');
    writeFileSync(join(layout, "bundle/cli.cjs"), '// apex-bundle 0123456789abcdef: a stand-in\nexports.from = "bundle";\n');
    writeFileSync(join(layout, ".tsbuildinfo"), "{}");
    const loaded = (env: NodeJS.ProcessEnv = {}) => {
      const script = `const { loadCli } = await import(${JSON.stringify(pathToFileURL(join(layout, "cli/bundle.js")).href)}); console.log((await loadCli()).from);`;
      const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { env: { ...cleanEnv(), XDG_CACHE_HOME: cache, ...env }, encoding: "utf8" });
      expect(result.stderr).toBe("");
      return result.stdout.trim();
    };
    expect(loaded({ APEX_BUNDLE: "0" })).toBe("modules");
    expectBundleWhileCurrent(loaded, { bundle: join(layout, "bundle/cli.cjs"), buildInfo: join(layout, ".tsbuildinfo") }, { bundle: "bundle", otherwise: "modules" });
  });

  it("is loaded by bin/apex.js through its loader as CommonJS while that is not older than tsc's last build, else through its ES module", () => {
    // bin/apex.js laid out as in the package, with loaders that say which they are.
    const layout = join(dir, "bin-layout");
    mkdirSync(join(layout, "bin"), { recursive: true });
    mkdirSync(join(layout, "dist/cli"), { recursive: true });
    for (const file of ["bin/apex.js", "bin/package.json"]) copyFileSync(join(REPO_ROOT, file), join(layout, file));
    writeFileSync(join(layout, "package.json"), '{"type":"module"}');
    const stand = (from: string) => `{ loadCli: async () => ({ main: async () => { console.log("${from}"); return 0; }, reportOutputError: () => 1, reportUnhandledRejection() {} }) }`;
    writeFileSync(join(layout, "dist/cli/bundle.cjs"), `module.exports = ${stand("commonjs")};\n`);
    writeFileSync(join(layout, "dist/cli/bundle.js"), `export const { loadCli } = ${stand("es module")};\n`);
    writeFileSync(join(layout, "dist/.tsbuildinfo"), "{}");
    mkdirSync(join(layout, "dist/core"));
    writeFileSync(join(layout, "dist/core/compile-cache.js"), "export function enableCompileCache() {}\n"); // loaded first on Node 22 and later
    const loaded = () => {
      const result = spawnSync(process.execPath, [join(layout, "bin/apex.js"), "x"], { env: { ...cleanEnv(), NODE_DISABLE_COMPILE_CACHE: "1" }, encoding: "utf8" });
      expect(result.stderr).toBe("");
      return result.stdout.trim();
    };
    expectBundleWhileCurrent(loaded, { bundle: join(layout, "dist/cli/bundle.cjs"), buildInfo: join(layout, "dist/.tsbuildinfo") }, { bundle: "commonjs", otherwise: "es module" });
  });

  it("is ASCII only as built, which the loader reads as Latin-1; a bundle with other bytes is read as UTF-8", () => {
    for (const name of ["cli", "status", "lifecycle", "supervisor"]) expect(isAscii(readFileSync(join(REPO_ROOT, `dist/bundle/${name}.cjs`))), name).toBe(true);
    // The real loader, with bundles of its own: one ASCII only (its text escaped), one with UTF-8 in a string and a regular expression.
    const layout = join(dir, "text-layout");
    mkdirSync(join(layout, "bin"), { recursive: true });
    mkdirSync(join(layout, "dist/cli"), { recursive: true });
    mkdirSync(join(layout, "dist/bundle"), { recursive: true });
    for (const file of ["bin/apex.js", "bin/package.json", "dist/cli/bundle.cjs"]) copyFileSync(join(REPO_ROOT, file), join(layout, file));
    writeFileSync(join(layout, "package.json"), '{"type":"module"}');
    mkdirSync(join(layout, "dist/core"));
    writeFileSync(join(layout, "dist/core/compile-cache.js"), "export function enableCompileCache() {}\n");
    const bundleOf = (text: string) => `// apex-bundle 0123456789abcdef: a test's\nmodule.exports = { main: async () => { console.log(${text}); return 0; }, reportOutputError: () => 1, reportUnhandledRejection() {} };\n`;
    const run = () => spawnSync(process.execPath, [join(layout, "bin/apex.js"), "x"], { env: { ...cleanEnv(), XDG_CACHE_HOME: join(layout, "cache") }, encoding: "utf8" });
    for (const text of ['"caf\\u00e9 \\u2713", /[\\u2026]$/.test("so\\u2026")', '"café ✓", /[…]$/.test("so…")']) {
      writeFileSync(join(layout, "dist/bundle/cli.cjs"), bundleOf(text));
      const result = run();
      expect(result.stderr, text).toBe("");
      expect(result.stdout, text).toBe("café ✓ true\n");
    }
  });

  it("runs the supervisor through the loader as a program (its bundle), and from its module when the loader is missing or older than tsc's last build", () => {
    const layout = join(dir, "supervisor-layout");
    mkdirSync(layout, { recursive: true });
    const [loader, buildInfo] = [join(layout, "bundle.cjs"), join(layout, ".tsbuildinfo")];
    writeFileSync(loader, "");
    writeFileSync(buildInfo, "{}");
    expectBundleWhileCurrent(() => supervisorProgram(loader, buildInfo), { bundle: loader, buildInfo }, { bundle: loader, otherwise: join(REPO_ROOT, "dist/core/session/supervisor-main.js") });
    // As built: the loader beside its ES module.
    expect(supervisorProgram()).toBe(join(REPO_ROOT, "dist/cli/bundle.cjs"));
  });
});
