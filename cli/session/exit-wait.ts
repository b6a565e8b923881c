import { isSameProcessAlive, sleep } from "../../core/session/proc.js";

/** Waits until the process (pid and start time: not another that took its pid) is gone, or `timeoutMs` passed: true when it is gone. */
export async function waitForExit(process: { pid: number; start_time: number }, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isSameProcessAlive(process.pid, process.start_time)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}
