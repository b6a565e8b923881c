import { createRequire } from "node:module";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ObjectStore, canonicalJson, decodeValueObject, lookupEntry, sha256, textSlicer } from "../plugins/checkpoint/engine/objects.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { VALUE_TAG, decodeValue, encodeJson, encodeValue } from "../plugins/value-codec.js";
import { createCheckpoint, restoreMemory } from "../plugins/checkpoint/checkpoints.js";
import { random, tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";

const INTEGERS = [
  0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 53 - 1),
];
const FLOATS = [0.1, -1.5, 1e21, 5e-324, 1.7976931348623157e308, 2 ** 53, -(2 ** 60), 123456.789];
const STRINGS = ["", "a", "héllo", "日本語", "emoji 😀", "\u0000\u001f\"\\", "\ud800", "a\udc00b", "\udbff\udfff", "x".repeat(31), "x".repeat(32), "é".repeat(200), "x".repeat(65_536)];

function randomValue(next: () => number, depth = 0): JsonValue {
  const pick = Math.floor(next() * (depth > 3 ? 5 : 8));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return next() < 0.5;
    case 2:
      return INTEGERS[Math.floor(next() * INTEGERS.length)]!;
    case 3:
      return FLOATS[Math.floor(next() * FLOATS.length)]!;
    case 4:
      return STRINGS[Math.floor(next() * (STRINGS.length - 1))]! + String.fromCharCode(Math.floor(next() * 0x10000));
    case 5:
    case 6: {
      const out: { [key: string]: JsonValue } = {};
      const keys = Math.floor(next() * 20);
      for (let i = 0; i < keys; i++) out[STRINGS[Math.floor(next() * 8)]! + String(Math.floor(next() * 30))] = randomValue(next, depth + 1);
      return out;
    }
    default:
      return Array.from({ length: Math.floor(next() * 20) }, () => randomValue(next, depth + 1));
  }
}

/** The same value with every object's keys in another order. */
function reordered(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(reordered);
  if (value === null || typeof value !== "object") return value;
  const out: { [key: string]: JsonValue } = {};
  for (const key of Object.keys(value).reverse()) out[key] = reordered(value[key]!);
  return out;
}

describe("the value encoding", () => {
  it("round-trips random JSON exactly, with one encoding whatever the key order", () => {
    const next = random(7);
    for (let i = 0; i < 500; i++) {
      const value = randomValue(next);
      const bytes = encodeValue(value);
      expect(bytes[0]).toBe(VALUE_TAG);
      const decoded = decodeValue(bytes);
      expect(canonicalJson(decoded)).toBe(canonicalJson(value));
      expect(encodeValue(reordered(value)).equals(bytes)).toBe(true);
      expect(encodeValue(decoded).equals(bytes)).toBe(true);
    }
  });

  it("keeps every number, string and length boundary", () => {
    for (const value of [...INTEGERS, ...FLOATS, ...STRINGS]) expect(decodeValue(encodeValue(value))).toBe(value);
    for (const length of [15, 16, 65_535, 65_536]) {
      const array = Array.from({ length }, (_, i) => i % 3);
      expect(decodeValue(encodeValue(array))).toEqual(array);
      const record = Object.fromEntries(array.slice(0, Math.min(length, 70_000)).map((_, i) => [`k${i}`, i]));
      expect(decodeValue(encodeValue(record))).toEqual(record);
    }
  });


  it("decodes the same values with the bytes' text at hand (strings taken as slices of it where they are ASCII)", () => {
    const next = random(11);
    const values: JsonValue[] = [...STRINGS, { t: "json", d: JSON.stringify("x".repeat(2000)), v: 3 }, ["é".repeat(100), "a".repeat(100), "\ud800".repeat(40)]];
    for (let i = 0; i < 300; i++) values.push(randomValue(next));
    // The values one after the other in one buffer, behind some bytes, as in a decompressed pack.
    const encoded = values.map((value) => encodeValue(value));
    const whole = Buffer.concat([Buffer.from([0xff, 0x80, 0x41]), ...encoded]);
    const slice = textSlicer(Buffer.from(whole.buffer, 0, whole.buffer.byteLength).toString("latin1"));
    let sliced = 0;
    const counting = (buffer: Buffer, start: number, end: number) => {
      const string = slice(buffer, start, end);
      if (string !== undefined) sliced += 1;
      return string;
    };
    let at = 3;
    for (let i = 0; i < values.length; i++) {
      const bytes = whole.subarray(at, at + encoded[i]!.length);
      expect(canonicalJson(decodeValue(bytes, bytes.length, counting))).toBe(canonicalJson(values[i]));
      at += encoded[i]!.length;
    }
    expect(sliced).toBeGreaterThan(0);
    // A string with bytes past ASCII is decoded as UTF-8, not read as Latin-1 from the text.
    const mixed = encodeValue("a".repeat(70) + "é");
    expect(decodeValue(mixed, mixed.length, textSlicer(Buffer.from(mixed.buffer, 0, mixed.buffer.byteLength).toString("latin1")))).toBe("a".repeat(70) + "é");
  });
  it("uses the smallest forms, and writes -0 as 0", () => {
    expect([...encodeValue(0)]).toEqual([VALUE_TAG, 0]);
    expect([...encodeValue(-0)]).toEqual([VALUE_TAG, 0]);
    expect(Object.is(decodeValue(encodeValue(-0)), 0)).toBe(true);
    expect([...encodeValue(-1)]).toEqual([VALUE_TAG, 0xff]);
    expect([...encodeValue(200)]).toEqual([VALUE_TAG, 0xcc, 200]);
    expect([...encodeValue(1.5)].slice(0, 2)).toEqual([VALUE_TAG, 0xcb]);
    expect([...encodeValue("ab")]).toEqual([VALUE_TAG, 0xa2, 0x61, 0x62]);
    expect([...encodeValue({ b: 1, a: null, c: undefined })]).toEqual([VALUE_TAG, 0x82, 0xa1, 0x61, 0xc0, 0xa1, 0x62, 1]);
  });

  it("sorts keys by code point, as canonical JSON does", () => {
    const value = { "\uffff": 1, "😀": 2, b: 3, B: 4, "10": 5, "9": 6 };
    expect(Object.keys(decodeValue(encodeValue(value)) as object)).toEqual(Object.keys(JSON.parse(canonicalJson(value))));
  });

  it("decodes __proto__ as an own property, as JSON.parse does", () => {
    const value = JSON.parse('{"__proto__": {"polluted": true}, "a": 1}') as JsonValue;
    const decoded = decodeValue(encodeValue(value)) as Record<string, unknown>;
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
    expect(Object.keys(decoded)).toEqual(["__proto__", "a"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("refuses what JSON cannot hold, naming where", () => {
    const cases: Array<[unknown, RegExp]> = [
      [Number.NaN, /the number NaN/],
      [{ a: [1, Infinity] }, /at \.a\[1\]: the number Infinity/],
      [[1, undefined], /at \[1\]: a undefined/],
      [{ f: () => 1 }, /at \.f: a function/],
      [{ d: new Date(0) }, /at \.d: an instance of Date/],
      [{ b: Buffer.from("x") }, /at \.b: an instance of Buffer/],
      [10n, /a bigint/],
    ];
    for (const [value, message] of cases) {
      expect(() => encodeJson(value)).toThrow(expect.objectContaining({ code: "APEX_E_BAD_JSON", message: expect.stringMatching(message) }));
    }
  });

  it("rejects bytes that are not an encoded value", () => {
    const good = encodeValue({ a: [1, "x"] });
    expect(() => decodeValue(Buffer.from([0x81]))).toThrow(/no tag/);
    expect(() => decodeValue(Buffer.concat([good, Buffer.from([0])]))).toThrow(/^1 byte after the value$/);
    expect(() => decodeValue(Buffer.concat([good, Buffer.from([0, 0])]))).toThrow(/^2 bytes after the value$/);
    expect(() => decodeValue(good.subarray(0, good.length - 1))).toThrow(/truncated/);
    expect(() => decodeValue(Buffer.from([VALUE_TAG, 0xc4, 1, 0]))).toThrow(/type byte 0xc4/);
    expect(() => decodeValue(Buffer.from([VALUE_TAG, 0x81, 1, 1]))).toThrow(/not a string/);
    expect(() => decodeValue(Buffer.from([VALUE_TAG, 0xdd, 0xff, 0xff, 0xff, 0xff]))).toThrow(/truncated/);
  });

  it("reads value objects of both formats: the encoding and canonical JSON text", () => {
    const value = { a: [1, 2.5, "é"], b: null };
    expect(decodeValueObject(encodeValue(value))).toEqual(value);
    expect(decodeValueObject(Buffer.from(canonicalJson(value)))).toEqual(value);
  });
});

describe("the keyspace in the value encoding", () => {
  let dir: string;
  let cleanup: () => void;
  let store: Store;

  beforeEach(() => {
    ({ dir, cleanup } = tempDir("apex-value-codec-"));
    store = LmdbStore.open(dir);
  });

  afterEach(async () => {
    await store.close();
    cleanup();
  });

  it("stores each record as its encoding", async () => {
    await store.set("/a", { z: 1, a: [true, "x"] });
    expect(store.getEncoded("/a")!.equals(encodeValue({ a: [true, "x"], z: 1 }))).toBe(true);
    expect(store.get("/a")).toEqual({ a: [true, "x"], z: 1 });
    expect([...store.query("/**")]).toEqual([{ path: "/a", value: { a: [true, "x"], z: 1 } }]);
  });

  it("refuses a value that is not JSON, naming the path, and writes nothing", async () => {
    await expect(store.batch((batch) => {
      batch.set("/ok", 1);
      batch.set("/bad", { when: new Date(0) } as unknown as JsonValue);
    })).rejects.toMatchObject({ code: "APEX_E_BAD_JSON", message: expect.stringContaining("/bad: Not a JSON value at .when: an instance of Date") });
    expect(store.get("/ok")).toBeUndefined();
    expect(store.revision()).toBe(0);
  });

  it("reads records with non-ASCII strings as fast as the same bytes copied out of LMDB", async () => {
    // lmdb-js hands the decoder views of its 16 MB shared read buffer; Buffer#indexOf on such a
    // view cost ~0.3 ms a call, so each string of 16+ bytes with a non-ASCII character did:
    // `apex session branch` spent ~1.4 s of CPU reading 700 session records ("… → …").
    const record = (i: number) => ({ outcome: `branched from session ${i} → checkpoint-001`, history: Array.from({ length: 10 }, (_, k) => ({ event: `step ${k} — résumé`, at: "2026-12-03T00:00:00.000Z" })) });
    await store.batch((batch) => {
      for (let i = 0; i < 300; i++) batch.set(`/sessions/history/s${i}`, record(i));
    });
    const copies = [...store.keys({ start: "/sessions/history/", end: "/sessions/history/\uffff" })].map((path) => Buffer.from(store.getEncoded(path)!));
    const time = (fn: () => void) => {
      let best = Infinity;
      for (let round = 0; round < 3; round++) {
        const start = process.hrtime.bigint();
        fn();
        best = Math.min(best, Number(process.hrtime.bigint() - start));
      }
      return best;
    };
    let read: JsonValue[] = [];
    const fromStore = time(() => (read = [...store.query("/sessions/history/*")].map((entry) => entry.value)));
    const fromCopies = time(() => copies.forEach((bytes) => decodeValue(bytes)));
    expect(read).toEqual(Array.from({ length: 300 }, (_, i) => i).sort((a, b) => `s${a}`.localeCompare(`s${b}`)).map(record));
    // The store's read also walks LMDB's cursor: a few times the copies' decode at most (it was ~100×).
    expect(fromStore / fromCopies).toBeLessThan(15);
  });

  it("reads records written before the encoding (lmdb-js msgpack), and re-encodes them for checkpoints", async () => {
    // lmdb-js's default encoding, as records were written before.
    const lmdb = createRequire(import.meta.url)("lmdb") as typeof import("lmdb");
    await store.close();
    const root = lmdb.open({ path: join(dir, "store.mdb"), maxDbs: 16, compression: false });
    const legacy = { title: "old", tags: ["a", "b"], n: 1.5, nested: { z: null, a: 1 } };
    await root.openDB({ name: "kv" }).put("/old", legacy);
    expect(root.openDB({ name: "kv", encoding: "binary" }).getBinary("/old")![0]).not.toBe(VALUE_TAG);
    await root.close();

    store = await openStore(dir);
    expect(store.get("/old")).toEqual(legacy);
    expect([...store.query("/**")].map((entry) => entry.value)).toEqual([legacy]);
    expect(store.getEncoded("/old")!.equals(encodeValue(legacy))).toBe(true);
  });

  it("a checkpoint's value object is the record's stored bytes, and a restore writes them back as they are", async () => {
    await store.batch((batch) => {
      batch.set("/sessions/s1", { session_id: "s1", status: "active" });
      batch.set("/notes/plan", { step: 1, text: "héllo \ud800" });
    });
    const created = await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
    const stored = store.getEncoded("/notes/plan")!;
    const view = ObjectStore.of(store).view();
    const entry = lookupEntry(view, created.manifest.memory.root, ["notes", "plan"])!;
    expect(entry.value).toBe(sha256(stored));
    expect(view.valueBytes(entry.value!).equals(stored)).toBe(true);

    await store.set("/notes/plan", { step: 2 });
    await restoreMemory(store, created.manifest.id);
    expect(store.getEncoded("/notes/plan")!.equals(stored)).toBe(true);
    expect(store.get("/notes/plan")).toEqual({ step: 1, text: "héllo \ud800" });
  });
});
