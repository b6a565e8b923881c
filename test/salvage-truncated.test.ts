// A truncated store file (a copy cut short, a full disk): validate and repair read what is left
// of it page by page (plugins/lmdb/salvage-pages.ts) and keep every record still in it, as it
// was at one commit; nothing is invented, the loss is reported, the damaged file is never written.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { truncation } from "../plugins/lmdb/file-check.js";
import { salvagePages } from "../plugins/lmdb/salvage-pages.js";
import { runApex } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { sessionDir, tempDirs } from "./support/cleanup.js";

const { open } = createRequire(import.meta.url)("lmdb") as typeof import("lmdb");
const PAGE = 4096;
const NOTES = 300;

const note = (i: number, version: 1 | 2) => (version === 1 ? { i, text: `note ${i} `.repeat(10) } : { i, v: 2, text: `second ${i} `.repeat(10) });

let project: { dir: string; cleanup: () => void };
/** The store file as the session and the writes after it left it. */
let original: Buffer;
/** Checkpoints the session took. */
let taken: number;
/** The store file after more writes, once a cut just past the last commit's list of tables loses pages of its tables. */
let listBeforeTables: Buffer | undefined;
/** The store file after more writes, once the list of tables of the commit before the last lies before the last's (a cut between them keeps only the older). */
let olderListFirst: Buffer | undefined;
/** The store file after more writes, once a list of tables older than both meta pages' lies before both. */
let olderListBelow: { bytes: Buffer; lastPath: string } | undefined;
const dirs = tempDirs();

type Tables = Map<string, Map<string, string>>;

/** Every record of every table of the store file `file`, raw (hex keys and values), read by LMDB itself. */
function readAll(file: string): Tables {
  const root = open({ path: file, readOnly: true, maxDbs: 64, compression: false, encoding: "binary" });
  const tables: Tables = new Map();
  try {
    const list: Array<{ name: string; integerKeys: boolean }> = [];
    for (const { key, value } of root.getRange()) {
      if (Buffer.isBuffer(value) && value.length >= 40) list.push({ name: String(key), integerKeys: (value.readUInt16LE(4) & 0x08) !== 0 });
    }
    for (const { name, integerKeys } of list) {
      const db = root.openDB<Buffer, Buffer | number>({ name, encoding: "binary", keyEncoding: integerKeys ? "uint32" : "binary" } as { name: string });
      const records = new Map<string, string>();
      for (const entry of db.getRange()) records.set(typeof entry.key === "number" ? String(entry.key) : entry.key.toString("hex"), Buffer.from(entry.value).toString("hex"));
      tables.set(name, records);
    }
  } finally {
    root.close();
  }
  return tables;
}

/**
 * The whole file as of the commit before its last: the newest meta page's transaction id set to 0,
 * so that LMDB takes the other one (the last commit cannot reuse the pages it freed, so that
 * commit's pages are all there).
 */
function withoutLastCommit(bytes: Buffer): Buffer {
  const copy = Buffer.from(bytes);
  const [first, second] = [24, PAGE + 24];
  copy.writeBigUInt64LE(0n, (copy.readBigUInt64LE(first + 128) > copy.readBigUInt64LE(second + 128) ? first : second) + 128);
  return copy;
}

/** The newest meta page's and the other's main database roots (page numbers). */
function metaRoots(bytes: Buffer): [number, number] {
  const [newest, other] = [0, 1].map((page) => page * PAGE + 24).sort((a, b) => Number(bytes.readBigUInt64LE(b + 128) - bytes.readBigUInt64LE(a + 128))).map((at) => Number(bytes.readBigUInt64LE(at + 24 + 48 + 40)));
  return [newest!, other!];
}

/** Pages that are leaves of the main database (their first node flagged F_SUBDATA: a table's record). */
function tableListPages(bytes: Buffer): number[] {
  const found: number[] = [];
  for (let page = 2; (page + 1) * PAGE <= bytes.length; page++) {
    const at = page * PAGE;
    if (Number(bytes.readBigUInt64LE(at)) !== page || (bytes.readUInt16LE(at + 18) & 0x02) === 0 || bytes.readUInt16LE(at + 20) < 2) continue;
    if ((bytes.readUInt16LE(at + 24 + bytes.readUInt16LE(at + 24) + 4) & 0x02) !== 0) found.push(page);
  }
  return found;
}

function must(args: string[], cwd = project.dir): string {
  const run = runApex(args, { cwd });
  expect(run.status, `apex ${args.join(" ")}: ${run.stderr}`).toBe(0);
  return run.stdout;
}

beforeAll(async () => {
  // A real session with checkpoints and memory, then writes with no session running.
  project = sessionDir("apex-truncated-");
  writeFileSync(join(project.dir, "apex.config.yaml"), ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", ""].join("\n"));
  must(["start", "--task", "truncate me"]);
  const batch = (from: number, to: number, version: 1 | 2) => JSON.stringify(Object.fromEntries(Array.from({ length: to - from }, (_, k) => [`/notes/${String(from + k).padStart(4, "0")}`, note(from + k, version)])));
  const load = (input: string) => expect(runApex(["memory", "import", "-"], { cwd: project.dir, input }).status).toBe(0);
  load(batch(0, 200, 1));
  must(["checkpoint", "create", "-m", "one"]);
  load(batch(100, NOTES, 2));
  must(["checkpoint", "create", "-m", "two"]);
  must(["stop"]);
  for (let i = 0; i < 8; i++) must(["memory", "set", `/after/${i}`, String(i)]);
  taken = (JSON.parse(must(["checkpoint", "list", "--json"])) as { taken: number }).taken;
  const file = join(project.dir, ".apex", "store.mdb");
  original = readFileSync(file);
  // Where LMDB puts each commit's list of tables depends on the pages free then: more writes, one
  // commit each, until the layouts the cuts below need have each come up once.
  const store = LmdbStore.open(join(project.dir, ".apex"));
  const probe = join(project.dir, "probe.mdb");
  const cutLosesTables = (bytes: Buffer, pages: number) => {
    writeFileSync(probe, bytes.subarray(0, pages * PAGE));
    return truncation(probe) !== undefined;
  };
  try {
    for (let i = 0; i < 200 && !(olderListFirst && olderListBelow && listBeforeTables); i++) {
      const path = `/extra/${i}`;
      await store.set(path, i);
      const bytes = readFileSync(file);
      const [newest, other] = metaRoots(bytes);
      if (!olderListFirst && other < newest) olderListFirst = bytes;
      if (!listBeforeTables && cutLosesTables(bytes, newest + 1)) listBeforeTables = bytes;
      if (!olderListBelow && tableListPages(bytes).some((page) => page < Math.min(newest, other))) olderListBelow = { bytes, lastPath: path };
    }
  } finally {
    await store.close();
    rmSync(probe, { force: true });
  }
}, 60_000);
afterAll(() => project.cleanup());

/** A copy of the project with its store file (`bytes`, by default as the session left it) cut to `pages` pages. */
function cutProject(pages: number, bytes = original): { dir: string; file: string; cut: Buffer } {
  const dir = join(project.dir, "..", `${project.dir.split("/").pop()}-cut-${pages}`);
  dirs.push(dir);
  rmSync(dir, { recursive: true, force: true });
  cpSync(project.dir, dir, { recursive: true });
  const file = join(dir, ".apex", "store.mdb");
  rmSync(`${file}-lock`, { force: true });
  const cut = bytes.subarray(0, pages * PAGE);
  writeFileSync(file, cut);
  return { dir, file, cut };
}

/** The memory as `memory export` gives it, with each note's value one the test wrote (nothing invented). */
function checkedMemory(dir: string): Record<string, unknown> {
  const memory = JSON.parse(must(["memory", "export"], dir)) as Record<string, unknown>;
  for (const [path, value] of Object.entries(memory)) {
    const at = /^\/notes\/(\d{4})$/.exec(path);
    if (at) expect([note(Number(at[1]), 1), note(Number(at[1]), 2)], path).toContainEqual(value);
    const extra = /^\/(after|extra)\/(\d+)$/.exec(path);
    if (extra) expect(value, path).toBe(Number(extra[2]));
  }
  return memory;
}

/**
 * Cuts the store file to `pages` pages in a copy of the project and checks what comes back: what
 * the page reader copies against LMDB's own reading of the whole file as of the commit it says
 * it read (the last, or the one before it), what `session validate` and `session repair` report
 * (exit codes, --json), that the damaged file is never written, and that the repaired store
 * validates and takes writes.
 */
function checkCut(pages: number, bytes = original, withoutTemporaryDirectory = false): { commitsLost: number; records: number; memory?: Record<string, unknown> } {
  const { dir, file, cut } = cutProject(pages, bytes);
  const scratch = join(dir, "scratch");
  mkdirSync(scratch);
  const salvage = salvagePages(file, { copyTo: join(scratch, "copy.mdb") });
  const records = salvage.tables.reduce((sum, table) => sum + table.records, 0);
  if (records > 0 && withoutTemporaryDirectory) {
    // With no temporary directory to check the checkpoints in a copy, validate reports the damage alone.
    const alone = runApex(["session", "validate", "--json"], { cwd: dir, env: { TMPDIR: join(dir, "no-such-dir") } });
    expect(alone.status, alone.stderr).toBe(1);
    const damageOnly = JSON.parse(alone.stdout) as { problems: Array<{ code: string; message: string }>; checkpoints: { total: number } };
    expect(damageOnly.problems.every((problem) => problem.code === "store-damaged")).toBe(true);
    expect(damageOnly.problems[0]!.message).toContain("Checkpoints and records could not be checked past the damage.");
    expect(damageOnly.checkpoints.total).toBe(0);
  }
  const validated = runApex(["session", "validate", "--json"], { cwd: dir });
  expect(validated.status, validated.stderr).toBe(1);
  const report = JSON.parse(validated.stdout) as {
    ok: boolean;
    problems: Array<{ code: string; message: string }>;
    checkpoints: { total: number; verified: number; damaged: Array<{ session_id: string; name: string }> };
  };
  expect(report.ok).toBe(false);
  // The damage first, then what validating what is left of the file found (the checkpoints that lost objects).
  const damage = report.problems.filter((problem) => problem.code === "store-damaged");
  expect(report.problems.slice(0, damage.length)).toEqual(damage);
  if (records > 0) expect(report.problems[0]!.message).toContain("Checkpoints and records were checked in what is left of it");
  expect(report.problems[0]!.message).toContain("(it was truncated)");
  expect(readFileSync(file).equals(cut), "validate leaves the file as it is").toBe(true);
  if (records === 0) {
    // No list of tables is left: nothing is read, and nothing is guessed.
    expect(report.problems[1]!.message).toContain("the list of tables is past the end of the file");
    expect(report.problems[1]!.message).toContain("no earlier copy of it is left in the file: no record of it can be read");
    for (const args of [["session", "repair", "--dry-run", "--json"], ["session", "repair", "--json"]]) {
      const run = runApex(args, { cwd: dir });
      expect(run.status, args.join(" ")).toBe(1);
      expect(JSON.parse(run.stderr)).toMatchObject({ error: { code: "APEX_E_STORE_DAMAGED", exitCode: 1, message: expect.stringContaining("it was left as it is") } });
    }
    expect(readFileSync(file).equals(cut)).toBe(true);
    return { commitsLost: salvage.commitsLost, records };
  }
  // Every record copied is the whole file's, byte for byte, as of the commit read; some are missing.
  if (salvage.commitsLost <= 1) {
    const reference = join(scratch, "whole.mdb");
    writeFileSync(reference, salvage.commitsLost === 1 ? withoutLastCommit(bytes) : bytes);
    const expected = readAll(reference);
    const copied = readAll(join(scratch, "copy.mdb"));
    let total = 0;
    for (const table of expected.values()) total += table.size;
    let read = 0;
    for (const [name, table] of copied) {
      const whole = expected.get(name);
      expect(whole, `table ${name}`).toBeDefined();
      for (const [key, value] of table) expect(whole!.get(key), `${name} ${key}`).toBe(value);
      read += table.size;
    }
    expect(read).toBe(records);
    // As of the last commit, the pages past the cut are lost; as of the one before, that commit may be all that is.
    if (salvage.commitsLost === 0) expect(read).toBeLessThan(total);
    else expect(read).toBeLessThanOrEqual(total);
  }
  expect(report.problems[0]!.message).toMatch(new RegExp(`Read record by record: ${records} records? read, \\d+ unreadable, [1-9]\\d* damaged regions?\\.`));
  if (salvage.commitsLost > 0) expect(report.problems[1]!.message).toMatch(/the store was read as it was \d+ commits? before its last \(LMDB transaction \d+ of \d+\), so what th(at|ose) last (\d+ )?commits? wrote is lost/);

  const repaired = runApex(["session", "repair", "--json"], { cwd: dir });
  expect(repaired.status, repaired.stderr).toBe(0);
  const repair = JSON.parse(repaired.stdout) as { actions: Array<{ action: string; target: string; reason: string }>; checkpoints: { removed: number; kept: number }; after: { ok: boolean } };
  const copy = repair.actions[0]!;
  expect(copy.action).toBe("copy-store");
  expect(copy.reason).toMatch(new RegExp(`copied the ${records} records? that read into a fresh store file \\(\\d+ could not be read\\); the damaged file is kept as (\\S+)$`));
  // Every checkpoint taken is either kept (it verifies) or named as removed, as validate named them, checked in what is left.
  const removed = repair.actions.filter((action) => action.action === "remove-checkpoint").map((action) => action.target);
  expect(removed.length).toBe(repair.checkpoints.removed);
  expect(removed.sort()).toEqual(report.checkpoints.damaged.map((damaged) => `${damaged.session_id}/${damaged.name}`).sort());
  expect(report.checkpoints.total - report.checkpoints.verified).toBe(repair.checkpoints.removed);
  // A cut through the pages of the session's records and its checkpoint catalog takes the records of the checkpoints they
  // listed: validate names those as lost (checkpoint-lost) where what is left names them or the place they had
  // (test/truncated-catalog.test.ts), and repair cannot bring them back. Where LMDB put those records depends on what
  // the running session wrote and when, so some runs cut them.
  const listed = runApex(["checkpoint", "list", "--json"], { cwd: dir });
  const left = listed.status === 0 ? (JSON.parse(listed.stdout) as { total: number }).total : 0;
  if (listed.status !== 0) expect(JSON.parse(listed.stderr || "{}").error?.code ?? listed.stderr).toMatch(/APEX_E_NO_SESSION|No session/);
  expect(repair.checkpoints.kept).toBe(left);
  if (repair.checkpoints.removed + repair.checkpoints.kept !== taken) expect(repair.checkpoints.removed + repair.checkpoints.kept).toBeLessThan(taken);
  expect(repair.after.ok).toBe(true);
  const kept = /kept as (\S+)$/.exec(copy.reason)![1]!;
  expect(readFileSync(kept).equals(cut), "the damaged file is kept byte for byte").toBe(true);
  expect(runApex(["session", "validate"], { cwd: dir }).status).toBe(0);
  const memory = checkedMemory(dir);
  // The store takes writes again.
  must(["memory", "set", "/notes/new", "1"], dir);
  expect(JSON.parse(must(["memory", "show", "/notes/new", "--json"], dir))).toMatchObject({ value: 1 });
  return { commitsLost: salvage.commitsLost, records, memory };
}

describe("a truncated store file", () => {
  const pages = (bytes: Buffer) => Math.floor(bytes.length / PAGE);

  it.each([90, 60, 30])("cut to %i percent of its pages: what is left is copied as it was (a subset, equal to the originals), the loss is reported, and the store validates", (percent) => {
    checkCut(Math.floor((pages(original) * percent) / 100));
  });

  it("cut just past the list of tables: every table page left is read as of the last commit, and what was past the cut is counted lost", () => {
    expect(listBeforeTables, "a layout with the list of tables before pages of its tables").toBeDefined();
    const [newest] = metaRoots(listBeforeTables!);
    const result = checkCut(newest + 1, listBeforeTables!, true);
    expect(result.commitsLost).toBe(0);
    expect(result.records).toBeGreaterThan(0);
  });

  it("cut before the last commit's list of tables, after the one before it: the store is read as of the commit before the last", () => {
    expect(olderListFirst, "a layout with the older list first").toBeDefined();
    const [newest] = metaRoots(olderListFirst!);
    const result = checkCut(newest, olderListFirst!);
    expect(result.commitsLost).toBe(1);
    expect(result.records).toBeGreaterThan(0);
  });

  it("cut before both meta pages' lists of tables: an older copy of the list left in the file is used, and the commits after it are reported lost", () => {
    expect(olderListBelow, "a layout with an older list before both").toBeDefined();
    const result = checkCut(Math.min(...metaRoots(olderListBelow!.bytes)), olderListBelow!.bytes);
    expect(result.commitsLost).toBeGreaterThanOrEqual(2);
    expect(result.records).toBeGreaterThan(0);
    // The last writes are among the commits lost.
    expect(result.memory![olderListBelow!.lastPath]).toBeUndefined();
  });

  it("cut before any list of tables: nothing can be read, repair says so and leaves the file", () => {
    const result = checkCut(3);
    expect(result.records).toBe(0);
  });
});
