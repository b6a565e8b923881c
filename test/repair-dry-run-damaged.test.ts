// `apex session repair --dry-run` of a damaged store file (here cut short) says what the repair
// does: it listed the copy of the file and the checkpoints validate named (copy-store,
// remove-checkpoint, remove-index) while the repair of the copy went on to heal values, raise
// counters, rebuild catalog records and remove objects. The dry run now repairs a scratch copy of
// what reads in dry-run mode; its actions are compared with those of the real repair of another
// copy of the same project, through the built CLI.
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import { createCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { runApex } from "./helpers/cli.js";
import { sessionDir } from "./support/cleanup.js";

const PAGE = 4096;
const PROJECT = "11111111-2222-4333-8444-555555555555";

let project: { dir: string; cleanup: () => void };
let bytes: Buffer;

beforeAll(async () => {
  project = sessionDir("apex-repair-dry-run-damaged-");
  writeFileSync(join(project.dir, "apex.config.yaml"), ["agents:", "  worker:", "    command: sh", '    args: ["-c", "sleep 1000"]', "plugins:", "  checkpoint: {}", ""].join("\n"));
  // An ended session of 15 checkpoints, each after 40 notes more.
  const store = await openStore(join(project.dir, ".apex"));
  try {
    await store.batch((batch) => {
      batch.set("/projects/config", { project_id: PROJECT, created_at: "2026-12-01T10:00:00.000Z" });
      batch.set("/sessions/history/s1", { session_id: "s1", project_id: PROJECT, status: "stopped", history: [{ at: "2026-12-01T10:00:00.000Z", event: "started" }], ended_at: "2026-12-01T11:00:00.000Z" });
    });
    for (let i = 1; i <= 15; i++) {
      await store.batch((batch) => {
        for (let j = 0; j < 40; j++) batch.set(`/notes/${i}/${j}`, { text: `${i}-${j} `.repeat(60) });
      });
      await createCheckpoint(store, { sessionId: "s1", trigger: "manual", description: `step ${i}` });
    }
  } finally {
    await store.close();
  }
  bytes = readFileSync(join(project.dir, ".apex", "store.mdb"));
}, 120_000);
afterAll(() => project?.cleanup());

type Repair = { actions: Array<{ action: string; target: string }>; checkpoints: { removed: number; kept: number } };

/** `apex session repair ARGS --json` of a copy of the project whose store file is cut to `pages` pages; undefined when nothing of it reads. */
function repairOfCut(pages: number, args: string[]): Repair | undefined {
  const dir = join(project.dir, "..", `${project.dir.split("/").pop()}-cut-${pages}-${args.length}`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(project.dir, dir, { recursive: true });
  try {
    const file = join(dir, ".apex", "store.mdb");
    rmSync(`${file}-lock`, { force: true });
    const cut = bytes.subarray(0, pages * PAGE);
    writeFileSync(file, cut);
    const run = runApex(["session", "repair", ...args, "--json"], { cwd: dir, timeout: 120_000 });
    if (run.status !== 0 && run.stderr.includes("could be read")) return undefined;
    expect(run.status, run.stderr).toBe(0);
    if (args.includes("--dry-run")) expect(readFileSync(file).equals(cut), "the dry run writes nothing").toBe(true);
    return JSON.parse(run.stdout) as Repair;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const listed = (repair: Repair) => repair.actions.map((action) => `${action.action} ${action.action === "copy-store" ? "" : action.target}`).sort();

describe("session repair --dry-run of a damaged store file", () => {
  it("lists what the repair of the file does, beyond the copy and the checkpoints validate named", () => {
    const beyond = new Set(["copy-store", "remove-checkpoint", "remove-index"]);
    let compared = 0;
    // Cuts from the end of the file down, until one whose repair does more than the old dry run listed.
    for (let pages = Math.floor(bytes.length / PAGE) - 1; pages > 2 && compared === 0; pages--) {
      const did = repairOfCut(pages, []);
      if (!did || did.actions.every((action) => beyond.has(action.action))) continue;
      const would = repairOfCut(pages, ["--dry-run"])!;
      expect(listed(would), `cut to ${pages} pages`).toEqual(listed(did));
      expect(would.checkpoints, `cut to ${pages} pages`).toEqual(did.checkpoints);
      compared += 1;
    }
    expect(compared, "a cut whose repair does more than copy and remove").toBe(1);
  }, 600_000);
});
