// A running session whose supervisor's control socket file is deleted (`rm
// .apex/supervisor.sock`, a temp cleaner): every write, pause and resume waited 15 s for the
// supervisor "to exit, as it is stopping" and then failed. Now the supervisor listens on a deleted
// socket again within half a second, and a command that finds none there waits up to 1.5 s for it.
// End to end with the built CLI and real processes, each ended by pid or process group after the
// test (fixtures/agents/harness.ts).
import { rmSync, statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";

const CONFIG = ["agents:", "  looper:", "    command: sh", `    args: ["-c", "while true; do sleep 1; done"]`, "plugins: {}", ""].join("\n");

/** Before, each of these took 15 s (the wait for a stop that was not coming): "at once" is well under that, on a loaded machine too. */
const AT_ONCE_MS = 6000;

/** `project.apex(args)` with the time it took. */
function timed(project: Project, args: string[]) {
  const began = Date.now();
  const result = project.apex(args);
  return { ...result, ms: Date.now() - began };
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

describe("a supervisor whose socket file is deleted while it runs", () => {
  it("listens on it again, and commands go on reaching it, without the 15 s wait", () => {
    const project = new Project(CONFIG);
    const ready = project.start();
    rmSync(ready.socket);

    const set = timed(project, ["memory", "set", "/x", "1"]);
    expect(set.status, set.stderr).toBe(0);
    expect(set.ms).toBeLessThan(AT_ONCE_MS);
    // Through the supervisor (the only writer while it runs), not around it.
    expect(isSocket(ready.socket)).toBe(true);
    const add = timed(project, ["task", "add", "after the rm", "--json"]);
    expect(add.status, add.stderr).toBe(0);
    expect(add.ms).toBeLessThan(AT_ONCE_MS);

    // Deleted again: pause and resume reach it too.
    rmSync(ready.socket);
    const pause = timed(project, ["pause", "--json"]);
    expect(pause.status, pause.stderr).toBe(0);
    expect(pause.ms).toBeLessThan(AT_ONCE_MS);
    const resume = timed(project, ["resume", "--json"]);
    expect(resume.status, resume.stderr).toBe(0);

    const status = project.status() as unknown as { session: { status: string; supervisor: { pid: number; socket_gone?: boolean } } };
    expect(status.session).toMatchObject({ status: "active", supervisor: { pid: ready.supervisor_pid } });
    expect(status.session.supervisor.socket_gone).toBeUndefined();
    expect(project.apex(["memory", "show", "/x"]).stdout).toBe("1\n");
    expect(project.apex(["task", "list", "--json"]).stdout).toContain("after the rm");
    const stop = project.apex(["stop", "--json"]);
    expect(stop.status, stop.stderr).toBe(0);
    expect(project.alive(ready.supervisor_pid)).toBe(false);
  }, 60_000);
});
