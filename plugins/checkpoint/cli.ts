import type { Command } from "commander";
import { checkpointArgument, sessionArgument } from "../../cli/session-arguments.js";
import { projectOf } from "../../cli/context.js";
import { wholeNumber } from "../../cli/option-values.js";
import { examples } from "../../cli/output.js";

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
  apex checkpoint create -m "Before major refactoring" --pin
  apex checkpoint list --limit 50
  apex checkpoint show latest
  apex checkpoint diff checkpoint-003 latest --json`,
    );

  checkpoint
    .command("create")
    .description("save a checkpoint of the current session now (trigger: manual)")
    .argument("[description]", "what this checkpoint is, e.g. \"Before major refactoring\"")
    .option("-m, --message <text>", "the description, as git commit -m takes it (instead of the argument)")
    .option("--pin", "keep it whatever the retention policy says")
    .option("--json", "print {id, name, session_id, session_name, sequence, parent, created_at, trigger, description, pinned, revision, memory_keys, task_count, agent_count, memory_root, tasks_root, agents_root, manifest_hash, agents: [names], agent_contexts}")
    .addHelpText("after", examples('apex checkpoint create "Before major refactoring"', 'apex checkpoint create -m "Before major refactoring"', 'apex checkpoint create "Release 1.0" --pin --json'))
    .action(async (description: string | undefined, options: { message?: string; pin?: boolean; json?: boolean }, command: Command) => {
      if (description !== undefined && options.message !== undefined) {
        const { ApexError } = await import("../../core/errors.js");
        throw new ApexError("APEX_E_USAGE", `Give the description once: as the argument (${JSON.stringify(description)}) or with -m (${JSON.stringify(options.message)}), not both.`, { hint: "Nothing was saved." });
      }
      const { againAfterStop, createCheckpointCommand } = await import("./plugin-cli.js");
      await againAfterStop(() => createCheckpointCommand(projectOf(command), description ?? options.message, options), Boolean(options.json));
    });

  checkpoint
    .command("list")
    .description("a session's checkpoints, newest first, one page at a time, with what keeps each under the retention policy (KEPT BY)")
    .option("--session <id>", "another session (default: the current one, else the one that ended last)")
    .option("-n, --limit <n>", "checkpoints per page (default 20)", wholeNumber("--limit", 1))
    .option("--offset <n>", "skip this many first", wholeNumber("--offset"))
    .option("--oldest", "oldest first")
    .option("--json", "print {session_id, session_name, total, taken, offset, limit, order, items: [{id, name, sequence, created_at, trigger, description, pinned, parent, revision, memory_keys, task_count, agent_count, kept_by}]}")
    .addHelpText("after", examples("apex checkpoint list", "apex checkpoint list --limit 50 --offset 50", "apex checkpoint list --session 3f2a --json"))
    .action(async (options: { session?: string; limit?: number; offset?: number; oldest?: boolean; json?: boolean }, command: Command) => {
      const { listCheckpointsCommand } = await import("./plugin-list.js");
      const location = projectOf(command);
      await listCheckpointsCommand(location, options, async () => (await import("./kept-by.js")).retentionReasons(location));
    });

  checkpoint
    .command("show")
    .description("one checkpoint: its manifest, tasks, agent states and memory keys")
    .addArgument(checkpointArgument("<checkpoint>", REF_HELP))
    .option("--session <id>", "the session for checkpoint-007 and latest")
    .option("--keys-limit <n>", "list at most N memory keys (default 100; 0: only the count)", wholeNumber("--keys-limit"))
    .option("--keys-offset <n>", "skip the first N memory keys (the next page)", wholeNumber("--keys-offset"))
    .option(
      "--json",
      "print {checkpoint_id, session_id, session_name, name, sequence, created_at, description, trigger, pinned, parent, merge_parent, agent_states: {AGENT: {status, current_task, …, context}}, memory_keys, memory_keys_count, memory_keys_next_offset, git_state: {branch, commit, dirty}, tasks, manifest}",
    )
    .addHelpText("after", examples("apex checkpoint show latest", "apex checkpoint show checkpoint-003 --json", "apex checkpoint show latest --keys-offset 100 --json"))
    .action(async (ref: string, options: { session?: string; json?: boolean; keysLimit?: number; keysOffset?: number }, command: Command) => {
      const { showCheckpointCommand } = await import("./plugin-cli.js");
      await showCheckpointCommand(projectOf(command), ref, options);
    });

  checkpoint
    .command("diff")
    .description("what changed from checkpoint FROM to checkpoint TO: memory paths added, removed and changed; tasks and agents")
    .addArgument(checkpointArgument("<from>", REF_HELP))
    .addArgument(checkpointArgument("<to>", "the checkpoint compared with FROM, given the same ways"))
    .option("--session <id>", "the session for checkpoint-007 and latest")
    .option("--json", "print {from, to, memory: {added, removed, changed}, tasks: {added, removed, changed: [{id, before, after}]}, agents: {…}} (from/to: {id, name, session_id, sequence, session_name, and as before sessionId, the same as session_id})")
    .addHelpText("after", examples("apex checkpoint diff checkpoint-003 latest", "apex checkpoint diff 1ae4 7c2b --json"))
    .action(async (from: string, to: string, options: { session?: string; json?: boolean }, command: Command) => {
      const { diffCheckpointsCommand } = await import("./plugin-cli.js");
      await diffCheckpointsCommand(projectOf(command), from, to, options);
    });

  for (const [name, pinned] of [
    ["pin", true],
    ["unpin", false],
  ] as const) {
    checkpoint
      .command(name)
      .description(pinned ? "keep a checkpoint whatever the retention policy says" : "let retention delete a checkpoint again")
      .addArgument(checkpointArgument("<checkpoint>", REF_HELP))
      .option("--session <id>", "the session for checkpoint-007 and latest")
      .option("--json", "print the checkpoint's summary {id, name, session_id, session_name, sequence, parent, created_at, trigger, description, pinned, was_pinned (before this command), revision, memory_keys, task_count, agent_count, memory_root, tasks_root, agents_root, manifest_hash}")
      .addHelpText("after", examples(`apex checkpoint ${name} checkpoint-003`, `apex checkpoint ${name} latest --json`))
      .action(async (ref: string, options: { session?: string; json?: boolean }, command: Command) => {
        const { againAfterStop, pinCheckpointCommand } = await import("./plugin-cli.js");
        await againAfterStop(() => pinCheckpointCommand(projectOf(command), ref, pinned, options), Boolean(options.json));
      });
  }

  checkpoint
    .command("delete")
    .description("delete a checkpoint (its objects go with the next sweep); pinned ones, and those a branch or merge needs, need --force")
    .addArgument(checkpointArgument("<checkpoint>", REF_HELP))
    .option("-f, --force", "delete it even if it is pinned, in use, or a branch starts from it or a merge needs it")
    .option("--session <id>", "the session for checkpoint-007 and latest")
    .option("--json", "print {id, name, session_id, sequence, session_name} of the deleted checkpoint (and sessionId, the same id, as before)")
    .addHelpText(
      "after",
      `
Refused (exit 4, APEX_E_CONFLICT, nothing deleted) without --force: a pinned checkpoint, one a
restore is reading, one a branch session starts from (\`apex session branch\`), a merge
checkpoint and the checkpoint a merge took in (the next merge between those sessions finds its
base there), and a LangGraph step a thread rebuilds its delta channels from (a MessagesDeltaValue's
history). Retention keeps these too.
${examples("apex checkpoint delete checkpoint-002", "apex checkpoint delete 1ae4 --force --json")}`,
    )
    .action(async (ref: string, options: { session?: string; force?: boolean; json?: boolean }, command: Command) => {
      const { againAfterStop, deleteCheckpointCommand } = await import("./plugin-cli.js");
      await againAfterStop(() => deleteCheckpointCommand(projectOf(command), ref, options), Boolean(options.json));
    });

  // The integrity commands live in the core `session` group (found or created here).
  const session =
    program.commands.find((command) => command.name() === "session") ?? program.command("session").description("the project's sessions");

  session
    .command("validate")
    .description("re-hash every checkpoint, tree node and value and check the records that must agree (exit 0 valid, 1 not)")
    .addArgument(sessionArgument("[id]", "only this session (id, unique prefix or a branch's name); default: the one --session names, else the whole store"))
    .option("--json", "print {session_id, ok, records, checkpoints: {total, verified, damaged: [{session_id, session_name, sequence, name, id, reasons}], and of a truncated store file lost: [{session_id, sequence, name, id, recorded}], lost_after: [{session_id, after_sequence, after}]}, objects: {scanned, values, trees, unreferenced_values, unreferenced_trees, packs, pack_bytes, garbage_bytes, and as before unreferencedValues, unreferencedTrees, packBytes, garbageBytes}, problems: [{severity, code, message, checkpoint?, checkpoint_id?, path?}]}")
    .addHelpText("after", examples("apex session validate", "apex session validate 3f2a --json"))
    .action(async (id: string | undefined, options: { json?: boolean }, command: Command) => {
      const { validateCommand } = await import("./plugin-cli.js");
      await validateCommand(projectOf(command), id, options);
    });

  session
    .command("repair")
    .description("fix what validate finds: heal objects from the live state, drop what cannot be fixed (never a checkpoint that verifies)")
    .addArgument(sessionArgument("[id]", "the session it is about (repair covers the whole store: objects are shared between sessions)"))
    .option("--dry-run", "say what would be done, change nothing (allowed while the session runs)")
    .option("--json", "print {session_id, dry_run, actions: [{action, target, reason}], checkpoints: {removed, kept}, before, after} (before/after: validate's report)")
    .addHelpText(
      "after",
      `
Repair rewrites objects, checkpoint records and manifests that a running supervisor uses: a
running session is checkpointed and stopped first, and continued from its live state once the
repair is done (the output says so). Exit code: 0 when the store is valid afterwards
(--dry-run: when the plan could be made), 1 when problems remain.
${examples("apex session repair --dry-run", "apex session repair 3f2a --json")}`,
    )
    .action(async (id: string | undefined, options: { dryRun?: boolean; json?: boolean }, command: Command) => {
      const { repairCommand } = await import("./plugin-cli.js");
      await repairCommand(projectOf(command), id, options);
    });

  session
    .command("reconstruct")
    .description("build a new session from whatever of a session still verifies, naming what is missing")
    .addArgument(sessionArgument("<id>", "the damaged session (id, unique prefix or a branch's name)"))
    .option("--as <id>", "id of the new session (default <id>-r1, -r2, …)")
    .option("--json", "print {session_id, from: {session_id, name, checkpoint: {session_id, sequence, id, name}}, tasks: [{id, source}], agents: [{id, source}], memory: {recovered, lost}, skipped_checkpoints, missing, checkpoint, current} (and sessionId, skippedCheckpoints and from's sessionId and from.checkpoint's, the same as session_id and skipped_checkpoints, as before)")
    .addHelpText(
      "after",
      `
The new session is kept with the ended ones, as stopped: \`apex session list\` shows it and it
blocks nothing; \`apex start --continue <new id>\` brings it back.
${examples("apex session reconstruct 3f2a9c1e", "apex session reconstruct 3f2a --as rebuilt --json")}`,
    )
    .action(async (id: string, options: { as?: string; json?: boolean }, command: Command) => {
      const { againAfterStop, reconstructCommand } = await import("./plugin-cli.js");
      await againAfterStop(() => reconstructCommand(projectOf(command), id, options), Boolean(options.json));
    });
}
