// Whole-tree reads grouped by pack (issue 16), A/B in one process: a checkpoint of 10k keys of
// ~1 KB built over 100 checkpoints that each changed 1% (so its values lie in packs written in
// another order than the tree's), then read whole, alternately
//   A: values read grouped by pack (ObjectView.prefetchValues, as restore/verify/getTuple do),
//   B: one read per value in tree order (prefetchValues turned off: the read path before);
// for verifyCheckpoint and for the read part of a restore (a dry run against an empty memory,
// so every value is read). Reports median CPU time and pack reads. Target: A no slower than B.
//   node bench/tree-read.bench.mjs [--keys 10000] [--steps 100] [--runs 7]
import { join } from "node:path";
import { median, numberOption, printTable, tempProject } from "./lib.mjs";
import { openStore } from "../dist/core/store/open.js";
import { ObjectStore, ObjectView } from "../dist/plugins/checkpoint/engine/objects.js";
import { writeCheckpoint, restoreCheckpoint } from "../dist/plugins/checkpoint/checkpoints.js";
import { verifyCheckpoint } from "../dist/plugins/checkpoint/validate.js";
import { normalizeScope } from "../dist/plugins/checkpoint/scope.js";

const KEYS = numberOption("keys", 10_000);
const STEPS = numberOption("steps", 100);
const RUNS = numberOption("runs", 7);
const filler = "x".repeat(940);

const work = tempProject("apex-bench-treeread-");
const store = await openStore(join(work.dir, ".apex"), { actor: "user:bench" });
const rows = [];
try {
  const scope = normalizeScope(undefined);
  await store.batch((batch) => batch.set("/sessions/s1", { session_id: "s1", status: "active" }));
  const checkpoint = () =>
    store.transaction(() =>
      writeCheckpoint(store, { sessionId: "s1", trigger: "manual", description: "", pinned: false, gitState: null, data: {}, scope, createdAt: new Date().toISOString(), actor: "system:checkpoint" }),
    );
  await store.batch((batch) => {
    for (let i = 0; i < KEYS; i++) batch.set(`/data/k${String(i).padStart(5, "0")}`, { i, step: 0, filler });
  });
  await checkpoint();
  let seed = 7;
  for (let step = 1; step <= STEPS; step++) {
    await store.batch((batch) => {
      for (let j = 0; j < KEYS / 100; j++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        const i = seed % KEYS;
        batch.set(`/data/k${String(i).padStart(5, "0")}`, { i, step, filler });
      }
    });
    await checkpoint();
  }
  const manifest = store.get(`/sessions/s1/checkpoint-${String(STEPS + 1).padStart(3, "0")}`);
  // The memory emptied (and that state the base of the next checkpoint): a restore reads every value back.
  await store.batch((batch) => batch.deleteTree("/data"));
  await checkpoint();

  const packs = ObjectStore.of(store).packs;
  const getBinaryFast = packs.getBinaryFast.bind(packs);
  let packReads = 0;
  packs.getBinaryFast = (key) => {
    packReads += 1;
    return getBinaryFast(key);
  };
  const grouped = ObjectView.prototype.prefetchValues;
  const variants = { A: grouped, B: function perValue() {} };
  const measure = (variant, fn) => {
    ObjectView.prototype.prefetchValues = variants[variant];
    ObjectStore.of(store).clearNodeCache();
    packReads = 0;
    const cpu = process.cpuUsage();
    const started = performance.now();
    fn();
    const used = process.cpuUsage(cpu);
    return { cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - started, packReads };
  };
  const results = { verify: { A: [], B: [] }, restore: { A: [], B: [] } };
  for (let run = 0; run < RUNS; run++) {
    for (const variant of run % 2 === 0 ? ["A", "B"] : ["B", "A"]) {
      results.verify[variant].push(
        measure(variant, () => {
          if (verifyCheckpoint(store, manifest).length > 0) throw new Error("the checkpoint does not verify");
        }),
      );
      results.restore[variant].push(
        measure(variant, () => {
          let outcome;
          restoreCheckpoint(store, manifest, { dryRun: true, tasks: false, agents: false }).then((result) => (outcome = result));
          return outcome;
        }),
      );
    }
  }
  ObjectView.prototype.prefetchValues = grouped;
  for (const [what, byVariant] of Object.entries(results)) {
    const a = median(byVariant.A.map((r) => r.cpuMs));
    const b = median(byVariant.B.map((r) => r.cpuMs));
    rows.push({
      label: `${what} of a checkpoint of ${KEYS} keys built over ${STEPS} steps: grouped by pack (B: one read per value)`,
      ms: a,
      baselineMs: b,
      ratio: a / b,
      target: "A ≤ B (CPU ms)",
      pass: a <= b * 1.05,
    });
    rows.push({
      label: `  pack reads A / B, wall ms A / B`,
      display: `${byVariant.A[0].packReads}`,
      baselineDisplay: `${byVariant.B[0].packReads}`,
      target: `${median(byVariant.A.map((r) => r.wallMs)).toFixed(0)} / ${median(byVariant.B.map((r) => r.wallMs)).toFixed(0)} ms`,
      pass: true,
    });
  }
} finally {
  await store.close();
  work.cleanup();
}
const ok = printTable(`Whole-tree reads grouped by pack, A/B in one process (load average ${(await import("node:os")).loadavg()[0].toFixed(1)})`, rows);
process.exitCode = ok ? 0 : 1;
