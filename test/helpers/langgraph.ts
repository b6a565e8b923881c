import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openStore } from "../../core/store/open.js";
import { tempDir } from "./cli.js";

/**
 * A project whose store has a current session and no supervisor: an ApexSaver given
 * `project: dir` then writes the store directly, with the project's plugins loaded.
 */
export async function langGraphProject(prefix = "apex-langgraph-", config?: string): Promise<{ dir: string; sessionId: string; cleanup: () => void }> {
  const { dir, cleanup } = tempDir(prefix);
  if (config !== undefined) writeFileSync(join(dir, "apex.config.yaml"), config);
  const store = await openStore(join(dir, ".apex"));
  const sessionId = "lg-session";
  try {
    await store.batch((batch) => {
      batch.set(`/sessions/${sessionId}`, { session_id: sessionId, status: "stopped", agents: [], supervisor: null, history: [] });
      batch.set("/sessions/current", { session_id: sessionId });
    });
  } finally {
    await store.close();
  }
  return { dir, sessionId, cleanup };
}
