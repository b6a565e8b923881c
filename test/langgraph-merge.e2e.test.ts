// LangGraph threads through `apex session merge`, with the built CLI and real supervisors: a
// thread namespace is one LangGraph checkpoint's channels, so a merge takes it whole from one
// side (one conflict when both sides took steps, never some channels of each), and a thread
// taken from the source resumes in the destination from the source's step. Into a running
// session the channels go into its checkpoints, never into live memory (`memory show` has no
// /langgraph), as every LangGraph step keeps them.
import { uuid6, type Checkpoint } from "@langchain/langgraph-checkpoint";
import { afterEach, describe, expect, it } from "vitest";
import { ApexSaver } from "../integrations/langgraph/index.js";
import { Project } from "./fixtures/agents/harness.js";

const savers: ApexSaver[] = [];
afterEach(async () => {
  for (const saver of savers.splice(0)) await saver.close();
});

const IDLE = ["agents:", "  idle:", "    command: node", '    args: ["-e", "setTimeout(() => {}, 600000)"]', "plugins:", "  checkpoint: {}", ""].join("\n");

function saverOf(project: Project, session?: string): ApexSaver {
  const saver = new ApexSaver(session === undefined ? { project: project.dir } : { project: project.dir, session });
  savers.push(saver);
  return saver;
}

/** One step on thread `thread` after its latest (a new thread: its first), channel `v` set to `value`. */
async function step(saver: ApexSaver, thread: string, value: string): Promise<string> {
  const config = { configurable: { thread_id: thread, checkpoint_ns: "" } } as Record<string, any>;
  const head = await saver.getTuple(config);
  const version = head ? Number(head.checkpoint.channel_versions.v) + 1 : 1;
  const checkpoint: Checkpoint = { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { v: value }, channel_versions: { v: version }, versions_seen: {} };
  const written = await saver.put(head ? head.config : config, checkpoint, { source: "loop", step: version, parents: {} }, { v: version });
  return written.configurable!.checkpoint_id as string;
}

interface MergeJson {
  applied: string;
  refused: boolean;
  memory: { changes: Array<{ path: string }>; conflicts: Array<{ path: string; resolution: string; reason?: string }> };
  langgraph?: { taken: string[]; not_taken: string[]; deleted: string[] };
}

describe("LangGraph threads merged between sessions", () => {
  it("a thread both sides stepped is one conflict, taken whole; one only the source stepped is taken; either resumes in the destination from the source's step; one only the source deleted is deleted; nothing becomes live memory", async () => {
    const project = new Project(IDLE);
    const parent = project.start(["--task", "merge threads"]).session_id;
    await step(saverOf(project), "both", "a");
    const branchPoint = await step(saverOf(project), "both", "b");
    // A thread the branch deletes and the parent leaves alone, with a pending write in the parent.
    const dropped = await step(saverOf(project), "dropped", "x");
    const droppedConfig = { configurable: { thread_id: "dropped", checkpoint_ns: "", checkpoint_id: dropped } };
    await saverOf(project).putWrites(droppedConfig, [["v", "pending"]], "task-1");
    await step(saverOf(project), "source-only", "s0");
    const stepName = (JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ name: string; description: string }> }).items.find((item) => item.description === "langgraph source-only step 1 (loop)")!.name;
    expect(project.apex(["session", "branch", stepName, "exp", "--json"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);

    // The branch steps both threads; the parent steps one of them.
    project.start(["--continue", "exp"]);
    await saverOf(project, "exp").deleteThread("dropped");
    const theirsBoth = await step(saverOf(project, "exp"), "both", "from-branch");
    const theirsOnly = await step(saverOf(project, "exp"), "source-only", "s1-branch");
    expect(project.apex(["stop", "--session", "exp"]).status).toBe(0);
    project.start(["--continue", parent]);
    await step(saverOf(project, parent), "both", "from-parent");

    const merge = (args: string[]) => {
      const result = project.apex(["session", "merge", "exp", parent, "--json", ...args]);
      return { status: result.status, report: JSON.parse(result.stdout || result.stderr.slice(result.stderr.indexOf("{"))) as MergeJson & { error?: { details: MergeJson } }, stderr: result.stderr };
    };
    // Under fail: one conflict, at the thread namespace, with why (it was one per channel, each settled alone).
    const refused = merge(["--dry-run"]);
    expect(refused.status).toBe(4);
    expect(refused.report.memory.conflicts).toEqual([expect.objectContaining({ path: "/langgraph/both/~", resolution: "none", reason: expect.stringMatching(/LangGraph thread/) })]);
    // (under fail, a thread in conflict is not taken)
    expect(refused.report.langgraph).toEqual({ taken: ["source-only"], not_taken: [], deleted: ["dropped"] });
    const text = project.apex(["session", "merge", "exp", parent, "--dry-run", "--strategy", "theirs"]).stdout;
    // Each thread namespace is one line, as it is one unit (it was a line per channel path: 10k for a 10k-channel state).
    expect(text).toMatch(/^ {2}thread +\/langgraph\/dropped\/~: 2 paths \(2 deleted\), LangGraph's channels$/m);
    expect(text).not.toContain("/langgraph/dropped/~/");
    expect(text).toMatch(/^ {2}thread +\/langgraph\/both\/~: 2 paths \(2 modified\), LangGraph's channels \(conflict, theirs\)$/m);
    expect(text).toMatch(/^ {2}LangGraph threads that would be deleted as exp\/checkpoint-\d+ deleted them: dropped$/m);
    // A dry run deleted nothing: the thread still resumes in the destination, its write with it.
    expect((await saverOf(project, parent).getTuple(droppedConfig))!.pendingWrites).toEqual([["task-1", "v", "pending"]]);

    const merged = merge(["--strategy", "theirs"]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(merged.report.applied).toBe("live");
    expect(merged.report.langgraph).toEqual({ taken: ["both", "source-only"], not_taken: [], deleted: ["dropped"] });
    // Channels are no live records: the merge put them in the merge checkpoint, as a step does.
    expect(project.apex(["memory", "show", "/langgraph/both/~/v"]).status).toBe(3);
    // The thread the source deleted is gone from the destination as deleteThread takes it: its channels from the merge
    // checkpoint's memory, its steps, head and pending writes; a write for one of its steps is refused.
    const mergeCheckpoint = JSON.parse(project.apex(["checkpoint", "show", "latest", "--session", parent, "--json", "--keys-limit", "1000"]).stdout) as { checkpoint_id: string; memory_keys: string[] };
    expect(mergeCheckpoint.memory_keys.filter((key) => key.startsWith("/langgraph/"))).toEqual(expect.arrayContaining(["/langgraph/both/~", "/langgraph/source-only/~"]));
    expect(mergeCheckpoint.memory_keys.filter((key) => key.startsWith("/langgraph/dropped"))).toEqual([]);
    const gone = saverOf(project, parent);
    expect(await gone.getTuple({ configurable: { thread_id: "dropped", checkpoint_ns: "" } })).toBeUndefined();
    expect(await gone.getTuple(droppedConfig)).toBeUndefined();
    // (its head too: validate, below, warns of a head naming a step not indexed)
    expect(JSON.parse(project.apex(["memory", "query", `/sessions/${parent}/langgraph/dropped`, "--keys", "--json"]).stdout)).toEqual([]);
    await expect(gone.putWrites(droppedConfig, [["v", "late"]], "task-2")).rejects.toThrow(/was deleted/);

    // The destination resumes each thread from the source's step, and goes on from there.
    const after = saverOf(project, parent);
    const both = await after.getTuple({ configurable: { thread_id: "both", checkpoint_ns: "" } });
    expect(both!.checkpoint.id).toBe(theirsBoth);
    expect(both!.checkpoint.channel_values).toEqual({ v: "from-branch" });
    expect(both!.parentConfig?.configurable?.checkpoint_id).toBe(branchPoint);
    const only = await after.getTuple({ configurable: { thread_id: "source-only", checkpoint_ns: "" } });
    expect(only!.checkpoint.id).toBe(theirsOnly);
    const next = await step(after, "both", "next");
    const resumed = await saverOf(project, parent).getTuple({ configurable: { thread_id: "both", checkpoint_ns: "" } });
    expect(resumed!.checkpoint.id).toBe(next);
    expect(resumed!.parentConfig?.configurable?.checkpoint_id).toBe(theirsBoth);
    expect(resumed!.checkpoint.channel_values).toEqual({ v: "next" });
    const validated = project.apex(["session", "validate", "--json"]);
    expect(validated.status, validated.stdout).toBe(0);
    expect((JSON.parse(validated.stdout) as { problems: unknown[] }).problems).toEqual([]);

    // Merged again: nothing of the threads left to take (the destination has the source's steps).
    const again = merge(["--dry-run"]);
    expect(again.report.langgraph).toBeUndefined();
    expect(again.report.memory.conflicts).toEqual([]);
  });

  it("into a stopped destination (a merge checkpoint only): under ours the destination's thread stays, a thread only the source has is taken, one whose step the source deleted is named and kept", async () => {
    const project = new Project(IDLE);
    const parent = project.start(["--task", "merge threads"]).session_id;
    const mine = await step(saverOf(project), "t", "a");
    const name = (JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ name: string }> }).items[0]!.name;
    expect(project.apex(["session", "branch", name, "exp"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    project.start(["--continue", "exp"]);
    await step(saverOf(project, "exp"), "t", "b");
    await step(saverOf(project, "exp"), "gone", "g");
    // The branch's step of thread "gone" deleted while no later checkpoint held it: no LangGraph checkpoint to resume it from.
    const steps = JSON.parse(project.apex(["checkpoint", "list", "--session", "exp", "--json"]).stdout) as { items: Array<{ id: string; description: string }> };
    expect(project.apex(["checkpoint", "delete", steps.items.find((item) => item.description.startsWith("langgraph gone "))!.id]).status).toBe(0);
    // The checkpoints after it hold the thread's channels (the memory carries them), which no step indexes now.
    const fresh = await step(saverOf(project, "exp"), "fresh", "f");
    expect(project.apex(["checkpoint", "create", "-m", "after the delete"]).status).toBe(0);
    expect(project.apex(["stop", "--session", "exp"]).status).toBe(0);
    project.start(["--continue", parent]);
    await step(saverOf(project, parent), "t", "parent");
    expect(project.apex(["stop"]).status).toBe(0);
    // The branch ran last: the parent does not hold the live memory, and the merge is a checkpoint of it.
    project.start(["--continue", "exp"]);
    expect(project.apex(["stop"]).status).toBe(0);

    const text = project.apex(["session", "merge", "exp", parent, "--strategy", "ours", "--dry-run"]).stdout;
    expect(text).toMatch(/LangGraph threads kept as .* has them .*: gone/);
    const result = project.apex(["session", "merge", "exp", parent, "--strategy", "ours", "--json"]);
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as MergeJson;
    expect(report.applied).toBe("checkpoint");
    expect(report.langgraph).toEqual({ taken: ["fresh"], not_taken: ["gone"], deleted: [] });
    expect(report.memory.conflicts.map((conflict) => [conflict.path, conflict.resolution])).toEqual([["/langgraph/t/~", "ours"]]);
    const reader = saverOf(project, parent);
    const kept = await reader.getTuple({ configurable: { thread_id: "t", checkpoint_ns: "" } });
    expect(kept!.checkpoint.channel_values).toEqual({ v: "parent" });
    expect(kept!.parentConfig?.configurable?.checkpoint_id).toBe(mine);
    expect(await reader.getTuple({ configurable: { thread_id: "gone", checkpoint_ns: "" } })).toBeUndefined();
    // Only the source had it: taken, into the merge checkpoint, and it resumes there.
    const taken = await reader.getTuple({ configurable: { thread_id: "fresh", checkpoint_ns: "" } });
    expect(taken!.checkpoint.id).toBe(fresh);
    expect(taken!.checkpoint.channel_values).toEqual({ v: "f" });
    expect(project.apex(["session", "validate"]).status).toBe(0);

    // The merge checkpoint deleted (--force: it is a merge point) takes the steps it carried along, as a
    // branch's first checkpoint does: nothing is left naming it (validate warned of each), the thread
    // taken is gone from the destination, and the destination's own thread is as it was.
    const mergeId = (JSON.parse(result.stdout) as { checkpoint: { id: string } }).checkpoint.id;
    expect(project.apex(["checkpoint", "delete", mergeId, "--force"]).status).toBe(0);
    const validated = project.apex(["session", "validate", "--json"]);
    expect(validated.status, validated.stdout).toBe(0);
    expect((JSON.parse(validated.stdout) as { problems: unknown[] }).problems).toEqual([]);
    const afterDelete = saverOf(project, parent);
    expect(await afterDelete.getTuple({ configurable: { thread_id: "fresh", checkpoint_ns: "" } })).toBeUndefined();
    expect((await afterDelete.getTuple({ configurable: { thread_id: "t", checkpoint_ns: "" } }))!.checkpoint.channel_values).toEqual({ v: "parent" });
  });

  it("a thread the source deleted that the destination stepped is no conflict: no strategy takes the source's side, so the destination keeps it, named, under fail too; one the destination did not step is deleted, into a stopped destination too", async () => {
    const project = new Project(IDLE);
    const parent = project.start(["--task", "merge threads"]).session_id;
    await step(saverOf(project), "d", "d0");
    const untouched = await step(saverOf(project), "e", "e0");
    expect(project.apex(["session", "branch", "latest", "exp"]).status).toBe(0);
    const stepped = await step(saverOf(project), "d", "parent");
    expect(project.apex(["stop"]).status).toBe(0);
    project.start(["--continue", "exp"]);
    await saverOf(project, "exp").deleteThread("d");
    await saverOf(project, "exp").deleteThread("e");
    expect(project.apex(["checkpoint", "create", "-m", "after the delete"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);

    // It refused under fail (a conflict "both sides took steps in"), and under theirs said "conflict, theirs" while keeping the destination's.
    // The one the destination left alone went on there as before: now deleted, as the source deleted it.
    for (const strategy of ["fail", "theirs"]) {
      const dry = project.apex(["session", "merge", "exp", parent, "--dry-run", "--strategy", strategy]);
      expect(dry.status, dry.stdout).toBe(0);
      expect(dry.stdout).not.toMatch(/conflict/);
      expect(dry.stdout).toMatch(/^ {2}LangGraph threads kept as \w+ has them \(exp\/checkpoint-\d+'s step was deleted, or the thread\): d$/m);
      expect(dry.stdout).toMatch(/^ {2}LangGraph threads that would be deleted as exp\/checkpoint-\d+ deleted them: e$/m);
      // The thread namespace is one line, as it is one unit (it was a line per channel path: 10k for a 10k-channel state).
      expect(dry.stdout).toContain("\n  thread   /langgraph/e/~: 2 paths (2 deleted), LangGraph's channels\n");
      expect(dry.stdout).not.toContain("/langgraph/e/~/v");
    }
    expect((await saverOf(project, parent).getTuple({ configurable: { thread_id: "e", checkpoint_ns: "" } }))!.checkpoint.id).toBe(untouched);
    const merged = project.apex(["session", "merge", "exp", parent, "--strategy", "theirs", "--json"]);
    expect(merged.status, merged.stderr).toBe(0);
    const report = JSON.parse(merged.stdout) as MergeJson & { checkpoint: { id: string } };
    expect(report.applied).toBe("checkpoint");
    expect(report.memory.conflicts).toEqual([]);
    expect(report.memory.changes).toEqual([expect.objectContaining({ path: "/langgraph/e/~", kind: "deleted" }), expect.objectContaining({ path: "/langgraph/e/~/v", kind: "deleted" })]);
    expect(report.langgraph).toEqual({ taken: [], not_taken: ["d"], deleted: ["e"] });
    const reader = saverOf(project, parent);
    expect((await reader.getTuple({ configurable: { thread_id: "d", checkpoint_ns: "" } }))!.checkpoint.id).toBe(stepped);
    expect(await reader.getTuple({ configurable: { thread_id: "e", checkpoint_ns: "" } })).toBeUndefined();
    const keys = (JSON.parse(project.apex(["checkpoint", "show", report.checkpoint.id, "--json"]).stdout) as { memory_keys: string[] }).memory_keys;
    expect(keys.filter((key) => key.startsWith("/langgraph/"))).toEqual(["/langgraph/d/~", "/langgraph/d/~/v"]);
    const validated = project.apex(["session", "validate", "--json"]);
    expect(validated.status, validated.stdout).toBe(0);
    expect((JSON.parse(validated.stdout) as { problems: unknown[] }).problems).toEqual([]);
  });
});
