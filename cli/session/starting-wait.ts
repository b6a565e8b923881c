/**
 * `apex pause`, `resume` and `stop` sent while a supervisor is still starting: `start --continue`
 * ends the old agents and restores the session before it listens on its socket and writes the
 * runtime file commands find it by. Such a supervisor is waited for as long as it shows it works
 * on the start: until its report, supervisor-main.ts sets the mtime of <store>/supervisor.log (its
 * stdout) with each heartbeat it sends `apex start` (a quarter of the idle window, at most 5 s).
 * The request is sent once it listens, and queues behind the start, as one sent a moment later
 * would. Only a supervisor silent for the whole idle window (APEX_PLUGIN_COMMAND_IDLE_MS, 10
 * minutes; 11 s at least, two of its slowest beats) or stopped (SIGSTOP) is given up on, saying so, with nothing sent. Before, the wait was
 * a fixed 60 s, after which pause said the supervisor was not running (a big restore takes longer).
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { idleWindowMs } from "../../core/rpc/protocol.js";
import { liveSessionClient, type SessionClient } from "../../core/session/client.js";
import { isSameProcessAlive, readProcStat, sleep } from "../../core/session/proc.js";
import { progressNotes } from "./lifecycle-wait.js";

export interface StartingSupervisor {
  pid: number;
  start_time: number;
  /** The session's name, or its id's first 8 characters. */
  label: string;
}

const DOING: Record<string, string> = { pause: "pausing", resume: "resuming", stop: "stopping", "session merge": "merging into" };

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`;

/** When the supervisor log was last written or beaten on; 0 when there is none. */
function lastBeat(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** The client of `starting` once it listens; undefined when it exited meanwhile (the caller says how its start ended). */
/** The supervisor beats at its own window's quarter, at most 5 s: a shorter window here than in its environment must not take it for frozen. */
const SLOWEST_BEAT_MS = 5_000;

/**
 * `session`: that session's supervisor (a merge's DST), else the one this command is bound to.
 * `onBeat`: called with each beat heard (apex serve passes it on to its client as a heartbeat, so
 * that the client waits as long as the start goes on); `gone`: true once the one waiting went
 * away (apex serve's client, its connection closed), who is then sent nothing, as after a Ctrl-C.
 */
export async function waitForStart(location: ProjectLocation, starting: StartingSupervisor, action: string, json: boolean, session?: string, onBeat?: () => void, gone?: () => boolean): Promise<SessionClient | undefined> {
  const window = idleWindowMs();
  const idleMs = Math.max(window, 2 * SLOWEST_BEAT_MS + 1000);
  const doing = `${DOING[action] ?? action} session ${starting.label}`;
  const work = "it is still starting: `start --continue` ends the old agents and restores the session before it listens, and the request is sent then";
  const notes = progressNotes(doing, `its supervisor (pid ${starting.pid})`, work, window, json);
  const log = join(location.storeDir, "supervisor.log");
  let beat = lastBeat(log);
  let heard = Date.now();
  let stoppedSince: number | undefined;
  try {
    for (;;) {
      const found = await liveSessionClient(location, { elsewhere: "refuse", ...(session !== undefined ? { session } : {}) });
      // A caller gone is looked for once the supervisor listens too: one gone in the last look's 50 ms
      // (or while the server was held) was sent its call all the same, made for nobody.
      // Its leaving is read first: a server held (SIGSTOP, a loaded machine) while its client left and
      // the supervisor began to listen goes on with its overdue timer, and found the supervisor and sent
      // the call in that turn, before it read the client's end of the connection, there all along
      // (`gone` said no; the connection's end was read a few milliseconds later). A turn through the
      // event loop's poll for I/O (setImmediate runs after it) reads what has come.
      if (gone) await new Promise((resolve) => setImmediate(resolve));
      if (gone?.()) {
        await found?.close();
        throw new ApexError("APEX_E_INTERRUPTED", `The ${action} was given up while session ${starting.label}'s supervisor started: its caller went away. Nothing was sent.`, { details: { starting: true, pid: starting.pid, action } });
      }
      if (found) return found;
      if (!isSameProcessAlive(starting.pid, starting.start_time)) return undefined;
      const now = Date.now();
      if (readProcStat(starting.pid)?.state !== "T") stoppedSince = undefined;
      else if (now - (stoppedSince ??= now) >= 1000) throw stopped(starting, action);
      const latest = lastBeat(log);
      if (latest > beat) {
        [beat, heard] = [latest, now];
        notes.heard();
        onBeat?.();
      }
      if (now - heard > idleMs) throw frozen(starting, action, idleMs);
      await sleep(50);
    }
  } finally {
    notes.stop();
  }
}

function stopped(starting: StartingSupervisor, action: string): ApexError {
  return new ApexError("APEX_E_TIMEOUT", `Session ${starting.label}'s supervisor (pid ${starting.pid}) is stopped (SIGSTOP) while it starts, before it listens: it cannot take the ${action}, and nothing was sent.`, {
    hint: `\`kill -CONT ${starting.pid}\` lets it go on with the start; then run \`apex ${action}\` again. \`apex stop --force\` ends the session.`,
    details: { stopped: true, starting: true, pid: starting.pid, action },
  });
}

function frozen(starting: StartingSupervisor, action: string, idleMs: number): ApexError {
  return new ApexError("APEX_E_TIMEOUT", `Session ${starting.label}'s supervisor (pid ${starting.pid}) is still starting and has sent nothing, not even its heartbeat, for ${seconds(idleMs)}: it is frozen (an overloaded machine, a restore that holds its process), and the wait is given up. Nothing was sent: the ${action} was not made.`, {
    hint: "`apex status` shows where the session stands; if the supervisor stays frozen, `apex stop --force` ends the session and its agents. A longer wait: APEX_PLUGIN_COMMAND_IDLE_MS (ms).",
    details: { starting: true, pid: starting.pid, action, idle_ms: idleMs },
  });
}
