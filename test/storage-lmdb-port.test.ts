/**
 * The storage port's conformance suite on LMDB (the current Store through test/support/lmdb-port.ts):
 * the reference the other backends are held to.
 */
import { afterAll } from "vitest";
import { tempDir } from "./helpers/cli.js";
import { openLmdbPort } from "./support/lmdb-port.js";
import { describePort } from "./support/port-suite.js";

const cleanups: Array<() => void> = [];
afterAll(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

describePort("lmdb", {
  fresh() {
    const { dir, cleanup } = tempDir("apex-port-");
    cleanups.push(cleanup);
    return { open: (options) => openLmdbPort(dir, options ?? {}) };
  },
});
