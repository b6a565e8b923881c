// An ApexSaver given `project: DIR` acts on the session a command run in DIR acts on: a branch's
// git worktree names the branch's session, reached through that session's own supervisor. The
// process's own directory does not decide (it may be another repository, or another worktree):
// with real supervisors, LMDB, git worktrees and the built CLI.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { emptyCheckpoint, uuid6, type CheckpointMetadata } from "@langchain/langgraph-checkpoint";
import { describe, expect, it } from "vitest";
import { ApexSaver } from "../integrations/langgraph/index.js";
import { Project } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const extra = tempDirs();

const { git } = isolatedGit("apex-lg-wt-git-home-");
const agent = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");

/** True while this process has the project's store file mapped (LMDB maps it on open). */
function storeOpenHere(storeDir: string): boolean {
  return readFileSync("/proc/self/maps", "utf8").includes(join(storeDir, "store.mdb"));
}

async function putOne(saver: ApexSaver, thread: string, value: string): Promise<string> {
  const checkpoint = emptyCheckpoint();
  checkpoint.id = uuid6(-1);
  checkpoint.channel_values = { value };
  checkpoint.channel_versions = { value: 1 };
  await saver.put({ configurable: { thread_id: thread, checkpoint_ns: "" } }, checkpoint, { source: "input", step: -1, parents: {} }, { value: 1 });
  return checkpoint.id;
}

describe("ApexSaver with project: a directory", () => {
  it("a branch's worktree: the branch's session, through its supervisor; the project's tree: the project's session", async () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git: {}\n`, "apex-lg-wt-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-lg-wt-tree-"));
    extra.push(parent);
    const worktree = join(parent, "side");
    const main = p.start(["--task", "main line"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "side", "--worktree", worktree]).status).toBe(0);
    const side = p.start(["--continue", "side"]).session_id;
    expect(existsSync(join(worktree, ".git"))).toBe(true);

    const inBranch = new ApexSaver({ project: worktree });
    const inProject = new ApexSaver({ project: p.dir });
    try {
      const branchStep = await putOne(inBranch, "review", "in the branch");
      const projectStep = await putOne(inProject, "review", "in the project");
      // Both supervisors run: the saver wrote through them, and never opened the store itself.
      expect(storeOpenHere(p.storeDir)).toBe(false);
      expect((await inBranch.getTuple({ configurable: { thread_id: "review" } }))?.checkpoint.channel_values).toEqual({ value: "in the branch" });
      expect((await inProject.getTuple({ configurable: { thread_id: "review" } }))?.checkpoint.channel_values).toEqual({ value: "in the project" });
      const latest = (session: string) => json<{ items: Array<{ trigger: string; description: string }> }>(p.apex(["checkpoint", "list", "--session", session, "--json"])).items[0]!;
      expect(latest(side)).toMatchObject({ trigger: "langgraph" });
      expect(latest(main)).toMatchObject({ trigger: "langgraph" });
      // Each thread step is in its own session's history only.
      const ids = async (saver: ApexSaver) => {
        const out: string[] = [];
        for await (const tuple of saver.list({ configurable: { thread_id: "review" } })) out.push(tuple.checkpoint.id);
        return out;
      };
      expect(await ids(inBranch)).toEqual([branchStep]);
      expect(await ids(inProject)).toEqual([projectStep]);

      // Through the socket (JSON, which drops undefined) as on the store: a filter key given as
      // undefined matches metadata without it; writes after a deleteThread are refused; a thread
      // id too long is named as such.
      const next = emptyCheckpoint();
      next.id = uuid6(-1);
      await inProject.put({ configurable: { thread_id: "review", checkpoint_ns: "", checkpoint_id: projectStep } }, next, { step: 0, parents: {} } as CheckpointMetadata /* no source: found by a filter on an undefined one */, {});
      const filtered = async (filter: Record<string, unknown>) => {
        const out: string[] = [];
        for await (const tuple of inProject.list({ configurable: { thread_id: "review" } }, { filter })) out.push(tuple.checkpoint.id);
        return out;
      };
      expect(await filtered({ source: undefined })).toEqual([next.id]);
      expect(await filtered({ source: "input" })).toEqual([projectStep]);
      await inProject.deleteThread("review");
      await expect(inProject.putWrites({ configurable: { thread_id: "review", checkpoint_ns: "", checkpoint_id: next.id } }, [["value", "late"]], "task")).rejects.toMatchObject({
        code: "APEX_E_CHECKPOINT_NOT_FOUND",
      });
      expect(await ids(inProject)).toEqual([]);
      await expect(inProject.getTuple({ configurable: { thread_id: "x".repeat(2000) } })).rejects.toMatchObject({
        code: "APEX_E_BAD_INPUT",
        message: expect.stringContaining("… (2000 characters) is too long: APEX keeps thread ids of up to 512 bytes"),
      });
    } finally {
      await inBranch.close();
      await inProject.close();
    }
  });

  it("session branch --worktree at a LangGraph step (which records no git state) makes the worktree at the commit of the nearest checkpoint before it that recorded one", async () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git: {}\n`, "apex-lg-wt-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-lg-wt-tree-"));
    extra.push(parent);
    p.start(["--task", "main line"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const commit = git(p.dir, "rev-parse", "HEAD");
    const saver = new ApexSaver({ project: p.dir });
    try {
      await putOne(saver, "review", "at the step");
    } finally {
      await saver.close();
    }
    // It was APEX_E_GIT_COMMIT_MISSING, "taken in a git repository with the git plugin enabled" as it was.
    const branched = p.apex(["session", "branch", "latest", "side", "--worktree", join(parent, "side"), "--json"]);
    expect(branched.status, branched.stderr).toBe(0);
    expect(branched.stderr).toMatch(/checkpoint-\d+ recorded no git commit \(a LangGraph step records none\); the worktree is at [0-9a-f]{12}, the commit of .*\/checkpoint-\d+, the nearest checkpoint before it that recorded one\./);
    const report = JSON.parse(branched.stdout) as { worktree: { commit: string }; langgraph: { carried: string[] } };
    expect(report.worktree.commit).toBe(commit);
    expect(report.langgraph.carried).toEqual(["review"]);
    expect(git(join(parent, "side"), "rev-parse", "HEAD")).toBe(commit);
    expect(p.apex(["stop"]).status).toBe(0);
  });
});
