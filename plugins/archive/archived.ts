import { readdirSync } from "node:fs";
import { join } from "node:path";
import { SESSION_NAME_PATTERN } from "../../core/session/names.js";
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
 * The archived session (an archive bundle in `directory`, `apex session archive`'s) that one of
 * `refs` names, as commands name sessions and checkpoints: a session id or a unique prefix of one
 * (4+ characters), a branch's name, `SESSION/checkpoint-007` or `SESSION/latest`, or a checkpoint
 * id or a unique prefix of one. Bundles are named by their sessions' ids; a name or a checkpoint id
 * is read from the start of each (peekBundle). Undefined when none, or several, match.
 */
export async function findArchived(directory: string, refs: string[]): Promise<ArchivedMatch | undefined> {
  const ids = archivedIds(directory);
  if (ids.length === 0) return undefined;
  const files = ids.map((id) => `${id}${BUNDLE_EXTENSION}`);
  const peeks = new Map<string, Awaited<ReturnType<typeof peekBundle>>>();
  const peek = async (file: string) => {
    if (!peeks.has(file)) peeks.set(file, await peekBundle(join(directory, file)));
    return peeks.get(file);
  };
  const archive = async (index: number, checkpoint: string | null): Promise<ArchivedMatch | undefined> => {
    const found = await peek(files[index]!);
    return found?.kind === "archive" ? { sessionId: found.sessionId, name: found.name, file: join(directory, files[index]!), checkpoint } : undefined;
  };
  for (const ref of refs) {
    const text = ref.trim();
    const slash = text.indexOf("/");
    const session = slash > 0 ? text.slice(0, slash) : text;
    // Its id (the file's name), or a unique prefix of one.
    const byId = ids.includes(session) ? [ids.indexOf(session)] : session.length >= 4 ? ids.flatMap((id, index) => (id.startsWith(session.toLowerCase()) ? [index] : [])) : [];
    if (byId.length === 1) {
      const found = await archive(byId[0]!, null);
      if (found) return found;
    }
    const named = SESSION_NAME_PATTERN.test(slash > 0 ? text.slice(0, slash) : text);
    const checkpointId = slash < 0 && text.length >= 4 && /^[0-9a-f-]+$/i.test(text) ? text.toLowerCase() : undefined;
    if (!named && checkpointId === undefined) continue;
    const matches: ArchivedMatch[] = [];
    for (let index = 0; index < Math.min(files.length, MAX_PEEKS); index++) {
      const found = await peek(files[index]!);
      if (found?.kind !== "archive") continue;
      const checkpoint = checkpointId === undefined ? undefined : found.checkpoints.find((id) => id.startsWith(checkpointId));
      if (checkpoint !== undefined) matches.push({ sessionId: found.sessionId, name: found.name, file: join(directory, files[index]!), checkpoint });
      else if (named && found.name === (slash > 0 ? text.slice(0, slash) : text)) matches.push({ sessionId: found.sessionId, name: found.name, file: join(directory, files[index]!), checkpoint: null });
    }
    if (matches.length === 1) return matches[0];
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
