#!/usr/bin/env node
// The reference coder agent: claims subtasks one at a time, writes a small ES module for
// each in a git workspace under the store (<APEX_HOME>/workspace, never outside it),
// commits it, and completes the task with {file, commit}. A task the adversary sent back
// is written again with the fixes its review asked for.
//
// Memory it keeps: /agents/coder/progress = {session, current, done, redone}, where
// current = {id, title, file, revision, stage: "claimed" | "written" | "committed", commit}.
import {
  FatalError,
  REVIEWED_PATH,
  commitFiles,
  fileForTask,
  hasCommit,
  issuesPath,
  kindOfTitle,
  pace,
  prepareWorkspace,
  progressPath,
  progressSummary,
  renderModule,
  runAgent,
  short,
  supervisorPlanning,
  workspaceDirOf,
  writeWorkspaceFile,
} from "./lib.mjs";

await runAgent("coder", async ({ env, log, lifecycle, apex, resumeContext }) => {
  const me = env.agent;
  const workspace = workspaceDirOf();
  await apex.report("starting");
  let prepared;
  try {
    prepared = prepareWorkspace(workspace, { name: `APEX ${me}`, email: `${me}@apex.invalid` });
  } catch (error) {
    throw new FatalError(`cannot prepare the git workspace ${workspace}: ${error.message}`);
  }
  log(`workspace ${workspace}${prepared ? `: ${prepared}` : ""}`);

  let progress = await apex.getMemory(progressPath(me));
  if (!sameSession(progress, env.sessionId) && sameSession(resumeContext?.progress, env.sessionId)) progress = resumeContext.progress;
  if (!sameSession(progress, env.sessionId)) progress = { session: env.sessionId, current: null, done: [], redone: [], revisions: {} };
  if (progress.current) log(`resuming: was working on ${progress.current.id} (${progress.current.stage})`);
  const saveProgress = async (patch) => {
    progress = { ...progress, ...patch, session: env.sessionId };
    await apex.setMemory(progressPath(me), progress);
  };

  let lastWait = "";
  for (;;) {
    const tasks = await apex.listTasks();
    // A task still active and assigned to us (we were stopped or restored mid-task) comes first.
    let task = tasks.find((candidate) => candidate.status === "active" && candidate.assignee === me);
    if (task) log(`continuing ${task.id}, which is still assigned to me: ${task.title}`);
    else if (tasks.some((candidate) => candidate.status === "pending")) {
      task = await apex.claim();
      if (task) log(`claimed ${task.id}: ${task.title}${task.reopened ? ` (sent back ${task.reopened}×${task.reason ? `: ${task.reason}` : ""})` : ""}`);
    }
    if (task) {
      await work(task, tasks);
      lastWait = "";
      continue;
    }

    // Nothing to claim: finished, or waiting for the plan, for reviews, or for other agents.
    const agents = await apex.queryMemory("/agents/**");
    const summary = progressSummary(tasks, agents[REVIEWED_PATH] ?? {});
    const supervisor = agents[progressPath("supervisor")];
    const supervisorFinished = Boolean(supervisor?.finished && supervisor.session === env.sessionId);
    const planning = supervisorPlanning(supervisor, env.sessionId);
    if (!planning && (summary.allDone || (supervisorFinished && summary.pending === 0 && summary.active === 0))) {
      log(`all ${summary.total} tasks are completed and reviewed: done (${progress.done.length} written, ${progress.redone.length} redone)`);
      await apex.report("done", null, { phase: "done", progress });
      return;
    }
    const why =
      summary.total === 0 || planning
        ? "waiting for the plan"
        : summary.pending + summary.active > 0
          ? `waiting: ${summary.active} task(s) active elsewhere`
          : `waiting for reviews (${summary.accepted}/${summary.total} accepted)`;
    if (why !== lastWait) {
      log(why);
      await apex.report("waiting", null, { phase: "waiting", progress });
      lastWait = why;
    }
    await pace(lifecycle, env.pace);
  }

  /** Writes, commits and completes one task, one step per pace. */
  async function work(task, tasks) {
    const file = fileForTask(task);
    const kind = kindOfTitle(task.title);
    const resuming = progress.current?.id === task.id ? progress.current : undefined;
    const redo = !resuming && (progress.done.includes(task.id) || task.reopened > 0);
    const written = Math.max(progress.revisions?.[task.id] ?? 0, previousRevision(task) ?? 0, redo ? 1 : 0);
    const revision = resuming?.revision ?? written + 1;

    // Step 1: take it on (and, for a task sent back, read what the review found).
    let issues = [];
    if (redo || (resuming && resuming.revision > 1)) {
      const review = await apex.getMemory(issuesPath(task.id));
      issues = Array.isArray(review?.issues) ? review.issues : [];
      if (task.reason && !issues.includes(task.reason)) issues.push(task.reason);
      log(`redoing ${task.id} (revision ${revision}); review found: ${issues.join("; ") || "nothing specific"}`);
    }
    if (!resuming) await saveProgress({ current: { id: task.id, title: task.title, file, revision, stage: "claimed", commit: null } });
    await apex.report("working", task.id, { phase: "working", task: task.id, revision, progress });
    await pace(lifecycle, env.pace);

    let commit = resuming?.stage === "committed" && hasCommit(workspace, resuming.commit) ? resuming.commit : null;
    if (!commit) {
      // Step 2: write the module (inside the workspace only).
      const validated = revision > 1 || issues.some((issue) => /validation/i.test(issue));
      const modules = tasks
        .filter((other) => other.id !== task.id && other.status === "completed" && other.result?.file)
        .map((other) => ({ file: other.result.file, kind: kindOfTitle(other.title) }));
      let content;
      try {
        content = renderModule({ task, revision, validated, modules });
        writeWorkspaceFile(workspace, file, content);
      } catch (error) {
        log(`cannot write ${file}: ${error.message}`);
        await apex.fail(task.id, short(`cannot write ${file}: ${error.message}`, 300));
        await saveProgress({ current: null });
        return;
      }
      log(`wrote ${file} (${content.split("\n").length - 1} lines${validated ? ", with input validation" : ""})`);
      await pace(lifecycle, env.pace);

      // Step 3: commit it.
      const message = revision > 1 ? `${task.title} (revision ${revision}: ${issues.join("; ") || "rework"})` : task.title;
      commit = commitFiles(workspace, [file], message);
      log(`committed ${commit.slice(0, 10)}: ${message}`);
      await saveProgress({ current: { id: task.id, title: task.title, file, revision, stage: "committed", commit } });
      await pace(lifecycle, env.pace);
    } else {
      log(`${task.id} was already committed as ${commit.slice(0, 10)} before the restart`);
    }

    // Step 4: complete the task.
    await apex.done(task.id, { file, commit, revision });
    const done = progress.done.includes(task.id) ? progress.done : [...progress.done, task.id];
    const redone = revision > 1 && !progress.redone.includes(task.id) ? [...progress.redone, task.id] : progress.redone;
    await saveProgress({ current: null, done, redone, revisions: { ...(progress.revisions ?? {}), [task.id]: revision } });
    log(`completed ${task.id}${revision > 1 ? ` (revision ${revision})` : ""}`);
    await apex.report("idle", null, { phase: "idle", progress });
  }

  function previousRevision(task) {
    const value = task.result && typeof task.result === "object" ? Number(task.result.revision) : NaN;
    return Number.isInteger(value) && value > 0 ? value : undefined;
  }
});

function sameSession(progress, sessionId) {
  return Boolean(progress && typeof progress === "object" && Array.isArray(progress.done) && (!sessionId || progress.session === sessionId));
}
