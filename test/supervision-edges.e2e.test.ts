// Edges of agent supervision, end to end with the built CLI and real processes: agents whose
// processes leave their process group, programs that cannot run, hostile log output, and
// sessions whose supervisor died while they were paused. Every process a test starts is ended
// by pid (checked against its start time) or by process group.
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, events, isAlive, procInfo, signalIfAlive, waitFor, type ProcInfo } from "./fixtures/agents/harness.js";
import { capLogFile } from "../core/session/agents.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
/** Processes outside any agent group a test saw (escaped with setsid): ended by pid after it. */
const strays: ProcInfo[] = [];
afterEach(() => {
  for (const stray of strays.splice(0)) signalIfAlive(stray.pid, "SIGKILL", stray.startTime);
});

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * An agent whose child leaves the agent's process group with setsid and ignores SIGTERM (as
 * does its own child, a sleep): the daemon an agent may start. Their pids go to escaped.pid and
 * escaped-child.pid.
 */
function escapingAgent(dir: string): string {
  const escaped = `trap "" TERM; echo $$ > ${join(dir, "escaped.pid")}; sleep 1000 & echo $! > ${join(dir, "escaped-child.pid")}; while :; do sleep 0.2; done`;
  const script = `setsid sh -c '${escaped}' & while :; do sleep 0.2; done`;
  return ["agents:", "  escaper:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "plugins: {}", ""].join("\n");
}

async function escapedProcesses(dir: string): Promise<ProcInfo[]> {
  const found = await waitFor("the escaped processes", () => {
    const pids = [readPid(join(dir, "escaped.pid")), readPid(join(dir, "escaped-child.pid"))];
    if (pids.some((pid) => pid === undefined)) return undefined;
    const infos = pids.map((pid) => procInfo(pid!));
    return infos.every((info) => info !== undefined) ? (infos as ProcInfo[]) : undefined;
  });
  strays.push(...found);
  return found;
}

describe("processes that leave the agent's process group (setsid)", () => {
  it("pause stops them, resume continues them, stop ends them (SIGKILL when they ignore SIGTERM): no orphan", async () => {
    project = new Project("");
    project.writeConfig(escapingAgent(project.dir));
    const ready = project.start();
    const [escaped, child] = await escapedProcesses(project.dir);
    const pgid = ready.agents[0]!.pgid!;
    expect(escaped!.pgrp).not.toBe(pgid);
    expect(child!.pgrp).toBe(escaped!.pgrp);

    // status counts them among the agent's processes
    await waitFor("status to count them", () => {
      const processes = project!.status().agents[0]!.processes;
      return processes.includes(escaped!.pid) && processes.includes(child!.pid);
    });

    const paused = project.apex(["pause", "--json"]);
    expect(paused.status, paused.stderr).toBe(0);
    for (const info of [escaped!, child!]) expect(procInfo(info.pid)?.state, `pid ${info.pid}`).toBe("T");

    const resumed = project.apex(["resume"]);
    expect(resumed.status, resumed.stderr).toBe(0);
    for (const info of [escaped!, child!]) expect(procInfo(info.pid)?.state, `pid ${info.pid}`).not.toBe("T");

    const stopped = project.apex(["stop", "--grace", "1", "--json"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout).processes_ended).toBeGreaterThanOrEqual(4);
    for (const info of [escaped!, child!]) expect(isAlive(info.pid, info.startTime), `pid ${info.pid} left running`).toBe(false);
  });

  it("after a kill -9 of the supervisor, status lists them as left running and --continue last ends them", async () => {
    project = new Project("");
    project.writeConfig(escapingAgent(project.dir).replace("agents:", "session:\n  auto_recovery: false\nagents:"));
    const ready = project.start();
    const [escaped, child] = await escapedProcesses(project.dir);
    // A supervisor stopped (SIGSTOP) answers nothing: status says so, not only "active".
    expect(project.status().session!.supervisor).toMatchObject({ alive: true, stopped: false });
    process.kill(ready.supervisor_pid, "SIGSTOP");
    expect(project.status().session!.supervisor).toMatchObject({ alive: true, stopped: true });
    expect(project.apex(["status"]).stdout).toContain(`supervisor  pid ${ready.supervisor_pid} on `);
    expect(project.apex(["status"]).stdout).toMatch(new RegExp(`\\(stopped: it answers nothing until \`kill -CONT ${ready.supervisor_pid}\`; \`apex stop --force\` ends the session\\)`));
    process.kill(ready.supervisor_pid, "SIGKILL");
    const status = await waitFor("interrupted", () => {
      const report = project!.status();
      return report.session?.status === "interrupted" ? report : undefined;
    });
    expect(status.left_running[0]!.pids).toEqual(expect.arrayContaining([escaped!.pid, child!.pid]));

    const continued = project.apex(["start", "--continue", "last", "--json"], { timeout: 90_000 });
    expect(continued.status, continued.stderr).toBe(0);
    expect(JSON.parse(continued.stdout).reaped[0].pids).toEqual(expect.arrayContaining([escaped!.pid, child!.pid]));
    for (const info of [escaped!, child!]) expect(isAlive(info.pid, info.startTime), `pid ${info.pid} left running`).toBe(false);
    // the continued agent starts a new escapee: the cleanup finds it by its pid file
    strays.push(...(await escapedProcesses(project.dir)).filter((info) => info.pid !== escaped!.pid));
  });

  it("an agent that exits leaves none of its escaped processes behind", async () => {
    project = new Project("");
    const dir = project.dir;
    const escaped = `trap "" TERM; echo $$ > ${join(dir, "escaped.pid")}; sleep 1000 & echo $! > ${join(dir, "escaped-child.pid")}; wait`;
    // It exits once the test has seen its escaped processes (the file go), not 0.3 s after they are there: the
    // supervisor ended them on its exit before a test slower than that on a loaded machine had seen them.
    const script = `setsid sh -c '${escaped}' & while [ ! -s ${join(dir, "escaped-child.pid")} ] || [ ! -e ${join(dir, "go")} ]; do sleep 0.1; done; exit 0`;
    project.writeConfig(["agents:", "  quick:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "    restart: never", "  keeper:", "    command: sh", `    args: ["-c", "while :; do sleep 0.2; done"]`, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    const [first, second] = await escapedProcesses(dir);
    writeFileSync(join(dir, "go"), "");
    await waitFor("the quick agent's exit", () => project!.status().agents.find((agent) => agent.name === "quick")?.status === "exited", 30_000);
    await waitFor("its escaped processes to end", () => !isAlive(first!.pid, first!.startTime) && !isAlive(second!.pid, second!.startTime), 20_000);
    // Status names no pid for an agent that exited (it showed the last one, as if it ran): how it ended, and last_pid.
    const quickPid = ready.agents.find((agent) => agent.name === "quick")!.pid;
    const quick = project.status().agents.find((agent) => agent.name === "quick")!;
    expect(quick).toMatchObject({ status: "exited", pid: null, pgid: null, alive: false, last_pid: quickPid, last_exit: { code: 0, signal: null } });
    const row = project.apex(["status"]).stdout.split("\n").find((line) => line.startsWith("quick"))!;
    expect(row).toMatch(/^quick\s+exited \(code 0\)\s+-\s+-\s+0\s/);
    expect(row).not.toContain(String(quickPid));
    expect(project.apex(["agent", "list"]).stdout).toMatch(/quick\s+exited \(code 0\)\s+-\s/);
    expect(project.status().agents.find((agent) => agent.name === "keeper")).toMatchObject({ status: "running", alive: true, pid: expect.any(Number) });
  });
});

describe("apex logs with hostile output", () => {
  it("prints escape sequences, carriage returns and other control characters visibly (--json keeps them exact)", () => {
    project = new Project("agents: {}\nplugins: {}\n");
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000003");
    mkdirSync(dir, { recursive: true });
    // A title change (OSC), a screen clear, a colour, a carriage return that hides what came before, a bidi override, invalid UTF-8.
    const raw = Buffer.concat([Buffer.from("ok \u001b]0;PWNED\u0007 \u001b[2J \u001b[31mred\rhidden\u202e evil\tTAB\n"), Buffer.from([0xff, 0xfe, 0x0a])]);
    writeFileSync(join(dir, "beta.log"), raw);
    const text = project.apex(["logs", "--session", "0f0e0d0c"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/);
    // The carriage return starts a line of its own: "red" stays shown, not drawn over by "hidden".
    expect(text.stdout.split("\n").slice(0, 2)).toEqual(["beta | ok \\u001b]0;PWNED\\u0007 \\u001b[2J \\u001b[31mred", "beta | hidden\\u202e evil\tTAB"]);
    const json = project.apex(["logs", "--session", "0f0e0d0c", "--json"]);
    expect(JSON.parse(json.stdout.split("\n")[0]!).line).toBe("ok \u001b]0;PWNED\u0007 \u001b[2J \u001b[31mred\rhidden\u202e evil\tTAB");
    // --raw, asked for: the agent's own sequences as written (its colours), on this host's logs only.
    const rawText = project.apex(["logs", "--session", "0f0e0d0c", "--raw"]);
    expect(rawText.status, rawText.stderr).toBe(0);
    expect(rawText.stdout.split("\n")[0]).toBe("beta | ok \u001b]0;PWNED\u0007 \u001b[2J \u001b[31mred\rhidden\u202e evil\tTAB");
    const both = project.apex(["logs", "--session", "0f0e0d0c", "--raw", "--json"]);
    expect(both.status).toBe(2);
    expect(both.stderr).toContain("APEX_E_USAGE");
  });

  it("a log the supervisor cut goes on from its .1 file", () => {
    project = new Project("agents: {}\nplugins: {}\n");
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000005");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "beta.log.1"), "old 1\nold 2\nold 3\n");
    writeFileSync(join(dir, "beta.log"), "[apex x] log cut\nnew\n");
    const shown = project.apex(["logs", "--session", "0f0e0d0c", "-n", "4"]);
    expect(shown.stdout.trimEnd().split("\n")).toEqual(["beta | old 2", "beta | old 3", "beta | [apex x] log cut", "beta | new"]);
    expect(project.apex(["logs", "--session", "0f0e0d0c", "-n", "1"]).stdout).toBe("beta | new\n");
  });

  it("logs -f: a line written without a newline for megabytes is kept to its first 64 KiB, saying how many bytes are left out", async () => {
    project = new Project("agents: {}\nplugins: {}\n");
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000004");
    mkdirSync(dir, { recursive: true });
    const log = join(dir, "beta.log");
    writeFileSync(log, "first\n");
    const follow = project.apexAsync(["logs", "--session", "0f0e0d0c", "-f", "-n", "1", "--json"]);
    try {
      // It follows from where the file ends once it printed its last line (a loaded machine starts it slowly).
      await waitFor("the follower's first line", () => follow.output().includes('"first"'), 30_000);
      // 12 MB in pieces, read by the follower as they come (it reads at most 4 MiB at a time).
      for (let i = 0; i < 6; i++) {
        appendFileSync(log, "z".repeat(2_000_000));
        await new Promise((r) => setTimeout(r, 150));
      }
      appendFileSync(log, "\nnext\n");
      const lines = await waitFor("the lines", () => {
        const shown = follow.output().trim().split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { line: string }).line);
        return shown.includes("next") ? shown : undefined;
      });
      expect(lines).toEqual(["first", `${"z".repeat(65536)} … (${12_000_000 - 65536} more bytes)`, "next"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });

  it("logs -f: a line written between the last lines shown and the start of following is printed, once; a log replaced meanwhile is followed from its start", async () => {
    project = new Project("agents: {}\nplugins: {}\n");
    const dir = join(project.storeDir, "logs", "0f0e0d0c-aaaa-4bbb-8ccc-000000000006");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "beta.log"), "one\ntwo\n");
    writeFileSync(join(dir, "gamma.log"), "old\n");
    // What `apex logs -f` does, with the window between its two steps held open.
    const { readLogTail, followLogs } = await import("../dist/cli/session/logs.js");
    const tail = readLogTail(project.storeDir, "0f0e0d0c-aaaa-4bbb-8ccc-000000000006", undefined, 1);
    expect(tail.lines.map((line: { line: string }) => line.line)).toEqual(["two", "old"]);
    appendFileSync(join(dir, "beta.log"), "three\n");
    renameSync(join(dir, "gamma.log"), join(dir, "gamma.log.1"));
    writeFileSync(join(dir, "gamma.log"), "new\n");
    const printed: string[] = [];
    let rounds = 0;
    await followLogs(tail.dir, tail.chosen, undefined, (line: { agent: string; line: string }) => printed.push(`${line.agent} ${line.line}`), () => rounds++ > 0);
    expect(printed).toEqual(["beta three", "gamma new"]);
  });
});

describe("programs that cannot run", () => {
  it("a file that is not executable, a directory and a script whose #! interpreter is missing are named as such; start refuses them (exit 2) and writes nothing", () => {
    project = new Project(
      ["agents:", "  text:", "    command: ./notes.txt", "  folder:", "    command: ./tools", "  script:", "    command: ./run.sh", "plugins: {}", ""].join("\n"),
    );
    writeFileSync(join(project.dir, "notes.txt"), "not a program\n", { mode: 0o644 });
    mkdirSync(join(project.dir, "tools"));
    writeFileSync(join(project.dir, "run.sh"), "#!/nonexistent/interpreter\necho hi\n", { mode: 0o755 });
    const validate = project.apex(["config", "validate"]);
    expect(validate.status).toBe(2);
    expect(validate.stderr).toContain(`agents.text.command: agent text: the program ./notes.txt is not executable (${join(project.dir, "notes.txt")})`);
    expect(validate.stderr).toContain(`agents.folder.command: agent folder: the program ./tools is a directory (${join(project.dir, "tools")}).`);
    expect(validate.stderr).toContain("agents.script.command: agent script: the program ./run.sh runs through /nonexistent/interpreter (its #! line), which does not exist.");
    const start = project.apex(["start", "--task", "t"]);
    expect(start.status).toBe(2);
    expect(start.stderr).toContain("APEX_E_CONFIG");
    expect(existsSync(project.storeDir)).toBe(false);
    // A NUL byte in an argument or an env value (YAML's "\0"): no process can be given one, so every start would fail.
    project.writeConfig(["agents:", "  argued:", "    command: sh", '    args: ["-c", "echo a\\0b"]', "  envied:", "    command: sh", "    env:", '      X: "a\\0b"', "plugins: {}", ""].join("\n"));
    const nul = project.apex(["start", "--task", "t"]);
    expect(nul.status).toBe(2);
    expect(nul.stderr).toContain("agents.argued.args[1]: agent argued: contains a NUL byte (\\0), which no program can be given.");
    expect(nul.stderr).toContain("agents.envied.env.X: agent envied: contains a NUL byte (\\0), which no program can be given.");
    expect(nul.stderr).toContain("APEX_E_CONFIG");
    expect(existsSync(project.storeDir)).toBe(false);
  });
});

describe("programs that can no longer run when their agent restarts", () => {
  it("the program gone, its working directory gone or made a file: each is named on one line of the agent's log, the directory as apex config validate names it", async () => {
    const agent = (name: string, cwd: string) => [`  ${name}:`, "    command: ./prog", `    cwd: ${cwd}`, "    restart: on-failure", "    max_restarts: 2", "    restart_delay: 0.2"];
    project = new Project(["agents:", ...agent("gone", "gone"), ...agent("nodir", "nodir"), ...agent("filedir", "filedir"), "plugins: {}", ""].join("\n"));
    // Each exits 1 once `go` exists: all three restart (and fail to) at about the same time.
    for (const name of ["gone", "nodir", "filedir"]) {
      mkdirSync(join(project.dir, name));
      writeFileSync(join(project.dir, name, "prog"), `#!/bin/sh\nwhile [ ! -e ${join(project.dir, "go")} ]; do sleep 0.05; done\nexit 1\n`, { mode: 0o755 });
    }
    const ready = project.start();
    rmSync(join(project.dir, "gone", "prog"));
    rmSync(join(project.dir, "nodir"), { recursive: true });
    rmSync(join(project.dir, "filedir"), { recursive: true });
    writeFileSync(join(project.dir, "filedir"), "");
    writeFileSync(join(project.dir, "go"), "");
    const log = (name: string) => readFileSync(join(project!.storeDir, "logs", ready.session_id, `${name}.log`), "utf8");
    await waitFor("a failed restart of each", () => ["gone", "nodir", "filedir"].every((name) => log(name).includes("cannot start:")));
    expect(log("gone")).toContain(`cannot start: Agent gone: cannot run "./prog": spawn ./prog ENOENT\n`);
    expect(log("nodir")).toContain(`cannot start: Agent nodir: cannot run "./prog": its working directory ${join(project.dir, "nodir")} does not exist (spawn ./prog ENOENT)\n`);
    expect(log("filedir")).toContain(`cannot start: Agent filedir: cannot run "./prog": its working directory ${join(project.dir, "filedir")} is not a directory (spawn ENOTDIR)\n`);
    for (const name of ["gone", "nodir", "filedir"]) for (const line of log(name).trimEnd().split("\n")) expect(line).toMatch(/^\[apex /);
  });
});

describe("restarts whose process cannot be started", () => {
  it("count in the agent's record and in status as agent.restarting counts them, while restarting and once the agent failed", async () => {
    // It exits 1 once `go` exists, its working directory gone by then: every restart fails to start it.
    // Delays 0.2, 0.4, 0.8, 1.6 s: status is read while one is due.
    const agent = ["  lost:", "    command: ./prog", "    cwd: work", "    restart: on-failure", "    max_restarts: 4", "    restart_delay: 0.2", "    max_restart_delay: 60"];
    project = new Project(["agents:", ...agent, "plugins: {}", ""].join("\n"));
    mkdirSync(join(project.dir, "work"));
    writeFileSync(join(project.dir, "work", "prog"), `#!/bin/sh\nwhile [ ! -e ${join(project.dir, "go")} ]; do sleep 0.05; done\nexit 1\n`, { mode: 0o755 });
    const ready = project.start();
    rmSync(join(project.dir, "work"), { recursive: true });
    writeFileSync(join(project.dir, "go"), "");
    const restarting = () => events(project!, ready.session_id).filter((event) => event.type === "agent.restarting");
    // The restart status shows due is the one its agent.restarting event announced (the same restart_at): their counts agree.
    const [shown, announced] = await waitFor("a third restart due", () => {
      const lost = project!.status().agents[0]!;
      const event = restarting().find((candidate) => candidate.restart_at === lost.restart_at);
      return lost.status === "restarting" && event !== undefined && Number(event.restarts) >= 3 ? [lost, event] : undefined;
    });
    expect(shown.restarts).toBe(announced.restarts);
    const record = () => JSON.parse(project!.apex(["memory", "show", `/sessions/${ready.session_id}/agents/lost`, "--json"]).stdout).value as { status: string; restarts: number };
    await waitFor("the agent failed", () => record().status === "failed", 30_000);
    expect(restarting().map((event) => event.restarts)).toEqual([1, 2, 3, 4]);
    expect(record()).toMatchObject({ status: "failed", restarts: 4 });
    expect(project.apex(["session", "history", ready.session_id]).stdout).toContain("(restart 4)");
  }, 60_000);
});

describe("a supervisor killed while the session is paused", () => {
  it("status says the agents' processes are left stopped (state T), and --continue last ends them and runs fresh agents", async () => {
    project = new Project(
      ["session:", "  auto_recovery: false", "agents:", "  kid:", "    command: sh", `    args: ["-c", "sh -c 'sleep 1000' & while :; do sleep 0.2; done"]`, "plugins:", "  checkpoint: {}", ""].join("\n"),
    );
    const ready = project.start();
    await waitFor("the grandchild", () => project!.status().agents[0]!.processes.length >= 3);
    const paused = project.apex(["pause"]);
    expect(paused.status, paused.stderr).toBe(0);
    const old = project.status().agents[0]!.processes.map((pid) => procInfo(pid)!);
    for (const info of old) expect(info.state).toMatch(/^[TD]$/); // D: in I/O with its SIGSTOP pending, stopped the moment it ends
    process.kill(ready.supervisor_pid, "SIGKILL");
    // A process still in I/O (D) at the pause counts as stopped once its pending SIGSTOP takes it to T.
    const report = await waitFor("interrupted, every process stopped", () => {
      const status = project!.status();
      const stopped = (status.left_running?.[0] as { stopped?: number[] } | undefined)?.stopped ?? [];
      return status.session?.status === "interrupted" && stopped.length === old.length ? status : undefined;
    });
    const left = report.left_running[0] as { agent: string; pids: number[]; stopped: number[] };
    expect(left.stopped.sort()).toEqual(old.map((info) => info.pid).sort());
    const text = project.apex(["status"]).stdout;
    expect(text).toContain(`left stopped (paused when the supervisor died): kid (pids ${left.stopped.join(", ")})`);
    expect(text).not.toContain("still running: kid");

    const continued = project.apex(["start", "--continue", "last", "--json"], { timeout: 90_000 });
    expect(continued.status, continued.stderr).toBe(0);
    for (const info of old) expect(isAlive(info.pid, info.startTime), `pid ${info.pid}`).toBe(false);
    const fresh = project.status();
    expect(fresh.session!.status).toBe("active");
    expect(fresh.agents[0]).toMatchObject({ status: "running", alive: true });
    expect(procInfo(fresh.agents[0]!.pid!)!.state).not.toBe("T");
  });
});

describe("an agent that floods its output", () => {
  it("its log files stay bounded (cut at APEX_LOG_MAX_BYTES, the last part kept as .1) and the supervisor answers throughout", async () => {
    // 120 MB of binary without a newline on stdout, 1 MB at a time, then a line; stderr floods too.
    const flood = "i=0; while [ $i -lt 120 ]; do head -c 1000000 /dev/urandom; head -c 200000 /dev/zero >&2; sleep 0.02; i=$((i+1)); done; echo; echo flood done; while :; do sleep 0.2; done";
    project = new Project(["agents:", "  flood:", "    command: sh", `    args: ["-c", ${JSON.stringify(flood)}]`, "plugins: {}", ""].join("\n"));
    const started = project.apex(["start", "--task", "flood", "--json"], { env: { APEX_LOG_MAX_BYTES: "2000000" } });
    expect(started.status, started.stderr).toBe(0);
    const ready = JSON.parse(started.stdout) as { session_id: string };
    const dir = join(project.storeDir, "logs", ready.session_id);
    const sizes = () => ["flood.log", "flood.log.1", "flood.err.log", "flood.err.log.1"].map((name) => statSync(join(dir, name), { throwIfNoEntry: false })?.size ?? 0);
    let largest = 0;
    await waitFor(
      "the flood to end",
      () => {
        // the supervisor answers while the agent floods
        expect(project!.apex(["status", "--json"], { timeout: 20_000 }).status).toBe(0);
        largest = Math.max(largest, ...sizes());
        return project!.apex(["logs", "flood", "-n", "3", "--json"]).stdout.includes("flood done");
      },
      120_000,
    );
    const [out, outBefore, err, errBefore] = sizes();
    // 120 MB went to stdout, 24 MB to stderr: what is kept is a bounded part of it.
    expect(out! + outBefore!).toBeLessThan(40_000_000);
    // .1: the last 2 MB before a cut and what the agent wrote while it was cut (the flood goes on meanwhile).
    expect(outBefore).toBeLessThan(20_000_000);
    expect(err! + errBefore!).toBeLessThan(20_000_000);
    expect(errBefore).toBeGreaterThan(0);
    expect(largest).toBeLessThan(60_000_000);
    // Random bytes hold every control character: none reaches the terminal as such.
    const shown = project.apex(["logs", "flood", "-n", "100"]);
    expect(shown.status).toBe(0);
    expect(shown.stdout).toContain("flood done");
    expect(shown.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
  }, 180_000);
});

describe("cutting a log the agent writes on", () => {
  it("loses nothing the agent wrote while its last part was copied: .1 ends where the new file begins", async () => {
    const dir = mkdtempSync(join(tmpdir(), "apex-logcut-"));
    try {
      const file = join(dir, "agent.log");
      let next = 0;
      const line = () => `line ${next++} ${"x".repeat(100)}\n`;
      writeFileSync(file, Array.from({ length: 40_000 }, line).join(""));
      // The agent appends on while the supervisor copies (the file is ~4.4 MB, the copy takes many turns of the event loop).
      let cutting = true;
      let during = 0;
      const writer = (async () => {
        while (cutting) {
          appendFileSync(file, line() + line());
          during += 2;
          await new Promise((resolve) => setImmediate(resolve));
        }
      })();
      const cut = await capLogFile(file, 2_000_000);
      cutting = false;
      await writer;
      expect(cut).toBe(true);
      expect(during).toBeGreaterThan(0);
      appendFileSync(file, line());
      // Before, what came during the copy was neither in .1 (copied up to the size seen first) nor in the file (emptied).
      const numbers = (readFileSync(`${file}.1`, "utf8") + readFileSync(file, "utf8")).split("\n").map((text) => /^line (\d+) /.exec(text)?.[1]).filter((n) => n !== undefined).map(Number);
      const first = numbers[0]!;
      expect(numbers).toEqual(Array.from({ length: next - first }, (_, i) => first + i));
      expect(statSync(`${file}.1`).size).toBeGreaterThanOrEqual(2_000_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("an agent in a crash loop", () => {
  const ended = (target: Project) =>
    waitFor("the session to end", () => (JSON.parse(target.apex(["session", "history", "--json"]).stdout) as Array<{ status: string }>)[0], 90_000);
  const triggers = (target: Project) =>
    (JSON.parse(target.apex(["checkpoint", "list", "--json", "--limit", "100"]).stdout) as { items: Array<{ trigger: string }> }).items.map((item) => item.trigger);

  it("takes one onError checkpoint for a run of crashes that change nothing (every crash is still an error event), and is bounded by max_restarts", async () => {
    project = new Project(
      ["agents:", "  crash:", "    command: sh", `    args: ["-c", "echo boom >&2; exit 1"]`, "    max_restarts: 20", "    restart_delay: 0", "plugins:", "  checkpoint: {}", ""].join("\n"),
    );
    const ready = project.start();
    expect(await ended(project)).toMatchObject({ status: "failed" });
    expect(triggers(project)).toEqual(["onError", "onStart"]);
    const errors = Object.values(JSON.parse(project.apex(["memory", "query", `/sessions/${ready.session_id}/events/*`, "--json"]).stdout) as Record<string, { type: string }>).filter((event) => event.type === "error");
    expect(errors).toHaveLength(21);
  });

  it("waits restart_delay doubled for each crash in a row, up to max_restart_delay; status shows a restart that is due later", async () => {
    project = new Project(
      [
        "agents:",
        "  crash:",
        "    command: sh",
        `    args: ["-c", "exit 1"]`,
        "    max_restarts: 5",
        "    restart_delay: 0.05",
        "    max_restart_delay: 0.2",
        "  later:",
        "    command: sh",
        `    args: ["-c", "exit 2"]`,
        "    restart_delay: 30",
        "plugins: {}",
        "",
      ].join("\n"),
    );
    const ready = project.start();
    const restarting = (agent: string) => events(project!, ready.session_id).filter((event) => event.type === "agent.restarting" && event.agent === agent);
    const exits = await waitFor("crash to fail", () => {
      const all = events(project!, ready.session_id).filter((event) => event.type === "agent.exited" && event.agent === "crash");
      return all.length === 6 && all[5]!.status === "failed" ? all : undefined;
    });
    const restarts = restarting("crash");
    expect(restarts.map((event) => event.delay_seconds)).toEqual([0.05, 0.1, 0.2, 0.2, 0.2]);
    // Each restart came no sooner than its delay after the exit before it. The delay is counted from
    // the exit, which restart_at is; an event's `at` is when it was recorded, and the exit's is
    // later than the exit by as long as its write waited for the store (another process holding
    // the write lock: 40 ms, and a restart 169 ms after it). So the exit is known to lie between
    // the run's start and the record of its exit, and the restart to come at restart_at or after.
    const starts = events(project, ready.session_id).filter((event) => event.type === "agent.started" && event.agent === "crash");
    for (const [i, delay] of [0.05, 0.1, 0.2, 0.2, 0.2].entries()) {
      const [due, restart] = [Date.parse(String(restarts[i]!.restart_at)), restarts[i]!];
      // (recorded with its exit)
      expect(restart.seq).toBe(Number(exits[i]!.seq) + 1);
      expect(due - delay * 1000).toBeGreaterThanOrEqual(Date.parse(String(starts[i]!.at)));
      expect(due - delay * 1000).toBeLessThanOrEqual(Date.parse(String(exits[i]!.at)));
      expect(Date.parse(String(starts[i + 1]!.at))).toBeGreaterThanOrEqual(due);
    }
    // `later` waits 30 s for its restart: status says so, and the session is not over.
    const later = project.status().agents.find((agent) => agent.name === "later")!;
    expect(later).toMatchObject({ status: "restarting", pid: null, last_exit: { code: 2, signal: null } });
    expect(Date.parse(later.restart_at!) - Date.parse(later.last_exit!.at)).toBe(30_000);
    expect(restarting("later")).toEqual([expect.objectContaining({ delay_seconds: 30, restart_at: later.restart_at })]);
    expect(project.apex(["status"]).stdout).toMatch(/\nlater\s+restarting in [12]\d\.\ds\s/);
    expect(project.status().session!.status).toBe("active");
    // Paused, the restart waits for the resume as well: status says so (it said "restarting in 2x.xs", then "(due)").
    expect(project.apex(["pause"]).status).toBe(0);
    expect(project.apex(["status"]).stdout).toMatch(/\nlater\s+restarting in [12]\d\.\ds once resumed\s/);
    expect(project.apex(["agent", "list"]).stdout).toMatch(/\nlater\s+restarting in [12]\d\.\ds once resumed\s/);
    expect(project.apex(["resume"]).status).toBe(0);
    // Its supervisor killed, nobody restarts it: status shows how it ended, not a restart to come.
    process.kill(ready.supervisor_pid, "SIGKILL");
    const interrupted = await waitFor("interrupted", () => {
      const report = project!.status();
      return report.session?.status === "interrupted" ? report : undefined;
    });
    expect(interrupted.agents.find((agent) => agent.name === "later")).toMatchObject({ status: "failed", restart_at: null, last_exit: { code: 2 } });
    expect(project.apex(["status"]).stdout).toMatch(/\nlater\s+failed \(code 2\)\s/);
  });

  it("records the moment of the exit, and counts the restart delay from it, not from the end of what the agent left in its group", async () => {
    // It exits once the child it leaves (which ignores SIGTERM: ended by SIGKILL after a second) has set its trap.
    project = new Project(
      ["agents:", "  leaver:", "    command: sh", `    args: ["-c", "sh -c \\"trap '' TERM; touch trapped; exec sleep 1000\\" & while [ ! -e trapped ]; do sleep 0.02; done; exit 3"]`, "    restart_delay: 30", "plugins: {}", ""].join("\n"),
    );
    const ready = project.start();
    const exited = await waitFor("the exit's record", () => events(project!, ready.session_id).find((event) => event.type === "agent.exited" && event.agent === "leaver"), 20_000);
    const leaver = project.status().agents.find((agent) => agent.name === "leaver")!;
    expect(leaver).toMatchObject({ status: "restarting", last_exit: { code: 3 } });
    // Recorded once its group was ended (the child's second of grace), the exit is a second or more before that record.
    // It was the moment of the record, and the restart was due that much later than restart_delay after the exit.
    expect(Date.parse(String(exited.at)) - Date.parse(leaver.last_exit!.at)).toBeGreaterThanOrEqual(1000);
    expect(Date.parse(leaver.restart_at!) - Date.parse(leaver.last_exit!.at)).toBe(30_000);
  });

  it("a crash after a run of min_uptime starts the count of max_restarts afresh; quick crashes are still given up", async () => {
    // Runs of ~1.5 s against min_uptime 1 s: each is stable, so max_restarts 1 never runs out, and the backoff starts afresh.
    project = new Project(
      ["agents:", "  steady:", "    command: sh", `    args: ["-c", "sleep 1.5; exit 1"]`, "    max_restarts: 1", "    restart_delay: 0.05", "    min_uptime: 1", "plugins:", "  checkpoint: {}", ""].join("\n"),
    );
    const ready = project.start();
    const started = () =>
      Object.values(JSON.parse(project!.apex(["memory", "query", `/sessions/${ready.session_id}/events/*`, "--json"]).stdout) as Record<string, { type: string }>).filter((event) => event.type === "agent.started").length;
    await waitFor("a fourth start", () => (started() >= 4 ? true : undefined), 60_000);
    const status = JSON.parse(project.apex(["status", "--json"]).stdout) as { session: { status: string } };
    expect(status.session.status).toBe("active");
    const delays = events(project, ready.session_id).filter((event) => event.type === "agent.restarting").map((event) => event.delay_seconds);
    expect(delays.length).toBeGreaterThanOrEqual(3);
    expect(new Set(delays)).toEqual(new Set([0.05]));
    // The same agent crashing at once (runs shorter than min_uptime) fails after its one restart.
    project.cleanup();
    project = new Project(
      ["agents:", "  quick:", "    command: sh", `    args: ["-c", "exit 1"]`, "    max_restarts: 1", "    restart_delay: 0", "    min_uptime: 1", "plugins:", "  checkpoint: {}", ""].join("\n"),
    );
    project.start();
    expect(await ended(project)).toMatchObject({ status: "failed" });
  }, 120_000);

  it("restart: always restarts a clean exit (code 0) every time, after restart_delay: no crash, so neither max_restarts nor the backoff counts it; a crash after clean runs is the first of its row", async () => {
    // Before, quick clean exits (runs shorter than min_uptime) were counted as a crash loop: after
    // max_restarts of them the agent was left exited, and each waited twice as long as the one before.
    // The agent exits 0 at once four times, then crashes (exit 1) at once from then on.
    const script = "n=$(cat runs 2>/dev/null || echo 0); echo $((n + 1)) > runs; [ $n -lt 4 ] && exit 0; exit 1";
    project = new Project(
      ["agents:", "  worker:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "    restart: always", "    max_restarts: 2", "    restart_delay: 0.05", "    max_restart_delay: 1", "plugins: {}", ""].join("\n"),
    );
    const ready = project.start();
    // It ends the session once it is given up (failed; before, left exited after its clean runs, the session completed).
    expect(await ended(project)).toMatchObject({ status: "failed" });
    const exits = events(project, ready.session_id).filter((event) => event.type === "agent.exited" && event.agent === "worker");
    // Four clean exits, each restarted; then a crash and max_restarts (2) more before it is given up.
    expect(exits.map((event) => [event.code, event.status])).toEqual([
      [0, "restarting"],
      [0, "restarting"],
      [0, "restarting"],
      [0, "restarting"],
      [1, "restarting"],
      [1, "restarting"],
      [1, "failed"],
    ]);
    // The wait is restart_delay after each clean exit, and doubles for each crash in a row from the first crash on.
    const delays = events(project, ready.session_id).filter((event) => event.type === "agent.restarting").map((event) => event.delay_seconds);
    expect(delays).toEqual([0.05, 0.05, 0.05, 0.05, 0.05, 0.1]);
    // Every restart is counted as ever (RESTARTS), the clean ones too.
    expect((JSON.parse(project.apex(["agent", "list", "--json"]).stdout) as Array<{ name: string }>).find((agent) => agent.name === "worker")).toMatchObject({ status: "failed", restarts: 6 });
  });

  it("a crash after the agent changed memory still takes its own onError checkpoint", async () => {
    const script = "apex memory set /attempt \\\"$$\\\" >/dev/null; exit 1";
    project = new Project(["agents:", "  crash:", "    command: sh", `    args: ["-c", "${script}"]`, "    max_restarts: 2", "    restart_delay: 0", "plugins:", "  checkpoint: {}", ""].join("\n"));
    project.start();
    expect(await ended(project)).toMatchObject({ status: "failed" });
    expect(triggers(project)).toEqual(["onError", "onError", "onError", "onStart"]);
  });
});

describe("text agents and users write, printed for people", () => {
  it("titles, the initial task, milestones and checkpoint descriptions show their control characters visibly; --json keeps them exact", () => {
    project = new Project(["agents:", "  idle:", "    command: sh", `    args: ["-c", "while :; do sleep 0.2; done"]`, "plugins:", "  checkpoint: {}", ""].join("\n"));
    const evil = "a \u001b]0;PWNED\u0007 b \u001b[2J c\rd";
    const shown = "a \\u001b]0;PWNED\\u0007 b \\u001b[2J c\\u000dd";
    project.start(["--task", evil]);
    const outputs = [
      project.apex(["task", "add", evil]),
      project.apex(["task", "list"]),
      project.apex(["status"]),
      project.apex(["milestone", evil]),
      project.apex(["checkpoint", "create", evil]),
      project.apex(["checkpoint", "list"]),
      project.apex(["session", "list"]),
    ];
    for (const output of outputs) {
      expect(output.status, output.stderr).toBe(0);
      expect(output.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    }
    expect(outputs[0]!.stdout).toContain(shown);
    expect(outputs[1]!.stdout).toContain(shown);
    expect(outputs[2]!.stdout).toContain(`task        ${shown}`);
    expect(outputs[3]!.stdout).toContain(shown);
    expect(outputs[5]!.stdout).toContain("a \\u001b]0;PWNED\\u0007 b \\u001b[2J c"); // a description has its whitespace made spaces
    expect((JSON.parse(project.apex(["task", "list", "--json"]).stdout) as Array<{ title: string }>)[0]!.title).toBe(evil);
  });
});

describe("a runtime file left by a dead supervisor", () => {
  it("naming a live process with the supervisor's pid and start time (a reboot reuses both) is not taken for the supervisor: pause says interrupted, stop ends the leftovers", async () => {
    // One process (a sleep), so that the count is known: "1 leftover process", not "1 leftover processes".
    project = new Project(["session:", "  auto_recovery: false", "agents:", "  idle:", "    command: sleep", `    args: ["300"]`, "plugins: {}", ""].join("\n"));
    const ready = project.start();
    const agent = procInfo(ready.agents[0]!.pid!)!;
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor's end", () => !isAlive(ready.supervisor_pid));
    // Another process now has the recorded pid and start time: the runtime file is made to say so.
    const other = spawn("sleep", ["300"], { stdio: "ignore" });
    try {
      const info = procInfo(other.pid!)!;
      const file = join(project.storeDir, "supervisor.json");
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), pid: info.pid, start_time: info.startTime }));
      const paused = project.apex(["pause"]);
      expect(paused.status).toBe(4);
      expect(paused.stderr).toContain("APEX_E_SESSION_STATE");
      expect(paused.stderr).toContain("interrupted");
      const stopped = project.apex(["stop"]);
      expect(stopped.status, stopped.stderr).toBe(0);
      // The session as the other commands print it: a uuid's short form (the whole id was printed).
      expect(stopped.stdout).toMatch(new RegExp(`^Stopped session ${ready.session_id.slice(0, 8)} \\(its supervisor was not running; 1 leftover process ended\\)\\.\\n$`));
      expect(isAlive(agent.pid, agent.startTime)).toBe(false);
      expect(isAlive(info.pid, info.startTime)).toBe(true);
    } finally {
      other.kill("SIGKILL");
    }
  });
});
