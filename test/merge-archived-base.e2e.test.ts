// Two sessions that both merged a branch, merged into one another after that branch was archived:
// through the built CLI, with real supervisors, a real LMDB store and a real archive bundle.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, idleAgentConfig, ok } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts).
let project: Project | undefined;

const config = idleAgentConfig(["checkpoint: {}", "archive: {}", "retention: {}"]);

interface MergeJson {
  base: { id: string; session_id: string; session_name: string | null; name: string } | null;
  other_bases: string[];
  refused: boolean;
  memory: { changes: Array<{ path: string; kind: string }>; conflicts: Array<{ path: string; base: unknown; ours: unknown; theirs: unknown }> };
}

/** The project's session started with each of `paths` set to "base", checkpointed as `fork`, and branched from there as xbr, alpha and beta. */
function forkThree(p: Project, paths: string[]): void {
  p.start(["--task", "main work"]);
  for (const path of paths) ok(p, ["memory", "set", path, '"base"']);
  const point = json<{ id: string }>(ok(p, ["checkpoint", "create", "fork", "--json"])).id;
  for (const name of ["xbr", "alpha", "beta"]) ok(p, ["session", "branch", point, name]);
}

describe("a merge base whose session was archived", () => {
  it("is the archived checkpoint both sides merged, as their merges recorded it, not an older one", () => {
    project = new Project(config, "apex-archived-base-");
    const p = project;
    forkThree(p, ["/notes/c", "/notes/d"]);

    // xbr changes c and d, and is merged into alpha and into beta.
    p.start(["--continue", "xbr"]);
    ok(p, ["memory", "set", "/notes/c", '"xc"']);
    ok(p, ["memory", "set", "/notes/d", '"xd"']);
    ok(p, ["checkpoint", "create", "xbr done"]);
    p.start(["--continue", "alpha"]);
    ok(p, ["memory", "set", "/notes/d", '"alpha-d"']);
    // alpha keeps its own d: "xd" is then held by xbr's checkpoint only.
    ok(p, ["session", "merge", "xbr", "alpha", "--strategy", "ours"]);
    ok(p, ["memory", "set", "/notes/c", '"alpha-c"']);
    ok(p, ["checkpoint", "create", "alpha changed c"]);
    p.start(["--continue", "beta"]);
    ok(p, ["memory", "set", "/notes/d", '"beta-d"']);
    ok(p, ["session", "merge", "xbr", "beta", "--strategy", "ours"]);
    ok(p, ["memory", "set", "/notes/e", '"beta-e"']);
    ok(p, ["checkpoint", "create", "beta added e"]);
    ok(p, ["stop"]);

    // A dry run refused for a conflict (exit 4) still prints its plan.
    const planOf = (result: { status: number; stdout: string; stderr: string }) => {
      expect(result.status, result.stderr).toBe(4);
      return JSON.parse(result.stdout) as MergeJson;
    };
    const before = planOf(p.apex(["session", "merge", "beta", "alpha", "--dry-run", "--json"]));
    expect(before.base).toMatchObject({ session_name: "xbr" });

    const archived = p.apex(["session", "archive", "xbr"]);
    expect(archived.status, archived.stderr).toBe(0);
    expect(p.apex(["session", "list", "--json"]).stdout).not.toContain('"xbr"');

    // The same base after the archive: c is alpha's change only (it was a conflict against the
    // fork, where --strategy theirs put xbr's "xc" back over it), d the two sides' own values,
    // whose base "xd" is still read after the archive's sweep.
    const dry = p.apex(["session", "merge", "beta", "alpha", "--dry-run", "--json"]);
    const plan = planOf(dry);
    expect(plan.base).toEqual(before.base);
    expect(plan.other_bases).toEqual([]);
    // The tree draws that checkpoint by its session's name and its own time, as the merges recorded them (it drew the short id, at the first merge's time).
    const tree = json<{ nodes: Array<{ id: string; archived?: true; session_name?: string; created_at: string }> }>(p.apex(["session", "tree", "--json"]));
    expect(tree.nodes.find((node) => node.id === plan.base!.id)).toMatchObject({ archived: true, session_name: "xbr", created_at: (before.base as { created_at?: string }).created_at });
    expect(ok(p, ["session", "tree"]).stdout).toMatch(new RegExp(`^[^\\n]* ${plan.base!.id.slice(0, 8)} \\[xbr\\] ${plan.base!.name} archived \\(\`apex session unarchive ${plan.base!.session_id.slice(0, 8)}\` brings its session back\\)$`, "m"));
    expect(plan.memory.conflicts).toEqual([expect.objectContaining({ path: "/notes/d", base: "xd", ours: "alpha-d", theirs: "beta-d" })]);
    expect(plan.memory.changes).toEqual([expect.objectContaining({ path: "/notes/e", kind: "added" })]);

    const merged = p.apex(["session", "merge", "beta", "alpha", "--strategy", "ours"]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(merged.stdout).toContain(`(base xbr/${before.base!.name}, strategy ours)`);
    // The audit trail names where a merge came from; what the manifest records for later merges is not repeated there.
    const trail = json<{ events: Array<{ type: string; from?: Record<string, unknown> }> }>(p.apex(["session", "history", "alpha", "--json"])).events;
    for (const event of trail.filter((entry) => entry.type === "session.merged")) expect(Object.keys(event.from!).sort()).toEqual(["id", "name", "sequence", "session_id"]);
    p.start(["--continue", "alpha"]);
    expect(json<{ value: unknown }>(p.apex(["memory", "show", "/notes/c", "--json"])).value).toBe("alpha-c");
    expect(json<{ value: unknown }>(p.apex(["memory", "show", "/notes/e", "--json"])).value).toBe("beta-e");
    ok(p, ["stop"]);

    // Brought back, it is its own base again, as before the archive.
    expect(existsSync(join(p.dir, ".apex", "backups"))).toBe(true);
    ok(p, ["session", "unarchive", "xbr"]);
    const again = json<MergeJson>(p.apex(["session", "merge", "alpha", "beta", "--dry-run", "--json"]));
    expect(again.base?.session_name).toBe("beta");
    expect(p.apex(["session", "validate"]).status).toBe(0);

    // Archived with every session that merged it, xbr's trees are swept; alpha brought back alone
    // records trees the store no longer has. Sweeps go on (they refused: "Not sweeping: … damaged"),
    // and merges fall back to an older base, as for a merge that recorded nothing.
    for (const name of ["xbr", "alpha", "beta"]) ok(p, ["session", "archive", name]);
    ok(p, ["session", "unarchive", "alpha"]);
    const cleanup = p.apex(["session", "cleanup"]);
    expect(cleanup.status, cleanup.stderr).toBe(0);
    ok(p, ["session", "archive", "alpha"]);
    ok(p, ["session", "unarchive", "alpha"]);
    expect(p.apex(["session", "validate"]).status).toBe(0);
    const main = json<Array<{ session_id: string; name: string | null }>>(p.apex(["session", "list", "--json"])).find((session) => session.name === null)!.session_id;
    expect(p.apex(["session", "merge", "alpha", main, "--dry-run"]).status).toBe(0);
  }, 120_000);
});

describe("a merge base deleted with checkpoint delete --force", () => {
  it("is the deleted checkpoint both sides merged, as their merges recorded it, not an older one of its session", () => {
    project = new Project(config, "apex-deleted-base-");
    const p = project;
    forkThree(p, ["/notes/c"]);
    p.start(["--continue", "xbr"]);
    ok(p, ["memory", "set", "/notes/c", '"xc"']);
    // Its only checkpoint after its branch checkpoint is the one stopping it takes.
    p.start(["--continue", "alpha"]);
    ok(p, ["session", "merge", "xbr", "alpha"]);
    ok(p, ["memory", "set", "/notes/c", '"alpha-c"']);
    ok(p, ["checkpoint", "create", "alpha changed c"]);
    p.start(["--continue", "beta"]);
    ok(p, ["session", "merge", "xbr", "beta"]);
    ok(p, ["memory", "set", "/notes/e", '"beta-e"']);
    ok(p, ["checkpoint", "create", "beta added e"]);
    ok(p, ["stop"]);
    const before = json<MergeJson>(p.apex(["session", "merge", "beta", "alpha", "--dry-run", "--json"]));
    expect(before.base).toMatchObject({ session_name: "xbr" });
    expect(before.memory.conflicts).toEqual([]);

    // Needed by both merges: refused, then deleted with --force; the sweep runs.
    const refused = p.apex(["checkpoint", "delete", "xbr/latest"]);
    expect(refused.status, refused.stderr).toBe(4);
    ok(p, ["checkpoint", "delete", "xbr/latest", "--force"]);
    ok(p, ["session", "cleanup"]);

    // Still that checkpoint, as the merges recorded it: c is alpha's change only. Against xbr's
    // older checkpoint (its branch point's state) c was a conflict, --strategy theirs putting "xc" back.
    const after = json<MergeJson>(p.apex(["session", "merge", "beta", "alpha", "--dry-run", "--json"]));
    expect(after.base).toEqual(before.base);
    expect(after.memory).toEqual(before.memory);
    ok(p, ["session", "merge", "beta", "alpha", "--strategy", "theirs"]);
    p.start(["--continue", "alpha"]);
    expect(json<{ value: unknown }>(p.apex(["memory", "show", "/notes/c", "--json"])).value).toBe("alpha-c");
    expect(json<{ value: unknown }>(p.apex(["memory", "show", "/notes/e", "--json"])).value).toBe("beta-e");
    ok(p, ["stop"]);
    expect(p.apex(["session", "validate"]).status).toBe(0);
  }, 120_000);
});
