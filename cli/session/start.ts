import type { ProjectLocation } from "../../core/config/locate.js";
import { ApexError } from "../../core/errors.js";
import { paint, printJson, printLine } from "../output.js";
import { subscribeSupervisor } from "../../core/rpc/call.js";
import { remoteSessionClient, type SessionClient } from "../../core/session/client.js";
import { assertConfigLasts, assertRuntimeDirectories, launchSupervisor } from "./launch.js";
import { startGuard } from "./call-off.js";
import type { JsonValue } from "../../core/store/store.js";
import { CURRENT_SESSION_PATH, type SessionEvent, type SessionRecord } from "../../core/session/records.js";
import type { ReadyReport } from "../../core/session/supervisor.js";
import { formatEvent, paintStatus } from "./format.js";
import { whenStdoutReaderGone } from "../stdout-reader.js";
import { sessionText, type Handover } from "./handover.js";
import { remoteApex } from "../remote-commands.js";
import type { Config } from "../../core/config/types.js";
import type { ContinueTarget } from "../../core/session/sessions.js";

export interface StartOptions {
  task?: string;
  continue?: string;
  attach?: boolean;
  json?: boolean;
  /** With `continue`: check out the checkpoint's git commit first, in the session's worktree (else the project's). */
  gitCheckout?: boolean;
  /** `--force-recovery CHECKPOINT`: refused here through --remote (cli/lifecycle.ts runs it locally). */
  forceRecovery?: string;
}

/** `apex start`: a new session, or `--continue` an interrupted or ended one. */
export async function startSession(location: ProjectLocation, options: StartOptions): Promise<void> {
  const remote = remoteSessionClient();
  if (remote) return continueRemote(remote, options);
  if (options.task !== undefined && options.continue !== undefined) {
    throw new ApexError("APEX_E_USAGE", "--task starts a new session and --continue resumes one; give one of them.", {
      hint: 'Add work to a continued session with `apex task add "…"`.',
    });
  }
  // The initial task is kept as a task's title is: refused past the same length, before anything starts (it is also an agent's APEX_INITIAL_TASK).
  if (options.task !== undefined) (await import("../../core/session/records.js")).limitedText(options.task, "The initial task (--task)", "task");
  // A config read from a pipe is gone once this command ends, the session not.
  await assertConfigLasts(location);
  // Config errors are reported here, with their file positions, before anything starts.
  const { loadConfig } = await import("../../core/config/load.js");
  const config = await loadConfig(location);
  // So is an agent whose program is missing: before any process starts, not as crashing agents.
  const { assertAgentProgramsExist } = await import("../agent-programs.js");
  assertAgentProgramsExist(config);
  // And a file where the supervisor makes a directory (.apex/logs, run, bin): before a session in the way is stopped.
  assertRuntimeDirectories(location);
  // And a host name (APEX_HOST) the session's records cannot carry.
  (await import("../../core/session/lease.js")).localHost();
  // And a third-party plugin that fails to apply, or adds a command APEX or another plugin has:
  // refused here, before the supervisor creates the store.
  await (await import("../plugin-commands.js")).assertPluginsApply(config);
  // A setting the enabled plugins leave without effect (max_checkpoints without retention) is said with the start's warnings.
  const { inertSettings, warningText } = await import("../config-warnings.js");
  const configWarnings = inertSettings(config).map(warningText);
  if (options.gitCheckout && options.continue === undefined) {
    throw new ApexError("APEX_E_USAGE", "--git-checkout checks out the commit of the checkpoint a session continues from; give --continue.");
  }
  // The runtime files and sockets in the store directory are one store's at a time: a
  // supervisor on another store is refused here (APEX_E_STORE_MISMATCH), before anything is written.
  const [{ onNamedStore }, { liveSupervisors }] = await Promise.all([import("../../core/session/client.js"), import("../../core/session/runtime.js")]);
  for (const running of liveSupervisors(location.storeDir)) await onNamedStore(location, running, true);
  const gitStart = await (await import("../../plugins/index.js")).builtinServices.gitStart();
  await refreshGitHooks(gitStart, config, Boolean(options.json));
  let handover: Handover | undefined;
  let checkout: CheckoutPlan | undefined;
  let continued: { sessionId: string; name: string | null; ended?: string } | undefined;
  // `--session S` names a session to act on, and `start` starts a new one, or the one --continue names: S went unread
  // (`apex start --task t --session S` started a new session, `--continue last --session S` continued another).
  const flag = (await import("../../core/session/binding.js")).sessionFlag();
  if (flag !== undefined && options.continue === undefined) {
    throw new ApexError("APEX_E_USAGE", `--session ${flag} does not work with \`apex start\` without --continue: it starts a new session.`, { hint: `Continue that session with \`apex start --continue ${flag}\`, or leave --session out.` });
  }
  let continueTarget = options.continue;
  if (options.continue === undefined) await refuseIfActive(location);
  else {
    // Another session in the way is checkpointed and stopped first (a bad reference fails here, before that).
    const { makeWay, resolveTarget } = await import("./handover.js");
    const target = await resolveTarget(location, options.continue);
    if (flag !== undefined && target !== undefined && target.sessionId !== flag) {
      throw new ApexError("APEX_E_USAGE", `\`apex start\` was given two sessions: ${target.sessionId} with --continue ${options.continue} and ${flag} with --session.`, {
        hint: `Name the one to continue once: \`apex start --continue ${flag}\`.`,
        details: { continue: options.continue, session: flag },
      });
    }
    // A checkpoint (`checkpoint-001`, `latest`) is --session's: the supervisor, which reads no --session, is given its id.
    if (flag !== undefined && target?.checkpoint !== undefined) continueTarget = target.checkpoint;
    continued = target;
    if (target) await assertWorktreeExists(location, target.sessionId);
    // So does a checkout git would refuse (uncommitted changes, the commit missing): before anything is stopped.
    if (options.gitCheckout) checkout = await planGitCheckout(location, gitStart, config, target, options.continue);
    handover = await makeWay(location, {
      target,
      rollback: target?.checkpoint !== undefined,
      reason: continueReason(target, options.continue),
      json: Boolean(options.json),
    });
    if (handover) {
      const { handoverLine } = await import("./handover.js");
      if (!options.json) printLine(handoverLine(handover));
      startGuard()?.keep("handover", handover as unknown as JsonValue, handoverLine(handover).replace(/\.$/, ""));
    }
  }

  // The agents start on the checked-out code.
  const checkedOut = checkout && { repository: checkout.repository, ...(await gitStart.applyCheckout(checkout)) };
  if (checkedOut) startGuard()?.keep("git_checkout", checkedOut as unknown as JsonValue, `the checkout of ${checkedOut.commit.slice(0, 12)} on the new branch ${checkedOut.branch} in ${checkedOut.repository}`);
  // The continued session's ended state as read before the start did anything: a stop recorded since, before the claim, wins.
  // Read again once the handover stopped it itself (a rollback of the running session), which is no stop to yield to.
  const endedAsRead = continued?.ended !== undefined && handover?.session_id !== continued.sessionId ? { session_id: continued.sessionId, mark: continued.ended } : undefined;
  const launched = await launchSupervisor(
    location,
    options.continue === undefined ? { mode: "start", task: options.task } : { mode: "continue", continueTarget, ...(endedAsRead ? { endedAsRead } : {}) },
    // A checkout may have changed the config file: the supervisor then reads the one checked out.
    checkedOut ? undefined : config,
  ).catch((error: unknown) => {
    // Refused or failed once the checkout was made: said to be kept, as Ctrl-C says it (it went unsaid, the working tree on a new branch).
    if (!checkedOut || !(error instanceof ApexError) || error.code === "APEX_E_INTERRUPTED") throw error;
    throw new ApexError(error.code, `${error.message} The checkout of ${checkedOut.commit.slice(0, 12)} on the new branch ${checkedOut.branch} in ${checkedOut.repository} is kept.`, { hint: error.hint, details: { ...error.details, git_checkout: checkedOut }, cause: error });
  });
  const warnings = [...configWarnings, ...(launched.warnings ?? [])];
  const ready: ReadyReport = warnings.length > 0 ? { ...launched, warnings } : launched;
  if (options.json) printJson({ ...ready, ...(handover ? { handover } : {}), ...(checkedOut ? { git_checkout: checkedOut } : {}) });
  else if (checkedOut) printLine(`Checked out ${checkedOut.commit.slice(0, 12)} on the new branch ${checkedOut.branch} in ${checkedOut.repository}.`);
  // The session as session list prints it (its name, else its uuid's short form); --json has the whole id.
  const session = sessionText({ session_id: ready.session_id, name: continued?.sessionId === ready.session_id ? continued.name : null });
  if (!options.json) printReady(ready, session);
  // Stopped (or ended) while it started: there is nothing left to attach to.
  if (options.attach && (ready.status === "active" || ready.status === "paused")) await attach(location, ready, session, Boolean(options.json));
}

/**
 * `apex --remote HOST/SESSION start --continue SESSION|last`: an operator brings the remote
 * session back; its server launches the supervisor on its machine.
 */
/**
 * Why the session in the way is stopped, recorded as its outcome and in its handover checkpoint's
 * description: the session continued named as `session list` names it, by its name or its id's
 * short form (it was the whole uuid), and a checkpoint as `<session>/checkpoint-NNN`.
 */
function continueReason(target: Awaited<ReturnType<typeof import("./handover.js").resolveTarget>>, argument: string): string {
  if (!target) return `continue session ${argument}`;
  const session = sessionText({ session_id: target.sessionId, name: target.name });
  if (target.checkpoint === undefined) return `continue session ${session}`;
  return `continue from checkpoint ${target.checkpointName ? `${session}/${target.checkpointName}` : argument}`;
}

async function continueRemote(remote: SessionClient, options: StartOptions): Promise<void> {
  // Named, as --attach and --git-checkout are: it went to the local project, recovering its session from its checkpoint.
  if (options.forceRecovery !== undefined) {
    throw new ApexError("APEX_E_USAGE", "--force-recovery is refused on a remote session: a damaged checkpoint is restored on the server's host; nothing was sent, and nothing was done here.", {
      hint: "Run `apex start --force-recovery CHECKPOINT` on the server's host; `apex --remote HOST/SESSION start --continue SESSION` continues the session as it is.",
    });
  }
  if (options.continue === undefined || options.task !== undefined) {
    throw new ApexError("APEX_E_USAGE", "On a remote session, start only continues it: apex --remote HOST/SESSION start --continue SESSION.", {
      hint: "A new session is started on its own machine; `apex connect` follows it.",
    });
  }
  // Named as what is refused: the message above, for a --continue that was given, sent the user to the command they had typed.
  const refused = options.attach ? "--attach" : options.gitCheckout ? "--git-checkout" : undefined;
  if (refused) {
    throw new ApexError("APEX_E_USAGE", `${refused} is refused on a remote session: ${refused === "--attach" ? "its supervisor runs on the server's machine" : "git checks out on the server's host"}; nothing was sent.`, {
      hint: refused === "--attach" ? "Continue it without --attach, then follow it: apex connect HOST/SESSION." : "Run `apex start --continue … --git-checkout` on the server's host.",
    });
  }
  const ready = (await remote.call("session.continue", { continue: options.continue }, 120_000)) as ReadyReport & { name?: unknown };
  if (options.json) printJson(ready);
  // As a local start prints it: by its name (which the server answers; an older one does not), else its uuid's short form.
  else printReady(ready, sessionText({ session_id: ready.session_id, name: typeof ready.name === "string" && ready.name ? (await import("../terminal-text.js")).visibleText(ready.name) : null }));
}

type GitStart = Awaited<ReturnType<(typeof import("../../plugins/index.js"))["builtinServices"]["gitStart"]>>;
type CheckoutPlan = Awaited<ReturnType<GitStart["planContinueCheckout"]>>;

/**
 * APEX's git hooks written by an older APEX (before they passed APEX_WORKTREE, say) are rewritten
 * to this APEX's script, with a notice; other hooks are never touched. A failure is a warning:
 * it must not keep a session from starting.
 */
async function refreshGitHooks(gitStart: GitStart, config: Config, json: boolean): Promise<void> {
  let report: Awaited<ReturnType<GitStart["refreshHooksOnStart"]>>;
  try {
    report = await gitStart.refreshHooksOnStart(config);
  } catch (error) {
    process.stderr.write(`warning: APEX's git hooks could not be checked: ${(error as Error).message}\n`);
    return;
  }
  if (!report || report.refreshed.length === 0) return;
  const hooks = report.refreshed.map((entry) => entry.hook);
  if (json) {
    process.stderr.write(`${JSON.stringify({ notice: { git_hooks_refreshed: hooks, hooks_dir: report.hooks_dir } })}\n`);
    return;
  }
  process.stderr.write(
    `${paint("notice:", "yellow", process.stderr)} refreshed APEX's git hooks ${hooks.join(", ")} in ${report.hooks_dir}: an older APEX wrote them (as \`apex git install-hooks\` would); other hooks there are left as they are.\n`,
  );
}

/** The checkout `--git-checkout` makes: of the checkpoint continued from (a session: its latest), in that session's worktree. */
async function planGitCheckout(location: ProjectLocation, gitStart: GitStart, config: Config, target: ContinueTarget | undefined, argument: string): Promise<CheckoutPlan> {
  if (!target) throw new ApexError("APEX_E_NO_SESSION", `No session or checkpoint '${argument}' to continue: this project has no store yet.`);
  const [{ openStore }, { getCheckpoint }] = await Promise.all([
    import("../../core/store/open.js"),
    import("../../plugins/index.js").then(({ builtinServices }) => builtinServices.checkpointRefs()),
  ]);
  const store = await openStore(location, { readOnly: true });
  try {
    const manifest = getCheckpoint(store, target.checkpoint ?? "latest", { sessionId: target.sessionId });
    return await gitStart.planContinueCheckout(config, store, { sessionId: target.sessionId, name: manifest.name, gitState: manifest.git_state });
  } finally {
    await store.close();
  }
}

/**
 * A session made with `session branch --worktree` runs its agents in that worktree: once the
 * directory is gone they could not start, and the session would fail a moment after "continued".
 */
async function assertWorktreeExists(location: ProjectLocation, sessionId: string): Promise<void> {
  const [{ existsSync }, { openStore }, { findSession }, { worktreeOf }] = await Promise.all([
    import("node:fs"),
    import("../../core/store/open.js"),
    import("../../core/session/sessions.js"),
    import("../../core/session/records.js"),
  ]);
  const store = await openStore(location, { readOnly: true });
  let record: ReturnType<typeof findSession>;
  try {
    record = findSession(store, sessionId);
  } finally {
    await store.close();
  }
  const path = record ? worktreeOf(record) : null;
  if (path === null) return;
  const [{ linkedWorktreeOf }, { samePath }, { worktreeOfProject }] = await Promise.all([import("../../core/config/locate.js"), import("../../core/session/binding.js"), import("../../core/session/runtime.js")]);
  // A directory there that is not that worktree (removed, then made again by hand) is gone too:
  // agents would run outside the project's repository, where no command finds the session.
  const top = existsSync(path) ? linkedWorktreeOf(path) : undefined;
  if (top !== undefined && samePath(top, path) && worktreeOfProject(path, location.projectDir)) return;
  const branch = (record!.worktree as { branch?: unknown }).branch;
  const name = typeof record!.name === "string" ? record!.name : sessionId;
  // Imported from another project, whose worktree it ran in, and not run here since: this project's was never made, and its git branch may be only there.
  const history = (Array.isArray(record!.history) ? record!.history : []) as Array<{ event?: unknown; worktree_from?: unknown } | null>;
  const imported = [...history].reverse().find((event) => event?.worktree_from !== undefined || event?.event === "continued");
  // Moved by hand (git worktree move, or mv and git worktree repair): git would refuse a second checkout of its branch.
  const moved = typeof branch === "string" ? (await import("../git-worktrees.js")).worktreeOnBranch(location.projectDir, branch) : undefined;
  if (imported?.worktree_from !== undefined && !existsSync(path) && moved === undefined) {
    const { spawnSync } = await import("node:child_process");
    const local = typeof branch === "string" && spawnSync("git", ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`], { cwd: location.projectDir }).status === 0;
    const add = `git worktree add ${JSON.stringify(path)}${typeof branch === "string" ? ` ${branch}` : ""}`;
    throw new ApexError("APEX_E_NOT_FOUND", `Session ${name} was imported from another project, where it ran in the git worktree ${String(imported.worktree_from)}; its worktree here, ${path}, is not made yet; nothing was started.`, {
      hint: local || typeof branch !== "string" ? `Make it from the project: ${add}` : `Bring its git branch ${branch} here from the repository it ran in (git fetch REMOTE ${branch}:${branch}), then make the worktree: ${add}`,
      details: { session_id: sessionId, worktree: path, imported_from: String(imported.worktree_from) },
    });
  }
  const what = existsSync(path) ? "which is no longer a git worktree of this project" : "which no longer exists";
  if (moved !== undefined && !samePath(moved, path)) {
    throw new ApexError("APEX_E_NOT_FOUND", `Session ${name} runs in the git worktree ${path}, ${what}: its branch ${branch} is checked out at ${moved} now; nothing was started.`, {
      hint: `Move it back from the project: git worktree move ${JSON.stringify(moved)} ${JSON.stringify(path)}${existsSync(path) ? " (after moving that directory away)" : ""}`,
      details: { session_id: sessionId, worktree: path, moved_to: moved },
    });
  }
  const back = (await import("../git-worktrees.js")).worktreeBackHint(location.projectDir, path, typeof branch === "string" ? branch : undefined, (record!.worktree as { commit?: string | null }).commit);
  throw new ApexError("APEX_E_NOT_FOUND", `Session ${name} runs in the git worktree ${path}, ${what}${back.movedTo ? ` (it is at ${back.movedTo} now)` : ""}; nothing was started.`, {
    hint: back.hint,
    details: { session_id: sessionId, worktree: path, ...(back.movedTo ? { moved_to: back.movedTo } : {}) },
  });
}

/** The friendly early refusal; the supervisor makes the same check atomically. */
async function refuseIfActive(location: ProjectLocation): Promise<void> {
  const { openStore, storeExists } = await import("../../core/store/open.js");
  if (!(await storeExists(location))) return;
  const [{ isEnded, projectSession }, { sessionInTheWay }] = await Promise.all([import("../../core/session/sessions.js"), import("../../core/session/claim.js")]);
  const store = await openStore(location, { readOnly: true });
  let refusal: ApexError;
  let name: string | null;
  try {
    // A new session runs in the project's own working tree: refused while one is active there (branches in worktrees run beside it).
    const stored = projectSession(store);
    if (stored === undefined) return;
    // A record written by hand while the session runs (null, not an object) is in the way as an empty one, under the id the project names.
    const session = Object(stored) as SessionRecord;
    if (isEnded(session)) return;
    refusal = sessionInTheWay(session, null, (store.get(CURRENT_SESSION_PATH) as { session_id: string }).session_id);
    name = typeof session.name === "string" && session.name ? session.name : null;
  } finally {
    await store.close();
  }
  // Stopping (its record says active until the stop is written): said so, and that it is waited for, not "active; end it with apex stop".
  const details = refusal.details as { session_id: string; status: string };
  if (details.status === "active" || details.status === "paused") {
    const client = await (await import("../../core/session/client.js")).liveSessionClient(location, { local: true, session: details.session_id });
    const { liveStatus, stoppingInTheWay } = await import("./handover.js");
    try {
      if (client && (await liveStatus(client)) === "stopping") throw stoppingInTheWay({ session_id: details.session_id, name }, "a new session can start once it has stopped");
    } finally {
      await client?.close();
    }
  }
  throw refusal;
}

function printReady(ready: ReadyReport, session: string): void {
  for (const warning of ready.warnings ?? []) process.stderr.write(`warning: ${warning}\n`);
  const verb = ready.continued ? "continued" : "started";
  printLine(`Session ${paint(session, "bold")} ${verb} (supervisor pid ${ready.supervisor_pid}).`);
  // An `apex stop` that came in while it started (or agents that ended at once): said, not hidden behind "started".
  if (ready.status !== "active" && ready.status !== "paused") printLine(`  and is already ${paintStatus(ready.status)} (\`apex session history\` says why)`);
  for (const reaped of ready.reaped) printLine(`  reaped the old processes of ${reaped.agent}: ${reaped.pids.join(", ")}`);
  if (ready.restored_from) printLine(`  ${restoreLine(ready)}`);
  else if (ready.continued) printLine("  continued from the live state: memory as it is");
  const reconciled = ready.reconciled;
  if (reconciled) {
    // Every task the agent held, not only the one APEX_RESUME_TASK names.
    for (const { agent, tasks } of reconciled.resumed) printLine(`  ${tasks.join(", ")} ${tasks.length === 1 ? "goes" : "go"} back to ${agent} (${tasks.length === 1 ? "APEX_RESUME_TASK" : "APEX_RESUME_TASKS"})`);
    if (reconciled.requeued.length > 0) printLine(`  back to pending (their agent no longer runs): ${reconciled.requeued.join(", ")}`);
  }
  if (ready.checkpoint) printLine(`  checkpoint ${ready.checkpoint.name} (${ready.checkpoint.trigger})`);
  for (const agent of ready.agents) {
    printLine(`  ${agent.name.padEnd(12)} ${agent.status.padEnd(10)} pid ${agent.pid ?? "-"}`);
  }
  // Through --remote, the commands that reach that session (`apex status` here reads this machine's project).
  const apex = remoteApex();
  printLine(paint(`Next: ${apex} status · ${apex} logs -f · ${apex} pause · ${apex} stop`, "gray"));
}

/** "restored checkpoint-004 (1ae47ae5): memory 1 set, 1 deleted; the replaced state is checkpoint-005". */
function restoreLine(ready: ReadyReport): string {
  const details = (ready.restore ?? {}) as { name?: unknown; session_id?: unknown; memory?: { set?: unknown; deleted?: unknown }; saved_before?: unknown };
  const name = typeof details.name === "string" ? `${details.name} (${ready.restored_from!.slice(0, 8)})` : ready.restored_from!;
  const memory = details.memory && typeof details.memory.set === "number" ? `: memory ${details.memory.set} set, ${String(details.memory.deleted)} deleted` : "";
  // Restoring the checkpoint that already held the state (nothing changed since) names no second copy.
  const saved =
    typeof details.saved_before !== "string" ? "" : details.saved_before === details.name && details.session_id === ready.session_id ? `; the state it replaced was that checkpoint already` : `; the state it replaced is saved as ${details.saved_before}`;
  return `restored ${name}${memory}${saved}`;
}

/**
 * Streams the session's events until it ends. Ctrl-C detaches: the session keeps running,
 * since the supervisor is in its own process session and never sees this terminal's signals.
 */
async function attach(location: ProjectLocation, ready: ReadyReport, session: string, json: boolean): Promise<void> {
  const subscription = subscribeSupervisor(ready.socket, "events.subscribe", { from_seq: ready.event_seq }, (event) => {
    const type = (event as SessionEvent).type;
    if (type === "session.completed" || type === "session.failed" || type === "session.stopped") ended = type;
    printLine(json ? JSON.stringify(event) : formatEvent(event as SessionEvent));
  });
  let detached = false;
  let ended: string | undefined;
  const detach = () => {
    detached = true;
    subscription.close();
  };
  process.once("SIGINT", detach);
  // Its reader gone (`apex start --attach | head`), it detaches then, not at the next event.
  const unwatch = whenStdoutReaderGone(detach);
  try {
    await subscription.done;
  } finally {
    process.off("SIGINT", detach);
    unwatch();
  }
  if (detached && !json) printLine(paint(`\nDetached; session ${session} keeps running (apex status, apex stop).`, "gray"));
  // The stream ended with no end of the session, its supervisor gone and its runtime files left naming it: killed (kill -9, OOM).
  // Before, attaching ended there, exit 0 and not a word, as if the session had ended well, while it was interrupted and its agents ran on.
  if (!detached && ended === undefined) {
    const { liveSupervisorOf, readRuntime } = await import("../../core/session/runtime.js");
    const killed = !liveSupervisorOf(location.storeDir, ready.session_id) && [readRuntime(location.storeDir, ready.session_id), readRuntime(location.storeDir)].some((runtime) => runtime?.pid === ready.supervisor_pid);
    if (killed) {
      throw new ApexError("APEX_E_PROCESS", `The supervisor of session ${session} (pid ${ready.supervisor_pid}) is gone without ending it: the session is interrupted, and its agents may still run.`, {
        hint: `\`apex status\` shows what is left; \`apex start --continue ${session}\` resumes the session, \`apex stop\` ends it.`,
        details: { session_id: ready.session_id, supervisor_pid: ready.supervisor_pid },
      });
    }
  }
  // Attached to the end, the exit code says how it went: a failed session is a failure.
  if (!detached && ended === "session.failed") process.exitCode = 1;
}
