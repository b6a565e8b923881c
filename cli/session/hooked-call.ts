/**
 * Task and milestone calls whose answer waits on plugin hooks in the supervisor: a claim runs the
 * beforeTask hooks before it assigns the task (and queues behind another claim's), a milestone
 * (`apex milestone`, or `task done` of a milestone task) runs afterMilestone, a failure onError. A
 * hook may take any time (a big checkpoint, a sync): the call asks for the RPC server's heartbeat
 * and waits as long as the supervisor sends it, as pause, resume and stop do (lifecycle-wait.ts);
 * only a supervisor silent for the whole idle window (APEX_PLUGIN_COMMAND_IDLE_MS) is given up on.
 * Before, the wait was a fixed 120 s: a claim whose hooks took longer was reported failed
 * (APEX_E_TIMEOUT), and the task was then claimed all the same, by no one who knew. Ctrl-C ends
 * only the wait, and says so (APEX_E_INTERRUPTED, with what may still happen): it was a silent 130.
 */
import type { SessionClient } from "../../core/session/client.js";
import { heartbeatCall } from "./lifecycle-wait.js";

/** What a call waits on, and what a call given up on may have left. */
export interface HookedWait {
  /** "claiming a task for coder", said in the notes and the error. */
  doing: string;
  /** The hooks it waits on. */
  work: string;
  /** Where a call given up on leaves what it asked, and how to see it. */
  underWay: string;
}

/** `method` on the supervisor (here, or through `apex serve`), waited for as long as it sends its heartbeat; on the store, a plain call. */
export async function hookedCall(client: SessionClient, method: string, params: Record<string, unknown>, wait: HookedWait, json: boolean): Promise<unknown> {
  if (client.via === "store") return client.call(method, params);
  const runtime = client.supervisor;
  const pid = runtime ? ` (pid ${runtime.pid})` : client.via === "remote" ? " (through apex serve)" : "";
  return heartbeatCall(client, method, params, {
    ...wait,
    subject: `The supervisor${pid}`,
    during: `while ${wait.doing}`,
    hint: "`apex status` shows whether the supervisor is alive; if it stays frozen, `apex stop --force` ends the session and its agents. A longer wait: APEX_PLUGIN_COMMAND_IDLE_MS (ms).",
    interruptedHint: "`apex status` shows whether the supervisor is alive.",
    details: { method },
  }, json);
}
