import { ApexError } from "../../core/errors.js";
import { pathProblem } from "../../core/store/paths.js";
import type { Hash, TreeNode } from "./engine/objects.js";
import { agentsRoot, tasksRoot, type CheckpointManifest } from "./manifest.js";
import { SESSIONS_ROOT } from "./scope.js";

/**
 * A checkpoint stays inside its session: its memory tree never holds anything under
 * /sessions (session records, other sessions, /sessions/current), and every name in its
 * three trees is a valid keyspace path segment (not empty, '.' or '..', no '/', no control
 * character, valid UTF-8). A checkpoint APEX wrote always satisfies this; one that does not
 * was crafted or damaged, and restoring it could write outside the project memory and the
 * session's own tasks and agents. Import, validate and restore all apply this check.
 */

export interface ContainmentProblem {
  tree: "memory" | "tasks" | "agents";
  /** The keyspace path the entry would be restored to (names shown as JSON when they are not valid). */
  path: string;
  problem: string;
}

/** Why `name` cannot be one segment of a keyspace path, or undefined when it can. */
export function segmentProblem(name: string): string | undefined {
  if (typeof name !== "string" || name.length === 0) return "the name is empty";
  if (name.includes("/")) return "the name contains '/'";
  if (name === "." || name === "..") return `the name is '${name}'`;
  const problem = pathProblem(`/${name}`);
  return problem ? `the name ${problem.replace(/^it /, "")}` : undefined;
}

type ReadNode = (hash: Hash) => TreeNode | undefined;

/**
 * The containment problems of a checkpoint's trees. `readNode` returns a node or throws
 * (damaged or missing nodes are skipped: their damage is reported elsewhere). `seen` carries
 * the nodes already checked across calls, so trees shared by checkpoints are read once.
 */
export function containmentProblems(
  readNode: ReadNode,
  manifest: Pick<CheckpointManifest, "session_id" | "memory" | "tasks" | "agents">,
  seen: Set<Hash> = new Set(),
): ContainmentProblem[] {
  const problems: ContainmentProblem[] = [];
  const read = (hash: Hash): TreeNode | undefined => {
    try {
      return readNode(hash);
    } catch {
      return undefined;
    }
  };
  // The memory tree's top level: an entry "sessions" would be restored to /sessions/….
  const topLevel = (hash: Hash | null): void => {
    if (!hash) return;
    const node = read(hash);
    if (!node) return;
    if (node.kind === "split") for (const bucket of node.buckets) topLevel(bucket.hash);
    else if (node.entries.some((entry) => entry.name === SESSIONS_ROOT.slice(1))) {
      problems.push({ tree: "memory", path: SESSIONS_ROOT, problem: `its memory holds ${SESSIONS_ROOT}, where session records live; a checkpoint's memory never does` });
    }
  };
  topLevel(manifest.memory.root);

  const walk = (tree: ContainmentProblem["tree"], hash: Hash, dir: string): void => {
    if (seen.has(hash)) return;
    seen.add(hash);
    const node = read(hash);
    if (!node) return;
    if (node.kind === "split") {
      for (const bucket of node.buckets) walk(tree, bucket.hash, dir);
      return;
    }
    for (const entry of node.entries) {
      const problem = segmentProblem(entry.name);
      const path = `${dir}/${problem ? JSON.stringify(entry.name) : entry.name}`;
      if (problem) problems.push({ tree, path, problem: `${path} is not a valid path: ${problem}` });
      if (entry.tree) walk(tree, entry.tree, path);
    }
  };
  if (manifest.memory.root) walk("memory", manifest.memory.root, "");
  if (manifest.tasks.root) walk("tasks", manifest.tasks.root, tasksRoot(manifest.session_id));
  if (manifest.agents.root) walk("agents", manifest.agents.root, agentsRoot(manifest.session_id));
  return problems;
}

/**
 * The problem of one path a restore would write: `segments` below `mount` ("" for the
 * memory, /sessions/<sid>/tasks or …/agents), or undefined when it stays inside.
 */
export function writeProblem(tree: ContainmentProblem["tree"], mount: string, segments: readonly string[]): ContainmentProblem | undefined {
  if (tree === "memory" && segments[0] === SESSIONS_ROOT.slice(1)) {
    return { tree, path: SESSIONS_ROOT, problem: `its memory holds ${SESSIONS_ROOT}, where session records live; a checkpoint's memory never does` };
  }
  for (let index = 0; index < segments.length; index++) {
    const problem = segmentProblem(segments[index]!);
    if (!problem) continue;
    const path = `${mount}/${[...segments.slice(0, index), JSON.stringify(segments[index])].join("/")}`;
    return { tree, path, problem: `${path} is not a valid path: ${problem}` };
  }
  return undefined;
}

/** Throws APEX_E_INTEGRITY (nothing written) when the checkpoint reaches outside its session. */
export function assertContained(readNode: ReadNode, manifest: CheckpointManifest): void {
  refuseEscapes(manifest, containmentProblems(readNode, manifest));
}

/** Throws APEX_E_INTEGRITY naming the first of `problems`, if any. */
export function refuseEscapes(manifest: Pick<CheckpointManifest, "session_id" | "name">, problems: readonly ContainmentProblem[]): void {
  if (problems.length === 0) return;
  throw new ApexError("APEX_E_INTEGRITY", `Refusing to restore ${manifest.session_id}/${manifest.name}: ${problems[0]!.problem}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ""}.`, {
    hint: "Nothing was written. `apex session validate` lists such checkpoints; `apex session repair` removes them.",
    details: { problems: problems.slice(0, 20) as unknown as Record<string, unknown>[] },
  });
}
