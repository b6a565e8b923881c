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
//   (schemas, workers, the supervisor's entry) it finds as before. The CLI's and the supervisor's
//   bundles also hold the dependencies nearly every run loads (INLINE_PACKAGES) and APEX's own
//   generated files their modules require by a path esbuild cannot follow (HELD_FILES).
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
// The packages the CLI's and the supervisor's bundles hold, compiled with their code cache: commander's program, which
// every full-CLI command builds, and tapable's hooks, which every engine makes. Node 20 compiled their CommonJS files
// anew at each run; held with yaml's bundle and the validators (HELD_FILES), a command took ~30 ms less of a core
// (`apex plugins list`: ~140 → ~108 ms). They are then the versions installed when the bundle was made: `npm run build`
// after updating one. Every other package stays where it is installed (lmdb finds its native addon beside its own
// files; the rest loads only for the commands that need it). APEX's modules require them through
// createRequire(import.meta.url), which esbuild does not follow: such a call becomes the bundle's require().
const INLINE_PACKAGES = new Set(["commander", "tapable"]);
/**
 * APEX's own generated files that nearly every run loads and that a module requires by a path esbuild cannot follow:
 * yaml's bundle (dist/vendor/yaml.cjs, required with a require of createRequire's) and the precompiled validators
 * (dist/validators/, by a path from the package's root). Given as paths it follows, in the CLI's and the supervisor's
 * bundles: each text must be found, else the build fails (the module changed: tell this script how it loads them now).
 * yaml's version check (core/config/source.ts) is unchanged: it still reads the installed yaml's package.json.
 */
const HELD_FILES = {
  "dist/core/config/source.js": [["const require = createRequire(import.meta.url);", ""]],
  "dist/core/config/schemas.js": [
    ["const require = createRequire(import.meta.url);", ""],
    ['require(join(packageRoot(), PRECOMPILED_DIR, "index.cjs"))', 'require("../../validators/index.cjs")'],
  ],
};
/** The bundles that hold INLINE_PACKAGES and HELD_FILES (the fast paths' hold only what their common run loads). */
const HOLDING = new Set(["cli", "supervisor"]);

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

/** The package a bare specifier names ("tapable/lib/Hook.js": tapable; "@scope/name/x": @scope/name); undefined for a path. */
function packageOf(specifier) {
  if (specifier.startsWith(".") || specifier.startsWith("/") || specifier.startsWith("node:")) return undefined;
  return specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/");
}

/** Every package left where it is installed, save INLINE_PACKAGES (as `packages: "external"` does for the other bundles). */
const packagesOutside = {
  name: "packages-outside",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = packageOf(args.path);
      return name === undefined || INLINE_PACKAGES.has(name) ? undefined : { path: args.path, external: true };
    });
  },
};

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
      if (HOLDING.has(name)) {
        text = text.replace(/createRequire\(import\.meta\.url\)\(("[^"]+")\)/g, (call, specifier) => (INLINE_PACKAGES.has(packageOf(JSON.parse(specifier))) ? `require(${specifier})` : call));
        for (const [from, to] of HELD_FILES[relative(root, args.path).split(sep).join("/")] ?? []) {
          if (!text.includes(from)) throw new Error(`${args.path} no longer has \`${from}\`: scripts/bundle.mjs's HELD_FILES must be told how it loads its file now.`);
          text = text.replace(from, to);
        }
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
/**
 * The text with each character outside ASCII written as its \\u escape, which means the same in a string, a template,
 * a regular expression and a comment (esbuild escapes them in strings, not in a regular expression or a comment): the
 * loader (cli/bundle.ts) then decodes a bundle as Latin-1, ~1 ms where UTF-8 took ~13 for the CLI's.
 */
function asciiOnly(text) {
  const escaped = text.replace(/[^\0-\x7f]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (/String\.raw/.test(text) && escaped !== text) throw new Error("A bundle with String.raw has characters outside ASCII: their \\u escapes would read differently there.");
  return escaped;
}
for (const [name, entry] of Object.entries(ENTRIES)) {
  const text = asciiOnly(await bundle(name, entry));
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
for (const name of HOLDING) {
  // What they hold, as esbuild names each file it bundled: a package still loaded from node_modules costs its compile at every run.
  const text = readFileSync(bundleFile(name), "utf8");
  for (const held of ["node_modules/tapable/", "dist/vendor/yaml.cjs", "dist/validators/index.cjs", ...(name === "cli" ? ["node_modules/commander/"] : [])]) {
    if (!text.includes(`// ${held}`)) throw new Error(`The bundle of ${ENTRIES[name]} does not hold ${held}: scripts/bundle.mjs's INLINE_PACKAGES or HELD_FILES must be told how it is loaded now.`);
  }
}
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
    ...(HOLDING.has(name) ? {} : { packages: "external" }),
    supported: { "dynamic-import": false },
    plugins: [...(HOLDING.has(name) ? [packagesOutside] : []), moduleUrls(name, bundled)],
    write: false,
    logLevel: "error",
  });
  const text = result.outputFiles[0].text;
  // No import() may be left (nothing in a script serves it on Node 20), save the plugin loader's.
  const left = text.match(/(?<![\w$.])import\(/g)?.length ?? 0;
  if (left > 0) throw new Error(`The bundle of ${entry} has ${left} import() call(s) esbuild left: a script cannot run them on Node 20.`);
  return text;
}
