// What a grant of one session sees of the rest of the project through `apex serve`: in the
// listings of sessions (list, history, tree) only its own session's ancestry (the sessions it
// was branched and merged from); never the project-wide records (/sessions/current,
// /projects/config); and a merge into its session only from a session its user may read too.
// A real server on loopback, real tokens, the built CLI and HTTP.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { ok, remote, rpc, serve, share } from "./support/serve.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n");

let project: Project | undefined;
const stops: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  project?.cleanup();
  project = undefined;
});

const sorted = (ids: Iterable<string>) => [...ids].sort();

/** The project: main, two branches of it, a session merged into one branch, an unrelated session; the branch runs. */
let p: Project;
let url: string;
let main: string, feature: string, sibling: string, merged: string, other: string, point: string;

beforeAll(async () => {
  project = new Project(CONFIG);
  p = project;
  // main, with two branches from one checkpoint; two unrelated sessions, one merged into the branch later.
  main = p.start(["--task", "main: the secret plan"]).session_id;
  ok(p.apex(["memory", "set", "/notes/a", "1"]));
  point = (JSON.parse(ok(p.apex(["checkpoint", "create", "branch point", "--json"]))) as { id: string }).id;
  ok(p.apex(["session", "branch", point, "feature"]));
  ok(p.apex(["session", "branch", point, "sibling"]));
  ok(p.apex(["stop"]));
  merged = p.start(["--task", "merged: work merged into feature"]).session_id;
  ok(p.apex(["memory", "set", "/notes/m", "1"]));
  ok(p.apex(["checkpoint", "create", "to merge"]));
  ok(p.apex(["stop"]));
  other = p.start(["--task", "other: an unrelated secret"]).session_id;
  ok(p.apex(["memory", "set", "/notes/x", "1"]));
  ok(p.apex(["checkpoint", "create", "unrelated work"]));
  ok(p.apex(["stop"]));
  feature = p.start(["--continue", "feature"]).session_id;
  ok(p.apex(["session", "merge", merged, feature]));
  const all = JSON.parse(ok(p.apex(["session", "list", "--json"]))) as Array<{ session_id: string; name: string | null }>;
  sibling = all.find((record) => record.name === "sibling")!.session_id;
  // The project's own user sees every session.
  expect(sorted(all.map((record) => record.session_id))).toEqual(sorted([main, feature, sibling, merged, other]));

  url = await serve(p, stops);
}, 240_000);

describe("apex serve: a grant sees its own session's ancestry, not the project", () => {
  it("lists, in session list/history/tree, the grant's session and those it branched and merged from, nothing else", async () => {
    const vera = share(p, feature, "vera", "viewer");
    const ancestry = sorted([feature, main, merged]);

    // Listings: the grant's session, the one it branched from, the one merged into it; not the sibling, not the unrelated one.
    const list = await rpc(url, feature, "session.list", vera.token);
    expect(list.status).toBe(200);
    expect(sorted(list.body.result.map((record: { session_id: string }) => record.session_id))).toEqual(ancestry);
    expect(JSON.stringify(list.body)).not.toContain("an unrelated secret");
    const history = await rpc(url, feature, "session.history", vera.token);
    expect(sorted(history.body.result.map((record: { session_id: string }) => record.session_id))).toEqual(sorted([main, merged]));
    const tree = await rpc(url, feature, "session.tree", vera.token);
    expect(tree.status).toBe(200);
    expect(sorted(tree.body.result.sessions.map((session: { session_id: string }) => session.session_id))).toEqual(ancestry);
    const nodes = tree.body.result.nodes as Array<{ id: string; session_id: string; parents: string[] }>;
    expect(nodes.filter((node) => !ancestry.includes(node.session_id))).toEqual([]);
    // The branch still hangs from main's checkpoint, and the merge still shows both parents.
    expect(nodes.some((node) => node.id === point)).toBe(true);
    expect(nodes.some((node) => node.session_id === feature && node.parents.some((parent) => nodes.find((n) => n.id === parent)?.session_id === merged))).toBe(true);
    // The same through the CLI, as the remote user runs it.
    const remoteList = JSON.parse(ok(remote(p, url, feature, vera.token, ["session", "list", "--json"]))) as Array<{ session_id: string }>;
    expect(sorted(remoteList.map((record) => record.session_id))).toEqual(ancestry);
  });

  it("never shows the project-wide records (/sessions/current, /projects/config) through a grant", async () => {
    const vera = share(p, feature, "vera2", "viewer");
    // Project-wide records: not through the grant of the running session, nor through another session's grant.
    const otto = share(p, other, "otto", "viewer");
    for (const [sid, token] of [[feature, vera.token], [other, otto.token]] as const) {
      const records = (await rpc(url, sid, "memory.query", token, { glob: "/**" })).body.result as Array<{ path: string }>;
      expect(records.length).toBeGreaterThan(0);
      expect(records.filter((entry) => entry.path === "/sessions/current" || entry.path === "/projects/config")).toEqual([]);
      expect(records.filter((entry) => entry.path.startsWith("/sessions/") && !entry.path.includes(sid))).toEqual([]);
      // memory.page (`apex --remote … memory query` a page at a time): scoped the same, and a limit counts what the grant sees.
      const page = (await rpc(url, sid, "memory.page", token, { glob: "/**" })).body.result as { entries: Array<{ path: string }>; next?: string };
      expect(page.entries.length).toBeGreaterThan(0);
      expect(page.entries.filter((entry) => entry.path === "/sessions/current" || entry.path === "/projects/config")).toEqual([]);
      expect(page.entries.filter((entry) => entry.path.startsWith("/sessions/") && !entry.path.includes(sid))).toEqual([]);
      const limited = (await rpc(url, sid, "memory.page", token, { glob: "/**", limit: 3 })).body.result as { entries: Array<{ path: string }>; next?: string };
      expect(limited.entries.map((entry) => entry.path)).toEqual(page.entries.slice(0, 3).map((entry) => entry.path));
      expect(limited.next).toBeUndefined();
      expect((await rpc(url, sid, "memory.get", token, { path: "/sessions/current" })).body).toEqual({});
      expect((await rpc(url, sid, "memory.get", token, { path: "/projects/config" })).body).toEqual({});
      expect(remote(p, url, sid, token, ["memory", "show", "/sessions/current"]).stdout).not.toContain(feature);
    }
    const changes = (await rpc(url, feature, "memory.changes", vera.token, { since: 0, glob: "/**" })).body.result.changes as Array<{ path: string }>;
    expect(changes.length).toBeGreaterThan(0);
    expect(changes.filter((change) => change.path === "/sessions/current" || change.path === "/projects/config")).toEqual([]);
    // The unrelated session's grant sees only that session in the listings.
    expect((await rpc(url, other, "session.list", otto.token)).body.result.map((record: { session_id: string }) => record.session_id)).toEqual([other]);
  });

  it("refuses a merge whose source the caller holds no grant of (403, nothing written), and lets it through with one", async () => {
    // A merge into the grant's session: owner of it is not enough, the user needs a grant of the source too.
    const olga = share(p, feature, "olga", "owner");
    const checkpoints = () => ok(p.apex(["checkpoint", "list", "--session", feature, "--json"]));
    const trail = () => ok(p.apex(["session", "history", feature, "--json"]));
    const before = { checkpoints: checkpoints(), memory: ok(p.apex(["memory", "show", "/notes", "--json"])) };
    const merges = () => (JSON.parse(trail()) as { events: Array<{ type: string }> }).events.filter((entry) => entry.type === "session.merged").length;
    const mergesBefore = merges();
    for (const source of [other, other.slice(0, 8), "no-such-session"]) {
      const refused = await rpc(url, feature, "session.merge", olga.token, { source, strategy: "theirs" });
      expect(refused.status, source).toBe(403);
      expect(refused.body.error.code).toBe("APEX_E_FORBIDDEN");
      expect(refused.body.error.message).toBe(`olga may not read session "${source}"; merging it into ${feature} needs owner of ${feature} and a grant of the source. Nothing was merged.`);
    }
    const dryRun = await rpc(url, feature, "session.merge", olga.token, { source: other, dry_run: true });
    expect(dryRun.status).toBe(403);
    // Nor as a forwarded plugin command, whose arguments would name both sessions.
    const forwarded = await rpc(url, feature, "plugin.command", olga.token, { name: "session merge", args: [other, feature], options: {} });
    expect(forwarded.status).toBe(403);
    // Nothing written: no merge checkpoint, no event, memory as it was.
    expect(checkpoints()).toBe(before.checkpoints);
    expect(ok(p.apex(["memory", "show", "/notes", "--json"]))).toBe(before.memory);
    expect(merges()).toBe(mergesBefore);

    // With a grant of the source, the same merge goes through, attributed to olga.
    share(p, other, "olga", "viewer");
    const allowed = await rpc(url, feature, "session.merge", olga.token, { source: other.slice(0, 8) });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
    expect(allowed.body.result.source.session_id).toBe(other);
    expect(allowed.body.result.destination.session_id).toBe(feature);
    const event = (JSON.parse(trail()) as { events: Array<{ type: string; actor: string }> }).events.filter((entry) => entry.type === "session.merged").at(-1)!;
    expect(event.actor).toBe("user:olga");
  });
});

describe("apex serve: a grant writes memory, never APEX's records", () => {
  it("refuses memory writes under /sessions and to the project's records (403, nothing written): no grant can forge a grant, a record or the audit trail", async () => {
    const otto = share(p, feature, "otto", "operator");
    const olga = share(p, feature, "olga", "owner");
    const { createHash } = await import("node:crypto");
    // A grant record as `apex session share` writes it, for a token the caller made up.
    const forge = (tokenId: string, session: string) => {
      const token = `apx_${tokenId}_${"F".repeat(43)}`;
      const record = { token_id: tokenId, user: "mallory", role: "owner", token_sha256: createHash("sha256").update(token).digest("hex"), created_at: "2026-01-01T00:00:00.000Z", created_by: "user:mallory", expires_at: null, last_used_at: null };
      return { token, path: `/sessions/${session}/grants/${tokenId}`, record };
    };
    const mine = forge("aaaaaaaaaaaaaaaa", feature);
    const theirs = forge("bbbbbbbbbbbbbbbb", other);
    // The records the refused writes aim at, as they are (the running session's own record changes as it runs: its status is compared).
    const records = () => {
      const all = JSON.parse(ok(p.apex(["memory", "query", "/sessions/**", "--json"]))) as Record<string, { status?: string }>;
      const paths = Object.keys(all);
      return {
        grants: paths.filter((path) => /\/grants\//.test(path)).sort(),
        otherKeys: paths.filter((path) => path.includes(other)).length,
        statuses: [all[`/sessions/${feature}`]?.status, all[`/sessions/history/${other}`]?.status ?? all[`/sessions/${other}`]?.status],
        forgedEvent: paths.includes(`/sessions/${feature}/events/999999`),
        current: JSON.stringify(all["/sessions/current"]),
      };
    };
    const before = records();
    expect(before.otherKeys).toBeGreaterThan(0);
    const projectRecords = ok(p.apex(["memory", "query", "/projects/**", "--json"]));
    for (const [token, method, params] of [
      [otto.token, "memory.set", { path: mine.path, value: mine.record }], // an operator making itself owner
      [olga.token, "memory.set", { path: theirs.path, value: theirs.record }], // an owner of one session reaching another
      [otto.token, "memory.set", { path: `/sessions/${feature}`, value: { status: "stopped" } }],
      [otto.token, "memory.set", { path: `/sessions/${feature}/events/999999`, value: { type: "session.paused", actor: "user:someone-else" } }],
      [otto.token, "memory.set", { path: "/sessions/current", value: {} }],
      [otto.token, "memory.set", { path: "/projects/config", value: {} }],
      [olga.token, "memory.delete", { path: `/sessions/${other}`, recursive: true }],
      [olga.token, "memory.delete", { path: "/sessions", recursive: true }],
      [olga.token, "memory.import", { entries: [{ path: "/notes/fine", value: 1 }, { path: theirs.path, value: theirs.record }] }],
    ] as const) {
      const refused = await rpc(url, feature, method, token, params);
      expect(refused.status, `${method} ${JSON.stringify(params).slice(0, 80)}: ${JSON.stringify(refused.body)}`).toBe(403);
      expect(refused.body.error.code).toBe("APEX_E_FORBIDDEN");
    }
    // Through the CLI too: --force changes nothing through a grant, so it does not warn that it writes (before, it
    // printed "memory set --force writes …, which APEX owns" and then the server's refusal).
    const forced = remote(p, url, feature, otto.token, ["memory", "set", mine.path, JSON.stringify(mine.record), "--force"]);
    expect(forced.status).toBe(4);
    expect(forced.stderr).toContain("APEX_E_FORBIDDEN");
    expect(forced.stderr).not.toContain("warning");
    expect(records()).toEqual(before);
    expect(ok(p.apex(["memory", "query", "/projects/**", "--json"]))).toBe(projectRecords);
    expect(ok(p.apex(["memory", "query", "/notes/fine", "--json"]))).not.toContain("fine");
    for (const [session, forged] of [[feature, mine], [other, theirs]] as const) {
      expect((await rpc(url, session, "whoami", forged.token)).status).toBe(401);
    }
    // Memory itself is written as before.
    expect((await rpc(url, feature, "memory.set", otto.token, { path: "/notes/from-otto", value: 1 })).status).toBe(200);
    expect(Object.keys(JSON.parse(ok(p.apex(["memory", "query", "/notes/from-otto", "--json"]))))).toEqual(["/notes/from-otto"]);
  });
});

describe("apex serve: a grant acts on its own session's checkpoints only", () => {
  it("does not delete or pin another session's checkpoint (404, as for reading it), nor make sessions of the project (403)", async () => {
    const olga = share(p, feature, "olga-cp", "owner");
    const theirs = () => JSON.parse(ok(p.apex(["checkpoint", "list", "--session", other, "--json"]))) as { items: Array<{ id: string; name: string; pinned?: boolean }> };
    const before = theirs();
    expect(before.items.length).toBeGreaterThan(0);
    const target = before.items[0]!;
    for (const [method, params] of [
      ["checkpoint.delete", { ref: `${other}/${target.name}` }],
      ["checkpoint.delete", { ref: target.id, force: true }],
      ["checkpoint.pin", { ref: target.id, pinned: true }],
    ] as const) {
      const refused = await rpc(url, feature, method, olga.token, params);
      expect(refused.status, `${method} ${JSON.stringify(params)}: ${JSON.stringify(refused.body)}`).toBe(404);
      expect(refused.body.error.code).toBe("APEX_E_CHECKPOINT_NOT_FOUND");
    }
    expect(theirs()).toEqual(before);
    const sessions = ok(p.apex(["session", "list", "--json"]));
    for (const [method, params] of [
      ["session.branch", { checkpoint: target.id, name: "taken" }],
      ["session.reconstruct", { session_id: other }],
    ] as const) {
      const refused = await rpc(url, feature, method, olga.token, params);
      expect(refused.status, `${method}: ${JSON.stringify(refused.body)}`).toBe(403);
      expect(refused.body.error.code).toBe("APEX_E_FORBIDDEN");
    }
    expect(ok(p.apex(["session", "list", "--json"]))).toBe(sessions);
    // Its own session's checkpoint, as before.
    const own = (JSON.parse(ok(p.apex(["checkpoint", "list", "--session", feature, "--json"]))) as { items: Array<{ id: string }> }).items[0]!;
    const pinned = await rpc(url, feature, "checkpoint.pin", olga.token, { ref: own.id, pinned: true });
    expect(pinned.status, JSON.stringify(pinned.body)).toBe(200);
  });
});

describe("apex serve: a grant made through a grant", () => {
  it("ends no later than the grant that made it (403 otherwise, nothing shared)", async () => {
    const brief = JSON.parse(ok(p.apex(["session", "share", feature, "tess", "--role", "owner", "--expires", "1h", "--json"]))) as { token: string; expires_at: string };
    const grants = () => (JSON.parse(ok(p.apex(["session", "shares", feature, "--json"]))) as Array<{ user: string }>).map((grant) => grant.user).sort();
    const before = grants();
    for (const params of [{ user: "tess-forever", role: "owner" }, { user: "tess-longer", role: "viewer", expires_in_s: 7200 }]) {
      const refused = await rpc(url, feature, "share.create", brief.token, params);
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      expect(refused.body.error.message).toContain(brief.expires_at);
    }
    expect(grants()).toEqual(before);
    const within = await rpc(url, feature, "share.create", brief.token, { user: "tess-helper", role: "viewer", expires_in_s: 600 });
    expect(within.status, JSON.stringify(within.body)).toBe(200);
    expect(Date.parse(within.body.result.grant.expires_at)).toBeLessThanOrEqual(Date.parse(brief.expires_at));
    // A grant without an end may make one without an end.
    const lasting = share(p, feature, "lasting-owner", "owner");
    expect((await rpc(url, feature, "share.create", lasting.token, { user: "lasting-friend", role: "viewer" })).status).toBe(200);
  });
});

describe("apex serve: sharing through a grant", () => {
  it("acts on the grant's own session only: naming another is refused (403, nothing shared or revoked), not done to the grant's", async () => {
    const owner = share(p, feature, "sol", "owner");
    share(p, feature, "keep", "viewer");
    const users = (session: string) => (JSON.parse(ok(p.apex(["session", "shares", session, "--json"]))) as Array<{ user: string }>).map((grant) => grant.user).sort();
    const [featureBefore, mainBefore] = [users(feature), users(main)];
    // `unshare main keep` revoked keep's grant of feature (the grant's session), exit 0; `share main bob` made bob a grant of feature.
    for (const args of [["session", "share", main, "bob"], ["session", "unshare", main.slice(0, 8), "keep"], ["session", "shares", other]]) {
      const refused = remote(p, url, feature, owner.token, args);
      expect(refused.status, `${args.join(" ")}: ${refused.stdout}${refused.stderr}`).toBe(4);
      expect(refused.stderr).toContain("APEX_E_FORBIDDEN");
    }
    const direct = await rpc(url, feature, "share.revoke", owner.token, { session: main, user: "keep" });
    expect(direct.status).toBe(403);
    expect([users(feature), users(main)]).toEqual([featureBefore, mainBefore]);
    // The grant's own session, by its name, its id or `current`: done.
    for (const ref of ["feature", feature, "current"]) expect(remote(p, url, feature, owner.token, ["session", "shares", ref, "--json"]).status).toBe(0);
    // Without SESSION: the remote session's grants (it was a usage error, exit 2).
    const bare = remote(p, url, feature, owner.token, ["session", "shares", "--json"]);
    expect(bare.status, bare.stderr).toBe(0);
    expect((JSON.parse(bare.stdout) as Array<{ user: string }>).map((grant) => grant.user).sort()).toEqual(users(feature));
    ok(remote(p, url, feature, owner.token, ["session", "unshare", "feature", "keep"]));
    expect(users(feature)).not.toContain("keep");
  });
});

describe("apex serve: revoking a grant revokes the grants made with it", () => {
  it("takes the grants made through the server with that grant (and with those, in turn) with it; others stay", async () => {
    const olga = JSON.parse(ok(p.apex(["session", "share", feature, "rosa", "--role", "owner", "--json"]))) as { token: string; token_id: string };
    const bystander = JSON.parse(ok(p.apex(["session", "share", feature, "bystander", "--role", "viewer", "--json"]))) as { token: string; token_id: string };
    // The body cannot say which grant made the new one: the server records the caller's.
    const friend = await rpc(url, feature, "share.create", olga.token, { user: "rosa-friend", role: "owner", via_token_id: bystander.token_id });
    expect(friend.status, JSON.stringify(friend.body)).toBe(200);
    expect(friend.body.result.grant.via_token_id).toBe(olga.token_id);
    const second = await rpc(url, feature, "share.create", friend.body.result.token, { user: "rosa-friend-of-friend", role: "viewer" });
    expect(second.status, JSON.stringify(second.body)).toBe(200);
    const tokens = { olga: olga.token, friend: friend.body.result.token as string, second: second.body.result.token as string, bystander: bystander.token };
    for (const [who, token] of Object.entries(tokens)) expect((await rpc(url, feature, "whoami", token)).status, who).toBe(200);
    const listed = ok(p.apex(["session", "shares", feature]));
    expect(listed).toMatch(/rosa-friend-of-friend +viewer .* via rosa-friend/);

    const revoked = JSON.parse(ok(p.apex(["session", "unshare", feature, "rosa", "--json"]))) as { revoked: number; derived: Array<{ user: string; role: string }> };
    expect(revoked.revoked).toBe(1);
    expect(revoked.derived.map((grant) => `${grant.user}:${grant.role}`)).toEqual(["rosa-friend:owner", "rosa-friend-of-friend:viewer"]);
    for (const token of [tokens.olga, tokens.friend, tokens.second]) {
      const refused = await rpc(url, feature, "whoami", token);
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe("APEX_E_UNAUTHORIZED");
    }
    expect((await rpc(url, feature, "whoami", tokens.bystander)).status).toBe(200);
    const users = (JSON.parse(ok(p.apex(["session", "shares", feature, "--json"]))) as Array<{ user: string }>).map((grant) => grant.user);
    expect(users).toContain("bystander");
    expect(users.filter((user) => user.startsWith("rosa"))).toEqual([]);
    // The audit trail names every grant that ended (so a stream of any of them closes at once): the owner's to read, on the host.
    const events = (JSON.parse(ok(p.apex(["session", "history", feature, "--json"]))) as { events: Array<{ type: string; user?: string; token_ids?: string[] }> }).events;
    const event = events.filter((e) => e.type === "share.revoked" && e.user === "rosa").at(-1);
    expect(event?.token_ids).toEqual([olga.token_id, friend.body.result.grant.token_id, second.body.result.grant.token_id]);
    const text = ok(p.apex(["session", "unshare", feature, "bystander"]));
    expect(text).not.toContain("Also revoked");
  });

  it("takes, too, older grants that did not record the grant they were made with, when the revoked user (an owner then) made them", async () => {
    const ruth = JSON.parse(ok(p.apex(["session", "share", feature, "ruth", "--role", "owner", "--json"]))) as { token_id: string; created_at: string; via_token_id: unknown };
    // A grant made on the host now says so (null), so that only older grants lack the field.
    expect(ruth.via_token_id).toBeNull();
    const { createHash } = await import("node:crypto");
    // Grants as the server recorded them before grants named their maker: created_by the caller, no via_token_id.
    const older = (tokenId: string, user: string, createdBy: string, createdAt: string) => {
      const token = `apx_${tokenId}_${"L".repeat(43)}`;
      const record = { token_id: tokenId, user, role: "viewer", token_sha256: createHash("sha256").update(token).digest("hex"), created_at: createdAt, created_by: createdBy, expires_at: null, last_used_at: null };
      ok(p.apex(["memory", "set", `/sessions/${feature}/grants/${tokenId}`, JSON.stringify(record), "--force"]));
      return token;
    };
    const later = new Date(Date.parse(ruth.created_at) + 1000).toISOString();
    const byRuth = older("1111111111111111", "ruth-friend", "user:ruth", later);
    // Made before ruth held a grant (she could not have made it through the server), and one made by someone else: they stay.
    const before = older("2222222222222222", "early", "user:ruth", "2020-01-01T00:00:00.000Z");
    const byOther = older("3333333333333333", "other-friend", "user:somebody-else", later);
    for (const token of [byRuth, before, byOther]) expect((await rpc(url, feature, "whoami", token)).status).toBe(200);

    const revoked = JSON.parse(ok(p.apex(["session", "unshare", feature, "ruth", "--json"]))) as { derived: Array<{ user: string; made_by?: string }> };
    // Before, an older grant made with ruth's outlived it: derived was empty and ruth-friend kept access.
    expect(revoked.derived).toEqual([{ user: "ruth-friend", role: "viewer", token_id: "1111111111111111", made_by: "user:ruth" }]);
    const refused = await rpc(url, feature, "whoami", byRuth);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("APEX_E_UNAUTHORIZED");
    for (const token of [before, byOther]) expect((await rpc(url, feature, "whoami", token)).status).toBe(200);
    // The text names them as such.
    ok(p.apex(["session", "share", feature, "ruth", "--role", "owner"]));
    older("4444444444444444", "ruth-helper", "user:ruth", new Date(Date.now() + 1000).toISOString());
    const text = ok(p.apex(["session", "unshare", feature, "ruth"]));
    expect(text).toContain("Also revoked the grants made with it: ruth-helper (viewer).");
    expect(text).toContain("ruth-helper: recorded before grants named the grant they were made with; revoked as made by ruth.");
  });
});
