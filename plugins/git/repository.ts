import { isAbsolute, relative, resolve } from "node:path";
import { parseDuration } from "../../core/config/duration.js";
import type { Config } from "../../core/config/types.js";
import { historyPath, sessionPath, worktreeOf } from "../../core/session/records.js";
import type { JsonValue, Store } from "../../core/store/store.js";

export const PLUGIN_NAME = "git" as const;
export const DEFAULT_HOOK_TIMEOUT_SECONDS = 10;

/** Where `apex session sync-git` records a session's git state. */
export function sessionGitPath(sessionId: string): string {
  return `/sessions/${sessionId}/git`;
}

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

/**
 * The repository a session works on: the project repository, or, for a session running in a
 * branch's git worktree (`worktree`), the same directory inside that worktree. A `repository`
 * outside the project is not checked out in the worktree: it stays as it is.
 */
export function repositoryIn(projectDir: string, options: GitPluginOptions, worktree: string | null | undefined): string {
  const repository = repositoryDir(projectDir, options);
  if (!worktree) return repository;
  const inside = relative(projectDir, repository);
  return inside.startsWith("..") || isAbsolute(inside) ? repository : resolve(worktree, inside);
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

/** The git worktree a session runs in (its record, active or ended), or null: the project's own tree. */
export function sessionWorktree(store: Pick<Store, "get"> | undefined, sessionId: string): string | null {
  if (!store || !/^[^/*?\\]+$/.test(sessionId)) return null;
  const record = (store.get(sessionPath(sessionId)) ?? store.get(historyPath(sessionId))) as { [key: string]: JsonValue } | undefined;
  return record && typeof record === "object" && !Array.isArray(record) ? worktreeOf(record) : null;
}

/** git's own options that take the next argument as their value (`git -C dir status`). */
const OPTIONS_WITH_VALUE = new Set(["-C", "-c", "--git-dir", "--work-tree", "--namespace", "--super-prefix", "--config-env"]);

/** The git command in an argument list, after git's own options: "commit" in `-c a=b commit -m x`. */
export function gitCommandOf(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (OPTIONS_WITH_VALUE.has(arg)) {
      i++;
      continue;
    }
    if (arg === "--") return args[i + 1];
    if (arg.startsWith("-")) continue;
    return arg;
  }
  return undefined;
}
