import { builtinPluginSchema } from "../../core/config/schemas.js";
import type { CheckpointInfo } from "../../core/engine.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { shortSessionId } from "../../core/session/names.js";
import { capOnly, policyFromOptions, type RetentionOptions } from "./options.js";
import { provideKeptBy } from "../checkpoint/kept-by.js";

const PLUGIN_NAME = "retention" as const;

/**
 * Keeps the checkpoints the policy says to keep and sweeps the data only removed ones used.
 *
 * After every checkpoint it applies the whole policy to that checkpoint's session when
 * `auto_cleanup` is on, and only the hard cap (session.max_checkpoints) when it is off.
 * `apex session cleanup` applies the policy on demand. The policy itself is policy.ts, a
 * pure function; cleanup.ts applies it to a store.
 */
export default definePlugin<RetentionOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    const policy = policyFromOptions(options, apex.config);
    const autoCleanup = options.auto_cleanup !== false;
    const afterCheckpoint = autoCleanup ? policy : capOnly(policy);
    // One cleanup at a time: checkpoints can follow each other faster than a sweep runs.
    let queue: Promise<unknown> = Promise.resolve();
    let warnedNoStore = false;

    // Where it runs with a store (a supervisor), `checkpoint list` read through it (inside agents, remotely) shows KEPT BY.
    if (apex.store) {
      provideKeptBy(apex.store, async () => {
        const { keptByRetention } = await import("./explain.js");
        return (store, sessionId) => keptByRetention(store, sessionId, options, apex.config);
      });
    }

    apex.hooks.afterCheckpoint.tapPromise(PLUGIN_NAME, async (info: CheckpointInfo) => {
      if (afterCheckpoint.maxCheckpoints === undefined && !autoCleanup) return;
      // A session's first checkpoint (sequences are never reused) is its only one and its latest,
      // which the policy always keeps: there is nothing to remove, and a new session's start
      // does not load the policy's code and read every session's checkpoints for nothing.
      if (info.sequence === 1) return;
      const store = apex.store;
      if (!store) {
        if (!warnedNoStore) {
          warnedNoStore = true;
          apex.warn(`not applied after ${shortSessionId(info.sessionId)} checkpoint ${info.sequence}: this process has no store open; run \`apex session cleanup\`.`);
        }
        return;
      }
      const run = queue.then(async () => {
        const { applyRetention } = await import("./cleanup.js");
        const outcome = await applyRetention(store, afterCheckpoint, { sessionId: info.sessionId, sweep: "if-deleted", run: "auto" });
        if (outcome.sweepError) apex.warn(`removed ${outcome.deleted.length} checkpoint${outcome.deleted.length === 1 ? "" : "s"} but did not sweep: ${outcome.sweepError.message}`);
      });
      queue = run.catch(() => undefined);
      await run;
    });

    apex.registerCommand({
      name: "session cleanup",
      description: "apply the retention policy now and remove leftover temporary files",
      arguments: [{ syntax: "[id]", description: "only this session (id, unique prefix or a branch's name); default: the one --session names, else every session", session: true }],
      options: [
        { flags: "--dry-run", description: "print what would be kept and removed, and by which rule; change nothing" },
        { flags: "--json", description: "print {dry_run, time_zone, policy: {keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_within, by_trigger: {TRIGGER: {keep_last, …}}, kept_until_deleted, max_checkpoints}, sessions: [{session_id, state, status, checkpoints: [{name, id, sequence, created_at, action: keep|remove, reasons, protected, removed_by?, reason?}], kept, removed, over_cap, keep_within_from}], deleted: [{session_id, name, id, sequence, reason}], skipped: [{session_id, name, id, error}], removed_meanwhile: [{session_id, name, id, sequence}], sweep: {values, trees, bytes_freed, object_bytes, and as before bytes} or null, sweep_error: {code, message, hint} or null, temporary: {files: [{path, bytes, why}], bytes, failed: [{path, error}]}, bytes_freed}; bytes_freed is what the disk got back (the sweep's, what the store's packs shrank by, plus temporary.bytes), object_bytes (bytes before) the dropped objects' own uncompressed size; a session's state is where its record is (current, ended, or none: only checkpoints left), its status the one session list gives it (null with no record)" },
      ],
      examples: ["apex session cleanup --dry-run", "apex session cleanup", "apex session cleanup 3f2a --json"],
      async action(input, context) {
        const { runCleanupCommand } = await import("./command.js");
        return runCleanupCommand(input, context, policy);
      },
    });
  },
});
