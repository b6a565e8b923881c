/**
 * Entry point of the supervisor daemon (`node dist/core/session/supervisor-main.js <request>`).
 * `apex start` runs it detached, with stdout and stderr on <store>/supervisor.log and a pipe
 * on fd 3 on which it reports one JSON line: {"ready": {...}} once the agents run, or
 * {"error": {code, message, hint}} if the session could not start (heartbeats before it).
 */
import { createWriteStream, existsSync, futimes } from "node:fs";
import { enableCompileCache } from "../compile-cache.js";
import { errorBody, idleWindowMs } from "../rpc/protocol.js";
import { toApexError } from "../errors.js";
import type { SupervisorRequest } from "./supervisor.js";

// As the `apex` command (Node 22.1 and later): the supervisor's modules, all loaded below by
// import(), compiled once and kept, instead of at every start.
enableCompileCache();

const REPORT_FD = 3;

// SIGTERM, SIGINT (Ctrl-C on `apex start`, which calls the start off) or SIGHUP from this process's first moment: before
// the claim Supervisor.launch then claims no session; from it on, the session stops once started. By their default action
// this process died mid-start, a session claimed and left interrupted.
const signals: { received?: NodeJS.Signals; on?: (signal: NodeJS.Signals) => void } = {};
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, () => (signals.on ? signals.on(signal) : (signals.received ??= signal)));

// The log lives on the store's filesystem: when that disk is full, a failed write of a log line
// (an 'error' on stdout, or a throw inside the uncaughtException handler) must not end the
// supervisor, which would take the session down with the disk.
for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);

function log(message: string): void {
  try {
    process.stdout.write(`[${new Date().toISOString()}] ${message}\n`);
  } catch {
    // The line is lost; the session goes on.
  }
}

/**
 * The pipe `apex start` waits on (absent when this runs otherwise). Until the report, a heartbeat on
 * it (`{"heartbeat":true}`, every idle window / 4, at most 5 s) tells it that this process still
 * works on the start (a big restore or checkpoint, a slow onStart hook): it waits on that, not a fixed time.
 * The same beat sets the mtime of <store>/supervisor.log, which other commands can see.
 */
const pipe = existsSync(`/proc/self/fd/${REPORT_FD}`) ? createWriteStream("", { fd: REPORT_FD }).on("error", () => undefined) : undefined;
const beat = setInterval(() => {
  if (pipe?.writableLength === 0) pipe.write('{"heartbeat":true}\n');
  // Its log's mtime (stdout) beats too: pause, resume and stop sent before the socket listens wait on that.
  futimes(1, new Date(), new Date(), () => undefined);
}, Math.max(50, Math.min(5_000, idleWindowMs() / 4)));

function report(message: unknown): Promise<void> {
  clearInterval(beat);
  return new Promise((resolve) => (pipe && pipe.writable ? pipe.once("error", () => resolve()).end(`${JSON.stringify(message)}\n`, () => resolve()) : resolve()));
}

async function main(): Promise<void> {
  const request = JSON.parse(process.argv[2] ?? "{}") as SupervisorRequest;
  process.title = "apex-supervisor";
  const [{ openStore }, { createSessionEngine }, { Supervisor }] = await Promise.all([import("../store/open.js"), import("./hooks.js"), import("./supervisor.js")]);

  const startWarnings: string[] = [];
  let started = false;
  // The config `apex start` checked, when it handed it over; else the file, read here.
  const config = request.configFile ? (await import("../config/handoff.js")).takeHandedConfig(request.configFile) : await (await import("../config/load.js")).loadConfig(request);
  // A plugin the config cannot have (unknown, missing a dependency, bad options) is refused before the store is opened or created.
  const plugins = await (await import("../plugins.js")).resolvePlugins(config);
  const store = await openStore(request, { actor: "supervisor" });
  let launched: Awaited<ReturnType<typeof Supervisor.launch>>;
  try {
    const engine = await createSessionEngine(config, store, (message) => {
      log(`warning: ${message}`);
      // Until the session is ready, `apex start` is waiting and tells the user too.
      if (!started) startWarnings.push(message);
    }, plugins, true);
    launched = await Supervisor.launch(request, {
      config,
      store,
      engine,
      log,
      signals,
      onExit: (code) => {
        process.exitCode = code;
        // Whatever is left (an idle keep-alive, a plugin's timer) must not keep a finished supervisor alive.
        setTimeout(() => process.exit(code), 200).unref();
      },
    });
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  const { ready } = launched;
  started = true;
  const warnings = [...startWarnings, ...(ready.warnings ?? [])];
  await report({ ready: warnings.length > 0 ? { ...ready, warnings } : ready });
}

process.on("uncaughtException", (error) => log(`uncaught: ${error.stack ?? error.message}`));
process.on("unhandledRejection", (error) => log(`unhandled rejection: ${(error as Error)?.stack ?? String(error)}`));

main().catch(async (error) => {
  const apexError = toApexError(error);
  log(`cannot start: ${apexError.message}`);
  await report({ error: errorBody(apexError) });
  process.exit(apexError.exitCode || 1);
});
