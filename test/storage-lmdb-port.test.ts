/**
 * The storage port's conformance suite on LMDB (the LMDB backend itself, plugins/lmdb/backend.ts):
 * the reference the other backends are held to.
 */
import { afterAll } from "vitest";
import { tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { describePort } from "./support/port-suite.js";

const cleanups: Array<() => void> = [];
afterAll(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

describePort("lmdb", {
  fresh() {
    const { dir, cleanup } = tempDir("apex-port-");
    cleanups.push(cleanup);
    return { open: (options) => LmdbStore.open(dir, options ?? {}) };
  },
});
