// The test helpers' side of the run's safety net (process-registry-global.ts): each temporary
// project, supervisor, agent group and background command they start is written down (pid or
// process group with its start time, directory), so that a run interrupted before the tests'
// own cleanup (Ctrl-C on vitest, which supervisors in their own process groups never get) leaves
// nothing running. One short append per entry.
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { inject } from "vitest";
import { procInfo } from "./processes.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Where this run's test processes write down what they start (process-registry-global.ts). */
    apexProcessRegistry: string;
  }
}

export type RegistryEntry = { dir: string } | { pid: number; start: number } | { group: number; start: number };

let file: string | null | undefined;
const written = new Set<string>();

function write(entry: RegistryEntry): void {
  if (file === undefined) {
    let dir: string | undefined;
    try {
      dir = inject("apexProcessRegistry");
    } catch {
      dir = undefined; // not in a vitest worker
    }
    file = dir ? join(dir, `${process.pid}.jsonl`) : null;
  }
  const line = JSON.stringify(entry);
  if (file === null || written.has(line)) return;
  written.add(line);
  try {
    appendFileSync(file, `${line}\n`);
  } catch {
    // the run is ending (its registry removed)
  }
}

/** A temporary directory where sessions may run: what runs there is ended, and it is removed. */
export function registerDir(dir: string): void {
  write({ dir });
}

/** A process (its start time read now: a pid reused meanwhile is not another's to end). */
export function registerProcess(pid: number | undefined, start = pid ? procInfo(pid)?.startTime : undefined): void {
  if (pid && start !== undefined && start >= 0) write({ pid, start });
}

/** A process group, by its leader's start time. */
export function registerGroup(pgid: number | undefined, start = pgid ? procInfo(pgid)?.startTime : undefined): void {
  if (pgid && start !== undefined && start >= 0) write({ group: pgid, start });
}
