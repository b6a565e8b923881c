import type { Store } from "../store/store.js";
import { readView } from "../store/port.js";
import { prefixRange } from "../store/paths.js";
import { agentMarker, groupCpuSeconds, markedGroups, processGroups, provenMembers, stopProgress, type ProcStat } from "./proc.js";
import { CONTEXT_SUFFIX, agentsPrefix, checkpointPrefix, countersPath, sessionPath, taskCountsPath, tasksPrefix, worktreeOf, type TaskCounts, type AgentRecord, type SessionRecord, type SessionStatus, type TaskRecord } from "./records.js";
import { onOtherHost, supervisorHost } from "./lease.js";
import { boundSessionId, effectiveStatus, findSession, lastSession, supervisorAlive } from "./sessions.js";

export interface AgentStatusView {
  name: string;
  /**
   * The recorded status; "gone" when it says running or paused but the process is not there,
   * "orphaned" when it runs while the session is interrupted.
   */
  status: string;
  /** The running process's; null once it exited (or is gone): `last_pid` keeps the one recorded. */
  pid: number | null;
  pgid: number | null;
  last_pid: number | null;
  /** When a restart is due (status `restarting`: it waits out its backoff, or a resume). */
  restart_at: string | null;
  alive: boolean;
  /** State of the agent's main process from /proc (R, S, T, …), null when it is not running. */
  process_state: string | null;
  /** Live processes in the agent's process group. */
  processes: number[];
  /**
   * Those of `processes` in uninterruptible I/O (state D) with their stop on its way (a SIGSTOP
   * pending, or taken by another of their threads, proc.ts StopProgress): they run nothing more
   * and stop (state T) the moment the I/O ends. A pause counts them as stopped.
   */
  stopping: number[];
  /** Those of `processes` stopped (state T): paused, or left paused by a supervisor that died. */
  stopped: number[];
  task: string | null;
  reported_status: string | null;
  restarts: number;
  uptime_seconds: number | null;
  /** utime + stime of the group's processes and of the children they waited for, in seconds. */
  cpu_seconds: number;
  last_exit: AgentRecord["last_exit"];
}

export interface StatusReport {
  session: null | {
    session_id: string;
    /** A branch session's name (`apex session branch CHECKPOINT NAME`); null for an unnamed one. */
    name: string | null;
    project_id: string;
    /** "stopping": said by the supervisor while a stop or the session's end is under way. */
    status: SessionStatus | "stopping";
    stored_status: string;
    initial_task: string | null;
    created_at: string;
    updated_at: string;
    supervisor: { pid: number; alive: boolean; socket: string; host: string | null; generation: number | null; lease_expires_at: string | null; /** This host's supervisor is itself stopped (SIGSTOP): it answers nothing. Set by `apex status`. */ stopped?: boolean; /** Its socket file is gone (deleted, another file there): no command reaches it. Set by `apex status`. */ socket_gone?: boolean } | null;
    /** The host whose supervisor runs (or ran) the session; null for a record older than hosts. */
    host: string | null;
    /** True when that host is not this one: its processes are not looked for in this machine's /proc. */
    remote: boolean;
    /** When the supervisor's lease runs out (or ran out: an interrupted session's). */
    lease_expires_at: string | null;
    restored_from: string | null;
    /** The git worktree it runs in (a branch made with `session branch --worktree`); null: the project's own working tree. */
    worktree: string | null;
    /** The seq of the session's last event when the report was read: `events.subscribe` from it misses none after the report and repeats none. */
    event_seq: number;
  };
  agents: AgentStatusView[];
  tasks: { pending: number; active: number; completed: number; failed: number; total: number };
  last_checkpoint: null | { key: string; id: string | null; sequence: number | null; trigger: string | null; created_at: string | null; description: string | null };
  /** When interrupted: agents whose processes still run without a supervisor. */
  /** `stopped`: those of `pids` in state T, which stay stopped until --continue or stop ends them. */
  left_running: Array<{ agent: string; pids: number[]; stopped: number[] }>;
  /** When interrupted: the command that continues the session from the live state (status itself never does). */
  recover_with?: string | null;
  /** With no session current: the last one that ended. */
  last_session: null | { session_id: string; name: string | null; status: string; ended_at: string | null; outcome: string | null };
  /** Users connected through `apex serve` (only a live supervisor knows them). */
  connected?: Array<{ user: string; role: string; since: string; streams: number }>;
}

/**
 * Everything `apex status` shows, from a read of the store and one scan of /proc. Cheap on
 * purpose: no config, no plugins, no socket round trip.
 */
export function buildStatusReport(store: Store, _storeDir?: string): StatusReport {
  // One view of the store for the whole report (a commit in the middle is not half in it).
  return readView(store, () => statusReportOf(store));
}

function statusReportOf(store: Store): StatusReport {
  // The session bound here, running or ended (a branch's worktree binds to its session either way: shown as it ended, as --session shows it).
  const bound = boundSessionId(store);
  // (a running session's record written null by hand: reported as one that says nothing, with its agents)
  const session = bound === undefined ? undefined : (findSession(store, bound) ?? (store.get(sessionPath(bound)) === null ? ({} as SessionRecord) : undefined));
  if (session) return sessionReport(store, session, bound);
  const empty = emptyStatusReport();
  const last = lastSession(store);
  if (last) empty.last_session = { session_id: last.session_id, name: nameOf(last), status: last.status, ended_at: last.ended_at ?? null, outcome: last.outcome ?? null };
  return empty;
}

/** `sid`: the session's id, as its record says it unless the caller knows it (a record written by hand may not say it). */
export function sessionReport(store: Store, session: SessionRecord, sid: string = session.session_id): StatusReport {
  const status = effectiveStatus(session);
  const agentRecords: AgentRecord[] = [];
  for (const { path, value } of store.query(`${agentsPrefix(sid)}/*`)) if (!path.endsWith(CONTEXT_SUFFIX) && value !== null) agentRecords.push(value as AgentRecord); // null: no agent
  const supervisor = session.supervisor;
  // Another host's pids mean nothing here: its agents are shown as their records say.
  const remote = onOtherHost(supervisor);
  const groups = remote ? new Map<number, ProcStat[]>() : processGroups(agentRecords.map((agent) => agent.pgid ?? 0));
  const now = Date.now();
  const agents = agentRecords.map((agent) => agentView(sid, agent, groups, now, remote));
  // Without a supervisor, whatever still runs is an orphan: nobody restarts, pauses or stops it. A
  // restart that was due is not coming either: the agent shows how it ended (--continue starts it).
  for (const agent of status === "interrupted" ? agents : []) {
    if (agent.alive) agent.status = "orphaned";
    else if (agent.status === "restarting") Object.assign(agent, { status: agent.last_exit?.code === 0 ? "exited" : "failed", restart_at: null });
  }
  const tasks = taskCounts(store, sid);
  return {
    session: {
      session_id: sid,
      name: nameOf(session),
      project_id: session.project_id,
      status,
      stored_status: session.status,
      initial_task: session.initial_task,
      created_at: session.created_at,
      updated_at: session.updated_at,
      supervisor: supervisor
        ? {
            pid: supervisor.pid,
            alive: supervisorAlive(session),
            socket: supervisor.socket,
            host: supervisorHost(supervisor),
            generation: typeof supervisor.generation === "number" ? supervisor.generation : null,
            lease_expires_at: supervisor.lease_expires_at ?? null,
          }
        : null,
      host: supervisorHost(supervisor),
      remote,
      lease_expires_at: supervisor?.lease_expires_at ?? null,
      restored_from: session.restored_from ?? null,
      worktree: worktreeOf(session),
      event_seq: (store.get(countersPath(sid)) as { events?: number } | undefined)?.events ?? 0,
    },
    agents,
    tasks,
    last_checkpoint: lastCheckpoint(store, sid),
    left_running: status === "interrupted" ? agents.filter((agent) => agent.processes.length > 0).map((agent) => ({ agent: agent.name, pids: agent.processes, stopped: agent.stopped })) : [],
    recover_with: status === "interrupted" ? (remote ? `apex start --continue ${sid}` : "apex start --continue last") : null,
    last_session: null,
  };
}

const nameOf = (session: SessionRecord): string | null => (typeof session.name === "string" ? session.name : null);

function agentView(sessionId: string, agent: AgentRecord, groups: Map<number, ProcStat[]>, now: number, remote: boolean): AgentStatusView {
  const members = ownGroupMembers(sessionId, agent, groups);
  // An unrecorded spawn's (ownGroupMembers) leader is the one that leads its group.
  const leader = members.find((member) => member.pid === agent.pid) ?? (agent.spawn_nonce !== agent.nonce ? members.find((member) => member.pid === member.pgrp) : undefined);
  const alive = leader !== undefined;
  const recordedLive = agent.status === "running" || agent.status === "paused" || agent.status === "starting";
  return {
    name: agent.name,
    status: recordedLive && !alive && !remote ? "gone" : agent.status,
    // What runs (another host's agents: as recorded), never the pid of a process that exited.
    pid: leader?.pid ?? (remote && recordedLive ? agent.pid : null),
    pgid: leader?.pgrp ?? (members.length > 0 || (remote && recordedLive) ? agent.pgid : null),
    last_pid: agent.pid,
    restart_at: agent.status === "restarting" ? (agent.restart_at ?? null) : null,
    alive,
    process_state: leader?.state ?? null,
    processes: members.map((member) => member.pid),
    stopping: members.filter((member) => stopProgress(member) === "stopping").map((member) => member.pid),
    stopped: members.filter((member) => member.state === "T" || member.state === "t").map((member) => member.pid),
    task: agent.task,
    reported_status: agent.reported_status,
    restarts: agent.restarts,
    uptime_seconds: alive && agent.started_at ? Math.max(0, Math.round((now - Date.parse(agent.started_at)) / 1000)) : null,
    cpu_seconds: Math.round(groupCpuSeconds(members) * 100) / 100,
    last_exit: agent.last_exit,
  };
}

/**
 * Live members of the agent's group that APEX can prove it started (proc.ts provenMembers):
 * pid and start time say only that a process is the one a record names, and a record can be
 * forged to name any process; the nonce in the process's environment proves it is APEX's. So a
 * forged record never makes status show a foreign process as the agent, or as left running.
 */
function ownGroupMembers(sessionId: string, agent: AgentRecord, groups: Map<number, ProcStat[]>): ProcStat[] {
  const marker = agentMarker(sessionId, agent.nonce);
  const members = agent.pgid && agent.start_time !== null && marker ? provenMembers(agent.pgid, agent.start_time, marker, groups).members : [];
  // A spawn recorded only by its nonce (the supervisor was killed before it recorded the pid) is found by that.
  const spawned = members.length === 0 && (agent.status === "starting" || agent.status === "restarting") && agent.spawn_nonce !== agent.nonce ? agentMarker(sessionId, agent.spawn_nonce) : undefined;
  return spawned ? [...markedGroups(spawned)].flatMap(([pgid, startTime]) => provenMembers(pgid, startTime, spawned).members) : members;
}

/** Tasks by status: the counts kept with every task change, or (for an older store) a scan. */
function taskCounts(store: Store, sid: string): StatusReport["tasks"] {
  const kept = store.get(taskCountsPath(sid)) as TaskCounts | undefined;
  if (kept) return { pending: kept.pending, active: kept.active, completed: kept.completed, failed: kept.failed, total: kept.total };
  const tasks = { pending: 0, active: 0, completed: 0, failed: 0, total: 0 };
  for (const { value } of store.query(`${tasksPrefix(sid)}/*`)) {
    const task = value as TaskRecord;
    if (task !== null && task.status in tasks) tasks[task.status] += 1;
    tasks.total += task === null ? 0 : 1; // null: no task, as `task list` reads it
  }
  return tasks;
}

/** The newest `/sessions/<sid>/checkpoint-<NNN>` manifest, found from the keys alone. */
function lastCheckpoint(store: Store, sid: string): StatusReport["last_checkpoint"] {
  const prefix = checkpointPrefix(sid);
  const range = prefixRange(prefix);
  let best: { key: string; n: number } | undefined;
  for (const key of store.keys({ start: range.start, ...(range.end ? { end: range.end } : {}) })) {
    const n = Number(String(key).slice(prefix.length));
    if (!Number.isFinite(n)) continue;
    if (!best || n > best.n) best = { key: String(key), n };
  }
  if (!best) return null;
  const manifest = (store.get(best.key) ?? {}) as Record<string, unknown>;
  const text = (name: string) => (typeof manifest[name] === "string" ? (manifest[name] as string) : null);
  return {
    key: best.key,
    id: text("id"),
    sequence: typeof manifest.sequence === "number" ? manifest.sequence : best.n,
    trigger: text("trigger"),
    created_at: text("created_at") ?? text("time"),
    description: text("description"),
  };
}

/** The report of a project with no session: nothing runs, nothing ran (or only `last_session`). */
export function emptyStatusReport(): StatusReport {
  return { session: null, agents: [], tasks: { pending: 0, active: 0, completed: 0, failed: 0, total: 0 }, last_checkpoint: null, left_running: [], last_session: null };
}
