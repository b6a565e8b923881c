import { resolve } from "node:path";
import { parseDuration } from "../../core/config/duration.js";
import type { Config } from "../../core/config/types.js";
import { DEFAULT_HOOK_TIMEOUT_SECONDS } from "./hooks.js";

export const PLUGIN_NAME = "git" as const;

/** The plugin's options (schemas/plugins/git.schema.json), with defaults filled in by the config loader. */
export interface GitPluginOptions {
  hooks?: boolean;
  repository?: string;
  hook_timeout?: number | string;
}

/** The project repository: `repository` resolved against the project directory. */
export function repositoryDir(projectDir: string, options: GitPluginOptions = {}): string {
  return resolve(projectDir, options.repository ?? ".");
}

/** The git plugin's options in a config, or undefined when the plugin is not enabled. */
export function gitPluginOptions(config: Config): GitPluginOptions | undefined {
  const entry = config.plugins.find((plugin) => plugin.name === PLUGIN_NAME && plugin.enabled);
  return entry ? (entry.options as GitPluginOptions) : undefined;
}

/**
 * The project repository of a config, for code outside the plugin (`apex start --continue`):
 * undefined when the git plugin is disabled, since then no checkpoint records a git state.
 */
export function projectRepository(config: Config): string | undefined {
  const options = gitPluginOptions(config);
  return options && repositoryDir(config.projectDir, options);
}

export function hookTimeoutSeconds(options: GitPluginOptions): number {
  return options.hook_timeout === undefined ? DEFAULT_HOOK_TIMEOUT_SECONDS : parseDuration(options.hook_timeout);
}
