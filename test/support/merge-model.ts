/**
 * The reference model of the three-way merge (merge-model.test.ts, merge-model.e2e.test.ts):
 * memory is a map path -> JSON value, each path on its own (a path may hold a value and have
 * entries below it). Per path: unchanged on both sides -> base; changed on one side only (a set,
 * a deletion, a creation) -> that side; changed the same on both -> that value; changed
 * differently -> a conflict the strategy settles ("base": a virtual ancestor's, the base's value).
 */
import type { JsonValue } from "../../core/store/store.js";
import { canonicalJson } from "../../plugins/checkpoint/engine/objects.js";
import type { MergeStrategy } from "../../plugins/checkpoint/merge.js";

type Memory = Map<string, JsonValue>;
type Strategy = MergeStrategy | "base";


export const same = (a: JsonValue | undefined, b: JsonValue | undefined) => (a === undefined || b === undefined ? a === b : canonicalJson(a) === canonicalJson(b));

/** The model's merge of memory: the result and the conflicting paths. */
export function modelMerge(base: Memory, ours: Memory, theirs: Memory, strategy: Strategy, conflicted: ReadonlySet<string> = new Set()): { result: Memory; conflicts: string[] } {
  const result: Memory = new Map();
  const conflicts: string[] = [];
  const units = new Map<string, string[]>();
  for (const path of new Set([...base.keys(), ...ours.keys(), ...theirs.keys()])) {
    const unit = langGraphUnitOf(path);
    if (unit !== undefined) {
      units.set(unit, [...(units.get(unit) ?? []), path]);
      continue;
    }
    const b = base.get(path);
    const o = ours.get(path);
    const t = theirs.get(path);
    let value: JsonValue | undefined;
    // A virtual ancestor's conflicted path is changed on both sides, whatever they hold.
    if (same(o, t)) value = o;
    else if (same(o, b) && !conflicted.has(path)) value = t;
    else if (same(t, b) && !conflicted.has(path)) value = o;
    else {
      if (strategy !== "base") conflicts.push(path);
      value = strategy === "theirs" ? t : strategy === "base" ? b : o;
    }
    if (value !== undefined) result.set(path, value);
  }
  // A LangGraph thread namespace (README: its channels are one checkpoint's) is taken whole from one side.
  for (const [unit, paths] of units) {
    const oursChanged = paths.filter((path) => !same(ours.get(path), base.get(path)));
    const theirsChanged = paths.filter((path) => !same(theirs.get(path), base.get(path)));
    let side: Memory;
    // A namespace a virtual ancestor's candidates stepped in differently is changed on both sides.
    const virtual = conflicted.has(unit);
    if (theirsChanged.length === 0 && (!virtual || oursChanged.length === 0)) side = ours;
    else if (oursChanged.length === 0 && !virtual) side = theirs;
    else if (oursChanged.length === theirsChanged.length && theirsChanged.every((path) => oursChanged.includes(path) && same(ours.get(path), theirs.get(path)))) side = ours;
    else {
      if (strategy !== "base") conflicts.push(unit);
      side = strategy === "theirs" ? theirs : strategy === "base" ? base : ours;
    }
    for (const path of paths) if (side.has(path)) result.set(path, side.get(path)!);
  }
  return { result, conflicts: conflicts.sort() };
}

/** `/langgraph/<thread>/<ns>` for a path in it (merge.ts langGraphUnit). */
export function langGraphUnitOf(path: string): string | undefined {
  const segments = path.split("/").slice(1);
  return segments.length >= 3 && segments[0] === "langgraph" ? `/${segments.slice(0, 3).join("/")}` : undefined;
}

const completed = (task: JsonValue | undefined) => typeof task === "object" && task !== null && !Array.isArray(task) && task.status === "completed";
const resultOf = (task: JsonValue | undefined) => (task as Record<string, JsonValue>).result ?? null;

/** The model's merge of tasks: a union by id; a completed task stays completed. */
export function modelTasks(base: Memory, ours: Memory, theirs: Memory, strategy: Strategy, conflicted: ReadonlySet<string> = new Set()): { result: Memory; conflicts: string[] } {
  const result: Memory = new Map();
  const conflicts: string[] = [];
  for (const id of new Set([...base.keys(), ...ours.keys(), ...theirs.keys()])) {
    const b = base.get(id);
    const o = ours.get(id);
    const t = theirs.get(id);
    let value: JsonValue | undefined;
    if ((same(t, b) && !conflicted.has(id)) || same(o, t)) value = o;
    else if (same(o, b) && !conflicted.has(id)) value = t === undefined ? o : t; // a deletion on theirs alone deletes nothing
    else if (o === undefined) value = t;
    else if (t === undefined) value = o;
    else if (completed(o) && !completed(t)) value = o;
    else if (completed(t) && !completed(o)) value = t;
    else if (completed(o) && completed(t) && same(resultOf(o), resultOf(t))) value = o;
    else {
      if (strategy !== "base") conflicts.push(id);
      value = strategy === "theirs" ? t : strategy === "base" ? b : o;
    }
    if (value !== undefined) result.set(id, value);
  }
  return { result, conflicts: conflicts.sort() };
}

