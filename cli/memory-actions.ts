import { constants } from "node:buffer";
import type { ProjectLocation } from "../core/config/locate.js";
import { ApexError, MAX_DEPTH, tooDeepError, withDetail } from "../core/errors.js";
import { compileGlob, type Glob } from "../core/store/glob.js";
import { checkPath, MAX_KEY_BYTES, MAX_PATH_BYTES, pathProblem } from "../core/store/paths.js";
import { type Entry, type JsonValue } from "../core/store/store.js";
import type { SessionRecord } from "../core/session/records.js";
import { openSessionClient, type SessionClient } from "../core/session/client.js";
import { openWriter } from "./context.js";
import { decodeUtf8Input, readInputBytes, readUtf8Input } from "./input-text.js";
import { refuseInexactNumbers } from "./json-numbers.js";
import { paint, printJson, withWarnings } from "./output.js";
import { terminalSafe } from "./terminal-text.js";

/** Read access to the memory, wherever openSessionClient reaches the session. */
export interface MemoryReader {
  get(path: string): Promise<JsonValue | undefined>;
  query(glob: string, limit?: number): Promise<Entry[]>;
  /** The project's session records as the session readers give them: with their leases. */
  sessions?(): Promise<SessionRecord[]>;
  /** True through `apex serve`: the status of each of sessions() is the server's verdict, judged where the supervisors run. */
  judged?: boolean;
  close(): Promise<void>;
}

/**
 * Agents (APEX_SOCKET set) read through the supervisor so that no agent process ever opens
 * LMDB; everyone else reads the store directly, read-only. A project without a store yet reads
 * as an empty keyspace.
 */
export async function openReader(location: ProjectLocation, reads?: string): Promise<MemoryReader> {
  const client = await openSessionClient(location, "read");
  // A path or glob of the memory itself (not only APEX's records) of a session that does not hold its memory.
  if (client.via === "store" && !client.empty && reads !== undefined && !/^\/sessions(\/|$)|^\/projects\/config$/.test(reads)) {
    try {
      await client.run("memory.owner", {}, async (store) => (await import("./writer.js")).refuseMemoryNotHeld(store, true));
    } catch (error) {
      await client.close();
      throw error;
    }
  }
  return readerOver(client);
}

export function readerOver(client: SessionClient): MemoryReader {
  return {
    get: async (path) => (await client.call("memory.get", { path })) as JsonValue | undefined,
    // Through a supervisor a page at a time: its socket carries at most 256 MiB of JSON a reply.
    query: async (glob, limit) => (await import("./memory-pages.js")).queryEntries(client, glob, limit),
    sessions: async () => (await client.call("session.list")) as SessionRecord[],
    ...(client.via === "remote" ? { judged: true } : {}),
    close: () => client.close(),
  };
}

export async function showMemory(location: ProjectLocation, given: string, json: boolean): Promise<void> {
  // A trailing '/' is read as query, export and watch read it (`/notes/` is /notes); it was APEX_E_BAD_PATH here.
  const path = plainPath(given);
  // The root holds no value of its own: `/` shows everything below it, as `memory query '/**'`.
  const root = path === "/";
  if (!root) checkPath(path);
  const checkpoint = !root && CHECKPOINT_PATH.test(path) ? await readCheckpointRecord(location, path) : undefined;
  if (checkpoint !== undefined) {
    if (json) printJson({ path, value: checkpoint });
    else process.stdout.write(`${JSON.stringify(checkpoint, null, 2)}\n`);
    return;
  }
  const reader = await openReader(location, path);
  try {
    const value = root ? undefined : await reader.get(path);
    if (value !== undefined) {
      // The entries below a path that has a value of its own were left unsaid: the value alone looked like all there is.
      const below = await countBelow(reader, path);
      // Counted in --json only when there are some: the output of a path with nothing below is as it was.
      if (json) printJson({ path, value, ...childrenFields(below) });
      else {
        process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
        if (below.count > 0) process.stderr.write(`${paint("note:", "cyan", process.stderr)} ${path} also has ${entriesBelow(below)} below it, not shown: \`apex memory query ${shellArg(path)}\` lists ${them(below)} with ${path}.\n`);
      }
      return;
    }
    const below = await reader.query(root ? "/**" : `${escapeGlob(path)}/**`);
    if (below.length === 0) {
      throw new ApexError("APEX_E_NOT_FOUND", `Nothing is stored at ${path}.`, {
        hint: `List what exists with: apex memory query ${parentGlob(path)}${LANGGRAPH_PATH.test(path) ? LANGGRAPH_HINT : ""}`,
      });
    }
    // Written an entry at a time, as JSON.stringify(…, null, 2) would write it whole: a subtree of more
    // than 512 MiB of JSON (V8's longest string) failed with APEX_E_INTERNAL "Invalid string length".
    if (json) await writeChunked(prettyObjectChunks(below, `{\n  "path": ${JSON.stringify(path)},\n  "value": null,\n  "children_count": ${below.length},\n  "children_count_exact": true,\n  "children": `, 1, "\n}\n"));
    else await writeChunked(prettyObjectChunks(below, "", 0, "\n"));
  } finally {
    await reader.close();
  }
}

/**
 * LangGraph's channel values (apex-sessions/langgraph) are at /langgraph/<thread>/<namespace>/<channel>
 * in each step's checkpoint, never in the live memory, where a user looking for them found nothing and
 * was sent to a query that finds nothing either.
 */
const LANGGRAPH_PATH = /^\/langgraph(\/|$)/;
const LANGGRAPH_HINT = ". LangGraph's channel values are not in the live memory: each step's are in its checkpoint (`apex checkpoint show latest` lists its channels, `apex checkpoint diff` what changed), and ApexSaver's getTuple reads them";

/** How many entries `show` and `delete` count below a path at most: past it they say "more than". */
export const CHILDREN_COUNTED = 1000;

/** The entries below PATH, counted up to {@link CHILDREN_COUNTED} (one range read; `exact` false: there are more). */
async function countBelow(reader: MemoryReader, path: string): Promise<{ count: number; exact: boolean }> {
  const found = (await reader.query(`${escapeGlob(path)}/**`, CHILDREN_COUNTED + 1)).length;
  return found > CHILDREN_COUNTED ? { count: CHILDREN_COUNTED, exact: false } : { count: found, exact: true };
}

/** `children_count` and `children_count_exact` of --json, when there are entries below (else nothing, as before they were counted). */
function childrenFields(below: { count: number; exact: boolean }): { children_count?: number; children_count_exact?: boolean } {
  return below.count > 0 ? { children_count: below.count, children_count_exact: below.exact } : {};
}

function them({ count, exact }: { count: number; exact: boolean }): string {
  return count === 1 && exact ? "it" : "them";
}

function entriesBelow({ count, exact }: { count: number; exact: boolean }): string {
  return exact ? `${count} ${count === 1 ? "entry" : "entries"}` : `more than ${count} entries`;
}

/**
 * PATH as `memory show` and `delete` take it: without the trailing '/' that query, export and watch
 * accept on a plain path (`/notes/` is /notes). Only that: `delete /notes/` deletes /notes, not
 * what is below it, which only --recursive does.
 */
export function plainPath(path: string): string {
  // Only slashes ('//') is no path with a '/' more: it is left to checkPath, which names the empty segment.
  return /^(.*[^/])\/+$/.exec(path)?.[1] ?? path;
}

export async function queryMemory(
  location: ProjectLocation,
  glob: string,
  options: { json?: boolean; keys?: boolean; limit?: number },
): Promise<void> {
  const compiled = checkedGlob(glob);
  const reader = await openReader(location, glob);
  try {
    const entries = await readMatching(reader, compiled, options.limit);
    if (options.json) {
      // --keys: the paths only, as a JSON array (it printed every value, as without --keys).
      await writeChunked(options.keys ? chunkLines([JSON.stringify(entries.map((entry) => entry.path), null, 2)]) : jsonObjectChunks(entries));
      return;
    }
    // A path on one line: this store's paths hold no control character, a server's answer may (a line break forged an entry below).
    const path = (entry: Entry) => terminalSafe(entry.path, { singleLine: true });
    const lines = options.keys ? entries.map(path) : entries.map((entry) => `${paint(path(entry), "cyan")}  ${JSON.stringify(entry.value)}`);
    if (lines.length > 0) await writeChunked(chunkLines(lines));
  } finally {
    await reader.close();
  }
}

export async function setMemory(location: ProjectLocation, given: string, json: string, asJson: boolean, force = false): Promise<void> {
  // `/notes/` is /notes, as for show, delete, query and export (it was APEX_E_BAD_PATH here alone).
  const path = plainPath(given);
  checkPath(path);
  // A leading byte order mark (an editor's) is dropped, as import drops it: from stdin, and from the argument
  // (`"$(cat value.json)"`), where it was "Unexpected token '\ufeff'", the character invisible.
  const text = (json === "-" ? await readUtf8Input(0, "stdin") : json).replace(/^\uFEFF/, "");
  // Empty stdin (the command before `|` failed, or `< /dev/null`) said "Unexpected end of JSON input".
  if (json === "-" && text.trim() === "") {
    throw new ApexError("APEX_E_BAD_INPUT", `stdin holds no value for ${path}: it is ${text === "" ? "empty" : "only whitespace"}.`, {
      hint: "Nothing was written. Give a JSON value on stdin (`echo 42 | apex memory set PATH -`), or as the argument.",
    });
  }
  const value = parseJsonValue(text, path);
  const warnings = await checkOwned("memory set", [path], { force, value }, asJson);
  await keepingWarnings(warnings, async () => {
    if (text.length >= TOO_DEEP_MIN_CHARS) refuseTooDeep(path, value);
    const writer = await openWriter(location);
    try {
      const { revision } = await writer.set(path, value, force);
      if (asJson) printJson({ path, revision, ...warningsField(warnings) });
      else process.stdout.write(`set ${path} (revision ${revision})\n`);
    } finally {
      await writer.close();
    }
  });
}

export async function deleteMemory(location: ProjectLocation, given: string, recursive: boolean, asJson: boolean, force = false): Promise<void> {
  // `/notes/` is /notes, as for show, query and export: with --recursive its subtree too, without it /notes alone.
  const path = plainPath(given);
  if (path === "/") {
    // What a user clearing the whole memory types: checkPath's answer (the root cannot hold a value) did not say how.
    throw new ApexError("APEX_E_BAD_PATH", "The root '/' cannot be deleted: it holds no value of its own, and memory delete takes one path.", {
      hint: "Delete each top-level path with --recursive (`apex memory query / --keys` lists the paths; /sessions and /projects/config are APEX's own).",
    });
  }
  checkPath(path);
  const warnings = await checkOwned("memory delete", [path], { recursive, force }, asJson);
  const nothing = async () => new ApexError("APEX_E_NOT_FOUND", `Nothing is stored at ${path}${recursive ? " or below it" : ""}.`, { hint: await deleteHint(location, path, recursive) });
  await keepingWarnings(warnings, async () => {
    // Nothing to delete in a project whose store was never made: none is made to find that out (it was, .apex/ and all).
    if (await noStoreToWrite(location)) throw await nothing();
    const writer = await openWriter(location);
    try {
      const { deleted, revision } = await writer.delete(path, recursive, force);
      if (deleted === 0) throw await nothing();
      // What a delete without --recursive left below the path is said, so that `delete /notes/` is not taken for the subtree's.
      const kept = recursive ? { count: 0, exact: true } : await keptBelow(location, path);
      if (asJson) printJson({ path, deleted, revision, ...childrenFields(kept), ...warningsField(warnings) });
      else {
        process.stdout.write(`deleted ${deleted} ${deleted === 1 ? "entry" : "entries"} (revision ${revision})\n`);
        if (kept.count > 0) process.stderr.write(`${paint("note:", "cyan", process.stderr)} only ${path} was deleted; ${entriesBelow(kept)} below it ${them(kept) === "it" ? "is" : "are"} kept: \`apex memory delete ${shellArg(path)} --recursive\` deletes ${them(kept)} too.\n`);
      }
    } finally {
      await writer.close();
    }
  });
}

async function keptBelow(location: ProjectLocation, path: string): Promise<{ count: number; exact: boolean }> {
  const reader = await openReader(location);
  try {
    return await countBelow(reader, path);
  } finally {
    await reader.close();
  }
}

export async function importMemory(location: ProjectLocation, file: string, asJson: boolean, force = false): Promise<void> {
  const name = file === "-" ? "stdin" : file;
  // Reading bytes and decoding once is about twice as fast as readFileSync(…, "utf8") on large files.
  const bytes = await readInputBytes(file === "-" ? 0 : file, name);
  // Longer than V8's longest string (an export of large values): read an entry at a time.
  const entries = bytes.length > constants.MAX_STRING_LENGTH ? (await import("./memory-import-large.js")).parseLargeImport(bytes, name) : parseImport(decodeUtf8Input(bytes, name), name);
  const warnings = await checkOwned("memory import", entries.map((entry) => entry.path), { force, values: entries.map((entry) => entry.value) }, asJson);
  const printImported = ({ count, revision }: { count: number; revision: number }) => {
    if (asJson) printJson({ count, revision, ...warningsField(warnings) });
    // `{}`: what `memory export` writes when nothing matches; importing it is no error, and says it wrote nothing.
    else if (count === 0) process.stdout.write(`imported 0 entries: ${name} is an empty object, nothing was written (revision ${revision})\n`);
    else process.stdout.write(`imported ${count} ${count === 1 ? "entry" : "entries"} (revision ${revision})\n`);
  };
  await keepingWarnings(warnings, async () => {
    if (bytes.length >= TOO_DEEP_MIN_CHARS) for (const entry of entries) refuseTooDeep(entry.path, entry.value);
    // Nothing to write in a project whose store was never made: none is made for it (it was, while saying nothing was written).
    if (entries.length === 0 && (await noStoreToWrite(location))) return printImported({ count: 0, revision: 0 });
    const writer = await openWriter(location);
    try {
      printImported(await writer.importEntries(entries, force));
    } finally {
      await writer.close();
    }
  });
}

/**
 * Runs the write that follows checkOwned: should it fail, its error carries the --force warnings (with --json; without,
 * they are on stderr already), which the output's `warnings` would have had: they were lost with the output.
 */
async function keepingWarnings(warnings: string[], write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (error) {
    throw withWarnings(error, warnings);
  }
}

/**
 * True when a write would reach this project's own store (no `--remote`, not inside an agent) and
 * that store was never made: a write that has nothing to write then makes none. The config is
 * checked all the same, as a write checks it: an unknown plugin, or a plugin file that is missing
 * or does not load, is exit 2.
 */
async function noStoreToWrite(location: ProjectLocation): Promise<boolean> {
  if (process.env.APEX_REMOTE || process.env.APEX_SOCKET) return false;
  if (await (await import("../core/store/open.js")).storeExists(location)) return false;
  await (await import("../core/session/direct.js")).assertConfigValid(location);
  return true;
}

/**
 * Refuses a write to paths APEX owns before the store is opened (the session's writer checks
 * again: plugins/owned-paths.ts is the one rule); with --force, warns on stderr instead, or, with --json
 * (AS_JSON), returns the warning for the output's `warnings`, as `config show --json` gives its warnings.
 */
async function checkOwned(command: string, paths: string[], options: { recursive?: boolean; force: boolean; value?: unknown; values?: unknown[] }, asJson: boolean): Promise<string[]> {
  const { checkOwnedWrite, forcedWarning } = await import("../plugins/owned-paths.js");
  if (process.env.APEX_REMOTE) {
    // The server's rule, before anything is sent: APEX's records and all of /sessions are refused whatever
    // --force says (the local refusal's hint, "add --force", led to a second refusal).
    const { checkRemoteWrite } = await import("../plugins/sharing/scope.js");
    const method = command.replace(" ", ".");
    checkRemoteWrite(method, method === "memory.import" ? { entries: paths.map((path) => ({ path })) } : { path: paths[0], recursive: options.recursive === true });
  }
  const forced = checkOwnedWrite(command, paths, options);
  // Through `apex serve` such a write is refused whatever --force says (the server decides): no warning that it writes.
  if (forced.length === 0 || process.env.APEX_REMOTE) return [];
  const warning = forcedWarning(command, forced);
  if (asJson) return [warning];
  process.stderr.write(`${paint("warning:", "yellow", process.stderr)} ${warning}\n`);
  return [];
}

/** A --json output's `warnings`, left out when there are none (as `config show --json` leaves them out). */
function warningsField(warnings: string[]): { warnings?: string[] } {
  if (warnings.length === 0) return {};
  return { warnings };
}

export async function exportMemory(location: ProjectLocation, glob: string): Promise<void> {
  const compiled = checkedGlob(glob);
  const reader = await openReader(location, glob);
  try {
    await writeChunked(jsonObjectChunks(await readMatching(reader, compiled)));
  } finally {
    await reader.close();
  }
}

export async function watchMemory(
  location: ProjectLocation,
  glob: string,
  options: { since?: number; timeout?: number; json?: boolean; changesOnly?: boolean },
): Promise<void> {
  let compiled = checkedGlob(glob);
  if (compiled.literal) {
    // A plain path means it and everything below it, as for `memory query` and `export` (`/notes/` watched
    // nothing, ever, and `/notes` only the path itself). Checked as query checks it: one that no record can
    // have would be watched forever. The stores read a superset (`/notes**`); `matches` keeps the subtree.
    const path = compiled.prefix === "/" ? "/" : checkPath(plainPath(compiled.prefix));
    compiled = { ...compileGlob(path === "/" ? "/**" : `${escapeGlob(path)}**`), matches: (p: string) => path === "/" || p === path || p.startsWith(`${path}/`) };
  }
  const { watchChanges } = await import("./memory-watch.js");
  await watchChanges(location, compiled, options, glob);
}

/**
 * A glob for query, export and watch, refused (APEX_E_BAD_GLOB, exit 2) when no path can match it: a segment
 * that is empty, `.` or `..`, or a control character, which no path may hold (checkPath). `memory watch
 * '/notes//*'` watched for ever and query printed nothing, without a word. A plain path may end with '/'.
 */
function checkedGlob(source: string): Glob {
  const glob = compileGlob(source);
  if (glob.literal) return glob; // a plain path: checked as a path (APEX_E_BAD_PATH) where it is read
  const segments = source.split("/").slice(1);
  const control = /[\u0000-\u001f\u007f-\u009f]/.exec(source)?.[0];
  const at = segments.findIndex((segment) => segment === "." || segment === ".." || segment === "");
  const least = leastBytes(source);
  // Keys under /sessions/ may be longer: a worktree session's memory is kept there, below its own root.
  const limit = glob.prefix.startsWith("/sessions/") || "/sessions/".startsWith(glob.prefix) ? MAX_KEY_BYTES : MAX_PATH_BYTES;
  const problem = control !== undefined
    ? `it contains the control character U+${control.charCodeAt(0).toString(16).padStart(4, "0")}`
    : at !== -1 ? (segments[at] !== "" ? `segment ${at + 1} is '${segments[at]}'` : at < segments.length - 1 ? `segment ${at + 1} is empty ('//')` : "it ends with '/' after a wildcard (empty last segment)")
    : least > limit ? `its characters besides * and ** come to ${least} bytes, more than a path holds (${limit} bytes)`
    : undefined;
  if (problem) {
    // A long glob is named by its start, as checkPath names a long path: the message stays one readable line.
    const shown = source.length > 120 ? `${JSON.stringify(source.slice(0, 100))}… (${source.length} characters)` : JSON.stringify(source);
    throw new ApexError("APEX_E_BAD_GLOB", `Invalid glob ${shown}: ${problem}; no path can match it.`, {
      hint: `Paths have no empty, '.' or '..' segment and no control character, and are at most ${MAX_PATH_BYTES} bytes (${MAX_KEY_BYTES} under /sessions/). Examples: /notes/*, /a/**, /sessions/*/tasks/?`,
    });
  }
  return glob;
}

/**
 * The fewest UTF-8 bytes of a path GLOB matches: its characters, `?` as one byte, an escaped
 * wildcard as the character, `*` and `**` as none. A glob needing more than a path holds matched
 * nothing, and `watch` waited for ever.
 */
function leastBytes(glob: string): number {
  let bytes = 0;
  const chars = Array.from(glob);
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (char === "*") continue;
    const escaped = char === "\\" && /^[*?\\]$/.test(chars[i + 1] ?? "");
    bytes += Buffer.byteLength(escaped ? chars[++i]! : char);
  }
  return bytes;
}

/**
 * Parses an import: one JSON object of path -> value, or NDJSON lines of {path, value}.
 * Everything is checked before anything is written.
 */
export function parseImport(text: string, name: string): Entry[] {
  const trimmed = text.trim();
  // An empty file is a mistake (an export that failed, the wrong file), not a request to import nothing.
  if (trimmed === "") {
    throw new ApexError("APEX_E_BAD_INPUT", `${name} holds no entries: it is ${text === "" ? "empty" : "only whitespace"}.`, {
      hint: 'Nothing was imported. A file is one JSON object of path -> value (as `apex memory export` writes it), or NDJSON lines of {"path", "value"}.',
    });
  }
  let whole: unknown;
  let wholeError: Error | undefined;
  try {
    whole = JSON.parse(trimmed);
  } catch (error) {
    wholeError = error as Error;
  }
  if (wholeError === undefined) {
    if (whole === null || typeof whole !== "object" || Array.isArray(whole)) {
      throw new ApexError("APEX_E_BAD_INPUT", `${name}: expected a JSON object of path -> value, or NDJSON lines of {"path", "value"}.`);
    }
    const record = whole as Record<string, JsonValue>;
    const twice = repeatedKey(trimmed);
    const lead = text.length - text.trimStart().length;
    const line = (offset: number) => text.slice(0, lead + offset).split("\n").length;
    // An object with "path" and "value" is an NDJSON line of its own: "path" is no path of an object of path -> value.
    if (isLine(record)) {
      const problem = pathProblem(record.path as string);
      if (problem) throw new ApexError("APEX_E_BAD_PATH", `${name}:1: invalid path ${JSON.stringify(record.path)}: ${problem}.`);
      refuseOtherKeys(record, `${name}:1`);
      if (twice) throw repeatedInLine(`${name}:${line(twice.second)}`, record.path as string, twice);
      refuseInexactNumbers(trimmed, `the value of ${JSON.stringify(record.path)}`, (offset) => `${name}:${line(offset)}: `);
      checkImportedValue(record.path as string, record.value, trimmed.length, () => `${name}:1`);
      return [{ path: record.path as string, value: record.value as JsonValue }];
    }
    // {"path": "/a"} alone is an NDJSON line without its value, not an object of path -> value whose path is "path"
    // (it said: invalid path "path": it must start with '/'), as the same line among others is said.
    if (typeof record.path === "string" && !record.path.includes("\n") && Object.keys(record).every((key) => key === "path" || !key.startsWith("/"))) {
      throw new ApexError("APEX_E_BAD_INPUT", `${name}:1: expected an object with "path" and "value".`, { hint: 'Nothing was imported. Each line is {"path": "/a/b", "value": …}; a file may also be one JSON object of path -> value.' });
    }
    const entries: Entry[] = [];
    for (const path in record) {
      const problem = pathProblem(path);
      if (problem) throw new ApexError("APEX_E_BAD_PATH", `${name}:${line(topLevelKeyAt(trimmed, path))}: invalid path ${JSON.stringify(path)}: ${problem}.`);
      entries.push({ path, value: record[path]! });
    }
    if (twice && twice.within.length === 0) throw repeatedPath(`${name}:${line(twice.second)}`, twice.key, line(twice.first));
    if (twice) throw repeatedInValue(`${name}:${line(twice.second)}`, String(twice.within[0]), { ...twice, within: twice.within.slice(1) });
    refuseInexactNumbers(trimmed, "a value", (offset) => `${name}:${line(offset)}: `);
    if (trimmed.length > MAX_VALUE_BYTES / JSON_GROWTH) {
      for (const entry of entries) checkImportedValue(entry.path, entry.value, Infinity, () => `${name}:${line(topLevelKeyAt(trimmed, entry.path))}`);
    }
    return entries;
  }
  // One object over many lines (an export, cut short or edited) whose first line is no JSON of its own
  // is not NDJSON: its error is named where it is, not as line 1's.
  if (!trimmed.includes("\n") || !parsesAlone(trimmed.slice(0, trimmed.indexOf("\n")))) {
    throw new ApexError("APEX_E_BAD_JSON", withDetail(`${name}${whereInText(text, trimmed, wholeError.message)}: invalid JSON`, wholeError.message), {
      hint: "Nothing was imported. A file is one JSON object of path -> value, or NDJSON lines of {\"path\", \"value\"}.",
    });
  }
  return parseNdjson(text.split("\n"), name);
}

/** NDJSON lines of {path, value} (LINES: the file's lines, without their newlines). Everything is checked before anything is written. */
export function parseNdjson(lines: Iterable<string>, name: string): Entry[] {
  const entries: Entry[] = [];
  const lineOf = new Map<string, number>();
  let index = -1;
  for (const text of lines) {
    index += 1;
    const line = text.trim();
    if (line === "") continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new ApexError("APEX_E_BAD_JSON", withDetail(`${name}:${index + 1}: invalid JSON`, (error as Error).message), {
        hint: 'Each NDJSON line must be an object like {"path": "/a/b", "value": 1}.',
      });
    }
    if (!isLine(parsed)) {
      throw new ApexError("APEX_E_BAD_INPUT", `${name}:${index + 1}: expected an object with "path" and "value".`);
    }
    const problem = pathProblem(parsed.path as string);
    if (problem) {
      throw new ApexError("APEX_E_BAD_PATH", `${name}:${index + 1}: invalid path ${JSON.stringify(parsed.path)}: ${problem}.`);
    }
    refuseOtherKeys(parsed, `${name}:${index + 1}`);
    const twice = repeatedKey(line);
    if (twice) throw repeatedInLine(`${name}:${index + 1}`, parsed.path as string, twice);
    const first = lineOf.get(parsed.path as string);
    if (first !== undefined) throw repeatedPath(`${name}:${index + 1}`, parsed.path as string, first);
    refuseInexactNumbers(line, `the value of ${JSON.stringify(parsed.path)}`, () => `${name}:${index + 1}: `);
    checkImportedValue(parsed.path as string, parsed.value, line.length, () => `${name}:${index + 1}`);
    lineOf.set(parsed.path as string, index + 1);
    entries.push({ path: parsed.path as string, value: parsed.value as JsonValue });
  }
  return entries;
}

/** The shortest JSON text a value nested deeper than MAX_DEPTH can have: its brackets alone. */
const TOO_DEEP_MIN_CHARS = 2 * (MAX_DEPTH + 1);

/**
 * Refuses a value nested deeper than MAX_DEPTH (APEX_E_TOO_DEEP, exit 2) in the words the store
 * refuses it with, naming its path, before anything is sent. Through a supervisor, a value too
 * deep for JSON.stringify to send was refused without its path (an import did not say which of
 * its entries), and one the store refused named it without the hint; with no session running,
 * the store said what the supervisor's did. Walked without recursion, however deep.
 */
export function refuseTooDeep(path: string, value: unknown): void {
  const pending: Array<{ item: object; depth: number }> = value !== null && typeof value === "object" ? [{ item: value, depth: 0 }] : [];
  while (pending.length > 0) {
    const { item, depth } = pending.pop()!;
    if (depth >= MAX_DEPTH) {
      const refusal = tooDeepError();
      throw new ApexError(refusal.code, `${path}: ${refusal.message}`, { ...(refusal.hint ? { hint: refusal.hint } : {}), details: { path } });
    }
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (child !== null && typeof child === "object") pending.push({ item: child as object, depth: depth + 1 });
    }
  }
}

/** The largest memory value, as plugins/owned-paths.ts MAX_VALUE_BYTES (not imported from there: a plugin is loaded only when needed). */
const MAX_VALUE_BYTES = 256 * 1024 * 1024;
/**
 * How many times longer a value's compact JSON can be than its text as read: strings and
 * structure never grow (escapes are written as short or shorter), a number can (`1e20` is
 * written as 21 digits, 4.4 times its length with its comma).
 */
const JSON_GROWTH = 6;

/**
 * Refuses an imported value over the largest memory value (APEX_E_TOO_LARGE, exit 2, naming its
 * path, size and the limit, and where it is in the file), as `memory set` refuses it: with no
 * session running an import wrote it, and `memory show` through a supervisor could not return
 * it. TEXT_LENGTH is the length of the text it was parsed from (it or more): a text too short to
 * hold such a value is not serialized again, so an ordinary import costs nothing more.
 */
export function checkImportedValue(path: string, value: unknown, textLength: number, where: () => string): void {
  if (textLength <= MAX_VALUE_BYTES / JSON_GROWTH) return;
  const bytes = jsonBytes(value);
  if (bytes <= MAX_VALUE_BYTES) return;
  const size = Number.isFinite(bytes) ? `${bytes} bytes of JSON` : "longer than a string can be";
  throw new ApexError("APEX_E_TOO_LARGE", `${where()}: the value for ${path} is ${size}; a memory value may be at most ${MAX_VALUE_BYTES} bytes (256 MiB) of JSON. Nothing was imported.`, {
    hint: "Split it across several paths (/big/part-1, /big/part-2, …).",
    details: { path, ...(Number.isFinite(bytes) ? { bytes } : {}), limit_bytes: MAX_VALUE_BYTES },
  });
}

/** The UTF-8 bytes of VALUE's compact JSON (Infinity when it is longer than a string can be). */
function jsonBytes(value: unknown): number {
  try {
    const text = JSON.stringify(value) ?? "";
    return text.length * 3 <= MAX_VALUE_BYTES ? text.length : Buffer.byteLength(text);
  } catch (error) {
    if (error instanceof RangeError && /string length/i.test(error.message)) return Infinity;
    throw error;
  }
}

/** The offset of the quote that ends the JSON string opening at `at` (-1: none): skipped with indexOf, so a large value costs little. */
function stringEnd(text: string, at: number): number {
  let end = at;
  for (;;) {
    end = text.indexOf('"', end + 1);
    if (end === -1) return -1;
    let backslashes = 0;
    while (text.charCodeAt(end - 1 - backslashes) === 0x5c) backslashes += 1;
    if (backslashes % 2 === 0) return end;
  }
}

/** The offset in TEXT (one JSON object) of its top-level key KEY (for messages only: it scans the text). */
function topLevelKeyAt(text: string, key: string): number {
  let depth = 0;
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at);
    if (code === 0x22) {
      const end = stringEnd(text, at);
      if (end === -1) return 0;
      if (depth === 1 && JSON.parse(text.slice(at, end + 1)) === key && /^\s*:/.test(text.slice(end + 1, end + 64))) return at;
      at = end;
    } else if (code === 0x7b || code === 0x5b) depth += 1;
    else if (code === 0x7d || code === 0x5d) depth -= 1;
  }
  return 0;
}

/** An NDJSON line with keys besides "path" and "value": they would be dropped without a word (`{"path": "/a", "value": 1, "note": 2}`). */
function refuseOtherKeys(line: object, where: string): void {
  const others = Object.keys(line).filter((key) => key !== "path" && key !== "value");
  if (others.length === 0) return;
  throw new ApexError("APEX_E_BAD_INPUT", `${where}: the line has ${others.length === 1 ? "a key" : "keys"} besides "path" and "value": ${others.slice(0, 5).map((key) => JSON.stringify(key)).join(", ")}${others.length > 5 ? ", …" : ""}; ${others.length === 1 ? "it" : "they"} would not be imported.`, {
    hint: 'Nothing was imported. Each line is {"path": "/a/b", "value": …}: put what belongs to the entry inside its value.',
    details: { keys: others },
  });
}

/** A key given twice in an NDJSON line ({"path", "value"}): in its value, or the line's own ("path" twice). */
export function repeatedInLine(where: string, path: string, twice: { key: string; within: Array<string | number> }): ApexError {
  if (twice.within[0] === "value") return repeatedInValue(where, path, { ...twice, within: twice.within.slice(1) });
  const at = jsonPointer([...twice.within, twice.key]);
  return new ApexError("APEX_E_BAD_INPUT", `${where}: the line has the key ${JSON.stringify(twice.key)} twice${twice.within.length > 0 ? `, at ${at}` : ""}; one of its values would be lost.`, {
    hint: "Nothing was imported. Give each key once.",
    details: { key: twice.key, at },
  });
}

/** A key given twice in the value of PATH: JSON.parse keeps the last, and the first would be lost without a word. */
export function repeatedInValue(where: string, path: string, twice: { key: string; within: Array<string | number> }): ApexError {
  const at = jsonPointer([...twice.within, twice.key]);
  return new ApexError("APEX_E_BAD_INPUT", `${where}: the value of ${JSON.stringify(path)} has the key ${JSON.stringify(twice.key)} twice, at ${at} in it; one of its values would be lost.`, {
    hint: "Nothing was imported. Give each key once.",
    details: { path, key: twice.key, at },
  });
}

/** A path given twice: JSON.parse (and a batch) keep the last value, and the first would be lost without a word. */
export function repeatedPath(where: string, path: string, firstLine: number): ApexError {
  return new ApexError("APEX_E_BAD_INPUT", `${where}: path ${JSON.stringify(path)} is given a second time (first on line ${firstLine}); one of its values would be lost.`, {
    hint: "Nothing was imported. Keep one entry per path.",
  });
}

/**
 * The first key an object in TEXT (JSON that parses) has twice, at any depth: JSON.parse keeps the
 * last silently. `within` is where that object is (keys and array indexes from the top), `first`
 * and `second` the offsets of both. It checks what JSON.parse accepted and parses nothing: strings
 * are skipped with indexOf, so a large value costs little.
 */
export function repeatedKey(text: string): { key: string; within: Array<string | number>; first: number; second: number } | undefined {
  // One frame per object or array open here (one shape, for speed): an object's keys so far and current key; an array's index.
  const frames: Array<{ object: boolean; seen: Map<string, number> | undefined; key: string; index: number; keyNext: boolean }> = [];
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at);
    if (code === 0x22) {
      const end = stringEnd(text, at);
      if (end === -1) return undefined;
      const top = frames[frames.length - 1];
      if (top?.keyNext) {
        const raw = text.slice(at + 1, end);
        const key = raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
        top.seen ??= new Map();
        const first = top.seen.get(key);
        if (first !== undefined) return { key, within: frames.slice(0, -1).map((frame) => (frame.object ? frame.key : frame.index)), first, second: at };
        top.seen.set(key, at);
        top.key = key;
        top.keyNext = false;
      }
      at = end;
    } else if (code === 0x7b || code === 0x5b) frames.push({ object: code === 0x7b, seen: undefined, key: "", index: 0, keyNext: code === 0x7b });
    else if (code === 0x7d || code === 0x5d) frames.pop();
    else if (code === 0x2c) {
      const top = frames[frames.length - 1]!;
      if (top.object) top.keyNext = true;
      else top.index += 1;
    }
  }
  return undefined;
}

/** A JSON Pointer (RFC 6901) of keys and indexes: `/a/0/b`. */
export function jsonPointer(segments: Array<string | number>): string {
  return segments.map((segment) => `/${String(segment).replace(/~/g, "~0").replace(/\//g, "~1")}`).join("");
}

function parsesAlone(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

/** `:LINE:COLUMN` of the position a JSON.parse message of `trimmed` names (in the untrimmed text), or "". */
function whereInText(text: string, trimmed: string, message: string): string {
  const position = /at position (\d+)/.exec(message);
  // V8 gives no position for an unexpected token (`"b": }`): the scan finds where it is.
  const found = position ? Number(position[1]) : /end of JSON input/.test(message) ? undefined : jsonErrorOffset(trimmed);
  const offset = found !== undefined ? text.indexOf(trimmed) + found : /end of JSON input/.test(message) ? text.trimEnd().length : undefined;
  if (offset === undefined) return "";
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return `:${line}:${offset - before.lastIndexOf("\n")}`;
}

/** The offset of the first character at which TEXT stops being JSON, or undefined if it parses to its end. */
export function jsonErrorOffset(text: string): number | undefined {
  let at = 0;
  const space = (): void => {
    while (at < text.length && " \t\n\r".includes(text[at]!)) at++;
  };
  const fail = (): never => {
    throw at;
  };
  const value = (): void => {
    space();
    const c = text[at];
    if (c === "{" || c === "[") {
      const close = c === "{" ? "}" : "]";
      at++;
      space();
      if (text[at] === close) return void at++;
      for (;;) {
        if (c === "{") {
          space();
          if (text[at] !== '"') fail();
          string();
          space();
          if (text[at] !== ":") fail();
          at++;
        }
        value();
        space();
        if (text[at] === ",") at++;
        else if (text[at] === close) return void at++;
        else fail();
      }
    }
    if (c === '"') return string();
    const literal = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(at, at + 400));
    if (!literal) fail();
    at += literal![0].length;
  };
  const string = (): void => {
    at++;
    for (;;) {
      const c = text[at];
      if (c === undefined || c < " ") fail();
      if (c === '"') return void at++;
      if (c === "\\") {
        const escape = /^\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/.exec(text.slice(at, at + 6));
        if (!escape) fail();
        at += escape![0].length;
      } else at++;
    }
  };
  try {
    value();
    space();
    return at < text.length ? at : undefined;
  } catch (offset) {
    return typeof offset === "number" ? offset : undefined; // a stack overflow on deep nesting: no position
  }
}

function isLine(value: unknown): value is { path: unknown; value: unknown } {
  return typeof value === "object" && value !== null && typeof (value as { path?: unknown }).path === "string" && "value" in value;
}

export function parseJsonValue(text: string, what: string): JsonValue {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (error) {
    throw new ApexError("APEX_E_BAD_JSON", withDetail(`Invalid JSON value for ${what}`, (error as Error).message), {
      hint: `Quote strings as JSON: '"text"'. Objects: '{"a": 1}'.`,
    });
  }
  refuseRepeatedKeys(text, value, `The value for ${what}`);
  refuseInexactNumbers(text, `The value for ${what}`);
  return value;
}

/**
 * JSON.parse keeps the last of a key given twice: one of the values the user wrote would be lost.
 * `value` is what JSON.parse made of `text`; `what` names it in the error ("The value for /k").
 */
export function refuseRepeatedKeys(text: string, value: unknown, what: string): void {
  const twice = value !== null && typeof value === "object" ? repeatedKey(text) : undefined;
  if (!twice) return;
  const at = jsonPointer([...twice.within, twice.key]);
  throw new ApexError("APEX_E_BAD_INPUT", `${what} has the key ${JSON.stringify(twice.key)} twice, at ${at} in it; one of its values would be lost.`, {
    hint: "Nothing was written. Give each key once.",
    details: { key: twice.key, at },
  });
}

/**
 * The entries a query or export names: those matching a glob, or for a plain path (no
 * wildcard), that path and everything below it, as `memory show` reads it.
 */
async function readMatching(reader: MemoryReader, glob: Glob, limit?: number): Promise<Entry[]> {
  if (!glob.literal) return reader.query(glob.source, limit);
  const path = glob.prefix === "/" ? "/" : checkPath(plainPath(glob.prefix));
  const entries: Entry[] = [];
  if (path !== "/") {
    const value = await reader.get(path);
    if (value !== undefined) entries.push({ path, value });
  }
  if (limit !== undefined && entries.length >= limit) return entries;
  const below = await reader.query(path === "/" ? "/**" : `${escapeGlob(path)}/**`, limit === undefined ? undefined : limit - entries.length);
  return entries.concat(below);
}

/** `/sessions/<sid>/checkpoint-007` and `/sessions/<sid>/checkpoint-latest`: shown as checkpoint records. */
const CHECKPOINT_PATH = /^\/sessions\/[^/]+\/checkpoint-(?:\d+|latest)$/;

/**
 * The checkpoint record (the manifest with its agent states, memory keys and tasks read from its
 * trees) at a manifest path, or undefined when no checkpoint is there (then `memory show` shows
 * what is stored, as for any path).
 */
async function readCheckpointRecord(location: ProjectLocation, path: string): Promise<JsonValue | undefined> {
  const { checkpointRefOfPath } = await (await import("../plugins/index.js")).builtinServices.checkpointRecord();
  const ref = checkpointRefOfPath(path);
  if (ref === undefined) return undefined;
  try {
    const { checkpointRecord } = await (await import("../plugins/index.js")).builtinServices.checkpointRecord();
    const client = await openSessionClient(location, "read");
    try {
      if (client.empty) return undefined;
      return (await client.run("checkpoint.show", { ref }, (store) => checkpointRecord(store, ref))) as unknown as JsonValue;
    } finally {
      await client.close();
    }
  } catch {
    // Not a checkpoint (or one that cannot be read): the stored value, if any, is shown as is.
    return undefined;
  }
}

function* jsonObjectChunks(entries: Entry[]): Iterable<string> {
  if (entries.length === 0) {
    yield "{}\n";
    return;
  }
  let chunk = "{\n";
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    chunk += `  ${JSON.stringify(entry.path)}: ${JSON.stringify(entry.value)}${i + 1 < entries.length ? "," : ""}\n`;
    if (chunk.length > 65536) {
      yield chunk;
      chunk = "";
    }
  }
  yield `${chunk}}\n`;
}

/** `before`, then ENTRIES as one object of path -> value as JSON.stringify(object, null, 2) writes it at nesting DEPTH, then `after`. */
function* prettyObjectChunks(entries: Entry[], before: string, depth: number, after: string): Iterable<string> {
  const indent = "  ".repeat(depth + 1);
  let chunk = `${before}{\n`;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    // A newline in JSON.stringify's output is always between tokens (one in a string is written \n).
    chunk += `${indent}${JSON.stringify(entry.path)}: ${JSON.stringify(entry.value, null, 2).replace(/\n/g, `\n${indent}`)}${i + 1 < entries.length ? "," : ""}\n`;
    if (chunk.length > 65536) {
      yield chunk;
      chunk = "";
    }
  }
  yield `${chunk}${"  ".repeat(depth)}}${after}`;
}

function* chunkLines(lines: string[]): Iterable<string> {
  let chunk = "";
  for (const line of lines) {
    chunk += `${line}\n`;
    if (chunk.length > 65536) {
      yield chunk;
      chunk = "";
    }
  }
  if (chunk) yield chunk;
}

async function writeChunked(chunks: Iterable<string>): Promise<void> {
  for (const chunk of chunks) {
    if (!process.stdout.write(chunk)) {
      await new Promise<void>((resolve) => process.stdout.once("drain", resolve));
    }
  }
}

/**
 * What a delete that found nothing may have meant: the subtree below PATH (said only when there
 * is one), or, for a path with * or ?, what that glob matches (delete takes a path).
 */
async function deleteHint(location: ProjectLocation, path: string, recursive: boolean): Promise<string | undefined> {
  const reader = await openReader(location);
  try {
    if (!recursive && (await reader.query(`${escapeGlob(path)}/**`, 1)).length > 0) {
      return `${path} holds no value itself, but paths below it do: add --recursive to delete them.`;
    }
    if (/[*?]/.test(path) && (await reader.query(path, 1)).length > 0) {
      return `Delete takes a path, not a glob: * and ? are characters of ${path}. List what the glob matches with apex memory query ${shellWord(path)} --keys, and delete those paths (a subtree at once with --recursive).`;
    }
    return undefined;
  } finally {
    await reader.close();
  }
}

/** TEXT as one shell word: as it is when it needs no quotes. */
function shellArg(text: string): string {
  return /^[\w/.@%+=:,-]+$/.test(text) ? text : shellWord(text);
}

function shellWord(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function escapeGlob(path: string): string {
  return path.replace(/[\\*?]/g, "\\$&");
}

/** The glob of PATH's siblings, as one shell word. */
function parentGlob(path: string): string {
  const index = path.lastIndexOf("/");
  return shellWord(index <= 0 ? "/*" : `${escapeGlob(path.slice(0, index))}/*`);
}
