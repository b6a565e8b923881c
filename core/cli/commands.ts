import type { Command } from "commander";
import { registerMemoryCommands } from "./memory.js";

/**
 * The core command groups, in the order `apex --help` lists them. Each module defines its
 * commands cheaply and imports heavy dependencies only inside its actions.
 */
export const commandGroups: Array<(program: Command) => void> = [registerMemoryCommands];
