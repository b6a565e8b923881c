import { ApexError } from "../errors.js";
import { compileGlob } from "../store/glob.js";
import { checkPath } from "../store/paths.js";
import type { JsonValue, Store } from "../store/store.js";
import { MemoryView } from "./memory-view.js";
import { builtinServices } from "../../plugins/index.js";

/** A method body shared by the supervisor and by CLI commands that reach the store directly (no supervisor). */
export type SessionMethod = (params: Record<string, unknown>) => unknown;

/**
 * The reads of the project memory: they need no session, and load nothing beyond the store
 * (`apex memory get` is benchmarked). The supervisor serves them; with none running, the
 * session client runs them here.
 */
export function memoryReadMethods(store: Store, view: () => MemoryView = () => MemoryView.ROOT): Record<string, SessionMethod> {
  return {
    // The session's working memory: its own root when it runs in a git worktree (memory-view.ts).
    "memory.get": (params) => view().get((path) => store.get(path), checkPath(stringParam(params, "path"))),
    "memory.query": (params) => {
      const glob = stringParam(params, "glob");
      compileGlob(glob);
      // The limit counts the entries answered: another session's memory, left out of them, is none (`--limit 40` gave 37).
      return view().entries(store.query(view().glob(glob)), glob, typeof params.limit === "number" ? params.limit : Infinity);
    },
    // memory.query a page at a time (plugins/memory-pages.ts): for `memory query`, `show` and `export` through a supervisor.
    "memory.page": async (params) => (await builtinServices.memoryPages()).memoryPage(store, view(), params),
    // For `apex memory watch`: poll this instead of reading the revision log.
    "memory.changes": async (params) => (await builtinServices.memoryChanges()).memoryChanges(store, view(), params),
  };
}

/** Refuses a memory write that reaches a path APEX owns (plugins/owned-paths.ts), unless `force`; before anything is written. */
export async function checkOwnedWrite(command: string, paths: string[], params: Record<string, unknown>): Promise<void> {
  (await builtinServices.ownedPaths()).checkOwnedWrite(command, paths, { recursive: params.recursive === true, force: params.force === true, value: params.value });
}

export function stringParam(params: Record<string, unknown>, name: string): string {
  const value = params[name];
  if (typeof value !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} must be a string.`);
  return value;
}

/** memory.import's entries: each an object with a valid path, else APEX_E_BAD_INPUT (a null entry was an internal error, 500 through apex serve). */
export function importEntries(params: Record<string, unknown>): Array<{ path: string; value: JsonValue }> {
  const entries: unknown = params.entries;
  if (!Array.isArray(entries)) throw new ApexError("APEX_E_BAD_INPUT", "memory.import needs entries: [{path, value}].");
  entries.forEach((entry: unknown, index) => {
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw new ApexError("APEX_E_BAD_INPUT", `memory.import: entry ${index} is not an object {path, value}.`);
    checkPath((entry as { path: string }).path);
  });
  return entries as Array<{ path: string; value: JsonValue }>;
}
