// `apex --remote … memory watch` behind a proxy whose server is out of reach: a tiny real HTTP
// proxy on loopback in front of a real `apex serve`, answering 502 Bad Gateway (as nginx does
// when its upstream is down) until the test lets it forward again. The watch said once that the
// server "did not answer as `apex serve` does", then tried every second for ever without a word;
// it now says it cannot reach the server through the proxy, tries again less and less often,
// saying so each time, and gives up after a bounded time (APEX_RECONNECT_MS) with APEX_E_TIMEOUT.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { endChild } from "./support/cleanup.js";
import { proxy, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" });

let p: Project;
let url: string;
let sid: string;
let viewer: string;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  sid = p.start().session_id;
  url = await serve(p, stops);
  viewer = share(p, "current", "vera", "viewer").token;
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

/** A proxy on loopback in front of `upstream`: answers 502 (an HTML page, as nginx) while `down`, else forwards. */
async function gateway(upstream: string): Promise<{ port: number; setDown: (down: boolean) => void; requests: () => number }> {
  let down = true;
  const front = await proxy(upstream, stops, (incoming, outgoing) => {
    if (!down) return false;
    incoming.resume();
    outgoing.writeHead(502, { "content-type": "text/html" }).end("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>");
    return true;
  });
  return { port: front.port, setDown: (value) => (down = value), requests: () => front.requests().length };
}

describe("apex --remote … memory watch behind a proxy answering 502", () => {
  it("retries with growing waits, saying so each time, and gives up with APEX_E_TIMEOUT once the server has not answered for APEX_RECONNECT_MS", async () => {
    const front = await gateway(url);
    const started = Date.now();
    const watch = p.apexAsync(["--remote", `127.0.0.1:${front.port}/${sid}`, "memory", "watch", "/w/**", "--json"], { env: { APEX_TOKEN: viewer, APEX_RECONNECT_MS: "6000" } });
    stops.push(() => endChild(watch));
    const result = await watch.done;
    expect(result.status, result.stderr).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(6000);
    const lines = result.stderr.trim().split("\n");
    // Said as the server out of reach through a proxy, not as another kind of server at that address.
    expect(lines[0]).toBe(
      `warning: Cannot reach http://127.0.0.1:${front.port}: HTTP 502 Bad Gateway (a proxy or gateway in front of it could not reach \`apex serve\`). Still watching; retrying in 1 s, then less and less often (up to every 16 s), and giving up if the server has not answered for 6 s (Ctrl-C ends).`,
    );
    // Each try said, each wait twice the one before: 1 s, 2 s, then what is left of the 6 s.
    const retries = lines.slice(1, -1);
    expect(retries.length).toBeGreaterThanOrEqual(2);
    for (const line of retries) expect(line).toMatch(/^warning: the server has not answered for \d+(\.\d)? s \(Cannot reach http:\/\/127\.0\.0\.1:\d+: HTTP 502 Bad Gateway .*\); retrying in \d+(\.\d)? s\.$/);
    expect(retries[0]).toMatch(/retrying in 2 s\.$/);
    // Tried again a few times (not every second for the whole window): the first call, then once per wait.
    expect(front.requests()).toBeLessThanOrEqual(retries.length + 2);
    const error = JSON.parse(lines.at(-1)!).error;
    expect(error).toMatchObject({ code: "APEX_E_TIMEOUT", details: { http_status: 502, waited_ms: 6000 } });
    expect(error.message).toMatch(/^The server has not answered for 6 s \(Cannot reach http:\/\/127\.0\.0\.1:\d+: HTTP 502 Bad Gateway .*\): the watch gives up\. Nothing was printed\.$/);
    expect(error.hint).toContain("APEX_RECONNECT_MS");
    expect(result.stdout).toBe("");
  }, 60_000);

  it("follows on once the proxy reaches the server again, printing what changed meanwhile, and gives up after a lasting outage naming the revision to go on from", async () => {
    const front = await gateway(url);
    front.setDown(false);
    const watch = p.apexAsync(["--remote", `127.0.0.1:${front.port}/${sid}`, "memory", "watch", "/v/**", "--changes-only", "--json"], { env: { APEX_TOKEN: viewer, APEX_RECONNECT_MS: "5000" } });
    stops.push(() => endChild(watch));
    const paths = () => watch.output().trim().split("\n").filter(Boolean).map((line) => (JSON.parse(line) as { path: string }).path);
    await waitFor("the watch to follow", () => p.apex(["memory", "set", `/v/${Date.now()}`, "1"]).status === 0 && paths().length > 0);

    front.setDown(true);
    await waitFor("the watch to say the server is out of reach", () => watch.errors().includes("HTTP 502 Bad Gateway"));
    expect(p.apex(["memory", "set", "/v/while-down", "1"]).status).toBe(0);
    await waitFor("a second try", () => watch.errors().includes("the server has not answered for"));
    front.setDown(false);
    // (stderr and stdout are two pipes: what the watch says on one can reach this process after what it prints on the other)
    await waitFor("the change made while the proxy answered 502", () => paths().includes("/v/while-down") && watch.errors().includes("reachable again"));
    expect(watch.errors()).toMatch(/warning: the server is reachable again after \d+\.\d s; nothing was missed\.\n$/);

    // Down for good: the watch ends, exit 1, naming the revision every change up to which was printed.
    front.setDown(true);
    const result = await watch.done;
    expect(result.status, result.stderr).toBe(1);
    const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
    expect(error.code).toBe("APEX_E_TIMEOUT");
    expect(error.message).toContain(`Every change up to revision ${error.details.revision} was printed.`);
    expect(error.hint).toContain(`memory watch GLOB --since ${error.details.revision}`);
    const last = JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { revision: number };
    expect(error.details.revision).toBeGreaterThanOrEqual(last.revision);
  }, 60_000);
});
