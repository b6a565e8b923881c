import { randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ChangeSet,
  LEAF_MAX,
  ObjectDamageError,
  ObjectStore,
  canonicalJson,
  compareCodePoints,
  copyOf,
  decodeTreeNode,
  decodeValueObject,
  diffTrees,
  encodeTreeNode,
  listDirectory,
  patchNode,
  lookupEntry,
  sha256,
  updateTree,
  walkTree,
  type Hash,
  type LeafNode,
  type ObjectView,
  type SplitNode,
  type TreeChange,
} from "../plugins/checkpoint/engine/objects.js";
import { IndexJournal, JOURNAL_MERGE_ENTRIES, type JournalEntry, type JournalTable } from "../plugins/checkpoint/engine/index-journal.js";
import { FILTER_DB, HashFilter } from "../plugins/checkpoint/engine/hash-filter.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import { decodeValue, encodeValue } from "../plugins/value-codec.js";
import { random, tempDir } from "./helpers/cli.js";
import { LmdbStore, transactionSync } from "./helpers/store.js";
import { forEachBackend } from "./support/backends.js";


let store: Store;

const segmentsOf = (path: string) => path.slice(1).split("/");

/** Applies `changes` (path -> value, undefined = delete) to the tree `root`, persisting objects. */
function apply(root: Hash | null, state: Map<string, JsonValue>, changes: Map<string, JsonValue | undefined>, view?: ObjectView) {
  for (const [path, value] of changes) {
    if (value === undefined) state.delete(path);
    else state.set(path, value);
  }
  const set = new ChangeSet();
  for (const path of changes.keys()) set.add(segmentsOf(path));
  let result!: ReturnType<typeof updateTree>;
  let usedView!: ObjectView;
  transactionSync(store, () => {
    usedView = view ?? ObjectStore.of(store).view(); // as checkpoints do: a writing view starts inside its transaction
    result = updateTree(usedView, root, set, (segments) => state.get(`/${segments.join("/")}`));
  });
  return { ...result, stats: usedView.stats };
}

/** Builds a tree of `state` from scratch. */
function build(state: Map<string, JsonValue>) {
  return apply(null, new Map(), new Map(state));
}

function contents(root: Hash | null): Map<string, JsonValue> {
  const view = ObjectStore.of(store).view();
  const out = new Map<string, JsonValue>();
  for (const { segments, hash } of walkTree(view, root)) out.set(`/${segments.join("/")}`, view.readValue(hash));
  return out;
}

describe("canonical JSON", () => {
  it("sorts object keys by code point at every depth and drops whitespace", () => {
    expect(canonicalJson({ b: 1, a: [{ z: true, y: null }], "\u{1F600}": "x", "\uFFFD": 2 })).toBe(
      '{"a":[{"y":null,"z":true}],"b":1,"\uFFFD":2,"\u{1F600}":"x"}',
    );
  });

  it("gives equal values equal bytes whatever the key insertion order", () => {
    expect(canonicalJson({ x: 1, y: { a: 1, b: 2 } })).toBe(canonicalJson({ y: { b: 2, a: 1 }, x: 1 }));
  });

  it.each([
    [Number.NaN, "the number NaN"],
    [Number.POSITIVE_INFINITY, "the number Infinity"],
    [{ when: new Date(0) }, "an instance of Date"],
    [{ data: Buffer.from("x") }, "an instance of Buffer"],
    [() => 1, "a function"],
    [{ z: 1, a: [1, { c: "ok", b: Number.NaN }] }, "Not a JSON value at .a[1].b: the number NaN."],
  ])("rejects %s", (value, what) => {
    expect(() => canonicalJson(value)).toThrow(what);
  });

  it("orders strings like UTF-8 bytes (LMDB key order), unlike `<` on UTF-16", () => {
    const next = random(7);
    const alphabet = ["a", "Z", "/", "é", "\uFFFD", "\uE000", "\u{1F600}", "\u{10400}", "\u4E2D", "0"];
    for (let i = 0; i < 2000; i++) {
      const word = () => Array.from({ length: 1 + Math.floor(next() * 4) }, () => alphabet[Math.floor(next() * alphabet.length)]).join("");
      const a = word();
      const b = word();
      expect(Math.sign(compareCodePoints(a, b))).toBe(Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))));
    }
  });
});

describe("tree node encoding", () => {
  const hashA = sha256("a");
  const hashB = sha256("b");

  it("round-trips leaves and split nodes", () => {
    const leaf = { kind: "leaf" as const, entries: [{ name: "a", value: hashA }, { name: "ab", value: hashB }, { name: "b\u{1F600}", value: hashA, tree: hashB }, { name: "c", tree: hashB }, { name: "é", value: hashB }] };
    expect(decodeTreeNode(encodeTreeNode(leaf))).toEqual(leaf);
    const split = { kind: "split" as const, depth: 3, count: 40, buckets: [{ index: 0, hash: hashA, count: 20 }, { index: 7, hash: hashB, count: 20 }] };
    expect(decodeTreeNode(encodeTreeNode(split))).toEqual(split);
  });

  it.each([
    ["names out of order", () => encodeTreeNode({ kind: "leaf", entries: [{ name: "b", value: hashA }, { name: "a", value: hashA }] }), "names out of order"],
    ["the same name twice", () => encodeTreeNode({ kind: "leaf", entries: [{ name: "ab", value: hashA }, { name: "ab", value: hashB }] }), "names out of order"],
    ["a name before its own prefix", () => encodeTreeNode({ kind: "leaf", entries: [{ name: "ab", value: hashA }, { name: "a", value: hashA }] }), "names out of order"],
    ["a name with a slash", () => encodeTreeNode({ kind: "leaf", entries: [{ name: "a/b", value: hashA }] }), "invalid name"],
    ["a non-ASCII name with a slash", () => encodeTreeNode({ kind: "leaf", entries: [{ name: "é/b", value: hashA }] }), "invalid name"],
    ["a name that is not UTF-8", () => Buffer.concat([Buffer.from([0x4c, 1, 2, 0x7a, 0xff, 1]), Buffer.from(hashA, "hex")]), "invalid name"],
    ["an empty leaf", () => encodeTreeNode({ kind: "leaf", entries: [] }), "empty leaf"],
    ["trailing bytes", () => Buffer.concat([encodeTreeNode({ kind: "leaf", entries: [{ name: "a", value: hashA }] }), Buffer.from([0])]), "trailing bytes"],
    ["a truncated hash", () => encodeTreeNode({ kind: "leaf", entries: [{ name: "a", value: hashA }] }).subarray(0, 20), "truncated node"],
    ["bucket counts that do not add up", () => encodeTreeNode({ kind: "split", depth: 0, count: 50, buckets: [{ index: 1, hash: hashA, count: 40 }] }), "add up to 40, not 50"],
    ["a split node small enough to be a leaf", () => encodeTreeNode({ kind: "split", depth: 0, count: 3, buckets: [{ index: 1, hash: hashA, count: 3 }] }), "only 3 entries"],
    ["an unknown tag", () => Buffer.from([0x58]), "unknown node tag"],
  ])("rejects %s", (_label, bytes, message) => {
    expect(() => decodeTreeNode(bytes())).toThrow(message);
  });

  it("re-encodes a node whose child hashes changed by patching its old bytes, equal to a full encoding", () => {
    const next = random(11);
    const hash = () => sha256(String(next()));
    const pick = <T>(items: T[]) => items[Math.floor(next() * items.length)]!;
    for (let round = 0; round < 300; round++) {
      const names = [...new Set(Array.from({ length: 1 + Math.floor(next() * 8) }, () => pick(["a", "é", "note-1", "\u{1F600}x", "module-22", "zz", "b"])))].sort(compareCodePoints);
      const leaf: LeafNode = { kind: "leaf", entries: names.map((name) => ({ name, ...(next() < 0.7 ? { value: hash() } : {}), ...(next() < 0.5 ? { tree: hash() } : {}) })) };
      leaf.entries.forEach((entry) => (entry.value || entry.tree ? undefined : (entry.value = hash())));
      const changedLeaf: LeafNode = { kind: "leaf", entries: leaf.entries.map((entry) => ({ ...entry, ...(entry.value && next() < 0.4 ? { value: hash() } : {}), ...(entry.tree && next() < 0.4 ? { tree: hash() } : {}) })) };
      expect(patchNode(encodeTreeNode(leaf), leaf, changedLeaf)).toEqual(encodeTreeNode(changedLeaf));

      const indexes = [...new Set(Array.from({ length: 1 + Math.floor(next() * 8) }, () => Math.floor(next() * 8)))].sort((x, y) => x - y);
      const buckets = indexes.map((index) => ({ index, hash: hash(), count: 1 + Math.floor(next() * 300) }));
      const split: SplitNode = { kind: "split", depth: Math.floor(next() * 4), count: buckets.reduce((sum, bucket) => sum + bucket.count, 0) + 9, buckets };
      split.buckets[0]!.count += 9;
      const changedSplit: SplitNode = { ...split, buckets: split.buckets.map((bucket) => (next() < 0.4 ? { ...bucket, hash: hash() } : bucket)) };
      expect(patchNode(encodeTreeNode(split), split, changedSplit)).toEqual(encodeTreeNode(changedSplit));
    }
    // Another shape: left to a full encoding.
    const leaf: LeafNode = { kind: "leaf", entries: [{ name: "a", value: hashA }] };
    expect(patchNode(encodeTreeNode(leaf), leaf, { kind: "leaf", entries: [{ name: "b", value: hashA }] })).toBeUndefined();
    expect(patchNode(encodeTreeNode(leaf), leaf, { kind: "leaf", entries: [{ name: "a", value: hashA, tree: hashB }] })).toBeUndefined();
    const split: SplitNode = { kind: "split", depth: 0, count: 20, buckets: [{ index: 1, hash: hashA, count: 20 }] };
    expect(patchNode(encodeTreeNode(split), split, { ...split, count: 21, buckets: [{ index: 1, hash: hashB, count: 21 }] })).toBeUndefined();
    expect(patchNode(undefined, split, split)).toBeUndefined();
  });
});

// The tree's shape and what an update reads and writes are the engine's own, whatever holds the
// nodes (counted, not timed): on LMDB only. What depends on the store (damage, the journal and
// filter across transactions and processes, grouped reads) runs on each backend below.
describe("Merkle tree of the path hierarchy", () => {
  let cleanup: () => void;
  beforeEach(() => {
    const temp = tempDir("apex-objects-");
    cleanup = temp.cleanup;
    store = LmdbStore.open(temp.dir, { actor: "user:test" });
  });
  afterEach(async () => {
    await store.close();
    cleanup();
  });

  it("stores a value once however many paths hold it", () => {
    const state = new Map<string, JsonValue>();
    for (let i = 0; i < 50; i++) state.set(`/copies/c${i}`, { same: "value", n: [1, 2, 3] });
    state.set("/other", "different");
    const { stats } = build(state);
    expect(stats.valuesWritten).toBe(2);
    expect(ObjectStore.of(store).count("value")).toBe(2);
  });

  it("shares unchanged subtrees by hash: a rebuild of the same data writes nothing", () => {
    const state = new Map<string, JsonValue>();
    for (let i = 0; i < 300; i++) state.set(`/a/d${i % 7}/k${i}`, i);
    const first = build(state);
    const second = build(state);
    expect(second.root).toBe(first.root);
    expect(second.stats.treesWritten).toBe(0);
    expect(second.stats.valuesWritten).toBe(0);
  });

  it("rebuilds only the nodes on changed paths (counted, not timed)", () => {
    const state = new Map<string, JsonValue>();
    // 4 levels of directories, 10 x 10 x 10 x 5 = 5000 values.
    for (let a = 0; a < 10; a++)
      for (let b = 0; b < 10; b++)
        for (let c = 0; c < 10; c++) for (let d = 0; d < 5; d++) state.set(`/p${a}/q${b}/r${c}/s${d}`, { a, b, c, d });
    const base = build(state);
    expect(base.valueDelta).toBe(5000);
    const treesBefore = ObjectStore.of(store).count("tree");

    const { root, stats, valueDelta } = apply(base.root, state, new Map([["/p3/q4/r5/s1", { changed: true }]]));
    expect(valueDelta).toBe(0);
    expect(stats.valuesWritten).toBe(1);
    // The directories on the path: /, /p3 and /p3/q4 have 10 entries (> LEAF_MAX): a split
    // node and the bucket holding the name each; /p3/q4/r5 has 5: one leaf. 3 x 2 + 1 = 7.
    expect(LEAF_MAX).toBeLessThan(10);
    expect(stats.treesBuilt).toBe(7);
    expect(stats.treesWritten).toBe(7);
    expect(stats.packsWritten).toBe(2); // one pack of values, one of tree nodes
    expect(ObjectStore.of(store).count("tree")).toBe(treesBefore + 7);
    expect(contents(root)).toEqual(state);
  });

  it("splits large directories so one change rewrites a few small nodes, not the whole listing", () => {
    const state = new Map<string, JsonValue>();
    for (let i = 0; i < 5000; i++) state.set(`/flat/key-${i}`, i);
    const base = build(state);
    const { stats, root } = apply(base.root, state, new Map([["/flat/key-1234", "changed"]]));
    // root dir + log16(5000 / LEAF_MAX)-ish bucket levels + one leaf; far below a 5000-entry node.
    expect(stats.treesWritten).toBeLessThanOrEqual(6);
    expect(stats.treeBytesWritten).toBeLessThan(5000);
    expect(contents(root).get("/flat/key-1234")).toBe("changed");
    const view = ObjectStore.of(store).view();
    expect(listDirectory(view, lookupEntry(view, root, ["flat"])!.tree!)).toHaveLength(5000);
  });

  it("has one canonical shape: incremental updates in any order give the root of a fresh build", () => {
    const next = random(42);
    const names = ["a", "b", "c", "é", "日本", "\u{1F600}", "x y", "long-name-with-dashes"];
    const pick = () => names[Math.floor(next() * names.length)]!;
    const state = new Map<string, JsonValue>();
    let root: Hash | null = null;
    for (let round = 0; round < 40; round++) {
      const changes = new Map<string, JsonValue | undefined>();
      const count = 1 + Math.floor(next() * 60);
      for (let i = 0; i < count; i++) {
        const depth = 1 + Math.floor(next() * 3);
        const path = `/${Array.from({ length: depth }, (_, level) => (level === depth - 1 && next() < 0.7 ? `k${Math.floor(next() * 80)}` : pick())).join("/")}`;
        const deleting = next() < 0.35 && state.size > 0;
        if (deleting) {
          const existing = [...state.keys()][Math.floor(next() * state.size)]!;
          changes.set(existing, undefined);
        } else changes.set(path, { round, i, s: "\u{10400}".repeat(i % 3) });
      }
      root = apply(root, state, changes).root;
      expect(root).toBe(build(state).root);
      expect(contents(root)).toEqual(state);
    }
    // Shrinking below the split threshold collapses buckets back into one leaf.
    const shrink = new Map<string, JsonValue | undefined>([...state.keys()].slice(LEAF_MAX - 5).map((path) => [path, undefined]));
    root = apply(root, state, shrink).root;
    expect(root).toBe(build(state).root);
    root = apply(root, state, new Map([...state.keys()].map((path) => [path, undefined]))).root;
    expect(root).toBeNull();
  });

  it("looks up one path in O(depth) and walks in tree order", () => {
    const state = new Map<string, JsonValue>([
      ["/a", 1],
      ["/a/b", 2],
      ["/a-c", 3],
      ["/a/b/c", 4],
      ["/\u{1F600}", 5],
      ["/\uFFFD", 6],
    ]);
    const { root } = build(state);
    const view = ObjectStore.of(store).view();
    expect(view.readValue(lookupEntry(view, root, ["a", "b"])!.value!)).toBe(2);
    expect(lookupEntry(view, root, ["a", "x"])).toBeUndefined();
    expect([...walkTree(view, root)].map(({ segments }) => `/${segments.join("/")}`)).toEqual(["/a", "/a/b", "/a/b/c", "/a-c", "/\uFFFD", "/\u{1F600}"]);
  });

  it("diffs two trees, reading only the parts that differ", () => {
    const next = random(3);
    const before = new Map<string, JsonValue>();
    for (let i = 0; i < 2000; i++) before.set(`/d${i % 13}/e${i % 5}/k${i}`, i);
    const first = build(before);
    const after = new Map(before);
    const expected = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
    for (let i = 0; i < 8; i++) {
      const key = `/d${i % 13}/e${i % 5}/k${Math.floor(next() * 2000)}`;
      if (!after.has(key) || expected.added.includes(key) || expected.removed.includes(key) || expected.changed.includes(key)) continue;
      if (i % 3 === 0) {
        after.delete(key);
        expected.removed.push(key);
      } else {
        after.set(key, "new");
        expected.changed.push(key);
      }
    }
    after.set("/brand/new/path", true);
    expected.added.push("/brand/new/path");
    const second = build(after);

    const view = ObjectStore.of(store).view();
    let reads = 0;
    const readNode = view.readNode.bind(view);
    view.readNode = (hash: Hash) => {
      reads += 1;
      return readNode(hash);
    };
    const found = { added: [] as string[], removed: [] as string[], changed: [] as string[] };
    diffTrees(view, first.root, second.root, (change: TreeChange) => {
      const path = `/${change.segments.join("/")}`;
      (change.before ? (change.after ? found.changed : found.removed) : found.added).push(path);
    });
    for (const list of [found, expected]) for (const key of Object.keys(list) as (keyof typeof list)[]) list[key].sort();
    expect(found).toEqual(expected);
    // Each tree has 1 + 13 + 65 nodes; only the root, the <= 8 changed branches and the new path are read.
    const nodes = (root: Hash | null) => {
      let count = 0;
      const countView = ObjectStore.of(store).view();
      const visit = (hash: Hash) => {
        count += 1;
        for (const entry of listDirectory(countView, hash)) if (entry.tree) visit(entry.tree);
      };
      if (root) visit(root);
      return count;
    };
    expect(nodes(first.root) + nodes(second.root)).toBeGreaterThan(150);
    expect(reads).toBeLessThanOrEqual(2 * (1 + 8 + 8) + 2);
  });
});

forEachBackend((backend) => {
beforeEach(async () => {
  store = await backend.fresh();
});

describe("damage detection", () => {
  it("reports missing, corrupted and undecodable objects with their kind and hash", () => {
    const state = new Map<string, JsonValue>([["/x/y", "value"]]);
    const { root } = build(state);
    const objects = ObjectStore.of(store);
    const view = objects.view();
    const valueHash = lookupEntry(view, root, ["x", "y"])!.value!;

    const original = objects.getRaw("value", valueHash)!;
    const flipped = Buffer.from(original);
    flipped[2] = flipped[2]! ^ 0x01;
    transactionSync(store, () => objects.putRaw("value", valueHash, flipped));
    expect(() => objects.view().readValue(valueHash)).toThrow(ObjectDamageError);
    expect(() => objects.view().readValue(valueHash)).toThrow(/does not match its hash/);

    transactionSync(store, () => objects.removeRaw("tree", root!));
    // Views that build trees share decoded nodes (verified when first read); a fresh view reads the store.
    expect(objects.view().readNode(root!)).toMatchObject({ kind: "leaf" });
    const error = (() => {
      try {
        objects.view({ fresh: true }).readNode(root!);
      } catch (caught) {
        return caught as ObjectDamageError;
      }
      return undefined;
    })();
    expect(error).toMatchObject({ code: "APEX_E_INTEGRITY", kind: "tree", hash: root, reason: "missing", exitCode: 1 });

    const garbage = Buffer.from("not a node");
    transactionSync(store, () => objects.putRaw("tree", sha256(garbage), garbage));
    expect(() => objects.view({ fresh: true }).readNode(sha256(garbage))).toThrow(/cannot be decoded/);
  });

  it("rewrites an object whose pack is gone when the same object is written again", () => {
    const state = new Map<string, JsonValue>([["/v", { text: "hello" }]]);
    const { root } = build(state);
    const objects = ObjectStore.of(store);
    const hash = lookupEntry(objects.view(), root, ["v"])!.value!;
    const { pack } = objects.locate("value", hash)!;
    transactionSync(store, () => objects.packs.remove(pack));
    expect(() => objects.view().readValue(hash)).toThrow(/is missing/);
    const rebuilt = build(state);
    expect(rebuilt.stats.valuesWritten).toBe(1);
    expect(objects.view().readValue(hash)).toEqual({ text: "hello" });
    expect(objects.locate("value", hash)!.pack).toBeGreaterThan(pack);
  });

  it("never reuses a pack id, even after the last pack was deleted", () => {
    build(new Map<string, JsonValue>([["/a", 1]]));
    const objects = ObjectStore.of(store);
    const last = objects.lastPackId();
    transactionSync(store, () => {
      for (const id of [...objects.packIds()]) objects.packs.remove(id);
    });
    build(new Map<string, JsonValue>([["/b", 2]]));
    expect(Math.min(...objects.packIds())).toBeGreaterThan(last);
  });
});

describe("index journal", () => {
  const sample = (count: number, tag: string) => new Map<string, JsonValue>(Array.from({ length: count }, (_, i) => [`/dir-${i % 7}/key-${i}`, { tag, i }]));
  const indexed = (kind: "value" | "tree") => ObjectStore.of(store).index(kind).getStats().entryCount ?? 0;

  it("records what tree building writes without touching the hash indexes; a merge moves it there and reads do not change", () => {
    const state = sample(200, "a");
    const { root } = build(state);
    const objects = ObjectStore.of(store);
    expect(indexed("value")).toBe(0);
    expect(indexed("tree")).toBe(0);
    expect(objects.count("value")).toBe(200);
    expect([...objects.hashes("value")]).toHaveLength(200);
    expect(contents(root)).toEqual(state);

    transactionSync(store, () => objects.mergeJournal());
    expect(indexed("value")).toBe(200);
    expect(objects.count("value")).toBe(200);
    expect(objects.count("tree")).toBe(indexed("tree"));
    objects.clearNodeCache();
    expect(contents(root)).toEqual(state);
    // Written again: already stored, nothing new.
    expect(build(state).stats.valuesWritten).toBe(0);
  });

  it("is merged before anything else changes the indexes, so a removal is not undone by a journal entry", () => {
    const state = sample(20, "b");
    const { root } = build(state);
    const objects = ObjectStore.of(store);
    const hash = lookupEntry(objects.view(), root, ["dir-0", "key-0"])!.value!;
    transactionSync(store, () => objects.removeRaw("value", hash));
    expect(objects.has("value", hash)).toBe(false);
    expect(objects.count("value")).toBe(19);
    expect(indexed("value")).toBe(19);
  });

  it("is merged into the indexes by the first write after it grew past JOURNAL_MERGE_ENTRIES", () => {
    const big = sample(JOURNAL_MERGE_ENTRIES + 10, "big");
    build(big);
    expect(indexed("value")).toBe(0);
    const small = sample(3, "small");
    const { root } = build(small);
    expect(indexed("value")).toBe(JOURNAL_MERGE_ENTRIES + 10); // merged before the append
    expect(ObjectStore.of(store).count("value")).toBe(JOURNAL_MERGE_ENTRIES + 13);
    expect(contents(root)).toEqual(small);
  });

  it("forgets entries of an aborted transaction", () => {
    const objects = ObjectStore.of(store);
    const view = objects.view();
    let written: Hash | undefined;
    expect(() =>
      transactionSync(store, () => {
        const set = new ChangeSet();
        set.add(["lost"]);
        updateTree(view, null, set, () => ({ never: "committed" }));
        written = sha256(encodeValue({ never: "committed" }));
        expect(objects.has("value", written)).toBe(true); // visible inside the transaction
        throw new Error("abort");
      }),
    ).toThrow("abort");
    expect(objects.has("value", written!)).toBe(false);
    // The next write reuses the record key; readers see its entries, not the aborted ones.
    const state = sample(5, "c");
    const { root } = build(state);
    expect(objects.has("value", written!)).toBe(false);
    expect(contents(root)).toEqual(state);
  });

  it("records objects of packs compressed as they were written, which read back the same before and after a merge and from another process", async () => {
    const objects = ObjectStore.of(store);
    const text = (i: number) => encodeValue({ i, text: `value ${i} `.repeat(80) }); // compresses well
    const noise = () => randomBytes(1200); // does not (bytes stored unchecked: no value encoding needed here)
    const items = [...Array.from({ length: 40 }, (_, i) => text(i)), ...Array.from({ length: 40 }, () => noise())].map((bytes) => ({ kind: "value" as const, hash: sha256(bytes), bytes }));
    await store.transaction(() => objects.appendObjects(items, { compressValues: true }));
    const compressed = items.filter((item) => objects.locate("value", item.hash)!.codec !== undefined);
    // The text went into compressed packs; a pack of noise that would not shrink stayed as it was.
    expect(compressed.length).toBeGreaterThanOrEqual(40);
    expect(compressed.length).toBeLessThan(items.length);
    for (const item of compressed.slice(0, 40)) expect(decodeValue(item.bytes)).toHaveProperty("text");
    expect(objects.usage().bytes).toBeLessThan(items.reduce((sum, item) => sum + item.bytes.length, 0) * 0.75);
    const readAll = () => {
      const view = objects.view({ fresh: true });
      for (const item of items) expect(view.valueBytes(item.hash).equals(item.bytes)).toBe(true);
      const grouped = objects.getRawGrouped("value", items.map((item) => item.hash));
      for (const item of items) expect(grouped.get(item.hash)!.equals(item.bytes)).toBe(true);
    };
    readAll();
    const script = `
      const { openStore } = await import(${JSON.stringify(new URL("../dist/core/store/open.js", import.meta.url).href)});
      const { ObjectStore } = await import(${JSON.stringify(new URL("../dist/plugins/checkpoint/engine/objects.js", import.meta.url).href)});
      const store = await openStore(${JSON.stringify(store.spec)}, { readOnly: true });
      const view = ObjectStore.of(store).view({ fresh: true });
      const hashes = ${JSON.stringify(items.map((item) => item.hash))};
      let bytes = 0, compressed = 0;
      for (const hash of hashes) { bytes += view.valueBytes(hash).length; if (ObjectStore.of(store).locate("value", hash).codec) compressed++; }
      process.stdout.write(bytes + " " + compressed);
      await store.close();`;
    const { execFileSync } = await import("node:child_process");
    expect(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })).toBe(`${items.reduce((sum, item) => sum + item.bytes.length, 0)} ${compressed.length}`);
    transactionSync(store, () => objects.mergeJournal());
    expect(indexed("value")).toBe(items.length);
    for (const item of compressed) expect(objects.locate("value", item.hash)!.codec).toBeDefined();
    readAll();
    // Without the option (every other checkpoint write), packs are stored as they are.
    const plain = Array.from({ length: 10 }, (_, i) => text(1000 + i)).map((bytes) => ({ kind: "value" as const, hash: sha256(bytes), bytes }));
    await store.transaction(() => objects.appendObjects(plain));
    for (const item of plain) expect(objects.locate("value", item.hash)!.codec).toBeUndefined();
  });

  it("is seen by another process reading the same store", async () => {
    const state = sample(50, "d");
    const { root } = build(state);
    const script = `
      const { openStore } = await import(${JSON.stringify(new URL("../dist/core/store/open.js", import.meta.url).href)});
      const { ObjectStore, walkTree } = await import(${JSON.stringify(new URL("../dist/plugins/checkpoint/engine/objects.js", import.meta.url).href)});
      const store = await openStore(${JSON.stringify(store.spec)}, { readOnly: true });
      const view = ObjectStore.of(store).view();
      let n = 0;
      for (const { hash } of walkTree(view, ${JSON.stringify(root)})) { view.readValue(hash); n++; }
      process.stdout.write(String(n));
      await store.close();`;
    const { execFileSync } = await import("node:child_process");
    expect(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" })).toBe("50");
  });
});

describe("index journal, read anew", () => {
  it("finds every entry's newest location, as the process that appended them, in a journal read from the store", () => {
    const table = store.table("index-journal", { keys: "uint32", values: "binary" }) as unknown as JournalTable;
    const next = random(11);
    const hashes = Array.from({ length: 1200 }, (_, i) => sha256(`journal-${i}`));
    // Hashes that share their first four bytes (the slot they are placed by) with another.
    hashes.push(`${hashes[0]!.slice(0, 8)}${"0".repeat(56)}`, `${hashes[0]!.slice(0, 8)}${"f".repeat(56)}`);
    const entry = (hash: string, i: number): JournalEntry => {
      const location = { pack: 1 + Math.floor(next() * 2 ** 40), offset: Math.floor(next() * 70000), length: 1 + (i % 300) };
      return { kind: i % 3 === 0 ? "tree" : "value", hash, ...location, ...(i % 2 ? { codec: 1, rawSize: location.offset + location.length + i } : {}) };
    };
    const writer = new IndexJournal(table);
    const expected = { value: new Map<string, object>(), tree: new Map<string, object>() };
    const appended: JournalEntry[] = [];
    for (let round = 0; round < 3; round++) {
      // Each round writes some hashes again (another location: the newest wins) in batches of 400.
      const batch = hashes.map((hash, i) => entry(hash, i)).filter((_, i) => round === 0 || i % (round + 2) === 0);
      for (let at = 0; at < batch.length; at += 400) {
        const part = batch.slice(at, at + 400);
        transactionSync(store, () => writer.append(part));
        appended.push(...part);
      }
    }
    // (a map keeps a hash where it first came, with its newest location)
    for (const { kind, hash, ...location } of appended) expected[kind].set(hash, location);
    const reader = new IndexJournal(table); // as a store opened anew reads it
    for (const journal of [writer, reader]) {
      expect(journal.size).toBe(expected.value.size + expected.tree.size);
      for (const kind of ["value", "tree"] as const) {
        for (const [hash, location] of expected[kind]) expect(journal.get(kind, hash)).toEqual(location);
        expect([...journal.entries(kind)]).toEqual([...expected[kind]]);
      }
      const value = [...expected.value.keys()][0]!;
      expect(journal.get("tree", value)).toBeUndefined();
      // (by the hash's bytes, as the hash indexes are keyed: hex in capitals names the same hash)
      expect(journal.get("value", value.toUpperCase())).toEqual(expected.value.get(value));
      expect(journal.get("value", value.slice(0, 63))).toBeUndefined();
      expect(journal.get("value", sha256("not in the journal"))).toBeUndefined();
    }
  });

  it("keeps a record's entries before an unreadable one", () => {
    const table = store.table("index-journal", { keys: "uint32", values: "binary" }) as unknown as JournalTable;
    const journal = new IndexJournal(table);
    const [a, b] = [sha256("a"), sha256("b")];
    transactionSync(store, () => journal.append([{ kind: "value", hash: a, pack: 3, offset: 4, length: 5 }, { kind: "value", hash: b, pack: 6, offset: 7, length: 8 }]));
    const key = [...table.getKeys({ start: 1 })][0]!;
    const record = Buffer.from(table.getBinaryFast(key)!);
    // The second entry's pack as a varint of value 0 written long (0x80 0x00): no pack is 0.
    const second = 4 + 1 + 32 + 3;
    const damaged = Buffer.concat([record.subarray(0, second + 33), Buffer.from([0x80, 0x00]), record.subarray(second + 34)]);
    transactionSync(store, () => table.put(key, damaged));
    const reader = new IndexJournal(table);
    expect(reader.get("value", a)).toEqual({ pack: 3, offset: 4, length: 5 });
    expect(reader.get("value", b)).toBeUndefined();
    expect(reader.size).toBe(1);
  });
});

describe("index journal, damaged", () => {
  it("keeps appending after the last record when its header is unreadable", () => {
    const first = new Map<string, JsonValue>([["/a", 1]]);
    build(first);
    const journal = store.table("index-journal", { keys: "uint32", values: "binary" });
    transactionSync(store, () => journal.put(0, Buffer.from([0xff])));
    const second = new Map<string, JsonValue>([["/b", 2]]);
    const { root } = build(second);
    expect([...journal.getKeys({ start: 1 })]).toEqual([1, 2]);
    expect(contents(root)).toEqual(second);
  });
});

describe("hash filter", () => {
  const next = random(7);
  const randomHash = () => sha256(String(next()));
  const sample = (count: number, tag: string) => new Map<string, JsonValue>(Array.from({ length: count }, (_, i) => [`/dir-${i % 7}/key-${i}`, { tag, i }]));
  const filterTable = () => store.table(FILTER_DB, { keys: "uint32", values: "binary" });

  /** Counts the lookups that reach the hash indexes' B-trees while `fn` runs. */
  function indexLookups(fn: () => void): number {
    const objects = ObjectStore.of(store);
    type Lookups = { get: (key: Buffer) => unknown; getBinaryFast: (key: Buffer) => unknown; getBinaryMany?: (keys: readonly Buffer[]) => unknown };
    const tables = [objects.values, objects.trees] as Lookups[];
    const originals = tables.map((table) => ({ get: table.get, getBinaryFast: table.getBinaryFast, getBinaryMany: table.getBinaryMany }));
    let count = 0;
    tables.forEach((table, i) => {
      for (const method of ["get", "getBinaryFast"] as const) {
        table[method] = (key: Buffer) => {
          count += 1;
          return originals[i]![method].call(table, key);
        };
      }
      // A backend that reads many keys at once (PostgreSQL) is asked for each of them.
      const many = originals[i]!.getBinaryMany;
      if (many)
        table.getBinaryMany = (keys: readonly Buffer[]) => {
          count += keys.length;
          return many.call(table, keys);
        };
    });
    try {
      fn();
    } finally {
      tables.forEach((table, i) => Object.assign(table, originals[i]!));
    }
    return count;
  }

  /** Whether a write view (made inside a write transaction, as a checkpoint's is) takes `hash` for stored. */
  function storedForWrite(kind: "value" | "tree", hash: Hash): boolean {
    let stored = false;
    transactionSync(store, () => {
      stored = ObjectStore.of(store).view().objects.stored(kind, hash, true);
    });
    return stored;
  }

  /** Whether a write view takes each hash of `kind` in the indexes for stored. */
  function allStored(kind: "value" | "tree"): boolean {
    const objects = ObjectStore.of(store);
    let all = false;
    transactionSync(store, () => {
      const view = objects.view(); // syncs the journal and the filter
      all = [...objects.hashes(kind)].every((hash) => view.objects.stored(kind, hash, true));
    });
    return all;
  }

  it("never forgets a hash it was given, in either form, and rarely claims one it was not", () => {
    const filter = HashFilter.sized(20_000, 0);
    const added = Array.from({ length: 20_000 }, randomHash);
    added.forEach((hash, i) => (i % 2 ? filter.add(hash) : filter.addDigest(Buffer.from(hash, "hex"))));
    expect(added.every((hash) => filter.mayContain(hash))).toBe(true);
    const others = Array.from({ length: 20_000 }, randomHash);
    const falsePositives = others.filter((hash) => filter.mayContain(hash)).length;
    expect(falsePositives / others.length).toBeLessThan(0.01);
    expect(filter.full).toBe(false);
    let added2 = 0;
    while (!filter.full && added2 < 1_000_000) {
      filter.add(randomHash());
      added2 += 1;
    }
    // Built for 20,000 at 16 to 32 bits a hash; full below 8 bits a hash, then rebuilt larger.
    expect(20_000 + added2).toBeGreaterThanOrEqual(40_000);
    expect(20_000 + added2).toBeLessThanOrEqual(80_001);
  });

  it("lets a write skip the index lookup for new objects after a merge, and still finds stored ones", () => {
    const objects = ObjectStore.of(store);
    const old = sample(300, "old");
    build(old);
    transactionSync(store, () => objects.mergeJournal());
    expect(HashFilter.readHeader(filterTable())).toMatchObject({ count: objects.count("value") + objects.count("tree") });

    const lookups = indexLookups(() => build(sample(300, "new")));
    expect(lookups).toBeLessThan(5); // ~350 new objects; a false positive costs one lookup
    objects.clearNodeCache();
    expect(build(old).stats.valuesWritten).toBe(0); // stored before the merge: deduplicated
    expect(allStored("value") && allStored("tree")).toBe(true);
  });

  it("without a filter (or an unreadable one), looks every object up, and the next merge rebuilds it", () => {
    const objects = ObjectStore.of(store);
    build(sample(100, "a"));
    transactionSync(store, () => objects.mergeJournal());
    transactionSync(store, () => filterTable().put(0, Buffer.from([0x01, 0xff])));
    expect(HashFilter.readHeader(filterTable())).toBeUndefined();

    const lookups = indexLookups(() => build(sample(100, "b")));
    expect(lookups).toBeGreaterThanOrEqual(100); // every new value asked the index
    expect(allStored("value")).toBe(true);
    transactionSync(store, () => objects.mergeJournal());
    expect(HashFilter.readHeader(filterTable())?.count).toBe(objects.count("value") + objects.count("tree"));
    expect(allStored("value") && allStored("tree")).toBe(true);
  });

  it("covers objects put into the indexes directly (repair, compression, imports)", () => {
    const objects = ObjectStore.of(store);
    build(sample(50, "a"));
    transactionSync(store, () => objects.mergeJournal());
    const bytes = encodeValue({ planted: true });
    const hash = sha256(bytes);
    transactionSync(store, () => objects.putMany([{ kind: "value", hash, bytes }]));
    expect(storedForWrite("value", hash)).toBe(true);
    expect(allStored("value")).toBe(true);
  });

  it("forgets what an aborted transaction added", () => {
    const objects = ObjectStore.of(store);
    build(sample(40, "a"));
    transactionSync(store, () => objects.mergeJournal());
    const before = HashFilter.readHeader(filterTable());
    expect(() =>
      transactionSync(store, () => {
        build(sample(40, "lost"));
        objects.mergeJournal();
        throw new Error("abort");
      }),
    ).toThrow("abort");
    expect(HashFilter.readHeader(filterTable())).toEqual(before);
    const state = sample(40, "kept");
    const { root } = build(state);
    expect(contents(root)).toEqual(state);
    expect(allStored("value") && allStored("tree")).toBe(true);
  });

  it("is reloaded when another process changes the indexes", async () => {
    const objects = ObjectStore.of(store);
    build(sample(30, "a"));
    await store.transaction(() => objects.mergeJournal());
    expect(allStored("value")).toBe(true); // this process now holds the filter in memory
    const planted = { from: "another process" };
    const script = `
      const { openStore } = await import(${JSON.stringify(new URL("../dist/core/store/open.js", import.meta.url).href)});
      const { ObjectStore, sha256 } = await import(${JSON.stringify(new URL("../dist/plugins/checkpoint/engine/objects.js", import.meta.url).href)});
      const { encodeValue } = await import(${JSON.stringify(new URL("../dist/plugins/value-codec.js", import.meta.url).href)});
      const store = await openStore(${JSON.stringify(store.spec)});
      const bytes = encodeValue(${JSON.stringify(planted)});
      await store.transaction(() => ObjectStore.of(store).putMany([{ kind: "value", hash: sha256(bytes), bytes }]));
      await store.close();`;
    const { execFileSync } = await import("node:child_process");
    execFileSync(process.execPath, ["--input-type=module", "-e", script]);
    const hash = sha256(encodeValue(planted));
    expect(storedForWrite("value", hash)).toBe(true);
    const written = build(new Map<string, JsonValue>([["/planted", planted]]));
    expect(written.stats.valuesWritten).toBe(0);
  });
});

describe("whole-tree reads grouped by pack", () => {
  it("getRawGrouped reads each pack once, whatever order the hashes come in, and returns what getRaw returns", async () => {
    const objects = ObjectStore.of(store);
    // Five batches written one after the other: five packs of values (each batch fits one pack).
    const batches: Hash[][] = [];
    for (let batch = 0; batch < 5; batch++) {
      const hashes: Hash[] = [];
      const items = Array.from({ length: 20 }, (_, i) => {
        const bytes = encodeValue(`batch ${batch} value ${i} ${"x".repeat(100)}`);
        const hash = sha256(bytes);
        hashes.push(hash);
        return { kind: "value" as const, hash, bytes };
      });
      await store.transaction(() => objects.appendObjects(items));
      batches.push(hashes);
    }
    // Tree order interleaves the packs: one object of each pack in turn.
    const interleaved = Array.from({ length: 20 }, (_, i) => batches.map((hashes) => hashes[i]!)).flat();
    const reads: number[] = [];
    const original = objects.packs.getBinaryFast.bind(objects.packs);
    objects.packs.getBinaryFast = (key: number) => {
      reads.push(key);
      return original(key);
    };
    try {
      const grouped = objects.getRawGrouped("value", interleaved);
      expect(reads.length).toBe(5);
      expect(new Set(reads).size).toBe(5);
      expect(grouped.size).toBe(100);
      reads.length = 0;
      for (const hash of interleaved) expect(grouped.get(hash)!.equals(objects.getRaw("value", hash)!)).toBe(true);
      expect(reads.length).toBe(100); // one read per object the other way
    } finally {
      objects.packs.getBinaryFast = original;
    }
  });

  it("visitValues hands each value's verified bytes over where they lie, one read per pack, and names a missing or corrupt one", async () => {
    const objects = ObjectStore.of(store);
    const batches: Hash[][] = [];
    for (let batch = 0; batch < 3; batch++) {
      const items = Array.from({ length: 10 }, (_, i) => {
        const bytes = encodeValue({ batch, i, text: "y".repeat(200) });
        return { kind: "value" as const, hash: sha256(bytes), bytes };
      });
      await store.transaction(() => objects.appendObjects(items));
      batches.push(items.map((item) => item.hash));
    }
    const interleaved = Array.from({ length: 10 }, (_, i) => batches.map((hashes) => hashes[i]!)).flat();
    const reads: number[] = [];
    const original = objects.packs.getBinaryFast.bind(objects.packs);
    objects.packs.getBinaryFast = (key: number) => {
      reads.push(key);
      return original(key);
    };
    const seen = new Map<Hash, JsonValue>();
    try {
      objects.view().visitValues(interleaved, (hash, bytes) => seen.set(hash, decodeValue(bytes)));
    } finally {
      objects.packs.getBinaryFast = original;
    }
    expect(reads.length).toBe(3);
    expect(seen.size).toBe(30);
    expect(seen.get(batches[1]![4]!)).toEqual({ batch: 1, i: 4, text: "y".repeat(200) });

    const unknown = "0".repeat(64);
    expect(() => objects.view().visitValues([batches[0]![0]!, unknown], () => undefined)).toThrowError(expect.objectContaining({ hash: unknown, reason: "missing" }));
    const planted = sha256(encodeValue("what it should be"));
    await store.transaction(() => objects.putMany([{ kind: "value", hash: planted, bytes: encodeValue("something else") }]));
    expect(() => objects.view().visitValues([planted], () => undefined)).toThrowError(expect.objectContaining({ hash: planted, reason: "corrupt" }));
  });

  it("visitValues with trustChecksums takes the values of a gzip pack as checked by its CRC, and still names the values of a damaged pack or a misplaced one", async () => {
    const objects = ObjectStore.of(store);
    const items = Array.from({ length: 20 }, (_, i) => {
      const bytes = encodeValue({ i, text: `value ${i} `.repeat(40) });
      return { kind: "value" as const, hash: sha256(bytes), bytes };
    });
    await store.transaction(() => objects.appendObjects(items, { compressValues: true }));
    const hashes = items.map((item) => item.hash);
    const location = objects.locate("value", hashes[0]!)!;
    expect(location.codec).toBeDefined();
    const seen = new Map<Hash, JsonValue>();
    objects.view().visitValues(hashes, (hash, bytes) => seen.set(hash, decodeValue(bytes)), { trustChecksums: true });
    expect(seen.get(hashes[7]!)).toEqual({ i: 7, text: "value 7 ".repeat(40) });

    // An object planted under another's hash in an uncompressed pack is still re-hashed.
    const planted = sha256(encodeValue("what it should be"));
    await store.transaction(() => objects.putMany([{ kind: "value", hash: planted, bytes: encodeValue("something else") }]));
    expect(() => objects.view().visitValues([planted], () => undefined, { trustChecksums: true })).toThrowError(expect.objectContaining({ hash: planted, reason: "corrupt" }));

    // One byte of the compressed pack changed: it fails its CRC, and every value in it is corrupt.
    const stored = copyOf(objects.packs.getBinaryFast(location.pack)!);
    stored[Math.floor(stored.length / 2)]! ^= 0xff;
    await store.transaction(() => objects.packs.put(location.pack, stored));
    expect(() => objects.view().visitValues(hashes, () => undefined, { trustChecksums: true })).toThrowError(expect.objectContaining({ reason: "corrupt" }));
  });

  it("visitValues decompresses gzip packs several to a call, hands each value over with its position, and still finds a damaged pack among them", async () => {
    const objects = ObjectStore.of(store);
    const batches: Array<Array<{ kind: "value"; hash: Hash; bytes: Buffer }>> = [];
    for (let batch = 0; batch < 3; batch++) {
      const items = Array.from({ length: 120 }, (_, i) => {
        const bytes = encodeValue({ batch, i, text: `value ${batch}/${i} `.repeat(60) });
        return { kind: "value" as const, hash: sha256(bytes), bytes };
      });
      await store.transaction(() => objects.appendObjects(items, { compressValues: true }));
      batches.push(items);
    }
    const items = batches.flat();
    const packs = [...new Set(items.map((item) => objects.locate("value", item.hash)!.pack))];
    expect(packs.length).toBeGreaterThanOrEqual(6);
    for (const item of items) expect(objects.locate("value", item.hash)!.codec).toBe(1);
    // In an order unlike the packs', one hash twice: each position is visited with its own bytes.
    const order = [...Array.from({ length: 120 }, (_, i) => batches.map((batch) => batch[i]!)).flat(), items[5]!];
    const hashes = order.map((item) => item.hash);
    const seen: Array<Buffer | undefined> = new Array(hashes.length);
    objects.view().visitValues(hashes, (hash, bytes, at) => {
      expect(hashes[at]).toBe(hash);
      seen[at] = copyOf(bytes);
    }, { trustChecksums: true });
    for (const [at, item] of order.entries()) expect(seen[at]?.equals(item.bytes)).toBe(true);

    // A pack in the middle of the others damaged: the values of the packs before it are read, then
    // one of its values is named corrupt.
    const damaged = packs[Math.floor(packs.length / 2)]!;
    const stored = copyOf(objects.packs.getBinaryFast(damaged)!);
    stored[Math.floor(stored.length / 2)]! ^= 0xff;
    await store.transaction(() => objects.packs.put(damaged, stored));
    const inDamaged = new Set(items.filter((item) => objects.locate("value", item.hash)!.pack === damaged).map((item) => item.hash));
    const visited = new Set<Hash>();
    let error: unknown;
    try {
      objects.view().visitValues(hashes, (hash) => void visited.add(hash), { trustChecksums: true });
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ reason: "corrupt" });
    expect(inDamaged.has((error as ObjectDamageError).hash)).toBe(true);
    for (const item of items) if (objects.locate("value", item.hash)!.pack < damaged) expect(visited.has(item.hash)).toBe(true);
    // Without it, the packs around it are read as before.
    const others = hashes.filter((hash) => !inDamaged.has(hash));
    let count = 0;
    objects.view().visitValues(others, () => void (count += 1), { trustChecksums: true });
    expect(count).toBe(others.length);

    // A pack replaced by a sound gzip member of other bytes (its trailer gives another size than the
    // location records): its values are not taken from it.
    const replaced = packs[1]!;
    const other = gzipSync(Buffer.from("x".repeat(100)));
    await store.transaction(() => objects.packs.put(replaced, other));
    const inReplaced = new Set(items.filter((item) => objects.locate("value", item.hash)!.pack === replaced).map((item) => item.hash));
    const firstPacks = items.filter((item) => objects.locate("value", item.hash)!.pack <= packs[2]!).map((item) => item.hash);
    expect(() => objects.view().visitValues(firstPacks, () => undefined, { trustChecksums: true })).toThrowError(
      expect.objectContaining({ reason: "corrupt", hash: expect.toSatisfy((hash: Hash) => inReplaced.has(hash)) }),
    );
  });

  it("readNodes reads a level of nodes grouped by pack, as readNode reads them one by one, and reports damage as readNode does", async () => {
    const state = new Map<string, JsonValue>();
    for (let i = 0; i < 300; i++) state.set(`/d/k${i}`, i);
    const { root } = build(state);
    // Entries changed in later transactions: the directory's nodes lie in several packs.
    for (let step = 0; step < 4; step++) apply(root, state, new Map(Array.from({ length: 5 }, (_, i) => [`/d/k${step * 50 + i}`, `step ${step}`])));
    const objects = ObjectStore.of(store);
    const dir = lookupEntry(objects.view(), root, ["d"])!.tree!;
    // Level by level, each node as a fresh view's readNode has it.
    const levels: Hash[][] = [];
    for (let level = [dir]; level.length > 0; ) {
      levels.push(level);
      const next: Hash[] = [];
      for (const hash of level) {
        const node = objects.view({ fresh: true }).readNode(hash);
        if (node.kind === "split") for (const bucket of node.buckets) next.push(bucket.hash);
      }
      level = next;
    }
    expect(levels.length).toBeGreaterThanOrEqual(3);
    const all = levels.flat();
    expect(new Set(all.map((hash) => objects.locate("tree", hash)!.pack)).size).toBeGreaterThan(1);
    for (const level of levels) {
      const hashes = [...level, level[0]!]; // one twice: each position gets its node
      const nodes = objects.view({ fresh: true }).readNodes(hashes);
      expect(nodes).toEqual(hashes.map((hash) => objects.view({ fresh: true }).readNode(hash)));
    }

    // A node's bytes damaged in its pack, another node's index record gone: named as readNode names them.
    const [damaged, gone] = [levels[1]![0]!, levels[1]![1]!];
    const location = objects.locate("tree", damaged)!;
    const pack = copyOf(objects.packs.getBinaryFast(location.pack)!);
    pack[location.offset + 1]! ^= 0x01;
    await store.transaction(() => objects.packs.put(location.pack, pack));
    const errorOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (caught) {
        return caught;
      }
      return undefined;
    };
    expect(errorOf(() => objects.view({ fresh: true }).readNodes(levels[1]!))).toMatchObject({ code: "APEX_E_INTEGRITY", kind: "tree", hash: damaged, reason: "corrupt" });
    transactionSync(store, () => objects.removeRaw("tree", gone));
    const rest = levels[1]!.filter((hash) => hash !== damaged);
    expect(errorOf(() => objects.view({ fresh: true }).readNodes(rest))).toMatchObject({ code: "APEX_E_INTEGRITY", kind: "tree", hash: gone, reason: "missing" });
    const garbage = Buffer.from("not a node");
    transactionSync(store, () => objects.putRaw("tree", sha256(garbage), garbage));
    expect(errorOf(() => objects.view({ fresh: true }).readNodes([sha256(garbage)]))).toMatchObject({ kind: "tree", reason: "undecodable" });
  });

  it("visitValues hands over the text of large decompressed buffers, and values decode from it as from their bytes", async () => {
    const objects = ObjectStore.of(store);
    const values: JsonValue[] = Array.from({ length: 600 }, (_, i) => ({
      t: "json",
      d: JSON.stringify(i % 3 === 0 ? `é ${i} `.repeat(200) : `plain ${i} `.repeat(150)),
      v: i,
    }));
    const items = values.map((value) => {
      const bytes = encodeValue(value);
      return { kind: "value" as const, hash: sha256(bytes), bytes };
    });
    for (let batch = 0; batch < 3; batch++) await store.transaction(() => objects.appendObjects(items.slice(batch * 200, batch * 200 + 200), { compressValues: true }));
    let withText = 0;
    const decoded: JsonValue[] = new Array(items.length);
    objects.view().visitValues(items.map((item) => item.hash), (_hash, bytes, at, slice) => {
      if (slice) withText += 1;
      decoded[at] = decodeValueObject(bytes, slice);
    }, { trustChecksums: true });
    expect(withText).toBeGreaterThan(0);
    expect(decoded).toEqual(values);
  });

  it("a view hands prefetched values out once and still verifies them against their hash", async () => {
    const objects = ObjectStore.of(store);
    const bytes = encodeValue({ note: "prefetched" });
    const hash = sha256(bytes);
    await store.transaction(() => objects.appendObjects([{ kind: "value", hash, bytes }]));
    const view = objects.view();
    view.prefetchValues([hash, "0".repeat(64)]); // an unknown hash is left out
    expect(view.readValue(hash)).toEqual({ note: "prefetched" });
    expect(view.readValue(hash)).toEqual({ note: "prefetched" }); // the second read goes to the pack
    expect(() => view.readValue("0".repeat(64))).toThrow(ObjectDamageError);
  });
});
});
