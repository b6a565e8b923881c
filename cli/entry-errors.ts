import { ApexError } from "../core/errors.js";
import { reportError } from "./output.js";

// The entry point's own error reports (bin/apex.js), for the full CLI (main.ts) and the fast path of `apex status` (status-main.ts) alike.

/**
 * For the entry point: a promise that rejected with nobody waiting for it (a library's, or a
 * bug) is reported as an error like any other, without a stack trace, and the command fails.
 */
export function reportUnhandledRejection(reason: unknown): void {
  process.exitCode = Math.max(1, reportError(reason, process.argv.includes("--json")));
}

/**
 * A write to stdout that failed other than by its reader going (EPIPE, not a failure): `apex
 * memory export > backup.json` on a full disk. Said as every error is, with its exit code; it was
 * Node's stack trace. What the command did before it printed (a memory write) stands.
 */
export function reportOutputError(error: NodeJS.ErrnoException): number {
  const full = error.code === "ENOSPC" || error.code === "EDQUOT";
  const why = full ? "the disk is full" : error.code === "EFBIG" ? "the file passed the largest size allowed" : error.message;
  const code = full ? "APEX_E_DISK_FULL" : error.code === "EFBIG" ? "APEX_E_FILE_TOO_LARGE" : "APEX_E_INTERNAL";
  return reportError(new ApexError(code, `Cannot write the output to stdout: ${why}${error.code && full ? ` (${error.code})` : ""}; the output is incomplete.`, {
    hint: "Free space where the output goes (or send it elsewhere) and run the command again.",
    cause: error,
  }), process.argv.includes("--json"));
}
