/**
 * Files a command writes where the user says (`-o FILE`: `apex session report`, `apex session
 * export`, the archive's bundles): complete or absent, never half written, and never over an
 * existing file unless the user said --force. One rule for every such command: an existing FILE
 * is APEX_E_CONFLICT (exit 4), a FILE that is a directory or whose directory is missing is
 * refused before any work, and a path the system refuses is the user's input (exit 2).
 */
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve, sep } from "node:path";
import type { Config } from "../core/config/types.js";
import { ApexError } from "../core/errors.js";
import { describeStore, resolveStoreSpec } from "../core/store/open.js";
import { fileDiskFullError, isFileDiskFull } from "../core/store/store-errors.js";
import { realPath, syncDirectory } from "../plugins/file-system.js";

/**
 * Refuses, before any work is done, an output FILE that cannot be written as asked: a
 * directory (exit 2), in a directory that does not exist (exit 3), or one that exists without
 * `force` (exit 4). `what` names the file in messages ("the report", "the bundle").
 */
export function checkOutputFile(file: string, { force, option = "-o", what = "the file" }: { force: boolean; option?: string; what?: string }): void {
  let stat: ReturnType<typeof statSync> | undefined;
  try {
    stat = statSync(file, { throwIfNoEntry: false });
  } catch {
    stat = undefined; // ENOTDIR: a file on the way; the directory check below names it
  }
  if (stat?.isDirectory()) {
    throw new ApexError("APEX_E_USAGE", `${option} ${file} is a directory; give ${what}'s file name.`, { hint: "Nothing was written." });
  }
  // A device, a named pipe or a socket is not written to but replaced by the rename, even --force:
  // `-o /dev/null --force` run as root made /dev/null a regular file holding the bundle.
  const special = stat && !stat.isFile() ? specialKind(stat) : undefined;
  if (special) {
    throw new ApexError("APEX_E_USAGE", `${option} ${file} is ${special}, not a regular file; ${what} is written to a file (a new one, or one --force replaces).`, {
      hint: "Give a file name. Nothing was written.",
      details: { file, kind: special },
    });
  }
  const dir = dirname(file);
  let parent: ReturnType<typeof statSync> | undefined;
  try {
    parent = statSync(dir, { throwIfNoEntry: false });
  } catch {
    parent = undefined; // ENOTDIR: a file on the way
  }
  if (!parent?.isDirectory()) {
    throw new ApexError("APEX_E_NOT_FOUND", `The directory ${dir} of ${option} does not exist.`, { hint: `Create it first, or write ${what} elsewhere. Nothing was written.` });
  }
  if (stat && !force) throw existsError(file);
}

/** What a path that is neither a regular file nor a directory is, in words. */
function specialKind(stat: ReturnType<typeof statSync> & object): string {
  if (stat.isCharacterDevice()) return "a character device";
  if (stat.isBlockDevice()) return "a block device";
  if (stat.isFIFO()) return "a named pipe";
  if (stat.isSocket()) return "a socket";
  return "a special file";
}

/**
 * `-o -` is standard output to most tools; here it made a file named "-" in the working
 * directory. Refused (exit 2) with where the output goes instead; so is a name that starts
 * with "-", an option taken as the file's name (`-o --json`).
 */
export function refuseDash(output: string, instead: string): void {
  if (output === "-") throw new ApexError("APEX_E_USAGE", `-o - would write a file named "-": ${instead}`, { hint: "Nothing was written." });
  // `-o --json` took the option as the file's name: it wrote a file named "--json", and printed no JSON.
  if (output.startsWith("-")) {
    throw new ApexError("APEX_E_USAGE", `-o ${output} would write a file named ${JSON.stringify(output)}: -o takes the file's name next, not an option.`, {
      hint: `Give the file after -o (\`-o ./${output}\` for a file of that name). Nothing was written.`,
    });
  }
}

/**
 * Refuses an output FILE among APEX's own files: in the store directory (`.apex/`: the store,
 * its lock file, logs, sockets, supervisor.json) or the LMDB store's directory that `store:` or
 * APEX_STORE_URL names, however the path is spelled (`..`, a symlinked directory). `-o
 * .apex/store.mdb --force` replaced the store of a running session by the bundle. Only the
 * backup directory (`session.backup_location`, `.apex/backups` by default) may be written there.
 * Nor inside a git directory (refuseGitDirectory). Call after checkOutputFile (the directory exists).
 */
export async function refuseStoreFile(file: string, config: Config | undefined, option = "-o"): Promise<void> {
  const target = join(realPath(dirname(file)), basename(file));
  if (!config) return refuseGitDirectory(target, file, option);
  const within = (dir: string) => target === dir || isInside(target, dir);
  const spec = await resolveStoreSpec(config);
  const owned = [realPath(config.storeDir), ...(spec.backend === "lmdb" ? [realPath(describeStore(spec).location)] : [])];
  const location = config.session.backup_location;
  const backups = realPath(isAbsolute(location) ? location : resolve(config.projectDir, location));
  const dir = owned.find(within);
  if (dir === undefined) return refuseGitDirectory(target, file, option);
  // The backup directory may lie inside .apex/, never be it, hold it or hold the store itself.
  if (within(backups) && backups.startsWith(dir + sep) && !owned.some((other) => other === backups || other.startsWith(backups + sep))) return;
  throw new ApexError("APEX_E_RESERVED_PATH", `${option} ${file} is in ${dir}, where APEX keeps the project's store and its own files; not writing there.`, {
    hint: `Write it elsewhere, or under the backup directory ${backups}. Nothing was written.`,
    details: { file, directory: dir },
  });
}

/**
 * Refuses an output FILE inside a repository's git directory (a `.git` directory, or a linked
 * worktree's under the main one's `.git/worktrees/`): `-o .git/config --force` replaced the
 * repository's config by the report, `-o .git/hooks/pre-commit` put a file where git looks for
 * a hook. The path is the one with its links resolved, so a symlink to .git is refused too.
 */
function refuseGitDirectory(target: string, file: string, option: string): void {
  const parts = target.split(sep);
  const at = parts.indexOf(".git");
  if (at < 0 || at === parts.length - 1) return; // a file named .git (a worktree's pointer) is not git's directory
  const dir = parts.slice(0, at + 1).join(sep);
  throw new ApexError("APEX_E_RESERVED_PATH", `${option} ${file} is in ${dir}, the git repository's own directory; not writing there.`, {
    hint: "Write it elsewhere (in the working tree, or outside the project). Nothing was written.",
    details: { file, directory: dir },
  });
}

/** True when `path` lies below the directory `dir` (both resolved alike). */
export function isInside(path: string, dir: string): boolean {
  return path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

function existsError(file: string): ApexError {
  return new ApexError("APEX_E_CONFLICT", `${file} already exists; not overwriting it.`, {
    hint: "Choose another file, or pass --force to replace it.",
    details: { file },
  });
}

/**
 * Writes a file so that it is either complete or absent: a temporary file beside it,
 * flushed to disk, then renamed (or, without `overwrite`, hard-linked, which fails if the
 * name is taken) into place, and the directory flushed.
 */
export function writeFileAtomic(path: string, data: Buffer, options: { overwrite: boolean }): void {
  removeAbandonedPartials(path);
  const temporary = join(dirname(path), `.${basename(path)}.partial-${process.pid}-${randomBytes(4).toString("hex")}`);
  let fd: number;
  try {
    fd = openSync(temporary, "wx", 0o600);
  } catch (error) {
    throw isFileDiskFull(error) ? fileDiskFullError(path, error) : fileError("write", path, error);
  }
  try {
    for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, Math.min(data.length - at, 1 << 24));
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    // A full disk is the machine's failure, not the plugin's: named as such, with the file and its filesystem.
    throw isFileDiskFull(error) ? fileDiskFullError(path, error) : error;
  }
  closeSync(fd);
  try {
    if (options.overwrite) renameSync(temporary, path);
    else {
      try {
        linkSync(temporary, path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") throw existsError(path);
        throw error;
      }
      unlinkSync(temporary);
    }
  } catch (error) {
    try {
      unlinkSync(temporary);
    } catch {
      // already renamed or gone
    }
    throw error;
  }
  syncDirectory(dirname(path));
}

/**
 * Temporary files of earlier writes of `path` whose process was killed (kill -9, OOM) before it
 * renamed them: hidden, as large as the file, they stayed forever. One whose process runs (a
 * write going on, or its pid taken since) is left alone.
 */
function removeAbandonedPartials(path: string): void {
  const prefix = `.${basename(path)}.partial-`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return; // the write itself says what is wrong with the directory
  }
  for (const name of names) {
    const pid = name.startsWith(prefix) ? /^(\d+)-[0-9a-f]{8}$/.exec(name.slice(prefix.length))?.[1] : undefined;
    if (pid === undefined || processRuns(Number(pid))) continue;
    try {
      unlinkSync(join(dirname(path), name));
    } catch {
      // gone meanwhile, or not ours to remove: left
    }
  }
}

/** Whether a process with this pid exists (ours, or another user's: EPERM). Not a pid (0, -1: a group): false. */
export function processRuns(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}


/**
 * A file the user named (a bundle to read or write, a backup directory) that the system refuses
 * (no permission, a read-only or pseudo file system, a path that leads nowhere) is their input's
 * problem, said as such: exit 2, the path and the system's reason, nothing written. Anything
 * else (not an errno error) is passed on as it is.
 */
export function fileError(action: "read" | "write" | "create", path: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return error;
  const reasons: Record<string, string> = {
    EACCES: "permission denied",
    EPERM: "operation not permitted",
    EROFS: "read-only file system",
    ENOENT: "no such file or directory",
    ENOTDIR: "a part of the path is not a directory",
    EISDIR: "it is a directory",
    EEXIST: "a file or a dangling link is in the way",
  };
  const what = action === "create" ? `Cannot create the directory ${path}` : `Cannot ${action} ${path}`;
  return new ApexError("APEX_E_BAD_INPUT", `${what}: ${reasons[code] ?? (error as Error).message} (${code}).`, {
    hint: action === "read" ? "Check the path and that this user may read the file." : "Choose a directory this user may write to. Nothing was written.",
    cause: error,
  });
}
