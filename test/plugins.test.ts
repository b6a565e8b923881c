import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../core/config/load.js";
import { locateProject } from "../core/config/locate.js";
import type { Engine, SessionContext, TaskContext } from "../core/engine.js";
import { commandContext } from "./support/command-context.js";
import { ApexError } from "../core/errors.js";
import { loadPlugins } from "../core/plugins.js";
import { cleanEnv, REPO_ROOT, runApex, tempDir } from "./helpers/cli.js";

const FIXTURES = join(REPO_ROOT, "test/fixtures/plugins");
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A temp project with this apex.config.yaml (and extra files); messages name files relative to it. */
function project(yaml: string, files: Record<string, string> = {}): string {
  const { dir, cleanup } = tempDir("apex-plugins-");
  cleanups.push(cleanup);
  writeFileSync(join(dir, "apex.config.yaml"), yaml);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

/** A fixture plugin as a config key: its path relative to the project (it imports tapable from the repo). */
const fixture = (dir: string, name: string) => relative(dir, join(FIXTURES, name));

async function load(dir: string, tapTimeoutMs?: number): Promise<Engine> {
  const config = await loadConfig(locateProject({ cwd: dir, env: {} }), { env: {}, cwd: dir });
  return loadPlugins(config, { warn: () => {}, ...(tapTimeoutMs ? { tapTimeoutMs } : {}) });
}

async function loadError(dir: string): Promise<ApexError> {
  const error = await load(dir).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(ApexError);
  return error as ApexError;
}

const session = (): SessionContext & Record<string, any> => ({ sessionId: "s-1", session: {} });
const taskOf = (context: SessionContext, id: string): TaskContext => ({ ...context, task: { id, title: `task ${id}` } });

describe("loading plugins from the config", () => {
  it("loads only the built-ins the config names, and not the CLI's command modules (a new process, the built code)", () => {
    const dir = project("plugins:\n  checkpoint: {}\n  git: false\n");
    // A loader hook reports every module the process loads (writeSync: the hooks run on their own thread, whose
    // process.stderr Node 24 may not flush before the process exits); the process loads the config and applies its plugins.
    const hook = `data:text/javascript,${encodeURIComponent('import { register } from "node:module"; register("data:text/javascript," + encodeURIComponent("import { writeSync } from \\"node:fs\\"; export async function load(url, context, next) { writeSync(2, \\"LOADED \\" + url + \\"\\\\n\\"); return next(url, context); }"));')}`;
    const script = [
      `const { loadConfig } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/config/load.js"))});`,
      `const { locateProject } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/config/locate.js"))});`,
      `const { loadPlugins } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/plugins.js"))});`,
      `const engine = await loadPlugins(await loadConfig(locateProject({ cwd: ${JSON.stringify(dir)} })));`,
      `console.log(JSON.stringify(engine.plugins.map((plugin) => [plugin.name, plugin.enabled])));`,
    ].join("\n");
    const result = spawnSync(process.execPath, ["--import", hook, "--input-type=module", "-e", script], { cwd: dir, encoding: "utf8" });
    expect(result.status, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([["checkpoint", true], ["git", false]]);
    const loaded = result.stderr.split("\n").filter((line) => line.startsWith("LOADED ")).map((line) => relative(join(REPO_ROOT, "dist"), new URL(line.slice(7)).pathname));
    expect(loaded).toContain("plugins/checkpoint/index.js");
    expect(loaded).toContain("plugins/git/index.js"); // named (disabled): listed as the config has it
    for (const name of ["retention", "compression", "sharing", "metrics", "history", "archive"]) expect(loaded).not.toContain(`plugins/${name}/index.js`);
    // The command groups and the CLI's command modules stay out (the checkpoint plugin's list printing uses cli/output.js, and it the terminal-safe text of cli/terminal-text.js).
    const printing = ["cli/output.js", "cli/terminal-text.js"];
    expect(loaded.filter((file) => (file.startsWith("cli/") && !printing.includes(file)) || file === "plugins/commands.js" || file.endsWith("/cli.js"))).toEqual([]);
  });

  it("without a plugins section, loads the default built-ins", async () => {
    const engine = await load(project("session:\n  max_checkpoints: 10\n"));
    expect(engine.plugins.map((plugin) => [plugin.name, plugin.source.label, plugin.enabled])).toEqual([
      ["checkpoint", "built-in", true],
      ["retention", "built-in", true],
      ["git", "built-in", true],
      ["metrics", "built-in", true],
      ["history", "built-in", true],
      ["compression", "built-in", true],
      ["archive", "built-in", true],
    ]);
  });

  it("a built-in that fails at start: the hint says where its entry is, and for the shipped default list that it is APEX's file, not the project's (the built code, run in the project as the supervisor is)", () => {
    /**
     * The hint of metrics failing in onStart on its own (not the store's APEX_E_STORE, which is
     * reported as the store's): each read of its store fails as a disk does.
     */
    const failingHint = (dir: string): string => {
      const script = [
        `const { loadConfig } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/config/load.js"))});`,
        `const { locateProject } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/config/locate.js"))});`,
        `const { loadPlugins } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/plugins.js"))});`,
        `const { openStore } = await import(${JSON.stringify(join(REPO_ROOT, "dist/core/store/open.js"))});`,
        "const location = locateProject({ cwd: process.cwd(), env: {} });",
        "const store = await openStore(location);",
        "const engine = await loadPlugins(await loadConfig(location, { env: {} }), { store, warn: () => {} });",
        'for (let p = Object.getPrototypeOf(store); p && p !== Object.prototype; p = Object.getPrototypeOf(p)) for (const name of Object.getOwnPropertyNames(p)) if (name !== "constructor" && typeof store[name] === "function") store[name] = () => { throw new Error("EIO: i/o error, read"); };',
        'const error = await engine.fire("onStart", { sessionId: "s-1", session: {} }).then(() => undefined, (thrown) => thrown);',
        "console.log(JSON.stringify({ code: error?.code, message: error?.message, hint: error?.hint }));",
      ].join("\n");
      const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: dir, encoding: "utf8", env: cleanEnv() });
      expect(result.status, result.stderr).toBe(0);
      const error = JSON.parse(result.stdout) as { code: string; message: string; hint: string };
      expect(error).toMatchObject({ code: "APEX_E_PLUGIN_FAILED", message: expect.stringMatching(/^plugin metrics failed in onStart: /) });
      return error.hint;
    };
    const shipped = join(REPO_ROOT, "apex.config.yaml");
    const line = readFileSync(shipped, "utf8").split("\n").findIndex((text) => text.startsWith("  metrics:")) + 1;
    expect(line).toBeGreaterThan(0);
    // A config without `plugins:`: the list is the shipped default config's, named by its path.
    const hint = failingHint(project("session:\n  max_checkpoints: 50\n"));
    expect(hint).toBe(
      `The plugin metrics (built-in) caused this: report it to its author. It is on because the plugin list comes from APEX's shipped default config (${shipped}:${line}:3): apex.config.yaml has no \`plugins:\` section. To run without it, add a \`plugins:\` section to apex.config.yaml that lists the plugins to keep (\`apex config show\` shows them) and \`metrics: false\`.`,
    );
    // No config file at all: the same, and the file to write is a new one.
    const bare = tempDir("apex-plugins-");
    cleanups.push(bare.cleanup);
    expect(failingHint(bare.dir)).toContain(`(${shipped}:${line}:3): the project has no apex.config.yaml. To run without it, add a \`plugins:\` section to a new apex.config.yaml`);
    // A config that lists it: its own line, as before.
    expect(failingHint(project("plugins:\n  checkpoint: {}\n  metrics: {}\n"))).toBe(
      "The plugin metrics (built-in) caused this: report it to its author, or set it to false under `plugins:` at apex.config.yaml:3:3 to run without it.",
    );
  });

  it("an unknown name gets a did-you-mean against the built-ins", async () => {
    const error = await loadError(project("plugins:\n  checkpoint: {}\n  retension:\n    keep_last: 3\n"));
    expect(error.code).toBe("APEX_E_PLUGIN_UNKNOWN");
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe("Unknown plugin 'retension' at apex.config.yaml:3:3. Did you mean 'retention'?");
    expect(error.hint).toContain("npm install retension");
  });

  it("a missing dependency is named exactly, with where and how to enable it", async () => {
    const missing = await loadError(project("plugins:\n  checkpoint: {}\n  sharing: {}\n"));
    expect(missing.code).toBe("APEX_E_PLUGIN_DEPENDENCY");
    expect(missing.message).toBe("The dependency 'git' of plugin 'sharing' is not enabled (plugin 'sharing' is enabled at apex.config.yaml:3:3).");
    expect(missing.hint).toBe("Enable the built-in plugin 'git' under `plugins:` in apex.config.yaml.");

    const disabled = await loadError(project("plugins:\n  git: false\n  sharing: {}\n"));
    expect(disabled.message).toMatch(/^The dependency 'git' of plugin 'sharing' is not enabled/);
    expect(disabled.hint).toBe("'git' is disabled at apex.config.yaml:2:3: enable it there.");
  });

  it("applies a plugin's dependencies first; otherwise taps run in config order", async () => {
    const recorder = (name: string) =>
      `export default { name: "${name}", apply(apex) { apex.hooks.onStart.tapPromise("${name}", async (ctx) => { (ctx.session.order ??= []).push("${name}"); }); } };\n`;
    const files = { "order/c.mjs": recorder("c"), "order/a.mjs": recorder("a"), "order/b.mjs": recorder("b") };
    for (const order of [
      ["c", "a", "b"],
      ["b", "c", "a"],
    ]) {
      const engine = await load(project(`plugins:\n${order.map((name) => `  ./order/${name}.mjs: {}\n`).join("")}`, files));
      const context = session();
      await engine.fire("onStart", context);
      expect(context.session.order).toEqual(order);
    }
  });

  it("refuses the same plugin loaded twice through two paths", async () => {
    const dir = project("");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "hello.mjs")}: {}\n  ${fixture(dir, "hello-again.mjs")}: {}\n`);
    const error = await loadError(dir);
    expect(error.code).toBe("APEX_E_PLUGIN_DUPLICATE");
    expect(error.message).toBe(
      `Plugin 'hello' is configured twice: as ${fixture(dir, "hello.mjs")} at apex.config.yaml:2:3 and as ${fixture(dir, "hello-again.mjs")} at apex.config.yaml:3:3.`,
    );
  });

  it("refuses a third-party plugin that takes a built-in's name", async () => {
    const error = await loadError(project("plugins:\n  ./git.mjs: {}\n", { "git.mjs": `export default { name: "git", apply() {} };\n` }));
    expect(error.code).toBe("APEX_E_PLUGIN_DUPLICATE");
    expect(error.message).toBe("The plugin ./git.mjs at apex.config.yaml:2:3 is named 'git', like the built-in plugin 'git'.");
  });

  it("blames a broken options schema on the plugin, not on the config", async () => {
    const dir = project("");
    const path = fixture(dir, "broken-schema.mjs");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${path}: {}\n`);
    const error = await loadError(dir);
    expect(error.code).toBe("APEX_E_PLUGIN_SCHEMA");
    expect(error.message).toMatch(
      new RegExp(`^Plugin 'broken-schema' \\(${escape(path)}\\) ships an invalid options schema: /type .+ — this is a bug in the plugin, not in your config\\.$`),
    );
  });

  it.each([
    ["not-a-plugin.mjs", "`apply` must be a function (apex, options) => void"],
    ["no-default.mjs", "it has no default export"],
    ["class.mjs", "its default export is a function; export the plugin object itself"],
    ["nameless.mjs", "`name` must be a non-empty string without spaces"],
  ])("reports a module that does not export a valid plugin: %s", async (file, problem) => {
    const dir = project(`plugins:\n  ./${file}: {}\n`, {
      "no-default.mjs": "export const name = 'x';\n",
      "class.mjs": "export default class Plugin { apply() {} }\n",
      "nameless.mjs": "export default { name: 'has space', apply() {} };\n",
    });
    if (file === "not-a-plugin.mjs") copyFileSync(join(FIXTURES, file), join(dir, file));
    const error = await loadError(dir);
    expect(error.code).toBe("APEX_E_PLUGIN_INVALID");
    expect(error.message).toBe(`The module ./${file} at apex.config.yaml:2:3 does not export a valid APEX plugin: ${problem}.`);
  });

  it("reports a plugin module that fails to load, and a missing plugin file", async () => {
    const throwingDir = project("plugins:\n  ./throws.mjs: {}\n", { "throws.mjs": "// connects at load\nthrow new Error('no database');\n" });
    const throwing = await loadError(throwingDir);
    expect(throwing.code).toBe("APEX_E_PLUGIN_INVALID");
    expect(throwing.exitCode).toBe(2);
    expect(throwing.message).toBe(`The plugin ./throws.mjs at apex.config.yaml:2:3 could not be loaded: no database (${join(throwingDir, "throws.mjs")}:2:7)`);

    // A syntax error names its line and column, which Node's own message leaves out (the built CLI: vitest parses modules itself).
    const syntaxDir = project("plugins:\n  ./broken.mjs: {}\n", { "broken.mjs": "export default {\n  name: 'broken',\n  apply() { const x = ; },\n};\n" });
    const syntax = runApex(["config", "validate"], { cwd: syntaxDir });
    expect(syntax.stderr).toContain(`error[APEX_E_PLUGIN_INVALID]: The plugin ./broken.mjs at apex.config.yaml:2:3 could not be loaded: Unexpected token ';' (${join(syntaxDir, "broken.mjs")}:3:23)`);
    expect(syntax.status).toBe(2);
    expect(existsSync(join(syntaxDir, ".apex"))).toBe(false);

    // A top-level await that nothing settles: before, the import stayed pending, nothing was left to run, and Node exited 0 (nothing written, nothing said).
    const stalledDir = project("plugins:\n  ./stalled.mjs: {}\n", { "stalled.mjs": "await new Promise(() => {});\nexport default { name: 'stalled', apply() {} };\n" });
    const stalled = runApex(["memory", "set", "/x", "1"], { cwd: stalledDir });
    expect(stalled.stderr).toContain("error[APEX_E_PLUGIN_INVALID]: The plugin ./stalled.mjs at apex.config.yaml:2:3 could not be loaded: its top-level code awaits something that never settles");
    expect(stalled.status).toBe(2);
    expect(existsSync(join(stalledDir, ".apex"))).toBe(false);

    // A module or an apply that throws something not an Error (undefined, null, a plain object): before, `throw undefined` at load
    // crashed the command (APEX_E_INTERNAL "Cannot read properties of undefined", exit 1) and the others read "undefined" or "[object Object]".
    for (const [thrown, says] of [["undefined", "threw undefined, not an Error"], ["null", "threw null, not an Error"], ["{ reason: 'no db' }", "threw { reason: 'no db' }, not an Error"]]) {
      const atLoad = project("plugins:\n  ./odd.mjs: {}\n", { "odd.mjs": `throw ${thrown};\nexport default { name: 'odd', apply() {} };\n` });
      const loaded = runApex(["config", "validate", "--json"], { cwd: atLoad });
      expect(JSON.parse(loaded.stdout).errors).toMatchObject([{ code: "APEX_E_PLUGIN_INVALID", message: expect.stringContaining(`could not be loaded: ${says}`) }]);
      expect(loaded.status).toBe(2);
      const inApply = project("plugins:\n  ./odd.mjs: {}\n", { "odd.mjs": `export default { name: 'odd', apply() { throw ${thrown}; } };\n` });
      expect((await loadError(inApply)).message).toBe(`plugin odd failed in apply: ${says}`);
    }

    // One that throws in apply cannot be loaded either: exit 2, as when it throws on import (before, APEX_E_PLUGIN_FAILED, exit 1).
    const applying = await loadError(project("plugins:\n  ./apply.mjs: {}\n", { "apply.mjs": "export default { name: 'apply', apply() { throw new Error('no token'); } };\n" }));
    expect(applying).toMatchObject({ code: "APEX_E_PLUGIN_INVALID", exitCode: 2, message: "plugin apply failed in apply: no token" });
    expect(applying.hint).toContain("set it to false under `plugins:` at apex.config.yaml:2:3");

    const dir = project("plugins:\n  ./nowhere.mjs: {}\n  ./lib/: {}\n", { "lib/index.mjs": "export default { name: 'lib', apply() {} };\n" });
    const missing = await loadError(dir);
    expect(missing.code).toBe("APEX_E_PLUGIN_UNKNOWN");
    expect(missing.message).toBe(`The plugin file ./nowhere.mjs at apex.config.yaml:2:3 does not exist (looked for ${join(dir, "nowhere.mjs")}).`);
    // A directory is there: before, it was said not to exist.
    writeFileSync(join(dir, "nowhere.mjs"), "export default { name: 'nowhere', apply() {} };\n");
    const directory = await loadError(dir);
    expect(directory).toMatchObject({ code: "APEX_E_PLUGIN_UNKNOWN", exitCode: 2 });
    expect(directory.message).toBe(`The plugin file ./lib/ at apex.config.yaml:3:3 is a directory, not a module file (looked for ${join(dir, "lib")}).`);
    expect(directory.hint).toContain("./my-plugin/index.mjs");
  });

  it("loads CommonJS plugins: module.exports, and exports.default as TypeScript and Babel compile `export default` (the built CLI: vitest's loader unwraps `__esModule` itself, Node does not); a timer a plugin starts does not keep the command from ending", () => {
    const dir = project("plugins:\n  ./plain.cjs: {}\n  ./compiled.cjs: {}\n", {
      // It flushes every second from apply, as a metrics plugin might: before, `apex plugins list` never exited.
      "plain.cjs": "module.exports = { name: 'plain', apply(apex) { setInterval(() => {}, 1000); apex.hooks.onStop.tapPromise('plain', async () => {}); } };\n",
      // What tsc writes for `export default definePlugin({ … })` with "module": "commonjs".
      "compiled.cjs": [
        '"use strict";',
        'Object.defineProperty(exports, "__esModule", { value: true });',
        "exports.default = { name: 'compiled', version: '1.0.0', apply(apex) { apex.hooks.onStart.tapPromise('compiled', async () => {}); } };",
        "",
      ].join("\n"),
    });
    const result = runApex(["plugins", "list", "--json"], { cwd: dir, timeout: 15_000 });
    expect(result.status, result.stderr).toBe(0);
    const { plugins } = JSON.parse(result.stdout) as { plugins: Array<{ name: string; version: string | null; enabled: boolean; hooks: string[] }> };
    expect(plugins.filter((row) => row.enabled).map(({ name, version, hooks }) => [name, version, hooks])).toEqual([
      ["plain", null, ["onStop"]],
      ["compiled", "1.0.0", ["onStart"]],
    ]);
  });

  it("checks third-party options against the plugin's schema, pointing at file:line:col", async () => {
    const dir = project("");
    const path = fixture(dir, "hello.mjs");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${path}:\n    greeting: 42\n    colour: red\n`);
    const error = await loadError(dir);
    expect(error.code).toBe("APEX_E_PLUGIN_OPTIONS");
    expect(error.exitCode).toBe(2);
    const lines = error.message.split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^apex\\.config\\.yaml:3:15: plugins\\["${escape(path)}"\\]\\.greeting: must be a string`));
    expect(lines[1]).toMatch(new RegExp(`^apex\\.config\\.yaml:4:5: plugins\\["${escape(path)}"\\]\\.colour: unknown option`));
  });

  it("fills third-party option defaults from the plugin's schema", async () => {
    const dir = project("");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "hello.mjs")}: {}\n`);
    const engine = await load(dir);
    expect(engine.plugin("hello")?.options).toEqual({ greeting: "Hello" });
  });

  it("a plugin without a schema takes no options", async () => {
    const error = await loadError(project("plugins:\n  ./bare.mjs:\n    level: 3\n", { "bare.mjs": "export default { name: 'bare', apply() {} };\n" }));
    expect(error.code).toBe("APEX_E_PLUGIN_OPTIONS");
    expect(error.message).toMatch(/^apex\.config\.yaml:3:5: plugins\["\.\/bare\.mjs"\]\.level: unknown option/);
  });

  it("resolves an npm package from the project, including ESM-only packages", async () => {
    const dir = project("plugins:\n  apex-plugin-esm-only:\n    level: 2\n", {
      "node_modules/apex-plugin-esm-only/package.json": JSON.stringify({
        name: "apex-plugin-esm-only",
        version: "3.0.0",
        type: "module",
        exports: { ".": { import: "./lib/plugin.js" } },
      }),
      "node_modules/apex-plugin-esm-only/lib/plugin.js": [
        "export default {",
        "  name: 'esm-only', version: '3.0.0',",
        "  schema: { type: 'object', properties: { level: { type: 'integer' } }, additionalProperties: false },",
        "  apply(apex, options) { apex.hooks.onStop.tapPromise('esm-only', async () => {}); },",
        "};",
      ].join("\n"),
    });
    const engine = await load(dir);
    expect(engine.plugin("esm-only")).toMatchObject({
      version: "3.0.0",
      enabled: true,
      options: { level: 2 },
      source: { kind: "npm", label: "npm:apex-plugin-esm-only", file: join(dir, "node_modules/apex-plugin-esm-only/lib/plugin.js") },
    });
    expect(engine.tapsOf("esm-only")).toEqual(["onStop"]);
  });

  it("a bare name ending in .js is the file beside the config when there is one, else the npm package so named (as chart.js is)", async () => {
    const files = {
      "node_modules/apex-thing.js/package.json": JSON.stringify({ name: "apex-thing.js", main: "index.js" }),
      "node_modules/apex-thing.js/index.js": 'module.exports = { name: "thing", apply() {} };\n',
    };
    // Before: "The plugin file apex-thing.js at apex.config.yaml:2:3 does not exist" (APEX_E_PLUGIN_UNKNOWN), the package installed.
    const dir = project("plugins:\n  apex-thing.js: {}\n", files);
    expect((await load(dir)).plugin("thing")?.source).toEqual({ kind: "npm", label: "npm:apex-thing.js", file: join(dir, "node_modules/apex-thing.js/index.js") });
    const beside = project("plugins:\n  apex-thing.js: {}\n", { ...files, "apex-thing.js": 'export default { name: "local-thing", apply() {} };\n' });
    expect((await load(beside)).plugin("local-thing")?.source).toMatchObject({ kind: "file", label: "file:apex-thing.js" });
    // Neither: the file is what is missing, as before.
    expect((await loadError(project("plugins:\n  other.js: {}\n"))).message).toContain("The plugin file other.js at apex.config.yaml:2:3 does not exist");
  });

  it("lists a disabled plugin that is not installed instead of failing", async () => {
    const engine = await load(project("plugins:\n  git: {}\n  not-installed-here: false\n"));
    expect(engine.plugin("not-installed-here")).toMatchObject({ enabled: false, source: { label: "npm:not-installed-here" } });
    expect(engine.plugin("not-installed-here")?.problem).toBe("Unknown plugin 'not-installed-here' at apex.config.yaml:3:3.");
  });

  it("never imports a disabled third-party plugin (a file or an npm package): its module's code does not run", () => {
    // Each module records that it ran; before, every command that loaded the plugins imported the disabled ones too.
    const ran = (name: string) => `import { appendFileSync } from "node:fs";\nappendFileSync(${JSON.stringify("RAN")}, "${name}\\n");\nexport default { name: "${name}", apply() {} };\n`;
    const dir = project("plugins:\n  checkpoint: {}\n  ./side.mjs: false\n  apex-plugin-side: false\n  ./hello.mjs: {}\n  hello: false\n", {
      "side.mjs": ran("side"),
      "node_modules/apex-plugin-side/package.json": JSON.stringify({ name: "apex-plugin-side", main: "index.mjs" }),
      "node_modules/apex-plugin-side/index.mjs": ran("side-npm"),
      // An enabled plugin whose name is a disabled entry's key: a disabled entry is not loaded, so it clashes with nothing.
      "hello.mjs": ran("hello"),
    });
    expect(runApex(["config", "validate"], { cwd: dir }).status).toBe(0);
    const list = runApex(["plugins", "list", "--json"], { cwd: dir });
    expect(list.status, list.stderr).toBe(0);
    const rows = (JSON.parse(list.stdout) as { plugins: Array<{ name: string; source: string; enabled: boolean; problem?: string }> }).plugins;
    expect(rows.filter((row) => row.source !== "built-in")).toEqual([
      expect.objectContaining({ name: "./side.mjs", source: "file:./side.mjs", enabled: false }),
      expect.objectContaining({ name: "apex-plugin-side", source: "npm:apex-plugin-side", enabled: false }),
      expect.objectContaining({ name: "hello", source: "file:./hello.mjs", enabled: true }),
      expect.objectContaining({ name: "hello", source: "npm:hello", enabled: false }),
    ]);
    expect(rows.some((row) => row.problem !== undefined && row.source !== "npm:hello")).toBe(false);
    expect(runApex(["memory", "set", "/a", "1"], { cwd: dir }).status).toBe(0);
    // Only the enabled plugin ran, once per command that applied the plugins.
    expect(new Set(readFileSync(join(dir, "RAN"), "utf8").trim().split("\n"))).toEqual(new Set(["hello"]));
  });
});

describe("extension points, with fixture plugins", () => {
  it("new triggers: every-n-tasks defines everyNTasks, task-tally taps it (listed first, applied after its dependency)", async () => {
    const dir = project("");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "task-tally.mjs")}: {}\n  ${fixture(dir, "every-n-tasks.mjs")}:\n    n: 2\n`);
    const engine = await load(dir);
    expect(engine.plugins.map((plugin) => plugin.name)).toEqual(["every-n-tasks", "task-tally"]);
    expect(engine.tapsOf("task-tally")).toEqual(["everyNTasks"]);
    expect(engine.tapsOf("every-n-tasks")).toEqual(["beforeTask"]);
    const context = session();
    for (const id of ["1", "2", "3", "4", "5"]) await engine.fire("beforeTask", taskOf(context, id));
    expect(context.session.tally).toEqual([2, 4]);
  });

  it("new triggers: a failing tap on a plugin's trigger names that plugin and the trigger", async () => {
    const dir = project("");
    writeFileSync(
      join(dir, "apex.config.yaml"),
      `plugins:\n  ${fixture(dir, "every-n-tasks.mjs")}:\n    n: 1\n  ${fixture(dir, "task-tally.mjs")}:\n    fail_at: 2\n`,
    );
    const engine = await load(dir);
    const context = session();
    await engine.fire("beforeTask", taskOf(context, "1"));
    await expect(engine.fire("beforeTask", taskOf(context, "2"))).rejects.toMatchObject({
      code: "APEX_E_PLUGIN_FAILED",
      message: "plugin task-tally failed in everyNTasks: cannot tally 2 tasks",
    });
  });

  it("new triggers: a plugin tapping a trigger whose plugin is not enabled fails at load, clearly", async () => {
    const dir = project("");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "task-tally.mjs")}: {}\n`);
    const error = await loadError(dir);
    expect(error.message).toBe(`The dependency 'every-n-tasks' of plugin 'task-tally' is not enabled (plugin 'task-tally' is enabled at apex.config.yaml:2:3).`);
    expect(error.hint).toBe("Install the plugin named 'every-n-tasks' and add it under `plugins:` in apex.config.yaml.");
    // The plugin it requires is there, turned off: a disabled file is not imported, so its name is unknown. Before, the hint said
    // to install it; now it names the plugins turned off, one of which may be it.
    const every = fixture(dir, "every-n-tasks.mjs");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "task-tally.mjs")}: {}\n  ${every}: false\n`);
    expect((await loadError(dir)).hint).toBe(`If it is a plugin turned off here (${every} at apex.config.yaml:3:3), enable it; else install the plugin named 'every-n-tasks' and add it under \`plugins:\` in apex.config.yaml.`);
  });

  it("backends: memory-backend registers storage and transport backends by name", async () => {
    const dir = project("");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "memory-backend.mjs")}: {}\n`);
    const engine = await load(dir);
    const storage = await engine.createBackend<{ get(key: string): unknown; set(key: string, value: unknown): void }>("storage", "memory");
    storage.set("a", 1);
    expect(storage.get("a")).toBe(1);
    const transport = await engine.createBackend<{ send(message: string): Promise<string> }>("transport", "loopback");
    await expect(transport.send("ping")).resolves.toBe("ping");
    expect(engine.backends.map((backend) => [backend.kind, backend.name, backend.plugin])).toEqual([
      ["storage", "memory", "memory-backend"],
      ["transport", "loopback", "memory-backend"],
    ]);
    expect(() => engine.backend("storage", "memroy")).toThrow("No storage backend named 'memroy'. Did you mean 'memory'?");
  });

  it("commands: hello registers `apex hello` with its options", async () => {
    const dir = project("");
    writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  ${fixture(dir, "hello.mjs")}:\n    greeting: Hey\n`);
    const engine = await load(dir);
    expect(engine.commands.map(({ plugin, spec }) => [plugin, spec.name])).toEqual([["hello", "hello"]]);
    const printed: string[] = [];
    const context = commandContext({ config: undefined, projectDir: dir, print: (text: string) => printed.push(text), printJson() {} });
    await engine.runCommand("hello", { args: [], options: { name: "Ada" } }, context);
    expect(printed).toEqual(["Hey, Ada!"]);
  });
});

describe("apex plugins list and plugin commands (end to end, built CLI)", () => {
  beforeAll(() => buildIfStale(), 180_000);

  function e2eProject(plugins: string): string {
    const dir = project(`plugins:\n${plugins}`);
    mkdirSync(join(dir, "plugins"));
    copyFileSync(join(FIXTURES, "hello.mjs"), join(dir, "plugins/hello.mjs"));
    return dir;
  }

  it("plugins list --json: every built-in and the configured local plugin, with the hooks it taps", () => {
    const dir = e2eProject("  git: {}\n  ./plugins/hello.mjs:\n    greeting: Hi\n");
    const result = runApex(["plugins", "list", "--json"], { cwd: dir });
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const { plugins } = JSON.parse(result.stdout) as { plugins: Array<Record<string, unknown>> };
    expect(plugins.map((plugin) => plugin.name).sort()).toEqual(["archive", "checkpoint", "compression", "git", "hello", "history", "metrics", "retention", "sharing"]);
    expect(plugins.find((plugin) => plugin.name === "hello")).toEqual({
      name: "hello",
      source: "file:./plugins/hello.mjs",
      version: "1.2.3",
      enabled: true,
      requires: [],
      hooks: ["onStart"],
      triggers: [],
      commands: ["hello"],
      backends: [],
      at: "apex.config.yaml:3:3",
    });
    expect(plugins.find((plugin) => plugin.name === "git")).toMatchObject({ source: "built-in", enabled: true });
    expect(plugins.find((plugin) => plugin.name === "sharing")).toMatchObject({ source: "built-in", enabled: false, requires: ["git"] });
  });

  it("config validate loads the plugins: an unknown plugin name exits 2 with a did-you-mean", () => {
    const dir = e2eProject("  retension: {}\n");
    const result = runApex(["config", "validate"], { cwd: dir });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("error[APEX_E_PLUGIN_UNKNOWN]");
    expect(result.stderr).toContain("Did you mean 'retention'?");
  });

  it("plugins list prints a table", () => {
    const dir = e2eProject("  ./plugins/hello.mjs: {}\n");
    const result = runApex(["plugins", "list"], { cwd: dir });
    expect(result.status).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME +SOURCE +VERSION +ENABLED +HOOKS +ADDS$/);
    expect(lines[1]).toMatch(/^hello +file:\.\/plugins\/hello\.mjs +1\.2\.3 +yes +onStart +command hello$/);
    // header, hello, the eight built-ins, and the storage backend in use
    expect(lines).toHaveLength(11);
    expect(lines[10]).toBe(`storage: lmdb (${join(dir, ".apex")})`);
  });

  it("`apex hello --name x` runs the command the local plugin adds", () => {
    const dir = e2eProject("  ./plugins/hello.mjs:\n    greeting: Hi\n");
    const result = runApex(["hello", "--name", "x"], { cwd: dir });
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("Hi, x!\n");
    expect(result.status).toBe(0);
    expect(JSON.parse(runApex(["hello", "--json"], { cwd: dir }).stdout)).toEqual({ greeting: "Hi, world!" });
    const typo = runApex(["helo"], { cwd: dir });
    expect(typo.status).toBe(2);
    expect(typo.stderr).toContain("unknown command 'helo'");
    expect(typo.stderr).toContain("hello");
  });

  it("exits 2 with config errors, in words and as JSON", () => {
    const dir = e2eProject("  retension: {}\n");
    const result = runApex(["plugins", "list"], { cwd: dir });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("error[APEX_E_PLUGIN_UNKNOWN]: Unknown plugin 'retension' at apex.config.yaml:2:3. Did you mean 'retention'?");
    const json = runApex(["plugins", "list", "--json"], { cwd: dir });
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stderr)).toMatchObject({ error: { code: "APEX_E_PLUGIN_UNKNOWN", exitCode: 2 } });
    expect(json.stdout).toBe("");

    const options = e2eProject("  ./plugins/hello.mjs:\n    greting: Hi\n");
    const bad = runApex(["hello"], { cwd: options });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(`error[APEX_E_PLUGIN_OPTIONS]: apex.config.yaml:3:5: plugins["./plugins/hello.mjs"].greting: unknown option.`);
  });
});

describe("a third-party plugin as README's \"Writing a plugin\" shows it (end to end, built CLI)", () => {
  beforeAll(() => buildIfStale(), 180_000);

  it("the README's example runs verbatim with the config its comment gives: its command, its milestone warning and its checkpoint data", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const example = /```js\n(\/\/ my-plugin\.mjs — enable it with `(plugins: .*)`\n[\s\S]*?)```/.exec(readme);
    expect(example, "README's plugin example").not.toBeNull();
    const dir = project(`agents:\n  w:\n    command: sleep\n    args: ["30"]\n${example![2]}\n`, { "my-plugin.mjs": example![1]! });
    const greet = runApex(["greet", "--name", "bob"], { cwd: dir });
    expect(greet.stderr).toBe("");
    expect(greet.stdout).toBe("hi, bob\n");
    const { plugins } = JSON.parse(runApex(["plugins", "list", "--json"], { cwd: dir }).stdout) as { plugins: Array<Record<string, unknown>> };
    expect(plugins.find((plugin) => plugin.name === "greeter")).toMatchObject({ enabled: true, hooks: ["afterMilestone", "beforeCheckpoint"], commands: ["greet"] });
    // Its hooks run in a session: before, the comment's config had no checkpoint plugin, so beforeCheckpoint never ran.
    expect(runApex(["start", "--task", "t"], { cwd: dir }).status).toBe(0);
    try {
      expect(runApex(["milestone", "m1"], { cwd: dir }).status).toBe(0);
      const latest = JSON.parse(runApex(["checkpoint", "show", "latest", "--json"], { cwd: dir }).stdout) as { trigger: string; manifest: { data: Record<string, unknown> } };
      expect(latest).toMatchObject({ trigger: "afterMilestone", manifest: { data: { greeting: "hi" } } });
      expect(readFileSync(join(dir, ".apex", "supervisor.log"), "utf8")).toContain("warning: plugin greeter: hi: m1");
    } finally {
      expect(runApex(["stop"], { cwd: dir }).status).toBe(0);
    }
  });

  it("a session with a plugin whose taps throw: the error names the plugin and hook, a failing onError tap does not hide it, stop reports a failing onStop, and the checkpoint plugin listed after it still takes its checkpoints", () => {
    const plugin = [
      'export default { name: "thrower", apply(apex) {',
      '  apex.hooks.afterMilestone.tapPromise("thrower", async () => { throw new Error("milestone broke"); });',
      '  apex.hooks.onError.tap("thrower", () => { throw new TypeError("onError broke too"); });',
      '  apex.hooks.beforeStop.tapPromise("thrower", async () => { throw new Error("before stop broke"); });',
      '  apex.hooks.onStop.tapPromise("thrower", async () => { throw new Error("stop broke"); });',
      "} };",
      "",
    ].join("\n");
    const dir = project('agents:\n  w:\n    command: sleep\n    args: ["30"]\nplugins:\n  ./thrower.mjs: {}\n  checkpoint:\n    triggers: [afterMilestone, onStop]\n', { "thrower.mjs": plugin });
    const started = runApex(["start", "--task", "t", "--json"], { cwd: dir });
    expect(started.status, started.stderr).toBe(0);
    let stopped: ReturnType<typeof runApex> | undefined;
    try {
      // The milestone is recorded before afterMilestone runs: a plugin failing there is a warning, as in onPause or onStop. Before, the
      // command failed (exit 1) with the milestone recorded all the same, and a retry recorded it twice.
      const milestone = runApex(["milestone", "m1", "--json"], { cwd: dir });
      expect(milestone.status, milestone.stderr).toBe(0);
      expect(JSON.parse(milestone.stdout)).toMatchObject({ n: 1, text: "m1", warnings: ["plugin thrower failed in afterMilestone: milestone broke"] });
      const text = runApex(["milestone", "m2"], { cwd: dir });
      expect([text.status, text.stdout, text.stderr]).toEqual([0, "milestone 2: m2\n", "warning: plugin thrower failed in afterMilestone: milestone broke\n"]);
      // So does `task done` of a milestone task: before, it failed though the task was completed, and a retry was refused (exit 4).
      expect(runApex(["task", "add", "ship it", "--milestone"], { cwd: dir }).status).toBe(0);
      const done = runApex(["task", "done", "t-1", "--json"], { cwd: dir });
      expect(done.status, done.stderr).toBe(0);
      expect(JSON.parse(done.stdout)).toMatchObject({ status: "completed", warnings: ["plugin thrower failed in afterMilestone: milestone broke"] });
      // The failure and the failing onError tap are still in the supervisor's log.
      expect(readFileSync(join(dir, ".apex/supervisor.log"), "utf8")).toContain("plugin thrower failed in onError: onError broke too");
    } finally {
      stopped = runApex(["stop", "--json"], { cwd: dir });
    }
    expect(stopped.status, stopped.stderr).toBe(0);
    // Before, a failing onStop went to supervisor.log only: `apex stop` said nothing.
    expect(JSON.parse(stopped.stdout)).toMatchObject({
      status: "stopped",
      // Each once: the hook's name was said twice ("onStop: plugin thrower failed in onStop: …").
      warnings: ["plugin thrower failed in beforeStop: before stop broke", "plugin thrower failed in onStop: stop broke"],
    });
    // Before, the thrower's failing tap ended afterMilestone and beforeStop there: the checkpoint plugin's taps after it never ran.
    const { items } = JSON.parse(runApex(["checkpoint", "list", "--session", JSON.parse(started.stdout).session_id, "--json"], { cwd: dir }).stdout) as { items: Array<{ trigger: string }> };
    expect(items.map((item) => item.trigger)).toEqual(["onStop", "afterMilestone", "afterMilestone", "afterMilestone", "onStart"]);
  });

  it("checkpoint create names a plugin that failed in afterCheckpoint, the checkpoint written: a warning line, warnings in --json", () => {
    const plugin = 'export default { name: "after", apply(apex) { apex.hooks.afterCheckpoint.tapPromise("after", async (info) => { if (info.trigger === "manual") throw new Error("upload failed"); }); } };\n';
    const dir = project('agents:\n  w:\n    command: sleep\n    args: ["30"]\nplugins:\n  checkpoint: {}\n  ./after.mjs: {}\n', { "after.mjs": plugin });
    expect(runApex(["start", "--task", "t"], { cwd: dir }).status).toBe(0);
    try {
      // Before: "Created checkpoint-002 …", exit 0, and nothing of the failure but a line in .apex/supervisor.log.
      const text = runApex(["checkpoint", "create", "one"], { cwd: dir });
      expect([text.status, text.stderr]).toEqual([0, "warning: plugin after failed in afterCheckpoint: upload failed\n"]);
      const json = runApex(["checkpoint", "create", "two", "--json"], { cwd: dir });
      expect(JSON.parse(json.stdout)).toMatchObject({ name: "checkpoint-003", warnings: ["plugin after failed in afterCheckpoint: upload failed"] });
    } finally {
      runApex(["stop", "--force"], { cwd: dir });
    }
  });

  it("a plugin misusing the store in a hook (a bad path, a value that is no JSON) failed, not the user's command: exit 1 and the plugin's hint, not a usage error", () => {
    const plugin = 'export default { name: "scribe", apply(apex) { apex.hooks.beforeTask.tapPromise("scribe", async () => { await apex.store.set("notes", 1); }); } };\n';
    const dir = project('agents:\n  w:\n    command: sleep\n    args: ["30"]\nplugins:\n  checkpoint: {}\n  ./scribe.mjs: {}\n', { "scribe.mjs": plugin });
    expect(runApex(["start", "--task", "t"], { cwd: dir }).status).toBe(0);
    try {
      expect(runApex(["task", "add", "one"], { cwd: dir }).status).toBe(0);
      const claim = runApex(["task", "claim", "--agent", "w", "--json"], { cwd: dir });
      // Before: APEX_E_BAD_PATH, exit 2, with the hint "Paths look like /project/notes/today…", as if the user had typed a path.
      const { error } = JSON.parse(claim.stderr);
      expect(error).toMatchObject({ code: "APEX_E_PLUGIN_FAILED", message: 'plugin scribe failed in beforeTask: Invalid path "notes": it must start with \'/\'.', details: { plugin: "scribe", hook: "beforeTask", cause_code: "APEX_E_BAD_PATH" } });
      expect(error.hint).toContain("The plugin scribe (file:./scribe.mjs) caused this: report it to its author");
      expect(claim.status).toBe(1);
    } finally {
      runApex(["stop", "--force"], { cwd: dir });
    }
  });

  it("a plugin whose module gained a command while a session runs: the command says the supervisor has the plugin's older module, not that the plugin was enabled since", () => {
    const version = (commands: string[]) => `export default { name: "grower", apply(apex) { ${commands.map((name) => `apex.registerCommand({ name: "${name}", description: "", action: (_, ctx) => ctx.print("${name} ran") });`).join(" ")} } };\n`;
    const dir = project('agents:\n  w:\n    command: sleep\n    args: ["30"]\nplugins:\n  checkpoint: {}\n  ./grower.mjs: {}\n', { "grower.mjs": version(["one"]) });
    expect(runApex(["start", "--task", "t"], { cwd: dir }).status).toBe(0);
    try {
      writeFileSync(join(dir, "grower.mjs"), version(["one", "two"]));
      const refused = runApex(["two"], { cwd: dir });
      expect(refused.status).toBe(4);
      // Before: "which was started without the grower plugin (enabled in the config since)", though it ran with it from the start.
      expect(refused.stderr).toContain("error[APEX_E_SESSION_STATE]: `apex two` runs in the running session's supervisor, which loaded the grower plugin when it started: its module had no such command then (it changed since).");
      expect(runApex(["one"], { cwd: dir }).stdout).toBe("one ran\n");
    } finally {
      runApex(["stop", "--force"], { cwd: dir });
    }
  });

  it("a plugin command that declares --session gets it, before or after its words, as the core commands that declare it do", () => {
    const plugin = 'export default { name: "picky", apply(apex) { for (const name of ["picky", "session picky"]) apex.registerCommand({ name, description: "x", options: [{ flags: "--session <id>" }], action: (input, ctx) => ctx.print(JSON.stringify(input.options)) }); } };\n';
    const dir = project("plugins:\n  checkpoint: {}\n  ./picky.mjs: {}\n", { "picky.mjs": plugin });
    // Before: {} — APEX took --session out of the line before the plugin's commands were known.
    for (const line of [["picky", "--session", "abc"], ["--session", "abc", "picky"], ["session", "picky", "--session=abc"]]) {
      const ran = runApex(line, { cwd: dir });
      expect([ran.status, ran.stdout], ran.stderr).toEqual([0, '{"session":"abc"}\n']);
    }
    expect(runApex(["picky"], { cwd: dir }).stdout).toBe("{}\n");
  });

  it("a command with an option APEX takes itself (--config, --remote): config validate and start exit 2 naming the plugin and the option", () => {
    const plugin = (command: string, flags: string) => `export default { name: "opty", apply(apex) { apex.registerCommand({ name: "${command}", description: "x", options: [{ flags: "${flags}" }], action: (input, ctx) => ctx.print(JSON.stringify(input.options)) }); } };\n`;
    for (const [command, flags] of [["hx", "--config <file>"], ["session hy", "--remote <host>"]] as const) {
      const dir = project('agents:\n  w:\n    command: sleep\n    args: ["30"]\nplugins:\n  checkpoint: {}\n  ./opty.mjs: {}\n', { "opty.mjs": plugin(command, flags) });
      // Before: valid; `apex hx --config x` then loaded the config file x (APEX_E_CONFIG_NOT_FOUND), `apex session hy --remote h` went to a remote.
      const message = `error[APEX_E_PLUGIN_DUPLICATE]: Plugin opty gives the command '${command}' the option ${flags}, which APEX takes itself: the command would never get it.`;
      const validate = runApex(["config", "validate"], { cwd: dir });
      expect([validate.status, validate.stderr.split("\n")[0]]).toEqual([2, message]);
      const start = runApex(["start", "--task", "t"], { cwd: dir });
      if (start.status === 0) runApex(["stop", "--force"], { cwd: dir });
      expect([start.status, start.stderr.split("\n")[0]]).toEqual([2, message]);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
    }
  });

  it("a plugin tapping a hook APEX does not have: config validate and start exit 2 naming the hook, a did-you-mean, APEX's hooks and apex.triggers; nothing written", () => {
    const files = {
      "typo.mjs": 'export default { name: "typo", apply(apex) { apex.hooks.onStrat.tapPromise("typo", async () => {}); } };\n',
      "ticker.mjs": 'import { createRequire } from "node:module";\nconst { AsyncSeriesHook } = createRequire(' + JSON.stringify(join(REPO_ROOT, "package.json")) + ')("tapable");\nexport default { name: "ticker", apply(apex) { apex.defineHook("everyNTasks", new AsyncSeriesHook(["n"])); } };\n',
      "listener.mjs": 'export default { name: "listener", apply(apex) { apex.hooks.everyNTasks.tapPromise("listener", async () => {}); } };\n',
    };
    const agents = 'agents:\n  w:\n    command: sleep\n    args: ["30"]\n';
    for (const [plugins, message, where] of [
      ["  ./typo.mjs: {}\n", "plugin typo failed in apply: apex.hooks has no hook 'onStrat'. Did you mean 'onStart'?", "Hooks other plugins define (defineHook) are tapped through apex.triggers.<name>."],
      ["  ./ticker.mjs: {}\n  ./listener.mjs: {}\n", "plugin listener failed in apply: apex.hooks has no hook 'everyNTasks'.", "'everyNTasks' is a hook a plugin defines: tap it as apex.triggers.everyNTasks."],
    ] as const) {
      const dir = project(`${agents}plugins:\n${plugins}`, files);
      // It said "plugin typo failed in apply: Cannot read properties of undefined (reading 'tapPromise')".
      const validate = runApex(["config", "validate"], { cwd: dir });
      expect(validate.stderr).toContain(`error[APEX_E_PLUGIN_INVALID]: ${message}\n`);
      expect(validate.stderr).toContain("hint: APEX's hooks: onStart, beforeTask, afterMilestone, beforeGit, onError, onPause, onResume, beforeStop, onStop, beforeCheckpoint, afterCheckpoint.");
      expect(validate.stderr).toContain(where);
      expect(validate.status).toBe(2);
      const start = runApex(["start", "--task", "t"], { cwd: dir });
      if (start.status === 0) runApex(["stop", "--force"], { cwd: dir });
      expect(start.stderr).toContain(`error[APEX_E_PLUGIN_INVALID]: ${message}\n`);
      expect(start.status).toBe(2);
      expect(existsSync(join(dir, ".apex")), "start wrote nothing").toBe(false);
    }
  });

  it("a command APEX already has, or another plugin adds: config validate and start exit 2 naming the plugin, and write nothing", () => {
    const plugin = (name: string, command: string) => `export default { name: "${name}", apply(apex) { apex.registerCommand({ name: "${command}", description: "x", action: (_, ctx) => ctx.print("${name}") }); } };\n`;
    const files = { "status.mjs": plugin("mystatus", "status"), "list.mjs": plugin("mylist", "session list"), "a.mjs": plugin("a", "greet"), "b.mjs": plugin("b", "greet"), "help.mjs": plugin("myhelp", "help") };
    const agents = 'agents:\n  w:\n    command: sleep\n    args: ["30"]\n';
    for (const [plugins, message] of [
      ["  ./status.mjs: {}\n", "Plugin mystatus adds the command 'status', which APEX already has."],
      ["  ./list.mjs: {}\n", "Plugin mylist adds the command 'session list', which APEX already has."],
      ["  ./a.mjs: {}\n  ./b.mjs: {}\n", "plugin b failed in apply: The command 'greet' is already added by plugin a."],
    ] as const) {
      const dir = project(`${agents}plugins:\n${plugins}`, files);
      const validate = runApex(["config", "validate"], { cwd: dir });
      expect(validate.stderr).toContain(`error[APEX_E_PLUGIN_DUPLICATE]: ${message}`);
      expect(validate.status).toBe(2);
      const start = runApex(["start", "--task", "t"], { cwd: dir });
      if (start.status === 0) runApex(["stop", "--force"], { cwd: dir });
      expect(start.stderr).toContain(`error[APEX_E_PLUGIN_DUPLICATE]: ${message}`);
      expect(start.status).toBe(2);
      expect(existsSync(join(dir, ".apex")), "start wrote nothing").toBe(false);
      const listed = runApex(["plugins", "list"], { cwd: dir });
      if (plugins.includes("b.mjs")) {
        // b cannot be applied at all: the list cannot be made, and says why.
        expect(listed.stderr).toContain(`error[APEX_E_PLUGIN_DUPLICATE]: ${message}`);
        expect(listed.status).toBe(2);
        continue;
      }
      // A command APEX already has: plugins list, a listing like status, lists it with a warning and its fix (exit 0).
      expect(listed.status, listed.stderr).toBe(0);
      expect(listed.stderr).toContain(`warning: ${message} \`apex start\` refuses this config. Set plugin`);
      const listedJson = JSON.parse(runApex(["plugins", "list", "--json"], { cwd: dir }).stdout) as { plugins: Array<{ name: string; problem?: string }>; warnings: string[] };
      expect(listedJson.warnings).toEqual([expect.stringContaining(message)]);
      expect(listedJson.plugins.filter((row) => row.problem).map((row) => [row.name, row.problem])).toEqual([[plugins.includes("list") ? "mylist" : "mystatus", message]]);
    }
    const hint = runApex(["config", "validate"], { cwd: project(`plugins:\n  ./status.mjs: {}\n`, files) }).stderr;
    expect(hint).toContain("hint: Set plugin mystatus (file:./status.mjs at apex.config.yaml:2:3) to false under `plugins:`");
    // commander's `apex help <command>`: before, the plugin's command silently took its place.
    const help = runApex(["config", "validate"], { cwd: project(`plugins:\n  ./help.mjs: {}\n`, files) });
    expect(help.stderr).toContain("error[APEX_E_PLUGIN_DUPLICATE]: Plugin myhelp adds the command 'help', which APEX already has.");
    expect(help.status).toBe(2);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Builds dist/ when a source file is newer than the CLI entry it compiles to (`npm test` builds first anyway). */
function buildIfStale(): void {
  const built = join(REPO_ROOT, "dist/cli/main.js");
  const builtAt = existsSync(built) ? statSync(built).mtimeMs : 0;
  const newest = Math.max(...["core", "plugins"].map((dir) => newestMtime(join(REPO_ROOT, dir))));
  if (newest <= builtAt && existsSync(join(REPO_ROOT, "dist/core/plugins.js"))) return;
  const result = spawnSync(process.execPath, [join(REPO_ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.json"], {
    cwd: REPO_ROOT,
    encoding: "utf8",
  });
  // tsc emits even with type errors elsewhere in the tree; only a missing CLI is fatal here.
  if (!existsSync(join(REPO_ROOT, "dist/core/plugins.js"))) throw new Error(`tsc did not build the CLI:\n${result.stdout}${result.stderr}`);
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : entry.name.endsWith(".ts") ? statSync(path).mtimeMs : 0);
  }
  return newest;
}
