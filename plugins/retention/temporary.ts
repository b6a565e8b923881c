import { readdirSync, rmSync, statSync } from "node:fs";
import { processesUsingStore } from "../lmdb/salvage-process.js";
import { join, relative } from "node:path";
import { processRuns } from "../../cli/output-file.js";
import type { SessionInfo } from "./sessions.js";

/**
 * Temporary files APEX leaves in the store directory that nothing needs any more:
 *
 * - `<store>/supervisor.json.<pid>.tmp`: the supervisor writes its runtime file through such a
 *   file and renames it; one whose process is gone was left by a crash mid-write.
 * - `<store>/logs/<sid>/<agent>.resume.json`: the resume context handed to an agent when a
 *   session is continued. The supervisor writes it afresh from the store on every
 *   continue, so once the session has ended (or no longer exists) it is dead weight. Agent
 *   logs beside it are kept: `apex logs` still shows them.
 * - `<store>/salvage-<time>/`: where `apex session repair` copies what still reads of a damaged
 *   store file before the copy takes its place. A repair interrupted then (Ctrl-C, kill) left it,
 *   as large as the store; it goes once no process has its copy open and nothing wrote in it
 *   for SALVAGE_IDLE_MS.
 * - `<backup_location>/.<name>.apexbundle.partial-<pid>-<hex>`: a bundle (`session archive`,
 *   `export` into it) is written to such a file and linked into place; one whose process is gone
 *   was killed before it removed it: a copy as large as the bundle, or, killed between the link
 *   and the removal, a second name that keeps an unarchived bundle's bytes on disk.
 */

export interface TemporaryFile {
  /** Absolute path. */
  path: string;
  /** Relative to the project directory when inside it (for output). */
  display: string;
  bytes: number;
  /** Why it is removed; whole ids (--json). */
  why: string;
  /** The session a resume file is of: text names it by its name, else its uuid's short form (`why` with that label). */
  sessionId?: string;
}

export interface TemporaryScope {
  storeDir: string;
  projectDir?: string | undefined;
  /** Sessions the store knows (from knownSessions). */
  sessions: readonly SessionInfo[];
  /** Only this session's resume files; the store-wide leftovers are always included. */
  sessionId?: string | undefined;
  /** The directory archived sessions' bundles go to (session.backup_location). */
  backupDir?: string | undefined;
}

const RUNTIME_TEMP = /^supervisor\.json\.(\d+)\.tmp$/;
/** plugins/lmdb/salvage-process.ts, replaceWithSalvage: `salvage-` and an ISO time with `:` and `.` as `-`. */
const SALVAGE_DIR = /^salvage-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const SALVAGE_IDLE_MS = 10 * 60_000;
const RESUME_FILE = /\.resume\.json$/;
/** cli/output-file.ts, writeFileAtomic: `.<file>.partial-<pid>-<8 hex>` beside the file. */
const BUNDLE_PARTIAL = /^\..+\.apexbundle\.partial-(\d+)-[0-9a-f]{8}$/;

/** Finds the leftovers listed above; reads only. */
export function findTemporaryFiles(scope: TemporaryScope): TemporaryFile[] {
  const found: TemporaryFile[] = [];
  const add = (path: string, why: string, sessionId?: string) => {
    const bytes = sizeOf(path);
    if (bytes === undefined) return;
    const display = scope.projectDir && isInside(path, scope.projectDir) ? relative(scope.projectDir, path) : path;
    found.push({ path, display, bytes, why, ...(sessionId !== undefined ? { sessionId } : {}) });
  };

  for (const name of list(scope.storeDir)) {
    const match = RUNTIME_TEMP.exec(name);
    if (match && !processRuns(Number(match[1]))) add(join(scope.storeDir, name), `unfinished runtime file of exited process ${match[1]}`);
    if (SALVAGE_DIR.test(name)) {
      const path = join(scope.storeDir, name);
      const contents = directorySize(path);
      if (!contents || Date.now() - contents.newest < SALVAGE_IDLE_MS || processesUsingStore(join(path, "store.mdb")).length > 0) continue;
      const display = scope.projectDir && isInside(path, scope.projectDir) ? relative(scope.projectDir, path) : path;
      found.push({ path, display, bytes: contents.bytes, why: "copy of a damaged store file left by an interrupted `apex session repair`" });
    }
  }

  if (scope.backupDir !== undefined) {
    for (const name of list(scope.backupDir)) {
      const match = BUNDLE_PARTIAL.exec(name);
      if (match && !processRuns(Number(match[1]))) add(join(scope.backupDir, name), `unfinished bundle of exited process ${match[1]}`);
    }
  }

  const states = new Map(scope.sessions.map((session) => [session.sessionId, session.state]));
  const logs = join(scope.storeDir, "logs");
  for (const sessionId of list(logs)) {
    if (scope.sessionId !== undefined && sessionId !== scope.sessionId) continue;
    const state = states.get(sessionId) ?? "none";
    if (state === "current") continue;
    for (const name of list(join(logs, sessionId))) {
      if (!RESUME_FILE.test(name)) continue;
      add(join(logs, sessionId, name), state === "ended" ? `resume context of ended session ${sessionId}` : `resume context of removed session ${sessionId}`, sessionId);
    }
  }
  return found.sort((a, b) => a.path.localeCompare(b.path));
}

export interface TemporaryRemoval {
  removed: TemporaryFile[];
  bytes: number;
  failed: Array<TemporaryFile & { error: string }>;
}

export function removeTemporaryFiles(files: readonly TemporaryFile[]): TemporaryRemoval {
  const result: TemporaryRemoval = { removed: [], bytes: 0, failed: [] };
  for (const file of files) {
    try {
      rmSync(file.path, { force: true, recursive: true }); // a salvage directory is one
      result.removed.push(file);
      result.bytes += file.bytes;
    } catch (error) {
      result.failed.push({ ...file, error: (error as Error).message });
    }
  }
  return result;
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function sizeOf(path: string): number | undefined {
  try {
    const stats = statSync(path);
    return stats.isFile() ? stats.size : undefined;
  } catch {
    return undefined;
  }
}

/** The bytes of the files in `dir` (not below it: a salvage directory holds files only) and the newest modification time; undefined when it is not a directory. */
function directorySize(dir: string): { bytes: number; newest: number } | undefined {
  try {
    const stats = statSync(dir);
    if (!stats.isDirectory()) return undefined;
    let bytes = 0;
    let newest = stats.mtimeMs;
    for (const name of readdirSync(dir)) {
      const file = statSync(join(dir, name));
      bytes += file.isFile() ? file.size : 0;
      newest = Math.max(newest, file.mtimeMs);
    }
    return { bytes, newest };
  } catch {
    return undefined;
  }
}

function isInside(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel !== "" && !rel.startsWith("..") && !rel.startsWith("/");
}
