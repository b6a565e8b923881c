import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Vitest's order (longest first by the last run's times, else largest file first: a fresh
 * clone has no times), with the LangGraph conformance suite moved to the front. Its file is
 * small but it runs ~1,400 tests (~15 s of a core), and as the second project it came last,
 * one core running it alone while the other had nothing left.
 */
class ConformanceFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const first = (spec: TestSpecification) => spec.project.name === "langgraph-conformance";
    return [...sorted.filter(first), ...sorted.filter((spec) => !first(spec))];
  }
}

// NODE_EXTRA_CA_CERTS makes every Node.js process read and parse that bundle as it starts: ~40 ms
// of a core for the system's bundle, a third of what a CLI command costs, in each of the thousands
// of processes the tests start (commands, supervisors, agents, hooks; and the workers, forked after
// this). No test needs it from the shell: those of TLS set their own.
delete process.env.NODE_EXTRA_CA_CERTS;

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // End-to-end tests start real processes; two cores do not take more in parallel. The suite is
    // bound by CPU, not by waiting: most of it is CLI commands (~0.12 s of a core each to start),
    // and three workers ran no faster than two. A wait cut short frees the core for the other file.
    maxWorkers: 2,
    sequence: { sequencer: ConformanceFirst },
    // One throwaway PostgreSQL cluster per run for the suites that run on every backend, started
    // by the first test file that needs it and stopped here (test/support/backends.ts).
    // The safety net first: its teardown runs last, after the cluster's own stop. It ends what the
    // tests started and left running (a run interrupted by Ctrl-C: test/support/process-registry-global.ts).
    globalSetup: ["test/support/process-registry-global.ts", "test/support/postgres-global.ts"],
    projects: [
      { extends: true, test: { name: "apex", include: ["test/**/*.test.ts"], exclude: ["test/**/*.globals.test.ts"] } },
      // LangGraph's checkpointer conformance suite expects vitest globals (describe, it, expect).
      { extends: true, test: { name: "langgraph-conformance", include: ["test/**/*.globals.test.ts"], globals: true } },
    ],
  },
});
