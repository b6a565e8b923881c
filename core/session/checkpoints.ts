import type { CheckpointDraft, CheckpointInfo } from "../engine.js";
import { ApexError } from "../errors.js";
import type { JsonValue, Store, WriteBatch } from "../store/store.js";

/**
 * Where the checkpoint library plugs into sessions.
 *
 * Hook-triggered checkpoints (onPause, beforeTask, afterMilestone, onError, beforeGit) need
 * nothing from here: the checkpoint plugin taps those hooks. What the supervisor cannot get
 * from a hook is (1) "write one now" for its interval timer, which stops while the session is
 * paused, (2) "restore this checkpoint" before `apex start --continue` starts fresh agents, and
 * (3) the control-socket methods that write checkpoints (`apex checkpoint create` while a
 * supervisor runs). The checkpoint code provides them by calling {@link provideCheckpointService}
 * with the supervisor's store (plugins get it as `apex.store`) while it is applied.
 */
export interface CheckpointService {
  /**
   * Writes a checkpoint of the session now (the interval timer calls it with trigger "interval").
   * Resolves to undefined when none was written (an interval checkpoint with nothing changed).
   */
  create(request: { sessionId: string; trigger: string; description: string; skipUnchanged?: boolean | "memory" }): Promise<CheckpointInfo | undefined>;
  /**
   * Restores the project memory, tasks and agent contexts of `sessionId` from a checkpoint
   * (`checkpoint` undefined: the session's latest). Runs in the supervisor, after the old
   * agents were reaped and before the fresh ones start; agents then get their restored
   * `/sessions/<sid>/agents/<name>.context` as APEX_RESUME_CONTEXT.
   *
   * With `force` (`apex start --force-recovery`), a damaged checkpoint is restored as far as it
   * still verifies and `details` lists exactly what was lost; without it, a checkpoint that does
   * not verify is refused before anything changes.
   */
  restore(request: { sessionId: string; checkpoint: string | undefined; force?: boolean; replacesOtherSession?: boolean | string }): Promise<RestoreOutcome | undefined>;
  /**
   * Runs before the session is claimed for `--continue`: pins down the checkpoint to restore
   * (the session's latest when none is named; undefined when it has none) and, unless
   * `force`, verifies it, so that a checkpoint that does not verify is refused before
   * anything changes.
   */
  prepare?(request: { sessionId: string; checkpoint: string | undefined; force?: boolean }): Promise<{ checkpoint: string | undefined }>;
  /**
   * Before another session (`nextSessionId`, undefined: a new one) takes the live memory: the
   * ended session that holds it gets its final state checkpointed (only when its memory changed
   * since its latest checkpoint), so that continuing it later restores its own last state.
   */
  saveFinalState?(nextSessionId: string | undefined): Promise<void>;
  /** Finds the session a checkpoint reference belongs to, for `--continue <CHECKPOINT>`. */
  resolve?(checkpoint: string): Promise<{ sessionId: string; checkpoint: string } | undefined>;
  /**
   * Seconds between interval checkpoints when the service sets its own (the checkpoint
   * plugin's `interval` option); undefined: `session.auto_checkpoint_interval`; 0: none.
   */
  readonly interval?: number | undefined;
  /**
   * Control-socket methods the supervisor serves on the service's behalf (for example
   * `checkpoint.create`), with the same names and params CLI commands use when no supervisor
   * runs and they call the method in their own process.
   */
  readonly methods?: Readonly<Record<string, (params: Record<string, unknown>) => unknown>>;
}

export interface RestoreOutcome {
  /** Id of the checkpoint restored. */
  checkpoint: string;
  /** What the restore did, as the service reports it (shown by `apex start --continue`). */
  details?: JsonValue;
}

/** What checkpoint code needs of the engine: the two checkpoint hooks, which plugins can tap but not fire. */
export interface CheckpointHookRunner {
  /** `check` tests each tap's draft: what it throws is said as that plugin's failure in beforeCheckpoint. */
  waterfall(name: "beforeCheckpoint", draft: CheckpointDraft, check?: (draft: CheckpointDraft) => void): Promise<CheckpointDraft>;
  fire(name: "afterCheckpoint", info: CheckpointInfo): Promise<void>;
}

/** Records a checkpoint in its session's audit trail, in the write transaction of the checkpoint itself. */
export type CheckpointRecorder = (batch: WriteBatch, info: CheckpointInfo) => void;

/**
 * Each store's checkpoint service, engine and recorder, shared by every copy of this module in the
 * process through a registered symbol (as ApexError is recognised across copies): the supervisor
 * runs from a bundle, and a plugin that imports dist/'s copy provides a service the bundle finds.
 */
interface Registry {
  services: WeakMap<Store, CheckpointService>;
  engines: WeakMap<Store, CheckpointHookRunner>;
  recorders: WeakMap<Store, CheckpointRecorder>;
}
const shared = globalThis as { [key: symbol]: Registry | undefined };
const { services, engines, recorders } = (shared[Symbol.for("apex-sessions.checkpoint-registry")] ??= { services: new WeakMap(), engines: new WeakMap(), recorders: new WeakMap() });

/**
 * Tells checkpoint code which engine runs beforeCheckpoint and afterCheckpoint for checkpoints
 * of `store` (the supervisor binds its engine, CLI commands that write checkpoints bind theirs),
 * and what records each one in the audit trail as it is written (checkpointRecorderFor).
 */
export function bindCheckpointHooks(store: Store, engine: CheckpointHookRunner, record?: CheckpointRecorder): void {
  engines.set(store, engine);
  if (record) recorders.set(store, record);
  else recorders.delete(store);
}

export function checkpointRecorderFor(store: Store): CheckpointRecorder | undefined { return recorders.get(store); }

export function checkpointHooksFor(store: Store): CheckpointHookRunner | undefined {
  return engines.get(store);
}

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
  /** replacesOtherSession: live memory is another session's (its id when known), so it is not saved as this one's state before the restore. */
  options: { force?: boolean; replacesOtherSession?: boolean | string } = {},
): Promise<RestoreOutcome | undefined> {
  const service = checkpointServiceFor(store);
  if (!service) {
    if (checkpoint === undefined && !options.force) return undefined;
    throw noCheckpointService(checkpoint ?? "latest");
  }
  return service.restore({ sessionId, checkpoint, ...(options.force ? { force: true } : {}), ...(options.replacesOtherSession ? { replacesOtherSession: options.replacesOtherSession } : {}) });
}

/** The refusal when a checkpoint is asked for but no checkpoint plugin provides a service. */
export function noCheckpointService(checkpoint: string): ApexError {
  return new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `Cannot restore checkpoint ${checkpoint}: no checkpoint plugin is enabled.`, {
    hint: "Enable the checkpoint plugin in apex.config.yaml, or continue with `apex start --continue last`.",
  });
}
