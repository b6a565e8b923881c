// Shared helpers of the reference agents (supervisor, coder, adversary).
//
// Plain ESM, node: built-ins only. Every interaction with APEX goes through the `apex` CLI
// as a subprocess (with APEX_SOCKET set, the CLI talks to the session's supervisor daemon,
// so an agent never opens the LMDB store itself).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

// ---------------------------------------------------------------------------------------
// Environment

/** Seconds per step when APEX_AGENT_PACE is not set. */
export const DEFAULT_PACE_SECONDS = 1.5;

/** What APEX tells an agent through its environment. */
export function agentEnv(env = process.env) {
  return {
    sessionId: env.APEX_SESSION_ID ?? "",
    agent: env.APEX_AGENT ?? "",
    config: env.APEX_CONFIG ?? "",
    socket: env.APEX_SOCKET ?? "",
    home: storeDirOf(env),
    resumeContext: env.APEX_RESUME_CONTEXT ?? "",
    pace: paceSeconds(env.APEX_AGENT_PACE),
    initialTask: (env.APEX_INITIAL_TASK || env.APEX_TASK || "").trim(),
  };
}

/** APEX_AGENT_PACE as seconds (≥ 0); anything unreadable falls back to the default. */
export function paceSeconds(text) {
  if (text === undefined || text === null || String(text).trim() === "") return DEFAULT_PACE_SECONDS;
  const value = Number(text);
  return Number.isFinite(value) && value >= 0 ? value : DEFAULT_PACE_SECONDS;
}

/** The store directory: APEX_HOME, else `.apex` beside the config, else `./.apex`. */
export function storeDirOf(env = process.env) {
  if (env.APEX_HOME) return resolve(env.APEX_HOME);
  if (env.APEX_CONFIG) return join(dirname(resolve(env.APEX_CONFIG)), ".apex");
  return resolve(".apex");
}

/** The git workspace the coder writes in: `<store>/workspace`. */
export function workspaceDirOf(env = process.env) {
  return join(storeDirOf(env), "workspace");
}

/**
 * How to run the `apex` CLI, as [command, ...args]: APEX_BIN if given (a path, or a command
 * line such as `"/usr/bin/node" "/repo/bin/apex.js"`), else this repository's bin/apex.js.
 * A JavaScript file is run with this Node.
 */
export function apexCommand(env = process.env) {
  const bin = env.APEX_BIN?.trim() || fileURLToPath(new URL("../bin/apex.js", import.meta.url));
  const words = existsSync(bin) ? [bin] : splitCommandLine(bin);
  if (words.length === 0) return [process.execPath, fileURLToPath(new URL("../bin/apex.js", import.meta.url))];
  return /\.(m?js|cjs)$/.test(words[0]) ? [process.execPath, ...words] : words;
}

/** Splits a command line into words: whitespace separates, "…" (with \ escapes) and '…' quote. */
export function splitCommandLine(text) {
  const words = [];
  let word = "";
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (char === '"' || char === "'") {
      inWord = true;
      for (i++; i < text.length && text[i] !== char; i++) {
        if (char === '"' && text[i] === "\\" && i + 1 < text.length) i++;
        word += text[i];
      }
    } else if (/\s/.test(char)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      if (char === "\\" && i + 1 < text.length) i++;
      word += text[i];
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

// ---------------------------------------------------------------------------------------
// Logging and pacing

/**
 * The agent's logger: one line per action on stdout, which the supervisor writes to the
 * agent's log (`apex logs` prefixes each line with the agent's name).
 */
export function makeLogger() {
  return (message) => {
    const time = new Date().toISOString().slice(11, 19);
    process.stdout.write(`${time} ${message}\n`);
  };
}

/** Lifecycle shared by the agents: a stop flag set by SIGTERM/SIGINT and a sleep it cuts short. */
export class Lifecycle {
  constructor() {
    this.stopping = false;
    this.wakers = new Set();
  }

  /** Sleeps `seconds`, returning early (false) when the agent is asked to stop. */
  sleep(seconds) {
    if (this.stopping) return Promise.resolve(false);
    return new Promise((resolveSleep) => {
      const wake = (completed) => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        resolveSleep(completed);
      };
      const timer = setTimeout(() => wake(true), Math.max(0, seconds * 1000));
      this.wakers.add(wake);
    });
  }

  stop() {
    this.stopping = true;
    for (const wake of [...this.wakers]) wake(false);
  }
}

/** An error after which the agent should exit non-zero (the restart policy decides next). */
export class FatalError extends Error {
  constructor(message) {
    super(message);
    this.name = "FatalError";
  }
}

/** Thrown out of a loop once the agent was asked to stop. */
export class StopRequested extends Error {
  constructor() {
    super("stop requested");
    this.name = "StopRequested";
  }
}

// ---------------------------------------------------------------------------------------
// The apex CLI

/** Error codes worth retrying: the supervisor was busy, restarting or slow to answer. */
const TRANSIENT_CODES = new Set(["APEX_E_RPC", "APEX_E_TIMEOUT", "APEX_E_LOCKED", "APEX_E_STORE", "APEX_E_INTERNAL"]);

/** Reads the stable error code out of the CLI's stderr (JSON or text form). */
export function errorCodeOf(stderr) {
  const text = String(stderr ?? "");
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed.startsWith("{")) continue;
    try {
      const parsed = JSON.parse(trimmed);
      if (parsed && parsed.error && typeof parsed.error.code === "string") return parsed.error.code;
    } catch {
      // not JSON: try the text form below
    }
  }
  const match = /error\[(APEX_E_[A-Z_]+)\]/.exec(text) ?? /\b(APEX_E_[A-Z_]+)\b/.exec(text);
  return match ? match[1] : undefined;
}

/** The first line of the CLI's error message, for logs. */
export function errorMessageOf(stderr) {
  const text = String(stderr ?? "").trim();
  for (const line of text.split("\n")) {
    try {
      const parsed = JSON.parse(line.trim());
      if (parsed?.error?.message) return `${parsed.error.code}: ${parsed.error.message}`;
    } catch {
      // plain text
    }
  }
  return text.split("\n")[0] ?? "";
}

/**
 * Runs `apex ARGS` and returns {code, stdout, stderr, errorCode}. Transient failures
 * (exit 1 with an RPC/timeout/lock code, or a crash of the CLI process) are retried a few
 * times; usage errors (exit 2) are fatal. Exit codes 3 (not found) and 4 (conflict) are
 * returned to the caller, which knows whether they are expected (no task to claim, …).
 */
export function createCli({ lifecycle, log, env = process.env, retries = 3, timeoutMs = 30_000 } = {}) {
  const [command, ...prefix] = apexCommand(env);
  const childEnv = { ...env, NO_COLOR: "1" };
  /** CLI processes still running: an agent that stops waits for them, so none outlives it. */
  const live = new Set();

  function runOnce(args, input) {
    return new Promise((resolveRun) => {
      const child = spawn(command, [...prefix, ...args], { env: childEnv, stdio: ["pipe", "pipe", "pipe"] });
      live.add(child);
      child.on("close", () => live.delete(child));
      let stdout = "";
      let stderr = "";
      child.stdout.setEncoding("utf8").on("data", (chunk) => (stdout += chunk));
      child.stderr.setEncoding("utf8").on("data", (chunk) => (stderr += chunk));
      const cancelTimer = stopAwareTimeout(timeoutMs, () => child.kill("SIGTERM"));
      child.on("error", (error) => {
        cancelTimer();
        resolveRun({ code: -1, signal: null, stdout, stderr: `${stderr}${error.message}` });
      });
      child.on("close", (code, signal) => {
        cancelTimer();
        resolveRun({ code: code ?? -1, signal, stdout, stderr });
      });
      child.stdin.on("error", () => {});
      child.stdin.end(input ?? "");
    });
  }

  /**
   * `applied`, for commands that are not idempotent (task add, task done, milestone): after
   * a transient failure the command may have taken effect all the same (the reply was lost);
   * `applied()` looks, and when it says so the call counts as a success instead of a retry.
   */
  async function run(args, { input, allow = [], applied } = {}) {
    let last;
    let uncertain = false;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (lifecycle?.stopping) throw new StopRequested();
      const result = await runOnce(args, input);
      const errorCode = result.code === 0 ? undefined : errorCodeOf(result.stderr);
      last = { ...result, errorCode };
      if (result.code === 0 || allow.includes(result.code)) return last;
      if (lifecycle?.stopping) throw new StopRequested();
      if (uncertain && applied && (await applied())) return { ...last, code: 0, stdout: "", applied: true };
      if (result.code === 2) break; // usage or config error: retrying cannot help
      const transient = result.code === 1 || result.code === -1 || (errorCode !== undefined && TRANSIENT_CODES.has(errorCode));
      if (!transient) break;
      uncertain = true;
      if (applied && (await applied())) return { ...last, code: 0, stdout: "", applied: true };
      if (attempt === retries) break;
      log?.(`apex ${describeArgs(args)} failed (${errorMessageOf(result.stderr) || `exit ${result.code}`}); retrying`);
      await sleepMs(250 * 2 ** attempt);
    }
    throw new FatalError(`apex ${describeArgs(args)} failed with exit ${last.code}: ${errorMessageOf(last.stderr) || "no message"}`);
  }

  /** Runs with --json and parses stdout. */
  async function json(args, options = {}) {
    const end = args.indexOf("--");
    const withJson = end < 0 ? [...args, "--json"] : [...args.slice(0, end), "--json", ...args.slice(end)];
    const result = await run(withJson, options);
    if (result.code !== 0) return { ...result, value: undefined };
    const text = result.stdout.trim();
    try {
      return { ...result, value: text === "" ? null : JSON.parse(text) };
    } catch (error) {
      throw new FatalError(`apex ${args.join(" ")} printed unreadable JSON: ${error.message}`);
    }
  }

  /**
   * Waits up to `ms` for the CLI processes still running, then ends those left (SIGKILL):
   * none may outlive the agent and write to the session after it has stopped.
   */
  async function settle(ms) {
    const deadline = Date.now() + ms;
    while (live.size > 0 && Date.now() < deadline) await sleepMs(20);
    killAll();
  }

  /** Ends every CLI process still running, at once. */
  function killAll() {
    for (const child of live) child.kill("SIGKILL");
  }

  return { run, json, settle, killAll };
}

/** A short form of a command line for logs: long arguments (JSON contexts) are cut. */
function describeArgs(args) {
  return short(args.map((arg) => (/^[\w./:@-]+$/.test(arg) ? arg : JSON.stringify(short(arg, 60)))).join(" "), 160);
}

/**
 * Calls `onTimeout` once `ms` of running time went by. Time while the process was stopped
 * (SIGSTOP: the session was paused) does not count, so a call in flight when the session
 * is paused is not killed the moment it resumes.
 */
export function stopAwareTimeout(ms, onTimeout) {
  let budget = ms;
  let last = performance.now();
  const tick = setInterval(() => {
    const now = performance.now();
    const gap = now - last;
    last = now;
    if (gap < 3000) budget -= gap; // a longer gap: we were stopped, not slow
    if (budget <= 0) {
      clearInterval(tick);
      onTimeout();
    }
  }, 250);
  return () => clearInterval(tick);
}

function sleepMs(ms) {
  return new Promise((resolveSleep) => setTimeout(resolveSleep, ms));
}

/**
 * The agent-facing API on top of the CLI: tasks, memory, reports, milestones. Shapes
 * follow core/session/records.ts (TaskRecord: id, title, status, assignee, milestone, result,
 * reason, reopened).
 */
export function createApex(cli, { agent }) {
  return {
    cli,

    /** Every task of the session, in id order. */
    async listTasks() {
      const { value } = await cli.json(["task", "list"]);
      return normaliseTasks(value);
    },

    /** Claims the next pending task for `agent`; undefined when none is available. */
    async claim() {
      const result = await cli.json(["task", "claim", "--agent", agent], { allow: [4] });
      if (result.code !== 0) {
        // No task (or another claimant was faster): try again later. Other refusals are real errors.
        if (result.errorCode === "APEX_E_NO_TASK" || result.errorCode === "APEX_E_CONFLICT") return undefined;
        throw new FatalError(`apex task claim refused: ${errorMessageOf(result.stderr)}`);
      }
      const task = result.value?.task ?? result.value;
      return task && typeof task === "object" && task.id ? normaliseTask(task) : undefined;
    },

    async addTask(title, { milestone = false } = {}) {
      let existing;
      const applied = async () => {
        existing = (await this.listTasks()).find((task) => task.title === title);
        return existing !== undefined;
      };
      const { value } = await cli.json(["task", "add", ...(milestone ? ["--milestone"] : []), "--", title], { applied });
      const task = value?.task ?? value ?? existing;
      return task && typeof task === "object" ? normaliseTask(task) : undefined;
    },

    /** Completes a task with `result` (an object with a `commit` makes a lost reply detectable). */
    async done(id, result) {
      const applied = async () => {
        const task = (await this.listTasks()).find((candidate) => candidate.id === id);
        return task?.status === "completed" && JSON.stringify(task.result) === JSON.stringify(result);
      };
      await cli.run(["task", "done", id, "--result", JSON.stringify(result)], { applied });
    },

    async fail(id, reason) {
      await cli.run(["task", "fail", id, "--reason", reason]);
    },

    /** Sends a completed task back to pending; false when it was not in a state to reopen. */
    async reopen(id, reason) {
      const result = await cli.run(["task", "reopen", id, "--reason", reason], { allow: [3, 4] });
      return result.code === 0;
    },

    async milestone(text) {
      const applied = async () => {
        const result = await cli.json(["milestone"], { allow: [3, 4] });
        return Array.isArray(result.value) && result.value.some((milestone) => milestone?.text === text);
      };
      await cli.run(["milestone", "--", text], { applied });
    },

    /** Reports status; `task` is a task id, null to clear it, undefined to leave it. */
    async report(status, task, context) {
      const args = ["agent", "report", "--status", status];
      if (task === null) args.push("--task", "-");
      else if (task !== undefined) args.push("--task", task);
      if (context !== undefined) args.push("--context", JSON.stringify(context));
      await cli.run(args);
    },

    /** The value at a memory path, or undefined when nothing is stored there. */
    async getMemory(path) {
      const result = await cli.json(["memory", "show", path], { allow: [3] });
      if (result.code !== 0) return undefined;
      return result.value?.value ?? undefined;
    },

    /** Every memory entry matching `glob`, as {path: value}. */
    async queryMemory(glob) {
      const { value } = await cli.json(["memory", "query", glob]);
      return value && typeof value === "object" ? value : {};
    },

    async setMemory(path, value) {
      await cli.run(["memory", "set", path, "-"], { input: JSON.stringify(value) });
    },

    /** Writes several paths in one transaction (`memory import`). */
    async setMemoryMany(entries) {
      await cli.run(["memory", "import", "-"], { input: JSON.stringify(entries) });
    },

    /** `apex status --json`, or undefined when it cannot be read. */
    async status() {
      const result = await cli.json(["status"], { allow: [3, 4] });
      return result.code === 0 ? result.value : undefined;
    },
  };
}

export function normaliseTasks(value) {
  const list = Array.isArray(value) ? value : Array.isArray(value?.tasks) ? value.tasks : [];
  return list.filter((task) => task && typeof task === "object").map(normaliseTask);
}

export function normaliseTask(task) {
  let result = task.result ?? null;
  if (typeof result === "string") {
    try {
      result = JSON.parse(result);
    } catch {
      // keep the text
    }
  }
  return {
    ...task,
    id: String(task.id ?? task.task_id ?? ""),
    title: String(task.title ?? ""),
    status: String(task.status ?? "pending"),
    assignee: task.assignee ?? null,
    milestone: Boolean(task.milestone),
    result,
    reopened: Number(task.reopened ?? 0),
  };
}

/** The initial task of the session from `apex status --json` (several shapes accepted). */
export function initialTaskOf(status) {
  if (!status || typeof status !== "object") return "";
  const candidates = [
    status.initial_task,
    status.session?.initial_task,
    status.session?.task,
    status.task,
    status.current?.initial_task,
  ];
  for (const candidate of candidates) if (typeof candidate === "string" && candidate.trim() !== "") return candidate.trim();
  return "";
}

// ---------------------------------------------------------------------------------------
// Resume context

/** The saved context of a resumed agent (APEX_RESUME_CONTEXT), or undefined. */
export function readResumeContext(file, log) {
  if (!file) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8"));
    // The file may hold the context itself or a record around it.
    const context = parsed && typeof parsed === "object" && "context" in parsed && parsed.context !== undefined ? parsed.context : parsed;
    log?.(`resumed: continuing from saved context ${short(JSON.stringify(context))}`);
    return context ?? undefined;
  } catch (error) {
    log?.(`resumed, but the saved context at ${file} is unreadable (${error.message}); continuing from memory`);
    return undefined;
  }
}

export function short(text, max = 160) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// ---------------------------------------------------------------------------------------
// Planning: the supervisor's deterministic split of the initial task

const SUBTASK_TEMPLATES = [
  { kind: "model", prefix: "Design the data model for: " },
  { kind: "core", prefix: "Implement the core of: " },
  { kind: "validation", prefix: "Add input validation for: " },
  { kind: "tests", prefix: "Write tests for: " },
];

/** Cleans up a task text: single spaces, no trailing punctuation. */
export function normaliseTaskText(text) {
  return String(text ?? "")
    .replace(/\s+/g, " ")
    .trim()
    .replace(/[.!;:,\s]+$/u, "");
}

/**
 * Splits an initial task into subtasks, always the same way for the same text:
 * design the data model, implement the core, add input validation, write tests (the last
 * is a milestone). A task that names users gets a "user model".
 */
export function planSubtasks(initialTask) {
  const subject = normaliseTaskText(initialTask);
  if (subject === "") throw new Error("The initial task is empty: nothing to plan.");
  const modelPrefix = /\buser/i.test(subject) ? "Design the user model for: " : SUBTASK_TEMPLATES[0].prefix;
  return SUBTASK_TEMPLATES.map((template, index) => ({
    kind: template.kind,
    title: `${index === 0 ? modelPrefix : template.prefix}${subject}`,
    milestone: index === SUBTASK_TEMPLATES.length - 1,
  }));
}

/** The kind of work a task title asks for (the coder writes different code for each). */
export function kindOfTitle(title) {
  const text = String(title ?? "");
  if (/^Design the (data|user) model for: /.test(text)) return "model";
  if (text.startsWith("Implement the core of: ")) return "core";
  if (text.startsWith("Add input validation for: ")) return "validation";
  if (text.startsWith("Write tests for: ")) return "tests";
  return "generic";
}

/** A file-name-safe slug: lowercase letters, digits and dashes, at most `max` characters. */
export function slugify(text, max = 48) {
  const slug = String(text ?? "")
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  const cut = slug.slice(0, max).replace(/-+$/g, "");
  return cut || "task";
}

/** camelCase identifier from text ("user authentication" → "userAuthentication"). */
export function identifier(text) {
  const words = String(text ?? "")
    .normalize("NFKD")
    .replace(/[^A-Za-z0-9 ]+/g, " ")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 4);
  if (words.length === 0) return "subject";
  const id = words.map((word, i) => (i === 0 ? word.toLowerCase() : word[0].toUpperCase() + word.slice(1).toLowerCase())).join("");
  return /^[0-9]/.test(id) ? `_${id}` : id;
}

/** The part of a subtask title after "…: " (the initial task it belongs to). */
export function subjectOfTitle(title) {
  const text = String(title ?? "");
  const index = text.indexOf(": ");
  return index >= 0 ? text.slice(index + 2) : text;
}

// ---------------------------------------------------------------------------------------
// Workspace: the coder's git repository under the store. Nothing is written outside it.

/**
 * Resolves `file` inside `workspace` or throws. Refuses absolute paths outside it, `..`
 * escapes, the workspace root itself, anything inside .git, and paths that leave the
 * workspace through a symbolic link.
 */
export function resolveInWorkspace(workspace, file) {
  if (typeof file !== "string" || file.trim() === "" || file.includes("\0")) {
    throw new Error(`Refused workspace path ${JSON.stringify(file)}: not a file name.`);
  }
  const root = resolve(workspace);
  const target = isAbsolute(file) ? resolve(file) : resolve(root, file);
  const rel = relative(root, target);
  if (rel === "" || rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new Error(`Refused workspace path ${JSON.stringify(file)}: it is outside ${root}.`);
  }
  if (rel.split(sep)[0] === ".git") {
    throw new Error(`Refused workspace path ${JSON.stringify(file)}: it is inside the repository's .git directory.`);
  }
  // Symbolic links: the deepest existing ancestor must really be inside the workspace.
  if (existsSync(root)) {
    const realRoot = realpathSync(root);
    let probe = target;
    while (!existsSync(probe) && probe !== root) probe = dirname(probe);
    let real = realpathSync(probe);
    if (probe === target && isSymlink(target)) real = realpathSync(target);
    const realRel = relative(realRoot, real);
    if (realRel === ".." || realRel.startsWith(`..${sep}`) || isAbsolute(realRel)) {
      throw new Error(`Refused workspace path ${JSON.stringify(file)}: it leads outside ${root} through a symbolic link.`);
    }
  }
  return target;
}

function isSymlink(path) {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Writes `content` to `file` (relative to the workspace) after the path check. */
export function writeWorkspaceFile(workspace, file, content) {
  const target = resolveInWorkspace(workspace, file);
  mkdirSync(dirname(target), { recursive: true });
  resolveInWorkspace(workspace, file); // again, now that the directories exist
  writeFileSync(target, content);
  return target;
}

/** Environment for git confined to the workspace: its own .git, no system config, no prompts. */
function gitEnv(workspace) {
  return {
    ...process.env,
    GIT_DIR: join(workspace, ".git"),
    GIT_WORK_TREE: workspace,
    GIT_CEILING_DIRECTORIES: dirname(workspace),
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_TERMINAL_PROMPT: "0",
    LC_ALL: "C",
  };
}

const GIT_SAFETY = ["-c", "core.hooksPath=/dev/null", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"];

/** Runs git inside the workspace repository; throws with git's message on failure. */
export function git(workspace, args) {
  if (!existsSync(join(workspace, ".git"))) {
    throw new Error(`${workspace} is not a git repository yet (refusing to run git outside it).`);
  }
  const result = spawnSync("git", [...GIT_SAFETY, ...args], { cwd: workspace, env: gitEnv(workspace), encoding: "utf8" });
  if (result.error) throw new Error(`git ${args[0]}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`git ${args.join(" ")} failed: ${(result.stderr || result.stdout).trim()}`);
  return result.stdout.trim();
}

/**
 * Creates the workspace and its git repository if missing, with a local identity so that
 * commits work on a machine without any git configuration. Returns true when it was created.
 */
export function ensureWorkspace(workspace, identity = { name: "APEX coder", email: "coder@apex.invalid" }) {
  mkdirSync(workspace, { recursive: true });
  if (existsSync(join(workspace, ".git"))) return false;
  const result = spawnSync("git", ["init", "-q", workspace], {
    cwd: workspace,
    env: { ...process.env, GIT_CONFIG_NOSYSTEM: "1", GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" },
    encoding: "utf8",
  });
  if (result.error) throw new Error(`git init: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`git init failed: ${(result.stderr || result.stdout).trim()}`);
  git(workspace, ["config", "user.name", identity.name]);
  git(workspace, ["config", "user.email", identity.email]);
  return true;
}

/** The workspace's package.json: the modules the coder writes are ES modules. */
export const WORKSPACE_PACKAGE = `${JSON.stringify(
  { name: "apex-workspace", private: true, type: "module", scripts: { test: "node --test" } },
  null,
  2,
)}\n`;

/**
 * Creates the workspace (git repository with a local identity, package.json committed)
 * when it is missing or incomplete. Returns what it did, for the log, or "" when nothing.
 */
export function prepareWorkspace(workspace, identity) {
  const created = ensureWorkspace(workspace, identity);
  if (existsSync(join(workspace, "package.json"))) return created ? "created the git repository" : "";
  writeWorkspaceFile(workspace, "package.json", WORKSPACE_PACKAGE);
  const commit = commitFiles(workspace, ["package.json"], "Initialise the APEX workspace");
  return `${created ? "created the git repository" : "completed the workspace"} (first commit ${commit.slice(0, 10)})`;
}

/** Commits the given workspace files (always a new commit, even if nothing changed). */
export function commitFiles(workspace, files, message) {
  for (const file of files) resolveInWorkspace(workspace, file);
  // Another coder may be committing in the same workspace: wait for its index lock.
  for (let attempt = 0; ; attempt++) {
    try {
      git(workspace, ["add", "--", ...files]);
      git(workspace, ["commit", "-q", "--allow-empty", "-m", message, "--", ...files]);
      return git(workspace, ["rev-parse", "HEAD"]);
    } catch (error) {
      if (attempt >= 20 || !/index\.lock|cannot lock ref/i.test(error.message)) throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100 + 50 * attempt);
    }
  }
}

/** True when `commit` names a commit of the workspace repository. */
export function hasCommit(workspace, commit) {
  if (!commit || !existsSync(join(workspace, ".git"))) return false;
  try {
    git(workspace, ["cat-file", "-e", `${commit}^{commit}`]);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// Reviews: the adversary's records, which the supervisor and coder also read

export const REVIEWED_PATH = "/agents/adversary/reviewed";
export const progressPath = (agent) => `/agents/${agent}/progress`;
export const issuesPath = (taskId) => `/review/issues/${taskId}`;
export const REVIEW_STATS_PATH = "/review/stats";
export const SENT_BACK_PATH = "/review/sent_back";

/** The commit a completed task's result names, if any. */
export function commitOf(task) {
  return task?.result && typeof task.result === "object" ? task.result.commit ?? null : null;
}

/**
 * True when the adversary accepted the task's current work: its review names the same
 * commit as the task's result and its verdict is "accepted".
 */
export function isAccepted(task, reviewed) {
  const review = reviewed?.[task.id];
  return Boolean(review && review.verdict === "accepted" && review.commit === commitOf(task));
}

/** True while the supervisor of this session is adding its subtasks (the list is not final yet). */
export function supervisorPlanning(supervisorProgress, sessionId) {
  return Boolean(supervisorProgress && supervisorProgress.session === sessionId && supervisorProgress.planning && !supervisorProgress.planned);
}

/** Summary of the work: counts, and whether every task is completed and accepted. */
export function progressSummary(tasks, reviewed) {
  const count = (status) => tasks.filter((task) => task.status === status).length;
  const completed = tasks.filter((task) => task.status === "completed");
  const accepted = completed.filter((task) => isAccepted(task, reviewed)).length;
  return {
    total: tasks.length,
    pending: count("pending"),
    active: count("active"),
    completed: completed.length,
    failed: count("failed"),
    accepted,
    allDone: tasks.length > 0 && completed.length === tasks.length && accepted === tasks.length,
  };
}

// ---------------------------------------------------------------------------------------
// Main loop wrapper

/**
 * Runs an agent: installs SIGTERM/SIGINT handling (exit 0 after reporting "stopped"),
 * runs `body`, exits 0 when it returns, 1 on a fatal error.
 */
export async function runAgent(name, body) {
  const env = agentEnv();
  const agent = env.agent || name;
  const log = makeLogger();
  const lifecycle = new Lifecycle();
  const cli = createCli({ lifecycle, log });
  const apex = createApex(cli, { agent });
  let exiting = false;

  const onSignal = (signal) => {
    if (lifecycle.stopping) return;
    log(`received ${signal}: stopping`);
    lifecycle.stop();
    // Report "stopped" with a short deadline; the supervisor may be shutting down too.
    const quick = createCli({ log, retries: 0, timeoutMs: 1500 });
    const timer = setTimeout(() => {
      cli.killAll();
      quick.killAll();
      process.exit(0);
    }, 2000);
    timer.unref?.();
    quick
      .run(["agent", "report", "--status", "stopped"], { allow: [1, 2, 3, 4, -1] })
      .catch(() => {})
      // A call of the main loop may still be running (a claim, a report): it ends first.
      .then(() => cli.settle(400))
      .finally(() => {
        exiting = true;
        process.exit(0);
      });
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  process.on("SIGHUP", onSignal);

  try {
    log(`started as ${agent} (session ${env.sessionId || "?"}, pace ${env.pace}s, pid ${process.pid})`);
    const resumeContext = readResumeContext(env.resumeContext, log);
    await body({ env: { ...env, agent }, log, lifecycle, apex, resumeContext });
    if (!lifecycle.stopping) process.exit(0);
  } catch (error) {
    if (lifecycle.stopping || error instanceof StopRequested) return; // the signal handler exits
    if (exiting) return;
    log(`fatal: ${error?.message ?? error}`);
    process.exit(1);
  }
}

/** Sleeps one step; throws StopRequested when the agent is asked to stop meanwhile. */
export async function pace(lifecycle, seconds) {
  const completed = await lifecycle.sleep(seconds);
  if (!completed) throw new StopRequested();
}

// ---------------------------------------------------------------------------------------
// Code the coder writes: a small, real ES module per task

/** Where the coder writes a task's code, relative to the workspace. */
export function fileForTask(task) {
  const kind = kindOfTitle(task.title);
  const slug = slugify(task.title, 56);
  return kind === "tests" ? `test/${slug}.test.js` : `src/${slug}.js`;
}

const AUTH_SUBJECT = /\b(auth\w*|log ?in|sign ?in|password\w*|credential\w*)\b/i;

/**
 * The text of the module for a task. `revision` counts the times it was written;
 * `validated` adds input checks (the first version of the model and the core has none,
 * which is what the adversary sends back). `modules` lists the other modules written so far
 * ({file, kind}) for the tests to import.
 */
export function renderModule({ task, revision = 1, validated = false, modules = [] }) {
  const kind = kindOfTitle(task.title);
  const subject = commentText(subjectOfTitle(task.title));
  const header = [
    `// ${commentText(task.title)}`,
    `// Task ${task.id}, revision ${revision}: written by the APEX reference coder agent.`,
    ...(validated && kind !== "validation" && kind !== "tests" ? ["// Inputs are checked: bad input throws a TypeError."] : []),
    "",
  ];
  const guard = (name, what) =>
    validated
      ? [
          `  if (${name} === null || typeof ${name} !== "object" || Array.isArray(${name})) {`,
          `    throw new TypeError("${what} must be an object");`,
          "  }",
        ]
      : [];
  const auth = AUTH_SUBJECT.test(subject);
  let body;
  switch (kind) {
    case "model": {
      const fields = auth ? ["id", "username", "passwordHash", "createdAt"] : ["id", "name", "createdAt"];
      body = [
        `/** The fields of a record for: ${subject}. */`,
        `export const FIELDS = Object.freeze(${JSON.stringify(fields)});`,
        "",
        "/** Creates an immutable record holding exactly FIELDS (missing ones are null). */",
        "export function createRecord(fields = {}) {",
        ...guard("fields", "fields"),
        ...(validated
          ? ['  if (typeof fields.id !== "string" || fields.id === "") throw new TypeError("id must be a non-empty string");']
          : []),
        "  const record = {};",
        "  for (const field of FIELDS) record[field] = fields[field] ?? null;",
        "  return Object.freeze(record);",
        "}",
      ];
      break;
    }
    case "core":
      body = auth
        ? [
            'import { randomBytes, scryptSync, timingSafeEqual } from "node:crypto";',
            "",
            `/** ${subject}: registers users and verifies their passwords (scrypt, salted). */`,
            "export function createService(users = new Map()) {",
            "  return {",
            "    register(username, password) {",
            ...(validated
              ? [
                  '      if (typeof username !== "string" || username.trim() === "") throw new TypeError("username must be a non-empty string");',
                  '      if (typeof password !== "string" || password.length < 8) throw new TypeError("password must have at least 8 characters");',
                ]
              : []),
            '      if (users.has(username)) throw new Error(`user ${username} already exists`);',
            "      const salt = randomBytes(16);",
            "      users.set(username, { salt, hash: scryptSync(password, salt, 32) });",
            "      return { username };",
            "    },",
            "    verify(username, password) {",
            "      const user = users.get(username);",
            "      if (!user) return false;",
            "      return timingSafeEqual(scryptSync(String(password), user.salt, 32), user.hash);",
            "    },",
            "    has(username) {",
            "      return users.has(username);",
            "    },",
            "  };",
            "}",
          ]
        : [
            `/** ${subject}: keeps records by id. */`,
            "export function createService(items = new Map()) {",
            "  return {",
            "    add(record) {",
            ...guard("record", "record").map((line) => `    ${line}`),
            "      items.set(record.id, record);",
            "      return record;",
            "    },",
            "    get(id) {",
            "      return items.get(id) ?? null;",
            "    },",
            "    list() {",
            "      return [...items.values()];",
            "    },",
            "  };",
            "}",
          ];
      break;
    case "validation": {
      const required = auth ? ["username", "password"] : ["id"];
      body = [
        `/** The fields every input must carry for: ${subject}. */`,
        `export const REQUIRED = Object.freeze(${JSON.stringify(required)});`,
        "",
        "/** Returns the problems of `input` (an empty list when it is valid). */",
        "export function validate(input) {",
        '  if (input === null || typeof input !== "object" || Array.isArray(input)) return ["input must be an object"];',
        "  const problems = [];",
        "  for (const field of REQUIRED) {",
        '    if (typeof input[field] !== "string" || input[field].trim() === "") problems.push(`${field} is required`);',
        "  }",
        ...(auth
          ? ['  if (typeof input.password === "string" && input.password.length < 8) problems.push("password must have at least 8 characters");']
          : []),
        "  return problems;",
        "}",
        "",
        "/** Returns `input` when it is valid; throws a TypeError naming every problem otherwise. */",
        "export function assertValid(input) {",
        "  const problems = validate(input);",
        '  if (problems.length > 0) throw new TypeError(problems.join("; "));',
        "  return input;",
        "}",
      ];
      break;
    }
    case "tests": {
      // Only plain module files under src/ (a result names its file; never trust it into code).
      const imports = modules.filter(
        (module) => ["model", "core", "validation"].includes(module.kind) && /^src\/[A-Za-z0-9._-]+\.js$/.test(String(module.file)),
      );
      body = [
        'import { test } from "node:test";',
        'import assert from "node:assert/strict";',
        ...imports.map((module, i) => `import * as ${module.kind}${i} from ${JSON.stringify(`../${module.file}`)};`),
        "",
        ...imports.flatMap((module, i) => testsFor(module.kind, `${module.kind}${i}`, auth)),
        `test("the suite for ${escapeString(subject)} runs", () => {`,
        "  assert.equal(typeof test, \"function\");",
        "});",
      ];
      break;
    }
    default:
      body = [
        `/** ${commentText(task.title)}: returns a summary of its input. */`,
        "export function run(input) {",
        ...guard("input", "input"),
        "  const keys = input && typeof input === \"object\" ? Object.keys(input).sort() : [];",
        "  return { ok: true, keys };",
        "}",
      ];
  }
  return `${[...header, ...body].join("\n")}\n`;
}

function testsFor(kind, name, auth) {
  switch (kind) {
    case "model":
      return [
        `test("${name}: records hold exactly FIELDS", () => {`,
        `  const record = ${name}.createRecord({ id: "1" });`,
        `  assert.deepEqual(Object.keys(record), [...${name}.FIELDS]);`,
        "  assert.ok(Object.isFrozen(record));",
        "});",
        "",
      ];
    case "core":
      return auth
        ? [
            `test("${name}: a registered user verifies with the right password only", () => {`,
            `  const service = ${name}.createService();`,
            '  service.register("ada", "correct horse");',
            '  assert.equal(service.verify("ada", "correct horse"), true);',
            '  assert.equal(service.verify("ada", "wrong password"), false);',
            '  assert.equal(service.verify("bob", "correct horse"), false);',
            "});",
            "",
          ]
        : [
            `test("${name}: added records can be read back", () => {`,
            `  const service = ${name}.createService();`,
            '  service.add({ id: "1" });',
            '  assert.deepEqual(service.get("1"), { id: "1" });',
            "  assert.equal(service.list().length, 1);",
            "});",
            "",
          ];
    case "validation":
      return [
        `test("${name}: invalid input is reported and refused", () => {`,
        `  assert.deepEqual(${name}.validate(null), ["input must be an object"]);`,
        `  assert.ok(${name}.validate({}).length > 0);`,
        `  assert.throws(() => ${name}.assertValid({}), TypeError);`,
        ...(auth ? [`  assert.deepEqual(${name}.validate({ username: "ada", password: "correct horse" }), []);`] : []),
        "});",
        "",
      ];
    default:
      return [];
  }
}

// Text safe inside a line or block comment: one line, no block-comment terminator.
function commentText(text) {
  return String(text).replace(/[\r\n\u2028\u2029]+/g, " ").replace(/\*\//g, "* /");
}

function escapeString(text) {
  return String(text).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/[\r\n\u2028\u2029]/g, " ");
}

/**
 * What the adversary finds in a file, besides syntax errors: code modules (model, core,
 * generic) that never check their input, and test files without assertions.
 */
export function findIssues(kind, source) {
  const issues = [];
  if (kind === "tests") {
    if (!/\bassert\b/.test(source)) issues.push("tests make no assertions");
  } else if (kind !== "validation" && !/\bthrow new TypeError\b/.test(source)) {
    issues.push("missing input validation");
  }
  return issues;
}
