// kill -9 of the CLI at seeded random instants of its long writes, on an LMDB store: a large memory
// import and recursive delete, checkpoint create and delete, retention cleanup (prune and sweep), compression and
// recompression, session branch and merge, export, archive, unarchive and import of bundles.
// After each kill: `apex session validate` finds the store consistent; everything reported saved
// before (checkpoints with their memory, the memory, sessions) is intact and readable; the killed
// operation happened wholly or not at all; and running it again finishes it.
// The instants come from APEX_CRASH_SEED (printed on failure): each operation is measured once
// without a kill, then killed at instants spread over that time (node's own start is its first fifth).
// Every process is ended by pid or process group (fixtures/agents/harness.ts, support/process-registry.ts).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import type { JsonValue, Store } from "../core/store/store.js";
import { readBundle } from "../plugins/archive/bundle.js";
import { bundleFileName, readBundleFile } from "../plugins/archive/files.js";
import { Catalog } from "../plugins/checkpoint/catalog.js";
import { getCheckpointValue } from "../plugins/checkpoint/checkpoints.js";
import { APEX_BIN, cleanEnv, random, tempDir } from "./helpers/cli.js";
import { Project, isAlive, waitFor, type CliResult } from "./fixtures/agents/harness.js";
import { registerDir, registerGroup } from "./support/process-registry.js";

const SEED = Number(process.env.APEX_CRASH_SEED ?? 20261206);
/** Memory entries under /big: each import rewrites a third of them and adds a few. */
const KEYS = 2500;

const CONFIG = [
  "session:",
  "  auto_recovery: false",
  "  auto_checkpoint_interval: 0",
  "agents:",
  "  worker:",
  "    command: sh",
  '    args: ["-c", "while :; do sleep 0.2; done"]',
  "plugins:",
  "  checkpoint: {}",
  // Manual checkpoints are kept until deleted unless a rule names them: cleanup has something to prune.
  "  retention: {keep_last: 1, keep_daily: 0, keep_weekly: 0, auto_cleanup: false, by_trigger: {manual: {keep_last: 3}}}",
  "  compression: {}",
  "  archive: {}",
  "",
].join("\n");

interface Run extends CliResult {
  killed: boolean;
  ms: number;
}

/** The last run given an instant to be killed at: whether it was (else it had finished). */
let lastKillable: Run | undefined;

/** Runs the CLI in its own process group; SIGKILLs the group `killAfter` ms after the spawn (undefined: never). */
function run(cwd: string, args: string[], killAfter?: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [APEX_BIN, ...args], { cwd, env: { ...cleanEnv(), NO_COLOR: "1" }, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    registerGroup(child.pid);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = killAfter === undefined ? undefined : setTimeout(() => killGroup(child.pid!), killAfter);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const result = { status: code ?? -1, stdout, stderr, killed: signal === "SIGKILL", ms: Date.now() - started };
      if (killAfter !== undefined) lastKillable = result;
      resolve(result);
    });
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // ended
  }
}

async function ok(cwd: string, args: string[]): Promise<any> {
  const result = await run(cwd, args);
  if (result.status !== 0) throw new Error(`apex ${args.join(" ")} exited ${result.status}: ${result.stderr}${result.stdout}`);
  return args.includes("--json") ? JSON.parse(result.stdout) : result.stdout;
}

async function withStore<T>(dir: string, read: (store: Store) => T): Promise<T> {
  const store = await openStore(join(dir, ".apex"), { readOnly: true });
  try {
    return read(store);
  } finally {
    await store.close();
  }
}

function bigMemory(store: Store): Map<string, JsonValue> {
  const memory = new Map<string, JsonValue>();
  for (const { path, value } of store.tree("/big")) memory.set(path, value);
  return memory;
}

function sessionRecord(store: Store, id: string): JsonValue | undefined {
  return store.get(`/sessions/${id}`) ?? store.get(`/sessions/history/${id}`);
}

/** The bundle at `file` reads and verifies, holding session `id`. */
function bundleHolds(file: string, id: string): boolean {
  if (!existsSync(file)) return false;
  try {
    return readBundle(readBundleFile(file), { maxRatio: Number.MAX_SAFE_INTEGER }).manifest.session_id === id;
  } catch {
    return false;
  }
}

describe("crash safety of the CLI's long writes: kill -9 at seeded instants", () => {
  it(`loses nothing reported saved, leaves a valid store, and does each operation wholly or not at all (seed ${SEED})`, async () => {
    const next = random(SEED);
    const project = new Project(CONFIG, "apex-crash-instants-");
    const dir = project.dir;
    const started = Date.now();
    const log: string[] = [];
    const where = (what: string) => `${what} (APEX_CRASH_SEED=${SEED}; so far: ${log.join("; ")})`;

    // ---------------------------------------------------------------- what was reported saved
    /** The memory under /big, as the imports reported saved it. */
    const memory = new Map<string, JsonValue>();
    /** Checkpoint id -> its session and the values of a few paths it holds. */
    const saved = new Map<string, { session: string; values: Map<string, JsonValue | undefined> }>();
    /** Sessions that must stay (branches, merge targets), by id. */
    const sessions = new Set<string>();
    const archived = new Set<string>();

    let step = 0;
    const importFile = () => {
      step += 1;
      const entries: Record<string, JsonValue> = {};
      for (let i = step % 3; i < KEYS; i += 3) entries[`/big/d${i % 40}/k${i}`] = { i, step, text: `${"x".repeat(60)}${step}` };
      for (let i = 0; i < 50; i++) entries[`/big/new${step}/k${i}`] = step;
      const file = join(dir, `import-${step}.json`);
      writeFileSync(file, JSON.stringify(entries));
      return { file, entries };
    };
    const samplesOf = (values: Map<string, JsonValue>) => {
      const paths = [...values.keys()];
      return new Map([0, 0.25, 0.5, 0.75, 0.999].map((at) => [paths[Math.floor(at * paths.length)]!, values.get(paths[Math.floor(at * paths.length)]!)]));
    };
    const remember = (checkpoint: { id: string; session_id: string }, values = samplesOf(memory)) => saved.set(checkpoint.id, { session: checkpoint.session_id, values });
    const importNow = async () => {
      const { file, entries } = importFile();
      await ok(dir, ["memory", "import", file]);
      for (const [path, value] of Object.entries(entries)) memory.set(path, value);
    };
    const create = async (description: string) => {
      const checkpoint = await ok(dir, ["checkpoint", "create", description, "--json"]);
      remember(checkpoint);
      return checkpoint as { id: string; session_id: string; name: string };
    };

    // ---------------------------------------------------------------- the checks after each kill
    /** validate, then every saved checkpoint, memory and session as reported; `gone` may be missing. */
    const check = async (what: string, gone: Set<string> = new Set(), cwd = dir) => {
      const validate = await run(cwd, ["session", "validate", "--json"]);
      if (validate.status !== 0) {
        const repair = await run(cwd, ["session", "repair", "--json"]);
        expect.fail(where(`${what}: validate exited ${validate.status}: ${validate.stdout.slice(0, 3000)}${validate.stderr}\nrepair: ${repair.stdout.slice(0, 3000)}${repair.stderr}`));
      }
      expect(JSON.parse(validate.stdout).ok, where(what)).toBe(true);
      await withStore(dir, (store) => {
        const catalog = Catalog.of(store);
        for (const [id, { session, values }] of saved) {
          if (gone.has(id) || archived.has(session)) continue;
          expect(catalog.locate(id), where(`${what}: checkpoint ${id} of session ${session}`)).toBeDefined();
          for (const [path, value] of values) expect(getCheckpointValue(store, id, path), where(`${what}: ${path} in checkpoint ${id}`)).toEqual(value);
        }
        for (const id of sessions) if (!archived.has(id)) expect(sessionRecord(store, id), where(`${what}: session ${id}`)).toBeDefined();
        expect(bigMemory(store), where(`${what}: the memory`)).toEqual(memory);
      });
      for (const id of archived) expect(bundleHolds(join(dir, ".apex/backups", bundleFileName(id)), id), where(`${what}: the bundle of archived session ${id}`)).toBe(true);
    };

    /**
     * `measure`: one run of the operation to its end (it counts as done), returning how long the
     * command took; then `kills` rounds of `once`, each given an instant spread over [0.15, 1] of
     * that time (node's start is about its first fifth) at which it kills the command, then checks.
     * The log says of each round whether the command was killed or had finished by then.
     */
    const phases: string[] = [];
    const crashes = async <T>(name: string, kills: number, measure: () => Promise<number>, once: (killAfter: number, round: number) => Promise<T>) => {
      const phaseStart = Date.now();
      const ms = await measure();
      for (let round = 0; round < kills; round++) {
        const at = Math.floor(ms * (0.15 + (0.85 * (round + next())) / kills));
        log.push(`${name}#${round}@${at}ms/${ms}`);
        lastKillable = undefined as Run | undefined; // (`once` sets it anew: not narrowed to undefined here)
        await once(at, round);
        log[log.length - 1] += lastKillable?.killed ? " killed" : " finished";
      }
      phases.push(`${name} ${((Date.now() - phaseStart) / 1000).toFixed(1)} s`);
    };

    // ---------------------------------------------------------------- a session interrupted, so the CLI writes the store itself
    const ready = project.start(["--task", "crash instants"]);
    const main = ready.session_id;
    sessions.add(main);
    await importNow();
    for (const agent of ready.agents) if (agent.pgid) killGroup(agent.pgid);
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(ready.supervisor_pid), 5000);
    await create("before the crashes");

    // memory import of many entries, and memory delete --recursive of them: all or nothing. They go
    // under /bulk, deleted before the checkpoints below are made (validate would re-hash them in each).
    const BULK = 15_000;
    const bulkFile = (round: number) => {
      const entries: Record<string, JsonValue> = {};
      for (let i = 0; i < BULK; i++) entries[`/bulk/d${i % 100}/k${i}`] = { round, text: "y".repeat(40) };
      const file = join(dir, `bulk-${round}.json`);
      writeFileSync(file, JSON.stringify(entries));
      return file;
    };
    /** The rounds the values under /bulk come from, and how many there are. */
    const bulk = () => withStore(dir, (store) => {
      const rounds = new Set<number>();
      let count = 0;
      for (const { value } of store.tree("/bulk")) {
        rounds.add((value as { round: number }).round);
        count++;
      }
      return { count, rounds: [...rounds].sort() };
    });
    let bulkRound = 0;
    await crashes(
      "memory import",
      2,
      async () => {
        const file = bulkFile(bulkRound);
        const t = Date.now();
        await ok(dir, ["memory", "import", file]);
        return Date.now() - t;
      },
      async (at, round) => {
        const file = bulkFile(round + 1);
        const result = await run(dir, ["memory", "import", file], at);
        const now = await bulk();
        if (!result.killed) expect(result.status, where(result.stderr)).toBe(0);
        expect(now.count, where("memory import: every entry there")).toBe(BULK);
        expect([[bulkRound], [round + 1]], where(`memory import: all of it or none, found rounds ${now.rounds}`)).toContainEqual(now.rounds);
        bulkRound = now.rounds[0]!;
        await check("memory import");
      },
    );
    await crashes(
      "memory delete",
      2,
      async () => {
        const t = Date.now();
        await ok(dir, ["memory", "delete", "/bulk", "--recursive"]);
        return Date.now() - t;
      },
      async (at) => {
        await ok(dir, ["memory", "import", bulkFile(bulkRound)]);
        const result = await run(dir, ["memory", "delete", "/bulk", "--recursive"], at);
        const now = await bulk();
        if (!result.killed) expect(result.status, where(result.stderr)).toBe(0);
        expect([0, BULK], where(`memory delete: all of it or none, ${now.count} entries left`)).toContain(now.count);
        await check("memory delete");
        if (now.count > 0) await ok(dir, ["memory", "delete", "/bulk", "--recursive"]);
      },
    );

    // checkpoint create of the whole memory: the checkpoint is whole (its values the memory's) or absent.
    await crashes(
      "checkpoint create",
      2,
      async () => {
        await importNow();
        const t = Date.now();
        await create("measured");
        return Date.now() - t;
      },
      async (at, round) => {
        await importNow();
        const before = await withStore(dir, (store) => Catalog.of(store).count(main));
        const result = await run(dir, ["checkpoint", "create", `killed ${round}`, "--json"], at);
        const created = await withStore(dir, (store) => {
          const catalog = Catalog.of(store);
          const count = catalog.count(main);
          expect(count - before, where("checkpoint create: one checkpoint or none")).toBeLessThanOrEqual(1);
          return count > before ? catalog.latest(main)! : undefined;
        });
        if (!result.killed) expect(result.status, where(result.stderr)).toBe(0);
        if (created) remember({ id: created.id, session_id: main });
        await check("checkpoint create");
      },
    );

    // checkpoint delete: gone or whole.
    await crashes(
      "checkpoint delete",
      2,
      async () => {
        const doomed = await create("to delete");
        const t = Date.now();
        await ok(dir, ["checkpoint", "delete", doomed.id, "--force", "--json"]);
        saved.delete(doomed.id);
        return Date.now() - t;
      },
      async (at) => {
        const doomed = await create("to delete");
        await run(dir, ["checkpoint", "delete", doomed.id, "--force", "--json"], at);
        await check("checkpoint delete", new Set([doomed.id]));
        if (!(await withStore(dir, (store) => Catalog.of(store).locate(doomed.id)))) saved.delete(doomed.id);
      },
    );

    // retention cleanup: only what the policy removes goes (then the sweep of their objects).
    const prunable = async () => {
      await importNow();
      await create("to prune");
      const plan = await ok(dir, ["session", "cleanup", "--dry-run", "--json"]);
      const removed = new Set<string>();
      for (const session of plan.sessions) for (const checkpoint of session.checkpoints) if (checkpoint.action === "remove") removed.add(checkpoint.id);
      expect(removed.size, where("cleanup has something to prune")).toBeGreaterThan(0);
      return removed;
    };
    const pruned = async () => {
      for (const id of [...saved.keys()]) if (!(await withStore(dir, (store) => Catalog.of(store).locate(id)))) saved.delete(id);
    };
    await crashes(
      "session cleanup",
      2,
      async () => {
        await prunable();
        const t = Date.now();
        await ok(dir, ["session", "cleanup", "--json"]);
        await pruned();
        return Date.now() - t;
      },
      async (at) => {
        const removed = await prunable();
        await run(dir, ["session", "cleanup", "--json"], at);
        await check("session cleanup", removed);
        await pruned();
      },
    );

    // compression of cold checkpoints (gzip 1), and recompression of those packs (brotli, smaller:
    // they are rewritten, their old packs removed) with the line moved back (--after 4: values
    // compressed as cold by an earlier run are hot again, in packs with cold ones, which are
    // rewritten without them): every checkpoint reads the same, and the recompression run again
    // finishes.
    await crashes(
      "session compress",
      2,
      async () => {
        await importNow();
        await create("to compress");
        const t = Date.now();
        await ok(dir, ["session", "compress", "--after", "1", "--algorithm", "gzip", "--level", "1", "--json"]);
        return Date.now() - t;
      },
      async (at, round) => {
        await importNow();
        await create("to compress");
        const how = round % 2 === 1 ? ["--after", "4", "--recompress", "--algorithm", "brotli"] : ["--after", "1", "--algorithm", "gzip", "--level", "1"];
        await run(dir, ["session", "compress", ...how, "--json"], at);
        await check("session compress");
        if (round % 2 === 1) {
          await ok(dir, ["session", "compress", ...how, "--json"]);
          await check("session compress, run again");
        }
      },
    );

    // session branch: the new session with its first checkpoint, or nothing.
    const branchNamed = (name: string) => withStore(dir, (store) => {
      for (const { path, value } of store.tree("/sessions/history")) {
        const record = value as { name?: string; session_id?: string };
        if (/^\/sessions\/history\/[^/]+$/.test(path) && record.name === name) return record.session_id!;
      }
      return undefined;
    });
    const branch = async (name: string) => {
      const made = await ok(dir, ["session", "branch", "latest", name, "--json"]);
      sessions.add(made.session_id);
      remember({ id: made.checkpoint.id, session_id: made.session_id });
      return made.session_id as string;
    };
    await crashes(
      "session branch",
      2,
      async () => {
        const t = Date.now();
        await branch("measured-branch");
        return Date.now() - t;
      },
      async (at, round) => {
        const name = `killed-branch-${round}`;
        await run(dir, ["session", "branch", "latest", name, "--json"], at);
        const id = await branchNamed(name);
        if (id) {
          const first = await withStore(dir, (store) => Catalog.of(store).latest(id));
          expect(first, where("a branch made has its checkpoint")).toBeDefined();
          sessions.add(id);
          remember({ id: first!.id, session_id: id });
        }
        await check("session branch");
        if (!id) await branch(name); // the rerun makes it
      },
    );

    // session merge of the main session into a branch: a merge checkpoint on the branch holding the main session's values, or none.
    const mergeInto = async (name: string) => {
      const target = await branch(name);
      await importNow();
      await create("to merge");
      return target;
    };
    await crashes(
      "session merge",
      2,
      async () => {
        const target = await mergeInto("merge-measured");
        const t = Date.now();
        const merged = await ok(dir, ["session", "merge", main, target, "--strategy", "theirs", "--json"]);
        expect(merged.applied, where("the merge applied")).toBe("checkpoint");
        remember({ id: merged.checkpoint.id, session_id: target });
        return Date.now() - t;
      },
      async (at, round) => {
        const target = await mergeInto(`merge-killed-${round}`);
        const result = await run(dir, ["session", "merge", main, target, "--strategy", "theirs", "--json"], at);
        const merged = await withStore(dir, (store) => (Catalog.of(store).count(target) > 1 ? Catalog.of(store).latest(target) : undefined));
        if (!result.killed) expect(result.status, where(result.stderr)).toBe(0);
        if (merged) {
          expect(merged.trigger, where("merge checkpoint")).toBe("merge");
          remember({ id: merged.id, session_id: target });
        }
        await check("session merge");
      },
    );

    // export: the file is a whole bundle, or not there (of a branch: the whole memory in its two checkpoints).
    const bundle = join(dir, "branch.apexbundle");
    const exporting = await branch("to-export");
    await crashes(
      "session export",
      2,
      async () => {
        const t = Date.now();
        await ok(dir, ["session", "export", exporting, "-o", bundle, "--json"]);
        return Date.now() - t;
      },
      async (at) => {
        const other = join(dir, `other-${at}.apexbundle`);
        await run(dir, ["session", "export", exporting, "-o", other, "--json"], at);
        if (existsSync(other)) expect(bundleHolds(other, exporting), where("an exported file is a whole bundle")).toBe(true);
        await check("session export");
      },
    );

    // archive: the session in the store, or in its verified bundle (never neither); unarchive: back, or still in its bundle.
    const toArchive = async (name: string) => branch(name);
    await crashes(
      "session archive",
      2,
      async () => {
        const id = await toArchive("archive-measured");
        const t = Date.now();
        await ok(dir, ["session", "archive", id, "--json"]);
        archived.add(id);
        return Date.now() - t;
      },
      async (at, round) => {
        const id = await toArchive(`archive-killed-${round}`);
        await run(dir, ["session", "archive", id, "--json"], at);
        const inStore = await withStore(dir, (store) => sessionRecord(store, id) !== undefined);
        if (!inStore) archived.add(id);
        await check("session archive");
        if (inStore) {
          await ok(dir, ["session", "archive", id, "--json"]); // the rerun archives it (the next check sees its bundle)
          archived.add(id);
        }
      },
    );
    await crashes(
      "session unarchive",
      2,
      async () => {
        const id = [...archived][0]!;
        const t = Date.now();
        await ok(dir, ["session", "unarchive", id, "--json"]);
        archived.delete(id);
        return Date.now() - t;
      },
      async (at) => {
        const id = [...archived][0]!;
        await run(dir, ["session", "unarchive", id, "--json"], at);
        const inStore = await withStore(dir, (store) => sessionRecord(store, id) !== undefined);
        if (inStore) archived.delete(id);
        await check("session unarchive");
        if (!inStore) {
          await ok(dir, ["session", "unarchive", id, "--json"]); // the rerun brings it back (the next check sees it)
          archived.delete(id);
        }
      },
    );

    // import of a bundle into another project: the session wholly, or nothing.
    const exported = readBundle(readBundleFile(bundle), { maxRatio: Number.MAX_SAFE_INTEGER }).checkpoints.length;
    await crashes(
      "session import",
      2,
      async () => {
        const other = tempDir("apex-crash-import-");
        writeFileSync(join(other.dir, "apex.config.yaml"), CONFIG);
        const t = Date.now();
        await ok(other.dir, ["session", "import", bundle, "--json"]);
        const ms = Date.now() - t;
        other.cleanup();
        return ms;
      },
      async (at) => {
        const other = mkdtempSync(join(tmpdir(), "apex-crash-import-"));
        registerDir(other);
        writeFileSync(join(other, "apex.config.yaml"), CONFIG);
        await run(other, ["session", "import", bundle, "--json"], at);
        // A store killed while LMDB was still making it (its databases not named yet) opens as APEX_E_NO_STORE ("being made"): nothing was imported.
        const imported = existsSync(join(other, ".apex", "store.mdb"))
          ? await withStore(other, (store) => (sessionRecord(store, exporting) === undefined ? 0 : Catalog.of(store).count(exporting))).catch((error: { code?: string }) => {
              if (error.code !== "APEX_E_NO_STORE") throw error;
              return undefined;
            })
          : undefined;
        if (imported !== undefined) {
          const count = imported;
          expect([0, exported], where("import: the session wholly or not at all")).toContain(count);
          const validate = await run(other, ["session", "validate", "--json"]);
          if (count > 0) expect(JSON.parse(validate.stdout).ok, where(`import: ${validate.stdout}`)).toBe(true);
        }
        const rerun = await run(other, ["session", "import", bundle, "--json"]);
        expect(rerun.status, where(`import run again: ${rerun.stderr}`)).toBe(0);
        expect(await withStore(other, (store) => Catalog.of(store).count(exporting)), where("import run again: the whole session")).toBe(exported);
      },
    );
    await check("the end");
    // What the killed archives and unarchives left half-written their reruns removed: the backup directory holds bundles only.
    expect(readdirSync(join(dir, ".apex/backups")).filter((name) => !name.endsWith(".apexbundle")), where("leftovers in .apex/backups")).toEqual([]);

    console.log(`crash instants (seed ${SEED}): ${log.length} kills in ${((Date.now() - started) / 1000).toFixed(1)} s (${phases.join(", ")}): ${log.join(", ")}`);
  }, 240_000);
});
