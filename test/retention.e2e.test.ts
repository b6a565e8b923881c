import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type JsonValue } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { createCheckpoint, listCheckpoints, pinCheckpoint, readCheckpointMemory } from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { REPO_ROOT, runApex, tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-retention-e2e-"));
});
afterEach(() => cleanup());

const apex = (...args: string[]) => runApex(args, { cwd: dir });
const HOUR = 3_600_000;
const START = Date.parse("2026-11-16T06:00:00Z");

const CONFIG = `session:
  max_checkpoints: 50
plugins:
  retention:
    keep_last: 2
    keep_daily: 2
    auto_cleanup: false
`;

function record(sessionId: string, status: string): Record<string, JsonValue> {
  const at = "2026-11-01T00:00:00.000Z";
  return {
    session_id: sessionId,
    project_id: "p-e2e",
    created_at: at,
    updated_at: at,
    status,
    initial_task: null,
    agents: ["coder"],
    supervisor: null,
    history: [],
    outcome: status === "active" ? null : "stopped by the user",
    ended_at: status === "active" ? null : at,
    restored_from: null,
  };
}

/**
 * A project with two sessions: s-old (ended, 3 checkpoints) and s-main (current, 6
 * checkpoints 7 hours apart, checkpoint-002 pinned), plus leftover temporary files.
 */
async function seedProject(): Promise<Map<string, Record<string, JsonValue>>> {
  writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
  const storeDir = join(dir, ".apex");
  const store = await openStore(storeDir);
  const memories = new Map<string, Record<string, JsonValue>>();
  try {
    await store.set("/sessions/s-old", record("s-old", "active"));
    for (let step = 0; step < 3; step++) {
      await store.set("/work/old", { step });
      await createCheckpoint(store, { sessionId: "s-old", trigger: "interval", now: () => new Date(START - 72 * HOUR + step * HOUR) });
    }
    await store.batch((batch) => {
      batch.delete("/sessions/s-old");
      batch.set("/sessions/history/s-old", record("s-old", "stopped"));
    });
    await store.delete("/work/old");

    await store.set("/sessions/s-main", record("s-main", "active"));
    await store.set("/sessions/current", { session_id: "s-main" });
    for (let step = 0; step < 6; step++) {
      await store.set("/work/draft", { step, text: `draft ${step}` });
      const { manifest } = await createCheckpoint(store, { sessionId: "s-main", trigger: "interval", now: () => new Date(START + step * 7 * HOUR) });
      memories.set(manifest.name, { "/work/draft": { step, text: `draft ${step}` } });
    }
    await pinCheckpoint(store, "s-main/checkpoint-002", true);
  } finally {
    await store.close();
  }
  for (const sessionId of ["s-old", "s-main"]) {
    mkdirSync(join(storeDir, "logs", sessionId), { recursive: true });
    writeFileSync(join(storeDir, "logs", sessionId, "coder.resume.json"), '{"todo": 1}\n');
    writeFileSync(join(storeDir, "logs", sessionId, "coder.log"), "log line\n");
  }
  writeFileSync(join(storeDir, "supervisor.json.999999999.tmp"), "{}\n");
  return memories;
}

function checkpointNames(sessionId: string): string[] {
  const store = LmdbStore.open(join(dir, ".apex"), { readOnly: true });
  try {
    return listCheckpoints(store, sessionId, { order: "oldest" }).items.map((item) => item.name);
  } finally {
    void store.close();
  }
}

describe("apex checkpoint list: what keeps each checkpoint (end to end)", () => {
  it("shows the rule or protection that keeps each one, the same as cleanup --dry-run, and those the next cleanup removes; text names the sessions in them as the other commands do", async () => {
    await seedProject();
    // Two sessions branched from s-main as APEX makes them (uuids), one with a name: KEPT BY's
    // text names them by name, else the uuid's short form (it printed whole ids); --json keeps them.
    const named = "3f2a9c1e-0b7d-4c55-9e61-2d8f3a4b5c6d";
    const unnamed = "7d0b2e4f-1a2b-4c3d-8e9f-0a1b2c3d4e5f";
    const store = await openStore(join(dir, ".apex"));
    try {
      await store.set(`/sessions/history/${named}`, { ...record(named, "stopped"), name: "experiment", parent_checkpoint: "s-main/checkpoint-005" });
      await store.set(`/sessions/history/${unnamed}`, { ...record(unnamed, "stopped"), parent_checkpoint: "s-main/checkpoint-003" });
    } finally {
      await store.close();
    }
    const dry = JSON.parse(apex("session", "cleanup", "s-main", "--dry-run", "--json").stdout) as { sessions: Array<{ checkpoints: Array<{ id: string; action: string; reasons: string[] }> }> };
    const expected = Object.fromEntries(dry.sessions[0]!.checkpoints.map((entry) => [entry.id, entry.action === "keep" ? entry.reasons : []]));
    // --help names every key --json prints, a session's and a checkpoint's too (time_zone, skipped, sweep_error, state, … were left out).
    const help = apex("session", "cleanup", "--help").stdout.replace(/\s+/g, " ");
    const allNamed = (value: object) => Object.keys(value).forEach((key) => expect(help, key).toMatch(new RegExp(`[{,] ?${key}[,}:]`)));
    [dry, dry.sessions[0]!, dry.sessions[0]!.checkpoints[0]!].forEach(allNamed);

    const listed = apex("checkpoint", "list", "--json");
    expect(listed.status).toBe(0);
    const page = JSON.parse(listed.stdout) as { items: Array<{ id: string; name: string; kept_by: string[] | null }> };
    expect(Object.fromEntries(page.items.map((item) => [item.id, item.kept_by]))).toEqual(expected);
    expect(Object.fromEntries(page.items.map((item) => [item.name, item.kept_by]))).toEqual({
      "checkpoint-006": ["latest", "last", "daily"],
      "checkpoint-005": [`branch ${named}`, "last"],
      "checkpoint-004": [],
      "checkpoint-003": [`branch ${unnamed}`, "daily"],
      "checkpoint-002": ["pinned"],
      "checkpoint-001": [],
    });

    const text = apex("checkpoint", "list");
    expect(text.stdout).toMatch(/KEPT BY/);
    expect(text.stdout).toMatch(/checkpoint-006 .*latest, last, daily/);
    expect(text.stdout).toMatch(/checkpoint-004 .*nothing \(next cleanup removes it\)/);
    expect(text.stdout).toMatch(/checkpoint-005 .*  branch experiment, last  /);
    expect(text.stdout).toMatch(/checkpoint-003 .*  branch 7d0b2e4f, daily  /);
    for (const id of [named, unnamed]) expect(text.stdout).not.toContain(id);
    // cleanup --dry-run names them so too, in its keep reasons and in why a session's leftover resume
    // file goes (it printed the whole id there); the file's path keeps it, as --json's why does.
    for (const id of [named, unnamed]) {
      mkdirSync(join(dir, ".apex", "logs", id), { recursive: true });
      writeFileSync(join(dir, ".apex", "logs", id, "coder.resume.json"), "{}\n");
    }
    const cleanupText = apex("session", "cleanup", "--dry-run").stdout;
    expect(cleanupText).toMatch(/checkpoint-005 .*  branch experiment, last$/m);
    expect(cleanupText).toContain(`  .apex/logs/${named}/coder.resume.json  3 B  resume context of ended session experiment\n`);
    expect(cleanupText).toContain(`  .apex/logs/${unnamed}/coder.resume.json  3 B  resume context of ended session 7d0b2e4f\n`);
    for (const id of [named, unnamed]) expect(cleanupText.replaceAll(`.apex/logs/${id}/`, "")).not.toContain(id);
    const cleanupJson = JSON.parse(apex("session", "cleanup", "--dry-run", "--json").stdout) as { temporary: { files: Array<{ path: string; why: string }> } };
    expect(cleanupJson.temporary.files.find((file) => file.path.includes(named))?.why).toBe(`resume context of ended session ${named}`);

    // After the cleanup, every checkpoint listed has a reason.
    expect(apex("session", "cleanup", "--json").status).toBe(0);
    const after = JSON.parse(apex("checkpoint", "list", "--json").stdout) as { items: Array<{ name: string; kept_by: string[] }> };
    expect(after.items.map((item) => item.name)).toEqual(["checkpoint-006", "checkpoint-005", "checkpoint-003", "checkpoint-002"]);
    expect(after.items.every((item) => item.kept_by.length > 0)).toBe(true);
  });

  it("has no KEPT BY when retention is off (nothing removes checkpoints then)", async () => {
    await seedProject();
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n  retention: false\n");
    const page = JSON.parse(apex("checkpoint", "list", "--json").stdout) as { items: Array<{ kept_by: string[] | null }> };
    expect(page.items.map((item) => item.kept_by)).toEqual([null, null, null, null, null, null]);
    expect(apex("checkpoint", "list").stdout).not.toMatch(/KEPT BY/);
    // A config that does not load leaves the column out; listing still works.
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  retention:\n    keep_lst: 3\n");
    const broken = apex("checkpoint", "list", "--json");
    expect(broken.status).toBe(0);
    expect((JSON.parse(broken.stdout) as { items: Array<{ kept_by: unknown }> }).items.every((item) => item.kept_by === null)).toBe(true);
  });
});

describe("apex session cleanup (end to end)", () => {
  it("--dry-run --json lists each checkpoint with the rules that keep it, and changes nothing", async () => {
    await seedProject();
    const result = apex("session", "cleanup", "--dry-run", "--json");
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({
      dry_run: true,
      time_zone: "UTC",
      policy: { keep_last: 2, keep_daily: 2, keep_hourly: null, keep_weekly: null, keep_monthly: null, keep_within: null, max_checkpoints: 50 },
    });
    const table = Object.fromEntries(
      report.sessions.map((session: { session_id: string; checkpoints: Array<{ name: string; action: string; reasons: string[]; created_at: string }> }) => [
        session.session_id,
        session.checkpoints.map((checkpoint) => `${checkpoint.name} ${checkpoint.created_at.slice(0, 16)} ${checkpoint.action} ${checkpoint.reasons.join(",")}`.trim()),
      ]),
    );
    expect(table).toEqual({
      "s-old": ["checkpoint-003 2026-11-13T08:00 keep latest,last,daily", "checkpoint-002 2026-11-13T07:00 keep last", "checkpoint-001 2026-11-13T06:00 remove"],
      "s-main": [
        "checkpoint-006 2026-11-17T17:00 keep latest,last,daily",
        "checkpoint-005 2026-11-17T10:00 keep last",
        "checkpoint-004 2026-11-17T03:00 remove",
        "checkpoint-003 2026-11-16T20:00 keep daily",
        "checkpoint-002 2026-11-16T13:00 keep pinned",
        "checkpoint-001 2026-11-16T06:00 remove",
      ],
    });
    expect(report.sessions.map((session: { state: string }) => session.state)).toEqual(["current", "ended"]);
    expect(report.temporary.files.map((file: { path: string }) => file.path.slice(dir.length + 1))).toEqual([
      ".apex/logs/s-old/coder.resume.json",
      ".apex/supervisor.json.999999999.tmp",
    ]);

    expect(checkpointNames("s-main")).toHaveLength(6);
    expect(checkpointNames("s-old")).toHaveLength(3);
    expect(existsSync(join(dir, ".apex/logs/s-old/coder.resume.json"))).toBe(true);
    expect(existsSync(join(dir, ".apex/supervisor.json.999999999.tmp"))).toBe(true);
  });

  it("--dry-run prints keep/remove lines with the rules, in UTC", async () => {
    await seedProject();
    const result = apex("session", "cleanup", "s-ma", "--dry-run");
    expect(result.status).toBe(0);
    expect(result.stdout).toBe(
      [
        "Retention policy: keep_last 2, keep_daily 2 per trigger; manual, beforeRestore kept until deleted; max_checkpoints 50",
        "Hours, days, ISO weeks and months are counted in UTC; times shown are UTC.",
        "",
        "Session s-main (interrupted): 6 checkpoints, keep 4, remove 2",
        "  keep   checkpoint-006  2026-11-17 17:00  latest, last, daily",
        "  keep   checkpoint-005  2026-11-17 10:00  last",
        "  remove checkpoint-004  2026-11-17 03:00  no rule keeps it",
        "  keep   checkpoint-003  2026-11-16 20:00  daily",
        "  keep   checkpoint-002  2026-11-16 13:00  pinned",
        "  remove checkpoint-001  2026-11-16 06:00  no rule keeps it",
        "",
        "Would sweep 2 values and 4 tree nodes no kept checkpoint would reference: 204 B freed.",
        "",
        "Temporary files: 1 file to remove (3 B)",
        "  .apex/supervisor.json.999999999.tmp  3 B  unfinished runtime file of exited process 999999999",
        "",
        "Dry run: nothing was changed. Run `apex session cleanup` without --dry-run to apply.",
        "",
      ].join("\n"),
    );
    expect(checkpointNames("s-main")).toHaveLength(6);
  });

  it("removes what a bundle write killed mid-way left in the backup directory, not one whose process runs, nor a bundle", async () => {
    await seedProject();
    const backups = join(dir, ".apex/backups");
    mkdirSync(backups, { recursive: true });
    // (an archive killed between linking its bundle into place and removing the temporary name: a second name for its bytes)
    writeFileSync(join(backups, "s-gone.apexbundle"), "bundle");
    writeFileSync(join(backups, ".s-gone.apexbundle.partial-999999999-0123abcd"), "bundle");
    writeFileSync(join(backups, `.s-now.apexbundle.partial-${process.pid}-0123abcd`), "being written");
    const dry = JSON.parse(apex("session", "cleanup", "--dry-run", "--json").stdout) as { temporary: { files: Array<{ path: string; bytes: number; why: string }> } };
    expect(dry.temporary.files.filter((file) => file.path.startsWith(backups))).toEqual([
      { path: join(backups, ".s-gone.apexbundle.partial-999999999-0123abcd"), bytes: 6, why: "unfinished bundle of exited process 999999999" },
    ]);
    const result = apex("session", "cleanup");
    expect(result.status, result.stderr).toBe(0);
    expect(readdirSync(backups).sort()).toEqual([`.s-now.apexbundle.partial-${process.pid}-0123abcd`, "s-gone.apexbundle"]);
  });

  it("applies the policy, records the deletions, sweeps, removes temporary files; kept checkpoints still verify", async () => {
    const memories = await seedProject();
    const result = apex("session", "cleanup", "--json");
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.dry_run).toBe(false);
    expect(report.deleted.map((entry: { session_id: string; name: string }) => `${entry.session_id}/${entry.name}`).sort()).toEqual([
      "s-main/checkpoint-001",
      "s-main/checkpoint-004",
      "s-old/checkpoint-001",
    ]);
    expect(report.skipped).toEqual([]);
    expect(report.sweep.values).toBeGreaterThan(0);
    expect(report.sweep.bytes).toBeGreaterThan(0);
    expect(report.temporary.files).toHaveLength(2);
    expect(report.bytes_freed).toBe(report.sweep.bytes_freed + report.temporary.bytes);

    expect(checkpointNames("s-main")).toEqual(["checkpoint-002", "checkpoint-003", "checkpoint-005", "checkpoint-006"]);
    expect(checkpointNames("s-old")).toEqual(["checkpoint-002", "checkpoint-003"]);
    expect(existsSync(join(dir, ".apex/logs/s-old/coder.resume.json"))).toBe(false);
    expect(existsSync(join(dir, ".apex/logs/s-old/coder.log"))).toBe(true);
    expect(existsSync(join(dir, ".apex/logs/s-main/coder.resume.json"))).toBe(true);
    expect(existsSync(join(dir, ".apex/supervisor.json.999999999.tmp"))).toBe(false);

    const store = await openStore(join(dir, ".apex"), { readOnly: true });
    try {
      const validation = validateStore(store);
      expect(validation.problems.filter((problem) => problem.severity === "error")).toEqual([]);
      expect(validation.objects.unreferencedValues).toBe(0);
      for (const name of checkpointNames("s-main")) {
        const held = Object.fromEntries([...readCheckpointMemory(store, `s-main/${name}`)].map((entry) => [entry.path, entry.value]));
        expect(held).toEqual(memories.get(name));
      }
      const events = [...store.query("/sessions/s-main/events/*")].map((entry) => entry.value as Record<string, JsonValue>);
      expect(events.map((event) => [event.type, event.actor, event.name, event.reason, event.run])).toEqual([
        ["retention.delete", "plugin:retention", "checkpoint-004", "no rule keeps it", "command"],
        ["retention.delete", "plugin:retention", "checkpoint-001", "no rule keeps it", "command"],
      ]);
    } finally {
      await store.close();
    }

    const again = apex("session", "cleanup");
    expect(again.status).toBe(0);
    expect(again.stdout).toContain("Session s-main (interrupted): removed 0 checkpoints, kept 4");
    expect(again.stdout).toContain("Swept 0 values and 0 tree nodes no kept checkpoint references: 0 B freed.");
  });

  it("reports the bytes its sweep freed on disk: what compressed packs freed, not the objects' uncompressed size", async () => {
    writeFileSync(join(dir, "apex.config.yaml"), `${CONFIG}  checkpoint: {}\n  compression: {}\n`);
    const store = await openStore(join(dir, ".apex"));
    try {
      await store.set("/sessions/s-big", record("s-big", "active"));
      // Values that compress well: each checkpoint's is its own, about 120 KB, and brotli makes it a few hundred bytes.
      for (let step = 0; step < 6; step++) {
        await store.set("/work/big", { step, text: `draft ${step} `.repeat(10_000) });
        await createCheckpoint(store, { sessionId: "s-big", trigger: "interval", now: () => new Date(START + step * 7 * HOUR) });
      }
    } finally {
      await store.close();
    }
    const compressed = apex("session", "compress", "s-big", "--json");
    expect(compressed.status, compressed.stderr).toBe(0);
    expect(JSON.parse(compressed.stdout).values.compressed).toBeGreaterThan(0);
    const packBytes = () => {
      const validated = apex("session", "validate", "--json");
      expect(validated.status, validated.stderr).toBe(0);
      return JSON.parse(validated.stdout).objects.pack_bytes as number;
    };
    const before = packBytes();

    const dry = JSON.parse(apex("session", "cleanup", "--dry-run", "--json").stdout);
    const result = apex("session", "cleanup", "--json");
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.deleted.map((entry: { name: string }) => entry.name).sort()).toEqual(["checkpoint-001", "checkpoint-002", "checkpoint-004"]);
    const freed = before - packBytes();
    expect(freed).toBeGreaterThan(0);
    // What the packs freed is what the user is told was freed; the objects' own size, far larger, is named as such.
    expect(report.bytes_freed).toBe(freed + report.temporary.bytes);
    expect(report.sweep.bytes_freed).toBe(freed);
    expect(report.sweep.object_bytes).toBeGreaterThan(10 * freed);
    expect(dry.sweep).toEqual(report.sweep);
    expect(dry.bytes_freed).toBe(report.bytes_freed);
  });

  it("a cleanup killed between two deletions leaves each deletion it made in the audit trail", async () => {
    await seedProject();
    // The child runs the policy and kills itself (SIGKILL) as its second deletion starts: the first is committed.
    const script = `
      import { openStore } from ${JSON.stringify(join(REPO_ROOT, "dist/core/store/open.js"))};
      import { applyRetention } from ${JSON.stringify(join(REPO_ROOT, "dist/plugins/retention/cleanup.js"))};
      const store = await openStore(${JSON.stringify(join(dir, ".apex"))});
      const transaction = store.transaction.bind(store);
      let calls = 0;
      store.transaction = (fn) => (++calls === 2 ? process.kill(process.pid, "SIGKILL") : transaction(fn));
      await applyRetention(store, { keepLast: 1 });
    `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(child.signal, child.stderr).toBe("SIGKILL");

    const store = await openStore(join(dir, ".apex"), { readOnly: true });
    try {
      const gone = ["s-old", "s-main"].flatMap((sessionId) => {
        const kept = new Set(listCheckpoints(store, sessionId, { order: "oldest" }).items.map((item) => item.name));
        const taken = sessionId === "s-old" ? 3 : 6;
        return Array.from({ length: taken }, (_, i) => `checkpoint-${String(i + 1).padStart(3, "0")}`).filter((name) => !kept.has(name)).map((name) => `${sessionId}/${name}`);
      });
      expect(gone).toHaveLength(1);
      const recorded = ["s-old", "s-main"].flatMap((sessionId) =>
        [...store.query(`/sessions/${sessionId}/events/*`)].map((entry) => entry.value as Record<string, JsonValue>).filter((event) => event.type === "retention.delete").map((event) => `${sessionId}/${event.name}`),
      );
      expect(recorded).toEqual(gone);
    } finally {
      await store.close();
    }
  });

  it("a checkpoint another cleanup removed first is not reported as one it failed to remove", async () => {
    await seedProject();
    // The child plans, and just before its first deletion a whole \`apex session cleanup\` runs in
    // another process (as the supervisor's cleanup after a checkpoint may): each planned checkpoint is gone.
    const script = `
      import { spawnSync } from "node:child_process";
      import { openStore } from ${JSON.stringify(join(REPO_ROOT, "dist/core/store/open.js"))};
      import { applyRetention } from ${JSON.stringify(join(REPO_ROOT, "dist/plugins/retention/cleanup.js"))};
      const store = await openStore(${JSON.stringify(join(dir, ".apex"))});
      const transaction = store.transaction.bind(store);
      let other;
      store.transaction = (fn) => {
        other ??= spawnSync(process.execPath, [${JSON.stringify(join(REPO_ROOT, "bin/apex.js"))}, "session", "cleanup", "--json"], { cwd: ${JSON.stringify(dir)}, encoding: "utf8" });
        return transaction(fn);
      };
      const outcome = await applyRetention(store, { keepLast: 2, keepDaily: 2, maxCheckpoints: 50 });
      await store.close();
      console.log(JSON.stringify({ other: JSON.parse(other.stdout).deleted.map((entry) => entry.name), deleted: outcome.deleted.map((entry) => entry.name), skipped: outcome.skipped.map((entry) => entry.name), meanwhile: (outcome.removedMeanwhile ?? []).map((entry) => entry.name) }));
    `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(child.status, child.stderr).toBe(0);
    const result = JSON.parse(child.stdout) as { other: string[]; deleted: string[]; skipped: string[]; meanwhile: string[] };
    expect(result.other.length).toBeGreaterThan(0);
    // They were listed as "not removed: … No checkpoint id starts with …".
    expect(result).toEqual({ other: result.other, deleted: [], skipped: [], meanwhile: result.other });
  });

  it("removes the work directory an interrupted repair left (its copy of the store), not one a repair may still be writing", async () => {
    await seedProject();
    // What `apex session repair` leaves when Ctrl-C ends it while it copies a damaged store file: before, nothing removed it.
    const left = join(dir, ".apex", "salvage-2026-11-16T06-00-00-000Z");
    const fresh = join(dir, ".apex", `salvage-${new Date().toISOString().replace(/[:.]/g, "-")}`);
    for (const work of [left, fresh]) {
      mkdirSync(work);
      writeFileSync(join(work, "store.mdb"), Buffer.alloc(8192, 1));
    }
    const hourAgo = new Date(Date.now() - HOUR);
    utimesSync(join(left, "store.mdb"), hourAgo, hourAgo);
    utimesSync(left, hourAgo, hourAgo);
    const dry = JSON.parse(apex("session", "cleanup", "--dry-run", "--json").stdout) as { temporary: { files: Array<{ path: string; bytes: number; why: string }> } };
    expect(dry.temporary.files.filter((file) => file.path.includes("salvage-"))).toEqual([{ path: left, bytes: 8192, why: "copy of a damaged store file left by an interrupted `apex session repair`" }]);
    expect(existsSync(left)).toBe(true);
    const result = apex("session", "cleanup");
    expect(result.status, result.stderr).toBe(0);
    expect(existsSync(left)).toBe(false);
    expect(existsSync(join(fresh, "store.mdb"))).toBe(true);
  });

  it("labels each session with its status as session list shows it, in the text and as status in --json (the current one had none, an ended one said ended)", async () => {
    await seedProject();
    // A session of which only checkpoints remain (its record deleted by hand), and a branch that never ran.
    const store = await openStore(join(dir, ".apex"));
    try {
      await store.set("/sessions/history/s-gone", record("s-gone", "stopped"));
      await store.set("/work/gone", { step: 1 });
      await createCheckpoint(store, { sessionId: "s-gone", trigger: "interval", now: () => new Date(START - 96 * HOUR) });
      await store.delete("/sessions/history/s-gone");
      await store.set("/sessions/history/s-done", { ...record("s-done", "completed"), outcome: "all tasks completed" });
      await createCheckpoint(store, { sessionId: "s-done", trigger: "interval", now: () => new Date(START - 48 * HOUR) });
    } finally {
      await store.close();
    }
    const listed = JSON.parse(apex("session", "list", "--json").stdout) as Array<{ session_id: string; status: string }>;
    const status = Object.fromEntries(listed.map((row) => [row.session_id, row.status]));
    // s-main is recorded active with no supervisor: interrupted, as session list and apex status say.
    expect(status).toEqual({ "s-main": "interrupted", "s-old": "stopped", "s-done": "completed" });

    const preview = apex("session", "cleanup", "--dry-run");
    expect(preview.status, preview.stderr).toBe(0);
    const headers = (text: string) => text.split("\n").filter((line) => line.startsWith("Session "));
    expect(headers(preview.stdout)).toEqual([
      "Session s-gone (no session record): 1 checkpoint, keep 1, remove 0",
      "Session s-done (completed): 1 checkpoint, keep 1, remove 0",
      "Session s-main (interrupted): 6 checkpoints, keep 4, remove 2",
      "Session s-old (stopped): 3 checkpoints, keep 2, remove 1",
    ]);
    const json = JSON.parse(apex("session", "cleanup", "--dry-run", "--json").stdout) as { sessions: Array<{ session_id: string; state: string; status: string | null }> };
    expect(json.sessions.map(({ session_id, state, status }) => [session_id, state, status])).toEqual([
      ["s-gone", "none", null],
      ["s-done", "ended", "completed"],
      ["s-main", "current", "interrupted"],
      ["s-old", "ended", "stopped"],
    ]);

    const applied = apex("session", "cleanup");
    expect(applied.status, applied.stderr).toBe(0);
    expect(headers(applied.stdout)).toEqual([
      "Session s-gone (no session record): removed 0 checkpoints, kept 1",
      "Session s-done (completed): removed 0 checkpoints, kept 1",
      "Session s-main (interrupted): removed 2 checkpoints (checkpoint-004, checkpoint-001), kept 4",
      "Session s-old (stopped): removed 1 checkpoint (checkpoint-001), kept 2",
    ]);
  });

  it("names an unknown session as not found", async () => {
    await seedProject();
    const result = apex("session", "cleanup", "s-nope", "--dry-run");
    expect(result.status).toBe(3);
    expect(result.stderr).toContain('No session "s-nope" in this project.');
  });
});
