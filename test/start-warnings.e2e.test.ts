// A plugin's warning while a session starts (here: git hooks asked for, no repository) reaches the
// user of `apex start`, in text on stderr and in --json, not only the supervisor's log.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

describe("apex start tells the plugins' start-up warnings", () => {
  it("in text and in --json, and says nothing more when there is none", () => {
    const agents = { alpha: "while true; do sleep 0.5; done" };
    // And a plugin failing in beforeCheckpoint: the session has no first checkpoint, which only the log said before.
    project = new Project(shellAgents(agents).replace("plugins: {}\n", "plugins:\n  git:\n    hooks: true\n  checkpoint: {}\n  ./no-data.mjs: {}\n"));
    const plugin = 'export default { name: "no-data", apply(apex) { apex.hooks.beforeCheckpoint.tapPromise("no-data", async () => { throw new Error("no data"); }); } };\n';
    writeFileSync(join(project.dir, "no-data.mjs"), plugin);
    const started = project.apex(["start", "--task", "t", "--json"]);
    expect(started.status, started.stderr).toBe(0);
    const ready = JSON.parse(started.stdout) as { warnings?: string[]; checkpoint: unknown };
    expect(ready.warnings).toEqual([
      expect.stringMatching(/^plugin git: git hooks not installed: No git repository at /),
      "no onStart checkpoint: plugin no-data failed in beforeCheckpoint: no data",
    ]);
    expect(ready.checkpoint).toBeNull();
    expect(readFileSync(join(project.storeDir, "supervisor.log"), "utf8")).toContain("warning: plugin git: git hooks not installed");
    expect(project.apex(["stop"]).status).toBe(0);

    const text = project.apex(["start", "--task", "t"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stderr).toMatch(/^warning: plugin git: git hooks not installed: No git repository at /m);
    expect(project.apex(["stop"]).status).toBe(0);

    project.writeConfig(shellAgents(agents));
    const quiet = project.apex(["start", "--task", "t", "--json"]);
    expect(quiet.status, quiet.stderr).toBe(0);
    expect(JSON.parse(quiet.stdout)).not.toHaveProperty("warnings");
    expect(quiet.stderr).not.toContain("warning:");
    expect(project.apex(["stop"]).status).toBe(0);
  });

  it("names a session setting the config's plugins leave without effect (max_checkpoints without retention)", () => {
    // Before, a session ran with session.max_checkpoints and no retention plugin, and kept every checkpoint without a word.
    project = new Project(shellAgents({ alpha: "while true; do sleep 0.5; done" }, "session:\n  max_checkpoints: 3\n").replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n"));
    const started = project.apex(["start", "--task", "t", "--json"]);
    expect(started.status, started.stderr).toBe(0);
    expect((JSON.parse(started.stdout) as { warnings?: string[] }).warnings).toEqual([
      "apex.config.yaml:6:3: session.max_checkpoints: has no effect: the retention plugin enforces it, and the plugins: section at apex.config.yaml:7:1 leaves it out. Enable retention (`retention: {auto_cleanup: false}` applies this cap alone), or remove session.max_checkpoints.",
    ]);
    expect(project.apex(["stop", "--force"]).status).toBe(0);
  });
});
