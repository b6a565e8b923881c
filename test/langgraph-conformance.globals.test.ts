// LangGraph's own conformance suite for checkpointers, unmodified, against ApexSaver as the
// package exports it (`apex-sessions/langgraph`, the compiled adapter), once per storage
// backend: a project on LMDB, and one on the test run's throwaway PostgreSQL cluster (a project
// id per checkpointer in one database of this file; ~9 s). The suite uses vitest globals: this
// file runs in the `langgraph-conformance` project of vitest.config.ts.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { validate } from "@langchain/langgraph-checkpoint-validation";
import { ApexSaver } from "apex-sessions/langgraph";
import { BACKENDS } from "./support/backends.js";
import { createSharedDatabase } from "./support/postgres.js";
import { langGraphProject } from "./helpers/langgraph.js";

const projects = new WeakMap<ApexSaver, { dir: string; cleanup: () => void }>();
// The suite reads back every checkpoint it wrote: no retention policy deletes any meanwhile.
const CONFIG = "plugins:\n  checkpoint: {}\n";
let database: Promise<string> | undefined;

for (const backend of BACKENDS) {
  validate({
    checkpointerName: backend === "lmdb" ? "apex-sessions/langgraph" : `apex-sessions/langgraph on ${backend}`,
    async createCheckpointer() {
      const storeUrl = backend === "postgres" ? await (database ??= createSharedDatabase("langgraph")) : undefined;
      const project = await langGraphProject("apex-langgraph-", CONFIG, { storeUrl });
      const saver = new ApexSaver({ project: project.dir });
      projects.set(saver, { dir: project.dir, cleanup: project.cleanup });
      return saver;
    },
    async destroyCheckpointer(saver: ApexSaver) {
      await saver.close();
      const project = projects.get(saver)!;
      // On PostgreSQL nothing was kept in an LMDB store beside it.
      const lmdb = existsSync(join(project.dir, ".apex", "store.mdb"));
      project.cleanup();
      if (backend === "postgres" && lmdb) throw new Error("the PostgreSQL project wrote an LMDB store");
    },
  });
}
