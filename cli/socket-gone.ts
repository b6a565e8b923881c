/**
 * A supervisor that runs while its control socket is gone: the file deleted (`rm
 * .apex/supervisor.sock`, a temp cleaner) or replaced by another file. It listens on a deleted
 * socket again within half a second (RpcServer), and a call that found it missing waits that long
 * for it (socketClient); one that still finds no socket there, or another file in its place, is
 * told so at once here (APEX_E_SOCKET_GONE), where it waited up to 15 s as if the supervisor were
 * stopping (a stop removes the runtime files before the socket, so a supervisor that its runtime
 * file still names is not stopping) and then failed with a hint that did not fit. `apex stop`
 * ends such a session by a signal (stopGoneSocket).
 */
import { dirname } from "node:path";
import { ApexError, isApexError } from "../core/errors.js";
import type { SessionClient } from "../core/session/client.js";
import { shortSessionId } from "../core/session/names.js";
import { carriesMarker, isSameProcessAlive, signalProcess, supervisorMarker } from "../core/session/proc.js";
import { liveSupervisorOf, removeStaleStopRequests, writeStopRequest, type SupervisorRuntime } from "../core/session/runtime.js";

/** The errnos of a connect to a socket path that is not the supervisor's listening socket any more: none there, or a file no one listens on. */
const NOT_LISTENING = ["ENOENT", "ECONNREFUSED"];

/**
 * The supervisor `client` called, when `error` says its socket is gone (nothing was sent) while it
 * runs and is not stopping: alive, and still named by its session's runtime file. Else undefined.
 */
export function goneSocketOf(client: SessionClient, error: unknown): SupervisorRuntime | undefined {
  const supervisor = client.supervisor;
  if (client.via !== "socket" || !supervisor || !isApexError(error) || error.code !== "APEX_E_RPC" || !NOT_LISTENING.includes(String(error.details?.connection))) return undefined;
  if (!isSameProcessAlive(supervisor.pid, supervisor.start_time)) return undefined;
  // The runtime files are in the store directory, beside the supervisor's log.
  const named = liveSupervisorOf(dirname(supervisor.log), supervisor.session_id);
  return named?.pid === supervisor.pid && named.start_time === supervisor.start_time ? supervisor : undefined;
}

/**
 * The error a command gets when its call's error `failed` says the supervisor's socket is gone (goneSocketOf;
 * its `details.connection`, ENOENT or ECONNREFUSED, is kept), else undefined; `action`: what was asked ("pause"), else a call.
 */
export function goneSocketError(client: SessionClient, failed: unknown, action?: string): ApexError | undefined {
  const supervisor = goneSocketOf(client, failed);
  if (!supervisor) return undefined;
  const session = supervisor.name || shortSessionId(supervisor.session_id);
  return new ApexError("APEX_E_SOCKET_GONE", `Session ${session}'s supervisor (pid ${supervisor.pid}) is running, but its socket ${supervisor.socket} is gone (deleted, or another file put in its place): no command can reach it, and nothing of ${action ? `the ${action}` : "this command"} was done.`, {
    hint: "`apex stop` ends the session: it signals the supervisor (SIGTERM), which stops the agents and records the session stopped as a stop always does; `apex start --continue last` then runs it again. (A supervisor makes its socket again within a second of its deletion; not one an older APEX started, nor where another file took its place or its directory is gone.)",
    details: { session_id: supervisor.session_id, pid: supervisor.pid, socket: supervisor.socket, connection: (failed as ApexError).details?.connection },
    cause: failed,
  });
}

/**
 * `apex stop` of a session whose supervisor's socket is gone: SIGTERM to the supervisor, which
 * stops the session as a stop sent on its socket does (its agents ended within its grace, the
 * session recorded stopped, its hooks fired), once the process is proven to be the supervisor that
 * `apex start` launched (pid, start time, and the nonce in its environment); then waits for it to
 * exit, up to `waitMs`. `graceMs` (`--grace`) is written for it first (writeStopRequest), as a signal
 * carries none; false when it could not be (it then gave its agents its default). Throws when it cannot be proven (APEX_E_PROCESS) or has not exited in time
 * (APEX_E_TIMEOUT: `apex stop --force` kills it).
 */
export async function stopGoneSocket(supervisor: SupervisorRuntime, waitMs: number, graceMs?: number): Promise<boolean> {
  if (!carriesMarker(supervisor.pid, supervisorMarker(supervisor.nonce))) {
    throw new ApexError("APEX_E_PROCESS", `Session ${supervisor.session_id}'s supervisor (pid ${supervisor.pid}) cannot be reached (its socket ${supervisor.socket} is gone), and the process does not carry the marker that proves it is the supervisor APEX started: APEX does not signal it.`, {
      hint: "If it is the supervisor, end it yourself (`kill " + supervisor.pid + "`: it stops the session), then run `apex stop` again.",
      details: { pid: supervisor.pid, socket: supervisor.socket },
    });
  }
  // A signal carries no grace: `--grace` goes beside its runtime file, for it to take on SIGTERM (a grace that cannot be written there: false).
  const handed = graceMs === undefined || writeStopRequest(dirname(supervisor.log), supervisor, graceMs);
  signalProcess(supervisor.pid, "SIGTERM");
  const { waitForExit } = await import("./session/exit-wait.js");
  if (await waitForExit(supervisor, waitMs)) {
    // Killed before it took the request (kill -9, OOM): the request is for no process now, and was left in run/ for good.
    removeStaleStopRequests(dirname(supervisor.log));
    return handed;
  }
  throw new ApexError("APEX_E_TIMEOUT", `Session ${supervisor.session_id}'s supervisor (pid ${supervisor.pid}), whose socket is gone, was sent SIGTERM to stop the session and has not exited within ${Math.round(waitMs / 1000)} s.`, {
    hint: "It may still be stopping (its hooks, its agents' grace): `apex status` says when it has. `apex stop --force` kills it and its agents.",
    details: { pid: supervisor.pid, socket: supervisor.socket, signalled: "SIGTERM" },
  });
}
