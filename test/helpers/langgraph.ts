import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStore } from "../../core/store/open.js";
import type { StoreOpenOptions } from "../../core/store/port.js";
import type { Store } from "../../core/store/store.js";
import { tempDir } from "./cli.js";

/**
 * A project whose store has a current session and no supervisor: an ApexSaver given
 * `project: dir` then writes the store directly, with the project's plugins loaded.
 * `storeUrl` (postgres://…): the config's `store:` section puts the project on that PostgreSQL
 * database (its project id: the directory's name, a fresh one per project); else LMDB in .apex/.
 */
export async function langGraphProject(prefix = "apex-langgraph-", config?: string, options: { storeUrl?: string | undefined } = {}): Promise<{ dir: string; sessionId: string; cleanup: () => void }> {
  const { dir, cleanup } = tempDir(prefix);
  const store = options.storeUrl === undefined ? "" : `store:\n  backend: postgres\n  url: ${JSON.stringify(options.storeUrl)}\n`;
  if (config !== undefined || store !== "") writeFileSync(join(dir, "apex.config.yaml"), store + (config ?? ""));
  const opened = await openProjectStore(dir);
  const sessionId = "lg-session";
  try {
    await opened.batch((batch) => {
      batch.set(`/sessions/${sessionId}`, { session_id: sessionId, status: "stopped", agents: [], supervisor: null, history: [] });
      batch.set("/sessions/current", { session_id: sessionId });
    });
  } finally {
    await opened.close();
  }
  return { dir, sessionId, cleanup };
}

/** The store of a project made by langGraphProject, on the backend its config names (as the CLI and ApexSaver open it). */
export function openProjectStore(dir: string, options: StoreOpenOptions = {}): Promise<Store> {
  return openStore({ configPath: join(dir, "apex.config.yaml"), projectDir: dir, storeDir: join(dir, ".apex") }, options);
}
