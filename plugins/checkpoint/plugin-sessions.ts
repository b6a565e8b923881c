import { ApexError } from "../../core/errors.js";
import { boundSessionId, lastSession, resolveSessionId } from "../../core/session/sessions.js";
import type { Store } from "../../core/store/store.js";
import { Catalog } from "./catalog.js";

/**
 * Finding the session a checkpoint command is about, from keys and small records only: these
 * run before validation, on stores that may be damaged, and in `apex checkpoint list`, which
 * must stay fast (no config, no plugins, no manifest decoded).
 */

/**
 * The session `ref` names, as every command reads it (core's resolveSessionId), among the sessions
 * with a record (current, ended, reconstructed) or with checkpoints.
 */
export function resolveSessionRef(store: Store, ref: string): string {
  return resolveSessionId(store, ref, { also: checkpointSessions(store) });
}

/** Ids of the sessions with checkpoints, a record or not. */
function* checkpointSessions(store: Store): Iterable<string> {
  for (const { sessionId } of Catalog.of(store).counters()) yield sessionId;
}

/** The session checkpoint commands default to: the current one, else the one that ended last. */
export function defaultSession(store: Store): string {
  // The session this command is bound to (the agent's, --session, this worktree's, the only active one), active or ended.
  const bound = boundSessionId(store);
  if (bound !== undefined && (store.has(`/sessions/${bound}`) || store.has(`/sessions/history/${bound}`))) return bound;
  const session = lastSession(store);
  if (!session) {
    throw new ApexError("APEX_E_NO_SESSION", "No session in this project yet.", { hint: 'Start one with `apex start --task "…"`.' });
  }
  return session.session_id;
}

/** The default session, or undefined when the project has none. */
export function defaultSessionIfAny(store: Store): string | undefined {
  try {
    return defaultSession(store);
  } catch {
    return undefined;
  }
}

/** `--session ID` resolved, or the default session. */
export function sessionFor(store: Store, ref: string | undefined): string {
  return ref === undefined ? defaultSession(store) : resolveSessionRef(store, ref);
}
