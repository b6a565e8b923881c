// ApexSaver against LangGraph's reference MemorySaver: seeded random sequences of put, putWrites,
// getTuple, list and deleteThread on several threads and namespaces, applied to both and every
// answer compared; at the end, every thread namespace's latest checkpoint and the whole history
// read by a new ApexSaver (nothing cached). Three ApexSavers share the project and take turns, so
// one's cache of a thread is out of date after another wrote it (another process, as it were).
// The savers write the store themselves (no supervisor), and in two sequences go through a
// running session's supervisor (each call a request over its socket, JSON both ways).
// A failure names the seed and the step; one sequence runs alone with `-t "seed N$"`. A longer
// search: LG_SEEDS=300 LG_SEED_BASE=1000 LG_STEPS=250 (seeds 1001..1300, 250 steps each, and
// as many through a supervisor; `-t supervised` for those alone).
//
// What legitimately differs is normalised where it is compared (each says why): a tuple's config
// (normalTuple), the order channels come in (normalTuple), the order of a format < 4
// checkpoint's pending sends (normalTuple), the order thread namespaces come in when list spans
// several (list), and ApexSaver's refusal of writes for a checkpoint of a deleted thread (putWrites).
// Not generated, as outside what this compares: metadata filters whose value is an object or an
// array (MemorySaver compares with ===, so they never match; SqliteSaver compares the JSON,
// LangGraph's Python savers with ==, as ApexSaver does); a value written as a write that is a
// Uint8Array itself (see writeValue); a channel whose value changes and its version does not
// (a version names one value: ApexSaver keeps the parent's); channel values without a
// channel version, and top-level fields of a checkpoint besides LangGraph's six (MemorySaver and
// SqliteSaver keep the former and drop the latter, PostgresSaver the other way round, as ApexSaver).
import { JsonPlusSerializer, MemorySaver, type BaseCheckpointSaver, type Checkpoint, type CheckpointMetadata, type CheckpointTuple, type PendingWrite } from "@langchain/langgraph-checkpoint";
import type { RunnableConfig } from "@langchain/core/runnables";
import { afterEach, describe, expect, it } from "vitest";
import type { SessionClient } from "../core/session/client.js";
import { ApexSaver } from "../integrations/langgraph/index.js";
import { Project } from "./fixtures/agents/harness.js";
import { random } from "./helpers/cli.js";
import { langGraphProject } from "./helpers/langgraph.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

type Version = string | number;
type Rng = () => number;

const SEEDS = process.env.LG_SEEDS ? Array.from({ length: Number(process.env.LG_SEEDS) }, (_, i) => i + 1 + Number(process.env.LG_SEED_BASE ?? 0)) : [1, 2, 3, 4, 5, 6, 7, 8];
const STEPS = Number(process.env.LG_STEPS ?? 70);
const SUPERVISED_SEEDS = process.env.LG_SEEDS ? SEEDS.map((seed) => seed + 100_000) : [101, 102];

// Names that are not path segments as they are: "/", "%" (and one that looks percent-encoded),
// "~" (the empty name's segment), ".", unicode, quotes and backslashes.
const THREADS = ["t1", "a/b", "a%2Fb", "ü🙂 \"q\" \\", "~", "."];
const NAMESPACES = ["", "child:1", "child:1|grand:2", "~"];
const CHANNELS = ["messages", "count", "a/b", "~", "%", "ü🙂", "", ".", "..", "branch:to:node", "__start__", "state", "big", ...Array.from({ length: 20 }, (_, i) => `node${i}`)];
const KEYS = ["a", "b", "/", "~", "%", "%2F", "ü", "🙂", "", "0", "2", "10", "4294967295", "lc", "type", "a/b", " ", "x.y", "\"", "\\"];
const STRINGS = ["", "plain", "ünïcödé 🙂", 'quote " inside', "back\\slash", "line\nbreak\u2028", '{"lc":1}', "\u0000nul", "~/%2F/.."];
const TASKS = ["task-a", "task-b", "00000000-0000-4000-8000-00000000000c"];
const TASK_PATHS = [undefined, "", "~__pregel_pull, node", "~__pregel_push, 0, False"];
// The channels LangGraph writes with fixed negative indexes (replaced, not kept, when written again),
// and the tasks channel, whose writes a checkpoint of format < 4 reads as its pending sends.
const SPECIAL_CHANNELS = ["__error__", "__interrupt__", "__scheduled__", "__resume__", "__pregel_tasks"];
const SOURCES = ["input", "loop", "update", "fork"];
const TAGS = ["x", "ü", "with space", ""];

/** JsonPlusSerializer itself, but not to ApexSaver, which then leaves every value to it. */
class Subclassed extends JsonPlusSerializer {}

const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
/** The first item half the time (a thread or namespace with a long history), else any. */
const mostly = <T>(rng: Rng, items: readonly T[]): T => (rng() < 0.5 ? items[0]! : pick(rng, items));
const int = (rng: Rng, below: number): number => Math.floor(rng() * below);
const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** A JSON-ish value of any kind LangGraph state holds; `depth` bounds nesting. */
function value(rng: Rng, depth = 0): unknown {
  const r = rng();
  if (depth >= 3 || r < 0.35) {
    const p = rng();
    if (p < 0.35) return pick(rng, STRINGS);
    if (p < 0.6) return pick(rng, [0, 1, -7, 3.25, 1e21, Number.MAX_SAFE_INTEGER, -0.5]);
    if (p < 0.7) return rng() < 0.5;
    if (p < 0.8) return null;
    if (p < 0.85) return "long ".repeat(200 + int(rng, 800)); // 1-5 KB
    if (p < 0.9) return undefined;
    return pick(rng, STRINGS) + int(rng, 1000);
  }
  if (r < 0.55) return Array.from({ length: int(rng, 4) }, () => value(rng, depth + 1));
  if (r < 0.6) return rng() < 0.5 ? {} : [];
  if (r < 0.63) return new Set([1, "two", null]);
  if (r < 0.66) return new Map<unknown, unknown>([["k", 1], [2, { nested: true }]]);
  if (r < 0.68) return new Uint8Array([0, 1, 254, 255]);
  return object(rng, int(rng, 5), depth + 1);
}

function object(rng: Rng, count: number, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (let i = 0; i < count; i++) out[rng() < 0.7 ? pick(rng, KEYS) : `k${int(rng, 200)}`] = value(rng, depth);
  return out;
}

/** A channel's new value: sometimes a large plain object (stored key by key), changed from the previous one a few keys at a time. */
function channelValue(rng: Rng, previous: unknown): unknown {
  const isObject = previous !== null && typeof previous === "object" && Object.getPrototypeOf(previous) === Object.prototype;
  if (isObject && rng() < 0.7) {
    const next = structuredClone(previous) as Record<string, unknown>;
    const keys = Object.keys(next);
    for (let n = 1 + int(rng, 3); n > 0; n--) {
      const op = rng();
      if (op < 0.4 || keys.length === 0) next[rng() < 0.5 ? pick(rng, KEYS) : `k${int(rng, 200)}`] = value(rng, 1);
      else if (op < 0.6) delete next[pick(rng, keys)];
      else if (op < 0.8) {
        // deleted and set again: the key moves last
        const key = pick(rng, keys);
        const held = next[key];
        delete next[key];
        next[key] = held;
      } else next[pick(rng, keys)] = value(rng, 1);
    }
    if (rng() < 0.1) return Object.fromEntries(Object.entries(next).reverse()); // rebuilt in another order
    return next;
  }
  if (rng() < 0.25) return object(rng, 5 + int(rng, 80), 1);
  return value(rng);
}

function nextVersion(rng: Rng, previous: Version | undefined): Version {
  // Numbers as MemorySaver's getNextVersion makes them, or strings as PostgresSaver's do.
  if (typeof previous === "number") return rng() < 0.9 ? previous + 1 : `${hex(previous + 1, 32)}.0.${int(rng, 1000)}`;
  if (typeof previous === "string") return `${hex(parseInt(previous.slice(0, 32), 16) + 1, 32)}.0.${int(rng, 1000)}`;
  return rng() < 0.7 ? 1 : `${hex(1, 32)}.0.${int(rng, 1000)}`;
}

interface Stored {
  id: string;
  values: Record<string, unknown>;
  versions: Record<string, Version>;
}

/** What the sequence has put, per thread namespace (the ids a later step may name). */
class Model {
  readonly checkpoints = new Map<string, Stored[]>();
  /** Checkpoints writes were put for before the checkpoint itself: a put may come for them. */
  upcoming: Array<{ thread: string; ns: string; id: string }> = [];
  /** Per thread, the ids of its checkpoints and of the checkpoints its writes were for. */
  private readonly ids = new Map<string, Set<string>>();
  /** Per thread namespace, the last checkpoint put before deleteThread removed it. */
  readonly gone = new Map<string, Stored>();
  /** Per thread, the greatest of those ids deleteThread removed. */
  readonly deletedMax = new Map<string, string>();
  private counter = 0;

  written(thread: string, id: string): void {
    const ids = this.ids.get(thread) ?? new Set();
    this.ids.set(thread, ids.add(id));
  }

  of(thread: string, ns: string): Stored[] {
    const key = JSON.stringify([thread, ns]);
    let list = this.checkpoints.get(key);
    if (!list) this.checkpoints.set(key, (list = []));
    return list;
  }

  all(): Array<{ thread: string; ns: string; stored: Stored }> {
    const out: Array<{ thread: string; ns: string; stored: Stored }> = [];
    for (const [key, list] of this.checkpoints) {
      const [thread, ns] = JSON.parse(key) as [string, string];
      for (const stored of list) out.push({ thread, ns, stored });
    }
    return out;
  }

  deleteThread(thread: string): void {
    for (const [key, list] of [...this.checkpoints]) {
      if ((JSON.parse(key) as string[])[0] !== thread) continue;
      if (list.length > 0) this.gone.set(key, list[list.length - 1]!);
      this.checkpoints.delete(key);
    }
    let max = this.deletedMax.get(thread);
    for (const id of this.ids.get(thread) ?? []) if (max === undefined || id > max) max = id;
    if (max !== undefined) this.deletedMax.set(thread, max);
    this.ids.delete(thread);
    this.upcoming = this.upcoming.filter((item) => item.thread !== thread);
  }

  /**
   * A new checkpoint id: uuid6-like and increasing, as LangGraph's are; now and then one below
   * the latest (the head is the greatest id, not the last put), or one that shares an existing
   * id's prefix and goes on with a character whose path segment is percent-encoded (ids sort by
   * their text, not their encoded segments).
   */
  newId(rng: Rng, increasing = false): string {
    const existing = this.all();
    if (!increasing && existing.length > 0 && rng() < 0.08) {
      const prefix = pick(rng, existing).stored.id.slice(0, 8);
      return `${prefix}${pick(rng, ["~", "%", "/", "é", "🙂", " ", "-", "Z"])}${hex(int(rng, 0xffffff), 6)}`;
    }
    const counter = !increasing && existing.length > 0 && rng() < 0.08 ? int(rng, this.counter * 4) : (++this.counter) * 4;
    return `${hex(counter, 8)}-0000-6000-8000-${hex(int(rng, 0xffffff), 6)}${hex(int(rng, 0xffffff), 6)}`;
  }
}

/**
 * A value as compared: its kind and content, plain objects with their keys in order (a value
 * must come back as it was put, JSON.stringify's text included), Map, Set, Uint8Array, RegExp
 * and Error as JsonPlusSerializer revives them.
 */
function canon(input: unknown): unknown {
  if (input === undefined) return ["undefined"];
  if (input === null || typeof input !== "object") return input;
  if (Array.isArray(input)) return ["array", input.map(canon)];
  if (input instanceof Uint8Array) return ["bytes", Array.from(input)];
  if (input instanceof Map) return ["map", [...input].map(([k, v]) => [canon(k), canon(v)])];
  if (input instanceof Set) return ["set", [...input].map(canon)];
  if (input instanceof RegExp) return ["regexp", input.source, input.flags];
  if (input instanceof Error) return ["error", input.message];
  const proto = Object.getPrototypeOf(input);
  const kind = proto === Object.prototype ? "object" : proto === null ? "null-prototype" : `instance of ${proto?.constructor?.name}`;
  return [kind, Object.keys(input).map((key) => [key, canon((input as Record<string, unknown>)[key])])];
}

/**
 * A tuple as compared. Normalised:
 *  - `config.configurable` to thread_id, checkpoint_ns (absent: "") and checkpoint_id. The
 *    contract only makes a tuple's config name its checkpoint: MemorySaver hands back the
 *    caller's own config object when the call named a checkpoint_id (SqliteSaver too), with
 *    whatever else the caller put in it, and without checkpoint_ns when the caller left it out;
 *    its list() and getTuple() without an id, as ApexSaver always, give exactly these three.
 *  - `channel_values` and `channel_versions` by channel name: they are maps by name, and the
 *    order their keys come in is not part of any saver's contract (SqliteSaver's and
 *    MemorySaver's follow the put's object, PostgresSaver's its blob rows). Each channel's
 *    value is compared with its keys in order (canon), nested objects included.
 *  - A checkpoint of format < 4 gets its parent's writes to the tasks channel as the value of
 *    that channel (its pending sends), in an order the savers do not agree on: MemorySaver's
 *    is the order they were written in, SqliteSaver's by index alone, PostgresSaver's (as
 *    ApexSaver's) by task path, task id and index. Compared as a set.
 */
function normalTuple(tuple: CheckpointTuple | undefined): unknown {
  if (!tuple) return undefined;
  const conf = tuple.config.configurable ?? {};
  const { channel_values: values, channel_versions: versions, ...rest } = tuple.checkpoint;
  return {
    config: { thread_id: conf.thread_id, checkpoint_ns: conf.checkpoint_ns ?? "", checkpoint_id: conf.checkpoint_id },
    checkpoint: {
      ...rest,
      channel_values: Object.keys(values ?? {})
        .sort()
        .map((name) => {
          const held = canon((values as Record<string, unknown>)[name]);
          if (name !== "__pregel_tasks" || rest.v >= 4 || !Array.isArray(held) || held[0] !== "array") return [name, held];
          return [name, ["array", [...(held[1] as unknown[])].sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1))]];
        }),
      channel_versions: Object.keys(versions ?? {}).sort().map((name) => [name, (versions as Record<string, Version>)[name]]),
    },
    metadata: canon(tuple.metadata),
    parentConfig: tuple.parentConfig,
    pendingWrites: canon(tuple.pendingWrites),
  };
}

async function outcome<T>(work: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  try {
    return { ok: true, value: await work() };
  } catch (error) {
    return { ok: false, error: String((error as Error)?.message ?? error) };
  }
}

async function collect(iterable: AsyncIterable<CheckpointTuple>): Promise<CheckpointTuple[]> {
  const out: CheckpointTuple[] = [];
  for await (const tuple of iterable) out.push(tuple);
  return out;
}

/**
 * A write's value. Never a Uint8Array itself: MemorySaver keeps a write's serialized bytes and
 * not their type, and reads them back as JSON (SqliteSaver and ApexSaver keep the type).
 */
function writeValue(rng: Rng): unknown {
  const written = rng() < 0.1 ? { lg_name: "Command", resume: value(rng, 2) } : value(rng, 1);
  return written instanceof Uint8Array ? [written] : written;
}

function writesOf(rng: Rng): PendingWrite[] {
  return Array.from({ length: 1 + int(rng, 3) }, () => {
    const channel = rng() < 0.3 ? pick(rng, SPECIAL_CHANNELS) : pick(rng, CHANNELS);
    return [channel, channel === "__pregel_tasks" ? { lg_name: "Send", node: pick(rng, CHANNELS), args: value(rng, 1) } : writeValue(rng)];
  });
}

function metadataOf(rng: Rng, step: number, parentId: string | undefined): CheckpointMetadata {
  const metadata: Record<string, unknown> = {
    source: pick(rng, SOURCES),
    step,
    parents: parentId && rng() < 0.3 ? { "": parentId } : {},
    tag: pick(rng, TAGS),
  };
  if (rng() < 0.5) metadata.writes = rng() < 0.3 ? null : { node: { count: int(rng, 5), "a/b": ["ü", { deep: [1, null] }] } };
  if (rng() < 0.3) metadata.user = { nested: { list: [1, "two", { three: 3 }], empty: {} } };
  if (rng() < 0.1) metadata.maybe = undefined;
  return metadata as CheckpointMetadata;
}

describe("ApexSaver against MemorySaver: seeded random sequences of operations", () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}`, async () => {
      const project = await langGraphProject("apex-langgraph-diff-", "plugins:\n  checkpoint: {}\n");
      cleanups.push(project.cleanup);
      await sequence(seed, project.dir, STEPS, "store");
    });
  }
});

describe("ApexSaver against MemorySaver through a supervisor (each call a request over its socket)", () => {
  for (const seed of SUPERVISED_SEEDS) {
    it(`supervised seed ${seed}`, async () => {
      const project = new Project("plugins:\n  checkpoint: {}\n", "apex-langgraph-diff-");
      project.start(["--task", "differential"]);
      await sequence(seed, project.dir, STEPS, "socket");
      expect(project.apex(["stop"]).status).toBe(0);
    });
  }
});

/** One sequence of `steps` operations from `seed`, on savers of the project at `dir`, which reach its session `via` the store or a supervisor's socket. */
async function sequence(seed: number, dir: string, steps: number, via: SessionClient["via"]): Promise<void> {
  const rng = random(seed);
  // Three savers on one project: one splits objects of 4 keys and more key by key, one at the
  // default, one with a serializer that is a subclass of JsonPlusSerializer (which the saver
  // runs on every value, where it reads and writes JsonPlusSerializer's JSON itself).
  const apexes = [new ApexSaver({ project: dir, splitKeys: 4 }), new ApexSaver({ project: dir }), new ApexSaver({ project: dir, splitKeys: 8, serde: new Subclassed() })];
  cleanups.push(async () => {
    for (const saver of apexes) await saver.close();
  });
  expect((await (apexes[0] as unknown as { connected(): Promise<SessionClient> }).connected()).via).toBe(via);
  const memory: BaseCheckpointSaver = new MemorySaver();
  const model = new Model();
  let step = 0;
  const where = (what: string) => `seed ${seed}, step ${step}: ${what}`;

  /** Runs `run` on MemorySaver and one of the ApexSavers; `excused`: ApexSaver's failure where MemorySaver did not fail is a difference of the contract's (see where it is given). */
  const compare = async (what: string, run: (saver: BaseCheckpointSaver) => Promise<unknown>, normal: (result: any) => unknown, excused?: (error: string) => boolean) => {
    const saver = pick(rng, apexes);
    const expected = await outcome(() => run(memory));
    const actual = await outcome(() => run(saver));
    if (!actual.ok && expected.ok && excused?.(actual.error)) return false;
    expect(actual.ok, where(`${what}: ${actual.ok ? "ApexSaver did not fail" : `ApexSaver failed: ${actual.error}`}, MemorySaver ${expected.ok ? "did not" : `failed: ${expected.ok || expected.error}`}`)).toBe(expected.ok);
    if (actual.ok && expected.ok) expect(normal(actual.value), where(what)).toStrictEqual(normal(expected.value));
    return actual.ok;
  };

  /** A put's arguments, from a parent the model holds (or none), and what records it once done. */
  const planPut = (fresh = false) => {
    const thread = mostly(rng, THREADS);
    const ns = mostly(rng, NAMESPACES);
    const history = model.of(thread, ns);
    // The parent: mostly the latest put, sometimes an older one (a fork), none (a new run), or an id never put.
    const r = rng();
    const parent = history.length === 0 || r < 0.1 ? undefined : r < 0.75 ? history[history.length - 1] : pick(rng, history);
    // (a parent deleted with its thread: a graph run goes on while another process deletes the thread)
    const gone = model.gone.get(JSON.stringify([thread, ns]));
    const unknownParent = !parent && r < 0.05 ? (gone && rng() < 0.5 ? gone.id : model.newId(rng)) : undefined;
    const base = parent ?? (unknownParent !== undefined && unknownParent === gone?.id ? gone : undefined);
    const values = structuredClone(base?.values ?? {});
    const versions = { ...(base?.versions ?? {}) };
    const newVersions: Record<string, Version> = {};
    for (let n = 1 + int(rng, 3); n > 0; n--) {
      const channel = pick(rng, CHANNELS);
      const op = rng();
      if (op < 0.1 && channel in versions) {
        delete versions[channel];
        delete values[channel];
        continue;
      }
      // Above the parent's version even if the channel went and came back in this step: a version names one value.
      versions[channel] = newVersions[channel] = nextVersion(rng, versions[channel] ?? base?.versions[channel]);
      if (op < 0.18) delete values[channel]; // a channel with a version and no value (empty)
      else if (op < 0.25 && channel in values) continue; // a new version, the same value
      else values[channel] = channelValue(rng, values[channel]);
    }
    // Without a parent, every channel is new (the versions LangGraph passes are against the parent's).
    if (!base) Object.assign(newVersions, versions);
    // Now and then an id already stored, put again: the put replaces it (MemorySaver's, SqliteSaver's).
    const reuse = !fresh && rng() < 0.05 && history.length > 0 ? pick(rng, history).id : undefined;
    const upcoming = fresh ? -1 : model.upcoming.findIndex((item) => item.thread === thread && item.ns === ns);
    const id = reuse ?? (upcoming >= 0 && rng() < 0.7 ? model.upcoming.splice(upcoming, 1)[0]!.id : model.newId(rng, fresh));
    const checkpoint: Checkpoint = {
      v: rng() < 0.05 ? 1 : 4,
      id,
      ts: `2026-01-01T00:00:${String(step % 60).padStart(2, "0")}.000Z`,
      channel_values: values,
      channel_versions: versions,
      versions_seen: rng() < 0.5 ? {} : { node: { [pick(rng, CHANNELS)]: pick(rng, [1, "00000000000000000000000000000001.0.5"]) }, "__input__": {} },
    };
    const parentId = parent?.id ?? unknownParent;
    const config: RunnableConfig = { configurable: { thread_id: thread, ...(ns !== "" || rng() < 0.7 ? { checkpoint_ns: ns } : {}), ...(parentId ? { checkpoint_id: parentId } : {}) } };
    const metadata = metadataOf(rng, step, parentId);
    const record = () => {
      const stored = { id, values: structuredClone(values), versions: { ...versions } };
      model.written(thread, id);
      if (reuse) history.splice(history.findIndex((item) => item.id === reuse), 1, stored);
      else history.push(stored);
    };
    return { thread, ns, id, parentId, config, checkpoint, metadata, newVersions, record };
  };

  const put = async () => {
    const { thread, ns, id, parentId, config, checkpoint, metadata, newVersions, record } = planPut();
    await compare(`put ${JSON.stringify([thread, ns, id])} after ${parentId}`, (saver) => saver.put(config, checkpoint, metadata, newVersions), (result) => result);
    record();
  };

  /**
   * A put and the writes of the checkpoint's tasks at once, as a graph run makes them (its
   * tasks start from a checkpoint whose put is still under way): on MemorySaver one after
   * the other, on the ApexSavers together; then the checkpoint read by both.
   */
  const burst = async () => {
    // (a new id above every other, as LangGraph's are: see `refused` in putWrites)
    const { thread, ns, id, config, checkpoint, metadata, newVersions, record } = planPut(true);
    const tasks = TASKS.filter(() => rng() < 0.7);
    const sent = tasks.map((task) => ({ task, path: pick(rng, TASK_PATHS), writes: writesOf(rng) }));
    const target = { configurable: { thread_id: thread, checkpoint_ns: ns, checkpoint_id: id } };
    await memory.put(config, checkpoint, metadata, newVersions);
    for (const { task, path, writes } of sent) await memory.putWrites(target, writes, task, path);
    const savers = [pick(rng, apexes), ...sent.map(() => pick(rng, apexes))];
    await Promise.all([savers[0]!.put(config, checkpoint, metadata, newVersions), ...sent.map(({ task, path, writes }, i) => savers[i + 1]!.putWrites(target, writes, task, path))]);
    record();
    for (const _task of tasks) model.written(thread, id);
    await compare(`getTuple after a burst of put and writes ${JSON.stringify([thread, ns, id, tasks])}`, (saver) => saver.getTuple(target), normalTuple);
  };

  const putWrites = async () => {
    const all = model.all();
    let thread = pick(rng, THREADS);
    let ns = pick(rng, NAMESPACES);
    let id: string;
    const r = rng();
    if (all.length > 0 && r < 0.8) ({ thread, ns, stored: { id } } = pick(rng, all));
    else if (model.upcoming.length > 0 && r < 0.9) ({ thread, ns, id } = pick(rng, model.upcoming));
    else {
      // Writes before their checkpoint (LangGraph does not wait for the put): put later, now and then.
      id = model.newId(rng);
      model.upcoming.push({ thread, ns, id });
    }
    const task = pick(rng, TASKS);
    const taskPath = pick(rng, TASK_PATHS);
    const writes = writesOf(rng);
    const config = { configurable: { thread_id: thread, checkpoint_ns: ns, checkpoint_id: id } };
    // ApexSaver refuses writes for a checkpoint not stored whose id is not above the greatest
    // id deleteThread removed from the thread (its checkpoints' and its writes'); MemorySaver
    // keeps them, where no read finds them unless a checkpoint of that id is put again.
    // LangGraph's ids are uuid6, increasing: such a checkpoint was made before the delete,
    // by a run of the thread deleted, whose writes the delete was to remove (and a later put
    // of that id would show them). The ids this sequence makes below it are not put after that.
    const refused = (error: string) => {
      const deleted = model.deletedMax.get(thread);
      if (!/was deleted with its checkpoint/.test(error) || deleted === undefined || id > deleted || model.of(thread, ns).some((stored) => stored.id === id)) return false;
      model.upcoming = model.upcoming.filter((item) => item.id !== id);
      return true;
    };
    const kept = await compare(`putWrites ${JSON.stringify([thread, ns, id, task, taskPath, writes.map((write) => write[0])])}`, (saver) => saver.putWrites(config, writes, task, taskPath), () => null, refused);
    if (kept) model.written(thread, id);
  };

  const getTuple = async () => {
    const all = model.all();
    const r = rng();
    let configurable: Record<string, unknown>;
    if (all.length > 0 && r < 0.5) {
      const { thread, ns, stored } = pick(rng, all);
      configurable = { thread_id: thread, checkpoint_ns: ns, checkpoint_id: stored.id };
    } else if (r < 0.85) configurable = { thread_id: pick(rng, THREADS), checkpoint_ns: pick(rng, NAMESPACES) };
    else configurable = { thread_id: pick(rng, THREADS), checkpoint_ns: pick(rng, NAMESPACES), checkpoint_id: model.newId(rng) };
    if (configurable.checkpoint_ns === "" && rng() < 0.3) delete configurable.checkpoint_ns;
    await compare(`getTuple ${JSON.stringify(configurable)}`, (saver) => saver.getTuple({ configurable }), normalTuple);
  };

  const list = async () => {
    const all = model.all();
    const configurable: Record<string, unknown> = {};
    if (rng() < 0.8) configurable.thread_id = pick(rng, THREADS);
    if (rng() < 0.6) configurable.checkpoint_ns = pick(rng, NAMESPACES);
    if (all.length > 0 && rng() < 0.05) configurable.checkpoint_id = pick(rng, all).stored.id;
    const options: { limit?: number; before?: RunnableConfig; filter?: Record<string, unknown> } = {};
    if (rng() < 0.4) options.limit = int(rng, 6);
    if (rng() < 0.3) options.before = { configurable: { checkpoint_id: all.length > 0 && rng() < 0.7 ? pick(rng, all).stored.id : model.newId(rng) } };
    if (rng() < 0.4) {
      const filter: Record<string, unknown> = {};
      const f = rng();
      if (f < 0.3) filter.source = pick(rng, SOURCES);
      else if (f < 0.5) filter.tag = pick(rng, TAGS);
      else if (f < 0.65) filter.step = rng() < 0.8 ? int(rng, step + 1) : String(int(rng, step + 1));
      else if (f < 0.75) filter.maybe = undefined;
      else if (f < 0.85) filter.writes = null;
      else filter.absent = "never";
      if (rng() < 0.3) filter.source = pick(rng, SOURCES);
      options.filter = filter;
    }
    const across = configurable.thread_id === undefined || configurable.checkpoint_ns === undefined;
    await compare(
      `list ${JSON.stringify(configurable)} ${JSON.stringify(options)}`,
      async (saver) => {
        // Across thread namespaces (thread_id or checkpoint_ns not given), in which order
        // the namespaces come is not the contract's: MemorySaver goes thread by thread in the
        // order they were first put, namespace by namespace likewise, each newest first;
        // SqliteSaver sorts every checkpoint by id alone. What both keep: each namespace's
        // checkpoints come newest first. So with a limit, which namespaces fill it differs:
        // listed without the limit and compared by the namespaces' order, then the limited
        // list checked against that (its length, and each namespace's part a prefix of its own).
        if (!across) return collect(saver.list({ configurable }, options));
        const { limit, ...unlimited } = options;
        const full = await collect(saver.list({ configurable }, unlimited));
        const limited = limit === undefined ? full : await collect(saver.list({ configurable }, options));
        return { full, limited, limit };
      },
      (result) => {
        if (!across) return (result as CheckpointTuple[]).map(normalTuple);
        const { full, limited, limit } = result as { full: CheckpointTuple[]; limited: CheckpointTuple[]; limit: number | undefined };
        const groupOf = (tuple: CheckpointTuple) => JSON.stringify([tuple.config.configurable?.thread_id, tuple.config.configurable?.checkpoint_ns]);
        const groups = new Map<string, unknown[]>();
        for (const tuple of full) {
          const group = groups.get(groupOf(tuple)) ?? [];
          group.push(normalTuple(tuple));
          groups.set(groupOf(tuple), group);
        }
        const taken = new Map<string, unknown[]>();
        for (const tuple of limited) taken.set(groupOf(tuple), [...(taken.get(groupOf(tuple)) ?? []), normalTuple(tuple)]);
        const prefixes = [...taken].every(([group, items]) => {
          const all = groups.get(group) ?? [];
          return items.every((item, i) => JSON.stringify(item) === JSON.stringify(all[i]));
        });
        return {
          groups: [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
          limitedCount: limited.length === Math.min(limit ?? Infinity, full.length),
          prefixes,
        };
      },
    );
  };

  const deleteThread = async () => {
    const thread = pick(rng, THREADS);
    await compare(`deleteThread ${JSON.stringify(thread)}`, (saver) => saver.deleteThread(thread), () => null);
    model.deleteThread(thread);
  };

  for (; step < steps; step++) {
    const r = rng();
    if (r < 0.35) await put();
    else if (r < 0.4) await burst();
    else if (r < 0.6) await putWrites();
    else if (r < 0.78) await getTuple();
    else if (r < 0.95) await list();
    else await deleteThread();
  }
  // Every thread namespace's latest checkpoint and the whole history, read by a saver with nothing cached.
  const fresh = new ApexSaver({ project: dir });
  apexes.push(fresh);
  const everything = async (saver: BaseCheckpointSaver) => {
    const read = new Map<string, unknown>();
    for (const thread of THREADS) for (const ns of NAMESPACES) read.set(`latest of ${JSON.stringify([thread, ns])}`, normalTuple(await saver.getTuple({ configurable: { thread_id: thread, checkpoint_ns: ns } })));
    for (const tuple of await collect(saver.list({ configurable: {} }))) read.set(`listed ${JSON.stringify(tuple.config.configurable)}`, normalTuple(tuple));
    return read;
  };
  const [actual, expected] = [await everything(fresh), await everything(memory)];
  expect([...actual.keys()].sort(), where("everything, read by a new saver")).toStrictEqual([...expected.keys()].sort());
  for (const [label, tuple] of expected) expect(actual.get(label), where(`${label}, read by a new saver`)).toStrictEqual(tuple);
  for (const saver of apexes.splice(0)) await saver.close();
}
