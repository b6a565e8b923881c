// The metrics plugin: the pure timeline that turns the audit trail into time totals, and a real
// session (supervisor, agents in process groups, the CLI, git repositories) whose metrics record
// is watched while it changes.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { SessionEvent } from "../core/session/records.js";
import { openStore } from "../core/store/open.js";
import { formatMetrics } from "../plugins/metrics/command.js";
import { repositoriesOf } from "../plugins/metrics/format.js";
import { renderMarkdown } from "../plugins/history/markdown.js";
import type { SessionReport } from "../plugins/history/report.js";
import { sumNumstat } from "../plugins/metrics/repositories.js";
import { MetricsSampler } from "../plugins/metrics/sampler.js";
import type { SessionMetrics } from "../plugins/metrics/record.js";
import { SessionTimeline } from "../plugins/metrics/timeline.js";
import { Project, idleAgentConfig, waitFor } from "./fixtures/agents/harness.js";

const T0 = Date.parse("2026-01-01T10:00:00.000Z");

/** Events at T0 + seconds, numbered in order. */
function trail(...entries: Array<[number, string, Record<string, string>?]>): SessionEvent[] {
  return entries.map(([seconds, type, data], index) => ({
    ...data,
    seq: index + 1,
    at: new Date(T0 + seconds * 1000).toISOString(),
    type,
    actor: "supervisor",
  }));
}

function totalsOf(events: SessionEvent[], atSeconds: number, idle?: string[]) {
  const timeline = new SessionTimeline(idle);
  for (const event of events) timeline.apply(event);
  const totals = timeline.totals(T0 + atSeconds * 1000);
  return {
    active: totals.activeMs / 1000,
    paused: totals.pausedMs / 1000,
    working: Object.fromEntries([...totals.workingMs].map(([agent, ms]) => [agent, ms / 1000])),
    checkpoints: totals.checkpointsCreated,
    reopened: totals.tasksReopened,
  };
}

describe("SessionTimeline", () => {
  const session = trail(
    [0, "session.started"],
    [1, "agent.report", { agent: "coder", status: "working" }],
    [2, "agent.report", { agent: "adversary", status: "waiting" }],
    [4, "session.paused"],
    [4, "checkpoint"],
    [10, "session.resumed"],
    [12, "agent.report", { agent: "adversary", status: "reviewing" }],
    [13, "task.reopened"],
    [14, "agent.report", { agent: "coder", status: "idle" }],
    [15, "agent.exited", { agent: "adversary" }],
    [20, "session.stopped"],
  );

  it("counts active time without pauses, and each agent's working time only while the session is active", () => {
    expect(totalsOf(session, 30)).toEqual({
      active: 14, // 0-4 and 10-20
      paused: 6,
      working: { coder: 7, adversary: 3 }, // coder 1-4 and 10-14; adversary 12-15 (until it exited)
      checkpoints: 1,
      reopened: 1,
    });
  });

  it("counts the open stretch up to now without changing its state, and takes more events after that", () => {
    const timeline = new SessionTimeline();
    for (const event of session.slice(0, 2)) timeline.apply(event);
    expect(timeline.totals(T0 + 3000).activeMs).toBe(3000);
    expect(timeline.totals(T0 + 3000).workingMs.get("coder")).toBe(2000);
    expect(timeline.totals(T0 + 3500).workingMs.get("coder")).toBe(2500);
    for (const event of session) timeline.apply(event); // replays skip what was applied (by seq)
    expect(timeline.totals(T0 + 30_000).activeMs).toBe(14_000);
    expect(timeline.seq).toBe(session.length);
  });

  it("does not count the unseen end of a run that crashed (continued while still active)", () => {
    const crashed = trail(
      [0, "session.started"],
      [1, "agent.report", { agent: "coder", status: "working" }],
      [5, "task.completed"],
      // the supervisor was killed at some point after 5 s; the session is continued at 100 s
      [100, "session.continued"],
      [101, "agent.report", { agent: "coder", status: "working" }],
    );
    expect(totalsOf(crashed, 110)).toMatchObject({ active: 15, working: { coder: 13 } });
  });

  it("counts a run whose supervisor died up to its last sample, and not the time it lay dead until a continue or an offline stop", () => {
    const events = trail(
      [0, "session.started"],
      [1, "agent.report", { agent: "coder", status: "working" }],
      [5, "task.completed"],
      // killed after its last sample at 50 s; continued at 100 s, killed again after a sample at 130 s, stopped at 200 s
      [100, "session.continued", { from: "interrupted" }],
      [101, "agent.report", { agent: "coder", status: "working" }],
      [110, "session.paused"],
      [200, "session.stopped", { from: "interrupted" }],
    );
    const timeline = new SessionTimeline();
    timeline.seenRunning(T0 + 50_000);
    timeline.seenRunning(T0 + 130_000);
    // A time that is no later than the run's last event says nothing more.
    timeline.seenRunning(T0 + 3_000);
    for (const event of events) timeline.apply(event);
    const totals = timeline.totals(T0 + 300_000);
    // Active: 0-50 and 100-110; paused 110-130 (when it was last seen, paused); nothing after the stop.
    expect([totals.activeMs, totals.pausedMs, totals.workingMs.get("coder")]).toEqual([60_000, 20_000, 58_000]);
  });

  it("counts a run another host took over (its lease ran out) up to its last sample, not through the takeover", () => {
    const events = trail(
      [0, "session.started"],
      [5, "task.completed"],
      // host A last sampled at 30 s, then went silent; host B took the session over at 100 s
      [100, "session.taken_over", { from_host: "a", to_host: "b" }],
      [100, "session.continued", { from: "interrupted" }],
    );
    const timeline = new SessionTimeline();
    timeline.seenRunning(T0 + 30_000);
    for (const event of events) timeline.apply(event);
    expect(timeline.totals(T0 + 110_000).activeMs).toBe(40_000);
  });

  it("idle statuses are configurable and compared without case", () => {
    const events = trail([0, "session.started"], [0, "agent.report", { agent: "a", status: "Thinking" }]);
    expect(totalsOf(events, 10).working).toEqual({ a: 10 });
    expect(totalsOf(events, 10, ["thinking"]).working).toEqual({});
  });

  it("sums git diff --numstat, binary files without lines", () => {
    expect(sumNumstat("3\t1\tsrc/a.js\n-\t-\timage.png\n10\t0\tREADME.md\n")).toEqual({ lines_added: 13, lines_removed: 1, files_changed: 3 });
    expect(sumNumstat("")).toEqual({ lines_added: 0, lines_removed: 0, files_changed: 0 });
  });
});

// An agent that waits for /test/go, then for each task it claims: burns 0.7 s of CPU (so that
// /proc shows it), commits a 4-line file (the first task in the project repository, the second in
// the agents' workspace under the store, created on the way), and completes the task.
const WORKER = `
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
const apex = (...args) => execFileSync("apex", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const git = (cwd, ...args) => execFileSync("git", ["-c", "user.name=Worker", "-c", "user.email=worker@example.invalid", "-c", "commit.gpgsign=false", ...args], { cwd, stdio: "ignore" });
apex("agent", "report", "--status", "waiting");
// Each try is a CLI command (a tenth of a second of a core): every half second, not back to back.
for (;;) {
  try { apex("memory", "show", "/test/go"); break; } catch { await new Promise((resolve) => setTimeout(resolve, 500)); }
}
apex("agent", "report", "--status", "working");
const workspace = join(process.env.APEX_HOME, "workspace");
for (let n = 0; ; n++) {
  let task;
  try { task = JSON.parse(apex("task", "claim", "--json")); } catch (error) { if (error.status === 4) break; throw error; }
  // 0.7 s of CPU, not of the clock: on a loaded machine a loop of 0.7 s got a fraction of a core, less CPU than the test expects.
  const began = process.cpuUsage();
  for (let used = 0; used < 700_000; used = ((spent) => spent.user + spent.system)(process.cpuUsage(began))) {}
  const dir = n % 2 === 0 ? process.cwd() : workspace;
  if (!existsSync(join(dir, ".git"))) { mkdirSync(dir, { recursive: true }); git(dir, "init", "-q"); }
  writeFileSync(join(dir, "task-" + n + ".txt"), "one\\ntwo\\nthree\\nfour\\n");
  git(dir, "add", "task-" + n + ".txt");
  git(dir, "commit", "-q", "-m", "task " + n);
  apex("task", "done", task.id, "--result", "{}");
}
apex("agent", "report", "--status", "idle");
setInterval(() => {}, 1000);
`;

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

function metricsAt(path: string): SessionMetrics | undefined {
  const result = project!.apex(["memory", "show", path, "--json"]);
  return result.status === 0 ? ((JSON.parse(result.stdout) as { value: SessionMetrics }).value ?? undefined) : undefined;
}

describe("metrics of a session record replaced by hand", () => {
  it("have no NaN: a start or end that does not parse makes the duration unknown (null), missing fields are skipped", async () => {
    const dir = mkdtempSync(join(tmpdir(), "apex-metrics-record-"));
    const store = await openStore({ backend: "lmdb", dir }, { actor: "user:test" });
    try {
      const records: Array<Record<string, unknown>> = [
        { session_id: "s-1", status: "active", created_at: "yesterday-ish", agents: ["a"] }, // what `memory set --force` may leave
        { session_id: "s-1", status: "stopped", ended_at: "not a time" }, // no start, no agents
        { x: 1 },
      ];
      for (const record of records) {
        await store.batch((batch) => batch.set("/sessions/s-1", record as never));
        const sampler = await MetricsSampler.open({ store, sessionId: "s-1", idleStatuses: [], repositories: [], warn: () => undefined });
        const metrics = (await sampler.sample("command"))!;
        sampler.close();
        expect(metrics).toMatchObject({ session_duration_seconds: null, session_duration: "unknown", started_at: null, ended_at: null });
        expect(metrics.status).toBe(typeof record.status === "string" ? record.status : "unknown");
        // Written (a NaN could not be: the store refuses it), and printed without NaN.
        expect(store.get("/sessions/s-1/metrics")).toEqual(metrics);
        const shown = [JSON.stringify(metrics), ...formatMetrics(metrics)].join("\n");
        expect(shown).not.toMatch(/NaN|undefined/);
        expect(formatMetrics(metrics).join("\n")).toMatch(/Session duration\s+unknown/);
      }
      // A metrics record written by hand with fields missing prints "-", not NaN.
      const partial = { session_id: "s-1", status: "stopped", updated_at: "x", reason: "x", tasks_completed: 0, tasks_failed: 0, tasks_active: 0, tasks_pending: 0, tasks_total: 0, tasks_reopened: 0, issues_source: "none", checkpoints: { created: 0, kept: 0, latest: null }, agent_utilization_detail: { a: {} }, git: { repositories: [] }, plugin_timings: [] };
      expect(formatMetrics(partial as unknown as SessionMetrics).join("\n")).not.toMatch(/NaN/);
      // An agent's reported status with a line break stays in its row (it split the row in two, its second half under AGENT).
      const multiline = { ...partial, agent_utilization_detail: { a: { reported_status: "working\non it", working_seconds: 1, share: 1, cpu_seconds: 0, cpu_share: 0 } } };
      const rows = formatMetrics(multiline as unknown as SessionMetrics).join("\n").split("\n");
      expect(rows.filter((line) => line.startsWith("a "))).toEqual([expect.stringMatching(/^a +working\\u000aon it +1s +100% +0\.00s \(0%\)$/)]);
      expect(rows).not.toContain("on it");
      // A record that lacks what it lists (from an earlier version, or replaced by hand), or keeps each
      // agent's detail in agent_utilization as records before agent_utilization_detail did: shown, not
      // a crash of the plugin ("Cannot read properties of undefined"), in the text and in the report.
      const bare = { session_id: "s-1", status: "stopped", updated_at: "x", reason: "x", agent_utilization: { a: { reported_status: "idle", working_seconds: 12, share: 0.5, cpu_seconds: 1, cpu_share: 0.1 } } } as unknown as SessionMetrics;
      const text = formatMetrics(bare).join("\n");
      expect(text).toMatch(/Tasks +\? completed, \? failed, \? active, \? pending \(of \?\)/);
      expect(text).toMatch(/Checkpoints +\? created, \? kept/);
      expect(text).toMatch(/^a +idle +12s +50% +1\.00s \(10%\)$/m);
      expect(text).not.toMatch(/undefined|NaN/);
      const report = { format: 1, generated_at: "x", session: { session_id: "s-1", effective_status: "stopped" }, metrics: bare, tasks: { counts: { pending: 0, active: 0, completed: 0, failed: 0, total: 0 }, items: [] }, milestones: [], agents: [], checkpoints: [], git: { repositories: repositoriesOf(bare), first_checkpoint: null, last_checkpoint: null, synced: null }, events: [] };
      expect(renderMarkdown(report as unknown as SessionReport)).toContain("| a | idle | 12s | 50% | 1.00s (10%) |");
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the metrics plugin's interval", () => {
  it("is a duration like every other interval of the config (\"5m\", \"90\"), at least a second: interval: 5m was refused as not an integer", async () => {
    const config = (interval: string) => `agents:\n  w:\n    command: sleep\n    args: ["600"]\nplugins:\n  checkpoint: {}\n  metrics:\n    interval: ${interval}\n`;
    project = new Project(config("5m"), "apex-metrics-interval-");
    for (const good of ["5m", '"90"', "1.5", "2h30m"]) {
      project.writeConfig(config(good));
      const result = project.apex(["config", "validate"]);
      expect(result.status, `${good}: ${result.stdout}${result.stderr}`).toBe(0);
    }
    for (const [bad, message] of [
      ["0.5", "plugins.metrics.interval: must be at least 1 second (got 0.5)."],
      ["0s", 'plugins.metrics.interval: must be at least 1 second (got "0s").'],
      ["30d", 'plugins.metrics.interval: must be at most 2147483 seconds'],
      ["-1", "plugins.metrics.interval: must be a duration"],
    ] as const) {
      project.writeConfig(config(bad));
      const result = project.apex(["config", "validate"]);
      expect(result.status, bad).toBe(2);
      expect(result.stdout + result.stderr, bad).toContain(message);
    }
    // A session samples on it.
    project.writeConfig(config('"1s"'));
    const { session_id: sid } = project.start();
    await waitFor("an interval sample", () => metricsAt(`/sessions/${sid}/metrics`)?.reason === "interval", 10_000);
    expect(project.apex(["stop"]).status).toBe(0);
  });
});

describe("metrics of a session whose supervisor died", () => {
  it("keep the active time its last sample showed when it is continued, and carry that through later runs (it fell back to its last event)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "apex-metrics-crash-"));
    const store = await openStore({ backend: "lmdb", dir }, { actor: "user:test" });
    try {
      const t0 = Date.now() - 300_000;
      const at = (seconds: number) => new Date(t0 + seconds * 1000).toISOString();
      const event = (seq: number, seconds: number, type: string, data: Record<string, string> = {}) =>
        store.batch((batch) => batch.set(`/sessions/s-1/events/${String(seq).padStart(8, "0")}`, { ...data, seq, at: at(seconds), type, actor: "supervisor" }));
      await store.batch((batch) => batch.set("/sessions/s-1", { session_id: "s-1", status: "active", created_at: at(0), agents: [] }));
      await event(1, 0, "session.started");
      await event(2, 5, "task.added");
      // The first run's last sample, at 60 s (active 60 s), then its supervisor was killed.
      await store.batch((batch) => batch.set("/sessions/s-1/metrics", { session_id: "s-1", status: "active", updated_at: at(60), active_seconds: 60, samples: 3 }));
      await event(3, 100, "session.continued", { from: "interrupted" });
      const open = () => MetricsSampler.open({ store, sessionId: "s-1", idleStatuses: [], repositories: [], warn: () => undefined });
      const second = await open();
      const continued = (await second.sample("start"))!;
      second.close();
      // 60 s of the first run and the 200 s since the continue: the first run counted only up to its last event (5 s).
      expect(continued.active_seconds).toBeGreaterThanOrEqual(259);
      expect(continued.active_seconds).toBeLessThan(265);
      expect(continued.interrupted_runs_seen_at).toEqual([at(60)]);
      // The second run dies too (its last sample was the one above); then an offline `apex stop`.
      await event(4, 310, "session.stopped", { from: "interrupted" });
      await store.batch((batch) => batch.set("/sessions/s-1", { session_id: "s-1", status: "stopped", created_at: at(0), ended_at: at(310), agents: [] }));
      const third = await open();
      const stopped = (await third.sample("stop"))!;
      third.close();
      expect(stopped.interrupted_runs_seen_at).toEqual([at(60), continued.updated_at]);
      // The first run's 60 s, and the second run up to its last sample: not the time until the stop.
      expect(stopped.active_seconds).toBeCloseTo(continued.active_seconds, 2);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A git repository made at `repo` with one commit (a.txt), and a way to run git there. */
function gitRepository(repo: string): (...args: string[]) => string {
  const git = (...args: string[]) => execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", ...args], { cwd: repo, encoding: "utf8" });
  mkdirSync(repo);
  git("init", "-q");
  writeFileSync(join(repo, "a.txt"), "a\n");
  git("add", "a.txt");
  git("commit", "-q", "-m", "start");
  return git;
}

describe("metrics of a session imported from another project", () => {
  it("say once, in one plain line, that commits are not counted because the start commit is not in this repository (no git 'bad object')", async () => {
    const dir = mkdtempSync(join(tmpdir(), "apex-metrics-imported-"));
    const repo = join(dir, "repo");
    const store = await openStore({ backend: "lmdb", dir: join(dir, "store") }, { actor: "user:test" });
    try {
      gitRepository(repo);
      // The record the import brought: the other project's start commit, unknown here.
      const foreign = "0123456789abcdef0123456789abcdef01234567";
      await store.batch((batch) => {
        batch.set("/sessions/s-1", { session_id: "s-1", status: "active", created_at: new Date().toISOString(), agents: [] });
        batch.set("/sessions/s-1/metrics", { session_id: "s-1", samples: 1, git: { repositories: [{ name: "project", start_commit: foreign }] } });
      });
      const warnings: string[] = [];
      const sampler = await MetricsSampler.open({ store, sessionId: "s-1", idleStatuses: [], repositories: [{ name: "project", dir: repo }], warn: (message) => warnings.push(message) });
      const first = (await sampler.sample("command"))!;
      await sampler.sample("command");
      sampler.close();
      expect(warnings).toEqual(["project repository: commits and changed lines are not counted: the session's start commit 0123456 is not in this repository (a session imported from another project, or its history rewritten)"]);
      expect(first.git.repositories[0]).toMatchObject({ start_commit: foreign, commits: 0, lines_added: 0 });
      expect(JSON.stringify(first)).not.toContain("bad object");
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the final metrics of a session in a repository where git is slow", () => {
  it("are written within the time onStop gives them: the sample under way has its git cut short, those queued are dropped, git's figures counted before stand", async () => {
    const dir = mkdtempSync(join(tmpdir(), "apex-metrics-slow-git-"));
    const repo = join(dir, "repo");
    const store = await openStore({ backend: "lmdb", dir: join(dir, "store") }, { actor: "user:test" });
    try {
      const git = gitRepository(repo);
      await store.batch((batch) => batch.set("/sessions/s-1", { session_id: "s-1", status: "active", created_at: new Date().toISOString(), agents: [] }));
      const warnings: string[] = [];
      const sampler = await MetricsSampler.open({ store, sessionId: "s-1", idleStatuses: [], repositories: [{ name: "project", dir: repo }], warn: (message) => warnings.push(message) });
      await sampler.sample("start");
      writeFileSync(join(repo, "a.txt"), "a\nb\nc\n");
      git("commit", "-qam", "two lines");
      expect((await sampler.sample("interval"))!.git.repositories[0]).toMatchObject({ commits: 1, lines_added: 2, error: null });
      // From now on each git status and diff takes 3 s or more (a file system monitor that answers
      // slowly, as git in a large repository does): one sample is 6 s of git.
      const hook = join(dir, "slow-fsmonitor");
      writeFileSync(hook, "#!/bin/sh\nsleep 1.5\nexit 1\n", { mode: 0o755 });
      git("config", "core.fsmonitor", hook);
      const slow = Date.now();
      git("status", "--porcelain");
      expect(Date.now() - slow).toBeGreaterThanOrEqual(2500);
      // A sample under way and one queued, as the interval and a change leave them when the session ends.
      void sampler.sample("interval");
      const queued = sampler.sample("change");
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = Date.now();
      const last = (await sampler.sample("stop", { gitWithinMs: 1000 }))!;
      const took = Date.now() - started;
      sampler.close();
      // Before, the final sample waited for both (12 s of git) and then took 6 s of its own: onStop timed out. Its
      // own git uncut is 6 s alone: under 5 s, it was cut short, with room for a loaded machine (it was 2.5 s: 1.5 s more
      // than the cut, which a loaded machine's git and store can take).
      expect(took).toBeLessThan(5000);
      expect(await queued).toBeUndefined();
      expect(last.reason).toBe("stop");
      expect(last.git.repositories[0]).toMatchObject({ commits: 1, lines_added: 2, error: expect.stringMatching(/^git status did not finish within 1 s in /) });
      expect(store.get("/sessions/s-1/metrics")).toEqual(last);
      // The sample cut short warned of nothing; the final one's slowness is said once.
      expect(warnings).toEqual([expect.stringMatching(/^project repository: git status did not finish within 1 s in /)]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("metrics of a session imported from a live export", () => {
  it("are shown in the status the session has here (stopped), not the active its last sample said, by session metrics and the report", async () => {
    const config = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins:", "  checkpoint: {}", "  metrics: {}", "  archive: {}", "  history: {}", ""].join("\n");
    const source = new Project(config, "apex-metrics-live-export-");
    const sid = source.start().session_id;
    await waitFor("the first metrics", () => source.apex(["memory", "show", `/sessions/${sid}/metrics`]).status === 0);
    const bundle = join(source.dir, "live.apexbundle");
    expect(source.apex(["session", "export", sid, "-o", bundle]).status).toBe(0);
    const target = new Project(config, "apex-metrics-imported-");
    expect(target.apex(["session", "import", bundle]).status).toBe(0);
    // Before, `session metrics` said "(active)" and the report's metrics status "active" for a session recorded stopped.
    const shown = target.apex(["session", "metrics", "--session", sid, "--json"]);
    expect(shown.status, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ session_id: sid, status: "stopped" });
    expect(target.apex(["session", "metrics", "--session", sid]).stdout).toContain(`Metrics of session ${sid.slice(0, 8)} (stopped)`);
    const report = JSON.parse(target.apex(["session", "report", sid, "--format", "json"]).stdout) as { session: { effective_status: string }; metrics: SessionMetrics };
    expect([report.session.effective_status, report.metrics.status]).toEqual(["stopped", "stopped"]);
    // The record as stored is left as the bundle held it.
    expect((JSON.parse(target.apex(["memory", "show", `/sessions/${sid}/metrics`, "--json"]).stdout) as { value: SessionMetrics }).value.status).toBe("active");
  });
});

describe("the checkpoints the metrics count as kept", () => {
  it("are those the store holds now, by session metrics and the report, after a cleanup removed some of an ended session (they said the last sample's)", async () => {
    const project = new Project(idleAgentConfig(["checkpoint: {}", "retention: {keep_last: 1, auto_cleanup: false, by_trigger: {manual: {keep_last: 1}}}", "metrics: {}", "history: {}"]), "apex-metrics-kept-");
    const sid = project.start().session_id;
    for (const message of ["one", "two", "three"]) expect(project.apex(["checkpoint", "create", "-m", message]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    const before = JSON.parse(project.apex(["session", "metrics", "--json"]).stdout) as SessionMetrics;
    expect(before.checkpoints).toMatchObject({ created: 4, kept: 4, latest: { name: "checkpoint-004" } });

    // keep_last 1 for manual checkpoints: checkpoint-002 and -003 go; the onStart one and the latest stay.
    const cleanup = project.apex(["session", "cleanup", "--json"]);
    expect(cleanup.status, cleanup.stderr).toBe(0);
    expect((JSON.parse(cleanup.stdout) as { deleted: Array<{ name: string }> }).deleted.map((entry) => entry.name).sort()).toEqual(["checkpoint-002", "checkpoint-003"]);

    const after = JSON.parse(project.apex(["session", "metrics", "--json"]).stdout) as SessionMetrics;
    expect(after.checkpoints).toEqual({ ...before.checkpoints, kept: 2 });
    expect(project.apex(["session", "metrics"]).stdout).toMatch(/Checkpoints +4 created, 2 kept, latest checkpoint-004 \(manual\)/);
    const report = JSON.parse(project.apex(["session", "report", sid, "--format", "json"]).stdout) as SessionReport;
    expect(report.checkpoints.map((checkpoint) => checkpoint.name)).toEqual(["checkpoint-001", "checkpoint-004"]);
    expect(report.metrics!.checkpoints).toEqual(after.checkpoints);
    expect(project.apex(["session", "report", sid]).stdout).toContain("| Checkpoints | 4 created, 2 kept, latest checkpoint-004 (manual) |");

    // The latest gone too (`checkpoint delete`): the latest is the newest left, as a sample would say.
    expect(project.apex(["checkpoint", "delete", `${sid}/checkpoint-004`, "--force"]).status).toBe(0);
    const latest = JSON.parse(project.apex(["session", "metrics", "--json"]).stdout) as SessionMetrics;
    expect(latest.checkpoints).toMatchObject({ created: 4, kept: 1, latest: { name: "checkpoint-001", trigger: "onStart" } });
    // The record as stored is the last sample's.
    expect((JSON.parse(project.apex(["memory", "show", `/sessions/${sid}/metrics`, "--json"]).stdout) as { value: SessionMetrics }).value.checkpoints.kept).toBe(4);
  });
});

describe("the plugin timings of a command's dry run", () => {
  it("are counted apart, as `command NAME --dry-run`: a session compress --dry-run is not counted as a run that compressed", async () => {
    const project = new Project(idleAgentConfig(["checkpoint: {}", "compression: {}", "retention: {}", "metrics: {}"]), "apex-metrics-dry-run-");
    project.start();
    for (const message of ["one", "two"]) expect(project.apex(["checkpoint", "create", "-m", message]).status).toBe(0);
    for (const args of [["session", "compress", "--dry-run"], ["session", "compress", "--dry-run", "--json"], ["session", "cleanup", "--dry-run"], ["session", "compress"]]) {
      const result = project.apex(args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
    }
    const metrics = JSON.parse(project.apex(["session", "metrics", "--json"]).stdout) as SessionMetrics;
    const calls = (plugin: string, hook: string) => metrics.plugin_timings.find((timing) => timing.plugin === plugin && timing.hook === hook)?.calls ?? 0;
    // The supervisor ran each command (it counted all three as `command session compress`).
    expect(calls("compression", "command session compress")).toBe(1);
    expect(calls("compression", "command session compress --dry-run")).toBe(2);
    expect(calls("retention", "command session cleanup")).toBe(0);
    expect(calls("retention", "command session cleanup --dry-run")).toBe(1);
    expect(project.apex(["session", "metrics"]).stdout).toMatch(/^compression +command session compress --dry-run +2 /m);
  });
});

describe("metrics of a running session", () => {
  it("are kept at /sessions/<id>/metrics and /sessions/current/metrics, updated live, and final when it ends", async () => {
    project = new Project(
      [
        "agents:",
        "  worker:",
        "    command: node",
        '    args: ["worker.mjs"]',
        "  idler:",
        "    command: sh",
        `    args: ["-c", "apex agent report --status waiting && exec sleep 600"]`,
        "plugins:",
        "  metrics:",
        "    interval: 1",
        "  history: {}",
        "",
      ].join("\n"),
      "apex-metrics-",
    );
    const dir = project.dir;
    writeFileSync(join(dir, "worker.mjs"), WORKER);
    const git = (...args: string[]) => execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false", ...args], { cwd: dir, encoding: "utf8" });
    git("init", "-q");
    writeFileSync(join(dir, ".gitignore"), ".apex/\nworker.mjs\napex.config.yaml\n");
    git("add", ".gitignore");
    git("commit", "-q", "-m", "start");
    const startCommit = git("rev-parse", "HEAD").trim();

    const ready = project.start();
    const sid = ready.session_id;
    expect(project.apex(["task", "add", "first"]).status).toBe(0);
    expect(project.apex(["task", "add", "second"]).status).toBe(0);
    const before = await waitFor("the first samples", () => {
      const metrics = metricsAt(`/sessions/${sid}/metrics`);
      return metrics && metrics.samples >= 2 && metrics.tasks_total === 2 ? metrics : undefined;
    });
    expect(before).toMatchObject({ session_id: sid, status: "active", tasks_completed: 0, commits_made: 0, ended_at: null });

    // Watch the literal path while the worker does its two tasks.
    const watch = project.apexAsync(["memory", "watch", "/sessions/current/metrics", "--changes-only", "--json", "--timeout", "40"]);
    try {
      await waitFor("the watch to see a sample", () => watch.output().includes('"/sessions/current/metrics"'));
      expect(project.apex(["memory", "set", "/test/go", "true"]).status).toBe(0);
      await waitFor("the watch to see both tasks done", () => watch.output().includes('"tasks_completed":2'), 30_000);
    } finally {
      watch.child.kill("SIGINT");
    }
    const watched = (await watch.done).stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { path: string; kind: string; actor: string; value: SessionMetrics });
    expect(watched.length).toBeGreaterThanOrEqual(3);
    for (const change of watched) expect(change).toMatchObject({ path: "/sessions/current/metrics", kind: "put", actor: "plugin:metrics", value: { session_id: sid } });
    const completed = watched.map((change) => change.value.tasks_completed);
    expect(completed[0]).toBe(0);
    expect(completed.at(-1)).toBe(2);
    expect(completed).toEqual([...completed].sort((a, b) => a - b));
    const samples = watched.map((change) => change.value.samples);
    expect(samples).toEqual([...samples].sort((a, b) => a - b));
    expect(samples.at(-1)).toBeGreaterThan(samples[0]!);

    // An agent-reported counter (what an adversary would set) and the worker's idle report.
    expect(project.apex(["memory", "set", `/sessions/${sid}/metrics-input/issues_found`, "3"]).status).toBe(0);
    const live = await waitFor("the issues and the idle report in the metrics", () => {
      const metrics = metricsAt(`/sessions/${sid}/metrics`);
      return metrics?.issues_found === 3 && metrics.agent_utilization_detail.worker?.reported_status === "idle" ? metrics : undefined;
    });
    expect(live).toMatchObject({ tasks_completed: 2, tasks_failed: 0, tasks_pending: 0, commits_made: 2, issues_source: "metrics-input", reported: { issues_found: 3 } });
    // The flow's names and forms, with the numbers beside them.
    expect(live).toMatchObject({ lines_of_code: 8, lines_added: 8, lines_removed: 0 });
    expect(live.session_duration).toMatch(/^\d+(\.\d)?s$|^\d+m \d\ds$/);
    expect(live.agent_utilization).toEqual({
      worker: `${Math.round(live.agent_utilization_detail.worker!.share * 100)}%`,
      idler: "0%",
    });
    const repositories = Object.fromEntries(live.git.repositories.map((repository) => [repository.name, repository]));
    expect(repositories.project).toMatchObject({ start_commit: startCommit, commits: 1, lines_added: 4, error: null });
    // The workspace did not exist when the session started: all its commits count.
    expect(repositories.workspace).toMatchObject({ path: join(project.storeDir, "workspace"), start_commit: null, commits: 1, lines_added: 4, error: null });

    const { worker, idler } = live.agent_utilization_detail;
    expect(worker!.working_seconds).toBeGreaterThan(1);
    expect(worker!.share).toBeGreaterThan(0);
    expect(worker!.share).toBeLessThanOrEqual(1);
    expect(worker!.cpu_seconds).toBeGreaterThan(0.5); // two 0.7 s busy loops, from /proc
    expect(idler).toMatchObject({ reported_status: "waiting", working_seconds: 0, share: 0 });
    expect(idler!.cpu_seconds).toBeLessThan(worker!.cpu_seconds);
    const working = Object.values(live.agent_utilization_detail).reduce((sum, usage) => sum + usage.working_seconds, 0);
    expect(working).toBeLessThanOrEqual(live.active_seconds * 2);
    expect(live.active_seconds).toBeLessThanOrEqual(live.session_duration_seconds!);
    // The supervisor's tap timings, per plugin and hook.
    expect(live.plugin_timings).toContainEqual(expect.objectContaining({ plugin: "metrics", hook: "onStart", calls: 1, failures: 0 }));

    // Pause: paused time grows, active time does not.
    expect(project.apex(["pause"]).status).toBe(0);
    const paused = await waitFor("a sample while paused", () => {
      const metrics = metricsAt(`/sessions/${sid}/metrics`);
      return metrics?.status === "paused" && metrics.paused_seconds >= 1 ? metrics : undefined;
    });
    expect(project.apex(["resume"]).status).toBe(0);
    expect(paused.active_seconds).toBeLessThan(paused.session_duration_seconds! - 0.9);

    // Its supervisor killed: the metrics as last recorded, in the status the session has now (they said "active").
    const supervisorPid = (JSON.parse(readFileSync(join(project.storeDir, "supervisor.json"), "utf8")) as { pid: number }).pid;
    process.kill(supervisorPid, "SIGKILL");
    await waitFor("the supervisor to be gone", () => {
      try {
        process.kill(supervisorPid, 0);
        return false;
      } catch {
        return true;
      }
    });
    const interrupted = project.apex(["session", "metrics", "--json"]);
    expect(interrupted.status, interrupted.stderr).toBe(0);
    const lastSample = JSON.parse(interrupted.stdout) as SessionMetrics;
    expect(lastSample).toMatchObject({ session_id: sid, status: "interrupted", tasks_completed: 2, ended_at: null });
    expect(project.apex(["session", "metrics"]).stdout).toContain(`Metrics of session ${sid.slice(0, 8)} (interrupted)`);
    const report = JSON.parse(project.apex(["session", "report", "--format", "json"]).stdout) as { session: { effective_status: string }; metrics: SessionMetrics };
    expect([report.session.effective_status, report.metrics.status]).toEqual(["interrupted", "interrupted"]);

    // The session lies dead a while before it is stopped: that time is not its active time.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(project.apex(["stop"]).status).toBe(0);
    const final = metricsAt(`/sessions/${sid}/metrics`)!;
    expect(final.active_seconds).toBeLessThan(lastSample.active_seconds + 0.5);
    expect(final.interrupted_runs_seen_at).toEqual([lastSample.updated_at]);
    expect(final).toMatchObject({ status: "stopped", reason: "stop", tasks_completed: 2, commits_made: 2 });
    expect(final.ended_at).not.toBeNull();
    expect(final.paused_seconds).toBeGreaterThanOrEqual(1);
    // The mirror belongs to the current session only.
    expect(metricsAt("/sessions/current/metrics")).toBeUndefined();

    const shown = project.apex(["session", "metrics"]);
    expect(shown.status).toBe(0);
    // The session as session list prints it, its uuid's short form (it printed the whole id).
    expect(shown.stdout).toContain(`Metrics of session ${sid.slice(0, 8)} (stopped)`);
    expect(shown.stdout).not.toContain(sid);
    expect(shown.stdout).toMatch(/Tasks\s+2 completed, 0 failed/);
    expect(shown.stdout).toMatch(/worker\s+idle\s+/);
    // --session picks the session, and one that names none says so (it said the project had no session).
    expect(JSON.parse(project.apex(["session", "metrics", "--session", sid.slice(0, 8), "--json"]).stdout)).toMatchObject({ session_id: sid });
    const unknown = project.apex(["session", "metrics", "--session", "nosuchsession", "--json"]);
    expect(unknown.status).toBe(3);
    expect(JSON.parse(unknown.stderr).error).toMatchObject({ code: "APEX_E_NO_SESSION", message: 'No session "nosuchsession" in this project.' });
  });
});
