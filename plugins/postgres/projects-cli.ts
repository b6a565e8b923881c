/**
 * `apex store projects` and `apex store rename-project FROM TO`: the project ids of the
 * PostgreSQL database the project's store is in, and moving one id's data to another.
 *
 * Why: the project id keys every row (backend.ts), and an id nobody uses any more keeps its
 * data out of reach; an older APEX took a git worktree's own directory name as the id, so
 * sessions started in a worktree went to a project of that name. Listing the ids shows such a
 * project; moving its data to the id the project uses now (while that one holds nothing) brings
 * it back, in one transaction. Never while a supervisor may write it (a live session on this
 * host, or an unexpired lease from another), never over data.
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { printJson, printLine, table } from "../../cli/output.js";
import { ApexError } from "../../core/errors.js";
import { describeStore, resolveStoreSpec, storeIdentity } from "../../core/store/open.js";
import type { StoreSpec } from "../../core/store/port.js";
import { activeSessions, currentSession, historySessions, supervisorAlive } from "../../core/session/sessions.js";
import { liveSupervisors } from "../../core/session/runtime.js";
import { localHost, onOtherHost, supervisorHost } from "../../core/session/lease.js";
import type { SessionRecord } from "../../core/session/records.js";
import { stopCommand } from "../stop-command.js";
import { PostgresBackend, listProjects } from "./backend.js";

export interface ProjectListing {
  project: string;
  revision: number;
  created: string;
  /** The project this directory's store names. */
  current: boolean;
  /** Sessions ended and not. */
  sessions: number;
  /** Sessions not ended, with where their supervisor runs and whether it is alive. */
  active: Array<{ session_id: string; status: string; host: string; running: boolean; lease_expires_at: string | null }>;
}

/** The project's store, which must be on PostgreSQL: the other projects are in its database. */
async function postgresSpec(location: ProjectLocation, command: string): Promise<StoreSpec> {
  const spec = await resolveStoreSpec(location);
  if (spec.backend !== "postgres") {
    throw new ApexError("APEX_E_USAGE", `apex store ${command} works on a PostgreSQL store; this project's store is ${spec.backend} at ${describeStore(spec).location}, which holds this project only.`, {
      hint: "Point the project at the database (store: in apex.config.yaml, or APEX_STORE_URL=postgres://…) and run it again.",
    });
  }
  return spec;
}

function sessionsOf(store: PostgresBackend): { sessions: number; active: ProjectListing["active"] } {
  const active = activeSessions(store);
  const ids = new Set([...active.map((session) => session.session_id), ...historySessions(store).map((session) => session.session_id)]);
  return {
    sessions: ids.size,
    active: active.map((session) => ({
      session_id: session.session_id,
      status: session.status,
      host: supervisorHost(session.supervisor) ?? localHost(),
      running: (session.status === "active" || session.status === "paused") && supervisorAlive(session),
      lease_expires_at: session.supervisor?.lease_expires_at ?? null,
    })),
  };
}

export async function listProjectsCommand(location: ProjectLocation, options: { json?: boolean }): Promise<void> {
  const spec = await postgresSpec(location, "projects");
  const projects: ProjectListing[] = [];
  for (const row of listProjects(spec)) {
    const store = PostgresBackend.open({ ...spec, project: row.project }, { readOnly: true });
    try {
      projects.push({ ...row, current: row.project === spec.project, ...sessionsOf(store) });
    } finally {
      await store.close();
    }
  }
  const database = describeStore(spec).location;
  if (options.json) {
    printJson({ database, current: spec.project, projects });
    return;
  }
  if (projects.length === 0) {
    printLine(`No APEX project in ${database} yet.`);
    return;
  }
  printLine(`Projects in ${database}:`);
  printLine(
    table(
      ["PROJECT", "REVISION", "SESSIONS", "RUNNING", "CREATED"],
      projects.map((project) => [
        `${project.project}${project.current ? " (this)" : ""}`,
        project.revision,
        project.sessions,
        project.active.filter((session) => session.running).map((session) => `${session.session_id.slice(0, 8)} on ${session.host}`).join(", ") || "-",
        project.created,
      ]),
    ),
  );
  if (!projects.some((project) => project.current)) printLine(`This directory's project id, ${JSON.stringify(spec.project)}, holds nothing yet.`);
}

export interface RenameResult {
  database: string;
  from: string;
  to: string;
  revision: number;
  sessions: number;
}

export async function renameProjectCommand(location: ProjectLocation, from: string, to: string, options: { json?: boolean }): Promise<void> {
  const spec = await postgresSpec(location, "rename-project");
  if (from === to) throw new ApexError("APEX_E_USAGE", `The project ids are the same (${JSON.stringify(from)}).`, { hint: "apex store rename-project FROM TO" });
  const problem = idProblem(to);
  if (problem) {
    throw new ApexError("APEX_E_USAGE", `${JSON.stringify(to)} cannot be a project id: ${problem}.`, { hint: "A project id is 1 to 255 characters, without / or control characters (as store.project)." });
  }
  const database = describeStore(spec).location;
  const known = listProjects(spec);
  if (!known.some((row) => row.project === from)) {
    throw new ApexError("APEX_E_NOT_FOUND", `No project ${JSON.stringify(from)} in ${database}.`, {
      hint: known.length > 0 ? `Its projects: ${known.map((row) => JSON.stringify(row.project)).join(", ")} (\`apex store projects\`).` : "The database holds no APEX project yet.",
      details: { project: from, projects: known.map((row) => row.project) },
    });
  }
  // A supervisor of this directory on either id (its runtime file names its store).
  const named = new Map(await Promise.all([from, to].map(async (project) => [await storeIdentity({ ...spec, project }), project] as const)));
  const local = liveSupervisors(location.storeDir).find((runtime) => runtime.store !== undefined && named.has(runtime.store));
  if (local) throw running(local.session_id, local.name, localHost(), local.pid, null, named.get(local.store!)!);

  const store = PostgresBackend.open({ ...spec, project: from });
  let sessions = 0;
  let revision = 0;
  try {
    ({ revision } = store.moveProject(to, () => {
      // Under both projects' locks: no supervisor renews a lease or claims meanwhile.
      const live = [currentSession(store), ...activeSessions(store)].find(
        (session): session is SessionRecord => session !== undefined && (session.status === "active" || session.status === "paused") && supervisorAlive(session),
      );
      if (live) throw running(live.session_id, live.name, supervisorHost(live.supervisor) ?? localHost(), live.supervisor?.pid, onOtherHost(live.supervisor) ? (live.supervisor?.lease_expires_at ?? null) : null, from);
      sessions = sessionsOf(store).sessions;
    }));
  } finally {
    await store.close();
  }
  const result: RenameResult = { database, from, to, revision, sessions };
  if (options.json) {
    printJson(result);
    return;
  }
  printLine(`Moved project ${JSON.stringify(from)} to ${JSON.stringify(to)} in ${database}: revision ${revision}, ${sessions} session${sessions === 1 ? "" : "s"}.`);
  if (to !== spec.project) printLine(`This directory's project is ${JSON.stringify(spec.project)}; to use it here, set store.project: ${JSON.stringify(to)} in apex.config.yaml.`);
}

/** What keeps `id` from being a project id (store.project's rule in the config schema), or undefined. */
function idProblem(id: string): string | undefined {
  if (id.length === 0) return "it is empty";
  if (id.length > 255) return "it is longer than 255 characters";
  if (id.includes("/")) return "it contains /";
  if (/[\u0000-\u001f\u007f]/.test(id)) return "it contains a control character";
  return undefined;
}

function running(sessionId: string, name: unknown, host: string, pid: number | undefined, leaseExpiresAt: string | null, project: string): ApexError {
  const remote = host !== localHost();
  return new ApexError(
    "APEX_E_SESSION_ACTIVE",
    `Session ${sessionId} of project ${JSON.stringify(project)} is running ${remote ? `on host ${host} ` : ""}(supervisor pid ${pid ?? "unknown"}${leaseExpiresAt ? `, lease until ${leaseExpiresAt}` : ""}): its data cannot move under it.`,
    {
      hint: `Stop it${remote ? ` on ${host}` : ""} (${remote ? "`apex stop` there" : stopCommand(sessionId, name)}), or wait for its lease to expire, then run this again. Nothing was changed.`,
      details: { session_id: sessionId, host, pid: pid ?? null, lease_expires_at: leaseExpiresAt },
    },
  );
}
