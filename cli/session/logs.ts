/**
 * `apex logs [AGENT] [-f] [-n LINES]`. Each agent writes stdout to
 * <store>/logs/<session>/<agent>.log (with APEX's own `[apex …]` lines about starts, exits
 * and restarts) and stderr to <agent>.err.log. Shown lines are prefixed `agent |` for stdout
 * and `agent !` for stderr. No store access: the files and the runtime file are enough.
 */
import { isUtf8 } from "node:buffer";
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import { idOfName, sessionNames, shortSessionId } from "../../core/session/names.js";
import { join } from "node:path";
import { isFile, type ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { paint, printLine, visibleText } from "../output.js";
import { logLineSegments } from "../terminal-text.js";
import { sleep } from "../../core/session/proc.js";
import { agentLogDir, liveSupervisor, liveSupervisorOf, readRuntime, type SupervisorRuntime } from "../../core/session/runtime.js";
import { liveSessionClient, onNamedStore, remoteSessionClient, type SessionClient } from "../../core/session/client.js";

export interface LogsOptions {
  follow?: boolean;
  lines?: number;
  session?: string;
  json?: boolean;
  /** The agents' text as they wrote it, escape sequences and all (local logs only). */
  raw?: boolean;
}

export interface LogFile {
  agent: string;
  stream: "stdout" | "stderr";
  file: string;
  /**
   * The file (its identity) and size its last lines were read from: following goes on from there, so a line written meanwhile is not lost.
   * `cut`: the record of the supervisor's last cut of the file (`<file>.cut`) then, null for none: a cut made since is followed into `.1`.
   */
  readTo?: { dev: number; ino: number; size: number; cut?: string | null; held?: HeldPhase };
  /**
   * Following a running session's log: the last line of `.1`, which a cut went across and whose rest is not in the file
   * yet, held back (not among the last lines shown) to be printed whole once its rest comes; `readTo.held` says so to a
   * remote follower, which reads it again from `.1`.
   */
  held?: { line: TailLine; phase: HeldPhase };
}

/** Where a held line of `.1` stands: its rest (or APEX's `log cut` line first) awaited (`cut`), or its rest after that line (`rest`). */
type HeldPhase = "cut" | "rest";

export interface LogLine {
  agent: string;
  stream: "stdout" | "stderr";
  /** The line's text; a byte that is no UTF-8 reads as U+FFFD in it (then `line_base64` is there). */
  line: string;
  /**
   * Only for a line holding bytes that are no UTF-8 (an agent writing Latin-1, binary): its bytes
   * exactly, base64, of which `line` is the text (a cut line's ` … (N more bytes)` after them).
   */
  line_base64?: string;
}

export async function showLogs(location: ProjectLocation, agent: string | undefined, options: LogsOptions): Promise<void> {
  const remote = remoteSessionClient();
  if (options.raw && (remote || options.json)) {
    throw new ApexError("APEX_E_USAGE", remote ? "--raw prints only this host's logs: another host's text is always shown with its control characters visible." : "--raw and --json do not go together: --json already keeps the text exact.");
  }
  if (remote) return showRemoteLogs(remote, agent, options);
  const sessionId =
    options.session !== undefined
      ? await logSessionByRef(location, options.session)
      : (process.env.APEX_SESSION_ID ?? (await defaultLogSession(location)));
  if (!sessionId) {
    throw new ApexError("APEX_E_NO_SESSION", "No session has logs in this project yet.", { hint: 'Start one with `apex start --task "…"`.' });
  }
  // A session whose log directory is not there (its agents never ran here, or it was removed
  // while they ran) printed nothing and exit 0, as if its agents had written nothing.
  if (!options.follow && !existsSync(agentLogDir(location.storeDir, sessionId))) {
    throw new ApexError("APEX_E_NO_SESSION", `Session ${shortSessionId(sessionId)} has no logs in this project: ${agentLogDir(location.storeDir, sessionId)} is not there.`, {
      hint: "An agent's output is kept there from its first start; a directory removed while the agents ran is made again as they start again (`apex stop`, then `apex start --continue`).",
    });
  }
  const count = options.lines ?? (options.follow ? 10 : 50);
  const running = options.follow ? liveSupervisorOf(location.storeDir, sessionId) : undefined;
  // Followed while it runs, a last line not finished yet is printed once it is (logTail's holdUnfinished); an ended session's shows as it is.
  const { dir, chosen, lines } = readLogTail(location.storeDir, sessionId, agent, count, running !== undefined);
  const print = linePrinter(chosen.map((file) => file.agent), Boolean(options.json), options.raw ? (await import("../terminal-text.js")).writeControl : undefined);
  // Listened for before the first line is printed (follow.ts).
  const interruption = options.follow ? (await import("../follow.js")).listenForInterruption() : undefined;
  try {
    for (const line of lines) print(line);
    if (interruption) {
      // Following a running session ends with it (as `--attach` does): once its supervisor is gone,
      // what the agents wrote is read to its end. A session not running is followed until Ctrl-C,
      // or, once a `start --continue` of it runs (it writes on into the same logs), until that ends.
      const ended = supervisorEnded(location.storeDir, sessionId, running);
      if (await followLogs(dir, chosen, agent, print, () => interruption.interrupted, ended)) {
        process.stderr.write(`Session ${visibleText(ended.session())} has ended: no more output will come.\n`);
      }
    }
  } finally {
    interruption?.undo();
  }
}

/**
 * Whether the session a followed supervisor ran has ended: its supervisor gone, having removed its
 * runtime files as it ends (stop, completion, a failed start). One killed (kill -9, OOM) left them
 * naming it: the session is interrupted and its agents write on, so following goes on (said once
 * on stderr, unless `quiet`: the server's logs.follow), as it does for a supervisor that
 * `start --continue` starts meanwhile. Before, that was taken for the end: "has ended: no more
 * output will come", while the agents still wrote. With no `first` (the session was not running),
 * never, until a supervisor runs it (a `start --continue`): then until that one ends (before, for
 * ever: a followed session that was continued and then stopped was followed on until Ctrl-C).
 * `session()`: the session as session list prints it, a reference --session takes: its name (a
 * branch's, from its supervisor's runtime file: logs read no session record), else its uuid's short form.
 */
export function supervisorEnded(storeDir: string, sessionId: string, first: SupervisorRuntime | undefined, quiet = false): (() => boolean) & { session: () => string } {
  let followed = first;
  let said = quiet;
  const ended = () => {
    const live = liveSupervisorOf(storeDir, sessionId);
    if (live) {
      followed = live;
      return false;
    }
    const gone = followed;
    if (!gone) return false;
    const left = [readRuntime(storeDir, sessionId), readRuntime(storeDir)].some((runtime) => runtime?.pid === gone.pid && runtime.session_id === sessionId);
    if (left && !said) {
      said = true;
      process.stderr.write(`warning: the supervisor of session ${shortSessionId(sessionId)} (pid ${gone.pid}) is gone without ending it: the session is interrupted, and its agents may write on. Following until Ctrl-C (\`apex start --continue ${shortSessionId(sessionId)}\` resumes it).\n`);
    }
    return !left;
  };
  return Object.assign(ended, { session: () => (typeof followed?.name === "string" && followed.name ? followed.name : shortSessionId(sessionId)) });
}

/** `apex --remote … logs`: the same lines, read by the server (`logs.read`, then the `logs.follow` stream). */
async function showRemoteLogs(remote: SessionClient, agent: string | undefined, options: LogsOptions): Promise<void> {
  const { followUntilInterrupted, listenForInterruption } = await import("../follow.js");
  // Listened for before the first line is printed (follow.ts).
  const interruption = options.follow ? listenForInterruption() : undefined;
  const count = options.lines ?? (options.follow ? 10 : 50);
  const reply = (await remote.call("logs.read", { agent: agent ?? null, lines: count, follow: Boolean(options.follow) }, 30_000)) as { agents?: unknown; lines?: unknown; read_to?: unknown };
  // What another host sent: read as log lines whatever its shape, never trusted to be one.
  const agents = Array.isArray(reply?.agents) ? reply.agents.map(String) : [];
  const print = linePrinter(agents, Boolean(options.json));
  for (const line of Array.isArray(reply?.lines) ? reply.lines : []) print(line as LogLine);
  if (!options.follow) return;
  // From where the server read the lines shown (a server without read_to follows from the logs' ends).
  const subscription = remote.subscribe("logs.follow", { agent: agent ?? null, ...(reply?.read_to && typeof reply.read_to === "object" ? { read_to: reply.read_to } : {}) }, (event) => print(event as LogLine));
  await followUntilInterrupted(subscription, interruption);
  // Ended by the server (it stopped), not by Ctrl-C: said why, on stderr, as `apex connect` does.
  const reason: unknown = await subscription.done;
  if (typeof reason === "string") process.stderr.write(`The log stream ended: ${reason.replace(/[\r\n]+/g, " ")}.\n`);
}

/** Agent names are padded to the longest, up to this many characters (a name is never cut). */
const MAX_AGENT_COLUMN = 32;

/** `raw`: writes a line past the terminal guard (cli/terminal-text.ts), for `--raw`. */
function linePrinter(agents: string[], json: boolean, raw?: (stream: NodeJS.WriteStream, text: string | Uint8Array) => boolean): (line: LogLine) => void {
  const width = Math.min(MAX_AGENT_COLUMN, agents.reduce((longest, name) => Math.max(longest, name.length), 0));
  return (entry) => {
    const { agent, stream, line, line_base64: base64 } = entry ?? ({} as Partial<LogLine>);
    // What another host sent is printed as a log line whatever its shape: a line_base64 only as a string.
    if (json) process.stdout.write(`${JSON.stringify({ agent, stream, line, ...(typeof base64 === "string" ? { line_base64: base64 } : {}) })}\n`);
    else if (raw) {
      // The agent's bytes as it wrote them, those that are no UTF-8 too (a terminal in Latin-1 shows them).
      const prefix = `${paint(String(agent).padEnd(width), "cyan")} ${stream === "stderr" ? paint("!", "red") : "|"} `;
      raw(process.stdout, Buffer.concat([Buffer.from(prefix), typeof base64 === "string" ? Buffer.from(base64, "base64") : Buffer.from(String(line)), Buffer.from("\n")]));
    } else {
      // A log line is printed as the lines its carriage returns made on the agent's terminal
      // (logLineSegments); other control characters and line breaks (possible only in a line
      // another host sent) are shown, not obeyed.
      const prefix = `${paint(String(agent ?? "?").padEnd(width), "cyan")} ${stream === "stderr" ? paint("!", "red") : "|"} `;
      for (const segment of logLineSegments(String(line ?? ""))) printLine(`${prefix}${visibleText(segment)}`);
    }
  };
}

/** The session's log files; an agent named that has none is refused (APEX_E_AGENT_NOT_FOUND), saying which have. */
export function requireAgentLogs(dir: string, sessionId: string, agent: string | undefined): LogFile[] {
  const files = logFiles(dir);
  const agents = [...new Set(files.map((file) => file.agent))];
  if (agent !== undefined && !agents.includes(agent)) {
    throw new ApexError("APEX_E_AGENT_NOT_FOUND", `No logs for an agent named ${JSON.stringify(agent)} in session ${sessionId}.`, {
      hint: agents.length ? `Agents with logs: ${agents.join(", ")}.` : "No agent has written a log yet.",
    });
  }
  return files;
}

/** The last `count` lines of each log of the session (of one agent if named). */
export function readLogTail(storeDir: string, sessionId: string, agent: string | undefined, count: number, holdUnfinished = false): { dir: string; chosen: LogFile[]; lines: LogLine[] } {
  const dir = agentLogDir(storeDir, sessionId);
  const files = requireAgentLogs(dir, sessionId, agent);
  const chosen = files.filter((file) => agent === undefined || file.agent === agent);
  const lines: LogLine[] = [];
  for (const file of chosen) {
    let recent: TailLine[] = [];
    let earlier: TailLine[] = [];
    for (const waitUntil = Date.now() + CUT_WAIT_MS; ; ) {
      // The cut record before the file: a cut made after the file was read is then followed into .1 (before, it was taken as one already seen, and what it moved there was skipped).
      const cut = readCut(file.file);
      // Two lines more: the file's first two (APEX's `log cut` line, the rest of a line the cut went across) may be among those shown.
      recent = logTail(file.file, count + 2, (readTo) => (file.readTo = { ...readTo, cut: cut?.text ?? null }), holdUnfinished);
      // A log the supervisor cut (it keeps each under APEX_LOG_MAX_BYTES) goes on from <file>.1, once the file is read from its start.
      earlier = recent.length < count + 2 ? logTail(`${file.file}.1`, Math.max(1, count - recent.length + 1)) : [];
      if (recent.length >= count + 2 || !cutUnderWay(file.file, cut) || Date.now() >= waitUntil) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
    }
    const hold = holdUnfinished ? (line: TailLine, phase: HeldPhase) => ((file.held = { line, phase }), file.readTo && (file.readTo.held = phase)) : undefined;
    const shown = acrossCut(earlier, recent, hold);
    for (const line of count > 0 ? shown.slice(-count) : []) lines.push(logLine(file, line.bytes, line.dropped));
  }
  return { dir, chosen, lines };
}

/**
 * The lines of `<file>.1` and of the file after it (the file's first lines: it was read to its
 * start), with an agent's line that the cut went across shown once, whole: `.1` ends in the middle
 * of it (the agent wrote on into the emptied file), and its rest is the file's first line, or the
 * one after APEX's `log cut` line when that came first (shown before it, as a line APEX's own line
 * split: SPLIT_MARK). Before, `Loading...`, the `log cut` line, then ` ok`. Nothing is written for
 * it: a supervisor gone before its `log cut` line leaves the rest first in the file, joined as well.
 * With `hold` (following a running session), a line whose rest is not written yet is held back
 * and given to `hold`: the follower prints it whole once its rest comes (before, `Loading...`
 * was shown, then ` ok` on a line of its own).
 */
function acrossCut(earlier: TailLine[], recent: TailLine[], hold?: (line: TailLine, phase: HeldPhase) => void): TailLine[] {
  const pending = earlier.at(-1);
  if (!pending?.unfinished) return [...earlier, ...recent];
  const apex = recent.length > 0 && isApexLine(recent[0]!.bytes) ? 1 : 0;
  const rest = recent[apex];
  if (hold && !rest && recent.length === apex) {
    hold(pending, apex ? "rest" : "cut");
    return [...earlier.slice(0, -1), ...recent];
  }
  if (recent.length === 0) return earlier;
  // No rest after APEX's line (not written yet), or another of APEX's: the agent's line ended there.
  if (!rest || (apex === 1 && isApexLine(rest.bytes))) return [...earlier.slice(0, -1), ...recent.slice(0, apex), pending, ...recent.slice(apex)];
  const { partial, dropped } = joinLines({ partial: pending.bytes, dropped: pending.dropped }, { partial: rest.bytes, dropped: rest.dropped });
  return [...earlier.slice(0, -1), ...recent.slice(0, apex), { bytes: partial, dropped, unfinished: rest.unfinished }, ...recent.slice(apex + 1)];
}

/**
 * The logs in `dir`: <agent>.log (stdout) and <agent>.err.log (stderr). An agent's name may hold
 * dots, so `x.err.log` is agent x's stderr when x has a stdout log (the supervisor makes both
 * when it starts an agent), else the stdout of an agent named `x.err`.
 */
export function logFiles(dir: string): LogFile[] {
  if (!existsSync(dir)) return [];
  const out: LogFile[] = [];
  const names = readdirSync(dir)
    .sort()
    .filter((name) => name.endsWith(".log") && isFile(join(dir, name))); // a directory named like a log is none
  for (const name of names) {
    const agent = name.slice(0, -".err.log".length);
    if (name.endsWith(".err.log") && names.includes(`${agent}.log`)) out.push({ agent, stream: "stderr", file: join(dir, name) });
    else out.push({ agent: name.slice(0, -".log".length), stream: "stdout", file: join(dir, name) });
  }
  return out.sort((a, b) => (a.agent < b.agent ? -1 : a.agent > b.agent ? 1 : 0) || (a.stream === b.stream ? 0 : a.stream === "stdout" ? -1 : 1));
}

/**
 * The session `--session` names, as every command reads it (core's resolveSessionId: an id, a branch's name, a
 * unique prefix of 4+ characters), the sessions whose logs are here counting too (those of another store the project
 * used). A whole id with logs needs no store (an agent's store URL has no password); inside an agent its supervisor
 * lists the sessions.
 */
async function logSessionByRef(location: ProjectLocation, ref: string): Promise<string> {
  const root = join(location.storeDir, "logs");
  const withLogs = existsSync(root) ? readdirSync(root) : [];
  if (withLogs.includes(ref)) return ref;
  const { pickSession, resolveSessionId } = await import("../../core/session/sessions.js");
  const agent = process.env.APEX_SOCKET ? await liveSessionClient(location) : undefined;
  const { openStore, storeExists } = await import("../../core/store/open.js");
  let id: string;
  // The session's name, for the refusal below: the global --session comes here as the whole id it
  // names, which the refusal printed (`Session "5b987fd4-…" has no logs` for `--session Exp`).
  let names: Array<[unknown, string]> = [];
  if (agent) {
    try {
      const sessions = (await agent.call("session.list")) as Array<{ session_id: string; name?: unknown }>;
      names = sessions.map((record) => [record.name, record.session_id]);
      id = pickSession(ref.trim(), [...withLogs, ...sessions.map((record) => record.session_id)], () => idOfName(names, ref.trim()));
    } finally {
      await agent.close();
    }
  } else if (await storeExists(location)) {
    const store = await openStore(location, { readOnly: true });
    try {
      id = resolveSessionId(store, ref, { also: withLogs });
      names = [...sessionNames(store)];
    } finally {
      await store.close();
    }
  } else id = pickSession(ref.trim(), withLogs, () => undefined);
  if (withLogs.includes(id)) return id;
  // Named as `session list` and the other commands name it: its name, else its short id.
  const name = names.find(([, sid]) => sid === id)?.[0];
  const shown = typeof name === "string" ? name : shortSessionId(id);
  throw new ApexError("APEX_E_NO_SESSION", `Session ${visibleText(shown)} has no logs in this project: its agents never ran here.`, {
    hint: "An agent's output is kept from its first start; `apex session list` shows the sessions.",
    details: { session_id: id },
  });
}

/**
 * The session shown without --session, chosen as every command chooses (binding.ts) and of the
 * store this command names (APEX_STORE_URL, else `store:`): the logs of every store the project
 * used are under one directory, so a supervisor of another store is not this store's session.
 * The runtime files say it without opening the store when their supervisor runs (or ran) on the
 * named store; else that store's bound session or the one that ended last; with no store, the
 * latest logs.
 */
async function defaultLogSession(location: ProjectLocation): Promise<string | undefined> {
  for (const runtime of [liveSupervisor(location.storeDir), readRuntime(location.storeDir)]) {
    const own = await onNamedStore(location, runtime);
    if (own) return own.session_id;
  }
  const { openStore, storeExists } = await import("../../core/store/open.js");
  if (!(await storeExists(location))) return latestLogSession(location.storeDir);
  const { readableSessionId } = await import("../../core/session/sessions.js");
  const store = await openStore(location, { readOnly: true });
  try {
    return readableSessionId(store);
  } catch (error) {
    if (error instanceof ApexError && error.code === "APEX_E_NO_SESSION") return undefined;
    throw error;
  } finally {
    await store.close();
  }
}

/** The session whose log directory changed last. */
function latestLogSession(storeDir: string): string | undefined {
  const root = join(storeDir, "logs");
  if (!existsSync(root)) return undefined;
  let best: { name: string; mtime: number } | undefined;
  for (const name of readdirSync(root)) {
    const mtime = statSync(join(root, name)).mtimeMs;
    if (!best || mtime > best.mtime) best = { name, mtime };
  }
  return best?.name;
}

/** A followed log: the file it has open (which the path may no longer name), and how far it was read. */
interface Followed {
  file: LogFile;
  /** The open file, or undefined while the path names none that could be opened. */
  fd: number | undefined;
  /** The open file's identity: a path naming another (dev, ino) was replaced. */
  dev: number;
  ino: number;
  offset: number;
  /** The start of a line whose end was not written yet, at most TAIL_LINE_BYTES of it; `dropped`: the bytes of it left out. */
  partial: Buffer;
  dropped: number;
  /** The record of the supervisor's last cut of this log (`<file>.cut`) when it was last looked at; `waited`: polls waited for one. */
  cut: string | undefined;
  waited: number;
  /** The last byte of the line being followed (-1: none yet): SPLIT_MARK before its line break is APEX's split. */
  last: number;
  /**
   * An agent's line APEX's line split (SPLIT_MARK): `apex` while APEX's line is awaited, `rest` while the agent's rest is;
   * `cut`: one a cut of the file went across, its rest (or APEX's `log cut` line first) awaited in the emptied file.
   */
  split?: { partial: Buffer; dropped: number; phase: "apex" | "rest" | "cut" };
}

/**
 * Follows the logs until `stopped()`, as `tail -F` does: by the file each path names, not by its
 * size alone. Every 200 ms each open file is read past what was read (a file emptied in place,
 * shorter than that, is read again from its start), and a path that now names another file (a
 * log rotated: renamed, and a new one made, whatever its size) is reopened, after the last lines
 * of the old one were read, and the new one is printed from its start. Logs that appear are
 * followed from their start. The remote server's `logs.follow` runs this too. With `ended`
 * (checked at each poll: a `start --continue` that ran and ended within a second was missed when it was checked every second), following ends once it is true, after every file was read to its end:
 * resolves to true then, to false when `stopped()`.
 */
export async function followLogs(dir: string, initial: LogFile[], agent: string | undefined, print: (line: LogLine) => void, stopped: () => boolean, ended?: () => boolean): Promise<boolean> {
  const followed = new Map<string, Followed>();
  for (const file of initial) followed.set(file.file, openFollowed(file, "end"));
  try {
    while (!stopped()) {
      // Checked before the files are read: the lines written before it ended are all read in this round.
      const over = ended !== undefined && ended();
      for (const file of logFiles(dir)) {
        if ((agent === undefined || file.agent === agent) && !followed.has(file.file)) followed.set(file.file, openFollowed(file, "start"));
      }
      for (const state of followed.values()) pollFollowed(state, print);
      if (over) {
        // To their ends, and an unfinished last line printed: nothing will finish it.
        for (const state of followed.values()) {
          if (state.fd === undefined) continue;
          drain(state, print, true);
          flushPartial(state, print);
        }
        return true;
      }
      await sleep(200);
    }
    return false;
  } finally {
    for (const state of followed.values()) if (state.fd !== undefined) closeSync(state.fd);
  }
}

/**
 * Opens a log to follow from where its last lines were read (`file.readTo`: what was written
 * since is printed; a file that replaced it meanwhile from its start), from its end (lines
 * already shown, with no record of where), or from its start (a file new to the follower).
 */
function openFollowed(file: LogFile, from: "start" | "end"): Followed {
  // Following from where the last lines were read, the cut record seen then: one made since (--remote: between logs.read and logs.follow) is new.
  const seen = from === "end" && file.readTo?.cut !== undefined ? (file.readTo.cut ?? undefined) : readCut(file.file)?.text;
  const state: Followed = { file, fd: undefined, dev: -1, ino: -1, offset: 0, partial: EMPTY, dropped: 0, cut: seen, waited: 0, last: -1 };
  reopen(state);
  if (from === "end" && state.fd !== undefined) {
    const { readTo } = file;
    state.offset = !readTo ? fstatSync(state.fd).size : readTo.dev === state.dev && readTo.ino === state.ino ? readTo.size : 0;
  }
  // The line of .1 held back from the last lines (acrossCut): awaiting its rest, as if followed through the cut. A remote
  // follower reads it from .1 again, unless a cut made since replaced .1 (followCut then reads what it holds).
  const phase = from === "end" ? (file.held?.phase ?? file.readTo?.held) : undefined;
  const held = file.held?.line ?? (phase && readCut(file.file)?.text === file.readTo?.cut ? logTail(`${file.file}.1`, 1).at(-1) : undefined);
  if (phase && held?.unfinished) state.split = { partial: held.bytes, dropped: held.dropped, phase };
  return state;
}

/** Opens what the path names now (nothing when it names nothing), to read from its start. */
function reopen(state: Followed): void {
  if (state.fd !== undefined) closeSync(state.fd);
  state.fd = undefined;
  state.offset = 0;
  try {
    state.fd = openSync(state.file.file, "r");
  } catch {
    return; // gone for now: looked for again on the next poll
  }
  const stat = fstatSync(state.fd);
  [state.dev, state.ino] = [stat.dev, stat.ino];
}

function pollFollowed(state: Followed, print: (line: LogLine) => void): void {
  if (state.fd === undefined) {
    reopen(state);
    if (state.fd === undefined) return;
  }
  if (followCut(state, print)) return;
  drain(state, print, false);
  const now = statIdentity(state.file.file);
  if (now === undefined || (now.dev === state.dev && now.ino === state.ino)) return; // same file, or the path names none yet: keep reading this one
  // Replaced: whatever the writer still put into the old file first, then its unfinished last line, then the new file.
  drain(state, print, true);
  flushPartial(state, print);
  reopen(state);
  drain(state, print, false);
}

/** Prints what the open file holds past the offset: all of it with `all`, else up to 4 MiB (the next poll reads on). */
function drain(state: Followed, print: (line: LogLine) => void, all: boolean): void {
  const fd = state.fd!;
  const size = fstatSync(fd).size;
  if (size < state.offset) {
    // Emptied in place (truncated): what was left of its last line ends here, not glued to the new text.
    flushPartial(state, print);
    state.offset = 0;
  }
  do {
    const chunk = readRange(fd, state.offset, all ? 4 * 1024 * 1024 : size - state.offset);
    if (chunk.length === 0) return;
    state.offset += chunk.length;
    feed(state, chunk, print);
  } while (all);
}

/** Prints the lines `chunk` ends, keeping the start of the one it leaves unfinished. */
function feed(state: Followed, chunk: Buffer, print: (line: LogLine) => void): void {
  // Lines are split and kept as bytes, and made text only whole: a character is never cut in two.
  let start = 0;
  for (let end = chunk.indexOf(0x0a); end !== -1; start = end + 1, end = chunk.indexOf(0x0a, start)) {
    keepLine(state, chunk.subarray(start, end));
    if (end > start) state.last = chunk[end - 1]!;
    endLine(state, print);
  }
  keepLine(state, chunk.subarray(start));
  if (chunk.length > start) state.last = chunk[chunk.length - 1]!;
}

/**
 * The supervisor's cut of a followed log (core/session/agents.ts capLogFile: its last part copied
 * to `<file>.1`, the file emptied in place, then `<file>.cut` saying which bytes `.1` holds): what
 * was not read yet is read from `.1`, then the file from its start. Before, a cut was seen only as
 * a shorter file, and the lines written since the last poll were never shown; a busy agent's file
 * could even be longer again by the next poll, and its new start was skipped. A file seen emptied
 * is given a few polls for its record (written right after), then taken as emptied by hand.
 * True while it waits.
 */
function followCut(state: Followed, print: (line: LogLine) => void): boolean {
  const cut = readCut(state.file.file);
  if (cut !== undefined && cut.text !== state.cut) {
    state.cut = cut.text;
    state.waited = 0;
    if (state.offset < cut.to) {
      let fd: number | undefined;
      try {
        fd = openSync(`${state.file.file}.1`, "r");
        // Bytes cut away before .1's first (a follower more than a cut behind) are gone: .1 from its start then.
        for (let at = Math.max(0, state.offset - cut.from); at < cut.to - cut.from; ) {
          const chunk = readRange(fd, at, cut.to - cut.from - at);
          if (chunk.length === 0) break;
          at += chunk.length;
          feed(state, chunk, print);
        }
      } catch {
        // .1 gone (removed by hand): the new file is read on from its start
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    }
    // An unfinished last line goes on in the emptied file: printed whole once it ends there, after APEX's `log cut` line if that comes first, as `apex logs` shows it.
    // (A marked break before the cut: the APEX line it awaits comes in the emptied file.)
    const { split } = state;
    if (split?.phase === "apex") {
      if (state.partial.length > 0 || state.dropped > 0) flushPartial(state, print);
    } else if (split || state.partial.length > 0 || state.dropped > 0) {
      state.split = { ...(split ? joinLines(split, state) : { partial: state.partial, dropped: state.dropped }), phase: "cut" };
      startLine(state);
    }
    state.offset = 0;
    return false;
  }
  if (fstatSync(state.fd!).size < state.offset && state.waited < 5) {
    state.waited += 1;
    return true;
  }
  state.waited = 0;
  return false;
}

/** `<file>.cut`: the supervisor's last cut of a log, `.1` holding the bytes [from, to) of the file as it was. */
/** How long a tail waits for a cut under way to finish (capLogFile's copy, then its emptying of the file, then .1 and .cut). */
const CUT_WAIT_MS = 1000;

/**
 * True while the supervisor is cutting `file` (core/session/agents.ts capLogFile): `.1` is fresh
 * and does not hold what the cut record `cut` (read before the file) says. Between the file's
 * emptying and the rest's append to `.1`, a tail found the file empty and `.1` without its last
 * lines, and showed neither. A `.1` left so by a supervisor that died mid-cut (or written before
 * cut records) stops counting once it is a few seconds old.
 */
function cutUnderWay(file: string, cut: { text: string; from: number; to: number } | undefined): boolean {
  const earlier = statSync(`${file}.1`, { throwIfNoEntry: false });
  if (!earlier || Date.now() - earlier.mtimeMs > 3000) return false;
  return cut === undefined || earlier.size !== cut.to - cut.from || readCut(file)?.text !== cut.text;
}

function readCut(file: string): { text: string; from: number; to: number } | undefined {
  try {
    const text = readFileSync(`${file}.cut`, "utf8");
    const { from, to } = JSON.parse(text) as { from?: unknown; to?: unknown };
    return Number.isSafeInteger(from) && Number.isSafeInteger(to) && (from as number) >= 0 && (to as number) >= (from as number) ? { text, from: from as number, to: to as number } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Prints the line being followed (a cut one saying how many bytes were left out) and starts the
 * next; an agent's line that APEX's split (SPLIT_MARK) is printed once whole, after APEX's line.
 */
function endLine(state: Followed, print: (line: LogLine) => void): void {
  const { split } = state;
  state.split = undefined;
  if ((split?.phase === "apex" || split?.phase === "cut") && isApexLine(state.partial)) {
    print(logLine(state.file, state.partial, state.dropped));
    state.split = { ...split, phase: "rest" };
    return startLine(state);
  }
  // No APEX line after it: the mark was the agent's own, kept.
  if (split?.phase === "apex") print(logLine(state.file, ...withMark(split)));
  else if (split && isApexLine(state.partial)) print(logLine(state.file, split.partial, split.dropped)); // it ended there (killed mid-line)
  else if (split) Object.assign(state, joinLines(split, state));
  if (state.last === SPLIT_MARK) {
    state.split = { ...withoutMark(state), phase: "apex" };
    return startLine(state);
  }
  print(logLine(state.file, state.partial, state.dropped));
  startLine(state);
}

function startLine(state: Followed): void {
  state.partial = EMPTY;
  state.dropped = 0;
  state.last = -1;
}

/** Ends an unfinished last line (its file emptied or replaced), if there is one: one APEX's split too, as it is. */
function flushPartial(state: Followed, print: (line: LogLine) => void): void {
  const { split } = state;
  state.split = undefined;
  if (split?.phase === "apex") print(logLine(state.file, ...withMark(split)));
  else if (split) Object.assign(state, joinLines(split, state));
  if (state.partial.length > 0 || state.dropped > 0 || split?.phase === "rest") print(logLine(state.file, state.partial, state.dropped));
  startLine(state);
}

/**
 * The byte before the line break APEX adds to end an agent's unfinished line when it writes one
 * of its own lines meanwhile (core/session/agents.ts appendLogLine, while the agent runs): the
 * line after it is APEX's, and the one after that the rest of the agent's line (unless it is
 * another of APEX's: the agent ended there). Shown as the agent wrote it: its line whole, after
 * APEX's. Before, `Loading...` then `[apex …] started …` then ` ok`: one line of the agent's in two.
 */
const SPLIT_MARK = 0x1e;
const APEX_LINE = Buffer.from("[apex ");

function isApexLine(bytes: Uint8Array): boolean {
  return bytes.length >= APEX_LINE.length && APEX_LINE.equals(bytes.subarray(0, APEX_LINE.length));
}

/** A line's bytes without the SPLIT_MARK it ends with (left out of `dropped` when it was there). */
function withoutMark(line: { partial: Buffer; dropped: number }): { partial: Buffer; dropped: number } {
  return line.dropped > 0 ? { partial: line.partial, dropped: line.dropped - 1 } : { partial: line.partial.subarray(0, -1), dropped: 0 };
}

function withMark(line: { partial: Buffer; dropped: number }): [Buffer, number] {
  return line.dropped > 0 ? [line.partial, line.dropped + 1] : [Buffer.concat([line.partial, Buffer.of(SPLIT_MARK)]), 0];
}

/** Two pieces of a line as one, its first TAIL_LINE_BYTES kept (keepLine). */
function joinLines(first: { partial: Buffer; dropped: number }, rest: { partial: Buffer; dropped: number }): { partial: Buffer; dropped: number } {
  if (first.dropped > 0) return { partial: first.partial, dropped: first.dropped + rest.partial.length + rest.dropped };
  const line = { partial: first.partial, dropped: 0 };
  keepLine(line, rest.partial);
  line.dropped += rest.dropped;
  return line;
}

function statIdentity(path: string): { dev: number; ino: number } | undefined {
  try {
    const stat = statSync(path);
    return stat.isFile() ? { dev: stat.dev, ino: stat.ino } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Adds `bytes` to the line being followed, keeping its first TAIL_LINE_BYTES (cut where a
 * character ends): an agent writing hundreds of MB without a newline costs no memory.
 */
function keepLine(state: Pick<Followed, "partial" | "dropped">, bytes: Buffer): void {
  if (state.dropped > 0) state.dropped += bytes.length;
  else if (state.partial.length + bytes.length <= TAIL_LINE_BYTES) state.partial = Buffer.concat([state.partial, bytes]);
  else {
    // Enough past the limit to see whether a character goes across it.
    const head = Buffer.concat([state.partial, bytes.subarray(0, TAIL_LINE_BYTES + 4 - state.partial.length)]);
    const kept = characterEnd(head, TAIL_LINE_BYTES);
    state.dropped = state.partial.length + bytes.length - kept;
    state.partial = head.subarray(0, kept);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Where to cut `bytes` to keep at most `max` of them: at `max`, or before it when a UTF-8
 * character goes across it, so that no character is shown as U+FFFD for being cut in two
 * (bytes that are no UTF-8 are cut at `max`).
 */
export function characterEnd(bytes: Uint8Array, max: number): number {
  if (bytes.length <= max) return bytes.length;
  let lead = max;
  while (lead > 0 && max - lead < 3 && (bytes[lead]! & 0xc0) === 0x80) lead--;
  const first = bytes[lead]!;
  const length = first >= 0xf0 && first <= 0xf4 ? 4 : first >= 0xe0 && first <= 0xef ? 3 : first >= 0xc2 && first <= 0xdf ? 2 : 1;
  return lead < max && lead + length > max ? lead : max;
}

/** A log line from its bytes (at most TAIL_LINE_BYTES, as kept) and how many more it had; `line_base64` when they are no UTF-8. */
function logLine(file: Pick<LogFile, "agent" | "stream">, bytes: Buffer, dropped: number): LogLine {
  const all = dropped > 0 ? Buffer.concat([bytes, Buffer.from(` … (${dropped} more byte${dropped === 1 ? "" : "s"})`)]) : bytes;
  const line = all.toString("utf8");
  return isUtf8(all) ? { agent: file.agent, stream: file.stream, line } : { agent: file.agent, stream: file.stream, line, line_base64: all.toString("base64") };
}

/** A line as `logTail` read it: its first TAIL_LINE_BYTES at most, and how many bytes more it had. */
export interface TailLine {
  bytes: Buffer;
  dropped: number;
  /** The file's last line, its line break not written yet. */
  unfinished?: boolean;
}

/** Longest line `logTail` returns whole; a longer one is cut there and says how much is left out. */
const TAIL_LINE_BYTES = 64 * 1024;

/**
 * The last `lines` lines of a log, or [] when it does not exist (or is not a file). The file is
 * scanned backwards 64 KiB at a time for line ends, however long its lines, and each line is read
 * up to TAIL_LINE_BYTES: a 300 MB line costs a scan, not 300 MB of memory. (The supervisor's own
 * short tails in error messages use core's tailLines, which reads the last 64 KiB.)
 * `holdUnfinished` (for following): a last line without its line break yet is not returned, and
 * `readTo` says where it starts, so that following prints it once, whole, when it is finished
 * (before, `logs -f` printed it in two pieces, the part written before it started and the rest).
 */
export function logTail(file: string, lines: number, readTo?: (at: { dev: number; ino: number; size: number }) => void, holdUnfinished = false): TailLine[] {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return [];
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) return [];
    const readToSize = (size: number) => readTo?.({ dev: stat.dev, ino: stat.ino, size });
    if (stat.size === 0) readToSize(0);
    if (stat.size === 0) return [];
    const one = Buffer.alloc(APEX_LINE.length);
    const byteAt = (at: number) => (readSync(fd, one, 0, 1, at), one[0]!);
    const finalNewline = byteAt(stat.size - 1) === 0x0a;
    const end = finalNewline ? stat.size - 1 : stat.size; // a final newline ends the last line
    // Where lines start, from the end backwards (each after a line break), scanned on as more are needed.
    const buffer = Buffer.alloc(Math.min(stat.size, 64 * 1024));
    const starts: number[] = [];
    let at = end;
    const scan = (count: number) => {
      while (at > 0 && starts.length < count) {
        const from = Math.max(0, at - buffer.length);
        readSync(fd, buffer, 0, at - from, from);
        let i = at - from - 1;
        for (; i >= 0 && starts.length < count; i--) if (buffer[i] === 0x0a) starts.push(from + i + 1);
        at = starts.length >= count ? from + i + 1 : from;
      }
    };
    let tail: ReturnType<typeof joinSplits>;
    for (let count = lines + 3; ; count = starts.length + lines + 3) {
      scan(count);
      const ascending = [...(at === 0 ? [0] : []), ...[...starts].reverse()];
      tail = joinSplits(
        ascending.map((start, i) => ({ start, end: i + 1 < ascending.length ? ascending[i + 1]! - 1 : end, finished: i + 1 < ascending.length || finalNewline })),
        (line) => line.end > line.start && byteAt(line.end - 1) === SPLIT_MARK,
        (line) => line.end - line.start >= APEX_LINE.length && (readSync(fd, one, 0, one.length, line.start), isApexLine(one)),
      );
      // The first two lines read may be the rest of a line split before them: only the lines after them are known whole.
      if (at === 0) break;
      tail = tail.filter((line) => line.first >= 2);
      if (tail.length > lines) break;
    }
    const last = tail.at(-1);
    // Held back: a last line not finished yet (with APEX's lines that split it), printed by following once it is, whole.
    const held = holdUnfinished && last?.unfinished ? last.parts[0]!.start : undefined;
    if (held !== undefined) tail = tail.filter((line) => line.parts[0]!.start < held);
    readToSize(held ?? stat.size);
    return (lines > 0 ? tail.slice(-lines) : []).map(({ parts, unfinished, marked }) => {
      // Its first TAIL_LINE_BYTES, and a byte past the limit too: whether a character goes across it.
      const length = parts.reduce((sum, part) => sum + part.end - part.start, 0);
      const line = Buffer.alloc(Math.min(length, TAIL_LINE_BYTES + 1));
      let filled = 0;
      for (const part of parts) if (filled < line.length) filled += readSync(fd, line, filled, Math.min(part.end - part.start, line.length - filled), part.start);
      const kept = characterEnd(line.subarray(0, filled), TAIL_LINE_BYTES);
      // (Ended by a break and its mark, awaiting APEX's line: the agent's line ended there.)
      return { bytes: line.subarray(0, kept), dropped: length - kept, ...(unfinished && !marked ? { unfinished } : {}) };
    });
  } finally {
    closeSync(fd);
  }
}

interface Span {
  start: number;
  end: number;
}

/**
 * A log's lines as the agent wrote them, from its lines as they are in the file (`first`: the index
 * of a line's first piece): an agent's line APEX's line split (SPLIT_MARK before the break) is one,
 * after APEX's; `unfinished`: the last, still waiting for its end (`marked`: for APEX's line after its mark).
 */
function joinSplits(lines: Array<Span & { finished: boolean }>, marked: (line: Span) => boolean, apex: (line: Span) => boolean): Array<{ parts: Span[]; first: number; unfinished: boolean; marked?: boolean }> {
  const out: Array<{ parts: Span[]; first: number; unfinished: boolean; marked?: boolean }> = [];
  let parts: Span[] = [];
  let first = 0;
  let phase: "apex" | "rest" | undefined;
  lines.forEach((line, i) => {
    if (phase === "apex" && apex(line)) {
      out.push({ parts: [line], first: i, unfinished: false });
      return void (phase = "rest");
    }
    // After the mark, no APEX line: the agent's own mark, kept; after APEX's line, another of APEX's: the agent's line ended there.
    if (phase === "apex") parts.at(-1)!.end += 1;
    if (phase === "apex" || (phase === "rest" && apex(line))) {
      out.push({ parts, first, unfinished: false });
      parts = [];
    }
    phase = undefined;
    if (parts.length === 0) first = i;
    if (line.finished && marked(line)) {
      parts.push({ start: line.start, end: line.end - 1 });
      return void (phase = "apex");
    }
    parts.push({ start: line.start, end: line.end });
    if (!line.finished) return;
    out.push({ parts, first, unfinished: false });
    parts = [];
  });
  if (phase === "apex") parts.at(-1)!.end += 1; // no APEX line after it (yet): shown as it is
  if (parts.length > 0) out.push({ parts, first, unfinished: true, ...(phase === "apex" ? { marked: true } : {}) });
  return out;
}

/** Reads up to 4 MiB from an open file (the bytes as they are: lines are made text once whole). */
function readRange(fd: number, offset: number, length: number): Buffer {
  if (length <= 0) return EMPTY;
  const buffer = Buffer.alloc(Math.min(length, 4 * 1024 * 1024));
  return buffer.subarray(0, readSync(fd, buffer, 0, buffer.length, offset));
}
