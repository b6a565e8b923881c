import type { Command } from "commander";
import { projectOf } from "./context.js";
import { examples } from "./output.js";

/** `apex task …` and `apex milestone`: the session's task list. */
export function registerTaskCommands(program: Command): void {
  const task = program
    .command("task")
    .description("the session's tasks: add, list, claim, done, fail, reopen")
    .addHelpText(
      "after",
      `
Tasks go pending → active (claimed) → completed | failed; reopen sends one back to pending.
Ids look like t-0001 (t-1 works too; in a branch session, its own t-0001.NAME). Inside an agent, --agent defaults to APEX_AGENT.

Examples:
  apex task add "Write the login form" --assign coder
  apex task claim --json
  apex task done t-0001 --result '{"files": ["login.ts"]}'
  apex task reopen t-0001 --reason "the form accepts empty passwords"`,
    );

  task
    .command("add")
    .description("add a pending task")
    .argument("<title>", "what is to be done")
    .option("-m, --milestone", "completing this task records a milestone")
    .option("--assign <agent>", "only this agent may claim it")
    .option("--json", "print the task {id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)")
    .addHelpText("after", examples('apex task add "Write the login form" --assign coder', 'apex task add "Release candidate" --milestone --json'))
    .action(async (title: string, options: { milestone?: boolean; assign?: string; json?: boolean }, command: Command) => {
      const { addTask } = await import("./session/tasks.js");
      await addTask(projectOf(command), title, options);
    });

  task
    .command("list")
    .description("the session's tasks, oldest first (with no session running: the one that ended last)")
    .option("--status <status>", "only tasks with this status: pending, active, completed or failed (any case)")
    .option("--session <id>", "another session's tasks (an id, a unique prefix, a branch's name, or `last`; `apex session list`)")
    .option("--json", "print [{id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)]")
    .addHelpText("after", examples("apex task list", "apex task list --status pending", "apex task list --session 3f2a --json"))
    .action(async (options: { status?: string; session?: string; json?: boolean }, command: Command) => {
      const { listTasks } = await import("./session/tasks.js");
      await listTasks(projectOf(command), options);
    });

  task
    .command("show")
    .description("one task with its timestamps and result")
    .argument("<id>", "task id, e.g. t-0001")
    .option("--session <id>", "a task of another session (an id, a unique prefix, a branch's name, or `last`)")
    .option("--json", "print the task {id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)")
    .addHelpText("after", examples("apex task show t-0001", "apex task show t-3 --json"))
    .action(async (id: string, options: { session?: string; json?: boolean }, command: Command) => {
      const { showTask } = await import("./session/tasks.js");
      await showTask(projectOf(command), id, Boolean(options.json), options.session);
    });

  task
    .command("claim")
    .description("take the next pending task (own assigned tasks first); exits 4 when there is none")
    .option("--agent <name>", "the claiming agent (default: APEX_AGENT)")
    .option("--json", "print the claimed task {id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)")
    .addHelpText("after", examples("apex task claim --agent coder", "apex task claim --json"))
    .action(async (options: { agent?: string; json?: boolean }, command: Command) => {
      const { claimTask } = await import("./session/tasks.js");
      await claimTask(projectOf(command), options);
    });

  task
    .command("done")
    .description("mark a task completed (an agent: only a task no other agent holds, else exit 4)")
    .argument("<id>", "task id")
    .option("--result <json>", "what came out of it (JSON; other text is kept as a string)")
    .option("--json", "print the task {id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)")
    .addHelpText("after", examples("apex task done t-0001", `apex task done t-0001 --result '{"files": ["login.ts"]}'`))
    .action(async (id: string, options: { result?: string; json?: boolean }, command: Command) => {
      const { completeTask } = await import("./session/tasks.js");
      await completeTask(projectOf(command), id, options);
    });

  task
    .command("fail")
    .description("mark a task failed (fires onError)")
    .argument("<id>", "task id")
    .requiredOption("--reason <text>", "why it failed")
    .option("--json", "print the task {id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)")
    .addHelpText("after", examples('apex task fail t-0002 --reason "the API is down"'))
    .action(async (id: string, options: { reason: string; json?: boolean }, command: Command) => {
      const { failTask } = await import("./session/tasks.js");
      await failTask(projectOf(command), id, options);
    });

  task
    .command("reopen")
    .description("send a task back to pending (e.g. the adversary rejects the work), or give a pending one to another agent")
    .argument("<id>", "task id")
    .option("--reason <text>", "why")
    .option("--assign <agent>", "only this agent may claim it again (a pending task: without --assign, any agent may)")
    .option("--json", "print the task {id, title, status, assignee, milestone, created_at, created_by, claimed_at, completed_at, result, reason, reopened, completed_by?, failed_by?} (completed_by, failed_by: once it was completed or failed, by whom, as created_by: agent:NAME or user:NAME)")
    .addHelpText("after", examples('apex task reopen t-0001 --reason "the form accepts empty passwords" --assign coder', "apex task reopen t-0002 --assign adversary"))
    .action(async (id: string, options: { reason?: string; assign?: string; json?: boolean }, command: Command) => {
      const { reopenTask } = await import("./session/tasks.js");
      await reopenTask(projectOf(command), id, options);
    });

  program
    .command("milestone")
    .description('record a milestone (fires afterMilestone); without TEXT, list them')
    .argument("[text]", 'what was reached, e.g. "Login works end to end"')
    .option("--task <id>", "the task it belongs to (without TEXT: list that task's milestones)")
    .option("--session <id>", "that session (an id, a unique prefix, a branch's name, or `last`): its milestones listed, or, with TEXT, the running session the milestone is recorded in")
    .option("--json", "print the milestone {n, text, at, by, task} (without TEXT: [{n, text, at, by, task}])")
    .addHelpText("after", examples('apex milestone "Login works end to end" --task t-0004', "apex milestone", "apex milestone --task t-4", "apex milestone --session 3f2a --json"))
    .action(async (text: string | undefined, options: { task?: string; session?: string; json?: boolean }, command: Command) => {
      const { milestone } = await import("./session/tasks.js");
      await milestone(projectOf(command), text, options);
    });
}
