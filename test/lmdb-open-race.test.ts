// Opens of one LMDB store by several processes at once, each opening and closing it in a loop
// (plugins/lmdb/open-env.ts). A process closing the store as its only user destroys LMDB's mutexes
// in the lock file; an open that had tried for the exclusive lock a moment before went on with
// them destroyed, and its first transaction failed with "Invalid argument": a read-only lookup of
// a session id prefix failed under load, and so did every later open of the process (lmdb-js kept
// the failed environment), and every other process's while it lived. Two or three processes met
// it in most runs within a second. Real processes on a real store in a temp directory.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { LmdbStore } from "../plugins/lmdb/backend.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

const LOOP = join(REPO_ROOT, "test/fixtures/store-open-loop.mjs");
const OPENS = 1500;

let cleanup: (() => void) | undefined;
afterEach(() => {
  cleanup?.();
  cleanup = undefined;
});

function loop(dir: string, mode: "read" | "write"): Promise<{ failed: number; first: string | null; stderr: string }> {
  const child = spawn(process.execPath, [LOOP, dir, String(OPENS), mode], { stdio: ["ignore", "pipe", "pipe"] });
  let [stdout, stderr] = ["", ""];
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) =>
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`the ${mode} loop exited with ${code}: ${stderr}`));
      resolve({ ...(JSON.parse(stdout) as { failed: number; first: string | null }), stderr });
    }),
  );
}

it("processes opening and closing one store at once, read-only and writable, all open it every time", async () => {
  const temp = tempDir("apex-open-race-");
  cleanup = temp.cleanup;
  const store = LmdbStore.open(temp.dir);
  await store.set("/sessions/3f2a9c1e-0000-4000-8000-000000000000", { name: "a" });
  await store.close();
  const results = await Promise.all([loop(temp.dir, "read"), loop(temp.dir, "read"), loop(temp.dir, "write")]);
  for (const result of results) expect(result, result.stderr).toMatchObject({ failed: 0, first: null });
  // The writes all landed.
  const after = LmdbStore.open(temp.dir, { readOnly: true });
  try {
    expect(after.get("/loop/i")).toBe(OPENS - 1);
  } finally {
    await after.close();
  }
}, 60_000);
