// Checkpoint benchmark (issue "Checkpoints and recovery"), in process, against the built library.
//   node bench/checkpoint.bench.mjs [--keys 10000] [--rounds 100]
// Project memory of 10k keys (~1 KB JSON values, ~10 MB) in a 3-level hierarchy; each round
// changes 1% of the keys, then takes a checkpoint. Measures:
//   - median create time (target < 10 ms), including the wait for the commit to be on disk;
//   - store growth over the rounds: LMDB pages in use (all sub-databases, from getStats())
//     against the bytes of changed values (target < 2x changed data + 1 MB);
//   - restore time of such a checkpoint (target < 1 s);
//   - listing a page of a session with 10,000 checkpoints (summaries written directly).
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { OBJECT_DATABASES, checkpointWorkload, mb, median, numberOption, pagesOf, printTable, statsOf, tempProject } from "./lib.mjs";
import { openStore } from "../dist/core/store/open.js";
import { Catalog } from "../dist/plugins/checkpoint/catalog.js";
import { createCheckpoint, listCheckpoints, restoreMemory } from "../dist/plugins/checkpoint/checkpoints.js";
import { validateStore } from "../dist/plugins/checkpoint/validate.js";

const KEYS = numberOption("keys", 10_000);
const ROUNDS = numberOption("rounds", 100);
const CHANGED = Math.max(1, Math.round(KEYS / 100));
const { random: next, paths, valueFor } = checkpointWorkload(KEYS);
const sizeOf = (value) => Buffer.byteLength(JSON.stringify(value));

/** Bytes of LMDB pages in use across every database of the environment (free pages excluded). */
function usedBytes(store) {
  const stats = statsOf(store, "meta");
  let pages = 0;
  for (const name of DATABASES) pages += pagesOf(store, name);
  return { bytes: pages * stats.pageSize, highWater: (stats.lastPageNumber + 1) * stats.pageSize };
}

// Every sub-database of the environment: the store's own and the checkpoint library's.
const CHECKPOINT_DATABASES = [...Object.keys(OBJECT_DATABASES), "checkpoints"];
const DATABASES = ["kv", "log", "meta", ...CHECKPOINT_DATABASES];

function checkpointBytes(store) {
  return CHECKPOINT_DATABASES.reduce((sum, name) => sum + pagesOf(store, name), 0) * statsOf(store, "meta").pageSize;
}

const project = tempProject("apex-bench-checkpoint-");
const store = await openStore(join(project.dir, ".apex"), { actor: "user:bench" });
try {
  await store.batch((batch) => {
    batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
    batch.set("/sessions/s1/agents/coder", { name: "coder", status: "running" });
    batch.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "bench", status: "active", assignee: "coder" });
  });
  let memoryBytes = 0;
  const versions = new Array(KEYS).fill(0);
  for (let start = 0; start < KEYS; start += 1000) {
    await store.batch((batch) => {
      for (let i = start; i < Math.min(KEYS, start + 1000); i++) {
        const value = valueFor(i, 0);
        memoryBytes += sizeOf(value);
        batch.set(paths[i], value);
      }
    });
  }

  let started = performance.now();
  const first = await createCheckpoint(store, { sessionId: "s1", trigger: "manual", description: "initial" });
  const firstMs = performance.now() - started;

  const perDatabase = () => Object.fromEntries(DATABASES.map((name) => [name, pagesOf(store, name) * 4096]));
  const dbBefore = perDatabase();
  const before = usedBytes(store);
  const beforeCheckpoint = checkpointBytes(store);
  const fileBefore = statSync(join(project.dir, ".apex", "store.mdb")).size;
  const createMs = [];
  const computeMs = [];
  // A fixed piece of the same kind of work, timed in the same rounds: how fast the machine is
  // at this moment (these machines vary by 20-30% from one run to the next).
  const referenceMs = [];
  const manifests = [first.manifest];
  let changedBytes = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const chosen = new Set();
    while (chosen.size < CHANGED) chosen.add(Math.floor(next() * KEYS));
    await store.batch((batch) => {
      for (const i of chosen) {
        versions[i] += 1;
        const value = valueFor(i, versions[i]);
        changedBytes += sizeOf(value);
        batch.set(paths[i], value);
      }
    });
    started = performance.now();
    const cpu = process.cpuUsage();
    const created = await createCheckpoint(store, { sessionId: "s1", trigger: "interval", description: `round ${round}` });
    createMs.push(performance.now() - started);
    const used = process.cpuUsage(cpu);
    computeMs.push((used.user + used.system) / 1000);
    started = performance.now();
    for (const i of chosen) createHash("sha256").update(JSON.stringify(store.get(paths[i]))).digest("hex");
    referenceMs.push(performance.now() - started);
    manifests.push(created.manifest);
    if (created.stats.memory.full) throw new Error(`round ${round} was not incremental`);
  }
  const after = usedBytes(store);
  const dbAfter = perDatabase();
  const breakdown = DATABASES.map((name) => `${name} ${mb(dbAfter[name] - dbBefore[name])}`).join(", ");
  const afterCheckpoint = checkpointBytes(store);
  const fileAfter = statSync(join(project.dir, ".apex", "store.mdb")).size;
  const growth = after.bytes - before.bytes;
  const growthTarget = 2 * changedBytes + 1024 * 1024;

  // Restore: to the previous checkpoint (1% differs), 10 back (~10%), and the first one (~63%).
  const restores = [];
  for (const [label, back] of [["previous checkpoint", 1], ["10 checkpoints back", 10], [`first checkpoint (${ROUNDS} back)`, ROUNDS]]) {
    const target = manifests[manifests.length - 1 - back];
    await restoreMemory(store, manifests.at(-1).id); // start from the latest state each time
    started = performance.now();
    const result = await restoreMemory(store, target.id);
    restores.push({ label, ms: performance.now() - started, paths: result.set.length + result.deleted.length });
  }

  started = performance.now();
  const report = validateStore(store);
  const validateMs = performance.now() - started;
  if (!report.ok) throw new Error(`validate found problems: ${JSON.stringify(report.problems.slice(0, 3))}`);

  // 10,000 checkpoints in one session: list reads only compact summaries.
  await store.transaction(() => {
    const catalog = Catalog.of(store);
    const template = manifests.at(-1);
    for (let sequence = 1; sequence <= 10_000; sequence++) {
      catalog.putCheckpoint({ ...template, session_id: "many", id: `00000000-0000-4000-8000-${String(sequence).padStart(12, "0")}`, sequence, name: `checkpoint-${String(sequence).padStart(3, "0")}` });
    }
  });
  const listMs = [];
  for (let i = 0; i < 20; i++) {
    started = performance.now();
    const page = listCheckpoints(store, "many", { limit: 50, offset: i * 100 });
    listMs.push(performance.now() - started);
    if (page.total !== 10_000 || page.items.length !== 50) throw new Error("listing is wrong");
  }

  const createMedian = median(createMs);
  const rows = [
    { label: `first checkpoint (${KEYS} keys, ${mb(memoryBytes)}, full build)`, display: `${firstMs.toFixed(1)} ms`, target: "-", pass: true },
    {
      label: `create, ${CHANGED} of ${KEYS} keys changed (median of ${ROUNDS})`,
      display: `${createMedian.toFixed(2)} ms`,
      baselineDisplay: `p90 ${[...createMs].sort((a, b) => a - b)[Math.floor(createMs.length * 0.9)].toFixed(2)} ms`,
      target: "< 10 ms",
      pass: createMedian < 10,
    },
    {
      label: "  CPU time of create (median; wall time above includes commit I/O)",
      display: `${median(computeMs).toFixed(2)} ms`,
      target: "-",
      pass: true,
    },
    {
      label: `  machine reference, same rounds: read, JSON and sha256 of the ${CHANGED} changed values (median)`,
      display: `${median(referenceMs).toFixed(2)} ms`,
      ratio: createMedian / median(referenceMs),
      target: "-",
      pass: true,
    },
    {
      label: `store growth over ${ROUNDS} checkpoints (pages in use)`,
      display: mb(growth),
      baselineDisplay: `changed ${mb(changedBytes)}`,
      ratio: growth / changedBytes,
      target: `< ${mb(growthTarget)}`,
      pass: growth < growthTarget,
    },
    { label: "  of which checkpoint objects + catalog", display: mb(afterCheckpoint - beforeCheckpoint), target: "-", pass: true },
    { label: `  by database: ${breakdown}`, display: "", target: "-", pass: true },
    { label: "  file size growth (high-water mark)", display: mb(fileAfter - fileBefore), target: "-", pass: true },
    ...restores.map((restore) => ({
      label: `restore: ${restore.label}, ${restore.paths} paths written`,
      display: `${restore.ms.toFixed(1)} ms`,
      target: "< 1000 ms",
      pass: restore.ms < 1000,
    })),
    { label: `validate (${report.checkpoints.total} checkpoints, ${report.objects.values} values, ${report.objects.trees} nodes)`, display: `${validateMs.toFixed(0)} ms`, target: "-", pass: true },
    { label: "list a page of 50 of 10,000 checkpoints (median)", display: `${median(listMs).toFixed(2)} ms`, target: "< 50 ms", pass: median(listMs) < 50 },
  ];
  const [load] = (await import("node:os")).loadavg();
  const ok = printTable(`Checkpoints: ${KEYS} keys (~${mb(memoryBytes)}), ${CHANGED} changed per round, ${ROUNDS} rounds (load average ${load.toFixed(1)})`, rows);
  process.exitCode = ok ? 0 : 1;
} finally {
  await store.close();
  project.cleanup();
}
