import type { Command } from "commander";
import { projectOf } from "./context.js";
import { wholeNumber } from "./option-values.js";

const REF_HELP = "a checkpoint: its id, a unique id prefix (4+ characters), checkpoint-007, latest, or <session>/checkpoint-007";

/**
 * `apex checkpoint …` (create, list, show, diff, pin, unpin, delete) and the integrity commands
 * of `apex session …` (validate, repair, reconstruct). Actions import their code lazily; `list`
 * loads only the store and the checkpoint catalog (it is benchmarked against `node -e 0`).
 */
export function registerCheckpointCommands(program: Command): void {
  const checkpoint = program
    .command("checkpoint")
    .description("the session's checkpoints: create, list, show, diff, pin, unpin, delete")
    .addHelpText(
      "after",
      `
A checkpoint holds the project memory, the session's tasks and agent states (with the context
each agent reported) and plugin data such as the git state. \`apex start --continue <checkpoint>\`
restores one; \`apex start --force-recovery <checkpoint>\` restores what still verifies of a
damaged one. Without --session, a checkpoint reference is looked up in the current session (or
the one that ended last).

Examples:
  apex checkpoint create "Before major refactoring" --pin
  apex checkpoint list --limit 50
  apex checkpoint show latest
  apex checkpoint diff checkpoint-003 latest --json`,
    );

  checkpoint
    .command("create")
    .description("save a checkpoint of the current session now (trigger: manual)")
    .argument("[description]", "what this checkpoint is, e.g. \"Before major refactoring\"")
    .option("--pin", "keep it whatever the retention policy says")
    .option("--json", "print the checkpoint as JSON")
    .action(async (description: string | undefined, options: { pin?: boolean; json?: boolean }, command: Command) => {
      const { createCheckpointCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await createCheckpointCommand(projectOf(command), description, options);
    });

  checkpoint
    .command("list")
    .description("a session's checkpoints, newest first, one page at a time")
    .option("--session <id>", "another session (default: the current one, else the one that ended last)")
    .option("-n, --limit <n>", "checkpoints per page (default 20)", wholeNumber("--limit", 1))
    .option("--offset <n>", "skip this many first", wholeNumber("--offset"))
    .option("--oldest", "oldest first")
    .option("--json", "print the page as JSON")
    .action(async (options: { session?: string; limit?: number; offset?: number; oldest?: boolean; json?: boolean }, command: Command) => {
      const { listCheckpointsCommand } = await import("../../plugins/checkpoint/plugin-list.js");
      await listCheckpointsCommand(projectOf(command), options);
    });

  checkpoint
    .command("show")
    .description("one checkpoint: its manifest, tasks and agent states")
    .argument("<checkpoint>", REF_HELP)
    .option("--session <id>", "the session for checkpoint-007 and latest")
    .option("--json", "print the checkpoint as JSON")
    .action(async (ref: string, options: { session?: string; json?: boolean }, command: Command) => {
      const { showCheckpointCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await showCheckpointCommand(projectOf(command), ref, options);
    });

  checkpoint
    .command("diff")
    .description("what changed from checkpoint A to checkpoint B: memory paths added, removed and changed; tasks and agents")
    .argument("<a>", REF_HELP)
    .argument("<b>", "the other checkpoint")
    .option("--session <id>", "the session for checkpoint-007 and latest")
    .option("--json", "print the difference as JSON")
    .action(async (a: string, b: string, options: { session?: string; json?: boolean }, command: Command) => {
      const { diffCheckpointsCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await diffCheckpointsCommand(projectOf(command), a, b, options);
    });

  for (const [name, pinned] of [
    ["pin", true],
    ["unpin", false],
  ] as const) {
    checkpoint
      .command(name)
      .description(pinned ? "keep a checkpoint whatever the retention policy says" : "let retention delete a checkpoint again")
      .argument("<checkpoint>", REF_HELP)
      .option("--session <id>", "the session for checkpoint-007 and latest")
      .option("--json", "print the checkpoint as JSON")
      .action(async (ref: string, options: { session?: string; json?: boolean }, command: Command) => {
        const { pinCheckpointCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
        await pinCheckpointCommand(projectOf(command), ref, pinned, options);
      });
  }

  checkpoint
    .command("delete")
    .description("delete a checkpoint (its objects go with the next sweep); pinned ones need --force")
    .argument("<checkpoint>", REF_HELP)
    .option("-f, --force", "delete it even if it is pinned")
    .option("--session <id>", "the session for checkpoint-007 and latest")
    .option("--json", "print what was deleted as JSON")
    .action(async (ref: string, options: { session?: string; force?: boolean; json?: boolean }, command: Command) => {
      const { deleteCheckpointCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await deleteCheckpointCommand(projectOf(command), ref, options);
    });

  // The integrity commands live in the core `session` group (found or created here).
  const session =
    program.commands.find((command) => command.name() === "session") ?? program.command("session").description("the project's sessions");

  session
    .command("validate")
    .description("re-hash every checkpoint, tree node and value and check the records that must agree (exit 0 valid, 1 not)")
    .argument("[id]", "only this session (id or unique prefix); default: the whole store")
    .option("--json", "print the report as JSON")
    .action(async (id: string | undefined, options: { json?: boolean }, command: Command) => {
      const { validateCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await validateCommand(projectOf(command), id, options);
    });

  session
    .command("repair")
    .description("fix what validate finds: heal objects from the live state, drop what cannot be fixed (never a checkpoint that verifies)")
    .argument("[id]", "the session it is about (repair covers the whole store: objects are shared between sessions)")
    .option("--dry-run", "say what would be done, change nothing (allowed while the session runs)")
    .option("--json", "print the actions and the reports as JSON")
    .addHelpText(
      "after",
      `
Repair rewrites objects, checkpoint records and manifests that a running supervisor uses: a
running session is checkpointed and stopped first, and continued from its live state once the
repair is done (the output says so). Exit code: 0 when the store is valid afterwards
(--dry-run: when the plan could be made), 1 when problems remain.`,
    )
    .action(async (id: string | undefined, options: { dryRun?: boolean; json?: boolean }, command: Command) => {
      const { repairCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await repairCommand(projectOf(command), id, options);
    });

  session
    .command("reconstruct")
    .description("build a new session from whatever of a session still verifies, naming what is missing")
    .argument("<id>", "the damaged session (id or unique prefix)")
    .option("--as <id>", "id of the new session (default <id>-r1, -r2, …)")
    .option("--json", "print the report as JSON")
    .addHelpText(
      "after",
      `
The new session is kept with the ended ones, as stopped: \`apex session list\` shows it and it
blocks nothing; \`apex start --continue <new id>\` brings it back.`,
    )
    .action(async (id: string, options: { as?: string; json?: boolean }, command: Command) => {
      const { reconstructCommand } = await import("../../plugins/checkpoint/plugin-cli.js");
      await reconstructCommand(projectOf(command), id, options);
    });
}
