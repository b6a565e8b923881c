import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isSameProcessAlive } from "./proc.js";

/**
 * The supervisor's runtime file, `<store>/supervisor.json`: which process serves the project
 * and on which socket. CLI commands read it (and /proc) to find a live supervisor without
 * opening LMDB, which keeps pause, resume and agent commands lean.
 */
export interface SupervisorRuntime {
  pid: number;
  /** /proc/<pid>/stat field 22 of the supervisor, to tell it from a process that reused its pid. */
  start_time: number;
  socket: string;
  session_id: string;
  started_at: string;
  log: string;
}

export const RUNTIME_FILE = "supervisor.json";
export const SUPERVISOR_LOG = "supervisor.log";
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

export function runtimeFile(storeDir: string): string {
  return join(storeDir, RUNTIME_FILE);
}

export function supervisorLogFile(storeDir: string): string {
  return join(storeDir, SUPERVISOR_LOG);
}

export function agentLogDir(storeDir: string, sessionId: string): string {
  return join(storeDir, "logs", sessionId);
}

/**
 * `<store>/supervisor.sock`, or, when that path does not fit in a unix socket address,
 * a path under the system temp directory derived from the store's path.
 */
export function socketPathFor(storeDir: string): string {
  const preferred = join(storeDir, "supervisor.sock");
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH_BYTES) return preferred;
  const digest = createHash("sha256").update(storeDir).digest("hex").slice(0, 20);
  return join(tmpdir(), `apex-${digest}.sock`);
}

export function readRuntime(storeDir: string): SupervisorRuntime | undefined {
  try {
    const parsed = JSON.parse(readFileSync(runtimeFile(storeDir), "utf8")) as SupervisorRuntime;
    return typeof parsed.pid === "number" && typeof parsed.socket === "string" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The runtime of a supervisor that is still alive (same pid and start time), if any. */
export function liveSupervisor(storeDir: string): SupervisorRuntime | undefined {
  const runtime = readRuntime(storeDir);
  if (runtime && isSameProcessAlive(runtime.pid, runtime.start_time)) return runtime;
  return undefined;
}

export function writeRuntime(storeDir: string, runtime: SupervisorRuntime): void {
  const file = runtimeFile(storeDir);
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(runtime, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}

/** Removes the runtime file if it still names this process. */
export function removeRuntime(storeDir: string, pid = process.pid): void {
  const runtime = readRuntime(storeDir);
  if (runtime && runtime.pid !== pid) return;
  rmSync(runtimeFile(storeDir), { force: true });
}
