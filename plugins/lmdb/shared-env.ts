import { statSync } from "node:fs";
import { ApexError } from "../../core/errors.js";

/**
 * lmdb-js keeps one LMDB environment per data file per process: a second open of a file that
 * is open already (found by device and inode) gets the first open's environment, read-only if
 * that one was, whatever it asked for. A writable open then has no write transaction (lmdb-js's
 * native begin ignores the EACCES of `mdb_txn_begin`), and its first read fails with "Invalid
 * argument: No transaction to renew". `apex serve` met it: a request reading an interrupted
 * session held a read-only store while the same process opened the store to write.
 *
 * So this process counts its read-only handles per data file, and a writable open waits until
 * none is left (whenWritable): they are short (one request's reads), and they are never held
 * across a writable open by the code that opened them.
 */

/** How long a writable open waits for this process's read-only handles of the file to close. */
export const WRITABLE_WAIT_MS = 30_000;

const readers = new Map<string, number>();
const waiters = new Map<string, Array<() => void>>();

/** The identity lmdb-js shares environments by (device and inode), or undefined for a file that does not exist. */
export function fileKey(file: string): string | undefined {
  const stat = statSync(file, { throwIfNoEntry: false, bigint: true });
  return stat ? `${stat.dev}:${stat.ino}` : undefined;
}

/** Read-only handles of the file `key` this process has open. */
export function readersOf(key: string | undefined): number {
  return key === undefined ? 0 : (readers.get(key) ?? 0);
}

export function readerOpened(key: string): void {
  readers.set(key, readersOf(key) + 1);
}

export function readerClosed(key: string): void {
  const left = readersOf(key) - 1;
  if (left > 0) {
    readers.set(key, left);
    return;
  }
  readers.delete(key);
  const waiting = waiters.get(key) ?? [];
  waiters.delete(key);
  for (const wake of waiting) wake();
}

/**
 * Runs `open` once this process has no read-only handle of `file` open (at once when it has
 * none), in the same step as that check, so that the open gets an environment of its own,
 * writable. A writable open made while the code that makes it still holds a read-only handle
 * would wait forever: after `timeoutMs` it fails with APEX_E_STORE_IN_USE instead.
 */
export async function whenWritable<T>(file: string, open: () => T, timeoutMs = WRITABLE_WAIT_MS): Promise<T> {
  const started = Date.now();
  for (;;) {
    const key = fileKey(file);
    if (key === undefined || readersOf(key) === 0) return open();
    const left = timeoutMs - (Date.now() - started);
    if (left <= 0) throw readOnlyHere(file, readersOf(key));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      const list = waiters.get(key) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve();
      });
      waiters.set(key, list);
    });
  }
}

/** A writable open refused because this process has the file open read-only. */
export function readOnlyHere(file: string, handles: number): ApexError {
  return new ApexError(
    "APEX_E_STORE_IN_USE",
    `Cannot open the store at ${file} for writing: this process has it open read-only${handles > 0 ? ` (${handles} handle${handles === 1 ? "" : "s"})` : ""}, and LMDB gives every open of a file in one process the same environment. Nothing was written.`,
    { hint: "Close the read-only store before opening it for writing (or open it for writing first)." },
  );
}
