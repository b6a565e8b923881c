// Branch and merge benchmark (issue "Parallel development tracks"), in process, against the built library.
//   node bench/branch-merge.bench.mjs [--keys 10000] [--big 100000] [--rounds 15]
// Project memory of ~1 KB values (the checkpoint benchmarks' workload). Measures, as ratios in one run:
//   - `apex session branch` of a checkpoint of --keys keys against `apex checkpoint show` of it, the
//     commands as a user runs them (target: within 2×); the same in process is reported (a durable
//     commit against a read);
//   - merging two branches that each changed 1% of --keys keys (disjoint paths) against
//     `checkpoint create` after a 1% change (target: within 3×);
//   - the same merge (same absolute change) on --big keys against the --keys figure (target: under 1.5×).
import { join } from "node:path";
import { apexArgs, checkpointWorkload, median, numberOption, printTable, tempProject, timeOnce } from "./lib.mjs";
import { LmdbStore } from "../dist/plugins/lmdb/backend.js";
import { Catalog } from "../dist/plugins/checkpoint/catalog.js";
import { createCheckpoint, loadManifest } from "../dist/plugins/checkpoint/checkpoints.js";
import { createBranch, writeDerivedCheckpoint } from "../dist/plugins/checkpoint/branch.js";
import { applyToTree, objectView } from "../dist/plugins/checkpoint/merge.js";
import { mergeSessions } from "../dist/plugins/checkpoint/session-merge.js";
import { checkpointRecord } from "../dist/plugins/checkpoint/record.js";

const KEYS = numberOption("keys", 10_000);
const BIG = numberOption("big", 100_000);
const ROUNDS = numberOption("rounds", 15);
const CHANGED = Math.max(1, Math.round(KEYS / 100));

/** A store holding `keys` keys in session "main", with its first checkpoint. */
async function setup(keys) {
  const project = tempProject("apex-bench-branch-");
  const store = LmdbStore.open(join(project.dir, ".apex"), { actor: "user:bench" });
  const workload = checkpointWorkload(keys);
  await store.batch((batch) => {
    batch.set("/sessions/main", { session_id: "main", status: "active", agents: ["coder"], history: [{ event: "started", at: new Date().toISOString() }] });
    batch.set("/sessions/current", { session_id: "main" });
    batch.set("/sessions/main/tasks/t-0001", { id: "t-0001", title: "bench", status: "active", assignee: "coder" });
  });
  for (let start = 0; start < keys; start += 2000) {
    await store.batch((batch) => {
      for (let i = start; i < Math.min(keys, start + 2000); i++) batch.set(workload.paths[i], workload.valueFor(i, 0));
    });
  }
  const base = (await createCheckpoint(store, { sessionId: "main", trigger: "interval" })).manifest;
  return { project, store, workload, base, keys };
}

const latest = (store, sessionId) => {
  const summary = Catalog.of(store).latest(sessionId);
  return loadManifest(store, { sessionId, sequence: summary.sequence, id: summary.id });
};

/** A checkpoint on a branch that is not running: its latest trees with `indexes` changed. */
async function work(context, sessionId, indexes, version) {
  const { store, workload } = context;
  await store.transaction(() => {
    const parent = latest(store, sessionId);
    const view = objectView(store);
    const changes = indexes.map((i) => ({ path: workload.paths[i], kind: "modified", hash: view.writeValue(workload.valueFor(i, version)) }));
    const memory = applyToTree(view, parent.memory.root, changes);
    writeDerivedCheckpoint(store, {
      sessionId,
      trigger: "interval",
      description: "work",
      parent: parent.id,
      createdAt: new Date().toISOString(),
      roots: { memory: { ...parent.memory, root: memory.root, keys: parent.memory.keys + memory.delta }, tasks: parent.tasks, agents: parent.agents },
      gitState: null,
      data: {},
      actor: "user:bench",
    });
  });
}

/** Two fresh branches of the base checkpoint, each changing `changed` keys (disjoint), then the merge of one into the other. */
async function mergeRounds(context, rounds, changed) {
  const times = [];
  for (let round = 0; round < rounds; round++) {
    const a = (await createBranch(context.store, context.base.id, `a-${round}`)).session_id;
    const b = (await createBranch(context.store, context.base.id, `b-${round}`)).session_id;
    const picks = new Set();
    while (picks.size < changed * 2) picks.add(Math.floor(context.workload.random() * context.keys));
    const chosen = [...picks];
    await work(context, a, chosen.slice(0, changed), round + 1);
    await work(context, b, chosen.slice(changed), round + 1);
    const started = performance.now();
    const report = await mergeSessions(context.store, { source: b, destination: a });
    times.push(performance.now() - started);
    if (report.memory.changes.length !== changed || report.memory.conflicts.length !== 0) throw new Error(`unexpected merge: ${report.memory.changes.length} changes`);
  }
  return median(times);
}

/**
 * Merges into "main", which holds the live memory (the live path, as DST's supervisor runs it):
 * each round, `live` keys written live since main's latest checkpoint and a branch of that
 * checkpoint changing `changed` others, merged in. Returns the median wall and CPU times and the
 * last report's `hashed`.
 */
async function liveMergeRounds(context, rounds, live, changed) {
  const times = [];
  const cpu = [];
  let hashed;
  for (let round = 0; round < rounds; round++) {
    const branch = (await createBranch(context.store, latest(context.store, "main").id, `live-${round}`)).session_id;
    const picks = new Set();
    while (picks.size < live + changed) picks.add(Math.floor(context.workload.random() * context.keys));
    const chosen = [...picks];
    await work(context, branch, chosen.slice(live), 3000 + round);
    await context.store.batch((batch) => {
      for (const i of chosen.slice(0, live)) batch.set(context.workload.paths[i], context.workload.valueFor(i, 2000 + round));
    });
    const started = performance.now();
    const cpuStarted = process.cpuUsage();
    const report = await mergeSessions(context.store, { source: branch, destination: "main" });
    times.push(performance.now() - started);
    const used = process.cpuUsage(cpuStarted);
    cpu.push((used.user + used.system) / 1000);
    if (report.applied !== "live" || report.memory.changes.length !== changed) throw new Error(`unexpected live merge: ${report.applied}, ${report.memory.changes.length} changes`);
    hashed = report.hashed;
  }
  return { ms: median(times), cpuMs: median(cpu), hashed };
}

const small = await setup(KEYS);
const rows = [];
try {
  // Branch vs show.
  const showMs = [];
  const branchMs = [];
  const showCpu = [];
  const branchCpu = [];
  const cpuMs = (start) => {
    const used = process.cpuUsage(start);
    return (used.user + used.system) / 1000;
  };
  for (let round = 0; round < ROUNDS; round++) {
    let started = performance.now();
    let cpu = process.cpuUsage();
    checkpointRecord(small.store, small.base.id);
    showMs.push(performance.now() - started);
    showCpu.push(cpuMs(cpu));
    started = performance.now();
    cpu = process.cpuUsage();
    await createBranch(small.store, small.base.id, `branch-${round}`);
    branchMs.push(performance.now() - started);
    branchCpu.push(cpuMs(cpu));
  }
  const show = median(showMs);
  const branch = median(branchMs);
  // In process (reported): the wall time of a branch is mostly its synced commit, a fixed cost of
  // every durable write whatever the memory's size, where show only reads; its CPU time says what it computes.
  rows.push({ label: `session branch (${KEYS} keys), in process`, ms: branch, baselineMs: show, ratio: branch / show, target: "-", pass: true });
  const [branchCpuMs, showCpuMs] = [median(branchCpu), median(showCpu)];
  rows.push({ label: "  the same, CPU time (the commit's disk flushes excluded)", ms: branchCpuMs, baselineMs: showCpuMs, ratio: branchCpuMs / showCpuMs, target: "-", pass: true });
  // The commands themselves, as a user runs them (the built CLI, a process each, interleaved): held to the target.
  const cliShow = [];
  const cliBranch = [];
  const cli = (...args) => timeOnce(process.execPath, apexArgs(...args), { cwd: small.project.dir });
  cli("checkpoint", "show", small.base.id);
  cli("session", "branch", small.base.id, "cli-warmup");
  for (let round = 0; round < ROUNDS; round++) {
    cliShow.push(cli("checkpoint", "show", small.base.id));
    cliBranch.push(cli("session", "branch", small.base.id, `cli-${round}`));
  }
  const [cliBranchMs, cliShowMs] = [median(cliBranch), median(cliShow)];
  rows.push({ label: `\`apex session branch\` vs \`apex checkpoint show\` (${KEYS} keys)`, ms: cliBranchMs, baselineMs: cliShowMs, ratio: cliBranchMs / cliShowMs, target: "≤ 2× checkpoint show", pass: cliBranchMs / cliShowMs <= 2 });

  // Merge vs create after a 1% change.
  const createMs = [];
  const createCpu = [];
  for (let round = 0; round < ROUNDS; round++) {
    await small.store.batch((batch) => {
      for (let k = 0; k < CHANGED; k++) {
        const i = Math.floor(small.workload.random() * KEYS);
        batch.set(small.workload.paths[i], small.workload.valueFor(i, 1000 + round));
      }
    });
    const started = performance.now();
    const cpu = process.cpuUsage();
    await createCheckpoint(small.store, { sessionId: "main", trigger: "interval" });
    createMs.push(performance.now() - started);
    createCpu.push(cpuMs(cpu));
  }
  const create = median(createMs);
  const merge = await mergeRounds(small, ROUNDS, CHANGED);
  rows.push({ label: `session merge, 1% of ${KEYS} keys on each side`, ms: merge, baselineMs: create, ratio: merge / create, target: "≤ 3× checkpoint create", pass: merge / create <= 3 });
  // Into the live memory (10% written live since its checkpoint, 1% merged in): reported, with the records it hashed.
  const live = await liveMergeRounds(small, ROUNDS, CHANGED * 10, CHANGED);
  rows.push({ label: `live session merge, 10% of ${KEYS} keys live, 1% merged`, ms: live.ms, baselineMs: create, ratio: live.ms / create, target: "-", pass: true });
  const createCpuMs = median(createCpu);
  rows.push({ label: "  the same, CPU time (the commits' disk flushes excluded)", ms: live.cpuMs, baselineMs: createCpuMs, ratio: live.cpuMs / createCpuMs, target: "-", pass: true });
  console.log(`live merge: records of the live state hashed ${JSON.stringify(live.hashed)} (${CHANGED * 10} written live, ${CHANGED} merged in)`);
} finally {
  await small.store.close();
  small.project.cleanup();
}

const big = await setup(BIG);
try {
  const mergeSmall = rows.find((row) => row.label.startsWith("session merge, 1%")).ms;
  const mergeBig = await mergeRounds(big, ROUNDS, CHANGED);
  rows.push({ label: `session merge, ${CHANGED} keys a side of ${BIG}`, ms: mergeBig, baselineMs: mergeSmall, ratio: mergeBig / mergeSmall, target: `< 1.5× the ${KEYS}-key merge`, pass: mergeBig / mergeSmall < 1.5 });
} finally {
  await big.store.close();
  big.project.cleanup();
}

process.exitCode = printTable("Branch and merge", rows) ? 0 : 1;
