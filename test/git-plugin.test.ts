import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../core/config/load.js";
import { locateProject } from "../core/config/locate.js";
import type { CheckpointDraft } from "../core/engine.js";
import { ApexError } from "../core/errors.js";
import { loadPlugins } from "../core/plugins.js";
import { openStore } from "../core/store/open.js";
import { checkoutCheckpoint, restoreBranchName } from "../plugins/git/checkout.js";
import { compareGitState } from "../plugins/git/compare.js";
import { gitLimits } from "../plugins/git/git.js";
import { HOOK_MARKER } from "../plugins/git/hooks.js";
import { isReadOnlyGitCommand } from "../plugins/git/passthrough.js";
import { gitCommandOf } from "../plugins/git/repository.js";
import { projectRepository } from "../plugins/git/repository.js";
import { parseStatus } from "../plugins/git/state.js";
import { APEX_BIN, REPO_ROOT, cleanEnv, runApex, tempDir, type CliResult } from "./helpers/cli.js";
import { isolatedGit } from "./support/git.js";
import { waitFor } from "./fixtures/agents/harness.js";

const RECORDER = join(REPO_ROOT, "test/fixtures/git/record-before-git.mjs");
const HOOKS = ["pre-commit", "pre-merge-commit", "pre-rebase", "reference-transaction"];
const SESSION = "s-git-1";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function temp(prefix = "apex-git-"): string {
  const { dir, cleanup } = tempDir(prefix);
  cleanups.push(cleanup);
  return dir;
}

/**
 * Git on a bare machine, and never the developer's git config (a global core.hooksPath or
 * commit.gpgSign would change what the tests see): an empty global config, no system config.
 * Set on this process too: the in-process tests (git_state, compare, checkout) run git from it.
 */
const { GIT_ENV } = isolatedGit("apex-git-home-");

interface GitRun {
  status: number;
  stdout: string;
  stderr: string;
}

function gitRun(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): GitRun {
  const result = spawnSync("git", args, { cwd, env: { ...process.env, ...GIT_ENV, ...env }, encoding: "utf8", timeout: 60_000 });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

function git(cwd: string, ...args: string[]): string {
  const result = gitRun(cwd, args);
  if (result.status !== 0) throw new Error(`git ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  return result.stdout.trim();
}

function apex(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  return runApex(args, { cwd, env: { ...GIT_ENV, ...env } });
}

function commitFile(dir: string, file: string, text: string, message: string): string {
  writeFileSync(join(dir, file), text);
  git(dir, "add", file);
  git(dir, "commit", "-q", "--no-verify", "-m", message);
  return git(dir, "rev-parse", "HEAD");
}

interface ProjectOptions {
  /** Options of the git plugin, as YAML lines below `git:`. */
  gitOptions?: string[];
  /** Extra options of the recording plugin. */
  recorder?: string[];
  repo?: boolean;
  session?: boolean;
}

/**
 * A temp project: apex.config.yaml with the git plugin and a third-party plugin that records
 * every beforeGit in fired.log, a git repository (ignoring APEX's files), and a current session.
 */
async function project(options: ProjectOptions = {}): Promise<string> {
  const dir = temp();
  // Git gives up on a hook after hook_timeout (10 s by default); a loaded test machine can take
  // longer than that to start the CLI, so the tests allow more unless they set it themselves.
  const lines = options.gitOptions ?? [];
  const withTimeout = lines.some((line) => line.startsWith("hook_timeout")) ? lines : [...lines, "hook_timeout: 120"];
  const gitOptions = `\n${withTimeout.map((line) => `    ${line}`).join("\n")}`;
  const recorder = ["file: fired.log", ...(options.recorder ?? [])].map((line) => `    ${line}`).join("\n");
  writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n  git:${gitOptions}\n  ${RECORDER}:\n${recorder}\n`);
  if (options.repo !== false) {
    git(dir, "init", "-q", "-b", "main");
    writeFileSync(join(dir, ".gitignore"), ".apex/\nfired.log\nuser-hooks.log\n");
  }
  if (options.session !== false) await seed(dir, { "/sessions/current": { session_id: SESSION }, [`/sessions/${SESSION}`]: { session_id: SESSION, status: "active" } });
  return dir;
}

async function seed(dir: string, entries: Record<string, unknown>): Promise<void> {
  const store = await openStore(join(dir, ".apex"));
  try {
    await store.batch((batch) => {
      for (const [path, value] of Object.entries(entries)) batch.set(path, value as never);
    });
  } finally {
    await store.close();
  }
}

interface Fired {
  sessionId: string;
  args: string[];
  source: string;
}

function fired(dir: string): Fired[] {
  const file = join(dir, "fired.log");
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const { sessionId, args, source } = JSON.parse(line) as Fired;
      return { sessionId, args, source };
    });
}

function clearFired(dir: string): void {
  rmSync(join(dir, "fired.log"), { force: true });
}

function installHooks(dir: string): void {
  const result = apex(dir, ["git", "install-hooks"]);
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
}

/** Every file of a directory: name → [mode, symlink target or content]. */
function snapshot(dir: string): Record<string, [number, string]> {
  const files: Record<string, [number, string]> = {};
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const stat = lstatSync(path);
    files[name] = [stat.mode, stat.isSymbolicLink() ? `-> ${readlinkSync(path)}` : readFileSync(path).toString("base64")];
  }
  return files;
}

async function gitStateOf(dir: string): Promise<{ state: unknown; warnings: string[] }> {
  const warnings: string[] = [];
  const config = await loadConfig(locateProject({ cwd: dir, env: {} }), { env: {}, cwd: dir });
  const engine = await loadPlugins(config, { warn: (message) => warnings.push(message) });
  const draft: CheckpointDraft = { sessionId: SESSION, trigger: "manual", description: "", data: {} };
  const result = await engine.waterfall("beforeCheckpoint", draft);
  return { state: result.data.git_state, warnings };
}

function expectError(error: unknown, code: string, exitCode: number): ApexError {
  expect(error).toBeInstanceOf(ApexError);
  expect((error as ApexError).code).toBe(code);
  expect((error as ApexError).exitCode).toBe(exitCode);
  return error as ApexError;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe("git_state in every checkpoint (beforeCheckpoint)", () => {
  it("is null, without a warning, when the project is not in a git repository", async () => {
    const dir = await project({ repo: false, session: false });
    expect(await gitStateOf(dir)).toEqual({ state: null, warnings: [] });
  });

  it("on an unborn branch: the branch, no commit; untracked files make it dirty", async () => {
    const dir = temp();
    git(dir, "init", "-q", "-b", "main");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit: null, dirty: false });
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  git: {}\n");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit: null, dirty: true });
    git(dir, "add", "apex.config.yaml");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit: null, dirty: true });
    git(dir, "commit", "-q", "-m", "config");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit: git(dir, "rev-parse", "HEAD"), dirty: false });
  });

  it("clean, then dirty by a staged, an unstaged and an untracked change", async () => {
    const dir = await project({ session: false });
    git(dir, "add", ".");
    git(dir, "commit", "-q", "-m", "one");
    const commit = git(dir, "rev-parse", "HEAD");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit, dirty: false });

    writeFileSync(join(dir, "untracked.txt"), "new\n");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit, dirty: true });
    rmSync(join(dir, "untracked.txt"));

    writeFileSync(join(dir, ".gitignore"), "changed\n");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit, dirty: true });
    git(dir, "add", ".gitignore");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "main", commit, dirty: true });
    git(dir, "commit", "-q", "-m", "two");
    expect((await gitStateOf(dir)).state).toMatchObject({ branch: "main", dirty: false });
  });

  it("on a detached HEAD: branch null", async () => {
    const dir = await project({ session: false });
    const first = commitFile(dir, "a.txt", "a\n", "a");
    commitFile(dir, "b.txt", "b\n", "b");
    git(dir, "checkout", "-q", "--detach", first);
    expect((await gitStateOf(dir)).state).toEqual({ branch: null, commit: first, dirty: true }); // apex.config.yaml, .gitignore: untracked
  });

  it("uses `repository`, relative to the project directory; a project inside a repository uses that repository", async () => {
    const dir = temp();
    mkdirSync(join(dir, "code"));
    git(join(dir, "code"), "init", "-q", "-b", "trunk");
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  git:\n    repository: code\n");
    expect((await gitStateOf(dir)).state).toEqual({ branch: "trunk", commit: null, dirty: false });

    const nested = join(dir, "code", "project");
    mkdirSync(nested);
    writeFileSync(join(nested, "apex.config.yaml"), "plugins:\n  git: {}\n");
    expect((await gitStateOf(nested)).state).toEqual({ branch: "trunk", commit: null, dirty: true });
  });

  it("is null with a warning, not an error, when git is missing", async () => {
    const dir = await project({ session: false });
    const path = process.env.PATH;
    process.env.PATH = join(dir, "no-bin-here");
    try {
      const { state, warnings } = await gitStateOf(dir);
      expect(state).toBeNull();
      expect(warnings).toEqual(["plugin git: no git state recorded: git is not installed (or not on PATH)."]);
    } finally {
      process.env.PATH = path;
    }
  });

  it("parses renames, spaces and conflicts from git status", async () => {
    const output = [
      "# branch.oid 0123456789abcdef0123456789abcdef01234567",
      "# branch.head feature/x",
      "# branch.upstream origin/feature/x",
      "1 .M N... 100644 100644 100644 aaaa aaaa with space.txt",
      "2 R. N... 100644 100644 100644 aaaa aaaa R100 new name.txt",
      "old name.txt",
      "u UU N... 100644 100644 100644 100644 aaaa bbbb cccc conflict.txt",
      "? untracked dir/",
      "",
    ].join("\0");
    expect(parseStatus(output)).toEqual({
      branch: "feature/x",
      commit: "0123456789abcdef0123456789abcdef01234567",
      dirty: true,
      files: [
        { status: " M", path: "with space.txt" },
        { status: "R ", path: "new name.txt", from: "old name.txt" },
        { status: "UU", path: "conflict.txt" },
        { status: "??", path: "untracked dir/" },
      ],
    });
  });
});

describe("apex git install-hooks / uninstall-hooks", () => {
  it("installs the four hooks and removes them again, leaving the hooks directory as it was", async () => {
    const dir = await project();
    const hooksDir = join(dir, ".git", "hooks");
    const before = snapshot(hooksDir);

    const installed = apex(dir, ["git", "install-hooks", "--json"]);
    expect(installed.status).toBe(0);
    const report = JSON.parse(installed.stdout);
    expect(report).toMatchObject({ repository: dir, hooks_dir: hooksDir, warnings: [] });
    expect(report.hooks.map((change: { hook: string; action: string }) => [change.hook, change.action])).toEqual(HOOKS.map((hook) => [hook, "installed"]));
    for (const hook of HOOKS) {
      const path = join(hooksDir, hook);
      expect(lstatSync(path).mode & 0o111).not.toBe(0);
      const script = readFileSync(path, "utf8");
      expect(script.split("\n")[1]).toBe(HOOK_MARKER);
      // absolute paths to this node and this APEX, captured at install time
      expect(script).toContain(`apex_node='${process.execPath}'`);
      expect(script).toContain(`apex_cli='${join(REPO_ROOT, "bin", "apex.js")}'`);
    }

    const again = apex(dir, ["git", "install-hooks", "--json"]);
    expect(JSON.parse(again.stdout).hooks.map((change: { action: string }) => change.action)).toEqual(["updated", "updated", "updated", "updated"]);

    const removed = apex(dir, ["git", "uninstall-hooks"]);
    expect(removed.status).toBe(0);
    expect(removed.stdout).toContain("pre-commit             removed\n");
    expect(snapshot(hooksDir)).toEqual(before);
    expect(existsSync(join(dir, ".git", "apex-hooks"))).toBe(false);

    const twice = apex(dir, ["git", "uninstall-hooks", "--json"]);
    expect(JSON.parse(twice.stdout).hooks.map((change: { action: string }) => change.action)).toEqual(["absent", "absent", "absent", "absent"]);
  });

  it("keeps the user's hooks running (same arguments, stdin and $0) and restores them byte for byte", async () => {
    const dir = await project();
    const hooksDir = join(dir, ".git", "hooks");
    const log = join(dir, "user-hooks.log");
    // A bash hook that finds its name from $0 (as husky's do), and can veto the commit.
    writeFileSync(
      join(hooksDir, "pre-commit"),
      `#!/usr/bin/env bash\necho "pre-commit \\$0=$(basename "$0") args=$#" >> "${log}"\n[ -e veto ] && { echo "vetoed by the user's hook" >&2; exit 7; }\nexit 0\n`,
    );
    chmodSync(join(hooksDir, "pre-commit"), 0o750);
    // A node hook reading the ref updates on stdin.
    writeFileSync(
      join(hooksDir, "reference-transaction"),
      `#!${process.execPath}\nconst fs = require("node:fs");\nconst input = fs.readFileSync(0, "utf8");\nfs.appendFileSync(${JSON.stringify(log)}, "reference-transaction " + process.argv[2] + " " + input.trim().split("\\n").map((line) => line.split(" ")[2]).join(",") + "\\n");\n`,
    );
    chmodSync(join(hooksDir, "reference-transaction"), 0o755);
    // A symlinked hook.
    writeFileSync(join(dir, "shared-pre-rebase.sh"), "#!/bin/sh\nexit 0\n");
    chmodSync(join(dir, "shared-pre-rebase.sh"), 0o755);
    symlinkSync(join(dir, "shared-pre-rebase.sh"), join(hooksDir, "pre-rebase"));
    const before = snapshot(hooksDir);

    const installed = apex(dir, ["git", "install-hooks"]);
    expect(installed.status).toBe(0);
    expect(installed.stdout).toContain("pre-commit             installed; the hook that was there runs first\n");
    expect(installed.stdout).toContain("pre-merge-commit       installed\n");
    expect(lstatSync(join(hooksDir, "pre-rebase.apex-orig")).isSymbolicLink()).toBe(true);

    git(dir, "add", ".gitignore");
    const commit = gitRun(dir, ["commit", "-q", "-m", "first"]);
    expect(commit.status).toBe(0);
    expect(readFileSync(log, "utf8")).toBe(
      "pre-commit $0=pre-commit args=0\nreference-transaction prepared HEAD,refs/heads/main\nreference-transaction committed HEAD,refs/heads/main\n",
    );
    expect(fired(dir)).toEqual([{ sessionId: SESSION, args: ["pre-commit"], source: "git-hook" }]);

    // The user's hook still vetoes: git fails with its message, and nothing fires.
    clearFired(dir);
    writeFileSync(join(dir, "veto"), "");
    git(dir, "add", "veto");
    const vetoed = gitRun(dir, ["commit", "-q", "-m", "vetoed"]);
    expect(vetoed.status).not.toBe(0);
    expect(vetoed.stderr).toContain("vetoed by the user's hook");
    expect(fired(dir)).toEqual([]);
    expect(git(dir, "rev-list", "--count", "HEAD")).toBe("1");

    const again = apex(dir, ["git", "install-hooks", "--json"]);
    expect(JSON.parse(again.stdout).hooks.map((change: { action: string }) => change.action)).toEqual(["updated", "updated", "updated", "updated"]);
    expect(readdirSync(hooksDir).filter((name) => name.endsWith(".apex-orig")).sort()).toEqual(["pre-commit.apex-orig", "pre-rebase.apex-orig", "reference-transaction.apex-orig"]);

    const removed = apex(dir, ["git", "uninstall-hooks", "--json"]);
    expect(JSON.parse(removed.stdout).hooks.map((change: { hook: string; action: string }) => [change.hook, change.action])).toEqual([
      ["pre-commit", "restored"],
      ["pre-merge-commit", "removed"],
      ["pre-rebase", "restored"],
      ["reference-transaction", "restored"],
    ]);
    expect(snapshot(hooksDir)).toEqual(before);
  });

  it("refuses to install over a hook replaced since an earlier install, and uninstall leaves both", async () => {
    const dir = await project();
    const hooksDir = join(dir, ".git", "hooks");
    writeFileSync(join(hooksDir, "pre-commit"), "#!/bin/sh\n# the user's first hook\n", { mode: 0o755 });
    installHooks(dir);
    writeFileSync(join(hooksDir, "pre-commit"), "#!/bin/sh\n# written by another tool since\n", { mode: 0o755 });

    const refused = apex(dir, ["git", "install-hooks"]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("error[APEX_E_HOOK_CONFLICT]");
    expect(refused.stderr).toContain("pre-commit.apex-orig, the hook an earlier install kept, is still there");
    // nothing changed: the other hooks are still APEX's, the two user files untouched
    expect(readFileSync(join(hooksDir, "pre-commit"), "utf8")).toContain("written by another tool");
    expect(readFileSync(join(hooksDir, "pre-commit.apex-orig"), "utf8")).toContain("the user's first hook");

    const removed = apex(dir, ["git", "uninstall-hooks", "--json"]);
    const report = JSON.parse(removed.stdout);
    expect(report.hooks[0]).toMatchObject({ hook: "pre-commit", action: "kept" });
    expect(report.warnings).toEqual([
      `${join(hooksDir, "pre-commit")} is not APEX's hook (it was replaced after APEX installed its own), so ${join(hooksDir, "pre-commit.apex-orig")} was left as it is: decide which one to keep.`,
    ]);
    expect(readdirSync(hooksDir).filter((name) => !name.endsWith(".sample")).sort()).toEqual(["pre-commit", "pre-commit.apex-orig"]);
  });

  it("fails with exit 3 outside a git repository", async () => {
    const dir = await project({ repo: false, session: false });
    for (const command of ["install-hooks", "uninstall-hooks"]) {
      const result = apex(dir, ["git", command]);
      expect(result.status).toBe(3);
      expect(result.stderr).toContain(`error[APEX_E_NOT_A_REPOSITORY]`);
      expect(result.stderr).toContain(`No git repository at ${dir}: it is not inside a git repository.`);
    }
  });

  it("honours core.hooksPath", async () => {
    const dir = await project();
    git(dir, "config", "core.hooksPath", "shared-hooks");
    const installed = apex(dir, ["git", "install-hooks", "--json"]);
    expect(installed.status).toBe(0);
    const report = JSON.parse(installed.stdout);
    expect(report.hooks_dir).toBe(join(dir, "shared-hooks"));
    expect(report.warnings).toEqual([`The hooks directory ${join(dir, "shared-hooks")} is inside the working tree: git status shows the hooks APEX adds there.`]);
    expect(readdirSync(join(dir, ".git", "hooks")).every((name) => name.endsWith(".sample"))).toBe(true);

    git(dir, "add", ".gitignore");
    git(dir, "commit", "-q", "-m", "one");
    expect(fired(dir)).toEqual([{ sessionId: SESSION, args: ["pre-commit"], source: "git-hook" }]);

    // A hooks directory git ignores (husky's .husky/_ has a .gitignore of `*`): git status shows nothing, nor does the warning say so.
    writeFileSync(join(dir, "shared-hooks", ".gitignore"), "*\n");
    const ignored = apex(dir, ["git", "install-hooks", "--json"]);
    expect(JSON.parse(ignored.stdout).warnings).toEqual([]);
    expect(git(dir, "status", "--porcelain", "--", "shared-hooks")).toBe("");
  });
});

describe("apex git install-hooks: a hooks directory the repository tracks", () => {
  it("refuses to put APEX's hook in place of a hook git tracks, changing nothing", async () => {
    const dir = await project();
    mkdirSync(join(dir, ".githooks"));
    writeFileSync(join(dir, ".githooks", "pre-commit"), "#!/bin/sh\necho team hook\n", { mode: 0o755 });
    git(dir, "add", ".gitignore", ".githooks", "apex.config.yaml");
    git(dir, "commit", "-q", "-m", "team hooks");
    git(dir, "config", "core.hooksPath", ".githooks");
    const before = snapshot(join(dir, ".githooks"));
    const refused = apex(dir, ["git", "install-hooks"]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain(`error[APEX_E_HOOK_CONFLICT]: ${join(dir, ".githooks", "pre-commit")} is tracked by git`);
    expect(snapshot(join(dir, ".githooks"))).toEqual(before);
    expect(git(dir, "status", "--porcelain")).toBe("");
  });
});

describe("hooks: true", () => {
  async function startSession(dir: string): Promise<string[]> {
    const warnings: string[] = [];
    const config = await loadConfig(locateProject({ cwd: dir, env: {} }), { env: {}, cwd: dir });
    const engine = await loadPlugins(config, { warn: (message) => warnings.push(message) });
    await engine.fire("onStart", { sessionId: SESSION, session: { session_id: SESSION, status: "active" } });
    return warnings;
  }

  it("installs the hooks when a session starts, and only warns without a repository", async () => {
    const dir = await project({ gitOptions: ["hooks: true"] });
    expect(await startSession(dir)).toEqual([]);
    for (const hook of HOOKS) expect(readFileSync(join(dir, ".git", "hooks", hook), "utf8").split("\n")[1]).toBe(HOOK_MARKER);
    git(dir, "add", ".gitignore");
    git(dir, "commit", "-q", "-m", "one");
    expect(fired(dir)).toEqual([{ sessionId: SESSION, args: ["pre-commit"], source: "git-hook" }]);

    const off = await project();
    expect(await startSession(off)).toEqual([]);
    expect(readdirSync(join(off, ".git", "hooks")).every((name) => name.endsWith(".sample"))).toBe(true);

    const norepo = await project({ repo: false, gitOptions: ["hooks: true"] });
    expect(await startSession(norepo)).toEqual([`plugin git: git hooks not installed: No git repository at ${norepo}: it is not inside a git repository.`]);
  });
});

describe("git operations fire beforeGit through the hooks", () => {
  it("a commit fires once; `git checkout -b` fires once; read-only commands never", async () => {
    const dir = await project();
    installHooks(dir);
    git(dir, "add", ".gitignore");
    git(dir, "commit", "-q", "-m", "one");
    expect(fired(dir)).toEqual([{ sessionId: SESSION, args: ["pre-commit"], source: "git-hook" }]);

    clearFired(dir);
    git(dir, "checkout", "-q", "-b", "feature");
    expect(fired(dir)).toEqual([{ sessionId: SESSION, args: ["reference-transaction", "prepared", "refs/heads/feature"], source: "git-hook" }]);

    clearFired(dir);
    for (const args of [["status"], ["log", "--oneline"], ["diff"], ["branch", "--list"], ["show", "--stat"], ["rev-parse", "HEAD"], ["gc", "-q"]]) git(dir, ...args);
    expect(fired(dir)).toEqual([]);
  });

  it("merges, fast-forwards, rebases, resets and commits without pre-commit fire once each", async () => {
    const dir = await project();
    installHooks(dir);
    commitFile(dir, ".gitignore", ".apex/\nfired.log\n", "base");
    git(dir, "checkout", "-q", "-b", "topic");
    commitFile(dir, "topic.txt", "t\n", "topic");
    git(dir, "checkout", "-q", "main");
    commitFile(dir, "main.txt", "m\n", "main");

    const cases: Array<[string[], string[]]> = [
      [["merge", "-q", "--no-edit", "topic"], ["pre-merge-commit"]],
      [["checkout", "-q", "topic"], []], // switching to an existing branch: git 2.39 runs no hook before it
      [["rebase", "-q", "main"], ["pre-rebase", "main"]],
      [["reset", "-q", "--hard", "HEAD~1"], ["reference-transaction", "prepared", "HEAD", "refs/heads/topic"]],
      [["merge", "-q", "--ff-only", "main"], ["reference-transaction", "prepared", "HEAD", "refs/heads/topic"]],
      [["commit", "-q", "--no-verify", "--allow-empty", "-m", "skip"], ["reference-transaction", "prepared", "HEAD", "refs/heads/topic"]],
      [["branch", "-q", "-D", "main"], []],
    ];
    for (const [args, expected] of cases) {
      clearFired(dir);
      git(dir, ...args);
      expect([args, fired(dir).map((event) => event.args)]).toEqual([args, expected.length ? [expected] : []]);
    }
  });

  it("fires nothing outside a session, and nothing when APEX already fired for the operation", async () => {
    const dir = await project({ session: false });
    installHooks(dir);
    git(dir, "add", ".gitignore");
    const commit = gitRun(dir, ["commit", "-q", "-m", "no session"]);
    expect(commit).toMatchObject({ status: 0, stderr: "" });
    expect(fired(dir)).toEqual([]);

    await seed(dir, { "/sessions/current": { session_id: SESSION }, [`/sessions/${SESSION}`]: { session_id: SESSION, status: "active" } });
    expect(gitRun(dir, ["commit", "-q", "--allow-empty", "-m", "wrapped"], { APEX_GIT_BEFORE_FIRED: "1" }).status).toBe(0);
    expect(fired(dir)).toEqual([]);

    await seed(dir, { [`/sessions/${SESSION}`]: { session_id: SESSION, status: "stopped" } });
    expect(gitRun(dir, ["commit", "-q", "--allow-empty", "-m", "ended"]).status).toBe(0);
    expect(fired(dir)).toEqual([]);
  });

  it("never breaks git when APEX is missing, broken, failing or slow", async () => {
    // 5 s: long enough for the failing cases to answer on a loaded machine, far below the hanging tap's 30 s.
    const dir = await project({ gitOptions: ["hook_timeout: 5"] });
    installHooks(dir);
    git(dir, "add", ".gitignore");

    // APEX moved away since the install
    const hook = join(dir, ".git", "hooks", "pre-commit");
    writeFileSync(hook, readFileSync(hook, "utf8").replace(/^apex_cli=.*$/m, `apex_cli='${join(dir, "gone", "apex.js")}'`));
    const missing = gitRun(dir, ["commit", "-q", "-m", "apex missing"]);
    expect(missing.status).toBe(0);
    expect(missing.stderr).toContain(`apex: cannot run APEX (${process.execPath} ${join(dir, "gone", "apex.js")}, project ${dir}): pre-commit goes on without a checkpoint.`);
    expect(fired(dir)).toEqual([]);
    installHooks(dir);

    // the config is broken
    const config = readFileSync(join(dir, "apex.config.yaml"), "utf8");
    writeFileSync(join(dir, "apex.config.yaml"), "plugins: [\n");
    const broken = gitRun(dir, ["commit", "-q", "--allow-empty", "-m", "broken config"]);
    expect(broken.status).toBe(0);
    expect(broken.stderr).toContain("error[APEX_E_YAML]");
    expect(broken.stderr).toContain("apex: APEX failed (exit code 2, see above): pre-commit goes on without a checkpoint.");

    // a beforeGit tap fails
    writeFileSync(join(dir, "apex.config.yaml"), config.replace("file: fired.log", "file: fired.log\n    fail: true"));
    const failing = gitRun(dir, ["commit", "-q", "--allow-empty", "-m", "failing tap"]);
    expect(failing.status).toBe(0);
    expect(failing.stderr).toContain("record-before-git was told to fail");
    expect(failing.stderr).toContain("apex: APEX failed (exit code 1, see above)");

    // a beforeGit tap hangs: git waits hook_timeout, not longer (2 s here: nothing has to answer in it, the hooks installed again with it)
    writeFileSync(join(dir, "apex.config.yaml"), config.replace("hook_timeout: 5", "hook_timeout: 2").replace("file: fired.log", "file: fired.log\n    delay_ms: 30000"));
    installHooks(dir);
    const started = Date.now();
    const slow = gitRun(dir, ["commit", "-q", "--allow-empty", "-m", "slow tap"]);
    expect(slow.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(slow.stderr).toContain("apex: APEX did not answer within 2 s: pre-commit goes on without a checkpoint.");
    expect(git(dir, "rev-list", "--count", "HEAD")).toBe("4");
    expect(fired(dir)).toEqual([]);
  });

  it("hooks shared through core.hooksPath fire only for the repository they were installed for", async () => {
    const dir = await project();
    installHooks(dir);
    const other = temp();
    git(other, "init", "-q", "-b", "main");
    git(other, "config", "core.hooksPath", join(dir, ".git", "hooks"));
    commitFile(other, "x.txt", "x\n", "unrelated");
    gitRun(other, ["commit", "-q", "--allow-empty", "-m", "unrelated, with hooks"]);
    expect(fired(dir)).toEqual([]);
  });
});

describe("apex git -- <git args>", () => {
  it("fires beforeGit with the arguments, runs git in the project repository and passes its exit code through", async () => {
    const dir = await project();
    installHooks(dir);
    git(dir, "add", ".gitignore");

    const commit = apex(dir, ["git", "--", "commit", "-q", "-m", "via apex"]);
    expect(commit).toMatchObject({ status: 0, stderr: "" });
    expect(git(dir, "log", "-1", "--format=%s")).toBe("via apex");
    // once: the hooks see that `apex git` fired already
    expect(fired(dir)).toEqual([{ sessionId: SESSION, args: ["commit", "-q", "-m", "via apex"], source: "cli" }]);

    clearFired(dir);
    const nothing = apex(dir, ["git", "--", "commit", "-m", "nothing to commit"]);
    expect(nothing.status).toBe(1);
    expect(nothing.stdout).toMatch(/nothing (added )?to commit/);

    const unknown = apex(dir, ["git", "--", "rev-parse", "--verify", "--quiet", "no-such-ref"]);
    expect(unknown.status).toBe(1);
    const fatal = apex(dir, ["git", "--", "checkout", "no-such-branch"]);
    expect(fatal.status).toBe(1);
    expect(fatal.stderr).toContain("pathspec 'no-such-branch' did not match");

    clearFired(dir);
    const status = apex(dir, ["git", "--", "status", "--short"]);
    expect(status).toMatchObject({ status: 0, stdout: "?? apex.config.yaml\n" });
    expect(fired(dir)).toEqual([]);
  });

  it("runs git even when beforeGit fails, with a warning", async () => {
    const dir = await project({ recorder: ["fail: true"] });
    const result = apex(dir, ["git", "--", "commit", "-q", "--allow-empty", "-m", "despite the tap"]);
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/^apex: beforeGit failed \(.*record-before-git was told to fail\); git runs without a checkpoint\.$/m);
    expect(git(dir, "log", "-1", "--format=%s")).toBe("despite the tap");
  });

  it("runs in the current directory when it is inside the repository, else in the repository", async () => {
    const dir = await project({ session: false });
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "sub", "file.txt"), "x\n");
    expect(apex(join(dir, "sub"), ["git", "--", "add", "file.txt"]).status).toBe(0);
    expect(git(dir, "diff", "--cached", "--name-only")).toBe("sub/file.txt");

    const outside = temp();
    const result = apex(outside, ["--config", join(dir, "apex.config.yaml"), "git", "--", "rev-parse", "--show-prefix"]);
    expect(result).toMatchObject({ status: 0, stdout: "\n" });
  });

  it("passes a signal sent to APEX alone on to git, and exits as git does", async () => {
    const dir = await project({ session: false });
    // git reads stdin until it ends: it runs until a signal ends it.
    const run = async (signal: NodeJS.Signals): Promise<[number | null, NodeJS.Signals | null]> => {
      const child = spawn(process.execPath, [APEX_BIN, "git", "--", "hash-object", "--stdin"], { cwd: dir, env: { ...cleanEnv(), ...GIT_ENV }, stdio: ["pipe", "ignore", "ignore"], detached: true });
      cleanups.push(() => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // ended
        }
      });
      const ended = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on("exit", (code, sig) => resolve([code, sig])));
      // Once git hash-object runs (APEX runs other git commands before it).
      const hashing = () => {
        try {
          const pids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
          // git itself, exec'd: a child not exec'd yet is a copy of APEX, whose own arguments hold "hash-object"
          // (that copy, forked for the git commands before it, is no sign that APEX forwards signals yet).
          return pids.some((pid) => {
            const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
            return basename(argv[0]!) === "git" && argv.includes("hash-object");
          });
        } catch {
          return false;
        }
      };
      // Signalled once git runs, not after 10 s whatever ran then: a loaded machine's APEX could still be starting git.
      await waitFor("git to run", hashing, 30_000);
      child.kill(signal);
      // Before, SIGINT was ignored until git ended (here: at the end of its input), and SIGTERM ended APEX, leaving git running.
      // Its input ends after 15 s (git then exits 0) so that such a failure ends; a loaded machine's APEX has that long to pass the signal on.
      const timer = setTimeout(() => child.stdin.end(), 15_000);
      const result = await ended;
      clearTimeout(timer);
      return result;
    };
    expect(await run("SIGINT")).toEqual([130, null]);
    expect(await run("SIGTERM")).toEqual([143, null]);
  });

  it("runs git without a session, and `apex git` alone is a usage error", async () => {
    const dir = await project({ session: false });
    const init = apex(dir, ["git", "--", "status", "--porcelain"]);
    expect(init.status).toBe(0);
    expect(apex(dir, ["git", "--", "commit", "-q", "--allow-empty", "-m", "x"]).status).toBe(0);
    expect(fired(dir)).toEqual([]);
    expect(existsSync(join(dir, ".apex"))).toBe(false);

    const bare = apex(dir, ["git"]);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain("error[APEX_E_USAGE]");

    // Without --: git's words are git's; the sharing plugin (off here, requiring git) was blamed for them.
    const status = apex(dir, ["git", "status"]);
    expect(status.stderr).not.toContain("APEX_E_PLUGIN_DISABLED");
    expect(status.status).toBe(0);
    expect(status.stdout).toContain("On branch main");
    const options = apex(dir, ["git", "commit", "--allow-empty", "-m", "it's"]);
    expect(options.status).toBe(2);
    expect(options.stderr).toContain("hint: Put git's arguments after --, so that APEX does not read them as its own: apex git -- commit --allow-empty -m 'it'\\''s'");
    expect(git(dir, "rev-list", "--count", "HEAD")).toBe("1");
  });

  it("outside a repository: a command that needs one is refused in APEX's words before beforeGit fires; init and -C still run", async () => {
    const dir = await project({ repo: false });
    for (const args of [["commit", "-q", "--allow-empty", "-m", "x"], ["log", "--oneline"]]) {
      const refused = apex(dir, ["git", "--", ...args]);
      // Before: git's bare "fatal: not a git repository" and exit 128, after a beforeGit checkpoint for it.
      expect(refused.stderr).not.toContain("fatal:");
      expect(refused.stderr).toContain(`error[APEX_E_NOT_A_REPOSITORY]: No git repository at ${dir}: it is not inside a git repository, so \`git ${args[0]}\` cannot run there.`);
      expect(refused.status).toBe(3);
    }
    expect(fired(dir)).toEqual([]);
    const other = temp();
    git(other, "init", "-q", "-b", "main");
    expect(apex(dir, ["git", "--", "-C", other, "log", "--oneline"]).stderr).toContain("does not have any commits yet");
    expect(apex(dir, ["git", "--", "init", "-q", "-b", "main"]).status).toBe(0);
    expect(apex(dir, ["git", "--", "commit", "-q", "--allow-empty", "-m", "first"])).toMatchObject({ status: 0, stderr: "" });
    expect(git(dir, "log", "-1", "--format=%s")).toBe("first");
  });

  it("`apex git notify` and `apex git hook-fired` fire with the given arguments", async () => {
    const dir = await project();
    const notify = apex(dir, ["git", "notify", "--json", "--", "push", "--force"]);
    expect(notify.status).toBe(0);
    expect(JSON.parse(notify.stdout)).toEqual({ session_id: SESSION, fired: true, args: ["push", "--force"], source: "cli" });
    const hook = apex(dir, ["git", "hook-fired", "pre-rebase", "--", "main", "topic"]);
    expect(hook).toMatchObject({ status: 0, stdout: "", stderr: "" });
    expect(fired(dir)).toEqual([
      { sessionId: SESSION, args: ["push", "--force"], source: "cli" },
      { sessionId: SESSION, args: ["pre-rebase", "main", "topic"], source: "git-hook" },
    ]);
  });

  it.each([
    [["status"], true],
    [["-C", "sub", "log", "--oneline"], true],
    [["-c", "color.ui=never", "diff"], true],
    [["--version"], true],
    [["commit", "-m", "x"], false],
    [["-c", "user.name=x", "commit"], false],
    [["checkout", "main"], false],
    [["branch", "-D", "x"], false],
    [["stash"], false],
  ])("read-only detection: %j → %s", (args, readOnly) => {
    expect(isReadOnlyGitCommand(args)).toBe(readOnly);
  });

  it("finds the git command after git's own options", async () => {
    expect(gitCommandOf(["--no-pager", "-C", "dir", "--git-dir", "x/.git", "log"])).toBe("log");
    expect(gitCommandOf([])).toBeUndefined();
  });
});

describe("apex session sync-git", () => {
  function manifest(sequence: number, gitState: unknown) {
    return { id: `ck-${sequence}`, sequence, created_at: "2026-01-01T00:00:00.000Z", git_state: gitState };
  }

  it("records the git state and reports commits since, branch change and dirty files", async () => {
    const dir = await project();
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\n", "base");
    await seed(dir, {
      [`/sessions/${SESSION}/checkpoint-002`]: manifest(2, { branch: "main", commit: "0".repeat(40), dirty: false }),
      [`/sessions/${SESSION}/checkpoint-010`]: manifest(10, { branch: "main", commit: base, dirty: false }),
      [`/sessions/${SESSION}/checkpoint-009`]: manifest(9, null),
    });
    git(dir, "checkout", "-q", "-b", "feature");
    commitFile(dir, "a.txt", "a\n", "Add a");
    commitFile(dir, "b.txt", "b\n", "Add b");
    writeFileSync(join(dir, "a.txt"), "changed\n");
    writeFileSync(join(dir, "new file.txt"), "new\n");
    const head = git(dir, "rev-parse", "HEAD");

    const result = apex(dir, ["session", "sync-git", "--json"]);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({
      session_id: SESSION,
      repository: dir,
      git: { branch: "feature", commit: head, dirty: true },
      checkpoint: { name: "checkpoint-010", id: "ck-10", sequence: 10, git_state: { branch: "main", commit: base, dirty: false } },
      changes: {
        branch_changed: true,
        branch_from: "main",
        branch_to: "feature",
        commit_from: base,
        commit_to: head,
        commits_since: 2,
        commits_behind: 0,
        checkpoint_commit_present: true,
      },
      dirty_files: [
        { status: " M", path: "a.txt" },
        { status: "??", path: "apex.config.yaml" },
        { status: "??", path: "new file.txt" },
      ],
    });
    expect(report.changes.log.map((entry: { subject: string }) => entry.subject)).toEqual(["Add b", "Add a"]);

    const recorded = apex(dir, ["memory", "show", `/sessions/${SESSION}/git`, "--json"]);
    expect(JSON.parse(recorded.stdout).value).toEqual({ branch: "feature", commit: head, dirty: true, synced_at: report.git.synced_at });

    const human = apex(dir, ["session", "sync-git", SESSION]);
    expect(human.status).toBe(0);
    expect(human.stdout).toBe(
      [
        `Recorded the git state of session ${SESSION}: feature @ ${head.slice(0, 7)}, 3 uncommitted changes.`,
        `Since checkpoint-010 (main @ ${base.slice(0, 7)}):`,
        "  2 commits since the checkpoint:",
        `    ${head.slice(0, 7)} Add b`,
        `    ${git(dir, "rev-parse", "--short=7", "HEAD~1")} Add a`,
        "  Branch changed: main → feature",
        "Uncommitted changes (3):",
        "   M a.txt",
        "  ?? apex.config.yaml",
        "  ?? new file.txt",
        "",
      ].join("\n"),
    );
  });

  it("reports commits the checkpoint had that HEAD lost, and a checkpoint commit this repository lacks", async () => {
    const dir = await project();
    commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    const lost = commitFile(dir, "x.txt", "x\n", "lost");
    git(dir, "reset", "-q", "--hard", "HEAD~1");
    await seed(dir, { [`/sessions/${SESSION}/checkpoint-001`]: manifest(1, { branch: "main", commit: lost, dirty: false }) });
    const report = JSON.parse(apex(dir, ["session", "sync-git", "--json"]).stdout);
    expect(report.changes).toMatchObject({ commits_since: 0, commits_behind: 1, branch_changed: false, checkpoint_commit_present: true });
    expect(report.dirty_files).toEqual([]);

    await seed(dir, { [`/sessions/${SESSION}/checkpoint-002`]: manifest(2, { branch: "main", commit: "f".repeat(40), dirty: false }) });
    const human = apex(dir, ["session", "sync-git"]);
    expect(human.stdout).toContain("  HEAD moved from fffffff, a commit that is not in this repository.\n");
  });

  it("without a checkpoint it records the state and says there is nothing to compare", async () => {
    const dir = await project();
    const result = apex(dir, ["session", "sync-git"]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`Recorded the git state of session ${SESSION}: main (no commits yet), 2 uncommitted changes.\n`);
    expect(result.stdout).toContain("The session has no checkpoint yet: nothing to compare with.\n");
  });

  it("shows a file name holding a newline or another control character as its escape, one file a line (--json keeps it exact)", async () => {
    const dir = await project();
    commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    writeFileSync(join(dir, "two\nlines.txt"), "x\n");
    writeFileSync(join(dir, "bell\u0007.txt"), "x\n");
    const human = apex(dir, ["session", "sync-git"]);
    expect(human.status, human.stderr).toBe(0);
    // The name printed as is read as two files, the second "lines.txt" with no status.
    expect(human.stdout).toContain("Uncommitted changes (2):\n  ?? bell\\u0007.txt\n  ?? two\\u000alines.txt\n");
    const report = JSON.parse(apex(dir, ["session", "sync-git", "--json"]).stdout);
    expect(report.dirty_files).toEqual([
      { status: "??", path: "bell\u0007.txt" },
      { status: "??", path: "two\nlines.txt" },
    ]);
  });

  it("fails clearly: unknown session (3), no session (3), no repository (3)", async () => {
    const dir = await project();
    const unknown = apex(dir, ["session", "sync-git", "no-such-session"]);
    expect(unknown.status).toBe(3);
    expect(unknown.stderr).toContain('error[APEX_E_NO_SESSION]: No session "no-such-session" in this project.');

    const none = await project({ session: false });
    expect(apex(none, ["session", "sync-git"]).status).toBe(3);

    const norepo = await project({ repo: false });
    const result = apex(norepo, ["session", "sync-git", "--json"]);
    expect(result.status).toBe(3);
    expect(JSON.parse(result.stderr)).toMatchObject({ error: { code: "APEX_E_NOT_A_REPOSITORY", exitCode: 3, message: `No git repository at ${norepo}: it is not inside a git repository.` } });

    // A `repository` that names no directory says so (it said "not inside a git repository").
    const missing = await project({ gitOptions: ["repository: ./gone"] });
    const gone = apex(missing, ["session", "sync-git", "--json"]);
    expect(gone.status).toBe(3);
    expect(JSON.parse(gone.stderr).error).toMatchObject({ code: "APEX_E_NOT_A_REPOSITORY", message: `No git repository at ${join(missing, "gone")}: the directory does not exist.` });
    // Its hint makes one where there is none: "Run `git init` there" (or `apex git -- init`, refused as this is) sent the user to no directory.
    const made = `Make it with \`git init '${join(missing, "gone")}'\` (which creates the directory), or point the git plugin's \`repository\` option (apex.config.yaml) at the repository.`;
    expect(JSON.parse(gone.stderr).error.hint).toBe(made);
    const status = apex(missing, ["git", "--", "status"]);
    expect(status).toMatchObject({ status: 3, stderr: expect.stringContaining(`hint: ${made}`) });
    expect(apex(missing, ["git", "--", "init", "-q"]).stderr).toContain(`hint: ${made}`);
    git(missing, "init", "-q", join(missing, "gone"));
    expect(apex(missing, ["git", "--", "status"]).status).toBe(0);
  });
});

describe("for start --continue: compareGitState and checkoutCheckpoint", () => {
  it("compares the repository with a checkpoint's git_state", async () => {
    const dir = await project({ session: false });
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    const same = await compareGitState(dir, { branch: "main", commit: base, dirty: false });
    expect(same).toMatchObject({ differs: false, messages: [] });
    expect(await compareGitState(dir, null)).toMatchObject({ differs: false, messages: [] });

    git(dir, "checkout", "-q", "-b", "feature");
    const next = commitFile(dir, "a.txt", "a\n", "a");
    writeFileSync(join(dir, "b.txt"), "b\n");
    const moved = await compareGitState(dir, { branch: "main", commit: base, dirty: false });
    expect(moved.differs).toBe(true);
    expect(moved.messages).toEqual([
      "Branch changed: the checkpoint was taken on 'main', the repository is on 'feature' now.",
      `HEAD moved: ${base.slice(0, 7)} at the checkpoint, ${next.slice(0, 7)} now (1 commit since).`,
      "Uncommitted changes since the checkpoint (1 file): ?? b.txt.",
    ]);

    const gone = await compareGitState(join(dir, "missing"), { branch: "main", commit: base, dirty: false });
    expect(gone).toMatchObject({ differs: true });
    expect(gone.messages[0]).toBe(`The checkpoint was taken in a git repository (main @ ${base.slice(0, 7)}), but there is none at ${join(dir, "missing")} now.`);
  });

  it("checks out the checkpoint's commit on a new branch, refusing a dirty tree, without firing beforeGit", async () => {
    const dir = await project();
    installHooks(dir);
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    commitFile(dir, "later.txt", "later\n", "later");
    clearFired(dir);
    const state = { branch: "main", commit: base, dirty: false };

    writeFileSync(join(dir, "scratch.txt"), "uncommitted\n");
    const dirty = expectError(await rejection(checkoutCheckpoint(dir, state, "restore")), "APEX_E_DIRTY_TREE", 4);
    expect(dirty.message).toContain("the working tree has uncommitted changes:\n  ?? scratch.txt");
    expect(git(dir, "branch", "--list", "restore")).toBe("");
    rmSync(join(dir, "scratch.txt"));

    const name = await restoreBranchName(dir, "s/1 x", "checkpoint-003");
    expect(name).toBe("apex/s-1-x/checkpoint-003");
    expect(await checkoutCheckpoint(dir, state, name)).toEqual({ branch: name, commit: base });
    expect(git(dir, "symbolic-ref", "--short", "HEAD")).toBe(name);
    expect(git(dir, "rev-parse", "HEAD")).toBe(base);
    expect(await restoreBranchName(dir, "s/1 x", "checkpoint-003")).toBe("apex/s-1-x/checkpoint-003-2");
    expect(fired(dir)).toEqual([]);

    expectError(await rejection(checkoutCheckpoint(dir, state, name)), "APEX_E_BRANCH_EXISTS", 4);
    expectError(await rejection(checkoutCheckpoint(dir, { branch: "main", commit: "e".repeat(40), dirty: false }, "other")), "APEX_E_GIT_COMMIT_MISSING", 3);
    expectError(await rejection(checkoutCheckpoint(dir, { branch: "main", commit: null, dirty: false }, "other")), "APEX_E_GIT_COMMIT_MISSING", 3);
    expectError(await rejection(checkoutCheckpoint(dir, state, "bad..name")), "APEX_E_USAGE", 2);
    expectError(await rejection(checkoutCheckpoint(temp(), state, "other")), "APEX_E_NOT_A_REPOSITORY", 3);
  });

  it("lets the checkout take as long as it takes: a slow post-checkout hook (npm install) is not killed", async () => {
    const dir = await project({ session: false });
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    commitFile(dir, "later.txt", "later\n", "later");
    // Longer than a read-only git command gets: before, git was killed and the checkout it made reported as failed.
    // That limit (10 s) is 3 s here, in this process alone: the hook takes 3.5 s, not 10.5 s.
    writeFileSync(join(dir, ".git", "hooks", "post-checkout"), "#!/bin/sh\nsleep 3.5\necho done > .git/post-checkout-ran\n", { mode: 0o755 });
    const limit = gitLimits.timeoutMs;
    gitLimits.timeoutMs = 3_000;
    try {
      expect(await checkoutCheckpoint(dir, { branch: "main", commit: base, dirty: false }, "restore")).toEqual({ branch: "restore", commit: base });
    } finally {
      gitLimits.timeoutMs = limit;
    }
    expect(readFileSync(join(dir, ".git", "post-checkout-ran"), "utf8")).toBe("done\n");
  });

  it("refuses while a rebase or a bisect is in progress, even with a clean tree, and leaves it as it was", async () => {
    const dir = await project({ session: false });
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    const later = commitFile(dir, "later.txt", "later\n", "later");
    const state = { branch: "main", commit: base, dirty: false };
    // Stopped by a failing --exec: nothing to commit, the rebase waits for --continue.
    expect(gitRun(dir, ["rebase", "--exec", "exit 1", "HEAD~1"]).status).not.toBe(0);
    expect(git(dir, "status", "--porcelain")).toBe("");
    const rebasing = expectError(await rejection(checkoutCheckpoint(dir, state, "restore")), "APEX_E_DIRTY_TREE", 4);
    expect(rebasing.message).toContain("a rebase is in progress");
    expect(rebasing.hint).toBe("Finish it (git rebase --continue) or abort it (git rebase --abort), then run the command again.");
    expect(git(dir, "branch", "--list", "restore")).toBe("");
    git(dir, "rebase", "--abort");
    expect(git(dir, "symbolic-ref", "--short", "HEAD")).toBe("main");

    git(dir, "bisect", "start", later, base);
    const bisecting = expectError(await rejection(checkoutCheckpoint(dir, state, "restore")), "APEX_E_DIRTY_TREE", 4);
    expect(bisecting.hint).toContain("git bisect reset");
    git(dir, "bisect", "reset");
    expect(await checkoutCheckpoint(dir, state, "restore")).toEqual({ branch: "restore", commit: base });
  });

  it("refuses to overwrite files git ignores that the checkpoint's commit has", async () => {
    const dir = await project({ session: false });
    writeFileSync(join(dir, "secret.env"), "checkpoint's\n");
    git(dir, "add", "secret.env");
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    git(dir, "rm", "-q", "--cached", "secret.env");
    commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\nsecret.env\n", "stop tracking secret.env");
    writeFileSync(join(dir, "secret.env"), "the user's work\n");
    const state = { branch: "main", commit: base, dirty: false };
    const refused = expectError(await rejection(checkoutCheckpoint(dir, state, "restore")), "APEX_E_DIRTY_TREE", 4);
    expect(refused.message).toContain("which the checkout would overwrite:\n  secret.env");
    expect(readFileSync(join(dir, "secret.env"), "utf8")).toBe("the user's work\n");
    expect(git(dir, "branch", "--list", "restore")).toBe("");
    rmSync(join(dir, "secret.env"));
    expect(await checkoutCheckpoint(dir, state, "restore")).toEqual({ branch: "restore", commit: base });
    expect(readFileSync(join(dir, "secret.env"), "utf8")).toBe("checkpoint's\n");
  });

  it("refuses to leave behind commits made on a detached HEAD that no branch has", async () => {
    const dir = await project({ session: false });
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    const later = commitFile(dir, "later.txt", "later\n", "later");
    git(dir, "checkout", "-q", "--detach");
    const work = commitFile(dir, "work.txt", "work\n", "work on a detached HEAD");
    const state = { branch: "main", commit: base, dirty: false };
    const refused = expectError(await rejection(checkoutCheckpoint(dir, state, "restore")), "APEX_E_DIRTY_TREE", 4);
    expect(refused.message).toContain(`HEAD is detached at ${work.slice(0, 7)}, with 1 commit no branch has`);
    expect(refused.hint).toBe(`Keep them on a branch first (git branch <name> ${work.slice(0, 7)}), then run the command again.`);
    expect(git(dir, "rev-parse", "HEAD")).toBe(work);
    // Detached at a commit a branch has: nothing is left behind.
    git(dir, "checkout", "-q", "--detach", later);
    expect(await checkoutCheckpoint(dir, state, "restore")).toEqual({ branch: "restore", commit: base });
  });

  it("in a shallow clone, a commit below its depth is missing with the fetch that brings it", async () => {
    const dir = await project({ session: false });
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    commitFile(dir, "later.txt", "later\n", "later");
    const clone = temp();
    git(clone, "clone", "-q", "--depth", "1", `file://${dir}`, "c");
    const missing = expectError(await rejection(checkoutCheckpoint(join(clone, "c"), { branch: "main", commit: base, dirty: false }, "restore")), "APEX_E_GIT_COMMIT_MISSING", 3);
    expect(missing.message).toContain("(a shallow clone)");
    expect(missing.hint).toBe("Fetch the history it lacks (git fetch --unshallow), or continue without --git-checkout.");
    git(join(clone, "c"), "fetch", "-q", "--unshallow");
    expect(await checkoutCheckpoint(join(clone, "c"), { branch: "main", commit: base, dirty: false }, "restore")).toEqual({ branch: "restore", commit: base });
  });

  it("a branch named like a directory of the restore branch is named before anything changes; one below it is stepped over", async () => {
    const dir = await project({ session: false });
    const base = commitFile(dir, ".gitignore", ".apex/\nfired.log\napex.config.yaml\n", "base");
    const state = { branch: "main", commit: base, dirty: false };
    git(dir, "branch", "apex/s1/checkpoint-001/old");
    expect(await restoreBranchName(dir, "s1", "checkpoint-001")).toBe("apex/s1/checkpoint-001-2");
    git(dir, "branch", "-D", "apex/s1/checkpoint-001/old");
    git(dir, "branch", "apex");
    const name = await restoreBranchName(dir, "s1", "checkpoint-001");
    expect(name).toBe("apex/s1/checkpoint-001");
    const clash = expectError(await rejection(checkoutCheckpoint(dir, state, name)), "APEX_E_BRANCH_EXISTS", 4);
    expect(clash.message).toBe("Refusing to check out the checkpoint on branch 'apex/s1/checkpoint-001': git cannot have it beside the branch 'apex'.");
    expect(git(dir, "symbolic-ref", "--short", "HEAD")).toBe("main");
  });

  it("projectRepository resolves the git plugin's `repository` option, undefined when the plugin is off", async () => {
    const dir = temp();
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  git:\n    repository: ../elsewhere\n");
    const config = await loadConfig(locateProject({ cwd: dir, env: {} }), { env: {}, cwd: dir });
    expect(projectRepository(config)).toBe(join(dir, "..", "elsewhere"));
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  git: false\n");
    expect(projectRepository(await loadConfig(locateProject({ cwd: dir, env: {} }), { env: {}, cwd: dir }))).toBeUndefined();
  });
});

describe("help", () => {
  it("every git command has --help", async () => {
    const dir = await project({ repo: false, session: false });
    for (const args of [["git"], ["git", "install-hooks"], ["git", "uninstall-hooks"], ["git", "hook-fired"], ["git", "notify"], ["session", "sync-git"]]) {
      const result = apex(dir, [...args, "--help"]);
      expect([args, result.status]).toEqual([args, 0]);
      expect(result.stdout).toContain(`Usage: apex ${args.join(" ")}`);
    }
  });
});
