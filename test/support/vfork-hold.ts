// Builds test/fixtures/processes/vfork-hold.c: a real process in state D (the parent of a
// vfork() waiting for its sleeping child). Needs a C compiler (gcc); without one the tests
// that use it fail here, loudly, rather than skip.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../fixtures/agents/harness.js";

const SOURCE = join(REPO_ROOT, "test/fixtures/processes/vfork-hold.c");

/** Compiles vfork-hold into `dir` and returns the executable's path. */
export function buildVforkHold(dir: string): string {
  const binary = join(dir, "vfork-hold");
  const result = spawnSync("gcc", ["-O2", "-o", binary, SOURCE], { encoding: "utf8" });
  if (result.error) throw new Error(`cannot run gcc to build ${SOURCE} (install gcc; .ci/run does): ${result.error.message}`);
  if (result.status !== 0) throw new Error(`gcc failed to build ${SOURCE}:\n${result.stderr}`);
  return binary;
}

/** State, SigPnd and ShdPnd of /proc/<pid>/status, read here independently of APEX's own parser. */
export function procStatus(pid: number): { state: string; sigPnd: bigint; shdPnd: bigint } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, "latin1");
  } catch {
    return undefined;
  }
  const field = (name: string) => text.split("\n").find((line) => line.startsWith(`${name}:`))!.slice(name.length + 1).trim();
  return { state: field("State").charAt(0), sigPnd: BigInt(`0x${field("SigPnd")}`), shdPnd: BigInt(`0x${field("ShdPnd")}`) };
}

/** The bit of SIGSTOP in a pending-signals mask: bit n-1 for signal n (19 on x86 and ARM: bit 18, 0x40000). */
export const SIGSTOP_BIT = 1n << BigInt(constants.signals.SIGSTOP - 1);
