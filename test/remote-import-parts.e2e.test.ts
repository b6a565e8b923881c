// `apex --remote … memory import` of a file larger than one request body (`apex serve` takes
// 1 MiB): sent in parts, each of which fits, that the server writes as one import, all or
// nothing, as the local command does. It was refused whole (413, with a hint about splitting a
// value across paths). One entry that alone does not fit is refused before anything is sent,
// naming it and the limit. A real `apex serve` on loopback in front of a running session.
import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { remote as remoteCommand, rpc, serveLogged, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" });

let p: Project;
let url: string;
let log: () => string;
let sid: string;
let owner: string;
let viewer: string;
const stops: Array<() => unknown> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  sid = p.start().session_id;
  ({ url, log } = await serveLogged(p, stops));
  owner = share(p, "current", "olga", "owner").token;
  viewer = share(p, "current", "vera", "viewer").token;
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

const remote = (args: string[], token = owner) => remoteCommand(p, url, sid, token, args);
const keys = (glob: string) => (JSON.parse(p.apex(["memory", "query", glob, "--keys", "--json"]).stdout) as unknown[]).length;

describe("apex --remote … memory import larger than a request body", () => {
  it("is sent in parts that each fit, and written as one import", async () => {
    const entries: Record<string, string> = {};
    for (let i = 0; i < 3000; i++) entries[`/big/k${String(i).padStart(4, "0")}`] = "x".repeat(500);
    const file = join(p.dir, "big.json");
    writeFileSync(file, JSON.stringify(entries));
    const imported = remote(["memory", "import", file, "--json"]);
    expect(imported.status, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ count: 3000 });
    expect(keys("/big/**")).toBe(3000);
    // In parts: staged, then the last part with the import, each under the server's 1 MiB.
    await waitFor("the server's log of the import", () => log().includes(`/api/sessions/${sid}/rpc/memory.import 200 olga`));
    expect(log()).toMatch(new RegExp(`/api/sessions/${sid}/rpc/memory\\.stage 200 olga[\\s\\S]*/api/sessions/${sid}/rpc/memory\\.import 200 olga`));
    expect(log()).not.toMatch(/ 413 /);
  });

  it("refuses an entry that alone does not fit in a request, before anything is sent, naming it and the limit", () => {
    const file = join(p.dir, "one.json");
    writeFileSync(file, JSON.stringify({ "/huge/small": 1, "/huge/one": "y".repeat(1536 * 1024) }));
    const refused = remote(["memory", "import", file, "--json"]);
    expect(refused.status).toBe(2);
    const { error } = JSON.parse(refused.stderr);
    expect(error).toMatchObject({ code: "APEX_E_TOO_LARGE", details: { path: "/huge/one", limit_bytes: 1024 * 1024 } });
    expect(error.message).toContain("Nothing was imported.");
    expect(error.hint).toContain("on the server's host");
    expect(keys("/huge/**")).toBe(0);
  });

  it("writes nothing of the staged parts when the last one is refused, or names no upload under way; a viewer cannot stage", async () => {
    const upload = "0123456789abcdef0123456789abcdef";
    const staged = await rpc(url, sid, "memory.stage", owner, { upload, entries: [{ path: "/parts/a", value: 1 }] });
    expect(staged.status, JSON.stringify(staged.body)).toBe(200);
    expect(staged.body.result).toMatchObject({ staged: 1 });
    const last = await rpc(url, sid, "memory.import", owner, { upload, entries: [{ path: "/parts/b", value: 2 }, { path: "/parts//c", value: 3 }] });
    expect(last.status).toBe(400);
    expect(last.body.error.code).toBe("APEX_E_BAD_PATH");
    expect(keys("/parts/**")).toBe(0);
    // The upload went with its refused import: its last part again names none.
    const again = await rpc(url, sid, "memory.import", owner, { upload, entries: [{ path: "/parts/b", value: 2 }] });
    expect(again.status).toBe(400);
    expect(again.body.error).toMatchObject({ code: "APEX_E_BAD_INPUT" });
    expect(again.body.error.message).toContain("nothing was imported");
    expect(keys("/parts/**")).toBe(0);
    expect((await rpc(url, sid, "memory.stage", viewer, { upload, entries: [{ path: "/parts/a", value: 1 }] })).status).toBe(403);
  });

  it("keeps a grant's uploads apart, four at most at a time", async () => {
    const ids = ["a", "b", "c", "d", "e"].map((letter) => letter.repeat(32));
    for (const id of ids.slice(0, 4)) expect((await rpc(url, sid, "memory.stage", owner, { upload: id, entries: [{ path: `/apart/${id[0]}1`, value: 1 }] })).status).toBe(200);
    const fifth = await rpc(url, sid, "memory.stage", owner, { upload: ids[4], entries: [{ path: "/apart/e1", value: 1 }] });
    expect(fifth.status).toBe(429);
    expect(fifth.body.error.code).toBe("APEX_E_RATE_LIMITED");
    // Each ends with its own parts, whichever order they end in.
    for (const id of [ids[1]!, ids[0]!]) {
      const done = await rpc(url, sid, "memory.import", owner, { upload: id, entries: [{ path: `/apart/${id[0]}2`, value: 2 }] });
      expect(done.status, JSON.stringify(done.body)).toBe(200);
      expect(done.body.result).toMatchObject({ count: 2 });
    }
    expect((await rpc(url, sid, "memory.stage", owner, { upload: ids[4], entries: [{ path: "/apart/e1", value: 1 }] })).status).toBe(200);
    expect((JSON.parse(p.apex(["memory", "query", "/apart/**", "--keys", "--json"]).stdout) as string[]).sort()).toEqual(["/apart/a1", "/apart/a2", "/apart/b1", "/apart/b2"]);
  });

  it("through a server of an older APEX, which has no memory.stage, says so and writes nothing", async () => {
    // Such a server answers an unknown method 404 with its name; anything else would be written.
    const asked: string[] = [];
    const older = createServer((incoming, outgoing) => {
      asked.push(incoming.url ?? "");
      incoming.resume();
      incoming.on("end", () => {
        const unknown = incoming.url?.endsWith("/rpc/memory.stage");
        outgoing.writeHead(unknown ? 404 : 200, { "content-type": "application/json" });
        outgoing.end(JSON.stringify(unknown ? { error: { code: "APEX_E_NOT_FOUND", message: 'Unknown method "memory.stage".', details: { unknown_method: "memory.stage" } } } : { result: {} }));
      });
    });
    await new Promise<void>((resolve) => older.listen(0, "127.0.0.1", resolve));
    try {
      const entries: Record<string, string> = {};
      for (let i = 0; i < 3000; i++) entries[`/old/k${i}`] = "x".repeat(500);
      const file = join(p.dir, "old.json");
      writeFileSync(file, JSON.stringify(entries));
      // In the background: this process answers as that server meanwhile.
      const refused = await p.apexAsync(["--remote", `127.0.0.1:${(older.address() as AddressInfo).port}/${sid}`, "memory", "import", file, "--json"], { env: { APEX_TOKEN: owner } }).done;
      expect(refused.status).toBe(2);
      const { error } = JSON.parse(refused.stderr);
      expect(error).toMatchObject({ code: "APEX_E_TOO_LARGE", details: { limit_bytes: 1024 * 1024 } });
      expect(error.message).toContain("does not take an import in parts. Nothing was imported.");
      // The first part only: never the import that would have written the last part alone.
      expect(asked).toEqual([`/api/sessions/${sid}/rpc/memory.stage`]);
    } finally {
      await new Promise((resolve) => older.close(resolve));
    }
  });
});
