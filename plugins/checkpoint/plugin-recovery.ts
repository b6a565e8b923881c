/**
 * `apex start --force-recovery <checkpoint>` from the CLI. (`session.auto_recovery` continues
 * from the live store and lives with the session code: cli/session/auto-recovery.ts.)
 */
import type { ProjectLocation } from "../../core/config/locate.js";
import { paint, plural, printJson, printLine, visibleText } from "../../cli/output.js";
import { ApexError } from "../../core/errors.js";
import type { ReadyReport } from "../../core/session/supervisor.js";

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
  /** The checkpoint's session's name, null for an unnamed one (a supervisor older than it leaves it out). */
  session_name?: string | null;
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
  const { openStore, storeExists } = await import("../../core/store/open.js");
  if (!(await storeExists(location))) throw new ApexError("APEX_E_NO_SESSION", "No session in this project yet.");
  const [{ forceRecover }, { resolveCheckpoint }] = await Promise.all([import("./recover.js"), import("./checkpoints.js")]);
  const { recoveryDetails } = await import("./plugin-service.js");
  const [{ sessionName }, { shortSessionId }] = await Promise.all([import("./merge-base.js"), import("../../core/session/names.js")]);
  const store = await openStore(location, { readOnly: true });
  let preview: RecoveryView;
  let checkpointId: string;
  let targetSession: string;
  try {
    const { defaultSessionIfAny } = await import("./plugin-sessions.js");
    const sessionId = defaultSessionIfAny(store);
    const located = resolveCheckpoint(store, ref, sessionId ? { sessionId } : {});
    checkpointId = located.id;
    targetSession = located.sessionId;
    preview = recoveryDetails(await forceRecover(store, located.id, { dryRun: true }), sessionName(store, located.sessionId)) as unknown as RecoveryView;
  } finally {
    await store.close();
  }
  // Sessions as session list prints them, by name or short id (--json has the whole ids).
  const session = (view: RecoveryView) => (view.session_name ? visibleText(view.session_name) : shortSessionId(view.session_id));
  const label = (view: RecoveryView) => `${session(view)}/${view.name}`;
  if (!options.json) printRecovery(preview, label(preview));
  // A session that holds the project (this one running, or another) is checkpointed and stopped first.
  const { makeWay, handoverLine } = await import("../../cli/session/handover.js");
  const handover = await makeWay(location, {
    target: { sessionId: targetSession, checkpoint: checkpointId },
    rollback: true,
    // Named as the lines above name it (the argument may be a whole uuid, or `latest`).
    reason: `force-recover checkpoint ${label(preview)}`,
    json: Boolean(options.json),
  });
  if (handover && !options.json) printLine(handoverLine(handover));

  const { launchSupervisor } = await import("../../cli/session/launch.js");
  const ready = await launchSupervisor(location, { mode: "continue", continueTarget: checkpointId, forceRecovery: true });
  const recovery = (ready.restore ?? preview) as unknown as RecoveryView;
  if (options.json) return printJson({ ...ready, recovery, ...(handover ? { handover } : {}) });
  for (const warning of recovery.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
  // The session continued is the checkpoint's (continueTarget): named as the recovery names it.
  const continued = ready.session_id === recovery.session_id ? session(recovery) : shortSessionId(ready.session_id);
  printReady(ready, continued, `recovered from ${label(recovery)} (${lostSummary(recovery.lost)})`);
}

function lostSummary(lost: LostEntry[]): string {
  return lost.length === 0 ? "nothing lost" : `${plural(lost.length, "item")} lost`;
}

function printRecovery(view: RecoveryView, label: string): void {
  printLine(`Force recovery from ${paint(label, "bold")} (${view.id})`);
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
    const entries = item.entries !== undefined ? `, ${plural(item.entries, "entry", "entries")}` : "";
    printLine(`    ${item.part.padEnd(7)} ${item.what === "directory" ? `${item.path}/ (directory${entries})` : item.path}: ${item.reason}`);
  }
  if (view.memory.kept_count > 0) {
    const more = view.memory.kept_count - Math.min(20, view.memory.kept.length);
    printLine(`  Kept as they are (the lost part of the checkpoint would tell): ${view.memory.kept.slice(0, 20).join(", ")}${more > 0 ? `, and ${more} more` : ""}`);
  }
}

function printReady(ready: ReadyReport, session: string, how: string): void {
  printLine(`Session ${paint(session, "bold")} continued (supervisor pid ${ready.supervisor_pid}), ${how}.`);
  for (const reaped of ready.reaped) printLine(`  reaped the old processes of ${reaped.agent}: ${reaped.pids.join(", ")}`);
  for (const agent of ready.agents) printLine(`  ${agent.name.padEnd(12)} ${agent.status.padEnd(10)} pid ${agent.pid ?? "-"}`);
  printLine(paint("Next: apex status · apex checkpoint list · apex logs -f", "gray"));
}
