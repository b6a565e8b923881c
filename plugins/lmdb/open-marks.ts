import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ApexError, isApexError } from "../../core/errors.js";
import { isSameProcessAlive, processStartTime } from "../../core/session/proc.js";
import { salvageOutOfProcess } from "./salvage-process.js";

/**
 * A damaged page pointer inside store.mdb can make LMDB read outside its map: the reading
 * process dies with SIGSEGV or SIGBUS, which no JavaScript handler may catch, so the command
 * that met the damage cannot say a word. What it can do is leave a mark.
 *
 * Every process that opens an LMDB store writes `<store>/open/<pid>` (its start time and its
 * command line) and removes it when it closes the store or exits. A mark whose process is gone
 * means that process died with the store open: a crash, or a kill -9. The next open then reads
 * the whole file record by record in child processes (salvage-process.ts: a crash ends the
 * child, not the command) before it trusts the file. Damage is APEX_E_STORE_DAMAGED, naming the
 * command that died and pointing to `apex session validate` and `repair`; the marks stay, so
 * every later command says the same until the file is repaired. A clean file (the process was
 * killed for another reason) clears the marks, and the open goes on.
 *
 * The check costs one full read of the file, only after a process died with the store open; an
 * ordinary open costs a small file write and its removal.
 */

const MARKS_DIR = "open";

interface Mark {
  pid: number;
  start: number | null;
  command: string;
}

/** Marks of this process, per store directory, with how many of its stores there are open. */
const held = new Map<string, number>();
let exitHook = false;

function markPath(dataDir: string, pid: number): string {
  return join(dataDir, MARKS_DIR, String(pid));
}

/** Marks the store in `dataDir` open by this process; the returned function takes the mark back. Best effort: a directory it cannot write is not marked. */
export function markOpen(dataDir: string): () => void {
  const count = held.get(dataDir) ?? 0;
  if (count === 0) {
    try {
      mkdirSync(join(dataDir, MARKS_DIR), { recursive: true, mode: 0o700 });
      const mark: Mark = { pid: process.pid, start: processStartTime(process.pid) ?? null, command: commandLine() };
      writeFileSync(markPath(dataDir, process.pid), JSON.stringify(mark), { mode: 0o600 });
    } catch {
      return () => {}; // read-only media, a full disk: the store still opens, unmarked
    }
    if (!exitHook) {
      exitHook = true;
      // A process that exits without closing its stores (process.exit after an error) is not a crash.
      process.on("exit", () => {
        for (const dir of held.keys()) rmSync(markPath(dir, process.pid), { force: true });
      });
    }
  }
  held.set(dataDir, count + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (held.get(dataDir) ?? 1) - 1;
    if (left > 0) held.set(dataDir, left);
    else {
      held.delete(dataDir);
      rmSync(markPath(dataDir, process.pid), { force: true });
    }
  };
}

/** Marks of processes that are gone: each died with the store open. */
export function deadMarks(dataDir: string): Mark[] {
  let names: string[];
  try {
    names = readdirSync(join(dataDir, MARKS_DIR));
  } catch {
    return [];
  }
  const dead: Mark[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let mark: Mark;
    try {
      mark = JSON.parse(readFileSync(join(dataDir, MARKS_DIR, name), "utf8")) as Mark;
    } catch {
      mark = { pid: Number(name), start: null, command: "" }; // written half when its process died
    }
    const alive = mark.start === null ? processStartTime(Number(name)) !== undefined : isSameProcessAlive(Number(name), mark.start);
    if (!alive) dead.push({ ...mark, pid: Number(name) });
  }
  return dead;
}

/**
 * Before opening the store file `file` in `dataDir`: if a process died with it open, read it
 * whole out of process, and refuse (APEX_E_STORE_DAMAGED) when that read finds damage.
 */
export function checkAfterCrash(dataDir: string, file: string): void {
  const dead = deadMarks(dataDir);
  if (dead.length === 0) return;
  let problem: string | undefined;
  try {
    const scan = salvageOutOfProcess(file);
    const lost = scan.tables.reduce((sum, table) => sum + Math.max(0, table.entries - table.records), 0);
    if (scan.crashes.length > 0) {
      const first = scan.crashes[0]!;
      problem = `reading it record by record killed the reader with ${first.signal} in ${first.table || "the database list"}${first.after !== null ? ` after key ${JSON.stringify(first.after)}` : ""}${lost > 0 ? `; ${lost} records could not be read` : ""}`;
    } else if (lost > 0) problem = `${lost} records could not be read`;
  } catch (error) {
    if (!isApexError(error) || error.code !== "APEX_E_STORE_DAMAGED") throw error;
    problem = error.message;
  }
  if (problem === undefined) {
    // The process died for another reason (kill -9, out of memory): the file reads whole.
    for (const mark of dead) rmSync(markPath(dataDir, mark.pid), { force: true });
    return;
  }
  const who = dead.map((mark) => `pid ${mark.pid}${mark.command ? ` (\`${mark.command}\`)` : ""}`).join(", ");
  throw new ApexError("APEX_E_STORE_DAMAGED", `The store file ${file} is damaged: ${who} died while reading it, and ${problem}.`, {
    hint: "Run `apex session validate` to see what is damaged, then `apex session repair` to copy what still reads into a fresh file.",
    details: { store: dataDir },
  });
}

/** The command line of this process as a person typed it: `apex memory export`, not node's paths. */
function commandLine(): string {
  const args = process.argv.slice(2).map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg)));
  return ["apex", ...args].join(" ").slice(0, 200);
}
