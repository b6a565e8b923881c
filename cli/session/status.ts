/**
 * `apex status`: read-only and fast (benchmarked against `node -e 0`): no plugins, and the
 * config only when no session is active or it is interrupted (see configWarnings).
 * The report is built from the store and one scan of /proc, by the live supervisor when there
 * is one (a socket round trip is cheaper than loading LMDB here), else by this process on the
 * store opened read-only, which is how an interrupted session is seen. Inside an agent the
 * supervisor always answers, so that the agent never opens LMDB.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ProjectLocation } from "../../core/config/locate.js";
import { known, paint, printJson, printLine, table, visibleText } from "../output.js";
import { isProcessStopped, isSameProcessAlive, listProcesses } from "../../core/session/proc.js";
import { SUPERVISOR_LOG, liveSupervisorOf, readRuntime } from "../../core/session/runtime.js";
import type { StatusReport } from "../../core/session/status-report.js";
import { agentStatusText, formatDuration, paintStatus } from "./format.js";
import { readStatus } from "./status-read.js";
import { printStranded, type StrandedTask } from "./stranded.js";
import { terminalSafe } from "../terminal-text.js";

/** `reading`: the report readStatus already asks for (status-main.ts starts it before this module loads); else it is read here. */
export async function showStatus(location: ProjectLocation, json: boolean, reading: Promise<StatusReport> = readStatus(location)): Promise<void> {
  const report = withLocalLeftovers(location, withEndReason(location, markStoppedSupervisor(await reading)));
  const invalidConfig = await configWarnings(location, report);
  const warnings = [...damagedRecordWarnings(report), ...invalidConfig, ...(await configChangedWarnings(location, report))];
  if (json) return printJson(warnings.length > 0 ? { ...report, warnings } : report);
  for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
  printStatus(process.env.APEX_REMOTE ? oneLineTexts(report) : report, invalidConfig.length > 0);
}

/**
 * A report from another host with each of its texts kept on one line (a line break, a tab shown
 * as its escape): the terminal guard keeps newlines, and an agent's name, a host or a user with
 * one printed a forged line below its own. --json keeps them exact.
 */
function oneLineTexts<T>(value: T): T {
  if (typeof value === "string") return terminalSafe(value, { singleLine: true }) as T;
  if (Array.isArray(value)) return value.map(oneLineTexts) as T;
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, oneLineTexts(item)])) as T;
}

/**
 * A session record every APEX write keeps has a status; one without (written by hand with
 * `memory set --force`, or damaged) is reported with what is known (its id, its agents as their
 * own records and /proc show them), and this says why the rest is unknown and what ends it.
 */
function damagedRecordWarnings(report: StatusReport): string[] {
  const session = report.session;
  if (!session || session.remote || typeof session.stored_status === "string") return [];
  const running = report.agents.some((agent) => agent.processes.length > 0);
  const next = running ? " `apex stop` ends what runs of it (`--force` if its supervisor does not answer) and moves the record to the ended sessions;" : "";
  return [
    `the record of session ${session.session_id} is not one APEX can read (it has no status): its status is unknown.${next} \`apex session validate\` says what is wrong with it.`,
  ];
}

/**
 * Status is a read, like `task list` or `checkpoint list`: it reports whatever the config says,
 * and a session running under it is reported as usual. But where the report's next step is a
 * command that loads the config (`apex start` with no session active, `apex start --continue`
 * for an interrupted one), a config that command would refuse is named now, as a warning. Only
 * then is the config read: the status of a running session stays a socket round trip.
 */
async function configWarnings(location: ProjectLocation, report: StatusReport): Promise<string[]> {
  // A remote session's next step runs on its host, under that host's config.
  if (location.configPath === undefined || process.env.APEX_REMOTE || (report.session && report.session.status !== "interrupted")) return [];
  const [{ loadConfig }, { displayPath }, { isApexError }] = await Promise.all([import("../../core/config/load.js"), import("../../core/config/source.js"), import("../../core/errors.js")]);
  let loaded = false;
  try {
    const config = await loadConfig(location);
    loaded = true;
    // What else `apex start` refuses before it runs anything: an agent's program not found, a plugin that does not load
    // or apply (an unknown one). Status said nothing of those, and its "Start one" led to the refusal.
    (await import("../agent-programs.js")).assertAgentProgramsExist(config);
    await (await import("../plugin-commands.js")).assertPluginsApply(config);
    return [];
  } catch (error) {
    if (!isApexError(error)) throw error;
    // The `apex stop` that ends an interrupted session loads the config too (for its plugins' hooks), and refuses one that does not
    // load: named with the continue (it was left out, while the report below offers `apex stop`). A plugin or an agent's program
    // it cannot find does not keep it from stopping the session (the hooks are skipped, with a warning).
    const next = !report.session ? "`apex start`" : loaded ? "`apex start --continue`" : "`apex start --continue` and `apex stop`";
    return [(await import("../plugin-commands.js")).refusedConfigWarning(displayPath(location.configPath), next, error)];
  }
}

/**
 * A supervisor reads apex.config.yaml as it starts, and keeps what it read: an edit made while the
 * session runs (an agent, a plugin, its options) does not reach it until the session is continued.
 * That is named, from the file's modification time against the supervisor's start as its runtime
 * file records it; the config itself is not read, so this status stays a socket round trip.
 */
async function configChangedWarnings(location: ProjectLocation, report: StatusReport): Promise<string[]> {
  const session = report.session;
  if (location.configPath === undefined || process.env.APEX_REMOTE || !session || session.remote || (session.status !== "active" && session.status !== "paused")) return [];
  const started = Date.parse(liveSupervisorOf(location.storeDir, session.session_id)?.started_at ?? "");
  let modified: number;
  try {
    modified = statSync(location.configPath).mtimeMs;
  } catch {
    return [];
  }
  if (!(modified > started)) return [];
  const { displayPath } = await import("../../core/config/source.js");
  return [
    `${displayPath(location.configPath)} was modified (${new Date(modified).toISOString()}) after this session's supervisor started (${new Date(started).toISOString()}): the session runs with the config it started with. ` +
      `To apply the change: \`apex stop\`, then \`apex start --continue ${session.name ?? session.session_id}\` (\`apex config validate\` checks the file first).`,
  ];
}

/**
 * A supervisor of this host that runs but is stopped (SIGSTOP, SIGTSTP: state T) answers nothing:
 * the report (read from the store) says so with `supervisor.stopped`, or the session would look
 * active while every pause, resume and stop waits on it; one whose socket is gone, with
 * `supervisor.socket_gone`. A report from elsewhere is left as it is.
 */
function markStoppedSupervisor(report: StatusReport): StatusReport {
  const supervisor = report.session?.supervisor;
  if (!supervisor || !supervisor.alive || report.session!.remote || process.env.APEX_REMOTE) return report;
  const stopped = isProcessStopped(supervisor.pid);
  // Its socket deleted (and not made again) or another file in its place: the report is the store's, and other commands are refused (APEX_E_SOCKET_GONE).
  return { ...report, session: { ...report.session!, supervisor: { ...supervisor, stopped, ...(isSocket(supervisor.socket) ? {} : { socket_gone: true }) } } };
}

function isSocket(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

/**
 * Why the supervisor of an interrupted session of this host ended it, when it did so itself (its
 * lease ran out while the store could not be reached, or another host took the session over):
 * its log's last line about the session, as `interrupted_because`. The store could not be told
 * then; a supervisor that was killed leaves no such line, nor does one started again since.
 */
/**
 * A session another host runs now (it took the session over, its lease having run out) may still
 * have agent processes here, started by this host's supervisor of it before: one that died
 * (kill -9, a crash) never learnt that it lost the lease, and nothing here ends its agents, which
 * go on working beside the other host's. They are found as the processes whose environment
 * names the session and that supervisor's pid (this host's runtime file for the session), once
 * it no longer runs (a live one ends its own agents when its renewal finds the session taken),
 * and reported in `left_running`, with their process groups.
 */
function withLocalLeftovers(location: ProjectLocation, report: StatusReport): StatusReport {
  const session = report.session;
  if (!session?.remote || process.env.APEX_REMOTE) return report;
  const own = readRuntime(location.storeDir, session.session_id) ?? readRuntime(location.storeDir);
  if (own?.session_id !== session.session_id || isSameProcessAlive(own.pid, own.start_time)) return report;
  const wanted = [`APEX_SESSION_ID=${session.session_id}`, `APEX_SUPERVISOR_PID=${own.pid}`];
  const left = new Map<string, { agent: string; pids: number[]; stopped: number[]; pgids: number[] }>();
  for (const process of listProcesses()) {
    let environ: string[];
    try {
      environ = readFileSync(`/proc/${process.pid}/environ`, "latin1").split("\0");
    } catch {
      continue; // gone, or another user's
    }
    const agent = environ.find((entry) => entry.startsWith("APEX_AGENT="))?.slice("APEX_AGENT=".length);
    if (agent === undefined || !wanted.every((entry) => environ.includes(entry))) continue;
    const entry = left.get(agent) ?? { agent, pids: [], stopped: [], pgids: [] };
    entry.pids.push(process.pid);
    if (process.state === "T") entry.stopped.push(process.pid);
    if (!entry.pgids.includes(process.pgrp)) entry.pgids.push(process.pgrp);
    left.set(agent, entry);
  }
  return left.size === 0 ? report : { ...report, left_running: [...left.values()] };
}

/** This host's leftovers of a session another host runs (withLocalLeftovers), with the command that ends them. */
function printLeftHere(report: StatusReport, host: string | null): void {
  const left = report.left_running as Array<{ agent: string; pids: number[]; pgids?: number[] }>;
  if (left.length === 0) return;
  printLine();
  printLine(paint(`Left running on this host from before host ${host} took the session over (their supervisor here died, so nothing here ends them):`, "red"));
  for (const entry of left) printLine(`  ${entry.agent} (pids ${entry.pids.join(", ")})`);
  const groups = left.flatMap((entry) => entry.pgids ?? []).map((pgid) => `-${pgid}`);
  printLine(paint(`End them with \`kill -TERM -- ${groups.join(" ")}\`: the session's agents run on host ${host} now.`, "gray"));
}

function withEndReason(location: ProjectLocation, report: StatusReport): StatusReport & { interrupted_because?: string } {
  const session = report.session;
  if (session?.status !== "interrupted" || session.remote || process.env.APEX_REMOTE) return report;
  let text: string;
  try {
    text = readFileSync(join(location.storeDir, SUPERVISOR_LOG), "utf8").slice(-256 * 1024);
  } catch {
    return report;
  }
  const about = `] session ${session.session_id}: `;
  const last = text.split("\n").filter((line) => line.includes(about)).pop();
  const ending = "; stopping this supervisor's agents and exiting";
  if (!last?.endsWith(ending)) return report;
  return { ...report, interrupted_because: last.slice(last.indexOf(about) + about.length, -ending.length) };
}

/** "pid 123", "pid 123 (not running)", or for another host's supervisor "pid 123 on host host-a (lease until …)". */
function supervisorLine(session: NonNullable<StatusReport["session"]>, supervisor: NonNullable<NonNullable<StatusReport["session"]>["supervisor"]>): string {
  if (session.remote) {
    const lease = supervisor.lease_expires_at ? ` (lease ${supervisor.alive ? "until" : "expired at"} ${supervisor.lease_expires_at})` : "";
    return `pid ${supervisor.pid} on host ${supervisor.host}${lease}${supervisor.alive ? "" : ` ${paint("(not renewing)", "red")}`}`;
  }
  const stopped = supervisor.stopped ? paint(`(stopped: it answers nothing until \`kill -CONT ${supervisor.pid}\`; \`apex stop --force\` ends the session)`, "red") : "";
  const gone = supervisor.socket_gone ? paint(`(its socket ${visibleText(supervisor.socket)} is gone: no command reaches it; \`apex stop\` ends the session)`, "red") : "";
  return `pid ${supervisor.pid}${supervisor.host ? ` on ${supervisor.host}` : ""} ${supervisor.alive ? [stopped, gone].filter(Boolean).join(" ") : paint("(not running)", "red")}`.trimEnd();
}

/** A branch session by its name, with its id after it ("experiment (3f2a9c1e-…)"); an unnamed one by its id. A server older than `name` leaves it out. */
function named(session: { session_id: string; name?: string | null }): string {
  return typeof session.name === "string" && session.name ? `${visibleText(session.name)} (${known(session.session_id)})` : known(session.session_id);
}

function printStatus(report: StatusReport, configInvalid: boolean): void {
  const session = report.session;
  if (!session) {
    printLine("No session is active in this project.");
    const last = report.last_session;
    if (last) printLine(`Last session: ${named(last)} ${paintStatus(last.status)}${last.ended_at ? ` at ${last.ended_at}` : ""}${last.outcome ? ` (${last.outcome})` : ""}`);
    printLine(paint(configInvalid ? 'Fix the config (see the warning above), then start one: apex start --task "…"' : 'Start one: apex start --task "…"', "gray"));
    return;
  }
  printLine(`Session ${paint(named(session), "bold")}  ${paintStatus(session.status)}${session.remote && session.status !== "interrupted" ? ` on host ${session.host}` : ""}`);
  if (session.initial_task) printLine(`  task        ${visibleText(session.initial_task)}`);
  printLine(`  started     ${known(session.created_at)}`);
  // A branch's git worktree, where its agents run (a server older than `worktree` leaves it out); one of this host that is not there is said so.
  if (typeof session.worktree === "string") {
    const missing = !session.remote && !process.env.APEX_REMOTE && !existsSync(session.worktree);
    printLine(`  worktree    ${visibleText(session.worktree)}${missing ? paint(" (not there: `apex start --continue` says how to make it)", "red") : ""}`);
  }
  const supervisor = session.supervisor;
  printLine(`  supervisor  ${supervisor ? supervisorLine(session, supervisor) : "-"}`);
  const t = report.tasks;
  printLine(`  tasks       ${t.pending} pending, ${t.active} active, ${t.completed} completed, ${t.failed} failed`);
  if (report.connected?.length) {
    printLine(`  connected   ${report.connected.map((user) => `${user.user} (${user.role})`).join(", ")}`);
  }
  const checkpoint = report.last_checkpoint;
  printLine(
    `  checkpoint  ${checkpoint ? `${checkpoint.sequence ?? "?"}${checkpoint.trigger ? ` (${checkpoint.trigger})` : ""}${checkpoint.created_at ? ` at ${checkpoint.created_at}` : ""}` : "none"}`,
  );
  if (report.agents.length > 0) {
    printLine();
    const rows = report.agents.map((agent) => [
      agent.name,
      agentStatusText(agent, Date.now(), session.status),
      agent.pid,
      agent.pgid,
      String(agent.processes.length),
      formatDuration(agent.uptime_seconds),
      `${agent.cpu_seconds.toFixed(2)}s`,
      agent.restarts,
      agent.task ?? "-",
    ]);
    printLine(table(["AGENT", "STATUS", "PID", "PGID", "PROCS", "UPTIME", "CPU", "RESTARTS", "TASK"], rows));
    for (const agent of report.agents) {
      const stopping = agent.stopping ?? []; // a server older than this field leaves it out
      if (stopping.length > 0) printLine(`  ${agent.name}: pid ${stopping.join(", ")} in uninterruptible I/O with a stop pending (stops the moment the I/O ends)`);
      // A signal from outside APEX (kill -STOP, kill -CONT, a debugger) puts a process out of step with its agent's status: said, not hidden behind it.
      const stopped = agent.stopped ?? [];
      const outOfStep = agent.status === "running" ? stopped : agent.status === "paused" ? agent.processes.filter((pid) => !stopped.includes(pid) && !stopping.includes(pid)) : [];
      if (outOfStep.length === 0) continue;
      if (agent.status === "running") printLine(`  ${agent.name}: pid ${outOfStep.join(", ")} stopped (state T) by a signal from outside APEX (SIGSTOP, a debugger); \`kill -CONT PID\` lets it go on`);
      else printLine(`  ${agent.name}: pid ${outOfStep.join(", ")} running although the session is paused (continued from outside APEX: SIGCONT); \`apex resume\`, then \`apex pause\`, stops it again`);
    }
  }
  printStranded((report as { stranded_tasks?: StrandedTask[] }).stranded_tasks ?? []);
  if (session.remote && session.status !== "interrupted") printLeftHere(report, session.host);
  if (session.status === "interrupted") {
    printLine();
    if (session.remote) {
      printLine(paint(`The supervisor on host ${session.host} stopped renewing its lease, which expired at ${session.lease_expires_at ?? "(unknown)"}: the session was interrupted.`, "red"));
    } else printLine(paint("The supervisor is not running: the session was interrupted.", "red"));
    const because = (report as { interrupted_because?: string }).interrupted_because;
    if (because) printLine(`  Its supervisor ended its agents and exited: ${because} (${SUPERVISOR_LOG}).`);
    if (session.remote) {
      printLine(`  Its agents ran on host ${session.host}: whether any of their processes is left there cannot be seen from this host.`);
      printLeftHere(report, session.host);
      printLine(paint(`Take it over on this host with \`${report.recover_with}\` (its agents start here with their saved context) or end it with \`apex stop\`.`, "gray"));
      return;
    }
    if (report.left_running.length > 0) {
      for (const left of report.left_running) {
        // A server older than the field leaves it out.
        const stopped = left.stopped ?? [];
        const running = left.pids.filter((pid) => !stopped.includes(pid));
        if (running.length > 0) printLine(`  still running: ${left.agent} (pids ${running.join(", ")})`);
        if (stopped.length > 0) printLine(`  left stopped (paused when the supervisor died): ${left.agent} (pids ${stopped.join(", ")}); they stay stopped until --continue or stop ends them`);
      }
    } else {
      printLine("  No agent process is left running.");
    }
    printLine(
      paint(
        `${configInvalid ? "Fix the config (see the warning above), then recover" : "Recover"} with \`${report.recover_with ?? "apex start --continue last"}\` (ends the leftovers first; memory stays as it is, nothing is rolled back) or end it with \`apex stop\`. With session.auto_recovery, the next \`apex start\` or \`apex resume\` recovers it.`,
        "gray",
      ),
    );
  }
}
