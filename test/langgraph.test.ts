// ApexSaver on a real store (no supervisor: the saver writes the store itself, with the
// project's plugins): the mapping of channels to memory, large object channels stored key by
// key, forks and a saver whose view of the memory is out of date, retention and LangGraph
// threads, names that are not path segments, bad requests.
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { BaseCheckpointSaver, JsonPlusSerializer, MemorySaver, uuid6, type Checkpoint, type CheckpointMetadata } from "@langchain/langgraph-checkpoint";
import { Annotation, DeltaValue, END, START, StateGraph, StateSchema, interrupt } from "@langchain/langgraph";
import { z } from "zod";
import { afterEach, describe, expect, it } from "vitest";
import { ApexSaver } from "../integrations/langgraph/index.js";
import { type JsonValue, type Store } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import type { SessionClient } from "../core/session/client.js";
import { readProcStat } from "../core/session/proc.js";
import { LmdbStore } from "./helpers/store.js";
import { MAX_RAW_PACK_BYTES, ObjectStore, copyOf, lookupEntry, type DirEntry } from "../plugins/checkpoint/engine/objects.js";
import { createCheckpoint, deleteCheckpoint, diffCheckpoints, getCheckpointValue, listCheckpoints, restoreCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { removeCheckpointRecords } from "../plugins/checkpoint/refs.js";
import { planRetention } from "../plugins/retention/cleanup.js";
import { headsPath, langGraphHeads } from "../plugins/checkpoint/langgraph.js";
import { REPO_ROOT, runApex } from "./helpers/cli.js";
import { langGraphProject, openProjectStore } from "./helpers/langgraph.js";
import { forEachBackend, type TestBackend } from "./support/backends.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A project with a saver on it; on `backend` (its store: section), else LMDB in .apex/. */
async function setup(config = "plugins:\n  checkpoint: {}\n", backend?: TestBackend) {
  const storeUrl = backend ? (await backend.env()).APEX_STORE_URL : undefined;
  const project = await langGraphProject("apex-langgraph-unit-", config, { storeUrl });
  cleanups.push(project.cleanup);
  const saver = new ApexSaver({ project: project.dir });
  cleanups.push(() => saver.close());
  return { ...project, saver };
}

function checkpointOf(values: Record<string, unknown>, versions: Record<string, number | string>): Checkpoint {
  return { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: values, channel_versions: versions, versions_seen: { node: { x: 1 } } };
}

async function readStore<T>(dir: string, fn: (store: Store) => T): Promise<T> {
  const store = await openProjectStore(dir, { readOnly: true });
  try {
    return fn(store);
  } finally {
    await store.close();
  }
}

describe("ApexSaver: channels in memory, each step an APEX checkpoint", () => {
  it("stores each channel once at /langgraph/<thread>/<ns>/<channel>; a step's APEX checkpoint changes only the channels that changed", async () => {
    const { dir, sessionId, saver } = await setup();
    let config = { configurable: { thread_id: "t1", checkpoint_ns: "" } } as Record<string, any>;
    const values: Record<string, string> = { a: "A0", b: "B0", c: "C0" };
    config = await saver.put(config, checkpointOf({ ...values }, { a: 1, b: 1, c: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, b: 1, c: 1 });
    values.b = "B1";
    const second = await saver.put(config, checkpointOf({ ...values }, { a: 1, b: 2, c: 1 }), { source: "loop", step: 0, parents: {} }, { b: 2 });
    const tuple = await saver.getTuple(second);
    expect(tuple!.checkpoint.channel_values).toEqual({ a: "A0", b: "B1", c: "C0" });
    expect(tuple!.checkpoint.channel_versions).toEqual({ a: 1, b: 2, c: 1 });
    expect(tuple!.metadata).toEqual({ source: "loop", step: 0, parents: {} });
    expect(tuple!.parentConfig?.configurable?.checkpoint_id).toBe(config.configurable.checkpoint_id);

    await saver.close();
    const { page, diff, memory, live, valid } = await readStore(dir, (store) => {
      const page = listCheckpoints(store, sessionId);
      const [newest, oldest] = page.items;
      return {
        page,
        diff: diffCheckpoints(store, oldest!.id, newest!.id),
        memory: getCheckpointValue(store, newest!.id, "/langgraph/t1/~/b"),
        live: [...store.keysBelow("/langgraph")],
        valid: validateStore(store),
      };
    });
    expect(page.items.map((item) => item.trigger)).toEqual(["langgraph", "langgraph"]);
    expect(diff.memory).toEqual({ added: [], removed: [], changed: ["/langgraph/t1/~", "/langgraph/t1/~/b"] });
    expect(memory).toMatchObject({ v: 2, t: "json", d: '"B1"' });
    expect(live).toEqual([]); // in checkpoint trees only, never a live record as well
    expect(valid).toMatchObject({ ok: true, problems: [] }); // the manifests count the values their trees hold
    // `apex checkpoint show` gives the ids a LangGraph user passes back, and what the step was.
    const shown = runApex(["checkpoint", "show", "checkpoint-002"], { cwd: dir });
    expect(shown.status).toBe(0);
    expect(shown.stdout).toContain(
      [
        `  langgraph    thread "t1"`,
        `               checkpoint ${second.configurable!.checkpoint_id} (parent ${config.configurable.checkpoint_id})`,
        "               step 0, source loop",
        "               channels in /langgraph/t1/~",
      ].join("\n"),
    );
    expect(shown.stdout).not.toMatch(/^ {2}data /m);
  });

  it("channels live only in checkpoint trees: other checkpoints carry them, restores and validation leave them alone, deleteThread drops them from the next", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "t1", checkpoint_ns: "" } } as Record<string, any>;
    const first = await saver.put(thread, checkpointOf({ a: "A0", b: "B0" }, { a: 1, b: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, b: 1 });
    const second = await saver.put(first, checkpointOf({ a: "A0", b: "B1" }, { a: 1, b: 2 }), { source: "loop", step: 0, parents: {} }, { b: 2 });
    await saver.close();

    const store = LmdbStore.open(join(dir, ".apex"));
    try {
      await store.set("/app/notes", "kept by the manual checkpoint");
      const manual = await createCheckpoint(store, { sessionId, trigger: "manual" });
      expect(getCheckpointValue(store, manual.manifest.id, "/langgraph/t1/~/b")).toMatchObject({ v: 2, d: '"B1"' });
      expect(getCheckpointValue(store, manual.manifest.id, "/app/notes")).toBe("kept by the manual checkpoint");
      // A hole in the revision log: the tree is rebuilt from the keyspace, the channels come from the base.
      const revision = await store.set("/app/gap", 1);
      await store.set("/app/after-gap", 2);
      const log = store.table<number>("log", { keys: "tuple", values: "binary" });
      await store.transaction(() => log.remove(revision));
      const rebuilt = await createCheckpoint(store, { sessionId, trigger: "manual" });
      expect(rebuilt.stats.memory.full).toBe(true);
      expect(getCheckpointValue(store, rebuilt.manifest.id, "/langgraph/t1/~/b")).toMatchObject({ v: 2, d: '"B1"' });
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });

      const oldest = listCheckpoints(store, sessionId).items.at(-1);
      await store.set("/app/later", 1);
      const restored = await restoreCheckpoint(store, oldest!.id);
      expect([...restored.memory.set, ...restored.memory.deleted].sort()).toEqual(["/app/after-gap", "/app/gap", "/app/later", "/app/notes"]);
      expect([...store.keysBelow("/langgraph")]).toEqual([]);
      // The memory base is the restored checkpoint's tree: the next checkpoint holds its channels.
      const after = await createCheckpoint(store, { sessionId, trigger: "manual" });
      expect(getCheckpointValue(store, after.manifest.id, "/langgraph/t1/~/b")).toMatchObject({ v: 1, d: '"B0"' });
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    } finally {
      await store.close();
    }

    // LangGraph reads its own checkpoints, whatever the memory base holds.
    const other = new ApexSaver({ project: dir });
    cleanups.push(() => other.close());
    expect((await other.getTuple(thread))!.checkpoint.channel_values).toEqual({ a: "A0", b: "B1" });
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    const third = await fresh.put(second, checkpointOf({ a: "A2", b: "B1" }, { a: 3, b: 2 }), { source: "loop", step: 1, parents: {} }, { a: 3 });
    expect((await other.getTuple(third))!.checkpoint.channel_values).toEqual({ a: "A2", b: "B1" });
    await other.deleteThread("t1");
    expect(await other.getTuple(thread)).toBeUndefined();
    await other.close();

    const reopened = LmdbStore.open(join(dir, ".apex"));
    try {
      await reopened.set("/app/final", true);
      const next = await createCheckpoint(reopened, { sessionId, trigger: "manual" });
      expect(getCheckpointValue(reopened, next.manifest.id, "/langgraph/t1/~/b")).toBeUndefined();
      expect(getCheckpointValue(reopened, next.manifest.id, "/app/final")).toBe(true);
      expect(validateStore(reopened)).toMatchObject({ ok: true, problems: [] });
    } finally {
      await reopened.close();
    }
  });

  it("sessions side by side keep their own threads: the same thread id in a worktree session and the project's, deleteThread in one leaves the other", async () => {
    const { dir, sessionId: main } = await setup();
    const branch = "lg-branch";
    const seeded = LmdbStore.open(join(dir, ".apex"));
    try {
      // A branch session in its own git worktree: its working memory has its own root (memory-view.ts).
      await seeded.set(`/sessions/${branch}`, { session_id: branch, status: "stopped", agents: [], supervisor: null, history: [], worktree: { path: join(dir, "wt"), branch: "apex/b", commit: null } });
    } finally {
      await seeded.close();
    }
    const inMain = new ApexSaver({ project: dir, session: main });
    const inBranch = new ApexSaver({ project: dir, session: branch });
    cleanups.push(() => inMain.close(), () => inBranch.close());
    const thread = { configurable: { thread_id: "t1", checkpoint_ns: "" } } as Record<string, any>;
    await inMain.put(thread, checkpointOf({ a: "main" }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    await inBranch.put(thread, checkpointOf({ a: "branch", b: "only here" }, { a: 1, b: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, b: 1 });
    expect((await inMain.getTuple(thread))!.checkpoint.channel_values).toEqual({ a: "main" });
    expect((await inBranch.getTuple(thread))!.checkpoint.channel_values).toEqual({ a: "branch", b: "only here" });

    // The next checkpoint of each session carries its own thread's channels, not the other's.
    await inMain.close();
    await inBranch.close();
    const store = LmdbStore.open(join(dir, ".apex"));
    try {
      const mainNext = await createCheckpoint(store, { sessionId: main, trigger: "manual" });
      const branchNext = await createCheckpoint(store, { sessionId: branch, trigger: "manual" });
      expect(getCheckpointValue(store, mainNext.manifest.id, "/langgraph/t1/~/a")).toMatchObject({ d: '"main"' });
      expect(getCheckpointValue(store, mainNext.manifest.id, "/langgraph/t1/~/b")).toBeUndefined();
      expect(getCheckpointValue(store, branchNext.manifest.id, "/langgraph/t1/~/a")).toMatchObject({ d: '"branch"' });
    } finally {
      await store.close();
    }

    // Deleting the branch's thread drops it from the branch's next checkpoint only.
    const again = new ApexSaver({ project: dir, session: branch });
    cleanups.push(() => again.close());
    await again.deleteThread("t1");
    expect(await again.getTuple(thread)).toBeUndefined();
    await again.close();
    const mainSaver = new ApexSaver({ project: dir, session: main });
    cleanups.push(() => mainSaver.close());
    expect((await mainSaver.getTuple(thread))!.checkpoint.channel_values).toEqual({ a: "main" });
    await mainSaver.close();
    const reopened = LmdbStore.open(join(dir, ".apex"));
    try {
      const mainLast = await createCheckpoint(reopened, { sessionId: main, trigger: "manual" });
      const branchLast = await createCheckpoint(reopened, { sessionId: branch, trigger: "manual" });
      expect(getCheckpointValue(reopened, mainLast.manifest.id, "/langgraph/t1/~/a")).toMatchObject({ d: '"main"' });
      expect(getCheckpointValue(reopened, branchLast.manifest.id, "/langgraph/t1/~/a")).toBeUndefined();
      expect(validateStore(reopened)).toMatchObject({ ok: true, problems: [] });
    } finally {
      await reopened.close();
    }
  });

  it("a large plain-object channel is stored key by key: a step writes only the keys that changed, deleted keys go", async () => {
    const { dir, sessionId, saver } = await setup();
    const state: Record<string, string> = {};
    for (let i = 0; i < 200; i++) state[`k${i}`] = `value ${i}`;
    let config = { configurable: { thread_id: "big", checkpoint_ns: "" } } as Record<string, any>;
    config = await saver.put(config, checkpointOf({ state: { ...state } }, { state: 1 }), { source: "input", step: -1, parents: {} }, { state: 1 });
    state.k7 = "changed";
    delete state.k8;
    state["new/key"] = "added";
    config = await saver.put(config, checkpointOf({ state: { ...state } }, { state: 2 }), { source: "loop", step: 0, parents: {} }, { state: 2 });
    const tuple = await saver.getTuple(config);
    expect(tuple!.checkpoint.channel_values.state).toEqual(state);

    // A fresh saver (no cache) reads the same back.
    await saver.close();
    const other = new ApexSaver({ project: dir });
    cleanups.push(() => other.close());
    expect((await other.getTuple({ configurable: { thread_id: "big", checkpoint_ns: "" } }))!.checkpoint.channel_values.state).toEqual(state);
    await other.close();
    const { diff, valid } = await readStore(dir, (store) => {
      const [newest, oldest] = listCheckpoints(store, sessionId).items;
      return { diff: diffCheckpoints(store, oldest!.id, newest!.id).memory, valid: validateStore(store) };
    });
    expect(valid).toMatchObject({ ok: true, problems: [] });
    expect(diff).toEqual({
      added: ["/langgraph/big/~/state/new%2Fkey"],
      removed: ["/langgraph/big/~/state/k8"],
      changed: ["/langgraph/big/~", "/langgraph/big/~/state", "/langgraph/big/~/state/k7"],
    });
  });

  it("a large plain-object channel with a key that holds a lone surrogate is stored whole, as a smaller one is (it was refused as a name, APEX_E_BAD_INPUT), and split again once the key goes", async () => {
    const { dir, saver } = await setup();
    const state: Record<string, string> = {};
    for (let i = 0; i < 100; i++) state[`k${i}`] = `value ${i}`;
    const lone = "half an emoji \ud83d";
    let config = { configurable: { thread_id: "lone", checkpoint_ns: "" } } as Record<string, any>;
    const steps: Array<Record<string, string>> = [];
    const step = async (version: number) => {
      config = await saver.put(config, checkpointOf({ state: { ...state } }, { state: version }), { source: "loop", step: version, parents: {} }, { state: version });
      steps.push({ ...state });
    };
    await step(1); // split, key by key
    state[lone] = "its value \udc00 too";
    await step(2); // whole
    state.k1 = "changed";
    await step(3);
    delete state[lone];
    state.k2 = "changed";
    await step(4); // split again
    // Each step reads back as it was put, by a saver that wrote it and by a new one.
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    const read: Array<Record<string, string>> = [];
    for await (const tuple of reader.list({ configurable: { thread_id: "lone", checkpoint_ns: "" } })) read.unshift(tuple.checkpoint.channel_values.state as Record<string, string>);
    expect(read).toEqual(steps);
    expect(Object.keys(read[1]!)).toEqual(Object.keys(steps[1]!));
    expect((await saver.getTuple(config))!.checkpoint.channel_values.state).toEqual(state);
    const memory = new MemorySaver();
    await memory.put({ configurable: { thread_id: "lone", checkpoint_ns: "" } }, checkpointOf({ state: steps[1]! }, { state: 2 }), { source: "loop", step: 2, parents: {} });
    expect((await memory.getTuple({ configurable: { thread_id: "lone", checkpoint_ns: "" } }))!.checkpoint.channel_values.state).toEqual(read[1]);
    expect(await readStore(dir, (store) => validateStore(store))).toMatchObject({ ok: true, problems: [] });
  });

  it("a split channel whose keys come in another order (each key moved written again, with its place), whose objects change in place, and a put after a read, write exactly the keys that changed", async () => {
    const { dir, sessionId, saver } = await setup();
    const state: Record<string, unknown> = {};
    for (let i = 0; i < 100; i++) state[`k${i}`] = i % 10 === 0 ? { nested: i } : `value ${i}`;
    const nested = state.k10 as { nested: number };
    let config = { configurable: { thread_id: "order", checkpoint_ns: "" } } as Record<string, any>;
    let version = 1;
    const put = async (values: Record<string, unknown>) => {
      version += 1;
      config = await saver.put(config, checkpointOf({ state: values }, { state: version }), { source: "loop", step: version, parents: {} }, { state: version });
    };
    await put({ ...state });
    // The same keys backwards, one string changed, one object changed in place, one object unchanged.
    state.k3 = "changed";
    nested.nested = -1;
    await put(Object.fromEntries(Object.keys(state).reverse().map((key) => [key, state[key]])));
    // The same order again (keys compared in place): a string back to what it was two steps before, then changed again.
    for (const text of ["value 3", "changed"]) {
      state.k3 = text;
      await put(Object.fromEntries(Object.keys(state).reverse().map((key) => [key, state[key]])));
    }
    expect((await saver.getTuple(config))!.checkpoint.channel_values.state).toEqual(state);
    // A new saver reads the thread (its cache comes from the read), then puts the next step, made from the state it read.
    await saver.close();
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    const tuple = (await reader.getTuple({ configurable: { thread_id: "order", checkpoint_ns: "" } }))!;
    config = tuple.config as Record<string, any>;
    const resumed = tuple.checkpoint.channel_values.state as Record<string, unknown>;
    for (const changed of [state, resumed]) {
      delete changed.k5;
      changed.k7 = 7;
      changed.added = null;
    }
    version += 1;
    config = await reader.put(config, checkpointOf({ state: { ...resumed } }, { state: version }), { source: "loop", step: version, parents: {} }, { state: version });
    await reader.close();

    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    const read = (await fresh.getTuple(config))!.checkpoint.channel_values.state;
    expect(read).toEqual(state);
    expect(JSON.stringify(read)).toBe(JSON.stringify(resumed));
    await fresh.close();
    const diffs = await readStore(dir, (store) => {
      const steps = listCheckpoints(store, sessionId).items.reverse();
      // (in tree order, which is not name order)
      const sorted = (diff: { added: string[]; removed: string[]; changed: string[] }) => ({ added: diff.added.sort(), removed: diff.removed.sort(), changed: diff.changed.sort() });
      return steps.slice(1).map((to, i) => sorted(diffCheckpoints(store, steps[i]!.id, to.id).memory));
    });
    // Backwards, every key but the first (k99) came before one it used to follow: written again with its place.
    const allBut = (last: number) => Array.from({ length: last }, (_, i) => `/langgraph/order/~/state/k${i}`);
    expect(diffs).toEqual([
      { added: [], removed: [], changed: ["/langgraph/order/~", "/langgraph/order/~/state", ...allBut(99)].sort() },
      { added: [], removed: [], changed: ["/langgraph/order/~", "/langgraph/order/~/state", "/langgraph/order/~/state/k3"] },
      { added: [], removed: [], changed: ["/langgraph/order/~", "/langgraph/order/~/state", "/langgraph/order/~/state/k3"] },
      { added: ["/langgraph/order/~/state/added"], removed: ["/langgraph/order/~/state/k5"], changed: ["/langgraph/order/~", "/langgraph/order/~/state", "/langgraph/order/~/state/k7"] },
    ]);
  });

  it("a fork from an older checkpoint, and a saver whose cache is out of date, still store exactly the checkpoint given", async () => {
    const { dir, saver } = await setup();
    const base = { configurable: { thread_id: "fork", checkpoint_ns: "" } } as Record<string, any>;
    const first = await saver.put(base, checkpointOf({ a: "a1", b: "b1" }, { a: 1, b: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, b: 1 });
    // Another saver (another process) moves the thread on: this saver's cache no longer matches the memory.
    const other = new ApexSaver({ project: dir });
    cleanups.push(() => other.close());
    await other.put(first, checkpointOf({ a: "a2", b: "b1" }, { a: 2, b: 1 }), { source: "loop", step: 0, parents: {} }, { a: 2 });
    await other.close();
    // A fork from the first checkpoint, sent as a delta against it: refused as stale, then sent whole.
    const forked = await saver.put(first, checkpointOf({ a: "a1", b: "b3" }, { a: 1, b: 3 }), { source: "update", step: 0, parents: {} }, { b: 3 });
    expect((await saver.getTuple(forked))!.checkpoint.channel_values).toEqual({ a: "a1", b: "b3" });
    const history = [];
    for await (const tuple of saver.list({ configurable: { thread_id: "fork" } })) history.push(tuple.checkpoint.channel_values);
    expect(history).toEqual([{ a: "a1", b: "b3" }, { a: "a2", b: "b1" }, { a: "a1", b: "b1" }]);
    await saver.close();
    expect(await readStore(dir, (store) => validateStore(store))).toMatchObject({ ok: true, problems: [] });
  });

  it("a checkpoint put again under its id by another saver (as MemorySaver and SqliteSaver replace it): a step from it stores the checkpoint given, not the one this saver's cache had", async () => {
    const { dir, saver } = await setup();
    const thread = { configurable: { thread_id: "again", checkpoint_ns: "" } } as Record<string, any>;
    const again = checkpointOf({ a: "a1" }, { a: 1 });
    const first = await saver.put(thread, again, { source: "input", step: -1, parents: {} }, { a: 1 });
    // Another saver puts the same id again with another channel: this saver's cache of that id is out of date.
    const other = new ApexSaver({ project: dir });
    cleanups.push(() => other.close());
    await other.put(thread, { ...again, channel_values: { a: "a1", b: "b1" }, channel_versions: { a: 1, b: 1 } }, { source: "input", step: -1, parents: {} }, { a: 1, b: 1 });
    // The next step drops "b" (as it is now) and changes "a": sent as a delta against the checkpoint cached, it kept "b".
    const next = checkpointOf({ a: "a2" }, { a: 2 });
    const second = await saver.put(first, next, { source: "loop", step: 0, parents: {} }, { a: 2 });
    const memory: BaseCheckpointSaver = new MemorySaver();
    await memory.put(thread, again, { source: "input", step: -1, parents: {} }, { a: 1 });
    await memory.put(thread, { ...again, channel_values: { a: "a1", b: "b1" }, channel_versions: { a: 1, b: 1 } }, { source: "input", step: -1, parents: {} }, { a: 1, b: 1 });
    await memory.put(first, next, { source: "loop", step: 0, parents: {} }, { a: 2 });
    for (const reader of [saver, other, memory]) {
      const tuple = await reader.getTuple(second);
      expect(tuple!.checkpoint.channel_values).toEqual({ a: "a2" });
      expect(tuple!.checkpoint.channel_versions).toEqual({ a: 2 });
    }
    await Promise.all([saver.close(), other.close()]);
    expect(await readStore(dir, (store) => validateStore(store))).toMatchObject({ ok: true, problems: [] });
  });

  it("a step whose parent is gone (its thread deleted by another saver, its APEX checkpoint deleted) keeps the channels it did not change: they were stored without their values", async () => {
    const { dir, saver } = await setup();
    const state = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, i]));
    const values = (b: string) => ({ a: "A", b, state });
    const first = await saver.put({ configurable: { thread_id: "gone", checkpoint_ns: "" } }, checkpointOf(values("B1"), { a: 1, b: 1, state: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, b: 1, state: 1 });
    // Another saver (another process) deletes the thread while this one's graph runs on it: this saver's next step is a delta against a parent that is gone.
    const other = new ApexSaver({ project: dir });
    cleanups.push(() => other.close());
    await other.deleteThread("gone");
    const second = await saver.put(first, checkpointOf(values("B2"), { a: 1, b: 2, state: 1 }), { source: "loop", step: 0, parents: {} }, { b: 2 });
    expect((await saver.getTuple(second))!.checkpoint.channel_values).toEqual(values("B2")); // it was { b: "B2" }
    // The parent's APEX checkpoint deleted, and a saver without a cache of it (a put sent whole, the unchanged channels without their values).
    const store = await openProjectStore(dir);
    await deleteCheckpoint(store, "latest").finally(() => store.close());
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    const third = await fresh.put(second, checkpointOf(values("B3"), { a: 1, b: 3, state: 1 }), { source: "loop", step: 1, parents: {} }, { b: 3 });
    expect((await fresh.getTuple(third))!.checkpoint.channel_values).toEqual(values("B3"));
    // A parent that never was: the same. (Without a parent, only the values of newVersions are stored, as the conformance suite has it.)
    const orphan = await fresh.put({ configurable: { thread_id: "orphan", checkpoint_ns: "", checkpoint_id: uuid6(1) } }, checkpointOf({ a: "A", b: "B" }, { a: 1, b: 1 }), { source: "loop", step: 3, parents: {} }, { b: 1 });
    expect((await fresh.getTuple(orphan))!.checkpoint.channel_values).toEqual({ a: "A", b: "B" });
    const noParent = await fresh.put({ configurable: { thread_id: "first", checkpoint_ns: "" } }, checkpointOf({ a: "A", b: "B" }, { a: 1, b: 1 }), { source: "input", step: -1, parents: {} }, { b: 1 });
    // (read by another saver of this process at once: it read its snapshot of before the put, and found no step)
    expect((await other.getTuple(noParent))!.checkpoint.channel_values).toEqual({ b: "B" });
    await Promise.all([saver.close(), other.close(), fresh.close()]);
    expect(await readStore(dir, (store) => validateStore(store))).toMatchObject({ ok: true, problems: [] });
  });

  it("close() lets the calls under way finish: a put or writes it came upon failed with LMDB's 'Can not renew a transaction from a closed database'", async () => {
    const { dir, saver } = await setup();
    const first = await saver.put({ configurable: { thread_id: "closing", checkpoint_ns: "" } }, checkpointOf({ a: 0 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    for (const wait of [0, 1, 5]) {
      const step = saver.put(first, checkpointOf({ a: "x".repeat(1e6) }, { a: 2 + wait }), { source: "loop", step: wait, parents: {} }, { a: 2 + wait });
      const writes = saver.putWrites(first, [["a", wait]], `task-${wait}`);
      await new Promise((resolve) => setTimeout(resolve, wait));
      await saver.close();
      await expect(Promise.all([step, writes])).resolves.toBeDefined();
    }
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    const steps = [];
    for await (const tuple of fresh.list({ configurable: { thread_id: "closing" } })) steps.push(tuple.metadata?.step);
    expect(steps).toEqual([5, 1, 0, -1]);
    expect((await fresh.getTuple(first))!.pendingWrites!.map(([task]) => task).sort()).toEqual(["task-0", "task-1", "task-5"]);
  });

  it("a step that drops one channel and adds another drops it (as many channels as before)", async () => {
    const { saver } = await setup();
    const first = await saver.put({ configurable: { thread_id: "swap", checkpoint_ns: "" } }, checkpointOf({ a: 1, b: 2 }, { a: 1, b: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, b: 1 });
    const second = await saver.put(first, checkpointOf({ a: 1, c: 3 }, { a: 1, c: 2 }), { source: "loop", step: 0, parents: {} }, { c: 2 });
    const tuple = await saver.getTuple(second);
    expect(tuple!.checkpoint.channel_values).toEqual({ a: 1, c: 3 });
    expect(tuple!.checkpoint.channel_versions).toEqual({ a: 1, c: 2 });
  });

  it("pending writes come back in LangGraph's order, special writes replace, regular ones are kept once", async () => {
    const { saver } = await setup();
    const config = await saver.put({ configurable: { thread_id: "w", checkpoint_ns: "" } }, checkpointOf({}, {}), { source: "input", step: -1, parents: {} }, {});
    await saver.putWrites(config, [["x", 2], ["y", 3]], "task-b");
    await saver.putWrites(config, [["x", 1]], "task-a");
    await saver.putWrites(config, [["x", 99]], "task-a"); // a retried task writes again: the first stays
    await saver.putWrites(config, [["__error__", "first"]], "task-c");
    await saver.putWrites(config, [["__error__", "second"]], "task-c");
    expect((await saver.getTuple(config))!.pendingWrites).toEqual([
      ["task-a", "x", 1],
      ["task-b", "x", 2],
      ["task-b", "y", 3],
      ["task-c", "__error__", "second"],
    ]);
  });

  it("thread ids, namespaces and channel names that are not path segments round-trip; checkpoint list names their steps unambiguously", async () => {
    const { dir, sessionId, saver } = await setup();
    const names = ["a/b", "..", "~", "", "x%y", "ü ✓"];
    for (const name of names.filter(Boolean)) {
      const config = await saver.put({ configurable: { thread_id: name, checkpoint_ns: name === ".." ? "" : `${name}|sub:1` } }, checkpointOf({ [name]: name, ".": 1 }, { [name]: 1, ".": 1 }), { source: "input", step: -1, parents: {} }, { [name]: 1, ".": 1 });
      const tuple = await saver.getTuple(config);
      expect(tuple!.config).toEqual(config);
      expect(tuple!.checkpoint.channel_values).toEqual({ [name]: name, ".": 1 });
    }
    // Thread "a" namespace "b" beside thread "a/b"; a subgraph's namespace as LangGraph makes it stays bare.
    await saver.put({ configurable: { thread_id: "a", checkpoint_ns: "b" } }, checkpointOf({ x: 1 }, { x: 1 }), { source: "loop", step: 2, parents: {} }, { x: 1 });
    await saver.put({ configurable: { thread_id: "th:1", checkpoint_ns: "inner:6f1c|leaf:9" } }, checkpointOf({ x: 1 }, { x: 1 }), { source: "loop", step: 0, parents: {} }, { x: 1 });
    await saver.close();
    // It said `langgraph a/b/a/b|sub:1 step -1 (input)`: which "/" parts the thread from the namespace?
    expect(await readStore(dir, (store) => listCheckpoints(store, sessionId, { order: "oldest" }).items.map((item) => item.description))).toEqual([
      'langgraph "a/b"/"a/b|sub:1" step -1 (input)',
      "langgraph .. step -1 (input)",
      'langgraph "~"/"~|sub:1" step -1 (input)',
      'langgraph "x%y"/"x%y|sub:1" step -1 (input)',
      'langgraph "ü ✓"/"ü ✓|sub:1" step -1 (input)',
      "langgraph a/b step 2 (loop)",
      'langgraph "th:1"/inner:6f1c|leaf:9 step 0 (loop)',
    ]);
    const listed = runApex(["checkpoint", "list"], { cwd: dir });
    expect(listed.stdout).toContain('langgraph "a/b"/"a/b|sub:1" step -1 (input)');
    const shown = runApex(["checkpoint", "show", "checkpoint-001"], { cwd: dir });
    expect(shown.stdout).toContain('  langgraph    thread "a/b", namespace "a/b|sub:1"');
    // Line breaks in what a step's metadata and ids hold stay in their row (they started lines of their own).
    const odd = new ApexSaver({ project: dir });
    cleanups.push(() => odd.close());
    await odd.put({ configurable: { thread_id: "odd", checkpoint_ns: "" } }, { ...checkpointOf({ x: 1 }, { x: 1 }), id: "id\nstep 9, source forged" }, { source: "loop\nmemory", step: 0, parents: {}, writes: { "node\nx": 1 } } as unknown as CheckpointMetadata /* a source LangGraph never writes */, { x: 1 });
    await odd.close();
    const oddShown = runApex(["checkpoint", "show", "checkpoint-008"], { cwd: dir });
    expect(oddShown.stdout).toContain(
      [
        "  description  langgraph odd step 0 (loop\\u000amemory)",
        "  pinned       no",
      ].join("\n"),
    );
    expect(oddShown.stdout).toContain(["               checkpoint id\\u000astep 9, source forged", "               step 0, source loop\\u000amemory, writes of node\\u000ax", "               channels in /langgraph/odd/~"].join("\n"));
  });

  it("checkpoint ids that are not uuid6 order as MemorySaver orders them (as strings), ids with characters APEX encodes too: getTuple resumes from the greatest, the one retention keeps", async () => {
    const { saver } = await setup("plugins:\n  checkpoint: {}\n  retention:\n    keep_last: 1\n    auto_cleanup: true\n");
    for (const ids of [["1", "2", "10"], ["az", "a~"], ["z", "\u00e9"], ["a/b", "a0", "a b"]]) {
      const thread_id = `ids ${ids.join(",")}`;
      const memory = new MemorySaver();
      for (const id of ids) {
        for (const on of [saver, memory] as BaseCheckpointSaver[]) await on.put({ configurable: { thread_id, checkpoint_ns: "" } }, { ...checkpointOf({ a: id }, { a: 1 }), id }, { source: "input", step: -1, parents: {} }, { a: 1 });
      }
      const latest = async (on: BaseCheckpointSaver) => (await on.getTuple({ configurable: { thread_id } }))?.checkpoint.channel_values;
      const listed = async (on: BaseCheckpointSaver, before?: string) => {
        const out = [];
        for await (const tuple of on.list({ configurable: { thread_id } }, before ? { before: { configurable: { checkpoint_id: before } } } : {})) out.push(tuple.config.configurable?.checkpoint_id);
        return out;
      };
      // (retention keeps the last checkpoint written and the thread's head: MemorySaver keeps them all)
      expect(await latest(saver)).toEqual(await latest(memory));
      expect((await listed(saver))[0]).toEqual((await listed(memory))[0]);
    }
    // Without retention each is listed, in MemorySaver's order, `before` included.
    const { saver: plain } = await setup();
    const memory = new MemorySaver();
    const ids = ["a~", "az", "\u00e9", "z", "a b", "10", "9"];
    for (const id of ids) for (const on of [plain, memory] as BaseCheckpointSaver[]) await on.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, { ...checkpointOf({ a: id }, { a: 1 }), id }, { source: "input", step: -1, parents: {} }, { a: 1 });
    const listed = async (on: BaseCheckpointSaver, before?: string) => {
      const out = [];
      for await (const tuple of on.list({ configurable: { thread_id: "t" } }, before ? { before: { configurable: { checkpoint_id: before } } } : {})) out.push(tuple.config.configurable?.checkpoint_id);
      return out;
    };
    expect(await listed(plain)).toEqual(["\u00e9", "z", "a~", "az", "a b", "9", "10"]);
    expect(await listed(plain)).toEqual(await listed(memory));
    expect(await listed(plain, "az")).toEqual(await listed(memory, "az"));
  });

  it("names that are Object.prototype's keep their values: a channel, a key of a split channel and a metadata filter key \"__proto__\", writes to a channel \"constructor\"", async () => {
    const { dir, saver } = await setup();
    // As JSON.parse makes them (as a graph's state built from JSON input has them): own keys.
    const values = JSON.parse('{"__proto__": "P", "constructor": "C", "toString": "S"}') as Record<string, unknown>;
    values.state = JSON.parse(`{"__proto__": {"polluted": true}, ${Array.from({ length: 70 }, (_, i) => `"k${i}": ${i}`).join(", ")}}`);
    const versions = JSON.parse('{"__proto__": 1, "constructor": 1, "toString": 1, "state": 1}') as Record<string, number>;
    const first = await saver.put({ configurable: { thread_id: "__proto__", checkpoint_ns: "" } }, checkpointOf(values, versions), { source: "input", step: -1, parents: {} }, versions);
    await saver.putWrites(first, [["constructor", "w1"], ["__proto__", "w2"]], "task");
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    const read = (await fresh.getTuple(first))!;
    expect(read.checkpoint.channel_values).toEqual(values);
    expect(Object.keys(read.checkpoint.channel_values).sort()).toEqual(["__proto__", "constructor", "state", "toString"]);
    expect(Object.keys(read.checkpoint.channel_versions).sort()).toEqual(["__proto__", "constructor", "state", "toString"]);
    expect(Object.getPrototypeOf(read.checkpoint.channel_values)).toBe(Object.prototype);
    expect(Object.keys(read.checkpoint.channel_values.state as object)).toHaveLength(71);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(read.pendingWrites).toEqual([["task", "constructor", "w1"], ["task", "__proto__", "w2"]]);
    // A step after the read (a delta of the split channel from what the read cached) keeps the key too.
    const state = JSON.parse(JSON.stringify(values.state)) as Record<string, unknown>;
    state.k3 = "changed";
    const second = await fresh.put(first, checkpointOf({ ...values, state }, { ...versions, state: 2 }), { source: "loop", step: 0, parents: {} }, { state: 2 });
    const again = new ApexSaver({ project: dir });
    cleanups.push(() => again.close());
    const next = (await again.getTuple(second))!.checkpoint.channel_values.state as Record<string, unknown>;
    expect(Object.prototype.hasOwnProperty.call(next, "__proto__")).toBe(true);
    expect(next).toEqual(state);
    const listed = [];
    for await (const tuple of again.list({ configurable: { thread_id: "__proto__" } }, { filter: JSON.parse('{"__proto__": 1}') })) listed.push(tuple);
    expect(listed).toEqual([]); // no metadata has such a key: a filter on it matches none (not every checkpoint)
  });

  it("string values read back exactly, escapes, quotes and JSON-looking text included, as whole channels and as keys of a split one", async () => {
    const { dir, saver } = await setup();
    const strings = ["plain", "", 'say "hi"', "back\\slash", "line\nbreak", "tab\t", '"quoted"', "ü ✓ \u2028", "\ud83d\ude00", "lone \ud800 surrogate", "\u0001\u007f", '{"lc":1}', "[1,2]"];
    const values: Record<string, unknown> = Object.fromEntries(strings.map((text, i) => [`c${i}`, text]));
    const split = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, strings[i % strings.length]!]));
    values.split = split;
    const versions = Object.fromEntries(Object.keys(values).map((name) => [name, 1]));
    const config = await saver.put({ configurable: { thread_id: "strings", checkpoint_ns: "" } }, checkpointOf(values, versions), { source: "input", step: -1, parents: {} }, versions);
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    const tuple = await fresh.getTuple(config);
    expect(tuple!.checkpoint.channel_values).toEqual(values);
  });

  it("a damaged tree node or channel value fails getTuple with APEX_E_INTEGRITY, for a channel and for a key of a split one", async () => {
    const values: Record<string, unknown> = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`c${i}`, `channel ${i} `.repeat(40)]));
    values.state = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, `key ${i} `.repeat(40)]));
    const versions = Object.fromEntries(Object.keys(values).map((name) => [name, 1]));
    // What to damage: the node below the split channel, a key's value (in a compressed pack), a channel's value.
    const cases: Array<{ kind: "tree" | "value"; path: string[]; hashOf: (entry: DirEntry) => string | undefined }> = [
      { kind: "tree", path: ["state"], hashOf: (entry) => entry.tree },
      { kind: "value", path: ["state", "k7"], hashOf: (entry) => entry.value },
      { kind: "value", path: ["c3"], hashOf: (entry) => entry.value },
    ];
    for (const { kind, path, hashOf } of cases) {
      const { dir, sessionId, saver } = await setup();
      const config = await saver.put({ configurable: { thread_id: "damaged", checkpoint_ns: "" } }, checkpointOf(values, versions), { source: "input", step: -1, parents: {} }, versions);
      await saver.close();
      const read = async () => {
        const reader = new ApexSaver({ project: dir });
        try {
          return await reader.getTuple(config);
        } finally {
          await reader.close();
        }
      };
      expect((await read())!.checkpoint.channel_values).toEqual(values);
      const store = await openStore(join(dir, ".apex"));
      let damaged: string;
      try {
        const objects = ObjectStore.of(store);
        const manifest = store.get(`/sessions/${sessionId}/checkpoint-001`) as { memory: { root: string } };
        damaged = hashOf(lookupEntry(objects.view({ fresh: true }), manifest.memory.root, ["langgraph", "damaged", "~", ...path])!)!;
        const location = objects.locate(kind, damaged)!;
        expect(Boolean(location.codec)).toBe(kind === "value"); // channel values are written compressed
        const pack = copyOf(objects.packs.getBinaryFast(location.pack)!);
        pack[location.codec ? pack.length >> 1 : location.offset + (location.length >> 1)]! ^= 0x20;
        await store.transaction(() => objects.packs.put(location.pack, pack));
      } finally {
        await store.close();
      }
      const error = await read().then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(error).toMatchObject({ code: "APEX_E_INTEGRITY", kind, reason: "corrupt" });
      // A compressed pack is damaged as a whole: the value named is one of that pack's.
      if (kind === "tree") expect(error).toMatchObject({ hash: damaged });
    }
  });

  it("a string is written as LangGraph's JsonPlusSerializer writes it (the text put takes without the serializer)", async () => {
    const serde = new JsonPlusSerializer();
    for (const text of ["plain", "", 'say "hi"', "back\\slash", "line\nbreak", "ü ✓ \u2028", "\ud83d\ude00", "lone \ud800 surrogate", "\udc00", "\u0001", '{"lc":1}']) {
      const [type, bytes] = await serde.dumpsTyped(text);
      expect([type, Buffer.from(bytes).toString("utf8")]).toEqual(["json", JSON.stringify(text)]);
    }
  });

  it("a serde that extends JsonPlusSerializer reads every value as it loads it (as MemorySaver with it does): its loadsTyped was skipped for plain strings and values without an \"lc\" key", async () => {
    // Dates back from their text: a serde made by extending LangGraph's own.
    class DateSerde extends JsonPlusSerializer {
      override async loadsTyped(type: string, data: Uint8Array | string): Promise<any> {
        const revive = (value: unknown): unknown =>
          typeof value === "string" && /^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(value) ? new Date(value) : value && typeof value === "object" && !Array.isArray(value) ? Object.fromEntries(Object.entries(value).map(([key, item]) => [key, revive(item)])) : value;
        return revive(await super.loadsTyped(type, data));
      }
    }
    const { dir } = await setup();
    const saver = new ApexSaver({ project: dir, serde: new DateSerde() });
    cleanups.push(() => saver.close());
    const when = new Date(0);
    const values = { at: when, nested: { at: when }, split: Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, i % 2 ? when : { at: when }])) };
    const versions = { at: 1, nested: 1, split: 1 };
    const config = await saver.put({ configurable: { thread_id: "dates", checkpoint_ns: "" } }, checkpointOf(values, versions), { source: "input", step: -1, parents: {} }, versions);
    const memory: BaseCheckpointSaver = new MemorySaver(new DateSerde());
    const remembered = await memory.put({ configurable: { thread_id: "dates", checkpoint_ns: "" } }, checkpointOf(values, versions), { source: "input", step: -1, parents: {} }, versions);
    expect((await memory.getTuple(remembered))!.checkpoint.channel_values).toEqual(values);
    expect((await saver.getTuple(config))!.checkpoint.channel_values).toEqual(values); // each Date was its ISO string
  });

  it("retention keeps the latest checkpoint of every thread, however many steps other threads take", async () => {
    const { saver } = await setup("plugins:\n  checkpoint: {}\n  retention:\n    keep_last: 2\n    auto_cleanup: true\n");
    const quiet = await saver.put({ configurable: { thread_id: "quiet", checkpoint_ns: "" } }, checkpointOf({ a: "still here" }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    let busy = { configurable: { thread_id: "busy", checkpoint_ns: "" } } as Record<string, any>;
    for (let step = 0; step < 6; step++) busy = await saver.put(busy, checkpointOf({ n: step }, { n: step + 1 }), { source: "loop", step, parents: {} }, { n: step + 1 });
    expect((await saver.getTuple({ configurable: { thread_id: "quiet", checkpoint_ns: "" } }))!.checkpoint.channel_values).toEqual({ a: "still here" });
    expect((await saver.getTuple(quiet))!.checkpoint.channel_values).toEqual({ a: "still here" });
    const kept = [];
    for await (const tuple of saver.list({ configurable: { thread_id: "busy" } })) kept.push(tuple.metadata?.step);
    expect(kept).toEqual([5, 4]); // retention applies to LangGraph steps as to any checkpoint
  });

  it("retention keeps the steps a head's delta channels are rebuilt from, back to their last snapshot: a DeltaValue's history came back as its last few steps only, and the next run went on from that", async () => {
    const steps = 12;
    const State = new StateSchema({
      history: new DeltaValue(z.array(z.string()).default(() => []), { inputSchema: z.string(), reducer: (current: string[], writes: string[]) => [...current, ...writes], snapshotFrequency: 5 }),
      n: z.number().default(0),
    });
    const graph = (checkpointer: BaseCheckpointSaver) =>
      new StateGraph(State)
        .addNode("step", (state) => ({ history: `item${state.n}`, n: state.n + 1 }))
        .addEdge(START, "step")
        .addConditionalEdges("step", (state) => (state.n < steps ? "step" : END))
        .compile({ checkpointer });
    const { dir, sessionId, saver } = await setup("plugins:\n  checkpoint: {}\n  retention:\n    keep_last: 2\n    auto_cleanup: true\n");
    const config = { configurable: { thread_id: "t1" } };
    const memory = new MemorySaver();
    await graph(memory).invoke({ history: "start" }, config);
    await graph(saver).invoke({ history: "start" }, config);
    const expected = (await graph(memory).getState(config)).values.history;
    expect(expected).toHaveLength(steps + 1);
    // Read by a new saver and graph, as a resumed graph reads it (the walk through the parents goes to the store).
    const again = new ApexSaver({ project: dir });
    cleanups.push(() => again.close());
    expect((await graph(again).getState(config)).values.history).toEqual(expected);
    // Retention still removed the steps before the last snapshot (the history needs none of them), and keeps the others for it.
    const listed = [];
    for await (const tuple of again.list(config)) listed.push(tuple);
    expect(listed.length).toBeLessThan(steps + 2);
    // The oldest step kept holds the history's snapshot: the walk ends there.
    expect(Object.hasOwn(listed.at(-1)!.checkpoint.channel_values, "history")).toBe(true);
    expect(listed.slice(0, -1).some((tuple) => Object.hasOwn(tuple.checkpoint.channel_values, "history"))).toBe(false);
    const reasons = await readStore(dir, (store) => planRetention(store, { keepLast: 2 }, { sessionId }).sessions[0]!.result.decisions.filter((decision) => decision.keep).map((decision) => decision.item.protected));
    expect(reasons.filter((protectedBy) => protectedBy.includes("langgraph thread t1: delta channel history"))).toHaveLength(listed.length - 1);
    // `apex checkpoint delete` refuses such a step, as it refuses a branch point: it would cut the history as retention did.
    const historyStep = await readStore(dir, (store) => [...langGraphHeads(store, sessionId)].find(([, why]) => why.includes("langgraph thread t1: delta channel history"))![0]);
    const refused = runApex(["checkpoint", "delete", historyStep, "--json"], { cwd: dir });
    expect(refused.status).toBe(4);
    expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_CONFLICT", details: { needed_by: ["langgraph thread t1: delta channel history"] } });
    expect(runApex(["checkpoint", "delete", historyStep], { cwd: dir }).stderr).toContain("LangGraph thread t1 rebuilds its delta channels");
    expect((await graph(again).getState(config)).values.history).toEqual(expected);
    // The next run goes on from the whole history.
    const more = await graph(again).invoke({ n: steps - 1 }, config);
    expect(more.history).toEqual([...expected, `item${steps - 1}`]);
    // --force deletes such a step, and the graph reads the history from the steps after it only.
    const needed = await readStore(dir, (store) => [...langGraphHeads(store, sessionId)].find(([, why]) => why.includes("langgraph thread t1: delta channel history"))![0]);
    expect(runApex(["checkpoint", "delete", needed, "--force"], { cwd: dir }).status).toBe(0);
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    expect((await graph(fresh).getState(config)).values.history.length).toBeLessThan(more.history.length);
  });

  it("list of a thread gives its root namespace first, then its subgraphs' in the order of their names: the root's segment, \"~\", put it last, and a limit of 1 gave an old subgraph step", async () => {
    const Notes = Annotation.Root({ notes: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }) });
    const inner = new StateGraph(Notes).addNode("inner", () => ({ notes: ["inner"] })).addEdge(START, "inner").addEdge("inner", END).compile();
    const graph = (checkpointer: BaseCheckpointSaver) =>
      new StateGraph(Notes).addNode("sub", inner).addNode("after", () => ({ notes: ["after"] })).addEdge(START, "sub").addEdge("sub", "after").addEdge("after", END).compile({ checkpointer });
    const { saver } = await setup();
    const config = { configurable: { thread_id: "t1" } };
    const memory = new MemorySaver();
    for (const checkpointer of [memory, saver]) await graph(checkpointer).invoke({ notes: [] }, config);
    const listed = async (checkpointer: BaseCheckpointSaver, limit?: number) => {
      const out: Array<[string, unknown]> = [];
      for await (const tuple of checkpointer.list(config, limit === undefined ? {} : { limit })) out.push([tuple.config.configurable!.checkpoint_ns.replace(/:.*/, ":<task>"), tuple.metadata?.step]);
      return out;
    };
    expect(await listed(saver, 1)).toEqual(await listed(memory, 1));
    expect(await listed(saver, 1)).toEqual([["", 2]]);
    const all = await listed(saver);
    expect(all.map(([ns]) => ns)).toEqual(["", "", "", "", "sub:<task>", "sub:<task>", "sub:<task>"]);
    expect(all.map(([, step]) => step)).toEqual([2, 1, 0, -1, 1, 0, -1]);
  });

  it("the README's resume: a crash after a task saved its writes and before its step's checkpoint leaves next empty and tasks not, and invoke(null) goes on to the interrupt", async () => {
    const State = Annotation.Root({ notes: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }) });
    const graph = (checkpointer: BaseCheckpointSaver) =>
      new StateGraph(State)
        .addNode("draft", () => ({ notes: ["draft written"] }))
        .addNode("review", () => ({ notes: [`reviewer says: ${interrupt("approve?")}`] }))
        .addEdge(START, "draft")
        .addEdge("draft", "review")
        .addEdge("review", END)
        .compile({ checkpointer });
    const { dir, saver } = await setup();
    // The process "dies" at the put of the step after draft's writes: the put never happens.
    const crashing = Object.assign(Object.create(Object.getPrototypeOf(saver)), saver) as ApexSaver;
    const put = saver.put.bind(saver);
    crashing.put = async (config, checkpoint, metadata, versions) => {
      if (metadata.step === 1) throw new Error("killed");
      return put(config, checkpoint, metadata, versions);
    };
    const config = { configurable: { thread_id: "review-42" }, durability: "sync" as const };
    await expect(graph(crashing).invoke({ notes: [] }, config)).rejects.toThrow("killed");
    const again = new ApexSaver({ project: dir });
    cleanups.push(() => again.close());
    const state = await graph(again).getState(config);
    expect(state.next).toEqual([]);
    expect(state.tasks.map((task) => task.name)).toEqual(["draft"]);
    // What the README resumes on: tasks (next alone stopped here).
    await graph(again).invoke(null, config);
    const after = await graph(again).getState(config);
    expect(after.next).toEqual(["review"]);
    expect(after.values.notes).toEqual(["draft written"]);
    expect(after.tasks[0]!.interrupts.map((pending) => pending.value)).toEqual(["approve?"]);
  });

  it("a LangGraph step's APEX checkpoint deleted (retention, checkpoint delete) takes its index record and writes along; the thread's head deleted, it resumes from the step before, which retention then keeps", async () => {
    const { dir, sessionId, saver } = await setup("plugins:\n  checkpoint: {}\n  retention:\n    keep_last: 3\n    auto_cleanup: true\n");
    const thread = { configurable: { thread_id: "t", checkpoint_ns: "" } } as Record<string, any>;
    let config = thread;
    for (let step = 0; step < 6; step++) {
      config = await saver.put(config, checkpointOf({ n: step }, { n: step + 1 }), { source: "loop", step, parents: {} }, { n: step + 1 });
      await saver.putWrites(config, [["n", step + 1]], `task-${step}`);
    }
    await saver.close();
    const index = () => readStore(dir, (store) => [...store.keysBelow(`/sessions/${sessionId}/langgraph/t/~`)].map((key) => key.split("/").slice(6, 7).join()).sort());
    // Retention removed steps 0-2: their index records and writes went with them (they stayed, for ever).
    expect(await index()).toEqual(["checkpoints", "checkpoints", "checkpoints", "writes", "writes", "writes"]);

    // The thread's head (step 5) deleted by hand: getTuple found no checkpoint at all (the graph started the thread afresh).
    expect(runApex(["checkpoint", "delete", "latest"], { cwd: dir }).status).toBe(0);
    const again = new ApexSaver({ project: dir });
    cleanups.push(() => again.close());
    const steps = async (on: ApexSaver) => {
      const found = [];
      for await (const tuple of on.list(thread)) found.push(tuple.metadata?.step);
      return found;
    };
    expect((await again.getTuple(thread))?.metadata?.step).toBe(4);
    expect(await steps(again)).toEqual([4, 3]);
    const protectedSteps = () => readStore(dir, (store) => [...langGraphHeads(store, sessionId).keys()].map((id) => listCheckpoints(store, sessionId).items.find((item) => item.id === id)?.description));
    expect(await protectedSteps()).toEqual(["langgraph t step 4 (loop)"]);

    // A head naming a checkpoint removed otherwise (repair, a store whose delete left the head): getTuple takes the greatest id still stored.
    await again.close();
    const store = await openProjectStore(dir);
    try {
      const latest = listCheckpoints(store, sessionId).items[0]!;
      await store.transaction(() => removeCheckpointRecords(store, { sessionId, sequence: latest.sequence, id: latest.id }, "test"));
    } finally {
      await store.close();
    }
    expect((await again.getTuple(thread))?.metadata?.step).toBe(3);
    // Retention keeps that one: it protected the head's id, which no checkpoint has, and so nothing of the thread.
    await again.put({ configurable: { thread_id: "other", checkpoint_ns: "" } }, checkpointOf({ n: 0 }, { n: 1 }), { source: "input", step: -1, parents: {} }, { n: 1 });
    await again.close();
    const kept = await readStore(dir, (store) => {
      const { decisions } = planRetention(store, { keepLast: 1 }, { sessionId }).sessions[0]!.result;
      const described = new Map(listCheckpoints(store, sessionId).items.map((item) => [item.id, item.description]));
      return decisions.filter((decision) => decision.keep).map((decision) => [described.get(decision.item.id), decision.item.protected]);
    });
    expect(kept).toEqual([
      ["langgraph other step -1 (input)", ["langgraph thread other"]],
      ["langgraph t step 3 (loop)", ["langgraph thread t"]],
    ]);
  });

  it("session repair takes a removed step's index record, writes and head along (the head names the newest step kept); validate reports those an earlier repair left, which repair removes", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "t", checkpoint_ns: "" } } as Record<string, any>;
    const solo = { configurable: { thread_id: "solo", checkpoint_ns: "" } } as Record<string, any>;
    const ids: string[] = [];
    let config = thread;
    for (let step = 0; step < 4; step++) {
      config = await saver.put(config, checkpointOf({ n: step }, { n: step + 1 }), { source: "loop", step, parents: {} }, { n: step + 1 });
      await saver.putWrites(config, [["n", step + 1]], `task-${step}`);
      ids.push(config.configurable.checkpoint_id);
    }
    const soloConfig = await saver.put(solo, checkpointOf({ s: 1 }, { s: 1 }), { source: "input", step: -1, parents: {} }, { s: 1 });
    await saver.putWrites(soloConfig, [["s", 2]], "task-solo");
    await saver.close();
    // checkpoint-001..004: t's steps 0-3; checkpoint-005: solo's one step.
    const manifest = (sequence: number) => `/sessions/${sessionId}/checkpoint-${String(sequence).padStart(3, "0")}`;
    const lgKeys = () => readStore(dir, (store) => [...store.keysBelow(`/sessions/${sessionId}`)].filter((key) => key.includes("/langgraph")).map((key) => key.slice(`/sessions/${sessionId}/`.length)));

    // Step 1 removed as an earlier repair did (its manifest and catalog records only): its index record and writes stay.
    let store = await openProjectStore(dir);
    try {
      await store.transaction(() => removeCheckpointRecords(store, { sessionId, sequence: 2, id: listCheckpoints(store, sessionId).items.find((item) => item.sequence === 2)!.id }, "test"));
    } finally {
      await store.close();
    }
    const warned = runApex(["session", "validate"], { cwd: dir });
    expect(warned.status, warned.stderr).toBe(0); // space, not damage: no read reaches them
    expect(warned.stdout).toContain("is valid, with warnings");
    expect(warned.stdout).toContain(`warning langgraph-index-dangling Checkpoint ${ids[1]} of LangGraph thread t of session ${sessionId}: its index record and 1 pending write name ${sessionId}/checkpoint-002, which is no longer stored; no read reaches them.`);
    expect(warned.stdout).toContain("Next: apex session repair (removes those LangGraph records and moves the heads; --dry-run lists them)");

    // Damage: t's head (step 3) tampered with, solo's only step undecodable (it no longer says which thread it was).
    store = await openProjectStore(dir);
    try {
      await store.set(manifest(4), { ...(store.get(manifest(4)) as Record<string, JsonValue>), description: "edited by hand" });
      const kv = store.table<string, Buffer>("kv", { keys: "string", values: "binary" });
      await store.transaction(() => kv.put(manifest(5), Buffer.from([0xd6, 0xff, 0, 0, 0, 0])));
    } finally {
      await store.close();
    }
    const repaired = runApex(["session", "repair", "--json"], { cwd: dir });
    expect(repaired.status, repaired.stderr).toBe(0);
    const actions = (JSON.parse(repaired.stdout) as { actions: Array<{ action: string; target: string; reason: string }> }).actions;
    const index = (thread: string, id: string) => `/sessions/${sessionId}/langgraph/${thread}/~/checkpoints/${id}`;
    expect(actions.filter((action) => action.action.includes("langgraph"))).toEqual([
      { action: "remove-langgraph-step", target: index("solo", soloConfig.configurable!.checkpoint_id), reason: `LangGraph checkpoint ${soloConfig.configurable!.checkpoint_id}: it names ${sessionId}/checkpoint-005, which this repair removes; its pending write goes with it` },
      { action: "remove-langgraph-step", target: index("t", ids[1]!), reason: `LangGraph checkpoint ${ids[1]}: it names ${sessionId}/checkpoint-002, which is no longer stored; its pending write goes with it` },
      { action: "remove-langgraph-step", target: index("t", ids[3]!), reason: `LangGraph checkpoint ${ids[3]}: it names ${sessionId}/checkpoint-004, which this repair removes; its pending write goes with it` },
      { action: "move-langgraph-head", target: `/sessions/${sessionId}/langgraph-heads/solo/~`, reason: `it named checkpoint ${soloConfig.configurable!.checkpoint_id} (${sessionId}/checkpoint-005), which this repair removes; no checkpoint of that thread namespace is left: it goes` },
      { action: "move-langgraph-head", target: `/sessions/${sessionId}/langgraph-heads/t/~`, reason: `it named checkpoint ${ids[3]} (${sessionId}/checkpoint-004), which this repair removes; it names checkpoint ${ids[2]} (${sessionId}/checkpoint-003) now, the newest still stored` },
    ]);
    // Nothing of the removed steps is left; the head names step 2, which retention keeps.
    expect((await lgKeys()).sort()).toEqual(
      ["langgraph-heads/t/~", ...[0, 2].flatMap((step) => [`langgraph/t/~/checkpoints/${ids[step]}`, `langgraph/t/~/writes/${ids[step]}/task-${step}/0`])].sort(),
    );
    const { valid, heads } = await readStore(dir, (store) => ({
      valid: validateStore(store),
      heads: [...langGraphHeads(store, sessionId).keys()].map((id) => listCheckpoints(store, sessionId).items.find((item) => item.id === id)?.description),
    }));
    expect(valid).toMatchObject({ ok: true, problems: [] });
    expect(heads).toEqual(["langgraph t step 2 (loop)"]);
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    const resumed = await reader.getTuple(thread);
    expect([resumed?.metadata?.step, resumed?.config.configurable?.checkpoint_id, resumed?.pendingWrites]).toEqual([2, ids[2], [["task-2", "n", 3]]]);
    expect(await reader.getTuple({ configurable: { ...thread.configurable, checkpoint_id: ids[3] } })).toBeUndefined();
    expect(await reader.getTuple(solo)).toBeUndefined();
    const listed = [];
    for await (const tuple of reader.list({ configurable: {} })) listed.push(tuple.config.configurable?.checkpoint_id);
    expect(listed).toEqual([ids[2], ids[0]]);
    // The thread goes on from there.
    const next = await reader.put(resumed!.config, checkpointOf({ n: 9 }, { n: 9 }), { source: "loop", step: 3, parents: {} }, { n: 9 });
    expect((await reader.getTuple(thread))?.config.configurable?.checkpoint_id).toBe(next.configurable?.checkpoint_id);
  });

  it("writes a task made after retention or a delete took its checkpoint are reported by validate and removed by repair; writes of a checkpoint still to come are not", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "t", checkpoint_ns: "" } } as Record<string, any>;
    const first = await saver.put(thread, checkpointOf({ n: 1 }, { n: 1 }), { source: "loop", step: 0, parents: {} }, { n: 1 });
    const second = await saver.put(first, checkpointOf({ n: 2 }, { n: 2 }), { source: "loop", step: 1, parents: {} }, { n: 2 });
    // The first step's checkpoint deleted (as retention does) while a task of it still ran; the task's writes come after.
    const deleted = runApex(["checkpoint", "delete", "checkpoint-001"], { cwd: dir });
    expect(deleted.status, deleted.stderr).toBe(0);
    await saver.putWrites(first, [["n", 5], ["m", 6]], "late-task");
    // Writes for a checkpoint not put yet (newer than every step stored) may still get it.
    const coming = { configurable: { ...thread.configurable, checkpoint_id: uuid6(1) } };
    await saver.putWrites(coming, [["n", 7]], "early-task");
    await saver.close();
    const late = `/sessions/${sessionId}/langgraph/t/~/writes/${first.configurable!.checkpoint_id}`;
    const warned = runApex(["session", "validate"], { cwd: dir });
    expect(warned.status, warned.stderr).toBe(0);
    expect(warned.stdout).toContain(`warning langgraph-writes-dangling Checkpoint ${first.configurable!.checkpoint_id} of LangGraph thread t of session ${sessionId}: 2 pending writes for it, which is not stored (removed while its tasks ran) and never will be; no read reaches them.`);
    expect(warned.stdout).not.toContain(coming.configurable.checkpoint_id);
    const repaired = runApex(["session", "repair", "--json"], { cwd: dir });
    expect(repaired.status, repaired.stderr).toBe(0);
    expect((JSON.parse(repaired.stdout) as { actions: Array<{ action: string }> }).actions.filter((action) => action.action.includes("langgraph"))).toEqual([
      { action: "remove-langgraph-writes", target: late, reason: `2 pending writes for LangGraph checkpoint ${first.configurable!.checkpoint_id}, which is not stored and never will be` },
    ]);
    const keys = await readStore(dir, (store) => [...store.keysBelow(`/sessions/${sessionId}/langgraph`)]);
    expect(keys.filter((key) => key.startsWith(late))).toEqual([]);
    expect(keys.filter((key) => key.includes(coming.configurable.checkpoint_id))).toHaveLength(1);
    expect(keys.filter((key) => key.includes(second.configurable!.checkpoint_id))).toHaveLength(1); // its index record
    expect(runApex(["session", "validate"], { cwd: dir }).stdout).not.toContain("warning");
  });

  it("refuses bad requests with a clear error and writes nothing", async () => {
    const { dir, sessionId, saver } = await setup();
    await expect(saver.put({ configurable: {} }, checkpointOf({}, {}), { source: "input", step: -1, parents: {} }, {})).rejects.toThrow(/thread_id/);
    await expect(saver.putWrites({ configurable: { thread_id: "t" } }, [["x", 1]], "task")).rejects.toThrow(/checkpoint_id/);
    // An empty thread id is no thread a put takes: its writes would be kept for a checkpoint that cannot come.
    await expect(saver.put({ configurable: { thread_id: "" } }, checkpointOf({}, {}), { source: "input", step: -1, parents: {} }, {})).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT" });
    await expect(saver.putWrites({ configurable: { thread_id: "", checkpoint_id: uuid6(1) } }, [["x", 1]], "task")).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT", message: "langgraph.putWrites: thread_id and checkpoint_id must not be empty." });
    // A name that is not valid Unicode (a lone surrogate) has no path segment: bad input, not an internal "URI malformed".
    await expect(saver.put({ configurable: { thread_id: "t\ud800" } }, checkpointOf({}, {}), { source: "input", step: -1, parents: {} }, {})).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT" });
    await expect(saver.put({ configurable: { thread_id: "t" } }, checkpointOf({ "c\udc00": 1 }, { "c\udc00": 1 }), { source: "input", step: -1, parents: {} }, { "c\udc00": 1 })).rejects.toMatchObject({
      code: "APEX_E_BAD_INPUT",
    });
    const client = await (saver as unknown as { connect(): Promise<{ call(m: string, p: unknown): Promise<unknown>; close(): Promise<void> }> }).connect();
    cleanups.push(() => client.close());
    await expect(client.call("langgraph.put", { thread_id: "t", checkpoint_ns: "", checkpoint_id: "c", parent_id: null, mode: "sideways" })).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT" });
    await client.close();
    await saver.close();
    expect(await readStore(dir, (store) => ({ total: listCheckpoints(store, sessionId).total, index: [...store.keysBelow(`/sessions/${sessionId}/langgraph`)] }))).toEqual({ total: 0, index: [] });
  });

  it("a channel value over 256 MiB reads back: stored compressed, every read refused it as damage", async () => {
    const { dir, saver } = await setup();
    const value = "apex ".repeat(Math.ceil((MAX_RAW_PACK_BYTES + 1024) / 5));
    const config = await saver.put({ configurable: { thread_id: "huge", checkpoint_ns: "" } }, checkpointOf({ value }, { value: 1 }), { source: "input", step: -1, parents: {} }, { value: 1 });
    await saver.close();
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    const tuple = await reader.getTuple(config);
    expect(tuple!.checkpoint.channel_values.value === value).toBe(true);
  });

  it("session compress leaves a cold value over 256 MiB as it is (compressed, it was damaged) and says so", async () => {
    const { dir, sessionId, saver } = await setup("plugins:\n  checkpoint: {}\n  compression: {}\n");
    const value = "apex ".repeat(Math.ceil((MAX_RAW_PACK_BYTES + 1024) / 5));
    const first = await saver.put({ configurable: { thread_id: "huge", checkpoint_ns: "" } }, checkpointOf({ value }, { value: 1 }), { source: "input", step: -1, parents: {} }, { value: 1 });
    await saver.put(first, checkpointOf({ value: "small" }, { value: 2 }), { source: "loop", step: 0, parents: {} }, { value: 2 });
    await saver.close();
    const compressed = runApex(["session", "compress", sessionId, "--algorithm", "gzip", "--level", "1", "--json"], { cwd: dir });
    expect(compressed.status, compressed.stderr).toBe(0);
    expect(JSON.parse(compressed.stdout).values).toMatchObject({ too_large: 1 });
    const text = runApex(["session", "compress", sessionId, "--algorithm", "gzip", "--level", "1", "--dry-run"], { cwd: dir });
    expect(text.stdout).toMatch(/^Left as they are: .*\b1 over 256 MiB, more than a read decompresses\.$/m);
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    expect((await reader.getTuple(first))!.checkpoint.channel_values.value === value).toBe(true);
  });

  it("a value LangGraph's serializer writes as nothing (a function, a symbol) is refused where it is written, named, and nothing of the step or the task is kept; such a value stored before reads as undefined", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "fn", checkpoint_ns: "" } };
    const first = await saver.put(thread, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    const step = checkpointOf({ a: 2, tool: () => "run" }, { a: 2, tool: 1 });
    await expect(saver.put(first, step, { source: "loop", step: 0, parents: {} }, { a: 2, tool: 1 })).rejects.toMatchObject({
      code: "APEX_E_BAD_INPUT",
      message: `The value of channel "tool" of the LangGraph checkpoint ${step.id} (thread "fn") cannot be stored: it is a function, which LangGraph's serializer writes as nothing, so no read could load it back.`,
      details: { channel: "tool", checkpoint_id: step.id, unstorable: "a function" },
    });
    // A key of a channel stored key by key is named with its channel.
    const state = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`k${i}`, i === 5 ? Symbol("handle") : i]));
    await expect(saver.put(first, checkpointOf({ a: 2, state }, { a: 2, state: 1 }), { source: "loop", step: 0, parents: {} }, { a: 2, state: 1 })).rejects.toThrow(/^The value of key "k5" of channel "state" of the LangGraph checkpoint \S+ \(thread "fn"\) cannot be stored: it is a symbol/);
    // A task's writes: none kept when one of them cannot be.
    await expect(saver.putWrites(first, [["a", 3], ["callback", () => undefined]], "task-1")).rejects.toMatchObject({
      code: "APEX_E_BAD_INPUT",
      message: expect.stringMatching(/^The value of the write to channel "callback" of task "task-1" \(thread "fn", checkpoint \S+\) cannot be stored: it is a function/),
    });
    // The thread reads and goes on as if the refused calls had not been made (the saver's cache too).
    expect(await saver.getTuple(thread)).toMatchObject({ checkpoint: { channel_values: { a: 1 } }, pendingWrites: [] });
    const second = await saver.put(first, checkpointOf({ a: 2 }, { a: 2 }), { source: "loop", step: 0, parents: {} }, { a: 2 });
    expect((await saver.getTuple(second))!.checkpoint.channel_values).toEqual({ a: 2 });
    // A store written before kept such a value as no text at all: it reads as undefined (JSON.stringify's), not as JSON.parse's "Unexpected end of JSON input" on every getTuple of its thread.
    const client = await (saver as unknown as { connected(): Promise<SessionClient> }).connected();
    const empty = { t: "json", d: "" };
    await client.call("langgraph.putWrites", { thread_id: "fn", checkpoint_ns: "", checkpoint_id: second.configurable!.checkpoint_id, task_id: "old", writes: [{ channel: "x", idx: 0, value: empty }] });
    const old = checkpointOf({}, {});
    await client.call("langgraph.put", { thread_id: "old", checkpoint_ns: "", checkpoint_id: old.id, parent_id: null, format: 4, mode: "full", rest: { t: "json", d: "{}" }, metadata: { t: "json", d: "{}" }, channels: { f: { v: 1, value: empty }, a: { v: 1, value: { t: "json", d: "1" } } } });
    const fresh = new ApexSaver({ project: dir });
    cleanups.push(() => fresh.close());
    expect((await fresh.getTuple(second))!.pendingWrites).toEqual([["old", "x", undefined]]);
    expect((await fresh.getTuple({ configurable: { thread_id: "old", checkpoint_ns: "" } }))!.checkpoint.channel_values).toEqual({ f: undefined, a: 1 });
    await saver.close();
    expect(await readStore(dir, (store) => listCheckpoints(store, sessionId).total)).toBe(3);
  });

  it("reads need neither the config nor the plugins (a new process's getTuple loads neither); the first write loads them, and writes nothing while one fails", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "t", checkpoint_ns: "" } };
    const first = await saver.put(thread, checkpointOf({ a: "A0" }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    await saver.close();
    // A plugin that throws as it is imported: the reads of a new saver go on, its put stops there.
    writeFileSync(join(dir, "broken.mjs"), 'throw new Error("broken plugin");\n');
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n  ./broken.mjs: {}\n");
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    expect((await reader.getTuple(thread))!.checkpoint.channel_values).toEqual({ a: "A0" });
    expect((await reader.getTuple(first))!.config.configurable?.checkpoint_id).toBe(first.configurable!.checkpoint_id);
    const listed = [];
    for await (const tuple of reader.list(thread)) listed.push(tuple.config.configurable?.checkpoint_id);
    expect(listed).toEqual([first.configurable!.checkpoint_id]);
    await expect(reader.put(first, checkpointOf({ a: "A1" }, { a: 2 }), { source: "loop", step: 0, parents: {} }, { a: 2 })).rejects.toThrow(/broken plugin/);
    await expect(reader.putWrites(first, [["a", "w"]], "task")).rejects.toThrow(/broken plugin/);
    // Tried again by the next write: once the config is fixed, the same saver writes (a delta from what it read).
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n");
    const second = await reader.put(first, checkpointOf({ a: "A1" }, { a: 2 }), { source: "loop", step: 0, parents: {} }, { a: 2 });
    expect((await reader.getTuple(second))!.checkpoint.channel_values).toEqual({ a: "A1" });
    await reader.close();
    const stored = await readStore(dir, (store) => ({ total: listCheckpoints(store, sessionId).total, writes: [...store.keysBelow(`/sessions/${sessionId}/langgraph/t/~/writes`)] }));
    expect(stored).toEqual({ total: 2, writes: [] });
  });

  it("an ended session's threads read when the saver names the session, and refuse writes; an unknown session is named, no session names the project, a project directory that is none is said so", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "t", checkpoint_ns: "" } };
    const first = await saver.put(thread, checkpointOf({ a: "A0" }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    await saver.close();
    // The session ends as `apex stop` leaves it: its record moves to the history, no session is current.
    const store = await openStore(join(dir, ".apex"));
    try {
      await store.batch((batch) => {
        batch.delete(`/sessions/${sessionId}`);
        batch.delete("/sessions/current");
        batch.set(`/sessions/history/${sessionId}`, { session_id: sessionId, status: "stopped", agents: [], supervisor: null, history: [], ended_at: new Date().toISOString() });
      });
    } finally {
      await store.close();
    }
    const ended = new ApexSaver({ project: dir, session: sessionId });
    cleanups.push(() => ended.close());
    expect((await ended.getTuple(thread))!.checkpoint.channel_values).toEqual({ a: "A0" });
    const listed = [];
    for await (const tuple of ended.list(thread)) listed.push(tuple.config.configurable?.checkpoint_id);
    expect(listed).toEqual([first.configurable!.checkpoint_id]);
    await expect(ended.put(first, checkpointOf({ a: "A1" }, { a: 2 }), { source: "loop", step: 0, parents: {} }, { a: 2 })).rejects.toMatchObject({ code: "APEX_E_SESSION_STATE" });
    await expect(ended.putWrites(first, [["a", "w"]], "task")).rejects.toMatchObject({ code: "APEX_E_SESSION_STATE" });
    await expect(ended.deleteThread("t")).rejects.toMatchObject({ code: "APEX_E_SESSION_STATE" });
    await ended.close();
    // Without a session named, there is none to use; a session that does not exist is named.
    const unnamed = new ApexSaver({ project: dir });
    cleanups.push(() => unnamed.close());
    // Named with the project's directory (a saver's project is not a directory the user sees), by reads and writes.
    const noSession = { code: "APEX_E_NO_SESSION", message: `No session is active in this project (the project at ${dir}).`, hint: expect.stringContaining("apex start --continue last"), details: { project_dir: dir } };
    await expect(unnamed.getTuple(thread)).rejects.toMatchObject(noSession);
    await expect(unnamed.put(first, checkpointOf({ a: "A1" }, { a: 2 }), { source: "loop", step: 0, parents: {} }, { a: 2 })).rejects.toMatchObject(noSession);
    // The hint also says how the ended session's threads are read (a graph run to its end leaves none active).
    await expect(unnamed.getTuple(thread)).rejects.toMatchObject({ hint: expect.stringContaining("new ApexSaver({ project, session: ID })") });
    // A project directory that does not exist (or is a file) is said to be so, and nothing is made there.
    for (const [project, what] of [[join(dir, "no-such-dir"), "does not exist"], [join(dir, "apex.config.yaml"), "is not a directory"]]) {
      const lost = new ApexSaver({ project });
      cleanups.push(() => lost.close());
      for (const call of [() => lost.getTuple(thread), () => lost.putWrites(first, [["a", 1]], "task"), () => lost.deleteThread("t")]) {
        await expect(call()).rejects.toMatchObject({ code: "APEX_E_CONFIG_NOT_FOUND", message: `ApexSaver's project directory ${project} ${what}.`, hint: expect.stringContaining("apex.config.yaml") });
      }
    }
    expect(existsSync(join(dir, "no-such-dir"))).toBe(false);
    const unknown = new ApexSaver({ project: dir, session: "no-such-session" });
    cleanups.push(() => unknown.close());
    await expect(unknown.getTuple(thread)).rejects.toThrow(/no-such-session/);
    expect(await readStore(dir, (store) => ({ total: listCheckpoints(store, sessionId).total, writes: [...store.keysBelow(`/sessions/${sessionId}/langgraph/t/~/writes`)] }))).toEqual({ total: 1, writes: [] });
  });

  it("`session: null` is no session given, as undefined is (it failed at the first call: \"Cannot read properties of null (reading 'trim')\"); a project or session that is no string is refused where the saver is made", async () => {
    const { dir, saver } = await setup();
    const config = await saver.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    const unset = new ApexSaver({ project: dir, session: null as unknown as string });
    cleanups.push(() => unset.close());
    expect((await unset.getTuple(config))?.checkpoint.channel_values).toEqual({ a: 1 });
    await unset.put(config, checkpointOf({ a: 2 }, { a: 2 }), { source: "loop", step: 0, parents: {} }, { a: 2 });
    expect((await saver.getTuple({ configurable: { thread_id: "t", checkpoint_ns: "" } }))?.checkpoint.channel_values).toEqual({ a: 2 });
    for (const options of [{ project: dir, session: 42 }, { project: 42 }, { project: [dir] }]) {
      let error: unknown;
      try {
        new ApexSaver(options as unknown as { project: string });
      } catch (caught) {
        error = caught;
      }
      expect(error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: expect.stringMatching(/^ApexSaver's `(project|session)` must be a string, not (number|an array)\.$/) });
    }
  });

  it("list takes an offset (the matching checkpoints passed over first), across threads and namespaces: how a list too large for one reply of a supervisor is read in parts", async () => {
    const { saver } = await setup();
    for (const [thread, ns] of [["a", ""], ["a", "sub"], ["b", ""]] as const) {
      let config: Record<string, any> = { configurable: { thread_id: thread, checkpoint_ns: ns } };
      for (let n = 0; n < 2; n++) config = await saver.put(config, checkpointOf({ n }, { n: n + 1 }), { source: "loop", step: n, parents: {} }, { n: n + 1 });
    }
    const client = await (saver as unknown as { connected(): Promise<SessionClient> }).connected();
    const names = async (params: Record<string, unknown>) => ((await client.call("langgraph.list", params)) as Array<{ thread_id: string; checkpoint_ns: string; checkpoint_id: string }>).map((r) => `${r.thread_id}/${r.checkpoint_ns}/${r.checkpoint_id}`);
    const all = await names({});
    expect(all).toHaveLength(6);
    const pages: string[] = [];
    for (let offset = 0; offset < 6; offset += 4) pages.push(...(await names({ offset, limit: 4 })));
    expect(pages).toEqual(all);
    expect(await names({ offset: 1, limit: 2, filter: { step: 1 } })).toEqual(all.filter((_, i) => i % 2 === 0).slice(1, 3));
  });

  it("list's filter is LangGraph's: a key given as undefined matches metadata without it (as MemorySaver and the conformance suite have it), not every checkpoint, and metadata that holds it as undefined", async () => {
    const { saver } = await setup();
    const memory: BaseCheckpointSaver = new MemorySaver();
    let apex = { configurable: { thread_id: "f", checkpoint_ns: "" } } as Record<string, any>;
    let mem = apex;
    // (step 2's metadata has the key `source`, undefined: the serializer keeps it as such)
    const metadatas = [{ source: "input", step: -1, parents: {} }, { step: 0, parents: {} }, { source: "loop", step: 1, parents: {} }, { source: undefined, step: 2, parents: {} }] as CheckpointMetadata[];
    for (const metadata of metadatas) {
      const checkpoint = checkpointOf({ a: metadata.step }, { a: metadata.step + 2 });
      apex = await saver.put(apex, checkpoint, metadata, { a: metadata.step + 2 });
      mem = await memory.put(mem, checkpoint, metadata, { a: metadata.step + 2 });
    }
    const steps = async (from: BaseCheckpointSaver, filter: Record<string, unknown> | undefined) => {
      const out = [];
      for await (const tuple of from.list({ configurable: { thread_id: "f" } }, { filter })) out.push(tuple.metadata?.step);
      return out;
    };
    const filters = [undefined, {}, { source: undefined }, { source: "loop" }, { source: "loop", step: undefined }, { source: undefined, step: 0 }, { parents: undefined }];
    for (const filter of filters) expect([filter, await steps(saver, filter)]).toEqual([filter, await steps(memory, filter)]);
    expect(await steps(saver, { source: undefined })).toEqual([2, 0]);
  });

  it("putWrites after deleteThread is refused and keeps nothing; writes sent before their checkpoint are kept, and a thread started again after the delete writes", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "gone", checkpoint_ns: "" } };
    const first = await saver.put(thread, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    await saver.putWrites(first, [["a", 2]], "task-1");
    await saver.deleteThread("gone");
    const late = await saver.putWrites(first, [["a", 3]], "task-2").catch((caught: unknown) => caught);
    expect(late).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND", details: { thread_id: "gone", checkpoint_id: first.configurable!.checkpoint_id } });
    expect((late as Error).message).toBe(`The LangGraph thread "gone" was deleted with its checkpoint ${first.configurable!.checkpoint_id}: the writes of task "task-2" were not kept.`);
    const index = `/sessions/${sessionId}/langgraph`;
    await saver.close();
    expect(await readStore(dir, (store) => ({ left: [...store.keysBelow(index)], valid: validateStore(store).ok }))).toEqual({ left: [], valid: true });
    // The thread again, under the same id: a checkpoint's writes may come before the checkpoint itself (LangGraph does not wait).
    const again = new ApexSaver({ project: dir });
    cleanups.push(() => again.close());
    const next = checkpointOf({ a: 5 }, { a: 5 });
    const nextConfig = { configurable: { thread_id: "gone", checkpoint_ns: "", checkpoint_id: next.id } };
    await again.putWrites(nextConfig, [["a", 6]], "task-3");
    await again.put(thread, next, { source: "input", step: -1, parents: {} }, { a: 5 });
    expect((await again.getTuple(thread))!.pendingWrites).toEqual([["task-3", "a", 6]]);
    expect(await again.getTuple(first)).toBeUndefined();
  });

  it("deleteThread of thread \"a\" keeps the retention head of thread \"a/b\" (an id that starts with \"a/\")", async () => {
    const { dir, sessionId, saver } = await setup();
    for (const [thread_id, checkpoint_ns] of [["a", ""], ["a", "sub"], ["a/b", ""], ["ab", ""]]) {
      await saver.put({ configurable: { thread_id, checkpoint_ns } }, checkpointOf({ x: thread_id }, { x: 1 }), { source: "input", step: -1, parents: {} }, { x: 1 });
    }
    const headsOf = () => readStore(dir, (store) => [...langGraphHeads(store, sessionId).values()].flat().sort());
    await saver.close();
    // Thread "a/b" quoted: unquoted, "a/b" is thread "a" namespace "b" (as "a/sub" is).
    expect(await headsOf()).toEqual(['langgraph thread "a/b"', "langgraph thread a", "langgraph thread a/sub", "langgraph thread ab"]);
    const again = new ApexSaver({ project: dir });
    cleanups.push(() => again.close());
    await again.deleteThread("a");
    await again.close();
    expect(await headsOf()).toEqual(['langgraph thread "a/b"', "langgraph thread ab"]);
  });

  it("a thread id over 512 bytes is refused as such, by every method, in a short message that gives the limit; one of 512 bytes is kept", async () => {
    const { dir, sessionId, saver } = await setup();
    const long = "x".repeat(2000);
    const config = { configurable: { thread_id: long, checkpoint_ns: "", checkpoint_id: uuid6(1) } };
    const message = `The LangGraph thread id "${"x".repeat(100)}"… (2000 characters) is too long: APEX keeps thread ids of up to 512 bytes, and this one takes 2000.`;
    const calls = [
      () => saver.put(config, checkpointOf({}, {}), { source: "input", step: -1, parents: {} }, {}),
      () => saver.putWrites(config, [["a", 1]], "task"),
      () => saver.getTuple(config),
      async () => {
        for await (const tuple of saver.list(config)) return tuple;
      },
      () => saver.deleteThread(long),
    ];
    for (const call of calls) await expect(call()).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT", message, details: { thread_id_bytes: 2000, limit: 512 } });
    // Bytes as the id is stored: a non-ASCII character takes 3 per byte of its UTF-8 form.
    await expect(saver.getTuple({ configurable: { thread_id: "é".repeat(100) } })).rejects.toThrow(`The LangGraph thread id "${"é".repeat(100)}" is too long: APEX keeps thread ids of up to 512 bytes, and this one takes 600.`);
    // Names too long together (a long namespace too) are named with their sizes.
    await expect(saver.getTuple({ configurable: { thread_id: "y".repeat(500), checkpoint_ns: "n".repeat(500) } })).rejects.toMatchObject({
      code: "APEX_E_BAD_INPUT",
      message: expect.stringMatching(/^The LangGraph thread id \(500 bytes\), namespace \(500 bytes\) are too long together: APEX's paths for them take \d+ bytes, over its limit of 1024\.$/),
    });
    const edge = await saver.put({ configurable: { thread_id: "z".repeat(512), checkpoint_ns: "" } }, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 });
    await saver.putWrites(edge, [["a", 2]], "00000000-0000-0000-0000-000000000000");
    expect((await saver.getTuple(edge))!.pendingWrites).toEqual([["00000000-0000-0000-0000-000000000000", "a", 2]]);
    await saver.close();
    expect(await readStore(dir, (store) => listCheckpoints(store, sessionId).total)).toBe(1);
  });

  it("refuses to write when the checkpoint plugin's paths leave out /langgraph", async () => {
    const { saver } = await setup("plugins:\n  checkpoint:\n    paths: ['/app/**']\n");
    await expect(saver.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, checkpointOf({}, {}), { source: "input", step: -1, parents: {} }, {})).rejects.toMatchObject({
      code: "APEX_E_CONFIG",
    });
  });

  it("refuses to write when the checkpoint plugin is not enabled, saying so (not that the supervisor is not running)", async () => {
    const { dir, saver } = await setup("plugins:\n  retention: {}\n");
    const error = await saver.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "APEX_E_CONFIG", message: `ApexSaver's langgraph.put needs APEX's checkpoint plugin, which the project at ${dir} does not enable.`, details: { method: "langgraph.put" } });
    expect((error as { hint: string }).hint).toMatch(/^Add `checkpoint: \{\}` under `plugins:` in apex.config.yaml .* Nothing was written\.$/);
    expect(await saver.getTuple({ configurable: { thread_id: "t" } })).toBeUndefined();
  });
});

describe("LangGraph reads as columns, and as a map for readers before them", () => {
  it("answers a read without `columns` with the channels as a map, the same channels as the columns; ApexSaver reads either", async () => {
    const { dir, sessionId, saver } = await setup();
    const big = Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`k${i}`, i % 2 ? `v${i}` : { n: i }]));
    const values = { a: "A", big, n: 3, none: undefined };
    const config = await saver.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, checkpointOf(values, { a: 1, big: 1, n: 1, none: 1 }), { source: "input", step: -1, parents: {} }, { a: 1, big: 1, n: 1, none: 1 });
    const { readLangGraph } = await import("../plugins/checkpoint/langgraph-reads.js");
    const params = { thread_id: "t", checkpoint_ns: "", checkpoint_id: config.configurable!.checkpoint_id, session: sessionId };
    const [asMap, asColumns] = await readStore(dir, (store) => [readLangGraph(store, "langgraph.getTuple", params), readLangGraph(store, "langgraph.getTuple", { ...params, columns: true })] as any[]);
    expect(asMap.columns).toBeUndefined();
    expect(asColumns.channels).toEqual({});
    const { names, versions, values: stored, splits } = asColumns.columns;
    const fromColumns = Object.fromEntries(
      names.map((name: string, i: number) => [name, splits[i] ? { v: versions[i], split: Object.fromEntries(splits[i].keys.map((key: string, k: number) => [key, splits[i].values[k]])) } : stored[i] ? { v: versions[i], value: stored[i] } : { v: versions[i] }]),
    );
    expect(asMap.channels).toEqual(fromColumns);
    expect(Object.keys(asMap.channels.big.split)).toHaveLength(80);
    // A supervisor before columns answers with the map: the saver reads the same tuple from it.
    const expected = await saver.getTuple(config);
    expect(expected!.checkpoint.channel_values).toEqual({ a: "A", big, n: 3, none: undefined });
    const fromMap = await (saver as unknown as { tupleOf(record: unknown, remember: boolean): Promise<unknown> }).tupleOf(asMap, false);
    expect(fromMap).toEqual(expected);
  });
});

describe("the keys of a large plain-object channel come back in the object's order", () => {
  /** `state` read by a saver that has never seen the thread, as JSON text (which lists keys in the object's order). */
  const readText = async (dir: string, config: Record<string, any>) => {
    const reader = new ApexSaver({ project: dir });
    try {
      return JSON.stringify((await reader.getTuple(config))!.checkpoint.channel_values.state);
    } finally {
      await reader.close();
    }
  };

  forEachBackend((backend) => {
    it("keys added, deleted, deleted and set again, changed, array indexes among them: each step reads back (a new saver, list, a new process, a reader before columns) with Object.keys as the object had them; a step writes the keys that changed or moved", async () => {
      const { dir, sessionId, saver } = await setup(undefined, backend);
      const thread = { configurable: { thread_id: "ordered", checkpoint_ns: "" } };
      // 80 string keys in neither name nor hash order, some values objects, and array-index keys
      // set among them (which every object lists first, in numeric order).
      const state: Record<string, unknown> = {};
      for (let i = 0; i < 80; i++) {
        state[`key-${(i * 37) % 80}`] = i % 9 === 0 ? { n: i, list: [i] } : `value ${i}`;
        if (i === 20) state["7"] = "seven";
        if (i === 40) state["3"] = { n: 3 };
      }
      state["12"] = "twelve";
      let config: Record<string, any> = thread;
      let version = 0;
      const steps: Array<{ id: string; text: string }> = [];
      const put = async (by: ApexSaver, values: Record<string, unknown>) => {
        version += 1;
        config = await by.put(config, checkpointOf({ state: values }, { state: version }), { source: "loop", step: version, parents: {} }, { state: version });
        steps.push({ id: config.configurable.checkpoint_id, text: JSON.stringify(values) });
      };
      await put(saver, { ...state });
      // Keys added (strings and an array index), one deleted, one changed.
      state["added-b"] = "b";
      state["added-a"] = { a: 1 };
      state["1"] = "one";
      delete state["key-5"];
      state["key-10"] = "changed";
      await put(saver, { ...state });
      // Deleted and set again: key-20 moves to the end with its value, key-30 with a new one;
      // "7", an array index, stays where it was listed.
      for (const [key, value] of [["key-20", state["key-20"]], ["key-30", "moved and changed"], ["7", "seven"]] as const) {
        delete state[key];
        state[key] = value;
      }
      await put(saver, { ...state });
      // An object changed in place, a key added: the state built from the previous one.
      (state["key-0"] as { n: number }).n = -1;
      state.zz = "last";
      await put(saver, { ...state });
      await saver.close();

      // Every step, read by a saver that has never seen the thread (by id, and the latest), and by list.
      for (const step of steps) expect(await readText(dir, { configurable: { ...thread.configurable, checkpoint_id: step.id } })).toBe(step.text);
      expect(await readText(dir, thread)).toBe(steps.at(-1)!.text);
      const lister = new ApexSaver({ project: dir });
      cleanups.push(() => lister.close());
      const listed = new Map<string, string>();
      for await (const tuple of lister.list(thread)) listed.set(tuple.config.configurable!.checkpoint_id, JSON.stringify(tuple.checkpoint.channel_values.state));
      expect(steps.map((step) => listed.get(step.id))).toEqual(steps.map((step) => step.text));

      // A graph resumed in a new process: its first call is a getTuple (the built module).
      const script = 'import { ApexSaver } from "apex-sessions/langgraph"; const saver = new ApexSaver({ project: process.argv[1] }); const tuple = await saver.getTuple({ configurable: { thread_id: "ordered", checkpoint_ns: "" } }); await saver.close(); process.stdout.write(JSON.stringify(tuple.checkpoint.channel_values.state));';
      const child = spawnSync(process.execPath, ["--input-type=module", "-e", script, dir], { cwd: REPO_ROOT, encoding: "utf8" });
      expect(child.stderr).toBe("");
      expect(child.stdout).toBe(steps.at(-1)!.text);

      // That state as read, resumed by the saver that read it: a key moved is the one written.
      const resumed = (await lister.getTuple(thread))!.checkpoint.channel_values.state as Record<string, unknown>;
      config = { configurable: { ...thread.configurable, checkpoint_id: steps.at(-1)!.id } };
      const moved = resumed["key-40"];
      delete resumed["key-40"];
      resumed["key-40"] = moved;
      await put(lister, { ...resumed });
      await lister.close();
      expect(await readText(dir, thread)).toBe(steps.at(-1)!.text);

      // A reader before columns gets the keys in the same order (an APEX adapter before it, through a newer supervisor).
      const { readLangGraph } = await import("../plugins/checkpoint/langgraph-reads.js");
      const asMap = (await readStore(dir, (store) => readLangGraph(store, "langgraph.getTuple", { thread_id: "ordered", checkpoint_ns: "", session: sessionId }))) as { channels: { state: { split: Record<string, unknown> } } };
      expect(Object.keys(asMap.channels.state.split)).toEqual(Object.keys(JSON.parse(steps.at(-1)!.text)));

      // Each step wrote the keys that changed, or moved: not the keys after a moved one.
      const diffs = await readStore(dir, (store) => {
        const stored = listCheckpoints(store, sessionId).items.reverse();
        const sorted = (diff: { added: string[]; removed: string[]; changed: string[] }) => ({ added: diff.added.sort(), removed: diff.removed.sort(), changed: diff.changed.sort() });
        return stored.slice(1).map((to, i) => sorted(diffCheckpoints(store, stored[i]!.id, to.id).memory));
      });
      const at = (...keys: string[]) => keys.map((key) => `/langgraph/ordered/~/state/${key}`);
      expect(diffs).toEqual([
        { added: at("1", "added-a", "added-b"), removed: at("key-5"), changed: ["/langgraph/ordered/~", "/langgraph/ordered/~/state", ...at("key-10")] },
        { added: [], removed: [], changed: ["/langgraph/ordered/~", "/langgraph/ordered/~/state", ...at("key-20", "key-30")] },
        { added: at("zz"), removed: [], changed: ["/langgraph/ordered/~", "/langgraph/ordered/~/state", ...at("key-0")] },
        { added: [], removed: [], changed: ["/langgraph/ordered/~", "/langgraph/ordered/~/state", ...at("key-40")] },
      ]);
    });
  });

  it("an object rebuilt in another order step after step (its numbers grow past a few times its keys), and numbers given twice (written otherwise), read back in order", async () => {
    const { dir, saver } = await setup();
    const thread = { configurable: { thread_id: "shuffled", checkpoint_ns: "" } };
    let state = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`key-${(i * 29) % 70}`, `value ${i}`]));
    let config: Record<string, any> = thread;
    for (let step = 1; step <= 6; step++) {
      // Backwards, then rotated: each step moves nearly every key.
      const keys = Object.keys(state).reverse();
      state = Object.fromEntries([...keys.slice(step), ...keys.slice(0, step)].map((key) => [key, state[key]]));
      config = await saver.put(config, checkpointOf({ state: { ...state } }, { state: step }), { source: "loop", step, parents: {} }, { state: step });
    }
    expect(await readText(dir, thread)).toBe(JSON.stringify(state));
    const { readLangGraph } = await import("../plugins/checkpoint/langgraph-reads.js");
    const read = (await readStore(dir, (store) => readLangGraph(store, "langgraph.getTuple", { thread_id: "shuffled", checkpoint_ns: "", columns: true }))) as { columns: { splits: Array<{ orders: number[] }> } };
    expect(Math.max(...read.columns.splits[0]!.orders)).toBeGreaterThan(4 * 70 + 64); // (sorted, not placed in slots)
    // Every key sent with the same number: read in some order, which the next put keeps from then on.
    const call = (saver as unknown as { call(method: string, params: Record<string, unknown>, onEnded?: unknown): Promise<unknown> }).call.bind(saver);
    (saver as unknown as { call: typeof call }).call = (method, params, onEnded) => {
      for (const write of Object.values((params as { channels?: Record<string, { split?: { set: Record<string, { o?: number }> } }> }).channels ?? {})) for (const value of Object.values(write.split?.set ?? {})) value.o = 5;
      return call(method, params, onEnded);
    };
    const twice = await saver.put(thread, checkpointOf({ state: { ...state } }, { state: 7 }), { source: "loop", step: 7, parents: {} }, { state: 7 });
    await saver.close();
    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    const resumed = (await reader.getTuple(twice))!.checkpoint.channel_values.state as Record<string, unknown>;
    expect(resumed).toEqual(state);
    resumed.added = "last";
    await reader.put(twice, checkpointOf({ state: { ...resumed } }, { state: 8 }), { source: "loop", step: 8, parents: {} }, { state: 8 });
    await reader.close();
    expect(await readText(dir, thread)).toBe(JSON.stringify(resumed));
  });

  it("keys stored without their place (by an APEX before it) read as they were; the next put writes them all numbered, and from then on they come back in the object's order", async () => {
    const { dir, sessionId, saver } = await setup();
    const thread = { configurable: { thread_id: "legacy", checkpoint_ns: "" } };
    // An adapter before `o`: what it sent (and an APEX before it stored) is the same without the keys' places.
    const call = (saver as unknown as { call(method: string, params: Record<string, unknown>, onEnded?: unknown): Promise<unknown> }).call.bind(saver);
    (saver as unknown as { call: typeof call }).call = (method, params, onEnded) => {
      for (const write of Object.values((params as { channels?: Record<string, { split?: { set: Record<string, { o?: number }> } }> }).channels ?? {})) for (const value of Object.values(write.split?.set ?? {})) delete value.o;
      return call(method, params, onEnded);
    };
    const state = Object.fromEntries(Array.from({ length: 70 }, (_, i) => [`old-${(i * 13) % 70}`, `value ${i}`]));
    const legacy = await saver.put(thread, checkpointOf({ state }, { state: 1 }), { source: "loop", step: 1, parents: {} }, { state: 1 });
    await saver.close();

    const reader = new ApexSaver({ project: dir });
    cleanups.push(() => reader.close());
    const resumed = (await reader.getTuple(legacy))!.checkpoint.channel_values.state as Record<string, unknown>;
    expect(resumed).toEqual(state);
    for (let i = 0; i < 5; i++) resumed[`new-${4 - i}`] = `new ${i}`;
    resumed["old-3"] = "changed";
    let config = await reader.put(legacy, checkpointOf({ state: { ...resumed } }, { state: 2 }), { source: "loop", step: 2, parents: {} }, { state: 2 });
    const text = JSON.stringify(resumed);
    expect(await readText(dir, thread)).toBe(text);
    // Numbered now: the next step writes what changed.
    resumed["old-9"] = "changed too";
    config = await reader.put(config, checkpointOf({ state: { ...resumed } }, { state: 3 }), { source: "loop", step: 3, parents: {} }, { state: 3 });
    await reader.close();
    expect(await readText(dir, config)).toBe(JSON.stringify(resumed));
    const diffs = await readStore(dir, (store) => {
      const [newest, renumbered, old] = listCheckpoints(store, sessionId).items;
      return { renumbered: diffCheckpoints(store, old!.id, renumbered!.id).memory, next: diffCheckpoints(store, renumbered!.id, newest!.id).memory };
    });
    // (every key's record has its place now: all of them changed)
    expect(diffs.renumbered.changed).toHaveLength(2 + 70);
    expect(diffs.renumbered.added).toHaveLength(5);
    expect(diffs.next).toEqual({ added: [], removed: [], changed: ["/langgraph/legacy/~", "/langgraph/legacy/~/state", "/langgraph/legacy/~/state/old-9"] });
  });
});

describe("LangGraph thread heads (the checkpoint each thread namespace resumes from, which retention keeps)", () => {
  const input = { source: "input", step: -1, parents: {} } as CheckpointMetadata;
  const put = (saver: ApexSaver, thread_id: string, checkpoint_ns: string, x: unknown, id = uuid6(1)) =>
    saver.put({ configurable: { thread_id, checkpoint_ns } }, { ...checkpointOf({ x }, { x: 1 }), id }, input, { x: 1 });
  const heads = (store: Store, sessionId: string) => [...langGraphHeads(store, sessionId).entries()].flatMap(([id, reasons]) => reasons.map((reason) => `${reason} ${id}`)).sort();

  forEachBackend((backend) => {
    it("thread \"a/b\" and thread \"a\" namespace \"b\" keep a head each through retention, and a namespace's head is its greatest checkpoint id, the one getTuple resumes from", async () => {
      const { dir, sessionId, saver } = await setup("plugins:\n  checkpoint: {}\n  retention:\n    keep_last: 1\n    auto_cleanup: true\n", backend);
      await put(saver, "a/b", "", "thread a/b");
      await put(saver, "a", "b", "thread a, namespace b");
      // A put of an older checkpoint id after a newer one: getTuple resumes from the newer, and so retention keeps it.
      const [older, newer] = [uuid6(1), uuid6(1)].sort();
      await put(saver, "late", "", "newer", newer);
      await put(saver, "late", "", "older", older);
      let busy = { configurable: { thread_id: "busy", checkpoint_ns: "" } } as Record<string, any>;
      for (let step = 0; step < 3; step++) busy = await saver.put(busy, checkpointOf({ n: step }, { n: step + 1 }), { source: "loop", step, parents: {} }, { n: step + 1 });
      const valueOf = async (thread_id: string, checkpoint_ns: string) => (await saver.getTuple({ configurable: { thread_id, checkpoint_ns } }))?.checkpoint.channel_values;
      expect(await valueOf("a/b", "")).toEqual({ x: "thread a/b" });
      expect(await valueOf("a", "b")).toEqual({ x: "thread a, namespace b" });
      expect(await valueOf("late", "")).toEqual({ x: "newer" });
      await saver.close();
      const { reasons, total } = await readStore(dir, (store) => ({ reasons: heads(store, sessionId).map((line) => line.replace(/ \S+$/, "")), total: listCheckpoints(store, sessionId).total }));
      // Told apart: thread "a/b" is quoted, thread "a" namespace "b" is not.
      expect(reasons).toEqual(['langgraph thread "a/b"', "langgraph thread a/b", "langgraph thread busy", "langgraph thread late"]);
      expect(total).toBe(4); // the four heads; every other checkpoint went
    });

    it("a heads record of a store written before still protects its checkpoints; the session's first write replaces it by one record per thread namespace (a put, or a deleteThread, which removes only its thread's)", async () => {
      const { dir, sessionId, saver } = await setup(undefined, backend);
      for (const [thread, ns] of [["t1", ""], ["t1", "sub"], ["t2", ""], ["a/b", ""]] as const) await put(saver, thread, ns, `${thread} ${ns}`);
      await saver.close();
      const current = await readStore(dir, (store) => heads(store, sessionId));
      expect(current).toHaveLength(4);
      // The record as stores written before kept it: `<thread>[/<ns>]` -> APEX checkpoint id, one record.
      const legacy = async () => {
        const store = await openProjectStore(dir);
        try {
          await store.batch((batch) => {
            batch.deleteTree(headsPath(sessionId));
            // (its keys unquoted: thread "a/b" was `a/b`)
            batch.set(headsPath(sessionId), Object.fromEntries(current.map((line) => line.replace(/^langgraph thread /, "").replace(/"/g, "").split(" ") as [string, string])));
          });
        } finally {
          await store.close();
        }
      };
      await legacy();
      expect(await readStore(dir, (store) => heads(store, sessionId))).toEqual(current.map((line) => line.replace(/"/g, "")));

      const again = new ApexSaver({ project: dir });
      cleanups.push(() => again.close());
      await put(again, "t2", "", "t2 later");
      const t2 = (await again.getTuple({ configurable: { thread_id: "t2", checkpoint_ns: "" } }))!.config.configurable!.checkpoint_id as string;
      await again.close();
      const migrated = await readStore(dir, (store) => ({ legacy: store.get(headsPath(sessionId)), records: [...store.keysBelow(headsPath(sessionId))], heads: heads(store, sessionId), t2: store.get(`${headsPath(sessionId)}/t2/~`) }));
      expect(migrated.legacy).toBeUndefined();
      expect(migrated.records.sort()).toEqual(["a%2Fb/~", "t1/sub", "t1/~", "t2/~"].map((rest) => `${headsPath(sessionId)}/${rest}`));
      expect(migrated.heads.filter((line) => !line.startsWith("langgraph thread t2 "))).toEqual(current.filter((line) => !line.startsWith("langgraph thread t2 ")));
      expect(migrated.t2).toMatchObject({ checkpoint_id: t2 });

      await legacy();
      const third = new ApexSaver({ project: dir });
      cleanups.push(() => third.close());
      await third.deleteThread("t1");
      await third.close();
      expect(await readStore(dir, (store) => ({ legacy: store.get(headsPath(sessionId)), heads: heads(store, sessionId).map((line) => line.replace(/ \S+$/, "")) }))).toEqual({
        legacy: undefined,
        heads: ['langgraph thread "a/b"', "langgraph thread t2"],
      });
    });
  });

  it("a put writes the same whatever the number of threads: with 1,000 threads present as with one (no record of every thread rewritten)", async () => {
    const { dir, saver } = await setup();
    let hot = { configurable: { thread_id: "hot", checkpoint_ns: "" } } as Record<string, any>;
    let step = 0;
    const hotPut = (on: ApexSaver) => on.put(hot, checkpointOf({ n: step }, { n: step + 1 }), { source: "loop", step: step++, parents: {} }, { n: step }).then((config) => (hot = config));
    await hotPut(saver);
    await saver.close();
    // The bytes of the keyspace records one put of thread "hot" wrote (index, head, manifest, …).
    const written = async () => {
      const before = await readStore(dir, (store) => store.revision());
      const one = new ApexSaver({ project: dir });
      cleanups.push(() => one.close());
      await hotPut(one);
      await one.close();
      return readStore(dir, (store) => [...new Set([...store.changesSince(before)].map((change) => change.path))].reduce((sum, path) => sum + (store.getEncoded(path)?.length ?? 0), 0));
    };
    const alone = await written();
    const filler = new ApexSaver({ project: dir });
    cleanups.push(() => filler.close());
    for (let thread = 0; thread < 1000; thread++) await put(filler, `thread-${thread}`, "", thread);
    await filler.close();
    const among = await written();
    expect(alone).toBeGreaterThan(0);
    expect(among).toBeLessThan(alone + 64); // (a sequence number a digit longer, say); the record of every thread was ~60 KB
  });
});

describe("ApexSaver through a supervisor's socket", () => {
  it("a call to a stopped supervisor (SIGSTOP) fails within seconds naming its pid; a live one that is slow to answer is waited for", async () => {
    const { dir, sessionId, saver } = await setup();
    // A process that takes connections on the project's socket and answers none, recorded as its supervisor.
    const socket = join(dir, ".apex", "supervisor.sock");
    const child = spawn(process.execPath, ["-e", `require("node:net").createServer(() => {}).listen(${JSON.stringify(socket)}, () => console.log("listening"))`], { stdio: ["ignore", "pipe", "inherit"] });
    cleanups.push(() => {
      process.kill(child.pid!, "SIGKILL");
    });
    await once(child.stdout!, "data");
    const runtime = { pid: child.pid!, start_time: readProcStat(child.pid!)!.startTime, socket, session_id: sessionId, started_at: new Date().toISOString(), log: join(dir, "log") };
    writeFileSync(join(dir, ".apex", "supervisor.json"), JSON.stringify(runtime));
    process.kill(child.pid!, "SIGSTOP");
    const started = Date.now();
    const error = await saver.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} }, { a: 1 }).catch((caught: unknown) => caught);
    expect(Date.now() - started).toBeLessThan(10_000); // not the 120 s of a call's timeout
    expect(error).toMatchObject({ code: "APEX_E_TIMEOUT", details: { stopped: true, pid: child.pid } });
    expect((error as Error).message).toBe(`Session ${sessionId}'s supervisor (pid ${child.pid}) is stopped (SIGSTOP): it cannot answer langgraph.put.`);
    // Continued, it runs but answers nothing: a call waits for it until its own timeout.
    process.kill(child.pid!, "SIGCONT");
    const client = await (saver as unknown as { connected(): Promise<SessionClient> }).connected();
    const slow = await client.call("langgraph.list", { session: sessionId }, 2200).catch((caught: unknown) => caught);
    expect(slow).toMatchObject({ code: "APEX_E_TIMEOUT", message: "The supervisor did not answer langgraph.list within 2 s." });
    expect((slow as { details?: unknown }).details).toBeUndefined();
  });

  it("a call whose supervisor ends before it answers (apex stop, a crash) is done once: a put it committed is not written again, one it did not is written the way a new call goes, writes and reads are sent again", async () => {
    const { dir, sessionId, saver } = await setup();
    const socket = join(dir, ".apex", "supervisor.sock");
    // A supervisor that exits on the first request it reads, without answering (as one stopping closes its connections).
    const exitingSupervisor = async () => {
      rmSync(socket, { force: true }); // (the last one's)
      const child = spawn(process.execPath, ["-e", `require("node:net").createServer((s) => s.on("data", () => process.exit(0))).listen(${JSON.stringify(socket)}, () => console.log("listening"))`], { stdio: ["ignore", "pipe", "inherit"] });
      cleanups.push(() => {
        if (child.exitCode === null) process.kill(child.pid!, "SIGKILL");
      });
      await once(child.stdout!, "data");
      writeFileSync(join(dir, ".apex", "supervisor.json"), JSON.stringify({ pid: child.pid!, start_time: readProcStat(child.pid!)!.startTime, socket, session_id: sessionId, started_at: new Date().toISOString(), log: join(dir, "log") }));
      return child;
    };
    const thread = { configurable: { thread_id: "t", checkpoint_ns: "" } };
    const meta = (step: number) => ({ source: "loop", step, parents: {} }) as CheckpointMetadata;
    // Committed before its supervisor went (written here by another saver, on the store).
    const committed = checkpointOf({ a: 1 }, { a: 1 });
    const other = new ApexSaver({ project: dir });
    const first = await other.put(thread, committed, meta(0), { a: 1 });
    await other.close();
    await exitingSupervisor();
    // It failed with `APEX_E_RPC: The supervisor closed the connection before answering langgraph.put`, saved or not.
    expect(await saver.put(thread, committed, meta(0), { a: 1 })).toEqual(first);
    await exitingSupervisor();
    const second = await saver.put(first, checkpointOf({ a: 2 }, { a: 2 }), meta(1), { a: 2 });
    await exitingSupervisor();
    await saver.putWrites(second, [["a", 3]], "task-1");
    await exitingSupervisor();
    const tuple = await saver.getTuple(thread); // a read, read again
    expect(tuple).toMatchObject({ config: second, checkpoint: { channel_values: { a: 2 } }, pendingWrites: [["task-1", "a", 3]] });
    await saver.close();
    // One APEX checkpoint per LangGraph checkpoint.
    expect(await readStore(dir, (store) => listCheckpoints(store, sessionId).items.map((item) => item.description))).toEqual(["langgraph t step 1 (loop)", "langgraph t step 0 (loop)"]);
  });
});

describe("ApexSaver inside an agent (APEX_SOCKET)", () => {
  it("a call whose supervisor closes the connection before it answers says what became of the write, as LangGraph sees it (told by details.connection, not the message)", async () => {
    const { dir, sessionId } = await setup();
    const socket = join(dir, ".apex", "supervisor.sock");
    // A supervisor that exits on the first request it reads, without answering (as one stopping closes its connections).
    const child = spawn(process.execPath, ["-e", `require("node:net").createServer((s) => s.on("data", () => process.exit(0))).listen(${JSON.stringify(socket)}, () => console.log("listening"))`], { stdio: ["ignore", "pipe", "inherit"] });
    cleanups.push(() => {
      if (child.exitCode === null) process.kill(child.pid!, "SIGKILL");
    });
    await once(child.stdout!, "data");
    writeFileSync(join(dir, ".apex", "supervisor.json"), JSON.stringify({ pid: child.pid!, start_time: readProcStat(child.pid!)!.startTime, socket, session_id: sessionId, started_at: new Date().toISOString(), log: join(dir, "log") }));
    // What an agent's process is given by its supervisor.
    const agentEnv = { APEX_SOCKET: socket, APEX_CONFIG: join(dir, "apex.config.yaml"), APEX_HOME: join(dir, ".apex"), APEX_SESSION_ID: sessionId };
    const before = Object.fromEntries(Object.keys(agentEnv).map((key) => [key, process.env[key]]));
    Object.assign(process.env, agentEnv);
    cleanups.push(() => {
      for (const [key, value] of Object.entries(before)) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    });
    const saver = new ApexSaver();
    cleanups.push(() => saver.close());
    const error = await saver.put({ configurable: { thread_id: "t", checkpoint_ns: "" } }, checkpointOf({ a: 1 }, { a: 1 }), { source: "input", step: -1, parents: {} } as CheckpointMetadata, { a: 1 }).catch((caught: unknown) => caught);
    // It got the socket's generic hint (`apex start --continue last`…): LangGraph's was matched on a message without a hint, which the socket's error has had since.
    expect(error).toMatchObject({
      code: "APEX_E_RPC",
      message: "The supervisor closed the connection before answering langgraph.put; whether it was done is not known.",
      details: { connection: "closed" },
      hint: expect.stringContaining("a write may or may not have been stored. `apex status` shows the session; a graph run again on the thread resumes from its latest step stored."),
    });
  });
});

describe("LangGraph stays optional", () => {
  it("is an optional peer dependency, and only the adapter imports it", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8"));
    expect(pkg.dependencies["@langchain/langgraph-checkpoint"]).toBeUndefined();
    expect(pkg.peerDependenciesMeta["@langchain/langgraph-checkpoint"]).toEqual({ optional: true });
    expect(pkg.exports["./langgraph"]).toMatchObject({ default: "./dist/integrations/langgraph/index.js" });
    const importers: string[] = [];
    const scan = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) scan(path);
        else if (path.endsWith(".ts") && /from "@langchain\//.test(readFileSync(path, "utf8"))) importers.push(relative(REPO_ROOT, path));
      }
    };
    for (const dir of ["core", "plugins", "agents", "integrations"]) scan(join(REPO_ROOT, dir));
    expect(importers).toEqual(["integrations/langgraph/index.ts"]);
  });
});

describe("LangGraph methods of a session's checkpoint service", () => {
  it("lists every method LangGraphStore serves, whose code loads at the first call", async () => {
    const { LangGraphStore } = await import("../plugins/checkpoint/langgraph.js");
    const { LANGGRAPH_METHODS, SessionCheckpoints } = await import("../plugins/checkpoint/plugin-service.js");
    // Closures over the store, never called here.
    const store = {} as Store;
    const served = Object.keys(new LangGraphStore(store, { scope: { include: ["/"], exclude: [] }, serialize: (fn) => fn() }).methods(() => "s"));
    expect([...LANGGRAPH_METHODS].sort()).toEqual(served.sort());
    expect(Object.keys(new SessionCheckpoints(store).methods())).toEqual(expect.arrayContaining(served));
  });
});
