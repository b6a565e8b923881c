import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { ApexError } from "../core/errors.js";
import { readWaiting } from "../core/config/locate.js";
import { readFifo } from "./input-text.js";

/**
 * Where a remote command's token comes from, read before commander parses anything (the HTTP
 * transport reads APEX_TOKEN). `--token-file FILE` (`-`: standard input) and APEX_TOKEN keep the
 * token off the command line; `--token VALUE` still works, with a warning, since a command line
 * is anyone's to read on this machine (`ps`, /proc/PID/cmdline) and the shell's history keeps it.
 * This process's own command line is then shown with the token replaced by `***` (a long
 * `apex connect` or `logs -f` no longer lists it for as long as it runs); an environment is the
 * owner's only (/proc/PID/environ is mode 0400).
 */
export async function applyTokenFlags(args: string[], warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<void> {
  let inline: string | undefined;
  let file: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") break;
    if (arg === "--token" && args[i + 1] !== undefined) inline = args[++i];
    else if (arg.startsWith("--token=")) inline = arg.slice("--token=".length);
    else if (arg === "--token-file" && args[i + 1] !== undefined) file = args[++i];
    else if (arg.startsWith("--token-file=")) file = arg.slice("--token-file=".length);
  }
  if (inline !== undefined && file !== undefined) {
    throw new ApexError("APEX_E_USAGE", "--token and --token-file both give the token: give one.", { hint: "Keep --token-file FILE (or APEX_TOKEN): a token on the command line is visible to every user of this machine." });
  }
  if (file !== undefined) process.env.APEX_TOKEN = await readTokenFile(file);
  if (inline === undefined) return;
  process.env.APEX_TOKEN = inline;
  warn("warning: --token puts the token on the command line, where every user of this machine can read it (ps, /proc) and the shell's history keeps it; use --token-file FILE (- reads standard input), APEX_TOKEN, or `apex login HOST`");
  if (inline.length >= 8) hideFromCommandLine(inline);
}

/** The first line of FILE (or of standard input, for `-`), trimmed: the token. */
async function readTokenFile(file: string): Promise<string> {
  const name = file === "-" ? "standard input" : file;
  if (file === "-" && process.stdin.isTTY) {
    throw new ApexError("APEX_E_USAGE", "--token-file - reads the token from standard input, which is a terminal here.", { hint: "Pipe it in (`apex … --token-file - < token.txt`), give a file, or save it once with `apex login HOST` (which asks for it without echoing it)." });
  }
  let text: string;
  try {
    text = await readFirstLine(file === "-" ? 0 : file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ApexError("APEX_E_USAGE", `Cannot read --token-file ${JSON.stringify(name)} (${code}).`, { hint: "Give the file that holds the token (one line, as `apex session share` printed it), or - for standard input." });
  }
  const token = text.replace(/^\uFEFF/, "").split(/\r?\n/).find((line) => line.trim() !== "")?.trim() ?? "";
  if (!token) throw new ApexError("APEX_E_USAGE", `--token-file ${JSON.stringify(name)} holds no token (it is empty).`, { hint: "Put the token `apex session share` printed on the file's first line." });
  // (a binary file, /dev/zero: not text a token could be; never repeated)
  if (/[\u0000-\u001f\u007f]/.test(token)) throw new ApexError("APEX_E_USAGE", `--token-file ${JSON.stringify(name)} does not hold a token: its first line has control characters.`, { hint: "Put the token `apex session share` printed on the file's first line." });
  return token;
}

/**
 * What a token file holds up to its first line that is not blank, read at most 4 KiB (a token is
 * 64 characters): `--token-file /dev/zero`, or `yes | apex --token-file - …`, never ended before.
 * A pipe with nothing in it yet (EAGAIN: standard input may be non-blocking) is waited for; so is
 * a named pipe's writer, however late it opens it, as `cat` waits (readFifo: Ctrl-C still ends the
 * command). Such a pipe without a writer was read as empty at once: a writer a moment later was missed.
 */
async function readFirstLine(file: string | 0): Promise<string> {
  const fd = file === 0 ? 0 : openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const line = (text: string) => /\S[^\n]*\n/.test(text);
  let owned = file !== 0;
  try {
    if (owned && fstatSync(fd).isFIFO()) {
      owned = false; // readFifo's to close
      return (await readFifo(fd, { limit: 4096, enough: (bytes) => line(bytes.toString("utf8")) })).toString("utf8");
    }
    const buffer = Buffer.alloc(4096);
    let length = 0;
    while (length < buffer.length && !line(buffer.toString("utf8", 0, length))) {
      const read = readWaiting(fd, buffer, length, buffer.length - length);
      if (read === 0) break;
      length += read;
    }
    return buffer.toString("utf8", 0, length);
  } finally {
    if (owned) closeSync(fd);
  }
}

/** This process's command line as `ps` and /proc/PID/cmdline show it, with `token` replaced by `***`. */
function hideFromCommandLine(token: string): void {
  try {
    process.title = [process.argv0, ...process.argv.slice(1)].map((arg) => arg.split(token).join("***")).join(" ");
  } catch {
    // A platform that cannot set it: the warning said where the token shows.
  }
}
