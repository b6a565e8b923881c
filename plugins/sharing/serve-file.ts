import { chmodSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isSameProcessAlive, processStartTime, readProcStat } from "../../core/session/proc.js";

/**
 * `<store>/serve.json`: where a running server listens (`apex serve`, or a supervisor with the
 * sharing plugin's `serve` option), for the invites `apex session share` prints. It names the
 * process that wrote it (pid and start time), so that a record left by a server that crashed
 * (kill -9: nothing removed it) is known as such, and a server removes only its own record.
 */
export const SERVE_FILE = "serve.json";

export interface ServeRecord {
  url: string;
  pid: number;
  /** The writer's start time (/proc), to tell it from a later process given the same pid. */
  start_time?: number;
}

/** Records this process as the server at `url`, owner-only like the rest of the store (also when an older copy was looser). */
export function writeServeFile(storeDir: string, url: string): void {
  const file = join(storeDir, SERVE_FILE);
  const record: ServeRecord = { url, pid: process.pid, start_time: processStartTime(process.pid) };
  writeFileSync(file, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** The record, if there is a readable one, and whether the process that wrote it still runs. */
export function readServeFile(storeDir: string): { record: ServeRecord; live: boolean } | undefined {
  let record: Partial<ServeRecord>;
  try {
    record = JSON.parse(readFileSync(join(storeDir, SERVE_FILE), "utf8")) as Partial<ServeRecord>;
  } catch {
    return undefined;
  }
  if (!record || typeof record.url !== "string") return undefined;
  const pid = typeof record.pid === "number" && Number.isSafeInteger(record.pid) && record.pid > 0 ? record.pid : undefined;
  // The very process that wrote it, not a later one given its pid; an older APEX's record has no start time: its pid then.
  const live = pid !== undefined && (record.start_time === undefined ? readProcStat(pid) !== undefined : isSameProcessAlive(pid, record.start_time));
  return { record: record as ServeRecord, live };
}

/**
 * Removes the record if this process wrote it, or if its writer is gone; a record of another
 * server that still runs stays (its invites are still right).
 */
export function removeServeFile(storeDir: string): void {
  const found = readServeFile(storeDir);
  if (!found) return;
  if (found.record.pid === process.pid || !found.live) rmSync(join(storeDir, SERVE_FILE), { force: true });
}
