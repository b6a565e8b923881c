// `apex session history` and `apex session report` read `last`, `current` (and, for report, no ID)
// as every other command reads the session it acts on: an agent's own, the branch's in its git
// worktree, `--session`'s; not the session the project's own working tree runs. Through the built
// CLI, with real supervisors, agents, LMDB and git.
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { tempDirs } from "./support/cleanup.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const extra = tempDirs();

const { git } = isolatedGit("apex-bound-reads-git-");

// The agent asks, through its supervisor's socket, for `last`'s trail and the report without an ID.
const config = [
  "agents:",
  "  reader:",
  "    command: sh",
  `    args: ["-c", "apex session history last --json > h.tmp && mv h.tmp h.json; apex session report --json > r.tmp && mv r.tmp r.json; while true; do sleep 0.5; done"]`,
  "plugins:",
  "  checkpoint: {}",
  "  git: {}",
  "  history: {}",
  "",
].join("\n");

describe("session history and session report", () => {
  it("read last, current and no ID as the session the command is bound to: an agent's own, its worktree's, --session's", async () => {
    project = new Project(config, "apex-bound-reads-");
    const p = project;
    initRepo(git, p.dir, { ".gitignore": "h.json\nr.json\n*.tmp\n.apex/\n" });
    const parent = mkdtempSync(join(tmpdir(), "apex-bound-reads-wt-"));
    extra.push(parent);
    const wt = join(parent, "alpha");
    const main = p.start(["--task", "main line"]).session_id;
    await waitFor("main's agent", () => existsSync(join(p.dir, "r.json")), 30_000);
    expect(p.apex(["session", "branch", "latest", "alpha", "--worktree", wt]).status).toBe(0);
    const alpha = p.start(["--continue", "alpha"]).session_id;
    expect(alpha).not.toBe(main);
    await waitFor("alpha's agent", () => existsSync(join(wt, "r.json")), 30_000);

    const trail = (text: string) => (JSON.parse(text) as { session_id: string }).session_id;
    const report = (text: string) => (JSON.parse(text) as { session: { session_id: string } }).session.session_id;
    // Inside each agent: its own session.
    for (const [dir, own] of [[p.dir, main], [wt, alpha]] as const) {
      expect(trail(readFileSync(join(dir, "h.json"), "utf8"))).toBe(own);
      expect(report(readFileSync(join(dir, "r.json"), "utf8"))).toBe(own);
    }
    // A user's commands: the worktree's session in the worktree (before, main's), main in the project's working tree, --session's anywhere.
    const seen = (args: string[], read: (text: string) => string, cwd = p.dir) => {
      const result = p.apex(args, { cwd });
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      return read(result.stdout);
    };
    for (const [cwd, bound] of [[wt, alpha], [p.dir, main]] as const) {
      for (const word of ["last", "current"]) expect(seen(["session", "history", word, "--json"], trail, cwd), `${word} in ${cwd}`).toBe(bound);
      for (const args of [[], ["last"], ["current"]]) expect(seen(["session", "report", ...args, "--json"], report, cwd), `report ${args} in ${cwd}`).toBe(bound);
    }
    expect(seen(["--session", "alpha", "session", "report", "--json"], report)).toBe(alpha);
    expect(seen(["--session", "alpha", "session", "history", "--json"], trail)).toBe(alpha);
    // The trail's JSON names the session as its text heading does (it had no name).
    expect(JSON.parse(p.apex(["session", "history", "alpha", "--json"]).stdout)).toMatchObject({ session_id: alpha, name: "alpha", status: "active" });
    expect(JSON.parse(p.apex(["session", "history", main, "--json"]).stdout)).toMatchObject({ session_id: main, name: null });
    // Each key `session list --json` and the trail's --json print is one their --help names (host was not named).
    const jsonHelp = (args: string[]) => /--json\s+([\s\S]*?)\n\s*-h, --help/.exec(p.apex([...args, "--help"]).stdout)![1]!.replace(/\s+/g, " ");
    const listed = JSON.parse(p.apex(["session", "list", "--json"]).stdout) as Array<Record<string, unknown>>;
    for (const key of Object.keys(listed[0]!)) expect(jsonHelp(["session", "list"]), key).toMatch(new RegExp(`[{ ]${key}[,}:]`));
    for (const key of Object.keys(JSON.parse(p.apex(["session", "history", "alpha", "--json"]).stdout) as object)) expect(jsonHelp(["session", "history"]), key).toMatch(new RegExp(`[{ ]${key}[,}:]`));
    // The branch ended: in its worktree `last` is still it, and `current` is none (not main, which runs on).
    expect(p.apex(["stop"], { cwd: wt }).status).toBe(0);
    expect(seen(["session", "history", "last", "--json"], trail, wt)).toBe(alpha);
    expect(seen(["session", "report", "--json"], report, wt)).toBe(alpha);
    const none = p.apex(["session", "report", "current", "--json"], { cwd: wt });
    expect(none.status).toBe(3);
    expect(none.stderr).toContain("APEX_E_NO_SESSION");
    expect(seen(["session", "history", "current", "--json"], trail)).toBe(main);
  }, 90_000);
});
