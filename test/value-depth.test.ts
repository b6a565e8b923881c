import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ObjectStore, canonicalJson, decodeValueObject, lookupEntry } from "../plugins/checkpoint/engine/objects.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import { MAX_DEPTH, VALUE_TAG, decodeValue, encodeJson, encodeValue } from "../plugins/value-codec.js";
import { createCheckpoint, restoreMemory } from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";

/** `levels` arrays inside each other around 1 (`nested(2)` is [[1]]), alternating with objects when `mixed`. */
function nested(levels: number, mixed = false): JsonValue {
  let value: JsonValue = 1;
  for (let i = 0; i < levels; i++) value = mixed && i % 2 === 1 ? { k: value } : [value];
  return value;
}

/** The encoding of `levels` one-item arrays around 1, written by hand (the encoder refuses it past MAX_DEPTH). */
function encodedArrays(levels: number): Buffer {
  return Buffer.concat([Buffer.from([VALUE_TAG]), Buffer.alloc(levels, 0x91), Buffer.from([0x01])]);
}

function depthOf(value: JsonValue): number {
  let depth = 0;
  for (let at: JsonValue = value; at !== null && typeof at === "object"; depth++) at = Array.isArray(at) ? at[0]! : Object.values(at)[0]!;
  return depth;
}

describe("nesting depth", () => {
  it("accepts values nested exactly MAX_DEPTH levels, and refuses one more with APEX_E_TOO_DEEP", () => {
    expect(MAX_DEPTH).toBe(512);
    for (const mixed of [false, true]) {
      expect(decodeValue(encodeValue(nested(MAX_DEPTH, mixed)))).toEqual(nested(MAX_DEPTH, mixed));
      expect(() => encodeJson(nested(MAX_DEPTH + 1, mixed))).toThrow(expect.objectContaining({ code: "APEX_E_TOO_DEEP", exitCode: 2 }));
      expect(() => canonicalJson(nested(MAX_DEPTH + 1, mixed))).toThrow(expect.objectContaining({ code: "APEX_E_TOO_DEEP" }));
    }
    // Far deeper than the call stack allows: refused with the code, not a RangeError.
    expect(() => encodeJson(nested(200_000))).toThrow(expect.objectContaining({ code: "APEX_E_TOO_DEEP" }));
  });

  it("decodes any depth without recursion: records stored before the limit, or damaged ones, cannot overflow the stack", () => {
    for (const levels of [MAX_DEPTH + 1, 5_000, 300_000]) {
      const value = decodeValue(encodedArrays(levels));
      expect(depthOf(value)).toBe(levels);
    }
    // Damage that nests deeper than the bytes hold is a truncated value, not a crash.
    expect(() => decodeValue(encodedArrays(300_000).subarray(0, 200_000))).toThrow(/truncated/);
    // Maps too, with their keys.
    const map = Buffer.concat([Buffer.from([VALUE_TAG]), Buffer.from(Array.from({ length: 100_000 }, () => [0x81, 0xa1, 0x6b]).flat()), Buffer.from([0xc0])]);
    expect(depthOf(decodeValueObject(map))).toBe(100_000);
  });

  describe("in the store", () => {
    let dir: string;
    let cleanup: () => void;
    let store: Store;
    beforeEach(() => {
      ({ dir, cleanup } = tempDir("apex-depth-"));
      store = LmdbStore.open(dir);
    });
    afterEach(async () => {
      await store.close();
      cleanup();
    });

    it("a write deeper than the limit writes nothing of its batch", async () => {
      await expect(
        store.batch((batch) => {
          batch.set("/ok", 1);
          batch.set("/deep", nested(MAX_DEPTH + 1));
        }),
      ).rejects.toMatchObject({ code: "APEX_E_TOO_DEEP", message: expect.stringContaining("/deep:") });
      expect(store.get("/ok")).toBeUndefined();
      expect(store.revision()).toBe(0);
    });

    it("a value at the limit is read, checkpointed, validated and restored", async () => {
      const deep = nested(MAX_DEPTH, true);
      await store.batch((batch) => {
        batch.set("/sessions/s1", { session_id: "s1", status: "active" });
        batch.set("/deep", deep);
      });
      const created = await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
      await store.set("/deep", 0);
      await restoreMemory(store, created.manifest.id);
      expect(store.get("/deep")).toEqual(deep);
      expect(JSON.parse(JSON.stringify(store.get("/deep")))).toEqual(deep);
    });

    it("a record stored deeper than the limit before it existed still reads, checkpoints and validates", async () => {
      const levels = 3_000;
      await store.batch((batch) => {
        batch.set("/sessions/s1", { session_id: "s1", status: "active" });
        batch.setEncoded("/old/deep", encodedArrays(levels));
      });
      expect(depthOf(store.get("/old/deep")!)).toBe(levels);
      const created = await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
      const view = ObjectStore.of(store).view();
      const entry = lookupEntry(view, created.manifest.memory.root, ["old", "deep"])!;
      expect(depthOf(decodeValueObject(view.valueBytes(entry.value!)))).toBe(levels);
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
  });
});
