import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Store, type JsonValue } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import { listCheckpoints, resolveCheckpoint, restoreCheckpoint } from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import { REPO_ROOT, tempDir } from "./helpers/cli.js";
import { SESSION, memoryAt, tasksAt } from "./fixtures/checkpoint-crash-state.mjs";

const CHILD = join(REPO_ROOT, "test/fixtures/checkpoint-crash-child.mjs");
const KILLS = 200;
const MAX_KILL_DELAY_MS = 30;
const PRESTARTED = 3;

type StateOf = (step: number) => Map<string, JsonValue>;
const memoryOfStep = memoryAt as StateOf;
const tasksOfStep = tasksAt as StateOf;

interface Life {
  reported: Array<{ step: number; id: string }>;
}

interface Child {
  ready: Promise<void>;
  /** Starts the checkpoint loop at `step`; kills the child after `reports` reports plus `delay` ms. */
  run(step: number, reports: number, delay: number): Promise<Life>;
}

/** Starts a child that opens the store and waits for "go <step>". */
function startChild(dir: string): Child {
  const child = spawn(process.execPath, [CHILD, dir], { stdio: ["pipe", "pipe", "pipe"] });
  const reported: Life["reported"] = [];
  let stderr = "";
  let onReady!: () => void;
  let onReport = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  createInterface({ input: child.stdout! }).on("line", (line) => {
    if (line === "ready") return onReady();
    const match = /^(\d+) ([0-9a-f-]{36})$/.exec(line);
    if (match) {
      reported.push({ step: Number(match[1]), id: match[2]! });
      onReport();
    }
  });
  // "close" comes after stdout is drained: every line written before the kill has been read.
  const closed = new Promise<Life>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (signal !== "SIGKILL") reject(new Error(`the child ended on its own (code ${code}): ${stderr}`));
      else resolve({ reported });
    });
  });
  return {
    ready,
    run(step, reports, delay) {
      const kill = () => setTimeout(() => child.kill("SIGKILL"), delay);
      if (reports === 0) kill();
      else onReport = () => reported.length === reports && kill();
      child.stdin!.write(`go ${step}\n`);
      return closed;
    },
  };
}

function memoryOf(store: Store): Map<string, JsonValue> {
  const memory = new Map<string, JsonValue>();
  for (const { path, value } of store.tree("/")) if (!path.startsWith("/sessions")) memory.set(path, value);
  return memory;
}

function tasksOf(store: Store): Map<string, JsonValue> {
  const tasks = new Map<string, JsonValue>();
  const prefix = `/sessions/${SESSION}/tasks/`;
  for (const { path, value } of store.tree(`/sessions/${SESSION}/tasks`)) tasks.set(path.slice(prefix.length), value);
  return tasks;
}

describe("crash safety: kill -9 at random moments while checkpoints are being created", () => {
  let dir: string;
  let cleanup: () => void;

  beforeAll(async () => {
    const built = join(REPO_ROOT, "dist/plugins/checkpoint/checkpoints.js");
    const source = join(REPO_ROOT, "plugins/checkpoint/checkpoints.ts");
    if (!existsSync(built) || statSync(built).mtimeMs < statSync(source).mtimeMs) {
      throw new Error(`${built} is missing or stale: run \`npm run build\` first (npm test does).`);
    }
    const temp = tempDir("apex-crash-");
    dir = temp.dir;
    cleanup = temp.cleanup;
    const store = await openStore(dir);
    await store.set(`/sessions/${SESSION}`, { session_id: SESSION, status: "active", agents: ["coder"] });
    await store.close();
  });

  afterAll(() => cleanup?.());

  it(
    `leaves whole checkpoints or none after ${KILLS} kills, and every reported one restores exactly`,
    async () => {
      const reported: Array<{ step: number; id: string }> = [];
      let nextStep = 1;
      let silentLives = 0;
      const started = Date.now();
      // Node takes ~0.3 s to start here; children start ahead and wait, so kills come every few tens of ms.
      const waiting = Array.from({ length: PRESTARTED }, () => startChild(dir));
      for (let kill = 0; kill < KILLS; kill++) {
        const current = waiting.shift()!;
        await current.ready;
        waiting.push(startChild(dir));
        // A random number of completed checkpoints (0-2), then a random moment within the next step or two.
        const reports = Math.floor(Math.random() * 3);
        const delay = Math.floor(Math.random() * (MAX_KILL_DELAY_MS + 1));
        const life = await current.run(nextStep, reports, delay);
        if (life.reported.length === 0) silentLives += 1;
        for (const item of life.reported) {
          expect(item.step).toBeGreaterThanOrEqual(nextStep);
          reported.push(item);
        }
        if (life.reported.length > 0) nextStep = life.reported.at(-1)!.step + 1;
      }
      for (const child of waiting) {
        await child.ready;
        await child.run(nextStep, 0, 0);
      }
      const loopSeconds = (Date.now() - started) / 1000;

      const store = await openStore(dir);
      try {
        const report = validateStore(store);
        expect(report.problems).toEqual([]);
        expect(report.ok).toBe(true);

        const all = listCheckpoints(store, SESSION, { order: "oldest", limit: 1_000_000 });
        // Sequences are allocated in the checkpoint's own transaction: no gaps, no duplicates.
        expect(all.items.map((item) => item.sequence)).toEqual(Array.from({ length: all.total }, (_, i) => i + 1));
        for (const [index, item] of all.items.entries()) expect(item.parent).toBe(index === 0 ? null : all.items[index - 1]!.id);

        const existing = new Set(all.items.map((item) => item.id));
        for (const { id } of reported) expect(existing.has(id), `reported checkpoint ${id} exists`).toBe(true);
        expect(reported.length).toBeGreaterThan(KILLS / 4);

        // Every checkpoint, reported or committed just before a kill, holds exactly its step's state.
        for (const item of all.items) {
          const step = Number(/^step (\d+)$/.exec(item.description)![1]);
          await restoreCheckpoint(store, item.id);
          expect(memoryOf(store), `${item.name} (step ${step}) memory`).toEqual(memoryOfStep(step));
          expect(tasksOf(store), `${item.name} (step ${step}) tasks`).toEqual(tasksOfStep(step));
        }
        for (const { step, id } of reported) expect(all.items.find((item) => item.id === id)!.description).toBe(`step ${step}`);
        expect(resolveCheckpoint(store, "latest", { sessionId: SESSION }).sequence).toBe(all.total);
        expect(validateStore(store).problems).toEqual([]);

        console.log(
          `crash test: ${KILLS} kills in ${loopSeconds.toFixed(1)} s, ${all.total} checkpoints committed, ` +
            `${reported.length} reported, ${all.total - reported.length} committed but killed before reporting, ` +
            `${silentLives} lives killed before any report`,
        );
      } finally {
        await store.close();
      }
    },
    180_000,
  );
});
