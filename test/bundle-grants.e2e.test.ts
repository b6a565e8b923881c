// A session's access grants (`apex session share`) stay with the project that made them: an export
// carries none, an import installs none (a crafted bundle could plant a grant whose token its author
// knows), and only this project's own archive, unarchived from its backup directory, gives them back.
// The built CLI, real `apex serve` servers on loopback and `apex --remote`.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ok, Project, shellAgents } from "./fixtures/agents/harness.js";
import { remote, serve, share } from "./support/serve.js";
import { stopsAfterEach } from "./support/cleanup.js";
import { encodeBundle, readBundle } from "../plugins/archive/bundle.js";
import { bundleInput } from "./helpers/craft.js";
import { openStore } from "../core/store/open.js";
import { manifestPath } from "../plugins/checkpoint/manifest.js";

const CONFIG = shellAgents({ alpha: "while true; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n  archive: {}\n");

const stops = stopsAfterEach();

/** A project with one ended session shared with alice as owner: the session's id and alice's token. */
function sharedEndedSession(): { p: Project; sid: string; token: string } {
  const p = new Project(CONFIG, "apex-grants-");
  const sid = p.start().session_id;
  ok(p, ["checkpoint", "create", "work"]);
  ok(p, ["stop"]);
  const { token } = share(p, sid, "alice", "owner");
  return { p, sid, token };
}

function grantsOf(p: Project, sid: string): Array<{ user: string }> {
  return JSON.parse(ok(p, ["session", "shares", sid, "--json"]).stdout) as Array<{ user: string }>;
}

function projectId(p: Project): string {
  const shown = JSON.parse(ok(p, ["memory", "show", "/projects/config", "--json"]).stdout) as { value: { project_id: string } };
  return shown.value.project_id;
}

/**
 * A session of another project, exported, its record claiming to be branched from `parent` (at that
 * session and sequence, under an id of its own: the author never saw the checkpoint), imported into `p`: its id.
 */
async function importClaimingParent(p: Project, parent: { session_id: string; sequence: number }): Promise<string> {
  const a = new Project(CONFIG, "apex-grants-");
  const sid = a.start(["--task", "an innocent session"]).session_id;
  ok(a, ["stop"]);
  const file = join(a.dir, "x.apexbundle");
  ok(a, ["session", "export", sid, "-o", file]);
  const input = bundleInput(readBundle(readFileSync(file), {}));
  const entry = input.records.find(([path]) => path === `/sessions/history/${sid}`)!;
  entry[1] = { ...(entry[1] as Record<string, never>), parent_checkpoint: { id: randomUUID(), ...parent, name: `checkpoint-${String(parent.sequence).padStart(3, "0")}` }, parent_session: parent.session_id };
  const crafted = join(a.dir, "crafted.apexbundle");
  writeFileSync(crafted, (await encodeBundle(input, "brotli")).file);
  ok(p, ["session", "import", crafted]);
  return sid;
}

/**
 * A project with a session `source` (checkpoint-002 "the branch point", checkpoint-003 "merged in"), a branch of it at
 * checkpoint-002, and a session `destination` of its own that merged the source's checkpoint-003 in.
 */
function branchedAndMerged() {
  const b = new Project(CONFIG, "apex-grants-");
  // Made before the source, without what it adds.
  const destination = b.start(["--task", "merged into"]).session_id;
  ok(b, ["stop"]);
  const source = b.start(["--task", "where it came from"]).session_id;
  ok(b, ["memory", "set", "/plan", '"shared"']);
  ok(b, ["checkpoint", "create", "the branch point"]);
  ok(b, ["memory", "set", "/plan", '"merged"']);
  ok(b, ["checkpoint", "create", "merged in"]);
  ok(b, ["stop"]);
  const branch = JSON.parse(ok(b, ["session", "branch", `${source}/checkpoint-002`, "real-branch", "--json"]).stdout) as { session_id: string; parent_checkpoint: { id: string } };
  const merge = JSON.parse(ok(b, ["session", "merge", source, destination, "--json"]).stdout) as { applied: string; source: { checkpoint: { id: string; name: string } } };
  expect(merge).toMatchObject({ applied: "checkpoint", source: { checkpoint: { name: "checkpoint-003" } } });
  return { b, destination, source, branch, merge };
}

/** Through `apex serve`, a grant of each of `sids` sees `source` in `session list|tree|history`. */
async function expectSourceSeen(b: Project, source: string, sids: string[]): Promise<void> {
  const url = await serve(b, stops);
  for (const [index, sid] of sids.entries()) {
    for (const { args, text, sessions } of seenBy(b, url, sid, `bob${index}`)) {
      expect(sessions, `${args} of ${index}`).toContain(source);
      if (args.includes("list")) expect(text, args).toContain("where it came from");
    }
  }
}

/** What a grant of `sid` shows of the project's sessions, for `session list|tree|history --json` each: the text, with every session id it names. */
function seenBy(p: Project, url: string, sid: string, user: string): Array<{ args: string; text: string; sessions: string[] }> {
  const { token } = share(p, sid, user, "viewer");
  return [["session", "list", "--json"], ["session", "tree", "--json"], ["session", "history", "--json"]].map((args) => {
    const seen = remote(p, url, sid, token, args);
    expect(seen.status, seen.stderr).toBe(0);
    return { args: args.join(" "), text: seen.stdout, sessions: [...seen.stdout.matchAll(/"session_id": ?"([^"]+)"/g)].map((match) => match[1]!) };
  });
}

/** The deleted checkpoints `sid`'s record keeps (merge-base.ts DELETED_POINTS_FIELD). */
function deletedPoints(p: Project, sid: string): unknown {
  return (JSON.parse(ok(p, ["memory", "show", `/sessions/history/${sid}`, "--json"]).stdout) as { value: { deleted_points?: unknown } }).value.deleted_points;
}

describe("access grants and bundles", () => {
  it("an export carries no grant, and an import installs none: the exporter's token does not open the importing project's server", async () => {
    const a = sharedEndedSession();
    expect(grantsOf(a.p, a.sid).map((grant) => grant.user)).toEqual(["alice"]);
    const file = join(a.p.dir, "x.apexbundle");
    ok(a.p, ["session", "export", a.sid, "-o", file]);
    // The bundle itself holds no grant record.
    const content = readBundle(readFileSync(file), {});
    expect(content.records.map(([path]) => path).filter((path) => path.includes("/grants"))).toEqual([]);

    const b = new Project(CONFIG, "apex-grants-");
    ok(b, ["start", "--task", "b's own"]);
    ok(b, ["stop"]);
    const imported = JSON.parse(ok(b, ["session", "import", file, "--json"]).stdout);
    expect(imported).toMatchObject({ session_id: a.sid, grants_dropped: 0, already_imported: false });
    expect(grantsOf(b, a.sid)).toEqual([]);
    const url = await serve(b, stops);
    const refused = remote(b, url, a.sid, a.token, ["status", "--json"]);
    expect(refused.status, refused.stdout).toBe(4);
    expect(JSON.parse(refused.stderr).error.code).toBe("APEX_E_UNAUTHORIZED");
    // The same export imported again is still "already here" (the exporter's grants are no difference).
    expect(JSON.parse(ok(b, ["session", "import", file, "--json"]).stdout)).toMatchObject({ already_imported: true });
  }, 120_000);

  it("an archive's grants come back with this project's own unarchive, and with no other bundle: another project's archive, one that claims this project, or import", async () => {
    const a = sharedEndedSession();
    ok(a.p, ["session", "archive", a.sid]);
    const archive = join(a.p.dir, ".apex", "backups", `${a.sid}.apexbundle`);
    const held = readBundle(readFileSync(archive), {});
    expect(held.records.some(([path]) => path.startsWith(`/sessions/${a.sid}/grants/`))).toBe(true);
    const copy = join(a.p.dir, "copy.apexbundle");
    copyFileSync(archive, copy);

    // This project's own archive, from its backup directory: the session is back as it was, its grant too.
    const back = JSON.parse(ok(a.p, ["session", "unarchive", a.sid, "--json"]).stdout);
    expect(back).toMatchObject({ grants_dropped: 0 });
    expect(grantsOf(a.p, a.sid).map((grant) => grant.user)).toEqual(["alice"]);
    const urlA = await serve(a.p, stops);
    const status = remote(a.p, urlA, a.sid, a.token, ["status", "--json"]);
    expect(status.status, status.stderr).toBe(0);

    // Another project: its archive, imported or unarchived (from its backup directory too), brings no grant.
    const b = new Project(CONFIG, "apex-grants-");
    ok(b, ["start", "--task", "b's own"]);
    ok(b, ["stop"]);
    const imported = JSON.parse(ok(b, ["session", "import", copy, "--json"]).stdout);
    expect(imported).toMatchObject({ grants_dropped: 1 });
    expect(grantsOf(b, a.sid)).toEqual([]);
    const said = ok(b, ["session", "import", copy]).stdout;
    expect(said).toContain("already here");

    const c = new Project(CONFIG, "apex-grants-");
    ok(c, ["start", "--task", "c's own"]);
    ok(c, ["stop"]);
    mkdirSync(join(c.dir, ".apex", "backups"), { recursive: true });
    const inBackups = join(c.dir, ".apex", "backups", `${a.sid}.apexbundle`);
    copyFileSync(copy, inBackups);
    const text = ok(c, ["session", "unarchive", a.sid]).stdout;
    expect(text).toContain("The bundle held 1 access grant (`apex session share`), which was not brought in");
    expect(grantsOf(c, a.sid)).toEqual([]);

    // A bundle crafted to claim project d's id, as an archive, given by path: its grant is not installed, by unarchive or import.
    const d = new Project(CONFIG, "apex-grants-");
    ok(d, ["start", "--task", "d's own"]);
    ok(d, ["stop"]);
    const input = bundleInput(held);
    input.project_id = projectId(d);
    const crafted = join(d.dir, "crafted.apexbundle");
    writeFileSync(crafted, (await encodeBundle(input, "brotli")).file);
    const unarchived = JSON.parse(ok(d, ["session", "unarchive", crafted, "--json"]).stdout);
    expect(unarchived).toMatchObject({ grants_dropped: 1 });
    expect(grantsOf(d, a.sid)).toEqual([]);
    const urlD = await serve(d, stops);
    const refused = remote(d, urlD, a.sid, a.token, ["status", "--json"]);
    expect(refused.status, refused.stdout).toBe(4);
    expect(JSON.parse(refused.stderr).error.code).toBe("APEX_E_UNAUTHORIZED");
  }, 180_000);

  it("a bundle whose session claims to be branched from another session of the importing project does not show that session to a grant of it", async () => {
    // Project b's own session, which nobody it was shared with may see.
    const b = new Project(CONFIG, "apex-grants-");
    const victim = b.start(["--task", "the private plan"]).session_id;
    ok(b, ["checkpoint", "create", "private work"]);
    ok(b, ["stop"]);
    const checkpoint = (JSON.parse(ok(b, ["checkpoint", "list", "--session", victim, "--json"]).stdout) as { items: Array<{ sequence: number }> }).items.at(-1)!;

    // A bundle from elsewhere, its session record claiming a branch point in b's session (whose id its author learned).
    const sid = await importClaimingParent(b, { session_id: victim, sequence: checkpoint.sequence });
    const { token } = share(b, sid, "mallory", "viewer");
    const url = await serve(b, stops);
    for (const args of [["session", "list", "--json"], ["session", "tree", "--json"], ["session", "history", "--json"]]) {
      const seen = remote(b, url, sid, token, args);
      expect(seen.status, seen.stderr).toBe(0);
      expect(seen.stdout, args.join(" ")).not.toContain("the private plan");
      expect(JSON.stringify(JSON.parse(seen.stdout).sessions ?? JSON.parse(seen.stdout)), args.join(" ")).not.toContain(`"session_id":"${victim}"`);
    }
    // A real branch of b's session, shared so: its grant sees where it came from, as before.
    ok(b, ["session", "branch", `${victim}/checkpoint-001`, "real-branch"]);
    const branch = share(b, "real-branch", "bob", "viewer");
    const ancestry = remote(b, url, branch.session_id, branch.token, ["session", "list", "--json"]);
    expect(ancestry.status, ancestry.stderr).toBe(0);
    expect((JSON.parse(ancestry.stdout) as Array<{ session_id: string }>).map((session) => session.session_id)).toContain(victim);
  }, 120_000);

  it("a bundle whose session claims a branch point deleted since (with --force, or a plain gap) in another session does not show that session to a grant of it", async () => {
    const b = new Project(CONFIG, "apex-grants-");
    const victim = b.start(["--task", "the private plan"]).session_id;
    ok(b, ["checkpoint", "create", "private work"]);
    ok(b, ["checkpoint", "create", "more private work"]);
    ok(b, ["stop"]);
    // checkpoint-002, a real branch point, deleted with --force; checkpoint-003, no one's, deleted as it is.
    ok(b, ["session", "branch", `${victim}/checkpoint-002`, "real-branch"]);
    ok(b, ["checkpoint", "delete", `${victim}/checkpoint-002`, "--force"]);
    ok(b, ["checkpoint", "delete", `${victim}/checkpoint-003`]);
    const claims = [await importClaimingParent(b, { session_id: victim, sequence: 2 }), await importClaimingParent(b, { session_id: victim, sequence: 3 })];
    const url = await serve(b, stops);
    // Before, an edge to a checkpoint no longer in the store was followed when its session's sequences went past it.
    for (const [index, sid] of claims.entries()) {
      for (const { args, text, sessions } of seenBy(b, url, sid, `mallory${index}`)) {
        expect(text, args).not.toContain("the private plan");
        expect(sessions, args).not.toContain(victim);
        expect(sessions, args).toContain(sid);
      }
    }
  }, 120_000);

  it("a bundle whose session claims a branch point in a session of the importing project that has no checkpoint does not show that session to a grant of it", async () => {
    // A session made while the project had no checkpoints: its record, no checkpoint and no sequence counter.
    const b = new Project(shellAgents({ alpha: "while true; do sleep 0.2; done" }), "apex-grants-");
    const victim = b.start(["--task", "the private plan"]).session_id;
    ok(b, ["stop"]);
    b.writeConfig(CONFIG);
    expect(JSON.parse(ok(b, ["checkpoint", "list", "--session", victim, "--json"]).stdout)).toMatchObject({ total: 0 });
    const sid = await importClaimingParent(b, { session_id: victim, sequence: 1 });
    const url = await serve(b, stops);
    // Before, an edge into a session without checkpoints was followed (as one never here).
    for (const { args, text, sessions } of seenBy(b, url, sid, "mallory")) {
      expect(text, args).not.toContain("the private plan");
      expect(sessions, args).not.toContain(victim);
    }
  }, 120_000);

  it("a branch whose branch point was deleted with --force, and a merge whose merged-in checkpoint was, still show that session to a grant of theirs", async () => {
    const { b, destination, source, branch, merge } = branchedAndMerged();
    ok(b, ["checkpoint", "delete", `${source}/checkpoint-002`, "--force"]);
    ok(b, ["checkpoint", "delete", `${source}/checkpoint-003`, "--force"]);
    // Its session's record keeps the ids they had, and nothing of a checkpoint no edge named.
    ok(b, ["checkpoint", "delete", `${source}/checkpoint-001`]);
    expect(deletedPoints(b, source)).toEqual([
      { id: branch.parent_checkpoint.id, sequence: 2 },
      { id: merge.source.checkpoint.id, sequence: 3 },
    ]);
    await expectSourceSeen(b, source, [branch.session_id, destination]);
  }, 120_000);

  it("a branch whose branch point, and a merge whose merged-in checkpoint, a repair dropped (their manifests no longer decode) still show that session to a grant of theirs", async () => {
    const { b, destination, source, branch, merge } = branchedAndMerged();
    // The manifests of the branch point, the checkpoint merged in and the start's checkpoint (no edge names it) no longer decode: the repair drops all three, their ids known from the catalog.
    const store = await openStore(b.storeDir);
    try {
      const raw = store.table("kv", { keys: "string", values: "binary" });
      await store.transaction(() => {
        for (const sequence of [1, 2, 3]) raw.put(manifestPath(source, sequence), Buffer.from([0xc1]));
      });
    } finally {
      await store.close();
    }
    const repaired = b.apex(["session", "repair", "--json"]);
    expect(repaired.status, repaired.stdout + repaired.stderr).toBe(0);
    const removals = (JSON.parse(repaired.stdout) as { actions: Array<{ action: string; target: string; reason: string }> }).actions.filter((action) => action.action === "remove-checkpoint");
    expect(removals.map((action) => action.target)).toEqual([1, 2, 3].map((sequence) => `${source}/checkpoint-00${sequence}`));
    expect(removals.map((action) => action.reason.includes("its session's record keeps its id"))).toEqual([false, true, true]);
    expect(JSON.parse(ok(b, ["checkpoint", "list", "--session", source, "--json"]).stdout)).toMatchObject({ total: 0 });
    // Its session's record keeps the ids they had, and nothing of the checkpoint no edge named, as `checkpoint delete --force` keeps them.
    expect(deletedPoints(b, source)).toEqual([
      { id: branch.parent_checkpoint.id, sequence: 2 },
      { id: merge.source.checkpoint.id, sequence: 3 },
    ]);
    await expectSourceSeen(b, source, [branch.session_id, destination]);
  }, 120_000);
});
