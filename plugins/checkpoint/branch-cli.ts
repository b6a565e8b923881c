/**
 * The actions behind `apex session branch|merge|tree`. Writes go where the store's writer is:
 * the live supervisor when one runs (`session.branch`, `session.merge` among the checkpoint
 * service's methods), else this process, with the project's plugins loaded so the merge
 * checkpoint gets its git state (beforeCheckpoint) and retention runs after it.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, mkdirSync, readdirSync, realpathSync, rmdirSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import type { ProjectLocation } from "../../core/config/locate.js";
import { currentActor } from "../../core/actor.js";
import { paint, plural, printJson, printLine, visibleText } from "../../cli/output.js";
import { worktreeBackHint, worktreeOnBranch } from "../../cli/git-worktrees.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { checkpointServiceFor } from "../../core/session/checkpoints.js";
import { checkSessionName } from "./session-name.js";
import { openSessionClient } from "../../core/session/client.js";
import type { JsonValue } from "../../core/store/store.js";
import { openStore, storeExists } from "../../core/store/open.js";
import { branchSource, checkNewSessionName, checkWorktreeFree, type BranchReport } from "./branch.js";
import { sessionLabel, sessionRecord } from "./merge-base.js";
import { shortSessionId } from "../../core/session/names.js";
import { worktreeOf } from "../../core/session/records.js";
import { allSessions, effectiveStatus, findSession } from "../../core/session/sessions.js";
import { getCheckpoint, loadManifest } from "./refs.js";
import { Catalog } from "./catalog.js";
import { isRecord, type CheckpointManifest } from "./manifest.js";
import { LANGGRAPH_TRIGGER } from "./langgraph-index.js";
import type { Store } from "../../core/store/store.js";
import { describeConflict, langGraphUnit } from "./merge.js";
import { againAfterStop, callWriter, noStore, withReadStore, writerClient } from "./plugin-cli.js";
import { resolveSessionRef } from "./plugin-sessions.js";
import type { SessionMergeReport } from "./session-merge.js";
import { drawTree, type SessionTree } from "./tree.js";
import { realPath } from "../file-system.js";
import { BEFORE_GIT_FIRED_ENV } from "../git/git.js";

/**
 * Calls a write method where the writer is: `sessionId`'s own supervisor when it runs (a merge goes
 * through DST's). With `again`, a call whose supervisor ended before it answered (kill -9, OOM) is made
 * once more where the writer is then (the store): for a merge, which is all or nothing and takes
 * nothing twice, that finishes it or finds it done, instead of "whether it was done is not known".
 */
async function callWrite(location: ProjectLocation, method: string, params: Record<string, unknown>, sessionId?: string, again?: (pid: number) => void): Promise<unknown> {
  // Refused by a supervisor as it stopped and waited out (callWriter): made again where the writer is now.
  return againAfterStop(() => callWriteOnce(location, method, params, sessionId, again), process.argv.includes("--json"));
}

async function callWriteOnce(location: ProjectLocation, method: string, params: Record<string, unknown>, sessionId?: string, again?: (pid: number) => void): Promise<unknown> {
  const writer = await writerClient(location, sessionId);
  if (writer) {
    try {
      return await callWriter(writer, method, params);
    } catch (error) {
      // (one callWriter waited out as it stopped is callWrite's to make again, not the ended writer's)
      const { StopWaitedOut } = await import("../../cli/stopping-retry.js");
      if (error instanceof StopWaitedOut || !again || !(await writerEnded(writer, error))) throw error;
      again(writer.supervisor!.pid);
      return callWriteOnce(location, method, params, sessionId);
    }
  }
  if (!(await storeExists(location))) throw noStore();
  const { loadConfig } = await import("../../core/config/load.js");
  const { createSessionEngine } = await import("../../core/session/hooks.js");
  const config = await loadConfig(location);
  const store = await openStore(location);
  try {
    await createSessionEngine(config, store, (message) => process.stderr.write(`warning: ${message}\n`));
    const fn = checkpointServiceFor(store)?.methods?.[method];
    if (!fn) {
      throw new ApexError("APEX_E_USAGE", "The checkpoint plugin is disabled in apex.config.yaml; branches and merges are made of checkpoints.", {
        hint: "Enable `checkpoint` under `plugins:` in apex.config.yaml.",
      });
    }
    return await fn(params);
  } finally {
    await store.close();
  }
}

/**
 * True when the call failed because its supervisor ended (it closed the connection, or reset it; or its socket was gone
 * or refused, nothing sent, as a stop ends it: details.connection; and it is gone within a second).
 */
async function writerEnded(writer: Awaited<ReturnType<typeof writerClient>>, error: unknown): Promise<boolean> {
  const supervisor = writer?.supervisor;
  // APEX_E_SESSION_STOPPING: it took the call no more, exiting as its session stopped; nothing of it was done.
  const ended = isApexError(error) && (error.code === "APEX_E_SESSION_STOPPING" || (error.code === "APEX_E_RPC" && ["closed", "ECONNRESET", "EPIPE", "ENOENT", "ECONNREFUSED"].includes(String(error.details?.connection))));
  if (!ended || writer?.via !== "socket" || !supervisor) return false;
  const { isSameProcessAlive } = await import("../../core/session/proc.js");
  for (let wait = 0; isSameProcessAlive(supervisor.pid, supervisor.start_time); wait++) {
    if (wait === 20) return false; // still alive: it may yet answer or write
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

// ------------------------------------------------------------------------------------ branch

export async function branchCommand(location: ProjectLocation, checkpoint: string, name: string, options: { worktree?: string | boolean; json?: boolean }): Promise<void> {
  if (options.worktree === "") throw new ApexError("APEX_E_USAGE", "--worktree was given an empty directory.", { hint: "Name a new directory, or give --worktree alone for ../<repository>-NAME." });
  // A usage error before anything is read: the name, and a worktree directory where none may be.
  checkSessionName(name);
  if (typeof options.worktree === "string") {
    refuseReservedWorktree(location, resolve(options.worktree));
    refuseUnderFile(resolve(options.worktree));
    refuseUnmakeable(resolve(options.worktree));
  }
  // By default beside the repository (a project in a subdirectory of it too: not inside its working tree).
  let dir: string | undefined;
  if (options.worktree !== undefined && options.worktree !== false) {
    const top = typeof options.worktree === "string" ? undefined : git(location.projectDir, ["rev-parse", "--show-toplevel"]);
    const base = top?.code === 0 && top.out ? top.out : location.projectDir;
    dir = typeof options.worktree === "string" ? resolve(options.worktree) : join(dirname(base), `${basename(base)}-${name}`);
    // The default beside the repository, in a directory this user may not write to: said so as for a DIR given.
    if (typeof options.worktree !== "string") refuseUnmakeable(dir, false);
  }
  // Checked before a worktree is made: a bad name or reference leaves nothing behind.
  const source = await withReadStore(location, (store) => {
    checkNewSessionName(store, name);
    if (dir !== undefined) checkWorktreeFree(store, realPath(dir), location.projectDir);
    const manifest = branchSource(store, checkpoint);
    // A LangGraph step records no git state (a git status per step): the worktree takes the commit of the nearest checkpoint before it that recorded one.
    const gitFrom = dir !== undefined && manifest.git_state === null ? (commitBefore(store, manifest) ?? manifest) : manifest;
    const git = gitFrom.git_state as { commit?: unknown; dirty?: unknown } | null;
    // The checkpoint as text names it, its session as session list prints it (experiment/checkpoint-004, 3f2a9c1e/…).
    const session = sessionLabel(store, manifest.session_id);
    const gitLabel = gitFrom === manifest ? undefined : `${sessionLabel(store, gitFrom.session_id)}/${gitFrom.name}`;
    return { id: manifest.id, commit: typeof git?.commit === "string" ? git.commit : null, dirty: git?.dirty === true, sessionId: manifest.session_id, session, label: `${session}/${manifest.name}`, gitLabel };
  });
  let worktree: { path: string; branch: string; commit: string | null; adopted?: boolean } | undefined;
  if (dir !== undefined) {
    worktree = createWorktree(location.projectDir, dir, `apex/${name}`, source.commit, source.label);
    // Its canonical path: the worktree binds commands run in it to the branch session (core/session/binding.ts).
    worktree.path = realpathSync(worktree.path);
  }
  let report: BranchReport;
  try {
    const recorded = worktree ? { path: worktree.path, branch: worktree.branch, commit: worktree.commit } : null;
    // The checkpoint the worktree's commit came from, by its id: `latest` read again by the writer could be
    // another, taken since (an interval checkpoint), whose state and commit are not the worktree's.
    report = (await callWrite(location, "session.branch", { checkpoint: worktree ? source.id : checkpoint, name, worktree: recorded, actor: currentActor() })) as BranchReport;
  } catch (error) {
    // One taken over from an interrupted run was not made here: left as it was found. Nor is one
    // that another run of this command (the same NAME at once) took over and recorded first: its
    // session would be left naming a worktree and a branch removed under it.
    if (!worktree || worktree.adopted) throw error;
    // A supervisor that got the request and did not answer (stopped, killed) may still record the
    // session, or did; and a store that cannot be read now cannot say whether a session records it:
    // the worktree stays, and the error says so (removed, the session named a worktree that was gone).
    const unanswered = isApexError(error) && (error.code === "APEX_E_TIMEOUT" || error.code === "APEX_E_RPC");
    const recorded = unanswered ? undefined : await worktreeRecorded(location, worktree.path);
    if (recorded === false) removeWorktree(location.projectDir, worktree);
    if (recorded !== undefined || !isApexError(error)) throw error;
    throw new ApexError(error.code, error.message, {
      hint: `${error.hint ? `${error.hint} ` : ""}The worktree ${worktree.path} (git branch ${worktree.branch}) is kept for the session ${unanswered ? "that call may record" : "the store may record (it could not be read to tell)"}: if \`apex session list\` does not show ${name}, run this command again (it takes the worktree over), or remove both: git worktree remove ${JSON.stringify(worktree.path)} && git branch -D ${worktree.branch}`,
      details: { ...error.details, worktree: worktree.path, branch: worktree.branch },
    });
  }
  if (report.worktree && source.gitLabel) {
    process.stderr.write(`warning: ${source.label} recorded no git commit (a LangGraph step records none); the worktree is at ${report.worktree.commit?.slice(0, 12) ?? "-"}, the commit of ${source.gitLabel}, the nearest checkpoint before it that recorded one.\n`);
  }
  if (report.worktree && source.dirty) {
    // The worktree is the commit: what was not committed when the checkpoint was taken is not in it.
    process.stderr.write(`warning: ${source.gitLabel ?? source.label} was taken with uncommitted changes in the working tree; the worktree has commit ${report.worktree.commit?.slice(0, 12) ?? "-"} without them.\n`);
  }
  if (report.langgraph?.missing.length) {
    const [one, names] = [report.langgraph.missing.length === 1, report.langgraph.missing.join(", ")];
    process.stderr.write(`warning: LangGraph thread${one ? "" : "s"} ${names} start${one ? "s" : ""} afresh in the branch: the step${one ? "" : "s"} ${one ? "it was" : "they were"} at when ${source.label} was taken ${one ? "was" : "were"} deleted since (retention, checkpoint delete, deleteThread); the channel values are in the branch's memory.\n`);
  }
  if (options.json) return printJson(report);
  // Sessions as session list prints them (the new one's uuid in short: its name is how commands take it); --json has the whole ids.
  const parent = report.parent_checkpoint.session_id === source.sessionId ? source.session : shortSessionId(report.parent_checkpoint.session_id);
  printLine(`Branched ${paint(report.name, "bold")} (${shortSessionId(report.session_id)}) from ${parent}/${report.parent_checkpoint.name}.`);
  if (report.worktree) printLine(`  git worktree ${report.worktree.path} on ${report.worktree.branch} at ${report.worktree.commit?.slice(0, 12) ?? "-"}`);
  if (report.langgraph?.carried.length) printLine(`  LangGraph threads resumed from the branch point: ${report.langgraph.carried.join(", ")}`);
  printLine(paint(`Next: apex start --continue ${report.name} · apex session tree · apex session merge ${report.name} <session>`, "gray"));
}

/**
 * The nearest checkpoint before `manifest` that recorded a git commit: the session's earlier
 * checkpoints, newest first, then those of the session it branched from, before its branch point.
 * LangGraph steps (which record no git state) are passed over without reading their manifests.
 */
function commitBefore(store: Store, manifest: CheckpointManifest): CheckpointManifest | undefined {
  const catalog = Catalog.of(store);
  let at: { sessionId: string; sequence: number } | undefined = { sessionId: manifest.session_id, sequence: manifest.sequence };
  for (let sessions = 0; at && sessions < 100; sessions += 1) {
    let first: CheckpointManifest | undefined;
    for (const summary of catalog.summaries(at.sessionId, { reverse: true })) {
      if (summary.sequence >= at.sequence || summary.trigger === LANGGRAPH_TRIGGER) continue;
      let earlier: CheckpointManifest;
      try {
        earlier = loadManifest(store, { sessionId: summary.session_id, sequence: summary.sequence, id: summary.id });
      } catch {
        continue; // damaged: validate's to report
      }
      if (isRecord(earlier.git_state) && typeof earlier.git_state.commit === "string") return earlier;
      first = earlier;
    }
    // The session's first checkpoint names where it branched from (another session's checkpoint).
    const parent = first?.parent ? catalog.locate(first.parent) : undefined;
    at = parent && parent.s !== at.sessionId ? { sessionId: parent.s, sequence: parent.n + 1 } : undefined;
  }
  return undefined;
}

/** Whether a session's record names `path` as its worktree; undefined when the store cannot be read to tell (then nothing is removed). */
async function worktreeRecorded(location: ProjectLocation, path: string): Promise<boolean | undefined> {
  try {
    return await withReadStore(location, (store) => allSessions(store).some((record) => worktreeOf(record) === path));
  } catch {
    return undefined;
  }
}

function git(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): { code: number; out: string; err: string } {
  const result = spawnSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, ...env } });
  if (result.error) throw new ApexError("APEX_E_GIT_UNAVAILABLE", `git could not run: ${result.error.message}`);
  return { code: result.status ?? 1, out: result.stdout.trim(), err: result.stderr.trim() };
}

/**
 * A worktree inside the repository's git directory (git's own files: refs, objects, the index)
 * or the project's `.apex` (the store and its runtime files, owner-only and ignored by git) would
 * mix a checkout into data nobody edits by hand; git itself does not refuse it. Nor one inside
 * the working tree the project is in: git shows it there as untracked (`git add -A` adds it as an
 * embedded repository), and the project's own session, its agents and every tool that walks the
 * project (grep, a test runner, a build) take the branch's copy of the files for the project's.
 * The same inside another working tree of the repository (a branch's). A working tree itself is
 * refused as any directory that is not empty is.
 */
function refuseReservedWorktree(location: ProjectLocation, dir: string): void {
  const common = git(location.projectDir, ["rev-parse", "--git-common-dir"]);
  // Every working tree of the repository: the project's, and another branch's (a worktree made from a branch's worktree, inside it, is in its git status as well).
  const listed = git(location.projectDir, ["worktree", "list", "--porcelain"]);
  const trees = listed.code === 0 ? listed.out.split(/\n\n+/).filter((block) => !/^bare$/m.test(block)).flatMap((block) => /^worktree (.+)$/m.exec(block)?.[1] ?? []) : [];
  const reserved = [
    ...(common.code === 0 && common.out ? [{ path: resolve(location.projectDir, common.out), what: "the repository's git directory", itself: true }] : []),
    { path: location.storeDir, what: "the project's APEX directory", itself: true },
    ...(trees.length > 0 ? trees : [location.projectDir]).map((path) => ({ path, what: path === trees[0] || trees.length === 0 ? "the working tree of the project" : "a working tree of the repository", itself: false })),
  ];
  const target = realPath(dir);
  for (const { path, what, itself } of reserved) {
    const inside = relative(realPath(path), target);
    if ((inside === "" && itself) || (inside !== "" && !inside.startsWith("..") && !isAbsolute(inside))) {
      throw new ApexError("APEX_E_USAGE", `--worktree ${dir} is inside ${what} (${path}); a worktree cannot go there.`, {
        hint: "Give --worktree a directory outside the repository's working trees, such as ../<repository>-NAME, which --worktree alone makes.",
        details: { path: dir, inside: path },
      });
    }
  }
}

/**
 * A DIR below a file (`notes.txt/wt`) can never be made: a usage error (exit 2, as --help says of
 * a bad DIR) before anything is read or made. It was git's "could not create leading
 * directories", APEX_E_GIT_FAILED, exit 1, once the store had been read.
 */
function refuseUnderFile(dir: string): void {
  for (let at = dirname(dir); ; at = dirname(at)) {
    if (existsSync(at)) {
      if (!statSync(at).isDirectory()) {
        throw new ApexError("APEX_E_USAGE", `--worktree ${dir} is below ${at}, which is not a directory; a worktree cannot go there.`, {
          hint: "Give --worktree a new or empty directory, or give --worktree alone for ../<repository>-NAME.",
          details: { path: dir, not_a_directory: at },
        });
      }
      return;
    }
    if (dirname(at) === at) return;
  }
}

/** Why the system refused to make a directory, for the errors that are the place's (not a full disk's). */
const UNMAKEABLE: Record<string, (parent: string) => string> = {
  EACCES: (parent) => `this user may not write in ${parent} (permission denied)`,
  EPERM: (parent) => `${parent} takes no new directories (operation not permitted)`,
  EROFS: (parent) => `${parent} is on a read-only file system`,
  // mkdir in /proc: ENOENT, though /proc exists.
  ENOENT: (parent) => `${parent} takes no new directories (a pseudo file system, such as /proc)`,
  ENAMETOOLONG: () => "a name in it is too long",
};

/**
 * A DIR this user cannot make (no permission to write where it goes, a read-only file system, a
 * pseudo file system such as /proc): a usage error (exit 2) before anything is read or made, with
 * the system's reason. It was git's "could not create directory", APEX_E_GIT_FAILED, exit 1.
 * Found by making its missing directories, one by one, and removing them at once: root passes
 * every permission check (access(2) says yes) and is still refused by /proc. (Not mkdir's
 * recursive mode: Node's loops for ever on the ENOENT /proc answers.) An empty DIR that exists,
 * which git writes its .git file in, is asked access(2) only. The default DIR (`--worktree` alone,
 * beside the repository) is checked so too: `given` false words the error for it.
 */
function refuseUnmakeable(dir: string, given = true): void {
  const missing: string[] = [];
  let at = dir;
  for (; !existsSync(at) && dirname(at) !== at; at = dirname(at)) missing.unshift(at);
  if (missing.length === 0) {
    // Not empty (or not a directory): refused later as taken (APEX_E_CONFLICT).
    if (!statSync(dir).isDirectory() || readdirSync(dir).length > 0) return;
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch (error) {
      throwUnmakeable(dir, dir, error, given);
    }
    return;
  }
  const made: string[] = [];
  try {
    for (const each of missing) {
      mkdirSync(each);
      made.push(each);
    }
  } catch (error) {
    // One that appeared meanwhile (another command, a link left dangling): git says what it finds there.
    throwUnmakeable(dir, missing[made.length]!, error, given);
  } finally {
    for (const each of made.reverse()) {
      try {
        rmdirSync(each);
      } catch {
        // something was put in it meanwhile: not ours to remove
      }
    }
  }
}

function throwUnmakeable(dir: string, failed: string, error: unknown, given: boolean): void {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  const exists = failed === dir && existsSync(dir);
  const why = Object.hasOwn(UNMAKEABLE, code) ? UNMAKEABLE[code]!(exists ? dir : dirname(failed)) : undefined;
  if (why === undefined) return;
  const what = given ? `--worktree ${dir}` : `The default worktree directory ${dir} (beside the repository)`;
  throw new ApexError("APEX_E_USAGE", `${what} ${exists ? "cannot hold a worktree" : "cannot be created there"}: ${why}; nothing was made.`, {
    hint: given ? "Give --worktree a directory this user can create (in one it may write to), or give --worktree alone for ../<repository>-NAME." : "Give --worktree DIR, a directory this user can create (in one it may write to).",
    details: { path: dir, cannot_create: failed, errno: code },
  });
}

/** The worktree that has `branch` checked out (its path and HEAD), from `git worktree list --porcelain`. */
function worktreeHolding(repo: string, branch: string): { path: string; head: string } | undefined {
  const listed = git(repo, ["worktree", "list", "--porcelain"]);
  if (listed.code !== 0) return undefined;
  for (const block of listed.out.split(/\n\n+/)) {
    const field = (name: string) => block.split("\n").find((line) => line.startsWith(`${name} `))?.slice(name.length + 1);
    const path = field("worktree");
    if (path && field("branch") === `refs/heads/${branch}`) return { path, head: field("HEAD") ?? "" };
  }
  return undefined;
}

function createWorktree(repo: string, dir: string, branch: string, commit: string | null, label: string): { path: string; branch: string; commit: string | null; adopted?: boolean } {
  if (!commit) {
    throw new ApexError("APEX_E_GIT_COMMIT_MISSING", `${label} recorded no git commit, so there is nothing to check out for --worktree.`, {
      hint: "Branch without --worktree, or from a checkpoint taken in a git repository with the git plugin enabled.",
    });
  }
  // A commit gone since (reset, gc, a clone without it) is named as `start --continue --git-checkout` names it, not as git's "not a valid branch point".
  if (git(repo, ["cat-file", "-e", `${commit}^{commit}`]).code !== 0) {
    throw new ApexError("APEX_E_GIT_COMMIT_MISSING", `${label}'s git commit ${commit} is not in the repository at ${repo}.`, {
      hint: "Fetch it (git fetch --all) if it lives on a remote, or branch without --worktree.",
      details: { commit },
    });
  }
  if (git(repo, ["check-ref-format", "--branch", branch]).code !== 0) throw new ApexError("APEX_E_USAGE", `${branch} is not a valid git branch name.`);
  if (git(repo, ["rev-parse", "--verify", "--quiet", `refs/heads/${branch}`]).code === 0) {
    const held = worktreeHolding(repo, branch);
    // What an interrupted `session branch --worktree` of this name left (killed after git made the
    // worktree, before the session was recorded; no session has the name, checked before): the same
    // branch checked out where this one would go, at the checkpoint's commit, untouched. The rerun
    // takes it over instead of refusing with a way out that git refuses too (a checked-out branch
    // cannot be deleted).
    if (held && realPath(held.path) === realPath(dir) && held.head === commit && git(held.path, ["status", "--porcelain"]).out === "") {
      return { path: dir, branch, commit, adopted: true };
    }
    throw new ApexError("APEX_E_BRANCH_EXISTS", `The git branch ${branch} exists already${held ? `, checked out at ${held.path}` : ""}; not creating the worktree.`, {
      hint: held
        ? `Choose another session name, or remove both: git worktree remove ${JSON.stringify(held.path)} && git branch -D ${branch}`
        : `Choose another session name, or delete the branch: git branch -D ${branch}`,
      details: { branch, ...(held ? { worktree: held.path } : {}) },
    });
  }
  // A branch named like a directory of it (`apex`) or one below it (`apex/NAME/x`): git refuses to
  // have both (refs are files), which came out as git's own "cannot lock ref", exit 1.
  const clash = branchBeside(repo, branch);
  if (clash !== undefined) {
    throw new ApexError("APEX_E_BRANCH_EXISTS", `The git branch ${clash} keeps git from creating ${branch} (git cannot have both); not creating the worktree.`, {
      hint: `Choose another session name, or rename that branch (git branch -m ${clash} NEW-NAME).`,
      details: { branch, clashes_with: clash },
    });
  }
  if (existsSync(dir) && !(statSync(dir).isDirectory() && readdirSync(dir).length === 0)) {
    throw new ApexError("APEX_E_CONFLICT", `${dir} exists already and is not an empty directory; not creating the worktree there.`, {
      hint: "Give --worktree a new or empty directory.",
      details: { path: dir },
    });
  }
  // APEX's own git command: the installed hooks stay quiet (they took a beforeGit checkpoint of the project's session, which `latest` then named).
  const added = git(repo, ["worktree", "add", "-b", branch, dir, commit], { [BEFORE_GIT_FIRED_ENV]: "1" });
  if (added.code !== 0) {
    // git may have made the branch before it failed; it did not exist before (checked above).
    git(repo, ["branch", "-D", branch], { [BEFORE_GIT_FIRED_ENV]: "1" });
    throw new ApexError("APEX_E_GIT_FAILED", `git worktree add failed: ${added.err || added.out}`);
  }
  // The tree the project is in, for commands run in the worktree to find its store (core/config/locate.ts):
  // the main one, or a linked worktree of its own, which the repository's records do not tell apart.
  const [admin, top] = [git(dir, ["rev-parse", "--absolute-git-dir"]), git(repo, ["rev-parse", "--show-toplevel"])];
  if (admin.code === 0 && top.code === 0) writeFileSync(join(admin.out, "apex-project"), `${top.out}\n`);
  return { path: dir, branch, commit };
}

/** A branch git cannot have beside `branch`: one named like a directory of it (`apex` for `apex/NAME`), or one below it. */
function branchBeside(repo: string, branch: string): string | undefined {
  const parts = branch.split("/");
  const prefixes = parts.slice(0, -1).map((_, index) => `refs/heads/${parts.slice(0, index + 1).join("/")}`);
  // A pattern matches the ref it names and the refs below it.
  const refs = git(repo, ["for-each-ref", "--format=%(refname)", `refs/heads/${branch}`, ...prefixes]).out.split("\n");
  return refs.find((ref) => prefixes.includes(ref) || ref.startsWith(`refs/heads/${branch}/`))?.slice("refs/heads/".length);
}

function removeWorktree(repo: string, worktree: { path: string; branch: string }): void {
  git(repo, ["worktree", "remove", "--force", worktree.path], { [BEFORE_GIT_FIRED_ENV]: "1" });
  git(repo, ["branch", "-D", worktree.branch], { [BEFORE_GIT_FIRED_ENV]: "1" });
}

// ------------------------------------------------------------------------------------ merge

export async function mergeCommand(location: ProjectLocation, src: string, dst: string, options: { dryRun?: boolean; strategy?: string; git?: boolean; json?: boolean }): Promise<void> {
  const remote = Boolean(process.env.APEX_REMOTE);
  // `current` and `last` name the session this command is bound to (its worktree, --session): resolved here, not by
  // DST's supervisor, which takes them for its own session. (A remote merge's server resolves them for its grant.)
  const ids = remote ? undefined : await withReadStore(location, (store) => [src, dst].map((ref) => attempt(() => resolveSessionRef(store, ref)))).catch(() => undefined);
  const params = { source: ids?.[0] ?? src, destination: ids?.[1] ?? dst, strategy: options.strategy ?? "fail", actor: currentActor() };
  if (remote && options.git) {
    // The git merge runs in the repository on this host; the remote session's repository is on the server's.
    throw new ApexError("APEX_E_USAGE", "`apex session merge --git` does not work on a remote session: git merges in the server's repository.", {
      hint: "Merge the memory remotely without --git, and the git branches on the server's host.",
    });
  }
  // Into an active DST through DST's own supervisor (the one writer of its memory): its agents see the state before or after.
  // (A remote merge goes to the server, which merges into the session its grant is for.)
  const destination = ids?.[1];
  let gitReport: JsonValue | undefined;
  if (destination !== undefined && !options.dryRun) {
    // DST running on another host (a shared store) is refused before anything is written here, git's merge first of all.
    const { refuseOnAnotherHost } = await import("./session-merge.js");
    await withReadStore(location, (store) => refuseOnAnotherHost(store, destination));
  }
  if (options.git && !options.dryRun) {
    // The memory merge is checked first (a refusal changes nothing, git included), then git merges.
    const plan = (await callRead(location, "session.merge", { ...params, dry_run: true })) as SessionMergeReport;
    if (plan.refused) return printMerge(await refusedReport(location, params, destination), options);
    gitReport = await mergeGit(location, plan);
  }
  if (options.dryRun) {
    const report = (await callRead(location, "session.merge", { ...params, dry_run: true })) as SessionMergeReport;
    // With --git the dry run checks what the git merge would meet too: the same refusals, and conflicts git predicts.
    if (options.git && !report.refused) {
      const plan = gitPlan(await gitSides(location, report));
      report.git = plan;
      if (plan.conflicts.length > 0) report.refused = true;
    }
    printMerge(report, options);
    if (report.refused) process.exitCode = 4;
    return;
  }
  let ended: number | undefined;
  let report: SessionMergeReport;
  const request = { ...params, ...(gitReport !== undefined ? { git: gitReport } : {}) };
  const write = async (): Promise<SessionMergeReport> => {
    try {
      return (await callWrite(location, "session.merge", request, destination, (pid) => (ended = pid))) as SessionMergeReport;
    } catch (error) {
      // DST's supervisor has claimed it (a `start --continue` restoring it, before it listens): the merge is its to make, once it listens.
      if (!isApexError(error) || error.details?.supervisor_elsewhere !== true || destination === undefined) throw error;
      const { waitForStart } = await import("../../cli/session/starting-wait.js");
      const { pid, start_time } = error.details as { pid: number; start_time: number };
      const label = await withReadStore(location, (store) => sessionLabel(store, destination));
      const client = await waitForStart(location, { pid, start_time, label }, "session merge", Boolean(options.json), destination);
      return (client ? await callWriter(client, "session.merge", request) : await write()) as SessionMergeReport;
    }
  };
  try {
    report = await write();
  } catch (error) {
    // git merged first: a memory merge refused after it (DST changed meanwhile) did not leave "nothing written".
    throw gitReport !== undefined && isApexError(error) ? afterGit(error, gitReport) : error;
  }
  if (ended !== undefined) {
    const name = report.destination.session_name ?? shortSessionId(report.destination.session_id);
    // A supervisor that ended the session itself (an `apex stop` that came meanwhile) left it stopped, not interrupted: said as the store has it.
    const status = await withReadStore(location, (store) => {
      const record = findSession(store, report.destination.session_id);
      return record ? effectiveStatus(record) : "interrupted";
    }).catch(() => "interrupted");
    const over = status === "stopped" || status === "completed" || status === "failed";
    const how = status === "stopped" ? "stopped the session" : over ? `ended the session (${status})` : "ended";
    const now = status === "interrupted" ? `${name} is interrupted: \`apex start --continue ${name}\` goes on.` : over ? `${name} is ${status}: the merge went into it as it was left.` : `${name} is ${status} now.`;
    process.stderr.write(`warning: ${name}'s supervisor (pid ${ended}) ${how} before it answered; the merge was made again without it, and found done if it had been saved ("Already up to date"). ${now}\n`);
  }
  printMerge(report, options);
}

/** `fn`'s value, or undefined when it throws (a ref left for the merge itself to refuse, with its own error). */
function attempt<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}

/** The memory merge's refusal once git has merged: says so, and that the same command finishes it (git finds the branch merged). */
function afterGit(error: ApexError, git: JsonValue): ApexError {
  const { source_branch: branch, directory, commit } = git as { source_branch?: string; directory?: string; commit?: string };
  const said = error.message.replace(/ Nothing was written\.$/, "");
  return new ApexError(error.code, `${said} No memory was merged, but git had merged ${branch} into ${directory} already (HEAD ${commit?.slice(0, 12) ?? "-"}): DST changed after the merge was planned.`, {
    hint: `${error.hint ? `${error.hint} ` : ""}Merging again (with --git too: git finds ${branch} merged) merges the memory.`,
    details: { ...(error.details ?? {}), git: git as JsonValue },
    cause: error,
  });
}

/** A dry run reads: over the socket when one runs (or inside an agent), else the store read-only. */
async function callRead(location: ProjectLocation, method: string, params: Record<string, unknown>): Promise<unknown> {
  const writer = await writerClient(location);
  if (writer) {
    try {
      return await writer.call(method, params, 600_000);
    } catch (error) {
      // Refused by a supervisor as it stopped: read on the store once it has exited.
      const { waitOutStop } = await import("../../cli/stopping-retry.js");
      if (!(await waitOutStop(writer, error, process.argv.includes("--json")))) throw error;
    }
  }
  return withReadStore(location, async (store) => {
    const { mergeSessions } = await import("./session-merge.js");
    return mergeSessions(store, {
      source: String(params.source),
      destination: String(params.destination),
      strategy: typeof params.strategy === "string" ? params.strategy : undefined,
      dryRun: true,
    });
  });
}

/** The real merge's refusal, for the exit code and message, when the dry run said it would refuse. */
async function refusedReport(location: ProjectLocation, params: Record<string, unknown>, destination: string | undefined): Promise<never> {
  // Where the merge would be made (DST's supervisor when it runs): another process refuses a running DST for that, not for its conflicts.
  await callWrite(location, "session.merge", params, destination);
  throw new ApexError("APEX_E_INTERNAL", "The merge was expected to be refused.");
}

function printMerge(report: SessionMergeReport, options: { json?: boolean }): void {
  const unsaved = report.source.changed_since_checkpoint;
  if ((unsaved === "running" || unsaved === "stopped") && report.relation !== "same") {
    // The merge takes SRC's latest checkpoint: what it wrote after that stays behind.
    // The session as the merge's other lines print it; the commands name it by its name, else its whole id.
    const name = report.source.session_name ?? report.source.session_id;
    const label = report.source.session_name ?? shortSessionId(report.source.session_id);
    const first = unsaved === "running" ? `apex --session ${name} checkpoint create` : `apex start --continue ${name}, then apex --session ${name} checkpoint create`;
    process.stderr.write(`warning: ${label} wrote memory or tasks after ${report.source.checkpoint.name}, which is what ${report.dry_run ? "would be" : "was"} merged; those writes are not in it. To merge them too, checkpoint it first (${first}).\n`);
  }
  // A session by its name when it has one, else its short id (a whole id when it is no uuid: cut, it would read as another).
  const label = (side: { session_id: string; session_name?: string | null }) => side.session_name ?? shortSessionId(side.session_id);
  if (report.base_fell_back_from) {
    // A nearer common ancestor was deleted and nothing recorded it: said, with the base used instead (it fell back silently).
    const lost = report.base_fell_back_from.map((point) => `${label(point)}/${point.name}`).join(", ");
    const used = report.base ? `the older ${label(report.base)}/${report.base.name}` : "no base at all (as for unrelated histories)";
    const one = report.base_fell_back_from.length === 1;
    process.stderr.write(
      `warning: the common ancestor${one ? "" : "s"} ${lost} ${one ? "was" : "were"} deleted (\`apex checkpoint delete --force\`, or a repair) and no branch or merge recorded ${one ? "it" : "them"}, so the merge ${report.dry_run ? "would be" : "is"} based on ${used}, where more paths may conflict (what both sides changed since it).\n`,
    );
  }
  if (options.json) return printJson(report);
  const src = `${label(report.source)}/${report.source.checkpoint.name}`;
  const dst = label(report.destination);
  // What --git merged (or, on a dry run, would do) is said whatever the memory merge did: commits can come in with no memory change.
  const gitLine = gitText(report);
  const memoryRefused = [...report.memory.conflicts, ...report.tasks.conflicts].some((conflict) => conflict.resolution === "none");
  const tail = () => {
    if (gitLine) printLine(gitLine);
    if (report.refused) {
      printLine(paint(memoryRefused ? "Refused: conflicts under --strategy fail. Nothing written; settle them with --strategy ours|theirs." : "Refused: the git merge would conflict. Nothing written; resolve it in git, then merge without --git.", "red"));
    }
  };
  if (report.relation === "up-to-date" || report.relation === "same") {
    printLine(`Already up to date: ${src} is already part of ${dst}${gitLine ? "'s memory" : ""}.`);
    return tail();
  }
  const base = report.base ? `${label(report.base)}/${report.base.name}${report.base.deleted ? ", deleted: as its branch recorded it" : ""}` : report.base_fell_back_from ? "none" : "none (unrelated histories)";
  const empty = report.memory.changes.length + report.tasks.changes.length + report.memory.conflicts.length + report.tasks.conflicts.length === 0;
  // SRC's threads that cannot be taken: said even when nothing else is (the merge took nothing of what SRC changed).
  const notTaken = () => {
    if (report.langgraph?.not_taken.length) printLine(`  LangGraph threads kept as ${dst} has them (${src}'s step was deleted, or the thread): ${report.langgraph.not_taken.join(", ")}`);
  };
  if (empty) {
    printLine(`Nothing to merge${gitLine ? " in memory" : ""}: ${src} changes nothing ${dst} does not have since ${base}.`);
    notTaken();
    return tail();
  }
  printLine(`${report.dry_run ? "Would merge" : "Merged"} ${src} into ${dst} (base ${base}${report.other_bases.length > 0 ? ` merged with ${plural(report.other_bases.length, "other common ancestor")} into a virtual one` : ""}, strategy ${report.strategy}).`);
  for (const [part, plan] of [
    ["memory", report.memory],
    ["tasks", report.tasks],
  ] as const) {
    // A LangGraph thread namespace is taken whole: one line for it, not one per channel (10k for a 10k-channel state).
    const threads = new Map<string, { counts: Map<string, number>; resolved: boolean }>();
    for (const change of plan.changes) {
      const unit = part === "memory" ? langGraphUnit(change.path.split("/").slice(1)) : undefined;
      if (unit) {
        let thread = threads.get(unit);
        if (!thread) threads.set(unit, (thread = { counts: new Map(), resolved: false }));
        thread.counts.set(change.kind, (thread.counts.get(change.kind) ?? 0) + 1);
        thread.resolved ||= change.resolved === true;
        continue;
      }
      printLine(`  ${change.kind.padEnd(8)} ${part === "tasks" ? `task ${change.path.slice(1)}` : change.path}${change.resolved ? " (conflict, theirs)" : ""}`);
    }
    for (const [unit, { counts, resolved }] of threads) {
      const total = [...counts.values()].reduce((sum, count) => sum + count, 0);
      const kinds = [...counts].map(([kind, count]) => `${count} ${kind}`).join(", ");
      printLine(`  ${"thread".padEnd(8)} ${unit}: ${plural(total, "path")} (${kinds}), LangGraph's channels${resolved ? " (conflict, theirs)" : ""}`);
    }
    for (const conflict of plan.conflicts) {
      const mark = conflict.resolution === "none" ? paint("conflict", "red") : `conflict, ${conflict.resolution}`;
      printLine(`  ${mark}: ${part === "tasks" ? `task ${describeConflict(conflict).slice(1)}` : describeConflict(conflict)}`);
    }
  }
  if (report.langgraph?.taken.length) printLine(`  LangGraph threads ${report.dry_run ? "that would resume" : "resuming"} from ${src}'s step: ${report.langgraph.taken.join(", ")}`);
  if (report.langgraph?.deleted?.length) printLine(`  LangGraph threads ${report.dry_run ? "that would be deleted" : "deleted"} as ${src} deleted them: ${report.langgraph.deleted.join(", ")}`);
  notTaken();
  if (report.checkpoint) printLine(`  merge checkpoint ${report.checkpoint.name} (${report.checkpoint.id}), parents ${report.checkpoint.parent?.slice(0, 8) ?? "-"} and ${report.checkpoint.merge_parent.slice(0, 8)}${report.applied === "live" ? "; live memory updated" : ""}`);
  tail();
}

/** The git line of a merge: what --git merged, or on a dry run what it would do. */
function gitText(report: SessionMergeReport): string | undefined {
  const git = report.git as { source_branch?: string; destination_branch?: string; commit?: string; before?: string; conflicts?: string[]; predicted?: boolean } | null;
  if (!git?.source_branch) return undefined;
  if (git.commit) return `  git: ${git.before === git.commit ? `${git.source_branch} was merged already` : `merged ${git.source_branch}`} (HEAD ${git.commit.slice(0, 12)})`;
  if (git.conflicts && git.conflicts.length > 0) return `  ${paint("git: would conflict", "red")} in ${git.conflicts.join(", ")} (${git.source_branch} into ${git.destination_branch})`;
  return `  git: would merge ${git.source_branch} into ${git.destination_branch}${git.predicted === false ? " (conflicts not predicted: git before 2.38 has no merge-tree --write-tree)" : ", no conflict"}`;
}

interface GitSides {
  sourceSession: string;
  destinationSession: string;
  sourceBranch: string | undefined;
  sourceDirectory: string | undefined;
  /** The commit SRC's latest checkpoint recorded: where a lost branch can be made again. */
  sourceCommit: string | undefined;
  directory: string;
  /** DST's own branch (a worktree session's), and the project's directory, where git lists the worktrees. */
  destinationBranch: string | undefined;
  /** The commit DST's worktree was made at: where its branch, lost with it, is made again. */
  destinationCommit: string | undefined;
  projectDir: string;
}

async function gitSides(location: ProjectLocation, plan: SessionMergeReport): Promise<GitSides> {
  return withReadStore(location, (store) => {
    const source = sessionRecord(store, resolveSessionRef(store, plan.source.session_id));
    const destination = sessionRecord(store, resolveSessionRef(store, plan.destination.session_id));
    const sourceWorktree = source?.worktree as { branch?: unknown; path?: unknown } | null | undefined;
    const destinationWorktree = destination?.worktree as { branch?: unknown; path?: unknown; commit?: unknown } | null | undefined;
    let sourceCommit: string | undefined;
    try {
      const state = getCheckpoint(store, plan.source.checkpoint.id).git_state as { commit?: unknown } | null;
      if (typeof state?.commit === "string") sourceCommit = state.commit;
    } catch {
      // no git state to offer: the hint names none
    }
    return {
      // As merge prints sessions: a branch by its name, another by its short id.
      sourceSession: plan.source.session_name ?? shortSessionId(plan.source.session_id),
      destinationSession: plan.destination.session_name ?? shortSessionId(plan.destination.session_id),
      sourceBranch: typeof sourceWorktree?.branch === "string" ? sourceWorktree.branch : undefined,
      sourceDirectory: typeof sourceWorktree?.path === "string" ? sourceWorktree.path : undefined,
      sourceCommit,
      directory: typeof destinationWorktree?.path === "string" ? destinationWorktree.path : location.projectDir,
      destinationBranch: typeof destinationWorktree?.branch === "string" ? destinationWorktree.branch : undefined,
      destinationCommit: typeof destinationWorktree?.commit === "string" ? destinationWorktree.commit : undefined,
      projectDir: location.projectDir,
    };
  });
}

/**
 * What the git merge would do, checked before anything is written (the dry run stops here):
 * SRC has a branch, it still exists, DST's working tree exists and is clean; then, with `predict`
 * (the dry run), `git merge-tree` (git 2.38+; older git: not predicted) names the files that would
 * conflict, touching nothing.
 */
function gitPlan(sides: GitSides, { predict = true } = {}): { source_branch: string; destination_branch: string; directory: string; head: string; conflicts: string[]; predicted: boolean } {
  const { sourceBranch, sourceDirectory, directory } = sides;
  if (!sourceBranch) {
    throw new ApexError("APEX_E_USAGE", `Session ${sides.sourceSession} has no git branch of its own to merge.`, {
      hint: "--git merges the branch of a session created with `apex session branch … --worktree`.",
    });
  }
  if (!existsSync(directory)) {
    // Moved by hand (git worktree move): its branch is checked out elsewhere, and git would refuse to add it again.
    const moved = sides.destinationBranch ? worktreeOnBranch(sides.projectDir, sides.destinationBranch) : undefined;
    // Moved with mv: git still records it here; found beside, the commands name where it is.
    const back = moved ? undefined : worktreeBackHint(sides.projectDir, directory, sides.destinationBranch, sides.destinationCommit);
    throw new ApexError("APEX_E_NOT_FOUND", `The git worktree of session ${sides.destinationSession}, ${directory}, no longer exists${moved ? `: its branch ${sides.destinationBranch} is checked out at ${moved} now` : back?.movedTo ? ` (it is at ${back.movedTo} now)` : ""}; nothing was merged.`, {
      hint: moved ? `Move it back from the project: git worktree move ${JSON.stringify(moved)} ${JSON.stringify(directory)}; or merge without --git.` : `${back!.hint}; or merge without --git.`,
      details: { worktree: directory, ...(moved ? { moved_to: moved } : back?.movedTo ? { moved_to: back.movedTo } : {}) },
    });
  }
  if (git(directory, ["rev-parse", "--is-inside-work-tree"]).code !== 0) throw new ApexError("APEX_E_NOT_A_REPOSITORY", `${directory} is not a git working tree.`);
  if (git(directory, ["rev-parse", "--verify", "--quiet", `refs/heads/${sourceBranch}`]).code !== 0) {
    // Renamed by hand, its worktree follows the new name: say which, and how to name it back.
    const now = sourceDirectory && existsSync(sourceDirectory) ? git(sourceDirectory, ["symbolic-ref", "--short", "-q", "HEAD"]) : undefined;
    const renamed = now?.code === 0 && now.out && now.out !== sourceBranch ? now.out : undefined;
    throw new ApexError(
      "APEX_E_NOT_FOUND",
      `The git branch ${sourceBranch} of session ${sides.sourceSession} no longer exists${renamed ? `: its worktree ${sourceDirectory} is on ${renamed} now` : ""}; nothing was merged.`,
      {
        hint: renamed
          ? `Name it back (git branch -m ${renamed} ${sourceBranch}) and merge again, or merge the memory without --git.`
          : `Recreate it${sides.sourceCommit ? ` at the commit SRC's latest checkpoint recorded (git branch ${sourceBranch} ${sides.sourceCommit})` : " (git branch BRANCH COMMIT)"} and merge again, or merge the memory without --git.`,
        details: { source_branch: sourceBranch, ...(renamed ? { renamed_to: renamed } : {}), ...(sides.sourceCommit ? { commit: sides.sourceCommit } : {}) },
      },
    );
  }
  // A merge left half way (its conflicts being resolved by hand, or a `--git` killed before it aborted one):
  // "commit or stash" is no way on (git stash refuses unmerged files). Say what it is and both ways out.
  if (git(directory, ["rev-parse", "-q", "--verify", "MERGE_HEAD"]).code === 0) {
    const unmerged = git(directory, ["diff", "--name-only", "--diff-filter=U"]).out.split("\n").filter(Boolean);
    throw new ApexError("APEX_E_DIRTY_TREE", `${directory} is in the middle of a git merge${unmerged.length > 0 ? ` (conflicts in ${unmerged.slice(0, 5).join(", ")}${unmerged.length > 5 ? ", …" : ""})` : ""}; not merging ${sourceBranch} into it, and no memory was merged.`, {
      hint: `Finish it there (resolve, git add, git commit) and run this merge again (a ${sourceBranch} merged so is found merged), or give it up: git -C ${JSON.stringify(directory)} merge --abort.`,
      details: { directory, merge_in_progress: true, files: unmerged },
    });
  }
  if (git(directory, ["status", "--porcelain", "--untracked-files=no"]).out !== "") {
    throw new ApexError("APEX_E_DIRTY_TREE", `${directory} has uncommitted changes; not merging ${sourceBranch} into it, and no memory was merged.`, {
      hint: "Commit or stash them there, then merge again.",
      details: { directory },
    });
  }
  // Untracked files the merge would write over: git refuses the whole merge for them (which the dry
  // run's merge-tree, working on commits only, cannot see). Checked here, the dry run says so too.
  const incoming = new Set(git(directory, ["diff", "--name-only", "--no-renames", "-z", `HEAD...${sourceBranch}`]).out.split("\0").filter(Boolean));
  const inTheWay = incoming.size === 0 ? [] : git(directory, ["ls-files", "--others", "--exclude-standard", "-z"]).out.split("\0").filter((file) => incoming.has(file));
  if (inTheWay.length > 0) {
    throw new ApexError("APEX_E_DIRTY_TREE", `${directory} has ${inTheWay.length === 1 ? "an untracked file" : "untracked files"} the merge of ${sourceBranch} would overwrite (${inTheWay.slice(0, 5).join(", ")}${inTheWay.length > 5 ? ", …" : ""}); not merging, and no memory was merged.`, {
      hint: "Move them away, remove them or commit them there, then merge again.",
      details: { directory, untracked: inTheWay },
    });
  }
  const destinationBranch = git(directory, ["rev-parse", "--abbrev-ref", "HEAD"]).out;
  const head = git(directory, ["rev-parse", "HEAD"]).out;
  if (!predict) return { source_branch: sourceBranch, destination_branch: destinationBranch, directory, head, conflicts: [], predicted: false };
  // Exit 0: merges cleanly; 1: conflicts (the tree, then the files); other: this git cannot tell.
  const predicted = git(directory, ["merge-tree", "--write-tree", "--name-only", "--no-messages", "HEAD", sourceBranch]);
  const conflicts = predicted.code === 1 ? [...new Set(predicted.out.split("\n").slice(1).filter(Boolean))] : [];
  return { source_branch: sourceBranch, destination_branch: destinationBranch, directory, head, conflicts, predicted: predicted.code === 0 || predicted.code === 1 };
}

/**
 * `--git`: SRC's git branch merged into DST's working tree (DST's worktree when it has one,
 * else the project). beforeGit fires first (`apex git notify`, where the writer is). A conflict
 * aborts the merge (`git merge --abort`), so both histories stay as they were, and names the files.
 */
async function mergeGit(location: ProjectLocation, plan: SessionMergeReport): Promise<JsonValue> {
  const sides = await gitSides(location, plan);
  // Checked before beforeGit fires: a merge that cannot start writes nothing.
  // (no prediction: the merge itself finds any conflict)
  const { source_branch: sourceBranch, destination_branch: destinationBranch, directory, head: before } = gitPlan(sides, { predict: false });
  // git merges SRC's commits only: changes its agents left uncommitted stay behind, said so.
  const { sourceDirectory } = sides;
  const left = sourceDirectory && existsSync(sourceDirectory) ? git(sourceDirectory, ["status", "--porcelain", "--untracked-files=no"]).out.split("\n").filter(Boolean) : [];
  if (left.length > 0) {
    process.stderr.write(`warning: ${sourceDirectory} has ${plural(left.length, "uncommitted change")} (${left.slice(0, 5).map((line) => line.trim().replace(/^\S+\s+/, "")).join(", ")}${left.length > 5 ? ", …" : ""}); only ${sourceBranch}'s commits are merged.\n`);
  }
  // Merged already (the same merge run again): git would change nothing, so nothing fires (it took a beforeGit checkpoint each time).
  if (git(directory, ["merge-base", "--is-ancestor", sourceBranch, "HEAD"]).code === 0) return { source_branch: sourceBranch, destination_branch: destinationBranch, directory, before, commit: before };
  fireBeforeGit(location, directory, ["merge", sourceBranch], plan.destination.session_id);
  const merged = git(directory, ["merge", "--no-edit", sourceBranch], { APEX_GIT_BEFORE_FIRED: "1" });
  if (merged.code !== 0) {
    const files = git(directory, ["diff", "--name-only", "--diff-filter=U"]).out.split("\n").filter(Boolean);
    git(directory, ["merge", "--abort"]);
    throw new ApexError("APEX_E_MERGE_CONFLICT", `git merge of ${sourceBranch} into ${destinationBranch} conflicts${files.length > 0 ? ` in ${files.join(", ")}` : `: ${merged.err || merged.out}`}; it was aborted (both branches are as they were) and no memory was merged.`, {
      hint: "Resolve it by hand (git merge in that directory), then run apex session merge without --git.",
      details: { files, directory, source_branch: sourceBranch, destination_branch: destinationBranch, head: before },
    });
  }
  return { source_branch: sourceBranch, destination_branch: destinationBranch, directory, before, commit: git(directory, ["rev-parse", "HEAD"]).out };
}

/**
 * beforeGit in DST, whose working tree the merge changes, through `apex --session DST git notify`
 * (the git plugin's command, run in DST's supervisor when it runs); nothing when the plugin is off.
 * Not in the session of an agent that runs the merge: its own variables are left out.
 */
function fireBeforeGit(location: ProjectLocation, cwd: string, args: string[], destination: string): void {
  const bin = resolve(dirname(new URL(import.meta.url).pathname), "../../../bin/apex.js");
  const { APEX_SESSION_ID: _agent, APEX_SOCKET: _socket, APEX_WORKTREE: _tree, ...env } = process.env;
  const result = spawnSync(process.execPath, [bin, ...(location.configPath ? ["--config", location.configPath] : []), "--session", destination, "git", "notify", "--json", "--", ...args], {
    cwd: location.projectDir,
    encoding: "utf8",
    env,
  });
  if (result.status === 0) return;
  const text = `${result.stderr ?? ""}${result.stdout ?? ""}`;
  if (/unknown command|APEX_E_USAGE/i.test(text) && /git/.test(text)) return; // no git plugin: nothing to fire
  throw new ApexError("APEX_E_GIT_FAILED", `beforeGit failed before the git merge in ${cwd}; nothing was merged: ${text.trim().split("\n")[0] ?? ""}`);
}

// ------------------------------------------------------------------------------------ tree

export async function treeCommand(location: ProjectLocation, options: { json?: boolean }): Promise<void> {
  const client = await openSessionClient(location, "read");
  let tree: SessionTree;
  try {
    tree = client.empty ? { sessions: [], nodes: [] } : await client.run("session.tree", {}, async (store) => (await import("./tree.js")).sessionTree(store), 30_000);
  } finally {
    await client.close();
  }
  // A merged-in checkpoint whose session is not in the store: whether this project's backup directory holds its archive
  // (unarchive brings it back) or not (never archived here). Not through --remote: that backup directory is the server's.
  const absent = tree.nodes.filter((node) => node.archived);
  let backups: string | undefined;
  if (absent.length > 0 && client.via !== "remote") {
    const { archivesOf } = await import("../../cli/archived-hint.js");
    const found = await archivesOf(location, absent.map((node) => node.session_id));
    backups = found.where;
    for (const node of absent) node.archive = found.archives.get(node.session_id) ?? null;
  }
  if (options.json) return printJson(tree);
  if (tree.nodes.length === 0) {
    printLine("No checkpoints yet: the tree is drawn from them.");
    return;
  }
  // One line each, whatever a description, a name or (from another host) any text holds: a line break started a line of its own.
  for (const line of drawTree(tree, backups)) printLine(visibleText(line));
}
