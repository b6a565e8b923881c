import type { JsonValue, Entry } from "../store/store.js";
import type { MemoryReader } from "./memory-actions.js";
import { callSupervisor } from "../rpc/call.js";

/** Reads memory through the supervisor's control socket (agents never open LMDB). */
export async function openRemoteReader(socketPath: string): Promise<MemoryReader> {
  return {
    get: async (path) => (await callSupervisor(socketPath, "memory.get", { path })) as JsonValue | undefined,
    query: async (glob, limit) => (await callSupervisor(socketPath, "memory.query", { glob, limit })) as Entry[],
    close: async () => {},
  };
}
