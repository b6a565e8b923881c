// Pause benchmark (issue: sessions): `apex pause` of a session with 10 agents of 5 processes
// each (every process verified in state T before the command returns), median CLI wall time
// within 3× of `node -e 0` measured in the same run. `apex resume` is measured alongside.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, median, printTable, tempProject, timeOnce } from "./lib.mjs";

const AGENTS = 10;
const RUNS = 15;

const work = tempProject("apex-bench-pause-");
const env = { ...process.env, NO_COLOR: "1" };
const apex = (...args) => spawnSync(process.execPath, [APEX, ...args], { cwd: work.dir, env, encoding: "utf8" });
let started = false;
try {
  // sh plus four sleeps: five processes per agent group.
  const command = "sleep 1000 & sleep 1000 & sleep 1000 & sleep 1000 & wait";
  const agents = Array.from({ length: AGENTS }, (_, i) => `  a${i}:\n    command: sh\n    args: ["-c", "${command}"]\n`).join("");
  writeFileSync(join(work.dir, "apex.config.yaml"), `agents:\n${agents}plugins: {}\n`);
  const start = apex("start", "--task", "pause benchmark");
  if (start.status !== 0) throw new Error(`apex start failed: ${start.stderr}`);
  started = true;
  await waitForProcesses(AGENTS * 5);

  const pauseTimes = [];
  const resumeTimes = [];
  const baseTimes = [];
  const options = { cwd: work.dir, env };
  timeOnce(process.execPath, ["-e", "0"]);
  for (let i = 0; i < RUNS; i++) {
    baseTimes.push(timeOnce(process.execPath, ["-e", "0"], { cwd: work.dir }));
    pauseTimes.push(timeOnce(process.execPath, [APEX, "pause"], options));
    if (i === 0) assertAllStopped();
    resumeTimes.push(timeOnce(process.execPath, [APEX, "resume"], options));
  }
  const base = median(baseTimes);
  const pause = median(pauseTimes);
  const resume = median(resumeTimes);
  const ok = printTable("apex pause / resume", [
    { label: `pause (${AGENTS} agents × 5 processes)`, ms: pause, baselineMs: base, ratio: pause / base, target: "≤ 3× node -e 0", pass: pause / base <= 3 },
    { label: `resume (${AGENTS} agents × 5 processes)`, ms: resume, baselineMs: base, ratio: resume / base, target: "(no target)", pass: true },
  ]);
  process.exitCode = ok ? 0 : 1;
} finally {
  if (started) apex("stop", "--force");
  try {
    process.kill(JSON.parse(readFileSync(join(work.dir, ".apex", "supervisor.json"), "utf8")).pid, "SIGKILL");
  } catch {
    // stopped cleanly
  }
  work.cleanup();
}

function groupPids() {
  const status = JSON.parse(apex("status", "--json").stdout);
  return status.agents.flatMap((agent) => agent.processes);
}

async function waitForProcesses(count) {
  const deadline = Date.now() + 30_000;
  while (groupPids().length < count) {
    if (Date.now() > deadline) throw new Error(`the agents did not reach ${count} processes`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function assertAllStopped() {
  const pids = groupPids();
  const running = pids.filter((pid) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "T";
  });
  if (pids.length !== AGENTS * 5 || running.length > 0) throw new Error(`after pause: ${pids.length} processes, not stopped: ${running.join(", ")}`);
}
