// Preloaded (`--import`, through NODE_OPTIONS: FULL_CLI_ENV in cli.ts) by the tests that compare
// the fast path of `apex status` (dist/cli/status-main.js) with the full CLI: bin/apex.js then
// loads dist/cli/main.js for every command line, `apex status` and `apex status --json` too.
import { register } from "node:module";

const hook = `export async function resolve(specifier, context, next) {
  return next(specifier.endsWith("/dist/cli/status-main.js") ? specifier.slice(0, -"status-main.js".length) + "main.js" : specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
