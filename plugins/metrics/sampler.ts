import type { TapTiming } from "../../core/engine.js";
import {
  CONTEXT_SUFFIX,
  CURRENT_SESSION_PATH,
  agentsPrefix,
  countersPath,
  taskCountsPath,
  type AgentRecord,
  type SessionRecord,
  type TaskCounts,
} from "../../core/session/records.js";
import { eventsAfter } from "../../core/session/service.js";
import { findSession } from "../../core/session/sessions.js";
import type { Store } from "../../core/store/store.js";
import { formatSeconds, formatShare } from "./format.js";
import { CpuTracker } from "./cpu.js";
import {
  CURRENT_METRICS_PATH,
  ISSUES_INPUT,
  METRICS_FORMAT,
  REVIEW_STATS_PATH,
  checkpointCounts,
  isRecord,
  metricsInputPrefix,
  metricsPath,
  round,
  type AgentUtilization,
  type PluginTiming,
  type RepositoryMetrics,
  type SessionMetrics,
} from "./record.js";
import { headOf, measureRepository, type Head, type RepositorySpec } from "./repositories.js";
import { SessionTimeline } from "./timeline.js";

export const METRICS_ACTOR = "plugin:metrics";

/** A record's ISO time as ms, or undefined when it is missing or does not parse. */
function timeOf(value: unknown): number | undefined {
  const ms = typeof value === "string" ? Date.parse(value) : NaN;
  return Number.isFinite(ms) ? ms : undefined;
}
const ENDED = new Set(["stopped", "completed", "failed"]);

export interface SamplerOptions {
  store: Store;
  sessionId: string;
  idleStatuses: readonly string[];
  repositories: readonly RepositorySpec[];
  warn: (message: string) => void;
}

/**
 * Computes one session's metrics and writes them (the supervisor's store: it is the one
 * writer). Time totals come from replaying the audit trail, incrementally; CPU from /proc;
 * commits and lines from git, against the HEAD each repository had when the session started.
 * A continued session carries on from its stored metrics (start commits, CPU and timings of
 * the earlier runs). Samples run one at a time.
 */
export class MetricsSampler {
  private readonly timeline: SessionTimeline;
  private readonly cpu = new CpuTracker();
  /** Repository name → HEAD when the session started (null: no commit then). */
  private readonly starts = new Map<string, string | null>();
  /** Heads resume read for a session starting now: the first sample, taken right after, uses them rather than one more `git status` each (on the start's way). */
  private readonly startHeads = new Map<string, { head: Head }>();
  /** Timings of the session's earlier runs (a continued session's engine starts from zero). */
  private baseTimings: PluginTiming[] = [];
  private timings: (() => TapTiming[]) | undefined;
  private samples = 0;
  /** When the runs of this session whose supervisor died were last seen running (carried from record to record). */
  private readonly seenAt: string[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** Samples asked for so far; those queued before a last sample (numbered below dropBefore) are not taken. */
  private queued = 0;
  private dropBefore = 0;
  /** Per repository, what git last counted without an error. */
  private readonly counted = new Map<string, RepositoryMetrics>();
  /** Cuts short git in the sample under way. */
  private running: AbortController | undefined;
  private closed = false;
  private readonly warned = new Set<string>();

  private constructor(private readonly options: SamplerOptions) {
    this.timeline = new SessionTimeline(options.idleStatuses);
  }

  /** A sampler for a session that starts (or continues) now. */
  static async open(options: SamplerOptions): Promise<MetricsSampler> {
    const sampler = new MetricsSampler(options);
    await sampler.resume();
    return sampler;
  }

  get sessionId(): string {
    return this.options.sessionId;
  }

  /** Where tap timings come from: the supervisor's engine. */
  useTimings(timings: () => TapTiming[]): void {
    this.timings = timings;
  }

  /**
   * Samples now, after the samples already queued; resolves to what was written (undefined once
   * closed). `last`: the session's final sample, due within a time its caller is held to (the
   * onStop hook's timeout): the samples queued before it are dropped, git in the one under way is
   * cut short (that one still writes what it has, which this one then replaces), and its own git
   * calls end within `gitWithinMs` (what git did not count by then is said in the repository's `error`).
   */
  sample(reason: string, last?: { gitWithinMs: number }): Promise<SessionMetrics | undefined> {
    let run: Promise<SessionMetrics | undefined>;
    if (last) {
      this.dropBefore = ++this.queued;
      this.running?.abort();
      run = this.queue.then(() => (this.closed ? undefined : this.take(reason, Date.now() + last.gitWithinMs)));
    } else {
      const place = ++this.queued;
      run = this.queue.then(() => (this.closed || place < this.dropBefore ? undefined : this.take(reason)));
    }
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** No more samples; one already queued still runs. */
  close(): void {
    this.closed = true;
  }

  /** Takes over from the stored metrics of an earlier run, or records where the repositories start. */
  private async resume(): Promise<void> {
    const stored = this.options.store.get(metricsPath(this.sessionId));
    if (isRecord(stored) && stored.session_id === this.sessionId) {
      const previous = stored as SessionMetrics;
      this.samples = typeof previous.samples === "number" ? previous.samples : 0;
      // A run whose supervisor died ran at least until its last sample: the trail alone (its last
      // event) undercounts it, and the time until it was continued or stopped is not the session's.
      const seen = Array.isArray(previous.interrupted_runs_seen_at) ? previous.interrupted_runs_seen_at.filter((at): at is string => timeOf(at) !== undefined) : [];
      if (typeof previous.status === "string" && !ENDED.has(previous.status) && timeOf(previous.updated_at) !== undefined) seen.push(previous.updated_at);
      for (const at of new Set(seen)) {
        this.seenAt.push(at);
        this.timeline.seenRunning(timeOf(at)!);
      }
      this.baseTimings = Array.isArray(previous.plugin_timings) ? previous.plugin_timings.filter(isRecord) : [];
      // Records from before agent_utilization_detail kept the detail in agent_utilization.
      const detail = isRecord(previous.agent_utilization_detail) ? previous.agent_utilization_detail : isRecord(previous.agent_utilization) ? previous.agent_utilization : {};
      for (const [agent, usage] of Object.entries(detail)) {
        if (isRecord(usage) && typeof usage.cpu_seconds === "number") this.cpu.seed(agent, usage.cpu_seconds);
      }
      const repositories = isRecord(previous.git) && Array.isArray(previous.git.repositories) ? previous.git.repositories : [];
      for (const repository of repositories) {
        if (isRecord(repository) && typeof repository.name === "string") {
          this.starts.set(repository.name, typeof repository.start_commit === "string" ? repository.start_commit : null);
        }
      }
      if (this.starts.size > 0) return;
    }
    for (const spec of this.options.repositories) {
      try {
        const head = await headOf(spec);
        this.startHeads.set(spec.name, { head });
        if (head) this.starts.set(spec.name, head.commit);
      } catch (error) {
        this.warnOnce(`git:${spec.name}`, `no start commit recorded for the ${spec.name} repository: ${(error as Error).message}`);
      }
    }
  }

  private async take(reason: string, gitDeadline?: number): Promise<SessionMetrics | undefined> {
    const { store, sessionId } = this.options;
    const session = findSession(store, sessionId);
    if (!session) return undefined;
    for (const event of eventsAfter(store, sessionId, this.timeline.seq)) this.timeline.apply(event);
    const running = new AbortController();
    this.running = running;
    let repositories: RepositoryMetrics[];
    try {
      repositories = await this.measureRepositories({ deadline: gitDeadline, signal: running.signal });
    } finally {
      if (this.running === running) this.running = undefined;
    }
    const now = Date.now();
    // A record replaced by hand (`memory set --force`) may lack any field or hold a time that does
    // not parse: what cannot be known is unknown (null), never NaN, which no store can hold.
    const status = typeof session.status === "string" ? session.status : "unknown";
    const endedAt = timeOf(session.ended_at);
    const startedAt = timeOf(session.created_at);
    const ended = ENDED.has(status) && endedAt !== undefined ? endedAt : undefined;
    const totals = this.timeline.totals(ended ?? now);
    const activeSeconds = totals.activeMs / 1000;
    const agents = this.agentRecords(session);
    const cpu = this.cpu.read(agents);
    const utilization: Record<string, AgentUtilization> = {};
    for (const agent of agents) {
      const working = (totals.workingMs.get(agent.name) ?? 0) / 1000;
      const cpuSeconds = cpu.get(agent.name) ?? 0;
      utilization[agent.name] = {
        reported_status: agent.reported_status ?? null,
        working_seconds: round(working),
        share: activeSeconds > 0 ? round(Math.min(1, working / activeSeconds), 4) : 0,
        cpu_seconds: round(cpuSeconds, 2),
        cpu_share: activeSeconds > 0 ? round(cpuSeconds / activeSeconds, 4) : 0,
      };
    }
    const tasks = this.taskCounts();
    const checkpoints = this.checkpoints(totals.checkpointsCreated);
    const inputs = this.reportedNumbers();
    const issues = this.issues(inputs);
    this.samples += 1;
    const durationSeconds = startedAt === undefined ? null : Math.max(0, (ended ?? now) - startedAt) / 1000;
    const linesAdded = repositories.reduce((sum, repository) => sum + repository.lines_added, 0);
    const metrics: SessionMetrics = {
      format: METRICS_FORMAT,
      session_id: sessionId,
      status,
      updated_at: new Date(now).toISOString(),
      reason,
      samples: this.samples,
      started_at: startedAt === undefined ? null : session.created_at,
      ended_at: endedAt === undefined ? null : (session.ended_at as string),
      session_duration: durationSeconds === null ? "unknown" : formatSeconds(durationSeconds),
      session_duration_seconds: durationSeconds === null ? null : round(durationSeconds),
      active_seconds: round(activeSeconds),
      paused_seconds: round(totals.pausedMs / 1000),
      tasks_total: tasks.total,
      tasks_pending: tasks.pending,
      tasks_active: tasks.active,
      tasks_completed: tasks.completed,
      tasks_failed: tasks.failed,
      tasks_reopened: totals.tasksReopened,
      milestones: this.milestoneCount(),
      commits_made: repositories.reduce((sum, repository) => sum + repository.commits, 0),
      lines_of_code: linesAdded,
      lines_added: linesAdded,
      lines_removed: repositories.reduce((sum, repository) => sum + repository.lines_removed, 0),
      issues_found: issues.count,
      issues_source: issues.source,
      reported: inputs,
      checkpoints,
      agent_utilization: Object.fromEntries(Object.entries(utilization).map(([agent, usage]) => [agent, formatShare(usage.share)])),
      agent_utilization_detail: utilization,
      git: { repositories },
      plugin_timings: this.pluginTimings(),
      interrupted_runs_seen_at: [...this.seenAt],
    };
    await store.batch((batch) => {
      batch.set(metricsPath(sessionId), metrics);
      const current = batch.get(CURRENT_SESSION_PATH);
      const isCurrent = isRecord(current) && current.session_id === sessionId && !ENDED.has(status);
      const mirror = batch.get(CURRENT_METRICS_PATH);
      if (isCurrent) batch.set(CURRENT_METRICS_PATH, metrics);
      else if (isRecord(mirror) && mirror.session_id === sessionId) batch.delete(CURRENT_METRICS_PATH);
    }, METRICS_ACTOR);
    return metrics;
  }

  private async measureRepositories(within: { deadline?: number; signal: AbortSignal }): Promise<RepositoryMetrics[]> {
    const measured = await Promise.all(
      this.options.repositories.map(async (spec) => {
        const known = this.startHeads.get(spec.name);
        this.startHeads.delete(spec.name);
        const result = await measureRepository(spec, this.starts.get(spec.name) ?? null, known, within);
        // Cut short for the final sample, which measures again: nothing to warn of.
        if (within.signal.aborted) return result;
        if (result?.error) this.warnOnce(`git:${spec.name}:${result.error}`, `${spec.name} repository: ${result.error}`);
        if (!result?.error) {
          if (result) this.counted.set(spec.name, result);
          return result;
        }
        // Git did not count this time (too slow, or failing): the figures it last counted stand, the error beside them.
        const before = this.counted.get(spec.name);
        return before ? { ...before, error: result.error } : result;
      }),
    );
    return measured.filter((result): result is RepositoryMetrics => result !== undefined);
  }

  private agentRecords(session: SessionRecord): AgentRecord[] {
    const records = new Map<string, AgentRecord>();
    for (const { path, value } of this.options.store.query(`${agentsPrefix(this.sessionId)}/*`)) {
      if (!path.endsWith(CONTEXT_SUFFIX) && isRecord(value) && typeof value.name === "string") records.set(value.name, value as AgentRecord);
    }
    // The session's agents in config order, then agents of earlier runs that are no longer configured.
    const configured = Array.isArray(session.agents) ? session.agents.filter((name): name is string => typeof name === "string") : [];
    const ordered = configured.map((name) => records.get(name)).filter((record): record is AgentRecord => record !== undefined);
    return [...ordered, ...[...records.values()].filter((record) => !configured.includes(record.name))];
  }

  private taskCounts(): TaskCounts {
    const counts = this.options.store.get(taskCountsPath(this.sessionId));
    const number = (value: unknown) => (typeof value === "number" ? value : 0);
    const record = isRecord(counts) ? counts : {};
    return { pending: number(record.pending), active: number(record.active), completed: number(record.completed), failed: number(record.failed), total: number(record.total) };
  }

  private milestoneCount(): number {
    const counters = this.options.store.get(countersPath(this.sessionId));
    return isRecord(counters) && typeof counters.milestones === "number" ? counters.milestones : 0;
  }

  private checkpoints(createdEvents: number): SessionMetrics["checkpoints"] {
    return checkpointCounts(this.options.store.query(`/sessions/${this.sessionId}/checkpoint-*`), createdEvents);
  }

  /** Every number agents put under /sessions/<sid>/metrics-input. */
  private reportedNumbers(): Record<string, number> {
    const prefix = `${metricsInputPrefix(this.sessionId)}/`;
    const out: Record<string, number> = {};
    for (const { path, value } of this.options.store.query(`${prefix}*`)) {
      if (typeof value === "number" && Number.isFinite(value)) out[path.slice(prefix.length)] = value;
    }
    return out;
  }

  /** An agent-reported issues_found wins; else the reference adversary's /review/stats of this session. */
  private issues(inputs: Record<string, number>): { count: number; source: string } {
    const reported = inputs[ISSUES_INPUT];
    if (reported !== undefined) return { count: reported, source: "metrics-input" };
    const stats = this.options.store.get(REVIEW_STATS_PATH);
    if (isRecord(stats) && stats.session === this.sessionId && typeof stats.issues === "number") return { count: stats.issues, source: "review-stats" };
    return { count: 0, source: "none" };
  }

  private pluginTimings(): PluginTiming[] {
    const merged = new Map<string, PluginTiming>();
    const add = (timing: { plugin: string; hook: string; calls: number; failures: number; total_ms: number; max_ms: number }) => {
      const key = `${timing.plugin}\u0000${timing.hook}`;
      const known = merged.get(key);
      if (!known) {
        merged.set(key, { ...timing });
        return;
      }
      known.calls += timing.calls;
      known.failures += timing.failures;
      known.total_ms += timing.total_ms;
      known.max_ms = Math.max(known.max_ms, timing.max_ms);
    };
    for (const timing of this.baseTimings) add(timing);
    for (const timing of this.timings?.() ?? []) {
      add({ plugin: timing.plugin, hook: timing.hook, calls: timing.calls, failures: timing.failures, total_ms: timing.totalMs, max_ms: timing.maxMs });
    }
    return [...merged.values()]
      .map((timing) => ({ ...timing, total_ms: round(timing.total_ms), max_ms: round(timing.max_ms) }))
      .sort((a, b) => b.total_ms - a.total_ms || a.plugin.localeCompare(b.plugin) || a.hook.localeCompare(b.hook));
  }

  private warnOnce(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.options.warn(message);
  }
}
