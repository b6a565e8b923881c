import { ApexError } from "../errors.js";
import { compileGlob } from "../store/glob.js";
import { checkPath } from "../store/paths.js";
import { readView } from "../store/port.js";
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
    // For `apex memory watch`: poll this instead of reading the revision log.
    "memory.changes": (params) =>
      readView(store, () => {
        const since = typeof params.since === "number" ? params.since : store.revision();
        const glob = typeof params.glob === "string" ? compileGlob(params.glob) : undefined;
        const limit = typeof params.limit === "number" ? params.limit : 10_000;
        const batch = [...store.changesSince(since, { limit })];
        // The log keeps no values: a put's value is read now, so it is sent only if no later change (in this batch, or past it: a watcher far behind) changed its path.
        const last = new Map<string, number>();
        for (const change of batch.length < limit ? batch : store.changesSince(since)) last.set(change.path, change.revision);
        const changes: JsonValue[] = [];
        for (const change of batch) {
          const path = view().covers(change.path) ? view().unpath(change.path) : undefined;
          if (path === undefined || (glob && !glob.matches(path))) continue;
          const overwritten = change.kind === "put" && last.get(change.path)! > change.revision;
          changes.push({ ...change, path, value: change.kind === "put" && !overwritten ? (store.get(change.path) ?? null) : null, ...(overwritten ? { overwritten } : {}) });
        }
        return { revision: batch.at(-1)?.revision ?? since, changes };
      }),
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
