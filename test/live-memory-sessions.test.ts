// Validation and repair of the live memories a store holds besides the project's: a worktree
// session's own (/sessions/<sid>/memory), compared with that session's latest checkpoint as the
// project's memory is with its own (an undecodable record there was removed by repair instead of
// put back, and a byte flip that still decodes went unreported); the memory a session holds
// checked by `session validate ID` of that session (it was checked only by a validation of the
// whole store); and the agents an ended session's record lists, which own its tasks (a task of an
// agent whose record was deleted was unassigned by repair, a completed one too).
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JsonValue, Store } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { encodeValue } from "../plugins/value-codec.js";
import { createCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { repairStore, validateStore } from "../plugins/checkpoint/validate.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";

const PROJECT = "11111111-2222-4333-8444-555555555555";
/** Bytes no record decodes from (a msgpack "never used" byte, then a map that stops short). */
const UNDECODABLE = [0xc1, 0x82, 0xa1];

let dir: string;
let cleanup: () => void;
let store: Store;
beforeEach(async () => {
  ({ dir, cleanup } = tempDir("apex-live-sessions-"));
  store = await openStore(join(dir, ".apex"));
});
afterEach(async () => {
  if (!store.closed) await store.close();
  cleanup();
});

/**
 * Writes the keyspace the way damage would: through LMDB in another process (one environment per
 * process and file), bypassing APEX and its revision log (as test/store-damage.test.ts does).
 */
async function tamper(puts: Record<string, number[]>): Promise<void> {
  await store.close();
  const script = [
    `const lmdb = require("node:module").createRequire(${JSON.stringify(join(REPO_ROOT, "package.json"))})("lmdb");`,
    `const root = lmdb.open({ path: ${JSON.stringify(join(dir, ".apex", "store.mdb"))}, maxDbs: 16, compression: false });`,
    `const kv = root.openDB({ name: "kv", encoding: "binary" });`,
    `const puts = ${JSON.stringify(puts)};`,
    `root.transactionSync(() => { for (const [key, bytes] of Object.entries(puts)) kv.put(key, Buffer.from(bytes)); });`,
    `root.close().then(() => process.exit(0));`,
  ].join("\n");
  execFileSync(process.execPath, ["-e", script], { stdio: "inherit", timeout: 30_000 });
  store = await openStore(join(dir, ".apex"));
}

const ran = [{ at: "2026-12-01T10:00:00.000Z", event: "started" }];

/**
 * A project whose session of the project's tree (`main`) ended, and a branch (`feat`) that ran in
 * its own git worktree and ended too: its memory is below /sessions/feat/memory, its checkpoint
 * holds that memory as its agents name it (/notes/…).
 */
async function projectWithWorktreeSession(): Promise<void> {
  await store.batch((batch) => {
    batch.set("/projects/config", { project_id: PROJECT, created_at: "2026-12-01T10:00:00.000Z" });
    batch.set("/sessions/history/main", { session_id: "main", project_id: PROJECT, status: "stopped", history: ran, ended_at: "2026-12-01T10:05:00.000Z" });
    batch.set("/sessions/history/feat", {
      session_id: "feat",
      name: "feat",
      project_id: PROJECT,
      status: "stopped",
      worktree: { path: join(dir, "wt-feat"), branch: "apex/feat", commit: "0".repeat(40) },
      history: [{ at: "2026-12-01T10:06:00.000Z", event: "continued" }],
      ended_at: "2026-12-01T10:09:00.000Z",
    });
    batch.set("/notes/project", "the project's");
    batch.set("/sessions/feat/memory/notes/wt", "precious");
    batch.set("/sessions/feat/memory/notes/flip", { text: "flip me" });
    batch.set("/sessions/feat/memory/notes/later", "written before the checkpoint");
  });
  await createCheckpoint(store, { sessionId: "main", trigger: "manual" });
  await createCheckpoint(store, { sessionId: "feat", trigger: "manual" });
  // Written after feat's checkpoint: not compared with it.
  await store.set("/sessions/feat/memory/notes/later", "written after the checkpoint");
}

describe("a worktree session's own memory", () => {
  it("is valid as its checkpoint holds it, and a record written since is not compared with it", async () => {
    await projectWithWorktreeSession();
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    expect(validateStore(store, { sessionId: "feat" })).toMatchObject({ ok: true, problems: [] });
  });

  it("an undecodable record is put back from the session's latest checkpoint (repair removed it)", async () => {
    await projectWithWorktreeSession();
    await tamper({ "/sessions/feat/memory/notes/wt": UNDECODABLE });
    const report = validateStore(store);
    expect(report.problems.map((problem) => [problem.code, problem.path])).toEqual([
      ["record-undecodable", "/sessions/feat/memory/notes/wt"],
      ["record-damaged", "/sessions/feat/memory/notes/wt"],
    ]);
    expect(report.problems[1]!.checkpoint).toBe("feat/checkpoint-001");
    const dry = await repairStore(store, { dryRun: true });
    expect(dry.actions.map((action) => [action.action, action.target])).toEqual([["restore-record", "/sessions/feat/memory/notes/wt"]]);
    const repaired = await repairStore(store);
    expect(repaired.actions.map((action) => [action.action, action.target])).toEqual([["restore-record", "/sessions/feat/memory/notes/wt"]]);
    expect(repaired.after).toMatchObject({ ok: true, problems: [] });
    expect(store.get("/sessions/feat/memory/notes/wt")).toBe("precious");
  });

  it("a record changed with no logged write is named, and `validate ID` of the session names it too (it said valid)", async () => {
    await projectWithWorktreeSession();
    await tamper({ "/sessions/feat/memory/notes/flip": [...encodeValue({ text: "flip mf" })] });
    expect(store.get("/sessions/feat/memory/notes/flip")).toEqual({ text: "flip mf" });
    for (const report of [validateStore(store), validateStore(store, { sessionId: "feat" })]) {
      expect(report.ok).toBe(false);
      expect(report.problems.map((problem) => [problem.code, problem.path])).toEqual([["record-damaged", "/sessions/feat/memory/notes/flip"]]);
    }
    // Not the other sessions': the project's session holds the project's memory, which is intact.
    expect(validateStore(store, { sessionId: "main" })).toMatchObject({ ok: true, problems: [] });
    // As for the project's memory, repair leaves a record that decodes as it is (the log could be what is damaged).
    const repaired = await repairStore(store);
    expect(repaired.actions).toEqual([]);
    expect(store.get("/sessions/feat/memory/notes/flip")).toEqual({ text: "flip mf" });
  });
});

describe("session validate ID of the session holding the project's memory", () => {
  it("finds an undecodable record of that memory, as repair of the same id does (it said valid, exit 0)", async () => {
    await projectWithWorktreeSession();
    await tamper({ "/notes/project": UNDECODABLE });
    const report = validateStore(store, { sessionId: "main" });
    expect(report.ok).toBe(false);
    expect(report.problems.map((problem) => [problem.code, problem.path])).toEqual([
      ["record-undecodable", "/notes/project"],
      ["record-damaged", "/notes/project"],
    ]);
    // The worktree session does not hold the project's memory: its validation is not about it.
    expect(validateStore(store, { sessionId: "feat" })).toMatchObject({ ok: true, problems: [] });
    const repaired = await repairStore(store);
    expect(repaired.actions.map((action) => [action.action, action.target])).toEqual([["restore-record", "/notes/project"]]);
    expect(store.get("/notes/project")).toBe("the project's");
  });
});

describe("tasks of an ended session", () => {
  it("an agent its record lists owns its tasks, its agent record deleted or not (repair unassigned a completed task)", async () => {
    const task = { id: "t-0001", title: "done", status: "completed", assignee: "coder" } as JsonValue;
    await store.batch((batch) => {
      batch.set("/projects/config", { project_id: PROJECT, created_at: "2026-12-01T10:00:00.000Z" });
      batch.set("/sessions/history/s1", { session_id: "s1", project_id: PROJECT, status: "completed", agents: ["coder"], history: ran, ended_at: "2026-12-01T10:05:00.000Z" });
      batch.set("/sessions/s1/tasks/t-0001", task);
      // A task of an agent neither the record nor an agent record knows is still one of an unknown agent.
      batch.set("/sessions/s1/tasks/t-0002", { id: "t-0002", title: "ghost's", status: "active", assignee: "ghost" });
    });
    for (const report of [validateStore(store), validateStore(store, { sessionId: "s1" })]) {
      expect(report.problems.map((problem) => [problem.code, problem.path])).toEqual([["task-unknown-agent", "/sessions/s1/tasks/t-0002"]]);
    }
    const repaired = await repairStore(store);
    expect(repaired.actions.map((action) => [action.action, action.target])).toEqual([["unassign-task", "/sessions/s1/tasks/t-0002"]]);
    expect(store.get("/sessions/s1/tasks/t-0001")).toEqual(task);
  });
});
