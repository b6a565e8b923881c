// Pause with an agent process in uninterruptible sleep (state D), end to end through the built
// CLI: a real process, the parent of a vfork() waiting for its sleeping child, which a SIGSTOP
// cannot stop until the wait ends. Its stop stays pending, so it can run nothing more before
// it stops: pause counts it (as "stopping") instead of failing after the verification window;
// resume's SIGCONT takes the pending stop back; stop ends it. A second agent runs the same with
// two threads, where the other thread takes the SIGSTOP and stops while the main one stays in D.
// And a process that never stops (traced by stop-eater, which takes every SIGSTOP back): the pause
// fails, and continues what it had stopped.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, groupMembers, isAlive, procInfo, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { buildStopEater, buildVforkHold, otherThreadStates, procStatus, signalBit, SIGSTOP_BIT } from "./support/vfork-hold.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
let buildDir: string | undefined;
afterEach(() => {
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  buildDir = undefined;
});

function comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "latin1").trim();
  } catch {
    return undefined;
  }
}

const stopPending = (pid: number) => {
  const status = procStatus(pid);
  return status !== undefined && ((status.shdPnd | status.sigPnd) & SIGSTOP_BIT) === SIGSTOP_BIT;
};

describe("apex pause with a process in uninterruptible sleep (state D)", () => {
  it("counts it as stopping, stops everything else, resumes it with SIGCONT and stop ends it all", async () => {
    buildDir = mkdtempSync(join(tmpdir(), "apex-vfork-"));
    const binary = buildVforkHold(buildDir);
    const config = shellAgents({
      holder: `'${binary}' 600 & while true; do sleep 0.2; done`,
      threaded: `'${binary}' 600 --sibling & while true; do sleep 0.2; done`,
      plain: "while true; do sleep 0.2; done",
    }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");
    project = new Project(config);
    const ready = project.start(["--task", "hold on"]);
    const holder = ready.agents.find((agent) => agent.name === "holder")!;
    const threaded = ready.agents.find((agent) => agent.name === "threaded")!;
    const plain = ready.agents.find((agent) => agent.name === "plain")!;
    const agents = [holder, threaded, plain];

    // The vfork parent: a child of holder's shell, in state D, with its sleeping child.
    const vforkParent = (agent: typeof holder) => groupMembers(agent.pgid!).find((member) => member.ppid === agent.pid && comm(member.pid) === "vfork-hold");
    const parentPid = await waitFor("the vfork parent in state D", () => (vforkParent(holder)?.state === "D" ? vforkParent(holder)!.pid : undefined));
    const childPid = await waitFor("the vfork child", () => groupMembers(holder.pgid!).find((member) => member.ppid === parentPid)?.pid);
    expect(stopPending(parentPid)).toBe(false);
    // The threaded one: its main thread in D with a SIGUSR1 of its own pending, so a SIGSTOP goes to its other thread.
    const threadedPid = await waitFor("the threaded vfork parent in D with SIGUSR1 pending", () => {
      const pid = vforkParent(threaded)?.pid;
      const status = pid === undefined ? undefined : procStatus(pid);
      return status?.state === "D" && (status.sigPnd & signalBit("SIGUSR1")) !== 0n ? pid : undefined;
    });
    const everyPid = () => agents.flatMap((agent) => groupMembers(agent.pgid!)).map((member) => ({ pid: member.pid, start: member.startTime }));
    const seen = new Map(everyPid().map(({ pid, start }) => [pid, start]));

    // 1. Pause succeeds: the parent stays in D with SIGSTOP pending, the threaded one in D with its
    //    other thread stopped, all else is in T.
    const paused = project.apex(["pause", "--json"]);
    expect(paused.status, paused.stderr).toBe(0);
    const reply = JSON.parse(paused.stdout) as { status: string; agents: number; processes: number; stopping: Array<{ agent: string; pid: number }> };
    expect(reply).toMatchObject({ status: "paused", agents: 3 });
    expect(reply.stopping).toContainEqual({ agent: "holder", pid: parentPid });
    expect(reply.stopping).toContainEqual({ agent: "threaded", pid: threadedPid });
    expect(procStatus(parentPid)!.state).toBe("D");
    expect(stopPending(parentPid)).toBe(true);
    expect(procStatus(threadedPid)!.state).toBe("D");
    expect(otherThreadStates(threadedPid)).toContain("T");
    // Anything else pause counted as stopping (a process caught in I/O on a loaded machine) was in its group.
    const stoppingPids = new Set(reply.stopping.map(({ pid }) => pid));
    for (const agent of agents) {
      const members = groupMembers(agent.pgid!);
      expect(members.length).toBeGreaterThan(0);
      for (const member of members) {
        if (stoppingPids.has(member.pid)) expect(["D", "T"]).toContain(member.state);
        else expect(`${member.pid}:${member.state}`).toBe(`${member.pid}:T`);
      }
    }
    expect(procInfo(childPid)!.state).toBe("T");

    // status says paused, and names the process whose stop is pending.
    const whilePaused = project.status();
    expect(whilePaused.session!.status).toBe("paused");
    const holderView = whilePaused.agents.find((agent) => agent.name === "holder")!;
    expect(holderView.status).toBe("paused");
    expect(holderView.stopping).toContain(parentPid);
    expect(whilePaused.agents.find((agent) => agent.name === "threaded")!.stopping).toContain(threadedPid);
    expect(whilePaused.agents.find((agent) => agent.name === "plain")!.stopping).not.toContain(parentPid);
    const statusText = project.apex(["status"]);
    // On a loaded machine another of its processes may be caught in I/O too: it is named beside it.
    expect(statusText.stdout).toMatch(new RegExp(`holder: pid (\\d+, )*${parentPid}(, \\d+)* in uninterruptible I/O with a stop pending`));
    // The pause checkpoint records both agents as paused.
    const checkpoint = JSON.parse(project.apex(["checkpoint", "show", "latest", "--json"]).stdout) as { trigger: string; agent_states: Record<string, { status: string }> };
    expect(checkpoint.trigger).toBe("onPause");
    for (const agent of agents) expect(checkpoint.agent_states[agent.name]!.status).toBe("paused");

    // 2. Resume while the parent never reached T: SIGCONT takes its pending stop back; nothing stays stopped.
    const resumed = project.apex(["resume", "--json"]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: "active" });
    expect(procStatus(parentPid)!.state).toBe("D");
    expect(stopPending(parentPid)).toBe(false);
    for (const agent of agents) for (const member of groupMembers(agent.pgid!)) expect(`${member.pid}:${member.state}`).not.toBe(`${member.pid}:T`);
    expect(otherThreadStates(threadedPid)).not.toContain("T");
    const active = project.status();
    expect(active.session!.status).toBe("active");
    expect(active.agents.flatMap((agent) => agent.stopping)).toEqual([]);

    // 3. Pause again, then end the parent's wait (its child killed, by pid): it stops at once
    //    instead of running on to its exit; resume lets it exit.
    for (const { pid, start } of everyPid()) seen.set(pid, start);
    const again = project.apex(["pause"]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain(`holder's pid ${parentPid}`);
    expect(again.stdout).toContain("uninterruptible I/O with the stop pending");
    expect(stopPending(parentPid)).toBe(true);
    process.kill(childPid, "SIGKILL");
    await waitFor("the vfork parent stopped (T)", () => procInfo(parentPid)?.state === "T");
    expect(project.status().agents.find((agent) => agent.name === "holder")!.stopping).toEqual([]);
    expect(project.apex(["resume"]).status).toBe(0);
    await waitFor("the vfork parent gone after resume", () => !isAlive(parentPid));

    // 4. stop ends every process of both agents.
    for (const { pid, start } of everyPid()) seen.set(pid, start);
    const stopped = project.apex(["stop", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    for (const [pid, start] of seen) expect(isAlive(pid, start), `pid ${pid} still runs`).toBe(false);
    expect(project!.alive(ready.supervisor_pid)).toBe(false);
  }, 180_000);
});

describe("apex pause with a process that never stops (a tracer takes its SIGSTOP back, as a debugger may)", () => {
  it("fails after the verification window (APEX_E_PROCESS) and leaves no process stopped: the agents run on, as the session (active) says, and a later pause works", async () => {
    buildDir = mkdtempSync(join(tmpdir(), "apex-stop-eater-"));
    const eater = buildStopEater(buildDir);
    // Pause gives up on it after 1 s, not the 5 to 30 s of a real session.
    project = new Project(shellAgents({ traced: "while true; do sleep 0.2; done", plain: "while true; do sleep 0.2; done" }), "apex-session-", { APEX_PAUSE_VERIFY_MS: "1000" });
    const ready = project.start(["--task", "hold on"]);
    const traced = ready.agents.find((agent) => agent.name === "traced")!;
    const agents = ready.agents;
    const tracer = spawn(eater, [String(traced.pid)], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      let said = "";
      tracer.stdout.setEncoding("utf8").on("data", (chunk: string) => (said += chunk));
      await waitFor("the tracer", () => said.includes("ready"));
      const paused = project.apex(["pause"]);
      // What pause said when it did not fail (which processes it saw stopped, and in what state), to tell the cause.
      expect(paused.status, `${paused.stdout}${paused.stderr}${JSON.stringify(groupMembers(traced.pgid!))}`).toBe(1);
      expect(paused.stderr).toMatch(new RegExp(`error\\[APEX_E_PROCESS\\]: Processes .*\\b${traced.pid} \\(state [RSt]\\).* did not stop within`));
      // It was: what did stop (plain's processes, traced's sleeps) stayed stopped, under a session
      // that said active with its agents running, which no resume would continue.
      const stopped = () => agents.flatMap((agent) => groupMembers(agent.pgid!)).filter((member) => member.state === "T");
      await waitFor("every process to run on", () => stopped().length === 0, 3000).catch(() => expect(stopped()).toEqual([]));
      const report = project.status();
      expect(report.session!.status).toBe("active");
      expect(Object.fromEntries(report.agents.map((agent) => [agent.name, agent.status]))).toEqual({ traced: "running", plain: "running" });
      // Untraced, it stops: the next pause works, and so does resume.
      tracer.kill("SIGKILL");
      await waitFor("the tracer to exit", () => tracer.exitCode !== null || tracer.signalCode !== null);
      const again = project.apex(["pause"]);
      expect(again.status, again.stderr).toBe(0);
      for (const agent of agents) for (const member of groupMembers(agent.pgid!)) expect(`${member.pid}:${member.state}`).toBe(`${member.pid}:T`);
      expect(project.apex(["resume"]).status).toBe(0);
    } finally {
      tracer.kill("SIGKILL");
    }
  }, 120_000);
});
