import type { Command } from "commander";
import { projectOf } from "./context.js";
import { seconds, wholeNumber } from "./option-values.js";
import { durationHelp } from "./durations.js";
import { examples } from "./output.js";

/** What --force of a memory write means (plugins/owned-paths.ts says which paths APEX owns). */
const FORCE = "also write paths APEX owns (/sessions/…, /projects/config): repair by hand, with a warning";

/** `apex memory …`: the hierarchical project memory shared by agents and users. */
export function registerMemoryCommands(program: Command): void {
  const memory = program
    .command("memory")
    .description("read and write the project memory (a path-keyed JSON store, in LMDB or PostgreSQL as `store:` says)")
    .addHelpText(
      "after",
      `
Paths are absolute and '/'-separated: /notes/today, /agents/coder/plan.
Globs: * matches within one segment, ** any depth, ? one character; \\*, \\? and \\\\ match
those characters themselves ('/notes/what\\?'); any other \\ is part of the path.
APEX's own records (/sessions/…, /projects/config) are refused to set, delete and import
(APEX_E_RESERVED_PATH, exit 4) unless --force; /sessions/<id>/metrics-input/… stays writable.

Examples:
  apex memory set /notes/today '{"todo": 3}'
  apex memory show /notes/today
  apex memory query '/notes/**' --json
  apex memory watch '/sessions/current/**' --timeout 60s
  apex memory export '/notes/**' > notes.json && apex memory import notes.json`,
    );

  memory
    .command("show")
    .description("print the value at PATH, and on stderr how many entries are below it (`memory query PATH` lists them); if PATH only has children, the subtree; / shows everything")
    .argument("<path>", "absolute path, e.g. /notes/today (/notes/ is /notes), or / for the whole memory")
    .option("--json", "print {path, value, children_count, children_count_exact} ({path, value: null, children_count, children_count_exact, children: {path: value}} for a subtree; children_count: the entries below PATH, counted up to 1000, children_count_exact false past that, both left out when there are none; a checkpoint's path gives its record)")
    .addHelpText(
      "after",
      examples("apex memory show /notes/today", "apex memory show /sessions/current", "apex memory show /sessions/$ID/checkpoint-latest --json"),
    )
    .action(async (path: string, options: { json?: boolean }, command: Command) => {
      const { showMemory } = await import("./memory-actions.js");
      await showMemory(projectOf(command), path, Boolean(options.json));
    });

  memory
    .command("query")
    .description("list the entries whose path matches GLOB; a plain path (no wildcard) means it and everything below it")
    .argument("<glob>", "e.g. '/notes/*', '/a/**', or /notes (the subtree)")
    .option("--json", "print one JSON object {path: value, …} (with --keys: a JSON array of the paths)")
    .option("--keys", "print paths only")
    .option("--limit <n>", "stop after N entries (N ≥ 1)", wholeNumber("--limit", 1))
    .addHelpText("after", examples("apex memory query '/notes/*'", "apex memory query /notes --keys", "apex memory query '/sessions/*/checkpoint-*' --keys --limit 20"))
    .action(async (glob: string, options: { json?: boolean; keys?: boolean; limit?: number }, command: Command) => {
      const { queryMemory } = await import("./memory-actions.js");
      await queryMemory(projectOf(command), glob, options);
    });

  memory
    .command("set")
    .description("set PATH to a JSON value ('-' reads the value from stdin)")
    .argument("<path>", "absolute path (/notes/ is /notes)")
    .argument("<json>", `a JSON value: '{"a": 1}', '"text"', 42, true, null, or - for stdin`)
    .option("--json", "print {path, revision, warnings?} (warnings: what --force wrote of APEX's paths, said on stderr without --json; a failed write's error JSON has them too)")
    .option("--force", FORCE)
    .addHelpText("after", examples(`apex memory set /notes/today '{"todo": 3}'`, `apex memory set /notes/title '"Sprint 4"'`, "echo 42 | apex memory set /answer -"))
    .action(async (path: string, json: string, options: { json?: boolean; force?: boolean }, command: Command) => {
      const { setMemory } = await import("./memory-actions.js");
      await setMemory(projectOf(command), path, json, Boolean(options.json), Boolean(options.force));
    });

  memory
    .command("delete")
    .description("delete PATH (with --recursive, everything below it too; without it, what is below is kept, and said on stderr)")
    .argument("<path>", "absolute path (/notes/ is /notes: --recursive alone deletes what is below); not a glob: * and ? are characters of it (memory query GLOB --keys lists what a glob matches)")
    .option("-r, --recursive", "also delete every path below PATH")
    .option("--json", "print {path, deleted, revision, children_count, children_count_exact, warnings?} (children_count: the entries kept below PATH, counted up to 1000; left out when none are; warnings: what --force deleted of APEX's paths, said on stderr without --json; a failed delete's error JSON has them too)")
    .option("--force", FORCE)
    .addHelpText("after", examples("apex memory delete /notes/today", "apex memory delete /notes --recursive"))
    .action(async (path: string, options: { recursive?: boolean; json?: boolean; force?: boolean }, command: Command) => {
      const { deleteMemory } = await import("./memory-actions.js");
      await deleteMemory(projectOf(command), path, Boolean(options.recursive), Boolean(options.json), Boolean(options.force));
    });

  memory
    .command("watch")
    .description("print the current value of each path matching GLOB, then each change as it happens, until interrupted")
    .argument("[glob]", "paths to watch: a glob, or a plain path for it and everything below it", "/**")
    .option("--changes-only", "do not print the current values first, only changes")
    .option("--since <rev>", "instead of the current values, replay the changes after revision REV", wholeNumber("--since"))
    .option("--timeout <duration>", durationHelp("stop after this long", "30s, 5m, 1h"), seconds("--timeout"))
    .option("--json", "one JSON object per line: {revision, kind: current|put|delete, path, value, actor, time} (current values have no actor or time; a put whose path changed again since has value null and overwritten: true)")
    .addHelpText("after", examples("apex memory watch '/review/**'", "apex memory watch /sessions/current/metrics --json", "apex memory watch '/notes/**' --changes-only --timeout 5m"))
    .action(async (glob: string, options: { since?: number; timeout?: number; json?: boolean; changesOnly?: boolean }, command: Command) => {
      const { watchMemory } = await import("./memory-actions.js");
      await watchMemory(projectOf(command), glob, options);
    });

  memory
    .command("import")
    .description("import entries from FILE or - (stdin) in one transaction: all or nothing")
    .argument("<file>", "a JSON object of path -> value, or NDJSON lines of {path, value}; - for stdin")
    .option("--json", "print {count, revision, warnings?} (warnings: what --force wrote of APEX's paths, said on stderr without --json; a failed import's error JSON has them too)")
    .option("--force", FORCE)
    .addHelpText("after", examples("apex memory import memory.json", "apex memory export /notes | apex memory import -"))
    .action(async (file: string, options: { json?: boolean; force?: boolean }, command: Command) => {
      const { importMemory } = await import("./memory-actions.js");
      await importMemory(projectOf(command), file, Boolean(options.json), Boolean(options.force));
    });

  memory
    .command("export")
    .description("print the entries matching GLOB as one JSON object of path -> value (import reads it back); a plain path means it and everything below it")
    .argument("[glob]", "which paths: a glob, or a plain path for its subtree", "/**")
    .option("--json", "the output is always JSON: {path: value, …} (the option is accepted for uniformity)")
    .addHelpText("after", examples("apex memory export > memory.json", "apex memory export /projects/mem", "apex memory export '/notes/*' --json"))
    .action(async (glob: string, _options: unknown, command: Command) => {
      const { exportMemory } = await import("./memory-actions.js");
      await exportMemory(projectOf(command), glob);
    });
}

