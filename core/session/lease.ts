/**
 * Several hosts, one store (PostgreSQL): which host's supervisor holds a session.
 *
 * The lease is a row of the `leases` table (a named table of the port: no revision, no change
 * log), keyed by session id: `{host, generation, nonce, expires_at}`. A claim writes it in the
 * same transaction as the session record, whose `supervisor` names the same host and generation
 * (bumped by every claim of the session). The supervisor renews the row every ttl/3; a renewal
 * is therefore not a keyspace revision (`memory watch`, the audit trail, "changed since the last
 * checkpoint" and the log's size see nothing of it). Readers of session records (sessions.ts)
 * put the row's expiry into `supervisor.lease_expires_at` of the record they return
 * ({@link withLease}); it is never stored in the record.
 *
 * From the supervisor's host, liveness is the process itself (sessions.ts `supervisorAlive`);
 * from any other host, a pid means nothing and the lease is the answer: a session whose lease
 * has not expired runs there.
 *
 * The holder fences the supervisor's own writes: every write transaction of its store first
 * reads the row, in that transaction, and refuses to go on when another generation holds it
 * (the generation is the fencing token: a supervisor that was taken over writes nothing more,
 * whatever the clocks say); and once the lease it last wrote has run out (the process was
 * frozen, the database unreachable), no write leaves the process before a renewal has
 * succeeded. Losing the lease ends the agents and the supervisor without writing anything more.
 */
// `performance` is the global, the object node:perf_hooks exports: importing that module loads
// ~3 ms more of Node's own, in every command that reads session records.
import { hostname } from "node:os";
import { ApexError } from "../errors.js";
import type { Store, Table, WriteBatch } from "../store/store.js";
import { sessionPath, type SessionRecord } from "./records.js";

/** The named table holding one lease per session (string key: the session id). */
export const LEASES_TABLE = "leases";
export const LEASES_OPTIONS = { keys: "string", values: "structured" } as const;

/** A session's lease, as the `leases` table holds it. */
export interface LeaseRow {
  host: string;
  /** The claim's generation: the fencing token. */
  generation: number;
  /** The holder's APEX_SUPERVISOR_NONCE (null when it has none). */
  nonce: string | null;
  /** ISO time when the lease runs out unless renewed. */
  expires_at: string;
}

export function leaseTable(store: Pick<Store, "table">): Table<string, LeaseRow> {
  return store.table<string, LeaseRow>(LEASES_TABLE, LEASES_OPTIONS);
}

/** The lease row of a session (inside a transaction: as that transaction sees it). */
export function readLease(store: Pick<Store, "table">, sessionId: string): LeaseRow | undefined {
  const row = leaseTable(store).get(sessionId);
  return row && typeof row === "object" && typeof row.generation === "number" ? row : undefined;
}

/** Writes a session's lease row: call inside the claim's (or the renewal's) transaction. */
export function writeLease(store: Pick<Store, "table">, sessionId: string, row: LeaseRow): void {
  leaseTable(store).put(sessionId, row);
}

/** Where session records are read from: the store (with its tables), or a write batch, a reader without them. */
export type RecordSource = Pick<Store, "get"> & { table?: Store["table"]; now?: Store["now"] };

/**
 * The record as readers see it: when `source` has tables and the lease row names the record's
 * generation and host, `supervisor.lease_expires_at` is the row's expiry (a copy; the stored
 * record never holds it). Without a row (a record written before leases moved to their table)
 * the record is returned as it is. A source without tables knows no lease: a session on another
 * host then reads as not renewed, so anything that decides on liveness reads through the store.
 */
export function withLease<R extends SessionRecord | undefined>(source: RecordSource, record: R): R {
  const supervisor = record?.supervisor;
  if (!record || !supervisor || typeof source.table !== "function") return record;
  const row = readLease(source as Pick<Store, "table">, record.session_id);
  if (!row || row.generation !== supervisor.generation || (supervisor.host !== undefined && row.host !== supervisor.host)) return record;
  // The expiry is on the store's clock: judged by this host's (leaseValid), it is moved by their
  // difference, which travels with the record (a symbol did not: an agent's `session list`, answered
  // through its supervisor's socket, judged another host's lease by its own clock alone).
  const offset = onOtherHost(supervisor) && source.now ? { lease_clock_offset_ms: source.now() - Date.now() } : {};
  return { ...record, supervisor: { ...supervisor, lease_expires_at: row.expires_at, ...offset } };
}

/** This machine's name in session records: APEX_HOST when set, else the system's host name. Every host shows it: no control characters. */
export function localHost(): string {
  const host = process.env.APEX_HOST?.trim() || hostname();
  if (/[\p{Cc}\p{Cf}]/u.test(host)) throw new ApexError("APEX_E_CONFIG", `APEX_HOST holds a control character (or this machine's host name does): it names this host in the session's records, which every host shows.`, { hint: "Set APEX_HOST to a plain name, or unset it for the machine's host name." });
  return host;
}

type SupervisorField = SessionRecord["supervisor"];

/** The host the record's supervisor runs on (null: a record written before hosts were recorded, taken as this one). */
export function supervisorHost(supervisor: SupervisorField): string | null {
  return typeof supervisor?.host === "string" && supervisor.host ? supervisor.host : null;
}

/** True when the record's supervisor runs on another host than this one: its pid means nothing here. */
export function onOtherHost(supervisor: SupervisorField): boolean {
  const host = supervisorHost(supervisor);
  return host !== null && host !== localHost();
}

/** When the lease runs out, in milliseconds since the epoch on this host's clock (NaN when the record has none). */
export function leaseExpiry(supervisor: SupervisorField): number {
  return (typeof supervisor?.lease_expires_at === "string" ? Date.parse(supervisor.lease_expires_at) : Number.NaN) - (supervisor?.lease_clock_offset_ms ?? 0);
}

/** True while the record's lease has not expired. A record without one holds none. */
export function leaseValid(supervisor: SupervisorField, now = Date.now()): boolean {
  const expiry = leaseExpiry(supervisor);
  return Number.isFinite(expiry) && expiry > now;
}

/** Who holds a session, for messages: "host-a (pid 123)". */
export function holderText(supervisor: SupervisorField): string {
  if (!supervisor) return "no supervisor";
  const host = supervisorHost(supervisor);
  return host ? `host ${host} (pid ${supervisor.pid})` : `pid ${supervisor.pid}`;
}

/** "host host-b (pid 123) took it over (generation 2)": the lease row's holder, with the pid the session's record names for it. */
function takenOver(row: LeaseRow, record: SessionRecord | undefined): string {
  const supervisor = record?.supervisor;
  const pid = supervisor?.generation === row.generation && supervisorHost(supervisor) === row.host ? ` (pid ${supervisor.pid})` : "";
  return `host ${row.host}${pid} took it over (generation ${row.generation})`;
}

/** What a renewal found. */
export type RenewOutcome =
  | { kind: "renewed"; expires_at: string }
  /** Another claim took the session: `holder` is the supervisor it names now. */
  | { kind: "lost"; holder: NonNullable<SupervisorField> | null; by?: string }
  /** The session's record is no longer at /sessions/<sid>: it ended. */
  | { kind: "ended" };

export interface LeaseIdentity {
  host: string;
  generation: number;
  nonce: string | null;
}

/**
 * The supervisor's side of the lease. `start` renews every ttl/3; `fence` makes every write of
 * the store object check the lease first; `onLost` is called once, when the lease is gone (taken
 * over, or run out without a successful renewal), after which every write is refused.
 */
export class LeaseHolder {
  /** performance.now() until which the lease this process last wrote is valid. */
  private deadline: number;
  private timer: NodeJS.Timeout | undefined;
  private lostReason: string | undefined;
  private depth = 0;
  private renewSync: ((fn: (batch: WriteBatch) => RenewOutcome, actor?: string) => { value: RenewOutcome }) | undefined;
  private ended = false;
  /** performance.now() when the last renewal began. */
  private triedAt = 0;

  constructor(
    private readonly store: Store,
    private readonly sessionId: string,
    private readonly identity: LeaseIdentity,
    readonly ttlMs: number,
    private readonly onLost: (reason: string) => void,
    private readonly log: (message: string) => void,
    /** performance.now() when the claim that wrote the first lease began. */
    claimedAt: number,
  ) {
    this.deadline = claimedAt + ttlMs;
  }

  get lost(): boolean {
    return this.lostReason !== undefined;
  }

  /**
   * Every write of `store` (transaction, batch, set, delete) checks the lease first: before the
   * transaction, the deadline (renewing past it); inside it, the lease row, which must still name
   * this holder's generation, host and nonce. Renewals bypass it.
   */
  fence(): void {
    const store = this.store;
    const transaction = store.transaction.bind(store);
    const batchSync = store.batchSync.bind(store);
    this.renewSync = batchSync as typeof this.renewSync;
    store.transaction = <T>(fn: () => T): Promise<T> => {
      if (this.depth > 0) return transaction(fn);
      this.check();
      return transaction(() => this.nested(() => this.fenced(fn))).catch((error: unknown) => this.failed(error));
    };
    store.batchSync = (fn, actor) => {
      if (this.depth > 0) return batchSync(fn, actor);
      this.check();
      try {
        return this.nested(() => batchSync((batch) => this.fenced(() => fn(batch)), actor));
      } catch (error) {
        return this.failed(error);
      }
    };
  }

  /**
   * A write that failed once the deadline had passed (this process was stopped while it waited
   * on the store, and the server ended its connection meanwhile) says what the lease says: lost
   * to another host, as APEX_E_LEASE_LOST, rather than the store's error of a connection gone.
   */
  private failed(error: unknown): never {
    if ((error as ApexError)?.code !== "APEX_E_LEASE_LOST" && (this.lostReason || performance.now() >= this.deadline)) this.check();
    throw error;
  }

  /** Runs `fn` inside a write transaction once the lease row is found to name this holder. */
  private fenced<T>(fn: () => T): T {
    this.checkRow();
    return fn();
  }

  /** Inside a write transaction: throws (aborting it) unless the lease row still names this holder. */
  private checkRow(): void {
    const row = readLease(this.store, this.sessionId);
    if (!row || this.owns(row)) return;
    this.lose(takenOver(row, this.store.get(sessionPath(this.sessionId)) as SessionRecord | undefined));
    this.check();
  }

  private owns(row: LeaseRow): boolean {
    return row.generation === this.identity.generation && row.host === this.identity.host && (row.nonce ?? null) === this.identity.nonce;
  }

  private nested<T>(fn: () => T): T {
    this.depth++;
    try {
      return fn();
    } finally {
      this.depth--;
    }
  }

  /**
   * Throws unless the lease is held. A renewal that is due (ttl/3 since the last) is made first,
   * synchronously: a supervisor whose event loop is kept busy by a run of writes (a checkpoint on
   * a slow disk) keeps its lease as the timer would, rather than letting it lapse in the database.
   */
  private check(): void {
    const now = performance.now(), third = Math.floor(this.ttlMs / 3);
    // Past the deadline always; before it, once ttl/3 after the last renewal and the last try (a store out of reach is not retried at every write).
    if (!this.lostReason && !this.ended && (now >= this.deadline || (now >= this.deadline - this.ttlMs + third && now - this.triedAt >= third))) this.renew();
    if (this.lostReason) {
      throw new ApexError("APEX_E_LEASE_LOST", `This supervisor no longer holds session ${this.sessionId}: ${this.lostReason}.`, {
        hint: "`apex status` shows where the session runs now.",
        details: { session_id: this.sessionId },
      });
    }
  }

  /**
   * Renews every ttl/3 (unref'd: it never keeps the process alive). No store call may block
   * past the lease (or ttl/3, for one begun after it): a store server out of reach then fails
   * the renewal in time, and the agents end before another host may take the session over.
   */
  start(): void {
    const third = Math.floor(this.ttlMs / 3);
    this.store.boundCalls?.((startedAt) => Math.max(this.deadline, startedAt + Math.max(1000, third)));
    this.timer = setInterval(() => !this.lost && !this.ended && this.renew(), Math.max(50, third)).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The supervisor ends the session itself: no more renewals (its record leaves /sessions/<sid>). */
  release(): void {
    this.ended = true;
    this.stop();
  }

  /**
   * One renewal, in one transaction: extends the lease when the record still names this
   * generation on this host; otherwise the lease is lost. A renewal that fails (the store cannot
   * be reached) is retried at the next tick; past the deadline it loses the lease too.
   */
  renew(again = true): RenewOutcome | undefined {
    const started = (this.triedAt = performance.now());
    const write = this.renewSync ?? ((fn: (batch: WriteBatch) => RenewOutcome, actor?: string) => this.store.batchSync(fn, actor));
    let outcome: RenewOutcome;
    try {
      outcome = this.nested(() => write((batch) => this.renewIn(batch), "supervisor")).value;
    } catch (error) {
      const now = performance.now();
      // Begun past the deadline, or failed later past it than any call may block (start()): this
      // process did not run meanwhile (stopped, its host asleep), and what failed is likely the
      // connection it had (the server ended it, its transaction left idle), not the store. Asked
      // once more, on a new connection, the lease row says whether another host took the session.
      if (again && now >= this.deadline && (started >= this.deadline || now > this.deadline + Math.max(1000, this.ttlMs / 3) + 1000)) return this.renew(false);
      if (now >= this.deadline) this.lose(`its lease ran out and could not be renewed (${(error as Error).message})`);
      else this.log(`lease: renewal failed, retrying: ${(error as Error).message}`);
      return undefined;
    }
    if (outcome.kind === "renewed") this.deadline = started + this.ttlMs;
    else if (outcome.kind === "ended") this.lose("the session was ended by another process");
    else {
      const holder = outcome.holder;
      const by = outcome.by ?? (holder ? `host ${supervisorHost(holder) ?? "(unknown)"} took it over (generation ${String(holder.generation ?? "?")})` : "its record no longer names a supervisor");
      this.lose(by);
    }
    return outcome;
  }

  private renewIn(batch: WriteBatch): RenewOutcome {
    const record = batch.get(sessionPath(this.sessionId)) as SessionRecord | undefined;
    if (!record) return { kind: "ended" };
    const row = readLease(this.store, this.sessionId);
    if (!row) return { kind: "lost", holder: record.supervisor };
    if (!this.owns(row)) return { kind: "lost", holder: { pid: 0, start_time: 0, socket: "", started_at: "", ...record.supervisor, host: row.host, generation: row.generation }, by: takenOver(row, record) };
    const expires_at = new Date((this.store.now?.() ?? Date.now()) + this.ttlMs).toISOString();
    // A table row: the renewal bumps no revision and adds nothing to the change log.
    writeLease(this.store, this.sessionId, { ...row, expires_at });
    return { kind: "renewed", expires_at };
  }

  private lose(reason: string): void {
    if (this.lostReason) return;
    this.lostReason = reason;
    this.stop();
    this.log(`lease lost: ${reason}`);
    this.onLost(reason);
  }
}
