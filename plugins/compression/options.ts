import { parseDuration } from "../../core/config/duration.js";
import { formatDuration } from "../../cli/durations.js";
import { ApexError } from "../../core/errors.js";
import { MAX_CODEC_LEVEL, type PackCodec } from "../checkpoint/engine/objects.js";
import type { ColdPolicy } from "./compress.js";

/** The plugin's options as apex.config.yaml gives them (schemas/plugins/compression.schema.json). */
export interface CompressionOptions {
  algorithm?: PackCodec;
  after?: number;
  /** Seconds, or a duration string ("7d"). */
  older_than?: number | string;
  level?: number;
}

export interface CompressionSettings {
  algorithm: PackCodec;
  level: number | undefined;
  policy: ColdPolicy;
  /** Compress after every checkpoint: only when `after` or `older_than` is set. */
  automatic: boolean;
}

export function settingsFromOptions(options: CompressionOptions): CompressionSettings {
  const algorithm = options.algorithm ?? "brotli";
  if (options.level !== undefined && options.level > MAX_CODEC_LEVEL[algorithm]) {
    throw new ApexError("APEX_E_PLUGIN_OPTIONS", `plugins.compression.level: ${algorithm} levels go from 0 to ${MAX_CODEC_LEVEL[algorithm]} (got ${options.level}).`, {
      hint: algorithm === "gzip" ? "Levels up to 11 are for brotli." : undefined,
    });
  }
  const policy: ColdPolicy = {};
  if (options.after !== undefined) policy.after = options.after;
  if (options.older_than !== undefined) {
    try {
      policy.olderThanMs = parseDuration(options.older_than) * 1000;
    } catch (error) {
      throw new ApexError("APEX_E_PLUGIN_OPTIONS", `plugins.compression.older_than: ${(error as Error).message}`, { cause: error });
    }
  }
  return { algorithm, level: options.level, policy, automatic: policy.after !== undefined || policy.olderThanMs !== undefined };
}

/** "checkpoints with 3 newer ones and older than 7d", in the words of the options. */
export function describePolicy(policy: ColdPolicy): string {
  const parts: string[] = [];
  if (policy.after !== undefined) parts.push(policy.after === 0 ? "every checkpoint" : `checkpoints with ${policy.after} or more newer ones in their session`);
  if (policy.olderThanMs !== undefined) parts.push(`${parts.length ? "" : "checkpoints "}older than ${formatDuration(policy.olderThanMs)}`);
  return parts.length === 0 ? "every checkpoint (neither after nor older_than is set)" : parts.join(" and ");
}
