// LangGraph checkpointer benchmark (issue 16), side by side in one run: ApexSaver
// (apex-sessions/langgraph, writing the store directly: no supervisor runs) against LangGraph's
// SqliteSaver and MemorySaver, on the same workload:
// - a state of 10k keys of ~1 KB, as 10k channels and as one channel (a plain object);
// - 100 steps, each changing 1% of the keys (the changed channels get new versions);
// - `put` per step (median, wall and CPU time; the savers take each step in turn, so that all
//   see the same machine load), bytes on disk after the 100 steps (and where APEX's are),
//   `getTuple` of the 50th step (by a new saver, ApexSaver's and SqliteSaver's alternately;
//   then a second read by the same saver; and as the first call of a new process, as a resumed
//   graph makes it: the store or database opened by that call, the page cache warm for both;
//   alone, and with the import of the saver's module before it, where SqliteSaver loads its
//   native module while ApexSaver loads LMDB's in the call).
// Targets: ApexSaver.put ≥ 10× faster than SqliteSaver.put, ≥ 50× smaller on disk, getTuple
// no slower than SqliteSaver's.
// The values are `<key>:<step>:` and 1,000 times "x" (compressible almost to nothing: ApexSaver
// compresses the packs of channel values it writes, SqliteSaver does not compress); with --text,
// ~1,000 characters of words drawn at random for each value (compresses ~2.7× with gzip level 1),
// the figure to expect from text.
//   node bench/langgraph.bench.mjs [--keys 10000] [--steps 100] [--runs 5] [--text]
import { spawnSync } from "node:child_process";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { MemorySaver, uuid6 } from "@langchain/langgraph-checkpoint";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import { ApexSaver } from "apex-sessions/langgraph";
import { REPO, median, numberOption, pagesOf, printTable, statsOf, stepWorkload, tempProject } from "./lib.mjs";
import { openStore } from "../dist/core/store/open.js";
import { LmdbStore } from "../dist/plugins/lmdb/backend.js";
import { ObjectStore } from "../dist/plugins/checkpoint/engine/objects.js";

const KEYS = numberOption("keys", 10_000);
const STEPS = numberOption("steps", 100);
const RUNS = numberOption("runs", 5);
const { changed: CHANGED, filler: REPEATED, keyName, stepChanges } = stepWorkload(KEYS, STEPS);
const TEXT = process.argv.includes("--text");
const WORDS = "state agent tool call result message user assistant the of and to in is that it for on with as was at by from this plan step check file test code error value note task done next read write graph node edge".split(" ");
let textSeed = 2024;
/** A value's filler: the repeated character, or (--text) words drawn by a seeded generator (mulberry32). */
function filler() {
  if (!TEXT) return REPEATED;
  let text = "";
  while (text.length < 1000) {
    textSeed = (textSeed + 0x6d2b79f5) | 0;
    let t = Math.imul(textSeed ^ (textSeed >>> 15), 1 | textSeed);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    text += `${WORDS[((t ^ (t >>> 14)) >>> 0) % WORDS.length]} `;
  }
  return text;
}

const cpuMs = () => {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
};

/**
 * The puts of several savers for one shape, "channels" (a channel per key) or "object" (one
 * channel), in lockstep: each step is put to every saver in turn (the order alternating), so
 * that all see the same machine load. Per saver: first put, median put (wall and CPU ms).
 */
async function runWorkloads(savers, shape) {
  const thread = { configurable: { thread_id: `bench-${shape}`, checkpoint_ns: "" } };
  const values = {};
  for (let i = 0; i < KEYS; i++) values[keyName(i)] = `${i}:0:${filler()}`;
  const versions = {};
  const runs = savers.map(() => ({ config: thread, times: [], cpu: [], configs: [] }));
  const put = async (step, changed) => {
    const newVersions = {};
    let checkpoint;
    if (shape === "channels") {
      for (const key of changed) {
        versions[key] = step + 1;
        newVersions[key] = step + 1;
      }
    } else {
      versions.state = step + 1;
      newVersions.state = step + 1;
    }
    const order = savers.map((_, i) => i);
    if (step % 2) order.reverse();
    for (const i of order) {
      // Each saver gets its own copy of the checkpoint, as LangGraph hands one to its saver.
      const channelValues = shape === "channels" ? { ...values } : { state: { ...values } };
      checkpoint = { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: channelValues, channel_versions: { ...versions }, versions_seen: { node: { trigger: step } } };
      const run = runs[i];
      const cpu = cpuMs();
      const started = performance.now();
      run.config = await savers[i].put(run.config, checkpoint, { source: "loop", step, parents: {} }, newVersions);
      run.times.push(performance.now() - started);
      run.cpu.push(cpuMs() - cpu);
      run.configs.push(run.config);
    }
  };
  const all = Array.from({ length: KEYS }, (_, i) => i);
  for (const i of all) if (shape === "channels") versions[keyName(i)] = 1;
  await put(0, shape === "channels" ? all.map(keyName) : []);
  let step = 1;
  for (const changed of stepChanges()) {
    for (const i of changed) values[keyName(i)] = `${i}:${step}:${filler()}`;
    await put(step, changed.map(keyName));
    step += 1;
  }
  return runs.map((run) => ({ firstMs: run.times[0], putMs: median(run.times.slice(1)), putCpuMs: median(run.cpu.slice(1)), configs: run.configs }));
}

function bytesOnDisk(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.blocks * 512;
  let total = 0;
  for (const name of readdirSync(path)) total += bytesOnDisk(join(path, name));
  return total;
}

/** Where APEX's bytes are: LMDB pages per database, the object bytes in packs, free pages. */
async function apexBreakdown(dir) {
  const store = LmdbStore.open(dir, { readOnly: true });
  try {
    const stats = statsOf(store, "meta");
    const pages = {};
    for (const name of ["packs", "blobs", "trees", "index-journal", "index-filter", "kv", "log", "checkpoints"]) {
      try {
        pages[name] = pagesOf(store, name) * stats.pageSize;
      } catch {
        pages[name] = 0;
      }
    }
    const objects = ObjectStore.of(store);
    const bytes = { value: 0, tree: 0 };
    for (const kind of ["value", "tree"]) for (const hash of objects.hashes(kind)) bytes[kind] += objects.locate(kind, hash)?.length ?? 0;
    const used = Object.values(pages).reduce((a, b) => a + b, 0);
    return { file: (stats.lastPageNumber + 1) * stats.pageSize, pages, values: bytes.value, trees: bytes.tree, free: (stats.lastPageNumber + 1) * stats.pageSize - used };
  } finally {
    await store.close();
  }
}

/** getTuple of one checkpoint by a new saver of each kind, alternately, `RUNS` times; then warm reads of the last savers. */
async function timeGetTuples(makers, configs) {
  const first = makers.map(() => ({ ms: [], cpu: [] }));
  const warm = makers.map(() => ({ ms: [], cpu: [] }));
  const tuples = [];
  for (let round = 0; round < RUNS; round++) {
    const order = makers.map((_, i) => i);
    if (round % 2) order.reverse();
    for (const i of order) {
      const saver = makers[i]();
      let cpu = cpuMs();
      let started = performance.now();
      const tuple = await saver.getTuple(configs[i]);
      first[i].ms.push(performance.now() - started);
      first[i].cpu.push(cpuMs() - cpu);
      if (!tuple) throw new Error("getTuple of the 50th step found nothing");
      tuples[i] = tuple;
      cpu = cpuMs();
      started = performance.now();
      await saver.getTuple(configs[i]);
      warm[i].ms.push(performance.now() - started);
      warm[i].cpu.push(cpuMs() - cpu);
      await saver.close?.();
    }
  }
  return makers.map((_, i) => ({ firstMs: median(first[i].ms), firstCpuMs: median(first[i].cpu), warmMs: median(warm[i].ms), warmCpuMs: median(warm[i].cpu), tuple: tuples[i] }));
}

/**
 * getTuple of one checkpoint in a new process, as a resumed graph does it: LangGraph's own
 * modules loaded first (a graph has them before it makes its saver; both savers share them),
 * then the saver's module imported and the saver made, then one getTuple (which opens the
 * store or database), each timed in that process (wall and CPU). `RUNS` processes per saver,
 * ApexSaver's and SqliteSaver's alternately. The saver's own start-up is counted with the
 * call as well as apart: SqliteSaver loads its native module (better-sqlite3) as it is
 * imported, ApexSaver loads LMDB's in its first call, so the call alone would favour SqliteSaver.
 */
function timeFreshProcesses(kinds, where, configs) {
  const script = (kind) => `
    const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
    await import("@langchain/langgraph-checkpoint");
    let c = cpu(), t = performance.now();
    const saver = ${kind === "apex"
      ? `new (await import(${JSON.stringify(pathToFileURL(join(REPO, "dist/integrations/langgraph/index.js")).href)})).ApexSaver({ project: ${JSON.stringify(where.apex)} })`
      : `(await import("@langchain/langgraph-checkpoint-sqlite")).SqliteSaver.fromConnString(${JSON.stringify(where.sqlite)})`};
    const importMs = performance.now() - t, importCpu = cpu() - c;
    c = cpu(); t = performance.now();
    const tuple = await saver.getTuple(${JSON.stringify(configs[kind])});
    const ms = performance.now() - t, cpuMs = cpu() - c;
    if (!tuple) throw new Error("nothing found");
    console.log(JSON.stringify({ importMs, importCpu, ms, cpuMs }));
    process.exit(0);`;
  const times = Object.fromEntries(kinds.map((kind) => [kind, { ms: [], cpuMs: [], importMs: [], totalMs: [], totalCpu: [] }]));
  for (let round = 0; round < RUNS; round++) {
    for (const kind of round % 2 ? [...kinds].reverse() : kinds) {
      const result = spawnSync(process.execPath, ["--input-type=module", "-e", script(kind)], { cwd: REPO, encoding: "utf8" });
      if (result.status !== 0) throw new Error(`getTuple in a new process (${kind}) failed: ${result.stderr}`);
      const measured = JSON.parse(result.stdout.trim().split("\n").pop());
      times[kind].ms.push(measured.ms);
      times[kind].cpuMs.push(measured.cpuMs);
      times[kind].importMs.push(measured.importMs);
      times[kind].totalMs.push(measured.importMs + measured.ms);
      times[kind].totalCpu.push(measured.importCpu + measured.cpuMs);
    }
  }
  return Object.fromEntries(kinds.map((kind) => [kind, Object.fromEntries(Object.entries(times[kind]).map(([name, values]) => [name, median(values)]))]));
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
    const sqliteProject = tempProject("apex-bench-sqlite-");
    cleanups.push(sqliteProject.cleanup);
    const sqliteFile = join(sqliteProject.dir, "checkpoints.db");

    const apex = new ApexSaver({ project: apexProject.dir });
    const sqlite = SqliteSaver.fromConnString(sqliteFile);
    const [apexRun, sqliteRun, memoryRun] = await runWorkloads([apex, sqlite, new MemorySaver()], shape);
    await apex.close();
    sqlite.db.pragma("wal_checkpoint(TRUNCATE)");
    sqlite.db.close();
    const apexBytes = bytesOnDisk(join(apexProject.dir, ".apex"));
    const sqliteBytes = bytesOnDisk(sqliteProject.dir);
    const breakdown = await apexBreakdown(join(apexProject.dir, ".apex"));

    const [apexGet, sqliteGet] = await timeGetTuples(
      [() => new ApexSaver({ project: apexProject.dir }), () => SqliteSaver.fromConnString(sqliteFile)],
      [apexRun.configs[50], sqliteRun.configs[50]],
    );
    const fresh = timeFreshProcesses(["apex", "sqlite"], { apex: apexProject.dir, sqlite: sqliteFile }, { apex: apexRun.configs[50], sqlite: sqliteRun.configs[50] });
    const flat = (values) => (shape === "channels" ? values : values.state);
    const a = flat(apexGet.tuple.checkpoint.channel_values);
    const b = flat(sqliteGet.tuple.checkpoint.channel_values);
    if (Object.keys(a).length !== KEYS || Object.keys(b).length !== KEYS || Object.keys(a).some((key) => a[key] !== b[key])) {
      throw new Error("ApexSaver and SqliteSaver read back different states for the 50th step");
    }
    results[shape] = { apexRun, apexBytes, apexGet, sqliteRun, sqliteBytes, sqliteGet, memoryRun, breakdown, fresh };
  }
} finally {
  for (const cleanup of cleanups) cleanup();
}

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
const rows = [];
const faster = (label, apexMs, baseMs, times, note = "") => ({ label, ms: apexMs, baselineMs: baseMs, ratio: apexMs / baseMs, target: `≥ ${times}× faster than SqliteSaver${note}`, pass: baseMs / apexMs >= times });
const noSlower = (label, apexMs, baseMs) => ({ label, ms: apexMs, baselineMs: baseMs, ratio: apexMs / baseMs, target: "≤ SqliteSaver's", pass: apexMs <= baseMs });
for (const [shape, r] of Object.entries(results)) {
  const label = shape === "channels" ? `${KEYS} channels` : `one channel of ${KEYS} keys`;
  rows.push(
    faster(`${label}: ApexSaver.put, median of ${STEPS} steps (1% changed)`, r.apexRun.putMs, r.sqliteRun.putMs, 10),
    faster(`  CPU time of the same puts`, r.apexRun.putCpuMs, r.sqliteRun.putCpuMs, 10),
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
    noSlower(`${label}: getTuple of step 50, first read by a new saver (median of ${RUNS})`, r.apexGet.firstMs, r.sqliteGet.firstMs),
    noSlower(`  CPU time of the same reads`, r.apexGet.firstCpuMs, r.sqliteGet.firstCpuMs),
    noSlower(`  warm (the same saver again), median of ${RUNS}`, r.apexGet.warmMs, r.sqliteGet.warmMs),
    noSlower(`  in a new process (the saver's first call: opens the store), median of ${RUNS}`, r.fresh.apex.ms, r.fresh.sqlite.ms),
    noSlower(`  CPU time of the same reads`, r.fresh.apex.cpuMs, r.fresh.sqlite.cpuMs),
    noSlower(`  the saver's module imported and made, then that call (LangGraph's modules loaded before)`, r.fresh.apex.totalMs, r.fresh.sqlite.totalMs),
    noSlower(`  CPU time of the same`, r.fresh.apex.totalCpu, r.fresh.sqlite.totalCpu),
    { label: `  of which the saver's module and construction (for reference)`, ms: r.fresh.apex.importMs, baselineMs: r.fresh.sqlite.importMs, ratio: r.fresh.apex.importMs / r.fresh.sqlite.importMs, target: "-", pass: true },
  );
}
const ok = printTable(`LangGraph checkpointers: ApexSaver vs SqliteSaver (baseline column) and MemorySaver; values: ${TEXT ? "words (--text)" : 'one repeated character ("x")'}`, rows);
for (const [shape, r] of Object.entries(results)) {
  const b = r.breakdown;
  console.log(
    `\nAPEX store after ${STEPS} steps (${shape}): file ${mb(b.file)}; value objects ${mb(b.values)} (uncompressed) and tree nodes ${mb(b.trees)} in packs of ${mb(b.pages.packs)} of pages; ` +
      `hash indexes ${mb(b.pages.blobs + b.pages.trees + b.pages["index-journal"] + b.pages["index-filter"])}; keyspace and log ${mb(b.pages.kv + b.pages.log)}; catalog ${mb(b.pages.checkpoints)}; free pages ${mb(b.free)}.`,
  );
}
process.exitCode = ok ? 0 : 1;
