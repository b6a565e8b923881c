// The audit trail and reports through the real CLI: a session with the reference-style worker,
// checkpoints, retention, git and a continue; `apex session history [ID]` and `apex session report`.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { SessionEvent } from "../core/session/records.js";
import type { SessionReport } from "../plugins/history/report.js";
import { renderMarkdown } from "../plugins/history/markdown.js";
import { Project, nodeAgent, shellAgents, waitFor } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const CONFIG = [
  "agents:",
  nodeAgent("worker", "worker.mjs"),
  "plugins:",
  "  checkpoint: {}",
  "  retention:",
  "    keep_last: 1", // per trigger: the second beforeTask checkpoint removes the first
  "    auto_cleanup: true",
  "  git: {}",
  "  metrics:",
  "    interval: 1",
  "  history: {}",
  "",
].join("\n");

const ACTOR = /^(supervisor|user:.+|agent:.+|plugin:.+)$/;

function endedSessions(): Array<{ session_id: string; status: string }> {
  return JSON.parse(project!.apex(["session", "history", "--json"]).stdout) as Array<{ session_id: string; status: string }>;
}

function trailOf(ref: string): { session_id: string; status: string; events: SessionEvent[] } {
  const result = project!.apex(["session", "history", ref, "--json"]);
  expect(result.stderr).toBe("");
  expect(result.status).toBe(0);
  return JSON.parse(result.stdout) as { session_id: string; status: string; events: SessionEvent[] };
}

describe("the audit trail and reports", () => {
  it("history lists every lifecycle, task, checkpoint, retention, restore and git event with time and actor; report renders it", async () => {
    project = new Project(CONFIG, "apex-history-");
    const dir = project.dir;
    execFileSync("git", ["init", "-q"], { cwd: dir });
    execFileSync("git", ["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "commit", "-q", "--allow-empty", "-m", "start"], { cwd: dir });

    const ready = project.start(["--task", "audit me"]);
    const sid = ready.session_id;
    expect(project.apex(["task", "add", "write the thing"]).status).toBe(0);
    expect(project.apex(["task", "add", "ship it", "--milestone"]).status).toBe(0);
    expect(project.apex(["pause"]).status).toBe(0); // a checkpoint (onPause)
    expect(project.apex(["resume"]).status).toBe(0);
    expect(project.apex(["git", "notify", "--", "commit", "-m", "wip"]).status).toBe(0); // beforeGit: a checkpoint and git.operation
    expect(project.apex(["session", "sync-git", sid, "--json"]).status).toBe(0);
    await waitFor("the git sync in the trail", () => trailOf(sid).events.some((event) => event.type === "git.synced"));
    expect(project.apex(["memory", "set", "/test/go", "true"]).status).toBe(0);
    await waitFor("the session to complete", () => endedSessions().some((session) => session.session_id === sid && session.status === "completed"), 30_000);

    // Continued from the live state: the worker finds nothing left and the session completes again.
    const continued = project.apex(["start", "--continue", "last", "--json"]);
    expect(continued.status).toBe(0);
    await waitFor("the continued session to complete", () => trailOf(sid).events.filter((event) => event.type === "session.completed").length === 2, 30_000);

    const { session_id, status, events } = trailOf(sid.slice(0, 8));
    expect(session_id).toBe(sid);
    expect(status).toBe("completed");
    expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index + 1));
    for (const event of events) {
      expect(event.actor).toMatch(ACTOR);
      expect(Number.isNaN(Date.parse(event.at))).toBe(false);
    }
    const first = (type: string, match: Record<string, unknown> = {}) => events.find((event) => event.type === type && Object.entries(match).every(([key, value]) => event[key] === value));
    expect(first("session.started")).toMatchObject({ actor: "supervisor", initial_task: "audit me" });
    expect(first("task.added", { title: "write the thing" })?.actor).toMatch(/^user:/);
    expect(first("task.claimed", { task: "t-0001" })).toMatchObject({ actor: "agent:worker", agent: "worker" });
    expect(first("task.completed", { task: "t-0002" })).toMatchObject({ actor: "agent:worker" });
    expect(first("milestone")).toMatchObject({ actor: "agent:worker", text: "ship it" });
    // Pause and resume are attributed to whoever asked for them: here the local user.
    expect(first("session.paused")).toMatchObject({ actor: expect.stringMatching(/^user:/) });
    expect(first("session.resumed")).toMatchObject({ actor: expect.stringMatching(/^user:/) });
    expect(first("checkpoint", { trigger: "onStart" })).toMatchObject({ sequence: 1 });
    expect(first("checkpoint", { trigger: "onPause" })).toMatchObject({ sequence: 2 });
    expect(first("checkpoint", { trigger: "beforeGit" })).toBeDefined();
    expect(first("git.operation")).toMatchObject({ actor: "plugin:git", command: "commit", args: ["commit", "-m", "wip"], source: "cli" });
    expect(first("git.synced")).toMatchObject({ actor: "plugin:git", branch: expect.any(String), commit: expect.stringMatching(/^[0-9a-f]{40}$/) });
    expect(first("retention.delete")).toMatchObject({ actor: "plugin:retention", name: expect.stringMatching(/^checkpoint-\d{3}$/) });
    expect(first("session.completed")).toMatchObject({ actor: "supervisor" });
    expect(first("session.continued")).toMatchObject({ actor: "supervisor", from: "completed" });
    // Nothing is restored: the live state goes on, its records matched to the agents that run.
    expect(first("session.restored")).toBeUndefined();
    expect(first("session.reconciled")).toMatchObject({ actor: "supervisor", from: "live", requeued: [], stopped_agents: [] });
    const order = ["session.started", "task.added", "session.paused", "git.operation", "git.synced", "session.completed", "session.continued", "session.reconciled"];
    const positions = order.map((type) => events.findIndex((event) => event.type === type));
    expect(positions).toEqual([...positions].sort((a, b) => a - b));

    // The text form: one line per event, with its date, time and actor.
    const text = project.apex(["session", "history", sid]);
    expect(text.status).toBe(0);
    const lines = text.stdout.trim().split("\n");
    // The session as session list prints it, its uuid's short form (it printed the whole id).
    // Its times are UTC, and it says so: a user east or west of it read them as local times.
    expect(lines[0]).toBe(`Session ${sid.slice(0, 8)} (completed): ${events.length} events, times in UTC`);
    const inNewYork = project.apex(["session", "history", sid], { env: { TZ: "America/New_York" } });
    expect(inNewYork.stdout).toBe(text.stdout);
    expect(text.stdout).toContain(` ${events[0]!.at.slice(0, 10)} ${events[0]!.at.slice(11, 19)}  session started`);
    expect(text.stdout).not.toContain(sid);
    expect(lines).toHaveLength(events.length + 1);
    expect(text.stdout).toMatch(/^ *1 {2}\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}session started: audit me {2}\[supervisor\]$/m);
    expect(text.stdout).toMatch(/task t-0001 claimed by worker: write the thing {2}\[agent:worker\]$/m);
    expect(text.stdout).toMatch(/checkpoint 2 \(onPause\) {2}\[supervisor\]$/m);
    expect(text.stdout).toMatch(/git synced: (main|master) at [0-9a-f]{12}( \(uncommitted changes\))? {2}\[plugin:git\]$/m);
    expect(text.stdout).toMatch(/records matched to what runs \(from the live state\): 0 tasks back to pending {2}\[supervisor\]$/m);
    // Git operations and retention's deletions in words too, as every other event (each was its type and raw JSON).
    expect(text.stdout).toMatch(/git commit -m wip \(apex git\) {2}\[plugin:git\]$/m);
    expect(text.stdout).toMatch(/checkpoint \d+ \(checkpoint-\d{3}, beforeTask\) removed by retention: no rule keeps it {2}\[plugin:retention\]$/m);
    expect(lines.filter((line) => /\{"/.test(line))).toEqual([]);

    // --help says what --json prints with an ID as it is: an object holding the events (it said an array of them).
    expect(project.apex(["session", "history", "--help"]).stdout.replace(/\s+/g, " ")).toContain("(with an ID, or --session, or through --remote: {session_id, name, status, events: [{seq, at, type, actor, …}]})");

    // Without an ID: the ended sessions, as before.
    const ended = project.apex(["session", "history"]);
    expect(ended.stdout).toMatch(new RegExp(`^${sid}\\s+completed\\s`, "m"));
    // Unknown or too short: not found (3).
    expect(project.apex(["session", "history", "zzzzzzzz"]).status).toBe(3);
    const short = project.apex(["session", "history", sid.slice(0, 2)]);
    expect(short.status).toBe(3);
    expect(short.stderr).toContain("at least 4 characters");

    // The report, as JSON: the same session, events and records the other commands show.
    const json = project.apex(["session", "report", sid, "--format", "json"]);
    expect(json.stderr).toBe("");
    expect(json.status).toBe(0);
    const report = JSON.parse(json.stdout) as SessionReport;
    expect(Object.keys(report)).toEqual(["format", "generated_at", "session", "metrics", "tasks", "milestones", "agents", "checkpoints", "git", "events"]);
    expect(report.format).toBe(1);
    expect(report.session).toMatchObject({ session_id: sid, status: "completed", effective_status: "completed", initial_task: "audit me" });
    expect(report.metrics).toMatchObject({ session_id: sid, status: "completed", reason: "stop", tasks_completed: 2, milestones: 1 });
    expect(report.metrics!.checkpoints.created).toBeGreaterThanOrEqual(2);
    expect(report.tasks.counts).toEqual({ pending: 0, active: 0, completed: 2, failed: 0, total: 2 });
    expect(report.tasks.items.map((task) => task.title)).toEqual(["write the thing", "ship it"]);
    expect(report.milestones).toEqual([expect.objectContaining({ text: "ship it", task: "t-0002" })]);
    expect(report.agents.map((agent) => agent.name)).toEqual(["worker"]);
    // Retention keeps the last checkpoint of each trigger; they have the git state the git plugin added.
    expect(report.checkpoints.length).toBeGreaterThanOrEqual(2);
    expect(new Set(report.checkpoints.map((checkpoint) => checkpoint.trigger)).size).toBe(report.checkpoints.length);
    expect(report.checkpoints[0]!.sequence).toBeLessThan(report.checkpoints[1]!.sequence);
    for (const checkpoint of report.checkpoints) {
      expect(checkpoint).toMatchObject({ name: expect.stringMatching(/^checkpoint-\d{3}$/), id: expect.any(String), trigger: expect.any(String) });
    }
    expect(report.git.last_checkpoint).toMatchObject({ branch: expect.any(String), commit: expect.stringMatching(/^[0-9a-f]{40}$/) });
    expect(report.git.synced).toMatchObject({ commit: expect.stringMatching(/^[0-9a-f]{40}$/), synced_at: expect.any(String) });
    expect(report.git.repositories.map((repository) => repository.name)).toContain("project");
    expect(report.events).toEqual(events);

    // As Markdown (the default, for the last session when none is current), to a file.
    const md = project.apex(["session", "report"]);
    expect(md.status).toBe(0);
    const headings = md.stdout.split("\n").filter((line) => line.startsWith("#"));
    expect(headings).toEqual([
      `# Session report: ${sid}`,
      "## Session",
      "## Metrics",
      "### Agent utilization",
      "### Plugin costs",
      "## Tasks",
      "### Milestones",
      "## Checkpoints",
      "## Git",
      "## Events",
    ]);
    expect(md.stdout).toContain("| Status | completed (all agents exited with code 0 and no task is pending or active) |");
    expect(md.stdout).toContain("| t-0001 | write the thing | completed | worker |");
    expect(md.stdout).toMatch(/^\| Tasks \| 2 completed, 0 failed, 0 active, 0 pending \(of 2\) \|$/m);
    expect(md.stdout).toMatch(/^\| worker \| finished \| [^|]+ \| \d+% \| [\d.]+s \(\d+%\) \|$/m);
    expect(md.stdout).toMatch(/^\| \d+ \| [^|]+ \| agent:worker \| task t-0001 claimed by worker: write the thing \|$/m);
    expect(md.stdout).toMatch(/^\| project \([^)]+\) \| [0-9a-f]{7}\.\.[0-9a-f]{7} on \S+ \| 0 \| 0 \| 0 \|$/m);
    // Every table row has as many cells as its header.
    const tables = md.stdout.split("\n\n").filter((block) => block.startsWith("| "));
    expect(tables.length).toBeGreaterThanOrEqual(7);
    for (const block of tables) {
      const cells = block.split("\n").map((row) => row.replace(/\\\|/g, "").split("|").length);
      expect(new Set(cells).size).toBe(1);
    }

    const written = project.apex(["session", "report", sid.slice(0, 6), "-o", "report.md"]);
    expect(written.status).toBe(0);
    // The session as session list prints it (it printed the whole id, which the report itself keeps).
    expect(written.stdout.trim()).toBe(`Wrote the md report of session ${sid.slice(0, 8)} to ${join(dir, "report.md")}.`);
    expect(readFileSync(join(dir, "report.md"), "utf8").replace(/^Generated .*$/m, "")).toBe(md.stdout.replace(/^Generated .*$/m, ""));

    // --json with -o: the report goes to the file, stdout is one JSON document saying where.
    const toFile = project.apex(["session", "report", sid, "-o", "report.json", "--json"]);
    expect(toFile.status, toFile.stderr).toBe(0);
    const written2 = readFileSync(join(dir, "report.json"), "utf8");
    expect(JSON.parse(toFile.stdout)).toEqual({ session_id: sid, format: "json", file: join(dir, "report.json"), bytes: Buffer.byteLength(written2) });
    expect(JSON.parse(written2)).toMatchObject({ format: 1, session: { session_id: sid } });

    const bad = project.apex(["session", "report", "--format", "xml"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Unknown report format "xml"');
    // A bad --format is refused with --json too (it was dropped silently).
    const badJson = project.apex(["session", "report", "--format", "xml", "--json"]);
    expect(badJson.status).toBe(2);
    expect(JSON.parse(badJson.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: 'Unknown report format "xml".' });
    expect(badJson.stdout).toBe("");
    // --json is --format json: --format md with it was ignored without a word.
    const both = project.apex(["session", "report", "--format", "md", "--json"]);
    expect(both.status).toBe(2);
    expect(JSON.parse(both.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: "--json and --format md do not go together: --json is the JSON report (--format json)." });
    expect(both.stdout).toBe("");
  });

  it("the Markdown report keeps what agents and users wrote on one line: a line break in a milestone or a cell starts no heading or row", () => {
    const report = {
      format: 1,
      generated_at: "2026-12-01T00:00:00.000Z",
      session: { session_id: "s-1", effective_status: "stopped", initial_task: "first\r# task heading", agents: [] },
      metrics: null,
      tasks: { counts: { pending: 1, active: 0, completed: 0, failed: 0, total: 1 }, items: [{ id: "t-0001", title: "a\rb\n## row", status: "pending" }] },
      milestones: [{ at: "2026-12-01T00:00:00.000Z", text: "ship it\n# Injected heading", by: "user:me" }],
      agents: [],
      checkpoints: [],
      git: { repositories: [], first_checkpoint: null, last_checkpoint: null, synced: null },
      // One process paused, and two: the count agrees with its noun ("1 processes stopped" before).
      events: [
        { seq: 1, at: "2026-12-01T00:00:01.000Z", type: "session.paused", actor: "supervisor", processes: 1, stopping: [4242] },
        { seq: 2, at: "2026-12-01T00:00:02.000Z", type: "session.paused", actor: "supervisor", processes: 2 },
      ],
    } as unknown as SessionReport;
    const md = renderMarkdown(report);
    expect(md).toContain("| 1 | 2026-12-01T00:00:01.000Z | supervisor | session paused (1 process stopped, 1 of them once their uninterruptible I/O ends) |");
    expect(md).toContain("| 2 | 2026-12-01T00:00:02.000Z | supervisor | session paused (2 processes stopped) |");
    // Before, the milestone's second line was a heading of its own: "# Injected heading".
    expect(md.split("\n").filter((line) => line.startsWith("#"))).toEqual(["# Session report: s-1", "## Session", "## Metrics", "## Tasks", "### Milestones", "## Checkpoints", "## Git", "## Events"]);
    expect(md).toContain("- 2026-12-01T00:00:00.000Z: ship it # Injected heading (user:me)");
    expect(md).toContain("| Initial task | first # task heading |");
    expect(md).toContain("| t-0001 | a b ## row | pending |");
    expect(md).not.toMatch(/\r/);
  });

  it("the Markdown report shows what agents and users wrote as text: no HTML, link, emphasis or escape sequence of theirs is live where it is rendered", () => {
    const xss = "<img src=x onerror=alert(1)>";
    const report = {
      format: 1,
      generated_at: "2026-12-01T00:00:00.000Z",
      session: { session_id: "s-1", effective_status: "active", initial_task: `${xss} first`, agents: ["coder"] },
      metrics: {
        updated_at: "2026-12-01T00:00:00.000Z", reason: "interval", samples: 1, session_duration_seconds: 1, active_seconds: 1, paused_seconds: 0,
        tasks_total: 1, tasks_pending: 1, tasks_active: 0, tasks_completed: 0, tasks_failed: 0, tasks_reopened: 0, milestones: 1, commits_made: 0,
        lines_added: 0, lines_removed: 0, issues_found: 0, issues_source: "none", checkpoints: { created: 1, kept: 1, latest: null },
        agent_utilization_detail: { coder: { reported_status: "<script>alert('status')</script>", working_seconds: 1, share: 1, cpu_seconds: 0, cpu_share: 0 } },
        git: { repositories: [] }, plugin_timings: [],
      },
      tasks: { counts: { pending: 1, active: 0, completed: 0, failed: 0, total: 1 }, items: [{ id: "t-0001", title: "[click](javascript:alert(1)) __init__.py &lt;b&gt; a & b \u001b]0;owned\u0007", status: "pending" }] },
      milestones: [{ at: "2026-12-01T00:00:00.000Z", text: "<iframe src=//evil>", by: "user:me" }],
      agents: [],
      checkpoints: [{ name: "checkpoint-001", sequence: 1, id: "c", trigger: "onStart", description: "<svg onload=alert(2)>", created_at: "2026-12-01T00:00:00.000Z", pinned: false, git_state: { branch: "<b>evil</b>", commit: "0123456789" } }],
      git: { repositories: [], first_checkpoint: { branch: "<b>evil</b>", commit: "0123456789" }, last_checkpoint: null, synced: null },
      events: [{ seq: 1, at: "2026-12-01T00:00:01.000Z", type: "task.added", actor: "user:<u>me</u>", task: "t-0001", title: "<script>alert(3)</script>" }],
    } as unknown as SessionReport;
    const md = renderMarkdown(report);
    // Before, each of these was in the file as written: raw HTML, a javascript: link, an escape sequence.
    expect(md).not.toMatch(/<(img|script|iframe|svg|b|u)\b/i);
    expect(md).not.toMatch(/(^|[^\\])\]\(/m);
    expect(md).not.toContain("\u001b");
    expect(md).toContain("| Initial task | &lt;img src=x onerror=alert(1)> first |");
    expect(md).toContain("| coder | &lt;script>alert('status')&lt;/script> |");
    expect(md).toContain("| t-0001 | \\[click\\](javascript:alert(1)) \\_\\_init\\_\\_.py &amp;lt;b&amp;gt; a & b \\u001b\\]0;owned\\u0007 | pending |");
    expect(md).toContain("- 2026-12-01T00:00:00.000Z: &lt;iframe src=//evil> (user:me)");
    expect(md).toContain("| checkpoint-001 | onStart | 2026-12-01T00:00:00.000Z | &lt;svg onload=alert(2)> | &lt;b>evil&lt;/b> @ 0123456 |");
    expect(md).toContain("- First checkpoint: &lt;b>evil&lt;/b> @ 0123456");
    expect(md).toMatch(/\| user:&lt;u>me&lt;\/u> \| task t-0001 added: &lt;script>alert\(3\)&lt;\/script> \|$/m);
  });

  it("a checkpoint someone deleted is in the trail, with who deleted it, through the supervisor and on the store", () => {
    const agents = shellAgents({ worker: "while true; do sleep 0.5; done" }).replace("plugins: {}\n", "");
    project = new Project(`${agents}plugins:\n  checkpoint: {}\n  history: {}\n`, "apex-history-");
    const sid = project.start(["--task", "keep a record"]).session_id;
    for (const description of ["first", "second", "third"]) expect(project.apex(["checkpoint", "create", description]).status).toBe(0);
    expect(project.apex(["checkpoint", "pin", "checkpoint-004"]).status).toBe(0);
    // Through the running supervisor, as an agent would (APEX_AGENT names it), then on the store once it ended, with --force.
    const byAgent = project.apex(["checkpoint", "delete", "checkpoint-002"], { env: { APEX_AGENT: "worker" } });
    expect(byAgent.status, byAgent.stderr).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    const forced = project.apex(["checkpoint", "delete", `${sid}/checkpoint-004`, "--force"]);
    expect(forced.status, forced.stderr).toBe(0);

    // They were in no trail: the history named checkpoints 2 and 4 as made, and nothing said they were gone, nor who removed them.
    const { events } = trailOf(sid);
    const deleted = events.filter((event) => event.type === "checkpoint.deleted");
    expect(deleted).toEqual([
      expect.objectContaining({ actor: "agent:worker", name: "checkpoint-002", sequence: 2, trigger: "manual", forced: false, checkpoint: expect.any(String) }),
      expect.objectContaining({ actor: expect.stringMatching(/^user:/), name: "checkpoint-004", sequence: 4, trigger: "manual", forced: true }),
    ]);
    expect(events.map((event) => event.seq)).toEqual(events.map((_, index) => index + 1));
    const text = project.apex(["session", "history", sid]).stdout;
    expect(text).toMatch(/checkpoint 2 \(checkpoint-002, manual\) deleted {2}\[agent:worker\]$/m);
    expect(text).toMatch(/checkpoint 4 \(checkpoint-004, manual\) deleted with --force {2}\[user:[^\]]+\]$/m);
    // A refused delete (pinned, no --force) writes nothing.
    expect(project.apex(["checkpoint", "pin", `${sid}/checkpoint-003`]).status).toBe(0);
    expect(project.apex(["checkpoint", "delete", `${sid}/checkpoint-003`]).status).toBe(4);
    expect(trailOf(sid).events).toHaveLength(events.length);
  });

  it("a project without sessions says so", () => {
    project = new Project(CONFIG, "apex-history-");
    writeFileSync(join(project.dir, "note.txt"), "");
    for (const args of [["session", "history", "last"], ["session", "report"]]) {
      const result = project.apex(args);
      expect(result.status).toBe(3);
      expect(result.stderr).toContain("This project has no session yet.");
    }
  });

  it("with --format json a report's error is JSON on stderr, as with --json: a missing session, an unknown option, an -o FILE that exists", () => {
    project = new Project(CONFIG, "apex-history-");
    writeFileSync(join(project.dir, "kept.json"), "{}\n");
    // --format json asks for JSON as --json does; its errors were printed as text (error[APEX_E_…]: …), which a JSON reader cannot take.
    for (const [args, code, status] of [
      [["session", "report", "--format", "json"], "APEX_E_NO_SESSION", 3],
      [["session", "report", "--format=json"], "APEX_E_NO_SESSION", 3],
      [["session", "report", "nosuch", "--format", "json"], "APEX_E_NO_SESSION", 3],
      [["session", "report", "--format", "json", "--bogus"], "APEX_E_USAGE", 2],
      [["session", "report", "--format", "json", "-o", "kept.json"], "APEX_E_CONFLICT", 4],
    ] as Array<[string[], string, number]>) {
      const result = project.apex(args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(status);
      expect(result.stdout).toBe("");
      const lines = result.stderr.trim().split("\n");
      expect(lines, args.join(" ")).toHaveLength(1);
      expect(JSON.parse(lines[0]!).error, args.join(" ")).toMatchObject({ code, exitCode: status });
    }
    // The Markdown report's errors stay text.
    const md = project.apex(["session", "report", "--format", "md"]);
    expect(md.status).toBe(3);
    expect(md.stderr).toMatch(/^error\[APEX_E_NO_SESSION\]: /);
  });
});
