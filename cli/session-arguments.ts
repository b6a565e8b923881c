/**
 * The positional arguments that name the session a command acts on: `apex session history [id]`,
 * `session validate [id]`, a plugin's `{ syntax: "[id]", session: true }`; and those that name a
 * checkpoint, which names its session too (`checkpoint show 3f2a/latest`, a checkpoint's id).
 * Each such command takes `--session` too (every command does, main.ts): named both ways, the
 * two must be one session. The shared resolver in main.ts cannot tell a session from any other
 * word on the line, so the commands declare theirs here.
 */
import { createRequire } from "node:module";
import type { Argument as ArgumentType, Command } from "commander";
import { ApexError } from "../core/errors.js";
import { sessionNames, shortSessionId } from "../core/session/names.js";
import { sessionPath } from "../core/session/records.js";
import type { Store } from "../core/store/store.js";

// commander as main.ts has it (required: the same module, not wrapped as an ES module again).
const { Argument } = createRequire(import.meta.url)("commander") as typeof import("commander");
const SESSION_ARGUMENTS = new WeakSet<ArgumentType>();
const CHECKPOINT_ARGUMENTS = new WeakSet<ArgumentType>();
/** The required arguments commander was told to let pass (`withSessionFlag`): checked once `--session` has filled its own. */
const REQUIRED = new WeakSet<ArgumentType>();

/** An argument (for commander's `addArgument`) that names the session the command acts on. */
export function sessionArgument(syntax: string, description: string): ArgumentType {
  const argument = new Argument(syntax, description);
  SESSION_ARGUMENTS.add(argument);
  return argument;
}

/** An argument that names a checkpoint (`latest`, `checkpoint-007`, `<session>/checkpoint-007`, an id): of `--session`'s session, when given. */
export function checkpointArgument(syntax: string, description: string): ArgumentType {
  const argument = new Argument(syntax, description);
  CHECKPOINT_ARGUMENTS.add(argument);
  return argument;
}

/**
 * Called with `--session` on the line, before commander reads the arguments: a required session
 * argument is `--session`'s when left out (`apex session export --session S -o f` exports S;
 * commander said `missing required argument 'id'`), so commander must not refuse it missing.
 * The arguments after it may be the ones given (`session share --session S USER`): they are let
 * pass as well, and reconcileSessionArguments checks them once the session is in its place.
 */
export function withSessionFlag(command: Command): void {
  if (command.registeredArguments.some((argument) => SESSION_ARGUMENTS.has(argument))) {
    for (const argument of command.registeredArguments) {
      if (!argument.required) continue;
      REQUIRED.add(argument);
      argument.required = false;
    }
  }
  for (const sub of command.commands) withSessionFlag(sub);
}

/**
 * Run before the command's action, with `--session`'s session (already resolved: main.ts). Its
 * session argument left out is that session (`apex session cleanup --session S` cleans up S, not
 * every session); one naming another session is a usage error, before anything is written (the
 * argument won, silently), and so is a checkpoint of another session (`checkpoint show S/latest
 * --session T` showed S's). An argument that names no session is that error (not found), not
 * "two sessions". `last` and `current` as the argument mean the session the command is bound to,
 * `--session`'s: never another.
 */
export async function reconcileSessionArguments(command: Command, flag: string, args: string[]): Promise<void> {
  fillSessionArgument(command, flag);
  const line = commandPath(command);
  const sessions: Array<[ArgumentType, string]> = [];
  const checkpoints: Array<[ArgumentType, string]> = [];
  let current = false;
  for (const [index, argument] of command.registeredArguments.entries()) {
    const given = command.processedArgs[index] as unknown;
    if (typeof given !== "string") continue;
    if (SESSION_ARGUMENTS.has(argument) && given !== flag) {
      const { SESSION_WORDS } = await import("./session-ref.js");
      if (!SESSION_WORDS.has(given)) sessions.push([argument, given]);
      current ||= given.trim() === "current";
    }
    // `latest` and `checkpoint-007` are --session's by their reading: only a session's prefix or an id can name another's.
    if (CHECKPOINT_ARGUMENTS.has(argument) && !/^(latest|checkpoint-\d+)$/i.test(given.trim())) checkpoints.push([argument, given]);
  }
  if (sessions.length === 0 && checkpoints.length === 0 && !current) return;
  const twoSessions = (argument: ArgumentType, given: string, session: string) =>
    new ApexError("APEX_E_USAGE", `\`apex ${line}\` was given two sessions: ${given} as its ${argument.name().toUpperCase()} and ${flag} with --session.`, {
      hint: `Name the session once: \`apex ${line} ${given}\` or \`apex ${line} --session ${flag}\`.`,
      details: { argument: given, session },
    });
  const { agentSession } = await import("../core/session/binding.js");
  // Through --remote (the session is the remote one) and inside an agent (its commands never open the store) as given.
  if (process.env.APEX_REMOTE || agentSession() || process.env.APEX_SOCKET) {
    for (const [argument, given] of sessions) throw twoSessions(argument, given, flag);
    return;
  }
  const [{ locateProject }, { openStore, storeExists }, { configFlagOf }, { resolveSessionRef }] = await Promise.all([
    import("../core/config/locate.js"),
    import("../core/store/open.js"),
    import("./session-ref.js"),
    import("../plugins/checkpoint/plugin-sessions.js"),
  ]);
  const location = locateProject({ configFlag: configFlagOf(args) });
  // A store that cannot be read (damaged, out of reach) is the command's to report, or to repair: the sessions as given.
  const store = await storeExists(location)
    .then((exists) => (exists ? openStore(location, { readOnly: true }) : undefined))
    .catch(() => undefined);
  if (!store) {
    for (const [argument, given] of sessions) throw twoSessions(argument, given, flag);
    return;
  }
  try {
    // Each read as the command reads it (a prefix, a name, a session with checkpoints and no record): one naming none is not found.
    let named: Array<readonly [ArgumentType, string, string]>;
    let session: string;
    try {
      named = sessions.map(([argument, given]) => [argument, given, resolveSessionRef(store, given)] as const);
      session = resolveSessionRef(store, flag);
    } catch (error) {
      if (["APEX_E_NO_SESSION", "APEX_E_AMBIGUOUS"].includes((error as ApexError).code)) throw error;
      for (const [argument, given] of sessions) throw twoSessions(argument, given, flag);
      return;
    }
    for (const [argument, given, id] of named) if (id !== session) throw twoSessions(argument, given, session);
    if (current) endedNotCurrent(store, session, line);
    const { resolveCheckpoint } = await import("../plugins/checkpoint/refs.js");
    for (const [argument, given] of checkpoints) {
      let owner: string;
      try {
        owner = resolveCheckpoint(store, given, { sessionId: session }).sessionId;
      } catch {
        continue; // no such checkpoint: the command says so
      }
      if (owner === session) continue;
      throw new ApexError("APEX_E_USAGE", `\`apex ${line}\` was given two sessions: ${given} (its ${argument.name().toUpperCase()}) is a checkpoint of session ${owner}, and --session names ${session}.`, {
        hint: `A checkpoint names its session: leave --session out, or name a checkpoint of ${flag} (\`apex checkpoint list --session ${flag}\`).`,
        details: { argument: given, checkpoint_session: owner, session },
      });
    }
  } finally {
    await store.close();
  }
}

/**
 * `current` as the argument is --session's session only while it runs: one that has ended was
 * refused with core's "No session is current in this project.", untrue while another session ran.
 */
function endedNotCurrent(store: Store, session: string, line: string): void {
  if (store.get(sessionPath(session)) !== undefined) return;
  const name = [...sessionNames(store)].find(([, id]) => id === session)?.[0];
  const label = name ?? shortSessionId(session);
  throw new ApexError("APEX_E_NO_SESSION", `Session ${label}, which --session names, has ended: \`current\` names it only while it runs.`, {
    hint: `Name it as it is (\`apex ${line} ${label}\`), or give \`last\`; \`apex session list\` shows the sessions that run.`,
    details: { session_id: session },
  });
}

/**
 * `--session`'s session in the place of the session argument left out: when fewer arguments were
 * given than declared, the session's is the one missing (`session share --session S USER`: USER
 * is the user). A required argument still missing then is commander's usage error.
 */
function fillSessionArgument(command: Command, flag: string): void {
  const declared = command.registeredArguments;
  const index = declared.findIndex((argument) => SESSION_ARGUMENTS.has(argument));
  if (index < 0) return;
  const fixed = declared.filter((argument) => !argument.variadic).length;
  const given = command.args.slice(0, fixed);
  if (given.length < fixed && index <= given.length) {
    given.splice(index, 0, flag);
    command.processedArgs = declared.map((argument, at) => {
      if (at < index || argument.variadic) return command.processedArgs[at] as unknown;
      const value = given[at];
      if (value === undefined) return argument.defaultValue as unknown;
      return argument.parseArg ? (argument.parseArg as (value: string, previous: unknown) => unknown)(value, argument.defaultValue) : value;
    });
  }
  for (const [at, argument] of declared.entries()) {
    if (REQUIRED.has(argument) && command.processedArgs[at] === undefined) command.error(`error: missing required argument '${argument.name()}'`, { code: "commander.missingArgument", exitCode: 1 });
  }
}

function commandPath(command: Command): string {
  const words: string[] = [];
  for (let current: Command | null = command; current?.parent; current = current.parent) words.unshift(current.name());
  return words.join(" ");
}
