#!/usr/bin/env node
// The reference adversary agent: reviews every completed task (`node --check` on the file
// its result names, plus a look for missing input validation or assertions), records what
// it found, and sends work back: always when the file is missing or does not parse, and,
// once per session, the first task whose review found an issue ("missing input validation").
//
// Memory it keeps:
//   /agents/adversary/reviewed   {<task id>: {commit, verdict: "accepted" | "sent-back", issues, at}}
//   /agents/adversary/progress   {session, sentBack: <task id> | null}
//   /review/issues/<task id>     {task, title, file, commit, check, issues, verdict, at}
//   /review/stats                {session, reviews, issues, sent_back}
//   /review/sent_back            {session, task, title, reason, at}
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import {
  REVIEWED_PATH,
  REVIEW_STATS_PATH,
  SENT_BACK_PATH,
  commitOf,
  findIssues,
  issuesPath,
  kindOfTitle,
  pace,
  progressPath,
  progressSummary,
  resolveInWorkspace,
  runAgent,
  short,
  supervisorPlanning,
  workspaceDirOf,
} from "./lib.mjs";

/** A task whose file is broken is sent back at most this many times. */
const MAX_SEND_BACKS = 3;

await runAgent("adversary", async ({ env, log, lifecycle, apex, resumeContext }) => {
  const me = env.agent;
  const workspace = workspaceDirOf();
  await apex.report("starting");

  const saved = await apex.queryMemory("/agents/**");
  let reviewed = saved[REVIEWED_PATH] ?? resumeContext?.reviewed ?? {};
  let progress = saved[progressPath(me)];
  if (!progress || progress.session !== env.sessionId) {
    progress = resumeContext?.progress?.session === env.sessionId ? resumeContext.progress : { session: env.sessionId, sentBack: null };
  }
  let stats = (await apex.getMemory(REVIEW_STATS_PATH)) ?? null;
  if (!stats || stats.session !== env.sessionId) stats = { session: env.sessionId, reviews: 0, issues: 0, sent_back: 0 };
  if (Object.keys(reviewed).length > 0) log(`${Object.keys(reviewed).length} review(s) already on record`);

  let lastWait = "";
  for (;;) {
    const tasks = await apex.listTasks();
    const candidate = tasks.find((task) => task.status === "completed" && needsReview(task));
    if (candidate) {
      await review(candidate);
      lastWait = "";
      continue;
    }
    const summary = progressSummary(tasks, reviewed);
    const settled = summary.total > 0 && summary.pending === 0 && summary.active === 0;
    if ((summary.allDone || (settled && summary.accepted === summary.completed)) && !(await planInProgress())) {
      log(`nothing left to review: ${summary.accepted}/${summary.total} accepted, ${stats.issues} issue(s) found, ${stats.sent_back} sent back`);
      await apex.report("done", null, { phase: "done", reviewed, progress });
      return;
    }
    const why = summary.total === 0 ? "waiting for tasks" : `waiting for completed work (${summary.completed}/${summary.total} completed)`;
    if (why !== lastWait) {
      log(why);
      await apex.report("waiting", null, { phase: "waiting", reviewed, progress });
      lastWait = why;
    }
    await pace(lifecycle, env.pace);
  }

  /** True while the supervisor is still adding subtasks (checked only when about to finish). */
  async function planInProgress() {
    return supervisorPlanning(await apex.getMemory(progressPath("supervisor")), env.sessionId);
  }

  function needsReview(task) {
    const review = reviewed[task.id];
    return !(review && review.commit === commitOf(task) && review.verdict === "accepted");
  }

  async function review(task) {
    const commit = commitOf(task);
    const file = task.result && typeof task.result === "object" ? task.result.file : undefined;
    const previous = reviewed[task.id];
    if (previous && previous.commit === commit && previous.verdict === "sent-back") {
      // Recorded as sent back, but the task is still completed: the reopen did not happen.
      log(`${task.id} was judged but not sent back yet: sending it back now`);
      await sendBack(task, previous.reason ?? previous.issues?.[0] ?? "review found issues");
      await pace(lifecycle, env.pace);
      return;
    }

    // Step 1: take it on.
    log(`reviewing ${task.id}: ${task.title} (${file ?? "no file"} @ ${commit ? commit.slice(0, 10) : "no commit"})`);
    await apex.report("reviewing", task.id, { phase: "reviewing", task: task.id, reviewed, progress });
    await pace(lifecycle, env.pace);

    // Step 2: check it.
    const { check, issues, blocking } = inspect(task, file);
    let verdict = "accepted";
    let reason = null;
    if (blocking && task.reopened < MAX_SEND_BACKS) {
      verdict = "sent-back";
      reason = blocking;
    } else if (blocking) {
      log(`${task.id} was sent back ${task.reopened} times already: accepting it with its issues`);
    } else if (issues.length > 0 && !progress.sentBack) {
      verdict = "sent-back";
      reason = issues[0];
    }
    const at = new Date().toISOString();
    stats = { ...stats, reviews: stats.reviews + 1, issues: stats.issues + issues.length, sent_back: stats.sent_back + (verdict === "sent-back" ? 1 : 0) };
    reviewed = { ...reviewed, [task.id]: { commit, verdict, issues: issues.length, reason, at } };
    const entries = {
      [issuesPath(task.id)]: { task: task.id, title: task.title, file: file ?? null, commit, check, issues, verdict, reason, at },
      [REVIEWED_PATH]: reviewed,
      [REVIEW_STATS_PATH]: stats,
    };
    if (verdict === "sent-back" && reason !== blocking) {
      progress = { ...progress, session: env.sessionId, sentBack: task.id };
      entries[progressPath(me)] = progress;
      entries[SENT_BACK_PATH] = { session: env.sessionId, task: task.id, title: task.title, reason, at };
    }
    await apex.setMemoryMany(entries);
    log(
      `${task.id}: node --check ${check}; ${issues.length ? `issues: ${issues.join("; ")}` : "no issues"} → ${verdict === "accepted" ? "accepted" : `sending back (${reason})`}`,
    );
    if (verdict === "sent-back") await sendBack(task, reason);
    await pace(lifecycle, env.pace);
  }

  async function sendBack(task, reason) {
    if (await apex.reopen(task.id, reason)) log(`sent ${task.id} back to the coder: ${reason}`);
    else log(`could not send ${task.id} back (it changed meanwhile)`);
  }

  /** Runs the checks on the task's file: {check: "ok" | "failed" | "skipped", issues, blocking}. */
  function inspect(task, file) {
    if (typeof file !== "string" || file === "") {
      return { check: "skipped", issues: ["the task result names no file"], blocking: "the task result names no file" };
    }
    let path;
    try {
      path = resolveInWorkspace(workspace, file);
    } catch (error) {
      return { check: "skipped", issues: [error.message], blocking: "the file is outside the workspace" };
    }
    if (!existsSync(path)) return { check: "skipped", issues: [`${file} does not exist`], blocking: `${file} does not exist` };
    const result = spawnSync(process.execPath, ["--check", path], { encoding: "utf8", timeout: 20_000 });
    if (result.status !== 0) {
      const message = short((result.stderr || result.error?.message || "syntax error").trim().split("\n").slice(0, 5).join(" | "), 300);
      return { check: "failed", issues: [`node --check failed: ${message}`], blocking: "the file does not parse (node --check failed)" };
    }
    const source = readFileSync(path, "utf8");
    return { check: "ok", issues: findIssues(kindOfTitle(task.title), source), blocking: null };
  }
});
