// The room check before an LMDB commit (plugins/lmdb/room.ts): its bound must never be
// below what a commit really adds to the store file, or LMDB would meet the full disk itself
// (and lmdb-js's failure path corrupts the heap). Measured on a real store: each transaction's
// bound, taken just before it commits, against the file's growth.
import { statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LmdbStore } from "../plugins/lmdb/backend.js";
import { tempDir } from "./helpers/cli.js";

let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

describe("room before a commit", () => {
  it("bounds the file's growth of every transaction, within a few times of it", async () => {
    const temp = tempDir("apex-room-");
    cleanup = temp.cleanup;
    const store = LmdbStore.open(temp.dir);
    const objects = store.table("objects", { keys: "binary", values: "binary" });
    const file = join(temp.dir, "store.mdb");
    const measured: Array<{ label: string; bound: number; growth: number; data: number }> = [];
    /** `data`: the bytes of keys and values the transaction puts. */
    const measure = async (label: string, data: number, fn: () => void) => {
      let bound = 0;
      const before = statSync(file).size;
      await store.transaction(() => {
        fn();
        bound = (store as unknown as { commitBytes(): number }).commitBytes();
      });
      measured.push({ label, bound, growth: statSync(file).size - before, data });
    };
    const key = (i: number) => {
      const bytes = Buffer.alloc(32);
      bytes.writeUInt32BE(i);
      return bytes;
    };
    await measure("one small value", 3, () => store.batchSync((b) => b.set("/a", 1)));
    await measure("one 200 KB value", 200_003, () => store.batchSync((b) => b.set("/b", "y".repeat(200_000))));
    await measure("200 values of 10 KB", 200 * 10_008, () => store.batchSync((b) => { for (let i = 0; i < 200; i++) b.set(`/big/${i}`, "x".repeat(10_000)); }));
    await measure("10,000 values of 100 B", 10_000 * 108, () => store.batchSync((b) => { for (let i = 0; i < 10_000; i++) b.set(`/s/${i}`, "x".repeat(100)); }));
    await measure("the same 10,000 rewritten", 10_000 * 108, () => store.batchSync((b) => { for (let i = 0; i < 10_000; i++) b.set(`/s/${i}`, "z".repeat(100)); }));
    await measure("5,000 deleted", 5_000 * 7, () => store.batchSync((b) => { for (let i = 0; i < 5_000; i++) b.delete(`/s/${i}`); }));
    await measure("3,000 objects of 200 B", 3_000 * 232, () => { for (let i = 0; i < 3_000; i++) objects.put(key(i), Buffer.alloc(200, 1)); });
    await measure("300 objects of 4 KB", 300 * 4_032, () => { for (let i = 0; i < 300; i++) objects.put(key(10_000 + i), Buffer.alloc(4_000, 2)); });
    await store.close();
    for (const { label, bound, growth, data } of measured) {
      expect(bound, label).toBeGreaterThanOrEqual(growth);
      // Not so loose that a nearly full disk refuses what plainly fits: the slack plus a few times what is written.
      expect(bound, label).toBeLessThanOrEqual(256 * 1024 + 3 * Math.max(growth, data, 64 * 1024));
    }
    expect(measured.some(({ growth }) => growth > 1024 * 1024)).toBe(true);
  });
});
