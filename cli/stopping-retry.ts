/**
 * A CLI write that meets a supervisor as it stops. `apex stop` ends with a drain: for up to
 * APEX_SHUTDOWN_GRACE_MS (5 s) the supervisor finishes the requests under way and answers every
 * new one APEX_E_SESSION_STOPPING, nothing of it done; its runtime file is gone by then, so a
 * command started after that goes to the store. One that read the runtime file just before (or
 * found the socket gone before it could send) was refused, exit 4, though a moment later the
 * store is free and the write would simply be made there. Such a write now waits for that
 * supervisor to exit (what is left of its drain, plus 10 s for the store to close and the process
 * to go), then
 * is made once more where a command goes then (`openSessionClient`: the store, or a supervisor
 * that `start --continue` started meanwhile). Not inside an agent (APEX_SOCKET: its own
 * supervisor stopping ends the agent too) and not for a remote session (its server answers).
 */
import type { ProjectLocation } from "../core/config/locate.js";
import { ApexError, isApexError } from "../core/errors.js";
import { openSessionClient, type OpenSessionOptions, type SessionClient } from "../core/session/client.js";
import { shortSessionId } from "../core/session/names.js";
import type { SupervisorRuntime } from "../core/session/runtime.js";

/**
 * How long a refused write waits for its supervisor to exit: what is left of its drain (the
 * refusal's `grace_left_ms`; else the grace APEX_SHUTDOWN_GRACE_MS here says, 5 s by default),
 * and 10 s more for its store to close and the process to exit.
 */
export function stoppingWaitMs(refusal: ApexError): number {
  const left = refusal.details?.grace_left_ms;
  const grace = Number(process.env.APEX_SHUTDOWN_GRACE_MS);
  return (typeof left === "number" && left >= 0 ? left : grace > 0 ? grace : 5_000) + 10_000;
}

/**
 * A client for a write (`openSessionClient(location, "write", options)`, then `ready` on it: a
 * check a direct write makes first) whose calls, refused by a supervisor that is stopping, are
 * made again once it has exited, on a client opened the same way. `json`: no notes on stderr.
 */
export async function openWriteClient(location: ProjectLocation, options: OpenSessionOptions = {}, ready?: (client: SessionClient) => Promise<void>, json = process.argv.includes("--json")): Promise<SessionClient> {
  const open = async (): Promise<SessionClient> => {
    const client = await openSessionClient(location, "write", options);
    if (!ready) return client;
    try {
      await ready(client);
    } catch (error) {
      await client.close();
      throw error;
    }
    return client;
  };
  return retriedAfterStop(await open(), open, json);
}

/** The supervisor that refused `error` because it is exiting, with nothing of the call done; undefined for any other failure. */
function refusedWhileExiting(client: SessionClient, error: unknown): SupervisorRuntime | undefined {
  if (process.env.APEX_SOCKET || process.env.APEX_REMOTE || client.via !== "socket" || !client.supervisor || !isApexError(error)) return undefined;
  // Its socket already gone, or not listening any more: the request was never sent.
  const unsent = error.code === "APEX_E_RPC" && ["ENOENT", "ECONNREFUSED"].includes(String(error.details?.connection));
  return error.code === "APEX_E_SESSION_STOPPING" || unsent ? client.supervisor : undefined;
}

/**
 * When `error` is `client`'s supervisor refusing a call as it stops (or its socket gone: nothing
 * was sent), waits for that supervisor to exit, saying so on stderr (not with `json`): the name of
 * its session once it has, the call to be made again where a command goes then; undefined for any
 * other error. Throws the refusal, its hint saying how long it waited, when it has not exited in
 * what is left of its drain plus 10 s; and APEX_E_SOCKET_GONE at once when the socket is gone from
 * under a supervisor that is not stopping (socket-gone.ts).
 */
export async function waitOutStop(client: SessionClient, error: unknown, json: boolean): Promise<string | undefined> {
  // Its socket gone while it runs, not stopping (deleted and not made again, or another file there): said at once, not waited for.
  const gone = (await import("./socket-gone.js")).goneSocketError(client, error);
  if (gone) throw gone;
  const supervisor = refusedWhileExiting(client, error);
  if (!supervisor) return undefined;
  const session = supervisor.name || shortSessionId(supervisor.session_id);
  const refused = error as ApexError;
  const waitMs = stoppingWaitMs(refused);
  const note = `note: session ${session} is stopping and its supervisor (pid ${supervisor.pid}) takes no new request: waiting up to ${Math.round(waitMs / 1000)} s for it to exit, then the command acts on the store.\n`;
  if (!(await waitedForExit(supervisor, waitMs, session, json ? "" : note))) {
    throw new ApexError(refused.code, refused.message, {
      hint: `Its supervisor (pid ${supervisor.pid}) was waited for ${Math.round(waitMs / 1000)} s and has not exited. Once it has (\`apex status\` says so), run the command again: it then acts on the store.`,
      details: { ...refused.details, waited_ms: waitMs, pid: supervisor.pid },
    });
  }
  return session;
}

/**
 * A write a command makes through its own path to the store (the checkpoint plugin's: a
 * supervisor when one runs, else the store in the command's process), refused by a supervisor as
 * it stopped and waited out (waitOutStop): the command makes it again, once, where it goes then.
 */
export class StopWaitedOut extends ApexError {
  constructor(
    readonly session: string,
    readonly refusal: ApexError,
  ) {
    // The refusal itself to anyone who does not make the write again (exit 4, as it was).
    super(refusal.code, refusal.message, { ...(refusal.hint ? { hint: refusal.hint } : {}), ...(refusal.details ? { details: refusal.details } : {}), cause: refusal });
  }
}

/**
 * Waits for the supervisor to exit (true when it has), `note` said on stderr first. Ctrl-C meanwhile says what is so: nothing
 * was done, as the supervisor refused the request. The command's own Ctrl-C handling (a call that
 * waits on hooks says the supervisor got the request and goes on with it) is set aside meanwhile.
 */
async function waitedForExit(supervisor: SupervisorRuntime, waitMs: number, session: string, note: string): Promise<boolean> {
  const json = note === "";
  const { waitForExit } = await import("./session/exit-wait.js");
  const { reportError } = await import("./output.js");
  const others = process.rawListeners("SIGINT");
  const interrupted = () => {
    const error = new ApexError("APEX_E_INTERRUPTED", `Interrupted while waiting for session ${session}'s supervisor (pid ${supervisor.pid}) to exit: nothing was done, as it refused the request while stopping.`, {
      hint: "Run the command again once the session has stopped (`apex status` says so): it then acts on the store.",
      details: { pid: supervisor.pid, session_id: supervisor.session_id, may_be_under_way: false },
    });
    process.exit(reportError(error, json));
  };
  process.removeAllListeners("SIGINT");
  process.on("SIGINT", interrupted);
  // Said once this Ctrl-C is in place: one sent on seeing it is this wait's.
  if (note) process.stderr.write(note);
  try {
    return await waitForExit(supervisor, waitMs);
  } finally {
    process.off("SIGINT", interrupted);
    for (const listener of others) process.on("SIGINT", listener as () => void); // (as they were: a once listener stays once)
  }
}

function retriedAfterStop(first: SessionClient, open: () => Promise<SessionClient>, json: boolean): SessionClient {
  let current = first;
  let retried = false;
  const note = (text: string) => void (json || process.stderr.write(`note: ${text}\n`));
  /** `attempt` on the current client; refused as its supervisor exits, once more on a new client when it has. */
  const retrying = async <T>(attempt: (client: SessionClient, again: boolean) => Promise<T>): Promise<T> => {
    try {
      return await attempt(current, false);
    } catch (error) {
      const session = retried ? undefined : await waitOutStop(current, error, json);
      if (!session) throw error;
      retried = true;
      await current.close();
      current = await open();
      const via = current.via === "socket" ? `sent to the supervisor that runs now (pid ${current.supervisor?.pid ?? "?"})` : "written to the store";
      try {
        const result = await attempt(current, true);
        note(`session ${session} was stopping; ${via} once it had stopped.`);
        return result;
      } catch (again) {
        note(`session ${session} was stopping; once it had stopped, the command was made again ${current.via === "socket" ? "through the supervisor that runs now" : "on the store"}:`);
        throw again;
      }
    }
  };
  // Made again on the store, a call asks for no heartbeat (hooked calls ask the supervisor for one).
  const paramsFor = (client: SessionClient, params: Record<string, unknown> | undefined, again: boolean) => {
    if (!again || client.via !== "store" || !params || !("heartbeat_ms" in params)) return params;
    const { heartbeat_ms: _heartbeat, ...rest } = params;
    return rest;
  };
  return {
    get via() {
      return current.via;
    },
    get empty() {
      return current.empty;
    },
    get supervisor() {
      return current.supervisor;
    },
    call: (method, params, timeoutMs, onEvent) => retrying((client, again) => client.call(method, paramsFor(client, params, again), timeoutMs, onEvent)),
    run: (method, params, here, timeoutMs) => retrying((client) => client.run(method, params, here, timeoutMs)),
    subscribe: (method, params, onEvent) => current.subscribe(method, params, onEvent),
    close: () => current.close(),
  };
}
