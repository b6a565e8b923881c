import { closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";

/** How often a unix socket as stdout is probed (a zero-length write: one system call). */
const SOCKET_PROBE_MS = 1000;
const NOTHING = Buffer.alloc(0);

/** The part of Node's TCP handle (process.binding("tcp_wrap")) used here. */
interface StreamHandle {
  open(fd: number): number;
  readStart(): number;
  close(): void;
  unref(): void;
  onread: (() => void) | null;
}

/**
 * Calls `gone` (once) when whoever reads stdout has gone, without writing to it: a follower with
 * nothing to print (`apex memory watch … | head -1` on a quiet store) then ends with its reader
 * rather than with its next line (EPIPE, bin/apex.js). Returns what stops the watching. Linux
 * only; elsewhere, or with stdout a terminal or a file, nothing is watched.
 *
 * A pipe (or FIFO): epoll on its write end reports EPOLLERR once no reader is left. libuv waits
 * for that only on a stream opened readable, and it opens a pipe's write-only end (stdout)
 * write-only: uv_read_start refuses it (ENOTCONN; libuv #2058, #3057 unmerged). So the pipe is
 * opened a second time, for writing (/proc/self/fd/1: a description of its own, made
 * non-blocking alone), under a TCP handle, which libuv opens readable whatever the fd's mode:
 * a pipe's write end never has data, so the handle's read callback runs on EPOLLERR only. That
 * handle comes from process.binding (deprecated, undocumented: its warning is kept quiet); if a
 * Node has it no more, nothing is watched and the next write ends the command, as before. A
 * zero-length write cannot tell: on a pipe it succeeds whether or not anyone reads.
 *
 * A unix socket (stdio "pipe" of a Node or libuv parent): a zero-length write fails with EPIPE
 * once the peer closed it or shut its reading down; once a second.
 */
export function whenStdoutReaderGone(gone: () => void): () => void {
  let stat;
  try {
    if (process.platform !== "linux") return () => undefined;
    stat = fstatSync(1);
  } catch {
    return () => undefined;
  }
  let ended = false;
  const once = () => {
    if (ended) return;
    ended = true;
    stop();
    gone();
  };
  const stop = stat.isFIFO() ? watchPipe(once) : stat.isSocket() ? probeSocket(once) : () => undefined;
  return () => {
    if (ended) return;
    ended = true;
    stop();
  };
}

function watchPipe(gone: () => void): () => void {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO with no reader is not waited for (ENXIO: the reader is gone already).
    fd = openSync("/proc/self/fd/1", constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENXIO") return () => undefined;
    const timer = setImmediate(gone);
    return () => clearImmediate(timer);
  }
  let handle: StreamHandle | undefined;
  const quiet = process.noDeprecation;
  try {
    process.noDeprecation = true;
    const { TCP, constants: tcp } = (process as unknown as { binding(name: string): { TCP: new (type: number) => StreamHandle; constants: { SOCKET: number } } }).binding("tcp_wrap");
    handle = new TCP(tcp.SOCKET);
  } catch {
    /* no such binding: nothing is watched */
  } finally {
    process.noDeprecation = quiet;
  }
  // Once open, the fd is the handle's: closing the handle closes it (libuv aborts closing 0-2 so; Node keeps them open).
  if (!handle || fd <= 2 || handle.open(fd) !== 0) {
    handle?.close();
    closeSync(fd);
    return () => undefined;
  }
  handle.onread = gone;
  if (handle.readStart() !== 0) {
    handle.close();
    return () => undefined;
  }
  // Never what keeps the command running.
  handle.unref();
  return () => handle.close();
}

function probeSocket(gone: () => void): () => void {
  const timer = setInterval(() => {
    try {
      writeSync(1, NOTHING);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EPIPE") gone();
    }
  }, SOCKET_PROBE_MS);
  timer.unref();
  return () => clearInterval(timer);
}
