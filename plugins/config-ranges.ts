/**
 * What a schema cannot say about a value that passed it: a duration APEX runs as a timer must
 * fit a Node.js timer, and a gzip level stops at 9. Checked with the schemas, before anything
 * runs or is written, so `apex config validate` and every command refuse the same files.
 * Core's loadConfig calls it through the registry (plugins/index.ts: builtinConfigChecks).
 */
import { isDuration, MAX_DURATION_SECONDS, MAX_DURATION_TEXT, parseDuration } from "../core/config/duration.js";
import { formatPath, positionAtOffset, positionOf, yaml, type PathSegment } from "../core/config/source.js";
import type { ConfigIssue, ConfigSource } from "../core/config/types.js";
import type { ProjectLocation } from "../core/config/locate.js";
import { statSync } from "node:fs";
import { realPath } from "./file-system.js";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

/**
 * The longest timer Node.js keeps: 2^31 − 1 ms, about 24.8 days. A longer delay is not an error
 * there but fires after 1 ms (TimeoutOverflowWarning): a `session_timeout: 30d` stopped the
 * session right after it started (the supervisor now runs a longer one as several timers), an
 * interval of 30 days checkpointed every millisecond.
 * (core/config/env.ts holds APEX_CHECKPOINT_INTERVAL to the same bound.)
 */
export const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);
const MAX_TIMER_TEXT = `at most ${MAX_TIMER_SECONDS} seconds (about 24 days, "24d"), the longest timer APEX can keep`;

/** A timer duration of the config, or of APEX_CHECKPOINT_INTERVAL: the problem with it, if any. */
export function timerProblem(value: unknown): string | undefined {
  if (!isDuration(value)) return undefined; // the schema reported it
  const seconds = parseDuration(value);
  return seconds > MAX_TIMER_SECONDS ? `must be ${MAX_TIMER_TEXT} (got ${JSON.stringify(value)})` : undefined;
}

const GZIP_MAX_LEVEL = 9;

/** The document's schema issues with the range issues among them, in document order. */
export function withRanges(checked: { data: Record<string, unknown>; source: ConfigSource; issues: ConfigIssue[] }, location?: ProjectLocation): ConfigIssue[] {
  const underflows = numbersReadAsZero(checked.source);
  // A schema or range issue of such a number ("got 0") is about the 0 the user did not write: its own issue says what happened.
  const others = [...checked.issues, ...checkRanges(checked.data, checked.source, location)].filter((issue) => !underflows.some((underflow) => underflow.path === issue.path));
  return [...others, ...underflows].sort((a, b) => a.line - b.line || a.col - b.col);
}

/**
 * Numbers YAML reads as 0 though their digits are not all zero (`1e-400`: nearer zero than a
 * number holds): an interval of 0 turns checkpoints off, `max_restarts: 0.1e-400` allows none,
 * without a word. Refused, as `apex memory set 1e-400` is (`1e400`, Infinity, the schemas refuse).
 */
function numbersReadAsZero(source: ConfigSource): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const { isPair, isScalar, isSeq, visit } = yaml();
  visit(source.doc, {
    Scalar(_key, node, ancestors) {
      const text = node.source ?? "";
      if (node.value !== 0 || node.type !== "PLAIN" || !/[1-9]/.test(text.replace(/^[-+]?0[xo]/i, "").replace(/[eE].*$/, ""))) return;
      const path: PathSegment[] = [];
      ancestors.forEach((parent, index) => {
        const child = ancestors[index + 1] ?? node;
        if (isPair(parent) && isScalar(parent.key)) path.push(String(parent.key.value));
        else if (isSeq(parent)) path.push(parent.items.indexOf(child as never));
      });
      issues.push({
        ...positionAtOffset(source, node.range?.[0] ?? 0),
        path: formatPath(path),
        message: `the number ${text} is nearer zero than a number holds (about 5e-324): it would be read as 0. Write 0, or a number that is not 0.`,
        expected: "a number a double holds",
      });
    },
  });
  return issues;
}

export function checkRanges(data: Record<string, unknown>, source: ConfigSource, location?: ProjectLocation): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const at = (path: PathSegment[], message: string, expected: string) => issues.push({ ...positionOf(source, path), path: formatPath(path), message, expected });
  const timer = (path: PathSegment[], value: unknown, off = "") => {
    const problem = timerProblem(value);
    if (problem) at(path, `${problem}.${off}`, MAX_TIMER_TEXT);
  };
  // Every other duration: at most about 100 years (a test walks the schemas for every duration, so none is left out).
  const capped = (path: PathSegment[], value: unknown) => {
    if (isDuration(value) && parseDuration(value) > MAX_DURATION_SECONDS) at(path, `must be ${MAX_DURATION_TEXT} (got ${JSON.stringify(value)}).`, MAX_DURATION_TEXT);
  };
  const session = mapping(data.session);
  capped(["session", "session_timeout"], session.session_timeout);
  timer(["session", "auto_checkpoint_interval"], session.auto_checkpoint_interval, " 0 turns interval checkpoints off.");
  // (session_timeout is kept by the supervisor as several timers when it is longer: "30d" is fine.)
  timer(["session", "lease_ttl"], session.lease_ttl);
  // A lease shorter than a second would expire between renewals. Said here, among every other problem: core's
  // buildConfig refused it only once the rest of the file passed, so a file with another problem hid it.
  if (isDuration(session.lease_ttl) && parseDuration(session.lease_ttl) < 1) {
    at(["session", "lease_ttl"], `must be a duration of at least 1 second (got ${JSON.stringify(session.lease_ttl)}). The supervisor renews its lease every third of it.`, "a duration of at least 1 second");
  }
  timer(["session", "plugin_timeout"], session.plugin_timeout, " 0 means no limit.");
  for (const [name, value] of Object.entries(mapping(session.plugin_timeouts))) timer(["session", "plugin_timeouts", name], value, " 0 means no limit.");
  // YAML and APEX expand no "~": "~/backups" made a directory named "~" in the project.
  if (typeof session.backup_location === "string" && /^~(\/|$)/.test(session.backup_location)) {
    at(["session", "backup_location"], `"~" is not expanded (got ${JSON.stringify(session.backup_location)}): write the absolute path, or a path relative to the project directory.`, "an absolute path or one relative to the project directory");
  } else if (typeof session.backup_location === "string" && session.backup_location.includes("\0")) {
    // No file system path holds one: every backup and archive failed, blamed on the archive plugin (exit 1).
    at(["session", "backup_location"], `contains a NUL byte (\\0), which no path can hold (got ${JSON.stringify(session.backup_location)}).`, "a directory path");
  } else if (typeof session.backup_location === "string" && location) {
    const problem = backupLocationProblem(session.backup_location, location, lmdbStoreDir(mapping(data.store), location));
    // The default when the file leaves it out (.apex/backups made a file by hand): said, or the problem read as one of a
    // line of the file that does not set it (the position given is the nearest one the file has).
    const unset = source.doc.hasIn(["session", "backup_location"]) ? "" : " This is the default: the config file does not set session.backup_location; move that file aside, or set another directory.";
    if (problem) at(["session", "backup_location"], `${problem}${unset}`, "a directory of its own: outside the store directory, or a new one inside it such as .apex/backups");
  }
  const url = mapping(data.store).url;
  // An LMDB store's path with one failed every command as APEX_E_INTERNAL.
  if (typeof url === "string" && url.includes("\0")) at(["store", "url"], `contains a NUL byte (\\0), which no path or URL can hold.`, "a path or a URL");
  const agents = mapping(data.agents);
  for (const [name, agent] of Object.entries(agents)) {
    for (const key of ["restart_delay", "max_restart_delay"]) timer(["agents", name, key], mapping(agent)[key]);
    capped(["agents", name, "min_uptime"], mapping(agent).min_uptime);
    // Agent X logs stdout to X.log and stderr to X.err.log: agents "a" and "a.err" would write one file.
    const base = name.endsWith(".err") ? name.slice(0, -".err".length) : undefined;
    if (base !== undefined && Object.hasOwn(agents, base)) {
      const clash = `agents ${base} and ${name} would write the same log file, ${name}.log (${name}'s stdout and ${base}'s stderr, which goes to <agent>.err.log): rename one of them.`;
      issues.push({ ...positionOf(source, ["agents", name], "key"), path: formatPath(["agents", name]), message: clash, expected: "agent names where no name is another's followed by \".err\"" });
    }
  }
  const plugins = mapping(data.plugins);
  timer(["plugins", "checkpoint", "interval"], mapping(plugins.checkpoint).interval, " 0 turns interval checkpoints off.");
  const metricsInterval = mapping(plugins.metrics).interval;
  timer(["plugins", "metrics", "interval"], metricsInterval);
  // Samples are at least a second apart: a shorter interval would sample without pause.
  if (isDuration(metricsInterval) && parseDuration(metricsInterval) < 1) {
    at(["plugins", "metrics", "interval"], `must be at least 1 second (got ${JSON.stringify(metricsInterval)}).`, "a duration of at least 1 second");
  }
  const hookTimeout = mapping(plugins.git).hook_timeout;
  capped(["plugins", "git", "hook_timeout"], hookTimeout);
  // The installed hooks wait whole seconds, one at least: 0 (or 0.3) was taken as 1 s without a word.
  if (isDuration(hookTimeout) && parseDuration(hookTimeout) < 1) {
    at(["plugins", "git", "hook_timeout"], `must be at least 1 second (got ${JSON.stringify(hookTimeout)}). An installed git hook waits this long for APEX, in whole seconds.`, "a duration of at least 1 second");
  }
  const retention = mapping(plugins.retention);
  capped(["plugins", "retention", "keep_within"], retention.keep_within);
  for (const [trigger, rules] of Object.entries(mapping(retention.by_trigger))) capped(["plugins", "retention", "by_trigger", trigger, "keep_within"], mapping(rules).keep_within);
  for (const name of ["compression", "archive"]) {
    const options = mapping(plugins[name]);
    capped(["plugins", name, "older_than"], options.older_than);
    if (options.algorithm === "gzip" && typeof options.level === "number" && options.level > GZIP_MAX_LEVEL) {
      at(["plugins", name, "level"], `gzip levels go from 0 to ${GZIP_MAX_LEVEL} (got ${options.level}); levels up to 11 are brotli's.`, `an integer from 0 to ${GZIP_MAX_LEVEL}`);
    }
  }
  return issues;
}

/** What APEX keeps in the store directory itself: a backup location must not be (in) one of them. */
const STORE_DIR_ENTRIES = ["logs", "run", "bin", "workspace", "store.mdb", "store.mdb-lock", "supervisor.json", "supervisor.log", "supervisor.sock", "serve.json"];

/** What an LMDB store kept elsewhere (store.url, APEX_STORE_URL=lmdb:PATH) holds in its directory. */
const LMDB_DIR_ENTRIES = ["store.mdb", "store.mdb-lock"];

/**
 * `backup_location: .apex` put bundles and store-<time> copies among the store's own files, where
 * a backup's sweep of interrupted copies and the store's cleanups look (and `.apex/logs` among an
 * agent's logs, which retention removes): the store directory itself, however spelled (`..`, a
 * symlink to it), and APEX's own entries in it are refused. A directory of its own inside it, as
 * the default `.apex/backups`, is fine.
 */
function backupLocationProblem(value: string, location: ProjectLocation, lmdbDir: string | undefined): string | undefined {
  const target = realPath(isAbsolute(value) ? value : resolve(location.projectDir, value));
  const shown = `(got ${JSON.stringify(value)}, which is ${target})`;
  const file = nearestExisting(target);
  if (file !== undefined && !statSync(file).isDirectory()) return `${file === target ? "is" : `lies under ${file}, which is`} a file, not a directory ${shown}: backups and archives could not be written there.`;
  // The store's data may be elsewhere (an LMDB store.url or APEX_STORE_URL=lmdb:PATH): its directory is refused as .apex is.
  for (const dir of lmdbDir === undefined ? [location.storeDir] : [location.storeDir, lmdbDir]) {
    const store = realPath(dir);
    const which = dir === lmdbDir ? "the store's data directory" : "the store directory";
    if (target === store) return `is ${which} ${store} itself ${shown}: backups and archives would lie among the store's own files. Use a directory of its own, such as .apex/backups.`;
    if (!target.startsWith(store + sep)) continue;
    const [first = ""] = relative(store, target).split(sep);
    // The data directory holds only the store's files (logs and sockets stay in .apex).
    if (!(dir === lmdbDir ? LMDB_DIR_ENTRIES : STORE_DIR_ENTRIES).includes(first) && !first.startsWith("salvage-")) continue;
    return `lies in ${join(store, first)}, which APEX keeps in ${which} for itself ${shown}. Use a directory of its own, such as .apex/backups.`;
  }
  return undefined;
}

/** The directory of an LMDB store kept elsewhere than .apex (APEX_STORE_URL=lmdb:PATH, else store.url of an lmdb store), as core/store/open.ts resolves it. */
function lmdbStoreDir(store: Record<string, unknown>, location: ProjectLocation): string | undefined {
  const fromEnv = process.env.APEX_STORE_URL;
  if (fromEnv) return fromEnv.startsWith("lmdb:") && fromEnv.length > "lmdb:".length ? resolve(location.projectDir, fromEnv.slice("lmdb:".length)) : undefined;
  return store.backend === "lmdb" && typeof store.url === "string" && store.url !== "" ? resolve(location.projectDir, store.url) : undefined;
}

/** `path`, or its nearest ancestor that exists (undefined if none can be looked at). */
function nearestExisting(path: string): string | undefined {
  for (let at = path; ; at = dirname(at)) {
    try {
      statSync(at);
      return at;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" && (error as NodeJS.ErrnoException).code !== "ENOTDIR") return undefined;
      if (dirname(at) === at) return undefined;
    }
  }
}

function mapping(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}
