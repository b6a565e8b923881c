import type { ProjectLocation } from "../config/locate.js";
import { ApexError } from "../errors.js";
import { type Store } from "../store/store.js";
import { openStore, storeExists } from "../store/open.js";
import { checkpointServiceFor } from "./checkpoints.js";
import type { SessionClient } from "./client.js";
import { sessionMethods } from "./methods.js";
import { SessionService } from "./service.js";
import { currentSession, noSessionError, readableSessionId, resolveSessionId } from "./sessions.js";

/**
 * The session methods run in this process on the store: reads on a read-only store; writes
 * (only when no supervisor runs) on a writable one, with the project's plugins loaded so that
 * hooks fire as they would in the supervisor.
 */
export async function directClient(location: ProjectLocation, access: "read" | "write", session?: string): Promise<SessionClient> {
  if (!(await storeExists(location))) throw noSessionError();
  if (access === "read") {
    const store = await openStore(location, { readOnly: true });
    try {
      // Reads also work once the session ended: the latest one, or the one --session names.
      const service = new SessionService(store, readableSessionId(store, session), { fire: async () => {} });
      return clientOver(service, store);
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  const { loadConfig } = await import("../config/load.js");
  const { createSessionEngine } = await import("./hooks.js");
  const config = await loadConfig(location);
  const store = await openStore(location);
  try {
    // A write names a session only to reach its records (`apex session share ENDED-SESSION`).
    const sessionId = session !== undefined ? resolveSessionId(store, session) : requireSessionId(store);
    const engine = await createSessionEngine(config, store, (message) => process.stderr.write(`warning: ${message}\n`));
    return clientOver(new SessionService(store, sessionId, engine), store);
  } catch (error) {
    await store.close();
    throw error;
  }
}

function requireSessionId(store: Store): string {
  const session = currentSession(store);
  if (!session) throw noSessionError();
  return session.session_id;
}

function clientOver(service: SessionService, store: Store): SessionClient {
  // With plugins loaded (write access), the checkpoint service's methods too (checkpoint.*, langgraph.*), as the supervisor serves them.
  const methods = { ...(checkpointServiceFor(store)?.methods ?? {}), ...sessionMethods(service) };
  return {
    via: "store",
    async call(method, params = {}) {
      const fn = methods[method];
      if (!fn) {
        throw new ApexError("APEX_E_SESSION_STATE", `${method} needs the session's supervisor, which is not running.`, {
          hint: "See `apex status`; `apex start --continue last` brings an interrupted session back.",
        });
      }
      return fn(params);
    },
    close: () => store.close(),
  };
}
