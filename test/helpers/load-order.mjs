// Preloaded (`node --import`): appends to the file LOAD_ORDER one line for each module Node loads
// (`loaded URL`) and each connection a socket begins (`connect PATH`, or HOST:PORT), as they happen
// on the thread that runs the CLI, so that their order is the order they came in. Modules through
// module.registerHooks where Node has it (22.15 and later, 24): its hooks run on that thread, as
// each module loads (there Node loads a module at once when it is asked for). Node 20 has none: its
// module.register runs hooks on a thread of their own, which every import() then waits for (even of
// a module loaded already), so that a connection made after one came after modules it would have
// come before; there V8's report of each script it compiles (the inspector's Debugger.scriptParsed,
// from a session in this process) says when a module loads. Connections where net.Socket's
// connect() is called (net.connect and net.createConnection call it). Node's own debug output
// (NODE_DEBUG) says as much, in a text that changes between versions.
import { appendFileSync } from "node:fs";
import { Session } from "node:inspector";
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
  const session = new Session();
  session.connect();
  session.on("Debugger.scriptParsed", ({ params }) => {
    if (params.url.startsWith("file:")) record(`loaded ${params.url}`);
  });
  session.post("Debugger.enable");
}

const connect = Socket.prototype.connect;
Socket.prototype.connect = function (...args) {
  // connect(options[, listener]), connect(path[, listener]), connect(port[, host][, listener]), or net's own [options, listener].
  const options = Array.isArray(args[0]) ? args[0][0] : args[0];
  const where = typeof options === "object" && options !== null ? (options.path ?? `${options.host ?? "localhost"}:${options.port}`) : typeof options === "string" ? options : `${args[1] ?? "localhost"}:${options}`;
  record(`connect ${where}`);
  return connect.apply(this, args);
};
