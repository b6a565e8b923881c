// Tasks, agents and the git plugin as a daily user meets them through the built CLI: git
// operations named in checkpoints and the audit trail, and what a session's records keep.
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, events, waitFor } from "./fixtures/agents/harness.js";
import { registerDir } from "./support/process-registry.js";

const idle = ["  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");

function gitProject(plugins: string[]): Project {
  const project = new Project(["agents:", idle, "plugins:", ...plugins.map((name) => (name.includes(":") ? `  ${name}` : `  ${name}: {}`)), ""].join("\n"), "apex-task-git-");
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

  it("a commit in an interrupted session (its supervisor killed) gets its beforeGit checkpoint and audit event, as apex git notify does", async () => {
    const project = gitProject(["checkpoint", "git: {hooks: true}", "history"]);
    writeFileSync(join(project.dir, ".gitignore"), ".apex/\n");
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project.status().session?.status === "interrupted");
    execFileSync("git", ["add", ".gitignore"], { cwd: project.dir });
    execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "ignore the store"], { cwd: project.dir });
    const notify = project.apex(["git", "notify", "--json", "--", "rebase", "main"]);
    expect(notify.status).toBe(0);
    expect(JSON.parse(notify.stdout)).toMatchObject({ session_id: ready.session_id, fired: true });
    // Before: it said fired, and nothing fired: no checkpoint, no git.operation (the CLI's plugins had no store).
    const list = (JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ trigger: string; description: string }> }).items;
    expect(list.filter((checkpoint) => checkpoint.trigger === "beforeGit").map((checkpoint) => checkpoint.description).sort()).toEqual(["before git pre-commit (git hook)", "before git rebase"]);
    const operations = events(project, ready.session_id).filter((event) => event.type === "git.operation");
    expect(operations.map((event) => [event.command, event.source])).toEqual([["pre-commit", "git-hook"], ["rebase", "cli"]]);
  });

  it("session branch latest NAME --worktree branches from the checkpoint it read, with the installed hooks quiet for APEX's own git worktree add", () => {
    const project = gitProject(["checkpoint", "git: {hooks: true}", "history"]);
    writeFileSync(join(project.dir, ".gitignore"), ".apex/\n");
    execFileSync("git", ["add", ".gitignore", "apex.config.yaml"], { cwd: project.dir });
    execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "commit", "-q", "-m", "ignore the store"], { cwd: project.dir });
    const ready = project.start();
    expect(project.apex(["memory", "set", "/k", '"written after checkpoint-001"']).status).toBe(0);
    const worktree = `${project.dir}-exp`;
    registerDir(worktree);
    const branched = project.apex(["session", "branch", "latest", "exp", "--worktree", worktree, "--json"]);
    expect(branched.stderr).toBe("");
    expect(branched.status).toBe(0);
    // Before: git worktree add fired the reference-transaction hook, a beforeGit checkpoint-002 of the
    // live memory (with /k) was taken, and the branch was made from it: not the latest checkpoint as asked.
    expect((JSON.parse(branched.stdout) as { parent_checkpoint: { sequence: number } }).parent_checkpoint.sequence).toBe(1);
    const list = (JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ trigger: string }> }).items;
    expect(list.map((checkpoint) => checkpoint.trigger)).toEqual(["onStart"]);
    expect(events(project, ready.session_id).filter((event) => event.type === "git.operation")).toEqual([]);
  });

  it("a git plugin whose repository option names no repository says so as the session starts, once, instead of checkpoints without git state and not a word", () => {
    const project = gitProject(["checkpoint", 'git: {repository: "../no-such-checkout"}']);
    const ready = project.start() as ReturnType<Project["start"]> & { warnings?: string[] };
    expect(ready.warnings).toEqual([expect.stringMatching(/^plugin git: no git state recorded: the repository option \("\.\.\/no-such-checkout"\) names .*no-such-checkout, which does not exist; /)]);
    expect(project.apex(["checkpoint", "create"]).stderr).toBe("");
  });
});

describe("task ids in a branch session", () => {
  it("t-2 names the branch's own t-0002.<name> when it has no t-0002, in show, report, done and milestones", () => {
    const project = new Project(["agents:", idle, "plugins:", "  checkpoint: {}", ""].join("\n"), "apex-task-ids-");
    project.start();
    expect(project.apex(["task", "add", "from the main line"]).status).toBe(0);
    expect(project.apex(["checkpoint", "create"]).status).toBe(0);
    expect(project.apex(["session", "branch", "latest", "exp"]).status).toBe(0);
    project.start(["--continue", "exp"]);
    const added = JSON.parse(project.apex(["task", "add", "on the branch", "--json"]).stdout) as { id: string };
    expect(added.id).toBe("t-0002.exp");
    // Before: "No task t-0002 in session …", exit 3, though `apex task --help` says t-1 works for t-0001.
    const shown = project.apex(["task", "show", "t-2", "--json"]);
    expect(shown.stderr).toBe("");
    expect((JSON.parse(shown.stdout) as { id: string }).id).toBe("t-0002.exp");
    expect((JSON.parse(project.apex(["task", "show", "1", "--json"]).stdout) as { id: string }).id).toBe("t-0001");
    expect(JSON.parse(project.apex(["agent", "report", "--agent", "idle", "--task", "t-2", "--json"]).stdout)).toMatchObject({ task: "t-0002.exp" });
    expect(JSON.parse(project.apex(["milestone", "halfway", "--task", "2", "--json"]).stdout)).toMatchObject({ task: "t-0002.exp" });
    expect(JSON.parse(project.apex(["milestone", "--task", "t-2", "--json"]).stdout)).toMatchObject([{ text: "halfway", task: "t-0002.exp" }]);
    expect(JSON.parse(project.apex(["task", "done", "t-0002", "--json"]).stdout)).toMatchObject({ id: "t-0002.exp", status: "completed" });
    const missing = project.apex(["task", "done", "t-3"]);
    expect(missing.status).toBe(3);
    expect(missing.stderr).toContain("No task t-0003 in session");
  });
});

describe("the audit trail of an interrupted session", () => {
  it("checkpoints made on the store while its supervisor is dead (checkpoint create, a claim's beforeTask) are in session history, as a running session's are", async () => {
    const project = new Project(["agents:", idle, "plugins:", "  checkpoint: {}", "  history: {}", ""].join("\n"), "apex-task-trail-");
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project.status().session?.status === "interrupted");
    expect(project.apex(["checkpoint", "create"]).status).toBe(0);
    expect(project.apex(["task", "add", "one"]).status).toBe(0);
    expect(project.apex(["task", "claim", "--agent", "idle"]).status).toBe(0);
    const checkpoints = events(project, ready.session_id).filter((event) => event.type === "checkpoint");
    // Before: only the supervisor's onStart one; the two made on the store were not in the trail.
    expect(checkpoints.map((event) => [event.sequence, event.trigger])).toEqual([[1, "onStart"], [2, "manual"], [3, "beforeTask"]]);
    expect(checkpoints.slice(1).every((event) => String(event.actor).startsWith("user:"))).toBe(true);
  });

  it("a checkpoint made on the store is in the trail as it is written: a crash in a later afterCheckpoint tap loses neither", async () => {
    // A plugin whose afterCheckpoint tap, for a manual checkpoint, says so, then waits for ever: the command is killed there.
    const project = new Project("", "apex-task-trail-");
    const plugin = join(project.dir, "slow-after.mjs");
    const reached = join(project.dir, "after-reached");
    writeFileSync(plugin, `import { existsSync, writeFileSync } from "node:fs";
export default { name: "slow-after", apply(apex) { apex.hooks.afterCheckpoint.tapPromise("slow-after", async (info) => { if (info.trigger !== "manual") return; writeFileSync(${JSON.stringify(reached)}, ""); await new Promise(() => {}); }); } };
`);
    project.writeConfig(["agents:", idle, "plugins:", "  checkpoint: {}", `  ${JSON.stringify(plugin)}: {}`, ""].join("\n"));
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project.status().session?.status === "interrupted");
    const create = project.apexAsync(["checkpoint", "create", "before the crash"]);
    await waitFor("the afterCheckpoint tap", () => existsSync(reached), 20_000);
    create.child.kill("SIGKILL");
    await create.done;
    const listed = JSON.parse(project.apex(["checkpoint", "list", "--json"]).stdout) as { items: Array<{ sequence: number; description: string }> };
    expect(listed.items.map((item) => [item.sequence, item.description])).toContainEqual([2, "before the crash"]);
    // Before: written in a batch of its own once the taps before it had run, the event was lost with the process.
    const checkpoints = events(project, ready.session_id).filter((event) => event.type === "checkpoint");
    expect(checkpoints.map((event) => [event.sequence, event.trigger])).toEqual([[1, "onStart"], [2, "manual"]]);
    expect(String(checkpoints[1]!.actor)).toMatch(/^user:/);
  });

  it("a running session's checkpoint is in the trail before the plugins' afterCheckpoint taps run: a supervisor killed in one loses no event", async () => {
    const project = new Project("", "apex-task-trail-");
    const plugin = join(project.dir, "slow-after.mjs");
    const reached = join(project.dir, "after-reached");
    writeFileSync(plugin, `import { writeFileSync } from "node:fs";
export default { name: "slow-after", apply(apex) { apex.hooks.afterCheckpoint.tapPromise("slow-after", async (info) => { if (info.trigger !== "manual") return; writeFileSync(${JSON.stringify(reached)}, ""); await new Promise(() => {}); }); } };
`);
    project.writeConfig(["agents:", idle, "plugins:", "  checkpoint: {}", `  ${JSON.stringify(plugin)}: {}`, ""].join("\n"));
    const ready = project.start();
    const create = project.apexAsync(["checkpoint", "create", "before the crash"]);
    await waitFor("the afterCheckpoint tap", () => existsSync(reached), 20_000);
    process.kill(ready.supervisor_pid, "SIGKILL");
    await create.done;
    await waitFor("the session to be interrupted", () => project.status().session?.status === "interrupted");
    // Before: recorded after the plugins' taps, the event was lost with the supervisor.
    const checkpoints = events(project, ready.session_id).filter((event) => event.type === "checkpoint");
    expect(checkpoints.map((event) => [event.sequence, event.trigger])).toEqual([[1, "onStart"], [2, "manual"]]);
  });

  it("a git sync of an interrupted session is in its trail once, not taken as old news by the supervisor that continues it", async () => {
    const project = gitProject(["checkpoint", "git", "history"]);
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project.status().session?.status === "interrupted");
    expect(project.apex(["session", "sync-git"]).status).toBe(0);
    const synced = () => events(project, ready.session_id).filter((event) => event.type === "git.synced");
    // Before: none, then or after the continue (its supervisor took the record as one it had seen).
    expect(synced()).toHaveLength(1);
    expect(synced()[0]).toMatchObject({ actor: "plugin:git", dirty: true, synced_at: expect.any(String) });
    project.start(["--continue", "last"]);
    // The supervisor looks for a new sync every second, and once more as the session stops (its onStop): a stop that
    // has returned is a look that was made, where a fixed 1.5 s could pass on a loaded machine before any look.
    expect(project.apex(["stop"]).status).toBe(0);
    expect(synced()).toHaveLength(1);
  });
});

