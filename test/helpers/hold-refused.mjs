// Preloaded (`node --import`) into a CLI command: the first time a connection of its is refused
// (ECONNREFUSED: a socket file no one listens on), before the command hears of it, writes HOLD_MARK
// and holds the whole process (its event loop too) until HOLD_MARK.release exists. A test can then
// change what is at the socket's path (the supervisor listening there again) before the command
// acts on the refusal, however fast the machine: what a command meets when the supervisor makes its
// socket again just after the command's connect was refused.
import { existsSync, writeFileSync } from "node:fs";
import net from "node:net";

const emit = net.Socket.prototype.emit;
const pause = new Int32Array(new SharedArrayBuffer(4));
let held = false;
net.Socket.prototype.emit = function (event, ...args) {
  if (!held && event === "error" && args[0]?.code === "ECONNREFUSED") {
    held = true;
    writeFileSync(process.env.HOLD_MARK, "");
    while (!existsSync(`${process.env.HOLD_MARK}.release`)) Atomics.wait(pause, 0, 0, 20);
  }
  return emit.call(this, event, ...args);
};
