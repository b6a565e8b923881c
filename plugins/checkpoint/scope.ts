import { ApexError } from "../../core/errors.js";
import { compileGlob, type Glob } from "../../core/store/glob.js";
import { compareCodePoints } from "./engine/objects.js";
import { checkPath, isWithin, subtreeRange } from "../../core/store/paths.js";
import type { Store } from "../../core/store/store.js";
import { memoryRootOf, PROJECT_CONFIG_PATH } from "../../core/session/records.js";

/**
 * Which keyspace paths a checkpoint's memory covers: those matched by one of `include`
 * and by none of `exclude`. Each entry is either a plain path, meaning that path and
 * everything below it ("/notes"), or a glob in the syntax of core/store/glob.ts
 * ("/notes/**", "/src/*.md"); "/" and "/**" mean everything.
 *
 * Default: the whole project memory, i.e. everything outside /sessions. Session records,
 * tasks, agent states, checkpoints and events have their own place in a checkpoint (or
 * none). /sessions is always excluded, whatever the configuration says, and so is the
 * project's own record, /projects/config (its id: PROJECT_RECORD); the rest of /projects is
 * memory like any other path.
 */
export interface MemoryScope {
  include: string[];
  exclude: string[];
}

export const SESSIONS_ROOT = "/sessions";
/** The store's path -> value database (see core/store/store.ts). */

export const DEFAULT_SCOPE: Readonly<MemoryScope> = Object.freeze({ include: ["/"], exclude: [SESSIONS_ROOT] });

/**
 * The project's record (`{project_id, created_at}`, written by the first `apex start`): which
 * project a store is, for imports (a bundle of another project's session), validation and
 * exports. It is no state of a session, and never goes back from a checkpoint: checkpoints made
 * before it was left out of every scope hold it, and restoring or merging one of another
 * project's (an imported session's) gave this project that project's id, after which its own
 * exports claimed to be the other project's and imports of that project's bundles were taken
 * for this one's. Restores, recoveries, merges and diffs pass it over wherever a tree has it.
 */
export const PROJECT_RECORD = PROJECT_CONFIG_PATH;

export function isProjectRecord(path: string): boolean {
  return isWithin(path, PROJECT_RECORD);
}

/** Normalized scopes by their input (checkpoints of a project all use the same one). */
const normalizedScopes = new Map<string, MemoryScope>();

/** Validates and normalises a scope: sorted, duplicates and nested plain paths dropped, /sessions excluded. */
export function normalizeScope(scope: Partial<MemoryScope> | undefined): MemoryScope {
  const key = JSON.stringify([scope?.include ?? null, scope?.exclude ?? null]);
  let normalized = normalizedScopes.get(key);
  if (!normalized) {
    normalized = computeScope(scope);
    if (normalizedScopes.size >= 64) normalizedScopes.clear();
    normalizedScopes.set(key, normalized);
  }
  return { include: [...normalized.include], exclude: [...normalized.exclude] };
}

function computeScope(scope: Partial<MemoryScope> | undefined): MemoryScope {
  const include = simplify((scope?.include ?? DEFAULT_SCOPE.include).map((entry) => checkEntry(entry, "include")));
  if (include.length === 0) {
    throw new ApexError("APEX_E_BAD_INPUT", "A checkpoint scope needs at least one path to include.", {
      hint: 'Use ["/"] for the whole project memory.',
    });
  }
  const exclude = simplify([...(scope?.exclude ?? []), SESSIONS_ROOT, PROJECT_RECORD].map((entry) => checkEntry(entry, "exclude")));
  if (exclude.includes("/")) throw new ApexError("APEX_E_BAD_INPUT", 'A checkpoint scope cannot exclude "/".');
  const covered = include.filter((entry) => !(isPlain(entry) && exclude.some((other) => isPlain(other) && isWithin(entry, other))));
  if (covered.length === 0) {
    throw new ApexError("APEX_E_BAD_INPUT", `The checkpoint scope excludes everything it includes (${include.join(", ")}).`);
  }
  return { include: covered, exclude };
}

function checkEntry(entry: string, what: string): string {
  if (entry === "/" || entry === "/**") return "/";
  if (typeof entry !== "string" || !entry.startsWith("/")) {
    throw new ApexError("APEX_E_BAD_INPUT", `Invalid scope ${what} entry ${JSON.stringify(entry)}: it must start with '/'.`);
  }
  const glob = compileGlob(entry);
  return glob.literal ? checkPath(entry, `scope ${what} path`) : entry;
}

function isPlain(entry: string): boolean {
  return entry === "/" || compileGlob(entry).literal;
}

function simplify(entries: string[]): string[] {
  const sorted = [...new Set(entries)].sort(compareCodePoints);
  return sorted.filter((entry) => !isPlain(entry) || !sorted.some((other) => other !== entry && isPlain(other) && isWithin(entry, other)));
}

export function scopeKey(scope: MemoryScope): string {
  return JSON.stringify([scope.include, scope.exclude]);
}

/**
 * The catalog's memory base key: the scope's, and for a session with its own memory root
 * (core/session/records.ts: memoryRootOf) that root too, so sessions running side by side each
 * build their next checkpoint from their own memory.
 */
export function baseKey(scope: MemoryScope, mount = ""): string {
  return mount === "" ? scopeKey(scope) : `${mount}\n${scopeKey(scope)}`;
}

/** The keyspace root of `sessionId`'s working memory: "" (the root) or `/sessions/<sid>/memory`. */
export function memoryMountOf(store: Pick<Store, "get">, sessionId: string): string {
  let record: unknown;
  try {
    record = store.get(`/sessions/${sessionId}`) ?? store.get(`/sessions/history/${sessionId}`);
  } catch {
    return "";
  }
  return record && typeof record === "object" && typeof (record as { session_id?: unknown }).session_id === "string"
    ? memoryRootOf(record as Parameters<typeof memoryRootOf>[0])
    : "";
}

interface Matcher {
  entry: string;
  plain: boolean;
  glob?: Glob;
}

const matcherCache = new Map<string, Matcher>();

function matcher(entry: string): Matcher {
  let found = matcherCache.get(entry);
  if (!found) {
    const plain = isPlain(entry);
    found = plain ? { entry, plain } : { entry, plain, glob: compileGlob(entry) };
    if (matcherCache.size > 1000) matcherCache.clear();
    matcherCache.set(entry, found);
  }
  return found;
}

function matches(entry: string, path: string): boolean {
  const m = matcher(entry);
  return m.plain ? isWithin(path, entry) : m.glob!.matches(path);
}

export function inScope(scope: MemoryScope, path: string): boolean {
  if (!scope.include.some((entry) => matches(entry, path))) return false;
  return !scope.exclude.some((entry) => matches(entry, path));
}

/**
 * Memory kept only in checkpoint trees, never as live records: LangGraph channel values
 * (langgraph.ts), which each LangGraph step writes straight into its checkpoint's tree as a
 * subtree derived from the previous step's. The memory base carries these subtrees from one
 * checkpoint to the next (writeCheckpoint); restores, recoveries and the live-record check
 * leave them alone, since no live record mirrors them.
 */
export const DETACHED_ROOTS: readonly string[] = ["/langgraph"];

export function isDetached(path: string): boolean {
  return DETACHED_ROOTS.some((root) => isWithin(path, root));
}

export function pathSegments(path: string): string[] {
  return path.slice(1).split("/");
}

export function segmentsPath(segments: readonly string[]): string {
  return `/${segments.join("/")}`;
}

/**
 * Every path in scope, in key order per include entry, without decoding values. Excluded
 * plain subtrees (such as /sessions) are jumped over, not scanned.
 */
export function* keysInScope(store: Store, scope: MemoryScope): Iterable<string> {
  const seen = scope.include.length > 1 ? new Set<string>() : undefined;
  for (const entry of scope.include) {
    const m = matcher(entry);
    if (m.plain && entry !== "/" && inScope(scope, entry) && store.has(entry)) {
      if (!seen || !seen.has(entry)) yield entry;
      seen?.add(entry);
    }
    const range = m.plain ? subtreeRange(entry) : m.glob!.range;
    for (const part of cutExcluded(scope, range)) {
      for (const key of store.keys(part)) {
        const path = key as string;
        // Ranges still hold excluded paths themselves (e.g. "/sessions" before "/sessions/").
        if (!inScope(scope, path) || seen?.has(path)) continue;
        seen?.add(path);
        yield path;
      }
    }
  }
}

type KeyRange = { start: string; end: string | undefined };

/** Splits a key range around the subtrees of plain exclusions. */
export function cutExcluded(scope: MemoryScope, range: KeyRange): KeyRange[] {
  const cuts = scope.exclude
    .filter(isPlain)
    .map((path) => subtreeRange(path))
    .sort((a, b) => compareCodePoints(a.start, b.start));
  const parts: KeyRange[] = [];
  let start = range.start;
  for (const cut of cuts) {
    if (range.end !== undefined && compareCodePoints(cut.start, range.end) >= 0) break;
    if (compareCodePoints(cut.end, start) <= 0) continue;
    if (compareCodePoints(cut.start, start) > 0) parts.push({ start, end: cut.start });
    start = cut.end;
    if (range.end !== undefined && compareCodePoints(start, range.end) >= 0) return parts;
  }
  parts.push({ start, end: range.end });
  return parts;
}
