import { statSync } from "node:fs";
import { ApexError } from "../../core/errors.js";

/**
 * lmdb-js keeps one LMDB environment per data file per process: a second open of a file that
 * is open already (found by device and inode) gets the first open's environment, read-only if
 * that one was, whatever it asked for. A writable open then has no write transaction (lmdb-js's
 * native begin ignores the EACCES of `mdb_txn_begin`), and its first read fails with "Invalid
 * argument: No transaction to renew". lmdb-js's open has taken its reference to the environment
 * by then and nothing drops it, so every later writable open in the process fails the same way.
 * `apex serve` met it: a request reading an interrupted session held a read-only store while the
 * same process opened the store to write.
 *
 * So this process counts its handles per data file, and knows whether the environment they share
 * was opened read-only (by the first of them). A writable open waits while it is (whenWritable)
 * until those handles are closed: they are short (one request's reads), and they are never held
 * across a writable open by the code that opened them. Beside a writable environment, read-only
 * and writable opens go ahead at once, as before.
 */

/** How long a writable open waits for this process's read-only environment of the file to close. */
export const WRITABLE_WAIT_MS = 30_000;

/** This process's handles of one data file, and whether their shared environment is read-only. */
interface FileHandles {
  handles: number;
  readOnly: boolean;
  /** The handles' lmdb-js roots, whose read snapshots a commit through another one renews (committed). */
  readers: Set<SnapshotHolder>;
}

/** An lmdb-js root (and the databases opened from it, which share its read transaction). */
export interface SnapshotHolder {
  resetReadTxn(): void;
}

const files = new Map<string, FileHandles>();
const waiters = new Map<string, Array<() => void>>();

/** The identity lmdb-js shares environments by (device and inode), or undefined for a file that does not exist. */
export function fileKey(file: string): string | undefined {
  const stat = statSync(file, { throwIfNoEntry: false, bigint: true });
  return stat ? `${stat.dev}:${stat.ino}` : undefined;
}

/** Handles of the file `key` open in this process on a read-only environment (0 when their environment is writable). */
export function readOnlyHandles(key: string | undefined): number {
  const open = key === undefined ? undefined : files.get(key);
  return open?.readOnly ? open.handles : 0;
}

/** A handle of the file `key` was opened; the first one decides the environment's mode. */
export function handleOpened(key: string, readOnly: boolean, reader?: SnapshotHolder): void {
  let open = files.get(key);
  if (open) open.handles++;
  else files.set(key, (open = { handles: 1, readOnly, readers: new Set() }));
  if (reader) open.readers.add(reader);
}

/**
 * A write through `by` committed to the file `key`: the other handles of this process read it
 * from their next read on. lmdb-js keeps each root's read snapshot until its next macrotask
 * (a setTimeout) and renews it at a commit of that root only, so a handle that had read in this
 * turn of the event loop read the state before a write another handle had finished (an
 * ApexSaver's getTuple right after another saver's put found the step before, or none).
 */
export function committed(key: string, by: SnapshotHolder): void {
  for (const reader of files.get(key)?.readers ?? []) {
    if (reader === by) continue;
    try {
      reader.resetReadTxn();
    } catch {
      // (a root closing meanwhile: it reads nothing more)
    }
  }
}

/** A handle of the file `key` was closed (its environment with it when it was the last). */
export function handleClosed(key: string, reader?: SnapshotHolder): void {
  const open = files.get(key);
  if (!open) return;
  if (reader) open.readers.delete(reader);
  if (--open.handles > 0) return;
  files.delete(key);
  const waiting = waiters.get(key) ?? [];
  waiters.delete(key);
  for (const wake of waiting) wake();
}

/**
 * Runs `open` once this process has no read-only environment of `file` (at once when it has
 * none), in the same step as that check, so that the open gets a writable one. A writable open
 * made while the code that makes it still holds a read-only handle would wait forever: after
 * `timeoutMs` it fails with APEX_E_STORE_IN_USE instead.
 */
export async function whenWritable<T>(file: string, open: () => T, timeoutMs = WRITABLE_WAIT_MS): Promise<T> {
  const started = Date.now();
  for (;;) {
    const key = fileKey(file);
    if (readOnlyHandles(key) === 0) return open();
    const left = timeoutMs - (Date.now() - started);
    if (left <= 0) throw readOnlyHere(file, readOnlyHandles(key));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      const list = waiters.get(key!) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve();
      });
      waiters.set(key!, list);
    });
  }
}

/** A writable open refused because this process has the file open read-only. */
export function readOnlyHere(file: string, handles: number): ApexError {
  return new ApexError(
    "APEX_E_STORE_IN_USE",
    `Cannot open the store at ${file} for writing: this process has it open read-only (${handles} handle${handles === 1 ? "" : "s"}), and LMDB gives every open of a file in one process the environment of the first. Nothing was written.`,
    { hint: "Close the read-only store before opening it for writing (or open it for writing first)." },
  );
}
