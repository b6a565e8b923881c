import type { Command } from "commander";
import { builtinCommandGroups, type CommandGroup } from "../plugins/commands.js";

/**
 * The core command groups, in the order `apex --help` lists them, with the top-level commands
 * each defines (`commands`: a group that adds subcommands to another group's command names it
 * too). Each module defines its commands cheaply and imports heavy dependencies only inside
 * its actions; the modules themselves are loaded only when a command line needs them (see
 * commandGroups).
 */
const coreGroups: CommandGroup[] = [
  { name: "lifecycle", commands: ["start", "status", "pause", "resume", "stop", "logs"], load: async () => (await import("./lifecycle.js")).registerLifecycleCommands },
  { name: "memory", commands: ["memory"], load: async () => (await import("./memory.js")).registerMemoryCommands },
  { name: "plugins", commands: ["plugins"], load: async () => (await import("./plugins.js")).registerPluginsCommands },
  { name: "config", commands: ["config"], load: async () => (await import("./config.js")).registerConfigCommands },
  { name: "task", commands: ["task", "milestone"], load: async () => (await import("./task.js")).registerTaskCommands },
  { name: "agent", commands: ["agent"], load: async () => (await import("./agent.js")).registerAgentCommands },
  { name: "session", commands: ["session"], load: async () => (await import("./session.js")).registerSessionCommands },
];

/** The core groups, with the built-in plugins' groups (from the registry) after the group each names. */
export const COMMAND_GROUPS: readonly CommandGroup[] = (() => {
  const groups = [...coreGroups];
  for (const group of builtinCommandGroups) {
    const at = groups.findIndex((core) => core.name === group.after);
    groups.splice(at < 0 ? groups.length : at + 1, 0, group);
  }
  return groups;
})();

/**
 * The groups a command line needs: with the top-level command `word` that some groups define
 * (`apex status`: the lifecycle group), those groups only, in their order (a command runs
 * without the modules of every other group: `apex status` is benchmarked against `node -e 0`);
 * otherwise (no word, `help`, a plugin's command, a typo) every group.
 */
export function groupsFor(word: string | undefined): readonly CommandGroup[] {
  const needed = word === undefined ? [] : COMMAND_GROUPS.filter((group) => group.commands.includes(word));
  return needed.length > 0 ? needed : COMMAND_GROUPS;
}

/** The registrations of groups, loaded. */
export function loadGroups(groups: readonly CommandGroup[] = COMMAND_GROUPS): Promise<Array<(program: Command) => void>> {
  return Promise.all(groups.map((group) => group.load()));
}
