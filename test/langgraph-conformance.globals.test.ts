// LangGraph's own conformance suite for checkpointers, unmodified, against ApexSaver as the
// package exports it (`apex-sessions/langgraph`, the compiled adapter). The suite uses vitest
// globals: this file runs in the `langgraph-conformance` project of vitest.config.ts.
import { validate } from "@langchain/langgraph-checkpoint-validation";
import { ApexSaver } from "apex-sessions/langgraph";
import { langGraphProject } from "./helpers/langgraph.js";

const projects = new WeakMap<ApexSaver, () => void>();
// The suite reads back every checkpoint it wrote: no retention policy deletes any meanwhile.
const CONFIG = "plugins:\n  checkpoint: {}\n";

validate({
  checkpointerName: "apex-sessions/langgraph",
  async createCheckpointer() {
    const project = await langGraphProject("apex-langgraph-", CONFIG);
    const saver = new ApexSaver({ project: project.dir });
    projects.set(saver, project.cleanup);
    return saver;
  },
  async destroyCheckpointer(saver: ApexSaver) {
    await saver.close();
    projects.get(saver)?.();
  },
});
