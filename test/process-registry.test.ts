// The test run's safety net (test/support/process-registry-global.ts): a vitest run interrupted
// with Ctrl-C leaves no supervisor or agent running, though they run in their own process groups,
// which the Ctrl-C never reaches. A real nested vitest run, a real session, real signals.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { REPO_ROOT, groupMembers, isAlive, procInfo, waitFor } from "./fixtures/agents/harness.js";
import { tempDirs } from "./support/cleanup.js";

const dirs = tempDirs();

it("a run interrupted with Ctrl-C ends the sessions its tests left running, by pid and process group, and removes their projects", async () => {
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const here = mkdtempSync(join(tmpdir(), "apex-interrupted-"));
  dirs.push(here);
  const report = join(here, "report.json");
  // In a process group of its own, as a shell runs a command: Ctrl-C is SIGINT to that group.
  const run = spawn(process.execPath, [join(REPO_ROOT, "node_modules/vitest/vitest.mjs"), "run", "--config", "test/fixtures/interrupted/vitest.config.ts"], {
    cwd: REPO_ROOT,
    env: { ...process.env, APEX_TEST_REPORT: report, CI: "1" },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  run.stdout!.on("data", (chunk) => (output += chunk));
  run.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise((resolve) => run.on("close", resolve));
  let left: { dir: string; supervisor: number; group: number } | undefined;
  try {
    left = await waitFor("the session started by the interrupted run", () => existsSync(report) && (JSON.parse(readFileSync(report, "utf8")) as typeof left), 60_000);
    const supervisorStart = procInfo(left!.supervisor)?.startTime;
    expect(isAlive(left!.supervisor)).toBe(true);
    process.kill(-run.pid!, "SIGINT");
    await exited;
    // Before, both ran on: the supervisor in its own session, the agent in its own group.
    expect(isAlive(left!.supervisor, supervisorStart), output).toBe(false);
    expect(groupMembers(left!.group)).toEqual([]);
    expect(existsSync(left!.dir)).toBe(false);
  } finally {
    if (run.exitCode === null && run.signalCode === null) process.kill(-run.pid!, "SIGKILL");
    if (left && existsSync(left.dir)) (await import("./fixtures/agents/harness.js")).endProcessesIn(left.dir);
  }
});
