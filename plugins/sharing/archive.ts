import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { sessionMethods } from "../../core/session/methods.js";
import { CURRENT_SESSION_PATH, ENDED_STATUSES, readActiveSessions, type SessionEvent, type SessionRecord } from "../../core/session/records.js";
import { eventsAfter, SessionService } from "../../core/session/service.js";
import { effectiveStatus, findSession } from "../../core/session/sessions.js";
import { sessionReport } from "../../core/session/status-report.js";
import { compileGlob } from "../../core/store/glob.js";
import { checkPath } from "../../core/store/paths.js";
import type { Entry, JsonValue, Store } from "../../core/store/store.js";
import { REPLY_CHARS } from "../memory-changes.js";
import { compareCodePoints } from "../value-codec.js";
import { openStore, storeExists } from "../../core/store/open.js";

/**
 * Reads of a session that no live supervisor serves, straight from the store (read-only):
 * a session not ended while its supervisor is down, and every other session of the project
 * (ended, reconstructed). A session that is not the one of its working tree (the project's, or
 * a branch's git worktree; sessions run side by side) is *frozen*: its project memory is what
 * its latest checkpoint holds (the live keyspace belongs to whichever session runs there now),
 * and nothing of it can be changed here.
 */
export const STORED_READS = new Set([
  "hello",
  "session.status",
  "session.list",
  "session.history",
  "session.tree",
  "agent.list",
  "task.list",
  "task.get",
  "milestone.list",
  "events.list",
  "memory.get",
  "memory.query",
  "memory.page",
  "memory.changes",
  "checkpoint.list",
  "checkpoint.show",
  "checkpoint.diff",
  "share.list",
]);

export interface StoredSession {
  record: SessionRecord;
  /** Not the session of its working tree (ended, say): read-only, memory as of its latest checkpoint. */
  frozen: boolean;
  ended: boolean;
}

export async function withReadStore<T>(location: ProjectLocation, fn: (store: Store) => T | Promise<T>): Promise<T> {
  if (!(await storeExists(location))) throw noSuchSession("(none)");
  const store = await openStore(location, { readOnly: true });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export function storedSession(store: Store, sessionId: string): StoredSession {
  let record: SessionRecord | undefined;
  try {
    record = findSession(store, sessionId);
  } catch {
    record = undefined; // not a valid path segment: no such session
  }
  if (!record || typeof record !== "object" || record.session_id !== sessionId) throw noSuchSession(sessionId);
  return { record, frozen: !holdsWorkingTree(store, record), ended: ENDED_STATUSES.has(record.status) };
}

/**
 * True when the session is not ended and is the session of its working tree (the project's own:
 * /sessions/current; a branch's git worktree: /sessions/active), so the live keyspace holds its
 * working memory. Decided for that session, never by what this server's directory is bound to:
 * sessions run side by side, each with its own.
 */
function holdsWorkingTree(store: Store, record: SessionRecord): boolean {
  if (ENDED_STATUSES.has(record.status)) return false;
  const current = store.get(CURRENT_SESSION_PATH) as { session_id?: unknown } | undefined;
  return current?.session_id === record.session_id || Object.hasOwn(readActiveSessions(store), record.session_id);
}

/** One read method of `sessionId`, answered from the store as the supervisor would answer it. */
export async function readStored(store: Store, sessionId: string, method: string, params: Record<string, unknown>, location?: ProjectLocation): Promise<unknown> {
  const session = storedSession(store, sessionId);
  const service = new SessionService(store, sessionId, { fire: async () => {} });
  const methods = sessionMethods(service);
  switch (method) {
    case "hello":
      return { session_id: sessionId, status: effectiveStatus(session.record), read_only: session.frozen, methods: [...STORED_READS] };
    case "session.status":
      return sessionReport(store, session.record);
    case "agent.list":
      return sessionReport(store, session.record).agents.map((agent) => ({ name: agent.name, status: agent.status, pid: agent.pid, pgid: agent.pgid, restarts: agent.restarts }));
    case "memory.get":
    case "memory.query":
    case "memory.changes":
      if (method === "memory.changes" && session.ended) return endedChanges(store, session.record, params, methods[method]!);
      return session.frozen ? frozenMemory(store, sessionId, method, params) : methods[method]!(params);
    case "memory.page":
      return session.frozen ? frozenPage(store, sessionId, params) : methods[method]!(params);
    case "session.tree": {
      const { sessionTree } = await import("../checkpoint/tree.js");
      return sessionTree(store);
    }
    case "checkpoint.list": {
      // KEPT BY as the host's `checkpoint list` shows it: the project's retention policy (`location`: the server's project), when asked (`kept_by: true`; the dashboard's polled list does not).
      const [{ servedPage }, { retentionReasons }] = await Promise.all([import("../checkpoint/plugin-list.js"), import("../checkpoint/kept-by.js")]);
      return servedPage(store, {
        session: sessionId,
        ...(typeof params.limit === "number" ? { limit: params.limit } : {}),
        ...(typeof params.offset === "number" ? { offset: params.offset } : {}),
        oldest: params.oldest === true,
      }, location && params.kept_by === true ? await retentionReasons(location) : undefined);
    }
    case "checkpoint.show": {
      const { checkpointRecord } = await import("../checkpoint/record.js");
      return checkpointRecord(store, stringParam(params, "ref"), {
        sessionId,
        ...(typeof params.keysLimit === "number" ? { keysLimit: params.keysLimit } : {}),
        ...(typeof params.keysOffset === "number" ? { keysOffset: params.keysOffset } : {}),
      });
    }
    case "checkpoint.diff": {
      const { diffCheckpoints } = await import("../checkpoint/checkpoints.js");
      return diffCheckpoints(store, stringParam(params, "from"), stringParam(params, "to"), { sessionId });
    }
    default: {
      const fn = methods[method];
      if (!STORED_READS.has(method) || !fn) throw new ApexError("APEX_E_INTERNAL", `${method} is not a read.`);
      // A read that names another session through params reads that one; here it is always this one.
      return fn({ ...params, session: sessionId });
    }
  }
}

/**
 * memory.changes of an ended session: the changes it made up to its end (those of the revision log up
 * to the first one after its `ended_at`), with `ended: true` once they are all given: its memory
 * changes no more. A watch of it answered nothing, for ever, and what the session wrote between the
 * watch's last read and its end was never shown.
 */
async function endedChanges(store: Store, record: SessionRecord, params: Record<string, unknown>, live: (params: Record<string, unknown>) => unknown): Promise<unknown> {
  const end = Date.parse(String(record.ended_at));
  // The last revision at or before the end: revisions are committed in time order, so it is found by halving.
  let low = 0;
  let high = store.revision();
  while (Number.isFinite(end) && low < high) {
    const middle = Math.ceil((low + high) / 2);
    const [change] = store.changesSince(middle - 1, { limit: 1 });
    if (change !== undefined && change.time <= end) low = middle;
    else high = middle - 1;
  }
  const since = typeof params.since === "number" ? params.since : low;
  if (since >= low) return { revision: since, changes: [], ended: true };
  const reply = (await live({ ...params, since })) as { revision: number; changes: Array<{ revision: number }> };
  const revision = Math.min(reply.revision, low);
  return { revision, changes: reply.changes.filter((change) => change.revision <= low), ...(revision >= low ? { ended: true } : {}) };
}

/**
 * Memory of a frozen session: the project memory its latest checkpoint holds (nothing, if it
 * has none), beside the session records under /sessions/, which are read live (they are the
 * session's own, and `session history` reads them). `memory.changes` reports nothing: a
 * checkpoint does not change.
 */
async function frozenMemory(store: Store, sessionId: string, method: string, params: Record<string, unknown>): Promise<unknown> {
  if (method === "memory.changes") return { revision: typeof params.since === "number" ? params.since : store.revision(), changes: [] };
  const { catalogLatest, getCheckpointValue, readCheckpointMemory } = await checkpointReads();
  const latest = catalogLatest(store, sessionId);
  if (method === "memory.get") {
    const path = checkPath(stringParam(params, "path"));
    if (isRecordPath(path)) return store.get(path);
    return latest ? getCheckpointValue(store, latest, path, { sessionId }) : undefined;
  }
  const glob = compileGlob(stringParam(params, "glob"));
  const limit = typeof params.limit === "number" ? params.limit : Infinity;
  const out: Array<{ path: string; value: JsonValue }> = [];
  for (const entry of store.query(glob.source)) if (isRecordPath(entry.path)) out.push({ path: entry.path, value: entry.value });
  if (latest) {
    for (const entry of readCheckpointMemory(store, latest, { sessionId })) if (!isRecordPath(entry.path) && glob.matches(entry.path)) out.push(entry);
  }
  // In the store's key order (code points, as UTF-8 bytes order): `<` compares UTF-16 units, and put /o/😀 before /o/\ue000.
  out.sort((a, b) => compareCodePoints(a.path, b.path));
  return out.slice(0, limit);
}

/**
 * memory.page of a frozen session: its memory.query answer (frozenMemory) in pages as a supervisor
 * gives them (REPLY_CHARS of JSON, or a first entry alone), each from the `next` of the one before.
 */
async function frozenPage(store: Store, sessionId: string, params: Record<string, unknown>): Promise<{ entries: Entry[]; next?: string }> {
  const after = typeof params.after === "string" ? params.after : undefined;
  const limit = typeof params.limit === "number" ? params.limit : Infinity;
  const entries: Entry[] = [];
  let chars = 0;
  for (const entry of (await frozenMemory(store, sessionId, "memory.query", { glob: params.glob })) as Entry[]) {
    if (after !== undefined && compareCodePoints(entry.path, after) <= 0) continue;
    if (entries.length >= limit) break;
    const size = JSON.stringify(entry).length;
    if (entries.length > 0 && chars + size > REPLY_CHARS) return { entries, next: entries.at(-1)!.path };
    entries.push(entry);
    chars += size;
  }
  return { entries };
}

function isRecordPath(path: string): boolean {
  return path === "/sessions" || path.startsWith("/sessions/");
}

async function checkpointReads() {
  const [{ getCheckpointValue, readCheckpointMemory }, { Catalog }] = await Promise.all([import("../checkpoint/checkpoints.js"), import("../checkpoint/catalog.js")]);
  return {
    getCheckpointValue,
    readCheckpointMemory,
    /** The id of the session's latest checkpoint, if it has one. */
    catalogLatest: (store: Store, sessionId: string): string | undefined => Catalog.of(store).latest(sessionId)?.id,
  };
}

/**
 * The sessions `sessionId` descends from (itself included), each with the highest checkpoint
 * sequence it descends from: what a grant of `sessionId` sees of the project's sessions.
 *
 * Only the edges the store bears out are followed, not every one a session's records claim (as
 * ancestryOf, for merges, does): a session's record and manifests are what its bundle said they
 * were, and a bundle crafted with `parent_checkpoint` (or a merge's `from`) naming another session
 * of the importing project gave the grant it was then shared with that session's record and
 * checkpoints in `session list|history|tree`. An edge to a checkpoint is followed when the store
 * holds that very checkpoint (the same id at that session and sequence: a random id, which only one
 * who saw the checkpoint knows), or when the store holds nothing of its session (archived, or never
 * here: drawn as absent, nothing of it shown); the ancestry a merge recorded of a source no longer
 * in the store (ids it does not name) is followed into sessions the store does not hold only. A
 * checkpoint deleted since is followed when its own session's records keep it under that id: a
 * merge checkpoint's edge (recordMerge), or one other sessions' edges named, deleted with --force
 * (merge-base.ts DELETED_POINTS_FIELD). Nothing else: a gap in a session's sequences, or a session
 * without checkpoints, bears out no edge (before, either was followed, and a crafted record naming
 * one showed that session). A checkpoint deleted so by an APEX that did not keep it loses its edges
 * here (its branches' grants no longer see its session), as does one a repair dropped: the edge is
 * still drawn by `session tree`, and a merge still finds its base there, from what the branch or
 * the merge recorded.
 */
export async function sessionAncestry(store: Store, sessionId: string): Promise<Map<string, number>> {
  const [{ branchPointOf, keptUnderId, mergedInto, sessionRecord }, { Catalog }] = await Promise.all([import("../checkpoint/merge-base.js"), import("../checkpoint/catalog.js")]);
  const catalog = Catalog.of(store);
  const held = (other: string) => sessionRecord(store, other) !== undefined || catalog.count(other) > 0 || catalog.lastSequence(other) > 0;
  const borneOut = (point: { sessionId: string; sequence: number }, id: string | undefined) => {
    if (!held(point.sessionId)) return true;
    if (id === undefined) return false;
    const summary = catalog.summary(point.sessionId, point.sequence);
    if (summary !== undefined) return summary.id === id;
    // A checkpoint deleted since: followed when its own session's records kept it under that id (a merge
    // checkpoint's edge; a branch point or a checkpoint merged in, deleted with --force), else not.
    return keptUnderId(store, point.sessionId, point.sequence, id);
  };
  const result = new Map<string, number>();
  const stack: Array<{ sessionId: string; sequence: number }> = [{ sessionId, sequence: Number.MAX_SAFE_INTEGER }];
  while (stack.length > 0) {
    const point = stack.pop()!;
    const scannedUpTo = result.get(point.sessionId) ?? 0;
    if (scannedUpTo >= point.sequence) continue;
    result.set(point.sessionId, point.sequence);
    if (scannedUpTo === 0) {
      const branch = branchPointOf(store, point.sessionId);
      const parent = sessionRecord(store, point.sessionId)?.parent_checkpoint;
      const id = parent !== null && typeof parent === "object" && !Array.isArray(parent) && typeof parent.id === "string" ? parent.id : undefined;
      if (branch && borneOut(branch, id)) stack.push(branch);
    }
    for (const from of mergedInto(store, point.sessionId, point.sequence)) {
      if (borneOut(from, from.id)) stack.push({ sessionId: from.sessionId, sequence: from.sequence });
      if (!from.recorded || held(from.sessionId)) continue;
      for (const [ancestor, upTo] of from.recorded.ancestry) if (!held(ancestor)) stack.push({ sessionId: ancestor, sequence: upTo });
    }
  }
  return result;
}

/**
 * The session `ref` names (id, name or unique prefix), if `user` holds a grant of it that has
 * not expired; else undefined, whether the session is unknown or not shared with them (the
 * answer must not tell which).
 */
export async function readableByUser(store: Store, user: string, ref: string, now = Date.now()): Promise<string | undefined> {
  const { resolveSessionRef } = await import("../checkpoint/plugin-sessions.js");
  const { listGrants } = await import("./grants.js");
  let sessionId: string;
  try {
    sessionId = resolveSessionRef(store, ref);
  } catch {
    return undefined;
  }
  const granted = listGrants(store, sessionId).some((grant) => grant.user === user && (grant.expires_at === null || Date.parse(grant.expires_at) > now));
  return granted ? sessionId : undefined;
}

/** Events of a session after `seq`, and whether the session has ended (no more will come). */
export function storedEvents(store: Store, sessionId: string, seq: number): { events: SessionEvent[]; ended: boolean; name: string | null } {
  const session = storedSession(store, sessionId);
  const name = session.record.name;
  return { events: Array.from(eventsAfter(store, sessionId, seq)), ended: session.ended, name: typeof name === "string" && name ? name : null };
}

export function readOnlySession(session: StoredSession, method: string): ApexError {
  const what = session.ended ? `ended (${session.record.status})` : "not the session of its working tree";
  return new ApexError("APEX_E_SESSION_STATE", `Session ${session.record.session_id} is ${what}: it can be read, not changed (${method}).`, {
    hint: "Its status, tasks, checkpoints, memory as of its latest checkpoint, logs and events stay readable.",
  });
}

export function noSuchSession(sessionId: string): ApexError {
  return new ApexError("APEX_E_NO_SESSION", `No session ${sessionId} in this project.`, { hint: "The owner's `apex session list` shows the project's sessions." });
}

function stringParam(params: Record<string, unknown>, name: string): string {
  const value = params[name];
  if (typeof value !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} must be a string.`);
  return value;
}
