import type { SessionEvent } from "../../core/session/records.js";

/** Reported statuses that mean "not working" unless the plugin's `idle_statuses` option says otherwise. */
export const DEFAULT_IDLE_STATUSES: readonly string[] = [
  "starting",
  "idle",
  "waiting",
  "ready",
  "blocked",
  "sleeping",
  "paused",
  "done",
  "finished",
  "stopped",
  "exited",
];

export interface TimelineTotals {
  activeMs: number;
  pausedMs: number;
  /** Per agent: milliseconds of active session time with a working status. */
  workingMs: Map<string, number>;
  checkpointsCreated: number;
  tasksReopened: number;
}

type Phase = "stopped" | "active" | "paused";

const STARTS = new Set(["session.started", "session.continued"]);
const ENDS = new Set(["session.stopped", "session.completed", "session.failed"]);
const TAKEN_OVER = "session.taken_over";

/**
 * Replays a session's audit trail (events in seq order) into time totals: how long the
 * session was active and paused, and how long each agent worked while it was active.
 *
 * An agent works from an `agent.report` with a working status until it reports an idle one,
 * exits, is restarted, or the session pauses or ends. A run whose supervisor died has no end
 * event: its last stretch is counted up to the last time it was seen running (its last metrics
 * sample, {@link seenRunning}, or else its last event), and not through the time it lay dead
 * until a `start --continue` or an `apex stop` (`session.stopped` with `from: "interrupted"`).
 */
export class SessionTimeline {
  private readonly idle: ReadonlySet<string>;
  private phase: Phase = "stopped";
  /** Time (ms) up to which the totals are accounted. */
  private clock = 0;
  private activeMs = 0;
  private pausedMs = 0;
  private readonly working = new Map<string, number>();
  private readonly busy = new Set<string>();
  private checkpoints = 0;
  private reopened = 0;
  private lastSeq = 0;
  /** Times (ms) at which runs that died were last seen running, ascending. */
  private readonly seen: number[] = [];

  constructor(idleStatuses: readonly string[] = DEFAULT_IDLE_STATUSES) {
    this.idle = new Set(idleStatuses.map((status) => status.toLowerCase()));
  }

  /** The seq of the last event applied: replay continues after it. */
  get seq(): number {
    return this.lastSeq;
  }

  /** A run of the session was running at `at` (ms): its last metrics sample before its supervisor died. */
  seenRunning(at: number): void {
    if (!Number.isFinite(at) || this.seen.includes(at)) return;
    this.seen.push(at);
    this.seen.sort((a, b) => a - b);
  }

  isWorking(status: string | null | undefined): boolean {
    return typeof status === "string" && status !== "" && !this.idle.has(status.toLowerCase());
  }

  apply(event: SessionEvent): void {
    // A record that is no object (null, a string written by hand with --force) is no event: it failed the final metrics.
    if (event === null || typeof event !== "object" || event.seq <= this.lastSeq) return;
    this.lastSeq = event.seq;
    const at = Date.parse(event.at);
    if (!Number.isFinite(at)) return;
    // A run begins, or one that died (or lost its lease to another host) is taken over or stopped from outside.
    const afterDeath = STARTS.has(event.type) || event.type === TAKEN_OVER || (ENDS.has(event.type) && event.from === "interrupted");
    if (afterDeath) {
      if (this.phase !== "stopped") {
        // The run before died (the session is still active or paused here): counted up to when it
        // was last seen running, never through the time it lay dead.
        const seen = this.seen.filter((time) => time > this.clock && time < at).at(-1);
        if (seen !== undefined) this.advance(seen);
      }
      this.clock = Math.max(this.clock, at);
      this.busy.clear();
      // A takeover is followed by the session.continued that starts the new run.
      if (STARTS.has(event.type)) this.phase = "active";
      else if (ENDS.has(event.type)) this.phase = "stopped";
      return;
    }
    this.advance(at);
    const agent = typeof event.agent === "string" ? event.agent : undefined;
    switch (event.type) {
      case "session.paused":
        this.phase = "paused";
        break;
      case "session.resumed":
        this.phase = "active";
        break;
      case "agent.report":
        if (agent === undefined) break;
        if (this.isWorking(typeof event.status === "string" ? event.status : null)) this.busy.add(agent);
        else this.busy.delete(agent);
        break;
      case "agent.started":
      case "agent.exited":
        if (agent !== undefined) this.busy.delete(agent);
        break;
      case "checkpoint":
        this.checkpoints += 1;
        break;
      case "task.reopened":
        // A pending task given to another agent was not sent back.
        if (event.from !== "pending") this.reopened += 1;
        break;
      default:
        if (ENDS.has(event.type)) {
          this.phase = "stopped";
          this.busy.clear();
        }
    }
  }

  /** The totals as of `now` (ms), counting the open stretch without changing the state. */
  totals(now: number): TimelineTotals {
    const open = this.phase === "stopped" ? 0 : Math.max(0, now - this.clock);
    const working = new Map(this.working);
    if (this.phase === "active") for (const agent of this.busy) working.set(agent, (working.get(agent) ?? 0) + open);
    return {
      activeMs: this.activeMs + (this.phase === "active" ? open : 0),
      pausedMs: this.pausedMs + (this.phase === "paused" ? open : 0),
      workingMs: working,
      checkpointsCreated: this.checkpoints,
      tasksReopened: this.reopened,
    };
  }

  private advance(to: number): void {
    const elapsed = Math.max(0, to - this.clock);
    this.clock = Math.max(this.clock, to);
    if (elapsed === 0 || this.phase === "stopped") return;
    if (this.phase === "paused") {
      this.pausedMs += elapsed;
      return;
    }
    this.activeMs += elapsed;
    for (const agent of this.busy) this.working.set(agent, (this.working.get(agent) ?? 0) + elapsed);
  }
}
