/**
 * The words `--session` takes besides an id, a prefix or a name, read the same way for every
 * command (main.ts resolves them before the command runs, so each command, its plugin's too,
 * sees a session id): `last`, the session the command would act on without `--session` (the
 * agent's own, the worktree's, the project's, the only one active), else the one that ended
 * last, as `start --continue last` and `session history last` read it; `current`, that session
 * only while it has not ended. Neither can be a session's name (plugins/checkpoint/session-name.ts).
 */
import { ApexError } from "../core/errors.js";

export const SESSION_WORDS: ReadonlySet<string> = new Set(["last", "current"]);

/**
 * The session id `word` stands for. Any other value not a whole uuid is read by core's resolveSessionId too (a prefix,
 * a name: the whole id), so that every command, whether it finds its session by the runtime files or in the store,
 * takes the same references: a prefix of several sessions is APEX_E_AMBIGUOUS for all. One the store does not name
 * (or cannot be read for) is returned as given, for the command to look it up among its own (logs, checkpoints).
 */
export async function resolveSessionWord(word: string, args: string[]): Promise<string> {
  if (!SESSION_WORDS.has(word)) return wholeSessionId(word, args);
  const { agentSession, setSessionFlag } = await import("../core/session/binding.js");
  // Inside an agent: its own session, the one it runs in (its commands never open the store).
  const own = agentSession();
  if (own) return own;
  const [{ locateProject }, { openStore, storeExists }, sessions] = await Promise.all([
    import("../core/config/locate.js"),
    import("../core/store/open.js"),
    import("../core/session/sessions.js"),
  ]);
  const location = locateProject({ configFlag: configFlagOf(args) });
  if (!(await storeExists(location))) throw noSession(word);
  const store = await openStore(location, { readOnly: true });
  setSessionFlag(undefined); // what the command would act on without the flag
  try {
    if (word === "current") return sessions.currentSession(store)?.session_id ?? throwError(noSession(word));
    return sessions.readableSessionId(store);
  } catch (error) {
    throw (error as ApexError).code === "APEX_E_NO_SESSION" ? noSession(word) : error;
  } finally {
    await store.close();
  }
}

export async function wholeSessionId(ref: string, args: string[]): Promise<string> {
  const [{ agentSession }, { UUID_PATTERN }] = await Promise.all([import("../core/session/binding.js"), import("../core/session/names.js")]);
  // Inside an agent its own session is meant (and its store URL has no password): --session may name only that one.
  const own = agentSession();
  if (own) return agentsOwnSession(ref, own, args);
  // A whole uuid in capitals is looked up (uuids are read whatever their case): given as it is, it named no session.
  if (process.env.APEX_SOCKET || (UUID_PATTERN.test(ref) && ref === ref.toLowerCase())) return ref;
  const [{ locateProject }, { openStore, storeExists }, { resolveSessionId }] = await Promise.all([import("../core/config/locate.js"), import("../core/store/open.js"), import("../core/session/sessions.js")]);
  try {
    const location = locateProject({ configFlag: configFlagOf(args) });
    if (!(await storeExists(location))) return ref;
    const store = await openStore(location, { readOnly: true });
    try {
      return resolveSessionId(store, ref);
    } finally {
      await store.close();
    }
  } catch (error) {
    if ((error as ApexError).code === "APEX_E_AMBIGUOUS") throw error;
    // A store that could not be read just now: a whole uuid still names one session whatever its case
    // (`--session 3f2a… --session=3F2A…` was "two sessions" when the second lookup failed).
    return UUID_PATTERN.test(ref) ? ref.toLowerCase() : ref;
  }
}

/**
 * `--session REF` inside an agent. An agent's commands act on its own session whatever else is named (binding.ts:
 * the agent's session comes first); a --session naming another one was read by some commands (`checkpoint list`,
 * `logs`, `session history`) and passed over by the others (`status`, `task list`, `agent list`, `memory`), which
 * answered for the agent's own session as if it were the one named. Now REF is read as everywhere (id, name, unique
 * prefix: the sessions as the agent's supervisor lists them), and one naming another session is refused
 * (APEX_E_USAGE, exit 2, before anything runs), as `--remote` refuses a --session naming another than its own.
 */
async function agentsOwnSession(ref: string, own: string, args: string[]): Promise<string> {
  if (ref === own) return own;
  const [{ locateProject }, { openSessionClient }, { pickSession }, { idOfName, shortSessionId }] = await Promise.all([
    import("../core/config/locate.js"),
    import("../core/session/client.js"),
    import("../core/session/sessions.js"),
    import("../core/session/names.js"),
  ]);
  let records: Array<{ session_id: string; name?: unknown }> | undefined;
  try {
    const client = await openSessionClient(locateProject({ configFlag: configFlagOf(args) }), "read", { records: true });
    try {
      records = (await client.call("session.list")) as Array<{ session_id: string; name?: unknown }>;
    } finally {
      await client.close();
    }
  } catch {
    records = undefined; // the supervisor does not answer: the agent's own id is all there is to go by
  }
  const named = records
    ? pickSession(ref.trim(), records.map((record) => record.session_id), () => idOfName(records!.map((record) => [record.name, record.session_id]), ref.trim()))
    : ref.trim().length >= 4 && own.startsWith(ref.trim().toLowerCase()) ? own : ref;
  if (named === own) return own;
  const label = (id: string) => {
    const name = records?.find((record) => record.session_id === id)?.name;
    return typeof name === "string" ? name : shortSessionId(id);
  };
  throw new ApexError("APEX_E_USAGE", `--session ${ref} does not work inside an agent: its commands act on the agent's own session, ${label(own)} (APEX_SESSION_ID), and --session names ${named === ref && !records ? ref : `another, ${label(named)}`}.`, {
    hint: "Leave --session out, or name the agent's own session. Commands that take a session as an argument read the one named there (`apex session history ID`, `apex checkpoint show ID/latest`).",
    details: { session_id: own, named: named },
  });
}

/**
 * `--session` with `--remote HOST/SESSION`: each value read as a local command reads it (an id, a unique id
 * prefix of at least 4 characters, a branch's name; `last` and `current` stand for the remote session, the only
 * one a remote command acts on), among the sessions the grant sees (`session list` through it: the session and
 * its ancestry). A prefix of several is APEX_E_AMBIGUOUS and one that names none APEX_E_NO_SESSION, as locally;
 * one naming another session than the remote one is refused (APEX_E_USAGE). Returns the remote session's whole id.
 */
export async function remoteSessionFlag(target: string, values: string[]): Promise<string> {
  const [{ remoteSessionClient }, { pickSession }, { idOfName }, { parseRemote }] = await Promise.all([
    import("../core/session/client.js"),
    import("../core/session/sessions.js"),
    import("../core/session/names.js"),
    import("../plugins/sharing/remote.js"),
  ]);
  // The session as --remote names it: nothing to ask the server.
  const named = parseRemote(target).sessionId;
  if (values.every((value) => value === named)) return named;
  const client = remoteSessionClient(target)!;
  try {
    const own = ((await client.call("whoami", {}, 30_000)) as { session_id: string }).session_id;
    let records: Array<{ session_id: string; name?: unknown }> | undefined;
    for (const value of values) {
      if (value === own || SESSION_WORDS.has(value)) continue;
      records ??= (await client.call("session.list", {}, 30_000)) as Array<{ session_id: string; name?: unknown }>;
      const list = records;
      let picked: string;
      try {
        picked = pickSession(value.trim(), list.map((record) => record.session_id), () => idOfName(list.map((record) => [record.name, record.session_id]), value.trim()));
      } catch (error) {
        // The same error as locally, about the sessions the grant sees, with the remote command that lists them.
        if (!(error instanceof ApexError)) throw error;
        const listed = `\`apex --remote ${target} session list\``;
        const message = error.code === "APEX_E_NO_SESSION" ? `No session ${JSON.stringify(value.trim())} among those the grant of ${target} sees.` : error.message;
        throw new ApexError(error.code, message, { hint: (error.hint ?? "").replace(/`apex session list`/g, listed), ...(error.details ? { details: error.details } : {}) });
      }
      if (picked === own) continue;
      throw new ApexError("APEX_E_USAGE", `--session ${value} does not work with --remote: it names session ${picked}, and a remote command acts on the session in ${target} (${own}).`, {
        hint: "Leave --session out, or name that session in --remote HOST/SESSION (with a token of it).",
        details: { session_id: own, named: picked },
      });
    }
    return own;
  } finally {
    await client.close();
  }
}

function noSession(word: string): ApexError {
  return word === "current"
    ? new ApexError("APEX_E_NO_SESSION", "--session current: no session is running in this project.", { hint: "`--session last` names the one that ended last; `apex session list` shows them all." })
    : new ApexError("APEX_E_NO_SESSION", "--session last: this project has no session yet.", { hint: 'Start one with `apex start --task "…"`.' });
}

/**
 * The session a command's optional ID argument names (`apex session history ID`, `apex session
 * report [ID]`), read as `--session` is: no ID, `last` or `current` is the session the command
 * is bound to (an agent's own, `--session`'s, the git worktree's, the project's; binding.ts),
 * not the one /sessions/current names for the project's own working tree. An id, a prefix or a
 * name is returned as given; so is a word when the project has no session (the command says so).
 */
export async function boundSessionRef(ref: string | undefined): Promise<string | undefined> {
  if (ref !== undefined && !SESSION_WORDS.has(ref)) return ref;
  const { agentSession, sessionFlag } = await import("../core/session/binding.js");
  // The agent's own session; else `--session`, which main.ts resolved.
  const bound = agentSession() ?? sessionFlag();
  if (bound !== undefined) return bound;
  // A remote command's session is the one --remote HOST/SESSION names.
  if (process.env.APEX_REMOTE) return (await import("../plugins/sharing/remote.js")).parseRemote(process.env.APEX_REMOTE).sessionId;
  const [{ locateProject }, { openStore, storeExists }, { resolveSessionId }] = await Promise.all([import("../core/config/locate.js"), import("../core/store/open.js"), import("../core/session/sessions.js")]);
  const location = locateProject({ configFlag: configFlagOf(process.argv.slice(2)) });
  if (!(await storeExists(location))) return ref;
  const store = await openStore(location, { readOnly: true });
  try {
    return resolveSessionId(store, ref ?? "last");
  } catch (error) {
    if ((error as ApexError).code === "APEX_E_NO_SESSION" && ref !== "current") return ref;
    throw error;
  } finally {
    await store.close();
  }
}

function throwError(error: ApexError): never {
  throw error;
}

/** `--config PATH` or `--config=PATH`, read before commander parses anything. */
export function configFlagOf(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") return undefined;
    if (arg === "--config") return args[i + 1];
    if (arg.startsWith("--config=")) return arg.slice("--config=".length);
  }
  return undefined;
}
