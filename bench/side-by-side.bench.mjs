// Sessions side by side (issue "Parallel development tracks"): two sessions of one project
// active at once — main in the project's working tree, a branch in its own git worktree, each
// with its own supervisor and agents — against one session alone, in the same run:
// - memory writes (`memory.set` of ~1 KB values over the session's socket, what `apex memory set`
//   and agents send) and `checkpoint create` (after those writes) in each session: median time
//   within 1.2× of the same work in one session alone.
// Rounds alternate alone / side by side (the branch stopped, then running) so both see the same
// machine load. "each" is measured one session at a time with the other active and idle; the
// row "both at once" drives both sessions concurrently and is reported, not held to the target
// (two writers share the store's one write lock and, here, two CPU cores).
//   node bench/side-by-side.bench.mjs [--writes 50] [--cycles 3] [--rounds 4]
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, median, numberOption, printTable, tempProject } from "./lib.mjs";
import { callSupervisor } from "../dist/core/rpc/call.js";

const WRITES = numberOption("writes", 50);
const ROUNDS = numberOption("rounds", 4);
const CYCLES = numberOption("cycles", 3);
const TARGET = 1.2;
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

const work = tempProject("apex-bench-side-");
const worktrees = tempProject("apex-bench-side-wt-");
const apex = (...argv) => {
  const result = spawnSync(process.execPath, [APEX, ...argv], { cwd: work.dir, env, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`apex ${argv.join(" ")} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
};
const git = (...argv) => execFileSync("git", argv, { cwd: work.dir, env, encoding: "utf8" });

/** `count` writes and then one checkpoint in a session: ms per write (median) and the checkpoint's ms. */
async function workload(socket, prefix, count) {
  const writes = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await callSupervisor(socket, "memory.set", { path: `/bench/${prefix}/${i % 50}`, value: { ...value, i }, actor: "user:bench" });
    writes.push(performance.now() - start);
  }
  const start = performance.now();
  await callSupervisor(socket, "checkpoint.create", { description: "bench", actor: "user:bench" }, 120_000);
  return { write: median(writes), checkpoint: performance.now() - start };
}

const samples = { aloneWrite: [], aloneCheckpoint: [], sideWrite: [], sideCheckpoint: [], branchWrite: [], branchCheckpoint: [], bothWrite: [], bothCheckpoint: [] };
try {
  writeFileSync(join(work.dir, "apex.config.yaml"), CONFIG);
  writeFileSync(join(work.dir, ".gitignore"), ".apex/\n");
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-qm", "init");
  const main = JSON.parse(apex("start", "--task", "bench main", "--json"));
  apex("checkpoint", "create", "base");
  apex("session", "branch", "latest", "track", "--worktree", join(worktrees.dir, "track"));
  await workload(main.socket, "warm", 20);
  let branch;
  const startBranch = async () => {
    branch = JSON.parse(apex("start", "--continue", "track", "--json"));
    await workload(branch.socket, "warm", 10);
  };
  const stopBranch = () => {
    apex("--session", "track", "stop");
    branch = undefined;
  };
  const record = (write, checkpoint, result) => {
    samples[write].push(result.write);
    samples[checkpoint].push(result.checkpoint);
  };
  // ABBA: alone, side, side, alone, … so that a drift of the machine's load weighs on both alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const phase of round % 2 === 0 ? ["alone", "side"] : ["side", "alone"]) {
      if (phase === "alone") {
        if (branch) stopBranch();
        for (let cycle = 0; cycle < CYCLES; cycle++) record("aloneWrite", "aloneCheckpoint", await workload(main.socket, "main", WRITES));
      } else {
        if (!branch) await startBranch();
        for (let cycle = 0; cycle < CYCLES; cycle++) {
          record("sideWrite", "sideCheckpoint", await workload(main.socket, "main", WRITES));
          record("branchWrite", "branchCheckpoint", await workload(branch.socket, "track", WRITES));
          const [x, y] = await Promise.all([workload(main.socket, "main", WRITES), workload(branch.socket, "track", WRITES)]);
          record("bothWrite", "bothCheckpoint", x);
          record("bothWrite", "bothCheckpoint", y);
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

const m = Object.fromEntries(Object.entries(samples).map(([key, values]) => [key, median(values)]));
const row = (label, ms, baselineMs, target) => ({ label, ms, baselineMs, ratio: ms / baselineMs, target: target === undefined ? "(reported)" : `≤ ${target}×`, pass: target === undefined || ms / baselineMs <= target });
const rows = [
  row("memory.set, main beside a running branch", m.sideWrite, m.aloneWrite, TARGET),
  row("memory.set, the branch beside running main", m.branchWrite, m.aloneWrite, TARGET),
  row("checkpoint create, main beside the branch", m.sideCheckpoint, m.aloneCheckpoint, TARGET),
  row("checkpoint create, the branch beside main", m.branchCheckpoint, m.aloneCheckpoint, TARGET),
  row("memory.set, both at once (reported)", m.bothWrite, m.aloneWrite, undefined),
  row("checkpoint create, both at once (reported)", m.bothCheckpoint, m.aloneCheckpoint, undefined),
];
const met = printTable(`Sessions side by side (${CYCLES}× ${WRITES} writes of ~1 KB then a checkpoint per phase, ${ROUNDS} rounds ABBA; baseline: one session alone)`, rows);
process.exitCode = met ? 0 : 1;
