// Unit tests of the session core on a real store: /proc parsing, the socket path rule, the
// RPC protocol, tasks and their invariants, claims racing across processes.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ApexError } from "../dist/core/errors.js";
import { callSupervisor, subscribeSupervisor } from "../dist/core/rpc/call.js";
import { RpcServer, STREAM } from "../dist/core/rpc/server.js";
import { openStore } from "../dist/core/store/open.js";
import type { Store } from "../dist/core/store/store.js";
import { isProcessStopped, parseProcStat, parseProcStatus, readProcStat, processGroups, stopProgress, stopProgressOf } from "../dist/core/session/proc.js";
import { socketPathFor } from "../dist/core/session/runtime.js";
import { pauseVerifyMs } from "../dist/core/session/supervisor.js";
import { SessionService, checkTaskId, recountTasks } from "../dist/core/session/service.js";
import { agentPath, countersPath, sessionPath, taskCountsPath, CURRENT_SESSION_PATH } from "../dist/core/session/records.js";
import { buildStatusReport } from "../dist/core/session/status-report.js";
import { REPO_ROOT, signalIfAlive, waitFor } from "./fixtures/agents/harness.js";
import { buildVforkHold, otherThreadStates, procStatus, signalBit, SIGSTOP_BIT } from "./support/vfork-hold.js";
import { forEachBackend } from "./support/backends.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "apex-session-unit-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const noHooks = { fire: async () => {} };

async function seedSession(store: Store, sid = "s-1", agents = ["a", "b"]): Promise<void> {
  await store.batch((batch) => {
    batch.set(sessionPath(sid), {
      session_id: sid,
      project_id: "p",
      created_at: "2026-01-01T00:00:00.000Z",
      updated_at: "2026-01-01T00:00:00.000Z",
      status: "active",
      initial_task: null,
      agents,
      supervisor: null,
      history: [],
      outcome: null,
      ended_at: null,
      restored_from: null,
    });
    batch.set(CURRENT_SESSION_PATH, { session_id: sid });
    for (const name of agents) {
      batch.set(agentPath(sid, name), {
        name,
        status: "running",
        pid: null,
        pgid: null,
        start_time: null,
        started_at: null,
        restarts: 0,
        reported_status: null,
        task: null,
        last_report_at: null,
        last_exit: null,
        command: "x",
      });
    }
  });
}

describe("/proc", () => {
  it("parses stat lines whose command name holds spaces and parentheses", () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    fields[0] = "T"; // field 3
    const stat = parseProcStat(`4242 (my (odd) name) ${fields.join(" ")}`)!;
    expect(stat).toMatchObject({ pid: 4242, comm: "my (odd) name", state: "T", ppid: 4, pgrp: 5, utime: 14, stime: 15, startTime: 22 });
  });

  it("reads this process and finds it in its group", () => {
    const self = readProcStat(process.pid)!;
    expect(self.pid).toBe(process.pid);
    expect(self.startTime).toBeGreaterThan(0);
    expect(processGroups([self.pgrp]).get(self.pgrp)!.map((member) => member.pid)).toContain(process.pid);
    expect(readProcStat(2 ** 22 + 12345)).toBeUndefined();
  });

  it("tells a process stopped by SIGSTOP from one running and from one gone", async () => {
    const child = spawn("sleep", ["30"], { stdio: "ignore" });
    const pid = child.pid!;
    try {
      await waitFor("sleep running", () => readProcStat(pid)?.comm === "sleep");
      expect(isProcessStopped(pid)).toBe(false);
      process.kill(pid, "SIGSTOP");
      await waitFor("sleep stopped", () => isProcessStopped(pid));
      process.kill(pid, "SIGCONT");
      await waitFor("sleep running again", () => !isProcessStopped(pid));
    } finally {
      signalIfAlive(pid, "SIGKILL");
    }
    await new Promise((resolve) => child.once("exit", resolve));
    expect(isProcessStopped(pid)).toBe(false);
  });
});

// /proc/<pid>/status of a vfork() parent waiting for its child, with SIGSTOP pending (as this kernel writes it).
const STATUS_D_STOP_PENDING = `Name:\tvfork-hold
Umask:\t0022
State:\tD (disk sleep)
Tgid:\t9162
Pid:\t9162
PPid:\t1
SigQ:\t1/127573
SigPnd:\t0000000000000000
ShdPnd:\t0000000000040000
SigBlk:\t0000000000000000
SigIgn:\t0000000000000000
SigCgt:\t0000000000000000
`;

describe("/proc/<pid>/status: a stop on its way", () => {
  it("reads the state and both pending-signal masks", () => {
    expect(parseProcStatus(STATUS_D_STOP_PENDING)).toEqual({ state: "D", sigPnd: 0n, shdPnd: 0x40000n });
    expect(parseProcStatus("Name:\tx\nState:\tS (sleeping)\nSigPnd:\t0000000000000000\n")).toBeUndefined(); // no ShdPnd
    expect(parseProcStatus("State:\tS (sleeping)\nSigPnd:\tzz\nShdPnd:\t0\n")).toBeUndefined();
    // A mask wider than 53 bits stays exact (real-time signals sit in the high bits).
    expect(parseProcStatus("State:\tS (sleeping)\nSigPnd:\t8000000000040000\nShdPnd:\t0\n")!.sigPnd).toBe(0x8000000000040000n);
  });

  it.each([
    ["T (stopped)", "0", "0", "stopped"],
    ["t (tracing stop)", "0", "0", "stopped"],
    ["D (disk sleep)", "0", "40000", "stopping"], // SIGSTOP (19) pending for the process, where kill() puts it
    ["D (disk sleep)", "40000", "0", "stopping"], // … or for the thread
    ["D (disk sleep)", "0", "c0000", "stopping"], // with SIGTSTP too
    ["D (disk sleep)", "0", "0", "running"], // no stop pending: it runs on once the I/O ends
    ["D (disk sleep)", "0", "80000", "running"], // SIGTSTP alone (signal 20) can be caught or ignored
    ["D (disk sleep)", "0", "20000", "running"], // SIGCONT (18)
    ["S (sleeping)", "0", "40000", "running"], // wakes to stop: not stopped until it is
    ["R (running)", "0", "0", "running"],
  ])("state %s, SigPnd %s, ShdPnd %s: %s", (state, sigPnd, shdPnd, progress) => {
    const status = parseProcStatus(`State:\t${state}\nSigPnd:\t${sigPnd.padStart(16, "0")}\nShdPnd:\t${shdPnd.padStart(16, "0")}\n`)!;
    expect(stopProgressOf(status)).toBe(progress);
  });

  /** Runs `body` with a real vfork-hold process (its pid, its vfork child's pid, its exit); both end afterwards, whatever happened. */
  async function withVforkHold(args: string[], body: (hold: { pid: number; child: number; exited: Promise<{ code: number | null; signal: string | null }> }) => Promise<void>): Promise<void> {
    const parent = spawn(buildVforkHold(dir), args, { stdio: "ignore" });
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => parent.on("exit", (code, signal) => resolve({ code, signal })));
    const pid = parent.pid!;
    const pgid = readProcStat(pid)!.pgrp;
    const childPid = () => processGroups([pgid]).get(pgid)!.find((member) => member.ppid === pid)?.pid;
    try {
      await body({ pid, child: await waitFor("the vfork child", childPid), exited });
    } finally {
      const child = childPid();
      // Ended by the test already, it may be reaped between the look and the signal.
      if (child) signalIfAlive(child, "SIGKILL");
      if (parent.exitCode === null && parent.signalCode === null) process.kill(pid, "SIGKILL");
    }
  }

  it("sees a real process in state D with its SIGSTOP pending as stopping, and as running once SIGCONT takes the stop back", async () => {
    await withVforkHold(["600"], async ({ pid, child, exited }) => {
      await waitFor("the parent in state D", () => readProcStat(pid)?.state === "D");
      // In D with no stop pending: a pause must not count it (it would run on when the I/O ends).
      expect(stopProgress(readProcStat(pid)!)).toBe("running");

      process.kill(pid, "SIGSTOP");
      const pending = procStatus(pid)!;
      expect(pending.state).toBe("D");
      expect((pending.shdPnd | pending.sigPnd) & SIGSTOP_BIT).toBe(SIGSTOP_BIT);
      expect(stopProgress(readProcStat(pid)!)).toBe("stopping");

      // SIGCONT takes the pending stop back: still in D, running again as far as a pause goes.
      process.kill(pid, "SIGCONT");
      expect((procStatus(pid)!.shdPnd | procStatus(pid)!.sigPnd) & SIGSTOP_BIT).toBe(0n);
      expect(stopProgress(readProcStat(pid)!)).toBe("running");

      // Stopping again, then ending the wait: the parent stops at once instead of running on to its exit.
      process.kill(pid, "SIGSTOP");
      expect(stopProgress(readProcStat(pid)!)).toBe("stopping");
      process.kill(child, "SIGKILL");
      await waitFor("the parent stopped", () => readProcStat(pid)?.state === "T");
      expect(stopProgress(readProcStat(pid)!)).toBe("stopped");
      process.kill(pid, "SIGCONT");
      expect(await exited).toEqual({ code: 0, signal: null });
    });
  });
  it("sees a process as stopping when another of its threads took the SIGSTOP and stopped while the main thread is in D", async () => {
    await withVforkHold(["600", "--sibling"], async ({ pid, child, exited }) => {
      // The main thread waits in D with a SIGUSR1 of its own pending: a SIGSTOP goes to the other thread.
      await waitFor("the main thread in D with SIGUSR1 pending", () => {
        const status = procStatus(pid);
        return status?.state === "D" && (status.sigPnd & signalBit("SIGUSR1")) !== 0n;
      });
      expect(stopProgress(readProcStat(pid)!)).toBe("running");

      process.kill(pid, "SIGSTOP");
      await waitFor("the other thread stopped", () => otherThreadStates(pid).includes("T"));
      const status = procStatus(pid)!;
      expect(status.state).toBe("D");
      expect((status.shdPnd | status.sigPnd) & SIGSTOP_BIT).toBe(0n); // taken: no SIGSTOP shows as pending
      expect(stopProgress(readProcStat(pid)!)).toBe("stopping");

      process.kill(pid, "SIGCONT");
      await waitFor("the other thread running again", () => !otherThreadStates(pid).includes("T"));
      expect(stopProgress(readProcStat(pid)!)).toBe("running");

      // Stopped again, then the wait ends: the main thread stops too instead of running on to its exit.
      process.kill(pid, "SIGSTOP");
      await waitFor("the other thread stopped again", () => otherThreadStates(pid).includes("T"));
      expect(stopProgress(readProcStat(pid)!)).toBe("stopping");
      process.kill(child, "SIGKILL");
      await waitFor("the main thread stopped", () => readProcStat(pid)?.state === "T");
      process.kill(pid, "SIGCONT");
      expect(await exited).toEqual({ code: 0, signal: null });
    });
  });
});

describe("pause verification window", () => {
  it("is 5 s on an idle machine and grows with the load per core, up to 30 s", () => {
    expect(pauseVerifyMs(0)).toBe(5000);
    expect(pauseVerifyMs(0.9)).toBe(5000);
    expect(pauseVerifyMs(2.5)).toBe(12_500);
    expect(pauseVerifyMs(40)).toBe(30_000);
    expect(pauseVerifyMs()).toBeGreaterThanOrEqual(5000); // from this machine's load
  });
});

describe("socket path", () => {
  it("lives in the store unless the path is too long for a unix socket address", () => {
    expect(socketPathFor("/tmp/project/.apex")).toBe("/tmp/project/.apex/supervisor.sock");
    const deep = `/tmp/${"d".repeat(120)}/.apex`;
    const fallback = socketPathFor(deep);
    expect(fallback.startsWith(tmpdir())).toBe(true);
    expect(Buffer.byteLength(fallback)).toBeLessThanOrEqual(107);
    expect(socketPathFor(deep)).toBe(fallback); // stable for the same store
  });
});

describe("control protocol", () => {
  it("answers requests, keeps error codes and hints, tells 'no value' from null, and streams events", async () => {
    const server = new RpcServer(join(dir, "s.sock"));
    let pushed: ((event: unknown) => boolean) | undefined;
    server
      .register("echo", (params) => params)
      .register("nothing", () => undefined)
      .register("null", () => null)
      .register("fail", () => {
        throw new ApexError("APEX_E_TASK_STATE", "Task t-0001 is already completed.", { hint: "reopen it" });
      })
      .register("watch", (_params, ctx) => {
        pushed = ctx.push;
        ctx.push({ n: 1 });
        return STREAM;
      });
    await server.listen();
    try {
      const { statSync } = await import("node:fs");
      expect(statSync(server.path).mode & 0o777).toBe(0o600);
      expect(await callSupervisor(server.path, "echo", { a: [1, "x"] })).toEqual({ a: [1, "x"] });
      expect(await callSupervisor(server.path, "nothing", {})).toBeUndefined();
      expect(await callSupervisor(server.path, "null", {})).toBeNull();
      const failure = await callSupervisor(server.path, "fail", {}).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ApexError);
      expect(failure).toMatchObject({ code: "APEX_E_TASK_STATE", exitCode: 4, hint: "reopen it" });
      const unknown = await callSupervisor(server.path, "nope", {}).catch((error: unknown) => error);
      expect(unknown).toMatchObject({ code: "APEX_E_RPC" });

      const seen: unknown[] = [];
      const subscription = subscribeSupervisor(server.path, "watch", {}, (event) => seen.push(event));
      for (let i = 0; i < 100 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
      pushed!({ n: 2 });
      for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toEqual([{ n: 1 }, { n: 2 }]);
      subscription.close();
      await subscription.done;

      // A second server on a live socket is refused; a stale socket file is replaced.
      await expect(new RpcServer(server.path).listen()).rejects.toMatchObject({ code: "APEX_E_SESSION_ACTIVE" });
    } finally {
      await server.close();
    }
    writeFileSync(join(dir, "stale.sock"), "");
    const stale = new RpcServer(join(dir, "stale.sock"));
    await stale.listen();
    await stale.close();
    await expect(callSupervisor(join(dir, "s.sock"), "echo", {})).rejects.toMatchObject({ code: "APEX_E_RPC" });
  });
});

describe("task ids", () => {
  it("normalises task ids", () => {
    expect(checkTaskId("t-1")).toBe("t-0001");
    expect(checkTaskId("12")).toBe("t-0012");
    expect(checkTaskId("t-12345")).toBe("t-12345");
    expect(() => checkTaskId("x-1")).toThrow(/is not a task id/);
    expect(() => checkTaskId("t-0")).toThrow(/is not a task id/);
    // Past 2^53 a number is not itself: an error naming another id (t-100000000000000000000) before.
    expect(() => checkTaskId("t-99999999999999999999")).toThrow('"t-99999999999999999999" is not a task id.');
    expect(checkTaskId(`t-${Number.MAX_SAFE_INTEGER}`)).toBe(`t-${Number.MAX_SAFE_INTEGER}`);
  });
});

forEachBackend((backend) => describe("tasks", () => {
  const open = async () => openStore(await backend.spec(join(dir, "store")));


  it("lists milestones by number past 9,999 (their keys are 4 digits wide, so 10000 sorted before 9999)", async () => {
    const store = await open();
    try {
      await seedSession(store);
      await store.set(countersPath("s-1"), { tasks: 0, milestones: 9998, events: 0 });
      const service = new SessionService(store, "s-1", noHooks);
      for (const text of ["a", "b", "c"]) await service.addMilestone(text, "user:t");
      expect(service.milestones().map((item) => [item.n, item.text])).toEqual([[9999, "a"], [10000, "b"], [10001, "c"]]);
    } finally {
      await store.close();
    }
  });

  it("keeps task counts, events and agent tasks consistent through every transition", async () => {
    const store = await open();
    try {
      await seedSession(store);
      const service = new SessionService(store, "s-1", noHooks);
      const events: string[] = [];
      service.onEvent = (event) => events.push(event.type);
      await service.addTask({ title: "one", milestone: true }, "user:t");
      await service.addTask({ title: "two", assign: "b" }, "user:t");
      await expect(service.addTask({ title: "  " }, "user:t")).rejects.toMatchObject({ code: "APEX_E_BAD_INPUT" });
      await expect(service.addTask({ title: "x", assign: "zed" }, "user:t")).rejects.toMatchObject({ code: "APEX_E_AGENT_NOT_FOUND" });

      expect((await service.claimTask("a")).id).toBe("t-0001");
      expect(store.get(agentPath("s-1", "a"))).toMatchObject({ task: "t-0001" });
      await expect(service.claimTask("a")).rejects.toMatchObject({ code: "APEX_E_NO_TASK" }); // t-0002 is b's
      // Another agent cannot finish a task a holds, nor one assigned to b (it completed it, "completed t-0001 (a)"); exit 4, nothing written.
      const revision = store.revision();
      await expect(service.completeTask("t-1", { mine: true }, "agent:b")).rejects.toMatchObject({ code: "APEX_E_TASK_HELD", exitCode: 4, message: "Task t-0001 is held by agent a: agent b cannot complete or fail it." });
      await expect(service.failTask("t-1", "not mine", "agent:b")).rejects.toMatchObject({ code: "APEX_E_TASK_HELD" });
      await expect(service.completeTask("t-2", null, "agent:a")).rejects.toMatchObject({ code: "APEX_E_TASK_HELD", message: expect.stringContaining("is assigned to agent b") });
      // A missing task is named as task list names it, whichever way it was written ("No task t-9" before).
      expect(() => service.task("t-9")).toThrow("No task t-0009 in session s-1.");
      expect(store.revision()).toBe(revision);
      await service.completeTask("t-1", { ok: 1 }, "agent:a");
      expect(store.get(agentPath("s-1", "a"))).toMatchObject({ task: null });
      expect(service.milestones()).toEqual([expect.objectContaining({ n: 1, text: "one", task: "t-0001" })]);
      await expect(service.completeTask("t-0001", null, "agent:a")).rejects.toMatchObject({ code: "APEX_E_TASK_STATE" });
      await service.failTask("t-0002", "broken", "agent:b");
      await service.reopenTask("t-0002", "retry", undefined, "agent:a");
      await expect(service.reopenTask("t-0002", undefined, undefined, "agent:a")).rejects.toMatchObject({ code: "APEX_E_TASK_STATE" });

      expect(store.get(taskCountsPath("s-1"))).toEqual({ pending: 1, active: 0, completed: 1, failed: 0, total: 2 });
      const recount = await store.batch((batch) => recountTasks(batch, store, "s-1"));
      expect(recount.value).toEqual({ pending: 1, active: 0, completed: 1, failed: 0, total: 2 });
      expect(events).toEqual(["task.added", "task.added", "task.claimed", "task.completed", "milestone", "task.failed", "task.reopened"]);
      // Events are stored in order under /sessions/<sid>/events/<seq>.
      const stored = Array.from(store.query("/sessions/s-1/events/*"), (entry) => (entry.value as { seq: number; type: string }).type);
      expect(stored).toEqual(events);
      expect(buildStatusReport(store).tasks).toEqual({ pending: 1, active: 0, completed: 1, failed: 0, total: 2 });
    } finally {
      await store.close();
    }
  });

  it("fires beforeTask before the assignment and lets it veto", async () => {
    const store = await open();
    try {
      await seedSession(store);
      const calls: string[] = [];
      const engine = {
        fire: async (name: string, context: { task?: { id: string; status: string } }) => {
          calls.push(`${name}:${context.task?.id}:${context.task?.status}`);
          if (name === "beforeTask" && context.task?.id === "t-0001") throw new Error("not now");
        },
      };
      const service = new SessionService(store, "s-1", engine as never);
      await service.addTask({ title: "one" }, "user:t");
      await service.addTask({ title: "two" }, "user:t");
      await expect(service.claimTask("a")).rejects.toThrow("not now");
      expect(service.task("t-0001").status).toBe("pending");
      expect(calls).toEqual(["beforeTask:t-0001:pending"]);
    } finally {
      await store.close();
    }
  });

  it("claims in one process never hand out a task twice (50 concurrent claims over 40 tasks)", async () => {
    const store = await open();
    try {
      await seedSession(store);
      const service = new SessionService(store, "s-1", noHooks);
      for (let i = 0; i < 40; i++) await service.addTask({ title: `t${i}` }, "user:t");
      const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => service.claimTask(i % 2 ? "a" : "b")));
      const ids = results.filter((r) => r.status === "fulfilled").map((r) => (r as PromiseFulfilledResult<{ id: string }>).value.id);
      expect(ids).toHaveLength(40);
      expect(new Set(ids).size).toBe(40);
      expect(results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason.code)).toEqual(Array(10).fill("APEX_E_NO_TASK"));
    } finally {
      await store.close();
    }
  });

  it("claims from two processes writing the store directly (no supervisor) never collide", async () => {
    const store = await open();
    const spec = JSON.stringify(store.spec);
    await seedSession(store);
    const service = new SessionService(store, "s-1", noHooks);
    for (let i = 0; i < 60; i++) await service.addTask({ title: `t${i}` }, "user:t");
    await store.close();

    const script = `
      import { openStore } from ${JSON.stringify(join(REPO_ROOT, "dist/core/store/open.js"))};
      import { SessionService } from ${JSON.stringify(join(REPO_ROOT, "dist/core/session/service.js"))};
      const store = await openStore(JSON.parse(process.argv[2]));
      const service = new SessionService(store, "s-1", { fire: async () => {} });
      const got = [];
      for (;;) {
        try { got.push((await service.claimTask(process.argv[3])).id); }
        catch (error) { if (error.code === "APEX_E_NO_TASK") break; throw error; }
      }
      await store.close();
      process.stdout.write(JSON.stringify(got));`;
    const file = join(dir, "claim.mjs");
    writeFileSync(file, script);
    const run = (agent: string) =>
      new Promise<string[]>((resolve, reject) => {
        const child = spawn(process.execPath, [file, spec, agent]);
        let out = "";
        let err = "";
        child.stdout.on("data", (chunk) => (out += chunk));
        child.stderr.on("data", (chunk) => (err += chunk));
        child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(err))));
      });
    const [a, b] = await Promise.all([run("a"), run("b")]);
    expect(a.length + b.length).toBe(60);
    expect(new Set([...a, ...b]).size).toBe(60);
    const check = await openStore(JSON.parse(spec), { readOnly: true });
    try {
      expect(check.get(taskCountsPath("s-1"))).toEqual({ pending: 0, active: 60, completed: 0, failed: 0, total: 60 });
    } finally {
      await check.close();
    }
  });
}));
