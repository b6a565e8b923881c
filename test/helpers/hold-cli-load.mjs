// Preloaded (`node --import`) by early-interrupt.e2e.test.ts: holds the load of the CLI's main module
// (dist/cli/main.js, or status-main.js), once bin/apex.js has begun, until HOLD_MARK.release exists,
// having written HOLD_MARK: a signal sent then comes while the CLI loads, however fast the machine.
import { register } from "node:module";

const hook = `import { existsSync, writeFileSync } from "node:fs";
export async function load(url, context, next) {
  if (url.endsWith("/dist/cli/main.js") || url.endsWith("/dist/cli/status-main.js")) {
    writeFileSync(process.env.HOLD_MARK, "");
    while (!existsSync(process.env.HOLD_MARK + ".release")) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return next(url, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
