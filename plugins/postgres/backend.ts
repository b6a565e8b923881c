/**
 * The PostgreSQL storage backend: the storage port (core/store/port.ts) over one PostgreSQL
 * database that several projects, hosts and teams can share.
 *
 * Layout: one schema, `apex`, with a `project` column in every table (not one schema per
 * project): no DDL after the first open, one set of prepared statements whatever the project,
 * projects listed and sized with a query, and two installations pointed at one id meet in the
 * same rows. Every primary key starts with the project, so a project's reads are index ranges.
 *   apex.stores   (project, revision)          the global revision of each project (layout 1: apex.projects)
 *   apex.kv       (project, path, value, codec)
 *                                              the keyspace; path is text COLLATE "C" (UTF-8 byte
 *                                              order), value is APEX's value encoding (value-codec.ts),
 *                                              compressed when that pays (codec, see codec.ts)
 *   apex.log      (project, first, paths, kinds, actor, time)
 *                                              one record per batch, as LMDB's LogRecord
 *   apex.tables   (project, name, keys, vals)  the named tables and their key/value kinds
 *   apex.rows     (project, tbl, key, value, codec)
 *                                              the rows of named tables; key is bytea ordered as
 *                                              LMDB orders the key (keys.ts); value as apex.kv's
 *   apex.groups   (project, tbl, first, n, entries, codec)
 *                                              binary-keyed tables (the hash indexes), many
 *                                              entries to a row (groups.ts)
 *   apex.layout   (version)                    the layout (LAYOUT); apex.projects is a view that
 *                                              refuses an APEX from before layout 2
 *
 * Reads are synchronous over the asynchronous driver through a worker (bridge.ts). A write
 * transaction is BEGIN + pg_advisory_xact_lock on the project (one writer per project, as LMDB's
 * write lock) + the revision, in one crossing; its writes are buffered and sent in one statement
 * at commit (or before a range read that must see them), followed by COMMIT with
 * synchronous_commit on: transaction() resolves only once the commit is durable. A commit that
 * changed the keyspace NOTIFYs the project's channel, which subscribe() LISTENs on.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { currentActor } from "../../core/actor.js";
import { ApexError, isApexError, withDetail } from "../../core/errors.js";
import { compileGlob } from "../../core/store/glob.js";
import { redactUrl as redactStoreUrl } from "../../core/store/open.js";
import { checkPath, keyBound, pathProblem, subtreeRange } from "../../core/store/paths.js";
import type {
  BackendInfo,
  Change,
  Entry,
  JsonValue,
  KeyRange,
  StorageBackend,
  StorageBackendFactory,
  StoreOpenOptions,
  StoreSpec,
  Table,
  TableKey,
  TableOptions,
  WriteBatch,
} from "../../core/store/port.js";
import { deleteOne, setOne } from "../../core/store/port.js";
import { decodeValue, encodeJson, isEncodedValue } from "../value-codec.js";
import { BridgeError, SyncBridge, connectTimeoutMs, driverUrls, fallsBack, sslModeProblem, type Rows, type Statement } from "./bridge.js";
import { storedForm, writtenForm } from "./codec.js";
import { GROUP_BYTES, decodeGroup, encodeGroup, findInGroup, mergeGroup, packGroups, type GroupEntry } from "./groups.js";
import { decodeKey, decodeTableValue, encodeKey, encodeTableValue } from "./keys.js";
import { parsePostgresUrl, serverOf } from "./identity.js";
import { SHAPE_COLUMNS, shapeProblems, tableDefinition } from "./schema-shape.js";

/** The project id used when the store spec names none. */
export const DEFAULT_PROJECT = "default";

/** pg_advisory_xact_lock's first key: "APEX" in ASCII; the second is hashtext(project). */
export const LOCK_CLASS = 0x41504558;
/** The class of the lock a migration holds on its target project (tryCopyLock). */
export const COPY_LOCK_CLASS = LOCK_CLASS + 1;
/** The lock that serialises creating the schema (two first opens at once). */
const SCHEMA_LOCK = [LOCK_CLASS, 0] as const;

/**
 * The layout of the schema this code writes. 1 (implicit: no apex.layout table): a row of
 * apex.rows per table entry, the revisions in apex.projects. 2: binary-keyed tables in
 * apex.groups (groups.ts), the revisions in apex.stores, and apex.projects a view that raises
 * OLDER_APEX, so that an APEX that knows only layout 1 is refused before it reads or writes a
 * row (it would see the hash indexes empty and write its own beside them).
 */
export const LAYOUT = 2;

/** What an APEX that predates layout 2 is told, from the first statement it runs on the schema. */
const OLDER_APEX =
  "This database's APEX schema was upgraded (layout 2: grouped hash index rows) by a newer APEX; this APEX cannot read or write it. Upgrade APEX on this host";

const DDL = [
  `CREATE SCHEMA IF NOT EXISTS apex`,
  `CREATE TABLE IF NOT EXISTS apex.stores (project text COLLATE "C" PRIMARY KEY, revision bigint NOT NULL DEFAULT 0, created timestamptz NOT NULL DEFAULT now())`,
  `CREATE TABLE IF NOT EXISTS apex.kv (project text COLLATE "C" NOT NULL, path text COLLATE "C" NOT NULL, value bytea NOT NULL, codec smallint NOT NULL, PRIMARY KEY (project, path))`,
  `CREATE TABLE IF NOT EXISTS apex.log (project text COLLATE "C" NOT NULL, first bigint NOT NULL, paths text[] NOT NULL, kinds text NOT NULL, actor text NOT NULL, time bigint NOT NULL, PRIMARY KEY (project, first))`,
  `CREATE TABLE IF NOT EXISTS apex.tables (project text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL, keys text NOT NULL, vals text NOT NULL, PRIMARY KEY (project, name))`,
  `CREATE TABLE IF NOT EXISTS apex.rows (project text COLLATE "C" NOT NULL, tbl text COLLATE "C" NOT NULL, key bytea NOT NULL, value bytea NOT NULL, codec smallint NOT NULL, PRIMARY KEY (project, tbl, key))`,
];

/**
 * Layout 2 beside what DDL creates (also the last steps of the upgrade from layout 1). No column
 * has a default: every write names every value, as for `codec`.
 */
const LAYOUT_2 = [
  `CREATE TABLE IF NOT EXISTS apex.groups (project text COLLATE "C" NOT NULL, tbl text COLLATE "C" NOT NULL, first bytea NOT NULL, n integer NOT NULL, entries bytea NOT NULL, codec smallint NOT NULL, PRIMARY KEY (project, tbl, first))`,
  `CREATE TABLE IF NOT EXISTS apex.layout (version integer NOT NULL)`,
  `INSERT INTO apex.layout (version) SELECT ${LAYOUT} WHERE NOT EXISTS (SELECT 1 FROM apex.layout)`,
  `CREATE OR REPLACE FUNCTION apex.older_apex() RETURNS TABLE (project text, revision bigint, created timestamptz) LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '${OLDER_APEX.replace(/'/g, "''")}' USING ERRCODE = 'AX002'; END $$`,
  `CREATE OR REPLACE VIEW apex.projects AS SELECT * FROM apex.older_apex()`,
];


/**
 * A schema made before values were compressed (no `codec` columns) gets them on the first
 * writable open: with a constant default, adding a column changes no row (old rows read as
 * codec 0, their bytes as they are). The default is then dropped, as a new schema has none: every
 * write of this backend names the codec, and an older APEX's write, which does not, fails on
 * the NOT NULL column instead of leaving codec 1 under the raw bytes it would write over a
 * compressed row.
 */
const ADD_CODEC = ["kv", "rows"].flatMap((table) => [
  `ALTER TABLE apex.${table} ADD COLUMN IF NOT EXISTS codec smallint NOT NULL DEFAULT 0`,
  `ALTER TABLE apex.${table} ALTER COLUMN codec DROP DEFAULT`,
]);

/**
 * Everything a write transaction buffered, in one statement with a fixed text (prepared once
 * per connection): keyspace upserts and deletes, log records, the new revision and its NOTIFY,
 * new tables, row upserts and deletes. Empty arrays make a part do nothing.
 */
const FLUSH = `WITH
kv_up AS (INSERT INTO apex.kv (project, path, value, codec) SELECT $1, p, v, c FROM unnest($2::text[], $3::bytea[], $21::smallint[]) AS x(p, v, c)
  ON CONFLICT (project, path) DO UPDATE SET value = EXCLUDED.value, codec = EXCLUDED.codec RETURNING 1),
kv_del AS (DELETE FROM apex.kv WHERE project = $1 AND path = ANY($4::text[]) RETURNING 1),
log AS (INSERT INTO apex.log (project, first, paths, kinds, actor, time)
  SELECT $1, f, string_to_array(p, E'\\n'), k, a, t FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[], $9::bigint[]) AS x(f, p, k, a, t) RETURNING 1),
rev AS (UPDATE apex.stores SET revision = $10::bigint WHERE project = $1 AND $11::boolean RETURNING 1),
note AS (SELECT pg_notify($12, $10::bigint::text) WHERE $11::boolean),
tbl AS (INSERT INTO apex.tables (project, name, keys, vals) SELECT $1, n, k, v FROM unnest($13::text[], $14::text[], $15::text[]) AS x(n, k, v)
  ON CONFLICT DO NOTHING RETURNING 1),
row_up AS (INSERT INTO apex.rows (project, tbl, key, value, codec) SELECT $1, t, k, v, c FROM unnest($16::text[], $17::bytea[], $18::bytea[], $22::smallint[]) AS x(t, k, v, c)
  ON CONFLICT (project, tbl, key) DO UPDATE SET value = EXCLUDED.value, codec = EXCLUDED.codec RETURNING 1),
row_del AS (DELETE FROM apex.rows r USING unnest($19::text[], $20::bytea[]) AS x(t, k) WHERE r.project = $1 AND r.tbl = x.t AND r.key = x.k RETURNING 1),
grp_up AS (INSERT INTO apex.groups (project, tbl, first, n, entries, codec) SELECT $1, t, f, n, e, c FROM unnest($23::text[], $24::bytea[], $25::integer[], $26::bytea[], $27::smallint[]) AS x(t, f, n, e, c)
  ON CONFLICT (project, tbl, first) DO UPDATE SET n = EXCLUDED.n, entries = EXCLUDED.entries, codec = EXCLUDED.codec RETURNING 1),
grp_del AS (DELETE FROM apex.groups g USING unnest($28::text[], $29::bytea[]) AS x(t, f) WHERE g.project = $1 AND g.tbl = x.t AND g.first = x.f RETURNING 1)
SELECT (SELECT count(*) FROM kv_up), (SELECT count(*) FROM kv_del), (SELECT count(*) FROM log), (SELECT count(*) FROM rev),
  (SELECT count(*) FROM note), (SELECT count(*) FROM tbl), (SELECT count(*) FROM row_up), (SELECT count(*) FROM row_del),
  (SELECT count(*) FROM grp_up), (SELECT count(*) FROM grp_del)`;

/**
 * The rows of apex.groups the given keys fall in (for each key, the row with the greatest first
 * ≤ it), each once: what a write transaction merges its writes to grouped tables into.
 */
const GROUPS_OF_KEYS = `SELECT g.tbl, g.first, g.entries, g.codec FROM apex.groups g
  JOIN (SELECT DISTINCT k.t, (SELECT first FROM apex.groups WHERE project = $1 AND tbl = k.t AND first <= k.key ORDER BY first DESC LIMIT 1) AS f
    FROM unnest($2::text[], $3::bytea[]) AS k(t, key)) w ON g.tbl = w.t AND g.first = w.f
  WHERE g.project = $1 ORDER BY g.tbl, g.first`;

/** Rows of apex.groups by table and first key, in order. */
const GROUPS_BY_FIRST = `SELECT g.tbl, g.first, g.entries, g.codec FROM apex.groups g JOIN unnest($2::text[], $3::bytea[]) AS w(t, f) ON g.tbl = w.t AND g.first = w.f
  WHERE g.project = $1 ORDER BY g.tbl, g.first`;

/**
 * Up to this many keys written to grouped tables, a transaction finds their rows with an index
 * probe per key; past it, from the list of every row's first key (a probe costs ~6 µs of the
 * server's time, a first key in the list ~0.1 µs: 16k probes took 90 ms, the 2k first keys 0.2).
 */
const PROBED_KEYS = 256;

/** A keyset-paged scan: the table, its ordered key column, the fixed conditions and the range. */
interface ScanOptions<K extends string | Buffer> {
  from: string;
  keyColumn: string;
  where: string[];
  params: unknown[];
  range: KeyRange<K>;
  values: boolean;
  doing: string;
}

/** What a PostgreSQL text value cannot hold: NUL, and unpaired surrogates (no UTF-8). */
const NOT_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** An actor the revision log cannot record (LMDB refuses it too). */
function badActor(actor: string): ApexError {
  return new ApexError("APEX_E_INTERNAL", `The actor ${JSON.stringify(actor)} cannot be recorded in the revision log: it holds NUL or an unpaired surrogate. Nothing was written.`);
}

/** Paths read per statement by getEncodedMany. */
const MANY_PATHS_CHUNK = 2000;

/** Bytes of records a write transaction keeps to read again (see Transaction.cache). */
const TX_CACHE_BYTES = 8 * 1024 * 1024;

/** A buffered transaction flushes once its writes pass this many bytes (a large import stays in bounded memory). */
const FLUSH_BYTES = 16 * 1024 * 1024;
/** Range reads fetch pages that grow from the first (often all a caller wants) to the last. */
const FIRST_PAGE = 128;
const MAX_PAGE = 4096;

interface LogRecord {
  first: number;
  paths: string[];
  kinds: string;
  actor: string;
  time: number;
}

interface PendingRow {
  key: Buffer;
  /** null: removed. */
  value: Buffer | null;
}

/** The state of an open write transaction. */
interface Transaction {
  /** The revision when it began (under the project's lock). */
  base: number;
  /** The bridge's connection it runs on (SyncBridge.connection): it cannot go on on another. */
  connection: number;
  /** Log records, in order; `changes` is the number of paths they hold. */
  log: LogRecord[];
  changes: number;
  /** Keyspace writes not yet sent: encoded value, or null for a delete. */
  kv: Map<string, Buffer | null>;
  /** Table writes not yet sent, by table and by key (as latin1 text, a cheap map key). */
  rows: Map<string, Map<string, PendingRow>>;
  /** Tables first written in this transaction. */
  newTables: Map<string, TableOptions>;
  /**
   * Records this transaction read or sent, by path or by table and key (null: none): under the
   * project's lock nobody else writes them, so a second read needs no round trip (a checkpoint
   * reads the journal's header four times). Bounded by `cachedBytes`.
   */
  cache: { kv: Map<string, Buffer | null>; rows: Map<string, Buffer | null> };
  cachedBytes: number;
  /** Revision changes already sent (the NOTIFY goes with the last flush). */
  /** How many flushes this transaction made (a batch's log record ends at a flush). */
  flushes: number;
  bytes: number;
  pending: boolean;
}

/** A bytea from the worker (structured clone makes Buffers plain Uint8Arrays) as a Buffer, without a copy. */
function toBuffer(value: unknown): Buffer {
  const bytes = value as Uint8Array;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The URL without its password (user info and `password=` parameters): for messages, `info.location` and logs. */
export function redactUrl(url: string): string {
  return redactStoreUrl(url, "");
}

/** The server-side database name in a URL (for messages). */
function databaseOf(url: string): string {
  try {
    // (a URL without one: the database named as the driver names it, after the user, or PGDATABASE)
    return serverOf(parsePostgresUrl(url)).database;
  } catch {
    return "(unknown)";
  }
}

/** SQLSTATEs a connection made again can be refused with: bad password, no such role or access, the database gone, no connection to spare. */
const RECONNECT_REFUSALS = new Set(["28P01", "28000", "3D000", "53300"]);
/**
 * Node's codes for a server that cannot be reached, and PostgreSQL's for one shutting down or
 * starting (57P01-57P03) or that ended an idle connection (57P05, idle_session_timeout: its word
 * reaches a statement sent as it came, which failed as a bare store error, and a watch gave up).
 */
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EAI_AGAIN", "ENOENT", "ECONNRESET", "EPIPE", "EPROTO", "57P01", "57P02", "57P03", "57P05"]);

/**
 * Where a failure happened, for its message and its details: the store URL without its password
 * (as the user gave it) and, once a store is open, the project id, each its own detail (not
 * joined into one string a script would have to take apart).
 */
type Where = string | { url: string; project: string };

function shownAt(where: Where): string {
  return typeof where === "string" ? where : `${where.url} (project ${JSON.stringify(where.project)})`;
}

function whereDetails(where: Where): { url: string; project?: string } {
  return typeof where === "string" ? { url: where } : { url: where.url, project: where.project };
}

/**
 * SQLSTATE 42501: the role may not do what the command needs. A role that may only read gets this
 * from the first write (or, on a database without APEX's schema yet, from creating it): refused,
 * naming the privilege to grant, never a bare driver message.
 */
function permissionError(where: Where, message: string, doing: string, cause: unknown): ApexError {
  return new ApexError("APEX_E_STORE_PERMISSION", withDetail(`PostgreSQL at ${shownAt(where)} refused ${doing}`, message), {
    hint: "The store URL's role lacks a privilege here. Read commands need USAGE on schema apex and SELECT on its tables, nothing more; writes also INSERT, UPDATE and DELETE on them (and, on a database without the schema, CREATE to make it).",
    details: { ...whereDetails(where), sqlstate: "42501" },
    cause,
  });
}

/**
 * A keyspace record whose bytes do not decode (changed by hand, or a compressed row that no longer
 * inflates): damage, as on LMDB, not a failure of APEX (APEX_E_INTERNAL, "not an encoded value"):
 * APEX_E_STORE_DAMAGED naming the record, with the way to find and mend it.
 */
function damagedRecordError(where: Where, path: string, cause: unknown): ApexError {
  return new ApexError("APEX_E_STORE_DAMAGED", withDetail(`The PostgreSQL store at ${shownAt(where)} is damaged: the record at ${path} does not decode`, (cause as Error).message), {
    hint: "Run `apex session validate` to see what is damaged, then `apex session repair ID` to recover what still verifies.",
    details: { ...whereDetails(where), path },
    cause,
  });
}

/**
 * A COMMIT whose connection was lost once it was sent: the server may have committed it before
 * the answer was lost, so the caller is not told that nothing was written (a write run again
 * might then be written twice). A COMMIT that never left (the connection found lost first) failed
 * as a whole, as any statement of the transaction.
 */
function commitUnknown(error: unknown): unknown {
  const cause = isApexError(error) ? error.cause : undefined;
  if (!isApexError(error) || error.code !== "APEX_E_STORE_UNREACHABLE" || !(cause instanceof BridgeError) || cause.failure.unsent) return error;
  return new ApexError("APEX_E_STORE_UNREACHABLE", `${error.message.replace(/\.$/, "")}, after the COMMIT was sent: it may or may not have been committed.`, {
    hint: "Read back what it wrote (`apex memory show PATH`, `apex status`) before running it again.",
    details: { ...(error.details ?? {}), committed: "unknown" },
    cause: error,
  });
}

/** A connection failure as the ApexError a user can act on. */
export function connectError(url: string, error: unknown): ApexError {
  if (isApexError(error)) return error;
  const failure = error instanceof BridgeError ? error.failure : { message: String((error as Error)?.message ?? error), code: (error as { code?: string })?.code };
  const where = redactUrl(url);
  const code = failure.code ?? "";
  // The driver's words when the server asks for a password and none was given ("client password must be a string").
  const none = /client password must be a (?:non-empty )?string/.test(failure.message);
  if (code === "28P01" || code === "28000" || /password|SASL|authentication/i.test(failure.message)) {
    return new ApexError("APEX_E_STORE_AUTH", none ? `PostgreSQL at ${where} asks for a password, and none was given (none in the URL, in PGPASSWORD or in ~/.pgpass).` : withDetail(`PostgreSQL at ${where} refused the credentials`, failure.message), {
      hint:
        none && process.env.APEX_AGENT
          ? "An agent is given the store's URL without its password: its apex commands act through its supervisor, and one that opens the store itself needs the password in ~/.pgpass (or PGPASSFILE), or PGPASSWORD in the agent's env."
          : "Check the user and password in the store URL (store.url in apex.config.yaml, or APEX_STORE_URL), or the server's pg_hba.conf.",
      details: { url: where, sqlstate: code || undefined },
      cause: error,
    });
  }
  if (code === "42501") return permissionError(where, failure.message, "opening the store", error);
  if (code === "55P03") return lockError(where, failure.message, "opening the store", error);
  if (code === "25006") return readOnlyServerError(where, failure.message, "opening the store to write", error);
  if (code === "3D000") {
    const name = databaseOf(url);
    return new ApexError("APEX_E_STORE_NO_DATABASE", `The database ${JSON.stringify(name)} does not exist at ${where}.`, {
      hint: `Create it first (\`createdb ${name}\`, or CREATE DATABASE), then run the command again.`,
      details: { url: where, database: name },
      cause: error,
    });
  }
  if (code === "53300") {
    // Every connection the server (max_connections) or the role (CONNECTION LIMIT) allows is in use: a
    // state that passes, as a restart does, so a supervisor waits it out while its lease holds.
    return new ApexError("APEX_E_STORE_UNREACHABLE", withDetail(`PostgreSQL at ${where} has no connection to spare`, failure.message), {
      hint: "Its connections are all in use (the server's max_connections, or the role's CONNECTION LIMIT): run again once other clients are done, or raise the limit.",
      details: { url: where, code },
      cause: error,
    });
  }
  if (UNREACHABLE.has(code)) {
    return new ApexError("APEX_E_STORE_UNREACHABLE", withDetail(`Cannot reach PostgreSQL at ${where}`, failure.message), {
      hint: "Is the server running, and are the host and port in the store URL right (store.url in apex.config.yaml, or APEX_STORE_URL)?",
      details: { url: where, code },
      cause: error,
    });
  }
  const hint = serverSettingHint(code, failure.message);
  return new ApexError("APEX_E_STORE", withDetail(`Cannot open the PostgreSQL store at ${where}`, failure.message), { ...(hint ? { hint } : {}), details: { url: where, code: code || undefined }, cause: error });
}

/** Node's codes for a TLS certificate that did not pass the check (an unknown CA, self-signed, another host name, expired). */
const TLS_CERTIFICATE = /^(?:ERR_TLS_CERT_ALTNAME_INVALID|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT(?:_LOCALLY)?|CERT_(?:HAS_EXPIRED|NOT_YET_VALID|UNTRUSTED|REJECTED|SIGNATURE_FAILURE))$/;

/**
 * What to change for a failure that a setting of the server, database or role makes (the bare
 * driver message said nothing of it): a statement_timeout shorter than APEX's statements (the
 * first open's schema, an import, a migration), SSL asked of a server that has none, a
 * certificate that did not pass sslmode's check.
 */
function serverSettingHint(code: string | undefined, message: string): string | undefined {
  if (code === "57014" && /statement timeout/i.test(message)) {
    return "The server cancelled it at its statement_timeout (set for the database or role). APEX's statements take as long as their data (the first open's schema, an import, a migration): raise it for APEX's role, or end it for APEX's connections in the store URL: ?options=-c%20statement_timeout%3D0. Nothing of it was written.";
  }
  if (code !== undefined && TLS_CERTIFICATE.test(code)) {
    return "The server's certificate did not pass the check the URL's sslmode asks for (verify-full: signed by the CA in sslrootcert=FILE, else by one the system trusts, and issued for the URL's host name; verify-ca: signed by sslrootcert's CA). Give the CA that signed it in sslrootcert, connect by the name it was issued for, or use sslmode=require to encrypt without checking it, as psql does.";
  }
  if (/does not support SSL/i.test(message)) {
    return "The store URL asks for SSL (sslmode=… or ssl=true), which this server does not offer: drop it from the URL (or write sslmode=prefer: SSL where the server offers it), or enable SSL on the server.";
  }
  return undefined;
}

/**
 * Bridges kept after exists() for the open() that usually follows it, one per URL (the worker
 * does not hold the process open).
 */
const idle = new Map<string, SyncBridge>();

/**
 * How long the server lets a connection sit idle inside a transaction before it ends it, and
 * with it the transaction and the project's write lock. APEX's transactions are synchronous:
 * between two statements of one only its own computation runs (milliseconds). What sits idle
 * that long is a frozen process (a laptop put to sleep, a stopped process, a host cut off)
 * holding the lock every writer of the project waits for, on every host: a takeover included.
 * A URL may set its own (`options=-c idle_in_transaction_session_timeout=…`).
 */
export const IDLE_IN_TRANSACTION_TIMEOUT_S = 60;

/**
 * How long a statement waits for a lock (the project's write lock, a row, a table) before it
 * fails with APEX_E_LOCKED. Longer than IDLE_IN_TRANSACTION_TIMEOUT_S, so a writer frozen by
 * APEX holds the others up only until the server ends its transaction, as before; what makes a
 * statement fail is a lock held by something else: a psql session left inside a transaction that
 * touched APEX's rows, an ALTER TABLE, VACUUM FULL or REINDEX. Without it a command waited
 * CALL_TIMEOUT_MS (10 min) and a supervisor its lease out. A URL may set its own
 * (`options=-c lock_timeout=…`). A supervisor's write transactions wait less (lockWaitMs).
 */
export const LOCK_TIMEOUT_S = 75;

/** The session settings of every connection (made again with them after a loss). */
export function sessionSettings(url: string): string[] {
  const settings = ["SET synchronous_commit = on", "SET client_min_messages = warning"];
  let options = "";
  try {
    options = parsePostgresUrl(url).searchParams.get("options") ?? "";
  } catch {
    /* checked before any connection (urlOf) */
  }
  if (!options.includes("idle_in_transaction_session_timeout")) settings.push(`SET idle_in_transaction_session_timeout = '${IDLE_IN_TRANSACTION_TIMEOUT_S}s'`);
  if (!options.includes("lock_timeout")) settings.push(`SET lock_timeout = '${LOCK_TIMEOUT_S}s'`);
  return settings;
}

/**
 * SQLSTATE 25006 on a store opened to write: the server takes only reads (a hot standby, such as
 * a replica or a former primary after a failover, or default_transaction_read_only set for the
 * database or the role). A store opened read-only never sends a write (assertWritable).
 */
function readOnlyServerError(where: Where, message: string, doing: string, cause: unknown): ApexError {
  return new ApexError("APEX_E_STORE", `PostgreSQL at ${shownAt(where)} accepts only reads: ${message} (${doing}); nothing was written.`, {
    hint: "The store URL names a hot standby (a replica, or the old primary after a failover): point it at the primary. Or default_transaction_read_only is on for the database or the role (ALTER DATABASE … or ALTER ROLE … SET default_transaction_read_only = off). Read commands work meanwhile.",
    details: { ...whereDetails(where), sqlstate: "25006" },
    cause,
  });
}

/**
 * SQLSTATE 55P03 (lock_timeout): a statement waited too long for a lock another connection
 * holds. Its transaction failed as a whole: nothing of it was written.
 */
function lockError(where: Where, message: string, doing: string, cause: unknown): ApexError {
  return new ApexError("APEX_E_LOCKED", `PostgreSQL at ${shownAt(where)}: gave up ${doing}, waiting for a lock another connection holds (${message}); nothing was written.`, {
    hint: "Another connection holds APEX's rows or tables: a psql session left inside a transaction, an ALTER TABLE, VACUUM FULL or REINDEX. Find it with `SELECT pid, usename, application_name, state, xact_start FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'`, end it (COMMIT, ROLLBACK or pg_terminate_backend(pid)), then run the command again.",
    details: { ...whereDetails(where), sqlstate: "55P03" },
    cause,
  });
}

function takeBridge(url: string): SyncBridge {
  const kept = idle.get(url);
  if (kept) {
    idle.delete(url);
    return kept;
  }
  const bridge = new SyncBridge();
  try {
    bridge.connect(url, sessionSettings(url));
  } catch (error) {
    void bridge.close();
    throw connectError(url, error);
  }
  return bridge;
}

function keepBridge(url: string, bridge: SyncBridge): void {
  const previous = idle.get(url);
  idle.set(url, bridge);
  if (previous) void previous.close();
}

function projectOf(spec: StoreSpec): string {
  const project = spec.project ?? DEFAULT_PROJECT;
  if (typeof project !== "string" || project.length === 0 || project.length > 255 || /[\u0000-\u001f]/.test(project)) {
    throw new ApexError("APEX_E_CONFIG", `Invalid project id ${JSON.stringify(project)} for the PostgreSQL store.`, {
      hint: "A project id is 1 to 255 printable characters.",
    });
  }
  return project;
}

function urlOf(spec: StoreSpec): string {
  if (!spec.url) {
    throw new ApexError("APEX_E_CONFIG", "The postgres store backend needs a URL.", {
      hint: "Set store.url in apex.config.yaml (store: { backend: postgres, url: postgres://user@host/db }) or APEX_STORE_URL.",
    });
  }
  const problem = postgresUrlProblem(spec.url);
  if (problem) {
    throw new ApexError("APEX_E_CONFIG", `The PostgreSQL store URL ${redactUrl(spec.url)} ${problem}.`, {
      hint: "Fix store.url in apex.config.yaml, or APEX_STORE_URL: postgres://user:password@host:5432/database (a port from 1 to 65535; in the user and password, write / ? # @ : as %2F %3F %23 %40 %3A).",
      details: { url: redactUrl(spec.url) },
    });
  }
  const ssl = sslModeProblem(spec.url);
  if (ssl) throw new ApexError("APEX_E_CONFIG", `The PostgreSQL store URL ${redactUrl(spec.url)} ${ssl.problem}.`, { hint: ssl.hint, details: { url: redactUrl(spec.url) } });
  return spec.url;
}

/** libpq's list of hosts (host1:5432,host2:5432), which node-postgres does not take (it looked up "h1,h2", or read "5432,h2:5432" as a bad port). */
const SEVERAL_HOSTS = "names several hosts (host1,host2: libpq's failover list), which APEX's PostgreSQL driver does not take: name one host";

/** What makes `url` unusable as a postgres:// URL (the driver parses it with WHATWG URL), or undefined. */
export function postgresUrlProblem(url: string): string | undefined {
  // Any other scheme (`lmdb:PATH` left as the url of `backend: postgres`, http://…) was read by the driver as no server named: localhost:5432.
  if (!/^postgres(ql)?:\/\//i.test(url)) return "is not a postgres:// (or postgresql://) URL";
  try {
    const parsed = parsePostgresUrl(url);
    // (WHATWG URL takes port 0, which no server listens on)
    if (parsed.port === "0") return 'has a bad port "0"';
    if ((parsed.searchParams.get("host") || decodeURIComponent(parsed.hostname)).includes(",")) return SEVERAL_HOSTS;
    // The driver reads a port= parameter over the URL's, and failed on a bad one as it connected (ERR_SOCKET_BAD_PORT, exit 1).
    const port = parsed.searchParams.get("port");
    if (port !== null && port !== "" && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) return `has a bad port ${JSON.stringify(port)}`;
  } catch {
    // (read from the URL without its user info: a password is never quoted as a port)
    const port = /^[a-z]+:\/\/(?:\[[^\]]*\]|[^:/?#]*):([^/?#]*)/i.exec(redactStoreUrl(url, "").replace(/^([a-z]+:\/\/).*@/i, "$1"))?.[1];
    if (port !== undefined && port !== "" && !(/^\d+$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
      // libpq's list of hosts (host1:5432,host2:5432), which node-postgres does not take: not a bad port.
      if (/^\d*,/.test(port)) return SEVERAL_HOSTS;
      return `has a bad port ${JSON.stringify(port)}`;
    }
    return "is not a valid URL";
  }
  return undefined;
}

interface Probe {
  /** The schema exists (layout 1 or later). */
  schema: boolean;
  /** Its tables have the `codec` columns. */
  codec: boolean;
  /** Its layout: 0 without a schema, 1 before apex.layout existed. */
  layout: number;
  /** The project has a row. */
  exists: boolean;
}

/**
 * The state of the schema and whether the project has a row; checks the server's encoding on the
 * way, and refuses a schema a newer APEX laid out.
 */
function probe(bridge: SyncBridge, url: string, project: string): Probe {
  let rows: Rows;
  try {
    rows = bridge.query(`SELECT current_setting('server_encoding'),
      ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'apex' AND c.relkind IN ('r', 'p', 'v')),
      (SELECT count(*) FROM pg_attribute WHERE attrelid IN (to_regclass('apex.kv'), to_regclass('apex.rows')) AND attname = 'codec' AND NOT attisdropped) = 2,
      ${SHAPE_COLUMNS}`);
  } catch (error) {
    throw connectError(url, error);
  }
  const [encoding, relations, codec, columns, keys] = rows[0] as [string, string[], boolean, string[], string[]];
  if (encoding !== "UTF8") {
    throw new ApexError("APEX_E_STORE", `The database at ${redactUrl(url)} is encoded in ${encoding}; APEX needs UTF8 (paths are ordered by their UTF-8 bytes).`, {
      hint: "Create the database with ENCODING 'UTF8' (createdb -E UTF8 -T template0 NAME).",
    });
  }
  const present = new Set(relations);
  if (!SCHEMA_TABLES.some((name) => present.has(name))) return { schema: false, codec: false, layout: 0, exists: false };
  // Layout 2 and later keep the revisions in apex.stores and have apex.groups and apex.layout.
  const versioned = present.has("layout") || present.has("stores") || present.has("groups");
  const layout = present.has("layout") ? (bridge.query(`SELECT max(version) FROM apex.layout`)[0]![0] as number | null) : null;
  if (layout !== null && layout > LAYOUT) {
    throw new ApexError("APEX_E_STORE_VERSION", `The APEX schema at ${redactUrl(url)} has layout ${layout}, written by a newer APEX; this one knows layouts up to ${LAYOUT}.`, {
      hint: "Upgrade APEX on this host: a newer layout is never read or written by an older APEX.",
      details: { url: redactUrl(url), layout, known: LAYOUT },
    });
  }
  const missing = (versioned ? LAYOUT_2_TABLES : LAYOUT_1_TABLES).filter((name) => !present.has(name));
  if (missing.length > 0 || (versioned && layout === null)) throw incompleteSchema(url, missing.length > 0 ? missing : ["layout"], present);
  const shape = shapeProblems(versioned ? LAYOUT_2_TABLES : LAYOUT_1_TABLES, columns, keys, !versioned);
  if (shape.problems.length > 0) throw changedSchema(url, shape.problems, shape.tables);
  if (!versioned) return { schema: true, codec, layout: 1, exists: bridge.query(`SELECT 1 FROM apex.projects WHERE project = $1`, [project]).length > 0 };
  const exists = bridge.query(`SELECT EXISTS (SELECT 1 FROM apex.stores WHERE project = $1)`, [project])[0]![0] as boolean;
  return { schema: true, codec, layout: layout!, exists };
}

/** The relations of APEX's schema: any of them there means the schema exists (then whole, or refused). */
const SCHEMA_TABLES = ["stores", "projects", "kv", "log", "tables", "rows", "groups", "layout"];
/** The tables layout 1 reads and writes (apex.projects: the revisions). */
const LAYOUT_1_TABLES = ["projects", "kv", "log", "tables", "rows"];
/** The tables layout 2 reads and writes (apex.projects is then a view that only refuses older APEXes). */
const LAYOUT_2_TABLES = ["stores", "kv", "log", "tables", "rows", "groups", "layout"];

/**
 * A schema missing tables APEX reads and writes (dropped by hand, or a restore of part of the
 * database): refused, with APEX_E_STORE_DAMAGED, by every open, read-only or not. Created anew,
 * an empty table would pass for a store that never held those records (checkpoints that no longer
 * verify, a revision log that starts over); without apex.layout, a database of layout 2 read as
 * layout 1 was refused as written by a newer APEX, and a writable open failed in the upgrade.
 */
function incompleteSchema(url: string, missing: string[], present: ReadonlySet<string>): ApexError {
  const where = redactUrl(url);
  const names = missing.map((name) => `apex.${name}`);
  const onlyLayout = missing.length === 1 && missing[0] === "layout";
  return new ApexError(
    "APEX_E_STORE_DAMAGED",
    `The APEX schema at ${where} is incomplete: ${names.join(", ")} ${names.length === 1 ? "is" : "are"} missing (there: ${[...present].sort().map((name) => `apex.${name}`).join(", ")}). APEX neither reads nor writes it.`,
    {
      hint: onlyLayout
        ? `apex.layout records the schema's layout and nothing else: if no APEX newer than this one used the database, put it back with \`CREATE TABLE apex.layout (version integer NOT NULL); INSERT INTO apex.layout VALUES (${LAYOUT});\` and run the command again.`
        : "A table dropped by hand took its records with it: restore the database (or those tables) from a backup. Nothing was written.",
      details: { url: where, missing: names },
    },
  );
}

/**
 * A schema whose tables are not as APEX laid them out (changed by hand: schema-shape.ts): refused,
 * with APEX_E_STORE_DAMAGED, by every open, read-only or not, before anything is read or written.
 */
function changedSchema(url: string, problems: string[], tables: string[]): ApexError {
  const where = redactUrl(url);
  return new ApexError("APEX_E_STORE_DAMAGED", `The APEX schema at ${where} was changed: ${problems.join("; ")}. APEX neither reads nor writes it.`, {
    hint: `Put ${tables.length === 1 ? "the table" : "the tables"} back as APEX lays ${tables.length === 1 ? "it" : "them"} out (${tables.map(tableDefinition).join("; ")}), with the rows it held: from a backup if the change lost them. Nothing was written.`,
    details: { url: where, problems },
  });
}

/**
 * Layout 1 → 2, inside the opening transaction (under the schema lock): apex.projects becomes
 * apex.stores and a view that refuses older APEXes, and every row of every binary-keyed table of
 * every project moves from apex.rows into apex.groups (read in key order, a page at a time).
 */
function upgradeToGroups(bridge: SyncBridge): void {
  bridge.run([{ text: "ALTER TABLE apex.projects RENAME TO stores" }, ...LAYOUT_2.map((text) => ({ text }))]);
  const tables = bridge.query(`SELECT project, name FROM apex.tables WHERE keys = 'binary' ORDER BY project, name`) as Array<[string, string]>;
  for (const [project, table] of tables) {
    let carry: GroupEntry[] = [];
    let first: Buffer = Buffer.alloc(0);
    let after: Buffer | undefined;
    const write = (pieces: Array<{ first: Buffer; entries: GroupEntry[] }>) => {
      const groups = pieces.filter((group) => group.entries.length > 0);
      if (groups.length === 0) return;
      const columns: [Buffer[], number[], Buffer[], number[]] = [[], [], [], []];
      for (const group of groups) {
        const stored = storedForm(encodeGroup(group.entries));
        columns[0].push(group.first);
        columns[1].push(group.entries.length);
        columns[2].push(stored.bytes);
        columns[3].push(stored.codec);
      }
      bridge.query(`INSERT INTO apex.groups (project, tbl, first, n, entries, codec) SELECT $1, $2, f, n, e, c FROM unnest($3::bytea[], $4::integer[], $5::bytea[], $6::smallint[]) AS x(f, n, e, c)`, [project, table, ...columns]);
    };
    for (;;) {
      const rows = (after === undefined
        ? bridge.query(`SELECT key, value, codec FROM apex.rows WHERE project = $1 AND tbl = $2 ORDER BY key LIMIT ${UPGRADE_PAGE}`, [project, table])
        : bridge.query(`SELECT key, value, codec FROM apex.rows WHERE project = $1 AND tbl = $2 AND key > $3 ORDER BY key LIMIT ${UPGRADE_PAGE}`, [project, table, after])) as Array<[unknown, unknown, number]>;
      for (const [key, value, codec] of rows) carry.push({ key: Buffer.from(toBuffer(key)), value: Buffer.from(writtenForm(toBuffer(value), codec)) });
      const last = rows.length < UPGRADE_PAGE;
      // Filled to 3/4, as random inserts leave a row on average; the last piece of a page goes on with the next page.
      const groups = packGroups(first, carry, Math.floor((GROUP_BYTES * 3) / 4));
      const kept = last ? groups : groups.slice(0, -1);
      write(kept);
      if (last) break;
      const rest = groups[groups.length - 1]!;
      first = rest.first;
      carry = rest.entries;
      after = toBuffer(rows[rows.length - 1]![0]);
    }
  }
  bridge.run([{ text: "DELETE FROM apex.rows r USING apex.tables t WHERE t.project = r.project AND t.name = r.tbl AND t.keys = 'binary'" }]);
}

/** Rows of apex.rows read per statement by the upgrade to layout 2. */
const UPGRADE_PAGE = 20_000;

/** A project of a database, as `apex store projects` lists it. */
export interface ProjectRow {
  project: string;
  revision: number;
  /** When its first writable open made it (ISO). */
  created: string;
}

/** Every project id in the database `spec` names, in id order (none before APEX's schema exists). Reads only. */
export function listProjects(spec: StoreSpec): ProjectRow[] {
  const url = urlOf(spec);
  const bridge = takeBridge(url);
  try {
    const state = probe(bridge, url, "");
    const table = state.layout >= 2 ? "apex.stores" : "apex.projects";
    const rows = state.schema ? (bridge.query(`SELECT project, revision, to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM ${table} ORDER BY project`) as Array<[string, number | string, string]>) : [];
    keepBridge(url, bridge);
    return rows.map(([project, revision, created]) => ({ project, revision: Number(revision), created }));
  } catch (error) {
    void bridge.close();
    throw connectError(url, error);
  }
}

// `satisfies`, not a type annotation: the factory's type keeps saying that open() answers synchronously (a
// StorageBackend, never a Promise), which callers that catch its errors synchronously rely on.
export const postgresBackend = {
  open(spec: StoreSpec, options: StoreOpenOptions = {}): StorageBackend {
    return PostgresBackend.open(spec, options);
  },
  // The checks open() and exists() start with: the URL (a port from 1 to 65535) and the project id.
  check(spec: StoreSpec): void {
    urlOf(spec);
    projectOf(spec);
  },
  exists(spec: StoreSpec): boolean {
    const url = urlOf(spec);
    const project = projectOf(spec);
    const bridge = takeBridge(url);
    try {
      const { exists } = probe(bridge, url, project);
      keepBridge(url, bridge);
      return exists;
    } catch (error) {
      void bridge.close();
      // A driver error past the first statement (a schema this role may not read) named as the store's, as open() does.
      throw connectError(url, error);
    }
  },
} satisfies StorageBackendFactory;

export class PostgresBackend implements StorageBackend {
  readonly info: BackendInfo;
  readonly dir: string;
  readonly readOnly: boolean;
  readonly actor: string;
  /** The project id this store's rows carry. */
  readonly project: string;
  /** The URL without its password and the project, for errors. */
  private readonly where: { url: string; project: string };
  private readonly url: string;
  private readonly bridge: SyncBridge;
  /** The NOTIFY channel of this project (an identifier: a hash of the id). */
  private readonly channel: string;
  private readonly tables = new Map<string, { options: TableOptions; known: boolean; handle: PgTable }>();
  private tx: Transaction | undefined;
  /**
   * The read view outside write transactions (REPEATABLE READ READ ONLY on this connection):
   * `holders` counts the scans and readView() calls that want one; it is begun in the same
   * crossing as their first statement, and committed in the same crossing as the first statement
   * after the last holder let go (or by `timer` at the end of the event loop's turn).
   */
  private view = { holders: 0, open: false, restart: false, timer: undefined as NodeJS.Timeout | undefined, connection: 0 };
  /** Set as close() begins (the port's `closed`). */
  closed = false;
  private readonly statementNames = new Map<string, string>();
  private listen: Listener | undefined;
  /**
   * What reads select as a value's codec: the column, or 0 for a store opened read-only whose
   * schema predates it (only a writable open adds it).
   */
  private readonly codec: string;
  /** The schema's layout (see LAYOUT): a writable open has upgraded it; a read-only one reads it as it is. */
  private readonly layout: number;
  /** The table of the projects' revisions in that layout. */
  private readonly stores: string;

  private constructor(spec: StoreSpec, url: string, project: string, bridge: SyncBridge, options: StoreOpenOptions, codecColumn: boolean, layout: number) {
    this.codec = codecColumn ? "codec" : "0";
    this.layout = layout;
    this.stores = layout >= 2 ? "apex.stores" : "apex.projects";
    this.dir = spec.dir;
    this.url = url;
    this.project = project;
    this.bridge = bridge;
    this.readOnly = options.readOnly ?? false;
    this.actor = options.actor ?? currentActor();
    this.info = { backend: "postgres", location: `${redactUrl(url)}#${project}` };
    this.where = { url: redactUrl(url), project };
    this.channel = `apex_${createHash("sha256").update(project).digest("hex").slice(0, 32)}`;
  }

  static open(spec: StoreSpec, options: StoreOpenOptions = {}): PostgresBackend {
    const url = urlOf(spec);
    const project = projectOf(spec);
    const readOnly = options.readOnly ?? false;
    const bridge = takeBridge(url);
    try {
      let state = probe(bridge, url, project);
      if (readOnly) {
        if (!state.exists) {
          throw new ApexError("APEX_E_NO_STORE", `No APEX store for project ${JSON.stringify(project)} at ${redactUrl(url)} yet.`, {
            hint: "Write something first (`apex memory set /hello '\"world\"'`) or start a session.",
          });
        }
        // The server refuses any write from this connection, whatever the code does.
        bridge.addSetup("SET default_transaction_read_only = on");
      } else if (!state.exists || !state.codec || state.layout < LAYOUT) {
        // Under the schema lock, looked at again: another first open may have done it meanwhile.
        bridge.run([{ text: "BEGIN ISOLATION LEVEL READ COMMITTED" }, { text: "SELECT pg_advisory_xact_lock($1, $2)", values: [...SCHEMA_LOCK] }]);
        state = probe(bridge, url, project);
        if (!state.schema) bridge.run([...DDL, ...LAYOUT_2].map((text) => ({ text })));
        else {
          if (!state.codec) bridge.run(ADD_CODEC.map((text) => ({ text })));
          if (state.layout < LAYOUT) upgradeToGroups(bridge);
        }
        bridge.run([{ text: "INSERT INTO apex.stores (project) VALUES ($1) ON CONFLICT DO NOTHING", values: [project] }, { text: "COMMIT" }]);
        state = { schema: true, codec: true, layout: LAYOUT, exists: true };
      }
      const backend = new PostgresBackend(spec, url, project, bridge, options, state.codec, state.layout);
      for (const [name, keys, vals] of bridge.query(`SELECT name, keys, vals FROM apex.tables WHERE project = $1`, [project]) as Array<[string, string, string]>) {
        const tableOptions = { keys, values: vals } as TableOptions;
        backend.tables.set(name, { options: tableOptions, known: true, handle: new PgTable(backend, name, tableOptions) });
      }
      return backend;
    } catch (error) {
      try {
        bridge.run([{ text: "ROLLBACK" }]);
      } catch {
        /* not in a transaction, or the connection is gone */
      }
      void bridge.close();
      throw isApexError(error) ? error : connectError(url, error);
    }
  }

  /**
   * Also makes every statement's lock wait (a read held up by a table lock included) a third of
   * what the bound leaves a call begun now (a third of the lease, when the lease starts): it then
   * fails with APEX_E_LOCKED, on the same connection, before the bound would cut it off.
   */
  boundCalls(until: (startedAt: number) => number): void {
    this.bridge.bound = until;
    const wait = this.lockWaitMs();
    if (wait === undefined) return;
    try {
      this.bridge.addSetup(`SET lock_timeout = ${wait}`);
    } catch {
      /* the connection is lost: the next one is made with the setting */
    }
  }

  /** The server's clock minus this process's, as last measured, and on which connection. */
  private clock: { connection: number; at: number; offset: number } | undefined;

  /**
   * The server's clock, which leases are written and judged by (core/session/lease.ts): hosts
   * whose clocks differ then agree on when a lease runs out. Measured on each connection, and
   * again after a minute (a clock stepped or slewed meanwhile): clock_timestamp() taken as read
   * halfway through the round trip.
   */
  now(): number {
    const before = Date.now();
    if (this.clock === undefined || this.clock.connection !== this.bridge.connection || before - this.clock.at > 60_000) {
      const [[[server]]] = this.run([{ text: "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8" }], "reading the server's clock") as [[[number]]];
      const after = Date.now();
      this.clock = { connection: this.bridge.connection, at: after, offset: server - (before + after) / 2 };
    }
    return Date.now() + this.clock.offset;
  }

  // ---- plumbing

  /**
   * Runs statements, turning driver errors into ApexErrors that name the store. Outside a write
   * transaction it also begins the read view a holder wants, or commits the one nobody holds any
   * more, in the same crossing; `write`: the steps begin a write transaction (which ends the view).
   */
  private run(steps: Statement[], doing: string, write = false): Rows[] {
    const view = this.view;
    let prefix: Statement[] = [];
    if (!this.tx) {
      if (view.open && (write || view.holders === 0 || view.restart)) {
        prefix = [{ text: "COMMIT" }];
        view.open = false;
      }
      view.restart = false;
      if (!view.open && view.holders > 0 && !write) {
        prefix.push({ text: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" });
        view.open = true;
        // A scan its caller left suspended (or forgot) must not hold every later read in an old view.
        clearTimeout(view.timer);
        view.timer = setTimeout(() => this.endView(), 0);
        view.timer.unref();
      }
    }
    // A transaction or a read view lives in its connection: its statements never go to another
    // (a new one, after the connection was lost); a new view may begin on a new connection.
    const pinned = this.tx ? this.tx.connection : view.open && prefix.length === 0 ? view.connection : undefined;
    try {
      const rows = prefix.length === 0 ? this.bridge.run(steps, pinned) : this.bridge.run([...prefix, ...steps], pinned).slice(prefix.length);
      if (view.open && prefix.length > 0) view.connection = this.bridge.connection;
      return rows;
    } catch (error) {
      // A failed statement aborts the view's transaction: the next read begins a new one.
      if (view.open && !this.tx) {
        view.open = false;
        try {
          this.bridge.run([{ text: "ROLLBACK" }], view.connection);
        } catch {
          /* the connection is gone */
        }
      }
      throw this.failure(error, doing);
    }
  }

  /**
   * Counts a holder of the read view (a scan, readView). The first after every holder let go
   * begins it anew, in the crossing of its first statement: the view left open by scans that
   * ended (committed at the next statement, else at the end of the turn) had a scan begun in the
   * same turn read that old view, missing what another instance of the store in this process had
   * committed since (LMDB's handles of one file see each other's commits at once).
   */
  private holdView(): void {
    if (this.view.holders === 0 && this.view.open) this.view.restart = true;
    this.view.holders++;
  }

  /** Ends the read view now (the end of a turn of the event loop); a holder still reading begins a new one. */
  private endView(): void {
    const view = this.view;
    clearTimeout(view.timer);
    view.timer = undefined;
    if (!view.open || this.tx || this.closed) return;
    view.open = false;
    try {
      this.bridge.run([{ text: "COMMIT" }], view.connection);
    } catch {
      /* the connection is gone: so is the view */
    }
  }

  /**
   * Runs `fn` (synchronous) with every read in one view of the store: a commit made by another
   * connection meanwhile is not seen, however many statements the reads take. Inside a write
   * transaction the reads are that transaction's (under the project's lock: nobody else writes).
   */
  readView<T>(fn: () => T): T {
    this.assertOpen();
    if (this.tx) return fn();
    this.holdView();
    try {
      return fn();
    } finally {
      this.view.holders--;
    }
  }

  private failure(error: unknown, doing: string): ApexError {
    if (isApexError(error)) return error;
    const failure = error instanceof BridgeError ? error.failure : { message: String(error), code: undefined };
    // A connection made again (after a restart, a drop) meets what a first one may: the server gone,
    // the credentials refused (a password changed), the database dropped. Named as at open.
    if (failure.code && (UNREACHABLE.has(failure.code) || RECONNECT_REFUSALS.has(failure.code))) return connectError(this.url, error);
    if (failure.code === "25006") {
      if (this.readOnly) return new ApexError("APEX_E_INTERNAL", `The PostgreSQL store was opened read-only (${doing}).`, { cause: error });
      return readOnlyServerError(this.where, failure.message, doing, error);
    }
    if (failure.code === "42501") return permissionError(this.where, failure.message, doing, error);
    if (failure.code === "55P03") return lockError(this.where, failure.message, doing, error);
    const hint = serverSettingHint(failure.code, failure.message);
    return new ApexError("APEX_E_STORE", `PostgreSQL store at ${shownAt(this.where)}: ${failure.message} (${doing}).`, {
      ...(hint ? { hint } : {}),
      details: { ...whereDetails(this.where), sqlstate: failure.code },
      cause: error,
    });
  }

  /** A prepared statement's name for a text (the same text always gets the same name). */
  private named(text: string): string {
    let name = this.statementNames.get(text);
    if (!name) {
      name = `apex_${this.statementNames.size}`;
      this.statementNames.set(text, name);
    }
    return name;
  }

  private sql(text: string, values: unknown[], doing: string): Rows {
    return this.run([{ text, values, name: this.named(text) }], doing)[0]!;
  }

  private assertOpen(): void {
    if (this.closed) throw new ApexError("APEX_E_STORE", "The store is closed.");
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
  }

  // ---- keyspace reads

  get(path: string): JsonValue | undefined {
    const bytes = this.getEncoded(path);
    return bytes === undefined ? undefined : this.decodeRecord(path, bytes);
  }

  private decodeRecord(path: string, bytes: Buffer): JsonValue {
    try {
      return decodeValue(bytes);
    } catch (error) {
      throw damagedRecordError(this.where, path, error);
    }
  }

  getEncoded(path: string): Buffer | undefined {
    checkPath(path);
    return this.rawGet(path);
  }

  private rawGet(key: string): Buffer | undefined {
    this.assertOpen();
    const pending = this.tx?.kv.get(key);
    if (pending !== undefined) return pending ?? undefined;
    const cached = this.tx?.cache.kv.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const rows = this.sql(`SELECT value, ${this.codec} FROM apex.kv WHERE project = $1 AND path = $2`, [this.project, key], `reading ${key}`);
    const value = rows.length > 0 ? writtenForm(toBuffer(rows[0]![0]), rows[0]![1] as number) : undefined;
    this.remember("kv", key, value);
    return value;
  }

  /**
   * Keeps a record read or sent inside a write transaction for the transaction's next reads of
   * it; past TX_CACHE_BYTES only records already kept are updated (never left stale).
   */
  private remember(where: "kv" | "rows", key: string, value: Buffer | undefined): void {
    const tx = this.tx;
    if (!tx) return;
    const cache = tx.cache[where];
    if (tx.cachedBytes >= TX_CACHE_BYTES && !cache.has(key)) return;
    cache.set(key, value ?? null);
    tx.cachedBytes += key.length + (value?.length ?? 0);
  }

  getEncodedMany(paths: readonly string[]): Array<Buffer | undefined> {
    this.assertOpen();
    const found = new Map<string, Buffer | undefined>();
    const wanted: string[] = [];
    for (const path of paths) {
      checkPath(path);
      if (found.has(path)) continue;
      const pending = this.tx?.kv.get(path);
      found.set(path, pending ?? undefined);
      if (pending === undefined) wanted.push(path);
    }
    // One statement per chunk instead of a round trip per path (a checkpoint re-reads every changed path); several chunks in one view.
    const readChunks = () => {
      for (let start = 0; start < wanted.length; start += MANY_PATHS_CHUNK) {
        const chunk = wanted.slice(start, start + MANY_PATHS_CHUNK);
        const rows = this.sql(`SELECT path, value, ${this.codec} FROM apex.kv WHERE project = $1 AND path = ANY($2::text[])`, [this.project, chunk], `reading ${chunk.length} paths`);
        for (const [path, value, codec] of rows as Array<[string, unknown, number]>) found.set(path, writtenForm(toBuffer(value), codec));
      }
    };
    if (wanted.length > MANY_PATHS_CHUNK) this.readView(readChunks);
    else readChunks();
    return paths.map((path) => found.get(path));
  }

  has(path: string): boolean {
    checkPath(path);
    this.assertOpen();
    // In a write transaction, the record itself: it is often read next, and then is at hand.
    if (this.tx) return this.rawGet(path) !== undefined;
    return this.sql(`SELECT 1 FROM apex.kv WHERE project = $1 AND path = $2`, [this.project, path], `reading ${path}`).length > 0;
  }

  revision(): number {
    this.assertOpen();
    if (this.tx) return this.tx.base + this.tx.changes;
    const rows = this.sql(`SELECT revision FROM ${this.stores} WHERE project = $1`, [this.project], "reading the revision");
    return rows.length > 0 ? (rows[0]![0] as number) : 0;
  }

  *query(glob: string, options: { limit?: number } = {}): Iterable<Entry> {
    const compiled = compileGlob(glob);
    const limit = options.limit ?? Infinity;
    if (limit <= 0) return;
    if (compiled.literal) {
      if (pathProblem(compiled.prefix) !== undefined) return;
      const value = this.get(compiled.prefix);
      if (value !== undefined) yield { path: compiled.prefix, value };
      return;
    }
    let count = 0;
    const range: KeyRange<string> = { start: compiled.range.start };
    if (compiled.range.end !== undefined) range.end = compiled.range.end;
    for (const [path, value] of this.scanKv(range, true)) {
      if (!compiled.matches(path)) continue;
      yield { path, value: this.decodeRecord(path, value!) };
      if (++count >= limit) return;
    }
  }

  *tree(path: string): Iterable<Entry> {
    if (path !== "/") {
      const own = this.get(checkPath(path));
      if (own !== undefined) yield { path, value: own };
    }
    for (const [key, value] of this.scanKv(subtreeRange(path), true)) yield { path: key, value: this.decodeRecord(key, value!) };
  }

  *keysBelow(path: string): Iterable<string> {
    for (const [key] of this.scanKv(subtreeRange(path), false)) yield key;
  }

  *keys(range: KeyRange<string>): Iterable<string> {
    for (const [key] of this.scanKv(range, false)) yield key;
  }

  *entries(range: KeyRange<string>): Iterable<Entry> {
    for (const [path, value] of this.scanKv(range, true)) yield { path, value: this.decodeRecord(path, value!) };
  }

  private scanKv(range: KeyRange<string>, values: boolean): Iterable<[string, Buffer | undefined]> {
    return this.scan<string>({ from: "apex.kv", keyColumn: "path", where: [], params: [], range, values, doing: "reading the keyspace" });
  }

  /**
   * Keyset paging over an ordered key column: each page continues after the last key of the one
   * before, so a page costs one index range scan whatever the depth. Inside a write transaction
   * the buffered writes are sent first, so the scan sees them.
   */
  *scan<K extends string | Buffer>(options: ScanOptions<K>): Generator<[K, Buffer | undefined]> {
    this.assertOpen();
    if (this.tx?.pending) this.flush();
    // Its pages are separate statements: outside a write transaction they share one read view.
    const held = !this.tx;
    if (held) this.holdView();
    try {
      yield* this.pages(options);
    } finally {
      if (held) this.view.holders--;
    }
  }

  private *pages<K extends string | Buffer>(options: ScanOptions<K>): Generator<[K, Buffer | undefined]> {
    const { range } = options;
    const reverse = range.reverse ?? false;
    let remaining = range.limit ?? Infinity;
    // Forward: [start, end). Reverse: from start (inclusive) down to end (exclusive).
    let lower: { key: K; inclusive: boolean } | undefined;
    let upper: { key: K; inclusive: boolean } | undefined;
    if (reverse) {
      if (range.start !== undefined) upper = { key: range.start, inclusive: true };
      if (range.end !== undefined) lower = { key: range.end, inclusive: false };
    } else {
      if (range.start !== undefined) lower = { key: range.start, inclusive: true };
      if (range.end !== undefined) upper = { key: range.end, inclusive: false };
    }
    // A keyspace bound no key can hold (NUL: text refuses it; an unpaired surrogate) as one the server takes (keyBound).
    if (options.keyColumn === "path") {
      const bounded = (bound: { key: K; inclusive: boolean } | undefined, lowerEnd: boolean) => {
        if (bound === undefined) return bound;
        const { key, exact } = keyBound(bound.key as string);
        return exact ? bound : { key: key as K, inclusive: lowerEnd };
      };
      lower = bounded(lower, true);
      upper = bounded(upper, false);
    }
    let page = FIRST_PAGE;
    // The range's offset skips entries of the first page's query; later pages go on from the last key.
    let skip = range.offset ?? 0;
    while (remaining > 0) {
      const size = Math.min(page, remaining);
      const params: unknown[] = [this.project, ...options.params];
      const where = ["project = $1", ...options.where];
      if (lower) {
        params.push(lower.key);
        where.push(`${options.keyColumn} ${lower.inclusive ? ">=" : ">"} $${params.length}`);
      }
      if (upper) {
        params.push(upper.key);
        where.push(`${options.keyColumn} ${upper.inclusive ? "<=" : "<"} $${params.length}`);
      }
      params.push(size);
      let text = `SELECT ${options.keyColumn}${options.values ? `, value, ${this.codec}` : ""} FROM ${options.from} WHERE ${where.join(" AND ")} ORDER BY ${options.keyColumn} ${reverse ? "DESC" : "ASC"} LIMIT $${params.length}`;
      if (skip > 0) {
        params.push(skip);
        text += ` OFFSET $${params.length}`;
        skip = 0;
      }
      const rows = this.sql(text, params, options.doing);
      for (const row of rows) yield [(typeof row[0] === "string" ? row[0] : toBuffer(row[0])) as K, options.values ? writtenForm(toBuffer(row[1]), row[2] as number) : undefined];
      remaining -= rows.length;
      if (rows.length < size) return;
      const last = (typeof rows[rows.length - 1]![0] === "string" ? rows[rows.length - 1]![0] : toBuffer(rows[rows.length - 1]![0])) as K;
      if (reverse) upper = { key: last, inclusive: false };
      else lower = { key: last, inclusive: false };
      page = Math.min(page * 4, MAX_PAGE);
    }
  }

  /**
   * A grouped table's entries in a key range: the rows the range falls in, paged by their first
   * key (a few rows first, more later), their entries filtered to the range; offset and limit
   * count entries. In one read view outside a write transaction, as scan().
   */
  private *scanGroups(table: string, range: KeyRange<Buffer>): Generator<[Buffer, Buffer]> {
    this.assertOpen();
    if (this.tx?.pending) this.flush();
    const held = !this.tx;
    if (held) this.holdView();
    try {
      yield* this.groupPages(table, range);
    } finally {
      if (held) this.view.holders--;
    }
  }

  private *groupPages(table: string, range: KeyRange<Buffer>): Generator<[Buffer, Buffer]> {
    const reverse = range.reverse ?? false;
    // Forward: [start, end). Reverse: from start (inclusive) down to end (exclusive).
    const low = reverse ? range.end : range.start;
    const high = reverse ? range.start : range.end;
    const inRange = (key: Buffer) =>
      (low === undefined || (reverse ? Buffer.compare(key, low) > 0 : Buffer.compare(key, low) >= 0)) &&
      (high === undefined || (reverse ? Buffer.compare(key, high) <= 0 : Buffer.compare(key, high) < 0));
    let remaining = range.limit ?? Infinity;
    let skip = range.offset ?? 0;
    let page = 8;
    let last: Buffer | undefined;
    const doing = `reading table ${table}`;
    while (remaining > 0) {
      const params: unknown[] = [this.project, table];
      const where = ["project = $1", "tbl = $2"];
      const bound = (sql: (at: string) => string, value: Buffer) => {
        params.push(value);
        where.push(sql(`$${params.length}`));
      };
      if (!reverse) {
        // The row the range's first key falls in may start before it.
        if (last !== undefined) bound((at) => `first > ${at}`, last);
        else if (low !== undefined) bound((at) => `first >= coalesce((SELECT first FROM apex.groups WHERE project = $1 AND tbl = $2 AND first <= ${at} ORDER BY first DESC LIMIT 1), ${at})`, low);
        if (high !== undefined) bound((at) => `first < ${at}`, high);
      } else {
        if (last !== undefined) bound((at) => `first < ${at}`, last);
        else if (high !== undefined) bound((at) => `first <= ${at}`, high);
      }
      params.push(page);
      const rows = this.sql(`SELECT first, entries, codec FROM apex.groups WHERE ${where.join(" AND ")} ORDER BY first ${reverse ? "DESC" : "ASC"} LIMIT $${params.length}`, params, doing);
      for (const [first, stored, codec] of rows as Array<[unknown, unknown, number]>) {
        const entries = decodeGroup(writtenForm(toBuffer(stored), codec));
        if (reverse) entries.reverse();
        for (const { key, value } of entries) {
          if (!inRange(key)) continue;
          if (skip > 0) {
            skip -= 1;
            continue;
          }
          yield [key, value];
          if (--remaining <= 0) return;
        }
        last = toBuffer(first);
        // Reverse: the rows below this one hold keys below its first.
        if (reverse && low !== undefined && Buffer.compare(last, low) <= 0) return;
      }
      if (rows.length < page) return;
      page = Math.min(page * 4, 128);
    }
  }

  *changesSince(since: number, options: { limit?: number } = {}): Iterable<Change> {
    this.assertOpen();
    if (this.tx?.pending) this.flush();
    // Pages of the log in one read view, as scan() does.
    const held = !this.tx;
    if (held) this.holdView();
    try {
      yield* this.logPages(since, options);
    } finally {
      if (held) this.view.holders--;
    }
  }

  private *logPages(since: number, options: { limit?: number }): Generator<Change> {
    let remaining = options.limit ?? Infinity;
    if (remaining <= 0) return;
    // Nothing past the latest revision: the last batch, which may hold 200,000 changes (an import), is not read to find
    // none (each poll of a watcher that is up to date took 0.15-0.4 s of the supervisor). In a transaction its own count.
    if (this.tx && since >= this.revision()) return;
    const fresh = this.tx ? "" : ` AND $2 <= (SELECT revision FROM ${this.stores} WHERE project = $1)`;
    // Of each batch, only its changes from revision since+1 and at most `remaining` of them (paths[lo:hi]): a batch of
    // 200,000 (an import) read from its middle, 10,000 at a time by memory.changes, was sent whole each time (~115 ms).
    const read = (where: string, after?: number) =>
      this.sql(
        `SELECT first, paths[lo:hi], substr(kinds, lo, greatest(0, hi - lo + 1)), actor, time, lo FROM (
           SELECT first, paths, kinds, actor, time, greatest(1, $2 - first + 1)::int AS lo, least(greatest(1, $2 - first + 1) + $4::bigint - 1, cardinality(paths))::int AS hi
           FROM apex.log WHERE project = $1 AND ${where} ORDER BY first LIMIT $3) AS batch ORDER BY first`,
        [this.project, since + 1, FIRST_PAGE, Math.min(remaining, 2 ** 31), ...(after === undefined ? [] : [after])],
        "reading the revision log",
      );
    // The batch holding revision since+1 may start before it.
    let rows = read(`first >= coalesce((SELECT max(first) FROM apex.log WHERE project = $1 AND first <= $2), $2)${fresh}`);
    for (;;) {
      for (const [first, paths, kinds, actor, time, lo] of rows as Array<[number, string[], string, string, number, number]>) {
        for (let i = 0; i < paths.length; i++) {
          yield { revision: first + lo - 1 + i, path: paths[i]!, kind: kinds[i] === "d" ? "delete" : "put", actor, time };
          if (--remaining <= 0) return;
        }
      }
      if (rows.length < FIRST_PAGE) return;
      rows = read("first > $5", rows[rows.length - 1]![0] as number);
    }
  }

  subscribe(listener: () => void): () => void {
    this.assertOpen();
    const listen = (this.listen ??= new Listener(this.url, this.channel));
    const remove = listen.add(listener);
    // LISTEN takes a round trip to be in place: a commit before it would go unnoticed (LMDB's
    // poll compares with the revision at subscribe time). So compare once LISTEN is there.
    const base = this.revision();
    let stopped = false;
    void listen.ready.then(() => {
      if (stopped || this.closed) return;
      let now: number;
      try {
        now = this.revision();
      } catch {
        return;
      }
      if (now !== base) listener();
    });
    return () => {
      stopped = true;
      remove();
      // The last one out closes the LISTEN connection, which would otherwise hold the process open.
      if (listen.size === 0 && this.listen === listen) {
        this.listen = undefined;
        void listen.close();
      }
    };
  }

  // ---- keyspace writes

  async set(path: string, value: JsonValue, actor?: string): Promise<number> {
    checkPath(path);
    return setOne(this, path, value, actor);
  }

  async delete(path: string, options: { recursive?: boolean; actor?: string } = {}): Promise<{ deleted: number; revision: number }> {
    checkPath(path);
    return deleteOne(this, path, options);
  }

  async batch<T>(fn: (batch: WriteBatch) => T, actor = this.actor): Promise<{ value: T; revision: number }> {
    return this.transaction(() => this.batchSync(fn, actor));
  }

  batchSync<T>(fn: (batch: WriteBatch) => T, actor = this.actor): { value: T; revision: number } {
    this.assertWritable();
    if (this.tx) return this.applyBatch(fn, actor);
    return this.transactionSync(() => this.applyBatch(fn, actor));
  }

  async transaction<T>(fn: () => T): Promise<T> {
    this.assertWritable();
    if (this.tx) return fn();
    return this.transactionSync(fn);
  }

  /**
   * BEGIN under the project's lock, run fn, send what it buffered, COMMIT (durable before it
   * returns); joins the transaction already open. Not part of the port (as LMDB's
   * transactionSync): tests and tools that write between synchronous steps call it directly.
   */
  transactionSync<T>(fn: () => T): T {
    this.assertWritable();
    if (this.tx) return fn();
    const wait = this.lockWaitMs();
    const rows = this.run(
      [
        // READ COMMITTED whatever the database or role defaults to: each statement after the lock
        // sees what the lock's previous holder committed. Under REPEATABLE READ or SERIALIZABLE the
        // snapshot was taken as the lock statement began, before its wait.
        { text: "BEGIN ISOLATION LEVEL READ COMMITTED" },
        ...(wait === undefined ? [] : [{ text: `SET LOCAL lock_timeout = ${wait}` }]),
        { text: "SELECT pg_advisory_xact_lock($1, hashtext($2))", values: [LOCK_CLASS, this.project], name: "apex_lock" },
        { text: "SELECT revision FROM apex.stores WHERE project = $1", values: [this.project], name: "apex_revision" },
      ],
      "starting a write",
      true,
    );
    const revision = rows[rows.length - 1]!;
    const base = revision.length > 0 ? (revision[0]![0] as number) : 0;
    const tx: Transaction = { base, connection: this.bridge.connection, log: [], changes: 0, kv: new Map(), rows: new Map(), newTables: new Map(), cache: { kv: new Map(), rows: new Map() }, cachedBytes: 0, flushes: 0, bytes: 0, pending: false };
    this.tx = tx;
    let out: T;
    try {
      out = fn();
      if (out instanceof Promise) throw new Error("Storage transactions must be synchronous");
      this.flush(true);
      try {
        this.run([{ text: "COMMIT" }], "committing");
      } catch (error) {
        throw commitUnknown(error);
      }
    } catch (error) {
      this.tx = undefined;
      try {
        this.bridge.run([{ text: "ROLLBACK" }], tx.connection);
      } catch {
        /* the connection is gone: the server rolls back */
      }
      throw error;
    }
    this.tx = undefined;
    // Tables created by this transaction now exist for the next ones.
    for (const name of tx.newTables.keys()) {
      const entry = this.tables.get(name);
      if (entry) entry.known = true;
    }
    return out;
  }

  /**
   * How long a write transaction of a process whose calls are bounded (a supervisor, boundCalls:
   * its lease) may wait for each lock, in milliseconds: a third of what the bound leaves a call
   * begun now, so that a transaction held up by another connection's lock fails with
   * APEX_E_LOCKED, releasing the project's lock, while the lease can still be renewed; cut off
   * at the bound instead, its connection was dropped and the lease ran out (the supervisor ended
   * its agents). Undefined without a bound (every connection's lock_timeout applies).
   */
  private lockWaitMs(): number | undefined {
    const bound = this.bridge.bound;
    if (!bound) return undefined;
    const now = performance.now();
    const left = bound(now) - now;
    if (!Number.isFinite(left)) return undefined;
    return Math.max(100, Math.min(LOCK_TIMEOUT_S * 1000, Math.floor(left / 3)));
  }

  /**
   * Empties this project (every row of it, revision 0), under its lock: for a target that holds
   * what an interrupted `apex store migrate` wrote. The project's row stays.
   */
  /**
   * Takes the lock `apex store migrate` holds on its target project for the whole copy (a
   * session-level advisory lock of this connection, released when it closes): false when another
   * connection holds it. Two copies into one target at once emptied each other's rows as an
   * "interrupted copy", and a copy that had verified could end up with the other's log after its own.
   */
  tryCopyLock(): boolean {
    const [[[taken]]] = this.run([{ text: "SELECT pg_try_advisory_lock($1, hashtext($2))", values: [COPY_LOCK_CLASS, this.project] }], "locking the target for the copy") as [[[boolean]]];
    return taken;
  }

  clearProject(): void {
    this.transactionSync(() => {
      this.run(
        [
          ...["kv", "log", "tables", "rows", "groups"].map((table) => ({ text: `DELETE FROM apex.${table} WHERE project = $1`, values: [this.project] })),
          { text: "UPDATE apex.stores SET revision = 0 WHERE project = $1", values: [this.project] },
        ],
        "emptying the project",
      );
    });
    this.tables.clear();
  }

  /**
   * Moves every row of this project to the project id `to`, in one write transaction under both
   * projects' locks: the keyspace, its revision and log, the named tables and their rows (leases
   * included). `check` runs inside it first (this handle's reads are the transaction's) and may
   * refuse by throwing. Refused, writing nothing, when `to` holds anything (APEX_E_CONFLICT); a
   * row `to` got from a writable open that wrote nothing (revision 0) is no data. Close this
   * handle afterwards: its project has no rows any more.
   */
  moveProject(to: string, check: () => void): { revision: number } {
    projectOf({ backend: "postgres", dir: this.dir, project: to });
    return this.transactionSync(() => {
      const [, held] = this.run(
        [
          { text: "SELECT pg_advisory_xact_lock($1, hashtext($2))", values: [LOCK_CLASS, to] },
          {
            text: `SELECT (SELECT revision FROM apex.stores WHERE project = $1),
              EXISTS (SELECT 1 FROM apex.kv WHERE project = $1) OR EXISTS (SELECT 1 FROM apex.log WHERE project = $1) OR EXISTS (SELECT 1 FROM apex.tables WHERE project = $1)
              OR EXISTS (SELECT 1 FROM apex.rows WHERE project = $1) OR EXISTS (SELECT 1 FROM apex.groups WHERE project = $1)`,
            values: [to],
          },
        ],
        "reading the target project",
      );
      const [revision, rows] = held![0] as [number | string | null, boolean];
      if (rows || Number(revision ?? 0) > 0) {
        throw new ApexError("APEX_E_CONFLICT", `Project ${JSON.stringify(to)} already holds data at ${redactUrl(this.url)} (revision ${Number(revision ?? 0)}); data is moved only to an id that holds none.`, {
          hint: "`apex store projects` lists the ids and what they hold. Nothing was changed.",
          details: { project: to, revision: Number(revision ?? 0) },
        });
      }
      check();
      this.run(
        [
          { text: "DELETE FROM apex.stores WHERE project = $1", values: [to] },
          ...["stores", "kv", "log", "tables", "rows", "groups"].map((table) => ({ text: `UPDATE apex.${table} SET project = $2 WHERE project = $1`, values: [this.project, to] })),
        ],
        "moving the project",
      );
      return { revision: this.tx!.base };
    });
  }

  /** Sends the transaction's buffered writes (and, at commit, the revision and its NOTIFY) in one statement. */
  private flush(commit = false): void {
    const tx = this.tx!;
    const revision = tx.base + tx.changes;
    const revisionChanged = commit && revision !== tx.base;
    if (!tx.pending && !revisionChanged) return;
    // Values are compressed here, once each, not as they are buffered: a transaction reads back its own writes, and may overwrite them.
    const kvPut: [string[], Buffer[]] = [[], []];
    const kvCodecs: number[] = [];
    const kvDelete: string[] = [];
    for (const [path, value] of tx.kv) {
      if (value === null) kvDelete.push(path);
      else {
        const stored = storedForm(value);
        kvPut[0].push(path);
        kvPut[1].push(stored.bytes);
        kvCodecs.push(stored.codec);
      }
    }
    const log: [number[], string[], string[], string[], number[]] = [[], [], [], [], []];
    for (const record of tx.log) {
      log[0].push(record.first);
      log[1].push(record.paths.join("\n"));
      log[2].push(record.kinds);
      log[3].push(record.actor);
      log[4].push(record.time);
    }
    const tables: [string[], string[], string[]] = [[], [], []];
    for (const [name, options] of tx.newTables) {
      if (this.tables.get(name)?.known) continue;
      tables[0].push(name);
      tables[1].push(options.keys);
      tables[2].push(options.values);
    }
    const rowPut: [string[], Buffer[], Buffer[]] = [[], [], []];
    const rowCodecs: number[] = [];
    const rowDelete: [string[], Buffer[]] = [[], []];
    const grouped = new Map<string, Map<string, PendingRow>>();
    for (const [table, rows] of tx.rows) {
      if (this.grouped(table, this.tables.get(table)?.options ?? tx.newTables.get(table))) {
        grouped.set(table, rows);
        continue;
      }
      for (const { key, value } of rows.values()) {
        if (value === null) {
          rowDelete[0].push(table);
          rowDelete[1].push(key);
        } else {
          const stored = storedForm(value);
          rowPut[0].push(table);
          rowPut[1].push(key);
          rowPut[2].push(stored.bytes);
          rowCodecs.push(stored.codec);
        }
      }
    }
    const groups = this.mergeGroups(grouped);
    this.run(
      [
        {
          text: FLUSH,
          name: "apex_flush",
          values: [this.project, ...kvPut, kvDelete, ...log, revision, revisionChanged, this.channel, ...tables, ...rowPut, ...rowDelete, kvCodecs, rowCodecs, ...groups.put, ...groups.delete],
        },
      ],
      "writing",
    );
    // What was sent is what the transaction now reads: kept in its cache instead of the buffer.
    for (const [path, value] of tx.kv) this.remember("kv", path, value ?? undefined);
    for (const [table, rows] of tx.rows) {
      for (const [key, { value }] of rows) this.remember("rows", `${table}\u0000${key}`, value ?? undefined);
    }
    tx.kv.clear();
    tx.rows.clear();
    tx.log = [];
    tx.flushes++;
    tx.bytes = 0;
    tx.pending = false;
  }

  /**
   * The stored rows of apex.groups that keys fall in, by table in order of first (keys by table,
   * sorted by their latin1 text `id`). Up to PROBED_KEYS keys: an index probe each, in the
   * statement that reads the rows; more: the first keys of every row of the tables (an
   * index-only scan) searched here in one pass, then the rows wanted.
   */
  private groupsOf(keys: ReadonlyMap<string, ReadonlyArray<{ id: string; key: Buffer }>>, doing: string): Map<string, Array<{ first: Buffer; id: string; stored: Buffer }>> {
    let count = 0;
    for (const list of keys.values()) count += list.length;
    let rows: Rows;
    if (count <= PROBED_KEYS) {
      const flat: [string[], Buffer[]] = [[], []];
      for (const [table, list] of keys) for (const { key } of list) (flat[0].push(table), flat[1].push(key));
      rows = this.sql(GROUPS_OF_KEYS, [this.project, ...flat], doing);
    } else {
      const firsts = this.sql(`SELECT tbl, first FROM apex.groups WHERE project = $1 AND tbl = ANY($2::text[]) ORDER BY tbl, first`, [this.project, [...keys.keys()]], doing) as Array<[string, unknown]>;
      const byTable = new Map<string, Array<{ first: Buffer; id: string }>>();
      for (const [table, first] of firsts) {
        let list = byTable.get(table);
        if (!list) byTable.set(table, (list = []));
        const bytes = toBuffer(first);
        list.push({ first: bytes, id: bytes.toString("latin1") });
      }
      const wanted: [string[], Buffer[]] = [[], []];
      for (const [table, list] of keys) {
        const starts = byTable.get(table) ?? [];
        let at = -1;
        let taken = -1;
        for (const { id } of list) {
          while (at + 1 < starts.length && starts[at + 1]!.id <= id) at += 1;
          if (at >= 0 && at !== taken) {
            wanted[0].push(table);
            wanted[1].push(starts[at]!.first);
            taken = at;
          }
        }
      }
      rows = wanted[0].length === 0 ? [] : this.sql(GROUPS_BY_FIRST, [this.project, ...wanted], doing);
    }
    const current = new Map<string, Array<{ first: Buffer; id: string; stored: Buffer }>>();
    for (const [table, first, stored, codec] of rows as Array<[string, unknown, unknown, number]>) {
      let list = current.get(table);
      if (!list) current.set(table, (list = []));
      const bytes = toBuffer(first);
      list.push({ first: bytes, id: bytes.toString("latin1"), stored: writtenForm(toBuffer(stored), codec) });
    }
    return current;
  }

  /**
   * The rows of apex.groups that the buffered writes to grouped tables change: the rows their keys
   * fall in are read, the writes merged into them, and the results cut to size; rows left empty
   * are deleted. Keys below every row of their table start a new first row.
   */
  private mergeGroups(writes: ReadonlyMap<string, ReadonlyMap<string, PendingRow>>): {
    put: [string[], Buffer[], number[], Buffer[], number[]];
    delete: [string[], Buffer[]];
  } {
    const put: [string[], Buffer[], number[], Buffer[], number[]] = [[], [], [], [], []];
    const remove: [string[], Buffer[]] = [[], []];
    if (writes.size === 0) return { put, delete: remove };
    // Keys are compared as latin1 text (the pending map's keys): code unit order is byte order
    // (a prefix first), and comparing strings costs a fraction of Buffer.compare's call.
    const sorted = new Map<string, Array<{ id: string; key: Buffer; row: PendingRow }>>();
    for (const [table, rows] of writes) sorted.set(table, [...rows.keys()].sort().map((id) => ({ id, key: rows.get(id)!.key, row: rows.get(id)! })));
    const current = this.groupsOf(sorted, "reading grouped rows to write");
    for (const [table, list] of sorted) {
      const emit = (first: Buffer, stored: Buffer, mine: PendingRow[], existed: boolean) => {
        const pieces = mergeGroup(first, stored, mine);
        if (pieces.length === 0 && existed) {
          remove[0].push(table);
          remove[1].push(first);
        }
        for (const piece of pieces) {
          const bytes = storedForm(piece.bytes);
          put[0].push(table);
          put[1].push(piece.first);
          put[2].push(piece.n);
          put[3].push(bytes.bytes);
          put[4].push(bytes.codec);
        }
      };
      // Both sorted: each write goes to the last row whose first ≤ its key; writes below every row start a new one.
      const groups = current.get(table) ?? [];
      let at = -1;
      let mine: PendingRow[] = [];
      const close = () => {
        if (mine.length === 0) return;
        if (at < 0) emit(mine[0]!.key, Buffer.alloc(0), mine, false);
        else emit(groups[at]!.first, groups[at]!.stored, mine, true);
        mine = [];
      };
      for (const { id, row } of list) {
        let next = at;
        while (next + 1 < groups.length && groups[next + 1]!.id <= id) next += 1;
        if (next !== at) {
          close();
          at = next;
        }
        mine.push(row);
      }
      close();
    }
    return { put, delete: remove };
  }

  private noteWrite(bytes: number): void {
    const tx = this.tx!;
    tx.pending = true;
    tx.bytes += bytes;
    if (tx.bytes >= FLUSH_BYTES) this.flush();
  }

  private applyBatch<T>(fn: (batch: WriteBatch) => T, actor: string): { value: T; revision: number } {
    // Text cannot hold it: the commit failed as a bare store error (LMDB logged NUL, and each unpaired surrogate as U+FFFD times three).
    if (NOT_TEXT.test(actor)) throw badActor(actor);
    const tx = this.tx!;
    const time = Date.now();
    // One log record per batch, started by its first change; a flush in the middle of a large
    // batch sends the record so far, and a batch run inside this one (batchSync in its callback)
    // records its changes after it: the rest of this batch goes on in a new record. Appended to
    // after a nested batch, the record gave its later changes the nested batch's revisions.
    let current: LogRecord | undefined;
    const record = (path: string, kind: "p" | "d") => {
      if (!current || tx.log[tx.log.length - 1] !== current) {
        current = { first: tx.base + tx.changes + 1, paths: [], kinds: "", actor, time };
        tx.log.push(current);
      }
      current.paths.push(path);
      current.kinds += kind;
      tx.changes++;
    };
    const put = (path: string, bytes: Buffer) => {
      tx.kv.set(path, bytes);
      record(path, "p");
      this.noteWrite(bytes.length + path.length);
    };
    const remove = (key: string, logged: boolean) => {
      tx.kv.set(key, null);
      if (logged) record(key, "d");
      this.noteWrite(key.length);
    };
    const batch: WriteBatch = {
      set(path, value) {
        checkPath(path);
        if (value === undefined) throw new ApexError("APEX_E_BAD_JSON", `No value given for ${path}.`);
        let bytes: Buffer;
        try {
          bytes = encodeJson(value);
        } catch (error) {
          if (error instanceof ApexError) throw new ApexError(error.code, `${path}: ${error.message}`, { ...(error.hint ? { hint: error.hint } : {}), details: { path } });
          throw error;
        }
        put(path, bytes);
      },
      setEncoded(path, bytes) {
        checkPath(path);
        if (!isEncodedValue(bytes)) throw new ApexError("APEX_E_INTERNAL", `setEncoded(${path}): not in the value encoding.`);
        put(path, bytes);
      },
      delete: (path) => {
        checkPath(path);
        if (this.rawGet(path) === undefined) return false;
        remove(path, true);
        return true;
      },
      deleteDamaged: (key) => {
        // A key text cannot hold is not in the table: NUL failed the statement (and with it the transaction), and the
        // driver sent an unpaired surrogate as U+FFFD, which named (and deleted) another key.
        if (NOT_TEXT.test(key)) return false;
        if (this.rawGet(key) === undefined) return false;
        remove(key, pathProblem(key) === undefined);
        return true;
      },
      deleteTree: (path) => {
        const keys = Array.from(this.keysBelow(path));
        for (const key of keys) remove(key, true);
        return keys.length;
      },
      get: (path) => this.get(path),
    };
    const value = fn(batch);
    if (value instanceof Promise) throw new Error("Store.batch callbacks must be synchronous");
    return { value, revision: tx.base + tx.changes };
  }

  // ---- tables

  table<K extends TableKey = TableKey, V = Buffer>(name: string, options: TableOptions): Table<K, V> {
    this.assertOpen();
    const entry = this.tables.get(name);
    if (entry) {
      if (entry.options.keys !== options.keys || entry.options.values !== options.values) {
        throw new ApexError("APEX_E_INTERNAL", `Table ${name} holds ${entry.options.keys} keys and ${entry.options.values} values, not ${options.keys}/${options.values}.`);
      }
      return entry.handle as unknown as Table<K, V>;
    }
    const handle = new PgTable(this, name, options);
    this.tables.set(name, { options, known: false, handle });
    return handle as unknown as Table<K, V>;
  }

  tableNames(): string[] {
    this.assertOpen();
    if (this.tx?.pending) this.flush();
    const rows = this.sql(`SELECT name FROM apex.tables WHERE project = $1 ORDER BY name`, [this.project], "listing the tables");
    return rows.map((row) => row[0] as string);
  }

  /** The key and value kinds of a table that exists (for copying a store: the port's tableNames() gives names only). */
  tableOptions(name: string): TableOptions | undefined {
    const entry = this.tables.get(name);
    if (entry?.known) return entry.options;
    const rows = this.sql(`SELECT keys, vals FROM apex.tables WHERE project = $1 AND name = $2`, [this.project, name], `reading table ${name}`);
    return rows.length > 0 ? ({ keys: rows[0]![0], values: rows[0]![1] } as TableOptions) : undefined;
  }

  /** @internal (PgTable) */
  tableGet(table: string, key: Buffer): Buffer | undefined {
    this.assertOpen();
    const pending = this.tx?.rows.get(table)?.get(key.toString("latin1"));
    if (pending) return pending.value ?? undefined;
    const cacheKey = this.tx ? `${table}\u0000${key.toString("latin1")}` : "";
    const cached = this.tx?.cache.rows.get(cacheKey);
    if (cached !== undefined) return cached ?? undefined;
    if (this.grouped(table)) return this.groupGet(table, key, cacheKey);
    const rows = this.sql(`SELECT value, ${this.codec} FROM apex.rows WHERE project = $1 AND tbl = $2 AND key = $3`, [this.project, table, key], `reading table ${table}`);
    const value = rows.length > 0 ? writtenForm(toBuffer(rows[0]![0]), rows[0]![1] as number) : undefined;
    this.remember("rows", cacheKey, value);
    return value;
  }

  /**
   * @internal (PgTable) The values of many keys: grouped, the rows they fall in (groupsOf);
   * else `key = ANY` by chunks; in one read view outside a write transaction.
   */
  tableGetMany(table: string, keys: readonly Buffer[]): Array<Buffer | undefined> {
    this.assertOpen();
    const out = new Array<Buffer | undefined>(keys.length);
    const wanted = new Map<string, { key: Buffer; at: number[] }>();
    keys.forEach((key, at) => {
      const id = key.toString("latin1");
      const pending = this.tx?.rows.get(table)?.get(id);
      if (pending) return void (out[at] = pending.value ?? undefined);
      const cached = this.tx?.cache.rows.get(`${table}\u0000${id}`);
      if (cached !== undefined) return void (out[at] = cached ?? undefined);
      const entry = wanted.get(id);
      if (entry) entry.at.push(at);
      else wanted.set(id, { key, at: [at] });
    });
    if (wanted.size === 0) return out;
    const found = (id: string, value: Buffer | undefined) => {
      for (const at of wanted.get(id)!.at) out[at] = value;
      this.remember("rows", `${table}\u0000${id}`, value);
    };
    const doing = `reading table ${table}`;
    const read = () => {
      if (this.grouped(table)) {
        const sorted = [...wanted.keys()].sort().map((id) => ({ id, key: wanted.get(id)!.key }));
        const groups = this.groupsOf(new Map([[table, sorted]]), doing).get(table) ?? [];
        let at = -1;
        for (const { id, key } of sorted) {
          while (at + 1 < groups.length && groups[at + 1]!.id <= id) at += 1;
          found(id, at < 0 ? undefined : findInGroup(groups[at]!.stored, key));
        }
        return;
      }
      const ids = [...wanted.keys()];
      for (let start = 0; start < ids.length; start += MANY_PATHS_CHUNK) {
        const chunk = ids.slice(start, start + MANY_PATHS_CHUNK);
        const rows = this.sql(`SELECT key, value, ${this.codec} FROM apex.rows WHERE project = $1 AND tbl = $2 AND key = ANY($3::bytea[])`, [this.project, table, chunk.map((id) => wanted.get(id)!.key)], doing);
        const values = new Map<string, Buffer>();
        for (const [key, value, codec] of rows as Array<[unknown, unknown, number]>) values.set(toBuffer(key).toString("latin1"), writtenForm(toBuffer(value), codec));
        for (const id of chunk) found(id, values.get(id));
      }
    };
    if (this.tx) read();
    else this.readView(read);
    return out;
  }

  /** Whether a table's entries are stored grouped (groups.ts): binary keys, in layout 2. */
  private grouped(table: string, options = this.tables.get(table)?.options): boolean {
    return this.layout >= 2 && options?.keys === "binary";
  }

  /** A grouped table's entry: the row its key falls in (one index probe), searched. */
  private groupGet(table: string, key: Buffer, cacheKey: string): Buffer | undefined {
    const rows = this.sql(`SELECT entries, codec FROM apex.groups WHERE project = $1 AND tbl = $2 AND first <= $3 ORDER BY first DESC LIMIT 1`, [this.project, table, key], `reading table ${table}`);
    const value = rows.length > 0 ? findInGroup(writtenForm(toBuffer(rows[0]![0]), rows[0]![1] as number), key) : undefined;
    this.remember("rows", cacheKey, value);
    return value;
  }

  /** @internal (PgTable) */
  tableWrite(table: string, options: TableOptions, key: Buffer, value: Buffer | null): void {
    this.assertWritable();
    const tx = this.tx;
    if (!tx) throw new ApexError("APEX_E_INTERNAL", `Writes to table ${table} must run inside transaction().`);
    if (!this.tables.get(table)?.known) tx.newTables.set(table, options);
    let rows = tx.rows.get(table);
    if (!rows) tx.rows.set(table, (rows = new Map()));
    rows.set(key.toString("latin1"), { key, value });
    this.noteWrite(key.length + (value?.length ?? 0));
  }

  /** @internal (PgTable) */
  tableScan(table: string, range: KeyRange<Buffer>, values: boolean): Iterable<[Buffer, Buffer | undefined]> {
    if (this.grouped(table)) return this.scanGroups(table, range);
    return this.scan<Buffer>({ from: "apex.rows", keyColumn: "key", where: ["tbl = $2"], params: [table], range, values, doing: `reading table ${table}` });
  }

  /** @internal (PgTable) */
  tableCount(table: string, range: { start?: Buffer; end?: Buffer; reverse?: boolean }): number {
    this.assertOpen();
    if (this.tx?.pending) this.flush();
    if (this.grouped(table)) {
      if (range.start === undefined && range.end === undefined) {
        return this.sql(`SELECT coalesce(sum(n), 0) FROM apex.groups WHERE project = $1 AND tbl = $2`, [this.project, table], `counting table ${table}`)[0]![0] as number;
      }
      let count = 0;
      for (const _ of this.scanGroups(table, range)) count += 1;
      return count;
    }
    const params: unknown[] = [this.project, table];
    const where = ["project = $1", "tbl = $2"];
    const [low, high] = range.reverse ? [range.end, range.start] : [range.start, range.end];
    if (low !== undefined) {
      params.push(low);
      where.push(`key ${range.reverse ? ">" : ">="} $${params.length}`);
    }
    if (high !== undefined) {
      params.push(high);
      where.push(`key ${range.reverse ? "<=" : "<"} $${params.length}`);
    }
    const rows = this.sql(`SELECT count(*) FROM apex.rows WHERE ${where.join(" AND ")}`, params, `counting table ${table}`);
    return rows[0]![0] as number;
  }

  // ---- closing

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // An open read view ends with the connection.
    clearTimeout(this.view.timer);
    await this.listen?.close();
    await this.bridge.close();
  }
}

class PgTable<K extends TableKey = TableKey, V = Buffer> implements Table<K, V> {
  constructor(
    private readonly backend: PostgresBackend,
    private readonly name: string,
    private readonly options: TableOptions,
  ) {}

  private key(key: K): Buffer {
    return encodeKey(this.options.keys, key, this.name);
  }

  get(key: K): V | undefined {
    const bytes = this.backend.tableGet(this.name, this.key(key));
    return bytes === undefined ? undefined : (decodeTableValue(this.options.values, bytes) as V);
  }

  getBinaryFast(key: K): Buffer | undefined {
    return this.backend.tableGet(this.name, this.key(key));
  }

  getBinaryMany(keys: readonly K[]): Array<Buffer | undefined> {
    return this.backend.tableGetMany(this.name, keys.map((key) => this.key(key)));
  }

  put(key: K, value: V): boolean {
    this.backend.tableWrite(this.name, this.options, this.key(key), encodeTableValue(this.options.values, value, this.name));
    return true;
  }

  remove(key: K): boolean {
    const encoded = this.key(key);
    const existed = this.backend.tableGet(this.name, encoded) !== undefined;
    this.backend.tableWrite(this.name, this.options, encoded, null);
    return existed;
  }

  doesExist(key: K): boolean {
    return this.backend.tableGet(this.name, this.key(key)) !== undefined;
  }

  private range(range: KeyRange<K> = {}): KeyRange<Buffer> {
    const out: KeyRange<Buffer> = {};
    if (range.start !== undefined) out.start = this.key(range.start);
    if (range.end !== undefined) out.end = this.key(range.end);
    if (range.reverse !== undefined) out.reverse = range.reverse;
    if (range.limit !== undefined) out.limit = range.limit;
    if (range.offset !== undefined) out.offset = range.offset;
    return out;
  }

  *getKeys(range?: KeyRange<K>): Iterable<K> {
    for (const [key] of this.backend.tableScan(this.name, this.range(range), false)) yield decodeKey(this.options.keys, key) as K;
  }

  *getRange(range?: KeyRange<K>): Iterable<{ key: K; value: V }> {
    for (const [key, value] of this.backend.tableScan(this.name, this.range(range), true)) {
      yield { key: decodeKey(this.options.keys, key) as K, value: decodeTableValue(this.options.values, value!) as V };
    }
  }

  getCount(range?: KeyRange<K>): number {
    const encoded = this.range(range);
    if (encoded.limit !== undefined || encoded.offset !== undefined) return Array.from(this.backend.tableScan(this.name, encoded, false)).length;
    return this.backend.tableCount(this.name, encoded);
  }

  getStats(): { entryCount?: number } & Record<string, unknown> {
    return { entryCount: this.backend.tableCount(this.name, {}) };
  }
}

/**
 * LISTEN on the project's channel, on its own connection in this thread (notifications arrive
 * as events; no polling). Listeners are called at most every few milliseconds. A lost
 * connection is re-established, and the listeners called once then (changes may have been missed).
 */
class Listener {
  private readonly listeners = new Set<() => void>();
  private client: import("pg").Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Resolves once LISTEN is in place (tests wait for it; callers need not). */
  ready: Promise<void>;

  constructor(
    private readonly url: string,
    private readonly channel: string,
  ) {
    this.ready = this.connect();
  }

  private async connect(): Promise<void> {
    const pg = createRequire(import.meta.url)("pg") as typeof import("pg");
    // As the bridge connects (driverUrls: sslmode as libpq reads it).
    const urls = driverUrls(this.url);
    for (let i = 0; i < urls.length; i++) {
      const client = new pg.Client({ connectionString: urls[i], application_name: "apex-listen", connectionTimeoutMillis: connectTimeoutMs(this.url) });
      this.client = client;
      client.on("notification", () => this.signal());
      // (a client given up for the next URL, failing late, does not end its successor)
      client.on("error", () => this.client === client && this.reconnect());
      try {
        await client.connect();
        await client.query(`LISTEN ${this.channel}`);
        return;
      } catch (error) {
        const failure = { message: String((error as Error)?.message ?? error), code: (error as { code?: string })?.code };
        if (i + 1 < urls.length && !this.stopped && fallsBack(failure)) {
          void client.end().catch(() => undefined);
          continue;
        }
        this.reconnect();
        return;
      }
    }
  }

  private reconnect(): void {
    if (this.stopped || this.retry) return;
    const old = this.client;
    this.client = undefined;
    void old?.end().catch(() => undefined);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.stopped) return;
      this.ready = this.connect().then(() => this.signal());
    }, 1000);
  }

  private signal(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const listener of [...this.listeners]) listener();
    }, 5);
  }

  get size(): number {
    return this.listeners.size;
  }

  add(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }
}
