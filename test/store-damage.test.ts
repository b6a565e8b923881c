// Damage to the store: a read that LMDB reports as damage names the store file and points to
// validate and repair; a live record whose bytes changed without a logged write is found by
// validate and put back by repair from the latest checkpoint. (bench/store-damage.mjs
// measures the same over random byte flips.)
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JsonValue, Store } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { LmdbStore } from "./helpers/store.js";
import { encodeValue } from "../plugins/value-codec.js";
import { createCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { repairStore, validateStore } from "../plugins/checkpoint/validate.js";
import { APEX_BIN, REPO_ROOT, runApex } from "./helpers/cli.js";
import { sessionDir } from "./support/cleanup.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  // A session a test starts is ended even when the test fails before its stop.
  ({ dir, cleanup } = sessionDir("apex-damage-"));
});
afterEach(() => cleanup());

const storeDir = () => join(dir, ".apex");
const PAGE = 4096;
/** Offset of mh_flags in an LMDB page header (page number, txn id, pad). */
const FLAGS_AT = 18;

/** Sets the page-type flags of every page holding `needle` to 0, which LMDB reports as MDB_CORRUPTED. */
function breakPagesHolding(needle: string): number {
  const file = join(storeDir(), "store.mdb");
  const bytes = readFileSync(file);
  const pages = new Set<number>();
  for (let at = bytes.indexOf(needle); at !== -1; at = bytes.indexOf(needle, at + 1)) pages.add(Math.floor(at / PAGE));
  for (const page of pages) bytes.writeUInt16LE(0, page * PAGE + FLAGS_AT);
  writeFileSync(file, bytes);
  return pages.size;
}

/** Sets the page-type flags of the root page of LMDB table `name` (from the newest meta page and the main database's leaf) to 0. */
function breakTableRoot(name: string): void {
  const file = join(storeDir(), "store.mdb");
  const bytes = readFileSync(file);
  const pageSize = bytes.readUInt32LE(24 + 24);
  // Each meta page: 24-byte header, magic, version, address, map size, two 48-byte MDB_db records (root at +40), last page, txn id.
  const metas = [0, 1].map((page) => page * pageSize + 24).map((at) => ({ txn: bytes.readBigUInt64LE(at + 128), main: Number(bytes.readBigUInt64LE(at + 24 + 48 + 40)) }));
  const main = metas[0]!.txn > metas[1]!.txn ? metas[0]!.main : metas[1]!.main;
  const page = bytes.subarray(main * pageSize, (main + 1) * pageSize);
  const at = page.indexOf(Buffer.from(`${name}\0`));
  expect(at, `table ${name} in the main database's root page`).toBeGreaterThan(0);
  expect(page.readUInt16LE(at - 2)).toBe(name.length + 1); // the node's key size
  const root = Number(page.readBigUInt64LE(at + name.length + 1 + 40));
  bytes.writeUInt16LE(0, root * pageSize + FLAGS_AT);
  writeFileSync(file, bytes);
}

describe("a damaged store file", () => {
  it("damage in the checkpoint objects' tables is reported by validate and copied past by repair (it was APEX_E_INTERNAL from both)", async () => {
    const store = await openStore(storeDir());
    await store.batch((batch) => {
      batch.set("/sessions/s1", { session_id: "s1", status: "active" });
      batch.set("/sessions/current", { session_id: "s1" });
      for (let i = 0; i < 20; i++) batch.set(`/notes/${i}`, { i, text: `note ${i}` });
    });
    await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
    await store.close();
    breakTableRoot("index-journal");

    const validated = runApex(["session", "validate", "--json"], { cwd: dir });
    expect(validated.status, validated.stderr).toBe(1);
    const report = JSON.parse(validated.stdout) as { problems: Array<{ code: string; message: string }> };
    expect(report.problems.map((problem) => problem.code)).toEqual(["store-damaged", "store-damaged"]);
    expect(report.problems[0]!.message).toContain(`The store file ${storeDir()}/store.mdb is damaged: reading the checkpoint objects failed (MDB_CORRUPTED`);
    expect(report.problems[1]!.message).toContain("table index-journal, at its start");

    const dry = runApex(["session", "repair", "--dry-run"], { cwd: dir });
    expect(dry.status, dry.stderr).toBe(0);
    expect(dry.stdout).toContain("copy-store");
    expect(dry.stdout).not.toContain("it keeps 0 that verify");

    const repaired = runApex(["session", "repair", "--json"], { cwd: dir });
    expect(repaired.status, repaired.stderr).toBe(0);
    const result = JSON.parse(repaired.stdout) as { actions: Array<{ action: string }>; checkpoints: { removed: number; kept: number }; after: { ok: boolean } };
    expect(result.actions[0]!.action).toBe("copy-store");
    expect(result.checkpoints).toEqual({ removed: 0, kept: 1 });
    expect(result.after.ok).toBe(true);
    expect(runApex(["session", "validate"], { cwd: dir }).stdout).toContain("The project store is valid: 1 checkpoint, 1 verifies");
    expect(JSON.parse(runApex(["memory", "show", "/notes/7", "--json"], { cwd: dir }).stdout)).toMatchObject({ value: { i: 7, text: "note 7" } });
  });

  it("a read that hits damage names the file and points to validate and repair; validate reports it instead of crashing", () => {
    expect(runApex(["memory", "set", "/notes/needle", JSON.stringify("needle-in-a-page")], { cwd: dir }).status).toBe(0);
    expect(breakPagesHolding("needle-in-a-page")).toBeGreaterThan(0);
    for (const args of [["memory", "show", "/notes/needle"], ["memory", "export"], ["memory", "query", "/notes/**"]]) {
      const result = runApex(args, { cwd: dir });
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toContain(`error[APEX_E_STORE_DAMAGED]: The store file ${storeDir()}/store.mdb is damaged`);
      expect(result.stderr).toContain("apex session validate");
      expect(result.stderr).toContain("apex session repair");
      expect(result.stderr).not.toMatch(/^\s+at /m);
    }
    const validated = runApex(["session", "validate"], { cwd: dir });
    expect(validated.status).toBe(1);
    expect(validated.stdout).toContain("store-damaged");
  });

  it("validate goes on past LMDB-level damage, reports each damaged region and points to repair; repair copies every record that still reads into a fresh file, which validates", async () => {
    const notes: Record<string, JsonValue> = {};
    for (let i = 0; i < 600; i++) notes[`/notes/${String(i).padStart(4, "0")}`] = { i, text: `note ${i} `.repeat(8) };
    expect(runApex(["memory", "import", "-"], { cwd: dir, input: JSON.stringify(notes) }).status).toBe(0);
    expect(breakPagesHolding("note 300 note 300")).toBeGreaterThan(0);
    // What still reads, one key at a time: every one of these must survive the repair.
    const readable = new Map<string, JsonValue>();
    const reader = LmdbStore.open(storeDir(), { readOnly: true });
    try {
      for (const path of Object.keys(notes)) {
        try {
          const value = reader.get(path);
          if (value !== undefined) readable.set(path, value);
        } catch (error) {
          expect((error as { code?: string }).code).toBe("APEX_E_STORE_DAMAGED");
        }
      }
    } finally {
      await reader.close();
    }
    expect(readable.size).toBeLessThan(600);
    expect(readable.size).toBeGreaterThan(100);

    const validated = runApex(["session", "validate", "--json"], { cwd: dir });
    expect(validated.status, validated.stderr).toBe(1);
    const report = JSON.parse(validated.stdout) as { problems: Array<{ code: string; message: string }> };
    const damaged = report.problems.filter((problem) => problem.code === "store-damaged");
    expect(damaged.length).toBeGreaterThanOrEqual(2);
    expect(damaged[0]!.message).toMatch(/records? read, \d+ unreadable, \d+ damaged regions?\./);
    expect(damaged.slice(1).every((problem) => /^table kv, after key [0-9a-f]+: /.test(problem.message))).toBe(true);
    const text = runApex(["session", "validate"], { cwd: dir });
    expect(text.stdout).toContain("Next: apex session repair");
    expect(text.stderr).toBe("");

    const repaired = runApex(["session", "repair", "--json"], { cwd: dir });
    expect(repaired.status, repaired.stderr).toBe(0);
    const repair = JSON.parse(repaired.stdout) as { actions: Array<{ action: string; reason: string }>; after: { ok: boolean } };
    expect(repair.actions[0]).toMatchObject({ action: "copy-store", reason: expect.stringContaining("the damaged file is kept as") });
    expect(repair.after.ok).toBe(true);
    expect(runApex(["session", "validate"], { cwd: dir }).status).toBe(0);
    const after = LmdbStore.open(storeDir(), { readOnly: true });
    try {
      for (const [path, value] of readable) expect(after.get(path), path).toEqual(value);
      expect(after.revision()).toBeGreaterThanOrEqual(600);
    } finally {
      await after.close();
    }
    // The repaired store takes writes again.
    expect(runApex(["memory", "set", "/notes/after", "1"], { cwd: dir }).status).toBe(0);
  });

  it("a store file cut short below its last pages but past its root pages is named as truncated by every command, not a Bus error", () => {
    // Two imports and two writes: the second import frees the first one's pages, and the last
    // commits put the root pages in low pages freed so, below leaves of the second import.
    for (const fill of ["a", "b"]) {
      const notes: Record<string, string> = {};
      for (let i = 0; i < 2000; i++) notes[`/notes/${String(i).padStart(4, "0")}`] = `${fill.repeat(300)}${i}`;
      expect(runApex(["memory", "import", "-"], { cwd: dir, input: JSON.stringify(notes) }).status).toBe(0);
    }
    for (const path of ["/x", "/y"]) expect(runApex(["memory", "set", path, "1"], { cwd: dir }).status).toBe(0);
    const file = join(storeDir(), "store.mdb");
    const bytes = readFileSync(file);
    // The newest meta page's root pages (free list, main database) and last page.
    const metas = [0, 1].map((page) => page * PAGE + 24).map((at) => ({
      txn: bytes.readBigUInt64LE(at + 128),
      last: Number(bytes.readBigUInt64LE(at + 120)),
      roots: [Number(bytes.readBigUInt64LE(at + 24 + 40)), Number(bytes.readBigUInt64LE(at + 24 + 48 + 40))],
    }));
    const meta = metas[0]!.txn > metas[1]!.txn ? metas[0]! : metas[1]!;
    const keep = Math.max(...meta.roots) + 1;
    expect(meta.last + 1 - keep, "pages after the roots").toBeGreaterThan(50);
    const truncated = bytes.subarray(0, keep * PAGE);
    writeFileSync(file, truncated);
    for (const args of [["memory", "export"], ["session", "list"], ["status"], ["memory", "set", "/z", "1"]]) {
      const run = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
      expect(run.signal, args.join(" ")).toBeNull();
      expect(run.status, `${args.join(" ")}: ${run.stderr}`).toBe(1);
      expect(run.stderr).toContain(`error[APEX_E_STORE_DAMAGED]: The store file ${file} is damaged: it ends at ${truncated.length} bytes, but its index needs `);
      expect(run.stderr).toContain("(it was truncated)");
    }
    // The whole file is a store like any other: nothing is named as damage.
    writeFileSync(file, bytes);
    expect(runApex(["memory", "show", "/notes/1999"], { cwd: dir }).stdout).toContain("b".repeat(300));
  });

  it("a store file cut short inside its one big commit (a page past its end is a SIGBUS to LMDB) is reported by validate as damaged, not as a crash, and repair says nothing of it can be read and leaves it as it is", async () => {
    const notes: Record<string, JsonValue> = {};
    for (let i = 0; i < 3000; i++) notes[`/notes/${i}`] = { i, text: "word ".repeat(20) };
    expect(runApex(["memory", "import", "-"], { cwd: dir, input: JSON.stringify(notes) }).status).toBe(0);
    const file = join(storeDir(), "store.mdb");
    const bytes = readFileSync(file);
    const truncated = bytes.subarray(0, Math.floor((bytes.length * 0.8) / PAGE) * PAGE);
    writeFileSync(file, truncated);
    // Reading a page past the end of the mapped file would be a SIGBUS: ordinary commands say what is wrong instead.
    for (const args of [["memory", "export"], ["status"], ["memory", "set", "/x", "1"]]) {
      const read = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
      expect(read.signal, args.join(" ")).toBeNull();
      expect(read.status, args.join(" ")).toBe(1);
      expect(read.stderr).toContain(`error[APEX_E_STORE_DAMAGED]: The store file ${file} is damaged: it ends at ${truncated.length} bytes, but its index needs ${bytes.length} (it was truncated).`);
      expect(read.stderr).toContain("apex session repair");
    }

    const validated = runApex(["session", "validate", "--json"], { cwd: dir });
    expect(validated.status, validated.stderr).toBe(1);
    const report = JSON.parse(validated.stdout) as { problems: Array<{ code: string; message: string }> };
    expect(report.problems.every((problem) => problem.code === "store-damaged")).toBe(true);
    // The import's list of tables was written last, past the cut; the commit before it (the store's creation) held no record.
    expect(report.problems[1]!.message).toContain("the store was read as it was 1 commit before its last (LMDB transaction 1 of 2), so what that last commit wrote is lost");
    expect(report.problems[0]!.message).toContain("Read record by record: 0 records read");
    const repaired = runApex(["session", "repair"], { cwd: dir });
    expect(repaired.status).toBe(1);
    expect(repaired.stderr).toContain(`error[APEX_E_STORE_DAMAGED]: No record of the store file ${file} could be read; it was left as it is.`);
    expect(repaired.stderr).not.toMatch(/^\s+at /m);
    expect(readFileSync(file).equals(truncated)).toBe(true);
  });

  it("a store file cut to its first page (one of its two header pages) is reported by validate at once, and repair leaves it: no list of tables is left in it (validate restarted a reader that died opening it 41 times, then failed)", () => {
    for (let i = 0; i < 5; i++) expect(runApex(["memory", "set", `/notes/${i}`, JSON.stringify("x".repeat(3000))], { cwd: dir }).status).toBe(0);
    const file = join(storeDir(), "store.mdb");
    const first = readFileSync(file).subarray(0, PAGE);
    writeFileSync(file, first);
    const started = Date.now();
    const validated = runApex(["session", "validate", "--json"], { cwd: dir });
    expect(validated.status, validated.stderr).toBe(1);
    const report = JSON.parse(validated.stdout) as { ok: boolean; problems: Array<{ code: string; message: string }> };
    expect(report.ok).toBe(false);
    expect(report.problems.map((problem) => problem.code)).toEqual(["store-damaged", "store-damaged"]);
    expect(report.problems[0]!.message).toContain(`it ends at ${PAGE} bytes`);
    expect(report.problems[1]!.message).toBe(`the list of tables: the list of tables is past the end of the file (the file ends at ${PAGE} bytes), and no earlier copy of it is left in the file: no record of it can be read`);
    expect(Date.now() - started).toBeLessThan(3000);
    for (const args of [["session", "repair", "--dry-run"], ["session", "repair"]]) {
      const repaired = runApex(args, { cwd: dir });
      expect(repaired.status, args.join(" ")).toBe(1);
      expect(repaired.stderr).toMatch(new RegExp(`error\\[APEX_E_STORE_DAMAGED\\]: No record of the store file ${file.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} could be read( \\(the reader was killed by SIG(BUS|SEGV)\\))?; it was left as it is\\.`));
    }
    expect(readFileSync(file).equals(first)).toBe(true);
  });

  it.each([
    ["empty", Buffer.alloc(0), "it is empty (0 bytes)"],
    // One byte: "its 1 byte does", not "its 1 bytes do".
    ["a single byte", Buffer.from("\n"), "its 1 byte does not start with an LMDB store's header"],
    ["random bytes", Buffer.from(Array.from({ length: 65536 }, (_, i) => (i * 7919 + 13) % 251)), "its 65536 bytes do not start with an LMDB store's header"],
  ])("a store file that is %s (no LMDB header, which would crash the reader) is named as damaged by every command; validate reports it, repair leaves it", (_name, bytes, why) => {
    expect(runApex(["memory", "set", "/notes/a", "1"], { cwd: dir }).status).toBe(0);
    const file = join(storeDir(), "store.mdb");
    writeFileSync(file, bytes);
    const commands = [["status"], ["session", "list", "--json"], ["memory", "show", "/notes/a"], ["checkpoint", "list"], ["session", "export", "x", "-o", join(dir, "x.apexbundle")]];
    // A writable open lays a new store out in an empty file (as LMDB does in a new one); any other file it refuses.
    if (bytes.length > 0) commands.push(["memory", "set", "/x", "1"]);
    for (const args of commands) {
      const run = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
      expect(run.signal, args.join(" ")).toBeNull();
      expect(run.status, `${args.join(" ")}: ${run.stderr}`).toBe(1);
      expect(run.stderr).toContain(`APEX_E_STORE_DAMAGED`);
      expect(run.stderr).toContain(`The store file ${file} is damaged: ${why}`);
    }
    const validated = runApex(["session", "validate", "--json"], { cwd: dir });
    expect(validated.status, validated.stderr).toBe(1);
    const report = JSON.parse(validated.stdout) as { ok: boolean; problems: Array<{ code: string; message: string }> };
    expect(report.ok).toBe(false);
    expect(report.problems.map((problem) => problem.code)).toEqual(["store-damaged", "store-damaged"]);
    expect(report.problems[1]!.message).toContain("no record of it can be read");
    // The dry run says what the repair does (it said it would copy the 0 records that read into a fresh file).
    const dry = runApex(["session", "repair", "--dry-run"], { cwd: dir });
    expect(dry.status).toBe(1);
    expect(dry.stderr).toContain(`error[APEX_E_STORE_DAMAGED]: No record of the store file ${file} could be read; it was left as it is.`);
    expect(dry.stdout).toBe("");
    const repaired = runApex(["session", "repair"], { cwd: dir });
    expect(repaired.status).toBe(1);
    expect(repaired.stderr).toContain(`error[APEX_E_STORE_DAMAGED]: No record of the store file ${file} could be read; it was left as it is.`);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    expect(existsSync(join(dir, "x.apexbundle"))).toBe(false);
  });

  it("a directory where the store file or its lock file should be is named, not a crash or an internal error", () => {
    expect(runApex(["memory", "set", "/notes/a", "1"], { cwd: dir }).status).toBe(0);
    for (const name of ["store.mdb", "store.mdb-lock"]) {
      const path = join(storeDir(), name);
      const kept = `${path}.kept`;
      renameSync(path, kept);
      mkdirSync(path);
      for (const args of [["status"], ["memory", "set", "/x", "1"]]) {
        const run = spawnSync(process.execPath, [APEX_BIN, ...args, "--json"], { cwd: dir, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
        expect(run.signal, `${name}: ${args.join(" ")}`).toBeNull();
        expect(run.status, `${name}: ${args.join(" ")}: ${run.stderr}`).toBe(1);
        expect(JSON.parse(run.stderr).error).toMatchObject({ code: "APEX_E_STORE_DAMAGED", message: `${path} is a directory, not a file of the store.` });
      }
      rmdirSync(path);
      renameSync(kept, path);
    }
    expect(runApex(["memory", "show", "/notes/a"], { cwd: dir }).stdout.trim()).toBe("1");
  });

  describe("live records against the latest checkpoint", () => {
    let store: Store;
    beforeEach(async () => {
      store = await openStore(storeDir());
      await store.batch((batch) => {
        batch.set("/sessions/s1", { session_id: "s1", status: "active" });
        batch.set("/sessions/current", { session_id: "s1" });
        for (let i = 0; i < 20; i++) batch.set(`/notes/${i}`, { i, text: `note ${i}` });
      });
      await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
      await store.set("/notes/3", { i: 3, text: "changed after the checkpoint" });
    });
    afterEach(async () => {
      await store.close();
    });

    /**
     * Writes the keyspace the way damage would: through LMDB in another process (one
     * environment per process and file), bypassing APEX and its revision log.
     */
    async function tamper(puts: Record<string, number[]>, removes: string[] = []): Promise<void> {
      await store.close();
      const script = [
        `const lmdb = require("node:module").createRequire(${JSON.stringify(join(REPO_ROOT, "package.json"))})("lmdb");`,
        `const root = lmdb.open({ path: ${JSON.stringify(join(storeDir(), "store.mdb"))}, maxDbs: 16, compression: false });`,
        `const kv = root.openDB({ name: "kv", encoding: "binary" });`,
        `const puts = ${JSON.stringify(puts)}; const removes = ${JSON.stringify(removes)};`,
        `root.transactionSync(() => { for (const [key, bytes] of Object.entries(puts)) kv.put(key, Buffer.from(bytes)); for (const key of removes) kv.remove(key); });`,
        `root.close().then(() => process.exit(0));`,
      ].join("\n");
      execFileSync(process.execPath, ["-e", script], { stdio: "inherit", timeout: 30_000 });
      store = await openStore(storeDir());
    }

    it("finds a record changed, removed or added with no logged write; repair keeps them and says so", async () => {
      await tamper(
        {
          "/notes/5": [...encodeValue({ i: 5, text: "note 7" })], // decodes fine, but is not what was written
          "/notes/1\u0000": [...encodeValue({ i: 1, text: "note 1" })], // a key with a changed byte
        },
        ["/notes/6"],
      );
      expect(store.get("/notes/5")).toEqual({ i: 5, text: "note 7" });
      const report = validateStore(store);
      expect(report.ok).toBe(false);
      expect(report.problems.map((problem) => [problem.code, problem.path])).toEqual(
        expect.arrayContaining([
          ["record-damaged", "/notes/5"],
          ["record-missing", "/notes/6"],
          ["record-unlogged", "/notes/1\u0000"],
        ]),
      );
      // A record written after the checkpoint is not compared with it.
      expect(report.problems.some((problem) => problem.path === "/notes/3")).toBe(false);

      // The revision log could be what is damaged: repair does not overwrite a record that decodes, and names what remains.
      const repaired = await repairStore(store);
      expect(repaired.after?.ok).toBe(false);
      expect(repaired.after?.problems.map((problem) => problem.code)).toEqual(expect.arrayContaining(["record-damaged", "record-missing"]));
      expect(store.get("/notes/5")).toEqual({ i: 5, text: "note 7" });
      // Writing the value that is right (the live one, or the checkpoint's) settles it.
      await store.set("/notes/5", { i: 5, text: "note 7" });
      await store.set("/notes/6", { i: 6, text: "note 6" });
      expect(validateStore(store).problems.filter((problem) => problem.code.startsWith("record-"))).toEqual([]);
    });

    it("a record that no longer decodes is put back from the checkpoint instead of deleted", async () => {
      await tamper({ "/notes/8": [0xc1, 0x82, 0xa1] });
      const report = validateStore(store);
      expect(report.problems.map((problem) => problem.code)).toEqual(expect.arrayContaining(["record-undecodable", "record-damaged"]));
      const repaired = await repairStore(store);
      expect(repaired.actions).toContainEqual(expect.objectContaining({ action: "restore-record", target: "/notes/8" }));
      expect(repaired.after?.ok).toBe(true);
      expect(store.get("/notes/8")).toEqual({ i: 8, text: "note 8" });
    });
  });

  it("repair of a valid store leaves a running session running: no stop, no checkpoint, the same agent processes", () => {
    const config = ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", ""].join("\n");
    writeFileSync(join(dir, "apex.config.yaml"), config);
    const must = (args: string[]) => {
      const result = runApex(args, { cwd: dir, timeout: 60_000 });
      expect(result.status, `apex ${args.join(" ")}: ${result.stderr}`).toBe(0);
      return result.stdout;
    };
    must(["start", "--task", "repair"]);
    must(["memory", "set", "/notes/a", "1"]);
    const state = () => {
      const status = JSON.parse(must(["status", "--json"])) as { session: { status: string; supervisor: { pid: number } }; agents: Array<{ pid: number }> };
      const list = JSON.parse(must(["checkpoint", "list", "--json"])) as { taken: number };
      return { status: status.session.status, supervisor: status.session.supervisor.pid, agent: status.agents[0]!.pid, taken: list.taken };
    };
    const before = state();
    expect(before.status).toBe("active");
    // It stopped the session (ending its agents), saved an onStop checkpoint and started it again.
    const text = must(["session", "repair"]);
    expect(text).toBe("Nothing to repair: the store is valid (1 checkpoint verifies).\n");
    const json = JSON.parse(must(["session", "repair", "--json"])) as { actions: unknown[]; after: { ok: boolean } };
    expect(json.actions).toEqual([]);
    expect(json.after.ok).toBe(true);
    expect(state()).toEqual(before);
    must(["stop"]);
  });

  it("a real byte flipped in a live record's value is found after the session stopped (no current session)", () => {
    const config = ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", ""].join("\n");
    writeFileSync(join(dir, "apex.config.yaml"), config);
    const must = (args: string[]) => {
      const result = runApex(args, { cwd: dir, timeout: 60_000 });
      expect(result.status, `apex ${args.join(" ")}: ${result.stderr}`).toBe(0);
      return result.stdout;
    };
    must(["start", "--task", "damage"]);
    must(["memory", "set", "/notes/flip", JSON.stringify({ text: "flip-me-marker" })]);
    must(["memory", "set", "/notes/other", JSON.stringify("untouched")]);
    must(["checkpoint", "create", "before the flip"]);
    must(["stop", "--force"]);
    expect(runApex(["memory", "show", "/sessions/current"], { cwd: dir }).status).toBe(3);
    expect(runApex(["session", "validate"], { cwd: dir }).status).toBe(0);

    // The marker is in the live record and in the checkpoint's value object (and maybe in
    // pages LMDB no longer uses): flip one byte in each copy in turn until a read returns a
    // different, well-formed value, as a random flip of that byte would.
    const file = join(storeDir(), "store.mdb");
    const pristine = readFileSync(file);
    let flipped = false;
    for (let at = pristine.indexOf("flip-me-marker"); at !== -1 && !flipped; at = pristine.indexOf("flip-me-marker", at + 1)) {
      const bytes = Buffer.from(pristine);
      bytes[at] ^= 0x01; // "f" becomes "g"
      writeFileSync(file, bytes);
      const shown = runApex(["memory", "show", "/notes/flip"], { cwd: dir });
      if (shown.status === 0 && shown.stdout.includes("glip-me-marker")) flipped = true;
    }
    expect(flipped).toBe(true);

    const validated = runApex(["session", "validate", "--json"], { cwd: dir });
    expect(validated.status, validated.stderr).toBe(1);
    const report = JSON.parse(validated.stdout) as { problems: Array<{ code: string; path?: string }> };
    expect(report.problems.map((problem) => [problem.code, problem.path])).toEqual([["record-damaged", "/notes/flip"]]);

    // Repair leaves such a record as it is, and says so: it said "Nothing to repair: the store is
    // valid" (exit 1), and validate sent the user to a repair that does nothing.
    const text = runApex(["session", "validate"], { cwd: dir });
    expect(text.status).toBe(1);
    expect(text.stdout).not.toContain("apex session repair");
    expect(text.stdout).toContain("`apex memory show /notes/flip`");
    for (const args of [["session", "repair", "--dry-run"], ["session", "repair"]]) {
      const repaired = runApex(args, { cwd: dir });
      expect(repaired.status, repaired.stderr).toBe(args.includes("--dry-run") ? 0 : 1);
      expect(repaired.stdout).not.toContain("is valid");
      expect(repaired.stdout).toContain(args.includes("--dry-run") ? "Dry run: repair would change nothing: the store is not valid" : "Repair changes nothing: the store is not valid");
      expect(repaired.stdout).toMatch(/record-damaged +[0-9a-f]{8}\/checkpoint-002: The record at \/notes\/flip differs/);
      expect(repaired.stdout).toContain("`apex memory set /notes/flip VALUE`");
      expect(repaired.stdout).toMatch(/`apex start --continue [0-9a-f]{8}\/checkpoint-002`/);
    }
    // Writing the value that is right settles it.
    expect(runApex(["memory", "set", "/notes/flip", JSON.stringify({ text: "flip-me-marker" })], { cwd: dir }).status).toBe(0);
    const settled = runApex(["session", "repair"], { cwd: dir });
    expect(settled.status, settled.stderr).toBe(0);
    expect(settled.stdout).toContain("Nothing to repair: the store is valid");
  });
});
