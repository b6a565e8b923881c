import { ApexError, isApexError } from "../../core/errors.js";
import { isWithin, pathProblem } from "../../core/store/paths.js";
import { ownerOf, PROJECT_RECORDS, SESSIONS_ROOT } from "../owned-paths.js";
import { isInternalMethod } from "./roles.js";
import { deletedBranchPointMark, type DeletedPoint } from "../checkpoint/deleted-point.js";

/**
 * A grant is for one session: whatever a remote caller sends, a call reads and acts on the
 * session in the URL, and never shows another session's records. Calls are pinned to that
 * session (`session`, `session_id`), and what comes back is checked: checkpoints of another
 * session (named by `OTHER/checkpoint-001` or by id) are not found, and memory paths under
 * another session's records, or any session's grants, are left out.
 */
export function pinnedParams(sessionId: string, params: Record<string, unknown>): Record<string, unknown> {
  return {
    ...params,
    session: sessionId,
    ...("session_id" in params ? { session_id: sessionId } : {}),
    // A merge through the server lands in the grant's session, whatever the body says.
    ...("destination" in params ? { destination: sessionId } : {}),
    // A forwarded plugin command's --session option too.
    ...(params.options && typeof params.options === "object" && !Array.isArray(params.options) ? { options: { ...(params.options as object), session: sessionId } } : {}),
  };
}

/**
 * True for a memory path a caller of `sessionId` may see. The project's records
 * (owned-paths.ts: PROJECT_RECORDS) are of the project as a whole; a grant is for one session,
 * so they are never shown through one. The grant's own record is at /sessions/<sid>.
 */
export function visiblePath(sessionId: string, path: string): boolean {
  if (Object.hasOwn(PROJECT_RECORDS, path) || path.startsWith("/sessions/current/")) return false;
  const parts = path.split("/");
  if (parts[1] !== "sessions" || parts.length < 3) return true;
  const owner = parts[2] === "history" ? parts[3] : parts[2];
  if (owner === undefined) return true;
  if (owner !== sessionId) return false;
  const rest = parts[2] === "history" ? parts.slice(4) : parts.slice(3);
  return rest[0] !== "grants";
}

export function scopedResult(sessionId: string, method: string, params: Record<string, unknown>, result: unknown): unknown {
  switch (method) {
    case "hello": {
      // The methods a caller may ask for: not the plumbing between the server and the supervisor, refused to everyone.
      const reply = result as { methods?: unknown } | undefined;
      return reply && Array.isArray(reply.methods) ? { ...reply, methods: reply.methods.filter((name) => typeof name === "string" && !isInternalMethod(name)) } : result;
    }
    case "memory.query":
      return Array.isArray(result) ? visibleEntries(sessionId, result) : result;
    case "memory.page": {
      // A page left with fewer entries, or none, keeps its `next`: the caller asks on from there.
      const page = result as { entries?: unknown } | undefined;
      return page && Array.isArray(page.entries) ? { ...page, entries: visibleEntries(sessionId, page.entries) } : result;
    }
    case "memory.changes": {
      const reply = result as { changes?: Array<{ path?: unknown }> } | undefined;
      if (!reply || !Array.isArray(reply.changes)) return result;
      return { ...reply, changes: reply.changes.filter((change) => typeof change.path === "string" && visiblePath(sessionId, change.path)) };
    }
    case "checkpoint.show": {
      const owner = (result as { manifest?: { session_id?: unknown } } | undefined)?.manifest?.session_id;
      if (owner !== undefined && owner !== sessionId) throw foreignCheckpoint(String(params.ref));
      return result;
    }
    case "checkpoint.diff": {
      const diff = result as { from?: { sessionId?: unknown }; to?: { sessionId?: unknown } } | undefined;
      for (const [side, ref] of [[diff?.from, params.from], [diff?.to, params.to]] as const) {
        if (side?.sessionId !== undefined && side.sessionId !== sessionId) throw foreignCheckpoint(String(ref));
      }
      return result;
    }
    default:
      return result;
  }
}

function visibleEntries(sessionId: string, entries: Array<{ path?: unknown } | null>): unknown[] {
  return entries.filter((entry) => typeof entry?.path === "string" && visiblePath(sessionId, entry.path));
}

/** The listings of the project's sessions: a grant sees its own session's ancestry in them, nothing else. */
export const SESSION_LISTINGS = new Set(["session.list", "session.history", "session.tree"]);

/**
 * A session listing as a grant of one session may see it. `ancestry` maps each session the
 * grant's session descends from (itself, the sessions it was branched from and merged from,
 * and theirs) to the highest checkpoint sequence it descends from. Records of other sessions
 * (siblings, descendants, unrelated sessions: their ids, status and first task) are left out;
 * in the tree, so are an ancestor's checkpoints made after the point it was branched or
 * merged from, and edges to what is left out.
 */
export function scopedListing(method: string, result: unknown, ancestry: ReadonlyMap<string, number>): unknown {
  const known = (value: unknown) => typeof value === "string" && ancestry.has(value);
  if (method === "session.list" || method === "session.history") {
    return Array.isArray(result) ? result.filter((record: { session_id?: unknown }) => known(record?.session_id)) : [];
  }
  const tree = result as { sessions?: Array<{ session_id?: unknown; parent?: { session_id?: unknown } | null; latest?: unknown }>; nodes?: Array<ListedNode> } | undefined;
  if (!tree || !Array.isArray(tree.sessions) || !Array.isArray(tree.nodes)) return { sessions: [], nodes: [] };
  const nodes = tree.nodes.filter((node) => known(node.session_id) && typeof node.sequence === "number" && node.sequence <= ancestry.get(node.session_id as string)!);
  const kept = new Set(nodes.map((node) => node.id));
  const heads = new Set(nodes.filter((node) => node.head).map((node) => node.id));
  return {
    sessions: tree.sessions
      .filter((session) => known(session.session_id))
      .map((session) => ({ ...session, parent: session.parent && known(session.parent.session_id) ? session.parent : null, latest: heads.has(session.latest as string) ? session.latest : null })),
    nodes: nodes.map((node) => scopedNode({ ...node, parents: (node.parents ?? []).filter((parent) => kept.has(parent)), ...visibleBranches(node, known) })),
  };
}

type ListedNode = { id: string; session_id?: unknown; sequence?: unknown; parents?: string[]; head?: boolean; deleted?: unknown; deleted_merge?: unknown; branched_by?: unknown; recorded_by?: unknown };

/**
 * A deleted merge checkpoint sessions were branched from, none of which the grant sees: a merge
 * checkpoint only, as session tree draws one (it was a branch point of no branch).
 */
function scopedNode(node: ListedNode): ListedNode {
  if (!node.deleted_merge || !Array.isArray(node.branched_by) || node.branched_by.length > 0) return node;
  const { branched_by: _branchedBy, recorded_by: _recordedBy, ...merge } = node;
  return { ...merge, deleted: "recorded by its session" };
}

/**
 * Of a deleted branch point, the branches made from it that the grant sees, and what the node says
 * of those alone: the others' ids are left out as their records are.
 */
function visibleBranches(node: ListedNode, known: (value: unknown) => boolean): Partial<ListedNode> {
  if (!Array.isArray(node.branched_by)) return {};
  const branchedBy = node.branched_by.filter(known);
  const recordedBy = Array.isArray(node.recorded_by) ? node.recorded_by.filter(known) : [];
  const marks = branchedBy.map((id): DeletedPoint => (recordedBy.includes(id) ? "recorded by its branch" : "not recorded"));
  return { branched_by: branchedBy, recorded_by: recordedBy, ...(marks.length > 0 ? { deleted: deletedBranchPointMark(marks) } : {}) };
}

/**
 * Writes to one checkpoint named by `ref`, which may name any session's (`OTHER/checkpoint-001`,
 * an id): through a grant, the checkpoint is looked up first (`checkpoint.show`) and must be
 * of the grant's session, as for reads.
 */
export const CHECKPOINT_WRITES = new Set(["checkpoint.delete", "checkpoint.pin"]);

/** The memory methods that write, and where each finds the paths it writes. */
const MEMORY_WRITES: Record<string, (params: Record<string, unknown>) => unknown[]> = {
  "memory.set": (params) => [params.path],
  "memory.delete": (params) => [params.path],
  "memory.import": (params) => (Array.isArray(params.entries) ? params.entries.map((entry: { path?: unknown } | null) => entry?.path) : []),
  "memory.stage": (params) => (Array.isArray(params.entries) ? params.entries.map((entry: { path?: unknown } | null) => entry?.path) : []),
};

/**
 * A memory write through a grant goes to memory, never to APEX's own records (owned-paths.ts:
 * session records, tasks, the audit trail, grants — a grant written there would be a token of
 * any role, for any session — and the project's records), whatever its `force` says. Nor to the
 * areas of /sessions that local agents and users write (metrics input, a worktree session's
 * memory): they are some session's, and a write does not say which. Refused (APEX_E_FORBIDDEN)
 * before anything is written; the project's local user writes as `apex memory` allows.
 */
export function checkRemoteWrite(method: string, params: Record<string, unknown>): void {
  // Own keys only: a method named like an object's own (`constructor`, `toString`) is no write, and its 404 comes later.
  const paths = Object.hasOwn(MEMORY_WRITES, method) ? MEMORY_WRITES[method]!(params) : [];
  const recursive = params.recursive === true;
  const reserved = paths.find((path) => typeof path === "string" && (ownerOf(path, recursive) !== undefined || isWithin(path, SESSIONS_ROOT)));
  if (reserved === undefined) return;
  throw new ApexError("APEX_E_FORBIDDEN", `${method} of ${JSON.stringify(reserved)} is refused through apex serve: /sessions/… and /projects/config hold APEX's records, not memory. Nothing was written.`, {
    hint: "Write memory elsewhere (e.g. /notes/…); tasks, checkpoints and shares have their own commands.",
  });
}

/** memory.get of a path the caller may not see: answered as if nothing were stored there, without asking. */
export function hiddenRead(sessionId: string, method: string, params: Record<string, unknown>): boolean {
  // A path that is none (`/sessions/./OTHER`, a trailing '/') is refused as it is locally (400 APEX_E_BAD_PATH), not answered as empty.
  return method === "memory.get" && typeof params.path === "string" && pathProblem(params.path) === undefined && !visiblePath(sessionId, params.path);
}

/** The methods that name checkpoints by a reference (`ref`, or `from` and `to`), which may name any session's. */
const CHECKPOINT_REFS = new Set(["checkpoint.show", "checkpoint.diff", "checkpoint.delete", "checkpoint.pin"]);

/**
 * A checkpoint a grant's call did not find, answered the same whatever the reason: the store's
 * own answers told whether another session exists (`No session "x" in this project` for none,
 * "x is a session, not a checkpoint" for one, `feature/latest` not found "in this session").
 * Any other error as it is.
 */
export function scopedError(method: string, params: Record<string, unknown>, error: unknown): unknown {
  if (!CHECKPOINT_REFS.has(method) || !isApexError(error) || error.code !== "APEX_E_CHECKPOINT_NOT_FOUND") return error;
  const ref = error.details?.ref ?? params.ref ?? params.from;
  return foreignCheckpoint(typeof ref === "string" ? ref : String(ref));
}

function foreignCheckpoint(ref: string): ApexError {
  return new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `No checkpoint ${JSON.stringify(ref)} in this session.`, { hint: "`apex checkpoint list` shows the session's checkpoints." });
}
