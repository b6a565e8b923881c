import type { CommandContext, GitContext } from "../../core/engine.js";
import { openStore, storeExists } from "../../core/store/open.js";

export interface FireResult {
  /** The session beforeGit fired in; null when no session is active (nothing fired). */
  session_id: string | null;
  fired: boolean;
  args: string[];
  source: GitContext["source"];
}

const ENDED = new Set(["completed", "failed", "stopped"]);

/**
 * Fires beforeGit in the project's current session (the session record at /sessions/<id>, found
 * through /sessions/current). Without a store or an active session it fires nothing: git runs
 * outside sessions too. Runs where the command runs: in the CLI, or in the supervisor when the
 * CLI forwards the command there, always through the command's store and engine.
 */
export async function fireBeforeGit(context: CommandContext, args: string[], source: GitContext["source"]): Promise<FireResult> {
  const result: FireResult = { session_id: null, fired: false, args, source };
  // Opening the store for writing would create it: a project that never ran APEX has no session.
  if (context.engine.store === undefined && context.config && !(await storeExists(context.config))) return result;
  const store = await context.store();
  const current = store.get("/sessions/current") as { session_id?: unknown } | null | undefined;
  const sessionId = current && typeof current === "object" && typeof current.session_id === "string" ? current.session_id : undefined;
  if (!sessionId) return result;
  const session = store.get(`/sessions/${sessionId}`);
  if (session === null || typeof session !== "object" || Array.isArray(session)) return result;
  if (typeof session.status === "string" && ENDED.has(session.status)) return result;
  result.session_id = sessionId;
  await context.engine.fire("beforeGit", { sessionId, session, args: [...args], source });
  result.fired = true;
  return result;
}
