// `apex pause` and `stop` sent while `start --continue` is still starting, before its supervisor
// listens (it ends the old agents first, which here ignore SIGTERM and take 2 s each), end to end
// with the built CLI: waited for while the supervisor beats (the mtime of supervisor.log), then
// queued behind the start; a supervisor stopped (SIGSTOP) meanwhile is said to be, not "not
// running". The idle window is short here (APEX_PLUGIN_COMMAND_IDLE_MS). Every process is ended by pid.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, isAlive, signalIfAlive, waitFor } from "./fixtures/agents/harness.js";

let project: Project | undefined;
const started: number[] = [];
afterEach(() => {
  for (const pid of started) signalIfAlive(pid, "SIGCONT");
  project?.cleanup();
  for (const pid of started.splice(0)) signalIfAlive(pid, "SIGKILL");
  project = undefined;
});

// Each agent writes its pid to `trapped` once it ignores SIGTERM (a reap before that ends it at once).
const stubborn = `["-c", "trap '' TERM; echo $$ >> trapped; while true; do sleep 0.2; done"]`;
const config = ["agents:", "  a:", "    command: sh", `    args: ${stubborn}`, "  b:", "    command: sh", `    args: ${stubborn}`, "plugins: {}", ""].join("\n");

/** Kills the session's supervisor (its agents go on), runs `start --continue last`, and returns once the new supervisor is reaping them: its pid and the start. */
async function continuing(p: Project, oldPid: number, agents: Array<{ pid: number | null }>) {
  const trapped = join(p.dir, "trapped");
  await waitFor("the agents to ignore SIGTERM", () => existsSync(trapped) && agents.every((agent) => readFileSync(trapped, "utf8").split("\n").includes(String(agent.pid))), 10_000);
  process.kill(oldPid, "SIGKILL");
  await waitFor("the supervisor to die", () => !isAlive(oldPid));
  const start = p.apexAsync(["start", "--continue", "last", "--json"]);
  const log = join(p.storeDir, "supervisor.log");
  const pid = await waitFor("the new supervisor to begin", () => Number(/continuing \(pid (\d+)\)/.exec(readFileSync(log, "utf8"))?.[1]) || undefined, 20_000);
  started.push(pid);
  return { pid, start };
}

describe("pause and stop before a continuing supervisor listens", () => {
  it("wait while it beats, saying so on stderr, and are then carried out behind the start", async () => {
    project = new Project(config, "apex-session-", { APEX_PLUGIN_COMMAND_IDLE_MS: "1500" });
    const ready = project.start([]);
    const session = ready.session_id.slice(0, 8);
    const { pid, start } = await continuing(project, ready.supervisor_pid, ready.agents);
    // Before, it waited a fixed 60 s and said nothing meanwhile; a longer restore was "not running".
    const paused = project.apex(["pause"]);
    expect(paused.status, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(new RegExp(`^Paused session ${session}: `));
    expect(paused.stderr).toMatch(new RegExp(`^Still pausing session ${session} \\(\\d+ s so far\\): its supervisor \\(pid ${pid}\\) is at work on it \\(it is still starting: \`start --continue\` ends the old agents`));
    expect((await start.done).status).toBe(0);
    expect(project.status().session?.status).toBe("paused");
  }, 60_000);

  it("say that a supervisor stopped (SIGSTOP) while it starts is stopped, and that nothing was sent", async () => {
    project = new Project(config, "apex-session-", { APEX_PLUGIN_COMMAND_IDLE_MS: "8000" });
    const ready = project.start([]);
    const session = ready.session_id.slice(0, 8);
    const { pid, start } = await continuing(project, ready.supervisor_pid, ready.agents);
    process.kill(pid, "SIGSTOP");
    const paused = project.apex(["pause", "--json"]);
    // Before: "Cannot pause: session … is active (its supervisor is not running)", with --continue as the way on.
    expect(paused.status).toBe(1);
    expect(paused.stdout).toBe("");
    const { error } = JSON.parse(paused.stderr) as { error: { code: string; message: string; hint: string; details: Record<string, unknown> } };
    expect(error.code).toBe("APEX_E_TIMEOUT");
    expect(error.message).toBe(`Session ${session}'s supervisor (pid ${pid}) is stopped (SIGSTOP) while it starts, before it listens: it cannot take the pause, and nothing was sent.`);
    expect(error.hint).toContain(`kill -CONT ${pid}`);
    expect(error.details).toMatchObject({ stopped: true, starting: true, pid });
    process.kill(pid, "SIGCONT");
    await start.done;
    await waitFor("the session to run", () => project!.status().session?.status === "active", 20_000);
  }, 60_000);
});

describe("stop --force before a continuing supervisor listens", () => {
  it("kills it and says so (it said 'not running'), and the start says the session was stopped meanwhile (it said a crash, with its log)", async () => {
    project = new Project(config, "apex-session-");
    const ready = project.start([]);
    const session = ready.session_id.slice(0, 8);
    const { pid, start } = await continuing(project, ready.supervisor_pid, ready.agents);
    const stopped = project.apex(["stop", "--force"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(new RegExp(`^Stopped session ${session} \\(its supervisor, pid ${pid}, did not answer and was killed; \\d+ leftover process(es)? ended\\)\\.\n$`));
    const result = await start.done;
    expect(result.status).toBe(1);
    expect(result.stdout).toBe("");
    expect(JSON.parse(result.stderr).error).toMatchObject({
      code: "APEX_E_PROCESS",
      message: `The supervisor (pid ${pid}) exited (SIGKILL) before the session started: session ${session} was stopped meanwhile (stopped by the user (its supervisor, pid ${pid}, did not answer and was killed)), its agents ended with it.`,
      details: { session_id: ready.session_id, status: "stopped", supervisor_pid: pid },
    });
    expect(isAlive(pid)).toBe(false);
    expect(project.status().session).toBeNull();
  }, 60_000);
});
