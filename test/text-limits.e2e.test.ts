// Free text APEX keeps in a session's records (a task's title, a milestone's text, a task's
// reason, an agent's reported status, the initial task) has a bound, as a checkpoint's
// description has: past it, refused with exit 2 (APEX_E_BAD_INPUT, the field, its length and the
// limit in details), and nothing written, whichever way the request comes: the built CLI through
// the supervisor's socket, straight to the store, and `apex serve`'s API.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { ok, remote, rpc, serve, share } from "./support/serve.js";

const idle = ["  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");
const stops: Array<() => unknown> = [];
let p: Project | undefined;

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

const long = "x".repeat(1001);
const longReason = "r".repeat(10_001);
/** Each command with text past its bound, the refusal's message and details. */
const REFUSED: Array<{ args: string[]; method: string; params: Record<string, unknown>; message: string; details: { field: string; length: number; limit: number } }> = [
  { args: ["task", "add", long], method: "task.add", params: { title: long }, message: "A task's title is 1,001 characters long; at most 1,000 are kept.", details: { field: "title", length: 1001, limit: 1000 } },
  { args: ["milestone", long], method: "milestone.add", params: { text: long }, message: "A milestone's text is 1,001 characters long; at most 1,000 are kept.", details: { field: "text", length: 1001, limit: 1000 } },
  { args: ["task", "fail", "t-0001", "--reason", longReason], method: "task.fail", params: { id: "t-0001", reason: longReason }, message: "A task's reason is 10,001 characters long; at most 10,000 are kept.", details: { field: "reason", length: 10_001, limit: 10_000 } },
  { args: ["task", "reopen", "t-0001", "--reason", longReason], method: "task.reopen", params: { id: "t-0001", reason: longReason }, message: "A task's reason is 10,001 characters long; at most 10,000 are kept.", details: { field: "reason", length: 10_001, limit: 10_000 } },
  { args: ["agent", "report", "--agent", "idle", "--status", long], method: "agent.report", params: { agent: "idle", status: long }, message: "An agent's reported status is 1,001 characters long; at most 1,000 are kept.", details: { field: "status", length: 1001, limit: 1000 } },
];

describe("free text in a session's records", () => {
  it("is refused past its bound (exit 2, APEX_E_BAD_INPUT, nothing written) through the supervisor, the store and apex serve; at the bound it is kept", async () => {
    p = new Project(["agents:", idle, "plugins: {}", ""].join("\n"), "apex-text-limits-");
    const project = p;
    // The initial task is a task's title: refused before anything starts (no store, no supervisor).
    const start = project.apex(["start", "--task", long, "--json"]);
    expect(start.status, start.stderr).toBe(2);
    expect(JSON.parse(start.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: "The initial task (--task) is 1,001 characters long; at most 1,000 are kept.", details: { field: "task", length: 1001, limit: 1000 } });
    expect(existsSync(join(project.storeDir, "store.mdb"))).toBe(false);

    const ready = project.start(["--task", "x".repeat(1000)]);
    expect(JSON.parse(ok(project.apex(["task", "add", "kept", "--json"])))).toMatchObject({ id: "t-0001" });
    const sessionRecords = () => ok(project.apex(["memory", "query", `/sessions/${ready.session_id}/**`, "--json"]));
    const check = (via: string) => {
      for (const { args, message, details } of REFUSED) {
        const before = sessionRecords();
        const refused = project.apex([...args, "--json"]);
        expect(refused.status, `${via} ${args[0]} ${args[1]}: ${refused.stderr.slice(0, 300)}`).toBe(2);
        expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message, hint: expect.stringContaining("Nothing was written."), details });
        expect(sessionRecords(), `${via} ${args.join(" ").slice(0, 40)}`).toBe(before);
      }
    };
    check("supervisor");

    // Through apex serve: a 400 with the same error, nothing written; and `apex --remote` exits 2.
    const url = await serve(project, stops);
    const owner = share(project, ready.session_id, "olga", "owner");
    const before = sessionRecords();
    for (const { method, params, message, details } of REFUSED) {
      const reply = await rpc(url, ready.session_id, method, owner.token, params);
      expect(reply.status, `${method}: ${JSON.stringify(reply.body).slice(0, 300)}`).toBe(400);
      expect(reply.body.error).toMatchObject({ code: "APEX_E_BAD_INPUT", message, details });
    }
    const viaRemote = remote(project, url, ready.session_id, owner.token, ["task", "add", long]);
    expect([viaRemote.status, viaRemote.stderr]).toEqual([2, expect.stringContaining("error[APEX_E_BAD_INPUT]: A task's title is 1,001 characters long; at most 1,000 are kept.")]);
    // (The grant's last use is recorded as it is used: the rest is as it was.)
    const withoutGrants = (text: string) => JSON.stringify(Object.entries(JSON.parse(text) as Record<string, unknown>).filter(([path]) => !path.includes("/grants/")));
    expect(withoutGrants(sessionRecords())).toBe(withoutGrants(before));

    // At the bound, kept: counted in characters as a person counts them (an emoji is one, though two UTF-16 units).
    const emoji = "😀".repeat(1000);
    expect(JSON.parse(ok(project.apex(["task", "add", emoji, "--json"])))).toMatchObject({ id: "t-0002", title: emoji });
    expect(JSON.parse(ok(project.apex(["milestone", "m".repeat(1000), "--json"])))).toMatchObject({ text: "m".repeat(1000) });
    expect(JSON.parse(ok(project.apex(["agent", "report", "--agent", "idle", "--status", "s".repeat(1000), "--json"])))).toMatchObject({ reported_status: "s".repeat(1000) });
    expect(JSON.parse(ok(project.apex(["task", "reopen", "t-0001", "--assign", "idle", "--reason", "r".repeat(10_000), "--json"])))).toMatchObject({ reason: "r".repeat(10_000) });

    // With no supervisor (killed) the commands go straight to the store: the same bounds.
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the session to be interrupted", () => project.status().session?.status === "interrupted");
    check("store");
  }, 180_000);
});
