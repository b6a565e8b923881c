import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ProjectLocation } from "../core/config/locate.js";
import type { Glob } from "../core/store/glob.js";
import { STORE_FILE, lmdbDataDir, type Change, type JsonValue, type Store } from "../core/store/store.js";
import { resolveStoreSpec } from "../core/store/open.js";
import { readView } from "../core/store/port.js";
import { openSessionClient, type SessionClient } from "../core/session/client.js";
import { readRuntime } from "../core/session/runtime.js";
import { ApexError, isApexError } from "../core/errors.js";
import { paint } from "./output.js";
import { onInterruption } from "./follow.js";
import { readValues } from "../plugins/memory-changes.js";

const POLL_MS = 100;
/** How often the log is read when the store signals nothing (a signal lost with a connection). */
const RECHECK_MS = 1000;
/**
 * How long a supervisor's own server (`sharing.serve`) may refuse every connection before `memory watch`
 * takes it as gone with its session: it stops only then, and nothing restarts it at that address meanwhile.
 */
const GONE_MS = 10_000;

export interface WatchOptions {
  since?: number;
  timeout?: number;
  json?: boolean;
  /** Only changes: no current values first (as with --since, which replays changes instead). */
  changesOnly?: boolean;
}

/**
 * Prints the current value of every path under the glob (kind `current`), then follows the
 * revision log and prints every change (kind `put` or `delete`). The log (a cheap range read
 * from the last seen revision) is read when the store signals a change (`subscribe`: LMDB polls
 * its revision, PostgreSQL LISTENs), and once a second in any case, so writes by any process
 * are seen. The values are read after the revision they start from, so a write in between is
 * printed twice (as a current value and as a change) rather than missed.
 * READS is the glob as it was given (a plain path, which GLOB reads as its subtree), judged as `memory query` judges it.
 */
export async function watchChanges(location: ProjectLocation, glob: Glob, options: WatchOptions, reads = glob.source): Promise<void> {
  const withCurrent = options.changesOnly !== true && options.since === undefined;
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  let interrupted = false;
  /** Ends the current wait for a change (a signal from the store, or SIGINT/SIGTERM, or stdout's reader gone). */
  let wake: (() => void) | undefined;
  // A stopping session's second SIGTERM to the agent's group this may run in is ignored once the watch ends (onInterruption).
  const undo = onInterruption(() => {
    interrupted = true;
    wake?.();
  });
  let client: SessionClient | undefined;
  try {
    // A store that was not there when the watch began (none yet, or one removed): the watch saw it empty, so everything
    // written to it is a change, printed from its first revision, never as `current` values.
    let fromStart = false;
    // --since, until a store replaced under the watch: the new one's revisions are not the old one's.
    let since = options.since;
    // The store removed under the watch (LMDB: `rm -rf .apex`), while no write has made a new one: the --timeout that
    // passes meanwhile ends the watch with this error, as it does a store out of reach (it ended with exit 0, unsaid).
    let removed: StoreFiles | undefined;
    // The store's file replaced under the watch, not yet known to be another store: a new file that holds the change the
    // watch followed the old one up to, at that revision, is the same store (repair's salvage copies every record that
    // reads into a new file), followed on from there; any other is a store made anew, printed from its first revision.
    let replacedBy: { files: StoreFiles; at: number; mark: Change | undefined } | undefined;
    /** Said of a store whose file was replaced or removed: printed from its first revision from now on. */
    const madeAnew = (files: StoreFiles) => {
      // As `tail -F` follows a file made anew: the new store is watched as one that was not there when the watch began.
      process.stderr.write(`${paint("warning:", "yellow", process.stderr)} ${files.describeReplaced()}\n`);
      replacedBy = undefined;
      fromStart = true;
      since = undefined;
    };
    for (;;) {
      // With no store yet, wait for one (the first write creates it). It is looked for, and the
      // log read, at least once whatever the timeout: opening a server store can take longer than
      // a short --timeout, which ends the following, not the replay of what was there when the
      // watch began.
      // A server that cannot be reached yet (PostgreSQL starting, a network not up) is waited for
      // as one that goes away later is: said on stderr, tried again every RECHECK_MS. Should the
      // --timeout pass before it is ever reached, the watch fails with its error, which says so.
      const outage = new Outage("the store", [], "Waiting for it", deadline);
      let unreachable: unknown;
      // Looked for at least once, after a store removed too: its removal seen as the --timeout passed is an outage then.
      for (let first = true; first || (!interrupted && Date.now() < deadline); first = false) {
        try {
          client = await openSessionClient(location, "read");
        } catch (error) {
          // A store file whose first write is still under way: no store yet, looked for again.
          if (isApexError(error) && error.code === "APEX_E_NO_STORE") {
            if (replacedBy) madeAnew((removed = replacedBy.files));
            unreachable = removed?.gone();
            fromStart = true;
            await sleep(POLL_MS);
            continue;
          }
          if (!outage.began(error)) throw error;
          unreachable = error;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(() => done(), Math.min(RECHECK_MS, Math.max(0, deadline - Date.now())));
            const done = () => {
              clearTimeout(timer);
              wake = undefined;
              resolve();
            };
            wake = done;
          });
          continue;
        }
        outage.ended();
        if (client.empty && replacedBy) madeAnew((removed = replacedBy.files));
        // No store there (LMDB: none made since the removal): the --timeout passing now ends the watch with its error.
        unreachable = client.empty ? removed?.gone() : undefined;
        if (!client.empty) break;
        fromStart = true;
        await client.close();
        client = undefined;
        await sleep(POLL_MS);
      }
      if (unreachable !== undefined && !interrupted) throw gaveUpAfterTimeout(unreachable, options.timeout);
      if (!client) return;
      // The memory of a session that does not hold it: refused as `memory show` refuses it (it printed another session's).
      // Judged by the glob as given, as query judges it: a plain path's `/sessions**` was refused where `/sessions` was read.
      if (client.via === "store" && !/^\/sessions(\/|$)|^\/projects\/config$/.test(reads)) {
        await client.run("memory.owner", {}, async (store) => (await import("./writer.js")).refuseMemoryNotHeld(store, true));
      }
      let resumed = false;
      if (replacedBy) {
        const { files, at, mark } = replacedBy;
        if (mark !== undefined && client.via === "store" && (await client.run("memory.changes", {}, (store) => holdsChange(store, mark)))) {
          replacedBy = undefined;
          since = at;
          resumed = true;
        } else madeAnew(files);
      }
      const watch = resumed ? { ...options, since, withCurrent: false } : fromStart && since === undefined ? { ...options, since: 0, withCurrent: false } : { ...options, since, withCurrent };
      // Read here: wake on the store's own change signal. Through a supervisor or a server: poll it.
      if (client.via === "store") {
        // Its files as opened (LMDB), to tell when it is replaced under the watch (`rm -rf .apex`, then a write makes a new one).
        const files = await storeFiles(location);
        const replaced = await client.run("memory.changes", {}, (store) => followStore(store, glob, watch, deadline, () => interrupted, (done) => (wake = done), () => files?.replaced() === true));
        if (!replaced) return;
        await client.close();
        client = undefined;
        // Which store the new file holds is known once it is opened (above): it may be the same one.
        replacedBy = { files: files!, ...replaced };
        continue;
      }
      // A wait Ctrl-C ends at once: through --remote, the wait between tries grows to BACKOFF_MAX_MS.
      const pause = (ms: number) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => done(), ms);
          const done = () => {
            clearTimeout(timer);
            wake = undefined;
            resolve();
          };
          wake = done;
          if (interrupted) done();
        });
      // Through a supervisor's socket (an agent's watch): a supervisor that has removed its runtime file has shut down
      // as its session ended (a crashed one leaves it). A watch its stop did not signal (one that left the agent's
      // process group and its environment) failed then, APEX_E_RPC, exit 1, where one in the group ended, exit 0.
      const supervisor = client.supervisor;
      const sessionEnded = () => client?.via === "socket" && supervisor !== undefined && readRuntime(location.storeDir, supervisor.session_id)?.pid !== supervisor.pid;
      await follow(client, glob, watch, deadline, () => interrupted, pause, options.timeout, sessionEnded);
      return;
    }
  } finally {
    undo();
    await client?.close();
  }
}

/** Polls the revision log where the session is (inside an agent, the supervisor's, so the agent never opens LMDB). */
async function follow(
  client: SessionClient,
  glob: Glob,
  options: { since?: number; json?: boolean; withCurrent: boolean },
  deadline: number,
  interrupted: () => boolean,
  pause: (ms: number) => Promise<void>,
  timeout?: number,
  sessionEnded: () => boolean = () => false,
): Promise<void> {
  // The revision the watch begins at: the changes up to it (a replay, `--since`) are all printed whatever
  // --timeout says, as the store read in this process prints them. The deadline cut them short: a batch
  // (10,000) or two, or none, then exit 0 as if that were all.
  // Through `apex serve`, a server restarted or a network drop (APEX_E_RPC, APEX_E_TIMEOUT) is waited out as well, from the start.
  // Through `apex serve` it is tried again less and less often, and given up on once it has not answered for RECONNECT_MS.
  const outage = client.via === "remote" ? new ServerOutage(deadline) : new Outage(undefined, undefined, undefined, deadline);
  let head: number | undefined;
  while (head === undefined) {
    try {
      head = ((await client.call("memory.changes", {})) as { revision: number }).revision;
    } catch (error) {
      if (isApexError(error) && error.code === "APEX_E_RPC" && sessionEnded()) return sayEnded();
      if (!outage.began(error)) throw error;
      if (Date.now() >= deadline) throw gaveUpAfterTimeout(error, timeout);
      if (outage.expired()) throw await outage.gaveUp(error, options.since);
      if (interrupted()) return;
      await pause(Math.min(outage.wait(), Math.max(0, deadline - Date.now())));
    }
  }
  outage.ended();
  let since = options.since ?? head;
  if (options.since !== undefined) warnIfAhead(options.since, head);
  if (options.withCurrent) {
    // A page at a time through a supervisor: the current values may come to more than one reply carries (256 MiB of JSON).
    const entries = await (await import("./memory-pages.js")).queryEntries(client, glob.source);
    for (const entry of entries) if (glob.matches(entry.path)) printCurrent(entry.path, entry.value, since, Boolean(options.json));
  }
  let replaying = true;
  /** The server said it is its session's supervisor's own (`sharing.serve`): it stops with the session, for good. */
  let ownServer = false;
  /** Since when every poll found nothing listening at the server's address (connection refused). */
  let refusedSince: number | undefined;
  while (!interrupted() && (replaying || Date.now() < deadline)) {
    let reply: { revision: number; changes: Array<Change & { value: JsonValue | null; overwritten?: boolean }>; ended?: boolean; server?: string };
    try {
      reply = (await client.call("memory.changes", { since, glob: glob.source })) as typeof reply;
    } catch (error) {
      if (isApexError(error) && error.code === "APEX_E_RPC" && sessionEnded()) return sayEnded();
      if (!outage.began(error)) throw error;
      if (replaying && Date.now() >= deadline) throw gaveUpAfterTimeout(error, timeout);
      // A supervisor's own server refusing every connection: nothing listens there any more, as once its session
      // ended. A poll that came only after it closed (the network away as the session stopped) retried for ever.
      refusedSince = ownServer && isApexError(error) && error.details?.connection === "ECONNREFUSED" ? (refusedSince ?? Date.now()) : undefined;
      if (refusedSince !== undefined && Date.now() - refusedSince >= GONE_MS) throw await serverGone(error, since);
      if (outage.expired()) throw await outage.gaveUp(error, since);
      // A supervisor's own server is tried every RECHECK_MS until GONE_MS has passed: no longer wait than that.
      await pause(Math.min(outage.wait(ownServer ? RECHECK_MS : undefined), Math.max(0, deadline - Date.now())));
      continue;
    }
    refusedSince = undefined;
    if (reply.server === "sharing.serve") ownServer = true;
    outage.ended();
    // The supervisor read each value after the whole batch: a put changed again within it was overwritten before
    // (it says so itself of one changed again after its batch; an older one does not).
    const last = lastChanges(reply.changes);
    for (const { overwritten, ...change } of reply.changes) if (glob.matches(change.path)) printChange(change, change.value ?? undefined, Boolean(options.json), overwritten === true || overwrittenAt(last, change));
    // The session ended (through `apex serve`), and every change it made is printed: nothing more will come.
    if (reply.ended === true) return sayEnded();
    // Still behind where the watch began: the next batch at once (a session's frozen memory never changes: no progress, done).
    replaying = reply.revision > since && reply.revision < head;
    since = reply.revision;
    if (replaying) continue;
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
}

/** The watch ends with its session, exit 0: through `apex serve`, or as an agent's through its supervisor's socket. */
function sayEnded(): void {
  process.stderr.write("The session has ended: its memory changes no more, so the watch ends.\n");
}

/**
 * The watch through a supervisor's own server (`sharing.serve`) ends once that server has refused every
 * connection for GONE_MS: it stops with its session, so the session has ended (or its supervisor was
 * killed), and no poll will be answered again at that address unless the session is continued.
 */
async function serverGone(error: unknown, revision: number): Promise<ApexError> {
  const target = process.env.APEX_REMOTE ?? "HOST/SESSION";
  const { parseRemote } = await import("../plugins/sharing/remote.js");
  const { origin, sessionId: session } = parseRemote(target);
  return new ApexError(
    "APEX_E_RPC",
    `${origin} has refused every connection for ${GONE_MS / 1000} s: it is session ${session}'s supervisor's own server (sharing.serve), which stops with the session, so the session has ended (or its supervisor is gone) and the watch ends. Every change up to revision ${revision} was printed.`,
    {
      hint: `On the session's host, \`apex status --session ${session}\` says whether it ended; once it runs again (\`apex start --continue ${session}\`), \`apex --remote ${target} memory watch GLOB --since ${revision}\` prints what changed meanwhile.`,
      details: { connection: isApexError(error) ? error.details?.connection : "ECONNREFUSED", revision },
      cause: error,
    },
  );
}

/** Through --remote: the first wait between tries is RECHECK_MS, each next one twice as long, up to BACKOFF_MAX_MS. */
const BACKOFF_MAX_MS = 16_000;

/** How long a remote watch goes on trying a server that does not answer: 5 minutes, or APEX_RECONNECT_MS (ms). */
const reconnectMs = (): number => (Number(process.env.APEX_RECONNECT_MS) > 0 ? Number(process.env.APEX_RECONNECT_MS) : 300_000);

/** A duration for messages: seconds under two minutes, else minutes. */
function inWords(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 100) / 10} s` : `${Math.round(ms / 6000) / 10} min`;
}

/** The time `--timeout` leaves the watch (`deadline`: Infinity without one), said so: "the --timeout ends the watch in 0.6 s". */
function timeoutIn(left: number): string {
  // Rounded up to a tenth of a second: a wait of 40 ms is not "0 s".
  return left <= 0 ? "the --timeout ends the watch now" : `the --timeout ends the watch in ${inWords(Math.ceil(left / 100) * 100)}`;
}

/**
 * The error of a store or server still out of reach when the watch's --timeout (TIMEOUT seconds) passed: its code,
 * hint and details, and a message that says the watch gave up then (it gave the error alone, as if it had not waited).
 */
function gaveUpAfterTimeout(error: unknown, timeout: number | undefined): unknown {
  if (!isApexError(error) || timeout === undefined) return error;
  return new ApexError(error.code, `${error.message} The watch gave up after its --timeout (${inWords(timeout * 1000)}): it was still out of reach.`, {
    ...(error.hint === undefined ? {} : { hint: error.hint }),
    details: { ...error.details, timeout_seconds: timeout },
    cause: error,
  });
}

/**
 * A store server that cannot be reached for a while (PostgreSQL restarting, a network drop), or
 * through `--remote` the `apex serve` server (restarted, the network gone), does not end a watch: the log is read again from the last revision printed, once a second, so
 * nothing is missed, and stderr says when the store went away and when it came back.
 */
class Outage {
  private since: number | undefined;

  /**
   * WHAT: what went away, in messages; CODES: the errors, besides the store's being unreachable, that say it did; DOING: what the
   * watch does meanwhile; DEADLINE: when --timeout ends the watch (Infinity: none), which what is said of the waiting never goes past.
   */
  constructor(
    private readonly what = "the store",
    private readonly codes: string[] = [],
    private readonly doing = "Still watching",
    protected readonly deadline = Infinity,
  ) {}

  /** True if `error` is the store being out of reach (then waited out), false for any other error. */
  began(error: unknown): boolean {
    if (!isApexError(error) || (error.code !== "APEX_E_STORE_UNREACHABLE" && !this.codes.includes(error.code))) return false;
    if (this.since === undefined) {
      this.since = Date.now();
      // No try promised past the --timeout: it said "retrying every 1 s" with the watch's last 0.2 s left.
      const left = this.deadline - Date.now();
      const plan = left <= RECHECK_MS ? timeoutIn(left) : `retrying every ${RECHECK_MS / 1000} s${Number.isFinite(left) ? ` until ${timeoutIn(left)}` : ""}`;
      process.stderr.write(`warning: ${error.message} ${this.doing}; ${plan} (Ctrl-C ends).\n`);
    }
    return true;
  }

  ended(): void {
    if (this.since === undefined) return;
    process.stderr.write(`warning: ${this.what} is reachable again after ${((Date.now() - this.since) / 1000).toFixed(1)} s; nothing was missed.\n`);
    this.since = undefined;
  }

  /** The wait before the next try. */
  wait(_fixed?: number): number {
    return RECHECK_MS;
  }

  /** Whether to give up: never, for a store (the watch's --timeout ends it). */
  expired(): boolean {
    return false;
  }

  async gaveUp(error: unknown, _revision: number | undefined): Promise<unknown> {
    return error;
  }
}

/**
 * `apex serve` out of reach through --remote (restarted, the network gone, a proxy in front of it
 * answering 502, 503 or 504, a connection cut): tried again after 1 s, then twice as long each
 * time up to BACKOFF_MAX_MS, each try said on stderr, and given up on once it has not answered for
 * reconnectMs() (APEX_E_TIMEOUT). It was tried every second for ever, said once: behind a proxy
 * whose server was gone, the watch waited without end and without a word after its first.
 */
class ServerOutage extends Outage {
  private first: number | undefined;
  private delay = 0;
  private last: unknown;
  private readonly limitMs = reconnectMs();

  constructor(deadline = Infinity) {
    super("the server", ["APEX_E_RPC", "APEX_E_TIMEOUT"], "Still watching", deadline);
  }

  override began(error: unknown): boolean {
    if (!isApexError(error) || (error.code !== "APEX_E_RPC" && error.code !== "APEX_E_TIMEOUT")) return false;
    this.last = error;
    if (this.first === undefined) {
      this.first = Date.now();
      this.delay = 0;
      process.stderr.write(`warning: ${error.message} Still watching; ${this.plan()} (Ctrl-C ends).\n`);
    }
    return true;
  }

  /**
   * How the server is tried again, as far as the watch goes on: a --timeout that ends it first caps
   * what is said (it said "giving up if the server has not answered for 5 min" of a watch that ended
   * 3 s later, and "up to every 16 s" of one with 2 s left).
   */
  private plan(): string {
    const left = this.deadline - Date.now();
    if (left <= RECHECK_MS) return timeoutIn(left);
    const timeoutFirst = left < this.limitMs;
    const upTo = timeoutFirst && left <= BACKOFF_MAX_MS ? "" : ` (up to every ${inWords(BACKOFF_MAX_MS)})`;
    const end = timeoutFirst ? `until ${timeoutIn(left)}` : `giving up if the server has not answered for ${inWords(this.limitMs)}`;
    return `retrying in ${inWords(RECHECK_MS)}, then less and less often${upTo}, ${timeoutFirst ? "" : "and "}${end}`;
  }

  /**
   * The wait before the next try, twice the one before (`fixed` instead, when given): the last try
   * falls as the window ends. Said on stderr, but for the first (the warning that began the outage said it).
   */
  override wait(fixed?: number): number {
    const first = this.delay === 0;
    this.delay = fixed ?? (first ? RECHECK_MS : Math.min(this.delay * 2, BACKOFF_MAX_MS));
    const since = this.first ?? Date.now();
    const wait = Math.max(0, Math.min(this.delay, since + this.limitMs - Date.now()));
    // The --timeout ending the watch before that try: said instead of the try (it said "retrying in 8 s" with 1 s left).
    const left = Math.max(0, this.deadline - Date.now());
    if (!first && wait > 0) {
      const why = isApexError(this.last) ? ` (${this.last.message.replace(/\.$/, "")})` : "";
      process.stderr.write(`warning: the server has not answered for ${inWords(Date.now() - since)}${why}; ${left <= wait ? timeoutIn(left) : `retrying in ${inWords(wait)}`}.\n`);
    }
    return Math.min(wait, left);
  }

  override ended(): void {
    if (this.first === undefined) return;
    process.stderr.write(`warning: the server is reachable again after ${((Date.now() - this.first) / 1000).toFixed(1)} s; nothing was missed.\n`);
    this.first = undefined;
    this.delay = 0;
  }

  override expired(): boolean {
    return this.first !== undefined && Date.now() - this.first >= this.limitMs;
  }

  /** The watch ends: APEX_E_TIMEOUT, how the connection failed last, and the revision every change up to which was printed. */
  override async gaveUp(error: unknown, revision: number | undefined): Promise<ApexError> {
    const target = process.env.APEX_REMOTE ?? "HOST/SESSION";
    const last = isApexError(error) ? error : isApexError(this.last) ? this.last : undefined;
    const printed = revision === undefined ? "Nothing was printed." : `Every change up to revision ${revision} was printed.`;
    const again = revision === undefined ? `\`apex --remote ${target} memory watch …\`` : `\`apex --remote ${target} memory watch GLOB --since ${revision}\` prints what changed meanwhile`;
    return new ApexError("APEX_E_TIMEOUT", `The server has not answered for ${inWords(this.limitMs)} (${(last?.message ?? String(error)).replace(/\.$/, "")}): the watch gives up. ${printed}`, {
      hint: `Check that \`apex serve\` runs there, and the proxy or network in front of it; then ${again}. APEX_RECONNECT_MS (ms) sets how long a watch waits for the server.`,
      details: {
        connection: last?.details?.connection ?? null,
        ...(last?.details?.http_status !== undefined ? { http_status: last.details.http_status } : {}),
        ...(revision === undefined ? {} : { revision }),
        waited_ms: this.limitMs,
      },
      cause: error,
    });
  }
}

/**
 * Follows the revision log of a store read in this process, reading it when the store signals a
 * change and once every RECHECK_MS besides. `setWake` hands out the function that ends a wait.
 */
async function followStore(
  store: Store,
  glob: Glob,
  options: { since?: number; json?: boolean; withCurrent: boolean },
  deadline: number,
  interrupted: () => boolean,
  setWake: (done: (() => void) | undefined) => void,
  replaced: () => boolean,
): Promise<{ at: number; mark: Change | undefined } | undefined> {
  const [{ memoryViewOf }, { boundSessionId }] = await Promise.all([import("../core/session/memory-view.js"), import("../core/session/sessions.js")]);
  // The working memory of the session this command acts on (its own root in a git worktree).
  const view = memoryViewOf(store, boundSessionId(store));
  /** The revision every change up to which was printed. */
  let since = 0;
  // Subscribed before the first read, so that a commit after it is signalled.
  let signalled = false;
  let wake: (() => void) | undefined;
  const unsubscribe = store.subscribe(() => {
    signalled = true;
    wake?.();
  });
  try {
    since = options.since ?? store.revision();
    if (options.since !== undefined) warnIfAhead(options.since, store.revision());
    if (options.withCurrent) {
      for (const entry of view.entries(store.query(view.glob(glob.source)), glob.source)) if (glob.matches(entry.path)) printCurrent(entry.path, entry.value, since, Boolean(options.json));
    }
    const outage = new Outage(undefined, undefined, undefined, deadline);
    for (let first = true; first || (!interrupted() && Date.now() < deadline); first = false) {
      signalled = false;
      try {
        // The log holds no values: a put's value is read now, so it is shown only when nothing changed
        // the path since. Both passes and the reads run in one view of the store.
        readView(store, () => {
          const last = lastChanges(store.changesSince(since));
          // The store read again: said before what was written meanwhile is printed, not after it.
          outage.ended();
          let upTo = since;
          for (const revision of last.values()) upTo = Math.max(upTo, revision);
          // Printed a thousand at a time, their values read together (PostgreSQL: a round trip each, 40,000 changes took 9 s).
          let shown: Array<{ change: Change; overwritten: boolean }> = [];
          const print = () => {
            const wanted = shown.filter(({ change, overwritten }) => change.kind === "put" && !overwritten);
            const values = new Map(readValues(store, wanted.map(({ change }) => change.path)).map((value, i) => [wanted[i]!, value]));
            for (const entry of shown) {
              printChange({ ...entry.change, path: view.unpath(entry.change.path) }, values.get(entry), Boolean(options.json), entry.overwritten);
              since = entry.change.revision; // (after printing: a read that fails is made again)
            }
            shown = [];
          };
          for (const change of store.changesSince(since)) {
            if (change.revision > upTo) break;
            if (view.covers(change.path) && glob.matches(view.unpath(change.path))) shown.push({ change, overwritten: overwrittenAt(last, change) });
            if (shown.length >= 1000) print();
          }
          print();
          since = Math.max(since, upTo);
        });
      } catch (error) {
        if (!outage.began(error)) throw error;
      }
      // A store removed (and perhaps made anew) under the watch signals nothing more: its files are looked at each time.
      if (replaced()) return followedTo(store, since);
      if (signalled || interrupted()) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => done(), Math.min(RECHECK_MS, Math.max(0, deadline - Date.now())));
        const done = () => {
          clearTimeout(timer);
          wake = undefined;
          setWake(undefined);
          resolve();
        };
        wake = done;
        setWake(done);
      });
    }
  } finally {
    unsubscribe();
  }
  // The --timeout passed (or Ctrl-C) since the last look: a store removed meanwhile is said, and the --timeout fails on it.
  return !interrupted() && replaced() ? followedTo(store, since) : undefined;
}

/**
 * The revision the watch has printed every change up to, and the store's change at that revision (none at 0): what
 * tells whether another file holds the same store. Read from the store as opened, which stays readable once replaced.
 */
function followedTo(store: Store, at: number): { at: number; mark: Change | undefined } {
  if (at === 0) return { at, mark: undefined };
  try {
    const [mark] = readView(store, () => [...take(store.changesSince(at - 1), 1)]);
    return { at, mark: mark?.revision === at ? mark : undefined };
  } catch {
    // The old file no longer reads there (it was damaged: what repair replaces): the new one is taken as a store made anew.
    return { at, mark: undefined };
  }
}

/** Whether STORE's log holds MARK: the same change at the same revision, by the same actor at the same time. */
function holdsChange(store: Store, mark: Change): boolean {
  const [change] = readView(store, () => [...take(store.changesSince(mark.revision - 1), 1)]);
  return change !== undefined && change.revision === mark.revision && change.path === mark.path && change.kind === mark.kind && change.actor === mark.actor && change.time === mark.time;
}

function* take<T>(items: Iterable<T>, count: number): Generator<T> {
  if (count <= 0) return;
  for (const item of items) {
    yield item;
    if (--count === 0) return;
  }
}

/**
 * An LMDB store's directory and data file, as they were when the watch opened it (device and inode):
 * a store removed under the watch (`rm -rf .apex`) stays open, and readable, in this process, but
 * nothing writes to it again; the next write makes a new one, which the watch went on never seeing.
 */
class StoreFiles {
  private readonly opened: Array<string | undefined>;

  constructor(private readonly dir: string) {
    this.opened = this.identities();
  }

  private identities(): Array<string | undefined> {
    return [this.dir, join(this.dir, STORE_FILE)].map((path) => {
      const stat = statSync(path, { throwIfNoEntry: false, bigint: true });
      return stat && `${stat.dev}:${stat.ino}`;
    });
  }

  /** True once either is gone or another file or directory. */
  replaced(): boolean {
    return this.identities().some((identity, i) => identity !== this.opened[i]);
  }

  /** The error of a --timeout that passed with the store removed and none made anew. */
  gone(): ApexError {
    return new ApexError("APEX_E_NO_STORE", `The store in ${this.dir} was removed while the watch ran, and no write has made a new one since.`, {
      hint: "Restore the store directory from a backup if it was removed by mistake; `apex memory watch GLOB` then prints what it holds.",
      details: { store: this.dir },
    });
  }

  describeReplaced(): string {
    const what = existsSync(join(this.dir, STORE_FILE)) ? "was replaced by a new store" : "was removed";
    const next = existsSync(join(this.dir, STORE_FILE)) ? "The watch goes on with the new one" : "The watch goes on once a write makes a new one";
    return `the store in ${this.dir} ${what}: the values it held are gone with it. ${next}, printing every change made to it from its first revision (revisions start again at 1).`;
  }
}

/** The files of the project's store when it is LMDB (undefined for a server's store). */
async function storeFiles(location: ProjectLocation): Promise<StoreFiles | undefined> {
  const spec = await resolveStoreSpec(location);
  return spec.backend === "lmdb" ? new StoreFiles(lmdbDataDir(spec)) : undefined;
}

/**
 * `--since` past the store's revision (one from another store, or from before the store was made
 * anew) printed nothing, then nothing of the changes up to it either, without a word.
 */
function warnIfAhead(since: number, revision: number): void {
  if (since <= revision) return;
  process.stderr.write(`${paint("warning:", "yellow", process.stderr)} --since ${since} is past the store's latest revision, ${revision}: the changes up to revision ${since} will not be shown, only those after it (\`--changes-only\` shows every change from now on).\n`);
}

function printCurrent(path: string, value: JsonValue, revision: number, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ revision, kind: "current", path, value })}\n`);
    return;
  }
  process.stdout.write(`${paint(String(revision).padStart(6), "gray")} ${paint("current", "blue")} ${paint(path, "cyan")}  ${JSON.stringify(value)}\n`);
}

/** For each path, the revision of its last change among `changes`. */
function lastChanges(changes: Iterable<Pick<Change, "path" | "revision">>): Map<string, number> {
  const last = new Map<string, number>();
  for (const change of changes) last.set(change.path, change.revision);
  return last;
}

/** True for a put whose path changed again later (its value was gone before it could be read). */
function overwrittenAt(last: Map<string, number>, change: Pick<Change, "path" | "revision" | "kind">): boolean {
  return change.kind === "put" && (last.get(change.path) ?? 0) > change.revision;
}

function printChange(change: Change, value: JsonValue | undefined, json: boolean, overwritten = false): void {
  if (json) {
    // A put whose path changed again since has no value to show (the log keeps none): `overwritten: true`, value null.
    process.stdout.write(`${JSON.stringify({ ...change, value: overwritten ? null : (value ?? null), ...(overwritten ? { overwritten } : {}) })}\n`);
    return;
  }
  const kind = change.kind === "put" ? paint("put    ", "green") : paint("delete ", "red");
  const shown = change.kind !== "put" ? "" : overwritten ? `  ${paint("(overwritten since)", "gray")}` : `  ${JSON.stringify(value ?? null)}`;
  process.stdout.write(`${paint(String(change.revision).padStart(6), "gray")} ${kind} ${paint(change.path, "cyan")}${shown}  ${paint(change.actor, "gray")}\n`);
}
