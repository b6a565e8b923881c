import { ApexError } from "../../core/errors.js";
import type { SessionClient, SessionTransport } from "../../core/session/client.js";
import { remoteHint } from "../../cli/remote-commands.js";
import { callRemote, subscribeRemote } from "./http-client.js";
import { parseRemote, remoteEndpoint } from "./remote.js";
import { checkedReply } from "./reply-shapes.js";

/**
 * The remote transport (registered as `http` in plugins/index.ts): a session on another host,
 * reached through `apex serve`'s HTTP(S) API with the same methods and params as the control
 * socket. `target` is what `apex --remote` and `apex connect` take (HOST[:PORT]/SESSION, …).
 * The commands an error's hint names carry `--remote TARGET` (remoteHint), here once for every
 * call and stream: as the server wrote them, they named this machine's project
 * (`It is already running: \`apex status\``).
 */
export const httpTransport: SessionTransport = {
  connect(target: string): SessionClient {
    const endpoint = remoteEndpoint(parseRemote(target));
    const remote = (error: unknown): never => {
      if (!(error instanceof ApexError) || !error.hint) throw error;
      const hint = remoteHint(error.hint, target);
      if (hint === error.hint) throw error;
      throw new ApexError(error.code, error.message, { hint, ...(error.details ? { details: error.details } : {}), ...(error.cause === undefined ? {} : { cause: error.cause }) });
    };
    // A reply is checked for the shape the command's printer reads before the command sees it (reply-shapes.ts).
    const call = (method: string, params: Record<string, unknown> = {}, timeoutMs = 120_000, onEvent?: (event: unknown) => void) =>
      callRemote(endpoint, method, params, timeoutMs, onEvent).then((result) => checkedReply(new URL(endpoint).origin, method, result), remote);
    return {
      via: "remote",
      call,
      run: async (method, params, _here, timeoutMs) => (await call(method, params, timeoutMs)) as never,
      subscribe: (method, params, onEvent) => {
        const subscription = subscribeRemote(endpoint, method, params, onEvent);
        return { ...subscription, done: subscription.done.catch(remote), close: () => subscription.close() };
      },
      empty: false,
      close: async () => {},
    };
  },
};
