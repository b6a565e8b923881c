import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Project, shellAgents } from "../fixtures/agents/harness.js";

/**
 * A project of `agents` (shell scripts) with the slow-hooks plugin (test/fixtures/plugins/slow-hooks.mjs):
 * writing `sleep MS` or `block MS` to the project's file of a hook's name makes that hook slow;
 * `plugins`: built-ins enabled beside it (`checkpoint`).
 */
export function slowHooksProject(agents: Record<string, string>, plugins: string[] = []): Project {
  const project = new Project(shellAgents(agents).replace("plugins: {}", ["plugins:", ...plugins.map((name) => `  ${name}: {}`), "  ./slow-hooks.mjs: {}"].join("\n")));
  copyFileSync(fileURLToPath(new URL("../fixtures/plugins/slow-hooks.mjs", import.meta.url)), join(project.dir, "slow-hooks.mjs"));
  return project;
}
