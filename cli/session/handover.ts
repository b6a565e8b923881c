/**
 * Making way for a continue: `apex start --continue`, `--force-recovery` and `apex session
 * repair` while another session holds the project. Instead of refusing, the session in the
 * way is checkpointed and stopped (its supervisor does both; an interrupted one is stopped
 * here, its leftovers reaped by verified pid and start time), and the command goes on. The
 * checkpoint comes first: if it cannot be written nothing is stopped, and the refusal names
 * the command that stops the session without it. Memory is never touched here: what a
 * continue does to it is the continue's business (a rollback saves what it replaces).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { paint, plural } from "../output.js";
import { waitForExit } from "./exit-wait.js";
import { liveSessionClient } from "../../core/session/client.js";
import { shortSessionId } from "../../core/session/names.js";
import type { ContinueTarget } from "../../core/session/sessions.js";
import { lifecycleCall } from "./lifecycle-wait.js";

/** What was done with the session that was in the way. */
export interface Handover {
  session_id: string;
  /** A branch session's name (null: none); text names the session by it, else its uuid's short form. */
  name: string | null;
  /** Its status before: active, paused or interrupted. */
  was: string;
  /** The checkpoint of its state written before it stopped (null: none needed or no checkpoint plugin). */
  checkpoint: { id: string; name: string; trigger: string } | null;
  processes_ended: number;
}

/**
 * What `--continue ARG` names, read from the store (read-only, so this works beside a live
 * supervisor): a session (continued from the live store) or a checkpoint (a rollback).
 * Short checkpoint forms (`checkpoint-007`, `latest`) are resolved by the checkpoint code, as
 * the supervisor resolves them. A project whose store was never made has no session: the
 * reference is refused as on an empty store (it launched a supervisor, which created the store
 * only to find nothing to continue).
 */
export async function resolveTarget(location: ProjectLocation, argument: string): Promise<(ContinueTarget & { name: string | null; ended?: string; checkpointName?: string }) | undefined> {
  const { openStore, storeExists } = await import("../../core/store/open.js");
  const exists = await storeExists(location);
  const [{ resolveContinueTarget, findSession, endedMark }, { resolveCheckpoint }, { defaultSessionIfAny }] = await Promise.all([
    import("../../core/session/sessions.js"),
    import("../../plugins/index.js").then(({ builtinServices }) => builtinServices.checkpointRefs()),
    import("../../plugins/index.js").then(({ builtinServices }) => builtinServices.checkpointSessions()),
  ]);
  // No store: an empty one of its own, in a directory removed after, finds nothing as the project's would.
  const scratch = exists ? undefined : mkdtempSync(join(tmpdir(), "apex-no-store-"));
  const store = await openStore(scratch ?? location, scratch ? {} : { readOnly: true });
  // The checkpoint's number, which text names it by (`checkpoint-002`), whatever form the argument gave it in.
  let sequence: number | undefined;
  try {
    const target = await resolveContinueTarget(store, argument, {
      resolve: async (ref) => {
        try {
          const sessionId = defaultSessionIfAny(store);
          const located = resolveCheckpoint(store, ref, sessionId ? { sessionId } : {});
          sequence = located.sequence;
          return { sessionId: located.sessionId, checkpoint: located.id };
        } catch (error) {
          // A reference only a checkpoint can be (`checkpoint-002`, `S/checkpoint-002`) keeps what the checkpoint code says of
          // it, as `apex checkpoint show` does: that it was deleted, or the session's latest number. It was "No session or checkpoint".
          if (isApexError(error) && error.code === "APEX_E_CHECKPOINT_NOT_FOUND" && onlyCheckpoint(ref)) throw error;
          if (isApexError(error) && (error.code === "APEX_E_CHECKPOINT_NOT_FOUND" || error.code === "APEX_E_NO_SESSION")) return undefined;
          throw error;
        }
      },
    });
    // The session's name (a branch's), which text names it by once it runs (sessionText), and its ended state (endedMark).
    let name: unknown;
    let ended: string | undefined;
    try {
      const record = findSession(store, target.sessionId);
      name = record?.name;
      ended = record && endedMark(record);
    } catch {
      name = undefined; // an unreadable record names nothing: the short id is printed
    }
    const checkpointName = target.checkpoint !== undefined && sequence !== undefined ? `checkpoint-${String(sequence).padStart(3, "0")}` : undefined;
    return { ...target, name: typeof name === "string" && name ? name : null, ...(ended === undefined ? {} : { ended }), ...(checkpointName ? { checkpointName } : {}) };
  } finally {
    await store.close();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  }
}

/** A --continue reference no session can be: one with a `/` (SESSION/CHECKPOINT) or a checkpoint's name (`checkpoint-007`). */
function onlyCheckpoint(ref: string): boolean {
  const text = ref.trim();
  return text.includes("/") || /^checkpoint-\d+$/i.test(text);
}

export interface MakeWayRequest {
  /** The session the command continues (undefined: none, as for repair). */
  target: ContinueTarget | undefined;
  /** True when the command replaces memory (a named checkpoint, force recovery). */
  rollback: boolean;
  /** Why the session is stopped, recorded as its outcome ("stopped to continue …"). */
  reason: string;
  /** Only a live supervisor is in the way (repair works beside an interrupted session). */
  liveOnly?: boolean;
  /** The command's --json: a long wait on the stop is then not said on stderr. */
  json?: boolean;
}

/**
 * Stops the current session when it is in the way of `request`, after checkpointing it.
 * Undefined when nothing is in the way: no current session, an ended one, or the target
 * itself when it is interrupted (the continue reaps and continues it). The target itself
 * while it runs is in the way only for a rollback; continuing it as it is is refused (exit 4:
 * it already runs).
 */
export async function makeWay(location: ProjectLocation, request: MakeWayRequest): Promise<Handover | undefined> {
  const current = await currentOf(location, request.target);
  if (!current) return undefined;
  // Live on another host: not this host's to checkpoint or stop (the claim would refuse it too).
  if (current.remote) throw current.remote;
  const same = request.target !== undefined && request.target.sessionId === current.session_id;
  const client = await liveSessionClient(location, { local: true, session: current.session_id });
  const live = client?.supervisor;
  if (current.status === "interrupted" || !client || !live) {
    if (same || request.liveOnly) return undefined;
  } else if (same && !request.rollback) {
    // Its stop is under way (the record says active until it is written): continued once it has stopped.
    if ((await liveStatus(client)) === "stopping") throw stoppingInTheWay(current, `once it has stopped, \`apex start --continue ${sessionText(current)}\` continues it`);
    // A paused one is continued by resume, which this did not say.
    const resume = current.status === "paused" ? `It is paused: \`apex --session ${sessionText(current)} resume\` continues it. ` : "";
    throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${sessionText(current)} is ${current.status} (supervisor pid ${live.pid}); there is nothing to continue.`, {
      // Named: a bare `apex status` (and checkpoint list) in the project's tree is the project's session, not a branch running in its worktree.
      hint: `${resume}See it with \`apex --session ${sessionText(current)} status\`; \`apex start --continue ${sessionText(current)}/CHECKPOINT\` goes back to one of its checkpoints (\`apex --session ${sessionText(current)} checkpoint list\`).`,
      details: { session_id: current.session_id, status: current.status },
    });
  }
  // The same session rolled back: this checkpoint holds the state the restore replaces, so it is
  // a beforeRestore checkpoint (kept by retention); otherwise it is the session's final state.
  const checkpoint = same && request.rollback
    ? { trigger: "beforeRestore", description: `state before ${request.reason}` }
    : { trigger: "onStop", description: `session end: stopped to ${request.reason}` };
  const reason = `stopped to ${request.reason}`;
  if (client && live && current.status !== "interrupted") {
    let reply: { checkpoint?: Handover["checkpoint"]; processes_ended?: number };
    try {
      // Its checkpoint and hooks may take long: waited for while the supervisor sends its heartbeat.
      reply = (await lifecycleCall(client, "stop", { reason, checkpoint }, Boolean(request.json))) as typeof reply;
    } catch (error) {
      if (isApexError(error) && ["APEX_E_RPC", "APEX_E_TIMEOUT", "APEX_E_SESSION_STOPPING"].includes(error.code)) throw error;
      // It was starting and its start failed (the stop queued behind it): it has ended, nothing is in the way once its supervisor is gone.
      if (isApexError(error) && error.code === "APEX_E_NO_SESSION") {
        await waitForExit(live, 15_000);
        return undefined;
      }
      throw new ApexError("APEX_E_SESSION_ACTIVE", `Session ${sessionText(current)} is ${current.status} and could not be checkpointed before stopping it: ${(error as Error).message}`, {
        hint: "Nothing was stopped or changed. Stop it without that checkpoint with `apex stop`, then run this command again.",
        details: { session_id: current.session_id, status: current.status },
        cause: error,
      });
    }
    await waitForExit(live, 15_000);
    return { session_id: current.session_id, name: current.name, was: current.status, checkpoint: reply.checkpoint ?? null, processes_ended: reply.processes_ended ?? 0 };
  }
  const { stopWithoutSupervisor } = await import("./stop-offline.js");
  const stopped = await stopWithoutSupervisor(location, { force: false, graceMs: 5000, reason, checkpoint });
  return { session_id: current.session_id, name: current.name, was: current.status, checkpoint: stopped.checkpoint, processes_ended: stopped.processes_ended };
}

/**
 * The session's status as its live supervisor says it: `stopping` while a stop (or the session's
 * end) runs its hooks and ends its agents, which the stored record does not say. Undefined when it
 * does not answer in time.
 */
export async function liveStatus(client: { call(method: string, params?: Record<string, unknown>, timeoutMs?: number): Promise<unknown> }): Promise<string | undefined> {
  try {
    const report = (await client.call("session.status", {}, 2000)) as { session?: { status?: unknown } | null };
    return typeof report?.session?.status === "string" ? report.session.status : undefined;
  } catch {
    return undefined;
  }
}

/** A session in the way that is stopping: not "active", and what to do (wait for it). */
export function stoppingInTheWay(session: { session_id: string; name: string | null }, then: string): ApexError {
  return new ApexError("APEX_E_SESSION_ACTIVE", `Session ${sessionText(session)} is stopping (its agents are being ended); ${then}.`, {
    hint: "Wait for it: `apex status` shows it as stopping until it has stopped, and `apex stop` returns once it has. Then run this command again.",
    details: { session_id: session.session_id, status: "stopping" },
  });
}

/** A session as text prints it (session list, pause, stop): its name, else its uuid's short form, else the whole id. */
export function sessionText(session: { session_id: string; name: string | null }): string {
  return session.name ?? shortSessionId(session.session_id);
}

/** "Session 3f2a9c1e was active: saved as checkpoint-007 (onStop), stopped (4 processes ended)." (--json has the whole id, and the name.) */
export function handoverLine(handover: Handover): string {
  const saved = handover.checkpoint ? `saved as ${handover.checkpoint.name} (${handover.checkpoint.trigger}), ` : "";
  return `Session ${paint(sessionText(handover), "bold")} was ${handover.was}: ${saved}stopped (${plural(handover.processes_ended, "process", "processes")} ended).`;
}

/**
 * The session in the way of `target`: the one active in the working tree the target runs in (its
 * git worktree, or the project's own), since sessions in other trees run beside it. Without a
 * target (repair), the session this command is bound to. `remote` is the refusal to give when
 * that session is live on another host (not this host's to checkpoint or stop).
 */
async function currentOf(location: ProjectLocation, target: ContinueTarget | undefined): Promise<{ session_id: string; name: string | null; status: string; remote: ApexError | undefined } | undefined> {
  const { openStore, storeExists } = await import("../../core/store/open.js");
  if (!(await storeExists(location))) return undefined;
  const { activeSessions, currentSession, effectiveStatus, findSession, isEnded, projectSession } = await import("../../core/session/sessions.js");
  const [{ worktreeOf }, { samePath }, { onOtherHost }, { sessionInTheWay }] = await Promise.all([import("../../core/session/records.js"), import("../../core/session/binding.js"), import("../../core/session/lease.js"), import("../../core/session/claim.js")]);
  const store = await openStore(location, { readOnly: true });
  try {
    const targetRecord = target ? findSession(store, target.sessionId) : undefined;
    const tree = targetRecord ? worktreeOf(targetRecord) : undefined;
    const session =
      target === undefined || !targetRecord
        ? currentSession(store)
        : tree === null
          ? projectSession(store)
          : activeSessions(store).find((record) => {
              const theirs = worktreeOf(record);
              return theirs !== null && samePath(theirs, tree!);
            });
    if (!session || isEnded(session)) return undefined;
    const status = effectiveStatus(session);
    const remote = status !== "interrupted" && onOtherHost(session.supervisor) ? sessionInTheWay(session) : undefined;
    return { session_id: session.session_id, name: typeof session.name === "string" && session.name ? session.name : null, status, remote };
  } finally {
    await store.close();
  }
}
