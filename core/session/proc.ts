import { randomBytes } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { constants } from "node:os";

/**
 * What APEX reads about a process from /proc/<pid>/stat. Linux only: process groups,
 * states and start times come from the kernel, never from `ps` output.
 */
export interface ProcStat {
  pid: number;
  /** Executable name (field 2, without the parentheses). */
  comm: string;
  /** R running, S sleeping, D disk wait, Z zombie, T stopped, t traced, X dead, I idle. */
  state: string;
  ppid: number;
  pgrp: number;
  /** CPU time in clock ticks: user and system, and that of waited-for children. */
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
  /** Field 22: clock ticks after boot when the process started. With the pid, it names one process. */
  startTime: number;
}

/** USER_HZ: the unit of /proc times. 100 on every mainstream Linux architecture. */
export const CLOCK_TICKS_PER_SECOND = 100;

const statBuffer = Buffer.alloc(4096);

/**
 * Parses /proc/<pid>/stat, or returns undefined when the process does not exist.
 * open/read/close on one shared buffer: several times cheaper than readFileSync, which
 * matters when `apex status` and pause verification scan every process.
 */
export function readProcStat(pid: number): ProcStat | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  let text: string;
  try {
    const fd = openSync(`/proc/${pid}/stat`, "r");
    try {
      const length = readSync(fd, statBuffer, 0, statBuffer.length, 0);
      text = statBuffer.toString("latin1", 0, length);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  return parseProcStat(text);
}

/** Parses the text of a stat file. comm may hold spaces and parentheses, so split after the last ')'. */
export function parseProcStat(text: string): ProcStat | undefined {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return undefined;
  const rest = text.slice(close + 2).split(" ");
  // rest[0] is field 3 (state); field N is rest[N - 3].
  const field = (n: number) => Number(rest[n - 3]);
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0] ?? "?",
    ppid: field(4),
    pgrp: field(5),
    utime: field(14),
    stime: field(15),
    cutime: field(16),
    cstime: field(17),
    startTime: field(22),
  };
}

/** The start time (field 22) of `pid`, or undefined when it does not exist. */
export function processStartTime(pid: number): number | undefined { return readProcStat(pid)?.startTime; }

/**
 * True when `pid` still names the process that had `startTime`: it exists, is not a
 * zombie, and was not recycled for another program.
 */
export function isSameProcessAlive(pid: number | undefined, startTime: number | undefined): boolean {
  if (pid === undefined || startTime === undefined) return false;
  const stat = readProcStat(pid);
  return stat !== undefined && stat.startTime === startTime && stat.state !== "Z" && stat.state !== "X";
}

/**
 * Proof that a process is one APEX started. A pid and a start time only say that a process
 * is still the one a record names; a record can be forged (a crafted bundle, a restored
 * checkpoint, an edited store) to name any process of the machine. So APEX also puts a
 * marker in the environment of every process it starts, a random nonce it records next to
 * the pid, and signals a process only when /proc/<pid>/environ (the environment it was
 * started with, readable only by its owner and root) carries that marker. A foreign process
 * never carries it: the nonce is generated at spawn time and lives only in the private
 * store and in the child's own environment.
 */
export type ProcessMarker = Readonly<Record<string, string>>;

/** Environment variable holding an agent's nonce (with APEX_SESSION_ID, the agent's marker). */
export const AGENT_NONCE_VAR = "APEX_AGENT_NONCE";
/** Environment variable holding the supervisor's nonce. */
export const SUPERVISOR_NONCE_VAR = "APEX_SUPERVISOR_NONCE";

/** A fresh nonce for a process marker: 128 random bits, hex. */
export function newNonce(): string { return randomBytes(16).toString("hex"); }

const NONCE = /^[0-9a-f]{32}$/;

/** The marker of an agent process, or undefined when the record holds no valid nonce (nothing can be proven). */
export function agentMarker(sessionId: string, nonce: unknown): ProcessMarker | undefined {
  return typeof nonce === "string" && NONCE.test(nonce) ? { APEX_SESSION_ID: sessionId, [AGENT_NONCE_VAR]: nonce } : undefined;
}

/** The marker of a supervisor process, or undefined without a valid nonce. */
export function supervisorMarker(nonce: unknown): ProcessMarker | undefined {
  return typeof nonce === "string" && NONCE.test(nonce) ? { [SUPERVISOR_NONCE_VAR]: nonce } : undefined;
}

const NUL = Buffer.alloc(1);

/** True when the environment `pid` was started with holds every variable of `marker` with exactly that value. */
export function carriesMarker(pid: number, marker: ProcessMarker | undefined): boolean {
  if (!marker || !Number.isInteger(pid) || pid <= 1) return false;
  let environ: Buffer;
  try {
    environ = readFileSync(`/proc/${pid}/environ`);
  } catch {
    return false; // gone, or another user's process
  }
  // Each entry whole, as its bytes: NAME=VALUE between two NULs (the environment's separators), without decoding every entry.
  const entries = Buffer.concat([NUL, environ, NUL]);
  return Object.entries(marker).every(([name, value]) => entries.includes(`\0${name}=${value}\0`));
}

/** True when `pid` is alive, is still the process that had `startTime`, and carries `marker`: a process APEX started. */
export function isOwnProcess(pid: number | undefined, startTime: number | undefined, marker: ProcessMarker | undefined): boolean {
  return isSameProcessAlive(pid, startTime) && carriesMarker(pid!, marker);
}

/** Every process on the machine, read once. Processes that vanish while scanning are skipped. */
export function listProcesses(): ProcStat[] {
  const out: ProcStat[] = [];
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const name of names) {
    const first = name.charCodeAt(0);
    if (first < 48 || first > 57) continue;
    const stat = readProcStat(Number(name));
    if (stat) out.push(stat);
  }
  return out;
}

/**
 * A scan of /proc: the processes of each group asked for, and in `others` every other process,
 * where an agent's processes that left its group (setsid, setpgid) are found.
 */
export type ProcessScan = Map<number, ProcStat[]> & { others?: ProcStat[] };

/** The processes of each of `pgids`, from one scan of /proc. */
export function processGroups(pgids: Iterable<number>): ProcessScan {
  const groups: ProcessScan = new Map<number, ProcStat[]>();
  for (const pgid of pgids) if (pgid > 0) groups.set(pgid, []);
  if (groups.size === 0) return groups;
  const others: ProcStat[] = [];
  for (const stat of listProcesses()) (groups.get(stat.pgrp) ?? others).push(stat);
  groups.others = others;
  return groups;
}

/** Processes of a group that still run code (zombies and dead entries excluded). */
export function liveMembers(members: ProcStat[]): ProcStat[] { return members.filter((member) => member.state !== "Z" && member.state !== "X"); }

/**
 * Where a process stands after a SIGSTOP: `stopped` (state T, or t when traced); `stopping`,
 * in uninterruptible sleep (state D) with the stop on its way, so it stops the moment that
 * sleep ends, before it runs one more instruction of its own (a pending stop is acted on on
 * the way back to user space; it cannot be blocked, ignored or caught, and only SIGCONT or
 * SIGKILL take it back); or `running`, anything else, a D process with no stop on its way
 * included. The stop is on its way while SIGSTOP is pending, or once another thread of the
 * process took the signal and stopped (state T): a stop then holds every thread of the process.
 */
export type StopProgress = "stopped" | "stopping" | "running";

/** SIGSTOP's number on this platform: 19 on x86 and ARM, another on MIPS, SPARC, PA-RISC and Alpha. */
const SIGSTOP_NUMBER = constants.signals.SIGSTOP;

/** The lines of /proc/<pid>/status that say whether a stop is on its way. */
export interface ProcStatus {
  /** The state letter of the `State:` line (R, S, D, T, …). */
  state: string;
  /** `SigPnd`: signals pending for this thread; `ShdPnd`: for the whole process (where kill() puts them). Bit n-1 is signal n. */
  sigPnd: bigint;
  shdPnd: bigint;
}

/** Parses the text of /proc/<pid>/status (only State, SigPnd and ShdPnd); undefined when a line is missing. */
export function parseProcStatus(text: string): ProcStatus | undefined {
  const line = (name: string) => new RegExp(`^${name}:[ \\t]*(\\S+)`, "m").exec(text)?.[1];
  const state = line("State");
  const sigPnd = line("SigPnd");
  const shdPnd = line("ShdPnd");
  if (!state || !sigPnd || !shdPnd || !/^[0-9a-f]+$/i.test(sigPnd) || !/^[0-9a-f]+$/i.test(shdPnd)) return undefined;
  return { state, sigPnd: BigInt(`0x${sigPnd}`), shdPnd: BigInt(`0x${shdPnd}`) };
}

/** True when `pid` is stopped by a signal (SIGSTOP: an `apex pause`, or a job-control stop); false when it runs or is gone. */
export function isProcessStopped(pid: number): boolean { return readProcStat(pid)?.state === "T"; }

/** Reads /proc/<pid>/status, or undefined when the process does not exist. */
export function readProcStatus(pid: number): ProcStatus | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    return parseProcStatus(readFileSync(`/proc/${pid}/status`, "latin1"));
  } catch {
    return undefined;
  }
}

/** True when `signal` (a number) is set in the pending mask. */
export function isSignalPending(mask: bigint, signal: number): boolean { return ((mask >> BigInt(signal - 1)) & 1n) === 1n; }

/** The stop progress /proc/<pid>/status shows (state and pending signals read together, from one file). */
export function stopProgressOf(status: ProcStatus): StopProgress {
  if (status.state === "T" || status.state === "t") return "stopped";
  return status.state === "D" && (isSignalPending(status.shdPnd, SIGSTOP_NUMBER) || isSignalPending(status.sigPnd, SIGSTOP_NUMBER)) ? "stopping" : "running";
}

/**
 * The stop progress of a process seen in a scan of /proc/<pid>/stat. Only a process in state D
 * costs a second read (its status file), so scanning stays cheap; a process that left D
 * meanwhile is judged by what the status file shows now.
 */
export function stopProgress(member: Pick<ProcStat, "pid" | "state">): StopProgress {
  if (member.state === "T" || member.state === "t") return "stopped";
  if (member.state !== "D") return "running";
  const status = readProcStatus(member.pid);
  if (!status) return "running";
  const progress = stopProgressOf(status);
  return progress === "running" && status.state === "D" && anotherThreadStopped(member.pid) ? "stopping" : progress;
}

/**
 * True when a thread of `pid` other than its main one is in state T. A SIGSTOP sent to a
 * process is taken by whichever thread can take it (not the main thread when it is in D with a
 * signal of its own pending); that thread starts a stop of the whole process and stops, and
 * the main thread stops as soon as its sleep ends, though no SIGSTOP shows as pending any more.
 * T (not t, a tracer's stop) is only ever such a stop.
 */
function anotherThreadStopped(pid: number): boolean {
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  for (const tid of threads) {
    if (Number(tid) === pid) continue;
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, "latin1");
      if (text.charAt(text.lastIndexOf(")") + 2) === "T") return true;
    } catch {
      // the thread ended meanwhile
    }
  }
  return false;
}

/** CPU seconds used by a process group: utime + stime of its processes and of the children they waited for. */
export function groupCpuSeconds(members: ProcStat[]): number {
  let ticks = 0;
  for (const member of members) ticks += member.utime + member.stime + member.cutime + member.cstime;
  return ticks / CLOCK_TICKS_PER_SECOND;
}

/**
 * The processes of agent group `pgid` APEX may signal: all its live members that started no
 * earlier than its leader when the leader is alive, has `leaderStartTime` and carries `marker`,
 * otherwise only the members that carry `marker` themselves; and in both cases (`escaped`,
 * also in `members`) the processes that left the group (setsid, setpgid): those that carry the
 * marker and every descendant of a process found so. Without them a pause left an agent's
 * daemonised child running and a stop left it behind as an orphan.
 */
export function provenMembers(
  pgid: number,
  leaderStartTime: number,
  marker: ProcessMarker,
  scan?: ProcessScan,
): { leaderProven: boolean; members: ProcStat[]; escaped: ProcStat[] } {
  const groups = scan ?? processGroups([pgid]);
  const members = ownMembers(pgid, leaderStartTime, groups);
  const leader = members.find((member) => member.pid === pgid);
  const leaderProven = leader !== undefined && carriesMarker(leader.pid, marker);
  const proven = leaderProven ? members : members.filter((member) => carriesMarker(member.pid, marker));
  const escaped = escapedMembers(proven, leaderStartTime, marker, groups.others ?? []);
  return { leaderProven, members: escaped.length ? [...proven, ...escaped] : proven, escaped };
}

/**
 * Processes outside the group that are the agent's: started after its leader, and either
 * carrying its marker (an environment inherited from the agent) or descended from one of
 * `proven` or from such a process. Only processes whose parent is not in the same position are
 * read for the marker, once per process (`markerChecks`), so a pause's polling stays cheap.
 */
function escapedMembers(proven: ProcStat[], leaderStartTime: number, marker: ProcessMarker, others: ProcStat[]): ProcStat[] {
  const candidates = liveMembers(others).filter((stat) => stat.startTime >= leaderStartTime);
  const byPid = new Map(candidates.map((stat) => [stat.pid, stat]));
  const children = new Map<number, ProcStat[]>();
  for (const stat of candidates) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat]);
  const queue = proven.map((stat) => stat.pid);
  const escaped: ProcStat[] = [];
  const ours = new Set(queue);
  const take = (stat: ProcStat) => void (!ours.has(stat.pid) && ours.add(stat.pid) && escaped.push(stat) && queue.push(stat.pid));
  for (const stat of candidates) if (!ours.has(stat.ppid) && !byPid.has(stat.ppid) && carriesMarkerOnce(stat, marker)) take(stat);
  while (queue.length > 0) for (const child of children.get(queue.pop()!) ?? []) take(child);
  return escaped;
}

const markerChecks = new Map<string, boolean>();

function carriesMarkerOnce(stat: ProcStat, marker: ProcessMarker): boolean {
  const key = `${stat.pid}:${stat.startTime}:${Object.values(marker).join(":")}`;
  if (!markerChecks.has(key)) markerChecks.set(key, carriesMarker(stat.pid, marker));
  if (markerChecks.size > 10_000) markerChecks.clear();
  return markerChecks.get(key) ?? carriesMarker(stat.pid, marker);
}

/** The groups holding a live process that carries `marker`, each with the earliest start time among them (its leader's, when it runs). */
export function markedGroups(marker: ProcessMarker): Map<number, number> {
  const groups = new Map<number, number>();
  for (const stat of liveMembers(listProcesses())) if (carriesMarker(stat.pid, marker)) groups.set(stat.pgrp, Math.min(groups.get(stat.pgrp) ?? Infinity, stat.startTime));
  return groups;
}

/** Live members of group `pgid` that started no earlier than its leader did (the leader may be gone); `scan` is a processGroups result to reuse. */
export function ownMembers(pgid: number, leaderStartTime: number, scan?: ProcessScan) {
  const members = liveMembers((scan ?? processGroups([pgid])).get(pgid) ?? []);
  const leader = members.find((member) => member.pid === pgid);
  // A leader with another start time means the group id now belongs to someone else.
  if (leader && leader.startTime !== leaderStartTime) return [];
  return members.filter((member) => member.startTime >= leaderStartTime);
}

/** Sends `signal` to a whole process group; false when the group no longer exists. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean { return Number.isInteger(pgid) && pgid > 1 && sendSignal(-pgid, signal); }

/** Sends `signal` to one process; false when it no longer exists. */
export function signalProcess(pid: number, signal: NodeJS.Signals | 0): boolean { return Number.isInteger(pid) && pid > 1 && sendSignal(pid, signal); }

/** process.kill for a process (pid) or a group (-pgid); false when there is none. The callers refuse 0 and 1 (kill(-1) signals every process). */
function sendSignal(target: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(target, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw error;
  }
}

/** Seconds since boot, from /proc/uptime. */
/**
 * `stdio` entries past stderr that give a child /dev/null in place of each descriptor of this
 * process it would otherwise inherit: those opened without close-on-exec (LMDB opens its data
 * file so, on purpose), so that agents and git do not hold the store open. `release` closes the
 * /dev/null descriptor once the child is spawned. Nothing to add where /proc cannot be read.
 */
export function sealedStdio(): { extra: Array<"ignore" | number>; release(): void } {
  const extra: Array<"ignore" | number> = [];
  let devNull = -1;
  let names: string[] = [];
  try {
    names = readdirSync("/proc/self/fd");
  } catch {
    // not Linux: nothing known to seal
  }
  for (const fd of names.map(Number).filter((fd) => fd > 2).sort((a, b) => a - b)) {
    let flags: RegExpExecArray | null;
    try {
      flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    } catch {
      continue; // closed meanwhile (the directory's own descriptor)
    }
    if (!flags || (parseInt(flags[1]!, 8) & 0o2000000) !== 0) continue;
    if (devNull < 0) devNull = openSync("/dev/null", "r");
    while (extra.length < fd - 3) extra.push("ignore");
    extra.push(devNull);
  }
  return { extra, release: () => devNull >= 0 && closeSync(devNull) };
}

export function sleep(ms: number): Promise<void> { return new Promise((resolve) => setTimeout(resolve, ms)); }
