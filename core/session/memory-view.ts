import type { Entry, JsonValue } from "../store/store.js";
import { CURRENT_SESSION_PATH, currentSessionOf, ENDED_STATUSES, historyPath, memoryRootOf, sessionPath, type SessionRecord } from "./records.js";

const SESSIONS = "/sessions";
const OTHER_MEMORY = /^\/sessions\/[^/]+\/memory(?:\/|$)/;

/**
 * A session's working memory as its agents and commands name it. Paths outside /sessions are
 * memory: a session of the project's own working tree keeps them at the keyspace's root, a session
 * in a git worktree under its own root `/sessions/<sid>/memory` (records.ts: memoryRootOf), so
 * `memory set /notes/x` in one is not seen by `memory get /notes/x` in another until a merge.
 * Paths under /sessions are the sessions' records and are the same for everyone, except
 * /sessions/current, which answers for the session this view belongs to.
 */
export class MemoryView {
  constructor(
    /** "" (the root) or `/sessions/<sid>/memory`. */
    readonly root: string,
    /** What /sessions/current reads as here; undefined: the stored record. */
    private readonly current?: () => JsonValue | undefined,
  ) {}

  static readonly ROOT = new MemoryView("");

  /** The keyspace path of a memory path. */
  path(path: string): string {
    return this.root === "" || isSessionsPath(path) ? path : path === "/" ? this.root : `${this.root}${path}`;
  }

  /** The memory path of a keyspace path (the inverse of `path`). */
  unpath(path: string): string {
    if (this.root === "") return path;
    if (path === this.root) return "/";
    return path.startsWith(`${this.root}/`) ? path.slice(this.root.length) : path;
  }

  /** A glob over memory paths, as a glob over keyspace paths. */
  glob(source: string): string {
    return this.root === "" || isSessionsPath(source) || source.startsWith(`${SESSIONS}*`) ? source : `${this.root}${source}`;
  }

  /**
   * Entries read with `glob(source)`, with memory paths, at most `limit` of them. Another session's memory root is
   * left out unless the glob asks for /sessions itself (`/**` lists this session's memory and the records).
   */
  entries(entries: Iterable<Entry>, source = "/**", limit = Infinity): Entry[] {
    const out: Entry[] = [];
    const keepRoots = isSessionsPath(source);
    for (const entry of entries) {
      if (out.length >= limit) break;
      if (!keepRoots && OTHER_MEMORY.test(entry.path) && !this.owns(entry.path)) continue;
      out.push(this.root === "" ? entry : { ...entry, path: this.unpath(entry.path) });
    }
    return out;
  }

  private owns(path: string): boolean {
    return this.root !== "" && (path === this.root || path.startsWith(`${this.root}/`));
  }

  /** A read, with /sessions/current answering for this view's session. */
  get(read: (path: string) => JsonValue | undefined, path: string): JsonValue | undefined {
    if (path === CURRENT_SESSION_PATH && this.current) return this.current();
    return read(this.path(path));
  }

  /** True when a keyspace path (of the revision log, say) is in this view's memory or is a session record. */
  covers(path: string): boolean {
    if (this.root === "") return !OTHER_MEMORY.test(path);
    return this.owns(path) || (isSessionsPath(path) && !OTHER_MEMORY.test(path));
  }
}

function isSessionsPath(path: string): boolean {
  return path === SESSIONS || path.startsWith(`${SESSIONS}/`);
}

/**
 * The view of `sessionId`'s memory (the root's when undefined or not a session). /sessions/current
 * reads as that session's, while it is active.
 */
export function memoryViewOf(store: { get(path: string): JsonValue | undefined }, sessionId: string | undefined): MemoryView {
  if (sessionId === undefined) return MemoryView.ROOT;
  let record: SessionRecord | undefined;
  try {
    record = (store.get(sessionPath(sessionId)) ?? store.get(historyPath(sessionId))) as SessionRecord | undefined;
  } catch {
    return MemoryView.ROOT; // not a valid path segment
  }
  if (!record || typeof record !== "object" || typeof record.session_id !== "string") return MemoryView.ROOT;
  return new MemoryView(memoryRootOf(record), () => {
    const live = store.get(sessionPath(sessionId)) as SessionRecord | undefined;
    return live && !ENDED_STATUSES.has(live.status) ? currentSessionOf(live) : undefined;
  });
}
