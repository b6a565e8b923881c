/**
 * The command groups of the built-in plugins, for the CLI (cli/commands.ts) only: kept apart
 * from the registry (plugins/index.ts) so that a process that loads plugins without defining
 * commands (a LangGraph saver's first call, a direct write) never loads the CLI's modules.
 */
import type { Command } from "commander";

/**
 * A group of CLI commands: `name`, the top-level commands it defines or adds subcommands to
 * (`commands`), and its registration, loaded when a command line needs the group.
 */
export interface CommandGroup {
  name: string;
  commands: readonly string[];
  load: () => Promise<(program: Command) => void>;
}

/**
 * Command groups of built-in plugins that the CLI defines whatever the config (their actions
 * load the plugin's code): `apex checkpoint …` with the integrity commands of `apex session
 * …`, and `apex serve|connect|login` with `apex session share…`, and `apex store migrate`. Each is placed after the core
 * group it names, so `apex --help` keeps its order.
 */
export const builtinCommandGroups: ReadonlyArray<CommandGroup & { after: string }> = [
  { name: "checkpoint", after: "session", commands: ["checkpoint", "session"], load: async () => (await import("./checkpoint/cli.js")).registerCheckpointCommands },
  { name: "session-branch", after: "checkpoint", commands: ["session"], load: async () => (await import("./checkpoint/branch-commands.js")).registerSessionBranchCommands },
  { name: "remote", after: "session-branch", commands: ["serve", "connect", "login", "session"], load: async () => (await import("./sharing/remote-cli.js")).registerRemoteCommands },
  { name: "store", after: "plugins", commands: ["store"], load: async () => (await import("./postgres/cli.js")).registerStoreCommands },
];
