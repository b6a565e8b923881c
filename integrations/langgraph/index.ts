/**
 * `import { ApexSaver } from "apex-sessions/langgraph"`: a LangGraph.js checkpointer that keeps
 * a graph's state in an APEX session. Each LangGraph checkpoint becomes an APEX checkpoint
 * (trigger `langgraph`) whose project memory holds the channel values below
 * `/langgraph/<thread>/<namespace>/`, so a channel that did not change is stored once, and
 * `apex checkpoint list|show|diff`, retention and archives work on them
 * (plugins/checkpoint/langgraph.ts is the store side and documents the layout).
 *
 * Where it writes (core/session/client.ts decides, as for every APEX command):
 *  - inside an APEX agent (APEX_SOCKET set): through the supervisor's control socket, into the
 *    agent's session (APEX_SESSION_ID); the agent never opens the store;
 *  - elsewhere: through the project's supervisor while one runs, else on the store directly,
 *    with the project's plugins loaded (retention runs after each checkpoint as it would).
 *
 * `@langchain/langgraph-checkpoint` is an optional peer dependency of APEX: only this module
 * loads it.
 */
import {
  BaseCheckpointSaver,
  JsonPlusSerializer,
  TASKS,
  WRITES_IDX_MAP,
  compareWritesSortKeys,
  maxChannelVersion,
  writesSortKey,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointPendingWrite,
  type CheckpointTuple,
  type DeltaChannelHistory,
  type PendingWrite,
  type SerializerProtocol,
} from "@langchain/langgraph-checkpoint";
import type { RunnableConfig } from "@langchain/core/runnables";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { currentActor } from "../../core/actor.js";
import { isDirectory, locateProject, type ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { unknownMethod } from "../../core/rpc/protocol.js";
import { openSessionClient, type SessionClient } from "../../core/session/client.js";
import { isSameProcessAlive } from "../../core/session/proc.js";
import { liveSupervisors, type SupervisorRuntime } from "../../core/session/runtime.js";
import type { ChannelWrite, KeyWrite, PutRequest, SerializedValue, SplitColumn, StoredWrite, TupleRecord } from "../../plugins/checkpoint/langgraph.js";
import type { LangGraphReadMethod } from "../../plugins/checkpoint/langgraph-reads.js";

export interface ApexSaverOptions {
  /**
   * The project directory (where apex.config.yaml is, or below it). Default: inside an APEX
   * agent, the agent's session; elsewhere the working directory.
   */
  project?: string;
  /** The APEX session the threads belong to. Default: the agent's session, else the project's current one. */
  session?: string;
  /** LangGraph's serializer (default JsonPlusSerializer). */
  serde?: SerializerProtocol;
  /**
   * Plain-object channel values with at least this many keys are stored key by key, so a step
   * that changes a few keys writes only those (default 64).
   */
  splitKeys?: number;
}

type Version = string | number;

/** What this saver last wrote, or read, for a thread's namespace: lets the next put send only what changed. */
interface ThreadCache {
  checkpointId: string;
  /**
   * The APEX checkpoint that held `checkpointId` when this saver wrote or read it (absent: a store
   * or supervisor that did not say). A delta names it: the same id put again since (by another
   * saver, as MemorySaver and SqliteSaver let a put replace a checkpoint) is another checkpoint.
   */
  apexId?: string;
  versions: Map<string, Version>;
  /** The channel names and versions as the last put had them, in its order. */
  order?: { names: string[]; versions: Version[] };
  /** Split channels (stored key by key): their keys as the last put had them, or as a read found them. */
  splits: Map<string, SplitCache>;
}

interface SplitCache {
  v: Version;
  ordered: OrderedKeys;
}

/**
 * A split channel's keys in the order its object listed them at the last put, with what each
 * held: compared position by position with the next step's object (the same keys in the same
 * order, step after step, when each state is made from the previous one), a 10k-key object is
 * walked without a lookup per key; a key elsewhere is found through `index` (made when needed).
 */
interface OrderedKeys {
  names: string[];
  /** The value when it is a primitive, else NOT_PRIMITIVE. */
  primitives: unknown[];
  /**
   * Each key's place in the object's order as stored (`o`, KeyWrite): along `names`, increasing
   * over the keys that are not array indexes (those an object lists first, in numeric order,
   * whatever their numbers).
   */
  orders: number[];
  /** The number the next key added or moved gets: above every one in `orders`. */
  next: number;
  /** Read from a store whose records of some keys have no `o` (written before APEX kept the order): the next put sends every key, numbered. */
  unnumbered?: true;
  /** The serialized values of the keys that are not primitives (primitives compare as they are). */
  objects: Map<string, SerializedValue>;
  index?: Map<string, number>;
}

const DEFAULT_SPLIT_KEYS = 64;
const NOT_PRIMITIVE = Symbol("not primitive");

export class ApexSaver extends BaseCheckpointSaver {
  private readonly options: ApexSaverOptions;
  private client: Promise<SessionClient> | undefined;
  /** With `project` and no `session`: the session that directory binds (a branch's worktree: its own), fixed at connect. */
  private bound: string | undefined;
  /** The project's directory, once located (named by an error that there is no session). */
  private projectDir: string | undefined;
  private storeDir: string | undefined;
  private location: ProjectLocation | undefined;
  /** The project's live supervisors when the client was opened (supervisorsOf); undefined: not watched. */
  private supervisors: string | undefined;
  /** Clients replaced (supervisorsOf changed), closed once no call runs. */
  private retired: Array<Promise<SessionClient>> = [];
  private running = 0;
  /** The calls under way (a put queued, writes being serialized, a read), which close() waits for. */
  private readonly pending = new Set<Promise<unknown>>();
  private readonly cache = new Map<string, ThreadCache>();
  /** Puts run one after the other: each builds on what the previous one left in the cache. */
  private putQueue: Promise<unknown> = Promise.resolve();
  private readonly splitKeys: number;
  /** The serializer is LangGraph's JsonPlusSerializer itself (not a subclass): see serializeNow and ValueBatch. */
  private readonly plainJson: boolean;

  constructor(options: ApexSaverOptions = {}) {
    super(options.serde);
    this.options = withoutNulls(options);
    this.splitKeys = options.splitKeys ?? DEFAULT_SPLIT_KEYS;
    this.plainJson = Object.getPrototypeOf(this.serde) === JsonPlusSerializer.prototype;
  }

  /**
   * Releases the store (when this saver opened it itself), once the calls under way are done:
   * closed under them, a put or a read failed with LMDB's own "Can not renew a transaction from
   * a closed database", and one not connected yet opened the store again, for good.
   */
  async close(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    const clients = [...this.retired.splice(0), ...(this.client ? [this.client] : [])];
    this.client = undefined;
    for (const client of clients) await (await client.catch(() => undefined))?.close();
  }

  // ---------------------------------------------------------------------------------- reads

  override async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    const threadId = config.configurable?.thread_id as string | undefined;
    if (threadId === undefined || threadId === null) return undefined;
    const ns = (config.configurable?.checkpoint_ns as string | undefined) ?? "";
    const checkpointId = (config.configurable?.checkpoint_id as string | undefined) ?? undefined;
    const record = await this.tupleRecord(String(threadId), ns, checkpointId);
    if (!record) return undefined;
    return this.tupleOf(record, true);
  }

  private async tupleRecord(threadId: string, ns: string, checkpointId: string | undefined): Promise<TupleRecord | undefined> {
    const record = (await this.tracked(this.read("langgraph.getTuple", { thread_id: threadId, checkpoint_ns: ns, ...(checkpointId ? { checkpoint_id: checkpointId } : {}), columns: true }))) as TupleRecord | null | undefined;
    return record ?? undefined;
  }

  /**
   * What LangGraph rebuilds a delta channel (`DeltaChannel`, `MessagesDeltaValue`) from: the
   * pending writes of the step's parents, back to one holding the channel's value. BaseCheckpointSaver
   * walks the parents by getTuple; a step a branch or a merge carried from another session has
   * its parents in that session, not this one, and carries what the walk needs of them instead
   * (`history`, plugins/checkpoint/langgraph-branch.ts): the walk goes on there. (It ended at the
   * carried step: a graph continued in a branch had lost the messages before the branch point.)
   */
  override async getDeltaChannelHistory(options: { config: RunnableConfig; channels: string[] }): Promise<Record<string, DeltaChannelHistory>> {
    const { config, channels } = options;
    if (channels.length === 0) return {};
    const threadId = config.configurable?.thread_id as string | undefined;
    const ns = (config.configurable?.checkpoint_ns as string | undefined) ?? "";
    const remaining = new Set(channels);
    /** Per channel, each step's writes to it, newest step first. */
    const collected = new Map<string, CheckpointPendingWrite[][]>(channels.map((channel) => [channel, []]));
    const seeds = new Map<string, unknown>();
    const take = (tuple: CheckpointTuple) => {
      for (const channel of remaining) collected.get(channel)!.push(tuple.pendingWrites?.filter((write) => write[1] === channel) ?? []);
      for (const channel of [...remaining]) {
        if (!hasOwn(tuple.checkpoint.channel_values, channel)) continue;
        seeds.set(channel, tuple.checkpoint.channel_values[channel]);
        remaining.delete(channel);
      }
    };
    let record = threadId === undefined || threadId === null ? undefined : await this.tupleRecord(String(threadId), ns, (config.configurable?.checkpoint_id as string | undefined) ?? undefined);
    while (record && remaining.size > 0) {
      if (record.history) {
        const carried = record;
        for (const step of carried.history!) {
          if (remaining.size === 0) break;
          const columns = step.seed ?? { names: [], versions: [], values: [], splits: [] };
          take(await this.tupleOf({ ...carried, checkpoint_id: step.checkpoint_id, parent_id: null, channels: {}, columns, writes: step.writes, format: Math.max(carried.format, 4) }, false));
        }
        break;
      }
      if (record.parent_id === null) break;
      record = await this.tupleRecord(record.thread_id, record.checkpoint_ns, record.parent_id);
      if (record) take(await this.tupleOf(record, false));
    }
    const result: Record<string, DeltaChannelHistory> = {};
    for (const channel of channels) {
      const writes = collected.get(channel)!.reverse().flat();
      result[channel] = seeds.has(channel) ? { writes, seed: seeds.get(channel) } : { writes };
    }
    return result;
  }

  override async *list(config: RunnableConfig, options: CheckpointListOptions = {}): AsyncGenerator<CheckpointTuple> {
    const threadId = config.configurable?.thread_id as string | undefined;
    const ns = config.configurable?.checkpoint_ns as string | undefined;
    const checkpointId = config.configurable?.checkpoint_id as string | undefined;
    const before = options.before?.configurable?.checkpoint_id as string | undefined;
    const params: Record<string, unknown> = {
      ...(threadId !== undefined && threadId !== null ? { thread_id: String(threadId) } : {}),
      ...(ns !== undefined ? { checkpoint_ns: ns } : {}),
      ...(checkpointId ? { checkpoint_id: checkpointId } : {}),
      ...(before ? { before } : {}),
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
      ...(options.filter ? filterParams(options.filter) : {}),
      columns: true,
    };
    let records: TupleRecord[];
    try {
      records = (await this.tracked(this.read("langgraph.list", params))) as TupleRecord[];
    } catch (error) {
      // A history larger than one reply of the supervisor carries (256 MiB: 50 steps of a 6 MB
      // state), which the store read directly gives: read a few steps at a time.
      if (!(error instanceof ApexError && error.code === "APEX_E_TOO_LARGE")) throw error;
      yield* this.listInPages(params, options.limit);
      return;
    }
    for (const record of records) yield await this.tupleOf(record, false);
  }

  /**
   * list(), LIST_PAGE steps a request (fewer while one is still too large for a reply). Within one
   * thread namespace, whose steps come newest first, each page goes on before the last step read
   * (a step written meanwhile is not read twice); across several, after the last step read (its
   * thread, namespace and id: `after`). They went on after as many steps as were read so far
   * (`offset`, which an APEX before `after` still reads): a step written meanwhile moved them, the
   * next page read one again, and the list failed as if the supervisor could not read in parts.
   */
  private async *listInPages(params: Record<string, unknown>, limit: number | undefined): AsyncGenerator<CheckpointTuple> {
    const one = params.thread_id !== undefined && params.checkpoint_ns !== undefined;
    let size = LIST_PAGE;
    let remaining = limit ?? Infinity;
    let before = params.before as string | undefined;
    let offset = 0;
    let after: { thread_id: string; checkpoint_ns: string; checkpoint_id: string } | undefined;
    const seen = new Set<string>();
    while (remaining > 0) {
      const want = Math.min(size, remaining);
      let page: TupleRecord[];
      try {
        page = (await this.tracked(this.read("langgraph.list", { ...params, ...(one ? (before !== undefined ? { before } : {}) : after ? { after, offset } : {}), limit: want }))) as TupleRecord[];
      } catch (error) {
        if (!(error instanceof ApexError && error.code === "APEX_E_TOO_LARGE") || want <= 1) throw error;
        size = Math.max(1, Math.floor(want / 2));
        continue;
      }
      for (const record of page) {
        // (a supervisor of an APEX before `offset` answers the first page again: not read twice)
        const key = JSON.stringify([record.thread_id, record.checkpoint_ns, record.checkpoint_id]);
        if (seen.has(key)) throw new ApexError("APEX_E_TOO_LARGE", "The LangGraph checkpoints listed are larger than one reply over the supervisor's socket carries (256 MiB of JSON), and the supervisor runs an APEX that does not read them in parts.", { hint: "Continue the session with this APEX (`apex stop`, then `apex start --continue last`), or pass a `limit` to list." });
        seen.add(key);
        yield await this.tupleOf(record, false);
      }
      if (page.length === 0 || page.length < want) return;
      remaining -= page.length;
      offset += page.length;
      const last = page[page.length - 1]!;
      before = last.checkpoint_id;
      after = { thread_id: last.thread_id, checkpoint_ns: last.checkpoint_ns, checkpoint_id: last.checkpoint_id };
    }
  }

  // ---------------------------------------------------------------------------------- writes

  override async put(config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, newVersions: ChannelVersions): Promise<RunnableConfig> {
    const threadId = config.configurable?.thread_id as string | undefined;
    if (threadId === undefined || threadId === null) {
      throw new Error('Failed to put checkpoint: the RunnableConfig has no "thread_id" in its "configurable" property.');
    }
    const ns = (config.configurable?.checkpoint_ns as string | undefined) ?? "";
    const parentId = (config.configurable?.checkpoint_id as string | undefined) ?? null;
    const run = this.putQueue.then(() => this.putNow(String(threadId), ns, parentId, checkpoint, metadata, newVersions));
    this.putQueue = run.catch(() => undefined);
    await this.tracked(run);
    return { configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id } };
  }

  private async putNow(threadId: string, ns: string, parentId: string | null, checkpoint: Checkpoint, metadata: CheckpointMetadata, newVersions: ChannelVersions): Promise<void> {
    const { channel_values: values = {}, channel_versions: versions = {}, ...rest } = checkpoint;
    const key = cacheKey(threadId, ns);
    const base = {
      thread_id: threadId,
      checkpoint_ns: ns,
      checkpoint_id: checkpoint.id,
      parent_id: parentId,
      format: typeof checkpoint.v === "number" ? checkpoint.v : 4,
      rest: await this.serialize(rest),
      metadata: await this.serialize(metadata),
    };
    let stale = 0;
    let resent = false;
    // Every value sent, none left to the parent: after the store refused a request as stale (its
    // parent gone, say: `apex checkpoint delete`, another process's deleteThread), a value left to
    // the parent was lost with it.
    let complete = false;
    for (let attempt = 0; ; attempt++) {
      const cached = this.cache.get(key);
      const delta = attempt === 0 && cached !== undefined && parentId !== null && cached.checkpointId === parentId ? cached : undefined;
      // The cache is updated in place as the request is built (a 10k-channel state is not
      // copied every step); it is dropped unless the store accepts the request.
      this.cache.delete(key);
      const next: ThreadCache = delta ?? { checkpointId: checkpoint.id, versions: new Map(), splits: new Map() };
      const channels: Record<string, ChannelWrite> = {};
      const channelValues = values as Record<string, unknown>;
      const { names, current, changed, added } = diffVersions(versions as Record<string, Version>, delta);
      const count = names.length;
      const knownBefore = delta?.versions.size ?? 0;
      for (const { name, version } of changed) {
        const hasValue = hasOwn(channelValues, name);
        if (hasValue && (complete || hasOwn(newVersions, name))) {
          try {
            setOwn(channels, name, await this.channelWrite(name, version, channelValues[name], delta, next));
          } catch (error) {
            throw inContext(error, `channel ${JSON.stringify(name)} of the LangGraph checkpoint ${checkpoint.id} (thread ${JSON.stringify(threadId)})`, { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id, channel: name });
          }
        } else {
          // Not new at this step: the parent's value at this version, which the store keeps (`kept`:
          // there is one), or refuses as stale when the parent has none (nothing is stored without
          // it). Without a parent, only the new values are stored (LangGraph's newVersions contract).
          setOwn(channels, name, hasValue && parentId !== null ? { v: version, kept: true } : { v: version });
          next.splits.delete(name);
        }
        next.versions.set(name, version);
      }
      next.order = { names, versions: current };
      let removed: string[] = [];
      // Fewer of the parent's channels than it had: some are gone (even if as many were added).
      if (delta && count - added < knownBefore) {
        removed = [...delta.versions.keys()].filter((name) => !hasOwn(versions, name));
        for (const name of removed) {
          next.versions.delete(name);
          next.splits.delete(name);
        }
      }
      const request: PutRequest = { ...base, mode: delta ? "delta" : "full", ...(delta?.apexId !== undefined ? { parent_apex: delta.apexId } : {}), channels, ...(removed.length > 0 ? { removed } : {}) };
      // The supervisor ended with the put sent and not answered (`apex stop`, a crash): stored
      // before it went, the put is done (sent again, it would be a second APEX checkpoint);
      // else it is sent again, whole, the way a new call goes (the store, or the next supervisor).
      const onEnded = resent
        ? undefined
        : async (ended: SupervisorRuntime) => {
            resent = true;
            return (await this.stored(ended.session_id, threadId, ns, checkpoint.id)) ? {} : { resend: true };
          };
      const answer = (await this.call("langgraph.put", request as unknown as Record<string, unknown>, onEnded)) as { stale?: boolean; resend?: boolean; apex?: { id?: unknown } };
      if (answer?.resend) continue;
      if (answer?.stale) {
        // The memory is not what this saver thought: send the whole checkpoint, every value (once).
        complete = true;
        if (++stale < 2) continue;
        throw new ApexError("APEX_E_CONFLICT", `The LangGraph checkpoint ${checkpoint.id} of thread ${threadId} could not be written: the memory changed while it was sent.`, {
          hint: "Another writer changed the thread meanwhile. Nothing was written; put it again (a graph run again resumes from the thread's latest step stored).",
          details: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id },
        });
      }
      next.checkpointId = checkpoint.id;
      // (a put its supervisor stored before it ended has no answer: the next step's delta names no APEX checkpoint, as before APEX named it)
      if (typeof answer?.apex?.id === "string") next.apexId = answer.apex.id;
      else delete next.apexId;
      this.cache.set(key, next);
      return;
    }
  }

  /** A channel's new value: whole, or key by key for a large plain object (only the keys that changed since the cached version). */
  private async channelWrite(name: string, version: Version, value: unknown, delta: ThreadCache | undefined, next: ThreadCache): Promise<ChannelWrite> {
    // The keys are listed once: on a large object (dictionary mode) every listing walks them all.
    const object = isPlainObject(value) ? value : undefined;
    const names = object ? Object.keys(object) : [];
    if (!object || names.length < this.splitKeys) {
      next.splits.delete(name);
      return { v: version, value: this.serializeNow(value) ?? (await this.serialize(value)) };
    }
    // Keys stored without their place in the object's order: sent again, all of them, numbered.
    const previous = delta?.splits.get(name)?.ordered.unnumbered ? undefined : delta?.splits.get(name);
    const before = previous?.ordered;
    const { after, changed, kept } = diffKeys(object, names, before);
    const set: Record<string, KeyWrite> = {};
    // A changed primitive, or an object (which may have changed in place): serialized, and sent
    // if its text changed or the key moved; each key sent with its number (`o`), which its record keeps.
    for (const { index, known, moved } of changed) {
      const key = names[index]!;
      // A key with a lone surrogate is no path segment (the store refuses it as a name): the
      // object is stored whole, as a smaller one is, and as MemorySaver keeps it (it was refused,
      // APEX_E_BAD_INPUT, only because it had enough keys to be split).
      if (!key.isWellFormed()) {
        next.splits.delete(name);
        return { v: version, value: await this.serialize(value) };
      }
      const item = object[key];
      let serialized: SerializedValue;
      try {
        serialized = this.serializeNow(item) ?? (await this.serialize(item));
      } catch (error) {
        throw inContext(error, `key ${JSON.stringify(key)} of`, { key });
      }
      // (an object's text is what the next step compares with; a primitive's is not kept)
      if (after.primitives[index] === NOT_PRIMITIVE) after.objects.set(key, serialized);
      else after.objects.delete(key);
      if (moved || !known || !sameSerialized(known, serialized)) setOwn(set, key, keyWrite(serialized, after.orders[index]!));
    }
    const deleted: string[] = [];
    if (before && kept < before.names.length) for (const key of before.names) if (!hasOwn(object, key)) deleted.push(key);
    for (const key of deleted) after.objects.delete(key);
    next.splits.set(name, { v: version, ordered: after });
    return { v: version, split: previous ? { base: previous.v, set, delete: deleted } : { full: true, set } };
  }

  override putWrites(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath?: string): Promise<void> {
    return this.tracked(this.putWritesNow(config, writes, taskId, taskPath));
  }

  private async putWritesNow(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath?: string): Promise<void> {
    const threadId = config.configurable?.thread_id as string | undefined;
    const checkpointId = config.configurable?.checkpoint_id as string | undefined;
    if (threadId === undefined || threadId === null) throw new Error('Failed to put writes: the RunnableConfig has no "thread_id" in its "configurable" property.');
    if (checkpointId === undefined || checkpointId === null) throw new Error('Failed to put writes: the RunnableConfig has no "checkpoint_id" in its "configurable" property.');
    // Every value serialized before anything is sent: a value that cannot be stored writes none of the task's.
    const serialized = await Promise.all(
      writes.map(async ([channel, value], index) => {
        try {
          // (own keys only: a channel named "constructor" is not Object's)
          return { channel, idx: hasOwn(WRITES_IDX_MAP, channel) ? WRITES_IDX_MAP[channel]! : index, value: await this.serialize(value) };
        } catch (error) {
          throw inContext(error, `the write to channel ${JSON.stringify(channel)} of task ${JSON.stringify(taskId)} (thread ${JSON.stringify(String(threadId))}, checkpoint ${checkpointId})`, { thread_id: String(threadId), checkpoint_id: checkpointId, channel, task_id: taskId });
        }
      }),
    );
    const params = {
      thread_id: String(threadId),
      checkpoint_ns: (config.configurable?.checkpoint_ns as string | undefined) ?? "",
      checkpoint_id: checkpointId,
      task_id: taskId,
      task_path: taskPath ?? "",
      writes: serialized,
    };
    // Sent again if its supervisor ended before it answered: writes kept once, a second time changes nothing.
    await this.call("langgraph.putWrites", params, () => this.call("langgraph.putWrites", params));
  }

  override async deleteThread(threadId: string): Promise<void> {
    const params = { thread_id: String(threadId) };
    await this.tracked(this.call("langgraph.deleteThread", params, () => this.call("langgraph.deleteThread", params)));
    for (const key of [...this.cache.keys()]) if (key.startsWith(`${String(threadId)}\u0000`)) this.cache.delete(key);
  }

  // ---------------------------------------------------------------------------------- helpers

  /** `work`, counted among the calls under way until it settles (see close). */
  private tracked<T>(work: Promise<T>): Promise<T> {
    this.pending.add(work);
    const done = () => void this.pending.delete(work);
    work.then(done, done);
    return work;
  }

  private async tupleOf(record: TupleRecord, remember: boolean): Promise<CheckpointTuple> {
    const rest = (await this.deserialize(record.rest)) as Omit<Checkpoint, "channel_values" | "channel_versions">;
    const channelValues: Record<string, unknown> = {};
    const channelVersions: Record<string, Version> = {};
    const cache: ThreadCache = { checkpointId: record.checkpoint_id, ...(typeof record.apex?.id === "string" ? { apexId: record.apex.id } : {}), versions: new Map(), splits: new Map() };
    const values = new ValueBatch(this.serde, this.plainJson);
    const target: ChannelTarget = { channelValues, channelVersions, cache, values };
    addChannels(target, record);
    await values.load();
    const checkpoint = { ...rest, channel_values: channelValues, channel_versions: channelVersions } as Checkpoint;
    if (record.format < 4 && record.parent_sends) {
      // Checkpoints before format 4 kept pending sends as writes of the parent: LangGraph expects them as the tasks channel.
      const sends = sortWrites(record.parent_sends);
      channelValues[TASKS] = await Promise.all(sends.map((write) => this.deserialize(write.value)));
      const existing = Object.values(channelVersions);
      channelVersions[TASKS] = existing.length > 0 ? maxChannelVersion(...existing) : this.getNextVersion(undefined);
    }
    const pendingWrites: CheckpointPendingWrite[] = await Promise.all(
      sortWrites(record.writes).map(async (write) => [write.task_id, write.channel, await this.deserialize(write.value)] as CheckpointPendingWrite),
    );
    if (remember) this.cache.set(cacheKey(record.thread_id, record.checkpoint_ns), cache);
    const tuple: CheckpointTuple = {
      config: { configurable: { thread_id: record.thread_id, checkpoint_ns: record.checkpoint_ns, checkpoint_id: record.checkpoint_id } },
      checkpoint,
      metadata: (await this.deserialize(record.metadata)) as CheckpointMetadata,
      pendingWrites,
    };
    if (record.parent_id !== null) tuple.parentConfig = { configurable: { thread_id: record.thread_id, checkpoint_ns: record.checkpoint_ns, checkpoint_id: record.parent_id } };
    return tuple;
  }

  /**
   * A string value serialized without the serializer's round trip, when that gives the same:
   * JsonPlusSerializer writes a string as JSON.stringify does (its replacer returns strings as
   * they are) and encodes that to UTF-8, which serialize() decodes again (JSON.stringify's text
   * has no lone surrogates, so the round trip changes nothing). A put writes a step's changed
   * values this way, without a promise and two copies each. Undefined: use serialize().
   */
  private serializeNow(value: unknown): SerializedValue | undefined {
    return typeof value === "string" && this.plainJson ? { t: "json", d: JSON.stringify(value) } : undefined;
  }

  private async serialize(value: unknown): Promise<SerializedValue> {
    const [type, bytes] = await this.serde.dumpsTyped(value);
    if (type === "json" && bytes.byteLength === 0) throw unstorable(value);
    if (type === "json") return { t: type, d: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8") };
    return { t: type, b: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64") };
  }

  private deserialize(value: SerializedValue): Promise<unknown> {
    if (isEmptyJson(value)) return Promise.resolve(undefined);
    return this.serde.loadsTyped(value.t, value.d !== undefined ? value.d : new Uint8Array(Buffer.from(value.b ?? "", "base64")));
  }

  /**
   * A write to the session. `onEnded`: what to do instead of failing when the supervisor the
   * write went to ended before it answered (see endedSupervisor): a write stopped by `apex
   * stop`, or a supervisor's crash, which may or may not have been committed.
   */
  private async call(method: string, params: Record<string, unknown>, onEnded?: (ended: SupervisorRuntime) => Promise<unknown>): Promise<unknown> {
    let used: SessionClient | undefined;
    try {
      return await this.using((client) => {
        used = client;
        // The caller's actor (`agent:NAME` inside an agent), as a command sends it: the supervisor records the steps it writes as theirs.
        return client.call(method, this.withSession(client, client.via === "socket" ? { ...params, actor: currentActor() } : params));
      });
    } catch (error) {
      const ended = onEnded && this.supervisors !== undefined ? await endedSupervisor(error, used) : undefined;
      if (!ended) throw await this.explained(error);
      return onEnded!(ended);
    }
  }

  /** Whether a LangGraph checkpoint is stored in a session (read as `apex checkpoint show` would: from the store, or the supervisor that runs). */
  private async stored(sessionId: string, threadId: string, ns: string, checkpointId: string): Promise<boolean> {
    const params = { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpointId, session: sessionId };
    const reader = await openSessionClient(this.location!, "read", { session: sessionId });
    try {
      const record = await reader.run("langgraph.getTuple", params, async (store) => (await import("../../plugins/checkpoint/langgraph-reads.js")).readLangGraph(store, "langgraph.getTuple", params));
      return record !== undefined && record !== null;
    } finally {
      await reader.close();
    }
  }

  /**
   * named(error), and a session or checkpoint not found that `apex session archive` moved out of
   * the store said so, with the `apex session unarchive` that brings it back, as the CLI's
   * commands say it: its hint was "See `apex session list`", which does not list it either.
   */
  private async explained(error: unknown): Promise<unknown> {
    const named = this.named(error);
    if (this.location === undefined || !(named instanceof ApexError) || !["APEX_E_NO_SESSION", "APEX_E_NOT_FOUND", "APEX_E_CHECKPOINT_NOT_FOUND"].includes(named.code)) return named;
    return (await import("../../cli/archived-hint.js")).withArchivedHint(named, [], this.location);
  }

  /**
   * "No session is active in this project" with the project's directory: a saver's project is
   * not a command's working directory the user sees (a `project` option, a process's cwd). A
   * LangGraph method nothing serves (the checkpoint plugin is not enabled) said so: it was
   * "Unknown method" with the supervisor's 30 methods, or, on the store, that the supervisor
   * was not running.
   */
  private named(error: unknown): unknown {
    const dir = this.projectDir;
    // Told by the error's details (the supervisor's unknown_method, the store's needs_supervisor), never by its message's text.
    const unknown = unknownMethod(error);
    const needs = error instanceof ApexError && typeof error.details?.needs_supervisor === "string" ? error.details.needs_supervisor : undefined;
    const method = unknown ?? needs;
    if (method !== undefined && /^langgraph\.\w+$/.test(method)) {
      return new ApexError("APEX_E_CONFIG", `ApexSaver's ${method} needs APEX's checkpoint plugin, which ${dir !== undefined ? `the project at ${dir}` : "the project"} does not enable${unknown !== undefined ? " (or its supervisor runs an older APEX)" : ""}.`, {
        hint: `Add \`checkpoint: {}\` under \`plugins:\` in apex.config.yaml (a \`plugins:\` section lists every plugin it enables); a running session takes it once continued (\`apex stop\`, then \`apex start --continue last\`).${/getTuple|list/.test(method) ? "" : " Nothing was written."}`,
        details: { method, ...(dir !== undefined ? { project_dir: dir } : {}) },
        cause: error,
      });
    }
    // The supervisor closed the connection before it answered (details.connection, set where the socket's close became this error; also as relayed by `apex serve`).
    if (error instanceof ApexError && error.code === "APEX_E_RPC" && error.details?.connection === "closed") {
      // (a saver outside an agent finds out what became of a write: see endedSupervisor)
      return new ApexError(error.code, error.message, {
        hint: "The session's supervisor ended (`apex stop`, a crash) or dropped the connection: a write may or may not have been stored. `apex status` shows the session; a graph run again on the thread resumes from its latest step stored.",
        ...(error.details ? { details: error.details } : {}),
        cause: error,
      });
    }
    if (!(error instanceof ApexError) || error.code !== "APEX_E_NO_SESSION" || dir === undefined || error.message.includes(dir)) return error;
    // A graph run to its end left no session active: its threads are still read, from the ended session named.
    const ended = this.options.session === undefined ? " An ended session's threads are read by a saver that names it: `new ApexSaver({ project, session: ID })` (`apex session history` lists them)." : "";
    return new ApexError(error.code, `${error.message.replace(/\.$/, "")} (the project at ${dir}).`, { hint: `${error.hint ?? ""}${ended}`.trim(), details: { ...error.details, project_dir: dir }, cause: error });
  }

  /**
   * A read: the method where a supervisor (or `apex serve`) serves it, else run here on the
   * store the client opened, without loading the project's config and plugins (the direct
   * client loads them for its first write).
   */
  private async read(method: LangGraphReadMethod, params: Record<string, unknown>, again = true): Promise<unknown> {
    let used: SessionClient | undefined;
    try {
      return await this.using((client) => {
        used = client;
        const full = this.withSession(client, params);
        return client.run(method, full, async (store) => (await import("../../plugins/checkpoint/langgraph-reads.js")).readLangGraph(store, method, full));
      });
    } catch (error) {
      // Its supervisor ended before it answered (`apex stop`, a crash): read again the way a new call goes.
      if (again && this.supervisors !== undefined && (await endedSupervisor(error, used))) return this.read(method, params, false);
      throw await this.explained(error);
    }
  }

  private async connected(): Promise<SessionClient> {
    if (this.client && this.supervisors !== undefined && this.storeDir !== undefined && supervisorsOf(this.storeDir) !== this.supervisors) {
      // A supervisor started or stopped since this saver connected: the way to the session is
      // decided again, as for a new command (through a supervisor that runs, never around it; a
      // supervisor gone is not called again). The old client closes once no call uses it.
      this.retired.push(this.client);
      this.client = undefined;
    }
    this.client ??= this.connect();
    try {
      return await this.client;
    } catch (error) {
      this.client = undefined; // a later call tries again (a session may have been started meanwhile)
      throw error;
    }
  }

  /** Runs a call on the client, counted, so that a client replaced meanwhile is closed once no call uses it. */
  private async using<T>(fn: (client: SessionClient) => Promise<T>): Promise<T> {
    this.running += 1;
    try {
      return await fn(await this.connected());
    } finally {
      this.running -= 1;
      if (this.running === 0 && this.retired.length > 0) {
        for (const old of this.retired.splice(0)) void old.then((client) => client.close()).catch(() => undefined);
      }
    }
  }

  private withSession(client: SessionClient, params: Record<string, unknown>): Record<string, unknown> {
    const session = this.options.session ?? this.bound ?? (client.via === "socket" && this.options.project === undefined ? process.env.APEX_SESSION_ID : undefined);
    return session ? { ...params, session } : params;
  }

  private async connect(): Promise<SessionClient> {
    // Inside an agent, APEX_SOCKET reaches its supervisor; `project` names another project explicitly.
    const saved = process.env.APEX_SOCKET;
    const savedTree = process.env.APEX_WORKTREE;
    const project = this.options.project !== undefined ? resolve(this.options.project) : undefined;
    if (project !== undefined && !isDirectory(project)) {
      // Not searched from (a missing directory has no parents to search): said as such, not as "no session".
      throw new ApexError("APEX_E_CONFIG_NOT_FOUND", `ApexSaver's project directory ${project} ${existsSync(project) ? "is not a directory" : "does not exist"}.`, {
        hint: "Pass as `project` the directory of an APEX project (where apex.config.yaml or .apex/ is, or one below it), or leave it out to use the working directory's project.",
        details: { project },
      });
    }
    if (project !== undefined) {
      delete process.env.APEX_SOCKET;
      // The session is the one a command run in `project` acts on (a branch's worktree: the
      // branch's), reached through its supervisor when it runs: not the one this process's own
      // directory would bind, which may be another tree or repository altogether.
      process.env.APEX_WORKTREE = project;
    }
    try {
      const location = locateProject(project !== undefined ? { cwd: project } : {});
      this.location = location;
      this.projectDir = location.projectDir;
      this.storeDir = location.storeDir;
      // The project's supervisors as the way to the session is decided (read before it is: one
      // starting meanwhile is seen by the next call). Inside an agent, or for a remote session,
      // the way is fixed: not watched.
      this.supervisors = process.env.APEX_SOCKET !== undefined || process.env.APEX_REMOTE ? undefined : supervisorsOf(location.storeDir);
      const client = await openSessionClient(location, "write", this.options.session !== undefined ? { session: this.options.session } : {});
      if (project !== undefined && this.options.session === undefined) {
        try {
          this.bound = client.supervisor?.session_id ?? (client.via === "store" ? await client.run("session.binding", {}, async (store) => (await import("../../core/session/sessions.js")).boundSessionId(store)) : undefined);
        } catch (error) {
          await client.close();
          throw error;
        }
      }
      return client;
    } finally {
      if (saved !== undefined) process.env.APEX_SOCKET = saved;
      if (savedTree === undefined) delete process.env.APEX_WORKTREE;
      else process.env.APEX_WORKTREE = savedTree;
    }
  }
}

/** Where tupleOf puts the channels it reads. */
interface ChannelTarget {
  channelValues: Record<string, unknown>;
  channelVersions: Record<string, Version>;
  cache: ThreadCache;
  values: ValueBatch;
}

/**
 * The channels of a tuple record read into `target` (a function of its own, not a loop of the
 * async tupleOf: a new process's first read runs it 10k times before V8 optimizes it, and a
 * loop in tupleOf had all of tupleOf compiled again for it).
 */
function addChannels(target: ChannelTarget, record: TupleRecord): void {
  const columns = record.columns;
  if (columns) {
    // (a store that knows `columns`: parallel arrays, walked by position)
    const { names, versions, values: stored, splits } = columns;
    for (let i = 0; i < names.length; i++) addChannel(target, names[i]!, versions[i]!, stored[i] ?? undefined, splits[i] ?? undefined);
    return;
  }
  // Keys and a lookup each, not Object.entries: a 10k-channel record is a dictionary-mode object.
  const channels = record.channels;
  for (const name of Object.keys(channels)) {
    const channel = channels[name]!;
    let split: SplitColumn | undefined;
    if (!channel.value && channel.split) {
      const keys = Object.keys(channel.split);
      split = { keys, values: keys.map((key) => channel.split![key]!) };
    }
    addChannel(target, name, channel.v, channel.value, split);
  }
}

/** One channel read into `target`: its version, and its value (whole, or key by key: `split`) to load. */
function addChannel(target: ChannelTarget, name: string, v: Version, value: SerializedValue | undefined, split: SplitColumn | undefined): void {
  setOwn(target.channelVersions, name, v);
  target.cache.versions.set(name, v);
  if (value) target.values.add(value, target.channelValues, name, undefined);
  else if (split) {
    const object: Record<string, unknown> = {};
    // The keys as a put compares them (OrderedKeys), in the order of the object handed out.
    const ordered: OrderedKeys = { names: [], primitives: [], orders: [], next: 0, objects: new Map() };
    const { keys, values, orders } = split;
    for (let k = 0; k < keys.length; k++) target.values.add(values[k]!, object, keys[k]!, ordered);
    // The keys come in their object's order (by `o`), so their numbers increase; a store before
    // `o` (its puts do not keep it) sent none: numbered as they come, as good as any there.
    if (orders && orders.length === keys.length) {
      ordered.orders = orders;
      for (const o of orders) {
        if (o < 0) ordered.unnumbered = true;
        else if (o >= ordered.next) ordered.next = o + 1;
      }
    } else {
      ordered.orders = keys.map((_, k) => k);
      ordered.next = keys.length;
    }
    setOwn(target.channelValues, name, object);
    target.cache.splits.set(name, { v, ordered });
  }
}

/**
 * Values to deserialize, in one go where that is the same as one by one: LangGraph's
 * JsonPlusSerializer revives an array element by element, so the JSON texts of many values
 * parse as one array (one JSON.parse of the whole state instead of one call per value). Each
 * value goes to `object[key]`, and with `ordered`, into the saver's cache of a split channel's
 * keys (a target per value, not a closure: a 10k-key state makes 10k of them). Only with
 * JsonPlusSerializer itself (`plainJson`): a subclass's loadsTyped (one that revives dates from
 * their text, say) was skipped for every value without an "lc" key and every plain string, so
 * the state came back as JsonPlusSerializer reads it, not as the saver's serde does; with a
 * subclass each value is loaded by it, one by one.
 */
class ValueBatch {
  private readonly json: string[] = [];
  private readonly jsonAt: number[] = [];
  private readonly others: number[] = [];
  private readonly values: SerializedValue[] = [];
  private readonly objects: Array<Record<string, unknown>> = [];
  private readonly names: string[] = [];
  private readonly caches: Array<OrderedKeys | undefined> = [];
  /** Where each value's key is in its `caches` entry. */
  private readonly cacheAt: number[] = [];

  constructor(
    private readonly serde: SerializerProtocol,
    private readonly plainJson: boolean,
  ) {}

  add(value: SerializedValue, object: Record<string, unknown>, key: string, ordered: OrderedKeys | undefined): void {
    // The key's place in `ordered`: the value itself once it is known to be a primitive.
    const at = ordered ? ordered.names.push(key) - 1 : -1;
    if (isEmptyJson(value)) {
      setOwn(object, key, undefined);
      ordered?.primitives.push(undefined);
      return;
    }
    if (value.t === "json" && value.d !== undefined && this.plainJson) {
      const text = value.d;
      // A JSON string without escapes (what a string value serializes to, most often) is the
      // text between its quotes: no parse, and V8 slices it without copying.
      if (text.length >= 2 && text.charCodeAt(0) === QUOTE && text.charCodeAt(text.length - 1) === QUOTE && text.indexOf("\\") === -1 && text.indexOf('"', 1) === text.length - 1) {
        const string = text.slice(1, -1);
        setOwn(object, key, string);
        ordered?.primitives.push(string);
        return;
      }
      this.json.push(text);
      this.jsonAt.push(this.values.length);
    } else this.others.push(this.values.length);
    // The key takes its place in the object now (its value comes with load()): an object lists its keys in the order they were set.
    setOwn(object, key, undefined);
    this.values.push(value);
    this.objects.push(object);
    this.names.push(key);
    this.caches.push(ordered);
    this.cacheAt.push(at);
    ordered?.primitives.push(NOT_PRIMITIVE); // until it is loaded
  }

  async load(): Promise<void> {
    if (this.json.length > 0) {
      const text = `[${this.json.join(",")}]`;
      // Without an "lc" key anywhere, JsonPlusSerializer's reviver returns what JSON.parse does
      // (it only revives objects marked lc: 1 or 2), one promise per value and object later.
      const loaded = (text.includes('"lc"') ? await this.serde.loadsTyped("json", text) : JSON.parse(text)) as unknown[];
      for (let i = 0; i < loaded.length; i++) this.set(this.jsonAt[i]!, loaded[i]);
    }
    for (const at of this.others) {
      const value = this.values[at]!;
      this.set(at, await this.serde.loadsTyped(value.t, value.d !== undefined ? value.d : new Uint8Array(Buffer.from(value.b ?? "", "base64"))));
    }
  }

  private set(at: number, loaded: unknown): void {
    const name = this.names[at]!;
    setOwn(this.objects[at]!, name, loaded);
    const ordered = this.caches[at];
    if (!ordered) return;
    // A primitive compares with ===; an object by the text it was read from.
    if (isPrimitive(loaded)) ordered.primitives[this.cacheAt[at]!] = loaded;
    else ordered.objects.set(name, this.values[at]!);
  }
}

const QUOTE = 0x22;

/** Steps a list() reads a request when its whole answer was too large for one reply of the supervisor. */
const LIST_PAGE = 8;

/** How long a write waits for a supervisor that closed its connection to be gone (its shutdown closes the store, then exits). */
const ENDING_MS = 5_000;

/**
 * The supervisor a write went to, when the write failed because that supervisor ended: it
 * closed the connection before answering (`apex stop` ends every connection, a crash too), or
 * its socket was gone; and the process is gone now (waited for up to ENDING_MS). Undefined
 * otherwise: a supervisor still alive may yet commit the write, which is not sent again.
 */
async function endedSupervisor(error: unknown, client: SessionClient | undefined): Promise<SupervisorRuntime | undefined> {
  const runtime = client?.via === "socket" ? client.supervisor : undefined;
  if (!runtime || !(error instanceof ApexError) || error.code !== "APEX_E_RPC" || !["closed", "ECONNRESET", "EPIPE", "ECONNREFUSED", "ENOENT"].includes(String(error.details?.connection))) return undefined;
  for (const until = Date.now() + ENDING_MS; isSameProcessAlive(runtime.pid, runtime.start_time); ) {
    if (Date.now() > until) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return runtime;
}

/** The live supervisors of a project's store, as one string that changes when one starts or stops. */
function supervisorsOf(storeDir: string): string {
  return liveSupervisors(storeDir)
    .map((runtime) => `${runtime.pid}:${runtime.start_time}`)
    .sort()
    .join(",");
}

/**
 * A value LangGraph's JsonPlusSerializer writes as no text at all (a function, a symbol, an
 * object whose toJSON gives undefined: JSON.stringify's undefined), which no read could parse:
 * kept, it would fail every later getTuple of its thread with JSON.parse's "Unexpected end of
 * JSON input". Refused where it is written; `inContext` names the channel, key or write.
 */
function unstorable(value: unknown): ApexError {
  const kind = typeof value === "function" ? "a function" : typeof value === "symbol" ? "a symbol" : "a value whose toJSON() gives undefined";
  return new ApexError("APEX_E_BAD_INPUT", `A value cannot be stored: it is ${kind}, which LangGraph's serializer writes as nothing.`, { details: { unstorable: kind } });
}

/** An unstorable() error named by where its value is (`where`: the channel, "key … of" a split channel, the write), with `details`. */
function inContext(error: unknown, where: string, details: Record<string, unknown>): unknown {
  if (!(error instanceof ApexError) || typeof error.details?.unstorable !== "string") return error;
  const { where: inner, ...known } = error.details as { where?: string; unstorable: string };
  const place = inner ? `${inner} ${where}` : where;
  return new ApexError("APEX_E_BAD_INPUT", `The value of ${place} cannot be stored: it is ${known.unstorable}, which LangGraph's serializer writes as nothing, so no read could load it back.`, {
    hint: "Keep functions and symbols out of graph state and writes (store a name or an id that stands for them), or give ApexSaver a serde that encodes them. Nothing was written.",
    details: { ...known, ...details, where: place },
  });
}

/** A stored value with no text (what an unstorable value was written as before it was refused): read as undefined, as JSON.stringify had it. */
function isEmptyJson(value: SerializedValue): boolean {
  return value.t === "json" && value.d === "";
}

/**
 * The options, `project` or `session` given as null (`session: argv.session ?? null`) left out,
 * as undefined is; another value that is not a string is refused here (either failed at the
 * first call with a TypeError from within APEX: "Cannot read properties of null (reading 'trim')").
 */
function withoutNulls(options: ApexSaverOptions): ApexSaverOptions {
  const { project, session, ...rest } = options as { project?: unknown; session?: unknown } & ApexSaverOptions;
  for (const [name, value] of [["project", project], ["session", session]] as const) {
    if (value !== undefined && value !== null && typeof value !== "string") {
      throw new ApexError("APEX_E_BAD_INPUT", `ApexSaver's \`${name}\` must be a string, not ${Array.isArray(value) ? "an array" : typeof value}.`, {
        hint: name === "project" ? "Pass the project's directory, or leave `project` out to use the working directory's project." : "Pass a session id, a unique id prefix or a branch's name, or leave `session` out to use the project's session.",
        details: { option: name },
      });
    }
  }
  return { ...rest, ...(typeof project === "string" ? { project } : {}), ...(typeof session === "string" ? { session } : {}) };
}

function hasOwn(object: object, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(object, key);
}

/**
 * `object[key] = value` for a name LangGraph gives (a channel, a key of a state object, a
 * metadata key): "__proto__" too, which an assignment takes for the object's prototype (the
 * channel or key was lost, and the object's prototype changed), as JSON.parse makes it: an own key.
 */
function setOwn(object: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
  else object[key] = value;
}

function cacheKey(threadId: string, ns: string): string {
  return `${threadId}\u0000${ns}`;
}

/**
 * A list filter as the store takes it: JSON drops a key whose value is undefined, which made
 * `{source: undefined}` no filter at all; such keys go in `filter_absent` and match metadata
 * without that key, as MemorySaver (and the conformance suite's own expectations) have it.
 */
function filterParams(filter: Record<string, unknown>): { filter: Record<string, unknown>; filter_absent?: string[] } {
  const defined: Record<string, unknown> = {};
  const absent: string[] = [];
  for (const key of Object.keys(filter)) {
    if (filter[key] === undefined) absent.push(key);
    else setOwn(defined, key, filter[key]);
  }
  return absent.length > 0 ? { filter: defined, filter_absent: absent } : { filter: defined };
}

function sortWrites(writes: StoredWrite[]): StoredWrite[] {
  return [...writes].sort((a, b) => compareWritesSortKeys(writesSortKey(a.task_path ?? "", a.task_id, a.idx), writesSortKey(b.task_path ?? "", b.task_id, b.idx)));
}

function isPrimitive(value: unknown): boolean {
  return value === null || (typeof value !== "object" && typeof value !== "function");
}

/** A plain object that may be stored key by key (with enough keys, see ApexSaverOptions.splitKeys). */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return false;
  return !("lc" in value || "toJSON" in value); // LangChain's own serialized forms stay whole
}

/*
 * The walks over a whole state (every channel's version, every key of a split channel) are
 * plain functions without an await: a loop in an async function that awaits now and then
 * runs unoptimized after each resumption, and these loops run 10k times a step.
 */

/**
 * The channels whose version is not the parent's (all of them without a parent in the cache):
 * the versions as arrays, compared position by position with the parent's (the same names in
 * the same order, step after step), so a 10k-channel state is walked without a lookup per
 * channel; a channel elsewhere is looked up by name. `added`: channels the parent did not have.
 * (Object.values of a 10k-key object is several times slower than its keys and a lookup each.)
 */
function diffVersions(versions: Record<string, Version>, delta: ThreadCache | undefined): { names: string[]; current: Version[]; changed: Array<{ name: string; version: Version }>; added: number } {
  const names = Object.keys(versions);
  const result = { names, current: new Array<Version>(names.length), changed: [] as Array<{ name: string; version: Version }>, added: 0 };
  result.added = compareVersions(versions, names, result.current, delta, result.changed);
  return result;
}

/**
 * diffVersions' walk: fills `current` and `changed`, returns how many channels are new. A
 * function of its own, ending with the loop: the loop runs optimized from within (on-stack
 * replacement), and when code after it built the result, V8 dropped that optimized code (for
 * lack of type feedback) at every put, and ran the rest of the 10k-channel walk unoptimized.
 */
function compareVersions(versions: Record<string, Version>, names: string[], current: Version[], delta: ThreadCache | undefined, changed: Array<{ name: string; version: Version }>): number {
  const count = names.length;
  const previous = delta?.order;
  const known = delta?.versions;
  let added = 0;
  for (let i = 0; i < count; i++) {
    const name = names[i]!;
    const version = (current[i] = versions[name]!);
    if (previous && previous.names[i] === name && previous.versions[i] === version) continue;
    const parentVersion = known?.get(name);
    if (parentVersion === undefined) added += 1;
    // The same version as the parent's: the same value, already stored.
    if (known && parentVersion === version) continue;
    changed.push({ name, version });
  }
  return added;
}

/**
 * A split channel's keys against the previous step's (`before`): which need serializing (a
 * changed primitive, or any object, which may have changed in place; with the serialized value
 * they had, if any; `moved`: sent even if it did not change, see below) and how many of
 * `before`'s keys are still there. `before` is updated in place while the keys are where they
 * were (the usual step: no copy of 10k entries); from the first key elsewhere on, the rest is
 * looked up and new arrays are made.
 *
 * Each key keeps its number (`o`, its place in the object's order as stored) while the numbers
 * increase along the object's keys; a key that is not an array index (those are listed first
 * whatever their numbers) and whose number is not above the previous such key's (deleted and set
 * again, which puts a key last; an object rebuilt in another order) gets the next number, and is
 * `moved`; so does a key added. An object whose keys are only added, deleted and changed sends
 * only those; one rebuilt in another order sends the keys that moved. Without `before`, the keys
 * are numbered 0..n-1.
 */
function diffKeys(object: Record<string, unknown>, names: string[], before: OrderedKeys | undefined): { after: OrderedKeys; changed: Array<{ index: number; known: SerializedValue | undefined; moved: boolean }>; kept: number } {
  const count = names.length;
  const changed: Array<{ index: number; known: SerializedValue | undefined; moved: boolean }> = [];
  let i = 0;
  if (before && before.names.length === count) {
    const { names: old, primitives } = before;
    for (; i < count; i++) {
      const key = names[i]!;
      if (old[i] !== key) break;
      const item = object[key];
      // Equal to what it held: a primitive that did not change (`primitives` holds primitives
      // and NOT_PRIMITIVE, which no value is), tested before classifying the value at all.
      if (primitives[i] === item) continue;
      primitives[i] = isPrimitive(item) ? item : NOT_PRIMITIVE;
      changed.push({ index: i, known: before.objects.get(key), moved: false });
    }
    if (i === count) {
      before.names = names;
      return { after: before, changed, kept: count };
    }
  }
  // The keys before `i` were in place (their entries in `before` are already the new ones).
  const after: OrderedKeys = {
    names,
    primitives: before ? before.primitives.slice(0, i) : [],
    orders: before ? before.orders.slice(0, i) : [],
    next: before?.next ?? 0,
    objects: before?.objects ?? new Map(),
  };
  // The number of the last key so far that is not an array index: the next such key's must be above it.
  let last = -1;
  for (let k = i - 1; k >= 0; k--) {
    if (!isArrayIndex(names[k]!)) {
      last = after.orders[k]!;
      break;
    }
  }
  let kept = i;
  for (; i < count; i++) {
    const key = names[i]!;
    const item = object[key];
    const primitive = isPrimitive(item) ? item : NOT_PRIMITIVE;
    after.primitives.push(primitive);
    const at = before === undefined ? -1 : before.names[i] === key ? i : indexOf(before, key);
    let order = at >= 0 ? before!.orders[at]! : -1;
    let moved = false;
    if (!isArrayIndex(key)) {
      if (order <= last) {
        moved = at >= 0;
        order = after.next++;
      }
      last = order;
    } else if (order < 0) order = after.next++;
    after.orders.push(order);
    if (at >= 0) {
      kept += 1;
      if (!moved && primitive !== NOT_PRIMITIVE && before!.primitives[at] === primitive) continue;
    }
    changed.push({ index: i, known: at >= 0 ? before!.objects.get(key) : undefined, moved });
  }
  return { after, changed, kept };
}

/**
 * A key an object lists before its other keys, in numeric order, whatever the order it was set
 * in: an array index (a canonical integer up to 2^32 - 2). ("4294967295" is not one: listed in
 * the order it was set, as V8 does.)
 */
function isArrayIndex(key: string): boolean {
  const first = key.charCodeAt(0);
  if (!(first >= 0x30 && first <= 0x39) || key.length > 10) return false;
  return ARRAY_INDEX.test(key) && Number(key) <= 4294967294;
}

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/** Where a key is in ordered keys, -1 if absent. */
function indexOf(ordered: OrderedKeys, key: string): number {
  if (!ordered.index) {
    ordered.index = new Map();
    for (let i = 0; i < ordered.names.length; i++) ordered.index.set(ordered.names[i]!, i);
  }
  return ordered.index.get(key) ?? -1;
}

function keyWrite(value: SerializedValue, o: number): KeyWrite {
  return value.b !== undefined ? { t: value.t, b: value.b, o } : { t: value.t, d: value.d ?? "", o };
}

function sameSerialized(a: SerializedValue, b: SerializedValue): boolean {
  return a.t === b.t && a.d === b.d && a.b === b.b;
}
