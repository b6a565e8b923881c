import { ApexError } from "../errors.js";
import type { Entry, JsonValue } from "../store/store.js";
import { HISTORY_PREFIX } from "./records.js";

/**
 * Session names: a branch session (`apex session branch CHECKPOINT NAME`) carries `name` in its
 * record, unique in the project, and the name is accepted wherever a session id is. Resolution
 * order everywhere: an exact id, then an exact name, then a unique id prefix. The check of a name
 * a user gives is plugins/checkpoint/session-name.ts (branches and reconstructions are made there).
 */

/** Letters, digits, `.`, `_`, `-`; starts with a letter; usable as a git branch `apex/NAME`. */
export const SESSION_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;
/** A session id APEX made (a uuid); `reconstruct --as` and `<uuid>-r1` ids are not. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A session id as printed in short: a uuid's first 8 characters (a prefix `--session` takes), any other id whole (cut, it would read as another session). */
export function shortSessionId(id: string): string {
  return UUID_PATTERN.test(id) ? id.slice(0, 8) : id;
}

interface Queryable {
  query(glob: string): Iterable<Entry>;
  get(path: string): JsonValue | undefined;
}

/** Every session record (current, ended, branched) with a name: name -> session id. */
export function sessionNames(store: Queryable): Map<string, string> {
  const names = new Map<string, string>();
  const add = (value: JsonValue | undefined) => {
    const record = value as { session_id?: unknown; name?: unknown } | undefined;
    if (record && typeof record === "object" && typeof record.name === "string" && typeof record.session_id === "string") names.set(record.name, record.session_id);
  };
  for (const { value } of store.query(`${HISTORY_PREFIX}/*`)) add(value);
  // A session's record is at /sessions/<sid> only while it is current (making way moves the one in
  // the way to the history): one record to read, not a scan of every session's keys.
  const current = store.get("/sessions/current") as { session_id?: unknown } | undefined;
  if (typeof current?.session_id === "string") add(store.get(`/sessions/${current.session_id}`));
  // Sessions running in their own worktrees, side by side with the current one (records.ts: /sessions/active).
  const active = store.get("/sessions/active");
  if (active && typeof active === "object" && !Array.isArray(active)) for (const id of Object.keys(active)) add(store.get(`/sessions/${id}`));
  return names;
}

/** The id of the session named `name`, if one is (read as idOfName reads it). */
export function sessionIdByName(store: Queryable, name: string): string | undefined {
  if (!SESSION_NAME_PATTERN.test(name)) return undefined;
  const names = (() => { try { return sessionNames(store); } catch { return undefined; } })(); // an unreadable record names nothing; validate reports it
  return names && idOfName(names, name);
}

/**
 * The id of the session `text` names among `named` ([name, id]): its name in any case, as checkpoint names and ids are
 * read (a new name differing only in case is refused). An older store's two names differing only in case: the exact one,
 * else APEX_E_AMBIGUOUS naming both.
 */
export function idOfName(named: Iterable<readonly [unknown, string]>, text: string): string | undefined {
  const alike = [...named].filter(([name]) => typeof name === "string" && name.toLowerCase() === text.toLowerCase());
  const found = alike.find(([name]) => name === text) ?? (alike.length === 1 ? alike[0] : undefined);
  if (found || alike.length === 0) return found?.[1];
  const list = alike.map(([name, id]) => `${String(name)} (${id})`).join(", ");
  throw new ApexError("APEX_E_AMBIGUOUS", `${JSON.stringify(text)} matches the names of ${alike.length} sessions, in other cases: ${list}.`, { hint: "Give the name in its exact case, or the session id (`apex session list`).", details: { candidates: alike.map(([, id]) => id) } });
}
