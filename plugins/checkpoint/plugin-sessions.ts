import { ApexError } from "../../core/errors.js";
import { sessionIdByName } from "../../core/session/names.js";
import { boundSessionId, lastSession, readableSessionId } from "../../core/session/sessions.js";
import type { Store } from "../../core/store/store.js";
import { Catalog } from "./catalog.js";
import { RESERVED_SESSION_NAMES } from "./manifest.js";

/**
 * Finding the session a checkpoint command is about, from keys and small records only: these
 * run before validation, on stores that may be damaged, and in `apex checkpoint list`, which
 * must stay fast (no config, no plugins, no manifest decoded).
 */

const MIN_PREFIX = 4;
const MAX_PREFIX = 64;

/**
 * The session `ref` names: an id, or a unique prefix of one (4+ characters), among the
 * sessions with a record (current, ended, reconstructed) or with checkpoints.
 */
export function resolveSessionRef(store: Store, ref: string): string {
  const text = ref.trim();
  if (!text || text.includes("/")) throw new ApexError("APEX_E_USAGE", `${JSON.stringify(ref)} is not a session id.`, { hint: "See `apex session list`." });
  // `current` as in `session share current`: the session this command is bound to. Never the
  // pointer record /sessions/current read as a session of that id.
  if (text === "current") return currentSession(store);
  if (text === "last") return readableSessionId(store); // the one this command acts on, else the one that ended last
  if (knownSession(store, text)) return text;
  const named = sessionIdByName(store, text);
  if (named) return named;
  // Longer than any id cannot be the start of one (and would be a key too long for the store).
  if (text.length >= MIN_PREFIX && text.length <= MAX_PREFIX) {
    const found = new Set<string>();
    for (const base of ["/sessions/", "/sessions/history/"]) {
      for (const key of store.keys({ start: `${base}${text}`, end: `${base}${text}\u{10ffff}` })) {
        const id = String(key).slice(base.length).split("/")[0]!;
        if (!RESERVED_SESSION_NAMES.has(id)) found.add(id);
        if (found.size > 10) break;
      }
    }
    for (const { sessionId } of Catalog.of(store).counters()) if (sessionId.startsWith(text)) found.add(sessionId);
    const matches = [...found].filter((id) => id.startsWith(text));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) {
      throw new ApexError("APEX_E_AMBIGUOUS", `${JSON.stringify(text)} matches ${matches.length} sessions: ${matches.slice(0, 5).join(", ")}${matches.length > 5 ? ", …" : ""}.`, {
        hint: "Give more characters of the session id.",
      });
    }
  }
  throw new ApexError("APEX_E_NO_SESSION", `No session ${JSON.stringify(text)} in this project.`, {
    hint: text.length < MIN_PREFIX ? `Give its name, or ${MIN_PREFIX} or more characters of its id (see \`apex session list\`).` : "See `apex session list`.",
  });
}

function currentSession(store: Store): string {
  const bound = boundSessionId(store);
  if (bound !== undefined && store.has(`/sessions/${bound}`)) return bound;
  throw new ApexError("APEX_E_NO_SESSION", "No session is current in this project.", { hint: "Name a session by id or name (`apex session list`)." });
}

function knownSession(store: Store, id: string): boolean {
  if (RESERVED_SESSION_NAMES.has(id)) return false; // records of the keyspace (/sessions/current, /sessions/active, …), not sessions
  try {
    return store.has(`/sessions/${id}`) || store.has(`/sessions/history/${id}`) || Catalog.of(store).lastSequence(id) > 0;
  } catch {
    return false; // not a valid path segment
  }
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
