import { ApexError } from "../core/errors.js";
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
  /** Every `next` answered so far: a server that names one again would be asked for ever (each `next` is a key past the one before). */
  const asked = new Set<string>();
  for (;;) {
    let reply: unknown;
    try {
      reply = await client.call("memory.page", { glob, ...(limit === undefined ? {} : { limit: limit - entries.length }), ...(after === undefined ? {} : { after }) });
    } catch (error) {
      if (after === undefined && unknownMethod(error) === "memory.page") return (await client.call("memory.query", { glob, limit })) as Entry[];
      throw error;
    }
    const page = readablePage(reply, asked, glob);
    // One at a time: a spread of many thousand entries into push() would pass the stack's limit on arguments.
    for (const entry of page.entries) entries.push(entry);
    // The limit is this side's too: a server answering past it is not asked on.
    if (limit !== undefined && entries.length >= limit) return entries.slice(0, limit);
    if (page.next === undefined) return entries;
    asked.add(page.next);
    after = page.next;
  }
}

/**
 * A page as memory.page answers one (plugins/memory-pages.ts: its entries, and `next`, the key of
 * the last one it read, each past the one before; `apex serve` may leave a page's entries out for
 * a grant and keep its `next`), checked before it is used: the answer of a supervisor or of
 * `apex serve` on another host, which may not be APEX. A `next` named before makes no progress,
 * and this side asked for pages for ever, holding every entry they sent; a page of another shape
 * failed as an internal error on the first entry read.
 */
function readablePage(reply: unknown, asked: ReadonlySet<string>, glob: string): { entries: Entry[]; next?: string } {
  const page = reply as { entries?: unknown; next?: unknown } | null;
  const entries = page !== null && typeof page === "object" && Array.isArray(page.entries) ? (page.entries as unknown[]) : undefined;
  const next = page?.next;
  const problem =
    entries === undefined
      ? "it is not a page of entries"
      : !entries.every((entry) => entry !== null && typeof entry === "object" && typeof (entry as { path?: unknown }).path === "string")
        ? "an entry without its path"
        : next !== undefined && typeof next !== "string"
          ? "its `next` is not a path"
          : typeof next === "string" && asked.has(next)
            ? `it names as the next page one it named before, ${JSON.stringify(next.slice(0, 80))}`
            : undefined;
  if (problem === undefined) return page as { entries: Entry[]; next?: string };
  throw new ApexError("APEX_E_RPC", `The answer to memory.page for ${JSON.stringify(glob)} is not one this version of APEX can read: ${problem}. Nothing more was asked.`, {
    hint: "Is the other end `apex serve` (or a supervisor) of this version of APEX?",
    details: { method: "memory.page" },
  });
}
