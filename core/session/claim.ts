import { ApexError } from "../errors.js";
import type { AgentConfig, Config } from "../config/types.js";
import type { JsonValue, Store } from "../store/store.js";
import {
  CURRENT_SESSION_PATH,
  PROJECT_CONFIG_PATH,
  activeEntryOf,
  agentPath,
  currentSessionOf,
  historyPath,
  nowIso,
  readActiveSessions,
  sessionPath,
  setActiveSession,
  worktreeOf,
  type AgentRecord,
  type SessionRecord,
} from "./records.js";
import { samePath } from "./binding.js";
import { appendEvent } from "./service.js";
import { effectiveStatus, findSession, isEnded, supervisorAlive, type ContinueTarget } from "./sessions.js";
import type { SupervisorRequest } from "./supervisor.js";

/**
 * Claiming a session for a supervisor: one write transaction decides, so two `apex start`
 * racing each other cannot both get the project, and the loser leaves nothing behind.
 */
export interface Claim {
  sessionId: string;
  continued: boolean;
  checkpoint: string | undefined;
  previousAgents: AgentRecord[];
}

export type SupervisorIdentity = { pid: number; start_time: number; socket: string; started_at: string; nonce: string | null };

/** A new session, in the project's own working tree: refused while another one is active there. One transaction decides. */
export async function claimNewSession(store: Store, config: Config, request: SupervisorRequest, self: SupervisorIdentity): Promise<Claim> {
  const { v4: uuidv4 } = await import("uuid");
  const sessionId = uuidv4();
  const at = nowIso();
  await store.batch((batch) => {
    refuseIfBound(batch, null, undefined);
    const stored = batch.get(PROJECT_CONFIG_PATH) as Record<string, JsonValue> | undefined;
    let projectId = typeof stored?.project_id === "string" ? stored.project_id : undefined;
    if (!projectId) {
      projectId = uuidv4();
      batch.set(PROJECT_CONFIG_PATH, { ...(stored ?? {}), project_id: projectId, created_at: at });
    }
    const names = Object.keys(config.agents);
    const session: SessionRecord = {
      session_id: sessionId,
      project_id: projectId,
      created_at: at,
      updated_at: at,
      status: "active",
      initial_task: request.task ?? null,
      agents: names,
      supervisor: self,
      history: [{ event: "started", at }],
      outcome: null,
      ended_at: null,
      restored_from: null,
    };
    batch.set(sessionPath(sessionId), session);
    batch.set(CURRENT_SESSION_PATH, currentSessionOf(session));
    setActiveSession(batch, sessionId, activeEntryOf(session));
    for (const name of names) batch.set(agentPath(sessionId, name), emptyAgentRecord(name, config.agents[name]!));
    appendEvent(batch, sessionId, "session.started", "supervisor", { initial_task: request.task ?? null, agents: names });
  }, "supervisor");
  return { sessionId, continued: false, checkpoint: undefined, previousAgents: [] };
}

/** Continues a session: the current one if it is interrupted, or an ended one brought back. */
export async function claimContinuedSession(store: Store, config: Config, target: ContinueTarget, self: SupervisorIdentity): Promise<Claim> {
  let previousAgents: AgentRecord[] = [];
  await store.batch((batch) => {
    const record = findSession(batch, target.sessionId);
    if (!record) throw new ApexError("APEX_E_NO_SESSION", `The session ${target.sessionId} does not exist.`);
    if (supervisorAlive(record) && record.supervisor?.pid !== self.pid && !isEnded(record)) {
      throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${target.sessionId} is running (supervisor pid ${record.supervisor!.pid}); there is nothing to continue.`, {
        hint: "See it with `apex status`; `apex stop` ends it.",
      });
    }
    refuseIfBound(batch, worktreeOf(record), target.sessionId);
    const at = nowIso();
    const from = effectiveStatus(record);
    const names = Object.keys(config.agents);
    previousAgents = [];
    for (const name of new Set([...record.agents, ...names])) {
      const agent = batch.get(agentPath(target.sessionId, name)) as AgentRecord | undefined;
      if (agent) previousAgents.push(agent);
    }
    const next: SessionRecord = {
      ...record,
      status: "active",
      updated_at: at,
      agents: names,
      supervisor: self,
      history: [...record.history, { event: "continued", at, from, checkpoint: target.checkpoint ?? null }],
    };
    next.ended_at = null;
    next.outcome = null;
    batch.delete(historyPath(target.sessionId));
    batch.set(sessionPath(target.sessionId), next);
    // /sessions/current names the session of the project's own working tree; a worktree session is only in /sessions/active.
    if (worktreeOf(next) === null) batch.set(CURRENT_SESSION_PATH, currentSessionOf(next));
    setActiveSession(batch, target.sessionId, activeEntryOf(next));
    for (const name of names) {
      const agent = batch.get(agentPath(target.sessionId, name)) as AgentRecord | undefined;
      batch.set(agentPath(target.sessionId, name), { ...(agent ?? emptyAgentRecord(name, config.agents[name]!)), status: "starting", restarts: 0 });
    }
    appendEvent(batch, target.sessionId, "session.continued", "supervisor", { from, checkpoint: target.checkpoint ?? null });
  }, "supervisor");
  return { sessionId: target.sessionId, continued: true, checkpoint: target.checkpoint, previousAgents };
}

/**
 * One session per working tree: sessions of a project run side by side, each in its own (the
 * project's, or a branch's git worktree), but two in one tree would change the same files.
 * Refused while another session not ended is bound to `worktree` (null: the project's own tree).
 */
function refuseIfBound(batch: Pick<Store, "get">, worktree: string | null, allowed: string | undefined): void {
  const candidates = new Set(Object.keys(readActiveSessions(batch)));
  // Stores written before /sessions/active: the pointer still names the project's session.
  const pointer = (batch.get(CURRENT_SESSION_PATH) as { session_id?: string } | undefined)?.session_id;
  if (pointer) candidates.add(pointer);
  for (const id of candidates) {
    if (id === allowed) continue;
    const record = batch.get(sessionPath(id)) as SessionRecord | undefined;
    if (!record || isEnded(record)) continue;
    const theirs = worktreeOf(record);
    if (theirs === null ? worktree !== null : worktree === null || !samePath(theirs, worktree)) continue;
    const status = effectiveStatus(record);
    const where = worktree === null ? "the project's working tree" : `the worktree ${worktree}`;
    const label = typeof record.name === "string" ? `${record.name} (${id})` : id;
    throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${label} is ${status} in ${where}; one session at a time runs in a working tree.`, {
      hint:
        status === "interrupted"
          ? "Recover it with `apex start --continue last`, or end it with `apex stop`."
          : "End it with `apex stop` first, keep working in it (`apex status`, `apex resume`), or branch with --worktree to run beside it.",
      details: { session_id: id, status, worktree },
    });
  }
}

export function emptyAgentRecord(name: string, spec: AgentConfig): AgentRecord {
  return {
    name,
    status: "starting",
    pid: null,
    pgid: null,
    start_time: null,
    nonce: null,
    started_at: null,
    restarts: 0,
    reported_status: null,
    task: null,
    last_report_at: null,
    last_exit: null,
    command: describeCommand(spec),
  };
}

/** The agent's command line as people would type it. */
export function describeCommand(spec: AgentConfig): string {
  return [spec.command, ...spec.args].map((part) => (/^[\w@%+=:,./-]+$/.test(part) ? part : JSON.stringify(part))).join(" ");
}
