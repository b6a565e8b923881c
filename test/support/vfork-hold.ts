// Builds test/fixtures/processes/vfork-hold.c: a real process in state D (the parent of a
// vfork() waiting for its sleeping child). Needs a C compiler (gcc); without one the tests
// that use it fail here, loudly, rather than skip.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import { basename, join } from "node:path";
import { REPO_ROOT } from "../fixtures/agents/harness.js";

const SOURCE = join(REPO_ROOT, "test/fixtures/processes/vfork-hold.c");

/** Compiles vfork-hold into `dir` and returns the executable's path. */
export function buildVforkHold(dir: string): string {
  return buildFixture(dir, SOURCE);
}

/** Compiles test/fixtures/processes/stop-eater.c (a tracer that takes back every SIGSTOP of the process it traces) into `dir`. */
export function buildStopEater(dir: string): string {
  return buildFixture(dir, join(REPO_ROOT, "test/fixtures/processes/stop-eater.c"));
}

function buildFixture(dir: string, source: string): string {
  const binary = join(dir, basename(source, ".c"));
  const result = spawnSync("gcc", ["-O2", "-pthread", "-o", binary, source], { encoding: "utf8" });
  if (result.error) throw new Error(`cannot run gcc to build ${source} (install gcc; .ci/run does): ${result.error.message}`);
  if (result.status !== 0) throw new Error(`gcc failed to build ${source}:\n${result.stderr}`);
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

/** The bit of a signal in a pending-signals mask: bit n-1 for signal n (SIGSTOP, 19 on x86 and ARM: bit 18, 0x40000). */
export function signalBit(signal: NodeJS.Signals): bigint {
  return 1n << BigInt(constants.signals[signal] - 1);
}
export const SIGSTOP_BIT = signalBit("SIGSTOP");

/** The state letter of each thread of `pid` but its main one, from /proc/<pid>/task/<tid>/stat. */
export function otherThreadStates(pid: number): string[] {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`).filter((tid) => Number(tid) !== pid);
  } catch {
    return [];
  }
  return tids.map((tid) => {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, "latin1");
      return text.slice(text.lastIndexOf(")") + 2).split(" ")[0]!;
    } catch {
      return "gone";
    }
  });
}

/** Compiles test/fixtures/processes/stop-holder.c (a tracer that holds the process it traces in a trace stop, state t, as a debugger at a breakpoint) into `dir`. */
export function buildStopHolder(dir: string): string {
  return buildFixture(dir, join(REPO_ROOT, "test/fixtures/processes/stop-holder.c"));
}
