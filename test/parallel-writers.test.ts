// Twenty processes writing one store directly (no supervisor), as twenty `apex memory set`
// loops would: every write succeeds, every value and revision is there. Writes commit
// synchronously on the process's own thread; lmdb-js's asynchronous write thread, which
// these writes used before, let a read inside a write batch run without a transaction
// ("No current read transaction available") under this contention.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-writers-"));
});
afterEach(() => cleanup());

const WRITERS = 20;
const WRITES = 30;

describe("parallel direct writers", () => {
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
