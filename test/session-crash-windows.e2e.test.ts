// A supervisor killed at an odd instant of a session's life: nothing it started may be left running
// unseen, and what status reports must match what runs. Real processes; every one a test starts is
// ended by pid or process group (fixtures/agents/harness.ts).
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { isolatedGit } from "./support/git.js";

const { git } = isolatedGit("apex-crash-windows-git-");

/**
 * An agent that kills its supervisor (its parent) the instant it starts, the first time only: the
 * supervisor dies between spawning it and recording its pid.
 */
const killsSupervisorOnce = shellAgents({ worker: "[ -e first ] || kill -9 $PPID; : > first; while :; do sleep 0.2; done" }, "session:\n  auto_recovery: false\n");

describe("a supervisor killed between an agent's spawn and its record", () => {
  it("status names the agent's process as left running, and start --continue reaps it: one worker runs, not two", () => {
    const project = new Project(killsSupervisorOnce);
    const start = project.apex(["start", "--task", "crash at spawn", "--json"]);
    expect(start.status).toBe(1);
    expect(JSON.parse(start.stderr).error.code).toBe("APEX_E_PROCESS");

    const status = project.status();
    expect(status.session!.status).toBe("interrupted");
    const worker = status.agents.find((agent) => agent.name === "worker")!;
    // Before, the record had no pid: the agent showed as gone and "No agent process is left running", while it ran.
    expect(worker.status).toBe("orphaned");
    expect(worker.pid).toBeGreaterThan(0);
    expect(status.left_running).toEqual([expect.objectContaining({ agent: "worker", pids: expect.arrayContaining([worker.pid]) })]);
    const orphan = worker.pid!;

    const continued = project.start(["--continue", "last"]);
    expect(continued.reaped).toEqual([expect.objectContaining({ agent: "worker", pids: expect.arrayContaining([orphan]) })]);
    expect(project.alive(orphan)).toBe(false);
    expect(project.status().agents.map((agent) => [agent.name, agent.status])).toEqual([["worker", "running"]]);
  });

  it("apex stop of the interrupted session ends that agent's process too", () => {
    const project = new Project(killsSupervisorOnce);
    expect(project.apex(["start", "--task", "crash at spawn"]).status).toBe(1);
    const orphan = project.status().agents[0]!.pid!;
    expect(orphan).toBeGreaterThan(0);
    const stop = project.apex(["stop", "--force", "--json"]);
    expect(stop.status, stop.stderr).toBe(0);
    expect(JSON.parse(stop.stdout).processes_ended).toBeGreaterThanOrEqual(1);
    expect(project.alive(orphan)).toBe(false);
  });
});

describe("apex stop --force of a supervisor that does not answer (SIGSTOP, as a machine put to sleep)", () => {
  it("records that it was killed, not that it was not running", () => {
    const project = new Project(shellAgents({ worker: "while :; do sleep 0.2; done" }));
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGSTOP");
    const stop = project.apex(["stop", "--force", "--json"]);
    expect(stop.status, stop.stderr).toBe(0);
    const said = `stopped by the user (its supervisor, pid ${ready.supervisor_pid}, did not answer and was killed)`;
    // Before, the text said it was killed while --json, the history and `apex status` said "the supervisor was not running".
    expect(JSON.parse(stop.stdout).reason).toBe(said);
    const status = project.apex(["status", "--json"]);
    expect(JSON.parse(status.stdout).last_session).toMatchObject({ session_id: ready.session_id, outcome: said });
    expect(project.alive(ready.supervisor_pid)).toBe(false);
  });
});

describe("start --continue CHECKPOINT --git-checkout in a repository where apex.config.yaml is not committed", () => {
  it("checks the commit out, leaving the config as it is: it was refused as an uncommitted change, and the hint's stash took the config away", () => {
    const project = new Project(shellAgents({ worker: "while :; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins: {checkpoint: {}, git: {}}\n"));
    git(project.dir, "init", "-q", "-b", "main");
    writeFileSync(join(project.dir, "f"), "a\n");
    git(project.dir, "add", "f");
    git(project.dir, "commit", "-qm", "A");
    const first = git(project.dir, "rev-parse", "HEAD");
    project.start();
    const saved = JSON.parse(project.apex(["checkpoint", "create", "at A", "--json"]).stdout) as { name: string };
    writeFileSync(join(project.dir, "f"), "b\n");
    git(project.dir, "commit", "-qam", "B");
    expect(project.apex(["stop"]).status).toBe(0);
    const continued = project.apex(["start", "--continue", saved.name, "--git-checkout", "--json"]);
    expect(continued.status, continued.stderr).toBe(0);
    expect(git(project.dir, "rev-parse", "HEAD")).toBe(first);
    expect(existsSync(join(project.dir, "apex.config.yaml"))).toBe(true);
    expect(project.status().agents.map((agent) => agent.name)).toEqual(["worker"]);
  });

  it("still refuses when the commit has a file where the untracked config is", () => {
    const project = new Project(shellAgents({ worker: "while :; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins: {checkpoint: {}, git: {}}\n"));
    git(project.dir, "init", "-q", "-b", "main");
    git(project.dir, "add", "apex.config.yaml");
    git(project.dir, "commit", "-qm", "A, with the config");
    project.start();
    const saved = JSON.parse(project.apex(["checkpoint", "create", "at A", "--json"]).stdout) as { name: string };
    git(project.dir, "rm", "-q", "--cached", "apex.config.yaml");
    git(project.dir, "commit", "-qm", "B, the config no longer committed");
    expect(project.apex(["stop"]).status).toBe(0);
    const continued = project.apex(["start", "--continue", saved.name, "--git-checkout", "--json"]);
    expect(continued.status).toBe(4);
    expect(JSON.parse(continued.stderr).error).toMatchObject({ code: "APEX_E_DIRTY_TREE", message: expect.stringContaining("?? apex.config.yaml") });
  });
});

describe("resume of a session whose agent's restart came due while it was paused", () => {
  it("names the agent it restarts", async () => {
    const project = new Project(shellAgents({ worker: "while :; do sleep 0.2; done" }).replace("plugins: {}\n", "    restart_delay: 0.2\nplugins: {}\n"));
    const ready = project.start();
    expect(project.apex(["pause"]).status).toBe(0);
    process.kill(-ready.agents[0]!.pgid!, "SIGKILL");
    await waitFor("the agent's restart", () => project.status().agents[0]!.status === "restarting");
    // Past its restart_delay: due, it waits for the resume.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const resume = project.apex(["resume", "--json"]);
    expect(resume.status, resume.stderr).toBe(0);
    expect(JSON.parse(resume.stdout)).toMatchObject({ status: "active", processes: 0, restarted: ["worker"] });
    expect(project.status().agents[0]).toMatchObject({ status: "running", restarts: 1 });
    expect(project.apex(["pause"]).status).toBe(0);
    process.kill(-project.status().agents[0]!.pgid!, "SIGKILL");
    // The supervisor's own time to see the exit is not a fixed wait: a resume before it saw it continues a group it takes as running.
    const restarting = await waitFor("the agent's second restart", () => {
      const agent = project.status().agents[0]!;
      return agent.status === "restarting" && agent.restart_at ? agent : undefined;
    });
    // Past its restart_delay (counted from the exit): due, it waits for the resume.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(restarting.restart_at!) - Date.now()) + 200));
    // Before: "Resumed session …: 0 processes of 0 agents continued.", as if nothing had happened.
    expect(project.apex(["resume"]).stdout).toMatch(/: 0 processes of 0 agents continued; restarted worker \(its restart waited for the resume\)\.\n$/);
  });
});
