// Plugin commands forwarded through `apex serve` (`plugin.command`) by a grant of one session:
// each class of plugin/sharing/command-scope.ts against a real server on loopback (a session
// argument pinned to the grant's session; commands on the server's files or the whole project
// refused; a command acting on the running session served only while it runs), and
// `apex --remote … session tree|merge` with the same output as locally.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";
import { ok, remote, rpc, serve, share } from "./support/serve.js";

const PLUGINS = "plugins:\n  checkpoint: {}\n  compression: {}\n  history: {}\n  metrics: {}\n  retention: {}\n  archive: {}\n";
const CONFIG = shellAgents({ alpha: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", PLUGINS);

let project: Project | undefined;
let scratch: string | undefined;
const stops: Array<() => Promise<unknown>> = [];

afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  project?.cleanup();
  project = undefined;
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const command = (url: string, sid: string, token: string, name: string, args: unknown[] = [], options: Record<string, unknown> = {}) =>
  rpc(url, sid, "plugin.command", token, { name, args, options });

/** main (ended) with a branch `feature` of it, which runs; `other`, unrelated and ended. */
let p: Project;
let url: string;
let main: string, feature: string, other: string;
/** Tokens: owner of feature, owner of other (a user without a grant of feature). */
let olga: string, oscar: string;

beforeAll(async () => {
  project = new Project(CONFIG);
  p = project;
  scratch = mkdtempSync(join(tmpdir(), "apex-serve-commands-"));
  other = p.start(["--task", "other: an unrelated secret"]).session_id;
  ok(p.apex(["memory", "set", "/notes/other", JSON.stringify("unrelated ".repeat(2000))]));
  ok(p.apex(["checkpoint", "create", "other one"]));
  ok(p.apex(["checkpoint", "create", "other two"]));
  ok(p.apex(["stop"]));
  main = p.start(["--task", "main: the plan"]).session_id;
  ok(p.apex(["memory", "set", "/notes/main", JSON.stringify("planned ".repeat(2000))]));
  ok(p.apex(["checkpoint", "create", "planned"]));
  ok(p.apex(["stop"]));
  ok(p.apex(["session", "branch", "latest", "feature", "--session", main]));
  feature = p.start(["--continue", "feature"]).session_id;
  // The sessions ran in one tree, so feature has the other's notes too: without them, it has something to merge.
  ok(p.apex(["memory", "delete", "/notes/other"]));
  ok(p.apex(["memory", "set", "/notes/feature", JSON.stringify("featured ".repeat(2000))]));
  ok(p.apex(["checkpoint", "create", "featured"]));
  ok(p.apex(["checkpoint", "create", "featured again"]));
  url = await serve(p, stops);
  olga = share(p, feature, "olga", "owner").token;
  oscar = share(p, other, "oscar", "owner").token;
}, 240_000);

describe("apex serve: plugin commands forwarded by a grant of one session", () => {
  it("pins a command's session argument to the grant's session and refuses another session's, like an unknown one, writing nothing", async () => {
    // What compression would do to the other session's data, asked locally (a dry run writes nothing).
    const plan = () => JSON.parse(ok(p.apex(["session", "compress", other, "--after", "0", "--dry-run", "--json"]))).values;
    const before = plan();
    expect(before.compressed).toBeGreaterThan(0);
    for (const ref of [other, other.slice(0, 8), "no-such-session"]) {
      const refused = await command(url, feature, olga, "session compress", [ref], { after: "0" });
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      expect(refused.body.error.code).toBe("APEX_E_FORBIDDEN");
      expect(refused.body.error.message).toBe(`\`apex session compress\` acts only on session ${feature} through this grant, not on ${JSON.stringify(ref)}. Nothing was done.`);
      const report = await command(url, feature, olga, "session report", [ref], { format: "json" });
      expect(report.status).toBe(403);
      expect(JSON.stringify(report.body)).not.toContain("an unrelated secret");
    }
    expect(plan()).toEqual(before);

    // Without an argument: the grant's session (the command's own default is every session).
    const compressed = await command(url, feature, olga, "session compress", [], { after: "0", json: true });
    expect(compressed.status, JSON.stringify(compressed.body)).toBe(200);
    expect(JSON.parse(compressed.body.result.output).session_id).toBe(feature);
    expect(plan()).toEqual(before);
    // Named by a prefix of itself: the same session.
    const report = await command(url, feature, olga, "session report", [feature.slice(0, 8)], { json: true });
    expect(report.status, JSON.stringify(report.body)).toBe(200);
    expect(JSON.parse(report.body.result.output).session.session_id).toBe(feature);

    // An option naming a file on the server's disk is refused, and no file is written.
    const file = join(scratch!, "report.md");
    const written = await command(url, feature, olga, "session report", [], { output: file });
    expect(written.status).toBe(403);
    expect(written.body.error.message).toContain("--output");
    expect(existsSync(file)).toBe(false);
  });

  it("refuses commands on the server's files or the whole project, and commands it has no rule for", async () => {
    const backupDir = join(scratch!, "backup");
    const bundle = join(scratch!, "feature.apexbundle");
    const sessionsBefore = ok(p.apex(["session", "list", "--json"]));
    const cases: Array<[string, unknown[], Record<string, unknown>]> = [
      ["backup", [], { to: backupDir }],
      ["session export", [feature], { output: bundle }],
      ["session import", [bundle], {}],
      ["session archive", [], { olderThan: "0s" }],
      ["session unarchive", [other], {}],
      ["session cleanup", [], {}],
      ["session merge", [other, feature], {}],
      ["git", [["status"]], {}],
      ["hello", [], {}],
    ];
    for (const [name, args, options] of cases) {
      const refused = await command(url, feature, olga, name, args, options);
      expect(refused.status, `${name}: ${JSON.stringify(refused.body)}`).toBe(403);
      expect(refused.body.error.code).toBe("APEX_E_FORBIDDEN");
      expect(refused.body.error.message).toMatch(new RegExp(`^\`apex ${name}\` is not served remotely: `));
    }
    expect(existsSync(backupDir)).toBe(false);
    expect(existsSync(bundle)).toBe(false);
    expect(ok(p.apex(["session", "list", "--json"]))).toBe(sessionsBefore);
  });

  it("serves a command acting on the running session only while the grant's session runs", async () => {
    const live = await command(url, feature, olga, "session metrics", [], { json: true });
    expect(live.status, JSON.stringify(live.body)).toBe(200);
    expect(JSON.parse(live.body.result.output).session_id).toBe(feature);
    // No supervisor runs `other`: run by the server, the command would act on the session the server's directory is bound to.
    const ended = await command(url, other, oscar, "session metrics", [], { json: true });
    expect(ended.status, JSON.stringify(ended.body)).toBe(409);
    expect(ended.body.error.code).toBe("APEX_E_SESSION_STATE");
    expect(ended.body.error.message).toBe(`\`apex session metrics\` is served remotely only while session ${other}'s supervisor runs: it acts on the running session.`);
    expect(ended.body.error.hint).toBe(`The metrics last recorded: \`apex memory show /sessions/${other}/metrics\`.`);
    expect(JSON.stringify(ended.body)).not.toContain(feature);
  });
});

describe("apex --remote … session tree|merge", () => {
  it("draws the tree as locally, in text and --json (what the grant may see of it: here all of its ancestry)", async () => {
    const vera = share(p, feature, "vera", "viewer").token;
    const local = JSON.parse(ok(p.apex(["session", "tree", "--json"]))) as { sessions: Array<{ session_id: string }>; nodes: Array<{ session_id: string }> };
    const json = JSON.parse(ok(remote(p, url, feature, vera, ["session", "tree", "--json"])));
    // The grant sees feature and main, which it was branched from; not the unrelated session.
    const ancestry = new Set([feature, main]);
    expect(json).toEqual({ sessions: local.sessions.filter((s) => ancestry.has(s.session_id)), nodes: local.nodes.filter((n) => ancestry.has(n.session_id)) });
    const text = ok(remote(p, url, feature, vera, ["session", "tree"]));
    expect(text).toContain("[feature]");
    expect(text).toContain(main.slice(0, 8));
    expect(text).not.toContain(other.slice(0, 8));
    // Through a grant of the unrelated session, whose ancestry is itself: the same lines as locally, less the other sessions'.
    const localText = ok(p.apex(["session", "tree"])).split("\n");
    const otherText = ok(remote(p, url, other, oscar, ["session", "tree"])).split("\n");
    expect(otherText.length).toBeGreaterThan(1);
    for (const line of otherText) expect(localText).toContain(line);
  });

  it("lists checkpoints with KEPT BY as locally, for the running session (its supervisor answers) and an ended one (the server reads the store): the column was left out remotely", async () => {
    const listed = (args: string[]) => JSON.parse(ok(p.apex(args))) as { items: Array<{ name: string; kept_by: string[] | null }> };
    const live = listed(["checkpoint", "list", "--session", feature, "--json"]);
    expect(live.items.every((item) => Array.isArray(item.kept_by))).toBe(true);
    expect(JSON.parse(ok(remote(p, url, feature, olga, ["checkpoint", "list", "--json"])))).toEqual(live);
    const mia = share(p, main, "mia", "viewer").token;
    const ended = listed(["checkpoint", "list", "--session", main, "--json"]);
    expect(ended.items[0]!.kept_by).toContain(`branch ${feature}`);
    expect(JSON.parse(ok(remote(p, url, main, mia, ["checkpoint", "list", "--json"])))).toEqual(ended);
    // Text names the branch by its name, as locally (the server sends the names: the client cannot read them).
    const text = ok(remote(p, url, main, mia, ["checkpoint", "list"]));
    expect(text).toMatch(/KEPT BY/);
    expect(text).toMatch(/branch feature/);
    expect(text).not.toContain(feature);
    expect(text).toBe(ok(p.apex(["checkpoint", "list", "--session", main])));
    // The dashboard's polled list (no kept_by asked) runs no retention plan, for the running session and an ended one: each poll ran it.
    type Items = Array<{ kept_by: string[] | null }>;
    for (const [sid, token] of [[feature, olga], [main, mia]] as const) {
      const polled = (await rpc(url, sid, "checkpoint.list", token, { limit: 500 })).body.result.items as Items;
      expect(polled.length).toBeGreaterThan(0);
      expect(polled.every((item) => item.kept_by === null)).toBe(true);
      const asked = (await rpc(url, sid, "checkpoint.list", token, { limit: 500, kept_by: true })).body.result.items as Items;
      expect(asked.every((item) => Array.isArray(item.kept_by))).toBe(true);
    }
    // Its next page, as a command that reads that session (as written, it read this machine's project).
    const paged = ok(remote(p, url, feature, olga, ["checkpoint", "list", "--limit", "1"]));
    expect(paged).toContain(`next page: apex --remote ${url.replace(/^http:\/\//, "")}/${feature} checkpoint list --offset 1 --limit 1`);
  });

  it("answers every read apex --remote checks the shape of (plugins/sharing/reply-shapes.ts) in a shape it reads: none is refused", async () => {
    const items = (JSON.parse(ok(remote(p, url, feature, olga, ["checkpoint", "list", "--json"]))) as { items: Array<{ id: string }> }).items;
    expect(items.length).toBeGreaterThan(1);
    const reads = [
      ["checkpoint", "list"],
      ["checkpoint", "show", items[0]!.id],
      ["checkpoint", "diff", items.at(-1)!.id, items[0]!.id],
      ["session", "list"],
      ["session", "shares"],
      ["task", "list"],
      ["milestone"],
      ["memory", "query", "/notes/**", "--keys"],
      ["status"],
    ];
    for (const args of reads) {
      const result = remote(p, url, feature, olga, args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      expect(result.stderr, args.join(" ")).not.toContain("APEX_E_");
    }
  });

  it("merges a session the user holds a grant of into the grant's session, as locally; refuses any other source or destination", async () => {
    const checkpoints = () => ok(p.apex(["checkpoint", "list", "--session", feature, "--json"]));
    const before = checkpoints();
    const notes = () => p.apex(["memory", "show", "/notes/other", "--json"]);
    expect(notes().status).toBe(3);
    // No grant of `other` yet: refused (exit 4), nothing written.
    const noGrant = remote(p, url, feature, olga, ["session", "merge", other, feature, "--json"]);
    expect(noGrant.status).toBe(4);
    expect(noGrant.stderr).toContain("APEX_E_FORBIDDEN");
    share(p, other, "olga", "viewer");
    // Into another session than the grant's: refused too, even with a grant of the source.
    const elsewhere = remote(p, url, feature, olga, ["session", "merge", other, main, "--json"]);
    expect(elsewhere.status).toBe(4);
    expect(elsewhere.stderr).toContain("APEX_E_FORBIDDEN");
    const git = remote(p, url, feature, olga, ["session", "merge", other, feature, "--git"]);
    expect(git.status).toBe(2);
    expect(checkpoints()).toBe(before);
    expect(notes().status).toBe(3);

    // A dry run prints what the local one prints, text and JSON.
    for (const extra of [[], ["--json"]]) {
      const args = ["session", "merge", other, "feature", "--dry-run", "--strategy", "theirs", ...extra];
      expect(ok(remote(p, url, feature, olga, args))).toBe(ok(p.apex(args)));
    }
    // `current` through a grant is the grant's session, as locally it is the bound one.
    expect(JSON.parse(ok(remote(p, url, feature, olga, ["session", "merge", other, "current", "--dry-run", "--json"]))).destination.session_id).toBe(feature);
    expect(checkpoints()).toBe(before);

    const merged = JSON.parse(ok(remote(p, url, feature, olga, ["session", "merge", other.slice(0, 8), feature, "--strategy", "theirs", "--json"])));
    expect(merged.source.session_id).toBe(other);
    expect(merged.destination.session_id).toBe(feature);
    expect(merged.dry_run).toBe(false);
    expect(merged.checkpoint, JSON.stringify(merged)).not.toBeNull();
    expect(checkpoints()).toContain(merged.checkpoint.id);
    expect(ok(notes())).toContain("unrelated unrelated");
    const events = (JSON.parse(ok(p.apex(["session", "history", feature, "--json"]))) as { events: Array<{ type: string; actor: string }> }).events;
    expect(events.filter((event) => event.type === "session.merged").at(-1)!.actor).toBe("user:olga");
  });
});
