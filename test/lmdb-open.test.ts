// Opening an existing LMDB store writable, and its existing tables, needs no room on the disk:
// only creating a database commits, and a commit is refused when the disk may not hold it
// (room.ts). A command that only reads through a writable store must work on a full disk.
// For real: the store lives on a small tmpfs, filled by a file. Mounting needs root; .ci/run
// runs as root, so there this always runs (as test/disk-full.e2e.test.ts does).
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { RootDatabase } from "lmdb";
import { LmdbStore, namedDatabaseExists } from "../plugins/lmdb/backend.js";
import { tempDir } from "./helpers/cli.js";

let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

const rootOf = (store: LmdbStore) => (store as unknown as { root: RootDatabase }).root;
const asRoot = process.getuid?.() === 0;

describe.runIf(asRoot)("opening an existing store on a full disk", () => {
  it("reads its keyspace and its tables; creating a table is refused as a full disk", async () => {
    const mount = mkdtempSync(join(tmpdir(), "apex-open-full-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mount]);
    cleanup = () => {
      execFileSync("umount", ["-l", mount]);
      rmSync(mount, { recursive: true, force: true });
    };
    const dir = join(mount, "store");
    const first = LmdbStore.open(dir);
    const objects = first.table<Buffer, Buffer>("objects", { keys: "binary", values: "binary" });
    await first.transaction(() => {
      first.batchSync((b) => b.set("/a", 1));
      objects.put(Buffer.alloc(32, 7), Buffer.from("value"));
    });
    await first.close();
    // The disk full to the last block.
    const fd = openSync(join(mount, "filler"), "w");
    try {
      for (const chunk = Buffer.alloc(4096, 1); ; ) writeSync(fd, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
    } finally {
      closeSync(fd);
    }
    const again = LmdbStore.open(dir);
    try {
      expect(again.get("/a")).toBe(1);
      const table = again.table<Buffer, Buffer>("objects", { keys: "binary", values: "binary" });
      expect(table.get(Buffer.alloc(32, 7))?.toString()).toBe("value");
      expect(() => again.table("packs", { keys: "uint32", values: "binary" })).toThrow(expect.objectContaining({ code: "APEX_E_DISK_FULL" }));
    } finally {
      await again.close();
    }
  });
});

describe("named databases", () => {
  it("tells a named database from a name that only shares its prefix", async () => {
    const temp = tempDir("apex-open-");
    cleanup = temp.cleanup;
    const store = LmdbStore.open(temp.dir);
    store.table("packs", { keys: "uint32", values: "binary" });
    const root = rootOf(store);
    expect(namedDatabaseExists(root, "packs")).toBe(true);
    expect(namedDatabaseExists(root, "kv")).toBe(true);
    expect(namedDatabaseExists(root, "pack")).toBe(false);
    expect(namedDatabaseExists(root, "packs2")).toBe(false);
    expect(namedDatabaseExists(root, "zzz")).toBe(false);
    await store.close();
  });
});
