// `apex logs` end to end with the built CLI, on log files as the supervisor writes them: lines cut
// at 64 KiB, bytes that are no UTF-8, followed logs.
import { appendFileSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { spawn, spawnSync } from "node:child_process";
import { APEX_BIN, Project, cleanEnv, waitFor } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const SESSION = "0f0e0d0c-aaaa-4bbb-8ccc-0000000000a1";

/** A project with no agents and the log directory of SESSION, made by hand. */
function logDir(): string {
  project = new Project("agents: {}\nplugins: {}\n", "apex-logs-");
  const dir = join(project.storeDir, "logs", SESSION);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function jsonLines(stdout: string): Array<{ agent: string; stream: string; line: string; line_base64?: string }> {
  return stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { agent: string; stream: string; line: string; line_base64?: string });
}

describe("a line over 64 KiB", () => {
  // 65,535 ASCII bytes, then characters of 2, 3 and 4 bytes: the first goes across the 64 KiB mark.
  const long = Buffer.concat([Buffer.from("x".repeat(65_535)), Buffer.from("é€😀")]);

  it("is cut where a character ends, not inside one (no U+FFFD), saying how many bytes are left out", () => {
    const dir = logDir();
    writeFileSync(join(dir, "beta.log"), Buffer.concat([long, Buffer.from("\nnext\n")]));
    const shown = project!.apex(["logs", "--session", SESSION, "--json"]);
    expect(shown.status, shown.stderr).toBe(0);
    const lines = jsonLines(shown.stdout);
    expect(lines.map((line) => line.line)).toEqual([`${"x".repeat(65_535)} … (9 more bytes)`, "next"]);
    expect(lines[0]).not.toHaveProperty("line_base64");
    const text = project!.apex(["logs", "--session", SESSION]);
    expect(text.stdout).not.toContain("\uFFFD");
  });

  it("with -f too", async () => {
    const dir = logDir();
    const log = join(dir, "beta.log");
    writeFileSync(log, "first\n");
    const follow = project!.apexAsync(["logs", "--session", SESSION, "-f", "-n", "1", "--json"]);
    try {
      await waitFor("the follower's first line", () => follow.output().includes('"first"'), 30_000);
      appendFileSync(log, Buffer.concat([long, Buffer.from("\nnext\n")]));
      const lines = await waitFor("the lines", () => {
        const shown = jsonLines(follow.output()).map((line) => line.line);
        return shown.includes("next") ? shown : undefined;
      });
      expect(lines).toEqual(["first", `${"x".repeat(65_535)} … (9 more bytes)`, "next"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });
});

describe("bytes that are no UTF-8", () => {
  // Latin-1 text ("café" as one byte é), then bytes no encoding makes text, then an ordinary line.
  const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]);
  const binary = Buffer.from([0xff, 0xfe, 0x00, 0x41, 0xc3]);

  it("--json keeps them exactly, base64 in line_base64 (line: their text, each such byte U+FFFD); --raw prints them as written", () => {
    const dir = logDir();
    writeFileSync(join(dir, "beta.log"), Buffer.concat([latin1, Buffer.from("\n"), binary, Buffer.from("\nplain é\n")]));
    const shown = project!.apex(["logs", "--session", SESSION, "--json"]);
    expect(shown.status, shown.stderr).toBe(0);
    const lines = jsonLines(shown.stdout);
    expect(lines).toEqual([
      { agent: "beta", stream: "stdout", line: "caf\uFFFD", line_base64: latin1.toString("base64") },
      { agent: "beta", stream: "stdout", line: "\uFFFD\uFFFD\u0000A\uFFFD", line_base64: binary.toString("base64") },
      { agent: "beta", stream: "stdout", line: "plain é" },
    ]);
    expect(Buffer.from(lines[1]!.line_base64!, "base64")).toEqual(binary);
    // --raw: the bytes as the agent wrote them, after the agent's column.
    const raw = spawnRaw(["logs", "--session", SESSION, "--raw"]);
    expect(raw).toEqual(Buffer.concat([Buffer.from("beta | "), latin1, Buffer.from("\nbeta | "), binary, Buffer.from("\nbeta | plain é\n")]));
  });

  it("a cut line's base64 holds its first 64 KiB and the words saying what is left out, as line does", () => {
    const dir = logDir();
    writeFileSync(join(dir, "beta.log"), Buffer.concat([Buffer.from([0xff]), Buffer.from("y".repeat(70_000)), Buffer.from("\n")]));
    const [line] = jsonLines(project!.apex(["logs", "--session", SESSION, "--json"]).stdout);
    const tail = ` … (${70_001 - 65_536} more bytes)`;
    expect(line!.line).toBe(`\uFFFD${"y".repeat(65_535)}${tail}`);
    expect(Buffer.from(line!.line_base64!, "base64")).toEqual(Buffer.concat([Buffer.from([0xff]), Buffer.from("y".repeat(65_535)), Buffer.from(tail)]));
  });

  it("with -f too", async () => {
    const dir = logDir();
    const log = join(dir, "beta.log");
    writeFileSync(log, "first\n");
    const follow = project!.apexAsync(["logs", "--session", SESSION, "-f", "-n", "1", "--json"]);
    try {
      await waitFor("the follower's first line", () => follow.output().includes('"first"'), 30_000);
      // The Latin-1 line in two writes, its odd byte in the second.
      appendFileSync(log, Buffer.from("caf"));
      await new Promise((resolve) => setTimeout(resolve, 400));
      appendFileSync(log, Buffer.from([0xe9, 0x0a]));
      appendFileSync(log, "next\n");
      const lines = await waitFor("the lines", () => {
        const shown = jsonLines(follow.output());
        return shown.some((line) => line.line === "next") ? shown : undefined;
      });
      expect(lines.map((line) => line.line_base64)).toEqual([undefined, latin1.toString("base64"), undefined]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });
});

/** The CLI's stdout as bytes (the project's commands decode it as UTF-8). */
function spawnRaw(args: string[]): Buffer {
  const result = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: project!.dir, env: { ...cleanEnv(), NO_COLOR: "1" } });
  expect(result.status, String(result.stderr)).toBe(0);
  return result.stdout;
}

describe("agent names with dots", () => {
  it("an agent named x.err has its stdout shown as its own, not as the stderr of an agent x", () => {
    const dir = logDir();
    // What the supervisor writes for agents `x.err` and `y`: <name>.log and <name>.err.log each.
    writeFileSync(join(dir, "x.err.log"), "out of x.err\n");
    writeFileSync(join(dir, "x.err.err.log"), "err of x.err\n");
    writeFileSync(join(dir, "y.log"), "out of y\n");
    writeFileSync(join(dir, "y.err.log"), "err of y\n");
    const shown = project!.apex(["logs", "--session", SESSION, "--json"]);
    expect(shown.status, shown.stderr).toBe(0);
    expect(jsonLines(shown.stdout)).toEqual([
      { agent: "x.err", stream: "stdout", line: "out of x.err" },
      { agent: "x.err", stream: "stderr", line: "err of x.err" },
      { agent: "y", stream: "stdout", line: "out of y" },
      { agent: "y", stream: "stderr", line: "err of y" },
    ]);
    const one = project!.apex(["logs", "x.err", "--session", SESSION]);
    expect(one.stdout).toBe("x.err | out of x.err\nx.err ! err of x.err\n");
    expect(project!.apex(["logs", "x", "--session", SESSION]).status).toBe(3);
  });
});

describe("an agent stopped in the middle of a line", () => {
  it("its unfinished line and APEX's line about its end are two lines, not glued into one", async () => {
    // The agent writes after APEX's started line, not 0.3 s after its start: a supervisor slower than that
    // (a loaded machine) wrote its started line after `unfinished`, and the line was split there, not at the end.
    project = new Project(["agents:", "  half:", "    command: sh", '    args: ["-c", "until grep -q started .apex/logs/$APEX_SESSION_ID/half.log; do sleep 0.05; done; printf unfinished; sleep 1000"]', "plugins: {}", ""].join("\n"), "apex-logs-");
    project.start();
    await waitFor("the unfinished line", () => project!.apex(["logs", "half", "--json"]).stdout.includes('"unfinished'));
    expect(project.apex(["stop"]).status).toBe(0);
    const lines = jsonLines(project.apex(["logs", "half", "--json"]).stdout).map((line) => line.line);
    expect(lines).toContain("unfinished");
    expect(lines.filter((line) => line !== "unfinished").every((line) => line.startsWith("[apex "))).toBe(true);
    expect(lines.some((line) => /^\[apex [^\]]+\] pid \d+ was killed by SIGTERM$/.test(line))).toBe(true);
  });
});

describe("APEX's line written while an agent's line is unfinished", () => {
  // As the supervisor writes `started` after an agent that wrote `Loading...` at once, or `log cut` after one that began a line in the emptied file.
  it("leaves the agent's line whole, after APEX's line: in apex logs (any -n), --json, -f and the supervisor's own tails", async () => {
    const { appendLogLine, tailLines } = await import("../core/session/agents.js");
    const { followLogs, readLogTail } = await import("../dist/cli/session/logs.js");
    const dir = logDir();
    const file = join(dir, "beta.log");
    const before = Array.from({ length: 8 }, (_, i) => `line ${i}`);
    writeFileSync(file, `${before.join("\n")}\nLoading...`);
    // Followed as a running session's log is: its unfinished last line left to following.
    const tail = readLogTail(project!.storeDir, SESSION, undefined, 2, true);
    expect(tail.lines.map((line: { line: string }) => line.line)).toEqual(["line 6", "line 7"]);
    const printed: string[] = [];
    let stop = false;
    const following = followLogs(tail.dir, tail.chosen, undefined, (line: { line: string }) => printed.push(line.line), () => stop);
    try {
      appendLogLine(file, "[apex t] started pid 1", true);
      await waitFor("APEX's line followed", () => printed.includes("[apex t] started pid 1"));
      appendFileSync(file, " ok\nnext\nhalf");
      appendLogLine(file, "[apex t] log cut", true);
      appendFileSync(file, " and ");
      appendLogLine(file, "[apex t] started pid 2", true);
      appendFileSync(file, "the rest\nlast");
      // The agent killed mid-line: its line ends there, before APEX's line about it.
      appendLogLine(file, "[apex t] started pid 3", true);
      appendLogLine(file, "[apex t] pid 3 was killed by SIGTERM");
      const expected = [...before, "[apex t] started pid 1", "Loading... ok", "next", "[apex t] log cut", "[apex t] started pid 2", "half and the rest", "[apex t] started pid 3", "last", "[apex t] pid 3 was killed by SIGTERM"];
      await waitFor("the lines followed", () => printed.includes("[apex t] pid 3 was killed by SIGTERM"));
      // Before, `Loading...`, APEX's line, then ` ok`: the agent's line in two.
      expect(printed).toEqual(expected.slice(8));
      const shown = jsonLines(project!.apex(["logs", "--session", SESSION, "-n", "100", "--json"]).stdout).map((line) => line.line);
      expect(shown).toEqual(expected);
      for (let n = 1; n <= 9; n++) {
        const lines = project!.apex(["logs", "--session", SESSION, "-n", String(n)]).stdout.split("\n").filter(Boolean);
        expect(lines, `-n ${n}`).toEqual(expected.slice(-n).map((line) => `beta | ${line}`));
      }
      expect(tailLines(file, 100)).toEqual(expected);
    } finally {
      stop = true;
      await following;
    }
  });

  it("the supervisor's own tail of a log whose last 64 KiB hold no line break takes no time (rejoining split lines)", async () => {
    const { tailLines } = await import("../core/session/agents.js");
    const file = join(logDir(), "beta.log");
    writeFileSync(file, "x".repeat(200_000));
    const began = performance.now();
    expect(tailLines(file, 5)).toEqual([]);
    writeFileSync(file, `${"y".repeat(10)}\n${"x".repeat(60_000)}`);
    expect(tailLines(file, 5)).toEqual(["y".repeat(10), "x".repeat(60_000)]);
    expect(performance.now() - began).toBeLessThan(1000);
  });

  it("an agent's own U+001E before a line break is kept as it wrote it", () => {
    const dir = logDir();
    writeFileSync(join(dir, "beta.log"), "one\u001e\ntwo\nthree\u001e\n");
    expect(jsonLines(project!.apex(["logs", "--session", SESSION, "--json"]).stdout).map((line) => line.line)).toEqual(["one\u001e", "two", "three\u001e"]);
  });

  // The agent's line begun before APEX's started line is the marked split above (appendLogLine): with a
  // real agent, which of the two comes first is the scheduler's choice, so this one waits for APEX's line.
  it("of a real agent: `Loading...` written after APEX's started line, then ` ok`, is one line after it", async () => {
    project = new Project(["agents:", "  beta:", "    command: sh", `    args: ["-c", "until grep -q started .apex/logs/$APEX_SESSION_ID/beta.log; do sleep 0.05; done; printf Loading...; sleep 0.3; echo ' ok'; sleep 1000"]`, "plugins: {}", ""].join("\n"), "apex-logs-");
    project.start();
    await waitFor("the agent's line finished", () => project!.apex(["logs", "beta"]).stdout.includes(" ok"));
    const lines = project.apex(["logs", "beta", "--json"]).stdout;
    expect(jsonLines(lines).map((line) => line.line.replace(/\d+/g, "N"))).toEqual(["[apex N-N-NTN:N:N.NZ] started pid N (process group N)", "Loading... ok"]);
  });
});

describe("logs -f of a session that is not running", () => {
  it("ends once a `start --continue` of it has run and ended (it was followed on until Ctrl-C)", async () => {
    project = new Project(["agents:", "  beta:", "    command: sh", `    args: ["-c", "echo run $$; sleep 1000"]`, "plugins: {}", ""].join("\n"), "apex-logs-");
    const sid = project.start().session_id;
    expect(project.apex(["stop"]).status).toBe(0);
    const follow = project.apexAsync(["logs", "-f", "--session", sid]);
    try {
      await waitFor("the follower's lines", () => follow.output().includes("was killed by SIGTERM"), 30_000);
      expect(project.apex(["start", "--continue", sid]).status).toBe(0);
      await waitFor("the continued agent's line", () => follow.output().split("\n").filter((line) => line.startsWith("beta | run ")).length === 2, 15_000);
      expect(project.apex(["stop"]).status).toBe(0);
      const ended = await Promise.race([follow.done, new Promise<undefined>((resolve) => setTimeout(resolve, 10_000))]);
      expect(ended, "still following 10 s after the continued session stopped").toBeDefined();
      expect(ended!.status, ended!.stderr).toBe(0);
      expect(ended!.stderr).toBe(`Session ${sid.slice(0, 8)} has ended: no more output will come.\n`);
      expect(ended!.stdout.trimEnd().split("\n").at(-1)).toMatch(/^beta \| \[apex [^\]]+\] pid \d+ was killed by SIGTERM$/);
    } finally {
      if (follow.child.exitCode === null) follow.child.kill("SIGINT");
      await follow.done;
    }
  });
});

describe("apex logs --help", () => {
  it("says -f ends with a running session, not only with Ctrl-C", () => {
    project = new Project("agents: {}\nplugins: {}\n", "apex-logs-");
    const help = project.apex(["logs", "--help"]).stdout.replace(/\s+/g, " ");
    expect(help).toContain("-f, --follow keep printing new lines: until the session ends (it says so on stderr, exit 0) when it runs, else until Ctrl-C (with --remote, a server that stops or a connection lost is exit 1, APEX_E_RPC)");
  });
});

describe("a session's log directory removed", () => {
  it("apex logs says the directory is not there (exit 3), not nothing with exit 0", () => {
    project = new Project(["agents:", "  w:", "    command: sh", '    args: ["-c", "echo hello; sleep 1000"]', "plugins: {}", ""].join("\n"), "apex-logs-");
    project.start();
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["logs", "w"]).stdout).toContain("hello");
    rmSync(join(project.storeDir, "logs"), { recursive: true, force: true });
    for (const args of [["logs"], ["logs", "w"], ["logs", "--json"]]) {
      const shown = project.apex(args);
      expect(shown.status, args.join(" ")).toBe(3);
      expect(shown.stdout).toBe("");
      expect(shown.stderr).toMatch(/APEX_E_NO_SESSION/);
      expect(shown.stderr).toMatch(/Session [0-9a-f]{8} has no logs in this project: .*\/logs\/[0-9a-f-]{36} is not there\./);
    }
  });
});

describe("following a log the supervisor cuts", () => {
  it("shows every line once, in order: those written just before the cut (read from .1) and those after, however soon the file grows again", async () => {
    const { capLogFile } = await import("../core/session/agents.js");
    const { followLogs, readLogTail } = await import("../dist/cli/session/logs.js");
    const dir = logDir();
    const file = join(dir, "beta.log");
    let next = 0;
    const lines = (count: number) => Array.from({ length: count }, () => `line ${next++} ${"x".repeat(20)}\n`).join("");
    writeFileSync(file, lines(1000)); // ~30 KB
    const tail = readLogTail(project!.storeDir, SESSION, undefined, 1);
    const printed: string[] = [];
    let stop = false;
    const following = followLogs(tail.dir, tail.chosen, undefined, (line: { line: string }) => printed.push(line.line), () => stop);
    try {
      appendFileSync(file, lines(500));
      await waitFor("the follower to read on", () => printed.length === 500);
      // Written, then cut (its last 20 KB copied to .1, the file emptied) before the follower reads it.
      appendFileSync(file, lines(300));
      expect(await capLogFile(file, 20_000)).toBe(true);
      // More than the follower had read of the file, at once: the file is longer than before by its next poll.
      appendFileSync(file, lines(2000));
      await waitFor("every line", () => printed.length >= 2800, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(printed).toEqual(Array.from({ length: 2800 }, (_, i) => `line ${1000 + i} ${"x".repeat(20)}`));
    } finally {
      stop = true;
      await following;
    }
  });

  it("a cut between reading the last lines and following (--remote: between logs.read and logs.follow) loses no line", async () => {
    const { capLogFile } = await import("../core/session/agents.js");
    const { followLogs, readLogTail } = await import("../dist/cli/session/logs.js");
    const dir = logDir();
    const file = join(dir, "beta.log");
    let next = 0;
    const lines = (count: number) => Array.from({ length: count }, () => `line ${next++} ${"x".repeat(20)}\n`).join("");
    writeFileSync(file, lines(1000));
    const tail = readLogTail(project!.storeDir, SESSION, undefined, 1);
    expect(tail.lines.map((line: { line: string }) => line.line)).toEqual([`line 999 ${"x".repeat(20)}`]);
    // Written and cut (the last 20 KB copied to .1, the file emptied) before following starts, then more.
    appendFileSync(file, lines(300));
    expect(await capLogFile(file, 20_000)).toBe(true);
    appendFileSync(file, lines(100));
    const printed: string[] = [];
    let stop = false;
    const following = followLogs(tail.dir, tail.chosen, undefined, (line: { line: string }) => printed.push(line.line), () => stop);
    try {
      // Before, the 300 lines of .1 were skipped: the cut was taken as one the follower had seen.
      await waitFor("every line", () => printed.length >= 400, 10_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(printed).toEqual(Array.from({ length: 400 }, (_, i) => `line ${1000 + i} ${"x".repeat(20)}`));
    } finally {
      stop = true;
      await following;
    }
  });

  it("a line the cut goes across is shown once, whole, after the log cut line, as a line APEX's own line splits: followed, and in apex logs (any -n, --json)", async () => {
    const { appendLogLine, capLogFile } = await import("../core/session/agents.js");
    const { followLogs, readLogTail } = await import("../dist/cli/session/logs.js");
    const dir = logDir();
    const file = join(dir, "beta.log");
    writeFileSync(file, `${"x".repeat(30_000)}\n`);
    const tail = readLogTail(project!.storeDir, SESSION, undefined, 0);
    const printed: string[] = [];
    let stop = false;
    const following = followLogs(tail.dir, tail.chosen, undefined, (line: { line: string }) => printed.push(line.line), () => stop);
    try {
      appendFileSync(file, "before\nhalf");
      await waitFor("the follower to read on", () => printed.includes("before"));
      await new Promise((resolve) => setTimeout(resolve, 300)); // "half" read too, kept as the unfinished line
      expect(await capLogFile(file, 20_000)).toBe(true);
      // As the supervisor writes it (continues: the agent runs on), then the agent's rest of its line.
      appendLogLine(file, "[apex t] log cut", true);
      appendFileSync(file, " and after\nnext\n");
      await waitFor("the lines after the cut", () => printed.includes("next"));
      // Before: "half", the log cut line, then " and after": one line of the agent's in two.
      const expected = ["before", "[apex t] log cut", "half and after", "next"];
      expect(printed).toEqual(expected);
      for (let n = 0; n <= 5; n++) {
        const shown = jsonLines(project!.apex(["logs", "--session", SESSION, "-n", String(n), "--json"]).stdout).map((line) => line.line);
        // (.1 holds the last 20,000 bytes from the first line that starts in them: not the line of 30,000 x.)
        expect(shown, `-n ${n}`).toEqual(n === 0 ? [] : expected.slice(-n));
      }
    } finally {
      stop = true;
      await following;
    }
  });

  it("logs -f started after a cut went across a line and before its rest came prints that line once, whole, with or without APEX's log cut line first, and through a remote follower's read_to", async () => {
    const { appendLogLine, capLogFile } = await import("../core/session/agents.js");
    const { followLogs, readLogTail } = await import("../dist/cli/session/logs.js");
    const file = join(logDir(), "beta.log");
    const follow = async (logCutFirst: boolean, remote: boolean) => {
      writeFileSync(file, `${Array.from({ length: 400 }, (_, i) => `line ${i}`).join("\n")}\nhalf`);
      expect(await capLogFile(file, 2_000)).toBe(true);
      if (logCutFirst) appendLogLine(file, "[apex t] log cut", true);
      // As following a running session reads the last lines (holdUnfinished).
      const tail = readLogTail(project!.storeDir, SESSION, undefined, 2, true);
      // A remote follower gets read_to only (JSON), and the line is read from .1 again.
      const chosen = remote ? tail.chosen.map(({ held: _held, ...rest }: { held?: unknown }) => JSON.parse(JSON.stringify(rest))) : tail.chosen;
      const printed: string[] = [];
      let stop = false;
      const following = followLogs(tail.dir, chosen, undefined, (line: { line: string }) => printed.push(line.line), () => stop);
      try {
        await new Promise((resolve) => setTimeout(resolve, 300)); // a poll or more before the rest
        if (!logCutFirst) appendLogLine(file, "[apex t] log cut", true);
        appendFileSync(file, " and after\nnext\n");
        await waitFor("the lines after the cut", () => printed.includes("next"));
        return [...tail.lines.map((line: { line: string }) => line.line), ...printed];
      } finally {
        stop = true;
        await following;
      }
    };
    // Before, `half` was among the last lines, then ` and after` came on a line of its own.
    for (const remote of [false, true]) {
      expect(await follow(true, remote), `remote ${remote}`).toEqual(["line 399", "[apex t] log cut", "half and after", "next"]);
      expect(await follow(false, remote), `remote ${remote}`).toEqual(["line 398", "line 399", "[apex t] log cut", "half and after", "next"]);
    }
  });

  it("a line the cut goes across is shown whole also when the agent's rest came before the log cut line, or no log cut line came (its supervisor gone), and not joined when the agent ended there", async () => {
    const { appendLogLine, capLogFile } = await import("../core/session/agents.js");
    const dir = logDir();
    const file = join(dir, "beta.log");
    const cut = async (text: string) => {
      writeFileSync(file, `${Array.from({ length: 400 }, (_, i) => `line ${i}`).join("\n")}\nhalf`);
      expect(await capLogFile(file, 2_000)).toBe(true);
      appendFileSync(file, text);
      return jsonLines(project!.apex(["logs", "--session", SESSION, "-n", "3", "--json"]).stdout).map((line) => line.line);
    };
    expect(await cut(" and after\nnext\n")).toEqual(["line 399", "half and after", "next"]);
    expect(await cut(" and")).toEqual(["line 398", "line 399", "half and"]);
    appendLogLine(file, "[apex t] log cut", true);
    appendFileSync(file, " after\n");
    expect(jsonLines(project!.apex(["logs", "--session", SESSION, "-n", "3", "--json"]).stdout).map((line) => line.line)).toEqual(["line 399", "[apex t] log cut", "half and after"]);
    // The agent killed after the cut: its line ends there, APEX's lines after it.
    expect(await cut("")).toEqual(["line 398", "line 399", "half"]);
    appendLogLine(file, "[apex t] log cut", true);
    appendLogLine(file, "[apex t] pid 1 was killed by SIGTERM");
    expect(jsonLines(project!.apex(["logs", "--session", SESSION, "-n", "3", "--json"]).stdout).map((line) => line.line)).toEqual(["[apex t] log cut", "half", "[apex t] pid 1 was killed by SIGTERM"]);
  });

  it("the last lines read while a cut is under way (the file emptied, its rest not in .1 yet) are those the cut leaves, not .1's older ones", async () => {
    const { readLogTail } = await import("../dist/cli/session/logs.js");
    const file = join(logDir(), "beta.log");
    const all = Array.from({ length: 400 }, (_, i) => `line ${i}\n`).join("");
    // As capLogFile leaves it between readToEndAndEmpty and its append: .1 holds the file up to
    // line 389, the file is empty, and the rest (lines 390 to 399) and the .cut record come after.
    const copied = all.indexOf("line 390\n");
    writeFileSync(`${file}.1`, all.slice(0, copied));
    writeFileSync(file, "");
    const rest = join(project!.dir, "rest");
    writeFileSync(rest, all.slice(copied));
    const cut = JSON.stringify({ from: 0, to: all.length, at: new Date().toISOString() });
    const finishing = spawn("sh", ["-c", `sleep 0.2; cat '${rest}' >> '${file}.1'; printf '%s\\n' '${cut}' > '${file}.cut'`], { stdio: "ignore" });
    const finished = new Promise((resolve) => finishing.on("exit", resolve));
    try {
      // Before, lines 387 to 389: the tail did not wait for the cut to finish.
      const tail = readLogTail(project!.storeDir, SESSION, undefined, 3);
      expect(tail.lines.map((line: { line: string }) => line.line)).toEqual(["line 397", "line 398", "line 399"]);
    } finally {
      await finished;
    }
    // A .1 left so (its supervisor died mid-cut) is not waited for once it is old: the tail comes at once.
    writeFileSync(`${file}.1`, all.slice(0, copied));
    utimesSync(`${file}.1`, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const started = Date.now();
    expect(readLogTail(project!.storeDir, SESSION, undefined, 1).lines.map((line: { line: string }) => line.line)).toEqual(["line 389"]);
    expect(Date.now() - started).toBeLessThan(500);
  });

  it("of a real agent: `Loading...` before the supervisor's cut and ` ok` after it are one line, after the log cut line, in apex logs and logs -f", async () => {
    // Lines of 9 bytes up to 991..999 bytes, so that `Loading...` alone takes the log past 1000 bytes: the cut
    // comes after it, with no write of the agent's during it (what came during one is a test above). ` ok` after APEX's log cut line.
    const log = ".apex/logs/$APEX_SESSION_ID/beta.log";
    const script = `until grep -q started ${log}; do sleep 0.05; done; while [ $(wc -c < ${log}) -lt 991 ]; do echo xxxxxxxx; done; printf Loading...; until grep -q 'log cut' ${log}; do sleep 0.05; done; echo ' ok'; sleep 1000`;
    project = new Project(["agents:", "  beta:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "plugins: {}", ""].join("\n"), "apex-logs-");
    project.start(["--task", "test session"], { APEX_LOG_MAX_BYTES: "1000" });
    const follow = project.apexAsync(["logs", "beta", "-f", "-n", "2", "--json"]);
    try {
      await waitFor("the agent's line finished", () => project!.apex(["logs", "beta"]).stdout.includes(" ok"), 30_000);
      const shown = jsonLines(project.apex(["logs", "beta", "-n", "2", "--json"]).stdout).map((line) => line.line.replace(/\[apex [^\]]*\]/, "[apex]"));
      expect(shown).toEqual([expect.stringMatching(/^\[apex\] log cut; what came before is in .*beta\.log\.1$/), "Loading... ok"]);
      const followed = await waitFor("the follower's lines", () => follow.output().includes("Loading... ok") && jsonLines(follow.output()).map((line) => line.line));
      expect(followed.filter((line) => line.startsWith("Loading") || line.includes("ok"))).toEqual(["Loading... ok"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });
});

describe("logs -f with a last line not finished yet", () => {
  it("of a running session: prints that line once, whole, when it is finished, not in two pieces", async () => {
    // The agent writes after APEX's started line, not 0.5 s after its start: a supervisor slower than that
    // (a loaded machine) wrote its started line after `hal`, and the log never ended with the unfinished line.
    project = new Project(["agents:", "  beta:", "    command: sh", `    args: ["-c", "until grep -q started .apex/logs/$APEX_SESSION_ID/beta.log; do sleep 0.05; done; printf 'one\\nhal'; sleep 1000"]`, "plugins: {}", ""].join("\n"), "apex-logs-");
    const ready = project.start();
    const log = join(project.storeDir, "logs", ready.session_id, "beta.log");
    await waitFor("the unfinished line", () => readFileSync(log, "utf8").endsWith("one\nhal"));
    const follow = project.apexAsync(["logs", "beta", "-f", "-n", "5", "--json"]);
    const agentLines = () => jsonLines(follow.output()).map((line) => line.line).filter((line) => !line.startsWith("[apex "));
    try {
      await waitFor("the follower's first line", () => agentLines().includes("one"), 30_000);
      await new Promise((resolve) => setTimeout(resolve, 500)); // a poll or two of following
      appendFileSync(log, "f\ntwo\n"); // the rest of the line, as the agent would write it
      const lines = await waitFor("the lines", () => agentLines().includes("two") && agentLines());
      expect(lines).toEqual(["one", "half", "two"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });

  it("of a session that is not running: the line is shown as it is, as without -f", async () => {
    const dir = logDir();
    writeFileSync(join(dir, "beta.log"), "one\nhal");
    expect(jsonLines(project!.apex(["logs", "--session", SESSION, "--json"]).stdout).map((line) => line.line)).toEqual(["one", "hal"]);
    const follow = project!.apexAsync(["logs", "--session", SESSION, "-f", "--json"]);
    try {
      const lines = await waitFor("the lines", () => follow.output().includes('"hal"') && jsonLines(follow.output()).map((line) => line.line), 30_000);
      expect(lines).toEqual(["one", "hal"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });
});

describe("a log the supervisor cut, read back", () => {
  it("starts its .1 at a line's start: the first line shown is whole, not the end of one", async () => {
    const { capLogFile } = await import("../core/session/agents.js");
    const dir = logDir();
    const file = join(dir, "beta.log");
    // 1000 lines of 30 bytes: the last 10,000 bytes start inside a line.
    const line = (i: number) => `line ${String(i).padStart(4, "0")} ${"x".repeat(19)}\n`;
    writeFileSync(file, Array.from({ length: 1000 }, (_, i) => line(i)).join(""));
    expect(await capLogFile(file, 10_000)).toBe(true);
    const shown = jsonLines(project!.apex(["logs", "--session", SESSION, "-n", "1000", "--json"]).stdout).map((entry) => entry.line);
    expect(shown.length).toBeGreaterThan(300);
    for (const text of shown) expect(text).toMatch(/^line \d{4} x{19}$/);
    expect(shown.at(-1)).toBe("line 0999 xxxxxxxxxxxxxxxxxxx");
  });
});
