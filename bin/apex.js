#!/usr/bin/env node
// Entry point of the `apex` command. The TypeScript sources are compiled to dist/ by
// `npm install` (the "prepare" script), so there is no separate build step to remember.
// A CommonJS file (bin/package.json): Node 20 starts an ES module entry with its ES module
// loader, ~7 ms of a command that has none to load (the CLI's bundles are scripts, below).
"use strict";
const { enableCompileCache } = require("node:module");
const { statSync } = require("node:fs");
const { join } = require("node:path");

// Ctrl-C while Node loads the CLI (0.1 to 0.5 s on a loaded machine), before any command runs: nothing
// was done, and that is said (APEX_E_INTERRUPTED, exit 130; JSON on stderr with --json) rather than a
// silent exit 130. Here, not in a module: it is in place before any other loads. The command's own
// handling takes over once it runs (handOver: before its action, where `apex start` calls the start off).
const interrupted = () => {
  const message = "Interrupted (Ctrl-C) before the command started: nothing was done.";
  process.stderr.write(process.argv.includes("--json") ? `${JSON.stringify({ error: { code: "APEX_E_INTERRUPTED", message, exitCode: 130, exit_code: 130 } })}\n` : `error[APEX_E_INTERRUPTED]: ${message}\n`);
  process.exit(130);
};
process.on("SIGINT", interrupted);
const handOver = () => process.off("SIGINT", interrupted);

void run();

/** The loader of the CLI's bundles (cli/bundle.ts), as CommonJS (dist/cli/bundle.cjs, made with them), else its ES module. */
async function bundleLoader() {
  const dist = join(__dirname, "../dist");
  const script = join(dist, "cli/bundle.cjs");
  // Older than tsc's last build (`tsc -b` run alone, not `npm run build`): stale, as cli/bundle.ts judges the bundles.
  const made = statSync(script, { throwIfNoEntry: false })?.mtimeMs;
  if (made !== undefined && made >= (statSync(join(dist, ".tsbuildinfo"), { throwIfNoEntry: false })?.mtimeMs ?? 0)) return require(script);
  return import("../dist/cli/bundle.js");
}

async function run() {
  // Node 22.1 and later: compiled code kept between runs (~/.cache/apex/compile-cache), turned on
  // before the rest of the CLI loads (core/compile-cache.ts; a Node without it loads nothing more).
  if (enableCompileCache) (await import("../dist/core/compile-cache.js")).enableCompileCache();
  // `apex status`, `apex pause` and `apex resume`, each alone or with --json, exactly those, run
  // without commander and the program it builds (dist/cli/status-main.js, lifecycle-main.js): the
  // same command, output and errors, in less start-up time. Any other command line, with any flag
  // more (--help too), is the full CLI's.
  const args = process.argv.slice(2);
  const bare = args.length === 1 || (args.length === 2 && args[1] === "--json");
  const statusOnly = bare && args[0] === "status";
  const lifecycleOnly = bare && (args[0] === "pause" || args[0] === "resume");
  // Each from its one-file bundle with a code cache kept between runs (dist/cli/bundle.js), else from its modules.
  const { loadCli, loadFastPath } = await bundleLoader();
  const { main, outputGone, reportOutputError, reportUnhandledRejection } = statusOnly || lifecycleOnly
    ? await loadFastPath(statusOnly ? "status" : "lifecycle")
    : await loadCli();

  process.on("unhandledRejection", reportUnhandledRejection);

  // A reader that stops early (`apex checkpoint list | head`) closes the pipe: the output is
  // no longer wanted, which is not a failure of the command; one that runs on without it (`apex
  // serve` and its log) is left to run (outputGone: the status fast path has no such command).
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error) => {
      if (error.code === "EPIPE" && outputGone?.(stream)) return;
      if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
      // Any other failure to write the output (a full disk under `> file`) is an error of its own, not a stack trace.
      if (stream === process.stdout) process.exit(reportOutputError(error));
      throw error;
    });
  }

  // `apex status`, a read, handles no Ctrl-C of its own: from its start, Ctrl-C ends it as any signal does.
  if (statusOnly) handOver();
  main(process.argv, handOver).then((code) => {
    handOver();
    // An unhandled rejection reported meanwhile keeps the command failed.
    process.exitCode = Math.max(code, typeof process.exitCode === "number" ? process.exitCode : 0);
    // The command is done: what still keeps the process alive a second later is not its work but, say, a
    // timer a plugin's apply started (a flush interval), on which `apex config validate` and `apex plugins
    // list` waited forever. Exit then, once what was written to stdout and stderr is out.
    setTimeout(() => process.stdout.write("", () => process.stderr.write("", () => process.exit())), 1000).unref();
  });
}
