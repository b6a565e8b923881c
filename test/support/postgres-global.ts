/**
 * Vitest global setup for the shared PostgreSQL cluster (test/support/postgres.ts,
 * sharedPostgres): one throwaway cluster per test run, started by the first test file that
 * needs it (a run of LMDB-only files starts none) and stopped here, by its pid, at the end.
 * Test files find it through a state directory this setup provides.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { stopPostgres } from "../../scripts/pg-cluster.mjs";

declare module "vitest" {
  export interface ProvidedContext {
    /** Where the shared cluster's state (lock, URL, pid) is kept for this test run. */
    apexPostgresState: string;
  }
}

export default function setup(project: TestProject): () => Promise<void> {
  const state = mkdtempSync(join(tmpdir(), "apex-pg-shared-"));
  project.provide("apexPostgresState", state);
  return async () => {
    const file = join(state, "cluster.json");
    if (existsSync(file)) {
      const { pid, root } = JSON.parse(readFileSync(file, "utf8")) as { pid: number; root: string };
      await stopPostgres({ pid, root });
    }
    rmSync(state, { recursive: true, force: true });
  };
}
