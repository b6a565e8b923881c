/**
 * APEX's own schemas, read once per process from the package's schemas/ directory. The
 * directory is found from this module's location, compiled (dist/core/config/) or not
 * (core/config/), so tests can run either.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ValidateFunction } from "ajv";
import { ApexError } from "../errors.js";
import { createAjv } from "./validate.js";

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
  throw new ApexError("APEX_E_INTERNAL", `Cannot find APEX's schemas/ directory near ${fileURLToPath(import.meta.url)}.`, {
    hint: "This APEX installation is incomplete; reinstall it.",
  });
}

export function schemasDir(): string {
  return join(packageRoot(), "schemas");
}

const cache = new Map<string, Record<string, unknown>>();

function readSchema(relativePath: string): Record<string, unknown> {
  const cached = cache.get(relativePath);
  if (cached) return cached;
  const file = join(schemasDir(), relativePath);
  let schema: Record<string, unknown>;
  try {
    schema = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (error) {
    throw new ApexError("APEX_E_INTERNAL", `Cannot read APEX's schema ${file}: ${(error as Error).message}`, {
      hint: "This APEX installation is incomplete; reinstall it.",
      cause: error,
    });
  }
  cache.set(relativePath, schema);
  return schema;
}

/** schemas/apex.config.schema.json */
export function configSchema(): Record<string, unknown> {
  return readSchema("apex.config.schema.json");
}

/** schemas/plugins/<name>.schema.json */
export function builtinPluginSchema(name: BuiltinPluginName): Record<string, unknown> {
  return readSchema(`plugins/${name}.schema.json`);
}

let configValidator: ValidateFunction | undefined;

/**
 * The validator of the document's shape. The built-in plugins' options are `$ref`s to their
 * own schemas so that editors complete them; here they resolve to "any mapping", because the
 * options are checked in a second step, against the plugin's schema, with their own messages.
 */
export function documentValidator(): ValidateFunction {
  if (configValidator) return configValidator;
  const schema = configSchema();
  const ajv = createAjv({ trusted: true });
  for (const name of BUILTIN_PLUGIN_NAMES) {
    // The schemas' $ids are relative so that editors resolve the $refs next to the local file.
    ajv.addSchema({ $id: `plugins/${name}.schema.json`, type: "object" });
  }
  return (configValidator = ajv.compile(schema));
}

function isFile(url: URL): boolean {
  try {
    return statSync(url).isFile();
  } catch {
    return false;
  }
}
