import { resolve } from "node:path";
import { checkOutputFile, refuseDash, refuseStoreFile, writeFileAtomic } from "../../cli/output-file.js";
import { openSessionReader } from "../../cli/session.js";
import type { CommandContext, CommandInput } from "../../core/engine.js";
import { ApexError } from "../../core/errors.js";
import { renderMarkdown } from "./markdown.js";
import { buildReport } from "./report.js";
import { shortSessionId } from "../../core/session/names.js";
import { visibleText } from "../../cli/terminal-text.js";
import { boundSessionRef } from "../../cli/session-ref.js";

const FORMATS = ["md", "json"] as const;

/**
 * `apex session report [ID] [--format md|json] [-o FILE [--force]]`: the session, its metrics, tasks,
 * checkpoints, git range and audit trail. Runs in the CLI (FILE is relative to where the user
 * is); it only reads, from the store or, inside an agent, through the supervisor's socket.
 */
export async function runReportCommand(input: CommandInput, context: CommandContext): Promise<number> {
  const asked = String(input.options.format ?? "md");
  // Checked with --json too: a bad value is refused, never silently replaced.
  if (!(FORMATS as readonly string[]).includes(asked)) {
    throw new ApexError("APEX_E_USAGE", `Unknown report format ${JSON.stringify(asked)}.`, { hint: "Use --format md or --format json." });
  }
  // --json is --format json: with --format md, one of them was ignored without a word (the JSON was written).
  if (input.options.json && input.options.format === "md") {
    throw new ApexError("APEX_E_USAGE", "--json and --format md do not go together: --json is the JSON report (--format json).", { hint: "Leave --json out for the Markdown report, or --format md out for the JSON one." });
  }
  const format = input.options.json ? "json" : asked;
  const output = typeof input.options.output === "string" ? input.options.output : undefined;
  const force = Boolean(input.options.force);
  if (force && output === undefined) throw new ApexError("APEX_E_USAGE", "--force replaces the file of -o FILE; give -o FILE, or leave --force out.");
  // Before the report is built: an existing FILE (without --force) or a missing directory writes nothing.
  if (output !== undefined) refuseDash(output, "leave -o out to print the report on standard output.");
  const file = output === undefined ? undefined : resolve(output);
  if (file !== undefined) checkOutputFile(file, { force, what: "the report" });
  if (!context.config) throw new ApexError("APEX_E_INTERNAL", "session report needs the project's config.");
  if (file !== undefined) await refuseStoreFile(file, context.config);
  // No ID, `last` and `current`: the session this command is bound to (inside an agent, its own; in a branch's worktree, the branch).
  const ref = await boundSessionRef(typeof input.args[0] === "string" ? input.args[0] : undefined);
  const reader = await openSessionReader({ configPath: context.config.configPath, projectDir: context.config.projectDir, storeDir: context.config.storeDir });
  let report;
  try {
    report = await buildReport(reader, ref);
  } finally {
    await reader.close();
  }
  const text = format === "json" ? `${JSON.stringify(report, null, 2)}\n` : renderMarkdown(report);
  if (file === undefined) {
    context.print(text.trimEnd());
    return 0;
  }
  // A temporary file beside FILE, renamed over it: a crash leaves the old file or the whole report, never half of one.
  // Without --force it is linked into place instead, which fails if FILE appeared meanwhile.
  writeFileAtomic(file, Buffer.from(text), { overwrite: force });
  // With --json, stdout stays one JSON document: what was written where.
  if (input.options.json) context.printJson({ session_id: report.session.session_id, format, file, bytes: Buffer.byteLength(text) });
  // The session as session list prints it, by name or short id (--json, and the report itself, have the whole id).
  else context.print(`Wrote the ${format} report of session ${typeof report.session.name === "string" && report.session.name ? visibleText(report.session.name) : shortSessionId(String(report.session.session_id))} to ${file}.`);
  return 0;
}
