import { ApexError } from "../errors.js";
import type { Entry, JsonValue } from "../store/store.js";
import { HISTORY_PREFIX } from "./records.js";

/**
 * Session names: a branch session (`apex session branch CHECKPOINT NAME`) carries `name` in its
 * record, unique in the project, and the name is accepted wherever a session id is. Resolution
 * order everywhere: an exact id, then an exact name, then a unique id prefix.
 */

/** Letters, digits, `.`, `_`, `-`; starts with a letter; usable as a git branch `apex/NAME`. */
export const SESSION_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9._-]{0,62}$/;
/** The shape of session and checkpoint ids: a name that fits its start (4+ characters) reads as an id prefix (checkpoint refs ignore case). */
const UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
/** Words that already mean something where a session is named. */
const RESERVED_NAMES = new Set(["last", "current", "latest", "history", "active"]);

/** A session id a user chooses (`session reconstruct --as`): a name's characters, and a digit may start it (`<uuid>-r1`). */
export const SESSION_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * The one check of a session name or id a user gives (`session branch NAME`, `session reconstruct
 * --as ID`, and their methods): no space, control character or '/' gets into a key, a branch or a
 * file name. An id may look like a uuid (it is one); a name may not (it would read as an id).
 */
export function checkSessionName(name: string, kind: "name" | "id" = "name"): string {
  const problem =
    typeof name !== "string" || !(kind === "id" ? SESSION_ID_PATTERN : SESSION_NAME_PATTERN).test(name)
      ? kind === "id" ? "use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or a digit" : "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter"
      : RESERVED_NAMES.has(name.toLowerCase())
        ? `'${name}' already means something where a session is named`
        : /\.\.|\.lock$|\.$/.test(name)
          ? "it cannot contain '..' or end with '.' or '.lock' (it names a git branch too)"
          : /^checkpoint-\d+$/.test(name)
            ? "it would read as a checkpoint name"
            : kind === "name" && name.length >= 4 && [...name].every((char, at) => (UUID_SHAPE[at] === "-" ? char === "-" : UUID_SHAPE[at] !== undefined && /[0-9a-f]/i.test(char)))
              ? "it would read as the start of a session or checkpoint id (a uuid), so a command could act on another session"
              : undefined;
  if (problem) throw new ApexError("APEX_E_USAGE", `Invalid session ${kind} ${JSON.stringify(name)}: ${problem}.`);
  return name;
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

/** The id of the session named `name`, if one is. */
export function sessionIdByName(store: Queryable, name: string): string | undefined {
  if (!SESSION_NAME_PATTERN.test(name)) return undefined;
  try {
    return sessionNames(store).get(name);
  } catch {
    return undefined; // an unreadable record names nothing; validate reports it
  }
}
