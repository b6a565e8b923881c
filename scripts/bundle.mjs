// Run by `npm run build` after tsc: two bundles made with esbuild, each a start-up cost cut.
// - dist/vendor/yaml.cjs: the yaml package in one file. Node loads the package's 73 files in ~70 ms
//   of a core, the bundle in ~15, and nearly every command reads a config. core/config/source.ts
//   `yaml()` loads it while it was made from the installed yaml version, else the package itself.
// - dist/bundle/cli.cjs: the whole CLI (dist/cli/main.js and every module it imports, dependencies
//   left out) as one CommonJS file, which cli/bundle.ts compiles with a V8 code cache kept between
//   runs: Node 20 keeps no compiled code of ES modules between runs, and compiling APEX's own
//   modules is most of a command's start-up. Its first line names the hash of its text, which
//   keys the cache. `import.meta.url` in each module becomes that module's own dist/ file URL, so
//   what a module finds beside itself (schemas, workers, the supervisor's entry) it finds as before.
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
const CLI_OUT = join(root, "dist/bundle/cli.cjs");

let esbuild;
try {
  esbuild = require("esbuild");
} catch (error) {
  if (error.code !== "MODULE_NOT_FOUND") throw error;
  for (const file of [YAML_OUT, CLI_OUT]) rmSync(file, { force: true });
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
let importFileReplaced = false;

// Each module's import.meta.url, as the URL of its own file in dist/ (the bundle is one file: a
// module's neighbours are found from where it was, not from the bundle). cli/bundle.ts gives the
// bundle __apexModuleUrl, with require and __dirname, as CommonJS gives a module its own.
const moduleUrls = {
  name: "module-urls",
  setup(build) {
    build.onLoad({ filter: /\.js$/ }, (args) => {
      const original = readFileSync(args.path, "utf8");
      let text = original;
      if (args.path === PLUGIN_LOADER) {
        if (!text.includes(IMPORT_FILE)) throw new Error(`${PLUGIN_LOADER} no longer has \`${IMPORT_FILE}\`: scripts/bundle.mjs must be told how it imports a plugin now.`);
        text = text.replace(IMPORT_FILE, "const importFile = (url) => __apexImport(url);");
        importFileReplaced = true;
      }
      const from = relative(dirname(CLI_OUT), args.path).split(sep).join("/");
      text = text.replaceAll("import.meta.url", `__apexModuleUrl(${JSON.stringify(from)})`);
      return text === original ? undefined : { contents: text, loader: "js" };
    });
  },
};
const cli = await esbuild.build({
  entryPoints: [join(root, "dist/cli/main.js")],
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  packages: "external",
  supported: { "dynamic-import": false },
  plugins: [moduleUrls],
  write: false,
  logLevel: "error",
});
if (!importFileReplaced) throw new Error(`${PLUGIN_LOADER} is not in the CLI's bundle: scripts/bundle.mjs must be told how the CLI imports a plugin now.`);
const text = cli.outputFiles[0].text;
// No import() may be left (nothing in a script serves it on Node 20), save the plugin loader's.
const left = text.match(/(?<![\w$.])import\(/g)?.length ?? 0;
if (left > 0) throw new Error(`The CLI's bundle has ${left} import() call(s) esbuild left: a script cannot run them on Node 20.`);
const hash = createHash("sha256").update(text).digest("hex").slice(0, 16);
// The first line is read by cli/bundle.ts before the rest (the hash keys its code cache): keep it first.
writeAtomically(CLI_OUT, `// apex-bundle ${hash}: dist/cli/main.js and the modules it imports, made by scripts/bundle.mjs: generated, not edited.\n${text}`);
