import type { Command } from "commander";
import { ApexError } from "../../core/errors.js";
import { projectOf } from "../../cli/context.js";
import { examples } from "../../cli/output.js";
import { checkpointArgument, sessionArgument } from "../../cli/session-arguments.js";

/** `apex session branch|merge|tree`: parallel tracks from checkpoints, merged back (plugins/checkpoint/branch-cli.ts). */
export function registerSessionBranchCommands(program: Command): void {
  const session =
    program.commands.find((command) => command.name() === "session") ?? program.command("session").description("the project's sessions");

  session
    .command("branch")
    .description("a new session whose state is a checkpoint (memory, tasks, agent contexts, git commit), named NAME; copies nothing")
    .addArgument(checkpointArgument("<checkpoint>", "a checkpoint: its id, a unique id prefix, checkpoint-007, latest, or <session>/checkpoint-007"))
    .argument("<name>", "the new session's name: unique whatever its case, 1 to 63 letters, digits, '.', '_' or '-' starting with a letter, not only a-f, digits and '-' (it would read as an id); usable wherever a session id is")
    .option("--worktree [dir]", "also create a git worktree on a new branch apex/NAME at the checkpoint's commit, where the session's agents run (default ../<repository>-NAME, beside the repository)")
    .option("--json", "print {session_id, name, parent_checkpoint: {id, session_id, sequence, name}, checkpoint: {id, name, sequence}, worktree: {path, branch, commit} | null, langgraph: {carried, missing} (only when the checkpoint holds LangGraph threads)}")
    .addHelpText(
      "after",
      `
The branch is kept with the stopped sessions until \`apex start --continue NAME\` runs it. With
--worktree it runs in its worktree, beside the project's session; without, it shares the
project's tree, so the session running there is checkpointed and stopped first. DIR must be new
or empty. Exit codes: 2 a bad NAME or DIR, 3 no such checkpoint (or, with --worktree, one with no
git commit), 4 NAME (in any case), the git branch apex/NAME or DIR taken.
${examples('apex session branch 3f2a9c1e "experimental-feature"', "apex session branch latest try-b --worktree", "apex start --continue experimental-feature")}`,
    )
    .action(async (checkpoint: string, name: string, options: { worktree?: string | boolean; json?: boolean }, command: Command) => {
      const { branchCommand } = await import("./branch-cli.js");
      await branchCommand(projectOf(command), checkpoint, name, options);
    });

  session
    .command("merge")
    .description("merge SRC's latest checkpoint into DST (three-way, against their nearest common ancestor); the result is a merge checkpoint on DST")
    .argument("<src>", "the session merged in (id, name or unique id prefix)")
    .addArgument(sessionArgument("[dst]", "the session merged into (id, name, unique id prefix, or current); left out, the one --session names: one of the two is needed"))
    .option("--dry-run", "print every change and conflict; write nothing (exit 4 when the merge would be refused; with --git, also when git would conflict)")
    .option("--strategy <strategy>", "conflicts (a path changed on both sides differently): fail (refuse, exit 4), ours (keep DST's) or theirs (take SRC's)", "fail")
    .option("--git", "also merge SRC's git branch (apex/NAME) into DST's working tree (beforeGit fires first; a conflict aborts the git merge and names the files)")
    .option("--json", "print {source: {session_id, session_name, checkpoint, changed_since_checkpoint}, destination, base, other_bases, relation, strategy, dry_run, applied, refused, memory: {changes, conflicts, same, kept_ours}, tasks: {…}, checkpoint, git, writer_pid, hashed: {memory, tasks, agents} (a merge into live memory: the records of DST's live state it hashed), langgraph: {taken, not_taken, deleted} (only when LangGraph threads are merged)}")
    .addHelpText(
      "after",
      `
A path changed on one side takes that side; changed on both sides to different values is a
conflict {path, base, ours, theirs, absent} (between two objects the text names each key they
differ at); deletions count as changes; the same change on both sides is not a conflict. Tasks
are a union by id: a merge deletes no task (one SRC deleted stays in DST); a completed task
stays completed. A subtree one side deleted meets a path below it the other changed as a
conflict, one it added is kept. When DST holds the live memory (it runs,
or ran last) the changes are applied to it with the merge checkpoint in one transaction,
through its supervisor while it runs (one still starting is waited for). Only what SRC
checkpointed is merged: checkpoint it first (\`apex --session SRC checkpoint create\`) to take
its latest writes. DST left out is the session --session names (\`apex session merge SRC
--session DST\`); with neither, the merge is refused (exit 2).
Exit codes: 2 usage, 3 a session, checkpoint or git branch not found, 4 refused (conflicts).
${examples("apex session merge experimental-feature current --dry-run", "apex session merge 7c1d 3f2a --strategy theirs", "apex session merge try-b current --git --json")}`,
    )
    .action(async (src: string, dst: string | undefined, options: { dryRun?: boolean; strategy?: string; git?: boolean; json?: boolean }, command: Command) => {
      // [dst]: --session fills it in when given (cli/session-arguments.ts); neither is a usage error, before anything is read.
      if (dst === undefined) {
        throw new ApexError("APEX_E_USAGE", "Name the session to merge into: DST after SRC, or --session DST.", {
          hint: "apex session merge SRC DST, or apex session merge SRC --session DST",
        });
      }
      const { mergeCommand } = await import("./branch-cli.js");
      await mergeCommand(projectOf(command), src, dst, options);
    });

  session
    .command("tree")
    .description("sessions with their branch and merge points, drawn like git log --graph --oneline")
    .option("--json", "print {sessions: [{session_id, name, status, created_at, parent, checkpoints, latest}], nodes: [{id, session_id, name, sequence, trigger, description, created_at, parents, folded, head, archived, session_name, archive}]} (archived, session_name: a checkpoint merged in whose session is not in this store, as the merge recorded it; archive: {file, unarchive}, its session's archive in the backup directory, or null when there is none, left out through --remote)")
    .addHelpText(
      "after",
      `
One line per checkpoint that shapes the graph: each session's first and latest, the checkpoints
sessions branched from, merge checkpoints and the checkpoints they merged in, newest first. A
line reads: id, [session name or id], checkpoint, trigger, (session: status) on its latest, the
description, and (+N checkpoints) for those of its session folded between it and its previous line.
A checkpoint merged in whose session is not in this store reads "archived", with the unarchive
that brings it back, when the backup directory holds its archive, else "absent", saying so.
A blank line separates unrelated histories (a session started anew, not branched from another).
${examples("apex session tree", "apex session tree --json")}`,
    )
    .action(async (options: { json?: boolean }, command: Command) => {
      const { treeCommand } = await import("./branch-cli.js");
      await treeCommand(projectOf(command), options);
    });
}
