import { currentActor } from "../../core/actor.js";
import type { ProjectLocation } from "../../core/config/locate.js";
import type { Engine } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import { openStore, storeExists } from "../../core/store/open.js";
import { terminateAgent } from "../../core/session/agents.js";
import { carriesMarker, isSameProcessAlive, signalProcess, sleep, supervisorMarker } from "../../core/session/proc.js";
import { CURRENT_SESSION_PATH, setActiveSession, agentPath, historyPath, nowIso, sessionPath, type AgentRecord, type SessionRecord } from "../../core/session/records.js";
import { readRuntime, removeRuntime } from "../../core/session/runtime.js";
import { shortSessionId } from "../../core/session/names.js";
import { appendEvent, SessionReader } from "../../core/session/service.js";
import { onOtherHost } from "../../core/session/lease.js";
import { remoteSessionError } from "./remote-error.js";
import { boundSessionId, currentSession, historyOf, noSessionError, noSessionToActOn, supervisorAlive } from "../../core/session/sessions.js";
import { isRecord } from "../../plugins/checkpoint/manifest.js";
import { describeValue } from "../../plugins/owned-paths.js";

/**
 * `apex stop` with no supervisor to ask (it crashed, was killed, or hangs and --force was
 * given): ends what is left of the agents, verified by pid and start time, and records the
 * session as stopped. This process is then the only writer, so it writes the store itself.
 */
export async function stopWithoutSupervisor(
  location: ProjectLocation,
  options: { force: boolean; graceMs: number; reason?: string; checkpoint?: { trigger: string; description: string } },
): Promise<{ session_id: string; name: string | null; status: string; reason: string; processes_ended: number; checkpoint: { id: string; name: string; trigger: string } | null; killed?: number }> {
  if (!(await storeExists(location))) throw noSessionError();
  const { loadConfig } = await import("../../core/config/load.js");
  const config = await loadConfig(location);
  const store = await openStore(location);
  try {
    const stored = currentSession(store);
    // (null: a record written null by hand, while the session is listed as running; absent: none runs)
    if (stored === undefined) throw noSessionToActOn(store, "stop");
    const sid = boundSessionId(store)!;
    // A record written by hand or damaged (not an object, or without this session's id): its
    // agents are still ended, from their own records, and its supervisor found by its runtime file.
    const damaged = !isRecord(stored) || stored.session_id !== sid;
    const session = damaged ? damagedSessionView(location, sid) : stored;
    // Another host's live supervisor: its pids are not this machine's to signal, even with --force.
    if (supervisorAlive(session) && onOtherHost(session.supervisor)) throw remoteSessionError(session, "stop");
    // Nor, even with --force, a supervisor of another project directory on this host (it answers there).
    const elsewhere = (await import("./explain.js")).otherDirectoryError(session, location, "stop");
    if (elsewhere) throw elsewhere;
    const killed = supervisorAlive(session) ? session.supervisor!.pid : undefined;
    if (killed !== undefined) {
      if (!options.force) {
        throw new ApexError("APEX_E_SESSION_STATE", `The supervisor (pid ${session.supervisor!.pid}) is alive but does not answer.`, {
          hint: "`apex stop --force` kills it and its agents.",
        });
      }
      // The pid and start time match; the marker proves it is the supervisor `apex start` launched, not a process a forged record names.
      if (!carriesMarker(session.supervisor!.pid, supervisorMarker(session.supervisor!.nonce))) {
        throw new ApexError("APEX_E_PROCESS", `Process ${session.supervisor!.pid} matches the session's supervisor record but does not carry its marker; APEX does not signal a process it cannot prove it started.`, {
          hint: "If it is the supervisor, end it yourself (kill), then run `apex stop` again.",
          details: { pid: session.supervisor!.pid },
        });
      }
      signalProcess(session.supervisor!.pid, "SIGKILL");
      const deadline = Date.now() + 5000;
      while (isSameProcessAlive(session.supervisor!.pid, session.supervisor!.start_time) && Date.now() < deadline) await sleep(20);
    }
    const agents = new SessionReader(store, sid).agents();
    let ended = 0;
    for (const agent of agents) ended += (await terminateAgent(sid, agent, { force: options.force, graceMs: options.graceMs })).length;
    // Said as it was: a supervisor alive but not answering (frozen, SIGSTOP) was killed above, it was not "not running".
    const reason = options.reason ?? `stopped by the user (${killed === undefined ? "the supervisor was not running" : `its supervisor, pid ${killed}, did not answer and was killed`})`;
    const warn = (message: string) => process.stderr.write(`warning: ${message}\n`);
    let engine: Engine | undefined;
    let checkpoint: { id: string; name: string; trigger: string } | null = null;
    try {
      const { createSessionEngine } = await import("../../core/session/hooks.js");
      engine = await createSessionEngine(config, store, warn);
      if (options.checkpoint) {
        // The session's state as the crash left it, before it moves to the history (memory stays live).
        const { checkpointServiceFor } = await import("../../core/session/checkpoints.js");
        try {
          const created = await checkpointServiceFor(store)?.create({ sessionId: sid, ...options.checkpoint });
          if (created) checkpoint = { id: created.id, name: `checkpoint-${String(created.sequence).padStart(3, "0")}`, trigger: created.trigger };
        } catch (error) {
          // The session as session list prints it: a branch by its name, another by its uuid's short form.
          warn(`no checkpoint of session ${typeof session.name === "string" && session.name ? session.name : shortSessionId(sid)} before it stops: ${(error as Error).message}`);
        }
      }
      // As the supervisor does: the session is still current (an onStop checkpoint is taken here).
      await engine.fire("beforeStop", { sessionId: sid, session: damaged ? session : (store.get(sessionPath(sid)) as SessionRecord), reason });
    } catch (error) {
      warn(`beforeStop: ${(error as Error).message}`);
    }
    const at = nowIso();
    await store.batch((batch) => {
      for (const agent of agents) {
        const final = agent.status === "exited" || agent.status === "failed" ? agent.status : "stopped";
        batch.set(agentPath(sid, agent.name), { ...agent, status: final } as AgentRecord);
      }
      const record = batch.get(sessionPath(sid)) as SessionRecord | null;
      batch.delete(sessionPath(sid));
      // A record that is no object moves to the ended sessions as it is (`session reconstruct` rebuilds from it).
      batch.set(
        historyPath(sid),
        isRecord(record)
          ? { ...record, status: "stopped", outcome: reason, ended_at: at, updated_at: at, history: [...historyOf(record), { event: "stopped", at, reason, from: "interrupted" }] }
          : record,
      );
      if ((batch.get(CURRENT_SESSION_PATH) as { session_id?: string } | undefined)?.session_id === sid) batch.delete(CURRENT_SESSION_PATH);
      setActiveSession(batch, sid, null);
      // from: the run before had died: the metrics do not count the time since as the session's.
      appendEvent(batch, sid, "session.stopped", currentActor(), { reason, from: "interrupted" });
    });
    removeRuntime(location.storeDir, session.supervisor?.pid ?? process.pid, sid);
    try {
      await engine?.fire("onStop", { sessionId: sid, session: damaged ? { ...session, status: "stopped", outcome: reason } : (store.get(historyPath(sid)) as SessionRecord), reason });
    } catch (error) {
      warn(`onStop: ${(error as Error).message}`);
    }
    if (damaged) {
      const what = isRecord(stored) ? "has no session id of its own" : `is ${describeValue(stored)}, not an object`;
      warn(`the record of session ${sid} (${sessionPath(sid)}) ${what}: it was moved to the ended sessions as it is. \`apex session reconstruct ${shortSessionId(sid)}\` builds a session from its tasks, agents and checkpoints.`);
    }
    return { session_id: sid, name: typeof session.name === "string" ? session.name : null, status: "stopped", reason, processes_ended: ended, checkpoint, ...(killed === undefined ? {} : { killed }) };
  } finally {
    await store.close();
  }
}


/**
 * What a stop needs of a session whose record cannot be read: its id, and its supervisor as the
 * runtime file it wrote names it (pid, start time, marker), so that one still alive is proven
 * and ended as any other. Nothing else of the record is used.
 */
function damagedSessionView(location: ProjectLocation, sid: string): SessionRecord {
  const runtime = readRuntime(location.storeDir, sid) ?? readRuntime(location.storeDir);
  const supervisor = runtime?.session_id === sid ? { pid: runtime.pid, start_time: runtime.start_time, socket: runtime.socket, nonce: runtime.nonce ?? null } : null;
  return { session_id: sid, name: null, supervisor } as unknown as SessionRecord;
}
