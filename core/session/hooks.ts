import type { Config } from "../config/types.js";
import type { Engine } from "../engine.js";
import type { ResolvedPlugins } from "../plugins.js";
import type { Store } from "../store/store.js";
import { currentActor } from "../actor.js";
import { bindCheckpointHooks } from "./checkpoints.js";
import { appendEvent } from "./service.js";

/**
 * The one place where session code gets its engine: config → plugins applied → hooks.
 * Everything in core/session fires hooks through `engine.fire`, which names the failing
 * plugin and reports it to onError.
 */
export type SessionEngine = Pick<Engine, "fire" | "hooks">;

export async function createSessionEngine(config: Config, store: Store, warn: (message: string) => void, plugins?: ResolvedPlugins, supervisor = false): Promise<Engine> {
  const { loadPlugins } = await import("../plugins.js");
  const engine = await loadPlugins(config, { store, warn }, plugins);
  // Every checkpoint this process writes (by command, hook or timer) runs beforeCheckpoint
  // and afterCheckpoint on this engine: git state in, retention after.
  // Run on the store (no supervisor runs the session: interrupted, ended), a checkpoint goes in its audit trail as a supervisor records its own
  // (`session history` missed it), in the checkpoint's own transaction: one commit, and no checkpoint without its event.
  bindCheckpointHooks(store, engine, supervisor ? undefined : (batch, info) => void appendEvent(batch, info.sessionId, "checkpoint", currentActor(), { id: info.id, sequence: info.sequence, trigger: info.trigger }));
  return engine;
}
