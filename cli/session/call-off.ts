/**
 * Ctrl-C while a command starts a session (`apex start`, `--continue`, `--force-recovery`, `resume` of an
 * interrupted session, the continue after `session repair`) calls the start off, at every instant, and says
 * what is left:
 * - before the supervisor is launched, the step under way ends (a wait on another supervisor says itself what
 *   it leaves) and nothing is launched: "no session was started";
 * - once launched, the supervisor is sent SIGINT: before it claims a session it claims none and exits; from
 *   the claim on it stops the session once started (queued behind the start, as an `apex stop` sent then is),
 *   so no agent is left running and the session is recorded stopped. The command waits for that, and says so.
 * A second Ctrl-C returns at once, saying what goes on. Before, Ctrl-C before the launch exited 130 without
 * a word, and during it left the session starting in the background.
 */
import type { ChildProcess } from "node:child_process";
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError, isApexError } from "../../core/errors.js";
import type { ReadyReport } from "../../core/session/supervisor.js";
import type { JsonValue } from "../../core/store/store.js";
import { reportError } from "../output.js";

let current: StartGuard | undefined;

/** The guard of the start under way, if a command installed one (`apex serve` launching a remote continue has none). */
export const startGuard = (): StartGuard | undefined => current;

/** Runs `start` with Ctrl-C calling the start off (see above); the guard is released once the session's start is reported. */
export async function callOffOnInterrupt<T>(json: boolean, start: () => Promise<T>): Promise<T> {
  const guard = new StartGuard(json);
  current = guard;
  process.on("SIGINT", guard.onSignal);
  try {
    return await start();
  } catch (error) {
    // A step before the launch that failed after Ctrl-C (a git command it killed): called off, with what that step said.
    if (!guard.interrupted || guard.supervisor || (isApexError(error) && error.code === "APEX_E_INTERRUPTED")) throw error;
    throw guard.notStarted(error instanceof Error ? error.message : String(error));
  } finally {
    guard.release();
  }
}

export class StartGuard {
  interrupted = false;
  supervisor: ChildProcess | undefined;
  /** What was done before the launch and stays (a session stopped to make way, a git checkout), said when the start is called off. */
  private readonly kept: string[] = [];
  private readonly keptDetails: Record<string, JsonValue> = {};

  constructor(private readonly json: boolean) {}

  readonly onSignal = (): void => {
    if (this.interrupted) {
      const pid = this.supervisor?.pid;
      const error = pid === undefined || this.exited()
        ? this.notStarted()
        : new ApexError("APEX_E_INTERRUPTED", `Interrupted again: the supervisor (pid ${pid}) goes on calling the start off in the background: it stops the session once it has started.`, {
            hint: "`apex status` shows where it stands.",
            details: { supervisor_pid: pid, ...this.keptDetails },
          });
      process.exit(reportError(error, this.json));
    }
    this.interrupted = true;
    if (this.supervisor) this.signalSupervisor();
    // A wait under way (on the supervisor of a session making way) says itself what its interruption leaves.
    else if (process.listenerCount("SIGINT") === 1 && !this.json) process.stderr.write("Calling the start off once the step under way ends (Ctrl-C again to leave at once).\n");
  };

  /** Something the start did that a call-off leaves as it is. */
  keep(key: string, details: JsonValue, text: string): void {
    this.kept.push(text);
    this.keptDetails[key] = details;
  }

  /**
   * Just before the supervisor is spawned: a start called off before it launches nothing. A whole
   * turn of the event loop first, its poll for signals included: a Ctrl-C that came while a step
   * held the loop (a plugin's apply) is only heard there, and the steps before may have given the
   * loop no turn since (the CLI's bundle loads its modules without one).
   */
  async beforeLaunch(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)));
    if (this.interrupted) throw this.notStarted();
  }

  launched(child: ChildProcess): void {
    this.supervisor = child;
    if (this.interrupted) this.signalSupervisor();
  }

  release(): void {
    process.off("SIGINT", this.onSignal);
    if (current === this) current = undefined;
  }

  /**
   * The launch's outcome once the start was called off: waits for the supervisor to exit (it stops the session
   * it claimed), then throws what is left, read from the store. A start that failed by itself reports its error.
   */
  async calledOff(location: ProjectLocation, outcome: { ready?: ReadyReport; error?: unknown }): Promise<never> {
    const child = this.supervisor!;
    const error = outcome.error;
    // The supervisor's own failure (not the call-off, nor its exit by the signal before it could say so) stands.
    if (error !== undefined && !(isApexError(error) && (error.code === "APEX_E_INTERRUPTED" || (error.code === "APEX_E_PROCESS" && child.signalCode !== null)))) throw error;
    while (!this.exited()) await new Promise((resolve) => setTimeout(resolve, 50));
    const sessionId = outcome.ready?.session_id;
    if (sessionId === undefined) throw this.notStarted(undefined, child.pid);
    const [{ openStore }, { findSession, effectiveStatus }, { shortSessionId }] = await Promise.all([import("../../core/store/open.js"), import("../../core/session/sessions.js"), import("../../core/session/names.js")]);
    const store = await openStore(location, { readOnly: true });
    let record;
    try {
      record = findSession(store, sessionId);
    } finally {
      await store.close();
    }
    const status = record ? effectiveStatus(record) : "unknown";
    const label = typeof record?.name === "string" && record.name ? record.name : shortSessionId(sessionId);
    const ended = status === "stopped" || status === "completed" || status === "failed";
    const what = ended ? `session ${label} was ${status === "stopped" ? "stopped" : `recorded ${status}`} as it started; none of its agents runs` : `session ${label} is ${status}: its supervisor (pid ${child.pid}) exited without stopping it`;
    throw new ApexError("APEX_E_INTERRUPTED", `Start called off (Ctrl-C): ${what}.${this.keptText()}`, {
      hint: ended ? `\`apex session history\` shows it; \`apex start --continue ${label}\` continues it.` : `\`apex status\` shows what is left; \`apex stop\` ends it.`,
      details: { session_id: sessionId, status, supervisor_pid: child.pid ?? null, ...this.keptDetails },
    });
  }

  notStarted(cause?: string, pid?: number): ApexError {
    const supervisor = pid === undefined ? "" : ` (its supervisor, pid ${pid}, claimed none and exited)`;
    return new ApexError("APEX_E_INTERRUPTED", `Start called off (Ctrl-C): no session was started${supervisor}.${cause ? ` The step under way said: ${cause}` : ""}${this.keptText()}`, {
      details: { session_id: null, ...this.keptDetails },
    });
  }

  private keptText(): string {
    return this.kept.length > 0 ? ` Done before and kept: ${this.kept.join("; ")}.` : "";
  }

  private signalSupervisor(): void {
    const child = this.supervisor!;
    if (this.exited()) return;
    // Its own child, not yet reaped: the pid is this supervisor's.
    child.kill("SIGINT");
    if (!this.json) process.stderr.write(`Calling the start off: its supervisor (pid ${child.pid}) claims no session, or stops the one it claimed once started, so that no agent is left running (Ctrl-C again to leave at once).\n`);
  }

  private exited(): boolean {
    const child = this.supervisor;
    return child !== undefined && (child.exitCode !== null || child.signalCode !== null);
  }
}
