// The control socket's protocol as a program other than the CLI speaks it: raw lines written on a
// running supervisor's socket, with the built CLI, real processes and a real LMDB store. Every
// process a test starts is ended by pid or process group (fixtures/agents/harness.ts).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, groupMembers, shellAgents, waitFor } from "./fixtures/agents/harness.js";

const loop = "while true; do sleep 0.2; done";

/** Writes `lines` (each a string or raw bytes) on the socket, ends its sending side, and returns every reply line, parsed. */
function raw(socket: string, lines: Array<string | Buffer>): Promise<Array<Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    const client = connect(socket);
    const chunks: Buffer[] = [];
    client.on("connect", () => client.end(Buffer.concat(lines.map((line) => Buffer.concat([typeof line === "string" ? Buffer.from(line) : line, Buffer.from("\n")])))));
    client.on("data", (chunk: Buffer) => chunks.push(chunk));
    client.on("error", reject);
    client.on("close", () => resolve(Buffer.concat(chunks).toString("utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>)));
  });
}

const request = (id: number, method: string, params: Record<string, unknown>) => JSON.stringify({ id, method, params });

describe("a request that names another session than the supervisor's", () => {
  it("is refused (APEX_E_SESSION_MISMATCH), nothing of it done; one naming its own session is served", async () => {
    const project = new Project(shellAgents({ worker: loop }));
    const first = project.start(["--task", "the first"]);
    expect(project.apex(["stop"]).status).toBe(0);
    const second = project.start(["--task", "the second"]);
    const other = first.session_id;
    const replies = await raw(second.socket, [
      request(1, "task.add", { title: "meant for the first", session: other }),
      request(2, "memory.set", { path: "/meant/for/first", value: 1, session: other }),
      request(3, "milestone.add", { text: "meant for the first", session: other }),
      request(4, "session.pause", { session: other }),
      request(5, "session.stop", { session: other.slice(0, 8) }),
      request(6, "task.add", { title: "no such session", session: "deadbeef-0000-0000-0000-000000000000" }),
    ]);
    const byId = new Map(replies.map((reply) => [reply.id, reply]));
    for (const id of [1, 2, 3, 4, 5]) {
      const error = byId.get(id)?.error as { code: string; message: string; details: Record<string, unknown> } | undefined;
      expect(error?.code, JSON.stringify(byId.get(id))).toBe("APEX_E_SESSION_MISMATCH");
      expect(error?.message).toContain(`serves session ${second.session_id}`);
      expect(error?.details).toMatchObject({ session_id: second.session_id, named_session_id: other });
    }
    expect((byId.get(6)?.error as { code: string }).code).toBe("APEX_E_SESSION_MISMATCH");
    // Nothing of them was done: no task, milestone or memory in either session, and the second runs on.
    const status = project.status();
    expect(status.session?.session_id).toBe(second.session_id);
    expect(status.session?.status).toBe("active");
    expect(status.tasks.total).toBe(0);
    expect(JSON.parse(project.apex(["task", "list", "--session", other, "--json"]).stdout)).toEqual([]);
    expect(project.apex(["memory", "show", "/meant/for/first"]).status).toBe(3);
    expect(JSON.parse(project.apex(["milestone", "--json"]).stdout)).toEqual([]);

    // Its own session, by id, prefix or `current`, is served as with no session named; a read of another one still reads it.
    const own = await raw(second.socket, [
      request(1, "task.add", { title: "by id", session: second.session_id }),
      request(2, "task.add", { title: "by prefix", session: second.session_id.slice(0, 8) }),
      request(3, "task.add", { title: "current", session: "current" }),
      request(4, "task.list", { session: other }),
    ]);
    const ownById = new Map(own.map((reply) => [reply.id, reply]));
    for (const id of [1, 2, 3]) expect(ownById.get(id)?.error, JSON.stringify(ownById.get(id))).toBeUndefined();
    expect(ownById.get(4)?.result).toEqual([]);
    expect(project.status().tasks.total).toBe(3);
  });
});

describe("`apex pause` run inside one of the session's agents", () => {
  it("is refused (APEX_E_USAGE, exit 2) naming the agent, nothing paused, instead of stopping the command with its agent; from outside it pauses", async () => {
    // The agent runs `apex pause` once told to (the file `go`), writes what it said and its exit code, then runs on.
    const pauser = 'while [ ! -f go ]; do sleep 0.05; done; apex pause --json > out.json 2> err.json; echo $? > rc; while true; do sleep 0.2; done';
    const project = new Project(shellAgents({ pauser, other: loop }));
    const ready = project.start(["--task", "pause from inside"]);
    writeFileSync(join(project.dir, "go"), "");
    // Before, the command was stopped with its agent (SIGSTOP to the agent's group): no exit code ever came.
    const code = await waitFor("the agent's apex pause to exit", () => existsSync(join(project.dir, "rc")) && readFileSync(join(project.dir, "rc"), "utf8").trim(), 30_000);
    expect(code).toBe("2");
    const { error } = JSON.parse(readFileSync(join(project.dir, "err.json"), "utf8")) as { error: { code: string; message: string; hint: string; details: Record<string, unknown> } };
    expect(error.code).toBe("APEX_E_USAGE");
    expect(error.message).toContain("agent pauser");
    expect(error.message).toContain("nothing was paused");
    expect(error.details).toMatchObject({ agent: "pauser" });
    const status = project.status();
    expect(status.session?.status).toBe("active");
    for (const agent of status.agents) expect(agent.status).toBe("running");
    for (const agent of ready.agents) for (const member of groupMembers(agent.pgid!)) expect(member.state).not.toBe("T");
    // From outside the agents, pause works as ever.
    const paused = project.apex(["pause", "--json"]);
    expect(paused.status, paused.stderr).toBe(0);
    expect(project.status().session?.status).toBe("paused");
  });
});

describe("a request whose bytes are not UTF-8", () => {
  it("is refused (APEX_E_BAD_INPUT), its id answered and nothing of it done, instead of stored with U+FFFD in place of the bytes; the requests around it are served", async () => {
    const project = new Project(shellAgents({ worker: loop }));
    const ready = project.start(["--task", "bytes"]);
    const invalid = (prefix: string, bytes: number[], suffix: string) => Buffer.concat([Buffer.from(prefix), Buffer.from(bytes), Buffer.from(suffix)]);
    const replies = await raw(ready.socket, [
      request(1, "memory.set", { path: "/before", value: "é ok" }),
      invalid('{"id":2,"method":"memory.set","params":{"path":"/latin1","value":"a', [0xff, 0xfe], 'b"}}'),
      // A truncated sequence (the first byte of a two-byte character, then a quote) and an overlong encoding of "/".
      invalid('{"id":3,"method":"task.add","params":{"title":"caf', [0xc3], '"}}'),
      invalid('{"id":4,"method":"memory.set","params":{"path":"/a', [0xc0, 0xaf], 'b","value":1}}'),
      request(5, "memory.set", { path: "/after", value: "U+FFFD itself, sent as UTF-8: \uFFFD" }),
    ]);
    const byId = new Map(replies.map((reply) => [reply.id, reply]));
    for (const id of [2, 3, 4]) {
      const error = byId.get(id)?.error as { code: string; message: string } | undefined;
      expect(error?.code, JSON.stringify(byId.get(id))).toBe("APEX_E_BAD_INPUT");
      expect(error?.message).toContain("not UTF-8");
    }
    for (const id of [1, 5]) expect(byId.get(id)?.error, JSON.stringify(byId.get(id))).toBeUndefined();
    expect(JSON.parse(project.apex(["memory", "show", "/before", "--json"]).stdout).value).toBe("é ok");
    expect(JSON.parse(project.apex(["memory", "show", "/after", "--json"]).stdout).value).toBe("U+FFFD itself, sent as UTF-8: \uFFFD");
    expect(project.apex(["memory", "show", "/latin1"]).status).toBe(3);
    expect(project.status().tasks.total).toBe(0);
  });
});
