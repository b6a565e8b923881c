/**
 * Runs `repairStore` in its own process: repair reads every damaged object and record, and a
 * damaged page can crash the reader (SIGSEGV/SIGBUS), which must not end the command.
 *
 *   node dist/plugins/checkpoint/repair-worker.js <store-dir> <result-file> [--dry-run]
 *
 * `--dry-run`: what the repair would do, nothing written (a damaged store file's dry run runs it
 * on its scratch copy of what reads, plugin-cli.ts).
 */
import { writeFileSync } from "node:fs";
import { LmdbStore } from "../lmdb/backend.js";
import { repairStore } from "./validate.js";

const [dir, resultFile, flag] = process.argv.slice(2) as [string, string, string | undefined];
const dryRun = flag === "--dry-run";
// The salvage path works on LMDB's file; other backends repair in process.
const store = LmdbStore.open(dir, dryRun ? { readOnly: true } : {});
try {
  const result = await repairStore(store, { dryRun });
  writeFileSync(resultFile, JSON.stringify(result), { mode: 0o600 });
} finally {
  await store.close();
}
