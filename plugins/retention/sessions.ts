import { ApexError } from "../../core/errors.js";
import type { Store } from "../../core/store/store.js";
import { pickSession, resolveSessionId } from "../../core/session/sessions.js";
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

/** The session `argument` names, as every command reads it (core's resolveSessionId), among `sessions` (those with a record or checkpoints). */
export function findKnownSession(sessions: readonly SessionInfo[], argument: string, store?: Store, hint = "See `apex session list`; without an ID, cleanup goes through every session."): SessionInfo {
  const ids = sessions.map((session) => session.sessionId);
  // No store yet: no session, not even `last`.
  const id = store ? resolveSessionId(store, argument, { also: ids, hint }) : pickSession(argument.trim(), [], () => undefined, hint);
  const found = sessions.find((session) => session.sessionId === id);
  if (found) return found;
  throw new ApexError("APEX_E_NO_SESSION", `No session ${JSON.stringify(argument.trim())} in this project.`, { hint });
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
