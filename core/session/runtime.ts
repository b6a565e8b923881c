import { createHash } from "node:crypto";
import { readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { projectTreesOf } from "../config/locate.js";
import { ambiguousSession, agentSession, canonicalPath, commandDirectory, linkedWorktreeOf, samePath, sessionFlag } from "./binding.js";
import { carriesMarker, isSameProcessAlive, supervisorMarker } from "./proc.js";
import { MAX_STOP_GRACE_SECONDS } from "./records.js";

/**
 * Supervisors' runtime files: which process serves a session and on which socket. Every
 * supervisor writes `<store>/run/<sid>.json`; the one of the project's own working tree also
 * `<store>/supervisor.json` (and keeps `<store>/supervisor.sock`), the paths it had before sessions
 * ran side by side. CLI commands read them (and /proc) to find a live supervisor without opening
 * the store, which keeps pause, resume and agent commands lean.
 */
export interface SupervisorRuntime {
  pid: number;
  /** /proc/<pid>/stat field 22 of the supervisor, to tell it from a process that reused its pid. */
  start_time: number;
  socket: string;
  session_id: string;
  started_at: string;
  log: string;
  /** The git worktree the session runs in; null (or absent, in files written before): the project's own. */
  worktree?: string | null;
  name?: string | null;
  /** The store it runs on (`storeIdentity`: no password); absent in files written before, taken as the store a command names. */
  store?: string;
  /** `storeSourceDigest` of what it resolved that store from: a command with the same digest names the same store. */
  store_source?: string;
  /** The supervisor's APEX_SUPERVISOR_NONCE: a live process with its pid and start time (after a reboot, say) is it only if it carries it. */
  nonce?: string | null;
}

export const RUNTIME_FILE = "supervisor.json";
export const SUPERVISOR_LOG = "supervisor.log";
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export const RUN_DIR = "run";

/** The project's session's runtime file (`supervisor.json`), or with `sessionId` that session's (`run/<sid>.json`). */
export function runtimeFile(storeDir: string, sessionId?: string): string {
  return sessionId === undefined ? join(storeDir, RUNTIME_FILE) : join(storeDir, RUN_DIR, `${sessionId}.json`);
}

export function supervisorLogFile(storeDir: string): string {
  return join(storeDir, SUPERVISOR_LOG);
}

export function agentLogDir(storeDir: string, sessionId: string): string {
  return join(storeDir, "logs", sessionId);
}

/**
 * `<store>/supervisor.sock`, or, when that path does not fit in a unix socket address,
 * a path under the system temp directory derived from the store's path.
 */
export function socketPathFor(storeDir: string, sessionId?: string): string {
  const preferred = sessionId === undefined ? join(storeDir, "supervisor.sock") : join(storeDir, RUN_DIR, `${sessionId}.sock`);
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH_BYTES) return preferred;
  const digest = createHash("sha256").update(sessionId === undefined ? storeDir : `${storeDir}\0${sessionId}`).digest("hex").slice(0, 20);
  return join(tmpdir(), `apex-${digest}.sock`);
}

export function readRuntime(storeDir: string, sessionId?: string): SupervisorRuntime | undefined {
  try {
    const parsed = JSON.parse(readFileSync(runtimeFile(storeDir, sessionId), "utf8")) as SupervisorRuntime;
    return typeof parsed.pid === "number" && typeof parsed.socket === "string" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

function alive(runtime: SupervisorRuntime | undefined): SupervisorRuntime | undefined {
  // A recorded nonce must be in the process's environment: pid and start time alone repeat after a reboot.
  return runtime && isSameProcessAlive(runtime.pid, runtime.start_time) && (typeof runtime.nonce !== "string" || carriesMarker(runtime.pid, supervisorMarker(runtime.nonce))) ? runtime : undefined;
}

/** Every live supervisor of the project, one per session. */
export function liveSupervisors(storeDir: string): SupervisorRuntime[] {
  const out = new Map<string, SupervisorRuntime>();
  let names: string[] = [];
  try {
    names = readdirSync(join(storeDir, RUN_DIR)).filter((name) => name.endsWith(".json"));
  } catch {
    // no run/ directory: at most the project's own supervisor
  }
  for (const name of names) {
    const runtime = alive(readRuntime(storeDir, name.slice(0, -".json".length)));
    if (runtime) out.set(runtime.session_id, runtime);
  }
  // `supervisor.json` is the project's session's second runtime file: its supervisor is checked in /proc only when no run/ file named that session.
  const project = readRuntime(storeDir);
  if (project && !out.has(project.session_id) && alive(project)) out.set(project.session_id, project);
  return [...out.values()];
}

/** The live supervisor of one session, if it runs. */
export function liveSupervisorOf(storeDir: string, sessionId: string): SupervisorRuntime | undefined {
  const own = alive(readRuntime(storeDir, sessionId));
  if (own) return own;
  const project = alive(readRuntime(storeDir));
  return project?.session_id === sessionId ? project : undefined;
}

/**
 * The live supervisor of the session this command acts on (binding.ts), decided from the runtime
 * files alone: the agent's session, `--session` (a running session's id or name; the CLI gives a
 * prefix as the whole id), the session running in this git worktree, the project's session, the only one
 * running. Undefined when the session meant does not run, or when only the store can tell
 * which session is meant (the caller then goes to the store, which applies the same rule).
 */
export function liveSupervisor(storeDir: string, cwd = commandDirectory()): SupervisorRuntime | undefined {
  const agent = agentSession();
  if (agent) return liveSupervisorOf(storeDir, agent);
  const flag = sessionFlag();
  const running = liveSupervisors(storeDir);
  if (flag !== undefined) {
    // Whole: the CLI hands a prefix on as the whole id it names (cli/session-ref.ts), having read it as every command does.
    return running.find((runtime) => runtime.session_id === flag || runtime.name === flag);
  }
  const worktree = linkedWorktreeOf(cwd);
  // A worktree of another repository (`apex --config` run from there) binds nothing here.
  if (worktree && !samePath(worktree, dirname(storeDir)) && worktreeOfProject(worktree, dirname(storeDir))) {
    // In a branch's worktree: its session, or (not running, or not a branch's) the store decides.
    return running.find((runtime) => typeof runtime.worktree === "string" && samePath(runtime.worktree, worktree));
  }
  const project = readRuntime(storeDir);
  if (project) return alive(project);
  if (running.length === 1) return running[0];
  if (running.length > 1) throw ambiguousSession(running.map((runtime) => ({ session_id: runtime.session_id, name: runtime.name ?? null, worktree: runtime.worktree ?? null })));
  return undefined;
}

/** True when `worktree` is a linked worktree of the repository the project directory is in. */
export function worktreeOfProject(worktree: string, projectDir: string): boolean {
  const project = canonicalPath(projectDir);
  return projectTreesOf(worktree).map(canonicalPath).some((top) => project === top || project.startsWith(`${top}/`));
}

/** Writes `run/<sid>.json` (in `run/`, which the supervisor made private), and for the project's own session `supervisor.json` too. */
export function writeRuntime(storeDir: string, runtime: SupervisorRuntime): void {
  const files = [runtimeFile(storeDir, runtime.session_id)];
  if (!runtime.worktree) files.push(runtimeFile(storeDir));
  for (const file of files) {
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(runtime, null, 2)}\n`, { mode: 0o600 });
    renameSync(temporary, file);
  }
}

/** Removes the runtime files of `sessionId` (and the project's, when it names that session) if they still name this process. */
export function removeRuntime(storeDir: string, pid = process.pid, sessionId?: string): void {
  const files = sessionId === undefined ? [undefined] : [sessionId, undefined];
  for (const id of files) {
    const runtime = readRuntime(storeDir, id);
    if (!runtime) continue;
    if (runtime.pid !== pid) continue;
    if (sessionId !== undefined && runtime.session_id !== sessionId) continue;
    rmSync(runtimeFile(storeDir, id), { force: true });
  }
}

/**
 * A stop asked of a supervisor by SIGTERM (its socket gone, `apex stop --grace D`): a signal carries
 * no grace, so the CLI writes it here first, `run/<sid>.stop` (no `.json`: not a runtime file), naming
 * the supervisor by pid and start time. The supervisor takes it on SIGTERM (stopRequestFor).
 */
export interface StopRequest {
  pid: number;
  start_time: number;
  grace_ms: number;
  /** Date.now() when it was written: one older than STOP_REQUEST_TTL_MS is not for this signal. */
  at: number;
}

/** How long a stop request counts after it was written: the CLI sends SIGTERM right after. */
const STOP_REQUEST_TTL_MS = 30_000;

export function stopRequestFile(storeDir: string, sessionId: string): string {
  return join(storeDir, RUN_DIR, `${sessionId}.stop`);
}

/** Writes the stop request for `runtime`'s supervisor (owner-only, whole: a temporary file renamed); false when it cannot be written. */
export function writeStopRequest(storeDir: string, runtime: SupervisorRuntime, graceMs: number): boolean {
  const file = stopRequestFile(storeDir, runtime.session_id);
  const temporary = `${file}.${process.pid}.tmp`;
  const request: StopRequest = { pid: runtime.pid, start_time: runtime.start_time, grace_ms: graceMs, at: Date.now() };
  try {
    writeFileSync(temporary, `${JSON.stringify(request)}\n`, { mode: 0o600 });
    renameSync(temporary, file);
    return true;
  } catch {
    rmSync(temporary, { force: true });
    return false;
  }
}

/**
 * Removes the stop requests left for supervisors that are gone (a request names one process, by pid
 * and start time: no other can take it), and temporaries of them older than STOP_REQUEST_TTL_MS (a
 * writer that died before its rename). A supervisor killed before it took its request left it in
 * `run/` for good, one more for each session so stopped; one that is alive keeps its own.
 */
export function removeStaleStopRequests(storeDir: string): void {
  let names: string[];
  try {
    names = readdirSync(join(storeDir, RUN_DIR));
  } catch {
    return;
  }
  for (const name of names) {
    const file = join(storeDir, RUN_DIR, name);
    if (name.endsWith(".stop")) {
      let request: Partial<StopRequest> | undefined;
      try {
        request = JSON.parse(readFileSync(file, "utf8")) as Partial<StopRequest>;
      } catch {
        request = undefined;
      }
      if (!isSameProcessAlive(request?.pid, request?.start_time)) rmSync(file, { force: true });
    } else if (/\.stop\.\d+\.tmp$/.test(name)) {
      const written = statSync(file, { throwIfNoEntry: false })?.mtimeMs;
      if (written !== undefined && Date.now() - written > STOP_REQUEST_TTL_MS) rmSync(file, { force: true });
    }
  }
}

/**
 * The grace of the stop request for this process (pid and start time), when one written within
 * STOP_REQUEST_TTL_MS is there; it is removed whatever it holds. Undefined otherwise.
 */
export function takeStopRequest(storeDir: string, sessionId: string, startTime: number | undefined): number | undefined {
  const file = stopRequestFile(storeDir, sessionId);
  let request: Partial<StopRequest>;
  try {
    request = JSON.parse(readFileSync(file, "utf8")) as Partial<StopRequest>;
  } catch {
    return undefined;
  }
  rmSync(file, { force: true });
  if (request.pid !== process.pid || request.start_time !== startTime) return undefined;
  const age = Date.now() - Number(request.at);
  if (!(age >= -1000 && age <= STOP_REQUEST_TTL_MS)) return undefined;
  const grace = request.grace_ms;
  return typeof grace === "number" && grace >= 0 && grace <= MAX_STOP_GRACE_SECONDS * 1000 ? grace : undefined;
}
