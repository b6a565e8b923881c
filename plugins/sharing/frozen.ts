/**
 * A session's supervisor that is alive but answers nothing (stopped by SIGSTOP, state T), seen
 * from `apex serve`, which runs on its host: what a local command does about it, done for the
 * server's clients. A local `apex status` says the supervisor is stopped and answers from the
 * store at once, and `apex stop --force` kills it and stops the session without it; through the
 * server, every request waited out the supervisor's read window twice (its grant's check, then the
 * call: 10 s for a status, with no word of why), and `stop --force` waited on the frozen socket
 * and failed, its hint naming the command that had just failed.
 */
import { execFile } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ApexError } from "../../core/errors.js";
import type { ProjectLocation } from "../../core/config/locate.js";
import { isProcessStopped } from "../../core/session/proc.js";
import type { SupervisorRuntime } from "../../core/session/runtime.js";

/** Whether the supervisor is stopped (SIGSTOP): it reads nothing from its socket until it is continued. */
export function isStopped(runtime: Pick<SupervisorRuntime, "pid"> | undefined): boolean {
  return runtime !== undefined && isProcessStopped(runtime.pid);
}

/** A status report with `supervisor.stopped`, as a local `apex status` gives it (the server is on the supervisor's host). */
export function withStoppedFlag(report: unknown): unknown {
  const supervisor = (report as { session?: { supervisor?: { pid?: unknown; alive?: unknown } | null } | null } | null)?.session?.supervisor;
  if (!supervisor || supervisor.alive !== true || typeof supervisor.pid !== "number") return report;
  const session = (report as { session: Record<string, unknown> }).session;
  return { ...(report as Record<string, unknown>), session: { ...session, supervisor: { ...supervisor, stopped: isProcessStopped(supervisor.pid) } } };
}

/** How long the host's `apex stop --force` may take: the supervisor killed, its agents ended, the session recorded. */
const FORCE_STOP_MS = 60_000;

/**
 * `apex stop --force` of `sessionId` on this host, as its owner would run it there: the same
 * command (kill the supervisor that does not answer, end the agents it leaves, record the stop),
 * run as a process of its own in the project's directory, which names the session with --session.
 * Its `--json` answer, or its error as it gave it.
 */
export async function forceStopOnHost(location: ProjectLocation, sessionId: string, heartbeat?: { beat: () => void; everyMs: number }): Promise<Record<string, unknown>> {
  const bin = resolve(dirname(fileURLToPath(import.meta.url)), "../../../bin/apex.js");
  // Not a command of a session's agent, nor of a remote client: the host's own.
  const { APEX_REMOTE: _remote, APEX_TOKEN: _token, APEX_SESSION_ID: _session, APEX_SOCKET: _socket, APEX_WORKTREE: _tree, APEX_AGENT: _agent, ...env } = process.env;
  const args = [bin, ...(location.configPath ? ["--config", location.configPath] : []), "--session", sessionId, "stop", "--force", "--json"];
  const beating = heartbeat ? setInterval(heartbeat.beat, Math.max(100, heartbeat.everyMs)) : undefined;
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, args, { cwd: location.projectDir, env, encoding: "utf8", timeout: FORCE_STOP_MS, maxBuffer: 16 * 1024 * 1024 }, (error, out, err) => {
      done({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout: out, stderr: err });
    });
  }).finally(() => clearInterval(beating));
  if (code === 0) return JSON.parse(stdout) as Record<string, unknown>;
  let reported: { code?: string; message?: string; hint?: string; details?: Record<string, unknown> } | undefined;
  try {
    reported = (JSON.parse(stderr.trim().split("\n").at(-1) ?? "") as { error?: typeof reported }).error;
  } catch {
    reported = undefined;
  }
  throw new ApexError((reported?.code as never) ?? "APEX_E_INTERNAL", reported?.message ?? `apex stop --force failed on the server's host: ${stderr.trim().split("\n")[0] ?? `exit ${code}`}`, {
    ...(reported?.hint ? { hint: reported.hint } : {}),
    ...(reported?.details ? { details: reported.details } : {}),
  });
}
