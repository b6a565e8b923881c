import { currentActor } from "../actor.js";
import type { ProjectLocation } from "../config/locate.js";
import { callSupervisor } from "../rpc/call.js";
import { writerEndpoint } from "../session/runtime.js";
import type { Entry, JsonValue, Store } from "../store/store.js";
import type { MemoryWriter } from "./context.js";
import type { MemoryView } from "../session/memory-view.js";

/**
 * A writer for the project memory. While a supervisor holds the project it is the store's one
 * writer, so writes go over its control socket; inside an agent (APEX_SOCKET set) they always
 * do, and LMDB is never opened. With no supervisor running, the store is written directly,
 * after checking the config and that every plugin it names exists: nothing is written while
 * apex.config.yaml is invalid.
 */
export async function openMemoryWriter(location: ProjectLocation): Promise<MemoryWriter> {
  const socket = writerEndpoint(location.storeDir);
  if (socket) return socketWriter(socket);
  await assertConfigValid(location);
  const { openStore } = await import("../store/open.js");
  const { memoryViewOf } = await import("../session/memory-view.js");
  const { boundSessionId } = await import("../session/sessions.js");
  const store = await openStore(location);
  try {
    return directWriter(store, memoryViewOf(store, boundSessionId(store)));
  } catch (error) {
    await store.close();
    throw error;
  }
}

export function socketWriter(socket: string): MemoryWriter {
  const actor = currentActor();
  const call = (method: string, params: Record<string, unknown>) => callSupervisor(socket, method, { ...params, actor }, 120_000);
  return {
    async set(path: string, value: JsonValue) {
      return (await call("memory.set", { path, value })) as { revision: number };
    },
    async delete(path: string, recursive: boolean) {
      return (await call("memory.delete", { path, recursive })) as { deleted: number; revision: number };
    },
    async importEntries(entries: Entry[]) {
      return (await call("memory.import", { entries })) as { count: number; revision: number };
    },
    close: async () => {},
  };
}

/** Writes the working memory of the session this command acts on (memory-view.ts), in this process. */
export function directWriter(store: Store, view: Pick<MemoryView, "path">): MemoryWriter {
  return {
    async set(path: string, value: JsonValue) {
      return { revision: await store.set(view.path(path), value) };
    },
    async delete(path: string, recursive: boolean) {
      return store.delete(view.path(path), { recursive });
    },
    async importEntries(entries: Entry[]) {
      const { revision } = await store.batch((batch) => {
        for (const entry of entries) batch.set(view.path(entry.path), entry.value);
      });
      return { count: entries.length, revision };
    },
    close: () => store.close(),
  };
}


/**
 * The checks `apex config validate` makes, before a direct write: the config is valid and every
 * plugin it enables is usable. Built-in plugins are known to load; a third-party plugin (a file
 * or a package) is imported with the rest as `start` would, so one that exists but fails to load
 * blocks the write too. With built-ins only, nothing is imported (start-up time).
 */
async function assertConfigValid(location: ProjectLocation): Promise<void> {
  if (!location.configPath) return;
  const { loadConfig } = await import("../config/load.js");
  const config = await loadConfig(location);
  const { checkPluginSources, loadPlugins } = await import("../plugins.js");
  const { isBuiltinPlugin } = await import("../config/schemas.js");
  // An unknown plugin makes the config invalid here too (as for `start`), without importing any.
  checkPluginSources(config);
  if (config.plugins.some((entry) => entry.enabled && !isBuiltinPlugin(entry.name))) await loadPlugins(config);
}
