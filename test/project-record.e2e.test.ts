/**
 * The project's record (/projects/config: its id) belongs to the store, not to a session's state.
 * Checkpoints made before it was left out of their scope hold it, an imported session's the other
 * project's: restoring one (`start --continue`) or merging it gave this project the other's id,
 * after which this project's exports claimed to be the other's and that project's bundles were
 * taken for this one's own. The fixture is a session exported by APEX 0.1 from another project:
 * one agent, /notes/elsewhere, and two checkpoints whose memory holds that project's record.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readBundle } from "../plugins/archive/bundle.js";
import { REPO_ROOT, json, runApex } from "./helpers/cli.js";
import { sessionDir } from "./support/cleanup.js";

const BUNDLE = join(REPO_ROOT, "test/fixtures/bundles/other-project-v0.1.apexbundle");
/** The session in the bundle, and the id of the project it was exported from. */
const IMPORTED = "ec4568ff-622c-4302-be8e-2ce03e4a4527";
const OTHER_PROJECT = "1993750d-b04b-41d9-8197-96ebf45d0115";
const CONFIG = 'agents:\n  worker:\n    command: sh\n    args: ["-c", "sleep 600"]\n';

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = sessionDir("apex-project-record-"));
  writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
});
afterEach(() => cleanup());

const apex = (...args: string[]) => runApex(args, { cwd: dir });
const ok = (...args: string[]) => {
  const result = apex(...args);
  expect(result.status, `apex ${args.join(" ")}: ${result.stderr}`).toBe(0);
  return result;
};
const valueAt = (path: string) => json<{ value: unknown }>(ok("memory", "show", path, "--json")).value;
const projectRecord = () => valueAt("/projects/config") as { project_id: string; created_at: string };

/** This project with a stopped session of its own (its record made by that start), and the other project's session imported. */
function withImported(): { own: string; projectId: string } {
  const own = json<{ session_id: string }>(ok("start", "--task", "our work", "--json")).session_id;
  ok("memory", "set", "/notes/ours", '"ours"');
  ok("checkpoint", "create", "-m", "ours written");
  ok("stop");
  const projectId = projectRecord().project_id;
  expect(projectId).not.toBe(OTHER_PROJECT);
  copyFileSync(BUNDLE, join(dir, "other.apexbundle"));
  ok("session", "import", "other.apexbundle");
  return { own, projectId };
}

describe("the project's record is never restored nor merged from a checkpoint", () => {
  it("start --continue of an imported session keeps this project's id, and its bundles are still this project's", () => {
    const { projectId } = withImported();
    const continued = ok("start", "--continue", IMPORTED);
    expect(continued.stdout).toContain("restored checkpoint-002");
    try {
      expect(valueAt("/notes/elsewhere")).toEqual({ from: "the other project" });
      expect(projectRecord().project_id).toBe(projectId);
    } finally {
      ok("stop");
    }
    // The checkpoint the continue made of the state it replaced, and its diff with the imported one, leave the record out.
    const diff = json<{ memory: { added: string[]; removed: string[]; changed: string[] } }>(ok("checkpoint", "diff", `${IMPORTED}/checkpoint-002`, "latest", "--json"));
    expect([...diff.memory.added, ...diff.memory.removed, ...diff.memory.changed]).not.toContain("/projects/config");
    // This project's exports still name it as their project (they named the other one).
    ok("session", "export", IMPORTED, "-o", "again.apexbundle");
    expect(readBundle(readFileSync(join(dir, "again.apexbundle"))).manifest.project_id).toBe(projectId);
  });

  it("a merge of an imported session takes its memory but not its project record, under every strategy, and conflicts on nothing of APEX's", () => {
    const { own, projectId } = withImported();
    const dry = json<{ memory: { conflicts: Array<{ path: string }>; changes: Array<{ path: string }> } }>(ok("session", "merge", IMPORTED, own, "--dry-run", "--json")).memory;
    expect(dry.conflicts).toEqual([]);
    expect(dry.changes.map((change) => change.path)).toEqual(["/notes/elsewhere"]);
    // Before: exit 4, a conflict at /projects/config (base none, ours this project's id, theirs the other's) under `fail`.
    const merged = ok("session", "merge", IMPORTED, own, "--strategy", "theirs", "--json");
    expect(JSON.stringify(json(merged))).not.toContain("/projects/config");
    expect(projectRecord().project_id).toBe(projectId);
    expect(json(ok("memory", "show", "/notes", "--json")).children).toEqual({ "/notes/elsewhere": { from: "the other project" }, "/notes/ours": "ours" });
  });
});
