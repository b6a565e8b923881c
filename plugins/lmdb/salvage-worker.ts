/**
 * Runs a salvage scan (salvage.ts) in its own process, so that a damaged page that crashes the
 * reader ends this process, not the command:
 *
 *   node dist/plugins/lmdb/salvage-worker.js <request.json>
 *
 * The request names the store file, the progress and result files, an optional copy target
 * and the points where earlier readers died. The result is written as JSON to the result file.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { scanStoreFile, type CrashPoint } from "./salvage.js";

interface Request {
  file: string;
  progressFile: string;
  resultFile: string;
  copyTo?: string;
  crashes: CrashPoint[];
}

const request = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as Request;
const result = scanStoreFile(request.file, {
  progressFile: request.progressFile,
  crashes: request.crashes,
  ...(request.copyTo ? { copyTo: request.copyTo } : {}),
});
writeFileSync(request.resultFile, JSON.stringify(result));
