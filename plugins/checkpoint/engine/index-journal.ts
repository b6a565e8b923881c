import { readVarint, varintBytes, writeVarint } from "./varint.js";

/**
 * The index journal: where the object store records the locations of objects a checkpoint
 * writes, instead of one B-tree insert per object into the hash indexes.
 *
 * The hash indexes are keyed by SHA-256, so the few hundred objects of a checkpoint land on
 * as many random index pages, and the commit writes and syncs every one of them (most of a
 * checkpoint's I/O). The journal appends them instead, as one record per batch of objects,
 * on pages that are written once. Lookups see the journal first (it is read into memory and
 * kept up to date incrementally), then the indexes. When the journal grows past
 * JOURNAL_MERGE_ENTRIES, or before anything else changes the indexes (sweeps, repair,
 * compression, imports), its entries are merged into the indexes and its records removed:
 * the log-structured merge of LSM trees, with one level.
 *
 * Storage: a sub-database with uint32 keys.
 *   key 0:  header   varint generation, varint last record key, 4-byte nonce of that record
 *   key n:  record   4-byte nonce, then entries: kind byte (1 value, 2 tree; 3 value and 4 tree
 *                    in a compressed pack), 32-byte hash, varint pack, varint offset, varint
 *                    length, and for kinds 3 and 4: varint codec id, varint uncompressed pack size
 * A merge bumps the generation. Every record carries a random nonce (repeated in the header),
 * so a reader notices records it saw in a transaction that was then aborted.
 */

export type JournalKind = "value" | "tree";

export interface JournalLocation {
  pack: number;
  offset: number;
  length: number;
  /** Set for an object in a compressed pack (as in the hash indexes' location records): the codec id. */
  codec?: number;
  /** Set with `codec`: the pack's uncompressed size. */
  rawSize?: number;
}

export interface JournalEntry extends JournalLocation {
  kind: JournalKind;
  hash: string;
}

/** The slice of an lmdb-js database (uint32 keys, binary values) the journal uses. */
export interface JournalTable {
  getBinaryFast(key: number): Buffer | undefined;
  put(key: number, value: Buffer, options?: { append?: boolean }): unknown;
  remove(key: number): unknown;
  getKeys(options?: { start?: number; reverse?: boolean; limit?: number }): Iterable<number>;
  getRange(options: { start?: number }): Iterable<{ key: number; value: Buffer }>;
}

/** Entries past which the journal is merged into the indexes before the next append. */
export const JOURNAL_MERGE_ENTRIES = 16_384;

const HEADER_KEY = 0;
const HASH_BYTES = 32;
const NONCE_BYTES = 4;
const KIND_BYTE: Readonly<Record<JournalKind, number>> = { value: 1, tree: 2 };
/** The kind byte of an entry whose object lies in a compressed pack. */
const COMPRESSED_KIND_BYTE: Readonly<Record<JournalKind, number>> = { value: 3, tree: 4 };

interface Header {
  generation: number;
  lastKey: number;
  nonce: number;
}

export class IndexJournal {
  private generation = -1;
  private lastKey = 0;
  private lastNonce = 0;
  private readonly entries_ = new JournalEntries();
  private readonly key = Buffer.alloc(HASH_BYTES);

  constructor(private readonly table: JournalTable) {}

  /**
   * The journal's location of an object (the newest entry wins), after catching up with the
   * store; `synced`: the caller called sync() for the operation it is in (one header read
   * per operation instead of one per lookup). The location is decoded for this call: the
   * caller may keep it.
   */
  get(kind: JournalKind, hash: string, synced = false): JournalLocation | undefined {
    if (!synced) this.sync();
    const key = this.key;
    return key.write(hash, "hex") === HASH_BYTES && hash.length === HASH_BYTES * 2 ? this.entries_.get(kind, key) : undefined;
  }

  /** As get, by the hash's 32 bytes (the key of the hash indexes, which a lookup has at hand). */
  getBinary(kind: JournalKind, hash: Buffer, synced = false): JournalLocation | undefined {
    if (!synced) this.sync();
    return this.entries_.get(kind, hash);
  }

  /** Every object the journal holds of `kind` (hash -> location). */
  entries(kind: JournalKind): ReadonlyMap<string, JournalLocation> {
    this.sync();
    return this.entries_.map(kind);
  }

  /** The generation as of the last sync (a merge starts a new one). */
  get currentGeneration(): number {
    return this.generation;
  }

  get size(): number {
    this.sync();
    return this.entries_.size;
  }

  /** Appends one record. Call inside a write transaction. */
  append(entries: readonly JournalEntry[]): void {
    if (entries.length === 0) return;
    this.sync();
    const header = this.readHeader();
    const nonce = randomNonce() || 1; // 0 marks "no record"
    const record = encodeRecord(nonce, entries);
    // After the last record there is, even if a damaged header says less: an append with a
    // smaller key would break the B-tree's order.
    let last = header.lastKey;
    for (const key of this.table.getKeys({ reverse: true, limit: 1 })) last = Math.max(last, key);
    const key = last + 1;
    this.table.put(key, record, { append: true });
    this.writeHeader({ generation: header.generation, lastKey: key, nonce });
    // In step with the store (sync above): take the entries in directly. Should the
    // transaction abort, the next sync finds the header changed and reloads.
    this.entries_.addRecord(record);
    this.lastKey = key;
    this.lastNonce = nonce;
  }

  /**
   * Removes every record (after the caller put their entries into the indexes) and starts a
   * new generation. Call inside a write transaction.
   */
  clear(): void {
    const header = this.readHeader();
    const keys = [...this.table.getKeys({ start: 1 })];
    if (keys.length === 0) return;
    for (const key of keys) this.table.remove(key);
    this.writeHeader({ generation: header.generation + 1, lastKey: header.lastKey, nonce: 0 });
    this.sync();
  }

  /** Brings the in-memory entries up to the store's state: reads new records, or all of them after a merge or an aborted write. */
  sync(): void {
    const header = this.readHeader();
    if (header.generation === this.generation && header.lastKey === this.lastKey && header.nonce === this.lastNonce) return;
    // The records seen so far are still there (none was rolled back): read only the new ones.
    const seenStands = this.lastNonce === 0 || this.recordNonce(this.lastKey) === this.lastNonce;
    const incremental = header.generation === this.generation && header.lastKey > this.lastKey && seenStands;
    if (!incremental) {
      this.entries_.clear();
      this.lastKey = 0;
      this.lastNonce = 0;
    }
    this.generation = header.generation;
    for (const { key, value } of this.table.getRange({ start: this.lastKey + 1 })) {
      if (key > header.lastKey) break; // written after the header was read: the next sync reads it
      this.entries_.addRecord(value);
    }
    this.lastKey = header.lastKey;
    this.lastNonce = header.nonce;
  }

  private recordNonce(key: number): number | undefined {
    const record = this.table.getBinaryFast(key);
    return record && record.length >= NONCE_BYTES ? record.readUInt32BE(0) : undefined;
  }

  private readHeader(): Header {
    const bytes = this.table.getBinaryFast(HEADER_KEY);
    if (!bytes) return { generation: 0, lastKey: 0, nonce: 0 };
    const generation = readVarint(bytes, 0);
    const lastKey = generation && readVarint(bytes, generation.next);
    if (!generation || !lastKey || lastKey.next + NONCE_BYTES > bytes.length) return { generation: 0, lastKey: 0, nonce: 0 };
    return { generation: generation.value, lastKey: lastKey.value, nonce: bytes.readUInt32BE(lastKey.next) };
  }

  private writeHeader(header: Header): void {
    this.table.put(HEADER_KEY, Buffer.concat([varintBytes(header.generation), varintBytes(header.lastKey), nonceBytes(header.nonce)]));
  }
}

function encodeRecord(nonce: number, entries: readonly JournalEntry[]): Buffer {
  // Each entry: kind, hash, and up to five varints of at most 8 bytes.
  const out = Buffer.allocUnsafe(NONCE_BYTES + entries.length * (1 + HASH_BYTES + 40));
  out.writeUInt32BE(nonce >>> 0, 0);
  let at = NONCE_BYTES;
  for (const entry of entries) {
    out[at++] = entry.codec ? COMPRESSED_KIND_BYTE[entry.kind] : KIND_BYTE[entry.kind];
    at += out.write(entry.hash, at, HASH_BYTES, "hex");
    at = writeVarint(out, at, entry.pack);
    at = writeVarint(out, at, entry.offset);
    at = writeVarint(out, at, entry.length);
    if (entry.codec) {
      at = writeVarint(out, at, entry.codec);
      at = writeVarint(out, at, entry.rawSize ?? 0);
    }
  }
  return out.subarray(0, at);
}

function nonceBytes(nonce: number): Buffer {
  const out = Buffer.allocUnsafe(NONCE_BYTES);
  out.writeUInt32BE(nonce >>> 0, 0);
  return out;
}

/**
 * A random 32-bit nonce (journal records, the hash filter): only compared for equality, so
 * Math.random is enough (and ~100× cheaper than crypto).
 */
export function randomNonce(): number {
  return Math.floor(Math.random() * 0x1_0000_0000) >>> 0;
}

/**
 * The journal's entries in memory, as the records hold them: their bytes copied one after the
 * other into one buffer, each entry found through an open-addressing table of its position,
 * placed by its hash's first bytes (SHA-256: uniform). A store opened anew (a LangGraph saver's
 * first getTuple, a new process) reads up to JOURNAL_MERGE_ENTRIES entries before its first
 * lookup: a map by hex string made a 64-character string, a location object and three varint
 * results per entry, 6-20 ms for a full journal; now an entry costs a copy of its bytes and a
 * slot, and a location is decoded when it is looked up. A lookup compares the hex hash with
 * the entry's bytes in place. The newest entry of a hash takes its slot.
 */
class JournalEntries {
  private bytes = Buffer.alloc(0);
  private used = 0;
  /** Where each entry starts in `bytes` (its kind byte), in the order they came. */
  private starts = new Int32Array(0);
  private count = 0;
  /** Per kind (value, tree): entry index + 1 by slot, 0 for an empty slot; its size a power of two at least twice the kind's entries. */
  private readonly slots = [new Int32Array(0), new Int32Array(0)];
  private readonly distinct = [0, 0];

  get size(): number {
    return this.distinct[0]! + this.distinct[1]!;
  }

  clear(): void {
    this.used = 0;
    this.count = 0;
    this.slots[0] = new Int32Array(0);
    this.slots[1] = new Int32Array(0);
    this.distinct[0] = 0;
    this.distinct[1] = 0;
  }

  /** Takes in a record's entries (copied); an undecodable tail is skipped (its objects read as missing, which validate reports). */
  addRecord(record: Buffer): void {
    // The readable entries, then copied in one piece.
    let end = NONCE_BYTES;
    let entries = 0;
    while (end < record.length) {
      if (kindIndex(record[end]!) < 0 || end + 1 + HASH_BYTES > record.length) break;
      const next = entryEnd(record, end);
      if (next < 0) break;
      end = next;
      entries += 1;
    }
    if (entries === 0) return;
    const base = this.used - NONCE_BYTES;
    if (this.used + end > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.bytes.length, this.used + end, 65536));
      this.bytes.copy(grown, 0, 0, this.used);
      this.bytes = grown;
    }
    record.copy(this.bytes, this.used, NONCE_BYTES, end);
    this.used += end - NONCE_BYTES;
    if (this.count + entries > this.starts.length) {
      const grown = new Int32Array(Math.max(1024, 2 * this.starts.length, this.count + entries));
      grown.set(this.starts.subarray(0, this.count));
      this.starts = grown;
    }
    for (let kind = 0; kind < 2; kind++) {
      if ((this.distinct[kind]! + entries) * 2 > this.slots[kind]!.length) this.rehash(kind, (this.distinct[kind]! + entries) * 2);
    }
    for (let at = NONCE_BYTES; at < end; at = entryEnd(record, at)) {
      this.starts[this.count++] = base + at;
      this.place(kindIndex(record[at]!), this.count);
    }
  }

  /** The newest location of the hash whose 32 bytes `hash` holds. */
  get(kind: JournalKind, hash: Buffer): JournalLocation | undefined {
    const slots = this.slots[kind === "value" ? 0 : 1]!;
    if (slots.length === 0) return undefined;
    const prefix = ((hash[0]! << 24) | (hash[1]! << 16) | (hash[2]! << 8) | hash[3]!) >>> 0;
    const mask = slots.length - 1;
    const bytes = this.bytes;
    for (let slot = prefix & mask; ; slot = (slot + 1) & mask) {
      const entry = slots[slot]!;
      if (entry === 0) return undefined;
      const start = this.starts[entry - 1]! + 1;
      // (the first four bytes first: another hash in the slot differs there, nearly always)
      if (((bytes[start]! << 24) | (bytes[start + 1]! << 16) | (bytes[start + 2]! << 8) | bytes[start + 3]!) >>> 0 !== prefix) continue;
      let same = true;
      for (let i = 4; i < HASH_BYTES; i++) {
        if (bytes[start + i] !== hash[i]) {
          same = false;
          break;
        }
      }
      if (same) return locationAt(bytes, start - 1);
    }
  }

  /** The entries of `kind` as a map by hash, in the order they first came (the newest location of each). */
  map(kind: JournalKind): Map<string, JournalLocation> {
    const out = new Map<string, JournalLocation>();
    const wanted = kind === "value" ? 0 : 1;
    for (let i = 0; i < this.count; i++) {
      const start = this.starts[i]!;
      if (kindIndex(this.bytes[start]!) === wanted) out.set(this.bytes.toString("hex", start + 1, start + 1 + HASH_BYTES), locationAt(this.bytes, start));
    }
    return out;
  }

  /** Puts entry `entry` (index + 1) in its kind's table, in the slot of an older entry of its hash if there is one. */
  private place(kind: number, entry: number): void {
    const slots = this.slots[kind]!;
    const bytes = this.bytes;
    const start = this.starts[entry - 1]! + 1;
    const mask = slots.length - 1;
    for (let slot = ((bytes[start]! << 24) | (bytes[start + 1]! << 16) | (bytes[start + 2]! << 8) | bytes[start + 3]!) & mask; ; slot = (slot + 1) & mask) {
      const other = slots[slot]!;
      if (other === 0) {
        slots[slot] = entry;
        this.distinct[kind]! += 1;
        return;
      }
      const otherStart = this.starts[other - 1]! + 1;
      let same = true;
      for (let i = 0; i < HASH_BYTES; i++) {
        if (bytes[start + i] !== bytes[otherStart + i]) {
          same = false;
          break;
        }
      }
      if (same) {
        slots[slot] = entry;
        return;
      }
    }
  }

  /** A table of at least `wanted` slots for `kind`, its entries placed again. */
  private rehash(kind: number, wanted: number): void {
    let size = 1024;
    while (size < wanted) size *= 2;
    const old = this.slots[kind]!;
    this.slots[kind] = new Int32Array(size);
    this.distinct[kind] = 0;
    for (const entry of old) if (entry !== 0) this.place(kind, entry);
  }
}

/** 0 for a value's kind byte, 1 for a tree's, -1 for anything else. */
function kindIndex(kindByte: number): number {
  return kindByte === KIND_BYTE.value || kindByte === COMPRESSED_KIND_BYTE.value ? 0 : kindByte === KIND_BYTE.tree || kindByte === COMPRESSED_KIND_BYTE.tree ? 1 : -1;
}

/** Where the entry at `at` ends, or -1 if it is truncated or unreadable (a varint too long, pack or codec 0). */
function entryEnd(record: Uint8Array, at: number): number {
  const compressed = record[at] === COMPRESSED_KIND_BYTE.value || record[at] === COMPRESSED_KIND_BYTE.tree;
  let position = at + 1 + HASH_BYTES;
  const fields = compressed ? 5 : 3;
  for (let field = 0; field < fields; field++) {
    const next = varintEnd(record, position);
    if (next < 0) return -1;
    // pack (field 0) and codec (field 3) are never 0: every byte of the varint is 0 or 0x80
    if (field === 0 || field === 3) {
      let zero = true;
      for (let i = position; i < next; i++) if ((record[i]! & 0x7f) !== 0) zero = false;
      if (zero) return -1;
    }
    position = next;
  }
  return position;
}

/** The position after the varint at `at`, or -1 if it is truncated or longer than 8 bytes (as readVarint). */
function varintEnd(bytes: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) {
    if (at + i >= bytes.length) return -1;
    if (!(bytes[at + i]! & 0x80)) return at + i + 1;
  }
  return -1;
}

/** The location of the (checked) entry at `start`. */
function locationAt(bytes: Buffer, start: number): JournalLocation {
  const compressed = bytes[start] === COMPRESSED_KIND_BYTE.value || bytes[start] === COMPRESSED_KIND_BYTE.tree;
  varintAt = start + 1 + HASH_BYTES;
  const pack = nextVarint(bytes);
  const offset = nextVarint(bytes);
  const length = nextVarint(bytes);
  if (!compressed) return { pack, offset, length };
  const codec = nextVarint(bytes);
  return { pack, offset, length, codec, rawSize: nextVarint(bytes) };
}

/** Where nextVarint reads (a position, not a result object per number: lookups decode thousands). */
let varintAt = 0;

/** The (checked) varint at `varintAt`, which moves past it. */
function nextVarint(bytes: Uint8Array): number {
  let value = 0;
  let scale = 1;
  for (;;) {
    const byte = bytes[varintAt++]!;
    value += (byte & 0x7f) * scale;
    if (!(byte & 0x80)) return value;
    scale *= 128;
  }
}
