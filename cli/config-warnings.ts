/**
 * Settings a config may hold that do nothing with the plugins it enables: the schema takes them,
 * and before, APEX ignored them without a word. `session.max_checkpoints` is enforced by the
 * retention plugin, and interval checkpoints (`session.auto_checkpoint_interval`,
 * APEX_CHECKPOINT_INTERVAL) are taken by the checkpoint plugin; a `store:` setting of the backend not
 * in use does nothing either. `apex config validate`, `apex config show` and `apex start` name each as
 * a warning (exit 0): the config still runs.
 */
import { isBuiltinPlugin } from "../core/config/schemas.js";
import { formatPath, positionOf } from "../core/config/source.js";
import type { Config, ConfigIssue, SourcePosition } from "../core/config/types.js";
import { redactUrl } from "../core/store/open.js";

const INERT: ReadonlyArray<{ key: string; plugin: string; does: string; keep: string }> = [
  { key: "max_checkpoints", plugin: "retention", does: "the retention plugin enforces it", keep: "`retention: {auto_cleanup: false}` applies this cap alone" },
  { key: "auto_checkpoint_interval", plugin: "checkpoint", does: "the checkpoint plugin takes interval checkpoints", keep: "`checkpoint: {}`" },
];

/** One issue per setting written in the config file (or the environment) whose plugin is not enabled. */
export function inertSettings(config: Config, env: NodeJS.ProcessEnv = process.env, pluginNames?: readonly string[]): ConfigIssue[] {
  const source = config.source;
  if (config.configPath === undefined || !source) return []; // the built-in defaults enable both plugins
  const issues: ConfigIssue[] = [];
  for (const { key, plugin, does, keep } of INERT) {
    const entry = config.plugins.find((each) => each.name === plugin);
    if (entry?.enabled) continue;
    const off = entry ? `plugins.${plugin} is false at ${formatPosition(entry.position)}` : `the plugins: section at ${formatPosition(positionOf(source, ["plugins"], "key"))} leaves it out`;
    const message = (what: string) => `has no effect: ${does}, and ${off}. Enable ${plugin} (${keep}), or remove ${what}.`;
    if (source.doc.hasIn(["session", key])) issues.push({ ...positionOf(source, ["session", key], "key"), path: `session.${key}`, message: message(`session.${key}`) });
    if (key === "auto_checkpoint_interval" && (env.APEX_CHECKPOINT_INTERVAL ?? "").trim() !== "") {
      issues.push({ file: "environment", line: 0, col: 0, path: "APEX_CHECKPOINT_INTERVAL", message: message("the variable") });
    }
  }
  return issues.concat(unusedStoreSettings(config, env), miscasedTriggers(config), unknownTimeouts(config, pluginNames));
}

const BACKEND_NAMES: Record<string, string> = { lmdb: "LMDB", postgres: "PostgreSQL" };

/**
 * Settings of the `store:` section for a backend that is not the one in use: the whole section when
 * APEX_STORE_URL names a store on the other backend (a PostgreSQL one over an LMDB section left in the
 * file, its url unused), and `store.project`, a PostgreSQL store's project id, on LMDB. Both were taken
 * without a word, as if they applied. (APEX_STORE_URL over a section of its own backend is what it is for.)
 */
function unusedStoreSettings(config: Config, env: NodeJS.ProcessEnv): ConfigIssue[] {
  const source = config.source;
  if (config.configPath === undefined || !source || !source.doc.hasIn(["store", "backend"])) return [];
  const setting = (key: string) => {
    const value: unknown = source.doc.getIn(["store", key]);
    return typeof value === "string" ? value : undefined;
  };
  const section = { backend: setting("backend") ?? "", url: setting("url"), project: setting("project") };
  const fromEnv = env.APEX_STORE_URL ?? "";
  const envBackend = /^postgres(ql)?:\/\//.test(fromEnv) ? "postgres" : fromEnv.startsWith("lmdb:") ? "lmdb" : undefined;
  if (envBackend !== undefined && envBackend !== section.backend) {
    const unused = [section.url !== undefined ? `its url ${redactUrl(section.url)}` : undefined, section.backend === "postgres" && section.project !== undefined ? `project ${section.project}` : undefined].filter(Boolean);
    if (unused.length === 0) return [];
    const name = BACKEND_NAMES[envBackend]!;
    return [{ ...positionOf(source, ["store"], "key"), path: "store", message: `has no effect: APEX_STORE_URL names the store, ${name === "LMDB" ? "an" : "a"} ${name} one, so this ${BACKEND_NAMES[section.backend] ?? section.backend} section (${unused.join(", ")}) is not used. Unset APEX_STORE_URL to use it, or remove the section.` }];
  }
  if ((envBackend ?? section.backend) === "lmdb" && source.doc.hasIn(["store", "project"])) {
    return [{ ...positionOf(source, ["store", "project"], "key"), path: "store.project", message: "has no effect: it is the project id a PostgreSQL store keys its data by, and the store is LMDB. Remove it, or set backend: postgres with the server's url." }];
  }
  return [];
}

/**
 * A `session.plugin_timeouts` key no enabled plugin has (`slow-hook` for slow-hooks, a path where the plugin's name is
 * meant): its timeout applied to none, without a word. `names`: the enabled plugins' names, as `apex plugins list`
 * shows them (the engine's, when loaded); without it only a config of built-ins is judged, their names being their keys.
 */
function unknownTimeouts(config: Config, names: readonly string[] | undefined): ConfigIssue[] {
  const timeouts = config.session.plugin_timeouts;
  const enabled = config.plugins.filter((entry) => entry.enabled);
  if (!config.source || !timeouts || (names === undefined && enabled.some((entry) => !isBuiltinPlugin(entry.name)))) return [];
  const known = names ?? enabled.map((entry) => entry.name);
  return Object.keys(timeouts)
    .filter((name) => !known.includes(name))
    .map((name) => ({ ...positionOf(config.source!, ["session", "plugin_timeouts", name], "key"), path: formatPath(["session", "plugin_timeouts", name]), message: `names no enabled plugin, so it applies to none: the enabled plugins are ${known.join(", ") || "none"} (as \`apex plugins list\` names them).` }));
}

/** The triggers APEX's own checkpoints are taken with (plugins may add others, of any name). */
const APEX_TRIGGERS = ["manual", "interval", "beforeTask", "afterMilestone", "beforeGit", "onError", "onPause", "onResume", "onStart", "onStop", "beforeRestore", "restore", "continue", "recovery", "branch", "merge", "reconstruct"];

/**
 * A retention `by_trigger` key that is one of APEX's triggers in another case (`onerror`,
 * `Manual`): triggers are matched exactly, so its rules applied to nothing, without a word,
 * and the trigger it meant kept the general rules (or, for manual and beforeRestore, every
 * checkpoint). A name no APEX trigger has in any case may be a plugin's: not named.
 */
function miscasedTriggers(config: Config): ConfigIssue[] {
  const retention = config.plugins.find((each) => each.name === "retention");
  const byTrigger = retention?.enabled ? retention.options.by_trigger : undefined;
  if (!config.source || !byTrigger || typeof byTrigger !== "object") return [];
  const issues: ConfigIssue[] = [];
  for (const key of Object.keys(byTrigger)) {
    const meant = APEX_TRIGGERS.find((trigger) => trigger !== key && trigger.toLowerCase() === key.toLowerCase());
    if (!meant || APEX_TRIGGERS.includes(key)) continue;
    const path = ["plugins", "retention", "by_trigger", key];
    issues.push({ ...positionOf(config.source, path, "key"), path: path.join("."), message: `no checkpoint has trigger ${JSON.stringify(key)}: triggers are matched exactly, so these rules apply to none, and ${meant} checkpoints keep the others. Did you mean ${meant}?` });
  }
  return issues;
}

const formatPosition = (at: SourcePosition) => `${at.file}:${at.line}:${at.col}`;

/** `apex.config.yaml:2:3: session.max_checkpoints: has no effect: …` */
export function warningText(issue: ConfigIssue): string {
  return `${issue.line > 0 ? `${issue.file}:${issue.line}:${issue.col}` : issue.file}: ${issue.path}: ${issue.message}`;
}
