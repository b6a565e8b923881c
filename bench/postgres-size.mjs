// Where APEX's bytes go on PostgreSQL: the checkpoint workload of bench/postgres.bench.mjs (10k
// keys of ~1 KB, 100 checkpoints each after 1% of the keys changed), then the database taken
// apart: each table's heap, TOAST and index bytes, and per kind of row (keyspace, log, and the
// checkpoint engine's tables: packs of values and tree nodes, hash indexes, journal, catalog)
// the row count, the bytes of keys, of values (as APEX sends them, and as stored after TOAST), and
// of whole row tuples; and the checkpoint engine's objects: values, tree nodes, the hashes in them.
//   node bench/postgres-size.mjs [--keys 10000] [--steps 100] [--values x|random|text]
import { join } from "node:path";
import pg from "pg";
import { REPO, numberOption, stepWorkload } from "./lib.mjs";
import { valueMaker } from "./postgres-values.mjs";
import { startPostgres, stopWhenThisProcessEnds } from "../scripts/pg-cluster.mjs";

const { postgresBackend } = await import(join(REPO, "dist/plugins/postgres/backend.js"));
const { createCheckpoint } = await import(join(REPO, "dist/plugins/checkpoint/checkpoints.js"));
const { ObjectStore, decodeTreeNode } = await import(join(REPO, "dist/plugins/checkpoint/engine/objects.js"));

const KEYS = numberOption("keys", 10_000);
const STEPS = numberOption("steps", 100);
const at = process.argv.indexOf("--values");
const KIND = at > 0 ? process.argv[at + 1] : "x";
const { filler, keyName, stepChanges } = stepWorkload(KEYS, STEPS);
const valueOf = valueMaker(KIND, filler);

const cluster = await startPostgres();
stopWhenThisProcessEnds(cluster);
try {
  const url = cluster.createDatabase("apex_size");
  const store = postgresBackend.open({ backend: "postgres", dir: "/nonexistent/.apex", url, project: "checkpoints" }, { actor: "user:bench" });
  await store.batch((batch) => {
    batch.set("/sessions/s1", { session_id: "s1", status: "active", agents: ["coder"] });
    batch.set("/sessions/s1/agents/coder", { name: "coder", status: "running" });
  });
  await store.batch((batch) => {
    for (let i = 0; i < KEYS; i++) batch.set(`/state/${keyName(i)}`, valueOf(i, 0));
  });
  let cpu = process.cpuUsage();
  let started = performance.now();
  await createCheckpoint(store, { sessionId: "s1", trigger: "manual" });
  let step = 1;
  const times = [];
  for (const changed of stepChanges()) {
    await store.batch((batch) => {
      for (const i of changed) batch.set(`/state/${keyName(i)}`, valueOf(i, step));
    });
    const t = performance.now();
    await createCheckpoint(store, { sessionId: "s1", trigger: "interval" });
    times.push(performance.now() - t);
    step += 1;
  }
  const elapsed = performance.now() - started;
  cpu = process.cpuUsage(cpu);
  times.sort((a, b) => a - b);
  // The objects as the checkpoint engine sees them (uncompressed): values, tree nodes, and the
  // SHA-256 hashes the tree nodes hold (random bytes no codec shrinks).
  const objects = ObjectStore.of(store);
  const census = {};
  for (const kind of ["value", "tree"]) {
    const entry = (census[kind] = { count: 0, bytes: 0, hashes: 0 });
    for (const hash of objects.hashes(kind)) {
      const bytes = objects.getRaw(kind, hash);
      entry.count += 1;
      entry.bytes += bytes.length;
      if (kind === "tree") {
        const node = decodeTreeNode(bytes);
        entry.hashes += node.kind === "split" ? node.buckets.length : node.entries.reduce((n, e) => n + (e.value ? 1 : 0) + (e.tree ? 1 : 0), 0);
      }
    }
  }
  await store.close();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query("VACUUM ANALYZE");
  const kb = (n) => `${(Number(n) / 1024).toFixed(0)} KB`.padStart(10);
  console.log(`values: ${KIND}; ${KEYS} keys, ${STEPS} checkpoints; create median ${times[times.length >> 1].toFixed(1)} ms; client CPU ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms over ${elapsed.toFixed(0)} ms`);
  console.log(`objects: ${census.value.count} values, ${kb(census.value.bytes)}; ${census.tree.count} tree nodes, ${kb(census.tree.bytes)}, of which ${kb(census.tree.hashes * 32)} are the ${census.tree.hashes} hashes they hold; the hash indexes' keys: ${kb((census.value.count + census.tree.count) * 32)}`);
  const relations = await client.query(`SELECT c.relname, pg_relation_size(c.oid) AS heap, coalesce(pg_total_relation_size(c.reltoastrelid), 0) AS toast,
      pg_indexes_size(c.oid) AS indexes, pg_total_relation_size(c.oid) AS total
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'apex' AND c.relkind = 'r' ORDER BY total DESC`);
  let sum = 0;
  console.log(`${"table".padEnd(16)}${"heap".padStart(10)}${"toast".padStart(10)}${"indexes".padStart(10)}${"total".padStart(10)}`);
  for (const r of relations.rows) {
    sum += Number(r.total);
    console.log(`${r.relname.padEnd(16)}${kb(r.heap)}${kb(r.toast)}${kb(r.indexes)}${kb(r.total)}`);
  }
  console.log(`${"all".padEnd(46)}${kb(sum)}`);
  const kinds = await client.query(`
    SELECT 'kv' AS kind, count(*) AS n, sum(octet_length(path)) AS keys, sum(octet_length(value)) AS raw, sum(pg_column_size(value)) AS stored, sum(pg_column_size(t.*)) AS row FROM apex.kv t
    UNION ALL SELECT 'log', count(*), 0, sum(octet_length(array_to_string(paths, ''))), sum(pg_column_size(paths)), sum(pg_column_size(t.*)) FROM apex.log t
    UNION ALL SELECT 'rows:' || tbl, count(*), sum(octet_length(key)), sum(octet_length(value)), sum(pg_column_size(value)), sum(pg_column_size(t.*)) FROM apex.rows t GROUP BY tbl
    UNION ALL SELECT 'groups:' || tbl || ' (' || sum(n) || ')', count(*), sum(octet_length(first)), sum(octet_length(entries)), sum(pg_column_size(entries)), sum(pg_column_size(t.*)) FROM apex.groups t GROUP BY tbl
    ORDER BY 6 DESC`);
  console.log(`${"rows of".padEnd(22)}${"count".padStart(8)}${"keys".padStart(10)}${"values".padStart(10)}${"stored".padStart(10)}${"tuples".padStart(10)}`);
  for (const r of kinds.rows) console.log(`${r.kind.padEnd(22)}${String(r.n).padStart(8)}${kb(r.keys)}${kb(r.raw)}${kb(r.stored)}${kb(r.row)}`);
  await client.end();
} finally {
  await cluster.stop();
}
