// The git state of checkpoints taken one after another by one process (a supervisor), whose
// `git status` runs through the git plugin's runner shell: every change made between two
// checkpoints shows in the second one, and the runner answers exactly what git answers, fails as
// runGit fails and leaves no process behind. Real git, real shells; the e2e part through the built
// CLI with a real supervisor.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ApexError } from "../core/errors.js";
import { runGit } from "../plugins/git/git.js";
import { locateHooks } from "../plugins/git/hooks.js";
import { GitRunner } from "../plugins/git/runner.js";
import { readWorkingTree } from "../plugins/git/state.js";
import { Project } from "./fixtures/agents/harness.js";
import { tempDir } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";

const { git } = isolatedGit("apex-git-runner-home-");

const cleanups: Array<() => void> = [];
// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function temp(): string {
  const { dir, cleanup } = tempDir("apex-git-runner-");
  cleanups.push(cleanup);
  return dir;
}

function runner(options: ConstructorParameters<typeof GitRunner>[0] = {}): GitRunner {
  const made = new GitRunner(options);
  cleanups.push(() => made.close());
  return made;
}

const STATUS = ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=normal", "--ignore-submodules=none"];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids of the processes in process group `pgid` (from /proc). */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      if (Number(fields[2]) === pgid) members.push(Number(entry));
    } catch {
      // ended meanwhile
    }
  }
  return members;
}

async function until(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("GitRunner", () => {
  it("runs the first call directly, later ones in its shell, with git's own answers", async () => {
    const dir = temp();
    initRepo(git, dir, { "a.txt": "a\n", "it's a file.txt": "q\n" });
    const run = runner();
    expect(run.pid).toBeUndefined();
    const first = await run.run(dir, STATUS);
    expect(run.pid).toBeUndefined(); // a one-off call starts no shell
    for (let i = 0; i < 3; i++) {
      writeFileSync(join(dir, `new ${i}.txt`), "x");
      const viaShell = await run.run(dir, [...STATUS, "--", "."]);
      expect(run.pid).toBeDefined();
      expect(viaShell).toEqual(await runGit(dir, [...STATUS, "--", "."]));
    }
    expect(first.stdout).toContain("# branch.head main\0");
    const shell = run.pid!;
    // Quoting, stderr and exit codes come through as git gives them.
    expect(await run.run(dir, ["log", "-1", "--format=%s it's \"quoted\" $HOME"])).toEqual({ exitCode: 0, stdout: "init it's \"quoted\" $HOME\n", stderr: "" });
    const failed = await run.run(dir, ["rev-parse", "--verify", "no-such-ref"]);
    expect(failed).toEqual(await runGit(dir, ["rev-parse", "--verify", "no-such-ref"]));
    expect(failed.exitCode).toBe(128);
    const outside = temp();
    expect(await run.run(outside, STATUS)).toMatchObject({ exitCode: 128, stderr: expect.stringMatching(/not a git repository/) });
    expect(run.pid).toBe(shell); // one shell for all of them
    // A directory that is gone is told apart, as runGit does.
    const missing = await run.run(join(dir, "gone"), STATUS).catch((error: unknown) => error);
    expect((missing as ApexError).code).toBe("APEX_E_NOT_A_REPOSITORY");
    run.close();
    await until("the shell to end", () => !alive(shell));
  });

  it("a call that times out ends the shell and the git it ran; the next call starts a new shell", async () => {
    const dir = temp();
    initRepo(git, dir, { "a.txt": "a\n" });
    const run = runner();
    await run.run(dir, ["rev-parse", "HEAD"]);
    await run.run(dir, ["rev-parse", "HEAD"]);
    const shell = run.pid!;
    const slow = await run.run(dir, ["-c", "alias.slow=!sleep 30", "slow"], { timeoutMs: 300 }).catch((error: unknown) => error);
    expect(slow).toBeInstanceOf(ApexError);
    expect((slow as ApexError).code).toBe("APEX_E_GIT_FAILED");
    expect((slow as ApexError).message).toMatch(/did not finish within/);
    await until("the shell's process group to end", () => groupMembers(shell).length === 0);
    expect((await run.run(dir, ["rev-parse", "HEAD"])).stdout.trim()).toBe(git(dir, "rev-parse", "HEAD"));
    expect(run.pid).not.toBe(shell);
  });

  it("answers right after its shell was killed, and when git is gone from PATH reports it as runGit does", async () => {
    const dir = temp();
    initRepo(git, dir, { "a.txt": "a\n" });
    const run = runner();
    await run.run(dir, STATUS);
    await run.run(dir, STATUS);
    const shell = run.pid!;
    process.kill(shell, "SIGKILL");
    await until("the shell to die", () => !alive(shell));
    writeFileSync(join(dir, "a.txt"), "changed\n");
    expect(await run.run(dir, STATUS)).toEqual(await runGit(dir, STATUS));
    const path = process.env.PATH;
    process.env.PATH = join(dir, "no-bin-here");
    try {
      const error = await run.run(dir, STATUS).catch((failure: unknown) => failure);
      expect((error as ApexError).code).toBe("APEX_E_GIT_UNAVAILABLE");
    } finally {
      process.env.PATH = path;
    }
    expect((await readWorkingTree(dir, { runner: run }))?.files).toEqual([{ status: " M", path: "a.txt" }]);
  });

  it("ends its shell after idleMs without a call", async () => {
    const dir = temp();
    initRepo(git, dir, { "a.txt": "a\n" });
    const run = runner({ idleMs: 300 });
    await run.run(dir, STATUS);
    await run.run(dir, STATUS);
    const shell = run.pid!;
    await until("the idle shell to end", () => run.pid === undefined && !alive(shell));
  });
});

describe("locateHooks: one git rev-parse", () => {
  it("finds the hooks of a work tree, of a bare repository, and refuses inside .git", async () => {
    const dir = temp();
    initRepo(git, dir, { "a.txt": "a\n" });
    const location = await locateHooks(dir, { scope: false });
    expect(location).toMatchObject({ hooksDir: join(dir, ".git", "hooks"), hooksPathScope: undefined });
    expect(location.repository).toBe(execFileSync("realpath", [dir], { encoding: "utf8" }).trim());
    git(dir, "config", "core.hooksPath", "shared");
    expect(await locateHooks(dir)).toMatchObject({ hooksDir: join(dir, "shared"), hooksPathScope: "local" });

    const bare = join(temp(), "bare.git");
    mkdirSync(bare);
    git(bare, "init", "-q", "--bare");
    const inBare = await locateHooks(bare, { scope: false });
    expect(inBare.repository).toBe(execFileSync("realpath", [bare], { encoding: "utf8" }).trim());
    expect(inBare.hooksDir).toBe(join(bare, "hooks"));

    const refused = await locateHooks(join(dir, ".git")).catch((error: unknown) => error);
    expect((refused as ApexError).code).toBe("APEX_E_GIT_FAILED");
    const none = await locateHooks(temp()).catch((error: unknown) => error);
    expect((none as ApexError).code).toBe("APEX_E_NOT_A_REPOSITORY");
  });
});

describe("git_state of a supervisor's checkpoints, one after another", () => {
  it("shows every change made since the checkpoint before", async () => {
    project = new Project("plugins:\n  checkpoint: {}\n  git: {}\n", "apex-git-runner-e2e-");
    const p = project;
    const dir = p.dir;
    initRepo(git, dir, { ".gitignore": ".apex/\n", "a.txt": "a\n" });
    const ready = p.start(["--task", "git state"]);
    const checkpoint = (name: string): unknown => {
      const created = p.apex(["checkpoint", "create", name]);
      expect(created.status, created.stderr).toBe(0);
      const shown = p.apex(["checkpoint", "show", "latest", "--json"]);
      expect(shown.status, shown.stderr).toBe(0);
      return (JSON.parse(shown.stdout) as { git_state: unknown }).git_state;
    };
    const head = () => git(dir, "rev-parse", "HEAD");
    const first = head();
    // A few clean checkpoints first: from the second on, the supervisor runs git through its runner.
    for (const name of ["clean 1", "clean 2", "clean 3"]) expect(checkpoint(name)).toEqual({ branch: "main", commit: first, dirty: false });

    writeFileSync(join(dir, "a.txt"), "b\n"); // same size, same second: only the content differs
    expect(checkpoint("edited")).toEqual({ branch: "main", commit: first, dirty: true });
    git(dir, "checkout", "--", "a.txt");
    expect(checkpoint("reverted")).toEqual({ branch: "main", commit: first, dirty: false });

    writeFileSync(join(dir, "new.txt"), "n\n");
    expect(checkpoint("untracked")).toEqual({ branch: "main", commit: first, dirty: true });
    git(dir, "add", "new.txt");
    expect(checkpoint("staged")).toEqual({ branch: "main", commit: first, dirty: true });
    git(dir, "commit", "-qm", "new");
    const second = head();
    expect(second).not.toBe(first);
    expect(checkpoint("committed")).toEqual({ branch: "main", commit: second, dirty: false });

    git(dir, "checkout", "-q", "-b", "other");
    expect(checkpoint("other branch")).toEqual({ branch: "other", commit: second, dirty: false });
    git(dir, "checkout", "-q", first);
    expect(checkpoint("detached")).toEqual({ branch: null, commit: first, dirty: false });
    git(dir, "checkout", "-q", "main");
    mkdirSync(join(dir, "empty"));
    expect(checkpoint("empty directory")).toEqual({ branch: "main", commit: second, dirty: false }); // git lists no empty directory
    writeFileSync(join(dir, "empty", "f.txt"), "f\n");
    expect(checkpoint("file in it")).toEqual({ branch: "main", commit: second, dirty: true });

    // The supervisor ran git through one runner shell, which ends with it.
    const shells = childShells(ready.supervisor_pid);
    expect(shells).toHaveLength(1);
    expect(p.apex(["stop"]).status).toBe(0);
    await until("the runner shell to end", () => !alive(shells[0]!));
  });
});

/** The runner shells (`/bin/sh -s`) among the children of `pid`. */
function childShells(pid: number): number[] {
  const shells: number[] = [];
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const children = existsSync(`/proc/${pid}/task/${task}/children`) ? readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim() : "";
    for (const child of children.split(/\s+/).filter(Boolean)) {
      try {
        if (readFileSync(`/proc/${child}/cmdline`, "utf8") === "/bin/sh\0-s\0") shells.push(Number(child));
      } catch {
        // ended meanwhile
      }
    }
  }
  return shells;
}
