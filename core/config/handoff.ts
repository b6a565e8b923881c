/**
 * The Config `apex start` loaded and checked, handed to the supervisor it spawns in a private file
 * (v8 serialization: .inf and the like survive): the supervisor reads and removes it instead of
 * reading apex.config.yaml again, so it runs exactly the config the CLI checked, and never loads
 * yaml unless a message needs a position in the file (its source is parsed then, on demand).
 */
import { readFileSync, rmSync } from "node:fs";
import { deserialize } from "node:v8";
import { displayPath, parseSource } from "./source.js";
import type { Config, ConfigSource } from "./types.js";

/** Reads (and removes) what cli/session/launch.ts wrote: the config, its file's path and text. */
export function takeHandedConfig(file: string): Config {
  const { config, source } = deserialize(readFileSync(file)) as { config: Config; source?: Pick<ConfigSource, "file" | "text"> };
  rmSync(file, { force: true });
  let parsed: ConfigSource | undefined;
  const parse = () => (parsed ??= parseSource(source!.text, source!.file).source);
  if (source) Object.defineProperty(config, "source", { value: Object.freeze({ ...source, displayFile: displayPath(source.file), get doc() { return parse().doc; }, get lineCounter() { return parse().lineCounter; } }) });
  return deepFreeze(config, new Set([config.source]));
}

/** Freezes every object reachable from `value`, except the ones in `skip` (the parsed document). */
export function deepFreeze<T>(value: T, skip: Set<unknown>): T {
  if (value === null || typeof value !== "object" || skip.has(value) || Object.isFrozen(value)) return value;
  for (const key of Reflect.ownKeys(value)) {
    const child = (value as Record<PropertyKey, unknown>)[key];
    if (!skip.has(child)) deepFreeze(child, skip);
  }
  return Object.freeze(value);
}
