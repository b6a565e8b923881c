import type { ProjectLocation } from "../core/config/locate.js";
import { currentActor, openSessionClient } from "../core/session/client.js";
import type { Entry, JsonValue } from "../core/store/store.js";
import type { MemoryWriter } from "./context.js";
import type { MemoryView } from "../core/session/memory-view.js";

/**
 * A writer for the project memory. While a supervisor holds the project it is the store's one
 * writer, so writes go over its control socket; inside an agent (APEX_SOCKET set) they always
 * do, and LMDB is never opened. With no supervisor running, the store is written directly,
 * after checking the config and that every plugin it names exists: nothing is written while
 * apex.config.yaml is invalid.
 */
export async function openMemoryWriter(location: ProjectLocation): Promise<MemoryWriter> {
  const client = await openSessionClient(location, "write", { direct: "store" });
  const actor = currentActor();
  const call = (method: string, params: Record<string, unknown>) => client.call(method, { ...params, actor }, 120_000);
  return {
    async set(path: string, value: JsonValue, force = false) {
      return (await call("memory.set", { path, value, ...(force ? { force } : {}) })) as { revision: number };
    },
    async delete(path: string, recursive: boolean, force = false) {
      return (await call("memory.delete", { path, recursive, ...(force ? { force } : {}) })) as { deleted: number; revision: number };
    },
    async importEntries(entries: Entry[], force = false) {
      return (await call("memory.import", { entries, ...(force ? { force } : {}) })) as { count: number; revision: number };
    },
    close: () => client.close(),
  };
}
