import type { Command } from "commander";
import { registerAgentCommands } from "./agent.js";
import { registerCheckpointCommands } from "./checkpoint.js";
import { registerConfigCommands } from "./config.js";
import { registerLifecycleCommands } from "./lifecycle.js";
import { registerMemoryCommands } from "./memory.js";
import { registerPluginsCommands } from "./plugins.js";
import { registerRemoteCommands } from "./remote.js";
import { registerSessionCommands } from "./session.js";
import { registerSessionBranchCommands } from "./session-branch.js";
import { registerTaskCommands } from "./task.js";

/**
 * The core command groups, in the order `apex --help` lists them. Each module defines its
 * commands cheaply and imports heavy dependencies only inside its actions.
 */
export const commandGroups: Array<(program: Command) => void> = [
  registerLifecycleCommands,
  registerMemoryCommands,
  registerPluginsCommands,
  registerConfigCommands,
  registerTaskCommands,
  registerAgentCommands,
  registerSessionCommands,
  registerCheckpointCommands,
  registerSessionBranchCommands,
  registerRemoteCommands,
];
