// Remote access as a careful operator expects it: a real `apex serve` on loopback (the built CLI),
// real sessions and real clients (the built CLI with --remote, HTTP). Errors callers act on are
// told by stable codes and details, never by the text of a message.
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { remote, rpc, serve, share } from "./support/serve.js";

const cleanups: Array<() => Promise<unknown> | unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function project(config = shellAgents({ alpha: "sleep 600" })): Project {
  const p = new Project(config, "apex-serve-security-");
  cleanups.push(() => p.cleanup());
  return p;
}

describe("a method nobody serves", () => {
  it("is told by details.unknown_method, locally and through `apex serve`, so the CLI says what is missing", async () => {
    // No checkpoint plugin: the supervisor has no checkpoint.create.
    const p = project();
    const sid = p.start().session_id;
    const stops: Array<() => Promise<unknown>> = [];
    cleanups.push(async () => {
      for (const stop of stops) await stop();
    });
    const url = await serve(p, stops);
    const owner = share(p, sid, "olga", "owner");
    // Through the API: 404 with the method in details (no list of the supervisor's methods), internal ones alike.
    for (const method of ["memory.explode", "share.authenticate"]) {
      const reply = await rpc(url, sid, method, owner.token);
      expect(reply.status).toBe(404);
      expect(reply.body.error).toMatchObject({ code: "APEX_E_NOT_FOUND", details: { unknown_method: method } });
      expect(JSON.stringify(reply.body)).not.toContain("Known:");
    }
    // The CLI says the session has no checkpoint plugin, locally and through --remote alike (through
    // --remote it said `Unknown method "checkpoint.create"`, exit 3, as if a checkpoint were missing).
    const local = p.apex(["checkpoint", "create", "here"]);
    const far = remote(p, url, sid, owner.token, ["checkpoint", "create", "there"]);
    for (const result of [local, far]) {
      expect(result.status, result.stderr).toBe(2);
      expect(result.stderr).toContain("error[APEX_E_USAGE]: The running session has no checkpoint plugin, so it cannot checkpoint create.");
    }
  }, 60_000);
});
