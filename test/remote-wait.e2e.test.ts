// How pause, resume, stop, task claim and task done (of a milestone task) wait through `apex serve`
// (`apex --remote HOST:PORT/SESSION`), end to end with the built CLI and a real server on loopback:
// a third-party plugin whose hooks sleep longer than the idle window (APEX_PLUGIN_COMMAND_IDLE_MS,
// short here) is waited for while the supervisor's heartbeat comes through the server; one whose
// hook holds the supervisor's process is given up on after the window, as locally. The HTTP reply
// is the plain JSON one to a client that does not ask for heartbeat lines. Every process is ended by pid.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents, signalIfAlive, waitFor } from "./fixtures/agents/harness.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { slowHooksProject } from "./support/slow-hooks.js";
import { rpc, serve, share, unreadBy } from "./support/serve.js";
import { stopsAfterEach } from "./support/cleanup.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const stops = stopsAfterEach();
/** Supervisors a test stopped (SIGSTOP): continued before the servers stop (after-hooks run last registered first). */
const stopped: number[] = [];
afterEach(() => {
  for (const pid of stopped.splice(0)) signalIfAlive(pid, "SIGCONT");
});

/** The window is 1.5 s here (10 minutes by default): each slow hook below runs longer. */
const env = { APEX_PLUGIN_COMMAND_IDLE_MS: "1500" };

async function served(serverEnv?: NodeJS.ProcessEnv) {
  project = slowHooksProject({ coder: "while true; do sleep 0.2; done" });
  const ready = project.start([]);
  const url = await serve(project, stops, serverEnv);
  const { token } = share(project, ready.session_id, "rita", "owner");
  const p = project;
  const remote = (args: string[], extra: NodeJS.ProcessEnv = env) => p.apex(["--remote", `${url.replace(/^http:\/\//, "")}/${ready.session_id}`, ...args], { env: { APEX_TOKEN: token, ...extra } });
  return { p, ready, url, token, remote, session: ready.session_id.slice(0, 8) };
}

describe("apex --remote with slow plugin hooks", () => {
  it("waits as long as the supervisor's heartbeat comes through the server, saying so on stderr (not with --json)", async () => {
    const { p, remote, session } = await served();
    // Before, the client waited a fixed 120 s whatever the supervisor did, and said nothing meanwhile.
    writeFileSync(join(p.dir, "onPause"), "sleep 2000");
    const paused = remote(["pause"]);
    expect(paused.status, paused.stderr).toBe(0);
    expect(paused.stdout).toMatch(new RegExp(`^Paused session ${session}`));
    expect(paused.stderr).toMatch(/^Still pausing the session \(\d+ s so far\): the session's supervisor \(through apex serve\) is at work on it \(its plugins' onPause hooks run then/);
    expect(p.status().session?.status).toBe("paused");

    writeFileSync(join(p.dir, "onResume"), "sleep 2000");
    const resumed = remote(["resume", "--json"]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: "active" });
    expect(resumed.stderr).toBe("");

    expect(remote(["task", "add", "Release", "--milestone"]).status).toBe(0);
    writeFileSync(join(p.dir, "beforeTask"), "sleep 2000");
    const claimed = remote(["task", "claim", "--agent", "coder"]);
    expect(claimed.status, claimed.stderr).toBe(0);
    expect(claimed.stdout).toMatch(/^claimed t-0001 active \(coder\)/);
    expect(claimed.stderr).toMatch(/^Still claiming a task for coder \(\d+ s so far\): the session's supervisor \(through apex serve\) is at work on it/m);

    writeFileSync(join(p.dir, "afterMilestone"), "sleep 2000");
    const done = remote(["task", "done", "t-0001", "--json"]);
    expect(done.status, done.stderr).toBe(0);
    expect(JSON.parse(done.stdout)).toMatchObject({ id: "t-0001", status: "completed" });
    expect(done.stderr).toBe("");

    writeFileSync(join(p.dir, "onStop"), "sleep 2000");
    const stopped = remote(["stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toContain(`Stopped session ${session}`);
    expect(stopped.stderr).toMatch(/^Still stopping the session \(/m);
    expect(p.status().session).toBeNull();
  }, 60_000);

  it("gives up on a supervisor whose hook holds its process after the client's window, or the server's, saying what may be under way; it completes once the hook lets go", async () => {
    const { p, remote } = await served({ APEX_PLUGIN_COMMAND_IDLE_MS: "3000" });
    // The hooks hold the supervisor's process until the test lets them go (a file release-*): the client
    // and the server can only give up before they end (hooks of 4.5 s were windows a loaded machine could miss).
    writeFileSync(join(p.dir, "onPause"), "hold release-pause");
    const paused = remote(["pause", "--json"]);
    expect(paused.status).toBe(1);
    expect(paused.stdout).toBe("");
    const { error } = JSON.parse(paused.stderr) as { error: { code: string; message: string; hint: string; details: Record<string, unknown> } };
    expect(error.code).toBe("APEX_E_TIMEOUT");
    expect(error.message).toBe(
      "The session's supervisor (through apex serve) sent nothing, not even its heartbeat, for 2 s while pausing the session: it, the server or the network between is frozen or cut (a plugin hook that holds the supervisor, an overloaded machine), and the wait is given up. The pause may be half done: the agents may be stopped already while the session is still recorded active; it completes if the supervisor goes on.",
    );
    expect(error.details).toMatchObject({ action: "pause", may_be_under_way: true, idle_ms: 1500 });
    writeFileSync(join(p.dir, "release-pause"), "");
    await waitFor("the pause to complete", () => p.status().session?.status === "paused", 20_000);

    // A client with a long window: the server (3 s here) gives up on the silent supervisor, and says so after the heartbeats it sent.
    writeFileSync(join(p.dir, "onResume"), "hold release-resume");
    const resumed = remote(["resume"], { APEX_PLUGIN_COMMAND_IDLE_MS: "60000" });
    expect(resumed.status).toBe(1);
    expect(resumed.stderr).toContain("error[APEX_E_TIMEOUT]: The session's supervisor (through apex serve) sent nothing, not even its heartbeat, for 3 s while resuming the session:");
    writeFileSync(join(p.dir, "release-resume"), "");
    await waitFor("the resume to complete", () => p.status().session?.status === "active", 20_000);
  }, 60_000);

  it("sends heartbeat lines then the answer to a client that asks for them (accept: application/x-ndjson), and the plain JSON reply to one that does not", async () => {
    const { p, url, token, ready } = await served();
    const call = (accept: string | undefined) =>
      fetch(`${url}/api/sessions/${ready.session_id}/rpc/session.pause`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}`, ...(accept ? { accept } : {}) },
        body: JSON.stringify({ heartbeat_ms: 200 }),
      });
    // The hook runs until three heartbeats came (a hook of 1.5 s could end before three on a loaded machine).
    writeFileSync(join(p.dir, "onPause"), "wait release-stream");
    const streamed = await call("application/x-ndjson, application/json");
    expect(streamed.status).toBe(200);
    expect(streamed.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
    let text = "";
    for (const reader = streamed.body!.pipeThrough(new TextDecoderStream()).getReader(); ; ) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      if (text.split("\n").filter((line) => line === '{"heartbeat":true}').length >= 3) writeFileSync(join(p.dir, "release-stream"), "");
    }
    const lines = text.trim().split("\n");
    expect(lines.length).toBeGreaterThan(3);
    expect(new Set(lines.slice(0, -1))).toEqual(new Set(['{"heartbeat":true}']));
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ result: { status: "paused" } });

    // An error after heartbeats is the final line; one before them keeps its HTTP status.
    const again = await call("application/x-ndjson");
    expect(again.status).toBe(409);
    expect((await again.json()).error.code).toBe("APEX_E_SESSION_STATE");

    // A client gone after the first heartbeat (Ctrl-C): the server goes on, and so does the call.
    writeFileSync(join(p.dir, "onResume"), "sleep 1500");
    const gone = new AbortController();
    const cut = await fetch(`${url}/api/sessions/${ready.session_id}/rpc/session.resume`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}`, accept: "application/x-ndjson" },
      body: JSON.stringify({ heartbeat_ms: 100 }),
      signal: gone.signal,
    });
    await cut.body!.getReader().read();
    gone.abort();
    await waitFor("the resume to complete", () => p.status().session?.status === "active", 20_000);
    expect((await fetch(`${url}/api/health`)).status).toBe(200);
    writeFileSync(join(p.dir, "onPause"), "sleep 0");
    expect((await call(undefined)).status).toBe(200);

    // Without the accept header: one JSON body, as before (older clients).
    writeFileSync(join(p.dir, "onResume"), "sleep 1000");
    const plain = await fetch(`${url}/api/sessions/${ready.session_id}/rpc/session.resume`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ heartbeat_ms: 200 }),
    });
    expect(plain.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await plain.json()).toMatchObject({ result: { status: "active" } });
    expect(existsSync(join(p.dir, "onResume.began"))).toBe(true);
  }, 60_000);
});

describe("apex --remote reads of a session whose supervisor does not answer", () => {
  it("are answered from the store after a few seconds (the server's window, when shorter), not after 120 s", async () => {
    const { p, ready, remote } = await served({ APEX_PLUGIN_COMMAND_IDLE_MS: "1500" });
    expect(JSON.parse(remote(["status", "--json"]).stdout).session.supervisor).toMatchObject({ alive: true, stopped: false });
    stopped.push(ready.supervisor_pid);
    process.kill(ready.supervisor_pid, "SIGSTOP");
    await waitFor("the supervisor to be stopped", () => readFileSync(`/proc/${ready.supervisor_pid}/stat`, "utf8").split(") ")[1]!.startsWith("T"));
    const began = Date.now();
    // Before, the token's check waited 120 s on the stopped supervisor, then so did the read, each ending in a 504; then 5 s
    // each (10 s for a status), and the status said nothing of the supervisor being stopped, which the server's host can see.
    const status = remote(["status", "--json"]);
    expect(status.status, status.stderr).toBe(0);
    expect(Date.now() - began).toBeLessThan(4_000);
    expect(JSON.parse(status.stdout).session).toMatchObject({ session_id: ready.session_id, supervisor: { pid: ready.supervisor_pid, alive: true, stopped: true } });
    expect(remote(["status"]).stdout).toContain(`(stopped: it answers nothing until \`kill -CONT ${ready.supervisor_pid}\``);
    const listed = remote(["task", "list", "--json"]);
    expect(listed.status, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([]);
    process.kill(ready.supervisor_pid, "SIGCONT");
    expect(p.status().session?.status).toBe("active");
  }, 60_000);

  it("stop --force kills a stopped supervisor and stops the session, as on the host: it waited on the frozen socket and failed, its hint naming itself", async () => {
    const { p, ready, remote, session } = await served({ APEX_PLUGIN_COMMAND_IDLE_MS: "1500" });
    const agents = p.status().agents.map((agent) => agent.pid!);
    stopped.push(ready.supervisor_pid);
    process.kill(ready.supervisor_pid, "SIGSTOP");
    // Without --force, the stop waits out the window and says the supervisor is silent, as before.
    const plain = remote(["stop", "--json"]);
    expect(plain.status).toBe(1);
    expect(JSON.parse(plain.stderr).error).toMatchObject({ code: "APEX_E_TIMEOUT" });
    const forced = remote(["stop", "--force", "--json"]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ session_id: ready.session_id, status: "stopped" });
    expect(p.alive(ready.supervisor_pid)).toBe(false);
    for (const pid of agents) expect(p.alive(pid), `agent ${pid}`).toBe(false);
    expect(p.apex(["session", "list"]).stdout).toMatch(new RegExp(`${session}.*stopped`));
  }, 60_000);

  it("stop --force of a supervisor silent but not stopped (a hook holds it) waits while the server forces it: the client's window, the same as the server's, ran out as the force began", async () => {
    const { p, ready, remote } = await served({ APEX_PLUGIN_COMMAND_IDLE_MS: "1500" });
    const agents = p.status().agents.map((agent) => agent.pid!);
    // A pause's hook holds the supervisor's process (no heartbeat, no answer) until the test lets it go (the
    // supervisor's only: the stop's own hooks, which the host's `stop --force` runs too, are not held).
    writeFileSync(join(p.dir, "onPause"), "hold release-pause");
    const pausing = p.apexAsync(["pause"]);
    try {
      await waitFor("the pause's hook to hold the supervisor", () => existsSync(join(p.dir, "onPause.began")));
      const forced = remote(["stop", "--force", "--json"]);
      expect(forced.status, forced.stderr).toBe(0);
      expect(JSON.parse(forced.stdout)).toMatchObject({ session_id: ready.session_id, status: "stopped" });
      expect(forced.stdout + forced.stderr).toContain(`pid ${ready.supervisor_pid}, did not answer and was killed`);
      expect(p.alive(ready.supervisor_pid)).toBe(false);
      for (const pid of agents) expect(p.alive(pid), `agent ${pid}`).toBe(false);
    } finally {
      writeFileSync(join(p.dir, "release-pause"), "");
      await pausing.done;
    }
  }, 60_000);
});

describe("apex --remote when the server dies during a wait", () => {
  it("says the server closed the connection before answering, and that whether the pause was done is not known; it is done", async () => {
    project = slowHooksProject({ coder: "while true; do sleep 0.2; done" });
    const p = project;
    const ready = p.start([]);
    const server = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stops.push(async () => {
      if (server.child.exitCode === null) server.child.kill("SIGTERM");
      await server.done;
    });
    const url = await waitFor("apex serve's address", () => (server.output().includes("}") ? (JSON.parse(server.output()) as { url: string }).url : undefined), 30_000);
    const { token } = share(p, ready.session_id, "rita", "owner");
    // The hook runs until the test lets it go: the server is killed while it runs, however slow the machine.
    writeFileSync(join(p.dir, "onPause"), "wait release");
    const pause = p.apexAsync(["--remote", `${url.replace(/^http:\/\//, "")}/${ready.session_id}`, "pause", "--json"], { env: { APEX_TOKEN: token, ...env } });
    await waitFor("the onPause hook to begin", () => existsSync(join(p.dir, "onPause.began")), 20_000);
    // Past the first heartbeat line: the reply has begun. The command is held (SIGSTOP) until what the server sent it
    // waits unread at its end of the connection, rather than given a fixed 0.8 s, which a loaded machine could miss.
    process.kill(pause.child.pid!, "SIGSTOP");
    try {
      await waitFor("the reply to begin", () => unreadBy(pause.child.pid!, Number(new URL(url).port)) > 0, 20_000);
      server.child.kill("SIGKILL");
    } finally {
      process.kill(pause.child.pid!, "SIGCONT");
    }
    const cut = await pause.done;
    expect(cut.status).toBe(1);
    expect(cut.stdout).toBe("");
    // Before: "The connection to … broke during session.pause: ECONNRESET.", with no hint and no details.connection.
    const { error } = JSON.parse(cut.stderr) as { error: { code: string; message: string; hint: string; details: Record<string, unknown> } };
    expect(error.code).toBe("APEX_E_RPC");
    expect(error.message).toMatch(/^http:\/\/127\.0\.0\.1:\d+ closed the connection before answering session\.pause \(\w+\); whether it was done is not known\.$/);
    expect(error.hint).toContain("before running it again");
    expect(typeof error.details.connection).toBe("string");
    writeFileSync(join(p.dir, "release"), "");
    await waitFor("the pause to complete", () => p.status().session?.status === "paused", 20_000);
  }, 60_000);
});

describe("a plugin command forwarded through apex serve (plugin.command)", () => {
  it("is waited on as long as the supervisor sends its heartbeat, whatever the client asked, with its output in the answer; a supervisor silent for the server's window is given up on", async () => {
    // `session sync-git` runs git in the supervisor: a git that sleeps first (while the file slow-git
    // names its seconds, or until the file release-git is there when it says `wait`) is a command that runs long while the supervisor is at work.
    const { GIT_ENV, git } = isolatedGit("apex-remote-wait-git-");
    project = new Project(shellAgents({ coder: "while true; do sleep 0.2; done" }).replace("plugins: {}", "plugins:\n  git: {}"));
    const p = project;
    initRepo(git, p.dir, { ".gitignore": ".apex/\nbin/\nslow-git\ngit.began\nrelease-git\n" });
    mkdirSync(join(p.dir, "bin"));
    const slow = join(p.dir, "slow-git");
    const wait = `: > ${join(p.dir, "git.began")}; until [ -f ${join(p.dir, "release-git")} ]; do sleep 0.05; done`;
    writeFileSync(join(p.dir, "bin", "git"), `#!/bin/sh\nif [ "$(cat ${slow} 2>/dev/null)" = wait ]; then ${wait}; elif [ -f ${slow} ]; then sleep "$(cat ${slow})"; fi\nexec ${execFileSync("sh", ["-c", "command -v git"], { encoding: "utf8" }).trim()} "$@"\n`, { mode: 0o755 });
    const started = p.apex(["start", "--task", "slow git", "--json"], { env: { ...GIT_ENV, PATH: `${join(p.dir, "bin")}:${process.env.PATH}` } });
    expect(started.status, started.stderr).toBe(0);
    const ready = JSON.parse(started.stdout) as { session_id: string; supervisor_pid: number };
    // The server's window is 1.5 s (10 minutes by default): the command below runs longer.
    const url = await serve(p, stops, { APEX_PLUGIN_COMMAND_IDLE_MS: "1500" });
    const { token } = share(p, ready.session_id, "rita", "owner");

    // Before, the server waited a fixed 120 s; and asked to stream it (`stream`, as the CLI's own call does), the output was dropped: {output: ""}.
    writeFileSync(join(p.dir, "slow-git"), "2.5");
    const synced = await rpc(url, ready.session_id, "plugin.command", token, { name: "session sync-git", args: [], options: {}, stream: true });
    expect(synced.status, JSON.stringify(synced.body)).toBe(200);
    expect(synced.body.result).toMatchObject({ exitCode: 0 });
    expect(synced.body.result.output).toMatch(/^Recorded the git state of session /);

    // Stopped (SIGSTOP) while the command runs: the server gives up after its window of silence, not 120 s.
    // Its git runs until the test lets it go: the supervisor is stopped while the command runs, however slow the machine
    // (a git of 2.5 s, stopped 0.5 s after the call, was a window a loaded machine could miss).
    writeFileSync(slow, "wait");
    const answer = rpc(url, ready.session_id, "plugin.command", token, { name: "session sync-git", args: [], options: {} });
    await waitFor("the command's git to run", () => existsSync(join(p.dir, "git.began")), 20_000);
    stopped.push(ready.supervisor_pid);
    process.kill(ready.supervisor_pid, "SIGSTOP");
    const began = Date.now();
    const silent = await Promise.race([answer, new Promise<undefined>((resolve) => setTimeout(resolve, 10_000))]);
    expect(silent, "an answer within 10 s").toBeDefined();
    expect(Date.now() - began).toBeLessThan(10_000);
    expect(silent!.body.error).toMatchObject({ code: "APEX_E_TIMEOUT", message: "The supervisor sent nothing on plugin.command (not even its heartbeat) for 2 s." });
    process.kill(ready.supervisor_pid, "SIGCONT");
    writeFileSync(join(p.dir, "release-git"), "");
  }, 60_000);
});
