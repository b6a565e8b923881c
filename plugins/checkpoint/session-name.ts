import { ApexError } from "../../core/errors.js";
import { SESSION_NAME_PATTERN, sessionNames, shortSessionId } from "../../core/session/names.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { isRecord, RESERVED_SESSION_NAMES } from "./manifest.js";

/** The shape of session and checkpoint ids: a name that fits its start (4+ characters) reads as an id prefix (checkpoint refs ignore case). */
const UUID_SHAPE = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
/** Words that already mean something where a session is named: the keyspace's own records under /sessions, and `last`, `latest`. */
const RESERVED_NAMES = new Set([...RESERVED_SESSION_NAMES, "last", "latest"]);

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
          : /^checkpoint-\d+$/i.test(name)
            ? "it would read as a checkpoint name"
            : kind === "name" && name.length >= 4 && [...name].every((char, at) => (UUID_SHAPE[at] === "-" ? char === "-" : UUID_SHAPE[at] !== undefined && /[0-9a-f]/i.test(char)))
              ? "it would read as the start of a session or checkpoint id (a uuid), so a command could act on another session"
              : undefined;
  if (problem) throw new ApexError("APEX_E_USAGE", `Invalid session ${kind} ${JSON.stringify(name)}: ${problem}.`);
  return name;
}

/**
 * The session that already has `name`, or a name that differs from it only in case: taken, as a
 * second would be the same git branch (apex/NAME) and worktree directory on a file system that
 * ignores case (macOS, Windows), and a reference's case is not what a user keeps in mind.
 */
export function sessionNamedAlike(store: Pick<Store, "query" | "get">, name: string): { name: string; sessionId: string } | undefined {
  const names = sessionNames(store);
  const exact = names.get(name);
  if (exact !== undefined) return { name, sessionId: exact };
  const folded = name.toLowerCase();
  for (const [other, sessionId] of names) if (other.toLowerCase() === folded) return { name: other, sessionId };
  return undefined;
}

/** A session's record, live or in the history; undefined when there is none (or it does not decode). */
export function sessionRecord(store: Store, sessionId: string): Record<string, JsonValue> | undefined {
  for (const path of [`/sessions/${sessionId}`, `/sessions/history/${sessionId}`]) {
    try {
      const value = store.get(path);
      if (isRecord(value)) return value as Record<string, JsonValue>;
    } catch {
      // an undecodable record: no edge from it
    }
  }
  return undefined;
}

/** A branch session's name; null for an unnamed session or one without a record. */
export function sessionName(store: Store, id: string): string | null {
  const name = sessionRecord(store, id)?.name;
  return typeof name === "string" ? name : null;
}

/** How a session is printed for people: its name, else its short id. */
export function sessionLabel(store: Store, id: string): string {
  return sessionName(store, id) ?? shortSessionId(id);
}
