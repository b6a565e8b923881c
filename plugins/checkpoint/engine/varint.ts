/**
 * Unsigned LEB128 varints (7 bits a byte, low bits first), as tree nodes, location records
 * and the index journal store their numbers. Values up to 2^53 (8 bytes cover 2^56).
 */

/** Bytes `value` takes. */
export function varintSize(value: number): number {
  let size = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 128)) size += 1;
  return size;
}

/** Writes `value` at `at`; returns the position after it. */
export function writeVarint(out: Uint8Array, at: number, value: number): number {
  let rest = value;
  let position = at;
  while (rest >= 0x80) {
    out[position++] = (rest & 0x7f) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[position++] = rest;
  return position;
}

/** `value` encoded on its own. */
export function varintBytes(value: number): Buffer {
  const out = Buffer.allocUnsafe(varintSize(value));
  writeVarint(out, 0, value);
  return out;
}

/** The varint at `at` and the position after it; undefined if it is truncated or longer than 8 bytes. */
export function readVarint(bytes: Uint8Array, at: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 8; i++) {
    if (at + i >= bytes.length) return undefined;
    const byte = bytes[at + i]!;
    value += (byte & 0x7f) * scale;
    if (!(byte & 0x80)) return { value, next: at + i + 1 };
    scale *= 128;
  }
  return undefined;
}
