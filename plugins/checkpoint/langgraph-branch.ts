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
import type { JsonValue, Store } from "../../core/store/store.js";
import { checkpointKey, deletedPath, headPath, heldSteps, indexDir, segmentName, threadLabel, writesDir } from "./langgraph-index.js";
import { isRecord, type CheckpointManifest } from "./manifest.js";

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
  store.batchSync((batch) => {
    for (const { threadId, ns, checkpointId, index } of steps) {
      if (!index) continue;
      batch.set(checkpointKey(target.session_id, threadId, ns, checkpointId), { ...index, apex_id: target.id, sequence: target.sequence });
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
