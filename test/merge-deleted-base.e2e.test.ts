// A merge of a branch whose branch point was deleted with `checkpoint delete --force`: through the
// built CLI, with real supervisors and a real LMDB store.
import { describe, expect, it } from "vitest";
import { Project, idleAgentConfig, ok } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { openStore } from "../core/store/open.js";
import { manifestPath } from "../plugins/checkpoint/manifest.js";

const config = idleAgentConfig(["checkpoint: {}"]);

interface MergeJson {
  base: { id: string; session_id: string; name: string; deleted?: string } | null;
  base_fell_back_from?: Array<{ session_id: string; session_name: string | null; sequence: number; name: string }>;
  refused: boolean;
  memory: { changes: Array<{ path: string; kind: string }>; conflicts: Array<{ path: string }> };
}

/** A project whose session (`main`) set /notes/x to "base", then branched `exp` from a checkpoint of that (`point`). */
function branchedProject(prefix: string): { p: Project; main: string; point: string } {
  const p = new Project(config, prefix);
  const main = p.start(["--task", "main work"]).session_id;
  ok(p, ["memory", "set", "/notes/x", '"base"']);
  const point = json<{ id: string }>(ok(p, ["checkpoint", "create", "fork", "--json"])).id;
  ok(p, ["session", "branch", point, "exp"]);
  return { p, main, point };
}

/** branchedProject, then exp sets /notes/x to "exp" (checkpoint `taken`) and main, running, merges exp in (checkpoint `merge`). */
function mergedProject(prefix: string): { p: Project; main: string; taken: { id: string; name: string }; merge: { id: string; name: string; sequence: number } } {
  const { p, main } = branchedProject(prefix);
  p.start(["--continue", "exp"]);
  ok(p, ["memory", "set", "/notes/x", '"exp"']);
  const taken = json<{ id: string; name: string }>(ok(p, ["checkpoint", "create", "exp changed x", "--json"]));
  ok(p, ["stop"]);
  p.start(["--continue", main]);
  const merged = json<{ checkpoint: { id: string; name: string; sequence: number } | null }>(ok(p, ["session", "merge", "exp", main, "--json"]));
  return { p, main, taken, merge: merged.checkpoint! };
}

describe("a merge of a branch whose branch point was deleted with --force", () => {
  it("still diffs against the branch point, as the branch recorded it, and says so; with that record deleted too, it says which older base it used instead", () => {
    const { p, main, point } = branchedProject("apex-deleted-base-");
    // Its outcome until it runs names the session it branched from as session list does (it gave the whole uuid).
    const history = json<Array<{ name: string | null; outcome: string }>>(ok(p, ["session", "history", "--json"]));
    expect(history.find((row) => row.name === "exp")!.outcome).toBe(`branched from ${main.slice(0, 8)}/checkpoint-002`);
    ok(p, ["memory", "set", "/notes/y", '"main"']);
    ok(p, ["checkpoint", "create", "main went on"]);
    p.start(["--continue", "exp"]);
    ok(p, ["memory", "set", "/notes/x", '"exp"']);
    ok(p, ["checkpoint", "create", "exp changed x"]);
    ok(p, ["stop"]);

    const forced = p.apex(["checkpoint", "delete", point, "--force"]);
    expect(forced.status, forced.stderr).toBe(0);

    // The branch point is the base still: only exp's change to x comes in, no conflict (it fell back to
    // main's first checkpoint, where x was not set yet: a conflict on x, and not a word of it).
    const plan = p.apex(["session", "merge", "exp", main, "--dry-run", "--json"]);
    expect(plan.status, plan.stderr).toBe(0);
    const report = JSON.parse(plan.stdout) as MergeJson;
    expect(report.base).toMatchObject({ id: point, session_id: main, name: "checkpoint-002", deleted: "recorded by its branch" });
    expect(report.base_fell_back_from).toBeUndefined();
    expect(report.memory).toMatchObject({ changes: [{ path: "/notes/x", kind: "modified" }], conflicts: [] });
    expect(plan.stderr).not.toContain("warning");
    const text = p.apex(["session", "merge", "exp", main, "--dry-run"]);
    expect(text.stdout).toContain(`Would merge exp/checkpoint-002 into ${main.slice(0, 8)} (base ${main.slice(0, 8)}/checkpoint-002, deleted: as its branch recorded it, strategy fail).`);

    // exp's first checkpoint, which recorded the branch point, deleted too: nothing stands in for it. The
    // merge falls back to main's first checkpoint, and says so, naming both.
    ok(p, ["checkpoint", "delete", "exp/checkpoint-001"]);
    const fallen = p.apex(["session", "merge", "exp", main, "--dry-run", "--json"]);
    expect(fallen.status).toBe(4); // x is a conflict against that older base
    const fell = JSON.parse(fallen.stdout) as MergeJson;
    expect(fell.base).toMatchObject({ session_id: main, name: "checkpoint-001" });
    expect(fell.base!.deleted).toBeUndefined();
    expect(fell.base_fell_back_from).toEqual([{ session_id: main, session_name: null, sequence: 2, name: "checkpoint-002" }]);
    const warning = `warning: the common ancestor ${main.slice(0, 8)}/checkpoint-002 was deleted (\`apex checkpoint delete --force\`, or a repair) and no branch or merge recorded it, so the merge`;
    expect(fallen.stderr).toContain(`${warning} would be based on the older ${main.slice(0, 8)}/checkpoint-001, where more paths may conflict`);
    const merged = p.apex(["session", "merge", "exp", main, "--strategy", "theirs"]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(merged.stderr).toContain(`${warning} is based on the older ${main.slice(0, 8)}/checkpoint-001`);
    expect(merged.stdout).toContain(`(base ${main.slice(0, 8)}/checkpoint-001, strategy theirs)`);
  }, 60_000);

  it("session tree draws the branch from its deleted branch point, marked deleted, as the merge finds it; with the branch's record of it deleted too, still from there, saying a merge falls back", () => {
    const { p, main, point } = branchedProject("apex-deleted-tree-");
    const short = main.slice(0, 8);
    ok(p, ["checkpoint", "create", "main went on"]);
    p.start(["--continue", "exp"]);
    ok(p, ["checkpoint", "create", "exp went on"]);
    ok(p, ["stop"]);
    ok(p, ["checkpoint", "delete", point, "--force"]);

    const merged = json<MergeJson>(ok(p, ["session", "merge", "exp", main, "--dry-run", "--json"]));
    expect(merged.base).toMatchObject({ id: point, deleted: "recorded by its branch" });
    // It came off main's first checkpoint, the nearest one left, and nothing said the real one was gone.
    const lines = ok(p, ["session", "tree"]).stdout.split("\n");
    const deletedLine = lines.findIndex((line) => line.includes(`${point.slice(0, 8)} (deleted) [${short}] checkpoint-002 deleted`));
    expect(deletedLine, lines.join("\n")).toBeGreaterThan(0);
    expect(lines[deletedLine]).toContain("exp branched from it (its branch recorded it: a merge of exp still diffs against it)");
    // exp's line, then its edge into the deleted branch point, then main's first checkpoint under it.
    expect(lines[deletedLine - 1], lines.join("\n")).toBe("|/");
    expect(lines[deletedLine - 2]).toMatch(/\[exp\] checkpoint-001 branch/);
    expect(lines[deletedLine + 1]).toContain(`[${short}] checkpoint-001 onStart`);

    interface TreeJson {
      sessions: Array<{ name: string | null; parent: { checkpoint: string; name: string; sequence: number; deleted?: string } | null }>;
      nodes: Array<{ id: string; session_id: string; name: string; trigger: string; parents: string[]; deleted?: string; head: boolean }>;
    }
    const tree = json<TreeJson>(ok(p, ["session", "tree", "--json"]));
    expect(tree.sessions.find((session) => session.name === "exp")!.parent).toEqual({ session_id: main, checkpoint: point, name: "checkpoint-002", sequence: 2, deleted: "recorded by its branch" });
    const node = tree.nodes.find((candidate) => candidate.id === point)!;
    expect(node).toMatchObject({ session_id: main, name: "checkpoint-002", trigger: "deleted", deleted: "recorded by its branch", head: false });
    const first = tree.nodes.find((candidate) => candidate.session_id === main && candidate.name === "checkpoint-001")!;
    expect(node.parents).toEqual([first.id]);
    expect(tree.nodes.find((candidate) => candidate.name === "checkpoint-001" && candidate.trigger === "branch")!.parents).toEqual([point]);
    // main's latest (the checkpoint its stop took, checkpoint-003 folded under it) comes after it.
    expect(tree.nodes.find((candidate) => candidate.session_id === main && candidate.head)!.parents).toEqual([point]);

    // The branch's first checkpoint, which recorded it, deleted too: the merge falls back and names it; the tree still draws the branch from it, saying so.
    ok(p, ["checkpoint", "delete", "exp/checkpoint-001"]);
    const fallen = json<MergeJson>(ok(p, ["session", "merge", "exp", main, "--dry-run", "--json"]));
    expect(fallen.base_fell_back_from).toEqual([{ session_id: main, session_name: null, sequence: 2, name: "checkpoint-002" }]);
    const after = json<TreeJson>(ok(p, ["session", "tree", "--json"]));
    expect(after.nodes.find((candidate) => candidate.id === point)).toMatchObject({ deleted: "not recorded" });
    expect(after.sessions.find((session) => session.name === "exp")!.parent).toMatchObject({ checkpoint: point, deleted: "not recorded" });
    expect(ok(p, ["session", "tree"]).stdout).toContain(`${point.slice(0, 8)} (deleted) [${short}] checkpoint-002 deleted: exp branched from it (nothing recorded it: a merge of exp falls back to an older base)`);
  }, 90_000);
});

describe("a merge after a merge checkpoint between the same sessions was deleted with --force", () => {
  it("still finds the checkpoint that merge took in as the base, through the deleted merge checkpoint, for the same sessions and for a branch made after it", () => {
    const { p, main, taken, merge } = mergedProject("apex-deleted-merge-");
    const mergeCheckpoint = merge.id;
    // main changes x again after the merge; exp goes on elsewhere.
    ok(p, ["memory", "set", "/notes/x", '"main again"']);
    ok(p, ["checkpoint", "create", "main changed x again"]);
    ok(p, ["session", "branch", "latest", "third"]);
    p.start(["--continue", "exp"]);
    ok(p, ["memory", "set", "/notes/y", '"exp"']);
    ok(p, ["checkpoint", "create", "exp set y"]);
    ok(p, ["stop"]);
    ok(p, ["checkpoint", "delete", mergeCheckpoint, "--force"]);
    // session tree still draws it, deleted, with its edge to what it merged in (it lost both, the merge no longer drawn at all).
    const tree = json<{ nodes: Array<{ id: string; trigger: string; parents: string[]; deleted?: string; description: string }> }>(ok(p, ["session", "tree", "--json"]));
    expect(tree.nodes.find((node) => node.id === mergeCheckpoint)).toMatchObject({ trigger: "deleted", deleted: "recorded by its session", description: `merge exp/${taken.name} into ${main.slice(0, 8)}` });
    expect(tree.nodes.find((node) => node.id === mergeCheckpoint)!.parents[1]).toBe(taken.id);
    expect(ok(p, ["session", "tree"]).stdout).toContain(`${mergeCheckpoint.slice(0, 8)} (deleted) [${main.slice(0, 8)}] ${merge.name} deleted: merge exp/${taken.name} into ${main.slice(0, 8)} (its session recorded what it merged in: a later merge still finds it)`);

    // The base is what the first merge took in (x "exp" there): main's change to x is main's alone, and only y
    // comes in. Without the deleted merge's edge it was the branch point, where x was "base": a conflict on x.
    for (const destination of [main, "third"]) {
      const plan = p.apex(["session", "merge", "exp", destination, "--dry-run", "--json"]);
      expect(plan.status, `${destination}: ${plan.stdout}${plan.stderr}`).toBe(0);
      const report = JSON.parse(plan.stdout) as MergeJson;
      expect(report.base, destination).toMatchObject({ id: taken.id, name: taken.name });
      expect(report.base_fell_back_from).toBeUndefined();
      expect(report.memory).toMatchObject({ changes: [{ path: "/notes/y", kind: "added" }], conflicts: [] });
    }
    const merged = p.apex(["session", "merge", "exp", "third"]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(merged.stdout).toContain(`(base exp/${taken.name}, strategy fail)`);
    // What the deleted merge took in is still the base of the next merge into main: kept as when its merge checkpoint was there.
    const refused = p.apex(["checkpoint", "delete", taken.id]);
    expect(refused.status, refused.stderr).toBe(4);
    expect(refused.stderr).toContain(`exp/${taken.name} is needed: it was merged into session ${main.slice(0, 8)}`);
  }, 120_000);
});

describe("a merge after a merge checkpoint between the same sessions was removed by a repair", () => {
  it("still finds the checkpoint that merge took in as the base, and session tree draws the merge checkpoint with its edge, from what the merge kept in its session's record", async () => {
    const { p, main, taken, merge: mergeCheckpoint } = mergedProject("apex-repaired-merge-");
    ok(p, ["memory", "set", "/notes/x", '"main again"']);
    ok(p, ["checkpoint", "create", "main changed x again"]);
    p.start(["--continue", "exp"]);
    ok(p, ["memory", "set", "/notes/y", '"exp"']);
    ok(p, ["checkpoint", "create", "exp set y"]);
    ok(p, ["stop"]);

    // The merge checkpoint's record no longer decodes: repair removes the checkpoint, and its manifest's edge with it.
    const store = await openStore(p.storeDir);
    try {
      const raw = store.table("kv", { keys: "string", values: "binary" });
      await store.transaction(() => raw.put(manifestPath(main, mergeCheckpoint.sequence), Buffer.from([0xc1])));
    } finally {
      await store.close();
    }
    const repaired = p.apex(["session", "repair", main, "--json"]);
    expect(repaired.status, repaired.stdout + repaired.stderr).toBe(0);
    expect(json<{ items: Array<{ id: string }> }>(ok(p, ["checkpoint", "list", "--session", main, "--json"])).items.map((item) => item.id)).not.toContain(mergeCheckpoint.id);

    // The base is still what the merge took in: only y comes in (it fell back to the branch point, where x was "base": a conflict on x).
    const plan = p.apex(["session", "merge", "exp", main, "--dry-run", "--json"]);
    expect(plan.status, plan.stdout + plan.stderr).toBe(0);
    const report = JSON.parse(plan.stdout) as MergeJson;
    expect(report.base).toMatchObject({ id: taken.id, name: taken.name });
    expect(report.base_fell_back_from).toBeUndefined();
    expect(report.memory).toMatchObject({ changes: [{ path: "/notes/y", kind: "added" }], conflicts: [] });

    const tree = json<{ nodes: Array<{ id: string; trigger: string; parents: string[]; deleted?: string; description: string }> }>(ok(p, ["session", "tree", "--json"]));
    const node = tree.nodes.find((candidate) => candidate.id === mergeCheckpoint.id);
    expect(node, JSON.stringify(tree.nodes)).toMatchObject({ trigger: "deleted", deleted: "recorded by its session", description: `merge exp/${taken.name} into ${main.slice(0, 8)}` });
    expect(node!.parents[1]).toBe(taken.id);
  }, 120_000);
});

describe("a merge into a session that has no record left (deleted by hand: only its checkpoints are known)", () => {
  it("keeps the merge's edge all the same: once the merge checkpoint is deleted, the next merge's base and session tree still go through it", () => {
    const { p, main, point } = branchedProject("apex-recordless-merge-");
    const short = main.slice(0, 8);
    ok(p, ["session", "branch", point, "other"]);
    p.start(["--continue", "exp"]);
    ok(p, ["memory", "set", "/notes/x", '"exp"']);
    const taken = json<{ id: string; name: string }>(ok(p, ["checkpoint", "create", "exp changed x", "--json"]));
    ok(p, ["stop"]);
    p.start(["--continue", "other"]);
    ok(p, ["memory", "set", "/notes/x", '"other"']);
    ok(p, ["checkpoint", "create", "other changed x", "--json"]);
    ok(p, ["stop"]);
    // main ended as exp started; its record goes, by hand, as validate's hint for a malformed one allows.
    ok(p, ["memory", "delete", `/sessions/history/${main}`, "--force"]);

    // Two merges into main, known by its checkpoints only: exp's, then other's (x settled as other's).
    const merge = json<{ checkpoint: { id: string; name: string } }>(ok(p, ["session", "merge", "exp", main, "--json"])).checkpoint;
    ok(p, ["session", "merge", "other", main, "--strategy", "theirs"]);
    p.start(["--continue", "exp"]);
    ok(p, ["memory", "set", "/notes/y", '"exp"']);
    ok(p, ["checkpoint", "create", "exp set y"]);
    ok(p, ["stop"]);
    ok(p, ["checkpoint", "delete", merge.id, "--force"]);

    // The base is what exp's merge took in (x "exp" there): x is main's change alone, and only y comes in.
    // Without that merge's edge it was the branch point, where x was "base": a conflict on x.
    const plan = p.apex(["session", "merge", "exp", main, "--dry-run", "--json"]);
    expect(plan.status, plan.stdout + plan.stderr).toBe(0);
    const report = JSON.parse(plan.stdout) as MergeJson;
    expect(report.base).toMatchObject({ id: taken.id, name: taken.name });
    expect(report.memory).toMatchObject({ changes: [{ path: "/notes/y", kind: "added" }], conflicts: [] });

    const tree = json<{ nodes: Array<{ id: string; trigger: string; parents: string[]; deleted?: string; description: string }> }>(ok(p, ["session", "tree", "--json"]));
    const node = tree.nodes.find((candidate) => candidate.id === merge.id);
    expect(node, JSON.stringify(tree.nodes)).toMatchObject({ trigger: "deleted", deleted: "recorded by its session", description: `merge exp/${taken.name} into ${short}` });
    expect(node!.parents[1]).toBe(taken.id);
    expect(ok(p, ["session", "tree"]).stdout).toContain(`${merge.id.slice(0, 8)} (deleted) [${short}] ${merge.name} deleted: merge exp/${taken.name} into ${short} (its session recorded what it merged in: a later merge still finds it)`);
    // Where the edges were kept is no damage.
    const validated = p.apex(["session", "validate", "--json"]);
    expect(validated.status, validated.stdout + validated.stderr).toBe(0);
  }, 180_000);
});

describe("a merge checkpoint a session was branched from, deleted with --force", () => {
  it("session tree draws it in both roles: its edge to what it merged in, and the branch coming off it (text and --json)", () => {
    const { p, main, taken, merge } = mergedProject("apex-deleted-merge-point-");
    const short = main.slice(0, 8);
    ok(p, ["session", "branch", merge.id, "third"]);
    ok(p, ["checkpoint", "delete", merge.id, "--force"]);

    interface TreeJson {
      nodes: Array<{ id: string; name: string; trigger: string; parents: string[]; deleted?: string; deleted_merge?: string; branched_by?: string[]; description: string }>;
      sessions: Array<{ session_id: string; name: string | null }>;
    }
    const tree = json<TreeJson>(ok(p, ["session", "tree", "--json"]));
    const third = tree.sessions.find((session) => session.name === "third")!.session_id;
    const node = tree.nodes.find((candidate) => candidate.id === merge.id);
    // A branch point (the branch comes off it), and a merge checkpoint whose edge its session kept (it was drawn as the branch point alone, the merge left out).
    expect(node, JSON.stringify(tree.nodes)).toMatchObject({
      trigger: "deleted",
      deleted: "recorded by its branch",
      branched_by: [third],
      deleted_merge: "recorded by its session",
      description: `merge exp/${taken.name} into ${short}`,
    });
    expect(node!.parents[1]).toBe(taken.id);
    expect(tree.nodes.find((candidate) => candidate.name === "checkpoint-001" && candidate.trigger === "branch" && candidate.parents[0] === merge.id)).toBeDefined();
    const text = ok(p, ["session", "tree"]).stdout;
    expect(text).toContain(
      `${merge.id.slice(0, 8)} (deleted) [${short}] ${merge.name} deleted: merge exp/${taken.name} into ${short} (its session recorded what it merged in: a later merge still finds it); third branched from it (its branch recorded it: a merge of third still diffs against it)`,
    );
  }, 120_000);
});
