import { extname } from "node:path";
import type { RootDatabase, RootDatabaseOptionsWithPath } from "lmdb";

/**
 * lmdb-js's open, made safe against an open that races the last close of the store by another
 * process. LMDB (with the robust POSIX mutexes lmdb-js builds it with) keeps its reader and writer
 * mutexes in the lock file, and a process closing the environment that finds itself its only user
 * (it gets the lock file's exclusive lock) destroys them. An opener that tried for that exclusive
 * lock a moment before (when the closer still held its shared one) then waits for a shared lock,
 * gets it once the closer is gone, and goes on with the destroyed mutexes: its first transaction
 * fails with EINVAL ("Invalid argument"), and so does every other process's open after it, since
 * none of them gets the exclusive lock that would set the mutexes up again while it holds its
 * shared one. Measured here: two or three processes opening and closing one store read-only in a
 * loop met it in most runs within a second; CLI commands run at once met it (an id prefix not
 * looked up, a command failing with "Cannot open the store … Invalid argument").
 *
 * lmdb-js also keeps the environment of an open that failed in its first transaction (inside its
 * own open, which throws): every later open of the file in this process is given that broken
 * environment, and its shared lock keeps the mutexes from being set up again for every process
 * until this one exits. So the root is constructed here, from the class lmdb-js's open returns
 * with `asClass`, with the options lmdb-js's open would give it; when that fails, the environment
 * is closed, and an EINVAL is tried again: the open that finds the lock file unused sets the
 * mutexes up (every process that met the failure closes too), and the ones after it share them.
 */

/** How often an open that met destroyed mutexes is tried again; a few milliseconds apart, about a second in all. */
const ATTEMPTS = 40;
const WAIT_MS = 25;

type RootClass = new (name: null, options: object) => RootDatabase;

export function openRoot(open: (options: RootDatabaseOptionsWithPath) => RootDatabase, options: RootDatabaseOptionsWithPath & { path: string }): RootDatabase {
  for (let attempt = 1; ; attempt++) {
    const Root = open({ ...options, asClass: true } as RootDatabaseOptionsWithPath) as unknown as RootClass | RootDatabase;
    // An lmdb-js that no longer knows `asClass` opens the root itself: taken as it is (without the retry).
    if (typeof Root !== "function") return Root;
    try {
      // What lmdb-js's open passes its root (its defaults under the options given): a data file named
      // with an extension is not a directory, the root is the environment's, and the map is one
      // mapping (remapChunks is for 32-bit address spaces).
      return new Root(null, { noSubdir: extname(options.path) !== "", isRoot: true, maxDbs: 12, remapChunks: false, safeRestore: process.env.LMDB_RESTORE === "safe", ...options });
    } catch (error) {
      // The environment this open took (or its reference to this process's) is let go: kept, it is every later open's.
      closeUnconstructed(Root);
      if (attempt >= ATTEMPTS || !destroyedMutexes(error)) throw error;
      // Spread out: the other processes that met it close meanwhile, so that one of them, or this one, finds the lock file unused.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, WAIT_MS / 2 + Math.random() * WAIT_MS);
    }
  }
}

/**
 * EINVAL from the open's first transaction: LMDB's mutexes in the lock file destroyed under it. lmdb-js
 * reports it as "Invalid argument", from a read-only open's read transaction, and from a writable
 * open's as "Invalid argument: No transaction to renew" (its write transaction did not begin).
 */
function destroyedMutexes(error: unknown): boolean {
  return error instanceof Error && /^Invalid argument\b/.test(error.message);
}

/** Closes the environment of a root class whose construction failed: lmdb-js's close, for the root, without an instance. */
function closeUnconstructed(Root: RootClass): void {
  try {
    const closing = (Root.prototype as unknown as { close(this: object): Promise<void> | undefined }).close.call(Object.assign(Object.create(Root.prototype) as object, { isRoot: true }));
    closing?.catch(() => undefined);
  } catch {
    // closed already
  }
}
