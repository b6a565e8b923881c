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
  private readonly maps: Record<JournalKind, Map<string, JournalLocation>> = { value: new Map(), tree: new Map() };

  constructor(private readonly table: JournalTable) {}

  /**
   * The journal's location of an object (the newest entry wins), after catching up with the
   * store; `synced`: the caller called sync() for the operation it is in (one header read
   * per operation instead of one per lookup).
   */
  get(kind: JournalKind, hash: string, synced = false): JournalLocation | undefined {
    if (!synced) this.sync();
    return this.maps[kind].get(hash);
  }

  /** Every object the journal holds of `kind` (hash -> location). */
  entries(kind: JournalKind): ReadonlyMap<string, JournalLocation> {
    this.sync();
    return this.maps[kind];
  }

  /** The generation as of the last sync (a merge starts a new one). */
  get currentGeneration(): number {
    return this.generation;
  }

  get size(): number {
    this.sync();
    return this.maps.value.size + this.maps.tree.size;
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
    for (const entry of entries) this.maps[entry.kind].set(entry.hash, locationOf(entry));
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

  /** Brings the in-memory maps up to the store's state: reads new records, or all of them after a merge or an aborted write. */
  sync(): void {
    const header = this.readHeader();
    if (header.generation === this.generation && header.lastKey === this.lastKey && header.nonce === this.lastNonce) return;
    // The records seen so far are still there (none was rolled back): read only the new ones.
    const seenStands = this.lastNonce === 0 || this.recordNonce(this.lastKey) === this.lastNonce;
    const incremental = header.generation === this.generation && header.lastKey > this.lastKey && seenStands;
    if (!incremental) {
      this.maps.value.clear();
      this.maps.tree.clear();
      this.lastKey = 0;
      this.lastNonce = 0;
    }
    this.generation = header.generation;
    for (const { key, value } of this.table.getRange({ start: this.lastKey + 1 })) {
      if (key > header.lastKey) break; // written after the header was read: the next sync reads it
      this.readRecord(value);
    }
    this.lastKey = header.lastKey;
    this.lastNonce = header.nonce;
  }

  private recordNonce(key: number): number | undefined {
    const record = this.table.getBinaryFast(key);
    return record && record.length >= NONCE_BYTES ? record.readUInt32BE(0) : undefined;
  }

  /** Reads the entries of a record; an undecodable tail is skipped (its objects read as missing, which validate reports). */
  private readRecord(record: Buffer): void {
    let at = NONCE_BYTES;
    while (at < record.length) {
      const kindByte = record[at];
      const compressed = kindByte === COMPRESSED_KIND_BYTE.value || kindByte === COMPRESSED_KIND_BYTE.tree;
      const kind = kindByte === KIND_BYTE.value || kindByte === COMPRESSED_KIND_BYTE.value ? "value" : kindByte === KIND_BYTE.tree || kindByte === COMPRESSED_KIND_BYTE.tree ? "tree" : undefined;
      if (!kind || at + 1 + HASH_BYTES > record.length) return;
      const hash = record.toString("hex", at + 1, at + 1 + HASH_BYTES);
      at += 1 + HASH_BYTES;
      const pack = readVarint(record, at);
      if (!pack) return;
      const offset = readVarint(record, pack.next);
      if (!offset) return;
      const length = readVarint(record, offset.next);
      if (!length || pack.value === 0) return;
      at = length.next;
      if (!compressed) {
        this.maps[kind].set(hash, { pack: pack.value, offset: offset.value, length: length.value });
        continue;
      }
      const codec = readVarint(record, at);
      const rawSize = codec && readVarint(record, codec.next);
      if (!codec || !rawSize || codec.value === 0) return;
      at = rawSize.next;
      this.maps[kind].set(hash, { pack: pack.value, offset: offset.value, length: length.value, codec: codec.value, rawSize: rawSize.value });
    }
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

function locationOf(entry: JournalEntry): JournalLocation {
  return entry.codec ? { pack: entry.pack, offset: entry.offset, length: entry.length, codec: entry.codec, rawSize: entry.rawSize ?? 0 } : { pack: entry.pack, offset: entry.offset, length: entry.length };
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
