import { hostname } from "node:os";
import type { ProjectLocation } from "../../core/config/locate.js";
import { parseDurationOption } from "../../cli/durations.js";
import { ApexError } from "../../core/errors.js";
import { outliveOutput, outputOpen, paint, printJson, printLine, table, visibleText } from "../../cli/output.js";
import { shortSessionId } from "../../core/session/names.js";
import { currentActor } from "../../core/actor.js";
import { remoteSessionClient, type SessionClient } from "../../core/session/client.js";
import { openWriteClient } from "../../cli/stopping-retry.js";
import type { GrantView } from "./grants.js";
import type { StatusReport } from "../../core/session/status-report.js";
import { isApexToken, isLoopback, parseHostPort, parseRemote, saveCredential, credentialsFile } from "./remote.js";

import { removeServeFile, servingRecord, writeServeFile } from "./serve-file.js";

const DEFAULT_URL = "http://127.0.0.1:7433";

// ------------------------------------------------------------------------------------ serve

export async function serveCommand(
  location: ProjectLocation,
  options: { listen: string; tlsCert?: string; tlsKey?: string; insecure?: boolean; cors?: string[]; allowHost?: string[]; maxConnections?: string; json?: boolean },
): Promise<void> {
  // Listened for before the server starts and records itself: a SIGTERM sent as soon as the
  // address is printed (a script that starts it, reads the address, stops it) found no handler
  // yet, ended the process at once, and left serve.json naming a dead server (invites then said
  // no server ran, while the supervisor's one it had replaced still served).
  outliveOutput();
  // SIGHUP too (its terminal closed, an ssh session gone), as a supervisor takes it: it ended the process at once,
  // its streams cut without a word to their clients and serve.json left naming a dead server.
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
    process.once("SIGHUP", resolve);
  });
  const { startServer } = await import("./server.js");
  const maxConnections = options.maxConnections === undefined ? undefined : /^\d{1,9}$/.test(options.maxConnections.trim()) ? Number(options.maxConnections) : Number.NaN;
  if (Number.isNaN(maxConnections)) throw new ApexError("APEX_E_USAGE", `--max-connections ${JSON.stringify(options.maxConnections)} is not a whole number.`, { hint: "Give how many connections the server holds at once, e.g. --max-connections 1000 (the default)." });
  const server = await startServer({
    location,
    listen: options.listen,
    tlsCert: options.tlsCert,
    tlsKey: options.tlsKey,
    insecure: options.insecure,
    corsOrigins: options.cors,
    allowHosts: options.allowHost,
    maxConnections,
    // Logged while someone reads it: a log reader that went away does not stop the server.
    log: (line) => void (outputOpen(process.stderr) && process.stderr.write(`${new Date().toISOString()} ${line}\n`)),
  });
  // No store directory yet (served before the first `apex start`): recorded once there is one,
  // else the invites of the sessions started then named the default address, not this server's.
  const record = () => {
    try {
      writeServeFile(location.storeDir, server.url);
      return true;
    } catch {
      return false;
    }
  };
  const pending = record() ? undefined : setInterval(() => record() && clearInterval(pending), 500);
  if (options.json) printJson({ url: server.url, port: server.port, pid: process.pid });
  else printLine(`Serving ${location.projectDir} at ${server.url} (Ctrl-C stops).`);
  await stopped;
  if (pending) clearInterval(pending);
  await server.close();
  removeServeFile(location.storeDir);
}

// ------------------------------------------------------------------------------------ share, unshare, shares

/**
 * Runs a grant method on the session `ref` names: `current`, or any session of the project by
 * id or unique prefix (an ended one too: it stays readable through `apex serve`).
 */
/** How share and unshare name the session: by its name (the reply's; a writer older than it leaves it out), else its uuid's short form. */
function sharedSession(reply: { session_id: string; name?: string | null }): string {
  return typeof reply.name === "string" && reply.name ? visibleText(reply.name) : shortSessionId(reply.session_id);
}

async function withSession<T>(location: ProjectLocation, ref: string, fn: (client: SessionClient, params: { session?: string }) => Promise<T>): Promise<T> {
  const session = ref === "current" ? undefined : ref;
  // Refused by a supervisor that is stopping, the grant is made again once it has exited.
  const client = await openWriteClient(location, { session });
  try {
    return await fn(client, session === undefined ? {} : { session });
  } finally {
    await client.close();
  }
}

/**
 * The address invites name: --url, the server an owner reached with --remote, the one
 * serve.json records (its writer gone, a server it had replaced that still runs), else the
 * default. `stopped`: serve.json names a server that is gone (it crashed, or was killed, before
 * removing it) and none it replaced runs: its address would be a dead port.
 */
function serverUrl(location: ProjectLocation, explicit: string | undefined): { url: string; stopped?: string } {
  if (explicit) return { url: explicit.replace(/\/+$/, "") };
  if (process.env.APEX_REMOTE) return { url: parseRemote(process.env.APEX_REMOTE).origin };
  const written = servingRecord(location.storeDir);
  if (written?.stopped) return written;
  return { url: written ? reachableUrl(written.url) : DEFAULT_URL };
}

/**
 * A server listening on every address (0.0.0.0, [::]) records that address, which no teammate
 * can reach: the invite names this host by its name instead.
 */
function reachableUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (parsed.hostname !== "0.0.0.0" && parsed.hostname !== "[::]") return url;
  parsed.hostname = hostname();
  return parsed.origin;
}

function serverOrigin(url: string): URL {
  let origin: URL | undefined;
  try {
    origin = new URL(url);
  } catch {
    origin = undefined;
  }
  // Port 0 is where `apex serve --listen` picks a free port, never one a server is reached at: its invite's connect line was refused.
  if (!origin || (origin.protocol !== "http:" && origin.protocol !== "https:") || !origin.hostname || origin.port === "0") {
    throw new ApexError("APEX_E_USAGE", `--url ${JSON.stringify(url)} is not an http(s) address of the server.`, { hint: "Write it as http://HOST:PORT or https://HOST[:PORT], as `apex serve` printed it." });
  }
  // The dashboard and the API are at the root of the server's address: an invite under a path (or
  // with a user, a query) would load no page, and its connect line, which keeps only host and port, another server.
  if (origin.pathname !== "/" || origin.search || origin.hash || origin.username || origin.password) {
    throw new ApexError("APEX_E_USAGE", `--url ${JSON.stringify(visibleText(url))} has more than the server's address (a path, a query or a user); nothing was shared.`, {
      hint: `Give the address alone, ${origin.origin}: \`apex serve\` serves its dashboard and API at the root (a proxy in front of it must too).`,
    });
  }
  return origin;
}

export async function shareCommand(location: ProjectLocation, ref: string, user: string, options: { role: string; expires?: string; url?: string; json?: boolean }): Promise<void> {
  let expiresIn: number | null = null;
  // As every duration option reads one (`7D`: Did you mean "7d"?); above 0: a grant that has expired already is no grant.
  if (options.expires !== undefined) expiresIn = parseDurationOption(options.expires, "--expires", { positive: true }) / 1000;
  // Read before the grant is made: a token shown only once must not be lost to an invite that cannot be printed.
  const { url, stopped } = serverUrl(location, options.url);
  const origin = serverOrigin(url);
  const reply = await withSession(location, ref, (client, session) =>
    client.call("share.create", { ...session, user, role: options.role, expires_in_s: expiresIn, actor: currentActor() }),
  ) as { session_id: string; name?: string | null; grant: GrantView; token: string };
  // The port the invite's address reaches (a URL without one: its scheme's), so the connect line reaches the same server.
  const host = `${origin.hostname}:${origin.port || (origin.protocol === "https:" ? 443 : 80)}`;
  // The token rides in the fragment, which a browser never sends to the server. The address as a URL
  // parser writes it (scheme and host in small letters, the scheme's own port left out), not as --url was typed.
  const invite = `${origin.origin}/#session=${reply.session_id}&token=${reply.token}`;
  // Without a scheme, the client takes http for a loopback host and https for any other: the
  // target names its scheme whenever that guess would be wrong (an --insecure server off loopback).
  const guessed = isLoopback(origin.hostname) ? "http:" : "https:";
  const target = `${origin.protocol === guessed && guessed === "http:" ? "" : `${origin.protocol}//`}${host}/${reply.session_id}`;
  const connect = `APEX_TOKEN=${reply.token} apex connect ${target}`;
  // The server serve.json names is gone: no invite names its dead port; the token is printed all the same.
  const hint = stopped
    ? `No server runs for this project: the \`apex serve\` that listened at ${stopped} has stopped. Start \`apex serve\` (or pass --url with the server's address), then send the invite with its address and this token.`
    : undefined;
  if (options.json) {
    printJson({ ...reply.grant, session_id: reply.session_id, name: reply.name ?? null, token: reply.token, url: hint ? null : invite, connect: hint ? null : connect, ...(hint ? { server: "stopped", hint } : {}) });
    return;
  }
  const expires = reply.grant.expires_at ? `until ${reply.grant.expires_at}` : "until revoked";
  // The session as session list prints it (a branch by its name, else its uuid's short form); the addresses below keep its whole id.
  printLine(`Shared session ${sharedSession(reply)} with ${paint(reply.grant.user, "bold")} as ${reply.grant.role} (${expires}).`);
  printLine(paint("The token is shown only this once; send it privately.", "yellow"));
  if (hint) {
    printLine(`  token    ${reply.token}`);
    printLine(paint(hint, "yellow"));
    return;
  }
  printLine(`  open     ${invite}`);
  printLine(`  connect  ${connect}`);
  printLine(`  remote   apex --remote ${target} status   (token from APEX_TOKEN or \`apex login ${host}\`)`);
}

export async function unshareCommand(location: ProjectLocation, ref: string, user: string, json: boolean): Promise<void> {
  const reply = (await withSession(location, ref, (client, session) => client.call("share.revoke", { ...session, user, actor: currentActor() }))) as {
    session_id: string;
    name?: string | null;
    user: string;
    revoked: number;
    derived?: Array<{ user: string; role: string; token_id: string; made_by?: string }>;
  };
  const derived = reply.derived ?? [];
  if (json) {
    printJson({ ...reply, derived });
    return;
  }
  printLine(`Revoked ${reply.user}'s access to session ${sharedSession(reply)} (${reply.revoked} token${reply.revoked === 1 ? "" : "s"}).`);
  if (derived.length > 0) {
    printLine(`Also revoked the grants made with it: ${derived.map((grant) => `${grant.user} (${grant.role})`).join(", ")}.`);
    // Older grants that did not record the grant they were made with: taken as made with the revoked user's.
    const older = derived.filter((grant) => grant.made_by !== undefined);
    if (older.length > 0) {
      printLine(`  ${older.map((grant) => grant.user).join(", ")}: recorded before grants named the grant they were made with; revoked as made by ${[...new Set(older.map((grant) => grant.made_by!.replace(/^user:/, "")))].join(", ")}. Share again if that was wrong.`);
    }
  }
}

export async function sharesCommand(location: ProjectLocation, ref: string, json: boolean): Promise<void> {
  const grants = (await withSession(location, ref, (client, session) => client.call("share.list", session))) as GrantView[];
  if (json) {
    printJson(grants);
    return;
  }
  if (grants.length === 0) {
    // The session as it was named (`current`, or --session's): `share current` of another one shared the session running.
    printLine(`The session is not shared with anyone. Share it: apex session share ${ref} USER --role viewer`);
    return;
  }
  printLine(
    table(
      ["USER", "ROLE", "CREATED", "EXPIRES", "LAST USED", "BY"],
      // BY: who made it; "via USER" for a grant made with USER's grant through `apex serve` (revoked with it).
      // An expired grant is listed until it is revoked: said so, as its token is refused.
      grants.map((grant) => [grant.user, grant.role, grant.created_at, !grant.expires_at ? "never" : Date.parse(grant.expires_at) <= Date.now() ? `${grant.expires_at} (expired)` : grant.expires_at, grant.last_used_at ?? "never", madeBy(grant)]),
    ),
  );
}

/** Who made a grant: its creator, or "via USER" for one made with USER's grant (its creator is then that user). */
function madeBy(grant: GrantView): string {
  return grant.via_token_id ? `via ${grant.created_by.replace(/^user:/, "")}` : grant.created_by;
}

// ------------------------------------------------------------------------------------ connect, login

export async function connectCommand(targetText: string, json: boolean): Promise<void> {
  const target = parseRemote(targetText);
  const remote = remoteSessionClient(targetText)!;
  const { followUntilInterrupted, listenForInterruption } = await import("../../cli/follow.js");
  const me = (await remote.call("whoami", {}, 30_000)) as { user: string; role: string; session_id: string };
  const status = (await remote.call("session.status", {}, 30_000)) as StatusReport;
  if (!json && process.stdout.isTTY) return liveView(target.origin, remote, me, status);
  // Listened for before the first line is printed (follow.ts).
  const interruption = listenForInterruption();
  const { formatEvent, paintStatus } = await import("../../cli/session/format.js");
  const { terminalSafe } = await import("../../cli/terminal-text.js");
  // What the server sent stays on its line: a name or a title must not pass for another line of the report.
  const one = (value: unknown) => terminalSafe(String(value), { singleLine: true });
  // One JSON object per line, the first as the events after it (pretty-printed, it was lines a line reader could not parse).
  if (json) process.stdout.write(`${JSON.stringify({ connected: me, status })}\n`);
  else {
    printLine(`Connected to ${target.origin} as ${paint(one(me.user), "bold")} (${one(me.role)}). Ctrl-C detaches.`);
    const session = status.session;
    if (session) {
      // As apex status and the live view print it: a branch's name with the whole id after it.
      const named = typeof session.name === "string" && session.name ? `${one(session.name)} (${one(session.session_id)})` : one(session.session_id);
      printLine(`Session ${paint(named, "bold")}  ${paintStatus(one(session.status))}`);
      const t = status.tasks;
      if (t) printLine(`  tasks  ${one(t.pending)} pending, ${one(t.active)} active, ${one(t.completed)} completed, ${one(t.failed)} failed`);
      for (const agent of Array.isArray(status.agents) ? status.agents : []) printLine(`  ${one(agent.name).padEnd(12)} ${paintStatus(one(agent.status))}${agent.task ? `  ${one(agent.task)}` : ""}`);
      if (Array.isArray(status.connected) && status.connected.length) printLine(`  connected  ${status.connected.map((user) => `${one(user.user)} (${one(user.role)})`).join(", ")}`);
    }
  }
  // From the last event the status includes: one sent between the status and the subscription
  // is replayed, not missed (before, the stream began at whatever came after the subscription).
  let last = eventSeqOf(status);
  const subscription = remote.subscribe("events.subscribe", last === undefined ? {} : { from_seq: last }, (event) => {
    if (!isEvent(event)) return; // not an event record: nothing a person could read from it
    if (typeof event.seq === "number") {
      if (last !== undefined && event.seq <= last) return; // printed already, or in the status
      last = event.seq;
    }
    if (json) process.stdout.write(`${JSON.stringify(event)}\n`);
    else {
      const e = event as Parameters<typeof formatEvent>[0];
      printLine(`${formatEvent(e)}  ${paint(`[${one(e.actor)}]`, "gray")}`);
    }
  });
  await followUntilInterrupted(subscription, interruption);
  // Ended by the server (the session ended, the server stopped), not by Ctrl-C: said why, on stderr.
  const reason: unknown = await subscription.done;
  if (typeof reason === "string") process.stderr.write(`The event stream ended: ${reason.replace(/[\r\n]+/g, " ")}.\n`);
}

const RECENT_EVENTS = 50;
/** Statuses of a session that has ended: its event stream is not followed again. */
const ENDED = new Set(["completed", "failed", "stopped"]);
const REFRESH_MS = 2000;

/**
 * The terminal view of `apex connect`: the screen redrawn on every event (status fetched
 * again) and every 2 s (CPU, uptime), on an alternate screen that Ctrl-C leaves as it was.
 */
async function liveView(origin: string, remote: SessionClient, me: { user: string; role: string }, first: StatusReport): Promise<void> {
  const { renderMonitor, SCREEN } = await import("./monitor.js");
  const { paint } = await import("../../cli/output.js");
  const { writeControl } = await import("../../cli/terminal-text.js");
  const recent = ((await remote.call("events.list", { last: RECENT_EVENTS }, 30_000).catch(() => [])) as MonitorEvent[]).slice(-RECENT_EVENTS);
  const state: import("./monitor.js").MonitorState = { origin, me, status: first, events: recent, notice: null, now: new Date() };
  const out = process.stdout;
  const draw = () => {
    state.now = new Date();
    // renderMonitor made every text terminal-safe: the frame's own cursor movements pass as they are.
    writeControl(out, SCREEN.frame(renderMonitor(state, out.columns || 100, out.rows || 30, (text, color) => paint(text, color))));
  };
  // Two notices: why the event stream is down, and the last refresh's error while refreshes fail.
  // Before, one notice: a refresh error hid why the stream ended, and stayed once refreshes worked again.
  let streamNotice: string | null = null;
  let refreshError: string | null = null;
  const notice = () => {
    state.notice = [streamNotice, refreshError].filter(Boolean).join(" · ") || null;
  };
  let refreshing = false;
  /**
   * The token was refused (revoked, expired): nothing is asked again. Refreshing every 2 s with it
   * counted as failed logins from this address, and the server then answered every user sharing
   * the address (a tunnel to 127.0.0.1, a NAT) 429 while it slowed this one down.
   */
  let refused = false;
  const refuse = (error: unknown) => {
    refused = true;
    streamNotice = `Access ended: ${(error as Error).message.replace(/\.$/, "")} (Ctrl-C detaches).`;
    refreshError = null;
  };
  const refresh = async () => {
    // Refused: the clock still runs (and the timer keeps the view up until Ctrl-C), nothing is asked.
    if (refused) return draw();
    if (refreshing) return;
    refreshing = true;
    try {
      state.status = (await remote.call("session.status", {}, 30_000)) as StatusReport;
      refreshError = null;
      // The server is back (restarted) and the session still runs: events follow again, from the last one shown,
      // and the notice that said they stopped goes now (a stream that fails again says so), not at the next event.
      if (subscription === null && !ENDED.has(String(state.status?.session?.status))) {
        streamNotice = null;
        follow();
      }
    } catch (error) {
      if ((error as { code?: unknown }).code === "APEX_E_UNAUTHORIZED") refuse(error);
      else refreshError = `Cannot refresh: ${(error as Error).message}`;
    } finally {
      refreshing = false;
    }
    notice();
    draw();
  };
  writeControl(out, SCREEN.enter);
  draw();
  let subscription: import("../../core/rpc/call.js").Subscription | null = null;
  let detached = false;
  const follow = () => {
    // The last event shown; with none (events.list failed), the last one the status includes.
    const last = state.events.at(-1)?.seq ?? eventSeqOf(state.status);
    const current = remote.subscribe("events.subscribe", typeof last === "number" ? { from_seq: last } : {}, (event) => {
      if (!isEvent(event)) return;
      if (typeof event.seq === "number" && typeof last === "number" && event.seq <= last) return; // shown already
      streamNotice = null;
      notice();
      state.events.push(event as MonitorEvent);
      if (state.events.length > RECENT_EVENTS) state.events.shift();
      void refresh();
    });
    subscription = current;
    const ended = (text: string) => {
      if (detached || subscription !== current) return;
      subscription = null;
      streamNotice = text;
      notice();
      draw();
    };
    current.done.then(
      (reason: unknown) => ended(`The session's event stream ended${typeof reason === "string" ? `: ${reason}` : ""} (Ctrl-C detaches).`),
      (error: Error) => {
        if ((error as { code?: unknown }).code === "APEX_E_UNAUTHORIZED" && !detached && subscription === current) {
          subscription = null;
          refuse(error);
          notice();
          draw();
        } else if ((error as { details?: { connection?: unknown } }).details?.connection === "closing") ended("The server is shutting down: events stopped (Ctrl-C detaches).");
        else ended(`The event stream stopped: ${error.message}`);
      },
    );
  };
  const timer = setInterval(() => void refresh(), REFRESH_MS);
  follow();
  out.on("resize", draw);
  const { ignoreFurtherSigterm } = await import("../../cli/follow.js");
  await new Promise<void>((resolve) => {
    // Detaching, a second SIGTERM (a stopping session's, to the agent's group this runs in) must not kill it midway.
    const detach = () => {
      ignoreFurtherSigterm();
      resolve();
    };
    process.once("SIGINT", detach);
    process.once("SIGTERM", detach);
  });
  clearInterval(timer);
  out.off("resize", draw);
  detached = true;
  (subscription as import("../../core/rpc/call.js").Subscription | null)?.close();
  writeControl(out, SCREEN.leave);
  printLine(`Detached from ${origin}.`);
}

type MonitorEvent = import("./monitor.js").MonitorState["events"][number];

/** The seq of the last event a status report includes (undefined from a server that does not say). */
function eventSeqOf(status: StatusReport | null | undefined): number | undefined {
  const seq: unknown = status?.session?.event_seq;
  return typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0 ? seq : undefined;
}

/** An event as the server sends them: an object with a type (a server that is not APEX's may send anything). */
function isEvent(value: unknown): value is MonitorEvent {
  return value !== null && typeof value === "object" && !Array.isArray(value) && typeof (value as { type?: unknown }).type === "string";
}

export async function loginCommand(hostText: string, json: boolean): Promise<void> {
  // The address first: a mistyped one is said before the token is asked for, not after it was typed.
  const target = namesSession(hostText) ? parseRemote(hostText) : undefined;
  // HOST[:PORT] with a scheme too (http://build-box:7433/, as an address is copied), as a target with a session takes one.
  const host = target ? target.host : ((address) => `${address.hostname}:${address.port}`)(parseHostPort(withoutScheme(hostText)));
  const session = target?.sessionId;
  const token = process.env.APEX_TOKEN || (await readLine());
  if (!token) {
    throw new ApexError("APEX_E_USAGE", `No token for ${host}: nothing was read from stdin.`, { hint: `Pipe it in (\`apex login ${visibleText(hostText)} < token.txt\`), give --token-file FILE, or set APEX_TOKEN.` });
  }
  if (!isApexToken(token)) {
    throw new ApexError("APEX_E_USAGE", "That is not an APEX token (apx_…).", { hint: "Copy it from the invite `apex session share` printed." });
  }
  let sessions: string[] = [];
  if (target) {
    process.env.APEX_TOKEN = token;
    const me = (await remoteSessionClient(hostText)!.call("whoami", {}, 30_000)) as { session_id?: unknown };
    // Kept by the reference given and by the session's id: --remote may name it either way.
    sessions = [...new Set([session!, ...(typeof me?.session_id === "string" ? [me.session_id] : [])])];
  }
  const file = saveCredential(host, token, sessions);
  if (json) printJson({ host, session: session ?? null, file });
  else printLine(`Saved the token for ${host} in ${file === credentialsFile() ? file : file} (mode 0600).`);
}

/**
 * HOST[:PORT]/SESSION or HOST:SESSION, as parseRemote reads them, rather than HOST[:PORT]: after
 * the last colon a session is anything but a port number (an id may start with a digit).
 */
function namesSession(hostText: string): boolean {
  const bare = withoutScheme(hostText);
  const colon = bare.lastIndexOf(":");
  return bare.includes("/") || (colon > 0 && !bare.endsWith("]") && !/^\d+$/.test(bare.slice(colon + 1)));
}

/** A host's text without its scheme (in any case) nor trailing slashes: `HTTP://build-box:7433/` is build-box:7433. */
function withoutScheme(hostText: string): string {
  return hostText.replace(/^https?:\/\//i, "").replace(/\/+$/, "");
}

async function readLine(): Promise<string> {
  if (process.stdin.isTTY) return readHidden("Token: ");
  let text = "";
  for await (const chunk of process.stdin) {
    text += chunk as string;
    if (text.includes("\n")) break;
  }
  return text.split("\n")[0]!.trim();
}

/**
 * A line typed on the terminal without echoing it (as `ssh` and `sudo` ask for a password): a
 * token shown on screen ends up in scrollback, screen shares and recordings. Backspace erases;
 * Ctrl-C ends the command (exit 130), Ctrl-D ends the line.
 */
function readHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  // Echo off before the prompt shows: what is typed as soon as it appears is not shown either.
  input.setRawMode(true);
  process.stderr.write(prompt);
  input.setEncoding("utf8");
  input.resume();
  return new Promise((resolve) => {
    let text = "";
    const done = (line: string) => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write("\n");
      resolve(line.trim());
    };
    const onData = (chunk: string) => {
      for (const char of chunk) {
        if (char === "\r" || char === "\n" || char === "\u0004") return done(text);
        if (char === "\u0003") {
          input.setRawMode(false);
          process.stderr.write("\n");
          process.exit(130);
        }
        if (char === "\u007f" || char === "\b") text = text.slice(0, -1);
        else if (char >= " ") text += char;
      }
    };
    input.on("data", onData);
  });
}
