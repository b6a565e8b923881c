// The git processes a supervisor runs on the start's way: each costs it a fork (a few ms of its
// CPU, docs/architecture.md "Start-up time"). The metrics plugin reads where each repository
// starts (`git status`) and the git plugin the state the first checkpoint records (`git status`);
// the first sample counts commits and changed lines since the start with git only when there is
// something to count (a tracked file that differs). Observed through a `git` first on PATH that
// logs its arguments and runs the real one.
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";

const realGit = execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim();

/** A project whose commands find a logging `git` first; `setup` runs real git in it. */
function projectWithGitLog(setup: (git: (...args: string[]) => string, dir: string) => void) {
  const project = new Project('agents:\n  worker:\n    command: sleep\n    args: ["1000"]\n', "apex-start-git-");
  const bin = join(project.dir, ".bin");
  mkdirSync(bin);
  const log = join(project.dir, ".git-calls");
  writeFileSync(join(bin, "git"), `#!/bin/sh\nprintf '%s %s\\n' "$PPID" "$1" >> '${log}'\nexec '${realGit}' "$@"\n`);
  chmodSync(join(bin, "git"), 0o755);
  const git = (...args: string[]) => execFileSync(realGit, ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false", ...args], { cwd: project.dir, encoding: "utf8" });
  git("init", "-q");
  writeFileSync(join(project.dir, ".gitignore"), ".apex/\n.bin/\n.git-calls\napex.config.yaml\n");
  setup(git, project.dir);
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const started = project.apex(["start", "--task", "t", "--json"], { env });
  expect(started.status, started.stderr).toBe(0);
  const pid = (JSON.parse(started.stdout) as { supervisor_pid: number }).supervisor_pid;
  const calls = readFileSync(log, "utf8").trim().split("\n").filter((line) => line.startsWith(`${pid} `)).map((line) => line.slice(`${pid} `.length));
  // Up to the first checkpoint's `git status`, the last one before the ready report (samples that come later run more).
  const second = calls.indexOf("status", calls.indexOf("status") + 1);
  return { project, env, beforeReady: calls.slice(0, second + 1), sessionId: (JSON.parse(started.stdout) as { session_id: string }).session_id };
}

describe("git on a supervisor's start", () => {
  it("is one git status for the metrics and one for the first checkpoint, in a clean repository and in one without a commit", () => {
    const clean = projectWithGitLog((git) => {
      git("add", ".gitignore");
      git("commit", "-q", "-m", "start");
    });
    expect(clean.beforeReady).toEqual(["status", "status"]);
    // Untracked files are no lines of code: nothing staged, nothing to diff.
    const unborn = projectWithGitLog((_git, dir) => writeFileSync(join(dir, "notes.txt"), "a\nb\n"));
    expect(unborn.beforeReady).toEqual(["status", "status"]);
  });

  it("diffs against the start commit when a tracked file differs, and the first sample counts its lines", () => {
    const { project, env, beforeReady } = projectWithGitLog((git, dir) => {
      writeFileSync(join(dir, "a.txt"), "one\n");
      git("add", ".gitignore", "a.txt");
      git("commit", "-q", "-m", "start");
      writeFileSync(join(dir, "a.txt"), "one\ntwo\nthree\n");
    });
    expect(beforeReady).toEqual(["status", "diff", "status"]);
    const metrics = JSON.parse(project.apex(["session", "metrics", "--json"], { env }).stdout) as { commits_made: number; lines_added: number; git: { repositories: Array<{ name: string; files_changed: number; error: string | null }> } };
    expect(metrics).toMatchObject({ commits_made: 0, lines_added: 2 });
    expect(metrics.git.repositories.find((repository) => repository.name === "project")).toMatchObject({ files_changed: 1, error: null });
  });
});
