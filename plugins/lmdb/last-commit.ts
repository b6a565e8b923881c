import { fstatSync, openSync, readSync, statSync, writeSync } from "node:fs";
import { ApexError } from "../../core/errors.js";

/**
 * LMDB keeps the id of the last committed transaction in two places: in the data file's two
 * meta pages (the truth) and, "for convenience", in the shared lock file (`mti_txnid`), which
 * is what a transaction starts from: a write transaction builds on the meta page of that id.
 *
 * lmdb-js's LMDB (3.5.6) copies the newest meta page's id into the lock file on EVERY open of
 * the environment (mdb_env_open2), without holding the writer lock. When another process
 * commits between that open's read of the meta pages and its store, the lock file is set back
 * one commit; the next writer, in any process, then builds on the previous meta page and its
 * commit replaces the other one: an acknowledged write is gone, and since the pages freed by
 * the lost commit may be reused, the free list can be damaged too ("mdb_page_touch no parent").
 * Measured in C against lmdb-js's own mdb.c, no JavaScript at all: 20 processes, each
 * opening, committing one write and closing 60 times, lost 4 to 6 of 1,200 commits in every
 * one of 4 runs (MDB_NOSYNC, to run fast; with synced commits, 1 of 6,000 in 3 runs), and a
 * trace showed each loss as an open between a commit's meta page and the next writer's start.
 *
 * A write transaction that started from a set-back id is recognised from inside it, while it
 * holds LMDB's writer lock (no commit can happen meanwhile): its id is not above the newest
 * meta page's. Then the lock file's id is put right (newestCommit) and the transaction is
 * aborted and run again, now on the newest state. A read only ever sees the state of one
 * commit back, and only until the next open or commit, which store the right id again.
 */

/** LMDB's lock file stamp (MDB_MAGIC) at offset 0; the last committed id is a uint64 at offset 8 (MDB_txbody). */
const LOCK_MAGIC = 0xbeefc0de;
const TXNID_AT = 8;

/**
 * Descriptors of lock files opened here, never closed while the process lives: closing ANY
 * descriptor of a file drops every POSIX record lock the process holds on it, and LMDB's
 * shared lock on the lock file is what tells other processes they are not alone (one that
 * believes it is alone re-initialises the lock file under everyone's feet). Keyed by path,
 * with the inode to notice a store made anew at the same place.
 */
const lockFiles = new Map<string, { fd: number; ino: number }>();

function lockFileDescriptor(lockFile: string): number {
  const ino = statSync(lockFile).ino;
  const known = lockFiles.get(lockFile);
  if (known && known.ino === ino) return known.fd;
  const fd = openSync(lockFile, "r+");
  lockFiles.set(lockFile, { fd, ino: fstatSync(fd).ino });
  return fd;
}

/** Thrown inside a write transaction to abort it and run it again. */
export const STALE_START = Symbol("LMDB write transaction started from a set-back commit id");

/**
 * Puts LMDB's lock file right when the open write transaction `txnId` started from an older
 * commit than the newest meta page's (`newest`), and says so: the caller must then abort the
 * transaction and run it again. Only call it inside a write transaction (LMDB's writer lock
 * held). A lock file that is not LMDB's layout is refused rather than written.
 */
export function repairStaleStart(lockFile: string, txnId: number, newest: number): boolean {
  if (txnId > newest) return false;
  let fd: number;
  try {
    fd = lockFileDescriptor(lockFile);
    const head = Buffer.alloc(16);
    if (readSync(fd, head, 0, 16, 0) !== 16 || head.readUInt32LE(0) !== LOCK_MAGIC) throw new Error("not an LMDB lock file of the known layout");
    const recorded = head.readBigUInt64LE(TXNID_AT);
    if (recorded > BigInt(newest)) throw new Error(`its last commit id ${recorded} is ahead of the data file's ${newest}`);
    const right = Buffer.alloc(8);
    right.writeBigUInt64LE(BigInt(newest));
    if (writeSync(fd, right, 0, 8, TXNID_AT) !== 8) throw new Error("a short write");
  } catch (error) {
    throw new ApexError("APEX_E_STORE", `Cannot write safely: another process set the store's lock file ${lockFile} back to an older commit, and it cannot be put right (${(error as Error).message}). Nothing was written.`, {
      hint: "Try again; if it persists, stop every process using the store, then run the command again (the next open rebuilds the lock file).",
      cause: error,
    });
  }
  return true;
}
