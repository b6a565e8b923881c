import { ApexError } from "../../core/errors.js";
import { sessionNames, shortSessionId } from "../../core/session/names.js";
import { allSessions } from "../../core/session/sessions.js";
import { PROJECT_CONFIG_PATH } from "../../core/session/records.js";
import { checkSessionName } from "./session-name.js";
import {
  ObjectStore,
  canonicalJson,
  isObjectDamage,
  lookupEntry,
  type Hash,
  type ObjectDamageError,
  type ObjectView,
} from "./engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { Catalog, type Located } from "./catalog.js";
import { writeCheckpoint } from "./checkpoints.js";
import { assertContained } from "./contained.js";
import {
  agentsRoot,
  checkSessionId,
  checkpointName,
  isRecord,
  manifestHash,
  sessionPath,
  tasksRoot,
  type CheckpointManifest,
} from "./manifest.js";
import { ACTORS, assertWritable, loadManifest, manifestKeys, resolveCheckpoint, type ResolveOptions } from "./refs.js";
import { baseKey, DEFAULT_SCOPE, inScope, isDetached, isProjectRecord, keysInScope, memoryMountOf, normalizeScope, pathSegments, type MemoryScope } from "./scope.js";
import { buildSnapshot, readJsonRecord } from "./snapshot.js";
import { verifyCheckpoint } from "./validate.js";
import { describeValue } from "../owned-paths.js";
import { DELETED_MERGES_FIELD, DELETED_POINTS_FIELD, MERGES_FIELD, sessionName } from "./merge-base.js";

/** Something a damaged checkpoint held that can no longer be read. */
export interface LostItem {
  /** The value's path, or the directory whose (part of a) listing is unreadable. */
  path: string;
  what: "value" | "directory";
  reason: string;
  /** For a directory: how many entries the unreadable part held, when known. */
  entries?: number;
}

interface Salvage {
  values: Map<string, JsonValue>;
  lost: LostItem[];
}

/**
 * Reads everything that still verifies below `root`. Objects are read through `view`,
 * whose overlay holds the current state's objects: a damaged object that the live state
 * still has (same hash) is read from there.
 */
function salvageTree(view: ObjectView, root: Hash | null, mount: string): Salvage {
  const salvage: Salvage = { values: new Map(), lost: [] };
  const prefix = mount === "/" ? "" : mount;
  const describe = (error: ObjectDamageError) => `${error.kind === "tree" ? "tree node" : "value"} ${error.hash.slice(0, 12)} is ${error.reason}`;
  const partition = (hash: Hash, dir: string, entriesHint: number | undefined): void => {
    let node;
    try {
      node = view.readNode(hash);
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
      salvage.lost.push({ path: dir || "/", what: "directory", reason: describe(error), ...(entriesHint !== undefined ? { entries: entriesHint } : {}) });
      return;
    }
    if (node.kind === "split") {
      for (const bucket of node.buckets) partition(bucket.hash, dir, bucket.count);
      return;
    }
    for (const entry of node.entries) {
      const path = `${dir}/${entry.name}`;
      if (entry.value) {
        try {
          salvage.values.set(path, view.readValue(entry.value));
        } catch (error) {
          if (!isObjectDamage(error)) throw error;
          salvage.lost.push({ path, what: "value", reason: describe(error) });
        }
      }
      if (entry.tree) partition(entry.tree, path, undefined);
    }
  };
  if (root) partition(root, prefix, undefined);
  return salvage;
}

/** True when `path` may have been held by a lost item (so its current value is kept, not deleted). */
function coveredByLoss(path: string, lost: LostItem[]): boolean {
  return lost.some((item) => (item.what === "value" ? item.path === path : item.path === "/" || path.startsWith(`${item.path}/`)));
}

export interface RecoveryReport {
  checkpoint: Located & { name: string };
  dryRun: boolean;
  /** False when the manifest itself does not match its hash: its fields were used as they are. */
  manifestVerified: boolean;
  memory: {
    /** Values read back from the checkpoint. */
    recovered: number;
    /** Paths written (added or changed). */
    set: string[];
    /** Paths deleted (not in the checkpoint). */
    deleted: string[];
    /** Paths left as they are because the checkpoint's part that would tell is lost. */
    kept: string[];
    lost: LostItem[];
  };
  /** Task records that verify, keyed by task id (not written: the session decides what to do with them). */
  tasks: { recovered: Record<string, JsonValue>; lost: LostItem[] };
  agents: { recovered: Record<string, JsonValue>; lost: LostItem[] };
  /**
   * With `intoSession`: the task and agent ids of that session left as they are because the
   * checkpoint's part that would tell is lost.
   */
  kept: { tasks: string[]; agents: string[] };
  revision: number;
}

export interface ForceRecoverOptions extends ResolveOptions {
  dryRun?: boolean;
  actor?: string;
  /**
   * Also puts the recovered task and agent records back into this session, in the same
   * transaction as the memory: records the checkpoint does not hold are deleted, those in a
   * lost part are kept. Without it only the memory is written.
   */
  intoSession?: string;
}

/**
 * Restores the project memory from a damaged checkpoint as far as it still verifies:
 * every value that can be read is put back, paths the checkpoint provably does not hold
 * are deleted, and paths in a lost part of the tree keep their current value. Reports
 * exactly what was lost. Damaged objects the live state still holds are read from it.
 * Everything is written in one transaction.
 */
export async function forceRecover(store: Store, ref: string, options: ForceRecoverOptions = {}): Promise<RecoveryReport> {
  if (!options.dryRun) assertWritable(store);
  let report!: RecoveryReport;
  const run = () => {
    const located = resolveCheckpoint(store, ref, options);
    let manifest: CheckpointManifest;
    try {
      manifest = loadManifest(store, located, { allowDamaged: true });
    } catch (error) {
      if (error instanceof ApexError && error.code === "APEX_E_INTEGRITY") {
        throw new ApexError("APEX_E_INTEGRITY", `Nothing can be recovered from ${located.sessionId}/${checkpointName(located.sequence)}: ${error.message}`, {
          hint: "Try an earlier checkpoint (`apex checkpoint list`).",
          cause: error,
        });
      }
      throw error;
    }
    let scope: MemoryScope;
    try {
      scope = normalizeScope(manifest.memory.scope);
    } catch {
      scope = normalizeScope(DEFAULT_SCOPE);
    }
    const view = ObjectStore.of(store).view({ overlay: true, fresh: true });
    assertContained((hash) => view.readNode(hash), manifest);
    // The live state's objects, so damaged objects it still has can be read from it.
    // Into a session in a git worktree: its own memory root (scope.ts: memoryMountOf).
    const mount = options.intoSession !== undefined ? memoryMountOf(store, options.intoSession) : "";
    const current = buildSnapshot(store, view, { memory: { scope, base: Catalog.of(store).base(baseKey(scope, mount)), mount }, skipUnreadable: true });
    const memory = salvageTree(view, manifest.memory.root, "/");
    const tasks = salvageTree(view, manifest.tasks.root, tasksRoot(manifest.session_id));
    const agents = salvageTree(view, manifest.agents.root, agentsRoot(manifest.session_id));

    const set: string[] = [];
    const deleted: string[] = [];
    const kept: string[] = [];
    const writes: Array<{ path: string; value?: JsonValue }> = [];
    const seen = new Set<string>();
    const liveKeys = (): Iterable<string> =>
      mount === "" ? keysInScope(store, scope) : [...store.keysBelow(mount)].map((key) => key.slice(mount.length)).filter((path) => inScope(scope, path));
    for (const path of liveKeys()) {
      seen.add(path);
      const wanted = memory.values.get(path);
      if (wanted === undefined) {
        if (coveredByLoss(path, memory.lost)) kept.push(path);
        else {
          deleted.push(path);
          writes.push({ path: `${mount}${path}` });
        }
        continue;
      }
      const now = readJsonRecord(store, `${mount}${path}`); // unreadable now: overwrite with the checkpoint's value
      const same = now.ok && now.value !== undefined && canonicalJson(now.value) === canonicalJson(wanted);
      if (!same) {
        set.push(path);
        writes.push({ path: `${mount}${path}`, value: wanted });
      }
    }
    for (const [path, value] of memory.values) {
      if (seen.has(path) || isDetached(path) || isProjectRecord(path)) continue; // kept in checkpoint trees only; this store's own (scope.ts)
      set.push(path);
      writes.push({ path: `${mount}${path}`, value });
    }
    const keptRecords = { tasks: [] as string[], agents: [] as string[] };
    if (options.intoSession !== undefined) {
      const into = checkSessionId(options.intoSession);
      const records = (from: string, to: string, salvage: Salvage, keptOut: string[]) => {
        const recovered = relativeRecords(salvage.values, from);
        for (const key of store.keysBelow(to)) {
          const id = key.slice(to.length + 1);
          if (id in recovered) continue;
          if (coveredByLoss(`${from}/${id}`, salvage.lost)) keptOut.push(id);
          else writes.push({ path: key });
        }
        for (const [id, value] of Object.entries(recovered)) writes.push({ path: `${to}/${id}`, value });
      };
      records(tasksRoot(manifest.session_id), tasksRoot(into), tasks, keptRecords.tasks);
      records(agentsRoot(manifest.session_id), agentsRoot(into), agents, keptRecords.agents);
    }
    let revision = current.revision;
    if (!options.dryRun && writes.length > 0) {
      revision = store.batchSync((batch) => {
        for (const write of writes) {
          if (write.value === undefined) batch.delete(write.path);
          else batch.set(write.path, write.value);
        }
      }, options.actor ?? ACTORS.recover).revision;
    }
    report = {
      checkpoint: { ...located, name: checkpointName(located.sequence) },
      dryRun: options.dryRun ?? false,
      manifestVerified: manifestHash(manifest) === manifest.hash,
      memory: { recovered: memory.values.size, set, deleted, kept, lost: memory.lost },
      tasks: { recovered: relativeRecords(tasks.values, tasksRoot(manifest.session_id)), lost: tasks.lost },
      agents: { recovered: relativeRecords(agents.values, agentsRoot(manifest.session_id)), lost: agents.lost },
      kept: keptRecords,
      revision,
    };
  };
  if (options.dryRun) run();
  else await store.transaction(run);
  return report;
}

function relativeRecords(values: Map<string, JsonValue>, mount: string): Record<string, JsonValue> {
  const records: Record<string, JsonValue> = {};
  for (const [path, value] of values) records[path.slice(mount.length + 1)] = value;
  return records;
}

// ---------------------------------------------------------------------------------------------

export interface ReconstructOptions {
  /** Id of the new session; default `<old>-r<N>` with the first free N. */
  newSessionId?: string;
  actor?: string;
  now?: () => Date;
}

export interface RecordSource {
  id: string;
  /** Where the record came from: the live session, or the latest checkpoint that verifies. */
  source: "live" | "checkpoint";
}

export interface ReconstructReport {
  sessionId: string;
  /** The session it came from; `name`: its name (a branch), null for an unnamed one (text names the session by it). */
  from: { sessionId: string; name: string | null; checkpoint: (Located & { name: string }) | null };
  /** The checkpoint taken of the new session. */
  checkpoint: CheckpointManifest;
  tasks: RecordSource[];
  agents: RecordSource[];
  memory: { recovered: string[]; lost: string[] };
  /** Checkpoints of the old session skipped because they do not verify. */
  skippedCheckpoints: string[];
  /** Sentences naming everything that could not be recovered. */
  missing: string[];
}

/**
 * Builds a new session from whatever of `sessionId` still verifies: the latest checkpoint
 * that verifies, plus the live tasks, agent states and memory that can still be decoded.
 * Live records win over the checkpoint's (they are newer); an undecodable live record is
 * replaced by the checkpoint's version; records only the checkpoint has are brought back.
 * Memory stays as it is except for undecodable values (taken from the checkpoint, or
 * deleted). Writes the new session and a first checkpoint of it in one transaction.
 */
export async function reconstructSession(store: Store, sessionId: string, options: ReconstructOptions = {}): Promise<ReconstructReport> {
  assertWritable(store);
  checkSessionId(sessionId);
  if (options.newSessionId !== undefined) checkSessionName(options.newSessionId, "id");
  let report!: ReconstructReport;
  await store.transaction(() => {
    const catalog = Catalog.of(store);
    const missing: string[] = [];

    // The latest checkpoint that verifies.
    const sequences = new Set<number>();
    for (const { sessionId: id, sequence } of catalog.summaryKeys()) if (id === sessionId) sequences.add(sequence);
    for (const { sessionId: id, sequence } of manifestKeys(store)) if (id === sessionId) sequences.add(sequence);
    const skipped: string[] = [];
    let base: CheckpointManifest | undefined;
    for (const sequence of [...sequences].sort((a, b) => b - a)) {
      try {
        const manifest = loadManifest(store, { sessionId, sequence, id: "" });
        if (verifyCheckpoint(store, manifest).length === 0) {
          base = manifest;
          break;
        }
      } catch {
        // unreadable manifest: skip
      }
      skipped.push(checkpointName(sequence));
    }
    if (skipped.length > 0) missing.push(`Checkpoints that do not verify were skipped: ${skipped.join(", ")}.`);

    // The old session record (live, or moved to the history when the session ended).
    let oldRecord: JsonValue | undefined;
    for (const path of [sessionPath(sessionId), `/sessions/history/${sessionId}`]) {
      const read = readJsonRecord(store, path);
      if (read.ok) oldRecord = read.value;
      else missing.push(`The session record ${path} ${read.reason}.`);
      // One written null (or no object) by hand holds none of it: the output said "Nothing is missing".
      if (oldRecord !== undefined && !isRecord(oldRecord)) {
        missing.push(`The session record ${path} is not an object (it is ${describeValue(oldRecord)}): the new session's record was made anew, without the old one's name, initial task, agent list or start time.`);
      }
      if (oldRecord !== undefined) break;
    }
    if (oldRecord === undefined && !missing.some((line) => line.startsWith("The session record"))) {
      missing.push(`The session record ${sessionPath(sessionId)} is missing.`);
    }
    const liveTasks = [...store.keysBelow(tasksRoot(sessionId))];
    const liveAgents = [...store.keysBelow(agentsRoot(sessionId))];
    if (oldRecord === undefined && !base && liveTasks.length === 0 && liveAgents.length === 0) {
      throw new ApexError("APEX_E_NO_SESSION", `Nothing of session ${sessionId} is left to reconstruct from.`, {
        hint: "List sessions with `apex session list`.",
      });
    }

    const view = ObjectStore.of(store).view();
    const merge = (mount: string, root: Hash | null, live: string[], what: string) => {
      const records = new Map<string, { value: JsonValue; source: "live" | "checkpoint" }>();
      const fromCheckpoint = (id: string): JsonValue | undefined => {
        if (!base) return undefined;
        const entry = lookupEntry(view, root, id.split("/"));
        return entry?.value ? view.readValue(entry.value) : undefined;
      };
      for (const path of live) {
        const id = path.slice(mount.length + 1);
        const read = readJsonRecord(store, path);
        if (read.ok) {
          if (read.value !== undefined) records.set(id, { value: read.value, source: "live" });
        } else {
          const saved = fromCheckpoint(id);
          if (saved !== undefined) records.set(id, { value: saved, source: "checkpoint" });
          else missing.push(`${what} ${id}: the live record cannot be decoded and no verifying checkpoint has it.`);
        }
      }
      if (base && root) {
        const all = salvageTree(view, root, mount);
        for (const [path, value] of all.values) {
          const id = path.slice(mount.length + 1);
          if (!records.has(id) && !live.includes(path)) records.set(id, { value, source: "checkpoint" });
        }
      }
      return records;
    };
    const tasks = merge(tasksRoot(sessionId), base?.tasks.root ?? null, liveTasks, "Task");
    const agents = merge(agentsRoot(sessionId), base?.agents.root ?? null, liveAgents, "Agent");

    // Memory: live values stay; undecodable ones come from the checkpoint or go.
    const scope = base ? normalizeScope(base.memory.scope) : normalizeScope(DEFAULT_SCOPE);
    const memoryFixes: Array<{ path: string; value?: JsonValue }> = [];
    const recovered: string[] = [];
    const lost: string[] = [];
    for (const path of keysInScope(store, scope)) {
      if (!readJsonRecord(store, path).ok) {
        const entry = base ? lookupEntry(view, base.memory.root, pathSegments(path)) : undefined;
        if (entry?.value) {
          memoryFixes.push({ path, value: view.readValue(entry.value) });
          recovered.push(path);
        } else {
          memoryFixes.push({ path });
          lost.push(path);
          missing.push(`Memory ${path}: the value cannot be decoded and no verifying checkpoint has it.`);
        }
      }
    }

    const newId = options.newSessionId ?? freeSessionId(store, catalog, sessionId);
    if (store.has(sessionPath(newId)) || store.has(historyPath(newId)) || catalog.lastSequence(newId) > 0) {
      throw new ApexError("APEX_E_CONFLICT", `Session ${newId} already exists.`, { hint: "Choose another id for the reconstructed session." });
    }
    // An id is looked up before a name: one equal to a branch's name would take every command naming that branch.
    // In any case, as names are read: an older store's two names differing only in case were a lookup's APEX_E_AMBIGUOUS (exit 2).
    const named = namesAlike(store, newId);
    if (named.length > 0) {
      const which = named.length === 1 ? `A session is named ${named[0]![0]} already (${named[0]![1]})` : `Sessions are named ${newId} already, in any case (${named.map(([name, id]) => `${name}: ${id}`).join("; ")})`;
      throw new ApexError("APEX_E_CONFLICT", `${which}; the reconstructed session cannot take it as its id.`, {
        hint: "Choose another id for the reconstructed session (--as), or leave --as out for <id>-r1.",
        details: { id: newId, named: named[0]![1], sessions: named.map(([name, id]) => ({ name, session_id: id })) },
      });
    }
    // Nor the start of another session's id: `3f2a9c1e` is how that session is printed and found, and a
    // command given it acted on the other session, never on the one made here.
    const prefixOf = options.newSessionId === undefined ? undefined : allSessions(store).find((other) => other.session_id !== newId && other.session_id.startsWith(newId));
    if (prefixOf !== undefined) {
      throw new ApexError("APEX_E_CONFLICT", `${newId} is the start of session ${prefixOf.session_id}'s id; the reconstructed session cannot take it as its id.`, {
        hint: "Choose another id for the reconstructed session (--as), or leave --as out for <id>-r1.",
        details: { id: newId, prefix_of: prefixOf.session_id },
      });
    }
    const now = (options.now?.() ?? new Date()).toISOString();
    // Without the edges of the old session's merge checkpoints (merge-base.ts recordMerge), nor its deleted checkpoints other edges named: they name its sequences, not the new session's.
    const { [MERGES_FIELD]: _merges, [DELETED_MERGES_FIELD]: _deleted, [DELETED_POINTS_FIELD]: _points, ...old } = isRecord(oldRecord) ? (oldRecord as Record<string, JsonValue>) : {};
    // A session that is not running, kept with the ended ones: `session list` shows it, it never
    // stands in the way of `apex start --task`, and `apex start --continue <id>` brings it back.
    // A session whose record is lost (null, or no object, written by hand) leaves none of what a continue reads
    // of it: the continue of the reconstructed session failed with "record.agents is not iterable".
    const project = store.get(PROJECT_CONFIG_PATH);
    const record: Record<string, JsonValue> = {
      project_id: isRecord(project) && typeof project.project_id === "string" ? project.project_id : null,
      initial_task: null,
      ...old,
      agents: Array.isArray(old.agents) ? old.agents.filter((name) => typeof name === "string") : [],
      session_id: newId,
      status: "stopped",
      created_at: now,
      updated_at: now,
      supervisor: null,
      outcome: `reconstructed from session ${sessionId}${base ? ` (${base.name})` : ""}`,
      ended_at: now,
      restored_from: base?.id ?? null,
      // Names are unique: the branch reconstructed from keeps its own.
      name: null,
      reconstructed_from: { session_id: sessionId, checkpoint_id: base?.id ?? null, at: now },
      history: [{ event: "reconstructed", at: now, from: sessionId, checkpoint: base?.id ?? null }],
    };
    const actor = options.actor ?? ACTORS.recover;
    store.batchSync((batch) => {
      // At /sessions/<id> while its first checkpoint is written (checkpoints are of existing sessions), then moved below.
      batch.set(sessionPath(newId), record);
      for (const [id, { value }] of tasks) batch.set(`${tasksRoot(newId)}/${id}`, value);
      for (const [id, { value }] of agents) batch.set(`${agentsRoot(newId)}/${id}`, withoutProcess(id, value));
      for (const fix of memoryFixes) {
        if (fix.value === undefined) batch.delete(fix.path);
        else batch.set(fix.path, fix.value);
      }
    }, actor);
    const created = writeCheckpoint(store, {
      sessionId: newId,
      trigger: "reconstruct",
      // The session as session list prints it (a branch by its name): the description is read by people (checkpoint list, show); data.reconstructed_from keeps the whole id.
      description: `Reconstructed from session ${typeof old.name === "string" && old.name ? old.name : shortSessionId(sessionId)}${base ? ` (${base.name})` : ""}`,
      pinned: false,
      gitState: base?.git_state ?? null,
      data: { reconstructed_from: sessionId },
      scope,
      createdAt: now,
      actor,
    });
    store.batchSync((batch) => {
      batch.delete(sessionPath(newId));
      batch.set(historyPath(newId), record);
    }, actor);
    report = {
      sessionId: newId,
      from: { sessionId, name: sessionName(store, sessionId), checkpoint: base ? { sessionId, sequence: base.sequence, id: base.id, name: base.name } : null },
      checkpoint: created.manifest,
      tasks: [...tasks].map(([id, { source }]) => ({ id, source })),
      agents: [...agents].map(([id, { source }]) => ({ id, source })),
      memory: { recovered, lost },
      skippedCheckpoints: skipped,
      missing,
    };
  });
  return report;
}

function freeSessionId(store: Store, catalog: Catalog, sessionId: string): string {
  for (let n = 1; ; n++) {
    const candidate = `${sessionId}-r${n}`;
    if (!store.has(sessionPath(candidate)) && !store.has(historyPath(candidate)) && catalog.lastSequence(candidate) === 0 && namesAlike(store, candidate).length === 0) return candidate;
  }
}

function historyPath(sessionId: string): string {
  return `/sessions/history/${sessionId}`;
}

/**
 * An agent record copied into a reconstructed session names no process: the processes it
 * named belong to the old session, and continuing the new one must never end them.
 */
function withoutProcess(id: string, value: JsonValue): JsonValue {
  if (id.endsWith(".context") || !isRecord(value)) return value;
  return { ...(value as Record<string, JsonValue>), status: "stopped", pid: null, pgid: null, start_time: null };
}

/** The sessions whose name is ID in any case, [name, id] by name (an unreadable record names nothing; validate reports it). */
function namesAlike(store: Store, id: string): Array<[string, string]> {
  let names: Map<string, string>;
  try {
    names = sessionNames(store);
  } catch {
    return [];
  }
  return [...names].filter(([name]) => name.toLowerCase() === id.toLowerCase()).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
