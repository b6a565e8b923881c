// The synchronous bridge the PostgreSQL backend reads through (plugins/postgres/bridge.ts: a
// worker, a MessagePort, SharedArrayBuffer + Atomics.wait) against synckit doing the same work,
// in one run: per-call time of an empty call and of a one-row primary-key read on a throwaway
// cluster. Target: the backend's bridge is no slower than synckit (ratio <= 1.10).
import { createRequire } from "node:module";
import { join } from "node:path";
import { MessageChannel, Worker, receiveMessageOnPort } from "node:worker_threads";
import { REPO, median } from "./lib.mjs";
import { startPostgres, stopWhenThisProcessEnds } from "../scripts/pg-cluster.mjs";

const { SyncBridge } = await import(join(REPO, "dist/plugins/postgres/bridge.js"));
const { createSyncFn } = createRequire(import.meta.url)("synckit");

const CALLS = 3000;
const ROUNDS = 7;

function perCall(fn) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) fn(i);
  return Number(process.hrtime.bigint() - start) / 1e3 / CALLS; // µs
}

/** The backend's bridge protocol with an echo worker: what a crossing costs without PostgreSQL. */
function echoBridge() {
  const { port1, port2 } = new MessageChannel();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { workerData } = require("node:worker_threads");
     const { port, flag } = workerData;
     port.on("message", async (m) => { port.postMessage({ ok: m }); Atomics.store(flag, 0, 1); Atomics.notify(flag, 0); });`,
    { eval: true, workerData: { port: port2, flag }, transferList: [port2] },
  );
  worker.unref();
  return {
    call(message) {
      Atomics.store(flag, 0, 0);
      port1.postMessage(message);
      Atomics.wait(flag, 0, 0);
      return receiveMessageOnPort(port1).message.ok;
    },
    close: () => worker.terminate(),
  };
}

const cluster = await startPostgres();
stopWhenThisProcessEnds(cluster);
try {
  const url = cluster.createDatabase();
  const setup = new (await import("pg")).default.Client({ connectionString: url });
  await setup.connect();
  await setup.query("CREATE TABLE t (k text PRIMARY KEY, v bytea); INSERT INTO t SELECT 'k' || i, decode(repeat('ab', 512), 'hex') FROM generate_series(1, 1000) i");
  await setup.end();

  const own = new SyncBridge();
  own.connect(url, []);
  const echo = echoBridge();
  const synckit = createSyncFn(join(REPO, "bench/fixtures/synckit-pg-worker.mjs"), { timeout: 60_000 });
  synckit("connect", url);

  const read = "SELECT v FROM t WHERE k = $1";
  const results = { emptyOwn: [], emptySynckit: [], readOwn: [], readSynckit: [] };
  for (let round = 0; round < ROUNDS; round++) {
    results.emptyOwn.push(perCall((i) => echo.call(i)));
    results.emptySynckit.push(perCall((i) => synckit("noop", i)));
    results.readOwn.push(perCall((i) => own.query(read, [`k${(i % 1000) + 1}`], "read")));
    results.readSynckit.push(perCall((i) => synckit("query", { text: read, values: [`k${(i % 1000) + 1}`] })));
  }
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
  console.log("== sync bridge (per call, median of %d rounds of %d calls)", ROUNDS, CALLS);
  console.log(`empty call:        APEX bridge ${m.emptyOwn.toFixed(1)} µs, synckit ${m.emptySynckit.toFixed(1)} µs (ratio ${(m.emptyOwn / m.emptySynckit).toFixed(2)})`);
  console.log(`1 KB row by key:   APEX bridge ${m.readOwn.toFixed(1)} µs, synckit ${m.readSynckit.toFixed(1)} µs (ratio ${(m.readOwn / m.readSynckit).toFixed(2)})`);
  const ok = m.readOwn / m.readSynckit <= 1.1;
  console.log(`target (APEX bridge <= 1.10 × synckit on the read): ${ok ? "met" : "MISSED"}`);
  synckit("close");
  await own.close();
  await echo.close();
  process.exitCode = ok ? 0 : 1;
} finally {
  await cluster.stop();
}
