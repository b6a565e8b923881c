import { RpcServer } from "../../core/rpc/server.js";
import type { Store } from "../../core/store/store.js";

/**
 * Every method some writer of a session serves: a live supervisor's (core's session methods,
 * those only a supervisor has, the built-in plugins' grants) and the checkpoint plugin's
 * (checkpoint.*, branch and merge, langgraph.*). A session no writer serves (ended, or another
 * tree's) refuses a write as read-only (409), but a name none of them knows is unknown there as
 * anywhere (404). Built once, on that error path only: only the names are read, nothing is run.
 */
let known: Promise<ReadonlySet<string>> | undefined;

export function isKnownMethod(method: string): Promise<boolean> {
  known ??= (async () => {
    const [{ registerSupervisorMethods }, { SessionCheckpoints }] = await Promise.all([import("../../core/session/methods.js"), import("../checkpoint/plugin-service.js")]);
    // The methods are closures over the store, never called here: a store that is none will do.
    const store = {} as Store;
    const server = new RpcServer("");
    registerSupervisorMethods(server, { service: { store } } as never);
    return new Set([...server.methods(), ...Object.keys(new SessionCheckpoints(store).methods())]);
  })();
  return known.then((names) => names.has(method));
}
