// Branch a session from a checkpoint, run it, merge it back, draw the tree: through the built
// CLI, with real supervisors and agents, a real LMDB store and real git worktrees.
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { request as httpRequest } from "node:http";
import { basename, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, asleepInEventLoop, waitFor } from "./fixtures/agents/harness.js";
import { cleanEnv, json } from "./helpers/cli.js";
import { initRepo, isolatedGit } from "./support/git.js";
import { endChild, tempDirs } from "./support/cleanup.js";
import { CLOSE_WAIT, readByServer, remote, serverConnectionStates, serverConnections, share } from "./support/serve.js";
import { LmdbStore } from "./helpers/store.js";
import { listCheckpoints } from "../plugins/checkpoint/checkpoints.js";

const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;
const extra = tempDirs();

const { git, GIT_ENV } = isolatedGit("apex-branch-git-home-");

// The agent writes where it runs, then idles.
const agent = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "pwd > ran-here.txt; while true; do sleep 0.5; done"]`].join("\n");

describe("the flow's commands, verbatim", () => {
  it("apex session branch <checkpoint-uuid> \"experimental-feature\", run it, apex session merge <experimental-uuid> <main-uuid>", async () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    const p = project;
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["memory", "set", "/notes/a", '"base"']).status).toBe(0);
    expect(p.apex(["memory", "set", "/notes/b", '"base"']).status).toBe(0);
    const checkpoint = json<{ id: string }>(p.apex(["checkpoint", "create", "before the experiment", "--json"])).id;

    const branched = p.apex(["session", "branch", checkpoint, "experimental-feature"]);
    expect(branched.status, branched.stderr).toBe(0);
    expect(branched.stdout).toMatch(new RegExp(`^Branched experimental-feature \\([0-9a-f]{8}\\) from ${main.slice(0, 8)}/checkpoint-002\\.$`, "m"));
    expect(branched.stdout).not.toContain(main);
    const sessions = json<Array<{ session_id: string; name: string | null; parent: string | null; status: string }>>(p.apex(["session", "list", "--json"]));
    const experimental = sessions.find((session) => session.name === "experimental-feature")!;
    expect(experimental).toMatchObject({ status: "stopped", parent: `${main}/checkpoint-002` });
    // A name is taken once.
    const taken = p.apex(["session", "branch", checkpoint, "experimental-feature"]);
    expect(taken.status).toBe(4);
    // Not continued yet, it has no working memory: the project's tree holds main's. A write named for
    // it went into main's memory ("set /notes/a"), and stayed there when the branch started.
    const misplaced = p.apex(["--session", "experimental-feature", "memory", "set", "/notes/a", '"meant for the branch"']);
    expect(misplaced.status, misplaced.stdout).toBe(4);
    expect(misplaced.stderr).toContain(`Session experimental-feature does not hold the project's memory (${main.slice(0, 8)} does`);
    expect(misplaced.stderr).toContain("apex start --continue experimental-feature");
    expect(json<{ value: string }>(p.apex(["memory", "show", "/notes/a", "--json"])).value).toBe("base");

    // main goes on; then the branch runs (main is checkpointed and stopped first) from the checkpoint's state.
    expect(p.apex(["memory", "set", "/notes/a", '"main"']).status).toBe(0);
    // A read named for it showed main's memory as the branch's ("main", which the branch never held): refused as the write is.
    for (const args of [["memory", "show", "/notes/a"], ["memory", "query", "/notes/**"], ["memory", "export"], ["memory", "watch", "/notes", "--timeout", "1"]]) {
      const misread = p.apex(["--session", "experimental-feature", ...args, "--json"]);
      expect(misread.status, misread.stdout).toBe(4);
      expect(JSON.parse(misread.stderr).error).toMatchObject({
        code: "APEX_E_SESSION_STATE",
        message: expect.stringContaining(`Session experimental-feature does not hold the project's memory (${main.slice(0, 8)} does`),
        hint: expect.stringContaining("apex checkpoint show experimental-feature/latest"),
      });
    }
    // Its records are APEX's, not memory: they read as before.
    expect(p.apex(["--session", "experimental-feature", "memory", "show", `/sessions/${experimental.session_id}`]).status).toBe(0);
    const continued = p.start(["--continue", "experimental-feature"]);
    expect(continued.session_id).toBe(experimental.session_id);
    // Running, it is shown by its name (the supervisor's report, text and --json).
    expect(p.apex(["status"]).stdout.split("\n")[0]).toBe(`Session experimental-feature (${experimental.session_id})  active`);
    expect(json<{ session: { name: string | null } }>(p.apex(["status", "--json"])).session.name).toBe("experimental-feature");
    // Pause and resume name it the same way (the whole id was printed); --json has both.
    // A process caught in I/O with its SIGSTOP pending is named after (it stops as that ends), as on a loaded machine.
    expect(p.apex(["pause"]).stdout).toMatch(/^Paused session experimental-feature: \d+ process(es)? of 1 agent stopped\.( [^\n]* (is|are) in uninterruptible I\/O with the stop pending: [^\n]*)?\n$/);
    expect(json(p.apex(["resume", "--json"]))).toMatchObject({ session_id: experimental.session_id, name: "experimental-feature", status: "active" });
    expect(json<{ value: string }>(p.apex(["memory", "show", "/notes/a", "--json"])).value).toBe("base");
    expect(p.apex(["memory", "set", "/notes/b", '"experiment"']).status).toBe(0);
    expect(p.apex(["memory", "set", "/notes/c", '"new"']).status).toBe(0);
    expect(p.apex(["task", "add", "try the experiment"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "experiment done"]).stdout).toMatch(/^Created checkpoint-\d{3} \([0-9a-f-]{36}\) of session experimental-feature\.\n/);

    // The flow's second command, with both ids.
    const merged = p.apex(["session", "merge", experimental.session_id, main]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(merged.stdout).toMatch(/modified \/notes\/b/);
    expect(merged.stdout).toMatch(/added +\/notes\/c/);
    const mergeCheckpoint = json<{ manifest: { trigger: string; merge_parent: string; parent: string } }>(p.apex(["checkpoint", "show", `${main}/latest`, "--json"]));
    expect(mergeCheckpoint.manifest.trigger).toBe("merge");
    expect(p.apex(["checkpoint", "show", `${main}/latest`]).stdout).toMatch(/merged from +[0-9a-f-]{36}/);

    // Continuing main brings the merged state back: main's change and the experiment's. It stops
    // the branch, which ends a `logs -f` of it with a notice naming it as session list does.
    const follow = p.apexAsync(["logs", "-f", "-n", "1"]);
    try {
      await waitFor("the follower's first line", () => follow.output().includes("idle |"));
      p.start(["--continue", main]);
      const followed = await Promise.race([follow.done, new Promise<undefined>((r) => setTimeout(() => r(undefined), 10_000))]);
      expect(followed?.stderr, follow.errors()).toBe("Session experimental-feature has ended: no more output will come.\n");
    } finally {
      follow.child.kill();
    }
    const notes = json<{ children: Record<string, string> }>(p.apex(["memory", "show", "/notes", "--json"])).children;
    expect(notes).toEqual({ "/notes/a": "main", "/notes/b": "experiment", "/notes/c": "new" });
    expect(json<Array<{ title: string }>>(p.apex(["task", "list", "--json"])).map((task) => task.title)).toContain("try the experiment");

    // Merging again changes nothing (the branch's stop checkpoint holds no change); the audit trail records the merge with both parents and the actor.
    const listed = p.apex(["checkpoint", "list", "--session", main, "--json"]).stdout;
    const again = p.apex(["session", "merge", "experimental-feature", main]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/Already up to date|Nothing to merge/);
    expect(p.apex(["checkpoint", "list", "--session", main, "--json"]).stdout).toBe(listed);
    const trail = json<{ events: Array<{ type: string; parents?: string[]; actor: string }> }>(p.apex(["session", "history", main, "--json"])).events;
    const event = trail.find((entry) => entry.type === "session.merged")!;
    expect(event.parents).toEqual([mergeCheckpoint.manifest.parent, mergeCheckpoint.manifest.merge_parent]);
    expect(event.actor).toMatch(/^user:/);

    // The name is accepted wherever a session id is.
    expect(p.apex(["logs", "--session", "experimental-feature", "-n", "1"]).status).toBe(0);
    expect(json<Array<{ title: string }>>(p.apex(["task", "list", "--session", "experimental-feature", "--json"])).map((task) => task.title)).toContain("try the experiment");
    expect(json<{ session_id: string }>(p.apex(["checkpoint", "list", "--session", "experimental-feature", "--json"]))).toMatchObject({ session_id: experimental.session_id, session_name: "experimental-feature" });
    // Its checkpoints' list and record name it so too (they printed the whole id); --json has both.
    const branchList = p.apex(["checkpoint", "list", "--session", experimental.session_id.slice(0, 8)]).stdout;
    expect(branchList).toMatch(/^Checkpoints of session experimental-feature \(/);
    expect(branchList).not.toContain(experimental.session_id);
    const branchShown = p.apex(["checkpoint", "show", "experimental-feature/latest"]).stdout;
    expect(branchShown).toMatch(/^  session +experimental-feature$/m);
    expect(branchShown).not.toContain(experimental.session_id);
    expect(json(p.apex(["checkpoint", "show", "experimental-feature/latest", "--json"]))).toMatchObject({ session_id: experimental.session_id, session_name: "experimental-feature" });

    // The tree shows the branch point and the merge point.
    const tree = p.apex(["session", "tree"]);
    expect(tree.status, tree.stderr).toBe(0);
    // The merge's edge to the branch ("|/|": the branch's column is on the left by then), the branch point ("|/").
    expect(tree.stdout, tree.stdout).toMatch(/^\|\/\|$/m);
    expect(tree.stdout).toMatch(/^\|\/$/m);
    expect(tree.stdout).toMatch(/\[experimental-feature\] checkpoint-001 branch/);
    expect(json<{ nodes: Array<{ trigger: string; parents: string[] }> }>(p.apex(["session", "tree", "--json"])).nodes.find((node) => node.trigger === "merge")!.parents).toHaveLength(2);
  });

  it("into the running session: through its supervisor, live memory updated with the checkpoint; a conflict refuses and writes nothing", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    const p = project;
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["memory", "set", "/x", "1"]).status).toBe(0);
    expect(p.apex(["memory", "set", "/y", "1"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "side"]).status).toBe(0);
    p.start(["--continue", "side"]);
    expect(p.apex(["memory", "set", "/x", "2"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "side work"]).status).toBe(0);
    p.start(["--continue", main]);
    expect(p.apex(["memory", "set", "/y", "3"]).status).toBe(0);

    const merged = json<{ applied: string; checkpoint: { name: string } }>(p.apex(["session", "merge", "side", main, "--json"]));
    expect(merged.applied).toBe("live");
    expect(json<{ value: number }>(p.apex(["memory", "show", "/x", "--json"])).value).toBe(2);
    expect(json<{ value: number }>(p.apex(["memory", "show", "/y", "--json"])).value).toBe(3);
    expect(p.status().session).toMatchObject({ session_id: main, status: "active" });

    // Both change /x: refused (exit 4), the dry run lists the conflict, nothing is written.
    expect(p.apex(["memory", "set", "/x", "10"]).status).toBe(0);
    p.start(["--continue", "side"]);
    expect(p.apex(["memory", "set", "/x", "20"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "side again"]).status).toBe(0);
    p.start(["--continue", main]);
    const before = p.apex(["checkpoint", "list", "--json"]).stdout;
    const dry = p.apex(["session", "merge", "side", main, "--dry-run", "--json"]);
    expect(dry.status).toBe(4);
    expect(JSON.parse(dry.stdout).memory.conflicts).toEqual([{ path: "/x", base: 2, ours: 10, theirs: 20, absent: [], resolution: "none" }]);
    const refused = p.apex(["session", "merge", "side", main]);
    expect(refused.status).toBe(4);
    expect(refused.stderr).toContain("APEX_E_MERGE_CONFLICT");
    expect(p.apex(["checkpoint", "list", "--json"]).stdout).toBe(before);
    expect(json<{ value: number }>(p.apex(["memory", "show", "/x", "--json"])).value).toBe(10);
    const theirs = json<{ applied: string }>(p.apex(["session", "merge", "side", main, "--strategy", "theirs", "--json"]));
    expect(theirs.applied).toBe("live");
    expect(json<{ value: number }>(p.apex(["memory", "show", "/x", "--json"])).value).toBe(20);

    // A dry run's --json has one shape, read by DST's supervisor or, once it stopped, from the store.
    expect(p.apex(["memory", "set", "/y", "30"]).status).toBe(0);
    const live = json<Record<string, unknown>>(p.apex(["session", "merge", main, "side", "--dry-run", "--json"]));
    expect(p.apex(["stop"]).status).toBe(0);
    const stored = json<Record<string, unknown>>(p.apex(["session", "merge", main, "side", "--dry-run", "--json"]));
    expect(Object.keys(stored).sort()).toEqual(Object.keys(live).sort());
    expect(stored).not.toHaveProperty("writer_pid");
    expect((stored.memory as { changes: unknown[] }).changes).toEqual((live.memory as { changes: unknown[] }).changes);
  });
});

describe("a merge into the running session, made by its supervisor", () => {
  it("hashes the live records once, to plan it: its checkpoint is those trees with the merge applied, the state a checkpoint then hashes", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-hashed-");
    const p = project;
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["memory", "set", "/kept", "1"]).status).toBe(0);
    expect(p.apex(["memory", "set", "/gone", "1"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "side"]).status).toBe(0);
    p.start(["--continue", "side"]);
    expect(p.apex(["memory", "set", "/side/a", '"a"']).status).toBe(0);
    expect(p.apex(["memory", "set", "/side/b", '{"b":[1,2]}']).status).toBe(0);
    expect(p.apex(["memory", "delete", "/gone"]).status).toBe(0);
    expect(p.apex(["task", "add", "side work"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "side work"]).status).toBe(0);
    const supervisor = p.start(["--continue", main]).supervisor_pid;
    // Three records written live since main's latest checkpoint (the merge's base to hash them from).
    for (const path of ["/main/1", "/main/2", "/main/3"]) expect(p.apex(["memory", "set", path, "3"]).status).toBe(0);

    const merged = json<{ applied: string; writer_pid: number; hashed: { memory: number; tasks: number; agents: number }; checkpoint: { id: string }; memory: { changes: unknown[] } }>(p.apex(["session", "merge", "side", main, "--json"]));
    expect(merged).toMatchObject({ applied: "live", writer_pid: supervisor });
    expect(merged.memory.changes).toHaveLength(3);
    // Each of the three once (it was nine: the three again for the checkpoint, with the three the merge wrote).
    expect(merged.hashed.memory).toBe(3);
    // The checkpoint is the live state as hashing it gives: one taken now, nothing written since, holds the same.
    const after = json<{ id: string }>(p.apex(["checkpoint", "create", "after the merge", "--json"])).id;
    const diff = json<Record<string, unknown>>(p.apex(["checkpoint", "diff", merged.checkpoint.id, after, "--json"]));
    expect(diff).toMatchObject({ memory: { added: [], removed: [], changed: [] } });
    expect(json<{ value: string }>(p.apex(["memory", "show", "/side/a", "--json"])).value).toBe("a");
    expect(p.apex(["memory", "show", "/gone"]).status).toBe(3);
    const validated = p.apex(["session", "validate"]);
    expect(validated.status, validated.stdout + validated.stderr).toBe(0);
  });
});

describe("kill -9 of DST's supervisor during a merge", () => {
  it("before it wrote anything, or after it saved the merge: the command finishes the merge without it or finds it done, never 'not known'", () => {
    // DST's supervisor kills itself (SIGKILL) in beforeCheckpoint while die-before exists (the merge
    // not written yet) and in afterCheckpoint while die-after exists (written, not answered).
    const die = (hook: string, file: string) => `    apex.hooks.${hook}.tapPromise("die", async (x) => { if (existsSync(${JSON.stringify(file)}) && process.title === "apex-supervisor") process.kill(process.pid, "SIGKILL"); return x; });`;
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  ./die.mjs: {}\n`, "apex-branch-die-");
    const p = project;
    writeFileSync(join(p.dir, "die.mjs"), ['import { existsSync } from "node:fs";', 'export default { name: "die", apply(apex) {', die("beforeCheckpoint", "die-before"), die("afterCheckpoint", "die-after"), "} };", ""].join("\n"));
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    for (const name of ["after", "before"]) {
      expect(p.apex(["session", "branch", "latest", name]).status).toBe(0);
      p.start(["--continue", name]);
      expect(p.apex(["memory", "set", `/from/${name}`, "true"]).status).toBe(0);
      expect(p.apex(["checkpoint", "create", `${name} work`]).status).toBe(0);
    }
    for (const name of ["after", "before"]) {
      p.start(["--continue", main]);
      writeFileSync(join(p.dir, `die-${name}`), "");
      // It said "APEX_E_RPC: … closed the connection before answering session.merge; whether it was done is not known" (exit 1).
      const merged = p.apex(["session", "merge", name, main]);
      rmSync(join(p.dir, `die-${name}`));
      expect(merged.status, merged.stderr).toBe(0);
      expect(merged.stderr).toMatch(new RegExp(`^warning: ${main.slice(0, 8)}'s supervisor \\(pid \\d+\\) ended before it answered; the merge was made again without it`));
      expect(merged.stdout).toMatch(name === "after" ? /^Already up to date: after\/checkpoint-\d+ is already part of/ : /^Merged before\/checkpoint-\d+ into /);
      expect(p.status().session).toMatchObject({ session_id: main, status: "interrupted" });
      expect(json<{ value: boolean }>(p.apex(["memory", "show", `/from/${name}`, "--json"])).value).toBe(true);
      // One merge checkpoint per merge, whichever process wrote it.
      const merges = json<{ items: Array<{ trigger: string; description: string }> }>(p.apex(["checkpoint", "list", "--session", main, "--json"])).items.filter((item) => item.trigger === "merge" && item.description.startsWith(`merge ${name}/`));
      expect(merges).toHaveLength(1);
    }
  });
});

describe("a graceful apex stop of DST while a merge into it is under way", () => {
  it("is said as the store has it, stopped (the merge said 'interrupted'), and the merge is made into the stopped session", async () => {
    // DST's supervisor holds the merge in beforeCheckpoint while hold exists (never answering it): the stop goes on meanwhile and the supervisor exits.
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  ./hold.mjs: {}\n`, "apex-branch-hold-");
    const p = project;
    const hold = join(p.dir, "hold");
    const held = join(p.dir, "held");
    writeFileSync(
      join(p.dir, "hold.mjs"),
      `import { existsSync, writeFileSync } from "node:fs";\nexport default { name: "hold", apply(apex) { apex.hooks.beforeCheckpoint.tapPromise("hold", async (x) => { if (existsSync(${JSON.stringify(hold)}) && process.title === "apex-supervisor") { writeFileSync(${JSON.stringify(held)}, ""); await new Promise(() => undefined); } return x; }); } };\n`,
    );
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "side"]).status).toBe(0);
    p.start(["--continue", "side"]);
    expect(p.apex(["memory", "set", "/from/side", "true"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "side work"]).status).toBe(0);
    // The held merge is never answered: the stop waits out DST's shutdown grace for it (5 s by default), 1 s here.
    p.start(["--continue", main], { APEX_SHUTDOWN_GRACE_MS: "1000" });
    writeFileSync(hold, "");
    const merge = p.apexAsync(["session", "merge", "side", main]);
    await waitFor("the merge to reach DST's supervisor", () => existsSync(held));
    rmSync(hold);
    const stopped = p.apex(["stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(new RegExp(`^Stopped session ${main.slice(0, 8)} `));
    const merged = await merge.done;
    expect(merged.status, merged.stderr).toBe(0);
    expect(merged.stderr).toMatch(new RegExp(`^warning: ${main.slice(0, 8)}'s supervisor \\(pid \\d+\\) stopped the session before it answered; the merge was made again without it, and found done if it had been saved \\("Already up to date"\\)\\. ${main.slice(0, 8)} is stopped: the merge went into it as it was left\\.\n$`));
    expect(merged.stdout).toMatch(/^Merged side\/checkpoint-\d+ into /);
    expect(json<Array<{ session_id: string; status: string }>>(p.apex(["session", "history", "--json"])).find((session) => session.session_id === main)).toMatchObject({ status: "stopped" });
    const merges = json<{ items: Array<{ trigger: string }> }>(p.apex(["checkpoint", "list", "--session", main, "--json"])).items.filter((item) => item.trigger === "merge");
    expect(merges).toHaveLength(1);
  });
});

describe("a branch not continued since it was made is not the session that ended last", () => {
  it("relative checkpoint names, status, checkpoint list and --continue last keep to the session that ran", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-last-");
    const p = project;
    const main = p.start(["--task", "main work"]).session_id;
    for (const name of ["one", "two"]) expect(p.apex(["checkpoint", "create", name]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    const first = json<{ parent_checkpoint: { session_id: string; name: string } }>(p.apex(["session", "branch", "checkpoint-002", "first", "--json"]));
    expect(first.parent_checkpoint).toMatchObject({ session_id: main, name: "checkpoint-002" });
    // checkpoint-003 was looked for in the branch just made (APEX_E_CHECKPOINT_NOT_FOUND, "its latest number is checkpoint-001"), and latest was its checkpoint.
    for (const [ref, name] of [["checkpoint-003", "second"], ["latest", "third"]] as const) {
      const made = p.apex(["session", "branch", ref, name, "--json"]);
      expect(made.status, made.stderr).toBe(0);
      expect(JSON.parse(made.stdout).parent_checkpoint).toMatchObject({ session_id: main, name: "checkpoint-003" });
    }
    expect(json<{ last_session: { session_id: string } }>(p.apex(["status", "--json"])).last_session.session_id).toBe(main);
    expect(p.apex(["checkpoint", "list"]).stdout.split("\n")[0]).toBe(`Checkpoints of session ${main.slice(0, 8)} (3, newest first)`);
    expect(p.start(["--continue", "last"]).session_id).toBe(main);
  });
});

describe("--session naming a session that does not run", () => {
  it("status reports that session (a branch not continued yet, an ended one), not 'no session is active'", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    const p = project;
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const side = json<{ session_id: string }>(p.apex(["session", "branch", "latest", "side", "--json"])).session_id;
    for (const args of [["--session", "side", "status", "--json"], ["status", "--session", side.slice(0, 8), "--json"]]) {
      const report = json<{ session: { session_id: string; status: string } | null }>(p.apex(args));
      expect(report.session, args.join(" ")).toMatchObject({ session_id: side, name: "side", status: "stopped" });
    }
    // A named session is shown by its name, its id after it; an unnamed one by its id.
    expect(p.apex(["--session", "side", "status"]).stdout.split("\n")[0]).toBe(`Session side (${side})  stopped`);
    // session list names the parent as a reference that resolves: a branch by its name, an id that is no uuid whole.
    expect(p.apex(["session", "branch", "side/latest", "nested"]).status).toBe(0);
    const reconstructed = p.apex(["session", "reconstruct", side, "--as", "side-copy"]);
    expect(reconstructed.status, reconstructed.stderr).toBe(0);
    // The session it came from by its name, as session list prints it (it printed the whole id); --json has the ids.
    expect(reconstructed.stdout).toContain("Reconstructed session side-copy from side (checkpoint-001, the latest checkpoint that verifies).");
    expect(reconstructed.stdout).toContain("Next: apex start --continue side-copy ");
    expect(reconstructed.stdout).not.toContain(side);
    expect(p.apex(["session", "branch", "side-copy/latest", "from-copy"]).status).toBe(0);
    const listed = p.apex(["session", "list"]).stdout;
    expect(listed).toMatch(/ nested +stopped .* side\/checkpoint-001 /);
    expect(listed).toMatch(/ from-copy +stopped .* side-copy\/checkpoint-001 /);
    expect(listed).toMatch(new RegExp(` side +stopped .* ${main.slice(0, 8)}/checkpoint-002 `));
    // The running one as before, by flag or not.
    expect(json<{ session: { session_id: string; status: string } }>(p.apex(["status", "--json"])).session).toMatchObject({ session_id: main, name: null, status: "active" });
    expect(p.apex(["status"]).stdout.split("\n")[0]).toBe(`Session ${main}  active`);
    expect(json<{ session: { session_id: string } }>(p.apex(["--session", main, "status", "--json"])).session.session_id).toBe(main);
    const unknown = p.apex(["--session", "z".repeat(3000), "status", "--json"]);
    expect(unknown.status, unknown.stderr).toBe(3);
    expect(JSON.parse(unknown.stderr).error.code).toBe("APEX_E_NO_SESSION");
    // A checkpoint of a session named that does not exist: the error names it, not "no current session".
    const notRunning = p.apex(["--session", "nosuch", "checkpoint", "create", "x"]);
    expect(notRunning.status).toBe(3);
    expect(notRunning.stderr).toContain('error[APEX_E_NO_SESSION]: No session "nosuch" in this project.');
  });
});

describe("apex checkpoint delete of a checkpoint a branch or a merge needs", () => {
  it("is refused without --force (exit 4, naming the session, deleting nothing), through the supervisor and without one; --force deletes it", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    const p = project;
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["memory", "set", "/notes/a", '"base"']).status).toBe(0);
    const base = json<{ id: string }>(p.apex(["checkpoint", "create", "base", "--json"])).id;
    const side = json<{ session_id: string }>(p.apex(["session", "branch", base, "side", "--json"])).session_id;
    // A session's checkpoints, newest first, as the store has them (read here: a `checkpoint list` command before and after each refusal was most of this test's time).
    const ids = (session: string) => {
      const store = LmdbStore.open(p.storeDir, { readOnly: true });
      try {
        return listCheckpoints(store, session, { limit: 1000 }).items.map((item) => item.id);
      } finally {
        void store.close();
      }
    };
    const refused = (args: string[], why: string) => {
      const before = [ids(main), ids(side)];
      const result = p.apex(["checkpoint", "delete", ...args, "--json"]);
      expect(result.status, result.stderr).toBe(4);
      const error = JSON.parse(result.stderr).error as { code: string; message: string; hint: string; details: { needed_by: string[] } };
      expect(error.code).toBe("APEX_E_CONFLICT");
      expect(error.message).toContain(why);
      expect(error.message).toContain("Not deleting it.");
      expect(error.hint).toContain("--force deletes it anyway");
      expect([ids(main), ids(side)]).toEqual(before);
      return error;
    };
    // The session runs: the delete goes through its supervisor.
    expect(p.status().session).toMatchObject({ session_id: main, status: "active" });
    // Sessions as the other commands print them, by name, else the uuid's short form (it added the whole id); the details keep the ids.
    expect(refused([base], `${main.slice(0, 8)}/checkpoint-002 is needed: session side branches from it`).details.needed_by).toEqual([`branch ${side}`]);
    // Work on the branch, merged back: the merge checkpoint and the checkpoint merged in are needed too.
    p.start(["--continue", "side"]);
    expect(p.apex(["memory", "set", "/notes/b", '"side"']).status).toBe(0);
    const taken = json<{ id: string }>(p.apex(["checkpoint", "create", "side work", "--json"])).id;
    expect(p.apex(["checkpoint", "create", "more side work"]).status).toBe(0);
    p.start(["--continue", main]);
    expect(p.apex(["session", "merge", "side", main]).status).toBe(0);
    const merge = json<{ checkpoint_id: string; manifest: { trigger: string } }>(p.apex(["checkpoint", "show", `${main}/latest`, "--json"]));
    expect(merge.manifest.trigger).toBe("merge");
    // diff names each side's session as the other commands print it (it printed whole ids), through the supervisor.
    const diff = p.apex(["checkpoint", "diff", base, taken]);
    expect(diff.status, diff.stderr).toBe(0);
    expect(diff.stdout.split("\n")[0]).toMatch(new RegExp(`^From ${main.slice(0, 8)}/checkpoint-002 \\(${base.slice(0, 8)}\\) to side/checkpoint-\\d+ \\(${taken.slice(0, 8)}\\)$`));
    refused([merge.checkpoint_id], `it records a merge into session ${main.slice(0, 8)}`);
    const mergedIn = ids(side)[0]!; // side's newest: its stop checkpoint, what the merge took in
    refused([mergedIn], `it was merged into session ${main.slice(0, 8)}, and the next merge between them finds its base there`);
    // No supervisor runs: the same refusals, from the store.
    expect(p.apex(["stop"]).status).toBe(0);
    refused([base], "session side branches from it");
    // What nothing needs is deleted as before; --force deletes a needed one. Text names the session as above, --json by id and name.
    const deleted = p.apex(["checkpoint", "delete", taken]);
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(deleted.stdout).toMatch(new RegExp(`^Deleted side/checkpoint-\\d+ \\(${taken}\\)\\. `));
    expect(ids(side)).not.toContain(taken);
    const forced = p.apex(["checkpoint", "delete", base, "--force", "--json"]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(json<{ id: string }>(forced)).toMatchObject({ id: base, session_id: main, session_name: null });
    expect(ids(main)).not.toContain(base);
  });
});

describe("usage errors with --json", () => {
  it("are JSON on stderr with APEX_E_USAGE and exit 2, also when the command line itself is wrong", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    for (const args of [
      ["session", "branch", "--bogus"],
      ["session", "branch"],
      ["session", "merge", "only-one"],
      ["session", "share", "current"],
      ["serve", "--listen"],
      ["session", "tree", "extra"],
    ]) {
      const result = project.apex([...args, "--json"]);
      expect(result.status, args.join(" ")).toBe(2);
      expect(JSON.parse(result.stderr).error, `${args.join(" ")}: ${result.stderr}`).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2 });
      expect(result.stdout).toBe("");
    }
    // Without --json, commander's own text as before.
    expect(project.apex(["session", "branch", "--bogus"]).stderr).toContain("error[APEX_E_USAGE]: unknown option '--bogus'");
  });

  it("session merge's DST is optional, as --session fills it in: its usage says [dst], and with neither the merge is refused (exit 2, APEX_E_USAGE) saying so", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    // The usage showed <dst> as required, though `apex session merge SRC --session DST` takes it from --session.
    const help = project.apex(["session", "merge", "--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: apex session merge \[options\] <src> \[dst\]\n/);
    expect(help.stdout.replace(/\s+/g, " ")).toContain("left out, the one --session names: one of the two is needed");
    expect(help.stdout.replace(/\s+/g, " ")).toContain("DST left out is the session --session names (`apex session merge SRC --session DST`); with neither, the merge is refused (exit 2).");
    const text = project.apex(["session", "merge", "only-one"]);
    expect(text.status).toBe(2);
    expect(text.stdout).toBe("");
    expect(text.stderr).toBe("error[APEX_E_USAGE]: Name the session to merge into: DST after SRC, or --session DST.\n  hint: apex session merge SRC DST, or apex session merge SRC --session DST\n");
    const json = project.apex(["session", "merge", "only-one", "--dry-run", "--json"]);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2, message: "Name the session to merge into: DST after SRC, or --session DST." });
  });
});

describe("continuing a session that does not hold the live memory", () => {
  it("restores that session's own latest checkpoint, never the memory another session left", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-branch-");
    const p = project;
    const first = p.start(["--task", "first"]).session_id;
    expect(p.apex(["memory", "set", "/x", '"first"']).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    const second = p.start(["--task", "second"]).session_id;
    expect(p.apex(["memory", "set", "/x", '"second"']).status).toBe(0);
    expect(p.apex(["memory", "set", "/only-second", "1"]).status).toBe(0);
    const continued = json<{ restored_from: string | null; restore: { saved_before: string | null }; handover: { checkpoint: { name: string } } }>(p.apex(["start", "--continue", first, "--json"]));
    expect(continued.restored_from).not.toBeNull();
    // Nothing of the second session's memory was saved as the first one's: it is named where the
    // second session saved it, as a reference checkpoint show takes.
    expect(continued.restore.saved_before).toBe(`${second.slice(0, 8)}/${continued.handover.checkpoint.name}`);
    expect(json<{ memory_keys: string[] }>(p.apex(["checkpoint", "show", continued.restore.saved_before!, "--json"])).memory_keys).toContain("/only-second");
    expect(json<{ value: string }>(p.apex(["memory", "show", "/x", "--json"])).value).toBe("first");
    expect(p.apex(["memory", "show", "/only-second"]).status).toBe(3);
    // The session that ran last continues from the live state, as before.
    expect(p.apex(["stop"]).status).toBe(0);
    expect(p.apex(["memory", "set", "/after-stop", "1"]).status).toBe(0);
    const again = json<{ restored_from: string | null }>(p.apex(["start", "--continue", first, "--json"]));
    expect(again.restored_from).toBeNull();
    expect(json<{ value: number }>(p.apex(["memory", "show", "/after-stop", "--json"])).value).toBe(1);
  });
});

describe("a merge into a session that `start --continue` is bringing back", () => {
  it("waits for its supervisor to listen and is made there, after the restore: not made beside it and then rolled back", async () => {
    // DST's supervisor sleeps once in beforeCheckpoint when slow-restore exists (the milliseconds it holds, or
    // `wait`: until slow-restore.release exists): `start --continue CHECKPOINT`
    // saves the state it replaces (a checkpoint) after its claim, before its restore and before it listens.
    const slow = `apex.hooks.beforeCheckpoint.tapPromise("slow", async (x) => { if (existsSync("slow-restore") && process.title === "apex-supervisor") { renameSync("slow-restore", "slow-restore.began"); const said = readFileSync("slow-restore.began", "utf8"); if (said === "wait") while (!existsSync("slow-restore.release")) await new Promise((r) => setTimeout(r, 20)); else await new Promise((r) => setTimeout(r, Number(said) || 1500)); } return x; });`;
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  ./slow.mjs: {}\n`, "apex-branch-slow-");
    const p = project;
    writeFileSync(join(p.dir, "slow.mjs"), ['import { existsSync, readFileSync, renameSync } from "node:fs";', `export default { name: "slow", apply(apex) { ${slow} } };`, ""].join("\n"));
    const main = p.start(["--task", "main work"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "side"]).status).toBe(0);
    // main's write is saved as it makes way for side: what the merge brings.
    expect(p.apex(["memory", "set", "/from/main", "true"]).status).toBe(0);
    p.start(["--continue", "side"]);
    expect(p.apex(["memory", "set", "/side", "1"]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);

    writeFileSync(join(p.dir, "slow-restore"), "");
    const continued = p.apexAsync(["start", "--continue", "side/checkpoint-001", "--json"]);
    await waitFor("the supervisor's claim, before its restore", () => existsSync(join(p.dir, "slow-restore.began")));
    // It was merged here, into the memory the restore then rolled back: "live memory updated", and gone.
    const merged = p.apex(["session", "merge", main, "side", "--json"]);
    const ready = await continued.done;
    expect(ready.status, ready.stderr).toBe(0);
    const supervisor = (JSON.parse(ready.stdout) as { supervisor_pid: number }).supervisor_pid;
    expect(merged.status, merged.stderr).toBe(0);
    expect(JSON.parse(merged.stdout)).toMatchObject({ applied: "live", writer_pid: supervisor });
    expect(json<{ value: boolean }>(p.apex(["memory", "show", "/from/main", "--json"])).value).toBe(true);

    // Sent through apex serve (`--remote HOST/side`), it was refused ("run the merge again"): it waits the same way.
    // main goes on first, so that there is something new to merge.
    const side = JSON.parse(ready.stdout).session_id as string;
    p.start(["--continue", main]);
    expect(p.apex(["memory", "set", "/from/main2", "true"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "main goes on"]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    const server = p.apexAsync(["serve", "--listen", "127.0.0.1:0", "--json"]);
    stops.push(async () => {
      if (server.child.exitCode === null) process.kill(server.child.pid!, "SIGCONT");
      await endChild(server);
    });
    const url = await waitFor("apex serve's address", () => (server.output().includes("}") ? (JSON.parse(server.output()) as { url: string }).url : undefined), 30_000);
    const token = share(p, side, "olga", "owner").token;
    share(p, main, "olga", "viewer");
    const slowStart = async (ms: number | "wait", env: NodeJS.ProcessEnv = {}) => {
      rmSync(join(p.dir, "slow-restore.began"), { force: true });
      rmSync(join(p.dir, "slow-restore.release"), { force: true });
      writeFileSync(join(p.dir, "slow-restore"), String(ms));
      const run = p.apexAsync(["start", "--continue", "side/checkpoint-001", "--json"], { env });
      await waitFor("the supervisor's claim, before its restore", () => existsSync(join(p.dir, "slow-restore.began")));
      return run;
    };
    // A client gone while the server waits (Ctrl-C, a dropped connection) is sent nothing, and nothing is merged for it:
    // also one gone just before the supervisor listens. The restore ends once the server has closed its end of the
    // connection (it knows the client is gone): the server's look for the client came only between its looks for the
    // supervisor, so that a supervisor listening within 50 ms of the client's leaving was sent the merge all the same.
    // (Before, a restore of 1.5 s, the client gone 0.3 s after its call: a loaded machine could close up that window.)
    // The client leaves once the server has read its request (its end's receive queue is empty) and waits (asleep in its
    // event loop): after a fixed 300 ms, a loaded machine's server could still be without the request, and nothing was tested.
    const abandoned = await slowStart("wait");
    const port = Number(new URL(url).port);
    const body = JSON.stringify({ source: main, destination: side });
    const call = httpRequest(`${url}/api/sessions/${side}/rpc/session.merge`, { method: "POST", agent: false, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), authorization: `Bearer ${token}` } });
    call.on("error", () => {});
    call.end(body);
    const sent = await waitFor("the request sent", () => (call.socket && !call.socket.connecting && call.socket.writableLength === 0 && call.writableFinished ? call.socket : undefined));
    await waitFor("the server to read the merge's request", () => readByServer(port, sent.localPort!));
    await waitFor("the server to wait on the supervisor", () => asleepInEventLoop(server.child.pid!));
    call.destroy();
    await waitFor("the server to close the client's connection", () => serverConnections(port) === 0);
    writeFileSync(join(p.dir, "slow-restore.release"), "");
    expect((await abandoned.done).status).toBe(0);
    expect(p.apex(["memory", "show", "/from/main2"]).status).toBe(3);
    expect(p.apex(["stop"]).status).toBe(0);

    // So too with its reply streamed (heartbeats while the server waits), the client gone while the server was held
    // (SIGSTOP) and the supervisor listening meanwhile: going on, the server ran its overdue look for the supervisor
    // first, found it listening and sent it the merge before it read the client's end of the connection, there all along.
    // (side's supervisor beats every 0.5 s while it starts: a quarter of its window.)
    const held = await slowStart("wait", { APEX_PLUGIN_COMMAND_IDLE_MS: "2000" });
    const leaving = new AbortController();
    const streamed = await fetch(`${url}/api/sessions/${side}/rpc/session.merge`, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/x-ndjson, application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ source: main, destination: side, heartbeat_ms: 500 }),
      signal: leaving.signal,
    });
    expect([streamed.status, streamed.headers.get("content-type")]).toEqual([200, "application/x-ndjson; charset=utf-8"]);
    const beats = streamed.body!.getReader();
    expect(new TextDecoder().decode((await beats.read()).value)).toContain('{"heartbeat":true}');
    process.kill(server.child.pid!, "SIGSTOP");
    leaving.abort();
    await beats.read().catch(() => undefined);
    await waitFor("the client's end at the server (CLOSE_WAIT)", () => serverConnectionStates(port).includes(CLOSE_WAIT) || undefined);
    writeFileSync(join(p.dir, "slow-restore.release"), "");
    expect((await held.done).status).toBe(0);
    process.kill(server.child.pid!, "SIGCONT");
    await waitFor("the server to close the client's connection", () => !serverConnectionStates(port).includes(CLOSE_WAIT) || undefined, 10_000);
    expect(p.apex(["memory", "show", "/from/main2"]).status).toBe(3);
    expect(p.apex(["stop"]).status).toBe(0);

    const again = await slowStart(1500);
    const viaServe = remote(p, url, side, token, ["session", "merge", main, "side", "--json"]);
    const back = await again.done;
    expect(back.status, back.stderr).toBe(0);
    expect(viaServe.status, viaServe.stderr).toBe(0);
    expect(JSON.parse(viaServe.stdout)).toMatchObject({ applied: "live", writer_pid: (JSON.parse(back.stdout) as { supervisor_pid: number }).supervisor_pid });
    expect(json<{ value: boolean }>(p.apex(["memory", "show", "/from/main2", "--json"])).value).toBe(true);
  });
});

describe("--worktree and --git", () => {
  function repoProject(plugin?: string) {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git: {}\n${plugin ? "  ./plugin.mjs: {}\n" : ""}`, "apex-branch-git-");
    const dir = project.dir;
    if (plugin) writeFileSync(join(dir, "plugin.mjs"), plugin);
    initRepo(git, dir, { ".gitignore": "ran-here.txt\n", "shared.txt": "one\ntwo\nthree\n" });
    const worktree = join(mkdtempSync(join(tmpdir(), "apex-worktree-")), "feature");
    extra.push(join(worktree, ".."));
    return { p: project, dir, worktree };
  }

  it("the branch gets a git worktree on apex/NAME at the checkpoint's commit where its agents run; --git merges its branch", () => {
    const { p, dir, worktree } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    const commit = git(dir, "rev-parse", "HEAD");
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const report = json<{ worktree: { path: string; branch: string; commit: string } }>(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree, "--json"]));
    expect(report.worktree).toEqual({ path: worktree, branch: "apex/feature", commit });
    expect(git(worktree, "rev-parse", "--abbrev-ref", "HEAD")).toBe("apex/feature");

    p.start(["--continue", "feature"]);
    // (30 s: the agent's first line runs once its shell starts, which a loaded machine can hold up for seconds.)
    const deadline = Date.now() + 30_000;
    while (!existsSync(join(worktree, "ran-here.txt")) && Date.now() < deadline) execFileSync("sleep", ["0.1"]);
    expect(readFileSync(join(worktree, "ran-here.txt"), "utf8").trim()).toBe(worktree);
    writeFileSync(join(worktree, "feature.txt"), "feature\n");
    git(worktree, "add", "feature.txt");
    git(worktree, "commit", "-qm", "feature");
    // The branch runs beside main (its own worktree): commands name it, or run in its worktree.
    expect(p.apex(["memory", "set", "/feature", "true"], { cwd: worktree }).status).toBe(0);
    expect(p.apex(["--session", "feature", "checkpoint", "create", "feature work"]).status).toBe(0);
    expect(p.apex(["memory", "show", "/feature"]).status).toBe(3); // main does not see it before the merge

    // An uncommitted change in the branch's worktree is not merged by git, and the merge says so;
    // so is a memory write the branch made after its checkpoint (a merge takes the checkpoint).
    writeFileSync(join(worktree, "feature.txt"), "feature, not committed\n");
    expect(p.apex(["--session", "feature", "memory", "set", "/late", "true"]).status).toBe(0);
    const run = p.apex(["session", "merge", "feature", main, "--git", "--json"]);
    expect(run.stderr).toContain("warning: feature wrote memory or tasks after checkpoint-");
    expect(run.stderr).toContain("(apex --session feature checkpoint create)");
    expect(JSON.parse(run.stdout).source.changed_since_checkpoint).toBe("running");
    expect(run.stderr).toContain(`warning: ${worktree} has 1 uncommitted change (feature.txt); only apex/feature's commits are merged.`);
    const merged = json<{ git: { source_branch: string; commit: string }; applied: string }>(run);
    expect(merged.git.source_branch).toBe("apex/feature");
    expect(git(dir, "rev-parse", "HEAD")).toBe(merged.git.commit);
    expect(readFileSync(join(dir, "feature.txt"), "utf8")).toBe("feature\n");
    expect(json<{ value: boolean }>(p.apex(["memory", "show", "/feature", "--json"])).value).toBe(true);
    expect(p.apex(["memory", "show", "/late"]).status).toBe(3);
    // beforeGit fired first: the checkpoint plugin's beforeGit checkpoint is in main.
    const triggers = json<{ items: Array<{ trigger: string }> }>(p.apex(["checkpoint", "list", "--json"])).items.map((item) => item.trigger);
    expect(triggers).toContain("beforeGit");

    // Commits with no memory change: the memory has nothing to merge, and the text still says what git merged.
    writeFileSync(join(worktree, "more.txt"), "more\n");
    git(worktree, "add", "more.txt");
    git(worktree, "commit", "-qm", "more");
    // An untracked file in main's tree where the branch adds one: git would refuse the merge. The dry
    // run said "no conflict" (merge-tree sees commits only) and the merge then failed as a "conflict";
    // both say which file is in the way, before anything is fired or written.
    writeFileSync(join(dir, "more.txt"), "mine, untracked\n");
    const head = git(dir, "rev-parse", "HEAD");
    for (const args of [["--dry-run"], []]) {
      const blocked = p.apex(["session", "merge", "feature", main, "--git", ...args]);
      expect(blocked.status, blocked.stdout).toBe(4);
      expect(blocked.stderr).toContain(`${dir} has an untracked file the merge of apex/feature would overwrite (more.txt)`);
    }
    expect(git(dir, "rev-parse", "HEAD")).toBe(head);
    expect(readFileSync(join(dir, "more.txt"), "utf8")).toBe("mine, untracked\n");
    rmSync(join(dir, "more.txt"));
    // An uncommitted change in main's tree: refused the same way, saying that no memory was merged either (it said only that git did not merge).
    writeFileSync(join(dir, "feature.txt"), "feature, changed in main's tree\n");
    for (const args of [["--dry-run"], [], ["--json"]]) {
      const dirty = p.apex(["session", "merge", "feature", main, "--git", ...args]);
      expect(dirty.status, dirty.stdout).toBe(4);
      expect(dirty.stderr).toContain(`${dir} has uncommitted changes; not merging apex/feature into it, and no memory was merged.`);
      if (args[0] === "--json") expect(JSON.parse(dirty.stderr).error).toMatchObject({ code: "APEX_E_DIRTY_TREE", details: { directory: dir } });
    }
    expect(git(dir, "rev-parse", "HEAD")).toBe(head);
    git(dir, "checkout", "--", "feature.txt");
    const gitOnly = p.apex(["session", "merge", "feature", main, "--git"]);
    expect(gitOnly.status, gitOnly.stderr).toBe(0);
    expect(gitOnly.stdout).toMatch(/^Already up to date: feature\/checkpoint-\d+ is already part of \w{8}'s memory\.$/m);
    expect(gitOnly.stdout).toContain(`git: merged apex/feature (HEAD ${git(dir, "rev-parse", "HEAD").slice(0, 12)})`);
    expect(readFileSync(join(dir, "more.txt"), "utf8")).toBe("more\n");
    // Run again with nothing new in git or memory: a no-op. It took a beforeGit checkpoint each time, for a git merge that changed nothing.
    const count = json<{ items: unknown[] }>(p.apex(["checkpoint", "list", "--json"])).items.length;
    const again = p.apex(["session", "merge", "feature", main, "--git"]);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toContain(`git: apex/feature was merged already (HEAD ${git(dir, "rev-parse", "HEAD").slice(0, 12)})`);
    expect(json<{ items: unknown[] }>(p.apex(["checkpoint", "list", "--json"])).items.length).toBe(count);
  });

  it("a memory write in a branch's worktree before its first start is refused (exit 4), not reported saved and then lost as that start restores its checkpoint", () => {
    const { p, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["memory", "set", "/notes/a", '"base"']).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    const feature = json<Array<{ session_id: string; name: string | null }>>(p.apex(["session", "list", "--json"])).find((session) => session.name === "feature")!.session_id;
    // It said "set /notes/b (revision N)", exit 0, and the branch's first start wiped it.
    const file = join(worktree, "..", "entries.json");
    writeFileSync(file, JSON.stringify({ "/notes/c": 3 }));
    for (const [args, cwd] of [
      [["memory", "set", "/notes/b", '"early"', "--json"], worktree],
      [["memory", "import", file, "--json"], worktree],
      [["memory", "delete", "/notes/a", "--json"], worktree],
      [["--session", "feature", "memory", "set", "/notes/b", '"early"', "--json"], p.dir],
    ] as Array<[string[], string]>) {
      const refused = p.apex(args, { cwd });
      expect(refused.status, refused.stderr).toBe(4);
      expect(JSON.parse(refused.stderr).error).toMatchObject({
        code: "APEX_E_SESSION_STATE",
        message: expect.stringContaining("Session feature has not run yet"),
        hint: expect.stringContaining("apex start --continue feature"),
        details: { session_id: feature },
      });
    }
    expect(p.apex(["memory", "query", `/sessions/${feature}/memory`, "--keys", "--json"]).stdout.trim()).toBe("[]");
    // Reads there said "Nothing is stored at /notes/a" (exit 3), an empty memory, where the branch holds its checkpoint's.
    for (const args of [["memory", "show", "/notes/a", "--json"], ["memory", "query", "/**", "--json"], ["memory", "export", "--json"]]) {
      const early = p.apex(args, { cwd: worktree });
      expect(early.status, early.stdout).toBe(4);
      expect(JSON.parse(early.stderr).error).toMatchObject({ code: "APEX_E_SESSION_STATE", message: expect.stringContaining("Session feature has not run yet"), hint: expect.stringContaining("apex checkpoint show feature/latest") });
    }
    // Started, it holds the checkpoint's memory, and takes writes.
    p.start(["--continue", "feature"]);
    expect(p.apex(["memory", "show", "/notes/a"], { cwd: worktree }).stdout).toBe('"base"\n');
    expect(p.apex(["memory", "set", "/notes/b", '"later"'], { cwd: worktree }).status).toBe(0);
    expect(p.apex(["--session", "feature", "memory", "show", "/notes/b"]).stdout).toBe('"later"\n');
  });

  it("refuses a --worktree directory that cannot be created there (/proc) as a usage error, before anything is made: no git branch, no session, none of the directories it tried", () => {
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const sessions = p.apex(["session", "list", "--json"]).stdout;
    // It was git's "could not create directory", APEX_E_GIT_FAILED, exit 1. (/proc refuses root too, whom permissions do not.)
    for (const target of ["/proc/apex-worktree", "/proc/apex-worktree/deeper/feature"]) {
      const refused = p.apex(["session", "branch", "latest", "feature", "--worktree", target, "--json"]);
      expect(refused.status, refused.stderr).toBe(2);
      const error = JSON.parse(refused.stderr).error;
      expect(error).toMatchObject({ code: "APEX_E_USAGE", details: { path: target, cannot_create: "/proc/apex-worktree" } });
      expect(error.message).toMatch(new RegExp(`^--worktree ${target} cannot be created there: .*/proc.*; nothing was made\\.$`));
      if (error.details.errno === "ENOENT") expect(error.message).toContain("/proc takes no new directories (a pseudo file system, such as /proc)");
      expect(error.hint).toContain("--worktree alone");
      expect(git(dir, "branch", "--list", "apex/*")).toBe("");
    }
    expect(p.apex(["session", "list", "--json"]).stdout).toBe(sessions);
    // Found by making the directories and removing them at once: a refusal that follows (a checkpoint
    // that does not exist) leaves none of them.
    const deep = join(worktree, "..", "new", "deeper", "feature");
    const unknown = p.apex(["session", "branch", "checkpoint-099", "feature", "--worktree", deep, "--json"]);
    expect(unknown.status, unknown.stderr).toBe(3);
    expect(existsSync(join(worktree, "..", "new"))).toBe(false);
    expect(p.apex(["session", "list", "--json"]).stdout).toBe(sessions);
    // One that can be made is made, with the directories leading to it.
    const made = p.apex(["session", "branch", "latest", "feature", "--worktree", deep, "--json"]);
    expect(made.status, made.stderr).toBe(0);
    expect(git(deep, "rev-parse", "--abbrev-ref", "HEAD")).toBe("apex/feature");
  });

  it("refuses the default worktree directory (--worktree alone) where the repository's parent takes no new directories, as a usage error naming it, before anything is made", () => {
    // A parent root cannot write in either: an immutable directory (chattr +i; root passes permission checks).
    const parent = mkdtempSync(join(tmpdir(), "apex-immutable-"));
    extra.push(parent);
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git: {}\n`, `${basename(parent)}/apex-branch-git-`);
    const p = project;
    initRepo(git, p.dir, { "shared.txt": "one\n" });
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const sessions = p.apex(["session", "list", "--json"]).stdout;
    const target = `${p.dir}-feature`;
    execFileSync("chattr", ["+i", parent]);
    try {
      // It was git's "could not create directory", APEX_E_GIT_FAILED, exit 1.
      const refused = p.apex(["session", "branch", "latest", "feature", "--worktree", "--json"]);
      expect(refused.status, refused.stderr).toBe(2);
      const error = JSON.parse(refused.stderr).error;
      expect(error).toMatchObject({ code: "APEX_E_USAGE", details: { path: target, cannot_create: target, errno: "EPERM" } });
      expect(error.message).toBe(`The default worktree directory ${target} (beside the repository) cannot be created there: ${parent} takes no new directories (operation not permitted); nothing was made.`);
      expect(error.hint).toContain("--worktree DIR");
      expect(git(p.dir, "branch", "--list", "apex/*")).toBe("");
      expect(p.apex(["session", "list", "--json"]).stdout).toBe(sessions);
    } finally {
      execFileSync("chattr", ["-i", parent]);
    }
    // Once it can be made, it is.
    const made = p.apex(["session", "branch", "latest", "feature", "--worktree", "--json"]);
    expect(made.status, made.stderr).toBe(0);
    expect(git(target, "rev-parse", "--abbrev-ref", "HEAD")).toBe("apex/feature");
  });

  it("refuses a --worktree directory that exists and is not empty, or an empty name, leaving no git branch and no session", () => {
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const sessions = p.apex(["session", "list", "--json"]).stdout;
    const occupied = join(worktree, "..", "occupied");
    mkdirSync(occupied);
    writeFileSync(join(occupied, "keep.txt"), "mine\n");
    for (const [target, code, exit] of [
      [occupied, "APEX_E_CONFLICT", 4],
      [dir, "APEX_E_CONFLICT", 4],
      ["", "APEX_E_USAGE", 2],
      // Inside the repository's .git or the project's .apex: git would make it there (it did).
      [join(dir, ".git", "feature"), "APEX_E_USAGE", 2],
      [join(dir, ".git"), "APEX_E_USAGE", 2],
      [join(dir, ".apex", "wt", "feature"), "APEX_E_USAGE", 2],
      [".apex/feature", "APEX_E_USAGE", 2],
      // Inside the project's working tree: git makes it (it shows there as untracked), and the project's agents and tools took its files for the project's.
      [join(dir, "worktrees", "feature"), "APEX_E_USAGE", 2],
      ["feature", "APEX_E_USAGE", 2],
      // Below a file: never a directory (git's "could not create leading directories", APEX_E_GIT_FAILED, exit 1).
      [join(occupied, "keep.txt", "feature"), "APEX_E_USAGE", 2],
    ] as const) {
      const refused = p.apex(["session", "branch", "latest", "feature", "--worktree", target, "--json"]);
      expect(refused.status, `${target}: ${refused.stderr}`).toBe(exit);
      expect(JSON.parse(refused.stderr).error.code).toBe(code);
      expect(git(dir, "branch", "--list", "apex/*")).toBe("");
    }
    expect(existsSync(join(dir, ".git", "feature"))).toBe(false);
    expect(existsSync(join(dir, ".apex", "wt"))).toBe(false);
    expect(existsSync(join(dir, "worktrees"))).toBe(false);
    expect(existsSync(join(dir, "feature"))).toBe(false);
    expect(git(dir, "status", "--porcelain")).toBe("");
    expect(readFileSync(join(occupied, "keep.txt"), "utf8")).toBe("mine\n");
    expect(p.apex(["session", "list", "--json"]).stdout).toBe(sessions);
    // A checkpoint whose commit is gone (reset and pruned): named as --git-checkout names it, exit 3,
    // not git's "not a valid branch point" (APEX_E_GIT_FAILED, exit 1).
    writeFileSync(join(dir, "gone.txt"), "gone\n");
    git(dir, "add", "gone.txt");
    git(dir, "commit", "-qm", "gone");
    const gone = git(dir, "rev-parse", "HEAD");
    const goneCheckpoint = json<{ name: string }>(p.apex(["checkpoint", "create", "at a commit that goes", "--json"])).name;
    git(dir, "reset", "-q", "--hard", "HEAD~1");
    git(dir, "reflog", "expire", "--expire=now", "--all");
    git(dir, "gc", "-q", "--prune=now");
    const missing = p.apex(["session", "branch", goneCheckpoint, "feature", "--worktree", join(worktree, "..", "gone"), "--json"]);
    expect(missing.status, missing.stderr).toBe(3);
    expect(JSON.parse(missing.stderr).error).toMatchObject({ code: "APEX_E_GIT_COMMIT_MISSING", details: { commit: gone } });
    expect(git(dir, "branch", "--list", "apex/*")).toBe("");
    expect(p.apex(["session", "list", "--json"]).stdout).toBe(sessions);
    // A git branch git cannot have beside apex/feature (refs are files): named like its directory, or
    // below it. Refused as a branch that exists (exit 4, naming it); it was git's "cannot lock ref", exit 1.
    for (const clash of ["apex", "apex/feature/deep"]) {
      git(dir, "branch", clash);
      const blocked = p.apex(["session", "branch", "checkpoint-002", "feature", "--worktree", join(worktree, "..", "blocked"), "--json"]);
      expect(blocked.status, blocked.stderr).toBe(4);
      expect(JSON.parse(blocked.stderr).error).toMatchObject({ code: "APEX_E_BRANCH_EXISTS", details: { branch: "apex/feature", clashes_with: clash } });
      expect(existsSync(join(worktree, "..", "blocked"))).toBe(false);
      git(dir, "branch", "-D", clash);
    }
    expect(p.apex(["session", "list", "--json"]).stdout).toBe(sessions);
    // An empty directory is fine.
    const empty = join(worktree, "..", "empty");
    mkdirSync(empty);
    expect(p.apex(["session", "branch", "checkpoint-002", "feature", "--worktree", empty]).status).toBe(0);
    expect(git(empty, "rev-parse", "--abbrev-ref", "HEAD")).toBe("apex/feature");
    // Inside that branch's worktree: refused as inside the project's (it would be in the branch's git status).
    const nested = p.apex(["session", "branch", "checkpoint-002", "nested", "--worktree", join(empty, "nested"), "--json"]);
    expect(nested.status, nested.stderr).toBe(2);
    expect(JSON.parse(nested.stderr).error).toMatchObject({ code: "APEX_E_USAGE", details: { inside: realpathSync(empty) } });
    expect(git(dir, "branch", "--list", "apex/nested")).toBe("");
    // A `session branch --worktree` killed after git made the worktree, before the session was
    // recorded, leaves apex/NAME checked out there: the rerun takes it over (it was refused, with a
    // `git branch -D` that git refuses for a checked-out branch).
    const head = git(dir, "rev-parse", "HEAD");
    const left = join(worktree, "..", "left");
    git(dir, "worktree", "add", "-q", "-b", "apex/left", left, head);
    const rerun = p.apex(["session", "branch", "checkpoint-002", "left", "--worktree", left, "--json"]);
    expect(rerun.status, rerun.stderr).toBe(0);
    expect(JSON.parse(rerun.stdout).worktree).toEqual({ path: left, branch: "apex/left", commit: head });
    // One worked in since is not taken over: the error names the worktree and both ways out.
    const used = join(worktree, "..", "used");
    git(dir, "worktree", "add", "-q", "-b", "apex/used", used, head);
    writeFileSync(join(used, "work.txt"), "mine\n");
    const usedRun = p.apex(["session", "branch", "checkpoint-002", "used", "--worktree", used, "--json"]);
    expect(usedRun.status, usedRun.stderr).toBe(4);
    expect(JSON.parse(usedRun.stderr).error).toMatchObject({
      code: "APEX_E_BRANCH_EXISTS",
      hint: `Choose another session name, or remove both: git worktree remove ${JSON.stringify(used)} && git branch -D apex/used`,
    });
    expect(readFileSync(join(used, "work.txt"), "utf8")).toBe("mine\n");
    expect(p.apex(["session", "list"]).stdout).not.toContain("used");
  });

  it("two runs of one branch --worktree at once: the one refused never removes the worktree the other recorded", async () => {
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    const base = json<{ id: string }>(p.apex(["checkpoint", "create", "base", "--json"])).id;
    expect(p.apex(["stop"]).status).toBe(0);
    const args = ["session", "branch", base, "same", "--worktree", worktree, "--json"];
    // The first made the worktree and is slow to record the session; the second takes the worktree
    // over as an interrupted run's and records the session first. The first is held where that
    // happens, by git's post-checkout hook of its `git worktree add` (after the checkout, before git
    // returns), until a line comes down a pipe: a SIGSTOP of the command at some moment after the
    // checkout could catch it later, holding the store's write lock, which the second then waited
    // out (60 s, the test's whole time).
    const hold = join(worktree, "..", "hold");
    expect(spawnSync("mkfifo", [hold]).status).toBe(0);
    const hook = join(dir, ".git", "hooks", "post-checkout");
    mkdirSync(join(hook, ".."), { recursive: true });
    // (the pipe opened for reading and writing: opening it does not wait for a writer, and the line is read once written)
    writeFileSync(hook, ['#!/bin/sh', '[ -n "$HOLD_CHECKOUT" ] || exit 0', 'exec 3<>"$HOLD_CHECKOUT"', ': > "$HOLD_CHECKOUT.held"', 'read -r _ <&3', ""].join("\n"), { mode: 0o755 });
    const slow = p.apexAsync(args, { env: { HOLD_CHECKOUT: hold } });
    // (ENXIO: no hook reads the pipe, nothing is held)
    const release = () => {
      let fd: number;
      try {
        fd = openSync(hold, constants.O_WRONLY | constants.O_NONBLOCK);
      } catch {
        return;
      }
      try {
        writeSync(fd, "go\n");
      } finally {
        closeSync(fd);
      }
    };
    try {
      await waitFor("the first run held after its checkout", () => existsSync(`${hold}.held`) || slow.child.exitCode !== null);
      expect(slow.child.exitCode, slow.errors()).toBe(null);
      expect(git(worktree, "status", "--porcelain")).toBe("");
      const fast = p.apex(args);
      expect(fast.status, fast.stderr).toBe(0);
      expect(JSON.parse(fast.stdout).worktree).toMatchObject({ path: worktree, branch: "apex/same" });
    } finally {
      if (slow.child.exitCode === null) release();
    }
    const refused = await slow.done;
    expect(refused.status, refused.stderr).toBe(4);
    expect(JSON.parse(refused.stderr).error.code).toBe("APEX_E_CONFLICT");
    // It removed them: the session named a worktree and a git branch that were gone.
    expect(existsSync(join(worktree, "shared.txt"))).toBe(true);
    expect(git(worktree, "rev-parse", "--abbrev-ref", "HEAD")).toBe("apex/same");
    expect(git(dir, "worktree", "list")).toContain(worktree);
  });

  it("a supervisor that got the branch request and did not answer (stopped) keeps the worktree for the session it then records", async () => {
    const { p, dir, worktree } = repoProject();
    const supervisor = p.start(["--task", "main"]).supervisor_pid;
    process.kill(supervisor, "SIGSTOP");
    let held;
    try {
      held = p.apex(["session", "branch", "latest", "held", "--worktree", worktree, "--json"]);
    } finally {
      process.kill(supervisor, "SIGCONT");
    }
    expect(held.status, held.stderr).toBe(1);
    expect(JSON.parse(held.stderr).error).toMatchObject({ code: "APEX_E_TIMEOUT", details: { worktree, branch: "apex/held" } });
    // Let go on, it records the session: with its worktree (the command had removed it, and the git branch).
    await waitFor("the session held", () => p.apex(["session", "list", "--json"]).stdout.includes('"held"'));
    expect(git(worktree, "rev-parse", "--abbrev-ref", "HEAD")).toBe("apex/held");
    expect(git(dir, "worktree", "list")).toContain(worktree);
  });

  it("a store that cannot be read once the worktree is made keeps the worktree, and the error says so and how to go on", () => {
    // It was: the store's error alone, the worktree and its git branch left without a word (it could not tell
    // whether a session recorded them).
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    // git's post-checkout hook of the command's `git worktree add` damages the store file, after the checkpoint was read.
    const hook = join(dir, ".git", "hooks", "post-checkout");
    mkdirSync(join(hook, ".."), { recursive: true });
    writeFileSync(hook, ["#!/bin/sh", '[ -n "$DAMAGE_STORE" ] || exit 0', 'head -c 65536 /dev/urandom > "$DAMAGE_STORE"', ""].join("\n"), { mode: 0o755 });
    const failed = p.apex(["session", "branch", "latest", "feature", "--worktree", worktree, "--json"], { env: { DAMAGE_STORE: join(dir, ".apex", "store.mdb") } });
    expect(failed.status, failed.stderr).not.toBe(0);
    const error = JSON.parse(failed.stderr).error as { code: string; hint: string; details: Record<string, unknown> };
    expect(error.code).toMatch(/^APEX_E_STORE/);
    expect(error.details).toMatchObject({ worktree, branch: "apex/feature" });
    expect(error.hint).toContain(`The worktree ${worktree} (git branch apex/feature) is kept for the session the store may record (it could not be read to tell)`);
    expect(error.hint).toContain(`git worktree remove ${JSON.stringify(worktree)} && git branch -D apex/feature`);
    expect(git(dir, "worktree", "list")).toContain(worktree);
  });

  it("a worktree from a checkpoint taken with uncommitted changes says they are not in it", () => {
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "clean"]).status).toBe(0);
    const clean = p.apex(["session", "branch", "latest", "clean-one", "--worktree", join(worktree, "..", "clean-one")]);
    expect(clean.status, clean.stderr).toBe(0);
    expect(clean.stderr).not.toContain("uncommitted");
    writeFileSync(join(dir, "shared.txt"), "one\ntwo\nchanged\n");
    expect(p.apex(["checkpoint", "create", "with a change"]).status).toBe(0);
    const dirty = p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]);
    expect(dirty.status, dirty.stderr).toBe(0);
    expect(dirty.stderr).toMatch(/warning: .*checkpoint-\d+ was taken with uncommitted changes in the working tree; the worktree has commit [0-9a-f]{12} without them/);
    expect(readFileSync(join(worktree, "shared.txt"), "utf8")).toBe("one\ntwo\nthree\n");
  });

  it("continuing a branch whose worktree was deleted is refused before anything starts, with the command that recreates it", () => {
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    // In its worktree, status is the branch's, as it ended, as checkpoint list's is: it said "No session is active in this project" while main ran.
    const here = p.apex(["status", "--json"], { cwd: worktree });
    expect(JSON.parse(here.stdout).session, here.stderr).toMatchObject({ name: "feature", status: "stopped", worktree });
    // Moved by hand: git would refuse a second checkout of apex/feature, so the hint moves it back.
    const moved = join(worktree, "..", "moved");
    git(dir, "worktree", "move", worktree, moved);
    const away = p.apex(["start", "--continue", "feature", "--json"]);
    expect(away.status, away.stderr).toBe(3);
    expect(JSON.parse(away.stderr).error).toMatchObject({ code: "APEX_E_NOT_FOUND", hint: `Move it back from the project: git worktree move ${JSON.stringify(moved)} ${JSON.stringify(worktree)}` });
    expect(p.runningSessions()).toHaveLength(1);
    // A git merge into it says the same (it said "no longer exists", with placeholders for the way back).
    expect(p.apex(["session", "branch", "latest", "other", "--worktree", join(worktree, "..", "other")]).status).toBe(0);
    const into = p.apex(["session", "merge", "other", "feature", "--git", "--dry-run", "--json"]);
    expect(into.status, into.stderr).toBe(3);
    expect(JSON.parse(into.stderr).error).toMatchObject({
      code: "APEX_E_NOT_FOUND",
      message: expect.stringContaining(`its branch apex/feature is checked out at ${moved} now`),
      hint: `Move it back from the project: git worktree move ${JSON.stringify(moved)} ${JSON.stringify(worktree)}; or merge without --git.`,
    });
    git(dir, "worktree", "move", moved, worktree);
    rmSync(worktree, { recursive: true, force: true });
    const refused = p.apex(["start", "--continue", "feature", "--json"]);
    expect(refused.status, refused.stderr).toBe(3);
    const error = JSON.parse(refused.stderr).error;
    expect(error.code).toBe("APEX_E_NOT_FOUND");
    expect(error.hint).toContain(`git worktree add "${worktree}" apex/feature`);
    expect(p.runningSessions()).toHaveLength(1);
    expect(json<Array<{ name: string | null; status: string }>>(p.apex(["session", "list", "--json"])).find((session) => session.name === "feature")!.status).toBe("stopped");
    // Given to a new branch, that directory was both sessions' tree: feature, continued, ran there on the new one's git branch.
    const taken = p.apex(["session", "branch", "latest", "taken", "--worktree", worktree, "--json"]);
    expect(taken.status, taken.stderr).toBe(4);
    expect(JSON.parse(taken.stderr).error).toMatchObject({ code: "APEX_E_CONFLICT", hint: expect.stringContaining(`git worktree add "${worktree}" apex/feature`) });
    expect(existsSync(worktree)).toBe(false);
    expect(git(dir, "branch", "--list", "apex/taken")).toBe("");
    // A plain directory made in its place is not the worktree either: its agents would run outside the repository.
    mkdirSync(worktree);
    writeFileSync(join(worktree, "notes.txt"), "not a worktree\n");
    const plain = p.apex(["start", "--continue", "feature", "--json"]);
    expect(plain.status, plain.stderr).toBe(3);
    expect(JSON.parse(plain.stderr).error.message).toContain("no longer a git worktree of this project");
    expect(p.runningSessions()).toHaveLength(1);
    rmSync(worktree, { recursive: true, force: true });
    // Recreated as the hint says, it continues.
    git(dir, "worktree", "prune");
    git(dir, "worktree", "add", worktree, "apex/feature");
    expect(p.start(["--continue", "feature"]).continued).toBe(true);
  });

  it("a worktree moved with mv: start, merge --git and branch name where it went and the git worktree repair that keeps its files; run as said, it continues", () => {
    const { p, dir, worktree } = repoProject();
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "other", "--worktree", join(worktree, "..", "other")]).status).toBe(0);
    writeFileSync(join(worktree, "work.txt"), "not committed\n");
    const moved = join(worktree, "..", "renamed");
    renameSync(worktree, moved);
    // The hint was "git worktree prune && git worktree add": a new checkout, the moved one's files left behind.
    const back = `git worktree repair ${JSON.stringify(moved)} && git worktree move ${JSON.stringify(moved)} ${JSON.stringify(worktree)}`;
    const start = p.apex(["start", "--continue", "feature", "--json"]);
    expect(start.status, start.stderr).toBe(3);
    const error = JSON.parse(start.stderr).error;
    expect(error).toMatchObject({ code: "APEX_E_NOT_FOUND", details: { worktree, moved_to: moved } });
    expect(error.message).toContain(`(it is at ${moved} now)`);
    expect(error.hint).toContain(back);
    expect(error.hint).not.toContain("prune");
    const into = p.apex(["session", "merge", "other", "feature", "--git", "--dry-run", "--json"]);
    expect(into.status, into.stderr).toBe(3);
    expect(JSON.parse(into.stderr).error.hint).toBe(`It was moved to ${moved} without git knowing: move it back, from the project: ${back}; or merge without --git.`);
    const taken = p.apex(["session", "branch", "latest", "taken", "--worktree", worktree, "--json"]);
    expect(taken.status, taken.stderr).toBe(4);
    expect(JSON.parse(taken.stderr).error.hint).toContain(back);
    expect(p.runningSessions()).toHaveLength(1);
    // Moved where nothing finds it: both ways back, with the directory to fill in.
    const far = mkdtempSync(join(tmpdir(), "apex-worktree-far-"));
    extra.push(far);
    renameSync(moved, join(far, "feature"));
    const lost = JSON.parse(p.apex(["start", "--continue", "feature", "--json"]).stderr).error;
    expect(lost.hint).toContain(`git worktree repair "NEW-DIR" && git worktree move "NEW-DIR" ${JSON.stringify(worktree)}`);
    expect(lost.hint).toContain(`git worktree prune && git worktree add ${JSON.stringify(worktree)} apex/feature`);
    renameSync(join(far, "feature"), moved);
    // Removed with git and its branch deleted: not moved (git has no record of it), and `git worktree add PATH apex/other` would fail.
    const otherDir = join(worktree, "..", "other");
    git(dir, "worktree", "remove", "--force", otherDir);
    git(dir, "branch", "-D", "apex/other");
    const removed = JSON.parse(p.apex(["session", "merge", "feature", "other", "--git", "--dry-run", "--json"]).stderr).error;
    expect(removed.hint).toBe(`Recreate it from the project: git worktree add -b apex/other ${JSON.stringify(otherDir)} ${git(dir, "rev-parse", "HEAD")} (its git branch apex/other is gone too: made again at the commit it was made at); or merge without --git.`);
    // Run as the hint says, from the project: the same worktree, its files kept, and it continues.
    for (const command of back.split(" && ")) execFileSync("sh", ["-c", command], { cwd: dir, env: { ...process.env, ...GIT_ENV }, stdio: "ignore" });
    expect(readFileSync(join(worktree, "work.txt"), "utf8")).toBe("not committed\n");
    expect(p.start(["--continue", "feature"]).continued).toBe(true);
  });


  it("a command run in a running branch's worktree moved by hand (mv, then git worktree repair) acts on that branch, not on the project's session", () => {
    const { p, worktree } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    p.start(["--continue", "feature"]);
    const moved = join(worktree, "..", "renamed");
    renameSync(worktree, moved);
    // It acted on main (the project's session): the write went into main's memory, the checkpoint was main's.
    for (const [step, value] of [["mv", "1"], ["repair", "2"]] as const) {
      if (step === "repair") git(moved, "worktree", "repair");
      const status = json<{ session: { session_id: string; name: string | null } }>(p.apex(["status", "--json"], { cwd: moved }));
      expect(status.session.name, step).toBe("feature");
      expect(p.apex(["memory", "set", "/here", value], { cwd: moved }).status).toBe(0);
      expect(json<{ value: number }>(p.apex(["--session", "feature", "memory", "show", "/here", "--json"])).value).toBe(Number(value));
      expect(p.apex(["--session", main, "memory", "show", "/here"]).status, step).toBe(3);
    }
    expect(json<{ session_id: string }>(p.apex(["checkpoint", "create", "moved", "--json"], { cwd: moved })).session_id).not.toBe(main);
  });
  it("a command run in a git submodule of a branch's worktree acts on that branch, in the project's store", () => {
    const { p, dir, worktree } = repoProject();
    const library = mkdtempSync(join(tmpdir(), "apex-submodule-"));
    extra.push(library);
    initRepo(git, library, { "lib.txt": "lib\n" });
    git(dir, "-c", "protocol.file.allow=always", "submodule", "add", "-q", library, "lib");
    git(dir, "commit", "-qm", "lib");
    p.start(["--task", "main"]);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    git(worktree, "-c", "protocol.file.allow=always", "submodule", "update", "--init", "-q");
    p.start(["--continue", "feature"]);
    // The submodule's .git file (gitdir …/worktrees/feature/modules/lib) was taken for no worktree: the worktree's own
    // apex.config.yaml then made it a project of its own, with a new store there ("No session is active", the write in it).
    const inside = join(worktree, "lib");
    expect(json<{ session: { name: string | null } }>(p.apex(["status", "--json"], { cwd: inside })).session.name).toBe("feature");
    expect(p.apex(["memory", "set", "/from-lib", "true"], { cwd: inside }).status).toBe(0);
    expect(json<{ value: boolean }>(p.apex(["--session", "feature", "memory", "show", "/from-lib", "--json"])).value).toBe(true);
    expect(existsSync(join(worktree, ".apex"))).toBe(false);
  });

  it("in a project that is itself a linked git worktree, a branch's worktree finds the project's store: it continues, and commands there act on it", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n  git: {}\n`, "apex-branch-linked-");
    const p = project;
    const repo = mkdtempSync(join(tmpdir(), "apex-linked-main-"));
    extra.push(repo);
    initRepo(git, repo, { "apex.config.yaml": readFileSync(join(p.dir, "apex.config.yaml"), "utf8"), ".gitignore": ".apex\nran-here.txt\n" });
    rmSync(join(p.dir, "apex.config.yaml"));
    git(repo, "worktree", "add", "-q", "-b", "mywork", p.dir);
    p.start(["--task", "main"]);
    // The repository's main tree is a project too, with a store of its own: not the branch's.
    expect(p.apex(["memory", "set", "/elsewhere", "true"], { cwd: repo }).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const worktree = join(mkdtempSync(join(tmpdir(), "apex-worktree-")), "feature");
    extra.push(join(worktree, ".."));
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    // It was refused ("no longer a git worktree of this project", moved from itself to itself), and commands
    // run in the worktree looked for the project's store in the main tree.
    p.start(["--continue", "feature"]);
    expect(json<{ session: { name: string | null } }>(p.apex(["status", "--json"], { cwd: worktree })).session.name).toBe("feature");
    expect(p.apex(["memory", "set", "/in-branch", "true"], { cwd: worktree }).status).toBe(0);
    expect(json<{ value: boolean }>(p.apex(["--session", "feature", "memory", "show", "/in-branch", "--json"])).value).toBe(true);
    expect(p.apex(["memory", "show", "/in-branch"], { cwd: repo }).status).toBe(3);
    expect(existsSync(join(worktree, ".apex"))).toBe(false);
    // `apex git` there runs git there (it ran it in the project's tree: the commit went onto the project's branch).
    const head = git(p.dir, "rev-parse", "HEAD");
    writeFileSync(join(worktree, "branch.txt"), "branch\n");
    for (const args of [["add", "branch.txt"], ["commit", "-qm", "on the branch"]]) expect(p.apex(["git", "--", ...args], { cwd: worktree, env: GIT_ENV }).status).toBe(0);
    expect(git(worktree, "log", "-1", "--format=%s")).toBe("on the branch");
    expect(git(p.dir, "rev-parse", "HEAD")).toBe(head);
  });

  it("--git with the source's git branch gone is refused before beforeGit fires: not found, not a conflict, nothing written", () => {
    const { p, dir, worktree } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    p.start(["--continue", "feature"]);
    expect(p.apex(["--session", "feature", "memory", "set", "/feature", "true"]).status).toBe(0);
    expect(p.apex(["--session", "feature", "checkpoint", "create", "feature work"]).status).toBe(0);
    const stopped = p.apex(["--session", "feature", "stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(/^Stopped session feature \(\d+ processes ended\)\.\n$/);
    // A checkpoint asked for in its worktree is refused as with --session: that session has ended,
    // not that none is current (the worktree names it; it said APEX_E_NO_SESSION, exit 3).
    const named = p.apex(["--session", "feature", "checkpoint", "create", "late", "--json"]);
    const inWorktree = p.apex(["checkpoint", "create", "late", "--json"], { cwd: worktree });
    expect([named.status, inWorktree.status], inWorktree.stderr).toEqual([4, 4]);
    expect(JSON.parse(inWorktree.stderr).error).toEqual(JSON.parse(named.stderr).error);
    expect(JSON.parse(inWorktree.stderr).error).toMatchObject({ code: "APEX_E_SESSION_STATE", hint: expect.stringContaining("apex start --continue feature") });
    const head = git(dir, "rev-parse", "HEAD");
    const before = p.apex(["checkpoint", "list", "--session", main, "--json"]).stdout;
    // Renamed by hand (its worktree follows): the error names the new name and how to name it back; a dry run says the same.
    git(dir, "branch", "-m", "apex/feature", "renamed");
    for (const dry of [["--dry-run"], []]) {
      const renamed = p.apex(["session", "merge", "feature", main, "--git", "--json", ...dry]);
      expect(renamed.status, renamed.stderr).toBe(3);
      expect(JSON.parse(renamed.stderr).error).toMatchObject({
        code: "APEX_E_NOT_FOUND",
        message: expect.stringContaining(`its worktree ${worktree} is on renamed now`),
        hint: expect.stringContaining("git branch -m renamed apex/feature"),
        details: { source_branch: "apex/feature", renamed_to: "renamed" },
      });
    }
    git(dir, "branch", "-m", "renamed", "apex/feature");
    git(dir, "worktree", "remove", "--force", worktree);
    git(dir, "branch", "-D", "apex/feature");
    const refused = p.apex(["session", "merge", "feature", main, "--git", "--json"]);
    expect(refused.status, refused.stderr).toBe(3);
    // Deleted: the hint names the commit the branch's latest checkpoint recorded.
    expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_NOT_FOUND", message: expect.stringContaining("apex/feature"), hint: expect.stringMatching(/git branch apex\/feature [0-9a-f]{40}/) });
    expect(p.apex(["checkpoint", "list", "--session", main, "--json"]).stdout).toBe(before);
    expect(git(dir, "rev-parse", "HEAD")).toBe(head);
    expect(p.apex(["memory", "show", "/feature"]).status).toBe(3);
  });

  it("--git into a running branch whose memory conflicts is refused for the conflict, from a tree bound to another session", () => {
    const { p, worktree } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    const source = join(worktree, "..", "source");
    for (const [name, dir] of [["feature", worktree], ["source", source]]) expect(p.apex(["session", "branch", "latest", name!, "--worktree", dir!]).status).toBe(0);
    expect(p.apex(["memory", "set", "/c", '"main"']).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "main work"]).status).toBe(0);
    expect(p.apex(["session", "merge", main, "source"]).status).toBe(0);
    p.start(["--continue", "feature"]);
    expect(p.apex(["memory", "set", "/c", '"feature"'], { cwd: worktree }).status).toBe(0);
    // Run in source's worktree (source does not run): the refusal was asked of the store, which
    // refused to merge beside feature's supervisor ("runs in its supervisor … run the merge again").
    const refused = p.apex(["session", "merge", "source", "feature", "--git", "--json"], { cwd: source });
    expect(refused.status, refused.stderr).toBe(4);
    expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_MERGE_CONFLICT", message: expect.stringContaining("conflicts at 1 path: /c.") });
  });

  it("`current` in a merge into a running branch is the session of the tree the command runs in, as its --dry-run says: not DST's supervisor's own", () => {
    const { p, worktree } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    p.start(["--continue", "feature"]);
    expect(p.apex(["memory", "set", "/from-main", "1"]).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "main work"]).status).toBe(0);
    // The dry run (main's supervisor) took `current` for main; the merge (feature's) for feature: "into itself", exit 2.
    const planned = json<{ source: { session_id: string } }>(p.apex(["session", "merge", "current", "feature", "--dry-run", "--json"]));
    expect(planned.source.session_id).toBe(main);
    const merged = p.apex(["session", "merge", "current", "feature", "--json"]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(JSON.parse(merged.stdout)).toMatchObject({ source: { session_id: main }, destination: { session_name: "feature" }, applied: "live" });
    expect(json<{ value: number }>(p.apex(["memory", "show", "/from-main", "--json"], { cwd: worktree })).value).toBe(1);
    // And from the branch's worktree, `current` is the branch, merged into the running main by main's supervisor.
    expect(p.apex(["memory", "set", "/from-feature", "2"], { cwd: worktree }).status).toBe(0);
    expect(p.apex(["checkpoint", "create", "feature work"], { cwd: worktree }).status).toBe(0);
    const back = p.apex(["session", "merge", "current", main, "--json"], { cwd: worktree });
    expect(back.status, back.stderr).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ source: { session_name: "feature" }, destination: { session_id: main }, applied: "live" });
    expect(json<{ value: number }>(p.apex(["memory", "show", "/from-feature", "--json"])).value).toBe(2);
  });

  it("start --continue of a branch already running in its worktree, run in the project's tree, names that branch in the commands its hint gives", () => {
    const { p, worktree } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    const feature = p.start(["--continue", "feature"]).session_id;
    const again = p.apex(["start", "--continue", "feature", "--json"]);
    expect(again.status, again.stderr).toBe(4);
    const error = JSON.parse(again.stderr).error;
    expect(error).toMatchObject({ code: "APEX_E_SESSION_ACTIVE", message: expect.stringContaining("Session feature is active") });
    // It said `apex status` and `apex checkpoint list`: here, those are main's.
    expect(error.hint).toBe("See it with `apex --session feature status`; `apex start --continue feature/CHECKPOINT` goes back to one of its checkpoints (`apex --session feature checkpoint list`).");
    expect(json<{ session: { session_id: string } }>(p.apex(["status", "--json"])).session.session_id).toBe(main);
    expect(json<{ session: { session_id: string } }>(p.apex(["--session", "feature", "status", "--json"])).session.session_id).toBe(feature);
  });

  it("--git from a session with no git branch names it as merge prints sessions (its short id), exit 2, nothing written", () => {
    const { p } = repoProject();
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "plain"]).status).toBe(0);
    const before = json<{ items: unknown[] }>(p.apex(["checkpoint", "list", "--json"])).items.length;
    for (const args of [["--dry-run"], []]) {
      const refused = p.apex(["session", "merge", main, "plain", "--git", ...args, "--json"]);
      expect(refused.status, refused.stderr).toBe(2);
      // It printed the whole id here, where every other line of a merge has its first 8 characters.
      expect(JSON.parse(refused.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: `Session ${main.slice(0, 8)} has no git branch of its own to merge.` });
    }
    expect(json<{ items: unknown[] }>(p.apex(["checkpoint", "list", "--json"])).items.length).toBe(before);
  });

  it("a git conflict aborts cleanly: both histories intact, the files named, no memory merged", () => {
    // While `clash` exists, beforeGit in main (fired between the memory merge's plan and the merge) writes /feature there.
    const clash = 'import { existsSync } from "node:fs";\nexport default { name: "clash", apply(apex) { apex.hooks.beforeGit.tapPromise("clash", async () => { if (existsSync("clash")) await apex.store.set("/feature", "main"); }); } };\n';
    const { p, dir, worktree } = repoProject(clash);
    const main = p.start(["--task", "main"]).session_id;
    expect(p.apex(["checkpoint", "create", "base"]).status).toBe(0);
    expect(p.apex(["session", "branch", "latest", "feature", "--worktree", worktree]).status).toBe(0);
    writeFileSync(join(worktree, "shared.txt"), "one\nFEATURE\nthree\n");
    git(worktree, "commit", "-qam", "feature edit");
    writeFileSync(join(dir, "shared.txt"), "one\nMAIN\nthree\n");
    git(dir, "commit", "-qam", "main edit");
    const heads = [git(dir, "rev-parse", "HEAD"), git(worktree, "rev-parse", "HEAD")];
    p.start(["--continue", "feature"]);
    expect(p.apex(["--session", "feature", "memory", "set", "/feature", "true"]).status).toBe(0);
    expect(p.apex(["--session", "feature", "checkpoint", "create", "feature work"]).status).toBe(0);
    const before = p.apex(["checkpoint", "list", "--json"]).stdout;

    // The dry run predicts it (git merge-tree), exit 4, touching nothing.
    const predicted = p.apex(["session", "merge", "feature", main, "--git", "--dry-run", "--json"]);
    expect(predicted.status, predicted.stderr).toBe(4);
    expect(JSON.parse(predicted.stdout)).toMatchObject({ refused: true, dry_run: true, git: { source_branch: "apex/feature", conflicts: ["shared.txt"] } });
    const predictedText = p.apex(["session", "merge", "feature", main, "--git", "--dry-run"]);
    expect(predictedText.status).toBe(4);
    expect(predictedText.stdout).toContain("git: would conflict in shared.txt (apex/feature into ");
    expect(p.apex(["checkpoint", "list", "--json"]).stdout).toBe(before);

    const result = p.apex(["session", "merge", "feature", main, "--git"]);
    expect(result.status).toBe(4);
    expect(result.stderr).toContain("shared.txt");
    expect(result.stderr).toContain("aborted");
    expect([git(dir, "rev-parse", "HEAD"), git(worktree, "rev-parse", "HEAD")]).toEqual(heads);
    expect(git(dir, "status", "--porcelain", "--untracked-files=no")).toBe("");
    expect(existsSync(join(dir, ".git", "MERGE_HEAD"))).toBe(false);
    expect(p.apex(["memory", "show", "/feature"]).status).toBe(3);
    // The memory side did not move either (the beforeGit checkpoint aside).
    const after = json<{ items: Array<{ trigger: string }> }>(p.apex(["checkpoint", "list", "--json"])).items.filter((item) => item.trigger === "merge");
    expect(after).toEqual([]);
    expect(before).not.toBe("");

    // The conflict taken on by hand (or a --git killed before it aborted): the merge in progress is
    // named with both ways out, not "commit or stash" (git stash refuses unmerged files); resolved
    // and committed, the same command finishes the merge.
    expect(spawnSync("git", ["merge", "apex/feature"], { cwd: dir, env: { ...cleanEnv(), ...GIT_ENV } }).status).toBe(1);
    for (const args of [[], ["--dry-run"]]) {
      const midway = p.apex(["session", "merge", "feature", main, "--git", ...args]);
      expect(midway.status, midway.stderr).toBe(4);
      expect(midway.stderr).toContain(`${dir} is in the middle of a git merge (conflicts in shared.txt)`);
      expect(midway.stderr).toContain("merge --abort");
    }
    writeFileSync(join(dir, "shared.txt"), "one\nBOTH\nthree\n");
    git(dir, "commit", "-qam", "merged by hand");
    // main changes /feature after the memory merge was planned: the merge is refused once git has
    // merged, and says so (it said "Nothing was written"); merging again settles it. (A commit more on
    // the branch, for git to merge: a branch merged already fires no beforeGit.)
    writeFileSync(join(worktree, "later.txt"), "later\n");
    git(worktree, "add", "later.txt");
    git(worktree, "commit", "-qm", "later");
    writeFileSync(join(dir, "clash"), "");
    const late = p.apex(["session", "merge", "feature", main, "--git"]);
    rmSync(join(dir, "clash"));
    expect(late.status, late.stdout).toBe(4);
    expect(late.stderr).toContain("APEX_E_MERGE_CONFLICT");
    expect(late.stderr).toContain(`No memory was merged, but git had merged apex/feature into ${dir} already`);
    expect(late.stderr).not.toContain("Nothing was written");
    const finished = p.apex(["session", "merge", "feature", main, "--git", "--strategy", "theirs"]);
    expect(finished.status, finished.stderr).toBe(0);
    expect(finished.stdout).toContain("git: apex/feature was merged already");
    expect(json<{ value: boolean }>(p.apex(["memory", "show", "/feature", "--json"])).value).toBe(true);
  });
});

describe("the git state of a merge checkpoint", () => {
  it("is read from DST's tree by DST's own supervisor only; a merge made elsewhere (DST stopped) carries over DST's latest checkpoint's, not the tree it was made in; from another host while DST runs there, it is refused", () => {
    // Two hosts on one store (an LMDB directory both projects name): host-a's tree has a commit, host-b's is a repository with none yet.
    const shared = mkdtempSync(join(tmpdir(), "apex-shared-store-"));
    extra.push(shared);
    const config = `${agent}\nplugins:\n  checkpoint: {}\n  git: {}\nstore:\n  backend: lmdb\n  url: ${JSON.stringify(shared)}\n`;
    const a = new Project(config, "apex-host-a-", { APEX_HOST: "host-a" });
    const b = new Project(config, "apex-host-b-", { APEX_HOST: "host-b" });
    initRepo(git, a.dir, { ".gitignore": ".apex/\nran-here.txt\n" });
    git(b.dir, "init", "-q", "-b", "main");
    const commit = (message: string) => {
      writeFileSync(join(a.dir, `${message}.txt`), `${message}\n`);
      git(a.dir, "add", `${message}.txt`);
      git(a.dir, "commit", "-qm", message);
      return git(a.dir, "rev-parse", "HEAD");
    };
    const latest = (project: Project) => json<{ manifest: { trigger: string; git_state: unknown } }>(project.apex(["checkpoint", "show", `${main}/latest`, "--json"])).manifest;

    const main = a.start(["--task", "main"]).session_id;
    expect(a.apex(["memory", "set", "/notes/a", '"base"']).status).toBe(0);
    const base = json<{ id: string }>(a.apex(["checkpoint", "create", "base", "--json"])).id;
    // Three branches, each with a change of its own to merge into main.
    for (const name of ["feature", "second", "third"]) {
      expect(a.apex(["session", "branch", base, name]).status).toBe(0);
      a.start(["--continue", name]);
      expect(a.apex(["memory", "set", `/notes/${name}`, "true"]).status).toBe(0);
      expect(a.apex(["checkpoint", "create", name]).status).toBe(0);
      expect(a.apex(["stop"]).status).toBe(0);
    }
    const supervisor = a.start(["--continue", main]).supervisor_pid;
    const head = git(a.dir, "rev-parse", "HEAD");
    const running = latest(a).git_state;
    expect(running).toEqual({ branch: "main", commit: head, dirty: false });

    // main runs on host-a: host-b's merge reaches no supervisor, and is refused, nothing written (it was written to the
    // store beside main's supervisor, and recorded host-b's tree, {branch: "main", commit: null, dirty: true}, as main's).
    const fromB = b.apex(["session", "merge", "feature", main, "--json"]);
    expect(fromB.status, fromB.stderr).toBe(4);
    expect(JSON.parse(fromB.stderr).error).toMatchObject({ code: "APEX_E_SESSION_REMOTE", details: { session_id: main, host: "host-a" } });
    expect(latest(b)).toEqual(latest(a));
    expect(latest(a).git_state).toEqual(running);
    expect(a.apex(["session", "merge", "feature", main]).status).toBe(0);

    // Through main's own supervisor: its tree, as it is now (a commit made since).
    const moved = commit("moved");
    const own = json<{ writer_pid: number }>(a.apex(["session", "merge", "second", main, "--json"]));
    expect(own.writer_pid).toBe(supervisor);
    expect(latest(a)).toMatchObject({ trigger: "merge", git_state: { branch: "main", commit: moved, dirty: false } });

    // main stopped, the project's tree moved on after it (a commit main never saw): a merge into it
    // made by the CLI on its own host keeps main's state too. It recorded the later commit.
    expect(a.apex(["stop"]).status).toBe(0);
    const stopped = latest(a).git_state;
    expect(stopped).toMatchObject({ commit: moved });
    commit("later");
    const fromCli = json<{ applied: string; writer_pid: number }>(a.apex(["session", "merge", "third", main, "--json"]));
    expect(fromCli.writer_pid).not.toBe(supervisor);
    expect(latest(a)).toMatchObject({ trigger: "merge", git_state: stopped });
  });
});

describe("session tree with sessions started anew", () => {
  // Each session's checkpoints, oldest first, by their 8-character ids as the tree prints them.
  const checkpointsOf = (p: Project, session: string) =>
    json<{ items: Array<{ id: string }> }>(p.apex(["checkpoint", "list", "--session", session, "--json"])).items.map((item) => item.id.slice(0, 8)).reverse();
  const started = (p: Project, args: string[]) => {
    const id = p.start(args).session_id;
    return { id, short: id.slice(0, 8) };
  };
  const run = (p: Project, session: string, checkpoint: string) => {
    p.start(["--continue", session]);
    expect(p.apex(["checkpoint", "create", checkpoint]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
  };

  it("draws an unrelated session's checkpoint in a column of its own, never straight under another session's root (read as its parent)", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-tree-");
    const p = project;
    // Three sessions with no branch between them, in turns: a, c, b, then a and b again.
    const a = started(p, ["--task", "a"]);
    expect(p.apex(["stop"]).status).toBe(0);
    const c = started(p, ["--task", "c"]);
    expect(p.apex(["stop"]).status).toBe(0);
    const b = started(p, ["--task", "b"]);
    expect(p.apex(["stop"]).status).toBe(0);
    run(p, a.id, "a2");
    run(p, b.id, "b2");
    const [a1, a2] = checkpointsOf(p, a.id);
    const [b1, b2] = checkpointsOf(p, b.id);
    const [c1] = checkpointsOf(p, c.id);
    const tree = p.apex(["session", "tree"]);
    expect(tree.status, tree.stderr).toBe(0);
    // c's only checkpoint was drawn in b's column, right under b's first: "* |  c1" below "* |  b1".
    expect(tree.stdout).toBe(
      [
        `*  ${b2} [${b.short}] checkpoint-002 manual (${b.short}: stopped): b2`,
        `| *  ${a2} [${a.short}] checkpoint-002 manual (${a.short}: stopped): a2`,
        `* |  ${b1} [${b.short}] checkpoint-001 onStart: session start`,
        `  | *  ${c1} [${c.short}] checkpoint-001 onStart (${c.short}: stopped): session start`,
        `  *  ${a1} [${a.short}] checkpoint-001 onStart: session start`,
        "",
      ].join("\n"),
    );
  });

  it("with a branch: the branch's latest is not drawn under another session's root, and its edge goes to its branch point", () => {
    project = new Project(`${agent}\nplugins:\n  checkpoint: {}\n`, "apex-tree-");
    const p = project;
    const main = started(p, ["--task", "main"]);
    const [m1] = checkpointsOf(p, main.id);
    expect(p.apex(["session", "branch", "latest", "feature"]).status).toBe(0);
    expect(p.apex(["stop"]).status).toBe(0);
    run(p, "feature", "f2");
    const other = started(p, ["--task", "other"]);
    expect(p.apex(["stop"]).status).toBe(0);
    run(p, main.id, "m2");
    run(p, other.id, "u2");
    const [, m2] = checkpointsOf(p, main.id);
    const [f1, f2] = checkpointsOf(p, "feature");
    const [u1, u2] = checkpointsOf(p, other.id);
    const tree = p.apex(["session", "tree"]);
    expect(tree.status, tree.stderr).toBe(0);
    // feature's latest was drawn under other's first, "* |  f2" below "* |  u1": other's start read as made from feature.
    expect(tree.stdout).toBe(
      [
        `*  ${u2} [${other.short}] checkpoint-002 manual (${other.short}: stopped): u2`,
        `| *  ${m2} [${main.short}] checkpoint-002 manual (${main.short}: stopped): m2`,
        `* |  ${u1} [${other.short}] checkpoint-001 onStart: session start`,
        `  | *  ${f2} [feature] checkpoint-002 manual (feature: stopped): f2`,
        `  | *  ${f1} [feature] checkpoint-001 branch: branch feature from ${main.short}/checkpoint-001`,
        "  |/",
        `  *  ${m1} [${main.short}] checkpoint-001 onStart: session start`,
        "",
      ].join("\n"),
    );
  });
});
