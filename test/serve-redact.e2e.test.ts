// What a remote caller is shown of APEX's own records through `apex serve`, by role: the audit
// trail's share events (who was granted what, token ids) only to owners, on every route that
// returns events; the server's own files (socket, log and worktree paths) and the nonces that
// prove its processes to nobody. A real server on loopback, real grants, the built CLI and HTTP.
import { realpathSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { ok, remote, rpc, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "sleep 600" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

let p: Project;
let url: string;
let sid: string;
const stops: Array<() => unknown> = [];
const tokens: Record<string, string> = {};

beforeAll(async () => {
  p = new Project(CONFIG, "apex-serve-redact-");
  sid = p.start().session_id;
  url = await serve(p, stops);
  for (const [user, role] of [["vera", "viewer"], ["otto", "operator"], ["olga", "owner"]] as const) tokens[user] = share(p, sid, user, role).token;
  // A grant made and revoked: share.created and share.revoked in the trail.
  share(p, sid, "mallory", "operator");
  ok(p.apex(["session", "unshare", sid, "mallory"]));
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

type Event = { seq: number; type: string };
const shareEvents = (events: Event[]) => events.filter((event) => event.type.startsWith("share."));

/** The events an event stream sends from seq 0 until its last `events.*` item has the given seq. */
async function streamed(token: string, untilSeq: number): Promise<Array<{ kind: string; data: { seq: number; type?: string } }>> {
  const abort = new AbortController();
  const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
    method: "POST",
    signal: abort.signal,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ "events.subscribe": { from_seq: 0 } }),
  });
  expect(response.status).toBe(200);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const out: Array<{ kind: string; data: { seq: number; type?: string } }> = [];
  let buffer = "";
  const deadline = setTimeout(() => abort.abort(), 10_000);
  try {
    while (out.at(-1)?.data.seq !== untilSeq) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const kind = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (kind && data) out.push({ kind, data: JSON.parse(data) });
      }
    }
  } finally {
    clearTimeout(deadline);
    abort.abort();
  }
  return out;
}

describe("apex serve: share events in the audit trail", () => {
  it("are an owner's to see: a viewer's and an operator's history, events, memory reads and stream leave them out", async () => {
    const all = JSON.parse(ok(p.apex(["session", "history", sid, "--json"]))).events as Event[];
    const hidden = shareEvents(all);
    expect(hidden.map((event) => event.type)).toEqual(["share.created", "share.created", "share.created", "share.created", "share.revoked"]);
    const lastSeq = all.at(-1)!.seq;

    for (const user of ["vera", "otto"]) {
      const token = tokens[user]!;
      // apex --remote … session history (the trail read through memory.query), and --json.
      const history = remote(p, url, sid, token, ["session", "history"]);
      expect(history.status, history.stderr).toBe(0);
      expect(history.stdout).not.toMatch(/share|token_id|mallory/);
      const trail = JSON.parse(ok(remote(p, url, sid, token, ["session", "history", "--json"]))).events as Event[];
      expect(trail.map((event) => event.seq)).toEqual(all.filter((event) => !event.type.startsWith("share.")).map((event) => event.seq));
      // events.list (the dashboard's and connect's recent events), with `last` counting shown events.
      const list = (await rpc(url, sid, "events.list", token)).body.result as Event[];
      expect(shareEvents(list)).toEqual([]);
      expect(list.length).toBe(all.length - hidden.length);
      const last = (await rpc(url, sid, "events.list", token, { last: 2 })).body.result as Event[];
      expect(last.map((event) => event.type)).toEqual(all.filter((event) => !event.type.startsWith("share.")).slice(-2).map((event) => event.type));
      expect(((await rpc(url, sid, "events.list", token, { type: "share.created" })).body.result as Event[]).length).toBe(0);
      // Memory reads of the trail: query, get of one event's path, changes (memory watch).
      const query = JSON.stringify((await rpc(url, sid, "memory.query", token, { glob: "/sessions/**" })).body);
      expect(query).not.toMatch(/share\.|token_id|mallory/);
      const page = (await rpc(url, sid, "memory.page", token, { glob: "/sessions/**" })).body;
      expect(page.result.entries.length).toBeGreaterThan(0);
      expect(JSON.stringify(page)).not.toMatch(/share\.|token_id|mallory/);
      const path = `/sessions/${sid}/events/${String(hidden[0]!.seq).padStart(8, "0")}`;
      expect((await rpc(url, sid, "memory.get", token, { path })).body).toEqual({});
      const changes = JSON.stringify((await rpc(url, sid, "memory.changes", token, { since: 0, glob: "/**" })).body);
      expect(changes).not.toMatch(/share\.|token_id|mallory/);
      // The live stream: each hidden event is its seq alone (events.skipped), so a client counting seqs is not behind.
      const stream = await streamed(token, lastSeq);
      expect(stream.filter((item) => item.kind === "events.subscribe").map((item) => item.data.type)).not.toContain("share.created");
      expect(stream.filter((item) => item.kind === "events.skipped").map((item) => item.data)).toEqual(hidden.map((event) => ({ seq: event.seq })));
    }

    // An owner's grant sees them, on the same routes.
    const owner = tokens.olga!;
    expect(shareEvents((await rpc(url, sid, "events.list", owner)).body.result as Event[]).length).toBe(hidden.length);
    expect(shareEvents(JSON.parse(ok(remote(p, url, sid, owner, ["session", "history", "--json"]))).events).length).toBe(hidden.length);
    const ownerStream = await streamed(owner, lastSeq);
    expect(ownerStream.filter((item) => item.kind === "events.skipped")).toEqual([]);
    expect(ownerStream.filter((item) => item.data.type?.startsWith("share.")).length).toBe(hidden.length);
  }, 90_000);
});

describe("apex serve: the server's own paths and process proofs", () => {
  it("are sent to no remote caller: status, session records, agents, checkpoints and memory reads leave out socket, nonces and paths", async () => {
    const dirs = [p.dir, realpathSync(p.dir)];
    // A checkpoint of the paused session: its diff from the first has the agent's record before and after.
    ok(remote(p, url, sid, tokens.otto!, ["pause"]));
    ok(p.apex(["checkpoint", "create", "paused"]));
    ok(remote(p, url, sid, tokens.otto!, ["resume"]));
    // Locally, the status names the socket: the project's own user is on the server's host.
    expect(JSON.stringify(p.status())).toContain(realpathSync(p.dir).slice(0, 12));
    for (const user of ["vera", "otto", "olga"]) {
      const token = tokens[user]!;
      const replies = {
        status: (await rpc(url, sid, "session.status", token)).body,
        list: (await rpc(url, sid, "session.list", token)).body,
        agents: (await rpc(url, sid, "agent.list", token)).body,
        checkpoint: (await rpc(url, sid, "checkpoint.show", token, { ref: "checkpoint-001" })).body,
        diff: (await rpc(url, sid, "checkpoint.diff", token, { from: "checkpoint-001", to: "latest" })).body,
        query: (await rpc(url, sid, "memory.query", token, { glob: "/sessions/**" })).body,
        page: (await rpc(url, sid, "memory.page", token, { glob: "/sessions/**" })).body,
        record: (await rpc(url, sid, "memory.get", token, { path: `/sessions/${sid}` })).body,
        changes: (await rpc(url, sid, "memory.changes", token, { since: 0, glob: "/**" })).body,
        cli: JSON.parse(ok(remote(p, url, sid, token, ["status", "--json"]))),
      };
      for (const [what, reply] of Object.entries(replies)) {
        const text = JSON.stringify(reply);
        expect(text.length, what).toBeGreaterThan(20);
        for (const dir of dirs) expect(text, `${what} for ${user}`).not.toContain(dir);
        expect(text, `${what} for ${user}`).not.toMatch(/"(socket|nonce)"/);
      }
      // What a remote user needs stays: the supervisor's and agents' pids, the session's state.
      const status = replies.status.result;
      expect(status.session.supervisor.pid).toEqual(expect.any(Number));
      expect(status.agents[0].pid).toEqual(expect.any(Number));
      expect(status.session.status).toBe("active");
      expect(replies.record.result.supervisor.pid).toEqual(expect.any(Number));
      expect(replies.diff.result.agents.changed[0].after.status).toBe("paused");
    }
  }, 90_000);

  it("are not in what a remote `start --continue` answers (its socket and log paths)", async () => {
    ok(p.apex(["stop"]));
    const continued = remote(p, url, sid, tokens.otto!, ["start", "--continue", sid, "--json"]);
    expect(continued.status, continued.stderr).toBe(0);
    const ready = JSON.parse(continued.stdout);
    expect(ready.session_id).toBe(sid);
    expect(ready.supervisor_pid).toEqual(expect.any(Number));
    for (const dir of [p.dir, realpathSync(p.dir)]) expect(continued.stdout).not.toContain(dir);
    expect(ready).not.toHaveProperty("socket");
    expect(ready).not.toHaveProperty("log");
    ok(p.apex(["stop"]));
  }, 90_000);
});
