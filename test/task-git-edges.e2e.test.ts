// Tasks, agents and the git plugin as a daily user meets them through the built CLI: git
// operations named in checkpoints and the audit trail, and what a session's records keep.
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { Project, events } from "./fixtures/agents/harness.js";

const idle = ["  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");

function gitProject(plugins: string[]): Project {
  const project = new Project(["agents:", idle, "plugins:", ...plugins.map((name) => `  ${name}: {}`), ""].join("\n"), "apex-task-git-");
  execFileSync("git", ["init", "-q"], { cwd: project.dir });
  execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "commit", "-q", "--allow-empty", "-m", "start"], { cwd: project.dir });
  return project;
}

describe("git operations in checkpoints and the audit trail", () => {
  it("a git command given after git's own options (-c, -C, --no-pager) is named by its command, not by the first option", () => {
    const project = gitProject(["checkpoint", "git", "history"]);
    const ready = project.start();
    const notify = project.apex(["git", "notify", "--", "-c", "core.editor=true", "-C", ".", "--no-pager", "commit", "-m", "wip"]);
    expect(notify.stderr).toBe("");
    expect(notify.status).toBe(0);
    const list = (JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ trigger: string; description: string }> }).items;
    // Before: "before git -c", and the trail's git.operation had command "-c".
    expect(list.find((checkpoint) => checkpoint.trigger === "beforeGit")?.description).toBe("before git commit");
    const operation = events(project, ready.session_id).find((event) => event.type === "git.operation");
    expect(operation).toMatchObject({ command: "commit", args: ["-c", "core.editor=true", "-C", ".", "--no-pager", "commit", "-m", "wip"], source: "cli" });
  });
});
