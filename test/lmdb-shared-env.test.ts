// Read-only and writable opens of one LMDB store in one process (plugins/lmdb/shared-env.ts).
// lmdb-js gives every open of a file in a process the environment of the first one still open:
// a writable open made while a read-only handle was open got a read-only environment, failed
// ("Invalid argument: No transaction to renew") and kept it, so that every later writable open
// in the process failed too (`apex serve` writing to an interrupted session). Real stores in
// temp directories.
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import type { StorageBackend } from "../core/store/port.js";
import { LmdbStore } from "../plugins/lmdb/backend.js";
import { whenWritable } from "../plugins/lmdb/shared-env.js";
import { tempDir } from "./helpers/cli.js";

let cleanup: (() => void) | undefined;
const open: StorageBackend[] = [];
afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
  cleanup?.();
  cleanup = undefined;
});

async function storeWith(value: number): Promise<string> {
  const temp = tempDir("apex-shared-env-");
  cleanup = temp.cleanup;
  const store = LmdbStore.open(temp.dir);
  await store.set("/a", value);
  await store.close();
  return temp.dir;
}

describe("read-only and writable opens in one process", () => {
  it("a writable open waits for the read-only handles to close, then writes", async () => {
    const dir = await storeWith(1);
    const reader = await openStore(dir, { readOnly: true });
    open.push(reader);
    expect(reader.get("/a")).toBe(1);
    let writer: StorageBackend | undefined;
    const opening = openStore(dir).then((store) => (writer = store));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(writer).toBeUndefined();
    // Reads go on meanwhile, from another read-only handle too.
    const second = await openStore(dir, { readOnly: true });
    expect(second.get("/a")).toBe(1);
    await second.close();
    expect(writer).toBeUndefined();
    await reader.close();
    open.splice(0);
    open.push(await opening);
    await writer!.set("/a", 2);
    await writer!.set("/b", 3);
    expect(writer!.get("/a")).toBe(2);
    // A read-only open beside a writable one shares its environment and sees its writes.
    const beside = await openStore(dir, { readOnly: true });
    expect(beside.get("/b")).toBe(3);
    await beside.close();
  });

  it("a writable open refused beside a read-only handle leaves nothing behind", async () => {
    const dir = await storeWith(1);
    const reader = LmdbStore.open(dir, { readOnly: true });
    let refused: unknown;
    try {
      LmdbStore.open(dir);
    } catch (error) {
      refused = error;
    }
    expect(refused).toMatchObject({ code: "APEX_E_STORE_IN_USE" });
    expect((refused as Error).message).toContain("open read-only");
    await reader.close();
    // Before, the refused open kept the read-only environment: this open failed as well.
    const writer = LmdbStore.open(dir);
    open.push(writer);
    await writer.set("/a", 2);
    expect(writer.get("/a")).toBe(2);
  });

  it("opens for writing at once beside a writable handle, read-only handles beside it or not", async () => {
    const dir = await storeWith(1);
    const first = await openStore(dir);
    open.push(first);
    const reader = await openStore(dir, { readOnly: true });
    open.push(reader);
    // Their environment is the writable one: nothing to wait for, nothing to refuse.
    const second = LmdbStore.open(dir);
    open.push(second);
    await second.set("/a", 2);
    expect(reader.get("/a")).toBe(2);
    await first.close();
    open.splice(open.indexOf(first), 1);
    const third = await openStore(dir);
    open.push(third);
    await third.set("/a", 3);
    // (lmdb-js keeps a handle's read snapshot until the next turn of the event loop.)
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(reader.get("/a")).toBe(3);
  });

  it("gives up with APEX_E_STORE_IN_USE when the read-only handle is never closed", async () => {
    const dir = await storeWith(1);
    const reader = await openStore(dir, { readOnly: true });
    open.push(reader);
    let opened = false;
    const started = Date.now();
    await expect(whenWritable(join(dir, "store.mdb"), () => (opened = true), 300)).rejects.toMatchObject({ code: "APEX_E_STORE_IN_USE" });
    expect(opened).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it("a handle reads what another handle of the process committed, at once: not its snapshot until the next turn of the event loop", async () => {
    const dir = await storeWith(1);
    const writer = await openStore(dir);
    const other = await openStore(dir);
    const reader = await openStore(dir, { readOnly: true });
    open.push(writer, other, reader);
    // Each reads (lmdb-js keeps the snapshot of a handle's read for the rest of the macrotask), then one writes.
    expect([writer.get("/a"), other.get("/a"), reader.get("/a")]).toEqual([1, 1, 1]);
    await writer.set("/a", 2);
    // (no macrotask between: an ApexSaver's getTuple right after another saver's put read the step before)
    expect([writer.get("/a"), other.get("/a"), reader.get("/a")]).toEqual([2, 2, 2]);
    await other.transaction(() => other.batchSync((batch) => batch.set("/a", 3)));
    expect([writer.get("/a"), other.get("/a"), reader.get("/a")]).toEqual([3, 3, 3]);
  });
});
