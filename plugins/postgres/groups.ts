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

/** An entry of a merged row: a stretch of the stored row's bytes, or a new entry to encode. */
interface Item {
  size: number;
  /** Kept: the stored row's bytes [start, end), the key at [keyStart, keyEnd). */
  start: number;
  end: number;
  keyStart: number;
  keyEnd: number;
  /** Written. */
  entry?: GroupEntry;
}

/** A row as merged: its first key, its entry count and its bytes. */
export interface MergedGroup {
  first: Buffer;
  n: number;
  bytes: Buffer;
}

/**
 * A row's entries after the writes that fall in it, `writes` sorted by key (value null: removed),
 * cut into rows of at most GROUP_BYTES of about equal size. The first piece keeps the row's
 * `first` (the lowest key it covers); the others start at their first key. Nothing left: no piece
 * (the row is deleted). The stored entries are not decoded: a merge copies their bytes (a journal
 * merge rewrites thousands of rows at once).
 */
export function mergeGroup(first: Buffer, stored: Buffer, writes: ReadonlyArray<{ key: Buffer; value: Buffer | null }>): MergedGroup[] {
  const items: Item[] = [];
  let w = 0;
  const write = (entry: { key: Buffer; value: Buffer | null }) => {
    if (entry.value !== null) items.push({ size: entrySize(entry as GroupEntry), start: 0, end: 0, keyStart: 0, keyEnd: 0, entry: entry as GroupEntry });
  };
  visitStored(stored, (start, keyStart, keyEnd, end) => {
    // Writes below this key come first; a write of this key replaces it.
    while (w < writes.length) {
      const order = stored.compare(writes[w]!.key, 0, writes[w]!.key.length, keyStart, keyEnd);
      if (order > 0) {
        write(writes[w++]!);
        continue;
      }
      if (order === 0) {
        write(writes[w++]!);
        return;
      }
      break;
    }
    items.push({ size: end - start, start, end, keyStart, keyEnd });
  });
  while (w < writes.length) write(writes[w++]!);
  if (items.length === 0) return [];
  let total = 0;
  for (const item of items) total += item.size;
  const pieces = Math.ceil(total / GROUP_BYTES);
  const target = total / pieces;
  const out: MergedGroup[] = [];
  let from = 0;
  let size = 0;
  const cut = (to: number) => {
    const bytes = Buffer.allocUnsafe(size);
    let at = 0;
    for (let i = from; i < to; i++) {
      const item = items[i]!;
      if (!item.entry) at += stored.copy(bytes, at, item.start, item.end);
      else {
        at = writeVarint(bytes, at, item.entry.key.length);
        at += item.entry.key.copy(bytes, at);
        at = writeVarint(bytes, at, item.entry.value.length);
        at += item.entry.value.copy(bytes, at);
      }
    }
    const head = items[from]!;
    const key = out.length === 0 ? first : head.entry ? head.entry.key : Buffer.from(stored.subarray(head.keyStart, head.keyEnd));
    out.push({ first: key, n: to - from, bytes });
    from = to;
    size = 0;
  };
  for (let i = 0; i < items.length; i++) {
    const bytes = items[i]!.size;
    if (i > from && (size + bytes > GROUP_BYTES || (size >= target && out.length < pieces - 1))) cut(i);
    size += bytes;
  }
  cut(items.length);
  return out;
}

/** The entries of a stored row as offsets: key [keyStart, keyEnd), entry [start, end). */
function visitStored(bytes: Buffer, visit: (start: number, keyStart: number, keyEnd: number, end: number) => void): void {
  let at = 0;
  while (at < bytes.length) {
    const keyLength = readVarint(bytes, at);
    if (!keyLength || keyLength.next + keyLength.value > bytes.length) return;
    const keyEnd = keyLength.next + keyLength.value;
    const valueLength = readVarint(bytes, keyEnd);
    if (!valueLength || valueLength.next + valueLength.value > bytes.length) return;
    const end = valueLength.next + valueLength.value;
    visit(at, keyLength.next, keyEnd, end);
    at = end;
  }
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
