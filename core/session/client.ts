import { currentActor } from "../actor.js";

export { currentActor };
import type { ProjectLocation } from "../config/locate.js";
import { callSupervisor } from "../rpc/call.js";
import { forcedEndpoint, liveSupervisor } from "./runtime.js";

/**
 * How CLI commands reach a session:
 *  - a remote session (`apex --remote`, APEX_REMOTE): always `apex serve` over HTTP(S);
 *  - inside an agent (APEX_SOCKET set): always the supervisor's socket; the agent's process
 *    group never opens LMDB, so a SIGSTOPped agent can never hold the store's lock;
 *  - writes from anyone else: the socket while a supervisor is alive (it is the one writer),
 *    else the store directly, with the same code the supervisor would run;
 *  - reads from anyone else: the store, read-only.
 */
export interface SessionClient {
  /** The same method names and params as the control socket. */
  call(method: string, params?: Record<string, unknown>): Promise<unknown>;
  close(): Promise<void>;
  readonly via: "socket" | "store";
}

/** `session`: for reads, the session `--session` names (else the current one, or the one that ended last). */
export async function openSessionClient(location: ProjectLocation, access: "read" | "write", session?: string): Promise<SessionClient> {
  const endpoint = forcedEndpoint();
  if (endpoint) return socketClient(endpoint);
  if (access === "write") {
    const runtime = liveSupervisor(location.storeDir);
    if (runtime) return socketClient(runtime.socket);
  }
  const { directClient } = await import("./direct.js");
  return directClient(location, access, session);
}

function socketClient(socket: string): SessionClient {
  return {
    via: "socket",
    call: (method, params = {}) => callSupervisor(socket, method, params, 120_000),
    close: async () => {},
  };
}

