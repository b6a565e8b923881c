/**
 * A session `apex session archive` moved out of the store is not found by the commands that read
 * the store (`session branch`, `start --continue`, `checkpoint show`, `--session`, …): they said
 * "No session" and pointed at `apex session list`, which does not list it either. When such an
 * error names a session or a checkpoint that an archive in the backup directory holds, its hint
 * says so and how to bring it back. Only on that error's path: the backup directory is read then.
 */
import { isApexError, ApexError } from "../core/errors.js";
import type { ProjectLocation } from "../core/config/locate.js";
import { configFlagOf } from "./session-ref.js";

const NOT_FOUND = new Set(["APEX_E_NO_SESSION", "APEX_E_NOT_FOUND", "APEX_E_CHECKPOINT_NOT_FOUND"]);

/**
 * `error`, with the way back to the archived session it names in its hint; else `error` itself.
 * `project`: the project the error is of (ApexSaver's, whose process may run anywhere, an agent
 * of another project's included); else the one the command's arguments and directory locate.
 */
export async function withArchivedHint(error: unknown, args: string[], project?: ProjectLocation): Promise<unknown> {
  if (!isApexError(error) || !NOT_FOUND.has(error.code) || process.env.APEX_REMOTE || (process.env.APEX_SOCKET && !project)) return error;
  try {
    const refs = referencesOf(error, args);
    const [{ locateProject }, { loadConfig }, { backupDirectory }, { archivedIds, archivedText, findArchived }, { displayPath }] = await Promise.all([
      import("../core/config/locate.js"),
      import("../core/config/load.js"),
      import("../plugins/archive/options.js"),
      import("../plugins/archive/archived.js"),
      import("../core/config/source.js"),
    ]);
    const location = project ?? locateProject({ configFlag: configFlagOf(args) });
    const config = await loadConfig(location).catch(() => undefined);
    const directory = backupDirectory(config, location.projectDir);
    const found = await findArchived(directory, refs);
    // "No session in this project yet", or none active and none ended to continue: none in the store, while sessions were archived.
    if (!found && error.code === "APEX_E_NO_SESSION" && (/\byet\b/.test(error.message) || !error.hint?.includes("--continue"))) {
      const archived = archivedIds(directory);
      if (archived.length === 0) return error;
      const hint = `${error.hint ? `${error.hint} ` : ""}${archivedText(archived, displayPath(directory))} (\`apex session unarchive ID\` brings one back).`;
      return new ApexError(error.code, error.message, { hint, details: { ...(error.details ?? {}), archived: archived.map((id) => ({ session_id: id })) }, cause: error });
    }
    if (!found) return error;
    const session = found.name ?? found.sessionId.slice(0, 8);
    const enable = config && !config.plugins.some((plugin) => plugin.name === "archive") ? " (enable the archive plugin in apex.config.yaml first: `plugins: archive: {}`)" : "";
    const what = found.checkpoint ? `Checkpoint ${found.checkpoint} is of session ${session}, which was archived` : `Session ${session} was archived`;
    return new ApexError(error.code, error.message, {
      hint: `${what} to ${displayPath(found.file)}: bring it back with \`apex session unarchive ${found.unarchive}\`${enable}, then run this command again.`,
      details: { ...(error.details ?? {}), archived: { session_id: found.sessionId, name: found.name, file: found.file, checkpoint: found.checkpoint } },
      cause: error,
    });
  } catch {
    return error; // the hint is a help: the error stands as it was
  }
}

/**
 * What the error names: its `details.ref`, the quoted references in its message, else the
 * command's arguments (`checkpoint show 3f2a9c1e/checkpoint-002` says only "No session").
 */
function referencesOf(error: ApexError, args: string[]): string[] {
  const refs = new Set<string>();
  const ref = (error.details as { ref?: unknown } | undefined)?.ref;
  if (typeof ref === "string") refs.add(ref);
  for (const match of error.message.matchAll(/"((?:[^"\\]|\\.)*)"/g)) {
    try {
      refs.add(JSON.parse(`"${match[1]}"`) as string);
    } catch {
      /* not a JSON string */
    }
  }
  // Arguments that look like a reference (SESSION/…, an id prefix), not the command's words.
  if (refs.size === 0) for (const arg of args.slice(2)) if (/^[^-/][^/]*\/[^/]+$/.test(arg) || /^(?=.*\d)[0-9a-f-]{4,}$/i.test(arg)) refs.add(arg);
  return [...refs].filter((text) => text.length > 0 && text.length <= 200);
}

/** Where the archive of a session is: the bundle `apex session archive` wrote, and the reference `unarchive` takes. */
export interface ArchiveOf {
  file: string;
  unarchive: string;
}

/**
 * The archives in the project's backup directory of `sessionIds` (sessions a merge recorded that
 * are not in the store): an id missing from the result has none there, so it was not archived
 * here (a session imported with a merge of a session that was not imported with it), or its
 * archive was moved away. `where` is the backup directory as text shows it.
 */
export async function archivesOf(location: ProjectLocation, sessionIds: string[]): Promise<{ where: string; archives: Map<string, ArchiveOf> }> {
  const [{ loadConfig }, { backupDirectory }, { archivedIds, findArchived }, { displayPath }] = await Promise.all([
    import("../core/config/load.js"),
    import("../plugins/archive/options.js"),
    import("../plugins/archive/archived.js"),
    import("../core/config/source.js"),
  ]);
  const config = await loadConfig(location).catch(() => undefined);
  const directory = backupDirectory(config, location.projectDir);
  const archived = archivedIds(directory);
  const archives = new Map<string, ArchiveOf>();
  for (const id of new Set(sessionIds)) {
    // Only an archive of this very session: findArchived reads the bundle's kind and session.
    const found = archived.includes(id) ? await findArchived(directory, [id]).catch(() => undefined) : undefined;
    if (found?.sessionId !== id) continue;
    // Its id's short form, as text names sessions, unless another archive's id begins so too.
    const short = id.slice(0, 8);
    archives.set(id, { file: displayPath(found.file), unarchive: archived.filter((other) => other.startsWith(short)).length === 1 ? short : id });
  }
  return { where: displayPath(directory), archives };
}
