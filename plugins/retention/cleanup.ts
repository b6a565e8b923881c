import { isApexError } from "../../core/errors.js";
import { appendEvent } from "../../core/session/service.js";
import type { Store } from "../../core/store/store.js";
import { checkpointHolds, deleteCheckpoint, sweepFailure, sweepUnreferenced, type SweepFailure, type SweepResult } from "../checkpoint/checkpoints.js";
import { langGraphHeads } from "../checkpoint/langgraph-index.js";
import { describePolicy } from "./options.js";
import { applyPolicy, RETENTION_TIME_ZONE, type PolicyResult, type RetentionPolicy } from "./policy.js";
import { branchPoints, findKnownSession, knownSessions, mergePoints, restoreBases, sessionCheckpoints, type CheckpointRow, type SessionInfo } from "./sessions.js";

/** The actor retention's writes are logged under, in the revision log and the audit trail. */
export const RETENTION_ACTOR = "plugin:retention";
/** The audit event recorded for every checkpoint retention deletes. */
export const DELETE_EVENT = "retention.delete";

/** A checkpoint with what the policy needs to know about it. */
export interface PlannedCheckpoint extends CheckpointRow {
  /** Milliseconds since the epoch (NaN when created_at does not parse). */
  time: number;
  /** Why it must survive whatever the rules say ("branch <sid>"); pinned and latest are the policy's own. */
  protected: string[];
}

export interface SessionPlan {
  session: SessionInfo;
  result: PolicyResult<PlannedCheckpoint>;
}

export interface RetentionPlan {
  policy: RetentionPolicy;
  timeZone: typeof RETENTION_TIME_ZONE;
  sessions: SessionPlan[];
}

export interface PlanOptions {
  /** One session (id or unique prefix); default every session. */
  sessionId?: string | undefined;
  /** Current time (ms) for the keep_within clock check; default Date.now(). */
  now?: number | undefined;
}

/**
 * What the policy keeps and removes in each session, read from the store; writes nothing.
 * Per session: pinned checkpoints, the latest one, manual and replaced-state ones (unless the
 * policy has rules for them), those another session branches from, merge checkpoints and the
 * checkpoints merged in (the graph merges find their base in), the one a session was last
 * restored from, those a restore in this process is reading, and the latest of each LangGraph
 * thread are protected.
 */
export function planRetention(store: Store, policy: RetentionPolicy, options: PlanOptions = {}): RetentionPlan {
  const all = knownSessions(store);
  const targets = options.sessionId === undefined ? all : [findKnownSession(all, options.sessionId, store)];
  const branches = branchPoints(store, all);
  const bases = restoreBases(store, all);
  const merges = mergePoints(store, all);
  const held = checkpointHolds(store);
  const now = options.now ?? Date.now();
  const sessions: SessionPlan[] = [];
  for (const session of targets) {
    const rows = sessionCheckpoints(store, session.sessionId);
    const ids = new Set(rows.map((row) => row.id));
    const heads = langGraphHeads(store, session.sessionId, (id) => ids.has(id));
    const items: PlannedCheckpoint[] = rows.map((row) => ({
      ...row,
      time: Date.parse(row.createdAt),
      protected: [...(branches.get(row.id) ?? []), ...(merges.get(row.id) ?? []), ...(bases.get(row.id) ?? []), ...(held.get(row.id) ?? []).map((reason) => `in use: ${reason}`), ...(heads.get(row.id) ?? [])],
    }));
    if (items.length === 0 && options.sessionId === undefined) continue;
    sessions.push({ session, result: applyPolicy(items, policy, { now }) });
  }
  return { policy, timeZone: RETENTION_TIME_ZONE, sessions };
}

/** Why a removed checkpoint goes, in a few words. */
export function removalReason(decision: { removedBy?: "rules" | "cap"; reasons: string[] }, policy: RetentionPolicy): string {
  if (decision.removedBy === "cap") {
    const rules = decision.reasons.filter((reason) => reason !== "no rules");
    const wouldKeep = rules.length > 0 ? ` (kept by ${rules.join(", ")})` : "";
    return `over max_checkpoints ${policy.maxCheckpoints}${wouldKeep}`;
  }
  return "no rule keeps it";
}

export interface DeletedCheckpoint {
  sessionId: string;
  id: string;
  name: string;
  sequence: number;
  createdAt: string;
  /** The checkpoint's trigger (its rules were the ones applied). */
  trigger: string;
  reason: string;
}

export interface SkippedCheckpoint extends DeletedCheckpoint {
  error: { code: string; message: string };
}

export interface RetentionOutcome {
  plan: RetentionPlan;
  deleted: DeletedCheckpoint[];
  /** Removals that did not happen (pinned or changed meanwhile); nothing else was affected. */
  skipped: SkippedCheckpoint[];
  /**
   * Checkpoints this run would have removed that another run removed first (the supervisor's
   * cleanup after a checkpoint, another `session cleanup`): gone, as the policy asks, and in the
   * audit trail by that run.
   */
  removedMeanwhile: DeletedCheckpoint[];
  /** The sweep's result, when it ran. */
  sweep: SweepResult | undefined;
  /** Why the sweep did not run or failed (e.g. damaged tree nodes: repair first). Deletions stand. */
  sweepError: SweepFailure | undefined;
}

/**
 * A dry run of applyRetention: the plan, the checkpoints it would delete, and what the sweep
 * after those deletions would remove (the same mark and sweep, counting them as gone). Writes
 * nothing. The sweep's dry run reads in the same synchronous run as the plan.
 */
export async function previewRetention(store: Store, policy: RetentionPolicy, options: PlanOptions = {}): Promise<RetentionOutcome> {
  const plan = planRetention(store, policy, options);
  const deleted: DeletedCheckpoint[] = [];
  for (const { result } of plan.sessions) {
    for (const decision of result.decisions) if (!decision.keep) deleted.push(removalOf(decision, policy));
  }
  let sweep: SweepResult | undefined;
  let sweepError: RetentionOutcome["sweepError"];
  try {
    sweep = await sweepUnreferenced(store, { dryRun: true, without: deleted });
  } catch (error) {
    if (!isApexError(error)) throw error;
    sweepError = sweepFailure(error);
  }
  return { plan, deleted, skipped: [], removedMeanwhile: [], sweep, sweepError };
}

function removalOf(decision: PolicyResult<PlannedCheckpoint>["decisions"][number], policy: RetentionPolicy): DeletedCheckpoint {
  const { item } = decision;
  return { sessionId: item.sessionId, id: item.id, name: item.name, sequence: item.sequence, createdAt: item.createdAt, trigger: item.trigger, reason: removalReason(decision, policy) };
}

export interface ApplyRetentionOptions extends PlanOptions {
  /**
   * When to sweep unreferenced objects: "always" (a cleanup command: also collects what
   * earlier deletions left behind), "if-deleted" (after a checkpoint) or "never".
   */
  sweep?: "always" | "if-deleted" | "never";
  /** Recorded in each audit event: what ran the policy ("auto", "command"). */
  run?: string;
}

/**
 * Applies the policy: deletes what it removes, records each deletion in the session's audit
 * trail (/sessions/<sid>/events, type `retention.delete`), then sweeps the values and tree
 * nodes no remaining checkpoint references.
 *
 * The plan is made and every deletion started in one synchronous run: no other write in
 * this process (a checkpoint being created, a pin) can come between reading the state and
 * acting on it. Each deletion is its own transaction (the checkpoint library's), with its
 * audit event.
 */
export async function applyRetention(store: Store, policy: RetentionPolicy, options: ApplyRetentionOptions = {}): Promise<RetentionOutcome> {
  const plan = planRetention(store, policy, options);
  const rules = describePolicy(policy);
  const run = options.run ?? "command";
  const pending: Array<Promise<DeletedCheckpoint | SkippedCheckpoint | { meanwhile: DeletedCheckpoint }>> = [];
  for (const { result } of plan.sessions) {
    for (const decision of result.decisions) {
      if (decision.keep) continue;
      const { item } = decision;
      const removal = removalOf(decision, policy);
      // Started now, not awaited one by one: deleteCheckpoint's transaction runs before its first await.
      // The audit event is written in the deletion's transaction: recorded after all of them, the
      // deletions a killed cleanup had made were never in the audit trail.
      const record = () => recordDeletion(store, removal, rules, run);
      pending.push(
        deleteCheckpoint(store, item.id, { actor: RETENTION_ACTOR, record }).then(
          () => removal,
          (error: unknown) => {
            if (!isApexError(error) || !["APEX_E_CHECKPOINT_NOT_FOUND", "APEX_E_CONFLICT"].includes(error.code)) throw error;
            // Gone already: another cleanup removed it since the plan was read. Not a removal that
            // failed (each was listed as "not removed: No checkpoint id starts with …").
            if (error.code === "APEX_E_CHECKPOINT_NOT_FOUND") return { meanwhile: removal };
            return { ...removal, error: { code: error.code, message: error.message } };
          },
        ),
      );
    }
  }
  const settled = await Promise.allSettled(pending);
  const done = settled.flatMap((entry) => (entry.status === "fulfilled" ? [entry.value] : []));
  const removedMeanwhile = done.flatMap((entry) => ("meanwhile" in entry ? [entry.meanwhile] : []));
  const deleted = done.filter((entry): entry is DeletedCheckpoint => !("error" in entry) && !("meanwhile" in entry));
  const skipped = done.filter((entry): entry is SkippedCheckpoint => "error" in entry);
  const failure = settled.find((entry): entry is PromiseRejectedResult => entry.status === "rejected");
  if (failure) throw failure.reason;

  let sweep: SweepResult | undefined;
  let sweepError: RetentionOutcome["sweepError"];
  const mode = options.sweep ?? "always";
  if (mode === "always" || (mode === "if-deleted" && deleted.length > 0)) {
    try {
      sweep = await sweepUnreferenced(store);
    } catch (error) {
      if (!isApexError(error)) throw error;
      sweepError = sweepFailure(error);
    }
  }
  return { plan, deleted, skipped, removedMeanwhile, sweep, sweepError };
}

/** The audit event of one deleted checkpoint; called inside the deletion's transaction. */
function recordDeletion(store: Store, entry: DeletedCheckpoint, rules: string, run: string): void {
  store.batchSync((batch) => {
    appendEvent(batch, entry.sessionId, DELETE_EVENT, RETENTION_ACTOR, {
      checkpoint: entry.id,
      name: entry.name,
      sequence: entry.sequence,
      created_at: entry.createdAt,
      trigger: entry.trigger,
      reason: entry.reason,
      policy: rules,
      run,
    });
  }, RETENTION_ACTOR);
}
