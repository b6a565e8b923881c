import type { CommandContext, GitContext } from "../../core/engine.js";
import { createSessionEngine } from "../../core/session/hooks.js";
import { sessionBinding } from "../../core/session/sessions.js";

export interface FireResult {
  /** The session beforeGit fired in; null when no session is bound (nothing fired). */
  session_id: string | null;
  fired: boolean;
  args: string[];
  source: GitContext["source"];
}

const ENDED = new Set(["completed", "failed", "stopped"]);

/**
 * Fires beforeGit in the session bound to the git operation (core/session/binding.ts): the
 * agent's (APEX_SESSION_ID), `--session`, else the session of the working tree git runs in (a
 * branch's worktree, or the project's own, where /sessions/current names it; git hooks pass
 * their tree as APEX_WORKTREE). Never in a session of another tree just because it is the only
 * one active, nor when several are and nothing says which: git changes one working tree.
 * Without a store or such a session it fires nothing: git runs outside sessions too. Runs where
 * the command runs: in the CLI, or in the bound session's supervisor when the CLI forwards the
 * command there, always through the command's store and engine.
 */
export async function fireBeforeGit(context: CommandContext, args: string[], source: GitContext["source"]): Promise<FireResult> {
  const result: FireResult = { session_id: null, fired: false, args, source };
  // Opening the store for writing would create it: a project that never ran APEX has no session.
  if (!(await context.storeExists())) return result;
  const store = await context.store();
  let binding;
  try {
    binding = sessionBinding(store);
  } catch (error) {
    if ((error as { code?: unknown }).code === "APEX_E_AMBIGUOUS_SESSION") return result;
    throw error;
  }
  if (!binding || binding.source === "only-active") return result;
  const sessionId = binding.sessionId;
  const session = store.get(`/sessions/${sessionId}`);
  if (session === null || typeof session !== "object" || Array.isArray(session)) return result;
  if (typeof session.status === "string" && ENDED.has(session.status)) return result;
  result.session_id = sessionId;
  // Run in the CLI (the session's supervisor is not running: interrupted, a branch not continued), the
  // command's engine has no store, so its plugins tapped nothing: an engine bound to the store fires it,
  // as the CLI's other writes to such a session do (a beforeGit checkpoint and the audit event were not written).
  const engine = context.engine.store === store || !context.config ? context.engine : await createSessionEngine(context.config, store, (message) => process.stderr.write(`warning: ${message}\n`));
  await engine.fire("beforeGit", { sessionId, session, args: [...args], source });
  result.fired = true;
  return result;
}
