// How `apex pause`, `resume` and `stop` (and `start --continue`, which stops the session in its
// way) wait on the supervisor, end to end with the built CLI: a third-party plugin whose hooks
// sleep longer than the idle window (APEX_PLUGIN_COMMAND_IDLE_MS, short here) is waited for while
// the supervisor sends its heartbeat; a supervisor whose hook holds its process, or one stopped
// with SIGSTOP, is given up on with what state the session may be in. Every process is ended by pid.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, groupMembers, isAlive, procInfo, signalIfAlive, waitFor } from "./fixtures/agents/harness.js";
import { slowHooksProject } from "./support/slow-hooks.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const continued: number[] = [];
afterEach(() => {
  // A supervisor a test stopped (SIGSTOP) is continued first, so that the cleanup's stop can end it.
  for (const pid of continued.splice(0)) signalIfAlive(pid, "SIGCONT");
});


/** The window is 2 s here (10 minutes by default): each hook below runs longer. */
const env = { APEX_PLUGIN_COMMAND_IDLE_MS: "2000" };

const slowProject = (): Project => slowHooksProject({ idle: "while true; do sleep 0.2; done" });

describe("pause, resume and stop with slow plugin hooks", () => {
  it("wait as long as the supervisor works on them, saying so on stderr (not with --json), and report what was done", () => {
    project = slowProject();
    const ready = project.start();
    const session = ready.session_id.slice(0, 8);
    // Before, the wait was a fixed 120 s whatever the supervisor did: a hook that took longer was
    // reported failed (APEX_E_TIMEOUT) and the pause completed after.
    writeFileSync(join(project.dir, "onPause"), "sleep 2500");
    const paused = project.apex(["pause"], { env });
    expect(paused.status, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(new RegExp(`^Paused session ${session}: \\d+ process(es)? of 1 agent stopped\\.`));
    expect(paused.stderr).toMatch(new RegExp(`^Still pausing session ${session} \\(\\d+ s so far\\): its supervisor \\(pid ${ready.supervisor_pid}\\) is at work on it \\(its plugins' onPause hooks run then`));
    expect(project.status().session?.status).toBe("paused");

    writeFileSync(join(project.dir, "onResume"), "sleep 2300");
    const resumed = project.apex(["resume", "--json"], { env });
    expect(resumed.status, resumed.stderr).toBe(0);
    // --json: the answer alone on stdout, nothing on stderr.
    expect(JSON.parse(resumed.stdout)).toMatchObject({ session_id: ready.session_id, status: "active" });
    expect(resumed.stderr).toBe("");

    writeFileSync(join(project.dir, "onStop"), "sleep 2500");
    const stopped = project.apex(["stop"], { env });
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toContain(`Stopped session ${session} (`);
    expect(stopped.stderr).toContain(`Still stopping session ${session} (`);
    expect(project!.alive(ready.supervisor_pid)).toBe(false);
  }, 60_000);
});

describe("a supervisor that shows no sign of life", () => {
  it("is given up on after the idle window when a hook holds its process, or in seconds when it is stopped (SIGSTOP), saying what the session may be in; what it was sent completes once it goes on", async () => {
    project = slowProject();
    const ready = project.start();
    // The hooks below run until the test lets them go (a file release-*): what the test does while one
    // runs, or the CLI's giving up before it ends, no longer races a hook of a fixed time on a loaded machine.
    writeFileSync(join(project.dir, "onPause"), "hold release-pause");
    const paused = project.apex(["pause", "--json"], { env });
    // Given up on before the hook let go (before, it waited for it, and succeeded).
    expect(paused.status).toBe(1);
    expect(paused.stdout).toBe("");
    // --json: one error object on stderr, no progress lines.
    const { error } = JSON.parse(paused.stderr) as { error: { code: string; message: string; hint: string; details: Record<string, unknown> } };
    expect(error.code).toBe("APEX_E_TIMEOUT");
    expect(error.message).toBe(
      `The supervisor of session ${ready.session_id.slice(0, 8)} (pid ${ready.supervisor_pid}) sent nothing, not even its heartbeat, for 2 s while pausing the session: it is frozen (a plugin hook that holds its process, an overloaded machine), and the wait is given up. The pause may be half done: the agents may be stopped already while the session is still recorded active; it completes if the supervisor goes on.`,
    );
    expect(error.hint).toContain("`apex stop --force` ends the session and its agents");
    expect(error.details).toMatchObject({ action: "pause", pid: ready.supervisor_pid, may_be_under_way: true, idle_ms: 2000 });
    // As it said: once the hook lets go, the pause is done.
    writeFileSync(join(project.dir, "release-pause"), "");
    await waitFor("the pause to complete", () => project!.status().session?.status === "paused", 20_000);

    // Ctrl-C ends the wait, not the resume: said (it was a silent exit 130), and the resume completes.
    writeFileSync(join(project.dir, "onResume"), "wait release-resume");
    const resume = project.apexAsync(["resume"], { env });
    await waitFor("the onResume hook to begin", () => existsSync(join(project!.dir, "onResume.began")), 20_000);
    resume.child.kill("SIGINT");
    const interrupted = await resume.done;
    expect(interrupted.status).toBe(130);
    expect(interrupted.stderr).toContain(`error[APEX_E_INTERRUPTED]: Interrupted while resuming session ${ready.session_id.slice(0, 8)}: the supervisor got the request and goes on with it. The resume may be half done:`);
    writeFileSync(join(project.dir, "release-resume"), "");
    await waitFor("the resume to complete", () => project!.status().session?.status === "active", 20_000);

    // Stopped (SIGSTOP) while its onStop hook runs: the stop is given up on in seconds, saying it may be half done; continued, it ends the session.
    const pid = ready.supervisor_pid;
    writeFileSync(join(project.dir, "onStop"), "wait release-stop");
    // A window longer than the ~2 s in which a stopped supervisor is told from a busy one.
    const stop = project.apexAsync(["stop"], { env: { APEX_PLUGIN_COMMAND_IDLE_MS: "8000" } });
    await waitFor("the onStop hook to begin", () => existsSync(join(project!.dir, "onStop.began")), 20_000);
    continued.push(pid);
    process.kill(pid, "SIGSTOP");
    const stopped = await stop.done;
    expect(stopped.status).toBe(1);
    expect(stopped.stderr).toContain(`error[APEX_E_TIMEOUT]: Session ${ready.session_id}'s supervisor (pid ${pid}) is stopped (SIGSTOP): it cannot answer session.stop. The stop may be half done: the agents may be ended, and the session recorded stopped, while the supervisor still runs its hooks; it exits once it goes on and is done.`);
    expect(stopped.stderr).toContain(`hint: \`kill -CONT ${pid}\` lets it go on`);
    expect(procInfo(pid)?.state).toBe("T");
    process.kill(pid, "SIGCONT");
    writeFileSync(join(project.dir, "release-stop"), "");
    await waitFor("the supervisor to exit", () => !isAlive(pid), 20_000);
    expect(project.status().session).toBeNull();
  }, 60_000);
});

describe("apex stop --force on a frozen supervisor", () => {
  it("gives it a few seconds of silence, not the whole window, then kills it and ends its agents", async () => {
    project = slowProject();
    const ready = project.start();
    // A pause whose hook holds the supervisor's process for 30 s, waited on through a long window.
    writeFileSync(join(project.dir, "onPause"), "block 30000");
    const long = { APEX_PLUGIN_COMMAND_IDLE_MS: "600000" };
    const pause = project.apexAsync(["pause"], { env: long });
    await waitFor("the onPause hook to begin", () => existsSync(join(project!.dir, "onPause.began")), 20_000);
    // The way out the errors name: before, it waited 120 s on the silent supervisor first.
    const began = Date.now();
    const stopped = project.apex(["stop", "--force"], { env: long, timeout: 25_000 });
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(Date.now() - began).toBeLessThan(20_000);
    expect(stopped.stdout).toContain(`Stopped session ${ready.session_id.slice(0, 8)} (its supervisor, pid ${ready.supervisor_pid}, did not answer and was killed;`);
    expect(project!.alive(ready.supervisor_pid)).toBe(false);
    expect(groupMembers(ready.agents[0]!.pgid!)).toEqual([]);
    expect((await pause.done).status).toBe(1);
  }, 60_000);
});

describe("apex start with a slow onStart hook", () => {
  it("waits as long as the starting supervisor sends its heartbeat; one whose hook holds its process is given up on after the window, and the session still starts", async () => {
    project = slowProject();
    // Before, the wait was a fixed 60 s, whatever the supervisor did (a big restore, a slow onStart hook).
    writeFileSync(join(project.dir, "onStart"), "sleep 2500");
    const started = project.apex(["start", "--task", "slow start"], { env });
    expect(started.status, started.stderr).toBe(0);
    expect(started.stdout).toContain("Session ");
    expect(started.stderr).toMatch(/^Still starting the session \(\d+ s so far\): its supervisor \(pid \d+\) is at work on it \(a restore, a checkpoint, its plugins' onStart hooks may take a while\); waiting as long as it is\. Ctrl-C ends only the wait\.$/m);
    // The hooks below run until the test lets them go (a file release-*): the CLI gives up, or the test
    // stops the supervisor, while one runs, with no hook of a fixed time for a loaded machine to outlast.
    writeFileSync(join(project.dir, "onStart"), "hold release-start");
    expect(project.apex(["stop"]).status).toBe(0);
    const frozen = project.apex(["start", "--continue", "last", "--json"], { env });
    expect(frozen.status).toBe(1);
    expect(frozen.stdout).toBe("");
    const { error } = JSON.parse(frozen.stderr) as { error: { code: string; message: string; details: { pid: number } } };
    expect(error.code).toBe("APEX_E_TIMEOUT");
    expect(error.message).toBe(`The supervisor (pid ${error.details.pid}) sent nothing, not even its heartbeat, for 2 s while the session started: it is frozen (a plugin hook that holds its process, an overloaded machine), and the wait is given up. The session may still start if it goes on.`);
    // As it said: once the hook lets go, the session runs.
    writeFileSync(join(project.dir, "release-start"), "");
    await waitFor("the session to run", () => project!.status().session?.status === "active", 20_000);

    // A supervisor stopped (SIGSTOP) as it starts is said in seconds (it was waited on for 60 s), and goes on once continued.
    expect(project.apex(["stop"]).status).toBe(0);
    writeFileSync(join(project.dir, "onStart"), "wait release-restart");
    const starting = project.apexAsync(["start", "--continue", "last"], { env: { APEX_PLUGIN_COMMAND_IDLE_MS: "8000" } });
    const began = join(project.dir, "onStart.began");
    const pid = await waitFor("the onStart hook to begin", () => existsSync(began) && Number(readFileSync(began, "utf8")) !== error.details.pid && Number(readFileSync(began, "utf8")), 20_000);
    continued.push(pid);
    process.kill(pid, "SIGSTOP");
    const stopped = await starting.done;
    expect(stopped.status).toBe(1);
    expect(stopped.stderr).toContain(`error[APEX_E_TIMEOUT]: The supervisor (pid ${pid}) is stopped (SIGSTOP) while the session starts: it cannot go on before a SIGCONT.`);
    expect(stopped.stderr).toContain(`hint: \`kill -CONT ${pid}\` lets it go on, and the session then starts`);
    process.kill(pid, "SIGCONT");
    writeFileSync(join(project.dir, "release-restart"), "");
    await waitFor("the session to run", () => project!.status().session?.status === "active", 20_000);
  }, 60_000);
});
