// The test suite's processes, found and ended by pid or process group from /proc (never by name):
// what the test harness (fixtures/agents/harness.ts) and the run's safety net (process-registry-global.ts)
// share. No vitest import: the safety net runs in vitest's main process.
import { existsSync, readFileSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";

export interface ProcInfo {
  pid: number;
  state: string;
  ppid: number;
  pgrp: number;
  startTime: number;
}

export function procInfo(pid: number): ProcInfo | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { pid, state: rest[0]!, ppid: Number(rest[1]), pgrp: Number(rest[2]), startTime: Number(rest[19]) };
}

/** Live (not zombie) processes of a process group, from a scan of /proc. */
export function groupMembers(pgid: number): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const info = procInfo(Number(name));
    if (info && info.pgrp === pgid && info.state !== "Z" && info.state !== "X") out.push(info);
  }
  return out;
}

/** Sends `sig` to a pid (or a group, negative), if it is still there. */
function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone meanwhile
  }
}

/**
 * Sends `sig` to process group `pgid`, if any of it is left: a group whose last member ends
 * between a look at /proc and the signal (ESRCH) is not an error, the look cannot hold it.
 */
export function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  if (pgid > 1) signal(-pgid, sig);
}

/**
 * Sends `sig` to `pid` if it is still the process started at `startTime` (any, without one). A
 * process that ends between the look and the signal is not an error: the look cannot hold it.
 */
export function signalIfAlive(pid: number, sig: NodeJS.Signals, startTime?: number): void {
  if (isAlive(pid, startTime)) signal(pid, sig);
}

/** The numbers of epoll_wait, epoll_pwait and epoll_pwait2 (x86-64, arm64): where an idle event loop (libuv's, Node's) sleeps. */
const EPOLL_WAITS = process.arch === "arm64" ? ["22", "441"] : ["232", "281", "441"];

/**
 * Whether `pid`'s main thread sleeps in its event loop's wait (epoll, /proc/PID/syscall): seen
 * so after a moment, it has taken every input that was ready then (a connection, data to read, a
 * socket its connect made writable) and done what that asked of it until it had to wait again.
 * An event, where a fixed wait for another process to get to a point was a window a loaded machine missed.
 */
export function asleepInEventLoop(pid: number): boolean {
  try {
    return EPOLL_WAITS.includes(readFileSync(`/proc/${pid}/syscall`, "latin1").split(" ")[0]!);
  } catch {
    return false; // gone
  }
}

export function isAlive(pid: number, startTime?: number): boolean {
  const info = procInfo(pid);
  return info !== undefined && info.state !== "Z" && info.state !== "X" && (startTime === undefined || info.startTime === startTime);
}

/** Whether process `pid` runs in `dir` (or below it) or names it in an APEX_ variable (APEX_HOME, APEX_SOCKET: an agent's) or PWD. */
function ranIn(dir: string, pid: number): boolean {
  const inside = (path: string) => path === dir || path.startsWith(`${dir}/`);
  try {
    if (inside(readlinkSync(`/proc/${pid}/cwd`))) return true;
    const named = (entry: string) => (entry.startsWith("APEX_") || entry.startsWith("PWD=")) && inside(entry.slice(entry.indexOf("=") + 1));
    return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").some(named);
  } catch {
    return false; // gone, or not ours to read
  }
}

/**
 * Ends with SIGKILL, by pid or process group, every process of the projects in `dir`: the
 * supervisors given (pid → start time) and those whose runtime file is in `dir/.apex`, stopped
 * first with SIGSTOP so that they restart nothing meanwhile; the processes they started and
 * their groups (agents, hooks); the groups given (pgid → its leader's start time); and any other
 * process that runs in `dir` or names it in its environment (an agent's APEX_HOME, an orphan of a
 * supervisor the test killed). Never this process nor its ancestors. Scans again until one finds
 * nothing left (a process started while the last one ran).
 */
export function endProcessesIn(dir: string, supervisorsSeen = new Map<number, number>(), groupsSeen = new Map<number, number>()): void {
  const seen = new Map(supervisorsSeen);
  const runDir = join(dir, ".apex", "run");
  const runtimeFiles = [join(dir, ".apex", "supervisor.json"), ...(existsSync(runDir) ? readdirSync(runDir).filter((name) => name.endsWith(".json")).map((name) => join(runDir, name)) : [])];
  for (const file of runtimeFiles) {
    try {
      const runtime = JSON.parse(readFileSync(file, "utf8")) as { pid: number; start_time: number };
      seen.set(runtime.pid, runtime.start_time);
    } catch {
      // none, or being rewritten
    }
  }
  const spared = new Set<number>();
  for (let pid: number | undefined = process.pid; pid && pid > 1 && !spared.has(pid); pid = procInfo(pid)?.ppid) spared.add(pid);
  const supervisors = new Set([...seen].filter(([pid, startTime]) => isAlive(pid, startTime)).map(([pid]) => pid));
  // The group id is ours while its leader is ours, or while it has no leader left (the id cannot be reused then).
  const groups = new Set([...groupsSeen].filter(([pgid, startTime]) => (procInfo(pgid)?.startTime ?? startTime) === startTime).map(([pgid]) => pgid));
  for (let pass = 0; pass < 5; pass++) {
    for (const pid of supervisors) signal(pid, "SIGSTOP");
    const pids = new Set(supervisors);
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      const info = procInfo(Number(name));
      if (!info || info.state === "Z" || info.state === "X" || spared.has(info.pid) || pids.has(info.pid)) continue;
      if (supervisors.has(info.ppid) || supervisors.has(info.pgrp) || ranIn(dir, info.pid)) {
        pids.add(info.pid);
        if (info.pgrp === info.pid) groups.add(info.pid);
      }
    }
    for (const pgid of groups) if (!spared.has(pgid)) signal(-pgid, "SIGKILL");
    for (const pid of pids) signal(pid, "SIGKILL");
    if (pids.size === 0) return;
    supervisors.clear();
    groups.clear();
  }
}
