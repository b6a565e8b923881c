// A graph with a delta channel (LangGraph 1.7's DeltaChannel: MessagesDeltaValue keeps each
// step's new messages, not the whole list) in a branch session, with the built CLI and real
// supervisors. Such a channel is rebuilt by walking back through the step's parents, taking
// their pending writes, to a step holding a snapshot: in a branch, the steps before the branch
// point are the source session's. The branch sees, and goes on from, the whole history as a
// MemorySaver run of the same inputs does; whatever the source deletes after (its old steps)
// changes nothing in it, and nor does retention in the branch. Merged back, the thread goes on
// in the source from the branch's step, with that same history.
import { AIMessage, HumanMessage, type BaseMessage } from "@langchain/core/messages";
import { BaseCheckpointSaver, MemorySaver } from "@langchain/langgraph-checkpoint";
import { DeltaValue, END, MessagesDeltaValue, START, StateGraph, StateSchema, messagesDeltaReducer } from "@langchain/langgraph";
import { z } from "zod";
import { afterEach, describe, expect, it } from "vitest";
import { ApexSaver } from "../integrations/langgraph/index.js";
import { Project } from "./fixtures/agents/harness.js";

const savers: ApexSaver[] = [];
afterEach(async () => {
  for (const saver of savers.splice(0)) await saver.close();
});

const CONFIG = [
  "agents:",
  "  idle:",
  "    command: node",
  '    args: ["-e", "setTimeout(() => {}, 600000)"]',
  "plugins:",
  "  checkpoint: {}",
  "  retention:",
  "    keep_last: 2",
  "    auto_cleanup: true",
  "",
].join("\n");

function saverOf(project: Project, session?: string): ApexSaver {
  const saver = new ApexSaver(session === undefined ? { project: project.dir } : { project: project.dir, session });
  savers.push(saver);
  return saver;
}

/** A chat graph: each turn's human message in, one reply out (its text counts the messages the node saw). */
function chat(snapshotFrequency: number | undefined) {
  const messages =
    snapshotFrequency === undefined
      ? MessagesDeltaValue
      : new DeltaValue(z.custom<BaseMessage[]>().default(() => []), { inputSchema: z.custom<BaseMessage[]>(), reducer: messagesDeltaReducer, snapshotFrequency });
  const State = new StateSchema({ messages });
  return (checkpointer: BaseCheckpointSaver) =>
    new StateGraph(State)
      .addNode("reply", (state) => {
        const last = state.messages.at(-1)!;
        return { messages: [new AIMessage({ id: `ai-${String(last.id)}`, content: `re ${String(last.content)}: ${state.messages.length} seen` })] };
      })
      .addEdge(START, "reply")
      .addEdge("reply", END)
      .compile({ checkpointer });
}

const turn = (text: string) => ({ messages: [new HumanMessage({ id: text, content: text })] });
const shown = (messages: BaseMessage[]) => messages.map((message) => ({ type: message.getType(), id: message.id, content: message.content }));
const thread = { configurable: { thread_id: "chat" } };

interface Listed {
  items: Array<{ name: string; trigger: string; description: string | null }>;
}

describe("a delta channel in a branch session", () => {
  for (const snapshotFrequency of [undefined, 3]) {
    it(`is rebuilt with the steps before the branch point, which are the source session's, and goes on from them (${snapshotFrequency === undefined ? "MessagesDeltaValue, no snapshot" : `a snapshot every ${snapshotFrequency} updates`})`, async () => {
      const graph = chat(snapshotFrequency);
      const memory = async (texts: string[]) => {
        const saver = new MemorySaver();
        for (const text of texts) await graph(saver).invoke(turn(text), thread);
        return shown((await graph(saver).getState(thread)).values.messages);
      };
      const project = new Project(CONFIG);
      const source = project.start(["--task", "chat"]).session_id;
      const before = ["s1", "s2", "s3", "s4"];
      for (const text of before) await graph(saverOf(project)).invoke(turn(text), thread);
      const listed = JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as Listed;
      const branchPoint = listed.items.find((item) => item.trigger === "langgraph")!.name;
      const branched = project.apex(["session", "branch", branchPoint, "exp", "--json"]);
      expect(branched.status, branched.stderr).toBe(0);
      // The source goes on after the branch point: none of it is the branch's.
      for (const text of ["s5", "s6"]) await graph(saverOf(project)).invoke(turn(text), thread);
      expect(shown((await graph(saverOf(project)).getState(thread)).values.messages)).toEqual(await memory([...before, "s5", "s6"]));
      expect(project.apex(["stop"]).status).toBe(0);

      // Read in the branch (ended, not continued yet): the history up to the branch point.
      const atBranch = await memory(before);
      expect(atBranch).toHaveLength(2 * before.length);
      expect(shown((await graph(saverOf(project, "exp")).getState(thread)).values.messages)).toEqual(atBranch);

      // The source's steps before the branch point deleted (not the branch point itself, which is
      // refused): the branch has what it needs of them.
      const sourceSteps = (JSON.parse(project.apex(["checkpoint", "list", "--session", source, "--json", "--limit", "1000"]).stdout) as Listed).items.filter((item) => item.trigger === "langgraph" && item.name !== branchPoint);
      expect(sourceSteps.length).toBeGreaterThan(0);
      for (const item of sourceSteps) {
        const deleted = project.apex(["checkpoint", "delete", `${source}/${item.name}`, "--force"]);
        expect(deleted.status, deleted.stderr).toBe(0);
      }

      // Continued, the branch runs on from the whole history, as a MemorySaver run of the same turns does
      // (retention, keep_last 2, ran after each step).
      project.start(["--continue", "exp"]);
      const inBranch = ["b1", "b2", "b3"];
      let last: BaseMessage[] = [];
      for (const text of inBranch) last = (await graph(saverOf(project, "exp")).invoke(turn(text), thread)).messages;
      const expected = await memory([...before, ...inBranch]);
      expect(shown(last)).toEqual(expected);
      // Read again by a new saver (a new process resuming): the same.
      expect(shown((await graph(saverOf(project, "exp")).getState(thread)).values.messages)).toEqual(expected);
      expect(project.apex(["stop"]).status).toBe(0);
      expect(shown((await graph(saverOf(project, "exp")).getState(thread)).values.messages)).toEqual(expected);

      // A branch of the branch, at its latest step: the history of both.
      const latest = (JSON.parse(project.apex(["checkpoint", "list", "--session", "exp", "--json"]).stdout) as Listed).items.find((item) => item.trigger === "langgraph")!.name;
      expect(project.apex(["session", "branch", `exp/${latest}`, "exp2"]).status).toBe(0);
      expect(shown((await graph(saverOf(project, "exp2")).getState(thread)).values.messages)).toEqual(expected);

      // Merged back into the source (both stepped the thread: the branch's side taken), the source goes on from
      // the branch's step with the whole history, its own steps before the branch point included.
      const merged = project.apex(["session", "merge", "exp", source, "--strategy", "theirs", "--json"]);
      expect(merged.status, merged.stderr).toBe(0);
      expect(shown((await graph(saverOf(project, source)).getState(thread)).values.messages)).toEqual(expected);
      project.start(["--continue", source]);
      const next = (await graph(saverOf(project, source)).invoke(turn("s7"), thread)).messages;
      expect(shown(next)).toEqual(await memory([...before, ...inBranch, "s7"]));
      expect(project.apex(["stop"]).status).toBe(0);

      const validated = project.apex(["session", "validate", "--json"]);
      expect(validated.status, validated.stdout).toBe(0);
    });
  }
});
