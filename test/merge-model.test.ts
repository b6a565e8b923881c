/**
 * The three-way merge against a reference model, on random memories and edits (seeded: a failing
 * seed reproduces). The model: memory is a map path -> JSON value, each path on its own (a path may
 * hold a value and have entries below it: README, `memory show`); per path, unchanged on both
 * sides -> base, changed on one side (set, deletion, creation) -> that side, changed the same on both
 * -> that value, changed differently -> a conflict the strategy settles (fail: refused, nothing
 * written). Tasks are a union by id (README "Merge rules"). The engine (planMerge, applyToTree on
 * a real LMDB store) must give the model's result, changes and conflicts.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JsonValue, Store } from "../core/store/store.js";
import { applyToTree, planMerge, objectView, refusedBy, virtualAncestor, type MergeChange, type MergeSide, type MergeStrategy } from "../plugins/checkpoint/merge.js";
import { canonicalJson, walkTree, type Hash } from "../plugins/checkpoint/engine/objects.js";
import { random, tempDir } from "./helpers/cli.js";
import { langGraphUnitOf, modelMerge, modelTasks, same } from "./support/merge-model.js";
import { createBranch, writeDerivedCheckpoint } from "../plugins/checkpoint/branch.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { createCheckpoint, loadManifest } from "../plugins/checkpoint/checkpoints.js";
import { mergeSessions } from "../plugins/checkpoint/session-merge.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { isApexError } from "../core/errors.js";
import { LmdbStore, transactionSync } from "./helpers/store.js";

type Memory = Map<string, JsonValue>;

// ---- random memories and edits ----

const NAMES = ["a", "b", "c", "ü", "k-1"];
const WIDE = Array.from({ length: 14 }, (_, i) => `w${i}`);
const BIG = "x".repeat(3000);
const VALUES: JsonValue[] = [0, 1, 2, -3.5, "", "x", "y", "ünï", null, true, false, [], [1, "a"], {}, { k: 1 }, { a: 1, b: [2, { c: null }] }, { b: [2, { c: null }], a: 1 }, BIG, `${BIG}!`];

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)]!;
}

function randomPath(rnd: () => number): string {
  // LangGraph thread namespaces, merged as units: the namespace's record and its channels below.
  if (rnd() < 0.15) return `/langgraph/${pick(rnd, ["t1", "t2"])}${rnd() < 0.2 ? "" : `/${pick(rnd, ["n", "m"])}${rnd() < 0.3 ? "" : `/${pick(rnd, ["c1", "c2", "c3"])}`}`}`;
  if (rnd() < 0.25) return `/w/${pick(rnd, WIDE)}${rnd() < 0.3 ? `/${pick(rnd, NAMES)}` : ""}`;
  const depth = 1 + Math.floor(rnd() * 3);
  return `/${Array.from({ length: depth }, () => pick(rnd, NAMES)).join("/")}`;
}

function randomValue(rnd: () => number): JsonValue {
  return rnd() < 0.8 ? pick(rnd, VALUES) : { n: Math.floor(rnd() * 4), s: pick(rnd, NAMES) };
}

function randomMemory(rnd: () => number): Memory {
  const memory: Memory = new Map();
  const count = Math.floor(rnd() * 30);
  for (let i = 0; i < count; i++) memory.set(randomPath(rnd), randomValue(rnd));
  return memory;
}

type Edit = (memory: Memory) => void;

function randomEdit(rnd: () => number, memory: Memory): Edit {
  const existing = [...memory.keys()];
  const roll = rnd();
  if (existing.length === 0 || roll < 0.35) {
    const path = randomPath(rnd);
    const value = randomValue(rnd);
    return (m) => void m.set(path, value);
  }
  const path = pick(rnd, existing);
  if (roll < 0.5) return (m) => void m.delete(path);
  if (roll < 0.6) {
    // Delete a subtree: the path and everything below it (memory delete --recursive).
    const segments = path.split("/").slice(1);
    const prefix = `/${segments.slice(0, 1 + Math.floor(rnd() * segments.length)).join("/")}`;
    return (m) => {
      for (const key of [...m.keys()]) if (key === prefix || key.startsWith(`${prefix}/`)) m.delete(key);
    };
  }
  if (roll < 0.7) {
    // A value where a subtree is (its parent directory).
    const segments = path.split("/").slice(1);
    const value = randomValue(rnd);
    if (segments.length < 2) return (m) => void m.set(path, value);
    const parent = `/${segments.slice(0, -1).join("/")}`;
    return (m) => void m.set(parent, value);
  }
  if (roll < 0.8) {
    // A subtree where a value was.
    const child = `${path}/${pick(rnd, NAMES)}`;
    const value = randomValue(rnd);
    return (m) => {
      m.delete(path);
      m.set(child, value);
    };
  }
  const value = randomValue(rnd);
  return (m) => void m.set(path, value);
}

/** Ours and theirs from base: random edits each, some of them the same on both sides. */
function randomSides(rnd: () => number, base: Memory): { ours: Memory; theirs: Memory } {
  const ours = new Map(base);
  const theirs = new Map(base);
  const shared: Edit[] = [];
  for (let i = Math.floor(rnd() * 3); i > 0; i--) shared.push(randomEdit(rnd, base));
  for (const edit of shared) {
    edit(ours);
    edit(theirs);
  }
  for (let i = Math.floor(rnd() * 6); i > 0; i--) randomEdit(rnd, ours)(ours);
  for (let i = Math.floor(rnd() * 6); i > 0; i--) randomEdit(rnd, theirs)(theirs);
  return { ours, theirs };
}

const TASK_IDS = ["/t-0001", "/t-0002", "/t-0003", "/t-0004"];
function randomTask(rnd: () => number, id: string): JsonValue {
  const status = pick(rnd, ["pending", "running", "completed", "completed"]);
  return { id: id.slice(1), title: pick(rnd, ["x", "y"]), status, result: status === "completed" ? pick(rnd, ["ok", "other", null]) : null };
}
function randomTasks(rnd: () => number): Memory {
  const tasks: Memory = new Map();
  for (const id of TASK_IDS) if (rnd() < 0.5) tasks.set(id, randomTask(rnd, id));
  return tasks;
}
function editTasks(rnd: () => number, tasks: Memory): Memory {
  const out = new Map(tasks);
  for (const id of TASK_IDS) {
    const roll = rnd();
    if (roll < 0.2) out.delete(id);
    else if (roll < 0.5) out.set(id, randomTask(rnd, id));
  }
  return out;
}

// ---- the engine ----

let store: Store;
let cleanup: () => void;
beforeEach(() => {
  const temp = tempDir("apex-merge-model-");
  cleanup = temp.cleanup;
  store = LmdbStore.open(temp.dir, { actor: "user:test" });
});
afterEach(async () => {
  await store.close();
  cleanup();
});

/** `target`'s tree, written as the changes from `from` (whose tree is `root`): built as commits build it. */
function build(root: Hash | null, from: Memory, target: Memory): Hash | null {
  return transactionSync(store, () => {
    const view = objectView(store);
    const changes: MergeChange[] = [];
    for (const path of new Set([...from.keys(), ...target.keys()])) {
      const value = target.get(path);
      if (value === undefined) {
        if (from.has(path)) changes.push({ path, kind: "deleted" });
      } else if (!same(value, from.get(path))) changes.push({ path, kind: "modified", hash: view.writeValue(value) });
    }
    return applyToTree(view, root, changes).root;
  });
}

function read(root: Hash | null): Memory {
  const view = objectView(store);
  const out: Memory = new Map();
  for (const { segments, hash } of walkTree(view, root)) out.set(`/${segments.join("/")}`, view.readValue(hash));
  return out;
}

const sorted = (memory: Memory) => [...memory].map(([path, value]) => [path, canonicalJson(value)]).sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));

interface Sides {
  base: MergeSide;
  ours: MergeSide;
  theirs: MergeSide;
}

/** Merges in the engine (in a transaction, as the merge does) and returns the plan and the merged trees. */
function engineMerge(sides: Sides, strategy: MergeStrategy) {
  return transactionSync(store, () => {
    const view = objectView(store);
    const plan = planMerge(view, sides.base, sides.ours, sides.theirs, strategy);
    const memory = applyToTree(view, sides.ours.memory, plan.memory.changes).root;
    const tasks = applyToTree(view, sides.ours.tasks, plan.tasks.changes).root;
    return { plan, merged: { memory, tasks } };
  });
}

/** The changes a plan lists are exactly the paths where the result differs from ours, of the right kind. */
function expectChanges(changes: readonly MergeChange[], ours: Memory, result: Memory): void {
  const expected = [...new Set([...ours.keys(), ...result.keys()])]
    .filter((path) => !same(ours.get(path), result.get(path)))
    .map((path) => [path, !ours.has(path) ? "added" : !result.has(path) ? "deleted" : "modified"])
    .sort();
  expect(changes.map((change) => [change.path, change.kind]).sort()).toEqual(expected);
}

const STRATEGIES: MergeStrategy[] = ["fail", "ours", "theirs"];

describe("three-way merge against the model", () => {
  it("random memories and tasks, each strategy: result, changes and conflicts are the model's", () => {
    for (let seed = 1; seed <= Number(process.env.MM_N ?? 120); seed++) {
      const rnd = random(seed);
      const baseMemory = randomMemory(rnd);
      const { ours: oursMemory, theirs: theirsMemory } = randomSides(rnd, baseMemory);
      const baseTasks = randomTasks(rnd);
      const oursTasks = editTasks(rnd, baseTasks);
      const theirsTasks = rnd() < 0.3 ? new Map(oursTasks) : editTasks(rnd, baseTasks);
      const baseRoot = build(null, new Map(), baseMemory);
      const baseTaskRoot = build(null, new Map(), baseTasks);
      const sides: Sides = {
        base: { memory: baseRoot, tasks: baseTaskRoot },
        ours: { memory: build(baseRoot, baseMemory, oursMemory), tasks: build(baseTaskRoot, baseTasks, oursTasks) },
        theirs: { memory: build(baseRoot, baseMemory, theirsMemory), tasks: build(baseTaskRoot, baseTasks, theirsTasks) },
      };
      // Trees are content-addressed: built from the base or from nothing, the same tree.
      expect(sides.ours.memory, `seed ${seed}`).toBe(build(null, new Map(), oursMemory));
      expect(read(sides.theirs.memory), `seed ${seed}`).toEqual(theirsMemory);
      const strategy = STRATEGIES[seed % 3]!;
      const model = modelMerge(baseMemory, oursMemory, theirsMemory, strategy);
      const taskModel = modelTasks(baseTasks, oursTasks, theirsTasks, strategy);
      const revision = store.revision();
      const { plan, merged } = engineMerge(sides, strategy);
      const context = `seed ${seed} (${strategy})`;
      expect(plan.memory.conflicts.map((conflict) => conflict.path), context).toEqual(model.conflicts);
      expect(plan.tasks.conflicts.map((conflict) => conflict.path), context).toEqual(taskModel.conflicts);
      if (strategy === "fail") {
        expect(refusedBy(plan).length > 0, context).toBe(model.conflicts.length + taskModel.conflicts.length > 0);
        if (refusedBy(plan).length > 0) continue;
      }
      expect(sorted(read(merged.memory)), context).toEqual(sorted(model.result));
      expect(sorted(read(merged.tasks)), context).toEqual(sorted(taskModel.result));
      expectChanges(plan.memory.changes, oursMemory, model.result);
      // Counts: paths both changed the same way, and paths ours alone changed (kept).
      const all = [...new Set([...baseMemory.keys(), ...oursMemory.keys(), ...theirsMemory.keys()])];
      if (all.every((path) => langGraphUnitOf(path) === undefined)) {
        const changed = (memory: Memory) => all.filter((path) => !same(memory.get(path), baseMemory.get(path)));
        const [oursChanged, theirsChanged] = [changed(oursMemory), changed(theirsMemory)];
        expect(plan.memory.same, context).toBe(oursChanged.filter((path) => theirsChanged.includes(path) && same(oursMemory.get(path), theirsMemory.get(path))).length);
        expect(plan.memory.oursOnly, context).toBe(oursChanged.filter((path) => !theirsChanged.includes(path)).length);
      }
      expectChanges(plan.tasks.changes, oursTasks, taskModel.result);
      // Each conflict's sides are the model's (absent: no value there).
      for (const conflict of plan.memory.conflicts) {
        for (const [side, memory] of [["base", baseMemory], ["ours", oursMemory], ["theirs", theirsMemory]] as const) {
          expect(conflict.absent.includes(side), `${context} ${conflict.path} ${side}`).toBe(!memory.has(conflict.path));
          expect(canonicalJson(conflict[side]), `${context} ${conflict.path} ${side}`).toBe(canonicalJson(memory.get(conflict.path) ?? null));
        }
      }
      // Merged again (its base now theirs, which the merge descends from): nothing to take.
      const again = engineMerge({ base: sides.theirs, ours: merged, theirs: sides.theirs }, strategy);
      expect([again.plan.memory.changes, again.plan.tasks.changes, again.plan.memory.conflicts], context).toEqual([[], [], []]);
      // A source with no change since the base: nothing changes.
      const idle = engineMerge({ base: sides.base, ours: sides.ours, theirs: sides.base }, strategy);
      expect([idle.plan.memory.changes, idle.plan.tasks.changes, idle.plan.memory.conflicts, idle.merged], context).toEqual([[], [], [], sides.ours]);
      // A planned merge reads: applyToTree writes objects only (no keyspace record).
      expect([...store.changesSince(revision)].filter((change) => !change.path.startsWith("/")), context).toEqual([]);
    }
  });

  it("criss-cross: each side merged the other, then changed again; against the virtual ancestor nothing one side changed is lost", () => {
    for (let seed = 1000; seed < 1000 + Number(process.env.MM_C ?? 60); seed++) {
      const rnd = random(seed);
      const b = randomMemory(rnd);
      const { ours: a1, theirs: c1 } = randomSides(rnd, b);
      // Each settles the criss-cross merge its own way (ours keeps its own side: they may differ).
      const a2 = modelMerge(b, a1, c1, "ours").result;
      const c2 = modelMerge(b, c1, a1, pick(rnd, ["ours", "theirs"] as const)).result;
      const a3 = new Map(a2);
      const c3 = new Map(c2);
      for (let i = Math.floor(rnd() * 4); i > 0; i--) randomEdit(rnd, a3)(a3);
      for (let i = Math.floor(rnd() * 4); i > 0; i--) randomEdit(rnd, c3)(c3);
      const tb = randomTasks(rnd);
      const [ta1, tc1] = [editTasks(rnd, tb), editTasks(rnd, tb)];
      const ta2 = modelTasks(tb, ta1, tc1, "ours").result;
      const tc2 = modelTasks(tb, tc1, ta1, pick(rnd, ["ours", "theirs"] as const)).result;
      const [ta3, tc3] = [editTasks(rnd, ta2), editTasks(rnd, tc2)];
      const root = (memory: Memory) => build(null, new Map(), memory);
      const side = (memory: Memory, tasks: Memory): MergeSide => ({ memory: root(memory), tasks: root(tasks) });
      const strategy = STRATEGIES[seed % 3]!;
      const { plan, merged, virtual, mergedTasks } = transactionSync(store, () => {
        const view = objectView(store, { overlay: true });
        const virtual = virtualAncestor(view, side(b, tb), side(a1, ta1), side(c1, tc1));
        const plan = planMerge(view, virtual, side(a3, ta3), side(c3, tc3), strategy);
        return {
          plan,
          merged: read2(view, applyToTree(view, side(a3, ta3).memory, plan.memory.changes).root),
          mergedTasks: read2(view, applyToTree(view, side(a3, ta3).tasks, plan.tasks.changes).root),
          virtual: read2(view, virtual.memory),
        };
      });
      const taskModel = modelTasks(modelTasks(tb, ta1, tc1, "base").result, ta3, tc3, strategy, new Set(modelTasks(tb, ta1, tc1, "fail").conflicts));
      expect(plan.tasks.conflicts.map((conflict) => conflict.path), `seed ${seed} tasks`).toEqual(taskModel.conflicts);
      if (strategy !== "fail" || plan.memory.conflicts.length + taskModel.conflicts.length === 0) expect(sorted(mergedTasks), `seed ${seed} tasks`).toEqual(sorted(taskModel.result));
      const modelVirtual = modelMerge(b, a1, c1, "base").result;
      const context = `seed ${seed} (${strategy})`;
      expect(sorted(virtual), context).toEqual(sorted(modelVirtual));
      const settled = new Set(modelMerge(b, a1, c1, "fail").conflicts);
      const model = modelMerge(modelVirtual, a3, c3, strategy, settled);
      expect(plan.memory.conflicts.map((conflict) => conflict.path), context).toEqual(model.conflicts);
      if (strategy === "fail" && model.conflicts.length > 0) continue;
      expect(sorted(merged), context).toEqual(sorted(model.result));
      // One-sided changes after the criss-cross are kept: a path C changed again and A did not is C's,
      // unless A1 and C1 had changed it differently: then a conflict (as in git's recursive strategy),
      // also when C set the base's value again, which the virtual ancestor holds there.
      for (const path of new Set([...c2.keys(), ...c3.keys()])) {
        if (!same(c2.get(path), c3.get(path)) && same(a2.get(path), a3.get(path)) && same(a2.get(path), c2.get(path))) {
          // A LangGraph namespace is one unit: a conflict at it when A changed another channel of it.
          const unit = langGraphUnitOf(path);
          if (unit !== undefined && plan.memory.conflicts.some((conflict) => conflict.path === unit)) continue;
          if (settled.has(path) || (unit !== undefined && settled.has(unit))) expect(plan.memory.conflicts.map((conflict) => conflict.path), `${context} ${path}`).toContain(unit !== undefined && settled.has(unit) ? unit : path);
          else expect(model.result.get(path), `${context} ${path}`).toEqual(c3.get(path));
        }
      }
    }
  });
});

function read2(view: ReturnType<typeof objectView>, root: Hash | null): Memory {
  const out: Memory = new Map();
  for (const { segments, hash } of walkTree(view, root)) out.set(`/${segments.join("/")}`, view.readValue(hash));
  return out;
}

describe("criss-cross, a path the candidates changed differently", () => {
  // base /p = "b"; A1 sets "x", C1 sets "y"; both merges settle on "x"; C then sets /p back to "b"
  // (or, for a path the base did not have, deletes it). The virtual ancestor holds the base's
  // value there: C's change looked like no change and A's "x" was kept without a conflict.
  for (const [label, b, c3] of [
    ["set back to the base's value", "b", "b"],
    ["deleted where the base had none", undefined, undefined],
  ] as const) {
    it(`a side that ${label} after both merges is a conflict, not lost`, () => {
      const memory = (value: JsonValue | undefined): Memory => new Map([["/keep", 1], ...(value === undefined ? [] : [["/p", value] as [string, JsonValue]])]);
      const side = (value: JsonValue | undefined): MergeSide => ({ memory: build(null, new Map(), memory(value)), tasks: null });
      for (const strategy of STRATEGIES) {
        const { plan, merged } = transactionSync(store, () => {
          const view = objectView(store, { overlay: true });
          const virtual = virtualAncestor(view, side(b), side("x"), side("y"));
          const plan = planMerge(view, virtual, side("x"), side(c3), strategy);
          return { plan, merged: read2(view, applyToTree(view, side("x").memory, plan.memory.changes).root) };
        });
        expect(plan.memory.conflicts.map((conflict) => [conflict.path, conflict.ours, conflict.theirs, conflict.absent]), strategy).toEqual([["/p", "x", c3 ?? null, c3 === undefined ? ["base", "theirs"] : []]]);
        if (strategy !== "fail") expect(merged.get("/p"), strategy).toEqual(strategy === "ours" ? "x" : c3);
        // Merged the other way (A's "x" into C's later value): the same conflict.
        const back = transactionSync(store, () => {
          const view = objectView(store, { overlay: true });
          return planMerge(view, virtualAncestor(view, side(b), side("y"), side("x")), side(c3), side("x"), strategy);
        });
        expect(back.memory.conflicts.map((conflict) => conflict.path), strategy).toEqual(["/p"]);
      }
    });
  }
});

describe("session merges against the model", () => {
  let tick = 0;
  const now = () => new Date(Date.UTC(2026, 0, 1, 0, 0, tick++));
  const latest = (sessionId: string) => {
    const summary = Catalog.of(store).latest(sessionId)!;
    return loadManifest(store, { sessionId, sequence: summary.sequence, id: summary.id });
  };
  /** A checkpoint of a session that is not running, its memory `from` changed to `to`. */
  async function commit(sessionId: string, from: Memory, to: Memory, tasks?: { from: Memory; to: Memory }): Promise<void> {
    const parent = latest(sessionId);
    const root = build(parent.memory.root, from, to);
    const taskTree = tasks ? { root: build(parent.tasks.root, tasks.from, tasks.to), count: tasks.to.size } : parent.tasks;
    await store.transaction(() => {
      writeDerivedCheckpoint(store, {
        sessionId,
        trigger: "interval",
        description: "work",
        parent: parent.id,
        createdAt: now().toISOString(),
        roots: { memory: { ...parent.memory, root, keys: to.size }, tasks: taskTree, agents: parent.agents },
        gitState: null,
        data: {},
        actor: "user:test",
      });
    });
  }
  const memoryOf = (sessionId: string) => read(latest(sessionId).memory.root);

  it("criss-cross between sessions: a path the candidates changed differently, set back to the base's value on one side afterwards, is a conflict", async () => {
    const base: Memory = new Map<string, JsonValue>([["/p", "b"], ["/q", 1]]);
    await store.batch((batch) => batch.set("/sessions/main", { session_id: "main", status: "stopped", agents: [], created_at: now().toISOString() }));
    await createCheckpoint(store, { sessionId: "main", trigger: "interval", now });
    await commit("main", read(latest("main").memory.root), base);
    const dst = (await createBranch(store, latest("main").id, "dst", { now })).session_id;
    const src = (await createBranch(store, latest("main").id, "src", { now })).session_id;
    await commit(dst, base, new Map([...base, ["/p", "x"]]));
    await commit(src, base, new Map([...base, ["/p", "y"]]));
    // D1 kept as a branch, so that src can merge it after dst merged src: each merged the other.
    const frozen = (await createBranch(store, latest(dst).id, "d1", { now })).session_id;
    await mergeSessions(store, { source: src, destination: dst, strategy: "ours", actor: "user:test", now });
    await mergeSessions(store, { source: frozen, destination: src, strategy: "theirs", actor: "user:test", now });
    expect([memoryOf(dst).get("/p"), memoryOf(src).get("/p")]).toEqual(["x", "x"]);
    // Both settled on "x"; src then sets /p back to "b".
    await commit(src, memoryOf(src), new Map([...memoryOf(src), ["/p", "b"], ["/q", 2]]));
    const dry = await mergeSessions(store, { source: src, destination: dst, dryRun: true, actor: "user:test", now });
    expect(dry.other_bases.length).toBe(1);
    expect(dry.memory.conflicts.map((conflict) => [conflict.path, conflict.ours, conflict.theirs])).toEqual([["/p", "x", "b"]]);
    const merged = await mergeSessions(store, { source: src, destination: dst, strategy: "theirs", actor: "user:test", now });
    expect(merged.memory.changes.map((change) => change.path)).toEqual(["/p", "/q"]);
    expect([memoryOf(dst).get("/p"), memoryOf(dst).get("/q")]).toEqual(["b", 2]);
    expect(validateStore(store).problems).toEqual([]);
  });

  it("random criss-cross between sessions: the merge against the virtual ancestor is the model's", async () => {
    let crossed = 0;
    const seeds = Number(process.env.MM_X ?? 8);
    for (let seed = 7000; seed < 7000 + seeds; seed++) {
      const rnd = random(seed);
      const main = `main-${seed}`;
      const base = withoutLangGraph(randomMemory(rnd));
      await store.batch((batch) => batch.set(`/sessions/${main}`, { session_id: main, status: "stopped", agents: [], created_at: now().toISOString() }));
      await createCheckpoint(store, { sessionId: main, trigger: "interval", now });
      await commit(main, read(latest(main).memory.root), base);
      const dst = (await createBranch(store, latest(main).id, `dst-${seed}`, { now })).session_id;
      const src = (await createBranch(store, latest(main).id, `src-${seed}`, { now })).session_id;
      const { ours, theirs } = randomSides(rnd, base);
      const [d1, s1] = [withoutLangGraph(ours), withoutLangGraph(theirs)];
      await commit(dst, base, d1);
      await commit(src, base, s1);
      const frozen = (await createBranch(store, latest(dst).id, `d1-${seed}`, { now })).session_id;
      const [first, second] = [pick(rnd, ["ours", "theirs"] as const), pick(rnd, ["ours", "theirs"] as const)];
      await mergeSessions(store, { source: src, destination: dst, strategy: first, actor: "user:test", now });
      await mergeSessions(store, { source: frozen, destination: src, strategy: second, actor: "user:test", now });
      const [d2, s2] = [memoryOf(dst), memoryOf(src)];
      expect(sorted(d2)).toEqual(sorted(modelMerge(base, d1, s1, first).result));
      expect(sorted(s2)).toEqual(sorted(modelMerge(base, s1, d1, second).result));
      const [d3, s3] = [new Map(d2), new Map(s2)];
      for (let i = Math.floor(rnd() * 4); i > 0; i--) randomEdit(rnd, d3)(d3);
      for (let i = Math.floor(rnd() * 4); i > 0; i--) randomEdit(rnd, s3)(s3);
      const [d3m, s3m] = [withoutLangGraph(d3), withoutLangGraph(s3)];
      await commit(dst, d2, d3m);
      await commit(src, s2, s3m);
      const strategy = STRATEGIES[seed % 3]!;
      const settled = new Set(modelMerge(base, d1, s1, "fail").conflicts);
      const model = modelMerge(modelMerge(base, d1, s1, "base").result, d3m, s3m, strategy, settled);
      const context = `seed ${seed} (${strategy})`;
      const dry = await mergeSessions(store, { source: src, destination: dst, strategy, dryRun: true, actor: "user:test", now });
      // A merge with nothing to take and nothing to settle writes no checkpoint: then no criss-cross.
      if (dry.other_bases.length === 0) continue;
      crossed += 1;
      expect([dry.relation, dry.other_bases.length], context).toEqual(["diverged", 1]);
      expect(dry.memory.conflicts.map((conflict) => conflict.path), context).toEqual(model.conflicts);
      if (strategy === "fail" && model.conflicts.length > 0) continue;
      await mergeSessions(store, { source: src, destination: dst, strategy, actor: "user:test", now });
      expect(sorted(memoryOf(dst)), context).toEqual(sorted(model.result));
    }
    expect(crossed).toBeGreaterThanOrEqual(seeds / 2);
    expect(validateStore(store).problems).toEqual([]);
  });

  it("dry run writes nothing, the merge is the model's, validate finds nothing, merging again is a no-op", async () => {
    for (let seed = 5000; seed < 5000 + Number(process.env.MM_S ?? 12); seed++) {
      const rnd = random(seed);
      const main = `main-${seed}`;
      // LangGraph namespaces are taken by a session merge only as the LangGraph index records them (merge tested above).
      const base = withoutLangGraph(randomMemory(rnd));
      await store.batch((batch) => {
        batch.set(`/sessions/${main}`, { session_id: main, status: "stopped", agents: [], created_at: now().toISOString() });
        for (const [path, value] of base) batch.set(`/seeded/${seed}${path}`, value);
      });
      await createCheckpoint(store, { sessionId: main, trigger: "interval", now });
      const baseTasks = randomTasks(rnd);
      await commit(main, read(latest(main).memory.root), new Map(base), { from: read(latest(main).tasks.root), to: baseTasks });
      const point = latest(main).id;
      const dst = (await createBranch(store, point, `dst-${seed}`, { now })).session_id;
      const src = (await createBranch(store, point, `src-${seed}`, { now })).session_id;
      const { ours: oursAll, theirs: theirsAll } = randomSides(rnd, base);
      const [ours, theirs] = [withoutLangGraph(oursAll), withoutLangGraph(theirsAll)];
      const [oursTasks, theirsTasks] = [editTasks(rnd, baseTasks), editTasks(rnd, baseTasks)];
      await commit(dst, base, ours, { from: baseTasks, to: oursTasks });
      if (rnd() < 0.85) await commit(src, base, theirs, { from: baseTasks, to: theirsTasks });
      const theirsNow = memoryOf(src);
      const theirsTasksNow = read(latest(src).tasks.root);
      const strategy = STRATEGIES[seed % 3]!;
      const model = modelMerge(base, ours, theirsNow, strategy);
      const taskModel = modelTasks(baseTasks, oursTasks, theirsTasksNow, strategy);
      const context = `seed ${seed} (${strategy})`;
      const revision = store.revision();
      const dry = await mergeSessions(store, { source: src, destination: dst, strategy, dryRun: true, actor: "user:test" });
      expect(store.revision(), context).toBe(revision);
      expect(dry.memory.conflicts.map((conflict) => conflict.path), context).toEqual(model.conflicts);
      expect(dry.tasks.conflicts.map((conflict) => conflict.path), context).toEqual(taskModel.conflicts);
      const expectedChanges = [...new Set([...ours.keys(), ...model.result.keys()])].filter((path) => !same(ours.get(path), model.result.get(path))).sort();
      expect(dry.memory.changes.map((change) => change.path).sort(), context).toEqual(expectedChanges);
      const before = latest(dst).id;
      let refused = false;
      try {
        await mergeSessions(store, { source: src, destination: dst, strategy, actor: "user:test" });
      } catch (error) {
        if (!isApexError(error) || error.code !== "APEX_E_MERGE_CONFLICT") throw error;
        refused = true;
      }
      expect(refused, context).toBe(strategy === "fail" && model.conflicts.length + taskModel.conflicts.length > 0);
      const taskChanges = [...new Set([...oursTasks.keys(), ...taskModel.result.keys()])].filter((id) => !same(oursTasks.get(id), taskModel.result.get(id)));
      if (refused || (expectedChanges.length + taskChanges.length === 0 && model.conflicts.length + taskModel.conflicts.length === 0)) {
        // Refused, or nothing to take and nothing settled: nothing written (conflicts settled by ours
        // are recorded in a merge checkpoint, so that the next merge starts from it).
        expect([latest(dst).id, store.revision()], context).toEqual([before, revision]);
        if (refused) continue;
      }
      expect(sorted(memoryOf(dst)), context).toEqual(sorted(model.result));
      expect(sorted(read(latest(dst).tasks.root)), context).toEqual(sorted(taskModel.result));
      expect([latest(dst).memory.keys, latest(dst).tasks.count], context).toEqual([model.result.size, taskModel.result.size]);
      expect(validateStore(store).problems, context).toEqual([]);
      const afterMerge = store.revision();
      const again = await mergeSessions(store, { source: src, destination: dst, strategy, actor: "user:test" });
      expect([again.memory.changes, again.checkpoint, store.revision()], context).toEqual([[], null, afterMerge]);
    }
  });
});

function withoutLangGraph(memory: Memory): Memory {
  return new Map([...memory].filter(([path]) => langGraphUnitOf(path) === undefined && !path.startsWith("/langgraph")));
}

describe("a LangGraph namespace both sides stepped in, settled by --strategy theirs", () => {
  it("lists their changes from what ours holds (none where ours holds theirs already; added where ours deleted), and the record neither changed on each side", () => {
    const record = { checkpoint: "c-0", values: ["c1", "c2", "c3"] };
    const base: Memory = new Map<string, JsonValue>([["/langgraph/t/n", record], ["/langgraph/t/n/c1", 1], ["/langgraph/t/n/c2", 1], ["/langgraph/t/n/c3", 1]]);
    const ours = new Map([...base, ["/langgraph/t/n/c1", 2], ["/langgraph/t/n/c2", 5]]);
    ours.delete("/langgraph/t/n/c3");
    const theirs = new Map([...base, ["/langgraph/t/n/c1", 2], ["/langgraph/t/n/c2", 3], ["/langgraph/t/n/c3", 4]]);
    const baseRoot = build(null, new Map(), base);
    const sides: Sides = { base: { memory: baseRoot, tasks: null }, ours: { memory: build(baseRoot, base, ours), tasks: null }, theirs: { memory: build(baseRoot, base, theirs), tasks: null } };
    const { plan, merged } = engineMerge(sides, "theirs");
    // c1: ours holds 2 already (it was listed as modified); c3: ours deleted it (it was listed as modified).
    expect(plan.memory.changes.map((change) => [change.path, change.kind])).toEqual([["/langgraph/t/n/c2", "modified"], ["/langgraph/t/n/c3", "added"]]);
    expect(sorted(read(merged.memory))).toEqual(sorted(theirs));
    // The namespace's record is unchanged on both sides: shown as it is on each (it was "(none)", absent everywhere).
    expect(plan.memory.conflicts.map((conflict) => [conflict.path, conflict.base, conflict.ours, conflict.theirs, conflict.absent])).toEqual([["/langgraph/t/n", record, record, record, []]]);
  });
});

describe("both sides made the very same changes (one tree)", () => {
  it("counts each path they changed as changed the same way (it said none)", () => {
    const base: Memory = new Map<string, JsonValue>([["/a", 1], ["/b", 2]]);
    const both: Memory = new Map<string, JsonValue>([["/a", 3], ["/c", 4]]);
    const baseRoot = build(null, new Map(), base);
    const side = { memory: build(baseRoot, base, both), tasks: null };
    const { plan } = engineMerge({ base: { memory: baseRoot, tasks: null }, ours: side, theirs: side }, "fail");
    expect([plan.memory.changes, plan.memory.conflicts, plan.memory.same, plan.memory.oursOnly]).toEqual([[], [], 3, 0]);
  });
});

describe("criss-cross, a LangGraph namespace the candidates stepped in differently", () => {
  it("put back as the base had it on one side after both merges is a conflict, not lost", () => {
    const ns = (checkpoint: string, channel: number): Memory => new Map<string, JsonValue>([["/langgraph/t/n", { checkpoint, values: ["c1"] }], ["/langgraph/t/n/c1", channel], ["/keep", 1]]);
    const side = (memory: Memory): MergeSide => ({ memory: build(null, new Map(), memory), tasks: null });
    const [b, a, c] = [ns("k-0", 1), ns("k-a", 2), ns("k-c", 3)];
    for (const strategy of STRATEGIES) {
      // Both merges settled on A's steps; then one side holds the namespace as the base had it.
      const { forward, backward } = transactionSync(store, () => {
        const view = objectView(store, { overlay: true });
        const virtual = virtualAncestor(view, side(b), side(a), side(c));
        const forward = planMerge(view, virtual, side(a), side(b), strategy);
        const backward = planMerge(view, virtual, side(b), side(a), strategy);
        return {
          forward: { plan: forward, merged: read2(view, applyToTree(view, side(a).memory, forward.memory.changes).root) },
          backward: { plan: backward, merged: read2(view, applyToTree(view, side(b).memory, backward.memory.changes).root) },
        };
      });
      for (const [label, run, ours, theirs] of [["theirs reverted", forward, a, b], ["ours reverted", backward, b, a]] as const) {
        expect(run.plan.memory.conflicts.map((conflict) => [conflict.path, conflict.ours, conflict.theirs]), `${strategy} ${label}`).toEqual([["/langgraph/t/n", ours.get("/langgraph/t/n"), theirs.get("/langgraph/t/n")]]);
        if (strategy !== "fail") expect(sorted(run.merged), `${strategy} ${label}`).toEqual(sorted(strategy === "ours" ? ours : theirs));
      }
    }
  });
});
