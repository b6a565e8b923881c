import { AsyncLocalStorage } from "node:async_hooks";
import { availableParallelism, loadavg } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ApexError, ErrorCodes } from "../errors.js";
import { projectTreesOf } from "../config/locate.js";
import type { Config, AgentConfig } from "../config/types.js";
import type { Engine } from "../engine.js";
import { RpcServer } from "../rpc/server.js";
import { redactUrl } from "../store/open.js";
import { makePrivateDir, PRIVATE_EXECUTABLE_MODE, writePrivateFile } from "../store/private.js";
import type { JsonValue, Store, WriteBatch } from "../store/store.js";
import { AgentProcess, appendLogLine, capLogFile, provenMembers, signalProvenGroup, tailLines, terminateAgent, terminateGroup, type AgentExit } from "./agents.js";
import { checkpointServiceFor, noCheckpointService, restoreSessionFromCheckpoint } from "./checkpoints.js";
import { actorParam } from "../actor.js";
import { registerSupervisorMethods } from "./methods.js";
import { newNonce, processGroups, processStartTime, signalProcess, sleep, stopProgress, SUPERVISOR_NONCE_VAR, type ProcessMarker } from "./proc.js";
import { CONTEXT_SUFFIX, CURRENT_SESSION_PATH, agentContextPath, agentPath, agentsPrefix, countersPath, eventPath, historyPath, memoryRootOf, nowIso, sessionPath, setActiveSession, setSessionRecord, worktreeOf, tasksPrefix, type AgentRecord, type AgentStatus, type SessionEvent, type SessionRecord, type TaskRecord } from "./records.js";
import { agentLogDir, removeRuntime, removeStaleStopRequests, RUN_DIR, socketPathFor, takeStopRequest, writeRuntime } from "./runtime.js";
import { claimContinuedSession, claimNewSession, describeCommand, storedAgentRecord, type Claim } from "./claim.js";
import { LeaseHolder, localHost } from "./lease.js";
import { moveTaskCount, recountTasks, SessionService } from "./service.js";
import { findSession, historyOf, holdsLiveMemory, liveMemoryOwner, resolveContinueTarget } from "./sessions.js";
import { setOwnSession } from "./binding.js";

/** What `apex start` asks the supervisor to do. */
export interface SupervisorRequest {
  mode: "start" | "continue";
  projectDir: string;
  configPath: string | undefined;
  storeDir: string;
  /** The initial task (`apex start --task`). */
  task?: string | undefined;
  /** `apex start --continue <last|SESSION|CHECKPOINT>`. */
  continueTarget?: string | undefined;
  /**
   * `apex start --force-recovery <CHECKPOINT>` (continueTarget names the checkpoint): restore
   * what still verifies of a damaged checkpoint and report what was lost.
   */
  forceRecovery?: boolean | undefined;
  /** The continued session's ended state (endedMark) as `apex start` read it before launching: its claim refuses once it changed. */
  endedAsRead?: { session_id: string; mark: string } | undefined;
  /** A private file holding the config `apex start` checked (config/handoff.ts). */
  configFile?: string | undefined;
}

/** What the supervisor reports to `apex start` once the agents run. */
export interface ReadyReport {
  session_id: string;
  status: string;
  supervisor_pid: number;
  socket: string;
  log: string;
  continued: boolean;
  restored_from: string | null;
  /** What the restore did (the checkpoint service's report; with --force-recovery, what was lost). */
  restore: JsonValue | null;
  /** Continuing: how tasks and agent records were matched to the agents that run now. */
  reconciled: { requeued: string[]; resumed: Array<{ agent: string; task: string; tasks: string[] }>; stopped_agents: string[] } | null;
  /** The checkpoint taken once the agents run (the session's first one, or the continued state); null when none was written. */
  checkpoint: { id: string; name: string; trigger: string } | null;
  reaped: Array<{ agent: string; pids: number[] }>;
  agents: Array<{ name: string; pid: number | null; pgid: number | null; status: AgentStatus }>;
  event_seq: number;
  /** What plugins warned of while the session started (also in the supervisor log); absent when nothing. */
  warnings?: string[];
}

/** An agent's process group as pause, resume and stop signal it; `child` is the process it was taken from. */
type AgentGroup = { slot: AgentSlot; child: AgentProcess; pgid: number; startTime: number; marker: ProcessMarker };

interface AgentSlot {
  name: string;
  spec: AgentConfig;
  process: AgentProcess | undefined;
  status: AgentStatus;
  restarts: number;
  /** Crashes in a row (a non-zero exit or a signal): what max_restarts and the backoff count. A clean exit or a run of min_uptime ends the row. */
  crashes: number;
  /** When its current process started (Date.now()): a run of min_uptime or longer resets `restarts`. */
  startedAt: number;
  restartTimer: NodeJS.Timeout | undefined;
  /** A restart that is due but waits for `resume`. */
  restartDeferred: boolean;
}

/**
 * How long pause waits for every process of every agent group to show state T (resume: to
 * leave it), on an idle machine. A loaded machine schedules the stopped processes' last steps
 * later, so the wait grows with the load average per core, up to PAUSE_VERIFY_MAX_MS.
 * APEX_PAUSE_VERIFY_MS in the supervisor's environment (`apex start`'s) sets it instead.
 */
const PAUSE_VERIFY_MS = 5000;
const PAUSE_VERIFY_MAX_MS = 30_000;

export function pauseVerifyMs(loadPerCore = loadavg()[0]! / Math.max(1, availableParallelism())): number {
  return Number(process.env.APEX_PAUSE_VERIFY_MS) > 0 ? Number(process.env.APEX_PAUSE_VERIFY_MS) : Math.min(PAUSE_VERIFY_MAX_MS, Math.round(PAUSE_VERIFY_MS * Math.max(1, loadPerCore)));
}
const DEFAULT_STOP_GRACE_MS = 5000;
const LOG_TAIL_LINES = 20;
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
/** A report of `apex serve` older than this no longer counts its users as connected. */
const CONNECTIONS_TTL_MS = 30_000;

/** Someone connected through `apex serve`, as `apex status` shows them. */
export interface Connection {
  user: string;
  role: string;
  since: string;
  streams: number;
  /** A record the user's access stands on (a grant): once it is gone (revoked), the user is not listed. Not shown. */
  record?: string;
}

/**
 * The session daemon: the store's one writer while it runs. It spawns the agents, restarts
 * them by policy, pauses, resumes and stops them, runs the session's timers, and serves the
 * control socket every CLI command that touches live processes uses.
 */
/** The final state of the ended session holding the live memory, checkpointed before another session takes it (CheckpointService.saveFinalState); a failure is logged, the start goes on. */
async function saveFinalState(store: Store, nextSessionId: string | undefined, log: (message: string) => void): Promise<void> {
  await checkpointServiceFor(store)?.saveFinalState?.(nextSessionId).catch((error: Error) => log(`warning: the final state of the previous session could not be checkpointed: ${error.message}`));
}

export class Supervisor {
  readonly service: SessionService;
  readonly server: RpcServer;
  private readonly slots = new Map<string, AgentSlot>();
  private readonly subscribers = new Set<(event: SessionEvent) => void>();
  private stopping: Promise<Record<string, JsonValue>> | undefined;
  /** The stop (or end) has begun: a stop queued behind a start is not yet stopping, so pause and resume queue too and hear how the start ended. */
  private stopBegun = false;
  /** A branch session's name (null: none), read at the start: pause, resume and stop name the session by it, as the CLI prints sessions. */
  private name: string | null = null;
  /** Why the start failed: set (in the lifecycle) before a pause, resume or stop queued behind the start runs. */
  private startFailure: string | undefined;
  private lifecycle: Promise<unknown> = Promise.resolve();
  private checkpointTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private logTimer: NodeJS.Timeout | undefined;
  /** Why the session's first checkpoint could not be written (a plugin failing in beforeCheckpoint, say), for the ready report. */
  private startWarning: string | undefined;
  private idleRemainingMs = 0;
  private idleDeadline = 0;
  private shutdownStarted = false;
  private cappingLogs = false;
  private readonly uncuttableLogs = new Set<string>();
  /** Agents that exited, whose groups' leftovers handleExit is ending. */
  private readonly ending = new Set<AgentProcess>();
  /** The lease on the session (set by launch once the claim holds it). */
  lease: LeaseHolder | undefined;
  /** Who made the request being served: checkpoints taken for it are attributed to them. Disabled while none is (plugins/checkpoint/plugin-service.ts says why). */
  private readonly requestActor = new AsyncLocalStorage<string>();
  private serving = 0;
  private readonly connectionReports = new Map<string, { at: number; users: Connection[] }>();

  private constructor(
    readonly config: Config,
    readonly store: Store,
    readonly engine: Engine,
    readonly sessionId: string,
    readonly socketPath: string,
    readonly log: (message: string) => void,
    readonly onExit: (code: number) => void,
  ) {
    this.service = new SessionService(store, sessionId, engine);
    this.service.onEvent = (event) => this.broadcast(event);
    this.service.onAgentActivity = () => this.noteActivity();
    this.service.agentRecord = (stored, agent) => storedAgentRecord(stored, agent, this.slots.get(agent)!.spec);
    this.service.ended = (agent) => ({ exited: "has exited", failed: "has failed", stopped: "was stopped" } as Record<string, string>)[this.slots.get(agent)?.status ?? ""];
    this.server = new RpcServer(socketPath);
    for (const [name, spec] of Object.entries(config.agents)) {
      this.slots.set(name, { name, spec, process: undefined, status: "starting", restarts: 0, crashes: 0, startedAt: 0, restartTimer: undefined, restartDeferred: false });
    }
  }

  /**
   * Claims the session (a new one, or the one to continue), reaps what an interrupted run
   * left behind, restores its checkpoint, listens on the socket, fires onStart and starts
   * the agents. Resolves once they run; on failure the session is marked failed. `engine`
   * comes from createSessionEngine, which binds it to the store's checkpoint hooks.
   */
  static async launch(
    request: SupervisorRequest,
    deps: { config: Config; store: Store; engine: Engine; log: (message: string) => void; onExit: (code: number) => void; signals: { received?: NodeJS.Signals; on?: (signal: NodeJS.Signals) => void } },
  ): Promise<{ supervisor: Supervisor; ready: ReadyReport }> {
    const { store, config, log } = deps;
    // The nonce `apex start` put in this process's environment: with it, `apex stop --force` can prove the pid is this supervisor.
    const nonce = process.env[SUPERVISOR_NONCE_VAR] ?? null;
    const host = localHost();
    const leaseTtlMs = config.session.lease_ttl * 1000;
    // The project's own session serves <store>/supervisor.sock; a session in a git worktree its own socket under run/.
    const identity = (socket: string) => ({ pid: process.pid, start_time: processStartTime(process.pid) ?? 0, socket, started_at: nowIso(), nonce, host, lease_ttl_ms: leaseTtlMs });
    let claim: Claim;
    let claimedAt = 0;
    // The live memory is another session's: true, or that session's id when it is known (the project's tree).
    let foreignState: boolean | string = false;
    let socketPath: string;
    // A signal before the claim calls the start off: no session is claimed (a whole turn of the event loop, its poll for signals included, lets one already sent in).
    const calledOff = () => new Promise<void>((resolve, reject) => setImmediate(() => setImmediate((received = deps.signals.received) => (received ? reject(new ApexError("APEX_E_INTERRUPTED", `The start was called off (the supervisor received ${received}) before a session was claimed: none was started.`, { details: { signal: received } })) : resolve()))));
    if (request.mode === "start") {
      await saveFinalState(store, undefined, log);
      socketPath = socketPathFor(request.storeDir);
      await calledOff();
      claimedAt = performance.now();
      claim = await claimNewSession(store, config, request, identity(socketPath));
    } else {
      const service = checkpointServiceFor(store);
      const target = await resolveContinueTarget(store, request.continueTarget ?? "last", service);
      const targetRecord = findSession(store, target.sessionId);
      const inWorktree = targetRecord !== undefined && memoryRootOf(targetRecord) !== "";
      socketPath = socketPathFor(request.storeDir, inWorktree ? target.sessionId : undefined);
      // On PostgreSQL the first session to run may be a worktree's: its socket's run/ is not there yet.
      if (inWorktree) makePrivateDir(join(request.storeDir, RUN_DIR));
      // A session in its own worktree has its own memory root: it displaces nobody's live memory.
      if (!inWorktree) await saveFinalState(store, target.sessionId, log);
      // The live keyspace holds the memory of the running or last-run session of the project's
      // working tree (liveMemoryOwner), and each worktree session's own root once it has run.
      // A session that does not hold its memory there (a branch, an older session) comes back
      // with its own state: its latest checkpoint, restored without saving another's memory as its own.
      const owner = liveMemoryOwner(store);
      // So is a checkpoint it names (its own or another's): the state replaced is not its own to save.
      foreignState = inWorktree ? !holdsLiveMemory(store, target.sessionId) : typeof owner === "string" && owner !== target.sessionId && owner;
      // Memory no session holds (none ran here yet, or only imported ones): the session's own comes back
      // too, and what it replaces is saved as its state before the restore, not taken as its memory.
      if (target.checkpoint === undefined && !request.forceRecovery && (foreignState || (!inWorktree && owner === undefined)) && service?.prepare) {
        target.checkpoint = (await service.prepare({ sessionId: target.sessionId, checkpoint: undefined })).checkpoint;
      }
      // Refused before anything changes: the session keeps the state it had.
      if ((target.checkpoint !== undefined || request.forceRecovery) && !service) throw noCheckpointService(target.checkpoint ?? "latest");
      // Only a named checkpoint rolls memory back; `last` and a session continue from the live store.
      // The checkpoint is verified here, before the claim: a refusal leaves the session as it was.
      if (service?.prepare && (target.checkpoint !== undefined || request.forceRecovery)) {
        const prepared = await service.prepare({ sessionId: target.sessionId, checkpoint: target.checkpoint, force: Boolean(request.forceRecovery) });
        target.checkpoint = prepared.checkpoint;
      }
      await calledOff();
      claimedAt = performance.now();
      claim = await claimContinuedSession(store, config, target, identity(socketPath), request.endedAsRead);
    }
    setOwnSession(claim.sessionId);
    const supervisor = new Supervisor(config, store, deps.engine, claim.sessionId, socketPath, log, deps.onExit);
    // From the claim on, SIGTERM, SIGINT or SIGHUP (one that came during it too) stop the session, queued behind the start.
    deps.signals.on = (signal) => void supervisor.onSignal(signal);
    if (deps.signals.received) deps.signals.on(deps.signals.received);
    if (claim.takenOverFrom) log(`session ${claim.sessionId}: taken over from host ${claim.takenOverFrom} (its lease had expired); generation ${claim.generation} on host ${host}`);
    // From here on every write of this process checks the lease; it is renewed every ttl/3.
    supervisor.lease = new LeaseHolder(store, claim.sessionId, { host, generation: claim.generation, nonce }, leaseTtlMs, (reason) => void supervisor.leaseLost(reason), log, claimedAt);
    supervisor.lease.fence();
    supervisor.lease.start();
    try {
      const ready = await supervisor.begin(request, claim, foreignState);
      return { supervisor, ready };
    } catch (error) {
      await supervisor.abort(error);
      // What queued behind the start (or came since) answers that it failed before the socket closes; the store closes after it.
      await supervisor.server.close(shutdownGraceMs()).catch(() => undefined);
      throw error;
    }
  }

  private async begin(request: SupervisorRequest, claim: Claim, foreignState: boolean | string = false): Promise<ReadyReport> {
    this.log(`session ${this.sessionId}: ${claim.continued ? "continuing" : "starting"} (pid ${process.pid})`);
    const reaped: ReadyReport["reaped"] = [];
    let restored: Awaited<ReturnType<typeof restoreSessionFromCheckpoint>>;
    let reconciled: ReadyReport["reconciled"] = null;
    // The whole start is one lifecycle change: pause, resume and stop (from the socket once it listens,
    // or a signal to this process) queue behind it (onStart, the agents, the first checkpoint), so a
    // stop sent meanwhile ends a session that started, never one half-started, and the report below
    // sees its outcome. A failure ends the session here, in the lifecycle: what queued behind finds it failed.
    const checkpoint = await this.runLifecycle(async () => {
      try {
        // Taken over from another host: the old records' pids are that host's, nothing to reap here.
        if (claim.continued && !claim.takenOverFrom) {
          for (const agent of claim.previousAgents) {
            // Only what carries the marker recorded with it is ours: a forged record names no process APEX will signal.
            const pids = await terminateAgent(this.sessionId, agent, { graceMs: 2000 });
            if (pids.length > 0) {
              reaped.push({ agent: agent.name, pids });
              this.log(`reaped the old processes of agent ${agent.name}: ${pids.join(", ")}`);
            }
          }
        }
        // Continuing rolls memory back only to a checkpoint the user named (--continue CHECKPOINT,
        // --force-recovery); `--continue last|SESSION` and auto recovery go on from the live store,
        // which holds every write that was acknowledged.
        restored =
          claim.continued && claim.checkpoint !== undefined
            ? await restoreSessionFromCheckpoint(this.store, this.sessionId, claim.checkpoint, { force: Boolean(request.forceRecovery), ...(foreignState ? { replacesOtherSession: foreignState } : {}) })
            : undefined;
        if (claim.continued) {
          reconciled = await this.service.write((batch, record) => {
            const settled = this.reconcileRecords(batch);
            recountTasks(batch, this.store, this.sessionId);
            if (restored) {
              const session = batch.get(sessionPath(this.sessionId)) as SessionRecord;
              // The "continued" entry claimContinuedSession wrote names the checkpoint it came back to.
              const history = [...historyOf(session)];
              const last = history[history.length - 1];
              if (last?.event === "continued") {
                history[history.length - 1] = { ...last, checkpoint: restored.checkpoint, ...(request.forceRecovery ? { forced: true } : {}) };
              }
              setSessionRecord(batch, { ...session, history, restored_from: restored.checkpoint, updated_at: nowIso() });
              record("session.restored", { checkpoint: restored.checkpoint, forced: Boolean(request.forceRecovery), details: restored.details ?? null });
            }
            record("session.reconciled", { ...settled, from: restored ? "checkpoint" : "live" });
            return settled;
          }, "supervisor");
        }
        await this.server.listen();
        this.registerMethods();
        const own = this.service.session();
        this.name = typeof own.name === "string" ? own.name : null;
        const { storeIdentity, storeSourceDigest } = await import("../store/open.js");
        makePrivateDir(join(request.storeDir, RUN_DIR)); // (not in runtime.ts: `apex status` loads that, and never writes)
        // Stop requests no supervisor took (its own session's included: none can be for this one before its runtime file names it).
        removeStaleStopRequests(request.storeDir);
        writeRuntime(request.storeDir, {
          pid: process.pid,
          start_time: processStartTime(process.pid) ?? 0,
          socket: this.socketPath,
          session_id: this.sessionId,
          started_at: nowIso(),
          log: join(request.storeDir, "supervisor.log"),
          worktree: worktreeOf(own),
          name: this.name,
          ...(this.store.spec ? { store: await storeIdentity(this.store.spec), store_source: storeSourceDigest(request) } : {}),
          nonce: process.env[SUPERVISOR_NONCE_VAR] ?? null,
        });
        this.tapEngine();
        await this.engine.fire("onStart", this.service.context());
        makePrivateDir(agentLogDir(request.storeDir, this.sessionId));
        this.writeApexShim(request.storeDir);
        // Every agent's nonce in one write, not one write each before its spawn (startAgent).
        const nonces = new Map([...this.slots.keys()].map((name) => [name, newNonce()]));
        await this.ownWrite((batch) => nonces.forEach((nonce, name) => this.setSpawnNonce(batch, this.slots.get(name)!, nonce)));
        for (const slot of this.slots.values()) if (!this.stopping) await this.startAgent(slot, claim.continued, nonces.get(slot.name));
        this.armTimers();
        this.logTimer = setInterval(() => void this.capLogs(), 1000);
        return this.startCheckpoint(claim, restored !== undefined);
      } catch (error) {
        await this.abort(error);
        throw error;
      }
    });
    // A stop (or the end) that came in while it started: the report says the session stopped, not
    // that it is active. Read at once, before the shutdown the stop scheduled closes the store.
    await this.stopping?.catch(() => undefined);
    const session = this.service.session();
    return {
      session_id: this.sessionId,
      status: session.status,
      supervisor_pid: process.pid,
      socket: this.socketPath,
      log: join(request.storeDir, "supervisor.log"),
      continued: claim.continued,
      restored_from: restored?.checkpoint ?? null,
      restore: restored?.details ?? null,
      reconciled,
      checkpoint,
      reaped,
      agents: [...this.slots.values()].map((slot) => ({ name: slot.name, pid: slot.process?.pid ?? null, pgid: slot.process?.pgid ?? null, status: slot.status })),
      event_seq: this.eventSeq(),
      ...(this.startWarning === undefined ? {} : { warnings: [this.startWarning] }),
    };
  }

  /**
   * The checkpoint a start takes once the agents run: a new session's first checkpoint
   * (trigger onStart), or the state a session continued from the live store goes on with
   * (trigger continue). Skipped when the latest checkpoint already holds that state (an onStart
   * trigger of the checkpoint plugin, a restore). A failure is logged: the session runs all the same.
   */
  private async startCheckpoint(claim: Claim, restored: boolean): Promise<ReadyReport["checkpoint"]> {
    const service = checkpointServiceFor(this.store);
    if (!service || restored) return null;
    const trigger = claim.continued ? "continue" : "onStart";
    const description = claim.continued ? "continued from the live state" : "session start";
    try {
      const created = await service.create({ sessionId: this.sessionId, trigger, description, skipUnchanged: true });
      return created ? { id: created.id, name: checkpointLabel(created.sequence), trigger: created.trigger } : null;
    } catch (error) {
      // Said by `apex start` too (the report's warnings): before, only the log told that the session has no first checkpoint.
      this.log((this.startWarning = `no ${trigger} checkpoint: ${(error as Error).message}`));
      return null;
    }
  }

  /** A failed launch: end what started and record the session as failed (once; launch closes the socket). */
  private async abort(error: unknown): Promise<void> {
    if (this.startFailure !== undefined) return;
    const message = (this.startFailure = error instanceof Error ? error.message : String(error));
    this.log(`start failed: ${message}`);
    // A stop sent from now on is answered that the session did not start.
    (this.stopping = Promise.reject(this.failedStart("stop"))).catch(() => undefined);
    this.clearTimers();
    await this.terminateAll({ graceMs: 2000 }).catch(() => undefined);
    await this.finish("failed", `could not start: ${message}`).catch((inner) => this.log(`cannot record the failure: ${String(inner)}`));
    removeRuntime(this.config.storeDir, process.pid, this.sessionId);
  }

  /** A pause, resume or stop of a session whose start failed: what `apex stop` says of an ended session (exit 3), and why. */
  private failedStart(action: string): ApexError {
    const hint = "`apex status` shows how it ended; start a session again once the cause is fixed.";
    return new ApexError("APEX_E_NO_SESSION", `Cannot ${action}: session ${this.sessionId} could not start (${this.startFailure}); it has ended (failed).`, { hint, details: { session_id: this.sessionId, status: "failed" } });
  }

  /**
   * Continuing (from the live store or after a restore), once the old processes were reaped:
   * the records are made to match what will run. Agent records of agents this config no longer
   * runs are marked stopped (nothing will start them) and their active tasks go back to
   * pending, for any agent to claim. Active tasks of configured agents stay active: they go
   * back to their agent, restarted with them (resumeTasks) next to its saved context. An agent
   * record still naming a task that is no longer an active task of its lets go of it.
   */
  private reconcileRecords(batch: WriteBatch): NonNullable<ReadyReport["reconciled"]> {
    const resumed: NonNullable<ReadyReport["reconciled"]>["resumed"] = [];
    const stoppedAgents: string[] = [];
    const activeOf = new Map<string, string[]>();
    const requeued = this.requeue(batch, (task) => {
      const held = task.assignee !== null && this.slots.has(task.assignee);
      if (held) activeOf.set(task.assignee!, [...(activeOf.get(task.assignee!) ?? []), task.id]);
      return !held;
    });
    for (const key of this.store.keysBelow(agentsPrefix(this.sessionId))) {
      const name = key.slice(agentsPrefix(this.sessionId).length + 1);
      if (name.includes("/") || name.endsWith(CONTEXT_SUFFIX)) continue;
      const agent = batch.get(key) as AgentRecord | undefined;
      if (!agent || typeof agent !== "object" || Array.isArray(agent)) continue; // one written by hand as no object: left to validate
      if (!this.slots.has(name)) {
        // Reported once, when it is found still standing (a later continue finds it stopped already).
        if (agent.status !== "stopped" || agent.task !== null) {
          batch.set(key, { ...agent, status: "stopped", task: null });
          stoppedAgents.push(name);
        }
        continue;
      }
      const active = activeOf.get(name) ?? [];
      const task = agent.task !== null && active.includes(agent.task) ? agent.task : (active[0] ?? null);
      if (task !== agent.task) batch.set(key, { ...agent, task });
      if (task !== null) resumed.push({ agent: name, task, tasks: [task, ...active.filter((id) => id !== task)] });
    }
    return { requeued, resumed, stopped_agents: stoppedAgents };
  }

  /** Active tasks `release` picks back to pending, unassigned (their counts moved), with `reason` when one is given; their ids. */
  private requeue(batch: WriteBatch, release: (task: TaskRecord) => boolean, reason?: string): string[] {
    const requeued: string[] = [];
    for (const key of this.store.keysBelow(tasksPrefix(this.sessionId))) {
      const task = batch.get(key) as TaskRecord | undefined;
      if (task?.status !== "active" || !release(task)) continue;
      batch.set(key, { ...task, status: "pending", assignee: null, claimed_at: null, reason: reason ?? task.reason });
      moveTaskCount(batch, this.sessionId, "active", "pending");
      requeued.push(task.id);
    }
    return requeued;
  }

  /**
   * Where agents run: the git worktree a branch session was created with (`session branch
   * --worktree`), at the project's place in it (a project in a subdirectory of its repository
   * runs there in the worktree too), else the project.
   */
  private workingTree(): string {
    const worktree = (this.service.session() as { worktree?: { path?: unknown } | null }).worktree;
    if (typeof worktree?.path !== "string" || !worktree.path) return this.config.projectDir;
    const main = projectTreesOf(worktree.path).find((tree) => !relative(tree, this.config.projectDir).startsWith(".."));
    const inside = main === undefined ? "" : relative(main, this.config.projectDir);
    return inside === "" || inside.startsWith("..") || isAbsolute(inside) ? worktree.path : join(worktree.path, inside);
  }

  /**
   * The active tasks a restored (or restarted) agent goes back to, all of them (an agent may hold several): first
   * the one its record names (else the first), which APEX_RESUME_TASK names alone, as it always did.
   */
  private resumeTasks(slot: AgentSlot): string[] {
    const own = this.service.agent(slot.name)?.task ?? "";
    const active = this.service.tasks("active").flatMap((task) => (task.assignee === slot.name ? [task.id] : []));
    return active.includes(own) ? [own, ...active.filter((id) => id !== own)] : active;
  }

  // ---------------------------------------------------------------- agents

  private agentEnv(slot: AgentSlot, resumeContext: string | undefined, resumeTasks: string[] = []): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith("APEX_")) env[key] = value;
    // A store the environment chose (APEX_STORE_URL, not `store:`) stays named: an agent's commands
    // and ApexSaver resolve their store as any command does, and another store is refused (client.ts).
    // Named without its password: they act through this supervisor's socket, and the store's identity
    // leaves the password out. PGPASSWORD is the store's password when its URL holds none: not passed.
    const { backend, url } = this.store.spec ?? {};
    const bare = url && backend !== "lmdb" ? redactUrl(url, "") : url;
    if (process.env.APEX_STORE_URL && bare) env.APEX_STORE_URL = bare;
    if (bare && bare === url && backend !== "lmdb") delete env.PGPASSWORD;
    const shimDir = join(this.config.storeDir, "bin");
    // The agent's own PATH (its `env`) is the one it runs with, and the one its command is found on.
    const path = slot.spec.env.PATH ?? env.PATH;
    Object.assign(env, slot.spec.env, {
      APEX_SESSION_ID: this.sessionId,
      APEX_AGENT: slot.name,
      APEX_SOCKET: this.socketPath,
      APEX_HOME: this.config.storeDir,
      APEX_BIN: `${JSON.stringify(process.execPath)} ${JSON.stringify(join(REPO_ROOT, "bin", "apex.js"))}`,
      APEX_SUPERVISOR_PID: String(process.pid),
      APEX_INITIAL_TASK: this.service.session().initial_task ?? "",
      PATH: `${shimDir}:${join(REPO_ROOT, "bin")}${path ? `:${path}` : ""}`,
    });
    if (this.config.configPath) env.APEX_CONFIG = this.config.configPath;
    if (resumeContext) env.APEX_RESUME_CONTEXT = resumeContext;
    if (resumeTasks.length > 0) Object.assign(env, { APEX_RESUME_TASK: resumeTasks[0], APEX_RESUME_TASKS: resumeTasks.join(" ") });
    return env;
  }

  /** `<store>/bin/apex`: lets agents run `apex …` whatever their PATH held. */
  private writeApexShim(storeDir: string): void {
    const dir = join(storeDir, "bin");
    makePrivateDir(dir);
    const file = join(dir, "apex");
    // Each path single-quoted for sh (a ' in it as '\'').
    const script = `#!/bin/sh\nexec ${[process.execPath, join(REPO_ROOT, "bin", "apex.js")].map((word) => `'${word.replace(/'/g, `'\\''`)}'`).join(" ")} "$@"\n`;
    writePrivateFile(file, script, PRIVATE_EXECUTABLE_MODE);
  }

  /** On `--continue`, the agent's last reported context as a file for APEX_RESUME_CONTEXT. */
  private resumeContextFile(slot: AgentSlot): string | undefined {
    const context = this.store.get(agentContextPath(this.sessionId, slot.name));
    if (context === undefined) return undefined;
    const file = join(agentLogDir(this.config.storeDir, this.sessionId), `${slot.name}.resume.json`);
    writePrivateFile(file, `${JSON.stringify(context, null, 2)}\n`);
    return file;
  }

  private logFiles(name: string): { stdoutFile: string; stderrFile: string } {
    const dir = agentLogDir(this.config.storeDir, this.sessionId);
    return { stdoutFile: join(dir, `${name}.log`), stderrFile: join(dir, `${name}.err.log`) };
  }

  /** Keeps each agent's log files under LOG_MAX_BYTES (agents.ts capLogFile), one check at a time; a file that cannot be cut is logged once. */
  private async capLogs(): Promise<void> {
    if (this.cappingLogs) return;
    this.cappingLogs = true;
    for (const file of [...this.slots.values()].flatMap((slot) => Object.values(this.logFiles(slot.name)))) {
      try {
        if (await capLogFile(file)) appendLogLine(file, `[apex ${nowIso()}] log cut; what came before is in ${file}.1`, true);
      } catch (error) {
        if (!this.uncuttableLogs.has(file)) this.log(`cannot cut ${file}: ${(error as Error).message}`);
        this.uncuttableLogs.add(file);
      }
    }
    this.cappingLogs = false;
  }

  /** `running`: the agent runs (it may finish a line it left unfinished: appendLogLine's `continues`). */
  private agentLog(name: string, message: string, running = false): void {
    try {
      appendLogLine(this.logFiles(name).stdoutFile, `[apex ${nowIso()}] ${message}`, running);
    } catch {
      // The log directory is gone (project removed); the supervisor log still has it.
    }
  }

  private setSpawnNonce(batch: Parameters<Parameters<SessionService["write"]>[0]>[0], slot: AgentSlot, nonce: string): void {
    batch.set(agentPath(this.sessionId, slot.name), { ...storedAgentRecord(batch.get(agentPath(this.sessionId, slot.name)), slot.name, slot.spec), spawn_nonce: nonce });
  }

  /** `recorded`: the spawn nonce already written for it (the session's start writes all agents' in one go). */
  private async startAgent(slot: AgentSlot, resumed: boolean, recorded?: string): Promise<void> {
    slot.restartDeferred = false;
    slot.restartTimer = undefined;
    const resumeContext = resumed ? this.resumeContextFile(slot) : undefined;
    // A restart by policy holds none (its exit released them) unless a claim for it came meanwhile (its own, under way
    // as it exited, or `task claim --agent`): given to it as on --continue, else it held them never knowing.
    const resumeTasks = this.resumeTasks(slot);
    const files = this.logFiles(slot.name);
    // Recorded before the spawn: a supervisor killed before it records the pid leaves a process `start --continue` and `stop` still find.
    const nonce = recorded ?? newNonce();
    if (!recorded) await this.ownWrite((batch) => this.setSpawnNonce(batch, slot, nonce));
    let child: AgentProcess;
    try {
      child = await AgentProcess.spawn({
        nonce,
        name: slot.name,
        sessionId: this.sessionId,
        spec: slot.spec,
        cwd: resolve(this.workingTree(), slot.spec.cwd || "."),
        env: this.agentEnv(slot, resumeContext, resumeTasks),
        ...files,
      });
    } catch (error) {
      this.log(`agent ${slot.name}: ${(error as Error).message}`);
      this.agentLog(slot.name, `cannot start: ${(error as Error).message}`);
      await this.handleExit(slot, undefined, { code: 127, signal: null }, (error as Error).message);
      return;
    }
    slot.process = child;
    slot.startedAt = Date.now();
    slot.status = this.currentStatus() === "paused" ? "paused" : "running";
    if (slot.status === "paused") signalProvenGroup(child.pgid, child.startTime, child.marker, "SIGSTOP");
    this.agentLog(slot.name, `started pid ${child.pid} (process group ${child.pgid})${slot.restarts ? `, restart ${slot.restarts}` : ""}`, true);
    this.log(`agent ${slot.name} started: pid ${child.pid}`);
    await this.ownWrite((batch, record) => {
      const next: AgentRecord = {
        ...storedAgentRecord(batch.get(agentPath(this.sessionId, slot.name)), slot.name, slot.spec),
        status: slot.status,
        pid: child.pid,
        pgid: child.pgid,
        start_time: child.startTime,
        nonce: child.nonce,
        started_at: child.startedAt,
        restarts: slot.restarts,
        restart_at: null,
        command: describeCommand(slot.spec),
      };
      batch.set(agentPath(this.sessionId, slot.name), next);
      record("agent.started", { agent: slot.name, pid: child.pid, pgid: child.pgid, restarts: slot.restarts });
    });
    void child.exited
      .then((exit) => this.handleExit(slot, child, exit))
      .catch((error: Error) => this.log(`agent ${slot.name}: cannot handle its exit: ${error.stack ?? error.message}`));
  }

  /**
   * A write of the supervisor's own (an agent started or exited, the session ended), retried while
   * the lease holds (whileLeaseHolds): dropped, an agent's exit went unrecorded and its restart
   * policy unrun, and a session's end left it reading as interrupted. An attempt whose COMMIT went
   * unanswered may have landed: a retry first looks for the first event each earlier attempt
   * recorded (its seq, type, time and actor) and, finding it, writes nothing again.
   */
  private async ownWrite(fn: Parameters<SessionService["write"]>[0], until = Infinity): Promise<void> {
    const attempts: SessionEvent[][] = [];
    const landed = await this.whileLeaseHolds(() => this.service.write((batch, record) => {
      const found = attempts.find(([first]) => {
        const stored = batch.get(eventPath(this.sessionId, first!.seq)) as SessionEvent | undefined;
        return stored?.type === first!.type && stored.at === first!.at && stored.actor === first!.actor;
      });
      if (found) return found;
      const events: SessionEvent[] = [];
      fn(batch, (...args) => {
        const event = record(...args);
        events.push(event);
        return event;
      });
      if (events.length > 0) attempts.push(events);
      return undefined;
    }, "supervisor"), until);
    if (!landed) return;
    this.log(`event ${landed[0]!.seq} (${landed[0]!.type}) was committed by an attempt that got no answer: not written again`);
    for (const event of landed) this.broadcast(event);
  }

  /**
   * Runs `op` (a store call of the supervisor's own), again every half second while the store
   * cannot be reached (its server restarting) as long as the lease holds, and until `until` (performance.now()).
   */
  private async whileLeaseHolds<T>(op: () => Promise<T>, until = Infinity): Promise<T> {
    for (let tries = 0; ; tries++) {
      try {
        return await op();
      } catch (error) {
        if ((error as ApexError).code !== "APEX_E_STORE_UNREACHABLE" || this.lease?.lost !== false || performance.now() >= until) throw error;
        if (tries === 0) this.log(`cannot reach the store yet, retrying while the lease holds: ${(error as Error).message}`);
        await sleep(500);
      }
    }
  }

  private async handleExit(slot: AgentSlot, child: AgentProcess | undefined, exit: AgentExit, spawnError?: string): Promise<void> {
    if (child && slot.process !== child) return;
    slot.process = undefined;
    // The moment of the exit, not of its record: ending what it left in its group may take a second, or more.
    const at = nowIso();
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    if (child) {
      this.agentLog(slot.name, `pid ${child.pid} ${how}`);
      this.log(`agent ${slot.name} (pid ${child.pid}) ${how}`);
      // Whatever the agent left running in its group goes with it; a stop meanwhile ends it too (terminateAll), not leaving it to a supervisor that exits.
      this.ending.add(child);
      await terminateGroup(child.pgid, child.startTime, child.marker, { graceMs: 1000 }).catch((error) => this.log(String(error))).finally(() => this.ending.delete(child));
    }
    if (this.stopping) return void (slot.status = "stopped");
    const crashed = exit.signal !== null || exit.code !== 0;
    const policy = slot.spec.restart;
    const wantsRestart = policy === "always" || (policy === "on-failure" && crashed);
    // A crash after a stable run is not part of a crash loop: the count starts afresh (as pm2's min_uptime).
    if (child && Date.parse(at) - slot.startedAt >= slot.spec.min_uptime * 1000) slot.restarts = slot.crashes = 0;
    // A clean exit (restarted by `always`) is no crash: it ends a row of them, and max_restarts and the backoff count
    // crashes only. Quick clean exits were counted as a crash loop: after max_restarts of them the agent was left exited.
    if (!crashed) slot.crashes = 0;
    const canRestart = !crashed || slot.crashes < slot.spec.max_restarts;
    const restart = wantsRestart && canRestart;
    slot.status = restart ? "restarting" : crashed ? "failed" : "exited";
    // Exponential backoff (as pm2's exp_backoff_restart_delay): restart_delay, doubled for each crash in a row, up to max_restart_delay.
    const { restart_delay: first, max_restart_delay: cap } = slot.spec;
    const delayMs = Math.round(Math.min(first * 2 ** Math.min(slot.crashes, 30), Math.max(first, cap || 0)) * 1000);
    // Counted from the exit: the time its onError hooks take below is part of the wait, not added to it.
    const restartAt = restart ? new Date(Date.parse(at) + delayMs).toISOString() : null;
    await this.ownWrite((batch, record) => {
      const previous = storedAgentRecord(batch.get(agentPath(this.sessionId, slot.name)), slot.name, slot.spec);
      // What it held goes back to pending, for any agent (its restart too) to claim: nothing else would ever hand it back.
      const released = this.requeue(batch, (task) => task.assignee === slot.name, `${slot.name} ${how} while holding it`);
      // Each restart is counted as it is scheduled, as agent.restarting says it: a restart whose process then cannot be
      // started (its cwd or program gone) never reaches the record of a started process, and status showed it as none.
      const restarts = restart ? slot.restarts + 1 : slot.restarts;
      batch.set(agentPath(this.sessionId, slot.name), { ...previous, status: slot.status, task: null, last_exit: { code: exit.code, signal: exit.signal, at }, restart_at: restartAt, restarts });
      record("agent.exited", { agent: slot.name, pid: child?.pid ?? null, code: exit.code, signal: exit.signal, status: slot.status, released });
      if (restart) record("agent.restarting", { agent: slot.name, restarts: slot.restarts + 1, delay_seconds: delayMs / 1000, restart_at: restartAt });
    });
    if (crashed) {
      const files = this.logFiles(slot.name);
      const logTail = [...tailLines(files.stdoutFile, LOG_TAIL_LINES), ...tailLines(files.stderrFile, LOG_TAIL_LINES).map((line) => `stderr: ${line}`)];
      const error = new ApexError("APEX_E_AGENT_CRASHED", spawnError ?? `Agent ${slot.name} ${how}.`, { details: { agent: slot.name, exitCode: exit.code, signal: exit.signal } });
      await this.service.fireError({
        sessionId: this.sessionId,
        error,
        origin: `agent:${slot.name}`,
        details: { exitCode: exit.code, signal: exit.signal, restarts: slot.restarts, willRestart: restart, logTail },
      });
    }
    if (restartAt !== null) {
      slot.restarts += 1;
      if (crashed) slot.crashes += 1;
      slot.restartTimer = setTimeout(() => {
        slot.restartTimer = undefined;
        if (this.stopping) return;
        if (this.currentStatus() === "paused") slot.restartDeferred = true;
        else void this.runLifecycle(() => this.startAgent(slot, false));
      }, Math.max(0, Date.parse(restartAt) - Date.now()));
      return;
    }
    // Not awaited: ending the session queues behind the lifecycle change that may be running this.
    void this.checkCompletion().catch((error) => this.log(`cannot end the session: ${(error as Error).message}`));
  }

  /**
   * Once no agent runs or waits for a restart: all exited 0 with no pending or active task
   * → completed; otherwise → failed (a crash used up its restarts, or the agents left work
   * undone that nobody is left to do).
   */
  private async checkCompletion(): Promise<void> {
    if (this.stopping || this.slots.size === 0) return;
    const slots = [...this.slots.values()];
    if (slots.some((slot) => slot.process || slot.restartTimer || slot.restartDeferred || slot.status === "starting")) return;
    // Read as the exit before it was written: while the lease holds, a store out of reach does not leave the session active with no agent.
    const open = (await this.whileLeaseHolds(async () => this.service.tasks())).filter((task) => task.status === "pending" || task.status === "active").length;
    const failed = slots.filter((slot) => slot.status === "failed");
    if (failed.length === 0 && open === 0) {
      await this.end("completed", "all agents exited with code 0 and no task is pending or active");
    } else if (failed.length > 0) {
      await this.end("failed", `agent${failed.length > 1 ? "s" : ""} ${failed.map((slot) => slot.name).join(", ")} failed and will not be restarted`);
    } else {
      await this.end("failed", `all agents exited while ${open} task${open === 1 ? " was" : "s were"} still pending or active`);
    }
  }

  // ---------------------------------------------------------------- lifecycle

  /** Lifecycle changes (pause, resume, stop, restarts) run one at a time. */
  private runLifecycle<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(fn);
    this.lifecycle = run.catch(() => undefined);
    return run;
  }

  private currentStatus(): SessionRecord["status"] {
    return this.service.session().status;
  }

  /** The process groups of the agents that run; with `ending`, also those of agents that exited whose leftovers handleExit is still ending. */
  private runningGroups(ending = false): AgentGroup[] {
    const processes = [...this.slots.values()].flatMap((slot) => (slot.process ? [slot.process] : []));
    return [...processes, ...(ending ? this.ending : [])].map((child) => ({ slot: this.slots.get(child.name)!, child, pgid: child.pgid, startTime: child.startTime, marker: child.marker }));
  }

  /** Sets and records the status of the agents of `groups` whose process still runs (one that exited meanwhile keeps what its exit recorded). */
  private markAgents(groups: AgentGroup[], status: "paused" | "running"): Promise<void> {
    const current = groups.filter((group) => group.slot.process === group.child);
    for (const { slot } of current) slot.status = status;
    return this.service.write((batch) => {
      for (const { slot } of current) batch.set(agentPath(this.sessionId, slot.name), { ...storedAgentRecord(batch.get(agentPath(this.sessionId, slot.name)), slot.name, slot.spec), status });
    }, "supervisor");
  }

  /** `callerPid`: the process that asks (`apex pause` sends its own): one of the agents' processes is refused, as the pause would stop it before it had its answer. */
  pause(actor = "supervisor", callerPid?: number): Promise<Record<string, JsonValue>> {
    if (this.startFailure === undefined) this.refuseWhileStopping("pause");
    return this.runLifecycle(async () => {
      this.assertStatus("active", "pause");
      const groups = this.runningGroups();
      this.refuseOwnAgent(groups, callerPid);
      this.pauseTimers();
      this.signalGroups(groups, "SIGSTOP");
      const warnings: string[] = [];
      try {
        const { processes, stopping } = await this.waitForGroups(groups, "stopped");
        await this.markAgents(groups, "paused");
        try {
          await this.engine.fire("onPause", this.service.context());
        } catch (error) {
          warnings.push((error as Error).message);
        }
        await this.setStatus("paused", "session.paused", { processes, ...(stopping.length ? { stopping: stopping.map(({ pid }) => pid) } : {}) }, actor);
        this.log(`paused: ${processes} process${processes === 1 ? "" : "es"} stopped${stopping.length ? ` (${stopping.map(({ agent, pid }) => `${agent} pid ${pid}`).join(", ")} in uninterruptible I/O, stop pending)` : ""}`);
        return { session_id: this.sessionId, name: this.name, status: "paused", agents: groups.length, processes, stopping, warnings };
      } catch (error) {
        // Some process did not stop within the window, or the pause could not be recorded (a full
        // disk, say): the agents run on, those that did stop too, as the session record says (active).
        this.signalGroups(groups, "SIGCONT");
        await this.markAgents(groups, "running").catch(() => undefined);
        this.resumeTimers();
        throw error;
      }
    });
  }

  /**
   * Refuses a pause asked from inside one of the agents it would stop (`callerPid` one of a group's
   * processes, as the pause finds them): the SIGSTOP took the command with its agent, which never
   * had its answer and froze until someone else resumed the session.
   */
  private refuseOwnAgent(groups: AgentGroup[], callerPid: number | undefined): void {
    if (callerPid === undefined) return;
    const scan = processGroups(groups.map((group) => group.pgid));
    const own = groups.find((group) => provenMembers(group.pgid, group.startTime, group.marker, scan).members.some((member) => member.pid === callerPid));
    if (!own) return;
    throw new ApexError("APEX_E_USAGE", `\`apex pause\` cannot run inside agent ${own.slot.name}: a pause stops every process of the session's agents, this command (pid ${callerPid}) and the agent that ran it too, so it would never answer; nothing was paused.`, {
      hint: "Pause the session from outside its agents (a shell in the project: `apex pause`); an agent that needs the others to wait can say so through the memory or a task.",
      details: { agent: own.slot.name, pid: callerPid },
    });
  }

  resume(actor = "supervisor"): Promise<Record<string, JsonValue>> {
    if (this.startFailure === undefined) this.refuseWhileStopping("resume");
    return this.runLifecycle(async () => {
      this.assertStatus("paused", "resume");
      const groups = this.runningGroups();
      this.signalGroups(groups, "SIGCONT");
      let processes = 0;
      try {
        ({ processes } = await this.waitForGroups(groups, "running"));
        await this.markAgents(groups, "running");
        await this.setStatus("active", "session.resumed", { processes }, actor);
      } catch (error) {
        // Some process stayed stopped (a tracer holds it) or the resume could not be recorded: what
        // did continue is stopped again, so that the session is as its record says (paused). What
        // will not stop again runs on: the session is then recorded active, as it is.
        this.signalGroups(groups, "SIGSTOP");
        const paused = await this.waitForGroups(groups, "stopped").then(() => true, () => false);
        await this.markAgents(groups, paused ? "paused" : "running").catch(() => undefined);
        if (!paused) await this.setStatus("active", "session.resumed", { processes }, actor).then(() => this.resumeTimers(), () => undefined);
        const { code, message, hint, details } = error as ApexError;
        throw new ApexError(code ?? "APEX_E_INTERNAL", `${message} ${paused ? "The session stays paused: every process of it was stopped again." : `The session is ${this.currentStatus()}: some of its processes run, others stay stopped.`}`, { ...(hint ? { hint } : {}), details: { ...details, status: this.currentStatus() } });
      }
      const warnings: string[] = [];
      try {
        await this.engine.fire("onResume", this.service.context());
      } catch (error) {
        warnings.push((error as Error).message);
      }
      this.resumeTimers();
      // The agents whose restart came due while paused start now: named in the reply, which said only "0 processes of 0 agents continued".
      const restarted: string[] = [];
      for (const slot of this.slots.values()) if (slot.restartDeferred) await this.startAgent(slot, false).then(() => restarted.push(slot.name));
      this.log(`resumed: ${processes} process${processes === 1 ? "" : "es"} continued`);
      return { session_id: this.sessionId, name: this.name, status: "active", agents: groups.length, processes, restarted, warnings };
    });
  }

  /** `signal` to every group's proven processes, from one scan of /proc for all of them (one a group read every process's stat once per agent). */
  private signalGroups(groups: AgentGroup[], signal: NodeJS.Signals): void {
    const scan = processGroups(groups.map((group) => group.pgid));
    for (const group of groups) signalProvenGroup(group.pgid, group.startTime, group.marker, signal, scan);
  }

  /**
   * Polls /proc until every live process of every group is stopped, or none is, re-sending the
   * signal to stragglers (a child forked just as the signal went out). A process in
   * uninterruptible sleep (state D) with its SIGSTOP pending counts as stopped for a pause: it
   * cannot run again before it stops (proc.ts StopProgress); it is returned in `stopping`. For a
   * resume such a process still lags, and gets SIGCONT again (SIGCONT takes a pending stop back).
   * A trace stop (t) is its tracer's to end, which one that takes SIGSTOP back does at once: for a
   * pause it counts once it has held for half the window (at most 0.5 s), and is not signalled again meanwhile.
   */
  private async waitForGroups(groups: AgentGroup[], want: "stopped" | "running"): Promise<{ processes: number; stopping: Array<{ agent: string; pid: number }> }> {
    const windowMs = pauseVerifyMs();
    const deadline = Date.now() + windowMs;
    const traceStops = new Map<number, number>();
    for (;;) {
      const scan = processGroups(groups.map((group) => group.pgid));
      let count = 0;
      const lagging: Array<{ pid: number; state: string }> = [];
      const stopping: Array<{ agent: string; pid: number }> = [];
      for (const group of groups) {
        const members = provenMembers(group.pgid, group.startTime, group.marker, scan).members;
        count += members.length;
        let groupStopped = true;
        for (const member of members) {
          if (member.state !== "t") traceStops.delete(member.pid);
          else if (want === "stopped" && Date.now() - (traceStops.get(member.pid) ?? traceStops.set(member.pid, Date.now()).get(member.pid)!) < Math.min(500, windowMs / 2)) lagging.push({ pid: member.pid, state: member.state });
          const progress = stopProgress(member);
          if (progress === "stopping") stopping.push({ agent: group.slot.name, pid: member.pid });
          if (progress === "running") groupStopped = false;
          if (want === "stopped" ? progress === "running" : progress !== "running") lagging.push({ pid: member.pid, state: member.state });
        }
        if (want === "stopped" && !groupStopped) signalProvenGroup(group.pgid, group.startTime, group.marker, "SIGSTOP", scan);
      }
      if (lagging.length === 0) return { processes: count, stopping: want === "stopped" ? stopping : [] };
      if (want === "running") for (const { pid } of lagging) signalProcess(pid, "SIGCONT");
      if (Date.now() > deadline) {
        const which = lagging.map(({ pid, state }) => `${pid} (state ${state})`).join(", ");
        const inIo = want === "stopped" && lagging.some(({ state }) => state === "D");
        const traced = want === "running" && lagging.some(({ state }) => state === "t");
        const hint = inIo ? "A process in uninterruptible I/O (state D) with no stop pending acts on SIGSTOP only once the I/O completes; try again." : traced ? "A process in state t is held by its tracer (a debugger): no SIGCONT continues it before the tracer lets it go; then try again." : "Something else may be signalling these processes (a debugger, a job-control shell); try again.";
        throw new ApexError("APEX_E_PROCESS", `Processes ${which} did not ${want === "stopped" ? "stop" : "continue"} within ${(windowMs / 1000).toFixed(1)} s.`, { hint, details: { processes: lagging, window_ms: windowMs } });
      }
      await sleep(5);
    }
  }

  /**
   * `apex stop`: ends the agents, records the session as stopped, fires onStop; the supervisor
   * then exits. With `checkpoint`, a checkpoint of the session is written first (another session
   * or checkpoint is about to take the project over); if it cannot be written, nothing is
   * stopped and the error says why.
   */
  stop(options: { force?: boolean; graceMs?: number; reason?: string; checkpoint?: { trigger: string; description: string }; actor?: string }): Promise<Record<string, JsonValue>> {
    if (this.stopping) return this.stopping;
    let checkpointFailed = false;
    const run = this.runLifecycle(async () => {
      if (this.startFailure !== undefined) throw this.failedStart("stop");
      this.stopBegun = true;
      let checkpoint: JsonValue = null;
      const service = options.checkpoint ? checkpointServiceFor(this.store) : undefined;
      if (options.checkpoint && service) {
        try {
          const created = await service.create({ sessionId: this.sessionId, ...options.checkpoint });
          checkpoint = created ? { id: created.id, name: checkpointLabel(created.sequence), trigger: created.trigger } : null;
        } catch (error) {
          checkpointFailed = true;
          throw error;
        }
      }
      this.clearTimers();
      const ended = await this.terminateAll({ force: Boolean(options.force), graceMs: options.graceMs ?? DEFAULT_STOP_GRACE_MS });
      const reason = options.reason ?? "stopped by the user";
      // Exits even if the records cannot be written (a damaged record): the agents are gone, and a supervisor left running would answer nothing but this failure.
      const warnings = await this.finish("stopped", reason, options.actor).finally(() => this.scheduleShutdown(0));
      // A plugin that failed in beforeStop or onStop is told to who stopped it (as pause and resume do), not only logged.
      return { session_id: this.sessionId, name: this.name, status: "stopped", reason, processes_ended: ended, checkpoint, ...(warnings.length > 0 ? { warnings } : {}) };
    });
    this.stopping = run;
    // A checkpoint that could not be written stopped nothing: the session goes on as it was.
    run.catch(() => {
      if (checkpointFailed && this.stopping === run) [this.stopping, this.stopBegun] = [undefined, false];
    });
    return run;
  }

  /** The session ended by itself (completed or failed): record it and exit. */
  private async end(status: "completed" | "failed", outcome: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = this.runLifecycle(async () => {
      this.stopBegun = true;
      this.clearTimers();
      await this.terminateAll({ graceMs: 2000 });
      await this.finish(status, outcome).finally(() => this.scheduleShutdown(0));
      return { session_id: this.sessionId, name: this.name, status, reason: outcome };
    });
    await this.stopping;
  }

  private async terminateAll(options: { force?: boolean; graceMs?: number }): Promise<number> {
    const groups = this.runningGroups(true);
    const results = await Promise.all(
      groups.map(async (group) => {
        try {
          return (await terminateGroup(group.pgid, group.startTime, group.marker, options)).length;
        } catch (error) {
          this.log(`agent ${group.slot.name}: ${(error as Error).message}`);
          return 0;
        }
      }),
    );
    // Wait (briefly) until each leader was reaped, so exits are recorded as stops.
    const deadline = Date.now() + 3000;
    while (this.runningGroups().length > 0 && Date.now() < deadline) await sleep(10);
    return results.reduce((sum, n) => sum + n, 0);
  }

  /**
   * The lease is gone (another host took the session over, or it ran out unrenewed): this process
   * may no longer act for the session. It ends its own agents (their process groups, proven by
   * their markers) and exits, writing nothing: the store is the new holder's. It says so on stderr
   * (the log) and exits with APEX_E_LEASE_LOST's code, 4 (conflict: the session is not its own any more).
   */
  async leaseLost(reason: string): Promise<void> {
    if (this.shutdownStarted) return;
    this.log(`session ${this.sessionId}: ${reason}; stopping this supervisor's agents and exiting`);
    this.stopping ??= Promise.resolve({ session_id: this.sessionId, status: "lost", reason });
    this.clearTimers();
    // Each agent's log (`apex logs`) says why it ends, before the line of its exit.
    for (const slot of this.slots.values()) if (slot.process) this.agentLog(slot.name, `this supervisor lost its lease on the session: ${reason}; ending pid ${slot.process.pid}`, true);
    const ended = await this.terminateAll({ graceMs: 2000 }).catch((error) => {
      this.log(`cannot end the agents: ${(error as Error).message}`);
      return 0;
    });
    this.log(`${ended} agent process${ended === 1 ? "" : "es"} ended`);
    // Not an end of the session's own: what runs the supervisor (a service manager, a script) sees it in the exit code too.
    const code = ErrorCodes.APEX_E_LEASE_LOST;
    process.stderr.write(`[${nowIso()}] error[APEX_E_LEASE_LOST]: this supervisor lost its lease on session ${this.sessionId}: ${reason}. It ended its agents and exits with code ${code}.\n`);
    await this.shutdown(code);
  }

  /** Writes the final records: agents, session status and outcome, history; fires onStop. Resolves to the hooks' failures. */
  private async finish(status: "stopped" | "completed" | "failed", outcome: string, actor = "supervisor"): Promise<string[]> {
    // A hook that fails (or a store that cannot be read for its context) is logged: the session ends all the same.
    const warnings: string[] = [];
    const fire = (hook: "beforeStop" | "onStop") =>
      (async () => this.engine.fire(hook, { sessionId: this.sessionId, session: this.service.session(), reason: outcome }))().catch((error: Error) => {
        // A plugin's failure names its hook already ("plugin x failed in onStop: …"): not said twice.
        warnings.push(error.message.includes(` in ${hook}`) ? error.message : `${hook}: ${error.message}`);
        this.log(warnings.at(-1)!);
      });
    await fire("beforeStop");
    // Renewed through beforeStop (a slow hook must not leave the session to another host's takeover);
    // the record now leaves /sessions/<sid>, so a renewal would find it ended.
    this.lease?.release();
    const at = nowIso();
    const recorded = this.ownWrite((batch, record) => {
      for (const slot of this.slots.values()) {
        const agent = batch.get(agentPath(this.sessionId, slot.name));
        // An agent a stop kept from starting is stopped too (start's report says so).
        slot.status = slot.status === "exited" || slot.status === "failed" ? slot.status : "stopped";
        if (agent !== undefined) batch.set(agentPath(this.sessionId, slot.name), { ...storedAgentRecord(agent, slot.name, slot.spec), status: slot.status });
      }
      const session = batch.get(sessionPath(this.sessionId)) as SessionRecord | undefined;
      if (!session) return;
      const next: SessionRecord = {
        ...session,
        status,
        outcome,
        ended_at: at,
        updated_at: at,
        history: [...historyOf(session), { event: status, at, reason: outcome }],
      };
      batch.delete(sessionPath(this.sessionId));
      batch.set(historyPath(this.sessionId), next);
      const current = batch.get(CURRENT_SESSION_PATH) as { session_id?: string } | undefined;
      if (current?.session_id === this.sessionId) batch.delete(CURRENT_SESSION_PATH);
      setActiveSession(batch, this.sessionId, null);
      record(`session.${status}`, { reason: outcome }, actor);
    }, performance.now() + (this.lease?.ttlMs ?? 0));
    await recorded.catch((error: ApexError) => {
      throw new ApexError(error.code ?? "APEX_E_STORE", `The agents have ended, but the session could not be recorded as ${status}: ${error.message}`, { hint: "It reads as interrupted meanwhile: run `apex stop` once the store is back.", cause: error });
    });
    this.log(`session ${status}: ${outcome}`);
    await fire("onStop");
    return warnings;
  }

  private assertStatus(expected: "active" | "paused", action: string): void {
    if (this.startFailure !== undefined) throw this.failedStart(action);
    this.refuseWhileStopping(action);
    const status = this.currentStatus();
    if (status === expected) return;
    // A pause of a paused session, a resume of an active one: already done, not impossible ("The session is active; it cannot resume", with a hint to pause it).
    const hint = status === "paused" ? "`apex resume` continues it." : status === "active" ? "It runs; `apex pause` pauses it." : undefined;
    // (no status: a record written by hand, `memory set --force`, while the session runs)
    throw new ApexError("APEX_E_SESSION_STATE", hint ? `The session is already ${status}: there is nothing to ${action}.` : `The session is ${typeof status === "string" ? status : "of no known status (its record, written by hand, has none)"}; it cannot ${action}.`, { hint: hint ?? (typeof status === "string" ? undefined : "`apex stop` ends it."), details: { session_id: this.sessionId, status: typeof status === "string" ? status : null } });
  }

  /** True while the session ends (a stop or its end: hooks run, agents are reaped); its record says active or paused until it is written. */
  isStopping(): boolean { return this.stopBegun && this.startFailure === undefined && !this.lease?.lost; }

  /** Pause and resume are refused at once while the session stops, rather than after waiting for the stop to end. */
  private refuseWhileStopping(action: string): void {
    if (this.stopBegun) throw new ApexError("APEX_E_SESSION_STATE", `The session is stopping; it cannot ${action}.`, { hint: "`apex status` shows it as stopping until it has stopped.", details: { session_id: this.sessionId, status: "stopping" } });
  }

  private async setStatus(status: "active" | "paused", eventType: string, data: Record<string, JsonValue>, actor: string): Promise<void> {
    await this.service.write((batch, record) => {
      const session = batch.get(sessionPath(this.sessionId)) as SessionRecord;
      const at = nowIso();
      setSessionRecord(batch, {
        ...session,
        status,
        updated_at: at,
        history: [...historyOf(session), { event: status === "paused" ? "paused" : "resumed", at }],
      });
      record(eventType, data);
    }, actor);
  }

  // ---------------------------------------------------------------- timers

  private armTimers(): void {
    const service = checkpointServiceFor(this.store);
    // The checkpoint plugin's own `interval` option, when set, wins over the session setting.
    const interval = service?.interval ?? this.config.session.auto_checkpoint_interval;
    if (interval > 0 && service) {
      let running = false;
      this.checkpointTimer = setInterval(() => {
        // A checkpoint slower than the interval is not stacked with another one.
        if (running) return;
        running = true;
        void service
          .create({ sessionId: this.sessionId, trigger: "interval", description: `every ${interval} s` })
          .catch((error: Error) => this.service.fireError({ sessionId: this.sessionId, error, origin: "supervisor", details: { trigger: "interval" } }))
          .finally(() => {
            running = false;
          });
      }, interval * 1000);
    }
    const timeout = this.config.session.session_timeout;
    if (timeout > 0) {
      this.idleRemainingMs = timeout * 1000;
      this.startIdleTimer();
    }
  }

  private startIdleTimer(): void {
    if (this.idleRemainingMs <= 0) return;
    this.idleDeadline = Date.now() + this.idleRemainingMs;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      // A timeout past one Node.js timer (2^31-1 ms, ~24.8 days) runs as several.
      if ((this.idleRemainingMs = this.idleDeadline - Date.now()) > 0) return this.startIdleTimer();
      const seconds = this.config.session.session_timeout;
      void this.stop({ reason: `timed out: no agent activity for ${seconds} s` });
    }, Math.min(this.idleRemainingMs, 2 ** 31 - 1));
  }

  private noteActivity(): void {
    const timeout = this.config.session.session_timeout;
    if (timeout <= 0 || !this.idleTimer) return;
    this.idleRemainingMs = timeout * 1000;
    this.startIdleTimer();
  }

  private pauseTimers(): void {
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    this.checkpointTimer = undefined;
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
      this.idleRemainingMs = Math.max(1, this.idleDeadline - Date.now());
    }
  }

  private resumeTimers(): void {
    const remaining = this.idleRemainingMs;
    this.armTimers();
    if (remaining > 0 && this.config.session.session_timeout > 0) {
      this.idleRemainingMs = remaining;
      this.startIdleTimer();
    }
  }

  /** Every timer of the session, agents' pending restarts included (the session is ending). */
  private clearTimers(): void {
    if (this.logTimer) clearInterval(this.logTimer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.checkpointTimer = undefined;
    this.idleTimer = undefined;
    for (const slot of this.slots.values()) {
      clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
      slot.restartDeferred = false;
    }
  }

  // ---------------------------------------------------------------- events and methods

  subscribe(listener: (event: SessionEvent) => void): () => void {
    this.subscribers.add(listener);
    return () => this.subscribers.delete(listener);
  }

  private broadcast(event: SessionEvent): void {
    for (const listener of this.subscribers) listener(event);
  }

  eventSeq(): number {
    return ((this.store.get(countersPath(this.sessionId)) as { events?: number } | undefined)?.events ?? 0);
  }

  /**
   * Records checkpoints and errors in the audit trail, whichever plugin caused them. A checkpoint is recorded first (stage -1), before
   * the plugins' taps: behind a slow one, a crash lost its event. Not in the checkpoint's own transaction, as on the store (hooks.ts):
   * subscribers get events as they are committed, and drop one whose seq is below what they have seen.
   */
  private tapEngine(): void {
    this.engine.hooks.afterCheckpoint.tapPromise({ name: "session", stage: -1 }, async (info) => {
      if (info.sessionId !== this.sessionId) return;
      await this.service.write((_batch, record) => {
        record("checkpoint", { id: info.id, sequence: info.sequence, trigger: info.trigger });
      }, this.requestActor.getStore() ?? "supervisor");
    });
    this.engine.hooks.onError.tapPromise("session", async (context) => {
      try {
        await this.service.write((_batch, record) => {
          const details = (context.details ?? {}) as Record<string, JsonValue>;
          record("error", { origin: context.origin, message: context.error.message, code: context.error.code ?? null, details });
        }, "supervisor");
      } catch (error) {
        this.log(`cannot record an error event: ${(error as Error).message}`);
      }
      this.log(`error (${context.origin}): ${context.error.message}`);
    });
  }

  private registerMethods(): void {
    registerSupervisorMethods(this.server, this);
    // Methods of the checkpoint service (checkpoint.create, …): served here, where the store's writer is.
    // An agent's write among them (a LangGraph step, a checkpoint) is activity, as a memory write is: a graph that only
    // stepped was stopped by session_timeout ("no agent activity") partway through its run.
    const reads = /\.(list|show|diff|getTuple)$/;
    for (const [name, method] of Object.entries(checkpointServiceFor(this.store)?.methods ?? {})) {
      this.server.register(name, async (params) => {
        ++this.serving;
        try {
          const result = await this.requestActor.run(actorParam(params), async () => method(params));
          if (!reads.test(name)) this.service.noteActivity(actorParam(params));
          return result;
        } finally {
          if (--this.serving === 0) this.requestActor.disable();
        }
      });
    }
  }

  /** `apex serve` (one or several) says who is connected through it; each report replaces its previous one. */
  noteConnections(server: string, users: unknown): { connected: number } {
    const list = Array.isArray(users) ? (users as Connection[]).filter((user) => user && typeof user.user === "string").slice(0, 1000) : [];
    if (list.length === 0) this.connectionReports.delete(server);
    else this.connectionReports.set(server, { at: Date.now(), users: list });
    return { connected: this.connections().length };
  }

  /** Users connected through `apex serve` now (reports older than 30 s are dropped). */
  connections(): Connection[] {
    const out: Connection[] = [];
    for (const [server, report] of this.connectionReports) {
      if (Date.now() - report.at > CONNECTIONS_TTL_MS) this.connectionReports.delete(server);
      else out.push(...report.users);
    }
    // A user whose access was revoked (its record gone) since the server's last report is not connected any more.
    return out.filter((user) => typeof user.record !== "string" || this.store.get(user.record) !== undefined).map(({ record: _record, ...user }) => user);
  }

  /** Status from the supervisor's own view (used by `session.status`). */
  agentsView(): Array<Record<string, JsonValue>> {
    return [...this.slots.values()].map((slot) => ({ name: slot.name, status: slot.status, pid: slot.process?.pid ?? null, pgid: slot.process?.pgid ?? null, restarts: slot.restarts }));
  }

  private scheduleShutdown(code: number): void {
    if (this.shutdownStarted) return;
    this.shutdownStarted = true;
    setImmediate(() => void this.shutdown(code));
  }

  /** Closes the socket, removes the runtime file and closes the store; then the process exits. */
  async shutdown(code: number): Promise<void> {
    this.shutdownStarted = true;
    this.clearTimers();
    this.lease?.stop();
    // The runtime file goes first: from now on CLI commands no longer route to this process.
    removeRuntime(this.config.storeDir, process.pid, this.sessionId);
    // Requests under way are answered (their outcome, or after the grace that it is unknown) before the store closes under them.
    await this.server.close(shutdownGraceMs()).catch(() => undefined);
    await this.store.close().catch(() => undefined);
    this.log(`supervisor exits (${code})`);
    this.onExit(code);
  }

  /** SIGTERM, SIGINT or SIGHUP to the supervisor: stop the session cleanly rather than orphan agents. */
  async onSignal(signal: NodeJS.Signals): Promise<void> {
    // `apex stop --grace D` of a supervisor whose socket is gone wrote its grace beside the runtime file before the SIGTERM.
    const graceMs = signal === "SIGTERM" ? takeStopRequest(this.config.storeDir, this.sessionId, processStartTime(process.pid)) : undefined;
    this.log(`received ${signal}: stopping the session${graceMs === undefined ? "" : ` (its agents' grace: ${graceMs / 1000} s, as \`apex stop --grace\` asked)`}`);
    await this.stop({ reason: `the supervisor received ${signal}`, ...(graceMs === undefined ? {} : { graceMs }) }).catch((error: Error) => this.log(`cannot stop: ${error.message}`));
  }
}

/** How long requests under way at the supervisor's exit may take to be answered: 5 s, or APEX_SHUTDOWN_GRACE_MS (ms). */
const shutdownGraceMs = (): number => (Number(process.env.APEX_SHUTDOWN_GRACE_MS) > 0 ? Number(process.env.APEX_SHUTDOWN_GRACE_MS) : 5000);

function checkpointLabel(sequence: number): string {
  return `checkpoint-${String(sequence).padStart(3, "0")}`;
}

