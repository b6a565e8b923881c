// LangGraph threads in a branch session (`apex session branch`), on a real store with the built
// CLI: the branch resumes each thread from where it was at the branch point, with the pending
// writes made before it and none made after; what the parent does next (steps, deleteThread,
// retention) changes nothing in the branch; the branch's first checkpoint deleted takes the
// steps it held along. A delta channel's history before the branch point comes along with the step.
import { AIMessage, HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { MemorySaver, uuid6, type BaseCheckpointSaver, type Checkpoint } from "@langchain/langgraph-checkpoint";
import { END, MessagesDeltaValue, START, StateGraph, StateSchema } from "@langchain/langgraph";
import { afterEach, describe, expect, it } from "vitest";
import { ApexSaver } from "../integrations/langgraph/index.js";
import type { Store } from "../core/store/store.js";
import { createCheckpoint, deleteCheckpoint, listCheckpoints } from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { runApex } from "./helpers/cli.js";
import { langGraphProject, openProjectStore } from "./helpers/langgraph.js";
import { forEachBackend } from "./support/backends.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function checkpointOf(values: Record<string, unknown>, versions: Record<string, number>): Checkpoint {
  return { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: values, channel_versions: versions, versions_seen: { node: { x: 1 } } };
}

async function withStore<T>(dir: string, fn: (store: Store) => T | Promise<T>): Promise<T> {
  const store = await openProjectStore(dir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

function saverOf(dir: string, session?: string): ApexSaver {
  const saver = new ApexSaver(session === undefined ? { project: dir } : { project: dir, session });
  cleanups.push(() => saver.close());
  return saver;
}

interface BranchJson {
  session_id: string;
  langgraph?: { carried: string[]; missing: string[] };
}

describe("LangGraph threads in a branch session", () => {
  forEachBackend((backend) => {
    it("resume from where they were at the branch point, with the writes made before it; the parent's later steps, writes and deleteThread stay out", async () => {
      const storeUrl = backend ? (await backend.env()).APEX_STORE_URL : undefined;
      const project = await langGraphProject("apex-langgraph-branch-", "plugins:\n  checkpoint: {}\n", { storeUrl });
      cleanups.push(project.cleanup);
      const { dir, sessionId } = project;
      const parent = saverOf(dir);
      const thread = { configurable: { thread_id: "t1", checkpoint_ns: "" } } as Record<string, any>;
      const sub = { configurable: { thread_id: "t1", checkpoint_ns: "inner:1" } } as Record<string, any>;
      const c0 = await parent.put(thread, checkpointOf({ steps: ["input"] }, { steps: 1 }), { source: "input", step: -1, parents: {} }, { steps: 1 });
      const c1 = await parent.put(c0, checkpointOf({ steps: ["input", "prepare"], big: "B".repeat(1000) }, { steps: 2, big: 1 }), { source: "loop", step: 0, parents: {} }, { steps: 2, big: 1 });
      await parent.put(sub, checkpointOf({ inner: 1 }, { inner: 1 }), { source: "loop", step: 0, parents: {} }, { inner: 1 });
      // Written after c1's APEX checkpoint was taken: the branch at c1 does not have it; the branch at the manual checkpoint after it does.
      await parent.putWrites(c1, [["__interrupt__", { question: "colour?" }]], "task-ask");
      await parent.close();
      const manual = await withStore(dir, async (store) => (await createCheckpoint(store, { sessionId, trigger: "manual" })).manifest.name);
      const parent2 = saverOf(dir);
      // After the manual checkpoint: the human's answer, and the parent's next step. Neither is the branches'.
      await parent2.putWrites(c1, [["__resume__", "blue"]], "task-ask");
      await parent2.put(c1, checkpointOf({ steps: ["input", "prepare", "ask:blue"], big: "B".repeat(1000) }, { steps: 3, big: 1 }), { source: "loop", step: 1, parents: {} }, { steps: 3 });
      await parent2.close();
      const stepName = await withStore(dir, (store) => listCheckpoints(store, sessionId, { limit: 100 }).items.find((item) => item.description === "langgraph t1 step 0 (loop)")!.name);

      const atStep = runApex(["session", "branch", stepName, "at-step", "--json"], { cwd: dir });
      expect(atStep.status, atStep.stderr).toBe(0);
      const atStepReport = JSON.parse(atStep.stdout) as BranchJson;
      expect(atStepReport.langgraph).toEqual({ carried: ["t1"], missing: [] });
      const atManual = runApex(["session", "branch", manual, "at-manual"], { cwd: dir });
      expect(atManual.status, atManual.stderr).toBe(0);
      expect(atManual.stdout).toMatch(/LangGraph threads resumed from the branch point: t1, t1\/inner:1|LangGraph threads resumed from the branch point: t1\/inner:1, t1/);

      // The branch at the step: the step, its channels, no pending write (the interrupt came after).
      const first = saverOf(dir, "at-step");
      const resumed = await first.getTuple(thread);
      expect(resumed!.checkpoint.id).toBe(c1.configurable!.checkpoint_id);
      expect(resumed!.checkpoint.channel_values).toEqual({ steps: ["input", "prepare"], big: "B".repeat(1000) });
      expect(resumed!.metadata).toEqual({ source: "loop", step: 0, parents: {} });
      // Its parent is the parent session's history, read there (the branch's starts at the branch point).
      expect(resumed!.parentConfig?.configurable?.checkpoint_id).toBe(c0.configurable!.checkpoint_id);
      expect(await first.getTuple(c0)).toBeUndefined();
      expect(resumed!.pendingWrites).toEqual([]);
      // Its namespace "inner:1" was put after the step: not at the branch point.
      expect(await first.getTuple(sub)).toBeUndefined();

      // The branch at the manual checkpoint: the interrupt, not the answer; both namespaces; one step each in its list.
      const second = saverOf(dir, "at-manual");
      const waiting = await second.getTuple(thread);
      expect(waiting!.checkpoint.id).toBe(c1.configurable!.checkpoint_id);
      expect(waiting!.pendingWrites).toEqual([["task-ask", "__interrupt__", { question: "colour?" }]]);
      expect((await second.getTuple(sub))!.checkpoint.channel_values).toEqual({ inner: 1 });
      const listed = [];
      for await (const tuple of second.list(thread)) listed.push(tuple.checkpoint.id);
      expect(listed).toEqual([c1.configurable!.checkpoint_id]);
      // Read by its id too (a graph's getState at a given checkpoint).
      expect((await second.getTuple(c1))!.checkpoint.channel_values.steps).toEqual(["input", "prepare"]);

      // The parent's thread deleted: the branches' stay.
      const parent3 = saverOf(dir);
      await parent3.deleteThread("t1");
      await parent3.close();
      expect((await saverOf(dir, "at-manual").getTuple(thread))!.checkpoint.id).toBe(c1.configurable!.checkpoint_id);
      // A branch made now at that checkpoint cannot resume the thread, and says why (it named retention and checkpoint delete only).
      const late = runApex(["session", "branch", manual, "after-delete", "--json"], { cwd: dir });
      expect(late.status, late.stderr).toBe(0);
      expect((JSON.parse(late.stdout) as BranchJson).langgraph!.missing.sort()).toEqual(["t1", "t1/inner:1"]);
      expect(late.stderr).toMatch(/were deleted since \(retention, checkpoint delete, deleteThread\)/);
      expect(await withStore(dir, (store) => validateStore(store))).toMatchObject({ ok: true, problems: [] });

      // A branch's first checkpoint deleted takes the steps it held (and their writes) along: nothing is left naming it.
      const branchId = atStepReport.session_id;
      await withStore(dir, (store) => deleteCheckpoint(store, `${branchId}/latest`));
      expect(await saverOf(dir, "at-step").getTuple(thread)).toBeUndefined();
      await withStore(dir, (store) => {
        expect([...store.keysBelow(`/sessions/${branchId}/langgraph`)]).toEqual([]);
        expect([...store.keysBelow(`/sessions/${branchId}/langgraph-heads`)]).toEqual([]);
        expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
      });
    });
  });

  forEachBackend((backend) => {
    it("a delta channel (MessagesDeltaValue) is read in the branch with the steps before the branch point, which are the parent's: the branch carries their writes (it read the messages empty)", async () => {
      const storeUrl = backend ? (await backend.env()).APEX_STORE_URL : undefined;
      const project = await langGraphProject("apex-langgraph-branch-", "plugins:\n  checkpoint: {}\n", { storeUrl });
      cleanups.push(project.cleanup);
      const { dir, sessionId } = project;
      const State = new StateSchema({ messages: MessagesDeltaValue });
      const graph = (checkpointer: BaseCheckpointSaver) =>
        new StateGraph(State)
          .addNode("reply", (state) => ({ messages: [new AIMessage({ id: `ai-${String(state.messages.at(-1)!.id)}`, content: `${state.messages.length} seen` })] }))
          .addEdge(START, "reply")
          .addEdge("reply", END)
          .compile({ checkpointer });
      const turn = (text: string) => ({ messages: [new HumanMessage({ id: text, content: text })] });
      const shown = (messages: BaseMessage[]) => messages.map((message) => [message.getType(), message.id, message.content]);
      const config = { configurable: { thread_id: "chat" } };
      const parent = saverOf(dir);
      const memory = new MemorySaver();
      for (const text of ["one", "two", "three"]) {
        await graph(parent).invoke(turn(text), config);
        await graph(memory).invoke(turn(text), config);
      }
      await parent.close();
      const stepName = await withStore(dir, (store) => listCheckpoints(store, sessionId, { limit: 100 }).items.find((item) => item.trigger === "langgraph")!.name);
      const branched = runApex(["session", "branch", stepName, "chat-branch", "--json"], { cwd: dir });
      expect(branched.status, branched.stderr).toBe(0);
      const expected = shown((await graph(memory).getState(config)).values.messages);
      expect(expected).toHaveLength(6);
      expect(shown((await graph(saverOf(dir, "chat-branch")).getState(config)).values.messages)).toEqual(expected);
      // The parent's thread deleted: the branch has what it needs of it.
      const parent2 = saverOf(dir);
      await parent2.deleteThread("chat");
      await parent2.close();
      expect(shown((await graph(saverOf(dir, "chat-branch")).getState(config)).values.messages)).toEqual(expected);
      expect(await withStore(dir, (store) => validateStore(store))).toMatchObject({ ok: true, problems: [] });
    });
  });

  it("a step retention removed while a later checkpoint holds it stays with that checkpoint: a branch made there resumes it; a thread deleted since is named, its values in the branch's memory, and starts afresh", async () => {
    const project = await langGraphProject("apex-langgraph-branch-", "plugins:\n  checkpoint: {}\n  retention:\n    keep_last: 2\n");
    cleanups.push(project.cleanup);
    const { dir, sessionId } = project;
    const thread = { configurable: { thread_id: "kept", checkpoint_ns: "" } } as Record<string, any>;
    const first = saverOf(dir);
    let at = await first.put(thread, checkpointOf({ n: 0 }, { n: 1 }), { source: "input", step: -1, parents: {} }, { n: 1 });
    const held = at.configurable!.checkpoint_id as string;
    await first.close();
    const manual = await withStore(dir, async (store) => (await createCheckpoint(store, { sessionId, trigger: "manual" })).manifest.name);
    const next = saverOf(dir);
    for (let n = 1; n <= 4; n += 1) at = await next.put(at, checkpointOf({ n }, { n: n + 1 }), { source: "loop", step: n, parents: {} }, { n: n + 1 });
    await next.close();
    await withStore(dir, (store) => {
      // Retention kept the last 2 steps: the step the manual checkpoint holds went (its records moved to that checkpoint).
      expect(listCheckpoints(store, sessionId, { limit: 100 }).items.filter((item) => item.trigger === "langgraph").map((item) => item.description)).toEqual(["langgraph kept step 4 (loop)", "langgraph kept step 3 (loop)"]);
      expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    });
    // It was "starts afresh": retention had taken the step's record with its checkpoint.
    const branched = runApex(["session", "branch", manual, "redo", "--json"], { cwd: dir });
    expect(branched.status, branched.stderr).toBe(0);
    expect((JSON.parse(branched.stdout) as BranchJson).langgraph).toEqual({ carried: ["kept"], missing: [] });
    const resumed = await saverOf(dir, "redo").getTuple(thread);
    expect(resumed!.checkpoint.id).toBe(held);
    expect(resumed!.checkpoint.channel_values).toEqual({ n: 0 });

    const parent = saverOf(dir);
    await parent.deleteThread("kept");
    await parent.close();
    const late = runApex(["session", "branch", manual, "late", "--json"], { cwd: dir });
    expect(late.status, late.stderr).toBe(0);
    expect((JSON.parse(late.stdout) as BranchJson).langgraph).toEqual({ carried: [], missing: ["kept"] });
    expect(late.stderr).toMatch(/LangGraph thread kept starts afresh in the branch/);
    expect(await saverOf(dir, "late").getTuple(thread)).toBeUndefined();
  });
});
