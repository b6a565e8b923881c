// `apex connect`: on a terminal, a screen redrawn in place until Ctrl-C (driven here through
// util-linux `script`, which gives the CLI a real pseudo-terminal); on a pipe, events line by
// line. A real `apex serve` on loopback in front of a live session; the built CLI.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { renderMonitor, type MonitorState } from "../plugins/sharing/monitor.js";
import { APEX_BIN, Project, cleanEnv, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { endChild, stopsAfterEach } from "./support/cleanup.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.2; done", beta: "while true; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const stops = stopsAfterEach();

/** `apex serve` at `listen`, stopped (SIGTERM) after the test or by the stop() it returns. */
async function startServe(p: Project, listen: string): Promise<{ url: string; stop(): Promise<unknown>; log(): string }> {
  const run = p.apexAsync(["serve", "--listen", listen, "--json"]);
  const stop = () => endChild(run);
  stops.push(stop);
  const url = await waitFor("apex serve", () => (run.output().includes("}") ? (JSON.parse(run.output()) as { url: string }).url : undefined), 30_000);
  return { url, stop, log: () => run.errors() };
}

async function served(p: Project): Promise<{ url: string; sid: string; operator: string; viewer: string; stop(): Promise<unknown> }> {
  const sid = p.start().session_id;
  const { url, stop } = await startServe(p, "127.0.0.1:0");
  const token = (user: string, role: string) => JSON.parse(p.apex(["session", "share", "current", user, "--role", role, "--json"]).stdout).token as string;
  return { url, sid, operator: token("otto", "operator"), viewer: token("vera", "viewer"), stop };
}

describe("apex connect on a terminal", () => {
  it("redraws the status, agents, tasks, last checkpoint and events in place until Ctrl-C", async () => {
    project = new Project(CONFIG);
    const { url, sid, operator, viewer, stop } = await served(project);
    expect(project.apex(["task", "add", "write the parser"]).status).toBe(0);
    const target = `${url.replace("http://", "")}/${sid}`;
    // script(1) runs the command on a pseudo-terminal of 100×30 (stty), copying its output to stdout.
    const command = `stty cols 100 rows 30; exec ${process.execPath} ${APEX_BIN} connect ${target}`;
    const child = spawn("script", ["-qfc", command, "/dev/null"], { cwd: project.dir, env: { ...cleanEnv(), APEX_TOKEN: viewer, TERM: "xterm" }, detached: true });
    let screen = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (screen += chunk));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    stops.push(async () => {
      if (child.exitCode === null) process.kill(-child.pid!, "SIGKILL");
      await exited;
    });

    await waitFor("the first screen", () => screen.includes("RECENT EVENTS"));
    expect(screen).toContain("\u001b[?1049h"); // alternate screen, like top
    expect(screen).toContain(`APEX ${sid}  active  vera (viewer)`);
    expect(screen).toMatch(/tasks {7}1 pending · 0 active · 0 completed · 0 failed/);
    expect(screen).toMatch(/alpha {9}running/);
    const frames = () => screen.split("\u001b[H").length;
    const before = frames();

    // An operator pauses from elsewhere: the view redraws with the new state and the event.
    const remote = project.apex(["--remote", target, "pause"], { env: { APEX_TOKEN: operator } });
    expect(remote.status, remote.stderr).toBe(0);
    await waitFor("the paused screen", () => {
      const last = screen.slice(screen.lastIndexOf("\u001b[H"));
      return last.includes(`${sid}  paused`) && /alpha {9}paused/.test(last) && last.includes("session paused") && last.includes("[user:otto]") && last.includes("checkpoint  ");
    });
    expect(frames()).toBeGreaterThan(before);
    const last = screen.slice(screen.lastIndexOf("\u001b[H"));
    expect(last).toMatch(/checkpoint {2}\d+ \(onPause\)/);
    // Every line fits the terminal's width.
    for (const line of last.split(/\r?\n/)) expect(line.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "").length).toBeLessThanOrEqual(100);

    // The server restarts: the view says why events stopped and that refreshes fail, then, once the
    // server is back, follows the events again and drops both notices. Before, events never came
    // again, and the "Cannot refresh" notice stayed on the screen.
    const lastFrame = () => screen.slice(screen.lastIndexOf("\u001b[H"));
    await stop();
    await waitFor("the notices", () => lastFrame().includes("The server is shutting down: events stopped") && lastFrame().includes("Cannot refresh"), 15_000);
    const again = await startServe(project, url.replace("http://", ""));
    // Both notices go once the server answers, before any event: the stream's stayed until the next
    // event came (in a paused session, until someone resumed it), although events were followed again.
    await waitFor("the notices gone", () => !lastFrame().includes("Cannot refresh") && !lastFrame().includes("stream ended"), 10_000);
    const resumed = project.apex(["--remote", target, "resume"], { env: { APEX_TOKEN: operator } });
    expect(resumed.status, resumed.stderr).toBe(0);
    await waitFor("the resume, followed again", () => /session resumed.*\[user:otto\]/.test(lastFrame()) && /alpha {9}running/.test(lastFrame()), 15_000);

    // Unshared: the view says access ended and asks nothing more. It refreshed every 2 s with the
    // refused token, each a failed login from this address, for which the server slowed down and
    // refused (429) every other user of the address.
    expect(project.apex(["session", "unshare", "current", "vera"]).status).toBe(0);
    await waitFor("the access ended", () => lastFrame().includes("Access ended: "), 10_000);
    const refusals = () => again.log().split("\n").filter((line) => / 401 - /.test(line)).length;
    // Every 2 s the view refreshes: refused, it only draws a frame (the clock); asking, it would draw once answered.
    // Counted by those frames, not by the clock: a fixed 2.5 s could hold no refresh on a loaded machine.
    const refreshes = async (count: number) => {
      const from = frames();
      await waitFor(`${count} refreshes`, () => frames() >= from + count, 30_000);
    };
    // A refresh sent just before the refusal reached the view is answered (and logged) after it: not counted.
    await refreshes(2);
    const seen = refusals();
    await refreshes(2);
    expect(refusals()).toBe(seen);

    // Ctrl-C: the screen is restored and the command ends with 0.
    child.stdin.write("\u0003");
    expect(await exited).toBe(0);
    expect(screen).toContain("\u001b[?1049l");
    expect(screen).toContain(`Detached from ${url}.`);
  });
});

/**
 * A pass-through proxy in front of `apex serve` that holds the client's event-stream request
 * until `beforeStream` has run, so that whatever it does happens after the client's status and
 * before its subscription, every run. It keeps the session.status reply and the stream's body.
 */
async function streamGate(url: string, beforeStream: () => Promise<void>): Promise<{ address: string; status(): { session: { event_seq: number } }; streamBody(): unknown }> {
  let status: string | undefined;
  let streamBody: unknown;
  const proxy = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", async () => {
      const body = Buffer.concat(chunks);
      if (request.url!.endsWith("/stream")) {
        streamBody = JSON.parse(body.toString());
        await beforeStream();
      }
      const forwarded = httpRequest(`${url}${request.url}`, { method: request.method, headers: request.headers }, (reply) => {
        response.writeHead(reply.statusCode!, reply.headers);
        const text: Buffer[] = [];
        reply.on("data", (chunk: Buffer) => text.push(chunk));
        if (request.url!.endsWith("/rpc/session.status")) reply.on("end", () => (status = Buffer.concat(text).toString()));
        reply.pipe(response);
      });
      response.on("close", () => forwarded.destroy());
      forwarded.end(body);
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  stops.push(() => {
    proxy.closeAllConnections();
    return new Promise((resolve) => proxy.close(resolve));
  });
  return { address: `127.0.0.1:${(proxy.address() as AddressInfo).port}`, status: () => (JSON.parse(status!) as { result: { session: { event_seq: number } } }).result, streamBody: () => streamBody };
}

describe("apex connect on a pipe", () => {
  it("prints the status, then one line per event: none missed between the two, none twice", async () => {
    project = new Project(CONFIG);
    const { url, sid, operator, viewer } = await served(project);
    const target = `${url.replace("http://", "")}/${sid}`;
    // A task added after connect read the status and before it subscribed. Before, the stream began
    // after the subscription and that task's event was never printed.
    const gate = await streamGate(url, async () => {
      const added = await fetch(`${url}/api/sessions/${sid}/rpc/task.add`, { method: "POST", headers: { authorization: `Bearer ${operator}`, "content-type": "application/json" }, body: JSON.stringify({ title: "between status and stream" }) });
      expect(added.status).toBe(200);
    });
    const run = project.apexAsync(["connect", `${gate.address}/${sid}`], { env: { APEX_TOKEN: viewer } });
    stops.push(async () => {
      if (run.child.exitCode === null) run.child.kill("SIGINT");
      await run.done;
    });
    await waitFor("the header", () => run.output().includes("alpha"));
    expect(run.output()).toContain(`Connected to http://${gate.address} as vera (viewer)`);
    // The stream starts at the last event the status includes: the session's own events before it are not printed again.
    await waitFor("the stream request", () => gate.streamBody());
    const { event_seq } = gate.status().session;
    expect(event_seq).toBeGreaterThan(0);
    expect(gate.streamBody()).toEqual({ "events.subscribe": { from_seq: event_seq } });
    await waitFor("the task added in between", () => run.output().includes("added: between status and stream"));
    expect(run.output()).not.toContain("session started");
    expect(project.apex(["--remote", target, "pause"], { env: { APEX_TOKEN: operator } }).status).toBe(0);
    await waitFor("the pause, line by line", () => /session paused .*\[user:otto\]\n/.test(run.output()));
    expect(run.output().split("added: between status and stream")).toHaveLength(2);
    expect(run.output()).not.toContain("\u001b[");
    // Its reader goes (as `| head` does): connect ends, with 0, though no event comes to write.
    run.child.stdout.destroy();
    expect((await run.done).status).toBe(0);

    // The network goes silent (a laptop asleep, a VPN gone: the connection neither answers nor
    // closes): the server's keep-alive (every 15 s) stops coming, and connect says so and ends,
    // before the stream opens or after. It waited for ever, printing nothing more.
    for (const when of ["as", "after"] as const) {
      const link = await silentLink(url);
      const quiet = project.apexAsync(["connect", `${link.address}/${sid}`, "--json"], { env: { APEX_TOKEN: viewer, APEX_STREAM_IDLE_MS: "1500" } });
      stops.push(async () => {
        if (quiet.child.exitCode === null) quiet.child.kill("SIGKILL");
        await quiet.done;
      });
      // As it asks for the stream (its status printed), or once the server holds the stream open.
      await waitFor("the status", () => quiet.output().includes('"connected"'));
      if (when === "after") await waitFor("the stream open", () => project!.status().connected?.some((user: { user: string; streams: number }) => user.user === "vera" && user.streams > 0));
      link.silence();
      const ended = await Promise.race([quiet.done, new Promise<undefined>((resolve) => setTimeout(resolve, 10_000))]);
      expect(ended, `connect still waits (${when} the stream opened)`).toBeDefined();
      expect(ended!.status, ended!.stderr).toBe(1);
      expect(JSON.parse(ended!.stderr).error).toMatchObject({ code: "APEX_E_TIMEOUT", message: expect.stringContaining("1.5 s") });
    }
  });
});

/**
 * A TCP link to `url` that forwards both ways until silence(): from then on it passes nothing and
 * closes nothing, as a network that went away under an open connection.
 */
async function silentLink(url: string): Promise<{ address: string; silence(): void }> {
  const target = new URL(url);
  let silent = false;
  const sockets = new Set<Socket>();
  const link = createNetServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
    }
    client.on("data", (chunk) => void (!silent && upstream.write(chunk)));
    upstream.on("data", (chunk) => void (!silent && client.write(chunk)));
  });
  await new Promise<void>((resolve) => link.listen(0, "127.0.0.1", resolve));
  stops.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => link.close(resolve));
  });
  return { address: `127.0.0.1:${(link.address() as AddressInfo).port}`, silence: () => void (silent = true) };
}

describe("the live view's renderer", () => {
  const state = (overrides: Partial<MonitorState> = {}): MonitorState => ({
    origin: "http://127.0.0.1:7433",
    me: { user: "vera", role: "viewer" },
    now: new Date("2026-12-02T10:00:05Z"),
    notice: null,
    events: Array.from({ length: 30 }, (_, i) => ({ seq: i + 1, at: `2026-12-02T10:00:${String(i).padStart(2, "0")}Z`, type: "task.added", actor: "user:otto", task: `t-${i}`, title: `task number ${i}` })),
    status: {
      session: { session_id: "3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b", name: null, project_id: "p", status: "paused", stored_status: "paused", initial_task: "x", created_at: "", updated_at: "", supervisor: null, host: null, remote: false, lease_expires_at: null, restored_from: null, worktree: null, event_seq: 30 },
      agents: [
        { name: "a-very-long-agent-name", status: "paused", pid: 42, pgid: 42, last_pid: 42, restart_at: null, alive: true, process_state: "T", processes: [42], stopping: [], stopped: [42], task: "t-0001", reported_status: null, restarts: 0, uptime_seconds: 3, cpu_seconds: 1.234, last_exit: null },
      ],
      tasks: { pending: 2, active: 1, completed: 3, failed: 0, total: 6 },
      last_checkpoint: { key: "k", id: "c", sequence: 7, trigger: "onPause", created_at: "2026-12-02T10:00:04Z", description: "paused by otto" },
      left_running: [],
      last_session: null,
      connected: [{ user: "otto", role: "operator", since: "", streams: 1 }],
    },
    ...overrides,
  });

  it("fits a 40×16 terminal: cut lines end in an ellipsis, the newest events fill the rest", () => {
    const lines = renderMonitor(state(), 40, 16);
    expect(lines).toHaveLength(16);
    for (const line of lines) expect([...line].length).toBeLessThanOrEqual(40);
    expect(lines[0]).toBe("APEX 3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a…");
    expect(lines[1]).toBe("tasks       2 pending · 1 active · 3 co…");
    expect(lines[2]).toBe('checkpoint  7 (onPause) "paused by otto…');
    expect(lines[3]).toBe("connected   otto (operator)");
    expect(lines[6]).toBe("a-very-long-a paused      42       1.23…");
    expect(lines.at(-1)).toBe("Ctrl-C detaches.");
    // A branch session by its name, its id after it.
    const named = state();
    (named.status!.session as { name?: string }).name = "side";
    expect(renderMonitor(named, 80, 16)[0]).toMatch(/^APEX side \(3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b\) {2}paused/);
    // The newest events, oldest of them first, as many as fit.
    expect(lines[9]).toContain("t-24");
    expect(lines.at(-2)).toContain("t-29");
  });

  it("shows what the server sent as text: no control character, each field on its line, missing fields as '-'", () => {
    const evil = "\u001b]0;pwned\u0007\u001b[2J\u009b31m\nforged";
    const crafted = state({
      me: { user: `mallory${evil}`, role: "viewer" },
      notice: `why${evil}`,
      events: [{ seq: 1, at: "2026-12-02T10:00:00Z", type: "task.added", actor: `user:x${evil}`, task: "t-1", title: `title${evil}` }],
    });
    crafted.status!.agents[0]!.task = `task${evil}`;
    crafted.status!.agents[0]!.name = `agent${evil}`;
    crafted.status!.last_checkpoint!.description = `desc${evil}`;
    const lines = renderMonitor(crafted, 400, 30);
    expect(lines.join("\n")).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    expect(lines.join("\n")).toContain("title\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m\\u000aforged");
    expect(lines.filter((line) => line.includes("forged"))).toHaveLength(lines.filter((line) => line.includes("\\u000aforged")).length);
    // A status with fields left out (another server) still draws.
    const sparse = state({ status: { session: crafted.status!.session, agents: [{ name: "a", status: "running" }] } as never });
    expect(renderMonitor(sparse, 80, 20).join("\n")).toContain("a             running     -        -s");
  });

  it("colours with the given painter only, and says when there is nothing yet", () => {
    const lines = renderMonitor(state({ events: [], notice: "The session's event stream ended." }), 120, 30, (text, color) => `<${color}>${text}</>`);
    expect(lines[0]).toContain("<yellow>paused</>");
    expect(lines.join("\n")).toContain("<gray>(none yet)</>");
    expect(lines.at(-2)).toBe("<yellow>The session's event stream ended.</>");
    // Events are coloured by the painter too, never with colour codes of their own (which the
    // screen would show escaped, as text: `\u001b[90m10:00:29\u001b[0m` on every event's line).
    const events = renderMonitor(state({ events: [{ seq: 1, at: "2026-12-02T10:00:29Z", type: "error", actor: "supervisor", origin: "alpha", message: "boom" }] }), 120, 30, (text, color) => `<${color}>${text}</>`);
    expect(events.at(-2)).toBe("<gray>10:00:29</>  <red>error in alpha: boom</><gray>  [supervisor]</>");
    expect(renderMonitor(state({ status: null }), 80, 10)[0]).toContain("APEX no session  -");
  });
});

describe("apex connect on a pipe when the server stops", () => {
  it("fails with APEX_E_RPC (exit 1), saying why, as does a remote logs -f: a script tells it from the session's end", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stops.push(async () => {
      if (server.child.exitCode === null) server.child.kill("SIGTERM");
      await server.done;
    });
    const url = await waitFor("apex serve", () => (server.output().includes("}") ? (JSON.parse(server.output()) as { url: string }).url : undefined), 30_000);
    const token = JSON.parse(project.apex(["session", "share", "current", "vera", "--role", "viewer", "--json"]).stdout).token as string;
    const run = project.apexAsync(["connect", `${url.replace("http://", "")}/${sid}`, "--json"], { env: { APEX_TOKEN: token } });
    stops.push(async () => {
      if (run.child.exitCode === null) run.child.kill("SIGINT");
      await run.done;
    });
    // `apex --remote … logs -f` too (before, it ended silently, as if the log had ended).
    const logs = project.apexAsync(["--remote", `${url.replace("http://", "")}/${sid}`, "logs", "-f", "-n", "1"], { env: { APEX_TOKEN: token } });
    stops.push(async () => {
      if (logs.child.exitCode === null) logs.child.kill("SIGINT");
      await logs.done;
    });
    await waitFor("the status", () => run.output().includes('"connected"'));
    // The streams are open once the server counts vera as connected with both.
    await waitFor("the streams", () => project!.status().connected?.some((user: { user: string; streams: number }) => user.user === "vera" && user.streams > 1));
    server.child.kill("SIGTERM");
    // The server gone is no end of the session: exit 1 with APEX_E_RPC (`details.connection: "closing"`).
    // Before, both exited 0, as when the session had ended.
    const ended = await run.done;
    expect(ended.status, ended.stderr).toBe(1);
    // --json is JSON lines: the status first, then the events, each line one object.
    const lines = ended.stdout.trim().split("\n");
    expect(Object.keys(JSON.parse(lines[0]!))).toEqual(["connected", "status"]);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(JSON.parse(ended.stderr).error).toMatchObject({ code: "APEX_E_RPC", details: { connection: "closing" } });
    expect(JSON.parse(ended.stderr).error.message).toContain("The server is shutting down");
    const logsEnded = await logs.done;
    expect(logsEnded.status, logsEnded.stderr).toBe(1);
    expect(logsEnded.stderr).toContain("error[APEX_E_RPC]: The server is shutting down");
  });

  it("takes SIGHUP (its terminal closed) as SIGTERM: the stream is told why, and serve.json is removed", async () => {
    project = new Project(CONFIG);
    const sid = project.start().session_id;
    const server = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stops.push(async () => {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
      await server.done;
    });
    const url = await waitFor("apex serve", () => (server.output().includes("}") ? (JSON.parse(server.output()) as { url: string }).url : undefined), 30_000);
    const serveFile = join(project.storeDir, "serve.json");
    await waitFor("serve.json", () => existsSync(serveFile) && readFileSync(serveFile, "utf8").includes(url));
    const token = JSON.parse(project.apex(["session", "share", "current", "vera", "--role", "viewer", "--json"]).stdout).token as string;
    const run = project.apexAsync(["connect", `${url.replace("http://", "")}/${sid}`, "--json"], { env: { APEX_TOKEN: token } });
    stops.push(async () => {
      if (run.child.exitCode === null) run.child.kill("SIGINT");
      await run.done;
    });
    await waitFor("the stream", () => project!.status().connected?.some((user: { user: string; streams: number }) => user.user === "vera" && user.streams >= 1));
    server.child.kill("SIGHUP");
    // Before, SIGHUP ended the server at once: the client saw a connection reset, and serve.json named a dead server.
    expect((await server.done).status).toBe(0);
    expect(existsSync(serveFile)).toBe(false);
    const ended = await run.done;
    expect(ended.status, ended.stderr).toBe(1);
    expect(JSON.parse(ended.stderr).error).toMatchObject({ code: "APEX_E_RPC", details: { connection: "closing" } });
  });

  it("a stream closed without its end (a proxy that gave up) fails too", async () => {
    project = new Project(CONFIG);
    const sid = "3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b";
    const token = `apx_0123456789abcdef_${"A".repeat(43)}`;
    const status = { session: { session_id: sid, status: "active", event_seq: 0 }, agents: [], tasks: { pending: 0, active: 0, completed: 0, failed: 0 } };
    // As `apex serve` answers, except that each stream is closed, cleanly, after its first event.
    const proxy = createServer((request, response) => {
      if (request.url!.endsWith("/stream")) {
        response.writeHead(200, { "content-type": "text/event-stream" });
        response.end(`event: events.subscribe\ndata: ${JSON.stringify({ seq: 1, type: "task.added", actor: "user:otto", at: "2026-12-02T10:00:00Z" })}\n\n`);
        return;
      }
      const method = request.url!.split("/rpc/")[1];
      const result = method === "whoami" ? { user: "vera", role: "viewer", session_id: sid } : method === "logs.read" ? { agents: ["alpha"], lines: [] } : status;
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ result }));
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    stops.push(() => new Promise((resolve) => proxy.close(resolve)));
    const target = `127.0.0.1:${(proxy.address() as AddressInfo).port}/${sid}`;
    for (const args of [["connect", target, "--json"], ["--remote", target, "logs", "-f", "--json"]]) {
      const result = await project.apexAsync(args, { env: { APEX_TOKEN: token } }).done;
      // Before: exit 0, nothing said, as if the session had ended.
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(1);
      expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_RPC", details: { connection: "closed" } });
    }
  });
});

describe("apex connect --help", () => {
  it("says how a pipe's connect ends: exit 0 at the session's end, 1 when the server goes", () => {
    project = new Project(CONFIG);
    const help = project.apex(["connect", "--help"]).stdout.replace(/\s+/g, " ");
    expect(help).toContain("On a pipe: ends at the session's end (exit 0, said on stderr) or Ctrl-C; a server that stops or a connection lost under it is exit 1 (APEX_E_RPC, how in details.connection).");
  });
});

describe("apex connect when the session ends or the server is killed", () => {
  it("exits 0 when a supervisor's own server closes as its session stops, having sent the session's last events and lines, and 1 (details.connection) when apex serve is killed", async () => {
    project = new Project(CONFIG.replace("plugins:\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'));
    const follow = (url: string, sid: string, token: string) => {
      const target = `${url.replace("http://", "")}/${sid}`;
      const runs = [project!.apexAsync(["connect", target, "--json"], { env: { APEX_TOKEN: token } }), project!.apexAsync(["--remote", target, "logs", "-f", "-n", "1"], { env: { APEX_TOKEN: token } })];
      for (const run of runs) stops.push(async () => {
        if (run.child.exitCode === null) run.child.kill("SIGINT");
        await run.done;
      });
      return runs;
    };
    const shared = () => JSON.parse(project!.apex(["session", "share", "current", "vera", "--role", "viewer", "--json"]).stdout) as { token: string; session_id: string };
    const streams = () => waitFor("the streams", () => project!.status().connected?.some((user: { user: string; streams: number }) => user.user === "vera" && user.streams >= 2));
    // The session's supervisor serves it (sharing.serve) and closes its server as the session stops: that is the
    // session's end, exit 0, said as such (not as a server gone, which is exit 1).
    project.start();
    const first = shared();
    const own = JSON.parse(readFileSync(join(project.storeDir, "serve.json"), "utf8")) as { url: string };
    const [connect, logs] = follow(own.url, first.session_id, first.token);
    await streams();
    expect(project.apex(["stop"]).status).toBe(0);
    const ended = await connect!.done;
    expect(ended.status, ended.stderr).toBe(0);
    expect(ended.stderr).toContain(`The event stream ended: session ${first.session_id.slice(0, 8)} has ended.`);
    // What the session wrote up to its end is sent before it: its stop event, its agents' last lines (both were cut off).
    expect(ended.stdout.trim().split("\n").map((line) => JSON.parse(line) as { type?: string }).some((event) => event.type === "session.stopped")).toBe(true);
    const logsEnded = await logs!.done;
    expect(logsEnded.status, logsEnded.stderr).toBe(0);
    expect(logsEnded.stderr).toContain(`The log stream ended: session ${first.session_id.slice(0, 8)} has ended.`);
    expect(logsEnded.stdout).toMatch(/alpha \| \[apex [^\]]+\] pid \d+ (was killed by SIGTERM|exited)/);

    // apex serve killed mid-stream (kill -9): exit 1, APEX_E_RPC, how the connection broke in details.connection.
    project.start();
    const second = shared();
    const server = project.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stops.push(async () => {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
      await server.done;
    });
    const url = await waitFor("apex serve", () => (server.output().includes("}") ? (JSON.parse(server.output()) as { url: string }).url : undefined), 30_000);
    const [killedConnect, killedLogs] = follow(url, second.session_id, second.token);
    await streams();
    server.child.kill("SIGKILL");
    for (const run of [killedConnect!, killedLogs!]) {
      const killed = await run.done;
      expect(killed.status, killed.stderr).toBe(1);
      expect(killed.stderr).toContain("APEX_E_RPC");
    }
    expect(JSON.parse((await killedConnect!.done).stderr).error).toMatchObject({ code: "APEX_E_RPC", details: { connection: expect.any(String) } });
  });
});

describe("apex connect and apex login at an address where apex serve is not", () => {
  it("say so in one line (APEX_E_RPC, exit 1), without the other server's page, and save no token", async () => {
    project = new Project(CONFIG);
    const listen = async (handler: Parameters<typeof createServer>[1]): Promise<{ server: Server; port: number }> => {
      const server = createServer(handler);
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      stops.push(() => new Promise((resolve) => server.close(resolve)));
      return { server, port: (server.address() as AddressInfo).port };
    };
    const page = "<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works</h1></body></html>";
    // A web page for every request; a server that takes no POST (as `python3 -m http.server`); nothing at all.
    const web = await listen((_request, response) => response.writeHead(200, { "content-type": "text/html" }).end(page));
    const noPost = await listen((_request, response) => response.writeHead(501, { "content-type": "text/html" }).end("<html><body><h1>Error response</h1><p>Error code: 501</p><p>Message: Unsupported method ('POST').</p></body></html>"));
    // What fastify answers by itself while `apex serve` closes (or a proxy whose server is down): out of reach for now.
    const closing = await listen((_request, response) => response.writeHead(503, { "content-type": "application/json" }).end('{"error":"Service Unavailable","message":"Service Unavailable","statusCode":503}'));
    const gone = await listen(() => {});
    await new Promise((resolve) => gone.server.close(resolve));
    const sid = "3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b";
    const credentials = join(project.dir, "credentials.json");
    const token = `apx_0123456789abcdef_${"A".repeat(43)}`;
    for (const [port, says] of [
      [web.port, "HTTP 200, text/html"],
      [noPost.port, "HTTP 501, text/html"],
      [closing.port, "Cannot reach http://127.0.0.1:" + closing.port + ": HTTP 503 Service Unavailable (shutting down"],
      [gone.port, "ECONNREFUSED"],
    ] as const) {
      for (const args of [["connect", `127.0.0.1:${port}/${sid}`, "--json"], ["login", `127.0.0.1:${port}/${sid}`, "--json"]]) {
        const run = project.apexAsync(args, { env: { APEX_TOKEN: token, APEX_CREDENTIALS: credentials } });
        const result = await run.done;
        expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(1);
        const error = JSON.parse(result.stderr).error as { code: string; message: string };
        expect(error.code).toBe("APEX_E_RPC");
        expect(error.message).toContain(says);
        expect(error.message).not.toContain("<");
        expect(error.message).not.toContain("\n");
        expect(existsSync(credentials)).toBe(false);
      }
    }
  });
});
