import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import { parseDuration } from "../core/config/duration.js";
import { loadConfig } from "../core/config/load.js";
import { locateProject } from "../core/config/locate.js";
import { builtinDefaults, defaultsHashes, matchingDefaults } from "../core/config/defaults.js";
import { checkDocument } from "../core/config/document.js";
import { displayPath, parseSource, positionOf } from "../core/config/source.js";
import type { Config } from "../core/config/types.js";
import { builtinPluginSchema, configSchema, matchingValidator, precompiledValidator, schemaTextHash } from "../core/config/schemas.js";
import { compileSchema, configError, createAjv, documentAjv, formatIssues, resolveOptions, validateOptions } from "../core/config/validate.js";
import { ApexError } from "../core/errors.js";
import { REPO_ROOT, runApex, tempDir } from "./helpers/cli.js";
import { caseInsensitiveDir } from "../cli/agent-names.js";

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "fixtures/configs");
const DEFAULT_CONFIG = join(REPO_ROOT, "apex.config.yaml");

/** Loads a fixture as the project's config; messages name it relative to its folder. */
function loadFixture(kind: "valid" | "invalid", name: string, env: NodeJS.ProcessEnv = {}): Promise<Config> {
  const dir = join(FIXTURES, kind);
  return loadConfig({ configPath: join(dir, name), projectDir: dir, storeDir: join(dir, ".apex") }, { env, cwd: dir });
}

async function failureOf(promise: Promise<unknown>): Promise<ApexError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ApexError) return error;
    throw error;
  }
  throw new Error("expected the config to be rejected, but it loaded");
}

const CHECKPOINT_DEFAULTS = { triggers: ["beforeTask", "afterMilestone", "beforeGit", "onError", "onPause"], paths: ["/**"] };
const RETENTION_DEFAULTS = { keep_last: 5, keep_daily: 7, keep_weekly: 4, auto_cleanup: true };

function referenceAgent(name: string, description: string, script: string) {
  return {
    description,
    command: "node",
    args: [script],
    env: { APEX_AGENT_PACE: "1" },
    cwd: ".",
    restart: "on-failure",
    max_restarts: 3,
    restart_delay: 1,
    max_restart_delay: 15,
    min_uptime: 60,
  };
}

function referenceAgents(scriptDir: string) {
  return {
    supervisor: referenceAgent("supervisor", "Plans the work, assigns tasks and reviews the results.", join(scriptDir, "supervisor.mjs")),
    coder: referenceAgent("coder", "Works through the tasks it is given.", join(scriptDir, "coder.mjs")),
    adversary: referenceAgent("adversary", "Challenges the coder's results and reports what fails.", join(scriptDir, "adversary.mjs")),
  };
}

describe("invalid configs: every problem, with file:line:col, path, expectation and suggestion", () => {
  it.each([
    [
      "unknown top-level key",
      "unknown-top-level-key.yaml",
      {},
      "APEX_E_CONFIG",
      `unknown-top-level-key.yaml:1:1: sesion: unknown key. Expected one of session, store, agents, plugins. Did you mean "session"?`,
    ],
    [
      "plugin written at the top level",
      "misplaced-plugin.yaml",
      {},
      "APEX_E_CONFIG",
      `misplaced-plugin.yaml:1:1: retention: unknown key. Expected one of session, store, agents, plugins. Did you mean "plugins.retention"?`,
    ],
    [
      "unknown option of a built-in plugin",
      "retention-unknown-option.yaml",
      {},
      "APEX_E_CONFIG",
      `retention-unknown-option.yaml:7:5: plugins.retention.keep_lst: unknown option. Expected one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup. Did you mean "keep_last"?`,
    ],
    [
      "wrong type",
      "wrong-type.yaml",
      {},
      "APEX_E_CONFIG",
      `wrong-type.yaml:3:29: session.auto_checkpoint_interval: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got "soon"). Time between automatic checkpoints.`,
    ],
    [
      "negative number",
      "negative-number.yaml",
      {},
      "APEX_E_CONFIG",
      `negative-number.yaml:3:16: plugins.retention.keep_last: must be an integer ≥ 0 (got -1). Keep the most recent N checkpoints of each trigger class.`,
    ],
    [
      "agent without a command",
      "agent-missing-command.yaml",
      {},
      "APEX_E_CONFIG",
      `agent-missing-command.yaml:2:3: agents.coder.command: required key is missing. Expected a non-empty string. The program to run: a name found on PATH, or a path relative to the agent's cwd.`,
    ],
    [
      "restart policy typo",
      "restart-policy-typo.yaml",
      {},
      "APEX_E_CONFIG",
      `restart-policy-typo.yaml:4:14: agents.coder.restart: must be one of "never", "on-failure", "always" (got "on_failure"). When to restart the agent after it exits: never, on-failure (a non-zero exit code or a signal), or always (a clean exit too, not counted by max_restarts). Did you mean "on-failure"?`,
    ],
    [
      "agent name with a space",
      "agent-name.yaml",
      {},
      "APEX_E_CONFIG",
      `agent-name.yaml:2:3: agents["my coder"]: invalid name. Expected a name of at most 64 letters, digits, ".", "_" and "-" that starts with a letter or digit.`,
    ],
    [
      "duration that is not one",
      "bad-duration.yaml",
      {},
      "APEX_E_CONFIG",
      `bad-duration.yaml:2:20: session.session_timeout: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got "two hours"). How long a session may go without agent activity (reports, task changes, memory writes) before APEX stops it; 0 means no limit.`,
    ],
    [
      "plugin value that is neither options nor true/false",
      "plugin-value-type.yaml",
      {},
      "APEX_E_CONFIG",
      [
        `plugin-value-type.yaml:2:8: plugins.git: must be a mapping of options, true or false (got 5). Records the git state in every checkpoint and fires beforeGit around git operations.`,
        `plugin-value-type.yaml:3:22: plugins["./local-plugin.js"]: must be a mapping of options, true or false (got a list). Options of a plugin from npm or a local file; the plugin's own schema checks them.`,
      ].join("\n"),
    ],
    [
      "typo in a list item",
      "trigger-typo.yaml",
      {},
      "APEX_E_CONFIG",
      `trigger-typo.yaml:3:28: plugins.checkpoint.triggers[1]: must be one of "onStart", "beforeTask", "afterMilestone", "beforeGit", "onError", "onPause", "onResume", "onStop" (got "onEror"). Hooks that save a checkpoint when they fire. Did you mean "onError"?`,
    ],
    [
      "YAML 1.1 boolean",
      "yes-is-not-a-boolean.yaml",
      {},
      "APEX_E_CONFIG",
      `yes-is-not-a-boolean.yaml:3:19: plugins.retention.auto_cleanup: must be true or false (got "yes"). Apply the policy after every checkpoint (default true). Did you mean true?`,
    ],
    [
      "a list instead of a mapping",
      "root-is-a-list.yaml",
      {},
      "APEX_E_CONFIG",
      `root-is-a-list.yaml:1:1: must be a mapping (got a list). How APEX runs sessions in this project: session settings, the agent processes, and the plugins with their options.`,
    ],
    [
      "YAML syntax error",
      "yaml-syntax-error.yaml",
      {},
      "APEX_E_YAML",
      [
        `yaml-syntax-error.yaml:4:37: Flow sequence in block collection must be sufficiently indented and end with a ].`,
        `yaml-syntax-error.yaml:4:38: Flow map in block collection must be sufficiently indented and end with a }.`,
      ].join("\n"),
    ],
    ["duplicate key", "duplicate-key.yaml", {}, "APEX_E_YAML", `duplicate-key.yaml:3:3: session.max_checkpoints: given twice (first at line 2); YAML would keep only one of the two. Remove or merge one.`],
    [
      "APEX_CHECKPOINT_INTERVAL under a second",
      "../valid/minimal.yaml",
      { APEX_CHECKPOINT_INTERVAL: "0.5s" },
      "APEX_E_CONFIG",
      `environment: APEX_CHECKPOINT_INTERVAL: must be 0 (no interval checkpoints) or a duration of at least 1 second and at most 2147483 seconds (about 24 days), in seconds or with units such as "5m" (got "0.5s"). It overrides session.auto_checkpoint_interval.`,
    ],
    [
      // 0 is taken (interval checkpoints off, as in the config); a negative one is not.
      "APEX_CHECKPOINT_INTERVAL below zero",
      "../valid/minimal.yaml",
      { APEX_CHECKPOINT_INTERVAL: "-5" },
      "APEX_E_CONFIG",
      `environment: APEX_CHECKPOINT_INTERVAL: must be 0 (no interval checkpoints) or a duration of at least 1 second and at most 2147483 seconds (about 24 days), in seconds or with units such as "5m" (got "-5"). It overrides session.auto_checkpoint_interval.`,
    ],
    [
      "APEX_CHECKPOINT_INTERVAL longer than a timer keeps",
      "../valid/minimal.yaml",
      { APEX_CHECKPOINT_INTERVAL: "30d" },
      "APEX_E_CONFIG",
      `environment: APEX_CHECKPOINT_INTERVAL: must be 0 (no interval checkpoints) or a duration of at least 1 second and at most 2147483 seconds (about 24 days), in seconds or with units such as "5m" (got "30d"). It overrides session.auto_checkpoint_interval.`,
    ],
    [
      "APEX_CHECKPOINT_INTERVAL that is not a number, with config errors too",
      "wrong-type.yaml",
      { APEX_CHECKPOINT_INTERVAL: "often" },
      "APEX_E_CONFIG",
      [
        `wrong-type.yaml:3:29: session.auto_checkpoint_interval: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got "soon"). Time between automatic checkpoints.`,
        `environment: APEX_CHECKPOINT_INTERVAL: must be 0 (no interval checkpoints) or a duration of at least 1 second and at most 2147483 seconds (about 24 days), in seconds or with units such as "5m" (got "often"). It overrides session.auto_checkpoint_interval.`,
      ].join("\n"),
    ],
    [
      // YAML read them as 0 without a word: interval checkpoints off, no restarts. "got 0" was said of the checkpoint cap, which the user did not write. 0e-400 is 0 written so; a quoted one is a string.
      "numbers YAML reads as 0 though their digits are not all zero (1e-400)",
      "numbers-read-as-zero.yaml",
      {},
      "APEX_E_CONFIG",
      [
        `numbers-read-as-zero.yaml:2:29: session.auto_checkpoint_interval: the number 1e-400 is nearer zero than a number holds (about 5e-324): it would be read as 0. Write 0, or a number that is not 0.`,
        `numbers-read-as-zero.yaml:3:20: session.max_checkpoints: the number 0.1e-400 is nearer zero than a number holds (about 5e-324): it would be read as 0. Write 0, or a number that is not 0.`,
        `numbers-read-as-zero.yaml:8:19: agents.coder.max_restarts: the number -2E-999 is nearer zero than a number holds (about 5e-324): it would be read as 0. Write 0, or a number that is not 0.`,
        `numbers-read-as-zero.yaml:11:26: plugins.retention.keep_last: must be an integer ≥ 0 (got "1e-400"). Keep the most recent N checkpoints of each trigger class.`,
      ].join("\n"),
    ],
    [
      "lease shorter than a second",
      "lease-ttl-short.yaml",
      {},
      "APEX_E_CONFIG",
      `lease-ttl-short.yaml:2:14: session.lease_ttl: must be a duration of at least 1 second (got 0.5). The supervisor renews its lease every third of it.`,
    ],
    [
      // A message ends with the first sentence of the setting's description: it was cut at "e.g.", ending the message there.
      "a description's first sentence goes on past e.g.",
      "description-abbreviations.yaml",
      {},
      "APEX_E_CONFIG",
      [
        "description-abbreviations.yaml:2:20: session.plugin_timeouts: must be a mapping (got a list). plugin_timeout for single plugins, by the plugin's name as `apex plugins list` shows it, e.g. {my-plugin: 10m}; 0 means no limit.",
        `description-abbreviations.yaml:6:21: plugins.sharing.serve.listen: must be a non-empty string (got 5). HOST:PORT to listen on, e.g. 127.0.0.1:7433 (port 0: any free port).`,
      ].join("\n"),
    ],
    [
      // An empty plugin key was "invalid name. Expected a valid value.": what a plugin's name is, said.
      "empty plugin name",
      "plugin-empty-name.yaml",
      {},
      "APEX_E_CONFIG",
      'plugin-empty-name.yaml:2:3: plugins[""]: invalid name. Expected the name of a plugin (a built-in one, an npm package or a path such as ./my-plugin.js), not an empty key.',
    ],
    [
      // The lease was checked only once the rest of the file passed: another problem hid it, and a fix of that one revealed it.
      // A number read as 0 is said once, as such: "must be at least 1 second (got 0)" was said of a 0 the user did not write.
      "lease shorter than a second among other problems",
      "lease-ttl-short-among-others.yaml",
      {},
      "APEX_E_CONFIG",
      [
        `lease-ttl-short-among-others.yaml:2:14: session.lease_ttl: must be a duration of at least 1 second (got 0). The supervisor renews its lease every third of it.`,
        `lease-ttl-short-among-others.yaml:3:20: session.max_checkpoints: must be an integer ≥ 1 (got 0). Most checkpoints a session keeps.`,
        `lease-ttl-short-among-others.yaml:6:15: plugins.metrics.interval: the number 1e-400 is nearer zero than a number holds (about 5e-324): it would be read as 0. Write 0, or a number that is not 0.`,
        // The installed hooks wait whole seconds, one at least: 0 was taken as 1 s without a word.
        `lease-ttl-short-among-others.yaml:8:19: plugins.git.hook_timeout: must be at least 1 second (got 0). An installed git hook waits this long for APEX, in whole seconds.`,
      ].join("\n"),
    ],
    [
      // Node.js fires a timer longer than 2^31-1 ms after 1 ms: a 4-week interval checkpointed every millisecond (a 30-day session_timeout, kept as several timers, is fine).
      "timers longer than Node.js keeps, numbers YAML reads as infinite or NaN, gzip levels past 9, a backup_location starting with ~",
      "timers-too-long.yaml",
      {},
      "APEX_E_CONFIG",
      [
        `timers-too-long.yaml:3:20: session.backup_location: "~" is not expanded (got "~/apex-backups"): write the absolute path, or a path relative to the project directory.`,
        `timers-too-long.yaml:4:29: session.auto_checkpoint_interval: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got Infinity). Time between automatic checkpoints.`,
        `timers-too-long.yaml:9:24: agents.coder.max_restart_delay: must be at most 2147483 seconds (about 24 days, "24d"), the longest timer APEX can keep (got "25d").`,
        `timers-too-long.yaml:11:26: plugins.checkpoint.interval: must be at most 2147483 seconds (about 24 days, "24d"), the longest timer APEX can keep (got "4w"). 0 turns interval checkpoints off.`,
        `timers-too-long.yaml:12:23: plugins.metrics.interval: must be at most 2147483 seconds (about 24 days, "24d"), the longest timer APEX can keep (got 3000000).`,
        `timers-too-long.yaml:13:26: plugins.retention.keep_last: must be an integer ≥ 0 (got Infinity). Keep the most recent N checkpoints of each trigger class.`,
        `timers-too-long.yaml:14:41: plugins.compression.level: gzip levels go from 0 to 9 (got 11); levels up to 11 are brotli's.`,
        `timers-too-long.yaml:15:37: plugins.archive.level: gzip levels go from 0 to 9 (got 10); levels up to 11 are brotli's.`,
        `timers-too-long.yaml:15:59: plugins.archive.max_bundle_bytes: must be an integer ≥ 1048576 (got NaN). Largest bundle (its uncompressed contents, in bytes) that unarchive and import accept; larger ones are refused before they are read.`,
      ].join("\n"),
    ],
    [
      "many errors at once, in document order",
      "multiple-errors.yaml",
      {},
      "APEX_E_CONFIG",
      [
        `multiple-errors.yaml:2:29: session.auto_checkpoint_interval: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got -1). Time between automatic checkpoints.`,
        `multiple-errors.yaml:3:20: session.max_checkpoints: must be an integer ≥ 1 (got "many"). Most checkpoints a session keeps.`,
        `multiple-errors.yaml:4:3: session.sesion_timeout: unknown key. Expected one of auto_checkpoint_interval, max_checkpoints, auto_recovery, session_timeout, lease_ttl, plugin_timeout, plugin_timeouts, backup_location. Did you mean "session_timeout"?`,
        `multiple-errors.yaml:8:30: agents.coder.args[1]: must be a string, a number, true or false (got a mapping). Arguments passed to the command.`,
        `multiple-errors.yaml:9:14: agents.coder.restart: must be one of "never", "on-failure", "always" (got "sometimes"). When to restart the agent after it exits: never, on-failure (a non-zero exit code or a signal), or always (a clean exit too, not counted by max_restarts).`,
        `multiple-errors.yaml:10:19: agents.coder.max_restarts: must be an integer ≥ 0 (got -2). Crashes in a row restarted before the agent is marked failed (a clean exit is not counted).`,
        `multiple-errors.yaml:11:3: agents.reviewer.command: required key is missing. Expected a non-empty string. The program to run: a name found on PATH, or a path relative to the agent's cwd.`,
        `multiple-errors.yaml:15:5: plugins.retention.keep_lst: unknown option. Expected one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup. Did you mean "keep_last"?`,
        `multiple-errors.yaml:16:18: plugins.retention.keep_within: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got "two days"). Keep every checkpoint younger than this.`,
        `multiple-errors.yaml:18:16: plugins.compression.algorithm: must be one of "brotli", "gzip" (got "zstd"). The compression algorithm.`,
        `multiple-errors.yaml:19:12: plugins.compression.level: must be an integer from 0 to 11 (got 12). Compression level: 0 (fastest) to 11 (smallest) for brotli, 0 to 9 for gzip.`,
      ].join("\n"),
    ],
  ])("%s", async (_title, fixture, env, code, message) => {
    const error = await failureOf(loadFixture("invalid", fixture, env));
    expect(error.code).toBe(code);
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(message);
    const errors = error.details?.errors as Array<Record<string, unknown>>;
    expect(errors).toHaveLength(message.split("\n").length);
    expect(formatIssues(errors as never)).toBe(message);
  });

  it("gives each problem as data: file, line, col, path, expectation and suggestion", async () => {
    const error = await failureOf(loadFixture("invalid", "retention-unknown-option.yaml"));
    expect(error.details).toEqual({
      errors: [
        {
          file: "retention-unknown-option.yaml",
          line: 7,
          col: 5,
          path: "plugins.retention.keep_lst",
          message: `unknown option. Expected one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup. Did you mean "keep_last"?`,
          expected: "one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup",
          suggestion: "keep_last",
        },
      ],
    });
  });

  it("names a file outside the working directory by its absolute path", async () => {
    const file = join(FIXTURES, "invalid", "wrong-type.yaml");
    const error = await failureOf(loadConfig({ configPath: file, projectDir: dirname(file), storeDir: "/nowhere" }, { env: {}, cwd: REPO_ROOT + "/core" }));
    expect(error.message.startsWith(`${file}:3:29: session.auto_checkpoint_interval:`)).toBe(true);
  });

  it("a config file over 256 KiB is refused before it is parsed (an 18 MB one took every command over ten minutes and 2 GB)", async () => {
    const { dir, cleanup } = tempDir("apex-config-size-");
    try {
      const file = join(dir, "apex.config.yaml");
      const location = { configPath: file, projectDir: dir, storeDir: join(dir, ".apex") };
      const entry = (i: number) => `  k${String(i).padStart(6, "0")}: [${i}, "v"]\n`;
      // At the limit it loads (a comment pads it to exactly 256 KiB); one byte more is refused, fast.
      const body = `x-data:\n${Array.from({ length: 2000 }, (_, i) => entry(i)).join("")}`;
      writeFileSync(file, `${body}#${"-".repeat(256 * 1024 - body.length - 2)}\n`);
      await loadConfig(location, { env: {}, cwd: dir });
      writeFileSync(file, `${body}#${"-".repeat(256 * 1024 - body.length - 1)}\n`);
      const started = Date.now();
      const error = await failureOf(loadConfig(location, { env: {}, cwd: dir }));
      expect(error).toMatchObject({ code: "APEX_E_CONFIG", exitCode: 2, message: `The config file ${file} is 262145 bytes; a config file is at most 262144 (256 KiB).` });
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      cleanup();
    }
  });

  it("a config file saved as UTF-16 or UTF-32 (a Windows editor's, with a byte order mark) is refused as such, not as 'must be a mapping'", async () => {
    const { dir, cleanup } = tempDir("apex-config-utf16-");
    try {
      const file = join(dir, "apex.config.yaml");
      const location = { configPath: file, projectDir: dir, storeDir: join(dir, ".apex") };
      const yaml = "session:\n  session_timeout: 2h\n";
      const utf16le = Buffer.from(`\ufeff${yaml}`, "utf16le");
      const utf32le = Buffer.alloc(utf16le.length * 2);
      for (let i = 0; i < utf16le.length / 2; i++) utf32le.writeUInt32LE(utf16le.readUInt16LE(i * 2), i * 4);
      for (const [bytes, what] of [
        [utf16le, "is UTF-16 text"],
        [Buffer.from(utf16le).swap16(), "is UTF-16 text"], // big-endian
        [utf32le, "is UTF-32 text"],
        [Buffer.from(utf32le).swap32(), "is UTF-32 text"],
        [utf16le.subarray(2), "has NUL bytes (UTF-16 or UTF-32 text, or no text)"], // no byte order mark
      ] as const) {
        writeFileSync(file, bytes);
        const error = await failureOf(loadConfig(location, { env: {}, cwd: dir }));
        expect(error).toMatchObject({ code: "APEX_E_CONFIG", exitCode: 2, message: `The config file ${file} ${what}; APEX reads its config as UTF-8.`, hint: expect.stringContaining("Save it as UTF-8") });
      }
      // Through the CLI: exit 2 with that error (it said "apex.config.yaml:1:1: must be a mapping (got \"��s\u0000e…\")").
      writeFileSync(file, utf16le);
      const validate = runApex(["config", "validate"], { cwd: dir });
      expect([validate.status, validate.stderr]).toEqual([2, expect.stringContaining(`apex.config.yaml: The file is UTF-16 text; APEX reads its config as UTF-8. Save it as UTF-8`)]);
      expect(runApex(["memory", "set", "/a", "1"], { cwd: dir }).stderr).toContain(`error[APEX_E_CONFIG]: The config file ${file} is UTF-16 text;`);
      // UTF-8 with a byte order mark is UTF-8: it loads.
      writeFileSync(file, `\ufeff${yaml}`);
      expect((await loadConfig(location, { env: {}, cwd: dir })).session.session_timeout).toBe(7200);
    } finally {
      cleanup();
    }
  });

  it("a config file that is no UTF-8 (Latin-1) is refused naming the line of its first such byte, not read with U+FFFD in its place", () => {
    const { dir, cleanup } = tempDir("apex-config-latin1-");
    try {
      // "café" saved as Latin-1: the agent's argument became "caf\ufffd" without a word.
      writeFileSync(join(dir, "apex.config.yaml"), Buffer.concat([Buffer.from('agents:\n  c:\n    command: echo\n    args: ["caf'), Buffer.from([0xe9]), Buffer.from('"]\nplugins: {}\n')]));
      for (const args of [["memory", "set", "/a", "1"], ["start", "--task", "t"]]) {
        const refused = runApex(args, { cwd: dir });
        expect([refused.status, refused.stderr]).toEqual([2, expect.stringContaining(`error[APEX_E_CONFIG]: The config file ${join(dir, "apex.config.yaml")} is not UTF-8 text: line 4 has the byte 0xe9`)]);
      }
      const validate = runApex(["config", "validate", "--json"], { cwd: dir });
      expect(validate.status).toBe(2);
      expect(JSON.parse(validate.stdout).errors).toEqual([
        { file: "apex.config.yaml", line: 4, col: 16, path: "", message: expect.stringMatching(/^The file is not UTF-8 text: line 4 has the byte 0xe9 .*Save it as UTF-8/) },
      ]);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
    } finally {
      cleanup();
    }
  });

  it("an apex.config.yaml that is a directory is refused as such, by validate --json as one of its errors, and a parent's config is not taken instead", () => {
    const { dir, cleanup } = tempDir("apex-config-dir-");
    try {
      // A parent project with a valid config; the project below has a directory where its config would be.
      writeFileSync(join(dir, "apex.config.yaml"), "plugins: {}\nagents: {}\n");
      mkdirSync(join(dir, "app/apex.config.yaml"), { recursive: true });
      mkdirSync(join(dir, "app/src"));
      const cwd = join(dir, "app/src");
      // Before, the search passed over the directory: validate said the parent's config was valid, and a write went to the parent's store.
      const text = runApex(["config", "validate"], { cwd });
      expect([text.status, text.stderr]).toEqual([2, `${join(dir, "app/apex.config.yaml")}: The file is a directory; the config is a YAML file. Move the directory away, or point --config at the file.\n${join(dir, "app/apex.config.yaml")} is invalid (1 problem).\n`]);
      const json = runApex(["config", "validate", "--json"], { cwd });
      expect(json.status).toBe(2);
      expect(JSON.parse(json.stdout)).toMatchObject({ valid: false, errors: [{ line: 0, col: 0, path: "", message: expect.stringContaining("is a directory") }] });
      const write = runApex(["memory", "set", "/a", "1"], { cwd });
      expect([write.status, write.stderr]).toEqual([2, expect.stringContaining(`error[APEX_E_CONFIG]: The config file ${join(dir, "app/apex.config.yaml")} is a directory`)]);
      // --config naming a directory: it exists, and is said to be a directory (it was "does not exist").
      const flag = runApex(["--config", join(dir, "app/apex.config.yaml"), "memory", "set", "/a", "1"], { cwd: dir });
      expect([flag.status, flag.stderr]).toEqual([2, expect.stringContaining("is a directory; the config is a YAML file.")]);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
      expect(existsSync(join(dir, "app/.apex"))).toBe(false);
    } finally {
      cleanup();
    }
  });

  it("an apex.config.yaml that is a symbolic link to a missing file is said to be one, naming the target (found, --config, APEX_CONFIG, a chain of links), exit 2, nothing written", () => {
    const { dir, cleanup } = tempDir("apex-config-link-");
    try {
      symlinkSync("shared/apex.yaml", join(dir, "apex.config.yaml"));
      symlinkSync(join(dir, "apex.config.yaml"), join(dir, "second.yaml"));
      const target = join(dir, "shared/apex.yaml");
      const message = (file: string, from = "") => `The config file ${join(dir, file)}${from} is a symbolic link to ${target}, which does not exist.`;
      // Before: "does not exist", while `ls` shows the file there.
      for (const [args, env, file, from] of [
        [["memory", "set", "/a", "1"], {}, "apex.config.yaml", ""],
        [["start", "--task", "t"], {}, "apex.config.yaml", ""],
        [["--config", "second.yaml", "memory", "set", "/a", "1"], {}, "second.yaml", " (from --config)"],
        [["task", "add", "t"], { APEX_CONFIG: "second.yaml" }, "second.yaml", " (from APEX_CONFIG)"],
      ] as Array<[string[], NodeJS.ProcessEnv, string, string]>) {
        const result = runApex([...args, "--json"], { cwd: dir, env });
        expect(result.status, result.stderr).toBe(2);
        expect(JSON.parse(result.stderr).error).toEqual({
          code: "APEX_E_CONFIG_NOT_FOUND",
          message: message(file, from),
          exitCode: 2,
          exit_code: 2,
          hint: `Restore ${target}, or point the link at a config file (ln -sfn FILE ${JSON.stringify(join(dir, file))}), or remove it.`,
          details: { file: join(dir, file), target },
        });
      }
      const validate = runApex(["config", "validate"], { cwd: dir });
      expect([validate.status, validate.stderr]).toEqual([2, expect.stringContaining(`error[APEX_E_CONFIG_NOT_FOUND]: ${message("apex.config.yaml")}`)]);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
      // A file that is not there at all is still "does not exist".
      const missing = runApex(["--config", "none.yaml", "status"], { cwd: dir });
      expect([missing.status, missing.stderr]).toEqual([2, expect.stringContaining(`The config file ${join(dir, "none.yaml")} (from --config) does not exist.`)]);
    } finally {
      cleanup();
    }
  });

  it("an apex.config.yaml that is a symbolic link in a loop is said to be one, with the loop (found or --config), exit 2, nothing written", () => {
    const { dir, cleanup } = tempDir("apex-config-loop-");
    try {
      symlinkSync("other.yaml", join(dir, "apex.config.yaml"));
      symlinkSync("apex.config.yaml", join(dir, "other.yaml"));
      const [config, other] = [join(dir, "apex.config.yaml"), join(dir, "other.yaml")];
      // Before: "does not exist" (found: "cannot be read: ELOOP … Check its permissions"), or a link "to other.yaml, which does not exist".
      for (const [args, file, from, chain] of [
        [["memory", "set", "/a", "1"], config, "", [config, other, config]],
        [["--config", "other.yaml", "task", "add", "t"], other, " (from --config)", [other, config, other]],
      ] as Array<[string[], string, string, string[]]>) {
        const result = runApex([...args, "--json"], { cwd: dir });
        expect(result.status, result.stderr).toBe(2);
        expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_CONFIG_NOT_FOUND", message: `The config file ${file}${from} is a symbolic link in a loop (${chain.join(" -> ")}).` });
      }
      expect(existsSync(join(dir, ".apex"))).toBe(false);
    } finally {
      cleanup();
    }
  });

  it("aliases that expand to more than a million values are refused before anything checks them (billion laughs, deep or wide), quickly", () => {
    const refusal = (text: string) => {
      const started = Date.now();
      let error: unknown;
      try {
        checkDocument(text, "/work/apex.config.yaml", "/work");
      } catch (thrown) {
        error = thrown;
      }
      expect(Date.now() - started).toBeLessThan(3000);
      expect(error).toMatchObject({ code: "APEX_E_YAML", exitCode: 2 });
      return (error as Error).message;
    };
    // Nine levels of nine aliases: 9^10 values from 600 bytes.
    const laughs = ['x-0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
    for (let i = 1; i < 10; i++) laughs.push(`x-${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(",")}]`);
    expect(refusal(`${laughs.join("\n")}\nagents: {a: {command: sleep, args: *a9}}\n`)).toMatch(/^apex\.config\.yaml:11:\d+: Its aliases expand the file to more than the 1000000 values APEX reads, as a "billion laughs" file does \(\*a9 here alone stands for \d+\)\.$/);
    // One level, wide: 300 agents sharing a list of 4,000 arguments. yaml's own bound (how many aliases) let it through,
    // and the agents' args were then checked 1.2 million times (900 of 40,000: half a minute for every command).
    const wide = [`x-args: &args [${Array(4000).fill("1").join(",")}]`, "agents:", ...Array.from({ length: 300 }, (_, i) => `  a${i}: {command: sleep, args: *args}`)];
    expect(refusal(`${wide.join("\n")}\n`)).toContain("(*args here alone stands for 4001)");
    // Few values, many aliases: yaml's own bound, in APEX's words (it was "Excessive alias count indicates a resource exhaustion attack").
    expect(refusal(`x-one: &one 1\nx-many: [${Array(1001).fill("*one").join(",")}]\n`)).toBe(
      "apex.config.yaml:1:1: Its aliases are expanded more than 1000 times in all, the most APEX expands: give the values themselves, or fewer aliases.",
    );
  });

  it("an alias inside the node it names is refused where it is, not a stack overflow (APEX_E_INTERNAL)", () => {
    for (const [text, at] of [["plugins: &x {checkpoint: {paths: *x}}\n", "1:34"], ["x-loop: &x [1, *x]\n", "1:16"]] as const) {
      expect(() => checkDocument(text, "/work/apex.config.yaml", "/work")).toThrow(`apex.config.yaml:${at}: The alias *x is inside the node &x it names: its value would never end.`);
    }
    // Anchors used as intended load as before.
    const shared = "x-agent: &agent {command: sleep, restart: never}\nagents:\n  a: {<<: *agent}\n  b: {<<: *agent, args: [\"5\"]}\n";
    expect(checkDocument(shared, "/work/apex.config.yaml", "/work").issues).toEqual([]);
  });

  it("a second YAML document is said in APEX's words, where it starts", () => {
    // It said "Source contains multiple documents; please use YAML.parseAllDocuments()": the yaml library's API, not a fix.
    expect(() => checkDocument("---\nsession: {}\n---\nagents: {}\n", "/work/apex.config.yaml", "/work")).toThrow(
      "apex.config.yaml:3:1: A second YAML document starts here (`---`); a config file is one document: merge the two, or remove the second.",
    );
    // One document between markers is one document.
    expect(checkDocument("---\nagents: {}\n...\n", "/work/apex.config.yaml", "/work").issues).toEqual([]);
  });

  it("a key given twice is named with its path and the line of the first, at any depth and in flow mappings", () => {
    // yaml said only "Map keys must be unique." with no key and no path.
    const text = [
      "agents:",
      "  coder:",
      "    command: node",
      "    env: {A: '1', B: '2', A: '3'}",
      "    args: [x.mjs]",
      "    command: sleep",
      "plugins:",
      "  - checkpoint: {}",
      "    'checkpoint': {}",
      "",
    ].join("\n");
    let error: unknown;
    try {
      checkDocument(text, "/work/apex.config.yaml", "/work");
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toMatchObject({ code: "APEX_E_YAML", exitCode: 2 });
    const twice = (first: number) => `given twice (first at line ${first}); YAML would keep only one of the two. Remove or merge one.`;
    expect((error as ApexError).details?.errors).toEqual([
      { file: "apex.config.yaml", line: 4, col: 27, path: "agents.coder.env.A", message: twice(4) },
      { file: "apex.config.yaml", line: 6, col: 5, path: "agents.coder.command", message: twice(3) },
      { file: "apex.config.yaml", line: 9, col: 5, path: "plugins[0].checkpoint", message: twice(8) },
    ]);
  });

  it("a document nested deeper than the parser follows (lists, mappings) is said so, not as the engine's stack overflow", () => {
    // Deep enough for any stack the engine has (it overflowed at 800 levels here, JIT-compiled deeper).
    const deepFlow = `session: ${"[".repeat(60_000)}${"]".repeat(60_000)}\n`;
    const deepMaps = `session: ${"{a: ".repeat(60_000)}1${"}".repeat(60_000)}\n`;
    for (const text of [deepFlow, deepMaps]) {
      let error: unknown;
      try {
        checkDocument(text, "/work/deep.yaml", "/work");
      } catch (thrown) {
        error = thrown;
      }
      // It said "deep.yaml:1:796: Maximum call stack size exceeded."
      expect(error).toMatchObject({ code: "APEX_E_YAML", exitCode: 2 });
      expect((error as Error).message).toMatch(/^deep\.yaml:\d+:\d+: Nested too deep: its mappings and lists go more levels down than APEX reads\.$/);
    }
  });
});

describe("valid configs", () => {
  it("takes the one duration grammar for checkpoint intervals, in the file and in APEX_CHECKPOINT_INTERVAL", async () => {
    const { dir, cleanup } = tempDir("apex-interval-");
    onTestFinished(cleanup);
    const file = join(dir, "apex.config.yaml");
    writeFileSync(file, "session:\n  auto_checkpoint_interval: 5m\nplugins:\n  checkpoint:\n    interval: 2h30m\n");
    const location = { configPath: file, projectDir: dir, storeDir: join(dir, ".apex") };
    const config = await loadConfig(location, { env: {}, cwd: dir });
    expect(config.session.auto_checkpoint_interval).toBe(300);
    expect(config.plugins.find((plugin) => plugin.name === "checkpoint")?.options).toMatchObject({ interval: "2h30m" });
    expect(parseDuration("2h30m")).toBe(9000);
    const overridden = await loadConfig(location, { env: { APEX_CHECKPOINT_INTERVAL: "90s" }, cwd: dir });
    expect(overridden.session.auto_checkpoint_interval).toBe(90);
  });

  it("fills every default into a minimal config", async () => {
    const config = await loadFixture("valid", "minimal.yaml");
    expect(config.session).toEqual({
      auto_checkpoint_interval: 60,
      max_checkpoints: 100,
      auto_recovery: true,
      session_timeout: 7200,
      lease_ttl: 15,
      backup_location: ".apex/backups",
    });
    // Sections left out come from the default apex.config.yaml; its reference agents run from the APEX package.
    expect(config.agents).toEqual(referenceAgents(join(REPO_ROOT, "agents")));
    expect(config.plugins.map(({ name, enabled, options }) => ({ name, enabled, options }))).toEqual([
      { name: "checkpoint", enabled: true, options: CHECKPOINT_DEFAULTS },
      { name: "retention", enabled: true, options: RETENTION_DEFAULTS },
      { name: "git", enabled: true, options: { hooks: false, repository: "." } },
      { name: "metrics", enabled: true, options: { enabled: true, interval: 60 } },
      { name: "history", enabled: true, options: { enabled: true } },
      { name: "compression", enabled: true, options: { algorithm: "brotli" } },
      { name: "archive", enabled: true, options: { algorithm: "brotli", max_bundle_bytes: 1073741824, max_compression_ratio: 100 } },
    ]);
    const retentionLine = readFileSync(DEFAULT_CONFIG, "utf8").split("\n").indexOf("  retention:") + 1;
    expect(retentionLine).toBeGreaterThan(0);
    expect(config.plugins[1]!.position).toEqual({ file: displayPath(DEFAULT_CONFIG), line: retentionLine, col: 3 });
    expect(config.configPath).toBe(join(FIXTURES, "valid", "minimal.yaml"));
    expect(config.source?.file).toBe(join(FIXTURES, "valid", "minimal.yaml"));
  });

  it("reads every setting: durations in seconds, env and args as text, plugins in document order", async () => {
    const config = await loadFixture("valid", "full.yaml");
    expect(config.session).toEqual({
      auto_checkpoint_interval: 120,
      max_checkpoints: 20,
      auto_recovery: false,
      session_timeout: 5400,
      lease_ttl: 15,
      backup_location: "backups",
    });
    expect(config.agents).toEqual({
      builder: {
        description: "Builds the project.",
        command: "npm",
        args: ["run", "build", "--", "--port", "8080", "true"],
        env: { RETRIES: "3", VERBOSE: "true", NAME: "builder" },
        cwd: "packages/app",
        restart: "always",
        max_restarts: 0,
        restart_delay: 30,
        max_restart_delay: 15,
        min_uptime: 60,
      },
      watcher: { command: "./watch.sh", args: [], env: {}, cwd: ".", restart: "on-failure", max_restarts: 3, restart_delay: 1, max_restart_delay: 15, min_uptime: 60 },
    });
    expect(config.plugins).toEqual([
      { name: "git", enabled: false, options: {}, position: { file: "full.yaml", line: 25, col: 3 } },
      { name: "retention", enabled: true, options: { auto_cleanup: true }, position: { file: "full.yaml", line: 26, col: 3 } },
      { name: "checkpoint", enabled: true, options: CHECKPOINT_DEFAULTS, position: { file: "full.yaml", line: 27, col: 3 } },
      // Third-party options are left as written: the plugin loader checks them against the plugin's schema.
      { name: "./plugins/audit.js", enabled: true, options: { level: "loud" }, position: { file: "full.yaml", line: 28, col: 3 } },
      { name: "compression", enabled: true, options: { algorithm: "gzip", older_than: "1d" }, position: { file: "full.yaml", line: 30, col: 3 } },
    ]);
  });

  it("lets agents share settings through anchors and merge keys under an x- key", async () => {
    const config = await loadFixture("valid", "anchors.yaml");
    const shared = { command: "node", env: { APEX_AGENT_PACE: "0" }, cwd: ".", max_restarts: 3, restart_delay: 1, max_restart_delay: 15, min_uptime: 60 };
    expect(config.agents).toEqual({
      planner: { ...shared, args: ["planner.mjs"], restart: "always" },
      worker: { ...shared, args: ["worker.mjs"], restart: "never" },
    });
    expect(config.plugins).toEqual([]);
  });

  it("is frozen all the way down, and keeps its source out of JSON", async () => {
    const config = await loadFixture("valid", "full.yaml");
    expect(() => {
      (config.session as { max_checkpoints: number }).max_checkpoints = 1;
    }).toThrow(TypeError);
    expect(() => (config.agents.builder!.args as string[]).push("--more")).toThrow(TypeError);
    expect(() => {
      (config.agents.builder!.env as Record<string, string>).EXTRA = "1";
    }).toThrow(TypeError);
    expect(() => (config.plugins as unknown[]).pop()).toThrow(TypeError);
    expect(() => {
      (config.plugins[3]!.options as Record<string, unknown>).level = "quiet";
    }).toThrow(TypeError);
    expect(() => {
      (config as { projectDir: string }).projectDir = "/elsewhere";
    }).toThrow(TypeError);
    expect(config.plugins[3]!.options.level).toBe("loud");

    expect(Object.keys(config)).toEqual(["session", "agents", "plugins", "configPath", "projectDir", "storeDir"]);
    expect(JSON.parse(JSON.stringify(config))).not.toHaveProperty("source");
    expect(config.source?.displayFile).toBe("full.yaml");
  });

  it("treats a file with only comments as all defaults", async () => {
    const empty = await loadFixture("valid", "empty.yaml");
    const defaults = await loadConfig({ configPath: undefined, projectDir: empty.projectDir, storeDir: empty.storeDir }, { env: {} });
    expect({ ...empty, configPath: undefined }).toEqual({ ...defaults, configPath: undefined });
  });

  it("APEX_CHECKPOINT_INTERVAL overrides session.auto_checkpoint_interval", async () => {
    const config = await loadFixture("valid", "minimal.yaml", { APEX_CHECKPOINT_INTERVAL: " 45 " });
    expect(config.session.auto_checkpoint_interval).toBe(45);
    const unset = await loadFixture("valid", "minimal.yaml", { APEX_CHECKPOINT_INTERVAL: "" });
    expect(unset.session.auto_checkpoint_interval).toBe(60);
    // 0 turns interval checkpoints off, as session.auto_checkpoint_interval: 0 does ("0s" too).
    for (const off of ["0", "0s"]) expect((await loadFixture("valid", "minimal.yaml", { APEX_CHECKPOINT_INTERVAL: off })).session.auto_checkpoint_interval).toBe(0);
  });
});

describe("finding the config", () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir("apex-config-"));
  });
  afterEach(() => cleanup());

  it("without a config file, the built-in defaults apply (the default apex.config.yaml)", async () => {
    const location = locateProject({ cwd: dir, env: {} });
    expect(location).toEqual({ configPath: undefined, projectDir: dir, storeDir: join(dir, ".apex") });
    const config = await loadConfig(location, { env: {} });
    expect("configPath" in config).toBe(false);
    expect(config.projectDir).toBe(dir);
    expect(config.storeDir).toBe(join(dir, ".apex"));
    expect(config.session).toEqual({
      auto_checkpoint_interval: 300,
      max_checkpoints: 100,
      auto_recovery: true,
      session_timeout: 7200,
      lease_ttl: 15,
      backup_location: ".apex/backups",
    });
    expect(config.agents).toEqual(referenceAgents(join(REPO_ROOT, "agents")));
    expect(config.plugins.map((plugin) => plugin.name)).toEqual(["checkpoint", "retention", "git", "metrics", "history", "compression", "archive"]);
    expect(config.source?.file).toBe(DEFAULT_CONFIG);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("finds apex.config.yaml in a parent directory; the store goes beside it", async () => {
    copyFileSync(join(FIXTURES, "valid", "minimal.yaml"), join(dir, "apex.config.yaml"));
    const nested = join(dir, "src", "deep");
    mkdirSync(nested, { recursive: true });
    const location = locateProject({ cwd: nested, env: {} });
    expect(location).toEqual({ configPath: join(dir, "apex.config.yaml"), projectDir: dir, storeDir: join(dir, ".apex") });
    const config = await loadConfig(location, { env: {}, cwd: nested });
    expect(config.session.auto_checkpoint_interval).toBe(60);
    expect(config.source?.displayFile).toBe(join(dir, "apex.config.yaml"));
  });

  it("--config wins over APEX_CONFIG, which wins over the search; APEX_HOME moves the store", async () => {
    writeFileSync(join(dir, "apex.config.yaml"), "session:\n  max_checkpoints: 1\n");
    writeFileSync(join(dir, "env.yaml"), "session:\n  max_checkpoints: 2\n");
    writeFileSync(join(dir, "flag.yaml"), "session:\n  max_checkpoints: 3\n");
    const env = { APEX_CONFIG: "env.yaml" };
    const maxOf = async (location: ReturnType<typeof locateProject>) => (await loadConfig(location, { env: {} })).session.max_checkpoints;
    expect(await maxOf(locateProject({ cwd: dir, env: {} }))).toBe(1);
    expect(await maxOf(locateProject({ cwd: dir, env }))).toBe(2);
    expect(await maxOf(locateProject({ cwd: dir, env, configFlag: "flag.yaml" }))).toBe(3);
    expect(locateProject({ cwd: dir, env: { APEX_HOME: "store" } }).storeDir).toBe(join(dir, "store"));
  });
});

describe("the default apex.config.yaml and the schemas", () => {
  const readJson = (path: string) => JSON.parse(readFileSync(join(REPO_ROOT, path), "utf8")) as Record<string, any>;
  const pluginNames = ["checkpoint", "retention", "git", "compression", "sharing", "metrics", "history", "archive"];

  it("every schema APEX ships is a valid draft-07 JSON Schema (they are compiled without that check at run time)", () => {
    const ajv = createAjv();
    for (const path of ["schemas/apex.config.schema.json", ...pluginNames.map((name) => `schemas/plugins/${name}.schema.json`)]) {
      expect(ajv.validateSchema(readJson(path)), `${path}: ${JSON.stringify(ajv.errors)}`).toBe(true);
    }
    // And an invalid one is caught by that check, so the test could fail.
    expect(ajv.validateSchema({ type: "object", properties: { x: { type: "no-such-type" } } })).toBe(false);
  });

  it("starts with the editor schema line and loads as written", async () => {
    expect(readFileSync(DEFAULT_CONFIG, "utf8").split("\n", 1)[0]).toBe("# yaml-language-server: $schema=./schemas/apex.config.schema.json");
    const config = await loadConfig({ configPath: DEFAULT_CONFIG, projectDir: REPO_ROOT, storeDir: join(REPO_ROOT, ".apex") }, { env: {} });
    expect(config.agents).toEqual(referenceAgents("agents"));
    expect(config.plugins.find((plugin) => plugin.name === "retention")?.options).toEqual(RETENTION_DEFAULTS);
  });

  it("has the same session settings as the schema's defaults", () => {
    const defaults = Object.fromEntries(
      Object.entries(readJson("schemas/apex.config.schema.json").properties.session.properties).map(([key, node]) => [key, (node as { default: unknown }).default]),
    );
    const { source } = parseSource(readFileSync(DEFAULT_CONFIG, "utf8"), DEFAULT_CONFIG);
    expect((source.doc.toJS() as { session: unknown }).session).toEqual(defaults);
  });

  it.each(["apex.config.schema.json", ...pluginNames.map((name) => `plugins/${name}.schema.json`)])(
    "schemas/%s is complete: $schema, $id, title, a description on every property, no unknown keys",
    (file) => {
      const schema = readJson(`schemas/${file}`);
      expect(schema.$schema).toBe("http://json-schema.org/draft-07/schema#");
      // Relative ids: editors then resolve the $refs next to the local schema file.
      expect(schema.$id).toBe(file);
      expect(typeof schema.title).toBe("string");
      const problems: string[] = [];
      const visit = (node: Record<string, any>, where: string) => {
        if (node.properties) {
          // `plugins` lists the built-ins but must accept any npm package or file as a key.
          if (node.additionalProperties !== false && where !== "(root).plugins") problems.push(`${where} accepts unknown keys`);
          for (const [key, child] of Object.entries(node.properties as Record<string, any>)) {
            if (typeof child.description !== "string") problems.push(`${where}.${key} has no description`);
            visit(child, `${where}.${key}`);
          }
        }
        if (node.items) visit(node.items, `${where}[]`);
        for (const [key, child] of Object.entries((node.definitions ?? {}) as Record<string, any>)) visit(child, `#${key}`);
        if (typeof node.additionalProperties === "object") visit(node.additionalProperties, `${where}.*`);
      };
      visit(schema, "(root)");
      expect(problems).toEqual([]);
      // The main schema refers to the plugin schemas; it is compiled with them in the next test.
      if (file.startsWith("plugins/")) expect(() => compileSchema(schema)).not.toThrow();
    },
  );

  it("links each built-in plugin's options to its schema, so editors complete them", () => {
    const main = readJson("schemas/apex.config.schema.json");
    const ajv = createAjv();
    for (const name of pluginNames) {
      const plugin = readJson(`schemas/plugins/${name}.schema.json`);
      expect(main.properties.plugins.properties[name].anyOf[2].$ref).toBe(plugin.$id);
      ajv.addSchema(plugin);
    }
    // With the real plugin schemas (as an editor sees them), the whole file is checked in one pass.
    const validate = ajv.compile(main);
    expect(validate({ plugins: { retention: { keep_last: 1 }, git: false } })).toBe(true);
    expect(validate({ plugins: { retention: { keep_lst: 1 } } })).toBe(false);
  });
});

describe("precompiled validators (scripts/compile-schemas.mjs)", () => {
  const pluginNames = ["checkpoint", "retention", "git", "compression", "sharing", "metrics", "history", "archive"] as const;
  const defaultDocument = () => parseSource(readFileSync(DEFAULT_CONFIG, "utf8"), DEFAULT_CONFIG).source.doc.toJS() as Record<string, unknown>;
  /** What a validator says of a copy of `data`: the verdict, the errors, and the copy with defaults filled. */
  const outcome = (validate: (data: unknown) => boolean, data: unknown) => {
    const copy = structuredClone(data);
    const valid = validate(copy);
    const errors = ((validate as unknown as { errors?: Array<Record<string, unknown>> }).errors ?? []).map(({ instancePath, schemaPath, keyword, params, message }) => ({
      instancePath,
      schemaPath,
      keyword,
      params,
      message,
    }));
    return { valid, errors: valid ? [] : errors, copy };
  };

  it("are built for every shipped schema from its current text", () => {
    for (const path of ["apex.config.schema.json", ...pluginNames.map((name) => `plugins/${name}.schema.json`)]) {
      expect(precompiledValidator(path), path).toBeTypeOf("function");
    }
  });

  it("say exactly what compiling the schema at run time says: verdict, errors, defaults filled in", () => {
    const document = precompiledValidator("apex.config.schema.json")!;
    const compiled = documentAjv().compile(configSchema());
    const documents: unknown[] = [
      {},
      defaultDocument(),
      { session: { auto_checkpoint_interval: "5m", max_checkpoints: 3 } },
      { session: { auto_checkpoint_interval: -1, unknown: true }, agents: { coder: { command: 5 } } },
      { plugins: { retention: { keep_last: 2 }, "./my-plugin.mjs": { x: 1 }, git: false } },
      { plugins: 5, agents: [] },
      [],
      "text",
    ];
    for (const data of documents) expect(outcome(document, data)).toEqual(outcome(compiled, data));

    const options: Record<(typeof pluginNames)[number], unknown[]> = {
      checkpoint: [{}, { triggers: ["beforeTask"] }, { triggers: ["noSuchHook"] }, { interval: "x" }],
      retention: [{}, { keep_last: 5 }, { keep_lst: 5 }, { keep_last: -1, keep_daily: "7" }],
      git: [{}, { commit_on_checkpoint: true }, { branch_prefix: 3 }],
      compression: [{}, { algorithm: "gzip", level: 3 }, { algorithm: "zip" }],
      sharing: [{}, { anything: 1 }],
      metrics: [{}, { sample_interval: "10s" }, { sample_interval: [] }],
      history: [{}, { keep: 10 }, { nope: 1 }],
      archive: [{}, { location: "/tmp/x" }, { location: 7 }],
    };
    for (const name of pluginNames) {
      const path = `plugins/${name}.schema.json`;
      const precompiled = precompiledValidator(path)!;
      const runtime = createAjv({ trusted: true }).compile(builtinPluginSchema(name));
      for (const data of options[name]) expect(outcome(precompiled, data), `${name} ${JSON.stringify(data)}`).toEqual(outcome(runtime, data));
    }
  });

  it("are used only when built from the very schema text read now", () => {
    const built = { hashes: { "a.json": "1111" }, validators: { "a.json": () => true } };
    expect(matchingValidator(built as never, "a.json", "1111")).toBe(built.validators["a.json"]);
    expect(matchingValidator(built as never, "a.json", "2222")).toBeUndefined(); // edited since the build
    expect(matchingValidator(built as never, "b.json", "1111")).toBeUndefined();
    expect(matchingValidator(null, "a.json", "1111")).toBeUndefined(); // not built
    expect(schemaTextHash("apex.config.schema.json")).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the checked defaults are built too: the same data as checking apex.config.yaml now, its positions parsed when asked", async () => {
    const text = readFileSync(DEFAULT_CONFIG, "utf8");
    const built = JSON.parse(readFileSync(join(REPO_ROOT, "dist/validators/defaults.json"), "utf8"));
    const checked = checkDocument(text, DEFAULT_CONFIG);
    expect(checked.issues).toEqual([]);
    expect(matchingDefaults(built, text)?.data).toEqual(checked.data);
    const defaults = await builtinDefaults();
    expect(defaults.data).toEqual(checked.data);
    expect(defaults.source.text).toBe(text);
    expect(positionOf(defaults.source, ["plugins", "checkpoint"], "key")).toEqual(positionOf(checked.source, ["plugins", "checkpoint"], "key"));
  });

  it("the checked defaults are used only when built from the defaults and schemas read now", () => {
    const text = readFileSync(DEFAULT_CONFIG, "utf8");
    const built = { hashes: defaultsHashes(text), data: { agents: {} } };
    expect(matchingDefaults(built, text)).toBe(built);
    expect(matchingDefaults(built, `${text}\n# edited\n`)).toBeUndefined(); // the defaults edited since the build
    const staleSchema = { ...built, hashes: { ...built.hashes, "plugins/retention.schema.json": "0".repeat(64) } };
    expect(matchingDefaults(staleSchema, text)).toBeUndefined(); // a schema edited since the build
    const { ["plugins/git.schema.json"]: _omitted, ...fewer } = built.hashes;
    expect(matchingDefaults({ ...built, hashes: fewer }, text)).toBeUndefined();
  });
});

describe("validateOptions and friends (used by the plugin loader)", () => {
  const text = "plugins:\n  ./mine.js:\n    levl: 3\n    mode: fast\n";
  const { source } = parseSource(text, join(REPO_ROOT, "apex.config.yaml"), REPO_ROOT);
  const schema = {
    type: "object",
    additionalProperties: false,
    properties: {
      level: { type: "integer", minimum: 0, default: 1, description: "How loud." },
      mode: { enum: ["slow", "careful"], description: "How to go." },
    },
  };

  it("positions third-party option problems in the config file", () => {
    const options = { levl: 3, mode: "fast" };
    expect(validateOptions(schema, options, { source, path: ["plugins", "./mine.js"] })).toEqual([
      {
        file: "apex.config.yaml",
        line: 3,
        col: 5,
        path: `plugins["./mine.js"].levl`,
        message: `unknown option. Expected one of level, mode. Did you mean "level"?`,
        expected: "one of level, mode",
        suggestion: "level",
      },
      {
        file: "apex.config.yaml",
        line: 4,
        col: 11,
        path: `plugins["./mine.js"].mode`,
        message: `must be one of "slow", "careful" (got "fast"). How to go.`,
        expected: `one of "slow", "careful"`,
      },
    ]);
  });

  it("fills defaults in place, and checks a frozen object without changing it", () => {
    const options: Record<string, unknown> = { mode: "slow" };
    expect(validateOptions(schema, options, { source, path: ["plugins", "./mine.js"] })).toEqual([]);
    expect(options).toEqual({ mode: "slow", level: 1 });

    const frozen = Object.freeze({ mode: "slow" });
    expect(validateOptions(schema, frozen, { source, path: ["plugins", "./mine.js"] })).toEqual([]);
    const resolved = resolveOptions(schema, frozen, { source, path: ["plugins", "./mine.js"] });
    expect(resolved).toEqual({ options: { mode: "slow", level: 1 }, issues: [] });
    expect(frozen).toEqual({ mode: "slow" });
  });

  it("folds anyOf/oneOf noise into the branch that fits the value", () => {
    const either = {
      type: "object",
      additionalProperties: false,
      properties: {
        level: { oneOf: [{ type: "boolean" }, { type: "object", additionalProperties: false, properties: { value: { type: "integer" } } }] },
      },
    };
    const issues = validateOptions(either, { level: { valu: 3 } }, { source, path: ["plugins", "./mine.js"] });
    expect(issues.map((issue) => `${issue.path}: ${issue.message}`)).toEqual([
      `plugins["./mine.js"].level.valu: unknown option. Expected one of value. Did you mean "value"?`,
    ]);
    const wrongType = validateOptions(either, { level: "high" }, { source, path: ["plugins", "./mine.js"] });
    expect(wrongType.map((issue) => `${issue.path}: ${issue.message}`)).toEqual([
      `plugins["./mine.js"].level: must be true or false or a mapping (got "high").`,
    ]);
  });

  it("ends a message with the first sentence of the option's description, past e.g. and i.e. (it was cut there)", () => {
    const described = {
      type: "object",
      properties: { mode: { type: "string", description: "How to go, e.g. fast or slow, i.e. a speed. Anything else is refused." } },
    };
    expect(validateOptions(described, { mode: 3 }, { source, path: ["plugins", "./mine.js"] }).map((issue) => issue.message)).toEqual([
      "must be a string (got 3). How to go, e.g. fast or slow, i.e. a speed.",
    ]);
  });

  it("blames a broken schema on the schema", () => {
    expect(() => compileSchema({ type: "strin" })).toThrow(expect.objectContaining({ code: "APEX_E_PLUGIN_SCHEMA" }));
    expect(() => compileSchema({ type: "object", properties: { a: { $ref: "#/definitions/missing" } } })).toThrow(
      expect.objectContaining({ code: "APEX_E_PLUGIN_SCHEMA", message: expect.stringContaining("#/definitions/missing") }),
    );
  });

  it("configError carries every issue; formatIssues writes one line each", () => {
    const issues = [
      { file: "apex.config.yaml", line: 2, col: 3, path: "session.x", message: "unknown key." },
      { file: "environment", line: 0, col: 0, path: "APEX_CHECKPOINT_INTERVAL", message: "must be a whole number." },
      { file: "apex.config.yaml", line: 1, col: 1, path: "", message: "Map keys must be unique." },
    ];
    expect(formatIssues(issues)).toBe(
      "apex.config.yaml:2:3: session.x: unknown key.\nenvironment: APEX_CHECKPOINT_INTERVAL: must be a whole number.\napex.config.yaml:1:1: Map keys must be unique.",
    );
    const error = configError(issues);
    expect(error).toMatchObject({ code: "APEX_E_CONFIG", exitCode: 2, message: formatIssues(issues), details: { errors: issues } });
  });

  it("parseDuration reads seconds and unit strings", () => {
    expect([parseDuration(90), parseDuration("90s"), parseDuration("30m"), parseDuration("2h"), parseDuration("1d"), parseDuration("1w"), parseDuration("1h30m")]).toEqual([
      90, 90, 1800, 7200, 86_400, 604_800, 5400,
    ]);
    expect(() => parseDuration("2 hourz")).toThrow(RangeError);
    expect(() => parseDuration(-1)).toThrow(RangeError);
  });
});

describe("apex config (end to end, built CLI)", () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir("apex-config-cli-"));
  });
  afterEach(() => cleanup());
  const apex = (args: string[], env: NodeJS.ProcessEnv = {}) => runApex(args, { cwd: dir, env });
  const writeConfig = (fixture: string, target = join(dir, "apex.config.yaml")) => {
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(join(FIXTURES, fixture), target);
  };

  it("validate: a valid config exits 0 with a summary", () => {
    writeConfig("valid/full.yaml");
    // validate loads the plugins too, so the local plugin the config names must exist.
    mkdirSync(join(dir, "plugins"), { recursive: true });
    writeFileSync(join(dir, "package.json"), '{"type": "module"}\n');
    writeFileSync(
      join(dir, "plugins/audit.js"),
      'export default { name: "audit", schema: { type: "object", properties: { level: { type: "string", description: "How loud." } } }, apply() {} };\n',
    );
    // And so must the agents' programs: the builder's working directory and the watcher's script.
    mkdirSync(join(dir, "packages/app"), { recursive: true });
    writeFileSync(join(dir, "watch.sh"), "#!/bin/sh\n", { mode: 0o755 });
    const result = apex(["config", "validate"]);
    expect(result).toMatchObject({ status: 0, stderr: "" });
    expect(result.stdout).toBe("apex.config.yaml is valid (2 agents, 4 plugins, 1 disabled)\n");
    expect(JSON.parse(apex(["config", "validate", "--json"]).stdout)).toEqual({ valid: true, file: "apex.config.yaml", errors: [], warnings: [] });
  });

  it("validate: a setting the enabled plugins leave without effect is a warning, exit 0 (max_checkpoints without retention, interval checkpoints without checkpoint)", () => {
    // Before, validate said "valid" and the setting did nothing: no plugin enforced the cap, none took interval checkpoints.
    writeFileSync(join(dir, "apex.config.yaml"), "session:\n  max_checkpoints: 3\n  auto_checkpoint_interval: 60\nagents: {}\nplugins:\n  checkpoint: false\n  git: {}\n");
    const text = apex(["config", "validate"]);
    expect(text).toMatchObject({ status: 0, stdout: "apex.config.yaml is valid (0 agents, 1 plugin, 1 disabled, 2 warnings)\n" });
    expect(text.stderr).toBe(
      [
        "warning: apex.config.yaml:2:3: session.max_checkpoints: has no effect: the retention plugin enforces it, and the plugins: section at apex.config.yaml:5:1 leaves it out. Enable retention (`retention: {auto_cleanup: false}` applies this cap alone), or remove session.max_checkpoints.",
        "warning: apex.config.yaml:3:3: session.auto_checkpoint_interval: has no effect: the checkpoint plugin takes interval checkpoints, and plugins.checkpoint is false at apex.config.yaml:6:3. Enable checkpoint (`checkpoint: {}`), or remove session.auto_checkpoint_interval.",
        "",
      ].join("\n"),
    );
    const report = JSON.parse(apex(["config", "validate", "--json"], { APEX_CHECKPOINT_INTERVAL: "30" }).stdout);
    expect(report).toMatchObject({ valid: true, errors: [] });
    expect(report.warnings.map((warning: { path: string; line: number }) => [warning.path, warning.line])).toEqual([
      ["session.max_checkpoints", 2],
      ["session.auto_checkpoint_interval", 3],
      ["APEX_CHECKPOINT_INTERVAL", 0],
    ]);
    // With the plugins enabled (or the defaults), nothing to say.
    writeFileSync(join(dir, "apex.config.yaml"), "session:\n  max_checkpoints: 3\n  auto_checkpoint_interval: 60\nagents: {}\nplugins:\n  checkpoint: {}\n  retention: {auto_cleanup: false}\n");
    expect(apex(["config", "validate"])).toMatchObject({ status: 0, stderr: "" });
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("validate: a retention by_trigger key that is an APEX trigger in another case is a warning naming the trigger it means, exit 0; a plugin's trigger is not", () => {
    // Triggers are matched exactly: `onerror` rules applied to no checkpoint, without a word.
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n  retention:\n    by_trigger:\n      onerror: {keep_last: 1}\n      everyNTasks: {}\n      manual: {keep_last: 3}\n");
    const text = apex(["config", "validate"]);
    expect(text).toMatchObject({ status: 0, stdout: "apex.config.yaml is valid (0 agents, 2 plugins, 1 warning)\n" });
    expect(text.stderr).toBe(
      'warning: apex.config.yaml:6:7: plugins.retention.by_trigger.onerror: no checkpoint has trigger "onerror": triggers are matched exactly, so these rules apply to none, and onError checkpoints keep the others. Did you mean onError?\n',
    );
    const report = JSON.parse(apex(["config", "validate", "--json"]).stdout);
    expect(report.warnings.map((warning: { path: string; line: number }) => [warning.path, warning.line])).toEqual([["plugins.retention.by_trigger.onerror", 6]]);
  });

  it("validate: an invalid config exits 2, lists every problem and creates nothing", () => {
    writeConfig("invalid/multiple-errors.yaml");
    const result = apex(["config", "validate"]);
    expect(result.status).toBe(2);
    const lines = result.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(12);
    expect(lines[7]).toBe(
      `apex.config.yaml:15:5: plugins.retention.keep_lst: unknown option. Expected one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup. Did you mean "keep_last"?`,
    );
    expect(lines[11]).toBe("apex.config.yaml is invalid (11 problems).");
    expect(result.stdout).toBe("");
    expect(existsSync(join(dir, ".apex"))).toBe(false);

    const json = apex(["config", "validate", "--json"]);
    expect(json.status).toBe(2);
    const report = JSON.parse(json.stdout);
    expect(report).toMatchObject({ valid: false, file: "apex.config.yaml" });
    expect(report.errors).toHaveLength(11);
    expect(report.errors[7]).toEqual({
      file: "apex.config.yaml",
      line: 15,
      col: 5,
      path: "plugins.retention.keep_lst",
      message: `unknown option. Expected one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup. Did you mean "keep_last"?`,
      expected: "one of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger, auto_cleanup",
      suggestion: "keep_last",
    });
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("validate --json: a plugin the config cannot have is one of the report's errors on stdout, with its code", () => {
    // Before, stdout was empty and the error JSON went to stderr, unlike every other problem of the file.
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n  retension: {}\n");
    const unknown = apex(["config", "validate", "--json"]);
    expect([unknown.status, unknown.stderr]).toEqual([2, ""]);
    expect(JSON.parse(unknown.stdout)).toEqual({
      valid: false,
      file: "apex.config.yaml",
      errors: [{ file: "apex.config.yaml", line: 4, col: 3, path: "plugins.retension", message: expect.stringContaining("Did you mean 'retention'?"), code: "APEX_E_PLUGIN_UNKNOWN" }],
      warnings: [],
    });
    writeFileSync(join(dir, "tally.mjs"), 'export default { name: "tally", schema: { type: "object", properties: { every: { type: "integer" } }, additionalProperties: false }, apply() {} };\n');
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  ./tally.mjs: {every: often}\n");
    const options = apex(["config", "validate", "--json"]);
    expect([options.status, options.stderr]).toEqual([2, ""]);
    expect(JSON.parse(options.stdout).errors).toEqual([
      expect.objectContaining({ file: "apex.config.yaml", line: 3, col: 24, path: 'plugins["./tally.mjs"].every', code: "APEX_E_PLUGIN_OPTIONS" }),
    ]);
    // In text, as before: the error and its hint.
    expect(apex(["config", "validate"]).stderr).toMatch(/^error\[APEX_E_PLUGIN_OPTIONS\]: apex\.config\.yaml:3:24: plugins\["\.\/tally\.mjs"\]\.every: must be an integer/);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("validate --json: the error of a plugin whose name is not its key (apply throws, a command of another plugin, requires in a cycle) is at its entry", () => {
    // Before, the entry was looked for by the plugin's name (`a`) among the keys (`./a.mjs`): such errors were at line 0, col 0.
    const write = (name: string, body: string) => writeFileSync(join(dir, `${name}.mjs`), `export default { name: "${name}", ${body} };\n`);
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n  ./a.mjs: {}\n  ./b.mjs: {}\n");
    const at = (line: number, path: string) => ({ file: "apex.config.yaml", line, col: 3, path });
    write("a", 'apply() { throw new Error("no database"); }');
    write("b", "apply() {}");
    expect(JSON.parse(apex(["config", "validate", "--json"]).stdout).errors).toEqual([expect.objectContaining({ ...at(4, 'plugins["./a.mjs"]'), code: "APEX_E_PLUGIN_INVALID" })]);
    write("a", 'apply(apex) { apex.registerCommand({ name: "hello", description: "", action() {} }); }');
    write("b", 'apply(apex) { apex.registerCommand({ name: "hello", description: "", action() {} }); }');
    expect(JSON.parse(apex(["config", "validate", "--json"]).stdout).errors).toEqual([expect.objectContaining({ ...at(5, 'plugins["./b.mjs"]'), code: "APEX_E_PLUGIN_DUPLICATE" })]);
    write("a", 'requires: ["b"], apply() {}');
    write("b", 'requires: ["a"], apply() {}');
    const cycle = apex(["config", "validate", "--json"]);
    expect(JSON.parse(cycle.stdout).errors).toEqual([expect.objectContaining({ ...at(4, 'plugins["./a.mjs"]'), code: "APEX_E_PLUGIN_DEPENDENCY" })]);
    expect(cycle.status).toBe(2);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("validate: a YAML syntax error exits 2 with its line and column", () => {
    writeConfig("invalid/duplicate-key.yaml");
    const result = apex(["config", "validate"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe("apex.config.yaml:3:3: session.max_checkpoints: given twice (first at line 2); YAML would keep only one of the two. Remove or merge one.\napex.config.yaml is invalid (1 problem).\n");
  });

  it("validate: --config and APEX_CONFIG pick the file, named relative to the working directory", () => {
    writeConfig("invalid/wrong-type.yaml", join(dir, "conf", "bad.yaml"));
    writeConfig("valid/minimal.yaml", join(dir, "conf", "good.yaml"));
    const flagged = apex(["config", "validate", "--config", "conf/bad.yaml"]);
    expect(flagged.status).toBe(2);
    expect(flagged.stderr.split("\n", 1)[0]).toBe(
      `conf/bad.yaml:3:29: session.auto_checkpoint_interval: must be a duration: a number of seconds (90 or "90") or numbers with units such as "30m", "2h30m", "7d", "30days", "4w" (got "soon"). Time between automatic checkpoints.`,
    );
    const fromEnv = apex(["config", "validate"], { APEX_CONFIG: "conf/good.yaml" });
    expect(fromEnv).toMatchObject({ status: 0, stdout: "conf/good.yaml is valid (3 agents, 7 plugins)\n" });
    const missing = apex(["config", "validate", "--config", "conf/none.yaml"]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("error[APEX_E_CONFIG_NOT_FOUND]");
    expect(missing.stderr).toContain("hint: Pass the path of an apex.config.yaml, or drop the option to search from the current directory.");
    // APEX_CONFIG's hint speaks of the variable: "drop the option" named an option the command line did not have.
    const missingFromEnv = apex(["config", "validate"], { APEX_CONFIG: "conf/none.yaml" });
    expect(missingFromEnv.status).toBe(2);
    expect(missingFromEnv.stderr).toContain(`error[APEX_E_CONFIG_NOT_FOUND]: The config file ${join(dir, "conf/none.yaml")} (from APEX_CONFIG) does not exist.`);
    expect(missingFromEnv.stderr).toContain("hint: Set APEX_CONFIG to the path of an apex.config.yaml, or unset it to search from the current directory.");
  });

  it("validate: without a config file the built-in defaults are reported valid", () => {
    const result = apex(["config", "validate"]);
    expect(result).toMatchObject({
      status: 0,
      stdout: "No apex.config.yaml found here or in a parent directory; the built-in defaults apply (3 agents, 7 plugins).\n",
    });
    expect(JSON.parse(apex(["config", "validate", "--json"]).stdout)).toEqual({ valid: true, file: null, errors: [], warnings: [] });
  });

  it("validate: a bad APEX_CHECKPOINT_INTERVAL is a config error", () => {
    writeConfig("valid/minimal.yaml");
    const result = apex(["config", "validate"], { APEX_CHECKPOINT_INTERVAL: "soon" });
    expect(result.status).toBe(2);
    expect(result.stderr.split("\n", 1)[0]).toBe(
      `environment: APEX_CHECKPOINT_INTERVAL: must be 0 (no interval checkpoints) or a duration of at least 1 second and at most 2147483 seconds (about 24 days), in seconds or with units such as "5m" (got "soon"). It overrides session.auto_checkpoint_interval.`,
    );
    const negative = apex(["config", "show", "--json"], { APEX_CHECKPOINT_INTERVAL: "-1" });
    expect(negative.status).toBe(2);
    expect(negative.stdout).toBe("");
    expect(JSON.parse(negative.stderr).error).toMatchObject({ code: "APEX_E_CONFIG", message: expect.stringContaining('APEX_CHECKPOINT_INTERVAL: must be 0 (no interval checkpoints) or a duration') });
    // 0 means what the config's 0 means: no interval checkpoints (it was refused).
    expect(apex(["config", "validate"], { APEX_CHECKPOINT_INTERVAL: "0" })).toMatchObject({ status: 0, stdout: "apex.config.yaml is valid (3 agents, 7 plugins)\n" });
    const off = apex(["config", "show", "--json"], { APEX_CHECKPOINT_INTERVAL: "0" });
    expect(off.status, off.stderr).toBe(0);
    expect(JSON.parse(off.stdout).session.auto_checkpoint_interval).toBe(0);
  });

  it("show: the effective config, as YAML or JSON without the parsed source", () => {
    writeConfig("valid/full.yaml");
    const human = apex(["config", "show"]);
    expect(human.status).toBe(0);
    expect(human.stdout.startsWith("# Effective config: apex.config.yaml with defaults filled in. Durations are in seconds.\nsession:\n  auto_checkpoint_interval: 120\n")).toBe(true);
    expect(human.stdout).toContain("  session_timeout: 5400\n");
    expect(human.stdout).toContain("  git: false\n");

    const json = apex(["config", "show", "--json"], { APEX_CHECKPOINT_INTERVAL: "30" });
    expect(json.status).toBe(0);
    const shown = JSON.parse(json.stdout);
    // The fixture's ./plugins/audit.js is not beside it: `apex start` would refuse the config, and show says so.
    expect(Object.keys(shown)).toEqual(["session", "store", "agents", "plugins", "configPath", "projectDir", "storeDir", "warnings"]);
    expect(shown.warnings).toEqual([expect.stringContaining("./plugins/audit.js")]);
    expect(shown.session.auto_checkpoint_interval).toBe(30);
    expect(shown.plugins.map((plugin: { name: string }) => plugin.name)).toEqual(["git", "retention", "checkpoint", "./plugins/audit.js", "compression"]);
  });

  it("show: the store in effect, the file's store: section or APEX_STORE_URL over it, never with its password (the section was left out)", () => {
    // Without a store: section, the default: LMDB in the store directory.
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n");
    expect(JSON.parse(apex(["config", "show", "--json"]).stdout).store).toEqual({ backend: "lmdb", url: join(dir, ".apex") });
    writeFileSync(join(dir, "apex.config.yaml"), "store:\n  backend: postgres\n  url: postgres://apex:s3cret@db.internal:5432/apex\n  project: payments\nagents: {}\nplugins:\n  checkpoint: {}\n");
    const human = apex(["config", "show"]);
    expect([human.status, human.stderr]).toEqual([0, ""]);
    expect(human.stdout).toContain("\nstore:\n  backend: postgres\n  url: postgres://apex:***@db.internal:5432/apex\n  project: payments\nagents: {}\n");
    expect(human.stdout).not.toContain("s3cret");
    const json = apex(["config", "show", "--json"]);
    expect(json.stdout).not.toContain("s3cret");
    expect(JSON.parse(json.stdout).store).toEqual({ backend: "postgres", url: "postgres://apex:***@db.internal:5432/apex", project: "payments" });
    // APEX_STORE_URL wins, as for every command, and the header says so.
    const fromEnv = apex(["config", "show"], { APEX_STORE_URL: "lmdb:data" });
    expect(fromEnv.stdout).toContain(`\nstore:\n  backend: lmdb\n  url: ${join(dir, "data")}\nagents: {}\n`);
    expect(fromEnv.stdout.split("\n")[0]).toContain("The store is APEX_STORE_URL's.");
    // One no backend reads leaves the store unknown: said in a warning, the rest shown, nothing written.
    const unread = apex(["config", "show", "--json"], { APEX_STORE_URL: "foo" });
    expect(unread.status).toBe(0);
    expect("store" in JSON.parse(unread.stdout)).toBe(false);
    expect(JSON.parse(unread.stdout).warnings).toEqual([expect.stringContaining('APEX_STORE_URL must be postgres://… or lmdb:PATH, not "foo"')]);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("show: a third-party plugin's options with its schema's defaults filled in, as a built-in's are (they were shown as written)", () => {
    writeFileSync(join(dir, "package.json"), '{"type": "module"}\n');
    writeFileSync(
      join(dir, "greeter.js"),
      'export default { name: "greeter", schema: { type: "object", additionalProperties: false, properties: { greeting: { type: "string", default: "hello" }, times: { type: "integer", default: 2 } } },\n' +
        "  apply(apex, options) { options.greeting = 'changed by apply'; } };\n",
    );
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n  ./greeter.js: {times: 3}\n");
    const human = apex(["config", "show"]);
    expect([human.status, human.stderr]).toEqual([0, ""]);
    // As the config gives them to the plugin: what its apply makes of them is not the config.
    expect(human.stdout).toContain("\n  ./greeter.js:\n    times: 3\n    greeting: hello\n");
    const shown = JSON.parse(apex(["config", "show", "--json"]).stdout);
    expect(shown.plugins[1]).toEqual({ name: "./greeter.js", options: { times: 3, greeting: "hello" }, enabled: true, position: { file: "apex.config.yaml", line: 4, col: 3 } });
  });

  it("show: an invalid config is an error (exit 2), not a partial result", () => {
    writeConfig("invalid/restart-policy-typo.yaml");
    const result = apex(["config", "show"]);
    expect(result.status).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(`error[APEX_E_CONFIG]: apex.config.yaml:4:14: agents.coder.restart: must be one of "never", "on-failure", "always"`);
  });

  it("show: a plugin apex start refuses (an unknown one) is printed with a warning, as status gives it, exit 0", () => {
    // It was printed with exit 0 and no word, while `apex start` refused the config and `apex status` warned.
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n  retension: {}\n");
    const human = apex(["config", "show"]);
    expect(human.status).toBe(0);
    expect(human.stdout).toContain("  retension: {}\n");
    expect(human.stderr).toBe(
      "warning: apex.config.yaml is invalid (APEX_E_PLUGIN_UNKNOWN), so `apex start` would refuse it; `apex config validate` lists every problem:\n  Unknown plugin 'retension' at apex.config.yaml:4:3. Did you mean 'retention'?\n",
    );
    const json = apex(["config", "show", "--json"]);
    expect([json.status, json.stderr]).toEqual([0, ""]);
    expect(JSON.parse(json.stdout).warnings).toEqual([expect.stringContaining("Unknown plugin 'retension' at apex.config.yaml:4:3. Did you mean 'retention'?")]);
    // A config start takes has none.
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\nplugins:\n  checkpoint: {}\n");
    const valid = apex(["config", "show", "--json"]);
    expect([valid.status, valid.stderr, "warnings" in JSON.parse(valid.stdout)]).toEqual([0, "", false]);
  });

  it("path: where the config, project, store and schema are", () => {
    writeConfig("valid/minimal.yaml");
    const result = apex(["config", "path", "--json"], { APEX_HOME: "state" });
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      config: join(dir, "apex.config.yaml"),
      projectDir: dir,
      storeDir: join(dir, "state"),
      store: { backend: "lmdb", location: join(dir, "state") },
      schema: join(REPO_ROOT, "schemas", "apex.config.schema.json"),
    });
    // A store elsewhere (PostgreSQL): where the data is, without the password, and apart from it
    // the directory of the logs and socket (before, that directory was given as the store).
    const url = "postgres://apex:hunter2@db.internal:5432/apex";
    const elsewhere = apex(["config", "path", "--json"], { APEX_STORE_URL: url });
    expect(JSON.parse(elsewhere.stdout).store).toEqual({ backend: "postgres", location: "postgres://apex:***@db.internal:5432/apex", project: basename(dir) });
    const text = apex(["config", "path"], { APEX_STORE_URL: url });
    expect(text.stdout).toContain(`store:   postgres://apex:***@db.internal:5432/apex (project ${basename(dir)})\nruntime: ${join(dir, ".apex")}\n`);
    expect(text.stdout + elsewhere.stdout).not.toContain("hunter2");
    // A store no command would open (an APEX_STORE_URL no backend reads): said, not given as the LMDB directory.
    const typo = "postgrs://apex:hunter2@db.internal/apex";
    const unknown = apex(["config", "path"], { APEX_STORE_URL: typo });
    expect(unknown.status).toBe(0);
    expect(unknown.stdout).toContain("store:   not known (see the warning above)\n");
    expect(unknown.stdout).not.toContain(`store:   ${join(dir, ".apex")}`);
    expect(unknown.stderr).toContain('warning: the store is not known: APEX_STORE_URL must be postgres://… or lmdb:PATH, not "postgrs://apex:***@db.internal/apex".');
    const unknownJson = apex(["config", "path", "--json"], { APEX_STORE_URL: typo });
    expect(JSON.parse(unknownJson.stdout).store).toBeNull();
    expect(unknown.stdout + unknown.stderr + unknownJson.stdout + unknownJson.stderr).not.toContain("hunter2");
  });

  it("a command that writes refuses to run on an invalid config and creates no store", () => {
    writeConfig("invalid/retention-unknown-option.yaml");
    const result = apex(["memory", "set", "/notes/a", "1"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("error[APEX_E_CONFIG]: apex.config.yaml:7:5: plugins.retention.keep_lst: unknown option.");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("a direct write refuses what only a plugin's apply or a timer used to find (a gzip level past 9, a 4-week interval), and creates no store", () => {
    // Before, `apex config validate` said exit 2 for the gzip level but `memory set` wrote (exit 0); a 4w interval passed both.
    for (const text of ["plugins:\n  checkpoint: {}\n  compression: {algorithm: gzip, level: 11}\n", "plugins:\n  checkpoint: {interval: 4w}\n"]) {
      writeFileSync(join(dir, "apex.config.yaml"), text);
      const result = apex(["memory", "set", "/notes/a", "1"]);
      expect(result.status).toBe(2);
      expect(result.stderr).toMatch(/^error\[APEX_E_CONFIG\]: apex\.config\.yaml:\d+:\d+: (plugins\.compression\.level: gzip levels go from 0 to 9|plugins\.checkpoint\.interval: must be at most 2147483 seconds)/);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
    }
  });

  it("every duration of the schemas is capped at 36525 days: a huge one is refused by validate and start naming its field, and by --older-than", () => {
    // Before, `older_than: 1e308` (and keep_within, session_timeout, …) passed, then printed "older than Infinityd"
    // and a cutoff in the year -271821. Where each duration of the schemas sits in apex.config.yaml:
    const where: Record<string, string[]> = {
      "apex.config.schema.json/properties/session/properties/auto_checkpoint_interval": ["session", "auto_checkpoint_interval"],
      "apex.config.schema.json/properties/session/properties/session_timeout": ["session", "session_timeout"],
      "apex.config.schema.json/properties/session/properties/lease_ttl": ["session", "lease_ttl"],
      "apex.config.schema.json/properties/session/properties/plugin_timeout": ["session", "plugin_timeout"],
      "apex.config.schema.json/properties/session/properties/plugin_timeouts/additionalProperties": ["session", "plugin_timeouts", "slow"],
      "apex.config.schema.json/definitions/agent/properties/restart_delay": ["agents", "worker", "restart_delay"],
      "apex.config.schema.json/definitions/agent/properties/max_restart_delay": ["agents", "worker", "max_restart_delay"],
      "apex.config.schema.json/definitions/agent/properties/min_uptime": ["agents", "worker", "min_uptime"],
      "plugins/git.schema.json/properties/hook_timeout": ["plugins", "git", "hook_timeout"],
      "plugins/retention.schema.json/properties/keep_within": ["plugins", "retention", "keep_within"],
      "plugins/retention.schema.json/definitions/rules/properties/keep_within": ["plugins", "retention", "by_trigger", "manual", "keep_within"],
      "plugins/metrics.schema.json/properties/interval": ["plugins", "metrics", "interval"],
      "plugins/checkpoint.schema.json/properties/interval": ["plugins", "checkpoint", "interval"],
      "plugins/compression.schema.json/properties/older_than": ["plugins", "compression", "older_than"],
      "plugins/archive.schema.json/properties/older_than": ["plugins", "archive", "older_than"],
    };
    // Every duration the schemas have (a new one must be added above, and checked: plugins/config-ranges.ts).
    const found: string[] = [];
    const walk = (node: unknown, at: string) => {
      if (Array.isArray(node)) node.forEach((item, index) => walk(item, `${at}/${index}`));
      else if (node !== null && typeof node === "object") {
        if ((node as { $ref?: unknown }).$ref === "#/definitions/duration") found.push(at);
        for (const [key, value] of Object.entries(node)) walk(value, `${at}/${key}`);
      }
    };
    walk(configSchema(), "apex.config.schema.json");
    for (const name of ["checkpoint", "retention", "git", "compression", "sharing", "metrics", "history", "archive"] as const) walk(builtinPluginSchema(name), `plugins/${name}.schema.json`);
    expect(found.sort()).toEqual(Object.keys(where).sort());
    // Each set too long, as a number and as a string by turns: one config, every problem listed.
    const config: Record<string, unknown> = { agents: { worker: { command: "node", args: ["-e", "1"] } } };
    Object.values(where).forEach((path, index) => {
      let node = config;
      for (const key of path.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
      node[path[path.length - 1]!] = index % 2 === 0 ? 1e308 : "99999999999999999999d";
    });
    writeFileSync(join(dir, "apex.config.yaml"), JSON.stringify(config, null, 2));
    const report = apex(["config", "validate", "--json"]);
    expect(report.status).toBe(2);
    const issues = (JSON.parse(report.stdout) as { errors: Array<{ path: string; message: string }> }).errors;
    for (const path of Object.values(where)) {
      expect(issues.find((issue) => issue.path === path.join("."))?.message, path.join(".")).toMatch(/^must be at most (36525 days \("36525d", about 100 years\)|2147483 seconds)/);
    }
    const start = apex(["start", "--task", "never"]);
    expect(start.status).toBe(2);
    expect(start.stderr).toContain('plugins.archive.older_than: must be at most 36525 days ("36525d", about 100 years) (got ');
    expect(existsSync(join(dir, ".apex"))).toBe(false);
    // The same bound on the command line: 10000000w was taken, with a cutoff in the year -189627.
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n  archive: {}\n  compression: {}\n");
    for (const line of [["session", "archive", "--older-than", "10000000w", "--dry-run"], ["session", "compress", "--older-than", "36526d", "--dry-run"]]) {
      const refused = apex(line);
      expect(refused.status, line.join(" ")).toBe(2);
      expect(refused.stderr).toMatch(/^error\[APEX_E_USAGE\]: --older-than: "[0-9]+[wd]" is too long: it must be at most 36525 days \("36525d", about 100 years\)\.\n/);
    }
    expect(apex(["session", "archive", "--older-than", "36525d", "--dry-run"]).status).toBe(0);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("agents named a and a.err are refused (both would log to a.err.log), by validate and start, writing nothing", () => {
    // Before, both were accepted: a.err's stdout and a's stderr went to the same file, a.err.log.
    writeFileSync(join(dir, "apex.config.yaml"), 'agents:\n  a:\n    command: node\n    args: ["-e", "1"]\n  a.err:\n    command: node\n    args: ["-e", "1"]\n  b.err:\n    command: node\n    args: ["-e", "1"]\n');
    const message = "agents a and a.err would write the same log file, a.err.log (a.err's stdout and a's stderr, which goes to <agent>.err.log): rename one of them.";
    const report = apex(["config", "validate", "--json"]);
    expect(report.status).toBe(2);
    expect(JSON.parse(report.stdout).errors).toEqual([expect.objectContaining({ file: "apex.config.yaml", line: 5, col: 3, path: 'agents["a.err"]', message })]);
    for (const args of [["config", "validate"], ["start"]]) {
      const result = apex(args);
      expect(result.status).toBe(2);
      expect(result.stderr).toContain(`apex.config.yaml:5:3: agents["a.err"]: ${message}`);
    }
    expect(apex(["start", "--json"]).stderr).toContain('"code":"APEX_E_CONFIG"');
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("backup_location naming the store directory (however spelled, through a symlink) or APEX's own directory in it is a config error with its line; .apex/backups is fine", () => {
    // Before, `backup_location: .apex` was taken: `apex backup` wrote store-<time>/ and archives their bundles among the store's own files.
    expect(apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    symlinkSync(".apex", join(dir, "store-link"));
    for (const [value, message] of [
      [".apex", "is the store directory"],
      ["./.apex/", "is the store directory"],
      ["x/../.apex", "is the store directory"],
      ["store-link", "is the store directory"],
      ["store-link/logs/old", "lies in"],
      [".apex/run", "lies in"],
      // A file (or a path under one): backups failed as the archive plugin's ENOTDIR, "report it to its author".
      ["apex.config.yaml", "is a file, not a directory"],
      ["apex.config.yaml/sub", "lies under"],
    ]) {
      writeFileSync(join(dir, "apex.config.yaml"), `# backups\nsession:\n  backup_location: ${value}\n`);
      const validate = apex(["config", "validate", "--json"]);
      expect(validate.status, value).toBe(2);
      expect(JSON.parse(validate.stdout).errors).toEqual([expect.objectContaining({ file: "apex.config.yaml", line: 3, path: "session.backup_location", message: expect.stringContaining(message) })]);
      if (value !== ".apex" && value !== "store-link" && value !== "apex.config.yaml") continue;
      const backup = apex(["backup"]);
      expect(backup.status, value).toBe(2);
      expect(backup.stderr).toMatch(/^error\[APEX_E_CONFIG\]: apex\.config\.yaml:3:\d+: session\.backup_location: /);
      expect(backup.stdout).toBe("");
      expect(readdirSync(join(dir, ".apex")).filter((name) => name.startsWith("store-"))).toEqual([]);
    }
    for (const value of [".apex/backups", "backups", "."]) {
      writeFileSync(join(dir, "apex.config.yaml"), `session:\n  backup_location: ${value}\n`);
      expect(apex(["config", "validate"]).status, value).toBe(0);
    }
    // The default, .apex/backups, made a file: said to be the default, which the file does not set (the problem was
    // given the position of another line of the file, as if that line set it).
    writeFileSync(join(dir, "apex.config.yaml"), "session:\n  max_checkpoints: 7\n");
    writeFileSync(join(dir, ".apex", "backups"), "a file\n");
    const unset = apex(["config", "validate", "--json"]);
    expect(unset.status).toBe(2);
    expect(JSON.parse(unset.stdout).errors).toEqual([expect.objectContaining({ path: "session.backup_location", message: expect.stringContaining("is a file, not a directory (got \".apex/backups\"") })]);
    expect(JSON.parse(unset.stdout).errors[0].message).toContain("This is the default: the config file does not set session.backup_location; move that file aside, or set another directory.");
    rmSync(join(dir, ".apex", "backups"));
    // So is `backup --to` under a file: a usage error, not the plugin's failure.
    const under = apex(["backup", "--to", "apex.config.yaml/x", "--json"]);
    expect(under.status).toBe(2);
    expect(JSON.parse(under.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: `Cannot create the directory ${join(dir, "apex.config.yaml", "x")}: a part of the path is not a directory (ENOTDIR).` });
  });

  it("backup_location naming the directory of an LMDB store kept elsewhere (store.url, APEX_STORE_URL=lmdb:PATH) or its files is a config error with its line, as .apex is", () => {
    // Before, only .apex was looked at: `apex backup` wrote store-<time>/ beside store.mdb in the store's own directory.
    const data = join(dir, "data");
    const config = (backup: string, store = "") => writeFileSync(join(dir, "apex.config.yaml"), `${store}session:\n  backup_location: ${backup}\n`);
    config("backups", "store:\n  backend: lmdb\n  url: data\n");
    expect(apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    expect(existsSync(join(data, "store.mdb"))).toBe(true);
    for (const [backup, message] of [["./data/salvage-1/x", `lies in ${join(data, "salvage-1")}, which APEX keeps in the store's data directory`], ["data", `is the store's data directory ${data} itself`]]) {
      config(backup, "store:\n  backend: lmdb\n  url: data\n");
      const validate = apex(["config", "validate", "--json"]);
      expect(validate.status, backup).toBe(2);
      expect(JSON.parse(validate.stdout).errors).toEqual([expect.objectContaining({ line: 5, path: "session.backup_location", message: expect.stringContaining(message) })]);
    }
    const backup = apex(["backup"]);
    expect(backup.status).toBe(2);
    expect(backup.stderr).toMatch(/^error\[APEX_E_CONFIG\]: apex\.config\.yaml:5:\d+: session\.backup_location: is the store's data directory /);
    expect(readdirSync(data).filter((name) => name.startsWith("store-"))).toEqual([]);
    // The environment's store: the same, and the config's own store.url no longer counts.
    config("data");
    const env = { APEX_STORE_URL: "lmdb:data" };
    expect(apex(["config", "validate"], env).status).toBe(2);
    const fromEnv = apex(["backup"], env);
    expect(fromEnv.status).toBe(2);
    expect(fromEnv.stderr).toContain(`session.backup_location: is the store's data directory ${data} itself`);
    expect(readdirSync(data).filter((name) => name.startsWith("store-"))).toEqual([]);
    expect(apex(["config", "validate"], { APEX_STORE_URL: "lmdb:other" }).status).toBe(0);
    // A directory of its own inside it is fine, as .apex/backups is.
    config("data/backups", "store:\n  backend: lmdb\n  url: data\n");
    expect(apex(["config", "validate"]).status).toBe(0);
  });

  it("a direct write refuses an unknown plugin name (did-you-mean) or a missing plugin file, and creates no store", () => {
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  retension: {}\n");
    const unknown = apex(["memory", "set", "/notes/a", "1"]);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("error[APEX_E_PLUGIN_UNKNOWN]: Unknown plugin 'retension' at apex.config.yaml:2:3. Did you mean 'retention'?");
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  ./plugins/missing.mjs: {}\n  ./plugins/disabled.mjs: false\n");
    const missing = runApex(["memory", "import", "-"], { cwd: dir, input: "{}" });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("The plugin file ./plugins/missing.mjs at apex.config.yaml:2:3 does not exist");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
    // A disabled entry may name a plugin that is not there.
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  ./plugins/disabled.mjs: false\n");
    expect(apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
  });

  it("apex start refuses a plugin the config cannot have before its supervisor opens the store, and a first start leaves no .apex behind", () => {
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  retension: {}\n");
    const first = apex(["start", "--task", "x", "--json"]);
    expect(first.status).toBe(2);
    expect(JSON.parse(first.stderr)).toMatchObject({ error: { code: "APEX_E_PLUGIN_UNKNOWN", exitCode: 2, exit_code: 2 } });
    expect(existsSync(join(dir, ".apex"))).toBe(false);

    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  ./plugins/missing.mjs: {}\n");
    const missing = apex(["start", "--task", "x"]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("The plugin file ./plugins/missing.mjs at apex.config.yaml:2:3 does not exist");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });
});

describe("agents whose names differ only in case", () => {
  it("run where the store's file system tells case apart; where it does not, start and config validate refuse them, naming both (they would share one log and one resume file)", () => {
    const { dir, cleanup } = tempDir("apex-config-case-");
    try {
      writeFileSync(join(dir, "apex.config.yaml"), 'agents:\n  Coder:\n    command: sh\n    args: ["-c", "sleep 1"]\n  coder:\n    command: sh\n    args: ["-c", "sleep 1"]\n  CODER.err:\n    command: sh\n    args: ["-c", "sleep 1"]\nplugins: {}\n');
      // Linux: the two names are two files. The probe looks only (no file is written, no store made).
      expect(caseInsensitiveDir(join(dir, ".apex", "logs"))).toBe(false);
      const fine = runApex(["config", "validate"], { cwd: dir });
      expect([fine.status, fine.stderr]).toEqual([0, ""]);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
      // No case-insensitive file system mounts here (ext4 without casefold, no vfat): a directory that its
      // name in other case reaches is what the probe finds on one (`logs` as `LOGS`, the same directory).
      mkdirSync(join(dir, ".apex", "logs"), { recursive: true });
      symlinkSync("logs", join(dir, ".apex", "LOGS"));
      expect(caseInsensitiveDir(join(dir, ".apex", "logs", "a-session"))).toBe(true);
      for (const args of [["config", "validate"], ["start"]]) {
        const refused = runApex(args, { cwd: dir });
        expect(refused.status, refused.stderr).toBe(2);
        expect(refused.stderr).toContain(`apex.config.yaml:5:3: agents.coder: agents Coder and coder would write one file (Coder.log and coder.log): the file system of ${join(dir, ".apex")} does not tell case apart. Rename one of them.`);
        expect(refused.stderr).toContain(`apex.config.yaml:8:3: agents["CODER.err"]: agents Coder and CODER.err would write one file (Coder's stderr, Coder.err.log, and CODER.err's stdout, CODER.err.log): the file system of`);
      }
      // Nothing started, nothing written: the store directory holds what the test made.
      expect(readdirSync(join(dir, ".apex")).sort()).toEqual(["LOGS", "logs"]);
      expect(readdirSync(join(dir, ".apex", "logs"))).toEqual([]);
    } finally {
      cleanup();
    }
  });
});
