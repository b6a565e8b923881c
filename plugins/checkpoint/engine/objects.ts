import { isAscii } from "node:buffer";
import * as cryptoModule from "node:crypto";
import { createHash } from "node:crypto";
import { brotliCompressSync, brotliDecompressSync, constants as zlibConstants, gunzipSync, gzipSync, type BrotliOptions, type ZlibOptions } from "node:zlib";
import { ApexError } from "../../../core/errors.js";
import { FILTER_DB, HashFilter, type FilterTable } from "./hash-filter.js";
import { IndexJournal, JOURNAL_MERGE_ENTRIES, type JournalEntry, type JournalTable } from "./index-journal.js";
import type { TableKey } from "../../../core/store/port.js";
import type { JsonValue, Store } from "../../../core/store/store.js";
import { MAX_DEPTH, compareCodePoints, decodeValue, describeNotJson, encodeJson, isEncodedValue, tooDeepError } from "../../value-codec.js";
import { varintSize, writeVarint } from "./varint.js";

export { compareCodePoints } from "../../value-codec.js";

/**
 * Content-addressed objects: JSON values ("blobs") and the Merkle tree of the path
 * hierarchy that references them. Everything is stored once, keyed by the SHA-256 of its
 * canonical bytes, so unchanged values and subtrees are shared between checkpoints.
 *
 * Storage (sub-databases of the store's LMDB environment):
 *   packs  uint32 pack id (1, 2, …, never reused) -> the bytes of several objects of one
 *          kind, concatenated (appended in id order, so pages are full); key 0 holds
 *          the highest id used
 *   blobs  sha256 (32 bytes) -> location of a value:     varint pack, offset, length [, codec, raw size]
 *   trees  sha256 (32 bytes) -> location of a tree node: varint pack, offset, length [, codec, raw size]
 *   index-journal  locations of objects written by checkpoints, appended, until they are
 *          merged into blobs and trees (see index-journal.ts): lookups read it first
 *   index-filter   a Bloom filter of the hashes in blobs and trees, so that writing a new
 *          object need not look it up there (see hash-filter.ts)
 * A pack is stored as it is, or (the compression plugin's cold packs) compressed as a whole
 * with gzip or brotli: the location record of every object in it then also holds the codec
 * and the pack's uncompressed size, and offset and length address the uncompressed bytes.
 * Reads decompress transparently; hashes are always those of the uncompressed bytes.
 * A value's bytes are its value encoding (value-codec.ts: canonical MessagePack behind a
 * tag byte, the same bytes as its keyspace record), or, for values stored before that
 * encoding, its canonical JSON text; a tree node's, the binary encoding of encodeTreeNode.
 * Objects written in one transaction go into new packs (git's packfiles, without deltas): one object per B-tree record under a
 * random hash key would leave pages a third to half empty. Value packs are large; tree
 * node packs small (read on every checkpoint, they must be cheap to copy).
 *
 * A *directory* maps child names to {value?, tree?}: the value stored at that path and the
 * directory below it. A directory of up to LEAF_MAX entries is one leaf node; a larger one
 * is split, HAMT-like, into FANOUT buckets by the next 3 bits of sha256(name), recursively.
 * The shape depends only on the set of entries, so equal directories have equal hashes
 * however they were built, and updating one entry rewrites O(log n) small nodes instead of
 * one node the size of the directory.
 */

/** A SHA-256 digest as 64 lowercase hex characters. */
export type Hash = string;

export type ObjectKind = "value" | "tree";

/** Entries per leaf node before a directory is split into buckets. */
export const LEAF_MAX = 8;
/** Bits of sha256(name) that choose a bucket at each split level. */
export const BUCKET_BITS = 3;
/** Buckets per split node. */
export const FANOUT = 1 << BUCKET_BITS;
/** Split levels a SHA-256 digest allows: past this depth a directory partition stays one leaf. */
export const MAX_SPLIT_DEPTH = Math.floor(256 / BUCKET_BITS);
/**
 * Objects written together are cut into packs of at most about this size; reading an
 * object copies its pack. Values: large packs (few, full overflow pages). Tree nodes are
 * read on every checkpoint: packs small enough to sit in LMDB leaf pages (under ~2 KB),
 * which appending fills completely.
 */
export const PACK_TARGET_BYTES: Readonly<Record<"value" | "tree", number>> = Object.freeze({ value: 32 * 1024, tree: 1900 });

const LEAF_TAG = 0x4c; // 'L'
const SPLIT_TAG = 0x53; // 'S'
const HAS_VALUE = 1;
const HAS_TREE = 2;
const HASH_BYTES = 32;
const HASH_PATTERN = /^[0-9a-f]{64}$/;

// ---------------------------------------------------------------------------------------------
// Hashing and canonical JSON

// crypto.hash (Node 20.12+) hashes in one call, about twice as fast for small inputs.
const oneShotHash = (cryptoModule as { hash?: (algorithm: string, data: Uint8Array | string, encoding: "hex") => string }).hash;

export function sha256(bytes: Uint8Array | string): Hash {
  return oneShotHash ? oneShotHash("sha256", bytes, "hex") : createHash("sha256").update(bytes).digest("hex");
}

export function isHash(value: unknown): value is Hash {
  return typeof value === "string" && HASH_PATTERN.test(value);
}

/**
 * The canonical JSON text of a value: no whitespace, object keys sorted by code point,
 * numbers as JavaScript prints them. Rejects what JSON cannot hold (NaN, Infinity,
 * functions, binary data, class instances) instead of silently changing it.
 */
export function canonicalJson(value: unknown): string {
  try {
    return encodeCanonical(value, 0);
  } catch (error) {
    if (error !== NOT_JSON) throw error;
    throw describeNotJson(value, "") ?? new ApexError("APEX_E_BAD_JSON", "Not a JSON value.");
  }
}

/** Thrown inside encodeCanonical, which keeps no path: describeNotJson finds where. */
const NOT_JSON = Symbol("not JSON");

/** Object keys as JSON strings: the same few keys recur in every value. */
const quotedKeys = new Map<string, string>();
const QUOTED_KEYS_MAX = 4096;

function quoteKey(key: string): string {
  let quoted = quotedKeys.get(key);
  if (quoted === undefined) {
    quoted = JSON.stringify(key);
    if (quotedKeys.size >= QUOTED_KEYS_MAX) quotedKeys.clear();
    quotedKeys.set(key, quoted);
  }
  return quoted;
}

/** The text of `value`, which sits inside `depth` arrays and objects (at most MAX_DEPTH, as in the value encoding). */
function encodeCanonical(value: unknown, depth: number): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isFinite(value)) throw NOT_JSON;
      return JSON.stringify(value);
    case "object": {
      if (value === null) return "null";
      if (depth >= MAX_DEPTH) throw tooDeepError();
      if (Array.isArray(value)) {
        let out = "[";
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ",";
          out += encodeCanonical(value[i], depth + 1);
        }
        return `${out}]`;
      }
      const prototype = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null) throw NOT_JSON;
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record);
      for (let i = 1; i < keys.length; i++) {
        if (compareCodePoints(keys[i - 1]!, keys[i]!) > 0) {
          keys.sort(compareCodePoints);
          break;
        }
      }
      let out = "{";
      let first = true;
      for (const key of keys) {
        const item = record[key];
        if (item === undefined) continue; // as JSON.stringify does
        if (!first) out += ",";
        first = false;
        out += `${quoteKey(key)}:${encodeCanonical(item, depth + 1)}`;
      }
      return `${out}}`;
    }
    default:
      throw NOT_JSON;
  }
}

/**
 * A value already in its stored encoding (value-codec.ts): what a checkpoint reads from the
 * keyspace, to hash and store without decoding it.
 */
export class EncodedValue {
  constructor(readonly bytes: Buffer) {}
}

/**
 * The JSON value a value object holds: the value encoding (value-codec.ts), or canonical
 * JSON text, which value objects written before that encoding are. Throws if it is neither.
 */
export function decodeValueObject(bytes: Buffer, slice?: StringSlicer): JsonValue {
  return isEncodedValue(bytes) ? decodeValue(bytes, bytes.length, slice) : (JSON.parse(bytes.toString("utf8")) as JsonValue);
}

/** Takes a string's bytes (buffer[start, end)) as a string at hand, or says to decode them (undefined): see decodeValue. */
export type StringSlicer = (buffer: Buffer, start: number, end: number) => string | undefined;

/** Strings shorter than this are decoded even when a text to slice is at hand (a slice costs an object of its own). */
const SLICED_STRING_BYTES = 64;

/**
 * A StringSlicer over `text`, the Latin-1 text of a whole ArrayBuffer (one character per byte):
 * a string of 64 or more ASCII bytes in it is taken as a slice of the text, whose characters V8
 * shares (Latin-1 and UTF-8 agree on ASCII); any other string is decoded.
 */
export function textSlicer(text: string): StringSlicer {
  return (buffer, start, end) =>
    end - start >= SLICED_STRING_BYTES && isAscii(buffer.subarray(start, end)) ? text.slice(buffer.byteOffset + start, buffer.byteOffset + end) : undefined;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), "utf8");
}

// ---------------------------------------------------------------------------------------------
// Damage: a referenced object that is missing, does not hash to its key, or cannot be decoded

export type DamageReason = "missing" | "corrupt" | "undecodable";

export class ObjectDamageError extends ApexError {
  readonly kind: ObjectKind;
  readonly hash: Hash;
  readonly reason: DamageReason;

  constructor(kind: ObjectKind, hash: Hash, reason: DamageReason, detail?: string) {
    const what = kind === "value" ? "Value" : "Tree node";
    const why =
      reason === "missing"
        ? "is missing"
        : reason === "corrupt"
          ? "does not match its hash (corrupted bytes)"
          : `cannot be decoded${detail ? ` (${detail})` : ""}`;
    super("APEX_E_INTEGRITY", `${what} ${hash.slice(0, 12)} ${why}.`, {
      hint: "Run `apex session validate` to see what is damaged, then `apex session repair`.",
      details: { kind, hash, reason },
    });
    this.kind = kind;
    this.hash = hash;
    this.reason = reason;
  }
}

export function isObjectDamage(error: unknown): error is ObjectDamageError {
  return error instanceof ObjectDamageError;
}

// ---------------------------------------------------------------------------------------------
// Tree nodes

export interface DirEntry {
  name: string;
  /** Hash of the value stored at this path. */
  value?: Hash;
  /** Hash of the directory below this path. */
  tree?: Hash;
}

export interface LeafNode {
  kind: "leaf";
  /** Sorted by name (code point order), names unique, never empty. */
  entries: DirEntry[];
}

export interface SplitBucket {
  /** 0..FANOUT-1: bits [depth * BUCKET_BITS, +BUCKET_BITS) of sha256(name). */
  index: number;
  hash: Hash;
  /** Number of entries (names) in that bucket. */
  count: number;
}

export interface SplitNode {
  kind: "split";
  /** Which nibble of sha256(name) chooses the bucket. */
  depth: number;
  /** Number of entries in this partition (sum of the buckets). */
  count: number;
  buckets: SplitBucket[];
}

export type TreeNode = LeafNode | SplitNode;

export function encodeTreeNode(node: TreeNode): Buffer {
  if (node.kind === "leaf") {
    const entries = node.entries;
    let size = 1 + varintSize(entries.length);
    for (const entry of entries) {
      const length = Buffer.byteLength(entry.name, "utf8");
      size += varintSize(length) + length + 1 + (entry.value ? HASH_BYTES : 0) + (entry.tree ? HASH_BYTES : 0);
    }
    const out = Buffer.allocUnsafe(size);
    let at = 0;
    out[at++] = LEAF_TAG;
    at = writeVarint(out, at, entries.length);
    for (const entry of entries) {
      const length = Buffer.byteLength(entry.name, "utf8");
      at = writeVarint(out, at, length);
      at += out.write(entry.name, at, length, "utf8");
      out[at++] = (entry.value ? HAS_VALUE : 0) | (entry.tree ? HAS_TREE : 0);
      if (entry.value) at += out.write(entry.value, at, HASH_BYTES, "hex");
      if (entry.tree) at += out.write(entry.tree, at, HASH_BYTES, "hex");
    }
    return out;
  }
  let bitmap = 0;
  let size = 3 + varintSize(node.count);
  for (const bucket of node.buckets) {
    bitmap |= 1 << bucket.index;
    size += HASH_BYTES + varintSize(bucket.count);
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = SPLIT_TAG;
  out[1] = node.depth;
  out[2] = bitmap;
  let at = writeVarint(out, 3, node.count);
  for (const bucket of node.buckets) {
    at += out.write(bucket.hash, at, HASH_BYTES, "hex");
    at = writeVarint(out, at, bucket.count);
  }
  return out;
}

/**
 * The encoding of `node` made from `oldBytes`, the encoding of `old`, when the two differ
 * only in child hashes (same names and flags, or same buckets and counts): a copy with the
 * changed hashes written over. Undefined when the shapes differ (encode it in full).
 * Equal to encodeTreeNode(node) byte for byte.
 */
export function patchNode(oldBytes: Buffer | undefined, old: TreeNode, node: TreeNode): Buffer | undefined {
  if (!oldBytes) return undefined;
  if (old.kind === "split" && node.kind === "split") {
    if (old.count !== node.count || old.depth !== node.depth || old.buckets.length !== node.buckets.length) return undefined;
    for (let i = 0; i < node.buckets.length; i++) {
      if (old.buckets[i]!.index !== node.buckets[i]!.index || old.buckets[i]!.count !== node.buckets[i]!.count) return undefined;
    }
    const out = copyOf(oldBytes);
    let at = 3 + varintSize(node.count);
    for (let i = 0; i < node.buckets.length; i++) {
      const bucket = node.buckets[i]!;
      if (bucket.hash !== old.buckets[i]!.hash) out.write(bucket.hash, at, HASH_BYTES, "hex");
      at += HASH_BYTES + varintSize(bucket.count);
    }
    return out;
  }
  if (old.kind === "leaf" && node.kind === "leaf") {
    if (old.entries.length !== node.entries.length) return undefined;
    for (let i = 0; i < node.entries.length; i++) {
      const a = old.entries[i]!;
      const b = node.entries[i]!;
      if (a.name !== b.name || !a.value !== !b.value || !a.tree !== !b.tree) return undefined;
    }
    const out = copyOf(oldBytes);
    let at = 1 + varintSize(node.entries.length);
    for (let i = 0; i < node.entries.length; i++) {
      const entry = node.entries[i]!;
      const previous = old.entries[i]!;
      const length = Buffer.byteLength(entry.name, "utf8");
      at += varintSize(length) + length + 1;
      if (entry.value) {
        if (entry.value !== previous.value) out.write(entry.value, at, HASH_BYTES, "hex");
        at += HASH_BYTES;
      }
      if (entry.tree) {
        if (entry.tree !== previous.tree) out.write(entry.tree, at, HASH_BYTES, "hex");
        at += HASH_BYTES;
      }
    }
    return out;
  }
  return undefined;
}

/** Decodes a tree node, rejecting anything that is not in canonical form. */
export function decodeTreeNode(bytes: Uint8Array): TreeNode {
  const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const reader = new ByteReader(buffer);
  const tag = reader.byte();
  if (tag === LEAF_TAG) {
    const count = reader.varint();
    if (count === 0) throw new Error("empty leaf");
    const entries: DirEntry[] = [];
    let previousStart = -1;
    let previousEnd = -1;
    for (let i = 0; i < count; i++) {
      const length = reader.varint();
      if (length === 0) throw new Error("empty name");
      const start = reader.skip(length);
      const end = start + length;
      if (previousStart >= 0 && compareByteRanges(buffer, start, end, previousStart, previousEnd) <= 0) throw new Error("names out of order");
      previousStart = start;
      previousEnd = end;
      const name = nameAt(buffer, start, end);
      const flags = reader.byte();
      if (flags === 0 || flags > (HAS_VALUE | HAS_TREE)) throw new Error(`invalid entry flags ${flags}`);
      const entry: DirEntry = { name };
      if (flags & HAS_VALUE) entry.value = buffer.toString("hex", reader.skip(HASH_BYTES), reader.position);
      if (flags & HAS_TREE) entry.tree = buffer.toString("hex", reader.skip(HASH_BYTES), reader.position);
      entries.push(entry);
    }
    reader.end();
    return { kind: "leaf", entries };
  }
  if (tag === SPLIT_TAG) {
    const depth = reader.byte();
    if (depth >= MAX_SPLIT_DEPTH) throw new Error(`split depth ${depth} out of range`);
    const bitmap = reader.byte();
    const count = reader.varint();
    if (bitmap === 0) throw new Error("split node without buckets");
    if (count <= LEAF_MAX) throw new Error(`split node with only ${count} entries`);
    const buckets: SplitBucket[] = [];
    let sum = 0;
    for (let index = 0; index < FANOUT; index++) {
      if (!(bitmap & (1 << index))) continue;
      const hash = buffer.toString("hex", reader.skip(HASH_BYTES), reader.position);
      const bucketCount = reader.varint();
      if (bucketCount === 0) throw new Error("empty bucket");
      sum += bucketCount;
      buckets.push({ index, hash, count: bucketCount });
    }
    if (sum !== count) throw new Error(`bucket counts add up to ${sum}, not ${count}`);
    reader.end();
    return { kind: "split", depth, count, buckets };
  }
  throw new Error(`unknown node tag 0x${tag.toString(16)}`);
}

/**
 * The entry name in bytes[start, end): valid UTF-8 (exactly the encoding of the name it decodes
 * to) without "/", else it throws. Most names are short ASCII: checked and decoded here, without
 * the UTF-8 decoder (a whole-tree read decodes every entry's name; Buffer's toString and compare
 * cost ~0.2 µs a call each, more than the work on a few bytes).
 */
function nameAt(bytes: Buffer, start: number, end: number): string {
  let ascii = true;
  for (let i = start; i < end; i++) {
    const byte = bytes[i]!;
    if (byte >= 0x80) {
      ascii = false;
      break;
    }
    if (byte === SLASH) throw new Error("invalid name");
  }
  if (ascii) return bytes.toString("latin1", start, end);
  const name = bytes.toString("utf8", start, end);
  if (name.includes("/") || !Buffer.from(name, "utf8").equals(bytes.subarray(start, end))) throw new Error("invalid name");
  return name;
}

const SLASH = 0x2f;

/** bytes[aStart, aEnd) against bytes[bStart, bEnd), byte by byte (a prefix first): negative, 0 or positive. */
function compareByteRanges(bytes: Buffer, aStart: number, aEnd: number, bStart: number, bEnd: number): number {
  const length = Math.min(aEnd - aStart, bEnd - bStart);
  for (let i = 0; i < length; i++) {
    const difference = bytes[aStart + i]! - bytes[bStart + i]!;
    if (difference !== 0) return difference;
  }
  return aEnd - aStart - (bEnd - bStart);
}

class ByteReader {
  private offset = 0;
  constructor(private readonly buffer: Uint8Array) {}

  byte(): number {
    if (this.offset >= this.buffer.length) throw new Error("truncated node");
    return this.buffer[this.offset++]!;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const byte = this.byte();
      value += (byte & 0x7f) * scale;
      if (!(byte & 0x80)) {
        if (i > 0 && byte === 0) throw new Error("non-minimal varint");
        return value;
      }
      scale *= 128;
    }
    throw new Error("varint too long");
  }

  /** Skips `length` bytes, returning where they start. */
  skip(length: number): number {
    if (this.offset + length > this.buffer.length) throw new Error("truncated node");
    const start = this.offset;
    this.offset += length;
    return start;
  }

  get position(): number {
    return this.offset;
  }

  end(): void {
    if (this.offset !== this.buffer.length) throw new Error(`${this.buffer.length - this.offset} trailing bytes`);
  }
}

/** The bucket a name falls into at a split depth: BUCKET_BITS bits of sha256(name), from the most significant. */
export function bucketOf(nameHash: Buffer, depth: number): number {
  const bit = depth * BUCKET_BITS;
  const byte = bit >> 3;
  const pair = (nameHash[byte]! << 8) | (nameHash[byte + 1] ?? 0);
  return (pair >> (16 - (bit & 7) - BUCKET_BITS)) & (FANOUT - 1);
}

export function nameDigest(name: string): Buffer {
  return createHash("sha256").update(name, "utf8").digest();
}

// ---------------------------------------------------------------------------------------------
// Pack codecs

/** How a compressed pack is encoded (uncompressed packs have no codec). */
export type PackCodec = "gzip" | "brotli";
/** Codec ids as location records store them. */
export const PACK_CODEC_IDS: Readonly<Record<PackCodec, number>> = Object.freeze({ gzip: 1, brotli: 2 });
const CODEC_BY_ID: ReadonlyMap<number, PackCodec> = new Map([
  [1, "gzip"],
  [2, "brotli"],
]);
/**
 * Levels used when none is given. On JSON, brotli 6 and gzip 6 compress at ~25 MB/s;
 * brotli 11 (zlib's default) gets ~15% smaller at 1/50 of the speed.
 */
export const DEFAULT_CODEC_LEVEL: Readonly<Record<PackCodec, number>> = Object.freeze({ gzip: 6, brotli: 6 });
/** Highest level of each codec. */
export const MAX_CODEC_LEVEL: Readonly<Record<PackCodec, number>> = Object.freeze({ gzip: 9, brotli: 11 });
/**
 * Uncompressed bytes per compressed pack: objects compressed together share one dictionary
 * (about twice the ratio of compressing small JSON values one by one), and a pack still
 * decompresses in a fraction of a millisecond when one object of it is read.
 */
export const COMPRESSED_PACK_TARGET_BYTES = 64 * 1024;
/**
 * The codec and level value packs are compressed with as they are written by a view with
 * `compressValues` (LangGraph puts: plugins/checkpoint/langgraph.ts): the fastest level, so that
 * the commit hardly waits for it. A pack is stored compressed only
 * if that saves at least 1/WRITE_COMPRESS_MIN_SAVING of its bytes (values that are already
 * compressed, or random, stay as they are and cost nothing to read), and only from
 * WRITE_COMPRESS_MIN_BYTES on. Tree node packs are never compressed: they are mostly hashes.
 */
export const WRITE_CODEC: PackCodec = "gzip";
export const WRITE_CODEC_LEVEL = 1;
export const WRITE_COMPRESS_MIN_SAVING = 8;
export const WRITE_COMPRESS_MIN_BYTES = 512;
/** Largest uncompressed size a location record may claim: a damaged record must not make a read allocate gigabytes. */
export const MAX_RAW_PACK_BYTES = 256 * 1024 * 1024;
/**
 * Decompressed buffers at least this large are read as text for the strings of their values
 * (textSlicer): a text this long lies in V8's large-object space, which scavenges do not copy.
 */
const TEXT_BUFFER_BYTES = 256 * 1024;
/** Uncompressed bytes of gzip packs decompressed in one call by a grouped read (ObjectStore.decompressGzipRun). */
const GZIP_RUN_BYTES = 1024 * 1024;

export function packCodecName(id: number | undefined): PackCodec | undefined {
  return id === undefined ? undefined : CODEC_BY_ID.get(id);
}

/** node:zlib options for compressing `size` bytes with a codec at a level (default DEFAULT_CODEC_LEVEL). */
export function codecOptions(codec: PackCodec, level: number | undefined, size: number): ZlibOptions | BrotliOptions {
  const chosen = level ?? DEFAULT_CODEC_LEVEL[codec];
  if (!Number.isInteger(chosen) || chosen < 0 || chosen > MAX_CODEC_LEVEL[codec]) {
    throw new ApexError("APEX_E_BAD_INPUT", `Invalid ${codec} level ${chosen}: use 0 to ${MAX_CODEC_LEVEL[codec]}.`);
  }
  if (codec === "gzip") return { level: chosen };
  return {
    params: {
      [zlibConstants.BROTLI_PARAM_QUALITY]: chosen,
      [zlibConstants.BROTLI_PARAM_SIZE_HINT]: size,
      [zlibConstants.BROTLI_PARAM_MODE]: zlibConstants.BROTLI_MODE_TEXT,
    },
  };
}

/** Compresses the bytes of a pack. */
export function compressPack(codec: PackCodec, raw: Uint8Array, level?: number): Buffer {
  const options = codecOptions(codec, level, raw.length);
  return codec === "gzip" ? gzipSync(raw, options as ZlibOptions) : brotliCompressSync(raw, options as BrotliOptions);
}

/** Decompresses a stored pack; throws unless it decodes to exactly `rawSize` bytes. */
export function decompressPack(codecId: number, stored: Uint8Array, rawSize: number): Buffer {
  const codec = CODEC_BY_ID.get(codecId);
  if (!codec) throw new Error(`unknown codec ${codecId}`);
  if (!Number.isSafeInteger(rawSize) || rawSize < 0 || rawSize > MAX_RAW_PACK_BYTES) throw new Error(`implausible pack size ${rawSize}`);
  // One byte more than expected: a pack that decodes to more is caught below, not truncated.
  // Output in one chunk of that size: zlib's 16 KB chunks would be allocated one by one and
  // then copied together (a LangGraph getTuple decompresses hundreds of 32 KB packs).
  const options = { maxOutputLength: rawSize + 1, chunkSize: Math.max(64, rawSize + 1) };
  const raw = codec === "gzip" ? gunzipSync(stored, options) : brotliDecompressSync(stored, options);
  if (raw.length !== rawSize) throw new Error(`the pack decompresses to ${raw.length} bytes, not ${rawSize}`);
  return raw;
}

/** Stored bytes of a pack that hold its live objects: for a compressed pack, in proportion to the uncompressed bytes. */
function storedLiveBytes(packSize: number, liveLength: number, rawSize: number | undefined): number {
  if (rawSize === undefined) return Math.min(packSize, liveLength);
  return rawSize === 0 ? 0 : Math.round(packSize * Math.min(1, liveLength / rawSize));
}

// ---------------------------------------------------------------------------------------------
// Object store

/** An object to store. */
export interface NewObject {
  kind: ObjectKind;
  hash: Hash;
  bytes: Uint8Array;
}

/** Where an object's bytes are: a slice of a pack (of its uncompressed bytes, for a compressed pack). */
export interface ObjectLocation {
  pack: number;
  offset: number;
  length: number;
  /** Set for an object in a compressed pack: its codec id (PACK_CODEC_IDS). */
  codec?: number;
  /** Set with `codec`: the size of the whole pack uncompressed. */
  rawSize?: number;
}

/** Packs compressed beforehand (outside the write transaction), for ObjectStore.putPacks. */
export interface PreparedPack {
  kind: ObjectKind;
  codec: PackCodec;
  /** The compressed bytes of the pack. */
  data: Buffer;
  /** Its uncompressed size. */
  rawSize: number;
  /** The objects in it: where each lies in the uncompressed bytes. */
  entries: Array<{ hash: Hash; offset: number; length: number }>;
}

/** The slice of an lmdb-js database the object store uses. */
interface Table<K> {
  get(key: K): Buffer | undefined;
  getBinaryFast(key: K): Buffer | undefined;
  getBinaryMany?(keys: readonly K[]): Array<Buffer | undefined>;
  put(key: K, value: Buffer, options?: { append?: boolean }): unknown;
  remove(key: K): unknown;
  doesExist(key: K): boolean;
  getKeys(options?: { start?: K; reverse?: boolean; limit?: number }): Iterable<K>;
  getRange(options: { start?: K }): Iterable<{ key: K; value: Buffer }>;
  getStats(): { entryCount?: number } & Record<string, unknown>;
}

export const VALUES_DB = "blobs";
export const TREES_DB = "trees";
export const PACKS_DB = "packs";
export const JOURNAL_DB = "index-journal";
/** Key 0 of the packs database holds the highest pack id used so far (packs are 1, 2, …). */
const HIGH_WATER_KEY = 0;

const objectStores = new WeakMap<Store, ObjectStore>();

/** Objects of a grouped read (ObjectStore.visitRawGrouped) past which they are grouped by a map instead of one sorted array of pack * POSITION_LIMIT + position (pack ids are uint32: that stays below 2^53). */
const POSITION_LIMIT = 2 ** 21;

/** The objects of a grouped read by pack: `positions` (in the read's list) by pack, each pack's from `starts[g]` to `starts[g + 1]`, with their locations. */
interface PackGroups {
  positions: ArrayLike<number>;
  starts: readonly number[];
  locations: ReadonlyArray<ObjectLocation | undefined>;
}

/**
 * Decoded tree nodes already verified against their hash, shared by the views that build
 * trees (checkpoints, restores, diffs): a node's content never changes, so a long-running
 * process reads the paths it rebuilds once. Validation and repair views do not use it:
 * they re-read and re-hash what is stored. With each node, its encoded bytes: a node
 * rebuilt with a few child hashes changed is re-encoded by patching them (patchNode).
 */
class NodeCache {
  // Two generations instead of an LRU list: a Map that deletes and re-inserts on every hit
  // fills with tombstones, and finding its oldest key walks over them. New and recently
  // used nodes are in `young`; when it is full it becomes `old`, and what was old is dropped.
  private young = new Map<Hash, CachedNode>();
  private old = new Map<Hash, CachedNode>();
  private readonly half: number;
  constructor(capacity: number) {
    this.half = Math.max(1, Math.floor(capacity / 2));
  }

  get(hash: Hash): CachedNode | undefined {
    const node = this.young.get(hash);
    if (node) return node;
    const aging = this.old.get(hash);
    if (aging) this.set(hash, aging); // used again: keep it young
    return aging;
  }

  set(hash: Hash, node: CachedNode): void {
    if (this.young.size >= this.half) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(hash, node);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }
}

interface CachedNode {
  node: TreeNode;
  /**
   * Its encoding (hashes to the key it is cached under); undefined for a node read with many
   * others (ObjectView.readNodes), re-encoded should it be rebuilt (patchNode takes none).
   */
  bytes: Buffer | undefined;
}

/** Tree nodes kept decoded per store (a few hundred bytes each with their encoding). */
export const SHARED_NODE_CACHE_SIZE = 50_000;

/** Index records ObjectStore.usage() reads at a time. */
const USAGE_CHUNK = 4096;

/** The packs and the two hash indexes of one store. Writes must run inside a write transaction. */
export class ObjectStore {
  readonly store: Store;
  /** Value hash -> location. */
  readonly values: Table<Buffer>;
  /** Tree node hash -> location. */
  readonly trees: Table<Buffer>;
  /** Pack id -> concatenated object bytes. */
  readonly packs: Table<number>;
  /** Locations not yet merged into `values` and `trees`. */
  private readonly journal: IndexJournal;
  private readonly filterTable: FilterTable;
  /** The hash filter as last read or written (used only while in step, see filterInStep). */
  private filter: HashFilter | undefined;
  /** Verified decoded nodes, for views that build trees. */
  readonly nodeCache = new NodeCache(SHARED_NODE_CACHE_SIZE);
  /** sha256 of directory entry names (which bucket of a split node a name falls into). */
  private readonly nameDigests = new Map<string, Buffer>();
  private readonly keyBuffer = Buffer.alloc(HASH_BYTES);

  private constructor(store: Store) {
    this.store = store;
    this.values = openTable<Buffer>(store, VALUES_DB, "binary");
    this.trees = openTable<Buffer>(store, TREES_DB, "binary");
    this.packs = openTable<number>(store, PACKS_DB, "uint32");
    this.journal = new IndexJournal(openTable<number>(store, JOURNAL_DB, "uint32") satisfies JournalTable);
    this.filterTable = openTable<number>(store, FILTER_DB, "uint32") satisfies FilterTable;
  }

  static of(store: Store): ObjectStore {
    let objects = objectStores.get(store);
    if (!objects) {
      objects = new ObjectStore(store);
      objectStores.set(store, objects);
    }
    return objects;
  }

  index(kind: ObjectKind): Table<Buffer> {
    return kind === "value" ? this.values : this.trees;
  }

  /**
   * Catches the index journal and the hash filter up with the store; views do it once, then
   * look up with `synced`.
   */
  sync(): void {
    this.journal.sync();
    this.syncFilter();
  }

  private syncFilter(): void {
    const header = HashFilter.readHeader(this.filterTable);
    if (!header) this.filter = undefined;
    else if (this.filter?.nonce !== header.nonce || this.filter.generation !== header.generation) this.filter = HashFilter.load(this.filterTable, header);
  }

  /**
   * The hash filter if it covers the hash indexes as they are: written for the journal
   * generation the store is at. Call after sync().
   */
  private filterInStep(): HashFilter | undefined {
    const filter = this.filter;
    return filter && filter.generation === this.journal.currentGeneration ? filter : undefined;
  }

  /**
   * Brings the hash filter up to date after hashes were put into the indexes (inside the
   * same write transaction): `before` is the filter that was in step before the puts; without
   * one, or once it is full, it is rebuilt from the indexes.
   */
  private updateFilter(before: HashFilter | undefined, added: Iterable<Hash>): void {
    let filter = before;
    if (filter) for (const hash of added) filter.add(hash);
    if (!filter || filter.full) {
      const count = (this.values.getStats().entryCount ?? 0) + (this.trees.getStats().entryCount ?? 0);
      filter = HashFilter.sized(count, 0);
      for (const kind of ["value", "tree"] as const) {
        for (const key of this.index(kind).getKeys()) filter.addDigest(key);
      }
    }
    filter.generation = this.journal.currentGeneration;
    filter.save(this.filterTable);
    this.filter = filter;
  }

  /**
   * Runs `fn`, which puts index records through `put` (inside a write transaction), and
   * keeps the hash filter covering them.
   */
  private insertIntoIndexes<T>(fn: (put: (kind: ObjectKind, hash: Hash, location: ObjectLocation) => void) => T): T {
    this.sync();
    const before = this.filterInStep();
    const added: Hash[] = [];
    const result = fn((kind, hash, location) => {
      this.index(kind).put(Buffer.from(hash, "hex"), encodeLocation(location));
      added.push(hash);
    });
    if (added.length > 0) this.updateFilter(before, added);
    return result;
  }

  /**
   * Where an object is stored; throws ObjectDamageError (corrupt) if its index record cannot
   * be read. `synced`: sync() was called for the operation in progress.
   */
  locate(kind: ObjectKind, hash: Hash, synced = false): ObjectLocation | undefined {
    // One key buffer for every lookup (the journal's and the index's) and the record read in
    // place (decoded before the next read): a whole-tree read locates thousands of objects,
    // and each allocation is garbage.
    const key = this.keyBuffer.write(hash, "hex") === HASH_BYTES && hash.length === 2 * HASH_BYTES ? this.keyBuffer : undefined;
    const journaled = key ? this.journal.getBinary(kind, key, synced) : undefined;
    if (journaled) {
      // (a location decoded for this lookup: the caller's own)
      if (!journaled.codec) return journaled;
      const { codec, rawSize = 0 } = journaled;
      if (!CODEC_BY_ID.has(codec) || rawSize > MAX_RAW_PACK_BYTES || journaled.offset + journaled.length > rawSize) {
        throw new ObjectDamageError(kind, hash, "corrupt", "its journal entry is unreadable");
      }
      return journaled as ObjectLocation;
    }
    return this.fromRecord(kind, hash, this.index(kind).getBinaryFast(key ?? Buffer.from(hash, "hex")));
  }

  private fromRecord(kind: ObjectKind, hash: Hash, record: Buffer | undefined): ObjectLocation | undefined {
    if (!record) return undefined;
    try {
      return decodeLocation(record);
    } catch (error) {
      throw new ObjectDamageError(kind, hash, "corrupt", `its index record is unreadable: ${(error as Error).message}`);
    }
  }

  /**
   * The index records of the hashes the journal does not hold, read together when the backend
   * can (PostgreSQL: a few statements instead of a round trip each); undefined when it cannot.
   */
  private indexRecords(kind: ObjectKind, hashes: readonly Hash[], synced: boolean): Map<Hash, Buffer | undefined> | undefined {
    const index = this.index(kind);
    if (!index.getBinaryMany || hashes.length < 2) return undefined;
    if (!synced) this.journal.sync();
    const wanted = hashes.filter((hash) => !this.journal.get(kind, hash, true));
    const records = index.getBinaryMany(wanted.map((hash) => Buffer.from(hash, "hex")));
    return new Map(wanted.map((hash, i) => [hash, records[i]]));
  }

  /**
   * The stored bytes of an object, unchecked: undefined if it is not indexed or its pack
   * is gone. A slice that runs past the end of its pack comes back short (and will not
   * match its hash).
   */
  getRaw(kind: ObjectKind, hash: Hash, packCache?: PackCache, synced = false): Buffer | undefined {
    let location: ObjectLocation | undefined;
    try {
      location = this.locate(kind, hash, synced);
    } catch {
      return Buffer.alloc(0);
    }
    if (!location) return undefined;
    if (location.codec) return this.readCompressed(location, packCache);
    const cached = packCache?.get(location.pack);
    if (cached) return cached.subarray(location.offset, location.offset + location.length);
    const pack = this.packs.getBinaryFast(location.pack); // valid until the next read: copy
    if (!pack) return undefined;
    // Copying a whole pack pays off only if it is read again: cache it on its second read.
    if (packCache?.seenBefore(location.pack)) {
      const copy = copyOf(pack);
      packCache.set(location.pack, copy);
      return copy.subarray(location.offset, location.offset + location.length);
    }
    return copyOf(pack.subarray(location.offset, location.offset + location.length));
  }

  /**
   * The stored bytes of many objects, unchecked, read grouped by pack: one read of each pack
   * that holds any of them, in pack order, instead of one read per object in the caller's
   * order. A whole tree read in tree order visits packs written in another order (values are
   * packed in the order checkpoints wrote them), and each single read copies its whole pack
   * out of LMDB. Objects not indexed, or whose pack is gone, are left out of the result.
   */
  getRawGrouped(kind: ObjectKind, hashes: Iterable<Hash>, packCache?: PackCache, synced = false): Map<Hash, Buffer> {
    const found = new Map<Hash, Buffer>();
    // A pack mostly wanted is copied once and sliced; otherwise each object is copied alone: a
    // backend that maps its file into memory (LMDB) reads a pack without copying it, and the
    // objects a tree still wants from an old pack are often a small part of it (copying every
    // pack whole made grouped reads slower than one read per object).
    let copied: { id: number; copy: Buffer } | undefined;
    this.visitRawGrouped(
      kind,
      hashes,
      (hash, bytes, pack, mostly) => {
        if (!pack) return void found.set(hash, bytes); // a slice of a decompressed pack: not reused
        if (!mostly) return void found.set(hash, copyOf(bytes));
        // (lmdb-js may hand out the same Buffer object for every read: packs are told apart by id)
        if (copied?.id !== pack.id) copied = { id: pack.id, copy: copyOf(pack.bytes) };
        const offset = bytes.byteOffset - pack.bytes.byteOffset;
        found.set(hash, copied.copy.subarray(offset, offset + bytes.length));
      },
      packCache,
      synced,
    );
    return found;
  }

  /**
   * getRawGrouped without the copies: each object's stored bytes are handed to `visit` while
   * they are valid (a view into the store's memory until its next read: `visit` must not read
   * the store, and copies what it keeps), with the whole pack they lie in and its id (undefined
   * when the bytes stay valid: a decompressed pack's), whether the wanted objects make up at
   * least half of the pack's bytes, and whether the bytes were checked by the pack's own checksum as it was decompressed (a gzip
   * pack's CRC-32), and the position of the hash in `hashes` (a hash listed twice is visited
   * twice). A whole-tree read that decodes every value at once (a LangGraph getTuple)
   * copies nothing. Objects not indexed, or whose pack is gone, are not visited.
   */
  visitRawGrouped(
    kind: ObjectKind,
    hashes: Iterable<Hash>,
    visit: (hash: Hash, bytes: Buffer, pack: { id: number; bytes: Buffer } | undefined, mostly: boolean, checksummed: boolean, at: number, decompressed: boolean) => void,
    packCache?: PackCache,
    synced = false,
  ): void {
    const list = Array.isArray(hashes) ? (hashes as Hash[]) : [...hashes];
    const records = this.indexRecords(kind, list, synced);
    // Each object located, then visited in pack order: its location by its position in `list`,
    // and the positions sorted by pack as numbers (pack * 2^24 + position, one typed array
    // sorted natively): no wrapper object, array or map entry per object (a LangGraph getTuple
    // reads 14k objects, whose bookkeeping the young generation copied).
    const locations = new Array<ObjectLocation | undefined>(list.length);
    const grouped = list.length < POSITION_LIMIT ? new Float64Array(list.length) : undefined;
    const byPack = grouped ? undefined : new Map<number, number[]>();
    let count = 0;
    for (let at = 0; at < list.length; at++) {
      const hash = list[at]!;
      let location: ObjectLocation | undefined;
      try {
        location = records?.has(hash) ? this.fromRecord(kind, hash, records.get(hash)) : this.locate(kind, hash, synced);
      } catch {
        visit(hash, Buffer.alloc(0), undefined, false, false, at, false); // an unreadable index record: bytes that do not match the hash
        continue;
      }
      if (!location) continue;
      locations[at] = location;
      if (grouped) grouped[count++] = location.pack * POSITION_LIMIT + at;
      else {
        let wanted = byPack!.get(location.pack);
        if (!wanted) byPack!.set(location.pack, (wanted = []));
        wanted.push(at);
      }
    }
    // The positions of the located objects, by pack then position; `starts`: where each pack's begin.
    let positions: ArrayLike<number>;
    const starts: number[] = [];
    if (grouped) {
      const sorted = grouped.subarray(0, count).sort();
      const ats = new Int32Array(count);
      let pack = -1;
      for (let i = 0; i < count; i++) {
        const key = sorted[i]!;
        const at = key % POSITION_LIMIT;
        ats[i] = at;
        const id = (key - at) / POSITION_LIMIT;
        if (id !== pack) {
          starts.push(i);
          pack = id;
        }
      }
      positions = ats;
    } else {
      const all: number[] = [];
      for (const id of [...byPack!.keys()].sort((a, b) => a - b)) {
        starts.push(all.length);
        for (const at of byPack!.get(id)!) all.push(at);
      }
      positions = all;
    }
    starts.push(positions.length);
    const groups: PackGroups = { positions, starts, locations };
    // Gzip packs decompressed together, several to a call (see decompressGzipRun).
    let run = new Map<number, Buffer>();
    for (let g = 0; g + 1 < starts.length; g++) {
      const begin = starts[g]!;
      const end = starts[g + 1]!;
      const first = locations[positions[begin]!]!;
      const pack = first.pack;
      if (first.codec) {
        if (first.codec === PACK_CODEC_IDS.gzip && !run.has(pack) && !packCache?.getDecompressed(pack)) run = this.decompressGzipRun(groups, g, packCache);
        // Decompressed once for the group, with or without a cache.
        const raw = run.get(pack) ?? this.decompressed(first, packCache);
        for (let i = begin; i < end; i++) {
          const at = positions[i]!;
          const location = locations[at]!;
          const same = location.codec === first.codec && location.rawSize === first.rawSize;
          const bytes = same ? raw?.subarray(location.offset, location.offset + location.length) : this.readCompressed(location, packCache);
          // A gzip pack that decompressed (to its recorded size) passed its CRC-32.
          if (bytes) visit(list[at]!, bytes, undefined, false, same && first.codec === PACK_CODEC_IDS.gzip && raw!.length > 0, at, true);
        }
        continue;
      }
      const stored = this.packs.getBinaryFast(pack); // valid until the next read
      if (!stored) continue;
      let wantedBytes = 0;
      for (let i = begin; i < end; i++) wantedBytes += locations[positions[i]!]!.length;
      const mostly = end - begin > 1 && wantedBytes * 2 >= stored.length;
      const whole = { id: pack, bytes: stored };
      for (let i = begin; i < end; i++) {
        const at = positions[i]!;
        const location = locations[at]!;
        visit(list[at]!, stored.subarray(location.offset, location.offset + location.length), whole, mostly, false, at, false);
      }
    }
  }

  /**
   * The gzip packs of `groups` from its group `start` on (up to GZIP_RUN_BYTES uncompressed), decompressed in
   * one call: gzip members one after the other decompress as one stream, and each call to
   * zlib costs ~30 µs of set-up, as much as inflating a 32 KB pack of text (a LangGraph
   * getTuple decompresses hundreds). zlib checks each member's CRC-32 and length as before;
   * a member whose trailer does not give its pack's recorded size is left out, and a run
   * that fails or decompresses to another total is left to the pack-by-pack path (which
   * finds the damaged pack). The packs also go to `packCache`, as decompressed() puts them.
   */
  private decompressGzipRun(groups: PackGroups, start: number, packCache: PackCache | undefined): Map<number, Buffer> {
    const members: Array<{ id: number; stored: Buffer; rawSize: number }> = [];
    const { positions, starts, locations } = groups;
    let total = 0;
    for (let g = start; g + 1 < starts.length && total < GZIP_RUN_BYTES; g++) {
      const { pack: id, codec, rawSize } = locations[positions[starts[g]!]!]!;
      if (codec !== PACK_CODEC_IDS.gzip || rawSize === undefined || packCache?.getDecompressed(id)) break;
      const stored = this.packs.getBinaryFast(id); // valid until the next read: copied
      if (!stored || stored.length < 18 || stored[0] !== 0x1f || stored[1] !== 0x8b || stored.readUInt32LE(stored.length - 4) !== rawSize) continue;
      members.push({ id, stored: copyOf(stored), rawSize });
      total += rawSize;
    }
    const out = new Map<number, Buffer>();
    if (members.length < 2 || total > MAX_RAW_PACK_BYTES) return out;
    let raw: Buffer;
    try {
      raw = gunzipSync(Buffer.concat(members.map((member) => member.stored)), { maxOutputLength: total + 1, chunkSize: total + 1 });
    } catch {
      return out;
    }
    if (raw.length !== total) return out;
    let at = 0;
    for (const { id, rawSize } of members) {
      const bytes = raw.subarray(at, at + rawSize);
      at += rawSize;
      out.set(id, bytes);
      packCache?.setDecompressed(id, bytes);
    }
    return out;
  }

  /**
   * An object of a compressed pack: the pack is decompressed once per cache. A pack that
   * does not decompress to its recorded size gives every object in it empty bytes, which
   * do not match their hash.
   */
  private readCompressed(location: ObjectLocation, packCache: PackCache | undefined): Buffer | undefined {
    return this.decompressed(location, packCache)?.subarray(location.offset, location.offset + location.length);
  }

  /** The uncompressed bytes of the compressed pack `location` lies in (empty if it does not decompress as recorded). */
  private decompressed(location: ObjectLocation, packCache: PackCache | undefined): Buffer | undefined {
    let raw = packCache?.getDecompressed(location.pack);
    if (!raw) {
      const pack = this.packs.getBinaryFast(location.pack);
      if (!pack) return undefined;
      try {
        // getBinaryFast's Buffer sits on a larger shared array: hand zlib exactly the pack.
        raw = decompressPack(location.codec!, new Uint8Array(pack.buffer, pack.byteOffset, pack.length), location.rawSize!);
      } catch {
        return Buffer.alloc(0);
      }
      packCache?.setDecompressed(location.pack, raw);
    }
    return raw;
  }

  /**
   * Whether the index can be read many keys at a time (PostgreSQL, whose every read is a round
   * trip): views then check the objects they write all at once (storedMany) as they flush.
   */
  get readsMany(): boolean {
    return this.values.getBinaryMany !== undefined && this.trees.getBinaryMany !== undefined;
  }

  /**
   * Of `hashes`, those stored() would say are: their index records read together (indexRecords),
   * each pack's existence once. Call after sync().
   */
  storedMany(kind: ObjectKind, hashes: readonly Hash[]): Set<Hash> {
    const filter = this.filterInStep();
    const candidates = hashes.filter((hash) => this.journal.get(kind, hash, true) || filter?.mayContain(hash) !== false);
    const records = this.indexRecords(kind, candidates, true);
    const packs = new Map<number, boolean>();
    const stored = new Set<Hash>();
    for (const hash of candidates) {
      let location: ObjectLocation | undefined;
      try {
        location = records?.has(hash) ? this.fromRecord(kind, hash, records.get(hash)) : this.locate(kind, hash, true);
      } catch {
        continue;
      }
      if (!location) continue;
      let present = packs.get(location.pack);
      if (present === undefined) packs.set(location.pack, (present = this.packs.doesExist(location.pack)));
      if (present) stored.add(hash);
    }
    return stored;
  }

  /** True when the object is indexed and its pack exists (its bytes are not checked). */
  stored(kind: ObjectKind, hash: Hash, synced = false): boolean {
    // Not journaled and certainly not in the index: no need to descend the index's B-tree.
    if (synced && !this.journal.get(kind, hash, true) && this.filterInStep()?.mayContain(hash) === false) return false;
    let location: ObjectLocation | undefined;
    try {
      location = this.locate(kind, hash, synced);
    } catch {
      return false;
    }
    return location !== undefined && this.packs.doesExist(location.pack);
  }

  /**
   * Stores objects in new packs (values and tree nodes in separate packs, see
   * PACK_TARGET_BYTES) and points their index records there. Objects with a `codec` go
   * into packs compressed with it (COMPRESSED_PACK_TARGET_BYTES uncompressed each, at
   * `options.level`). Unchecked (repair, sweeps, tests). Returns the number of packs written.
   */
  putMany(objects: Iterable<{ kind: ObjectKind; hash: Hash; bytes: Uint8Array; codec?: PackCodec | undefined }>, options: { level?: number } = {}): number {
    this.mergeJournal();
    return this.insertIntoIndexes((put) => this.writePacks(objects, options, put));
  }

  /**
   * Stores new objects the fast way: in new packs, with their locations appended to the
   * index journal rather than inserted into the hash indexes. With `compressValues`, value
   * packs are compressed with WRITE_CODEC when that saves (see WRITE_CODEC). A journal
   * past JOURNAL_MERGE_ENTRIES is merged first. Call inside a write transaction. Returns the
   * number of packs written.
   */
  appendObjects(objects: Iterable<NewObject>, options: { compressValues?: boolean } = {}): number {
    if (this.journal.size >= JOURNAL_MERGE_ENTRIES) this.mergeJournal();
    const entries: JournalEntry[] = [];
    const packs = this.writePacks(objects, { compressValues: options.compressValues ?? false }, (kind, hash, location) => entries.push({ kind, hash, ...location }));
    this.journal.append(entries);
    return packs;
  }

  /** Moves the journal's locations into the hash indexes (newest wins) and empties it. Call inside a write transaction. */
  mergeJournal(): void {
    if (this.journal.size === 0) {
      this.journal.clear();
      return;
    }
    this.insertIntoIndexes((put) => {
      for (const kind of ["value", "tree"] as const) {
        for (const [hash, location] of this.journal.entries(kind)) put(kind, hash, location);
      }
      this.journal.clear(); // the filter is then written for the new generation
    });
  }

  private writePacks(
    objects: Iterable<NewObject & { codec?: PackCodec | undefined }>,
    options: { level?: number; compressValues?: boolean },
    record: (kind: ObjectKind, hash: Hash, location: ObjectLocation) => void,
  ): number {
    let packId = this.lastPackId();
    const startedAt = packId;
    interface OpenPack {
      kind: ObjectKind;
      codec: PackCodec | undefined;
      parts: Uint8Array[];
      size: number;
      entries: Array<{ hash: Hash; offset: number; length: number }>;
    }
    const open = new Map<string, OpenPack>();
    const flush = (pack: OpenPack) => {
      if (pack.parts.length === 0) return;
      // The id is taken when the pack is written, so appended keys always increase
      // (LMDB's append with a smaller key would silently break the B-tree's order).
      packId += 1;
      const raw = Buffer.allocUnsafe(pack.size);
      let at = 0;
      for (const part of pack.parts) {
        // `length`, not the whole view: a Buffer from getBinaryFast may be a larger shared one.
        raw.set(part.length === part.byteLength ? part : part.subarray(0, part.length), at);
        at += part.length;
      }
      // A pack larger than a read takes compressed (MAX_RAW_PACK_BYTES: a single value that large,
      // a LangGraph channel of 300 MB) is stored as it is: compressed, every read of it was refused
      // as damage ("does not match its hash"), the put or the compress having succeeded.
      const codec = raw.length <= MAX_RAW_PACK_BYTES ? pack.codec : undefined;
      let compressed = codec ? { codec: PACK_CODEC_IDS[codec], rawSize: raw.length } : {};
      let stored = codec ? compressPack(codec, raw, options.level) : raw;
      if (!pack.codec && options.compressValues && pack.kind === "value" && raw.length >= WRITE_COMPRESS_MIN_BYTES && raw.length <= MAX_RAW_PACK_BYTES) {
        const packed = compressPack(WRITE_CODEC, raw, WRITE_CODEC_LEVEL);
        if (packed.length <= raw.length - raw.length / WRITE_COMPRESS_MIN_SAVING) {
          stored = packed;
          compressed = { codec: PACK_CODEC_IDS[WRITE_CODEC], rawSize: raw.length };
        }
      }
      this.packs.put(packId, stored, { append: true });
      for (const { hash, offset, length } of pack.entries) record(pack.kind, hash, { pack: packId, offset, length, ...compressed });
      pack.parts = [];
      pack.size = 0;
      pack.entries = [];
    };
    for (const { kind, hash, bytes: given, codec } of objects) {
      // Held until its pack is written: a view into memory someone else may reuse is copied now.
      const bytes = Buffer.isBuffer(given) ? given : copyOf(given);
      const length = bytes.length;
      const key = codec ? `${kind}:${codec}` : kind;
      let pack = open.get(key);
      if (!pack) open.set(key, (pack = { kind, codec, parts: [], size: 0, entries: [] }));
      const target = codec ? COMPRESSED_PACK_TARGET_BYTES : PACK_TARGET_BYTES[kind];
      if (pack.size > 0 && pack.size + length > target) flush(pack);
      pack.entries.push({ hash, offset: pack.size, length });
      pack.parts.push(bytes);
      pack.size += length;
    }
    for (const pack of open.values()) flush(pack);
    if (packId > startedAt) this.packs.put(HIGH_WATER_KEY, encodeLocation({ pack: packId, offset: 0, length: 0 }));
    return packId - startedAt;
  }

  /**
   * Appends packs compressed beforehand (compressing is the slow part: it need not hold the
   * write lock) and points the index records of their objects at them. Unchecked: the
   * caller built each pack from the objects' verified bytes. Call inside a write
   * transaction. Returns the new pack ids, in order.
   */
  putPacks(packs: readonly PreparedPack[]): number[] {
    this.mergeJournal();
    return this.insertIntoIndexes((put) => {
      let packId = this.lastPackId();
      const ids: number[] = [];
      for (const pack of packs) {
        packId += 1;
        this.packs.put(packId, pack.data, { append: true });
        const codec = PACK_CODEC_IDS[pack.codec];
        for (const { hash, offset, length } of pack.entries) put(pack.kind, hash, { pack: packId, offset, length, codec, rawSize: pack.rawSize });
        ids.push(packId);
      }
      if (ids.length > 0) this.packs.put(HIGH_WATER_KEY, encodeLocation({ pack: packId, offset: 0, length: 0 }));
      return ids;
    });
  }

  /** Stores one object (in a pack of its own). Unchecked: tests use it to plant damage. */
  putRaw(kind: ObjectKind, hash: Hash, bytes: Uint8Array): void {
    this.putMany([{ kind, hash, bytes }]);
  }

  /** True when `hash` has an index record (its pack may be gone, its bytes damaged). */
  has(kind: ObjectKind, hash: Hash): boolean {
    return this.journal.get(kind, hash) !== undefined || this.index(kind).get(Buffer.from(hash, "hex")) !== undefined;
  }

  /** Drops an object's index record; its bytes stay in the pack until a sweep rewrites the pack. */
  removeRaw(kind: ObjectKind, hash: Hash): void {
    this.mergeJournal();
    this.index(kind).remove(Buffer.from(hash, "hex"));
  }

  /** Every indexed hash of `kind`: the hash index in key order, then what only the journal holds. */
  *hashes(kind: ObjectKind): Iterable<Hash> {
    const journaled = new Set(this.journal.entries(kind).keys());
    for (const key of this.index(kind).getKeys()) {
      const hash = Buffer.isBuffer(key) ? key.toString("hex") : copyOf(key).toString("hex");
      journaled.delete(hash);
      yield hash;
    }
    yield* journaled;
  }

  count(kind: ObjectKind): number {
    let count = this.index(kind).getStats().entryCount ?? 0;
    for (const hash of this.journal.entries(kind).keys()) if (this.index(kind).get(Buffer.from(hash, "hex")) === undefined) count += 1;
    return count;
  }

  *packIds(): Iterable<number> {
    for (const id of this.packs.getKeys()) if (id !== HIGH_WATER_KEY) yield id;
  }

  /**
   * The highest pack id ever used. Ids are never reused, even after a sweep deleted the
   * last packs: a stale index record must not come to point into an unrelated pack.
   */
  lastPackId(): number {
    let last = 0;
    for (const id of this.packs.getKeys({ reverse: true, limit: 1 })) last = id;
    const mark = this.packs.get(HIGH_WATER_KEY);
    if (mark) {
      try {
        last = Math.max(last, decodeLocation(mark).pack);
      } catch {
        // an unreadable mark: the last key is the best we know
      }
    }
    return last;
  }

  /** sha256(name), cached: the same names are looked up by every checkpoint. */
  digestOf(name: string): Buffer {
    let digest = this.nameDigests.get(name);
    if (!digest) {
      if (this.nameDigests.size >= SHARED_NODE_CACHE_SIZE) this.nameDigests.clear();
      digest = nameDigest(name);
      this.nameDigests.set(name, digest);
    }
    return digest;
  }

  /** Forgets the decoded nodes (as a restarted process would have none). */
  clearNodeCache(): void {
    this.nodeCache.clear();
  }

  /**
   * A view for reading and writing objects. `overlay`: writes stay in memory instead of the
   * store. `fresh`: do not use the store-wide cache of decoded nodes (validation, repair:
   * every node is read and re-hashed).
   */
  view(options: { overlay?: boolean; fresh?: boolean; compressValues?: boolean } = {}): ObjectView {
    const view = new ObjectView(this, options.overlay ?? false, options.fresh ? new NodeCache(Number.MAX_SAFE_INTEGER) : this.nodeCache);
    view.compressValues = options.compressValues ?? false;
    return view;
  }

  /** How the packs are used: sizes, bytes index records point at, and records whose pack is gone. */
  usage(): PackUsage {
    const live = new Map<number, number>();
    const rawSizes = new Map<number, number>();
    const dangling: Array<{ kind: ObjectKind; hash: Hash }> = [];
    const sizes = new Map<number, number>();
    for (const id of this.packIds()) sizes.set(id, this.packs.getBinaryFast(id)?.length ?? 0);
    this.journal.sync();
    for (const kind of ["value", "tree"] as const) {
      const hashes = [...this.hashes(kind)];
      // Their index records read USAGE_CHUNK at a time where the index reads many at once (PostgreSQL: located one by one,
      // each synced the journal too, 84k round trips of a validate of 30k memory keys); one that does not read is located on its own.
      let records: Map<Hash, Buffer | undefined> | undefined;
      for (let at = 0; at < hashes.length; at++) {
        const hash = hashes[at]!;
        if (at % USAGE_CHUNK === 0) {
          try {
            records = this.indexRecords(kind, hashes.slice(at, at + USAGE_CHUNK), true);
          } catch {
            records = undefined;
          }
        }
        let location: ObjectLocation | undefined;
        try {
          location = records?.has(hash) ? this.fromRecord(kind, hash, records.get(hash)) : this.locate(kind, hash, true);
        } catch {
          continue; // unreadable index record: validation reports it as corrupt
        }
        if (!location) continue;
        if (!sizes.has(location.pack)) dangling.push({ kind, hash });
        else {
          live.set(location.pack, (live.get(location.pack) ?? 0) + location.length);
          if (location.codec) rawSizes.set(location.pack, location.rawSize!);
        }
      }
    }
    let bytes = 0;
    let liveBytes = 0;
    for (const [id, size] of sizes) {
      bytes += size;
      liveBytes += storedLiveBytes(size, live.get(id) ?? 0, rawSizes.get(id));
    }
    return { packs: sizes.size, bytes, liveBytes, livePerPack: live, sizes, rawSizes, dangling };
  }

  /**
   * Drops the index records of objects `keep` rejects, deletes packs nothing points into
   * and rewrites packs that are mostly garbage. Call inside a write transaction.
   */
  reclaim(keep: (kind: ObjectKind, hash: Hash) => boolean, options: { dryRun?: boolean; rewriteBelow?: number } = {}): ReclaimResult {
    const result: ReclaimResult = { values: 0, trees: 0, valueBytes: 0, treeBytes: 0, packsRemoved: 0, packsRewritten: 0, bytesFreed: 0 };
    if (!options.dryRun) this.mergeJournal();
    const survivors = new Map<number, Array<{ kind: ObjectKind; hash: Hash; location: ObjectLocation }>>();
    for (const kind of ["value", "tree"] as const) {
      for (const hash of [...this.hashes(kind)]) {
        let location: ObjectLocation | undefined;
        try {
          location = this.locate(kind, hash);
        } catch {
          location = undefined;
        }
        if (keep(kind, hash) && location) {
          let list = survivors.get(location.pack);
          if (!list) survivors.set(location.pack, (list = []));
          list.push({ kind, hash, location });
          continue;
        }
        if (kind === "value") {
          result.values += 1;
          result.valueBytes += location?.length ?? 0;
        } else {
          result.trees += 1;
          result.treeBytes += location?.length ?? 0;
        }
        if (!options.dryRun) this.removeRaw(kind, hash);
      }
    }
    const rewriteBelow = options.rewriteBelow ?? 0.5;
    const moved: Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer; codec: PackCodec | undefined }> = [];
    packs: for (const id of [...this.packIds()]) {
      const pack = this.packs.get(id);
      if (!pack) continue;
      const kept = survivors.get(id) ?? [];
      const rawSize = kept.find((item) => item.location.codec)?.location.rawSize;
      const liveBytes = storedLiveBytes(pack.length, kept.reduce((sum, item) => sum + item.location.length, 0), rawSize);
      if (kept.length > 0 && liveBytes >= pack.length * rewriteBelow) continue;
      // Survivors of a compressed pack move to a pack compressed the same way.
      const decompressed = new Map<string, Buffer>();
      const rewritten: typeof moved = [];
      for (const item of kept) {
        const { codec, rawSize: size, offset, length } = item.location;
        let source: Buffer = pack;
        if (codec) {
          const key = `${codec}:${size}`;
          let raw = decompressed.get(key);
          if (!raw) {
            try {
              raw = decompressPack(codec, new Uint8Array(pack.buffer, pack.byteOffset, pack.length), size!);
            } catch {
              continue packs; // a damaged compressed pack stays as it is, for validate and repair
            }
            decompressed.set(key, raw);
          }
          source = raw;
        }
        rewritten.push({ kind: item.kind, hash: item.hash, bytes: copyOf(source.subarray(offset, offset + length)), codec: packCodecName(codec) });
      }
      moved.push(...rewritten);
      if (kept.length > 0) result.packsRewritten += 1;
      else result.packsRemoved += 1;
      result.bytesFreed += pack.length - liveBytes;
      if (!options.dryRun) this.packs.remove(id);
    }
    if (!options.dryRun && moved.length > 0) this.putMany(moved);
    return result;
  }
}

export interface PackUsage {
  packs: number;
  /** Bytes of all packs. */
  bytes: number;
  /** Bytes of packs that index records point at. */
  liveBytes: number;
  /** Bytes of objects (uncompressed) index records place in each pack. */
  livePerPack: Map<number, number>;
  sizes: Map<number, number>;
  /** Uncompressed sizes of the compressed packs. */
  rawSizes: Map<number, number>;
  /** Index records whose pack no longer exists. */
  dangling: Array<{ kind: ObjectKind; hash: Hash }>;
}

export interface ReclaimResult {
  /** Index records dropped. */
  values: number;
  trees: number;
  valueBytes: number;
  treeBytes: number;
  /** Packs deleted because nothing pointed into them any more. */
  packsRemoved: number;
  /** Packs whose surviving objects were copied into new packs. */
  packsRewritten: number;
  bytesFreed: number;
}

function openTable<K>(store: Store, name: string, keyEncoding: "binary" | "uint32"): Table<K> {
  // The backend's own table (for LMDB, lmdb-js's database handle): the hot reads go straight to it.
  return store.table<K & TableKey, Buffer>(name, { keys: keyEncoding, values: "binary" }) as unknown as Table<K>;
}

export function encodeLocation(location: ObjectLocation): Buffer {
  const out = Buffer.allocUnsafe(5 * 8);
  let at = writeVarint(out, 0, location.pack);
  at = writeVarint(out, at, location.offset);
  at = writeVarint(out, at, location.length);
  if (location.codec) {
    at = writeVarint(out, at, location.codec);
    at = writeVarint(out, at, location.rawSize ?? 0);
  }
  return out.subarray(0, at);
}

export function decodeLocation(bytes: Uint8Array): ObjectLocation {
  // Read in place and made in one go (a whole-tree read decodes thousands: no reader object,
  // and no codec fields added to a location afterwards, which grows it a property store).
  const pack = varintAt(bytes, 0);
  const offset = varintAt(bytes, varintEnd);
  const length = varintAt(bytes, varintEnd);
  let location: ObjectLocation;
  if (varintEnd < bytes.length) {
    const codec = varintAt(bytes, varintEnd);
    const rawSize = varintAt(bytes, varintEnd);
    if (!CODEC_BY_ID.has(codec)) throw new Error(`unknown codec ${codec}`);
    if (rawSize > MAX_RAW_PACK_BYTES || offset + length > rawSize) throw new Error(`slice past the end of the uncompressed pack`);
    location = { pack, offset, length, codec, rawSize };
  } else location = { pack, offset, length };
  if (varintEnd !== bytes.length) throw new Error(`${bytes.length - varintEnd} trailing bytes`);
  if (pack === 0) throw new Error("pack id 0");
  return location;
}

/** Where the last varintAt ended. */
let varintEnd = 0;

/** The varint at `start` (as ByteReader.varint reads it: minimal, at most 8 bytes); sets varintEnd. */
function varintAt(bytes: Uint8Array, start: number): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    if (start + i >= bytes.length) throw new Error("truncated node");
    const byte = bytes[start + i]!;
    value += (byte & 0x7f) * scale;
    if (!(byte & 0x80)) {
      if (i > 0 && byte === 0) throw new Error("non-minimal varint");
      varintEnd = start + i + 1;
      return value;
    }
    scale *= 128;
  }
  throw new Error("varint too long");
}

/**
 * A copy with its own memory. Buffer.from(buffer) copies byte by byte in JavaScript; and
 * lmdb-js's getBinaryFast returns a Buffer whose `length` is set over a larger shared array,
 * so the copy goes through an exact view.
 */
export function copyOf(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafe(bytes.length);
  copy.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length));
  return copy;
}

/**
 * Recently read packs, so reading several objects of one pack copies it once; and recently
 * decompressed packs, so that one is decompressed once: the values an old checkpoint needs
 * are spread over many compressed packs (up to `decompressedBytes` of them are kept).
 */
export class PackCache {
  private readonly packs = new Map<number, Buffer>();
  private readonly decompressed = new Map<number, Buffer>();
  private decompressedSize = 0;
  private readonly seen = new Set<number>();
  constructor(
    private readonly capacity = 16,
    private readonly decompressedBytes = 32 * 1024 * 1024,
  ) {}

  getDecompressed(id: number): Buffer | undefined {
    const raw = this.decompressed.get(id);
    if (raw) {
      this.decompressed.delete(id); // most recently used last
      this.decompressed.set(id, raw);
    }
    return raw;
  }

  setDecompressed(id: number, raw: Buffer): void {
    const old = this.decompressed.get(id);
    if (old) this.decompressedSize -= old.length;
    this.decompressed.delete(id);
    this.decompressed.set(id, raw);
    this.decompressedSize += raw.length;
    while (this.decompressedSize > this.decompressedBytes && this.decompressed.size > 1) {
      const [oldest, bytes] = this.decompressed.entries().next().value!;
      this.decompressed.delete(oldest);
      this.decompressedSize -= bytes.length;
    }
  }

  /** True if `id` was read before (and remembers that it now was). */
  seenBefore(id: number): boolean {
    if (this.seen.has(id)) return true;
    if (this.seen.size >= 4096) this.seen.clear();
    this.seen.add(id);
    return false;
  }

  get(id: number): Buffer | undefined {
    const pack = this.packs.get(id);
    if (pack) {
      this.packs.delete(id); // most recently used last
      this.packs.set(id, pack);
    }
    return pack;
  }

  set(id: number, pack: Buffer): void {
    this.packs.set(id, pack);
    if (this.packs.size > this.capacity) this.packs.delete(this.packs.keys().next().value!);
  }

  clear(): void {
    this.packs.clear();
    this.decompressed.clear();
    this.decompressedSize = 0;
    this.seen.clear();
  }
}

/** What a view wrote (or, with an overlay, would have written). */
export interface WriteStats {
  valuesWritten: number;
  valueBytesWritten: number;
  /** Tree nodes encoded and hashed (new or already stored). */
  treesBuilt: number;
  treesWritten: number;
  treeBytesWritten: number;
  packsWritten: number;
}

/**
 * Verified access to objects. Reads re-hash what they read and throw ObjectDamageError on
 * a missing, corrupt or undecodable object. Writes skip objects already stored (indexed,
 * pack present; their bytes are not re-read: validation and repair deal with corruption)
 * and rewrite objects whose pack is gone; they are buffered and stored as packs by
 * `flush()`, which updateTree calls before it returns.
 * With an overlay, writes stay in memory (and reads see them first): used to hash the
 * current state for restore and repair without storing anything.
 */
export class ObjectView {
  readonly objects: ObjectStore;
  readonly stats: WriteStats = { valuesWritten: 0, valueBytesWritten: 0, treesBuilt: 0, treesWritten: 0, treeBytesWritten: 0, packsWritten: 0 };
  private readonly nodeCache: NodeCache;
  /** Objects to store at flush(). */
  private readonly pending = new Map<Hash, { kind: ObjectKind; bytes: Buffer }>();
  /**
   * Of `pending`, those not yet looked up in the store (ObjectStore.readsMany): flush() looks
   * them up together and stores only those missing. A first checkpoint of 30k memory keys on
   * PostgreSQL looked up its 42k objects a round trip each (with its 30k record reads, `apex
   * start` took 16-18 s; 3.4-4.5 s with both read together).
   */
  private readonly unchecked = new Set<Hash>();
  private readonly checkLater: boolean;
  private readonly packCache = new PackCache();
  /** Values read ahead by prefetchValues, each until it is read. */
  private readonly prefetched = new Map<Hash, Buffer>();
  /** Tree nodes read ahead by prefetchNodes, each until it is read. */
  private readonly prefetchedNodes = new Map<Hash, Buffer>();
  readonly overlayTrees: Map<Hash, Buffer> | undefined;
  readonly overlayValues: Map<Hash, Buffer> | undefined;
  /** flush() compresses value packs with WRITE_CODEC where that saves (ObjectStore.appendObjects). */
  compressValues = false;

  constructor(objects: ObjectStore, overlay: boolean, nodeCache: NodeCache) {
    objects.sync(); // once for the view's work: its own writes keep the journal in step
    this.objects = objects;
    this.nodeCache = nodeCache;
    this.overlayTrees = overlay ? new Map() : undefined;
    this.overlayValues = overlay ? new Map() : undefined;
    this.checkLater = !overlay && objects.readsMany;
  }

  get isOverlay(): boolean {
    return this.overlayTrees !== undefined;
  }

  digestOf(name: string): Buffer {
    return this.objects.digestOf(name);
  }

  /**
   * Stores a value: given as JSON, or already as its encoding (a keyspace record read as
   * it is stored, see value-codec.ts), which is then hashed and stored as it is.
   */
  writeValue(value: JsonValue | EncodedValue): Hash {
    const bytes = value instanceof EncodedValue ? value.bytes : encodeJson(value);
    const hash = sha256(bytes);
    if (this.overlayValues) {
      this.overlayValues.set(hash, bytes);
      return hash;
    }
    this.buffer("value", hash, bytes);
    return hash;
  }

  /** Buffers an object for flush() unless the store has it: looked up now, or with the others at flush() (checkLater). */
  private buffer(kind: ObjectKind, hash: Hash, bytes: Buffer): void {
    if (this.pending.has(hash)) return;
    if (this.checkLater) this.unchecked.add(hash);
    else if (this.objects.stored(kind, hash, true)) return;
    this.pending.set(hash, { kind, bytes });
    if (!this.checkLater) this.count(kind, bytes);
  }

  private count(kind: ObjectKind, bytes: Buffer): void {
    if (kind === "value") {
      this.stats.valuesWritten += 1;
      this.stats.valueBytesWritten += bytes.length;
    } else {
      this.stats.treesWritten += 1;
      this.stats.treeBytesWritten += bytes.length;
    }
  }

  /** Stores a node; `bytes`: its encoding, when the caller has it already (patchNode). */
  writeNode(node: TreeNode, bytes: Buffer = encodeTreeNode(node)): Hash {
    const hash = sha256(bytes);
    this.stats.treesBuilt += 1;
    this.nodeCache.set(hash, { node, bytes });
    if (this.overlayTrees) {
      if (!this.overlayTrees.has(hash)) this.overlayTrees.set(hash, bytes);
      return hash;
    }
    this.buffer("tree", hash, bytes);
    return hash;
  }

  /**
   * Buffers, as writing them here would, the objects of the trees at `roots` that `overlay` (an
   * overlay view) built and the store lacks, without hashing them again (the overlay holds them
   * by their hashes); flush() stores them. A node the overlay did not build was read from the
   * store (below it everything is stored): it is not descended into. One it built that the store
   * has already (the same content, from an older tree) is, as writing each object checks each:
   * that the store holds a node says nothing more of its children than the normal path assumes.
   */
  adopt(overlay: ObjectView, roots: Iterable<Hash | null>): void {
    const trees = overlay.overlayTrees;
    const values = overlay.overlayValues;
    if (!trees || !values || this.isOverlay) throw new Error("adopt() takes an overlay view's objects into a view that stores them.");
    const stack = [...roots].filter((root): root is Hash => root !== null);
    const seen = new Set<Hash>();
    const value = (hash: Hash) => {
      const bytes = values.get(hash);
      if (bytes) this.buffer("value", hash, bytes);
    };
    while (stack.length > 0) {
      const hash = stack.pop()!;
      if (seen.has(hash)) continue;
      seen.add(hash);
      const bytes = trees.get(hash);
      if (!bytes) continue;
      this.buffer("tree", hash, bytes);
      const node = overlay.nodeCache.get(hash)?.node ?? decodeTreeNode(bytes);
      if (node.kind === "split") for (const bucket of node.buckets) stack.push(bucket.hash);
      else
        for (const entry of node.entries) {
          if (entry.value) value(entry.value);
          if (entry.tree) stack.push(entry.tree);
        }
    }
  }

  /** Stores the buffered writes as packs. Call inside the write transaction that wrote them. */
  flush(): void {
    if (this.unchecked.size > 0) {
      const byKind = { value: [] as Hash[], tree: [] as Hash[] };
      for (const hash of this.unchecked) byKind[this.pending.get(hash)!.kind].push(hash);
      for (const kind of ["value", "tree"] as const) {
        const hashes = byKind[kind];
        const stored = this.objects.storedMany(kind, hashes);
        for (const hash of hashes) {
          if (stored.has(hash)) this.pending.delete(hash);
          else this.count(kind, this.pending.get(hash)!.bytes);
        }
      }
      this.unchecked.clear();
    }
    if (this.pending.size === 0) return;
    this.stats.packsWritten += this.objects.appendObjects(pendingObjects(this.pending), { compressValues: this.compressValues });
    this.pending.clear();
    this.packCache.clear(); // pack ids were read before the write: nothing stale, but keep memory bounded
  }

  private bytesOf(kind: ObjectKind, hash: Hash): Buffer | undefined {
    const overlay = kind === "value" ? this.overlayValues : this.overlayTrees;
    const found = overlay?.get(hash) ?? this.pending.get(hash)?.bytes;
    if (found) return found;
    const ahead = kind === "value" ? this.prefetched : this.prefetchedNodes;
    const prefetched = ahead.get(hash);
    if (prefetched) {
      ahead.delete(hash); // read once: the map holds only what is still to come
      return prefetched;
    }
    return this.objects.getRaw(kind, hash, this.packCache, true);
  }

  /**
   * Reads the values a whole-tree read is about to ask for (restore, verify, a LangGraph
   * getTuple) grouped by pack, one read per pack (ObjectStore.getRawGrouped); each is then
   * handed out once by the reads that follow, which still verify it against its hash.
   */
  prefetchValues(hashes: Iterable<Hash>): void {
    const wanted: Hash[] = [];
    for (const hash of hashes) {
      if (this.overlayValues?.has(hash) || this.pending.has(hash) || this.prefetched.has(hash)) continue;
      wanted.push(hash);
    }
    if (wanted.length === 0) return;
    for (const [hash, bytes] of this.objects.getRawGrouped("value", wanted, this.packCache, true)) this.prefetched.set(hash, bytes);
  }

  /**
   * Reads many values at once, grouped by pack (ObjectStore.visitRawGrouped), and hands each
   * one's verified bytes to `visit` while they are valid: `visit` must not read the store and
   * copies what it keeps (decoding does). Nothing is copied or held: a whole-state read (a
   * LangGraph getTuple) decodes each value where it lies. Throws ObjectDamageError for a value
   * that is missing or does not match its hash. `at`: the position of the hash in `hashes`.
   * `trustChecksums`: a value of a pack whose own checksum was verified as it was decompressed
   * (gzip's CRC-32) is not re-hashed. That check covers the pack's bytes, not the index record
   * that places the value in it: for reads that serve data (a LangGraph getTuple, where hashing
   * every value cost as much as reading it), never for validation, which re-hashes everything.
   */
  visitValues(hashes: readonly Hash[], visit: (hash: Hash, bytes: Buffer, at: number, slice: StringSlicer | undefined) => void, options: { trustChecksums?: boolean } = {}): void {
    const trust = options.trustChecksums ?? false;
    // (a view that holds no value of its own, as a read's: every hash is read from the store,
    // without three map lookups each, which hashed each of a getTuple's 10k fresh hex strings)
    const own = (this.overlayValues?.size ?? 0) + this.pending.size + this.prefetched.size > 0;
    const fromStore: Hash[] = own ? [] : (hashes as Hash[]);
    // Where each hash read from the store is in `hashes` (`at`), when some were not.
    let positions: number[] | undefined;
    for (let at = 0; own && at < hashes.length; at++) {
      const hash = hashes[at]!;
      const bytes = this.overlayValues?.get(hash) ?? this.pending.get(hash)?.bytes ?? this.prefetched.get(hash);
      if (!bytes) {
        fromStore.push(hash);
        positions?.push(at);
      } else {
        positions ??= Array.from({ length: fromStore.length }, (_, i) => i);
        if (sha256(bytes) !== hash) throw new ObjectDamageError("value", hash, "corrupt");
        visit(hash, bytes, at, undefined);
      }
    }
    let visited = 0;
    // A slicer over the text of the decompressed buffer the last values lay in, made once for it.
    let textOf: ArrayBufferLike | undefined;
    let slicer: StringSlicer | undefined;
    this.objects.visitRawGrouped(
      "value",
      fromStore,
      (hash, bytes, _pack, _many, checksummed, at, decompressed) => {
        if (!(trust && checksummed) && sha256(bytes) !== hash) throw new ObjectDamageError("value", hash, "corrupt");
        // Decompressed buffers are never written again: a text of one stays true to it.
        const large = decompressed && bytes.buffer.byteLength >= TEXT_BUFFER_BYTES;
        if (large && textOf !== bytes.buffer) {
          textOf = bytes.buffer;
          slicer = textSlicer(Buffer.from(bytes.buffer, 0, bytes.buffer.byteLength).toString("latin1"));
        }
        visit(hash, bytes, positions ? positions[at]! : at, large ? slicer : undefined);
        visited += 1;
      },
      this.packCache,
      true,
    );
    if (visited < fromStore.length) {
      // Which one is missing (a damaged store): read each again.
      for (const hash of fromStore) if (!this.objects.getRaw("value", hash, this.packCache, true)) throw new ObjectDamageError("value", hash, "missing");
    }
  }

  /** As prefetchValues, for tree nodes not already decoded in the node cache (a tree read level by level). */
  prefetchNodes(hashes: Iterable<Hash>): void {
    const wanted: Hash[] = [];
    for (const hash of hashes) {
      if (this.nodeCache.get(hash) || this.overlayTrees?.has(hash) || this.pending.has(hash) || this.prefetchedNodes.has(hash)) continue;
      wanted.push(hash);
    }
    if (wanted.length === 0) return;
    for (const [hash, bytes] of this.objects.getRawGrouped("tree", wanted, this.packCache, true)) this.prefetchedNodes.set(hash, bytes);
  }

  /** The verified bytes of a value. */
  valueBytes(hash: Hash): Buffer {
    const bytes = this.bytesOf("value", hash);
    if (!bytes) throw new ObjectDamageError("value", hash, "missing");
    if (sha256(bytes) !== hash) throw new ObjectDamageError("value", hash, "corrupt");
    return bytes;
  }

  readValue(hash: Hash): JsonValue {
    const bytes = this.valueBytes(hash);
    try {
      return decodeValueObject(bytes);
    } catch (error) {
      throw new ObjectDamageError("value", hash, "undecodable", (error as Error).message);
    }
  }

  /**
   * The verified value in the value encoding, as a keyspace record holds it: a value object
   * in that encoding as it is (once it is known to decode), an older one re-encoded.
   */
  encodedValue(hash: Hash): Buffer {
    const bytes = this.valueBytes(hash);
    try {
      if (!isEncodedValue(bytes)) return encodeJson(JSON.parse(bytes.toString("utf8")));
      decodeValue(bytes);
      return bytes;
    } catch (error) {
      throw new ObjectDamageError("value", hash, "undecodable", (error as Error).message);
    }
  }

  /** The encoding of a node this view's cache holds (read or written lately), if it does. */
  cachedBytes(hash: Hash): Buffer | undefined {
    return this.nodeCache.get(hash)?.bytes;
  }

  /** A node and its encoding when cached with it (readNode caches both), with one cache lookup when it is cached: for rebuilding it. */
  nodeForUpdate(hash: Hash): CachedNode {
    const cached = this.nodeCache.get(hash);
    if (cached) return cached;
    const node = this.readNode(hash);
    return this.nodeCache.get(hash) ?? { node, bytes: encodeTreeNode(node) };
  }

  readNode(hash: Hash): TreeNode {
    const cached = this.nodeCache.get(hash);
    if (cached) return cached.node;
    const bytes = this.bytesOf("tree", hash);
    if (!bytes) throw new ObjectDamageError("tree", hash, "missing");
    if (sha256(bytes) !== hash) throw new ObjectDamageError("tree", hash, "corrupt");
    // A slice of a decompressed pack would keep the whole pack alive in the cache.
    return this.decodeNode(hash, bytes, bytes.buffer.byteLength > 8192 ? copyOf(bytes) : bytes);
  }

  /**
   * The nodes `hashes` name, in that order: those not in the node cache read grouped by pack
   * (ObjectStore.visitRawGrouped), each verified against its hash and decoded where it lies,
   * nothing copied: the cache keeps them without their encoding (a tree rebuilt from them
   * re-encodes the few nodes on its changed paths; copying every node's bytes for that cost a
   * LangGraph getTuple thousands of buffers, which the young generation then copied again). A
   * tree read level by level (a LangGraph getTuple reads thousands of small nodes from hundreds
   * of packs) reads each level this way. Throws ObjectDamageError as readNode does.
   */
  readNodes(hashes: readonly Hash[]): TreeNode[] {
    const nodes = new Array<TreeNode>(hashes.length);
    const own = (this.overlayTrees?.size ?? 0) + this.pending.size + this.prefetchedNodes.size > 0;
    const fromStore: Hash[] = [];
    const positions: number[] = [];
    for (let at = 0; at < hashes.length; at++) {
      const hash = hashes[at]!;
      const cached = this.nodeCache.get(hash);
      if (cached) nodes[at] = cached.node;
      else if (own && (this.overlayTrees?.has(hash) || this.pending.has(hash) || this.prefetchedNodes.has(hash))) nodes[at] = this.readNode(hash);
      else {
        fromStore.push(hash);
        positions.push(at);
      }
    }
    if (fromStore.length === 0) return nodes;
    let visited = 0;
    this.objects.visitRawGrouped(
      "tree",
      fromStore,
      (hash, bytes, _pack, _mostly, _checksummed, at) => {
        if (sha256(bytes) !== hash) throw new ObjectDamageError("tree", hash, "corrupt");
        nodes[positions[at]!] = this.decodeNode(hash, bytes, undefined); // the bytes are valid until the next read
        visited += 1;
      },
      this.packCache,
      true,
    );
    // One that is missing (a damaged store): readNode says which.
    if (visited < fromStore.length) for (let i = 0; i < fromStore.length; i++) nodes[positions[i]!] ??= this.readNode(fromStore[i]!);
    return nodes;
  }

  /** A verified node's bytes decoded and cached, with `keep` as its encoding. */
  private decodeNode(hash: Hash, bytes: Buffer, keep: Buffer | undefined): TreeNode {
    let node: TreeNode;
    try {
      node = decodeTreeNode(bytes);
    } catch (error) {
      throw new ObjectDamageError("tree", hash, "undecodable", (error as Error).message);
    }
    this.nodeCache.set(hash, { node, bytes: keep });
    return node;
  }
}

// ---------------------------------------------------------------------------------------------
// Building trees

function* pendingObjects(pending: ReadonlyMap<Hash, { kind: ObjectKind; bytes: Buffer }>): Iterable<NewObject> {
  for (const [hash, { kind, bytes }] of pending) yield { kind, hash, bytes };
}

/** Paths that changed below one directory: `self` when the path's own value changed. */
export class ChangeSet {
  self = false;
  readonly children = new Map<string, ChangeSet>();
  /**
   * Set by `graft`: the subtree below this path becomes this tree as it is (null: none), instead
   * of being updated path by path. For trees built outside the keyspace (LangGraph channels).
   * updateTree's valueDelta does not count the values below a graft; it lists the subtrees replaced.
   */
  subtree?: { tree: Hash | null };

  /** Replaces the subtree at a path (relative segments) with `tree`; its own value is changed only if also `add`ed. */
  graft(segments: readonly string[], tree: Hash | null): void {
    let node: ChangeSet = this;
    for (const segment of segments) {
      let child = node.children.get(segment);
      if (!child) {
        child = new ChangeSet();
        node.children.set(segment, child);
      }
      node = child;
    }
    node.subtree = { tree };
  }

  /** Marks a path (relative segments) as changed. */
  add(segments: readonly string[]): void {
    let node: ChangeSet = this;
    for (const segment of segments) {
      let child = node.children.get(segment);
      if (!child) {
        child = new ChangeSet();
        node.children.set(segment, child);
      }
      node = child;
    }
    node.self = true;
  }

  get size(): number {
    let count = this.self ? 1 : 0;
    for (const child of this.children.values()) count += child.size;
    return count;
  }
}

export interface TreeUpdate {
  root: Hash | null;
  /** Change in the number of values the tree holds (values below grafts not counted). */
  valueDelta: number;
  /** The subtrees that grafts (ChangeSet.graft) replaced. */
  replaced: Hash[];
}

/**
 * Applies changes to the tree rooted at `root`: for each changed path, `read` gives the
 * current value (undefined: deleted). Only nodes on changed paths are rebuilt; everything
 * else is reused by hash. With `root` null, builds a tree from scratch. New objects are
 * stored (as packs) before it returns: call it inside a write transaction, unless the view
 * is an overlay.
 */
export function updateTree(
  view: ObjectView,
  root: Hash | null,
  changes: ChangeSet,
  read: (segments: readonly string[]) => JsonValue | EncodedValue | undefined,
  label: (segments: readonly string[]) => string = (segments) => `/${segments.join("/")}`,
): TreeUpdate {
  const builder = new TreeBuilder(view, read, label);
  const result = builder.updateDirectory(root, changes, []);
  view.flush();
  return { root: result, valueDelta: builder.valueDelta, replaced: builder.replaced };
}

/** A changed name of a directory being rebuilt, with sha256(name) (which bucket it falls into at each depth). */
interface NameChange {
  name: string;
  change: ChangeSet;
  digest: Buffer;
}

class TreeBuilder {
  valueDelta = 0;
  /** The subtrees grafts replaced. */
  readonly replaced: Hash[] = [];
  constructor(
    private readonly view: ObjectView,
    private readonly read: (segments: readonly string[]) => JsonValue | EncodedValue | undefined,
    private readonly label: (segments: readonly string[]) => string,
  ) {}

  updateDirectory(dir: Hash | null, changes: ChangeSet, segments: string[]): Hash | null {
    if (changes.children.size === 0) return dir;
    return this.updatePartition(dir, 0, this.named(changes), segments).hash;
  }

  /**
   * The changes below a directory with each name's digest, taken once rather than once per
   * split level the name passes. (A loop of its own: in updateDirectory, a large directory's
   * loop ran optimized from within and V8 dropped that code at the first read after it.)
   */
  private named(changes: ChangeSet): NameChange[] {
    const named: NameChange[] = [];
    for (const [name, change] of changes.children) named.push({ name, change, digest: this.view.digestOf(name) });
    return named;
  }

  private updatePartition(hash: Hash | null, depth: number, changes: NameChange[], segments: string[]): { hash: Hash | null; count: number } {
    // The node with its encoding (one cache lookup): a node rebuilt with a few hashes changed is patched.
    const cached = hash ? this.view.nodeForUpdate(hash) : undefined;
    const node = cached?.node;
    if (node?.kind === "split") {
      if (node.depth !== depth) throw new ObjectDamageError("tree", hash!, "undecodable", `split depth ${node.depth}, expected ${depth}`);
      // Arrays of FANOUT slots: partitions are small, and Maps cost more than they save here.
      const groups: Array<NameChange[] | undefined> = new Array(FANOUT);
      if (changes.length === 1) groups[bucketOf(changes[0]!.digest, depth)] = changes;
      else
        for (const change of changes) {
          const index = bucketOf(change.digest, depth);
          (groups[index] ??= []).push(change);
        }
      const slots: Array<SplitBucket | undefined> = new Array(FANOUT);
      for (const bucket of node.buckets) slots[bucket.index] = bucket;
      for (let index = 0; index < FANOUT; index++) {
        const group = groups[index];
        if (!group) continue;
        const updated = this.updatePartition(slots[index]?.hash ?? null, depth + 1, group, segments);
        slots[index] = updated.hash ? { index, hash: updated.hash, count: updated.count } : undefined;
      }
      const buckets: SplitBucket[] = [];
      let count = 0;
      for (const bucket of slots) {
        if (!bucket) continue;
        buckets.push(bucket);
        count += bucket.count;
      }
      if (count > LEAF_MAX) {
        const split: SplitNode = { kind: "split", depth, count, buckets };
        return { hash: this.view.writeNode(split, patchNode(cached!.bytes, node, split)), count };
      }
      // Shrunk below the split threshold: collapse the buckets back into one leaf.
      const entries: DirEntry[] = [];
      for (const bucket of buckets) collectEntries(this.view, bucket.hash, entries);
      return this.buildPartition(entries.sort(byName), depth);
    }
    // A leaf: its entries are sorted by name; each change replaces, inserts or removes one.
    const entries = node ? node.entries.slice() : [];
    for (const { name, change } of changes) {
      const at = searchByName(entries, name);
      const found = at < entries.length && entries[at]!.name === name;
      const updated = this.applyChange(found ? entries[at] : undefined, name, change, segments);
      if (updated) {
        if (found) entries[at] = updated;
        else entries.splice(at, 0, updated);
      } else if (found) entries.splice(at, 1);
    }
    return this.buildPartition(entries, depth, cached);
  }

  private applyChange(old: DirEntry | undefined, name: string, change: ChangeSet, segments: string[]): DirEntry | undefined {
    const path = [...segments, name];
    let value = old?.value;
    let tree = old?.tree;
    if (change.subtree) {
      if (tree && tree !== change.subtree.tree) this.replaced.push(tree);
      tree = change.subtree.tree ?? undefined;
    }
    else if (change.children.size > 0) tree = this.updateDirectory(tree ?? null, change, path) ?? undefined;
    if (change.self) {
      const current = this.read(path);
      if (current === undefined) {
        if (value) this.valueDelta -= 1;
        value = undefined;
      } else {
        if (!value) this.valueDelta += 1;
        try {
          value = this.view.writeValue(current);
        } catch (error) {
          if (error instanceof ApexError && error.code === "APEX_E_BAD_JSON") {
            throw new ApexError("APEX_E_BAD_JSON", `${this.label(path)}: ${error.message}`, { details: { segments: path } });
          }
          throw error;
        }
      }
    }
    if (!value && !tree) return undefined;
    const entry: DirEntry = { name };
    if (value) entry.value = value;
    if (tree) entry.tree = tree;
    return entry;
  }

  /**
   * Builds the canonical partition holding `entries` (sorted) at `depth`. `previous`: the leaf
   * it replaces; when only child hashes changed (the usual checkpoint), its encoding is patched.
   */
  private buildPartition(entries: DirEntry[], depth: number, previous?: CachedNode): { hash: Hash | null; count: number } {
    if (entries.length === 0) return { hash: null, count: 0 };
    if (entries.length <= LEAF_MAX || depth >= MAX_SPLIT_DEPTH) {
      const leaf: LeafNode = { kind: "leaf", entries };
      return { hash: this.view.writeNode(leaf, previous && patchNode(previous.bytes, previous.node, leaf)), count: entries.length };
    }
    const groups: DirEntry[][] = Array.from({ length: FANOUT }, () => []);
    for (const entry of entries) groups[bucketOf(this.view.digestOf(entry.name), depth)]!.push(entry);
    const buckets: SplitBucket[] = [];
    groups.forEach((group, index) => {
      const built = this.buildPartition(group, depth + 1);
      if (built.hash) buckets.push({ index, hash: built.hash, count: built.count });
    });
    return { hash: this.view.writeNode({ kind: "split", depth, count: entries.length, buckets }), count: entries.length };
  }
}

function byName(a: DirEntry, b: DirEntry): number {
  return compareCodePoints(a.name, b.name);
}

/** Where `name` is, or would go, in entries sorted by name (binary search). */
function searchByName(entries: readonly DirEntry[], name: string): number {
  let low = 0;
  let high = entries.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareCodePoints(entries[middle]!.name, name) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

// ---------------------------------------------------------------------------------------------
// Reading trees

/** The number of values below a tree node (what a manifest counts; every node below is read). */
export function countValues(view: ObjectView, tree: Hash | null): number {
  if (!tree) return 0;
  const node = view.readNode(tree);
  let count = 0;
  if (node.kind === "split") for (const bucket of node.buckets) count += countValues(view, bucket.hash);
  else
    for (const entry of node.entries) {
      if (entry.value) count += 1;
      if (entry.tree) count += countValues(view, entry.tree);
    }
  return count;
}

/** Appends every entry of the directory partition `hash` to `out` (bucket order). */
export function collectEntries(view: ObjectView, hash: Hash, out: DirEntry[]): DirEntry[] {
  const node = view.readNode(hash);
  if (node.kind === "leaf") out.push(...node.entries);
  else for (const bucket of node.buckets) collectEntries(view, bucket.hash, out);
  return out;
}

/** The entries of a directory, sorted by name. */
export function listDirectory(view: ObjectView, dir: Hash | null): DirEntry[] {
  if (!dir) return [];
  return collectEntries(view, dir, []).sort(byName);
}

/** The entry at a relative path, following the hierarchy (O(depth)). */
export function lookupEntry(view: ObjectView, root: Hash | null, segments: readonly string[]): DirEntry | undefined {
  let dir = root;
  let entry: DirEntry | undefined;
  for (const name of segments) {
    if (!dir) return undefined;
    entry = findInDirectory(view, dir, name);
    if (!entry) return undefined;
    dir = entry.tree ?? null;
  }
  return entry;
}

export function findInDirectory(view: ObjectView, dir: Hash, name: string): DirEntry | undefined {
  let hash = dir;
  for (;;) {
    const node = view.readNode(hash);
    if (node.kind === "leaf") return node.entries.find((entry) => entry.name === name);
    const index = bucketOf(view.digestOf(name), node.depth);
    const bucket = node.buckets.find((candidate) => candidate.index === index);
    if (!bucket) return undefined;
    hash = bucket.hash;
  }
}

export interface ReachableVisitor {
  /** Called once per tree node before it is read; return false to leave it (and what is below it) out. */
  tree?(hash: Hash): boolean | void;
  /** Called for every value reference met (a value referenced twice is reported twice). */
  value?(hash: Hash): void;
  /** A node that cannot be read (missing, corrupt, undecodable): it is not entered. */
  damaged(hash: Hash, error: ObjectDamageError): void;
}

/**
 * Visits every tree node reachable from `roots`, each once, in depth-first order, and the
 * values they reference (mark phases: sweeps, cold-data scans). Unsorted: cheaper than walkTree.
 */
export function visitReachable(view: ObjectView, roots: Iterable<Hash | null | undefined>, visitor: ReachableVisitor): void {
  const seen = new Set<Hash>();
  const visit = (hash: Hash): void => {
    if (seen.has(hash)) return;
    seen.add(hash);
    if (visitor.tree?.(hash) === false) return;
    let node: TreeNode;
    try {
      node = view.readNode(hash);
    } catch (error) {
      if (!isObjectDamage(error)) throw error;
      visitor.damaged(hash, error);
      return;
    }
    if (node.kind === "split") for (const bucket of node.buckets) visit(bucket.hash);
    else
      for (const entry of node.entries) {
        if (entry.value) visitor.value?.(entry.value);
        if (entry.tree) visit(entry.tree);
      }
  };
  for (const root of roots) if (root) visit(root);
}

export interface TreeValue {
  segments: string[];
  hash: Hash;
}

/** Every value below `dir`, in tree order (each directory's entries sorted by name, a path before its children). */
export function* walkTree(view: ObjectView, dir: Hash | null, prefix: readonly string[] = []): Generator<TreeValue> {
  for (const entry of listDirectory(view, dir)) {
    const segments = [...prefix, entry.name];
    if (entry.value) yield { segments, hash: entry.value };
    if (entry.tree) yield* walkTree(view, entry.tree, segments);
  }
}

export interface TreeChange {
  segments: string[];
  /** Value hash before (absent: added). */
  before?: Hash;
  /** Value hash after (absent: removed). */
  after?: Hash;
}

/**
 * Calls `emit` for each path whose value differs between the trees `a` and `b`. Subtrees
 * and buckets with equal hashes are skipped without being read.
 */
export function diffTrees(view: ObjectView, a: Hash | null, b: Hash | null, emit: (change: TreeChange) => void): void {
  diffPartition(view, a, b, [], emit);
}

function diffPartition(view: ObjectView, a: Hash | null, b: Hash | null, prefix: string[], emit: (change: TreeChange) => void): void {
  if (a === b) return;
  const nodeA = a ? view.readNode(a) : undefined;
  const nodeB = b ? view.readNode(b) : undefined;
  if (nodeA?.kind === "split" && nodeB?.kind === "split" && nodeA.depth === nodeB.depth) {
    const bucketsA = new Map(nodeA.buckets.map((bucket) => [bucket.index, bucket.hash]));
    const bucketsB = new Map(nodeB.buckets.map((bucket) => [bucket.index, bucket.hash]));
    for (let index = 0; index < FANOUT; index++) {
      diffPartition(view, bucketsA.get(index) ?? null, bucketsB.get(index) ?? null, prefix, emit);
    }
    return;
  }
  const entriesA = new Map((a ? collectEntries(view, a, []) : []).map((entry) => [entry.name, entry]));
  const entriesB = new Map((b ? collectEntries(view, b, []) : []).map((entry) => [entry.name, entry]));
  const names = new Set([...entriesA.keys(), ...entriesB.keys()]);
  for (const name of [...names].sort(compareCodePoints)) {
    const x = entriesA.get(name);
    const y = entriesB.get(name);
    const segments = [...prefix, name];
    if (x?.value !== y?.value) {
      const change: TreeChange = { segments };
      if (x?.value) change.before = x.value;
      if (y?.value) change.after = y.value;
      emit(change);
    }
    if (x?.tree !== y?.tree) diffPartition(view, x?.tree ?? null, y?.tree ?? null, segments, emit);
  }
}
