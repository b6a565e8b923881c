import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, closeSync, createReadStream, createWriteStream, fstatSync, ftruncateSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import { ApexError } from "../errors.js";
import { openPrivate, PRIVATE_FILE_MODE, writePrivateFile } from "../store/private.js";
import type { AgentConfig } from "../config/types.js";
import type { AgentRecord } from "./records.js";
import { agentMarker, markedGroups, sealedStdio, provenMembers, readProcStat, signalGroup, signalProcess, sleep, type ProcessMarker, type ProcessScan } from "./proc.js";

// Which processes of a group APEX can prove it started is decided in proc.ts, for signalling and for what status reports alike.
export { ownMembers, provenMembers } from "./proc.js";

/** Everything needed to run one agent process. */
export interface AgentLaunch {
  name: string;
  /** The session the agent belongs to (APEX_SESSION_ID, part of its marker). */
  sessionId: string;
  spec: AgentConfig;
  /** Absolute working directory. */
  cwd: string;
  /** The complete environment of the agent. */
  env: Record<string, string>;
  stdoutFile: string;
  stderrFile: string;
  /** Its APEX_AGENT_NONCE, recorded (spawn_nonce) before it is spawned. */
  nonce: string;
}

export type AgentExit = { code: number | null; signal: string | null };

/**
 * One running agent process: the leader of its own process group (so signals reach its
 * children), with stdout and stderr written straight to files (no pipe through the
 * supervisor, so agents keep running and logging if the supervisor dies).
 */
export class AgentProcess {
  private constructor(
    readonly name: string,
    readonly pid: number,
    readonly pgid: number,
    /** /proc/<pid>/stat field 22: with the pid, names this process and no later one. */
    readonly startTime: number,
    readonly startedAt: string,
    /** Resolves once the process exited and was reaped. */
    readonly exited: Promise<AgentExit>,
    /** The nonce put in its environment (APEX_AGENT_NONCE); recorded, it lets APEX prove the process is its own. */
    readonly nonce: string,
    /** APEX_SESSION_ID and APEX_AGENT_NONCE as its environment holds them (see proc.ts). */
    readonly marker: ProcessMarker,
  ) {}

  static async spawn(launch: AgentLaunch): Promise<AgentProcess> {
    const { spec, cwd } = launch;
    const out = openPrivate(launch.stdoutFile, "a");
    const err = openPrivate(launch.stderrFile, "a");
    const sealed = sealedStdio();
    // A command line without args runs through /bin/sh (pipes, `&`, quotes); with args it runs as is.
    const useShell = spec.args.length === 0 && /[\s|&;<>()$`"'*?~\\]/.test(spec.command);
    const { nonce } = launch;
    const marker = agentMarker(launch.sessionId, nonce)!;
    // node:child_process itself, not execa: loading execa was a fifth of every supervisor's start (docs/architecture.md).
    let child: ChildProcess | undefined;
    let failure: Promise<Error> | undefined;
    try {
      // A descriptor this process would leak (the store's data file) is /dev/null in the agent.
      child = spawn(spec.command, spec.args, { cwd, env: { ...launch.env, ...marker }, shell: useShell, detached: true, stdio: ["ignore", out, err, ...sealed.extra] });
      // ENOENT and EACCES come as an 'error' event (the pid is then undefined); others (ENOTDIR, E2BIG) are thrown.
      failure = new Promise((fail) => child!.on("error", fail));
    } catch (error) {
      failure = Promise.resolve(error as Error);
    } finally {
      // The child has its own copies of the descriptors.
      closeSync(out);
      closeSync(err);
      sealed.release();
    }
    const pid = child?.pid;
    if (pid === undefined) {
      const { message } = await failure;
      // Said of the working directory when it is the cause (gone, or a file now), as `apex config validate` says it.
      let reason = message;
      try {
        if (!statSync(cwd).isDirectory()) reason = `its working directory ${cwd} is not a directory (${message})`;
      } catch (error) {
        reason = `its working directory ${cwd} ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : `cannot be used: ${(error as Error).message}`} (${message})`;
      }
      throw new ApexError("APEX_E_PROCESS", `Agent ${launch.name}: cannot run ${JSON.stringify(spec.command)}: ${reason}`, { hint: `Check agents.${launch.name}.command (and cwd) in apex.config.yaml.` });
    }
    const stat = readProcStat(pid);
    const exited = new Promise<AgentExit>((done) => child!.once("exit", (code, signal) => done({ code, signal })));
    // The process may already be gone (a command that exits at once); its exit still arrives.
    return new AgentProcess(launch.name, pid, stat?.pgrp ?? pid, stat?.startTime ?? 0, new Date().toISOString(), exited, nonce, marker);
  }
}

export interface TerminateOptions {
  /** SIGKILL at once. */
  force?: boolean;
  /** Milliseconds between SIGTERM and SIGKILL. */
  graceMs?: number;
}

/**
 * Ends a process group whose leader started at `startTime` and carries `marker`: SIGTERM
 * (and SIGCONT, so that stopped members can act on it), then SIGKILL after the grace period,
 * until no member is left. Only processes APEX can prove it started are signalled (proc.ts):
 * the whole group while its leader has the recorded start time and carries the marker (a
 * group id cannot be reused while its leader lives), else each member that carries the
 * marker itself. A record without a marker (or a forged one) proves nothing: nothing is
 * signalled. Returns the pids that were still running when it began.
 */
export async function terminateGroup(pgid: number, startTime: number, marker: ProcessMarker | undefined, options: TerminateOptions = {}): Promise<number[]> {
  if (!marker) return [];
  const members = () => provenMembers(pgid, startTime, marker);
  const initial = members();
  if (initial.members.length === 0) return [];
  const send = (signal: NodeJS.Signals) => signalProvenGroup(pgid, startTime, marker, signal);
  if (options.force) send("SIGKILL");
  else {
    send("SIGTERM");
    send("SIGCONT");
  }
  const graceDeadline = Date.now() + (options.force ? 0 : (options.graceMs ?? 5000));
  while (members().members.length > 0 && Date.now() < graceDeadline) await sleep(25);
  const killDeadline = Date.now() + 5000;
  while (members().members.length > 0 && Date.now() < killDeadline) {
    send("SIGKILL");
    await sleep(25);
  }
  const left = members().members;
  if (left.length > 0) {
    throw new ApexError("APEX_E_PROCESS", `Processes ${left.map((m) => m.pid).join(", ")} of group ${pgid} survived SIGKILL.`, { hint: "They are probably in uninterruptible I/O (state D); they end once it completes." });
  }
  return initial.members.map((member) => member.pid);
}

/**
 * Ends an agent's processes as its record names them (terminateGroup), and those of a spawn its
 * record has no pid of (a supervisor killed between the spawn and its record): found by the
 * marker of its `spawn_nonce`, recorded before that spawn.
 */
export async function terminateAgent(sessionId: string, agent: AgentRecord, options: TerminateOptions = {}): Promise<number[]> {
  const pids = agent.pgid && agent.start_time !== null ? await terminateGroup(agent.pgid, agent.start_time, agentMarker(sessionId, agent.nonce), options) : [];
  const marker = agent.spawn_nonce !== agent.nonce ? agentMarker(sessionId, agent.spawn_nonce) : undefined;
  for (const [pgid, startTime] of marker ? markedGroups(marker) : []) pids.push(...(await terminateGroup(pgid, startTime, marker, options)));
  return pids;
}

/** Sends `signal` to what APEX can prove is its own of group `pgid` (see provenMembers); the number of processes signalled. */
export function signalProvenGroup(pgid: number, startTime: number, marker: ProcessMarker, signal: NodeJS.Signals, scan?: ProcessScan): number {
  const proven = provenMembers(pgid, startTime, marker, scan);
  if (proven.members.length === 0) return 0;
  if (proven.leaderProven) signalGroup(pgid, signal);
  // Processes that left the group (escaped) are signalled one by one, like members of a group whose leader is gone.
  for (const member of proven.leaderProven ? proven.escaped : proven.members) signalProcess(member.pid, signal);
  return proven.members.length;
}

/** The last `lines` lines of a file (at most 64 KiB are read), or [] when it does not exist. */
export function tailLines(file: string, lines: number): string[] {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return [];
  }
  if (size === 0 || lines <= 0) return [];
  const length = Math.min(size, 64 * 1024);
  let text = readAt(file, size - length, length).toString("utf8");
  // An agent's line APEX's split (appendLogLine) is shown whole, after APEX's line (ended by another of APEX's: the agent ended there).
  // Tried at line starts only (^, m): at every position, a 64 KiB line without a break took seconds.
  for (let before = ""; before !== text; ) [before, text] = [text, text.replace(/^([^\n]*)\x1e\n(\[apex [^\n]*\n)(?=(\[apex )?)/m, (_, line, apex, next) => `${apex}${line}${next ? "\n" : ""}`)];
  const all = text.replace(/\n$/, "").split("\n");
  if (length < size) all.shift(); // probably a partial first line
  return all.slice(-lines);
}

/**
 * Appends one of APEX's own lines (`[apex …] started`, `… was killed`, `log cut`) to an agent's
 * log on a line of its own: after a line break when the agent's last line is unfinished (it was
 * killed mid-line, or wrote its first bytes before the `started` line). Before, the two were
 * glued into one line, `half a line[apex …] pid 123 was killed by SIGTERM`. While the agent runs
 * (`continues`: it may finish that line), the break APEX adds is marked, U+001E before it (SPLIT_MARK):
 * `apex logs` shows the agent's line whole, after APEX's (cli/session/logs.ts); before, it was two lines.
 */
export function appendLogLine(file: string, text: string, continues = false): void {
  // One descriptor for the look at the last byte and the append, back to back: the agent writes to
  // the same file on its own, and a line it starts between the two is glued to APEX's. That window
  // was a stat, two opens and a read wide (a loaded machine hit it); it is now one pread.
  const fd = openSync(file, "a+", PRIVATE_FILE_MODE);
  try {
    const size = fstatSync(fd).size;
    const last = Buffer.alloc(1);
    const unfinished = size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a;
    writeSync(fd, `${unfinished ? (continues ? "\x1e\n" : "\n") : ""}${text}\n`);
  } finally {
    closeSync(fd);
  }
}

/** Largest size of an agent's log file (APEX_LOG_MAX_BYTES in the supervisor's environment, else 64 MiB). */
export const LOG_MAX_BYTES = Number(process.env.APEX_LOG_MAX_BYTES) > 0 ? Number(process.env.APEX_LOG_MAX_BYTES) : 64 * 1024 * 1024;

/** The bytes of `file` from `start` to its end, read until a read finds no more; the file is then emptied. */
function readToEndAndEmpty(file: string, start: number): Buffer {
  const fd = openSync(file, "r+");
  try {
    const chunks: Buffer[] = [];
    for (let position = start; ; ) {
      const chunk = Buffer.alloc(Math.max(64 * 1024, fstatSync(fd).size - position));
      const read = readSync(fd, chunk, 0, chunk.length, position);
      if (read === 0) break;
      chunks.push(chunk.subarray(0, read));
      position += read;
    }
    ftruncateSync(fd, 0);
    return Buffer.concat(chunks);
  } finally {
    closeSync(fd);
  }
}

/** Up to `length` bytes of `file` from `start`. */
function readAt(file: string, start: number, length: number): Buffer {
  const buffer = Buffer.alloc(Math.max(0, length));
  const fd = openSync(file, "r");
  try {
    return buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, start));
  } finally {
    closeSync(fd);
  }
}

/**
 * Cuts a log file that reached `max` bytes: its last `max` bytes are copied to `<file>.1`
 * (replacing the previous one) and the file emptied. The agent holds the file open for
 * appending, so it writes on at the start. What it wrote during the copy follows into `.1`,
 * caught up until less than 64 KiB is left (or another `max` was), which is read to the file's end right before it is
 * emptied (readToEndAndEmpty): before, it was emptied unread (a busy agent lost what it wrote
 * during the whole copy at each cut); what remains is the one system call between the last read and the truncation. So `.1` holds the last `max` bytes and what came during
 * the cut (from the first line that starts in those bytes). `<file>.cut` records it: `.1` holds the bytes [from, to) of the file as it was, so
 * `apex logs -f` reads there what it had not read yet (cli/session/logs.ts followCut). True
 * when the file was cut.
 */
export async function capLogFile(file: string, max = LOG_MAX_BYTES): Promise<boolean> {
  let size = statSync(file, { throwIfNoEntry: false })?.size ?? 0;
  if (size < max) return false;
  const copy = async (start: number, end: number, flags: string) => { await pipeline(createReadStream(file, { start, end: end - 1 }), createWriteStream(`${file}.1`, { mode: PRIVATE_FILE_MODE, flags })); return end; };
  const cut = size;
  // From the first line that starts in the last `max` bytes (within 64 KiB of it): `apex logs` shows .1's first line whole, not a piece of one.
  const newline = cut > max ? readAt(file, cut - max - 1, Math.min(max, 64 * 1024)).indexOf(0x0a) : -1;
  const from = cut - max + Math.max(0, newline);
  size = await copy(from, size, "w");
  // No further than another `max`: an agent writing faster than the copy would keep it going.
  for (let now = statSync(file).size; now - size >= 64 * 1024 && size - cut < max; now = statSync(file).size) size = await copy(size, now, "a");
  // Read to its end and emptied right after, through one descriptor; .1 gets it after. What the
  // agent writes between the last read and the truncation (one system call apart) is lost: the
  // agent appends on its own, so no cut of its file can close that window (logrotate's copytruncate has it too).
  const rest = readToEndAndEmpty(file, size);
  appendFileSync(`${file}.1`, rest);
  writePrivateFile(`${file}.cut`, `${JSON.stringify({ from, to: size + rest.length, at: new Date().toISOString() })}\n`);
  return true;
}
