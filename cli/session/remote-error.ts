import { ApexError } from "../../core/errors.js";
import { supervisorHost } from "../../core/session/lease.js";
import type { SessionRecord } from "../../core/session/records.js";

/**
 * The refusal of a command that would signal the processes of a session whose supervisor runs
 * on another host (pause, resume, stop), or write beside its supervisor (a merge into it): this
 * host cannot reach that host's pids. `command`: what to run there (default `action`).
 */
export function remoteSessionError(record: SessionRecord, action: string, command = action): ApexError {
  const host = supervisorHost(record.supervisor);
  return new ApexError("APEX_E_SESSION_REMOTE", `Cannot ${action} session ${record.session_id} from here: it runs on host ${host} (supervisor pid ${record.supervisor?.pid}, lease until ${record.supervisor?.lease_expires_at}).`, {
    hint: `Run the command on ${host}, or through its server (\`apex --remote HOST/SESSION ${command}\` with \`apex serve\` running there).`,
    details: { session_id: record.session_id, host, lease_expires_at: record.supervisor?.lease_expires_at ?? null },
  });
}
