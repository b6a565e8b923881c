#!/usr/bin/env node
// Entry point of the `apex` command. The TypeScript sources are compiled to dist/ by
// `npm install` (the "prepare" script), so there is no separate build step to remember.
import { main } from "../dist/core/cli/main.js";

main(process.argv).then((code) => {
  process.exitCode = code;
});
