/**
 * `memory.changes`, which `apex memory watch` polls through a supervisor or `apex serve`: the
 * changes after `since`, a batch at a time (10,000), each put with the value its path holds now,
 * unless its path changed again since (`overwritten`: the revision log keeps no values).
 *
 * Whether a put of the batch was changed again after it needs the log past the batch. A watcher
 * far behind (`--since` many revisions back) reads a batch per call: reading the whole rest of the
 * log for each made catching up quadratic (200,000 changes: 4 s, each call holding the supervisor
 * a third of a second). So a store's later changes are kept between calls instead: for each path,
 * the revision of its last change after some revision `base`, read once and then only from where
 * the last call stopped, a slice per turn of the event loop (a call waits for it, the supervisor
 * serves the others meanwhile). It serves every watcher at or past `base` (one further back
 * reads the log again from its revision), and is dropped once no call used it for a minute.
 */
import { ApexError } from "../core/errors.js";
import { compileGlob, type Glob } from "../core/store/glob.js";
import { readView } from "../core/store/port.js";
import { decodeValue } from "./value-codec.js";
import type { Change, JsonValue, Store } from "../core/store/store.js";
import type { MemoryView } from "../core/session/memory-view.js";

const BATCH = 10_000;
/** Changes read into the index per turn of the event loop. */
const SLICE = 10_000;
const IDLE_MS = 60_000;

/** For each path, the revision of its last change in (base, upTo]. */
interface LaterChanges {
  base: number;
  upTo: number;
  /** The change at upTo as read (path, time): a store made anew since has another there. */
  mark: string;
  last: Map<string, number>;
  /** The store object that read it last: another (a store opened again) checks the mark first. */
  reader: WeakRef<Store>;
  idle?: NodeJS.Timeout;
}

/** By store (backend and location: `apex serve` opens the store anew for each call of a session with no supervisor). */
const kept = new Map<string, LaterChanges>();
/** The calls that use a store's index, one at a time: one reading it in slices is not overtaken. */
const queues = new Map<string, Promise<unknown>>();

export interface ChangesReply {
  revision: number;
  changes: JsonValue[];
}

export async function memoryChanges(store: Store, view: MemoryView, params: Record<string, unknown>): Promise<ChangesReply> {
  const glob = params.glob === undefined ? undefined : compileGlob(checked<string>(params, "glob", typeof params.glob === "string", "a glob (a string)"));
  // At most a batch: a caller's limit (any grant's, through apex serve) had the supervisor read and send the whole log in one reply.
  const limit = params.limit === undefined ? BATCH : Math.min(BATCH, checked<number>(params, "limit", Number.isSafeInteger(params.limit) && (params.limit as number) >= 1, "a whole number ≥ 1"));
  // A revision that is no whole number was read as one (LMDB: a reply at revision 2.5) or failed as the store's error (PostgreSQL: APEX_E_STORE).
  let since = params.since === undefined ? 0 : checked<number>(params, "since", Number.isSafeInteger(params.since) && (params.since as number) >= 0, "a revision (a whole number ≥ 0)");
  // Near the head (a watcher keeping up), the batch holds the rest of the log: one read.
  const batch = readView(store, () => {
    if (params.since === undefined) since = store.revision();
    const batch = [...store.changesSince(since, { limit })];
    return batch.length < limit ? reply(store, view, glob, since, batch, new Map(batch.map((change) => [change.path, change.revision]))) : batch;
  });
  if (!Array.isArray(batch)) return batch;
  const key = `${store.info.backend}:${store.info.location}`;
  const run = (queues.get(key) ?? Promise.resolve()).then(async () => {
    const later = await laterChanges(store, key, since);
    // The log is only ever appended to: the batch read above is the same in this view, and what was written since
    // the index was read is read into it here, so the values read are judged by every change before them.
    return readView(store, () => {
      extend(store, later, Infinity);
      return reply(store, view, glob, since, batch, later.last);
    });
  });
  const settled = run.catch(() => {});
  queues.set(key, settled);
  void settled.then(() => queues.get(key) === settled && queues.delete(key));
  return run;
}

function checked<T>(params: Record<string, unknown>, name: string, ok: boolean, what: string): T {
  const value = params[name];
  if (!ok) throw new ApexError("APEX_E_BAD_INPUT", `memory.changes: ${name} must be ${what}, not ${JSON.stringify(value) ?? String(value)}.`);
  return value as T;
}

/**
 * How much JSON of changes one reply carries, unless its first change alone is more (a value of up
 * to 256 MiB): a reply over the supervisor's socket holds at most 256 MiB of JSON (MAX_LINE_BYTES).
 */
// APEX_REPLY_CHARS (a positive integer) replaces it: it exists so that tests cross a page's end with small values.
export const REPLY_CHARS = Number.isSafeInteger(Number(process.env.APEX_REPLY_CHARS)) && Number(process.env.APEX_REPLY_CHARS) > 0 ? Number(process.env.APEX_REPLY_CHARS) : 64 * 1024 * 1024;
/** Most values read at once (PostgreSQL: a few statements for them all), between which the reply's size is weighed. */
export const VALUES_AT_ONCE = 100;

/**
 * The reply for `batch`, each put's value read now unless `last` says its path changed after it.
 * The changes it holds come to at most REPLY_CHARS of JSON (or one change): it ends before the
 * change that would pass that, at the revision of the last it holds, and the watcher asks for the
 * rest. Two values of 150 MiB in one batch made a reply the socket could not carry: the watch
 * through a supervisor failed (APEX_E_TOO_LARGE) where the store read directly printed them.
 */
function reply(store: Store, view: MemoryView, glob: Glob | undefined, since: number, batch: Change[], last: Map<string, number>): ChangesReply {
  const changes: Array<{ out: { [key: string]: JsonValue }; key: string; revision: number; read: boolean }> = [];
  for (const change of batch) {
    const path = view.covers(change.path) ? view.unpath(change.path) : undefined;
    if (path === undefined || (glob && !glob.matches(path))) continue;
    const overwritten = change.kind === "put" && last.get(change.path)! > change.revision;
    const out: { [key: string]: JsonValue } = { ...change, path, value: null, ...(overwritten ? { overwritten } : {}) };
    changes.push({ out, key: change.path, revision: change.revision, read: change.kind === "put" && !overwritten });
  }
  let chars = 0;
  /** The longest change so far, as JSON: it says how many values the next read may take without holding much more than a reply. */
  let longest = 0;
  let read = 0;
  for (let i = 0; i < changes.length; i++) {
    if (i === read) {
      // The first value alone (its size tells nothing yet of the rest), then as many as fit in a reply at the longest seen, up to VALUES_AT_ONCE.
      const take = i === 0 ? 1 : Math.max(1, Math.min(VALUES_AT_ONCE, Math.floor(REPLY_CHARS / Math.max(1, longest))));
      const group: typeof changes = [];
      for (; read < changes.length && group.length < take; read++) if (changes[read]!.read) group.push(changes[read]!);
      // On PostgreSQL in a few statements rather than one round trip per put (10,000 of them held the supervisor seconds).
      const values = readValues(store, group.map(({ key }) => key));
      group.forEach(({ out }, at) => (out.value = values[at] ?? null));
    }
    const size = JSON.stringify(changes[i]!.out).length;
    longest = Math.max(longest, size);
    chars += size;
    if (i > 0 && chars > REPLY_CHARS) return { revision: changes[i - 1]!.revision, changes: changes.slice(0, i).map(({ out }) => out) };
  }
  return { revision: batch.at(-1)?.revision ?? since, changes: changes.map(({ out }) => out) };
}

/** The values at keyspace paths: in a few statements where the backend reads many at once (getEncodedMany: PostgreSQL), else one by one. */
export function readValues(store: Store, paths: string[]): Array<JsonValue | undefined> {
  if (!store.getEncodedMany) return paths.map((path) => store.get(path));
  return store.getEncodedMany(paths).map((bytes) => (bytes === undefined ? undefined : decodeValue(bytes)));
}

/** The store's index of later changes, covering `since`, read up to the store's head a slice at a time. */
async function laterChanges(store: Store, key: string, since: number): Promise<LaterChanges> {
  let later = kept.get(key);
  if (!later || since < later.base || (later.reader.deref() !== store && !stillHolds(store, later))) kept.set(key, (later = { base: since, upTo: since, mark: "", last: new Map(), reader: new WeakRef(store) }));
  later.reader = new WeakRef(store);
  clearTimeout(later.idle);
  const index = later;
  index.idle = setTimeout(() => kept.get(key) === index && kept.delete(key), IDLE_MS).unref();
  const head = store.revision();
  while (later.upTo < head && extend(store, later, SLICE) > 0) await new Promise((resolve) => setImmediate(resolve));
  return later;
}

/**
 * Reads the changes past the index into it, `slice` of them or a few more: it stops between two
 * commits (a commit's changes share their actor and time), so that a commit is read once, whole,
 * however many changes it holds (an import's 200,000), not again by each slice. Returns how many.
 */
function extend(store: Store, later: LaterChanges, slice: number): number {
  let count = 0;
  let previous: Change | undefined;
  for (const change of store.changesSince(later.upTo)) {
    if (count >= slice && (change.time !== previous!.time || change.actor !== previous!.actor)) break;
    later.last.set(change.path, change.revision);
    later.upTo = change.revision;
    later.mark = `${change.path}\n${change.time}`;
    previous = change;
    count++;
  }
  return count;
}

/** False if the store's log no longer has, at the index's last revision, the change it read there (a store made anew). */
function stillHolds(store: Store, later: LaterChanges): boolean {
  if (later.upTo === later.base) return store.revision() >= later.base;
  const [change] = store.changesSince(later.upTo - 1, { limit: 1 });
  return change !== undefined && change.revision === later.upTo && `${change.path}\n${change.time}` === later.mark;
}
