// Bundles yaml into one file, dist/vendor/yaml.cjs, with esbuild: run by `npm run build` after tsc.
// Node loads the yaml package's 73 files in ~70 ms of a core (resolving, reading and compiling
// each: Node 20 keeps no compiled code between runs), the bundle in ~15, and nearly every apex
// command reads a config. core/config/source.ts `yaml()` loads the bundle, or the package itself
// when there is none or the bundle was made from another version than the one installed.
// Without esbuild (an install without devDependencies) there is no bundle, which only costs time.
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const out = join(root, "dist/vendor/yaml.cjs");

let esbuild;
try {
  esbuild = require("esbuild");
} catch (error) {
  if (error.code !== "MODULE_NOT_FOUND") throw error;
  rmSync(out, { force: true });
  console.log("vendor: esbuild is not installed; yaml loads from its package (slower start-up, same behaviour).");
  process.exit(0);
}

const version = require("yaml/package.json").version;
const result = esbuild.buildSync({
  stdin: { contents: 'module.exports = { yaml: require("yaml"), version: require("yaml/package.json").version };', resolveDir: root, loader: "js" },
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  legalComments: "eof",
  write: false,
  logLevel: "error",
});
const banner = `// yaml ${version} (ISC license, github.com/eemeli/yaml), bundled into one file by scripts/vendor.mjs: generated, not edited.\n`;
mkdirSync(dirname(out), { recursive: true });
// Written beside and renamed: a command started meanwhile reads the old bundle or the new one, never half of one.
writeFileSync(`${out}.tmp`, banner + result.outputFiles[0].text);
renameSync(`${out}.tmp`, out);
