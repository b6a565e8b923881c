/**
 * The built-in defaults are the default apex.config.yaml that ships at the package root,
 * read through the same checks as any config. They fill what a project's config leaves out
 * (all of it when there is no config file).
 */
import { isAbsolute, join } from "node:path";
import { ApexError } from "../errors.js";
import { checkDocument, readConfigText, type CheckedDocument } from "./document.js";
import { packageRoot } from "./schemas.js";
import { formatIssues } from "./validate.js";

export const DEFAULTS_FILE_NAME = "apex.config.yaml";

let defaults: Promise<CheckedDocument> | undefined;

/** The package's default apex.config.yaml, checked; read once per process. Callers must copy `data` before changing it. */
export function builtinDefaults(): Promise<CheckedDocument> {
  defaults ??= readDefaults();
  return defaults;
}

async function readDefaults(): Promise<CheckedDocument> {
  const file = join(packageRoot(), DEFAULTS_FILE_NAME);
  const checked = checkDocument(await readConfigText(file), file);
  if (checked.issues.length > 0 || checked.omitted.agents || checked.omitted.plugins) {
    throw new ApexError("APEX_E_INTERNAL", `APEX's default config ${file} is broken:\n${formatIssues(checked.issues)}`, {
      hint: "This APEX installation is damaged; reinstall it.",
    });
  }
  return checked;
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
