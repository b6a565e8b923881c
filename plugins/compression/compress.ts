import { promisify } from "node:util";
import { brotliCompress, gzip, type BrotliOptions, type ZlibOptions } from "node:zlib";
import { ApexError } from "../../core/errors.js";
import {
  COMPRESSED_PACK_TARGET_BYTES,
  MAX_RAW_PACK_BYTES,
  DEFAULT_CODEC_LEVEL,
  ObjectStore,
  codecOptions,
  copyOf,
  decompressPack,
  isObjectDamage,
  packCodecName,
  visitReachable,
  type Hash,
  type ObjectKind,
  type ObjectLocation,
  type ObjectView,
  type PackCodec,
  type PreparedPack,
} from "../checkpoint/engine/objects.js";
import type { Store } from "../../core/store/store.js";
import { Catalog, type CheckpointSummary } from "../checkpoint/catalog.js";

/**
 * Compression of cold checkpoint data.
 *
 * A checkpoint is *cold* when its session has at least `after` newer checkpoints and/or it
 * was created more than `olderThanMs` ago (both conditions when both are set; every
 * checkpoint when neither is). Everything else is *hot*: the other checkpoints and the
 * memory bases (the trees the next checkpoint is built from, i.e. the current memory).
 * Cold values are values reachable from cold checkpoints and from nothing hot.
 *
 * They are read (and verified against their hash), grouped into packs of about
 * COMPRESSED_PACK_TARGET_BYTES in walk order from the newest cold checkpoint back (so values
 * a recent restore needs sit together), compressed outside the write lock, and written in one
 * write transaction that points their index records at the new packs (with the codec in
 * the location record) and deletes the packs left without live objects (or rewrites those
 * left mostly empty, and compressed ones left with hot values: `recompress`). Hashes stay
 * those of the uncompressed bytes, and reads decompress transparently
 * (plugins/checkpoint/engine/objects.ts), so restores, diffs and validation are unchanged.
 * Tree nodes are left alone: they are mostly hashes, which do not compress, and every
 * checkpoint reads them.
 */

export interface ColdPolicy {
  /** A checkpoint is cold once its session has this many newer checkpoints. */
  after?: number | undefined;
  /** A checkpoint is cold once it is older than this. */
  olderThanMs?: number | undefined;
}

export interface CompressOptions {
  algorithm: PackCodec;
  level?: number | undefined;
  policy: ColdPolicy;
  /** Only the cold checkpoints of this session (hot data of every session stays hot). */
  sessionId?: string | undefined;
  /**
   * Also compress again cold values already compressed (another algorithm or level, or LangGraph's
   * gzip 1 as written), only when that makes them smaller; a pack that holds hot values too is
   * rewritten with those alone, compressed as it was.
   */
  recompress?: boolean;
  dryRun?: boolean;
  /** Compress at most about this many bytes (uncompressed) in this run; the rest waits for the next one. */
  maxBytes?: number;
  /** Also measure the packs before and after (a scan of every index record). */
  measure?: boolean;
  now?: () => number;
  onProgress?: (phase: "reading" | "compressing" | "writing", done: number, total: number) => void;
}

export interface CompressResult {
  dryRun: boolean;
  algorithm: PackCodec;
  level: number;
  sessionId: string | null;
  checkpoints: { cold: number; hot: number };
  values: {
    /** Values compressed by this run (or that a dry run would compress). */
    compressed: number;
    /** Cold values already in compressed packs (left as they are). */
    alreadyCompressed: number;
    /** Of the compressed values, those that were in compressed packs (`recompress`). */
    recompressed: number;
    /** Of the compressed values, those in packs that did not shrink (written all the same: else every run would try them again). */
    incompressible: number;
    /** Values that were missing, corrupt or moved while the run compressed (left alone). */
    skipped: number;
    /** Cold values over MAX_RAW_PACK_BYTES, the most a read decompresses (left as they are: compressed, no read took them). */
    tooLarge: number;
    /** Cold values left for a later run (maxBytes). */
    remaining: number;
  };
  /** Bytes of the compressed values: as stored before, and in their new packs. */
  bytes: { before: number; after: number };
  packs: { written: number; removed: number; rewritten: number };
  /** Bytes of all packs of the store before and after (with `measure`). */
  store: { before: number; after: number } | null;
  /** Tree nodes that could not be read while looking for cold data (validate reports them). */
  damaged: number;
}

interface Candidate {
  hash: Hash;
  location: ObjectLocation;
  /** Bytes it takes where it is: its length, or in a compressed pack its share of the pack's bytes. */
  stored: number;
}

interface Group {
  members: Array<Candidate & { offset: number; length: number }>;
  parts: Buffer[];
  size: number;
  /** Its members were compressed already (`recompress`). */
  again: boolean;
  data?: Buffer;
}

const compressAsync = {
  gzip: promisify(gzip) as (input: Buffer, options: ZlibOptions) => Promise<Buffer>,
  brotli: promisify(brotliCompress) as (input: Buffer, options: BrotliOptions) => Promise<Buffer>,
};

/** Packs compressed at a time (zlib's thread pool has 4 threads by default). */
const COMPRESS_CONCURRENCY = 4;
/** What compressing compressed values again must save of their bytes for it to be written. */
const RECOMPRESS_GAIN = 0.03;

/** Compresses the cold values of the store (or of one session). See the module comment. */
export async function compressColdData(store: Store, options: CompressOptions): Promise<CompressResult> {
  const level = options.level ?? DEFAULT_CODEC_LEVEL[options.algorithm];
  codecOptions(options.algorithm, level, 0); // throws on a level the codec does not have
  if (!options.dryRun && store.readOnly) throw new ApexError("APEX_E_INTERNAL", "The store was opened read-only.");
  const objects = ObjectStore.of(store);
  const result: CompressResult = {
    dryRun: options.dryRun ?? false,
    algorithm: options.algorithm,
    level,
    sessionId: options.sessionId ?? null,
    checkpoints: { cold: 0, hot: 0 },
    values: { compressed: 0, alreadyCompressed: 0, recompressed: 0, incompressible: 0, skipped: 0, tooLarge: 0, remaining: 0 },
    bytes: { before: 0, after: 0 },
    packs: { written: 0, removed: 0, rewritten: 0 },
    store: null,
    damaged: 0,
  };
  const storeBefore = options.measure ? objects.usage().bytes : undefined;

  // 1. What is cold (synchronous: one consistent snapshot of the catalog and the trees).
  const view = objects.view();
  const { hotRoots, coldRoots } = classify(store, options, result);
  const hot = markHot(view, hotRoots, result);
  const found = findCold(view, objects, coldRoots, hot, result, options.recompress === true);
  // Values compressed already, in packs of their own (cut apart from the others): written only if they shrink.
  const candidates = [...found.plain, ...found.recompress];

  // 2. Read and verify the bytes, cut them into groups in walk order.
  const groups: Group[] = [];
  let open: Group | undefined;
  let total = 0;
  const limit = options.maxBytes ?? Infinity;
  for (const [index, candidate] of candidates.entries()) {
    if (total >= limit) {
      result.values.remaining = candidates.length - index;
      break;
    }
    let bytes: Buffer;
    try {
      bytes = view.valueBytes(candidate.hash);
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
      result.values.skipped += 1;
      continue;
    }
    const again = index >= found.plain.length;
    if (!open || open.again !== again || (open.size > 0 && open.size + bytes.length > COMPRESSED_PACK_TARGET_BYTES)) groups.push((open = { members: [], parts: [], size: 0, again }));
    open.members.push({ ...candidate, offset: open.size, length: bytes.length });
    open.parts.push(bytes);
    open.size += bytes.length;
    total += bytes.length;
    options.onProgress?.("reading", index + 1, candidates.length);
  }

  // 3. Compress outside the write transaction, on zlib's thread pool (the event loop stays free).
  const compress = compressAsync[options.algorithm];
  let done = 0;
  let nextGroup = 0;
  const worker = async () => {
    while (nextGroup < groups.length) {
      const group = groups[nextGroup++]!;
      const raw = Buffer.concat(group.parts);
      group.parts = [raw];
      group.data = await compress(raw, codecOptions(options.algorithm, level, raw.length));
      // Data that does not compress (already compressed, random) costs zlib only a few bytes per
      // pack more: it is written all the same, so that no later run spends time on it again.
      if (group.data.length >= raw.length) result.values.incompressible += group.members.length;
      options.onProgress?.("compressing", ++done, groups.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(COMPRESS_CONCURRENCY, groups.length) }, worker));
  dropUnlessSmaller(groups, result);

  // 4. One write transaction: the new packs, the index records, the old packs.
  if (options.dryRun) {
    for (const group of groups) count(result, group.members, group.data!.length, group.size);
    result.packs.written = groups.length;
    // The packs the real run would then remove or rewrite, as it would (it said none were).
    const members = groups.flatMap((group) => group.members);
    reclaimSources(objects, new Map(members.map((member) => [member.location.pack, member.location])), result, new Set(members.map((member) => member.hash)));
  } else if (groups.length > 0) {
    options.onProgress?.("writing", 0, 1);
    await store.transaction(() => writeGroups(objects, groups, options.algorithm, result));
    options.onProgress?.("writing", 1, 1);
  }
  if (options.measure) result.store = { before: storeBefore!, after: options.dryRun ? storeBefore! - result.bytes.before + result.bytes.after : objects.usage().bytes };
  return result;
}

/**
 * Values compressed already are compressed again only when that makes them smaller as a whole, by
 * RECOMPRESS_GAIN at least (brotli 11 over LangGraph's gzip 1, say); else their groups are dropped
 * and they stay where they are.
 */
function dropUnlessSmaller(groups: Group[], result: CompressResult): void {
  const again = groups.filter((group) => group.again);
  const before = again.reduce((sum, group) => sum + group.members.reduce((total, member) => total + member.stored, 0), 0);
  const after = again.reduce((sum, group) => sum + group.data!.length, 0);
  // At least RECOMPRESS_GAIN smaller: the same codec and level again (a second run) is not rewritten for a few bytes.
  if (again.length === 0 || after <= before * (1 - RECOMPRESS_GAIN)) return;
  for (const group of again) {
    result.values.alreadyCompressed += group.members.length;
    result.values.incompressible -= group.data!.length >= group.size ? group.members.length : 0;
  }
  groups.splice(0, groups.length, ...groups.filter((group) => !group.again));
}

function count(result: CompressResult, members: readonly Candidate[], packBytes: number, rawBytes: number): void {
  result.values.compressed += members.length;
  result.values.recompressed += members.filter((member) => member.location.codec).length;
  result.bytes.before += Math.round(members.reduce((sum, member) => sum + member.stored, 0));
  // A pack written with stale members holds their bytes too: charge the live share.
  result.bytes.after += Math.round(packBytes * (members.reduce((sum, member) => sum + member.location.length, 0) / rawBytes));
}

/** Hot roots (newest checkpoints, memory bases) and cold roots (newest cold checkpoint first). */
function classify(store: Store, options: CompressOptions, result: CompressResult): { hotRoots: Hash[]; coldRoots: Hash[] } {
  const catalog = Catalog.of(store);
  const now = (options.now ?? Date.now)();
  const { after, olderThanMs } = options.policy;
  const hotRoots: Hash[] = [];
  const cold: Array<{ summary: CheckpointSummary; time: number }> = [];
  const sessions = new Set<string>();
  for (const { sessionId } of catalog.counters()) sessions.add(sessionId);
  for (const sessionId of sessions) {
    let rank = 0;
    let summaries: CheckpointSummary[];
    try {
      summaries = [...catalog.summaries(sessionId, { reverse: true })];
    } catch {
      continue; // an undecodable summary: validate reports it; its data stays as it is
    }
    for (const summary of summaries) {
      const time = Date.parse(summary.created_at);
      const byRank = after === undefined || rank >= after;
      const byAge = olderThanMs === undefined || (Number.isFinite(time) && time <= now - olderThanMs);
      rank += 1;
      const roots = [summary.memory_root, summary.tasks_root, summary.agents_root].filter((root): root is Hash => typeof root === "string");
      if (byRank && byAge && (options.sessionId === undefined || options.sessionId === sessionId)) {
        cold.push({ summary, time });
        result.checkpoints.cold += 1;
      } else {
        hotRoots.push(...roots);
        if (options.sessionId === undefined || options.sessionId === sessionId) result.checkpoints.hot += 1;
      }
    }
  }
  for (const { base } of catalog.bases()) {
    const root = (base as { root?: unknown } | null)?.root;
    if (typeof root === "string") hotRoots.push(root);
  }
  // Newest first: values end up grouped by the last checkpoint that holds them, so a restore
  // of a recent checkpoint (the common case) reads few packs.
  cold.sort((a, b) => b.time - a.time || b.summary.sequence - a.summary.sequence);
  const coldRoots = cold.flatMap(({ summary }) => [summary.memory_root, summary.tasks_root, summary.agents_root].filter((root): root is Hash => typeof root === "string"));
  return { hotRoots, coldRoots };
}

/** Every tree node and value reachable from the hot roots. */
function markHot(view: ObjectView, roots: readonly Hash[], result: CompressResult): { trees: Set<Hash>; values: Set<Hash> } {
  const trees = new Set<Hash>();
  const values = new Set<Hash>();
  visitReachable(view, roots, {
    tree: (hash) => void trees.add(hash),
    value: (hash) => void values.add(hash),
    damaged: () => void (result.damaged += 1),
  });
  return { trees, values };
}

/**
 * Uncompressed values reachable from the cold roots and from nothing hot, in walk order; with
 * `recompress`, also the compressed ones (a pack that holds hot objects too is rewritten
 * without them once they moved: reclaimSources).
 */
function findCold(view: ObjectView, objects: ObjectStore, roots: readonly Hash[], hot: { trees: Set<Hash>; values: Set<Hash> }, result: CompressResult, recompress: boolean): { plain: Candidate[]; recompress: Candidate[] } {
  const seenValues = new Set<Hash>();
  const candidates: Candidate[] = [];
  const compressed: Candidate[] = [];
  const value = (hash: Hash): void => {
    if (seenValues.has(hash)) return;
    seenValues.add(hash);
    if (hot.values.has(hash)) return;
    let location: ObjectLocation | undefined;
    try {
      location = objects.locate("value", hash);
    } catch {
      location = undefined;
    }
    if (!location || !objects.packs.doesExist(location.pack)) result.values.skipped += 1;
    else if (location.codec && !recompress) result.values.alreadyCompressed += 1;
    else if (!location.codec && location.length > MAX_RAW_PACK_BYTES) result.values.tooLarge += 1;
    else if (location.codec) compressed.push({ hash, location, stored: 0 });
    else candidates.push({ hash, location, stored: location.length });
  };
  // Below a hot node everything is hot.
  visitReachable(view, roots, { tree: (hash) => !hot.trees.has(hash), value, damaged: () => void (result.damaged += 1) });
  return { plain: candidates, recompress: sharesOf(objects, compressed, result) };
}

/** The compressed candidates, each with its share of its pack's bytes (a pack that is gone or has no size on record: left as it is). */
function sharesOf(objects: ObjectStore, compressed: Candidate[], result: CompressResult): Candidate[] {
  const sizes = new Map<number, number | undefined>();
  const kept: Candidate[] = [];
  for (const candidate of compressed) {
    const { pack, length, rawSize } = candidate.location;
    if (!sizes.has(pack)) sizes.set(pack, objects.packs.get(pack)?.length);
    const bytes = sizes.get(pack);
    if (bytes === undefined || !rawSize) result.values.alreadyCompressed += 1;
    else kept.push({ ...candidate, stored: (bytes * length) / rawSize });
  }
  return kept;
}

function sameLocation(a: ObjectLocation | undefined, b: ObjectLocation): boolean {
  return a !== undefined && a.pack === b.pack && a.offset === b.offset && a.length === b.length && a.codec === b.codec;
}

/**
 * Inside the write transaction: writes the compressed packs for the members still where
 * they were read from, then deletes or rewrites the packs they came from.
 */
function writeGroups(objects: ObjectStore, groups: readonly Group[], codec: PackCodec, result: CompressResult): void {
  const prepared: PreparedPack[] = [];
  /** Each source pack, with the location of one object read from it (its encoding as the compressed ones had it). */
  const sources = new Map<number, ObjectLocation>();
  for (const group of groups) {
    const current = group.members.filter((member) => {
      try {
        return sameLocation(objects.locate("value", member.hash), member.location);
      } catch {
        return false;
      }
    });
    result.values.skipped += group.members.length - current.length;
    if (current.length === 0) continue;
    for (const member of current) sources.set(member.location.pack, member.location);
    prepared.push({
      kind: "value",
      codec,
      data: group.data!,
      rawSize: group.size,
      entries: current.map(({ hash, offset, length }) => ({ hash, offset, length })),
    });
    count(result, current, group.data!.length, group.size);
  }
  result.packs.written = objects.putPacks(prepared).length;
  reclaimSources(objects, sources, result);
}

/** Each object (value or tree node) the index places in one of `packs` (a scan of every index record). */
function forEachObjectIn(objects: ObjectStore, packs: { has(pack: number): boolean }, visit: (kind: ObjectKind, hash: Hash, location: ObjectLocation) => void): void {
  for (const kind of ["value", "tree"] as const) {
    for (const hash of objects.hashes(kind)) {
      let location: ObjectLocation | undefined;
      try {
        location = objects.locate(kind, hash);
      } catch {
        continue;
      }
      if (location && packs.has(location.pack)) visit(kind, hash, location);
    }
  }
}

/**
 * Deletes the source packs nothing points into any more, and rewrites every one that still holds
 * live objects (hot values beside the cold ones that moved), compressed or not: left whole, it kept
 * the moved values' old bytes beside their new copies, for good (a sweep rewrites a pack only once
 * it is mostly garbage), and the store grew where the dry run said it would shrink. Its live
 * objects go to a pack encoded the same way (a compressed one at the codec's default level, as
 * sweeps rewrite one).
 * Runs in the write transaction of the new packs: the old pack is removed in the transaction
 * that put its objects elsewhere. With `movedAway` (a dry run: the values it would compress,
 * still where they were), only counts them.
 */
function reclaimSources(objects: ObjectStore, sources: ReadonlyMap<number, ObjectLocation>, result: CompressResult, movedAway?: ReadonlySet<Hash>): void {
  if (sources.size === 0) return;
  const live = new Map<number, Array<{ kind: ObjectKind; hash: Hash; location: ObjectLocation }>>();
  forEachObjectIn(objects, sources, (kind, hash, location) => {
    if (kind === "value" && movedAway?.has(hash)) return;
    let list = live.get(location.pack);
    if (!list) live.set(location.pack, (list = []));
    list.push({ kind, hash, location });
  });
  const moved: Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer; codec: PackCodec | undefined }> = [];
  for (const id of [...sources.keys()].sort((a, b) => a - b)) {
    const pack = objects.packs.get(id);
    if (!pack) continue;
    const kept = live.get(id) ?? [];
    if (kept.length === 0) {
      if (!movedAway) objects.packs.remove(id);
      result.packs.removed += 1;
      continue;
    }
    const { codec, rawSize } = sources.get(id)!;
    // Records that disagree about the pack's encoding: leave it for validate and repair.
    if (kept.some((item) => item.location.codec !== codec || item.location.rawSize !== rawSize)) continue;
    let source: Buffer = pack;
    if (codec) {
      if (!movedAway) {
        try {
          source = decompressPack(codec, pack, rawSize!);
        } catch {
          continue; // a damaged compressed pack stays as it is, for validate and repair
        }
      }
    }
    result.packs.rewritten += 1;
    if (movedAway) continue;
    for (const item of kept) {
      moved.push({ kind: item.kind, hash: item.hash, bytes: copyOf(source.subarray(item.location.offset, item.location.offset + item.location.length)), codec: packCodecName(codec) });
    }
    objects.packs.remove(id);
  }
  if (moved.length > 0) objects.putMany(moved);
}
