import {
  ObjectStore,
  canonicalJson,
  decodeTreeNode,
  decodeValueObject,
  isObjectDamage,
  sha256,
  visitReachable,
  type Hash,
  type ObjectKind,
  type ObjectView,
  type TreeNode,
} from "./engine/objects.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { isApexError, withDetail } from "../../core/errors.js";
import { Catalog, summaryOf, type CheckpointSummary } from "./catalog.js";
import type { LostAfter, LostCheckpoint } from "./lost.js";
import {
  agentsRoot,
  checkpointName,
  isRecord,
  manifestHash,
  manifestPath,
  manifestShapeProblems,
  RESERVED_SESSION_NAMES,
  sessionPath,
  tasksRoot,
  type CheckpointManifest,
} from "./manifest.js";
import { containmentProblems, type ContainmentProblem } from "./contained.js";
import { ACTORS, assertWritable, manifestKeys, removeCheckpointRecords } from "./refs.js";
import { DEFAULT_SCOPE, keysInScope, memoryMountOf, normalizeScope, type MemoryScope } from "./scope.js";
import { buildSnapshot } from "./snapshot.js";
import { RECORDS_AT_ONCE, checkLiveRecords, loggedChanges, readMany, type LiveRecordFinding } from "./validate-live.js";
import { identityProblem } from "./record-identity.js";
import { decodeValue } from "../value-codec.js";
import { describeValue } from "../owned-paths.js";
import { BRANCH_TRIGGER, MERGE_TRIGGER, pointsEdgesName, recordDeletedPoint } from "./merge-base.js";
import { forgetLangGraphLeftovers, langGraphLeftovers, threadLabel, type LangGraphLeftover } from "./langgraph-index.js";
import { CURRENT_SESSION_PATH, PROJECT_CONFIG_PATH, historyPath, memoryRootOf } from "../../core/session/records.js";
import { shortSessionId } from "../../core/session/names.js";
import { recountTasks } from "../../core/session/service.js";
import { holdsLiveMemory } from "../../core/session/sessions.js";

/**
 * Validation re-hashes every checkpoint manifest, tree node and value, and checks the
 * records that must agree with each other. Each problem is reported once, with a stable
 * code; a record that cannot be decoded is reported and the scan goes on.
 */

export type ProblemCode =
  | "value-missing"
  | "value-corrupt"
  | "value-undecodable"
  | "tree-missing"
  | "tree-corrupt"
  | "tree-undecodable"
  | "tree-count-mismatch"
  | "manifest-missing"
  | "manifest-undecodable"
  | "manifest-malformed"
  | "manifest-misplaced"
  | "manifest-hash-mismatch"
  | "checkpoint-count-mismatch"
  | "index-missing"
  | "index-mismatch"
  | "index-dangling"
  | "index-undecodable"
  | "sequence-counter-behind"
  | "base-damaged"
  | "record-undecodable"
  | "record-damaged"
  | "record-missing"
  | "record-unlogged"
  | "record-no-object"
  | "record-malformed"
  | "current-session-invalid"
  | "current-session-missing"
  | "task-unknown-agent"
  | "ended-session-undated"
  | "checkpoint-escapes-session"
  | "langgraph-index-dangling"
  | "langgraph-head-dangling"
  | "langgraph-writes-dangling"
  | "store-damaged"
  | "checkpoint-lost"
  | "validator-crashed";

export interface StoreProblem {
  code: ProblemCode;
  severity: "error" | "warning";
  message: string;
  /** The keyspace path concerned: the record, or the memory/task/agent path where a damaged object was first met. */
  path?: string;
  hash?: Hash;
  /** "<session>/checkpoint-007" of the checkpoint concerned. */
  checkpoint?: string;
  checkpointId?: string;
}

export interface CheckpointStatus {
  sessionId: string;
  /** Its session's name (a branch), null for an unnamed session or a record that does not read: text names the session by it. */
  session_name: string | null;
  sequence: number;
  name: string;
  id?: string;
  verified: boolean;
  /** Why it does not verify. */
  reasons: string[];
}

export interface ValidationReport {
  /** No problem of severity "error". */
  ok: boolean;
  problems: StoreProblem[];
  /**
   * Of a truncated store file only (lost.ts): `lost`, the checkpoints the cut took, which the rest of the report
   * cannot name; `lost_after`, the sessions whose checkpoints after one, if any, were in pages the cut took.
   */
  checkpoints: { total: number; verified: number; damaged: CheckpointStatus[]; lost?: LostCheckpoint[]; lost_after?: LostAfter[] };
  objects: {
    /** False when validation was limited to a session (only its checkpoints' objects were checked). */
    scanned: boolean;
    values: number;
    trees: number;
    unreferencedValues: number;
    unreferencedTrees: number;
    packs: number;
    packBytes: number;
    /** Pack bytes no index record points at (a sweep frees them). */
    garbageBytes: number;
  };
  /** Keyspace records decoded. */
  records: number;
  /**
   * The sessions the messages, checkpoint labels and repair targets name (id -> its name, null for
   * an unnamed session): text prints each by its name, else its uuid's short form, as session list
   * does (plugin-cli.ts). Left out of --json, which has the whole ids in the messages as ever. A
   * report made without reading the store (a damaged file, a crashed validator) has none.
   */
  session_names?: Record<string, string | null>;
}

export interface ValidateOptions {
  /** Only this session's checkpoints and records (objects they reference, not all objects). */
  sessionId?: string;
}

interface PartitionCheck {
  entries: number;
  values: number;
  damaged: boolean;
}

/** Objects a tree check reads at a time where each read is a round trip (TreeChecker.readAhead). */
const READ_AHEAD = 4096;

/** Verifies trees with a memo per node, so trees shared by many checkpoints are checked once. */
class TreeChecker {
  private readonly partitions = new Map<Hash, PartitionCheck>();
  readonly valueStatus = new Map<Hash, boolean>();
  readonly reported = new Set<string>();
  /** Nodes whose names were checked for containment (see contained.ts). */
  readonly contained = new Set<Hash>();
  /** The values readAhead listed, in the order partition() checks them, with their positions; those before `fetchedTo` were read ahead. */
  private readonly valueOrder = new Map<Hash, number>();
  private readonly valueList: Hash[] = [];
  private fetchedTo = 0;

  constructor(
    private readonly view: ObjectView,
    private readonly report: (problem: StoreProblem) => void,
  ) {}

  get reachedTrees(): ReadonlyMap<Hash, PartitionCheck> {
    return this.partitions;
  }

  readonly readNode = (hash: Hash) => this.view.readNode(hash);

  /** Checks the directory tree `root`; `mount` prefixes paths in messages. */
  directory(root: Hash | null, mount: string, context: Partial<StoreProblem>): { values: number; damaged: boolean } {
    if (!root) return { values: 0, damaged: false };
    if (!this.partitions.has(root)) this.readAhead(root);
    const result = this.partition(root, mount === "/" ? "" : mount, context);
    return { values: result.values, damaged: result.damaged };
  }

  /**
   * Where every read is a round trip (PostgreSQL: ObjectStore.readsMany), the nodes of the tree at
   * `root` not checked yet are read level by level, READ_AHEAD to a statement or so
   * (ObjectView.prefetchNodes), and verified into the view's node cache; its values are listed in
   * the order partition() checks them, and value() reads them READ_AHEAD at a time. Read one by
   * one, the 42k objects of a checkpoint of 30k memory keys cost a validate 42k index lookups and
   * 24k pack reads (of its 216k round trips, 51-57 s; 5-6 s with the rest read together). What
   * does not read here is read again, on its own, by partition(), which reports it.
   */
  private readAhead(root: Hash): void {
    if (!this.view.objects.readsMany) return;
    const nodes = new Map<Hash, TreeNode>();
    let level = [root];
    while (level.length > 0) {
      const next: Hash[] = [];
      for (let start = 0; start < level.length; start += READ_AHEAD) {
        const chunk = level.slice(start, start + READ_AHEAD);
        try {
          this.view.prefetchNodes(chunk);
        } catch {
          // read one by one below
        }
        for (const hash of chunk) {
          let node: TreeNode;
          try {
            node = this.view.readNode(hash);
          } catch {
            continue;
          }
          nodes.set(hash, node);
          const children = node.kind === "split" ? node.buckets.map((bucket) => bucket.hash) : node.entries.flatMap((entry) => (entry.tree ? [entry.tree] : []));
          for (const child of children) if (!nodes.has(child) && !this.partitions.has(child)) next.push(child);
        }
      }
      level = [...new Set(next)].filter((hash) => !nodes.has(hash));
    }
    const visited = new Set<Hash>();
    const list = (hash: Hash): void => {
      const node = nodes.get(hash);
      if (!node || visited.has(hash) || this.partitions.has(hash)) return;
      visited.add(hash);
      if (node.kind === "split") for (const bucket of node.buckets) list(bucket.hash);
      else
        for (const entry of node.entries) {
          if (entry.value && !this.valueStatus.has(entry.value) && !this.valueOrder.has(entry.value)) {
            this.valueOrder.set(entry.value, this.valueList.length);
            this.valueList.push(entry.value);
          }
          if (entry.tree) list(entry.tree);
        }
    };
    list(root);
  }

  private partition(hash: Hash, dirPath: string, context: Partial<StoreProblem>): PartitionCheck {
    const known = this.partitions.get(hash);
    if (known) return known;
    let result: PartitionCheck;
    try {
      const node = this.view.readNode(hash);
      if (node.kind === "split") {
        result = { entries: 0, values: 0, damaged: false };
        for (const bucket of node.buckets) {
          const child = this.partition(bucket.hash, dirPath, context);
          result.values += child.values;
          result.entries += bucket.count;
          if (child.damaged) result.damaged = true;
          else if (child.entries !== bucket.count) {
            result.damaged = true;
            this.once("tree", bucket.hash, {
              ...context,
              code: "tree-count-mismatch",
              severity: "error",
              message: `Tree node ${short(hash)} (directory ${dirPath || "/"}) says bucket ${bucket.index} holds ${bucket.count} entr${bucket.count === 1 ? "y" : "ies"}, it holds ${child.entries}.`,
              path: dirPath || "/",
              hash,
            });
          }
        }
      } else {
        result = { entries: node.entries.length, values: 0, damaged: false };
        for (const entry of node.entries) {
          const path = `${dirPath}/${entry.name}`;
          if (entry.value) {
            if (this.value(entry.value, path, context)) result.values += 1;
            else result.damaged = true;
          }
          if (entry.tree) {
            const child = this.partition(entry.tree, path, context);
            result.values += child.values;
            if (child.damaged) result.damaged = true;
          }
        }
      }
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
      this.once("tree", hash, {
        ...context,
        code: `tree-${error.reason}`,
        severity: "error",
        message: `${error.message.replace(/\.$/, "")} (directory ${dirPath || "/"}).`,
        path: dirPath || "/",
        hash,
      });
      result = { entries: 0, values: 0, damaged: true };
    }
    this.partitions.set(hash, result);
    return result;
  }

  value(hash: Hash, path: string, context: Partial<StoreProblem>): boolean {
    const known = this.valueStatus.get(hash);
    if (known !== undefined) return known;
    const at = this.valueOrder.get(hash);
    if (at !== undefined && at >= this.fetchedTo) {
      this.fetchedTo = at + READ_AHEAD;
      try {
        this.view.prefetchValues(this.valueList.slice(at, this.fetchedTo));
      } catch {
        // read one by one
      }
    }
    let ok = true;
    try {
      this.view.readValue(hash);
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
      ok = false;
      this.once("value", hash, {
        ...context,
        code: `value-${error.reason}`,
        severity: "error",
        message: `${error.message.replace(/\.$/, "")} (at ${path}).`,
        path,
        hash,
      });
    }
    this.valueStatus.set(hash, ok);
    return ok;
  }

  private once(kind: ObjectKind, hash: Hash, problem: StoreProblem): void {
    const key = `${kind}:${hash}:${problem.code}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.report(problem);
  }
}

function short(hash: Hash): string {
  return hash.slice(0, 12);
}

/** Everything found about one checkpoint slot (a session + sequence seen in the catalog or the keyspace). */
interface CheckpointRecordState {
  sessionId: string;
  sequence: number;
  summary?: CheckpointSummary;
  summaryUndecodable?: boolean;
  manifestValue?: JsonValue;
  manifestUndecodable?: boolean;
  manifest?: CheckpointManifest;
  /** Problems with the manifest itself or its trees (the checkpoint does not verify). */
  reasons: string[];
  /** Index records needing a rebuild from the (verifying) manifest. */
  indexStale: boolean;
  /** The session a misplaced manifest says it belongs to (its message names it). */
  describes?: string;
}

interface ValidationState {
  report: ValidationReport;
  slots: CheckpointRecordState[];
  checker: TreeChecker;
  undecodableRecords: string[];
  /** Task and agent records that are no object (null, written by hand): they hold nothing, and repair removes them. */
  hollowRecords: string[];
  /** Live records that differ from the latest verifying checkpoint with no logged write (validate-live.ts). */
  liveFindings: LiveRecordFinding[];
  unknownAgentTasks: Array<{ path: string; task: Record<string, unknown> }>;
  /** Ended sessions' records with no time they ended (archive and retention cannot place them), and the time repair gives them. */
  undatedEnded: Array<{ path: string; record: Record<string, unknown>; endedAt: string }>;
  currentInvalid: boolean;
  danglingIds: string[];
  counters: Array<{ sessionId: string; last: number; needed: number }>;
  badBases: string[];
  corruptObjects: Array<{ kind: ObjectKind; hash: Hash }>;
  /** Sessions named in problems besides the slots' (report.session_names). */
  mentioned: Set<string>;
  /** Sessions with LangGraph records (an index or heads, langgraph-index.ts): repair looks there for those of the checkpoints it removes. */
  langGraphSessions: Set<string>;
}

/** Validates the store (or one session). Synchronous and read-only. */
export function validateStore(store: Store, options: ValidateOptions = {}): ValidationReport {
  return runValidation(store, ObjectStore.of(store).view({ fresh: true }), options).report;
}

function runValidation(store: Store, view: ObjectView, options: ValidateOptions): ValidationState {
  const problems: StoreProblem[] = [];
  const report: ValidationReport = {
    ok: true,
    problems,
    checkpoints: { total: 0, verified: 0, damaged: [] },
    objects: { scanned: !options.sessionId, values: 0, trees: 0, unreferencedValues: 0, unreferencedTrees: 0, packs: 0, packBytes: 0, garbageBytes: 0 },
    records: 0,
  };
  const add = (problem: StoreProblem) => problems.push(problem);
  const checker = new TreeChecker(view, add);
  const catalog = Catalog.of(store);
  const objects = view.objects;
  const state: ValidationState = {
    report,
    slots: [],
    checker,
    undecodableRecords: [],
    hollowRecords: [],
    liveFindings: [],
    unknownAgentTasks: [],
    undatedEnded: [],
    currentInvalid: false,
    danglingIds: [],
    counters: [],
    badBases: [],
    corruptObjects: [],
    mentioned: new Set(),
    langGraphSessions: new Set(),
  };
  const wanted = (sessionId: string) => !options.sessionId || sessionId === options.sessionId;

  // 1. Checkpoint slots: union of the catalog's summaries and the manifests in the keyspace.
  const slots = new Map<string, CheckpointRecordState>();
  const slot = (sessionId: string, sequence: number) => {
    const key = `${sessionId}\u0000${sequence}`;
    let found = slots.get(key);
    if (!found) slots.set(key, (found = { sessionId, sequence, reasons: [], indexStale: false }));
    return found;
  };
  for (const { sessionId, sequence } of catalog.summaryKeys()) if (wanted(sessionId)) slot(sessionId, sequence);
  for (const { sessionId, sequence } of manifestKeys(store)) if (wanted(sessionId)) slot(sessionId, sequence);

  for (const entry of [...slots.values()].sort((a, b) => (a.sessionId === b.sessionId ? a.sequence - b.sequence : a.sessionId < b.sessionId ? -1 : 1))) {
    state.slots.push(entry);
    checkSlot(store, catalog, checker, entry, add);
    report.checkpoints.total += 1;
    if (entry.reasons.length === 0 && entry.manifest) report.checkpoints.verified += 1;
    else if (entry.manifestValue !== undefined || entry.manifestUndecodable) {
      report.checkpoints.damaged.push({
        sessionId: entry.sessionId,
        session_name: sessionNameOf(store, entry.sessionId),
        sequence: entry.sequence,
        name: checkpointName(entry.sequence),
        ...(entry.manifest?.id ? { id: entry.manifest.id } : {}),
        verified: false,
        reasons: entry.reasons,
      });
    }
  }

  // 2. Id records that lead nowhere, sequence counters behind their sessions.
  const liveIds = new Map<string, CheckpointRecordState>();
  for (const entry of state.slots) if (entry.manifest) liveIds.set(entry.manifest.id, entry);
  for (const id of catalog.idKeys()) {
    let record: unknown;
    try {
      record = catalog.raw(["i", id]);
    } catch {
      add({ code: "index-undecodable", severity: "error", message: `The id record of checkpoint ${id} cannot be decoded.`, checkpointId: id });
      state.danglingIds.push(id);
      continue;
    }
    const sessionId = isRecord(record) && typeof record.s === "string" ? record.s : undefined;
    if (sessionId !== undefined && !wanted(sessionId)) continue;
    const target = liveIds.get(id);
    if (!target || !isRecord(record) || record.s !== target.sessionId || record.n !== target.sequence) {
      if (target) continue; // reported as index-mismatch with its checkpoint
      if (sessionId !== undefined) state.mentioned.add(sessionId);
      add({
        code: "index-dangling",
        severity: "error",
        message: `The id index has checkpoint ${id}${sessionId ? ` (${sessionId}/${checkpointName(Number((record as Record<string, unknown>).n))})` : ""}, which does not exist.`,
        checkpointId: id,
      });
      state.danglingIds.push(id);
    }
  }
  const maxSequence = new Map<string, number>();
  for (const entry of state.slots) maxSequence.set(entry.sessionId, Math.max(maxSequence.get(entry.sessionId) ?? 0, entry.sequence));
  const counterValues = new Map<string, unknown>();
  for (const { sessionId } of catalog.counters()) {
    try {
      counterValues.set(sessionId, catalog.raw(["n", sessionId]));
    } catch {
      counterValues.set(sessionId, undefined);
    }
  }
  for (const [sessionId, needed] of maxSequence) {
    const last = counterValues.get(sessionId);
    if (typeof last !== "number" || last < needed) {
      add({
        code: "sequence-counter-behind",
        severity: "error",
        message: `The sequence counter of session ${sessionId} is ${typeof last === "number" ? last : "missing or unreadable"}, but ${checkpointName(needed)} exists: the next checkpoint would reuse a number.`,
        path: sessionPath(sessionId),
      });
      state.counters.push({ sessionId, last: typeof last === "number" ? last : 0, needed });
    }
  }

  // 3. Memory bases (the starting point of the next incremental checkpoint).
  if (!options.sessionId) {
    for (const { scopeKey: key } of catalog.bases()) {
      let base: unknown;
      try {
        base = catalog.raw(["b", key]);
      } catch {
        base = undefined;
      }
      const scope = describeScopeKey(key);
      if (!isRecord(base) || !(base.root === null || typeof base.root === "string") || typeof base.keys !== "number") {
        add({ code: "base-damaged", severity: "error", message: `The memory base of scope ${scope} cannot be read.` });
        state.badBases.push(key);
        continue;
      }
      const checked = checker.directory(base.root as Hash | null, "/", {});
      if (checked.damaged || checked.values !== base.keys) {
        add({
          code: "base-damaged",
          severity: "error",
          message: checked.damaged
            ? `The memory base of scope ${scope} references damaged objects; the next checkpoint would inherit them.`
            : `The memory base of scope ${scope} holds ${checked.values} value${checked.values === 1 ? "" : "s"}, its record says ${base.keys}.`,
          ...(base.root ? { hash: base.root as Hash } : {}),
        });
        state.badBases.push(key);
      }
    }
  }

  // 4. Every stored object, including those nothing references any more.
  if (!options.sessionId) {
    const usage = objects.usage();
    report.objects.packs = usage.packs;
    report.objects.packBytes = usage.bytes;
    report.objects.garbageBytes = usage.bytes - usage.liveBytes;
    for (const kind of ["tree", "value"] as const) {
      for (const hash of objects.hashes(kind)) {
        if (kind === "tree") report.objects.trees += 1;
        else report.objects.values += 1;
        const reached = kind === "tree" ? checker.reachedTrees.has(hash) : checker.valueStatus.has(hash);
        if (reached) {
          const ok = kind === "tree" ? !checker.reported.has(`tree:${hash}:tree-corrupt`) && !checker.reported.has(`tree:${hash}:tree-undecodable`) : checker.valueStatus.get(hash);
          if (!ok) state.corruptObjects.push({ kind, hash });
          continue;
        }
        if (kind === "tree") report.objects.unreferencedTrees += 1;
        else report.objects.unreferencedValues += 1;
        const problem = unreferencedObjectProblem(objects, kind, hash);
        if (problem) {
          add(problem);
          state.corruptObjects.push({ kind, hash });
        }
      }
    }
  } else {
    report.objects.trees = checker.reachedTrees.size;
    report.objects.values = checker.valueStatus.size;
  }

  // 5. Keyspace records: each decoded on its own; then the relations between them.
  // The live memory a session holds is its too: `session validate ID` checks it as a validation of the whole store does.
  const held = options.sessionId === undefined ? undefined : memoryHeldBy(store, options.sessionId);
  checkRecords(store, options, state, add, held);
  if (held !== null) checkLiveMemory(store, view, state, add, held);
  checkLangGraph(store, state, add);

  report.ok = !problems.some((problem) => problem.severity === "error");
  const named = new Set([...state.slots.flatMap((slot) => (slot.describes === undefined ? [slot.sessionId] : [slot.sessionId, slot.describes])), ...state.mentioned]);
  report.session_names = Object.fromEntries([...named].sort().map((id) => [id, sessionNameOf(store, id)]));
  return state;
}

/**
 * Live records against the latest verifying checkpoint of the memory they are: damage that
 * decodes fine is found too, and an undecodable record that checkpoint has is put back by repair
 * instead of removed. The project's memory (the keyspace's root) and each worktree session's own
 * (`/sessions/<sid>/memory`) are compared each with its own checkpoint. Validation of one session
 * (`session validate ID`) compares the memory that session holds, if any (`held`).
 */
function checkLiveMemory(store: Store, view: ObjectView, state: ValidationState, add: (problem: StoreProblem) => void, held: string | null | undefined): void {
  const bases = [...liveMemoryBases(store, state)].filter(([mount]) => held === undefined || mount === held);
  if (bases.length === 0) return;
  const logged = loggedChanges(store, bases.map(([, manifest]) => manifest.revision));
  const undecodable = new Set(state.undecodableRecords);
  for (const [mount, latest] of bases) {
    const findings = checkLiveRecords(store, view, latest, undecodable, mount, logged);
    for (const finding of findings ?? []) {
      const message =
        finding.kind === "record-unlogged"
          ? `The record at ${finding.path} appeared with no logged write since ${finding.checkpoint}: a damaged key.`
          : finding.kind === "record-missing"
            ? `The record at ${finding.path} is gone with no logged delete since ${finding.checkpoint}, which has it.`
            : `The record at ${finding.path} differs from ${finding.checkpoint} with no logged write since: its bytes (or the revision log) are damaged.`;
      add({ code: finding.kind, severity: "error", message, path: finding.path, checkpoint: finding.checkpoint, ...(finding.hash ? { hash: finding.hash } : {}) });
      state.liveFindings.push(finding);
    }
  }
  // An undecodable record the checkpoint has is put back, not deleted.
  const restorable = new Set(state.liveFindings.filter((finding) => finding.restorable).map((finding) => finding.path));
  state.undecodableRecords = state.undecodableRecords.filter((path) => !restorable.has(path));
}

/**
 * The memory `sessionId` holds (core/session/sessions.ts: holdsLiveMemory), where it is in the
 * keyspace: "" for the project's memory at the root (held by the session of the project's tree
 * that ran last), `/sessions/<sid>/memory` for a worktree session that has run; null when it
 * holds none (a session of the project's tree another one ran after, a branch not continued
 * since it was made) or its records do not read.
 */
function memoryHeldBy(store: Store, sessionId: string): string | null {
  try {
    return holdsLiveMemory(store, sessionId) ? memoryMountOf(store, sessionId) : null;
  } catch {
    return null;
  }
}

/**
 * LangGraph records naming APEX checkpoints no longer stored (langgraph-index.ts: an index record
 * and its pending writes, a thread's head), left by a repair before this one, or by an APEX whose
 * retention left them: no read reaches them (getTuple and list skip them, a head's miss takes the
 * newest step still stored), so they are warnings (space, not damage), which repair removes.
 */
function checkLangGraph(store: Store, state: ValidationState, add: (problem: StoreProblem) => void): void {
  for (const sessionId of [...state.langGraphSessions].sort()) {
    const leftovers = langGraphLeftovers(store, sessionId);
    if (leftovers.length === 0) continue;
    state.mentioned.add(sessionId);
    for (const leftover of leftovers) {
      add({
        code: leftover.kind === "step" ? "langgraph-index-dangling" : leftover.kind === "writes" ? "langgraph-writes-dangling" : "langgraph-head-dangling",
        severity: "warning",
        message: `${describeLangGraphLeftover(leftover, "which is no longer stored")}.`,
        path: leftover.path,
        ...(leftover.apexId ? { checkpointId: leftover.apexId } : {}),
      });
    }
  }
}

/** What a LangGraph leftover is (validate's problem) and what repair does with it (its reason); `gone` says what became of its APEX checkpoint. */
function describeLangGraphLeftover(leftover: LangGraphLeftover, gone: string): string {
  const thread = `LangGraph thread ${threadLabel(leftover.threadId, leftover.ns)} of session ${leftover.sessionId}`;
  const apex = apexOf(leftover);
  if (leftover.kind === "writes") return `Checkpoint ${leftover.checkpointId} of ${thread}: ${pendingWrites(leftover.writes!.count)} for it, which is not stored (removed while its tasks ran) and never will be; no read reaches them`;
  if (leftover.kind === "step") {
    const writes = leftover.writes ? ` and ${leftover.writes.count} pending write${leftover.writes.count === 1 ? "" : "s"}` : "";
    return `Checkpoint ${leftover.checkpointId} of ${thread}: its index record${writes} name${writes ? "" : "s"} ${apex}, ${gone}; no read reaches ${writes ? "them" : "it"}`;
  }
  return `The head of ${thread} names checkpoint ${leftover.checkpointId} (${apex}), ${gone}; ${nextHead(leftover)}`;
}

function pendingWrites(count: number): string {
  return count === 1 ? "1 pending write" : `${count} pending writes`;
}

/** The APEX checkpoint a LangGraph leftover names: `<session>/checkpoint-007` as its index record has it, else its id. */
function apexOf(leftover: LangGraphLeftover): string {
  return leftover.sequence !== undefined ? `${leftover.sessionId}/${checkpointName(leftover.sequence)}` : leftover.apexId ? `APEX checkpoint ${leftover.apexId}` : "no APEX checkpoint";
}

function nextHead(leftover: LangGraphLeftover): string {
  return leftover.next
    ? `getTuple resumes from checkpoint ${leftover.next.checkpoint_id} (${leftover.sessionId}/${checkpointName(leftover.next.sequence)}), the newest still stored`
    : "no checkpoint of that thread namespace is left";
}

/**
 * The checkpoints live memories are compared with, by where each memory is in the keyspace: for
 * each, the verifying checkpoint with the highest revision among those taken in this store of
 * that memory. The project's own memory (the keyspace's root, "") is that of the checkpoints of
 * this project's sessions (the session record's project_id is the store's) without a memory root
 * of their own, whether the session runs or has ended (a session stopped, even with --force,
 * leaves no /sessions/current); a worktree session's memory (`/sessions/<sid>/memory`,
 * core/session/records.ts: memoryRootOf) is that of its own checkpoints, running or ended: its
 * memory stays its own after it stops. An imported session's revisions are another store's: it
 * does not count. A store without a project record falls back to the current session.
 */
function liveMemoryBases(store: Store, state: ValidationState): Map<string, CheckpointManifest> {
  const read = (path: string): unknown => {
    try {
      return store.get(path);
    } catch {
      return undefined;
    }
  };
  const config = read(PROJECT_CONFIG_PATH);
  const projectId = isRecord(config) && typeof config.project_id === "string" ? config.project_id : undefined;
  const current = read(CURRENT_SESSION_PATH);
  const currentId = isRecord(current) && typeof current.session_id === "string" ? current.session_id : undefined;
  // Each session's memory root, or null when its checkpoints are not compared with live memory.
  const mounts = new Map<string, string | null>();
  const mountOf = (sessionId: string): string | null => {
    let known = mounts.get(sessionId);
    if (known === undefined) {
      const record = read(sessionPath(sessionId)) ?? read(historyPath(sessionId));
      const ours = isRecord(record) && record.session_id === sessionId && (projectId === undefined ? sessionId === currentId : record.project_id === projectId);
      known = ours ? memoryRootOf(record as { [key: string]: JsonValue; session_id: string }) : null;
      mounts.set(sessionId, known);
    }
    return known;
  };
  const revision = store.revision();
  const latest = new Map<string, CheckpointManifest>();
  for (const entry of state.slots) {
    const manifest = entry.manifest;
    if (entry.reasons.length > 0 || !manifest || manifest.revision > revision || !describesLiveMemory(manifest)) continue;
    const mount = mountOf(entry.sessionId);
    if (mount === null) continue;
    const known = latest.get(mount);
    if (!known || manifest.revision > known.revision) latest.set(mount, manifest);
  }
  return latest;
}

/**
 * False for a checkpoint written from trees that already existed rather than from the live memory
 * (branch.ts writeDerivedCheckpoint): a branch's first checkpoint holds the older checkpoint it
 * branched from, and a merge into a session that does not hold the live memory holds that session's
 * checkpoint with the merge applied. Taken as the base, every record written after the older
 * checkpoint read as "appeared with no logged write": `session branch checkpoint-001 x` made a
 * sound store fail validation.
 */
function describesLiveMemory(manifest: CheckpointManifest): boolean {
  if (manifest.trigger === BRANCH_TRIGGER) return false;
  const merge = isRecord(manifest.data) ? manifest.data.merge : undefined;
  return !(manifest.trigger === MERGE_TRIGGER && isRecord(merge) && merge.applied === "checkpoint");
}

/**
 * Text that names the sessions of validation reports as session list does: each whole id they
 * know (session_names) becomes the session's name, else its uuid's short form, both references
 * the commands that take a session resolve (`3f2a9c1e/checkpoint-002`, `session experiment`).
 * An id inside a keyspace path stays whole (`/sessions/<id>/tasks/t1`): the path is the record's
 * address, which `apex memory show` takes. An id that is no uuid (`<id>-r1`) prints whole anyway.
 */
export function sessionLabeller(...reports: Array<ValidationReport | undefined>): (text: string) => string {
  const labels = new Map<string, string>();
  for (const report of reports) for (const [id, name] of Object.entries(report?.session_names ?? {})) labels.set(id, name ?? shortSessionId(id));
  const ids = [...labels].filter(([id, label]) => id !== label).map(([id]) => id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  if (ids.length === 0) return (text) => text;
  // Whole ids only: not one inside a path or a longer id (`<id>-r1`); a sentence's full stop may follow.
  const pattern = new RegExp(`(?<![\\w/.-])(?:${ids.join("|")})(?![\\w-]|\\.[\\w])`, "g");
  return (text) => text.replace(pattern, (id) => labels.get(id) ?? id);
}

/** A session's name from its record (current or ended); null when it has none or its record does not read (validation reports that). */
function sessionNameOf(store: Store, sessionId: string): string | null {
  for (const path of [sessionPath(sessionId), historyPath(sessionId)]) {
    try {
      const record = store.get(path);
      if (isRecord(record)) return typeof record.name === "string" && record.name ? record.name : null;
    } catch {
      // an undecodable record: try the other place, else no name
    }
  }
  return null;
}

function describeScopeKey(key: string): string {
  try {
    const [include, exclude] = JSON.parse(key) as [string[], string[]];
    return `include ${include.join(",")} exclude ${exclude.join(",")}`;
  } catch {
    return key;
  }
}

function unreferencedObjectProblem(objects: ObjectStore, kind: ObjectKind, hash: Hash): StoreProblem | undefined {
  const bytes = objects.getRaw(kind, hash);
  const what = kind === "value" ? "value" : "tree node";
  if (!bytes) {
    return { code: `${kind}-missing`, severity: "error", message: `Unreferenced ${what} ${short(hash)} is indexed, but its pack is gone.`, hash };
  }
  if (sha256(bytes) !== hash) {
    return { code: `${kind}-corrupt`, severity: "error", message: `Unreferenced ${what} ${short(hash)} does not match its hash (corrupted bytes).`, hash };
  }
  try {
    if (kind === "value") decodeValueObject(bytes);
    else decodeTreeNode(bytes);
  } catch (error) {
    return { code: `${kind}-undecodable`, severity: "error", message: withDetail(`Unreferenced ${what} ${short(hash)} cannot be decoded`, (error as Error).message), hash };
  }
  return undefined;
}

function checkSlot(store: Store, catalog: Catalog, checker: TreeChecker, entry: CheckpointRecordState, add: (problem: StoreProblem) => void): void {
  const label = `${entry.sessionId}/${checkpointName(entry.sequence)}`;
  const path = manifestPath(entry.sessionId, entry.sequence);
  const context = { checkpoint: label };
  const fail = (problem: StoreProblem) => {
    entry.reasons.push(problem.message);
    add(problem);
  };
  try {
    entry.summary = catalog.summary(entry.sessionId, entry.sequence);
  } catch (error) {
    entry.summaryUndecodable = true;
    add({ ...context, code: "index-undecodable", severity: "error", message: withDetail(`The catalog summary of ${label} cannot be decoded`, (error as Error).message) });
  }
  try {
    entry.manifestValue = store.get(path);
  } catch (error) {
    entry.manifestUndecodable = true;
    fail({ ...context, code: "manifest-undecodable", severity: "error", message: withDetail(`The manifest of ${label} cannot be decoded`, (error as Error).message), path });
    return;
  }
  if (entry.manifestValue === undefined) {
    add({ ...context, code: "manifest-missing", severity: "error", message: `The catalog lists ${label}, but its manifest ${path} does not exist.`, path, ...(entry.summary ? { checkpointId: entry.summary.id } : {}) });
    return;
  }
  const shape = manifestShapeProblems(entry.manifestValue);
  if (shape.length > 0) {
    fail({ ...context, code: "manifest-malformed", severity: "error", message: `The manifest of ${label} is malformed: ${shape.join("; ")}.`, path });
    return;
  }
  const manifest = entry.manifestValue as unknown as CheckpointManifest;
  const withId = { ...context, checkpointId: manifest.id };
  if (manifest.session_id !== entry.sessionId || manifest.sequence !== entry.sequence) {
    entry.describes = manifest.session_id;
    fail({ ...withId, code: "manifest-misplaced", severity: "error", message: `The manifest at ${path} describes ${manifest.session_id}/${manifest.name}.`, path });
    return;
  }
  if (manifestHash(manifest) !== manifest.hash) {
    fail({ ...withId, code: "manifest-hash-mismatch", severity: "error", message: `The manifest of ${label} does not match its hash: it was modified or corrupted.`, path });
  }
  entry.manifest = manifest;
  const trees: Array<[string, Hash | null, number, string]> = [
    ["memory", manifest.memory.root, manifest.memory.keys, "/"],
    ["tasks", manifest.tasks.root, manifest.tasks.count, tasksRoot(entry.sessionId)],
    ["agents", manifest.agents.root, manifest.agents.count, agentsRoot(entry.sessionId)],
  ];
  for (const [what, root, expected, mount] of trees) {
    const checked = checker.directory(root, mount, withId);
    if (checked.damaged) entry.reasons.push(`its ${what} tree references damaged objects`);
    else if (checked.values !== expected) {
      fail({ ...withId, code: "checkpoint-count-mismatch", severity: "error", message: `${label} says its ${what} holds ${expected} entr${expected === 1 ? "y" : "ies"}; its tree holds ${checked.values}.`, path });
    }
  }
  for (const problem of containmentProblems(checker.readNode, manifest, checker.contained)) fail(escapes(label, withId, problem));
  // Index records (fixable from a verifying manifest).
  if (!entry.summaryUndecodable) {
    if (!entry.summary) {
      entry.indexStale = true;
      add({ ...withId, code: "index-missing", severity: "error", message: `${label} has no catalog summary (it would be missing from lists).`, path });
    } else if (canonicalJson(catalogForm(entry.summary)) !== canonicalJson(catalogForm(summaryOf(manifest)))) {
      entry.indexStale = true;
      add({ ...withId, code: "index-mismatch", severity: "error", message: `The catalog summary of ${label} does not match its manifest.`, path });
    }
  } else entry.indexStale = true;
  let idRecord: unknown;
  try {
    idRecord = catalog.locate(manifest.id);
  } catch {
    idRecord = null;
  }
  if (!isRecord(idRecord) || idRecord.s !== entry.sessionId || idRecord.n !== entry.sequence) {
    entry.indexStale = true;
    add({
      ...withId,
      code: idRecord === undefined ? "index-missing" : "index-mismatch",
      severity: "error",
      message: idRecord === undefined ? `${label} (${manifest.id}) is missing from the id index.` : `The id index entry of ${manifest.id} does not point at ${label}.`,
      path,
    });
  }
}

/**
 * A summary as the catalog can hold it: an unpaired surrogate in a description (an older APEX let one in,
 * plugin-service.ts) is read back from it as U+FFFD, one or three of them as the string was short or long,
 * while the manifest keeps it. Such a summary was reported differing from its manifest (index-mismatch), and
 * repair's rebuild wrote it the same way again: here both are compared with each run of them as one U+FFFD.
 */
function catalogForm(summary: CheckpointSummary): CheckpointSummary {
  if (typeof summary.description !== "string") return summary;
  return { ...summary, description: summary.description.toWellFormed().replace(/\uFFFD+/g, "\uFFFD") };
}

/** `held`: the memory the session validated alone holds (memoryHeldBy), whose records are read with its own. */
function checkRecords(store: Store, options: ValidateOptions, state: ValidationState, add: (problem: StoreProblem) => void, held?: string | null): void {
  const roots = options.sessionId ? [sessionPath(options.sessionId)] : ["/"];
  const sessions = new Map<string, { record?: JsonValue; agents: Set<string>; tasks: Array<{ path: string; value: JsonValue }> }>();
  const session = (id: string) => {
    let found = sessions.get(id);
    if (!found) sessions.set(id, (found = { agents: new Set(), tasks: [] }));
    return found;
  };
  // Manifests were checked with their checkpoints (a bad one is removed with it by repair).
  const manifests = new Set(state.slots.map((slot) => manifestPath(slot.sessionId, slot.sequence)));
  const visit = (path: string) => {
    if (manifests.has(path)) {
      state.report.records += 1;
      return;
    }
    let value: JsonValue | undefined;
    try {
      value = ahead?.has(path) ? decodeAhead(path, ahead.get(path)) : store.get(path);
    } catch (error) {
      add({ code: "record-undecodable", severity: "error", message: withDetail(`The record at ${path} cannot be decoded`, (error as Error).message), path });
      state.undecodableRecords.push(path);
      return;
    }
    try {
      canonicalJson(value);
    } catch (error) {
      // A value deeper than MAX_DEPTH can only have been stored before the limit: JSON all the same.
      if (isApexError(error) && error.code === "APEX_E_TOO_DEEP") return visitJson(path, value);
      // msgpack can decode damaged bytes into something that is not JSON at all.
      add({ code: "record-undecodable", severity: "error", message: `The record at ${path} is not a JSON value: ${(error as Error).message}`, path });
      state.undecodableRecords.push(path);
      return;
    }
    visitJson(path, value);
  };
  const visitJson = (path: string, value: JsonValue | undefined) => {
    state.report.records += 1;
    const segments = path.split("/");
    if (segments[1] !== "sessions" || segments.length < 3 || RESERVED_SESSION_NAMES.has(segments[2]!)) return;
    const info = session(segments[2]!);
    if (segments.length === 3 && value !== undefined && !isRecord(value)) sessionRecordProblem(path, segments[2]!, value);
    if (segments.length === 5 && (segments[3] === "tasks" || segments[3] === "agents")) recordShape(path, segments.slice(3).join("/"), value);
    if (segments.length === 3) info.record = value;
    else if (segments[3] === "langgraph" || segments[3] === "langgraph-heads") state.langGraphSessions.add(segments[2]!);
    else if (segments[3] === "agents" && segments.length >= 5) info.agents.add(segments[4]!);
    else if (segments[3] === "tasks" && segments.length === 5) info.tasks.push({ path, value: value as JsonValue });
  };
  // A session, task or agent record that is not one (null, a string, another id: written by hand with --force):
  // export and archive refuse the session naming it, and validate said the store was valid.
  const sessionRecordProblem = (path: string, id: string, value: JsonValue) => {
    state.mentioned.add(id);
    add({
      code: "record-malformed",
      severity: "error",
      message: `The record of session ${id} at ${path} is not an object (it is ${describeValue(value)}): export and archive refuse the session. Repair cannot rebuild it: write it back as APEX keeps it (\`apex memory set ${path} VALUE --force\`), or \`apex session reconstruct ${id}\` builds a new session from its tasks, agents and checkpoints.`,
      path,
    });
  };
  const recordShape = (path: string, relative: string, value: JsonValue | undefined) => {
    if (value === undefined) return;
    const problem = identityProblem(relative, value, path);
    if (problem === undefined) return;
    const id = path.split("/")[2]!;
    state.mentioned.add(id);
    const kind = relative.startsWith("tasks/") ? "task" : "agent";
    if (!isRecord(value)) {
      state.hollowRecords.push(path);
      add({ code: "record-no-object", severity: "error", message: `Session ${id}: ${problem}: it holds no ${kind}, and export and archive refuse the session. \`apex session repair\` removes it (or \`apex memory delete ${path} --force\`).`, path });
      return;
    }
    add({ code: "record-malformed", severity: "error", message: `Session ${id}: ${problem}: export and archive refuse the session. Repair leaves it as it is: write it back as APEX keeps it (\`apex memory set ${path} VALUE --force\`), or delete it (\`apex memory delete ${path} --force\`).`, path });
  };
  // The records below a root RECORDS_AT_ONCE at a time, read together where the backend can (readMany: PostgreSQL,
  // where a round trip each made 30k of a validate's reads for 30k memory keys). One that does not decode is read
  // again on its own: its error is the backend's, as store.get() says it.
  let ahead: Map<string, Buffer | undefined> | undefined;
  const decodeAhead = (path: string, bytes: Buffer | undefined): JsonValue | undefined => {
    if (bytes === undefined) return undefined;
    try {
      return decodeValue(bytes);
    } catch {
      return store.get(path);
    }
  };
  const visitAll = (keys: Iterable<string>) => {
    let chunk: string[] = [];
    const drain = () => {
      ahead = readMany(store, chunk.filter((key) => !manifests.has(key)));
      for (const key of chunk) visit(key);
      ahead = undefined;
      chunk = [];
    };
    for (const key of keys) {
      chunk.push(key);
      if (chunk.length >= RECORDS_AT_ONCE) drain();
    }
    drain();
  };
  for (const root of roots) {
    if (root !== "/" && store.has(root)) visit(root);
    visitAll(store.keysBelow(root));
  }
  // The project's memory, held by the session validated (a worktree session's own is below its record, read above):
  // an undecodable record there was found by the validation of the whole store only.
  if (options.sessionId && held === "") visitAll(keysInScope(store, normalizeScope(DEFAULT_SCOPE)));
  if (options.sessionId && store.has("/sessions/current")) visit("/sessions/current");

  // /sessions/current must name an existing session.
  let current: JsonValue | undefined;
  try {
    current = store.get("/sessions/current");
  } catch {
    current = undefined; // reported above as undecodable
  }
  if (current !== undefined) {
    const id = isRecord(current) ? current.session_id : undefined;
    if (typeof id !== "string" || id.length === 0 || id.includes("/")) {
      add({ code: "current-session-invalid", severity: "error", message: "/sessions/current does not hold {session_id}.", path: "/sessions/current" });
      state.currentInvalid = true;
    } else if (!store.has(sessionPath(id))) {
      state.mentioned.add(id);
      add({ code: "current-session-missing", severity: "error", message: `/sessions/current points at session ${id}, which does not exist.`, path: "/sessions/current" });
      state.currentInvalid = true;
    }
  }

  // An ended session's record says when it ended: archive refused one without (and said to run validate, which found nothing).
  for (const { path, value } of store.query("/sessions/history/*")) {
    const id = path.slice("/sessions/history/".length);
    if (options.sessionId && id !== options.sessionId) continue;
    if (!isRecord(value)) {
      sessionRecordProblem(path, id, value);
      continue;
    }
    // An ended session's record is here, not at /sessions/<id>: the agents it lists are the session's
    // (a task of theirs whose agent record is gone was taken for one of an unknown agent, and repair
    // unassigned it, a completed task too).
    const ended = sessions.get(id);
    if (ended && ended.record === undefined) ended.record = value;
    if (["ended_at", "updated_at"].some((field) => isTime(value[field]))) continue;
    state.mentioned.add(id);
    add({ code: "ended-session-undated", severity: "error", message: `The record of ended session ${id} has no valid ended_at: archive and retention cannot tell when it ended.`, path });
    // Repair dates it by the last thing the session wrote: its newest checkpoint, else when it was created.
    const times = [Catalog.of(store).latest(id)?.created_at, value.created_at].filter(isTime).sort();
    state.undatedEnded.push({ path, record: value, endedAt: times.at(-1) ?? new Date().toISOString() });
  }

  // Tasks must be owned by agents the session knows.
  for (const [sessionId, info] of sessions) {
    if (options.sessionId && sessionId !== options.sessionId) continue;
    const known = new Set(info.agents);
    for (const name of agentNamesOf(info.record)) known.add(name);
    for (const task of info.tasks) {
      if (!isRecord(task.value)) continue;
      const assignee = task.value.assignee;
      if (typeof assignee === "string" && assignee.length > 0 && !known.has(assignee)) {
        state.mentioned.add(sessionId);
        add({
          code: "task-unknown-agent",
          severity: "error",
          message: `Task ${task.path.slice(task.path.lastIndexOf("/") + 1)} of session ${sessionId} is assigned to agent ${assignee}, which the session does not have.`,
          path: task.path,
        });
        state.unknownAgentTasks.push({ path: task.path, task: task.value });
      }
    }
  }
}

function isTime(value: unknown): value is string {
  return typeof value === "string" && Number.isFinite(Date.parse(value));
}

/** Agent names a session record lists: `agents` as names, objects with `name`, or a map keyed by name. */
function agentNamesOf(record: JsonValue | undefined): string[] {
  if (!isRecord(record)) return [];
  const agents = record.agents;
  if (Array.isArray(agents)) {
    return agents.flatMap((agent) => (typeof agent === "string" ? [agent] : isRecord(agent) && typeof agent.name === "string" ? [agent.name] : []));
  }
  return isRecord(agents) ? Object.keys(agents) : [];
}

/** The problems of one checkpoint: manifest hash, every tree node and value it references, counts. */
export function verifyCheckpoint(store: Store, manifest: CheckpointManifest): StoreProblem[] {
  const problems: StoreProblem[] = [];
  const add = (problem: StoreProblem) => problems.push(problem);
  const label = `${manifest.session_id}/${manifest.name}`;
  const shape = manifestShapeProblems(manifest);
  if (shape.length > 0) {
    return [{ code: "manifest-malformed", severity: "error", message: `The manifest of ${label} is malformed: ${shape.join("; ")}.`, checkpoint: label }];
  }
  const context = { checkpoint: label, checkpointId: manifest.id };
  if (manifestHash(manifest) !== manifest.hash) {
    add({ ...context, code: "manifest-hash-mismatch", severity: "error", message: `The manifest of ${label} does not match its hash: it was modified or corrupted.` });
  }
  const view = ObjectStore.of(store).view({ fresh: true });
  // The values are read grouped by pack before the walk checks them (each is still re-hashed).
  const values: Hash[] = [];
  visitReachable(view, [manifest.memory.root, manifest.tasks.root, manifest.agents.root], { value: (hash) => values.push(hash), damaged: () => {} });
  view.prefetchValues(values);
  const checker = new TreeChecker(view, add);
  const trees: Array<[string, Hash | null, number, string]> = [
    ["memory", manifest.memory.root, manifest.memory.keys, "/"],
    ["tasks", manifest.tasks.root, manifest.tasks.count, tasksRoot(manifest.session_id)],
    ["agents", manifest.agents.root, manifest.agents.count, agentsRoot(manifest.session_id)],
  ];
  for (const [what, root, expected, mount] of trees) {
    const checked = checker.directory(root, mount, context);
    if (!checked.damaged && checked.values !== expected) {
      add({ ...context, code: "checkpoint-count-mismatch", severity: "error", message: `${label} says its ${what} holds ${expected} entr${expected === 1 ? "y" : "ies"}; its tree holds ${checked.values}.` });
    }
  }
  for (const problem of containmentProblems(checker.readNode, manifest)) add(escapes(label, context, problem));
  return problems;
}

/** A checkpoint whose trees reach outside its session (contained.ts): it does not verify, and repair removes it. */
function escapes(label: string, context: Partial<StoreProblem>, problem: ContainmentProblem): StoreProblem {
  return { ...context, code: "checkpoint-escapes-session", severity: "error", message: `${label} cannot be restored: ${problem.problem}.`, path: problem.path };
}

// ---------------------------------------------------------------------------------------------
// Repair

export type RepairActionKind =
  | "heal-value"
  | "heal-tree"
  | "remove-checkpoint"
  | "rebuild-index"
  | "remove-index"
  | "fix-counter"
  | "remove-object"
  | "remove-base"
  | "remove-record"
  | "restore-record"
  | "clear-current-session"
  | "unassign-task"
  | "date-ended-session"
  | "remove-langgraph-step"
  | "remove-langgraph-writes"
  | "move-langgraph-head"
  | "copy-store";

export interface RepairAction {
  action: RepairActionKind;
  /** What it applies to: a path, "<session>/checkpoint-007", or an object hash. */
  target: string;
  reason: string;
}

export interface RepairResult {
  dryRun: boolean;
  actions: RepairAction[];
  /** Validation before repairing. */
  before: ValidationReport;
  /** Validation after repairing (absent for a dry run). */
  after?: ValidationReport;
  /**
   * A damaged store file's dry run only: the validation of the copy of what reads that the repair
   * would make and repair (plugin-cli.ts), where the checkpoints are counted that the damage kept
   * from being read in the file itself.
   */
  copy?: ValidationReport;
}

export interface RepairOptions {
  dryRun?: boolean;
  actor?: string;
}

/**
 * Fixes what validation finds. In order: rewrites damaged or missing objects that the
 * current state still has (hashing the live memory, tasks and agent states); removes
 * checkpoints that still do not verify (a checkpoint that verifies is never removed);
 * rebuilds or removes index records; removes unfixable objects, stale memory bases and
 * undecodable records; clears a dangling /sessions/current; unassigns tasks owned by
 * unknown agents. Everything happens in one write transaction.
 */
export async function repairStore(store: Store, options: RepairOptions = {}): Promise<RepairResult> {
  const dryRun = options.dryRun ?? false;
  if (!dryRun) assertWritable(store);
  let result!: RepairResult;
  const run = () => {
    const objects = ObjectStore.of(store);
    const before = runValidation(store, objects.view({ fresh: true }), {});
    const actions: RepairAction[] = [];

    // 1. Heal objects from the current state.
    const damagedHashes = new Map<Hash, ObjectKind>();
    for (const problem of before.report.problems) {
      if (!problem.hash) continue;
      if (problem.code.startsWith("value-")) damagedHashes.set(problem.hash, "value");
      else if (problem.code === "tree-missing" || problem.code === "tree-corrupt" || problem.code === "tree-undecodable") damagedHashes.set(problem.hash, "tree");
    }
    const healed = objects.view({ overlay: true, fresh: true });
    if (damagedHashes.size > 0) healFromCurrentState(store, before, damagedHashes, healed, actions);

    // 2. Re-verify checkpoints with the healed objects; keep those that verify.
    const after = runValidation(store, healed, {});
    const removedSlots = new Set<CheckpointRecordState>();
    for (const entry of after.slots) {
      const label = `${entry.sessionId}/${checkpointName(entry.sequence)}`;
      if (entry.manifestValue === undefined && !entry.manifestUndecodable) {
        actions.push({ action: "remove-index", target: label, reason: "the catalog lists it but its manifest does not exist" });
        removedSlots.add(entry);
      } else if (entry.reasons.length > 0 || !entry.manifest) {
        actions.push({ action: "remove-checkpoint", target: label, reason: entry.reasons.join("; ") || "its manifest cannot be read" });
        removedSlots.add(entry);
      } else if (entry.indexStale) {
        actions.push({ action: "rebuild-index", target: label, reason: "catalog records disagree with the manifest" });
      }
    }
    for (const id of after.danglingIds) actions.push({ action: "remove-index", target: id, reason: "id record of a checkpoint that does not exist" });
    // Those another session's edge names (a branch point, one merged in): their session's records keep
    // their ids, as `checkpoint delete --force` keeps them (merge-base.ts DELETED_POINTS_FIELD), read now, before any goes.
    const keptPoints = pointsEdgesName(store, [...removedSlots].map((entry) => ({ sessionId: entry.sessionId, sequence: entry.sequence, ids: [entry.summary?.id, entry.manifest?.id] })));
    for (const point of keptPoints) {
      const action = actions.find((candidate) => candidate.target === `${point.sessionId}/${checkpointName(point.sequence)}` && (candidate.action === "remove-checkpoint" || candidate.action === "remove-index"));
      if (action) action.reason += `; its session's record keeps its id ${point.id}, which another session's branch or merge names`;
    }
    // LangGraph's records of the checkpoints removed (and of those removed before): an index
    // record and its writes go, a head moves to the newest step kept (langgraph-index.ts), as
    // a delete does them (forgetLangGraphStep). Found from the index, not the removed manifests,
    // which may not say which thread they were.
    const removedSequences = new Set([...removedSlots].map((entry) => `${entry.sessionId}\u0000${entry.sequence}`));
    const langGraph = [...after.langGraphSessions].sort().flatMap((sessionId) => langGraphLeftovers(store, sessionId, (sequence) => removedSequences.has(`${sessionId}\u0000${sequence}`)));
    for (const leftover of langGraph) {
      const removing = leftover.sequence !== undefined && removedSequences.has(`${leftover.sessionId}\u0000${leftover.sequence}`);
      const gone = removing ? "which this repair removes" : "which is no longer stored";
      const apex = apexOf(leftover);
      if (leftover.kind === "writes") {
        actions.push({ action: "remove-langgraph-writes", target: leftover.path, reason: `${pendingWrites(leftover.writes!.count)} for LangGraph checkpoint ${leftover.checkpointId}, which is not stored and never will be` });
      } else if (leftover.kind === "step") {
        const writes = leftover.writes ? `; its ${leftover.writes.count === 1 ? "pending write goes" : `${leftover.writes.count} pending writes go`} with it` : "";
        actions.push({ action: "remove-langgraph-step", target: leftover.path, reason: `LangGraph checkpoint ${leftover.checkpointId}: it names ${apex}, ${gone}${writes}` });
      } else {
        const next = leftover.next ? `it names checkpoint ${leftover.next.checkpoint_id} (${leftover.sessionId}/${checkpointName(leftover.next.sequence)}) now, the newest still stored` : "no checkpoint of that thread namespace is left: it goes";
        actions.push({ action: "move-langgraph-head", target: leftover.path, reason: `it named checkpoint ${leftover.checkpointId} (${apex}), ${gone}; ${next}` });
      }
    }
    for (const counter of after.counters) {
      actions.push({ action: "fix-counter", target: sessionPath(counter.sessionId), reason: `sequence counter ${counter.last} raised to ${counter.needed}` });
    }
    // Objects still damaged are referenced by nothing that is kept once the damaged checkpoints go.
    const stillDamaged = new Map<Hash, ObjectKind>();
    for (const problem of after.report.problems) {
      if (!problem.hash) continue;
      if (problem.code.startsWith("value-")) stillDamaged.set(problem.hash, "value");
      else if (problem.code === "tree-missing" || problem.code === "tree-corrupt" || problem.code === "tree-undecodable") stillDamaged.set(problem.hash, "tree");
    }
    for (const object of after.corruptObjects) stillDamaged.set(object.hash, object.kind);
    for (const [hash, kind] of stillDamaged) {
      // Drop the index record of what cannot be repaired (corrupt bytes, or a pack that is gone).
      if (objects.has(kind, hash) && !(kind === "tree" ? healed.overlayTrees!.has(hash) : healed.overlayValues!.has(hash))) {
        actions.push({ action: "remove-object", target: hash, reason: `${kind === "tree" ? "tree node" : "value"} that cannot be repaired` });
      }
    }
    for (const key of after.badBases) actions.push({ action: "remove-base", target: describeScopeKey(key), reason: "the next checkpoint will rebuild its memory tree from the store" });
    for (const path of after.undecodableRecords) actions.push({ action: "remove-record", target: path, reason: "the record cannot be decoded" });
    for (const path of after.hollowRecords) actions.push({ action: "remove-record", target: path, reason: `it is no object: it holds no ${path.split("/")[3] === "tasks" ? "task" : "agent"}` });
    // Only a record that no longer decodes is put back from the checkpoint. One that decodes
    // but differs, is gone, or appeared may instead mean a damaged revision log, and putting
    // the checkpoint's value back could undo an acknowledged write: it stays as it is, and
    // validate goes on naming it until the path is written again.
    const restorable = after.liveFindings.filter((finding) => finding.restorable && finding.hash);
    for (const finding of restorable) actions.push({ action: "restore-record", target: finding.path, reason: `it cannot be decoded; put back as ${finding.checkpoint} has it (no write changed it since)` });
    if (after.currentInvalid) actions.push({ action: "clear-current-session", target: "/sessions/current", reason: "it does not point at an existing session" });
    for (const task of after.unknownAgentTasks) {
      actions.push({ action: "unassign-task", target: task.path, reason: `assigned to unknown agent ${String(task.task.assignee)}` });
    }
    for (const ended of after.undatedEnded) actions.push({ action: "date-ended-session", target: ended.path, reason: `no valid ended_at: set to ${ended.endedAt}, its last checkpoint or its start` });

    if (dryRun) {
      result = { dryRun, actions, before: before.report };
      return;
    }

    // Apply.
    const healedObjects: Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer }> = [];
    for (const [hash, bytes] of healed.overlayTrees!) if (!sameBytes(objects, "tree", hash, bytes)) healedObjects.push({ kind: "tree", hash, bytes });
    for (const [hash, bytes] of healed.overlayValues!) if (!sameBytes(objects, "value", hash, bytes)) healedObjects.push({ kind: "value", hash, bytes });
    objects.putMany(healedObjects);
    const catalog = Catalog.of(store);
    const actor = options.actor ?? ACTORS.repair;
    for (const entry of after.slots) {
      if (removedSlots.has(entry)) {
        removeCheckpointRecords(store, { sessionId: entry.sessionId, sequence: entry.sequence, id: entry.manifest?.id ?? entry.summary?.id }, actor);
      } else if (entry.indexStale && entry.manifest) {
        catalog.putCheckpoint(entry.manifest);
      }
    }
    for (const id of after.danglingIds) catalog.removeId(id);
    forgetLangGraphLeftovers(store, langGraph, actor);
    for (const counter of after.counters) catalog.setLastSequence(counter.sessionId, Math.max(counter.needed, counter.last));
    for (const action of actions) if (action.action === "remove-object") objects.removeRaw(stillDamaged.get(action.target)!, action.target);
    for (const key of after.badBases) catalog.removeBase(key);
    const recordWrites = after.undecodableRecords.length + after.hollowRecords.length + restorable.length + (after.currentInvalid ? 1 : 0) + after.unknownAgentTasks.length + after.undatedEnded.length;
    if (recordWrites > 0) {
      store.batchSync((batch) => {
        for (const path of after.undecodableRecords) batch.deleteDamaged(path);
        for (const path of after.hollowRecords) batch.delete(path);
        // The task counts, in step with the tasks left (a hollow task was counted by its status when written).
        for (const sessionId of new Set(after.hollowRecords.filter((path) => path.split("/")[3] === "tasks").map((path) => path.split("/")[2]!))) recountTasks(batch, store, sessionId);
        for (const finding of restorable) batch.setEncoded(finding.path, healed.encodedValue(finding.hash!));
        if (after.currentInvalid) batch.delete("/sessions/current");
        for (const task of after.unknownAgentTasks) {
          const fixed: Record<string, unknown> = { ...task.task, assignee: null };
          if (fixed.status === "active") fixed.status = "pending";
          batch.set(task.path, fixed as JsonValue);
        }
        for (const ended of after.undatedEnded) batch.set(ended.path, { ...ended.record, ended_at: ended.endedAt } as JsonValue);
      }, actor);
    }
    // After the records' own fixes, which write a session record as read before (an ended one's date) or delete it (one that does not decode).
    for (const point of keptPoints) recordDeletedPoint(store, point, actor);
    result = { dryRun, actions, before: before.report, after: runValidation(store, objects.view({ fresh: true }), {}).report };
  };
  if (dryRun) run();
  else await store.transaction(run);
  return result;
}

function sameBytes(objects: ObjectStore, kind: ObjectKind, hash: Hash, bytes: Buffer): boolean {
  const stored = objects.getRaw(kind, hash);
  return stored !== undefined && stored.equals(bytes);
}

/**
 * Looks for damaged objects in the current state: hashes the live memory (for each scope
 * checkpoints use) and each session's tasks and agents into `healed` (an overlay), then
 * keeps in the overlay only what replaces a damaged or missing object, with everything
 * below it that the store lacks too.
 */
function healFromCurrentState(store: Store, state: ValidationState, damaged: Map<Hash, ObjectKind>, healed: ObjectView, actions: RepairAction[]): void {
  const source = ObjectStore.of(store).view({ overlay: true, fresh: true });
  const scopes = new Map<string, MemoryScope>([[JSON.stringify(DEFAULT_SCOPE), normalizeScope(DEFAULT_SCOPE)]]);
  const sessions = new Set<string>();
  for (const entry of state.slots) {
    sessions.add(entry.sessionId);
    if (!entry.manifest) continue;
    try {
      const scope = normalizeScope(entry.manifest.memory.scope);
      scopes.set(JSON.stringify(scope), scope);
    } catch {
      // a malformed scope cannot be rebuilt
    }
  }
  for (const scope of scopes.values()) {
    try {
      buildSnapshot(store, source, { memory: { scope }, skipUnreadable: true });
    } catch {
      // an unreadable memory record: heal from what the other sources give
    }
  }
  for (const sessionId of sessions) {
    try {
      buildSnapshot(store, source, { session: { id: sessionId }, skipUnreadable: true });
    } catch {
      // unreadable session records: nothing to heal from
    }
  }
  const objects = ObjectStore.of(store);
  const copyTree = (hash: Hash) => {
    if (healed.overlayTrees!.has(hash)) return;
    const bytes = source.overlayTrees!.get(hash)!;
    const stored = objects.getRaw("tree", hash);
    if (!stored || !stored.equals(bytes)) healed.overlayTrees!.set(hash, bytes);
    const node = decodeTreeNode(bytes);
    if (node.kind === "split") for (const bucket of node.buckets) copyTree(bucket.hash);
    else
      for (const entry of node.entries) {
        if (entry.value) copyValue(entry.value);
        if (entry.tree) copyTree(entry.tree);
      }
  };
  const copyValue = (hash: Hash) => {
    const bytes = source.overlayValues!.get(hash);
    if (!bytes) return;
    const stored = objects.getRaw("value", hash);
    if (!stored || !stored.equals(bytes)) healed.overlayValues!.set(hash, bytes);
  };
  for (const [hash, kind] of damaged) {
    if (kind === "tree" && source.overlayTrees!.has(hash)) {
      copyTree(hash);
      actions.push({ action: "heal-tree", target: hash, reason: "rebuilt from the current state" });
    } else if (kind === "value" && source.overlayValues!.has(hash)) {
      copyValue(hash);
      actions.push({ action: "heal-value", target: hash, reason: "rewritten from the current state" });
    }
  }
}
