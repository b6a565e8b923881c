import type { ProjectLocation } from "../config/locate.js";
import { Store, type Entry, type JsonValue } from "../store/store.js";
import type { MemoryWriter } from "./context.js";

/**
 * A writer on the store itself, used when no supervisor holds the project. The config is
 * validated first: nothing is written while apex.config.yaml is invalid.
 */
export async function openMemoryWriter(location: ProjectLocation): Promise<MemoryWriter> {
  await assertConfigValid(location);
  const store = Store.open(location.storeDir);
  return directWriter(store);
}

export function directWriter(store: Store): MemoryWriter {
  return {
    async set(path: string, value: JsonValue) {
      return { revision: await store.set(path, value) };
    },
    async delete(path: string, recursive: boolean) {
      return store.delete(path, { recursive });
    },
    async importEntries(entries: Entry[]) {
      const { revision } = await store.batch((batch) => {
        for (const entry of entries) batch.set(entry.path, entry.value);
      });
      return { count: entries.length, revision };
    },
    close: () => store.close(),
  };
}

async function assertConfigValid(location: ProjectLocation): Promise<void> {
  if (!location.configPath) return;
  const { loadConfig } = await import("../config/load.js");
  await loadConfig(location);
}
