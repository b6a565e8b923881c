/**
 * Differential test of the storage port: the same seeded random sequences of operations applied
 * to an LMDB store and a PostgreSQL store through the port alone, every answer compared (values,
 * order, revisions, the revision log, error codes). Operations: set, delete (recursive too),
 * batches and batchSync (steps refused midway, batches thrown out of midway), batches inside
 * batches inside a transaction, transactions over a table and the keyspace (aborted too), point
 * reads, getEncodedMany, readView, query, tree, keysBelow, keys/entries ranges, changesSince,
 * table reads of every key kind; at the end every entry, change and row, also through a second,
 * read-only instance. Paths, globs, ranges and values are picked to be awkward: LIKE and glob
 * characters in segments, keys that are prefixes of one another, characters outside the BMP,
 * segments of hundreds of bytes, invalid paths, range bounds no key can hold (NUL, unpaired
 * surrogates, past LMDB's key size), values of every JSON kind (-0, extremes, NUL and unpaired
 * surrogates in strings, values of 100 KB). A difference is a bug of one backend: the seed and
 * step in the failure reproduce it. APEX_DIFF_SEEDS=N and APEX_DIFF_STEPS=M run seeds 1..N of M
 * steps each, for a longer search than the suite's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isApexError } from "../core/errors.js";
import { readView, type JsonValue, type KeyRange, type StorageBackend, type TableKey, type TableOptions, type WriteBatch } from "../core/store/port.js";
import { encodeJson } from "../plugins/value-codec.js";
import { postgresBackend } from "../plugins/postgres/backend.js";
import { random, tempDir } from "./helpers/cli.js";
import { LmdbStore } from "./helpers/store.js";
import { sharedPostgres } from "./support/postgres.js";

const SEEDS = process.env.APEX_DIFF_SEEDS ? Array.from({ length: Number(process.env.APEX_DIFF_SEEDS) }, (_, i) => i + 1) : [1, 2, 3, 4, 5, 6];
const STEPS = Number(process.env.APEX_DIFF_STEPS ?? 90);

let url: string;
const opened: StorageBackend[] = [];
const cleanups: Array<() => void> = [];

beforeAll(async () => {
  url = await (await sharedPostgres()).createDatabase();
}, 120_000);

afterAll(async () => {
  for (const store of opened.splice(0).reverse()) await store.close();
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A new LMDB store and a new PostgreSQL project, each with a second writable instance (another handle a command might hold). */
function pair(seed: number): { lmdb: StorageBackend; pg: StorageBackend; lmdb2: StorageBackend; pg2: StorageBackend } {
  const { dir, cleanup } = tempDir("apex-diff-");
  cleanups.push(cleanup);
  const spec = { backend: "postgres", dir, url, project: `diff-${seed}` };
  const lmdb = LmdbStore.open(dir, { actor: "user:diff" });
  const pg = postgresBackend.open(spec, { actor: "user:diff" }) as StorageBackend;
  const lmdb2 = LmdbStore.open(dir, { actor: "user:diff" });
  const pg2 = postgresBackend.open(spec, { actor: "user:diff" }) as StorageBackend;
  opened.push(lmdb, pg, lmdb2, pg2);
  return { lmdb, pg, lmdb2, pg2 };
}

/** A canonical text of any result: -0, undefined, Buffers, NaN and lone surrogates kept apart. */
function show(value: unknown): string {
  return JSON.stringify(value, function (key, v) {
    const raw = (this as Record<string, unknown>)[key];
    if (Buffer.isBuffer(raw) || raw instanceof Uint8Array) return { $bytes: Buffer.from(raw).toString("hex") };
    if (typeof raw === "number" && (Object.is(raw, -0) || !Number.isFinite(raw))) return { $number: Object.is(raw, -0) ? "-0" : String(raw) };
    if (raw === undefined) return { $undefined: true };
    return v;
  });
}

/** What a call gives: its value, or its error's code (an error that is not an ApexError is named as such). */
function outcome(call: () => unknown): unknown {
  try {
    const value = call();
    return { ok: value };
  } catch (error) {
    return { error: isApexError(error) ? error.code : `not an ApexError: ${(error as Error)?.name}` };
  }
}

async function outcomeAsync(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call() };
  } catch (error) {
    return { error: isApexError(error) ? error.code : `not an ApexError: ${(error as Error)?.name}: ${(error as Error)?.message}` };
  }
}

// ---- adversarial material

const SEGMENTS = [
  "a", "ab", "a0", "b", "A", "a b", "%", "_", "a%b", "a_b", "%%", "__", "\\", "a\\b", "\\\\", "\\%", "*", "?", "[", "]", "[a-z]", "{a,b}", "a*", "a?",
  "é", "\u00ff", "\u0100", "\u07ff", "\u0800", "\u{1F600}", "\uE000", "\uFFFD", "\uFFFF", "\u{10FFFF}", "\u2028", "~", "0", "-", ".a", "..a", "a.", "...",
  " ", "'", '"', "a'b", "$1", "\u00e9\u0301", "x".repeat(200), "\u{1F600}".repeat(60),
];
/** Not valid as segments: each makes a path the port refuses (APEX_E_BAD_PATH). */
const BAD_SEGMENTS = ["", ".", "..", "\u0000", "a\u0000b", "\u0001", "\u001f", "\u007f", "\u0085", "\uD800", "a\uDC00", "\uDBFF"];

type Rng = () => number;
const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)]!;
const int = (rng: Rng, below: number) => Math.floor(rng() * below);

function validPath(rng: Rng): string {
  const depth = 1 + int(rng, 3);
  const parts: string[] = [];
  // Few first segments, so that paths share prefixes and trees.
  parts.push(pick(rng, ["a", "ab", "a%b", "a_b", "%", "\u{1F600}", "x".repeat(200), "*"]));
  for (let i = 1; i < depth; i++) parts.push(pick(rng, SEGMENTS));
  return `/${parts.join("/")}`;
}

function anyPath(rng: Rng, known: string[]): string {
  const roll = rng();
  if (roll < 0.35 && known.length > 0) return pick(rng, known);
  if (roll < 0.88) return validPath(rng);
  // Invalid paths.
  const base = validPath(rng);
  return pick(rng, [
    `${base}/`,
    `${base}//x`,
    base.slice(1),
    "/",
    "",
    `${base}/${pick(rng, BAD_SEGMENTS)}`,
    `/${"y".repeat(1100)}`,
    `/${"\u{1F600}".repeat(256)}`,
    `/${"z".repeat(2100)}`,
  ]);
}

function anyString(rng: Rng): string {
  const roll = rng();
  if (roll < 0.15) return "";
  if (roll < 0.25) return "\u0000nul\u0000";
  if (roll < 0.35) return "lone \uD800 and \uDFFF";
  if (roll < 0.4) return "big ".repeat(5000 + int(rng, 20000));
  return Array.from({ length: 1 + int(rng, 4) }, () => pick(rng, SEGMENTS)).join(pick(rng, ["", " ", "/", "\n"]));
}

function anyValue(rng: Rng, depth = 0): JsonValue {
  const roll = int(rng, depth > 2 ? 8 : 11);
  switch (roll) {
    case 0:
      return null;
    case 1:
      return rng() < 0.5;
    case 2:
      return pick(rng, [0, -0, 1, -1, 0.5, 1e308, -1e308, 5e-324, -5e-324, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 2 ** 64, 1.7976931348623157e308, 123456789.123, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32, -(2 ** 31) - 1]);
    case 3:
      return int(rng, 1000) - 500;
    case 4:
    case 5:
      return anyString(rng);
    case 6:
      return (rng() - 0.5) * 10 ** (int(rng, 40) - 20);
    case 7:
      return [];
    case 8:
      return Array.from({ length: int(rng, 5) }, () => anyValue(rng, depth + 1));
    case 9: {
      const out: Record<string, JsonValue> = {};
      for (let i = int(rng, 5); i > 0; i--) out[pick(rng, ["a", "b", "", "é", "\u{1F600}", "__proto__x", "constructor", "0", "1", "10", "-1", "a.b", "\u0000"])] = anyValue(rng, depth + 1);
      return out;
    }
    default:
      return Array.from({ length: 200 + int(rng, 2000) }, (_, i) => ({ i, s: anyString(rng).slice(0, 40) }));
  }
}

/** A glob from a path: segments made wildcards, characters made `?`, escapes. */
function anyGlob(rng: Rng, known: string[]): string {
  const path = known.length > 0 && rng() < 0.7 ? pick(rng, known) : validPath(rng);
  const parts = path.slice(1).split("/");
  const out = parts.map((part) => {
    const roll = rng();
    if (roll < 0.2) return "*";
    if (roll < 0.3) return "**";
    if (roll < 0.4) return part.slice(0, 1) + "*";
    if (roll < 0.5 && part.length > 0) return "?" + Array.from(part).slice(1).join("");
    if (roll < 0.55) return part.replace(/[*?\\]/g, (c) => `\\${c}`);
    return part;
  });
  if (rng() < 0.15) out.push("**");
  if (rng() < 0.1) out.splice(int(rng, out.length), 1);
  let glob = `/${out.join("/")}`;
  if (rng() < 0.05) glob = pick(rng, ["/", "/**", "/*", "**", "a/*", "/a\\", "/\\*", "/\\?", "/[", "/a/**/b", "/**/a", "/a**", `/${"q".repeat(2100)}`, "/a\u0000*"]);
  return glob;
}

/** A raw range bound: near known keys, prefixes of them, or strings no key can be. */
function anyBound(rng: Rng, known: string[]): string | undefined {
  const roll = rng();
  if (roll < 0.15) return undefined;
  if (roll < 0.5 && known.length > 0) {
    const key = pick(rng, known);
    const cut = Array.from(key).slice(0, 1 + int(rng, Array.from(key).length));
    return cut.join("") + pick(rng, ["", "", "/", "0", "\u0000", "\uFFFF", "\u{10FFFF}", "\uD800"]);
  }
  return pick(rng, ["", "/", "0", "/a", "/a/", "/a0", "/ab", "/\u{1F600}", "/\uE000", "/\uFFFF", "\u{10FFFF}", "/a\u0000", "\u0000", "/a\uD800", "/a\uDFFF/b", "~", `/${"r".repeat(2100)}`, "/%", "/_"]);
}

function anyRange(rng: Rng, known: string[]): KeyRange<string> {
  const range: KeyRange<string> = {};
  const start = anyBound(rng, known);
  const end = anyBound(rng, known);
  if (start !== undefined) range.start = start;
  if (end !== undefined) range.end = end;
  if (rng() < 0.4) range.reverse = true;
  if (rng() < 0.3) range.limit = int(rng, 6);
  if (rng() < 0.2) range.offset = int(rng, 4);
  return range;
}

// ---- operations

interface Op {
  name: string;
  /** Runs on one store; returns its outcome, compared between the stores. */
  run(store: StorageBackend): Promise<unknown> | unknown;
}

/** One step of a batch, recorded so that both stores get the same. */
type BatchStep = { kind: "set"; path: string; value: JsonValue } | { kind: "setEncoded"; path: string; value: JsonValue } | { kind: "deleteDamaged"; path: string } | { kind: "delete"; path: string } | { kind: "deleteTree"; path: string } | { kind: "get"; path: string } | { kind: "reads"; path: string; glob: string } | { kind: "throw" };

function batchSteps(rng: Rng, known: string[], canThrow: boolean): BatchStep[] {
  const steps: BatchStep[] = [];
  for (let i = 1 + int(rng, 6); i > 0; i--) {
    const roll = rng();
    if (roll < 0.55) steps.push({ kind: "set", path: anyPath(rng, known), value: anyValue(rng) });
    else if (roll < 0.6) steps.push({ kind: "setEncoded", path: anyPath(rng, known), value: anyValue(rng) });
    else if (roll < 0.63) steps.push({ kind: "deleteDamaged", path: anyPath(rng, known) });
    else if (roll < 0.7) steps.push({ kind: "delete", path: anyPath(rng, known) });
    else if (roll < 0.78) steps.push({ kind: "deleteTree", path: anyPath(rng, known) });
    else if (roll < 0.9) steps.push({ kind: "get", path: anyPath(rng, known) });
    else steps.push({ kind: "reads", path: anyPath(rng, known), glob: anyGlob(rng, known) });
  }
  if (canThrow && rng() < 0.25) steps.splice(int(rng, steps.length + 1), 0, { kind: "throw" });
  return steps;
}

/** The batch body: every step's own outcome (a refused step is caught, as a caller may), and a throw that aborts it. */
function applySteps(store: StorageBackend, batch: WriteBatch, steps: BatchStep[], catchRefusals: boolean): unknown[] {
  const results: unknown[] = [];
  for (const step of steps) {
    const one = () => {
      switch (step.kind) {
        case "set":
          return batch.set(step.path, step.value);
        case "setEncoded":
          return batch.setEncoded(step.path, encodeJson(step.value));
        case "deleteDamaged":
          return batch.deleteDamaged(step.path);
        case "delete":
          return batch.delete(step.path);
        case "deleteTree":
          return batch.deleteTree(step.path);
        case "get":
          return batch.get(step.path);
        case "reads":
          // The store's own reads inside the batch: they see its writes so far.
          return [
            outcome(() => store.has(step.path)),
            outcome(() => store.getEncoded(step.path)),
            outcome(() => (store.getEncodedMany ? store.getEncodedMany([step.path]) : [store.getEncoded(step.path)])),
            outcome(() => Array.from(store.query(step.glob))),
            outcome(() => Array.from(store.tree(step.path))),
            outcome(() => Array.from(store.keys({ start: step.path, limit: 3 }))),
          ];
        case "throw":
          throw new Error("abort the batch");
      }
    };
    if (step.kind === "throw" || !catchRefusals) results.push(one());
    else results.push(outcome(one));
  }
  return results;
}

const TABLES: Array<{ name: string; options: TableOptions }> = [
  { name: "t_string", options: { keys: "string", values: "structured" } },
  { name: "t_uint", options: { keys: "uint32", values: "binary" } },
  { name: "t_binary", options: { keys: "binary", values: "binary" } },
  { name: "t_tuple", options: { keys: "tuple", values: "structured" } },
];

function tableKey(rng: Rng, kind: TableOptions["keys"]): TableKey {
  switch (kind) {
    case "string":
      // Not here: U+0001–U+0004 in a key of 64 characters or more, and unpaired surrogates. lmdb-js's key
      // encoding (ordered-binary) loses the first and keeps the second only in keys under 64 characters;
      // PostgreSQL keeps the first and stores the second as U+FFFD. Changing either changes stored keys.
      return pick(rng, ["", "a", "ab", "a\u0000", "\u0001", "\u0005", "\u001b", "\u001c", " ", "é", "\u{1F600}", "\uE000", "\uFFFF", "%", "_", "x".repeat(70), "a".repeat(63), `${"a".repeat(64)}\u0005`, "\u0000\u0003"]);
    case "uint32":
      return pick(rng, [0, 1, 2, 255, 256, 65535, 65536, 2 ** 31, 2 ** 32 - 1]);
    case "binary":
      return Buffer.from(pick(rng, ["00", "0000", "01", "0100", "ff", "ffff", "7f", "80", "00ff", "01ff"]), "hex");
    case "tuple":
      return pick(rng, [["a", 1], ["a", 2], ["a", 10], ["a", -1], ["a", 0.5], ["a", "x"], ["ab", 0], ["b", 0], ["a"], ["", 0], [0, "a"], [1e10, "z"]]);
  }
}

function tableValue(rng: Rng, kind: TableOptions["values"]): unknown {
  if (kind === "binary") return Buffer.from(anyString(rng).slice(0, 300 + int(rng, 3000)));
  return anyValue(rng);
}

function tableRange(rng: Rng, kind: TableOptions["keys"]): KeyRange<TableKey> {
  const range: KeyRange<TableKey> = {};
  if (rng() < 0.6) range.start = tableKey(rng, kind);
  if (rng() < 0.5) range.end = tableKey(rng, kind);
  if (rng() < 0.3) range.reverse = true;
  if (rng() < 0.3) range.limit = int(rng, 5);
  if (rng() < 0.2) range.offset = int(rng, 3);
  return range;
}

function makeOp(rng: Rng, known: string[]): Op {
  if (rng() < 0.06) return nestedOp(rng, known);
  const roll = rng();
  if (roll < 0.16) {
    const path = anyPath(rng, known);
    const value = anyValue(rng);
    const actor = rng() < 0.2 ? pick(rng, ["agent:a", "user:é\u{1F600}", "", "plugin:a\nb", "user:a\u0000b", "user:\uD800", "x".repeat(3000)]) : undefined;
    return { name: `set ${show(path).slice(0, 80)} actor=${show(actor).slice(0, 40)}`, run: (s) => outcomeAsync(() => s.set(path, value, actor)) };
  }
  if (roll < 0.24) {
    const path = anyPath(rng, known);
    const recursive = rng() < 0.4;
    return { name: `delete ${show(path).slice(0, 80)} recursive=${recursive}`, run: (s) => outcomeAsync(() => s.delete(path, { recursive })) };
  }
  if (roll < 0.34) {
    const steps = batchSteps(rng, known, true);
    const catching = rng() < 0.6;
    return { name: `batch ${show(steps).slice(0, 200)} catching=${catching}`, run: (s) => outcomeAsync(() => s.batch((b) => applySteps(s, b, steps, catching))) };
  }
  if (roll < 0.38) {
    const steps = batchSteps(rng, known, true);
    return { name: `batchSync ${show(steps).slice(0, 200)}`, run: (s) => outcome(() => s.batchSync((b) => applySteps(s, b, steps, true))) };
  }
  if (roll < 0.43) {
    // A transaction over tables and the keyspace, perhaps aborted at its end.
    const table = pick(rng, TABLES);
    const writes = Array.from({ length: 1 + int(rng, 5) }, () => ({ remove: rng() < 0.3, key: tableKey(rng, table.options.keys), value: tableValue(rng, table.options.values) }));
    const steps = batchSteps(rng, known, false);
    const abort = rng() < 0.25;
    const range = tableRange(rng, table.options.keys);
    const probe = anyPath(rng, known);
    return {
      name: `transaction ${table.name} ${writes.length} writes, ${steps.length} steps, abort=${abort}`,
      run: (s) =>
        outcomeAsync(() =>
          s.transaction(() => {
            const t = s.table<TableKey, unknown>(table.name, table.options);
            const results: unknown[] = [];
            for (const write of writes) {
              // remove's answer is not part of the port (`unknown`): lmdb-js answers with a promise-like.
              if (write.remove) results.push(outcome(() => void t.remove(write.key)));
              else {
                t.put(write.key, write.value);
                results.push(outcome(() => t.get(write.key)));
              }
            }
            results.push(s.batchSync((b) => applySteps(s, b, steps, true)));
            // Reads inside see the transaction's writes (PostgreSQL sends its buffer first).
            results.push(outcome(() => Array.from(t.getRange(range))), outcome(() => t.getCount(range)), outcome(() => Array.from(s.keysBelow(probe))));
            if (abort) throw new Error("abort the transaction");
            return results;
          }),
        ),
    };
  }
  if (roll < 0.53) {
    const table = pick(rng, TABLES);
    const range = tableRange(rng, table.options.keys);
    const key = tableKey(rng, table.options.keys);
    return {
      name: `table reads ${table.name} ${show(range)} ${show(key)}`,
      run: (s) => {
        const t = s.table<TableKey, unknown>(table.name, table.options);
        return {
          keys: outcome(() => Array.from(t.getKeys(range))),
          range: outcome(() => Array.from(t.getRange(range))),
          count: outcome(() => t.getCount(range)),
          get: outcome(() => t.get(key)),
          // A structured table's bytes are each backend's own msgpack (lmdb-js's records; PostgreSQL's plain maps).
          fast: table.options.values === "binary" ? outcome(() => t.getBinaryFast(key)) : "structured",
          exists: outcome(() => t.doesExist(key)),
          entries: outcome(() => t.getStats().entryCount),
        };
      },
    };
  }
  if (roll < 0.65) {
    const glob = anyGlob(rng, known);
    const limit = rng() < 0.3 ? int(rng, 4) : undefined;
    return { name: `query ${show(glob)} limit=${limit}`, run: (s) => outcome(() => Array.from(s.query(glob, limit === undefined ? {} : { limit }))) };
  }
  if (roll < 0.75) {
    const range = anyRange(rng, known);
    return { name: `keys/entries ${show(range)}`, run: (s) => ({ keys: outcome(() => Array.from(s.keys(range))), entries: outcome(() => Array.from(s.entries(range))) }) };
  }
  if (roll < 0.85) {
    const path = rng() < 0.2 ? pick(rng, ["/", "", "/a/", "//", "a"]) : anyPath(rng, known);
    return { name: `tree/keysBelow ${show(path).slice(0, 80)}`, run: (s) => ({ tree: outcome(() => Array.from(s.tree(path))), below: outcome(() => Array.from(s.keysBelow(path))) }) };
  }
  if (roll < 0.92) {
    const since = pick(rng, [0, 1, 2, 3, 5, 8, 13, 21, 40, 80, 1000, -1]);
    const limit = rng() < 0.4 ? int(rng, 5) : undefined;
    return {
      name: `changesSince ${since} limit=${limit}`,
      run: (s) => ({
        // The times are each backend's clock at its commit: compared apart (one per batch).
        changes: outcome(() => Array.from(s.changesSince(since, limit === undefined ? {} : { limit }), ({ time, ...change }) => (typeof time === "number" ? change : { ...change, time }))),
        revision: outcome(() => s.revision()),
      }),
    };
  }
  const paths = Array.from({ length: 1 + int(rng, 4) }, () => anyPath(rng, known));
  return {
    name: `point reads ${show(paths).slice(0, 200)}`,
    run: (s) => ({
      points: paths.map((path) => ({
        get: outcome(() => s.get(path)),
        has: outcome(() => s.has(path)),
        encoded: outcome(() => s.getEncoded(path)),
        // Optional in the port: the same answers as getEncoded where a backend has it.
        many: outcome(() => (s.getEncodedMany ? s.getEncodedMany([path, path]) : [s.getEncoded(path), s.getEncoded(path)])),
      })),
      view: outcome(() => readView(s, () => [s.revision(), Array.from(s.keysBelow("/")).length, paths.map((p) => outcome(() => s.has(p)))])),
    }),
  };
}

/** Batches inside a transaction and inside each other, the log and revision read between them. */
function nestedOp(rng: Rng, known: string[]): Op {
  const outer = batchSteps(rng, known, false);
  const inner = batchSteps(rng, known, false);
  const since = int(rng, 30);
  const abort = rng() < 0.2;
  return {
    name: `nested ${show([outer, inner]).slice(0, 200)} since=${since} abort=${abort}`,
    run: (s) =>
      outcomeAsync(() =>
        s.transaction(() => {
          const results: unknown[] = [s.revision()];
          results.push(
            s.batchSync((b) => {
              const half = Math.ceil(outer.length / 2);
              const out: unknown[] = [applySteps(s, b, outer.slice(0, half), true)];
              out.push(s.batchSync((nested) => applySteps(s, nested, inner, true)));
              out.push(applySteps(s, b, outer.slice(half), true), s.revision());
              return out;
            }),
          );
          // Tables with rows: LMDB also lists a table opened and never written (port.ts).
          const tables = s.tableNames().filter((name) => {
            const options = TABLES.find((t) => t.name === name)?.options;
            return options !== undefined && s.table(name, options).getCount() > 0;
          });
          results.push(s.revision(), Array.from(s.changesSince(since), ({ time: _time, ...c }) => c), tables);
          if (abort) throw new Error("abort the transaction");
          return results;
        }),
      ),
  };
}

describe("storage port: LMDB and PostgreSQL give the same answers", () => {
  it.each(SEEDS)("seed %i", async (seed) => {
    const rng = random(seed);
    const { lmdb, pg, lmdb2, pg2 } = pair(seed);
    const known: string[] = [];
    const differences: string[] = [];
    for (let step = 0; step < STEPS && differences.length < 40; step++) {
      const op = makeOp(rng, known);
      // Mostly the first instance; some operations through the second, which must see the first's writes and tables.
      const second = rng() < 0.2;
      const a = show(await op.run(second ? lmdb2 : lmdb));
      const b = show(await op.run(second ? pg2 : pg));
      if (a !== b) {
        // Shown from a little before the first character that differs.
        let at = 0;
        while (a[at] === b[at]) at++;
        const from = Math.max(0, at - 200);
        differences.push(`seed ${seed} step ${step}${second ? " (second instance)" : ""} ${op.name}\n  lmdb:     …${a.slice(from, from + 500)}\n  postgres: …${b.slice(from, from + 500)}`);
      }
      // The paths that exist now, for the next operations to hit.
      known.splice(0, known.length, ...Array.from(lmdb.keysBelow("/")));
    }
    const whole = (s: StorageBackend) =>
      show({
        revision: s.revision(),
        entries: Array.from(s.tree("/")),
        log: Array.from(s.changesSince(0), ({ time: _time, ...c }) => c),
        tables: TABLES.map(({ name, options }) => Array.from(s.table(name, options).getRange())),
      });
    // Read again through a second, read-only instance of each store.
    const [lmdbAgain, pgAgain] = [LmdbStore.open(lmdb.dir, { readOnly: true }), postgresBackend.open({ backend: "postgres", dir: pg.dir, url, project: `diff-${seed}` }, { readOnly: true }) as StorageBackend];
    opened.push(lmdbAgain, pgAgain);
    if (differences.length === 0 && whole(lmdb) !== whole(pg)) differences.push(`seed ${seed}: the stores differ at the end`);
    if (differences.length === 0 && whole(lmdbAgain) !== whole(pgAgain)) differences.push(`seed ${seed}: the stores differ at the end, read again`);
    if (differences.length === 0 && whole(lmdb) !== whole(lmdbAgain)) differences.push(`seed ${seed}: LMDB reads differently through a second instance`);
    // Closed now (each PostgreSQL instance holds a connection): a long search opens hundreds.
    for (const store of opened.splice(0).reverse()) await store.close();
    expect(differences).toEqual([]);
  });
});
