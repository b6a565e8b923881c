// Paths of the dashboard's files that name none (`/assets/.`, `/assets/..`, `/assets/`, a name
// with a dot first) and other paths ending in a dot: a plain 404, the path quoted as it was asked.
// `/assets/.` was answered "No such file: .." and `/assets/` "No such file: .". A real `apex serve`
// on loopback.
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { serve } from "./support/serve.js";

let p: Project;
let url: string;
const stops: Array<() => unknown> = [];

beforeAll(async () => {
  p = new Project(shellAgents({ alpha: "while true; do sleep 0.5; done" }));
  p.start();
  url = await serve(p, stops);
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

/** GET of `path` exactly as written (fetch would resolve its dot segments before sending it). */
function get(path: string): Promise<{ status: number; type: string; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    request({ host: hostname, port, path, method: "GET" }, (reply) => {
      let body = "";
      reply.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      reply.on("end", () => resolve({ status: reply.statusCode!, type: String(reply.headers["content-type"]), body }));
    })
      .on("error", reject)
      .end();
  });
}

describe("dot paths on the dashboard", () => {
  it("are a plain 404 naming the path as asked", async () => {
    for (const path of ["/assets/.", "/assets/..", "/assets/%2e", "/assets/", "/assets/.hidden", "/assets/nope.js", "/api/x."]) {
      const reply = await get(path);
      expect(reply.status, path).toBe(404);
      expect(reply.type).toMatch(/^application\/json/);
      const { error } = JSON.parse(reply.body);
      expect(error.code).toBe("APEX_E_NOT_FOUND");
      expect(error.message, path).toBe(`No such path: GET ${JSON.stringify(path)}.`);
    }
    expect(JSON.parse((await get("/assets/.")).body).error.hint).toBe("The dashboard is at /; /assets/ holds only the files it loads.");
    // The dashboard's own files are served as before.
    expect((await get("/assets/app.js")).status).toBe(200);
  });
});
