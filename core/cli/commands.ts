import type { Command } from "commander";
import { registerMemoryCommands } from "./memory.js";

/**
 * The core command groups, in the order `apex --help` lists them. Each module defines its
 * commands cheaply and imports heavy dependencies only inside its actions.
 */
export const commandGroups: Array<(program: Command) => void> = [registerMemoryCommands];
import { registerPluginsCommands } from "./plugins.js"; commandGroups.push(registerPluginsCommands);
import { registerConfigCommands } from "./config.js"; commandGroups.push(registerConfigCommands);
import { registerLifecycleCommands } from "./lifecycle.js"; commandGroups.unshift(registerLifecycleCommands);
import { registerTaskCommands } from "./task.js"; commandGroups.push(registerTaskCommands);
import { registerAgentCommands } from "./agent.js"; commandGroups.push(registerAgentCommands);
import { registerSessionCommands } from "./session.js"; commandGroups.push(registerSessionCommands);
import { registerCheckpointCommands } from "./checkpoint.js"; commandGroups.push(registerCheckpointCommands);
