/**
 * Grouped rows: how the PostgreSQL backend stores a table keyed by binary keys (the checkpoint
 * engine's hash indexes, `blobs` and `trees`: a 32-byte SHA-256 → a ~6-byte location). One row
 * per entry cost ~190 bytes an entry for ~40 bytes of content (the tuple header, the project and
 * table names, and a B-tree entry holding the key again, on pages random keys leave a third
 * empty); so the entries are packed, sorted, many to a row of `apex.groups`, keyed by the lowest
 * key the row covers:
 *   a row (first, entries) holds every entry whose key is ≥ first and < the next row's first;
 *   entries: varint key length, key, varint value length, value; in key order (bytea order:
 *   memcmp, then length, as LMDB orders keys).
 * A lookup reads the row with the greatest first ≤ key (one index probe, as before); a write
 * reads the rows its keys fall in, merges, and writes them back, cut into pieces of at most
 * GROUP_BYTES so that a row stays under PostgreSQL's TOAST threshold (~2 KB: stored in the heap
 * page, not in a second relation). Rows that become empty are deleted; others are not merged.
 */
import { varintSize, writeVarint, readVarint } from "../checkpoint/engine/varint.js";

/** The encoded entries of one row are cut at this size (a single larger entry is a row alone). */
export const GROUP_BYTES = 1800;

export interface GroupEntry {
  key: Buffer;
  value: Buffer;
}

function entrySize(entry: GroupEntry): number {
  return varintSize(entry.key.length) + entry.key.length + varintSize(entry.value.length) + entry.value.length;
}

export function encodeGroup(entries: readonly GroupEntry[]): Buffer {
  let size = 0;
  for (const entry of entries) size += entrySize(entry);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const { key, value } of entries) {
    at = writeVarint(out, at, key.length);
    at += key.copy(out, at);
    at = writeVarint(out, at, value.length);
    at += value.copy(out, at);
  }
  return out;
}

/**
 * Visits the entries of a row in order (key and value are views into `bytes`); `visit` returns
 * true to stop. A damaged tail is left out: its keys read as absent, which validation reports.
 */
function visitGroup(bytes: Buffer, visit: (key: Buffer, value: Buffer) => boolean | void): void {
  let at = 0;
  while (at < bytes.length) {
    const keyLength = readVarint(bytes, at);
    if (!keyLength || keyLength.next + keyLength.value > bytes.length) return;
    const key = bytes.subarray(keyLength.next, keyLength.next + keyLength.value);
    const valueLength = readVarint(bytes, keyLength.next + keyLength.value);
    if (!valueLength || valueLength.next + valueLength.value > bytes.length) return;
    const value = bytes.subarray(valueLength.next, valueLength.next + valueLength.value);
    at = valueLength.next + valueLength.value;
    if (visit(key, value)) return;
  }
}

export function decodeGroup(bytes: Buffer): GroupEntry[] {
  const entries: GroupEntry[] = [];
  visitGroup(bytes, (key, value) => void entries.push({ key, value }));
  return entries;
}

/** The value of `key` in a row, or undefined. */
export function findInGroup(bytes: Buffer, key: Buffer): Buffer | undefined {
  let found: Buffer | undefined;
  visitGroup(bytes, (candidate, value) => {
    const order = Buffer.compare(candidate, key);
    if (order === 0) found = value;
    return order >= 0;
  });
  return found;
}

/**
 * A row's entries after the writes that fall in it (value null: removed), cut into rows of at
 * most GROUP_BYTES of about equal size. The first piece keeps the row's `first` (the lowest key it
 * covers); the others start at their first key. Nothing left: no piece (the row is deleted).
 */
export function mergeGroup(first: Buffer, current: readonly GroupEntry[], writes: ReadonlyMap<string, { key: Buffer; value: Buffer | null }>): Array<{ first: Buffer; entries: GroupEntry[]; bytes: Buffer }> {
  const merged = new Map<string, GroupEntry>();
  for (const entry of current) merged.set(entry.key.toString("latin1"), entry);
  for (const [id, { key, value }] of writes) {
    if (value === null) merged.delete(id);
    else merged.set(id, { key, value });
  }
  const entries = [...merged.values()].sort((a, b) => Buffer.compare(a.key, b.key));
  if (entries.length === 0) return [];
  let total = 0;
  for (const entry of entries) total += entrySize(entry);
  const pieces = Math.ceil(total / GROUP_BYTES);
  const target = total / pieces;
  const out: Array<{ first: Buffer; entries: GroupEntry[]; bytes: Buffer }> = [];
  let piece: GroupEntry[] = [];
  let size = 0;
  for (const entry of entries) {
    const bytes = entrySize(entry);
    if (piece.length > 0 && (size + bytes > GROUP_BYTES || (size >= target && out.length < pieces - 1))) {
      out.push({ first: out.length === 0 ? first : piece[0]!.key, entries: piece, bytes: encodeGroup(piece) });
      piece = [];
      size = 0;
    }
    piece.push(entry);
    size += bytes;
  }
  out.push({ first: out.length === 0 ? first : piece[0]!.key, entries: piece, bytes: encodeGroup(piece) });
  return out;
}

/**
 * Sorted entries cut into rows of about `target` bytes (at most GROUP_BYTES), in order: the first
 * row starts at `first`, the others at their first key. For laying out a table at once.
 */
export function packGroups(first: Buffer, entries: readonly GroupEntry[], target: number): Array<{ first: Buffer; entries: GroupEntry[] }> {
  const out: Array<{ first: Buffer; entries: GroupEntry[] }> = [];
  let piece: GroupEntry[] = [];
  let size = 0;
  for (const entry of entries) {
    const bytes = entrySize(entry);
    if (piece.length > 0 && size + bytes > Math.min(target, GROUP_BYTES)) {
      out.push({ first: out.length === 0 ? first : piece[0]!.key, entries: piece });
      piece = [];
      size = 0;
    }
    piece.push(entry);
    size += bytes;
  }
  if (piece.length > 0 || out.length === 0) out.push({ first: out.length === 0 ? first : piece[0]!.key, entries: piece });
  return out;
}
