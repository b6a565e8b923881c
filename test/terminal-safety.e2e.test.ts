// Text from another user, an agent or a remote server never acts on the reader's terminal: task
// titles, log lines, memory values, events, user names and error messages reach stdout and
// stderr with every control character but newline and tab shown as its escape (\u001b). A real
// `apex serve` on loopback with crafted text in its session, and a hostile HTTP server on
// loopback that sends crafted replies; the built CLI prints what it got.
import { createServer, type Server } from "node:http";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { ok, remote, serve, share } from "./support/serve.js";
import { Writable } from "node:stream";
import { displayWidth, guardTerminalOutput, logLineSegments, terminalSafe, writeControl } from "../cli/terminal-text.js";
import { table } from "../cli/output.js";
import { Progress } from "../plugins/compression/progress.js";

/** Bytes a terminal would act on: C0 but tab and newline, DEL, C1 (UTF-8 C2 80–9F), bidirectional overrides. */
function controlBytes(text: string): string[] {
  return [...text.matchAll(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g)].map((match) => JSON.stringify(match[0]));
}

const EVIL = "\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e";

describe("terminal-safe text", () => {
  it("shows control characters as escapes, keeps newline and tab (one line: those too), and APEX's own colours only when asked", () => {
    expect(terminalSafe(`a${EVIL}b\tc\nd`)).toBe("a\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u202eb\tc\nd");
    expect(terminalSafe("x\r\ny\rz")).toBe("x\r\ny\\u000dz");
    expect(terminalSafe("a\nb\tc", { singleLine: true })).toBe("a\\u000ab\\u0009c");
    expect(terminalSafe("\u001b[31mred\u001b[0m \u001b[2J", { keepColours: true })).toBe("\u001b[31mred\u001b[0m \\u001b[2J");
    expect(terminalSafe("\u001b[38;5;1mx", { keepColours: true })).toBe("\\u001b[38;5;1mx");
    // Inside JSON, the escape is the same character again.
    const json = JSON.stringify({ v: "a\u009b\u007f\u202e" });
    expect(JSON.parse(terminalSafe(json))).toEqual({ v: "a\u009b\u007f\u202e" });
    const plain = "plain text, ünïcödé ✓";
    expect(terminalSafe(plain)).toBe(plain);
  });

  it("a log line's carriage returns make the lines a terminal showed one after the other; nothing drawn over is lost", () => {
    expect(logLineSegments("10%\r20%\r30%")).toEqual(["10%", "20%", "30%"]);
    expect(logLineSegments("\rrm -rf /\rall good\r")).toEqual(["rm -rf /", "all good"]);
    expect(logLineSegments("crlf line\r")).toEqual(["crlf line"]);
    expect(logLineSegments("")).toEqual([""]);
    expect(logLineSegments("\r\r")).toEqual([""]);
    expect(logLineSegments("no return")).toEqual(["no return"]);
  });
});

describe("table columns", () => {
  it("are as wide as a terminal shows their text: wide scripts and emoji two columns, marks none, colours none, a control character its escape", () => {
    expect([displayWidth("abc"), displayWidth("漢字ab"), displayWidth("한국어"), displayWidth("ｱ")]).toEqual([3, 6, 6, 1]);
    expect([displayWidth("nai\u0308ve"), displayWidth("👍🏽"), displayWidth("👨‍👩‍👧"), displayWidth("\u200bx")]).toEqual([5, 2, 2, 1]);
    expect([displayWidth("\u001b[32mrunning\u001b[0m"), displayWidth("a\u0007b")]).toEqual([7, 8]);
    // Every row's second column starts at the same terminal column.
    const rows = table(["AGENT", "REPORTED", "TASK"], [["coder", "実装中", "t-0001"], ["reviewer", "naïve ✓", "t-0002"], ["qa", "\u001b[31mred\u001b[0m\ttab", "-"]]).split("\n");
    expect(rows).toEqual([
      "AGENT     REPORTED      TASK",
      "coder     実装中        t-0001",
      "reviewer  naïve ✓       t-0002",
      "qa        \u001b[31mred\u001b[0m\\u0009tab  -",
    ]);
    const taskColumn = rows.map((row) => displayWidth(row.slice(0, row.search(/(TASK|t-000\d|-)$/))));
    expect(new Set(taskColumn).size).toBe(1);
  });
});

describe("a guarded stream", () => {
  const capture = () => {
    let written = "";
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        written += chunk.toString("utf8");
        callback();
      },
    }) as unknown as NodeJS.WriteStream;
    return { stream, text: () => written };
  };

  it("escapes what is written to it (strings and bytes), passes APEX's colours only where asked, and control sequences only through writeControl", () => {
    const plain = capture();
    const coloured = capture();
    guardTerminalOutput((stream) => stream === coloured.stream, [plain.stream, coloured.stream]);
    for (const { stream } of [plain, coloured]) {
      stream.write(`\u001b[31mred\u001b[0m ${EVIL}\n`);
      stream.write(Buffer.from(`bytes ${EVIL}\n`));
      writeControl(stream, "\u001b[H\u001b[K");
    }
    expect(plain.text()).toBe(`\\u001b[31mred\\u001b[0m ${terminalSafe(EVIL)}\nbytes ${terminalSafe(EVIL)}\n\u001b[H\u001b[K`);
    expect(coloured.text()).toBe(`\u001b[31mred\u001b[0m ${terminalSafe(EVIL)}\nbytes ${terminalSafe(EVIL)}\n\u001b[H\u001b[K`);
    // A progress line: its own \r and erase-line pass, the text in it is made safe and kept on the line.
    const progress = capture();
    guardTerminalOutput(() => false, [progress.stream]);
    (progress.stream as { columns?: number }).columns = 200;
    const bar = new Progress(progress.stream, true);
    bar.update(`compressing ${EVIL}\nnext`, true);
    bar.done();
    expect(progress.text()).toBe(`\r${terminalSafe(`compressing ${EVIL}\nnext`, { singleLine: true })}\u001b[K\r\u001b[K`);
  });
});

describe("--remote and connect print crafted text from a real server safely", () => {
  let project: Project | undefined;
  const stops: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const stop of stops.splice(0)) await stop();
    project?.cleanup();
  });

  it("status, tasks, logs, memory, events: no control character reaches stdout or stderr; --json keeps the exact values", async () => {
    const agent = `printf 'log \\033]0;pwned\\007 \\033[2J\\302\\233 line\\n'; printf 'bar 10%%\\rbar 20%%\\rbar 30%%\\r\\n'; while true; do sleep 0.3; done`;
    project = new Project(shellAgents({ alpha: agent }));
    const p = project;
    const sid = p.start(["--task", `start${EVIL}`]).session_id;
    ok(p.apex(["task", "add", `title${EVIL}`]));
    ok(p.apex(["memory", "set", "/notes/evil", JSON.stringify({ text: `value${EVIL}`, "key\u001b[2J": 1 })]));
    ok(p.apex(["memory", "set", "/notes/raw", JSON.stringify(`raw${EVIL}\nsecond line`)]));
    const url = await serve(p, stops);
    const viewer = share(p, "current", "vera", "viewer");
    await waitFor("the agent's log line", () => ok(remote(p, url, sid, viewer.token, ["logs", "-n", "5"])).includes("line") || undefined, 30_000);

    for (const args of [["status"], ["task", "list"], ["logs", "-n", "5"], ["memory", "show", "/notes/evil"], ["memory", "show", "/notes/raw"], ["memory", "query", "/notes/**"], ["session", "list"], ["session", "history"]]) {
      const result = remote(p, url, sid, viewer.token, args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      expect(controlBytes(result.stdout + result.stderr), args.join(" ")).toEqual([]);
    }
    // The crafted text is there, shown: not dropped.
    expect(ok(remote(p, url, sid, viewer.token, ["task", "list"]))).toContain("title\\u001b]0;pwned\\u0007\\u001b[2J");
    expect(ok(remote(p, url, sid, viewer.token, ["logs", "-n", "5"]))).toContain("log \\u001b]0;pwned\\u0007 \\u001b[2J\\u009b line");
    // A progress bar drawn with carriage returns: each state on a line of its own, locally and remotely.
    for (const logs of [ok(remote(p, url, sid, viewer.token, ["logs", "-n", "5"])), ok(p.apex(["logs", "-n", "5"]))]) {
      expect(logs.split("\n").filter((line) => / \| bar \d0%$/.test(line)).map((line) => line.slice(-7))).toEqual(["bar 10%", "bar 20%", "bar 30%"]);
    }
    const jsonLines = ok(p.apex(["logs", "-n", "5", "--json"])).trim().split("\n").map((line) => (JSON.parse(line) as { line: string }).line);
    expect(jsonLines).toContain("bar 10%\rbar 20%\rbar 30%\r");
    expect(ok(remote(p, url, sid, viewer.token, ["memory", "show", "/notes/raw"]))).toContain("second line");
    // --json: the same values, exactly.
    const shown = JSON.parse(ok(remote(p, url, sid, viewer.token, ["memory", "show", "/notes/evil", "--json"]))) as { value: unknown };
    expect(shown.value).toEqual({ text: `value${EVIL}`, "key\u001b[2J": 1 });
    const tasks = remote(p, url, sid, viewer.token, ["task", "list", "--json"]);
    expect(controlBytes(tasks.stdout)).toEqual([]);
    expect(JSON.stringify(JSON.parse(tasks.stdout))).toContain(JSON.stringify(`title${EVIL}`).slice(1, -1));
    // Locally too: a teammate's title, added through the server, is safe in the owner's terminal.
    expect(controlBytes(ok(p.apex(["task", "list"])) + ok(p.apex(["status"])))).toEqual([]);
    // A milestone's text and a task's reason stay on their own line, as a title does: a newline in them forged an entry below (the guard keeps newlines).
    ok(p.apex(["milestone", `reached${EVIL}\n  9  2026-01-01T00:00:00.000Z  forged`]));
    const failed = ok(p.apex(["task", "fail", "t-1", "--reason", `why${EVIL}\n  result        forged`]));
    for (const out of [failed, ok(p.apex(["milestone"])), ok(p.apex(["task", "show", "t-1"]))]) {
      expect(controlBytes(out)).toEqual([]);
      expect(out).not.toMatch(/^\s+\S+\s+\S*\s*forged$/m);
      expect(out).toContain("\\u000a  ");
    }

    // apex connect on a pipe: the status, then an event carrying a crafted title, each on its own line.
    const connect = p.apexAsync(["connect", `${url.replace(/^http:\/\//, "")}/${sid}`], { env: { APEX_TOKEN: viewer.token } });
    try {
      await waitFor("connect's first lines", () => (connect.output().includes("Connected to") ? true : undefined), 30_000);
      ok(p.apex(["task", "add", `live${EVIL}\nfake 12:00:00  session stopped`]));
      await waitFor("the event", () => (connect.output().includes("live\\u001b") ? true : undefined), 30_000);
    } finally {
      connect.child.kill("SIGINT");
      await connect.done;
    }
    expect(controlBytes(connect.output() + connect.errors())).toEqual([]);
    const eventLine = connect.output().split("\n").find((line) => line.includes("live\\u001b"));
    expect(eventLine).toContain("\\u000afake 12:00:00");
  }, 180_000);
});

describe("a hostile server", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  /** A server that answers as `apex serve` would, with crafted text everywhere. */
  async function hostile(answer: (method: string) => { status: number; body: unknown }): Promise<string> {
    server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        if (request.url?.endsWith("/stream")) {
          response.writeHead(200, { "content-type": "text/event-stream" });
          response.write(`event: events.subscribe\ndata: ${JSON.stringify({ seq: 1, at: `2026-01-01T00:00:00${EVIL}`, type: `task.added${EVIL}`, actor: `user:x${EVIL}`, task: "t1", title: `t${EVIL}` })}\n\n`);
          response.write(`event: events.subscribe\ndata: ${JSON.stringify([1, 2])}\n\n`);
          response.end(`event: end\ndata: ${JSON.stringify({ reason: `gone${EVIL}\nforged line` })}\n\n`);
          return;
        }
        const method = decodeURIComponent(request.url!.split("/rpc/")[1] ?? "");
        const { status, body: reply } = answer(method);
        response.writeHead(status, { "content-type": "application/json" });
        response.end(JSON.stringify(reply));
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(server.address() as { port: number }).port}/s1`;
  }

  it("cannot reach the terminal through error messages, user names, statuses or events", async () => {
    const p = new Project(shellAgents({}));
    try {
      const target = await hostile((method) =>
        method === "whoami"
          ? { status: 200, body: { result: { user: `mallory${EVIL}`, role: `owner${EVIL}`, session_id: "s1" } } }
          : method === "logs.read"
            ? { status: 200, body: { result: { agents: Array.from({ length: 300_000 }, (_, i) => `agent-${i}`), lines: [{ agent: `a${EVIL}`, stream: "stdout", line: `one${EVIL}\n12:00:00 forged` }, null, 5, { agent: 7, stream: "stderr", line: ["x"] }] } } }
          : method === "session.status"
            ? { status: 200, body: { result: { session: { session_id: `s1${EVIL}`, status: `active${EVIL}` }, agents: [{ name: `a${EVIL}`, status: "running", task: `t${EVIL}` }], tasks: { pending: `1${EVIL}`, active: 0, completed: 0, failed: 0 }, connected: [{ user: `u${EVIL}`, role: "viewer" }] } } }
            : { status: 409, body: { error: { code: "APEX_E_CONFLICT", message: `refused${EVIL}`, hint: `hint${EVIL}` } } },
      );
      const env = { APEX_TOKEN: `apx_0123456789abcdef_${"a".repeat(43)}` };
      // Not spawnSync: the server answers from this process.
      const connect = await p.apexAsync(["connect", target], { env }).done;
      expect(connect.status, connect.stderr).toBe(0);
      expect(connect.stdout).toContain("mallory\\u001b");
      expect(connect.stderr).toContain("gone\\u001b");
      expect(controlBytes(connect.stdout + connect.stderr)).toEqual([]);
      // The reason the stream ended is one line.
      expect(connect.stderr.trim().split("\n")).toHaveLength(1);
      // A status report `apex status` cannot print whole (a task count that is not a number): one line, before anything is printed.
      const status = await p.apexAsync(["--remote", target, "status"], { env }).done;
      expect(status.status).toBe(1);
      expect(status.stdout).toBe("");
      expect(status.stderr).toContain("APEX_E_RPC");
      expect(status.stderr).toContain("status report is not one this version of APEX can read");
      // Log lines of any shape, from an agent list too long to spread into Math.max: each printed on one line.
      const logs = await p.apexAsync(["--remote", target, "logs"], { env }).done;
      expect(logs.status, logs.stderr).toBe(0);
      expect(logs.stdout.trimEnd().split("\n")).toHaveLength(4);
      expect(logs.stdout).toContain("one\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u202e\\u000a12:00:00 forged");
      expect(controlBytes(logs.stdout + logs.stderr)).toEqual([]);
      for (const json of [[], ["--json"]]) {
        const refused = await p.apexAsync(["--remote", target, "pause", ...json], { env }).done;
        expect(refused.status).toBe(4);
        expect(refused.stderr).toContain("refused");
        expect(controlBytes(refused.stderr + refused.stdout)).toEqual([]);
      }
    } finally {
      p.cleanup();
    }
  }, 60_000);
});
