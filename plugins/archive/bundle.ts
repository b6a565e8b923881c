import { createHash } from "node:crypto";
import { createReadStream, openSync, closeSync, readSync } from "node:fs";
import { promisify } from "node:util";
import { brotliCompress, brotliDecompressSync, createBrotliDecompress, createGunzip, gunzipSync, gzip, type BrotliOptions, type ZlibOptions } from "node:zlib";
import { ApexError, type ErrorCode, withDetail } from "../../core/errors.js";
import {
  decodeValueObject,
  PACK_CODEC_IDS,
  canonicalBytes,
  codecOptions,
  compareCodePoints,
  decodeTreeNode,
  isHash,
  packCodecName,
  sha256,
  type Hash,
  type ObjectKind,
  type PackCodec,
  type TreeNode,
} from "../checkpoint/engine/objects.js";
import { pathProblem } from "../../core/store/paths.js";
import type { JsonValue } from "../../core/store/store.js";
import { containmentProblems } from "../checkpoint/contained.js";
import { ID, identityProblem } from "../checkpoint/record-identity.js";
import { DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_COMPRESSION_RATIO } from "./options.js";
import {
  checkSessionId,
  isRecord,
  manifestHash,
  manifestPath,
  manifestShapeProblems,
  parseCheckpointName,
  type CheckpointManifest,
} from "../checkpoint/manifest.js";

/**
 * Session bundles: one session, its records and every object its checkpoints reference,
 * in one compressed, self-verifying file. The format is documented in FORMAT.md; this
 * module is its only reader and writer.
 *
 *   header (52 bytes, uncompressed)
 *     0   8  magic "APEXBNDL"
 *     8   2  format version, uint16 big-endian (BUNDLE_VERSION)
 *     10  1  codec of the body: 1 gzip, 2 brotli
 *     11  1  reserved, 0
 *     12  8  length of the uncompressed body, uint64 big-endian
 *     20 32  SHA-256 of the uncompressed body
 *   body (compressed with the codec, to the end of the file)
 *     uint32 big-endian length of the manifest, the manifest (canonical JSON),
 *     then the blobs back to back: the records blob, then each object in manifest order.
 *
 * Reading trusts nothing in the file: sizes are bounded before anything is allocated,
 * every hash is recomputed, every path is checked, checkpoint manifests must verify, and
 * the objects must be exactly those the checkpoints reference.
 */

export const BUNDLE_MAGIC = Buffer.from("APEXBNDL", "latin1");
export const BUNDLE_VERSION = 1;
export const BUNDLE_FORMAT = "apex-session-bundle";
export const HEADER_BYTES = 52;
export const BUNDLE_EXTENSION = ".apexbundle";
export { DEFAULT_MAX_BUNDLE_BYTES, DEFAULT_MAX_COMPRESSION_RATIO };
/** Largest manifest accepted. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
/** Bodies up to this size are accepted whatever their compression ratio. */
export const RATIO_FREE_BYTES = 16 * 1024 * 1024;

export type BundleKind = "archive" | "export";

export interface BundleObjectEntry {
  kind: ObjectKind;
  hash: Hash;
  size: number;
}

export interface BundleCheckpointEntry {
  sequence: number;
  id: string;
  /** The checkpoint manifest's own hash. */
  hash: Hash;
}

/** The manifest of a bundle (the first thing in its body). */
export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  version: number;
  kind: BundleKind;
  created_at: string;
  apex_version: string;
  /** The project the session came from (informational). */
  project_id: string | null;
  session_id: string;
  /** "ended": the session record is at /sessions/history/<sid>; "live": at /sessions/<sid>. */
  session_state: "ended" | "live";
  /** The session's last allocated checkpoint sequence number (never reused, even after deletions). */
  last_sequence: number;
  checkpoints: BundleCheckpointEntry[];
  /** The records blob: canonical JSON of [[path, value], …], sorted by path. */
  records: { hash: Hash; size: number; count: number };
  objects: BundleObjectEntry[];
}

/** What a bundle holds, as written and as read back (verified). */
export interface BundleContent {
  manifest: BundleManifest;
  /** Keyspace records, sorted by path (code point order). */
  records: Array<[string, JsonValue]>;
  /** Object bytes by hash, in manifest order. */
  objects: Map<Hash, { kind: ObjectKind; bytes: Buffer }>;
  /** The checkpoint manifests among the records, by sequence. */
  checkpoints: CheckpointManifest[];
}

export type BundleInput = Omit<BundleManifest, "format" | "version" | "records" | "objects"> & {
  records: Array<[string, JsonValue]>;
  objects: Array<{ kind: ObjectKind; hash: Hash; bytes: Buffer }>;
};

const compressAsync = {
  gzip: promisify(gzip) as (input: Buffer, options: ZlibOptions) => Promise<Buffer>,
  brotli: promisify(brotliCompress) as (input: Buffer, options: BrotliOptions) => Promise<Buffer>,
};

/** Encodes a bundle file. Records must be sorted by path; objects in the order they are to be stored. */
export async function encodeBundle(input: BundleInput, codec: PackCodec, level?: number): Promise<{ file: Buffer; bodyBytes: number }> {
  const recordsBytes = canonicalBytes(input.records);
  const { records, objects, ...rest } = input;
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    ...rest,
    records: { hash: sha256(recordsBytes), size: recordsBytes.length, count: records.length },
    objects: objects.map(({ kind, hash, bytes }) => ({ kind, hash, size: bytes.length })),
  };
  const manifestBytes = canonicalBytes(manifest);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(manifestBytes.length);
  const body = Buffer.concat([length, manifestBytes, recordsBytes, ...objects.map((object) => object.bytes)]);
  const compressed = await compressAsync[codec](body, codecOptions(codec, level, body.length));
  const header = Buffer.alloc(HEADER_BYTES);
  BUNDLE_MAGIC.copy(header, 0);
  header.writeUInt16BE(BUNDLE_VERSION, 8);
  header[10] = PACK_CODEC_IDS[codec];
  header[11] = 0;
  header.writeBigUInt64BE(BigInt(body.length), 12);
  createHash("sha256").update(body).digest().copy(header, 20);
  return { file: Buffer.concat([header, compressed]), bodyBytes: body.length };
}

export interface ReadLimits {
  /** Largest uncompressed body accepted. */
  maxBytes?: number;
  /** Largest ratio of the uncompressed body to the compressed one (above RATIO_FREE_BYTES). */
  maxRatio?: number;
}

/** The header alone (cheap: for listings and early refusals). */
export interface BundleHeader {
  version: number;
  codec: PackCodec;
  bodyBytes: number;
  digest: Buffer;
}

export function readHeader(file: Buffer, limits: ReadLimits = {}): BundleHeader {
  if (file.length < HEADER_BYTES) invalid(`it is ${file.length} byte${file.length === 1 ? "" : "s"} long; a bundle has a ${HEADER_BYTES}-byte header (truncated file?)`);
  if (!file.subarray(0, 8).equals(BUNDLE_MAGIC)) invalid("it does not start with APEXBNDL: not an APEX session bundle");
  const version = file.readUInt16BE(8);
  if (version !== BUNDLE_VERSION) {
    throw new ApexError("APEX_E_BUNDLE_VERSION", `The bundle has format version ${version}; this APEX reads version ${BUNDLE_VERSION}.`, {
      hint: version > BUNDLE_VERSION ? "It was written by a newer APEX: import it with that version." : "The file is damaged or was not written by APEX.",
      details: { version, supported: [BUNDLE_VERSION] },
    });
  }
  const codec = packCodecName(file[10]!);
  if (!codec) invalid(`unknown body codec ${file[10]}`);
  if (file[11] !== 0) invalid("reserved header byte 11 is not 0");
  const declared = file.readBigUInt64BE(12);
  const maxBytes = limits.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES;
  if (declared > BigInt(maxBytes)) {
    invalid(`it declares ${declared} uncompressed bytes, more than the limit of ${maxBytes}`, "Raise plugins.archive.max_bundle_bytes if you trust this bundle.");
  }
  // A decompression bomb: a small file that claims (and would inflate to) a huge body. The
  // ratio is known before anything is decompressed, and decompression stops one byte past
  // the declared length, so at most min(declared, ratio × compressed) bytes are ever made.
  const compressed = file.length - HEADER_BYTES;
  const maxRatio = limits.maxRatio ?? DEFAULT_MAX_COMPRESSION_RATIO;
  if (declared > BigInt(RATIO_FREE_BYTES) && declared > BigInt(compressed) * BigInt(maxRatio)) {
    invalid(
      `it declares ${declared} uncompressed bytes for ${compressed} compressed ones, a ratio above the limit of ${maxRatio}:1 (a decompression bomb?)`,
      "Nothing was decompressed. Raise plugins.archive.max_compression_ratio if you trust this bundle.",
    );
  }
  return { version, codec, bodyBytes: Number(declared), digest: file.subarray(20, 52) };
}

/** What a bundle says it holds, from the start of its body (peekBundle). */
export interface BundlePeek {
  sessionId: string;
  kind: string;
  /** The name its session record gives the session (a branch's), else null. */
  name: string | null;
  /** The ids of the checkpoints it holds. */
  checkpoints: string[];
}

/**
 * The session a bundle file holds, its kind and its name, read from the start of its body alone
 * (the manifest and the records blob, decompressed as a stream and never past them, nor past
 * `maxBytes`): how `unarchive NAME` finds the archive of a branch, whose file is named by its id.
 * Nothing here is trusted: readBundle verifies the whole file before anything is installed.
 * Undefined for a file that does not read as a bundle.
 */
export async function peekBundle(path: string, maxBytes = DEFAULT_MAX_BUNDLE_BYTES): Promise<BundlePeek | undefined> {
  const header = Buffer.alloc(HEADER_BYTES);
  try {
    const fd = openSync(path, "r");
    try {
      if (readSync(fd, header, 0, HEADER_BYTES, 0) !== HEADER_BYTES) return undefined;
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const codec = packCodecName(header[10]!);
  if (!header.subarray(0, 8).equals(BUNDLE_MAGIC) || header.readUInt16BE(8) !== BUNDLE_VERSION || !codec) return undefined;
  const source = createReadStream(path, { start: HEADER_BYTES });
  const inflate = codec === "gzip" ? createGunzip() : createBrotliDecompress();
  source.on("error", (error) => inflate.destroy(error));
  source.pipe(inflate);
  const chunks: Buffer[] = [];
  let length = 0;
  let manifest: unknown;
  let want = 4;
  try {
    for await (const chunk of inflate as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length < want) continue;
      const body = Buffer.concat(chunks, length);
      chunks.splice(0, chunks.length, body);
      if (manifest === undefined) {
        const manifestLength = body.readUInt32BE(0);
        if (manifestLength > MAX_MANIFEST_BYTES) return undefined;
        if (length < 4 + manifestLength) {
          want = 4 + manifestLength;
          continue;
        }
        manifest = JSON.parse(body.subarray(4, 4 + manifestLength).toString("utf8"));
        const records = isRecord(manifest) && isRecord(manifest.records) ? manifest.records.size : undefined;
        if (typeof records !== "number" || !Number.isSafeInteger(records) || records < 0 || 4 + manifestLength + records > maxBytes) return undefined;
        want = 4 + manifestLength + records;
        if (length < want) continue;
      }
      if (!isRecord(manifest) || typeof manifest.session_id !== "string" || typeof manifest.kind !== "string") return undefined;
      const sessionId = manifest.session_id;
      const records = JSON.parse(body.subarray(want - (manifest.records as { size: number }).size, want).toString("utf8")) as unknown;
      if (!Array.isArray(records)) return undefined;
      const record = records.find((entry) => Array.isArray(entry) && (entry[0] === `/sessions/history/${sessionId}` || entry[0] === `/sessions/${sessionId}`))?.[1] as unknown;
      const name = isRecord(record) && typeof record.name === "string" && record.name ? record.name : null;
      const checkpoints = Array.isArray(manifest.checkpoints) ? manifest.checkpoints.flatMap((entry) => (isRecord(entry) && typeof entry.id === "string" ? [entry.id] : [])) : [];
      return { sessionId, kind: manifest.kind, name, checkpoints };
    }
    return undefined; // the body ended first
  } catch {
    return undefined; // damaged, truncated, not JSON: not a bundle to find anything in
  } finally {
    source.destroy();
    inflate.destroy();
  }
}

/**
 * Decodes and verifies a bundle file completely; throws APEX_E_BUNDLE_INVALID (or
 * APEX_E_BUNDLE_VERSION) naming the first problem. Nothing in it is trusted before it is
 * checked, and nothing outside the session's own keyspace paths is accepted.
 */
export function readBundle(file: Buffer, limits: ReadLimits = {}): BundleContent {
  const header = readHeader(file, limits);
  let body: Buffer;
  let trailing = 0;
  try {
    // One byte over the declared size: a body that is longer is caught, not cut.
    const options = { maxOutputLength: header.bodyBytes + 1, info: true } as const;
    const compressed = file.subarray(HEADER_BYTES);
    // `info` gives the engine, whose bytesWritten is how much of the input the stream used.
    const { buffer, engine } = (header.codec === "gzip" ? gunzipSync(compressed, options) : brotliDecompressSync(compressed, options)) as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
    body = buffer;
    // The body runs to the end of the file: bytes after its stream (two bundles in one file, an
    // appended download) are damage, and would count as compressed bytes in the ratio bound.
    if (engine.bytesWritten < compressed.length) trailing = compressed.length - engine.bytesWritten;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") invalid(`its body decompresses to more than the ${header.bodyBytes} bytes its header declares; decompression was stopped there`);
    invalid(`its body does not decompress (${(error as Error).message}): truncated or damaged`);
  }
  if (trailing > 0) invalid(`${trailing} byte${trailing === 1 ? " follows" : "s follow"} the end of its compressed body (two files joined, or an appended download?)`);
  if (body.length !== header.bodyBytes) invalid(`its body is ${body.length} bytes, the header says ${header.bodyBytes}`);
  if (!createHash("sha256").update(body).digest().equals(header.digest)) invalid("its checksum does not match: the file was damaged or modified");

  if (body.length < 4) invalid("its body is too short");
  const manifestLength = body.readUInt32BE(0);
  if (manifestLength > MAX_MANIFEST_BYTES || 4 + manifestLength > body.length) invalid(`its manifest length ${manifestLength} is out of bounds`);
  const manifestBytes = body.subarray(4, 4 + manifestLength);
  const manifest = checkManifest(parseCanonical(manifestBytes, "manifest"), header.version);

  // Blobs: sizes must add up to the body exactly, each hashes to its name.
  let at = 4 + manifestLength;
  const take = (size: number, what: string): Buffer => {
    if (at + size > body.length) invalid(`${what} runs past the end of the body`);
    const bytes = body.subarray(at, at + size);
    at += size;
    return bytes;
  };
  const recordsBytes = take(manifest.records.size, "the records blob");
  if (sha256(recordsBytes) !== manifest.records.hash) invalid("the records blob does not match its hash");
  const objects = new Map<Hash, { kind: ObjectKind; bytes: Buffer }>();
  const nodes = new Map<Hash, TreeNode>();
  for (const entry of manifest.objects) {
    const bytes = take(entry.size, `object ${entry.hash.slice(0, 12)}`);
    if (sha256(bytes) !== entry.hash) invalid(`object ${entry.hash.slice(0, 12)} does not match its hash`);
    try {
      if (entry.kind === "tree") nodes.set(entry.hash, decodeTreeNode(bytes));
      else decodeValueObject(bytes);
    } catch (error) {
      invalid(`object ${entry.hash.slice(0, 12)} cannot be decoded as a ${entry.kind === "tree" ? "tree node" : "value"}: ${(error as Error).message}`);
    }
    objects.set(entry.hash, { kind: entry.kind, bytes });
  }
  if (at !== body.length) invalid(`${body.length - at} byte${body.length - at === 1 ? " follows" : "s follow"} the last blob`);

  const records = checkRecords(parseCanonical(recordsBytes, "records blob"), manifest);
  const checkpoints = checkCheckpoints(records, manifest);
  checkObjectsComplete(checkpoints, manifest, objects, nodes);
  checkContained(checkpoints, nodes);
  return { manifest, records, objects, checkpoints };
}

function invalid(message: string, hint?: string, code: ErrorCode = "APEX_E_BUNDLE_INVALID"): never {
  throw new ApexError(code, withDetail(`Refusing the bundle`, message), {
    hint: hint ?? "Nothing was written. Use an intact copy of the bundle (`apex session export` writes a new one).",
  });
}

/** JSON that must be exactly in canonical form (so that equal content has one encoding). */
function parseCanonical(bytes: Buffer, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch (error) {
    invalid(`its ${what} is not JSON (${(error as Error).message})`);
  }
  let canonical: Buffer;
  try {
    canonical = canonicalBytes(value);
  } catch (error) {
    invalid(`its ${what} holds something JSON cannot (${(error as Error).message})`);
  }
  if (!canonical.equals(bytes)) invalid(`its ${what} is not in canonical form`);
  return value;
}

const MANIFEST_KEYS = [
  "apex_version",
  "checkpoints",
  "created_at",
  "format",
  "kind",
  "last_sequence",
  "objects",
  "project_id",
  "records",
  "session_id",
  "session_state",
  "version",
];
const UUIDISH = /^[0-9a-f][0-9a-f-]{7,63}$/;

function checkManifest(value: unknown, version: number): BundleManifest {
  if (!isRecord(value)) invalid("its manifest is not an object");
  const keys = Object.keys(value).sort();
  const unknown = keys.filter((key) => !MANIFEST_KEYS.includes(key));
  const missing = MANIFEST_KEYS.filter((key) => !(key in value));
  if (unknown.length > 0) invalid(`its manifest has unknown field(s) ${unknown.join(", ")}`);
  if (missing.length > 0) invalid(`its manifest lacks ${missing.join(", ")}`);
  const need = (ok: boolean, what: string) => {
    if (!ok) invalid(`its manifest's ${what}`);
  };
  need(value.format === BUNDLE_FORMAT, `format is not "${BUNDLE_FORMAT}"`);
  need(value.version === version, `version ${JSON.stringify(value.version)} disagrees with the header's ${version}`);
  need(value.kind === "archive" || value.kind === "export", "kind is not archive or export");
  need(typeof value.created_at === "string" && Number.isFinite(Date.parse(value.created_at)), "created_at is not a date");
  need(typeof value.apex_version === "string" && value.apex_version.length <= 64, "apex_version is not a version");
  need(value.project_id === null || (typeof value.project_id === "string" && value.project_id.length <= 256), "project_id is not a string or null");
  need(typeof value.session_id === "string", "session_id is not a string");
  try {
    checkSessionId(value.session_id as string);
  } catch (error) {
    invalid(`session id is not valid: ${(error as Error).message}`);
  }
  // An id, not a path: it names a directory of logs and a bundle file.
  need(ID.test(value.session_id as string), `session id ${JSON.stringify(value.session_id)} is not an id (letters, digits, '.', '_', '-')`);
  need(value.session_state === "ended" || value.session_state === "live", "session_state is not ended or live");
  need(isCount(value.last_sequence), "last_sequence is not a whole number");
  need(Array.isArray(value.checkpoints), "checkpoints is not a list");
  const sequences = new Set<number>();
  const ids = new Set<string>();
  for (const item of value.checkpoints as unknown[]) {
    need(isRecord(item) && Object.keys(item).length === 3 && isCount(item.sequence) && (item.sequence as number) >= 1, "checkpoints hold an entry without a valid sequence");
    const entry = item as Record<string, unknown>;
    need(typeof entry.id === "string" && UUIDISH.test(entry.id), "checkpoints hold an entry without a valid id");
    need(isHash(entry.hash), "checkpoints hold an entry without a valid hash");
    need(!sequences.has(entry.sequence as number) && !ids.has(entry.id as string), "checkpoints list one checkpoint twice");
    sequences.add(entry.sequence as number);
    ids.add(entry.id as string);
  }
  const records = value.records;
  need(isRecord(records) && Object.keys(records).length === 3 && isHash(records.hash) && isCount(records.size) && isCount(records.count), "records entry is malformed");
  need(Array.isArray(value.objects), "objects is not a list");
  const seen = new Set<string>();
  for (const item of value.objects as unknown[]) {
    need(
      isRecord(item) && Object.keys(item).length === 3 && (item.kind === "value" || item.kind === "tree") && isHash(item.hash) && isCount(item.size) && (item.size as number) >= 1,
      "objects hold a malformed entry",
    );
    const key = `${(item as BundleObjectEntry).kind}:${(item as BundleObjectEntry).hash}`;
    need(!seen.has(key), "objects list one object twice");
    seen.add(key);
  }
  return value as unknown as BundleManifest;
}

/**
 * The records: sorted, unique, valid keyspace paths, all in the session's own namespace:
 * its record (/sessions/history/<sid> when ended, /sessions/<sid> when live) and what is
 * below /sessions/<sid>/.
 */
function checkRecords(value: unknown, manifest: BundleManifest): Array<[string, JsonValue]> {
  if (!Array.isArray(value)) invalid("its records blob is not a list");
  if (value.length !== manifest.records.count) invalid(`its records blob holds ${value.length} record${value.length === 1 ? "" : "s"}, the manifest says ${manifest.records.count}`);
  const sid = manifest.session_id;
  const recordPath = manifest.session_state === "ended" ? `/sessions/history/${sid}` : `/sessions/${sid}`;
  const below = `/sessions/${sid}/`;
  let previous: string | undefined;
  let hasRecord = false;
  for (const item of value as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== "string") {
      invalid("its records blob holds an entry that is not [path, value]");
    }
    const path = item[0] as string;
    const problem = pathProblem(path);
    if (problem) invalid(`record path ${JSON.stringify(path.slice(0, 200))} is not a valid keyspace path: ${problem}`);
    if (path !== recordPath && !path.startsWith(below)) invalid(`record path ${JSON.stringify(path)} is outside session ${sid}'s own paths`);
    if (previous !== undefined && compareCodePoints(previous, path) >= 0) invalid("its records are not sorted by path, or list a path twice");
    previous = path;
    checkIdentity(path.slice(below.length), item[1], path);
    if (path === recordPath) {
      hasRecord = true;
      const record = item[1];
      if (!isRecord(record) || record.session_id !== sid) invalid(`the session record at ${recordPath} is not a record of session ${sid}`);
    }
  }
  if (!hasRecord) invalid(`it has no session record at ${recordPath}`);
  return value as Array<[string, JsonValue]>;
}

/**
 * Records whose path names an id must name themselves: an agent record at agents/<name>
 * is an object whose `name` is <name>, a task at tasks/<id> one whose `id` is <id>, and
 * both are ids, not paths. An agent record's process fields are null or whole numbers.
 */
function checkIdentity(relative: string, value: unknown, path: string): void {
  const problem = identityProblem(relative, value, path);
  if (problem !== undefined) invalid(problem);
}

const CHECKPOINT_LIKE = /^checkpoint-\d+$/;

/** Every manifest among the records verifies, belongs to the session and is listed; every listed one is there. */
function checkCheckpoints(records: Array<[string, JsonValue]>, manifest: BundleManifest): CheckpointManifest[] {
  const sid = manifest.session_id;
  const listed = new Map(manifest.checkpoints.map((entry) => [entry.sequence, entry]));
  const found: CheckpointManifest[] = [];
  for (const [path, value] of records) {
    const rest = path.slice(`/sessions/${sid}/`.length);
    if (!path.startsWith(`/sessions/${sid}/`) || !CHECKPOINT_LIKE.test(rest)) continue;
    const sequence = parseCheckpointName(rest);
    // checkpoint-0007 is not a manifest's name: the store treats such a record as any other.
    if (sequence === undefined || manifestPath(sid, sequence) !== path) continue;
    const problems = manifestShapeProblems(value);
    if (problems.length > 0) invalid(`the checkpoint manifest at ${path} is malformed: ${problems.join("; ")}`);
    const checkpoint = value as unknown as CheckpointManifest;
    if (manifestHash(checkpoint) !== checkpoint.hash) invalid(`the checkpoint manifest at ${path} does not match its hash`);
    if (checkpoint.session_id !== sid || checkpoint.sequence !== sequence) invalid(`the checkpoint manifest at ${path} belongs to ${checkpoint.session_id}/${checkpoint.name}`);
    const entry = listed.get(sequence);
    if (!entry || entry.id !== checkpoint.id || entry.hash !== checkpoint.hash) invalid(`the checkpoint manifest at ${path} is not the one the bundle's manifest lists`);
    listed.delete(sequence);
    found.push(checkpoint);
  }
  if (listed.size > 0) invalid(`the manifest lists checkpoint(s) the records lack: ${[...listed.keys()].join(", ")}`);
  const highest = found.reduce((max, checkpoint) => Math.max(max, checkpoint.sequence), 0);
  if (manifest.last_sequence < highest) invalid(`last_sequence ${manifest.last_sequence} is below checkpoint ${highest}`);
  return found.sort((a, b) => a.sequence - b.sequence);
}

/** The objects are exactly what the checkpoints reference: nothing missing, nothing extra. */
function checkObjectsComplete(
  checkpoints: readonly CheckpointManifest[],
  manifest: BundleManifest,
  objects: Map<Hash, { kind: ObjectKind; bytes: Buffer }>,
  nodes: Map<Hash, TreeNode>,
): void {
  const reached = new Set<string>();
  const visit = (hash: Hash, where: string): void => {
    const key = `tree:${hash}`;
    if (reached.has(key)) return;
    const node = nodes.get(hash);
    if (!node) invalid(`tree node ${hash.slice(0, 12)} of ${where} is missing`);
    reached.add(key);
    if (node.kind === "split") for (const bucket of node.buckets) visit(bucket.hash, where);
    else
      for (const entry of node.entries) {
        if (entry.value) {
          if (objects.get(entry.value)?.kind !== "value") invalid(`value ${entry.value.slice(0, 12)} of ${where} is missing`);
          reached.add(`value:${entry.value}`);
        }
        if (entry.tree) visit(entry.tree, where);
      }
  };
  for (const checkpoint of checkpoints) {
    for (const root of [checkpoint.memory.root, checkpoint.tasks.root, checkpoint.agents.root]) if (root) visit(root, checkpoint.name);
  }
  for (const entry of manifest.objects) {
    if (!reached.has(`${entry.kind}:${entry.hash}`)) invalid(`object ${entry.hash.slice(0, 12)} is not referenced by any of its checkpoints`);
  }
}

/**
 * Nothing in a checkpoint reaches outside its session: no memory under /sessions, every
 * tree name a valid path segment (plugins/checkpoint/contained.ts, as validate and restore
 * check it).
 */
function checkContained(checkpoints: readonly CheckpointManifest[], nodes: Map<Hash, TreeNode>): void {
  const seen = new Set<Hash>();
  const counts = new Map<Hash, number>();
  const values = (hash: Hash | null): number => {
    if (!hash) return 0;
    const known = counts.get(hash);
    if (known !== undefined) return known;
    const node = nodes.get(hash)!;
    let count = 0;
    if (node.kind === "split") for (const bucket of node.buckets) count += values(bucket.hash);
    else for (const entry of node.entries) count += (entry.value ? 1 : 0) + values(entry.tree ?? null);
    counts.set(hash, count);
    return count;
  };
  for (const checkpoint of checkpoints) {
    for (const [what, root, said] of [
      ["memory", checkpoint.memory.root, checkpoint.memory.keys],
      ["tasks", checkpoint.tasks.root, checkpoint.tasks.count],
      ["agents", checkpoint.agents.root, checkpoint.agents.count],
    ] as const) {
      const held = values(root);
      if (held !== said) invalid(`${checkpoint.name} says its ${what} holds ${said} entr${said === 1 ? "y" : "ies"}; its tree holds ${held}`);
    }
    const [first, ...rest] = containmentProblems((hash) => nodes.get(hash), checkpoint, seen);
    if (first) invalid(`${checkpoint.name} cannot be restored: ${first.problem}${rest.length > 0 ? ` (and ${rest.length} more)` : ""}`);
  }
}

function isCount(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

