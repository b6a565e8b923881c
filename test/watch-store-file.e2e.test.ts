// `apex memory watch` of an LMDB store whose file is replaced under it: by a copy of the same store (what
// `apex session repair` puts in place of a damaged file: its records, revisions and log, in a new file) or
// by a store made anew. Through the built CLI, with no session running (the watch reads the store itself).
import { copyFileSync, linkSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";

type Event = { revision: number; kind: string; path: string; value: unknown };
/** The watch's --json lines so far (a line still being written is left for the next look). */
const events = (output: string): Event[] => output.split("\n").slice(0, -1).map((line) => JSON.parse(line) as Event);
const shown = (output: string) => events(output).map((event) => [event.revision, event.kind, event.path, event.value]);

/**
 * The store file swapped for a copy of itself as repair's salvage swaps it (plugins/lmdb/salvage-process.ts): the old
 * file kept under a second name, the copy renamed over store.mdb, the lock file removed. Repair itself refuses a store
 * a process has open; a copy renamed over the file while a watch runs is what the watch meets all the same.
 */
function replaceWithCopy(storeDir: string, stamp: string): void {
  const file = join(storeDir, "store.mdb");
  copyFileSync(file, `${file}.copy`);
  linkSync(file, `${file}.damaged-${stamp}`);
  renameSync(`${file}.copy`, file);
  rmSync(`${file}-lock`, { force: true });
}

describe("apex memory watch of a store whose file is replaced", () => {
  it("goes on from the last revision it printed when the new file holds the same store (it printed the whole log again); a store made anew is still followed from its first revision", async () => {
    const project = new Project("plugins: {}\n", "apex-watch-file-");
    expect(project.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/w/b", "2"]).status).toBe(0);
    const watch = project.apexAsync(["memory", "watch", "/w/**", "--json", "--timeout", "180"]);
    await waitFor("the current values", () => events(watch.output()).length >= 2, 30_000);
    expect(project.apex(["memory", "set", "/w/c", "3"]).status).toBe(0);
    await waitFor("the change to /w/c", () => events(watch.output()).length >= 3, 30_000);

    replaceWithCopy(project.storeDir, "1");
    expect(project.apex(["memory", "set", "/w/d", "4"]).status).toBe(0);
    await waitFor("the change to /w/d", () => events(watch.output()).some((event) => event.path === "/w/d"), 30_000);
    // A second swap, once the watch follows the first copy: the same again.
    replaceWithCopy(project.storeDir, "2");
    expect(project.apex(["memory", "set", "/w/e", "5"]).status).toBe(0);
    await waitFor("the change to /w/e", () => events(watch.output()).some((event) => event.path === "/w/e"), 30_000);
    expect(shown(watch.output())).toEqual([
      [2, "current", "/w/a", 1],
      [2, "current", "/w/b", 2],
      [3, "put", "/w/c", 3],
      [4, "put", "/w/d", 4],
      [5, "put", "/w/e", 5],
    ]);
    expect(watch.errors()).toBe("");

    // Removed and made anew: a store of its own, whose revisions start again at 1, printed from its first.
    rmSync(project.storeDir, { recursive: true, force: true });
    expect(project.apex(["memory", "set", "/w/f", "6"]).status).toBe(0);
    await waitFor("the change to /w/f", () => events(watch.output()).some((event) => event.path === "/w/f"), 30_000);
    expect(shown(watch.output()).slice(5)).toEqual([[1, "put", "/w/f", 6]]);
    expect(watch.errors()).toMatch(new RegExp(`^warning: the store in ${project.storeDir} (was replaced by a new store|was removed): `));
    watch.child.kill("SIGTERM");
    expect((await watch.done).status).toBe(0);
  });

  it("a new file holding another store with as many revisions is a store made anew: printed from its first revision", async () => {
    const project = new Project("plugins: {}\n", "apex-watch-file-");
    const other = new Project("plugins: {}\n", "apex-watch-file-");
    for (const [at, value] of [[project, "1"], [other, "10"]] as const) expect(at.apex(["memory", "set", "/w/a", value]).status).toBe(0);
    const watch = project.apexAsync(["memory", "watch", "/w/**", "--json", "--timeout", "180"]);
    await waitFor("the current value", () => events(watch.output()).length >= 1, 30_000);
    // The other project's store file, renamed over this one's: revision 1 there is another write.
    const file = join(project.storeDir, "store.mdb");
    copyFileSync(join(other.storeDir, "store.mdb"), `${file}.copy`);
    renameSync(`${file}.copy`, file);
    rmSync(`${file}-lock`, { force: true });
    expect(project.apex(["memory", "set", "/w/b", "20"]).status).toBe(0);
    await waitFor("the change to /w/b", () => events(watch.output()).some((event) => event.path === "/w/b"), 30_000);
    expect(shown(watch.output())).toEqual([
      [1, "current", "/w/a", 1],
      [1, "put", "/w/a", 10],
      [2, "put", "/w/b", 20],
    ]);
    expect(watch.errors()).toBe(`warning: the store in ${project.storeDir} was replaced by a new store: the values it held are gone with it. The watch goes on with the new one, printing every change made to it from its first revision (revisions start again at 1).\n`);
    watch.child.kill("SIGTERM");
    expect((await watch.done).status).toBe(0);
  });
});
