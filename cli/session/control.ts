/**
 * `apex pause`, `apex resume`, `apex stop`. Kept lean on purpose (the pause benchmark): the
 * supervisor does the work; this side reads <store>/supervisor.json and /proc, and sends one
 * request on the socket. The store is opened only to explain why no supervisor answers.
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { plural, printJson, printLine } from "../output.js";
import { isSameProcessAlive } from "../../core/session/proc.js";
import { waitForExit } from "./exit-wait.js";
import { currentActor } from "../../core/actor.js";
import { liveSessionClient, type SessionClient } from "../../core/session/client.js";
import { shortSessionId } from "../../core/session/names.js";
import { lifecycleCall } from "./lifecycle-wait.js";

interface ControlReply {
  session_id: string;
  /** A branch session's name, null for an unnamed one; a supervisor older than `name` leaves it out. */
  name?: string | null;
  status: string;
  agents?: number;
  processes?: number;
  /** Pause: processes in uninterruptible I/O whose SIGSTOP is pending (they stop when it ends). */
  stopping?: Array<{ agent: string; pid: number }>;
  /** Resume: the agents whose restart came due while the session was paused, started by the resume. */
  restarted?: string[];
  warnings?: string[];
  reason?: string;
  processes_ended?: number;
  /** Stop: the supervisor whose socket was gone, sent SIGTERM (it stopped the session). */
  signalled?: number;
}

export async function pauseSession(location: ProjectLocation, json: boolean): Promise<void> {
  const client = await requireSupervisor(location, "pause", json);
  // Its own pid over a unix socket (a supervisor of this host): one of the agents' processes (the command run inside an agent) is refused, as the pause would stop it.
  const params = { actor: currentActor(), ...(client.via === "socket" ? { caller_pid: process.pid } : {}) };
  const reply = (await reached(client, "pause", () => lifecycleCall(client, "pause", params, json))) as ControlReply;
  const stopping = reply.stopping ?? [];
  const pending = stopping.length
    ? ` ${stopping.map(({ agent, pid }) => `${agent}'s pid ${pid}`).join(", ")} ${stopping.length === 1 ? "is" : "are"} in uninterruptible I/O with the stop pending: ${stopping.length === 1 ? "it stops" : "they stop"} the moment that ends and run${stopping.length === 1 ? "s" : ""} nothing before.`
    : "";
  report(reply, json, `Paused session ${label(reply)}: ${plural(reply.processes ?? 0, "process", "processes")} of ${plural(reply.agents ?? 0, "agent")} stopped.${pending}`);
}

export async function resumeSession(location: ProjectLocation, json: boolean): Promise<void> {
  if (!(await liveSessionClient(location, { elsewhere: "refuse" }))) {
    // session.auto_recovery: resuming an interrupted session continues it from the live store.
    const { findAutoRecoverable, autoRecoveryNotice } = await import("./auto-recovery.js");
    const recoverable = await findAutoRecoverable(location);
    if (recoverable) {
      autoRecoveryNotice(recoverable, json);
      const [{ startSession }, { callOffOnInterrupt }] = await Promise.all([import("./start.js"), import("./call-off.js")]);
      await callOffOnInterrupt(json, () => startSession(location, { continue: recoverable.sessionId, json }));
      return;
    }
  }
  const client = await requireSupervisor(location, "resume", json);
  const reply = (await reached(client, "resume", () => lifecycleCall(client, "resume", { actor: currentActor() }, json))) as ControlReply;
  const restarted = reply.restarted?.length ? `; restarted ${reply.restarted.join(", ")} (${reply.restarted.length === 1 ? "its restart" : "their restarts"} waited for the resume)` : "";
  report(reply, json, `Resumed session ${label(reply)}: ${plural(reply.processes ?? 0, "process", "processes")} of ${plural(reply.agents ?? 0, "agent")} continued${restarted}.`);
}

export async function stopSession(location: ProjectLocation, options: { force?: boolean; grace?: number; json?: boolean }): Promise<void> {
  // --force gives no grace: one given with it was ignored without a word.
  if (options.force && options.grace !== undefined) {
    throw new ApexError("APEX_E_USAGE", "--force and --grace do not go together: --force sends SIGKILL at once, with no grace.", { hint: "Give --grace D for SIGTERM, then SIGKILL after D; or --force alone." });
  }
  const params = { force: Boolean(options.force), ...(options.grace !== undefined ? { grace_ms: options.grace * 1000 } : {}), actor: currentActor() };
  // --force does not wait: before it listens, a starting supervisor runs no agent of its own yet (it reaps the old ones), and the offline stop kills it and ends every agent recorded.
  const client = await liveClient(location, options.force ? undefined : { action: "stop", json: Boolean(options.json) });
  // With --force, the supervisor that was alive but did not answer (frozen, stopped): the offline stop kills it.
  let unanswered: number | undefined;
  if (client) {
    const runtime = client.supervisor;
    let reply: ControlReply | undefined;
    try {
      // The supervisor answers once the agents ended and its hooks ran: waited for while it sends its heartbeat.
      reply = (await lifecycleCall(client, "stop", params, Boolean(options.json))) as ControlReply;
    } catch (error) {
      // A remote session's server answers for its supervisor: its errors are final.
      // APEX_E_SESSION_STOPPING: it was already exiting, its session stopped, and took no more requests.
      if (!runtime || !(error instanceof ApexError) || !["APEX_E_RPC", "APEX_E_TIMEOUT", "APEX_E_SESSION_STOPPING"].includes(error.code)) throw error;
      // Its socket gone while it runs (deleted and not made again, or another file there): asked by a signal to stop, as it stops on one; with --force, killed below.
      const { goneSocketOf, stopGoneSocket } = await import("../socket-gone.js");
      const gone = goneSocketOf(client, error);
      if (gone && !options.force) {
        const handed = await stopGoneSocket(gone, GONE_SOCKET_STOP_MS + (options.grace ?? 0) * 1000, options.grace === undefined ? undefined : options.grace * 1000);
        const ended = await endedRecord(location, gone.session_id);
        // (It exited without recording the stop: the offline stop below does, and says so.)
        // A signal carries no grace: --grace was written beside its runtime file for it; one that could not be gave its agents its own (5 s).
        const warnings = !handed && options.grace !== DEFAULT_GRACE_S ? [`--grace ${options.grace}s did not reach the supervisor (its socket was gone, so it was sent SIGTERM, and the grace could not be written beside its runtime file): it gave its agents the default ${DEFAULT_GRACE_S} s before SIGKILL.`] : [];
        if (ended) return report({ ...ended, signalled: gone.pid, ...(warnings.length > 0 ? { warnings } : {}) }, Boolean(options.json), `Stopped session ${label(ended)} (its socket was gone: its supervisor, pid ${gone.pid}, was sent SIGTERM and stopped it).`);
      } else if (gone) {
        unanswered = gone.pid;
      } else {
        // The supervisor went away meanwhile (the session ended by itself, or it crashed): the
        // offline path says which. One that is alive but does not answer (hung, stopped) is
        // ended with its agents only with --force.
        await waitForExit(runtime, 2000);
        if (isSameProcessAlive(runtime.pid, runtime.start_time)) {
          if (!options.force) throw error;
          unanswered = runtime.pid;
        }
      }
    }
    if (reply) {
      if (runtime) await waitForExit(runtime, 10_000);
      report(reply, Boolean(options.json), `Stopped session ${label(reply)} (${plural(reply.processes_ended ?? 0, "process", "processes")} ended).`);
      return;
    }
  }
  const { stopWithoutSupervisor } = await import("./stop-offline.js");
  const { killed, ...reply } = await stopWithoutSupervisor(location, { force: Boolean(options.force), graceMs: (options.grace ?? DEFAULT_GRACE_S) * 1000 });
  // Killed there too: one still starting (`start --continue` reaping, before it listens), which --force does not wait for. It said "not running".
  const supervisor = (killed ?? unanswered) === undefined ? "its supervisor was not running" : `its supervisor, pid ${killed ?? unanswered}, did not answer and was killed`;
  report(reply, Boolean(options.json), `Stopped session ${label(reply)} (${supervisor}; ${plural(reply.processes_ended ?? 0, "leftover process", "leftover processes")} ended).`);
}

/** An agent's time between SIGTERM and SIGKILL when `apex stop` gives no --grace (the supervisor's own default too). */
const DEFAULT_GRACE_S = 5;

/**
 * How long `apex stop` waits for a supervisor whose socket is gone to stop its session once sent
 * SIGTERM, besides the --grace given: its agents' grace (5 s by default), its hooks, the stop's checkpoint.
 */
const GONE_SOCKET_STOP_MS = 60_000;

/** The session as its supervisor recorded it when it stopped (the history), or undefined when it did not. */
async function endedRecord(location: ProjectLocation, sessionId: string): Promise<ControlReply | undefined> {
  const [{ openStore }, { historyPath }] = await Promise.all([import("../../core/store/open.js"), import("../../core/session/records.js")]);
  const store = await openStore(location, { readOnly: true });
  try {
    const record = store.get(historyPath(sessionId)) as { status?: unknown; outcome?: unknown; name?: unknown } | undefined;
    if (typeof record?.status !== "string") return undefined;
    return { session_id: sessionId, name: typeof record.name === "string" ? record.name : null, status: record.status, ...(typeof record.outcome === "string" ? { reason: record.outcome } : {}) };
  } finally {
    await store.close();
  }
}

/** The session as the other commands print it: its name, else a uuid's short form, else the whole id. */
function label(reply: ControlReply): string {
  return typeof reply.name === "string" && reply.name ? reply.name : shortSessionId(reply.session_id);
}

function report(reply: ControlReply, json: boolean, text: string): void {
  if (json) {
    // The whole id, and the name (null: none) even from a supervisor that did not send it.
    const { session_id, name, ...rest } = reply;
    printJson({ session_id, name: name ?? null, ...rest });
    return;
  }
  printLine(text);
  for (const warning of reply.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
}

/** `call`'s answer; its supervisor's socket gone while it runs (socket-gone.ts) is said so (APEX_E_SOCKET_GONE), at once. */
async function reached(client: SessionClient, action: string, call: () => Promise<unknown>): Promise<unknown> {
  try {
    return await call();
  } catch (error) {
    throw (await import("../socket-gone.js")).goneSocketError(client, error, action) ?? error;
  }
}

/** Where the live supervisor answers (a remote session's server, or the local socket), or an error that says why there is none. */
async function requireSupervisor(location: ProjectLocation, action: string, json: boolean): Promise<SessionClient> {
  const client = await liveClient(location, { action, json });
  if (client) return client;
  const { explainNoSupervisor } = await import("./explain.js");
  throw await explainNoSupervisor(location, action);
}

/**
 * The live supervisor's client; for one that is alive but still starting (`--continue` reaps the
 * old agents, restores a checkpoint, before it listens and writes the runtime file commands find
 * it by), once it listens, waited for while it sends its heartbeat (starting-wait.ts): the request
 * then queues behind the start, as one sent a moment later would. Undefined when none runs, or
 * when the one starting exited meanwhile; without `wait` (stop --force), the one starting is not waited for.
 */
async function liveClient(location: ProjectLocation, wait?: { action: string; json: boolean }): Promise<SessionClient | undefined> {
  const client = await liveSessionClient(location, { elsewhere: "refuse" });
  if (client || !wait || process.env.APEX_REMOTE) return client;
  const starting = await startingSupervisor(location);
  if (!starting) return undefined;
  const { waitForStart } = await import("./starting-wait.js");
  return waitForStart(location, starting, wait.action, wait.json);
}

/** The supervisor the current session's record names, when it runs on this host (of this project directory) and has written no runtime file yet. */
async function startingSupervisor(location: ProjectLocation): Promise<{ pid: number; start_time: number; label: string } | undefined> {
  const { storeExists, openStore } = await import("../../core/store/open.js");
  const { currentSession, supervisorAlive } = await import("../../core/session/sessions.js");
  const { onOtherHost } = await import("../../core/session/lease.js");
  if (!(await storeExists(location))) return undefined;
  const store = await openStore(location, { readOnly: true });
  try {
    const session = currentSession(store);
    if (!session?.supervisor || !supervisorAlive(session) || onOtherHost(session.supervisor)) return undefined;
    const { otherDirectoryError } = await import("./explain.js");
    if (otherDirectoryError(session, location, "reach")) return undefined;
    const label = typeof session.name === "string" && session.name ? session.name : shortSessionId(session.session_id);
    return { pid: session.supervisor.pid, start_time: session.supervisor.start_time, label };
  } finally {
    await store.close();
  }
}
