// A grant named as this host's own user, or `root`, is refused: the audit trail records what a
// grant's holder does as `user:<grant's user>`, and the host's own user's actions as
// `user:<login>`, so `apex session history` could not tell a grant named `root` from the owner
// working as root on the host. Refused on the host, through a running supervisor and through
// `apex serve` alike (exit 2, APEX_E_USAGE, nothing shared). The built CLI on a real store.
import { userInfo } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { ok, remote as remoteCommand, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" });

let p: Project;
let sid: string;
let url: string;
const stops: Array<() => unknown> = [];

beforeAll(async () => {
  p = new Project(CONFIG);
  sid = p.start().session_id;
  url = await serve(p, stops);
}, 120_000);

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  p?.cleanup();
});

const grantedUsers = () => (JSON.parse(ok(p.apex(["session", "shares", "current", "--json"]))) as Array<{ user: string }>).map((grant) => grant.user);

describe("a grant named as the host's own user", () => {
  it("is refused for root and for this host's login name, in any case, through the supervisor and through apex serve; another name is shared", () => {
    const login = userInfo().username;
    for (const user of ["root", "ROOT", login, login.toUpperCase()]) {
      const refused = p.apex(["session", "share", "current", user, "--role", "viewer", "--json"]);
      expect(refused.status, user).toBe(2);
      const { error } = JSON.parse(refused.stderr);
      expect(error).toMatchObject({ code: "APEX_E_USAGE", details: { user } });
      expect(error.message).toContain(`The user name ${JSON.stringify(user)} is reserved: the audit trail records`);
      expect(error.message).toContain("Nothing was shared.");
      expect(refused.stdout).toBe("");
    }
    expect(grantedUsers()).toEqual([]);

    // Through an owner's grant, by the server: refused the same way.
    const { token } = share(p, "current", "olga@example.com", "owner");
    const remote = remoteCommand(p, url, sid, token, ["session", "share", "current", "root", "--json"]);
    expect(remote.status).toBe(2);
    expect(JSON.parse(remote.stderr).error).toMatchObject({ code: "APEX_E_USAGE", details: { user: "root", reserved: "root" } });

    // A name of the person, as known off the host, is not the host's user.
    share(p, "current", "root@build-box", "viewer");
    expect(grantedUsers().sort()).toEqual(["olga@example.com", "root@build-box"]);
  });
});
