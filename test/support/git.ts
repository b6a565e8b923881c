// Git for the e2e tests: an identity and an empty global config of their own (nothing of the
// machine's git config applies), set on this process so that the supervisors and agents that
// `apex start` launches inherit them, and a user's `git` run with them.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TestRunner, afterAll, onTestFinished } from "vitest";
import { cleanEnv } from "../fixtures/agents/harness.js";

export function isolatedGit(prefix: string): { GIT_ENV: Record<string, string>; git: (dir: string, ...args: string[]) => string } {
  const home = mkdtempSync(join(tmpdir(), prefix));
  // Removed after the file's tests (called at a file's top level), or after the test that called it.
  const remove = () => rmSync(home, { recursive: true, force: true });
  if (TestRunner.getCurrentTest()) onTestFinished(remove);
  else afterAll(remove);
  const gitConfig = join(home, "gitconfig");
  writeFileSync(gitConfig, "");
  const GIT_ENV = { GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.com", GIT_CONFIG_GLOBAL: gitConfig, GIT_CONFIG_NOSYSTEM: "1" };
  Object.assign(process.env, GIT_ENV);
  // A user's git, without any APEX variable of this process.
  const git = (dir: string, ...args: string[]) => execFileSync("git", args, { cwd: dir, encoding: "utf8", env: { ...cleanEnv(), ...GIT_ENV } }).trim();
  return { GIT_ENV, git };
}

/** Makes `dir` a repository on `main` whose first commit holds `files` (name → content) and what was there. */
export function initRepo(git: (dir: string, ...args: string[]) => string, dir: string, files: Record<string, string>): void {
  git(dir, "init", "-q", "-b", "main");
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  git(dir, "add", ".");
  git(dir, "commit", "-qm", "init");
}
