// One `apex serve` stream following several methods at once (`{"events.subscribe": {}, "logs.follow": {}}`):
// each part ends on its own, and the stream with the last. A real server on loopback, real sessions.
import { appendFileSync, existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, asleepInEventLoop, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { serve, serveLogged, share } from "./support/serve.js";
import { stopsAfterEach } from "./support/cleanup.js";

// On SIGTERM the agent says its last words, then exits: written as its session is being stopped.
const CONFIG = shellAgents({ alpha: "trap 'echo last words; exit 0' TERM; echo hello; while true; do sleep 0.05; done" });
const stops = stopsAfterEach();

/** Opens a combined stream; `text()` is what came so far, `done` resolves once the server ended it. */
async function openStream(url: string, sid: string, token: string, stops: Array<() => unknown>, body: unknown = { "events.subscribe": {}, "logs.follow": {} }) {
  const abort = new AbortController();
  stops.push(() => abort.abort());
  const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: abort.signal,
  });
  expect(response.status).toBe(200);
  let text = "";
  const decoder = new TextDecoder();
  const reader = response.body!.getReader();
  const done = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return true;
        text += decoder.decode(value, { stream: true });
      }
    } catch {
      return false; // aborted
    }
  })();
  /** The stream's events, parsed. */
  const events = () =>
    text
      .split("\n\n")
      .map((block) => ({ event: /^event: (.*)$/m.exec(block)?.[1], data: /^data: (.*)$/m.exec(block)?.[1] }))
      .filter((block) => block.event && block.data)
      .map((block) => ({ event: block.event!, data: JSON.parse(block.data!) as Record<string, unknown> }));
  return { text: () => text, events, done };
}

describe("apex serve: a stream of events and logs together", () => {
  it("ends once both parts have: the session's last log lines come after its events end", async () => {
    const project = new Project(CONFIG);
    const sid = project.start().session_id;
    const url = await serve(project, stops);
    const { token } = share(project, "current", "vera", "viewer");
    const stream = await openStream(url, sid, token, stops);
    await waitFor("the stream open", () => stream.text().startsWith(": apex"));
    // Its trap is set once it says hello: a stop before that would end it without last words.
    await waitFor("the agent's hello", () => readFileSync(join(project.storeDir, "logs", sid, "alpha.log"), "utf8").includes("hello"));
    expect(project.apex(["stop"]).status).toBe(0);
    const ended = await Promise.race([stream.done, new Promise<false>((resolve) => setTimeout(resolve, 15_000, false))]);
    expect(ended, `the stream did not end: ${stream.text()}`).toBe(true);
    const events = stream.events();
    const lines = events.filter((e) => e.event === "logs.follow").map((e) => e.data.line);
    // Before, the events part's end closed the stream first (`the session's supervisor ended the stream`): these were never sent.
    expect(lines).toContain("last words");
    expect(lines.some((line) => /^\[apex [^\]]+\] pid \d+ exited with code 0$/.test(String(line)))).toBe(true);
    expect(events.some((e) => e.event === "events.subscribe" && e.data.type === "session.stopped")).toBe(true);
    const name = `session ${sid.slice(0, 8)} has ended`;
    // The first part to end (either may) is said, and the stream ends with the other.
    const first = events.filter((e) => e.event === "ended");
    expect(first).toHaveLength(1);
    expect(["events.subscribe", "logs.follow"]).toContain(first[0]!.data.method);
    expect(first[0]!.data.reason).toBe(name);
    expect(events.at(-1)).toEqual({ event: "end", data: { reason: name } });
  });

  it("reads a session's events from the store when its supervisor's socket cannot be reached, not an error naming the socket's path", async () => {
    const project = new Project(CONFIG);
    const ready = project.start();
    const { url, pid } = await serveLogged(project, stops);
    const { token } = share(project, "current", "vera", "viewer");
    // The socket file gone for a moment (as when the supervisor ends while the stream opens): the supervisor runs on.
    renameSync(ready.socket, `${ready.socket}.aside`);
    const stream = await openStream(url, ready.session_id, token, stops, { "events.subscribe": {} });
    // Back once the server, its stream open, has tried the socket (its connect fails at once: then it waits, asleep in
    // its event loop), not after a fixed 0.5 s, which a loaded machine's server could still be short of.
    await waitFor("the server to try the socket", () => asleepInEventLoop(pid), 30_000);
    // The supervisor listens anew once it sees its socket file gone (every 0.5 s): the old file, put back over a new
    // one it may have made meanwhile, would leave it unreachable. So it is removed, and the new one waited for.
    rmSync(`${ready.socket}.aside`);
    await waitFor("the supervisor to listen again", () => existsSync(ready.socket), 10_000);
    expect(project.apex(["task", "add", "seen from the store"]).status).toBe(0);
    await waitFor("the event, read from the store", () => stream.events().some((e) => e.event === "events.subscribe" && e.data.type === "task.added"), 10_000);
    // Before: `event: error`, "Cannot reach the supervisor at /tmp/…/.apex/supervisor.sock", and the stream closed.
    expect(stream.text()).not.toContain("event: error");
    expect(stream.text()).not.toContain(project.dir);
  });

  it("follows the logs of a session no supervisor runs, after its events part has ended", async () => {
    const project = new Project(CONFIG);
    const sid = project.start().session_id;
    expect(project.apex(["stop"]).status).toBe(0);
    const url = await serve(project, stops);
    const { token } = share(project, sid, "vera", "viewer");
    const stream = await openStream(url, sid, token, stops);
    await waitFor("the events part's end", () => stream.events().some((e) => e.event === "ended"));
    expect(stream.events()[0]).toEqual({ event: "ended", data: { method: "events.subscribe", reason: `session ${sid.slice(0, 8)} has ended` } });
    // A line written into its log now (as a `start --continue` would): before, the stream had closed, its logs never followed.
    appendFileSync(join(project.storeDir, "logs", sid, "alpha.log"), "written later\n");
    await waitFor("the new line on the stream", () => stream.events().some((e) => e.event === "logs.follow" && e.data.line === "written later"), 10_000);
    expect(stream.events().some((e) => e.event === "end")).toBe(false);
    // Continued, then stopped: its logs end with it, and so does the stream (before, its logs were followed on for ever).
    expect(project.apex(["start", "--continue", sid]).status).toBe(0);
    await waitFor("the continued agent's first line", () => stream.events().filter((e) => e.event === "logs.follow" && e.data.line === "hello").length > 0, 10_000);
    expect(project.apex(["stop"]).status).toBe(0);
    const ended = await Promise.race([stream.done, new Promise<false>((resolve) => setTimeout(resolve, 15_000, false))]);
    expect(ended, `the stream did not end: ${stream.text()}`).toBe(true);
    expect(stream.events().map((e) => e.data.line)).toContain("last words");
    expect(stream.events().at(-1)).toEqual({ event: "end", data: { reason: `session ${sid.slice(0, 8)} has ended` } });
  });
});
