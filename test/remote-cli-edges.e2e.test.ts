// `apex --remote HOST/SESSION …` as a user meets it: `apex milestone` (a command of its own, which
// the list of remote commands named as `task milestone`). A real `apex serve` on loopback in front
// of a live session; the built CLI.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { ok, remote, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

let p: Project;
let url: string;
let sid: string;
let owner: string, viewer: string;
const stops: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  sid = p.start().session_id;
  ok(p.apex(["checkpoint", "create", "base"]));
  url = await serve(p, stops);
  owner = share(p, "current", "olga", "owner").token;
  viewer = share(p, "current", "vera", "viewer").token;
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

describe("apex --remote", () => {
  it("records and lists milestones, as locally (it was refused as a command that does not work remotely)", () => {
    const recorded = remote(p, url, sid, owner, ["milestone", "login works"]);
    expect(recorded.status, recorded.stderr).toBe(0);
    expect(recorded.stdout).toBe("milestone 1: login works\n");
    const listed = JSON.parse(ok(remote(p, url, sid, viewer, ["milestone", "--json"]))) as Array<{ n: number; text: string; by: string }>;
    expect(listed.map(({ n, text, by }) => ({ n, text, by }))).toEqual([{ n: 1, text: "login works", by: "user:olga" }]);
    expect(JSON.parse(ok(p.apex(["milestone", "--json"])))).toEqual(listed);
    // A viewer reads them and records none.
    const refused = remote(p, url, sid, viewer, ["milestone", "not mine"]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("error[APEX_E_FORBIDDEN]");
    expect(JSON.parse(ok(p.apex(["milestone", "--json"])))).toHaveLength(1);

    // The list of remote commands names it as the command it is (it said `task …|milestone`, which is no command).
    const other = remote(p, url, sid, owner, ["config", "show"]);
    expect(other.status).toBe(2);
    expect(other.stderr).toMatch(/Remote commands: [^\n]*, milestone, /);
    expect(other.stderr).not.toContain("reopen|milestone");
  });
});
