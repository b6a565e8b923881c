import type { Subscription } from "../core/rpc/call.js";
import { whenStdoutReaderGone } from "./stdout-reader.js";

/**
 * Calls `stop` on Ctrl-C, on SIGTERM, and once whoever read stdout has gone (`… | head -1`):
 * a follower ends then, not at its next line. Returns what undoes it.
 */
export function onInterruption(stop: () => void): () => void {
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  const unwatch = whenStdoutReaderGone(stop);
  return () => {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    unwatch();
  };
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
