import type { CheckpointDraft, CheckpointInfo } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import { appendEvent, recountTasks } from "../../core/session/service.js";
import { findSession, holdsLiveMemory, isEnded, supervisorAlive } from "../../core/session/sessions.js";
import { onOtherHost } from "../../core/session/lease.js";
import { remoteSessionError } from "../../cli/session/remote-error.js";
import { readActiveSessions } from "../../core/session/records.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog, type CheckpointSummary, type Located } from "./catalog.js";
import { sessionBaseOf, writeCheckpoint, type CheckpointParams } from "./checkpoints.js";
import { writeDerivedCheckpoint } from "./branch.js";
import { agentsRoot, checkpointName, tasksRoot, type CheckpointManifest } from "./manifest.js";
import { ancestryOf, findMergeBase, isRecordedSummary, MERGE_TRIGGER, recordMerge, sessionLabel, sessionName, type Relation } from "./merge-base.js";
import {
  applyToTree,
  checkStrategy,
  encodedValues,
  isEmptyPlan,
  objectView,
  planMerge,
  refusedBy,
  type MergeChange,
  type MergeConflict,
  type MergePlan,
  type MergeSide,
  type MergeStrategy,
  type ObjectView,
  virtualAncestor,
  langGraphUnit,
} from "./merge.js";
import { resolveSessionRef } from "./plugin-sessions.js";
import { ACTORS, assertWritable, loadManifest } from "./refs.js";
import { baseKey, DEFAULT_SCOPE, inScope, memoryMountOf, normalizeScope, pathSegments, type MemoryScope } from "./scope.js";
import { buildSnapshot, type Snapshot } from "./snapshot.js";
import { carrySteps, dropThreads, threadSteps, type ThreadStep } from "./langgraph-branch.js";
import { memoryDir, segmentName, threadLabel } from "./langgraph-index.js";
import { ObjectStore } from "./engine/objects.js";

/**
 * `apex session merge SRC DST`: SRC's latest checkpoint merged into DST (merge.ts has the
 * rules, merge-base.ts the base). Where the result goes:
 * - DST holds the live keyspace (it is /sessions/current: running, or the last to run): the
 *   live state is hashed as "ours" (from the trees DST's next checkpoint would be built from),
 *   the changes are written to live memory and tasks, and the merge checkpoint is those trees
 *   with the changes applied (mergedState: the live state is not read and hashed again), in one
 *   transaction. While DST runs this happens
 *   in its supervisor (the one writer), so agents read the state before or after, never between.
 * - otherwise: a merge checkpoint on DST built from DST's latest checkpoint; `apex start
 *   --continue DST` restores it.
 * Either way the checkpoint has two parents (parent: DST's previous, merge_parent: SRC's), and
 * DST's audit trail gets a `session.merged` event with both and the actor. Its git state is read
 * from DST's tree only in DST's own supervisor (or after `--git` merged into it); a merge made
 * elsewhere carries over DST's latest checkpoint's (ownTree).
 */

export interface SessionMergeRequest {
  source: string;
  destination: string;
  strategy?: string | undefined;
  dryRun?: boolean;
  actor?: string | undefined;
  /** The memory a checkpoint covers (the checkpoint plugin's paths); default DST's latest checkpoint's. */
  scope?: MemoryScope | undefined;
  /** beforeCheckpoint, for the merge checkpoint's git state. */
  enrich?: ((draft: CheckpointDraft) => Promise<CheckpointDraft>) | undefined;
  afterCheckpoint?: ((info: CheckpointInfo) => Promise<void>) | undefined;
  /** What `--git` did, recorded in the merge checkpoint and the audit event. */
  git?: JsonValue | undefined;
  now?: () => Date;
}

export interface ChangeLine {
  path: string;
  kind: MergeChange["kind"];
  resolved?: boolean;
}

export interface SessionMergeReport {
  /** session_name: a branch's name (null: none), as the text prints the session. */
  /** changed_since_checkpoint: SRC ("running" or "stopped") wrote memory or tasks after that checkpoint, writes a merge does not take; false: none. */
  source: { session_id: string; session_name: string | null; checkpoint: { id: string; name: string }; changed_since_checkpoint: "running" | "stopped" | false };
  destination: { session_id: string; session_name: string | null; checkpoint: { id: string; name: string } | null };
  /** deleted: the base is no longer in the store (`checkpoint delete --force`) and stands in as the branch made from it recorded it (its trees are the branch's first checkpoint's); absent otherwise. */
  base: { id: string; session_id: string; session_name: string | null; name: string; created_at: string; deleted?: "recorded by its branch" } | null;
  /**
   * Common ancestors no longer in the store that nothing recorded (deleted, and the branch made from
   * one too): the base fell back from them to an older checkpoint (`base`), or to none, so more paths
   * may conflict. Absent when the base is the nearest common ancestor.
   */
  base_fell_back_from?: Array<{ session_id: string; session_name: string | null; sequence: number; name: string }>;
  /** Other maximal common ancestors (criss-cross): with `base`, merged into the virtual ancestor the merge diffs against. */
  other_bases: string[];
  relation: Relation;
  strategy: MergeStrategy;
  dry_run: boolean;
  /** Where the result went: live memory and a checkpoint, a checkpoint only, or nowhere (up to date, dry run, refused). */
  applied: "live" | "checkpoint" | "none";
  refused: boolean;
  memory: { changes: ChangeLine[]; conflicts: MergeConflict[]; same: number; kept_ours: number };
  tasks: { changes: ChangeLine[]; conflicts: MergeConflict[]; same: number; kept_ours: number };
  /**
   * LangGraph thread namespaces the merge takes from SRC, each whole (merge.ts): `taken`, which
   * resume in DST from SRC's step; `not_taken`, kept as DST has them, since SRC's step is no
   * longer indexed (deleted) or SRC deleted the thread while DST stepped it; `deleted`, which SRC
   * deleted and DST did not step since the base, deleted in DST too (their channels, index
   * records, heads and pending writes). Absent when the merge takes none.
   */
  langgraph?: { taken: string[]; not_taken: string[]; deleted: string[] };
  /** The merge checkpoint written (null: none). */
  checkpoint: { id: string; name: string; sequence: number; parent: string | null; merge_parent: string } | null;
  git: JsonValue | null;
  /** The process that wrote it (added by the control method): DST's supervisor while DST runs. */
  writer_pid?: number;
  /**
   * A merge applied to live memory: the records of DST's live state it read and hashed, per
   * tree (those changed since DST's latest trees, or all of them where it had none). Absent otherwise.
   */
  hashed?: { memory: number; tasks: number; agents: number };
}

export async function mergeSessions(store: Store, request: SessionMergeRequest): Promise<SessionMergeReport> {
  const strategy = checkStrategy(request.strategy);
  const dryRun = request.dryRun === true;
  if (!dryRun) assertWritable(store);
  const sourceId = resolveSessionRef(store, request.source);
  const destinationId = resolveSessionRef(store, request.destination);
  if (sourceId === destinationId) throw new ApexError("APEX_E_USAGE", `Cannot merge session ${sessionLabel(store, sourceId)} into itself.`, { hint: "Name two different sessions: apex session merge SRC DST.", details: { session_id: sourceId } });
  const catalog = Catalog.of(store);
  const theirsSummary = catalog.latest(sourceId);
  if (!theirsSummary) {
    throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `Session ${sessionLabel(store, sourceId)} has no checkpoint to merge.`, { details: { session_id: sourceId }, hint: "Create one in it (`apex checkpoint create` while it runs)." });
  }
  // The git state of the merge checkpoint, before the transaction (beforeCheckpoint is asynchronous):
  // read only where the tree this process reads is DST's as DST works in it (ownTree); else DST's
  // latest checkpoint's is carried over (below).
  let gitState: JsonValue | null | undefined;
  if (!dryRun && request.enrich && (request.git !== undefined || ownTree(store, destinationId))) {
    const draft = await request.enrich({ sessionId: destinationId, trigger: MERGE_TRIGGER, description: "", data: {} });
    gitState = (draft.data.git_state ?? null) as JsonValue | null;
  }
  let report!: SessionMergeReport;
  let written: CheckpointManifest | undefined;
  const run = () => {
    const theirs = loadManifest(store, locatedOf(theirsSummary));
    const oursSummary = catalog.latest(destinationId);
    const ours = oursSummary ? loadManifest(store, locatedOf(oursSummary)) : undefined;
    if (!dryRun) refuseBesideItsSupervisor(store, destinationId);
    const live = holdsLiveMemoryOf(store, destinationId);
    // DST's working memory: the root, or its own root when it runs in a git worktree.
    const mount = memoryMountOf(store, destinationId);
    if (!ours && !live) {
      throw new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `Session ${sessionLabel(store, destinationId)} has no checkpoint to merge into.`, { hint: "Continue it and create one, or merge the other way." });
    }
    const found = ours ? findMergeBase(store, locatedOf(ours), locatedOf(theirs)) : { relation: "unrelated" as Relation, base: null, candidates: [], lost: [] };
    const base = found.base ? baseOf(store, found.base) : null;
    const overlay = live || dryRun;
    const scope = request.scope ?? normalizeScope(ours?.memory.scope ?? DEFAULT_SCOPE);
    const upToDate = found.relation === "up-to-date" || found.relation === "same";
    const view = objectView(store, { overlay });
    let oursRoots = ours ? { memory: ours.memory.root, tasks: ours.tasks.root } : { memory: null, tasks: null };
    let snapshot: Snapshot | undefined;
    // The live memory tree rebuilt from the keyspace beside a memory base (a damaged base node, a gap in the
    // log): it lacks the base's detached subtrees, which writeCheckpoint carries over as it hashes the state again.
    let rebuilt = false;
    if (live && !upToDate) {
      // From the trees DST's checkpoints are built from, as its next checkpoint would be: the merge checkpoint is these with the plan applied (mergedState).
      const memoryBase = catalog.base(baseKey(scope, mount));
      snapshot = buildSnapshot(store, view, { memory: { scope, base: memoryBase, mount }, session: { id: destinationId, base: oursSummary && sessionBaseOf(oursSummary) } });
      rebuilt = snapshot.memory!.full && memoryBase !== undefined;
      oursRoots = { memory: snapshot.memory!.root, tasks: snapshot.tasks!.root };
    }
    const plan: MergePlan = upToDate
      ? { memory: { changes: [], conflicts: [], same: 0, oursOnly: 0 }, tasks: { changes: [], conflicts: [], same: 0, oursOnly: 0 }, strategy }
      : found.candidates.length > 1
        ? // A virtual ancestor's trees are kept in memory: in the overlay, or in one of their own (reading through to the store) when the merge writes to the store.
          ((planView) => planMerge(planView, ancestorOf(store, planView, found.candidates), oursRoots, { memory: theirs.memory.root, tasks: theirs.tasks.root }, strategy))(overlay ? view : objectView(store, { overlay: true }))
        : planMerge(view, base && base.roots, oursRoots, { memory: theirs.memory.root, tasks: theirs.tasks.root }, strategy);
    // Into live memory, the channels go into its base (below): without one (no checkpoint built yet), none is taken.
    const threads = langGraphTaken(store, plan, theirs, !live || catalog.base(baseKey(scope, mount)) !== undefined);
    const refused = refusedBy(plan);
    report = {
      source: {
        session_id: sourceId,
        session_name: sessionName(store, sourceId),
        checkpoint: { id: theirs.id, name: theirs.name },
        changed_since_checkpoint: changedSince(store, sourceId, theirs.revision, scope),
      },
      destination: { session_id: destinationId, session_name: sessionName(store, destinationId), checkpoint: ours ? { id: ours.id, name: ours.name } : null },
      base: base && {
        id: base.id,
        session_id: base.session_id,
        session_name: base.session_name,
        name: base.name,
        created_at: base.created_at,
        ...(found.base && isRecordedSummary(found.base) && found.base.by === "branch" ? { deleted: "recorded by its branch" as const } : {}),
      },
      ...(found.lost.length > 0
        ? { base_fell_back_from: found.lost.map((point) => ({ session_id: point.sessionId, session_name: sessionName(store, point.sessionId), sequence: point.sequence, name: checkpointName(point.sequence) })) }
        : {}),
      other_bases: found.candidates.slice(1).map((candidate) => candidate.id),
      relation: found.relation,
      strategy,
      dry_run: dryRun,
      applied: "none",
      refused: refused.length > 0,
      memory: { changes: lines(plan.memory.changes), conflicts: plan.memory.conflicts, same: plan.memory.same, kept_ours: plan.memory.oursOnly },
      tasks: { changes: lines(plan.tasks.changes), conflicts: plan.tasks.conflicts, same: plan.tasks.same, kept_ours: plan.tasks.oursOnly },
      checkpoint: null,
      git: request.git ?? null,
      ...(threads.taken.length + threads.notTaken.length + threads.deleted.length > 0 ? { langgraph: { taken: threads.taken.map(labelOf), not_taken: threads.notTaken, deleted: threads.deleted.map(unitLabel) } } : {}),
    };
    // Nothing to take and nothing to settle (the source only checkpointed what was merged already): no merge checkpoint.
    if (upToDate || dryRun || (isEmptyPlan(plan) && plan.memory.conflicts.length + plan.tasks.conflicts.length === 0)) return;
    if (refused.length > 0) {
      throw new ApexError("APEX_E_MERGE_CONFLICT", `Merging ${sessionLabel(store, sourceId)} into ${sessionLabel(store, destinationId)} conflicts at ${refused.length} path${refused.length === 1 ? "" : "s"}: ${refused.slice(0, 3).map((conflict) => conflict.path).join(", ")}${refused.length > 3 ? ", …" : ""}. Nothing was written.`, {
        hint: "See every conflict with --dry-run; settle them with --strategy ours|theirs, or change one side and merge again.",
        details: report as unknown as Record<string, JsonValue>,
      });
    }
    const createdAt = (request.now?.() ?? new Date()).toISOString();
    const actor = request.actor ?? "user";
    const merge: { [key: string]: JsonValue } = {
      // Its trees' roots (kept alive by sweeps) and ancestry: once SRC is archived, a later merge of two sessions that both merged it still finds it as their base.
      from: {
        session_id: theirs.session_id,
        sequence: theirs.sequence,
        id: theirs.id,
        name: theirs.name,
        session_name: sessionName(store, theirs.session_id),
        created_at: theirs.created_at,
        memory_root: theirs.memory.root,
        tasks_root: theirs.tasks.root,
        ancestry: Object.fromEntries(ancestryOf(store, locatedOf(theirs))),
      },
      base: base ? { session_id: base.session_id, sequence: base.sequence, id: base.id, name: base.name } : null,
      // A criss-cross: the base and these were merged into the virtual ancestor diffed against.
      ...(found.candidates.length > 1 ? { other_bases: found.candidates.slice(1).map((candidate) => candidate.id) } : {}),
      strategy,
      changes: plan.memory.changes.length + plan.tasks.changes.length,
      conflicts_settled: plan.memory.conflicts.length + plan.tasks.conflicts.length,
      actor,
      metrics: combinedMetrics(store, destinationId, sourceId),
      ...(request.git !== undefined ? { git: request.git } : {}),
      // "checkpoint": written from DST's checkpoint, not from the live memory (validate does not compare that with it).
      applied: live ? "live" : "checkpoint",
    };
    const description = `merge ${sessionLabel(store, sourceId)}/${theirs.name} into ${sessionLabel(store, destinationId)}`;
    if (live) {
      report.applied = "live";
      // LangGraph channels are no live records (scope.ts: DETACHED_ROOTS): they go into the memory base, which the merge checkpoint carries.
      const memoryChanges = plan.memory.changes.filter((change) => langGraphUnit(pathSegments(change.path)) === undefined);
      const detached = plan.memory.changes.filter((change) => langGraphUnit(pathSegments(change.path)) !== undefined);
      if (detached.length > 0) {
        const key = baseKey(scope, mount);
        const memoryBase = catalog.base(key)!;
        const applied = applyToTree(ObjectStore.of(store).view(), memoryBase.root, detached);
        catalog.setBase(key, { root: applied.root, revision: memoryBase.revision, keys: memoryBase.keys + applied.delta });
      }
      const taskChanges = plan.tasks.changes;
      const values = encodedValues(view, [...memoryChanges, ...taskChanges]);
      store.batchSync((batch) => {
        for (const change of memoryChanges) {
          if (change.hash) batch.setEncoded(`${mount}${change.path}`, values.get(change.hash)!);
          else batch.delete(`${mount}${change.path}`);
        }
        for (const change of taskChanges) {
          const path = `${tasksRoot(destinationId)}${change.path}`;
          if (change.hash) batch.setEncoded(path, values.get(change.hash)!);
          else batch.delete(path);
        }
      }, ACTORS.merge);
      // Counts again, and task ids merged in are taken: the next task added gets a higher one.
      if (taskChanges.length > 0) store.batchSync((batch) => void recountTasks(batch, store, destinationId), ACTORS.merge);
      const built = snapshot && !rebuilt ? mergedState(store, view, snapshot, plan, values, { scope, mount, sessionId: destinationId }) : undefined;
      const created = writeCheckpoint(store, {
        sessionId: destinationId,
        trigger: MERGE_TRIGGER,
        description,
        pinned: false,
        gitState: gitState ?? ours?.git_state ?? null,
        data: { merge },
        scope,
        createdAt,
        actor: ACTORS.merge,
        mergeParent: theirs.id,
        audit: Boolean(request.afterCheckpoint),
        ...(built ? { built } : {}),
      });
      written = created.manifest;
      const hashed = (tree: "memory" | "tasks" | "agents") => (snapshot?.[tree]?.changed ?? 0) + created.stats[tree].changed;
      report.hashed = { memory: hashed("memory"), tasks: hashed("tasks"), agents: hashed("agents") };
    } else {
      report.applied = "checkpoint";
      const memory = applyToTree(view, ours!.memory.root, plan.memory.changes);
      const tasks = applyToTree(view, ours!.tasks.root, plan.tasks.changes);
      written = writeDerivedCheckpoint(store, {
        sessionId: destinationId,
        trigger: MERGE_TRIGGER,
        description,
        parent: ours!.id,
        mergeParent: theirs.id,
        createdAt,
        roots: {
          memory: { root: memory.root, keys: ours!.memory.keys + memory.delta, scope: ours!.memory.scope },
          tasks: { root: tasks.root, count: ours!.tasks.count + tasks.delta },
          agents: ours!.agents,
        },
        gitState: gitState ?? ours!.git_state,
        data: { merge },
        actor: ACTORS.merge,
      });
    }
    report.checkpoint = { id: written.id, name: written.name, sequence: written.sequence, parent: written.parent, merge_parent: theirs.id };
    // Its edge in DST's record too: whatever removes the merge checkpoint later (a forced delete, a repair), the next merge's base stays.
    recordMerge(store, locatedOf(written), { createdAt: written.created_at, description, from: merge.from! }, ACTORS.merge);
    carrySteps(store, threads.taken, theirs, written, ACTORS.merge);
    dropThreads(store, destinationId, threads.deleted.map(unitNames), ACTORS.merge);
    store.batchSync((batch) => {
      appendEvent(batch, destinationId, "session.merged", actor, {
        // Where it merged from; what the manifest records beyond that (trees, ancestry) is for later merges, not the audit trail.
        from: { session_id: theirs.session_id, sequence: theirs.sequence, id: theirs.id, name: theirs.name },
        base: merge.base!,
        parents: [written!.parent, theirs.id],
        checkpoint: written!.id,
        name: written!.name,
        strategy,
        changes: merge.changes!,
        conflicts_settled: merge.conflicts_settled!,
        applied: report.applied,
        ...(request.git !== undefined ? { git: request.git } : {}),
      });
    }, actor);
  };
  if (dryRun) run();
  else await store.transaction(run);
  if (written && request.afterCheckpoint) {
    await request.afterCheckpoint({ sessionId: destinationId, id: written.id, sequence: written.sequence, trigger: written.trigger }).catch(() => undefined);
  }
  return report;
}

/**
 * DST's live state after a merge wrote to it, without reading or hashing its records again: the
 * trees hashed to plan the merge (`snapshot`, in the overlay `view`) with the plan's changes
 * applied, values as they were written (`written`, the keyspace's bytes), which is what hashing
 * the live state again gives. Their new objects go from the overlay into the store (the merge's
 * transaction). Undefined, for the checkpoint to hash the live state as any does, when the
 * revision log since the snapshot holds a write to DST's memory, tasks or agents that is not
 * the merge's own, or cannot be read whole.
 */
function mergedState(
  store: Store,
  view: ObjectView,
  snapshot: Snapshot,
  plan: MergePlan,
  written: ReadonlyMap<string, Buffer>,
  where: { scope: MemoryScope; mount: string; sessionId: string },
): NonNullable<CheckpointParams["built"]> | undefined {
  const { scope, mount, sessionId } = where;
  const memoryPaths = new Set(plan.memory.changes.map((change) => `${mount}${change.path}`));
  const taskPaths = new Set(plan.tasks.changes.map((change) => `${tasksRoot(sessionId)}${change.path}`));
  const tasksPrefix = `${tasksRoot(sessionId)}/`;
  const agentsPrefix = `${agentsRoot(sessionId)}/`;
  const revision = store.revision();
  let expected = snapshot.revision + 1;
  try {
    for (const change of store.changesSince(snapshot.revision)) {
      if (change.revision !== expected) return undefined; // a trimmed log: what was written cannot be told
      expected += 1;
      const path = change.path;
      const memory = mount === "" ? inScope(scope, path) : path.startsWith(`${mount}/`) && inScope(scope, path.slice(mount.length));
      if (memory ? !memoryPaths.has(path) : path.startsWith(tasksPrefix) ? !taskPaths.has(path) : path.startsWith(agentsPrefix)) return undefined;
    }
  } catch {
    return undefined;
  }
  if (expected <= revision) return undefined;
  const memory = applyToTree(view, snapshot.memory!.root, plan.memory.changes, written);
  const tasks = applyToTree(view, snapshot.tasks!.root, plan.tasks.changes, written);
  const agents = snapshot.agents!;
  const objects = ObjectStore.of(store).view();
  objects.adopt(view, [memory.root, tasks.root, agents.root]);
  objects.flush();
  return {
    revision,
    memory: { root: memory.root, count: snapshot.memory!.count + memory.delta, changed: 0, full: false },
    tasks: { root: tasks.root, count: snapshot.tasks!.count + tasks.delta, changed: 0, full: false },
    agents: { root: agents.root, count: agents.count, changed: 0, full: false },
  };
}

/**
 * Whether `sessionId` wrote its memory (in scope) or tasks after `revision` (its latest
 * checkpoint's): a merge takes checkpoints, so those writes stay behind unless checkpointed.
 * "running" or "stopped" (a session not running keeps its working memory: a worktree session's
 * own root, or the root while it holds the live memory; stopping does not checkpoint it), else
 * false. The revision log is read from that checkpoint on, up to the first such write.
 */
function changedSince(store: Store, sessionId: string, revision: number, scope: MemoryScope): "running" | "stopped" | false {
  try {
    const mount = memoryMountOf(store, sessionId);
    const memory = mount !== "" || holdsLiveMemoryOf(store, sessionId);
    const tasks = `${tasksRoot(sessionId)}/`;
    for (const change of store.changesSince(revision)) {
      // `start --continue` writing the checkpoint's own state back is nothing new.
      if (change.actor === ACTORS.restore) continue;
      const mine = change.path.startsWith(tasks) || (memory && (mount === "" ? inScope(scope, change.path) : change.path.startsWith(`${mount}/`) && inScope(scope, change.path.slice(mount.length))));
      if (mine) return Object.hasOwn(readActiveSessions(store), sessionId) ? "running" : "stopped";
    }
  } catch {
    // a log that cannot be read tells nothing: no warning
  }
  return false;
}

/**
 * DST's supervisor is its memory's one writer from its claim on: a merge made beside it (here, in
 * another process) would land between the claim and the restore of `start --continue`, hashed
 * from memory the restore then replaces (another session's, or none yet), and be lost from the
 * running session while its checkpoint stays DST's latest. Refused, with what the caller needs
 * to send it to that supervisor once it listens (branch-cli.ts). A supervisor on another host
 * (a shared store) is refused too (refuseOnAnotherHost): no socket here reaches it.
 */
function refuseBesideItsSupervisor(store: Store, sessionId: string): void {
  refuseOnAnotherHost(store, sessionId);
  const record = findSession(store, sessionId);
  const supervisor = record?.supervisor;
  if (!record || !supervisor || isEnded(record) || supervisor.pid === process.pid || !supervisorAlive(record)) return;
  throw new ApexError("APEX_E_SESSION_STATE", `Session ${sessionLabel(store, sessionId)} runs in its supervisor (pid ${supervisor.pid}), which merges into it; nothing was written here.`, {
    hint: `Run the merge again: it goes to that supervisor once it listens.`,
    details: { supervisor_elsewhere: true, pid: supervisor.pid, start_time: supervisor.start_time },
  });
}

/**
 * A merge into a session whose supervisor runs on another host of a shared store (its lease
 * valid) is refused, before anything is written (git's merge too: branch-cli.ts asks first):
 * that supervisor is its memory's one writer, and no socket here reaches it. The merge is that
 * host's to make, or its server's (`apex --remote`); a dry run only reads, and goes ahead.
 */
export function refuseOnAnotherHost(store: Store, sessionId: string): void {
  const record = findSession(store, sessionId);
  if (!record || isEnded(record) || !onOtherHost(record.supervisor) || !supervisorAlive(record)) return;
  throw remoteSessionError(record, "merge into", "session merge SRC");
}

/**
 * Whether the working tree this process's beforeCheckpoint reads (the project's, or DST's git
 * worktree, on this host) is DST's as DST has it: true in DST's own supervisor. A merge made
 * anywhere else (the CLI or another session's supervisor, DST stopped, or interrupted on another
 * host of a shared store, its lease expired: one running there is refused, refuseOnAnotherHost)
 * read this host's tree, which is not DST's (another host's: `commit: null` of a clone not
 * checked out), or which other sessions moved on since DST ran; its merge checkpoint then carries
 * over DST's latest checkpoint's git state, since a memory merge changes no file. (`--git` is the
 * exception, its caller's: git merged into that tree here, and the state read after it is the
 * merge's.)
 */
function ownTree(store: Store, sessionId: string): boolean {
  try {
    const record = findSession(store, sessionId);
    const supervisor = record?.supervisor;
    return Boolean(record && supervisor && !isEnded(record) && supervisor.pid === process.pid && !onOtherHost(supervisor));
  } catch {
    return false; // unreadable records: not known to be DST's supervisor, so its tree is not read
  }
}

/** Virtual ancestors built within one another at most this deep; deeper, the newest candidate is the base. */
const VIRTUAL_DEPTH = 8;

/**
 * What a merge diffs against, from the maximal common ancestors (newest first): one, its trees;
 * several (a criss-cross: each side merged the other), a virtual ancestor (merge.ts
 * virtualAncestor), the candidates merged in turn against their own common ancestor, itself
 * virtual when they criss-cross too. Against the newest candidate alone, a path the other
 * candidate changed and one side changed again after both merges was a conflict.
 */
function ancestorOf(store: Store, view: ObjectView, candidates: CheckpointSummary[], depth = 0): MergeSide | null {
  const rootsOf = (summary: CheckpointSummary): MergeSide => baseOf(store, summary).roots;
  const [first, ...others] = candidates;
  if (!first) return null;
  let merged = rootsOf(first);
  for (const other of depth < VIRTUAL_DEPTH ? others : []) {
    const found = findMergeBase(store, locatedOf(first), locatedOf(other), candidates);
    merged = virtualAncestor(view, ancestorOf(store, view, found.candidates, depth + 1), merged, rootsOf(other));
  }
  return merged;
}

/**
 * A merge base's identity and trees: from its manifest, or, for a checkpoint whose session was
 * archived, from what the merge that merged it in recorded.
 */
function baseOf(store: Store, summary: CheckpointSummary): { id: string; session_id: string; session_name: string | null; sequence: number; name: string; created_at: string; roots: MergeSide } {
  if (isRecordedSummary(summary)) {
    const { id, session_id, session_name, sequence, name, created_at } = summary;
    return { id, session_id, session_name, sequence, name, created_at, roots: { memory: summary.memory_root, tasks: summary.tasks_root } };
  }
  const manifest = loadManifest(store, locatedOf(summary));
  const { id, session_id, sequence, name, created_at } = manifest;
  return { id, session_id, session_name: sessionName(store, session_id), sequence, name, created_at, roots: { memory: manifest.memory.root, tasks: manifest.tasks.root } };
}

function locatedOf(item: CheckpointSummary | CheckpointManifest): Located {
  return { sessionId: item.session_id, sequence: item.sequence, id: item.id };
}

function lines(changes: readonly MergeChange[]): ChangeLine[] {
  return changes.map((change) => ({ path: change.path, kind: change.kind, ...(change.resolved ? { resolved: true } : {}) }));
}

function holdsLiveMemoryOf(store: Store, sessionId: string): boolean {
  try {
    return holdsLiveMemory(store, sessionId);
  } catch {
    return false; // unreadable records: treat DST as not holding live memory (a checkpoint only)
  }
}

/**
 * The two sessions' metrics records combined: counts (whole numbers) added, anything else as
 * DST has it; the source's record kept beside it.
 */
function combinedMetrics(store: Store, destinationId: string, sourceId: string): JsonValue {
  const read = (id: string) => {
    try {
      return store.get(`/sessions/${id}/metrics`) ?? null;
    } catch {
      return null;
    }
  };
  const ours = read(destinationId);
  const theirs = read(sourceId);
  if (ours === null && theirs === null) return null;
  return { combined: combine(ours, theirs), source: theirs };
}

function combine(a: JsonValue | null, b: JsonValue | null): JsonValue | null {
  if (a === null) return b;
  if (b === null) return a;
  if (typeof a === "number" && typeof b === "number") return Number.isInteger(a) && Number.isInteger(b) ? a + b : a;
  if (typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const out: { [key: string]: JsonValue } = { ...b, ...a };
    for (const key of Object.keys(a)) if (key in b) out[key] = combine(a[key] ?? null, b[key] ?? null)!;
    return out;
  }
  return a;
}

/**
 * The LangGraph thread namespaces a plan takes from SRC (`theirs`, its checkpoint): their steps,
 * to carry into DST's index once the merge checkpoint is written. One whose step SRC no longer
 * indexes, or that SRC deleted while DST stepped it, cannot resume there: its changes leave the
 * plan (DST keeps its own), and so does its conflict when DST stepped it too (no strategy takes
 * SRC's side of it: it refused a merge under fail, and under theirs was reported settled by
 * theirs while DST kept its own); it is named. One SRC deleted that DST did not step since the
 * base is a one-sided change, taken as a step is: its changes (its channels' deletions) stay in
 * the plan, and it is returned in `deleted`, whose records in DST go too once the merge
 * checkpoint is written (dropThreads). A conflict whose SRC side can be taken stays, taken or
 * not as the strategy says.
 */
function langGraphTaken(store: Store, plan: MergePlan, theirs: CheckpointManifest, canTake: boolean): { taken: ThreadStep[]; notTaken: string[]; deleted: string[] } {
  const changed = new Set(plan.memory.changes.flatMap((change) => langGraphUnit(pathSegments(change.path)) ?? []));
  const conflicted = new Set(plan.memory.conflicts.flatMap((conflict) => (langGraphUnit(pathSegments(conflict.path)) === conflict.path ? [conflict.path] : [])));
  const units = new Set([...changed, ...conflicted]);
  if (units.size === 0) return { taken: [], notTaken: [], deleted: [] };
  const takeable = canTake ? threadSteps(store, theirs, units).filter((step) => step.index !== undefined) : [];
  // SRC deleted it (its record is a deletion: SRC's memory has no such namespace), DST did not step it (no conflict).
  const deleted = canTake ? plan.memory.changes.filter((change) => change.kind === "deleted" && changed.has(change.path) && !conflicted.has(change.path)).map((change) => change.path) : [];
  const kept = new Set([...takeable.map((step) => memoryDir(step.threadId, step.ns)), ...deleted]);
  const dropped = [...units].filter((unit) => !kept.has(unit)).sort();
  if (dropped.length > 0) {
    plan.memory.changes = plan.memory.changes.filter((change) => !dropped.includes(langGraphUnit(pathSegments(change.path)) ?? ""));
    plan.memory.conflicts = plan.memory.conflicts.filter((conflict) => !dropped.includes(conflict.path));
  }
  return { taken: takeable.filter((step) => changed.has(memoryDir(step.threadId, step.ns))), notTaken: dropped.map((unit) => unitLabel(unit)), deleted: deleted.sort() };
}

function labelOf(step: ThreadStep): string {
  return threadLabel(step.threadId, step.ns);
}

/** `/langgraph/<thread>/<ns>` as threadLabel names it. */
function unitLabel(unit: string): string {
  const { threadId, ns } = unitNames(unit);
  return threadLabel(threadId, ns);
}

/** The thread id and namespace of `/langgraph/<thread>/<ns>`. */
function unitNames(unit: string): { threadId: string; ns: string } {
  const [, , thread, ns] = unit.split("/") as [string, string, string, string];
  return { threadId: segmentName(thread), ns: segmentName(ns) };
}
