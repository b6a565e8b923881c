/**
 * Recovery from the CLI: `apex start --force-recovery <checkpoint>` and `session.auto_recovery`
 * (an interrupted session is continued from its latest checkpoint by the next `apex start` or
 * `apex status`).
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { paint, plural, printJson, printLine } from "../../core/cli/output.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { isSameProcessAlive } from "../../core/session/proc.js";
import { readRuntime } from "../../core/session/runtime.js";
import type { ReadyReport } from "../../core/session/supervisor.js";
import type { CheckpointSummary } from "./catalog.js";

// ------------------------------------------------------------------------------------ force recovery

interface LostEntry {
  part: string;
  path: string;
  what: string;
  reason: string;
  entries?: number;
}

interface RecoveryView {
  id: string;
  session_id: string;
  name: string;
  manifest_verified: boolean;
  lost: LostEntry[];
  memory: { recovered: number; set: number; deleted: number; kept: string[]; kept_count: number };
  tasks: { recovered: number; kept?: string[] };
  agents: { recovered: number; kept?: string[] };
  warnings?: string[];
}

/**
 * `apex start --force-recovery <checkpoint>`. What a damaged checkpoint lost is worked out here
 * first, on the store opened read-only, and printed before anything starts; then the supervisor
 * claims the session, saves its current state, restores what still verifies, and starts the
 * agents. The session must not be running: its supervisor is the store's one writer.
 */
export async function forceRecoveryStart(location: ProjectLocation, ref: string, options: { json?: boolean; attach?: boolean }): Promise<void> {
  if (options.attach) {
    throw new ApexError("APEX_E_USAGE", "--force-recovery does not attach.", { hint: "Follow the recovered session with `apex logs -f` once it started." });
  }
  const { loadConfig } = await import("../../core/config/load.js");
  await loadConfig(location);
  const runtime = readRuntime(location.storeDir);
  if (runtime && isSameProcessAlive(runtime.pid, runtime.start_time)) {
    throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${runtime.session_id} is running (supervisor pid ${runtime.pid}); force recovery restores into a session that is not.`, {
      hint: "Stop it first (`apex stop`); its state is checkpointed before the recovery replaces it.",
    });
  }
  const { Store } = await import("../../core/store/store.js");
  if (!Store.exists(location.storeDir)) throw new ApexError("APEX_E_NO_SESSION", "No session in this project yet.");
  const { forceRecover, resolveCheckpoint } = await import("./checkpoints.js");
  const { recoveryDetails } = await import("./plugin-service.js");
  const store = Store.open(location.storeDir, { readOnly: true });
  let preview: RecoveryView;
  let checkpointId: string;
  try {
    const { defaultSessionIfAny } = await import("./plugin-sessions.js");
    const sessionId = defaultSessionIfAny(store);
    const located = resolveCheckpoint(store, ref, sessionId ? { sessionId } : {});
    checkpointId = located.id;
    // Another session still holds the project: say so before showing anything (the supervisor would refuse too).
    const { currentSession, effectiveStatus, isEnded } = await import("../../core/session/sessions.js");
    const current = currentSession(store);
    if (current && !isEnded(current) && current.session_id !== located.sessionId) {
      throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${current.session_id} is ${effectiveStatus(current)}; a project runs one session at a time.`, {
        hint: "End it with `apex stop` first; then recover the other session's checkpoint.",
      });
    }
    preview = recoveryDetails(await forceRecover(store, located.id, { dryRun: true })) as unknown as RecoveryView;
  } finally {
    await store.close();
  }
  if (!options.json) printRecovery(preview);

  const { launchSupervisor } = await import("../../core/session/launch.js");
  const ready = await launchSupervisor(location, { mode: "continue", continueTarget: checkpointId, forceRecovery: true });
  const recovery = (ready.restore ?? preview) as unknown as RecoveryView;
  if (options.json) return printJson({ ...ready, recovery });
  for (const warning of recovery.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
  printReady(ready, `recovered from ${recovery.session_id}/${recovery.name} (${lostSummary(recovery.lost)})`);
}

function lostSummary(lost: LostEntry[]): string {
  return lost.length === 0 ? "nothing lost" : `${plural(lost.length, "item")} lost`;
}

function printRecovery(view: RecoveryView): void {
  printLine(`Force recovery from ${paint(`${view.session_id}/${view.name}`, "bold")} (${view.id})`);
  if (!view.manifest_verified) printLine(paint("  The manifest does not match its hash: its fields are used as they are.", "red"));
  const verify = (n: number, noun: string) => `${plural(n, noun)} ${n === 1 ? "verifies" : "verify"}`;
  printLine(`  memory  ${verify(view.memory.recovered, "value")}; ${view.memory.set} to write, ${view.memory.deleted} to delete`);
  printLine(`  tasks   ${verify(view.tasks.recovered, "record")}`);
  printLine(`  agents  ${verify(view.agents.recovered, "record")}`);
  if (view.lost.length === 0) {
    printLine("  Nothing was lost: the checkpoint verifies completely.");
    return;
  }
  printLine(paint(`  Lost (${view.lost.length}):`, "red"));
  for (const item of view.lost) {
    const entries = item.entries !== undefined ? `, ${item.entries} entries` : "";
    printLine(`    ${item.part.padEnd(7)} ${item.what === "directory" ? `${item.path}/ (directory${entries})` : item.path}: ${item.reason}`);
  }
  if (view.memory.kept_count > 0) {
    const more = view.memory.kept_count - Math.min(20, view.memory.kept.length);
    printLine(`  Kept as they are (the lost part of the checkpoint would tell): ${view.memory.kept.slice(0, 20).join(", ")}${more > 0 ? `, and ${more} more` : ""}`);
  }
}

function printReady(ready: ReadyReport, how: string): void {
  printLine(`Session ${paint(ready.session_id, "bold")} continued (supervisor pid ${ready.supervisor_pid}), ${how}.`);
  for (const reaped of ready.reaped) printLine(`  reaped the old processes of ${reaped.agent}: ${reaped.pids.join(", ")}`);
  for (const agent of ready.agents) printLine(`  ${agent.name.padEnd(12)} ${agent.status.padEnd(10)} pid ${agent.pid ?? "-"}`);
  printLine(paint("Next: apex status · apex checkpoint list · apex logs -f", "gray"));
}

// ------------------------------------------------------------------------------------ auto recovery

export interface Recoverable {
  sessionId: string;
  checkpoint: CheckpointSummary;
}

/**
 * The session `session.auto_recovery` would bring back now, if any: the current session,
 * interrupted (its supervisor died without stopping it), with a checkpoint to recover from,
 * and the checkpoint plugin enabled. Cheap when nothing crashed: a supervisor that exited
 * cleanly removes its runtime file, so only a runtime file naming a dead process leads to a
 * look at the store and the config.
 */
export async function findRecoverable(location: ProjectLocation): Promise<Recoverable | undefined> {
  if (process.env.APEX_SOCKET) return undefined; // inside an agent: its supervisor is alive
  const runtime = readRuntime(location.storeDir);
  if (!runtime || isSameProcessAlive(runtime.pid, runtime.start_time)) return undefined;
  const [{ Store }, { Catalog }, { currentSession, effectiveStatus }] = await Promise.all([
    import("../../core/store/store.js"),
    import("./catalog.js"),
    import("../../core/session/sessions.js"),
  ]);
  if (!Store.exists(location.storeDir)) return undefined;
  let found: Recoverable | undefined;
  const store = Store.open(location.storeDir, { readOnly: true });
  try {
    const session = currentSession(store);
    if (!session || effectiveStatus(session) !== "interrupted") return undefined;
    const latest = Catalog.of(store).latest(session.session_id);
    if (latest) found = { sessionId: session.session_id, checkpoint: latest };
  } catch {
    return undefined; // an unreadable record: status shows what it can, recovery is for the user to start
  } finally {
    await store.close();
  }
  if (!found) return undefined;
  const { loadConfig } = await import("../../core/config/load.js");
  const config = await loadConfig(location);
  if (!config.session.auto_recovery) return undefined;
  if (!config.plugins.some((entry) => entry.name === "checkpoint" && entry.enabled)) return undefined;
  return found;
}

/** The notice printed (on stderr) when auto_recovery continued a session. */
export function recoveryNotice(recoverable: Recoverable, json: boolean): void {
  const { sessionId, checkpoint } = recoverable;
  if (json) {
    process.stderr.write(
      `${JSON.stringify({ notice: { auto_recovery: true, session_id: sessionId, checkpoint: { id: checkpoint.id, name: checkpoint.name, trigger: checkpoint.trigger, created_at: checkpoint.created_at } } })}\n`,
    );
    return;
  }
  process.stderr.write(
    `${paint("notice:", "yellow", process.stderr)} session ${sessionId} was interrupted; auto_recovery continued it from ${checkpoint.name} (${checkpoint.trigger}, ${checkpoint.created_at}). Turn this off with session.auto_recovery: false.\n`,
  );
}

/**
 * For `apex status`: continues the interrupted session in the background of this command (the
 * supervisor is detached) and prints the notice. Resolves to false when there was nothing to
 * do or another command recovered it first.
 */
export async function autoRecoverForStatus(location: ProjectLocation, json: boolean): Promise<boolean> {
  let recoverable: Recoverable | undefined;
  try {
    recoverable = await findRecoverable(location);
  } catch (error) {
    // An invalid config must not make `apex status` fail: it shows the interrupted session as it is.
    process.stderr.write(`warning: auto_recovery skipped: ${(error as Error).message}\n`);
    return false;
  }
  if (!recoverable) return false;
  const { launchSupervisor } = await import("../../core/session/launch.js");
  try {
    await launchSupervisor(location, { mode: "continue", continueTarget: recoverable.sessionId });
  } catch (error) {
    if (isApexError(error) && error.code === "APEX_E_SESSION_ACTIVE") return false; // recovered meanwhile by another command
    process.stderr.write(`warning: auto_recovery of session ${recoverable.sessionId} failed: ${(error as Error).message}\n`);
    return false;
  }
  recoveryNotice(recoverable, json);
  return true;
}

