import { isAbsolute, resolve } from "node:path";
import { formatBytes, plural } from "../../cli/output.js";
import type { CommandContext, CommandInput } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import type { SweepResult } from "../checkpoint/checkpoints.js";
import { applyRetention, previewRetention, removalReason, type RetentionOutcome, type RetentionPlan, type SessionPlan } from "./cleanup.js";
import { describePolicy, policyJson } from "./options.js";
import { RETENTION_TIME_ZONE, type RetentionPolicy } from "./policy.js";
import { shortSessionId } from "../../core/session/names.js";
import { findKnownSession, knownSessions, labelReason, type SessionInfo } from "./sessions.js";
import { withLease } from "../../core/session/lease.js";
import type { SessionRecord } from "../../core/session/records.js";
import { effectiveStatus } from "../../core/session/sessions.js";
import type { Store } from "../../core/store/store.js";
import { findTemporaryFiles, removeTemporaryFiles, type TemporaryFile, type TemporaryRemoval } from "./temporary.js";

/**
 * `apex session cleanup [ID] [--dry-run] [--json]`: applies the retention policy now to one
 * session or every session, sweeps what no checkpoint needs any more and removes leftover
 * temporary files. With --dry-run it prints each checkpoint's fate and the rules behind it,
 * and writes nothing.
 */
export async function runCleanupCommand(input: CommandInput, context: CommandContext, policy: RetentionPolicy): Promise<number> {
  const argument = typeof input.args[0] === "string" && input.args[0] !== "" ? input.args[0] : undefined;
  const dryRun = Boolean(input.options.dryRun);
  const json = Boolean(input.options.json);
  if (!(await context.storeExists())) {
    // No store yet: nothing to plan or apply, and opening one for writing would create it (a dry run wrote .apex/store.mdb).
    if (argument !== undefined) findKnownSession([], argument);
    const plan: RetentionPlan = { policy, timeZone: RETENTION_TIME_ZONE, sessions: [] };
    const temporary = temporaryFiles(context, [], undefined);
    const outcome: RetentionOutcome = { plan, deleted: [], skipped: [], removedMeanwhile: [], sweep: undefined, sweepError: undefined };
    if (dryRun) {
      if (json) context.printJson(outcomeJson(outcome, { removed: temporary, bytes: sum(temporary), failed: [] }, new Map(), true));
      else printDryRun(context, outcome, temporary, sessionLabels([]), new Map());
      return 0;
    }
    const removed = removeTemporaryFiles(temporary);
    if (json) context.printJson(outcomeJson(outcome, removed, new Map()));
    else printOutcome(context, outcome, removed, sessionLabels([]), new Map());
    return removed.failed.length > 0 ? 1 : 0;
  }
  const store = await context.store();
  const sessions = knownSessions(store);
  const sessionId = argument === undefined ? undefined : findKnownSession(sessions, argument, store).sessionId;
  const temporary = temporaryFiles(context, sessions, sessionId);
  // Read before the run: its statuses are those the sessions had as it planned.
  const statuses = sessionStatuses(store, sessions);

  if (dryRun) {
    // What the real run would delete and sweep, as its --json shows it (dry_run true): the same keys.
    const preview = await previewRetention(store, policy, { sessionId });
    if (json) context.printJson(outcomeJson(preview, { removed: temporary, bytes: sum(temporary), failed: [] }, statuses, true));
    else printDryRun(context, preview, temporary, sessionLabels(sessions), statuses);
    return 0;
  }

  const outcome = await applyRetention(store, policy, { sessionId, sweep: "always", run: "command" });
  const removed = removeTemporaryFiles(temporary);
  if (json) context.printJson(outcomeJson(outcome, removed, statuses));
  else printOutcome(context, outcome, removed, sessionLabels(sessions), statuses);
  // Deletions stand either way; a sweep that could not run, or a file that stayed, is a failure to report.
  return outcome.sweepError || removed.failed.length > 0 ? 1 : 0;
}

function temporaryFiles(context: CommandContext, sessions: ReturnType<typeof knownSessions>, sessionId: string | undefined): TemporaryFile[] {
  if (!context.config) throw new ApexError("APEX_E_INTERNAL", "session cleanup needs the project's config.");
  // Where the archive plugin puts bundles (its backupDirectory): session.backup_location, relative to the project.
  const location = context.config.session.backup_location ?? ".apex/backups";
  const backupDir = isAbsolute(location) ? location : resolve(context.projectDir ?? context.config.projectDir, location);
  return findTemporaryFiles({ storeDir: context.config.storeDir, projectDir: context.projectDir, sessions, sessionId, backupDir });
}

// ---------------------------------------------------------------------------------------------
// Text

/** A session id -> how the text names it: its name, else a uuid's short form, else the whole id (--json keeps whole ids). */
type Label = (sessionId: string) => string;

function sessionLabels(sessions: readonly SessionInfo[]): Label {
  const names = new Map<string, string>();
  for (const { sessionId, record } of sessions) if (typeof record?.name === "string" && record.name) names.set(sessionId, record.name);
  return (sessionId) => names.get(sessionId) ?? shortSessionId(sessionId);
}

/** A session id -> its status as `session list` shows it (effectiveStatus: interrupted for a live record whose supervisor is gone); none for a session with no record left. */
type Statuses = ReadonlyMap<string, string>;

function sessionStatuses(store: Store, sessions: readonly SessionInfo[]): Statuses {
  const statuses = new Map<string, string>();
  for (const { sessionId, record } of sessions) {
    if (!record) continue;
    // With its lease (another host's supervisor is judged by it), as session list reads the record.
    const status = effectiveStatus(withLease(store, record as unknown as SessionRecord));
    // A record written by hand may have none: "unknown", as session list says it.
    statuses.set(sessionId, typeof status === "string" ? status : "unknown");
  }
  return statuses;
}

function printDryRun(context: CommandContext, preview: RetentionOutcome, temporary: TemporaryFile[], label: Label, statuses: Statuses): void {
  const { plan } = preview;
  printHeader(context, plan);
  for (const session of plan.sessions) {
    const { result } = session;
    context.print("");
    context.print(`Session ${label(session.session.sessionId)} ${stateLabel(session, statuses)}: ${plural(result.decisions.length, "checkpoint")}, keep ${result.keep.length}, remove ${result.remove.length}`);
    const nameWidth = Math.max(0, ...result.decisions.map((decision) => decision.item.name.length));
    for (const decision of result.decisions) {
      const action = (decision.keep ? "keep" : "remove").padEnd(6);
      const reasons = decision.reasons.map((reason) => labelReason(reason, label));
      const why = decision.keep ? reasons.join(", ") : removalReason({ ...decision, reasons }, plan.policy);
      context.print(`  ${action} ${decision.item.name.padEnd(nameWidth)}  ${formatTime(decision.item.time)}  ${why}`);
    }
    if (result.overCap > 0) {
      context.print(`  note: ${plural(result.overCap, "protected checkpoint")} over max_checkpoints ${plan.policy.maxCheckpoints} (protected ones are never removed)`);
    }
  }
  if (preview.sweep) {
    const { values, trees } = preview.sweep.removed;
    context.print("");
    context.print(`Would sweep ${plural(values, "value")} and ${plural(trees, "tree node")} no kept checkpoint would reference: ${sweptBytes(preview.sweep)}.`);
  }
  if (preview.sweepError) {
    const { code, message, hint } = preview.sweepError;
    context.print("");
    context.print(`The sweep would not run [${code}]: ${message}${hint ? ` ${hint}` : ""}`);
  }
  if (temporary.length > 0) {
    context.print("");
    context.print(`Temporary files: ${plural(temporary.length, "file")} to remove (${formatBytes(sum(temporary))})`);
    for (const file of temporary) context.print(`  ${file.display}  ${formatBytes(file.bytes)}  ${temporaryWhy(file, label)}`);
  }
  context.print("");
  context.print("Dry run: nothing was changed. Run `apex session cleanup` without --dry-run to apply.");
}

/** A temporary file's reason as text says it: its session as the other lines name it (the path beside it keeps the whole id, the directory's name). */
function temporaryWhy(file: TemporaryFile, label: Label): string {
  return file.sessionId !== undefined && file.why.endsWith(` session ${file.sessionId}`) ? `${file.why.slice(0, -file.sessionId.length)}${label(file.sessionId)}` : file.why;
}

function printHeader(context: CommandContext, plan: RetentionPlan): void {
  context.print(`Retention policy: ${describePolicy(plan.policy)}`);
  context.print(`Hours, days, ISO weeks and months are counted in ${plan.timeZone}; times shown are ${plan.timeZone}.`);
  if (plan.sessions.length === 0) context.print("No session has checkpoints.");
}

function printOutcome(context: CommandContext, outcome: RetentionOutcome, removed: TemporaryRemoval, label: Label, statuses: Statuses): void {
  printHeader(context, outcome.plan);
  for (const session of outcome.plan.sessions) {
    const deleted = outcome.deleted.filter((entry) => entry.sessionId === session.session.sessionId);
    const names = deleted.length > 0 ? ` (${removedNames(deleted.map((entry) => entry.name))})` : "";
    context.print(
      `Session ${label(session.session.sessionId)} ${stateLabel(session, statuses)}: removed ${plural(deleted.length, "checkpoint")}${names}, kept ${session.result.keep.length}`,
    );
  }
  for (const skipped of outcome.skipped) context.print(`  not removed: ${label(skipped.sessionId)}/${skipped.name}: ${skipped.error.message}`);
  if (outcome.removedMeanwhile.length > 0) {
    context.print(`${plural(outcome.removedMeanwhile.length, "checkpoint")} it would have removed had been removed meanwhile by another cleanup (the supervisor's after a checkpoint, or another \`apex session cleanup\`).`);
  }
  if (outcome.sweep) {
    const { values, trees } = outcome.sweep.removed;
    context.print(`Swept ${plural(values, "value")} and ${plural(trees, "tree node")} no kept checkpoint references: ${sweptBytes(outcome.sweep)}.`);
  }
  if (outcome.sweepError) {
    const { code, message, hint } = outcome.sweepError;
    context.print(`The sweep did not run [${code}]: ${message}${hint ? ` ${hint}` : ""}`);
  }
  if (removed.removed.length > 0) context.print(`Removed ${plural(removed.removed.length, "temporary file")} (${formatBytes(removed.bytes)}).`);
  for (const failed of removed.failed) context.print(`  could not remove ${failed.display}: ${failed.error}`);
}

/**
 * "361 B freed on disk", what the store's packs shrank by; and, when the objects dropped were
 * larger (kept in compressed packs, or left as garbage in a pack mostly still in use), their own
 * size: the sum of those sizes was reported as freed, many times what the disk got back.
 */
function sweptBytes(sweep: SweepResult): string {
  if (sweep.removed.bytes === sweep.packs.bytesFreed) return `${formatBytes(sweep.packs.bytesFreed)} freed`;
  return `${formatBytes(sweep.packs.bytesFreed)} freed on disk (objects dropped: ${formatBytes(sweep.removed.bytes)} uncompressed)`;
}

/** Names of removed checkpoints the text lists before it counts the rest: --json lists them all. */
const NAMES_LISTED = 10;

/** "checkpoint-004, checkpoint-001"; past NAMES_LISTED, the newest of them and how many more (a cleanup of 584 was one line of 584 names). */
function removedNames(names: readonly string[]): string {
  if (names.length <= NAMES_LISTED) return names.join(", ");
  return `${names.slice(0, NAMES_LISTED).join(", ")} and ${names.length - NAMES_LISTED} more: --json lists them`;
}

/**
 * "(stopped)", "(interrupted)": the status session list gives the session (the current one had no label, an
 * ended one "(ended)"). Not coloured: the supervisor may run the command, whose output is not a terminal.
 */
function stateLabel(session: SessionPlan, statuses: Statuses): string {
  const status = statuses.get(session.session.sessionId);
  return status === undefined ? "(no session record)" : `(${status})`;
}

/** "2026-11-20 14:00" in UTC. */
export function formatTime(time: number): string {
  if (!Number.isFinite(time)) return "(no valid time)".padEnd(16);
  return new Date(time).toISOString().slice(0, 16).replace("T", " ");
}


function sum(files: readonly TemporaryFile[]): number {
  return files.reduce((total, file) => total + file.bytes, 0);
}

// ---------------------------------------------------------------------------------------------
// JSON

function planJson(plan: RetentionPlan, statuses: Statuses) {
  return {
    time_zone: plan.timeZone,
    policy: policyJson(plan.policy),
    sessions: plan.sessions.map((session) => ({
      session_id: session.session.sessionId,
      state: session.session.state,
      status: statuses.get(session.session.sessionId) ?? null,
      checkpoints: session.result.decisions.map((decision) => ({
        name: decision.item.name,
        id: decision.item.id,
        sequence: decision.item.sequence,
        created_at: decision.item.createdAt,
        action: decision.keep ? "keep" : "remove",
        reasons: decision.reasons,
        protected: decision.protected,
        ...(decision.keep ? {} : { removed_by: decision.removedBy, reason: removalReason(decision, plan.policy) }),
      })),
      kept: session.result.keep.length,
      removed: session.result.remove.length,
      over_cap: session.result.overCap,
      keep_within_from: session.result.withinAnchor === undefined ? null : new Date(session.result.withinAnchor).toISOString(),
    })),
  };
}

function temporaryJson(files: readonly TemporaryFile[]) {
  return { files: files.map((file) => ({ path: file.path, bytes: file.bytes, why: file.why })), bytes: sum(files) };
}

/** The outcome as --json shows it; a dry run's (what would be deleted, swept and removed) has the same keys. */
function outcomeJson(outcome: RetentionOutcome, removed: TemporaryRemoval, statuses: Statuses, dryRun = false) {
  const sweep = outcome.sweep?.removed;
  const packsFreed = outcome.sweep?.packs.bytesFreed ?? 0;
  return {
    dry_run: dryRun,
    ...planJson(outcome.plan, statuses),
    deleted: outcome.deleted.map((entry) => ({ session_id: entry.sessionId, name: entry.name, id: entry.id, sequence: entry.sequence, reason: entry.reason })),
    skipped: outcome.skipped.map((entry) => ({ session_id: entry.sessionId, name: entry.name, id: entry.id, error: entry.error })),
    removed_meanwhile: outcome.removedMeanwhile.map((entry) => ({ session_id: entry.sessionId, name: entry.name, id: entry.id, sequence: entry.sequence })),
    // bytes_freed: what the packs freed on disk; object_bytes: the objects' own (uncompressed) size, `bytes` before.
    sweep: sweep ? { values: sweep.values, trees: sweep.trees, bytes_freed: packsFreed, object_bytes: sweep.bytes, bytes: sweep.bytes } : null,
    sweep_error: outcome.sweepError ?? null,
    temporary: {
      ...temporaryJson(removed.removed),
      failed: removed.failed.map((file) => ({ path: file.path, error: file.error })),
    },
    bytes_freed: packsFreed + removed.bytes,
  };
}
