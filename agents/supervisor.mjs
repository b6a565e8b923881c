#!/usr/bin/env node
// The reference supervisor agent: splits the session's initial task into subtasks, records
// milestones, and watches the work until every subtask is completed and reviewed.
//
// Memory it keeps: /agents/supervisor/progress = {session, planning, planned, subtasks, finished}
// (`planning` is set before the first subtask is added, so nobody mistakes a half-added plan
// for all the work).
// It reads the adversary's reviews from /agents/adversary/reviewed.
import {
  REVIEWED_PATH,
  initialTaskOf,
  pace,
  planSubtasks,
  progressPath,
  progressSummary,
  runAgent,
} from "./lib.mjs";

const FINAL_MILESTONE = "All subtasks completed and reviewed";

await runAgent("supervisor", async ({ env, log, lifecycle, apex, resumeContext }) => {
  const me = env.agent;
  await apex.report("starting");

  // Progress: memory first; the resume context is the fallback when memory has none.
  let progress = await apex.getMemory(progressPath(me));
  if (!sameSession(progress, env.sessionId) && sameSession(resumeContext?.progress, env.sessionId)) progress = resumeContext.progress;
  if (!sameSession(progress, env.sessionId)) progress = { session: env.sessionId, planned: false, subtasks: [], finished: false };
  /** Records progress in memory, so that a restarted supervisor never plans twice. */
  const saveProgress = (patch) => {
    progress = { ...progress, ...patch, session: env.sessionId };
    return apex.setMemory(progressPath(me), progress);
  };

  // 1. Plan (once per session: a resumed supervisor finds its plan in memory or in the task list).
  let tasks = await apex.listTasks();
  if (progress.planned) {
    log(`plan already made (${progress.subtasks.length} subtasks): not planning again`);
  } else {
    const initialTask = env.initialTask || initialTaskOf(await apex.status());
    if (!initialTask) {
      log('no initial task (`apex start --task "…"`): nothing to plan; watching the tasks added with `apex task add`');
    } else {
      await plan(initialTask);
    }
  }

  // 2. Monitor until every task is completed and accepted by the adversary.
  await monitor();

  async function plan(initialTask) {
    log(`initial task: ${JSON.stringify(initialTask)}`);
    // Announce the planning first: the others must not take a half-added plan for all the work.
    await saveProgress({ planning: true });
    await apex.report("planning", undefined, { phase: "planning", progress });
    await pace(lifecycle, env.pace);
    const subtasks = planSubtasks(initialTask);
    const existing = new Set(tasks.map((task) => task.title));
    for (const subtask of subtasks) {
      if (existing.has(subtask.title)) {
        log(`subtask already present: ${subtask.title}`);
        continue;
      }
      const added = await apex.addTask(subtask.title, { milestone: subtask.milestone });
      log(`added subtask ${added?.id ?? "?"}: ${subtask.title}${subtask.milestone ? " (milestone)" : ""}`);
    }
    await saveProgress({ planned: true, planning: false, subtasks: subtasks.map((subtask) => subtask.title) });
    await apex.milestone(`Plan ready: ${subtasks.length} subtasks`);
    log(`milestone: Plan ready: ${subtasks.length} subtasks`);
  }

  async function monitor() {
    let lastLine = "";
    let quietSteps = 0;
    for (;;) {
      await pace(lifecycle, env.pace);
      tasks = await apex.listTasks();
      const reviewed = (await apex.getMemory(REVIEWED_PATH)) ?? {};
      const summary = progressSummary(tasks, reviewed);
      const line = `${summary.completed}/${summary.total} completed, ${summary.accepted} reviewed, ${summary.active} active, ${summary.pending} pending${summary.failed ? `, ${summary.failed} failed` : ""}`;
      if (summary.allDone) {
        log(`every subtask is completed and reviewed (${line})`);
        await apex.milestone(FINAL_MILESTONE);
        log(`milestone: ${FINAL_MILESTONE}`);
        await saveProgress({ finished: true });
        await apex.report("done", null, { phase: "done", summary, progress });
        log("done");
        return;
      }
      const settled = summary.total > 0 && summary.pending === 0 && summary.active === 0;
      if (settled && summary.failed > 0 && summary.accepted === summary.completed) {
        // Nothing left to do but failed tasks: say so and stop (the user decides what next).
        const text = `Finished with ${summary.failed} failed subtask${summary.failed === 1 ? "" : "s"}`;
        log(`${text} (${line})`);
        await apex.milestone(text);
        await saveProgress({ finished: true });
        await apex.report("done", null, { phase: "done", summary, progress });
        return;
      }
      if (line !== lastLine) log(`monitoring: ${line}`);
      if (line !== lastLine || ++quietSteps >= 5) {
        await apex.report("monitoring", null, { phase: "monitoring", summary, progress });
        lastLine = line;
        quietSteps = 0;
      }
    }
  }
});

function sameSession(progress, sessionId) {
  return Boolean(progress && typeof progress === "object" && (!sessionId || progress.session === sessionId));
}
