import { closeSync, constants, fstatSync, openSync, readFileSync, statSync } from "node:fs";
import { Socket } from "node:net";
import { isatty } from "node:tty";
import { isUtf8 } from "node:buffer";
import { ApexError } from "../core/errors.js";
import { readWaiting } from "../core/config/locate.js";

/**
 * Text that enters APEX from outside (arguments, stdin, files) must be valid UTF-8: Node would
 * otherwise replace each invalid byte with U+FFFD, and a path or value would be stored as
 * something other than what was given, silently.
 */

/** Decodes input bytes as UTF-8, refusing (APEX_E_BAD_INPUT, exit 2) bytes that are not. */
export function decodeUtf8Input(bytes: Buffer, name: string): string {
  if (isUtf8(bytes)) return bytes.toString("utf8");
  let line = 1;
  let start = 0;
  for (;;) {
    const end = bytes.indexOf(0x0a, start);
    const part = bytes.subarray(start, end === -1 ? bytes.length : end);
    if (!isUtf8(part)) {
      throw new ApexError("APEX_E_BAD_INPUT", `${name}:${line}: not valid UTF-8: ${showBytes(part)}.`, {
        hint: "APEX stores text as UTF-8; convert the input first (e.g. iconv -f latin1 -t utf-8).",
      });
    }
    if (end === -1) break;
    start = end + 1;
    line += 1;
  }
  throw new ApexError("APEX_E_BAD_INPUT", `${name}: not valid UTF-8.`);
}

/**
 * Refuses an argument that was not valid UTF-8. Node decodes argv itself, replacing invalid
 * bytes with U+FFFD, so an argument holding U+FFFD is checked against the bytes the process
 * was started with (/proc/self/cmdline, whose last entries are the arguments after the
 * script); a U+FFFD that was really given (as the bytes EF BF BD) is kept. Where
 * /proc/self/cmdline cannot be read, the arguments are taken as Node decoded them.
 */
export function assertArgumentsUtf8(argv: readonly string[]): void {
  const args = argv.slice(2);
  if (!args.some((arg) => arg.includes("\ufffd"))) return;
  let raw: Buffer;
  try {
    raw = readFileSync("/proc/self/cmdline");
  } catch {
    return;
  }
  const entries: Buffer[] = [];
  let start = 0;
  for (let end = raw.indexOf(0, start); end !== -1; end = raw.indexOf(0, start)) {
    entries.push(raw.subarray(start, end));
    start = end + 1;
  }
  if (start < raw.length) entries.push(raw.subarray(start));
  if (entries.length < args.length) return;
  const tail = entries.slice(entries.length - args.length);
  for (let i = 0; i < args.length; i++) {
    if (args[i]!.includes("\ufffd") && !isUtf8(tail[i]!)) {
      throw new ApexError("APEX_E_BAD_INPUT", `Argument ${i + 1} is not valid UTF-8: ${showBytes(tail[i]!)}.`, {
        hint: "Paths, values and names are UTF-8 text; convert the argument first (e.g. with iconv).",
      });
    }
  }
}

/** Bytes for a message: printable ASCII as it is, `"` and `\` escaped, everything else as \xNN, cut after 60 bytes. */
function showBytes(bytes: Buffer): string {
  let out = "";
  for (const byte of bytes.subarray(0, 60)) {
    if (byte === 0x22 || byte === 0x5c) out += `\\${String.fromCharCode(byte)}`;
    else out += byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return `"${out}${bytes.length > 60 ? "…" : ""}"`;
}

/** Reads stdin (fd 0) or a file as UTF-8 text, refusing bytes that are not UTF-8. */
export async function readUtf8Input(file: string | 0, name: string): Promise<string> {
  return decodeUtf8Input(await readInputBytes(file, name), name);
}

/**
 * The bytes of an input file, or of stdin (0), NAME naming it in errors: one missing is not
 * found (exit 3); a directory (`< dir`), one this user may not read or one that fails to read
 * is bad input (exit 2), not APEX_E_INTERNAL. A device such as /dev/zero was read without
 * end (16 GB and counting: Node's 2 GiB limit holds for files of a known size only), and a
 * named pipe without a writer was waited for in a blocking open. Now a device is refused
 * (/dev/null is empty input; stdin may be a terminal), a pipe is read up to that same 2 GiB, and
 * a named pipe is read as `cat` reads it (readFifo): its writer waited for, however late it comes,
 * and read to its end, the process handling signals meanwhile. (For a while a named pipe without a
 * writer was read as empty input at once, and a writer that opened it a moment later was missed.)
 */
export async function readInputBytes(file: string | 0, name: string): Promise<Buffer> {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: opening a named pipe does not wait for a writer here (readFifo does, without blocking the process).
    fd = file === 0 ? 0 : openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    // /dev/null reads as empty input, as it did.
    const empty = stat.isCharacterDevice() && stat.rdev === statSync("/dev/null").rdev;
    if (empty) return Buffer.alloc(0);
    const device = stat.isBlockDevice() || (stat.isCharacterDevice() && !isatty(fd));
    if (stat.isDirectory()) throw Object.assign(new Error(), { code: "EISDIR" });
    if (device || (file !== 0 && !stat.isFile() && !stat.isFIFO())) throw new ApexError("APEX_E_BAD_INPUT", `Cannot read ${name}: it is ${stat.isSocket() ? "a socket" : "a device"}, not a file or a pipe.`, { hint: "Nothing was written. Give a file, or - to read standard input (`… | apex memory import -`)." });
    if (file !== 0 && stat.isFIFO()) {
      const pipe = fd;
      fd = undefined; // readFifo's to close
      return await readFifo(pipe, { limit: MAX_INPUT_BYTES, over: () => tooLarge(name) });
    }
    return stat.isFile() ? readFileSync(fd) : readBounded(fd, name);
  } catch (error) {
    if (error instanceof ApexError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const missing = code === "ENOENT" || code === "ENOTDIR";
    // Node reads no file over 2 GiB into one buffer (ERR_FS_FILE_TOO_LARGE, all the message said).
    if (code === "ERR_FS_FILE_TOO_LARGE") throw tooLarge(name);
    const why = code === "EISDIR" ? "it is a directory (EISDIR)" : code === "EACCES" ? "permission denied (EACCES)" : (code ?? (error as Error).message);
    throw new ApexError(missing ? "APEX_E_NOT_FOUND" : "APEX_E_BAD_INPUT", `Cannot read ${name}: ${why}.`);
  } finally {
    if (fd !== undefined && fd !== 0) closeSync(fd);
  }
}

/**
 * What the pipe `fd` (opened O_NONBLOCK; a named pipe, or /dev/stdin, `<(…)`) gives, read as `cat`
 * reads it, and closed then. A named pipe that no writer has opened yet is waited for, however
 * long: its reader is not told of an end before a writer came and went (Linux), so a writer that
 * opens it a moment after the command started is read, not missed as empty input; one that opens
 * it and closes it having written nothing is empty input. The wait is the event loop's (epoll),
 * not a blocking open or read: signals are handled meanwhile, so Ctrl-C ends the command as it
 * ends `cat`, and nothing is left blocked to hold the process at its exit. Reads up to EOF (every
 * writer gone), or up to `enough` (the bytes so far) saying so; past `limit` bytes, `over`'s
 * error, or without `over` the first `limit` bytes.
 */
export function readFifo(fd: number, options: { limit: number; over?: () => Error; enough?: (bytes: Buffer) => boolean }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // The stream owns fd from here, and closes it.
    const pipe = new Socket({ fd, readable: true, writable: false });
    const chunks: Buffer[] = [];
    let total = 0;
    const finish = (error?: Error) => {
      pipe.destroy();
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, total).subarray(0, options.limit));
    };
    pipe.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      if (total > options.limit) finish(options.over?.());
      else if (options.enough?.(Buffer.concat(chunks, total))) finish();
    });
    pipe.on("end", () => finish());
    pipe.on("error", (error) => finish(error));
  });
}

const tooLarge = (name: string) => new ApexError("APEX_E_TOO_LARGE", `Cannot read ${name}: it is larger than 2 GiB, the most APEX reads as one input.`, { hint: "Nothing was written. Import it in parts (`apex memory export GLOB` writes a part)." });

/** A pipe's or terminal's bytes to its end, refused once they pass 2 GiB (`yes | apex memory import -` grew without end). */
function readBounded(fd: number, name: string): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (;;) {
    const read = readWaiting(fd, chunk, 0, chunk.length);
    if (read === 0) break;
    total += read;
    if (total > MAX_INPUT_BYTES) throw tooLarge(name);
    chunks.push(Buffer.from(chunk.subarray(0, read)));
  }
  return Buffer.concat(chunks, total);
}


/** Node's most for one buffer read from a file (kIoMaxLength). */
const MAX_INPUT_BYTES = 2 ** 31 - 1;
