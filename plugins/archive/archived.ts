import { readdirSync } from "node:fs";
import { join } from "node:path";
import { SESSION_NAME_PATTERN } from "../../core/session/names.js";
import { ApexError } from "../../core/errors.js";
import { BUNDLE_EXTENSION, peekBundle } from "./bundle.js";

/** An archived session a reference names, found in the backup directory. */
export interface ArchivedMatch {
  sessionId: string;
  /** Its name, a branch's; null for an unnamed session. */
  name: string | null;
  file: string;
  /** The id of the checkpoint the reference names, when it names one by id. */
  checkpoint: string | null;
}

/** At most this many bundles are read for a name or a checkpoint id (the file names, ids, are all looked at). */
const MAX_PEEKS = 200;

/**
 * The bundle in `directory` that `ref` names as commands name a session (core's pickSession):
 * its id (the file's name), else a branch's name (read from the start of each archive: a name is
 * free again once archived, so several may have it), else a unique prefix of an id (4+ characters;
 * ids are lowercase). `apex session unarchive` and the hints that name an archived session both
 * take it from here: the reference a hint gives is one unarchive takes. Undefined when nothing
 * matches; APEX_E_AMBIGUOUS when several do. `maxPeeks`: at most that many bundles are read for a name.
 */
export async function archivedBundle(directory: string, ref: string, options: { maxPeeks?: number; maxBytes?: number } = {}): Promise<{ file: string; id: string } | undefined> {
  const ids = archivedIds(directory);
  const bundle = (id: string) => ({ file: join(directory, `${id}${BUNDLE_EXTENSION}`), id });
  if (ids.includes(ref)) return bundle(ref);
  if (SESSION_NAME_PATTERN.test(ref)) {
    const named: string[] = [];
    for (const id of ids.slice(0, options.maxPeeks ?? ids.length)) {
      const found = await peekBundle(join(directory, `${id}${BUNDLE_EXTENSION}`), options.maxBytes);
      if (found?.kind === "archive" && found.name === ref) named.push(id);
    }
    if (named.length === 1) return bundle(named[0]!);
    if (named.length > 1) {
      throw new ApexError("APEX_E_AMBIGUOUS", `${JSON.stringify(ref)} names ${named.length} archived sessions (a branch's name is free again once it is archived).`, {
        hint: `Give the id of the one to bring back: ${named.join(", ")}.`,
        details: { candidates: named },
      });
    }
  }
  const prefix = ref.toLowerCase();
  const matches = ref.length >= 4 ? ids.filter((id) => id.startsWith(prefix)) : [];
  if (matches.length === 1) return bundle(matches[0]!);
  if (matches.length > 1) {
    // Worded as a prefix of several sessions is everywhere (core's pickSession): the candidates in the message and in details.
    throw new ApexError("APEX_E_AMBIGUOUS", `${JSON.stringify(ref)} matches ${matches.length} archived sessions: ${matches.join(", ")}.`, { hint: "Give more characters of the session id.", details: { candidates: matches } });
  }
  return undefined;
}

/**
 * The archived session (an archive bundle in `directory`, `apex session archive`'s) that one of
 * `refs` names: a session as archivedBundle finds it, `SESSION/checkpoint-007` or `SESSION/latest`
 * by its session, or a checkpoint id or a unique prefix of one (read from the start of each
 * bundle). Undefined when none, or several, match. `unarchive` is the reference that brings it
 * back: its name when that names it alone, else its id.
 */
export async function findArchived(directory: string, refs: string[]): Promise<(ArchivedMatch & { unarchive: string }) | undefined> {
  const ids = archivedIds(directory);
  if (ids.length === 0) return undefined;
  const lookup = (ref: string) => archivedBundle(directory, ref, { maxPeeks: MAX_PEEKS }).catch(() => undefined);
  const match = async (file: string, checkpoint: string | null) => {
    const found = await peekBundle(file);
    if (found?.kind !== "archive") return undefined;
    // A name other archives have too (or an id's) would bring back another, or none: asked as unarchive asks it, every bundle read.
    const byName = found.name !== null && (await archivedBundle(directory, found.name).catch(() => undefined))?.file === file;
    return { sessionId: found.sessionId, name: found.name, file, checkpoint, unarchive: byName ? found.name! : found.sessionId };
  };
  for (const ref of refs) {
    const text = ref.trim();
    const slash = text.indexOf("/");
    const session = await lookup(slash > 0 ? text.slice(0, slash) : text);
    const found = session && (await match(session.file, null));
    if (found) return found;
    const checkpointId = slash < 0 && text.length >= 4 && /^[0-9a-f-]+$/i.test(text) ? text.toLowerCase() : undefined;
    if (checkpointId === undefined) continue;
    const matches: Array<{ file: string; checkpoint: string }> = [];
    for (const id of ids.slice(0, MAX_PEEKS)) {
      const file = join(directory, `${id}${BUNDLE_EXTENSION}`);
      const found = await peekBundle(file);
      const checkpoint = found?.kind === "archive" ? found.checkpoints.find((candidate) => candidate.startsWith(checkpointId)) : undefined;
      if (checkpoint !== undefined) matches.push({ file, checkpoint });
    }
    if (matches.length === 1) return match(matches[0]!.file, matches[0]!.checkpoint);
  }
  return undefined;
}

/** The ids of the sessions archived in `directory`, by their bundles' file names (none read). */
export function archivedIds(directory: string): string[] {
  try {
    return readdirSync(directory).filter((name) => name.endsWith(BUNDLE_EXTENSION) && !name.startsWith(".")).map((name) => name.slice(0, -BUNDLE_EXTENSION.length)).sort();
  } catch {
    return [];
  }
}

/** "2 sessions of this project are archived in .apex/backups: 3f2a9c1e, 7b1d0e44". */
export function archivedText(ids: string[], where: string): string {
  const shown = ids.slice(0, 5).map((id) => id.slice(0, 8)).join(", ");
  return `${ids.length === 1 ? "1 session of this project is" : `${ids.length} sessions of this project are`} archived in ${where}: ${shown}${ids.length > 5 ? `, … (${ids.length - 5} more)` : ""}`;
}
