// Preloaded (`node --import`): holds the load of a module of the CLI, once bin/apex.js has begun,
// until HOLD_MARK.release exists, having written HOLD_MARK. By default the read of the CLI's bundle
// (dist/bundle/cli.cjs, status.cjs or lifecycle.cjs), or without one its main module (main.js,
// status-main.js or lifecycle-main.js), so that a signal sent then comes while the CLI loads,
// however fast the machine (early-interrupt.e2e.test.ts); with HOLD_MODULE (the end of a module's
// path: `/dist/core/rpc/call.js`, which a command loads for its first call to a supervisor) that
// one, so that a test can change what the command finds between what it read and its call (with
// APEX_BUNDLE=0: the CLI's modules, each a file, rather than its one-file bundle).
import fs, { existsSync, writeFileSync } from "node:fs";
import { register } from "node:module";

const hook = `import { existsSync, writeFileSync } from "node:fs";
const wanted = process.env.HOLD_MODULE ? [process.env.HOLD_MODULE] : ["/dist/cli/bundle.js", "/dist/cli/main.js", "/dist/cli/status-main.js", "/dist/cli/lifecycle-main.js"];
export async function load(url, context, next) {
  if (wanted.some((end) => url.endsWith(end))) {
    writeFileSync(process.env.HOLD_MARK, "");
    while (!existsSync(process.env.HOLD_MARK + ".release")) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return next(url, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);

// The read of a bundle of the CLI (dist/bundle/*.cjs, which cli/bundle.ts reads with fs.readFile), held
// the same way: in this thread, whose event loop goes on meanwhile (Node 22 and later wait for the hooks
// above when a CommonJS module, bin/apex.js, imports a module: a signal would then wait too).
if (!process.env.HOLD_MODULE) {
  const readFile = fs.readFile;
  fs.readFile = function (path, ...rest) {
    if (typeof path !== "string" || !/\/dist\/bundle\/[a-z]+\.cjs$/.test(path)) return readFile.call(this, path, ...rest);
    writeFileSync(process.env.HOLD_MARK, "");
    const poll = () => (existsSync(`${process.env.HOLD_MARK}.release`) ? readFile.call(fs, path, ...rest) : setTimeout(poll, 20));
    poll();
  };
}
