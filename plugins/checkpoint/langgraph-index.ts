/**
 * Where LangGraph threads are kept in a store (the index, the heads, the channels' memory
 * directory) and what removing one of their APEX checkpoints removes with it: shared by the
 * store side (langgraph.ts) and the checkpoint library's delete (checkpoints.ts), which this
 * module must not import (langgraph.ts imports checkpoints.ts).
 */
import { ApexError } from "../../core/errors.js";
import { subtreeRange } from "../../core/store/paths.js";
import type { Store } from "../../core/store/store.js";
import { isRecord, manifestPath } from "./manifest.js";
import { Catalog } from "./catalog.js";
import { ObjectStore, collectEntries, lookupEntry, type DirEntry } from "./engine/objects.js";

export const LANGGRAPH_TRIGGER = "langgraph";
export const LANGGRAPH_MEMORY_ROOT = "/langgraph";

/**
 * A LangGraph name (thread id, namespace, channel, key) as one path segment: percent-encoded
 * (so `/` and control characters cannot split or break a path), `~` for the empty name, and
 * `.`/`..` encoded (segments APEX paths refuse).
 */
export function nameSegment(name: string): string {
  if (name === "") return "~";
  // Characters encodeURIComponent keeps (but "~"): most names are already their segment (a put writes 100s).
  if (PLAIN_SEGMENT.test(name)) return name === "." ? "%2E" : name === ".." ? "%2E%2E" : name;
  let encoded: string;
  try {
    encoded = encodeURIComponent(name).replace(/~/g, "%7E");
  } catch {
    throw new ApexError("APEX_E_BAD_INPUT", `The LangGraph name ${JSON.stringify(name)} is not valid Unicode (it holds a lone surrogate).`, {
      hint: "Thread ids, namespaces, channel names and keys must be well-formed strings. Nothing was written.",
    });
  }
  return encoded === "." ? "%2E" : encoded === ".." ? "%2E%2E" : encoded;
}

const PLAIN_SEGMENT = /^[A-Za-z0-9\-_.!*'()]+$/;

export function segmentName(segment: string): string {
  if (segment === "~") return "";
  // Most names need no decoding (a 10k-channel read decodes 10k names).
  return segment.includes("%") ? decodeURIComponent(segment) : segment;
}

export function memoryDir(threadId: string, ns: string): string {
  return `${LANGGRAPH_MEMORY_ROOT}/${nameSegment(threadId)}/${nameSegment(ns)}`;
}

/**
 * `/sessions/<sid>/langgraph-heads/<thread>/<ns>` (encoded segments): `{apex_id, checkpoint_id}`,
 * the thread namespace's latest checkpoint (the greatest id: the one getTuple resumes from) and
 * the APEX checkpoint holding it, which retention keeps. One record per thread namespace, so a
 * put writes its own (not a record of every thread's) and deleteThread removes exactly the
 * thread's (its segment is its own: thread "a/b" is not thread "a" namespace "b").
 *
 * Stores written before kept one record at `/sessions/<sid>/langgraph-heads` itself, keyed
 * `<thread>` or `<thread>/<ns>` unencoded (ambiguous); it is still read, and the session's first
 * LangGraph write replaces it by the per-namespace records, derived from the index.
 */
export function headsPath(sessionId: string): string {
  return `/sessions/${sessionId}/langgraph-heads`;
}

export function headPath(sessionId: string, threadId: string, ns: string): string {
  return `${headsPath(sessionId)}/${nameSegment(threadId)}/${nameSegment(ns)}`;
}

/**
 * APEX checkpoint id -> why retention must keep it ("langgraph thread <id>"): the latest
 * checkpoint of each LangGraph thread namespace of the session, so that a thread whose last
 * step is older than other threads' steps still resumes from where it stopped. One range read;
 * with `stored` (whether an APEX checkpoint of the session is stored), a head naming one that
 * is not is looked up in the index.
 */
export function langGraphHeads(store: Store, sessionId: string, stored?: (apexId: string) => boolean): Map<string, string[]> {
  const heads = new Map<string, string[]>();
  const add = (id: string, reason: string) => {
    const reasons = heads.get(id) ?? [];
    if (!reasons.includes(reason)) heads.set(id, [...reasons, reason]);
  };
  const dir = headsPath(sessionId);
  // Read whole before the reads below: reads made while the tree's cursor is open failed on Node 22 with
  // LMDB's MDB_BAD_TXN ("Attempting to setup locks after open") in a read-only store beside a writable one.
  for (const { path, value } of [...store.tree(dir)]) {
    if (path === dir) {
      // The record of stores written before: `<thread>[/<ns>]` -> APEX checkpoint id.
      if (isRecord(value)) for (const [where, id] of Object.entries(value)) if (typeof id === "string") add(id, `langgraph thread ${where}`);
      continue;
    }
    const segments = path.slice(dir.length + 1).split("/");
    if (segments.length !== 2 || !isRecord(value) || typeof value.apex_id !== "string") continue;
    const [threadId, ns] = [segmentName(segments[0]!), segmentName(segments[1]!)];
    let apexId: string | undefined = value.apex_id;
    let checkpointId = typeof value.checkpoint_id === "string" ? value.checkpoint_id : undefined;
    if (stored && !stored(apexId)) {
      // The head's checkpoint is gone (removed by repair, or by the delete of an APEX that left
      // the head): the thread resumes from the greatest id still stored (getTuple), kept instead.
      apexId = undefined;
      for (const id of checkpointIds(store, sessionId, threadId, ns)) {
        apexId = storedIndex(store, sessionId, threadId, ns, id)?.apex_id;
        checkpointId = id;
        if (apexId !== undefined) break;
      }
      if (apexId === undefined) continue;
    }
    const label = threadLabel(threadId, ns);
    add(apexId, `langgraph thread ${label}`);
    if (checkpointId === undefined) continue;
    for (const step of deltaHistory(store, sessionId, threadId, ns, checkpointId)) if (!stored || stored(step)) add(step, `langgraph thread ${label}: delta channel history`);
  }
  return heads;
}

/**
 * The APEX checkpoints of the steps before a thread namespace's head that LangGraph reads to
 * rebuild the head's delta channels (`DeltaChannel`, `MessagesDeltaValue`: LangGraph 1.7 and
 * later). Such a channel is not in a step's `channel_values`, except as a snapshot now and then:
 * a graph resuming from the head walks back through its parents (getDeltaChannelHistory), taking
 * each step's pending writes to the channel, up to the first step holding its value; a step
 * missing on the way ends the walk, and the channel was rebuilt from the writes after it only.
 * Retention, keeping each head alone, so cut a thread's message history to its last few steps,
 * and the next run went on from that. The step's metadata names its delta channels
 * (`counters_since_delta_snapshot`); metadata APEX cannot read (a serializer that writes no
 * JSON) does not tell, and every step before the head is kept. Ids from the head's parent back.
 */
export function deltaHistory(store: Store, sessionId: string, threadId: string, ns: string, checkpointId: string): string[] {
  const head = store.get(checkpointKey(sessionId, threadId, ns, checkpointId));
  if (!isRecord(head)) return [];
  let wanted: Set<string> | undefined;
  if (head.metadata_json !== undefined) {
    const counters = isRecord(head.metadata_json) ? head.metadata_json.counters_since_delta_snapshot : undefined;
    wanted = new Set(isRecord(counters) ? Object.keys(counters) : []);
  }
  const view = ObjectStore.of(store).view();
  const channels = memoryDir(threadId, ns).slice(1).split("/");
  /** The delta channels whose value the step holds (a snapshot): the walk stops there for them. */
  const settle = (step: Record<string, unknown>) => {
    if (!wanted || wanted.size === 0 || typeof step.sequence !== "number") return;
    const manifest = store.get(manifestPath(sessionId, step.sequence));
    if (!isRecord(manifest) || manifest.id !== step.apex_id || !isRecord(manifest.memory)) return;
    const root = typeof manifest.memory.root === "string" ? manifest.memory.root : null;
    for (const channel of wanted) {
      try {
        // A channel's record is `{v}` for a version without a value (how a delta channel is kept between its snapshots).
        const entry = lookupEntry(view, root, [...channels, nameSegment(channel)]);
        const record = entry?.value ? view.readValue(entry.value) : undefined;
        if (entry?.tree || (isRecord(record) && (record.t !== undefined || record.split === true))) wanted.delete(channel);
      } catch {
        // a damaged tree tells nothing: the walk goes on
      }
    }
  };
  settle(head);
  const steps: string[] = [];
  const seen = new Set<string>([checkpointId]);
  let parent = head.parent_id;
  while (typeof parent === "string" && !seen.has(parent) && (wanted === undefined || wanted.size > 0)) {
    seen.add(parent);
    const step = store.get(checkpointKey(sessionId, threadId, ns, parent));
    if (!isRecord(step) || typeof step.apex_id !== "string") break;
    steps.push(step.apex_id);
    settle(step);
    parent = step.parent_id;
  }
  return steps;
}

/**
 * How a label names a thread namespace, for people (a retention reason, a step's description):
 * `thread` or `thread/namespace`, each as it is when nothing in it can be read as the label's
 * own ("/" between them, a space before what follows), else quoted as JSON: thread "th/1" is
 * `"th/1"`, thread "th" namespace "1" is `th/1`, thread "a b" namespace "inner:7" `"a b"/inner:7`.
 */
export function threadLabel(threadId: string, ns: string): string {
  const thread = PLAIN_THREAD.test(threadId) ? threadId : JSON.stringify(threadId);
  return ns === "" ? thread : `${thread}/${PLAIN_NAMESPACE.test(ns) ? ns : JSON.stringify(ns)}`;
}

/** Thread ids shown unquoted: letters, digits, "-", "_" and "." (uuids, "review-42"). */
const PLAIN_THREAD = /^[A-Za-z0-9_.-]+$/;
/** Namespaces shown unquoted: those characters, and ":" and "|" of LangGraph's own (`node:<task id>|child:<task id>`). */
const PLAIN_NAMESPACE = /^[A-Za-z0-9_.:|-]+$/;

export function indexRoot(sessionId: string): string {
  return `/sessions/${sessionId}/langgraph`;
}

export function indexDir(sessionId: string, threadId: string, ns: string): string {
  return `${indexRoot(sessionId)}/${nameSegment(threadId)}/${nameSegment(ns)}`;
}

export function checkpointKey(sessionId: string, threadId: string, ns: string, checkpointId: string): string {
  return `${indexDir(sessionId, threadId, ns)}/checkpoints/${nameSegment(checkpointId)}`;
}

export function writesDir(sessionId: string, threadId: string, ns: string, checkpointId: string): string {
  return `${indexDir(sessionId, threadId, ns)}/writes/${nameSegment(checkpointId)}`;
}

/**
 * `/sessions/<sid>/langgraph-deleted/<thread>`: `{checkpoint_id}`, the greatest checkpoint id a
 * deleteThread removed from the thread (uuid6 ids: the latest). A write for a checkpoint not
 * stored is kept (LangGraph may send a checkpoint's writes before the checkpoint itself), unless
 * its id is one of those: it would be kept for a checkpoint that never comes back.
 */
export function deletedPath(sessionId: string, threadId: string): string {
  return `/sessions/${sessionId}/langgraph-deleted/${nameSegment(threadId)}`;
}


/**
 * The checkpoint ids of a thread's namespace, greatest first (uuid6 ids: the latest first), as
 * strings compare (as MemorySaver orders them, and `before` and the head compare them). The
 * index keys are the ids percent-encoded, which orders ids with other characters otherwise
 * ("a~" is `a%7E`, before "az"): those are sorted again.
 */
export function checkpointIds(store: Store, sessionId: string, threadId: string, ns: string): string[] {
  const dir = `${indexDir(sessionId, threadId, ns)}/checkpoints`;
  const range = subtreeRange(dir);
  const ids: string[] = [];
  let encoded = false;
  for (const key of store.keys({ start: range.end, end: range.start, reverse: true })) {
    const rest = String(key).slice(dir.length + 1);
    if (!rest || rest.includes("/") || String(key) === range.end) continue;
    if (rest.includes("%") || rest === "~") encoded = true;
    ids.push(segmentName(rest));
  }
  return encoded ? ids.sort((a, b) => (a < b ? 1 : a > b ? -1 : 0)) : ids;
}

/** A LangGraph checkpoint's index record, if its APEX checkpoint is stored (retention and `checkpoint delete` remove them). */
export function storedIndex(store: Store, sessionId: string, threadId: string, ns: string, checkpointId: string): { apex_id: string; sequence: number } | undefined {
  const index = store.get(checkpointKey(sessionId, threadId, ns, checkpointId));
  if (!isRecord(index) || typeof index.apex_id !== "string" || typeof index.sequence !== "number") return undefined;
  const manifest = store.get(manifestPath(sessionId, index.sequence));
  return isRecord(manifest) && manifest.id === index.apex_id ? (index as { apex_id: string; sequence: number }) : undefined;
}

/**
 * What a LangGraph step leaves in its session's records, removed with its APEX checkpoint (by
 * retention, `apex checkpoint delete`), in the caller's transaction before the manifest goes,
 * unless a later checkpoint that is not a step holds the same step (see below):
 *  - its index record and its pending writes, which no read reaches once the checkpoint is gone
 *    (they were kept for ever, and `list` walked them all); the writes of a checkpoint of
 *    format < 4 stay, since its children read their pending sends from them;
 *  - the thread namespace's head, when it named that checkpoint: it names the greatest id still
 *    stored instead (none left: it goes), so that getTuple resumes from there and retention
 *    keeps that one. It named a checkpoint no longer stored, and getTuple found no checkpoint
 *    at all (the graph started the thread afresh) while retention protected nothing of the thread.
 * A branch's first checkpoint holds a step of each thread the branch started with, a merge
 * checkpoint a step of each thread it took from the source (langgraph-branch.ts): those go with
 * it (a merge checkpoint deleted with --force left them, which validate then warned of). Steps
 * whose index record names another APEX checkpoint are left alone.
 *
 * A step that a later checkpoint that is not a step holds too (the first such after it: a
 * manual checkpoint, an interval one, a merge) does not go: its index record and a head naming it
 * move to that checkpoint, its writes stay (laterHolder). So a branch made at a checkpoint
 * retention keeps resumes the steps it holds (retention keeps a few steps of each trigger and
 * every manual checkpoint: a manual checkpoint taken during a run lost its threads' steps a few
 * steps later, and a branch made there started them afresh).
 */
export function forgetLangGraphStep(store: Store, checkpoint: { sessionId: string; sequence: number; id: string }, actor: string): void {
  let manifest: unknown;
  try {
    manifest = store.get(manifestPath(checkpoint.sessionId, checkpoint.sequence));
  } catch {
    return; // undecodable: nothing to tell which thread it was
  }
  if (!isRecord(manifest)) return;
  const { sessionId } = checkpoint;
  let steps: Array<{ threadId: string; ns: string; checkpointId: string }> = [];
  if (manifest.trigger === LANGGRAPH_TRIGGER) {
    // A step's checkpoint holds its own step's record only (no record moves to a step's, below).
    if (!isRecord(manifest.data) || !isRecord(manifest.data.langgraph)) return;
    const { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: id } = manifest.data.langgraph;
    if (typeof threadId !== "string" || typeof ns !== "string" || typeof id !== "string") return;
    steps = [{ threadId, ns, checkpointId: id }];
  } else {
    // Any other, the records of the steps its memory holds that a branch's first checkpoint or a
    // merge checkpoint carried (langgraph-branch.ts carrySteps), or that moved to it.
    const memory = isRecord(manifest.memory) && typeof manifest.memory.root === "string" ? manifest.memory.root : null;
    try {
      steps = heldSteps(store, memory);
    } catch {
      return; // a damaged tree (deleting a damaged checkpoint is allowed): nothing tells which steps
    }
  }
  for (const { threadId, ns, checkpointId } of steps) {
    const index = store.get(checkpointKey(sessionId, threadId, ns, checkpointId));
    if (!isRecord(index) || index.apex_id !== checkpoint.id) continue;
    forgetIndexed(store, sessionId, threadId, ns, checkpointId, checkpoint.id, actor, laterHolder(store, sessionId, checkpoint.sequence, threadId, ns, checkpointId));
  }
}

/** Stored checkpoints laterHolder reads the summaries of, at most, looking for one that is not a step. */
const HOLDER_SCAN = 1000;

/**
 * The session's first checkpoint after `sequence` that is not a LangGraph step (a manual one, an
 * interval one, a merge, …, which retention keeps on their own account), if its memory holds step
 * `id` of the thread namespace (no step of it came in between). The steps between hold it too,
 * but retention takes them by the dozen: the record moves once, to a checkpoint that stays.
 */
function laterHolder(store: Store, sessionId: string, sequence: number, threadId: string, ns: string, id: string): { id: string; sequence: number } | undefined {
  let scanned = 0;
  for (const summary of Catalog.of(store).summaries(sessionId, { start: sequence + 1 })) {
    if (++scanned > HOLDER_SCAN) return undefined;
    if (summary.trigger === LANGGRAPH_TRIGGER) continue;
    try {
      const view = ObjectStore.of(store).view();
      const record = lookupEntry(view, summary.memory_root, [LANGGRAPH_MEMORY_ROOT.slice(1), nameSegment(threadId), nameSegment(ns)]);
      return record?.value !== undefined && holdsStep(view, record.value, id) ? { id: summary.id, sequence: summary.sequence } : undefined;
    } catch {
      return undefined; // a damaged tree holds nothing to move to
    }
  }
  return undefined;
}

/** Whether a thread namespace's memory record (`{checkpoint, values}`) is that of step `id`. */
function holdsStep(view: ReturnType<ReturnType<typeof ObjectStore.of>["view"]>, value: string, id: string): boolean {
  try {
    const record = view.readValue(value);
    return isRecord(record) && record.checkpoint === id;
  } catch {
    return false;
  }
}

/** The LangGraph steps a memory tree holds: the checkpoint each thread namespace's record names (`/langgraph/<thread>/<ns>`). */
export function heldSteps(store: Store, root: string | null, units?: ReadonlySet<string>): Array<{ threadId: string; ns: string; checkpointId: string }> {
  if (root === null) return [];
  const view = ObjectStore.of(store).view();
  const steps: Array<{ threadId: string; ns: string; checkpointId: string }> = [];
  let top: DirEntry | undefined;
  try {
    top = lookupEntry(view, root, [LANGGRAPH_MEMORY_ROOT.slice(1)]);
  } catch {
    return steps; // damaged: validate's to report
  }
  if (!top?.tree) return steps;
  for (const thread of collectEntries(view, top.tree, [] as DirEntry[])) {
    if (!thread.tree) continue;
    for (const namespace of collectEntries(view, thread.tree, [] as DirEntry[])) {
      if (units && !units.has(`${LANGGRAPH_MEMORY_ROOT}/${thread.name}/${namespace.name}`)) continue;
      const record = namespace.value ? view.readValue(namespace.value) : undefined;
      if (!isRecord(record) || typeof record.checkpoint !== "string") continue;
      steps.push({ threadId: segmentName(thread.name), ns: segmentName(namespace.name), checkpointId: record.checkpoint });
    }
  }
  return steps;
}

/**
 * Removes the index record of step `id` if it names APEX checkpoint `apexId`, with its writes, and
 * moves the head off it (forgetLangGraphStep); with `moveTo` (a later checkpoint holding the same
 * step), the record and a head naming it name that one instead, and the writes stay.
 */
function forgetIndexed(store: Store, sessionId: string, threadId: string, ns: string, id: string, apexId: string, actor: string, moveTo?: { id: string; sequence: number }): void {
  const key = checkpointKey(sessionId, threadId, ns, id);
  const index = store.get(key);
  if (!isRecord(index) || index.apex_id !== apexId) return;
  const headAt = headPath(sessionId, threadId, ns);
  const head = store.get(headAt);
  const movesHead = isRecord(head) && head.apex_id === apexId;
  if (moveTo) {
    store.batchSync((batch) => {
      batch.set(key, { ...index, apex_id: moveTo.id, sequence: moveTo.sequence });
      if (movesHead) batch.set(headAt, { apex_id: moveTo.id, checkpoint_id: id });
    }, actor);
    return;
  }
  let next: { id: string; apex_id: string } | undefined;
  if (movesHead) {
    for (const other of checkpointIds(store, sessionId, threadId, ns)) {
      const stored = other === id ? undefined : storedIndex(store, sessionId, threadId, ns, other);
      if (stored) {
        next = { id: other, apex_id: stored.apex_id };
        break;
      }
    }
  }
  store.batchSync((batch) => {
    batch.delete(key);
    if (!(typeof index.format === "number" && index.format < 4)) batch.deleteTree(writesDir(sessionId, threadId, ns, id));
    if (movesHead) {
      if (next) batch.set(headAt, { apex_id: next.apex_id, checkpoint_id: next.id });
      else batch.delete(headAt);
    }
  }, actor);
}

/**
 * A LangGraph record that names an APEX checkpoint no longer stored (removed by repair, or by an
 * APEX whose retention and delete left it), which no read reaches: `session validate` reports
 * it (a warning: space, not damage) and `session repair` removes it (forgetLangGraphLeftovers).
 *  - `step`: a checkpoint's index record, with its pending writes (`writes`, the directory; those
 *    of a format < 4 checkpoint stay, as forgetLangGraphStep leaves them);
 *  - `head`: a thread namespace's head, which moves to `next`, the greatest id still stored, the
 *    one getTuple resumes from (null: none is left, the head goes);
 *  - `writes`: pending writes of a checkpoint with no index record, older than a step of its
 *    namespace still stored: a task still running when retention or a delete took its checkpoint
 *    wrote them after (putWrites keeps a write that comes before its checkpoint, which a newer
 *    step's writes may; one older than a stored step never gets its checkpoint).
 */
export interface LangGraphLeftover {
  kind: "step" | "head" | "writes";
  sessionId: string;
  threadId: string;
  ns: string;
  /** The record: the index record, or the head. */
  path: string;
  /** The LangGraph checkpoint id it names. */
  checkpointId: string;
  /** The APEX checkpoint it names (as its index record has it), when it names one. */
  apexId?: string;
  sequence?: number;
  writes?: { dir: string; count: number };
  next?: { apex_id: string; checkpoint_id: string; sequence: number } | null;
}

/**
 * The session's LangGraph records that name APEX checkpoints no longer stored (see
 * LangGraphLeftover). `removed(sequence)`: checkpoints of the session about to be removed
 * (repair plans with them gone). Reads the keys of the index and one index record and manifest
 * per LangGraph checkpoint; a record that does not decode is validate's to report, not this.
 */
export function langGraphLeftovers(store: Store, sessionId: string, removed: (sequence: number) => boolean = () => false): LangGraphLeftover[] {
  const read = (path: string): unknown => {
    try {
      return store.get(path);
    } catch {
      return undefined;
    }
  };
  const stored = (threadId: string, ns: string, id: string): { apex_id: string; sequence: number } | undefined => {
    let found: { apex_id: string; sequence: number } | undefined;
    try {
      found = storedIndex(store, sessionId, threadId, ns, id);
    } catch {
      return undefined;
    }
    return found && !removed(found.sequence) ? found : undefined;
  };
  const leftovers: LangGraphLeftover[] = [];
  const root = indexRoot(sessionId);
  const namespaces = new Map<string, { threadId: string; ns: string }>();
  /** Pending writes by thread namespace and checkpoint id (its segments): how many. */
  const writes = new Map<string, number>();
  for (const key of store.keysBelow(root)) {
    const segments = key.slice(root.length + 1).split("/");
    if (segments.length === 6 && segments[2] === "writes") {
      const at = `${segments[0]}/${segments[1]}/${segments[3]}`;
      writes.set(at, (writes.get(at) ?? 0) + 1);
    }
    if (segments.length !== 4 || segments[2] !== "checkpoints") continue;
    const [threadId, ns, id] = [segmentName(segments[0]!), segmentName(segments[1]!), segmentName(segments[3]!)];
    namespaces.set(`${segments[0]}/${segments[1]}`, { threadId, ns });
    if (stored(threadId, ns, id)) continue;
    const index = read(key);
    // Gone now: a delete (retention) committed between the index's read and the manifest's, removing both.
    if (index === undefined) continue;
    const leftover: LangGraphLeftover = { kind: "step", sessionId, threadId, ns, path: key, checkpointId: id };
    if (isRecord(index) && typeof index.apex_id === "string") leftover.apexId = index.apex_id;
    if (isRecord(index) && typeof index.sequence === "number") leftover.sequence = index.sequence;
    if (!(isRecord(index) && typeof index.format === "number" && index.format < 4)) {
      const dir = writesDir(sessionId, threadId, ns, id);
      const count = [...store.keysBelow(dir)].length;
      if (count > 0) leftover.writes = { dir, count };
    }
    leftovers.push(leftover);
  }
  for (const [at, count] of writes) {
    const [threadSegment, nsSegment, idSegment] = at.split("/") as [string, string, string];
    const [threadId, ns, id] = [segmentName(threadSegment), segmentName(nsSegment), segmentName(idSegment)];
    if (read(checkpointKey(sessionId, threadId, ns, id)) !== undefined) continue; // a step's: its index record's leftover, if any
    if (!checkpointIds(store, sessionId, threadId, ns).some((other) => other > id && stored(threadId, ns, other))) continue;
    leftovers.push({ kind: "writes", sessionId, threadId, ns, path: writesDir(sessionId, threadId, ns, id), checkpointId: id, writes: { dir: writesDir(sessionId, threadId, ns, id), count } });
  }
  const heads = headsPath(sessionId);
  for (const key of store.keysBelow(heads)) {
    const segments = key.slice(heads.length + 1).split("/");
    if (segments.length !== 2) continue;
    const head = read(key);
    if (!isRecord(head) || typeof head.apex_id !== "string" || typeof head.checkpoint_id !== "string") continue;
    const [threadId, ns] = [segmentName(segments[0]!), segmentName(segments[1]!)];
    if (stored(threadId, ns, head.checkpoint_id)?.apex_id === head.apex_id) continue;
    let next: LangGraphLeftover["next"] = null;
    for (const id of checkpointIds(store, sessionId, threadId, ns)) {
      const found = stored(threadId, ns, id);
      if (found) {
        next = { apex_id: found.apex_id, checkpoint_id: id, sequence: found.sequence };
        break;
      }
    }
    if (canonical(read(key)) !== canonical(head)) continue; // moved meanwhile (a put, a delete)
    const leftover: LangGraphLeftover = { kind: "head", sessionId, threadId, ns, path: key, checkpointId: head.checkpoint_id, apexId: head.apex_id, next };
    const index = read(checkpointKey(sessionId, threadId, ns, head.checkpoint_id));
    if (isRecord(index) && index.apex_id === head.apex_id && typeof index.sequence === "number") leftover.sequence = index.sequence;
    leftovers.push(leftover);
  }
  return leftovers;
}

function canonical(value: unknown): string {
  return JSON.stringify(value) ?? "";
}

/** Removes the records langGraphLeftovers found (index records with their writes, writes alone; heads moved or removed), in the caller's transaction. */
export function forgetLangGraphLeftovers(store: Store, leftovers: readonly LangGraphLeftover[], actor: string): void {
  if (leftovers.length === 0) return;
  store.batchSync((batch) => {
    for (const leftover of leftovers) {
      if (leftover.kind === "writes") batch.deleteTree(leftover.path);
      else if (leftover.kind === "step") {
        batch.delete(leftover.path);
        if (leftover.writes) batch.deleteTree(leftover.writes.dir);
      } else if (leftover.next) batch.set(leftover.path, { apex_id: leftover.next.apex_id, checkpoint_id: leftover.next.checkpoint_id });
      else batch.delete(leftover.path);
    }
  }, actor);
}
