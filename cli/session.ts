import type { Command } from "commander";
import { sessionArgument } from "./session-arguments.js";
import type { ProjectLocation } from "../core/config/locate.js";
import type { SessionEvent, SessionRecord } from "../core/session/records.js";
import type { MemoryReader } from "./memory-actions.js";
import { projectOf } from "./context.js";
import { examples } from "./output.js";

/** `apex session …`: the project's sessions. Other groups may add subcommands to `session`. */
export function registerSessionCommands(program: Command): void {
  const session =
    program.commands.find((command) => command.name() === "session") ??
    program
      .command("session")
      .description("the project's sessions: list, history, validate, repair, reconstruct, and what plugins add (cleanup, report, archive, …)")
      .addHelpText("after", examples("apex session list", "apex session history last", "apex session validate", "apex session report --format md -o report.md"));

  session
    .command("list")
    .description("every session of the project with its status (the current one first)")
    .option("--json", "print [{session_id, name, parent, status, host, created_at, ended_at, initial_task, outcome}] (name and parent: a branch session's; host: where its supervisor runs or last ran)")
    .addHelpText("after", examples("apex session list", "apex session list --json"))
    .action(async (options: { json?: boolean }, command: Command) => {
      const { listSessions } = await import("./session/sessions.js");
      await listSessions(projectOf(command), Boolean(options.json));
    });

  session
    .command("history")
    .description(
      "ended sessions with their outcome (completed, failed, stopped) and why; with an ID (or --session, or through --remote: that session), that session's audit trail: " +
        "lifecycle changes, task changes, checkpoints, restores, retention deletions and git syncs, with time and actor",
    )
    .addArgument(sessionArgument("[id]", "a session: its id, a unique prefix of 4 or more characters, a branch's name, `current` or `last`"))
    .option("--json", "print [{session_id, name, status, created_at, ended_at, initial_task, outcome, …}] (with an ID, or --session, or through --remote: {session_id, name, status, events: [{seq, at, type, actor, …}]})")
    .addHelpText("after", "\nExamples:\n  apex session history\n  apex session history 3f2a\n  apex session history last --json")
    .action(async (id: string | undefined, options: { json?: boolean }, command: Command) => {
      // `apex session history --session S` is S's trail, as `apex session history S`: not the list of ended sessions, the flag unread.
      // So is `apex --remote HOST/S session history`: the remote session is the one bound (it printed `[]`, the grant's ended ancestors).
      id ??= (await import("../core/session/binding.js")).sessionFlag() ?? (process.env.APEX_REMOTE ? "current" : undefined);
      if (id === undefined) {
        const { sessionHistory } = await import("./session/sessions.js");
        await sessionHistory(projectOf(command), Boolean(options.json));
        return;
      }
      // `last` and `current`: the session this command is bound to (inside an agent, its own; in a branch's worktree, the branch).
      const ref = (await (await import("./session-ref.js")).boundSessionRef(id))!;
      await showAuditTrail(projectOf(command), ref, Boolean(options.json));
    });
}

/** A session found by {@link locateSession}. */
export interface LocatedSession {
  sessionId: string;
  record: SessionRecord;
  /** Its status as shown (effectiveStatus); through `apex serve`, as the server judged it (`MemoryReader.judged`). */
  status: string;
}

/**
 * The session `ref` names: its id, a unique prefix (4 characters or more), "current" or
 * "last" (the current session, else the one that ended last); no ref means "last". Reads
 * through `reader`, so it works on the store and, inside an agent, over the supervisor's socket.
 */
export async function locateSession(reader: MemoryReader, ref: string | undefined): Promise<LocatedSession> {
  const located = await locateRecord(reader, ref);
  const { effectiveStatus } = await import("../core/session/sessions.js");
  // Memory reads give the record as stored; its lease (a row of the leases table, never in the
  // record) comes with the session readers' records, and decides whether a session live on
  // another host runs or was interrupted.
  if (!located.record.supervisor || !reader.sessions) return { ...located, status: effectiveStatus(located.record) };
  const withLease = (await reader.sessions()).find((record) => record.session_id === located.sessionId);
  const expiry = withLease?.supervisor?.lease_expires_at;
  // The whole lease: its expiry, and its clock's offset from this host's (lease.ts withLease).
  const record = expiry === undefined ? located.record : { ...located.record, supervisor: { ...located.record.supervisor, ...withLease!.supervisor, lease_expires_at: expiry } };
  // Through `apex serve`, the server's verdict: this host's name and clock say nothing of the supervisors' leases.
  return { ...located, record, status: reader.judged && withLease ? withLease.status : effectiveStatus(record) };
}

async function locateRecord(reader: MemoryReader, ref: string | undefined): Promise<Omit<LocatedSession, "status">> {
  const { ApexError } = await import("../core/errors.js");
  const { CURRENT_SESSION_PATH, HISTORY_PREFIX, sessionPath } = await import("../core/session/records.js");
  const { hasRun, pickSession } = await import("../core/session/sessions.js");
  const { idOfName } = await import("../core/session/names.js");
  const pointer = (await reader.get(CURRENT_SESSION_PATH)) as { session_id?: unknown } | undefined;
  const currentId = typeof pointer?.session_id === "string" ? pointer.session_id : undefined;
  const sessions = new Map<string, SessionRecord>();
  for (const { value } of await reader.query(`${HISTORY_PREFIX}/*`)) addSession(sessions, value);
  // Records at /sessions/<sid>: the current session, or one interrupted before it was continued.
  for (const { path, value } of await reader.query("/sessions/*")) if (path !== CURRENT_SESSION_PATH) addSession(sessions, value);
  const current = currentId === undefined ? undefined : ((await reader.get(sessionPath(currentId))) as SessionRecord | undefined);
  const found = (record: SessionRecord | undefined): Omit<LocatedSession, "status"> | undefined => record && { sessionId: record.session_id, record };

  if (ref === undefined || ref === "last" || ref === "current") {
    const ended = [...sessions.values()].filter((record) => record.ended_at).sort((a, b) => ((a.ended_at ?? "") < (b.ended_at ?? "") ? 1 : -1));
    // As lastSession takes it: a branch not continued since it was made only when no other session ended.
    const located = found(current) ?? (ref === "current" ? undefined : found(ended.find((record) => !record.parent_checkpoint || hasRun(record)) ?? ended[0]));
    if (located) return located;
    throw new ApexError("APEX_E_NO_SESSION", ref === "current" ? "No session is current in this project." : "This project has no session yet.", {
      hint: ref === "current" ? "`last` names the one that ended last; `apex session list` shows them all." : 'Start one: apex start --task "…"',
    });
  }
  // A whole id whose record is damaged (no session_id: not in the map) is still that session, its
  // report saying unknown for what the record lacks; the bound session arrives here as its id.
  if (!sessions.has(ref)) {
    const read = async (path: () => string): Promise<unknown> => {
      try {
        return await reader.get(path());
      } catch {
        return undefined; // not a path segment: no such session, which pickSession says below
      }
    };
    const direct = (await read(() => sessionPath(ref))) ?? (await read(() => `${HISTORY_PREFIX}/${ref}`));
    if (direct && typeof direct === "object" && !Array.isArray(direct)) return { sessionId: ref, record: direct as SessionRecord };
  }
  // An id, a branch's name, a unique prefix: as every command reads them (core's pickSession).
  const id = pickSession(ref, sessions.keys(), () => idOfName([...sessions.values()].map((record) => [record.name, record.session_id]), ref));
  return { sessionId: id, record: sessions.get(id)! };
}

function addSession(sessions: Map<string, SessionRecord>, value: unknown): void {
  const record = value as SessionRecord | null;
  if (record && typeof record === "object" && typeof record.session_id === "string") sessions.set(record.session_id, record);
}

/** The session's audit trail, oldest first (/sessions/<sid>/events/<8-digit seq> sorts by seq). */
export async function readAuditTrail(reader: MemoryReader, sessionId: string): Promise<SessionEvent[]> {
  const { eventsPrefix } = await import("../core/session/records.js");
  // A record that is no object (null or a string written by hand with --force) is no event: `session history` and
  // `session report` failed on a null one ("Cannot read properties of null") and showed a string's characters as fields.
  return (await reader.query(`${eventsPrefix(sessionId)}/*`)).flatMap((entry) => (entry.value !== null && typeof entry.value === "object" && !Array.isArray(entry.value) ? [entry.value as unknown as SessionEvent] : []));
}

/** Opens the store (or, inside an agent, the supervisor's socket) for reading; a project without a store has no session. */
export async function openSessionReader(location: ProjectLocation): Promise<MemoryReader> {
  const [{ readerOver }, { openSessionClient }] = await Promise.all([import("./memory-actions.js"), import("../core/session/client.js")]);
  // Session records are the same for every session: no binding to decide (and none to be ambiguous about).
  const client = await openSessionClient(location, "read", { records: true });
  if (client.empty) {
    await client.close();
    const { ApexError } = await import("../core/errors.js");
    throw new ApexError("APEX_E_NO_SESSION", "This project has no session yet.", { hint: 'Start one: apex start --task "…"' });
  }
  return readerOver(client);
}

/** `apex session history <id>`: one line per event, with its time and actor. */
async function showAuditTrail(location: ProjectLocation, ref: string, json: boolean): Promise<void> {
  const reader = await openSessionReader(location);
  try {
    const { sessionId, record, status } = await locateSession(reader, ref);
    const events = await readAuditTrail(reader, sessionId);
    const { known, paint, printJson, printLine } = await import("./output.js");
    if (json) {
      // The name too, which the text's heading shows (a branch's; null for others), as session list and report give it.
      printJson({ session_id: sessionId, name: typeof record.name === "string" ? record.name : null, status, events });
      return;
    }
    const [{ formatEvent, paintStatus }, { shortSessionId }, { visibleText }] = await Promise.all([import("./session/format.js"), import("../core/session/names.js"), import("./terminal-text.js")]);
    // The session as session list prints it, by name or short id (--json has the whole id).
    const name = typeof record.name === "string" && record.name ? visibleText(record.name) : shortSessionId(sessionId);
    // Its times are the events' own, in UTC, whatever the machine's zone: said, as session cleanup says it.
    printLine(`Session ${name} (${paintStatus(status)}): ${events.length} event${events.length === 1 ? "" : "s"}${events.length > 0 ? ", times in UTC" : ""}`);
    const width = String(events.at(-1)?.seq ?? 0).length;
    for (const event of events) {
      printLine(`${String(event.seq ?? "?").padStart(width)}  ${typeof event.at === "string" ? event.at.slice(0, 10) : "----------"} ${formatEvent(event)}  ${paint(`[${known(event.actor)}]`, "gray")}`);
    }
  } finally {
    await reader.close();
  }
}
