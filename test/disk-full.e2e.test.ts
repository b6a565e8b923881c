// A full disk, for real: the store lives on a small tmpfs mounted for the test (APEX_HOME), a
// filler file takes the remaining space, and every command must say so (APEX_E_DISK_FULL,
// naming the filesystem), exit 1 without a stack trace, and report a checkpoint saved exactly
// when it is. After the filler is removed the store validates and works.
//
// Twice: with the commands writing the store themselves (the session's supervisor killed first),
// and through a live supervisor, which must outlive the full disk. lmdb-js's own handling of a
// failed page write corrupts the heap (plugins/lmdb/room.ts), which used to end the supervisor
// with SIGABRT ("free(): invalid size") at its exit: APEX now refuses a commit that may not fit
// before LMDB writes anything, so no LMDB write error may reach stderr either.
//
// Mounting needs root: .ci/run runs as root (it installs packages with apt-get and checks it),
// so there these tests always run. No unprivileged stand-in fills a real filesystem (a loop
// mount, a tmpfs and a quota all need root), so without root they are skipped, not faked.
import { execFileSync } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runApex, type CliResult } from "./helpers/cli.js";
import { groupMembers, isAlive, procInfo, signalGroup, signalIfAlive } from "./fixtures/agents/harness.js";

const root = process.getuid?.() === 0;
let mount: string;
let project: string;
let storeDir: string;
const supervisors = new Map<number, number>();
const groups = new Map<number, number>();

beforeAll(() => {
  if (!root) return;
  mount = mkdtempSync(join(tmpdir(), "apex-disk-full-"));
  // Needs root (or CAP_SYS_ADMIN); this suite runs as root here and in CI.
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", mount]);
  project = mkdtempSync(join(tmpdir(), "apex-disk-full-project-"));
  storeDir = join(mount, "store");
  writeFileSync(
    join(project, "apex.config.yaml"),
    ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", ""].join("\n"),
  );
});

afterAll(() => {
  if (!root) return;
  try {
    apex(["stop", "--force"]);
  } catch {
    // ended below
  }
  for (const [pid, start] of supervisors) signalIfAlive(pid, "SIGKILL", start);
  for (const [pgid, start] of groups) {
    const leader = procInfo(pgid);
    if ((!leader || leader.startTime === start) && groupMembers(pgid).length > 0) signalGroup(pgid, "SIGKILL");
  }
  execFileSync("umount", ["-l", mount]);
  rmSync(mount, { recursive: true, force: true });
  rmSync(project, { recursive: true, force: true });
});

function apex(args: string[], input?: string): CliResult {
  return runApex(args, { cwd: project, env: { APEX_HOME: storeDir }, ...(input === undefined ? {} : { input }) });
}

function ok(args: string[], input?: string): string {
  const result = apex(args, input);
  if (result.status !== 0) throw new Error(`apex ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

/** Fills the tmpfs with a file until it is full; returns the file, to remove later. */
function fill(on = mount): string {
  const file = join(on, `filler-${Date.now()}`);
  const fd = openSync(file, "w");
  const chunk = Buffer.alloc(4096, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    closeSync(fd);
  }
  return file;
}

function checkpointCount(run = ok): number {
  return (JSON.parse(run(["checkpoint", "list", "--limit", "1000", "--json"])) as { items: unknown[] }).items.length;
}

/** A failure that says the disk is full, names the store's filesystem, and shows no stack trace. */
function expectDiskFull(result: CliResult, what: string, on = mount): void {
  expect(result.status, `${what}: ${result.stderr}`).toBe(1);
  expect(result.stderr, what).toContain("error[APEX_E_DISK_FULL]: The disk is full");
  expect(result.stderr, what).toContain(`${on} (tmpfs`);
  expect(result.stderr, what).not.toMatch(/^\s+at /m);
  expect(result.stderr, what).not.toMatch(/Unhandled|node:internal|triggerUncaughtException/);
  // LMDB never got as far as a failed write (its own messages: "Write error: …", "mdb_page_spill error").
  expect(result.stderr, what).not.toMatch(/Write error|mdb_/);
}

describe.runIf(root)("a full disk", () => {
  it("every command says so and writes nothing; a checkpoint is reported saved exactly when it is; freed, the store validates and works", { timeout: 240_000 }, () => {
    mkdirSync(storeDir);
    const started = JSON.parse(ok(["start", "--task", "disk full", "--json"])) as { supervisor_pid: number; agents: Array<{ pgid: number | null }> };
    supervisors.set(started.supervisor_pid, procInfo(started.supervisor_pid)?.startTime ?? -1);
    for (const agent of started.agents) if (agent.pgid) groups.set(agent.pgid, procInfo(agent.pgid)?.startTime ?? -1);
    process.kill(started.supervisor_pid, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (isAlive(started.supervisor_pid, supervisors.get(started.supervisor_pid)!) && Date.now() < deadline) execFileSync("sleep", ["0.05"]);
    expect(JSON.parse(ok(["status", "--json"])).session.status).toBe("interrupted");
    ok(["memory", "set", "/a", "1"]);
    ok(["checkpoint", "create", "before"]);
    const bigImport = JSON.stringify(Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`/big/${i}`, "x".repeat(10_000)])));

    const filler = fill();
    const revision = JSON.parse(ok(["memory", "show", "/a", "--json"])).value;
    expectDiskFull(apex(["memory", "import", "-"], bigImport), "memory import");
    expectDiskFull(apex(["memory", "set", "/b", "-"], JSON.stringify("y".repeat(200_000))), "memory set");
    // Reads still work, and nothing of the refused writes is there.
    expect(JSON.parse(ok(["memory", "show", "/a", "--json"])).value).toBe(revision);
    expect(ok(["memory", "query", "/big/**", "--keys"])).toBe("");
    expect(apex(["memory", "show", "/b"]).status).toBe(3);
    // Small writes may still fit in pages the store file has free; each is there exactly when reported.
    for (let i = 0; i < 30; i++) {
      const added = apex(["task", "add", `task ${i}`]);
      const tasks = (JSON.parse(ok(["task", "list", "--json"])) as Array<{ title: string }>).map((task) => task.title);
      if (added.status === 0) expect(tasks).toContain(`task ${i}`);
      else {
        expectDiskFull(added, "task add");
        expect(tasks).not.toContain(`task ${i}`);
        break;
      }
    }
    rmSync(filler);

    // Checkpoints with space running out: each is listed exactly when it was reported saved.
    ok(["memory", "import", "-"], JSON.stringify(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`/m/${i}`, "m".repeat(3_000)]))));
    let saved = checkpointCount();
    let failed = 0;
    let created = 0;
    const fillers: string[] = [];
    for (let round = 0; round < 12; round++) {
      if (round % 3 === 0) fillers.push(fill());
      const changed = apex(["memory", "set", `/m/${round}`, JSON.stringify(`${round}`.repeat(3_000))]);
      if (changed.status !== 0) expectDiskFull(changed, `memory set ${round}`);
      const result = apex(["checkpoint", "create", `round ${round}`]);
      if (result.status === 0) {
        created += 1;
        saved += 1;
      } else {
        expectDiskFull(result, `checkpoint create ${round}`);
        failed += 1;
      }
      expect(checkpointCount(), `after round ${round}: ${result.stderr}`).toBe(saved);
      if (round % 3 === 2) rmSync(fillers.pop()!);
    }
    expect(failed).toBeGreaterThan(0);
    for (const file of fillers) rmSync(file);

    const validated = apex(["session", "validate"]);
    expect(validated.status, validated.stdout + validated.stderr).toBe(0);
    ok(["memory", "import", "-"], bigImport);
    ok(["checkpoint", "create", "after"]);
    expect(checkpointCount()).toBe(saved + 1);
    // The interrupted session continues from the live store, and its supervisor works.
    const continued = JSON.parse(ok(["start", "--continue", "last", "--json"])) as { supervisor_pid: number; agents: Array<{ pgid: number | null }> };
    supervisors.set(continued.supervisor_pid, procInfo(continued.supervisor_pid)?.startTime ?? -1);
    for (const agent of continued.agents) if (agent.pgid) groups.set(agent.pgid, procInfo(agent.pgid)?.startTime ?? -1);
    expect(JSON.parse(ok(["memory", "show", "/big/199", "--json"])).value).toBe("x".repeat(10_000));
    ok(["pause"]);
    ok(["resume"]);
    ok(["stop"]);
    expect(created + failed).toBe(12);
  });
});

describe.runIf(root)("a full disk under a live supervisor", () => {
  let disk: string;
  let dir: string;
  let store: string;
  let supervisor: { pid: number; start: number } | undefined;
  const agentGroups = new Map<number, number>();
  const run = (args: string[], input?: string): CliResult => runApex(args, { cwd: dir, env: { APEX_HOME: store }, ...(input === undefined ? {} : { input }) });
  const must = (args: string[], input?: string): string => {
    const result = run(args, input);
    if (result.status !== 0) throw new Error(`apex ${args.join(" ")} exited ${result.status}: ${result.stderr}`);
    return result.stdout;
  };

  beforeAll(() => {
    disk = mkdtempSync(join(tmpdir(), "apex-disk-full-live-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", disk]);
    dir = mkdtempSync(join(tmpdir(), "apex-disk-full-live-project-"));
    store = join(disk, "store");
    // A lease longer than the test: a supervisor that cannot renew its lease stops its agents (documented), which is not what is tested here.
    writeFileSync(
      join(dir, "apex.config.yaml"),
      ["session:", "  lease_ttl: 10m", "agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", "  archive: {}", ""].join("\n"),
    );
  });

  afterAll(() => {
    try {
      run(["stop", "--force"]);
    } catch {
      // ended below
    }
    if (supervisor) signalIfAlive(supervisor.pid, "SIGKILL", supervisor.start);
    for (const [pgid, start] of agentGroups) {
      const leader = procInfo(pgid);
      if ((!leader || leader.startTime === start) && groupMembers(pgid).length > 0) signalGroup(pgid, "SIGKILL");
    }
    try {
      execFileSync("umount", ["-l", disk]);
    } finally {
      rmSync(disk, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("memory set, import, checkpoint create, export and backup say so; validate reads; the supervisor lives on and works once space is freed; start says so too", { timeout: 240_000 }, () => {
    mkdirSync(store);
    const started = JSON.parse(must(["start", "--task", "disk full, live", "--json"])) as { session_id: string; supervisor_pid: number; agents: Array<{ pgid: number | null }> };
    supervisor = { pid: started.supervisor_pid, start: procInfo(started.supervisor_pid)?.startTime ?? -1 };
    for (const agent of started.agents) if (agent.pgid) agentGroups.set(agent.pgid, procInfo(agent.pgid)?.startTime ?? -1);
    const alive = (when: string) => expect(isAlive(supervisor!.pid, supervisor!.start), `the supervisor is alive ${when}`).toBe(true);
    must(["memory", "set", "/a", "1"]);
    must(["checkpoint", "create", "before"]);
    const saved = checkpointCount(must);

    for (let round = 0; round < 3; round++) {
      const filler = fill(disk);
      expectDiskFull(run(["memory", "set", "/b", "-"], JSON.stringify("y".repeat(200_000))), `memory set ${round}`, disk);
      expectDiskFull(run(["memory", "import", "-"], JSON.stringify(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`/big/${i}`, "x".repeat(5_000)])))), `memory import ${round}`, disk);
      expectDiskFull(run(["checkpoint", "create", `full ${round}`]), `checkpoint create ${round}`, disk);
      expect(checkpointCount(must)).toBe(saved);
      const bundle = join(disk, "session.apexbundle");
      const exported = run(["session", "export", started.session_id, "-o", bundle]);
      expectDiskFull(exported, `session export ${round}`, disk);
      expect(exported.stderr).toContain(`cannot write ${bundle}`);
      const backedUp = run(["backup", "--to", join(disk, "backup")]);
      expectDiskFull(backedUp, `backup ${round}`, disk);
      // Nothing of the refused writes is there, on disk or in the store.
      expect(readdirSync(disk).sort()).toEqual([filler.slice(disk.length + 1), "store"].sort());
      expect(run(["memory", "show", "/b"]).status).toBe(3);
      expect(must(["memory", "query", "/big/**", "--keys"])).toBe("");
      const validated = run(["session", "validate"]);
      expect(validated.status, validated.stdout + validated.stderr).toBe(0);
      alive(`with the disk full (round ${round})`);
      rmSync(filler);
    }

    // Freed: the same supervisor writes, checkpoints and stops cleanly.
    must(["memory", "set", "/b", "-"], JSON.stringify("y".repeat(200_000)));
    must(["checkpoint", "create", "after"]);
    expect(checkpointCount(must)).toBe(saved + 1);
    must(["session", "export", started.session_id, "-o", join(disk, "session.apexbundle")]);
    const validated = run(["session", "validate"]);
    expect(validated.status, validated.stdout + validated.stderr).toBe(0);
    alive("after space was freed");
    must(["stop"]);
    const deadline = Date.now() + 20_000;
    while (isAlive(supervisor.pid, supervisor.start) && Date.now() < deadline) execFileSync("sleep", ["0.1"]);
    const log = readFileSync(join(store, "supervisor.log"), "utf8");
    expect(log).toContain("supervisor exits (0)");
    expect(log).not.toMatch(/uncaught|unhandled rejection|Write error|mdb_|free\(\)/);

    // Starting on a full disk: refused as such, no supervisor left behind; freed, the session continues.
    const filler = fill(disk);
    expectDiskFull(run(["start", "--task", "on a full disk"]), "start", disk);
    expectDiskFull(run(["start", "--continue", "last"]), "start --continue", disk);
    const status = JSON.parse(must(["status", "--json"])) as { session: { status: string } | null };
    expect(status.session?.status ?? "none").not.toBe("active");
    rmSync(filler);
    const continued = JSON.parse(must(["start", "--continue", "last", "--json"])) as { session_id: string; supervisor_pid: number; agents: Array<{ pgid: number | null }> };
    expect(continued.session_id).toBe(started.session_id);
    supervisor = { pid: continued.supervisor_pid, start: procInfo(continued.supervisor_pid)?.startTime ?? -1 };
    for (const agent of continued.agents) if (agent.pgid) agentGroups.set(agent.pgid, procInfo(agent.pgid)?.startTime ?? -1);
    expect(JSON.parse(must(["memory", "show", "/b", "--json"])).value).toBe("y".repeat(200_000));
    must(["stop"]);
  });
});
