import { constants, isUtf8 } from "node:buffer";
import { ApexError, withDetail } from "../core/errors.js";
import { pathProblem } from "../core/store/paths.js";
import type { Entry, JsonValue } from "../core/store/store.js";
import { refuseInexactNumbers } from "./json-numbers.js";
import { checkImportedValue, parseNdjson, repeatedInValue, repeatedKey, repeatedPath } from "./memory-actions.js";

/**
 * An import file longer than the longest string V8 makes (512 MiB: `memory export` of a memory
 * holding large values writes one) is read without ever being one string: each entry of the
 * object, or each NDJSON line, is decoded and parsed on its own, and checked as `parseImport`
 * checks a smaller file (paths, a path twice, a key twice in a value). It failed with
 * APEX_E_INTERNAL "Cannot create a string longer than 0x1fffffe8 characters".
 */
export function parseLargeImport(bytes: Buffer, name: string): Entry[] {
  // A byte order mark is taken as a smaller file's is (trim() drops it there).
  const start = skipSpace(bytes, bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0);
  const firstLine = bytes.indexOf(0x0a, start);
  // NDJSON: a first line that is a {path, value} of its own (an export's first line is `{` alone).
  if (firstLine !== -1 && isLineOfItsOwn(bytes.subarray(start, firstLine))) return parseNdjson(lines(bytes, name), name);
  if (bytes[start] !== 0x7b) throw new ApexError("APEX_E_BAD_INPUT", `${name}: expected a JSON object of path -> value, or NDJSON lines of {"path", "value"}.`);
  const entries: Entry[] = [];
  const lineOf = new Map<string, number>();
  const lineOfKey = lineCounter(bytes);
  let at = skipSpace(bytes, start + 1);
  if (bytes[at] === 0x7d) at += 1;
  else {
    for (;;) {
      if (bytes[at] !== 0x22) fail(bytes, name, at, "a path in double quotes");
      const keyEnd = stringEnd(bytes, name, at);
      const path = parseText(bytes, name, at, keyEnd) as string;
      at = skipSpace(bytes, keyEnd);
      if (bytes[at] !== 0x3a) fail(bytes, name, at, "':'");
      const valueStart = skipSpace(bytes, at + 1);
      const valueEnd = valueEndOf(bytes, name, valueStart);
      const line = lineOfKey(at);
      const problem = pathProblem(path);
      if (problem) throw new ApexError("APEX_E_BAD_PATH", `${name}:${line}: invalid path ${JSON.stringify(path)}: ${problem}.`);
      const first = lineOf.get(path);
      if (first !== undefined) throw repeatedPath(`${name}:${line}`, path, first);
      lineOf.set(path, line);
      const text = decode(bytes, name, valueStart, valueEnd);
      const value = parseText(bytes, name, valueStart, valueEnd, text);
      const twice = value !== null && typeof value === "object" ? repeatedKey(text) : undefined;
      if (twice) throw repeatedInValue(`${name}:${lineAt(bytes, valueStart + Buffer.byteLength(text.slice(0, twice.second)))}`, path, twice);
      refuseInexactNumbers(text, `the value of ${JSON.stringify(path)}`, (offset) => `${name}:${lineAt(bytes, valueStart + Buffer.byteLength(text.slice(0, offset)))}: `);
      checkImportedValue(path, value, valueEnd - valueStart, () => `${name}:${line}`);
      entries.push({ path, value });
      at = skipSpace(bytes, valueEnd);
      if (bytes[at] === 0x2c) at = skipSpace(bytes, at + 1);
      else if (bytes[at] === 0x7d) {
        at += 1;
        break;
      } else fail(bytes, name, at, "',' or '}'");
    }
  }
  if (skipSpace(bytes, at) < bytes.length) fail(bytes, name, skipSpace(bytes, at), "the end of the file after the object");
  return entries;
}

function skipSpace(bytes: Buffer, at: number): number {
  while (at < bytes.length && (bytes[at] === 0x20 || bytes[at] === 0x0a || bytes[at] === 0x0d || bytes[at] === 0x09)) at++;
  return at;
}

/** The offset just after the JSON string that starts (with its quote) at `at`. UTF-8 has no 0x22 or 0x5c inside a character. */
function stringEnd(bytes: Buffer, name: string, at: number): number {
  let end = at;
  for (;;) {
    end = bytes.indexOf(0x22, end + 1);
    if (end === -1) fail(bytes, name, bytes.length, "the end of a string");
    let backslashes = 0;
    while (bytes[end - 1 - backslashes] === 0x5c) backslashes += 1;
    if (backslashes % 2 === 0) return end + 1;
  }
}

/** The offset just after the JSON value that starts at `at` (checked by JSON.parse afterwards). */
function valueEndOf(bytes: Buffer, name: string, at: number): number {
  if (bytes[at] === 0x22) return stringEnd(bytes, name, at);
  if (bytes[at] !== 0x7b && bytes[at] !== 0x5b) {
    let end = at;
    while (end < bytes.length && ![0x2c, 0x7d, 0x5d, 0x20, 0x0a, 0x0d, 0x09].includes(bytes[end]!)) end++;
    return end;
  }
  let depth = 0;
  for (let i = at; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === 0x22) i = stringEnd(bytes, name, i) - 1;
    else if (byte === 0x7b || byte === 0x5b) depth += 1;
    else if ((byte === 0x7d || byte === 0x5d) && --depth === 0) return i + 1;
  }
  return fail(bytes, name, bytes.length, `the end of the value that starts on line ${lineAt(bytes, at)}`);
}

function decode(bytes: Buffer, name: string, start: number, end: number): string {
  const part = bytes.subarray(start, end);
  if (!isUtf8(part)) throw new ApexError("APEX_E_BAD_INPUT", `${name}:${lineAt(bytes, start)}: not valid UTF-8.`, { hint: "APEX stores text as UTF-8; convert the input first (e.g. iconv -f latin1 -t utf-8)." });
  if (end - start > MAX_TEXT) throw tooLarge(bytes, name, start);
  return part.toString("utf8");
}

function parseText(bytes: Buffer, name: string, start: number, end: number, text = decode(bytes, name, start, end)): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new ApexError("APEX_E_BAD_JSON", withDetail(`${name}:${lineAt(bytes, start)}: invalid JSON`, (error as Error).message), {
      hint: "Nothing was imported. A file is one JSON object of path -> value, or NDJSON lines of {\"path\", \"value\"}.",
    });
  }
}

function isLineOfItsOwn(line: Buffer): boolean {
  if (line.length > MAX_TEXT || !isUtf8(line)) return false;
  try {
    const parsed = JSON.parse(line.toString("utf8")) as unknown;
    return typeof parsed === "object" && parsed !== null && typeof (parsed as { path?: unknown }).path === "string" && "value" in parsed;
  } catch {
    return false;
  }
}

/** The file's lines as text, each decoded on its own. */
function* lines(bytes: Buffer, name: string): Iterable<string> {
  for (let start = 0; start < bytes.length; ) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline === -1 ? bytes.length : newline;
    yield decode(bytes, name, start, end);
    start = end + 1;
  }
}

/** The longest text V8 makes a string of (in UTF-16 units; a UTF-8 byte is at most one). */
const MAX_TEXT = constants.MAX_STRING_LENGTH;

function tooLarge(bytes: Buffer, name: string, at: number): ApexError {
  return new ApexError("APEX_E_TOO_LARGE", `${name}:${lineAt(bytes, at)}: one value (or line) there is more than 512 MiB of JSON, larger than APEX reads as one value. Nothing was imported.`);
}

/** The line of each offset asked, the offsets in increasing order: each newline is found once. */
function lineCounter(bytes: Buffer): (at: number) => number {
  let line = 1;
  let next = bytes.indexOf(0x0a);
  return (at) => {
    while (next !== -1 && next < at) {
      line += 1;
      next = bytes.indexOf(0x0a, next + 1);
    }
    return line;
  };
}

/** The 1-based line of byte offset `at` (for messages only: it counts the newlines before it). */
function lineAt(bytes: Buffer, at: number): number {
  let line = 1;
  for (let i = bytes.indexOf(0x0a); i !== -1 && i < at; i = bytes.indexOf(0x0a, i + 1)) line += 1;
  return line;
}

function fail(bytes: Buffer, name: string, at: number, expected: string): never {
  throw new ApexError("APEX_E_BAD_JSON", `${name}:${lineAt(bytes, at)}: invalid JSON: expected ${expected}${at < bytes.length ? `, found ${JSON.stringify(String.fromCharCode(bytes[at]!))}` : ", found the end of the file"}.`, {
    hint: "Nothing was imported. A file is one JSON object of path -> value, or NDJSON lines of {\"path\", \"value\"}.",
  });
}
