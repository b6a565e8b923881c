// `apex pause` and `apex resume` (alone or with --json) run by their fast path (bin/apex.js:
// dist/cli/lifecycle-main.js, without commander) print, exit and fail exactly as by the full CLI
// (FULL_CLI_ENV makes bin/apex.js load dist/cli/main.js for every line): the built CLI, a real
// session whose agents are really stopped (state T in /proc) and continued.
import { afterEach, describe, expect, it } from "vitest";
import { Project, groupMembers, shellAgents, waitFor, type CliResult } from "./fixtures/agents/harness.js";
import { FULL_CLI_ENV } from "./helpers/cli.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

const fast = (p: Project, args: string[]): CliResult => p.apex(args);
const full = (p: Project, args: string[]): CliResult => p.apex(args, { env: FULL_CLI_ENV });

/** The states of every process of every agent of the session: "T" when all are stopped. */
function states(p: Project): string[] {
  return p.status().agents.flatMap((agent) => groupMembers(agent.pgid!).map((member) => member.state));
}

describe("apex pause / resume by their fast path", () => {
  it("with no session, fail as the full CLI does (same exit code, stdout and stderr), text and --json", () => {
    project = new Project(shellAgents({ alpha: "while true; do sleep 0.2; done" }), "apex-fast-lifecycle-");
    for (const args of [["pause"], ["pause", "--json"], ["resume"], ["resume", "--json"]]) {
      const quick = fast(project, args);
      expect(quick.status, args.join(" ")).not.toBe(0);
      expect(quick, args.join(" ")).toEqual(full(project, args));
    }
  });

  it("pause and resume a running session as the full CLI does, and refuse the same way a pause of a paused session and a resume of an active one", async () => {
    // Processes that stay (no loop forking a sleep now and then): each reply counts them, the same 5 every time.
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait", beta: "sleep 1000 & sleep 1000 & wait" }), "apex-fast-lifecycle-");
    project.start(["--task", "fast path"]);
    await waitFor("beta's sleeps", () => states(project!).length >= 5);
    for (const json of [[], ["--json"]]) {
      const pausedFast = fast(project, ["pause", ...json]);
      expect(pausedFast.status, pausedFast.stderr).toBe(0);
      expect(states(project).every((state) => state === "T")).toBe(true);
      const againFast = fast(project, ["pause", ...json]);
      const againFull = full(project, ["pause", ...json]);
      expect(againFast.status).toBe(4);
      expect(againFast).toEqual(againFull);
      const resumedFull = full(project, ["resume", ...json]);
      expect(resumedFull.status, resumedFull.stderr).toBe(0);
      expect(states(project).includes("T")).toBe(false);
      const pausedFull = full(project, ["pause", ...json]);
      expect(pausedFast).toEqual(pausedFull);
      const resumedFast = fast(project, ["resume", ...json]);
      expect(resumedFast).toEqual(resumedFull);
      expect(states(project).includes("T")).toBe(false);
      const notPausedFast = fast(project, ["resume", ...json]);
      expect(notPausedFast.status).toBe(4);
      expect(notPausedFast).toEqual(full(project, ["resume", ...json]));
    }
  });
});
