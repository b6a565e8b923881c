import type { Subscription } from "../core/rpc/call.js";
import { whenStdoutReaderGone } from "./stdout-reader.js";

/** Ctrl-C, SIGTERM or stdout's reader gone, listened for by a follower (listenForInterruption). */
export interface Interruption {
  /** Whether one came. */
  readonly interrupted: boolean;
  /** Calls `stop` once one comes: at once if one came already. */
  onStop(stop: () => void): void;
  /** Stops listening; a SIGTERM from now on is ignored (the command is ending). */
  undo(): void;
}

/**
 * Listens from now on for Ctrl-C, SIGTERM and whoever read stdout going (`… | head -1`): a
 * follower ends then, not at its next line. Called before a follower prints its first line: a
 * SIGTERM between that line and the listener (a stopping session's, to an agent following its
 * logs once what it waited for was printed) killed it (exit 143).
 */
export function listenForInterruption(): Interruption {
  // In place before the first SIGTERM, and left once this is undone: with no SIGTERM listener at all, even for an
  // instant (the one-time listener gone as it runs; the follower done, the command still ending), Node restores
  // SIGTERM's default action, and a session's second signal to its agent's group killed a follower ending
  // cleanly (exit 143): one that saw its session end before the stop's first SIGTERM reached it, too.
  ignoreFurtherSigterm();
  let came = false;
  let stop: (() => void) | undefined;
  const ending = () => {
    if (came) return;
    came = true;
    stop?.();
  };
  process.once("SIGINT", ending);
  process.once("SIGTERM", ending);
  const unwatch = whenStdoutReaderGone(ending);
  return {
    get interrupted() {
      return came;
    },
    onStop(next) {
      stop = next;
      if (came) next();
    },
    undo() {
      process.off("SIGINT", ending);
      process.off("SIGTERM", ending);
      unwatch();
    },
  };
}

/** Calls `stop` on Ctrl-C, on SIGTERM, and once whoever read stdout has gone (listenForInterruption). Returns what undoes it. */
export function onInterruption(stop: () => void): () => void {
  const interruption = listenForInterruption();
  interruption.onStop(stop);
  return () => interruption.undo();
}

let ignoring = false;

/**
 * From now on a SIGTERM is ignored but by the follower's own one-time listener (listenForInterruption): the process is
 * ending once that has run, or once the follower is done. A stopping session signals its agents' process
 * groups again once their leader has exited, so a follower run inside an agent (`memory watch`, `logs -f`,
 * `connect`) gets a second SIGTERM while it ends after the first; with no listener left, that one killed it
 * (exit 143, its last words unsaid) about two times in three, where the first ended it cleanly (exit 0).
 */
export function ignoreFurtherSigterm(): void {
  if (ignoring) return;
  ignoring = true;
  process.on("SIGTERM", () => {});
  // And one that comes as the process ends: once its last callback has run, Node closes its handles, SIGTERM's
  // among them (the default action back), before it exits, and a follower done was killed in that moment (exit
  // 143, seen with six `logs -f` in an agent's group at a stop). process.exit() from the 'exit' event exits at
  // once, with the exit code set, without that teardown; all was written (stdout and stderr are synchronous
  // on Linux: files and pipes), and nothing else was left to run.
  process.once("exit", () => process.exit());
}

/**
 * Waits for a subscription to end, closing it on Ctrl-C, SIGTERM or a reader gone (`logs -f`, `connect`): those
 * `interruption` listened for since before the follower printed its first line.
 */
export async function followUntilInterrupted(subscription: Subscription, interruption = listenForInterruption()): Promise<void> {
  interruption.onStop(() => subscription.close());
  try {
    await subscription.done;
  } finally {
    interruption.undo();
  }
}
