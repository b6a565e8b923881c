import { ApexError, isApexError } from "../../core/errors.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog, type Located } from "./catalog.js";
import { resolveCheckpoint } from "./checkpoints.js";
import { checkpointName, isRecord, RESERVED_SESSION_NAMES } from "./manifest.js";
import { MERGE_TRIGGER, mergedInto } from "./merge-base.js";
import { shortSessionId } from "../../core/session/names.js";
import { langGraphHeads } from "./langgraph-index.js";

/**
 * The sessions a store knows and the checkpoints other sessions still need: the one a branch
 * starts from, merge checkpoints and the checkpoints merged in (where the next merge finds its
 * base, see merge-base.ts), the one a session was restored from. Retention keeps them whatever
 * its policy says (its planner reads these maps); `apex checkpoint delete` refuses the ones the
 * checkpoint graph needs (branch and merge points) without --force.
 */

export interface SessionInfo {
  sessionId: string;
  /** Where its record lives: "current" (/sessions/<sid>), "ended" (/sessions/history/<sid>) or "none" (only checkpoints remain). */
  state: "current" | "ended" | "none";
  record: Record<string, JsonValue> | undefined;
}

const RESERVED = RESERVED_SESSION_NAMES;

/**
 * Every session the store knows: records of current and ended sessions, and sessions that
 * only have checkpoints left (a sequence counter in the checkpoint catalog). Sorted by the
 * session's creation time, then id.
 */
export function knownSessions(store: Store): SessionInfo[] {
  const found = new Map<string, SessionInfo>();
  // Keys only: a glob query would decode every manifest, task and event below /sessions.
  const current: string[] = [];
  const ended: string[] = [];
  for (const path of store.keysBelow("/sessions")) {
    const segments = path.slice("/sessions/".length).split("/");
    if (segments.length === 1) current.push(segments[0]!);
    else if (segments.length === 2 && segments[0] === "history") ended.push(segments[1]!);
  }
  for (const sessionId of current) {
    const value = store.get(`/sessions/${sessionId}`);
    if (RESERVED.has(sessionId) || !isRecord(value)) continue;
    found.set(sessionId, { sessionId, state: "current", record: value });
  }
  for (const sessionId of ended) {
    const value = store.get(`/sessions/history/${sessionId}`);
    if (found.has(sessionId) || !isRecord(value)) continue;
    found.set(sessionId, { sessionId, state: "ended", record: value });
  }
  for (const { sessionId } of Catalog.of(store).counters()) {
    if (!found.has(sessionId) && !RESERVED.has(sessionId)) found.set(sessionId, { sessionId, state: "none", record: undefined });
  }
  const createdAt = (info: SessionInfo) => (typeof info.record?.created_at === "string" ? info.record.created_at : "");
  return [...found.values()].sort((a, b) => createdAt(a).localeCompare(createdAt(b)) || a.sessionId.localeCompare(b.sessionId));
}

/**
 * Why the checkpoint graph needs `located` ("branch <sid>", "merge point of <sid>", "merged
 * into <sid>", as `apex checkpoint list` shows them): deleting it would cut a branch off the
 * checkpoint it started from, or take a merge's base away from the next merge. Empty when
 * nothing does.
 */
export function graphNeeds(store: Store, located: Located, sessions: readonly SessionInfo[] = knownSessions(store)): string[] {
  return [...(branchPoints(store, sessions).get(located.id) ?? []), ...(mergePoints(store, sessions).get(located.id) ?? [])];
}

/** graphNeeds' reasons in words, given who the session is. */
const NEEDED_BECAUSE: Record<string, (session: string) => string> = {
  branch: (session) => `${session} branches from it`,
  "merge point of": (session) => `it records a merge into ${session}`,
  "merged into": (session) => `it was merged into ${session}, and the next merge between them finds its base there`,
};

/** The reasons above, and restoreBases' "base of <sid>": each ends in the session it is for. */
const SESSION_REASON = /^(branch|merge point of|merged into|base of) (\S+)$/;

/**
 * `reason` with the session it names as `label` prints it ("branch 3f2a9c1e-…" -> "branch
 * experiment"), for text; --json keeps the reasons as they are, with whole ids.
 */
export function labelReason(reason: string, label: (sessionId: string) => string): string {
  const match = SESSION_REASON.exec(reason);
  return match ? `${match[1]} ${label(match[2]!)}` : reason;
}

/**
 * deleteCheckpoint's refusal of a checkpoint the graph needs (see graphNeeds): APEX_E_CONFLICT
 * naming each session as the other commands print it, by name, else its uuid's short form (the
 * details keep the whole ids); nothing when nothing needs it.
 */
export function refuseNeeded(store: Store, located: Located): void {
  const sessions = knownSessions(store);
  const needs = [...graphNeeds(store, located, sessions), ...deltaHistoryNeeds(store, located)];
  if (needs.length === 0) return;
  const names = new Map(sessions.map((session) => [session.sessionId, session.record?.name]));
  const label = (sessionId: string) => {
    const name = names.get(sessionId);
    return typeof name === "string" && name ? name : shortSessionId(sessionId);
  };
  const why = needs.map((reason) => {
    if (reason.endsWith(DELTA_HISTORY)) return `LangGraph ${reason.slice("langgraph ".length, -DELTA_HISTORY.length)} rebuilds its delta channels (a MessagesDeltaValue's history) from it`;
    const [, kind, sid] = /^(.+) (\S+)$/.exec(reason) ?? [];
    const phrase = kind === undefined ? undefined : NEEDED_BECAUSE[kind];
    return phrase && sid !== undefined ? phrase(`session ${label(sid)}`) : reason;
  });
  throw new ApexError("APEX_E_CONFLICT", `${label(located.sessionId)}/${checkpointName(located.sequence)} is needed: ${why.join("; ")}. Not deleting it.`, {
    hint: needs.every((reason) => reason.endsWith(DELTA_HISTORY)) ? `--force deletes it anyway: the thread's delta channels then come back from the steps after it only (the history before it is lost to the graph).` : "--force deletes it anyway: a branch keeps its own state; a later merge between these sessions still finds a checkpoint merged in from what its merge recorded (one merged by an older APEX excepted), and what a deleted merge checkpoint merged in, and a branch point from what the branch's first checkpoint recorded (while that checkpoint is kept; without it the merge falls back to an older common checkpoint, where more paths may conflict, and says so).",
    details: { checkpoint: located.id, needed_by: needs },
  });
}

const DELTA_HISTORY = ": delta channel history";

/**
 * "langgraph thread T: delta channel history" when a LangGraph thread namespace of the session
 * walks back through `located` to rebuild its head's delta channels (see deltaHistory): deleting
 * it cuts the history the next run goes on from, as retention would have. Its head is not
 * refused: deleting the latest step by hand is how a thread is taken back one step.
 */
function deltaHistoryNeeds(store: Store, located: Located): string[] {
  return (langGraphHeads(store, located.sessionId).get(located.id) ?? []).filter((reason) => reason.endsWith(DELTA_HISTORY));
}

/** Fields of a session record that name the checkpoint it was branched from (both spellings are in use). */
export const BRANCH_FIELDS = ["parent_checkpoint", "branched_from"] as const;
/** Fields that may name the session a bare `checkpoint-NNN` reference belongs to. */
const PARENT_SESSION_FIELDS = ["parent_session", "parent_session_id", "parent"] as const;

/**
 * Checkpoint id -> the sessions branched from it ("branch <sid>"). A reference may be a
 * checkpoint id (or unique prefix), `<sid>/checkpoint-NNN`, `checkpoint-NNN` with the parent
 * session in `parent_session`/`parent`, or an object with `id`/`checkpoint` and `session_id`.
 * A reference that matches several checkpoints protects all of them; one that matches none
 * protects nothing (there is nothing left to protect).
 */
export function branchPoints(store: Store, sessions: readonly SessionInfo[]): Map<string, string[]> {
  const points = new Map<string, string[]>();
  const protect = (checkpointId: string, sessionId: string) => {
    const reasons = points.get(checkpointId) ?? [];
    const reason = `branch ${sessionId}`;
    if (!reasons.includes(reason)) reasons.push(reason);
    points.set(checkpointId, reasons);
  };
  for (const session of sessions) {
    const record = session.record;
    if (!record) continue;
    for (const field of BRANCH_FIELDS) {
      for (const reference of referencesIn(record[field], parentSessionOf(record))) {
        for (const id of resolveReference(store, reference)) protect(id, session.sessionId);
      }
    }
  }
  return points;
}

/**
 * Checkpoint id -> the sessions whose base it is ("base of <sid>"): the checkpoint a session
 * was last restored from (`restored_from` in its record, set by `apex start --continue`), kept
 * while the record names it.
 */
export function restoreBases(store: Store, sessions: readonly SessionInfo[]): Map<string, string[]> {
  const bases = new Map<string, string[]>();
  for (const session of sessions) {
    const reference = session.record?.restored_from;
    if (typeof reference !== "string" || reference.trim() === "") continue;
    for (const id of resolveReference(store, { ref: reference.trim(), sessionId: session.sessionId })) {
      bases.set(id, [...(bases.get(id) ?? []), `base of ${session.sessionId}`]);
    }
  }
  return bases;
}

/**
 * Checkpoint id -> why merges need it: each merge checkpoint ("merge point of <sid>": its second
 * parent is an edge of the checkpoint graph) and the checkpoint it merged in ("merged into
 * <sid>": the base of the next merge between the two sessions, see checkpoint/merge-base.ts).
 */
export function mergePoints(store: Store, sessions: readonly SessionInfo[]): Map<string, string[]> {
  const points = new Map<string, string[]>();
  const protect = (id: string, reason: string) => {
    const reasons = points.get(id) ?? [];
    if (!reasons.includes(reason)) reasons.push(reason);
    points.set(id, reasons);
  };
  const catalog = Catalog.of(store);
  for (const { sessionId } of sessions) {
    for (const summary of catalog.summaries(sessionId)) {
      if (summary.trigger !== MERGE_TRIGGER) continue;
      protect(summary.id, `merge point of ${sessionId}`);
    }
    // Those of merge checkpoints deleted with --force too, which still lend their edges (merge-base.ts mergedInto): the next merge's base is there.
    for (const from of mergedInto(store, sessionId, Number.MAX_SAFE_INTEGER)) {
      const merged = catalog.summary(from.sessionId, from.sequence);
      if (merged) protect(merged.id, `merged into ${sessionId}`);
    }
  }
  return points;
}

interface Reference {
  ref: string;
  sessionId: string | undefined;
}

function parentSessionOf(record: Record<string, JsonValue>): string | undefined {
  for (const field of PARENT_SESSION_FIELDS) {
    const value = record[field];
    if (typeof value === "string" && value) return value;
    if (isRecord(value) && typeof value.session_id === "string") return value.session_id;
  }
  return undefined;
}

function referencesIn(value: JsonValue | undefined, parentSession: string | undefined): Reference[] {
  if (typeof value === "string") return value.trim() ? [{ ref: value.trim(), sessionId: parentSession }] : [];
  if (isRecord(value)) {
    const sessionId = typeof value.session_id === "string" ? value.session_id : parentSession;
    for (const key of ["id", "checkpoint", "checkpoint_id"]) {
      const ref = value[key];
      if (typeof ref === "string" && ref.trim()) return [{ ref: ref.trim(), sessionId }];
    }
  }
  return [];
}

const BARE_NAME = /^(?:checkpoint-\d+|latest)$/i;

function resolveReference(store: Store, { ref, sessionId }: Reference): string[] {
  // A bare name means nothing without its session; the current session is not a safe guess.
  if (BARE_NAME.test(ref) && !sessionId) return [];
  try {
    return [resolveCheckpoint(store, ref, sessionId ? { sessionId } : {}).id];
  } catch (error) {
    if (isApexError(error) && error.code === "APEX_E_AMBIGUOUS") {
      const candidates = (error.details?.candidates ?? []) as Array<{ id?: unknown }>;
      return candidates.map((candidate) => candidate.id).filter((id): id is string => typeof id === "string");
    }
    if (isApexError(error)) return [];
    throw error;
  }
}

