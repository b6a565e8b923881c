// Compression benchmark (issue "Policy plugins"), in process, against the built library.
//   node bench/compression.bench.mjs [--keys 10000] [--rounds 100] [--after 1]
// The checkpoint benchmark's store: project memory of 10k keys (~1 KB JSON values, ~10 MB)
// in a 3-level hierarchy, 1% of the keys changed per round, a checkpoint per round. A copy of
// the store is made (LMDB backup) for each algorithm; in each, the data of every checkpoint
// but the newest `after` is compressed (`apex session compress --after N`). Measures:
//   - compression ratio of the cold values, and of all packs (target: cold data > 2x smaller);
//   - compression time;
//   - restore time of a compressed checkpoint against the same restore before compression
//     (previous checkpoint, 10 back, the first one), medians of interleaved runs
//     (target: compressed < 2x uncompressed and < 1 s);
//   - reading every value of the first checkpoint, and validate, after compression.
import { join } from "node:path";
import { OBJECT_DATABASES, checkpointWorkload, mb, median, numberOption, pagesOf, printTable, statsOf, tempProject } from "./lib.mjs";
import { openStore } from "../dist/core/store/open.js";
import { ObjectStore } from "../dist/plugins/checkpoint/engine/objects.js";
import { createCheckpoint, readCheckpointMemory, restoreMemory } from "../dist/plugins/checkpoint/checkpoints.js";
import { validateStore } from "../dist/plugins/checkpoint/validate.js";
import { compressColdData } from "../dist/plugins/compression/compress.js";

const KEYS = numberOption("keys", 10_000);
const ROUNDS = numberOption("rounds", 100);
const AFTER = numberOption("after", 1);
const RUNS = numberOption("runs", 5);
const CHANGED = Math.max(1, Math.round(KEYS / 100));
// The same data as bench/checkpoint.bench.mjs.
const { random: next, paths, valueFor } = checkpointWorkload(KEYS);
/** Bytes of LMDB pages in use across the object databases. */
function objectPages(store) {
  return Object.keys(OBJECT_DATABASES).reduce((sum, name) => sum + pagesOf(store, name), 0) * statsOf(store, "meta").pageSize;
}

async function buildStore(dir) {
  const store = await openStore(dir, { actor: "user:bench" });
  await store.batch((batch) => {
    batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
    batch.set("/sessions/s1/agents/coder", { name: "coder", status: "running" });
    batch.set("/sessions/s1/tasks/t-0001", { id: "t-0001", title: "bench", status: "active", assignee: "coder" });
  });
  const versions = new Array(KEYS).fill(0);
  for (let start = 0; start < KEYS; start += 1000) {
    await store.batch((batch) => {
      for (let i = start; i < Math.min(KEYS, start + 1000); i++) batch.set(paths[i], valueFor(i, 0));
    });
  }
  const manifests = [(await createCheckpoint(store, { sessionId: "s1", trigger: "manual", description: "initial" })).manifest];
  for (let round = 1; round <= ROUNDS; round++) {
    const chosen = new Set();
    while (chosen.size < CHANGED) chosen.add(Math.floor(next() * KEYS));
    await store.batch((batch) => {
      for (const i of chosen) batch.set(paths[i], valueFor(i, ++versions[i]));
    });
    manifests.push((await createCheckpoint(store, { sessionId: "s1", trigger: "interval", description: `round ${round}` })).manifest);
  }
  return { store, manifests };
}

const TARGETS = [
  ["previous checkpoint", 1],
  ["10 checkpoints back", 10],
  [`first checkpoint (${ROUNDS} back)`, ROUNDS],
];

/** Median restore time of each target, each run starting from the latest state. */
async function restoreTimes(store, manifests) {
  const out = [];
  for (const [label, back] of TARGETS) {
    const target = manifests[manifests.length - 1 - back];
    const times = [];
    let paths = 0;
    for (let run = 0; run < RUNS; run++) {
      await restoreMemory(store, manifests.at(-1).id);
      ObjectStore.of(store).clearNodeCache(); // as a fresh process would
      const started = performance.now();
      const result = await restoreMemory(store, target.id);
      times.push(performance.now() - started);
      paths = result.set.length + result.deleted.length;
    }
    out.push({ label, paths, ms: median(times) });
  }
  await restoreMemory(store, manifests.at(-1).id);
  return out;
}

function readAll(store, manifest) {
  ObjectStore.of(store).clearNodeCache();
  const started = performance.now();
  let count = 0;
  for (const _ of readCheckpointMemory(store, manifest.id)) count += 1;
  return { ms: performance.now() - started, count };
}

const project = tempProject("apex-bench-compression-");
const rows = [];
const stores = [];
try {
  const built = await buildStore(join(project.dir, "base"));
  stores.push(built.store);
  const { manifests } = built;
  for (const algorithm of ["brotli", "gzip"]) {
    // Each algorithm works on its own copy of the same store.
    const dir = join(project.dir, algorithm);
    (await import("node:fs")).mkdirSync(dir);
    await built.store.snapshotTo(join(dir, "store.mdb"));
    const store = await openStore(dir, { actor: "user:bench" });
    stores.push(store);

    const uncompressedRestores = await restoreTimes(store, manifests);
    const readBefore = readAll(store, manifests[0]);
    const pagesBefore = objectPages(store);
    const started = performance.now();
    const result = await compressColdData(store, { algorithm, policy: { after: AFTER }, measure: true });
    const compressMs = performance.now() - started;
    const pagesAfter = objectPages(store);
    const compressedRestores = await restoreTimes(store, manifests);
    const readAfter = readAll(store, manifests[0]);
    const validateStarted = performance.now();
    const report = validateStore(store);
    const validateMs = performance.now() - validateStarted;
    if (!report.ok) throw new Error(`validate found problems after ${algorithm}: ${JSON.stringify(report.problems.slice(0, 3))}`);

    const ratio = result.bytes.before / result.bytes.after;
    rows.push(
      {
        label: `${algorithm} ${result.level}: cold values (${result.values.compressed} values of ${result.checkpoints.cold} checkpoints)`,
        display: `${mb(result.bytes.before)} -> ${mb(result.bytes.after)}`,
        ratio,
        target: "> 2x smaller",
        pass: ratio > 2,
      },
      {
        label: `  all packs; object pages in use`,
        display: `${mb(result.store.before)} -> ${mb(result.store.after)}`,
        baselineDisplay: `${mb(pagesBefore)} -> ${mb(pagesAfter)}`,
        ratio: result.store.before / result.store.after,
        target: "-",
        pass: true,
      },
      { label: `  compression time (${result.packs.written} packs written, ${result.packs.removed} freed)`, display: `${compressMs.toFixed(0)} ms`, target: "-", pass: true },
      ...TARGETS.map(([label], index) => {
        const before = uncompressedRestores[index];
        const after = compressedRestores[index];
        return {
          label: `  restore ${label}, ${after.paths} paths: compressed vs uncompressed`,
          ms: after.ms,
          baselineMs: before.ms,
          ratio: after.ms / before.ms,
          target: "< 2x and < 1000 ms",
          pass: after.ms < 1000 && after.ms < 2 * before.ms + 5,
        };
      }),
      {
        label: `  read all ${readAfter.count} values of the first checkpoint`,
        ms: readAfter.ms,
        baselineMs: readBefore.ms,
        ratio: readAfter.ms / readBefore.ms,
        target: "-",
        pass: true,
      },
      { label: `  validate after compression (${report.objects.values} values)`, display: `${validateMs.toFixed(0)} ms`, target: "-", pass: true },
    );
  }
  const [load] = (await import("node:os")).loadavg();
  const ok = printTable(`Compression: ${KEYS} keys, ${CHANGED} changed per round, ${ROUNDS} rounds, all but the newest ${AFTER} checkpoint(s) compressed, medians of ${RUNS} (load average ${load.toFixed(1)})`, rows);
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const store of stores) await store.close();
  project.cleanup();
}
