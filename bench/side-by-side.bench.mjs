// Sessions side by side (issue "Parallel development tracks"): two sessions of one project
// active at once — main in the project's working tree, a branch in its own git worktree, each
// with its own supervisor and agents — against one session alone, in the same run:
// - memory writes (`memory.set` of ~1 KB values over the session's socket, what `apex memory set`
//   and agents send) and `checkpoint create` (after those writes) in each session: within 1.2×
//   of the same work in one session alone.
// What is held to the target is the CPU time the serving supervisor spends on the work (the sum
// over its threads of /proc/<pid>/task/*/schedstat, in ns): on a loaded 2-core machine the wall
// time mostly measures who else got the cores, while the CPU time measures whether the work itself
// grows when another session is active (scanning its changes, reloading caches it invalidated).
// Wall times are printed beside it, and the git processes a checkpoint runs (git status of its
// tree) are reported apart (their CPU is only known in 10 ms ticks).
// Rounds alternate ABBA (alone, side, side, alone, …: the branch stopped, then running) so a drift
// of the machine's load weighs on both; every figure is the median over all cycles of its phase,
// printed with its interquartile range, and the ratio with its range over the rounds. "each" is
// measured one session at a time with the other active and idle; the row "both at once" drives
// both concurrently and is reported, not held (two writers share the store's one write lock).
//   node bench/side-by-side.bench.mjs [--writes 50] [--cycles 3] [--rounds 6] [--warmup 10]
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, median, numberOption, printTable, tempProject } from "./lib.mjs";
import { callSupervisor } from "../dist/core/rpc/call.js";

const WRITES = numberOption("writes", 50);
const ROUNDS = numberOption("rounds", 6);
const CYCLES = numberOption("cycles", 3);
const TARGET = 1.2;
// A branch supervisor is started anew for every side-by-side phase: its first checkpoints run code
// V8 has not optimised yet (measured: 1.5× the CPU of a warm one after 1 warm-up cycle), so it warms up first.
const WARMUP = numberOption("warmup", 10);
const value = { text: "x".repeat(1000) };

const env = { ...process.env, NO_COLOR: "1", GIT_AUTHOR_NAME: "b", GIT_AUTHOR_EMAIL: "b@example.com", GIT_COMMITTER_NAME: "b", GIT_COMMITTER_EMAIL: "b@example.com" };
for (const key of Object.keys(env)) if (key.startsWith("APEX_")) delete env[key];
const CONFIG = [
  "session:",
  "  auto_recovery: false",
  "agents:",
  "  idle:",
  "    command: sh",
  `    args: ["-c", "while true; do sleep 1; done"]`,
  "plugins:",
  "  checkpoint: {}",
  "  git: {}",
  "",
].join("\n");

/** ms of CPU the process `pid` has spent so far, over all its threads (ns-precise on Linux). */
function cpuMs(pid) {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1e6;
}

/** ms of CPU of the process's ended and reaped children (git), in clock ticks of 10 ms. */
function childrenCpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[13]) + Number(fields[14])) * 10; // cutime, cstime (fields 16 and 17)
}

const work = tempProject("apex-bench-side-");
const worktrees = tempProject("apex-bench-side-wt-");
const apex = (...argv) => {
  const result = spawnSync(process.execPath, [APEX, ...argv], { cwd: work.dir, env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`apex ${argv.join(" ")} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
};
const git = (...argv) => execFileSync("git", argv, { cwd: work.dir, env, encoding: "utf8" });

/**
 * `count` writes and then one checkpoint in a session: per write, the median wall ms and the
 * supervisor's CPU ms (over the whole run of writes, divided by their number); the checkpoint's
 * wall ms, supervisor CPU ms and its git children's CPU ms.
 */
async function workload(session, prefix, count) {
  const walls = [];
  const cpuBefore = cpuMs(session.pid);
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await callSupervisor(session.socket, "memory.set", { path: `/bench/${prefix}/${i % 50}`, value: { ...value, i }, actor: "user:bench" });
    walls.push(performance.now() - start);
  }
  const cpuMiddle = cpuMs(session.pid);
  const childrenBefore = childrenCpuMs(session.pid);
  const start = performance.now();
  await callSupervisor(session.socket, "checkpoint.create", { description: "bench", actor: "user:bench" }, 120_000);
  const checkpointWall = performance.now() - start;
  return {
    writeWall: median(walls),
    writeCpu: (cpuMiddle - cpuBefore) / count,
    checkpointWall,
    checkpointCpu: cpuMs(session.pid) - cpuMiddle,
    checkpointGit: childrenCpuMs(session.pid) - childrenBefore,
  };
}

const MEASURES = ["writeWall", "writeCpu", "checkpointWall", "checkpointCpu", "checkpointGit"];
/** samples[phase][measure][round] = values of that round. Phases: alone (main), side (main beside the branch), branch (beside main), both. */
const samples = Object.fromEntries(["alone", "side", "branch", "both"].map((phase) => [phase, Object.fromEntries(MEASURES.map((measure) => [measure, Array.from({ length: ROUNDS }, () => [])]))]));
const record = (phase, round, result) => {
  for (const measure of MEASURES) samples[phase][measure][round].push(result[measure]);
};

let branch;
try {
  writeFileSync(join(work.dir, "apex.config.yaml"), CONFIG);
  writeFileSync(join(work.dir, ".gitignore"), ".apex/\n");
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-qm", "init");
  const ready = JSON.parse(apex("start", "--task", "bench main", "--json"));
  const main = { socket: ready.socket, pid: ready.supervisor_pid };
  apex("checkpoint", "create", "base");
  apex("session", "branch", "latest", "track", "--worktree", join(worktrees.dir, "track"));
  await workload(main, "warm", 20);
  const startBranch = async () => {
    const started = JSON.parse(apex("start", "--continue", "track", "--json"));
    branch = { socket: started.socket, pid: started.supervisor_pid };
    for (let i = 0; i < WARMUP; i++) await workload(branch, "warm", 10);
    await workload(main, "warm", 10); // main's first checkpoint after the branch wrote is a warm-up too
  };
  const stopBranch = async () => {
    apex("--session", "track", "stop");
    branch = undefined;
    await workload(main, "warm", 10);
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const phase of round % 2 === 0 ? ["alone", "side"] : ["side", "alone"]) {
      if (phase === "alone") {
        if (branch) await stopBranch();
        for (let cycle = 0; cycle < CYCLES; cycle++) record("alone", round, await workload(main, "main", WRITES));
      } else {
        if (!branch) await startBranch();
        for (let cycle = 0; cycle < CYCLES; cycle++) {
          record("side", round, await workload(main, "main", WRITES));
          record("branch", round, await workload(branch, "track", WRITES));
          const [x, y] = await Promise.all([workload(main, "main", WRITES), workload(branch, "track", WRITES)]);
          record("both", round, x);
          record("both", round, y);
        }
      }
    }
  }
} finally {
  spawnSync(process.execPath, [APEX, "--session", "track", "stop", "--force"], { cwd: work.dir, env });
  spawnSync(process.execPath, [APEX, "stop", "--force"], { cwd: work.dir, env });
  spawnSync("git", ["worktree", "remove", "--force", join(worktrees.dir, "track")], { cwd: work.dir, env });
  work.cleanup();
  worktrees.cleanup();
}

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  return sorted[low] + (sorted[Math.ceil(at)] - sorted[low]) * (at - low);
};
const all = (phase, measure) => samples[phase][measure].flat();
const summary = (phase, measure) => {
  const values = all(phase, measure);
  return { median: median(values), spread: `${quantile(values, 0.25).toFixed(2)}–${quantile(values, 0.75).toFixed(2)}` };
};
/** The ratio of medians round by round: its lowest and highest. */
const roundRange = (phase, measure) => {
  const ratios = samples[phase][measure].map((values, round) => median(values) / median(samples.alone[measure][round]));
  return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
};
const row = (label, phase, measure, target) => {
  const measured = summary(phase, measure);
  const baseline = summary("alone", measure);
  const ratio = measured.median / baseline.median;
  return {
    label,
    ms: measured.median,
    baselineMs: baseline.median,
    display: `${measured.median.toFixed(2)} ms [${measured.spread}]`,
    baselineDisplay: `${baseline.median.toFixed(2)} ms [${baseline.spread}]`,
    ratio,
    target: target === undefined ? `(reported; rounds ${roundRange(phase, measure)})` : `≤ ${target}× (rounds ${roundRange(phase, measure)})`,
    pass: target === undefined || ratio <= target,
  };
};
const title = (what) => `${what} (${CYCLES}× ${WRITES} writes of ~1 KB then a checkpoint per phase, ${ROUNDS} rounds ABBA; baseline: main alone; [interquartile range])`;
const met = printTable(title("Sessions side by side, CPU time of the serving supervisor"), [
  row("memory.set CPU, main beside a running branch", "side", "writeCpu", TARGET),
  row("memory.set CPU, the branch beside running main", "branch", "writeCpu", TARGET),
  row("checkpoint create CPU, main beside the branch", "side", "checkpointCpu", TARGET),
  row("checkpoint create CPU, the branch beside main", "branch", "checkpointCpu", TARGET),
  row("memory.set CPU, both at once", "both", "writeCpu", undefined),
  row("checkpoint create CPU, both at once", "both", "checkpointCpu", undefined),
]);
printTable(title("Wall time of the same work (reported: on a loaded machine it measures the load)"), [
  row("memory.set, main beside a running branch", "side", "writeWall", undefined),
  row("memory.set, the branch beside running main", "branch", "writeWall", undefined),
  row("checkpoint create, main beside the branch", "side", "checkpointWall", undefined),
  row("checkpoint create, the branch beside main", "branch", "checkpointWall", undefined),
  row("memory.set, both at once", "both", "writeWall", undefined),
  row("checkpoint create, both at once", "both", "checkpointWall", undefined),
]);
const mean = (values) => values.reduce((sum, value) => sum + value, 0) / values.length;
console.log(
  `git processes per checkpoint (CPU, mean of 10 ms ticks): main alone ${mean(all("alone", "checkpointGit")).toFixed(1)} ms, ` +
    `main beside ${mean(all("side", "checkpointGit")).toFixed(1)} ms, the branch ${mean(all("branch", "checkpointGit")).toFixed(1)} ms`,
);
process.exitCode = met ? 0 : 1;
