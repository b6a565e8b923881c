import { effectiveStatus } from "../../core/session/sessions.js";
import type { SessionRecord } from "../../core/session/records.js";
import type { JsonValue, Store } from "../../core/store/store.js";
import { withLease } from "../../core/session/lease.js";
import { Catalog, type CheckpointSummary } from "./catalog.js";
import { RESERVED_SESSION_NAMES } from "./manifest.js";
import { absentSummary, branchPointOf, deletedMergesOf, mergeSourceOf, MERGE_TRIGGER, recordedBranchPoint, recordedMergesOf, sessionRecord, type MergeSource, type Point } from "./merge-base.js";
import { shortSessionId } from "../../core/session/names.js";
import { deletedBranchPointMark, type DeletedPoint } from "./deleted-point.js";

export type { DeletedPoint } from "./deleted-point.js";

/**
 * `apex session tree`: sessions with their branch and merge points, drawn like
 * `git log --graph --oneline`. A node is a checkpoint that matters to the shape: each
 * session's first and latest, merge checkpoints, the checkpoints sessions branched from and
 * those merged in. The checkpoints between two nodes of a session are folded into a count.
 */

export interface TreeSession {
  session_id: string;
  name: string | null;
  status: string;
  created_at: string | null;
  /** The checkpoint it was branched from; `deleted` when it is no longer in the store (see TreeNode.deleted). */
  parent: { session_id: string; checkpoint: string; name: string; sequence: number; deleted?: DeletedPoint } | null;
  checkpoints: number;
  latest: string | null;
}

export interface TreeNode {
  id: string;
  session_id: string;
  name: string;
  sequence: number;
  trigger: string;
  description: string;
  created_at: string;
  /** First parent (previous node of the session, or the branch point), then the merged-in checkpoint. */
  parents: string[];
  /** Checkpoints of the session folded between this node and its first parent. */
  folded: number;
  /** The session's latest checkpoint. */
  head: boolean;
  /**
   * A checkpoint merged in whose session is no longer in the store (archived): known only from the
   * merge checkpoint's record of it, drawn so that the merge keeps its edge (`created_at` is then
   * the first merge's when that merge did not record its own; `trigger` "archived"). Absent otherwise.
   */
  archived?: true;
  /**
   * Of an `archived` node, drawn by `apex session tree` on this host: the archive of its session in
   * the project's backup directory, which `apex session unarchive` brings back, or null when there is
   * none (the session was never in this store, as a merge imported without the session it merged,
   * or its archive was moved away). Absent when not looked for (through `--remote`, the server's
   * backup directory is not this host's).
   */
  archive?: { file: string; unarchive: string } | null;
  /** An archived checkpoint's session name, as the merge recorded it (a branch's; absent: none recorded). */
  session_name?: string;
  /**
   * A branch point deleted since (`checkpoint delete --force`), drawn where it was in its session so
   * that the branch comes off it, as the merge finds it (merge-base.ts): "recorded by its branch"
   * when each branch's first checkpoint still records it (a merge diffs against it as recorded),
   * "not recorded" when none does (a merge falls back to an older base, and says so), "recorded
   * by some of its branches" when some do (`recorded_by` names them; a merge of the others falls back).
   * `trigger` is then "deleted". A merge checkpoint deleted so is drawn too, with its edge to what it
   * merged in, which its session's record kept: "recorded by its session" (merge-base.ts
   * recordMerge; the next merge still finds what it merged in). A merge checkpoint a repair
   * dropped is drawn so as well. Absent otherwise.
   */
  deleted?: DeletedPoint;
  /**
   * Of a `deleted` node that was a merge checkpoint: "recorded by its session" (its second parent is
   * what it merged in). With `deleted` "recorded by its session" alone it says nothing more; it tells
   * a merge checkpoint sessions were branched from, whose `deleted` is then the branch point's.
   */
  deleted_merge?: "recorded by its session";
  /** Of a `deleted` node: the sessions branched from it. */
  branched_by?: string[];
  /** Of a deleted branch point: those of `branched_by` whose first checkpoint records it. */
  recorded_by?: string[];
}



export interface SessionTree {
  sessions: TreeSession[];
  /** Newest first; every node comes before its parents. */
  nodes: TreeNode[];
}

export function sessionTree(store: Store): SessionTree {
  const catalog = Catalog.of(store);
  const ids = new Set<string>();
  for (const path of store.keysBelow("/sessions")) {
    const parts = path.slice("/sessions/".length).split("/");
    // Records of the keyspace (/sessions/current, /sessions/active, the history) are no sessions.
    if (parts.length === 1 && !RESERVED_SESSION_NAMES.has(parts[0]!)) ids.add(parts[0]!);
    else if (parts.length === 2 && parts[0] === "history") ids.add(parts[1]!);
  }
  for (const { sessionId } of catalog.counters()) ids.add(sessionId);
  for (const reserved of RESERVED_SESSION_NAMES) ids.delete(reserved);

  const summaries = new Map<string, CheckpointSummary[]>();
  for (const id of ids) summaries.set(id, [...catalog.summaries(id)]);
  // The checkpoints drawn: the store's, and the branch points deleted since, where they were (by sequence).
  const drawn = new Map([...summaries].map(([id, list]) => [id, [...list]]));
  const deleted = deletedBranchPoints(store, ids, drawn);
  const deletedMerges = deletedMergeCheckpoints(store, ids, drawn);
  const wanted = new Map<string, Set<number>>();
  const want = (point: Point | undefined): CheckpointSummary | undefined => {
    if (!point) return undefined;
    const list = drawn.get(point.sessionId) ?? [];
    let found: CheckpointSummary | undefined;
    for (const summary of list) if (summary.sequence <= point.sequence) found = summary;
    if (found) (wanted.get(point.sessionId) ?? wanted.set(point.sessionId, new Set()).get(point.sessionId)!).add(found.sequence);
    return found;
  };
  const mergeFrom = new Map<string, CheckpointSummary>();
  /** Merged-in checkpoints of sessions no longer in the store (archived), by id: drawn from what the merge recorded. */
  const archived = new Map<string, TreeNode>();
  const archivedFrom = new Map<string, string>();
  const branchFrom = new Map<string, CheckpointSummary>();
  const sessions: TreeSession[] = [];
  for (const id of ids) {
    const list = summaries.get(id)!;
    if (list.length > 0) {
      want({ sessionId: id, sequence: list[0]!.sequence });
      want({ sessionId: id, sequence: list.at(-1)!.sequence });
    }
    for (const summary of drawn.get(id)!) {
      const deletedFrom = deletedMerges.get(summary.id);
      if (summary.trigger !== MERGE_TRIGGER && !deletedFrom) continue;
      want({ sessionId: id, sequence: summary.sequence });
      // A merge checkpoint whose manifest no longer reads keeps its edge as its session's record kept it.
      const from = deletedFrom ?? mergeSourceOf(store, summary) ?? recordedMergesOf(store, id).find((merge) => merge.id === summary.id)?.from;
      const target = want(from);
      if (target) mergeFrom.set(summary.id, target);
      else if (from?.id && !ids.has(from.sessionId)) {
        // Its session archived: the merge's edge goes to what the merge recorded of it.
        // Its own creation time, when a merge recorded it (older than any merge of it), else the first merge's.
        const known = archived.get(from.id);
        const createdAt = from.recorded?.createdAt ?? summary.created_at;
        if (!known || known.created_at > createdAt) {
          const name = from.name ?? `checkpoint-${String(from.sequence).padStart(3, "0")}`;
          const sessionName = from.recorded?.sessionName ?? known?.session_name;
          archived.set(from.id, {
            id: from.id,
            session_id: from.sessionId,
            name,
            sequence: from.sequence,
            trigger: "archived",
            description: "",
            created_at: createdAt,
            parents: [],
            folded: 0,
            head: false,
            archived: true,
            ...(sessionName ? { session_name: sessionName } : {}),
          });
        }
        archivedFrom.set(summary.id, from.id);
      }
    }
    const branch = branchPointOf(store, id);
    const point = want(branch);
    if (point) branchFrom.set(id, point);
    const record = sessionRecord(store, id);
    sessions.push({
      session_id: id,
      name: typeof record?.name === "string" ? record.name : null,
      status: record ? safeStatus(store, record) : "unknown",
      created_at: typeof record?.created_at === "string" ? record.created_at : (list[0]?.created_at ?? null),
      parent: point ? { session_id: point.session_id, checkpoint: point.id, name: point.name, sequence: point.sequence, ...(deleted.get(point.id)?.of.has(id) ? { deleted: deleted.get(point.id)!.of.get(id)! } : {}) } : null,
      checkpoints: list.length,
      latest: list.at(-1)?.id ?? null,
    });
  }

  const nodes: TreeNode[] = [];
  for (const [id, sequences] of wanted) {
    const list = drawn.get(id)!;
    const latest = summaries.get(id)!.at(-1)?.sequence;
    const shown = list.filter((summary) => sequences.has(summary.sequence));
    shown.forEach((summary, index) => {
      const previous = shown[index - 1];
      const parents: string[] = [];
      let folded = 0;
      if (previous) {
        parents.push(previous.id);
        folded = list.filter((other) => other.sequence > previous.sequence && other.sequence < summary.sequence).length;
      } else {
        const branch = branchFrom.get(id);
        if (branch) parents.push(branch.id);
        folded = list.filter((other) => other.sequence < summary.sequence).length;
      }
      const merged = mergeFrom.get(summary.id)?.id ?? archivedFrom.get(summary.id);
      if (merged) parents.push(merged);
      const gone = deleted.get(summary.id);
      nodes.push({
        id: summary.id,
        session_id: id,
        name: summary.name,
        sequence: summary.sequence,
        trigger: summary.trigger,
        description: summary.description,
        created_at: summary.created_at,
        parents,
        folded,
        head: summary.sequence === latest,
        ...(deletedMerges.has(summary.id) ? { deleted: "recorded by its session" as const, deleted_merge: "recorded by its session" as const } : {}),
        ...(gone
          ? {
              deleted: deletedBranchPointMark(gone.of.values()),
              branched_by: [...gone.of.keys()],
              recorded_by: [...gone.of].filter(([, mark]) => mark === "recorded by its branch").map(([session]) => session),
            }
          : {}),
      });
    });
  }
  sessions.sort((a, b) => (a.created_at ?? "").localeCompare(b.created_at ?? "") || a.session_id.localeCompare(b.session_id));
  // The branches off a deleted branch point in the sessions' order (oldest first), not as the
  // store's keys (their random ids) came: "exp, exp2" came out as "exp2, exp" one run in two.
  const position = new Map(sessions.map((session, index) => [session.session_id, index]));
  const bySession = (a: string, b: string) => (position.get(a) ?? sessions.length) - (position.get(b) ?? sessions.length) || a.localeCompare(b);
  for (const node of nodes) {
    node.branched_by?.sort(bySession);
    node.recorded_by?.sort(bySession);
  }
  nodes.push(...archived.values());
  return { sessions, nodes: topological(nodes) };
}

/**
 * The branch points of `ids` no longer in the store (deleted with `checkpoint delete --force`),
 * each added to its session's list in `drawn` where it was, by id, with how each branch made
 * from it records it: the tree drew such a branch off the nearest checkpoint left before it, as
 * if made there, where the merge diffs against the real one (or says it falls back from it).
 */
function deletedBranchPoints(store: Store, ids: ReadonlySet<string>, drawn: Map<string, CheckpointSummary[]>): Map<string, { of: Map<string, DeletedPoint> }> {
  const found = new Map<string, { of: Map<string, DeletedPoint> }>();
  for (const id of ids) {
    const point = branchPointOf(store, id);
    const list = point && drawn.get(point.sessionId);
    const record = sessionRecord(store, id);
    const parent = record?.parent_checkpoint as { id?: unknown; name?: unknown } | undefined;
    if (!point || !list || typeof parent?.id !== "string") continue;
    const mark = (): DeletedPoint => (recordedBranchPoint(store, id)?.id === parent.id ? "recorded by its branch" : "not recorded");
    // Another branch made from it added it to the drawn list already: this one comes off it too.
    const known = found.get(parent.id);
    if (known) {
      known.of.set(id, mark());
      continue;
    }
    if (list.some((summary) => summary.sequence === point.sequence)) continue;
    const standIn = recordedBranchPoint(store, id);
    found.set(parent.id, { of: new Map([[id, standIn?.id === parent.id ? "recorded by its branch" : "not recorded"]]) });
    list.push(
      absentSummary({
        id: parent.id,
        ...point,
        name: typeof parent.name === "string" ? parent.name : undefined,
        // Its own time as the branch recorded it, else the branch's (made after it).
        createdAt: standIn?.created_at ?? (typeof record?.created_at === "string" ? record.created_at : ""),
        trigger: "deleted",
        memoryRoot: null,
        tasksRoot: null,
      }),
    );
    list.sort((a, b) => a.sequence - b.sequence);
  }
  return found;
}

/**
 * The merge checkpoints of `ids` deleted since (`checkpoint delete --force`, a repair), as their sessions' records kept them, each added to
 * its session's list in `drawn` where it was; by id, what each merged in.
 */
function deletedMergeCheckpoints(store: Store, ids: ReadonlySet<string>, drawn: Map<string, CheckpointSummary[]>): Map<string, MergeSource> {
  const found = new Map<string, MergeSource>();
  for (const id of ids) {
    const list = drawn.get(id)!;
    for (const merge of deletedMergesOf(store, id)) {
      const drawnAt = list.findIndex((summary) => summary.sequence === merge.sequence);
      if (drawnAt >= 0) {
        // Drawn already as a deleted branch point (a merge checkpoint a session was branched from): its
        // merge edge and description too, else the tree drew the branch coming off it and left the merge out.
        if (list[drawnAt]!.id !== merge.id) continue;
        found.set(merge.id, merge.from);
        list[drawnAt] = { ...list[drawnAt]!, description: merge.description };
        continue;
      }
      found.set(merge.id, merge.from);
      const createdAt = merge.createdAt ?? merge.from.recorded?.createdAt ?? "";
      list.push({ ...absentSummary({ id: merge.id, sessionId: id, sequence: merge.sequence, createdAt, trigger: "deleted", memoryRoot: null, tasksRoot: null }), description: merge.description });
    }
    list.sort((a, b) => a.sequence - b.sequence);
  }
  return found;
}

/** Newest first, every node before its parents (creation time, then sequence, then id). */
function topological(nodes: TreeNode[]): TreeNode[] {
  const byId = new Map(nodes.map((node) => [node.id, node]));
  const children = new Map<string, number>();
  for (const node of nodes) for (const parent of node.parents) if (byId.has(parent)) children.set(parent, (children.get(parent) ?? 0) + 1);
  const newer = (a: TreeNode, b: TreeNode) => (a.created_at > b.created_at ? -1 : a.created_at < b.created_at ? 1 : b.sequence - a.sequence || (a.id < b.id ? 1 : -1));
  const ready = nodes.filter((node) => !children.get(node.id));
  const out: TreeNode[] = [];
  while (ready.length > 0) {
    ready.sort(newer);
    const node = ready.shift()!;
    out.push(node);
    for (const parent of node.parents) {
      if (!byId.has(parent)) continue;
      const left = (children.get(parent) ?? 0) - 1;
      children.set(parent, left);
      if (left === 0) ready.push(byId.get(parent)!);
    }
  }
  return out;
}

/** The graph as text lines, like `git log --graph --oneline`. */
export function drawTree(tree: SessionTree, backups?: string): string[] {
  const sessions = new Map(tree.sessions.map((session) => [session.session_id, session]));
  const lines: string[] = [];
  let columns: Array<string | null> = [];
  // Columns at even positions; a connector to the column on the left sits in the gap before it.
  const render = (marks: Map<number, string>) => {
    const chars: string[] = [];
    columns.forEach((expected, index) => {
      if (index > 0) chars.push(marks.get(index * 2 - 1) ?? " ");
      chars.push(marks.get(index * 2) ?? (expected === null ? " " : "|"));
    });
    return chars.join("").replace(/\s+$/, "");
  };
  // The column of a root drawn on the line above (it awaits nothing more), else undefined.
  let rootAbove: number | undefined;
  for (const node of tree.nodes) {
    // No column awaits anything: the history above ended at its root, and this one is unrelated to it (a blank line between them, where git draws one column through both).
    if (lines.length > 0 && columns.length === 0) {
      lines.push("");
      rootAbove = undefined;
    }
    let at = columns.indexOf(node.id);
    if (at < 0) {
      // A node nothing awaits (a session's latest) takes a free column, never the one of a root
      // drawn right above it: its "*" straight under that root's read as the root's parent, an
      // unrelated session's checkpoint drawn as another's start.
      at = columns.findIndex((column, index) => column === null && index !== rootAbove);
      if (at < 0) {
        if (columns.length === rootAbove) columns.push(null);
        at = columns.push(node.id) - 1;
      } else columns[at] = node.id;
    }
    // Other columns that waited for this node join it first ("|/", "|_|/" from further right).
    for (let index = columns.length - 1; index > at; index--) {
      if (columns[index] !== node.id) continue;
      columns[index] = null;
      lines.push(render(edge(index, at)));
    }
    while (columns.length > 0 && columns.at(-1) === null) columns = columns.slice(0, -1);
    const session = sessions.get(node.session_id);
    const who = session?.name ?? node.session_name ?? shortSessionId(node.session_id);
    const head = node.head ? ` (${who}: ${session?.status ?? "?"})` : "";
    const folded = node.folded > 0 ? `  (+${node.folded} checkpoint${node.folded === 1 ? "" : "s"})` : "";
    const { trigger, description } = node.archived ? absentText(node, backups) : node.deleted ? deletedText(node, sessions) : { trigger: node.trigger, description: node.description ? `: ${node.description}` : "" };
    lines.push(`${render(new Map([[at * 2, "*"]]))}  ${node.id.slice(0, 8)}${node.deleted ? " (deleted)" : ""} [${who}] ${node.name} ${trigger}${head}${description}${folded}`);
    const [first, ...others] = node.parents;
    columns[at] = first ?? null;
    rootAbove = first === undefined ? at : undefined;
    for (const other of others) {
      const known = columns.indexOf(other);
      if (known >= 0) {
        // Already awaited in another column: the edge goes there ("|/" leftwards, "|\\" rightwards).
        if (known !== at) lines.push(render(edge(at, known)));
        continue;
      }
      let free = columns.indexOf(null);
      if (free < 0 || free < at) free = columns.push(other) - 1;
      else columns[free] = other;
      // A merge opens a column for its second parent ("|\").
      lines.push(render(edge(at, free).set(free * 2, " ")));
    }
    while (columns.length > 0 && columns.at(-1) === null) columns = columns.slice(0, -1);
  }
  return lines;
}

/**
 * A checkpoint merged in whose session is not in the store, as the line names it: `unarchive` is
 * suggested only when an archive of the session is in the backup directory (`backups`, as text
 * shows it); without one, that it is not here, and why it may not be (it suggested `unarchive`
 * for a session that was never archived here, say one a merge imported from another project names).
 */
function absentText(node: TreeNode, backups: string | undefined): { trigger: string; description: string } {
  if (node.archive) return { trigger: "archived", description: ` (\`apex session unarchive ${node.archive.unarchive}\` brings its session back)` };
  if (node.archive === null) {
    return { trigger: "absent", description: ` (its session is not in this store, and ${backups ?? "the backup directory"} holds no archive of it: it was not imported here, or its archive was moved away)` };
  }
  return { trigger: "absent", description: " (its session is not in the server's store: archived there, or never imported there)" };
}

/**
 * A deleted checkpoint, as the line names it: a merge checkpoint with what it merged in; a branch
 * point with the branches made from it, and what a merge of them does without it (as `session
 * merge` says it: its base as the branch recorded it, or an older one); one that was both, both.
 */
function deletedText(node: TreeNode, sessions: ReadonlyMap<string, TreeSession>): { trigger: string; description: string } {
  const merge = `${node.description || "a merge"} (its session recorded what it merged in: a later merge still finds it)`;
  if (node.deleted === "recorded by its session") return { trigger: "deleted", description: `: ${merge}` };
  const point = deletedPointText(node, sessions);
  // A merge checkpoint sessions were branched from: both roles.
  return { trigger: "deleted", description: node.deleted_merge ? `: ${merge}; ${point}` : `: ${point}` };
}

/** A deleted branch point's part of its line: the branches made from it, and what a merge of them does without it. */
function deletedPointText(node: TreeNode, sessions: ReadonlyMap<string, TreeSession>): string {
  const label = (id: string) => sessions.get(id)?.name ?? shortSessionId(id);
  const names = (node.branched_by ?? []).map(label);
  const one = names.length === 1;
  const who = names.join(", ");
  const recorded = (node.recorded_by ?? []).map(label);
  const others = (node.branched_by ?? []).filter((id) => !node.recorded_by?.includes(id)).map(label);
  const what =
    node.deleted === "recorded by its branch"
      ? `${one ? "its branch" : "their branches"} recorded it: a merge of ${who} still diffs against it`
      : node.deleted === "recorded by some of its branches"
        ? `${recorded.join(", ")} recorded it: a merge of ${recorded.join(", ")} still diffs against it; nothing recorded it for ${others.join(", ")}: a merge of ${others.join(", ")} falls back to an older base`
        : `nothing recorded it: a merge of ${who} falls back to an older base`;
  return `${who} branched from it (${what})`;
}

/**
 * The marks of an edge from column `from` to column `to` on one line: "/" or "\\" in the gap beside
 * `from`, and "_" in each gap it passes to reach a column further away (as git draws it). A lone
 * "/" beside `from` read as an edge to the next column, another session's.
 */
function edge(from: number, to: number): Map<number, string> {
  const marks = new Map<number, string>([[to < from ? from * 2 - 1 : from * 2 + 1, to < from ? "/" : "\\"]]);
  for (let column = Math.min(from, to) + 1; column < Math.max(from, to); column++) marks.set(to < from ? column * 2 - 1 : column * 2 + 1, "_");
  return marks;
}

function safeStatus(store: Store, record: Record<string, JsonValue>): string {
  try {
    // With its lease: the expiry is a row of the leases table, not part of the stored record.
    return effectiveStatus(withLease(store, record as unknown as SessionRecord));
  } catch {
    return typeof record.status === "string" ? record.status : "unknown";
  }
}
