// `apex status` by its fast path (bin/apex.js: dist/cli/status-main.js), benchmarked against
// `node -e 0` (bench/status.bench.mjs): in which order it loads and asks, in a new process of the
// built CLI asking a real session's supervisor, as Node's own debug output (NODE_DEBUG) shows it.
import { afterEach, describe, expect, it } from "vitest";
import { Project, shellAgents } from "./fixtures/agents/harness.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

describe("apex status by its fast path", () => {
  it("asks the supervisor before it loads the printer, which loads while the supervisor answers", () => {
    project = new Project(shellAgents({ alpha: "sleep 1000 & wait" }), "apex-status-fast-");
    project.start(["--task", "status fast path"]);
    for (const args of [["status"], ["status", "--json"]]) {
      // Node's own debug lines, written in order from the one thread that connects and compiles: the
      // connection to the supervisor (net) is made before the printer's module is compiled (esm).
      const result = project.apex(args, { env: { NODE_DEBUG: "esm,net" } });
      expect(result.status, result.stderr).toBe(0);
      const lines = result.stderr.split("\n");
      const connected = lines.findIndex((line) => /^NET \d+: createConnection/.test(line));
      const printer = lines.findIndex((line) => /^ESM \d+: Translating StandardModule file:.*\/dist\/cli\/session\/status\.js\b/.test(line));
      expect(connected, args.join(" ")).toBeGreaterThanOrEqual(0);
      expect(printer, args.join(" ")).toBeGreaterThan(connected);
      // The report is the whole one, as printed without them.
      if (args.includes("--json")) expect(JSON.parse(result.stdout)).toMatchObject({ session: { status: "active" }, agents: [{ name: "alpha" }] });
      else expect(result.stdout).toMatch(/^Session \S+ {2}active\n[\s\S]*\nalpha +running /);
    }
  });
});
