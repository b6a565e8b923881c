import type { Subscription } from "../core/rpc/call.js";

/** Waits for a subscription to end, closing it on Ctrl-C or SIGTERM (`logs -f`, `connect`). */
export async function followUntilInterrupted(subscription: Subscription): Promise<void> {
  const stop = () => subscription.close();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await subscription.done;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}
