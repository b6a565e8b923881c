import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { ApexError } from "../errors.js";
import type { AgentConfig } from "../config/types.js";
import { liveMembers, processGroups, readProcStat, signalGroup, signalProcess, sleep } from "./proc.js";

/** Everything needed to run one agent process. */
export interface AgentLaunch {
  name: string;
  spec: AgentConfig;
  /** Absolute working directory. */
  cwd: string;
  /** The complete environment of the agent. */
  env: Record<string, string>;
  stdoutFile: string;
  stderrFile: string;
}

export interface AgentExit {
  code: number | null;
  signal: string | null;
}

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
  ) {}

  static async spawn(launch: AgentLaunch): Promise<AgentProcess> {
    const { execa } = await import("execa");
    const { spec } = launch;
    const out = openSync(launch.stdoutFile, "a");
    const err = openSync(launch.stderrFile, "a");
    // A command line without args runs through /bin/sh (pipes, `&`, quotes); with args it runs as is.
    const useShell = spec.args.length === 0 && /[\s|&;<>()$`"'*?~\\]/.test(spec.command);
    let subprocess;
    try {
      subprocess = execa(spec.command, spec.args, {
        cwd: launch.cwd,
        env: launch.env,
        extendEnv: false,
        shell: useShell,
        detached: true,
        cleanup: false,
        stdin: "ignore",
        // A plain descriptor goes to child_process.spawn as is (execa's types only list 1-9).
        stdout: out as 1,
        stderr: err as 2,
        buffer: false,
        reject: false,
        forceKillAfterDelay: false,
      });
    } finally {
      // The child has its own copies of the descriptors.
      closeSync(out);
      closeSync(err);
    }
    const pid = subprocess.pid;
    if (pid === undefined) {
      const result = await subprocess;
      const reason = result.originalMessage || result.shortMessage || "it could not be started";
      throw new ApexError("APEX_E_PROCESS", `Agent ${launch.name}: cannot run ${JSON.stringify(spec.command)}: ${reason}`, {
        hint: `Check agents.${launch.name}.command (and cwd) in apex.config.yaml.`,
      });
    }
    const stat = readProcStat(pid);
    const exited = subprocess.then((result) => ({
      code: result.exitCode ?? null,
      signal: result.signal ?? null,
    }));
    // The process may already be gone (a command that exits at once); its exit still arrives.
    return new AgentProcess(launch.name, pid, stat?.pgrp ?? pid, stat?.startTime ?? 0, new Date().toISOString(), exited);
  }
}

export interface TerminateOptions {
  /** SIGKILL at once. */
  force?: boolean;
  /** Milliseconds between SIGTERM and SIGKILL. */
  graceMs?: number;
}

/**
 * Ends a process group whose leader started at `startTime`: SIGTERM (and SIGCONT, so that
 * stopped members can act on it), then SIGKILL after the grace period, until no member is
 * left. Members are checked by start time, so a recycled group id is never signalled.
 * Returns the pids that were still running when it began.
 */
export async function terminateGroup(pgid: number, startTime: number, options: TerminateOptions = {}): Promise<number[]> {
  const members = () => ownMembers(pgid, startTime);
  const initial = members();
  if (initial.length === 0) return [];
  const leaderIsOurs = initial.some((member) => member.pid === pgid);
  const send = (signal: NodeJS.Signals) => {
    // The group id is safe to signal while its leader is ours; otherwise signal the verified members one by one.
    if (leaderIsOurs && members().some((member) => member.pid === pgid)) signalGroup(pgid, signal);
    else for (const member of members()) signalProcess(member.pid, signal);
  };
  if (options.force) send("SIGKILL");
  else {
    send("SIGTERM");
    send("SIGCONT");
  }
  const graceDeadline = Date.now() + (options.force ? 0 : (options.graceMs ?? 5000));
  while (members().length > 0 && Date.now() < graceDeadline) await sleep(25);
  const killDeadline = Date.now() + 5000;
  while (members().length > 0 && Date.now() < killDeadline) {
    send("SIGKILL");
    await sleep(25);
  }
  const left = members();
  if (left.length > 0) {
    throw new ApexError("APEX_E_PROCESS", `Processes ${left.map((m) => m.pid).join(", ")} of group ${pgid} survived SIGKILL.`, {
      hint: "They are probably in uninterruptible I/O (state D); they end once it completes.",
    });
  }
  return initial.map((member) => member.pid);
}

/** Live members of group `pgid` that started no earlier than its leader did (the leader may be gone). */
export function ownMembers(pgid: number, leaderStartTime: number) {
  const members = liveMembers(processGroups([pgid]).get(pgid) ?? []);
  const leader = members.find((member) => member.pid === pgid);
  // A leader with another start time means the group id now belongs to someone else.
  if (leader && leader.startTime !== leaderStartTime) return [];
  return members.filter((member) => member.startTime >= leaderStartTime);
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
  const buffer = Buffer.alloc(length);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buffer, 0, length, size - length);
  } finally {
    closeSync(fd);
  }
  const text = buffer.toString("utf8");
  const all = text.split("\n");
  if (all[all.length - 1] === "") all.pop();
  if (length < size) all.shift(); // probably a partial first line
  return all.slice(-lines);
}

export function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
