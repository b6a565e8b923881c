// beforeGit with sessions side by side: a git operation in a branch's worktree (by its agent, by a
// user there, or through `apex git --`) fires beforeGit, and takes its checkpoint, in that branch's
// session with that worktree's git state; one in the project's own tree fires in the project's
// session. Through the built CLI, with real supervisors, agents, git hooks, LMDB and git.
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const extra = tempDirs();

const { GIT_ENV, git } = isolatedGit("apex-sbs-git-home-");

// An agent that commits once in a branch's worktree (where .git is a file), then idles.
const agent = [
  "agents:",
  "  committer:",
  "    command: sh",
  `    args: ["-c", "if [ -f .git ]; then echo x > agent.txt && git add agent.txt && git commit -qm \\"agent in $(basename $(pwd))\\"; fi; while true; do sleep 0.5; done"]`,
].join("\n");

interface Item {
  name: string;
  trigger: string;
}

describe("beforeGit in the session bound to the git operation", () => {
  it("fires in a branch's session for git in its worktree, with the worktree's git state, and in main's for git in the project", async () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git:\n    hooks: true\n    hook_timeout: 120\n`, "apex-sbs-git-");
    const p = project;
    const dir = p.dir;
    initRepo(git, dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-sbs-git-wt-"));
    extra.push(parent);
    const wt = join(parent, "alpha");

    const main = p.start(["--task", "main line"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "alpha", "--worktree", wt]).status).toBe(0);
    const alpha = p.start(["--continue", "alpha"]).session_id;

    const beforeGit = (session: string) => json<{ items: Item[] }>(p.apex(["checkpoint", "list", "--session", session, "--json"])).items.filter((item) => item.trigger === "beforeGit");
    // Creating the branch (`git worktree add -b` in the project) may have fired in main already.
    const mainBefore = beforeGit(main);
    const gitStateOf = (session: string, item: Item) => json<{ git_state: { branch: string; commit: string } }>(p.apex(["checkpoint", "show", item.name, "--session", session, "--json"])).git_state;

    // 1. The branch's agent commits in its worktree: its hook fires in alpha, not in main.
    await waitFor("the agent's commit", () => git(wt, "log", "-1", "--format=%s") === "agent in alpha", 60_000);
    const byAgent = await waitFor("alpha's beforeGit checkpoint", () => beforeGit(alpha).length === 1 && beforeGit(alpha), 30_000);
    expect(gitStateOf(alpha, byAgent[0]!)).toMatchObject({ branch: "apex/alpha" });
    expect(beforeGit(main)).toEqual(mainBefore);

    // 2. A user commits in the worktree (no APEX variables): the hook binds the worktree's session.
    const head = git(wt, "rev-parse", "HEAD");
    writeFileSync(join(wt, "user.txt"), "u\n");
    git(wt, "add", "user.txt");
    git(wt, "commit", "-qm", "user in alpha");
    const byUser = beforeGit(alpha);
    expect(byUser).toHaveLength(2);
    expect(gitStateOf(alpha, byUser[0]!)).toEqual({ branch: "apex/alpha", commit: head, dirty: true });
    expect(beforeGit(main)).toEqual(mainBefore);

    // 3. `apex git --` in the worktree runs git there and fires in alpha.
    const viaApex = p.apex(["git", "--", "commit", "-q", "--allow-empty", "-m", "apex in alpha"], { cwd: wt, env: GIT_ENV });
    expect(viaApex.status, viaApex.stderr).toBe(0);
    expect(git(wt, "log", "-1", "--format=%s")).toBe("apex in alpha");
    expect(git(dir, "log", "-1", "--format=%s")).toBe("init");
    expect(beforeGit(alpha)).toHaveLength(3);
    expect(beforeGit(main)).toEqual(mainBefore);

    // 4. In the project's own tree: main, with the project's git state.
    const mainHead = git(dir, "rev-parse", "HEAD");
    git(dir, "commit", "-q", "--allow-empty", "-m", "user in main");
    const inMain = beforeGit(main);
    expect(inMain).toHaveLength(mainBefore.length + 1);
    expect(gitStateOf(main, inMain[0]!)).toMatchObject({ branch: "main", commit: mainHead });
    expect(beforeGit(alpha)).toHaveLength(3);

    // 5. Any checkpoint of alpha records its worktree's git state; sync-git there reads alpha's.
    const created = p.apex(["checkpoint", "create", "alpha now"], { cwd: wt });
    expect(created.status, created.stderr).toBe(0);
    // The session by its name, as the other commands print it (it printed alpha's whole id).
    expect(created.stdout).toMatch(/^Created checkpoint-\d{3} \([0-9a-f-]{36}\) of session alpha\.\n/);
    expect(json<{ session_id: string; session_name: string | null }>(p.apex(["checkpoint", "create", "alpha again", "--json"], { cwd: wt }))).toMatchObject({ session_id: alpha, session_name: "alpha" });
    const latest = json<{ git_state: { branch: string; commit: string } }>(p.apex(["checkpoint", "show", "latest", "--session", alpha, "--json"]));
    expect(latest.git_state).toMatchObject({ branch: "apex/alpha", commit: git(wt, "rev-parse", "HEAD") });
    const synced = json<{ session_id: string; repository: string; git: { branch: string } }>(p.apex(["session", "sync-git", "--json"], { cwd: wt }));
    expect(synced).toMatchObject({ session_id: alpha, repository: wt, git: { branch: "apex/alpha" } });
    expect(existsSync(join(dir, "agent.txt"))).toBe(false);
  }, 300_000);
});
