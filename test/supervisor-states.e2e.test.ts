// The session's state machine and control socket, end to end with the built CLI and real
// processes: a resume that cannot continue every process (a tracer holds one in its trace stop), a
// pause that fails while an agent exits, a session being stopped, signals sent to an agent from
// outside APEX, and long or large answers of plugin commands run by the supervisor. What the store
// says (`apex status`) is checked against /proc. Every process a test starts is ended by pid or
// process group.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, groupMembers, procInfo, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { buildStopEater, buildStopHolder } from "./support/vfork-hold.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
let buildDir: string | undefined;
const tracers: ChildProcess[] = [];
afterEach(() => {
  for (const tracer of tracers.splice(0)) tracer.kill("SIGKILL");
  if (buildDir) rmSync(buildDir, { recursive: true, force: true });
  buildDir = undefined;
});

/** Starts `binary PID ...more` (a tracer fixture) and waits for its "ready"; its stdin stays open until the test ends it. */
async function trace(binary: string, pid: number, ...more: string[]): Promise<ChildProcess> {
  const tracer = spawn(binary, [String(pid), ...more], { stdio: ["pipe", "pipe", "inherit"] });
  tracers.push(tracer);
  let said = "";
  tracer.stdout!.setEncoding("utf8").on("data", (chunk: string) => (said += chunk));
  await waitFor("the tracer", () => said.includes("ready"));
  return tracer;
}

const loop = "while true; do sleep 0.2; done";

describe("a resume that cannot continue every process", () => {
  it("stops again what it continued and says the session stays paused, as recorded; once the tracer lets go, resume works", async () => {
    buildDir = mkdtempSync(join(tmpdir(), "apex-stop-holder-"));
    const holder = buildStopHolder(buildDir);
    project = new Project(shellAgents({ held: loop, plain: loop }), "apex-session-", { APEX_PAUSE_VERIFY_MS: "1000" });
    const ready = project.start(["--task", "hold on"]);
    const held = ready.agents.find((agent) => agent.name === "held")!;
    const plain = ready.agents.find((agent) => agent.name === "plain")!;
    // A debugger stops `held` (trace stop, state t): no SIGCONT continues it while it holds it.
    const tracer = await trace(holder, held.pid!);
    expect(procInfo(held.pid!)?.state).toBe("t");
    const paused = project.apex(["pause"]);
    expect(paused.status, paused.stderr).toBe(0);

    const resumed = project.apex(["resume", "--json"]);
    expect(resumed.status).toBe(1);
    const { error } = JSON.parse(resumed.stderr) as { error: { code: string; message: string; hint: string; details: { status: string } } };
    expect(error.code).toBe("APEX_E_PROCESS");
    expect(error.message).toBe(`Processes ${held.pid} (state t) did not continue within 1.0 s. The session stays paused: every process of it was stopped again.`);
    expect(error.hint).toContain("held by its tracer");
    expect(error.details.status).toBe("paused");
    // Before, plain ran on under a session (and agents) recorded paused. Stopped (T), or in I/O (D)
    // with its SIGSTOP pending, which pause counts as paused too: it stops the moment the I/O ends.
    for (const member of groupMembers(plain.pgid!)) expect(`${member.pid}:${member.state}`).toMatch(new RegExp(`^${member.pid}:[TD]$`));
    const report = project.status();
    expect(report.session!.status).toBe("paused");
    expect(Object.fromEntries(report.agents.map((agent) => [agent.name, agent.status]))).toEqual({ held: "paused", plain: "paused" });

    // The debugger lets go: the next resume continues everything.
    tracer.stdin!.end();
    await waitFor("the tracer to exit", () => tracer.exitCode !== null);
    const again = project.apex(["resume"]);
    expect(again.status, again.stderr).toBe(0);
    for (const agent of [held, plain]) for (const member of groupMembers(agent.pgid!)) expect(`${member.pid}:${member.state}`).not.toBe(`${member.pid}:T`);
    expect(project.status().session!.status).toBe("active");
  }, 60_000);
});

describe("a pause that fails while an agent exits", () => {
  it("leaves the agent that exited as its exit recorded it (failed), not running", async () => {
    buildDir = mkdtempSync(join(tmpdir(), "apex-stop-eater-"));
    const eater = buildStopEater(buildDir);
    project = new Project(shellAgents({ traced: loop, plain: loop }).replace(/(  plain:\n)/, "$1    restart: never\n"), "apex-session-", { APEX_PAUSE_VERIFY_MS: "2500" });
    const ready = project.start(["--task", "hold on"]);
    const traced = ready.agents.find((agent) => agent.name === "traced")!;
    const plain = ready.agents.find((agent) => agent.name === "plain")!;
    // traced never stops (its tracer takes every SIGSTOP back): the pause fails after 2.5 s. The
    // tracer leaves it 50 ms in each trace stop (state t) first, as one not scheduled at once on a
    // loaded machine does: the pause took such a moment, when every process showed T or t, as
    // the session paused, and succeeded. It fails whatever the tracer's pace now.
    await trace(eater, traced.pid!, "50");
    const pause = project.apexAsync(["pause"]);
    // Meanwhile plain, stopped, is killed: its exit is recorded while the pause waits.
    await waitFor("plain to stop", () => procInfo(plain.pid!)?.state === "T");
    process.kill(plain.pid!, "SIGKILL");
    await waitFor("plain's exit to be recorded", () => project!.status().agents.find((agent) => agent.name === "plain")!.status === "failed");
    const failed = await pause.done;
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("APEX_E_PROCESS");
    const report = project.status();
    expect(report.session!.status).toBe("active");
    expect(Object.fromEntries(report.agents.map((agent) => [agent.name, agent.status]))).toEqual({ traced: "running", plain: "failed" });
  }, 60_000);
});

describe("a pause of a paused session, a resume of an active one", () => {
  it("say it is already so (it said the session 'cannot resume', with a hint to pause it); start names the command that runs a session beside it, start --continue of a paused one names resume", () => {
    project = new Project(shellAgents({ idle: loop }));
    const { session_id } = project.start();
    const refused = (args: string[]) => {
      const result = project!.apex([...args, "--json"]);
      expect(result.status, result.stderr).toBe(4);
      return JSON.parse(result.stderr).error;
    };
    expect(refused(["resume"])).toEqual({ code: "APEX_E_SESSION_STATE", message: "The session is already active: there is nothing to resume.", exitCode: 4, exit_code: 4, hint: "It runs; `apex pause` pauses it.", details: { session_id, status: "active" } });
    expect(project.apex(["pause"]).status).toBe(0);
    expect(refused(["pause"])).toEqual({ code: "APEX_E_SESSION_STATE", message: "The session is already paused: there is nothing to pause.", exitCode: 4, exit_code: 4, hint: "`apex resume` continues it.", details: { session_id, status: "paused" } });
    // start --continue of it, paused: resume is what continues it.
    // Named (a bare `apex status` in the project's tree is the project's session, not a branch running in its worktree).
    const short = session_id.slice(0, 8);
    expect(refused(["start", "--continue", "last"]).hint).toBe(`It is paused: \`apex --session ${short} resume\` continues it. See it with \`apex --session ${short} status\`; \`apex start --continue ${short}/CHECKPOINT\` goes back to one of its checkpoints (\`apex --session ${short} checkpoint list\`).`);
    // `branch with --worktree` read as an option of start, which has none.
    expect(refused(["start", "--task", "another"]).hint).toBe("End it with `apex stop` first, or `apex resume` it, or run another beside it in a worktree of its own (`apex session branch CHECKPOINT NAME --worktree`); `apex status` shows it.");
  });
});

describe("a session being stopped", () => {
  it("is shown as stopping while it stops, and pause and resume are refused at once, not after the stop; start and start --continue say it is stopping, not active", async () => {
    // A beforeStop hook (a slow upload, say) that holds the stop until the test writes `release`.
    project = new Project(shellAgents({ idle: loop }).replace("plugins: {}", "plugins:\n  ./gate.mjs: {}"));
    const release = join(project.dir, "release");
    const gate = `import { existsSync } from "node:fs";\nexport default { name: "gate", apply(apex) { apex.hooks.beforeStop.tapPromise("gate", async () => { while (!existsSync(${JSON.stringify(release)})) await new Promise((done) => setTimeout(done, 50)); }); } };\n`;
    writeFileSync(join(project.dir, "gate.mjs"), gate);
    project.start();
    const stop = project.apexAsync(["stop", "--json"]);
    try {
      const report = await waitFor("the session to show as stopping", () => {
        const status = project!.status();
        return status.session?.status === "stopping" && status;
      });
      expect(report.session!.stored_status).toBe("active");
      for (const action of ["pause", "resume"]) {
        const began = Date.now();
        const refused = project.apex([action]);
        expect(refused.status).toBe(4);
        expect(refused.stderr).toContain(`error[APEX_E_SESSION_STATE]: The session is stopping; it cannot ${action}.`);
        // Answered at once (it was answered once the stop had ended).
        expect(stop.child.exitCode).toBeNull();
        expect(Date.now() - began).toBeLessThan(10_000);
      }
      // Before: "is active in the project's working tree … End it with `apex stop` first", while its stop ran.
      const short = report.session!.session_id.slice(0, 8);
      for (const [args, then] of [
        [["start", "--task", "next"], "a new session can start once it has stopped"],
        [["start", "--continue", "last"], `once it has stopped, \`apex start --continue ${short}\` continues it`],
      ] as const) {
        const refused = project.apex([...args, "--json"]);
        expect(refused.status, refused.stderr).toBe(4);
        expect(JSON.parse(refused.stderr).error).toEqual({
          code: "APEX_E_SESSION_ACTIVE",
          message: `Session ${short} is stopping (its agents are being ended); ${then}.`,
          exitCode: 4,
          exit_code: 4,
          hint: "Wait for it: `apex status` shows it as stopping until it has stopped, and `apex stop` returns once it has. Then run this command again.",
          details: { session_id: report.session!.session_id, status: "stopping" },
        });
      }
      // `session list` says so too, as its supervisor does (it said active: the record's status until the stop is written).
      const listed = project.apex(["session", "list", "--json"]);
      expect(listed.status, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ session_id: report.session!.session_id, status: "stopping" })]);
      const text = project.apex(["session", "list"]);
      expect(text.stdout).toMatch(new RegExp(`^${report.session!.session_id}\\s+stopping\\s`, "m"));
      expect(stop.child.exitCode).toBeNull();
    } finally {
      writeFileSync(release, "");
    }
    const stopped = await stop.done;
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout).status).toBe("stopped");
    expect(project.status().session).toBeNull();
  }, 60_000);
});

/**
 * A plugin whose command `apex slow STEPS MS` prints a line every MS ms, STEPS times; with --quiet it prints only once done; with --block it blocks its process for MS ms; with --huge it prints one line of MS MiB.
 * While the file slow-hold exists, it holds after its first line (with --block: holds its process) until the file is gone: for a test that
 * acts while it runs (a command of a fixed time was a window that a loaded machine could miss).
 */
const SLOW_PLUGIN = `import { existsSync, readFileSync } from "node:fs";
const tick = new Int32Array(new SharedArrayBuffer(4));
export default {
  name: "slow",
  apply(apex) {
    // A checkpoint taken once the file slow-checkpoint exists takes as many ms as it says (a large memory, a slow disk).
    apex.hooks.beforeCheckpoint.tapPromise("slow", async (draft) => {
      const slow = new URL("./slow-checkpoint", import.meta.url);
      if (existsSync(slow)) await new Promise((resolve) => setTimeout(resolve, Number(readFileSync(slow, "utf8"))));
      return draft;
    });
    apex.registerCommand({
      name: "slow",
      arguments: [{ syntax: "<steps>" }, { syntax: "<ms>" }],
      options: [{ flags: "--quiet" }, { flags: "--block" }, { flags: "--huge" }],
      async action({ args: [steps, ms], options }, context) {
        const hold = new URL("./slow-hold", import.meta.url);
        if (options.huge) return void context.print("x".repeat(Number(ms) * 1024 * 1024));
        if (options.block) { const end = Date.now() + Number(ms); while (existsSync(hold) || Date.now() < end) Atomics.wait(tick, 0, 0, 20); }
        for (let step = 1; step <= Number(steps) && !options.block; step++) {
          await new Promise((resolve) => setTimeout(resolve, Number(ms)));
          if (!options.quiet) context.print("step " + step);
          while (existsSync(hold)) await new Promise((resolve) => setTimeout(resolve, 20));
        }
        context.print("done");
        return 3;
      },
    });
  },
};
`;

describe("a long plugin command run by the supervisor", () => {
  it("prints its output as it comes and is not cut off while it makes progress; only a supervisor silent for the whole window is given up on; output too large for a reply is refused clearly", async () => {
    project = new Project(`${shellAgents({ idle: loop }).replace("plugins: {}", "plugins:\n  checkpoint: {}\n  ./slow.mjs: {}")}`);
    writeFileSync(join(project.dir, "slow.mjs"), SLOW_PLUGIN);
    // The socket's limit is 8 MiB here (256 MiB by default; APEX_RPC_MAX_LINE_BYTES, in the supervisor's
    // environment and the command's): the output over it below is 9 MiB, not 257, on the same path.
    const limits = { APEX_RPC_MAX_LINE_BYTES: String(8 * 1024 * 1024) };
    project.start(undefined, limits);
    // The window is 2 s here (10 minutes by default): the command runs 2.4 s.
    const env = { APEX_PLUGIN_COMMAND_IDLE_MS: "2000" };
    const hold = join(project.dir, "slow-hold");
    writeFileSync(hold, "");
    const run = project.apexAsync(["slow", "4", "600"], { env });
    // Its first line is shown while it still runs (it was all shown at the end, and cut off after 600 s).
    await waitFor("the first step to be printed", () => run.output().includes("step 1\n"), 10_000);
    expect(run.output()).not.toContain("done");
    rmSync(hold);
    const ran = await run.done;
    expect(ran.stderr).toBe("");
    expect(ran.status).toBe(3);
    expect(ran.stdout).toBe("step 1\nstep 2\nstep 3\nstep 4\ndone\n");
    // Ctrl-C ends the wait, not the command, and says so (it was a silent exit 130).
    writeFileSync(hold, "");
    const cut = project.apexAsync(["slow", "3", "600"], { env });
    await waitFor("the first step to be printed", () => cut.output().includes("step 1\n"), 10_000);
    cut.child.kill("SIGINT");
    const interrupted = await cut.done;
    expect(interrupted.status).toBe(130);
    expect(interrupted.stderr).toMatch(/^error\[APEX_E_INTERRUPTED\]: Interrupted while `apex slow` ran in the session's supervisor \(pid \d+\): it goes on there, and what it prints from now on is not shown\.$/m);
    rmSync(hold);
    // Silent for 2.8 s but running: the supervisor's heartbeat keeps the wait going.
    const quiet = project.apex(["slow", "4", "700", "--quiet"], { env });
    expect([quiet.status, quiet.stdout, quiet.stderr]).toEqual([3, "done\n", ""]);
    // A supervisor that sends nothing (its event loop held until the test lets it go) is given up on after the window.
    writeFileSync(hold, "");
    const blocked = project.apex(["slow", "1", "4000", "--block"], { env });
    expect(blocked.status).toBe(1);
    expect(blocked.stderr).toContain("error[APEX_E_TIMEOUT]: The supervisor sent nothing on plugin.command (no output, no heartbeat) for 2 s.");
    rmSync(hold);
    // So is a checkpoint the supervisor takes for the CLI (it waited a fixed 600 s): one that takes 5 s
    // is waited for through a 3 s window (wider than the commands': a loaded machine's supervisor
    // can be held a second by its own work on a checkpoint).
    writeFileSync(join(project.dir, "slow-checkpoint"), "5000");
    const checkpoint = project.apex(["checkpoint", "create", "slow one"], { env: { APEX_PLUGIN_COMMAND_IDLE_MS: "3000" } });
    expect(checkpoint.status, checkpoint.stderr).toBe(0);
    expect(checkpoint.stdout).toContain("Created checkpoint-");
    // Output over what one reply carries (256 MiB of JSON; 8 MiB here) is refused by the supervisor with a clear
    // error (it was sent whole, then refused by the CLI as an unreadable APEX_E_RPC).
    const huge = project.apex(["slow", "1", "9", "--huge"], { env: limits });
    expect([huge.status, huge.stdout]).toEqual([2, ""]);
    expect(huge.stderr).toContain("error[APEX_E_TOO_LARGE]: The answer is larger than one reply over the supervisor's socket carries (8 MiB of JSON).");
    expect(huge.stderr).toContain("hint: Ask for less at a time");
  }, 60_000);
});

describe("SIGSTOP and SIGCONT sent to an agent from outside APEX", () => {
  it("apex status names the process out of step with its agent's status, and pause and resume still work", () => {
    project = new Project(shellAgents({ solo: loop }));
    const ready = project.start();
    const pid = ready.agents[0]!.pid!;
    process.kill(pid, "SIGSTOP");
    const stopped = project.apex(["status"]);
    expect(stopped.stdout).toContain(`  solo: pid ${pid} stopped (state T) by a signal from outside APEX (SIGSTOP, a debugger); \`kill -CONT PID\` lets it go on`);
    process.kill(pid, "SIGCONT");
    expect(project.apex(["pause"]).status).toBe(0);
    process.kill(pid, "SIGCONT");
    const continued = project.apex(["status"]);
    expect(continued.stdout).toContain(`  solo: pid ${pid} running although the session is paused (continued from outside APEX: SIGCONT)`);
    expect(project.apex(["resume"]).status).toBe(0);
    const resumed = project.apex(["status"]);
    expect(resumed.stdout).not.toContain("outside APEX");
    expect(procInfo(pid)?.state).not.toBe("T");
  }, 60_000);
});
