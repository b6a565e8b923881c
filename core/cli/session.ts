import type { Command } from "commander";
import { projectOf } from "./context.js";

/** `apex session …`: the project's sessions. Other groups may add subcommands to `session`. */
export function registerSessionCommands(program: Command): void {
  const session =
    program.commands.find((command) => command.name() === "session") ??
    program.command("session").description("the project's sessions: list, history");

  session
    .command("list")
    .description("every session of the project with its status (the current one first)")
    .option("--json", "print the sessions as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const { listSessions } = await import("../session/cli/sessions.js");
      await listSessions(projectOf(command), Boolean(options.json));
    });

  session
    .command("history")
    .description("ended sessions with their outcome (completed, failed, stopped) and why")
    .option("--json", "print the sessions as JSON")
    .action(async (options: { json?: boolean }, command: Command) => {
      const { sessionHistory } = await import("../session/cli/sessions.js");
      await sessionHistory(projectOf(command), Boolean(options.json));
    });
}
