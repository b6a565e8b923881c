import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, linkSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApexError } from "../../core/errors.js";
import { syncDirectory } from "../file-system.js";
import { truncation, unreadableHeader } from "./file-check.js";
import { salvagePages } from "./salvage-pages.js";
import type { CrashPoint, ScanResult } from "./salvage.js";

/** The compiled worker beside this module; from the TypeScript sources (tests), the build's. */
function workerPath(): string {
  const beside = fileURLToPath(new URL("./salvage-worker.js", import.meta.url));
  return existsSync(beside) ? beside : fileURLToPath(new URL("../../dist/plugins/lmdb/salvage-worker.js", import.meta.url));
}
/** Restarts after a crash of the reader before giving up. Each restart skips past where the last one died. */
const MAX_RESTARTS = 40;

export interface SalvageRun extends ScanResult {
  /** A truncated file read as of an earlier commit than its last: how many commits' writes are lost. */
  commitsLost?: number;
  /** How the readers that died ended, in order. */
  crashes: CrashPoint[];
}

/**
 * Scans the store file `file` in child processes (salvage.ts), restarting the reader past the
 * point where it died whenever a damaged page kills it with a signal. With `copyTo`, every
 * record that reads is copied into a new store file there.
 */
export function salvageOutOfProcess(file: string, options: { copyTo?: string } = {}): SalvageRun {
  // A file without a usable header crashes every reader at its open: nothing to restart past.
  const unusable = unreadableHeader(file);
  if (unusable !== undefined) return { tables: [], damaged: [{ table: "", after: null, message: `${unusable}: no record of it can be read` }], crashes: [] };
  // A truncated file is read page by page without LMDB (salvage-pages.ts): LMDB would die on the
  // first page past the end, at the start of each table whose tree reaches there, and on the list of tables when that is past it.
  if (truncation(file) !== undefined) return { ...salvagePages(file, options), crashes: [] };
  const work = mkdtempSync(join(tmpdir(), "apex-salvage-"));
  try {
    const crashes: CrashPoint[] = [];
    for (let attempt = 0; attempt <= MAX_RESTARTS; attempt++) {
      const progressFile = join(work, `progress-${attempt}`);
      const resultFile = join(work, `result-${attempt}.json`);
      const requestFile = join(work, `request-${attempt}.json`);
      writeFileSync(requestFile, JSON.stringify({ file, progressFile, resultFile, crashes, ...(options.copyTo ? { copyTo: options.copyTo } : {}) }), { mode: 0o600 });
      const child = spawnSync(process.execPath, [workerPath(), requestFile], { encoding: "utf8", stdio: ["ignore", "ignore", "pipe"], maxBuffer: 16 * 1024 * 1024 });
      if (child.status === 0 && existsSync(resultFile)) return { ...(JSON.parse(readFileSync(resultFile, "utf8")) as ScanResult), crashes };
      if (!child.signal) {
        throw new ApexError("APEX_E_STORE_DAMAGED", `Reading the store file ${file} record by record failed: ${(child.stderr ?? "").trim().split("\n").slice(-3).join(" | ") || `exit code ${child.status}`}.`, {
          hint: "Restore a backup of .apex/, or recover what still verifies into a new session with `apex session reconstruct <session>`.",
          details: { store: file },
        });
      }
      const at = lastProgress(progressFile);
      // Killed before its first line: opening the file crashed it (a file cut inside its header
      // pages), which every restart would do again.
      if (at === undefined) {
        return { tables: [], damaged: [{ table: "", after: null, message: `opening it crashed the reader (${child.signal}): no record of it can be read` }], crashes: [{ table: "", after: null, attempts: 1, signal: child.signal }] };
      }
      const previous = crashes.find((crash) => crash.table === at.table && crash.after === at.after);
      if (previous) previous.attempts += 1;
      else crashes.push({ table: at.table, after: at.after, attempts: 1, signal: child.signal });
    }
    throw new ApexError("APEX_E_STORE_DAMAGED", `Reading the store file ${file} crashed the reader ${MAX_RESTARTS + 1} times; what follows the last crash could not be read.`, {
      hint: "Restore a backup of .apex/, or recover what still verifies into a new session with `apex session reconstruct <session>`.",
      details: { store: file },
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The table and key after which the reader died: the last line of its progress file; undefined when it wrote none (it died opening the file). */
function lastProgress(progressFile: string): { table: string; after: string | null } | undefined {
  let text = "";
  try {
    text = readFileSync(progressFile, "utf8");
  } catch {
    return undefined;
  }
  const lines = text.split("\n").filter((line) => line.length > 0);
  const last = lines.at(-1);
  if (last === undefined) return undefined;
  const tab = last.indexOf("\t");
  const table = last.slice(0, tab);
  const key = last.slice(tab + 1);
  return { table, after: key === "" ? null : key };
}

export interface SalvageReplacement extends SalvageRun {
  /** Where the damaged file was kept. */
  damagedFile: string;
  /** Records copied into the new store file. */
  copied: number;
  /** Records the tables' headers counted that could not be read. */
  lost: number;
}

/**
 * Copies every record of `<storeDir>/store.mdb` that still reads into a fresh store file and
 * puts it in the damaged file's place; the damaged file is kept beside it as
 * `store.mdb.damaged-<time>`. No process may have the store open (repair stops the session first).
 */
export function replaceWithSalvage(storeDir: string): SalvageReplacement {
  const file = join(storeDir, "store.mdb");
  refuseIfInUse(file);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const workDir = join(storeDir, `salvage-${stamp}`);
  const copy = join(workDir, "store.mdb");
  try {
    const run = salvageOutOfProcess(file, { copyTo: copy });
    if (run.tables.every((table) => table.records === 0)) throw nothingReadable(file, run.crashes[0]?.signal);
    refuseIfInUse(file); // the copy took a while: checked again just before the swap
    const damagedFile = `${file}.damaged-${stamp}`;
    // The damaged file is kept under a second name, then the copy replaces it in one rename: at
    // every instant store.mdb is one of the two (renamed aside first, a kill between the two
    // renames left no store file at all). The copy is private before it takes the name.
    linkSync(file, damagedFile);
    chmodSync(copy, 0o600);
    renameSync(copy, file);
    syncDirectory(storeDir); // the two names, durable before the repair says it is done
    // The lock file describes readers of the old file; LMDB makes a new one.
    rmSync(`${file}-lock`, { force: true });
    let copied = 0;
    let lost = 0;
    for (const table of run.tables) {
      copied += table.records;
      lost += Math.max(0, table.entries - table.records);
    }
    return { ...run, damagedFile, copied, lost };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

/** A store file of which no record reads: repair leaves it as it is (its dry run says the same). */
export function nothingReadable(file: string, signal?: string): ApexError {
  return new ApexError("APEX_E_STORE_DAMAGED", `No record of the store file ${file} could be read${signal ? ` (the reader was killed by ${signal})` : ""}; it was left as it is.`, {
    hint: "The file is probably truncated or overwritten: restore a backup of .apex/.",
    details: { store: file },
  });
}

/**
 * The other processes that have the store file or its lock file mapped (LMDB maps both for as
 * long as a process has the store open): from /proc/<pid>/maps, matched by inode. Processes
 * of other users cannot be read, and cannot open the store either (it is owner-only).
 */
export function processesUsingStore(file: string): Array<{ pid: number; command: string }> {
  const inodes = new Set<number>();
  for (const path of [file, `${file}-lock`]) {
    try {
      inodes.add(statSync(path).ino);
    } catch {
      // not there: nobody maps it
    }
  }
  if (inodes.size === 0) return [];
  const found: Array<{ pid: number; command: string }> = [];
  let pids: string[];
  try {
    pids = readdirSync("/proc").filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  for (const name of pids) {
    const pid = Number(name);
    if (pid === process.pid) continue;
    let maps: string;
    try {
      maps = readFileSync(`/proc/${pid}/maps`, "utf8");
    } catch {
      continue;
    }
    // address perms offset dev inode path
    const uses = maps.split("\n").some((line) => {
      const fields = line.split(/\s+/, 6);
      return fields.length >= 6 && inodes.has(Number(fields[4])) && /store\.mdb(-lock)?( \(deleted\))?$/.test(line);
    });
    if (!uses) continue;
    let command = "";
    try {
      command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    } catch {
      // ended meanwhile
    }
    found.push({ pid, command });
  }
  return found;
}

/** Replacing the file under a process that has it open would split the store in two (its writes go to the old file, with its own lock file): refused. */
function refuseIfInUse(file: string): void {
  const users = processesUsingStore(file);
  if (users.length === 0) return;
  const named = users.slice(0, 5).map((user) => `${user.pid}${user.command ? ` (${user.command.slice(0, 80)})` : ""}`).join(", ");
  throw new ApexError("APEX_E_STORE_IN_USE", `The store file ${file} is open in ${users.length} other process${users.length === 1 ? "" : "es"}: ${named}. Repair replaces the file, so nothing was changed.`, {
    hint: "End those processes (apex serve, apex memory watch, agents of another session, scripts using the store), then run the repair again.",
    details: { store: file, pids: users.map((user) => user.pid) },
  });
}
