// Preloaded (`--import`, through NODE_OPTIONS: FULL_CLI_ENV in cli.ts) by the tests that compare
// the fast paths of `apex status`, `apex pause` and `apex resume` (dist/cli/status-main.js,
// lifecycle-main.js) with the full CLI: bin/apex.js then loads dist/cli/main.js for every command line
// (with APEX_BUNDLE=0, which FULL_CLI_ENV sets: the modules, whose loads this hook sees).
import { register } from "node:module";

const hook = `export async function resolve(specifier, context, next) {
  const fast = ["/dist/cli/status-main.js", "/dist/cli/lifecycle-main.js"].find((end) => specifier.endsWith(end));
  return next(fast ? specifier.slice(0, -fast.length) + "/dist/cli/main.js" : specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
