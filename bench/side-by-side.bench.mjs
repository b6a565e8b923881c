// Sessions side by side (issue "Parallel development tracks"): two sessions of one project
// active at once — main in the project's working tree, a branch in its own git worktree, each
// with its own supervisor and agents — against each session alone, in the same run:
// - memory writes (`memory.set` of ~1 KB values over the session's socket, what `apex memory set`
//   and agents send) and `checkpoint create` (after those writes) in each session: within 1.2×
//   of the same work in that session alone.
// What is held to the target is the CPU time the serving supervisor spends on the work (the sum
// over its threads of /proc/<pid>/task/*/schedstat, in ns): on a loaded 2-core machine the wall
// time mostly measures who else got the cores, while the CPU time measures whether the work itself
// grows when another session is active (scanning its changes, catching up with the objects it
// stored). Wall times are printed beside it. The git a checkpoint runs (`git status`, through the
// git plugin's runner shell from a supervisor's second checkpoint on) is counted apart: the
// runner's own CPU (ns) and git's (reaped children, in 10 ms ticks), per checkpoint.
// A cycle is `--writes` writes of new values (each write's value is new, so each checkpoint
// stores new objects in the object store both sessions share) and then a checkpoint.
// Each session is compared with itself, in one process: a supervisor started anew runs code V8
// has not optimised yet (1.5× the CPU after one warm-up cycle, 1.3× after ten), so a ratio pairs
// phases of one and the same supervisor process, warmed up. A round measures one session (main,
// the branch, main, …): alone (the other stopped) and beside the other, the order alternating
// from one of the session's rounds to the next (alone first, then beside first), so a drift of the
// load within a round weighs on both sides alike; rounds are short (~15 s).
// AGE: a supervisor keeps optimising for hundreds of checkpoints (TurboFan compiles on V8's worker
// threads, ~1–2 functions a checkpoint, still after 40 cycles; its CPU is counted in whichever
// request it overlaps), so its first phase after a start costs more than its second. Every round
// therefore starts the measured session anew, whichever phase comes first, and the session in
// between (the peer alone, the other session beside) anew right before that phase: the ages
// match on both sides. (Before, a session was started again only when the round needed it
// stopped, which made main the younger in its alone phases and the branch in its phases beside:
// main 0.68–0.84×, the branch 1.06–1.63× with the same work on both sides.)
// "Beside" (held): in the both-active phase the two sessions take turns, cycle by cycle, so every
// checkpoint of one follows a cycle of the other's writes and checkpoint (what it costs to scan
// and catch up with another session's work is in the figure), while no two cycles overlap (the
// figure is not a measure of two processes sharing two cores). "Alone" takes turns the same way
// with a peer: a session of another project (its own store) doing the same work, so the two
// phases differ only in whether the session in between shares the store (a session working
// back to back without a break keeps its caches warmer, which is not what is compared here).
// "Both at once" drives both concurrently and is reported, not held (two writers share the
// store's one write lock). Every phase begins with --settle unmeasured turns (see SETTLE).
// Statistics: one sample per cycle. A single checkpoint's CPU time varies 3–4× between identical
// cycles on a loaded machine (caches and cores shared with other work), so a ratio needs many
// samples: every figure is the median over all cycles of its phase (--rounds / 2 × --cycles), with
// its interquartile range; the ratio is the ratio of those medians, held to the target, printed
// with a 90% interval from a bootstrap over rounds (rounds drawn with replacement, so a round
// measured during a burst of load weighs as it would in another run) and the range of the
// ratios of single rounds.
//   node bench/side-by-side.bench.mjs [--writes 50] [--cycles 6] [--rounds 8] [--both 3] [--settle 2] [--warmup 60]
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, median, numberOption, printTable, tempProject } from "./lib.mjs";
import { callSupervisor } from "../dist/core/rpc/call.js";

const WRITES = numberOption("writes", 50);
const ROUNDS = numberOption("rounds", 8);
const CYCLES = numberOption("cycles", 6);
/** Cycles per round that drive both sessions at once (reported only). */
const BOTH = numberOption("both", 3);
const TARGET = 1.2;
// A supervisor started again for a phase runs code V8 has not optimised yet (measured: 1.5× the CPU
// of a warm one after 1 warm-up cycle, 1.3× after 10), so it warms up first. With every round
// starting its sessions anew (AGE), 20 left the rounds' ratios at 0.5–3.4× (90% intervals up to
// 0.6–2.7×); 60 (~2 s a start) brought them to 0.7–1.9× (0.9–1.2× for main).
const WARMUP = numberOption("warmup", 60);
/**
 * Unmeasured turns at the start of every phase: in runs without them, the 2nd and 3rd checkpoints
 * of the phase beside (right after the other's start) cost 1.5–2× the median of the later ones.
 */
const SETTLE = numberOption("settle", 2);
const value = { text: "x".repeat(1000) };
/** Writes so far: each value carries its number, so no two writes store the same object. */
let written = 0;

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

/** ms of CPU of the process's JavaScript thread (its main thread, whose id is the pid). */
function jsCpuMs(pid) {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
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
const elsewhere = tempProject("apex-bench-side-peer-");
const apexIn = (dir, ...argv) => {
  const result = spawnSync(process.execPath, [APEX, ...argv], { cwd: dir, env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`apex ${argv.join(" ")} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
};
const apex = (...argv) => apexIn(work.dir, ...argv);
const gitIn = (dir, ...argv) => execFileSync("git", argv, { cwd: dir, env, encoding: "utf8" });
/** A git repository with the bench's config, committed. */
const initProject = (dir) => {
  writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
  writeFileSync(join(dir, ".gitignore"), ".apex/\n");
  gitIn(dir, "init", "-q", "-b", "main");
  gitIn(dir, "add", ".");
  gitIn(dir, "commit", "-qm", "init");
};

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
    await callSupervisor(session.socket, "memory.set", { path: `/bench/${prefix}/${i % 50}`, value: { ...value, i, n: (written += 1) }, actor: "user:bench" });
    walls.push(performance.now() - start);
  }
  const cpuMiddle = cpuMs(session.pid);
  const jsMiddle = jsCpuMs(session.pid);
  const gitBefore = gitCpuMs(session.pid);
  const start = performance.now();
  await callSupervisor(session.socket, "checkpoint.create", { description: "bench", actor: "user:bench" }, 120_000);
  const checkpointWall = performance.now() - start;
  const checkpointCpu = cpuMs(session.pid) - cpuMiddle;
  const checkpointJs = jsCpuMs(session.pid) - jsMiddle;
  const gitAfter = gitCpuMs(session.pid);
  return {
    writeWall: median(walls),
    writeCpu: (cpuMiddle - cpuBefore) / count,
    checkpointWall,
    checkpointCpu,
    checkpointJs,
    // A runner that ended was reaped by the supervisor: its CPU and its children's moved into the supervisor's cutime.
    checkpointGit: gitAfter.ms - gitBefore.ms,
  };
}

const MEASURES = ["writeWall", "writeCpu", "checkpointWall", "checkpointCpu", "checkpointJs", "checkpointGit"];
/**
 * samples[phase][measure][round] = values of that round (main's phases in even rounds, the
 * branch's in odd ones). Phases: mainAlone, branchAlone (the other stopped, taking turns with the
 * peer), mainSide, branchSide (taking turns with each other), mainBoth, branchBoth (both driven at once).
 */
const PHASES = ["mainAlone", "branchAlone", "mainSide", "branchSide", "mainBoth", "branchBoth"];
const samples = Object.fromEntries(PHASES.map((phase) => [phase, Object.fromEntries(MEASURES.map((measure) => [measure, Array.from({ length: ROUNDS }, () => [])]))]));
const record = (phase, round, result) => {
  for (const measure of MEASURES) samples[phase][measure][round].push(result[measure]);
};

const running = { main: undefined, track: undefined, peer: undefined };
let mainId;
let peerId;
try {
  initProject(work.dir);
  initProject(elsewhere.dir);
  const peerReady = JSON.parse(apexIn(elsewhere.dir, "start", "--task", "bench peer", "--json"));
  running.peer = { socket: peerReady.socket, pid: peerReady.supervisor_pid };
  peerId = peerReady.session_id;
  for (let i = 0; i < WARMUP; i++) await workload(running.peer, "warm", 10);
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
  /** Starts the peer again (`start --continue`) and warms it up. */
  const restartPeer = async () => {
    apexIn(elsewhere.dir, "stop");
    const started = JSON.parse(apexIn(elsewhere.dir, "start", "--continue", peerId, "--json"));
    running.peer = { socket: started.socket, pid: started.supervisor_pid };
    for (let i = 0; i < WARMUP; i++) await workload(running.peer, "warm", 10);
  };
  const stop = async (name) => {
    apex("--session", ref(name), "stop");
    running[name] = undefined;
    if (running[other(name)]) await workload(running[other(name)], "warm", 10);
  };
  /**
   * A session alone in its project takes turns with the peer, a session of another project (its
   * own store) doing the same work, as it takes turns with the other session of its project
   * beside it: what differs is only whether the one in between shares its store.
   */
  const alone = async (name, round) => {
    const phase = name === "main" ? "mainAlone" : "branchAlone";
    const first = [name, "peer"];
    for (let cycle = 0; cycle < SETTLE; cycle++) for (const who of first) await workload(running[who], who, WRITES);
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (const who of first) {
        const result = await workload(running[who], who, WRITES);
        if (who === name) record(phase, round, result);
      }
    }
  };
  /** Both sessions take turns cycle by cycle; only `name`'s cycles are recorded. */
  const beside = async (name, round) => {
    const order = [name, other(name)];
    for (let cycle = 0; cycle < SETTLE; cycle++) for (const who of order) await workload(running[who], who, WRITES);
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      for (const who of order) {
        const result = await workload(running[who], who, WRITES);
        if (who === name) record(name === "main" ? "mainSide" : "branchSide", round, result);
      }
    }
    // The cycles driving both at once come after, so no held cycle collects their garbage.
    for (let cycle = 0; cycle < BOTH; cycle++) {
      const [x, y] = await Promise.all([workload(running.main, "main", WRITES), workload(running.track, "track", WRITES)]);
      record(name === "main" ? "mainBoth" : "branchBoth", round, name === "main" ? x : y);
    }
  };
  // A round measures one session (main, the branch, main, …) alone (the other stopped) and
  // beside the other; both phases are of one process. Each session's rounds alternate the order
  // of its two phases (alone then beside, beside then alone, …), so a drift of the machine's load
  // within a round weighs on both sides alike. Every round starts the measured session anew, and
  // the session in between (the peer alone, the other session beside) anew right before its
  // phase: see AGE.
  for (let round = 0; round < ROUNDS; round++) {
    const name = round % 2 === 0 ? "main" : "track";
    for (const who of [name, other(name)]) if (running[who]) await stop(who);
    await start(name);
    if (Math.floor(round / 2) % 2 === 0) {
      await restartPeer();
      await alone(name, round);
      await start(other(name));
      await beside(name, round);
    } else {
      await start(other(name));
      await beside(name, round);
      await stop(other(name));
      await restartPeer();
      await alone(name, round);
    }
  }
} finally {
  spawnSync(process.execPath, [APEX, "--session", "track", "stop", "--force"], { cwd: work.dir, env });
  if (mainId) spawnSync(process.execPath, [APEX, "--session", mainId, "stop", "--force"], { cwd: work.dir, env });
  if (running.peer) spawnSync(process.execPath, [APEX, "stop", "--force"], { cwd: elsewhere.dir, env });
  spawnSync("git", ["worktree", "remove", "--force", join(worktrees.dir, "track")], { cwd: work.dir, env });
  work.cleanup();
  worktrees.cleanup();
  elsewhere.cleanup();
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
  const ratios = samples[phase][measure]
    .map((values, round) => (values.length > 0 && samples[baseline][measure][round].length > 0 ? median(values) / median(samples[baseline][measure][round]) : undefined))
    .filter((ratio) => ratio !== undefined);
  return `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
};
/** A seeded generator (mulberry32): the interval is the same for the same samples. */
const seeded = (seed) => () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
/**
 * A 90% interval of the ratio of medians: the session's rounds are drawn with replacement (the
 * same rounds for both phases, which were measured in them one after the other), their cycles
 * pooled, the ratio of medians taken; the 5th and 95th percentiles of 2000 such ratios.
 */
const interval = (phase, baseline, measure) => {
  const random = seeded(ROUNDS * 7919 + CYCLES);
  const rounds = samples[phase][measure].flatMap((values, round) => (values.length > 0 && samples[baseline][measure][round].length > 0 ? [round] : []));
  const ratios = [];
  for (let draw = 0; draw < 2000; draw++) {
    const measured = [];
    const base = [];
    for (let i = 0; i < rounds.length; i++) {
      const round = rounds[Math.floor(random() * rounds.length)];
      measured.push(...samples[phase][measure][round]);
      base.push(...samples[baseline][measure][round]);
    }
    if (measured.length > 0 && base.length > 0) ratios.push(median(measured) / median(base));
  }
  return `${quantile(ratios, 0.05).toFixed(2)}–${quantile(ratios, 0.95).toFixed(2)}`;
};
const row = (label, phase, baselinePhase, measure, target) => {
  const measured = summary(phase, measure);
  const baseline = summary(baselinePhase, measure);
  const ratio = measured.median / baseline.median;
  const spread = `90% ${interval(phase, baselinePhase, measure)}; rounds ${roundRange(phase, baselinePhase, measure)}`;
  return {
    label,
    ms: measured.median,
    baselineMs: baseline.median,
    display: `${measured.median.toFixed(2)} ms [${measured.spread}]`,
    baselineDisplay: `${baseline.median.toFixed(2)} ms [${baseline.spread}]`,
    ratio,
    target: target === undefined ? `(reported; ${spread})` : `≤ ${target}× (${spread})`,
    pass: target === undefined || ratio <= target,
  };
};
const title = (what) =>
  `${what} (${ROUNDS} rounds, each of one session alone and beside the other (the order alternating), ${CYCLES} cycles a phase (${BOTH} both at once), a cycle: ${WRITES} writes of ~1 KB then a checkpoint; baseline: the same session alone; [interquartile range]; ratio of medians with a 90% bootstrap interval over the session's rounds and the range of single rounds)`;
const met = printTable(title("Sessions side by side, CPU time of the serving supervisor"), [
  row("memory.set CPU, main beside a running branch", "mainSide", "mainAlone", "writeCpu", TARGET),
  row("memory.set CPU, the branch beside running main", "branchSide", "branchAlone", "writeCpu", TARGET),
  row("checkpoint create CPU, main beside the branch", "mainSide", "mainAlone", "checkpointCpu", TARGET),
  row("checkpoint create CPU, the branch beside main", "branchSide", "branchAlone", "checkpointCpu", TARGET),
  row("checkpoint create CPU of the JS thread alone, main beside the branch", "mainSide", "mainAlone", "checkpointJs", undefined),
  row("checkpoint create CPU of the JS thread alone, the branch beside main", "branchSide", "branchAlone", "checkpointJs", undefined),
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
