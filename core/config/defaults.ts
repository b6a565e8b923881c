/**
 * The built-in defaults are the default apex.config.yaml that ships at the package root,
 * read through the same checks as any config. They fill what a project's config leaves out
 * (all of it when there is no config file).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { ApexError } from "../errors.js";
import { checkDocument, readConfigText, type CheckedDocument } from "./document.js";
import { BUILTIN_PLUGIN_NAMES, PRECOMPILED_DIR, packageRoot, schemaTextHash } from "./schemas.js";
import { parseSource } from "./source.js";
import { formatIssues } from "./validate.js";

export const DEFAULTS_FILE_NAME = "apex.config.yaml";

let defaults: Promise<CheckedDocument> | undefined;

/** The package's default apex.config.yaml, checked; read once per process. Callers must copy `data` before changing it. */
export function builtinDefaults(): Promise<CheckedDocument> {
  defaults ??= readDefaults();
  return defaults;
}

/** What `npm run build` (scripts/compile-schemas.mjs) checked of the defaults, and the texts it checked. */
export const PRECOMPILED_DEFAULTS = "defaults.json";
export function defaultsHashes(text: string): Record<string, string> {
  const hashes: Record<string, string> = { [DEFAULTS_FILE_NAME]: createHash("sha256").update(text).digest("hex"), "apex.config.schema.json": schemaTextHash("apex.config.schema.json") };
  for (const name of BUILTIN_PLUGIN_NAMES) hashes[`plugins/${name}.schema.json`] = schemaTextHash(`plugins/${name}.schema.json`);
  return hashes;
}

async function readDefaults(): Promise<CheckedDocument> {
  const file = join(packageRoot(), DEFAULTS_FILE_NAME);
  const text = await readConfigText(file);
  // Built from these very texts: the checked data as the build wrote it, the YAML parsed (for positions) only if asked.
  const built = precompiledDefaults(text);
  if (built) {
    let source: CheckedDocument["source"] | undefined;
    const cwd = process.cwd();
    return { data: built.data, omitted: { agents: false, plugins: false }, issues: [], get source() { return (source ??= parseSource(text, file, cwd).source); } };
  }
  const checked = checkDocument(text, file);
  if (checked.issues.length > 0 || checked.omitted.agents || checked.omitted.plugins) {
    throw new ApexError("APEX_E_INTERNAL", `APEX's default config ${file} is broken:\n${formatIssues(checked.issues)}`, { hint: "This APEX installation is damaged; reinstall it." });
  }
  return checked;
}

/** Undefined when not built: the defaults are checked here then. */
function precompiledDefaults(text: string): { data: Record<string, unknown> } | undefined {
  try { return matchingDefaults(JSON.parse(readFileSync(join(packageRoot(), PRECOMPILED_DIR, PRECOMPILED_DEFAULTS), "utf8")), text); } catch { return undefined; }
}

/** `built` (the build's defaults.json) if it was checked from this very text and the schemas as they are now. */
export function matchingDefaults(built: { hashes: Record<string, string>; data: Record<string, unknown> }, text: string): { data: Record<string, unknown> } | undefined {
  const hashes = defaultsHashes(text);
  return Object.keys(hashes).every((key) => built.hashes[key] === hashes[key]) ? built : undefined;
}

/**
 * The default agents run the reference agents that come with APEX, from any project: their
 * script arguments (agents/coder.mjs) point into the APEX package.
 */
export function withPackageScripts(agents: Record<string, unknown>): Record<string, unknown> {
  const root = packageRoot();
  const result: Record<string, unknown> = {};
  for (const [name, agent] of Object.entries(agents)) {
    const { args, ...rest } = agent as { args?: unknown[] };
    const resolved = (args ?? []).map((arg) => (typeof arg === "string" && isScriptPath(arg) ? join(root, arg) : arg));
    result[name] = { ...rest, args: resolved };
  }
  return result;
}

function isScriptPath(arg: string): boolean {
  return !arg.startsWith("-") && !isAbsolute(arg) && /\.[cm]?js$/.test(arg);
}
