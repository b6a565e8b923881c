/**
 * The keyspace paths APEX itself owns, and the one rule that keeps hand-made memory writes off
 * them. `apex memory set|delete|import` (directly, through an agent's supervisor, through
 * `apex serve`) write memory; a hand-typed `memory set /sessions/current '"x"'` or
 * `memory delete /sessions --recursive` would instead break every later command. Core's
 * session methods (through the registry, plugins/index.ts), the CLI and the sharing plugin's
 * server all ask this module, so there is one list.
 *
 * ```
 * /projects/config                         the project's id (core: written by `apex start`)
 * /sessions                                every session's records (core and the plugins below),
 *   except, under /sessions/<sid>/:
 *   metrics-input/**                       numbers agents report (metrics plugin reads them)
 *   memory/**                              the working memory of a session in a git worktree
 * ```
 */
import { ApexError } from "../core/errors.js";
import { isWithin } from "../core/store/paths.js";

export const SESSIONS_ROOT = "/sessions";

/**
 * Records of the project as a whole, not of one session: `/sessions/current` names (and copies)
 * whichever session runs in the project's tree now, `/sessions/active` every session running,
 * `/projects/config` the project's id.
 */
export const PROJECT_RECORDS: Readonly<Record<string, string>> = Object.freeze({
  "/projects/config": "the project's id record (apex start)",
  "/sessions/current": "the record of the session active in this working tree (apex start, apex stop)",
  "/sessions/active": "the list of the sessions not ended (apex start, apex stop)",
});

/**
 * Areas under /sessions/<sid>/ that agents and users write: numbers for the metrics plugin
 * (`apex memory set /sessions/$APEX_SESSION_ID/metrics-input/issues_found 3`) and a worktree
 * session's working memory (memory-view.ts). Everything else under /sessions is APEX's.
 */
export const WRITABLE_SESSION_AREAS: ReadonlySet<string> = new Set(["metrics-input", "memory"]);

/** Who writes each child of /sessions/<sid>/, by its first segment. */
const SESSION_CHILDREN: Readonly<Record<string, string>> = {
  agents: "agent records (the session's supervisor, apex agent report)",
  tasks: "tasks (apex task …)",
  "task-counts": "task counts (apex task …)",
  counters: "id sequences of tasks, milestones and events",
  milestones: "milestones (apex milestone)",
  events: "audit trail",
  grants: "share grants (sharing plugin: apex session share)",
  metrics: "metrics (metrics plugin)",
  git: "git state (git plugin: apex session sync-git)",
  langgraph: "LangGraph threads (checkpoint plugin)",
  "langgraph-heads": "LangGraph thread heads (checkpoint plugin)",
};

/** A path APEX owns, and what owns it (a phrase: "session 3f2a…'s tasks (apex task …)"). */
export interface OwnedPath {
  path: string;
  owner: string;
}

/**
 * What owns `path`, or undefined when it is memory anyone may write. With `recursive` (a
 * delete of the subtree), a path above an owned record is owned too (`/projects` holds
 * `/projects/config`). Paths are memory paths as a command names them: /projects/config is
 * refused even in a worktree session, whose memory a merge takes back to the project.
 */
export function ownerOf(path: string, recursive = false): string | undefined {
  const project = PROJECT_RECORDS[path];
  if (project !== undefined) return project;
  if (recursive && path !== "/projects/config" && isWithin("/projects/config", path)) return `the subtree holding /projects/config, ${PROJECT_RECORDS["/projects/config"]}`;
  if (!isWithin(path, SESSIONS_ROOT)) return undefined;
  const [, , sid, child] = path.split("/");
  if (sid === undefined) return "the sessions' records (apex start, and every session command)";
  if (sid === "current") return `${PROJECT_RECORDS["/sessions/current"]} and its metrics`;
  if (sid === "history") return "the records of ended sessions (apex stop)";
  if (child === undefined) return `session ${sid}'s record (its status, task and history)`;
  if (WRITABLE_SESSION_AREAS.has(child)) return undefined;
  if (child.startsWith("checkpoint-")) return `session ${sid}'s checkpoint manifests (checkpoint plugin: apex checkpoint …)`;
  return `session ${sid}'s ${SESSION_CHILDREN[child] ?? "records"}`;
}

/** The paths of a write that APEX owns, each with its owner. */
export function ownedPaths(paths: readonly string[], recursive = false): OwnedPath[] {
  const owned: OwnedPath[] = [];
  for (const path of paths) {
    const owner = ownerOf(path, recursive);
    if (owner !== undefined) owned.push({ path, owner });
  }
  return owned;
}

/**
 * Refuses (APEX_E_RESERVED_PATH, exit 4) a memory write that reaches a path APEX owns, before
 * anything is written, unless `force` (an operator's repair: `--force`); returns the owned
 * paths written anyway then. `command` names the write for people: "memory set".
 */
export function checkOwnedWrite(command: string, paths: readonly string[], options: { recursive?: boolean; force?: boolean; value?: unknown; values?: readonly unknown[] } = {}): OwnedPath[] {
  if (command === "memory set" && options.value !== undefined) checkValueSize(paths[0] ?? "", options.value);
  const owned = ownedPaths(paths, options.recursive === true);
  if (owned.length > 0 && options.force === true) paths.forEach((path, index) => checkCountRecord(command, path, command === "memory set" ? options.value : options.values?.[index]));
  if (owned.length === 0 || options.force === true) return owned;
  const [first] = owned;
  const more = owned.length > 1 ? ` (and ${owned.length - 1} more of APEX's paths)` : "";
  throw new ApexError("APEX_E_RESERVED_PATH", `${command} of ${first!.path}${more} refused: it is ${first!.owner}, which APEX owns, not memory. Nothing was written.`, {
    hint: `${HINTS[command] ?? HINTS["memory set"]} To repair APEX's records by hand anyway, add --force.`,
  });
}

/** The fields of the records APEX counts with: /sessions/<sid>/counters and /sessions/<sid>/task-counts. */
const COUNT_FIELDS: Readonly<Record<string, readonly string[]>> = { counters: ["tasks", "milestones", "events"], "task-counts": ["pending", "active", "completed", "failed", "total"] };

/**
 * A forced write of a session's id sequences (`counters`) or task counts that APEX could not count on: deleted, or not
 * an object of whole numbers. With its counters gone (null, {}, deleted) the next task was numbered t-0001 and replaced
 * the task that had that id, held by an agent or not, and the next event replaced the first of the audit trail; task
 * counts that are not numbers made every task change fail (NaN), and deleted ones were counted from nothing. Refused
 * even with --force (APEX_E_BAD_INPUT, exit 2), nothing written; a value of the record's shape is written as asked.
 */
function checkCountRecord(command: string, path: string, value: unknown): void {
  const [, root, sid, child, ...deeper] = path.split("/");
  const fields = child === undefined ? undefined : COUNT_FIELDS[child];
  if (root !== "sessions" || sid === undefined || fields === undefined || deeper.length > 0 || ["current", "history"].includes(sid)) return;
  const what = child === "counters" ? "the id sequences APEX numbers its tasks, milestones and events by (a new task would take an existing task's id and replace it)" : "the task counts APEX updates with every task change";
  const fix = `A repair writes an object of whole numbers ≥ 0: {${fields.map((field) => `"${field}": N`).join(", ")}}${child === "counters" ? ", each at least the highest id of its kind the session has" : ""}.`;
  if (command === "memory delete") {
    throw new ApexError("APEX_E_BAD_INPUT", `memory delete of ${path} refused, even with --force: it holds ${what}. Nothing was written.`, { hint: fix, details: { path } });
  }
  if (value === undefined) return;
  const object = value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  const bad = object ? fields.filter((field) => !(Number.isSafeInteger(object[field]) && (object[field] as number) >= 0)) : [];
  if (object && bad.length === 0) return;
  const shape = object ? `has ${bad.map((field) => `"${field}"`).join(", ")} missing or not a whole number ≥ 0` : `is ${describeValue(value)}, not an object`;
  throw new ApexError("APEX_E_BAD_INPUT", `${command} of ${path} refused, even with --force: the value ${shape}, and the record holds ${what}. Nothing was written.`, { hint: fix, details: { path } });
}

/** A value that is no object, as a message names it: null, an array, a string. */
export function describeValue(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "an array" : `a ${typeof value}`;
}

const HINTS: Record<string, string> = {
  "memory set": "Write memory elsewhere (e.g. /notes/…); agents report numbers under /sessions/<id>/metrics-input/.",
  "memory delete": "APEX's commands remove its records (apex stop, apex checkpoint delete, apex session archive, apex session unshare).",
  "memory import": "An export of the whole memory holds APEX's records: export the memory you mean (apex memory export '/notes/**') and import that.",
};

/** The warning a forced write prints on stderr. */
export function forcedWarning(command: string, owned: readonly OwnedPath[]): string {
  const [first] = owned;
  const more = owned.length > 1 ? ` and ${owned.length - 1} more of APEX's paths` : "";
  return `${command} --force writes ${first!.path} (${first!.owner})${more}, which APEX owns; a record it cannot read can break later commands.`;
}

/**
 * The largest memory value: 256 MiB of JSON, counted as the UTF-8 bytes of its compact JSON text
 * (what is sent and stored), whether written directly, through a session's supervisor or
 * through `apex serve`. The supervisor's socket took up to a read's chunk (~64 KiB) more, and
 * with no session running there was no limit; a value of 256 MiB and 20 KB was kept one way
 * and would be refused the other.
 */
export const MAX_VALUE_BYTES = 256 * 1024 * 1024;

/** Refuses (APEX_E_TOO_LARGE, exit 2) a memory value larger than MAX_VALUE_BYTES, naming its size and the limit. */
export function checkValueSize(path: string, value: unknown): void {
  let bytes: number | undefined;
  try {
    const text = JSON.stringify(value);
    if (text === undefined || text.length * 3 <= MAX_VALUE_BYTES) return; // not JSON (the store says so), or small whatever its characters
    bytes = Buffer.byteLength(text);
    if (bytes <= MAX_VALUE_BYTES) return;
  } catch (error) {
    if (!(error instanceof RangeError) || !/string length/i.test(error.message)) return; // too deep: the store says so
  }
  const size = bytes === undefined ? "longer than a string can be" : `${bytes} bytes of JSON`;
  throw new ApexError("APEX_E_TOO_LARGE", `The value for ${path} is ${size}; a memory value may be at most ${MAX_VALUE_BYTES} bytes (256 MiB) of JSON. Nothing was written.`, {
    hint: "Split it across several paths (/big/part-1, /big/part-2, …).",
    details: { path, ...(bytes === undefined ? {} : { bytes }), limit_bytes: MAX_VALUE_BYTES },
  });
}
