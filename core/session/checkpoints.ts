import type { CheckpointInfo } from "../engine.js";
import type { JsonValue, Store } from "../store/store.js";

/**
 * Where the checkpoint library plugs into sessions.
 *
 * Hook-triggered checkpoints (onPause, beforeTask, afterMilestone, onError, beforeGit) need
 * nothing from here: the checkpoint plugin taps those hooks. What the supervisor cannot get
 * from a hook is (1) "write one now" for its interval timer, which stops while the session is
 * paused, and (2) "restore this checkpoint" before `apex start --continue` starts fresh agents.
 * The checkpoint code provides both by calling {@link provideCheckpointService} with the
 * supervisor's store (plugins get it as `apex.store`) while it is applied.
 */
export interface CheckpointService {
  /** Writes a checkpoint of the session now (the interval timer calls it with trigger "interval"). */
  create(request: { sessionId: string; trigger: string; description: string }): Promise<CheckpointInfo | undefined>;
  /**
   * Restores the project memory, tasks and agent contexts of `sessionId` from a checkpoint
   * (`checkpoint` undefined: the session's latest). Runs in the supervisor, after the old
   * agents were reaped and before the fresh ones start; agents then get their restored
   * `/sessions/<sid>/agents/<name>.context` as APEX_RESUME_CONTEXT.
   */
  restore(request: { sessionId: string; checkpoint: string | undefined }): Promise<{ checkpoint: string; details?: JsonValue } | undefined>;
  /** Finds the session a checkpoint id (or unique prefix) belongs to, for `--continue <CHECKPOINT>`. */
  resolve?(checkpoint: string): Promise<{ sessionId: string; checkpoint: string } | undefined>;
}

const services = new WeakMap<Store, CheckpointService>();

export function provideCheckpointService(store: Store, service: CheckpointService): void {
  services.set(store, service);
}

export function checkpointServiceFor(store: Store): CheckpointService | undefined {
  return services.get(store);
}

/**
 * The restore step of `apex start --continue`: restores from `checkpoint` when the
 * checkpoint library is available. Without it, the session continues from its current
 * memory and the agents' last reported contexts; asking for a specific checkpoint then fails.
 */
export async function restoreSessionFromCheckpoint(
  store: Store,
  sessionId: string,
  checkpoint: string | undefined,
): Promise<{ checkpoint: string; details?: JsonValue } | undefined> {
  const service = checkpointServiceFor(store);
  if (!service) {
    if (checkpoint === undefined) return undefined;
    const { ApexError } = await import("../errors.js");
    throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `Cannot restore checkpoint ${checkpoint}: no checkpoint plugin is enabled.`, {
      hint: "Enable the checkpoint plugin in apex.config.yaml, or continue with `apex start --continue last`.",
    });
  }
  return service.restore({ sessionId, checkpoint });
}
