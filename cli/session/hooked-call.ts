/**
 * Task and milestone calls whose answer waits on plugin hooks in the supervisor: a claim runs the
 * beforeTask hooks before it assigns the task (and queues behind another claim's), a milestone
 * (`apex milestone`, or `task done` of a milestone task) runs afterMilestone, a failure onError. A
 * hook may take any time (a big checkpoint, a sync): the call asks for the RPC server's heartbeat
 * and waits as long as the supervisor sends it, as pause, resume and stop do (lifecycle-wait.ts);
 * only a supervisor silent for the whole idle window (APEX_PLUGIN_COMMAND_IDLE_MS) is given up on.
 * Before, the wait was a fixed 120 s: a claim whose hooks took longer was reported failed
 * (APEX_E_TIMEOUT), and the task was then claimed all the same, by no one who knew.
 */
import { ApexError, isApexError } from "../../core/errors.js";
import { idleWindowMs } from "../../core/rpc/protocol.js";
import type { SessionClient } from "../../core/session/client.js";
import { frozen, heartbeatFor, progressNotes, supervisorOf } from "./lifecycle-wait.js";

/** What a call waits on, and what a call given up on may have left. */
export interface HookedWait {
  /** "claiming a task for coder", said in the notes and the error. */
  doing: string;
  /** The hooks it waits on. */
  work: string;
  /** Where a call given up on leaves what it asked, and how to see it. */
  underWay: string;
}

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`;

/** `method` on the supervisor (here, or through `apex serve`), waited for as long as it sends its heartbeat; on the store, a plain call. */
export async function hookedCall(client: SessionClient, method: string, params: Record<string, unknown>, wait: HookedWait, json: boolean): Promise<unknown> {
  if (client.via === "store") return client.call(method, params);
  const idleWindow = idleWindowMs();
  const runtime = client.supervisor;
  const who = runtime ? `its supervisor (pid ${runtime.pid})` : supervisorOf(client);
  const notes = progressNotes(wait.doing, who, wait.work, idleWindow, json);
  try {
    return await client.call(method, { ...params, heartbeat_ms: heartbeatFor(idleWindow) }, idleWindow, () => notes.heard());
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_TIMEOUT") throw error;
    // Through `apex serve`, the server may give up first, after its own window.
    const idleMs = Number(error.details?.idle_ms) || idleWindow;
    const details = { ...error.details, method, ...(runtime ? { pid: runtime.pid, session_id: runtime.session_id } : {}), may_be_under_way: true };
    if (error.details?.stopped) throw new ApexError("APEX_E_TIMEOUT", `${error.message} ${wait.underWay}`, { ...(error.hint ? { hint: error.hint } : {}), details, cause: error });
    const pid = runtime ? ` (pid ${runtime.pid})` : client.via === "remote" ? " (through apex serve)" : "";
    throw new ApexError("APEX_E_TIMEOUT", `The supervisor${pid} sent nothing, not even its heartbeat, for ${seconds(idleMs)} while ${wait.doing}: ${frozen(client)}, and the wait is given up. ${wait.underWay}`, {
      hint: "`apex status` shows whether the supervisor is alive; if it stays frozen, `apex stop --force` ends the session and its agents. A longer wait: APEX_PLUGIN_COMMAND_IDLE_MS (ms).",
      details: { ...details, idle_ms: idleMs },
      cause: error,
    });
  } finally {
    notes.stop();
  }
}
