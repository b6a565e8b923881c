// Sessions side by side (issue "Parallel development tracks"): two sessions of one project
// active at once — main in the project's working tree, a branch in its own git worktree, each
// with its own supervisor and agents — against each session alone, in the same run:
// - memory writes (`memory.set` of ~1 KB values over the session's socket, what `apex memory set`
//   and agents send) and `checkpoint create` (after those writes) in each session: within 1.2×
//   of the same work in that session alone.
// What is held to the target is the CPU time the serving supervisor spends on the work (the sum
// over its threads of /proc/<pid>/task/*/schedstat, in ns): on a loaded 2-core machine the wall
// time mostly measures who else got the cores, while the CPU time measures whether the work itself
// grows when another session is active (scanning its changes, reloading caches it invalidated).
// Wall times are printed beside it. The git a checkpoint runs (`git status`, through the git
// plugin's runner shell from a supervisor's second checkpoint on) is counted apart: the runner's
// own CPU (ns) and git's (reaped children, in 10 ms ticks), per checkpoint.
// Each session is compared with itself: a ratio pairs phases measured by one and the same
// supervisor process (a supervisor started anew runs code V8 has not optimised yet, so comparing
// a new branch supervisor with a long-running main one measured the warm-up, not the sessions).
// A round has three phases: main alone (the branch stopped), both active, the branch alone (main
// stopped); rounds alternate their order (ABC, CBA, …), so each stop or start restarts only the
// session not measured across it, and a drift of the machine's load weighs on both sides. Every
// figure is the median over all cycles of its phase with its interquartile range; the ratio is
// the ratio of those medians, with its range over the rounds. "each" is measured one session at a
// time with the other active and idle; the row "both at once" drives both concurrently and is
// reported, not held (two writers share the store's one write lock).
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
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[13]) + Number(fields[14])) * 10; // cutime, cstime (fields 16 and 17)
  } catch {
    return 0; // it ended
  }
}

/** The git plugin's runner shell (`/bin/sh -s`) among the supervisor's children, if one runs. */
function runnerOf(pid) {
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    let children = "";
    try {
      children = readFileSync(`/proc/${pid}/task/${task}/children`, "utf8");
    } catch {
      continue;
    }
    for (const child of children.split(" ").filter(Boolean)) {
      try {
        if (readFileSync(`/proc/${child}/cmdline`, "utf8") === "/bin/sh\0-s\0") return Number(child);
      } catch {
        // ended meanwhile
      }
    }
  }
  return undefined;
}

/** ms of CPU spent on git for the supervisor `pid` so far: git it spawned itself, its runner shell and the git that ran. */
function gitCpuMs(pid) {
  const runner = runnerOf(pid);
  let ms = childrenCpuMs(pid);
  if (runner !== undefined) {
    try {
      ms += cpuMs(runner) + childrenCpuMs(runner);
    } catch {
      // the runner ended meanwhile
    }
  }
  return { runner, ms };
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
  const gitBefore = gitCpuMs(session.pid);
  const start = performance.now();
  await callSupervisor(session.socket, "checkpoint.create", { description: "bench", actor: "user:bench" }, 120_000);
  const checkpointWall = performance.now() - start;
  const checkpointCpu = cpuMs(session.pid) - cpuMiddle;
  const gitAfter = gitCpuMs(session.pid);
  return {
    writeWall: median(walls),
    writeCpu: (cpuMiddle - cpuBefore) / count,
    checkpointWall,
    checkpointCpu,
    // A runner that ended was reaped by the supervisor: its CPU and its children's moved into the supervisor's cutime.
    checkpointGit: gitAfter.ms - gitBefore.ms,
  };
}

const MEASURES = ["writeWall", "writeCpu", "checkpointWall", "checkpointCpu", "checkpointGit"];
/**
 * samples[phase][measure][round] = values of that round. Phases: mainAlone, branchAlone (each with
 * the other stopped), mainSide, branchSide (each with the other active and idle), mainBoth, branchBoth
 * (both driven at once).
 */
const PHASES = ["mainAlone", "branchAlone", "mainSide", "branchSide", "mainBoth", "branchBoth"];
const samples = Object.fromEntries(PHASES.map((phase) => [phase, Object.fromEntries(MEASURES.map((measure) => [measure, Array.from({ length: ROUNDS }, () => [])]))]));
const record = (phase, round, result) => {
  for (const measure of MEASURES) samples[phase][measure][round].push(result[measure]);
};

const running = { main: undefined, track: undefined };
let mainId;
try {
  writeFileSync(join(work.dir, "apex.config.yaml"), CONFIG);
  writeFileSync(join(work.dir, ".gitignore"), ".apex/\n");
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-qm", "init");
  const ready = JSON.parse(apex("start", "--task", "bench main", "--json"));
  mainId = ready.session_id;
  running.main = { socket: ready.socket, pid: ready.supervisor_pid };
  apex("checkpoint", "create", "base");
  apex("session", "branch", "latest", "track", "--worktree", join(worktrees.dir, "track"));
  for (let i = 0; i < WARMUP; i++) await workload(running.main, "warm", 10);
  const other = (name) => (name === "main" ? "track" : "main");
  const ref = (name) => (name === "main" ? mainId : "track");
  /** Starts a session again (`start --continue`), warms it up, and gives the other one its first checkpoint after the restart. */
  const start = async (name) => {
    const started = JSON.parse(apex("start", "--continue", ref(name), "--json"));
    running[name] = { socket: started.socket, pid: started.supervisor_pid };
    for (let i = 0; i < WARMUP; i++) await workload(running[name], "warm", 10);
    if (running[other(name)]) await workload(running[other(name)], "warm", 10);
  };
  const stop = async (name) => {
    apex("--session", ref(name), "stop");
    running[name] = undefined;
    await workload(running[other(name)], "warm", 10);
  };
  const measure = {
    mainAlone: async (round) => {
      if (running.track) await stop("track");
      if (!running.main) await start("main");
      for (let cycle = 0; cycle < CYCLES; cycle++) record("mainAlone", round, await workload(running.main, "main", WRITES));
    },
    branchAlone: async (round) => {
      if (running.main) await stop("main");
      if (!running.track) await start("track");
      for (let cycle = 0; cycle < CYCLES; cycle++) record("branchAlone", round, await workload(running.track, "track", WRITES));
    },
    side: async (round) => {
      for (const name of ["main", "track"]) if (!running[name]) await start(name);
      // Each session's cycles follow one another as they do alone, not each right after a cycle
      // driving both at once (whose garbage it would collect); which session goes first alternates.
      for (const name of round % 2 === 0 ? ["main", "track"] : ["track", "main"]) {
        for (let cycle = 0; cycle < CYCLES; cycle++) record(name === "main" ? "mainSide" : "branchSide", round, await workload(running[name], name, WRITES));
      }
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        const [x, y] = await Promise.all([workload(running.main, "main", WRITES), workload(running.track, "track", WRITES)]);
        record("mainBoth", round, x);
        record("branchBoth", round, y);
      }
    },
  };
  // ABC, CBA, …: each stop or start restarts only the session whose ratio does not span it.
  for (let round = 0; round < ROUNDS; round++) {
    for (const phase of round % 2 === 0 ? ["mainAlone", "side", "branchAlone"] : ["branchAlone", "side", "mainAlone"]) await measure[phase](round);
  }
} finally {
  spawnSync(process.execPath, [APEX, "--session", "track", "stop", "--force"], { cwd: work.dir, env });
  if (mainId) spawnSync(process.execPath, [APEX, "--session", mainId, "stop", "--force"], { cwd: work.dir, env });
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
const roundRange = (phase, baseline, measure) => {
  const ratios = samples[phase][measure].map((values, round) => median(values) / median(samples[baseline][measure][round]));
  return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
};
const row = (label, phase, baselinePhase, measure, target) => {
  const measured = summary(phase, measure);
  const baseline = summary(baselinePhase, measure);
  const ratio = measured.median / baseline.median;
  return {
    label,
    ms: measured.median,
    baselineMs: baseline.median,
    display: `${measured.median.toFixed(2)} ms [${measured.spread}]`,
    baselineDisplay: `${baseline.median.toFixed(2)} ms [${baseline.spread}]`,
    ratio,
    target: target === undefined ? `(reported; rounds ${roundRange(phase, baselinePhase, measure)})` : `≤ ${target}× (rounds ${roundRange(phase, baselinePhase, measure)})`,
    pass: target === undefined || ratio <= target,
  };
};
const title = (what) =>
  `${what} (${CYCLES}× ${WRITES} writes of ~1 KB then a checkpoint per phase, ${ROUNDS} rounds ABC/CBA; baseline: the same session alone; [interquartile range])`;
const met = printTable(title("Sessions side by side, CPU time of the serving supervisor"), [
  row("memory.set CPU, main beside a running branch", "mainSide", "mainAlone", "writeCpu", TARGET),
  row("memory.set CPU, the branch beside running main", "branchSide", "branchAlone", "writeCpu", TARGET),
  row("checkpoint create CPU, main beside the branch", "mainSide", "mainAlone", "checkpointCpu", TARGET),
  row("checkpoint create CPU, the branch beside main", "branchSide", "branchAlone", "checkpointCpu", TARGET),
  row("memory.set CPU, main, both at once", "mainBoth", "mainAlone", "writeCpu", undefined),
  row("memory.set CPU, the branch, both at once", "branchBoth", "branchAlone", "writeCpu", undefined),
  row("checkpoint create CPU, main, both at once", "mainBoth", "mainAlone", "checkpointCpu", undefined),
  row("checkpoint create CPU, the branch, both at once", "branchBoth", "branchAlone", "checkpointCpu", undefined),
]);
printTable(title("Wall time of the same work (reported: on a loaded machine it measures the load)"), [
  row("memory.set, main beside a running branch", "mainSide", "mainAlone", "writeWall", undefined),
  row("memory.set, the branch beside running main", "branchSide", "branchAlone", "writeWall", undefined),
  row("checkpoint create, main beside the branch", "mainSide", "mainAlone", "checkpointWall", undefined),
  row("checkpoint create, the branch beside main", "branchSide", "branchAlone", "checkpointWall", undefined),
  row("memory.set, main, both at once", "mainBoth", "mainAlone", "writeWall", undefined),
  row("memory.set, the branch, both at once", "branchBoth", "branchAlone", "writeWall", undefined),
  row("checkpoint create, main, both at once", "mainBoth", "mainAlone", "checkpointWall", undefined),
  row("checkpoint create, the branch, both at once", "branchBoth", "branchAlone", "checkpointWall", undefined),
]);
const mean = (values) => values.reduce((sum, value) => sum + value, 0) / values.length;
console.log(
  "git per checkpoint (CPU of the runner shell and of git, mean; git's in 10 ms ticks): " +
    PHASES.map((phase) => `${phase} ${mean(all(phase, "checkpointGit")).toFixed(1)} ms`).join(", "),
);
process.exitCode = met ? 0 : 1;
