import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { openStore, storeExists } from "../../core/store/open.js";
import { onOtherHost } from "../../core/session/lease.js";
import { remoteSessionError } from "./remote-error.js";
import type { SessionRecord } from "../../core/session/records.js";
import { socketPathFor } from "../../core/session/runtime.js";
import { currentSession, effectiveStatus, noSessionError, noSessionToActOn, supervisorAlive } from "../../core/session/sessions.js";

/**
 * A live supervisor on this host whose socket is not one this project directory's store would
 * have: it was started from another project directory (two installations sharing one database on
 * one machine, without an APEX_HOST each). Its pids are this machine's, but it answers only there:
 * neither "not running" nor "alive but does not answer" (whose hint, --force, would kill it).
 */
export function otherDirectoryError(session: SessionRecord, location: ProjectLocation, action: string): ApexError | undefined {
  const supervisor = session.supervisor;
  if (!supervisor?.socket || onOtherHost(supervisor) || !supervisorAlive(session)) return undefined;
  if ([socketPathFor(location.storeDir), socketPathFor(location.storeDir, session.session_id)].includes(supervisor.socket)) return undefined;
  return new ApexError("APEX_E_SESSION_REMOTE", `Cannot ${action} session ${session.session_id} from here: its supervisor (pid ${supervisor.pid}) runs from another project directory on this host, whose socket is ${supervisor.socket}.`, {
    hint: "Run the command in that project directory. Two installations sharing one database on one machine are two hosts: give each its own APEX_HOST.",
    details: { session_id: session.session_id, pid: supervisor.pid, socket: supervisor.socket },
  });
}

/** Why an action that needs the supervisor cannot run: no session, or an interrupted one. */
export async function explainNoSupervisor(location: ProjectLocation, action: string): Promise<ApexError> {
  if (!(await storeExists(location))) return noSessionError();
  const store = await openStore(location, { readOnly: true });
  try {
    const session = currentSession(store);
    if (!session) return noSessionToActOn(store, action);
    const status = effectiveStatus(session);
    if (status !== "interrupted" && onOtherHost(session.supervisor)) return remoteSessionError(session, action);
    const elsewhere = otherDirectoryError(session, location, action);
    if (elsewhere) return elsewhere;
    return new ApexError("APEX_E_SESSION_STATE", `Cannot ${action}: session ${session.session_id} is ${status} (its supervisor is not running).`, {
      hint: "`apex start --continue last` recovers it (the old agents are ended first); `apex stop` ends it.",
      details: { session_id: session.session_id, status },
    });
  } finally {
    await store.close();
  }
}
