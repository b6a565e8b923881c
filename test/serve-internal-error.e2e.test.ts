// `apex serve` failing on a request (a bug, a damaged record, a damaged store): a real server on
// loopback, a real store damaged as a disk or a crash leaves it. The remote client gets a 500 with
// the error's code, a generic message and a reference; what failed (its message, paths, stack) is
// in the server's log (stderr) under that reference, for its owner, and in no answer.
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isAlive, Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { ok, rpc, serveLogged, share } from "./support/serve.js";
import { publicError } from "../plugins/sharing/internal-error.js";

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
 * Damages the store file's record of the session's second event as a disk can: the byte after the value
 * encoding's tag (0xc1) set to that tag, a type byte the encoding never uses, so that the record no longer
 * decodes (APEX_E_STORE_DAMAGED) while every other record still reads. Only those bytes are written, in
 * place, as under a running supervisor, which keeps the store open (its map of the file sees them).
 */
function damageEventRecord(project: Project, sid: string): void {
  damageRecord(project, `/sessions/${sid}/events/00000002`, "the event record in the store file");
}

/** Damages the record at `key` in the store file as damageEventRecord does the event's (every copy of it the file holds). */
function damageRecord(project: Project, key: string, what: string): void {
  const file = join(project.storeDir, "store.mdb");
  const bytes = readFileSync(file);
  // In an LMDB leaf page a record's value follows its key: the key, then the encoding's tag.
  const record = Buffer.concat([Buffer.from(key), Buffer.from([0xc1])]);
  const fd = openSync(file, "r+");
  let damaged = 0;
  try {
    for (let at = bytes.indexOf(record); at !== -1; at = bytes.indexOf(record, at + 1), damaged++) writeSync(fd, Buffer.from([0xc1]), 0, 1, at + record.length);
  } finally {
    closeSync(fd);
  }
  expect(damaged, what).toBeGreaterThan(0);
}

/** A stream opened (its grant checked, its re-check begun: the server has answered 200), read to its end in the background. */
async function openStream(url: string, sid: string, token: string, body: unknown): Promise<{ ended: Promise<string> }> {
  const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
  });
  expect(response.status).toBe(200);
  return { ended: response.text() };
}

/** The error events of a stream's text. */
const errorEvents = (text: string): any[] => text.split("\n\n").filter((block) => block.startsWith("event: error\n")).map((block) => JSON.parse(/^data: (.*)$/m.exec(block)![1]!));

/**
 * Once the server has recorded the grant's use (last_used_at, written at the stream's opening), for a minute it
 * writes it no more: a record damaged after is not written over by that write, which copies it whole.
 */
async function usedRecorded(project: Project, sid: string, user: string): Promise<void> {
  const lastUsed = () => (JSON.parse(ok(project.apex(["session", "shares", sid, "--json"]))) as Array<{ user: string; last_used_at: string | null }>).find((grant) => grant.user === user)?.last_used_at;
  await waitFor(`${user}'s last_used_at`, () => lastUsed() ?? undefined);
}

/**
 * A stream whose grant's record, damaged in the store file under it (it no longer decodes), its re-check
 * (once a second) cannot read: it ends with the error event of a server's failure, its reference alone,
 * and the server's log has the error whole under it. Before, the re-check's error was taken as the
 * token's refusal: APEX_E_UNAUTHORIZED, its message the store file's path and the decode error.
 */
async function streamOverDamagedGrant(project: Project, server: { url: string; log: () => string }, sid: string, user: string, token: string, body: unknown): Promise<void> {
  const stream = await openStream(server.url, sid, token, body);
  await usedRecorded(project, sid, user);
  const damage = () => damageRecord(project, `/sessions/${sid}/grants/${/^apx_([0-9a-f]{16})_/.exec(token)![1]}`, `${user}'s grant record in the store file`);
  damage();
  let ended: string | undefined;
  // (A stream that fails to end is reported by the wait below, not as a rejection left unhandled.)
  stream.ended.then((text) => (ended = text)).catch(() => undefined);
  // Damaged again until the stream ends: a write of a live supervisor's (its lease) that copied the record's page as
  // the damage was made would have written it back whole (the damage is idempotent).
  const text = await waitFor("the stream to end", () => ended ?? void damage(), 30_000);
  const errors = errorEvents(text);
  expect(errors, text).toHaveLength(1);
  const error = errors[0];
  expect(error, text).toMatchObject({ code: "APEX_E_STORE_DAMAGED", message: expect.stringMatching(/^The server failed on this request \(error [0-9a-f]{8}\)/), details: { reference: expect.stringMatching(/^[0-9a-f]{8}$/) } });
  expect(Object.keys(error.details)).toEqual(["reference"]);
  for (const secret of ["store.mdb", "decode", "0xc1", project.dir, "UNAUTHORIZED", "unauthorized", "revoked", "invite"]) expect(text).not.toContain(secret);
  await waitFor("the error in the server's log", () => server.log().includes(`error ${error.details.reference}: `));
  expect(server.log()).toContain(`error ${error.details.reference}: stream of ${user} (session ${sid.slice(0, 8)}): APEX_E_STORE_DAMAGED: The store file ${project.storeDir}/store.mdb is damaged: `);
  expect(server.log()).toMatch(new RegExp(`error ${error.details.reference}: .*a record does not decode: type byte 0xc1 at 1 is not part of the value encoding`));
}

/**
 * The error event of an event stream replayed from the start over the session's second event record, damaged in
 * the store file (damageEventRecord), once checked to say nothing of what failed. (A record written null by hand,
 * the way this was shown before, is no event: a replay passes over it.)
 */
async function failedEventStream(project: Project, url: string, sid: string, token: string): Promise<{ details: { reference: string } }> {
  damageEventRecord(project, sid);
  const response = await fetch(`${url}/api/sessions/${sid}/stream`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ "events.subscribe": { from_seq: 0 } }),
    signal: AbortSignal.timeout(20_000),
  });
  expect(response.status).toBe(200);
  const text = await response.text();
  const error = text.split("\n\n").filter((block) => block.startsWith("event: error\n")).map((block) => JSON.parse(/^data: (.*)$/m.exec(block)![1]!))[0];
  expect(error, text).toMatchObject({ code: "APEX_E_STORE_DAMAGED", message: expect.stringMatching(/^The server failed on this request \(error [0-9a-f]{8}\)/), details: { reference: expect.stringMatching(/^[0-9a-f]{8}$/) } });
  expect(Object.keys(error.details)).toEqual(["reference"]);
  for (const secret of ["store.mdb", "decode", "0xc1", project.dir]) expect(JSON.stringify(error)).not.toContain(secret);
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
      // Its hint and stack follow, in the log only: the frame of file-check's damaged(), in its module or in the CLI's one-file bundle.
      expect(logged.slice(at + 1, at + 4).some((line) => /^ {2}at damaged \(.*(file-check\.js|bundle\/cli\.cjs):\d+:\d+\)$/.test(line)), server.log()).toBe(true);
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
    // An event record damaged in the store file under the running supervisor: replaying the events to a stream fails on it, in the supervisor.
    const error = await failedEventStream(project, url, sid, owner.token);
    // Before, it was logged nowhere (this server logs no requests): the reference led to nothing.
    await waitFor("the error in the supervisor's log", () => project.supervisorLog().includes(`sharing.serve: error ${error.details.reference}: `));
    expect(project.supervisorLog()).toMatch(new RegExp(`sharing\\.serve: error ${error.details.reference}: .*APEX_E_STORE_DAMAGED: The store file .*store\\.mdb is damaged: .*a record does not decode`));
  }, 120_000);

  it("that ends an event stream is its error event with the reference alone; the log has it whole", async () => {
    const project = new Project(CONFIG, "apex-serve-500-stream-");
    projects.push(project);
    const sid = project.start(["--task", "main"]).session_id;
    const owner = share(project, sid, "olga", "owner");
    ok(project.apex(["stop"]));
    const server = await serveLogged(project, stops);
    // An event record damaged in the store file: the stream, reading the session's events from the store, fails on it.
    const error = await failedEventStream(project, server.url, sid, owner.token);
    // What failed is in the log alone (before, the error event said it, the store's path with it).
    expect(server.log()).toContain(`error ${error.details.reference}: stream of olga (session ${sid.slice(0, 8)}): APEX_E_STORE_DAMAGED: The store file ${project.storeDir}/store.mdb is damaged: `);
    expect(server.log()).toMatch(new RegExp(`error ${error.details.reference}: .*a record does not decode: type byte 0xc1 at 1 is not part of the value encoding`));
  }, 120_000);

  it("that a stream's re-check of its grant meets (the grant's record damaged) ends it as the server's failure, not as a revoked token; a revoke still ends it as one", async () => {
    const project = new Project(CONFIG, "apex-serve-500-recheck-");
    projects.push(project);
    const started = project.start(["--task", "main"]);
    const sid = started.session_id;
    const owner = share(project, sid, "olga", "owner");
    const viewer = share(project, sid, "vera", "viewer");
    // Its supervisor killed: the session is interrupted, its streams read from the store and kept open (an ended session's end at once).
    process.kill(started.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor to be gone", () => !isAlive(started.supervisor_pid), 30_000);
    const server = await serveLogged(project, stops);
    // A grant revoked under its open stream, its grant read from the store (no supervisor runs): the stream ends as revoked, as before.
    const revoked = await openStream(server.url, sid, viewer.token, { "events.subscribe": {} });
    ok(project.apex(["session", "unshare", sid, "vera"]));
    const revokedText = await revoked.ended;
    expect(errorEvents(revokedText), revokedText).toEqual([expect.objectContaining({ code: "APEX_E_UNAUTHORIZED", message: `vera's access to session ${sid} was revoked.` })]);
    expect(errorEvents(revokedText)[0].details?.reference).toBeUndefined();
    // A grant its re-check cannot read is no revoke.
    await streamOverDamagedGrant(project, server, sid, "olga", owner.token, { "events.subscribe": {} });
  }, 120_000);

  it("that a stream's re-check of its grant meets through a live supervisor ends it as the server's failure, not as a revoked token", async () => {
    const project = new Project(CONFIG, "apex-serve-500-recheck-live-");
    projects.push(project);
    const sid = project.start(["--task", "main"]).session_id;
    const owner = share(project, sid, "olga", "owner");
    const server = await serveLogged(project, stops);
    // The supervisor reads the grant (share.authenticate) from its store, open under the damage; memory watch is re-checked as the event stream is.
    await streamOverDamagedGrant(project, server, sid, "olga", owner.token, { "memory.watch": { glob: "/notes/**" } });
  }, 120_000);

  it("that is no error of APEX's (a bug) is APEX_E_INTERNAL with the reference alone; the log has its message and stack", () => {
    // What the server answers for it, checked where it is made: the e2e cases above fail the server with a damaged store
    // (APEX_E_STORE_DAMAGED), and no record a user can write fails a stream with a bug (a null event record did).
    const logged: string[] = [];
    const bug = (() => {
      try {
        return (null as unknown as { seq: number }).seq;
      } catch (error) {
        return error;
      }
    })();
    const answer = publicError(bug, (line) => logged.push(line), "stream of olga (session 0123abcd)");
    expect(answer).toMatchObject({ code: "APEX_E_INTERNAL", message: expect.stringMatching(/^The server failed on this request \(error [0-9a-f]{8}\)/), details: { reference: expect.stringMatching(/^[0-9a-f]{8}$/) } });
    expect(Object.keys(answer.details!)).toEqual(["reference"]);
    expect(JSON.stringify({ message: answer.message, hint: answer.hint })).not.toContain("Cannot read");
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(new RegExp(`^error ${answer.details!.reference}: stream of olga \\(session 0123abcd\\): APEX_E_INTERNAL: Cannot read properties of null \\(reading 'seq'\\)\n {2}at `));
  });
});
