import { ApexError } from "../../core/errors.js";
import {
  ChangeSet,
  EncodedValue,
  ObjectStore,
  canonicalJson,
  compareCodePoints,
  diffTrees,
  lookupEntry,
  updateTree,
  type TreeChange,
  type Hash,
  type ObjectView,
} from "./engine/objects.js";
import type { JsonValue } from "../../core/store/store.js";
import { isProjectRecord, pathSegments, segmentsPath } from "./scope.js";
import { isRecord } from "./manifest.js";
import { LANGGRAPH_MEMORY_ROOT } from "./langgraph-index.js";
import { clippedText } from "../../cli/terminal-text.js";

/**
 * The three-way merge of checkpoint trees. Both sides are diffed against the base with
 * `diffTrees`, which skips every subtree whose hash is equal on both sides, so the cost
 * follows what changed since the base, not the size of memory. The merged tree is the
 * "ours" tree with the changes taken from "theirs" applied by `updateTree`, which rebuilds
 * only the nodes on those paths.
 *
 * Rules, per path (a value at a path; a deletion is a change like any other):
 * - changed on one side only: that side's value (or deletion) is taken;
 * - changed on both sides to the same value (or both deleted): not a conflict;
 * - changed on both sides to different values: a conflict {path, base, ours, theirs}. The
 *   strategy decides: `fail` (default) refuses the whole merge, `ours` keeps ours, `theirs`
 *   takes theirs.
 * Tasks (keyed by task id) are a union: a task either side added is kept; the merge deletes
 * none (one theirs deleted stays as ours has it, since ours' agents may hold it; one ours deleted
 * stays deleted unless theirs changed it, when theirs' is taken: work is not dropped); a task changed on both sides takes the completed side
 * when only one is completed (a completed task stays completed); both completed with different
 * results, or both changed otherwise, is a conflict the strategy decides. Agent states are
 * those of "ours": the destination's agents are the ones that run.
 */

export type MergeStrategy = "fail" | "ours" | "theirs";
export const MERGE_STRATEGIES: readonly MergeStrategy[] = ["fail", "ours", "theirs"];

export function checkStrategy(value: string | undefined): MergeStrategy {
  const strategy = (value ?? "fail") as MergeStrategy;
  if (!MERGE_STRATEGIES.includes(strategy)) {
    throw new ApexError("APEX_E_USAGE", `Unknown merge strategy ${JSON.stringify(value)}.`, { hint: "Use --strategy fail, ours or theirs." });
  }
  return strategy;
}

/** Roots of the three trees a merge reads, from a checkpoint (or the live state hashed). */
export interface MergeSide {
  memory: Hash | null;
  tasks: Hash | null;
  /**
   * A virtual ancestor's paths its candidates changed differently (holding their own base's
   * value): changed on both sides for a merge against it, so that a side that later set the
   * base's value again (or deleted a path the base did not have) is not taken as unchanged.
   */
  conflicted?: { memory: ReadonlySet<string>; tasks: ReadonlySet<string> };
}

export type ChangeKind = "added" | "modified" | "deleted";

/** A change the merge makes to "ours": taken from theirs. */
export interface MergeChange {
  path: string;
  kind: ChangeKind;
  /** Value hash after the change (undefined: deleted). */
  hash?: Hash;
  /** True when it settles a conflict by the strategy. */
  resolved?: boolean;
}

export interface MergeConflict {
  path: string;
  /** Values (null: a null value, or no value there; `absent` tells which). */
  base: JsonValue | null;
  ours: JsonValue | null;
  theirs: JsonValue | null;
  /** The sides where the path has no value (never set, or deleted): a null value is not absent. */
  absent: Array<"base" | "ours" | "theirs">;
  /** Who wins under the chosen strategy; "none" under fail. */
  resolution: "ours" | "theirs" | "none";
  reason?: string;
}

export interface TreeMergePlan {
  /** Changes applied to ours, by path. */
  changes: MergeChange[];
  conflicts: MergeConflict[];
  /** Paths both sides changed the same way. */
  same: number;
  /** Paths changed on ours only (kept). */
  oursOnly: number;
  /** Under the "base" strategy (a virtual ancestor): the paths put back to the base's value. */
  settledToBase?: string[];
}

export interface MergePlan {
  memory: TreeMergePlan;
  tasks: TreeMergePlan;
  strategy: MergeStrategy;
}

interface SideChange {
  before?: Hash;
  after?: Hash;
}

function changesOf(view: ObjectView, base: Hash | null, side: Hash | null, kind: "memory" | "tasks"): Map<string, SideChange & { segments: string[] }> {
  const changes = new Map<string, SideChange & { segments: string[] }>();
  diffTrees(view, base, side, (change) => {
    const path = segmentsPath(change.segments);
    if (kind === "memory" && isProjectRecord(path)) return; // never merged (planTree)
    changes.set(path, { segments: change.segments, ...(change.before ? { before: change.before } : {}), ...(change.after ? { after: change.after } : {}) });
  });
  return changes;
}

function kindOf(change: SideChange): ChangeKind {
  return !change.before ? "added" : !change.after ? "deleted" : "modified";
}

function valueOrNull(view: ObjectView, hash: Hash | undefined): JsonValue | null {
  return hash ? view.readValue(hash) : null;
}

function absentSides(base: Hash | undefined, ours: Hash | undefined, theirs: Hash | undefined): MergeConflict["absent"] {
  return [...(base ? [] : ["base" as const]), ...(ours ? [] : ["ours" as const]), ...(theirs ? [] : ["theirs" as const])];
}

/**
 * Plans the merge of `theirs` into `ours` against `base`; reads only the changed subtrees.
 * `base` (for a virtual ancestor, not a user's strategy): a conflict takes the base's value.
 */
export function planMerge(view: ObjectView, base: MergeSide | null, ours: MergeSide, theirs: MergeSide, strategy: MergeStrategy): MergePlan;
export function planMerge(view: ObjectView, base: MergeSide | null, ours: MergeSide, theirs: MergeSide, strategy: MergeStrategy | "base"): Omit<MergePlan, "strategy">;
export function planMerge(view: ObjectView, base: MergeSide | null, ours: MergeSide, theirs: MergeSide, strategy: MergeStrategy | "base"): Omit<MergePlan, "strategy"> & { strategy?: MergeStrategy } {
  return {
    memory: planTree(view, base?.memory ?? null, ours.memory, theirs.memory, strategy, "memory", base?.conflicted?.memory),
    tasks: planTree(view, base?.tasks ?? null, ours.tasks, theirs.tasks, strategy, "tasks", base?.conflicted?.tasks),
    ...(strategy === "base" ? {} : { strategy }),
  };
}

/**
 * The common ancestor of two checkpoints that are each other's in a criss-cross history (each
 * side merged the other), made as git's recursive strategy makes one: `theirs` merged into
 * `ours` against their own `base`, a path they changed differently holding the base's value
 * (so that a merge against it sees both later sides as changing it). Its trees are new: write
 * them to an overlay view.
 */
export function virtualAncestor(view: ObjectView, base: MergeSide | null, ours: MergeSide, theirs: MergeSide): MergeSide {
  const plan = planMerge(view, base, ours, theirs, "base");
  return {
    memory: applyToTree(view, ours.memory, plan.memory.changes).root,
    tasks: applyToTree(view, ours.tasks, plan.tasks.changes).root,
    // Paths ours (itself virtual, with three candidates or more) had conflicted stay so.
    conflicted: { memory: new Set([...(ours.conflicted?.memory ?? []), ...plan.memory.settledToBase!]), tasks: new Set([...(ours.conflicted?.tasks ?? []), ...plan.tasks.settledToBase!]) },
  };
}

function planTree(view: ObjectView, base: Hash | null, ours: Hash | null, theirs: Hash | null, strategy: MergeStrategy | "base", kind: "memory" | "tasks", conflicted: ReadonlySet<string> = new Set()): TreeMergePlan {
  const plan: TreeMergePlan = { changes: [], conflicts: [], same: 0, oursOnly: 0, ...(strategy === "base" ? { settledToBase: [] } : {}) };
  if (theirs === ours || (theirs === base && conflicted.size === 0)) {
    // Both sides the same tree: each path either changed is one they changed the same way.
    if (ours !== base) plan[theirs === ours ? "same" : "oursOnly"] = changesOf(view, base, ours, kind).size;
    return plan;
  }
  const oursChanges = ours === base ? new Map<string, SideChange & { segments: string[] }>() : changesOf(view, base, ours, kind);
  let matched = 0;
  /** Their changes below each LangGraph thread namespace (`/langgraph/<thread>/<ns>`), merged as one unit below. */
  const theirUnits = new Map<string, Array<{ path: string; change: SideChange }>>();
  // A virtual ancestor's conflicted paths are changed on both sides: one side holding its value
  // again is a change too (a value equal to neither side's before the criss-cross).
  const seen = new Set<string>();
  const decide = (change: TreeChange) => {
    const path = segmentsPath(change.segments);
    // The project's record a checkpoint made before it left the scope holds: the store's own, never merged (scope.ts).
    if (kind === "memory" && isProjectRecord(path)) return;
    seen.add(path);
    const unit = kind === "memory" ? langGraphUnit(change.segments) : undefined;
    if (unit !== undefined) {
      const their: SideChange = { ...(change.before ? { before: change.before } : {}), ...(change.after ? { after: change.after } : {}) };
      const list = theirUnits.get(unit);
      if (list) list.push({ path, change: their });
      else theirUnits.set(unit, [{ path, change: their }]);
      return;
    }
    const mine = oursChanges.get(path) ?? (conflicted.has(path) ? { segments: change.segments, ...(change.before ? { before: change.before, after: change.before } : {}) } : undefined);
    const their: SideChange = { ...(change.before ? { before: change.before } : {}), ...(change.after ? { after: change.after } : {}) };
    if (!mine) {
      // Tasks are a union: a task one side deleted is not deleted by the merge.
      if (kind === "tasks" && !their.after) return;
      plan.changes.push({ path, kind: kindOf(their), ...(their.after ? { hash: their.after } : {}) });
      return;
    }
    if (oursChanges.has(path)) matched += 1;
    if (mine.after === their.after) {
      plan.same += 1;
      return;
    }
    const toBase = () => {
      plan.settledToBase?.push(path);
      if (mine.after !== change.before) plan.changes.push({ path, kind: kindOf({ ...(mine.after ? { before: mine.after } : {}), ...(change.before ? { after: change.before } : {}) }), ...(change.before ? { hash: change.before } : {}) });
    };
    if (kind === "tasks") {
      const decided = decideTask(view, path, change.before, mine.after, their.after, strategy === "base" ? "ours" : strategy);
      if (decided.conflict && strategy === "base") return void toBase();
      if (decided.conflict) plan.conflicts.push(decided.conflict);
      if (decided.take === "theirs") plan.changes.push({ path, kind: kindOf({ ...(mine.after ? { before: mine.after } : {}), ...(their.after ? { after: their.after } : {}) }), ...(their.after ? { hash: their.after } : {}), ...(decided.conflict ? { resolved: true } : {}) });
      return;
    }
    if (strategy === "base") return void toBase();
    const resolution = strategy === "fail" ? "none" : strategy;
    plan.conflicts.push({
      path,
      base: valueOrNull(view, change.before),
      ours: valueOrNull(view, mine.after),
      theirs: valueOrNull(view, their.after),
      absent: absentSides(change.before, mine.after, their.after),
      resolution,
    });
    if (strategy === "theirs") {
      plan.changes.push({ path, kind: kindOf({ ...(mine.after ? { before: mine.after } : {}), ...(their.after ? { after: their.after } : {}) }), ...(their.after ? { hash: their.after } : {}), resolved: true });
    }
  };
  diffTrees(view, base, theirs, decide);
  // Conflicted paths theirs holds as the virtual ancestor does: decided as a change of theirs to that value.
  for (const path of conflicted) {
    const mine = oursChanges.get(path);
    if (seen.has(path) || !mine) continue;
    const segments = pathSegments(path);
    // A LangGraph namespace is decided whole, below.
    if (kind === "memory" && langGraphUnit(segments) !== undefined) continue;
    const at = lookupEntry(view, base, segments)?.value;
    decide({ segments, ...(at ? { before: at, after: at } : {}) });
  }
  matched += mergeLangGraphUnits(view, plan, theirUnits, oursChanges, strategy, base, conflicted);
  plan.oursOnly = oursChanges.size - matched;
  // By path: a large tree's diff comes bucket by bucket (by hash), which listed /k2, /k3, /k1.
  plan.changes.sort((a, b) => compareCodePoints(a.path, b.path));
  plan.conflicts.sort((a, b) => compareCodePoints(a.path, b.path));
  return plan;
}

/**
 * The LangGraph thread namespace a memory path is in: `/langgraph/<thread>/<ns>` (langgraph.ts),
 * whose channels are one LangGraph checkpoint's, so a merge takes them whole from one side,
 * never some channels from each (a state no step of the graph ever had).
 */
export function langGraphUnit(segments: readonly string[]): string | undefined {
  return segments.length >= 3 && segments[0] === LANGGRAPH_MEMORY_ROOT.slice(1) ? `/${segments.slice(0, 3).join("/")}` : undefined;
}

/**
 * Their changes of each LangGraph thread namespace, as a unit: taken whole when ours did not
 * change it, the same when both made the same, else one conflict at the namespace (its record
 * `{checkpoint, values}` on each side) that the strategy settles: theirs takes their changes and
 * puts ours' other changes of it back to the base, so that it is theirs exactly. Returns how many
 * of ours' changes it matched.
 */
function mergeLangGraphUnits(view: ObjectView, plan: TreeMergePlan, theirUnits: Map<string, Array<{ path: string; change: SideChange }>>, oursChanges: Map<string, SideChange & { segments: string[] }>, strategy: MergeStrategy | "base", base: Hash | null, conflicted: ReadonlySet<string>): number {
  let matched = 0;
  // Ours' changes by unit, gathered once (not a scan of them all for each unit).
  const oursByUnit = new Map<string, Array<[string, SideChange]>>();
  // A virtual ancestor's namespace its candidates stepped in differently: changed on both sides, also when theirs holds it as it does.
  const virtualUnits = [...conflicted].filter((path) => langGraphUnit(pathSegments(path)) === path);
  if (theirUnits.size > 0 || virtualUnits.length > 0) {
    for (const [path, change] of oursChanges) {
      const unit = langGraphUnit(change.segments);
      if (unit === undefined || !(theirUnits.has(unit) || conflicted.has(unit))) continue;
      const list = oursByUnit.get(unit);
      if (list) list.push([path, change]);
      else oursByUnit.set(unit, [[path, change]]);
    }
  }
  const units = new Map(theirUnits);
  for (const unit of virtualUnits) if (!units.has(unit) && oursByUnit.has(unit)) units.set(unit, []);
  for (const [unit, theirChanges] of units) {
    const mine = oursByUnit.get(unit) ?? [];
    matched += mine.length;
    const take = (changes: Array<{ path: string; change: SideChange }>, resolved?: true) => {
      for (const { path, change } of changes) plan.changes.push({ path, kind: kindOf(change), ...(change.after ? { hash: change.after } : {}), ...(resolved ? { resolved } : {}) });
    };
    if (mine.length === 0 && !conflicted.has(unit)) {
      take(theirChanges);
      continue;
    }
    const theirAfter = new Map(theirChanges.map(({ path, change }) => [path, change.after]));
    const mineAfter = new Map(mine.map(([path, change]) => [path, change.after]));
    if (theirAfter.size === mineAfter.size && [...theirAfter].every(([path, after]) => mineAfter.has(path) && mineAfter.get(path) === after)) {
      plan.same += mine.length;
      continue;
    }
    // Back to the base: ours' changes (for a virtual ancestor: both sides').
    const toBase = (changes: Array<[string, SideChange]>) =>
      changes.map(([path, change]) => ({ path, change: { ...(change.after ? { before: change.after } : {}), ...(change.before ? { after: change.before } : {}) } }));
    if (strategy === "base") {
      take(toBase(mine));
      plan.settledToBase?.push(unit);
      continue;
    }
    const record = (side: "before" | "after", of: SideChange | undefined) => valueOrNull(view, of?.[side]);
    // The record neither side changed (only channels below it): the base's on all three sides, not "(none)".
    const unchanged = (): SideChange => {
      const at = lookupEntry(view, base, pathSegments(unit))?.value;
      return at ? { before: at, after: at } : {};
    };
    const theirRecord = theirChanges.find(({ path }) => path === unit)?.change ?? (oursChanges.has(unit) ? undefined : unchanged());
    const mineRecord = oursChanges.get(unit);
    plan.conflicts.push({
      path: unit,
      base: record("before", theirRecord ?? mineRecord),
      ours: mineRecord ? record("after", mineRecord) : record("before", theirRecord),
      theirs: theirRecord ? record("after", theirRecord) : record("before", mineRecord),
      absent: absentSides((theirRecord ?? mineRecord)?.before, mineRecord ? mineRecord.after : theirRecord?.before, theirRecord ? theirRecord.after : mineRecord?.before),
      resolution: strategy === "fail" ? "none" : strategy,
      reason: "a LangGraph thread both sides took steps in: its channels are taken whole from one side",
    });
    if (strategy === "theirs") {
      // Each of their changes from what ours holds (a path ours changed too: its value, not the base's); none where ours holds theirs already.
      const fromOurs = theirChanges.flatMap(({ path, change }) => {
        const before = mineAfter.has(path) ? mineAfter.get(path) : change.before;
        return before === change.after ? [] : [{ path, change: { ...(before ? { before } : {}), ...(change.after ? { after: change.after } : {}) } }];
      });
      take(fromOurs, true);
      take(toBase(mine.filter(([path]) => !theirAfter.has(path))), true);
    }
  }
  return matched;
}

function decideTask(
  view: ObjectView,
  id: string,
  baseHash: Hash | undefined,
  oursHash: Hash | undefined,
  theirsHash: Hash | undefined,
  strategy: MergeStrategy,
): { take: "ours" | "theirs"; conflict?: MergeConflict } {
  // One side deleted it, the other changed it: the union keeps the changed task.
  if (!oursHash) return { take: "theirs" };
  if (!theirsHash) return { take: "ours" };
  const ours = view.readValue(oursHash);
  const theirs = view.readValue(theirsHash);
  const completed = (task: JsonValue) => isRecord(task) && task.status === "completed";
  if (completed(ours) && !completed(theirs)) return { take: "ours" };
  if (completed(theirs) && !completed(ours)) return { take: "theirs" };
  if (completed(ours) && completed(theirs) && sameJson((ours as Record<string, JsonValue>).result, (theirs as Record<string, JsonValue>).result)) return { take: "ours" };
  const reason = completed(ours) ? "completed on both sides with different results" : "changed on both sides";
  const conflict: MergeConflict = {
    path: id,
    base: valueOrNull(view, baseHash),
    ours,
    theirs,
    absent: absentSides(baseHash, oursHash, theirsHash),
    resolution: strategy === "fail" ? "none" : strategy,
    reason,
  };
  return { take: strategy === "theirs" ? "theirs" : "ours", conflict };
}

function sameJson(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  return canonicalJson(a ?? null) === canonicalJson(b ?? null);
}

/** True when the plan changes nothing in ours. */
export function isEmptyPlan(plan: MergePlan): boolean {
  return plan.memory.changes.length === 0 && plan.tasks.changes.length === 0;
}

/** True when the plan refuses: conflicts under the `fail` strategy. */
export function refusedBy(plan: MergePlan): MergeConflict[] {
  return plan.strategy === "fail" ? [...plan.memory.conflicts, ...plan.tasks.conflicts.map((conflict) => ({ ...conflict, path: `tasks${conflict.path}` }))] : [];
}

/**
 * The merged tree: `root` with the plan's changes applied. Writes the new nodes (call inside
 * a write transaction, unless the view is an overlay); values are the very objects theirs
 * holds, so their hashes are kept. `written`: values by their hash as a merge wrote them to
 * the keyspace (encodedValues), hashed as they are there (the tree of the live state).
 */
export function applyToTree(view: ObjectView, root: Hash | null, changes: readonly MergeChange[], written?: ReadonlyMap<Hash, Buffer>): { root: Hash | null; delta: number } {
  if (changes.length === 0) return { root, delta: 0 };
  const set = new ChangeSet();
  const byPath = new Map<string, MergeChange>();
  for (const change of changes) {
    const segments = change.path.split("/").slice(1);
    set.add(segments);
    byPath.set(change.path, change);
  }
  const updated = updateTree(view, root, set, (segments) => {
    const change = byPath.get(segmentsPath(segments));
    return change?.hash ? new EncodedValue(written?.get(change.hash) ?? view.valueBytes(change.hash)) : undefined;
  });
  return { root: updated.root, delta: updated.valueDelta };
}

/** The encoded values the changes set, read grouped by pack (for writing them to the live keyspace). */
export function encodedValues(view: ObjectView, changes: readonly MergeChange[]): Map<Hash, Buffer> {
  const hashes = changes.flatMap((change) => (change.hash ? [change.hash] : []));
  view.prefetchValues(hashes);
  const out = new Map<Hash, Buffer>();
  for (const hash of hashes) if (!out.has(hash)) out.set(hash, view.encodedValue(hash));
  return out;
}

/** A view on the store's objects (an overlay keeps what it builds in memory). */
export function objectView(store: Parameters<typeof ObjectStore.of>[0], options: { overlay?: boolean } = {}): ObjectView {
  return ObjectStore.of(store).view(options.overlay ? { overlay: true } : {});
}

/** What a conflict looks like in one line. */
export function describeConflict(conflict: MergeConflict): string {
  // A null value is `null`; no value at all (never set, or deleted) is "(none)".
  const show = (side: "base" | "ours" | "theirs", key?: string) => {
    if (conflict.absent?.includes(side)) return "(none)";
    const value = key === undefined ? conflict[side] : (conflict[side] as Record<string, JsonValue>)[key];
    return value === undefined ? "(none)" : clip(canonicalJson(value));
  };
  const sides = (key?: string) => `base ${show("base", key)}, ours ${show("ours", key)}, theirs ${show("theirs", key)}`;
  const reason = conflict.reason ? ` (${conflict.reason})` : "";
  // Two objects (a task, a record) differ somewhere past the clip: each key ours and theirs differ at, or
  // the line showed the same first 60 characters on each side and nothing of the conflict.
  const { ours, theirs } = conflict;
  if (!isRecord(ours) || !isRecord(theirs) || conflict.absent?.includes("ours") || conflict.absent?.includes("theirs")) return `${conflict.path}: ${sides()}${reason}`;
  const keys = [...new Set([...Object.keys(ours), ...Object.keys(theirs)])].sort().filter((key) => canonicalJson(ours[key] ?? null) !== canonicalJson(theirs[key] ?? null) || Object.hasOwn(ours, key) !== Object.hasOwn(theirs, key));
  const base = conflict.absent?.includes("base") || isRecord(conflict.base) ? "" : `base ${show("base")}; `;
  return `${conflict.path}${reason}: ${base}${keys.map((key) => `${key}: ${base ? `ours ${show("ours", key)}, theirs ${show("theirs", key)}` : sides(key)}`).join("; ")}`;
}

function clip(text: string): string {
  return clippedText(text, 60);
}

export type { Hash, ObjectView };
