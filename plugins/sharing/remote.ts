import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { ApexError } from "../../core/errors.js";

/**
 * Where a remote session is: `apex --remote`, `APEX_REMOTE`, `apex connect` and `apex login`
 * accept `HOST[:PORT]/SESSION`, `HOST:SESSION` (default port), and either with an explicit
 * `http://` or `https://`. Without a scheme, a loopback host is reached over http and any
 * other host over https (`apex serve` refuses plain http off loopback unless --insecure).
 * The scheme may be written in any case (HTTP://, Https://), as in any URL.
 */
export interface RemoteTarget {
  /** scheme://host:port, without a trailing slash. */
  origin: string;
  /** host:port, the key of the credentials file. */
  host: string;
  sessionId: string;
}

export const DEFAULT_PORT = 7433;
/** What names a session in a remote target or an API path: an id, a unique id prefix or a branch's name. */
export const SESSION_REF = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isLoopback(host: string): boolean {
  // A host name in any case (LOCALHOST), as DNS reads it: it was reached over https, as a host off loopback is.
  const bare = host.replace(/^\[|\]$/g, "").toLowerCase();
  return bare === "localhost" || bare === "::1" || /^127\.\d+\.\d+\.\d+$/.test(bare);
}

/**
 * Splits `host[:port]` (IPv6 in brackets) into its parts; the port defaults to 7433. The host as a
 * URL parser writes it (small letters, an IPv4 or IPv6 address in its usual form), as requests
 * look their token up by it: a token saved for Build-Box:7433 was not found for build-box:7433.
 */
export function parseHostPort(text: string): { hostname: string; port: number } {
  // A name or an IPv4 address, or IPv6 in brackets: nothing a URL reads otherwise ('@' would make the rest user info).
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9._-]*)(?::(\d{1,5}))?$/.exec(text);
  const port = match?.[2] === undefined ? DEFAULT_PORT : Number(match[2]);
  // A token where the host goes (arguments swapped): refused before its name is looked up in DNS.
  if (match && /^apx_[0-9a-f]{16}_/i.test(match[1]!)) {
    throw new ApexError("APEX_E_USAGE", `Cannot read the host ${JSON.stringify(withoutTokens(text))}: that is a token, not a host.`, {
      hint: "Give the host first and the token on stdin, with --token-file FILE or APEX_TOKEN, e.g. `apex login build-box:7433 < token.txt`.",
    });
  }
  const hostname = match ? urlHostname(match[1]!) : undefined;
  if (hostname === undefined || port < 1 || port > 65535) {
    throw new ApexError("APEX_E_USAGE", `Cannot read the host ${JSON.stringify(withoutTokens(text))}.`, { hint: "Write it as HOST or HOST:PORT, e.g. build-box:7433 or [::1]:7433." });
  }
  return { hostname, port };
}

/** A host name or address as `new URL` writes it; undefined for one it refuses (1.2.3.4.5, 300.1.1.1). */
function urlHostname(host: string): string | undefined {
  try {
    return new URL(`http://${host}/`).hostname;
  } catch {
    return undefined;
  }
}

/**
 * The key of a host in the credentials file, `host:port` as parseHostPort writes it. A key it
 * cannot read (a file edited by hand) stays as it is.
 */
function hostKey(key: string): string {
  try {
    const { hostname, port } = parseHostPort(key);
    return `${hostname}:${port}`;
  } catch {
    return key;
  }
}

/**
 * A target or host as an error message may repeat it: a token in it (an invite's address pasted
 * whole, `…/#session=…&token=apx_…`) shown by its id only, since messages end up in terminals,
 * CI logs and bug reports.
 */
export function withoutTokens(text: string): string {
  return text.replace(/(apx_[0-9a-f]{16}_)[A-Za-z0-9_-]+/g, "$1…");
}

/** The dashboard's invite (`http://HOST:PORT/#session=SID&token=…`): what `connect` takes instead, the token left out. */
function inviteHint(text: string): string | undefined {
  const invite = /^(https?:\/\/[^/#?]+)\/?#(.*)$/i.exec(text.trim());
  const session = invite ? new URLSearchParams(invite[2]).get("session") : null;
  if (!invite || !session || !SESSION_REF.test(session)) return undefined;
  return `That is the dashboard's address (open it in a browser). From a terminal: APEX_TOKEN=<the token after token=> apex connect ${withoutTokens(invite[1]!)}/${session}`;
}

export function parseRemote(text: string): RemoteTarget {
  const usage = () =>
    new ApexError("APEX_E_USAGE", `Cannot read the remote session ${JSON.stringify(withoutTokens(text))}.`, {
      hint: inviteHint(text) ?? "Write it as HOST[:PORT]/SESSION or HOST:SESSION, e.g. build-box:7433/3f2a9c1e-… or https://build-box/3f2a9c1e-….",
    });
  let rest = text.trim();
  let scheme: "http" | "https" | undefined;
  // Case-insensitive, as a URL's scheme is (RFC 3986): HTTP://host/… was refused.
  const explicit = /^(https?):\/\//i.exec(rest);
  if (explicit) {
    scheme = explicit[1]!.toLowerCase() as "http" | "https";
    rest = rest.slice(explicit[0].length);
  }
  let hostPart: string;
  let sessionId: string;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    hostPart = rest.slice(0, slash);
    sessionId = rest.slice(slash + 1).replace(/\/+$/, "");
  } else {
    // HOST:SESSION (the session is not a port number); [v6]:SESSION too.
    const colon = rest.lastIndexOf(":");
    if (colon <= 0 || rest.endsWith("]")) throw usage();
    hostPart = rest.slice(0, colon);
    sessionId = rest.slice(colon + 1);
    // Digits a port could be, after a host without one, are its port: the session is missing. Others are an id
    // or its prefix (`build-box:28261587`, the short id APEX prints), as are digits after HOST:PORT: they were refused.
    if (/^\d{1,5}$/.test(sessionId) && Number(sessionId) <= 65535 && !/^(\[[^\]]*\]|[^:[]*):\d+$/.test(hostPart)) {
      throw new ApexError("APEX_E_USAGE", `Cannot read the remote session ${JSON.stringify(withoutTokens(text))}: ${sessionId} after the host is read as its port, and no session is named.`, {
        hint: `Name the session after a slash: HOST:${sessionId}/SESSION, or HOST[:PORT]/${sessionId} for a session whose id starts with ${sessionId}.`,
      });
    }
  }
  if (!SESSION_REF.test(sessionId)) throw usage();
  const { hostname, port } = parseHostPort(hostPart);
  const chosen = scheme ?? (isLoopback(hostname) ? "http" : "https");
  return { origin: `${chosen}://${hostname}:${port}`, host: `${hostname}:${port}`, sessionId };
}

/** The control endpoint of a remote session, as callSupervisor takes it in place of a socket path. */
export function remoteEndpoint(target: RemoteTarget): string {
  return `${target.origin}/api/sessions/${encodeURIComponent(target.sessionId)}`;
}

export function isRemoteEndpoint(endpoint: string): boolean {
  return endpoint.startsWith("http://") || endpoint.startsWith("https://");
}

// ------------------------------------------------------------------------------ credentials

/** `apex login` keeps tokens here, mode 0600: $APEX_CREDENTIALS, else $XDG_CONFIG_HOME/apex/credentials.json. */
export function credentialsFile(env: NodeJS.ProcessEnv = process.env): string {
  if (env.APEX_CREDENTIALS) return env.APEX_CREDENTIALS;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "apex", "credentials.json");
}

interface SavedToken {
  token: string;
  saved_at: string;
}

interface CredentialsFile {
  version: 1;
  /**
   * Per host: the token saved last (for any session of it), and each session's own, by the
   * reference it was logged in with and by its id. A grant is for one session: a user of two
   * sessions on one server holds two tokens.
   */
  hosts: Record<string, SavedToken & { session?: string; sessions?: Record<string, SavedToken> }>;
}

/**
 * The saved tokens; none while the file does not exist. A file that cannot be read or is not
 * one of ours is APEX_E_CONFIG: treated as empty, `login` would overwrite every token in it.
 */
function readCredentials(): CredentialsFile {
  const file = credentialsFile();
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, hosts: {} };
    if ((error as NodeJS.ErrnoException).code === "EISDIR") throw credentialsDirectory(file);
    throw damagedCredentials(file, (error as NodeJS.ErrnoException).code ?? (error as Error).message, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw damagedCredentials(file, "not JSON", error);
  }
  const hosts = (parsed as Partial<CredentialsFile> | null)?.hosts;
  if (hosts === null || typeof hosts !== "object" || Array.isArray(hosts)) throw damagedCredentials(file, "no \"hosts\" object");
  return { ...(parsed as CredentialsFile), hosts: foldedHosts(hosts) };
}

type HostEntry = CredentialsFile["hosts"][string];

/**
 * The hosts by their keys as parseHostPort writes them: an older APEX kept the host as it was
 * typed (Build-Box:7433), which requests, looking it up in small letters, did not find. Two keys
 * of one host are one entry: the token saved last, and each session's token saved last.
 */
function foldedHosts(hosts: Record<string, HostEntry>): Record<string, HostEntry> {
  // No prototype: a key of a file edited by hand ("__proto__") is a key like any other.
  const folded: Record<string, HostEntry> = Object.create(null);
  const savedAt = (entry: unknown) => String((entry as Partial<SavedToken> | null)?.saved_at ?? "");
  for (const [key, entry] of Object.entries(hosts)) {
    const canonical = hostKey(key);
    const other = Object.hasOwn(folded, canonical) ? folded[canonical] : undefined;
    if (other === undefined) {
      folded[canonical] = entry;
      continue;
    }
    const [older, newer] = savedAt(other) > savedAt(entry) ? [entry, other] : [other, entry];
    const sessions = { ...savedSessions(older) };
    for (const [session, token] of Object.entries(savedSessions(newer))) {
      if (!Object.hasOwn(sessions, session) || savedAt(token) >= savedAt(sessions[session])) sessions[session] = token;
    }
    // The host's token, and the session it was saved for, are the newer entry's alone: the older one's session is not its token's.
    const { sessions: _, ...last } = newer;
    folded[canonical] = { ...last, ...(Object.keys(sessions).length > 0 ? { sessions } : {}) };
  }
  return folded;
}

function credentialsDirectory(file: string): ApexError {
  return new ApexError("APEX_E_USAGE", `The credentials file ${file} is a directory.`, { hint: "Point APEX_CREDENTIALS at a file, e.g. $HOME/.config/apex/credentials.json." });
}

function damagedCredentials(file: string, why: string, cause?: unknown): ApexError {
  return new ApexError("APEX_E_CONFIG", `The credentials file ${file} cannot be read (${why}); nothing was changed.`, {
    hint: "Repair it, or remove it and save the tokens again with `apex login HOST` (APEX_CREDENTIALS points elsewhere).",
    cause,
  });
}

/** Saves `token` for `host`, and for each of `sessions` (the reference logged in with, the session's id). */
export function saveCredential(host: string, token: string, sessions: string[] = []): string {
  const file = credentialsFile();
  const data = readCredentials();
  host = hostKey(host);
  const saved_at = new Date().toISOString();
  // The other sessions' tokens stay: logging in to one session of a server replaced the token of every other.
  const bySession = { ...savedSessions(data.hosts[host]) };
  for (const session of sessions) bySession[session] = { token, saved_at };
  data.hosts[host] = { token, saved_at, ...(sessions.length > 0 ? { session: sessions[0] } : {}), ...(Object.keys(bySession).length > 0 ? { sessions: bySession } : {}) };
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // APEX's own directory (not one APEX_CREDENTIALS names, which may be shared) is owner-only, also when it was made looser.
  if (!process.env.APEX_CREDENTIALS) chmodSync(dirname(file), 0o700);
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    // A new file ("wx"): never through a link or a file someone left at that name.
    rmSync(temporary, { force: true });
    writeFileSync(temporary, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600, flag: "wx" });
    chmodSync(temporary, 0o600);
    renameSync(temporary, file);
  } catch (error) {
    rmSync(temporary, { force: true }); // no half-written copy of a token left beside it
    throw error;
  }
  return file;
}

/**
 * Says, on stderr, when the credentials file can be read by other users of this machine (made
 * by hand, or copied with its mode): the tokens in it are theirs too. `apex login` rewrites it 0600.
 */
function warnIfReadableByOthers(file: string): void {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return;
  }
  if ((mode & 0o077) === 0) return;
  process.stderr.write(`warning: ${file} holds tokens and other users may read it (mode ${mode.toString(8).padStart(4, "0")}): chmod 600 ${file}\n`);
}

/** What is saved for `host` (HOST:PORT, in any case). */
function savedEntry(data: CredentialsFile, host: string): HostEntry | undefined {
  const key = hostKey(host);
  return Object.hasOwn(data.hosts, key) ? data.hosts[key] : undefined;
}

/** A host's per-session tokens, as saved (none in a file an older APEX wrote). */
function savedSessions(entry: CredentialsFile["hosts"][string] | undefined): Record<string, SavedToken> {
  const sessions = entry?.sessions;
  return sessions !== null && typeof sessions === "object" && !Array.isArray(sessions) ? sessions : {};
}

/**
 * The token saved for `session` of a host: logged in by that reference or id, else by the one
 * saved session id it is a prefix of; else undefined (the host's last saved token is used).
 */
function sessionToken(entry: CredentialsFile["hosts"][string] | undefined, session: string | undefined): unknown {
  if (session === undefined) return undefined;
  const sessions = savedSessions(entry);
  if (Object.hasOwn(sessions, session)) return sessions[session]?.token;
  const ids = Object.keys(sessions).filter((ref) => ref.startsWith(session) && /^[0-9a-f]{8}-[0-9a-f-]{27}$/.test(ref));
  return ids.length === 1 ? sessions[ids[0]!]?.token : undefined;
}

/**
 * The session a host's last saved token was saved for, when tokenFor sends it for another
 * `session` that has none of its own (a grant is for one session: the server refuses it); else
 * undefined (a token given, one saved for this session, or one saved for no session in particular).
 */
export function borrowedTokenSession(host: string, session: string): string | undefined {
  if (process.env.APEX_TOKEN) return undefined;
  try {
    const entry = savedEntry(readCredentials(), host);
    if (!entry || sessionToken(entry, session) !== undefined) return undefined;
    return typeof entry.session === "string" && entry.session !== session ? entry.session : undefined;
  } catch {
    return undefined;
  }
}

/** What `apex session share` hands out: `apx_<16 hex id>_<43 base64url characters>`. */
export function isApexToken(text: unknown): text is string {
  return typeof text === "string" && /^apx_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/.test(text);
}

/**
 * The token for a session of a host: APEX_TOKEN (or --token-file, --token, which set it), else
 * the credentials file's for that session, else its host's last saved. One that is not an APEX
 * token is a usage error here, before anything is sent (in a header it could not even be written
 * if it held a line break), and the message never repeats it.
 */
export function tokenFor(host: string, session?: string): string {
  const fromEnv = process.env.APEX_TOKEN;
  const entry = fromEnv ? undefined : savedEntry(readCredentials(), host);
  const saved = fromEnv ? undefined : ((sessionToken(entry, session) as string | undefined) ?? entry?.token);
  if (saved) warnIfReadableByOthers(credentialsFile());
  const token = fromEnv || saved;
  if (!token) {
    // A usage error (exit 2), as `apex login` with no token is: nothing was sent, so no server refused anything
    // (APEX_E_UNAUTHORIZED, exit 4, is a server's refusal of a token sent).
    throw new ApexError("APEX_E_USAGE", `No token for ${host}: none given (--token-file, APEX_TOKEN) and none saved in ${credentialsFile()}; nothing was sent.`, {
      hint: `Save one with \`apex login ${host}\`, or give --token-file FILE or APEX_TOKEN.`,
    });
  }
  if (!isApexToken(token)) {
    const where = fromEnv ? "--token-file / --token / APEX_TOKEN" : `the token saved for ${host} in ${credentialsFile()}`;
    throw new ApexError("APEX_E_USAGE", `${where} is not an APEX token (apx_ followed by 16 hex digits, _ and 43 characters).`, {
      hint: "Copy the token whole from the invite `apex session share` printed (`apex login HOST` saves it).",
    });
  }
  return token;
}
