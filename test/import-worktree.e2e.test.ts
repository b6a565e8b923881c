// A branch that ran in a git worktree, exported and imported into another project (as on another
// machine): it runs in this project's worktree, never the other project's. Through the built CLI,
// with real supervisors, agents, git and LMDB.
import { existsSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { tempDirs } from "./support/cleanup.js";
import { initRepo, isolatedGit } from "./support/git.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
const extra = tempDirs();

const { git } = isolatedGit("apex-import-wt-home-");

const config = ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while :; do sleep 0.5; done"]', "plugins:", "  checkpoint: {}", "  git: {}", "  archive: {}", ""].join("\n");

function gitProject(): Project {
  const project = new Project(config, "apex-import-wt-");
  initRepo(git, project.dir, { ".gitignore": ".apex/\n", "apex.config.yaml": config });
  return project;
}

describe("importing a branch that ran in a git worktree", () => {
  it("records this project's worktree for it, says so, and start --continue names that one (and the branch to bring) until it is made, then runs there", () => {
    const there = gitProject();
    there.start();
    expect(there.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(there.apex(["stop"]).status).toBe(0);
    const branched = there.apex(["session", "branch", "latest", "exp", "--worktree"]);
    expect(branched.status, branched.stderr).toBe(0);
    const theirs = `${there.dir}-exp`;
    extra.push(theirs);
    expect(existsSync(theirs)).toBe(true);
    const bundle = join(there.dir, "exp.apexbundle");
    expect(there.apex(["session", "export", "exp", "-o", bundle]).status).toBe(0);

    const here = gitProject();
    const ours = `${here.dir}-exp`;
    extra.push(ours);
    const imported = json<{ session_id: string; worktree: unknown }>(here.apex(["session", "import", bundle, "--json"]));
    expect(imported.worktree).toEqual({ path: ours, was: theirs, exists: false });
    const record = json<{ value: { worktree: { path: string; branch: string } } }>(here.apex(["memory", "show", `/sessions/history/${imported.session_id}`, "--json"]));
    expect(record.value.worktree).toMatchObject({ path: ours, branch: "apex/exp" });

    // Status says where it runs, and that it is not there yet.
    expect(json<{ session: { worktree: string } }>(here.apex(["status", "--session", "exp", "--json"])).session.worktree).toBe(ours);
    expect(here.apex(["status", "--session", "exp"]).stdout).toContain(`  worktree    ${ours} (not there: \`apex start --continue\` says how to make it)`);

    // Not made yet, its branch only in the other repository: the hint says to bring it, and names no path of the other project.
    const refused = here.apex(["start", "--continue", "exp"]);
    expect(refused.status).toBe(3);
    expect(refused.stderr).toContain(`Session exp was imported from another project, where it ran in the git worktree ${theirs}; its worktree here, ${ours}, is not made yet; nothing was started.`);
    expect(refused.stderr).toContain(`git fetch REMOTE apex/exp:apex/exp), then make the worktree: git worktree add "${ours}" apex/exp`);
    git(here.dir, "fetch", "-q", there.dir, "apex/exp:apex/exp");
    expect(here.apex(["start", "--continue", "exp"]).stderr).toContain(`Make it from the project: git worktree add "${ours}" apex/exp`);

    git(here.dir, "worktree", "add", "-q", ours, "apex/exp");
    // In that worktree, status is the branch's, as in a worktree `session branch --worktree` made here.
    const status = json<{ session: { name: string } | null; last_session: { name: string } | null }>(here.apex(["status", "--json"], { cwd: ours }));
    expect(status.session?.name ?? status.last_session?.name).toBe("exp");
    const ready = here.start(["--continue", "exp"]);
    expect(readlinkSync(`/proc/${ready.agents[0]!.pid}/cwd`)).toBe(ours);
    expect(here.apex(["stop", "--session", "exp"]).status).toBe(0);
  }, 60_000);
});
