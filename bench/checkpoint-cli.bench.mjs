// Checkpoint CLI benchmarks (issue "Checkpoints and recovery"), through the real CLI:
// - `apex checkpoint list` of a session with 10,000 checkpoints: median wall time within 3× of
//   `node -e 0` measured in the same run (also --json, and a page deep in the list);
// - `apex start --continue` restoring a checkpoint of 10k keys (~10 MB): the restore step as the
//   supervisor reports it (`restore.duration_ms` of `start --json`: verify the checkpoint, restore
//   memory, tasks and agents, checkpoint the result) under 1 s;
//   and the wall time of the whole `apex start --continue` until the agents run within 5× of
//   `apex memory import` of the same 10k keys into a fresh project;
// - `apex checkpoint create` after 1% of those 10k keys changed: median within 3× of
//   `apex memory show` measured in the same rounds (with the session running, and without).
// Each restore starts from the 10k keys deleted (and that state checkpointed, so there is no
// unsaved state to save first), so every key is written back: the write volume of the import.
//   node bench/checkpoint-cli.bench.mjs [--checkpoints 10000] [--keys 10000] [--runs 3]
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX, compare, median, numberOption, printTable, tempProject, timeOnce } from "./lib.mjs";
import { openStore } from "../dist/core/store/open.js";
import { writeCheckpoint } from "../dist/plugins/checkpoint/checkpoints.js";
import { normalizeScope } from "../dist/plugins/checkpoint/scope.js";

const CHECKPOINTS = numberOption("checkpoints", 10_000);
const KEYS = numberOption("keys", 10_000);
const RUNS = numberOption("runs", 3);
const filler = "x".repeat(940);

const env = { ...process.env, NO_COLOR: "1" };
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
  "",
].join("\n");

const cleanups = [];
const supervisors = [];
function project(prefix) {
  const work = tempProject(prefix);
  writeFileSync(join(work.dir, "apex.config.yaml"), CONFIG);
  const apex = (...argv) => {
    const result = spawnSync(process.execPath, [APEX, ...argv], { cwd: work.dir, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    if (result.status !== 0) throw new Error(`apex ${argv.join(" ")} exited ${result.status}: ${result.stderr}`);
    return result.stdout;
  };
  const start = (...argv) => {
    const ready = JSON.parse(apex("start", ...argv, "--json"));
    supervisors.push({ dir: work.dir, pid: ready.supervisor_pid });
    return ready;
  };
  cleanups.push(() => {
    spawnSync(process.execPath, [APEX, "stop", "--force"], { cwd: work.dir, env });
    work.cleanup();
  });
  return { dir: work.dir, apex, start };
}

const rows = [];
try {
  // ------------------------------------------------------------------ list of 10,000 checkpoints
  const listing = project("apex-bench-cplist-");
  const session = listing.start("--task", "many checkpoints").session_id;
  listing.apex("memory", "set", "/notes/bench", '{"n": 0}');
  listing.apex("stop");
  // Every start takes a checkpoint of its own (onStart): the listing counts those too.
  const existing = JSON.parse(listing.apex("checkpoint", "list", "--json")).total;
  // The checkpoints are real ones (manifest, summary, id record), written in a few transactions.
  const store = await openStore(join(listing.dir, ".apex"), { actor: "user:bench" });
  try {
    const scope = normalizeScope(undefined);
    // Checkpoints are written of a session that is there (/sessions/<sid>): bring its record back for the writing.
    await store.batch((batch) => batch.set(`/sessions/${session}`, { ...batch.get(`/sessions/history/${session}`), status: "active" }));
    for (let written = 0; written < CHECKPOINTS; ) {
      const chunk = Math.min(1000, CHECKPOINTS - written);
      await store.transaction(() => {
        for (let i = 0; i < chunk; i++) {
          writeCheckpoint(store, {
            sessionId: session,
            trigger: i % 3 === 0 ? "beforeTask" : "interval",
            description: `checkpoint ${written + i + 1} of the benchmark`,
            pinned: false,
            gitState: null,
            data: {},
            scope,
            createdAt: new Date().toISOString(),
            actor: "system:checkpoint",
          });
        }
      });
      written += chunk;
    }
    // Back to the way `apex stop` left it: ended, in the history.
    await store.batch((batch) => batch.delete(`/sessions/${session}`));
  } finally {
    await store.close();
  }
  const page = JSON.parse(listing.apex("checkpoint", "list", "--json"));
  if (page.session_id !== session || page.total !== CHECKPOINTS + existing || page.items.length !== 20) {
    throw new Error(`unexpected listing: ${JSON.stringify({ session: page.session_id, total: page.total, items: page.items.length })}`);
  }
  const base = [process.execPath, ["-e", "0"], { cwd: listing.dir }];
  const list = compare(`checkpoint list (${CHECKPOINTS} checkpoints, page of 20)`, [process.execPath, [APEX, "checkpoint", "list"], { cwd: listing.dir, env }], base, 21);
  const json = compare(`checkpoint list --json`, [process.execPath, [APEX, "checkpoint", "list", "--json"], { cwd: listing.dir, env }], base, 21);
  const deep = compare(
    `checkpoint list --offset ${Math.floor(CHECKPOINTS / 2)} --limit 50`,
    [process.execPath, [APEX, "checkpoint", "list", "--offset", String(Math.floor(CHECKPOINTS / 2)), "--limit", "50"], { cwd: listing.dir, env }],
    base,
    21,
  );
  rows.push(
    { ...list, target: "≤ 3× node -e 0", pass: list.ratio <= 3 },
    { ...json, target: "≤ 3× node -e 0", pass: json.ratio <= 3 },
    { ...deep, target: "≤ 3× node -e 0", pass: deep.ratio <= 3 },
  );

  // ------------------------------------------------------------------ restore of 10k keys vs import
  const data = join(listing.dir, "keys.json");
  const parts = ["{"];
  for (let i = 0; i < KEYS; i++) parts.push(`${i ? "," : ""}${JSON.stringify(`/bench/${i % 100}/key-${i}`)}:${JSON.stringify({ i, filler })}`);
  parts.push("}");
  writeFileSync(data, parts.join(""));

  const importMs = [];
  for (let run = 0; run < RUNS; run++) {
    const fresh = tempProject("apex-bench-cpimport-");
    cleanups.push(fresh.cleanup);
    writeFileSync(join(fresh.dir, "apex.config.yaml"), CONFIG);
    importMs.push(timeOnce(process.execPath, [APEX, "memory", "import", data], { cwd: fresh.dir, env }));
  }

  const restoring = project("apex-bench-cprestore-");
  restoring.start("--task", "restore benchmark");
  restoring.apex("memory", "import", data);
  const saved = JSON.parse(restoring.apex("checkpoint", "create", `${KEYS} keys`, "--json"));
  let emptyCheckpoint = null;
  const emptied = () => {
    // The keys go, and a manual checkpoint records that, so the continue has no unsaved state to
    // save first: it names that checkpoint as the saved state instead of writing another.
    restoring.apex("memory", "delete", "/bench", "--recursive");
    emptyCheckpoint = JSON.parse(restoring.apex("checkpoint", "create", "without the keys", "--json")).name;
    restoring.apex("stop");
  };
  emptied();
  const restoreMs = [];
  const continueMs = [];
  const timings = [];
  const cpuMs = [];
  for (let run = 0; run < RUNS; run++) {
    const started = process.hrtime.bigint();
    const ready = restoring.start("--continue", saved.id);
    continueMs.push(Number(process.hrtime.bigint() - started) / 1e6);
    if (ready.restored_from !== saved.id || ready.restore.memory.set !== KEYS || (ready.restore.saved_before !== null && ready.restore.saved_before !== emptyCheckpoint)) {
      throw new Error(`unexpected restore: ${JSON.stringify(ready.restore)}`);
    }
    restoreMs.push(ready.restore.duration_ms);
    timings.push(ready.restore.timings_ms);
    cpuMs.push(ready.restore.cpu_ms);
    const probe = JSON.parse(restoring.apex("memory", "show", `/bench/7/key-${KEYS - 93}`, "--json"));
    if (probe.value.i !== KEYS - 93) throw new Error("the restored memory is wrong");
    emptied();
  }
  // ------------------------------------------------------------------ checkpoint create vs memory show
  // A running session with the 10k keys; before each measured create, 1% of the keys change
  // (an import of 100 keys, not timed). `memory show` of one key is the baseline, timed in
  // the same rounds. Also measured with no supervisor (the CLI then opens the store itself).
  const creating = project("apex-bench-cpcreate-");
  const creatingPid = creating.start("--task", "create benchmark").supervisor_pid;
  creating.apex("memory", "import", data);
  creating.apex("checkpoint", "create", "all keys");
  const changes = join(creating.dir, "changes.json");
  let version = 0;
  const changeOnePercent = () => {
    version += 1;
    const entries = [];
    for (let n = 0; n < KEYS / 100; n++) {
      const i = (version * 7919 + n * 97) % KEYS;
      entries.push(`${JSON.stringify(`/bench/${i % 100}/key-${i}`)}:${JSON.stringify({ i, version, filler })}`);
    }
    writeFileSync(changes, `{${entries.join(",")}}`);
    creating.apex("memory", "import", changes);
  };
  const createRounds = (rounds) => {
    const createMs = [];
    const showMs = [];
    for (let round = 0; round < rounds; round++) {
      changeOnePercent();
      showMs.push(timeOnce(process.execPath, [APEX, "memory", "show", `/bench/7/key-${KEYS - 93}`], { cwd: creating.dir, env }));
      createMs.push(timeOnce(process.execPath, [APEX, "checkpoint", "create", `round ${round}`], { cwd: creating.dir, env }));
    }
    return { create: median(createMs), show: median(showMs) };
  };
  const live = createRounds(15);
  // The supervisor gone (killed), the session is interrupted and the CLI writes the store itself.
  process.kill(creatingPid, "SIGKILL");
  while (JSON.parse(creating.apex("status", "--json")).session?.status !== "interrupted") await new Promise((resolve) => setTimeout(resolve, 50));
  const direct = createRounds(15);
  rows.push(
    {
      label: `checkpoint create, 1% of ${KEYS} keys changed, session running (median of 15)`,
      ms: live.create,
      baselineMs: live.show,
      ratio: live.create / live.show,
      target: "≤ 3× memory show",
      pass: live.create / live.show <= 3,
    },
    {
      label: "checkpoint create, the same with the session interrupted (the CLI writes the store)",
      ms: direct.create,
      baselineMs: direct.show,
      ratio: direct.create / direct.show,
      target: "≤ 3× memory show",
      pass: direct.create / direct.show <= 3,
    },
  );

  const part = (name) => median(timings.map((item) => item[name]));
  const importMedian = median(importMs);
  rows.push(
    { label: `memory import of ${KEYS} keys (~${Math.round((KEYS * 960) / 1e6)} MB), fresh project`, ms: importMedian, target: "(baseline)", pass: true },
    {
      label: `restore step of start --continue (${KEYS} keys written back)`,
      ms: median(restoreMs),
      baselineMs: importMedian,
      ratio: median(restoreMs) / importMedian,
      target: "< 1000 ms",
      pass: median(restoreMs) < 1000,
    },
    {
      label: `  of which: verify ${part("verify")} ms, restore ${part("restore")} ms, checkpoint of the result ${part("checkpoint_after")} ms`,
      display: "",
      target: "-",
      pass: true,
    },
    { label: "  CPU time of the supervisor during the restore step (all its threads)", ms: median(cpuMs), target: "-", pass: true },
    {
      label: "start --continue, wall time until the agents run",
      ms: median(continueMs),
      baselineMs: importMedian,
      ratio: median(continueMs) / importMedian,
      target: "≤ 5× memory import",
      pass: median(continueMs) / importMedian <= 5,
    },
  );
  const [load] = (await import("node:os")).loadavg();
  const ok = printTable(`Checkpoint CLI (load average ${load.toFixed(1)})`, rows);
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const cleanup of cleanups.reverse()) {
    try {
      cleanup();
    } catch {
      // keep cleaning
    }
  }
  for (const { pid } of supervisors) {
    try {
      process.kill(pid, 0);
      process.kill(pid, "SIGKILL");
    } catch {
      // exited
    }
  }
}
