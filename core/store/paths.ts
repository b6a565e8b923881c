import { ApexError } from "../errors.js";

/** Longest accepted path, in UTF-8 bytes (lmdb-js keys may be up to 1978 bytes). */
export const MAX_PATH_BYTES = 1024;

/**
 * Longest key below /sessions: a session in a git worktree keeps its memory under its own root,
 * `/sessions/<id>/memory` (records.ts: memoryRootOf), which comes before a path of up to
 * MAX_PATH_BYTES as given. Held to MAX_PATH_BYTES, such a path was refused in that session
 * (naming a key the user never typed), and a checkpoint holding one could not be continued there.
 */
export const MAX_KEY_BYTES = MAX_PATH_BYTES + 128;

const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * Checks a keyspace path: absolute, '/'-separated, no empty, '.' or '..' segment,
 * no control character, at most 1024 bytes. "/" alone names the root (used by queries only).
 */
export function checkPath(path: string, what = "path"): string {
  const problem = pathProblem(path);
  if (problem) {
    // A path past the size limit is named by its start: the message stays one readable line.
    const shown = typeof path === "string" && path.length > 120 ? `${JSON.stringify(path.slice(0, 100))}… (${path.length} characters)` : JSON.stringify(path);
    throw new ApexError("APEX_E_BAD_PATH", `Invalid ${what} ${shown}: ${problem}.`, { hint: "Paths look like /project/notes/today: absolute, '/'-separated, without empty, '.' or '..' segments." });
  }
  return path;
}

export function pathProblem(path: string): string | undefined {
  if (typeof path !== "string" || path.length === 0) return "it is empty";
  if (path.charCodeAt(0) !== SLASH) return "it must start with '/'";
  if (path === "/") return "the root '/' cannot hold a value";
  // One pass over the UTF-16 code units: control characters, surrogates, segments, byte length.
  let bytes = 0;
  let segment = 0;
  let segmentStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const code = i < path.length ? path.charCodeAt(i) : SLASH;
    if (code === SLASH) {
      segment++;
      const length = i - segmentStart;
      if (length === 0) return i === path.length ? "it ends with '/' (empty last segment)" : `segment ${segment} is empty ('//')`;
      if (length <= 2 && path.charCodeAt(segmentStart) === DOT && (length === 1 || path.charCodeAt(segmentStart + 1) === DOT)) {
        return `segment ${segment} is '${path.slice(segmentStart, i)}'`;
      }
      segmentStart = i + 1;
      bytes += 1;
      continue;
    }
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return `it contains the control character U+${code.toString(16).padStart(4, "0")}`;
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      const next = path.charCodeAt(i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return "it contains an unpaired surrogate (not valid UTF-8)";
      bytes += 4;
      i++;
    } else if (code >= 0xdc00 && code <= 0xdfff) return "it contains an unpaired surrogate (not valid UTF-8)";
    else bytes += 3;
  }
  const limit = path.startsWith("/sessions/") ? MAX_KEY_BYTES : MAX_PATH_BYTES;
  return bytes > limit ? `it is longer than ${limit} bytes` : undefined;
}

/**
 * The key range holding `path` and everything below it.
 *
 * Keys are ordered by their UTF-8 bytes. Every key below `/a/b` starts with `/a/b/`, and
 * the smallest string greater than all of them is `/a/b0` ('0' follows '/'), so the range
 * is exact for any character, including those outside the BMP (which `+ '\uffff'` misses).
 */
export function subtreeRange(path: string): { start: string; end: string } {
  if (path === "/") return { start: "/", end: "0" };
  return { start: `${path}/`, end: `${path}0` };
}

/**
 * A raw range bound (of keys(), entries(), a glob's prefix or a subtree: any string) as one both
 * backends can seek to, with the same answer over every key a store can hold (valid paths: no
 * control character, no unpaired surrogate, at most MAX_KEY_BYTES). The bound is cut at the
 * first character no key holds and that a backend cannot take, and the least character a key
 * may hold there is put in its place: after NUL (which PostgreSQL's text refuses) U+0001, after
 * an unpaired surrogate (no UTF-8: PostgreSQL's driver sent U+FFFD, lmdb-js WTF-8 for a short
 * string and U+FFFD for a long one) U+E000, the code point after the surrogates. A bound longer
 * than any key (past LMDB's key size, which lmdb-js refused with a bare Error) is cut once it
 * passes MAX_KEY_BYTES. `exact` false: the bound changed, and a backend must then treat it as
 * inclusive when it is the lower end of the range and exclusive when it is the upper end.
 */
export function keyBound(bound: string): { key: string; exact: boolean } {
  let bytes = 0;
  for (let i = 0; i < bound.length; i++) {
    const code = bound.charCodeAt(i);
    if (code === 0) return { key: `${bound.slice(0, i)}\u0001`, exact: false };
    if (code >= 0xd800 && code <= 0xdfff) {
      const next = bound.charCodeAt(i + 1);
      if (code >= 0xdc00 || !(next >= 0xdc00 && next <= 0xdfff)) return { key: `${bound.slice(0, i)}\ue000`, exact: false };
      i++;
      bytes += 4;
    } else bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : 3;
    if (bytes > MAX_KEY_BYTES) return { key: bound.slice(0, i + 1), exact: false };
  }
  return { key: bound, exact: true };
}

/** The range of keys starting with `prefix` (any string), exact under byte ordering. */
export function prefixRange(prefix: string): { start: string; end: string | undefined } {
  if (prefix === "") return { start: "", end: undefined };
  // Increment the last code point; the successor of U+10FFFF does not exist, so drop it and carry.
  const codePoints = Array.from(prefix);
  while (codePoints.length > 0) {
    const last = codePoints.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) {
      let next = last + 1;
      if (next >= 0xd800 && next <= 0xdfff) next = 0xe000;
      return { start: prefix, end: codePoints.join("") + String.fromCodePoint(next) };
    }
  }
  return { start: prefix, end: undefined };
}

export function parentOf(path: string): string {
  const index = path.lastIndexOf("/");
  return index <= 0 ? "/" : path.slice(0, index);
}

export function isWithin(path: string, ancestor: string): boolean {
  return ancestor === "/" || path === ancestor || path.startsWith(`${ancestor}/`);
}
