// Sessions of one project running side by side: two branches, each in its own git worktree with
// its own supervisor and agents, next to the main session; each one's memory writes unseen by the
// others until a merge. Through the built CLI, with real supervisors, agents, LMDB and git.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, procInfo, signalGroup, signalIfAlive, waitFor } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const extra = tempDirs();

const { git } = isolatedGit("apex-side-git-home-");

// A real agent process: it reports where it runs through `apex` (its supervisor's socket), adds a task, then idles.
const agent = [
  "agents:",
  "  writer:",
  "    command: sh",
  `    args: ["-c", "here=$(basename $(pwd)); apex memory set /track/$here '\\"'$APEX_SESSION_ID'\\"' && apex task add \\"work in $here\\" && pwd > ran-here.txt; while true; do sleep 0.5; done"]`,
].join("\n");

describe("branches run side by side", () => {
  it("two branches in their own worktrees run beside main, write memory the others do not see, and merge back", async () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git: {}\n`, "apex-side-");
    const p = project;
    const dir = p.dir;
    initRepo(git, dir, { ".gitignore": "ran-here.txt\n.apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-side-wt-"));
    extra.push(parent);
    const wtA = join(parent, "alpha");
    const wtB = join(parent, "beta");

    const started = p.start(["--task", "main line"]);
    const main = started.session_id;
    const mainPid = started.supervisor_pid;
    await waitFor("main's agent", () => existsSync(join(dir, "ran-here.txt")), 30_000);
    expect(p.apex(["memory", "set", "/shared", '"base"']).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "alpha", "--worktree", wtA]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "beta", "--worktree", wtB]).status).toBe(0);

    // Both branches start while main runs: nothing is stopped to make way.
    const a = p.start(["--continue", "alpha"]);
    const b = p.start(["--continue", "beta"]);
    expect(new Set([main, a.session_id, b.session_id]).size).toBe(3);
    expect(a.supervisor_pid).not.toBe(b.supervisor_pid);
    await waitFor("the branches' agents", () => existsSync(join(wtA, "ran-here.txt")) && existsSync(join(wtB, "ran-here.txt")), 30_000);
    expect(readFileSync(join(wtA, "ran-here.txt"), "utf8").trim()).toBe(wtA);
    const sessions = json<Array<{ session_id: string; status: string }>>(p.apex(["session", "list", "--json"]));
    for (const id of [main, a.session_id, b.session_id]) expect(sessions.find((session) => session.session_id === id)?.status).toBe("active");

    // Each agent's write is in its own session's memory only.
    const track = (session: string | undefined, path: string, cwd?: string) =>
      p.apex([...(session ? ["--session", session] : []), "memory", "show", path, "--json"], cwd ? { cwd } : {});
    await waitFor("alpha's write", () => track("alpha", "/track/alpha").status === 0, 30_000);
    await waitFor("beta's write", () => track("beta", "/track/beta").status === 0, 30_000);
    expect(json<{ value: string }>(track("alpha", "/track/alpha")).value).toBe(a.session_id);
    expect(track("alpha", "/track/beta").status).toBe(3);
    expect(track("beta", "/track/alpha").status).toBe(3);
    expect(track(undefined, "/track/alpha").status).toBe(3); // the project's working tree: main
    expect(track(undefined, "/track/beta").status).toBe(3);
    // In a worktree, commands act on its session without --session; /sessions/current answers for it.
    expect(json<{ value: string }>(track(undefined, "/track/alpha", wtA)).value).toBe(a.session_id);
    expect(track(undefined, "/track/beta", wtA).status).toBe(3);
    expect(json<{ value: { session_id: string } }>(track(undefined, "/sessions/current", wtB)).value.session_id).toBe(b.session_id);
    expect(json<{ value: { session_id: string } }>(track(undefined, "/sessions/current")).value.session_id).toBe(main);
    // A user write in one branch, unseen by the other and by main.
    expect(p.apex(["memory", "set", "/shared", '"alpha"'], { cwd: wtA }).status).toBe(0);
    expect(json<{ value: string }>(track("beta", "/shared")).value).toBe("base");
    expect(json<{ value: string }>(track(undefined, "/shared")).value).toBe("base");

    // Tasks each branch added have different ids (the branch's name is part of them).
    const tasks = (session: string) => json<Array<{ id: string; title: string }>>(p.apex(["--session", session, "task", "list", "--json"]));
    const alphaTask = tasks("alpha").find((task) => task.title === "work in alpha")!;
    const betaTask = tasks("beta").find((task) => task.title === "work in beta")!;
    expect(alphaTask.id).toMatch(/^t-\d{4}\.alpha$/);
    expect(betaTask.id).toMatch(/^t-\d{4}\.beta$/);

    // Merge both into the running main (through main's supervisor): the union, nothing confused.
    expect(p.apex(["--session", "alpha", "checkpoint", "create", "alpha done"]).status).toBe(0);
    expect(p.apex(["--session", "beta", "checkpoint", "create", "beta done"]).status).toBe(0);
    // Run from alpha's worktree (bound to alpha), the merge still goes to main's supervisor, main's one writer.
    const first = json<{ applied: string; writer_pid: number }>(p.apex(["session", "merge", "alpha", main, "--json"], { cwd: wtA }));
    expect(first.applied).toBe("live");
    expect(first.writer_pid).toBe(mainPid);
    expect(p.apex(["session", "merge", "beta", main, "--strategy", "ours", "--json"]).status).toBe(0);
    expect(json<{ value: string }>(track(undefined, "/track/alpha")).value).toBe(a.session_id);
    expect(json<{ value: string }>(track(undefined, "/track/beta")).value).toBe(b.session_id);
    expect(json<{ value: string }>(track(undefined, "/shared")).value).toBe("alpha");
    const merged = tasks(main);
    expect(merged.filter((task) => task.title === "work in alpha").map((task) => task.id)).toEqual([alphaTask.id]);
    expect(merged.filter((task) => task.title === "work in beta").map((task) => task.id)).toEqual([betaTask.id]);
    // The branches did not get main's or each other's state.
    expect(track("beta", "/track/alpha").status).toBe(3);

    const tree = p.apex(["session", "tree"]);
    expect(tree.status, tree.stderr).toBe(0);
    expect(tree.stdout).toContain("alpha");
    expect(tree.stdout).toContain("beta");

    // main's supervisor killed: main is interrupted and the project's tree is still bound to it. A write
    // there goes to the store, for main; never to a branch's supervisor, which takes `latest` and
    // `current` for its own session (it checkpointed alpha, branched from alpha's latest, merged into alpha).
    process.kill(mainPid, "SIGKILL");
    await waitFor("main interrupted", () => json<{ session: { status: string } }>(p.apex(["status", "--json"])).session.status === "interrupted", 30_000);
    expect(json<{ session_id: string }>(p.apex(["checkpoint", "create", "main, interrupted", "--json"])).session_id).toBe(main);
    expect(json<{ parent_checkpoint: { session_id: string } }>(p.apex(["session", "branch", "latest", "gamma", "--json"])).parent_checkpoint.session_id).toBe(main);
    expect(json<{ destination: { session_id: string } }>(p.apex(["session", "merge", "beta", "current", "--dry-run", "--json"])).destination.session_id).toBe(main);

    // With main stopped, the project's working tree is bound to nothing and two sessions are active: ambiguous.
    expect(p.apex(["stop"]).status).toBe(0);
    // A write that needs a session is refused so too, not done in whichever branch's supervisor answers first.
    const guessed = p.apex(["checkpoint", "create", "whose?"]);
    expect(guessed.status, guessed.stdout).toBe(2);
    expect(guessed.stderr).toContain("APEX_E_AMBIGUOUS_SESSION");
    const ambiguous = p.apex(["status"]);
    expect(ambiguous.status).toBe(2);
    expect(ambiguous.stderr).toContain("APEX_E_AMBIGUOUS_SESSION");
    expect(ambiguous.stderr).toContain("alpha");
    expect(ambiguous.stderr).toContain("beta");
    expect(p.apex(["memory", "show", "/track/alpha"]).status).toBe(2);
    // Named, or from a worktree, it is not.
    expect(json<{ session: { session_id: string } }>(p.apex(["--session", "beta", "status", "--json"])).session.session_id).toBe(b.session_id);
    expect(json<{ session: { session_id: string } }>(p.apex(["status", "--json"], { cwd: wtA })).session.session_id).toBe(a.session_id);
    expect(p.apex(["stop"], { cwd: wtA }).status).toBe(0);
    // One left: it is the only active one.
    expect(json<{ session: { session_id: string } }>(p.apex(["status", "--json"])).session.session_id).toBe(b.session_id);
  }, 240_000);

  it("a project in a subdirectory of its repository: the branch's agents and commands work in that subdirectory of its worktree", async () => {
    // The repository is p.dir; the project is p.dir/app (its store app/.apex, which the harness does not watch: stopped below by pid).
    project = new Project("", "apex-side-sub-");
    const p = project;
    rmSync(join(p.dir, "apex.config.yaml"));
    const app = join(p.dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "apex.config.yaml"), `${agent.replace(/args: .*/, `args: ["-c", "pwd > ran-here.txt; while true; do sleep 0.5; done"]`)}\nplugins:\n  checkpoint: {}\n  git: {}\n`);
    initRepo(git, p.dir, { ".gitignore": ".apex/\nran-here.txt\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-side-sub-wt-"));
    extra.push(parent);
    const worktree = join(parent, "sub");
    // Each with its start time, read as it runs: ended or not by the stops below, its pid may be another process's by then.
    const started: Array<{ pid: number; group: boolean; start: number | undefined }> = [];
    const start = (args: string[]) => {
      const ready = json<{ session_id: string; supervisor_pid: number; agents: Array<{ pgid: number | null }> }>(p.apex(["start", ...args, "--json"], { cwd: app }));
      for (const [pid, group] of [[ready.supervisor_pid, false], ...ready.agents.flatMap((agent) => (agent.pgid ? [[agent.pgid, true] as const] : []))] as const) started.push({ pid, group, start: procInfo(pid)?.startTime });
      return ready.session_id;
    };
    try {
      const main = start(["--task", "main line"]);
      expect(p.apex(["checkpoint", "create", "base"], { cwd: app }).status).toBe(0);
      expect(p.apex(["session", "branch", "latest", "sub", "--worktree", worktree], { cwd: app }).status).toBe(0);
      const sub = start(["--continue", "sub"]);
      await waitFor("the branch's agent", () => existsSync(join(worktree, "app", "ran-here.txt")), 30_000);
      expect(readFileSync(join(worktree, "app", "ran-here.txt"), "utf8").trim()).toBe(join(worktree, "app"));
      expect(existsSync(join(worktree, "ran-here.txt"))).toBe(false);
      // In the worktree's app/: the project's store, bound to the branch's session.
      expect(json<{ session: { session_id: string } }>(p.apex(["status", "--json"], { cwd: join(worktree, "app") })).session.session_id).toBe(sub);
      expect(p.apex(["memory", "set", "/from/branch", "1"], { cwd: join(worktree, "app") }).status).toBe(0);
      expect(p.apex(["--session", "sub", "memory", "show", "/from/branch"], { cwd: app }).status).toBe(0);
      expect(p.apex(["--session", main, "memory", "show", "/from/branch"], { cwd: app }).status).toBe(3);
      // The default worktree is beside the repository, not inside its working tree (../app-NAME).
      const beside = join(dirname(p.dir), `${basename(p.dir)}-other`);
      extra.push(beside);
      const other = json<{ worktree: { path: string } }>(p.apex(["session", "branch", "latest", "other", "--worktree", "--json"], { cwd: app }));
      expect(other.worktree.path).toBe(realpathSync(beside));
      expect(existsSync(join(p.dir, "app-other"))).toBe(false);
    } finally {
      for (const session of ["sub", undefined]) p.apex([...(session ? ["--session", session] : []), "stop", "--force"], { cwd: app, timeout: 30_000 });
      for (const { pid, group, start } of started) {
        // A group is ours while its leader is, or has none left (its id cannot be a new process's then).
        if (start === undefined) continue; // gone already when started
        if (!group) signalIfAlive(pid, "SIGKILL", start);
        else if ((procInfo(pid)?.startTime ?? start) === start) signalGroup(pid, "SIGKILL");
      }
    }
  }, 120_000);

  it("with branches running in their worktrees and the project's session ended, a plugin command that names its session runs: it was refused as ambiguous", () => {
    project = new Project(`${agent.replace(/args: .*/, `args: ["-c", "while true; do sleep 0.5; done"]`)}\nplugins:\n  checkpoint: {}\n  git: {}\n  archive: {}\n`, "apex-side-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-side-plugin-"));
    extra.push(parent);
    p.start(["--task", "main line"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    for (const name of ["alpha", "beta"]) expect(p.apex(["session", "branch", "latest", name, "--worktree", join(parent, name)]).status).toBe(0);
    const old = json<{ session_id: string }>(p.apex(["session", "branch", "latest", "old", "--json"])).session_id;
    expect(p.apex(["stop"]).status).toBe(0);
    p.start(["--continue", "alpha"]);
    p.start(["--continue", "beta"]);
    // "2 sessions of this project are active and nothing says which one is meant" (exit 2), for a command that says which.
    const archived = p.apex(["session", "archive", "old", "--json"]);
    expect(archived.status, archived.stderr).toBe(0);
    expect(json<{ archived: Array<{ session_id: string }> }>(archived).archived.map((session) => session.session_id)).toEqual([old]);
    // One that needs the session the command is bound to is still refused so, by the store.
    const sync = p.apex(["session", "sync-git"]);
    expect(sync.status).toBe(2);
    expect(sync.stderr).toContain("APEX_E_AMBIGUOUS_SESSION");
  }, 120_000);

  it("a command run with --config from a worktree of another repository goes through the project's supervisor", () => {
    project = new Project(`${agent.replace(/args: .*/, `args: ["-c", "while true; do sleep 0.5; done"]`)}\nplugins:\n  checkpoint: {}\n`, "apex-side-");
    const p = project;
    const main = p.start(["--task", "main line"]).session_id;
    // Another repository, and a linked worktree of it: where the command runs.
    const other = mkdtempSync(join(tmpdir(), "apex-side-other-"));
    extra.push(other);
    initRepo(git, join(other), { "readme.txt": "another repository\n" });
    const elsewhere = join(other, "..", `${basename(other)}-wt`);
    extra.push(elsewhere);
    git(other, "worktree", "add", "-q", "--detach", elsewhere);
    // The supervisor loaded the config when it started; a write made here would load it again,
    // and refuse it (exit 2): a write through the supervisor does not read it.
    writeFileSync(join(p.dir, "apex.config.yaml"), `${readFileSync(join(p.dir, "apex.config.yaml"), "utf8")}bogus: [\n`);
    const set = p.apex(["--config", join(p.dir, "apex.config.yaml"), "memory", "set", "/from/elsewhere", "1"], { cwd: elsewhere });
    expect(set.status, set.stderr).toBe(0);
    const status = json<{ session: { session_id: string } }>(p.apex(["--config", join(p.dir, "apex.config.yaml"), "status", "--json"], { cwd: elsewhere }));
    expect(status.session.session_id).toBe(main);
    expect(json<{ value: number }>(p.apex(["memory", "show", "/from/elsewhere", "--json"])).value).toBe(1);
  }, 120_000);

  it("a write in a worktree of the project that no branch runs in goes through the session it binds to, whose supervisor runs", () => {
    project = new Project(`${agent.replace(/args: .*/, `args: ["-c", "while true; do sleep 0.5; done"]`)}\nplugins:\n  checkpoint: {}\n`, "apex-side-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const main = p.start(["--task", "main line"]).session_id;
    const parent = mkdtempSync(join(tmpdir(), "apex-side-manual-"));
    extra.push(parent);
    const manual = join(parent, "manual");
    git(p.dir, "worktree", "add", "-q", "--detach", manual);
    // As above: a write made in this process would load the broken config and refuse (exit 2).
    writeFileSync(join(p.dir, "apex.config.yaml"), `${readFileSync(join(p.dir, "apex.config.yaml"), "utf8")}bogus: [\n`);
    const set = p.apex(["memory", "set", "/from/manual", "1"], { cwd: manual });
    expect(set.status, set.stderr).toBe(0);
    expect(json<{ session: { session_id: string } }>(p.apex(["status", "--json"], { cwd: manual })).session.session_id).toBe(main);
    expect(json<{ value: number }>(p.apex(["memory", "show", "/from/manual", "--json"])).value).toBe(1);
  }, 120_000);
});
