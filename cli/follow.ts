import type { Subscription } from "../core/rpc/call.js";
import { whenStdoutReaderGone } from "./stdout-reader.js";

/**
 * Calls `stop` on Ctrl-C, on SIGTERM, and once whoever read stdout has gone (`… | head -1`):
 * a follower ends then, not at its next line. Returns what undoes it.
 */
export function onInterruption(stop: () => void): () => void {
  // In place before the first SIGTERM, and left once this is undone: with no SIGTERM listener at all, even for an
  // instant (the one-time listener gone as it runs; the follower done, the command still ending), Node restores
  // SIGTERM's default action, and a session's second signal to its agent's group killed a follower ending
  // cleanly (exit 143): one that saw its session end before the stop's first SIGTERM reached it, too.
  ignoreFurtherSigterm();
  const ending = () => {
    ignoreFurtherSigterm();
    stop();
  };
  process.once("SIGINT", ending);
  process.once("SIGTERM", ending);
  const unwatch = whenStdoutReaderGone(ending);
  return () => {
    process.off("SIGINT", ending);
    process.off("SIGTERM", ending);
    unwatch();
  };
}

let ignoring = false;

/**
 * From now on a SIGTERM is ignored but by the follower's own one-time listener (onInterruption): the process is
 * ending once that has run, or once the follower is done. A stopping session signals its agents' process
 * groups again once their leader has exited, so a follower run inside an agent (`memory watch`, `logs -f`,
 * `connect`) gets a second SIGTERM while it ends after the first; with no listener left, that one killed it
 * (exit 143, its last words unsaid) about two times in three, where the first ended it cleanly (exit 0).
 */
export function ignoreFurtherSigterm(): void {
  if (ignoring) return;
  ignoring = true;
  process.on("SIGTERM", () => {});
}

/** Waits for a subscription to end, closing it on Ctrl-C, SIGTERM or a reader gone (`logs -f`, `connect`). */
export async function followUntilInterrupted(subscription: Subscription): Promise<void> {
  const undo = onInterruption(() => subscription.close());
  try {
    await subscription.done;
  } finally {
    undo();
  }
}
