import type { Command } from "commander";
import { builtinCommandGroups } from "../plugins/commands.js";
import { registerAgentCommands } from "./agent.js";
import { registerConfigCommands } from "./config.js";
import { registerLifecycleCommands } from "./lifecycle.js";
import { registerMemoryCommands } from "./memory.js";
import { registerPluginsCommands } from "./plugins.js";
import { registerSessionCommands } from "./session.js";
import { registerTaskCommands } from "./task.js";

/**
 * The core command groups, in the order `apex --help` lists them. Each module defines its
 * commands cheaply and imports heavy dependencies only inside its actions.
 */
const coreGroups: Array<[string, (program: Command) => void]> = [
  ["lifecycle", registerLifecycleCommands],
  ["memory", registerMemoryCommands],
  ["plugins", registerPluginsCommands],
  ["config", registerConfigCommands],
  ["task", registerTaskCommands],
  ["agent", registerAgentCommands],
  ["session", registerSessionCommands],
];

/** The core groups, with the built-in plugins' groups (from the registry) after the group each names. */
export const commandGroups: Array<(program: Command) => void> = (() => {
  const names = coreGroups.map(([name]) => name);
  const groups = coreGroups.map(([, register]) => register);
  for (const group of builtinCommandGroups) {
    const at = names.indexOf(group.after);
    names.splice(at < 0 ? names.length : at + 1, 0, group.name);
    groups.splice(at < 0 ? groups.length : at + 1, 0, group.register);
  }
  return groups;
})();
