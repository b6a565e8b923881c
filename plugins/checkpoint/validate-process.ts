import { fork } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ApexError, type ErrorCode } from "../../core/errors.js";
import type { ValidationReport } from "./validate.js";

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
export function validateOutOfProcess(storeDir: string, options: OutOfProcessOptions = {}): Promise<ValidationReport> {
  const workerPath = options.workerPath ?? VALIDATE_WORKER;
  if (!existsSync(workerPath)) {
    return Promise.reject(
      new ApexError("APEX_E_INTERNAL", `The validator module is missing at ${workerPath}.`, { hint: "Build APEX (`npm run build`)." }),
    );
  }
  return new Promise((resolve, reject) => {
    const args = [storeDir, ...(options.sessionId ? ["--session", options.sessionId] : [])];
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
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (message?.type === "report") return resolve(message.report);
      if (message?.type === "error") {
        return reject(new ApexError(message.error.code, message.error.message, message.error.hint ? { hint: message.error.hint } : {}));
      }
      const how = timedOut ? `was stopped after ${options.timeoutMs ?? 600_000} ms` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve(crashedReport(`The validator ${how} while reading the store${stderr.trim() ? `: ${stderr.trim().split("\n").slice(-3).join(" | ")}` : ""}.`));
    });
  });
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
