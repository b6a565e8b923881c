/**
 * apex.config.yaml → parse keeping positions → document schema → built-in plugin options →
 * defaults → frozen Config. Loading never writes anything; every problem is reported at once.
 */
import { builtinDefaults, withPackageScripts } from "./defaults.js";
import { buildConfig, type BuildInput } from "./build.js";
import { checkDocument, readConfigText } from "./document.js";
import { checkpointIntervalFromEnv } from "./env.js";
import type { ProjectLocation } from "./locate.js";
import type { Config } from "./types.js";
import { configError } from "./validate.js";

export type { Config } from "./types.js";

export interface LoadOptions {
  /** Where APEX_CHECKPOINT_INTERVAL is read from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Messages name files relative to this directory when inside it (default process.cwd()). */
  cwd?: string;
}

/**
 * Loads the project's config. Without a config file (location.configPath undefined) it is the
 * built-in defaults: the default apex.config.yaml shipped with APEX. Throws one ApexError
 * listing every problem: APEX_E_YAML for syntax errors, APEX_E_CONFIG for the rest.
 */
export async function loadConfig(location: ProjectLocation, options: LoadOptions = {}): Promise<Config> {
  const env = options.env ?? process.env;
  const defaults = await builtinDefaults();
  const defaultAgents = () => withPackageScripts(structuredClone(defaults.data.agents) as Record<string, unknown>);
  const defaultPlugins = () => ({ data: structuredClone(defaults.data.plugins) as Record<string, unknown>, source: defaults.source });

  let input: Omit<BuildInput, "checkpointInterval">;
  const interval = checkpointIntervalFromEnv(env);
  if (location.configPath === undefined) {
    if (interval.issues.length > 0) throw configError(interval.issues);
    input = {
      data: structuredClone(defaults.data),
      source: defaults.source,
      location,
      fallback: { agents: defaultAgents(), plugins: defaultPlugins() },
    };
  } else {
    const text = await readConfigText(location.configPath);
    const checked = checkDocument(text, location.configPath, options.cwd);
    // The schemas' issues and what they cannot say (a timer Node.js cannot keep, a gzip level past 9), in document order.
    const issues = [...(await (await import("../../plugins/index.js")).builtinConfigChecks())(checked, location), ...interval.issues];
    if (issues.length > 0) throw configError(issues);
    input = {
      data: checked.data,
      source: checked.source,
      location,
      fallback: {
        ...(checked.omitted.agents ? { agents: defaultAgents() } : {}),
        ...(checked.omitted.plugins ? { plugins: defaultPlugins() } : {}),
      },
    };
  }
  return buildConfig(interval.seconds === undefined ? input : { ...input, checkpointInterval: interval.seconds });
}
