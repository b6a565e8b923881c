/**
 * The KEPT BY column of `apex checkpoint list`: why the retention plugin keeps each checkpoint.
 * A command that opens the store asks the project's config (retentionReasons); a process that
 * answers the list for others (a supervisor: commands inside agents, and `apex serve`'s remote
 * clients of a live session) asks the retention plugin it applied (keptByOf), so that a list read
 * there shows the column as a local one does.
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import type { Store } from "../../core/store/store.js";
import type { KeptBy } from "./plugin-list.js";

/** Shared by every copy of this module in the process (a supervisor runs from a bundle), as core's checkpoint registry is. */
const shared = globalThis as { [key: symbol]: WeakMap<Store, () => Promise<KeptBy>> | undefined };
const providers = (shared[Symbol.for("apex-sessions.kept-by")] ??= new WeakMap());

/** Called by the retention plugin where it is applied with a store: the reasons its policy keeps checkpoints for. */
export function provideKeptBy(store: Store, provider: () => Promise<KeptBy>): void {
  providers.set(store, provider);
}

/** The reasons of the retention plugin applied with `store`; undefined when none is (retention off: nothing removes checkpoints). */
export async function keptByOf(store: Store): Promise<KeptBy | undefined> {
  return providers.get(store)?.();
}

/**
 * The retention plugin's reasons when the project's config enables it. A config that does not
 * load leaves the column out: listing checkpoints must work even then (`apex config validate`
 * says what is wrong).
 */
export async function retentionReasons(location: ProjectLocation): Promise<KeptBy | undefined> {
  if (await retentionLeftOut(location)) return undefined;
  const { loadConfig } = await import("../../core/config/load.js");
  let config: Awaited<ReturnType<typeof loadConfig>>;
  try {
    config = await loadConfig(location);
  } catch {
    return undefined;
  }
  const entry = config.plugins.find((plugin) => plugin.name === "retention" && plugin.enabled);
  if (!entry) return undefined;
  const { keptByRetention } = await import("../retention/explain.js");
  return (store, sessionId) => keptByRetention(store, sessionId, entry.options, config);
}

/**
 * True when the config file surely does not enable retention: it has a top-level plugins:
 * section (which replaces the default list) and the word "retention" appears nowhere in it.
 * Spares listing the cost of loading the config (YAML and schemas, ~90 ms of CPU) when nothing
 * removes checkpoints; in every other case the config is loaded and decides.
 */
async function retentionLeftOut(location: ProjectLocation): Promise<boolean> {
  if (location.configPath === undefined) return false;
  const { readFile } = await import("node:fs/promises");
  let text: string;
  try {
    text = await readFile(location.configPath, "utf8");
  } catch {
    return false;
  }
  return /^plugins\s*:/m.test(text) && !text.includes("retention");
}
