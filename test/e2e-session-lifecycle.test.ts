// Sessions end to end: start, status, pause (state T down to grandchildren), resume, checkpoint,
// stop, --continue and refusals on each storage backend (forEachBackend: LMDB, and PostgreSQL
// through APEX_STORE_URL on the run's shared cluster); logs and --attach, which do not depend on
// the store, on LMDB. Real processes, real /proc, the built CLI.
import { appendFileSync, existsSync, linkSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findSession } from "../core/session/sessions.js";
import { FIXTURES, Project, asleepInEventLoop, groupMembers, isAlive, procInfo, shellAgents, waitFor, type CliResult, type ProcInfo, type StatusJson } from "./fixtures/agents/harness.js";
import { FULL_CLI_ENV, json } from "./helpers/cli.js";
import { stopProgress } from "../core/session/proc.js";
import { forEachBackend } from "./support/backends.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

// alpha: a shell with a grandchild tree (sh → sh → sleep); beta: prints to stdout and stderr, then loops.
const CONFIG = shellAgents({
  alpha: "sh -c 'sleep 1000 & wait' & while true; do sleep 0.2; done",
  beta: "echo hello from beta; echo trouble on stderr >&2; while true; do sleep 0.2; done",
});

// Agents whose processes, uptimes aside, stay as they are: `apex status` prints the same twice.
const QUIET = shellAgents({ alpha: "exec sleep 1000", beta: "sleep 1000" });

// With checkpoints, and a short lease (renewed every third of a second).
const CHECKPOINTED = shellAgents({ alpha: "while true; do sleep 0.2; done" }, "session:\n  lease_ttl: 1\n").replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

/**
 * True once `pid` holds `file` open (/proc/PID/fd). `logs -f` opens each log once it printed its
 * last lines and reads on from where they ended: what is written from then on is followed.
 */
function holdsOpen(pid: number | undefined, file: string): boolean {
  if (pid === undefined) return false;
  try {
    const real = realpathSync(file); // what /proc names it by (a temporary directory may be a symlink)
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === real;
      } catch {
        return false; // closed meanwhile
      }
    });
  } catch {
    return false;
  }
}

function allPids(status: StatusJson): number[] {
  return status.agents.flatMap((agent) => agent.processes);
}

/** A process's environment (empty when it is gone or not ours to read). */
function environ(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  } catch {
    return [];
  }
}

/**
 * `apex pause`: a process in uninterruptible I/O (state D; a PostgreSQL cluster fsyncs every
 * commit) acts on SIGSTOP only once the I/O completes, and pause then refuses with
 * APEX_E_PROCESS, telling to try again: so it is tried again once.
 */
/**
 * `apex status` and `apex status --json` by their fast path (bin/apex.js: dist/cli/status-main.js)
 * print, exit and fail exactly as by the full CLI (FULL_CLI_ENV), run side by side. A running
 * session's uptimes may tick between the two: the pair is run again then, up to 5 times, and compared without them. Returns
 * the fast path's results, text and JSON, for the test's own expectations.
 */
/** A status's output with its agents' uptimes (`"uptime_seconds": 19`, `1m5s` in the table, its columns' padding) left out. */
function untimed(result: CliResult): CliResult {
  return { ...result, stdout: result.stdout.replace(/"uptime_seconds": \d+/g, '"uptime_seconds": N').replace(/(?<![\w.])\d+[dhms](?:\d+[hms])*\b/g, "T").replace(/ +/g, " ") };
}

async function expectStatusSameAsFullCli(target: Project, env: NodeJS.ProcessEnv = {}): Promise<[CliResult, CliResult]> {
  const pair = (args: string[]) => Promise.all([target.apexAsync(args, { env }).done, target.apexAsync(args, { env: { ...env, ...FULL_CLI_ENV } }).done]);
  const same = async (args: string[]) => {
    let [fast, full] = await pair(args);
    for (let i = 1; i < 5 && JSON.stringify(fast) !== JSON.stringify(full); i++) [fast, full] = await pair(args);
    // On a loaded machine the full CLI can start seconds after the fast path, every time: uptimes apart, the same.
    expect(untimed(fast), args.join(" ")).toEqual(untimed(full));
    return fast;
  };
  return Promise.all([same(["status"]), same(["status", "--json"])]);
}

function pause(target: Project, args: string[] = []): CliResult {
  const first = target.apex(["pause", ...args]);
  return first.status !== 0 && /APEX_E_PROCESS.*state D/.test(first.stderr) ? target.apex(["pause", ...args]) : first;
}

forEachBackend((backend) => describe("apex start / status / pause / resume / checkpoint / stop / --continue", () => {
  it("runs agents in their own process groups, pauses every process (grandchildren too) and resumes them", async () => {
    project = new Project(CONFIG, undefined, await backend.env());
    const ready = project.start(["--task", "Implement user authentication"]);
    expect(ready.agents.map((agent) => agent.name)).toEqual(["alpha", "beta"]);
    for (const agent of ready.agents) {
      // detached: each agent leads its own process group
      expect(agent.pgid).toBe(agent.pid);
      expect(procInfo(agent.pid!)?.pgrp).toBe(agent.pid);
    }

    // alpha's group: sh (leader), the inner sh, its sleep (a grandchild), the loop's sleep.
    const alpha = ready.agents.find((agent) => agent.name === "alpha")!;
    await waitFor("alpha's grandchild", () => groupMembers(alpha.pgid!).some((member) => member.ppid !== alpha.pid && member.pid !== alpha.pid));

    const status = project.status();
    expect(status.session).toMatchObject({ session_id: ready.session_id, status: "active" });
    expect(status.session!.supervisor).toMatchObject({ pid: ready.supervisor_pid, alive: true });
    for (const agent of status.agents) {
      expect(agent).toMatchObject({ status: "running", alive: true, restarts: 0 });
      expect(agent.uptime_seconds).toBeGreaterThanOrEqual(0);
      expect(typeof agent.cpu_seconds).toBe("number");
    }

    const paused = pause(project, ["--json"]);
    expect(paused.status, paused.stderr).toBe(0);
    expect(JSON.parse(paused.stdout)).toMatchObject({ session_id: ready.session_id, name: null, status: "paused", agents: 2 });
    // When pause returns, every process of every agent group is stopped, grandchildren included: in
    // state T, or still in D with the stop under way (its SIGSTOP pending, or taken by another of
    // its threads), which it carries out as its sleep ends (under disk load, or a vfork parent
    // whose child stopped first, which stays in D while paused); none is left running.
    for (const agent of ready.agents) {
      const members = groupMembers(agent.pgid!);
      expect(members.length).toBeGreaterThan(0);
      expect(members.filter((member) => stopProgress(member) === "running").map((member) => `${member.pid}:${member.state}`)).toEqual([]);
    }
    const grandchild = groupMembers(alpha.pgid!).find((member) => member.ppid !== alpha.pid && member.pid !== alpha.pid)!;
    expect(stopProgress(grandchild)).not.toBe("running");

    const whilePaused = project.status();
    expect(whilePaused.session!.status).toBe("paused");
    expect(whilePaused.agents.map((agent) => (agent.process_state === "D" ? "T" : agent.process_state))).toEqual(["T", "T"]); // D: stopping (above)
    // Paused twice is refused with a conflict, and says how to go on.
    const again = project.apex(["pause"]);
    expect(again.status).toBe(4);
    expect(again.stderr).toContain("APEX_E_SESSION_STATE");
    expect(again.stderr).toContain("apex resume");

    const resumed = project.apex(["resume", "--json"]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ session_id: ready.session_id, name: null, status: "active" });
    for (const agent of ready.agents) {
      for (const member of groupMembers(agent.pgid!)) expect(["R", "S", "D"]).toContain(member.state);
    }
    expect(project.status().session!.status).toBe("active");
  });

  it("refuses a second session (exit 4, APEX_E_SESSION_ACTIVE) and stop ends every process", async () => {
    project = new Project(CONFIG, undefined, await backend.env());
    const ready = project.start();
    await waitFor("agent processes", () => allPids(project!.status()).length >= 4);
    const pids = allPids(project.status()).map((pid) => ({ pid, start: procInfo(pid)?.startTime }));

    const second = project.apex(["start", "--task", "another"]);
    expect(second.status).toBe(4);
    expect(second.stderr).toContain("APEX_E_SESSION_ACTIVE");
    expect(second.stderr).toMatch(/apex stop/);
    expect(second.stderr).toMatch(/--continue|resume|apex status/);

    // Stopping a paused session works too: the stopped groups get SIGCONT after SIGTERM.
    // In text the session is named as the other commands name it: an unnamed one by its uuid's short form.
    const paused = pause(project);
    expect(paused.status).toBe(0);
    expect(paused.stdout).toMatch(new RegExp(`^Paused session ${ready.session_id.slice(0, 8)}: \\d+ processes of 2 agents stopped\\.`));
    const stopped = project.apex(["stop", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ session_id: ready.session_id, name: null, status: "stopped" });
    for (const { pid, start } of pids) expect(isAlive(pid, start), `pid ${pid} still runs`).toBe(false);
    expect(project!.alive(ready.supervisor_pid)).toBe(false);

    const status = project.status();
    expect(status.session).toBeNull();
    const history = JSON.parse(project.apex(["session", "history", "--json"]).stdout);
    expect(history).toEqual([expect.objectContaining({ session_id: ready.session_id, status: "stopped", outcome: "stopped by the user" })]);
    // The session's data stays for later reports; only the record moved to history.
    const record = JSON.parse(project.apex(["memory", "show", `/sessions/history/${ready.session_id}`, "--json"]).stdout);
    expect(record.value).toMatchObject({ status: "stopped", initial_task: "test session" });
    expect(project.apex(["memory", "show", "/sessions/current"]).status).toBe(3);
    expect(project.apex(["memory", "query", `/sessions/${ready.session_id}/agents/*`, "--keys"]).stdout).toContain("/agents/alpha");

    // A new session may start now.
    const next = project.start(["--task", "next"]);
    expect(next.session_id).not.toBe(ready.session_id);
    expect(JSON.parse(project.apex(["session", "list", "--json"]).stdout).map((row: { status: string }) => row.status)).toEqual(["active", "stopped"]);
  });

  it("a session record overwritten by hand (memory set --force) does not keep its supervisor alive: stop ends it and every agent, and the listings still print", async () => {
    project = new Project(CONFIG, undefined, await backend.env());
    const ready = project.start();
    await waitFor("agent processes", () => allPids(project!.status()).length >= 4);
    const pids = allPids(project.status()).map((pid) => ({ pid, start: procInfo(pid)?.startTime }));
    expect(project.apex(["memory", "set", "--force", `/sessions/${ready.session_id}`, '{"x": 1}']).status).toBe(0);
    // It was: APEX_E_INTERNAL "session.history is not iterable", and a supervisor that ignored SIGTERM from then on.
    const stopped = project.apex(["stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(new RegExp(`^Stopped session ${ready.session_id.slice(0, 8)} \\(\\d+ processes ended\\)\\.\\n$`));
    await waitFor("the supervisor to exit", () => !isAlive(ready.supervisor_pid), 15_000);
    for (const { pid, start } of pids) expect(isAlive(pid, start), `pid ${pid} still runs`).toBe(false);
    for (const args of [["session", "list"], ["status"], ["checkpoint", "list"]]) {
      const listed = project.apex(args);
      expect(listed.status, `${args.join(" ")}: ${listed.stderr}`).toBe(0);
      expect(listed.stderr).not.toContain("APEX_E_INTERNAL");
      // The record has no session_id, status or created_at: shown as unknown (or "-" in a table), never "undefined".
      expect(listed.stdout, args.join(" ")).not.toContain("undefined");
    }
    expect(project.apex(["status"]).stdout).toContain("Last session: unknown stopped");
    // The next session starts as usual.
    expect(project.start(["--task", "next"]).session_id).not.toBe(ready.session_id);
  });

  it("checkpoints, idles without a revision while its lease is renewed, stops, and --continue brings it back with its id, tasks, memory and history", async () => {
    project = new Project(CHECKPOINTED, undefined, await backend.env());
    const first = project.start(["--task", "first"]);
    expect(project.apex(["task", "add", "carry over"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/design/auth", '{"method":"jwt"}']).status).toBe(0);
    const checkpoint = json<{ id: string }>(project.apex(["checkpoint", "create", "before the stop", "--json"]));

    // Idle while the supervisor renews its lease (every third of the ttl) several times, none of them a revision:
    // renewals seen in the store, not a fixed 3 s, in which a loaded machine's supervisor may renew none.
    const store = await backend.openProject(project.dir, { readOnly: true });
    const revision = store.revision();
    const lease = findSession(store, first.session_id)!.supervisor!.lease_expires_at!;
    const leases = new Set([lease]);
    await waitFor("three renewals of the lease", () => leases.add(findSession(store, first.session_id)!.supervisor!.lease_expires_at!).size > 3, 30_000);
    expect(store.revision()).toBe(revision);
    expect(Array.from(store.changesSince(revision))).toEqual([]);
    expect(Date.parse(findSession(store, first.session_id)!.supervisor!.lease_expires_at!)).toBeGreaterThan(Date.parse(lease));
    expect(project.status().session).toMatchObject({ status: "active", lease_expires_at: expect.any(String) });

    expect(project.apex(["stop"]).status).toBe(0);
    const continued = project.start(["--continue", first.session_id.slice(0, 8)]);
    expect(continued).toMatchObject({ session_id: first.session_id, continued: true });
    const status = project.status();
    expect(status.session).toMatchObject({ session_id: first.session_id, status: "active" });
    expect(status.tasks).toMatchObject({ pending: 1, total: 1 });
    expect(json<{ value: unknown }>(project.apex(["memory", "show", "/design/auth", "--json"])).value).toEqual({ method: "jwt" });
    expect(json<{ items: Array<{ id: string }> }>(project.apex(["checkpoint", "list", "--json"])).items.map((item) => item.id)).toContain(checkpoint.id);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)).toEqual([]);
    const record = JSON.parse(project.apex(["memory", "show", `/sessions/${first.session_id}`, "--json"]).stdout).value;
    expect(record.history.map((entry: { event: string }) => entry.event)).toEqual(["started", "stopped", "continued"]);
    expect(record).toMatchObject({ outcome: null, ended_at: null, initial_task: "first" });
    expect(record.supervisor).toMatchObject({ generation: 2 });
    // --task and --continue do not go together; unknown targets say so.
    expect(project.apex(["start", "--task", "x", "--continue", "last"]).status).toBe(2);
    expect(project.apex(["stop", "--force"]).status).toBe(0);
    const unknown = project.apex(["start", "--continue", "no-such-thing"]);
    expect(unknown.status).toBe(3);
    expect(unknown.stderr).toContain("No session or checkpoint");
  });
}));

describe("apex logs / start --attach / no session", () => {
  it("logs: stdout and stderr of each agent, with -n and -f", async () => {
    project = new Project(CONFIG);
    project.start();
    await waitFor("beta's output", () => project!.apex(["logs", "beta"]).stdout.includes("hello from beta"));
    const logs = project.apex(["logs", "beta", "-n", "50"]);
    expect(logs.stdout).toContain("beta | hello from beta");
    expect(logs.stdout).toContain("beta ! trouble on stderr");
    expect(logs.stdout).toMatch(/beta \| \[apex .*\] started pid \d+/);
    const json = project.apex(["logs", "--json"]).stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(json).toContainEqual({ agent: "beta", stream: "stderr", line: "trouble on stderr" });
    expect(project.apex(["logs", "nobody"]).status).toBe(3);

    const follow = project.apexAsync(["logs", "beta", "-f", "-n", "0"]);
    try {
      const betaLog = readdirSync(join(project.storeDir, "logs")).map((session) => join(project!.storeDir, "logs", session, "beta.log"))[0]!;
      await waitFor("the follower to open beta's log", () => holdsOpen(follow.child.pid, betaLog));
      // Anything appended shows up: stop the session, whose exit lines go to the log.
      project.apex(["stop"]);
      await waitFor("followed lines", () => follow.output().includes("killed by SIGTERM") || follow.output().includes("exited with"), 15_000);
      // Following ended with the session, after its last lines, and says so.
      // (Given 20 s: it notices the end by polling, which a loaded machine can hold up for seconds.)
      const ended = await Promise.race([follow.done, new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000))]);
      expect(ended, follow.output()).toBeDefined();
      expect(ended!.status).toBe(0);
      expect(ended!.stderr).toContain("has ended: no more output will come.");
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });

  it("logs -f: a supervisor killed (kill -9) does not end the session: the agents' next lines come, the session is said to be interrupted, and stop ends the following", async () => {
    project = new Project(shellAgents({ talker: "i=0; while true; do i=$((i+1)); echo talk $i; sleep 0.1; done" }));
    const ready = project.start();
    const follow = project.apexAsync(["logs", "talker", "-f", "-n", "0"]);
    const talked = () => [...follow.output().matchAll(/talk (\d+)/g)].map((match) => Number(match[1]));
    try {
      await waitFor("the follower's first line", () => talked().length > 0, 15_000);
      process.kill(ready.supervisor_pid, "SIGKILL");
      await waitFor("the supervisor to be gone", () => !isAlive(ready.supervisor_pid), 15_000);
      // Before, following ended here: "has ended: no more output will come", the agent talking on.
      await waitFor("the interruption said", () => follow.errors().includes("is gone without ending it: the session is interrupted"), 15_000);
      const after = Math.max(...talked());
      await waitFor("lines written after it", () => Math.max(...talked()) >= after + 5, 15_000);
      expect(follow.errors()).not.toContain("has ended");
      expect(follow.child.exitCode).toBeNull();
      // Stopping the interrupted session ends its agents, and with it the following.
      expect(project.apex(["stop"]).status).toBe(0);
      const ended = await Promise.race([follow.done, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
      expect(ended, follow.errors()).toBeDefined();
      expect(ended!.status).toBe(0);
      expect(ended!.stderr).toContain("has ended: no more output will come.");
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });

  it("logs -n N: the last N lines however long the lines and the file; a line over 64 KiB is cut and says so; a directory named like a log is none", () => {
    project = new Project(CONFIG);
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000001");
    mkdirSync(dir, { recursive: true });
    // 20,000 lines of ~100 bytes (2 MB): -n 5000 reaches far past the last 64 KiB.
    writeFileSync(join(dir, "beta.log"), Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"x".repeat(90)}\n`).join(""));
    const tail = project.apex(["logs", "--session", "0f0e0d0c", "-n", "5000"]);
    expect(tail.status, tail.stderr).toBe(0);
    const lines = tail.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(5000);
    expect(lines[0]).toBe(`beta | line 15000 ${"x".repeat(90)}`);
    expect(lines.at(-1)).toBe(`beta | line 19999 ${"x".repeat(90)}`);
    // A 2 MB line between two short ones (and no final newline): it is one line, cut at 64 KiB.
    writeFileSync(join(dir, "beta.log"), `before\n${"y".repeat(2_000_000)}\nafter`);
    const json = project.apex(["logs", "--session", "0f0e0d0c", "-n", "2", "--json"]);
    const shown = json.stdout.trim().split("\n").map((line) => JSON.parse(line) as { line: string });
    expect(shown.map((entry) => entry.line.slice(0, 6))).toEqual(["yyyyyy", "after"]);
    expect(shown[0]!.line).toBe(`${"y".repeat(65536)} … (${2_000_000 - 65536} more bytes)`);
    expect(project.apex(["logs", "--session", "0f0e0d0c", "-n", "3"]).stdout.split("\n")[0]).toBe("beta | before");
    mkdirSync(join(dir, "gamma.log"));
    const withDirectory = project.apex(["logs", "--session", "0f0e0d0c", "-n", "1", "--json"]);
    expect(withDirectory.status, withDirectory.stderr).toBe(0);
    expect(withDirectory.stdout.trim().split("\n").map((line) => (JSON.parse(line) as { agent: string }).agent)).toEqual(["beta"]);
    expect(project.apex(["logs", "gamma", "--session", "0f0e0d0c"]).status).toBe(3);
  });

  it("logs -f: a log truncated while a line of it is half written ends that line; the new text starts its own", async () => {
    project = new Project(CONFIG);
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000002");
    mkdirSync(dir, { recursive: true });
    const log = join(dir, "beta.log");
    writeFileSync(log, "first\n");
    const follow = project.apexAsync(["logs", "--session", "0f0e0d0c", "-f", "-n", "0", "--json"]);
    try {
      const lines = () => follow.output().trim().split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { line: string }).line);
      await waitFor("the follower to open the log", () => holdsOpen(follow.child.pid, log));
      // One write: the poll that printed its complete line read the half line with it.
      appendFileSync(log, "more\nhalf a li");
      await waitFor("the complete line", () => lines().includes("more"));
      // Emptied and written again, shorter than what was read (a longer file cannot be told from one appended to).
      writeFileSync(log, "anew\n");
      await waitFor("the new text", () => lines().some((line) => line.includes("anew")));
      // It was "half a lianew".
      expect(lines()).toEqual(["more", "half a li", "anew"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });

  it("logs -f follows a log by its file, like tail -F: replaced by a larger file, it prints the old file's last lines, then the new file from its start", async () => {
    project = new Project(CONFIG);
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000003");
    mkdirSync(dir, { recursive: true });
    const log = join(dir, "beta.log");
    writeFileSync(log, "first\n");
    const follow = project.apexAsync(["logs", "--session", "0f0e0d0c", "-f", "-n", "0", "--json"]);
    try {
      const lines = () => follow.output().trim().split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { line: string }).line);
      await waitFor("the follower to open the log", () => holdsOpen(follow.child.pid, log));
      appendFileSync(log, "old 1\n");
      await waitFor("the first appended line", () => lines().includes("old 1"));
      // Rotated with no moment without a file at the path: the old file keeps a second name, a
      // new one, larger than what was read of the old, is renamed over the path. Compared by size
      // alone, the new file read on from the old offset (the middle of its first line).
      appendFileSync(log, "old 2\nold tail");
      linkSync(log, `${log}.1`);
      writeFileSync(join(dir, "beta.next"), `new 1 ${"x".repeat(40)}\nnew 2\n`);
      renameSync(join(dir, "beta.next"), log);
      await waitFor("the new file's lines", () => lines().includes("new 2"));
      appendFileSync(log, "new 3\n");
      await waitFor("a line appended to the new file", () => lines().includes("new 3"));
      // Renamed away with nothing at the path for a while, then a new file: followed from its start.
      renameSync(log, `${log}.2`);
      await new Promise((r) => setTimeout(r, 700));
      writeFileSync(log, "after the gap\n");
      await waitFor("the file made after the gap", () => lines().includes("after the gap"));
      expect(lines()).toEqual(["old 1", "old 2", "old tail", `new 1 ${"x".repeat(40)}`, "new 2", "new 3", "after the gap"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });

  it("start --attach streams the session's events; Ctrl-C detaches and the session keeps running", async () => {
    project = new Project(CONFIG);
    const attached = project.apexAsync(["start", "--task", "watch me", "--attach"]);
    try {
      await waitFor("the session to start", () => /Session \S+ started/.test(attached.output()), 30_000);
      project.remember();
      expect(project.apex(["task", "add", "seen live"]).status).toBe(0);
      expect(project.apex(["milestone", "half way"]).status).toBe(0);
      await waitFor("the streamed events", () => attached.output().includes("task t-0001 added: seen live") && attached.output().includes("milestone 1: half way"));
      attached.child.kill("SIGINT");
      const result = await attached.done;
      expect(result.status).toBe(0);
      expect(result.stdout).toContain("Detached");
    } finally {
      if (attached.child.exitCode === null) attached.child.kill("SIGKILL");
    }
    const status = project.status();
    project.rememberGroups(status);
    expect(status.session).toMatchObject({ status: "active" });
    expect(status.agents.every((agent) => agent.alive)).toBe(true);
  });

  it("start --attach whose supervisor is killed says the session is interrupted (APEX_E_PROCESS, exit 1), not exit 0 as if it had ended", async () => {
    project = new Project(CONFIG);
    const attached = project.apexAsync(["start", "--task", "watch me", "--attach"]);
    try {
      await waitFor("the session to start", () => /Session \S+ started/.test(attached.output()), 30_000);
      project.remember();
      const supervisor = project.status().session!.supervisor!.pid;
      process.kill(supervisor, "SIGKILL");
      const result = await attached.done;
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toContain(`error[APEX_E_PROCESS]: The supervisor of session ${/Session (\S+) started/.exec(result.stdout)![1]} (pid ${supervisor}) is gone without ending it: the session is interrupted`);
      expect(result.stdout).not.toContain("Detached");
    } finally {
      if (attached.child.exitCode === null) attached.child.kill("SIGKILL");
    }
    expect(project.status().session).toMatchObject({ status: "interrupted" });
  });

  it("an `apex stop` that comes while start is still starting: start reports the session stopped (it said active, or failed with the supervisor gone) and no agent runs", async () => {
    project = new Project("");
    const hooks = join(project.dir, "hooks.jsonl");
    const plugin = JSON.stringify(join(FIXTURES, "hook-recorder.mjs"));
    project.writeConfig(CONFIG.replace("plugins: {}\n", `plugins:\n  ${plugin}:\n    file: ${JSON.stringify(hooks)}\n    start_delay_ms: 1500\n`));
    const start = project.apexAsync(["start", "--json"]);
    // onStart runs (and takes 1.5 s): the socket listens, the agents are not started yet.
    await waitFor("onStart", () => existsSync(hooks) && readFileSync(hooks, "utf8").includes('"onStart"'), 30_000);
    const stopped = project.apex(["stop", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    const started = await start.done;
    expect(started.status, started.stderr).toBe(0);
    const ready = JSON.parse(started.stdout) as { session_id: string; status: string; agents: Array<{ pid: number | null; status: string }> };
    expect(ready.status).toBe("stopped");
    expect(ready.agents).toEqual([expect.objectContaining({ pid: null, status: "stopped" }), expect.objectContaining({ pid: null, status: "stopped" })]);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)).toEqual([expect.objectContaining({ session_id: ready.session_id, status: "stopped" })]);
  });

  it("SIGTERM to the supervisor while it starts (its agents run, its first checkpoint is being taken): the session stops once started, start says so, no agent is left running, nor what an agent that exited meanwhile left in its group", async () => {
    project = new Project("");
    const p = project;
    const hooks = join(p.dir, "hooks.jsonl");
    const gate = join(p.dir, "gate");
    const plugin = JSON.stringify(join(FIXTURES, "hook-recorder.mjs"));
    // leaver: exits once told (file go), leaving a child that ignores SIGTERM, which its exit's handling gives 1 s before SIGKILL.
    const agentsConfig = shellAgents({
      alpha: "sh -c 'sleep 1000 & wait' & while true; do sleep 0.2; done",
      beta: "while true; do sleep 0.2; done",
      leaver: "sh -c \"trap '' TERM; exec sleep 1000\" & while [ ! -e go ]; do sleep 0.05; done; exit 1",
    });
    p.writeConfig(agentsConfig.replace("plugins: {}\n", `plugins:\n  checkpoint: {}\n  ${plugin}:\n    file: ${JSON.stringify(hooks)}\n    checkpoint_gate: ${JSON.stringify(gate)}\n`));
    const start = p.apexAsync(["start", "--json"]);
    try {
      await waitFor("the first checkpoint", () => existsSync(hooks) && readFileSync(hooks, "utf8").includes('"beforeCheckpoint"'), 30_000);
      const runtime = JSON.parse(readFileSync(join(p.storeDir, "supervisor.json"), "utf8")) as { pid: number; start_time: number; session_id: string };
      p.remember();
      const ofSession = () =>
        readdirSync("/proc")
          .filter((pid) => /^\d+$/.test(pid) && environ(Number(pid)).includes(`APEX_SESSION_ID=${runtime.session_id}`))
          .map((pid) => procInfo(Number(pid)))
          .filter((info): info is ProcInfo => info !== undefined && isAlive(info.pid));
      const agents = ofSession();
      // The three agents run: their shells lead their groups.
      expect(agents.filter((info) => info.pid === info.pgrp)).toHaveLength(3);
      process.kill(runtime.pid, "SIGTERM");
      // It was: SIGTERM's default action, as the handler came only once the start was reported: the
      // supervisor died, start failed (APEX_E_PROCESS) and the agents ran on with the session interrupted.
      await waitFor("the supervisor to take the signal", () => p.supervisorLog().includes("received SIGTERM") || !isAlive(runtime.pid, runtime.start_time));
      // The stop waits behind the start; leaver exits, and the start ends (and the stop runs) while its exit's handling still gives its child time.
      // It was: the stop ended only the agents that ran, and the supervisor exited before that child's SIGKILL, leaving it running.
      writeFileSync(join(p.dir, "go"), "");
      await waitFor("leaver's exit", () => /agent leaver \(pid \d+\) exited with code 1/.test(p.supervisorLog()));
      writeFileSync(gate, "");
      const started = await start.done;
      expect(started.status, started.stderr).toBe(0);
      const ready = JSON.parse(started.stdout) as { session_id: string; status: string; agents: Array<{ status: string }> };
      expect(ready).toMatchObject({ session_id: runtime.session_id, status: "stopped" });
      expect(ready.agents.map((agent) => agent.status)).toEqual(["stopped", "stopped", "stopped"]);
      await waitFor("the supervisor to exit", () => !isAlive(runtime.pid, runtime.start_time), 15_000);
      for (const agent of agents) expect(isAlive(agent.pid, agent.startTime), `pid ${agent.pid} left running`).toBe(false);
      expect(ofSession()).toEqual([]);
      expect(JSON.parse(p.apex(["session", "history", "--json"]).stdout)).toEqual([expect.objectContaining({ session_id: runtime.session_id, status: "stopped", outcome: "the supervisor received SIGTERM" })]);
    } finally {
      writeFileSync(gate, "");
      await start.done;
    }
  });

  it("a start whose onStart fails while a stop, a pause and a resume wait behind it: start reports the failure, each of them that the session could not start (exit 3), nothing is left running and the session is failed", async () => {
    project = new Project("");
    const p = project;
    const hooks = join(p.dir, "hooks.jsonl");
    const gate = join(p.dir, "gate");
    const plugin = JSON.stringify(join(FIXTURES, "hook-recorder.mjs"));
    p.writeConfig(CONFIG.replace("plugins: {}\n", `plugins:\n  ${plugin}:\n    file: ${JSON.stringify(hooks)}\n    start_gate: ${JSON.stringify(gate)}\n    start_error: no licence\n`));
    const start = p.apexAsync(["start", "--task", "t"]);
    let queued: Array<ReturnType<Project["apexAsync"]>> = [];
    try {
      // onStart runs, and waits for the gate: the socket listens, no agent is started yet.
      await waitFor("onStart", () => existsSync(hooks) && readFileSync(hooks, "utf8").includes('"onStart"'), 30_000);
      const runtime = JSON.parse(readFileSync(join(p.storeDir, "supervisor.json"), "utf8")) as { pid: number; start_time: number; socket: string; session_id: string };
      p.remember();
      // All three are connected to the supervisor (its end of each connection is listed under the socket's path), so they queue behind the start.
      const connected = () => readFileSync("/proc/net/unix", "utf8").split("\n").filter((line) => line.endsWith(` ${runtime.socket}`) && line.split(/\s+/)[5] === "03").length;
      // The stop first: queued behind the start, it has not begun, so the session is not stopping yet and
      // pause and resume queue too (they were refused at once as "stopping", never told the start failed).
      // Each waits until the supervisor has read the request (a fixed 300 ms was a window a loaded machine missed: a request
      // read after the failure, once the socket had closed, was answered by nobody): the command, seen asleep in its event
      // loop once connected, has sent it; the supervisor, seen asleep in its own after that, has read it and queued the call.
      const read = async (commands: Array<ReturnType<Project["apexAsync"]>>, connections: number) => {
        await waitFor(`${connections} connected`, () => connected() >= connections, 30_000);
        for (const command of commands) await waitFor("the command to send its request", () => asleepInEventLoop(command.child.pid!), 30_000);
        await waitFor("the supervisor to read the requests", () => asleepInEventLoop(runtime.pid), 30_000);
      };
      queued = [p.apexAsync(["stop"])];
      await read(queued, 1);
      const others = ["pause", "resume"].map((command) => p.apexAsync([command]));
      queued.push(...others);
      await read(others, 3);
      writeFileSync(gate, "");
      const started = await start.done;
      // It was: the stop ran after the failure, recorded the session as "stopped by the user", fired
      // beforeStop and onStop a second time and closed the store under the failure's own records;
      // the pause wrote agent records of the ended session, crashed (APEX_E_RPC, exit 1) and the
      // resume said the session was active.
      expect(started.status).toBe(1);
      expect(started.stderr).toContain("error[APEX_E_PLUGIN_FAILED]: plugin hook-recorder failed in onStart: no licence");
      for (const [i, command] of ["stop", "pause", "resume"].entries()) {
        const result = await queued[i]!.done;
        expect(result.status, `${command}: ${result.stderr}`).toBe(3);
        expect(result.stderr).toContain(`error[APEX_E_NO_SESSION]: Cannot ${command}: session ${runtime.session_id} could not start (plugin hook-recorder failed in onStart: no licence); it has ended (failed).`);
      }
      await waitFor("the supervisor to exit", () => !isAlive(runtime.pid, runtime.start_time), 15_000);
      // No agent of the session runs (none started): no process carries its session id.
      const ofSession = readdirSync("/proc").filter((pid) => /^\d+$/.test(pid) && isAlive(Number(pid)) && environ(Number(pid)).includes(`APEX_SESSION_ID=${runtime.session_id}`));
      expect(ofSession).toEqual([]);
      expect(readFileSync(hooks, "utf8").trim().split("\n").map((line) => JSON.parse(line) as { hook: string; status?: string; reason?: string })).toEqual([
        expect.objectContaining({ hook: "onStart" }),
        expect.objectContaining({ hook: "onError" }),
        expect.objectContaining({ hook: "onStop", status: "failed", reason: "could not start: plugin hook-recorder failed in onStart: no licence" }),
      ]);
      expect(p.supervisorLog()).not.toMatch(/unhandled|uncaught|cannot record|closed/i);
      expect(existsSync(join(p.storeDir, "supervisor.json"))).toBe(false);
      expect(p.status().session).toBeNull();
      expect(JSON.parse(p.apex(["session", "history", "--json"]).stdout)).toEqual([
        expect.objectContaining({ session_id: runtime.session_id, status: "failed", outcome: "could not start: plugin hook-recorder failed in onStart: no licence" }),
      ]);
    } finally {
      writeFileSync(gate, "");
      await Promise.all([start.done, ...queued.map((command) => command.done)]);
    }
  });

  it("without a session: status says so (exit 0), other commands exit 3 with APEX_E_NO_SESSION", () => {
    project = new Project(CONFIG);
    const status = project.apex(["status"]);
    expect(status.status).toBe(0);
    expect(status.stdout).toContain("No session is active");
    expect(JSON.parse(project.apex(["status", "--json"]).stdout)).toMatchObject({ session: null });
    for (const args of [["pause"], ["resume"], ["stop"], ["task", "list"], ["task", "add", "x"], ["milestone", "m"]]) {
      const result = project.apex(args);
      expect(result.status, args.join(" ")).toBe(3);
      expect(result.stderr).toContain("APEX_E_NO_SESSION");
    }
  });

  it("a broken config: status stays a read (exit 0, like task list), and warns when its next step (start, --continue) would refuse it", async () => {
    project = new Project(QUIET);
    const p = project;
    const broken: Array<[string, string, RegExp]> = [
      ["agents: [\n  alpha\n", "APEX_E_YAML", /apex\.config\.yaml:3:1: /],
      ["session:\n  max_checkpoints: many\n", "APEX_E_CONFIG", /apex\.config\.yaml:2:20: session\.max_checkpoints: must be an integer/],
      // What start refuses beyond the schema: a plugin that does not load, an agent's program not found (status said nothing of them).
      ["plugins:\n  nosuch: {}\n", "APEX_E_PLUGIN_UNKNOWN", /Unknown plugin 'nosuch' at apex\.config\.yaml:2:3\./],
      ["agents:\n  alpha:\n    command: no-such-program-apex\n", "APEX_E_CONFIG", /agents\.alpha\.command: agent alpha: the program "no-such-program-apex" is not on PATH/],
    ];
    for (const [text, code, problem] of broken) {
      p.writeConfig(text);
      const [status, jsonResult] = await expectStatusSameAsFullCli(p);
      expect(status.status, status.stderr).toBe(0);
      expect(status.stdout).toContain("No session is active");
      expect(status.stdout).toContain("Fix the config (see the warning above), then start one");
      expect(status.stderr).toContain(`warning: apex.config.yaml is invalid (${code}), so \`apex start\` would refuse it; \`apex config validate\` lists every problem:`);
      expect(status.stderr).toMatch(problem);
      const json = JSON.parse(jsonResult.stdout) as { session: unknown; warnings?: string[] };
      expect(json.session).toBeNull();
      expect(json.warnings).toEqual([expect.stringContaining(`apex.config.yaml is invalid (${code})`)]);
      // What the warning says: start refuses it, with the same code (exit 2), and writes nothing.
      const start = p.apex(["start", "--task", "t"]);
      expect(start.status).toBe(2);
      expect(start.stderr).toContain(`error[${code}]`);
      expect(existsSync(join(p.dir, ".apex", "run"))).toBe(false);
    }
    // A valid config: no warning, as before.
    p.writeConfig(QUIET);
    const [clean, cleanJson] = await expectStatusSameAsFullCli(p);
    expect(clean.stderr).toBe("");
    expect(clean.stdout).toContain('Start one: apex start --task "…"');
    expect(JSON.parse(cleanJson.stdout)).not.toHaveProperty("warnings");

    // A session that runs is reported as usual: its supervisor answers, the config is not read.
    const ready = p.start();
    const unchanged = p.apex(["status", "--json"]);
    expect(unchanged.stderr).toBe("");
    expect(JSON.parse(unchanged.stdout)).not.toHaveProperty("warnings");
    // An edit made meanwhile does not reach the running supervisor: that is named (it said nothing), the file unread.
    p.writeConfig("agents: [\n  alpha\n");
    const [text, running] = await expectStatusSameAsFullCli(p);
    expect(running.status, running.stderr).toBe(0);
    expect(running.stderr).toBe("");
    expect(JSON.parse(running.stdout)).toMatchObject({ session: { session_id: ready.session_id, status: "active" } });
    const changed = `apex.config.yaml was modified (`;
    expect(JSON.parse(running.stdout).warnings).toEqual([expect.stringContaining(changed)]);
    expect(text.status).toBe(0);
    expect(text.stderr).toContain(`warning: ${changed}`);
    expect(text.stderr).toContain(`after this session's supervisor started (`);
    expect(text.stderr).toContain(`the session runs with the config it started with. To apply the change: \`apex stop\`, then \`apex start --continue ${ready.session_id}\``);
    expect(text.stderr).not.toContain("is invalid");

    // Interrupted (supervisor killed): the command that recovers loads the config, so the warning names it.
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("status interrupted", () => (p.status().session?.status === "interrupted" ? true : undefined), 30_000);
    const [interrupted, interruptedJson] = await expectStatusSameAsFullCli(p); // read from the store here
    expect(interrupted.status).toBe(0);
    expect(interrupted.stdout).toContain("the session was interrupted");
    // So does the `apex stop` that ends it (its plugins' hooks run from the config): named too, with the fix first,
    // where the warning named the continue alone and the report offered `apex stop`, which then refused the config.
    const both = "warning: apex.config.yaml is invalid (APEX_E_YAML), so `apex start --continue` and `apex stop` would refuse it";
    expect(interrupted.stderr).toContain(both);
    expect(JSON.parse(interruptedJson.stdout).warnings).toEqual([expect.stringContaining(both.slice("warning: ".length))]);
    expect(interrupted.stdout).toContain("Fix the config (see the warning above), then recover with `apex start --continue");
    for (const args of [["stop"], ["stop", "--force"], ["start", "--continue", "last"]]) {
      const refused = p.apex(args);
      expect(refused.status, args.join(" ")).toBe(2);
      expect(refused.stderr).toContain("error[APEX_E_YAML]");
    }
    expect(p.status().session?.status).toBe("interrupted");
    // A plugin it cannot load refuses the continue only: the stop skips its hooks, with a warning, and is not named.
    p.writeConfig(`${QUIET}plugins:\n  nosuch: {}\n`.replace("plugins: {}\n", ""));
    const [pluginOnly] = await expectStatusSameAsFullCli(p);
    expect(pluginOnly.stderr).toContain("warning: apex.config.yaml is invalid (APEX_E_PLUGIN_UNKNOWN), so `apex start --continue` would refuse it;");
    p.writeConfig(QUIET);
    const [fixed] = await expectStatusSameAsFullCli(p);
    expect(fixed.stderr).toBe("");
    expect(fixed.stdout).toContain("\nRecover with `apex start --continue");
    expect(p.apex(["stop", "--force"]).status).toBe(0);
    await expectStatusSameAsFullCli(p); // stopped: the last session
    // Errors are the full CLI's too: their code, message, hint and exit code, as text and as JSON.
    await Promise.all([
      expectStatusSameAsFullCli(p, { APEX_CONFIG: join(p.dir, "missing.yaml") }),
      expectStatusSameAsFullCli(p, { APEX_REMOTE: "127.0.0.1:1/3f2a9c1e", APEX_TOKEN: "apex_0123456789abcdef" }),
    ]);
  });
});
