/**
 * `apex status` and `apex status --json`, exactly those command lines, without commander: the
 * fast path bin/apex.js takes for them (benchmarked against `node -e 0`). It does what main.ts
 * does for them and nothing else, so the output, the exit code and every error are the same:
 * for such a line main.ts only makes the terminal output safe, locates the project (no
 * --config: APEX_CONFIG or the search upwards) and runs the status action; its other steps
 * (global flags, --session, the remote command check, plugin commands, help, commander's usage
 * errors) have nothing to do. Any other command line, `apex status --help` or with a flag
 * included, takes main.ts.
 */
import { locateProject } from "../core/config/locate.js";
// The call to the supervisor's socket, loaded with the rest (it was loaded once the session client was open, a step later).
import "../core/rpc/call.js";
import { readStatus } from "./session/status-read.js";
import { guardTerminalOutput, useColor } from "./terminal-text.js";

/** output.ts: loaded with the printer, while the supervisor answers (main), or by the first report that needs it. */
let output: typeof import("./output.js") | undefined;
async function loadOutput(): Promise<typeof import("./output.js")> {
  output ??= await import("./output.js");
  return output;
}

/**
 * output.ts's reports, for bin/apex.js. A write to stdout fails only after output.ts has loaded:
 * nothing is written before (the printer writes, and bin/apex.js once main is done).
 */
export function reportOutputError(error: NodeJS.ErrnoException): number {
  return output!.reportOutputError(error);
}

/** An unhandled rejection that comes before output.ts has loaded is reported once it has (main waits for it too). */
export function reportUnhandledRejection(reason: unknown): void {
  if (output) output.reportUnhandledRejection(reason);
  else void loadOutput().then((loaded) => loaded.reportUnhandledRejection(reason));
}

/** Runs `apex status [--json]` and resolves to the process exit code; never throws (as main.ts's main). */
export async function main(argv: string[]): Promise<number> {
  const json = argv.includes("--json");
  try {
    // As main.ts: text from agents and remote servers may not act on the terminal. (Its check
    // that the arguments are UTF-8 has nothing to check in these.)
    if (argv === process.argv) guardTerminalOutput(useColor);
    const location = locateProject();
    // The question goes to the supervisor first, and the printer (session/status.js, output.js and
    // what only they import) loads while the supervisor builds its answer, instead of before the
    // question: the read runs up to its connection before the import starts (a Node that loads
    // modules synchronously, 22 and later, would otherwise load the printer first).
    const reading = readStatus(location);
    reading.catch(() => {}); // showStatus awaits it: a failure is reported there, not as unhandled meanwhile
    await new Promise((resolve) => setImmediate(resolve));
    const [{ showStatus }] = await Promise.all([import("./session/status.js"), loadOutput()]);
    await showStatus(location, json, reading);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    const hinted = await (await import("./archived-hint.js")).withArchivedHint(error, argv);
    return (await loadOutput()).reportError(hinted, json);
  }
}
