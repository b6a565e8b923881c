import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { userInfo } from "node:os";
import { ApexError } from "../../core/errors.js";
import type { JsonValue, Store, WriteBatch } from "../../core/store/store.js";
import { appendEvent, type SessionService } from "../../core/session/service.js";
import { findSession, resolveSessionId } from "../../core/session/sessions.js";

/**
 * Grants: who may reach a session through `apex serve`, with which role. A grant is a record
 * at /sessions/<sid>/grants/<token id>; the token itself (256 random bits) is shown once, at
 * `apex session share`, and only its sha256 is stored. Revoking deletes the record, so the
 * next request with the token fails.
 *
 * A grant made through `apex serve` (by an owner's token) records the grant it was made with
 * (`via_token_id`) and lives no longer than it: it ends no later (checked when it is made),
 * revoking that grant revokes it too (and what was made with it, in turn), and it authenticates
 * only while the chain of grants that made it still stands.
 *
 *   viewer    reads: status, tasks, checkpoints, memory, logs, events
 *   operator  also acts: pause, resume, checkpoint create, task add/reopen, memory set
 *   owner     everything, sharing included (the project's local user is always owner)
 */
export const ROLES = ["viewer", "operator", "owner"] as const;
export type Role = (typeof ROLES)[number];

export interface GrantRecord {
  token_id: string;
  user: string;
  role: Role;
  token_sha256: string;
  created_at: string;
  created_by: string;
  expires_at: string | null;
  last_used_at: string | null;
  /**
   * The grant whose token made this one through `apex serve`; null when it was made on the
   * server's host (`apex session share`). Revoking that grant revokes this one. Absent in a grant
   * recorded before grants named their maker: see mayHaveMade.
   */
  via_token_id?: string | null;
}

/** What listings show: never the hash. */
export type GrantView = Omit<GrantRecord, "token_sha256">;

export interface Caller {
  user: string;
  role: Role;
  token_id: string;
  session_id: string;
  /** When the caller's grant ends (null: when revoked); a grant it makes may not outlast it. */
  expires_at?: string | null;
}

const TOKEN_PREFIX = "apx";
const TOKEN = /^apx_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const TOKEN_ID = /^[0-9a-f]{16}$/;
/** How many grants may stand between a grant and the host's user (a hand-edited store could make a loop). */
const MAX_CHAIN = 64;
/** No spaces, slashes or control characters: a name is shown in terminals (status, shares) and logs, where an escape sequence would act. */
const USER = /^[^\s/\\\p{Cc}]{1,100}$/u;
/** last_used_at is written at most this often per grant (a request must not cost a commit). */
export const TOUCH_INTERVAL_MS = 60_000;

export const grantsPrefix = (sid: string) => `/sessions/${sid}/grants`;
export const grantPath = (sid: string, tokenId: string) => `${grantsPrefix(sid)}/${tokenId}`;

export function roleAllows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

export function checkRole(value: unknown): Role {
  if (typeof value === "string" && (ROLES as readonly string[]).includes(value)) return value as Role;
  throw new ApexError("APEX_E_USAGE", `Unknown role ${JSON.stringify(value)}.`, { hint: `One of: ${ROLES.join(", ")}.` });
}

export function checkUser(value: unknown): string {
  if (typeof value === "string" && USER.test(value)) return value;
  throw new ApexError("APEX_E_USAGE", `Invalid user name ${JSON.stringify(value)}: 1 to 100 characters, without spaces, slashes or control characters.`, {
    hint: "Use a login or an e-mail address, e.g. alice@example.com.",
  });
}

/**
 * The names this host's own users act under in the audit trail (`user:<login>`: core/actor.ts), and
 * `root`: a grant named so would record its holder's actions as `user:root`, the same as the owner's
 * (or the superuser's) own, and the trail could not tell them apart. Refused (APEX_E_USAGE, exit 2,
 * nothing shared), in any case.
 */
function refuseHostUser(user: string): void {
  const host = [process.env.USER, process.env.LOGNAME, loginName(), "root"].filter((name): name is string => typeof name === "string" && name !== "");
  const taken = host.find((name) => name.toLowerCase() === user.toLowerCase());
  if (taken === undefined) return;
  const who = taken === "root" ? "the superuser" : "this host's own user";
  throw new ApexError("APEX_E_USAGE", `The user name ${JSON.stringify(user)} is reserved: the audit trail records ${who} as user:${taken}, so what a grant of that name did could not be told from what the host's own user did. Nothing was shared.`, {
    hint: "Name the grant after the person it is for, as they are known off this host, e.g. alice@example.com or root@build-box.",
    details: { user, reserved: taken },
  });
}

function loginName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

/**
 * Whether `token` has the shape of an APEX token. Checked before anything else is looked at (the
 * store, the session in the URL): a request without one is refused without touching either.
 */
export function isTokenShaped(token: unknown): token is string {
  return typeof token === "string" && TOKEN.test(token);
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

export function listGrants(store: Store, sessionId: string): GrantRecord[] {
  const out: GrantRecord[] = [];
  for (const { value } of store.query(`${grantsPrefix(sessionId)}/*`)) out.push(value as unknown as GrantRecord);
  return out.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
}

function view(grant: GrantRecord): GrantView {
  const { token_sha256: _hash, ...rest } = grant;
  return rest;
}

/**
 * The caller a token stands for. Every failure is the same APEX_E_UNAUTHORIZED, whether the
 * token is malformed, unknown, revoked or expired, so that a guess learns nothing; the hash
 * comparison takes the same time whatever the token.
 */
export function authenticate(store: Store, sessionId: string, token: unknown, now = Date.now()): Caller & { last_used_at: string | null } {
  const match = typeof token === "string" ? TOKEN.exec(token) : null;
  const grant = match ? (store.get(grantPath(sessionId, match[1]!)) as GrantRecord | undefined) : undefined;
  const expected = grant ? Buffer.from(grant.token_sha256, "hex") : Buffer.alloc(32);
  const given = sha256(typeof token === "string" ? token : "");
  const same = timingSafeEqual(expected, given);
  if (!grant || !same) throw unauthorized(INVALID_TOKEN);
  if (grant.expires_at !== null && Date.parse(grant.expires_at) <= now) {
    throw unauthorized(`The token of ${grant.user} expired at ${grant.expires_at}.`);
  }
  // A grant made with another grant stands only while that one does (revoked, expired, or removed by hand).
  let via = grant.via_token_id;
  for (let depth = 0; via; depth++) {
    const maker = TOKEN_ID.test(via) ? (store.get(grantPath(sessionId, via)) as GrantRecord | undefined) : undefined;
    if (!maker || depth >= MAX_CHAIN || (maker.expires_at !== null && Date.parse(maker.expires_at) <= now)) {
      throw unauthorized(`The token of ${grant.user} was made with a grant that has been revoked or has expired.`);
    }
    via = maker.via_token_id;
  }
  return { user: grant.user, role: grant.role, token_id: grant.token_id, session_id: sessionId, expires_at: grant.expires_at, last_used_at: grant.last_used_at };
}

/** Every refusal of a token that is no grant of the session: the same words whatever the reason, so that a guess learns nothing. */
export const INVALID_TOKEN = "The token is not valid for this session (unknown, revoked or mistyped).";

/**
 * What the holder of a token that was a grant of the session, and is no more, is told (said only
 * to one known to have held it: a stream opened with it, a token accepted lately), as `apex connect` says it.
 */
export function revokedAccess(user: string, sessionId: string): ApexError {
  return unauthorized(`${user}'s access to session ${sessionId} was revoked.`);
}

export function unauthorized(message: string): ApexError {
  return new ApexError("APEX_E_UNAUTHORIZED", message, { hint: "Ask the session's owner for an invite: `apex session share SESSION USER`." });
}

/** The methods behind `apex session share|unshare|shares`; served by the writer (supervisor or direct). */
export function grantMethods(service: SessionService, actorOf: (params: Record<string, unknown>) => string): Record<string, (params: Record<string, unknown>) => unknown> {
  const store = service.store;
  /** The session a grant method is about: `session` (any session of the project, also an ended one), else the service's. */
  const target = (params: Record<string, unknown>): string => (typeof params.session === "string" ? resolveSessionId(store, params.session) : service.sessionId);
  /** The session's name (a branch's; null for another): share and unshare print the session by it. */
  const nameOf = (sessionId: string): string | null => {
    try {
      const name = findSession(store, sessionId)?.name;
      return typeof name === "string" && name ? name : null;
    } catch {
      return null; // a record that does not read names nothing; the grant is made all the same
    }
  };
  /** A write with its audit event in the trail of the session it is about. */
  const write = (sessionId: string, fn: (batch: WriteBatch, record: (type: string, data: Record<string, JsonValue>) => void) => void, actor: string): Promise<void> =>
    sessionId === service.sessionId
      ? service.write((batch, record) => fn(batch, (type, data) => record(type, data)), actor)
      : store.batch((batch) => fn(batch, (type, data) => void appendEvent(batch, sessionId, type, actor, data)), actor).then(() => undefined);
  return {
    "share.create": async (params) => {
      const sessionId = target(params);
      const user = checkUser(params.user);
      refuseHostUser(user);
      const role = checkRole(params.role ?? "viewer");
      const expiresIn = params.expires_in_s;
      if (expiresIn !== undefined && expiresIn !== null && (typeof expiresIn !== "number" || !(expiresIn > 0))) {
        throw new ApexError("APEX_E_USAGE", "--expires must be a positive duration such as 7d or 12h.");
      }
      const now = Date.now();
      // A date JavaScript can still write (about 270,000 years from now): else the grant could not be recorded.
      if (typeof expiresIn === "number" && !Number.isFinite(new Date(now + expiresIn * 1000).getTime())) {
        throw new ApexError("APEX_E_USAGE", `--expires of ${expiresIn} seconds is too far in the future.`, { hint: "Leave --expires out for a grant that lasts until it is revoked." });
      }
      // Set by `apex serve` (never taken from a remote body): the grant the caller's token stands for.
      const via = params.via_token_id;
      if (via !== undefined && via !== null && (typeof via !== "string" || !TOKEN_ID.test(via) || !store.get(grantPath(sessionId, via)))) {
        throw unauthorized("The grant this share would be made with has been revoked. Nothing was shared.");
      }
      const tokenId = randomBytes(8).toString("hex");
      const token = `${TOKEN_PREFIX}_${tokenId}_${randomBytes(32).toString("base64url")}`;
      const grant: GrantRecord = {
        token_id: tokenId,
        user,
        role,
        token_sha256: sha256(token).toString("hex"),
        created_at: new Date(now).toISOString(),
        created_by: actorOf(params),
        expires_at: typeof expiresIn === "number" ? new Date(now + expiresIn * 1000).toISOString() : null,
        last_used_at: null,
        // null, not left out: an absent via_token_id marks a grant recorded before grants named their maker.
        via_token_id: typeof via === "string" ? via : null,
      };
      await write(sessionId, (batch, record) => {
        batch.set(grantPath(sessionId, tokenId), grant as unknown as JsonValue);
        record("share.created", { user, role, token_id: tokenId, expires_at: grant.expires_at, ...(typeof via === "string" ? { via_token_id: via } : {}) });
      }, actorOf(params));
      return { session_id: sessionId, name: nameOf(sessionId), grant: view(grant), token } as unknown as JsonValue;
    },
    "share.revoke": async (params) => {
      const sessionId = target(params);
      const user = checkUser(params.user);
      const all = listGrants(store, sessionId);
      const grants = all.filter((grant) => grant.user === user);
      if (grants.length === 0) {
        throw new ApexError("APEX_E_NOT_FOUND", `Session ${sessionId} is not shared with ${user}.`, { hint: "List its grants with `apex session shares`." });
      }
      const derived = madeWith(all, grants);
      const gone = [...grants, ...derived];
      await write(sessionId, (batch, record) => {
        for (const grant of gone) batch.delete(grantPath(sessionId, grant.token_id));
        // token_ids names every grant that ends, so that the streams of the derived ones close at once too.
        record("share.revoked", {
          user,
          token_ids: gone.map((grant) => grant.token_id),
          ...(derived.length > 0 ? { derived: derived.map((grant) => ({ user: grant.user, token_id: grant.token_id })) } : {}),
        });
      }, actorOf(params));
      return {
        session_id: sessionId,
        name: nameOf(sessionId),
        user,
        revoked: grants.length,
        // made_by: who made an older grant that did not record the grant it was made with (taken as made with theirs).
        derived: derived.map((grant) => ({ user: grant.user, role: grant.role, token_id: grant.token_id, ...(grant.via_token_id === undefined ? { made_by: grant.created_by } : {}) })),
      };
    },
    "share.list": (params) => listGrants(store, target(params)).map(view) as unknown as JsonValue,
    "share.authenticate": (params) => authenticate(store, typeof params.session === "string" ? params.session : service.sessionId, params.token),
    // Any session's grant: `apex serve` reaches ended sessions' grants through the live writer too.
    "share.touch": async (params) => {
      const sessionId = typeof params.session === "string" ? params.session : service.sessionId;
      return { touched: await touchGrant(store, sessionId, typeof params.token_id === "string" ? params.token_id : "") };
    },
  };
}

/**
 * The grants made, through `apex serve`, with any of `roots` — and those made with them, in turn —
 * in the order they were made. Revoking `roots` revokes these too. A grant recorded before grants
 * named their maker (no via_token_id at all) counts as made with one of them when mayHaveMade says so.
 */
export function madeWith(all: GrantRecord[], roots: GrantRecord[]): GrantRecord[] {
  const gone = new Map(roots.map((grant) => [grant.token_id, grant]));
  const found: GrantRecord[] = [];
  const madeWithGone = (grant: GrantRecord): boolean =>
    grant.via_token_id === undefined ? [...gone.values()].some((maker) => mayHaveMade(maker, grant)) : grant.via_token_id !== null && gone.has(grant.via_token_id);
  for (let grew = true; grew; ) {
    grew = false;
    for (const grant of all) {
      if (gone.has(grant.token_id) || !madeWithGone(grant)) continue;
      gone.set(grant.token_id, grant);
      found.push(grant);
      grew = true;
    }
  }
  return found.sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
}

/**
 * Whether an older grant, recorded before grants named the grant they were made with, may have been
 * made through `apex serve` with `maker`: it was made by the maker's user (the server records the
 * caller as `user:NAME`), while the maker stood and was an owner's (only owners share). Revoking
 * the maker then revokes it too: access through a revoked grant must not outlive it, and an owner
 * who meant it can share again. (A grant made on the server's host by a login of the same name
 * cannot be told apart and is revoked as well.)
 */
export function mayHaveMade(maker: GrantRecord, older: GrantRecord): boolean {
  return (
    older.via_token_id === undefined &&
    older.token_id !== maker.token_id &&
    older.created_by === `user:${maker.user}` &&
    maker.role === "owner" &&
    maker.created_at <= older.created_at &&
    (maker.expires_at === null || maker.expires_at >= older.created_at)
  );
}

/**
 * Records that a grant was used now, unless it was within TOUCH_INTERVAL_MS (a request must
 * not cost a commit). Called by the session's writer: the supervisor, or `apex serve` on the
 * store when none runs. Resolves to whether it wrote.
 */
export async function touchGrant(store: Store, sessionId: string, tokenId: string, now = Date.now()): Promise<boolean> {
  if (!/^[0-9a-f]{16}$/.test(tokenId)) return false;
  const path = grantPath(sessionId, tokenId);
  const grant = store.get(path) as GrantRecord | undefined;
  if (!grant) return false;
  if (grant.last_used_at && now - Date.parse(grant.last_used_at) < TOUCH_INTERVAL_MS) return false;
  await store.set(path, { ...grant, last_used_at: new Date(now).toISOString() } as unknown as JsonValue, "plugin:sharing");
  return true;
}
