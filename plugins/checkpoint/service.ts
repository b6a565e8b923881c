import type { CheckpointDraft, CheckpointInfo } from "../../core/engine.js";
import { isApexError } from "../../core/errors.js";
import type { CheckpointService } from "../../core/session/checkpoints.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { checkpointInfo, createCheckpoint, restoreCheckpoint } from "./checkpoints.js";
import { resolveCheckpoint } from "./refs.js";
import type { MemoryScope } from "./scope.js";

export interface CheckpointServiceOptions {
  /** The beforeCheckpoint waterfall, e.g. `(draft) => engine.waterfall("beforeCheckpoint", draft)`. */
  enrich?: (draft: CheckpointDraft) => Promise<CheckpointDraft>;
  /** The afterCheckpoint hook, e.g. `(info) => engine.fire("afterCheckpoint", info)`. */
  afterCheckpoint?: (info: CheckpointInfo) => Promise<void>;
  /** Memory covered by checkpoints: the plugin's `paths` option as `{ include: paths }`. */
  scope?: Partial<MemoryScope>;
}

/**
 * The checkpoint library as the session supervisor uses it (core/session/checkpoints.ts):
 * the interval timer's "write one now", the restore step of `apex start --continue`, and
 * finding the session of a checkpoint reference.
 */
export function createCheckpointService(store: Store, options: CheckpointServiceOptions = {}): CheckpointService {
  return {
    async create(request) {
      const { manifest } = await createCheckpoint(store, {
        sessionId: request.sessionId,
        trigger: request.trigger,
        description: request.description,
        ...(options.enrich ? { enrich: options.enrich } : {}),
        ...(options.scope ? { scope: options.scope } : {}),
      });
      const info = checkpointInfo(manifest);
      await options.afterCheckpoint?.(info);
      return info;
    },

    async restore(request) {
      let ref = request.checkpoint;
      if (ref === undefined) {
        try {
          ref = resolveCheckpoint(store, "latest", { sessionId: request.sessionId }).id;
        } catch (error) {
          if (isApexError(error) && error.code === "APEX_E_CHECKPOINT_NOT_FOUND") return undefined; // nothing saved yet
          throw error;
        }
      }
      const located = resolveCheckpoint(store, ref, { sessionId: request.sessionId });
      const result = await restoreCheckpoint(store, located.id, { targetSessionId: request.sessionId });
      const counts = (changes: { set: string[]; deleted: string[] }) => ({ set: changes.set.length, deleted: changes.deleted.length });
      const details: JsonValue = {
        id: located.id,
        session_id: located.sessionId,
        name: result.checkpoint.name,
        memory: counts(result.memory),
        tasks: counts(result.tasks),
        agents: counts(result.agents),
        revision: result.revision,
      };
      return { checkpoint: located.id, details };
    },

    async resolve(checkpoint) {
      try {
        const located = resolveCheckpoint(store, checkpoint);
        return { sessionId: located.sessionId, checkpoint: located.id };
      } catch (error) {
        if (isApexError(error) && (error.code === "APEX_E_CHECKPOINT_NOT_FOUND" || error.code === "APEX_E_NO_SESSION")) return undefined;
        throw error;
      }
    },
  };
}
