// What an end-to-end test leaves behind besides its projects, ended after each test in one place.
// A Project made in a test ends its own supervisors, agents and background commands (by pid or
// process group) and removes its directory after that test (fixtures/agents/harness.ts).
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, onTestFinished } from "vitest";
import { endProcessesIn } from "../fixtures/agents/harness.js";
import { registerDir } from "./process-registry.js";

/**
 * Directories pushed here are removed after each test of the file, after its projects are
 * cleaned up (a worktree a session runs in goes once that session is ended).
 */
export function tempDirs(): string[] {
  const dirs: string[] = [];
  // Registered before the test runs: test-finished hooks run last registered first, so this after those of the test's projects.
  beforeEach(() =>
    onTestFinished(() => {
      for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    }),
  );
  return dirs;
}

/** Stops pushed here (a server's, say) run after each test of the file, first pushed first, before its projects are cleaned up. */
export function stopsAfterEach(): Array<() => unknown> {
  const stops: Array<() => unknown> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });
  return stops;
}

/**
 * Ends a child process the test started: SIGTERM, then SIGKILL if it is still there after
 * `graceMs` (a server that hangs on its way out must not hold the next test, nor outlive the run).
 */
export async function endChild<T>(run: { child: { pid?: number; exitCode: number | null; signalCode: NodeJS.Signals | null; kill(signal: NodeJS.Signals): boolean }; done: Promise<T> }, graceMs = 10_000): Promise<T> {
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(resolve, graceMs, "late")));
  const first = await Promise.race([run.done, late]);
  clearTimeout(timer);
  if (first !== "late") return first as T;
  if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill("SIGKILL");
  return run.done;
}

/**
 * A fresh temporary directory for a test that runs sessions in it (or in projects below it)
 * through the CLI itself rather than a Project: its cleanup ends what they left running, by pid
 * or process group (endProcessesIn), then removes it. Only where a session ran (a supervisor's log in a
 * `.apex`, here or one level down) is /proc scanned.
 */
export function sessionDir(prefix = "apex-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  registerDir(dir);
  const ran = () => existsSync(join(dir, ".apex", "supervisor.log")) || readdirSync(dir, { withFileTypes: true }).some((entry) => entry.isDirectory() && existsSync(join(dir, entry.name, ".apex", "supervisor.log")));
  return {
    dir,
    cleanup: () => {
      if (existsSync(dir) && ran()) endProcessesIn(dir);
      rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    },
  };
}
