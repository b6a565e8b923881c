/**
 * Table keys and values as PostgreSQL stores them: every key is a bytea whose byte order is the
 * order LMDB gives the same key (PostgreSQL compares bytea with memcmp, then by length, as LMDB
 * does), so ranges, reverse scans and limits agree across backends.
 *   - string: the UTF-8 bytes (UTF-8 byte order is code point order);
 *   - uint32: 4 bytes big-endian (numeric order);
 *   - binary: the bytes themselves;
 *   - tuple: lmdb's own order-preserving encoding (ordered-binary), element by element.
 * Values: binary as they are; structured with msgpackr (what lmdb-js stores them with).
 */
import { createRequire } from "node:module";
import { ApexError } from "../../core/errors.js";
import type { TableKey, TableKeyKind, TableValueKind } from "../../core/store/port.js";

const require = createRequire(import.meta.url);

let orderedBinary: typeof import("ordered-binary") | undefined;
function ordered(): typeof import("ordered-binary") {
  return (orderedBinary ??= require("ordered-binary") as typeof import("ordered-binary"));
}

interface Packer {
  pack(value: unknown): Buffer;
  unpack(bytes: Uint8Array): unknown;
}
let packer: Packer | undefined;
function structured(): Packer {
  if (!packer) {
    const { Packr } = require("msgpackr") as { Packr: new (options: object) => Packer };
    packer = new Packr({ useRecords: false, moreTypes: true });
  }
  return packer;
}

export function encodeKey(kind: TableKeyKind, key: TableKey, table: string): Buffer {
  switch (kind) {
    case "string":
      if (typeof key !== "string") break;
      return Buffer.from(key, "utf8");
    case "uint32": {
      if (typeof key !== "number" || !Number.isInteger(key) || key < 0 || key > 0xffffffff) break;
      const out = Buffer.allocUnsafe(4);
      out.writeUInt32BE(key, 0);
      return out;
    }
    case "binary":
      if (!(key instanceof Uint8Array)) break;
      return Buffer.isBuffer(key) ? key : Buffer.from(key as Uint8Array);
    case "tuple":
      if (!Array.isArray(key)) break;
      return Buffer.from(ordered().toBufferKey(key));
  }
  throw new ApexError("APEX_E_INTERNAL", `Table ${table}: ${describe(key)} is not a ${kind} key.`);
}

export function decodeKey(kind: TableKeyKind, bytes: Buffer): TableKey {
  switch (kind) {
    case "string":
      return bytes.toString("utf8");
    case "uint32":
      return bytes.readUInt32BE(0);
    case "binary":
      return bytes;
    case "tuple":
      return ordered().fromBufferKey(bytes) as Array<string | number>;
  }
}

export function encodeTableValue(kind: TableValueKind, value: unknown, table: string): Buffer {
  if (kind === "binary") {
    if (!(value instanceof Uint8Array)) throw new ApexError("APEX_E_INTERNAL", `Table ${table} holds bytes, not ${describe(value)}.`);
    return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  return structured().pack(value);
}

export function decodeTableValue(kind: TableValueKind, bytes: Buffer): unknown {
  return kind === "binary" ? bytes : structured().unpack(bytes);
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return "a byte string";
  if (Array.isArray(value)) return "an array";
  return typeof value === "string" ? JSON.stringify(value) : typeof value;
}
