import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Config } from "../core/config/types.js";
import { Engine } from "../core/engine.js";
import {
  ObjectStore,
  PACK_CODEC_IDS,
  canonicalBytes,
  decodeLocation,
  decompressPack,
  encodeLocation,
  sha256,
  walkTree,
  type Hash,
  type PackCodec,
} from "../plugins/checkpoint/engine/objects.js";
import { type Store, type JsonValue } from "../core/store/store.js";
import { openStore } from "../core/store/open.js";
import {
  checkpointInfo,
  createCheckpoint,
  deleteCheckpoint,
  listCheckpoints,
  readCheckpointMemory,
  restoreCheckpoint,
  sweepUnreferenced,
  type CheckpointManifest,
} from "../plugins/checkpoint/checkpoints.js";
import { validateStore } from "../plugins/checkpoint/validate.js";
import compression from "../plugins/compression/index.js";
import checkpoint from "../plugins/checkpoint/index.js";
import { compressColdData } from "../plugins/compression/compress.js";
import { parseDurationOption } from "../cli/durations.js";
import type { CompressionOptions } from "../plugins/compression/options.js";
import { runApex, tempDir } from "./helpers/cli.js";
import { LmdbStore, transactionSync } from "./helpers/store.js";
import { forEachBackend } from "./support/backends.js";

let dir: string;
let cleanup: () => void;
let store: Store;

beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-compression-"));
});
afterEach(async () => {
  await store.close();
  cleanup();
});

const SESSION = "s-main";
const DAY = 86_400_000;
const START = Date.parse("2026-01-05T08:00:00Z");

async function startSession(sessionId = SESSION): Promise<void> {
  const at = new Date(START).toISOString();
  await store.batch((batch) => {
    batch.set(`/sessions/${sessionId}`, { session_id: sessionId, status: "active", created_at: at, updated_at: at, agents: ["coder"], supervisor: null, history: [], outcome: null, ended_at: null });
    batch.set(`/sessions/${sessionId}/agents/coder`, { name: "coder", status: "running", task: "t-0001" });
    batch.set(`/sessions/${sessionId}/tasks/t-0001`, { id: "t-0001", title: "write notes", status: "active", assignee: "coder" });
    batch.set("/sessions/current", { session_id: sessionId });
  });
}

const WORDS = "agent task memory checkpoint merkle tree restore session value commit branch merge plan test build review".split(" ");
function text(seed: number, length: number): string {
  let out = "";
  let state = seed;
  while (out.length < length) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    out += `${WORDS[state % WORDS.length]} `;
  }
  return out.slice(0, length);
}

const PROSE = "the agent wrote a plan for each task and the reviewer sent one back because its tests did not cover the error path so the coder added a case and a note about why the retry waits before it reads the file again while the supervisor kept a checkpoint of every step".split(" ");

/** Step `step` rewrites a few notes (values unique to that step) and keeps the rest. */
async function writeStep(step: number, keys = 40): Promise<void> {
  await store.batch((batch) => {
    batch.set("/notes/constant", { text: "the same in every checkpoint" });
    for (let k = 0; k < keys; k++) {
      if (step === 0 || k % 5 === step % 5) batch.set(`/notes/area-${k % 4}/k${k}`, { k, step, body: text(k * 1000 + step, 600) });
    }
    batch.set(`/log/${String(step).padStart(3, "0")}`, { step, body: text(step, 300) });
  });
}

async function checkpointAt(time: number, sessionId = SESSION): Promise<CheckpointManifest> {
  return (await createCheckpoint(store, { sessionId, trigger: "interval", now: () => new Date(time) })).manifest;
}

/** Checkpoints 0..count-1, one day apart. */
async function history(count: number): Promise<CheckpointManifest[]> {
  await startSession();
  const manifests: CheckpointManifest[] = [];
  for (let step = 0; step < count; step++) {
    await writeStep(step);
    manifests.push(await checkpointAt(START + step * DAY));
  }
  return manifests;
}

function memoryOf(manifest: CheckpointManifest): Array<[string, JsonValue]> {
  return [...readCheckpointMemory(store, manifest.id)].map((entry) => [entry.path, entry.value]);
}

/** The project memory as the store holds it now (outside /sessions). */
function liveMemory(): Array<[string, JsonValue]> {
  return [...store.tree("/")].filter((entry) => !entry.path.startsWith("/sessions")).map((entry) => [entry.path, entry.value]);
}

/** Value hashes reachable from a checkpoint's trees. */
function valuesOf(manifest: CheckpointManifest): Set<Hash> {
  const view = ObjectStore.of(store).view({ fresh: true });
  const out = new Set<Hash>();
  for (const root of [manifest.memory.root, manifest.tasks.root, manifest.agents.root]) for (const { hash } of walkTree(view, root)) out.add(hash);
  return out;
}

function isCompressed(hash: Hash): boolean {
  return ObjectStore.of(store).locate("value", hash)?.codec !== undefined;
}

forEachBackend((backend) => {
beforeEach(async () => {
  store = await backend.openProject(dir);
});

describe("pack codecs in the object store", () => {
  it("location records carry the codec and the uncompressed size; old records still decode", () => {
    const plain = { pack: 7, offset: 300, length: 25 };
    expect(decodeLocation(encodeLocation(plain))).toEqual(plain);
    const compressed = { pack: 9, offset: 65_000, length: 600, codec: PACK_CODEC_IDS.brotli, rawSize: 65_600 };
    expect(decodeLocation(encodeLocation(compressed))).toEqual(compressed);
    expect(() => decodeLocation(encodeLocation({ ...compressed, codec: 7 }))).toThrow(/unknown codec 7/);
    expect(() => decodeLocation(encodeLocation({ ...compressed, rawSize: 100 }))).toThrow(/past the end/);
  });

  it("reads objects of compressed packs transparently; hashes are those of the uncompressed bytes", async () => {
    const objects = ObjectStore.of(store);
    const values = Array.from({ length: 50 }, (_, i) => canonicalBytes({ i, body: text(i, 500) }));
    await store.transaction(() => {
      objects.putMany(values.map((bytes) => ({ kind: "value" as const, hash: sha256(bytes), bytes, codec: "gzip" as PackCodec })));
    });
    const view = objects.view({ fresh: true });
    for (const bytes of values) {
      const hash = sha256(bytes);
      const location = objects.locate("value", hash)!;
      expect(location.codec).toBe(PACK_CODEC_IDS.gzip);
      expect(objects.getRaw("value", hash)).toEqual(bytes);
      expect(view.valueBytes(hash)).toEqual(bytes);
    }
    const usage = objects.usage();
    expect(usage.bytes).toBeLessThan(values.reduce((sum, bytes) => sum + bytes.length, 0) / 3);
    expect(usage.liveBytes).toBe(usage.bytes);
    // A damaged compressed pack: its objects read as corrupt, never as other bytes.
    const { pack, rawSize } = objects.locate("value", sha256(values[0]!))!;
    expect(() => decompressPack(PACK_CODEC_IDS.gzip, Buffer.from("not gzip"), rawSize!)).toThrow();
    const damaged = Buffer.from(objects.packs.get(pack)!);
    damaged[damaged.length - 6] ^= 0xff;
    await store.transaction(() => objects.packs.put(pack, damaged));
    expect(() => objects.view({ fresh: true }).valueBytes(sha256(values[0]!))).toThrow(expect.objectContaining({ code: "APEX_E_INTEGRITY", reason: "corrupt" }));
  });
});

describe.each(["brotli", "gzip"] as const)("compressing cold checkpoint data with %s", (algorithm) => {
  it("keeps hashes and manifests, restores exactly, validates clean, and reports the bytes", async () => {
    const manifests = await history(8);
    const memoryBefore = manifests.map(memoryOf);
    const listBefore = listCheckpoints(store, SESSION, { limit: 100 });
    const packBytesBefore = ObjectStore.of(store).usage().bytes;

    const result = await compressColdData(store, { algorithm, policy: { after: 3 }, measure: true });
    expect(result.checkpoints).toEqual({ cold: 5, hot: 3 });
    expect(result.values.compressed).toBeGreaterThan(20);
    expect(result.bytes.after).toBeGreaterThan(0);
    expect(result.bytes.before / result.bytes.after).toBeGreaterThan(3);
    expect(result.store!.before).toBe(packBytesBefore);
    expect(result.store!.after).toBeLessThan(result.store!.before);
    expect(result.packs.written).toBeGreaterThan(0);

    // What only cold checkpoints use is compressed; what a hot checkpoint uses is not.
    const hot = new Set([...manifests.slice(5).flatMap((manifest) => [...valuesOf(manifest)])]);
    const coldOnly = [...valuesOf(manifests[0]!)].filter((hash) => !hot.has(hash));
    expect(coldOnly.length).toBeGreaterThan(0);
    for (const hash of coldOnly) expect(isCompressed(hash)).toBe(true);
    for (const hash of hot) expect(isCompressed(hash)).toBe(false);

    // Same checkpoints, same trees, same memory at each; the node cache does not matter.
    expect(listCheckpoints(store, SESSION, { limit: 100 })).toEqual(listBefore);
    expect(manifests.map(memoryOf)).toEqual(memoryBefore);
    ObjectStore.of(store).clearNodeCache();
    expect(manifests.map(memoryOf)).toEqual(memoryBefore);
    const report = validateStore(store);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);

    // A second run finds nothing new to do.
    const second = await compressColdData(store, { algorithm, policy: { after: 3 } });
    expect(second.values.compressed).toBe(0);
    expect(second.values.alreadyCompressed).toBe(result.values.compressed);

    // Restoring a compressed checkpoint puts the memory back exactly, and the next checkpoint builds on it.
    await restoreCheckpoint(store, manifests[0]!.id);
    expect(liveMemory()).toEqual(memoryBefore[0]);
    const again = await checkpointAt(START + 20 * DAY);
    expect(again.memory.root).toBe(manifests[0]!.memory.root);
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
  });

  it("validate re-hashes the decompressed bytes: a flipped byte in a compressed pack is found", async () => {
    const manifests = await history(4);
    await compressColdData(store, { algorithm, policy: { after: 1 } });
    const objects = ObjectStore.of(store);
    const victim = [...valuesOf(manifests[0]!)].find(isCompressed)!;
    const { pack } = objects.locate("value", victim)!;
    const bytes = Buffer.from(objects.packs.get(pack)!);
    bytes[Math.floor(bytes.length / 2)] ^= 0x55;
    await store.transaction(() => objects.packs.put(pack, bytes));
    const report = validateStore(store);
    expect(report.ok).toBe(false);
    expect(report.problems.map((problem) => problem.code)).toContain("value-corrupt");
    expect(report.problems.some((problem) => problem.hash === victim)).toBe(true);
    await expect(restoreCheckpoint(store, manifests[0]!.id)).rejects.toMatchObject({ code: "APEX_E_INTEGRITY" });
  });
});

describe("compression and the rest of the store", () => {
  it("older_than: only checkpoints older than the threshold are cold", async () => {
    const manifests = await history(6);
    const now = START + 5 * DAY + 3_600_000;
    const result = await compressColdData(store, { algorithm: "brotli", policy: { olderThanMs: parseDurationOption("3days", "--older-than") }, now: () => now });
    expect(result.checkpoints).toEqual({ cold: 3, hot: 3 }); // created at day 0, 1, 2
    const hot = new Set(manifests.slice(3).flatMap((manifest) => [...valuesOf(manifest)]));
    expect([...valuesOf(manifests[2]!)].filter((hash) => !hot.has(hash)).every(isCompressed)).toBe(true);
    expect([...valuesOf(manifests[3]!)].some(isCompressed)).toBe(false);
  });

  it("only the named session's cold checkpoints; data other sessions still use stays hot", async () => {
    const manifests = await history(4);
    await startSession("s-other");
    await store.batch((batch) => {
      batch.set("/sessions/s-other/agents/coder", { name: "coder", status: "running", task: "t-0009" });
      batch.set("/sessions/s-other/tasks/t-0009", { id: "t-0009", title: "other work", status: "active", assignee: "coder" });
      batch.delete("/sessions/s-other/tasks/t-0001");
    });
    const other = await checkpointAt(START + 10 * DAY, "s-other"); // holds the latest memory
    const result = await compressColdData(store, { algorithm: "gzip", policy: { after: 0 }, sessionId: "s-other" });
    expect(result.checkpoints.cold).toBe(1);
    expect(result.values.compressed).toBe(2); // its task and agent records: the memory is the current one (hot)
    expect([...valuesOf(manifests[0]!)].some(isCompressed)).toBe(false);
    expect(memoryOf(other)).toEqual(memoryOf(manifests[3]!));
  });

  it("--recompress: cold packs compressed already are compressed again when that shrinks them; a pack holding hot data too keeps those in a pack compressed as before", async () => {
    // Prose that gzip 1 leaves room in (history's notes repeat with a short period: any codec takes them to nothing).
    let seed = 99;
    const word = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
      return PROSE[((t ^ (t >>> 14)) >>> 0) % PROSE.length]!;
    };
    const manifests: CheckpointManifest[] = [];
    const step = async (n: number) => {
      await writeStep(n);
      await store.batch((batch) => {
        for (let k = 0; k < 40; k++) if (n === 0 || k % 5 === n % 5) batch.set(`/prose/p${k}`, Array.from({ length: 250 }, word).join(" "));
      });
      manifests.push(await checkpointAt(START + n * DAY));
    };
    await startSession();
    for (let n = 0; n < 10; n++) await step(n);
    const objects = ObjectStore.of(store);
    const where = (hash: Hash) => objects.locate("value", hash)!;
    const gzip1 = { algorithm: "gzip", level: 1, policy: { after: 3 } } as const;
    expect((await compressColdData(store, gzip1)).values.compressed).toBeGreaterThan(10);
    // Checkpoint 0 restored and checkpointed again: values of it in gzip packs are hot once more.
    await restoreCheckpoint(store, manifests[0]!.id);
    manifests.push(await checkpointAt(START + 10 * DAY));
    const hotPacks = new Set([...valuesOf(manifests[10]!)].filter(isCompressed).map((hash) => where(hash).pack));
    expect(hotPacks.size).toBeGreaterThan(0);
    // More steps, and gzip 1 again: packs of values that only cold checkpoints hold.
    for (let n = 11; n < 15; n++) await step(n);
    expect((await compressColdData(store, gzip1)).values.compressed).toBeGreaterThan(10);
    const memoryBefore = manifests.map(memoryOf);
    const locations = () => new Map(manifests.flatMap((manifest) => [...valuesOf(manifest)]).map((hash) => [hash, where(hash)]));
    const before = locations();

    // Without --recompress nothing compressed moves, whatever the codec asked for.
    const plain = await compressColdData(store, { algorithm: "brotli", level: 11, policy: { after: 3 } });
    expect(plain.values).toMatchObject({ compressed: 0, recompressed: 0 });
    expect(locations()).toEqual(before);
    const usage = objects.usage().bytes;

    const dry = await compressColdData(store, { algorithm: "brotli", level: 11, policy: { after: 3 }, recompress: true, dryRun: true, measure: true });
    expect(objects.usage().bytes).toBe(usage);
    const again = await compressColdData(store, { algorithm: "brotli", level: 11, policy: { after: 3 }, recompress: true, measure: true });
    expect(again.values.recompressed).toBe(dry.values.recompressed);
    expect(again.values.recompressed).toBeGreaterThan(0);
    expect(again.values.recompressed).toBe(again.values.compressed);
    expect(again.bytes.after).toBeLessThan(again.bytes.before);
    expect(again.store!.after).toBeLessThan(again.store!.before);
    // (the dry run does not rewrite the hot values of the packs it shares, at gzip's default level: an estimate)
    expect(Math.abs(again.store!.after - dry.store!.after)).toBeLessThan(again.store!.before * 0.02);
    // Hot: the three newest checkpoints' (the memory base is the newest's trees).
    const hot = new Set(manifests.slice(-3).flatMap((manifest) => [...valuesOf(manifest)]));
    let moved = 0;
    for (const [hash, location] of before) {
      const now = where(hash);
      if (location.codec === undefined) expect(now, hash).toEqual(location);
      else if (!hot.has(hash)) {
        moved += 1;
        expect(now.codec).toBe(PACK_CODEC_IDS.brotli);
      } else if (hotPacks.has(location.pack)) {
        // A hot value of a pack that held cold ones too: in a gzip pack of its own, the old pack gone.
        expect(now.codec, hash).toBe(PACK_CODEC_IDS.gzip);
        expect(now.pack, hash).not.toBe(location.pack);
      } else expect(now, hash).toEqual(location);
    }
    expect(moved).toBe(again.values.recompressed);
    for (const pack of hotPacks) expect(objects.packs.doesExist(pack)).toBe(false);
    expect(manifests.map(memoryOf)).toEqual(memoryBefore);
    ObjectStore.of(store).clearNodeCache();
    expect(manifests.map(memoryOf)).toEqual(memoryBefore);
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });

    // The same codec and level again saves nothing worth a rewrite: nothing is written.
    const usageAfter = objects.usage().bytes;
    const third = await compressColdData(store, { algorithm: "brotli", level: 11, policy: { after: 3 }, recompress: true });
    expect(third.values).toMatchObject({ compressed: 0, recompressed: 0 });
    expect(third.values.alreadyCompressed).toBeGreaterThan(0);
    expect(objects.usage().bytes).toBe(usageAfter);
  });

  it("--recompress reaches the cold values of a pack that also holds hot ones: they move to new packs, the hot ones to a pack compressed as before, the old pack goes", async () => {
    const manifests = await history(8);
    const objects = ObjectStore.of(store);
    const where = (hash: Hash) => objects.locate("value", hash)!;
    // gzip 1 with after 2: checkpoints 0-5 cold, their values packed together.
    expect((await compressColdData(store, { algorithm: "gzip", level: 1, policy: { after: 2 } })).values.compressed).toBeGreaterThan(10);
    // With after 4, checkpoints 4 and 5 are hot: packs holding values of theirs and of 0-3 hold both.
    const hotValues = new Set(manifests.slice(4).flatMap((manifest) => [...valuesOf(manifest)]));
    const coldValues = [...new Set(manifests.slice(0, 4).flatMap((manifest) => [...valuesOf(manifest)]))].filter((hash) => !hotValues.has(hash) && isCompressed(hash));
    const hotCompressed = [...hotValues].filter(isCompressed);
    const mixed = new Set(coldValues.map((hash) => where(hash).pack).filter((pack) => hotCompressed.some((hash) => where(hash).pack === pack)));
    expect(mixed.size).toBeGreaterThan(0);
    const memoryBefore = manifests.map(memoryOf);
    const usage = objects.usage().bytes;

    const brotli11 = { algorithm: "brotli", level: 11, policy: { after: 4 }, recompress: true } as const;
    const dry = await compressColdData(store, { ...brotli11, dryRun: true, measure: true });
    expect(objects.usage().bytes).toBe(usage);
    const run = await compressColdData(store, { ...brotli11, measure: true });
    expect(run.values).toMatchObject({ recompressed: coldValues.length, compressed: coldValues.length, alreadyCompressed: 0 });
    expect(dry.values).toMatchObject(run.values);
    expect(run.packs).toMatchObject({ rewritten: mixed.size });
    expect(dry.packs).toEqual(run.packs);
    expect(run.store!.after).toBeLessThan(run.store!.before);
    expect(Math.abs(run.store!.after - dry.store!.after)).toBeLessThan(run.store!.before * 0.02);
    // Every cold value is in a brotli pack now; the hot ones stay gzip, out of the packs they shared.
    for (const hash of coldValues) expect(where(hash).codec, hash).toBe(PACK_CODEC_IDS.brotli);
    for (const hash of hotCompressed) {
      expect(where(hash).codec, hash).toBe(PACK_CODEC_IDS.gzip);
      expect(mixed.has(where(hash).pack), hash).toBe(false);
    }
    for (const pack of mixed) expect(objects.packs.doesExist(pack)).toBe(false);
    expect(manifests.map(memoryOf)).toEqual(memoryBefore);
    ObjectStore.of(store).clearNodeCache();
    expect(manifests.map(memoryOf)).toEqual(memoryBefore);
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
    // Done: a second run finds nothing to gain.
    const again = await compressColdData(store, brotli11);
    expect(again.values).toMatchObject({ compressed: 0, recompressed: 0 });
  });

  it("a pack of values holding hot ones beside those compressed is rewritten with the hot ones alone: the moved values' old bytes stayed in it, the store grew for good, and the dry run said it would shrink", async () => {
    await startSession();
    // One batch of many values (large packs), half of them changed afterwards: each pack is half cold, half hot.
    await store.batch((batch) => {
      for (let k = 0; k < 300; k++) batch.set(`/data/k${k}`, { k, body: text(k + 1, 8000) });
    });
    await checkpointAt(START);
    await store.batch((batch) => {
      for (let k = 0; k < 300; k += 2) batch.set(`/data/k${k}`, { k, changed: true, body: text(k + 7001, 8000) });
    });
    await checkpointAt(START + DAY);
    await checkpointAt(START + 2 * DAY);
    const before = validateStore(store).objects;
    expect(before.garbageBytes).toBe(0);

    const dry = await compressColdData(store, { algorithm: "brotli", policy: { after: 2 }, measure: true, dryRun: true });
    const run = await compressColdData(store, { algorithm: "brotli", policy: { after: 2 }, measure: true });
    expect(run.values.compressed).toBe(150);
    expect(run.packs.rewritten).toBeGreaterThan(0);
    // Smaller, by what the dry run said (a pack's few bytes of framing aside), and nothing left behind as garbage.
    expect(run.store!.after).toBeLessThan(run.store!.before - run.bytes.before / 2);
    expect(Math.abs(dry.store!.after - run.store!.after)).toBeLessThan(run.store!.before * 0.01);
    const after = validateStore(store);
    expect(after.ok).toBe(true);
    expect(after.objects.garbageBytes).toBe(0);
    expect(after.objects.packBytes).toBe(run.store!.after);
  });

  it("sweeps after compression keep compressed data compressed and intact", async () => {
    const manifests = await history(8);
    const memoryBefore = manifests.map(memoryOf);
    await compressColdData(store, { algorithm: "brotli", policy: { after: 2 } });
    // Deleting the oldest checkpoints leaves compressed packs mostly garbage: the sweep rewrites them.
    for (const manifest of manifests.slice(0, 3)) await deleteCheckpoint(store, manifest.id);
    const sweep = await sweepUnreferenced(store);
    expect(sweep.removed.values).toBeGreaterThan(0);
    expect(sweep.packs.rewritten + sweep.packs.removed).toBeGreaterThan(0);
    for (const index of [3, 4, 5, 6, 7]) expect(memoryOf(manifests[index]!)).toEqual(memoryBefore[index]);
    const hot = new Set(manifests.slice(6).flatMap((manifest) => [...valuesOf(manifest)]));
    const coldOnly = [...valuesOf(manifests[3]!)].filter((hash) => !hot.has(hash));
    expect(coldOnly.length).toBeGreaterThan(0);
    expect(coldOnly.every(isCompressed)).toBe(true);
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
  });

  it("leaves an object alone when it moved while the run was compressing", async () => {
    const manifests = await history(4);
    const memoryBefore = memoryOf(manifests[0]!);
    const objects = ObjectStore.of(store);
    const target = [...valuesOf(manifests[0]!)].find((hash) => !valuesOf(manifests[3]!).has(hash))!;
    const result = await compressColdData(store, {
      algorithm: "gzip",
      policy: { after: 1 },
      onProgress: (phase, done, total) => {
        // Another writer (a repair, a sweep) moves one object before the write transaction.
        if (phase === "compressing" && done === total) {
          const bytes = objects.getRaw("value", target)!;
          transactionSync(store, () => objects.putRaw("value", target, bytes));
        }
      },
    });
    expect(result.values.skipped).toBe(1);
    expect(isCompressed(target)).toBe(false);
    expect(memoryOf(manifests[0]!)).toEqual(memoryBefore);
    expect(validateStore(store)).toMatchObject({ ok: true });
  });

  it("data that does not compress is packed once and not tried again", async () => {
    await startSession();
    const manifests: CheckpointManifest[] = [];
    for (let step = 0; step < 3; step++) {
      await store.set("/blob", { step, data: randomBytes(48 * 1024).toString("base64") });
      manifests.push(await checkpointAt(START + step * DAY));
    }
    const memories = manifests.map(memoryOf);
    const first = await compressColdData(store, { algorithm: "brotli", policy: { after: 1 } });
    expect(first.values.compressed).toBe(2);
    expect(first.values.incompressible).toBe(0); // base64 still shrinks to 3/4
    const again = await compressColdData(store, { algorithm: "gzip", policy: { after: 0 }, now: () => START });
    expect(again.values.alreadyCompressed).toBe(2);
    // Random characters shrink little (only their JSON escaping and UTF-8 encoding goes); packed once all the same.
    await store.set("/noise", randomBytes(32 * 1024).toString("latin1"));
    const noisy = await checkpointAt(START + 5 * DAY);
    await store.set("/noise", "gone");
    await checkpointAt(START + 6 * DAY);
    const third = await compressColdData(store, { algorithm: "gzip", policy: { after: 1 } });
    expect(third.values.compressed).toBe(1);
    expect(third.bytes.after / third.bytes.before).toBeGreaterThan(0.4);
    const fourth = await compressColdData(store, { algorithm: "gzip", policy: { after: 1 } });
    expect(fourth.values.compressed).toBe(0);
    expect(manifests.map(memoryOf)).toEqual(memories);
    expect(memoryOf(noisy).find(([path]) => path === "/noise")![1]).toHaveLength(32 * 1024);
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
  });

  it("a dry run compresses in memory only", async () => {
    await history(5);
    const before = ObjectStore.of(store).usage();
    const result = await compressColdData(store, { algorithm: "brotli", policy: { after: 1 }, dryRun: true, measure: true });
    expect(result.values.compressed).toBeGreaterThan(0);
    expect(result.bytes.after).toBeLessThan(result.bytes.before);
    expect(ObjectStore.of(store).usage()).toEqual(before);
    // It reports what the real run then does, the packs it removes or rewrites too (it said none).
    const real = await compressColdData(store, { algorithm: "brotli", policy: { after: 1 }, measure: true });
    expect(real.packs.removed + real.packs.rewritten).toBeGreaterThan(0);
    expect([result.packs, result.values, result.bytes]).toEqual([real.packs, real.values, real.bytes]);
  });
});

describe("automatic compression after each checkpoint (after: N)", () => {
  async function engineWith(options: CompressionOptions): Promise<Engine> {
    const config = { session: { max_checkpoints: 100, auto_checkpoint_interval: 300, auto_recovery: true, session_timeout: 0, backup_location: ".apex/backups" } } as Config;
    const engine = new Engine({ config, store, warn: (message) => { throw new Error(`unexpected warning: ${message}`); } });
    // compression requires the checkpoint plugin, applied first.
    await engine.use(checkpoint, { options: { triggers: [], paths: ["/"] }, source: { kind: "built-in", label: "built-in" } });
    await engine.use(compression, { options, source: { kind: "built-in", label: "built-in" } });
    return engine;
  }

  it("compresses a checkpoint's own data once it has N newer ones, and restores stay exact", async () => {
    await startSession();
    const engine = await engineWith({ after: 2, algorithm: "brotli" });
    expect(engine.tapsOf("compression")).toEqual(["afterCheckpoint"]);
    const manifests: CheckpointManifest[] = [];
    const memories: Array<Array<[string, JsonValue]>> = [];
    for (let step = 0; step < 6; step++) {
      await writeStep(step);
      const manifest = await checkpointAt(START + step * DAY);
      manifests.push(manifest);
      memories.push(memoryOf(manifest));
      await engine.fire("afterCheckpoint", checkpointInfo(manifest));
      const hot = new Set(manifests.slice(-2).flatMap((item) => [...valuesOf(item)]));
      manifests.forEach((item, index) => {
        const own = [...valuesOf(item)].filter((hash) => !hot.has(hash));
        const expected = index < manifests.length - 2;
        expect(own.every((hash) => isCompressed(hash) === expected), `after ${manifest.name}: ${item.name}`).toBe(true);
      });
      expect([...hot].some(isCompressed), `after ${manifest.name}: hot data`).toBe(false);
    }
    expect([...valuesOf(manifests[0]!)].some(isCompressed)).toBe(true);
    expect(manifests.map(memoryOf)).toEqual(memories);
    for (const [index, manifest] of manifests.entries()) {
      await restoreCheckpoint(store, manifest.id);
      expect(liveMemory()).toEqual(memories[index]);
    }
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
  });

  it("without after or older_than, nothing happens automatically", async () => {
    const engine = await engineWith({ algorithm: "gzip" });
    expect(engine.tapsOf("compression")).toEqual([]);
    expect(engine.commands.map((command) => command.spec.name)).toEqual(["session compress"]);
  });

  it("refuses a gzip level above 9", async () => {
    await expect(engineWith({ algorithm: "gzip", level: 11 })).rejects.toMatchObject({ code: "APEX_E_PLUGIN_OPTIONS" });
  });
});

});

// The command end to end, on LMDB (the store-level cases above run on each backend).
describe("apex session compress (end to end)", () => {
  beforeEach(() => {
    store = LmdbStore.open(join(dir, ".apex"));
  });
  const CONFIG = "plugins:\n  checkpoint: {}\n  compression:\n    after: 2\n";
  const apex = (...args: string[]) => runApex(args, { cwd: dir });

  it("compresses, reports bytes before and after, and the store still validates and restores", async () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    const manifests = await history(6);
    const memories = manifests.map(memoryOf);
    await store.close();

    const dry = apex("session", "compress", "--dry-run", "--json");
    expect(dry.stderr).toBe("");
    expect(dry.status).toBe(0);
    const planned = JSON.parse(dry.stdout);
    expect(planned).toMatchObject({ dry_run: true, algorithm: "brotli", level: 6, policy: { after: 2 }, checkpoints: { cold: 4, hot: 2 } });
    expect(planned.store_bytes_before).toBeGreaterThan(0);

    const run = apex("session", "compress", SESSION, "--algorithm", "gzip", "--json");
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const done = JSON.parse(run.stdout);
    expect(done).toMatchObject({ dry_run: false, session_id: SESSION, algorithm: "gzip" });
    expect(done.values.compressed).toBe(planned.values.compressed);
    expect(done.bytes_before).toBe(planned.bytes_before);
    expect(done.bytes_after).toBeGreaterThan(0);
    expect(done.bytes_after).toBeLessThan(done.bytes_before);
    expect(done.store_bytes_after).toBeLessThan(done.store_bytes_before);
    // --help names every key --json prints (it ended in "…bytes before and after").
    const help = apex("session", "compress", "--help").stdout.replace(/\s+/g, " ");
    for (const key of Object.keys(done)) expect(help, key).toMatch(new RegExp(`[{,] ?${key}[,}:]`));

    const text = apex("session", "compress");
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/Nothing to compress with brotli 6/);
    expect(text.stdout).toMatch(/already compressed/);
    // --recompress: gzip 6's packs again with brotli 11.
    const recompressed = apex("session", "compress", "--recompress", "--level", "11");
    expect(recompressed.status, recompressed.stderr).toBe(0);
    expect(recompressed.stdout).toMatch(new RegExp(`Compressed ${done.values.compressed} values \\(${done.values.compressed} of them compressed already\\) with brotli 11`));

    store = await openStore(join(dir, ".apex"));
    expect(manifests.map(memoryOf)).toEqual(memories);
    expect(validateStore(store)).toMatchObject({ ok: true, problems: [] });
  });

  it("usage errors exit 2, an unknown session 3, and nothing is written", async () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    await history(4);
    const before = ObjectStore.of(store).usage();
    await store.close();
    for (const args of [["--older-than", "7x"], ["--older-than", "30D"], ["--after", "-1"], ["--algorithm", "zstd"], ["--algorithm", "gzip", "--level", "10"]]) {
      const result = apex("session", "compress", ...args, "--json");
      expect(result.status, args.join(" ")).toBe(2);
      expect(JSON.parse(result.stderr).error.code).toBe("APEX_E_USAGE");
    }
    const missing = apex("session", "compress", "nope-nope");
    expect(missing.status).toBe(3);
    expect(missing.stderr).toMatch(/APEX_E_NO_SESSION/);
    store = await openStore(join(dir, ".apex"));
    expect(ObjectStore.of(store).usage()).toEqual(before);
  });

  it("--algorithm naming the plugin's own algorithm keeps the plugin's level; another algorithm takes its default", async () => {
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  checkpoint: {}\n  compression:\n    algorithm: gzip\n    level: 9\n");
    await history(3);
    await store.close();
    const levelOf = (...args: string[]) => {
      const result = apex("session", "compress", "--dry-run", "--json", ...args);
      expect(result.status, result.stderr).toBe(0);
      return [JSON.parse(result.stdout).algorithm, JSON.parse(result.stdout).level];
    };
    expect(levelOf()).toEqual(["gzip", 9]);
    // It said gzip 6: the option named the algorithm the config already had.
    expect(levelOf("--algorithm", "gzip")).toEqual(["gzip", 9]);
    expect(levelOf("--algorithm", "brotli")).toEqual(["brotli", 6]);
    expect(levelOf("--algorithm", "gzip", "--level", "1")).toEqual(["gzip", 1]);
  });

  it("--help shows the options and examples", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    const help = apex("session", "compress", "--help");
    expect(help.status).toBe(0);
    for (const flag of ["--after", "--older-than", "--algorithm", "--level", "--dry-run", "--json"]) expect(help.stdout).toContain(flag);
    expect(help.stdout).toMatch(/Examples:\n  apex session compress/);
  });
});
