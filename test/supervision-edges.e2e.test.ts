// Edges of agent supervision, end to end with the built CLI and real processes: agents whose
// processes leave their process group, programs that cannot run, hostile log output, and
// sessions whose supervisor died while they were paused. Every process a test starts is ended
// by pid (checked against its start time) or by process group.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, isAlive, procInfo, waitFor, type ProcInfo } from "./fixtures/agents/harness.js";

let project: Project | undefined;
/** Processes outside any agent group a test saw (escaped with setsid): ended by pid after it. */
const strays: ProcInfo[] = [];
afterEach(() => {
  project?.cleanup();
  project = undefined;
  for (const stray of strays.splice(0)) if (isAlive(stray.pid, stray.startTime)) process.kill(stray.pid, "SIGKILL");
});

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * An agent whose child leaves the agent's process group with setsid and ignores SIGTERM (as
 * does its own child, a sleep): the daemon an agent may start. Their pids go to escaped.pid and
 * escaped-child.pid.
 */
function escapingAgent(dir: string): string {
  const escaped = `trap "" TERM; echo $$ > ${join(dir, "escaped.pid")}; sleep 1000 & echo $! > ${join(dir, "escaped-child.pid")}; while :; do sleep 0.2; done`;
  const script = `setsid sh -c '${escaped}' & while :; do sleep 0.2; done`;
  return ["agents:", "  escaper:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "plugins: {}", ""].join("\n");
}

async function escapedProcesses(dir: string): Promise<ProcInfo[]> {
  const found = await waitFor("the escaped processes", () => {
    const pids = [readPid(join(dir, "escaped.pid")), readPid(join(dir, "escaped-child.pid"))];
    if (pids.some((pid) => pid === undefined)) return undefined;
    const infos = pids.map((pid) => procInfo(pid!));
    return infos.every((info) => info !== undefined) ? (infos as ProcInfo[]) : undefined;
  });
  strays.push(...found);
  return found;
}

describe("processes that leave the agent's process group (setsid)", () => {
  it("pause stops them, resume continues them, stop ends them (SIGKILL when they ignore SIGTERM): no orphan", async () => {
    project = new Project("");
    project.writeConfig(escapingAgent(project.dir));
    const ready = project.start();
    const [escaped, child] = await escapedProcesses(project.dir);
    const pgid = ready.agents[0]!.pgid!;
    expect(escaped!.pgrp).not.toBe(pgid);
    expect(child!.pgrp).toBe(escaped!.pgrp);

    // status counts them among the agent's processes
    await waitFor("status to count them", () => {
      const processes = project!.status().agents[0]!.processes;
      return processes.includes(escaped!.pid) && processes.includes(child!.pid);
    });

    const paused = project.apex(["pause", "--json"]);
    expect(paused.status, paused.stderr).toBe(0);
    for (const info of [escaped!, child!]) expect(procInfo(info.pid)?.state, `pid ${info.pid}`).toBe("T");

    const resumed = project.apex(["resume"]);
    expect(resumed.status, resumed.stderr).toBe(0);
    for (const info of [escaped!, child!]) expect(procInfo(info.pid)?.state, `pid ${info.pid}`).not.toBe("T");

    const stopped = project.apex(["stop", "--grace", "1", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout).processes_ended).toBeGreaterThanOrEqual(4);
    for (const info of [escaped!, child!]) expect(isAlive(info.pid, info.startTime), `pid ${info.pid} left running`).toBe(false);
  });

  it("after a kill -9 of the supervisor, status lists them as left running and --continue last ends them", async () => {
    project = new Project("");
    project.writeConfig(escapingAgent(project.dir).replace("agents:", "session:\n  auto_recovery: false\nagents:"));
    const ready = project.start();
    const [escaped, child] = await escapedProcesses(project.dir);
    process.kill(ready.supervisor_pid, "SIGKILL");
    const status = await waitFor("interrupted", () => {
      const report = project!.status();
      return report.session?.status === "interrupted" ? report : undefined;
    });
    expect(status.left_running[0]!.pids).toEqual(expect.arrayContaining([escaped!.pid, child!.pid]));

    const continued = project.apex(["start", "--continue", "last", "--json"], { timeout: 90_000 });
    expect(continued.status, continued.stderr).toBe(0);
    expect(JSON.parse(continued.stdout).reaped[0].pids).toEqual(expect.arrayContaining([escaped!.pid, child!.pid]));
    for (const info of [escaped!, child!]) expect(isAlive(info.pid, info.startTime), `pid ${info.pid} left running`).toBe(false);
    // the continued agent starts a new escapee: the cleanup finds it by its pid file
    strays.push(...(await escapedProcesses(project.dir)).filter((info) => info.pid !== escaped!.pid));
  });

  it("an agent that exits leaves none of its escaped processes behind", async () => {
    project = new Project("");
    const dir = project.dir;
    const escaped = `trap "" TERM; echo $$ > ${join(dir, "escaped.pid")}; sleep 1000 & echo $! > ${join(dir, "escaped-child.pid")}; wait`;
    const script = `setsid sh -c '${escaped}' & while [ ! -s ${join(dir, "escaped-child.pid")} ]; do sleep 0.1; done; sleep 0.3; exit 0`;
    project.writeConfig(["agents:", "  quick:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "    restart: never", "  keeper:", "    command: sh", `    args: ["-c", "while :; do sleep 0.2; done"]`, "plugins: {}", ""].join("\n"));
    project.start();
    const [first, second] = await escapedProcesses(dir);
    await waitFor("the quick agent's exit", () => project!.status().agents.find((agent) => agent.name === "quick")?.status === "exited", 30_000);
    await waitFor("its escaped processes to end", () => !isAlive(first!.pid, first!.startTime) && !isAlive(second!.pid, second!.startTime), 20_000);
  });
});
