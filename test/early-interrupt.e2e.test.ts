// Ctrl-C while Node loads the CLI, before any command runs, with the built CLI and real processes: it says
// nothing was done (APEX_E_INTERRUPTED, exit 130; JSON on stderr with --json). Before, the process died of
// the signal without a word. The instant is made certain by a preload (--import): the read of the CLI's
// bundle is held until the test has sent the signal; nothing in APEX is there for tests.
import { spawn } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { APEX_BIN, Project, cleanEnv, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { registerProcess } from "./support/process-registry.js";

// A preload (helpers/hold-cli-load.mjs) holds the read of the CLI's bundle until the test lets it go.
const HOLD = fileURLToPath(new URL("./helpers/hold-cli-load.mjs", import.meta.url));

/** `apex ARGS` in a fresh project, Ctrl-C'd while its modules load; resolves to how it ended. */
async function interruptedWhileLoading(args: string[]) {
  const project = new Project(shellAgents({ coder: "sleep 1000" }), "apex-early-int-");
  const mark = join(project.dir, "loading");
  const child = spawn(process.execPath, ["--import", pathToFileURL(HOLD).href, APEX_BIN, ...args], { cwd: project.dir, env: { ...cleanEnv(), HOLD_MARK: mark } });
  registerProcess(child.pid);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("close", (code, signal) => resolve({ code, signal })));
  try {
    await waitFor("the CLI's modules to be loading", () => existsSync(mark));
    child.kill("SIGINT");
    return { ...(await ended), stdout, stderr, project };
  } finally {
    // Let go, should the process still be there (the test then fails on how it ended).
    writeFileSync(`${mark}.release`, "");
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

describe("Ctrl-C while apex loads, before the command runs", () => {
  it("says nothing was done, exit 130 (it died of the signal without a word)", async () => {
    const result = await interruptedWhileLoading(["start", "--task", "t"]);
    expect({ code: result.code, signal: result.signal }).toEqual({ code: 130, signal: null });
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe("error[APEX_E_INTERRUPTED]: Interrupted (Ctrl-C) before the command started: nothing was done.\n");
    // Nothing was: no store, no session.
    expect(existsSync(result.project.storeDir)).toBe(false);
  }, 30_000);

  it("says so in JSON on stderr with --json, `apex status --json` (the fast path) too", async () => {
    for (const args of [["memory", "set", "/x", "1", "--json"], ["status", "--json"]]) {
      const result = await interruptedWhileLoading(args);
      expect({ code: result.code, signal: result.signal }).toEqual({ code: 130, signal: null });
      expect(result.stdout).toBe("");
      expect(JSON.parse(result.stderr)).toEqual({ error: { code: "APEX_E_INTERRUPTED", message: "Interrupted (Ctrl-C) before the command started: nothing was done.", exitCode: 130, exit_code: 130 } });
      expect(existsSync(result.project.storeDir)).toBe(false);
    }
  }, 30_000);
});
