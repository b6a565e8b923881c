import { isAbsolute, resolve } from "node:path";
import { parseDuration } from "../../core/config/duration.js";
import type { Config } from "../../core/config/types.js";
import { ApexError } from "../../core/errors.js";
import { MAX_CODEC_LEVEL, type PackCodec } from "../checkpoint/engine/objects.js";
import type { ReadLimits } from "./bundle.js";

/** Default bound on the uncompressed body of a bundle read (plugins.archive.max_bundle_bytes). */
export const DEFAULT_MAX_BUNDLE_BYTES = 1024 ** 3;
/**
 * Default bound on how much larger the body is than the compressed file
 * (plugins.archive.max_compression_ratio). Real bundles stay far below it: tree nodes
 * hold raw hashes, and equal values are stored once.
 */
export const DEFAULT_MAX_COMPRESSION_RATIO = 100;

/** The plugin's options as apex.config.yaml gives them (schemas/plugins/archive.schema.json). */
export interface ArchivePluginOptions {
  algorithm?: PackCodec;
  level?: number;
  max_bundle_bytes?: number;
  max_compression_ratio?: number;
  older_than?: number | string;
}

export interface ArchiveSettings {
  algorithm: PackCodec;
  level: number | undefined;
  maxBundleBytes: number;
  /** How much larger than its compressed file a bundle's body may be (a bound against decompression bombs). */
  maxCompressionRatio: number;
  /** Default of `apex session archive --older-than`. */
  olderThanMs: number | undefined;
}

export function settingsFromOptions(options: ArchivePluginOptions): ArchiveSettings {
  const algorithm = options.algorithm ?? "brotli";
  if (options.level !== undefined && options.level > MAX_CODEC_LEVEL[algorithm]) {
    throw new ApexError("APEX_E_PLUGIN_OPTIONS", `plugins.archive.level: ${algorithm} levels go from 0 to ${MAX_CODEC_LEVEL[algorithm]} (got ${options.level}).`);
  }
  let olderThanMs: number | undefined;
  if (options.older_than !== undefined) {
    try {
      olderThanMs = parseDuration(options.older_than) * 1000;
    } catch (error) {
      throw new ApexError("APEX_E_PLUGIN_OPTIONS", `plugins.archive.older_than: ${(error as Error).message}`, { cause: error });
    }
  }
  return {
    algorithm,
    level: options.level,
    maxBundleBytes: options.max_bundle_bytes ?? DEFAULT_MAX_BUNDLE_BYTES,
    maxCompressionRatio: options.max_compression_ratio ?? DEFAULT_MAX_COMPRESSION_RATIO,
    olderThanMs,
  };
}

/** session.backup_location as an absolute directory (relative to the project directory). */
export function backupDirectory(config: Config | undefined, projectDir: string | undefined): string {
  const location = config?.session.backup_location ?? ".apex/backups";
  if (isAbsolute(location)) return location;
  return resolve(projectDir ?? config?.projectDir ?? process.cwd(), location);
}

/** The bounds a bundle read applies, from the plugin's settings. */
export function readLimits(settings: ArchiveSettings): ReadLimits {
  return { maxBytes: settings.maxBundleBytes, maxRatio: settings.maxCompressionRatio };
}
