/**
 * Vitest global setup: the run's safety net for the processes its tests start. Supervisors and
 * agents run in their own process groups (as APEX starts them), so a Ctrl-C on vitest, which
 * ends vitest and its workers, never reaches them, and a run interrupted before the tests' own
 * cleanup left them running. The test helpers write down what they start (process-registry.ts);
 * once the run ends, however it ends (vitest's Ctrl-C handler ends the process with
 * process.exit, which runs no async teardown: the sweep is synchronous, on `exit` too), what of
 * it is still there is ended by pid or process group, never by name, and its directories removed.
 * A run that ended normally has nothing left: a few reads of /proc.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import type { RegistryEntry } from "./process-registry.js";
import { endProcessesIn, isAlive, procInfo } from "./processes.js";

export default function setup(project: TestProject): () => void {
  const registry = mkdtempSync(join(tmpdir(), "apex-test-processes-"));
  project.provide("apexProcessRegistry", registry);
  let swept = false;
  const sweep = () => {
    if (swept) return;
    swept = true;
    sweepRegistry(registry);
  };
  process.once("exit", sweep);
  return () => {
    process.off("exit", sweep);
    sweep();
  };
}

/** Ends what the entries in `registry` name that is still there, removes their directories, then the registry. */
export function sweepRegistry(registry: string): { ended: number } {
  const entries: RegistryEntry[] = [];
  for (const name of existsSync(registry) ? readdirSync(registry) : []) {
    for (const line of readFileSync(join(registry, name), "utf8").split("\n")) {
      try {
        if (line) entries.push(JSON.parse(line) as RegistryEntry);
      } catch {
        // a line cut short by a worker that was killed
      }
    }
  }
  // Never this process, nor what runs it.
  const spared = new Set<number>();
  for (let pid: number | undefined = process.pid; pid && pid > 1 && !spared.has(pid); pid = procInfo(pid)?.ppid) spared.add(pid);
  let ended = 0;
  const kill = (target: number) => {
    try {
      process.kill(target, "SIGKILL");
      ended += 1;
    } catch {
      // gone meanwhile
    }
  };
  // Directories first: their supervisors are stopped (SIGSTOP) before their agents are ended, so nothing restarts meanwhile.
  for (const entry of entries) {
    if (!("dir" in entry) || !existsSync(entry.dir)) continue;
    endProcessesIn(entry.dir);
    ended += 1;
    rmSync(entry.dir, { recursive: true, force: true, maxRetries: 5 });
  }
  const groups = entries.filter((entry): entry is { group: number; start: number } => "group" in entry);
  // A group whose leader is gone is still its own while a process is in it (its id is not reused meanwhile): one scan of /proc says which are.
  const inUse = new Set<number>();
  if (groups.some((entry) => procInfo(entry.group) === undefined)) {
    for (const name of readdirSync("/proc")) if (/^\d+$/.test(name)) inUse.add(procInfo(Number(name))?.pgrp ?? 0);
  }
  for (const { group, start } of groups) {
    const leader = procInfo(group);
    if (!spared.has(group) && (leader ? leader.startTime === start : inUse.has(group))) kill(-group);
  }
  for (const entry of entries) if ("pid" in entry && !spared.has(entry.pid) && isAlive(entry.pid, entry.start)) kill(entry.pid);
  rmSync(registry, { recursive: true, force: true });
  return { ended };
}
