// `apex start` and git with sessions side by side: `--continue … --git-checkout` checks out in the
// continued session's own git worktree (a branch made with --worktree) and in the project's tree
// for the session of that tree; and APEX's git hooks written by an older APEX are refreshed when a
// session starts, with a notice, while every other hook stays byte for byte. Through the built CLI,
// with real supervisors, agents, git worktrees, git hooks and LMDB.
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cleanEnv, Project } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const extra = tempDirs();

const { GIT_ENV, git } = isolatedGit("apex-start-git-home-");

const CONFIG = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins:", "  checkpoint: {}", "  git: {}", ""].join("\n");

function gitProject(prefix: string): { p: Project; dir: string } {
  project = new Project(CONFIG, prefix);
  const dir = project.dir;
  initRepo(git, dir, { ".gitignore": ".apex/\n" });
  return { p: project, dir };
}

interface Checkout {
  repository: string;
  branch: string;
  commit: string;
}

describe("apex start --continue --git-checkout with sessions side by side", () => {
  it("checks out in the branch session's own worktree, and in the project's tree for the project's session", () => {
    const { p, dir } = gitProject("apex-start-git-");
    const parent = mkdtempSync(join(tmpdir(), "apex-start-git-wt-"));
    extra.push(parent);
    const wt = join(parent, "alpha");
    const c0 = git(dir, "rev-parse", "HEAD");

    const main = p.start(["--task", "main line"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const branched = p.apex(["session", "branch", "latest", "alpha", "--worktree", wt]);
    expect(branched.status, branched.stderr).toBe(0);
    // A checkpoint asked for in alpha's worktree while alpha does not run is alpha's or none: it
    // went to main's supervisor and checkpointed main, printing main's id where alpha was meant.
    const mainCheckpoints = p.apex(["checkpoint", "list", "--session", main, "--json"]).stdout;
    const notRunning = p.apex(["checkpoint", "create", "in alpha's worktree"], { cwd: wt });
    expect(notRunning.status, notRunning.stdout).not.toBe(0);
    expect(notRunning.stdout).toBe("");
    expect(p.apex(["checkpoint", "list", "--session", main, "--json"]).stdout).toBe(mainCheckpoints);
    // The track moves on in its worktree; the project's tree has work of its own that is not committed.
    writeFileSync(join(wt, "alpha.txt"), "a\n");
    git(wt, "add", "alpha.txt");
    git(wt, "commit", "-qm", "work in alpha");
    const c1 = git(wt, "rev-parse", "HEAD");
    writeFileSync(join(dir, "scratch.txt"), "main's uncommitted work\n");

    // A dirty worktree refuses before anything runs: alpha stays stopped, nothing moves.
    writeFileSync(join(wt, "dirty.txt"), "x\n");
    const refused = p.apex(["start", "--continue", "alpha", "--git-checkout"]);
    expect(refused.status, refused.stderr).toBe(4);
    expect(refused.stderr).toContain("APEX_E_DIRTY_TREE");
    expect(refused.stderr).toContain("dirty.txt");
    expect(git(wt, "rev-parse", "HEAD")).toBe(c1);
    expect(git(wt, "branch", "--show-current")).toBe("apex/alpha");
    const list = () => json<Array<{ name: string | null; status: string; session_id: string }>>(p.apex(["session", "list", "--json"]));
    expect(list().find((item) => item.name === "alpha")?.status).not.toBe("active");
    unlinkSync(join(wt, "dirty.txt"));

    // alpha continues from its latest checkpoint (the branch point, at c0): the checkout is in its
    // worktree; main's tree (dirty, on main) and main's session are not touched.
    const alpha = json<{ session_id: string; git_checkout: Checkout }>(p.apex(["start", "--continue", "alpha", "--git-checkout", "--json"]));
    expect(alpha.git_checkout.commit).toBe(c0);
    expect(alpha.git_checkout.branch).toMatch(new RegExp(`^apex/${alpha.session_id}/checkpoint-\\d+$`));
    expect(git(wt, "rev-parse", "HEAD")).toBe(c0);
    expect(git(wt, "branch", "--show-current")).toBe(alpha.git_checkout.branch);
    expect(git(wt, "rev-parse", "apex/alpha")).toBe(c1);
    expect(existsSync(join(wt, "alpha.txt"))).toBe(false);
    expect(git(dir, "branch", "--show-current")).toBe("main");
    expect(readFileSync(join(dir, "scratch.txt"), "utf8")).toBe("main's uncommitted work\n");
    expect(list().filter((item) => item.status === "active").map((item) => item.session_id).sort()).toEqual([main, alpha.session_id].sort());
    // Its agents run on the checked-out code, and its checkpoints record it.
    const created = p.apex(["checkpoint", "create", "after checkout"], { cwd: wt });
    expect(created.stdout, created.stderr).toMatch(/^Created checkpoint-\d{3} \([0-9a-f-]{36}\) of session alpha\.$/m);
    const state = json<{ git_state: { branch: string; commit: string } }>(p.apex(["checkpoint", "show", "latest", "--session", "alpha", "--json"])).git_state;
    expect(state).toMatchObject({ branch: alpha.git_checkout.branch, commit: c0 });

    // The project's session shares the project's tree: its checkout happens there, alpha's worktree stays.
    expect(p.apex(["--session", main, "stop"]).status).toBe(0);
    const mainState = json<{ git_state: { commit: string } }>(p.apex(["checkpoint", "show", "latest", "--session", main, "--json"])).git_state;
    git(dir, "add", "scratch.txt");
    git(dir, "commit", "-qm", "main moves on");
    const m1 = git(dir, "rev-parse", "HEAD");
    expect(mainState.commit).not.toBe(m1);
    const again = json<{ session_id: string; git_checkout: Checkout }>(p.apex(["start", "--continue", main, "--git-checkout", "--json"]));
    expect(again.session_id).toBe(main);
    expect(again.git_checkout).toMatchObject({ commit: mainState.commit });
    expect(git(dir, "rev-parse", "HEAD")).toBe(mainState.commit);
    expect(git(dir, "branch", "--show-current")).toBe(again.git_checkout.branch);
    expect(git(dir, "rev-parse", "main")).toBe(m1);
    expect(git(wt, "branch", "--show-current")).toBe(alpha.git_checkout.branch);

    // Without --continue there is nothing to check out.
    const usage = p.apex(["start", "--task", "x", "--git-checkout"]);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain("APEX_E_USAGE");
  }, 300_000);
});

describe("apex start refreshes APEX's out-of-date git hooks", () => {
  it("rewrites only APEX's stale hooks, says so once, and leaves the user's hooks byte for byte", () => {
    const { p, dir } = gitProject("apex-start-hooks-");
    const hooks = join(dir, ".git", "hooks");
    // The user's pre-commit is there before APEX (wrapped, kept as .apex-orig); post-commit is theirs alone.
    writeFileSync(join(hooks, "pre-commit"), "#!/bin/sh\necho user pre-commit\n", { mode: 0o755 });
    writeFileSync(join(hooks, "post-commit"), "#!/bin/sh\necho user post-commit\n", { mode: 0o755 });
    const installed = p.apex(["git", "install-hooks"]);
    expect(installed.status, installed.stderr).toBe(0);
    const read = (hook: string) => readFileSync(join(hooks, hook), "utf8");
    const fresh = { "pre-commit": read("pre-commit"), "reference-transaction": read("reference-transaction"), "pre-merge-commit": read("pre-merge-commit") };
    // pre-rebase: the user replaced APEX's with their own (not an APEX hook any more).
    writeFileSync(join(hooks, "pre-rebase"), "#!/bin/sh\necho user pre-rebase\n");
    chmodSync(join(hooks, "pre-rebase"), 0o755);
    // Two hooks as an older APEX wrote them: without APEX_WORKTREE.
    for (const hook of ["pre-commit", "reference-transaction"] as const) {
      expect(fresh[hook]).toContain("APEX_WORKTREE");
      writeFileSync(join(hooks, hook), fresh[hook].split("\n").filter((line) => !line.includes("APEX_WORKTREE")).join("\n"));
    }
    const untouched = ["pre-commit.apex-orig", "post-commit", "pre-rebase"].map((name) => [name, readFileSync(join(hooks, name))] as const);

    const started = p.apex(["start", "--task", "hooks", "--json"]);
    expect(started.status, started.stderr).toBe(0);
    const notice = started.stderr
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { notice?: { git_hooks_refreshed?: string[]; hooks_dir?: string } })
      .find((line) => line.notice?.git_hooks_refreshed);
    expect(notice?.notice).toEqual({ git_hooks_refreshed: ["pre-commit", "reference-transaction"], hooks_dir: hooks });
    expect(read("pre-commit")).toBe(fresh["pre-commit"]);
    expect(read("reference-transaction")).toBe(fresh["reference-transaction"]);
    expect(read("pre-merge-commit")).toBe(fresh["pre-merge-commit"]);
    expect(statSync(join(hooks, "pre-commit")).mode & 0o111).toBe(0o111);
    for (const [name, bytes] of untouched) expect(readFileSync(join(hooks, name)).equals(bytes), name).toBe(true);
    // The refreshed hook works: a commit fires beforeGit (with the user's hook run first).
    const session = json<{ session: { session_id: string } }>(p.apex(["status", "--json"])).session.session_id;
    writeFileSync(join(dir, "f.txt"), "f\n");
    git(dir, "add", "f.txt");
    const commit = spawnSync("git", ["commit", "-qm", "f"], { cwd: dir, encoding: "utf8", env: { ...cleanEnv(), ...GIT_ENV } });
    expect(commit.status, commit.stderr).toBe(0);
    expect(commit.stdout + commit.stderr).toContain("user pre-commit");
    const triggers = json<{ items: Array<{ trigger: string }> }>(p.apex(["checkpoint", "list", "--session", session, "--json"])).items.map((item) => item.trigger);
    expect(triggers).toContain("beforeGit");

    // Up to date now: the next start says nothing and changes nothing.
    expect(p.apex(["stop"]).status).toBe(0);
    const next = p.apex(["start", "--continue", session]);
    expect(next.status, next.stderr).toBe(0);
    expect(next.stderr).not.toContain("refreshed APEX's git hooks");
    expect(read("pre-commit")).toBe(fresh["pre-commit"]);
    for (const [name, bytes] of untouched) expect(readFileSync(join(hooks, name)).equals(bytes), name).toBe(true);

    // In text, the notice says what was done.
    expect(p.apex(["stop"]).status).toBe(0);
    writeFileSync(join(hooks, "pre-merge-commit"), fresh["pre-merge-commit"].replace("apex_timeout=", "apex_timeout_old=\napex_timeout="));
    const text = p.apex(["start", "--continue", session]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stderr).toContain(`notice: refreshed APEX's git hooks pre-merge-commit in ${hooks}`);
    expect(text.stderr).toContain("other hooks there are left as they are");
    expect(read("pre-merge-commit")).toBe(fresh["pre-merge-commit"]);
  }, 300_000);
});
