import type { ProjectLocation } from "../core/config/locate.js";
import { currentActor } from "../core/actor.js";
import { openWriteClient } from "./stopping-retry.js";
import type { Entry, JsonValue } from "../core/store/store.js";
import type { MemoryWriter } from "./context.js";
import type { Store } from "../core/store/store.js";
import { ApexError, isApexError } from "../core/errors.js";
import { memoryRootOf } from "../core/session/records.js";
import { shortSessionId } from "../core/session/names.js";

/**
 * A writer for the project memory. While a supervisor holds the project it is the store's one
 * writer, so writes go over its control socket; inside an agent (APEX_SOCKET set) they always
 * do, and LMDB is never opened. With no supervisor running, the store is written directly,
 * after checking the config and that every plugin it names exists: nothing is written while
 * apex.config.yaml is invalid.
 */
export async function openMemoryWriter(location: ProjectLocation): Promise<MemoryWriter> {
  // Refused by a supervisor that is stopping, a write is made again once it has exited (stopping-retry.ts).
  const client = await openWriteClient(location, { direct: "store" }, async (opened) => {
    if (opened.via === "store") await opened.run("memory.owner", {}, refuseAnotherSessionsMemory);
  });
  const actor = currentActor();
  const call = (method: string, params: Record<string, unknown>) => client.call(method, { ...params, actor }, 120_000).catch((error: unknown) => {
    if (client.via === "socket" && isApexError(error) && error.code === "APEX_E_TIMEOUT") throw mayStillLand(error, method, params);
    // More than the supervisor takes in one request: what to do depends on what was sent (a value cannot be imported in parts).
    if (client.via !== "socket" || !isApexError(error) || error.code !== "APEX_E_TOO_LARGE" || !/^The request is larger/.test(error.message)) throw error;
    const hint = method === "memory.set"
      ? "Split it across several paths (/big/part-1, /big/part-2, …): a memory value may be at most 256 MiB of JSON."
      : method === "memory.import" ? "Import it in parts (several smaller files: `apex memory export GLOB` writes a part), or with no session running (`apex stop`): then the store is written directly." : error.hint;
    throw new ApexError(error.code, error.message, { ...(hint ? { hint } : {}), ...(error.details ? { details: error.details } : {}) });
  });
  return {
    async set(path: string, value: JsonValue, force = false) {
      return (await call("memory.set", { path, value, ...(force ? { force } : {}) })) as { revision: number };
    },
    async delete(path: string, recursive: boolean, force = false) {
      return (await call("memory.delete", { path, recursive, ...(force ? { force } : {}) })) as { deleted: number; revision: number };
    },
    async importEntries(entries: Entry[], force = false) {
      // Through `apex serve`, whose requests carry at most 1 MiB: sent in parts, which the server writes as one import.
      if (client.via === "remote") return (await importInParts(entries, force, call)) as { count: number; revision: number };
      return (await call("memory.import", { entries, ...(force ? { force } : {}) })) as { count: number; revision: number };
    },
    close: () => client.close(),
  };
}

/** The largest request body `apex serve` takes (its bodyLimit), less room for the rest of the request around the entries. */
const SERVE_BODY_BYTES = 1024 * 1024;
const PART_BYTES = SERVE_BODY_BYTES - 16 * 1024;

/**
 * An import through `apex serve` larger than one request body: its entries sent in parts that
 * each fit (`memory.stage`), the last with `memory.import`, which the server sends to the session
 * as one import of them all: one transaction, all or nothing, as locally (staged-imports.ts).
 * It was refused whole (413, `split a large value across several paths`). One entry that alone
 * does not fit in a request cannot be sent: refused before anything is sent, naming it and the limit.
 */
async function importInParts(entries: Entry[], force: boolean, call: (method: string, params: Record<string, unknown>) => Promise<unknown>): Promise<unknown> {
  const extra = force ? { force } : {};
  const sizes = entries.map((entry) => Buffer.byteLength(JSON.stringify(entry)) + 1);
  const total = sizes.reduce((sum, size) => sum + size, 0);
  if (total <= PART_BYTES) return call("memory.import", { entries, ...extra });
  const tooLarge = sizes.findIndex((size) => size > PART_BYTES);
  if (tooLarge >= 0) {
    const { path } = entries[tooLarge]!;
    throw new ApexError("APEX_E_TOO_LARGE", `The entry for ${path} is ${sizes[tooLarge]} bytes of JSON; through apex serve one request carries at most ${SERVE_BODY_BYTES / 1024 / 1024} MiB (${SERVE_BODY_BYTES} bytes), and an entry is not split. Nothing was imported.`, {
      hint: "Split its value across several paths (/big/part-1, /big/part-2, …), or import the file on the server's host (`apex memory import`).",
      details: { path, bytes: sizes[tooLarge], limit_bytes: SERVE_BODY_BYTES },
    });
  }
  const parts: Entry[][] = [[]];
  let bytes = 0;
  entries.forEach((entry, index) => {
    if (bytes + sizes[index]! > PART_BYTES && parts.at(-1)!.length > 0) {
      parts.push([]);
      bytes = 0;
    }
    parts.at(-1)!.push(entry);
    bytes += sizes[index]!;
  });
  const { randomBytes } = await import("node:crypto");
  const upload = randomBytes(16).toString("hex");
  for (const part of parts.slice(0, -1)) {
    await call("memory.stage", { upload, entries: part }).catch((error: unknown) => {
      // A server of an older APEX, which takes an import in one request only: nothing was written.
      if (!isApexError(error) || error.code !== "APEX_E_NOT_FOUND" || error.details?.unknown_method !== "memory.stage") throw error;
      throw new ApexError("APEX_E_TOO_LARGE", `The import is ${total} bytes of JSON, more than one request to apex serve carries (${SERVE_BODY_BYTES / 1024 / 1024} MiB), and the server, of an older APEX, does not take an import in parts. Nothing was imported.`, {
        hint: "Import it in files of under 1 MiB each (`apex memory export GLOB` writes a part), or on the server's host (`apex memory import`).",
        details: { bytes: total, limit_bytes: SERVE_BODY_BYTES },
      });
    });
  }
  return call("memory.import", { upload, entries: parts.at(-1)!, ...extra });
}

/**
 * Sessions of the project's own tree share one working memory, the keyspace's root, which holds
 * the memory of the one that ran last. A write for another of them (`apex --session BRANCH memory
 * set …` of a branch made without --worktree that has not run since) would land in that memory,
 * not in its own: refused before anything is written, with the command that gives it its memory.
 * A worktree session has a root of its own, which its first start writes from its checkpoint,
 * replacing what is there: a write before that (in the branch's worktree) was reported saved,
 * then lost at that start; it is refused the same way. (A session its tree's binding does not
 * name is left to the write, which names the problem.)
 */
async function refuseAnotherSessionsMemory(store: Store): Promise<void> {
  return refuseMemoryNotHeld(store, false);
}

/**
 * The same for a read (`memory show|query|export`, READING): it showed the memory the session
 * that ran last left, or an empty root, as the named session's own; refused, pointing at the
 * checkpoint that holds its memory until it runs.
 */
export async function refuseMemoryNotHeld(store: Store, reading: boolean): Promise<void> {
  const { boundSessionId, findSession, holdsLiveMemory, liveMemoryOwner } = await import("../core/session/sessions.js");
  let sessionId: string | undefined;
  try {
    sessionId = boundSessionId(store);
  } catch {
    return;
  }
  const record = sessionId === undefined ? undefined : findSession(store, sessionId);
  if (!record || holdsLiveMemory(store, record.session_id)) return;
  const label = (id: string) => (findSession(store, id)?.name as string | undefined) ?? shortSessionId(id);
  const readHint = `Until it runs, its memory is its latest checkpoint's (\`apex checkpoint show ${label(record.session_id)}/latest\` lists its paths); \`apex start --continue ${label(record.session_id)}\` gives it that memory.`;
  if (memoryRootOf(record) !== "") {
    if (reading) throw new ApexError("APEX_E_SESSION_STATE", `Session ${label(record.session_id)} has not run yet: its memory is written by its first start, from the checkpoint it was branched from, and is not in the store before then.`, { hint: readHint, details: { session_id: record.session_id } });
    throw new ApexError("APEX_E_SESSION_STATE", `Session ${label(record.session_id)} has not run yet: its first start writes its memory from the checkpoint it was branched from, replacing whatever is there, so this write would be lost then. Nothing was written.`, {
      hint: `Start it first (apex start --continue ${label(record.session_id)}: its memory is then that checkpoint's), then write.`,
      details: { session_id: record.session_id },
    });
  }
  const owner = liveMemoryOwner(store);
  if (owner === undefined) return;
  if (reading) {
    throw new ApexError("APEX_E_SESSION_STATE", `Session ${label(record.session_id)} does not hold the project's memory (${label(owner)} does: it ran last in the project's tree): what is stored is ${label(owner)}'s memory, not ${label(record.session_id)}'s.`, {
      hint: `${readHint} Without --session, memory commands read ${label(owner)}'s.`,
      details: { session_id: record.session_id, memory_of: owner },
    });
  }
  throw new ApexError("APEX_E_SESSION_STATE", `Session ${label(record.session_id)} does not hold the project's memory (${label(owner)} does: it ran last in the project's tree), so this write would go into ${label(owner)}'s memory, not into ${label(record.session_id)}'s. Nothing was written.`, {
    hint: `Continue it first (apex start --continue ${label(record.session_id)}: its memory is its latest checkpoint's), then write; or write to ${label(owner)} without --session.`,
    details: { session_id: record.session_id, memory_of: owner },
  });
}

/**
 * A write the supervisor did not answer in time (busy past the bound, or stopped) was sent: it
 * may still be carried out. The timeout said only that it timed out, and a rerun could then
 * write twice (an import) or undo what landed meanwhile; it now says so, and how to look.
 */
function mayStillLand(error: ApexError, method: string, params: Record<string, unknown>): ApexError {
  const entries = Array.isArray(params.entries) ? (params.entries as Entry[]) : [];
  const path = typeof params.path === "string" ? params.path : entries[0]?.path;
  const what = method === "memory.delete" ? `the delete of ${path}` : method === "memory.import" ? `the import of ${entries.length} entr${entries.length === 1 ? "y" : "ies"}` : `the write of ${path}`;
  const quoted = path !== undefined && !/^[\w/.@%+=:,-]+$/.test(path) ? `'${path.replace(/'/g, "'\\''")}'` : path;
  const check = path === undefined ? "apex memory query '/**' --keys" : `apex memory show ${quoted}`;
  return new ApexError(error.code, `${error.message} ${what[0]!.toUpperCase()}${what.slice(1)} was sent and may still land.`, {
    hint: `Check with \`${check}\` before writing it again. ${error.hint ?? ""}`.trim(),
    details: { ...error.details, sent: true, may_still_land: true, ...(path === undefined ? {} : { path }), check },
  });
}
