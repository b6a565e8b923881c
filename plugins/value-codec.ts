import { ApexError, MAX_DEPTH, tooDeepError } from "../core/errors.js";
import type { JsonValue } from "../core/store/store.js";

/**
 * The binary encoding of JSON values in the keyspace and in checkpoints: one tag byte, then
 * MessagePack in a canonical form, so that equal JSON has exactly one encoding:
 *   - object keys sorted by code point (the order of their UTF-8 bytes), members whose value
 *     is undefined left out (as JSON.stringify does);
 *   - integers up to 2^53 in the smallest MessagePack integer type, -0 as 0; every other
 *     number as a float64;
 *   - strings, arrays and maps with the smallest length header; strings as UTF-8, except
 *     that a lone surrogate (which UTF-8 cannot hold and JSON escapes) is written as its
 *     3-byte generalised UTF-8 sequence (WTF-8), so no string is changed;
 *   - nil, false, true; nothing else (no binary, extension or float32 types).
 * Because a record in the keyspace is the same bytes as the value object a checkpoint
 * stores, a checkpoint hashes changed records as they are instead of decoding and
 * re-encoding them. The tag (0xc1, a byte MessagePack never uses and UTF-8 never starts
 * with) tells these apart from the formats written before it: lmdb-js's msgpack records in
 * the keyspace, canonical JSON text in value objects. Both are still read.
 */
export const VALUE_TAG = 0xc1;

declare global {
  interface String {
    /** ES2024, in every Node this runs on (>= 20.5); TypeScript's lib here is older. */
    isWellFormed(): boolean;
    /** ES2024 too: each lone surrogate as U+FFFD. */
    toWellFormed(): string;
  }
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

// MAX_DEPTH and tooDeepError live in core/errors.ts, so that the control socket's protocol can
// refuse a too deep request without loading this module.
export { MAX_DEPTH, tooDeepError };

/**
 * Encodings are written straight into a slab and handed out as views of it: a keyspace import
 * encodes hundreds of thousands of values, and a Buffer (or a copy) apiece cost more than the
 * encoding. A slab is freed once no encoding in it is referenced; encodings are short-lived
 * (until their commit or flush).
 */
const SLAB_BYTES = 256 * 1024;
let scratch = Buffer.allocUnsafeSlow(0); // the first encoding takes a slab (not every command encodes)
/** Where the encoding being written starts in `scratch`, and the position being written. */
let start = 0;
let at = 0;

function ensure(bytes: number): void {
  if (at + bytes <= scratch.length) return;
  // A new slab, with the part of this encoding written so far moved to its start.
  const written = at - start;
  const slab = Buffer.allocUnsafeSlow(Math.max(SLAB_BYTES, (written + bytes) * 2));
  scratch.copy(slab, 0, start, at);
  scratch = slab;
  start = 0;
  at = written;
}

/** Thrown inside the encoder, which keeps no path: the caller finds where (describeNotJson). */
export class NotJsonError extends Error {}
const NOT_JSON = new NotJsonError("not JSON");

/**
 * The canonical encoding of a JSON value (with its tag). Throws NotJsonError for what JSON
 * cannot hold: NaN, Infinity, undefined (other than as an object member), functions,
 * symbols, bigints, binary data and class instances.
 */
export function encodeValue(value: unknown): Buffer {
  start = at;
  try {
    ensure(1);
    scratch[at++] = VALUE_TAG;
    write(value, 0);
  } catch (error) {
    at = start; // the slab space of a refused value is reused
    throw error;
  }
  return scratch.subarray(start, at);
}

/** Writes `value`, which sits inside `depth` arrays and objects. */
function write(value: unknown, depth: number): void {
  switch (typeof value) {
    case "string":
      writeString(value);
      return;
    case "number":
      writeNumber(value);
      return;
    case "boolean":
      ensure(1);
      scratch[at++] = value ? 0xc3 : 0xc2;
      return;
    case "object": {
      if (value === null) {
        ensure(1);
        scratch[at++] = 0xc0;
        return;
      }
      if (depth >= MAX_DEPTH) throw tooDeepError();
      if (Array.isArray(value)) {
        writeLength(value.length, 0x90, 16, 0xdc);
        for (let i = 0; i < value.length; i++) {
          const item: unknown = value[i];
          if (item === undefined) throw NOT_JSON;
          write(item, depth + 1);
        }
        return;
      }
      const prototype = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null) throw NOT_JSON;
      const record = value as Record<string, unknown>;
      const keys = Object.keys(record);
      let sorted = true;
      let count = 0;
      for (let i = 0; i < keys.length; i++) {
        if (record[keys[i]!] !== undefined) count += 1;
        if (i > 0 && sorted && compareCodePoints(keys[i - 1]!, keys[i]!) > 0) sorted = false;
      }
      if (!sorted) keys.sort(compareCodePoints);
      writeLength(count, 0x80, 16, 0xde);
      for (const key of keys) {
        const item = record[key];
        if (item === undefined) continue;
        writeString(key);
        write(item, depth + 1);
      }
      return;
    }
    default:
      throw NOT_JSON;
  }
}

/**
 * The smallest length header: `fixed` | length below `fixedLimit`; for strings (which have
 * one, `wide` - 1 with an 8-bit length) below 256; else `wide` (16-bit) or `wide` + 1 (32-bit).
 */
function writeLength(length: number, fixed: number, fixedLimit: number, wide: number): void {
  ensure(5);
  if (length < fixedLimit) scratch[at++] = fixed | length;
  else if (fixed === 0xa0 && length < 0x100) {
    scratch[at++] = wide - 1;
    scratch[at++] = length;
  } else if (length < 0x10000) {
    scratch[at++] = wide;
    scratch.writeUInt16BE(length, at);
    at += 2;
  } else {
    scratch[at++] = wide + 1;
    scratch.writeUInt32BE(length, at);
    at += 4;
  }
}

function writeNumber(value: number): void {
  ensure(9);
  if (!Number.isFinite(value)) throw NOT_JSON;
  if (!Number.isInteger(value) || value > MAX_SAFE || value < -MAX_SAFE) {
    scratch[at++] = 0xcb;
    scratch.writeDoubleBE(value, at);
    at += 8;
    return;
  }
  if (value >= 0) {
    if (value < 0x80) scratch[at++] = value; // also -0
    else if (value < 0x100) {
      scratch[at++] = 0xcc;
      scratch[at++] = value;
    } else if (value < 0x10000) {
      scratch[at++] = 0xcd;
      scratch.writeUInt16BE(value, at);
      at += 2;
    } else if (value < 0x1_0000_0000) {
      scratch[at++] = 0xce;
      scratch.writeUInt32BE(value, at);
      at += 4;
    } else {
      scratch[at++] = 0xcf;
      scratch.writeUInt32BE(Math.floor(value / 0x1_0000_0000), at);
      scratch.writeUInt32BE(value >>> 0, at + 4);
      at += 8;
    }
    return;
  }
  if (value >= -32) scratch[at++] = 0x100 + value;
  else if (value >= -0x80) {
    scratch[at++] = 0xd0;
    scratch.writeInt8(value, at++);
  } else if (value >= -0x8000) {
    scratch[at++] = 0xd1;
    scratch.writeInt16BE(value, at);
    at += 2;
  } else if (value >= -0x8000_0000) {
    scratch[at++] = 0xd2;
    scratch.writeInt32BE(value, at);
    at += 4;
  } else {
    scratch[at++] = 0xd3;
    scratch.writeBigInt64BE(BigInt(value), at);
    at += 8;
  }
}

function writeString(text: string): void {
  const length = text.length;
  // Short ASCII (keys, most small strings): written here, without a call into C++.
  if (length < 32) {
    ensure(1 + length);
    let i = 0;
    for (; i < length; i++) {
      const code = text.charCodeAt(i);
      if (code >= 0x80) break;
      scratch[at + 1 + i] = code;
    }
    if (i === length) {
      scratch[at] = 0xa0 | length;
      at += 1 + length;
      return;
    }
  }
  if (!text.isWellFormed()) {
    const bytes = wtf8(text); // a lone surrogate, which UTF-8 cannot hold
    writeLength(bytes.length, 0xa0, 32, 0xda);
    ensure(bytes.length);
    scratch.set(bytes, at);
    at += bytes.length;
    return;
  }
  const bytes = Buffer.byteLength(text, "utf8");
  writeLength(bytes, 0xa0, 32, 0xda);
  ensure(bytes);
  at += scratch.write(text, at, bytes, "utf8");
}

/** Generalised UTF-8: UTF-8, with a lone surrogate as the 3-byte sequence of its code unit. */
function wtf8(text: string): Buffer {
  const out = Buffer.allocUnsafe(text.length * 3);
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const low = text.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
        i += 1;
      }
    }
    if (code < 0x80) out[n++] = code;
    else if (code < 0x800) {
      out[n++] = 0xc0 | (code >> 6);
      out[n++] = 0x80 | (code & 0x3f);
    } else if (code < 0x10000) {
      out[n++] = 0xe0 | (code >> 12);
      out[n++] = 0x80 | ((code >> 6) & 0x3f);
      out[n++] = 0x80 | (code & 0x3f);
    } else {
      out[n++] = 0xf0 | (code >> 18);
      out[n++] = 0x80 | ((code >> 12) & 0x3f);
      out[n++] = 0x80 | ((code >> 6) & 0x3f);
      out[n++] = 0x80 | (code & 0x3f);
    }
  }
  return out.subarray(0, n);
}

/**
 * Orders strings by Unicode code point, which is also the order of their UTF-8 bytes
 * (LMDB's key order). Plain `<` compares UTF-16 code units and puts U+10000.. before U+E000..
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** True when `bytes` is in this encoding (starts with its tag). */
export function isEncodedValue(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === VALUE_TAG;
}

/**
 * Decodes an encoded value; throws on anything that is not one (a wrong tag, a type it never writes, a short or long buffer).
 * `slice`: a string's UTF-8 bytes (buffer[start, end)) as a string the caller has at hand, or
 * undefined to decode them. A whole-state read (the checkpoint engine's StringSlicer) takes
 * long ASCII strings as slices of a decompressed pack's text: V8 shares their characters.
 */
export function decodeValue(bytes: Uint8Array, size: number = bytes.length, slice?: (buffer: Buffer, start: number, end: number) => string | undefined): JsonValue {
  // lmdb-js hands decoders a view of a larger shared buffer, with the record's size.
  const buffer = size === bytes.length && Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, size);
  if (buffer.length === 0 || buffer[0] !== VALUE_TAG) throw new Error("not an encoded value (no tag)");
  const reader: Reader = { buffer, at: 1, open: 0, slice };
  const value = read(reader, 0);
  if (reader.at !== buffer.length) throw new Error(`${buffer.length - reader.at} byte${buffer.length - reader.at === 1 ? "" : "s"} after the value`);
  return value;
}

interface Reader {
  buffer: Buffer;
  at: number;
  /** After readItem: how many items (or members) the array (or map) it returned still needs; 0 after anything else. */
  open: number;
  slice: ((buffer: Buffer, start: number, end: number) => string | undefined) | undefined;
}

/**
 * Nesting that is read by recursion; deeper parts are read with an explicit stack instead, so
 * a damaged record, or one stored before MAX_DEPTH was enforced, cannot exhaust the call stack
 * however deep it nests. (Recursion is the faster of the two for the usual shallow values.)
 */
const RECURSION_DEPTH = 64;

/** Reads one value that sits inside `depth` arrays and maps. */
function read(reader: Reader, depth: number): JsonValue {
  const value = readItem(reader);
  const length = reader.open;
  if (length === 0) return value;
  if (depth >= RECURSION_DEPTH) return fillNested(reader, value as Container, length);
  if (Array.isArray(value)) {
    for (let i = 0; i < length; i++) value[i] = read(reader, depth + 1);
    return value;
  }
  const map = value as { [key: string]: JsonValue };
  for (let i = 0; i < length; i++) setMember(map, readKey(reader), read(reader, depth + 1));
  return map;
}

type Container = JsonValue[] | { [key: string]: JsonValue };

/** An array or map being filled in by fillNested. */
interface Open {
  target: Container;
  isArray: boolean;
  length: number;
  index: number;
}

/** Fills `root` (an array or map of `length` items) without recursion. */
function fillNested(reader: Reader, root: Container, length: number): JsonValue {
  const stack: Open[] = [{ target: root, isArray: Array.isArray(root), length, index: 0 }];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.index === frame.length) {
      stack.pop();
      continue;
    }
    let item: JsonValue;
    if (frame.isArray) {
      item = readItem(reader);
      (frame.target as JsonValue[])[frame.index++] = item;
    } else {
      const key = readKey(reader);
      item = readItem(reader);
      setMember(frame.target as { [key: string]: JsonValue }, key, item);
      frame.index++;
    }
    if (reader.open > 0) stack.push({ target: item as Container, isArray: Array.isArray(item), length: reader.open, index: 0 });
  }
  return root;
}

function readKey(reader: Reader): string {
  const key = readItem(reader);
  if (typeof key !== "string") throw new Error("a map key that is not a string");
  return key;
}

function setMember(map: { [key: string]: JsonValue }, key: string, value: JsonValue): void {
  // As JSON.parse does: "__proto__" is an own property, not the prototype.
  if (key === "__proto__") Object.defineProperty(map, key, { value, enumerable: true, writable: true, configurable: true });
  else map[key] = value;
}

function need(reader: Reader, bytes: number): number {
  const start = reader.at;
  if (start + bytes > reader.buffer.length) throw new Error("truncated value");
  reader.at = start + bytes;
  return start;
}

/** One scalar, or an array or map still to be filled (its length left in reader.open). */
function readItem(reader: Reader): JsonValue {
  const buffer = reader.buffer;
  reader.open = 0;
  const type = buffer[need(reader, 1)]!;
  if (type < 0x80) return type;
  if (type >= 0xe0) return type - 0x100;
  if (type >= 0xa0 && type < 0xc0) return readString(reader, type & 0x1f);
  if (type >= 0x90 && type < 0xa0) return readArray(reader, type & 0x0f);
  if (type < 0x90) return readMap(reader, type & 0x0f);
  switch (type) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xcb:
      return buffer.readDoubleBE(need(reader, 8));
    case 0xcc:
      return buffer[need(reader, 1)]!;
    case 0xcd:
      return buffer.readUInt16BE(need(reader, 2));
    case 0xce:
      return buffer.readUInt32BE(need(reader, 4));
    case 0xcf: {
      const start = need(reader, 8);
      return buffer.readUInt32BE(start) * 0x1_0000_0000 + buffer.readUInt32BE(start + 4);
    }
    case 0xd0:
      return buffer.readInt8(need(reader, 1));
    case 0xd1:
      return buffer.readInt16BE(need(reader, 2));
    case 0xd2:
      return buffer.readInt32BE(need(reader, 4));
    case 0xd3:
      return Number(buffer.readBigInt64BE(need(reader, 8)));
    case 0xd9:
      return readString(reader, buffer[need(reader, 1)]!);
    case 0xda:
      return readString(reader, buffer.readUInt16BE(need(reader, 2)));
    case 0xdb:
      return readString(reader, buffer.readUInt32BE(need(reader, 4)));
    case 0xdc:
      return readArray(reader, buffer.readUInt16BE(need(reader, 2)));
    case 0xdd:
      return readArray(reader, buffer.readUInt32BE(need(reader, 4)));
    case 0xde:
      return readMap(reader, buffer.readUInt16BE(need(reader, 2)));
    case 0xdf:
      return readMap(reader, buffer.readUInt32BE(need(reader, 4)));
    default:
      throw new Error(`type byte 0x${type.toString(16)} at ${reader.at - 1} is not part of the value encoding`);
  }
}

function readString(reader: Reader, length: number): string {
  const start = need(reader, length);
  const buffer = reader.buffer;
  const end = start + length;
  if (length < 16) {
    let out = "";
    for (let i = start; i < end; i++) {
      const byte = buffer[i]!;
      if (byte >= 0x80) return decodeUtf8(buffer, start, end);
      out += String.fromCharCode(byte);
    }
    return out;
  }
  return (reader.slice && reader.slice(buffer, start, end)) ?? decodeUtf8(buffer, start, end);
}

function decodeUtf8(buffer: Buffer, start: number, end: number): string {
  // 0xed followed by 0xa0..0xbf starts an encoded surrogate, which toString would replace (by
  // U+FFFD). Not looked for with buffer.indexOf: on a view of lmdb-js's 16 MB shared buffer it
  // took ~0.3 ms a call, whatever the string's length.
  const text = buffer.toString("utf8", start, end);
  if (!text.includes("\ufffd")) return text;
  let at = start;
  while (at < end && buffer[at] !== 0xed) at++;
  if (at === end) return text;
  let out = "";
  let i = start;
  while (i < end) {
    const byte = buffer[i]!;
    let code: number;
    let size: number;
    if (byte < 0x80) {
      code = byte;
      size = 1;
    } else if (byte >= 0xc2 && byte < 0xe0) {
      code = byte & 0x1f;
      size = 2;
    } else if (byte >= 0xe0 && byte < 0xf0) {
      code = byte & 0x0f;
      size = 3;
    } else if (byte >= 0xf0 && byte < 0xf5) {
      code = byte & 0x07;
      size = 4;
    } else throw new Error(`invalid UTF-8 at ${i}`);
    if (i + size > end) throw new Error(`invalid UTF-8 at ${i}`);
    for (let k = 1; k < size; k++) {
      const next = buffer[i + k]!;
      if ((next & 0xc0) !== 0x80) throw new Error(`invalid UTF-8 at ${i}`);
      code = (code << 6) | (next & 0x3f);
    }
    out += String.fromCodePoint(code);
    i += size;
  }
  return out;
}

function readArray(reader: Reader, length: number): JsonValue[] {
  if (length > reader.buffer.length - reader.at) throw new Error("truncated value");
  reader.open = length;
  return new Array(length);
}

function readMap(reader: Reader, length: number): { [key: string]: JsonValue } {
  if (length * 2 > reader.buffer.length - reader.at) throw new Error("truncated value");
  reader.open = length;
  return {};
}

/** The error for the first part of `value` that is not JSON (undefined if all of it is). */
export function describeNotJson(value: unknown, where: string, depth = 0, within = new Map<object, string>()): ApexError | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : notJson(where, `the number ${String(value)}`);
    case "object": {
      if (value === null) return undefined;
      // A value that contains itself is said as such, not as one nested too deep.
      const ancestor = within.get(value);
      if (ancestor !== undefined) return notJson(where, `a circular reference (back to ${ancestor || "the value itself"})`);
      if (depth >= MAX_DEPTH) return tooDeepError(where);
      within.set(value, where);
      const found = describeNotJsonWithin(value, where, depth, within);
      within.delete(value);
      return found;
    }
    default:
      return notJson(where, `a ${typeof value}`);
  }
}

/** describeNotJson of the items of an array or object, `within` holding it and its ancestors (each with where it is). */
function describeNotJsonWithin(value: object, where: string, depth: number, within: Map<object, string>): ApexError | undefined {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = describeNotJson(value[i], `${where}[${i}]`, depth + 1, within);
      if (found) return found;
    }
    return undefined;
  }
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return notJson(where, `an instance of ${value.constructor?.name ?? "a class"}`);
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record).sort(compareCodePoints)) {
    if (record[key] === undefined) continue;
    const found = describeNotJson(record[key], `${where}.${key}`, depth + 1, within);
    if (found) return found;
  }
  return undefined;
}

function notJson(where: string, what: string): ApexError {
  return new ApexError("APEX_E_BAD_JSON", `Not a JSON value${where ? ` at ${where}` : ""}: ${what}.`);
}

/** encodeValue, with what it refuses as APEX_E_BAD_JSON naming where in the value it is. */
export function encodeJson(value: unknown): Buffer {
  try {
    return encodeValue(value);
  } catch (error) {
    if (!(error instanceof NotJsonError)) throw error;
    throw describeNotJson(value, "") ?? new ApexError("APEX_E_BAD_JSON", "Not a JSON value.");
  }
}
