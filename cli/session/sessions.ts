import type { ProjectLocation } from "../../core/config/locate.js";
import { printJson, printLine, table, visibleText } from "../output.js";
import { liveSessionClient, openSessionClient } from "../../core/session/client.js";
import type { StatusReport } from "../../core/session/status-report.js";
import { isProcessStopped } from "../../core/session/proc.js";
import type { SessionRecord } from "../../core/session/records.js";
import { effectiveStatus } from "../../core/session/sessions.js";
import { shortSessionId } from "../../core/session/names.js";
import { paintStatus } from "./format.js";
import { supervisorHost } from "../../core/session/lease.js";

interface SessionRow {
  session_id: string;
  /** A branch session's name (`apex session branch CHECKPOINT NAME`), else null. */
  name: string | null;
  /** The checkpoint a branch session started from: <session>/<checkpoint-NNN>, else null. */
  parent: string | null;
  status: string;
  /** The host whose supervisor runs (or last ran) the session; null for records older than hosts. */
  host: string | null;
  created_at: string;
  ended_at: string | null;
  initial_task: string | null;
  outcome: string | null;
}

async function readSessions(location: ProjectLocation, which: "all" | "history"): Promise<SessionRow[]> {
  const client = await openSessionClient(location, "read");
  let records: SessionRecord[];
  try {
    records = (await client.call(which === "all" ? "session.list" : "session.history", {}, 30_000)) as SessionRecord[];
  } finally {
    await client.close();
  }
  // A session being stopped is still recorded active (or paused) until the stop is written: its supervisor says it is
  // stopping, as `apex status` shows it (the list said active, and the pause or resume that suggests was refused).
  const stopping = which === "all" && client.via !== "remote" ? await stoppingSessions(location, records) : new Set<string>();
  return records.map((record) => ({
    session_id: record.session_id,
    name: typeof record.name === "string" ? record.name : null,
    parent: parentOf(record),
    // Through `apex serve` the status is the server's, judged on the supervisors' host: this host's
    // name and clock tell nothing of their leases (a client whose clock was ahead saw them interrupted).
    status: client.via === "remote" ? record.status : stopping.has(record.session_id) ? "stopping" : effectiveStatus(record),
    host: supervisorHost(record.supervisor),
    created_at: record.created_at,
    ended_at: record.ended_at ?? null,
    initial_task: record.initial_task,
    outcome: record.outcome ?? null,
  }));
}

/** The sessions among `records` whose supervisor, running here, says it is stopping them (each asked for at most 1 s, together). */
async function stoppingSessions(location: ProjectLocation, records: SessionRecord[]): Promise<Set<string>> {
  const running = records.filter((record) => effectiveStatus(record) === "active" || effectiveStatus(record) === "paused");
  if (running.length === 0) return new Set();
  const stopping = await Promise.all(
    running.map(async (record) => {
      const client = await liveSessionClient(location, { local: true, session: record.session_id }).catch(() => undefined);
      if (!client) return undefined;
      try {
        // One stopped (SIGSTOP) answers nothing: not waited for.
        if (client.supervisor && isProcessStopped(client.supervisor.pid)) return undefined;
        const report = (await client.call("session.status", {}, 1000).catch(() => undefined)) as StatusReport | undefined;
        return report?.session?.session_id === record.session_id && report.session.status === "stopping" ? record.session_id : undefined;
      } finally {
        await client.close();
      }
    }),
  );
  return new Set(stopping.filter((id): id is string => id !== undefined));
}

function parentOf(record: SessionRecord): string | null {
  const parent = record.parent_checkpoint as { session_id?: unknown; name?: unknown } | null | undefined;
  return parent && typeof parent.session_id === "string" && typeof parent.name === "string" ? `${parent.session_id}/${parent.name}` : null;
}

/** When the store has no session: those `apex session archive` moved to the backup directory, if any (" in the store; 1 session … archived in …"). */
async function archivedNote(location: ProjectLocation): Promise<string> {
  const [{ loadConfig }, { backupDirectory }, { archivedIds, archivedText }, { displayPath }] = await Promise.all([
    import("../../core/config/load.js"),
    import("../../plugins/archive/options.js"),
    import("../../plugins/archive/archived.js"),
    import("../../core/config/source.js"),
  ]);
  const directory = backupDirectory(await loadConfig(location).catch(() => undefined), location.projectDir);
  const ids = archivedIds(directory);
  return ids.length === 0 ? " yet" : ` in the store; ${archivedText(ids, displayPath(directory))} (\`apex session unarchive ID\` brings one back)`;
}

export async function listSessions(location: ProjectLocation, json: boolean): Promise<void> {
  const rows = await readSessions(location, "all");
  if (json) {
    printJson(rows);
    return;
  }
  if (rows.length === 0) {
    printLine(`No sessions${await archivedNote(location)}.`);
    return;
  }
  const branched = rows.some((row) => row.name !== null || row.parent !== null);
  if (!branched) {
    printLine(table(["SESSION", "STATUS", "HOST", "STARTED", "TASK"], rows.map((row) => [row.session_id, paintStatus(row.status), row.host ?? "-", row.created_at, visibleText(row.initial_task ?? "-")])));
    return;
  }
  // The session branched from by its name when it has one, else a uuid's first 8 characters; any other
  // id whole (a cut `<uuid>-r1` or `--as` id would read as another session): a reference that resolves.
  const names = new Map(rows.filter((row) => row.name !== null).map((row) => [row.session_id, row.name!]));
  const parentText = (parent: string) => {
    const at = parent.lastIndexOf("/");
    const id = parent.slice(0, at);
    return `${names.get(id) ?? shortSessionId(id)}${parent.slice(at)}`;
  };
  printLine(
    table(
      ["SESSION", "NAME", "STATUS", "HOST", "PARENT", "STARTED", "TASK"],
      rows.map((row) => [row.session_id, row.name ?? "-", paintStatus(row.status), row.host ?? "-", row.parent ? parentText(row.parent) : "-", row.created_at, visibleText(row.initial_task ?? "-")]),
    ),
  );
}

export async function sessionHistory(location: ProjectLocation, json: boolean): Promise<void> {
  const rows = await readSessions(location, "history");
  if (json) {
    printJson(rows);
    return;
  }
  if (rows.length === 0) {
    printLine("No session has ended yet. A session's audit trail, the current one's too: `apex session history <id>` (ids: `apex session list`).");
    return;
  }
  printLine(
    table(
      ["SESSION", "OUTCOME", "STARTED", "ENDED", "WHY"],
      rows.map((row) => [row.session_id, paintStatus(row.status), row.created_at, row.ended_at ?? "-", visibleText(row.outcome ?? "-")]),
    ),
  );
}
