/**
 * Runs `repairStore` in its own process: repair reads every damaged object and record, and a
 * damaged page can crash the reader (SIGSEGV/SIGBUS), which must not end the command.
 *
 *   node dist/plugins/checkpoint/repair-worker.js <store-dir> <result-file>
 */
import { writeFileSync } from "node:fs";
import { LmdbStore } from "../lmdb/backend.js";
import { repairStore } from "./validate.js";

const [dir, resultFile] = process.argv.slice(2) as [string, string];
// The salvage path works on LMDB's file; other backends repair in process.
const store = LmdbStore.open(dir);
try {
  const result = await repairStore(store, { dryRun: false });
  writeFileSync(resultFile, JSON.stringify(result), { mode: 0o600 });
} finally {
  await store.close();
}
