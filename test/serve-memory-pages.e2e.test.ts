// `apex --remote … memory query`, `show` and `export` through `apex serve` read a page at a time
// (memory.page), as they do through a supervisor: one reply holds at most a socket's line (256
// MiB; the remote client reads no longer one either), and a subtree of more failed through the
// server (APEX_E_TOO_LARGE) while the same command on the server's host printed it. The limits are
// lowered for this file in every process it starts (the CLI, the supervisor, the server:
// APEX_RPC_MAX_LINE_BYTES, APEX_REPLY_CHARS) so that values of a few MiB cross them as values of
// 90 MiB cross the real ones. A real server on loopback, a real grant, the built CLI.
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { ok, proxy, remote, rpc, serve, share } from "./support/serve.js";

const MIB = 1024 * 1024;
/** A line of 4 MiB, pages of 1 MiB of JSON. */
const LIMITS = { APEX_RPC_MAX_LINE_BYTES: String(4 * MIB), APEX_REPLY_CHARS: String(MIB) };
const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

const stops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
});

const digest = (text: string) => ({ bytes: Buffer.byteLength(text), sha256: createHash("sha256").update(text).digest("hex") });

describe("apex --remote memory reads through apex serve", () => {
  it("of more than one reply holds come a page at a time, the same as on the server's host, for a running session and an ended one", async () => {
    const p = new Project(CONFIG, "apex-serve-pages-", LIMITS);
    // Three values of 1.5 MiB (4.5 MiB together: more than a line), and 40 of 100 KiB so that a page's end falls among them.
    const entries: Record<string, string> = {};
    for (const name of ["a", "b", "c"]) entries[`/big/${name}`] = name.repeat(1.5 * MIB);
    for (let i = 0; i < 40; i++) entries[`/big/many/${String(i).padStart(2, "0")}`] = String(i % 10).repeat(100 * 1024);
    writeFileSync(join(p.dir, "big.json"), JSON.stringify(entries));
    ok(p.apex(["memory", "import", "big.json"]));
    const sid = p.start().session_id;
    const url = await serve(p, stops);
    const viewer = share(p, sid, "vera", "viewer");

    const commands = [
      ["memory", "query", "/big/**", "--json"],
      ["memory", "query", "/big/**"],
      ["memory", "query", "/big/**", "--limit", "30", "--json"],
      ["memory", "show", "/big"],
    ];
    const here = commands.map((args) => digest(ok(p.apex(args))));
    expect(here[0]!.bytes).toBeGreaterThan(8 * MIB);
    const far = () => commands.map((args) => digest(ok(remote(p, url, sid, viewer.token, args))));
    expect(far()).toEqual(here);
    // Each page held at most a page's JSON, or one entry alone.
    let page = (await rpc(url, sid, "memory.page", viewer.token, { glob: "/big/**" })).body.result as { entries: unknown[]; next?: string };
    expect(page.entries.map((entry) => (entry as { path: string }).path)).toEqual(["/big/a"]);
    expect(page.next).toBe("/big/a");
    page = (await rpc(url, sid, "memory.page", viewer.token, { glob: "/big/**", after: "/big/c" })).body.result;
    expect(JSON.stringify(page.entries).length).toBeLessThanOrEqual(MIB);
    expect(page.entries.length).toBeGreaterThan(1);
    expect(page.next).toMatch(/^\/big\/many\/\d\d$/);

    // Ended: the server reads the store itself (the session's memory as its last checkpoint holds it), a page at a time too.
    ok(p.apex(["stop"]));
    expect(far()).toEqual(here);
  }, 180_000);
});

describe("apex --remote memory reads through a server of an older APEX, which has no memory.page", () => {
  it("ask memory.query once memory.page is answered as unknown, and print what they print straight from a server that has it", async () => {
    const p = new Project(CONFIG, "apex-serve-pages-", LIMITS);
    // 1.5 MiB of JSON: more than a page (a server that has memory.page answers it in two), less than a line (memory.query whole).
    const entries: Record<string, string> = { "/old/plain": "1" };
    for (const name of ["a", "b", "c"]) entries[`/old/${name}`] = name.repeat(MIB / 2);
    writeFileSync(join(p.dir, "old.json"), JSON.stringify(entries));
    ok(p.apex(["memory", "import", "old.json"]));
    const sid = p.start().session_id;
    const url = await serve(p, stops);
    const viewer = share(p, sid, "vera", "viewer");
    // The answer a server gives a method it does not have, as `apex serve` gives it (a name no APEX serves, asked of this one).
    const unknown = await rpc(url, sid, "memory.nothing", viewer.token, { glob: "/old/**" });
    const unknownAnswer = (method: string) => ({
      code: "APEX_E_NOT_FOUND",
      message: `Unknown method ${JSON.stringify(method)}.`,
      hint: "The methods are those of `apex`'s control channel (README: Remote and shared sessions).",
      details: { unknown_method: method },
    });
    expect(unknown).toEqual({ status: 404, body: { error: unknownAnswer("memory.nothing") } });
    // An older server in front of this one: memory.page is unknown to it; every other method is this server's answer.
    const older = await proxy(url, stops, (incoming, outgoing) => {
      if (!incoming.url?.endsWith("/rpc/memory.page")) return false;
      incoming.resume();
      outgoing.writeHead(404, { "content-type": "application/json; charset=utf-8" }).end(JSON.stringify({ error: unknownAnswer("memory.page") }));
      return true;
    });

    const commands = [
      ["memory", "query", "/old/**", "--json"],
      ["memory", "query", "/old/**"],
      ["memory", "query", "/old/**", "--limit", "2", "--json"],
      ["memory", "show", "/old"],
      ["memory", "export", "/old/**"],
    ];
    const straight = commands.map((args) => digest(ok(remote(p, url, sid, viewer.token, args))));
    expect(straight[0]!.bytes).toBeGreaterThan(1.5 * MIB);
    // Not spawnSync: the proxy answers from this process, whose event loop it would block.
    const through: Array<ReturnType<typeof digest>> = [];
    for (const args of commands) {
      through.push(digest(ok(await p.apexAsync(["--remote", `127.0.0.1:${older.port}/${sid}`, ...args], { env: { APEX_TOKEN: viewer.token } }).done)));
    }
    expect(through).toEqual(straight);
    // Each command asked memory.page first, then memory.query once: no page asked again, and no memory.query before it was refused
    // (`memory show` asks memory.get of the path itself besides).
    const asked = older.requests().map((path) => path.split("/rpc/")[1]).filter((method) => method === "memory.page" || method === "memory.query");
    expect(asked).toEqual(commands.flatMap(() => ["memory.page", "memory.query"]));
  }, 180_000);
});
