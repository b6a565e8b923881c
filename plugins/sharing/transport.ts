import type { SessionClient, SessionTransport } from "../../core/session/client.js";
import { callRemote, subscribeRemote } from "./http-client.js";
import { parseRemote, remoteEndpoint } from "./remote.js";

/**
 * The remote transport (registered as `http` in plugins/index.ts): a session on another host,
 * reached through `apex serve`'s HTTP(S) API with the same methods and params as the control
 * socket. `target` is what `apex --remote` and `apex connect` take (HOST[:PORT]/SESSION, …).
 */
export const httpTransport: SessionTransport = {
  connect(target: string): SessionClient {
    const endpoint = remoteEndpoint(parseRemote(target));
    const call = (method: string, params: Record<string, unknown> = {}, timeoutMs = 120_000, onEvent?: (event: unknown) => void) => callRemote(endpoint, method, params, timeoutMs, onEvent);
    return {
      via: "remote",
      call,
      run: async (method, params, _here, timeoutMs) => (await call(method, params, timeoutMs)) as never,
      subscribe: (method, params, onEvent) => subscribeRemote(endpoint, method, params, onEvent),
      empty: false,
      close: async () => {},
    };
  },
};
