import type { ApexApi, Engine, SessionContext, StopContext } from "../../core/engine.js";
import type { Store } from "../../core/store/store.js";
import { parseDuration } from "../../core/config/duration.js";
import { gitPluginOptions, repositoryIn, sessionWorktree } from "../git/repository.js";
import { REVIEW_STATS_PATH, metricsInputPrefix } from "./record.js";
import type { MetricsSampler } from "./sampler.js";
import { DEFAULT_IDLE_STATUSES } from "./timeline.js";

export interface MetricsOptions {
  enabled?: boolean;
  /** Time between samples: seconds, or a duration ("5m"). */
  interval?: number | string;
  /** Reported statuses that count as not working. */
  idle_statuses?: string[];
}

export const DEFAULT_INTERVAL_SECONDS = 60;
/** How often the revision log is read for changes that call for a sample (task changes, reports, inputs). */
const FOLLOW_MS = 250;
/** Samples caused by changes are at least this far apart: a burst of task changes costs one sample. */
const MIN_GAP_MS = 1000;
/** The most git may take in the session's final sample (finalGitMs). */
const FINAL_GIT_MS = 10_000;

/**
 * The metrics plugin inside the supervisor: one sampler for the session, sampled on an
 * interval, soon after anything that changes the numbers (an audit event, an agent-reported
 * input, /review/stats), on pause, resume and checkpoints, and a last time when the session
 * ends. Outside the supervisor (one-off CLI commands) there is no store and nothing runs.
 */
export class MetricsRuntime {
  private sampler: MetricsSampler | undefined;
  private timers: NodeJS.Timeout[] = [];
  private pending: NodeJS.Timeout | undefined;
  private lastSampleAt = 0;
  private since = 0;

  constructor(
    private readonly apex: ApexApi,
    private readonly options: MetricsOptions,
  ) {}

  async start(context: SessionContext): Promise<void> {
    const store = this.apex.store;
    if (!store) return;
    this.halt();
    const sampler = await this.open(store, context.sessionId);
    this.sampler = sampler;
    sampler.useTimings(() => this.apex.timings());
    this.since = store.revision();
    await this.run("start");
    const interval = parseDuration(this.options.interval ?? DEFAULT_INTERVAL_SECONDS) * 1000;
    this.timers.push(setInterval(() => this.request("interval"), interval).unref());
    this.timers.push(setInterval(() => this.follow(store, context.sessionId), FOLLOW_MS).unref());
  }

  /** A sample soon (at most one per MIN_GAP_MS for changes; pending requests merge). */
  request(reason: string, sessionId?: string): void {
    if (!this.sampler || (sessionId !== undefined && sessionId !== this.sampler.sessionId) || this.pending) return;
    const delay = Math.max(0, this.lastSampleAt + MIN_GAP_MS - Date.now());
    this.pending = setTimeout(() => {
      this.pending = undefined;
      void this.run(reason);
    }, delay).unref();
  }

  /** The session ended: a last sample (which also removes /sessions/current/metrics), then nothing more. */
  async stop(context: StopContext): Promise<void> {
    const store = this.apex.store;
    if (!store) return;
    this.halt();
    // A session that failed before onStart still gets its metrics.
    const sampler = this.sampler?.sessionId === context.sessionId ? this.sampler : await this.open(store, context.sessionId);
    this.sampler = undefined;
    try {
      await sampler.sample("stop", { gitWithinMs: this.finalGitMs() });
    } catch (error) {
      if (!this.gone(error)) this.apex.warn(`cannot record the final metrics: ${(error as Error).message}`);
    }
    sampler.close();
  }

  /**
   * How long git may take in the final sample: a third of the time onStop is given (the
   * plugin's tap timeout; none: no limit), at most 10 s. git status and diff in a large
   * repository can take longer than all of that, which timed the hook out: an error at the end
   * of a session that completed, and its metrics not recorded.
   */
  private finalGitMs(): number {
    const limit = this.apex.tapTimeoutMs();
    return limit === 0 ? FINAL_GIT_MS : Math.min(FINAL_GIT_MS, limit / 3);
  }


  /**
   * The live sampler when `engine` is the supervisor's (a command forwarded to it), which
   * from then on reads the tap timings from that engine; undefined elsewhere.
   */
  attach(engine: Pick<Engine, "store" | "timings">): MetricsSampler | undefined {
    if (!this.sampler || !this.apex.store || engine.store !== this.apex.store) return undefined;
    this.sampler.useTimings(() => engine.timings());
    return this.sampler;
  }

  private async open(store: Store, sessionId: string): Promise<MetricsSampler> {
    // Loaded here, not with the plugin: every CLI command that loads plugins would pay for it.
    const [{ MetricsSampler }, { repositoriesOf }] = await Promise.all([import("./sampler.js"), import("./repositories.js")]);
    const config = this.apex.config;
    const projectDir = config?.projectDir ?? process.cwd();
    const git = config ? gitPluginOptions(config) : undefined;
    // A session in a branch's git worktree counts the commits made there, as its checkpoints record
    // that worktree's git state (the git plugin's repositoryIn): it counted the project's own tree.
    return MetricsSampler.open({
      store,
      sessionId,
      idleStatuses: this.options.idle_statuses ?? DEFAULT_IDLE_STATUSES,
      repositories: repositoriesOf(repositoryIn(projectDir, git ?? {}, worktreeOf(store, sessionId)), config?.storeDir ?? `${projectDir}/.apex`),
      warn: (message) => this.apex.warn(message),
    });
  }

  private async run(reason: string): Promise<void> {
    const sampler = this.sampler;
    if (!sampler) return;
    this.lastSampleAt = Date.now();
    try {
      await sampler.sample(reason);
      this.recovered("sample");
    } catch (error) {
      if (!this.gone(error)) this.failing("sample", `cannot sample the session's metrics: ${(error as Error).message}`);
    }
  }

  /**
   * True, and nothing more runs, when the session is no longer this process's: its supervisor lost
   * its lease (a write says APEX_E_LEASE_LOST; another host took the session over, which the
   * supervisor logs itself) and is closing the store on its way out, without an onStop. Said as a
   * failure, it read "cannot read the revision log: The store is closed" in the supervisor's log.
   */
  private gone(error: unknown): boolean {
    if (!this.apex.store?.closed && (error as { code?: unknown } | undefined)?.code !== "APEX_E_LEASE_LOST") return false;
    this.halt();
    this.sampler?.close();
    this.sampler = undefined;
    return true;
  }

  /** Kinds of periodic work failing now: each is warned of once, not at every tick, until it works again. */
  private readonly failures = new Set<"sample" | "log">();

  private failing(kind: "sample" | "log", message: string): void {
    if (this.failures.has(kind)) return;
    this.failures.add(kind);
    this.apex.warn(`${message} (warned once until it works again)`);
  }

  private recovered(kind: "sample" | "log"): void {
    if (this.failures.delete(kind)) this.apex.warn(kind === "sample" ? "metrics are sampled again" : "the revision log is read again");
  }

  /** Reads the revision log since the last look; anything that moves a metric asks for a sample. */
  private follow(store: Store, sessionId: string): void {
    const events = `/sessions/${sessionId}/events/`;
    const inputs = `${metricsInputPrefix(sessionId)}/`;
    let relevant = false;
    try {
      if (store.closed) throw new Error("closed");
      for (const change of store.changesSince(this.since)) {
        this.since = change.revision;
        if (change.path.startsWith(events) || change.path.startsWith(inputs) || change.path === REVIEW_STATS_PATH) relevant = true;
      }
    } catch (error) {
      if (!this.gone(error)) this.failing("log", `cannot read the revision log: ${(error as Error).message}`);
      return;
    }
    this.recovered("log");
    if (relevant) this.request("change");
  }


  private halt(): void {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    if (this.pending) clearTimeout(this.pending);
    this.pending = undefined;
  }
}

/** The git worktree `sessionId` runs in, null for the project's own tree (or a record that does not read: the project's tree is counted). */
function worktreeOf(store: Store, sessionId: string): string | null {
  try {
    return sessionWorktree(store, sessionId);
  } catch {
    return null;
  }
}
