import { randomNonce } from "./index-journal.js";
import { readVarint, varintSize, writeVarint } from "./varint.js";

/**
 * A Bloom filter over the hashes in the object indexes (`blobs` and `trees`), kept beside
 * them so that storing an object can tell, without touching the index, that it is new.
 *
 * Every object a checkpoint writes is first looked up to deduplicate it, and almost every
 * lookup misses: the index is keyed by SHA-256, so each miss is a B-tree descent to a cold,
 * random leaf page. The filter answers "certainly not indexed" from memory for all but a
 * fraction of a percent of them; only a "maybe" goes on to the index.
 *
 * It is an optimisation only, never a source of truth:
 *   - it says nothing about reads (locating an object always asks the index);
 *   - removals leave their bits set, which only makes a later lookup go to the index;
 *   - a filter that is missing, unreadable or out of step is not used, and the next merge
 *     of the index journal rebuilds it from the indexes.
 * It is in step when it was written for the journal generation the store is at: every
 * merge writes it (adding the merged hashes), and so does every other insert into the
 * indexes (putMany, putPacks), which merge the journal first.
 *
 * Storage: a sub-database with uint32 keys.
 *   key 0: header  byte version, varint journal generation, 4-byte nonce, varint entries
 *                  added, byte log2 of the number of bits
 *   key 1: the bits (bit i is bit i % 8 of byte i / 8)
 * A new random nonce on every write lets a process holding the filter in memory notice,
 * from the small header alone, that another one changed it.
 *
 * Each hash sets PROBES bits, at positions taken from its own (uniformly random) bytes:
 * probe p is the top log2(bits) bits of the big-endian uint32 of bytes 4p..4p+3.
 */

export const FILTER_DB = "index-filter";

/**
 * A filter is built with 16 to 32 bits per hash, and rebuilt twice as large once hashes
 * added bring it below 8 bits per hash. With 4 probes, false positives (lookups that go
 * to the index for nothing): 0.2% at 16 bits per hash, 2.4% at 8.
 */
const BUILD_BITS_PER_ENTRY = 16;
const MIN_BITS_PER_ENTRY = 8;
const PROBES = 4;
/** Smallest filter: 2^18 bits (32 KB). */
const MIN_LOG2_BITS = 18;
/** Largest number of bits: 2^30 (128 MB, 67 million hashes), beyond any store this serves. */
const MAX_LOG2_BITS = 30;
const VERSION = 1;
const HEADER_KEY = 0;
const BITS_KEY = 1;
const NONCE_BYTES = 4;

/** The slice of an lmdb-js database (uint32 keys, binary values) the filter uses. */
export interface FilterTable {
  getBinaryFast(key: number): Buffer | undefined;
  put(key: number, value: Buffer): unknown;
}

export interface FilterHeader {
  generation: number;
  nonce: number;
  count: number;
  log2Bits: number;
}

const HEX = new Uint8Array(128);
for (let i = 0; i < 16; i++) HEX["0123456789abcdef".charCodeAt(i)] = i;

/** The big-endian uint32 of hex characters at..at+7 of a lowercase hex digest. */
function hexWord(hash: string, at: number): number {
  let value = 0;
  for (let i = at; i < at + 8; i++) value = (value << 4) | HEX[hash.charCodeAt(i) & 0x7f]!;
  return value >>> 0;
}

export class HashFilter {
  private constructor(
    readonly bits: Uint8Array,
    readonly log2Bits: number,
    /** Hashes added (an upper bound of the distinct ones). */
    public count: number,
    /** The journal generation it is in step with. */
    public generation: number,
    /** The nonce of the stored copy it was read from or written as. */
    public nonce: number,
  ) {}

  /** An empty filter sized for `entries` hashes and room to grow. */
  static sized(entries: number, generation: number): HashFilter {
    let log2Bits = MIN_LOG2_BITS;
    while (2 ** log2Bits < entries * BUILD_BITS_PER_ENTRY && log2Bits < MAX_LOG2_BITS) log2Bits += 1;
    return new HashFilter(new Uint8Array(2 ** (log2Bits - 3)), log2Bits, 0, generation, 0);
  }

  /** True once it holds so many hashes that it should be rebuilt larger. */
  get full(): boolean {
    return this.count * MIN_BITS_PER_ENTRY > 2 ** this.log2Bits && this.log2Bits < MAX_LOG2_BITS;
  }

  /** Adds a hash given as 64 lowercase hex characters. */
  add(hash: string): void {
    for (let probe = 0; probe < PROBES; probe++) this.set(hexWord(hash, probe * 8));
    this.count += 1;
  }

  /** Adds a hash given as its 32 bytes. */
  addDigest(digest: Uint8Array): void {
    for (let probe = 0; probe < PROBES; probe++) {
      const at = probe * 4;
      this.set(((digest[at]! << 24) | (digest[at + 1]! << 16) | (digest[at + 2]! << 8) | digest[at + 3]!) >>> 0);
    }
    this.count += 1;
  }

  /** False when the hash was certainly never added. */
  mayContain(hash: string): boolean {
    const shift = 32 - this.log2Bits;
    for (let probe = 0; probe < PROBES; probe++) {
      const bit = hexWord(hash, probe * 8) >>> shift;
      if (!(this.bits[bit >>> 3]! & (1 << (bit & 7)))) return false;
    }
    return true;
  }

  private set(word: number): void {
    const bit = word >>> (32 - this.log2Bits);
    this.bits[bit >>> 3]! |= 1 << (bit & 7);
  }

  /** Stores it (inside a write transaction) under a new nonce. */
  save(table: FilterTable): void {
    this.nonce = randomNonce();
    const header = Buffer.allocUnsafe(1 + 8 + NONCE_BYTES + varintSize(this.count) + 1 + 8);
    header[0] = VERSION;
    let at = writeVarint(header, 1, this.generation);
    header.writeUInt32BE(this.nonce, at);
    at = writeVarint(header, at + NONCE_BYTES, this.count);
    header[at++] = this.log2Bits;
    table.put(BITS_KEY, Buffer.from(this.bits.buffer, this.bits.byteOffset, this.bits.byteLength));
    table.put(HEADER_KEY, header.subarray(0, at));
  }

  /** The stored header, or undefined when there is none or it cannot be read. */
  static readHeader(table: FilterTable): FilterHeader | undefined {
    const bytes = table.getBinaryFast(HEADER_KEY);
    if (!bytes || bytes[0] !== VERSION) return undefined;
    const generation = readVarint(bytes, 1);
    if (!generation || generation.next + NONCE_BYTES > bytes.length) return undefined;
    const nonce = bytes.readUInt32BE(generation.next);
    const count = readVarint(bytes, generation.next + NONCE_BYTES);
    if (!count || count.next + 1 !== bytes.length) return undefined;
    const log2Bits = bytes[count.next]!;
    if (log2Bits < 3 || log2Bits > MAX_LOG2_BITS) return undefined;
    return { generation: generation.value, nonce, count: count.value, log2Bits };
  }

  /** The stored filter described by `header`, or undefined when its bits are missing or the wrong size. */
  static load(table: FilterTable, header: FilterHeader): HashFilter | undefined {
    const stored = table.getBinaryFast(BITS_KEY);
    if (!stored || stored.length !== 2 ** (header.log2Bits - 3)) return undefined;
    // getBinaryFast's bytes are only valid until the next read, and its Buffer may be a
    // larger shared one with `length` set to the value's size: copy exactly that many.
    const bits = new Uint8Array(stored.length);
    bits.set(new Uint8Array(stored.buffer, stored.byteOffset, stored.length));
    return new HashFilter(bits, header.log2Bits, header.count, header.generation, header.nonce);
  }
}
