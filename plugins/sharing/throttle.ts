import { createHash } from "node:crypto";
import { UUID_PATTERN } from "../../core/session/names.js";
import { isLoopback } from "./remote.js";

/**
 * Failed logins, for `apex serve`: per client address, after a few failures from one address,
 * each further failure is answered late (100 ms × 2ⁿ, at most 5 s); an address is forgotten
 * once it has not failed for `windowMs`. A success from the address does not forget it: else a
 * client holding one valid token (any grant, of any session) would send it between its guesses
 * and guess at full speed.
 *
 * While a delayed answer is pending, the address's other requests are refused at once, except
 * those with a token this server accepted lately (AcceptedTokens): the users behind one NAT or
 * tunnel keep working while someone at their address fails.
 *
 * Server-wide, at most `globalMaxFailures` failures are answered per `globalWindowMs`: guesses
 * spread over many addresses (IPv6 gives a client plenty, a botnet more) are bounded too. Past
 * it, requests with a token not accepted lately are refused (429, Retry-After) until the window ends.
 *
 * The record is bounded: a server reachable from many addresses keeps at most `maxClients` of
 * them. A Map keeps insertion order and every failure moves its address to the end, so the
 * front holds the addresses that failed longest ago: those are dropped first, the expired ones
 * as soon as a failure is recorded, the oldest still counting only when the record is full.
 */
export interface ThrottleOptions {
  /** Failures from one address answered at once, before replies slow down. */
  freeFailures?: number;
  /** The first delay, doubled at each further failure (100 ms). */
  baseDelayMs?: number;
  /** The longest delay of a reply. */
  maxDelayMs?: number;
  /** An address that has not failed for this long starts again from nothing. */
  windowMs?: number;
  /** Addresses remembered at most. */
  maxClients?: number;
  /** Failures from all addresses together answered per global window (300). */
  globalMaxFailures?: number;
  /** The server-wide window (60 s). */
  globalWindowMs?: number;
}

export class LoginThrottle {
  private readonly failures = new Map<string, { count: number; last: number; until: number }>();
  private readonly freeFailures: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly windowMs: number;
  private readonly maxClients: number;
  private readonly globalMaxFailures: number;
  private readonly globalWindowMs: number;
  private global = { start: -Infinity, count: 0 };

  constructor(options: ThrottleOptions = {}) {
    this.freeFailures = options.freeFailures ?? 3;
    this.baseDelayMs = options.baseDelayMs ?? 100;
    this.maxDelayMs = options.maxDelayMs ?? 5000;
    this.windowMs = options.windowMs ?? 10 * 60_000;
    this.maxClients = Math.max(1, options.maxClients ?? 10_000);
    this.globalMaxFailures = Math.max(1, options.globalMaxFailures ?? 300);
    this.globalWindowMs = options.globalWindowMs ?? 60_000;
  }

  /** Records a failure from `client`; resolves to how long its reply should wait (ms). */
  failed(client: string, now = Date.now()): number {
    if (now - this.global.start >= this.globalWindowMs) this.global = { start: now, count: 0 };
    this.global.count++;
    const known = this.failures.get(client);
    const count = known && now - known.last < this.windowMs ? known.count + 1 : 1;
    this.failures.delete(client);
    this.prune(now);
    const delay = count > this.freeFailures ? Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (count - this.freeFailures - 1)) : 0;
    this.failures.set(client, { count, last: now, until: now + delay });
    return delay;
  }

  /**
   * How long (ms) `client` still waits for the answer to a failure: while it does, its other
   * requests are refused at once (429), before their token is looked at. Else a client would
   * send its guesses side by side, each delayed but all at once.
   */
  waiting(client: string, now = Date.now()): number {
    const entry = this.failures.get(client);
    return entry ? Math.max(0, entry.until - now) : 0;
  }

  /**
   * How long (ms) until failures are answered again server-wide: past `globalMaxFailures` in the
   * current window, the rest of that window; else 0.
   */
  globalWaiting(now = Date.now()): number {
    if (now - this.global.start >= this.globalWindowMs || this.global.count < this.globalMaxFailures) return 0;
    return this.global.start + this.globalWindowMs - now;
  }

  /** How many addresses are remembered now. */
  get size(): number {
    return this.failures.size;
  }

  /** Drops the addresses whose window has passed, then the oldest while there is no room for one more. */
  private prune(now: number): void {
    for (const [client, entry] of this.failures) {
      if (now - entry.last < this.windowMs && this.failures.size < this.maxClients) break;
      this.failures.delete(client);
    }
  }
}

/**
 * The key a client address is throttled under: an IPv4 address as it is (also one mapped into
 * IPv6, `::ffff:1.2.3.4`), and an IPv6 address by its /64 prefix — one host usually holds a whole
 * /64 and could try each of its addresses in turn.
 */
export function clientKey(address: string): string {
  const bare = address.replace(/%.*$/, "");
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(bare);
  if (mapped) return mapped[1]!;
  if (!bare.includes(":")) return bare;
  const [head = "", tail] = bare.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((group) => (Number.parseInt(group, 16) || 0).toString(16))
    .join(":")}::/64`;
}

/**
 * Tokens `apex serve` refused lately, for the session they were sent for: the same token sent
 * again is refused from here, without resolving the session or reading the grant (while no
 * supervisor runs, each lookup opens the store). Only refusals are kept, never an acceptance, so
 * a revoked or expired grant is refused at its next request as before. A refused token stays
 * refused for its session (grants never change their token; a new grant has a new random one),
 * so a refusal by session id is kept `ttlMs` only to bound the record, which holds at most `max`
 * entries (oldest first out) and the token's hash, not the token.
 *
 * A reference that is not an id (a branch's name, an id prefix) may name another session
 * tomorrow — a prefix that was ambiguous, a name that resolves since — so a refusal by such a
 * reference is kept `refTtlMs` only (a few seconds: still no lookup per wrong token), and is
 * kept under the session it resolved to as well, as a refusal by id.
 */
export class RefusedTokens {
  private readonly refused = new Map<string, { message: string; until: number }>();

  constructor(
    private readonly ttlMs = 60_000,
    private readonly max = 10_000,
    private readonly refTtlMs = 2000,
    /** Which references are ids (a refusal by one is kept `ttlMs`). */
    private readonly isId: (ref: string) => boolean = (ref) => UUID_PATTERN.test(ref),
  ) {}

  private static key(sessionRef: string, token: string): string {
    return `${sessionRef}\0${createHash("sha256").update(token).digest("base64")}`;
  }

  /** Why `token` was refused for `sessionRef` lately, or undefined. */
  get(sessionRef: string, token: string, now = Date.now()): string | undefined {
    const key = RefusedTokens.key(sessionRef, token);
    const entry = this.refused.get(key);
    if (entry && entry.until <= now) this.refused.delete(key);
    return entry && entry.until > now ? entry.message : undefined;
  }

  /** `token` was refused for `sessionRef`, which named session `resolved` (if it named one). */
  add(sessionRef: string, token: string, message: string, now = Date.now(), resolved?: string): void {
    this.put(sessionRef, token, message, now + (this.isId(sessionRef) ? this.ttlMs : this.refTtlMs), now);
    if (resolved !== undefined && resolved !== sessionRef && this.isId(resolved)) this.put(resolved, token, message, now + this.ttlMs, now);
  }

  private put(sessionRef: string, token: string, message: string, until: number, now: number): void {
    const key = RefusedTokens.key(sessionRef, token);
    this.refused.delete(key);
    for (const [old, entry] of this.refused) {
      if (entry.until > now && this.refused.size < this.max) break;
      this.refused.delete(old);
    }
    this.refused.set(key, { message, until });
  }

  get size(): number {
    return this.refused.size;
  }
}

/**
 * Tokens `apex serve` accepted lately (their hash, not the token): they pass a throttle's wait
 * (an address's, or the server-wide one), and are authenticated as any other. Only a token that
 * was valid here can be in it, so a guess never passes; one refused since (revoked, expired) is
 * taken out. Bounded like RefusedTokens: at most `max`, each kept `ttlMs` after its last use.
 * With each, whose grant it was and of which session: a token refused once its grant is gone is
 * then said to be that user's revoked access, to its holder only (a guess never was accepted).
 */
export class AcceptedTokens {
  private readonly accepted = new Map<string, { until: number; holder?: TokenHolder }>();

  constructor(
    private readonly ttlMs = 10 * 60_000,
    private readonly max = 10_000,
  ) {}

  private static key(token: string): string {
    return createHash("sha256").update(token).digest("base64");
  }

  has(token: string, now = Date.now()): boolean {
    const entry = this.accepted.get(AcceptedTokens.key(token));
    return entry !== undefined && entry.until > now;
  }

  /** Whose grant `token` was when it was last accepted (within `ttlMs`), if that was said. */
  holder(token: string, now = Date.now()): TokenHolder | undefined {
    const entry = this.accepted.get(AcceptedTokens.key(token));
    return entry !== undefined && entry.until > now ? entry.holder : undefined;
  }

  add(token: string, now = Date.now(), holder?: TokenHolder): void {
    const key = AcceptedTokens.key(token);
    this.accepted.delete(key);
    for (const [old, entry] of this.accepted) {
      if (entry.until > now && this.accepted.size < this.max) break;
      this.accepted.delete(old);
    }
    this.accepted.set(key, { until: now + this.ttlMs, ...(holder ? { holder } : {}) });
  }

  delete(token: string): void {
    this.accepted.delete(AcceptedTokens.key(token));
  }
}

/** The user a token was a grant of, and the session it was for. */
export interface TokenHolder {
  user: string;
  session: string;
}

/**
 * The connections `apex serve` holds at once: at most `max` (each is a file descriptor and a
 * parser, held up to the request timeout by a client that sends half a request and waits), and
 * at most `perAddress` from one client address (clientKey: an IPv6 client by its /64), so that
 * one client cannot take every place. A loopback address is this host's: a local user, or a
 * tunnel or proxy that every remote user comes through; its connections count in `max` only.
 */
export class ConnectionLimit {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  constructor(
    readonly max: number,
    readonly perAddress: number,
  ) {}

  /** A place for a connection from `address`, given back by the function returned; else which limit is reached. */
  admit(address: string | undefined): (() => void) | "server" | "address" {
    const key = address === undefined ? "?" : clientKey(address);
    const held = this.byAddress.get(key) ?? 0;
    if (this.total >= this.max) return "server";
    // (::1's key is its /64, which is not loopback: the address itself is.)
    if (held >= this.perAddress && !isLoopback(key) && !isLoopback(address ?? "")) return "address";
    this.total++;
    this.byAddress.set(key, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.byAddress.get(key) ?? 1) - 1;
      if (left > 0) this.byAddress.set(key, left);
      else this.byAddress.delete(key);
    };
  }

  /** Connections held now (all, or from `address`'s client key). */
  held(address?: string): number {
    return address === undefined ? this.total : (this.byAddress.get(clientKey(address)) ?? 0);
  }
}
