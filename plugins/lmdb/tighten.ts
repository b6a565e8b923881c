import { chmodSync, lstatSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { GROUP_OTHER } from "../../core/store/private.js";

/**
 * Tightens a store directory made before stores were private: when `dir` lets others in,
 * every entry below it that does too is made owner-only (symbolic links are not followed).
 * One stat when the store is already private. Returns the paths changed.
 */
export function tightenStoreDir(dir: string): string[] {
  let mode: number;
  try {
    mode = statSync(dir).mode;
  } catch {
    return [];
  }
  if (!(mode & GROUP_OTHER)) return [];
  const changed: string[] = [];
  const visit = (path: string): void => {
    let stat;
    try {
      stat = lstatSync(path);
    } catch {
      return;
    }
    if (stat.isSymbolicLink()) return;
    if (stat.mode & GROUP_OTHER) {
      let ok = true;
      try {
        chmodSync(path, stat.mode & 0o700);
      } catch {
        ok = false; // not ours: left as it is
      }
      if (ok) changed.push(path);
    }
    if (!stat.isDirectory()) return;
    let names: string[] = [];
    try {
      names = readdirSync(path);
    } catch {
      names = [];
    }
    for (const name of names) visit(join(path, name));
  };
  visit(dir);
  return changed;
}
