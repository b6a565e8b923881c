// The warning of a merge whose source wrote after the checkpoint merged: through the built CLI,
// with a real supervisor and a real LMDB store.
import { describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";

const config = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins:", "  checkpoint: {}", ""].join("\n");

describe("a merge of a source that wrote after its checkpoint", () => {
  it("names an unnamed source by its short id, as the merge's other lines do, and gives the whole id in the command", () => {
    const p = new Project(config, "apex-merge-warning-");
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["memory", "set", "/notes/a", '"base"']).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "fork"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "side"]).status).toBe(0);
    expect(p.apex(["memory", "set", "/notes/a", '"after"']).status).toBe(0);
    expect(p.apex(["memory", "set", "/notes/b", '"taken"']).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "more"]).status).toBe(0);
    expect(p.apex(["memory", "set", "/notes/c", '"not taken"']).status).toBe(0);
    for (const dryRun of [["--dry-run"], []]) {
      const merged = p.apex(["session", "merge", main, "side", ...dryRun]);
      expect(merged.status, merged.stderr).toBe(0);
      expect(merged.stdout).toContain(`${dryRun.length > 0 ? "Would merge" : "Merged"} ${main.slice(0, 8)}/checkpoint-003 into side`);
      // It printed the whole id here, where every other line of the merge prints the short one.
      expect(merged.stderr).toContain(`warning: ${main.slice(0, 8)} wrote memory or tasks after checkpoint-003, which is what ${dryRun.length > 0 ? "would be" : "was"} merged;`);
      expect(merged.stderr).toContain(`(apex --session ${main} checkpoint create)`);
      expect(merged.stderr.split(main).length).toBe(2);
    }
    expect(json<{ source: { changed_since_checkpoint: string } }>(p.apex(["session", "merge", main, "side", "--dry-run", "--json"])).source.changed_since_checkpoint).toBe("running");
  }, 60_000);
});
