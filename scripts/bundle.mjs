// Run by `npm run build` after tsc: bundles made with esbuild, each a start-up cost cut.
// - dist/vendor/yaml.cjs: the yaml package in one file. Node loads the package's 73 files in ~70 ms
//   of a core, the bundle in ~15, and nearly every command reads a config. core/config/source.ts
//   `yaml()` loads it while it was made from the installed yaml version, else the package itself.
// - dist/bundle/cli.cjs: the whole CLI (dist/cli/main.js and every module it imports, dependencies
//   left out) as one CommonJS file, which cli/bundle.ts compiles with a V8 code cache kept between
//   runs: Node 20 keeps no compiled code of ES modules between runs, and compiling APEX's own
//   modules is most of a command's start-up. Its first line names the hash of its text, which
//   keys the cache. dist/bundle/status.cjs and lifecycle.cjs: the same for the fast paths of
//   `apex status` and `apex pause`/`resume` (dist/cli/status-main.js, lifecycle-main.js), which
//   bin/apex.js takes without commander's program; dist/bundle/supervisor.cjs for the supervisor
//   (dist/core/session/supervisor-main.js), which `apex start` runs through the loader. `import.meta.url`
//   in each module becomes that module's own dist/ file URL, so what a module finds beside itself
//   (schemas, workers, the supervisor's entry) it finds as before.
// Without esbuild (an install without devDependencies) neither is made: yaml then loads from its
// package and the CLI from its ES modules, which only costs time.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const YAML_OUT = join(root, "dist/vendor/yaml.cjs");
const BUNDLE_DIR = join(root, "dist/bundle");
/** Each bundle, by the name cli/bundle.ts loads it under, and its entry module; the fast paths first, since the CLI's bundle exports what they take from it. */
const ENTRIES = { status: "dist/cli/status-main.js", lifecycle: "dist/cli/lifecycle-main.js", cli: "dist/cli/main.js", supervisor: "dist/core/session/supervisor-main.js" };
const bundleFile = (name) => join(BUNDLE_DIR, `${name}.cjs`);
/** cli/bundle.ts's loader as CommonJS, which bin/apex.js requires: an ES module would start Node 20's ES module loader. */
const LOADER = join(root, "dist/cli/bundle.js");
const LOADER_OUT = join(root, "dist/cli/bundle.cjs");
// A fast path's bundle holds what its common run loads: its entry's static imports and these
// modules it imports dynamically (with their static imports). Its other import()s (an error's
// hint, the reads of a project with no supervisor running, which load the config and plugins:
// most of APEX) take those modules from the CLI's bundle (its `bundledModules`, with its cache),
// or their ES modules from dist/ without one: in the fast path's bundle, they made it 2 MB,
// and reading and compiling that was most of the fast path's start-up.
const FAST_PATH_MODULES = {
  status: ["dist/cli/output.js", "dist/cli/session/status.js", "dist/cli/session/stranded.js"],
  lifecycle: [],
};

let esbuild;
try {
  esbuild = require("esbuild");
} catch (error) {
  if (error.code !== "MODULE_NOT_FOUND") throw error;
  for (const file of [YAML_OUT, LOADER_OUT, ...Object.keys(ENTRIES).map(bundleFile)]) rmSync(file, { force: true });
  console.log("bundle: esbuild is not installed; yaml loads from its package and the CLI from its modules (slower start-up, same behaviour).");
  process.exit(0);
}

/** Written beside and renamed: a command started meanwhile reads the old file or the new one, never half of one. */
function writeAtomically(file, text) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

const yamlVersion = require("yaml/package.json").version;
const yaml = esbuild.buildSync({
  stdin: { contents: 'module.exports = { yaml: require("yaml"), version: require("yaml/package.json").version };', resolveDir: root, loader: "js" },
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  legalComments: "eof",
  write: false,
  logLevel: "error",
});
writeAtomically(YAML_OUT, `// yaml ${yamlVersion} (ISC license, github.com/eemeli/yaml), bundled into one file by scripts/bundle.mjs: generated, not edited.\n${yaml.outputFiles[0].text}`);

// The one import() of a file that is not APEX's own (a plugin's module, core/plugins.ts) goes
// to the loader's import() (`__apexImport`): a script's own import() Node 20 serves only as an
// experiment, and not with a code cache. Every other import() (APEX's modules, Node's, the
// dependencies': CommonJS all) becomes a require() ("dynamic-import": false), as loading them did.
const PLUGIN_LOADER = join(root, "dist/core/plugins.js");
const IMPORT_FILE = "const importFile = (url) => import(url);";
/** The bundles the plugin loader went into, each with its import() swapped. */
const pluginLoaderIn = new Set();
/** The modules the fast paths' bundles do not hold and import (dist/… paths): the CLI's bundle hands them out. */
const fromCli = new Set();

// Each module's import.meta.url, as the URL of its own file in dist/ (the bundle is one file: a
// module's neighbours are found from where it was, not from the bundle). cli/bundle.ts gives the
// bundle __apexModuleUrl, with require and __dirname, as CommonJS gives a module its own.
const moduleUrls = (name, bundled) => ({
  name: "module-urls",
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, (args) => {
      const original = readFileSync(args.path, "utf8");
      let text = original;
      // An import() of a module the bundle does not hold: the CLI's bundle's copy, else (no such bundle) its ES module in dist/.
      if (bundled) {
        text = text.replace(/(?<![\w$.])import\(("\.{1,2}\/[^"]+\.js")\)/g, (call, specifier) => {
          const target = join(dirname(args.path), JSON.parse(specifier));
          if (bundled.has(target)) return call;
          const key = relative(root, target).split(sep).join("/");
          fromCli.add(key);
          return `__apexFromCli(${JSON.stringify(key)}, new URL(${specifier}, import.meta.url).href)`;
        });
      }
      if (args.path === PLUGIN_LOADER) {
        if (!text.includes(IMPORT_FILE)) throw new Error(`${PLUGIN_LOADER} no longer has \`${IMPORT_FILE}\`: scripts/bundle.mjs must be told how it imports a plugin now.`);
        text = text.replace(IMPORT_FILE, "const importFile = (url) => __apexImport(url);");
        pluginLoaderIn.add(name);
      }
      const from = relative(BUNDLE_DIR, args.path).split(sep).join("/");
      text = text.replaceAll("import.meta.url", `__apexModuleUrl(${JSON.stringify(from)})`);
      return text === original ? undefined : { contents: text, loader: "js" };
    });
  },
});
for (const [name, entry] of Object.entries(ENTRIES)) {
  const text = await bundle(name, entry);
  const hash = createHash("sha256").update(text).digest("hex").slice(0, 16);
  // The first line is read by cli/bundle.ts before the rest (the hash keys its code cache): keep it first.
  writeAtomically(bundleFile(name), `// apex-bundle ${hash}: ${entry} and the modules it imports, made by scripts/bundle.mjs: generated, not edited.\n${text}`);
}
// The loader alone, its imports made requires and its import()s of the modules (when there is no bundle) left as they are:
// a CommonJS module's import() Node serves. Beside its ES module, so that what it finds from its own URL it finds as that does.
const loader = esbuild.transformSync(readFileSync(LOADER, "utf8").replaceAll("import.meta.url", 'require("node:url").pathToFileURL(__filename).href'), {
  format: "cjs",
  platform: "node",
  target: "node20",
  loader: "js",
});
writeAtomically(LOADER_OUT, `// ${relative(root, LOADER)} as CommonJS, made by scripts/bundle.mjs: generated, not edited.\n${loader.code}`);
for (const name of ["cli", "supervisor"]) {
  if (!pluginLoaderIn.has(name)) throw new Error(`${PLUGIN_LOADER} is not in the ${name}'s bundle: scripts/bundle.mjs must be told how it imports a plugin now.`);
}

/** The modules a fast path's bundle holds (FAST_PATH_MODULES); every module for the others. */
async function heldModules(name, entry) {
  if (!FAST_PATH_MODULES[name]) return undefined;
  const { metafile } = await esbuild.build({ entryPoints: [join(root, entry)], bundle: true, platform: "node", format: "cjs", packages: "external", write: false, metafile: true, logLevel: "error" });
  const held = new Set();
  const pending = [entry, ...FAST_PATH_MODULES[name]];
  for (let file; (file = pending.pop()) !== undefined; ) {
    if (held.has(file)) continue;
    if (!metafile.inputs[file]) throw new Error(`${file}, named in scripts/bundle.mjs's FAST_PATH_MODULES, is not imported by ${entry}.`);
    held.add(file);
    for (const imported of metafile.inputs[file].imports) if (!imported.external && imported.kind !== "dynamic-import") pending.push(imported.path);
  }
  return new Set([...held].map((file) => join(root, file)));
}

async function bundle(name, entry) {
  const bundled = await heldModules(name, entry);
  // The CLI's bundle exports, besides its entry's exports, the modules the fast paths take from it (built after them).
  const handedOut = [...fromCli].sort().map((key) => `  ${JSON.stringify(key)}: () => import(${JSON.stringify(`./${key}`)}),`);
  const input = name === "cli" ? { stdin: { contents: `export * from "./${entry}";\nexport const bundledModules = {\n${handedOut.join("\n")}\n};\n`, resolveDir: root, sourcefile: "cli-entry.js", loader: "js" } } : { entryPoints: [join(root, entry)] };
  const result = await esbuild.build({
    ...input,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    packages: "external",
    supported: { "dynamic-import": false },
    plugins: [moduleUrls(name, bundled)],
    write: false,
    logLevel: "error",
  });
  const text = result.outputFiles[0].text;
  // No import() may be left (nothing in a script serves it on Node 20), save the plugin loader's.
  const left = text.match(/(?<![\w$.])import\(/g)?.length ?? 0;
  if (left > 0) throw new Error(`The bundle of ${entry} has ${left} import() call(s) esbuild left: a script cannot run them on Node 20.`);
  return text;
}
