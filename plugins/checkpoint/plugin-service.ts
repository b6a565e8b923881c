import { AsyncLocalStorage } from "node:async_hooks";
import type { CheckpointDraft, CheckpointInfo } from "../../core/engine.js";
import { ApexError, isApexError } from "../../core/errors.js";
import type { CheckpointService, RestoreOutcome } from "../../core/session/checkpoints.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { readView } from "../../core/store/port.js";
import { actorParam } from "../../core/actor.js";
import { findSession, isEnded, liveMemoryOwner } from "../../core/session/sessions.js";
import { shortSessionId } from "../../core/session/names.js";
import { Catalog, summaryOf, type CheckpointSummary, type Located } from "./catalog.js";
import {
  checkpointInfo,
  createCheckpoint,
  deleteCheckpoint,
  recordDeletion,
  holdCheckpoint,
  pinCheckpoint,
  diffCheckpoints,
  restoreCheckpoint,
  type CheckpointManifest,
} from "./checkpoints.js";
import type { LostItem, RecoveryReport } from "./recover.js";
import { agentsRoot, checkpointName, isRecord, manifestPath, tasksRoot } from "./manifest.js";
import { currentSessionId, loadManifest, resolveCheckpoint } from "./refs.js";
import { branchMethods } from "./branch-methods.js";
import { sessionLabel, sessionName } from "./session-name.js";
import { defaultSessionIfAny, resolveSessionRef, sessionFor } from "./plugin-sessions.js";
import { inScope, memoryMountOf, normalizeScope, scopeKey, type MemoryScope } from "./scope.js";

/**
 * The checkpoint plugin's side of a session: writing checkpoints (one at a time, skipping
 * interval checkpoints when nothing changed), restoring them for `apex start --continue`
 * (verified first, the state they replace saved first), forced recovery, and the control
 * methods `apex checkpoint …` and `apex session reconstruct` call. It is what the plugin
 * hands to core/session/checkpoints.ts as the session's CheckpointService.
 */

export interface SessionCheckpointsOptions {
  /** The beforeCheckpoint waterfall. */
  enrich?: (draft: CheckpointDraft) => Promise<CheckpointDraft>;
  /** The afterCheckpoint hook. */
  afterCheckpoint?: (info: CheckpointInfo) => Promise<void>;
  /** Memory covered by checkpoints (the plugin's `paths` option). */
  scope?: Partial<MemoryScope>;
  /** Seconds between interval checkpoints when the plugin's `interval` option is set. */
  interval?: number | undefined;
  warn?: (message: string) => void;
}

export interface CreateRequest {
  sessionId: string;
  trigger: string;
  description?: string;
  pin?: boolean;
  /** Write nothing when memory, tasks and agent states (`"memory"`: memory) did not change since the session's latest checkpoint. */
  skipUnchanged?: boolean | "memory";
}

/** Triggers APEX itself uses for checkpoints it takes around a restore. */
export const RESTORE_TRIGGERS = { before: "beforeRestore", after: "restore", recovery: "recovery" } as const;

const MAX_DESCRIPTION = 240;

/** The methods of LangGraphStore (langgraph.ts), listed here so that its code loads only when one is called. */
export const LANGGRAPH_METHODS = ["langgraph.put", "langgraph.putWrites", "langgraph.getTuple", "langgraph.list", "langgraph.deleteThread"] as const;

export class SessionCheckpoints {
  private readonly scope: MemoryScope;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Set while this service writes or restores a checkpoint (including the hooks that run meanwhile).
   * Disabled once no write is queued: on Node 20 an enabled AsyncLocalStorage runs a hook at every
   * promise of the process, ~10% of a busy supervisor's CPU (docs/architecture.md).
   */
  private readonly writing = new AsyncLocalStorage<true>();
  private queued = 0;

  constructor(
    readonly store: Store,
    private readonly options: SessionCheckpointsOptions = {},
  ) {
    this.scope = normalizeScope(options.scope);
  }

  /**
   * True inside the writing of a checkpoint (its beforeCheckpoint and afterCheckpoint taps,
   * and whatever they fire): checkpoints requested from there would wait for themselves.
   */
  get busy(): boolean {
    return this.writing.getStore() === true;
  }

  /** Runs `fn` after every earlier write or restore of this service, marked as writing. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy) {
      return Promise.reject(
        new ApexError("APEX_E_CONFLICT", "A checkpoint cannot be requested while one is being written (from a beforeCheckpoint or afterCheckpoint tap).", {
          hint: "Request it from another hook.",
        }),
      );
    }
    this.queued++;
    const run = this.queue.then(() => this.writing.run(true, fn));
    this.queue = run.catch(() => undefined).then(() => void (--this.queued === 0 && this.writing.disable()));
    return run;
  }

  /** Writes a checkpoint of the session; undefined when skipUnchanged found nothing new. */
  create(request: CreateRequest): Promise<(CheckpointInfo & { summary: CheckpointSummary; warnings?: string[] }) | undefined> {
    return this.serialize(() => this.write(request));
  }

  private async write(request: CreateRequest): Promise<(CheckpointInfo & { summary: CheckpointSummary; warnings?: string[] }) | undefined> {
    if (request.skipUnchanged && this.unchangedSinceLatest(request.sessionId, request.skipUnchanged === "memory")) return undefined;
    const { manifest } = await createCheckpoint(this.store, {
      sessionId: request.sessionId,
      trigger: request.trigger,
      description: clip(request.description ?? ""),
      pin: request.pin ?? false,
      scope: this.scope,
      ...(this.options.enrich ? { enrich: this.options.enrich } : {}),
    });
    const info = checkpointInfo(manifest);
    let warnings: string[] | undefined;
    try {
      await this.options.afterCheckpoint?.(info);
    } catch (error) {
      // The checkpoint is written; the failing afterCheckpoint tap was reported to onError by the engine.
      // Its session as session list prints it (a branch by its name): a reference `checkpoint show` takes.
      this.options.warn?.(`afterCheckpoint after ${sessionLabel(this.store, request.sessionId)}/${manifest.name}: ${(error as Error).message}`);
      warnings = [(error as Error).message]; // for `checkpoint create`, whose user saw nothing of it (the supervisor's log had it)
    }
    return { ...info, summary: summaryOf(manifest), ...(warnings ? { warnings } : {}) };
  }

  /**
   * True when nothing a checkpoint holds changed since the session's latest checkpoint: no
   * write to memory in scope, to the session's tasks or to its agent states in the revision
   * log after the revision that checkpoint captured (and the log is complete since, starting
   * with the checkpoint's own manifest: it was written in this store).
   */
  unchangedSinceLatest(sessionId: string, memoryOnly = false): boolean {
    let latest: CheckpointSummary | undefined;
    try {
      latest = Catalog.of(this.store).latest(sessionId);
    } catch {
      return false;
    }
    if (!latest) return false;
    const manifest = safeGet(this.store, manifestPath(sessionId, latest.sequence));
    if (!isRecord(manifest) || !isRecord(manifest.memory)) return false;
    try {
      if (scopeKey(normalizeScope(manifest.memory.scope as Partial<MemoryScope>)) !== scopeKey(this.scope)) return false;
    } catch {
      return false;
    }
    const tasks = `${tasksRoot(sessionId)}/`;
    const agents = `${agentsRoot(sessionId)}/`;
    // A session in a git worktree keeps its memory below its own root; other sessions' writes are not its changes.
    const mount = memoryMountOf(this.store, sessionId);
    const inMemory = (path: string) => (mount === "" ? inScope(this.scope, path) : path.startsWith(`${mount}/`) && inScope(this.scope, path.slice(mount.length)));
    let expected = latest.revision + 1;
    for (const change of this.store.changesSince(latest.revision)) {
      if (change.revision !== expected) return false; // a hole in the log: cannot tell
      // A checkpoint written in this store is followed by its manifest's own write. One imported from
      // another project names a revision of that project's store, which says nothing of this one: the
      // live state it called unchanged was dropped, unsaved, by the restore that trusted it.
      if (expected === latest.revision + 1 && change.path !== manifestPath(sessionId, latest.sequence)) return false;
      expected += 1;
      // The supervisor's own bookkeeping of agent processes (pid, status on start, pause, exit) is not work to save.
      if (change.path.startsWith(agents) && change.actor === "supervisor") continue;
      if (memoryOnly && (change.path.startsWith(tasks) || change.path.startsWith(agents))) continue;
      if (change.path.startsWith(tasks) || change.path.startsWith(agents) || inMemory(change.path)) return false;
    }
    return expected > latest.revision + 1 && expected - 1 === this.store.revision();
  }

  // ------------------------------------------------------------------------------- restore

  /** The restore step of `apex start --continue` (see CheckpointService.restore). */
  restore(request: { sessionId: string; checkpoint: string | undefined; force?: boolean; replacesOtherSession?: boolean | string }): Promise<RestoreOutcome | undefined> {
    return this.serialize(async () => {
      const started = performance.now();
      const located = this.locate(request.sessionId, this.stillLatest(request.sessionId, request.checkpoint));
      if (!located) {
        if (!request.force) return undefined; // nothing saved yet: continue from the current state
        throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `Session ${request.sessionId} has no checkpoints to recover from.`);
      }
      // The checkpoint being restored survives the checkpoint of the state it replaces (and the
      // retention that one triggers); the restore releases it once it has been read.
      const release = holdCheckpoint(this.store, located.id, "restore");
      try {
        return await (request.force
          ? this.forceRestore(request.sessionId, located, started, release, request.replacesOtherSession ?? false)
          : this.verifiedRestore(request.sessionId, located, started, release, request.replacesOtherSession ?? false));
      } finally {
        release();
      }
    });
  }

  private locate(sessionId: string, ref: string | undefined): Located | undefined {
    if (ref !== undefined) return resolveCheckpoint(this.store, ref, { sessionId });
    const latest = Catalog.of(this.store).latest(sessionId);
    return latest ? { sessionId, sequence: latest.sequence, id: latest.id } : undefined;
  }

  /**
   * The checkpoint prepare pinned as the session's latest (asked for none): a merge into the
   * session written before its claim (it did not run yet, so the merge was a checkpoint on it)
   * comes after it, and the restore takes that one instead: restoring the one pinned, it was lost.
   */
  private pinnedLatest: Located | undefined;

  /** `checkpoint`, or the session's latest when prepare pinned `checkpoint` as its latest (see pinnedLatest). */
  private stillLatest(sessionId: string, checkpoint: string | undefined): string | undefined {
    const pinned = this.pinnedLatest;
    this.pinnedLatest = undefined;
    return pinned?.sessionId === sessionId && pinned.id === checkpoint ? undefined : checkpoint;
  }

  /** See CheckpointService.prepare: the checkpoint `--continue` will restore, verified before the session is claimed. */
  prepare(request: { sessionId: string; checkpoint: string | undefined; force?: boolean }): Promise<{ checkpoint: string | undefined }> {
    return this.serialize(async () => {
      const located = this.locate(request.sessionId, request.checkpoint);
      if (request.checkpoint === undefined) this.pinnedLatest = located;
      else if (located?.id !== this.pinnedLatest?.id) this.pinnedLatest = undefined;
      if (!located) {
        if (request.force) throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `Session ${request.sessionId} has no checkpoints to recover from.`);
        return { checkpoint: undefined };
      }
      if (!request.force) await this.verify(located, request.sessionId);
      return { checkpoint: located.id };
    });
  }

  /** The checkpoint `prepare` verified last (restore then need not re-hash it), and how long that took. */
  private verified: { id: string; ms: number; cpuMs: number } | undefined;

  /** Loads and re-hashes every tree node and value of a checkpoint; throws APEX_E_INTEGRITY naming the first problem. */
  private async verify(located: Located, sessionId: string): Promise<CheckpointManifest> {
    const started = performance.now();
    const cpu = process.cpuUsage();
    // The validator is loaded here, by a restore: a session that only writes checkpoints never loads it.
    const { verifyCheckpoint } = await import("./validate.js");
    const manifest = loadManifest(this.store, located);
    const problems = verifyCheckpoint(this.store, manifest);
    if (problems.length > 0) {
      // The text names another session's checkpoint as session list names the session (experiment/checkpoint-004, 3f2a9c1e/…); details keep the whole id.
      const whole = `${manifest.session_id}/${manifest.name}`;
      const label = this.checkpointLabel(manifest, sessionId);
      throw new ApexError("APEX_E_INTEGRITY", `${label} does not verify (${problems.length} problem${problems.length === 1 ? "" : "s"}): ${problems[0]!.message.split(whole).join(label)}`, {
        hint: `Restore what still verifies with \`apex start --force-recovery ${manifest.id}\`, or continue from an earlier checkpoint (\`apex checkpoint list\`); \`apex session validate\` lists every problem.`,
        details: { checkpoint: manifest.session_id === sessionId ? manifest.name : whole, problems: problems.slice(0, 20).map((problem) => ({ ...problem })) },
      });
    }
    this.verified = { id: manifest.id, ms: performance.now() - started, cpuMs: cpuMsSince(cpu) };
    return manifest;
  }

  /** A checkpoint as text names it: its name in `sessionId`, else `<session>/<name>` with the session as session list prints it (its name, else its uuid's short form). */
  private checkpointLabel(checkpoint: { session_id: string; name: string }, sessionId: string): string {
    return checkpoint.session_id === sessionId ? checkpoint.name : `${sessionLabel(this.store, checkpoint.session_id)}/${checkpoint.name}`;
  }

  private async verifiedRestore(sessionId: string, located: Located, started: number, release: () => void, otherSessionsState: boolean | string = false): Promise<RestoreOutcome> {
    // Verified before anything changes (by prepare, before the session was claimed, or here).
    const manifest = this.verified?.id === located.id ? loadManifest(this.store, located) : await this.verify(located, sessionId);
    const verifyMs = this.verified?.ms ?? 0;
    const verifyCpuMs = this.verified?.cpuMs ?? 0;
    this.verified = undefined;
    const cpu = process.cpuUsage();
    const label = this.checkpointLabel(manifest, sessionId);
    const latestBefore = Catalog.of(this.store).latest(sessionId);
    let mark = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = Math.round(now - mark);
      mark = now;
      return ms;
    };
    lap();
    // The state being replaced is saved first as a beforeRestore checkpoint, which retention
    // keeps; only when the latest checkpoint already holds that state and is kept as well
    // (beforeRestore, manual, pinned) is no copy written, and that one is named instead.
    // Live memory that is another session's (continuing a branch or an older session) is that
    // session's business (making way checkpointed it): nothing of it is saved as this session's.
    const held = otherSessionsState ? this.heldByOwner(otherSessionsState) : this.heldByLatest(sessionId);
    const saved = held || otherSessionsState ? undefined : await this.write({ sessionId, trigger: RESTORE_TRIGGERS.before, description: `state before restoring ${manifest.name}` });
    const saveMs = lap();
    const result = await restoreCheckpoint(this.store, manifest, { targetSessionId: sessionId });
    release();
    const restoreMs = lap();
    // The restored state becomes the session's latest checkpoint, so that a later `--continue last` comes back to it.
    const after =
      saved || latestBefore?.id !== manifest.id
        ? await this.write({ sessionId, trigger: RESTORE_TRIGGERS.after, description: `restored from ${label}` })
        : undefined;
    const afterMs = lap();
    const details: JsonValue = {
      id: manifest.id,
      session_id: manifest.session_id,
      session_name: sessionName(this.store, manifest.session_id),
      name: manifest.name,
      trigger: manifest.trigger,
      description: manifest.description,
      created_at: manifest.created_at,
      forced: false,
      memory: { set: result.memory.set.length, deleted: result.memory.deleted.length, keys: manifest.memory.keys },
      tasks: { set: result.tasks.set.length, deleted: result.tasks.deleted.length, active: this.activeTasks(sessionId) },
      agents: { set: result.agents.set.length, deleted: result.agents.deleted.length },
      saved_before: saved ? saved.summary.name : (held?.name ?? null),
      checkpoint_after: after ? after.summary.name : null,
      // Verification ran before the session was claimed (prepare); it is part of the restore all the same.
      duration_ms: Math.round(performance.now() - started + verifyMs),
      timings_ms: { verify: Math.round(verifyMs), save_before: saveMs, restore: restoreMs, checkpoint_after: afterMs },
      // CPU time of this process for all of it: what the restore costs whatever else the machine runs.
      cpu_ms: Math.round(verifyCpuMs + cpuMsSince(cpu)),
    };
    return { checkpoint: manifest.id, details };
  }

  /**
   * `apex start --force-recovery`: memory, the session's tasks and its agent states as far as
   * they verify (forceRecover), in one transaction: records that verify are put back, records
   * the checkpoint provably lacks are deleted, records in a lost part keep their current value.
   */
  private async forceRestore(sessionId: string, located: Located, started: number, release: () => void, otherSessionsState: boolean | string = false): Promise<RestoreOutcome> {
    const warnings: string[] = [];
    // As for verifiedRestore: live memory that is another session's is not saved as this one's.
    const held = otherSessionsState ? this.heldByOwner(otherSessionsState) : this.heldByLatest(sessionId);
    let saved: string | null = held?.name ?? null;
    if (!held && !otherSessionsState) {
      try {
        saved = (await this.write({ sessionId, trigger: RESTORE_TRIGGERS.before, description: `state before recovering ${checkpointName(located.sequence)}` }))?.summary.name ?? null;
      } catch (error) {
        warnings.push(`The current state could not be checkpointed first: ${(error as Error).message}`);
      }
    }
    // Memory, tasks and agents in one transaction: a crash leaves all of them recovered or none.
    const { forceRecover } = await import("./recover.js");
    const report = await forceRecover(this.store, located.id, { sessionId: located.sessionId, intoSession: sessionId });
    release();
    const lostCount = report.memory.lost.length + report.tasks.lost.length + report.agents.lost.length;
    let after: string | null = null;
    try {
      after =
        (
          await this.write({
            sessionId,
            trigger: RESTORE_TRIGGERS.recovery,
            description: `force-recovered from ${this.checkpointLabel({ session_id: located.sessionId, name: checkpointName(located.sequence) }, "")}: ${lostCount === 0 ? "nothing lost" : `${lostCount} item${lostCount === 1 ? "" : "s"} lost`}`,
          })
        )?.summary.name ?? null;
    } catch (error) {
      warnings.push(`The recovered state could not be checkpointed: ${(error as Error).message}`);
    }
    const details: JsonValue = {
      ...recoveryDetails(report, sessionName(this.store, located.sessionId)),
      saved_before: saved,
      checkpoint_after: after,
      warnings,
      duration_ms: Math.round(performance.now() - started),
    };
    return { checkpoint: located.id, details };
  }

  /**
   * The session's latest checkpoint when it holds the current state and retention keeps it on
   * its own account (a beforeRestore or manual checkpoint, or a pinned one), else undefined.
   */
  /**
   * Where the state another session left in the live memory is saved, as a reference to its
   * checkpoint (`<session>/checkpoint-007`, the session by name or short id): its latest, when
   * nothing changed since (making way checkpointed it); undefined when unknown (`true`) or changed.
   */
  private heldByOwner(owner: boolean | string): { name: string } | undefined {
    if (typeof owner !== "string" || !this.unchangedSinceLatest(owner)) return undefined;
    const latest = Catalog.of(this.store).latest(owner);
    const name = findSession(this.store, owner)?.name;
    return latest && { name: `${typeof name === "string" ? name : shortSessionId(owner)}/${latest.name}` };
  }

  private heldByLatest(sessionId: string): CheckpointSummary | undefined {
    if (!this.unchangedSinceLatest(sessionId)) return undefined;
    const latest = Catalog.of(this.store).latest(sessionId);
    if (!latest) return undefined;
    return latest.pinned || latest.trigger === RESTORE_TRIGGERS.before || latest.trigger === "manual" ? latest : undefined;
  }

  private activeTasks(sessionId: string): JsonValue[] {
    const out: JsonValue[] = [];
    for (const key of this.store.keysBelow(tasksRoot(sessionId))) {
      const task = safeGet(this.store, key);
      if (isRecord(task) && task.status === "active") out.push({ id: String(task.id), assignee: (task.assignee as string | null) ?? null });
    }
    return out;
  }

  // ------------------------------------------------------------------------------- the service

  /** What the plugin provides to the session (core/session/checkpoints.ts). */
  service(): CheckpointService {
    const self = this;
    return {
      interval: this.options.interval,
      async create(request) {
        // The supervisor's timer: nothing new since the latest checkpoint, nothing written.
        return self.create({ ...request, skipUnchanged: request.skipUnchanged === "memory" ? "memory" : request.skipUnchanged === true || request.trigger === "interval" });
      },
      restore: (request) => this.restore(request),
      prepare: (request) => this.prepare(request),
      async saveFinalState(nextSessionId) {
        const owner = liveMemoryOwner(self.store);
        if (!owner || owner === nextSessionId) return;
        const record = findSession(self.store, owner);
        if (!record || !isEnded(record)) return;
        await self.create({ sessionId: owner, trigger: "onStop", description: "final state, saved before another session takes the live memory", skipUnchanged: "memory" });
      },
      resolve: async (checkpoint) => {
        try {
          // checkpoint-007 and latest: of the current session, else of the one that ended last (as `apex checkpoint` reads them).
          const sessionId = defaultSessionIfAny(this.store);
          const located = resolveCheckpoint(this.store, checkpoint, sessionId ? { sessionId } : {});
          return { sessionId: located.sessionId, checkpoint: located.id };
        } catch (error) {
          if (isApexError(error) && (error.code === "APEX_E_CHECKPOINT_NOT_FOUND" || error.code === "APEX_E_NO_SESSION")) return undefined;
          throw error;
        }
      },
      methods: this.methods(),
    };
  }

  /**
   * The control methods behind `apex checkpoint create|pin|unpin|delete` and `apex session
   * reconstruct`: served by the supervisor while one runs, called in the CLI process otherwise.
   */
  methods(): Record<string, (params: Record<string, unknown>) => unknown> {
    const sessionOf = (params: Record<string, unknown>) => optionalString(params, "session") ?? currentSessionId(this.store);
    // LangGraph checkpoints (the ApexSaver of `apex-sessions/langgraph`), see langgraph.ts: its
    // code (~1,000 lines) is loaded, and its store made, at the first call of one of them.
    let langgraph: Promise<Record<string, (params: Record<string, unknown>) => unknown>> | undefined;
    const langgraphMethods = () =>
      (langgraph ??= import("./langgraph.js").then(({ LangGraphStore }) =>
        new LangGraphStore(this.store, {
          scope: this.scope,
          serialize: (fn) => this.serialize(fn),
          ...(this.options.afterCheckpoint ? { afterCheckpoint: this.options.afterCheckpoint } : {}),
          ...(this.options.warn ? { warn: this.options.warn } : {}),
        }).methods((params) => sessionFor(this.store, optionalString(params, "session"))),
      ));
    return {
      ...Object.fromEntries(LANGGRAPH_METHODS.map((name) => [name, async (params: Record<string, unknown>) => (await langgraphMethods())[name]!(params)])),
      "checkpoint.create": async (params) => {
        const created = await this.create({
          sessionId: sessionOf(params),
          trigger: "manual",
          description: userDescription(optionalString(params, "description") ?? ""),
          pin: params.pin === true,
        });
        // session_name: the CLI prints the session by it, as the other commands do (null: unnamed).
        const { summary, warnings } = created!;
        const { agentsOf } = await import("./record.js");
        return { ...summary, session_name: sessionName(this.store, summary.session_id), ...agentsOf(this.store, summary.agents_root), ...(warnings ? { warnings } : {}) } as unknown as JsonValue;
      },
      "checkpoint.pin": (params) =>
        this.serialize(async () => {
          let wasPinned = false;
          const manifest = await pinCheckpoint(this.store, requiredString(params, "ref"), params.pinned !== false, { sessionId: sessionOf(params), before: (was) => void (wasPinned = was) });
          return { ...summaryOf(manifest), session_name: sessionName(this.store, manifest.session_id), was_pinned: wasPinned } as unknown as JsonValue;
        }),
      "checkpoint.delete": (params) =>
        this.serialize(async () => {
          const { refuseNeeded } = await import("./dependents.js");
          const force = params.force === true;
          const record = recordDeletion(this.store, actorParam(params), force);
          const deleted = await deleteCheckpoint(this.store, requiredString(params, "ref"), { sessionId: sessionOf(params), force, refuse: (located) => refuseNeeded(this.store, located), record });
          return deleted as unknown as JsonValue;
        }),
      // Reads, for commands run inside agents (which never open the store themselves).
      // Each answer from one view of the store (readView): a commit in the middle is not half in it.
      // KEPT BY only when asked (`kept_by: true`, as `apex checkpoint list` asks): it runs the retention plan, which a dashboard polling the list does not show.
      "checkpoint.list": async (params) => {
        const [{ servedPage }, { keptByOf }] = await Promise.all([import("./plugin-list.js"), import("./kept-by.js")]);
        return servedPage(this.store, {
          ...(optionalString(params, "session") !== undefined ? { session: optionalString(params, "session")! } : {}),
          ...(typeof params.limit === "number" ? { limit: params.limit } : {}),
          ...(typeof params.offset === "number" ? { offset: params.offset } : {}),
          oldest: params.oldest === true,
        }, params.kept_by === true ? await keptByOf(this.store) : undefined) as unknown as Promise<JsonValue>;
      },
      "checkpoint.show": async (params) => {
        const { checkpointRecord } = await import("./record.js");
        return readView(this.store, () => checkpointRecord(this.store, requiredString(params, "ref"), {
          sessionId: sessionFor(this.store, optionalString(params, "session")),
          ...(typeof params.keysLimit === "number" ? { keysLimit: params.keysLimit } : {}),
          ...(typeof params.keysOffset === "number" ? { keysOffset: params.keysOffset } : {}),
        })) as unknown as JsonValue;
      },
      "checkpoint.diff": (params) =>
        readView(this.store, () => {
          const sessionId = sessionFor(this.store, optionalString(params, "session"));
          return diffCheckpoints(this.store, requiredString(params, "from"), requiredString(params, "to"), { sessionId }) as unknown as JsonValue;
        }),
      // In a child process, as always: a damaged record must not take the supervisor down.
      "session.validate": async (params) => {
        const sessionId = optionalString(params, "session_id");
        const { validateOutOfProcess } = await import("./validate-process.js");
        return validateOutOfProcess(this.store.spec ?? this.store.dir, sessionId ? { sessionId: resolveSessionRef(this.store, sessionId) } : {}) as unknown as Promise<JsonValue>;
      },
      // Branch and merge (branch-methods.ts): writes, so they run where the writer is.
      ...branchMethods(this.store, {
        serialize: (fn) => this.serialize(fn),
        scope: this.scope,
        ...(this.options.enrich ? { enrich: this.options.enrich } : {}),
        ...(this.options.afterCheckpoint ? { afterCheckpoint: this.options.afterCheckpoint } : {}),
      }),
      "session.reconstruct": (params) =>
        this.serialize(async () => {
          const newSessionId = optionalString(params, "new_session_id");
          const sessionId = resolveSessionRef(this.store, requiredString(params, "session_id"));
          // Like every reconstructed session, the new one is kept with the ended ones until it is continued.
          const { reconstructSession } = await import("./recover.js");
          const report = await reconstructSession(this.store, sessionId, newSessionId ? { newSessionId } : {});
          return { ...report, checkpoint: summaryOf(report.checkpoint), current: false } as unknown as JsonValue;
        }),
    };
  }
}

/** The forced recovery, as `apex start --force-recovery` shows it: above all, exactly what was lost. */
/** `sessionName`: the name of the checkpoint's session (null for an unnamed one), which text names it by. */
export function recoveryDetails(report: RecoveryReport, sessionName: string | null): { [key: string]: JsonValue } {
  const lost = (part: string, items: LostItem[]) =>
    items.map((item) => ({ part, path: item.path, what: item.what, reason: item.reason, ...(item.entries !== undefined ? { entries: item.entries } : {}) }));
  return {
    id: report.checkpoint.id,
    session_id: report.checkpoint.sessionId,
    session_name: sessionName,
    name: report.checkpoint.name,
    forced: true,
    dry_run: report.dryRun,
    manifest_verified: report.manifestVerified,
    lost: [...lost("memory", report.memory.lost), ...lost("tasks", report.tasks.lost), ...lost("agents", report.agents.lost)],
    memory: {
      recovered: report.memory.recovered,
      set: report.memory.set.length,
      deleted: report.memory.deleted.length,
      // Paths left as they are because the lost part of the checkpoint would tell (first 100).
      kept: report.memory.kept.slice(0, 100),
      kept_count: report.memory.kept.length,
    },
    tasks: { recovered: Object.keys(report.tasks.recovered).length, kept: report.kept.tasks },
    agents: { recovered: Object.keys(report.agents.recovered).filter((id) => !id.endsWith(".context")).length, kept: report.kept.agents },
  };
}

function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

/**
 * Half of a UTF-16 pair alone: the checkpoint catalog keeps U+FFFD for it, where the manifest kept it, and validate
 * found the two differing (index-mismatch), which repair's rebuild of the summary could not mend.
 */
const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * A description a user gives (`apex checkpoint create "…"`), on one line as it is kept; one longer
 * than is kept is refused: it was cut to 240 characters without a word (a paste of a whole note).
 */
function userDescription(text: string): string {
  const single = text.replace(/\s+/g, " ").trim();
  // A JSON escape (an agent's client of the socket, `apex serve`'s) can carry one; a command line cannot.
  const unpaired = single.isWellFormed() ? undefined : UNPAIRED_SURROGATE.exec(single)?.[0];
  if (unpaired !== undefined) {
    throw new ApexError("APEX_E_BAD_INPUT", `The checkpoint description is not valid UTF-8: it has an unpaired surrogate (U+${unpaired.charCodeAt(0).toString(16).toUpperCase()}), which the checkpoint catalog cannot keep.`, {
      hint: "Nothing was saved. Give the description as valid UTF-8 text.",
      details: { field: "description" },
    });
  }
  // Counted in characters, an emoji one, as every other text APEX bounds (records.ts: limitedText); 240 emoji were 480.
  const length = single.length <= MAX_DESCRIPTION ? single.length : [...single].length;
  if (length <= MAX_DESCRIPTION) return single;
  throw new ApexError("APEX_E_BAD_INPUT", `The checkpoint description is ${length} characters long; at most ${MAX_DESCRIPTION} are kept.`, {
    hint: "Nothing was saved. Give a shorter one; keep longer notes in the memory (`apex memory set /notes/NAME '\"…\"'`), which the checkpoint holds.",
    details: { length, limit: MAX_DESCRIPTION },
  });
}

/**
 * A description APEX writes, cut to MAX_DESCRIPTION characters: between two of them, never inside an emoji (half of
 * one was kept). An unpaired surrogate in the text it is made of (a milestone's, kept exactly in its own record) is
 * U+FFFD in it, as it prints.
 */
function clip(text: string): string {
  const single = text.replace(/\s+/g, " ").trim().toWellFormed();
  if (single.length <= MAX_DESCRIPTION) return single;
  const characters = [...single];
  return characters.length > MAX_DESCRIPTION ? `${characters.slice(0, MAX_DESCRIPTION - 1).join("")}…` : single;
}

function safeGet(store: Store, path: string): JsonValue | undefined {
  try {
    return store.get(path);
  } catch {
    return undefined;
  }
}

function optionalString(params: Record<string, unknown>, name: string): string | undefined {
  const value = params[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} must be a string.`);
  return value;
}

function requiredString(params: Record<string, unknown>, name: string): string {
  const value = optionalString(params, name);
  if (value === undefined) throw new ApexError("APEX_E_BAD_INPUT", `The parameter ${name} is required.`);
  return value;
}

