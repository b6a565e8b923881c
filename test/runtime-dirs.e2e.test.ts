// A file where a supervisor makes a directory of the store directory (.apex/run, logs, bin), through the built CLI:
// `apex start` refuses it before anything is launched or stopped, naming it and the way on. The supervisor failed on it
// with APEX_E_INTERNAL ("EEXIST: file already exists, mkdir …") and recorded the continued session failed.
import { afterEach, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Project } from "./fixtures/agents/harness.js";
import { runApex } from "./helpers/cli.js";

const config = ["agents:", "  worker:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, ""].join("\n");

let project: Project | undefined;
afterEach(() => project?.cleanup());

describe("the store directory's own directories", () => {
  it("a file where run, logs or bin go, or a directory where supervisor.log goes, is refused by start, nothing started and the session left as it was; a link to a directory is one", () => {
    project = new Project(config, "apex-runtime-dirs-");
    const sid = project.start(["--task", "dirs"]).session_id;
    expect(project.apex(["stop"]).status).toBe(0);
    const storeDir = join(project.dir, ".apex");
    for (const [name, what] of [["run", "sockets of branch sessions"], ["logs", "agents' logs"], ["bin", "`apex` command for the agents"]]) {
      const path = join(storeDir, name);
      rmSync(path, { recursive: true, force: true });
      writeFileSync(path, "not a directory\n");
      for (const args of [["start", "--continue", "last", "--json"], ["start", "--task", "another", "--json"]]) {
        // Not through project.apex, which reads .apex/run for the supervisors to end after the test: nothing is started here.
        const refused = runApex(args, { cwd: project.dir });
        expect([refused.status, JSON.parse(refused.stderr).error], `${name}: ${args.join(" ")}`).toEqual([
          1,
          {
            code: "APEX_E_STORE_DAMAGED",
            message: `${path} is a file, not a directory: APEX keeps the ${what} there.`,
            exitCode: 1,
            exit_code: 1,
            hint: `Nothing was started. Move it aside (\`mv ${path} ${path}.moved\`): APEX makes the directory anew. Then run the command again.`,
            details: { path },
          },
        ]);
      }
      rmSync(path);
      const sessions = JSON.parse(project.apex(["session", "list", "--json"]).stdout) as Array<{ session_id: string; status: string }>;
      expect(sessions.map(({ session_id, status }) => ({ session_id, status }))).toEqual([{ session_id: sid, status: "stopped" }]);
    }
    // A directory where the supervisor's log goes, the other way round (EISDIR, APEX_E_INTERNAL).
    const log = join(storeDir, "supervisor.log");
    rmSync(log);
    mkdirSync(log);
    const refused = runApex(["start", "--continue", "last", "--json"], { cwd: project.dir });
    expect([refused.status, JSON.parse(refused.stderr).error]).toEqual([1, expect.objectContaining({ code: "APEX_E_STORE_DAMAGED", message: `${log} is a directory, not a file: the supervisor writes its log there.`, details: { path: log } })]);
    rmSync(log, { recursive: true });
    // The logs kept on another disk through a link: a directory, as before.
    const elsewhere = join(project.dir, "logs-elsewhere");
    mkdirSync(elsewhere);
    symlinkSync(elsewhere, join(storeDir, "logs"));
    expect(project.apex(["start", "--continue", "last"]).status).toBe(0);
    expect(project.status().session).toMatchObject({ session_id: sid, status: "active" });
    expect(existsSync(join(elsewhere, sid, "worker.log"))).toBe(true);
  });
});
