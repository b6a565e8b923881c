import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isSameProcessAlive, processStartTime, readProcStat } from "../../core/session/proc.js";

/**
 * `<store>/serve.json`: where a running server listens (`apex serve`, or a supervisor with the
 * sharing plugin's `serve` option), for the invites `apex session share` prints. It names the
 * process that wrote it (pid and start time), so that a record left by a server that crashed
 * (kill -9: nothing removed it) is known as such, and a server removes only its own record.
 * Two servers of one store (the supervisor's `serve` option and `apex serve`): the one started
 * last is recorded, with the one it replaced under `before`, which is put back when it stops.
 */
export const SERVE_FILE = "serve.json";

export interface ServeRecord {
  url: string;
  pid: number;
  /** The writer's start time (/proc), to tell it from a later process given the same pid. */
  start_time?: number;
  /** Servers of this store that ran when this one started, newest first: when it stops, the first still running is recorded again. */
  before?: ServeRecord[];
}

/** Records this process as the server at `url`, owner-only like the rest of the store (also when an older copy was looser). */
export function writeServeFile(storeDir: string, url: string): void {
  withLock(storeDir, () => {
    const found = readServeFile(storeDir);
    // The server recorded until now, if it still runs, and those it had replaced: this one's `before`.
    const before = found ? stillRunning(found.record.pid === process.pid ? (found.record.before ?? []) : [found.record, ...(found.record.before ?? [])]) : [];
    writeRecord(storeDir, { url, pid: process.pid, start_time: processStartTime(process.pid), ...(before.length > 0 ? { before } : {}) });
  });
}

/** How long a server waits for serve.json's lock before it updates the record without it. */
const LOCK_WAIT_MS = 2000;

/**
 * Runs `update` (a read of serve.json, then a write) holding its lock, serve.json.lock, made
 * exclusively and naming its holder: servers recording or removing themselves at once each read
 * what the other wrote. Without it, servers started together each read the same record, and all
 * but the last written were lost from `before`: once that one stopped, invites named none of them.
 * A lock whose holder is gone is taken over; past LOCK_WAIT_MS the update is made without it.
 */
function withLock(storeDir: string, update: () => void): void {
  const lock = join(storeDir, `${SERVE_FILE}.lock`);
  const deadline = Date.now() + LOCK_WAIT_MS;
  let held = false;
  while (!held && Date.now() < deadline) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      held = true;
    } catch (error) {
      // No store directory (yet, or any more): `update` meets it as it did.
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") break;
      let holder = Number.NaN;
      try {
        holder = Number.parseInt(readFileSync(lock, "utf8"), 10);
      } catch {
        continue; // released meanwhile
      }
      // A holder that died holding it (kill -9); an empty file is one being written: waited on.
      if (Number.isSafeInteger(holder) && holder > 0 && readProcStat(holder) === undefined) rmSync(lock, { force: true });
      else Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
  try {
    update();
  } finally {
    if (held) rmSync(lock, { force: true });
  }
}

/**
 * Written whole to a file of its own, then renamed over the record: a reader (`session share`, a
 * server stopping) never sees it empty or half-written. Written in place, a share made while a
 * server started found no record and named the default address; a server stopping then left
 * a dead server's record.
 */
function writeRecord(storeDir: string, record: ServeRecord): void {
  const file = join(storeDir, SERVE_FILE);
  const written = `${file}.${process.pid}.tmp`;
  try {
    // A new file ("wx"): never through a link or a file left at that name (by a writer killed before its rename).
    rmSync(written, { force: true });
    writeFileSync(written, `${JSON.stringify(record)}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(written, 0o600);
    renameSync(written, file);
  } catch (error) {
    rmSync(written, { force: true });
    throw error;
  }
}

/** The records whose writer still runs (each without a `before` of its own: one list is kept). */
function stillRunning(records: readonly unknown[]): ServeRecord[] {
  const out: ServeRecord[] = [];
  for (const record of Array.isArray(records) ? records : []) {
    const checked = checkedRecord(record);
    if (checked?.live && checked.record.pid !== process.pid) out.push({ url: checked.record.url, pid: checked.record.pid, ...(checked.record.start_time !== undefined ? { start_time: checked.record.start_time } : {}) });
  }
  return out;
}

/** The record, if there is a readable one, and whether the process that wrote it still runs. */
export function readServeFile(storeDir: string): { record: ServeRecord; live: boolean } | undefined {
  try {
    return checkedRecord(JSON.parse(readFileSync(join(storeDir, SERVE_FILE), "utf8")));
  } catch {
    return undefined;
  }
}

function checkedRecord(value: unknown): { record: ServeRecord; live: boolean } | undefined {
  const record = value as Partial<ServeRecord> | null;
  if (!record || typeof record !== "object" || typeof record.url !== "string") return undefined;
  const pid = typeof record.pid === "number" && Number.isSafeInteger(record.pid) && record.pid > 0 ? record.pid : undefined;
  const startTime = typeof record.start_time === "number" ? record.start_time : undefined;
  // The very process that wrote it, not a later one given its pid; an older APEX's record has no start time: its pid then.
  const live = pid !== undefined && (startTime === undefined ? readProcStat(pid) !== undefined : isSameProcessAlive(pid, startTime));
  return { record: record as ServeRecord, live };
}

/**
 * The server invites name: the record's while its writer runs, else the first server it had
 * replaced that still runs (a supervisor serving its session, under an `apex serve` killed
 * since: invites said no server ran). `stopped`: the record's address, when none of them runs.
 */
export function servingRecord(storeDir: string): { url: string; stopped?: string } | undefined {
  const found = readServeFile(storeDir);
  if (!found || found.live) return found && { url: found.record.url };
  const replaced = stillRunning(found.record.before ?? [])[0];
  return replaced ? { url: replaced.url } : { url: found.record.url, stopped: found.record.url };
}

/**
 * Removes the record if this process wrote it, or if its writer is gone, and records again the
 * server it had replaced if that one still runs; a record of another server that still runs
 * stays (its invites are still right), without this process in its `before`.
 */
export function removeServeFile(storeDir: string): void {
  withLock(storeDir, () => removeRecord(storeDir));
}

function removeRecord(storeDir: string): void {
  const found = readServeFile(storeDir);
  if (!found) return;
  const before = stillRunning(found.record.before ?? []);
  if (found.record.pid !== process.pid && found.live) {
    if ((found.record.before ?? []).length !== before.length) writeRecord(storeDir, { ...found.record, ...(before.length > 0 ? { before } : { before: undefined }) });
    return;
  }
  if (before.length > 0) writeRecord(storeDir, { ...before[0]!, ...(before.length > 1 ? { before: before.slice(1) } : {}) });
  else rmSync(join(storeDir, SERVE_FILE), { force: true });
}
