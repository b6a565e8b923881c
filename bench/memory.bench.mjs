// Memory benchmarks (issue: core engine):
// - `apex memory show` on a store of 100k keys: median CLI wall time within 2× of `node -e 0`.
// - `apex memory import` of 100k keys (~100 MB): at least 50k keys/s.
// - `apex memory query '/a/**'` returning 1k of 100k keys: within 2× of a raw lmdb getRange
//   over the same range (a node process opening the same store and printing the same entries).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { APEX, REPO, compare, median, printTable, tempProject, timeOnce } from "./lib.mjs";

const KEYS = 100_000;
const QUERY_KEYS = 1_000;
const filler = "x".repeat(940);

function dataset(file) {
  const parts = ["{"];
  for (let i = 0; i < KEYS; i++) {
    const path = i < QUERY_KEYS ? `/a/item-${i}` : `/bench/${i % 100}/key-${i}`;
    parts.push(`${i ? "," : ""}${JSON.stringify(path)}:${JSON.stringify({ i, filler })}`);
  }
  parts.push("}");
  writeFileSync(file, parts.join(""));
}

const work = tempProject("apex-bench-memory-");
const cleanups = [work.cleanup];
try {
  const file = join(work.dir, "data.json");
  dataset(file);
  const env = { ...process.env, NO_COLOR: "1" };

  const importTimes = [];
  let projectDir;
  for (let run = 0; run < 3; run++) {
    const project = tempProject("apex-bench-import-");
    importTimes.push(timeOnce(process.execPath, [APEX, "memory", "import", file], { cwd: project.dir, env }));
    if (run < 2) project.cleanup();
    else {
      projectDir = project.dir;
      cleanups.push(project.cleanup);
    }
  }
  const importMs = median(importTimes);
  const keysPerSecond = KEYS / (importMs / 1000);

  const show = compare(
    "memory show (100k keys)",
    [process.execPath, [APEX, "memory", "show", "/bench/7/key-50007"], { cwd: projectDir, env }],
    [process.execPath, ["-e", "0"], { cwd: projectDir }],
  );

  const rawScript = join(work.dir, "raw-range.mjs");
  writeFileSync(
    rawScript,
    `import { createRequire } from "node:module";
const require = createRequire(${JSON.stringify(join(REPO, "package.json"))});
const { open } = require("lmdb");
// Values are stored in APEX's value encoding: decoded with its decoder, as lmdb-js would with its own.
const { decodeValue } = await import(${JSON.stringify(pathToFileURL(join(REPO, "dist/plugins/value-codec.js")).href)});
const root = open({ path: ${JSON.stringify(join(projectDir, ".apex/store.mdb"))}, maxDbs: 16, readOnly: true, compression: false });
const kv = root.openDB({ name: "kv", encoding: "binary" });
let out = "";
for (const { key, value } of kv.getRange({ start: "/a/", end: "/a0" })) out += key + "  " + JSON.stringify(decodeValue(value)) + "\\n";
process.stdout.write(out);
`,
  );
  const query = compare(
    "memory query '/a/**' (1k of 100k)",
    [process.execPath, [APEX, "memory", "query", "/a/**"], { cwd: projectDir, env }],
    [process.execPath, [rawScript], { cwd: projectDir }],
  );

  const ok = printTable("Memory (store of 100k keys, ~100 MB)", [
    { ...show, target: "≤ 2× node -e 0", pass: show.ratio <= 2 },
    {
      label: "memory import (100k keys)",
      ms: importMs,
      display: `${Math.round(keysPerSecond).toLocaleString("en")} keys/s (${(importMs / 1000).toFixed(2)} s)`,
      target: "≥ 50,000 keys/s",
      pass: keysPerSecond >= 50_000,
    },
    { ...query, baselineDisplay: `${query.baselineMs.toFixed(1)} ms (raw getRange)`, target: "≤ 2× raw getRange", pass: query.ratio <= 2 },
  ]);
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const cleanup of cleanups) cleanup();
}
