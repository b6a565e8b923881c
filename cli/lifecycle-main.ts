/**
 * `apex pause` and `apex resume`, each alone or with `--json` (exactly those command lines),
 * without commander: the fast path bin/apex.js takes for them, as status-main.ts is status's
 * (`apex pause` is benchmarked against `node -e 0`). For such a line main.ts only makes the
 * terminal output safe, hands Ctrl-C over to the command (its preAction hook), locates the project
 * (no --config: APEX_CONFIG or the search upwards) and runs the action; its other steps (global
 * flags, --session, the remote command check, which lets both through, plugin commands, help,
 * commander's usage errors) have nothing to do. This does those steps with the same functions, so
 * the output, the exit code and every error are the same; any other command line takes main.ts.
 */
import { locateProject } from "../core/config/locate.js";
import { reportError, useColor } from "./output.js";
// The call to the supervisor's socket, loaded with the rest rather than once the session client is open.
import "../core/rpc/call.js";
import { pauseSession, resumeSession } from "./session/control.js";
import { guardTerminalOutput } from "./terminal-text.js";

export { reportOutputError, reportUnhandledRejection } from "./output.js";

/** Runs `apex pause|resume [--json]` and resolves to the process exit code; never throws (as main.ts's main). */
export async function main(argv: string[], handOver?: () => void): Promise<number> {
  const json = argv.includes("--json");
  try {
    if (argv === process.argv) guardTerminalOutput(useColor);
    // From here Ctrl-C is the command's, as from main.ts's preAction hook on.
    handOver?.();
    await (argv[2] === "pause" ? pauseSession : resumeSession)(locateProject(), json);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    return reportError(await (await import("./archived-hint.js")).withArchivedHint(error, argv), json);
  }
}
