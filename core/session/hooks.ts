import type { Config } from "../config/types.js";
import type { Engine } from "../engine.js";
import type { Store } from "../store/store.js";

/**
 * The one place where session code gets its engine: config → plugins applied → hooks.
 * Everything in core/session fires hooks through `engine.fire`, which names the failing
 * plugin and reports it to onError.
 */
export type SessionEngine = Pick<Engine, "fire" | "hooks">;

export async function createSessionEngine(config: Config, store: Store, warn: (message: string) => void): Promise<Engine> {
  const { loadPlugins } = await import("../plugins.js");
  return loadPlugins(config, { store, warn });
}
