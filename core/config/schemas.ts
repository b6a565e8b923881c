/**
 * APEX's own schemas, read once per process from the package's schemas/ directory. The
 * directory is found from this module's location, compiled (dist/core/config/) or not
 * (core/config/), so tests can run either.
 *
 * The build precompiles their validators (scripts/compile-schemas.mjs, ajv's standalone
 * code, into dist/validators/): compiling them took a command ~130 ms, loading ajv another
 * ~50. A precompiled validator is used only if the schema file it was built from hashes the
 * same as the one read now; otherwise (a schema edited without a rebuild, no build at all)
 * the schema is compiled as before.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ValidateFunction } from "ajv";
import { ApexError } from "../errors.js";
import { isFile } from "./locate.js";

/** The plugins that ship with APEX and have an options schema in schemas/plugins/. */
export const BUILTIN_PLUGIN_NAMES = ["checkpoint", "retention", "git", "compression", "sharing", "metrics", "history", "archive"] as const;
export type BuiltinPluginName = (typeof BUILTIN_PLUGIN_NAMES)[number];

export function isBuiltinPlugin(name: string): name is BuiltinPluginName {
  return (BUILTIN_PLUGIN_NAMES as readonly string[]).includes(name);
}

let root: string | undefined;

/** The APEX package directory: the one holding schemas/ and the default apex.config.yaml. */
export function packageRoot(): string {
  if (root) return root;
  // core/config/schemas.ts is two levels below the package; dist/core/config/schemas.js three
  // (dist/ itself has no schemas/). The nearer one is tried first so that a schemas/ folder
  // above the package is never taken for ours.
  for (const up of ["../../", "../../../"]) {
    const candidate = new URL(up, import.meta.url);
    if (isFile(new URL("schemas/apex.config.schema.json", candidate))) return (root = fileURLToPath(candidate).replace(/[\\/]$/, ""));
  }
  throw new ApexError("APEX_E_INTERNAL", `Cannot find APEX's schemas/ directory near ${fileURLToPath(import.meta.url)}.`, { hint: "This APEX installation is incomplete; reinstall it." });
}

export function schemasDir(): string {
  return join(packageRoot(), "schemas");
}

const cache = new Map<string, Record<string, unknown>>();
/** sha256 of each schema file's text as read, by path relative to schemas/. */
const textHashes = new Map<string, string>();

/** Where the build puts the precompiled validators, relative to the package root. */
export const PRECOMPILED_DIR = join("dist", "validators");

/** The output of scripts/compile-schemas.mjs, as this module reads it. */
export interface Precompiled {
  /** sha256 of each schema file the validators were built from. */
  hashes: Record<string, string>;
  /** Validators by schema path: "apex.config.schema.json" (the document), "plugins/<name>.schema.json". */
  validators: Record<string, ValidateFunction>;
}

let precompiled: Precompiled | null | undefined;
/** Schema objects read here with the validator built from their text (validate.ts's compileSchema takes it). */
export const precompiledSchemas = new WeakMap<object, ValidateFunction>();

function loadPrecompiled(): Precompiled | null {
  if (precompiled !== undefined) return precompiled;
  try {
    const require = createRequire(import.meta.url);
    precompiled = require(join(packageRoot(), PRECOMPILED_DIR, "index.cjs")) as Precompiled;
  } catch {
    precompiled = null; // not built: compile at run time
  }
  return precompiled;
}

/** The precompiled validator of a schema file, if there is one built from this very text. */
export function precompiledValidator(relativePath: string): ValidateFunction | undefined {
  return matchingValidator(loadPrecompiled(), relativePath, schemaTextHash(relativePath));
}

/** `built`'s validator of a schema file if it was built from text hashing to `textHash`. */
export function matchingValidator(built: Precompiled | null, relativePath: string, textHash: string): ValidateFunction | undefined {
  return built && built.hashes[relativePath] === textHash ? built.validators[relativePath] : undefined;
}

function readSchema(relativePath: string): Record<string, unknown> {
  const cached = cache.get(relativePath);
  if (cached) return cached;
  const file = join(schemasDir(), relativePath);
  let schema: Record<string, unknown>;
  try {
    const text = readFileSync(file, "utf8");
    schema = JSON.parse(text) as Record<string, unknown>;
    textHashes.set(relativePath, createHash("sha256").update(text).digest("hex"));
  } catch (error) {
    throw new ApexError("APEX_E_INTERNAL", `Cannot read APEX's schema ${file}: ${(error as Error).message}`, {
      hint: "This APEX installation is incomplete; reinstall it.",
      cause: error,
    });
  }
  cache.set(relativePath, schema);
  return schema;
}

/** sha256 of a schema file's text (what precompiled validators are matched by). */
export function schemaTextHash(relativePath: string): string {
  readSchema(relativePath);
  return textHashes.get(relativePath)!;
}

/** schemas/apex.config.schema.json */
export function configSchema(): Record<string, unknown> {
  return readSchema("apex.config.schema.json");
}

/** schemas/plugins/<name>.schema.json (with its precompiled validator registered, if it has one). */
export function builtinPluginSchema(name: BuiltinPluginName): Record<string, unknown> {
  const path = `plugins/${name}.schema.json`;
  const schema = readSchema(path);
  const validate = precompiledValidator(path);
  if (validate) precompiledSchemas.set(schema, validate);
  return schema;
}
