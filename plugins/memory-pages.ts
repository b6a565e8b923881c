/**
 * `memory.page`: the entries `memory.query` answers, a page at a time, for `apex memory query`,
 * `show` and `export` run through a supervisor (inside an agent). One reply over the supervisor's
 * socket holds at most 256 MiB of JSON (MAX_LINE_BYTES): a subtree whose values came to more (three
 * of 100 MiB) failed with APEX_E_TOO_LARGE there, where the same command with no session running
 * read the store and printed it. memory.query still answers whole, for the CLIs of an older APEX.
 *
 * A page ends once it holds REPLY_CHARS of JSON (or its first entry alone, up to 256 MiB), with
 * `next`: the key of its last entry, from which the caller asks for the next page (`after`). The
 * paths are listed first and their values read after them, so that the supervisor reads little
 * more than the page it sends. Each page is read in one view of the store;
 * an entry written between two pages is read as it is when its page is read.
 */
import { ApexError } from "../core/errors.js";
import { compileGlob } from "../core/store/glob.js";
import { pathProblem } from "../core/store/paths.js";
import { readView } from "../core/store/port.js";
import type { Entry, JsonValue, Store } from "../core/store/store.js";
import type { MemoryView } from "../core/session/memory-view.js";
import { readValues, REPLY_CHARS, VALUES_AT_ONCE } from "./memory-changes.js";

export interface EntriesPage {
  entries: Entry[];
  /** Where the next page starts (pass it as `after`); left out on the last page. */
  next?: string;
}

export function memoryPage(store: Store, view: MemoryView, params: Record<string, unknown>): EntriesPage {
  const source = checked<string>(params, "glob", typeof params.glob === "string", "a glob (a string)");
  compileGlob(source);
  const limit = params.limit === undefined ? Infinity : checked<number>(params, "limit", Number.isSafeInteger(params.limit) && (params.limit as number) >= 1, "a whole number ≥ 1");
  const after = params.after === undefined ? undefined : checked<string>(params, "after", typeof params.after === "string", "the `next` of the page before (a string)");
  const glob = compileGlob(view.glob(source));
  // A plain path names one entry: one page.
  if (glob.literal) return after === undefined ? { entries: view.entries(store.query(glob.source), source, limit) } : { entries: [] };
  return readView(store, () => {
    // From the page before's last key (itself left out): a key it returned is in the glob's range.
    const keys = store.keys({ start: after ?? glob.range.start, ...(glob.range.end === undefined ? {} : { end: glob.range.end }) })[Symbol.iterator]();
    /** The next `count` keys the caller is answered, each with its path as the caller names it (view.entries decides, as for memory.query). */
    const nextKeys = (count: number): Array<{ key: string; path: string }> => {
      const found: Array<{ key: string; path: string }> = [];
      while (found.length < count) {
        const { value: key, done } = keys.next();
        if (done) break;
        if (key === after || !glob.matches(key)) continue;
        const [shown] = view.entries([{ path: key, value: null }], source);
        if (shown) found.push({ key, path: shown.path });
      }
      return found;
    };
    try {
      return page(nextKeys, store, limit);
    } finally {
      // A range left before its end lets go of its cursor (PostgreSQL: of the read view its pages share).
      keys.return?.();
    }
  });
}

/** Entries of the keys `nextKeys` gives, read in groups, until the page holds REPLY_CHARS of JSON or `limit` entries. */
function page(nextKeys: (count: number) => Array<{ key: string; path: string }>, store: Store, limit: number): EntriesPage {
  const entries: Entry[] = [];
  let chars = 0;
  /** The longest entry so far, as JSON: how many values the next read may take without holding much more than a page. */
  let longest = 0;
  let last: string | undefined;
  while (entries.length < limit) {
    // A value at a time where reads are cheap (LMDB: microseconds), so that nothing past the page is read. Where they are
    // round trips (getEncodedMany: PostgreSQL), as memory.changes reads them: the first alone (its size tells nothing of
    // the rest), then as many as fit in a page at the longest seen, up to VALUES_AT_ONCE.
    const take = !store.getEncodedMany || entries.length === 0 ? 1 : Math.max(1, Math.min(VALUES_AT_ONCE, Math.floor(REPLY_CHARS / Math.max(1, longest))));
    const group = nextKeys(Math.min(take, limit - entries.length));
    if (group.length === 0) return { entries };
    const values = valuesAt(store, group.map(({ key }) => key));
    for (let i = 0; i < group.length; i++) {
      // Deleted (it cannot be, read in one view with its key).
      if (values[i] === undefined) continue;
      const entry = { path: group[i]!.path, value: values[i]! };
      const size = JSON.stringify(entry).length;
      // The rest of the group is read again for the next page, from the last key this one holds.
      if (entries.length > 0 && chars + size > REPLY_CHARS) return { entries, next: last! };
      entries.push(entry);
      chars += size;
      longest = Math.max(longest, size);
      last = group[i]!.key;
    }
  }
  return { entries };
}

/**
 * The values at keyspace keys (readValues). A key that damage made, no path (a backend's get
 * refuses it), is read from the range it is in, as memory.query reads it.
 */
function valuesAt(store: Store, keys: string[]): Array<JsonValue | undefined> {
  if (keys.every((key) => pathProblem(key) === undefined)) return readValues(store, keys);
  return keys.map((key) => {
    if (pathProblem(key) === undefined) return store.get(key);
    const [found] = store.entries({ start: key, limit: 1 });
    return found?.path === key ? found.value : undefined;
  });
}

function checked<T>(params: Record<string, unknown>, name: string, ok: boolean, what: string): T {
  const value = params[name];
  if (!ok) throw new ApexError("APEX_E_BAD_INPUT", `memory.page: ${name} must be ${what}, not ${JSON.stringify(value) ?? String(value)}.`);
  return value as T;
}
