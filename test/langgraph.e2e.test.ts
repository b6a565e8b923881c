// A real LangGraph graph run as an APEX agent with ApexSaver: human input through an
// interrupt, everything killed with SIGKILL mid-run, `apex start --continue last`, and the
// graph resumes from its last step with the human input it had. A saver outside the agents,
// alive across it all, goes to the session the way a new command would at each call. The
// session archived and brought back, its thread reads as it was.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { uuid6 } from "@langchain/langgraph-checkpoint";
import { afterEach, describe, expect, it } from "vitest";
import type { SessionClient } from "../core/session/client.js";
import { ApexSaver } from "../integrations/langgraph/index.js";
import { Project, REPO_ROOT, events, groupMembers, nodeAgent, waitFor } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const savers: ApexSaver[] = [];
afterEach(async () => {
  for (const saver of savers.splice(0)) await saver.close();
});

describe("a LangGraph graph's steps are its agent's activity", () => {
  it("session_timeout does not stop a session whose agent only steps a thread: it was stopped partway, \"no agent activity\"", async () => {
    project = new Project("");
    const out = join(project.dir, "steps.done");
    // 12 steps 0.4 s apart: 4.8 s, with nothing else said, past a timeout of 2 s.
    const agent = nodeAgent("graph", "langgraph-steps.mjs", { env: { APEX_TEST_OUT: out, APEX_TEST_STEPS: "12", APEX_TEST_PAUSE_MS: "400" }, restart: "never" });
    project.writeConfig(["session:", "  session_timeout: 2", "agents:", agent, "plugins:", "  checkpoint: {}", ""].join("\n"));
    const ready = project.start(["--task", "step for a while"]);
    await waitFor("the graph's last step", () => existsSync(out), 30_000);
    expect(project.status().session).toMatchObject({ session_id: ready.session_id, status: "active" });
    const steps = JSON.parse(project.apex(["checkpoint", "list", "--json", "--limit", "100"]).stdout).items.filter((item: { trigger: string }) => item.trigger === "langgraph");
    expect(steps).toHaveLength(12);
    // Once it stops stepping, the timeout applies as before.
    await waitFor("the session to time out", () => project!.status().session === null, 30_000);
    expect(project.apex(["session", "history"]).stdout).toContain("timed out: no agent activity for 2 s");
  });
});

describe("a LangGraph StateGraph as an APEX agent", () => {
  it("interrupt for human input, kill -9 mid-run, start --continue last: resumes from its last step", async () => {
    project = new Project("");
    const log = join(project.dir, "nodes.log");
    // No auto recovery: the session stays interrupted until `apex start --continue last`.
    project.writeConfig(["session:", "  auto_recovery: false", "agents:", nodeAgent("graph", "langgraph-graph.mjs", { env: { APEX_TEST_OUT: log }, restart: "never" }), "plugins:", "  checkpoint: {}", "  archive: {}", ""].join("\n"));
    const ready = project.start(["--task", "review with a human"]);
    const agentStatus = () => project!.status().agents.find((agent) => agent.name === "graph")?.reported_status;
    await waitFor("the graph to wait for a human", () => agentStatus() === "waiting", 30_000);
    expect(project.apex(["memory", "set", "/human/answer", '"blue"']).status).toBe(0);
    await waitFor("work2 to start", () => existsSync(`${log}.hung`), 30_000);

    // A crash of everything: the supervisor and the agent's process group, with SIGKILL.
    const pgid = ready.agents.find((agent) => agent.name === "graph")!.pgid!;
    process.kill(ready.supervisor_pid, "SIGKILL");
    try {
      process.kill(-pgid, "SIGKILL");
    } catch (error) {
      // Already gone: with its supervisor dead, the agent may have died on its own (a closed output pipe).
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
    await waitFor("the agent to be gone", () => groupMembers(pgid).length === 0, 10_000);
    await waitFor("status interrupted", () => project!.status().session?.status === "interrupted", 10_000);

    // A saver outside the session's agents, long-lived (a server's, say): with no supervisor it
    // writes the store itself; once one runs, through it (never around it); once that one is gone, not to its socket.
    const outside = new ApexSaver({ project: project.dir });
    savers.push(outside);
    const via = async () => (await (outside as unknown as { connected(): Promise<SessionClient> }).connected()).via;
    const step = (n: number) => ({ v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { n }, channel_versions: { n: n + 1 }, versions_seen: {} });
    let side = await outside.put({ configurable: { thread_id: "outside", checkpoint_ns: "" } }, step(0), { source: "input", step: -1, parents: {} }, { n: 1 });
    expect(await via()).toBe("store");

    const continued = project.start(["--continue", "last"]);
    expect(continued).toMatchObject({ session_id: ready.session_id, continued: true });
    side = await outside.put(side, step(1), { source: "loop", step: 0, parents: {} }, { n: 2 });
    expect(await via()).toBe("socket");
    expect((await outside.getTuple({ configurable: { thread_id: "outside" } }))!.checkpoint.channel_values).toEqual({ n: 1 });
    const final = await waitFor(
      "the graph to finish",
      () => (existsSync(`${log}.final`) ? (JSON.parse(readFileSync(`${log}.final`, "utf8")) as { values: { steps: string[]; answer: string }; next: string[] }) : undefined),
      30_000,
    ).catch((error) => {
      throw new Error(`${(error as Error).message}; the agent's log:\n${project!.apex(["logs", "graph", "-n", "60"]).stdout}`);
    });
    expect(final.values).toEqual({ steps: ["prepare", "ask:blue", "work1", "work2", "work3:blue"], answer: "blue" });
    expect(final.next).toEqual([]);
    // Each step ran once, except ask (LangGraph runs an interrupted node again on resume) and
    // work2 (killed mid-run, so run again): the continued agent started from work2, not earlier.
    expect(readFileSync(log, "utf8").trim().split("\n")).toEqual(["prepare", "ask", "ask", "work1", "work2", "work2", "work3"]);

    // Each LangGraph step is an APEX checkpoint, with its metadata, that the checkpoint commands read.
    const page = JSON.parse(project.apex(["checkpoint", "list", "--limit", "100", "--json"]).stdout) as { items: Array<{ id: string; trigger: string; name: string; description: string }> };
    const steps = page.items.filter((item) => item.trigger === "langgraph" && item.description.startsWith("langgraph review "));
    expect(steps.length).toBeGreaterThanOrEqual(6);
    const shown = JSON.parse(project.apex(["checkpoint", "show", steps[0]!.id, "--json"]).stdout);
    expect(shown.manifest.data.langgraph).toMatchObject({ thread_id: "review", checkpoint_ns: "", metadata: { source: "loop" } });
    const diff = JSON.parse(project.apex(["checkpoint", "diff", steps[steps.length - 1]!.id, steps[0]!.id, "--json"]).stdout);
    // From the graph's input to its last step: the steps channel appeared, the thread's record moved on.
    expect(diff.memory.added).toContain("/langgraph/review/~/steps");
    expect(diff.memory.changed).toContain("/langgraph/review/~");
    expect(project.apex(["session", "validate"]).status).toBe(0);

    // The supervisor gone with its session: the saver says there is no session, not that a socket refused it.
    expect(project.apex(["stop"]).status).toBe(0);
    const after = await outside.put(side, step(2), { source: "loop", step: 1, parents: {} }, { n: 3 }).catch((caught: unknown) => caught);
    expect(after).toMatchObject({ code: "APEX_E_NO_SESSION", details: { project_dir: project.dir } });

    // Branched where the graph first waited for its human, and run with another answer: the branch
    // resumes the thread from that step (not from its start), and `checkpoint diff` shows what the answer changed.
    const history = new ApexSaver({ project: project.dir, session: ready.session_id });
    savers.push(history);
    let asking: { step: number; id: string } | undefined;
    for await (const tuple of history.list({ configurable: { thread_id: "review" } })) {
      const steps = tuple.checkpoint.channel_values.steps as string[] | undefined;
      if (steps?.length === 1 && steps[0] === "prepare") asking = { step: tuple.metadata!.step as number, id: tuple.checkpoint.id };
    }
    const askingStep = page.items.find((item) => item.description === `langgraph review step ${asking!.step} (loop)`)!;
    const branched = project.apex(["session", "branch", askingStep.id, "other-answer", "--json"]);
    expect(branched.status, branched.stderr).toBe(0);
    expect(JSON.parse(branched.stdout).langgraph).toEqual({ carried: ["review"], missing: [] });
    const ranBefore = readFileSync(log, "utf8").trim().split("\n").length;
    rmSync(`${log}.final`);
    expect(project.start(["--continue", "other-answer"])).toMatchObject({ continued: true });
    expect(project.apex(["memory", "set", "/human/answer", '"red"', "--session", "other-answer"]).status).toBe(0);
    const other = await waitFor("the branch's graph to finish", () => (existsSync(`${log}.final`) ? (JSON.parse(readFileSync(`${log}.final`, "utf8")) as typeof final) : undefined), 30_000).catch((error) => {
      throw new Error(`${(error as Error).message}; the agent's log:\n${project!.apex(["logs", "graph", "-n", "60", "--session", "other-answer"]).stdout}`);
    });
    expect(other.values).toEqual({ steps: ["prepare", "ask:red", "work1", "work2", "work3:red"], answer: "red" });
    // From ask on: prepare did not run again.
    expect(readFileSync(log, "utf8").trim().split("\n").slice(ranBefore)).toEqual(["ask", "work1", "work2", "work3"]);
    const branchSteps = JSON.parse(project.apex(["checkpoint", "list", "--session", "other-answer", "--limit", "100", "--json"]).stdout) as typeof page;
    const branchLast = branchSteps.items.find((item) => item.trigger === "langgraph" && item.description.startsWith("langgraph review "))!;
    const compared = JSON.parse(project.apex(["checkpoint", "diff", steps[0]!.id, branchLast.id, "--json"]).stdout);
    expect(compared.memory.changed).toEqual(expect.arrayContaining(["/langgraph/review/~/answer", "/langgraph/review/~/steps"]));
    expect(project.apex(["stop", "--session", "other-answer"]).status).toBe(0);
    // (archived first: a session is archived after the sessions branched from it)
    expect(project.apex(["session", "archive", "other-answer", "--older-than", "0s"]).status).toBe(0);

    // Archived and brought back, the ended session's thread reads as it was: its index, head and channels travel in the bundle.
    const archived = project.apex(["session", "archive", ready.session_id, "--older-than", "0s"]);
    expect(archived.status, archived.stderr).toBe(0);
    // A saver naming it meanwhile is told where it went and how to bring it back (as the commands are), not sent to `apex session list`.
    const early = new ApexSaver({ project: project.dir, session: ready.session_id });
    savers.push(early);
    const missing = await early.getTuple({ configurable: { thread_id: "review" } }).catch((caught: unknown) => caught);
    expect(missing).toMatchObject({ code: "APEX_E_NO_SESSION", details: { project_dir: project.dir, archived: { session_id: ready.session_id } } });
    expect((missing as { hint?: string }).hint).toMatch(/was archived to .*: bring it back with `apex session unarchive \S+`/);
    expect(project.apex(["session", "unarchive", ready.session_id]).status).toBe(0);
    const reader = new ApexSaver({ project: project.dir, session: ready.session_id });
    savers.push(reader);
    const back = await reader.getTuple({ configurable: { thread_id: "review" } });
    expect(back!.checkpoint.channel_values).toMatchObject(final.values);
  });

  /**
   * A running session whose supervisor's replies carry at most 8 MiB of JSON, a 32nd of the real
   * 256 MiB, and a saver on it; `big`, a value of a 32nd of 30 MiB, which crosses it alike.
   */
  function smallReplies(): { saver: ApexSaver; big: string } {
    project = new Project("");
    project.writeConfig(["agents:", "  idle:", "    command: node", '    args: ["-e", "setTimeout(() => {}, 600000)"]', "plugins:", "  checkpoint: {}", ""].join("\n"));
    project.start(["--task", "history"], { APEX_RPC_MAX_LINE_BYTES: String(8 * 1024 * 1024) });
    const saver = new ApexSaver({ project: project.dir });
    savers.push(saver);
    return { saver, big: "x".repeat((30 * 1024 * 1024) / 32) };
  }

  it("list through a supervisor of a history larger than one reply reads it in parts: it was APEX_E_TOO_LARGE, while the store read directly gave it", async () => {
    // 9 steps of a 0.94 MiB state: 8.4 MiB of channel values listed (each step stores only its change), 8 steps (a page) within
    // a reply. Under the real limit: 9 steps of 30 MiB.
    const { saver, big } = smallReplies();
    let config: Record<string, any> = { configurable: { thread_id: "history", checkpoint_ns: "" } };
    for (let n = 1; n <= 9; n++) {
      config = await saver.put(config, { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { big, n }, channel_versions: { big: 1, n }, versions_seen: {} }, { source: "loop", step: n, parents: {} }, n === 1 ? { big: 1, n } : { n });
    }
    expect(await (saver as unknown as { connected(): Promise<SessionClient> }).connected().then((client) => client.via)).toBe("socket");
    const steps: number[] = [];
    for await (const tuple of saver.list({ configurable: { thread_id: "history", checkpoint_ns: "" } })) {
      expect(tuple.checkpoint.channel_values.big === big).toBe(true);
      steps.push(tuple.checkpoint.channel_values.n as number);
    }
    expect(steps).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
  });

  it("a list in parts across threads goes on after the last step read: a step written meanwhile moved the offset it went on from, and the list failed as too large", async () => {
    // 10 steps of a 0.94 MiB state, read in pages of 8.
    const { saver, big } = smallReplies();
    const heads: Record<string, Record<string, any>> = {};
    const step = async (thread: string, n: number) => {
      heads[thread] = await saver.put(heads[thread] ?? { configurable: { thread_id: thread, checkpoint_ns: "" } }, { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { big, n }, channel_versions: { big: 1, n }, versions_seen: {} }, { source: "loop", step: n, parents: {} }, n === 1 ? { big: 1, n } : { n });
    };
    for (const thread of ["a", "b"]) for (let n = 1; n <= 5; n++) await step(thread, n);
    const listed: string[] = [];
    for await (const tuple of saver.list({})) {
      listed.push(`${tuple.config.configurable!.thread_id}/${tuple.checkpoint.channel_values.n}`);
      // The first page read: thread a steps again, before where the next page starts.
      if (listed.length === 1) await step("a", 6);
    }
    expect(listed).toEqual(["a/5", "a/4", "a/3", "a/2", "a/1", "b/5", "b/4", "b/3", "b/2", "b/1"]);
  });

  it("a new session's checkpoints hold none of the threads of the sessions before it: a branch at its first checkpoint named each as a step deleted since", async () => {
    project = new Project(["agents:", "  idle:", "    command: sleep", '    args: ["1000"]', "plugins:", "  checkpoint: {}", ""].join("\n"));
    const put = async (threadId: string) => {
      const saver = new ApexSaver({ project: project!.dir });
      savers.push(saver);
      const checkpoint = { v: 4, id: uuid6(-1), ts: new Date().toISOString(), channel_values: { notes: [threadId] }, channel_versions: { notes: 1 }, versions_seen: {} };
      await saver.put({ configurable: { thread_id: threadId, checkpoint_ns: "" } }, checkpoint, { source: "input", step: -1, parents: {} }, { notes: 1 });
    };
    const memoryKeys = (checkpoint: string) => (JSON.parse(project!.apex(["checkpoint", "show", checkpoint, "--json"]).stdout) as { memory_keys: string[] }).memory_keys;

    const first = project.start(["--task", "first"]);
    await put("first-thread");
    expect(project.apex(["stop"]).status).toBe(0);
    const second = project.start(["--task", "second"]);
    expect(second.session_id).not.toBe(first.session_id);
    // The first session's thread is not the second's: getTuple in it finds nothing, and its checkpoints hold none of its channels.
    expect(memoryKeys("checkpoint-001").filter((key) => key.startsWith("/langgraph"))).toEqual([]);
    await put("second-thread");
    expect(project.apex(["checkpoint", "create", "after the step"]).status).toBe(0);
    expect(memoryKeys("latest").filter((key) => key.startsWith("/langgraph/") && key.split("/").length === 4)).toEqual(["/langgraph/second-thread/~"]);
    const branch = project.apex(["session", "branch", "checkpoint-001", "at-start", "--json"]);
    expect(branch.status, branch.stderr).toBe(0);
    expect(branch.stderr).toBe("");
    expect((JSON.parse(branch.stdout) as { langgraph?: unknown }).langgraph).toBeUndefined();
    const later = project.apex(["session", "branch", "latest", "after-step", "--json"]);
    expect(later.status, later.stderr).toBe(0);
    expect((JSON.parse(later.stdout) as { langgraph?: unknown }).langgraph).toEqual({ carried: ["second-thread"], missing: [] });
    // The first session keeps its own thread.
    const reader = new ApexSaver({ project: project.dir, session: first.session_id });
    savers.push(reader);
    expect((await reader.getTuple({ configurable: { thread_id: "first-thread" } }))?.checkpoint.channel_values).toEqual({ notes: ["first-thread"] });
    expect(project.apex(["stop"]).status).toBe(0);
  });

  it("the README's example runs verbatim as an agent: to its interrupt, then `start --continue last` resumes it with the answer", async () => {
    // The README's code block as a user saves it, in a project that has APEX and LangGraph installed
    // (node_modules: this checkout's packages, and apex-sessions itself).
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const example = /```js\n(\/\/ agent\.mjs[^\n]*\n[\s\S]*?)```/.exec(readme)?.[1];
    expect(example, "README's LangGraph example").toBeDefined();
    project = new Project("");
    writeFileSync(join(project.dir, "agent.mjs"), example!);
    const modules = join(project.dir, "node_modules");
    mkdirSync(modules);
    for (const name of readdirSync(join(REPO_ROOT, "node_modules"))) symlinkSync(join(REPO_ROOT, "node_modules", name), join(modules, name));
    symlinkSync(REPO_ROOT, join(modules, "apex-sessions"));
    // The config its first comment gives, as YAML.
    const agent = /`agents: \{ (\w+): \{ command: (\w+), args: \[([\w.]+)\] \} \}`/.exec(example!);
    expect(agent, "the agent's config in the example's comment").not.toBeNull();
    project.writeConfig(["agents:", `  ${agent![1]}:`, `    command: ${agent![2]}`, `    args: [${agent![3]}]`, ""].join("\n"));
    const thread = { configurable: { thread_id: "review-42" } };
    const ended = () => project!.status().session === null || project!.status().session?.status === "completed";
    const reader = () => {
      const saver = new ApexSaver({ project: project!.dir, session: ready.session_id });
      savers.push(saver);
      return saver.getTuple(thread);
    };

    const ready = project.start(["--task", "review"]);
    await waitFor("the graph to stop at its interrupt", ended, 30_000);
    const asked = await reader();
    expect(asked!.checkpoint.channel_values).toMatchObject({ notes: ["draft written"] });
    expect(asked!.pendingWrites?.some(([, channel]) => channel === "__interrupt__")).toBe(true);

    expect(project.start(["--continue", "last"])).toMatchObject({ session_id: ready.session_id, continued: true });
    await waitFor("the graph to finish", ended, 30_000);
    const done = await reader();
    expect(done!.checkpoint.channel_values).toMatchObject({ notes: ["draft written", "reviewer says: ok"] });
    expect(project.apex(["logs", agent![1]!, "-n", "20"]).stdout).not.toMatch(/Error/);
    // The audit trail names the agent that wrote each step (it said user:unknown: the saver sent no actor).
    const steps = events(project, ready.session_id).filter((event) => event.type === "checkpoint" && event.trigger === "langgraph");
    expect(steps.length).toBeGreaterThanOrEqual(4);
    expect(new Set(steps.map((event) => event.actor))).toEqual(new Set([`agent:${agent![1]}`]));
  });
});
