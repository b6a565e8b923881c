import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { processesUsingStore, replaceWithSalvage } from "../plugins/lmdb/salvage-process.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

/** A real process that opens the store with lmdb-js and keeps it open until killed. */
async function holder(file: string): Promise<ChildProcess> {
  const script = `import("lmdb").then(({ open }) => { const db = open({ path: ${JSON.stringify(file)}, readOnly: true }); db.get("x"); process.stdout.write("open\\n"); setInterval(() => {}, 1000); });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "inherit"] });
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk: Buffer) => chunk.toString().includes("open") && resolve());
    child.on("exit", (code) => reject(new Error(`the holder exited (${code}) before opening the store`)));
  });
  return child;
}

describe("repair's file swap refuses a store another process has open", () => {
  it("names the process, changes nothing, and swaps once the process is gone", async () => {
    const { dir, cleanup } = tempDir("apex-salvage-use-");
    cleanups.push(cleanup);
    const store = LmdbStore.open(dir);
    await store.batch((batch) => {
      for (let i = 0; i < 50; i++) batch.set(`/notes/n${i}`, { i });
    });
    await store.close();
    const file = join(dir, "store.mdb");
    expect(processesUsingStore(file)).toEqual([]);

    const child = await holder(file);
    const users = processesUsingStore(file);
    expect(users.map((user) => user.pid)).toEqual([child.pid]);
    const bytes = readFileSync(file);
    let refused: unknown;
    try {
      replaceWithSalvage(dir);
    } catch (error) {
      refused = error;
    }
    expect(refused).toMatchObject({ code: "APEX_E_STORE_IN_USE", exitCode: 4, details: { pids: [child.pid] } });
    expect((refused as Error).message).toContain(String(child.pid));
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(readdirSync(dir).filter((name) => name.includes("damaged") || name.startsWith("salvage-"))).toEqual([]);

    child.kill("SIGKILL");
    await new Promise((resolve) => child.once("exit", resolve));
    expect(processesUsingStore(file)).toEqual([]);
    const swapped = replaceWithSalvage(dir);
    expect(swapped.lost).toBe(0);
    expect(existsSync(swapped.damagedFile)).toBe(true);
    const reopened = LmdbStore.open(dir);
    try {
      expect(reopened.get("/notes/n49")).toEqual({ i: 49 });
    } finally {
      await reopened.close();
    }
  });
});
