// What a server that is not (or no longer) a faithful `apex serve` can make `apex --remote …` do
// with the shape of its replies: a hostile HTTP server on loopback answers as `apex serve` would,
// with crafted content, and the built CLI is run against it. Control characters in its text are
// terminal-safety.e2e.test.ts's; this file is about replies that would loop or crash.
import { createServer, type Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";

const TOKEN = `apx_0123456789abcdef_${"a".repeat(43)}`;

describe("a server's replies", () => {
  const servers: Server[] = [];
  let project: Project | undefined;
  afterEach(async () => {
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve));
    project?.cleanup();
    project = undefined;
  });

  /** A server answering each method's call with `answer(method, params)` (a 200 with `{result}`); returns the target and the methods asked, in order. */
  async function hostile(answer: (method: string, params: Record<string, unknown>) => unknown): Promise<{ target: string; asked: string[] }> {
    const asked: string[] = [];
    const server = createServer((request, response) => {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        const method = decodeURIComponent(request.url!.split("/rpc/")[1] ?? "");
        asked.push(method);
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ result: answer(method, JSON.parse(body || "{}") as Record<string, unknown>) }));
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return { target: `127.0.0.1:${(server.address() as { port: number }).port}/s1`, asked };
  }

  /** The command's result; one still running after 15 s (asking for ever) is killed, and shows as exit -1. */
  const run = async (target: string, args: string[]) => {
    const command = project!.apexAsync(["--remote", target, ...args], { env: { APEX_TOKEN: TOKEN } });
    const timer = setTimeout(() => command.child.kill("SIGKILL"), 15_000);
    try {
      return await command.done;
    } finally {
      clearTimeout(timer);
    }
  };

  it("memory pages whose `next` makes no progress are refused (APEX_E_RPC) after the page that repeats it: they were asked for ever, every entry kept", async () => {
    project = new Project(shellAgents({}));
    let n = 0;
    const { target, asked } = await hostile((method) =>
      method === "memory.page" ? { entries: [{ path: `/notes/${n++}`, value: "x".repeat(1000), revision: 1, updated_at: "2026-01-01T00:00:00.000Z" }], next: "/notes/0" } : [],
    );
    for (const args of [["memory", "show", "/notes"], ["memory", "query", "/notes/**"]]) {
      asked.length = 0;
      const result = await run(target, args);
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toContain("APEX_E_RPC");
      expect(result.stderr).toContain("named before");
      expect(asked.filter((method) => method === "memory.page")).toHaveLength(2);
    }
    // An empty page with a `next` is a page the server left out for the grant: asked on, until a next repeats.
    let k = 0;
    const empty = await hostile((method) => (method === "memory.page" ? { entries: [], next: `/z/${Math.min(k++, 2)}` } : []));
    const refused = await run(empty.target, ["memory", "query", "/**"]);
    expect(refused.stderr).toContain("named before");
    expect(empty.asked.filter((method) => method === "memory.page")).toHaveLength(4);
    // A limit the server answers past: no page more is asked.
    let m = 0;
    const past = await hostile((method) => (method === "memory.page" ? { entries: [1, 2, 3].map(() => ({ path: `/n/${m++}`, value: 1, revision: 1, updated_at: "2026-01-01T00:00:00.000Z" })), next: `/n/${m}` } : []));
    const limited = await run(past.target, ["memory", "query", "/n/**", "--limit", "2", "--json"]);
    expect(limited.status, limited.stderr).toBe(0);
    expect(past.asked.filter((method) => method === "memory.page")).toHaveLength(1);
  }, 60_000);

  it("of another shape than the command reads are APEX_E_RPC naming the method, with nothing printed: they failed half-way as APEX_E_INTERNAL (\"records.map is not a function\")", async () => {
    project = new Project(shellAgents({}));
    const commands: Array<[string[], string]> = [
      [["session", "list"], "session.list"],
      [["task", "list"], "task.list"],
      [["task", "show", "t-1"], "task.get"],
      [["milestone"], "milestone.list"],
      [["session", "shares"], "share.list"],
      [["checkpoint", "list"], "checkpoint.list"],
      [["checkpoint", "show", "c1"], "checkpoint.show"],
      [["session", "tree"], "session.tree"],
      [["checkpoint", "diff", "c1", "c2"], "checkpoint.diff"],
    ];
    for (const reply of ["x", 5, {}, [1, null, "x", { a: 1 }], { checkpoints: "x", items: 3, sessions: 1, nodes: 2, manifest: 4 }]) {
      const { target } = await hostile(() => reply);
      for (const [args, method] of commands) {
        const result = await run(target, args);
        expect(result.status, `${args.join(" ")} ← ${JSON.stringify(reply)}: ${result.stderr}`).toBe(1);
        expect(result.stderr).toContain(`error[APEX_E_RPC]: http://${target.split("/")[0]} answered ${method} with a reply that is not`);
        expect(result.stderr).not.toContain("APEX_E_INTERNAL");
        expect(result.stdout).toBe("");
      }
    }
  }, 120_000);

  it("cannot forge output lines with line breaks in names, ids, paths and numbers (the terminal guard keeps newlines): each value stays on its line", async () => {
    project = new Project(shellAgents({}));
    const s = "v\nFORGED line";
    const { target } = await hostile((method) => {
      if (method === "checkpoint.show") {
        return {
          checkpoint_id: s, session_id: s, session_name: s, name: s, tasks: { [s]: { title: s, status: s } }, agent_states: { [s]: { status: s, current_task: s } },
          memory_keys: [s], memory_keys_count: 1, memory_keys_next_offset: null, git_state: null,
          manifest: { id: s, name: s, session_id: s, created_at: s, trigger: s, description: s, pinned: false, parent: s, revision: s, memory: { keys: 1, root: null, scope: { include: [s] } }, data: {} },
        };
      }
      if (method === "checkpoint.list") return { session_id: s, session_name: s, total: 1, taken: 1, offset: 0, limit: 20, order: s, items: [{ id: s, name: s, sequence: 1, created_at: s, trigger: s, description: s, pinned: false, revision: 1, kept_by: null }] };
      if (method === "session.tree") return { sessions: [{ session_id: s, name: s, status: s, created_at: s, parent: null, checkpoints: 1, latest: s }], nodes: [{ id: s, session_id: s, name: s, sequence: 1, trigger: s, description: s, created_at: s, parents: [], folded: 0, head: true }] };
      if (method === "memory.page") return { entries: [{ path: s, value: s, revision: 1, updated_at: s }] };
      if (method === "task.get") return { id: s, title: s, status: s, assignee: s, created_at: s, milestone: false };
      if (method === "checkpoint.diff") {
        const changes = { added: [s], removed: [s], changed: [{ id: s, before: { title: s }, after: { title: "t" } }] };
        return { from: { id: s, name: s, sessionId: s, session_name: s }, to: { id: s, name: s, sessionId: s, session_name: s }, memory: { added: [s], removed: [s], changed: [s] }, tasks: changes, agents: changes };
      }
      return [{ n: s, at: s, text: s, by: s }];
    });
    for (const args of [["checkpoint", "show", "c1"], ["checkpoint", "list"], ["session", "tree"], ["memory", "query", "/**"], ["memory", "query", "/**", "--keys"], ["milestone"], ["task", "show", "t-1"], ["checkpoint", "diff", "c1", "c2"]]) {
      const result = await run(target, args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      expect(result.stdout).toContain("\\u000aFORGED line");
      expect(result.stdout, args.join(" ")).not.toMatch(/^FORGED/m);
    }
  }, 60_000);

  it("memory watch: a batch of changes of another shape is the server's APEX_E_RPC (waited out as a server out of reach, then given up on), not an internal error", async () => {
    project = new Project(shellAgents({}));
    let calls = 0;
    const { target } = await hostile((method) => (method === "memory.changes" ? (calls++ === 0 ? { revision: 5, changes: [] } : { revision: 6, changes: "x" }) : { entries: [] }));
    const result = await run(target, ["memory", "watch", "/x", "--timeout", "3"]);
    expect(result.status, result.stderr).toBe(1);
    expect(result.stderr).toContain("answered memory.changes with a reply that is not a batch of memory changes");
    expect(result.stderr).not.toContain("APEX_E_INTERNAL");
  }, 60_000);

  it("status: an agent's row without what the printer reads is APEX_E_RPC (it was APEX_E_INTERNAL), and no text of the report forges a line", async () => {
    project = new Project(shellAgents({}));
    const s = "v\nFORGED line";
    const agent = { name: s, status: "running", pid: 1, pgid: 1, processes: [1], uptime_seconds: 5, cpu_seconds: 0.5, restarts: 0, task: s, stopped: [1] };
    const report = (agents: unknown[]) => ({
      session: { session_id: s, name: s, status: "active", created_at: s, initial_task: s, supervisor: { pid: 1, alive: true, host: s, socket: s, generation: null, lease_expires_at: null } },
      agents,
      tasks: { pending: 0, active: 0, completed: 0, failed: 0 },
      connected: [{ user: s, role: s }],
      last_checkpoint: { sequence: 1, trigger: s, created_at: s },
    });
    const broken = await hostile((method) => (method === "session.status" ? report([{ name: "a", status: "running" }]) : []));
    const refused = await run(broken.target, ["status"]);
    expect(refused.status, refused.stderr).toBe(1);
    expect(refused.stderr).toContain("error[APEX_E_RPC]: The server's status report is not one this version of APEX can read");
    expect(refused.stdout).toBe("");
    const crafted = await hostile((method) => (method === "session.status" ? report([agent]) : []));
    const shown = await run(crafted.target, ["status"]);
    expect(shown.status, shown.stderr).toBe(0);
    expect(shown.stdout).toContain("v\\u000aFORGED line");
    expect(shown.stdout).not.toMatch(/^FORGED/m);
    // --json: the texts exactly.
    const json = await run(crafted.target, ["status", "--json"]);
    expect((JSON.parse(json.stdout) as { agents: Array<{ name: string }> }).agents[0]!.name).toBe(s);
  }, 60_000);
});
