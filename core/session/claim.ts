import { randomUUID } from "node:crypto";
import { ApexError } from "../errors.js";
import type { AgentConfig, Config } from "../config/types.js";
import type { JsonValue, Store } from "../store/store.js";
import { CURRENT_SESSION_PATH, PROJECT_CONFIG_PATH, activeEntryOf, agentPath, currentSessionOf, historyPath, nowIso, readActiveSessions, sessionPath, setActiveSession, worktreeOf, type AgentRecord, type SessionRecord } from "./records.js";
import { samePath } from "./binding.js";
import { appendEvent } from "./service.js";
import { holderText, onOtherHost, supervisorHost, withLease, writeLease, type RecordSource } from "./lease.js";
import { effectiveStatus, endedMark, findSession, isEnded, supervisorAlive, type ContinueTarget } from "./sessions.js";
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
  /** The generation this claim holds (the lease's fencing token). */
  generation: number;
  /** The host of the supervisor the session had before, when it was another one (a takeover): its pids mean nothing here. */
  takenOverFrom: string | undefined;
}

/** Who claims: the supervisor process, its host and how long its lease lasts. */
export type SupervisorIdentity = { pid: number; start_time: number; socket: string; started_at: string; nonce: string | null; host: string; lease_ttl_ms: number };

/** The supervisor field a claim writes: the identity with its generation (the lease itself is a row of the leases table). */
function supervisorRecord(self: SupervisorIdentity, generation: number): NonNullable<SessionRecord["supervisor"]> {
  const { lease_ttl_ms: _ttl, ...identity } = self;
  return { ...identity, generation };
}

/** The claim's lease row, written in the claim's transaction. */
function claimLease(store: Store, sessionId: string, self: SupervisorIdentity, generation: number): void {
  writeLease(store, sessionId, { host: self.host, generation, nonce: self.nonce, expires_at: new Date((store.now?.() ?? Date.now()) + self.lease_ttl_ms).toISOString() });
}

/** A new session, in the project's own working tree: refused while another one is active there. One transaction decides. */
export async function claimNewSession(store: Store, config: Config, request: SupervisorRequest, self: SupervisorIdentity): Promise<Claim> {
  const sessionId = randomUUID();
  const at = nowIso();
  await store.batch((batch) => {
    refuseIfBound(batch, store, null, undefined);
    const stored = batch.get(PROJECT_CONFIG_PATH) as Record<string, JsonValue> | undefined;
    let projectId = typeof stored?.project_id === "string" ? stored.project_id : undefined;
    if (!projectId) {
      projectId = randomUUID();
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
      supervisor: supervisorRecord(self, 1),
      history: [{ event: "started", at, host: self.host }],
      outcome: null,
      ended_at: null,
      restored_from: null,
    };
    batch.set(sessionPath(sessionId), session);
    claimLease(store, sessionId, self, 1);
    batch.set(CURRENT_SESSION_PATH, currentSessionOf(session));
    setActiveSession(batch, sessionId, activeEntryOf(session));
    for (const name of names) batch.set(agentPath(sessionId, name), emptyAgentRecord(name, config.agents[name]!));
    appendEvent(batch, sessionId, "session.started", "supervisor", { initial_task: request.task ?? null, agents: names });
  }, "supervisor");
  return { sessionId, continued: false, checkpoint: undefined, previousAgents: [], generation: 1, takenOverFrom: undefined };
}

/** Continues a session: the current one if it is interrupted, or an ended one brought back. */
export async function claimContinuedSession(store: Store, config: Config, target: ContinueTarget, self: SupervisorIdentity, read?: SupervisorRequest["endedAsRead"]): Promise<Claim> {
  let previousAgents: AgentRecord[] = [];
  let generation = 1;
  let takenOverFrom: string | undefined;
  await store.batch((batch) => {
    // The lease as this transaction sees it: a takeover waits for it to expire.
    const record = withLease(store, findSession(batch, target.sessionId));
    if (!record) throw new ApexError("APEX_E_NO_SESSION", `The session ${target.sessionId} does not exist.`);
    const previous = record.supervisor, label = typeof record.name === "string" && record.name ? record.name : target.sessionId; // a branch by its name
    if (supervisorAlive(record) && !(previous?.pid === self.pid && supervisorHost(previous) === self.host) && !isEnded(record)) {
      const remote = onOtherHost(previous);
      throw new ApexError(
        "APEX_E_SESSION_ACTIVE",
        `Session ${label} is running (supervisor ${holderText(previous)}${remote ? `, lease until ${previous!.lease_expires_at}` : ""}); there is nothing to continue.`,
        {
          hint: remote
            ? `It runs on host ${supervisorHost(previous)}: it can be taken over from here only once its lease expires (its supervisor stopped renewing it). See it with \`apex status\`.`
            : `See it with \`apex --session ${label} status\`; \`apex --session ${label} stop\` ends it.`,
          details: { session_id: target.sessionId, host: supervisorHost(previous), lease_expires_at: previous?.lease_expires_at ?? null },
        },
      );
    }
    // Ended (or continued) since `apex start` read it before launching this continue, as by an `apex stop` that said it stopped it meanwhile: the later command wins.
    if (read?.session_id === target.sessionId && endedMark(record) !== read.mark) throw new ApexError("APEX_E_SESSION_STATE", `Session ${label} was ${effectiveStatus(record)}${record.outcome ? ` (${String(record.outcome)})` : ""} while this start was continuing it, before it claimed it: it is not continued.`, { hint: `\`apex start --continue ${target.sessionId}\` continues it now.`, details: { session_id: target.sessionId, status: effectiveStatus(record) } });
    refuseIfBound(batch, store, worktreeOf(record), target.sessionId);
    const at = nowIso();
    const from = effectiveStatus(record);
    generation = (typeof previous?.generation === "number" ? previous.generation : 0) + 1;
    const previousHost = supervisorHost(previous);
    // Another host's supervisor held it and its lease expired: this is a takeover, recorded as one.
    const takeover = previousHost !== null && previousHost !== self.host && !isEnded(record);
    takenOverFrom = takeover ? previousHost : undefined;
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
      supervisor: supervisorRecord(self, generation),
      history: [
        ...record.history,
        {
          event: "continued",
          at,
          from,
          checkpoint: target.checkpoint ?? null,
          host: self.host,
          ...(takeover ? { taken_over_from: { host: previousHost, generation: previous!.generation ?? null, lease_expired_at: previous!.lease_expires_at ?? null } } : {}),
        },
      ],
    };
    next.ended_at = null;
    next.outcome = null;
    batch.delete(historyPath(target.sessionId));
    batch.set(sessionPath(target.sessionId), next);
    claimLease(store, target.sessionId, self, generation);
    // /sessions/current names the session of the project's own working tree; a worktree session is only in /sessions/active.
    if (worktreeOf(next) === null) batch.set(CURRENT_SESSION_PATH, currentSessionOf(next));
    setActiveSession(batch, target.sessionId, activeEntryOf(next));
    for (const name of names) {
      batch.set(agentPath(target.sessionId, name), { ...storedAgentRecord(batch.get(agentPath(target.sessionId, name)), name, config.agents[name]!), status: "starting", restarts: 0 });
    }
    if (takeover) {
      appendEvent(batch, target.sessionId, "session.taken_over", "supervisor", {
        from_host: previousHost,
        to_host: self.host,
        generation,
        lease_expired_at: previous!.lease_expires_at ?? null,
      });
    }
    appendEvent(batch, target.sessionId, "session.continued", "supervisor", { from, checkpoint: target.checkpoint ?? null, host: self.host, generation });
  }, "supervisor");
  return { sessionId: target.sessionId, continued: true, checkpoint: target.checkpoint, previousAgents, generation, takenOverFrom };
}

/**
 * One session per working tree: sessions of a project run side by side, each in its own (the
 * project's, or a branch's git worktree), but two in one tree would change the same files.
 * Refused while another session not ended is bound to `worktree` (null: the project's own tree).
 */
function refuseIfBound(batch: Pick<Store, "get">, leases: RecordSource, worktree: string | null, allowed: string | undefined): void {
  const candidates = new Set(Object.keys(readActiveSessions(batch)));
  // Stores written before /sessions/active: the pointer still names the project's session.
  const pointer = (batch.get(CURRENT_SESSION_PATH) as { session_id?: string } | undefined)?.session_id;
  if (pointer) candidates.add(pointer);
  for (const id of candidates) {
    if (id === allowed) continue;
    // A record written by hand while the session runs (null, not an object) is in the way as an empty one: `apex stop` ends it.
    const record = Object(withLease(leases, batch.get(sessionPath(id)) as SessionRecord)) as SessionRecord;
    if (batch.get(sessionPath(id)) === undefined || isEnded(record)) continue;
    const theirs = worktreeOf(record);
    if (theirs === null ? worktree !== null : worktree === null || !samePath(theirs, worktree)) continue;
    throw sessionInTheWay(record, worktree, id);
  }
}

/**
 * The refusal of a claim while `record` (not ended) is the session of the working tree
 * `worktree` (null: the project's own): it names the host whose supervisor holds the lease
 * when that is another one.
 */
export function sessionInTheWay(record: SessionRecord, worktree: string | null = null, id: string = record.session_id): ApexError {
  const status = typeof record.status === "string" ? effectiveStatus(record) : "unknown";
  const host = supervisorHost(record.supervisor);
  const remote = status !== "interrupted" && onOtherHost(record.supervisor);
  const where = worktree === null ? "the project's working tree" : `the worktree ${worktree}`;
  const on = remote ? ` on host ${host} (lease until ${record.supervisor!.lease_expires_at})` : "";
  const label = typeof record.name === "string" ? `${record.name} (${id})` : id;
  return new ApexError("APEX_E_SESSION_ACTIVE", `Session ${label} is ${status === "unknown" ? "listed as running (its record cannot be read)" : status}${on} in ${where}; one session at a time runs in a working tree.`, {
    hint:
      status === "interrupted"
        ? "Recover it with `apex start --continue last`, or end it with `apex stop`."
        : remote
          ? `Its supervisor runs on ${host}: stop it there (or through \`apex --remote\`); once its lease expires without renewal, \`apex start --continue ${id}\` takes it over here.`
          : `End it with \`apex stop\` first${status === "paused" ? ", or `apex resume` it" : ""}, or run another beside it in a worktree of its own (\`apex session branch CHECKPOINT NAME --worktree\`); \`apex status\` shows it.`,
    details: { session_id: id, status, host, worktree },
  });
}

export function emptyAgentRecord(name: string, spec: AgentConfig): AgentRecord {
  const none = { pid: null, pgid: null, start_time: null, nonce: null, started_at: null, reported_status: null, task: null, last_report_at: null, last_exit: null };
  return { name, status: "starting", ...none, restarts: 0, command: describeCommand(spec) };
}

/** An agent's record as stored, else a new one: none there, or one written by hand as no object (`{...}` of a string has no name). */
export function storedAgentRecord(stored: JsonValue | undefined, name: string, spec: AgentConfig): AgentRecord {
  return stored !== null && typeof stored === "object" && !Array.isArray(stored) ? (stored as unknown as AgentRecord) : emptyAgentRecord(name, spec);
}

/** The agent's command line as people would type it. */
export function describeCommand(spec: AgentConfig): string {
  return [spec.command, ...spec.args].map((part) => (/^[\w@%+=:,./-]+$/.test(part) ? part : JSON.stringify(part))).join(" ");
}
