// Validation and repair of what a store holds besides the project's own memory and the running
// session: the agents an ended session's record lists, which own its tasks (a task of an agent
// whose record was deleted was unassigned by repair, a completed one too).
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JsonValue, Store } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { repairStore, validateStore } from "../plugins/checkpoint/validate.js";
import { tempDir } from "./helpers/cli.js";

const PROJECT = "11111111-2222-4333-8444-555555555555";

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

const ran = [{ at: "2026-12-01T10:00:00.000Z", event: "started" }];

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
