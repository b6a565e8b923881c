// A memory path as long as APEX takes (1024 bytes) in a session that runs in a git worktree, whose
// memory is kept under its own root (/sessions/<id>/memory): written there, and continued from a
// checkpoint that holds it. Through the built CLI, with real supervisors, LMDB and git worktrees.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

let project: Project | undefined;
const extra = tempDirs();
const { git } = isolatedGit("apex-long-paths-git-");

const config = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins:", "  checkpoint: {}", "  git: {}", ""].join("\n");

/** A path of `bytes` UTF-8 bytes under /notes. */
const longPath = (bytes: number, letter: string) => `/notes/${letter.repeat(bytes - "/notes/".length)}`;

describe("paths of 1024 bytes in a worktree session", () => {
  it("are written there, and a checkpoint holding one is branched into a worktree and continued", () => {
    project = new Project(config, "apex-long-paths-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const ok = (args: string[], cwd = p.dir) => {
      const result = p.apex(args, { cwd });
      expect(result.status, `${args.join(" ").slice(0, 80)}: ${result.stderr}`).toBe(0);
      return result.stdout;
    };
    p.start(["--task", "main line"]);
    const first = longPath(1024, "a");
    ok(["memory", "set", first, "1"]);
    // One byte more is refused, as ever: the limit of a path as given stays 1024 bytes.
    const over = p.apex(["memory", "set", longPath(1025, "a"), "1"]);
    expect(over.status).toBe(2);
    expect(over.stderr).toContain("it is longer than 1024 bytes");
    ok(["checkpoint", "create", "long path"]);
    const parent = mkdtempSync(join(tmpdir(), "apex-long-paths-wt-"));
    extra.push(parent);
    const wt = join(parent, "alpha");
    ok(["session", "branch", "latest", "alpha", "--worktree", wt]);
    // The branch's state, restored under its own memory root: it was APEX_E_BAD_PATH (exit 2), the branch recorded failed.
    ok(["start", "--continue", "alpha"]);
    expect(JSON.parse(ok(["memory", "show", first, "--json"], wt))).toMatchObject({ value: 1 });
    // A path of 1024 bytes written in the worktree's session: refused there, naming /sessions/<id>/memory/… it never typed.
    const second = longPath(1024, "b");
    ok(["memory", "set", second, "2"], wt);
    expect(JSON.parse(ok(["memory", "show", second, "--json"], wt))).toMatchObject({ value: 2 });
    const refused = p.apex(["memory", "set", longPath(1025, "b"), "1"], { cwd: wt });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain(`Invalid path "${longPath(1025, "b").slice(0, 100)}"`);
    expect(refused.stderr).toContain("it is longer than 1024 bytes");
    ok(["checkpoint", "create", "in the worktree"], wt);
    expect(ok(["session", "validate"])).toContain("is valid");
    ok(["stop"], wt);
    ok(["stop"]);
  });
});
