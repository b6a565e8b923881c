import { spawn } from "node:child_process";
import { closeSync, existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { serialize } from "node:v8";
import type { Config } from "../../core/config/types.js";
import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { startGuard } from "./call-off.js";
import { makePrivateDir, openPrivate, writePrivateFile } from "../../core/store/private.js";
import { storeWriteRefused, writePermissionCode } from "../../plugins/lmdb/file-check.js";
import { errorFromBody, idleWindowMs, lineSplitter, type RpcErrorBody } from "../../core/rpc/protocol.js";
import { progressNotes } from "./lifecycle-wait.js";
import { tailLines } from "../../core/session/agents.js";
import { isProcessStopped, newNonce, SUPERVISOR_NONCE_VAR } from "../../core/session/proc.js";
import { RUN_DIR, SUPERVISOR_LOG, supervisorLogFile } from "../../core/session/runtime.js";
import type { ReadyReport, SupervisorRequest } from "../../core/session/supervisor.js";

const SUPERVISOR_MAIN = fileURLToPath(new URL("../../core/session/supervisor-main.js", import.meta.url));
/** The CLI's bundle loader as CommonJS (scripts/bundle.mjs), which, run as a program, runs the supervisor from its bundle (cli/bundle.ts). */
const BUNDLE_LOADER = fileURLToPath(new URL("../bundle.cjs", import.meta.url));
const BUILD_INFO = fileURLToPath(new URL("../../.tsbuildinfo", import.meta.url));

/** The supervisor's program: through the bundle loader while it is not older than tsc's last build (as bin/apex.js judges it), else its module. */
export function supervisorProgram(loader = BUNDLE_LOADER, buildInfo = BUILD_INFO): string {
  const made = statSync(loader, { throwIfNoEntry: false })?.mtimeMs;
  return made !== undefined && made >= (statSync(buildInfo, { throwIfNoEntry: false })?.mtimeMs ?? 0) ? loader : SUPERVISOR_MAIN;
}

/**
 * A config given as one of this command's descriptors (`--config <(…)`, APEX_CONFIG=/dev/stdin) is this command's alone:
 * a session outlives it, and its supervisor (should the config not be handed over) and its agents' `apex` commands
 * (APEX_CONFIG) read the config again, where that descriptor is not theirs (and a pipe is read once). Refused before
 * anything starts or is written.
 */
export async function assertConfigLasts(location: ProjectLocation): Promise<void> {
  if (location.configPath === undefined || !(await import("../../core/config/locate.js")).namesOwnDescriptor(location.configPath)) return;
  throw new ApexError("APEX_E_USAGE", `A session cannot run on a config read from a pipe or this command's input (${location.configPath}): its supervisor and its agents read the config again after this command, which they cannot.`, {
    hint: "Save the config to a file and give that file: apex --config FILE start …",
    details: { config: location.configPath },
  });
}

/**
 * The directories a supervisor makes in the store directory as it starts: one that is another file there (left by hand,
 * a tool that wrote `.apex/logs` as a file) is refused before anything is launched. The supervisor failed on it with
 * APEX_E_INTERNAL ("EEXIST: file already exists, mkdir …/run"), and recorded the continued session failed.
 */
export function assertRuntimeDirectories(location: ProjectLocation): void {
  for (const [name, what] of [[RUN_DIR, "sockets of branch sessions"], ["logs", "agents' logs"], ["bin", "`apex` command for the agents"]] as const) {
    const path = join(location.storeDir, name);
    // Followed: a link to a directory elsewhere (the logs on another disk) is one.
    const stat = statSync(path, { throwIfNoEntry: false });
    if (stat === undefined || stat.isDirectory()) continue;
    throw new ApexError("APEX_E_STORE_DAMAGED", `${path} is a file, not a directory: APEX keeps the ${what} there.`, {
      hint: `Nothing was started. Move it aside (\`mv ${path} ${path}.moved\`): APEX makes the directory anew. Then run the command again.`,
      details: { path },
    });
  }
  // And the other way round: a directory where the supervisor appends its log (it was APEX_E_INTERNAL, EISDIR).
  const log = supervisorLogFile(location.storeDir);
  if (statSync(log, { throwIfNoEntry: false })?.isDirectory()) {
    throw new ApexError("APEX_E_STORE_DAMAGED", `${log} is a directory, not a file: the supervisor writes its log there.`, {
      hint: `Nothing was started. Move it aside (\`mv ${log} ${log}.moved\`): APEX makes the file anew. Then run the command again.`,
      details: { path: log },
    });
  }
}

/**
 * Starts a detached supervisor for the project and waits until it reports that the agents
 * run (or why it could not start). The supervisor lives on after this process exits: its
 * own session, stdio on <store>/supervisor.log, unref'd.
 */
export async function launchSupervisor(location: ProjectLocation, request: Omit<SupervisorRequest, "projectDir" | "configPath" | "storeDir" | "configFile">, config?: Config): Promise<ReadyReport> {
  await assertConfigLasts(location);
  assertRuntimeDirectories(location);
  // The continued session's ended state (as the caller read it, else now): an `apex stop` recorded after that, before
  // the supervisor claims the session, makes the claim refuse it (it continued the session the stop had said it
  // stopped). A state, not a time: the hosts sharing a store need not agree on the clock.
  const endedAsRead = request.endedAsRead ?? (request.mode === "continue" ? await readEnded(location, request.continueTarget ?? "last") : undefined);
  // Ctrl-C that came before calls the start off here, before anything is launched.
  const guard = startGuard();
  await guard?.beforeLaunch();
  const created = !existsSync(location.storeDir);
  // The config this process loaded and checked is handed over: the supervisor runs exactly it, without parsing the file again.
  let configFile = config && join(location.storeDir, `supervisor-config-${newNonce()}`);
  const logFile = supervisorLogFile(location.storeDir);
  let log: number;
  try {
    makePrivateDir(location.storeDir);
    log = openPrivate(logFile, "a");
  } catch (error) {
    // Another user's store, one made read-only, a read-only file system: said so, not as EACCES from open.
    const code = writePermissionCode(error);
    throw code ? storeWriteRefused(location.storeDir, code) : error;
  }
  try {
    if (configFile) writePrivateFile(configFile, serialize({ config: { ...config }, source: config!.source && { file: config!.source.file, text: config!.source.text } }));
  } catch {
    // Not written (a full disk): the supervisor reads the file itself, and says what stops it as it always did (the store's filesystem named).
    rmSync(configFile!, { force: true });
    configFile = undefined;
  }
  const full: SupervisorRequest = { ...request, ...(endedAsRead ? { endedAsRead } : {}), projectDir: location.projectDir, configPath: location.configPath, storeDir: location.storeDir, ...(configFile ? { configFile } : {}) };
  let child;
  const nonce = newNonce();
  try {
    child = spawn(process.execPath, [supervisorProgram(), JSON.stringify(full)], {
      cwd: location.projectDir,
      detached: true,
      stdio: ["ignore", log, log, "pipe"],
      // A nonce only this supervisor carries: `apex stop --force` checks it before it signals the recorded pid.
      env: { ...process.env, [SUPERVISOR_NONCE_VAR]: nonce },
    });
  } finally {
    closeSync(log);
  }
  const channel = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void; setEncoding(encoding: string): void };
  // Ctrl-C from now on calls the start off through the supervisor (call-off.ts).
  guard?.launched(child);
  let ready: ReadyReport;
  try {
    ready = await new Promise<ReadyReport>((resolve, reject) => {
      let settled = false;
      const finish = (error: Error | undefined, report?: ReadyReport) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        clearInterval(poll);
        notes.stop();
        if (error) reject(error);
        else resolve(report!);
      };
      // Until its report the supervisor sends a heartbeat (supervisor-main.ts): the start (a big
      // restore or checkpoint, a slow onStart hook) is waited for as long as it comes. It was a
      // fixed 60 s, after which a start still under way was reported failed.
      const idleMs = idleWindowMs();
      const frozen = () =>
        finish(
          new ApexError("APEX_E_TIMEOUT", `The supervisor (pid ${child.pid}) sent nothing, not even its heartbeat, for ${Math.round(idleMs / 1000)} s while the session started: it is frozen (a plugin hook that holds its process, an overloaded machine), and the wait is given up. The session may still start if it goes on.`, {
            hint: `See its log: ${logFile}. \`apex status\` shows where the session stands; \`apex stop --force\` ends it. A longer wait: APEX_PLUGIN_COMMAND_IDLE_MS (ms).`,
            details: { pid: child.pid, idle_ms: idleMs },
          }),
        );
      // Fired late, this process was stopped (Ctrl-Z): a second more, in which what came meanwhile is read.
      let [armed, graced] = [Date.now(), false];
      const expire = () => (!graced && Date.now() - armed > idleMs + 100 ? ((graced = true), (timer = setTimeout(expire, 1000))) : frozen());
      let timer = setTimeout(expire, idleMs);
      // A supervisor stopped (SIGSTOP, state T) sends nothing until a SIGCONT: said after ~2 s, not after the window.
      let seenStopped = 0;
      const poll = setInterval(() => {
        seenStopped = isProcessStopped(child.pid!) ? seenStopped + 1 : 0;
        if (seenStopped < 2) return;
        finish(
          new ApexError("APEX_E_TIMEOUT", `The supervisor (pid ${child.pid}) is stopped (SIGSTOP) while the session starts: it cannot go on before a SIGCONT.`, {
            hint: `\`kill -CONT ${child.pid}\` lets it go on, and the session then starts (\`apex status\` shows it); \`apex stop --force\` ends it.`,
            details: { pid: child.pid, stopped: true },
          }),
        );
      }, 1000);
      const notes = progressNotes("starting the session", `its supervisor (pid ${child.pid})`, "a restore, a checkpoint, its plugins' onStart hooks may take a while", idleMs, process.argv.includes("--json"));
      channel.setEncoding("utf8");
      channel.on(
        "data",
        lineSplitter(
          (line) => {
            clearTimeout(timer);
            [armed, graced, timer] = [Date.now(), false, setTimeout(expire, idleMs)];
            notes.heard();
            let message: { ready?: ReadyReport; error?: RpcErrorBody };
            try {
              message = JSON.parse(line) as typeof message;
            } catch {
              return;
            }
            if (message.error) finish(errorFromBody(message.error));
            else if (message.ready) finish(undefined, message.ready);
          },
          () => undefined,
        ),
      );
      channel.on("error", () => undefined);
      child.on("error", (error) => finish(new ApexError("APEX_E_PROCESS", `Cannot start the supervisor: ${error.message}`)));
      child.on("exit", (code, signal) => {
        // The report may still be in the pipe; give it a moment before calling this a crash.
        setTimeout(() => {
          const tail = tailLines(logFile, 15).join("\n");
          const crashed = new ApexError("APEX_E_PROCESS", `The supervisor exited (${signal ?? `code ${code}`}) before the session started.`, { hint: `Last lines of ${logFile}:\n${tail}` });
          void endedMeanwhile(location, nonce, child.pid!, signal ?? `code ${code}`).then((error) => finish(error ?? crashed), () => finish(crashed));
        }, 200);
      });
    });
  } catch (error) {
    // Refused for its config (exit 2: the supervisor checks plugins before it opens the store), a
    // first start leaves nothing behind: the directory it made held only the log of the refusal.
    if (created && error instanceof ApexError && error.exitCode === 2 && readdirSync(location.storeDir).every((name) => name === SUPERVISOR_LOG)) rmSync(location.storeDir, { recursive: true, force: true });
    if (guard?.interrupted) return guard.calledOff(location, { error });
    throw error;
  } finally {
    // Read and removed by the supervisor as it starts; left only by one that died before.
    if (configFile) rmSync(configFile, { force: true });
    channel.destroy();
    child.unref();
  }
  if (guard?.interrupted) return guard.calledOff(location, { ready });
  // Reported: from now on Ctrl-C is the caller's (`--attach` detaches).
  guard?.release();
  return ready;
}

/** The ended state of the session `argument` names (undefined: none is found; the supervisor says why, as it did). */
async function readEnded(location: ProjectLocation, argument: string): Promise<SupervisorRequest["endedAsRead"]> {
  const target = await (await import("./handover.js")).resolveTarget(location, argument).catch(() => undefined);
  return target?.ended === undefined ? undefined : { session_id: target.sessionId, mark: target.ended };
}

/**
 * The session a supervisor that exited before its report had claimed (its record names the nonce it was given), once
 * an `apex stop --force` killed it meanwhile (it does not wait for one still starting): said as the store has it, not as
 * a crash with its log's last lines. Undefined when it claimed none, or the store cannot be read.
 */
async function endedMeanwhile(location: ProjectLocation, nonce: string, pid: number, how: string): Promise<ApexError | undefined> {
  const [{ openStore, storeExists }, { allSessions, isEnded }, { shortSessionId }] = await Promise.all([import("../../core/store/open.js"), import("../../core/session/sessions.js"), import("../../core/session/names.js")]);
  if (!(await storeExists(location))) return undefined;
  // The stop kills the supervisor first, then ends the agents and records the session: waited for a moment.
  let record;
  for (const deadline = Date.now() + 3000; ; await new Promise((resolve) => setTimeout(resolve, 100))) {
    const store = await openStore(location, { readOnly: true });
    try {
      record = allSessions(store).find((session) => session.supervisor?.nonce === nonce);
    } finally {
      await store.close();
    }
    if (!record || isEnded(record) || Date.now() > deadline) break;
  }
  if (!record || !isEnded(record)) return undefined;
  const label = typeof record.name === "string" && record.name ? record.name : shortSessionId(record.session_id);
  return new ApexError("APEX_E_PROCESS", `The supervisor (pid ${pid}) exited (${how}) before the session started: session ${label} was ${record.status} meanwhile (${String(record.outcome)}), its agents ended with it.`, {
    hint: `\`apex session history\` shows it; \`apex start --continue ${label}\` continues it.`,
    details: { session_id: record.session_id, status: record.status, supervisor_pid: pid },
  });
}
