/**
 * The read of `apex status`: the report of the session, from its live supervisor when there is
 * one (a socket round trip is cheaper than loading LMDB here), else from the store opened
 * read-only (status.ts says more). Apart from the printer (status.ts, output.ts), so that the
 * fast path (status-main.ts) sends the question before the printer's modules load, which they do
 * while the supervisor answers.
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { agentSession, sessionFlag } from "../../core/session/binding.js";
import { openSessionClient, type SessionClient } from "../../core/session/client.js";
import type { StatusReport } from "../../core/session/status-report.js";

/** How long a live supervisor gets to answer before status reads the store itself. */
const SUPERVISOR_ANSWER_MS = 1000;

export async function readStatus(location: ProjectLocation): Promise<StatusReport> {
  // A live supervisor answers from the store it holds open, which spares this process loading
  // LMDB (a third of the command's time). If it is slow or gone, the store is read directly.
  const client = await openSessionClient(location, "read", { supervisorFirstMs: SUPERVISOR_ANSWER_MS });
  try {
    // `--session NAME` of a session that does not run (a branch not continued yet, an ended one): that
    // session's report, not "no session is active" (its record is not where the running ones are).
    const flag = agentSession() === undefined ? sessionFlag() : undefined;
    const report = (await client.call("session.status", flag === undefined ? {} : { session: flag }, 30_000)) as StatusReport;
    if (client.via === "remote") checkRemoteReport(report);
    return await withStranded(client, report, flag);
  } finally {
    await client.close();
  }
}

/**
 * A running session's pending tasks assigned to an agent that ended for good (stranded.ts), as
 * `stranded_tasks` (only when there are some).
 */
async function withStranded(client: SessionClient, report: StatusReport, session: string | undefined): Promise<StatusReport> {
  if (report.session?.status !== "active" && report.session?.status !== "paused") return report;
  // Imported here, not with this module: stranded.ts prints too (output.ts), which the fast path loads while the supervisor answers.
  const { pendingTasks, strandedTasks } = await import("./stranded.js");
  const stranded = strandedTasks(await pendingTasks(client, report, session === undefined ? {} : { session }), report);
  return stranded.length === 0 ? report : ({ ...report, stranded_tasks: stranded } as StatusReport);
}

/**
 * A report from another host is checked for what the printer reads before anything is printed:
 * a server that is not this version of APEX gets one line (APEX_E_RPC), not a crash half-way.
 */
function checkRemoteReport(report: unknown): void {
  const r = report as { session?: unknown; agents?: unknown; tasks?: Record<string, unknown>; left_running?: unknown } | null;
  const session = r?.session as { session_id?: unknown; status?: unknown; remote?: unknown } | null | undefined;
  const counts = r?.tasks;
  const readable =
    r !== null &&
    typeof r === "object" &&
    (session === null ||
      session === undefined ||
      (typeof session === "object" &&
        typeof session.session_id === "string" &&
        typeof session.status === "string" &&
        Array.isArray(r.agents) &&
        r.agents.every(readableAgent) &&
        // An interrupted session of this host's store lists what its agents left running.
        (session.status !== "interrupted" || session.remote || (Array.isArray(r.left_running) && r.left_running.every((left) => isRecord(left) && Array.isArray(left.pids)))) &&
        counts !== null &&
        typeof counts === "object" &&
        ["pending", "active", "completed", "failed"].every((key) => typeof counts[key] === "number")));
  if (!readable) {
    throw new ApexError("APEX_E_RPC", "The server's status report is not one this version of APEX can read (a session without its agents or task counts).", {
      hint: "Is it `apex serve`, of the same version of APEX?",
    });
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

const numbers = (value: unknown): boolean => Array.isArray(value) && value.every((item) => typeof item === "number");

/** An agent's row as the printer reads it: its name, its processes and CPU time; the pids stopping or stopped, where there (a server older than them leaves them out). */
function readableAgent(agent: unknown): boolean {
  return (
    isRecord(agent) &&
    typeof agent.name === "string" &&
    numbers(agent.processes) &&
    typeof agent.cpu_seconds === "number" &&
    (agent.stopping === undefined || numbers(agent.stopping)) &&
    (agent.stopped === undefined || numbers(agent.stopped))
  );
}
