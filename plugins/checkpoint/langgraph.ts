/**
 * LangGraph checkpoints as APEX checkpoints: the store side of `apex-sessions/langgraph`
 * (the ApexSaver adapter, integrations/langgraph/), served as control methods `langgraph.*`
 * by the supervisor while one runs and called in the adapter's own process otherwise.
 *
 * The mapping (docs/architecture.md, "LangGraph"):
 *  - a LangGraph thread is a named part of an APEX session; the session holds any number of them;
 *  - the channel values of a thread's namespace live in project memory below
 *    `/langgraph/<thread>/<namespace>/<channel>`, one record per channel holding its version and
 *    its serialized value (`{v, t, d}`: LangGraph's serializer type and text, or `b`: base64);
 *    a plain object channel with many keys is split into one record per key below the channel
 *    (`{v, split: true}` at the channel), so a step that changes 1% of a 10k-key state writes 1%;
 *    each key's record is `{t, d, o}`: `o` numbers the keys in the object's order (KeyWrite), which
 *    the tree (in hash order) does not keep, and reads list the keys by it;
 *    `/langgraph/<thread>/<namespace>` itself records which LangGraph checkpoint that memory is;
 *  - each `put` writes the changed channels and takes an APEX checkpoint (trigger `langgraph`,
 *    the LangGraph metadata in its `data.langgraph`) in one transaction, so an unchanged channel
 *    is one shared value object, and checkpoint list/show/diff, retention and archive see them;
 *  - per checkpoint an index record below `/sessions/<sid>/langgraph/<thread>/<namespace>/`
 *    (`checkpoints/<id>`: the APEX checkpoint, parent, the rest of the LangGraph checkpoint,
 *    metadata) and the pending writes (`writes/<id>/<task>/<idx>`). These are session records,
 *    outside every checkpoint tree, so restoring an APEX checkpoint (`apex start --continue`)
 *    never drops a write LangGraph saved after the checkpoint it restores;
 *  - per thread namespace its head (`/sessions/<sid>/langgraph-heads/<thread>/<namespace>`),
 *    the checkpoint it resumes from, which retention keeps (headsPath).
 *
 * Nothing here imports LangGraph: values arrive serialized by the adapter.
 */
import { isDeepStrictEqual } from "node:util";
import type { CheckpointInfo } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import { ChangeSet, ObjectDamageError, ObjectStore, collectEntries, compareCodePoints, countValues, decodeValueObject, findInDirectory, lookupEntry, sha256, updateTree, type DirEntry, type Hash, type ObjectView, type TreeNode } from "./engine/objects.js";
import { encodeJson } from "../value-codec.js";
import { MAX_PATH_BYTES } from "../../core/store/paths.js";
import type { JsonValue, Store, WriteBatch } from "../../core/store/store.js";
import { Catalog } from "./catalog.js";
import { isRecord, manifestPath, type CheckpointManifest } from "./manifest.js";
import { HISTORY_PREFIX } from "../../core/session/records.js";
import { baseKey, inScope, memoryMountOf, pathSegments, type MemoryScope } from "./scope.js";
import {
  LANGGRAPH_MEMORY_ROOT,
  LANGGRAPH_TRIGGER,
  checkpointIds,
  checkpointKey,
  deletedPath,
  headPath,
  headsPath,
  indexRoot,
  memoryDir,
  nameSegment,
  segmentName,
  threadLabel,
  writesDir,
} from "./langgraph-index.js";

export { LANGGRAPH_MEMORY_ROOT, LANGGRAPH_TRIGGER, headsPath, langGraphHeads, memoryDir, nameSegment, segmentName } from "./langgraph-index.js";

/** A value as LangGraph's serializer wrote it: its type and its bytes, as UTF-8 text (`d`) or base64 (`b`). */
export interface SerializedValue {
  t: string;
  d?: string;
  b?: string;
}

/** One channel in a put: its new version and value (absent: the version is known, the value is not stored). */
export interface ChannelWrite {
  v: string | number;
  value?: SerializedValue;
  /**
   * No value sent, the channel has one: the parent's at version `v`, kept as it is. A parent
   * without it there (gone: deleted, its thread deleted) makes the put stale, not a channel
   * stored without its value. (Absent: a channel without a value, or an adapter before `kept`.)
   */
  kept?: boolean;
  /** A plain object stored key by key: the keys set and removed since `base` (or all keys, `full`). */
  split?: { base?: string | number | null; full?: boolean; set: Record<string, KeyWrite>; delete?: string[] };
}

/**
 * A key of a split channel as a put sends it: its value, and `o`, its place in the object's
 * order (a non-negative integer, stored in the key's record). Reads list a channel's keys by
 * `o` (the tree keeps them in hash order), so the numbers only need to increase along the
 * object's keys: the adapter numbers a channel's keys 0..n-1 when it sends them all, gives a
 * key added (or moved: deleted and set again, which puts a key last) the next number, and sends
 * a key whose place did not change with the number it has. A key sent without `o` (an adapter
 * before it) is stored without, and read after the numbered ones.
 */
export interface KeyWrite extends SerializedValue {
  o?: number;
}

export interface PutRequest {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  parent_id: string | null;
  /** checkpoint.v, kept in the index for the pending-sends migration of format < 4. */
  format: number;
  /** The LangGraph checkpoint without channel_values and channel_versions, serialized. */
  rest: SerializedValue;
  metadata: SerializedValue;
  /**
   * "delta": `channels` are the channels whose version changed since `parent_id`, `removed`
   * those gone; valid only if the memory holds `parent_id` (else the answer is `{stale: true}`).
   * "full": `channels` holds every channel of the checkpoint; a channel without a value keeps
   * the value the parent checkpoint had at that version (`kept`: refused as stale without one).
   */
  mode: "delta" | "full";
  /**
   * With "delta": the APEX checkpoint that held `parent_id` when the adapter wrote or read it.
   * The same id put again since (a put replaces a checkpoint of the same id, as MemorySaver's
   * and SqliteSaver's do) is held by another: the delta, made against what the adapter had,
   * is stale. (Absent: an adapter before it; the delta applies to the parent as stored.)
   */
  parent_apex?: string;
  channels: Record<string, ChannelWrite>;
  removed?: string[];
}

export interface StoredWrite {
  task_id: string;
  channel: string;
  idx: number;
  task_path: string;
  value: SerializedValue;
  /**
   * The last checkpoint sequence of its session when it was written (absent in stores written
   * before): a branch made at a checkpoint takes the writes made before it (langgraph-branch.ts).
   */
  after?: number;
}

export interface TupleRecord {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
  parent_id: string | null;
  format: number;
  rest: SerializedValue;
  metadata: SerializedValue;
  channels: Record<string, { v: string | number; value?: SerializedValue; split?: Record<string, SerializedValue> }>;
  /** The channels as columns instead, when the request asked for them (`columns: true`): `channels` is then empty. */
  columns?: ChannelColumns;
  writes: StoredWrite[];
  /** For format < 4: the parent's writes to the tasks channel (pending sends, migrated by the adapter). */
  parent_sends?: StoredWrite[];
  /** The APEX checkpoint that holds it. */
  apex: { id: string; session_id: string; name: string };
  /** A step a branch or a merge carried from another session: what its delta channels are rebuilt from (HistoryStep). */
  history?: HistoryStep[];
}

/**
 * One step before a step carried into another session (a branch's first checkpoint, a merge
 * checkpoint: langgraph-branch.ts), as the step's delta channels (`DeltaChannel`) need it: a
 * graph rebuilds such a channel from the pending writes of the step's parents, back to one
 * holding its value, and those parents are not the carrying session's. `writes`: the step's
 * pending writes to those channels; `seed`: the channels whose value the step holds (there the
 * rebuild stops), as getTuple's columns. Newest first: the carried step's parent, its parent, ….
 */
export interface HistoryStep {
  checkpoint_id: string;
  writes: StoredWrite[];
  seed?: ChannelColumns;
}

/**
 * A checkpoint's channels as parallel arrays, one element per channel: what an adapter that
 * asks for it (`columns: true`) reads instead of `channels`, a map of 10k channels (or keys)
 * that both sides built and walked key by key. A store that does not know the parameter
 * answers with `channels`, which adapters still read. (`channels` lists a split channel's keys
 * in the same order as the columns: a JSON object keeps it, but for keys that are array
 * indexes, which every object lists first.)
 */
export interface ChannelColumns {
  names: string[];
  versions: Array<string | number>;
  /** The channel's value; null: none, or stored key by key (`splits`). */
  values: Array<SerializedValue | null>;
  /**
   * A channel stored key by key: its keys and their values, in the object's order (by `o`, see
   * KeyWrite; keys stored without one after the others, in tree order), and each key's `o` (-1:
   * none); null otherwise. A store before `o` sent no `orders`, its keys in tree order.
   */
  splits: Array<SplitColumn | null>;
}

export interface SplitColumn {
  keys: string[];
  values: SerializedValue[];
  orders?: number[];
}

interface IndexRecord {
  apex_id: string;
  sequence: number;
  parent_id: string | null;
  format: number;
  rest: SerializedValue;
  metadata: SerializedValue;
  /** The metadata as JSON when the serializer wrote JSON: what `list` filters on. */
  metadata_json?: JsonValue;
  /** A carried step's delta channel history (HistoryStep). */
  history?: HistoryStep[];
}

/** The special channels LangGraph writes with fixed negative indexes (WRITES_IDX_MAP), replaced instead of kept. */
const TASKS_CHANNEL = "__pregel_tasks";

/**
 * The longest thread id APEX keeps, in bytes of its path segment (percent-encoded): the index's
 * paths (`…/langgraph/<thread>/<ns>/writes/<checkpoint>/<task>/<idx>`) must stay within
 * MAX_PATH_BYTES with room for the session, the namespace and LangGraph's ids.
 */
export const MAX_THREAD_ID_BYTES = 512;

/**
 * Refuses a thread id too long for APEX's paths, and names too long together, saying which and
 * the limit (not an invalid path, nor LMDB's key size, which say nothing to a LangGraph user).
 */
function checkNames(sessionId: string, names: { thread_id?: string | undefined; checkpoint_ns?: string | undefined; checkpoint_id?: string | undefined; task_id?: string | undefined }): void {
  const { thread_id: threadId } = names;
  const threadBytes = threadId === undefined ? 0 : nameSegment(threadId).length; // percent-encoded: ASCII
  if (threadBytes > MAX_THREAD_ID_BYTES) {
    throw new ApexError("APEX_E_BAD_INPUT", `The LangGraph thread id ${shownName(threadId!)} is too long: APEX keeps thread ids of up to ${MAX_THREAD_ID_BYTES} bytes, and this one takes ${threadBytes}.`, {
      hint: "The bytes are those of the id percent-encoded: letters, digits and -_.!*'() take one each, any other character 3 per byte of its UTF-8 form. Use a shorter id (a hash of this one, say). Nothing was written.",
      details: { thread_id_bytes: threadBytes, limit: MAX_THREAD_ID_BYTES },
    });
  }
  const labels = { thread_id: "thread id", checkpoint_ns: "namespace", checkpoint_id: "checkpoint id", task_id: "task id" } as const;
  const parts = (Object.keys(labels) as Array<keyof typeof labels>).filter((name) => names[name] !== undefined).map((name) => ({ label: labels[name], bytes: nameSegment(names[name]!).length }));
  // `/sessions/<sid>/langgraph` and, in the longest path, `/writes` and the write's index.
  const total = Buffer.byteLength(indexRoot(sessionId)) + "/writes".length + 21 + parts.reduce((sum, part) => sum + 1 + part.bytes, 0);
  if (total > MAX_PATH_BYTES) {
    throw new ApexError("APEX_E_BAD_INPUT", `The LangGraph ${parts.map((part) => `${part.label} (${part.bytes} bytes)`).join(", ")} are too long together: APEX's paths for them take ${total} bytes, over its limit of ${MAX_PATH_BYTES}.`, {
      hint: "Use shorter ids or namespaces. Nothing was written.",
    });
  }
}

/** A name as an error shows it: a long one by its first 100 characters and its length, so the message stays one readable line. */
function shownName(name: string): string {
  return name.length > 120 ? `${JSON.stringify(name.slice(0, 100))}… (${name.length} characters)` : JSON.stringify(name);
}

// ------------------------------------------------------------------------------------ the store side

export interface LangGraphStoreOptions {
  /** The memory checkpoints cover (the checkpoint plugin's `paths`). */
  scope: MemoryScope;
  /** Runs a write after every other write of the session's checkpoints (their one queue). */
  serialize: <T>(fn: () => Promise<T>) => Promise<T>;
  /** The afterCheckpoint hook (retention, audit trail). */
  afterCheckpoint?: (info: CheckpointInfo) => Promise<void>;
  warn?: (message: string) => void;
}

export class LangGraphStore {
  /** Channel values read lately, verified and decoded, by hash (content-addressed: never stale). */
  private readonly values = new ValueCache(VALUE_CACHE_BYTES);
  /**
   * The last channels read, by their directory's tree: the values in the order readChannels
   * lists them, and which of them were read from the store (undefined: all), which are put into
   * `values` only when a read of another tree needs them. A new saver's first read (10k values)
   * made 10k map entries by hash for the reads that may follow; the same tree read again takes
   * them as they are, with no lookup by hash.
   */
  private lastRead: { tree: Hash; hashes: Hash[]; records: Array<Record<string, JsonValue>>; fromStore: number[] | undefined } | undefined;
  /** Sessions whose heads are one record per thread namespace (migrateHeads, once committed). */
  private readonly headsMigrated = new Set<string>();

  constructor(
    readonly store: Store,
    private readonly options: LangGraphStoreOptions,
  ) {}

  /** The control methods (`langgraph.put`, …); `session` in params names the session, else the current one. */
  methods(sessionOf: (params: Record<string, unknown>) => string): Record<string, (params: Record<string, unknown>) => unknown> {
    return {
      "langgraph.put": (params) => this.put(sessionOf(params), params as unknown as PutRequest) as Promise<JsonValue>,
      "langgraph.putWrites": (params) =>
        this.putWrites(sessionOf(params), {
          thread_id: requiredString(params, "thread_id"),
          checkpoint_ns: requiredString(params, "checkpoint_ns"),
          checkpoint_id: requiredString(params, "checkpoint_id"),
          task_id: requiredString(params, "task_id"),
          task_path: typeof params.task_path === "string" ? params.task_path : "",
          writes: Array.isArray(params.writes) ? (params.writes as Array<{ channel: string; idx: number; value: SerializedValue }>) : [],
        }) as Promise<JsonValue>,
      "langgraph.getTuple": (params) =>
        this.getTuple(sessionOf(params), requiredString(params, "thread_id"), requiredString(params, "checkpoint_ns"), optionalString(params, "checkpoint_id"), params.columns === true) as unknown as JsonValue,
      "langgraph.list": (params) =>
        this.list(sessionOf(params), {
          thread_id: optionalString(params, "thread_id"),
          checkpoint_ns: optionalString(params, "checkpoint_ns"),
          checkpoint_id: optionalString(params, "checkpoint_id"),
          before: optionalString(params, "before"),
          limit: typeof params.limit === "number" ? params.limit : undefined,
          offset: typeof params.offset === "number" ? params.offset : undefined,
          after: listPosition(params.after),
          filter: isRecord(params.filter) ? (params.filter as Record<string, JsonValue>) : undefined,
          absent: Array.isArray(params.filter_absent) ? params.filter_absent.filter((key): key is string => typeof key === "string") : undefined,
          columns: params.columns === true,
        }) as unknown as JsonValue,
      "langgraph.deleteThread": (params) => this.deleteThread(sessionOf(params), requiredString(params, "thread_id")) as Promise<JsonValue>,
    };
  }

  // ---------------------------------------------------------------------------------- put

  /**
   * Writes the thread namespace's channels as a tree derived from the parent checkpoint's
   * (only the changed channels are written), the APEX checkpoint whose memory holds that tree,
   * and the index record, in one transaction. The channels are never live records (scope.ts:
   * DETACHED_ROOTS). Resolves to `{stale: true}` (nothing written) when a delta does not apply
   * to the parent as stored (no such checkpoint, or a split channel at another version); the
   * adapter then sends the whole checkpoint.
   */
  put(sessionId: string, request: PutRequest): Promise<{ stale?: true; apex?: { id: string; name: string } }> {
    checkPutRequest(request);
    checkNames(sessionId, request);
    const dir = memoryDir(request.thread_id, request.checkpoint_ns);
    if (!inScope(this.options.scope, `${dir}/x`)) {
      throw new ApexError("APEX_E_CONFIG", `The checkpoint plugin's paths do not cover ${LANGGRAPH_MEMORY_ROOT}, where LangGraph channel values are kept.`, {
        hint: `Add "${LANGGRAPH_MEMORY_ROOT}/**" to plugins.checkpoint.paths in apex.config.yaml.`,
      });
    }
    return this.options.serialize(async () => {
      const store = this.store;
      const { checkpoints, refs } = await writeSide();
      const { ACTORS } = refs;
      let manifest: CheckpointManifest | undefined;
      let headsChecked = false;
      await store.transaction(() => {
        requireLiveSession(refs, store, sessionId);
        // Channel values compressed as they are written (LangGraph states repeat most of their
        // text step after step); the rest of the checkpoint is written as every checkpoint is.
        const view = ObjectStore.of(store).view({ compressValues: true });
        const parent = request.parent_id === null ? undefined : this.locate(sessionId, request.thread_id, request.checkpoint_ns, request.parent_id);
        if (request.mode === "delta" && (!parent || (request.parent_apex !== undefined && parent.index.apex_id !== request.parent_apex))) return;
        const segments = pathSegments(dir);
        const built = buildChannels(view, parent && lookupEntry(view, parent.manifest.memory.root, segments), request);
        if (!built) return;
        const record: JsonValue = { checkpoint: request.checkpoint_id, values: built.values };
        const metadataJson = jsonOf(request.metadata);
        const { manifest: written } = checkpoints.writeCheckpoint(store, {
          sessionId,
          trigger: LANGGRAPH_TRIGGER,
          description: describeStep(request, metadataJson),
          pinned: false,
          gitState: null,
          data: {
            langgraph: {
              thread_id: request.thread_id,
              checkpoint_ns: request.checkpoint_ns,
              checkpoint_id: request.checkpoint_id,
              parent_id: request.parent_id,
              memory: dir,
              metadata: metadataJson ?? null,
            },
          },
          scope: this.options.scope,
          createdAt: new Date().toISOString(),
          actor: ACTORS.checkpoint,
          audit: true,
          graft: (memoryView, memory) => {
            const replaced = valuesAt(memoryView, lookupEntry(memoryView, memory.root, segments));
            const changes = new ChangeSet();
            changes.add(segments);
            changes.graft(segments, built.tree);
            const root = updateTree(memoryView, memory.root, changes, () => record).root;
            return { root, count: memory.count - replaced + 1 + built.values };
          },
        });
        manifest = written;
        const index: IndexRecord = {
          apex_id: written.id,
          sequence: written.sequence,
          parent_id: request.parent_id,
          format: request.format,
          rest: request.rest,
          metadata: request.metadata,
          ...(metadataJson !== undefined ? { metadata_json: metadataJson } : {}),
        };
        store.batchSync((batch) => {
          headsChecked = this.migrateHeads(batch, sessionId);
          batch.set(checkpointKey(sessionId, request.thread_id, request.checkpoint_ns, request.checkpoint_id), index as unknown as JsonValue);
          // The head is the greatest checkpoint id (what getTuple resumes from), not the last put: a put of an older id leaves it.
          const headAt = headPath(sessionId, request.thread_id, request.checkpoint_ns);
          const head = batch.get(headAt);
          if (!(isRecord(head) && typeof head.checkpoint_id === "string" && head.checkpoint_id > request.checkpoint_id)) {
            batch.set(headAt, { apex_id: written.id, checkpoint_id: request.checkpoint_id });
          }
        }, ACTORS.checkpoint);
      });
      if (headsChecked) this.headsMigrated.add(sessionId); // committed: no record of stores written before
      if (!manifest) return { stale: true as const };
      try {
        await this.options.afterCheckpoint?.(checkpoints.checkpointInfo(manifest));
      } catch (error) {
        const { sessionLabel } = await import("./merge-base.js");
        this.options.warn?.(`afterCheckpoint after ${sessionLabel(this.store, sessionId)}/${manifest.name}: ${(error as Error).message}`);
      }
      return { apex: { id: manifest.id, name: manifest.name } };
    });
  }
  // ---------------------------------------------------------------------------------- writes

  putWrites(
    sessionId: string,
    request: { thread_id: string; checkpoint_ns: string; checkpoint_id: string; task_id: string; task_path: string; writes: Array<{ channel: string; idx: number; value: SerializedValue }> },
  ): Promise<{ written: number }> {
    // As put refuses them: writes kept for a checkpoint no put could make.
    if (request.thread_id === "" || request.checkpoint_id === "") throw new ApexError("APEX_E_BAD_INPUT", "langgraph.putWrites: thread_id and checkpoint_id must not be empty.");
    checkNames(sessionId, request);
    return this.options.serialize(async () => {
      const { refs } = await writeSide();
      const { ACTORS } = refs;
      requireLiveSession(refs, this.store, sessionId);
      const dir = `${writesDir(sessionId, request.thread_id, request.checkpoint_ns, request.checkpoint_id)}/${nameSegment(request.task_id)}`;
      const after = Catalog.of(this.store).lastSequence(sessionId);
      const { value: written } = await this.store.batch((batch) => {
        if (batch.get(checkpointKey(sessionId, request.thread_id, request.checkpoint_ns, request.checkpoint_id)) === undefined) {
          const deleted = batch.get(deletedPath(sessionId, request.thread_id));
          if (isRecord(deleted) && typeof deleted.checkpoint_id === "string" && request.checkpoint_id <= deleted.checkpoint_id) {
            throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `The LangGraph thread ${shownName(request.thread_id)} was deleted with its checkpoint ${request.checkpoint_id}: the writes of task ${shownName(request.task_id)} were not kept.`, {
              hint: "deleteThread removed the thread's checkpoints and writes; a graph run goes on from a new checkpoint of the thread (put), not from one deleted.",
              details: { thread_id: request.thread_id, checkpoint_ns: request.checkpoint_ns, checkpoint_id: request.checkpoint_id },
            });
          }
        }
        let count = 0;
        for (const write of request.writes) {
          if (typeof write.channel !== "string" || !Number.isSafeInteger(write.idx) || !isSerialized(write.value)) {
            throw new ApexError("APEX_E_BAD_INPUT", "langgraph.putWrites: each write needs a channel, an integer idx and a serialized value.");
          }
          const path = `${dir}/${write.idx}`;
          // A regular write is kept once written (a task retried writes the same); special ones (errors, interrupts) are replaced.
          if (write.idx >= 0 && batch.get(path) !== undefined) continue;
          const record: StoredWrite = { task_id: request.task_id, channel: write.channel, idx: write.idx, task_path: request.task_path, value: write.value, after };
          batch.set(path, record as unknown as JsonValue);
          count += 1;
        }
        return count;
      }, ACTORS.checkpoint);
      return { written };
    });
  }

  // ---------------------------------------------------------------------------------- reads

  /** One checkpoint tuple (the latest of the thread's namespace without `checkpointId`); undefined if there is none. */
  getTuple(sessionId: string, threadId: string, ns: string, checkpointId: string | undefined, columns = false): TupleRecord | undefined {
    checkNames(sessionId, { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpointId });
    const id = checkpointId ?? this.latestId(sessionId, threadId, ns);
    if (id === undefined) return undefined;
    const located = this.locate(sessionId, threadId, ns, id);
    if (located) return this.tuple(sessionId, threadId, ns, id, located, columns);
    if (checkpointId !== undefined) return undefined;
    // The head's APEX checkpoint is gone (deleted before deletes moved the head, or dropped by
    // repair): the greatest id still stored, which the thread resumes from.
    for (const other of this.checkpointIds(sessionId, threadId, ns)) {
      const found = other === id ? undefined : this.locate(sessionId, threadId, ns, other);
      if (found) return this.tuple(sessionId, threadId, ns, other, found, columns);
    }
    return undefined;
  }

  list(
    sessionId: string,
    options: {
      thread_id?: string | undefined;
      checkpoint_ns?: string | undefined;
      checkpoint_id?: string | undefined;
      before?: string | undefined;
      limit?: number | undefined;
      /** Matching checkpoints to pass over first (a list read in pages by an ApexSaver before `after`). */
      offset?: number | undefined;
      /**
       * The last step of the page before (a list read in pages: ApexSaver's, when one reply cannot
       * carry it all): the list goes on after it in its order (threads and namespaces by name, ids
       * newest first). Steps written meanwhile before that point are not read, and none twice: an
       * offset counted from the start moved with each step written, and a page read one again.
       */
      after?: ListPosition | undefined;
      filter?: Record<string, JsonValue> | undefined;
      /** Metadata keys the filter gives as undefined: a checkpoint whose metadata has them does not match. */
      absent?: string[] | undefined;
      /** The channels as columns (TupleRecord.columns). */
      columns?: boolean | undefined;
    },
  ): TupleRecord[] {
    checkNames(sessionId, options);
    const out: TupleRecord[] = [];
    let remaining = options.limit ?? Infinity;
    // An ApexSaver sends `offset` beside `after` for a supervisor of an APEX before `after`, which reads only the former.
    let skip = options.after ? 0 : (options.offset ?? 0);
    const after = options.after;
    const threads = options.thread_id !== undefined ? [options.thread_id] : this.names(indexRoot(sessionId));
    for (const threadId of threads) {
      if (after && compareCodePoints(threadId, after.thread_id) < 0) continue;
      const namespaces = options.checkpoint_ns !== undefined ? [options.checkpoint_ns] : this.names(`${indexRoot(sessionId)}/${nameSegment(threadId)}`);
      for (const ns of namespaces) {
        const at = after && threadId === after.thread_id ? compareCodePoints(ns, after.checkpoint_ns) : 1;
        if (at < 0) continue;
        for (const id of this.checkpointIds(sessionId, threadId, ns)) {
          if (remaining <= 0) return out;
          if (at === 0 && !(id < after!.checkpoint_id)) continue;
          if (options.checkpoint_id !== undefined && id !== options.checkpoint_id) continue;
          if (options.before !== undefined && !(id < options.before)) continue;
          const located = this.locate(sessionId, threadId, ns, id);
          if (!located) continue;
          if ((options.filter || options.absent) && !matchesFilter(located.index.metadata_json, options.filter ?? {}, options.absent ?? [])) continue;
          if (skip > 0) {
            skip -= 1;
            continue;
          }
          out.push(this.tuple(sessionId, threadId, ns, id, located, options.columns ?? false));
          remaining -= 1;
        }
      }
    }
    return out;
  }

  /**
   * Deletes a thread's index and pending writes, and its channels from the memory the session's
   * next checkpoint starts from (its memory base; earlier checkpoints keep theirs). Sessions side
   * by side each have their own base: a thread of the same id in another session stays.
   */
  deleteThread(sessionId: string, threadId: string): Promise<{ deleted: number }> {
    checkNames(sessionId, { thread_id: threadId });
    return this.options.serialize(async () => {
      const store = this.store;
      const { refs } = await writeSide();
      const { ACTORS } = refs;
      requireLiveSession(refs, store, sessionId);
      const index = `${indexRoot(sessionId)}/${nameSegment(threadId)}`;
      let deleted = 0;
      let headsChecked = false;
      await store.transaction(() => {
        // The latest checkpoint id deleted (of a checkpoint, or of writes sent before theirs): writes for it or an older one are refused from now on.
        let latest = "";
        for (const key of store.keysBelow(index)) {
          const [, kind, id] = key.slice(index.length + 1).split("/");
          if ((kind === "checkpoints" || kind === "writes") && id !== undefined && segmentName(id) > latest) latest = segmentName(id);
        }
        deleted = store.batchSync((batch) => {
          const before = batch.get(deletedPath(sessionId, threadId));
          if (latest !== "" && !(isRecord(before) && typeof before.checkpoint_id === "string" && before.checkpoint_id >= latest)) batch.set(deletedPath(sessionId, threadId), { checkpoint_id: latest });
          headsChecked = this.migrateHeads(batch, sessionId);
          // The thread's own heads: its segment is its own (thread "a/b" is `a%2Fb`, and keeps its head).
          batch.deleteTree(`${headsPath(sessionId)}/${nameSegment(threadId)}`);
          return batch.deleteTree(index);
        }, ACTORS.checkpoint).value;
        const catalog = Catalog.of(store);
        // The session's own base: a session in a git worktree has its own memory root (scope.ts: baseKey).
        const key = baseKey(this.options.scope, memoryMountOf(store, sessionId));
        const base = catalog.base(key);
        const segments = pathSegments(`${LANGGRAPH_MEMORY_ROOT}/${nameSegment(threadId)}`);
        const view = ObjectStore.of(store).view();
        const entry = base && lookupEntry(view, base.root, segments);
        if (!base || !entry?.tree) return;
        const changes = new ChangeSet();
        changes.graft(segments, null);
        const root = updateTree(view, base.root, changes, () => undefined).root;
        catalog.setBase(key, { root, revision: base.revision, keys: base.keys - countValues(view, entry.tree) });
      });
      if (headsChecked) this.headsMigrated.add(sessionId); // committed: no record of stores written before
      return { deleted };
    });
  }

  /**
   * Replaces the heads record of stores written before (one record of every thread namespace,
   * under ambiguous keys) by one record per thread namespace, derived from the index: the
   * greatest checkpoint id of each, as getTuple finds it. Once per session: true when it checked,
   * and the caller remembers the session (headsMigrated) once its transaction committed.
   */
  private migrateHeads(batch: WriteBatch, sessionId: string): boolean {
    if (this.headsMigrated.has(sessionId)) return false;
    if (batch.get(headsPath(sessionId)) !== undefined) {
      for (const threadId of this.names(indexRoot(sessionId))) {
        for (const ns of this.names(`${indexRoot(sessionId)}/${nameSegment(threadId)}`)) {
          const [latest] = this.checkpointIds(sessionId, threadId, ns);
          const index = latest === undefined ? undefined : batch.get(checkpointKey(sessionId, threadId, ns, latest));
          if (isRecord(index) && typeof index.apex_id === "string") batch.set(headPath(sessionId, threadId, ns), { apex_id: index.apex_id, checkpoint_id: latest! });
        }
      }
      batch.delete(headsPath(sessionId));
    }
    return true;
  }

  /** The index record of a checkpoint and its APEX manifest; undefined if either is gone (retention may delete manifests). */
  private locate(sessionId: string, threadId: string, ns: string, checkpointId: string): { index: IndexRecord; manifest: CheckpointManifest } | undefined {
    const index = this.store.get(checkpointKey(sessionId, threadId, ns, checkpointId)) as IndexRecord | undefined;
    if (!isRecord(index)) return undefined;
    const manifest = this.store.get(manifestPath(sessionId, index.sequence)) as CheckpointManifest | undefined;
    if (!isRecord(manifest) || manifest.id !== index.apex_id) return undefined;
    return { index, manifest };
  }

  private tuple(sessionId: string, threadId: string, ns: string, checkpointId: string, located: { index: IndexRecord; manifest: CheckpointManifest }, columns: boolean): TupleRecord {
    const { index, manifest } = located;
    const read = this.readChannels(manifest, memoryDir(threadId, ns));
    const tuple: TupleRecord = {
      thread_id: threadId,
      checkpoint_ns: ns,
      checkpoint_id: checkpointId,
      parent_id: index.parent_id,
      format: index.format,
      rest: index.rest,
      metadata: index.metadata,
      channels: columns ? {} : channelMap(read),
      ...(columns ? { columns: read } : {}),
      writes: this.writesOf(sessionId, threadId, ns, checkpointId),
      apex: { id: manifest.id, session_id: manifest.session_id, name: manifest.name },
      ...(Array.isArray(index.history) ? { history: index.history } : {}),
    };
    if (index.format < 4 && index.parent_id !== null) {
      tuple.parent_sends = this.writesOf(sessionId, threadId, ns, index.parent_id).filter((write) => write.channel === TASKS_CHANNEL);
    }
    return tuple;
  }

  /** The channels of a thread's namespace as a checkpoint's memory holds them: every value read grouped by pack. */
  private readChannels(manifest: CheckpointManifest, dir: string): ChannelColumns {
    const view = ObjectStore.of(this.store).view();
    const entry = lookupEntry(view, manifest.memory.root, pathSegments(dir));
    const columns: ChannelColumns = { names: [], versions: [], values: [], splits: [] };
    if (!entry?.tree) return columns;
    // Entries in bucket order (channels need no other: LangGraph's channel_values is a map by
    // name), each split channel's keys below it (put back in their object's order: inObjectOrder).
    const top = directoryEntries(view, entry.tree);
    // (each loop over the 10k channels a function of its own: see entriesOfLevel)
    const { hashes, below } = valueHashes(view, top);
    fillColumns(columns, top, below, this.recordsOf(view, entry.tree, hashes));
    return columns;
  }

  /**
   * The decoded records of the values `hashes` lists, which the tree `tree` holds (in that
   * order). Values read by an earlier getTuple of this process are taken as they were verified
   * then (the same tree as the last read: its records as they are); the others are verified and
   * decoded where they lie in their packs (nothing copied).
   */
  private recordsOf(view: ObjectView, tree: Hash, hashes: Hash[]): Array<Record<string, JsonValue>> {
    const last = this.lastRead;
    if (last?.tree === tree && last.hashes.length === hashes.length) return last.records;
    const cache = this.values;
    if (last) {
      // Another tree: the last read's values read from the store join the cache by hash.
      this.lastRead = undefined;
      const { hashes: lastHashes, records: lastRecords, fromStore } = last;
      const count = fromStore ? fromStore.length : lastHashes.length;
      for (let i = 0; i < count; i++) {
        const at = fromStore ? fromStore[i]! : i;
        cache.set(lastHashes[at]!, lastRecords[at]!, sizeOf(lastRecords[at]!));
      }
    }
    // The records are kept by position (the order of `hashes`), not in a map by hash.
    const records = new Array<Record<string, JsonValue>>(hashes.length);
    // (the first read of a saver finds the cache empty: every value is wanted, where it is listed)
    let wanted = hashes;
    let wantedAt: number[] | undefined;
    if (!cache.empty) {
      wanted = [];
      wantedAt = [];
      for (let at = 0; at < hashes.length; at++) {
        const record = cache.get(hashes[at]!);
        if (record) records[at] = record;
        else {
          wanted.push(hashes[at]!);
          wantedAt.push(at);
        }
      }
    }
    view.visitValues(wanted, (hash, bytes, at, slice) => {
      let record: Record<string, JsonValue>;
      try {
        record = decodeValueObject(bytes, slice) as Record<string, JsonValue>;
      } catch (error) {
        throw new ObjectDamageError("value", hash, "undecodable", (error as Error).message);
      }
      // The serializer's type is "json" for nearly every value: one string, not a copy decoded
      // for each (10k strings the young generation kept copying until they were promoted).
      if (record.t === "json") record.t = "json";
      records[wantedAt ? wantedAt[at]! : at] = record;
    }, { trustChecksums: true });
    this.lastRead = { tree, hashes, records, fromStore: wantedAt };
    return records;
  }

  private writesOf(sessionId: string, threadId: string, ns: string, checkpointId: string): StoredWrite[] {
    const out: StoredWrite[] = [];
    for (const { value } of this.store.tree(writesDir(sessionId, threadId, ns, checkpointId))) {
      if (isRecord(value) && typeof value.task_id === "string") out.push(value as unknown as StoredWrite);
    }
    return out;
  }

  private checkpointIds(sessionId: string, threadId: string, ns: string): string[] {
    return checkpointIds(this.store, sessionId, threadId, ns);
  }

  /**
   * The greatest checkpoint id of a thread's namespace (the one getTuple resumes from): its head
   * record names it (one read), else (a store written before heads were per namespace) the index.
   */
  private latestId(sessionId: string, threadId: string, ns: string): string | undefined {
    const head = this.store.get(headPath(sessionId, threadId, ns));
    if (isRecord(head) && typeof head.checkpoint_id === "string") return head.checkpoint_id;
    return this.checkpointIds(sessionId, threadId, ns)[0];
  }

  /**
   * The names (decoded) of the directories directly below an index path, in the order of the
   * names (code points), not of their segments: the root namespace "" is the segment "~", which
   * came after every other, so `list` of a thread gave its subgraphs' steps first (a `limit: 1`
   * an old subgraph step, not the thread's latest).
   */
  private names(path: string): string[] {
    const names = new Set<string>();
    for (const key of this.store.keysBelow(path)) names.add(key.slice(path.length + 1).split("/")[0]!);
    return [...names].map(segmentName).sort(compareCodePoints);
  }
}

// ------------------------------------------------------------------------------------ helpers

/** A step's place in a list: where a page of it ended. */
export interface ListPosition {
  thread_id: string;
  checkpoint_ns: string;
  checkpoint_id: string;
}

function listPosition(value: unknown): ListPosition | undefined {
  if (value === undefined || value === null) return undefined;
  const position = value as Partial<Record<keyof ListPosition, unknown>>;
  if (!isRecord(value) || typeof position.thread_id !== "string" || typeof position.checkpoint_ns !== "string" || typeof position.checkpoint_id !== "string") {
    throw new ApexError("APEX_E_BAD_INPUT", "langgraph.list: after must be {thread_id, checkpoint_ns, checkpoint_id}, the last step of the page before.");
  }
  return { thread_id: position.thread_id, checkpoint_ns: position.checkpoint_ns, checkpoint_id: position.checkpoint_id };
}

/**
 * The modules only writes use (writing an APEX checkpoint, and theirs), loaded by the first
 * write: a read without a supervisor (ApexSaver's getTuple, the first call of a resumed graph
 * in a new process) loads none of them.
 */
async function writeSide(): Promise<{ checkpoints: typeof import("./checkpoints.js"); refs: typeof import("./refs.js") }> {
  const [checkpoints, refs] = await Promise.all([import("./checkpoints.js"), import("./refs.js")]);
  return { checkpoints, refs };
}

/** A session LangGraph writes to: one not ended. An ended session's threads still read (their history outlives it). */
function requireLiveSession(refs: typeof import("./refs.js"), store: Store, sessionId: string): void {
  refs.requireSession(store, sessionId);
  if (store.has(`/sessions/${sessionId}`)) return;
  const record = store.get(`${HISTORY_PREFIX}/${sessionId}`) as { status?: string } | undefined;
  throw new ApexError("APEX_E_SESSION_STATE", `Session ${sessionId} has ended (${record?.status}); its LangGraph threads can be read, not written.`, {
    hint: `Continue it first (\`apex start --continue ${sessionId}\`), or write to a running session.`,
  });
}

/** Bytes of channel values a LangGraphStore keeps decoded (a 10k-key state of ~1 KB values is ~10 MB). */
export const VALUE_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * Decoded values by hash, up to a number of encoded bytes: two generations (as the object
 * store's node cache) rather than an LRU list, a hit in the old one moving the value back.
 */
class ValueCache {
  // The records themselves, not wrapped with their size (a 10k-value read would make 10k more
  // objects for the young generation to copy): a record moved back from `old` is counted by its text.
  private young = new Map<Hash, Record<string, JsonValue>>();
  private old = new Map<Hash, Record<string, JsonValue>>();
  private youngBytes = 0;

  constructor(private readonly capacity: number) {}

  has(hash: Hash): boolean {
    return this.young.has(hash) || this.old.has(hash);
  }

  get empty(): boolean {
    return this.young.size === 0 && this.old.size === 0;
  }

  get(hash: Hash): Record<string, JsonValue> | undefined {
    const found = this.young.get(hash);
    if (found) return found;
    const aging = this.old.get(hash);
    if (!aging) return undefined;
    this.old.delete(hash);
    this.set(hash, aging, sizeOf(aging));
    return aging;
  }

  set(hash: Hash, record: Record<string, JsonValue>, size: number): void {
    if (this.youngBytes + size > this.capacity / 2) {
      this.old = this.young;
      this.young = new Map();
      this.youngBytes = 0;
    }
    this.young.set(hash, record);
    this.youngBytes += size;
  }
}

/** About the encoded size of a record: its text, most of it. */
function sizeOf(record: Record<string, JsonValue>): number {
  const text = record.d ?? record.b;
  return 16 + (typeof text === "string" ? text.length : 0);
}

/**
 * The tree of a thread namespace's channels after a put: the parent checkpoint's (`parent`: the
 * namespace's entry in its memory) with the request's channels applied, only the changed paths
 * rebuilt. Undefined when a delta does not apply (a split channel is not at the delta's base)
 * or a channel `kept` is not in the parent at its version with a value.
 * `values`: how many values the tree holds, for the manifest's count.
 */
function buildChannels(view: ObjectView, parent: DirEntry | undefined, request: PutRequest): { tree: Hash | null; values: number } | undefined {
  const base = parent?.tree ?? null;
  const changes = new ChangeSet();
  const records = new Map<string, JsonValue | undefined>();
  // Values below grafted subtrees, added and replaced, which updateTree does not count.
  let grafted = 0;
  const set = (segments: string[], value: JsonValue | undefined) => {
    changes.add(segments);
    records.set(segments.join("/"), value);
  };
  const entryOf = (segment: string) => (base ? findInDirectory(view, base, segment) : undefined);
  const listed = new Set<string>();
  for (const [name, write] of Object.entries(request.channels)) {
    const segment = nameSegment(name);
    listed.add(segment);
    if (write.split) {
      const entry = entryOf(segment);
      if (write.split.full) {
        // The whole key set: a subtree of its own in place of the old one.
        const keys = new ChangeSet();
        const keyRecords = new Map<string, JsonValue>();
        for (const [key, value] of Object.entries(write.split.set)) {
          keys.add([nameSegment(key)]);
          keyRecords.set(nameSegment(key), keyRecordOf(value));
        }
        const built = updateTree(view, null, keys, (segments) => keyRecords.get(segments[0]!));
        grafted += built.valueDelta;
        changes.graft([segment], built.root);
      } else {
        if (!isSplitRecord(view, entry, write.split.base)) return undefined;
        for (const [key, value] of Object.entries(write.split.set)) set([segment, nameSegment(key)], keyRecordOf(value));
        for (const key of write.split.delete ?? []) set([segment, nameSegment(key)], undefined);
      }
      set([segment], splitRecord(write.v));
      continue;
    }
    if (write.value === undefined && (request.mode === "full" || write.kept === true)) {
      // No value sent: the parent's value at that version stays; another version's is unknown.
      const entry = entryOf(segment);
      const current = entry?.value ? view.readValue(entry.value) : undefined;
      if (isRecord(current) && current.v === write.v && (write.kept !== true || typeof current.t === "string" || current.split === true)) continue;
      // A value to keep that the parent does not hold: stale (the adapter sends every value).
      if (write.kept === true) return undefined;
    }
    changes.graft([segment], null); // a channel stored key by key before: its keys go
    set([segment], write.value ? { v: write.v, ...recordOf(write.value) } : { v: write.v });
  }
  const removed =
    request.mode === "full"
      ? (base ? collectEntries(view, base, []) : []).map((entry) => entry.name).filter((segment) => !listed.has(segment))
      : (request.removed ?? []).map(nameSegment);
  for (const segment of removed) {
    changes.graft([segment], null);
    set([segment], undefined);
  }
  const updated = updateTree(view, base, changes, (segments) => records.get(segments.join("/")));
  for (const tree of updated.replaced) grafted -= countValues(view, tree);
  return { tree: updated.root, values: valuesBelow(view, parent) + updated.valueDelta + grafted };
}

/**
 * The entries of a directory (bucket order), its partition nodes read level by level, each
 * level's nodes grouped by pack (ObjectView.readNodes): a checkpoint's nodes lie in the packs
 * of the many steps that wrote them, and read one by one each would be a read of its own.
 */
function directoryEntries(view: ObjectView, dir: Hash): DirEntry[] {
  const entries: DirEntry[] = [];
  let level = [dir];
  while (level.length > 0) level = entriesOfLevel(view.readNodes(level), entries);
  return entries;
}

/**
 * The entries of a level's leaves appended to `entries`; the next level (its split nodes'
 * buckets) returned. A function of its own, as each loop of a read over the 10k channels: a
 * new process runs such a loop ~10k times before V8 optimizes it, and a loop inside a larger
 * function had all of it compiled again for the loop (on-stack replacement), readNodes with it.
 */
function entriesOfLevel(nodes: readonly TreeNode[], entries: DirEntry[]): Hash[] {
  const next: Hash[] = [];
  for (const node of nodes) {
    if (node.kind === "leaf") for (const entry of node.entries) entries.push(entry);
    else for (const bucket of node.buckets) next.push(bucket.hash);
  }
  return next;
}

/**
 * The hashes of the values readChannels reads, in its order: each channel's value, then the
 * values of its keys (a split channel's), whose entries `below` holds by the channel's position.
 */
function valueHashes(view: ObjectView, top: readonly DirEntry[]): { hashes: Hash[]; below: Array<DirEntry[] | undefined> } {
  const hashes: Hash[] = [];
  const below: Array<DirEntry[] | undefined> = new Array(top.length);
  for (let i = 0; i < top.length; i++) {
    const channel = top[i]!;
    if (channel.value) hashes.push(channel.value);
    if (channel.tree) {
      const keys = (below[i] = directoryEntries(view, channel.tree));
      for (const key of keys) if (key.value) hashes.push(key.value);
    }
  }
  return { hashes, below };
}

/** The channels into `columns`, from their records in valueHashes' order. */
function fillColumns(columns: ChannelColumns, top: readonly DirEntry[], below: ReadonlyArray<DirEntry[] | undefined>, records: ReadonlyArray<Record<string, JsonValue>>): void {
  const { names, versions, values, splits } = columns;
  let at = 0;
  for (let i = 0; i < top.length; i++) {
    const channel = top[i]!;
    const record = channel.value ? records[at++]! : undefined;
    const keys = below[i];
    if (record?.split === true) {
      const split = { keys: [] as string[], values: [] as SerializedValue[], orders: [] as number[] };
      if (keys)
        for (const key of keys)
          if (key.value) {
            const keyRecord = records[at++]!;
            split.keys.push(segmentName(key.name));
            split.values.push(serializedOf(keyRecord));
            split.orders.push(orderOf(keyRecord));
          }
      names.push(segmentName(channel.name));
      versions.push(record.v as string | number);
      values.push(null);
      splits.push(inObjectOrder(split));
      continue;
    }
    if (keys) for (const key of keys) if (key.value) at += 1;
    if (!record) continue;
    names.push(segmentName(channel.name));
    versions.push(record.v as string | number);
    values.push(typeof record.t === "string" ? serializedOf(record) : null);
    splits.push(null);
  }
}

/**
 * Whether a channel's entry is the record of a split channel at version `base`. A value is
 * known by its hash: the record a put writes at that version hashes to the entry's value when
 * it is that record, which spares reading it (it lies in a compressed pack, decompressed whole
 * for it); anything else (another version, a record written otherwise) is read.
 */
function isSplitRecord(view: ObjectView, entry: DirEntry | undefined, base: string | number | null | undefined): boolean {
  if (!entry?.value) return false;
  if ((typeof base === "string" || typeof base === "number") && entry.value === sha256(encodeJson(splitRecord(base)))) return true;
  const current = view.readValue(entry.value);
  return isRecord(current) && current.split === true && current.v === base;
}

/** The record of a channel stored key by key (its keys are below it). */
function splitRecord(version: string | number): { [key: string]: JsonValue } {
  return { v: version, split: true };
}

/** The values below a thread namespace's entry: as its record counts them, else counted. */
function valuesBelow(view: ObjectView, entry: DirEntry | undefined): number {
  if (!entry?.tree) return 0;
  const record = entry.value ? view.readValue(entry.value) : undefined;
  if (isRecord(record) && Number.isSafeInteger(record.values)) return record.values as number;
  return countValues(view, entry.tree);
}

/** The values at and below an entry. */
function valuesAt(view: ObjectView, entry: DirEntry | undefined): number {
  return (entry?.value ? 1 : 0) + valuesBelow(view, entry);
}

/** `object[key] = value`, "__proto__" included (as an own key, as JSON.parse makes it: an assignment sets the prototype). */
function setOwn<T>(object: Record<string, T>, key: string, value: T): void {
  if (key === "__proto__") Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  else object[key] = value;
}

/** Channels as TupleRecord.channels has them: a map by name (for a reader that does not ask for columns). */
function channelMap(columns: ChannelColumns): TupleRecord["channels"] {
  const channels: TupleRecord["channels"] = {};
  const { names, versions, values, splits } = columns;
  for (let i = 0; i < names.length; i++) {
    const v = versions[i]!;
    const value = values[i];
    const split = splits[i];
    if (split) {
      const map: Record<string, SerializedValue> = {};
      for (let k = 0; k < split.keys.length; k++) setOwn(map, split.keys[k]!, split.values[k]!);
      setOwn(channels, names[i]!, { v, split: map });
    } else setOwn(channels, names[i]!, value ? { v, value } : { v });
  }
  return channels;
}

function recordOf(value: SerializedValue): { [key: string]: JsonValue } {
  return value.b !== undefined ? { t: value.t, b: value.b } : { t: value.t, d: value.d ?? "" };
}

/** The record of a split channel's key: its value and its place in the object's order (`o`, when the put sent one). */
function keyRecordOf(value: KeyWrite): { [key: string]: JsonValue } {
  const record = recordOf(value);
  if (isOrder(value.o)) record.o = value.o;
  return record;
}

function isOrder(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

/** A key record's place in its object's order; -1: none (written before APEX kept it, or not a number). */
function orderOf(record: Record<string, JsonValue>): number {
  const o = record.o;
  return isOrder(o) ? o : -1;
}

/**
 * A split channel's keys (read in tree order: by hash) in their object's order: by `o`, those
 * without one after, as they were. Numbers that stay below a few times the number of keys (as
 * the adapter keeps them, unless keys move every step) are placed in slots, one pass; others,
 * or twice the same number (written otherwise), are sorted (stably). (Plain loops into arrays
 * made to size: a new process's first read runs them before V8 optimizes anything.)
 */
function inObjectOrder(split: Required<SplitColumn>): Required<SplitColumn> {
  const { keys, values, orders } = split;
  const count = keys.length;
  let max = -1;
  let numbered = 0;
  let sorted = true;
  for (let i = 0; i < count; i++) {
    const o = orders[i]!;
    if (o < 0) continue;
    numbered += 1;
    if (o > max) max = o;
    else sorted = false;
    if (numbered !== i + 1) sorted = false; // a key without a number before this one
  }
  if (numbered === 0 || sorted) return split;
  const out: Required<SplitColumn> = { keys: new Array<string>(count), values: new Array<SerializedValue>(count), orders: new Array<number>(count) };
  let at = 0;
  const take = (i: number) => {
    out.keys[at] = keys[i]!;
    out.values[at] = values[i]!;
    out.orders[at++] = orders[i]!;
  };
  let slots: Int32Array | undefined;
  if (max < 4 * count + 64) {
    slots = new Int32Array(max + 1).fill(-1);
    for (let i = 0; i < count; i++) {
      const o = orders[i]!;
      if (o < 0) continue;
      if (slots[o] !== -1) {
        slots = undefined;
        break;
      }
      slots[o] = i;
    }
  }
  if (slots) {
    for (let o = 0; o <= max; o++) if (slots[o]! >= 0) take(slots[o]!);
  } else {
    const order = Array.from({ length: count }, (_, i) => i).filter((i) => orders[i]! >= 0);
    order.sort((a, b) => orders[a]! - orders[b]!);
    for (const i of order) take(i);
  }
  for (let i = 0; i < count; i++) if (orders[i]! < 0) take(i);
  return out;
}

/**
 * A stored record as LangGraph's serialized value. A record of a key (`{t, d}` or `{t, b}`, as
 * recordOf writes it, with its `o`) or of a channel (the same with its version `v`) is handed out as it is,
 * not copied (a 10k-value read makes 10k of them): it is shared with the value cache, and
 * nothing downstream changes it (the adapter reads `t`, `d` and `b`).
 */
function serializedOf(record: Record<string, JsonValue>): SerializedValue {
  const { t, d, b } = record;
  if (typeof t === "string" && (typeof d === "string") !== (typeof b === "string")) return record as unknown as SerializedValue;
  return typeof b === "string" ? { t: String(t), b } : { t: String(t), d: String(d ?? "") };
}

function jsonOf(value: SerializedValue): JsonValue | undefined {
  if (value.t !== "json" || value.d === undefined) return undefined;
  try {
    return JSON.parse(value.d) as JsonValue;
  } catch {
    return undefined;
  }
}

/**
 * LangGraph's filter (`metadata[key] === value` for each key, as MemorySaver and the conformance
 * suite's own expectations have it): a key given as undefined (`absent`, or undefined in
 * `filter` when called in this process) matches metadata without that key.
 */
function matchesFilter(metadata: JsonValue | undefined, filter: Record<string, JsonValue>, absent: string[]): boolean {
  const record = isRecord(metadata) ? (metadata as Record<string, JsonValue>) : {};
  // A key whose value is undefined is, in the metadata's JSON, the serializer's record of undefined: as good as absent.
  const has = (key: string) => Object.prototype.hasOwnProperty.call(record, key) && !isUndefinedRecord(record[key]);
  return absent.every((key) => !has(key)) && Object.entries(filter).every(([key, value]) => (value === undefined ? !has(key) : has(key) && isDeepStrictEqual(record[key], value)));
}

/** LangGraph's JsonPlusSerializer's record of an undefined value (`{lc: 2, type: "undefined"}`, as its reviver recognizes it). */
function isUndefinedRecord(value: JsonValue | undefined): boolean {
  return isRecord(value) && value.lc === 2 && value.type === "undefined";
}

function describeStep(request: PutRequest, metadata: JsonValue | undefined): string {
  const meta = isRecord(metadata) ? (metadata as Record<string, JsonValue>) : {};
  const where = threadLabel(request.thread_id, request.checkpoint_ns);
  const step = typeof meta.step === "number" ? ` step ${meta.step}` : "";
  const source = typeof meta.source === "string" ? ` (${meta.source})` : "";
  return `langgraph ${where}${step}${source}`;
}

function isSerialized(value: unknown): value is SerializedValue {
  return isRecord(value) && typeof value.t === "string" && (typeof value.d === "string" || typeof value.b === "string");
}

function checkPutRequest(request: PutRequest): void {
  const bad = (what: string) => new ApexError("APEX_E_BAD_INPUT", `langgraph.put: ${what}.`);
  if (!isRecord(request)) throw bad("the request must be an object");
  for (const name of ["thread_id", "checkpoint_ns", "checkpoint_id"] as const) if (typeof request[name] !== "string") throw bad(`${name} must be a string`);
  if (request.thread_id === "" || request.checkpoint_id === "") throw bad("thread_id and checkpoint_id must not be empty");
  if (request.parent_id !== null && typeof request.parent_id !== "string") throw bad("parent_id must be a string or null");
  if (request.mode !== "delta" && request.mode !== "full") throw bad('mode must be "delta" or "full"');
  if (request.parent_apex !== undefined && typeof request.parent_apex !== "string") throw bad("parent_apex must be a string");
  if (!isSerialized(request.rest) || !isSerialized(request.metadata)) throw bad("rest and metadata must be serialized values");
  if (!isRecord(request.channels)) throw bad("channels must be an object");
  if (typeof request.format !== "number") throw bad("format must be a number");
}

function requiredString(params: Record<string, unknown>, name: string): string {
  const value = params[name];
  if (typeof value !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} must be a string.`);
  return value;
}

/** A request parameter that may be absent; anything but a string is bad input. */
export function optionalString(params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} must be a string.`);
  return value;
}
