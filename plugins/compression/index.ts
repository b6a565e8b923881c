import { durationHelp } from "../../cli/durations.js";
import { builtinPluginSchema } from "../../core/config/schemas.js";
import type { CheckpointInfo, CommandSpec } from "../../core/engine.js";
import { APEX_VERSION, definePlugin } from "../../core/plugins.js";
import { shortSessionId } from "../../core/session/names.js";
import { settingsFromOptions, type CompressionOptions } from "./options.js";

const PLUGIN_NAME = "compression" as const;

/** Uncompressed bytes one automatic run compresses at most; the rest waits for the next checkpoint. */
export const AUTO_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Compresses cold checkpoint data with brotli or gzip (node:zlib); content hashes stay
 * those of the uncompressed bytes and reads decompress transparently.
 *
 * With `after` or `older_than` set, it compresses after every checkpoint (at most
 * AUTO_MAX_BYTES a time, one run at a time); `apex session compress` does it on demand.
 * What "cold" means is compress.ts.
 */
export default definePlugin<CompressionOptions>({
  name: PLUGIN_NAME,
  version: APEX_VERSION,
  // Compresses the checkpoint engine's packs.
  requires: ["checkpoint"],
  // Read when asked for (config checks read it themselves): a supervisor applying the plugin reads no schema, loads no validator.
  get schema() {
    return builtinPluginSchema(PLUGIN_NAME);
  },
  apply(apex, options) {
    const settings = settingsFromOptions(options);

    if (settings.automatic) {
      let queue: Promise<unknown> = Promise.resolve();
      let warnedNoStore = false;
      apex.hooks.afterCheckpoint.tapPromise(PLUGIN_NAME, async (info: CheckpointInfo) => {
        const store = apex.store;
        if (!store) {
          if (!warnedNoStore) {
            warnedNoStore = true;
            apex.warn(`not applied after ${shortSessionId(info.sessionId)} checkpoint ${info.sequence}: this process has no store open; run \`apex session compress\`.`);
          }
          return;
        }
        const run = queue.then(async () => {
          const { compressColdData } = await import("./compress.js");
          await compressColdData(store, { algorithm: settings.algorithm, level: settings.level, policy: settings.policy, maxBytes: AUTO_MAX_BYTES });
        });
        queue = run.catch(() => undefined);
        await run;
      });
    }

    const spec: CommandSpec = {
      name: "session compress",
      description: "compress the data of cold checkpoints now (brotli or gzip); hashes, reads and restores stay the same",
      arguments: [{ syntax: "[id]", description: "only this session's checkpoints (id, unique prefix or a branch's name); default: the one --session names, else every session", session: true }],
      options: [
        { flags: "--after <n>", description: "cold = checkpoints with at least N newer ones in their session (default: the plugin's `after`)" },
        { flags: "--older-than <duration>", description: durationHelp("cold = checkpoints older than this (default: the plugin's `older_than`)", "7d, 12h, 30days") },
        { flags: "--algorithm <name>", description: "brotli or gzip (default: the plugin's `algorithm`, brotli)" },
        { flags: "--level <n>", description: "0-11 for brotli, 0-9 for gzip (default: the plugin's `level` for the plugin's algorithm, else 6)" },
        { flags: "--recompress", description: "also compress again cold data compressed already (another algorithm or level; LangGraph's values, gzip 1 as written), if that makes them smaller; a pack holding hot values too is rewritten with those alone" },
        { flags: "--dry-run", description: "compress in memory and report the sizes; write nothing" },
        { flags: "--json", description: "print {dry_run, session_id, algorithm, level, policy: {after, older_than_seconds}, checkpoints: {cold, hot}, values: {compressed, already_compressed, recompressed, incompressible, skipped, too_large, remaining}, bytes_before, bytes_after, ratio, packs: {written, removed, rewritten}, store_bytes_before, store_bytes_after, damaged_nodes}" },
      ],
      examples: [
        "apex session compress                      # every session, with the plugin's options",
        "apex session compress 3f2a --after 5       # all but the newest 5 checkpoints of session 3f2a…",
        "apex session compress --older-than 7d --dry-run",
        "apex session compress --algorithm gzip --level 9 --json",
        "apex session compress --recompress --algorithm brotli --level 11   # LangGraph's gzip 1 packs, smaller",
      ],
      async action(input, context) {
        const { runCompressCommand } = await import("./command.js");
        return runCompressCommand(input, context, settings);
      },
    };
    apex.registerCommand(spec);
  },
});
