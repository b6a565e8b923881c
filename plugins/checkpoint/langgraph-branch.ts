/**
 * The LangGraph threads a branch session starts with (`apex session branch`): those its
 * checkpoint's memory holds. `/langgraph/<thread>/<namespace>` of a checkpoint's memory records
 * which LangGraph checkpoint each thread namespace was at when it was taken (langgraph.ts), and
 * the branch's first checkpoint names that same memory. So each of them becomes a step of the
 * branch's own index, held by the branch's first checkpoint, and its head: a graph run in the
 * branch resumes its threads from where they were at the branch point (getTuple), its first
 * put derives from there, and nothing of the parent's index is read again (the parent's
 * retention, deleteThread or later steps change nothing in the branch).
 *
 * Pending writes come along as they were at the branch point: those written before its
 * checkpoint was taken. Each write records the last checkpoint sequence of its session when it
 * was written (`after`); one written after the branch point (a human's answer to an interrupt,
 * a task that completed since) is the parent's later history, which the branch is made to run
 * otherwise. Writes of stores written before carry no mark and come along.
 */
import { ApexError } from "../../core/errors.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { LangGraphStore, type ChannelColumns, type HistoryStep } from "./langgraph.js";
import { checkpointKey, deletedPath, headPath, heldSteps, indexDir, segmentName, threadLabel, writesDir } from "./langgraph-index.js";
import { isRecord, type CheckpointManifest } from "./manifest.js";
import { DEFAULT_SCOPE } from "./scope.js";

export interface InheritedThreads {
  /** Thread namespaces carried (as threadLabel shows them). */
  carried: string[];
  /**
   * Thread namespaces the branch point's memory holds whose step is no longer indexed in its
   * session (retention or `checkpoint delete` removed that step's checkpoint): their channel
   * values are in the branch's memory, but a graph cannot resume them (the rest of the LangGraph
   * checkpoint, its versions seen, went with the step).
   */
  missing: string[];
}

/** A thread namespace's step as a checkpoint's memory records it, with its index record in that checkpoint's session (undefined: no longer indexed). */
export interface ThreadStep {
  threadId: string;
  ns: string;
  checkpointId: string;
  index: Record<string, JsonValue> | undefined;
}

/** The thread namespaces a checkpoint's memory holds (only `units`, `/langgraph/<thread>/<ns>` paths, when given), each at its step. */
export function threadSteps(store: Store, checkpoint: Pick<CheckpointManifest, "session_id" | "memory">, units?: ReadonlySet<string>): ThreadStep[] {
  return heldSteps(store, checkpoint.memory.root, units).map(({ threadId, ns, checkpointId }) => {
    const index = store.get(checkpointKey(checkpoint.session_id, threadId, ns, checkpointId));
    return { threadId, ns, checkpointId, index: isRecord(index) ? index : undefined };
  });
}

/**
 * Makes each step (indexed) a step of `target`'s session held by `target` (a checkpoint whose
 * memory holds its channels), and that thread namespace's head there, with its pending writes
 * written before `source` (a checkpoint of their session) was taken, marked as written before
 * `target` (`after`). Call in the write transaction that wrote `target`.
 */
export function carrySteps(store: Store, steps: readonly ThreadStep[], source: Pick<CheckpointManifest, "session_id" | "sequence">, target: Pick<CheckpointManifest, "session_id" | "id" | "sequence">, actor: string): void {
  if (steps.length === 0) return;
  const histories = steps.map((step) => (step.index ? deltaChannelHistory(store, source, step.threadId, step.ns, step.index) : undefined));
  store.batchSync((batch) => {
    for (const [at, { threadId, ns, checkpointId, index }] of steps.entries()) {
      if (!index) continue;
      const history = histories[at];
      batch.set(checkpointKey(target.session_id, threadId, ns, checkpointId), { ...index, apex_id: target.id, sequence: target.sequence, ...(history ? { history: history as unknown as JsonValue } : {}) });
      batch.set(headPath(target.session_id, threadId, ns), { apex_id: target.id, checkpoint_id: checkpointId });
      const from = writesDir(source.session_id, threadId, ns, checkpointId);
      const to = writesDir(target.session_id, threadId, ns, checkpointId);
      for (const { path, value } of store.tree(from)) {
        if (path === from || !isRecord(value) || typeof value.task_id !== "string") continue;
        // Written after the source checkpoint was taken: not carried.
        if (typeof value.after === "number" && value.after >= source.sequence) continue;
        batch.set(`${to}${path.slice(from.length)}`, { ...value, after: target.sequence - 1 });
      }
    }
  }, actor);
}

/**
 * What a step carried out of `source`'s session needs of the steps before it to rebuild its delta
 * channels (`DeltaChannel`, `MessagesDeltaValue`: LangGraph 1.7 and later), which the carrying
 * session does not have: a graph resuming in a branch from the step it was at walks back through
 * the step's parents (getDeltaChannelHistory), and found none there, so the channel (a chat's
 * messages) came back empty, or with the steps after its last snapshot lost. Each parent's
 * pending writes to those channels (made before `source` was taken), back to the step that holds
 * each one's value (its seed); a parent itself carried brings its own history along (a branch of
 * a branch). Copied, as the step is: what the source session deletes after (its steps, the
 * thread) changes nothing in the carrying session. The delta channels are those the step's
 * metadata names (`counters_since_delta_snapshot`); undefined when there are none, or its
 * metadata is not JSON (nothing tells them).
 */
function deltaChannelHistory(store: Store, source: Pick<CheckpointManifest, "session_id" | "sequence">, threadId: string, ns: string, index: Record<string, JsonValue>): HistoryStep[] | undefined {
  const counters = isRecord(index.metadata_json) ? index.metadata_json.counters_since_delta_snapshot : undefined;
  const remaining = new Set(isRecord(counters) ? Object.keys(counters) : []);
  if (remaining.size === 0) return undefined;
  const reader = historyReader(store);
  const steps: HistoryStep[] = [];
  let current: { parent_id?: unknown; history?: unknown } = index;
  while (remaining.size > 0) {
    if (Array.isArray(current.history)) {
      // Carried into the source itself: the history it came with.
      for (const step of current.history as HistoryStep[]) {
        if (remaining.size === 0) break;
        steps.push(narrowed(step, remaining, undefined));
      }
      break;
    }
    if (typeof current.parent_id !== "string") break;
    const parent = reader.getTuple(source.session_id, threadId, ns, current.parent_id, true);
    if (!parent?.columns) break;
    const step = narrowed({ checkpoint_id: parent.checkpoint_id, writes: parent.writes, seed: parent.columns }, remaining, source.sequence);
    // A step that wrote none of them tells the rebuild nothing (a channel updated rarely goes up to 5,000 steps between snapshots).
    if (step.writes.length > 0 || step.seed) steps.push(step);
    current = parent;
  }
  return steps;
}

/** A history step with only the writes to and values of `remaining` (those it seeds leave it); writes made at or after `before` (a sequence) left out. */
function narrowed(step: HistoryStep, remaining: Set<string>, before: number | undefined): HistoryStep {
  const writes = step.writes.filter((write) => remaining.has(write.channel) && !(before !== undefined && typeof write.after === "number" && write.after >= before));
  const seed: ChannelColumns = { names: [], versions: [], values: [], splits: [] };
  const columns = step.seed;
  if (columns) {
    for (let i = 0; i < columns.names.length; i++) {
      const name = columns.names[i]!;
      if (!remaining.has(name) || ((columns.values[i] ?? null) === null && (columns.splits[i] ?? null) === null)) continue;
      seed.names.push(name);
      seed.versions.push(columns.versions[i]!);
      seed.values.push(columns.values[i] ?? null);
      seed.splits.push(columns.splits[i] ?? null);
    }
  }
  for (const name of seed.names) remaining.delete(name);
  return { checkpoint_id: step.checkpoint_id, writes, ...(seed.names.length > 0 ? { seed } : {}) };
}

function historyReader(store: Store): LangGraphStore {
  return new LangGraphStore(store, {
    scope: { include: [...DEFAULT_SCOPE.include], exclude: [...DEFAULT_SCOPE.exclude] },
    serialize: () => Promise.reject(new ApexError("APEX_E_INTERNAL", "This LangGraph store only reads.")),
  });
}

/**
 * Removes thread namespaces from `sessionId`'s records as deleteThread removes a thread (the
 * caller removed their channels from the memory): each one's index records with their pending
 * writes, and its head; the thread's deleted mark (`deletedPath`) is raised to the greatest
 * checkpoint id removed, so that a write for one of those is refused, as after deleteThread.
 * What a merge does in the destination for each thread namespace the source deleted that the
 * destination did not step since the merge base. Call in the write transaction.
 */
export function dropThreads(store: Store, sessionId: string, threads: ReadonlyArray<{ threadId: string; ns: string }>, actor: string): void {
  if (threads.length === 0) return;
  const latest = new Map<string, string>();
  for (const { threadId, ns } of threads) {
    const dir = indexDir(sessionId, threadId, ns);
    for (const key of store.keysBelow(dir)) {
      const [kind, id] = key.slice(dir.length + 1).split("/");
      if ((kind === "checkpoints" || kind === "writes") && id !== undefined && segmentName(id) > (latest.get(threadId) ?? "")) latest.set(threadId, segmentName(id));
    }
  }
  store.batchSync((batch) => {
    for (const { threadId, ns } of threads) {
      batch.deleteTree(indexDir(sessionId, threadId, ns));
      batch.delete(headPath(sessionId, threadId, ns));
    }
    for (const [threadId, id] of latest) {
      const before = batch.get(deletedPath(sessionId, threadId));
      if (!(isRecord(before) && typeof before.checkpoint_id === "string" && before.checkpoint_id >= id)) batch.set(deletedPath(sessionId, threadId), { checkpoint_id: id });
    }
  }, actor);
}

/** Writes the branch's index records, heads and pending writes; call in the branch's write transaction. */
export function inheritLangGraphThreads(store: Store, source: CheckpointManifest, branch: CheckpointManifest, actor: string): InheritedThreads {
  const steps = threadSteps(store, source);
  carrySteps(store, steps, source, branch, actor);
  return { carried: steps.filter((step) => step.index).map((step) => threadLabel(step.threadId, step.ns)), missing: steps.filter((step) => !step.index).map((step) => threadLabel(step.threadId, step.ns)) };
}
