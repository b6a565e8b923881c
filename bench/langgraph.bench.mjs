// LangGraph checkpointer benchmark (issue 16), side by side in one run: ApexSaver
// (apex-sessions/langgraph, writing the store directly: no supervisor runs) against LangGraph's
// SqliteSaver and MemorySaver, on the same workload:
// - a state of 10k keys of ~1 KB, as 10k channels and as one channel (a plain object);
// - 100 steps, each changing 1% of the keys (the changed channels get new versions);
// - `put` per step (median), bytes on disk after the 100 steps, `getTuple` of the 50th step
//   (first read by a fresh saver, then the median of warm reads).
// Targets: ApexSaver.put ≥ 10× faster than SqliteSaver.put, ≥ 50× smaller on disk, getTuple
// no slower than SqliteSaver's.
//   node bench/langgraph.bench.mjs [--keys 10000] [--steps 100] [--runs 5]
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MemorySaver, uuid6 } from "@langchain/langgraph-checkpoint";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import { ApexSaver } from "apex-sessions/langgraph";
import { median, numberOption, printTable, tempProject } from "./lib.mjs";
import { openStore } from "../dist/core/store/open.js";

const KEYS = numberOption("keys", 10_000);
const STEPS = numberOption("steps", 100);
const RUNS = numberOption("runs", 5);
const CHANGED = Math.max(1, Math.round(KEYS / 100));
const filler = "x".repeat(1000);
const keyName = (i) => `k${String(i).padStart(5, "0")}`;

/** A deterministic sequence of steps: which keys change at each step. */
function* stepChanges() {
  let seed = 42;
  const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % KEYS);
  for (let step = 1; step <= STEPS; step++) {
    const keys = new Set();
    while (keys.size < CHANGED) keys.add(next());
    yield [...keys];
  }
}

/** The puts of one saver for one shape: "channels" (a channel per key) or "object" (one channel). */
async function runWorkload(saver, shape) {
  const thread = { configurable: { thread_id: `bench-${shape}`, checkpoint_ns: "" } };
  const values = {};
  for (let i = 0; i < KEYS; i++) values[keyName(i)] = `${i}:0:${filler}`;
  const versions = {};
  let config = thread;
  const put = async (step, changed) => {
    const newVersions = {};
    let checkpoint;
    if (shape === "channels") {
      for (const key of changed) {
        versions[key] = step + 1;
        newVersions[key] = step + 1;
      }
      checkpoint = { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { ...values }, channel_versions: { ...versions }, versions_seen: { node: { trigger: step } } };
    } else {
      versions.state = step + 1;
      newVersions.state = step + 1;
      checkpoint = { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: { state: { ...values } }, channel_versions: { ...versions }, versions_seen: { node: { trigger: step } } };
    }
    const started = performance.now();
    config = await saver.put(config, checkpoint, { source: "loop", step, parents: {} }, newVersions);
    return { ms: performance.now() - started, config };
  };
  const all = Array.from({ length: KEYS }, (_, i) => i);
  for (const i of all) if (shape === "channels") versions[keyName(i)] = 1;
  const first = await put(0, shape === "channels" ? all.map(keyName) : []);
  const times = [];
  const configs = [first.config];
  let step = 1;
  for (const changed of stepChanges()) {
    for (const i of changed) values[keyName(i)] = `${i}:${step}:${filler}`;
    const result = await put(step, changed.map(keyName));
    times.push(result.ms);
    configs.push(result.config);
    step += 1;
  }
  return { firstMs: first.ms, putMs: median(times), configs };
}

function bytesOnDisk(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.blocks * 512;
  let total = 0;
  for (const name of readdirSync(path)) total += bytesOnDisk(join(path, name));
  return total;
}

async function timeGetTuple(makeSaver, config) {
  const fresh = makeSaver();
  let started = performance.now();
  const tuple = await fresh.getTuple(config);
  const firstMs = performance.now() - started;
  if (!tuple) throw new Error("getTuple of the 50th step found nothing");
  const warm = [];
  for (let i = 0; i < RUNS; i++) {
    started = performance.now();
    await fresh.getTuple(config);
    warm.push(performance.now() - started);
  }
  await fresh.close?.();
  return { firstMs, warmMs: median(warm), tuple };
}

const cleanups = [];
const results = {};
try {
  for (const shape of ["channels", "object"]) {
    // APEX: a project with a session and no supervisor; only the checkpoint plugin (no retention: all 100 steps stay).
    const apexProject = tempProject("apex-bench-langgraph-");
    cleanups.push(apexProject.cleanup);
    writeFileSync(join(apexProject.dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n");
    const store = await openStore(join(apexProject.dir, ".apex"));
    await store.batch((batch) => {
      batch.set("/sessions/bench", { session_id: "bench", status: "stopped", agents: [], supervisor: null, history: [] });
      batch.set("/sessions/current", { session_id: "bench" });
    });
    await store.close();
    const apex = new ApexSaver({ project: apexProject.dir });
    const apexRun = await runWorkload(apex, shape);
    await apex.close();
    const apexBytes = bytesOnDisk(join(apexProject.dir, ".apex"));
    const apexGet = await timeGetTuple(() => new ApexSaver({ project: apexProject.dir }), apexRun.configs[50]);

    const sqliteProject = tempProject("apex-bench-sqlite-");
    cleanups.push(sqliteProject.cleanup);
    const sqliteFile = join(sqliteProject.dir, "checkpoints.db");
    const sqlite = SqliteSaver.fromConnString(sqliteFile);
    const sqliteRun = await runWorkload(sqlite, shape);
    sqlite.db.pragma("wal_checkpoint(TRUNCATE)");
    sqlite.db.close();
    const sqliteBytes = bytesOnDisk(sqliteProject.dir);
    const sqliteGet = await timeGetTuple(() => SqliteSaver.fromConnString(sqliteFile), sqliteRun.configs[50]);

    const memoryRun = await runWorkload(new MemorySaver(), shape);

    const a = apexGet.tuple.checkpoint.channel_values;
    const b = sqliteGet.tuple.checkpoint.channel_values;
    if (JSON.stringify(shape === "channels" ? a[keyName(7)] : a.state[keyName(7)]) !== JSON.stringify(shape === "channels" ? b[keyName(7)] : b.state[keyName(7)])) {
      throw new Error("ApexSaver and SqliteSaver read back different states for the 50th step");
    }
    results[shape] = { apexRun, apexBytes, apexGet, sqliteRun, sqliteBytes, sqliteGet, memoryRun };
  }
} finally {
  for (const cleanup of cleanups) cleanup();
}

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const rows = [];
for (const [shape, r] of Object.entries(results)) {
  const label = shape === "channels" ? `${KEYS} channels` : `one channel of ${KEYS} keys`;
  rows.push(
    { label: `${label}: ApexSaver.put, median of ${STEPS} steps (1% changed)`, ms: r.apexRun.putMs, baselineMs: r.sqliteRun.putMs, ratio: r.apexRun.putMs / r.sqliteRun.putMs, target: "≥ 10× faster than SqliteSaver", pass: r.sqliteRun.putMs / r.apexRun.putMs >= 10 },
    { label: `  MemorySaver.put (for reference)`, ms: r.memoryRun.putMs, target: "-", pass: true },
    { label: `  first put (the whole state): ApexSaver vs SqliteSaver`, ms: r.apexRun.firstMs, baselineMs: r.sqliteRun.firstMs, ratio: r.apexRun.firstMs / r.sqliteRun.firstMs, target: "-", pass: true },
    {
      label: `${label}: bytes on disk after ${STEPS} steps`,
      display: mb(r.apexBytes),
      baselineDisplay: mb(r.sqliteBytes),
      ratio: r.apexBytes / r.sqliteBytes,
      target: "≥ 50× smaller than SqliteSaver",
      pass: r.sqliteBytes / r.apexBytes >= 50,
    },
    { label: `${label}: getTuple of step 50, first read by a new saver`, ms: r.apexGet.firstMs, baselineMs: r.sqliteGet.firstMs, ratio: r.apexGet.firstMs / r.sqliteGet.firstMs, target: "≤ SqliteSaver's", pass: r.apexGet.firstMs <= r.sqliteGet.firstMs },
    { label: `  warm, median of ${RUNS}`, ms: r.apexGet.warmMs, baselineMs: r.sqliteGet.warmMs, ratio: r.apexGet.warmMs / r.sqliteGet.warmMs, target: "≤ SqliteSaver's", pass: r.apexGet.warmMs <= r.sqliteGet.warmMs },
  );
}
const ok = printTable(`LangGraph checkpointers: ApexSaver vs SqliteSaver (baseline column) and MemorySaver`, rows);
process.exitCode = ok ? 0 : 1;
