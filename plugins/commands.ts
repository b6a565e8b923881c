/**
 * The command groups of the built-in plugins, for the CLI (cli/commands.ts) only: kept apart
 * from the registry (plugins/index.ts) so that a process that loads plugins without defining
 * commands (a LangGraph saver's first call, a direct write) never loads the CLI's modules.
 */
import type { Command } from "commander";
import { registerSessionBranchCommands } from "./checkpoint/branch-commands.js";
import { registerCheckpointCommands } from "./checkpoint/cli.js";
import { registerStoreCommands } from "./postgres/cli.js";
import { registerRemoteCommands } from "./sharing/remote-cli.js";

/**
 * Command groups of built-in plugins that the CLI defines whatever the config (their actions
 * load the plugin's code): `apex checkpoint …` with the integrity commands of `apex session
 * …`, and `apex serve|connect|login` with `apex session share…`, and `apex store migrate`. Each is placed after the core
 * group it names, so `apex --help` keeps its order.
 */
export const builtinCommandGroups: ReadonlyArray<{ name: string; after: string; register: (program: Command) => void }> = [
  { name: "checkpoint", after: "session", register: registerCheckpointCommands },
  { name: "session-branch", after: "checkpoint", register: registerSessionBranchCommands },
  { name: "remote", after: "session-branch", register: registerRemoteCommands },
  { name: "store", after: "plugins", register: registerStoreCommands },
];
