import { ApexError, isApexError, toApexError, withDetail } from "../core/errors.js";
import { fileDiskFullError, isFileDiskFull } from "../core/store/store-errors.js";
// A raw LMDB error that reached the command (the backend maps those it sees) is still told as damage.
import { isDamage } from "../plugins/lmdb/errors.js";
import { remoteHint } from "./remote-commands.js";
import { displayWidth, useColor } from "./terminal-text.js";

export { useColor };

const codes = { red: 31, green: 32, yellow: 33, blue: 34, magenta: 35, cyan: 36, gray: 90, bold: 1, dim: 2 } as const;
export type Color = keyof typeof codes;

export function paint(text: string, color: Color, stream: NodeJS.WriteStream = process.stdout): string {
  return useColor(stream) ? `\u001b[${codes[color]}m${text}\u001b[0m` : text;
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export { visibleText } from "./terminal-text.js";

export function printLine(text = ""): void {
  process.stdout.write(`${text}\n`);
}

/**
 * Whether the command line asks for JSON: `--json`, or `--format json` (`apex session report`),
 * whose errors are JSON on stderr then, as with --json (they were text, which a reader of the
 * JSON report could not take). What follows `--` is another program's (`apex git -- log --format json`).
 */
export function jsonAsked(argv: readonly string[]): boolean {
  if (argv.includes("--json")) return true;
  const own = argv.includes("--") ? argv.slice(0, argv.indexOf("--")) : argv;
  return own.some((arg, at) => arg === "--format=json" || (arg === "--format" && own[at + 1] === "json"));
}

/** The warnings a command that failed had for its --json output, by the error it failed with (withWarnings). */
const failedWarnings = new WeakMap<object, readonly string[]>();

/**
 * `error`, with the warnings the command had given with --json had it succeeded (`memory set --force` of APEX's paths):
 * its error's JSON carries them as `warnings`, as the output would have, and the text has said them on stderr already.
 */
export function withWarnings(error: unknown, warnings: readonly string[]): unknown {
  if (warnings.length > 0 && typeof error === "object" && error !== null) failedWarnings.set(error, warnings);
  return error;
}

/** The warnings of `error` or of an error it was made from (its cause: an error given a better hint on its way out). */
function warningsOf(error: unknown): readonly string[] | undefined {
  for (let at = error, depth = 0; typeof at === "object" && at !== null && depth < 8; at = (at as { cause?: unknown }).cause, depth++) {
    const warnings = failedWarnings.get(at);
    if (warnings) return warnings;
  }
  return undefined;
}

/** Prints an error for people (or as JSON with --json) and returns its exit code. */
export function reportError(error: unknown, json: boolean): number {
  const apexError = remoteHinted(toApexError(classify(error)));
  const stack = debugging() ? debugStack(apexError) : undefined;
  if (json) {
    const warnings = warningsOf(apexError);
    process.stderr.write(`${JSON.stringify({ ...apexError.toJSON(), ...(warnings ? { warnings } : {}), ...(stack !== undefined ? { stack } : {}) })}\n`);
  } else {
    const label = paint(`error[${apexError.code}]`, "red", process.stderr);
    process.stderr.write(`${label}: ${apexError.message}\n`);
    if (apexError.hint) process.stderr.write(`  ${paint("hint:", "cyan", process.stderr)} ${apexError.hint}\n`);
    if (stack !== undefined) process.stderr.write(`${stack}\n`);
  }
  return apexError.exitCode;
}

/**
 * Through `--remote`, a hint's commands that work remotely carry `--remote TARGET`, whoever wrote
 * the hint: the server's are given it as they arrive (plugins/sharing/transport.ts), and those
 * this process wrote (a task claim's, a wait's that timed out) named commands that, run as
 * written, act on this machine's project. remoteHint leaves a command that has it alone.
 */
function remoteHinted(error: ApexError): ApexError {
  const target = process.env.APEX_REMOTE;
  if (!target || !error.hint) return error;
  const hint = remoteHint(error.hint, target);
  return hint === error.hint ? error : new ApexError(error.code, error.message, { hint, details: error.details, cause: error });
}

/** APEX_DEBUG set, to anything but "" or "0". */
function debugging(): boolean {
  const debug = process.env.APEX_DEBUG;
  return debug !== undefined && debug !== "" && debug !== "0";
}

/**
 * With APEX_DEBUG set, the stack of where an error began: the innermost Error of its causes (a
 * plugin's TypeError under APEX_E_PLUGIN_FAILED, a library's under APEX_E_INTERNAL), else where
 * APEX raised it. The CLI then runs from its modules (cli/bundle.ts), so the frames name them.
 */
function debugStack(error: Error): string | undefined {
  let origin: Error = error;
  for (let depth = 0; depth < 8 && origin.cause instanceof Error; depth++) origin = origin.cause;
  return origin.stack;
}

/**
 * For the entry point: a promise that rejected with nobody waiting for it (a library's, or a
 * bug) is reported as an error like any other, without a stack trace, and the command fails.
 */
export function reportUnhandledRejection(reason: unknown): void {
  process.exitCode = Math.max(1, reportError(reason, jsonAsked(process.argv)));
}

/** Set by a command that runs on once the reader of its output has gone (a server and its log). */
let outlivesOutput = false;
/** stdout and stderr, once their reader has gone, for such a command: it writes to them no more. */
const goneOutputs = new Set<unknown>();

/**
 * For a command that runs on once the reader of its output has gone: `apex serve 2>&1 | grep -m1
 * serving` (a script waiting for it to listen) or a log reader that dies. bin/apex.js exits on a
 * closed stdout or stderr (EPIPE: `apex logs | head` wants no more); a server exited so at its next
 * log line, serving no more, its record left behind.
 */
export function outliveOutput(): void {
  outlivesOutput = true;
}

/** For bin/apex.js, on EPIPE: whether the command goes on without `stream` (else the process exits). */
export function outputGone(stream: unknown): boolean {
  if (outlivesOutput) goneOutputs.add(stream);
  return outlivesOutput;
}

/** Whether `stream` (stdout, stderr) still has a reader, for a command that outlives it. */
export function outputOpen(stream: unknown): boolean {
  return !goneOutputs.has(stream);
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
  }), jsonAsked(process.argv));
}

/**
 * Failures of the machine rather than of APEX, wherever they surface: a full disk (a file write
 * that got ENOSPC or EDQUOT) and a damaged store (an LMDB error about its pages), each with
 * its code and next step instead of APEX_E_INTERNAL.
 */
function classify(error: unknown): unknown {
  if (isApexError(error)) return error;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (isFileDiskFull(error) && typeof (error as { path?: unknown }).path === "string") return fileDiskFullError((error as { path: string }).path, error);
  if (code === "ENOSPC" || code === "EDQUOT") {
    const path = (error as { path?: string }).path;
    return new ApexError("APEX_E_DISK_FULL", `The disk is full${path ? `: cannot write ${path}` : ""}.`, {
      hint: "Free space on that filesystem and run the command again.",
      cause: error,
    });
  }
  if (isDamage(error)) {
    return new ApexError("APEX_E_STORE_DAMAGED", withDetail(`The store is damaged`, (error as Error).message), {
      hint: "Run `apex session validate` to see what is damaged, then `apex session repair ID` to recover what still verifies.",
      cause: error,
    });
  }
  return error;
}

/** A record's field in a sentence: one a damaged or hand-written record lacks reads "unknown", never "undefined". */
export function known(value: unknown): string {
  return value === undefined || value === null || value === "" ? "unknown" : String(value);
}

/**
 * Formats a table of rows with left-aligned columns. A cell a damaged or hand-written record
 * left without a value (undefined, null) shows as "-" rather than failing the whole listing.
 * A cell stays on its row: a line break in it (an agent's reported status, say) shows as its
 * escape, as `apex agent report` prints it; it split the row, its second half under the wrong columns
 * (a tab, too, which a terminal widens to its next stop).
 */
export function table(headers: string[], rows: Array<Array<unknown>>): string {
  const text = rows.map((row) => row.map((cell) => (cell === undefined || cell === null ? "-" : String(cell).replace(/[\n\r\t]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`))));
  // Measured as a terminal shows them (displayWidth): wide characters, colours, escapes.
  const widths = headers.map((header, i) => Math.max(displayWidth(header), ...text.map((row) => displayWidth(row[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + " ".repeat(widths[i]! - displayWidth(cell))))
      .join("  ")
      .trimEnd();
  return [line(headers), ...text.map(line)].join("\n");
}

/** A byte count for people: 512 B, 3.4 MiB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export { ApexError };

/** "1 agent", "12,345 keys": a count with its noun. */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${formatCount(n)} ${n === 1 ? noun : nouns}`;
}

/** 12345 -> "12,345" (without initialising ICU, which costs start-up time). */
export function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** The "Examples:" block of a command's help (`.addHelpText("after", examples(…))`). */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((line) => `  ${line}`).join("\n")}`;
}
