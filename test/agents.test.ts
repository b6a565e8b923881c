import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { APEX_BIN, REPO_ROOT, cleanEnv, runApex, tempDir } from "./helpers/cli.js";

// The agents are plain .mjs files without types; import them as loosely typed modules.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;
const lib: Loose = await import(join(REPO_ROOT, "agents/lib.mjs"));
const AGENTS = ["supervisor", "coder", "adversary"] as const;
const TASK = "Implement user authentication";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-agents-"));
});
afterEach(() => cleanup());

function gitIn(cwd: string, args: string[]): string {
  const result = spawnSync("git", args, { cwd, encoding: "utf8", env: { ...cleanEnv(), GIT_CONFIG_NOSYSTEM: "1" } });
  if (result.status !== 0) throw new Error(`git ${args.join(" ")}: ${result.stderr}`);
  return result.stdout.trim();
}

describe("planning (supervisor)", () => {
  it("splits a task the same way every time", () => {
    const first = lib.planSubtasks(TASK);
    expect(lib.planSubtasks(TASK)).toEqual(first);
    expect(first.map((subtask: Loose) => subtask.title)).toEqual([
      "Design the user model for: Implement user authentication",
      "Implement the core of: Implement user authentication",
      "Add input validation for: Implement user authentication",
      "Write tests for: Implement user authentication",
    ]);
    expect(first.map((subtask: Loose) => subtask.milestone)).toEqual([false, false, false, true]);
    expect(first.map((subtask: Loose) => lib.kindOfTitle(subtask.title))).toEqual(["model", "core", "validation", "tests"]);
  });

  it("normalises the text and adapts the model to the subject", () => {
    expect(lib.planSubtasks("  Implement   user authentication.  ")).toEqual(lib.planSubtasks(TASK));
    const other = lib.planSubtasks("Build a CSV importer");
    expect(other).toHaveLength(4);
    expect(other[0].title).toBe("Design the data model for: Build a CSV importer");
    for (const subtask of other) expect(subtask.title.endsWith(": Build a CSV importer")).toBe(true);
    expect(new Set(other.map((subtask: Loose) => subtask.title)).size).toBe(4);
  });

  it("refuses an empty task", () => {
    expect(() => lib.planSubtasks("   ")).toThrow(/empty/);
  });

  it("reads the pace and the store from the environment", () => {
    expect(lib.paceSeconds(undefined)).toBe(1.5);
    expect(lib.paceSeconds("0.1")).toBe(0.1);
    expect(lib.paceSeconds("nope")).toBe(1.5);
    expect(lib.paceSeconds("-2")).toBe(1.5);
    expect(lib.workspaceDirOf({ APEX_HOME: "/p/.apex" })).toBe("/p/.apex/workspace");
    expect(lib.workspaceDirOf({ APEX_CONFIG: "/p/apex.config.yaml" })).toBe("/p/.apex/workspace");
  });

  it("runs apex the way APEX_BIN says", () => {
    expect(lib.apexCommand({ APEX_BIN: '"/usr/bin/node" "/a b/bin/apex.js"' })).toEqual(["/usr/bin/node", "/a b/bin/apex.js"]);
    expect(lib.apexCommand({ APEX_BIN: "/opt/apex/bin/apex" })).toEqual(["/opt/apex/bin/apex"]);
    expect(lib.apexCommand({ APEX_BIN: APEX_BIN })).toEqual([process.execPath, APEX_BIN]);
    expect(lib.apexCommand({})).toEqual([process.execPath, APEX_BIN]);
  });

  it("knows when the supervisor is still adding its plan", () => {
    expect(lib.supervisorPlanning({ session: "s", planning: true, planned: false }, "s")).toBe(true);
    expect(lib.supervisorPlanning({ session: "s", planning: false, planned: true }, "s")).toBe(false);
    expect(lib.supervisorPlanning({ session: "old", planning: true, planned: false }, "s")).toBe(false);
    expect(lib.supervisorPlanning(undefined, "s")).toBe(false);
  });

  it("reads error codes from the CLI's stderr", () => {
    expect(lib.errorCodeOf('{"error":{"code":"APEX_E_NO_TASK","message":"No pending task","exitCode":4}}\n')).toBe("APEX_E_NO_TASK");
    expect(lib.errorCodeOf("error[APEX_E_RPC]: Cannot reach the supervisor\n  hint: …")).toBe("APEX_E_RPC");
    expect(lib.errorCodeOf("")).toBeUndefined();
  });
});

describe("workspace guard (coder, adversary)", () => {
  it("resolves paths inside the workspace", () => {
    const workspace = join(dir, "ws");
    mkdirSync(workspace);
    expect(lib.resolveInWorkspace(workspace, "src/a.js")).toBe(join(workspace, "src/a.js"));
    expect(lib.resolveInWorkspace(workspace, "src/../b.js")).toBe(join(workspace, "b.js"));
    expect(lib.resolveInWorkspace(workspace, join(workspace, "c.js"))).toBe(join(workspace, "c.js"));
  });

  it.each([["../outside.js"], ["src/../../outside.js"], ["/etc/passwd"], [""], ["."], [".git/config"], ["a\0b"]])(
    "refuses %j",
    (file) => {
      const workspace = join(dir, "ws");
      mkdirSync(workspace);
      expect(() => lib.resolveInWorkspace(workspace, file)).toThrow(/Refused workspace path/);
      expect(() => lib.writeWorkspaceFile(workspace, file, "x")).toThrow(/Refused workspace path/);
    },
  );

  it("refuses a way out through a symbolic link and writes nothing", () => {
    const workspace = join(dir, "ws");
    const outside = join(dir, "outside");
    mkdirSync(workspace);
    mkdirSync(outside);
    symlinkSync(outside, join(workspace, "link"));
    expect(() => lib.writeWorkspaceFile(workspace, "link/evil.js", "x")).toThrow(/symbolic link/);
    expect(() => lib.writeWorkspaceFile(workspace, "link/deeper/evil.js", "x")).toThrow(/symbolic link/);
    expect(existsSync(join(outside, "evil.js"))).toBe(false);
    expect(existsSync(join(outside, "deeper"))).toBe(false);
  });

  it("keeps git inside the workspace, even within another repository", () => {
    gitIn(dir, ["init", "-q"]);
    gitIn(dir, ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "outer"]);
    const workspace = join(dir, ".apex/workspace");
    expect(lib.prepareWorkspace(workspace, { name: "APEX coder", email: "coder@apex.invalid" })).toMatch(/created/);
    expect(lib.prepareWorkspace(workspace)).toBe("");
    lib.writeWorkspaceFile(workspace, "src/a.js", "export const a = 1;\n");
    const commit = lib.commitFiles(workspace, ["src/a.js"], "Add a");
    expect(commit).toMatch(/^[0-9a-f]{40}$/);
    expect(lib.hasCommit(workspace, commit)).toBe(true);
    expect(gitIn(workspace, ["log", "--format=%s"]).split("\n")).toEqual(["Add a", "Initialise the APEX workspace"]);
    expect(gitIn(workspace, ["config", "user.email"])).toBe("coder@apex.invalid");
    // the enclosing repository saw nothing
    expect(gitIn(dir, ["log", "--format=%s"])).toBe("outer");
    expect(() => lib.git(join(dir, "not-a-workspace"), ["status"])).toThrow(/not a git repository/);
  });
});

describe("the code the coder writes", () => {
  it("parses, runs its own tests, and has the issue the adversary looks for only in the first revision", () => {
    const workspace = join(dir, "ws");
    lib.prepareWorkspace(workspace);
    const tasks = lib.planSubtasks(TASK).map((subtask: Loose, i: number) => ({ id: `t-000${i + 1}`, title: subtask.title }));
    for (const revision of [1, 2]) {
      const modules: Array<{ file: string; kind: string }> = [];
      for (const task of tasks) {
        const kind = lib.kindOfTitle(task.title);
        const file = lib.fileForTask(task);
        const source = lib.renderModule({ task, revision, validated: revision > 1, modules });
        lib.writeWorkspaceFile(workspace, file, source);
        modules.push({ file, kind });
        expect(spawnSync(process.execPath, ["--check", join(workspace, file)]).status).toBe(0);
        const issues = lib.findIssues(kind, source);
        if (revision === 1 && (kind === "model" || kind === "core")) expect(issues).toEqual(["missing input validation"]);
        else expect(issues).toEqual([]);
      }
      const run = spawnSync(process.execPath, ["--test", "--test-reporter=tap"], { cwd: workspace, encoding: "utf8" });
      expect(run.stdout + run.stderr).toMatch(/# pass [1-9]/);
      expect(run.status).toBe(0);
    }
  });

  it("keeps hostile titles inside comments and strings", () => {
    const workspace = join(dir, "ws");
    lib.prepareWorkspace(workspace);
    const title = 'Write tests for: x */ process.exit(1) /*\n"; throw 1; //';
    const task = { id: "t-0009", title };
    const file = lib.fileForTask(task);
    expect(file).toMatch(/^test\/[a-z0-9-]+\.test\.js$/);
    lib.writeWorkspaceFile(workspace, file, lib.renderModule({ task, modules: [] }));
    const run = spawnSync(process.execPath, ["--test", file], { cwd: workspace, encoding: "utf8" });
    expect(run.status).toBe(0);
    const generic = { id: "t-0010", title: "Fix */ the\nbug" };
    lib.writeWorkspaceFile(workspace, lib.fileForTask(generic), lib.renderModule({ task: generic }));
    expect(spawnSync(process.execPath, ["--check", join(workspace, lib.fileForTask(generic))]).status).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// The three agents against a small stand-in for the `apex` CLI (APEX_BIN): a JSON file
// with a lock instead of the supervisor daemon. It checks the agents' protocol and their
// resume behaviour independently of the session machinery.

const FAKE_APEX = String.raw`
import { mkdirSync, readFileSync, rmdirSync, writeFileSync, renameSync } from "node:fs";
const state = process.env.FAKE_APEX_STATE;
const lock = state + ".lock";
const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
for (let i = 0; ; i++) { try { mkdirSync(lock); break; } catch { if (i > 2000) throw new Error("lock"); sleep(5); } }
let code = 0;
try { code = main(); } finally { rmdirSync(lock); }
process.exitCode = code;

function main() {
  const db = JSON.parse(readFileSync(state, "utf8"));
  const args = process.argv.slice(2).filter((arg) => arg !== "--json" && arg !== "--");
  const flag = (name) => { const i = args.indexOf(name); if (i < 0) return undefined; const value = args[i + 1]; args.splice(i, 2); return value; };
  const has = (name) => { const i = args.indexOf(name); if (i < 0) return false; args.splice(i, 1); return true; };
  const stdin = () => readFileSync(0, "utf8");
  const out = (value) => process.stdout.write(JSON.stringify(value) + "\n");
  const fail = (code, exit, message) => { process.stderr.write(JSON.stringify({ error: { code, message, exitCode: exit } }) + "\n"); return exit; };
  const me = process.env.APEX_AGENT;
  const save = () => { writeFileSync(state + ".tmp", JSON.stringify(db)); renameSync(state + ".tmp", state); };
  const log = (entry) => db.log.push({ ...entry, by: me });
  const task = (id) => db.tasks.find((t) => t.id === id);
  const [group, verb] = args;
  const key = group + " " + (verb ?? "");
  if (key === "task list") { out(db.tasks); return 0; }
  if (key === "task claim") {
    const agent = flag("--agent") ?? me;
    const next = db.tasks.find((t) => t.status === "pending" && (t.assignee === null || t.assignee === agent));
    if (!next) return fail("APEX_E_NO_TASK", 4, "No pending task for " + agent);
    Object.assign(next, { status: "active", assignee: agent }); log({ op: "claim", task: next.id }); save(); out(next); return 0;
  }
  if (key === "task add") {
    const milestone = has("--milestone");
    const t = { id: "t-" + String(db.tasks.length + 1).padStart(4, "0"), title: args[2], status: "pending", assignee: null, milestone, result: null, reason: null, reopened: 0 };
    db.tasks.push(t); log({ op: "add", task: t.id }); save(); out(t); return 0;
  }
  if (key === "task done") {
    const result = JSON.parse(flag("--result") ?? "null"); const t = task(args[2]);
    if (t.status === "completed") return fail("APEX_E_TASK_STATE", 4, "already completed");
    Object.assign(t, { status: "completed", result }); log({ op: "done", task: t.id }); save(); out(t); return 0;
  }
  if (key === "task fail") { const t = task(args[2]); Object.assign(t, { status: "failed", reason: flag("--reason") }); save(); out(t); return 0; }
  if (key === "task reopen") {
    const reason = flag("--reason"); const t = task(args[2]);
    if (t.status === "pending") return fail("APEX_E_TASK_STATE", 4, "already pending");
    Object.assign(t, { status: "pending", assignee: null, reason, reopened: t.reopened + 1 }); log({ op: "reopen", task: t.id, reason }); save(); out(t); return 0;
  }
  if (group === "milestone") { db.milestones.push(args[1]); save(); out({ text: args[1] }); return 0; }
  if (key === "agent report") {
    const status = flag("--status"); const taskTitle = flag("--task"); const context = flag("--context");
    db.reports.push({ agent: me, status, task: taskTitle ?? null });
    if (context !== undefined) db.contexts[me] = JSON.parse(context);
    save(); out({ ok: true }); return 0;
  }
  if (key === "memory show") {
    if (!(args[2] in db.memory)) return fail("APEX_E_NOT_FOUND", 3, "Nothing is stored at " + args[2]);
    out({ path: args[2], value: db.memory[args[2]] }); return 0;
  }
  if (key === "memory query") {
    const prefix = args[2].replace(/\/\*\*$/, "/");
    out(Object.fromEntries(Object.entries(db.memory).filter(([path]) => path.startsWith(prefix)))); return 0;
  }
  if (key === "memory set") { db.memory[args[2]] = JSON.parse(args[3] === "-" ? stdin() : args[3]); save(); out({ path: args[2] }); return 0; }
  if (key === "memory import") { Object.assign(db.memory, JSON.parse(stdin())); save(); out({ ok: true }); return 0; }
  if (group === "status") { out({ session_id: "s-fake", status: "active", initial_task: db.initial_task }); return 0; }
  return fail("APEX_E_USAGE", 2, "fake apex: unknown command " + args.join(" "));
}
`;

interface FakeState {
  tasks: Array<{ id: string; title: string; status: string; assignee: string | null; milestone: boolean; result: Loose; reason: string | null; reopened: number }>;
  memory: Record<string, Loose>;
  milestones: string[];
  reports: Array<{ agent: string; status: string; task: string | null }>;
  contexts: Record<string, Loose>;
  log: Array<{ op: string; task: string; by: string; reason?: string }>;
  initial_task: string;
}

describe("the agents together (stand-in CLI)", () => {
  const children = new Set<ChildProcess>();
  afterEach(() => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    children.clear();
  });

  function setup(): { state: string; home: string; env: NodeJS.ProcessEnv } {
    const fake = join(dir, "fake-apex.mjs");
    writeFileSync(fake, FAKE_APEX);
    const state = join(dir, "state.json");
    const initial: FakeState = { tasks: [], memory: {}, milestones: [], reports: [], contexts: {}, log: [], initial_task: TASK };
    writeFileSync(state, JSON.stringify(initial));
    const home = join(dir, ".apex");
    mkdirSync(home);
    return { state, home, env: { ...cleanEnv(), APEX_BIN: fake, FAKE_APEX_STATE: state, APEX_HOME: home, APEX_SESSION_ID: "s-fake", APEX_AGENT_PACE: "0.05" } };
  }

  function launch(name: string, env: NodeJS.ProcessEnv, extra: NodeJS.ProcessEnv = {}) {
    const child = spawn(process.execPath, [join(REPO_ROOT, `agents/${name}.mjs`)], { env: { ...env, APEX_AGENT: name, ...extra }, stdio: ["ignore", "pipe", "pipe"] });
    children.add(child);
    let output = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    return { child, exited, output: () => output };
  }

  const read = (state: string): FakeState => JSON.parse(readFileSync(state, "utf8"));

  async function until(predicate: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  it("plan, code, review, send one task back, redo it, and all exit 0", async () => {
    const { state, home, env } = setup();
    const runs = AGENTS.map((name) => launch(name, env));
    const codes = await Promise.all(runs.map((run) => run.exited));
    const logs = runs.map((run) => run.output()).join("\n");
    expect(codes, logs).toEqual([0, 0, 0]);

    const db = read(state);
    expect(db.tasks.map((task) => task.status)).toEqual(["completed", "completed", "completed", "completed"]);
    expect(db.tasks.map((task) => task.milestone)).toEqual([false, false, false, true]);
    expect(db.milestones).toEqual(["Plan ready: 4 subtasks", "All subtasks completed and reviewed"]);
    // exactly one send-back: the user model, for missing validation; the coder redid it
    const reopens = db.log.filter((entry) => entry.op === "reopen");
    expect(reopens).toEqual([{ op: "reopen", task: "t-0001", reason: "missing input validation", by: "adversary" }]);
    expect(db.tasks[0]!.result).toMatchObject({ revision: 2 });
    expect(db.memory["/agents/coder/progress"]).toMatchObject({ done: ["t-0001", "t-0002", "t-0003", "t-0004"], redone: ["t-0001"], current: null });
    expect(db.memory["/review/stats"]).toMatchObject({ reviews: 5, sent_back: 1 });
    expect(db.memory["/review/sent_back"]).toMatchObject({ task: "t-0001", reason: "missing input validation" });
    expect(db.memory["/review/issues/t-0002"]).toMatchObject({ check: "ok", issues: ["missing input validation"], verdict: "accepted" });
    for (const task of db.tasks) {
      expect(db.memory["/agents/adversary/reviewed"][task.id]).toMatchObject({ verdict: "accepted", commit: task.result.commit });
    }
    // the workspace: package.json + 4 tasks + 1 redo, and the generated tests pass
    const workspace = join(home, "workspace");
    expect(gitIn(workspace, ["rev-list", "--count", "HEAD"])).toBe("6");
    expect(gitIn(workspace, ["status", "--porcelain"])).toBe("");
    const tests = spawnSync(process.execPath, ["--test", "--test-reporter=tap"], { cwd: workspace, encoding: "utf8" });
    expect(tests.status, tests.stdout + tests.stderr).toBe(0);
    // every agent reported, and ended with "done"
    for (const name of AGENTS) {
      const reports = db.reports.filter((report) => report.agent === name);
      expect(reports.length).toBeGreaterThan(1);
      expect(reports.at(-1)!.status).toBe("done");
    }
    expect(runs[1]!.output()).toMatch(/claimed t-0001: Design the user model/);
    expect(runs[2]!.output()).toMatch(/sent t-0001 back to the coder: missing input validation/);
    // Three agents, six commits and a generated test run: ~15 s idle, past 60 s at load 35.
  }, 180_000);

  it("a restarted supervisor does not plan twice; SIGTERM exits 0 and reports stopped", async () => {
    const { state, env } = setup();
    const first = launch("supervisor", env);
    await until(() => read(state).milestones.length === 1, "the plan");
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(read(state).reports.at(-1)).toMatchObject({ agent: "supervisor", status: "stopped" });

    const contextFile = join(dir, "context.json");
    writeFileSync(contextFile, JSON.stringify(read(state).contexts.supervisor ?? {}));
    const second = launch("supervisor", env, { APEX_RESUME_CONTEXT: contextFile });
    await until(() => second.output().includes("monitoring"), "monitoring");
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(second.output()).toMatch(/resumed: continuing from saved context/);
    expect(second.output()).toMatch(/plan already made \(4 subtasks\): not planning again/);
    expect(read(state).tasks).toHaveLength(4);
    expect(read(state).milestones).toEqual(["Plan ready: 4 subtasks"]);
  }, 30_000);

  it("a coder killed mid-task finishes that task when it comes back", async () => {
    const { state, env } = setup();
    const supervisor = launch("supervisor", env);
    await until(() => read(state).milestones.length === 1, "the plan");
    const slow = { APEX_AGENT_PACE: "0.4" };
    const first = launch("coder", env, slow);
    await until(() => read(state).tasks[0]!.status === "active", "the first claim");
    first.child.kill("SIGKILL");
    await first.exited;
    expect(read(state).tasks[0]).toMatchObject({ status: "active", assignee: "coder" });

    const second = launch("coder", env);
    await until(() => read(state).tasks[0]!.status === "completed", "t-0001 completed", 20_000);
    expect(second.output()).toMatch(/continuing t-0001, which is still assigned to me/);
    expect(read(state).log.filter((entry) => entry.op === "claim" && entry.task === "t-0001")).toHaveLength(1);
    second.child.kill("SIGTERM");
    supervisor.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(await supervisor.exited).toBe(0);
  }, 40_000);
});

// ---------------------------------------------------------------------------------------
// The real thing: `apex start` with the default config and the reference agents.

/** The default config, with the agents' paths made absolute and a fast pace. */
function writeTestConfig(target: string): void {
  const source = join(REPO_ROOT, "apex.config.yaml");
  const config: Loose = existsSync(source) ? parseYaml(readFileSync(source, "utf8")) ?? {} : {};
  config.agents ??= {};
  for (const name of AGENTS) {
    const agent = (config.agents[name] ??= { command: "node", args: [`agents/${name}.mjs`] });
    agent.command = process.execPath;
    agent.args = (agent.args ?? [`agents/${name}.mjs`]).map((arg: string) => (/^agents\/.+\.mjs$/.test(arg) ? join(REPO_ROOT, arg) : arg));
    agent.env = { ...(agent.env ?? {}), APEX_AGENT_PACE: "0.1" };
  }
  writeFileSync(target, stringifyYaml(config));
}

describe("apex start with the reference agents", () => {
  const apex = (args: string[], timeout = 60_000) => runApex(args, { cwd: dir, timeout });

  afterEach(() => {
    if (!existsSync(join(dir, "apex.config.yaml"))) return;
    const status = apex(["status", "--json"], 20_000);
    apex(["stop", "--force"], 30_000);
    // Anything still alive: end it by process group (the ids the session reported), never by name.
    let parsed: Loose;
    try {
      parsed = JSON.parse(status.stdout);
    } catch {
      parsed = undefined;
    }
    const groups = new Set(pgidsIn(parsed));
    // The supervisor daemon leads its own group; its runtime file names it (checked by start time).
    const runtime = readJson(join(dir, ".apex/supervisor.json"));
    if (typeof runtime?.pid === "number" && procStat(runtime.pid)?.startTime === runtime.start_time) groups.add(procStat(runtime.pid)!.pgrp);
    const own = procStat(process.pid)?.pgrp;
    for (const pgid of groups) {
      if (pgid === own || pgid <= 1) continue;
      try {
        process.kill(-pgid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });

  it(
    "`apex start --task` runs the session to completion, through a pause and a resume",
    async () => {
      writeTestConfig(join(dir, "apex.config.yaml"));
      const started = apex(["start", "--task", TASK]);
      expect(started.status, started.stderr).toBe(0);
      const workspace = join(dir, ".apex/workspace");
      const deadline = Date.now() + 90_000;
      const failWith = (what: string, status: Loose): never => {
        throw new Error(`${what}:\n${JSON.stringify(status, null, 2)}\n${apex(["logs", "-n", "200"]).stdout}`);
      };
      const poll = async (until: (status: Loose) => boolean, what: string): Promise<Loose> => {
        for (;;) {
          const result = apex(["status", "--json"]);
          const status = result.status === 0 ? JSON.parse(result.stdout) : undefined;
          if (status && until(status)) return status;
          const state = sessionStatusOf(status);
          if (state === "failed" || state === "stopped" || state === "interrupted") failWith(`the session ended as ${state}`, status);
          if (Date.now() > deadline) failWith(`timed out waiting for ${what}`, status);
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      };

      // Pause once the coder has completed a task: nothing moves until the session resumes.
      await poll((status) => (status.tasks?.completed ?? 0) >= 1, "a completed task");
      const paused = apex(["pause"]);
      expect(paused.status, paused.stderr).toBe(0);
      const commits = gitIn(workspace, ["rev-list", "--count", "HEAD"]);
      // What the agents write (plugins may still add session records, e.g. metrics).
      const snapshot = () => [apex(["memory", "export", "/agents/**"]).stdout, apex(["memory", "export", "/review/**"]).stdout, apex(["task", "list", "--json"]).stdout];
      const before = snapshot();
      await new Promise((resolve) => setTimeout(resolve, 2000)); // 20 steps at this pace
      const whilePaused = JSON.parse(apex(["status", "--json"]).stdout);
      expect(sessionStatusOf(whilePaused)).toBe("paused");
      for (const agent of whilePaused.agents.filter((view: Loose) => view.alive)) expect(agent.process_state).toBe("T");
      expect(gitIn(workspace, ["rev-list", "--count", "HEAD"])).toBe(commits);
      expect(snapshot()).toEqual(before);
      const resumed = apex(["resume"]);
      expect(resumed.status, resumed.stderr).toBe(0);

      const final = await poll((status) => sessionStatusOf(status) === "completed", "the session to complete");
      const sessionId: string = final.session?.session_id ?? final.last_session?.session_id;
      expect(sessionId).toBeTruthy();

      // The session's records stay in the store after it ended.
      const memory = JSON.parse(apex(["memory", "query", "/**", "--json"]).stdout);
      const under = (prefix: string) =>
        Object.entries(memory)
          .filter(([path]) => path.startsWith(prefix) && !path.slice(prefix.length).includes("/"))
          .map(([, value]) => value as Loose);
      const list = under(`/sessions/${sessionId}/tasks/`);
      expect(list.map((task) => task.status)).toEqual(["completed", "completed", "completed", "completed"]);
      expect(list[0].reopened).toBe(1);
      expect(list[0].result).toMatchObject({ revision: 2 });
      const milestones = under(`/sessions/${sessionId}/milestones/`).map((milestone) => milestone.text);
      expect(milestones).toContain("Plan ready: 4 subtasks");
      expect(milestones).toContain("All subtasks completed and reviewed");
      expect(memory["/review/stats"]).toMatchObject({ reviews: 5, sent_back: 1 });
      expect(memory["/review/sent_back"]).toMatchObject({ task: list[0].id, reason: "missing input validation" });
      for (const task of list) expect(memory["/agents/adversary/reviewed"][task.id]).toMatchObject({ verdict: "accepted", commit: task.result.commit });

      expect(Number(gitIn(workspace, ["rev-list", "--count", "HEAD"]))).toBeGreaterThanOrEqual(list.length + 2);
      expect(gitIn(workspace, ["log", "--format=%s"])).toContain("revision 2: missing input validation");
      const tests = spawnSync(process.execPath, ["--test", "--test-reporter=tap"], { cwd: workspace, encoding: "utf8" });
      expect(tests.status, tests.stdout + tests.stderr).toBe(0);
    },
    150_000,
  );
});

function sessionStatusOf(status: Loose): string | undefined {
  if (!status || typeof status !== "object") return undefined;
  return status.session?.status ?? status.last_session?.status ?? status.status;
}

function readJson(file: string): Loose {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

/** pgrp and start time of a live process, from /proc. */
function procStat(pid: number): { pgrp: number; startTime: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    if (fields[0] === "Z") return undefined;
    return { pgrp: Number(fields[2]), startTime: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/** Every process group id an `apex status --json` output mentions (agents and supervisor). */
function pgidsIn(status: Loose): number[] {
  const found = new Set<number>();
  const visit = (value: Loose) => {
    if (Array.isArray(value)) value.forEach(visit);
    else if (value && typeof value === "object") {
      for (const [key, inner] of Object.entries(value)) {
        if (key === "pgid" && typeof inner === "number" && inner > 1) found.add(inner);
        else visit(inner);
      }
    }
  };
  visit(status);
  return [...found];
}
