#!/usr/bin/env node
// Entry point of the `apex` command. The TypeScript sources are compiled to dist/ by
// `npm install` (the "prepare" script), so there is no separate build step to remember.
import { main, reportUnhandledRejection } from "../dist/cli/main.js";

process.on("unhandledRejection", reportUnhandledRejection);

// A reader that stops early (`apex checkpoint list | head`) closes the pipe: the output is
// no longer wanted, which is not a failure of the command.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw error;
  });
}

main(process.argv).then((code) => {
  // An unhandled rejection reported meanwhile keeps the command failed.
  process.exitCode = Math.max(code, typeof process.exitCode === "number" ? process.exitCode : 0);
});
