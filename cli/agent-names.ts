/**
 * Each agent's files are named by the agent: `<store>/logs/<session>/<agent>.log` and
 * `<agent>.resume.json` (the context a continued session gives it back). On a file system that
 * does not tell case apart (macOS and Windows by default), agents `A` and `a` would write one log
 * and one resume file: their output interleaved, and one agent given the other's context. Such a
 * config works on Linux and is not refused there; where the store's file system is found
 * case-insensitive (caseInsensitiveDir), `apex start` and `apex config validate` refuse it
 * (APEX_E_CONFIG, exit 2), naming both agents.
 */
import { statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { formatPath, positionOf } from "../core/config/source.js";
import type { Config, ConfigIssue } from "../core/config/types.js";

/**
 * Agents whose files would be one where the store's log directory does not tell case apart: names
 * that differ only in case, or one that is another's followed by ".err" but for case (`A.ERR`
 * writes `A.ERR.log`, `a` writes `a.err.log`; the same case is refused by every file system's rule, plugins/config-ranges.ts).
 */
export function agentNameClashes(config: Config, insensitive: (dir: string) => boolean = caseInsensitiveDir): ConfigIssue[] {
  const names = Object.keys(config.agents);
  const byFolded = new Map<string, string>();
  for (const name of names) if (!byFolded.has(name.toLowerCase())) byFolded.set(name.toLowerCase(), name);
  const clashes: Array<[string, string, string]> = [];
  for (const name of names) {
    const folded = name.toLowerCase();
    const same = byFolded.get(folded);
    if (same !== name) clashes.push([same!, name, `${same}.log and ${name}.log`]);
    const base = folded.endsWith(".err") ? byFolded.get(folded.slice(0, -".err".length)) : undefined;
    if (base !== undefined && `${base}.err` !== name) clashes.push([base, name, `${base}'s stderr, ${base}.err.log, and ${name}'s stdout, ${name}.log`]);
  }
  if (clashes.length === 0 || !insensitive(join(config.storeDir, "logs"))) return [];
  return clashes.map(([first, second, file]) => ({
    ...(config.source ? positionOf(config.source, ["agents", second], "key") : { file: config.configPath ?? "apex.config.yaml", line: 0, col: 0 }),
    path: formatPath(["agents", second]),
    message: `agents ${first} and ${second} would write one file (${file}): the file system of ${config.storeDir} does not tell case apart. Rename one of them.`,
  }));
}

/**
 * Whether the file system holding DIR (or, while DIR does not exist yet, its nearest existing
 * parent) takes a name in other case for the same file: the nearest such directory whose name has
 * a letter is looked up with its case flipped (`logs` as `LOGS`), read-only. Unknown (no such
 * directory, a stat that fails) is false: nothing is refused on a guess.
 */
export function caseInsensitiveDir(dir: string): boolean {
  let at = resolve(dir);
  for (;;) {
    const name = basename(at);
    const flipped = [...name].map((char) => (char === char.toLowerCase() ? char.toUpperCase() : char.toLowerCase())).join("");
    const here = statSync(at, { throwIfNoEntry: false });
    if (here && flipped !== name) {
      const other = statSync(join(dirname(at), flipped), { throwIfNoEntry: false });
      return other !== undefined && other.ino === here.ino && other.dev === here.dev;
    }
    if (dirname(at) === at) return false;
    at = dirname(at);
  }
}
