import { spawn } from "node:child_process";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { AsyncSeriesWaterfallHook } from "tapable";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { CheckpointDraft } from "../core/engine.js";
import { ApexError } from "../core/errors.js";
import { ObjectStore, canonicalJson, lookupEntry, sha256, type Hash } from "../plugins/checkpoint/engine/objects.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import {
  checkpointInfo,
  createCheckpoint,
  deleteCheckpoint,
  diffCheckpoints,
  getCheckpoint,
  getCheckpointValue,
  listCheckpoints,
  pinCheckpoint,
  readCheckpointMemory,
  resolveCheckpoint,
  restoreCheckpoint,
  restoreMemory,
  showCheckpoint,
  sweepUnreferenced,
  type CheckpointManifest,
} from "../plugins/checkpoint/checkpoints.js";
import { forceRecover, reconstructSession } from "../plugins/checkpoint/recover.js";
import { repairStore, sessionLabeller, validateStore, verifyCheckpoint } from "../plugins/checkpoint/validate.js";
import { validateOutOfProcess } from "../plugins/checkpoint/validate-process.js";
import { createCheckpointService } from "../plugins/checkpoint/service.js";
import { SessionCheckpoints } from "../plugins/checkpoint/plugin-service.js";
import { REPO_ROOT, random, runApex, tempDir } from "./helpers/cli.js";
import { openStore } from "../core/store/open.js";
import { forEachBackend, type TestBackend } from "./support/backends.js";

// Checkpoint ids come from node:crypto's randomUUID; a test can queue the ids it needs (to build an ambiguous prefix).
const ids = vi.hoisted(() => ({ queue: [] as string[] }));
vi.mock("node:crypto", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:crypto")>();
  return { ...real, randomUUID: () => ids.queue.shift() ?? real.randomUUID() };
});

const DIST_WORKER = join(REPO_ROOT, "dist/plugins/checkpoint/validate-worker.js");
/**
 * Damaged record bytes: a msgpack timestamp, read as a record written before the value
 * encoding (plugins/value-codec.ts), decodes to a Date, which is not JSON. (Bytes that
 * make a decoder read past the record can take long to fail: one reason validation runs
 * out of process.)
 */
const NOT_JSON = Buffer.from([0xd6, 0xff, 0, 0, 0, 0]);

/** Child processes run the compiled library: make sure it is there and not older than the sources. */
function requireBuild(): void {
  const pairs = ["plugins/checkpoint/engine/objects.ts", "plugins/checkpoint/checkpoints.ts", "plugins/checkpoint/validate.ts", "plugins/checkpoint/snapshot.ts"];
  for (const source of pairs) {
    const built = join(REPO_ROOT, "dist", source.replace(/\.ts$/, ".js"));
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(join(REPO_ROOT, source)).mtimeMs) {
      throw new Error(`${built} is missing or older than ${source}: run \`npm run build\` first (npm test does).`);
    }
  }
}

let store: Store;

async function newStore(backend: TestBackend): Promise<void> {
  store = await backend.fresh();
  await store.batch((batch) => {
    batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder", "adversary"] });
    batch.set("/sessions/current", { session_id: "s1" });
    batch.set("/sessions/s1/agents/coder", { name: "coder", status: "running", pid: 10 });
    batch.set("/sessions/s1/agents/coder.context", { plan: ["write tests"] });
    batch.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "first", status: "active", assignee: "coder" });
  });
}

afterEach(() => {
  ids.queue.length = 0;
});

/** The project memory: every path outside /sessions. */
function memoryOf(target: Store = store): Map<string, JsonValue> {
  const memory = new Map<string, JsonValue>();
  for (const { path, value } of target.tree("/")) if (path !== "/sessions" && !path.startsWith("/sessions/")) memory.set(path, value);
  return memory;
}

const create = (options: Partial<Parameters<typeof createCheckpoint>[1]> = {}) =>
  createCheckpoint(store, { sessionId: "s1", trigger: "manual", ...options });

function caught(fn: () => unknown): ApexError {
  try {
    fn();
  } catch (error) {
    return error as ApexError;
  }
  throw new Error("expected an error");
}

async function rejected(promise: Promise<unknown>): Promise<ApexError> {
  try {
    await promise;
  } catch (error) {
    return error as ApexError;
  }
  throw new Error("expected a rejection");
}

forEachBackend((backend) => {
beforeEach(() => newStore(backend));

describe("createCheckpoint", () => {
  it("writes a manifest with per-session sequence, parent, counts and an integrity hash", async () => {
    await store.batch((batch) => {
      batch.set("/notes/a", "alpha");
      batch.set("/notes/b", { n: 1 });
      // The project's record: the store's, in no checkpoint's memory (scope.ts).
      batch.set("/projects/config", { project_id: "p" });
    });
    const first = (await create({ description: "first" })).manifest;
    await store.set("/notes/c", [1, 2]);
    const second = (await create({ trigger: "beforeTask" })).manifest;

    expect(first).toMatchObject({
      format: 1,
      session_id: "s1",
      sequence: 1,
      name: "checkpoint-001",
      parent: null,
      description: "first",
      trigger: "manual",
      pinned: false,
      git_state: null,
      data: {},
      memory: { keys: 2, scope: { include: ["/"], exclude: ["/projects/config", "/sessions"] } },
      tasks: { count: 1 },
      agents: { count: 2 },
    });
    expect(first.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(new Date(first.created_at).toISOString()).toBe(first.created_at);
    expect(second).toMatchObject({ sequence: 2, name: "checkpoint-002", parent: first.id, trigger: "beforeTask", memory: { keys: 3 } });
    expect(second.revision).toBeGreaterThan(first.revision);

    const { hash, ...unsigned } = second;
    expect(hash).toBe(sha256(canonicalJson(unsigned)));
    expect(store.get("/sessions/s1/checkpoint-002")).toEqual(second);
    expect(verifyCheckpoint(store, second)).toEqual([]);
    expect(checkpointInfo(second)).toEqual({ sessionId: "s1", id: second.id, sequence: 2, trigger: "beforeTask" });
  });

  it("lets beforeCheckpoint taps add git_state and other data through the enrich callback", async () => {
    const beforeCheckpoint = new AsyncSeriesWaterfallHook<[CheckpointDraft]>(["draft"]);
    beforeCheckpoint.tapPromise("git", async (draft) => {
      draft.data.git_state = { branch: "main", head: "abc123", dirty: false };
      return draft;
    });
    beforeCheckpoint.tapPromise("metrics", async (draft) => ({ ...draft, data: { ...draft.data, metrics: { tasks_done: 3 } } }));
    const { manifest } = await create({ trigger: "beforeGit", enrich: (draft) => beforeCheckpoint.promise(draft) });
    expect(manifest.git_state).toEqual({ branch: "main", head: "abc123", dirty: false });
    expect(manifest.data).toEqual({ metrics: { tasks_done: 3 } });
    expect(verifyCheckpoint(store, manifest)).toEqual([]);
  });

  it("refuses what it cannot store, with stable codes", async () => {
    const badEnrich = await rejected(create({ enrich: async () => undefined as unknown as CheckpointDraft }));
    expect(badEnrich).toMatchObject({ code: "APEX_E_PLUGIN_FAILED", exitCode: 1 });
    const notJson = await rejected(create({ enrich: async (draft) => ({ ...draft, data: { when: new Date() as unknown as JsonValue } }) }));
    expect(notJson.code).toBe("APEX_E_PLUGIN_FAILED");
    expect(notJson.message).toContain("not JSON");
    expect(await rejected(create({ sessionId: "nope" }))).toMatchObject({ code: "APEX_E_NO_SESSION", exitCode: 3 });
    expect(await rejected(create({ trigger: "bad trigger!" }))).toMatchObject({ code: "APEX_E_BAD_INPUT", exitCode: 2 });
    expect(await rejected(create({ sessionId: "current" }))).toMatchObject({ code: "APEX_E_BAD_INPUT" });
    // Nothing was written by the refused calls.
    expect(listCheckpoints(store, "s1").total).toBe(0);
    expect((await create({ trigger: "deploy-plugin:onDeploy" })).manifest.trigger).toBe("deploy-plugin:onDeploy");
  });

  it("numbers past 999 and never reuses a number, even after deleting the latest", async () => {
    await store.transaction(() => Catalog.of(store).setLastSequence("s1", 998));
    for (let i = 0; i < 3; i++) await create();
    expect(listCheckpoints(store, "s1").items.map((item) => item.name)).toEqual(["checkpoint-1001", "checkpoint-1000", "checkpoint-999"]);
    expect(store.has("/sessions/s1/checkpoint-1000")).toBe(true);
    await deleteCheckpoint(store, "checkpoint-1001");
    expect((await create()).manifest.name).toBe("checkpoint-1002");
    expect(resolveCheckpoint(store, "checkpoint-1000").sequence).toBe(1000);
  });

  it("stores unchanged values and subtrees once: a checkpoint of unchanged state writes no objects", async () => {
    await store.batch((batch) => {
      for (let i = 0; i < 200; i++) batch.set(`/docs/d${i % 9}/p${i}`, { body: "same text", i: i % 4 });
    });
    const first = await create();
    expect(first.stats.valuesWritten).toBe(4 + 3); // 4 distinct memory values, 1 task, 2 agent records
    const second = await create();
    expect(second.manifest.memory.root).toBe(first.manifest.memory.root);
    expect(second.manifest.tasks.root).toBe(first.manifest.tasks.root);
    expect(second.stats).toMatchObject({ valuesWritten: 0, treesWritten: 0, memory: { changed: 0, full: false } });
  });

  it("costs O(changed keys): only paths from the revision log are re-read and their nodes rebuilt", async () => {
    await store.batch((batch) => {
      for (let a = 0; a < 15; a++) for (let b = 0; b < 10; b++) for (let c = 0; c < 20; c++) batch.set(`/m/a${a}/b${b}/c${c}`, { a, b, c });
    });
    const full = await create();
    expect(full.stats.memory).toEqual({ changed: 3000, full: true });
    const treesTotal = ObjectStore.of(store).count("tree");
    expect(treesTotal).toBeGreaterThan(160);

    await store.set("/m/a1/b2/c3", "changed");
    await store.set("/m/a7/b7/c7", "changed too");
    await store.delete("/m/a9/b0/c19");
    await store.set("/m/a14/b9/new", { added: true });
    await store.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "first", status: "completed", assignee: "coder" });
    const next = await create();
    expect(next.stats.memory).toEqual({ changed: 4, full: false });
    expect(next.stats.tasks).toEqual({ changed: 1, full: false });
    expect(next.stats.agents).toEqual({ changed: 0, full: false });
    expect(next.stats.valuesWritten).toBe(2 + 1 + 1); // "changed" values, the new one, the task
    // Memory: / (1 entry) is a leaf; /m (15 entries), /m/aN (10) and /m/aN/bN (20) are a split
    // node plus a bucket each. 4 changed paths share / and /m's split node: at most 2 + 4 x 5.
    // Tasks: one leaf.
    expect(next.stats.treesWritten).toBeLessThanOrEqual(2 + 4 * 5 + 1);
    expect(next.stats.treesWritten).toBeGreaterThanOrEqual(2 + 2 * 5 + 1);
    expect(next.manifest.memory.keys).toBe(3000);
    expect(new Map([...readCheckpointMemory(store, next.manifest)].map(({ path, value }) => [path, value]))).toEqual(memoryOf());
  });

  it("rebuilds from scratch when the revision log has a hole, and stays exact", async () => {
    await store.batch((batch) => {
      for (let i = 0; i < 50; i++) batch.set(`/x/k${i}`, i);
    });
    await create();
    const revision = await store.set("/x/k1", "one");
    await store.set("/x/k2", "two");
    await backend.removeLogRecord(store, revision);
    const next = await create();
    expect(next.stats.memory.full).toBe(true);
    expect(getCheckpointValue(store, next.manifest, "/x/k1")).toBe("one");
    expect(verifyCheckpoint(store, next.manifest)).toEqual([]);
  });

  it("rebuilds from scratch when a node of the previous tree on a changed path is damaged", async () => {
    await store.batch((batch) => {
      for (let i = 0; i < 50; i++) batch.set(`/y/d${i % 5}/k${i}`, i);
    });
    const first = await create();
    const objects = ObjectStore.of(store);
    const view = objects.view();
    const damaged = lookupEntry(view, first.manifest.memory.root, ["y", "d3"])!.tree!;
    await store.transaction(() => objects.removeRaw("tree", damaged));
    objects.clearNodeCache(); // as in a process started after the damage
    await store.set("/y/d3/k3", "changed");
    const next = await create();
    expect(next.stats.memory.full).toBe(true);
    expect(verifyCheckpoint(store, next.manifest)).toEqual([]);
    expect(verifyCheckpoint(store, first.manifest).map((problem) => problem.code)).toEqual(["tree-missing"]);
  });
});

describe("restore", () => {
  it("puts memory back exactly at every earlier checkpoint after random sets, deletes and subtree deletes", async () => {
    const next = random(20240611);
    const names = ["a", "b", "ü", "日本", "\u{1F600}", "\u{10400}x", "with space", "z-z"];
    const pick = () => names[Math.floor(next() * names.length)]!;
    const randomPath = () => `/${Array.from({ length: 1 + Math.floor(next() * 4) }, pick).join("/")}`;
    const randomValue = (i: number): JsonValue => {
      switch (i % 5) {
        case 0:
          return `text ${i} \u{1F680} ${"é".repeat(i % 7)}`;
        case 1:
          return { n: i, nested: { list: [i, null, true, "\u{10FFFF}"], empty: {} }, z: -i / 3 };
        case 2:
          return i;
        case 3:
          return [{ b: 1, a: 2 }, []];
        default:
          return null;
      }
    };
    const snapshots: Array<{ manifest: CheckpointManifest; memory: Map<string, JsonValue> }> = [];
    let op = 0;
    for (let round = 0; round < 16; round++) {
      await store.batch((batch) => {
        const count = 5 + Math.floor(next() * 25);
        for (let i = 0; i < count; i++, op++) {
          const roll = next();
          if (roll < 0.6) batch.set(randomPath(), randomValue(op));
          else if (roll < 0.9) {
            const existing = [...memoryOf()].map(([path]) => path);
            if (existing.length) batch.delete(existing[Math.floor(next() * existing.length)]!);
          } else batch.deleteTree(`/${pick()}`);
        }
      });
      snapshots.push({ manifest: (await create({ description: `round ${round}` })).manifest, memory: memoryOf() });
    }
    expect(new Set(snapshots.map((snapshot) => snapshot.manifest.memory.root)).size).toBeGreaterThan(10);
    const order = snapshots.map((_, index) => index).sort(() => next() - 0.5);
    for (const index of order) {
      const { manifest, memory } = snapshots[index]!;
      const revisionBefore = store.revision();
      const result = await restoreMemory(store, manifest.id);
      expect(memoryOf()).toEqual(memory);
      expect(result.set.length + result.deleted.length).toBe(store.revision() - revisionBefore);
      for (const change of store.changesSince(revisionBefore)) expect(change.actor).toBe("system:restore");
      // Restoring again changes nothing.
      expect(await restoreMemory(store, manifest.id)).toMatchObject({ set: [], deleted: [] });
    }
  });

  it("restores tasks and agent states too, into the session or into a branch", async () => {
    const first = (await create()).manifest;
    await store.batch((batch) => {
      batch.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "first", status: "completed", assignee: "coder" });
      batch.set("/sessions/s1/tasks/t-0002", { id: "t-0002", title: "second", status: "pending", assignee: null });
      batch.set("/sessions/s1/agents/coder.context", { plan: ["changed"] });
      batch.delete("/sessions/s1/agents/coder");
    });
    const result = await restoreCheckpoint(store, first.id);
    expect(result.tasks).toEqual({ set: ["/sessions/s1/tasks/t-0001"], deleted: ["/sessions/s1/tasks/t-0002"] });
    expect(result.agents.set.sort()).toEqual(["/sessions/s1/agents/coder", "/sessions/s1/agents/coder.context"]);
    expect(store.get("/sessions/s1/agents/coder.context")).toEqual({ plan: ["write tests"] });
    expect(showCheckpoint(store, first.id).tasks).toEqual({ "t-0001": store.get("/sessions/s1/tasks/t-0001") });

    await store.set("/sessions/s2", { session_id: "s2", status: "active", agents: [] });
    await restoreCheckpoint(store, first.id, { targetSessionId: "s2", memory: false });
    expect(store.get("/sessions/s2/tasks/t-0001")).toEqual(store.get("/sessions/s1/tasks/t-0001"));
    expect(store.get("/sessions/s2/agents/coder.context")).toEqual({ plan: ["write tests"] });
  });

  it("touches only the checkpoint's scope (plain paths and globs)", async () => {
    await store.batch((batch) => {
      batch.set("/notes/a", 1);
      batch.set("/notes/deep/b", 2);
      batch.set("/docs/x.md", "x");
      batch.set("/docs/y.txt", "y");
      batch.set("/other", "o");
    });
    const notes = (await create({ scope: { include: ["/notes", "/docs/*.md"] } })).manifest;
    expect(notes.memory).toMatchObject({ keys: 3, scope: { include: ["/docs/*.md", "/notes"], exclude: ["/projects/config", "/sessions"] } });
    await store.batch((batch) => {
      batch.set("/notes/a", "changed");
      batch.delete("/notes/deep/b");
      batch.set("/notes/new", 3);
      batch.set("/docs/x.md", "changed");
      batch.set("/docs/y.txt", "changed");
      batch.set("/other", "changed");
    });
    const result = await restoreMemory(store, notes.id);
    expect(result.set.sort()).toEqual(["/docs/x.md", "/notes/a", "/notes/deep/b"]);
    expect(result.deleted).toEqual(["/notes/new"]);
    expect(store.get("/docs/y.txt")).toBe("changed");
    expect(store.get("/other")).toBe("changed");
  });

  it("computes a dry run without writing, and refuses a tampered manifest", async () => {
    await store.set("/k", 1);
    const first = (await create()).manifest;
    await store.set("/k", 2);
    const revision = store.revision();
    expect(await restoreMemory(store, first.id, { dryRun: true })).toMatchObject({ set: ["/k"], deleted: [], revision });
    expect(store.get("/k")).toBe(2);
    await store.set("/sessions/s1/checkpoint-001", { ...first, description: "edited" } as unknown as JsonValue);
    const refused = await rejected(restoreMemory(store, first.id));
    expect(refused).toMatchObject({ code: "APEX_E_INTEGRITY", exitCode: 1 });
    // The hint names a command that exists (it named `apex checkpoint recover --force`, which does not).
    expect(refused.hint).toBe("Restore what still verifies with `apex start --force-recovery s1/checkpoint-001`; `apex session validate` lists every problem.");
    expect(store.get("/k")).toBe(2);
  });
});

describe("show, read and diff", () => {
  it("diffs memory, tasks and agents between two checkpoints", async () => {
    await store.batch((batch) => {
      batch.set("/a", 1);
      batch.set("/b/c", 2);
      batch.set("/b/d", 3);
    });
    const first = (await create()).manifest;
    await store.batch((batch) => {
      batch.set("/a", 10);
      batch.delete("/b/c");
      batch.set("/b/e/f", 4);
      batch.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "first", status: "completed", assignee: "coder" });
      batch.set("/sessions/s1/tasks/t-0002", { id: "t-0002", title: "new", status: "pending", assignee: null });
      batch.delete("/sessions/s1/agents/coder.context");
    });
    const second = (await create()).manifest;
    const diff = diffCheckpoints(store, "checkpoint-001", second.id.slice(0, 8));
    expect(diff.from).toMatchObject({ name: "checkpoint-001", id: first.id });
    expect(diff.memory).toEqual({ added: ["/b/e/f"], removed: ["/b/c"], changed: ["/a"] });
    expect(diff.tasks).toEqual({
      added: ["t-0002"],
      removed: [],
      changed: [
        {
          id: "t-0001",
          before: { id: "t-0001", title: "first", status: "active", assignee: "coder" },
          after: { id: "t-0001", title: "first", status: "completed", assignee: "coder" },
        },
      ],
    });
    expect(diff.agents).toEqual({ added: [], removed: ["coder.context"], changed: [] });
    expect(diffCheckpoints(store, second, second).memory).toEqual({ added: [], removed: [], changed: [] });
  });

  it("shows a checkpoint with its tasks and agent states, and reads memory below a prefix", async () => {
    await store.batch((batch) => {
      batch.set("/n", 0);
      batch.set("/n/a", 1);
      batch.set("/n/a/b", 2);
      batch.set("/n-x", 3);
    });
    const { manifest } = await create();
    const details = showCheckpoint(store, "latest");
    expect(details.manifest).toEqual(manifest);
    expect(details.agent_states).toEqual({ coder: { name: "coder", status: "running", pid: 10 }, "coder.context": { plan: ["write tests"] } });
    expect([...readCheckpointMemory(store, "latest", { prefix: "/n" })]).toEqual([
      { path: "/n", value: 0 },
      { path: "/n/a", value: 1 },
      { path: "/n/a/b", value: 2 },
    ]);
    expect(getCheckpointValue(store, "latest", "/n-x")).toBe(3);
    expect(getCheckpointValue(store, "latest", "/missing")).toBeUndefined();
  });
});

describe("resolving references and listing", () => {
  it("finds checkpoints by id, unique prefix, checkpoint-NNN, latest and <session>/…", async () => {
    ids.queue.push(
      "abcd1111-0000-4000-8000-000000000001",
      "abcd2222-0000-4000-8000-000000000002",
      "ef012345-0000-4000-8000-000000000003",
    );
    for (let i = 0; i < 7; i++) await create();
    await store.set("/sessions/s2", { session_id: "s2", agents: [] });
    await createCheckpoint(store, { sessionId: "s2", trigger: "manual" });

    expect(resolveCheckpoint(store, "abcd1111-0000-4000-8000-000000000001")).toEqual({ sessionId: "s1", sequence: 1, id: "abcd1111-0000-4000-8000-000000000001" });
    expect(resolveCheckpoint(store, "ABCD2").sequence).toBe(2);
    expect(resolveCheckpoint(store, "ef01").sequence).toBe(3);
    expect(resolveCheckpoint(store, "checkpoint-007").sequence).toBe(7);
    expect(resolveCheckpoint(store, "checkpoint-7").sequence).toBe(7);
    expect(resolveCheckpoint(store, "latest")).toMatchObject({ sessionId: "s1", sequence: 7 });
    expect(resolveCheckpoint(store, "s2/latest")).toMatchObject({ sessionId: "s2", sequence: 1 });
    expect(resolveCheckpoint(store, "checkpoint-001", { sessionId: "s2" }).sessionId).toBe("s2");
    expect(resolveCheckpoint(store, "s1/checkpoint-002").id).toBe("abcd2222-0000-4000-8000-000000000002");

    const ambiguous = caught(() => resolveCheckpoint(store, "abcd"));
    expect(ambiguous).toMatchObject({ code: "APEX_E_AMBIGUOUS", exitCode: 2 });
    expect(ambiguous.message).toContain("matches 2 checkpoints");
    expect(ambiguous.details?.candidates).toHaveLength(2);
    expect(caught(() => resolveCheckpoint(store, "checkpoint-008"))).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND", exitCode: 3, message: "No checkpoint-008 in session s1 (its latest number is checkpoint-007)." });
    // A deleted one is said to be deleted (it read as one that never existed).
    await deleteCheckpoint(store, "checkpoint-005", { sessionId: "s1" });
    expect(caught(() => resolveCheckpoint(store, "checkpoint-005"))).toMatchObject({
      code: "APEX_E_CHECKPOINT_NOT_FOUND",
      exitCode: 3,
      message: "checkpoint-005 of session s1 was deleted (`apex checkpoint delete`, retention or repair); its number is not reused.",
    });
    expect(caught(() => resolveCheckpoint(store, "0123456"))).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND", exitCode: 3 });
    expect(caught(() => resolveCheckpoint(store, "nonsense!"))).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND" });
    expect(caught(() => resolveCheckpoint(store, "abc"))).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2 });
    expect(caught(() => resolveCheckpoint(store, "s3/latest"))).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND" });
    await store.delete("/sessions/current");
    expect(caught(() => resolveCheckpoint(store, "latest"))).toMatchObject({ code: "APEX_E_NO_SESSION", exitCode: 3 });
  });

  it("lists pages of summaries newest first without decoding manifests, fast at 10,000 checkpoints", async () => {
    const { manifest } = await create();
    // Synthetic catalog entries: the listing reads only summaries.
    await store.transaction(() => {
      const catalog = Catalog.of(store);
      for (let sequence = 2; sequence <= 10_000; sequence++) {
        catalog.putCheckpoint({ ...manifest, id: `00000000-0000-4000-8000-${String(sequence).padStart(12, "0")}`, sequence, name: `checkpoint-${String(sequence).padStart(3, "0")}` });
      }
      catalog.setLastSequence("s1", 10_000);
    });
    // A page costs what its 20 items cost, not what 10,000 do: timed against listing them all,
    // best of three each (a ratio in one run holds on a loaded machine; a fixed bound did not).
    const timed = (limit: number, offset: number): { ms: number; page: ReturnType<typeof listCheckpoints> } => {
      let best = Infinity;
      let page!: ReturnType<typeof listCheckpoints>;
      for (let round = 0; round < 3; round++) {
        const started = performance.now();
        page = listCheckpoints(store, "s1", { limit, offset });
        best = Math.min(best, performance.now() - started);
      }
      return { ms: best, page };
    };
    const { ms: pageMs, page } = timed(20, 40);
    const { ms: allMs, page: all } = timed(10_000, 0);
    expect(page.total).toBe(10_000);
    expect(all.items).toHaveLength(10_000);
    expect(page.items.map((item) => item.sequence)).toEqual(Array.from({ length: 20 }, (_, i) => 10_000 - 40 - i));
    expect(pageMs).toBeLessThan(allMs / 4);
    expect(listCheckpoints(store, "s1", { order: "oldest", limit: 2 }).items.map((item) => item.name)).toEqual(["checkpoint-001", "checkpoint-002"]);
    expect(page.items[0]).toMatchObject({ session_id: "s1", trigger: "manual", memory_keys: manifest.memory.keys, task_count: 1 });
  });
});

describe("pin, delete and sweep", () => {
  it("pins (re-signing the manifest) and refuses to delete a pinned checkpoint unless forced", async () => {
    await create();
    const pinned = await pinCheckpoint(store, "latest", true);
    expect(pinned.pinned).toBe(true);
    expect(verifyCheckpoint(store, getCheckpoint(store, "latest"))).toEqual([]);
    expect(listCheckpoints(store, "s1").items[0]!.pinned).toBe(true);
    expect(await rejected(deleteCheckpoint(store, "latest"))).toMatchObject({ code: "APEX_E_CONFLICT", exitCode: 4 });
    await deleteCheckpoint(store, "latest", { force: true });
    expect(listCheckpoints(store, "s1").total).toBe(0);
    expect(caught(() => resolveCheckpoint(store, pinned.id))).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND" });
    expect(store.has("/sessions/s1/checkpoint-001")).toBe(false);
  });

  it("sweeps exactly the objects no kept checkpoint references", async () => {
    const kept: Array<{ manifest: CheckpointManifest; memory: Map<string, JsonValue> }> = [];
    for (let round = 0; round < 6; round++) {
      await store.batch((batch) => {
        for (let i = 0; i < 20; i++) batch.set(`/s/r${round % 3}/k${i}`, { round, i });
        batch.set(`/only/${round}`, `round ${round}`);
        batch.set("/volatile", { round }); // the values of rounds 0, 2, 4 exist only in deleted checkpoints
      });
      const { manifest } = await create();
      if (round % 2 === 1) kept.push({ manifest, memory: memoryOf() });
    }
    const objects = ObjectStore.of(store);
    const before = { values: objects.count("value"), trees: objects.count("tree") };
    for (const name of ["checkpoint-001", "checkpoint-003", "checkpoint-005"]) await deleteCheckpoint(store, name);

    const dry = await sweepUnreferenced(store, { dryRun: true });
    expect(dry.removed.values).toBe(3);
    expect(dry.removed.trees).toBeGreaterThan(3);
    expect(objects.count("value")).toBe(before.values);
    const swept = await sweepUnreferenced(store);
    expect(swept.removed).toEqual(dry.removed);
    expect(objects.count("value")).toBe(before.values - swept.removed.values);
    expect(objects.count("tree")).toBe(before.trees - swept.removed.trees);
    expect((await sweepUnreferenced(store)).removed).toEqual({ values: 0, trees: 0, bytes: 0 });

    const report = validateStore(store);
    expect(report.problems).toEqual([]);
    expect(report.objects).toMatchObject({ unreferencedValues: 0, unreferencedTrees: 0 });
    for (const { manifest, memory } of kept) {
      await restoreMemory(store, manifest.id);
      expect(memoryOf()).toEqual(memory);
    }
  });

  it("refuses to sweep while a kept checkpoint has a damaged node", async () => {
    await store.set("/d/e", 1);
    const { manifest } = await create();
    const objects = ObjectStore.of(store);
    await store.transaction(() => objects.removeRaw("tree", manifest.memory.root!));
    expect(await rejected(sweepUnreferenced(store))).toMatchObject({ code: "APEX_E_INTEGRITY" });
    const forced = await sweepUnreferenced(store, { allowDamaged: true });
    expect(forced.damaged).toEqual([manifest.memory.root]);
  });
});

describe("concurrent creation", () => {
  beforeAll(requireBuild);

  it("gives 20 processes creating at once 20 checkpoints with sequences 1..20, nothing lost", async () => {
    const script = join(REPO_ROOT, "test/fixtures/checkpoint-create.mjs");
    const children = Array.from({ length: 20 }, () => spawn(process.execPath, [script, JSON.stringify(store.spec), "s1"], { stdio: ["pipe", "pipe", "inherit"] }));
    const outputs = children.map((child) => {
      const lines = createInterface({ input: child.stdout! });
      const seen: string[] = [];
      const ready = new Promise<void>((resolve) => lines.on("line", (line) => (seen.push(line), line === "ready" && resolve())));
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      return { ready, exited, seen };
    });
    await Promise.all(outputs.map((output) => output.ready));
    for (const child of children) child.stdin!.write("go\n");
    expect(await Promise.all(outputs.map((output) => output.exited))).toEqual(Array(20).fill(0));

    const reported = outputs.map((output) => JSON.parse(output.seen.find((line) => line.startsWith("{"))!) as { id: string; sequence: number });
    expect(reported.map((item) => item.sequence).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    const listed = listCheckpoints(store, "s1", { limit: 100 });
    expect(listed.total).toBe(20);
    expect(new Set(listed.items.map((item) => item.id))).toEqual(new Set(reported.map((item) => item.id)));
    // Each parent is the checkpoint with the previous number.
    const byId = new Map(listed.items.map((item) => [item.id, item]));
    for (const item of listed.items) {
      if (item.sequence === 1) expect(item.parent).toBeNull();
      else expect(byId.get(item.parent!)!.sequence).toBe(item.sequence - 1);
    }
    expect(validateStore(store).problems).toEqual([]);
  });
});

describe("validation, repair and recovery", () => {
  beforeAll(requireBuild);

  /**
   * checkpoint-001: /keep/* and /old/x = "v1"; checkpoint-002: /old/x = "v2" (also current).
   * Returns hashes of the two /old/x values and of the /old directory node of checkpoint-001.
   */
  async function twoCheckpoints() {
    await store.batch((batch) => {
      for (let i = 0; i < 5; i++) batch.set(`/keep/k${i}`, { i });
      batch.set("/old/x", "v1");
      batch.set("/old/y", "stays");
    });
    const first = (await create()).manifest;
    const firstMemory = memoryOf();
    await store.set("/old/x", "v2");
    const second = (await create()).manifest;
    const view = ObjectStore.of(store).view();
    return {
      first,
      firstMemory,
      second,
      v1: lookupEntry(view, first.memory.root, ["old", "x"])!.value!,
      v2: lookupEntry(view, second.memory.root, ["old", "x"])!.value!,
      oldDir: lookupEntry(view, first.memory.root, ["old"])!.tree!,
    };
  }

  /** Flips one bit of an object where it is stored: inside its pack, in place. */
  async function flipByte(kind: "value" | "tree", hash: Hash, at = 1): Promise<void> {
    const objects = ObjectStore.of(store);
    const location = objects.locate(kind, hash)!;
    const pack = Buffer.from(objects.packs.get(location.pack)!);
    pack[location.offset + at] = pack[location.offset + at]! ^ 0x20;
    await store.transaction(() => objects.packs.put(location.pack, pack));
  }

  it("names each corrupted value and tree node, in process and out of process", async () => {
    const { v1, first, second } = await twoCheckpoints();
    const third = (await create()).manifest;
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    const oldDirOfSecond = lookupEntry(ObjectStore.of(store).view(), second.memory.root, ["old"])!.tree!;
    await flipByte("value", v1);
    await flipByte("tree", oldDirOfSecond, 5);
    const report = validateStore(store);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      expect.objectContaining({ code: "value-corrupt", hash: v1, path: "/old/x", checkpoint: "s1/checkpoint-001", checkpointId: first.id }),
      expect.objectContaining({ code: "tree-corrupt", hash: oldDirOfSecond, path: "/old", checkpoint: "s1/checkpoint-002", checkpointId: second.id }),
      // The memory tree the next checkpoint would start from shares that node.
      expect.objectContaining({ code: "base-damaged", hash: third.memory.root }),
    ]);
    expect(report.checkpoints).toMatchObject({ total: 3, verified: 0 });
    expect(report.checkpoints.damaged.map((item) => [item.name, item.reasons])).toEqual([
      ["checkpoint-001", ["its memory tree references damaged objects"]],
      ["checkpoint-002", ["its memory tree references damaged objects"]],
      ["checkpoint-003", ["its memory tree references damaged objects"]],
    ]);
    // Each with its session's name (null: s1 has none), which validate's text prints the session by.
    expect(report.checkpoints.damaged.map((item) => item.session_name)).toEqual([null, null, null]);
    await store.set("/sessions/s1", { ...(store.get("/sessions/s1") as Record<string, JsonValue>), name: "experiment" });
    const named = validateStore(store);
    expect(named.checkpoints.damaged.map((item) => `${item.session_name}/${item.name}`)).toEqual(["experiment/checkpoint-001", "experiment/checkpoint-002", "experiment/checkpoint-003"]);
    // The sessions its problems name, with their names: validate's text prints each by it (`experiment/checkpoint-001: …`).
    expect(named.session_names).toEqual({ s1: "experiment" });
    const uuid = "3f2a9c1e-0000-4000-8000-000000000001";
    const text = sessionLabeller(named, { ...named, session_names: { [uuid]: null, [`${uuid}-r1`]: null } });
    // By name, else a uuid's short form; a keyspace path and a longer id (<uuid>-r1, whole as it is no uuid) keep theirs.
    expect(text(`s1/checkpoint-001: the record at /sessions/s1/tasks/t-0001 of session s1.`)).toBe("experiment/checkpoint-001: the record at /sessions/s1/tasks/t-0001 of session experiment.");
    expect(text(`${uuid}/checkpoint-002 (session ${uuid}-r1, /sessions/${uuid}): session ${uuid}.`)).toBe(`3f2a9c1e/checkpoint-002 (session ${uuid}-r1, /sessions/${uuid}): session 3f2a9c1e.`);

    const outside = await validateOutOfProcess(store.spec!, { workerPath: DIST_WORKER });
    expect(outside.problems.map((problem) => [problem.code, problem.hash])).toEqual(report.problems.map((problem) => [problem.code, problem.hash]));
  });

  it("reports a crashing validator as a finding, not a crash of the caller", async () => {
    const crashed = await validateOutOfProcess(store.spec!, { workerPath: join(REPO_ROOT, "test/fixtures/checkpoint-crashing-validator.mjs") });
    expect(crashed.ok).toBe(false);
    expect(crashed.problems).toEqual([expect.objectContaining({ code: "validator-crashed", message: expect.stringContaining("SIGSEGV") })]);
    expect(await rejected(validateOutOfProcess(await backend.spec(join(store.dir, "nowhere")), { workerPath: DIST_WORKER }))).toMatchObject({ code: "APEX_E_NO_STORE" });
  });

  it("reports a validator that did not finish in time as a timeout, not as damage: a large store read slowly was called damaged, with repair as the next step", async () => {
    const error = await rejected(validateOutOfProcess(store.spec!, { workerPath: join(REPO_ROOT, "test/fixtures/checkpoint-silent-validator.mjs"), timeoutMs: 500 }));
    expect(error).toMatchObject({ code: "APEX_E_TIMEOUT", message: expect.stringContaining("did not finish") });
    expect(String((error as { hint?: string }).hint)).not.toContain("repair");
  });

  it("force-recovers what still verifies from a damaged checkpoint and lists exactly what was lost", async () => {
    const { v1, first, firstMemory } = await twoCheckpoints();
    await flipByte("value", v1);
    await store.set("/keep/k0", "changed later");
    await store.set("/added/later", true);
    expect(await rejected(restoreMemory(store, first.id))).toMatchObject({ code: "APEX_E_INTEGRITY" });

    const report = await forceRecover(store, first.id);
    expect(report.manifestVerified).toBe(true);
    expect(report.memory.lost).toEqual([{ path: "/old/x", what: "value", reason: `value ${v1.slice(0, 12)} is corrupt` }]);
    expect(report.memory.kept).toEqual(["/old/x"]);
    expect(report.memory.set).toEqual(["/keep/k0"]);
    expect(report.memory.deleted).toEqual(["/added/later"]);
    const expected = new Map(firstMemory);
    expected.set("/old/x", "v2"); // lost from the checkpoint: the current value stays
    expect(memoryOf()).toEqual(expected);
    expect(report.tasks.recovered).toEqual({ "t-0001": { id: "t-0001", title: "first", status: "active", assignee: "coder" } });
    expect(report.kept).toEqual({ tasks: [], agents: [] }); // no intoSession: records are only reported
  });

  it("force-recovery with intoSession writes memory, tasks and agent records in one transaction", async () => {
    const { v1, first } = await twoCheckpoints();
    await flipByte("value", v1);
    const tasks = "/sessions/s1/tasks";
    await store.batch((batch) => {
      batch.set("/keep/k0", "changed later");
      batch.set(`${tasks}/t-0001`, { id: "t-0001", title: "first", status: "done", assignee: "coder" });
      batch.set(`${tasks}/t-0009`, { id: "t-0009", title: "added later", status: "pending", assignee: null });
    });
    const before = store.revision();
    const report = await forceRecover(store, first.id, { intoSession: "s1" });
    expect(store.get(`${tasks}/t-0001`)).toEqual({ id: "t-0001", title: "first", status: "active", assignee: "coder" });
    expect(store.get(`${tasks}/t-0009`)).toBeUndefined();
    expect(store.get("/keep/k0")).not.toBe("changed later");
    // One write batch: consecutive revisions, one time, one actor.
    const changes = [...store.changesSince(before)];
    expect(changes.map((change) => change.revision)).toEqual(changes.map((_, index) => before + 1 + index));
    expect(new Set(changes.map((change) => `${change.time} ${change.actor}`)).size).toBe(1);
    expect(changes.map((change) => change.path)).toEqual(expect.arrayContaining(["/keep/k0", `${tasks}/t-0001`, `${tasks}/t-0009`]));
    expect(report.revision).toBe(store.revision());
  });

  it("force-recovery reads a damaged node from the live state when it still has it, and reports unreadable directories", async () => {
    const { first, oldDir } = await twoCheckpoints();
    const objects = ObjectStore.of(store);
    // The root of checkpoint-001 is gone, but the live memory rebuilt with "v1" has the same tree.
    await store.set("/old/x", "v1");
    const rootBytes = objects.getRaw("tree", first.memory.root!)!;
    await store.transaction(() => objects.removeRaw("tree", first.memory.root!));
    const healed = await forceRecover(store, first.id, { dryRun: true });
    expect(healed.memory.lost).toEqual([]);
    expect(healed.memory.recovered).toBe(first.memory.keys);

    await store.set("/old/x", "v2");
    await store.transaction(() => {
      objects.putRaw("tree", first.memory.root!, rootBytes);
      objects.removeRaw("tree", oldDir);
    });
    const partial = await forceRecover(store, first.id, { dryRun: true });
    expect(partial.memory.lost).toEqual([{ path: "/old", what: "directory", reason: `tree node ${oldDir.slice(0, 12)} is missing` }]);
    expect(partial.memory.kept.sort()).toEqual(["/old/x", "/old/y"]);
    expect(partial.memory.recovered).toBe(5);
  });

  it("repairs: heals from the live state, removes only checkpoints that do not verify, fixes records", async () => {
    const { v1, v2, first, second } = await twoCheckpoints();
    const third = (await create()).manifest;
    await flipByte("value", v1); // only checkpoint-001 has it: unrecoverable
    await flipByte("value", v2); // checkpoints 002 and 003 have it, and so does the live memory: healable
    await store.batch((batch) => {
      batch.set("/sessions/s1/tasks/t-0009", { id: "t-0009", title: "orphan", status: "active", assignee: "ghost" });
      batch.set("/sessions/current", { session_id: "gone" });
    });
    await backend.putRawRecord(store, "/notes/broken", NOT_JSON);
    await store.transaction(() => Catalog.of(store).removeId(third.id));

    const before = validateStore(store);
    const codes = before.problems.map((problem) => problem.code).sort();
    expect(codes).toEqual(
      ["base-damaged", "current-session-missing", "index-missing", "record-undecodable", "task-unknown-agent", "value-corrupt", "value-corrupt"].sort(),
    );
    expect(before.problems.find((problem) => problem.code === "record-undecodable")).toMatchObject({ path: "/notes/broken", message: expect.stringMatching(/^The record at \/notes\/broken (is not a JSON value|cannot be decoded)/) });
    expect(before.problems.find((problem) => problem.code === "task-unknown-agent")!.message).toContain("ghost");
    expect(before.checkpoints.damaged.map((item) => item.name)).toEqual(["checkpoint-001", "checkpoint-002", "checkpoint-003"]);

    const dry = await repairStore(store, { dryRun: true });
    expect(dry.after).toBeUndefined();
    expect(validateStore(store).problems).toHaveLength(before.problems.length);
    const repaired = await repairStore(store);
    expect(repaired.actions.map((action) => action.action)).toEqual(dry.actions.map((action) => action.action));
    const byKind = (kind: string) => repaired.actions.filter((action) => action.action === kind).map((action) => action.target);
    expect(byKind("heal-value")).toEqual([v2]);
    expect(byKind("remove-checkpoint")).toEqual(["s1/checkpoint-001"]);
    expect(byKind("remove-object")).toEqual([v1]);
    expect(byKind("rebuild-index")).toEqual(["s1/checkpoint-003"]);
    expect(byKind("remove-record")).toEqual(["/notes/broken"]);
    expect(byKind("clear-current-session")).toEqual(["/sessions/current"]);
    expect(byKind("unassign-task")).toEqual(["/sessions/s1/tasks/t-0009"]);
    expect(repaired.after).toMatchObject({ ok: true, problems: [] });

    expect(listCheckpoints(store, "s1").items.map((item) => item.id)).toEqual([third.id, second.id]);
    expect(resolveCheckpoint(store, third.id).sequence).toBe(3);
    expect(store.get("/sessions/s1/tasks/t-0009")).toMatchObject({ assignee: null, status: "pending" });
    expect(store.has("/sessions/current")).toBe(false);
    await restoreMemory(store, second.id);
    expect(store.get("/old/x")).toBe("v2");
    expect(caught(() => resolveCheckpoint(store, first.id, { sessionId: "s1" }))).toMatchObject({ code: "APEX_E_CHECKPOINT_NOT_FOUND" });
    // The next checkpoint takes the next number, not a freed one.
    expect((await create()).manifest.sequence).toBe(4);
  });

  it("repairs a missing tree node from the live state and a tampered manifest by removing it", async () => {
    const { second, first } = await twoCheckpoints();
    const objects = ObjectStore.of(store);
    await store.transaction(() => objects.removeRaw("tree", second.memory.root!));
    await store.set("/sessions/s1/checkpoint-001", { ...first, description: "edited by hand" } as unknown as JsonValue);
    const before = validateStore(store);
    expect(before.problems.map((problem) => problem.code).sort()).toEqual(["base-damaged", "index-mismatch", "manifest-hash-mismatch", "tree-missing"]);
    const repaired = await repairStore(store);
    expect(repaired.actions.filter((action) => action.action === "heal-tree").map((action) => action.target)).toEqual([second.memory.root]);
    expect(repaired.actions.filter((action) => action.action === "remove-checkpoint").map((action) => action.target)).toEqual(["s1/checkpoint-001"]);
    expect(repaired.after!.problems).toEqual([]);
    expect(verifyCheckpoint(store, getCheckpoint(store, second.id))).toEqual([]);
  });

  it("an ended session's record with no time it ended is found, and repair dates it by its last checkpoint", async () => {
    const { second } = await twoCheckpoints();
    // A half-written record: archive refused the session (no valid ended_at) and said to run validate, which found nothing.
    await store.batch((batch) => {
      batch.delete("/sessions/s1");
      batch.delete("/sessions/current");
      batch.set("/sessions/history/s1", { session_id: "s1", status: "stopped", agents: [] });
      batch.set("/sessions/history/s2", { session_id: "s2", status: "stopped", agents: [], created_at: "2026-01-01T00:00:00.000Z" });
      batch.set("/sessions/history/s3", { session_id: "s3", status: "stopped", agents: [], updated_at: "2026-01-02T00:00:00.000Z" });
    });
    const before = validateStore(store);
    expect(before.problems.map((problem) => [problem.code, problem.path])).toEqual([
      ["ended-session-undated", "/sessions/history/s1"],
      ["ended-session-undated", "/sessions/history/s2"],
    ]);
    expect(validateStore(store, { sessionId: "s2" }).problems.map((problem) => problem.path)).toEqual(["/sessions/history/s2"]);
    const dry = await repairStore(store, { dryRun: true });
    expect(store.get("/sessions/history/s1")).not.toHaveProperty("ended_at");
    const repaired = await repairStore(store);
    expect(repaired.actions).toEqual(dry.actions);
    expect(repaired.actions.map((action) => [action.action, action.target])).toEqual([
      ["date-ended-session", "/sessions/history/s1"],
      ["date-ended-session", "/sessions/history/s2"],
    ]);
    expect(repaired.after).toMatchObject({ ok: true, problems: [] });
    expect(store.get("/sessions/history/s1")).toMatchObject({ status: "stopped", ended_at: second.created_at });
    expect(store.get("/sessions/history/s2")).toMatchObject({ ended_at: "2026-01-01T00:00:00.000Z" });
  });

  it("reconstructs a session from its latest verifying checkpoint and the live records that survive", async () => {
    await store.batch((batch) => {
      batch.set("/sessions/s1/tasks/t-0002", { id: "t-0002", title: "second", status: "pending", assignee: null });
      batch.set("/memory/a", 1);
      batch.set("/memory/b", 2);
    });
    const good = (await create()).manifest;
    await store.set("/memory/c", 3);
    await store.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "first", status: "completed", assignee: "coder" });
    const bad = (await create()).manifest;
    expect(bad.tasks.root).not.toBe(good.tasks.root);
    const objects = ObjectStore.of(store);
    await store.transaction(() => objects.removeRaw("tree", bad.tasks.root!));
    await backend.putRawRecord(store, "/sessions/s1/tasks/t-0002", NOT_JSON); // undecodable: the checkpoint has it
    await backend.putRawRecord(store, "/memory/b", NOT_JSON); // undecodable: the checkpoint has it
    await backend.putRawRecord(store, "/memory/c", NOT_JSON); // undecodable: only the damaged checkpoint has it
    await store.set("/sessions/s1/tasks/t-0003", { id: "t-0003", title: "live only", status: "pending", assignee: null });

    const current = store.get("/sessions/current");
    const report = await reconstructSession(store, "s1", { now: () => new Date("2030-01-01T00:00:00Z") });
    expect(report.sessionId).toBe("s1-r1");
    expect(report.from.checkpoint).toMatchObject({ id: good.id, name: "checkpoint-001" });
    expect(report.skippedCheckpoints).toEqual(["checkpoint-002"]);
    expect(report.tasks).toEqual([
      { id: "t-0001", source: "live" },
      { id: "t-0002", source: "checkpoint" },
      { id: "t-0003", source: "live" },
    ]);
    expect(report.memory).toEqual({ recovered: ["/memory/b"], lost: ["/memory/c"] });
    expect(report.missing).toEqual([
      "Checkpoints that do not verify were skipped: checkpoint-002.",
      "Memory /memory/c: the value cannot be decoded and no verifying checkpoint has it.",
    ]);
    // Kept with the ended sessions, not current: it stands in nobody's way until it is continued.
    expect(store.has("/sessions/s1-r1")).toBe(false);
    expect(store.get("/sessions/history/s1-r1")).toMatchObject({
      session_id: "s1-r1",
      status: "stopped",
      ended_at: "2030-01-01T00:00:00.000Z",
      restored_from: good.id,
      agents: ["coder", "adversary"],
      supervisor: null,
      history: [{ event: "reconstructed", from: "s1", checkpoint: good.id }],
    });
    expect(store.get("/sessions/current")).toEqual(current);
    expect(store.get("/sessions/s1-r1/tasks/t-0002")).toEqual({ id: "t-0002", title: "second", status: "pending", assignee: null });
    expect(store.get("/memory/b")).toBe(2);
    expect(store.has("/memory/c")).toBe(false);
    expect(report.checkpoint).toMatchObject({ session_id: "s1-r1", sequence: 1, trigger: "reconstruct" });
    expect(verifyCheckpoint(store, report.checkpoint)).toEqual([]);
    expect(validateStore(store, { sessionId: "s1-r1" }).problems).toEqual([]);
  });
});

describe("apex session repair through the CLI", () => {
  it("repairs the project's own store on its backend (PostgreSQL repaired an empty LMDB file it made in .apex/ instead)", async () => {
    const { dir, cleanup } = tempDir("apex-repair-cli-");
    try {
      writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n");
      const env = await backend.env();
      const project = await openStore(await backend.projectSpec(dir), { actor: "user:test" });
      try {
        await project.batch((batch) => {
          batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
          batch.set("/sessions/current", { session_id: "s1" });
          batch.set("/r/one", "hello");
        });
        await createCheckpoint(project, { sessionId: "s1", trigger: "manual" });
        await backend.putRawRecord(project, "/r/one", NOT_JSON);
      } finally {
        await project.close();
      }
      const cli = (...args: string[]) => runApex(args, { cwd: dir, env });
      expect(cli("session", "validate").status).toBe(1);
      expect(cli("session", "repair", "nosuch").status).toBe(3);
      const repaired = cli("session", "repair", "--json");
      expect(repaired.status, repaired.stderr).toBe(0);
      const report = JSON.parse(repaired.stdout);
      expect(report.actions).toEqual([expect.objectContaining({ action: "restore-record", target: "/r/one" })]);
      expect(report.after).toMatchObject({ ok: true, problems: [] });
      expect(cli("session", "validate").status).toBe(0);
      expect(cli("memory", "show", "/r/one").stdout.trim()).toBe('"hello"');
      // Only LMDB has a file in .apex/; on a server the directory keeps logs and sockets alone.
      expect(existsSync(join(dir, ".apex", "store.mdb"))).toBe(backend.name === "lmdb");
    } finally {
      cleanup();
    }
  });
});

describe("session service (core/session/checkpoints.ts contract)", () => {
  it("creates with hooks, restores the latest and resolves references", async () => {
    const fired: unknown[] = [];
    const service = createCheckpointService(store, {
      enrich: async (draft) => ({ ...draft, data: { ...draft.data, git_state: { head: "h" } } }),
      afterCheckpoint: async (info) => void fired.push(info),
    });
    expect(await service.restore({ sessionId: "s1", checkpoint: undefined })).toBeUndefined();
    await store.set("/x", 1);
    const info = await service.create({ sessionId: "s1", trigger: "interval", description: "tick" });
    expect(fired).toEqual([info]);
    expect(getCheckpoint(store, info!.id).git_state).toEqual({ head: "h" });
    await store.set("/x", 2);
    const restored = await service.restore({ sessionId: "s1", checkpoint: undefined });
    expect(restored).toMatchObject({ checkpoint: info!.id, details: { name: "checkpoint-001", memory: { set: 1, deleted: 0 } } });
    expect(store.get("/x")).toBe(1);
    expect(await service.resolve!(info!.id.slice(0, 6))).toEqual({ sessionId: "s1", checkpoint: info!.id });
    expect(await service.resolve!("ffffffff")).toBeUndefined();
  });

  it("warns of a failing afterCheckpoint naming the session as session list does: a branch by its name, another by its short id", async () => {
    const warnings: string[] = [];
    const service = new SessionCheckpoints(store, {
      afterCheckpoint: async () => {
        throw new Error("tap failed");
      },
      warn: (message) => void warnings.push(message),
    });
    const branch = "3f2a9c1e-0b7d-4c55-9e61-2d8f3a4b5c6d";
    const other = "7d0b2e4f-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
    await store.set(`/sessions/history/${branch}`, { session_id: branch, name: "experiment" });
    await store.set(`/sessions/history/${other}`, { session_id: other });
    await store.set("/x", 1);
    expect(await service.create({ sessionId: branch, trigger: "manual", description: "" })).toMatchObject({ sessionId: branch, sequence: 1 });
    expect(await service.create({ sessionId: other, trigger: "manual", description: "" })).toMatchObject({ sessionId: other, sequence: 1 });
    expect(warnings).toEqual(["afterCheckpoint after experiment/checkpoint-001: tap failed", "afterCheckpoint after 7d0b2e4f/checkpoint-001: tap failed"]);
  });

  it("refuses a checkpoint an afterCheckpoint tap requests, at every write (its marker is switched off between writes), and queues one requested meanwhile from elsewhere", async () => {
    const refused: string[] = [];
    let tapStarted: () => void = () => undefined;
    const service: SessionCheckpoints = new SessionCheckpoints(store, {
      afterCheckpoint: async () => {
        tapStarted();
        await new Promise((resolve) => setTimeout(resolve, 20));
        await service.create({ sessionId: "s1", trigger: "manual" }).catch((error: ApexError) => void refused.push(error.code));
      },
    });
    await store.set("/x", 1);
    expect(await service.create({ sessionId: "s1", trigger: "manual" })).toMatchObject({ sequence: 1 });
    expect(refused).toEqual(["APEX_E_CONFLICT"]);
    // The second write, after the first one's marker was switched off, is marked again; one asked for from outside while it runs waits its turn.
    const tapRuns = new Promise<void>((resolve) => (tapStarted = resolve));
    const second = service.create({ sessionId: "s1", trigger: "manual" });
    await tapRuns;
    tapStarted = () => undefined;
    const third = service.create({ sessionId: "s1", trigger: "manual" });
    expect([(await second)?.sequence, (await third)?.sequence]).toEqual([2, 3]);
    expect(refused).toEqual(["APEX_E_CONFLICT", "APEX_E_CONFLICT", "APEX_E_CONFLICT"]);
  });
});
});
