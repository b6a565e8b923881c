// The merge against the reference model (merge-model.test.ts) through the built CLI: a real
// project, memory written with `apex memory set` / `delete`, a branch run, its changes merged back
// into the running session, `apex memory export` compared with the model. A few sequences only:
// each command is a process (MM_E=N runs N other seeds).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { JsonValue } from "../core/store/store.js";
import { Project } from "./fixtures/agents/harness.js";
import { json, random } from "./helpers/cli.js";
import { modelMerge } from "./support/merge-model.js";

type Memory = Map<string, JsonValue>;
const agent = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`, "plugins:", "  checkpoint: {}", ""].join("\n");

const NAMES = ["a", "b", "c"];
const VALUES: JsonValue[] = [1, 2, "x", null, { k: 1 }, [1, "a"], true];

function pick<T>(rnd: () => number, items: readonly T[]): T {
  return items[Math.floor(rnd() * items.length)]!;
}
const randomPath = (rnd: () => number) => `/m/${Array.from({ length: 1 + Math.floor(rnd() * 2) }, () => pick(rnd, NAMES)).join("/")}`;

/** Random edits: sets and deletions (of a value, or a subtree with --recursive), as CLI arguments. */
function edits(rnd: () => number, memory: Memory, count: number): string[][] {
  const commands: string[][] = [];
  for (let i = 0; i < count; i++) {
    const existing = [...memory.keys()];
    if (existing.length > 0 && rnd() < 0.35) {
      const path = pick(rnd, existing);
      if (rnd() < 0.3 && path.split("/").length > 3) {
        const prefix = path.split("/").slice(0, 3).join("/");
        for (const key of [...memory.keys()]) if (key === prefix || key.startsWith(`${prefix}/`)) memory.delete(key);
        commands.push(["memory", "delete", prefix, "--recursive"]);
      } else {
        memory.delete(path);
        commands.push(["memory", "delete", path]);
      }
    } else {
      const path = randomPath(rnd);
      const value = pick(rnd, VALUES);
      memory.set(path, value);
      commands.push(["memory", "set", path, JSON.stringify(value)]);
    }
  }
  return commands;
}

const exported = (p: Project): Memory => {
  const result = p.apex(["memory", "export", "/m"]);
  expect(result.status, result.stderr).toBe(0);
  return new Map(Object.entries(JSON.parse(result.stdout) as Record<string, JsonValue>));
};
const sorted = (memory: Memory) => [...memory].map(([path, value]) => [path, JSON.stringify(value)]).sort();

describe("session merge through the CLI against the model", () => {
  for (const [seed, strategy] of (process.env.MM_E ? Array.from({ length: Number(process.env.MM_E) }, (_, i) => [100 + i, (["theirs", "ours"] as const)[i % 2]!] as const) : ([[71, "theirs"], [72, "ours"]] as const))) {
    it(`seed ${seed}, --strategy ${strategy}: dry run writes nothing, the merge is the model's, again a no-op, validate clean`, () => {
      const rnd = random(seed);
      const p = new Project(agent, "apex-merge-model-");
      const main = p.start(["--task", "main"]).session_id;
      const base: Memory = new Map();
      for (let i = 0; i < 8; i++) base.set(randomPath(rnd), pick(rnd, VALUES));
      writeFileSync(join(p.dir, "base.json"), JSON.stringify(Object.fromEntries(base)));
      expect(p.apex(["memory", "import", "base.json"]).status).toBe(0);
      const checkpoint = json<{ id: string }>(p.apex(["checkpoint", "create", "base", "--json"])).id;
      expect(p.apex(["session", "branch", checkpoint, "side"]).status).toBe(0);
      const ours = new Map(base);
      for (const command of edits(rnd, ours, 4)) expect(p.apex(command).status, command.join(" ")).toBe(0);
      // The branch runs (main is checkpointed and stopped), makes its changes and checkpoints them.
      p.start(["--continue", "side"]);
      const theirs = new Map(base);
      for (const command of edits(rnd, theirs, 4)) expect(p.apex(command).status, command.join(" ")).toBe(0);
      expect(sorted(exported(p))).toEqual(sorted(theirs));
      expect(p.apex(["checkpoint", "create", "side's work"]).status).toBe(0);
      p.start(["--continue", main]);
      expect(sorted(exported(p))).toEqual(sorted(ours));
      const model = modelMerge(base, ours, theirs, strategy);

      const dry = p.apex(["session", "merge", "side", main, "--strategy", strategy, "--dry-run", "--json"]);
      expect(dry.status, dry.stderr).toBe(0);
      expect((json<{ memory: { conflicts: Array<{ path: string }> } }>(dry).memory.conflicts).map((conflict) => conflict.path)).toEqual(model.conflicts);
      expect(sorted(exported(p))).toEqual(sorted(ours));
      const refused = p.apex(["session", "merge", "side", main, "--json"]);
      expect(refused.status, refused.stderr).toBe(model.conflicts.length > 0 ? 4 : 0);
      if (model.conflicts.length > 0) expect(sorted(exported(p))).toEqual(sorted(ours));
      const merged = p.apex(["session", "merge", "side", main, "--strategy", strategy, "--json"]);
      expect(merged.status, merged.stderr).toBe(0);
      expect(sorted(exported(p))).toEqual(sorted(model.result));
      const again = p.apex(["session", "merge", "side", main, "--strategy", strategy, "--json"]);
      expect(again.status, again.stderr).toBe(0);
      expect(json<{ relation: string; checkpoint: unknown }>(again)).toMatchObject({ relation: "up-to-date", checkpoint: null });
      let validate = p.apex(["session", "validate"]);
      expect(validate.status, validate.stdout + validate.stderr).toBe(0);
      // Back into the branch, which is stopped (written as its checkpoint): it descends from the
      // branch's own, so the branch gets main's merged memory, restored when it continues.
      const back = p.apex(["session", "merge", main, "side", "--json"]);
      expect(back.status, back.stderr).toBe(0);
      const differs = JSON.stringify(sorted(model.result)) !== JSON.stringify(sorted(theirs));
      expect(json<{ relation: string; applied: string }>(back)).toMatchObject({ relation: "fast-forward", applied: differs ? "checkpoint" : "none" });
      p.start(["--continue", "side"]);
      expect(sorted(exported(p))).toEqual(sorted(model.result));
      validate = p.apex(["session", "validate"]);
      expect(validate.status, validate.stdout + validate.stderr).toBe(0);
    });
  }
});
