import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createHash } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { borrowedTokenSession, parseRemote, remoteEndpoint, tokenFor } from "../plugins/sharing/remote.js";
import { callRemote, subscribeRemote } from "../plugins/sharing/http-client.js";
import { authenticate, checkUser, grantPath, madeWith, roleAllows, type GrantRecord } from "../plugins/sharing/grants.js";
import { AcceptedTokens, clientKey, ConnectionLimit, LoginThrottle, RefusedTokens } from "../plugins/sharing/throttle.js";
import { GrantWatch, TRANSIENT_CHECKS } from "../plugins/sharing/grant-watch.js";
import { openStore } from "../core/store/open.js";
import { parseListen } from "../plugins/sharing/server.js";
import { roleNeeded, roleTable } from "../plugins/sharing/roles.js";
import { REMOTE_PLUGIN_COMMANDS, remotePluginCommand } from "../plugins/sharing/command-scope.js";
import { loadConfig } from "../core/config/load.js";
import { locateProject } from "../core/config/locate.js";
import { loadPlugins } from "../core/plugins.js";
import { pinnedParams, scopedListing, visiblePath } from "../plugins/sharing/scope.js";
import { readServeFile } from "../plugins/sharing/serve-file.js";
import { waitFor } from "./fixtures/agents/harness.js";
import { APEX_BIN, REPO_ROOT, cleanEnv, tempDir } from "./helpers/cli.js";

// The control socket's limit lowered from 256 MiB to 64 MiB (APEX_RPC_MAX_LINE_BYTES, read as
// protocol.js loads: hoisted above the imports), so that the reply and the event crossing it are
// a quarter as large: the same code paths, seconds and 200 MiB of memory less. The 40 MB event
// read whole below stays under it.
vi.hoisted(() => {
  process.env.APEX_RPC_MAX_LINE_BYTES = String(64 * 1024 * 1024);
});
afterAll(() => {
  delete process.env.APEX_RPC_MAX_LINE_BYTES;
});

const SID = "3f2a9c1e-7d41-4b0e-9a55-0c1d2e3f4a5b";

describe("remote targets", () => {
  it.each([
    [`127.0.0.1:7433/${SID}`, "http://127.0.0.1:7433", "127.0.0.1:7433"],
    [`localhost/${SID}`, "http://localhost:7433", "localhost:7433"],
    [`build-box:${SID}`, "https://build-box:7433", "build-box:7433"],
    [`build-box:9000/${SID}`, "https://build-box:9000", "build-box:9000"],
    [`http://build-box:9000/${SID}`, "http://build-box:9000", "build-box:9000"],
    [`https://127.0.0.1:8443/${SID}/`, "https://127.0.0.1:8443", "127.0.0.1:8443"],
    [`[::1]:7000/${SID}`, "http://[::1]:7000", "[::1]:7000"],
  ])("%s → %s", (text, origin, host) => {
    const target = parseRemote(text);
    expect(target).toEqual({ origin, host, sessionId: SID.replace(/\/$/, "") });
    expect(remoteEndpoint(target)).toBe(`${origin}/api/sessions/${SID}`);
  });

  // The host as a URL parser writes it (the key a saved token is found by); the session as given, whose case is its own.
  it.each([
    ["Build-Box.Example:9000/Sess-1", "https://build-box.example:9000", "build-box.example:9000", "Sess-1"],
    ["HTTP://LOCALHOST:7000/Main", "http://localhost:7000", "localhost:7000", "Main"],
    ["LocalHost:Main", "http://localhost:7433", "localhost:7433", "Main"],
    ["[::FFFF:7F00:1]:7000/s", "https://[::ffff:7f00:1]:7000", "[::ffff:7f00:1]:7000", "s"],
  ])("%s → host %s, session as given", (text, origin, host, sessionId) => {
    expect(parseRemote(text)).toEqual({ origin, host, sessionId });
  });

  it("reads a credentials file with one host under two keys (an older APEX kept the host as typed) as one entry: the host's token saved last, each session's own", () => {
    const { dir, cleanup } = tempDir();
    const saved = { APEX_CREDENTIALS: process.env.APEX_CREDENTIALS, APEX_TOKEN: process.env.APEX_TOKEN };
    const token = (n: number) => `apx_${"0".repeat(15)}${n}_${"A".repeat(42)}${n}`;
    try {
      process.env.APEX_CREDENTIALS = join(dir, "credentials.json");
      delete process.env.APEX_TOKEN;
      const older = { token: token(1), saved_at: "2026-01-01T00:00:00.000Z", session: "s1", sessions: { s1: { token: token(1), saved_at: "2026-01-01T00:00:00.000Z" } } };
      const later = { token: token(2), saved_at: "2026-02-01T00:00:00.000Z" };
      writeFileSync(process.env.APEX_CREDENTIALS, JSON.stringify({ version: 1, hosts: { "Build-Box:7433": older, "build-box:7433": later } }), { mode: 0o600 });
      for (const host of ["build-box:7433", "BUILD-BOX:7433"]) {
        expect(tokenFor(host, "s1")).toBe(token(1));
        expect(tokenFor(host, "s2")).toBe(token(2));
        expect(tokenFor(host)).toBe(token(2));
      }
      // The host's last token was saved for no session in particular: not s1's, which the older entry named.
      expect(borrowedTokenSession("build-box:7433", "s2")).toBeUndefined();
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      cleanup();
    }
  });

  // A user part (`trusted@other`) would be read by URL as user info: the request would go to `other`.
  it.each(["build-box", "build-box:7433", "host:99999/s", "/only-a-session", "a b/c", "host/../etc", "trusted.example@other.example/s", "user@host:7433/s", "host#frag/s", "host?q/s", "1.2.3.4.5:7433/s"])("refuses %s with a usage error", (text) => {
    expect(() => parseRemote(text)).toThrowError(expect.objectContaining({ code: "APEX_E_USAGE" }));
  });

  it("reads --listen addresses", () => {
    expect(parseListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseListen("[::1]:7433")).toEqual({ host: "::1", port: 7433 });
    expect(parseListen(":8080")).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(() => parseListen("host:123456")).toThrowError(/Cannot read --listen/);
  });
});

describe("user names", () => {
  it("takes logins and e-mail addresses, not spaces, slashes or control characters (a name is printed in terminals and logs)", () => {
    for (const name of ["alice", "alice@example.com", "zoë.müller", "x".repeat(100)]) expect(checkUser(name)).toBe(name);
    for (const name of ["", "a b", "a/b", "a\\b", "evil\u001b[2J\u001b[31mowner", "bell\u0007", "del\u007f", "nl\u0085", "x".repeat(101)]) {
      expect(() => checkUser(name), JSON.stringify(name)).toThrowError(expect.objectContaining({ code: "APEX_E_USAGE" }));
    }
  });
});

describe("roles", () => {
  it("orders viewer < operator < owner and maps methods to the role they need", () => {
    expect(roleAllows("owner", "operator")).toBe(true);
    expect(roleAllows("operator", "owner")).toBe(false);
    expect(roleNeeded("session.status", {})).toBe("viewer");
    expect(roleNeeded("session.pause", {})).toBe("operator");
    expect(roleNeeded("session.stop", {})).toBe("owner");
    expect(roleNeeded("memory.delete", {})).toBe("owner");
    // A plugin command needs its rule's role (plugins/sharing/command-scope.ts); checkpoint create is the checkpoint.create method.
    expect(roleNeeded("checkpoint.create", {})).toBe("operator");
    expect(roleNeeded("plugin.command", { name: "checkpoint create" })).toBe("owner");
    expect(roleNeeded("plugin.command", { name: "session compress" })).toBe("owner");
    expect(roleNeeded("plugin.command", { name: "git" })).toBe("owner");
    // Printed output cannot be checked for another session's checkpoints: reads go through checkpoint.* methods.
    expect(roleNeeded("plugin.command", { name: "checkpoint show" })).toBe("owner");
  });

  it("names what the owner alone may do: share, merge, stop", () => {
    const table = roleTable();
    for (const method of ["share.create", "share.revoke", "share.list", "session.merge", "session.stop"]) expect(table.get(method), method).toBe("owner");
    expect(roleNeeded("session.merge", {})).toBe("owner");
    expect(roleNeeded("plugin.command", { name: "session merge" })).toBe("owner");
    // Nothing an operator may do merges or shares.
    expect([...table].filter(([, role]) => role !== "owner").map(([method]) => method).filter((method) => /merge|share/.test(method))).toEqual([]);
  });
});

describe("token checks on a real store", () => {
  let cleanup: (() => void) | undefined;
  afterEach(() => cleanup?.());

  it("accepts the token whose hash is stored, and refuses unknown, altered and expired ones alike", async () => {
    const temp = tempDir();
    cleanup = temp.cleanup;
    const store = await openStore(temp.dir, { actor: "user:test" });
    const token = `apx_0123456789abcdef_${"b".repeat(43)}`;
    const record = (expires: string | null) => ({
      token_id: "0123456789abcdef",
      user: "alice",
      role: "operator",
      token_sha256: createHash("sha256").update(token).digest("hex"),
      created_at: new Date().toISOString(),
      created_by: "user:test",
      expires_at: expires,
      last_used_at: null,
    });
    await store.set(grantPath(SID, "0123456789abcdef"), record(null));
    expect(authenticate(store, SID, token)).toMatchObject({ user: "alice", role: "operator", token_id: "0123456789abcdef" });
    for (const bad of [`apx_0123456789abcdef_${"c".repeat(43)}`, `apx_fedcba9876543210_${"b".repeat(43)}`, "", 42, token.slice(0, -1)]) {
      expect(() => authenticate(store, SID, bad)).toThrowError(expect.objectContaining({ code: "APEX_E_UNAUTHORIZED" }));
    }
    expect(() => authenticate(store, "other-session", token)).toThrowError(expect.objectContaining({ code: "APEX_E_UNAUTHORIZED" }));
    await store.set(grantPath(SID, "0123456789abcdef"), record(new Date(Date.now() - 1000).toISOString()));
    expect(() => authenticate(store, SID, token)).toThrowError(/expired/);
    await store.close();
  });
});

describe("grants made with grants", () => {
  let cleanup: (() => void) | undefined;
  afterEach(() => cleanup?.());

  const tokenOf = (id: string) => `apx_${id}_${"t".repeat(43)}`;
  const grant = (id: string, user: string, via: string | null, expires: string | null = null): GrantRecord => ({
    token_id: id,
    user,
    role: "owner",
    token_sha256: createHash("sha256").update(tokenOf(id)).digest("hex"),
    created_at: new Date().toISOString(),
    created_by: "user:test",
    expires_at: expires,
    last_used_at: null,
    via_token_id: via,
  });

  it("authenticate a grant only while every grant in the chain that made it stands (not removed, not expired, no loop)", async () => {
    const temp = tempDir();
    cleanup = temp.cleanup;
    const store = await openStore(temp.dir, { actor: "user:test" });
    const [root, child, grandchild] = ["1111111111111111", "2222222222222222", "3333333333333333"];
    await store.set(grantPath(SID, root), grant(root, "root", null) as never);
    await store.set(grantPath(SID, child), grant(child, "child", root) as never);
    await store.set(grantPath(SID, grandchild), grant(grandchild, "grandchild", child) as never);
    expect(authenticate(store, SID, tokenOf(grandchild)).user).toBe("grandchild");
    // The middle grant removed by hand (not through share.revoke): what it made stops working.
    await store.delete(grantPath(SID, child));
    expect(() => authenticate(store, SID, tokenOf(grandchild))).toThrowError(expect.objectContaining({ code: "APEX_E_UNAUTHORIZED", message: expect.stringContaining("revoked or has expired") }));
    expect(authenticate(store, SID, tokenOf(root)).user).toBe("root");
    // An expired maker.
    await store.set(grantPath(SID, child), grant(child, "child", root, new Date(Date.now() - 1000).toISOString()) as never);
    expect(() => authenticate(store, SID, tokenOf(grandchild))).toThrowError(expect.objectContaining({ code: "APEX_E_UNAUTHORIZED" }));
    // A loop a hand-edited store could hold ends in a refusal, not a hang.
    await store.set(grantPath(SID, child), grant(child, "child", grandchild) as never);
    expect(() => authenticate(store, SID, tokenOf(grandchild))).toThrowError(expect.objectContaining({ code: "APEX_E_UNAUTHORIZED" }));
    await store.close();
  });

  it("finds every grant made, directly or in turn, with the revoked ones, and no other", () => {
    const all = [grant("a", "a", null), grant("b", "b", "a"), grant("c", "c", "b"), grant("d", "d", null), grant("e", "e", "d"), grant("f", "f", "c")];
    expect(madeWith(all, [all[0]!]).map((g) => g.user).sort()).toEqual(["b", "c", "f"]);
    expect(madeWith(all, [all[3]!]).map((g) => g.user)).toEqual(["e"]);
    expect(madeWith(all, [all[5]!])).toEqual([]);
  });

  it("takes an older grant without via_token_id as made by its creator's owner grant that stood when it was made, and in turn", () => {
    const at = (minute: number) => `2026-01-01T00:${String(minute).padStart(2, "0")}:00.000Z`;
    const older = (id: string, user: string, by: string, minute: number): GrantRecord => {
      const { via_token_id: _via, ...rest } = grant(id, user, null);
      return { ...rest, created_by: `user:${by}`, created_at: at(minute), role: "owner" };
    };
    const olga = { ...grant("o", "olga", null), created_at: at(10), expires_at: at(30) };
    const all = [
      olga,
      older("b", "bob", "olga", 20), // made while olga's grant stood
      older("c", "carl", "bob", 25), // made by bob, in turn
      older("e", "early", "olga", 5), // before olga held a grant
      older("l", "late", "olga", 40), // after it had expired
      { ...grant("h", "host-made", null), created_by: "user:olga", created_at: at(20) }, // via_token_id null: made on the host
      { ...older("v", "viewer-made", "vic", 20) },
      { ...grant("vic", "vic", null), role: "viewer" as const, created_at: at(1) },
    ];
    expect(madeWith(all, [olga]).map((g) => g.user)).toEqual(["bob", "carl"]);
    // A viewer cannot share: nothing is taken as made with its grant.
    expect(madeWith(all, [all.at(-1)!])).toEqual([]);
  });
});

describe("failed logins per client address", () => {
  it("slow a client down after three failures, and forget it once its window has passed", () => {
    const throttle = new LoginThrottle({ windowMs: 60_000 });
    const delays = Array.from({ length: 10 }, (_, i) => throttle.failed("10.0.0.1", 1000 + i));
    expect(delays).toEqual([0, 0, 0, 100, 200, 400, 800, 1600, 3200, 5000]);
    // The last answer is delayed 5 s from its failure: until then the address waits.
    expect(throttle.waiting("10.0.0.1", 1009)).toBe(5000);
    expect(throttle.waiting("10.0.0.1", 1009 + 4000)).toBe(1000);
    expect(throttle.waiting("10.0.0.1", 1009 + 5000)).toBe(0);
    expect(throttle.waiting("10.0.0.9", 1009)).toBe(0);
    expect(throttle.failed("10.0.0.2", 2000)).toBe(0);
    for (let i = 0; i < 5; i++) throttle.failed("10.0.0.3", 3000);
    // Still counting within the window after its last failure, forgotten after it.
    expect(throttle.failed("10.0.0.3", 3000 + 59_000)).toBeGreaterThan(0);
    expect(throttle.failed("10.0.0.3", 3000 + 59_000 + 60_000)).toBe(0);
  });

  it("answers at most so many failures server-wide per window, from whichever addresses", () => {
    const throttle = new LoginThrottle({ globalMaxFailures: 5, globalWindowMs: 60_000 });
    for (let i = 0; i < 4; i++) throttle.failed(`10.0.1.${i}`, 1000 + i);
    expect(throttle.globalWaiting(1004)).toBe(0);
    throttle.failed("10.0.1.9", 1004);
    // The fifth: the rest of the window (it began at the first failure) is waited, by every address.
    expect(throttle.globalWaiting(1005)).toBe(59_995);
    expect(throttle.globalWaiting(61_000)).toBe(0);
    throttle.failed("10.0.2.1", 61_000);
    expect(throttle.globalWaiting(61_001)).toBe(0);
  });

  it("lets through a token accepted lately (its hash only), until it is refused or its time has passed", () => {
    const accepted = new AcceptedTokens(1000, 2);
    accepted.add("apx_a", 0);
    expect(accepted.has("apx_a", 999)).toBe(true);
    expect(accepted.has("apx_a", 1000)).toBe(false);
    expect(accepted.has("apx_b", 0)).toBe(false);
    accepted.add("apx_a", 0);
    accepted.delete("apx_a");
    expect(accepted.has("apx_a", 1)).toBe(false);
    for (const token of ["apx_1", "apx_2", "apx_3"]) accepted.add(token, 10);
    expect(["apx_1", "apx_2", "apx_3"].map((token) => accepted.has(token, 11))).toEqual([false, true, true]);
  });

  it("counts an IPv6 client by its /64 (one host holds them all), IPv4 and IPv4-mapped addresses as they are", () => {
    expect(clientKey("203.0.113.7")).toBe("203.0.113.7");
    expect(clientKey("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:0db8:0001:0002:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    const throttle = new LoginThrottle();
    for (let i = 0; i < 4; i++) throttle.failed(clientKey(`2001:db8:1:2::${i + 1}`), 1000);
    expect(throttle.failed(clientKey("2001:db8:1:2::99"), 1000)).toBeGreaterThan(0);
  });

  it("stays bounded however many addresses fail: expired ones go first, then the oldest; a client still counting keeps its count", () => {
    const throttle = new LoginThrottle({ maxClients: 1000, windowMs: 60_000 });
    for (let i = 0; i < 5; i++) throttle.failed("attacker", 0);
    let peak = 0;
    for (let i = 0; i < 100_000; i++) {
      throttle.failed(`2001:db8::${i.toString(16)}`, 10 + i / 1000);
      // The attacker keeps failing now and then: it stays at the end, never evicted.
      if (i % 500 === 0) throttle.failed("attacker", 10 + i / 1000);
      peak = Math.max(peak, throttle.size);
    }
    expect(peak).toBeLessThanOrEqual(1000);
    expect(throttle.failed("attacker", 200)).toBe(5000);
    // Long after, a single failure finds every old address expired: the record shrinks to one.
    throttle.failed("late", 10_000_000);
    expect(throttle.size).toBe(1);
  });
});

describe("connections apex serve holds at once", () => {
  it("are bounded in all and per client address (an IPv6 /64), loopback addresses by the total only; a place given back is taken again", () => {
    const limit = new ConnectionLimit(6, 2);
    const a = [limit.admit("203.0.113.7"), limit.admit("::ffff:203.0.113.7")];
    expect(a.every((release) => typeof release === "function")).toBe(true);
    expect(limit.admit("203.0.113.7")).toBe("address");
    // Another address of the same /64 is the same client; another /64 is not.
    const v6 = [limit.admit("2001:db8:1:2::1"), limit.admit("2001:db8:1:2::2")];
    expect(limit.admit("2001:db8:1:2::3")).toBe("address");
    // This host (a tunnel or proxy every user comes through): any number, up to the total.
    const local = [limit.admit("127.0.0.1"), limit.admit("::1")];
    expect(local.every((release) => typeof release === "function")).toBe(true);
    expect(limit.held()).toBe(6);
    expect(limit.admit("198.51.100.1")).toBe("server");
    expect(limit.admit("127.0.0.1")).toBe("server");
    // Given back (twice is once): a place again, for the address too.
    (a[0] as () => void)();
    (a[0] as () => void)();
    expect(limit.held()).toBe(5);
    expect(limit.held("203.0.113.7")).toBe(1);
    expect(typeof limit.admit("203.0.113.7")).toBe("function");
    expect(limit.admit("2001:db8:1:2::4")).toBe("server");
    for (const release of [...v6, ...local]) (release as () => void)();
    expect(limit.held()).toBe(2);
    expect(limit.held("2001:db8:1:2::9")).toBe(0);
  });
});

describe("tokens refused lately (apex serve answers them again without a lookup)", () => {
  it("are kept per session for a while, at most so many, the oldest going first", () => {
    const refused = new RefusedTokens(1000, 3);
    const s1 = SID;
    const s2 = SID.replace("3f2a", "4f2a");
    const token = (n: number) => `apx_${String(n).padStart(16, "0")}_${"r".repeat(43)}`;
    refused.add(s1, token(1), "not valid", 0);
    expect(refused.get(s1, token(1), 500)).toBe("not valid");
    // Another session's reference, another token: not refused from here.
    expect(refused.get(s2, token(1), 500)).toBeUndefined();
    expect(refused.get(s1, token(2), 500)).toBeUndefined();
    expect(refused.get(s1, token(1), 1000)).toBeUndefined();
    for (let n = 0; n < 10; n++) refused.add(s1, token(n), `no ${n}`, 2000 + n);
    expect(refused.size).toBe(3);
    expect([7, 8, 9].map((n) => refused.get(s1, token(n), 2010))).toEqual(["no 7", "no 8", "no 9"]);
    expect(refused.get(s1, token(6), 2010)).toBeUndefined();
  });

  it("by a name or an id prefix, only briefly (it may name another session soon), and by the session it named as by id", () => {
    const refused = new RefusedTokens(60_000, 100, 2000);
    const token = `apx_${"0".repeat(16)}_${"r".repeat(43)}`;
    refused.add("feature", token, "not valid", 0, SID);
    refused.add(SID.slice(0, 8), token, "not valid", 0);
    expect(refused.get("feature", token, 1999)).toBe("not valid");
    expect(refused.get(SID.slice(0, 8), token, 1999)).toBe("not valid");
    // Before, kept 60 s: a name or prefix that resolves to the token's session since stayed refused a minute.
    expect(refused.get("feature", token, 2000)).toBeUndefined();
    expect(refused.get(SID.slice(0, 8), token, 2000)).toBeUndefined();
    expect(refused.get(SID, token, 59_999)).toBe("not valid");
    // A reference that named nothing (kept as written) is no session: nothing kept by id for it.
    refused.add("nothing", token, "not valid", 0, "nothing");
    expect(refused.get("nothing", token, 2000)).toBeUndefined();
  });
});

describe("open streams' grants (apex serve re-checks them while the streams are open)", () => {
  it("are checked once per interval per session, all tokens together, and a refused token ends its own streams only", async () => {
    const calls: Array<{ session: string; tokens: string[] }> = [];
    const revoked = new Set<string>();
    const watch = new GrantWatch(async (session, tokens) => {
      calls.push({ session, tokens: [...tokens].sort() });
      return new Map(tokens.map((token) => [token, revoked.has(token) ? new Error(`${token} was revoked`) : undefined]));
    }, 40);
    const ended: string[] = [];
    const stops: Array<() => void> = [];
    // Ten streams of session A under two tokens, one of session B.
    for (let n = 0; n < 10; n++) stops.push(watch.add("A", n % 2 ? "t1" : "t2", (why) => ended.push(`A${n}: ${(why as Error).message}`)));
    stops.push(watch.add("B", "t3", (why) => ended.push(`B: ${(why as Error).message}`)));
    expect(watch.size).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 150));
    // Before, each stream checked its grant itself: 11 checks (11 store opens without a supervisor) per interval.
    const perSession = (session: string) => calls.filter((call) => call.session === session).length;
    expect(perSession("A")).toBeGreaterThanOrEqual(1);
    expect(perSession("A")).toBeLessThanOrEqual(4);
    expect(Math.abs(perSession("B") - perSession("A"))).toBeLessThanOrEqual(1);
    expect(calls.find((call) => call.session === "A")!.tokens).toEqual(["t1", "t2"]);
    expect(ended).toEqual([]);
    revoked.add("t1");
    for (let waited = 0; ended.length < 5 && waited < 2000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    expect([...new Set(ended)].sort()).toEqual([1, 3, 5, 7, 9].map((n) => `A${n}: t1 was revoked`));
    // Streams gone, their session's timer with them.
    for (const stop of stops) stop();
    expect(watch.size).toBe(0);
    const before = calls.length;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls.length).toBe(before);
    watch.close();
  });

  it("give each stream the error a check failed with, itself: the server's failure (a store that cannot be read), not a refusal made of its message", async () => {
    const damaged = Object.assign(new Error("The store file /srv/.apex/store.mdb is damaged"), { code: "APEX_E_STORE_DAMAGED" });
    const watch = new GrantWatch(async () => {
      throw damaged;
    }, 20);
    const ended: unknown[] = [];
    watch.add("A", "t1", (error) => ended.push(error));
    watch.add("A", "t2", (error) => ended.push(error));
    await waitFor("both streams ended", () => ended.length >= 2, 2000);
    watch.close();
    // Before, each got the message alone, which the stream sent as the token's refusal (APEX_E_UNAUTHORIZED).
    expect(ended[0]).toBe(damaged);
    expect(ended[1]).toBe(damaged);
  });
});

describe("open streams' grants when the store cannot be reached for a moment", () => {
  it("wait out a failure that passes (an unreachable store) for a few checks: a stream ends only if it lasts, and a refusal meanwhile still ends its own", async () => {
    const unreachable = Object.assign(new Error("The PostgreSQL server at db:5432 cannot be reached"), { code: "APEX_E_STORE_UNREACHABLE" });
    let down = 0;
    let calls = 0;
    const revoked = new Set<string>();
    const watch = new GrantWatch(async (_session, tokens) => {
      calls += 1;
      if (down > 0) {
        down -= 1;
        throw unreachable;
      }
      return new Map(tokens.map((token) => [token, revoked.has(token) ? new Error(`${token} was revoked`) : undefined]));
    }, 10);
    const ended: Array<[string, unknown]> = [];
    // (a stream that ends stops being watched, as the server's do)
    const stops = new Map<string, () => void>();
    for (const token of ["t1", "t2"]) stops.set(token, watch.add("A", token, (error) => (ended.push([token, error]), stops.get(token)!())));
    // A blip of a few checks: nothing ends (before, the first failed check ended both streams).
    down = TRANSIENT_CHECKS - 2;
    await waitFor("the store back", () => down === 0 && calls > TRANSIENT_CHECKS, 5000);
    await waitFor("a check after it", () => calls > TRANSIENT_CHECKS + 2, 5000);
    expect(ended).toEqual([]);
    // A refusal once it is back ends its own stream at once.
    revoked.add("t1");
    await waitFor("t1's stream ended", () => ended.length >= 1, 5000);
    expect(ended).toEqual([["t1", expect.objectContaining({ message: "t1 was revoked" })]]);
    // An outage that lasts ends the other, with the failure itself (the server's, said with a reference).
    down = 1000;
    await waitFor("t2's stream ended", () => ended.length >= 2, 5000);
    expect(ended[1]).toEqual(["t2", unreachable]);
    expect(calls).toBeGreaterThanOrEqual(TRANSIENT_CHECKS);
    watch.close();
  });
});

describe("a grant's reach", () => {
  it("pins every call to the grant's session and hides other sessions' records, the project-wide records and all grants", () => {
    expect(pinnedParams(SID, { session: "other", glob: "/**" })).toEqual({ session: SID, glob: "/**" });
    expect(pinnedParams(SID, { session_id: "other" })).toEqual({ session: SID, session_id: SID });
    expect(pinnedParams(SID, { source: "feature", destination: "main" })).toEqual({ session: SID, source: "feature", destination: SID });
    expect(pinnedParams(SID, { name: "checkpoint create", options: { session: "other" } })).toEqual({ session: SID, name: "checkpoint create", options: { session: SID } });
    expect(visiblePath(SID, "/notes/a")).toBe(true);
    expect(visiblePath(SID, "/sessions/current")).toBe(false);
    expect(visiblePath(SID, "/projects/config")).toBe(false);
    expect(visiblePath(SID, `/sessions/${SID}/tasks/t-0001`)).toBe(true);
    expect(visiblePath(SID, `/sessions/history/${SID}`)).toBe(true);
    expect(visiblePath(SID, `/sessions/${SID}/grants/0123456789abcdef`)).toBe(false);
    expect(visiblePath(SID, "/sessions/other/tasks/t-0001")).toBe(false);
    expect(visiblePath(SID, "/sessions/history/other")).toBe(false);
  });

  it("lists only the grant's session and its ancestry, and in the tree only the checkpoints it descends from", () => {
    const record = (id: string) => ({ session_id: id, status: "stopped", initial_task: `task of ${id}` });
    const ancestry = new Map([["feature", Number.MAX_SAFE_INTEGER], ["main", 2]]);
    expect(scopedListing("session.list", [record("feature"), record("main"), record("sibling"), record("other")], ancestry)).toEqual([record("feature"), record("main")]);
    expect(scopedListing("session.history", [record("other")], ancestry)).toEqual([]);
    const node = (id: string, session: string, sequence: number, parents: string[], head = false) => ({ id, session_id: session, sequence, parents, head });
    const tree = {
      sessions: [
        { session_id: "main", parent: null, latest: "m3" },
        { session_id: "feature", parent: { session_id: "main" }, latest: "f1" },
        { session_id: "sibling", parent: { session_id: "main" }, latest: "s1" },
      ],
      nodes: [node("f1", "feature", 1, ["m2"], true), node("s1", "sibling", 1, ["m2"], true), node("m3", "main", 3, ["m2", "s1"], true), node("m2", "main", 2, ["m1"]), node("m1", "main", 1, [])],
    };
    expect(scopedListing("session.tree", tree, ancestry)).toEqual({
      sessions: [
        { session_id: "main", parent: null, latest: null },
        { session_id: "feature", parent: { session_id: "main" }, latest: "f1" },
      ],
      nodes: [node("f1", "feature", 1, ["m2"], true), node("m2", "main", 2, ["m1"]), node("m1", "main", 1, [])],
    });
  });

  it("names in a deleted branch point's node only the branches the grant sees, and says what those record", () => {
    const ancestry = new Map([["feature", Number.MAX_SAFE_INTEGER], ["main", 2]]);
    const deleted = { id: "m2", session_id: "main", sequence: 2, parents: [], trigger: "deleted", deleted: "recorded by some of its branches", branched_by: ["feature", "sibling"], recorded_by: ["sibling"] };
    const tree = { sessions: [{ session_id: "main", parent: null, latest: null }], nodes: [deleted] };
    expect((scopedListing("session.tree", tree, ancestry) as { nodes: unknown[] }).nodes).toEqual([{ ...deleted, deleted: "not recorded", branched_by: ["feature"], recorded_by: [] }]);
  });
});

describe("plugin commands forwarded through apex serve (command-scope.ts)", () => {
  it("has a rule for every command the built-in plugins register", async () => {
    const { dir, cleanup } = tempDir("apex-command-scope-");
    try {
      const names = ["checkpoint", "retention", "git", "compression", "sharing", "metrics", "history", "archive"];
      writeFileSync(join(dir, "apex.config.yaml"), `plugins:\n${names.map((name) => `  ${name}: {}`).join("\n")}\n`);
      const config = await loadConfig(locateProject({ cwd: dir, env: {} }), { env: {}, cwd: dir });
      const engine = await loadPlugins(config, { warn: () => {} });
      const registered = engine.commands.map(({ spec }) => spec.name);
      expect(registered.length).toBeGreaterThan(10);
      expect(registered.filter((name) => !REMOTE_PLUGIN_COMMANDS.has(name))).toEqual([]);
    } finally {
      cleanup();
    }
  });

  const sid = "11111111-2222-3333-4444-555555555555";
  const lookup = (live: boolean) => ({ resolve: async (ref: string) => (sid.startsWith(ref) ? sid : ref === "other" ? "99999999-0000" : undefined), live: () => live });
  const code = (promise: Promise<unknown>) => promise.then(() => "ok", (error: { code?: string }) => error.code);

  it("pins a session argument, keeps only the listed options, refuses the rest", async () => {
    expect(await remotePluginCommand(sid, { name: "session compress", args: [], options: { after: "2", session: "other" } }, lookup(true))).toEqual({ name: "session compress", args: [sid], options: { after: "2" } });
    expect(await remotePluginCommand(sid, { name: "session report", args: [sid.slice(0, 8)], options: { json: true } }, lookup(true))).toEqual({ name: "session report", args: [sid], options: { json: true } });
    for (const ref of ["other", "nothing-like-it", "current"]) expect(await code(remotePluginCommand(sid, { name: "session compress", args: [ref] }, lookup(true))), ref).toBe("APEX_E_FORBIDDEN");
    expect(await code(remotePluginCommand(sid, { name: "session report", args: [], options: { output: "/tmp/x" } }, lookup(true)))).toBe("APEX_E_FORBIDDEN");
    expect(await code(remotePluginCommand(sid, { name: "session report", args: [sid, "extra"] }, lookup(true)))).toBe("APEX_E_BAD_INPUT");
    expect(await code(remotePluginCommand(sid, { name: "session metrics" }, lookup(false)))).toBe("APEX_E_SESSION_STATE");
    expect(await remotePluginCommand(sid, { name: "session metrics", options: { json: true } }, lookup(true))).toEqual({ name: "session metrics", args: [], options: { json: true } });
    for (const name of ["backup", "session export", "git", "store migrate", "a third-party command", ""]) {
      expect(await code(remotePluginCommand(sid, { name, args: [] }, lookup(true))), name).toBe("APEX_E_FORBIDDEN");
    }
  });
});

describe("a remote call against a server that stalls (real HTTP on loopback)", () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
  /** A server whose reply starts (200, JSON) and then goes on as `rest` says. */
  const stalling = async (rest: (response: ServerResponse) => void): Promise<string> => {
    const server = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.write('{"result": ');
      rest(response);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/sessions/${SID}`;
  };
  const call = async (endpoint: string, timeoutMs: number) => {
    const token = process.env.APEX_TOKEN;
    process.env.APEX_TOKEN = `apx_0123456789abcdef_${"A".repeat(43)}`;
    const started = Date.now();
    try {
      await callRemote(endpoint, "whoami", {}, timeoutMs);
      return { error: undefined, ms: Date.now() - started };
    } catch (error) {
      return { error: error as { code?: string; message: string }, ms: Date.now() - started };
    } finally {
      if (token === undefined) delete process.env.APEX_TOKEN;
      else process.env.APEX_TOKEN = token;
    }
  };

  it("gives up after its timeout with APEX_E_TIMEOUT, whether the server trickles or falls silent after the reply began", async () => {
    const trickle = await stalling((response) => {
      const timer = setInterval(() => response.write(" "), 100);
      response.on("close", () => clearInterval(timer));
    });
    const silent = await stalling(() => {});
    for (const endpoint of [trickle, silent]) {
      const { error, ms } = await call(endpoint, 1000);
      expect(error?.code, error?.message).toBe("APEX_E_TIMEOUT");
      expect(ms).toBeLessThan(10_000);
    }
  });

  it("a caller stopped (Ctrl-Z, SIGSTOP) or not run past its timeout takes the answer that came meanwhile, not APEX_E_TIMEOUT", async () => {
    // The server stops the caller as its request comes, answers 200 ms later and continues it 2.5 s later (its timeout is 1 s).
    let child: ChildProcess | undefined;
    const endpoint = await stalling((response) => {
      process.kill(child!.pid!, "SIGSTOP");
      setTimeout(() => response.end('"answered"}'), 200);
      setTimeout(() => process.kill(child!.pid!, "SIGCONT"), 2500);
    });
    const script = `import { callRemote } from ${JSON.stringify(pathToFileURL(join(REPO_ROOT, "dist/plugins/sharing/http-client.js")).href)};
      console.log(JSON.stringify(await callRemote(${JSON.stringify(endpoint)}, "whoami", {}, 1000).catch((error) => error.code)));`;
    child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"], env: { ...cleanEnv(), APEX_TOKEN: `apx_0123456789abcdef_${"A".repeat(43)}` } });
    let out = "";
    child.stdout!.on("data", (chunk) => (out += String(chunk)));
    const [code] = await once(child, "exit");
    expect(code).toBe(0);
    // It said "APEX_E_TIMEOUT": its timers ran before the answer waiting on the socket was read.
    expect(out.trim()).toBe('"answered"');
  });

  it("names the other scheme when the server answers in it (https to plain HTTP, http cut off by TLS)", async () => {
    const plain = await stalling((response) => response.end("{}"));
    const { error } = await call(plain.replace("http://", "https://"), 5000);
    expect(error).toMatchObject({ code: "APEX_E_RPC", hint: expect.stringContaining(`not answer in TLS (plain HTTP? an \`apex serve\` without --tls-cert): write ${new URL(plain).origin}/SESSION`) });
  });

  it("says an event stream broke (APEX_E_RPC) when the server drops the connection", async () => {
    const server = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write('event: events.subscribe\ndata: {"seq": 1}\n\n');
      setTimeout(() => response.socket?.destroy(), 100);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const token = process.env.APEX_TOKEN;
    process.env.APEX_TOKEN = `apx_0123456789abcdef_${"A".repeat(43)}`;
    try {
      const seen: unknown[] = [];
      const subscription = subscribeRemote(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/sessions/${SID}`, "events.subscribe", {}, (event) => seen.push(event));
      await expect(subscription.done).rejects.toMatchObject({ code: "APEX_E_RPC" });
      expect(seen).toEqual([{ seq: 1 }]);
    } finally {
      if (token === undefined) delete process.env.APEX_TOKEN;
      else process.env.APEX_TOKEN = token;
    }
  });

  /** subscribeRemote against a server that answers with `write`; the events seen and how `done` settled. */
  const subscribeTo = async (write: (response: ServerResponse) => void) => {
    const server = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      write(response);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const token = process.env.APEX_TOKEN;
    process.env.APEX_TOKEN = `apx_0123456789abcdef_${"A".repeat(43)}`;
    try {
      const seen: unknown[] = [];
      const subscription = subscribeRemote(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/sessions/${SID}`, "memory.watch", {}, (event) => seen.push(event));
      const started = performance.now();
      const outcome = await subscription.done.then(
        (value) => ({ value, error: undefined }),
        (error: { code?: string; message: string }) => ({ value: undefined, error }),
      );
      return { seen, ms: performance.now() - started, ...outcome };
    } finally {
      if (token === undefined) delete process.env.APEX_TOKEN;
      else process.env.APEX_TOKEN = token;
    }
  };

  it("reads events whatever the chunks, a 40 MB one and blank lines split across writes, in linear time", async () => {
    const big = "v".repeat(40 * 1024 * 1024);
    const { seen, error, ms } = await subscribeTo((response) => {
      const text = `event: memory.watch\ndata: {"n": 1}\n\nevent: memory.watch\ndata: {"n": 2, "value": "${big}"}\n\nevent: memory.watch\ndata: {"n": 3}\n`;
      // 64 KiB writes, then the last blank line in two halves.
      for (let at = 0; at < text.length; at += 65536) response.write(text.slice(at, at + 65536));
      setTimeout(() => response.end('\nevent: end\ndata: {"reason": "done"}\n\n'), 50);
    });
    expect(error, error?.message).toBeUndefined();
    expect(seen.map((event) => (event as { n: number }).n)).toEqual([1, 2, 3]);
    expect((seen[1] as { value: string }).value.length).toBe(big.length);
    // Searching the whole pending text again for each chunk took ~10 s here.
    expect(ms).toBeLessThan(5000);
  });

  it("says whether a write was done is not known when the server closes the connection after taking the request", async () => {
    // The server reads the whole request, then goes (killed, restarted): not "Cannot reach", which says nothing was done.
    const server = createServer((request) => {
      request.resume();
      request.on("end", () => setTimeout(() => request.socket.destroy(), 20));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/sessions/${SID}`;
    const token = process.env.APEX_TOKEN;
    process.env.APEX_TOKEN = `apx_0123456789abcdef_${"A".repeat(43)}`;
    try {
      const write = await callRemote(endpoint, "task.add", { title: "x" }, 5000).catch((error: unknown) => error as { code: string; message: string; hint: string });
      expect(write).toMatchObject({ code: "APEX_E_RPC", message: expect.stringMatching(/closed the connection before answering task\.add \(ECONNRESET\); whether it was done is not known\.$/) });
      expect((write as { hint: string }).hint).toContain("Check what task.add would have changed");
      const read = await callRemote(endpoint, "task.list", {}, 5000).catch((error: unknown) => error as { message: string });
      expect((read as { message: string }).message).toMatch(/closed the connection before answering task\.list \(ECONNRESET\)\.$/);
    } finally {
      if (token === undefined) delete process.env.APEX_TOKEN;
      else process.env.APEX_TOKEN = token;
    }
  });

  it("says the connection broke (APEX_E_RPC) when the server drops it half-way through the reply", async () => {
    const dropping = await stalling((response) => setTimeout(() => response.socket?.destroy(), 100));
    const { error } = await call(dropping, 10_000);
    expect(error?.code, error?.message).toBe("APEX_E_RPC");
  });
});

describe("a remote call to a server whose certificate this client does not trust (real HTTPS on loopback)", () => {
  it("says the server answered with such a certificate, why, and what to do: not that it cannot be reached (it was)", async () => {
    const { dir, cleanup } = tempDir("apex-untrusted-");
    const { execFile, execFileSync } = await import("node:child_process");
    // The CLI runs beside this process's server (a synchronous spawn would stop it from answering).
    const apex = (args: string[], env: Record<string, string>) =>
      new Promise<{ status: number; stderr: string }>((resolve) => execFile(process.execPath, [APEX_BIN, ...args], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1", ...env } }, (error, _stdout, stderr) => resolve({ status: error ? Number(error.code) : 0, stderr })));
    const { readFileSync } = await import("node:fs");
    const { createServer: createHttpsServer } = await import("node:https");
    const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    const server = createHttpsServer({ cert: readFileSync(cert), key: readFileSync(key) }, (_request, response) => response.end("{}"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      // Self-signed, not trusted here: it said "Cannot reach …: DEPTH_ZERO_SELF_SIGNED_CERT", asking whether `apex serve` ran there.
      const selfSigned = await apex(["--remote", `https://127.0.0.1:${port}/abcdefgh`, "status", "--json"], { APEX_TOKEN: `apx_0123456789abcdef_${"A".repeat(43)}` });
      expect(selfSigned.status, selfSigned.stderr).toBe(1);
      expect(JSON.parse(selfSigned.stderr).error).toMatchObject({
        code: "APEX_E_RPC",
        message: `https://127.0.0.1:${port} answered with a certificate this client does not trust: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT).`,
        hint: expect.stringContaining("NODE_EXTRA_CA_CERTS=cert.pem"),
        details: { tls: "DEPTH_ZERO_SELF_SIGNED_CERT" },
      });
      // Trusted, but reached by a name it does not hold.
      const otherName = await apex(["--remote", `https://localhost:${port}/abcdefgh`, "status", "--json"], { APEX_TOKEN: `apx_0123456789abcdef_${"A".repeat(43)}`, NODE_EXTRA_CA_CERTS: cert });
      expect(otherName.status, otherName.stderr).toBe(1);
      const error = JSON.parse(otherName.stderr).error;
      expect(error).toMatchObject({ code: "APEX_E_RPC", details: { tls: "ERR_TLS_CERT_ALTNAME_INVALID" }, hint: "Connect by a name or address the certificate holds, or serve one made for localhost (its subjectAltName)." });
      expect(error.message).toMatch(new RegExp(`^https://localhost:${port} answered with a certificate this client does not trust: .*localhost`));
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      cleanup();
    }
  });
});

describe("a remote call against a server that is not APEX's (real HTTP on loopback)", () => {
  const servers: Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
  const serving = async (handler: (response: ServerResponse) => void): Promise<string> => {
    const server = createServer((_request, response) => handler(response));
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/sessions/${SID}`;
  };
  const withToken = async <T>(fn: () => Promise<T>): Promise<T> => {
    const token = process.env.APEX_TOKEN;
    process.env.APEX_TOKEN = `apx_0123456789abcdef_${"A".repeat(43)}`;
    try {
      return await fn();
    } finally {
      if (token === undefined) delete process.env.APEX_TOKEN;
      else process.env.APEX_TOKEN = token;
    }
  };

  it("takes only APEX's own error codes (with their exit codes) and only text as a message", async () => {
    for (const [error, code, exitCode] of [
      [{ code: "APEX_E_CONFLICT", message: "busy" }, "APEX_E_CONFLICT", 4],
      [{ code: "constructor", message: "x" }, "APEX_E_RPC", 1],
      [{ code: "toString", message: { not: "text" }, hint: 42 }, "APEX_E_RPC", 1],
      [{ code: "__proto__", message: "x" }, "APEX_E_RPC", 1],
    ] as const) {
      const endpoint = await serving((response) => {
        response.writeHead(409, { "content-type": "application/json" });
        response.end(JSON.stringify({ error }));
      });
      const failed = await withToken(() => callRemote(endpoint, "whoami", {}, 10_000).then(() => undefined, (e: unknown) => e as { code: string; exitCode: unknown; message: unknown; hint: unknown }));
      expect(failed?.code).toBe(code);
      expect(failed?.exitCode).toBe(exitCode);
      expect(typeof failed?.message).toBe("string");
      expect(failed?.hint === undefined || typeof failed?.hint === "string").toBe(true);
    }
  });

  it("stops reading a reply or a stream event larger than the control socket takes (256 MiB; 64 MiB here), with APEX_E_RPC", async () => {
    const chunk = "x".repeat(1024 * 1024);
    const endless = (prefix: string, type: string) =>
      serving((response) => {
        response.writeHead(200, { "content-type": type });
        response.write(prefix);
        const more = () => {
          while (!response.destroyed && response.write(chunk));
          if (!response.destroyed) response.once("drain", more);
        };
        response.on("close", () => response.destroy());
        more();
      });
    const reply = await endless('{"result": "', "application/json");
    const failed = await withToken(() => callRemote(reply, "whoami", {}, 120_000).then(() => undefined, (e: unknown) => e as { code: string; message: string }));
    expect(failed?.code).toBe("APEX_E_RPC");
    expect(failed?.message).toContain("larger than 64 MiB");
    const stream = await endless("event: events.subscribe\ndata: ", "text/event-stream");
    const subscription = await withToken(async () => subscribeRemote(stream, "events.subscribe", {}, () => undefined));
    await expect(subscription.done).rejects.toMatchObject({ code: "APEX_E_RPC", message: expect.stringContaining("larger than 64 MiB") });
  }, 120_000);
});

describe("serve.json while a server records itself (real processes)", () => {
  it("is never seen empty or half-written by a reader: `session share` would name the default address instead", async () => {
    const { dir, cleanup } = tempDir("apex-serve-file-");
    try {
      const module = pathToFileURL(join(REPO_ROOT, "dist/plugins/sharing/serve-file.js")).href;
      // A server process recording itself over and over (as servers starting and stopping do), for a second.
      const writer = spawn(process.execPath, ["--input-type=module", "-e", `const { writeServeFile } = await import(${JSON.stringify(module)}); const end = Date.now() + 1000; let n = 0; while (Date.now() < end) writeServeFile(${JSON.stringify(dir)}, "http://127.0.0.1:" + (10000 + (n++ % 1000))); process.stdout.write("done");`], { stdio: ["ignore", "pipe", "inherit"] });
      const finished = new Promise<string>((resolve) => {
        let out = "";
        writer.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
        writer.on("close", () => resolve(out));
      });
      await waitFor("the first record", () => existsSync(join(dir, "serve.json")), 30_000);
      let reads = 0;
      let unreadable = 0;
      for (const end = Date.now() + 800; Date.now() < end; reads++) if (readServeFile(dir) === undefined) unreadable++;
      expect(await finished).toBe("done");
      expect(reads).toBeGreaterThan(100);
      expect(unreadable, `${unreadable} of ${reads} reads found no record`).toBe(0);
      expect(readServeFile(dir)?.record.url).toMatch(/^http:\/\/127\.0\.0\.1:1\d{4}$/);
    } finally {
      cleanup();
    }
  });

  it("records every server that starts at once: each in the record or its `before`, none lost", async () => {
    const { dir, cleanup } = tempDir("apex-serve-file-");
    const servers: ReturnType<typeof spawn>[] = [];
    try {
      const module = pathToFileURL(join(REPO_ROOT, "dist/plugins/sharing/serve-file.js")).href;
      const go = join(dir, "go");
      // Six servers, each recording itself the moment `go` appears, then running on.
      for (let i = 0; i < 6; i++) {
        const script = `const { writeServeFile } = await import(${JSON.stringify(module)}); const { existsSync } = await import("node:fs"); process.stdout.write("waiting "); while (!existsSync(${JSON.stringify(go)})) await new Promise((r) => setTimeout(r, 1)); writeServeFile(${JSON.stringify(dir)}, "http://127.0.0.1:${20000 + i}"); process.stdout.write("recorded"); setInterval(() => {}, 1000);`;
        servers.push(spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] }));
      }
      const said = servers.map((server) => {
        let text = "";
        server.stdout!.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        return () => text;
      });
      // `go` once all six wait for it (a fixed 0.5 s let a loaded machine's slow starters record one after another).
      await waitFor("the six servers to wait", () => said.every((text) => text().includes("waiting")), 30_000);
      writeFileSync(go, "");
      await waitFor("the six servers to record themselves", () => said.every((text) => text().includes("recorded")), 30_000);
      // Before, they read the same record and each wrote over it: most were lost, and when the last stopped, invites named none.
      const { record } = readServeFile(dir)!;
      expect([record.url, ...(record.before ?? []).map((server) => server.url)].sort()).toEqual(Array.from({ length: 6 }, (_, i) => `http://127.0.0.1:${20000 + i}`));
      expect(existsSync(join(dir, "serve.json.lock"))).toBe(false);
    } finally {
      for (const server of servers) server.kill("SIGKILL");
      cleanup();
    }
  });
});
