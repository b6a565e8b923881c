// Twenty processes writing one store directly (no supervisor), as twenty `apex memory set`
// loops would: every write succeeds, every value and revision is there. Writes commit
// synchronously on the process's own thread; lmdb-js's asynchronous write thread, which
// these writes used before, let a read inside a write batch run without a transaction
// ("No current read transaction available") under this contention.
import { spawn } from "node:child_process";
import { closeSync, openSync, readSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import { REPO_ROOT, runApex, tempDir } from "./helpers/cli.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-writers-"));
});
afterEach(() => cleanup());

/**
 * What an open that races another process's commit leaves in LMDB's lock file (lmdb-js's
 * mdb_env_open2 stores the meta page id it read, without the writer lock): the last commit id
 * one commit back. Written here as LMDB writes it: the uint64 at offset 8 of the lock file.
 */
function setLastCommitBack(lockFile: string): bigint {
  const fd = openSync(lockFile, "r+");
  try {
    const head = Buffer.alloc(16);
    readSync(fd, head, 0, 16, 0);
    expect(head.readUInt32LE(0)).toBe(0xbeefc0de);
    const last = head.readBigUInt64LE(8);
    const back = Buffer.alloc(8);
    back.writeBigUInt64LE(last - 1n);
    writeSync(fd, back, 0, 8, 8);
    return last;
  } finally {
    // The test process holds the store open too: closing a descriptor of the lock file drops
    // its LMDB lock, so this one stays open until the test's store is closed.
    lockFileDescriptors.push(fd);
  }
}
const lockFileDescriptors: number[] = [];
afterEach(() => {
  for (const fd of lockFileDescriptors.splice(0)) closeSync(fd);
});

const WRITERS = 20;
const WRITES = 30;

describe("parallel direct writers", () => {
  it("a write after another process's open set LMDB's last commit id back keeps the commit before it", { timeout: 60_000 }, async () => {
    const storeDir = join(dir, ".apex");
    const lockFile = join(storeDir, "store.mdb-lock");
    const set = (path: string, value: number) => {
      const result = runApex(["memory", "set", path, String(value)], { cwd: dir });
      expect(result.stderr).toBe("");
      expect(result.status).toBe(0);
    };
    set("/a", 1);
    // A long-lived process (as a supervisor or a watch would be) keeps the environment open, so
    // that no later open is alone and rebuilds the lock file.
    const holder = await openStore(storeDir);
    try {
      set("/b", 2);
      setLastCommitBack(lockFile);
      // A process that opens after it stores the right id again (no commit races its open)...
      set("/c", 3);
      // ...but the long-lived process does not open again: its write started from /b's state
      // and replaced /c's commit, before the fix.
      setLastCommitBack(lockFile);
      await holder.set("/d", 4);
      expect(Object.fromEntries(Array.from(holder.query("/**"), (entry) => [entry.path, entry.value]))).toEqual({ "/a": 1, "/b": 2, "/c": 3, "/d": 4 });
      expect(holder.revision()).toBe(4);
      expect(Array.from(holder.changesSince(0), (change) => change.path)).toEqual(["/a", "/b", "/c", "/d"]);
    } finally {
      await holder.close();
    }
    const reader = await openStore(storeDir, { readOnly: true });
    try {
      expect(reader.revision()).toBe(4);
      expect(reader.get("/b")).toBe(2);
    } finally {
      await reader.close();
    }
  });

  it(`${WRITERS} processes × ${WRITES} writes on one store: no failure, nothing lost`, { timeout: 180_000 }, async () => {
    const script = join(dir, "writer.mjs");
    writeFileSync(
      script,
      [
        `import { openStore } from ${JSON.stringify(join(REPO_ROOT, "dist/core/store/open.js"))};`,
        "const [storeDir, id, writes] = process.argv.slice(2);",
        "let failures = 0;",
        "for (let i = 0; i < Number(writes); i++) {",
        "  // A fresh store handle per write, as each `apex memory set` is a fresh process.",
        "  const store = await openStore(storeDir);",
        "  try { await store.set(`/w/${id}/${i}`, { id: Number(id), i }); } catch (error) { failures += 1; console.error(String(error && error.stack || error)); }",
        "  await store.close();",
        "}",
        "process.stdout.write(String(failures));",
      ].join("\n"),
    );
    const storeDir = join(dir, ".apex");
    const children = Array.from({ length: WRITERS }, (_, id) => {
      const child = spawn(process.execPath, [script, storeDir, String(id), String(WRITES)], { stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
    });
    const results = await Promise.all(children);
    for (const result of results) {
      expect(result.stderr).toBe("");
      expect(result.code).toBe(0);
      expect(result.stdout).toBe("0");
    }
    const store = await openStore(storeDir, { readOnly: true });
    try {
      expect(store.revision()).toBe(WRITERS * WRITES);
      expect(Array.from(store.query("/w/**")).length).toBe(WRITERS * WRITES);
      expect(Array.from(store.changesSince(0)).length).toBe(WRITERS * WRITES);
      for (let id = 0; id < WRITERS; id++) expect(store.get(`/w/${id}/${WRITES - 1}`)).toEqual({ id, i: WRITES - 1 });
    } finally {
      await store.close();
    }
  });
});
