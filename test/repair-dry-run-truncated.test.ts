// `apex session repair --dry-run` of a truncated store file whose checkpoint catalog still lists
// checkpoints whose manifests the cut took (validate names them, `checkpoint-lost`): the repair
// removes those catalog records (`remove-index`) and keeps none of those checkpoints, but the dry
// run listed no such action and counted them among the checkpoints it keeps ("It would remove 0
// checkpoints that do not verify; it keeps 6 that verify", `checkpoints.kept: 6` in --json) where
// the repair then kept 2. A real session's store, cut in copies where the page reader finds such
// a catalog; the dry run and the repair of each copy are compared through the built CLI.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { manifestPath } from "../plugins/checkpoint/manifest.js";
import { salvagePages } from "../plugins/lmdb/salvage-pages.js";
import { runApex } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { sessionDir } from "./support/cleanup.js";

const PAGE = 4096;

let project: { dir: string; cleanup: () => void };

function must(args: string[], cwd = project.dir): string {
  const run = runApex(args, { cwd });
  expect(run.status, `apex ${args.join(" ")}: ${run.stderr}`).toBe(0);
  return run.stdout;
}

/** Whether the store file cut to `pages` pages, read by the page reader, has a catalog listing a checkpoint whose manifest is not there. */
async function catalogOutlivesManifests(bytes: Buffer, pages: number): Promise<boolean> {
  const scratch = join(project.dir, "..", `${project.dir.split("/").pop()}-probe`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(join(scratch, "copy"), { recursive: true });
  try {
    writeFileSync(join(scratch, "cut.mdb"), bytes.subarray(0, pages * PAGE));
    const salvage = salvagePages(join(scratch, "cut.mdb"), { copyTo: join(scratch, "copy", "store.mdb") });
    if (salvage.tables.every((table) => table.records === 0)) return false;
    const store = LmdbStore.open(join(scratch, "copy"), { readOnly: true });
    try {
      return [...Catalog.of(store).summaryKeys()].some((key) => store.get(manifestPath(key.sessionId, key.sequence)) === undefined);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Cuts (in pages) of the store file as it is now that leave such a catalog, newest first. */
async function cutsWithLostManifests(): Promise<{ bytes: Buffer; cuts: number[] }> {
  const bytes = readFileSync(join(project.dir, ".apex", "store.mdb"));
  const cuts: number[] = [];
  for (let pages = Math.floor(bytes.length / PAGE) - 1; pages > 2; pages--) if (await catalogOutlivesManifests(bytes, pages)) cuts.push(pages);
  return { bytes, cuts };
}

let store: { bytes: Buffer; cuts: number[] } = { bytes: Buffer.alloc(0), cuts: [] };

beforeAll(async () => {
  project = sessionDir("apex-repair-dry-run-");
  writeFileSync(join(project.dir, "apex.config.yaml"), ["session:", "  auto_checkpoint_interval: 0", "agents:", "  worker:", "    command: sh", '    args: ["-c", "sleep 1000"]', "plugins:", "  checkpoint: {}", ""].join("\n"));
  must(["start", "--task", "a few checkpoints"]);
  for (let i = 1; i <= 4; i++) {
    must(["memory", "set", `/notes/${i}`, JSON.stringify(`note ${i}`)]);
    must(["checkpoint", "create", "-m", `step ${i}`]);
  }
  must(["stop"]);
  // Where LMDB puts the pages of the manifests and of the catalog depends on the writes: a branch, written in one
  // commit, is what moved the manifests past the catalog here. Branches are added until a cut takes manifests the
  // catalog still lists (the page reader says so, in process; the CLI is run on those cuts only).
  for (let branch = 1; branch <= 8; branch++) {
    must(["session", "branch", `checkpoint-00${1 + (branch % 4)}`, `b${branch}`]);
    store = await cutsWithLostManifests();
    if (store.cuts.length > 0) break;
  }
}, 180_000);
afterAll(() => project?.cleanup());

type Repair = { actions: Array<{ action: string; target: string }>; checkpoints: { removed: number; kept: number } };

describe("session repair --dry-run of a truncated store file whose catalog lists checkpoints the cut took", () => {
  it("says what the repair does: the catalog records it removes, and none of those checkpoints among the ones it keeps (it said it kept them)", () => {
    expect(store.cuts.length, "a cut whose catalog lists checkpoints whose manifests it took").toBeGreaterThan(0);
    for (const pages of store.cuts.slice(0, 3)) {
      const dir = join(project.dir, "..", `${project.dir.split("/").pop()}-cut-${pages}`);
      rmSync(dir, { recursive: true, force: true });
      cpSync(project.dir, dir, { recursive: true });
      try {
        const file = join(dir, ".apex", "store.mdb");
        rmSync(`${file}-lock`, { force: true });
        const cut = store.bytes.subarray(0, pages * PAGE);
        writeFileSync(file, cut);
        const validated = runApex(["session", "validate", "--json"], { cwd: dir });
        expect(validated.status, validated.stderr).toBe(1);
        const report = JSON.parse(validated.stdout) as { problems: Array<{ code: string }>; checkpoints: { total: number; verified: number } };
        expect(report.problems.map((problem) => problem.code)).toEqual(expect.arrayContaining(["store-damaged", "manifest-missing"]));
        const dryRun = runApex(["session", "repair", "--dry-run", "--json"], { cwd: dir });
        expect(dryRun.status, dryRun.stderr).toBe(0);
        const dryText = runApex(["session", "repair", "--dry-run"], { cwd: dir });
        expect(dryText.status, dryText.stderr).toBe(0);
        expect(readFileSync(file).equals(cut), "the dry run writes nothing").toBe(true);
        const real = runApex(["session", "repair", "--json"], { cwd: dir });
        expect(real.status, real.stderr).toBe(0);
        const would = JSON.parse(dryRun.stdout) as Repair;
        const did = JSON.parse(real.stdout) as Repair;
        const removals = (repair: Repair) =>
          repair.actions
            .filter((action) => action.action === "remove-index" || action.action === "remove-checkpoint")
            .map((action) => `${action.action} ${action.target}`)
            .sort();
        expect(removals(did).some((line) => line.startsWith("remove-index ") && line.includes("/checkpoint-")), `cut to ${pages} pages`).toBe(true);
        expect(removals(would), `cut to ${pages} pages`).toEqual(removals(did));
        expect(would.checkpoints, `cut to ${pages} pages`).toEqual(did.checkpoints);
        expect(did.checkpoints.kept).toBeLessThan(report.checkpoints.total);
        // The text says the same: each catalog record it would remove, and how many it keeps.
        expect(dryText.stdout).toContain(`it keeps ${did.checkpoints.kept} that verif`);
        expect(dryText.stdout.match(/^ {2}remove-index +/gm)?.length ?? 0).toBe(removals(did).filter((line) => line.startsWith("remove-index ")).length);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }, 240_000);
});
