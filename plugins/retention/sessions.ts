import { ApexError } from "../../core/errors.js";
import type { Store } from "../../core/store/store.js";
import { resolveSessionId } from "../../core/session/sessions.js";
import { listCheckpoints } from "../checkpoint/checkpoints.js";
import type { SessionInfo } from "../checkpoint/dependents.js";

/**
 * What retention reads from the store: which sessions exist and their checkpoints. The
 * sessions and the checkpoints other sessions need (branch and merge points, restore bases),
 * which must survive whatever the policy says, are the checkpoint plugin's (dependents.ts):
 * `apex checkpoint delete` refuses the branch and merge points among them too.
 */
export { branchPoints, knownSessions, labelReason, mergePoints, restoreBases, type SessionInfo } from "../checkpoint/dependents.js";

/** One checkpoint of a session, as the catalog lists it. */
export interface CheckpointRow {
  id: string;
  sessionId: string;
  sequence: number;
  name: string;
  createdAt: string;
  pinned: boolean;
  trigger: string;
}

/** The session `argument` names: its id, or a unique prefix of at least 4 characters. */
export function findKnownSession(sessions: readonly SessionInfo[], argument: string, store?: Store): SessionInfo {
  // `last` and `current`, as every command reads them (core's resolveSessionId).
  if (store && (argument === "last" || argument === "current")) argument = resolveSessionId(store, argument);
  const exact = sessions.find((session) => session.sessionId === argument);
  if (exact) return exact;
  const named = sessions.find((session) => session.record?.name === argument);
  if (named) return named;
  const matches = argument.length >= 4 ? sessions.filter((session) => session.sessionId.startsWith(argument)) : [];
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) {
    throw new ApexError("APEX_E_AMBIGUOUS", `${JSON.stringify(argument)} matches ${matches.length} sessions.`, {
      hint: `Give more characters: ${matches.map((session) => session.sessionId).join(", ")}.`,
    });
  }
  throw new ApexError("APEX_E_NO_SESSION", `No session ${JSON.stringify(argument)} in this project.`, {
    hint: "See `apex session list`; without an ID, cleanup goes through every session.",
  });
}

/** A session's checkpoints, newest first. */
export function sessionCheckpoints(store: Store, sessionId: string): CheckpointRow[] {
  const rows: CheckpointRow[] = [];
  for (const summary of listCheckpoints(store, sessionId, { limit: Number.MAX_SAFE_INTEGER, order: "newest" }).items) {
    rows.push({
      id: summary.id,
      sessionId,
      sequence: summary.sequence,
      name: summary.name,
      createdAt: summary.created_at,
      pinned: summary.pinned === true,
      trigger: summary.trigger,
    });
  }
  return rows;
}
