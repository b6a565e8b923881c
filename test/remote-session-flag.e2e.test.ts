// `--session` with `apex --remote HOST/SESSION`, read as a local command reads it (an id, a unique
// prefix, a branch's name, `current`), among the sessions the grant sees: only the exact text of
// --remote's session passed, and a prefix or the name of that same session was refused as naming
// another. A real `apex serve` on loopback; a branch `exp` of a first session, shared to a viewer
// (its grant sees `exp` and the session it was branched from). The built CLI.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project } from "./fixtures/agents/harness.js";
import { ok, serve, share } from "./support/serve.js";

const CONFIG = ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.5; done"]', "plugins:", "  checkpoint: {}", ""].join("\n");

let p: Project;
let first: string;
let exp: string;
let address: string;
let token: string;
const stops: Array<() => unknown> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  first = p.start(["--task", "first"]).session_id;
  ok(p.apex(["stop"]));
  exp = (JSON.parse(ok(p.apex(["session", "branch", `${first}/latest`, "exp", "--json"]))) as { session_id: string }).session_id;
  address = (await serve(p, stops)).replace(/^http:\/\//, "");
  token = share(p, "exp", "wes", "viewer").token;
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

const remote = (target: string, args: string[]) => p.apex(["--remote", `${address}/${target}`, ...args], { env: { APEX_TOKEN: token } });

describe("--session with --remote", () => {
  it("takes the remote session by a prefix, its name, its whole id or `current`, whichever way --remote names it", () => {
    for (const target of [exp, exp.slice(0, 8), "exp"]) {
      for (const ref of [exp, exp.slice(0, 8), exp.slice(0, 4), "exp", "current"]) {
        const status = remote(target, ["--session", ref, "status", "--json"]);
        expect(status.status, `${target} --session ${ref}: ${status.stderr}`).toBe(0);
        expect(JSON.parse(status.stdout).session.session_id).toBe(exp);
      }
    }
    // A command that takes --session itself is given the whole id.
    const tasks = remote(exp.slice(0, 8), ["task", "list", "--session", exp.slice(0, 6), "--json"]);
    expect(tasks.status, tasks.stderr).toBe(0);
    const history = remote(exp, ["session", "history", "--session", "exp", "--json"]);
    expect(history.status, history.stderr).toBe(0);
  });

  it("refuses what it would refuse locally, with the same codes: a session unknown or too short (exit 3), another session (exit 2)", () => {
    const unknown = remote(exp, ["--session", "zzzzzzzz", "status", "--json"]);
    expect(unknown.status).toBe(3);
    expect(JSON.parse(unknown.stderr).error).toMatchObject({ code: "APEX_E_NO_SESSION", message: `No session "zzzzzzzz" among those the grant of ${address}/${exp} sees.`, hint: `See \`apex --remote ${address}/${exp} session list\`.` });
    const short = remote(exp, ["--session", exp.slice(0, 3), "status", "--json"]);
    expect(short.status).toBe(3);
    expect(JSON.parse(short.stderr).error.hint).toContain("Give at least 4 characters of the session id");
    // The session `exp` was branched from: the grant sees it, and a remote command does not act on it.
    const other = remote(exp, ["task", "list", "--session", first.slice(0, 8), "--json"]);
    expect(other.status).toBe(2);
    expect(JSON.parse(other.stderr).error).toMatchObject({ code: "APEX_E_USAGE", details: { session_id: exp, named: first } });
    expect(JSON.parse(other.stderr).error.message).toContain("does not work with --remote");
    for (const result of [unknown, short, other]) expect(result.stdout).toBe("");
  });
});
