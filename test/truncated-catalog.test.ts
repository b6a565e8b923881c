// A truncated store file whose cut takes the manifests of some checkpoints together with their
// records in the checkpoint catalog: what is left holds nothing of them that the validation of the
// rest meets, and `session validate` named none of them (it counted only the checkpoints left, as
// `checkpoint list` then showed fewer). Now it names each one the cut took (`checkpoint-lost`, and
// `checkpoints.lost` in --json), found in what is left: its event or a catalog record that outlived
// it, or the place its manifest had in a run of pages the cut took. A real session's store, cut at
// every page; the built CLI validates the cuts that lose some manifests and keep others.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { salvagePages } from "../plugins/lmdb/salvage-pages.js";
import { runApex } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { sessionDir } from "./support/cleanup.js";

const PAGE = 4096;
const CHECKPOINTS = 60;

let project: { dir: string; cleanup: () => void };
let sessionId: string;
/** Every checkpoint the session took: sequence -> id. */
const taken = new Map<number, string>();
/** The store file as the session left it. */
let original: Buffer;

function must(args: string[], cwd = project.dir): string {
  const run = runApex(args, { cwd });
  expect(run.status, `apex ${args.join(" ")}: ${run.stderr}`).toBe(0);
  return run.stdout;
}

beforeAll(() => {
  project = sessionDir("apex-truncated-catalog-");
  writeFileSync(join(project.dir, "apex.config.yaml"), ["agents:", "  worker:", "    command: sh", '    args: ["-c", "while true; do sleep 0.2; done"]', "plugins:", "  checkpoint: {}", ""].join("\n"));
  sessionId = (JSON.parse(must(["start", "--task", "many checkpoints", "--json"])) as { session_id: string }).session_id;
  for (let i = 1; i < CHECKPOINTS; i++) {
    must(["memory", "set", `/notes/${i}`, JSON.stringify(`note ${i} `.repeat(30))]);
    must(["checkpoint", "create", "-m", `step ${i}, described at some length so that the records fill their pages`]);
  }
  must(["stop"]);
  const listed = JSON.parse(must(["checkpoint", "list", "--json", "--limit", "1000"])) as { items: Array<{ sequence: number; id: string }> };
  for (const item of listed.items) taken.set(item.sequence, item.id);
  original = readFileSync(join(project.dir, ".apex", "store.mdb"));
}, 120_000);
afterAll(() => project?.cleanup());

/**
 * The sequences whose manifests the page reader still reads in the file cut to `pages` pages; undefined
 * when nothing left names the session at all (no record of it, no catalog record, no logged change),
 * so that nothing could name what it lost.
 */
function manifestsLeft(pages: number): Set<number> | undefined {
  const scratch = join(project.dir, "..", `${project.dir.split("/").pop()}-probe`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch);
  try {
    const probe = join(scratch, "cut.mdb");
    writeFileSync(probe, original.subarray(0, pages * PAGE));
    const copyDir = join(scratch, "copy");
    mkdirSync(copyDir);
    const salvage = salvagePages(probe, { copyTo: join(copyDir, "store.mdb") });
    if (salvage.tables.every((table) => table.records === 0)) return undefined;
    const store = LmdbStore.open(copyDir, { readOnly: true });
    try {
      const left = new Set<number>();
      let named = false;
      for (const path of store.keysBelow(`/sessions/${sessionId}`)) {
        named = true;
        const match = /\/checkpoint-(\d+)$/.exec(path);
        if (match) left.add(Number(match[1]));
      }
      const catalog = Catalog.of(store);
      named ||= [...catalog.counters()].some((counter) => counter.sessionId === sessionId) || [...catalog.summaryKeys()].some((key) => key.sessionId === sessionId) || [...catalog.idKeys()].length > 0;
      named ||= [...store.changesSince(0)].some((change) => change.path.startsWith(`/sessions/${sessionId}/`));
      return named ? left : undefined;
    } finally {
      void store.close();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

describe("a truncated store file that lost checkpoints whole (manifest and catalog records)", () => {
  it("session validate names each checkpoint the cut took, in its text and its --json (it named none)", () => {
    expect(taken.size).toBe(CHECKPOINTS);
    const pages = Math.floor(original.length / PAGE);
    // Cuts that keep some manifests and lose others: where LMDB put the pages depends on the session's writes.
    const cuts: Array<{ pages: number; lost: number[] }> = [];
    for (let cut = pages - 1; cut > 2; cut--) {
      const left = manifestsLeft(cut);
      if (!left) continue;
      const lost = [...taken.keys()].filter((sequence) => !left.has(sequence)).sort((a, b) => a - b);
      if (lost.length > 0 && !cuts.some((other) => other.lost.join() === lost.join())) cuts.push({ pages: cut, lost });
    }
    expect(cuts.length, "a cut that loses some manifests and keeps others").toBeGreaterThan(0);
    let namedSome = false;
    for (const { pages: cut, lost } of cuts) {
      const dir = join(project.dir, "..", `${project.dir.split("/").pop()}-cut-${cut}`);
      rmSync(dir, { recursive: true, force: true });
      cpSync(project.dir, dir, { recursive: true });
      try {
        const file = join(dir, ".apex", "store.mdb");
        rmSync(`${file}-lock`, { force: true });
        const bytes = original.subarray(0, cut * PAGE);
        writeFileSync(file, bytes);
        const validated = runApex(["session", "validate", "--json"], { cwd: dir });
        expect(validated.status, validated.stderr).toBe(1);
        const name = (sequence: number) => `checkpoint-${String(sequence).padStart(3, "0")}`;
        const report = JSON.parse(validated.stdout) as {
          checkpoints: { lost?: Array<{ session_id: string; sequence: number; name: string; id: string | null; recorded: boolean }>; lost_after?: Array<{ session_id: string; after_sequence: number; after: string | null }> };
          problems: Array<{ code: string; message: string; path?: string }>;
        };
        const named = report.checkpoints.lost!.map((checkpoint) => checkpoint.sequence);
        // Only checkpoints the cut took (nothing was deleted here), each with its own id when something left has it.
        for (const checkpoint of report.checkpoints.lost!) {
          expect(lost, `cut at ${cut} pages: ${checkpoint.name}`).toContain(checkpoint.sequence);
          expect(checkpoint).toMatchObject({ session_id: sessionId, name: name(checkpoint.sequence) });
          if (checkpoint.id !== null) expect(checkpoint.id).toBe(taken.get(checkpoint.sequence));
        }
        // Every other one is past the highest sequence anything left names, which the report says may be lost.
        const after = report.checkpoints.lost_after!.find((entry) => entry.session_id === sessionId);
        for (const sequence of lost.filter((one) => !named.includes(one))) {
          expect(after?.after_sequence, `cut at ${cut} pages: checkpoint ${sequence} named neither way`).toBeLessThan(sequence);
        }
        if (named.length > 0) namedSome = true;
        const problems = report.problems.filter((found) => found.code === "checkpoint-lost");
        expect(problems.length).toBeGreaterThan(0);
        for (const problem of problems) expect(problem).toMatchObject({ path: `/sessions/${sessionId}`, message: expect.stringMatching(new RegExp(`^Session ${sessionId} (lost|may have lost)`)) });
        if (named.length > 0) {
          const problem = problems.find((found) => found.message.startsWith(`Session ${sessionId} lost`))!;
          expect(problem.message).toContain(`with the cut, ${name(named[0]!)}`);
          expect(problem.message).toContain(name(named.at(-1)!));
          expect(problem.message).toContain("Repair cannot bring");
        }
        if (after) expect(problems.some((found) => found.message.startsWith(`Session ${sessionId} may have lost checkpoints ${after.after_sequence === 0 ? "from its first" : `after ${name(after.after_sequence)}`} with the cut`))).toBe(true);
        const text = runApex(["session", "validate"], { cwd: dir });
        expect(text.stdout).toContain(named.length > 0 ? `, ${named.length} lost with the cut` : ", some perhaps lost with the cut");
        expect(text.stdout).toContain("checkpoint-lost");
        // Repair names them too, as what it cannot bring back (a dry run: nothing is written).
        expect(runApex(["session", "repair", "--dry-run"], { cwd: dir }).stdout).toContain("Lost with the cut, which repair cannot bring back:\n  Session ");
        expect(readFileSync(file).equals(bytes), "validate leaves the file as it is").toBe(true);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    expect(namedSome, "a cut whose lost checkpoints what is left names").toBe(true);
  }, 240_000);
});
