/**
 * Durability of the PostgreSQL backend: a writer killed with SIGKILL in the middle of large
 * transactions leaves nothing half-written, and every write it reported as saved is there.
 * The writer is a real process using the built backend (dist/, `npm run build`).
 */
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoreSpec } from "../core/store/port.js";
import { postgresBackend } from "../plugins/postgres/backend.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";
import { sharedPostgres, type SharedPostgres } from "./support/postgres.js";

const BUILT = join(REPO_ROOT, "dist/plugins/postgres/backend.js");
const KEYS_PER_BATCH = 3000;

let cluster: SharedPostgres;
let url: string;
const temp = tempDir("apex-pg-crash-");

beforeAll(async () => {
  cluster = await sharedPostgres();
  url = await cluster.createDatabase();
}, 120_000);
afterAll(async () => {
  temp.cleanup();
});

/** Writes batch after batch (each KEYS_PER_BATCH values of ~1 KB plus a table row) and prints "ack N REVISION" after each commit. */
const WRITER = `
import { postgresBackend } from ${JSON.stringify(BUILT)};
const [url, project] = process.argv.slice(2);
const store = postgresBackend.open({ backend: "postgres", dir: "/x", url, project }, { actor: "agent:writer" });
const rows = store.table("rows", { keys: "uint32", values: "binary" });
const value = "x".repeat(1000);
for (let n = 0; ; n++) {
  const revision = await store.transaction(() => {
    const { revision } = store.batchSync((batch) => {
      for (let i = 0; i < ${KEYS_PER_BATCH}; i++) batch.set("/b/" + n + "/" + i, { n, i, value });
    });
    rows.put(n, Buffer.from("batch " + n));
    return revision;
  });
  process.stdout.write("ack " + n + " " + revision + "\\n");
}
`;

describe("postgres backend: kill -9 of a writer", () => {
  it("leaves every batch whole or absent and keeps every acknowledged one", async () => {
    if (!existsSync(BUILT)) throw new Error("build first (npm run build): the writer runs dist/plugins/postgres/backend.js");
    const script = join(temp.dir, "writer.mjs");
    writeFileSync(script, WRITER);
    for (let round = 0; round < 3; round++) {
      const project = `crash${round}`;
      const child = spawn(process.execPath, [script, url, project], { stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      let stderr = "";
      child.stdout.on("data", (chunk) => (output += chunk));
      child.stderr.on("data", (chunk) => (stderr += chunk));
      const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
      // Kill at a different point of a transaction each round, after a few acknowledged batches.
      const acks = 2 + round;
      const deadline = Date.now() + 60_000;
      while ((output.match(/^ack /gm) ?? []).length < acks) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`writer did not acknowledge: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await new Promise((resolve) => setTimeout(resolve, 40 + round * 70));
      child.kill("SIGKILL");
      await exited;

      const acknowledged = output
        .split("\n")
        .filter((line) => line.startsWith("ack "))
        .map((line) => line.split(" ").map(Number) as [unknown, number, number]);
      const lastAck = acknowledged[acknowledged.length - 1]!;
      const spec: StoreSpec = { backend: "postgres", dir: "/x", url, project };
      const store = postgresBackend.open(spec, { readOnly: true });
      try {
        const revision = store.revision();
        // Every acknowledged write is there; at most the one in flight may have committed unacknowledged.
        expect(revision).toBeGreaterThanOrEqual(lastAck[2]);
        expect(revision % KEYS_PER_BATCH).toBe(0);
        const batches = revision / KEYS_PER_BATCH;
        expect(batches === lastAck[1] + 1 || batches === lastAck[1] + 2).toBe(true);
        const rows = store.table<number, Buffer>("rows", { keys: "uint32", values: "binary" });
        expect(Array.from(rows.getKeys())).toEqual(Array.from({ length: batches }, (_, n) => n));
        // Whole batches only: every key of every committed batch, none of the next.
        for (let n = 0; n <= batches; n++) {
          const keys = Array.from(store.keysBelow(`/b/${n}`));
          expect(keys.length).toBe(n < batches ? KEYS_PER_BATCH : 0);
        }
        expect(store.get(`/b/${batches - 1}/${KEYS_PER_BATCH - 1}`)).toMatchObject({ n: batches - 1, i: KEYS_PER_BATCH - 1 });
        expect(Array.from(store.changesSince(0)).length).toBe(revision);
      } finally {
        await store.close();
      }
      // The killed writer's lock went with its connection: a new writer gets in at once.
      const writer = postgresBackend.open(spec, {});
      try {
        const started = Date.now();
        await writer.set("/after", round);
        expect(Date.now() - started).toBeLessThan(5000);
      } finally {
        await writer.close();
      }
    }
  });
});
