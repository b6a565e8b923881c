// Shared helpers for the benchmarks: run commands many times, take medians, print tables.
// Targets are ratios against a baseline measured in the same run, since these machines are noisy.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Every Node.js process reads and parses the CA bundle NODE_EXTRA_CA_CERTS names as it starts
// (~40 ms of a core for a system bundle). Left in the environment, it would be measured in each
// command and in its `node -e 0` (or other new-process) baseline alike, and make a start-up
// ratio look up to twice better than on a machine without it. No process a benchmark starts
// gets it (the benchmarks make no TLS connection).
if (process.env.NODE_EXTRA_CA_CERTS !== undefined) {
  delete process.env.NODE_EXTRA_CA_CERTS;
}

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const APEX = join(REPO, "bin/apex.js");

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Wall time in ms of one run of `command args` (synchronous, output discarded). */
export function timeOnce(command, args, options = {}) {
  const start = process.hrtime.bigint();
  const result = spawnSync(command, args, { stdio: ["pipe", "ignore", "pipe"], encoding: "utf8", ...options });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0 && !options.allowFailure) {
    throw new Error(`${command} ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  }
  return ms;
}

/**
 * Median wall times of a command and of a baseline, interleaved run by run so that both see
 * the same machine load.
 */
export function compare(label, [command, args, options], [baseCommand, baseArgs, baseOptions], runs = 15) {
  const times = [];
  const baseTimes = [];
  timeOnce(command, args, options);
  timeOnce(baseCommand, baseArgs, baseOptions);
  for (let i = 0; i < runs; i++) {
    baseTimes.push(timeOnce(baseCommand, baseArgs, baseOptions));
    times.push(timeOnce(command, args, options));
  }
  return { label, ms: median(times), baselineMs: median(baseTimes), ratio: median(times) / median(baseTimes) };
}

export function apexArgs(...args) {
  return [APEX, ...args];
}

export function tempProject(prefix = "apex-bench-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Prints result rows as a table: name, measured, baseline, ratio, target, verdict. */
export function printTable(title, rows) {
  const lines = [["benchmark", "measured", "baseline", "ratio", "target", "result"]];
  for (const row of rows) {
    lines.push([
      row.label,
      row.display ?? `${row.ms.toFixed(1)} ms`,
      row.baselineDisplay ?? (row.baselineMs === undefined ? "-" : `${row.baselineMs.toFixed(1)} ms`),
      row.ratio === undefined ? "-" : `${row.ratio.toFixed(2)}×`,
      row.target,
      row.pass ? "ok" : "MISS",
    ]);
  }
  const widths = lines[0].map((_, i) => Math.max(...lines.map((line) => line[i].length)));
  console.log(`\n${title}`);
  for (const [index, line] of lines.entries()) {
    console.log(line.map((cell, i) => cell.padEnd(widths[i])).join("  "));
    if (index === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
  return rows.every((row) => row.pass);
}

/** `--name N` from the command line as a number, or `fallback`. */
export function numberOption(name, fallback) {
  const args = process.argv.slice(2);
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
}

/**
 * The checkpoint benchmarks' project memory, the same in every benchmark that uses it:
 * `keys` paths in a 3-level hierarchy (20 areas, 25 modules, notes) and ~1 KB JSON values
 * of words from a small vocabulary, from a seeded generator (`random`, also used to choose
 * the keys that change each round).
 */
export function checkpointWorkload(keys) {
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const words = "agent task memory checkpoint merkle tree restore session value commit branch merge plan test build review".split(" ");
  const text = (length) => {
    let out = "";
    while (out.length < length) out += `${words[Math.floor(random() * words.length)]} `;
    return out.slice(0, length);
  };
  const paths = Array.from({ length: keys }, (_, i) => `/project/area-${i % 20}/module-${Math.floor(i / 20) % 25}/note-${Math.floor(i / 500)}`);
  const valueFor = (i, version) => ({ id: i, version, title: text(40), body: text(880), tags: [words[i % words.length], `v${version}`] });
  return { random, paths, valueFor };
}

/** The object store's databases and their key encodings (plugins/checkpoint/engine/objects.ts and its index journal and hash filter). */
export const OBJECT_DATABASES = Object.freeze({ blobs: "binary", trees: "binary", packs: "uint32", "index-journal": "uint32", "index-filter": "uint32" });

/** How each named table is opened (the keyspace's own databases give their raw records whatever the options). */
function tableOptions(name) {
  if (name === "checkpoints") return { keys: "tuple", values: "structured" };
  return { keys: OBJECT_DATABASES[name] ?? "string", values: "binary" };
}

/** LMDB statistics of one named table of an LMDB store (they include the environment's: pageSize, lastPageNumber). */
export function statsOf(store, name) {
  return store.table(name, tableOptions(name)).getStats();
}

/** LMDB pages in use (free pages excluded) of one named table of an LMDB store. */
export function pagesOf(store, name) {
  const s = statsOf(store, name);
  return s.treeBranchPageCount + s.treeLeafPageCount + s.overflowPages;
}

export const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(2)} MB`;

/**
 * The LangGraph-style workload both savers' benchmarks share (bench/langgraph.bench.mjs,
 * bench/postgres.bench.mjs): `keys` keys of ~1 KB, and `steps` deterministic steps that each
 * change 1% of them.
 */
export function stepWorkload(keys, steps) {
  const changed = Math.max(1, Math.round(keys / 100));
  return {
    changed,
    filler: "x".repeat(1000),
    keyName: (i) => `k${String(i).padStart(5, "0")}`,
    /** Which keys change at each step, the same sequence in every run. */
    *stepChanges() {
      let seed = 42;
      const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) % keys);
      for (let step = 1; step <= steps; step++) {
        const picked = new Set();
        while (picked.size < changed) picked.add(next());
        yield [...picked];
      }
    },
  };
}

/** A small seeded generator of numbers in [0, 1) (mulberry32), so that a bench's data reproduces. */
export function mulberry32(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
