// `apex serve` failing on a request (a bug, a damaged record, a damaged store): a real server on
// loopback, a real store damaged as a disk or a crash leaves it. The remote client gets a 500 with
// the error's code, a generic message and a reference; what failed (its message, paths, stack) is
// in the server's log (stderr) under that reference, for its owner, and in no answer.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { openStore } from "../core/store/open.js";
import { ok, rpc, serveLogged, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" });
const stops: Array<() => unknown> = [];
let p: Project | undefined;

const projects: Project[] = [];

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  for (const project of [p, ...projects]) project?.cleanup();
});

/** The reference a 500's body gives, once the body is checked to say nothing of what failed. */
function referenceOf(reply: { status: number; body: any }, code: string, secrets: string[]): string {
  expect(reply.status, JSON.stringify(reply.body)).toBe(500);
  const { error } = reply.body;
  expect(error).toMatchObject({ code, message: expect.stringMatching(/^The server failed on this request \(error [0-9a-f]{8}\)/), details: { reference: expect.stringMatching(/^[0-9a-f]{8}$/) } });
  expect(Object.keys(error.details)).toEqual(["reference"]);
  expect(error.message).toContain(error.details.reference);
  const text = JSON.stringify(reply.body);
  for (const secret of secrets) expect(text).not.toContain(secret);
  return error.details.reference;
}

/**
 * The error event of an event stream replayed from the start over an event record damaged by
 * hand (null where the session's second event was), once checked to say nothing of what failed.
 */
async function failedEventStream(project: Project, url: string, sid: string, token: string): Promise<{ details: { reference: string } }> {
  const store = await openStore(project.storeDir);
  await store.batch((batch) => batch.set(`/sessions/${sid}/events/00000002`, null));
  await store.close();
  const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ "events.subscribe": { from_seq: 0 } }),
    signal: AbortSignal.timeout(20_000),
  });
  expect(response.status).toBe(200);
  const text = await response.text();
  const error = text.split("\n\n").filter((block) => block.startsWith("event: error\n")).map((block) => JSON.parse(/^data: (.*)$/m.exec(block)![1]!))[0];
  expect(error, text).toMatchObject({ code: "APEX_E_INTERNAL", message: expect.stringMatching(/^The server failed on this request \(error [0-9a-f]{8}\)/), details: { reference: expect.stringMatching(/^[0-9a-f]{8}$/) } });
  for (const secret of ["Cannot read", "null", project.dir]) expect(JSON.stringify(error)).not.toContain(secret);
  return error;
}

describe("apex serve: an unexpected error", () => {
  it("is a 500 with a reference and no message of its own; the server's log has the reference with the error", async () => {
    p = new Project(CONFIG, "apex-serve-500-");
    const sid = p.start(["--task", "main"]).session_id;
    const owner = share(p, sid, "olga", "owner");
    ok(p.apex(["stop"]));
    const server = await serveLogged(p, stops);

    // An error of APEX's own that is the server's failure (the store file damaged, APEX_E_STORE_DAMAGED) keeps its code, not its message, which names the store's file.
    const storeFile = join(p.storeDir, "store.mdb");
    renameSync(storeFile, `${storeFile}.kept`);
    try {
      writeFileSync(storeFile, Buffer.alloc(65_536, 7));
      const damaged = await rpc(server.url, sid, "whoami", `apx_0123456789abcdef_${"B".repeat(43)}`);
      const ref = referenceOf(damaged, "APEX_E_STORE_DAMAGED", [p.dir, "store.mdb"]);
      const logged = server.log().split("\n");
      const at = logged.findIndex((line) => new RegExp(`error ${ref}: POST /api/sessions/${sid}/rpc/whoami: APEX_E_STORE_DAMAGED: .*${storeFile.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`).test(line));
      expect(at, server.log()).toBeGreaterThanOrEqual(0);
      // Its hint and stack follow, in the log only.
      expect(logged.slice(at + 1, at + 4).some((line) => /^ {2}at .*file-check\.js/.test(line)), server.log()).toBe(true);
      // Each failure has a reference of its own.
      expect(referenceOf(await rpc(server.url, sid, "whoami", owner.token), "APEX_E_STORE_DAMAGED", [p.dir, "store.mdb"])).not.toBe(ref);
    } finally {
      renameSync(`${storeFile}.kept`, storeFile);
    }

    // A request refused (4xx) is answered as before, its message whole.
    const refused = await rpc(server.url, sid, "task.get", owner.token, { id: "t-0099" });
    expect(refused.status).toBe(404);
    expect(refused.body.error).toMatchObject({ code: "APEX_E_TASK_NOT_FOUND", message: expect.stringContaining("t-0099") });
    expect(refused.body.error.details?.reference).toBeUndefined();
  }, 120_000);

  it("of a supervisor's own server (sharing.serve) is logged in the supervisor's log under its reference", async () => {
    const project = new Project(CONFIG.replace("plugins: {}\n", 'plugins:\n  git: {}\n  sharing:\n    serve:\n      listen: "127.0.0.1:0"\n'), "apex-serve-500-own-");
    projects.push(project);
    const sid = project.start().session_id;
    const url = (JSON.parse(readFileSync(join(project.storeDir, "serve.json"), "utf8")) as { url: string }).url;
    const owner = share(project, sid, "olga", "owner");
    // An event record damaged under the running supervisor (null where the session's second event was): replaying the events to a stream fails on it, a TypeError in the supervisor.
    const error = await failedEventStream(project, url, sid, owner.token);
    // Before, it was logged nowhere (this server logs no requests): the reference led to nothing.
    await waitFor("the error in the supervisor's log", () => project.supervisorLog().includes(`sharing.serve: error ${error.details.reference}: `));
    expect(project.supervisorLog()).toMatch(new RegExp(`sharing\\.serve: error ${error.details.reference}: .*APEX_E_INTERNAL: .*Cannot read properties of null`));
  }, 120_000);

  it("that ends an event stream is its error event with the reference alone; the log has it whole", async () => {
    const project = new Project(CONFIG, "apex-serve-500-stream-");
    projects.push(project);
    const sid = project.start(["--task", "main"]).session_id;
    const owner = share(project, sid, "olga", "owner");
    ok(project.apex(["stop"]));
    const server = await serveLogged(project, stops);
    // An event record damaged (null where the session's second event was): the stream, reading the session's events from the store, fails on it.
    const error = await failedEventStream(project, server.url, sid, owner.token);
    // Before, the error event said it: "Cannot read properties of null (reading 'seq')".
    expect(server.log()).toContain(`error ${error.details.reference}: stream of olga (session ${sid.slice(0, 8)}): APEX_E_INTERNAL: Cannot read properties of null (reading 'seq')`);
  }, 120_000);
});
