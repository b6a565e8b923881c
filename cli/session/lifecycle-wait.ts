/**
 * How the CLI waits on a supervisor for a pause, a resume or a stop. Their plugins' hooks (onPause,
 * onResume, beforeStop, onStop: a big checkpoint, a git sync, a backup) may take any time, so the
 * call asks for the RPC server's heartbeat and waits as long as the supervisor sends it: only one
 * silent for the whole idle window (APEX_PLUGIN_COMMAND_IDLE_MS, 10 minutes; its event loop held,
 * frozen) or stopped (SIGSTOP, seen in ~2 s) is given up on, with what state the session may be in.
 * Before, the wait was a fixed 120 s: a slow hook that then completed was reported as failed
 * (APEX_E_TIMEOUT) although the pause or stop was done.
 */
import { ApexError, isApexError } from "../../core/errors.js";
import { idleWindowMs } from "../../core/rpc/protocol.js";
import type { SessionClient } from "../../core/session/client.js";
import { shortSessionId } from "../../core/session/names.js";
import { reportError } from "../output.js";

export type LifecycleAction = "pause" | "resume" | "stop";

const DOING: Record<LifecycleAction, string> = { pause: "pausing", resume: "resuming", stop: "stopping" };
/** What the supervisor is at meanwhile, for the notes on stderr. */
const WORK: Record<LifecycleAction, string> = {
  pause: "its plugins' onPause hooks run then: a checkpoint, a sync, a backup may take a while",
  resume: "its plugins' onResume hooks run then, which may take a while",
  stop: "it ends the agents, within the grace period, then its plugins' beforeStop and onStop hooks run: a checkpoint, a sync, a backup may take a while",
};

/** Where a call given up on may have left the session: the supervisor got the request, and carries it out if it goes on. */
const UNDER_WAY: Record<LifecycleAction, string> = {
  pause: "The pause may be half done: the agents may be stopped already while the session is still recorded active; it completes if the supervisor goes on.",
  resume: "The resume may be half done: the agents may run again, and the session be recorded active, while its plugins' onResume hooks still run; it completes if the supervisor goes on.",
  stop: "The stop may be half done: the agents may be ended, and the session recorded stopped, while the supervisor still runs its hooks; it exits once it goes on and is done.",
};

/** A wait this long (or the idle window, when shorter) is said on stderr, and again every NOTE_EVERY_MS. */
const NOTE_AFTER_MS = 10_000;
const NOTE_EVERY_MS = 30_000;

/** The silence after which `stop --force` gives up on the supervisor and kills it (its heartbeat comes every 1.25 s then). */
export const FORCE_IDLE_MS = 5_000;

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`;

/** Who is waited on, in the notes: through `apex serve`, the session's supervisor behind that server. */
export const supervisorOf = (client: SessionClient): string => (client.via === "remote" ? "the session's supervisor (through apex serve)" : "its supervisor");

/** What a silence means: locally a frozen supervisor; through `apex serve`, that or the server, or the network between. */
export const frozen = (client: SessionClient): string =>
  client.via === "remote" ? "it, the server or the network between is frozen or cut (a plugin hook that holds the supervisor, an overloaded machine)" : "it is frozen (a plugin hook that holds its process, an overloaded machine)";

/** How often the supervisor is asked for its heartbeat: a quarter of the idle window, at most 5 s (what a progress note tells from silence). */
export const heartbeatFor = (idleMs: number): number => Math.max(50, Math.min(5_000, Math.floor(idleMs / 4)));

/**
 * Notes on stderr while a long wait on the supervisor goes on (none with --json): after 10 s (or the
 * idle window), then every 30 s, whether it is at work (`heard` is called on each of its heartbeats)
 * or silent, and for how long the wait then goes on.
 */
export function progressNotes(doing: string, who: string, work: string, idleMs: number, quiet: boolean): { heard(): void; stop(): void } {
  const began = Date.now();
  let heard = began;
  let noted = 0;
  const timer = quiet
    ? undefined
    : setInterval(() => {
        const now = Date.now();
        if (now - began < Math.min(NOTE_AFTER_MS, idleMs) || (noted && now - noted < NOTE_EVERY_MS)) return;
        noted = now;
        const silent = now - heard;
        const state = silent <= 2 * heartbeatFor(idleMs) + 1000 ? `${who} is at work on it (${work}); waiting as long as it is` : `${who} has sent nothing for ${seconds(silent)}; the wait ends after ${seconds(idleMs)} of silence`;
        process.stderr.write(`Still ${doing} (${seconds(now - began)} so far): ${state}. Ctrl-C ends only the wait.\n`);
      }, 250);
  return { heard: () => void (heard = Date.now()), stop: () => clearInterval(timer) };
}

/** What a call waited on with the heartbeat says: in its notes, and when it is given up on. */
export interface HeartbeatWait {
  /** "claiming a task for coder": the notes say "Still claiming a task for coder". */
  doing: string;
  /** What the supervisor is at meanwhile (its hooks), for the notes. */
  work: string;
  /** Where a call given up on leaves what it asked, and how to see it. */
  underWay: string;
  /** Who sent nothing, in the error: "The supervisor (pid 123)". */
  subject: string;
  /** When, in the error: "while pausing the session". */
  during: string;
  hint: string;
  /** How to see where what was asked stands, in the error of a wait ended by Ctrl-C. */
  interruptedHint: string;
  /** The silence after which the wait is given up; the idle window (APEX_PLUGIN_COMMAND_IDLE_MS) unless said. */
  idleMs?: number;
  /** Added to the error's details (the method, the action). */
  details?: Record<string, unknown>;
}

/**
 * `method` on the supervisor (here, or through `apex serve`, whose server waits on the supervisor
 * and sends its heartbeat on: plugins/sharing/heartbeat-reply.ts), waited for as long as it sends
 * its heartbeat. Unless `json`, a long wait is said on stderr. A timeout is said with what it
 * leaves: the request was sent, and may be under way.
 */
export async function heartbeatCall(client: SessionClient, method: string, params: Record<string, unknown>, wait: HeartbeatWait, json: boolean): Promise<unknown> {
  const idleMs = wait.idleMs ?? idleWindowMs();
  const runtime = client.supervisor;
  const notes = progressNotes(wait.doing, runtime ? `its supervisor (pid ${runtime.pid})` : supervisorOf(client), wait.work, idleMs, json);
  // Ctrl-C ends the wait, not what the supervisor was sent: said (in JSON with --json), not a silent exit 130.
  const interrupted = () => {
    const error = new ApexError("APEX_E_INTERRUPTED", `Interrupted while ${wait.doing}: the supervisor got the request and goes on with it. ${wait.underWay}`, {
      hint: wait.interruptedHint,
      details: { ...wait.details, ...(runtime ? { pid: runtime.pid, session_id: runtime.session_id } : {}), may_be_under_way: true },
    });
    process.exit(reportError(error, json));
  };
  process.once("SIGINT", interrupted);
  try {
    return await client.call(method, { ...params, heartbeat_ms: heartbeatFor(idleMs) }, idleMs, () => notes.heard());
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_TIMEOUT") throw error;
    // Through `apex serve`, the server may give up first, after its own window.
    const idle = Number(error.details?.idle_ms) || idleMs;
    const details = { ...error.details, ...wait.details, ...(runtime ? { pid: runtime.pid, session_id: runtime.session_id } : {}), may_be_under_way: true };
    // Stopped (SIGSTOP, state T): the socket client's own error names the pid and `kill -CONT`.
    if (error.details?.stopped) throw new ApexError("APEX_E_TIMEOUT", `${error.message} ${wait.underWay}`, { ...(error.hint ? { hint: error.hint } : {}), details, cause: error });
    throw new ApexError("APEX_E_TIMEOUT", `${wait.subject} sent nothing, not even its heartbeat, for ${seconds(idle)} ${wait.during}: ${frozen(client)}, and the wait is given up. ${wait.underWay}`, {
      hint: wait.hint,
      details: { ...details, idle_ms: idle },
      cause: error,
    });
  } finally {
    notes.stop();
    process.off("SIGINT", interrupted);
  }
}

/** `session.<action>` on the supervisor, waited for as long as it shows it works on it (see above). */
export async function lifecycleCall(client: SessionClient, action: LifecycleAction, params: Record<string, unknown>, json: boolean): Promise<unknown> {
  const method = `session.${action}`;
  if (client.via === "store") return client.call(method, params, 120_000 + (Number(params.grace_ms) || 0));
  const runtime = client.supervisor;
  return heartbeatCall(client, method, params, {
    doing: `${DOING[action]} ${runtime ? `session ${runtime.name || shortSessionId(runtime.session_id)}` : "the session"}`,
    work: WORK[action],
    underWay: UNDER_WAY[action],
    subject: runtime ? `The supervisor of session ${runtime.name || shortSessionId(runtime.session_id)} (pid ${runtime.pid})` : `T${supervisorOf(client).slice(1)}`,
    during: `while ${DOING[action]} the session`,
    hint: `\`apex status\` shows where the session stands (a hook that blocks and then ends lets the ${action} complete); if the supervisor stays frozen, \`apex stop --force\` ends the session and its agents. A longer wait: APEX_PLUGIN_COMMAND_IDLE_MS (ms).`,
    interruptedHint: "`apex status` shows where the session stands.",
    // `stop --force` is the way out of a frozen supervisor: a few seconds of silence, and the offline stop kills it.
    // Through `apex serve`, the server does that and sends its heartbeat meanwhile; before it, its read of the grant
    // waits on that supervisor too (at most FORCE_IDLE_MS, plugins/sharing/server.ts supervisorReadMs): a window of
    // the same length ran out with the server's, and the client gave up as the server began the force.
    idleMs: action === "stop" && params.force === true ? Math.min(idleWindowMs(), FORCE_IDLE_MS) + (client.via === "remote" ? FORCE_IDLE_MS : 0) : undefined,
    details: { action },
  }, json);
}
