// PostgreSQL, side by side on one throwaway server in one run: LangGraph's PostgresSaver
// (@langchain/langgraph-checkpoint-postgres) against APEX's PostgreSQL backend (plugins/postgres),
// on the workload of bench/langgraph.bench.mjs:
// - a state of 10k keys of ~1 KB (10k keyspace paths for APEX), for LangGraph in the two shapes
//   bench/langgraph.bench.mjs uses: 10k channels (PostgresSaver then stores only the changed
//   channels' blobs), and one channel holding the 10k keys as a plain object (how a dict state is
//   commonly kept: every step's blob is the whole state);
// - 100 steps, each changing 1% of the keys.
// Measured per step (median): PostgresSaver.put; APEX's keyspace batch of the changed values
// (what agents' memory writes cost); APEX's table puts of the same values as content-addressed
// objects plus one record naming them (the writes an O(changed) checkpoint makes); and the
// database size after the 100 steps (pg_total_relation_size of each side's tables). Read-back:
// getTuple of step 50 against reading the whole state back from APEX's keyspace.
// APEX's checkpoint create itself (the checkpoint engine on the storage port) runs in a database
// of its own (apexCheckpoints), so its size is the size of what checkpoints need; its steps and
// PostgresSaver's are taken in turn (lockstep), so that both see the same machine load.
// Values (bench/postgres-values.mjs): `--values x` (the default: a shared filler of "x"s, which
// compresses ~60×), `--values random` (or `--incompressible`: pseudo-random text), `--values text`
// (JSON notes of English-like text, ~3× in blocks). bench/postgres-size.mjs shows where APEX's
// bytes go.
//   node bench/postgres.bench.mjs [--keys 10000] [--steps 100] [--runs 5] [--values x|random|text]
import { createHash } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { uuid6 } from "@langchain/langgraph-checkpoint";
import { PostgresSaver } from "@langchain/langgraph-checkpoint-postgres";
import { REPO, median, numberOption, printTable, stepWorkload } from "./lib.mjs";
import { valueMaker } from "./postgres-values.mjs";
import { startPostgres, stopWhenThisProcessEnds } from "../scripts/pg-cluster.mjs";

const { postgresBackend } = await import(join(REPO, "dist/plugins/postgres/backend.js"));

const KEYS = numberOption("keys", 10_000);
const STEPS = numberOption("steps", 100);
// Both sides read back the state of step 50.
if (STEPS < 50) {
  console.error("--steps must be at least 50: the bench reads back step 50");
  process.exit(2);
}
const RUNS = numberOption("runs", 5);
const { changed: CHANGED, filler, keyName, stepChanges } = stepWorkload(KEYS, STEPS);
/**
 * The kind of values. PostgreSQL compresses (TOAST, pglz) only values of rows over ~2 KB:
 * LangGraph's one-channel blob, APEX's value packs; APEX's backend compresses the rest itself.
 */
const valuesAt = process.argv.indexOf("--values");
const VALUES = process.argv.includes("--incompressible") ? "random" : valuesAt > 0 ? process.argv[valuesAt + 1] : "x";
const valueOf = valueMaker(VALUES, filler);

/**
 * LangGraph's PostgresSaver, a step at a time (stepped in turn with APEX's checkpoints: both see
 * the same load), in one shape: "channels" (a channel per key) or "object" (one channel, `state`).
 */
async function langGraphSaver(url, shape) {
  const saver = PostgresSaver.fromConnString(url);
  await saver.setup();
  const values = {};
  const versions = {};
  for (let i = 0; i < KEYS; i++) {
    values[keyName(i)] = valueOf(i, 0);
    versions[keyName(i)] = 1;
  }
  let config = { configurable: { thread_id: "bench", checkpoint_ns: "" } };
  const configs = [];
  if (shape === "object") {
    for (const key of Object.keys(versions)) delete versions[key];
    versions.state = 1;
  }
  const put = async (step, changed) => {
    const newVersions = {};
    if (shape === "channels") {
      for (const key of changed) {
        versions[key] = step + 1;
        newVersions[key] = step + 1;
      }
    } else {
      versions.state = step + 1;
      newVersions.state = step + 1;
    }
    const channelValues = shape === "channels" ? { ...values } : { state: { ...values } };
    const checkpoint = { v: 4, id: uuid6(1), ts: new Date().toISOString(), channel_values: channelValues, channel_versions: { ...versions }, versions_seen: { node: { trigger: step } } };
    const started = performance.now();
    config = await saver.put(config, checkpoint, { source: "loop", step, parents: {} }, newVersions);
    configs.push(config);
    return performance.now() - started;
  };
  return {
    first: () => put(0, Object.keys(values)),
    async step(step, changed) {
      for (const i of changed) values[keyName(i)] = valueOf(i, step);
      return put(step, changed.map(keyName));
    },
    async finish() {
      const fresh = PostgresSaver.fromConnString(url);
      let started = performance.now();
      const tuple = await fresh.getTuple(configs[50]);
      const getFirstMs = performance.now() - started;
      const state = shape === "channels" ? tuple?.checkpoint.channel_values : tuple?.checkpoint.channel_values.state;
      if (!state || state[keyName(7)] === undefined || Object.keys(state).length !== KEYS) throw new Error("getTuple of step 50 found no state");
      const warm = [];
      for (let i = 0; i < RUNS; i++) {
        started = performance.now();
        await fresh.getTuple(configs[50]);
        warm.push(performance.now() - started);
      }
      await fresh.end();
      await saver.end();
      return { getFirstMs, getWarmMs: median(warm) };
    },
  };
}

const spec = (url, project) => ({ backend: "postgres", dir: "/nonexistent/.apex", url, project });

/** APEX on PostgreSQL, what the storage port does today: keyspace batches and table puts. */
async function apexRun(url) {
  const store = postgresBackend.open(spec(url, "bench"), { actor: "agent:bench" });
  const objects = store.table("objects", { keys: "binary", values: "binary" });
  const steps = store.table("steps", { keys: "uint32", values: "structured" });
  const encode = (text) => Buffer.from(JSON.stringify(text));
  const hashOf = (bytes) => createHash("sha256").update(bytes).digest();
  let started = performance.now();
  await store.batch((batch) => {
    for (let i = 0; i < KEYS; i++) batch.set(`/state/${keyName(i)}`, valueOf(i, 0));
  });
  const firstMs = performance.now() - started;
  await store.transaction(() => {
    for (let i = 0; i < KEYS; i++) {
      const bytes = encode(valueOf(i, 0));
      objects.put(hashOf(bytes), bytes);
    }
    steps.put(0, { changed: KEYS });
  });
  const batchTimes = [];
  const tableTimes = [];
  let step = 1;
  for (const changed of stepChanges()) {
    started = performance.now();
    await store.batch((batch) => {
      for (const i of changed) batch.set(`/state/${keyName(i)}`, valueOf(i, step));
    });
    batchTimes.push(performance.now() - started);
    started = performance.now();
    await store.transaction(() => {
      const hashes = [];
      for (const i of changed) {
        const bytes = encode(valueOf(i, step));
        const hash = hashOf(bytes);
        // Content-addressed: an upsert of a present object writes the same bytes, and costs no
        // round trip, where a doesExist() first would cost one per object.
        objects.put(hash, bytes);
        hashes.push(hash.toString("hex"));
      }
      steps.put(step, { hashes });
    });
    tableTimes.push(performance.now() - started);
    step += 1;
  }
  const reader = postgresBackend.open(spec(url, "bench"), { readOnly: true });
  started = performance.now();
  let count = 0;
  for (const _ of reader.tree("/state")) count++;
  const readFirstMs = performance.now() - started;
  if (count !== KEYS) throw new Error(`read back ${count} keys, not ${KEYS}`);
  const warm = [];
  for (let i = 0; i < RUNS; i++) {
    started = performance.now();
    for (const _ of reader.tree("/state"));
    warm.push(performance.now() - started);
  }
  await reader.close();
  await store.close();
  return { firstMs, batchMs: median(batchTimes), tableMs: median(tableTimes), readFirstMs, readWarmMs: median(warm) };
}

/**
 * APEX's checkpoint create on PostgreSQL, in a database of its own, a step at a time: a
 * session, the state of KEYS keys written and checkpointed once, then steps that each change 1%
 * of the keys (memory writes, not timed) and create a checkpoint (timed), as the supervisor
 * would. Then a restore-style read of the 50th checkpoint's memory (its tree, every value).
 */
async function apexCheckpoints(url) {
  const { createCheckpoint, restoreCheckpoint } = await import(join(REPO, "dist/plugins/checkpoint/checkpoints.js"));
  const store = postgresBackend.open(spec(url, "checkpoints"), { actor: "user:bench" });
  const ids = [];
  return {
    async first() {
      await store.batch((batch) => {
        batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
        batch.set("/sessions/s1/agents/coder", { name: "coder", status: "running" });
      });
      await store.batch((batch) => {
        for (let i = 0; i < KEYS; i++) batch.set(`/state/${keyName(i)}`, valueOf(i, 0));
      });
      const started = performance.now();
      await createCheckpoint(store, { sessionId: "s1", trigger: "manual", description: "initial" });
      return performance.now() - started;
    },
    async step(step, changed) {
      await store.batch((batch) => {
        for (const i of changed) batch.set(`/state/${keyName(i)}`, valueOf(i, step));
      });
      const started = performance.now();
      const created = await createCheckpoint(store, { sessionId: "s1", trigger: "interval" });
      const ms = performance.now() - started;
      ids.push(created.manifest.id);
      return ms;
    },
    async finish() {
      try {
        const middle = ids[Math.floor(ids.length / 2) - 1];
        // Restore of the 50th checkpoint's memory: every value read back from its tree and written live.
        const started = performance.now();
        await restoreCheckpoint(store, middle, { tasks: false, agents: false });
        const readMs = performance.now() - started;
        let count = 0;
        for (const _ of store.keysBelow("/state")) count++;
        if (count !== KEYS) throw new Error(`the restore of checkpoint ${middle} left ${count} keys under /state, not ${KEYS}`);
        return { readMs };
      } finally {
        await store.close();
      }
    },
  };
}

/** PostgresSaver.put and APEX's checkpoint create, step by step in turn (the order alternating), so that both see the same load. */
async function lockstep(lgUrl, apexUrl, shape) {
  const sides = [await langGraphSaver(lgUrl, shape), await apexCheckpoints(apexUrl)];
  const firsts = [await sides[0].first(), await sides[1].first()];
  const times = [[], []];
  let step = 1;
  for (const changed of stepChanges()) {
    const order = step % 2 ? [0, 1] : [1, 0];
    for (const i of order) times[i].push(await sides[i].step(step, changed));
    step += 1;
  }
  const [lgRead, apexRead] = [await sides[0].finish(), await sides[1].finish()];
  return {
    lg: { firstMs: firsts[0], putMs: median(times[0]), ...lgRead },
    checkpoint: { firstMs: firsts[1], putMs: median(times[1]), ...apexRead },
  };
}

async function sizeOf(url, tables) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("VACUUM ANALYZE");
    const { rows } = await client.query("SELECT coalesce(sum(pg_total_relation_size(to_regclass(t))), 0)::bigint AS bytes FROM unnest($1::text[]) AS t", [tables]);
    return Number(rows[0].bytes);
  } finally {
    await client.end();
  }
}

const cluster = await startPostgres();
stopWhenThisProcessEnds(cluster);
const LG_TABLES = ["public.checkpoints", "public.checkpoint_blobs", "public.checkpoint_writes", "public.checkpoint_migrations"];
// Every table of either layout (apex.projects is a view from layout 2 on; a name that does not exist counts 0).
const APEX_TABLES = ["apex.projects", "apex.stores", "apex.kv", "apex.log", "apex.tables", "apex.rows", "apex.groups", "apex.layout"];
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
let rows = [];
try {
  // APEX has no channels: its state is the same 10k keyspace paths in both shapes; each shape gets
  // its own databases and its own lockstep run, so each pair sees the same load.
  for (const shape of ["channels", "object"]) {
    const langGraphUrl = cluster.createDatabase(`langgraph_${shape}`);
    const checkpointUrl = cluster.createDatabase(`apex_checkpoints_${shape}`);
    const { lg, checkpoint } = await lockstep(langGraphUrl, checkpointUrl, shape);
    const lgBytes = await sizeOf(langGraphUrl, LG_TABLES);
    const checkpointBytes = await sizeOf(checkpointUrl, APEX_TABLES);
    const label = shape === "channels" ? `${KEYS} channels` : `one channel of ${KEYS} keys`;
    rows.push(
      { label: `[${label}] PostgresSaver.put, median of ${STEPS} steps (1% of the keys changed)`, ms: lg.putMs, target: "-", pass: true },
      { label: `[${label}] APEX checkpoint create on PostgreSQL, median of ${STEPS} steps (same changes)`, ms: checkpoint.putMs, baselineMs: lg.putMs, ratio: checkpoint.putMs / lg.putMs, target: "faster than PostgresSaver.put", pass: checkpoint.putMs < lg.putMs },
      {
        label: `[${label}] database size after ${STEPS} checkpoints (APEX: live memory + log + checkpoints)`,
        display: mb(checkpointBytes),
        baselineDisplay: mb(lgBytes),
        ratio: checkpointBytes / lgBytes,
        // The goal; with a channel per key PostgresSaver itself stores only what changed, and both sides are bounded by the data.
        target: shape === "object" ? "≥ 20× smaller" : "-",
        pass: shape === "object" ? checkpointBytes * 20 <= lgBytes : true,
      },
      { label: `[${label}] restore the 50th checkpoint (every value read from its tree, written live) vs getTuple(step 50)`, ms: checkpoint.readMs, baselineMs: lg.getFirstMs, ratio: checkpoint.readMs / lg.getFirstMs, target: "-", pass: true },
      { label: `[${label}]   getTuple(step 50) warm, median of ${RUNS}`, ms: lg.getWarmMs, target: "-", pass: true },
    );
  }
  const apexUrl = cluster.createDatabase("apex");
  const apex = await apexRun(apexUrl);
  const apexBytes = await sizeOf(apexUrl, APEX_TABLES);
  rows.push(
    { label: `APEX keyspace batch of the ${CHANGED} changed values (memory writes)`, ms: apex.batchMs, target: "-", pass: true },
    { label: `APEX table puts: ${CHANGED} content-addressed objects + 1 record`, ms: apex.tableMs, target: "-", pass: true },
    { label: `first write of the whole state: APEX keyspace batch`, ms: apex.firstMs, target: "-", pass: true },
    { label: `database size after ${STEPS} steps (APEX: keyspace + log + objects)`, display: mb(apexBytes), target: "-", pass: true },
    { label: `read back the state: APEX tree() of ${KEYS} keys, first`, ms: apex.readFirstMs, target: "-", pass: true },
    { label: `  warm, median of ${RUNS}`, ms: apex.readWarmMs, target: "-", pass: true },
  );
} finally {
  await cluster.stop();
}
const ok = printTable(`PostgreSQL: APEX's backend vs LangGraph's PostgresSaver (baseline column), one server, values: ${VALUES}`, rows);
process.exitCode = ok ? 0 : 1;
