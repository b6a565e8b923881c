import { fork } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { ApexError, type ErrorCode } from "../../core/errors.js";
import { STORE_FILE, lmdbDataDir } from "../../core/store/store.js";
import type { StoreSpec } from "../../core/store/port.js";
import { truncation } from "../lmdb/file-check.js";
import { salvageOutOfProcess, type SalvageRun } from "../lmdb/salvage-process.js";
import { join } from "node:path";
import type { StoreProblem, ValidationReport } from "./validate.js";
import { openStore } from "../../core/store/open.js";
import { lostCheckpoints, lostProblems, type LostReport } from "./lost.js";

/** The compiled entry module that validates a store in a child process. */
export const VALIDATE_WORKER = fileURLToPath(new URL("./validate-worker.js", import.meta.url));

export interface OutOfProcessOptions {
  sessionId?: string;
  /** Default VALIDATE_WORKER. */
  workerPath?: string;
  /** Kill the validator after this long (default 10 minutes). */
  timeoutMs?: number;
}

type WorkerMessage =
  | { type: "report"; report: ValidationReport }
  | { type: "error"; error: { code: ErrorCode; message: string; hint?: string } };

/**
 * Validates the store in `storeDir` in a child process. If the child dies while reading
 * (a damaged file can crash the native reader), the result is a report with one
 * `validator-crashed` problem saying how it died, instead of a crash of the caller.
 * Rejects only when validation could not start (no store, no worker module).
 */
export function validateOutOfProcess(target: StoreSpec | string, options: OutOfProcessOptions = {}): Promise<ValidationReport> {
  // An LMDB store's file can be read record by record past damage; other backends report their own errors.
  const lmdbDir = typeof target === "string" ? target : target.backend === "lmdb" ? lmdbDataDir(target) : undefined;
  const workerPath = options.workerPath ?? VALIDATE_WORKER;
  if (!existsSync(workerPath)) {
    return Promise.reject(
      new ApexError("APEX_E_INTERNAL", `The validator module is missing at ${workerPath}.`, { hint: "Build APEX (`npm run build`)." }),
    );
  }
  return new Promise((resolve, reject) => {
    const args = [typeof target === "string" ? target : JSON.stringify(target), ...(options.sessionId ? ["--session", options.sessionId] : [])];
    const child = fork(workerPath, args, { stdio: ["ignore", "ignore", "pipe", "ipc"], execArgv: [] });
    let message: WorkerMessage | undefined;
    let stderr = "";
    let timedOut = false;
    child.on("message", (received) => {
      message = received as WorkerMessage;
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs ?? 600_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new ApexError("APEX_E_PROCESS", `Cannot start the validator: ${error.message}`, { cause: error }));
    });
    const settle = (build: () => ValidationReport | Promise<ValidationReport>) => {
      try {
        Promise.resolve(build()).then(resolve, reject);
      } catch (error) {
        reject(error);
      }
    };
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (message?.type === "report") return resolve(message.report);
      // Damage LMDB reports, or a damaged page that crashed the reader: read the file record by
      // record past the damage (in child processes too), and report every damaged region.
      if (message?.type === "error" && message.error.code === "APEX_E_STORE_DAMAGED" && lmdbDir !== undefined) {
        const stoppedBy = message.error.message;
        return settle(() => (truncation(join(lmdbDir, STORE_FILE)) ? truncatedReport(lmdbDir, stoppedBy, options) : damageReport(lmdbDir, stoppedBy)));
      }
      if (message?.type === "error") {
        return reject(new ApexError(message.error.code, message.error.message, message.error.hint ? { hint: message.error.hint } : {}));
      }
      if (signal && !timedOut && lmdbDir !== undefined) {
        const stoppedBy = `The validator was killed by ${signal} while reading the store.`;
        return settle(() => {
          try {
            return damageReport(lmdbDir, stoppedBy, true);
          } catch (error) {
            return crashedReport(`${stoppedBy} Reading it record by record failed too: ${(error as Error).message}`);
          }
        });
      }
      // Stopped for taking too long: nothing says the store is damaged (a large store on PostgreSQL reads slowly), so no finding.
      if (timedOut) {
        const seconds = Math.round((options.timeoutMs ?? 600_000) / 1000);
        return reject(
          new ApexError("APEX_E_TIMEOUT", `Validation did not finish in ${seconds} s and was stopped before it reported: this says nothing about damage (a large store read over the network takes that long).`, {
            hint: "Validate one session at a time (`apex session validate ID`), or run it where the store is near.",
            details: { timeout_ms: options.timeoutMs ?? 600_000 },
          }),
        );
      }
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve(crashedReport(`The validator ${how} while reading the store${stderr.trim() ? `: ${stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}.`));
    });
  });
}

/**
 * A report of LMDB-level damage: what stopped validation, then one `store-damaged` problem per
 * damaged region of each table, found by reading every table record by record
 * (plugins/lmdb/salvage.ts). Checkpoints could not be verified past the damage; `session repair`
 * copies what reads into a fresh store file, then validates and repairs that.
 */
export function damageReport(storeDir: string, stoppedBy: string, crashed = false, scan: SalvageRun = salvageOutOfProcess(join(storeDir, STORE_FILE))): ValidationReport {
  const problems: StoreProblem[] = [{ code: "store-damaged", severity: "error", message: `${stoppedBy} Checkpoints and records could not be checked past the damage.` }];
  let read = 0;
  let unreadable = 0;
  for (const region of scan.damaged) problems.push({ code: "store-damaged", severity: "error", message: `the list of tables: ${region.message}` });
  for (const table of scan.tables) {
    read += table.records;
    unreadable += Math.max(0, table.entries - table.records);
    for (const region of table.damaged) {
      problems.push({ code: "store-damaged", severity: "error", message: `table ${table.name}, ${region.after === null ? "at its start" : `after key ${region.after}`}: ${region.message}` });
    }
  }
  problems[0]!.message += ` Read record by record: ${read} record${read === 1 ? "" : "s"} read, ${unreadable} unreadable, ${problems.length - 1} damaged region${problems.length === 2 ? "" : "s"}.`;
  // A validator that died although every record reads: a crash of the validator, not damage that was found.
  if (problems.length === 1 && crashed) problems[0]!.code = "validator-crashed";
  return {
    ok: false,
    problems,
    checkpoints: { total: 0, verified: 0, damaged: [] },
    objects: { scanned: false, values: 0, trees: 0, unreferencedValues: 0, unreferencedTrees: 0, packs: 0, packBytes: 0, garbageBytes: 0 },
    records: read,
  };
}

/**
 * A truncated store file (read page by page, never mapped: salvage-pages.ts): what is left of it is
 * copied into a scratch store, which is validated as any store, so that the report names each
 * checkpoint that lost objects with the cut (and the ones that still verify) instead of none. The
 * damaged file is only read; the copy is removed. Without room for the copy, the report is the
 * damage alone.
 */
async function truncatedReport(storeDir: string, stoppedBy: string, options: OutOfProcessOptions): Promise<ValidationReport> {
  let work: string;
  try {
    work = mkdtempSync(join(tmpdir(), "apex-validate-"));
  } catch {
    return damageReport(storeDir, stoppedBy); // no temporary directory to copy into
  }
  try {
    let scan: SalvageRun;
    try {
      scan = salvageOutOfProcess(join(storeDir, STORE_FILE), { copyTo: join(work, STORE_FILE) });
    } catch (error) {
      // No room for the copy (a full temporary directory): the damage alone, read without one.
      if ((error as { code?: string }).code === "APEX_E_STORE_DAMAGED") throw error;
      return damageReport(storeDir, stoppedBy);
    }
    const report = damageReport(storeDir, stoppedBy, false, scan);
    if (scan.tables.every((table) => table.records === 0)) return report;
    let copy: ValidationReport;
    try {
      copy = await validateOutOfProcess(work, { ...options, workerPath: options.workerPath ?? VALIDATE_WORKER });
    } catch {
      return report;
    }
    report.problems[0]!.message = report.problems[0]!.message.replace(
      "Checkpoints and records could not be checked past the damage.",
      "Checkpoints and records were checked in what is left of it (the problems after the damaged regions), which `session repair` keeps.",
    );
    report.problems.push(...copy.problems);
    report.checkpoints = copy.checkpoints;
    // Checkpoints whose manifests and catalog records the cut took together: the copy has nothing of them, what is left of the rest names them.
    const lost = await lostInCopy(work, scan);
    if (lost) {
      report.checkpoints.lost = lost.lost;
      report.checkpoints.lost_after = lost.lostAfter;
      report.problems.push(...lostProblems(lost));
    }
    report.objects = copy.objects;
    if (copy.session_names) report.session_names = copy.session_names;
    return report;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The checkpoints the cut took (lost.ts), read in the copy of what is left; undefined when the copy cannot be read. */
async function lostInCopy(work: string, scan: SalvageRun): Promise<LostReport | undefined> {
  const regions = scan.tables.find((table) => table.name === "kv")?.damaged ?? [];
  try {
    const store = await openStore(work, { readOnly: true });
    try {
      return lostCheckpoints(store, regions);
    } finally {
      await store.close();
    }
  } catch {
    return undefined;
  }
}

function crashedReport(message: string): ValidationReport {
  return {
    ok: false,
    problems: [{ code: "validator-crashed", severity: "error", message }],
    checkpoints: { total: 0, verified: 0, damaged: [] },
    objects: { scanned: false, values: 0, trees: 0, unreferencedValues: 0, unreferencedTrees: 0, packs: 0, packBytes: 0, garbageBytes: 0 },
    records: 0,
  };
}
