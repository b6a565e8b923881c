import type { CommandContext, CommandInput } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import { DEFAULT_CODEC_LEVEL, MAX_CODEC_LEVEL, type PackCodec } from "../checkpoint/engine/objects.js";
import { findKnownSession, knownSessions } from "../retention/sessions.js";
import { compressColdData, type ColdPolicy, type CompressResult } from "./compress.js";
import { parseDurationOption } from "../../cli/durations.js";
import { describePolicy, type CompressionSettings } from "./options.js";
import { formatBytes, plural } from "../../cli/output.js";
import { parseWholeNumber } from "../../cli/option-values.js";
import { Progress } from "./progress.js";
import { shortSessionId } from "../../core/session/names.js";

/**
 * `apex session compress [ID] [--after N] [--older-than D] [--algorithm A] [--level L]
 * [--dry-run] [--json]`: compresses the cold data of one session, or of every session, now.
 * The flags override the plugin's options for this run.
 */
export async function runCompressCommand(input: CommandInput, context: CommandContext, settings: CompressionSettings): Promise<number> {
  const { options } = input;
  const json = Boolean(options.json);
  const dryRun = Boolean(options.dryRun);
  const algorithm = parseAlgorithm(options.algorithm, settings.algorithm);
  // The plugin's level goes with the plugin's algorithm, whether --algorithm names it or not (--algorithm gzip ran gzip 6 where the config said gzip level 9).
  const level = parseLevel(options.level, algorithm, algorithm === settings.algorithm ? settings.level : undefined);
  const policy: ColdPolicy = { ...settings.policy };
  if (options.after !== undefined) policy.after = parseWholeNumber(options.after, "--after");
  if (options.olderThan !== undefined) policy.olderThanMs = parseDurationOption(options.olderThan, "--older-than");
  const argument = typeof input.args[0] === "string" && input.args[0] !== "" ? input.args[0] : undefined;

  if (!(await context.storeExists())) {
    // No store yet: nothing to compress, and opening one for writing would create it (a dry run wrote .apex/store.mdb).
    if (argument !== undefined) findKnownSession([], argument, undefined, NOT_FOUND_HINT);
    const empty: CompressResult = {
      dryRun,
      algorithm,
      level: level ?? DEFAULT_CODEC_LEVEL[algorithm],
      sessionId: null,
      checkpoints: { cold: 0, hot: 0 },
      values: { compressed: 0, alreadyCompressed: 0, recompressed: 0, incompressible: 0, skipped: 0, tooLarge: 0, remaining: 0 },
      bytes: { before: 0, after: 0 },
      packs: { written: 0, removed: 0, rewritten: 0 },
      store: { before: 0, after: 0 },
      damaged: 0,
    };
    if (json) context.printJson(resultJson(empty, policy));
    else printResult(context, empty, policy);
    return 0;
  }
  const store = await context.store();
  const session = argument === undefined ? undefined : findSession(store, argument);
  const sessionId = session?.sessionId;
  const progress = new Progress();
  let result: CompressResult;
  try {
    result = await compressColdData(store, {
      algorithm,
      level,
      policy,
      sessionId,
      dryRun,
      recompress: Boolean(options.recompress),
      measure: true,
      onProgress: (phase, done, total) => progress.update(`${phase} ${done}/${total}`),
    });
  } finally {
    progress.done();
  }
  if (json) context.printJson(resultJson(result, policy));
  else {
    // The session as session list prints it, by name or short id (--json has the whole id).
    const name = session?.record?.name;
    printResult(context, result, policy, session && (typeof name === "string" && name ? name : shortSessionId(session.sessionId)));
  }
  return 0;
}

function findSession(store: Parameters<typeof knownSessions>[0], argument: string): ReturnType<typeof findKnownSession> {
  return findKnownSession(knownSessions(store), argument, store, NOT_FOUND_HINT);
}

const NOT_FOUND_HINT = "See `apex session list`; without an ID, every session's cold data is compressed.";

function parseAlgorithm(value: unknown, fallback: PackCodec): PackCodec {
  if (value === undefined) return fallback;
  if (value === "brotli" || value === "gzip") return value;
  throw new ApexError("APEX_E_USAGE", `Unknown algorithm ${JSON.stringify(value)} for --algorithm.`, { hint: "Use brotli or gzip (zstd is not in Node 20)." });
}

/** The level as the shared option parser reads numbers (digits only), within the algorithm's range. */
function parseLevel(value: unknown, algorithm: PackCodec, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  try {
    return parseWholeNumber(value, `--level (${algorithm})`, { max: MAX_CODEC_LEVEL[algorithm] });
  } catch (error) {
    // Its hint was "e.g. --level (gzip) 9", which is no command line.
    if (!(error instanceof ApexError)) throw error;
    throw new ApexError(error.code, error.message, { hint: `e.g. --level ${MAX_CODEC_LEVEL[algorithm]}: ${algorithm} levels go from 0 to ${MAX_CODEC_LEVEL[algorithm]}.`, details: error.details });
  }
}

function printResult(context: CommandContext, result: CompressResult, policy: ColdPolicy, session?: string): void {
  const scope = result.sessionId ? `session ${session ?? shortSessionId(result.sessionId)}` : "every session";
  context.print(`Cold: ${describePolicy(policy)}; ${scope}: ${plural(result.checkpoints.cold, "checkpoint")} cold, ${result.checkpoints.hot} hot.`);
  const { values, bytes, packs } = result;
  const verb = result.dryRun ? "Would compress" : "Compressed";
  if (values.compressed === 0) context.print(`Nothing to compress with ${result.algorithm} ${result.level}.`);
  else {
    const ratio = bytes.after > 0 ? ` (${(bytes.before / bytes.after).toFixed(1)}x smaller)` : "";
    const again = values.recompressed > 0 ? ` (${values.recompressed} of them compressed already)` : "";
    context.print(`${verb} ${plural(values.compressed, "value")}${again} with ${result.algorithm} ${result.level}: ${formatBytes(bytes.before)} -> ${formatBytes(bytes.after)}${ratio}, in ${plural(packs.written, "pack")}.`);
  }
  if (result.store) {
    const freed = result.dryRun ? "" : ` (${plural(packs.removed, "pack")} freed, ${packs.rewritten} rewritten)`;
    context.print(`All packs: ${formatBytes(result.store.before)} -> ${formatBytes(result.store.after)}${freed}.`);
  }
  const left: string[] = [];
  if (values.alreadyCompressed > 0) left.push(`${values.alreadyCompressed} already compressed`);
  if (values.skipped > 0) left.push(`${values.skipped} missing, damaged or moved meanwhile`);
  if (values.tooLarge > 0) left.push(`${values.tooLarge} over 256 MiB, more than a read decompresses`);
  if (left.length > 0) context.print(`Left as they are: ${left.join(", ")}.`);
  if (values.incompressible > 0) context.print(`${plural(values.incompressible, "value")} did not compress (packed all the same, so that later runs skip them).`);
  if (result.damaged > 0) context.print(`${plural(result.damaged, "tree node")} could not be read; run \`apex session validate\`.`);
  if (result.dryRun) context.print("Dry run: nothing was written.");
}

function resultJson(result: CompressResult, policy: ColdPolicy) {
  return {
    dry_run: result.dryRun,
    session_id: result.sessionId,
    algorithm: result.algorithm,
    level: result.level,
    policy: { after: policy.after ?? null, older_than_seconds: policy.olderThanMs === undefined ? null : policy.olderThanMs / 1000 },
    checkpoints: result.checkpoints,
    values: {
      compressed: result.values.compressed,
      already_compressed: result.values.alreadyCompressed,
      recompressed: result.values.recompressed,
      incompressible: result.values.incompressible,
      skipped: result.values.skipped,
      too_large: result.values.tooLarge,
      remaining: result.values.remaining,
    },
    bytes_before: result.bytes.before,
    bytes_after: result.bytes.after,
    ratio: result.bytes.after > 0 ? Number((result.bytes.before / result.bytes.after).toFixed(3)) : null,
    packs: result.packs,
    store_bytes_before: result.store?.before ?? null,
    store_bytes_after: result.store?.after ?? null,
    damaged_nodes: result.damaged,
  };
}
