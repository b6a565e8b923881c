/**
 * Sessions side by side, below the CLI: which session a command acts on (the rule as a table),
 * and each session's own working memory — writes, reads, queries, checkpoints and restores —
 * on both storage backends (LMDB in a temp directory; PostgreSQL in a throwaway cluster).
 */
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { isApexError } from "../core/errors.js";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { boundSession, chooseSession, commandDirectory, setSessionFlag, type BindingCandidate, type BindingInput } from "../core/session/binding.js";
import { memoryViewOf } from "../core/session/memory-view.js";
import { sessionMethods } from "../core/session/methods.js";
import { ACTIVE_SESSIONS_PATH, CURRENT_SESSION_PATH, taskNumber } from "../core/session/records.js";
import { SessionService } from "../core/session/service.js";
import { resolveSessionId } from "../core/session/sessions.js";
import { openStore } from "../core/store/open.js";
import type { Store } from "../core/store/store.js";
import { createCheckpoint, getCheckpointValue, restoreCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { tempDir } from "./helpers/cli.js";
import { createSharedDatabase } from "./support/postgres.js";

const main: BindingCandidate = { session_id: "m-1", name: null, worktree: null };
const alpha: BindingCandidate = { session_id: "a-1", name: "alpha", worktree: "/wt/alpha" };
const beta: BindingCandidate = { session_id: "b-1", name: "beta", worktree: "/wt/beta" };

describe("which session a command acts on", () => {
  const rows: Array<[string, BindingInput, string | undefined, string | undefined]> = [
    ["the agent's own session wins over everything", { agentSession: "a-1", flagSession: "b-1", worktreeSession: "b-1", projectSession: "m-1", active: [main, alpha, beta] }, "a-1", "agent"],
    ["then --session", { flagSession: "b-1", worktreeSession: "a-1", projectSession: "m-1", active: [main, alpha, beta] }, "b-1", "flag"],
    ["then the session bound to this worktree", { worktree: "/wt/alpha", worktreeSession: "a-1", projectSession: "m-1", active: [main, alpha, beta] }, "a-1", "worktree"],
    ["a worktree's session is bound even when it is not active", { worktree: "/wt/alpha", worktreeSession: "a-1", projectSession: "m-1", active: [main, beta] }, "a-1", "worktree"],
    ["in the project's own tree, the session current there", { projectSession: "m-1", active: [main, alpha, beta] }, "m-1", "project"],
    ["a worktree bound to nothing: the project's session", { worktree: "/elsewhere", projectSession: "m-1", active: [main, alpha] }, "m-1", "project"],
    ["else the only active session", { active: [beta] }, "b-1", "only-active"],
    ["no session at all: none", { active: [] }, undefined, undefined],
  ];
  it.each(rows)("%s", (_name, input, sessionId, source) => {
    const chosen = chooseSession(input);
    expect(chosen?.sessionId).toBe(sessionId);
    expect(chosen?.source).toBe(source);
  });

  it("several active and nothing to choose: APEX_E_AMBIGUOUS_SESSION (exit 2) naming each candidate", () => {
    let caught: unknown;
    try {
      chooseSession({ active: [alpha, beta] });
    } catch (error) {
      caught = error;
    }
    expect(isApexError(caught) && caught.code).toBe("APEX_E_AMBIGUOUS_SESSION");
    const error = caught as { exitCode: number; message: string; hint?: string };
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain("alpha (a-1, worktree /wt/alpha)");
    expect(error.message).toContain("beta (b-1, worktree /wt/beta)");
    expect(error.hint).toContain("--session");
  });
});

// --------------------------------------------------------------------------- on both backends

// A database of the test run's shared cluster (an own cluster cost an initdb and a start, seconds of a core).
let pgUrl = "";
let projects = 0;
beforeAll(async () => {
  pgUrl = await createSharedDatabase("binding");
}, 120_000);

const opened: Array<{ store: Store; cleanup: () => void }> = [];
afterEach(async () => {
  setSessionFlag(undefined);
  for (const { store, cleanup } of opened.splice(0)) {
    await store.close();
    cleanup();
  }
});

const backends: Array<[string, () => Promise<Store>]> = [
  [
    "lmdb",
    async () => {
      const temp = tempDir("apex-binding-");
      const store = await openStore(temp.dir, { actor: "user:test" });
      opened.push({ store, cleanup: temp.cleanup });
      return store;
    },
  ],
  [
    "postgres",
    async () => {
      const temp = tempDir("apex-binding-pg-");
      const store = await openStore({ backend: "postgres", dir: temp.dir, url: pgUrl, project: `binding-${++projects}` }, { actor: "user:test" });
      opened.push({ store, cleanup: temp.cleanup });
      return store;
    },
  ],
];

/** The project's session `main` (current) and the branch `alpha` in a worktree, both active. */
async function twoSessions(store: Store): Promise<void> {
  const record = (id: string, extra: Record<string, unknown>) => ({ session_id: id, project_id: "p", status: "active", agents: [], history: [{ event: "started", at: "2026-12-02T10:00:00.000Z" }], supervisor: null, ...extra });
  await store.batch((batch) => {
    batch.set("/sessions/main", record("main", {}));
    batch.set("/sessions/alpha", record("alpha", { name: "alpha", parent_checkpoint: { id: "x" }, worktree: { path: "/nonexistent/alpha", branch: "apex/alpha", commit: null } }));
    batch.set(CURRENT_SESSION_PATH, { session_id: "main" });
    batch.set(ACTIVE_SESSIONS_PATH, { main: { worktree: null, name: null }, alpha: { worktree: "/nonexistent/alpha", name: "alpha" } });
  });
}

const methodsOf = (store: Store, id: string) => sessionMethods(new SessionService(store, id, { fire: async () => {} } as never));

describe.each(backends)("each session's own working memory (%s)", (_backend, open) => {
  it("a write in one session is not seen in the other; /sessions/current answers for each", async () => {
    const store = await open();
    await twoSessions(store);
    const inMain = methodsOf(store, "main");
    const inAlpha = methodsOf(store, "alpha");
    await inMain["memory.set"]!({ path: "/notes/x", value: "main", actor: "user:t" });
    await inAlpha["memory.set"]!({ path: "/notes/x", value: "alpha", actor: "user:t" });
    await inAlpha["memory.import"]!({ entries: [{ path: "/notes/y", value: 1 }], actor: "user:t" });
    expect(inMain["memory.get"]!({ path: "/notes/x" })).toBe("main");
    expect(inAlpha["memory.get"]!({ path: "/notes/x" })).toBe("alpha");
    expect(inMain["memory.get"]!({ path: "/notes/y" })).toBeUndefined();
    expect((inAlpha["memory.query"]!({ glob: "/notes/*" }) as Array<{ path: string }>).map((entry) => entry.path)).toEqual(["/notes/x", "/notes/y"]);
    // main's query of everything does not list alpha's memory root
    expect((inMain["memory.query"]!({ glob: "/**" }) as Array<{ path: string }>).some((entry) => entry.path.includes("/memory/"))).toBe(false);
    expect((inAlpha["memory.get"]!({ path: CURRENT_SESSION_PATH }) as { session_id: string }).session_id).toBe("alpha");
    expect((inMain["memory.get"]!({ path: CURRENT_SESSION_PATH }) as { session_id: string }).session_id).toBe("main");
    // Where it is: alpha's below its own root, main's at the root.
    expect(store.get("/sessions/alpha/memory/notes/x")).toBe("alpha");
    expect(memoryViewOf(store, "alpha").path("/notes/x")).toBe("/sessions/alpha/memory/notes/x");
    await inAlpha["memory.delete"]!({ path: "/notes/y", actor: "user:t" });
    expect(store.get("/sessions/alpha/memory/notes/y")).toBeUndefined();
  });

  it("checkpoints capture a session's own memory and restore into it", async () => {
    const store = await open();
    await twoSessions(store);
    const inMain = methodsOf(store, "main");
    const inAlpha = methodsOf(store, "alpha");
    await inMain["memory.set"]!({ path: "/notes/x", value: "main", actor: "user:t" });
    await inAlpha["memory.set"]!({ path: "/notes/x", value: "alpha", actor: "user:t" });
    const ofAlpha = (await createCheckpoint(store, { sessionId: "alpha", trigger: "manual" })).manifest;
    const ofMain = (await createCheckpoint(store, { sessionId: "main", trigger: "manual" })).manifest;
    expect(getCheckpointValue(store, ofAlpha, "/notes/x")).toBe("alpha");
    expect(getCheckpointValue(store, ofMain, "/notes/x")).toBe("main");
    expect(ofAlpha.memory.keys).toBe(1);
    // Incremental from each one's own base: a later write in alpha is in alpha's next checkpoint only.
    await inAlpha["memory.set"]!({ path: "/notes/z", value: 2, actor: "user:t" });
    const next = (await createCheckpoint(store, { sessionId: "alpha", trigger: "manual" })).manifest;
    expect(getCheckpointValue(store, next, "/notes/z")).toBe(2);
    expect(getCheckpointValue(store, (await createCheckpoint(store, { sessionId: "main", trigger: "manual" })).manifest, "/notes/z")).toBeUndefined();
    // Restoring alpha's first checkpoint rolls alpha back, and main's memory stays as it is.
    await restoreCheckpoint(store, ofAlpha.id, { tasks: false, agents: false });
    expect(inAlpha["memory.get"]!({ path: "/notes/z" })).toBeUndefined();
    expect(inAlpha["memory.get"]!({ path: "/notes/x" })).toBe("alpha");
    expect(inMain["memory.get"]!({ path: "/notes/x" })).toBe("main");
  });

  it("binding on the store: --session by name, the project's session, then ambiguity once it ended", async () => {
    const store = await open();
    await twoSessions(store);
    const cwd = tempDir("apex-binding-cwd-");
    try {
      const resolve = (ref: string) => resolveSessionId(store, ref);
      expect(boundSession(store, resolve, cwd.dir)).toEqual({ sessionId: "main", source: "project" });
      setSessionFlag("alpha");
      expect(boundSession(store, resolve, cwd.dir)).toEqual({ sessionId: "alpha", source: "flag" });
      setSessionFlag(undefined);
      await store.batch((batch) => {
        batch.set("/sessions/beta", { session_id: "beta", status: "active", agents: [], history: [], supervisor: null, name: "beta", worktree: { path: "/nonexistent/beta" } });
        batch.set(ACTIVE_SESSIONS_PATH, { alpha: { worktree: "/nonexistent/alpha", name: "alpha" }, beta: { worktree: "/nonexistent/beta", name: "beta" } });
        batch.delete(CURRENT_SESSION_PATH);
      });
      expect(() => boundSession(store, resolve, cwd.dir)).toThrow(/2 sessions of this project are active/);
    } finally {
      cwd.cleanup();
    }
  });
});

describe("APEX_WORKTREE", () => {
  it("binds like the working tree it names (what APEX's git hooks pass, running APEX in the project)", async () => {
    const temp = tempDir("apex-binding-tree-");
    const store = await openStore(join(temp.dir, "store"), { actor: "user:test" });
    try {
      // A linked git worktree as git lays it out: a .git file naming <main>/.git/worktrees/<name>.
      const main = join(temp.dir, "main");
      const tree = join(temp.dir, "alpha");
      mkdirSync(join(main, ".git", "worktrees", "alpha"), { recursive: true });
      mkdirSync(tree);
      writeFileSync(join(tree, ".git"), `gitdir: ${join(main, ".git", "worktrees", "alpha")}\n`);
      await twoSessions(store);
      await store.batch((batch) => {
        batch.set("/sessions/alpha", { session_id: "alpha", project_id: "p", status: "active", agents: [], history: [], supervisor: null, name: "alpha", worktree: { path: tree, branch: "apex/alpha", commit: null } });
        batch.set(ACTIVE_SESSIONS_PATH, { main: { worktree: null, name: null }, alpha: { worktree: tree, name: "alpha" } });
      });
      const resolve = (ref: string) => resolveSessionId(store, ref);
      expect(boundSession(store, resolve, main)).toEqual({ sessionId: "main", source: "project" });
      process.env.APEX_WORKTREE = tree;
      try {
        expect(commandDirectory()).toBe(tree);
        expect(boundSession(store, resolve)).toEqual({ sessionId: "alpha", source: "worktree" });
      } finally {
        delete process.env.APEX_WORKTREE;
      }
      expect(commandDirectory()).toBe(process.cwd());
    } finally {
      await store.close();
      temp.cleanup();
    }
  });
});

describe("task ids after a branch", () => {
  it("a branch's task ids carry its name, so two tracks never number two tasks alike", () => {
    expect(taskNumber("t-0005.alpha")).toBe(5);
    expect(taskNumber("t-0005")).toBe(5);
    expect(Number.isNaN(taskNumber("t-0005./x"))).toBe(true);
  });
});
