import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { storeExists } from "../core/store/open.js";
import { REPO_ROOT } from "./helpers/cli.js";
import { forEachBackend } from "./support/backends.js";

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

forEachBackend((backend) => describe("the storage port", () => {
  const fresh = () => backend.fresh();

  it("says which backend it is and where", async () => {
    const store = await fresh();
    expect(store.info.backend).toBe(backend.name);
    if (backend.name === "lmdb") expect(store.info.location).toBe(store.dir);
    else expect(store.info.location).toMatch(/^postgres:\/\/.*#p/);
    expect(await storeExists(store.spec!)).toBe(true);
  });

  it("reads raw key ranges of the keyspace, with and without values, in both directions", async () => {
    const store = await fresh();
    await store.batch((batch) => {
      for (const name of ["a", "b", "c", "d"]) batch.set(`/k/${name}`, name);
      batch.set("/other", 1);
    });
    expect([...store.keys({ start: "/k/", end: "/k0" })]).toEqual(["/k/a", "/k/b", "/k/c", "/k/d"]);
    expect([...store.keys({ start: "/k0", end: "/k/", reverse: true, limit: 2 })]).toEqual(["/k/d", "/k/c"]);
    expect([...store.entries({ start: "/k/b", end: "/k/d" })]).toEqual([
      { path: "/k/b", value: "b" },
      { path: "/k/c", value: "c" },
    ]);
  });

  it("named tables of each key and value kind: ordered, transactional with the keyspace, listed by name", async () => {
    const store = await fresh();
    const tuples = store.table<Array<string | number>, unknown>("t-tuple", { keys: "tuple", values: "structured" });
    const numbers = store.table<number, Buffer>("t-uint", { keys: "uint32", values: "binary" });
    await store.transaction(() => {
      tuples.put(["s", "x", 10], { n: 10 });
      tuples.put(["s", "x", 2], { n: 2 });
      tuples.put(["s", "y", 1], { n: 1 });
      numbers.put(300, Buffer.from([3]));
      numbers.put(7, Buffer.from([1]));
      store.batchSync((batch) => batch.set("/with-tables", true));
    });
    // Tuples order element by element (2 before 10), uint32 numerically.
    expect([...tuples.getKeys({ start: ["s", "x", 0], end: ["s", "x", Number.MAX_SAFE_INTEGER] })]).toEqual([["s", "x", 2], ["s", "x", 10]]);
    expect([...numbers.getKeys()]).toEqual([7, 300]);
    expect(tuples.getCount({ start: ["s"], end: ["t"] })).toBe(3);
    expect(store.get("/with-tables")).toBe(true);
    expect(store.tableNames()).toEqual(expect.arrayContaining(["t-tuple", "t-uint"]));
    expect(store.tableNames()).not.toContain("kv");
    // The same name with other options is a bug of the caller.
    expect(() => store.table("t-uint", { keys: "string", values: "binary" })).toThrowError(expect.objectContaining({ code: "APEX_E_INTERNAL", message: expect.stringContaining("t-uint") }));

    // A failing transaction writes nothing, in tables or the keyspace.
    await expect(
      store.transaction(() => {
        numbers.put(8, Buffer.from([8]));
        store.batchSync((batch) => batch.set("/lost", 1));
        throw new Error("abort");
      }),
    ).rejects.toThrow(/abort/);
    expect(numbers.doesExist(8)).toBe(false);
    expect(store.has("/lost")).toBe(false);
  });

  it("a table a read-only store does not have reads as empty", async () => {
    const store = await fresh();
    await store.set("/x", 1);
    const reader = await backend.reopen(store, { readOnly: true });
    const table = reader.table("never-written", { keys: "string", values: "binary" });
    expect(table.get("a")).toBeUndefined();
    expect([...table.getKeys()]).toEqual([]);
  });

  it("subscribe signals writes made by another handle, and stops when asked", async () => {
    const store = await fresh();
    const other = await backend.reopen(store);
    let calls = 0;
    const stop = store.subscribe(() => calls++);
    await other.set("/ping", 1);
    const deadline = Date.now() + 20_000;
    while (calls === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(calls).toBe(1);
    stop();
    await other.set("/ping", 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(calls).toBe(1);
  });
}));

describe("the storage port", () => {
  it("only the LMDB backend imports lmdb; nothing reaches for the escape hatches", () => {
    const offenders: string[] = [];
    for (const root of ["core", "plugins", "integrations"]) {
      for (const file of sourceFiles(join(REPO_ROOT, root))) {
        const text = readFileSync(file, "utf8");
        const rel = relative(REPO_ROOT, file);
        if (!/^plugins\/lmdb\/[a-z-]+\.ts$/.test(rel) && /from "lmdb"|require(Lmdb)?\("lmdb"\)|import\("lmdb"\)/.test(text)) offenders.push(`${rel}: imports lmdb`);
        if (/\.openDatabase\(|\.environment\b/.test(text)) offenders.push(`${rel}: uses an escape hatch`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
