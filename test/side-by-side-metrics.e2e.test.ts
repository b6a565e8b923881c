// Metrics of a session running in a branch's git worktree count the commits made in that worktree,
// as its checkpoints record that worktree's git state: they counted the repository of the project's
// own tree, where nothing of the branch's work is. Through the built CLI, with a real supervisor,
// LMDB and git.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

const extra = tempDirs();
const { git } = isolatedGit("apex-sbs-metrics-home-");

const config = ["session:", "  auto_checkpoint_interval: 0", "agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.5; done"]', "plugins:", "  checkpoint: {}", "  git: {}", "  metrics:", "    interval: 1", "  history: {}", ""].join("\n");

interface Metrics {
  session_id: string;
  commits_made: number;
  git: { repositories: Array<{ name: string; path: string; commits: number }> };
}

describe("metrics of a session in a branch's git worktree", () => {
  it("count the commits made in its worktree, not in the project's tree", async () => {
    const project = new Project(config, "apex-sbs-metrics-");
    const dir = project.dir;
    initRepo(git, dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-sbs-metrics-wt-"));
    extra.push(parent);
    const wt = join(parent, "feat");

    project.start(["--task", "base"]);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["session", "branch", "latest", "feat", "--worktree", wt]).status).toBe(0);
    const feat = project.start(["--continue", "feat"]).session_id;

    // Two commits in the branch's worktree, none in the project's tree.
    for (const name of ["a.txt", "b.txt"]) {
      writeFileSync(join(wt, name), `${name}\n`);
      git(wt, "add", name);
      git(wt, "commit", "-qm", `add ${name}`);
    }
    const metrics = () => json<Metrics>(project.apex(["session", "metrics", "--json"], { cwd: wt }));
    const live = await waitFor("the worktree's commits counted", () => {
      const read = metrics();
      return read.commits_made === 2 && read;
    }, 30_000);
    expect(live.session_id).toBe(feat);
    expect(live.git.repositories.find((repository) => repository.name === "project")).toMatchObject({ path: wt, commits: 2 });

    // The report of the session once it stopped says the same.
    expect(project.apex(["stop"], { cwd: wt }).status).toBe(0);
    const report = json<{ metrics: Metrics }>(project.apex(["session", "report", "feat", "--json"]));
    expect(report.metrics).toMatchObject({ commits_made: 2 });
  }, 180_000);
});
