import { unknownMethod } from "../core/rpc/protocol.js";
import type { SessionClient } from "../core/session/client.js";
import type { Entry } from "../core/store/store.js";

/**
 * The entries GLOB matches (at most LIMIT), as memory.query answers them. Through a supervisor's
 * socket or `apex serve`, a page at a time (memory.page: 64 MiB of JSON, or one entry alone), each
 * asked from where the one before ended: one reply holds at most 256 MiB of JSON (a socket's line,
 * the largest reply the remote client reads), and a subtree of more failed with APEX_E_TOO_LARGE
 * there while the store read directly printed it. A supervisor or server of an older APEX, which
 * has no memory.page (or does not serve it), is asked memory.query, as before: its answer whole,
 * or its error. With the store in this process, memory.query.
 */
export async function queryEntries(client: SessionClient, glob: string, limit?: number): Promise<Entry[]> {
  if (client.via === "store") return (await client.call("memory.query", { glob, limit })) as Entry[];
  const entries: Entry[] = [];
  let after: string | undefined;
  for (;;) {
    let page: { entries: Entry[]; next?: string };
    try {
      page = (await client.call("memory.page", { glob, ...(limit === undefined ? {} : { limit: limit - entries.length }), ...(after === undefined ? {} : { after }) })) as typeof page;
    } catch (error) {
      if (after === undefined && unknownMethod(error) === "memory.page") return (await client.call("memory.query", { glob, limit })) as Entry[];
      throw error;
    }
    // One at a time: a spread of many thousand entries into push() would pass the stack's limit on arguments.
    for (const entry of page.entries) entries.push(entry);
    if (page.next === undefined) return entries;
    after = page.next;
  }
}
