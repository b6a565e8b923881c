import type { ProjectLocation } from "../../config/locate.js";
import { ApexError } from "../../errors.js";
import { Store } from "../../store/store.js";
import { currentSession, effectiveStatus, noSessionError } from "../sessions.js";

/** Why an action that needs the supervisor cannot run: no session, or an interrupted one. */
export async function explainNoSupervisor(location: ProjectLocation, action: string): Promise<ApexError> {
  if (!Store.exists(location.storeDir)) return noSessionError();
  const store = Store.open(location.storeDir, { readOnly: true });
  try {
    const session = currentSession(store);
    if (!session) return noSessionError();
    const status = effectiveStatus(session);
    return new ApexError("APEX_E_SESSION_STATE", `Cannot ${action}: session ${session.session_id} is ${status} (its supervisor is not running).`, {
      hint: "`apex start --continue last` recovers it (the old agents are ended first); `apex stop` ends it.",
      details: { session_id: session.session_id, status },
    });
  } finally {
    await store.close();
  }
}
