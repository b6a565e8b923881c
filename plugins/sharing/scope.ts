import { ApexError } from "../../core/errors.js";

/**
 * A grant is for one session: whatever a remote caller sends, a call reads and acts on the
 * session in the URL, and never shows another session's records. Calls are pinned to that
 * session (`session`, `session_id`), and what comes back is checked: checkpoints of another
 * session (named by `OTHER/checkpoint-001` or by id) are not found, and memory paths under
 * another session's records, or any session's grants, are left out.
 */
export function pinnedParams(sessionId: string, params: Record<string, unknown>): Record<string, unknown> {
  return {
    ...params,
    session: sessionId,
    ...("session_id" in params ? { session_id: sessionId } : {}),
    // A merge through the server lands in the grant's session, whatever the body says.
    ...("destination" in params ? { destination: sessionId } : {}),
    // A forwarded plugin command's --session option too.
    ...(params.options && typeof params.options === "object" && !Array.isArray(params.options) ? { options: { ...(params.options as object), session: sessionId } } : {}),
  };
}

/** True for a memory path a caller of `sessionId` may see. */
export function visiblePath(sessionId: string, path: string): boolean {
  const parts = path.split("/");
  if (parts[1] !== "sessions" || parts.length < 3) return true;
  const owner = parts[2] === "history" ? parts[3] : parts[2];
  if (owner === undefined || owner === "current" || (owner === "active" && parts.length === 3)) return true;
  if (owner !== sessionId) return false;
  const rest = parts[2] === "history" ? parts.slice(4) : parts.slice(3);
  return rest[0] !== "grants";
}

/** /sessions/active as a caller of `sessionId` sees it: that session's entry only (the others name other sessions). */
function ownActiveEntry(sessionId: string, value: unknown): unknown {
  if (!value || typeof value !== "object" || Array.isArray(value)) return value;
  const own = (value as Record<string, unknown>)[sessionId];
  return own === undefined ? {} : { [sessionId]: own };
}

export function scopedResult(sessionId: string, method: string, params: Record<string, unknown>, result: unknown): unknown {
  switch (method) {
    case "memory.get":
      return params.path === "/sessions/active" ? ownActiveEntry(sessionId, result) : result;
    case "memory.query":
      return Array.isArray(result)
        ? result
            .filter((entry: { path?: unknown }) => typeof entry?.path === "string" && visiblePath(sessionId, entry.path))
            .map((entry: { path: string; value?: unknown }) => (entry.path === "/sessions/active" ? { ...entry, value: ownActiveEntry(sessionId, entry.value) } : entry))
        : result;
    case "memory.changes": {
      const reply = result as { changes?: Array<{ path?: unknown }> } | undefined;
      if (!reply || !Array.isArray(reply.changes)) return result;
      return { ...reply, changes: reply.changes.filter((change) => typeof change.path === "string" && visiblePath(sessionId, change.path)) };
    }
    case "checkpoint.show": {
      const owner = (result as { manifest?: { session_id?: unknown } } | undefined)?.manifest?.session_id;
      if (owner !== undefined && owner !== sessionId) throw foreignCheckpoint(String(params.ref));
      return result;
    }
    case "checkpoint.diff": {
      const diff = result as { from?: { sessionId?: unknown }; to?: { sessionId?: unknown } } | undefined;
      for (const [side, ref] of [[diff?.from, params.from], [diff?.to, params.to]] as const) {
        if (side?.sessionId !== undefined && side.sessionId !== sessionId) throw foreignCheckpoint(String(ref));
      }
      return result;
    }
    default:
      return result;
  }
}

/** memory.get of a path the caller may not see: answered as if nothing were stored there, without asking. */
export function hiddenRead(sessionId: string, method: string, params: Record<string, unknown>): boolean {
  return method === "memory.get" && typeof params.path === "string" && !visiblePath(sessionId, params.path);
}

function foreignCheckpoint(ref: string): ApexError {
  return new ApexError("APEX_E_CHECKPOINT_NOT_FOUND", `No checkpoint ${JSON.stringify(ref)} in this session.`, { hint: "`apex checkpoint list` shows the session's checkpoints." });
}
