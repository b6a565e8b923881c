import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { isDirectory } from "../../core/config/locate.js";
import { worktreeOfProject } from "../../core/session/runtime.js";
import type { CommandContext, CommandInput } from "../../core/engine.js";
import { ApexError, isApexError } from "../../core/errors.js";
import { lmdbDataDir, type Store } from "../../core/store/store.js";
import { describeStore, openStore, resolveStoreSpec } from "../../core/store/open.js";
import { formatDuration, parseDurationOption } from "../../cli/durations.js";
import { formatBytes, plural, visibleText } from "../../cli/output.js";
import { readInputBytes } from "../../cli/input-text.js";
import { writeControl } from "../../cli/terminal-text.js";
import { shortSessionId } from "../../core/session/names.js";
import { findSession, resolveSessionId } from "../../core/session/sessions.js";
import { Progress } from "../compression/progress.js";
import { archiveSessions, cutoffOf, sameSession, type ArchiveResult } from "./archive.js";
import type { SweepResult } from "../checkpoint/checkpoints.js";
import { backupStore, defaultBackupDirectory, type BackupResult } from "./backup.js";
import { BUNDLE_EXTENSION, encodeBundle, peekBundle, readBundle } from "./bundle.js";
import { archivedBundle, archivedIds } from "./archived.js";
import { collectSession } from "./collect.js";
import { bundleFileName, readBundleFile } from "./files.js";
import { checkOutputFile, isInside, refuseDash, refuseStoreFile, writeFileAtomic } from "../../cli/output-file.js";
import { realPath } from "../file-system.js";
import { alreadyInstalled, installBundle, keepsGrants, sessionName, verifyBundleFile, type InstallResult } from "./install.js";
import { backupDirectory, readLimits, type ArchiveSettings } from "./options.js";

/**
 * The archive plugin's commands. Commands that take a file path run in the CLI first, where
 * the path means what the user meant (relative to their working directory), and hand the
 * absolute path to the store's writer (the supervisor, when one runs) by invoking
 * themselves again with AT_WRITER set; an option users cannot give, as it is not declared.
 */
const AT_WRITER = "apexAtWriter";

// ---------------------------------------------------------------------------------------------
// apex session archive [ID] --older-than D

export async function runArchive(input: CommandInput, context: CommandContext, settings: ArchiveSettings): Promise<number> {
  const json = Boolean(input.options.json);
  const sessionId = argument(input);
  const olderThanMs = input.options.olderThan !== undefined ? parseDurationOption(input.options.olderThan, "--older-than") : sessionId === undefined ? settings.olderThanMs : undefined;
  if (sessionId === undefined && olderThanMs === undefined) {
    throw new ApexError("APEX_E_USAGE", "Say which sessions to archive: --older-than <duration> (e.g. 30d) or a session id.", {
      hint: "apex session archive --older-than 30d   (or set plugins.archive.older_than)",
    });
  }
  const directory = backupDirectory(context.config, context.projectDir);
  if (!(await context.storeExists())) {
    // No store yet: no session to archive, and opening one for writing would create it (a dry run wrote .apex/store.mdb).
    if (sessionId !== undefined) throw new ApexError("APEX_E_NO_SESSION", `No session ${JSON.stringify(sessionId)} in this project: it has no APEX store yet.`);
    const empty: ArchiveResult = { dryRun: Boolean(input.options.dryRun), cutoff: new Date(cutoffOf(Date.now(), olderThanMs!)).toISOString(), directory, archived: [], skipped: [], sweep: null, sweepError: null };
    if (json) context.printJson(archiveJson(empty, olderThanMs));
    else printArchive(context, empty, olderThanMs);
    return 0;
  }
  const store = await context.store();
  const progress = new Progress();
  let result: ArchiveResult;
  try {
    result = await archiveSessions(store, {
      olderThanMs,
      // An id or a unique prefix, as export takes it (`apex session archive 3f2a9c1e`).
      sessionId: sessionId === undefined ? undefined : resolveSessionId(store, sessionId),
      directory,
      codec: settings.algorithm,
      level: settings.level,
      maxBytes: settings.maxBundleBytes,
      dryRun: Boolean(input.options.dryRun),
      onProgress: (text) => progress.update(text, true),
      saveFinalState: async (owner) => {
        // As `apex checkpoint create` without a supervisor: an engine bound to the store runs the checkpoint's hooks (a writer has one).
        const { checkpointServiceFor } = await import("../../core/session/checkpoints.js");
        if (!checkpointServiceFor(store) && context.config) {
          const { createSessionEngine } = await import("../../core/session/hooks.js");
          await createSessionEngine(context.config, store, (message) => process.stderr.write(`warning: ${message}\n`));
        }
        await checkpointServiceFor(store)?.create({ sessionId: owner, trigger: "onStop", description: "final state, saved before the session was archived", skipUnchanged: "memory" });
      },
    });
  } finally {
    progress.done();
  }
  if (json) context.printJson(archiveJson(result, olderThanMs));
  else printArchive(context, result, olderThanMs);
  // Sessions left alone because archiving them failed (something of them is damaged, the store
  // refused the write or could not be reached) need attention: exit 1.
  // Sessions left by rule (not old enough, the current one, a branch point) are not failures.
  return result.sweepError || result.skipped.some((skipped) => skipped.failed) ? 1 : 0;
}

function printArchive(context: CommandContext, result: ArchiveResult, olderThanMs: number | undefined): void {
  const where = displayPath(result.directory, context.projectDir);
  const which = olderThanMs !== undefined ? `ended sessions older than ${formatDuration(olderThanMs)}, i.e. ended before ${formatTime(result.cutoff!)}` : "the session";
  const failed = result.skipped.filter((skipped) => skipped.failed).length;
  if (result.archived.length === 0 && failed > 0) context.print(`Nothing archived: ${plural(failed, "session")} could not be archived (${which}):`);
  else if (result.archived.length === 0) context.print(`Nothing archived: no ${result.cutoff ? which : "session"} to archive.`);
  else context.print(`${result.dryRun ? "Would archive" : "Archived"} ${plural(result.archived.length, "session")} (${which}) to ${where}:`);
  for (const session of result.archived) {
    const file = ` -> ${displayPath(session.file, context.projectDir)}`;
    context.print(
      `  ${session.sessionId}  ended ${formatTime(session.endedAt)}  ${plural(session.checkpoints, "checkpoint")}, ${plural(session.records, "record")}, ${plural(session.objects, "object")}  ${formatBytes(session.bodyBytes)} in ${formatBytes(session.fileBytes)}${file}`,
    );
  }
  for (const skipped of result.skipped) {
    // One another archive (another process) took meanwhile is not in the store: it was said to be left there, "changed" as it went.
    const where = skipped.archivedElsewhere ? "archived by another process" : "left in the store";
    context.print(`  ${where}: ${skipped.sessionId}: ${skipped.reason.replace(/\.$/, "")}`);
  }
  if (result.sweep) {
    const { values, trees, bytes } = result.sweep.removed;
    context.print(`${result.dryRun ? "Would sweep" : "Swept"} ${plural(values, "value")} and ${plural(trees, "tree node")} only archived sessions used (${formatBytes(bytes)}).`);
  }
  if (result.sweepError) context.print(`The sweep did not run [${result.sweepError.code}]: ${result.sweepError.message}${result.sweepError.hint ? ` ${result.sweepError.hint}` : ""}`);
  if (result.dryRun) context.print("Dry run: nothing was written or removed.");
  else if (result.archived.length > 0) context.print("Bring one back with `apex session unarchive <id>`.");
}

function archiveJson(result: ArchiveResult, olderThanMs: number | undefined) {
  return {
    dry_run: result.dryRun,
    older_than_seconds: olderThanMs === undefined ? null : olderThanMs / 1000,
    cutoff: result.cutoff,
    directory: result.directory,
    archived: result.archived.map((session) => ({
      session_id: session.sessionId,
      ended_at: session.endedAt,
      file: session.file,
      checkpoints: session.checkpoints,
      records: session.records,
      objects: session.objects,
      body_bytes: session.bodyBytes,
      file_bytes: session.fileBytes,
    })),
    skipped: result.skipped.map((skipped) => ({ session_id: skipped.sessionId, reason: skipped.reason, code: skipped.code, archived_elsewhere: skipped.archivedElsewhere === true })),
    sweep: result.sweep ? { ...result.sweep.removed, packs: packsJson(result.sweep.packs) } : null,
    sweep_error: result.sweepError,
  };
}

/**
 * The sweep's packs in snake_case, as every other key: bytes_freed. bytesFreed, the camelCase key it
 * printed alone before (listed by the --json help), stays beside it for scripts.
 */
function packsJson(packs: SweepResult["packs"]) {
  return { removed: packs.removed, rewritten: packs.rewritten, bytes_freed: packs.bytesFreed, bytesFreed: packs.bytesFreed };
}

// ---------------------------------------------------------------------------------------------
// apex session unarchive FILE|ID, apex session import FILE

export async function runUnarchive(input: CommandInput, context: CommandContext, settings: ArchiveSettings): Promise<number> {
  if (input.options[AT_WRITER] !== true) {
    const target = argument(input);
    if (target === undefined) throw new ApexError("APEX_E_USAGE", "Give a bundle file or the id of an archived session.");
    const file = await findBundle(target, backupDirectory(context.config, context.projectDir), readLimits(settings).maxBytes);
    return context.invoke("session unarchive", { args: [file], options: { ...input.options, [AT_WRITER]: true } });
  }
  const file = String(input.args[0]);
  let result: InstallResult | undefined;
  try {
    result = await install(context, file, settings, file, { unarchive: true });
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_SESSION_EXISTS") throw error;
    // The session is here as the archive holds it: an earlier unarchive put it back and was killed
    // before it removed the bundle. The rerun finishes that (it said to archive or delete the session).
    const back = await alreadyBack(context, file, settings);
    if (!back) throw await replacingHint(error, context, file);
    return finishUnarchive(input, context, file, back, true);
  }
  return finishUnarchive(input, context, file, result, false);
}

/**
 * The refusal of an archive whose session is here in another state, with the whole way to replace
 * it: the hint said to archive the session first, and that archive then stopped on the bundle it
 * would write, when one of the session is in the backup directory already (often the very archive
 * being brought back), with a second error saying to move that file away.
 */
async function replacingHint(error: ApexError, context: CommandContext, file: string): Promise<ApexError> {
  const sessionId = (error.details as { session_id?: unknown } | undefined)?.session_id;
  if (typeof sessionId !== "string") return error;
  const store = await context.store();
  const ended = store.has(`/sessions/history/${sessionId}`);
  const inTheWay = join(backupDirectory(context.config, context.projectDir), bundleFileName(sessionId));
  const aside = `${inTheWay}.older`;
  const steps = existsSync(inTheWay)
    ? `move the bundle archiving it would write aside (\`mv ${shellWord(inTheWay)} ${shellWord(aside)}\`), archive it (\`apex session archive ${shortSessionId(sessionId)}\`), then bring this one back (\`apex session unarchive ${shellWord(realPath(file) === realPath(inTheWay) ? aside : file)}\`)`
    : `archive it (\`apex session archive ${shortSessionId(sessionId)}\`), then bring this one back (\`apex session unarchive ${shellWord(file)}\`)`;
  return new ApexError(error.code, error.message, {
    hint: `Nothing was written. ${ended ? "To" : "Once it has ended (`apex stop`), to"} replace it by the bundle's: ${steps}; or import into another project.`,
    details: { session_id: sessionId, ...(existsSync(inTheWay) ? { archive_file: inTheWay } : {}) },
  });
}

/** A path as one shell word: quoted only when it holds a character the shell reads. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * The session of an archive `file` when the store holds it exactly as the archive does, else undefined. Of another
 * bundle (an export, which unarchive takes as import does): when the store holds it as importing it wrote it, as
 * import finds it (it was refused, with a hint to archive the session and bring the same state back).
 */
async function alreadyBack(context: CommandContext, file: string, settings: ArchiveSettings): Promise<InstallResult | undefined> {
  const { content } = verifyBundleFile(file, readLimits(settings));
  if (content.manifest.kind !== "archive") return alreadyImported(context, file, settings);
  const store = await context.store();
  const sessionId = content.manifest.session_id;
  try {
    const collected = collectSession(store, sessionId, { kind: "archive", createdAt: content.manifest.created_at });
    // As the archive holds it, or as installing it wrote it (with the "imported" event a project without an id adds,
    // and without the grants of an archive that is not this project's own: keepsGrants).
    const keepGrants = keepsGrants(store, content, inBackupDirectory(context, file));
    const installed = () => alreadyInstalled(store, content, { records: collected.input.records, checkpoints: collected.checkpoints }, { source: file, keepGrants, worktreeHere: (path, name) => worktreeHere(context.projectDir ?? process.cwd(), path, name) });
    if (!sameSession(content, collected) && !installed()) return undefined;
  } catch {
    return undefined; // not readable as a whole: the refusal stands
  }
  const present = content.objects.size;
  return {
    sessionId,
    name: sessionName(content.records, sessionId),
    kind: "archive",
    createdAt: content.manifest.created_at,
    checkpoints: content.checkpoints.length,
    records: content.records.length,
    objects: { total: present, written: 0, present },
    converted: false,
    sanitizedAgents: 0,
    droppedGrants: 0,
    worktree: null,
    previousStatus: null,
    revision: store.revision(),
  };
}

/** Whether `file` is in this project's backup directory, where `session archive` writes its archives. */
function inBackupDirectory(context: CommandContext, file: string): boolean {
  return isInside(realPath(file), realPath(backupDirectory(context.config, context.projectDir)));
}

function finishUnarchive(input: CommandInput, context: CommandContext, file: string, result: InstallResult, wasBack: boolean): number {
  let removed = false;
  // Only what `session archive` wrote is removed: an archive in the backup directory. A bundle named elsewhere (an
  // export, a teammate's file) was the user's own file, removed all the same before.
  const archived = result.kind === "archive" && inBackupDirectory(context, file);
  if (!input.options.keep && archived) {
    try {
      unlinkSync(file);
      removed = true;
    } catch {
      // the session is back either way; the bundle stays
    }
  }
  if (input.options.json) context.printJson({ ...installJson(result, file), already_back: wasBack, bundle_removed: removed });
  else {
    if (wasBack) context.print(`Session ${result.sessionId} is back already, as ${displayPath(file, context.projectDir)} holds it (${result.kind === "archive" ? "an earlier unarchive put it there" : "imported or brought back before, or exported from this project and unchanged since"}); nothing written.`);
    else printInstall(context, "Unarchived", result, displayPath(file, context.projectDir));
    context.print(
      removed
        ? "Removed the bundle (--keep keeps it)."
        : `Kept the bundle ${displayPath(file, context.projectDir)}${archived || input.options.keep ? "" : " (unarchive removes only archives of the backup directory)"}.`,
    );
  }
  return 0;
}

export async function runImport(input: CommandInput, context: CommandContext, settings: ArchiveSettings): Promise<number> {
  if (input.options[AT_WRITER] !== true) {
    const target = argument(input);
    if (target === undefined) throw new ApexError("APEX_E_USAGE", "Give the bundle file to import.");
    if (target === "-") return importStandardInput(input, context);
    const file = resolve(target);
    if (!existsSync(file)) throw new ApexError("APEX_E_NOT_FOUND", `No file ${file}.`, { hint: "Give the path of a .apexbundle file (`apex session export` writes one)." });
    return context.invoke("session import", { args: [file], options: { ...input.options, [AT_WRITER]: true } });
  }
  const file = String(input.args[0]);
  // A bundle read from standard input (`session import -`) is said as such, not as the file it was put in for the writer.
  const fromInput = input.options[FROM_STANDARD_INPUT] === true;
  const source = fromInput ? STANDARD_INPUT : file;
  const shown = fromInput ? STANDARD_INPUT : displayPath(file, context.projectDir);
  const jsonFile = fromInput ? "-" : file;
  let result: InstallResult;
  try {
    result = await install(context, file, settings, source);
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_SESSION_EXISTS") throw error;
    // The same bundle imported again (a script's rerun, an import killed after it wrote): the session
    // is here exactly as importing it wrote, so there is nothing to do. It exited 4, "refusing to import
    // the bundle over it", as if another session were in the way.
    const here = await alreadyImported(context, file, settings, source);
    if (!here) {
      // Not a repeated import: say that what is here differs from what the bundle holds.
      throw new ApexError(error.code, error.message.replace(/; refusing/, ", not as this bundle holds it (it changed since, or the bundle is of another time); refusing"), { hint: error.hint, details: { ...error.details, identical: false } });
    }
    if (input.options.json) context.printJson({ ...installJson(here, jsonFile), already_imported: true });
    else context.print(`Session ${here.name ? visibleText(here.name) : shortSessionId(here.sessionId)} is already here as ${shown} holds it (imported before, or exported from this project and unchanged since); nothing written.`);
    return 0;
  }
  if (input.options.json) context.printJson({ ...installJson(result, jsonFile), already_imported: false });
  else printInstall(context, "Imported", result, shown);
  return 0;
}

/** What a bundle read from standard input is called: in the import's output and in the session's `imported from` reason. */
const STANDARD_INPUT = "standard input";
/** Set (by the CLI, for the writer) when the bundle file is one the CLI wrote from standard input. */
const FROM_STANDARD_INPUT = "apexFromStandardInput";

/**
 * `session import -`: the bundle piped in (`ssh host apex session export ID -o - | apex session import -`),
 * read to its end, put in a private file for the store's writer (a supervisor reads it by path), and
 * removed after, whatever the import did. A terminal as standard input is refused: a bundle is bytes.
 */
async function importStandardInput(input: CommandInput, context: CommandContext): Promise<number> {
  if (process.stdin.isTTY) {
    throw new ApexError("APEX_E_USAGE", "apex session import - reads a bundle from standard input, which is a terminal here.", {
      hint: "Pipe a bundle in (`ssh HOST apex session export ID -o - | apex session import -`), or give the bundle's file. Nothing was written.",
    });
  }
  const bytes = await readInputBytes(0, STANDARD_INPUT);
  if (bytes.length === 0) throw new ApexError("APEX_E_BAD_INPUT", "Standard input was empty: there is no bundle to import.", { hint: "Nothing was written. Check the command that writes the bundle (`apex session export ID -o -`)." });
  const dir = mkdtempSync(join(tmpdir(), "apex-import-"));
  try {
    const file = join(dir, "standard-input.apexbundle");
    writeFileSync(file, bytes, { mode: 0o600 });
    return await context.invoke("session import", { args: [file], options: { ...input.options, [AT_WRITER]: true, [FROM_STANDARD_INPUT]: true } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The session of bundle `file` when the store holds it exactly as importing the file (from `source`) wrote it, else undefined. */
async function alreadyImported(context: CommandContext, file: string, settings: ArchiveSettings, source = file): Promise<InstallResult | undefined> {
  const { content } = verifyBundleFile(file, readLimits(settings));
  const store = await context.store();
  const sessionId = content.manifest.session_id;
  try {
    const collected = collectSession(store, sessionId, { kind: content.manifest.kind, createdAt: content.manifest.created_at });
    // A session running here is not what importing its bundle writes (an ended one): refused, as it was.
    if (collected.location.state !== "ended") return undefined;
    if (!sameSession(content, collected) && !alreadyInstalled(store, content, { records: collected.input.records, checkpoints: collected.checkpoints }, { source, worktreeHere: (path, name) => worktreeHere(context.projectDir ?? process.cwd(), path, name) })) return undefined;
  } catch {
    return undefined; // not readable as a whole: the refusal stands
  }
  const present = content.objects.size;
  return {
    sessionId,
    name: sessionName(content.records, sessionId) ?? sessionName(content.records, sessionId, `/sessions/${sessionId}`),
    kind: content.manifest.kind,
    createdAt: content.manifest.created_at,
    checkpoints: content.checkpoints.length,
    records: content.records.length,
    objects: { total: present, written: 0, present },
    converted: content.manifest.session_state === "live",
    sanitizedAgents: 0,
    droppedGrants: 0,
    worktree: null,
    previousStatus: null,
    revision: store.revision(),
  };
}

/**
 * Verifies bundle `file` and installs its session. Its access grants are installed only by an unarchive
 * of this project's own archive, from the backup directory (keepsGrants); `session import` never installs one.
 */
async function install(context: CommandContext, file: string, settings: ArchiveSettings, source = file, how: { unarchive?: boolean } = {}): Promise<InstallResult> {
  const progress = new Progress();
  try {
    progress.update(`verifying ${source}`, true);
    const { content } = verifyBundleFile(file, readLimits(settings));
    const store = await context.store();
    const keepGrants = how.unarchive === true && keepsGrants(store, content, inBackupDirectory(context, file));
    progress.update(`writing session ${content.manifest.session_id}`, true);
    return await installBundle(store, content, { source, keepGrants, worktreeHere: (path, name) => worktreeHere(context.projectDir ?? process.cwd(), path, name) });
  } finally {
    progress.done();
  }
}

/**
 * A bundle named by path (relative to the working directory), else an archived session in the backup directory named as
 * every command names a session (archivedBundle: the one lookup the hints that name an archived session use too).
 */
export async function findBundle(target: string, directory: string, maxBytes?: number): Promise<string> {
  const asPath = resolve(target);
  if (existsSync(asPath) && statSync(asPath).isFile()) return asPath;
  const exact = join(directory, bundleFileName(target));
  if (existsSync(exact)) return exact;
  const found = await archivedBundle(directory, target, { maxBytes });
  if (found) return found.file;
  const listed: string[] = [];
  for (const id of archivedIds(directory)) {
    const named = (await peekBundle(join(directory, `${id}${BUNDLE_EXTENSION}`), maxBytes))?.name;
    listed.push(`${id}${named ? ` (${visibleText(named)})` : ""}`);
  }
  // A directory given where a bundle file is meant was said to be no bundle file, as if it did not exist.
  if (isDirectory(asPath)) {
    const bundles = bundlesIn(asPath);
    throw new ApexError("APEX_E_NOT_FOUND", `${asPath} is a directory, not a bundle file, and no archived session is named ${JSON.stringify(target)} in ${directory}.`, {
      hint: `${bundles.length > 0 ? `Give one of its bundle files (${bundles.slice(0, 5).join(", ")}${bundles.length > 5 ? ", …" : ""})` : `It holds no ${BUNDLE_EXTENSION} file: give the path of a bundle file`}. Archived sessions: ${listed.length > 0 ? listed.join(", ") : "none"}.`,
      details: { path: asPath },
    });
  }
  throw new ApexError("APEX_E_NOT_FOUND", `No bundle file ${asPath} and no archived session ${JSON.stringify(target)} in ${directory}.`, {
    hint: `Archived sessions: ${listed.length > 0 ? listed.join(", ") : "none"}.`,
  });
}

/** The bundle files directly in a directory, by name (none when it cannot be read). */
function bundlesIn(path: string): string[] {
  try {
    return readdirSync(path)
      .filter((name) => name.endsWith(BUNDLE_EXTENSION))
      .sort()
      .map((name) => join(path, name));
  } catch {
    return [];
  }
}

/** The session as session list prints it: a branch by its name, another by its uuid's short form (--json has the whole id). */
function exportedLabel(store: Store, sessionId: string): string {
  let name: unknown;
  try {
    name = findSession(store, sessionId)?.name;
  } catch {
    name = undefined; // a record that does not read: the export said what it could collect
  }
  return typeof name === "string" && name ? visibleText(name) : shortSessionId(sessionId);
}

/** `shown`: where the bundle came from, as the user named it (a path as displayPath gives it, or standard input). */
function printInstall(context: CommandContext, verb: string, result: InstallResult, shown: string): void {
  const { objects } = result;
  context.print(
    `${verb} session ${result.name ? visibleText(result.name) : shortSessionId(result.sessionId)} from ${shown} (${result.kind === "archive" ? "archived" : "exported"} ${formatTime(result.createdAt)}): ${plural(result.checkpoints, "checkpoint")}, ${plural(result.records, "record")}, ${plural(objects.total, "object")} (${objects.written} written, ${objects.present} already here).`,
  );
  if (result.converted && result.previousStatus !== "completed" && result.previousStatus !== "failed" && result.previousStatus !== "stopped") {
    context.print(`It was ${result.previousStatus ?? "live"} when exported; it is here as an ended (stopped) session: \`apex start --continue ${result.name ? visibleText(result.name) : result.sessionId}\` resumes it.`);
  }
  if (result.sanitizedAgents > 0) context.print(`The bundle comes from another project: the process ids of ${plural(result.sanitizedAgents, "agent record")} were cleared.`);
  if (result.droppedGrants > 0) {
    const session = result.name ? visibleText(result.name) : shortSessionId(result.sessionId);
    context.print(`The bundle held ${plural(result.droppedGrants, "access grant")} (\`apex session share\`), which ${result.droppedGrants === 1 ? "was" : "were"} not brought in: only this project's own archive gives its grants back. Share the session again to give access to it (\`apex session share ${session} USER\`).`);
  }
  if (result.worktree) {
    const session = result.name ? visibleText(result.name) : shortSessionId(result.sessionId);
    context.print(
      `It ran in the other project's git worktree ${visibleText(result.worktree.was)}; here it runs in ${visibleText(result.worktree.path)}, beside this repository as \`session branch --worktree\` puts it${existsSync(result.worktree.path) ? "" : " (not made yet: `apex start --continue " + session + "` says how)"}.`,
    );
  }
}

/**
 * Where a branch imported from another project runs here: the git worktree it names when that is
 * one of this project's (the same path on both sides), else this project's place for NAME's
 * (`../<repository>-NAME`, as `session branch --worktree` makes it): another machine's path, or
 * another repository's worktree on this one, is never where its agents run or its git commands act.
 */
function worktreeHere(projectDir: string, path: string, name: string): string {
  if (existsSync(path) && worktreeOfProject(path, projectDir)) return path;
  const top = spawnSync("git", ["rev-parse", "--show-toplevel"], { cwd: projectDir, encoding: "utf8" });
  const base = top.status === 0 && top.stdout.trim() ? top.stdout.trim() : projectDir;
  return join(dirname(base), `${basename(base)}-${name}`);
}

function installJson(result: InstallResult, file: string) {
  return {
    session_id: result.sessionId,
    name: result.name,
    file,
    bundle_kind: result.kind,
    bundle_created_at: result.createdAt,
    checkpoints: result.checkpoints,
    records: result.records,
    objects: result.objects,
    converted_to_ended: result.converted,
    agents_process_ids_cleared: result.sanitizedAgents,
    grants_dropped: result.droppedGrants,
    previous_status: result.previousStatus,
    worktree: result.worktree ? { path: result.worktree.path, was: result.worktree.was, exists: existsSync(result.worktree.path) } : null,
    revision: result.revision,
  };
}

// ---------------------------------------------------------------------------------------------
// apex session export ID -o FILE

/**
 * The directory of the LMDB store a backup copies: the project's store as every other command
 * resolves it (APEX_STORE_URL, else `store:`), not the `.apex/` directory, which after a
 * migration may hold an older store. A PostgreSQL store has no file to copy: refused, naming
 * what backs it up instead.
 */
async function backupSource(config: NonNullable<CommandContext["config"]>): Promise<string> {
  const spec = await resolveStoreSpec({ configPath: config.configPath, projectDir: config.projectDir, storeDir: config.storeDir });
  if (spec.backend === "lmdb") return lmdbDataDir(spec);
  const { backend, location } = describeStore(spec);
  throw new ApexError("APEX_E_USAGE", `apex backup copies an LMDB store; this project's store is on ${backend} (${location}).`, {
    hint: "Back up the database with the server's own tools (pg_dump), or copy this project into an LMDB store with `apex store migrate --to lmdb:PATH` (stop the session first).",
  });
}

/** Reads only: runs in the CLI on a read-only store (a live supervisor keeps writing meanwhile). */
export async function runExport(input: CommandInput, context: CommandContext, settings: ArchiveSettings): Promise<number> {
  const target = argument(input);
  if (target === undefined) throw new ApexError("APEX_E_USAGE", "Give the id of the session to export.");
  const output = input.options.output;
  if (typeof output !== "string" || output === "") throw new ApexError("APEX_E_USAGE", "Give the file to write with -o FILE.", { hint: "apex session export <id> -o session.apexbundle" });
  // `-o -`: the bundle on standard output, for a pipe (`… -o - | ssh HOST apex session import -`); what was done on stderr.
  const piped = output === "-";
  if (piped) refuseBundleToStdout(input);
  else refuseDash(output, "a bundle is written to a file; name it (`-o session.apexbundle`), or `-o -` for standard output.");
  const file = piped ? "-" : resolve(output);
  if (!piped) checkOutputFile(file, { force: Boolean(input.options.force), what: "the bundle" });
  if (!context.config) throw new ApexError("APEX_E_INTERNAL", "session export needs the project's config.");
  if (!piped) await refuseStoreFile(file, context.config);
  const store = await openStore(context.config, { readOnly: true });
  const progress = new Progress();
  try {
    const sessionId = resolveSessionId(store, target);
    progress.update(`collecting session ${sessionId}`, true);
    const collected = collectSession(store, sessionId, { kind: "export", createdAt: new Date().toISOString() });
    progress.update(`compressing ${plural(collected.input.objects.length, "object")}`, true);
    const { file: bytes, bodyBytes } = await encodeBundle(collected.input, settings.algorithm, settings.level);
    if (piped) {
      // Read back before a byte goes out, as a file is read back once written: a pipe cannot take back what it sent.
      checkBundleReadsBack(bytes, collected.input, settings, "standard output");
      progress.update("writing the bundle to standard output", true);
      await writeToStdout(bytes);
    } else {
      progress.update(`writing ${file}`, true);
      writeFileAtomic(file, bytes, { overwrite: Boolean(input.options.force) });
      // Read back what is on disk: an export that does not verify is not left behind.
      try {
        checkBundleReadsBack(readBundleFile(file, settings.maxBundleBytes), collected.input, settings, file);
      } catch (error) {
        unlinkSync(file);
        throw error;
      }
    }
    const summary = {
      session_id: sessionId,
      state: collected.location.state,
      file,
      checkpoints: collected.checkpoints.length,
      records: collected.input.records.length,
      objects: collected.input.objects.length,
      body_bytes: bodyBytes,
      file_bytes: bytes.length,
      algorithm: settings.algorithm,
    };
    progress.done();
    const said = `Exported session ${exportedLabel(store, sessionId)} (${collected.location.state}) to ${piped ? "standard output" : displayPath(file, context.projectDir)}: ${plural(summary.checkpoints, "checkpoint")}, ${plural(summary.records, "record")}, ${plural(summary.objects, "object")}; ${formatBytes(bodyBytes)} in ${formatBytes(bytes.length)} (${settings.algorithm}).`;
    if (piped) process.stderr.write(`${said}\n`);
    else if (input.options.json) context.printJson(summary);
    else {
      context.print(said);
      context.print("Import it elsewhere with `apex session import <file>`.");
    }
    return 0;
  } finally {
    progress.done();
    await store.close();
  }
}

/**
 * `session export -o -` writes the bundle's bytes to standard output: refused on a terminal (a
 * bundle is binary), and with --json (standard output carries the bundle, not the summary).
 */
function refuseBundleToStdout(input: CommandInput): void {
  if (input.options.json) {
    throw new ApexError("APEX_E_USAGE", "-o - writes the bundle to standard output, where --json would print the summary: give one of them.", {
      hint: "Use -o FILE --json for the summary as JSON; with -o - the summary is a line on stderr. Nothing was written.",
    });
  }
  if (process.stdout.isTTY) {
    throw new ApexError("APEX_E_USAGE", "-o - writes the bundle's bytes to standard output, which is a terminal here.", {
      hint: "Pipe it (`apex session export ID -o - | ssh HOST apex session import -`) or redirect it to a file. Nothing was written.",
    });
  }
}

/** Fails when `bytes`, a bundle just made of `input`, does not read back whole (`where`: its file, or standard output). */
function checkBundleReadsBack(bytes: Buffer, input: { records: unknown[]; objects: unknown[] }, settings: ArchiveSettings, where: string): void {
  try {
    // Our own bytes, just made: the compression ratio bound (against bombs) does not apply.
    const content = readBundle(bytes, { maxBytes: settings.maxBundleBytes, maxRatio: Number.MAX_SAFE_INTEGER });
    if (content.records.length !== input.records.length || content.objects.size !== input.objects.length) throw new Error("contents differ");
  } catch (error) {
    throw new ApexError("APEX_E_INTERNAL", `The bundle written to ${where} does not read back: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Writes `bytes` to standard output as they are (past the guard that makes the CLI's text safe for
 * a terminal, which would escape a bundle's bytes), resolved once the stream has taken them (a reader
 * gone: EPIPE, as the CLI handles it).
 */
async function writeToStdout(bytes: Buffer): Promise<void> {
  if (!writeControl(process.stdout, bytes)) await once(process.stdout, "drain");
}

// ---------------------------------------------------------------------------------------------
// apex backup [--to DIR]

/** Reads only: runs in the CLI on a read-only store, so a running supervisor is neither blocked nor needed. */
export async function runBackup(input: CommandInput, context: CommandContext): Promise<number> {
  if (!context.config) throw new ApexError("APEX_E_INTERNAL", "backup needs the project's config.");
  const to = input.options.to;
  if (to !== undefined && (typeof to !== "string" || to === "")) throw new ApexError("APEX_E_USAGE", "Give a directory to --to.");
  const storeDir = await backupSource(context.config);
  const target = typeof to === "string" ? resolve(to) : defaultBackupDirectory(backupDirectory(context.config, context.projectDir), new Date());
  // Not among APEX's own files (.apex/logs, …; the backup directory is allowed) nor in a repository's .git, as for -o FILE.
  if (typeof to === "string") await refuseStoreFile(join(target, "store.mdb"), context.config, "--to");
  const progress = new Progress();
  let result: BackupResult;
  try {
    result = await backupStore({ storeDir, target, defaultTarget: typeof to !== "string", onProgress: (text) => progress.update(text) });
  } finally {
    progress.done();
  }
  if (input.options.json) {
    context.printJson({
      directory: result.directory,
      file: result.file,
      bytes: result.bytes,
      source_bytes: result.sourceBytes,
      revision: result.revision,
      counts: result.counts,
      validation: result.validation,
      ms: result.ms,
      swept: result.swept,
    });
  } else {
    for (const path of result.swept) context.print(`Removed what an interrupted backup left: ${displayPath(path, context.projectDir)}`);
    const { counts } = result;
    context.print(
      `Backed up the store to ${displayPath(result.file, context.projectDir)}: ${formatBytes(result.bytes)} (the store's file: ${formatBytes(result.sourceBytes)}), revision ${result.revision}, ${plural(counts.records, "record")}, ${plural(counts.checkpoints, "checkpoint")}, ${plural(counts.values + counts.trees, "object")}.`,
    );
    if (result.validation.ok) context.print("Verified: the copy opens read-only and validates clean.");
    else {
      context.print(`The copy does not validate: ${plural(result.validation.errors, "error")} (the store has them too; run \`apex session validate\`):`);
      for (const problem of result.validation.problems) context.print(`  ${problem}`);
    }
    // APEX_HOME is read against the directory the command runs in (core/config/locate.ts), not the project's:
    // from a subdirectory, the project-relative path the hint gave named nowhere. One shell word, spaces and all.
    context.print(`Use it with \`APEX_HOME=${shellWord(fromWorkingDirectory(result.directory))} apex <command>\`, or copy its store.mdb back into the store directory.`);
  }
  return result.validation.ok ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

function argument(input: CommandInput): string | undefined {
  const value = input.args[0];
  return typeof value === "string" && value !== "" ? value : undefined;
}

function displayPath(path: string, projectDir: string | undefined): string {
  const base = projectDir ?? process.cwd();
  const rel = relative(base, path);
  return rel && !rel.startsWith("..") && !rel.startsWith("/") ? rel : path;
}

/**
 * `path` as the command's working directory reaches it: relative when it lies below that directory,
 * else absolute. For what the user runs next from there (APEX_HOME=…), where displayPath's
 * project-relative path points elsewhere once the command runs in a subdirectory of the project.
 */
function fromWorkingDirectory(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : path;
}

/** "2026-11-20 14:00" (UTC). */
function formatTime(iso: string): string {
  const time = Date.parse(iso);
  return Number.isFinite(time) ? `${new Date(time).toISOString().slice(0, 16).replace("T", " ")} UTC` : iso;
}
