/**
 * `session.auto_recovery`: an interrupted session (its supervisor died: kill -9, OOM, power
 * loss) is continued from the live store by the next `apex start`, whatever its form, and by
 * `apex resume`, with a notice. `apex status` only reports it: reading never starts anything.
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { paint } from "../output.js";
import { shortSessionId } from "../../core/session/names.js";

/**
 * The current session when it is interrupted and the config asks for auto recovery; else
 * undefined. `label`: how text names it, as session list does (its name, else its uuid's short form).
 */
export async function findAutoRecoverable(location: ProjectLocation): Promise<{ sessionId: string; label: string } | undefined> {
  if (process.env.APEX_SOCKET) return undefined; // inside an agent: its supervisor is alive
  const { openStore, storeExists } = await import("../../core/store/open.js");
  if (!(await storeExists(location))) return undefined;
  const { currentSession, effectiveStatus } = await import("../../core/session/sessions.js");
  let sessionId: string | undefined;
  let label = "";
  const store = await openStore(location, { readOnly: true });
  try {
    const session = currentSession(store);
    if (session && effectiveStatus(session) === "interrupted") {
      sessionId = session.session_id;
      label = typeof session.name === "string" && session.name ? session.name : shortSessionId(sessionId);
    }
  } finally {
    await store.close();
  }
  if (!sessionId) return undefined;
  const { loadConfig } = await import("../../core/config/load.js");
  const config = await loadConfig(location);
  return config.session.auto_recovery ? { sessionId, label } : undefined;
}

/** The notice (on stderr) that auto_recovery continued a session. */
export function autoRecoveryNotice(session: { sessionId: string; label: string }, json: boolean): void {
  if (json) {
    process.stderr.write(`${JSON.stringify({ notice: { auto_recovery: true, session_id: session.sessionId, from: "live" } })}\n`);
    return;
  }
  process.stderr.write(
    `${paint("notice:", "yellow", process.stderr)} session ${session.label} was interrupted; auto_recovery continues it from the live state (memory as it is, every acknowledged write kept). Turn this off with session.auto_recovery: false.\n`,
  );
}
