/**
 * How the PostgreSQL backend stores the bytes of a keyspace value or a table row: as they are,
 * or compressed with raw deflate (node:zlib) when that pays. The `codec` column of apex.kv and
 * apex.rows says which (0: as they are; 1: deflate); rows written before that column existed
 * read as 0. Reads give back the bytes that were written, so hashes, the port's semantics and
 * copies to another backend are unchanged.
 *
 * Why the backend does it: PostgreSQL compresses a value (TOAST, pglz) only once its row passes
 * ~2 KB, a threshold fixed at build time (toast_tuple_target only lowers the size TOAST then
 * aims for). Memory values and most rows are smaller, so they were stored raw: 10k values of
 * 1 KB took 10 MB even when each compressed 30×.
 */
import { deflateRawSync, inflateRawSync } from "node:zlib";

export const CODEC_RAW = 0;
export const CODEC_DEFLATE = 1;

/** Smaller values are stored as they are: the saving would be a few bytes of a row of ~60. */
export const COMPRESS_MIN_BYTES = 128;
/** Compressed bytes are kept only if they save at least 1/COMPRESS_MIN_SAVING of the value. */
export const COMPRESS_MIN_SAVING = 8;
/** deflate's fastest level: a checkpoint's rows are compressed as its transaction commits. */
const LEVEL = 1;
/** Bytes whose byte histogram is looked at before trying to compress. */
const SAMPLE_BYTES = 1024;
/**
 * Bits per byte (order 0, over the sample) past which bytes are not even tried: SHA-256 hashes
 * (tree nodes, hash index records) and already compressed packs. deflate cannot save 1/8 there.
 */
const MAX_SAMPLE_ENTROPY = 7.2;

const counts = new Uint32Array(256);

/** The order-0 entropy, in bits per byte, of the first SAMPLE_BYTES bytes. */
function sampleEntropy(bytes: Uint8Array): number {
  const n = Math.min(bytes.length, SAMPLE_BYTES);
  counts.fill(0);
  for (let i = 0; i < n; i++) counts[bytes[i]!]! += 1;
  let bits = 0;
  for (let b = 0; b < 256; b++) {
    const count = counts[b]!;
    if (count > 0) bits -= count * Math.log2(count / n);
  }
  return bits / n;
}

/** The bytes to store and their codec: compressed only when that saves enough. */
export function storedForm(bytes: Buffer): { bytes: Buffer; codec: number } {
  if (bytes.length < COMPRESS_MIN_BYTES || sampleEntropy(bytes) > MAX_SAMPLE_ENTROPY) return { bytes, codec: CODEC_RAW };
  const packed = deflateRawSync(bytes, { level: LEVEL });
  if (packed.length > bytes.length - bytes.length / COMPRESS_MIN_SAVING) return { bytes, codec: CODEC_RAW };
  return { bytes: packed, codec: CODEC_DEFLATE };
}

/**
 * The bytes that were written, from what is stored. A row that does not decompress (damaged, or
 * an unknown codec written by a newer APEX) reads as empty bytes, which no value or object
 * decodes from: reads report it as damaged, and validate finds it.
 */
export function writtenForm(stored: Buffer, codec: number): Buffer {
  if (codec === CODEC_RAW) return stored;
  if (codec !== CODEC_DEFLATE) return Buffer.alloc(0);
  try {
    return inflateRawSync(stored);
  } catch {
    return Buffer.alloc(0);
  }
}
