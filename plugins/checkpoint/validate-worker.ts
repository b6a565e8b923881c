/**
 * Runs store validation in its own process, so that reading a damaged store file can at
 * worst crash this process, not the CLI or the supervisor.
 *
 *   node dist/plugins/checkpoint/validate-worker.js <store-dir> [--session <id>]
 *
 * Forked with an IPC channel, it sends the ValidationReport as one message; otherwise it
 * prints it as JSON on stdout. Exit code: 0 valid, 1 problems found, 2 could not validate.
 */
import { isApexError } from "../../core/errors.js";
import { damageError, isDamage } from "../lmdb/errors.js";
import { lmdbDataDir } from "../../core/store/store.js";
import { openStore } from "../../core/store/open.js";
import type { StoreSpec } from "../../core/store/port.js";
import { validateStore } from "./validate.js";

async function main(argv: string[]): Promise<number> {
  const [dir, ...rest] = argv;
  let sessionId: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    if (rest[i] === "--session" && rest[i + 1]) sessionId = rest[++i];
    else return fail(`unexpected argument ${JSON.stringify(rest[i])}`);
  }
  if (!dir) return fail("usage: validate-worker <store-dir> [--session <id>]");
  // A resolved store spec (JSON, any backend), or an LMDB store directory.
  const store = await openStore(dir.startsWith("{") ? (JSON.parse(dir) as StoreSpec) : dir, { readOnly: true });
  try {
    const report = validateStore(store, sessionId ? { sessionId } : {});
    await send({ type: "report", report });
    return report.ok ? 0 : 1;
  } finally {
    await store.close();
  }
}

function send(message: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    if (process.send) process.send(message, (error: Error | null) => (error ? reject(error) : resolve()));
    else process.stdout.write(`${JSON.stringify(message)}\n`, () => resolve());
  });
}

/**
 * LMDB's own damage error from a raw table read (the object store's tables are read without a
 * wrapper): named as damage of the store file, so that the caller reads it record by record.
 */
function rawDamage(error: unknown) {
  const [target] = process.argv.slice(2);
  const dir = target?.startsWith("{") ? lmdbDataDir(JSON.parse(target) as StoreSpec) : (target ?? "");
  return damageError(dir, "reading the checkpoint objects", error);
}

function fail(message: string): number {
  process.stderr.write(`validate-worker: ${message}\n`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    if (process.connected) process.disconnect();
  },
  async (error: unknown) => {
    const payload = isApexError(error) ? error.toJSON() : isDamage(error) ? rawDamage(error).toJSON() : { error: { code: "APEX_E_INTERNAL", message: String((error as Error)?.message ?? error) } };
    await send({ type: "error", ...payload }).catch(() => undefined);
    process.stderr.write(`validate-worker: ${(error as Error)?.message ?? String(error)}\n`);
    process.exitCode = 2;
    if (process.connected) process.disconnect();
  },
);
