import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, linkSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync, unlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { ApexError } from "../../core/errors.js";
import { ObjectStore } from "../checkpoint/engine/objects.js";
import { makePrivate } from "../../core/store/private.js";
import { type Store, STORE_FILE } from "../../core/store/store.js";
import { openStore } from "../../core/store/open.js";
import { Catalog } from "../checkpoint/catalog.js";
import { validateStore } from "../checkpoint/validate.js";
import { formatBytes } from "../../cli/output.js";
import { makeBackupDirectory } from "./files.js";
import { fileError, processRuns } from "../../cli/output-file.js";
import { syncDirectory, syncFile } from "../file-system.js";

export interface BackupOptions {
  /** The live store's directory. */
  storeDir: string;
  /** Directory the copy goes to (absolute); it must not hold a store yet. */
  target: string;
  /**
   * target is the default backup_location/store-<time>: what interrupted backups left in its siblings
   * is removed too, and a backup made in the same second (one just before, or one at once) has it
   * already, so this one takes store-<time>-2 (-3, …): a directory of its own.
   */
  defaultTarget?: boolean;
  onProgress?: (text: string) => void;
}

export interface StoreCounts {
  records: number;
  checkpoints: number;
  values: number;
  trees: number;
  packs: number;
}

export interface BackupResult {
  directory: string;
  file: string;
  /** Size of the copy, and of the live store's file. */
  bytes: number;
  sourceBytes: number;
  /** Store revision the copy holds. */
  revision: number;
  counts: StoreCounts;
  /** validateStore on the copy. */
  validation: { ok: boolean; errors: number; warnings: number; problems: string[] };
  ms: number;
  /** What backups killed while copying had left (their partial copies, and default directories holding nothing else), removed. */
  swept: string[];
}

/**
 * A consistent, compacted copy of the whole store (LMDB's copy with compaction, made in one
 * read transaction: writers are not blocked), then verified: the copy is opened read-only,
 * its revision must lie between the store's revisions before and after the copy, its
 * record, checkpoint and object counts must equal the store's when nothing was written
 * meanwhile, and `validateStore` runs on it. The copy is written to a temporary directory
 * inside `target` and moved to target/store.mdb only once complete; a backup never
 * overwrites a store. A copy that fails validation is kept (the store has the same
 * problems) and reported; one that does not match the store is deleted.
 */
export async function backupStore(options: BackupOptions): Promise<BackupResult> {
  const started = performance.now();
  let { target } = options;
  if (!options.defaultTarget) {
    if (existsSync(target) && !statSync(target).isDirectory()) {
      throw new ApexError("APEX_E_CONFLICT", `${target} exists and is not a directory.`, { hint: "Give a directory without a store.mdb to --to." });
    }
    if (existsSync(join(target, STORE_FILE))) {
      throw new ApexError("APEX_E_CONFLICT", `${target} already holds a store (${STORE_FILE}); a backup never overwrites one.`, { hint: "Give a directory without a store.mdb to --to." });
    }
  }
  const swept = sweepInterruptedBackups(options.defaultTarget ? dirname(target) : target, Boolean(options.defaultTarget));
  const live = await openStore(options.storeDir, { readOnly: true });
  let partial: string | undefined;
  let created: string[] = [];
  let done = false;
  try {
    const sourceBytes = statSync(join(options.storeDir, STORE_FILE)).size;
    if (options.defaultTarget) {
      created = makeBackupDirectory(dirname(target));
      target = claimDirectory(target);
      created.push(target);
    } else created = makeBackupDirectory(target);
    const final = join(target, STORE_FILE);
    partial = join(target, `.apex-backup-partial-${process.pid}-${randomBytes(4).toString("hex")}`);
    makeBackupDirectory(partial);
    const copyFile = join(partial, STORE_FILE);

    const before = live.revision();
    const liveCounts = countsOf(live);
    const timer = options.onProgress
      ? setInterval(() => {
          const size = existsSync(copyFile) ? statSync(copyFile).size : 0;
          options.onProgress!(`copying the store: ${formatBytes(size)} of at most ${formatBytes(sourceBytes)}`);
        }, 200)
      : undefined;
    try {
      if (!live.snapshotTo) throw new ApexError("APEX_E_USAGE", `A backup copies an LMDB store; this store is on ${live.info.backend} (${live.info.location}).`);
      await live.snapshotTo(copyFile);
      makePrivate(copyFile); // a copy of the store is as private as the store
    } finally {
      if (timer) clearInterval(timer);
    }
    const after = live.revision();

    options.onProgress?.("verifying the copy");
    const copy = await openStore(partial, { readOnly: true });
    let revision: number;
    let counts: StoreCounts;
    let validation: BackupResult["validation"];
    try {
      revision = copy.revision();
      if (revision < before || revision > after) {
        throw new ApexError("APEX_E_INTEGRITY", `The copy holds revision ${revision}, but the store was at ${before}..${after} while it was made.`, {
          hint: "Nothing was kept. Try again.",
        });
      }
      counts = countsOf(copy);
      if (before === after) {
        const differ = (Object.keys(counts) as Array<keyof StoreCounts>).filter((key) => counts[key] !== liveCounts[key]);
        if (differ.length > 0) {
          throw new ApexError("APEX_E_INTEGRITY", `The copy differs from the store: ${differ.map((key) => `${key} ${counts[key]} vs ${liveCounts[key]}`).join(", ")}.`, {
            hint: "Nothing was kept. Try again; if it persists, the store's file is damaged.",
          });
        }
      }
      const report = validateStore(copy);
      const errors = report.problems.filter((problem) => problem.severity === "error");
      validation = {
        ok: report.ok,
        errors: errors.length,
        warnings: report.problems.length - errors.length,
        problems: errors.slice(0, 10).map((problem) => `${problem.code}: ${problem.message}`),
      };
    } finally {
      await copy.close();
    }

    // Its bytes on disk before it has its name (LMDB's copy closes it without an fsync).
    syncFile(copyFile);
    // Into place: a hard link fails rather than replace a store that appeared meanwhile.
    try {
      linkSync(copyFile, final);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") {
        throw new ApexError("APEX_E_CONFLICT", `${final} appeared while the backup was made; not replacing it.`, { hint: "Give a directory without a store.mdb to --to." });
      }
      throw error;
    }
    unlinkSync(copyFile);
    syncDirectory(target);
    done = true;
    return {
      directory: target,
      file: final,
      bytes: statSync(final).size,
      sourceBytes,
      revision,
      counts,
      validation,
      ms: Math.round(performance.now() - started),
      swept,
    };
  } finally {
    // Its removal never hides why the backup failed (a --to under a file: ENOTDIR again, said as a plugin's failure).
    if (partial) tryRemove(partial);
    // A backup that failed leaves nothing behind, not even the directories it made, but only
    // while they are empty: another backup to the same directory may have put its copy there
    // meanwhile (the one that made them is then the one that fails: removing the tree took
    // a backup already reported as saved with it).
    if (!done) for (const dir of created.reverse()) removeIfEmpty(dir);
    await live.close();
  }
}

const PARTIAL = /^\.apex-backup-partial-(\d+)-[0-9a-f]+$/;
const DEFAULT_NAME = /^store-\d{8}T\d{6}Z(-\d+)?$/;

/** The most default directories of one second tried before giving up. */
const MAX_SAME_SECOND = 1000;

/**
 * Makes a new directory for a default backup, owner-only: `base`, else `base-2`, `base-3`, … A
 * directory that is there already (a backup made in the same second, or being made by another
 * process at once) is never taken: mkdir fails with EEXIST rather than share one. Both were given
 * store-<time>, and the second was refused for a store.mdb it had not been told of.
 */
function claimDirectory(base: string): string {
  for (let n = 1; n <= MAX_SAME_SECOND; n++) {
    const dir = n === 1 ? base : `${base}-${n}`;
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") continue;
      throw fileError("create", dir, error);
    }
    chmodSync(dir, 0o700); // mkdir's mode is cut by the umask
    return dir;
  }
  throw new ApexError("APEX_E_CONFLICT", `${base} and ${MAX_SAME_SECOND - 1} more directories named for this second are taken; not making another.`, {
    hint: "Give a directory without a store.mdb to --to.",
  });
}

/**
 * A backup killed while copying (kill -9, power loss, OOM) leaves its partial copy (as large as
 * the store) in `.apex-backup-partial-<pid>-…`, and with the default target a store-<time>
 * directory that looks like a backup and holds nothing else. The next backup removes them: in
 * `dir` (--to DIR), or in every store-<time> directory of the backup location `dir`. A partial
 * copy whose process still runs (a backup going on, or its pid taken since) is left alone.
 */
export function sweepInterruptedBackups(dir: string, backupLocation: boolean): string[] {
  const removed: string[] = [];
  const sweep = (at: string) => {
    for (const name of listNames(at)) {
      const pid = PARTIAL.exec(name)?.[1];
      if (pid === undefined || processRuns(Number(pid))) continue;
      rmSync(join(at, name), { recursive: true, force: true });
      removed.push(join(at, name));
    }
  };
  if (!backupLocation) {
    sweep(dir);
    return removed;
  }
  for (const name of listNames(dir)) {
    if (!DEFAULT_NAME.test(name)) continue;
    const at = join(dir, name);
    const before = removed.length;
    sweep(at);
    if (removed.length > before && listNames(at).length === 0) {
      removeIfEmpty(at);
      if (!existsSync(at)) removed.splice(before, removed.length - before, at);
    }
  }
  return removed;
}

function listNames(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return []; // not there yet, or not a directory: the backup itself says so
  }
}

function tryRemove(path: string): void {
  try {
    rmSync(path, { recursive: true, force: true });
  } catch {
    // not there to remove (its directory could not be made)
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or gone: left as it is
  }
}

export function countsOf(store: Store): StoreCounts {
  let records = 0;
  for (const _ of store.keysBelow("/")) records += 1;
  let checkpoints = 0;
  for (const _ of Catalog.of(store).summaryKeys()) checkpoints += 1;
  const objects = ObjectStore.of(store);
  let packs = 0;
  for (const _ of objects.packIds()) packs += 1;
  return { records, checkpoints, values: objects.count("value"), trees: objects.count("tree"), packs };
}

/** backup_location/store-20260101T120000Z: a new directory name for a backup made at `now`. */
export function defaultBackupDirectory(backupLocation: string, now: Date): string {
  return join(backupLocation, `store-${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`);
}
