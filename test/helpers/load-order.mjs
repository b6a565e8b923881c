// Preloaded (`node --import`): appends to the file LOAD_ORDER one line for each module Node loads
// (`loaded URL`) and each connection a socket begins (`connect PATH`, or HOST:PORT), as they happen,
// so that their order is the order they came in. Modules through Node's module customization hooks:
// module.registerHooks where Node has it (22.15 and later, 24), whose hooks run on the thread that
// loads, as it loads (Node loads a module synchronously there when nothing makes it wait); else
// module.register (Node 20), whose hooks run on a thread of their own, each appended as that thread
// loads it. Connections where net.Socket's connect() is called (net.connect and net.createConnection
// call it). Node's own debug output (NODE_DEBUG) says as much in a text that changes between versions.
import { appendFileSync } from "node:fs";
import module from "node:module";
import { Socket } from "node:net";

const record = (event) => appendFileSync(process.env.LOAD_ORDER, `${event}\n`);

if (typeof module.registerHooks === "function") {
  module.registerHooks({
    load(url, context, next) {
      record(`loaded ${url}`);
      return next(url, context);
    },
  });
} else {
  const hooks = `import { appendFileSync } from "node:fs";
export async function load(url, context, next) {
  appendFileSync(process.env.LOAD_ORDER, "loaded " + url + "\\n");
  return next(url, context);
}`;
  module.register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}

const connect = Socket.prototype.connect;
Socket.prototype.connect = function (...args) {
  // connect(options[, listener]), connect(path[, listener]), connect(port[, host][, listener]), or net's own [options, listener].
  const options = Array.isArray(args[0]) ? args[0][0] : args[0];
  const where = typeof options === "object" && options !== null ? (options.path ?? `${options.host ?? "localhost"}:${options.port}`) : typeof options === "string" ? options : `${args[1] ?? "localhost"}:${options}`;
  record(`connect ${where}`);
  return connect.apply(this, args);
};
