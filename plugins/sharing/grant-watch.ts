/**
 * Open streams' grants, re-checked on one timer per session: each interval, the tokens of the
 * session's open streams are checked together (one `check` call, which opens the store once when
 * no supervisor runs), and every stream whose token no longer passes gets its reason. Before,
 * each stream checked its own grant every second: with no supervisor, one store open per stream
 * per second. A revoked or expired grant still ends its streams within one interval.
 *
 * A check gives each token undefined (it passes) or the error that ended it: the token's refusal
 * (APEX_E_UNAUTHORIZED: revoked, expired), or the server's own failure to tell (a store that cannot
 * be read), which its streams end with as with any failure of the server's. Before, every error
 * was turned into its message, which the stream then sent as the token's refusal: a damaged store
 * was said to the remote user as "unauthorized", with the store file's path. A failure that passes
 * (TRANSIENT_CODES) is waited out for a few intervals first.
 */
export type GrantCheck = (sessionId: string, tokens: string[]) => Promise<Map<string, unknown>>;

/**
 * Failures that pass (a PostgreSQL server restarting, a network blip, a store busy past the
 * check's wait): a check that meets one is tried again at the next interval, and only
 * TRANSIENT_CHECKS of them in a row end the session's streams (with that failure). Before, the
 * first one ended every open stream of the session, each dashboard and `memory watch` with it.
 */
const TRANSIENT_CODES = new Set(["APEX_E_STORE_UNREACHABLE", "APEX_E_TIMEOUT"]);
export const TRANSIENT_CHECKS = 10;
const isTransient = (error: unknown): boolean => TRANSIENT_CODES.has((error as { code?: unknown } | null)?.code as string);

interface Watcher {
  token: string;
  ended(error: unknown): void;
}

export class GrantWatch {
  private readonly sessions = new Map<string, { watchers: Set<Watcher>; timer: NodeJS.Timeout; busy: boolean; missed: number }>();

  constructor(
    /** For each token: undefined while it still passes, else the error that ends it. May throw: every stream of the session then ends with that error. */
    private readonly check: GrantCheck,
    private readonly intervalMs = 1000,
  ) {}

  /** Watches `token`'s grant for a stream of `sessionId`; `ended` gets the error that ends it. Returns what stops watching it. */
  add(sessionId: string, token: string, ended: (error: unknown) => void): () => void {
    let entry = this.sessions.get(sessionId);
    if (!entry) {
      const timer = setInterval(() => void this.tick(sessionId), this.intervalMs);
      timer.unref();
      entry = { watchers: new Set(), timer, busy: false, missed: 0 };
      this.sessions.set(sessionId, entry);
    }
    const watcher: Watcher = { token, ended };
    entry.watchers.add(watcher);
    return () => {
      const current = this.sessions.get(sessionId);
      if (!current?.watchers.delete(watcher) || current.watchers.size > 0) return;
      clearInterval(current.timer);
      this.sessions.delete(sessionId);
    };
  }

  /** Sessions watched now (each with one timer). */
  get size(): number {
    return this.sessions.size;
  }

  close(): void {
    for (const entry of this.sessions.values()) clearInterval(entry.timer);
    this.sessions.clear();
  }

  private async tick(sessionId: string): Promise<void> {
    const entry = this.sessions.get(sessionId);
    // A check still under way (a slow store): this interval's is skipped, not stacked.
    if (!entry || entry.busy) return;
    entry.busy = true;
    const watchers = [...entry.watchers];
    let verdicts: Map<string, unknown> | undefined;
    let failure: { error: unknown } | undefined;
    try {
      verdicts = await this.check(sessionId, [...new Set(watchers.map((watcher) => watcher.token))]);
    } catch (error) {
      failure = { error };
    } finally {
      entry.busy = false;
    }
    // A failure that passes, for the whole check or a token's: tried again next interval, up to TRANSIENT_CHECKS in a row.
    const passing = failure ? isTransient(failure.error) : [...(verdicts?.values() ?? [])].some(isTransient);
    entry.missed = passing ? entry.missed + 1 : 0;
    const patient = passing && entry.missed < TRANSIENT_CHECKS;
    for (const watcher of watchers) {
      const error = failure ? failure.error : verdicts?.get(watcher.token);
      if (patient && isTransient(error)) continue;
      if ((failure || error !== undefined) && entry.watchers.has(watcher)) watcher.ended(error);
    }
  }
}
