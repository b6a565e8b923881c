import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { openStore, storeExists } from "../../core/store/open.js";
import { onOtherHost, remoteSessionError } from "../../core/session/lease.js";
import { currentSession, effectiveStatus, noSessionError } from "../../core/session/sessions.js";

/** Why an action that needs the supervisor cannot run: no session, or an interrupted one. */
export async function explainNoSupervisor(location: ProjectLocation, action: string): Promise<ApexError> {
  if (!(await storeExists(location))) return noSessionError();
  const store = await openStore(location, { readOnly: true });
  try {
    const session = currentSession(store);
    if (!session) return noSessionError();
    const status = effectiveStatus(session);
    if (status !== "interrupted" && onOtherHost(session.supervisor)) return remoteSessionError(session, action);
    return new ApexError("APEX_E_SESSION_STATE", `Cannot ${action}: session ${session.session_id} is ${status} (its supervisor is not running).`, {
      hint: "`apex start --continue last` recovers it (the old agents are ended first); `apex stop` ends it.",
      details: { session_id: session.session_id, status },
    });
  } finally {
    await store.close();
  }
}
