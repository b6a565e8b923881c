/**
 * Turns JSON Schema nodes into words for error messages: "an integer ≥ 1", "one of "never",
 * "always"", and the first sentence of the node's `description` (as webpack's schema-utils does).
 * A schema node may say it in its own words with the annotation `x-expected`.
 */
import type { PathSegment } from "./source.js";

export type SchemaNode = Record<string, unknown>;

const TYPE_WORDS: Record<string, string> = {
  string: "a string",
  integer: "an integer",
  number: "a number",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  null: "an empty value",
};

const PLURAL_TYPE_WORDS: Record<string, string> = {
  string: "strings",
  integer: "integers",
  number: "numbers",
  boolean: "booleans",
  object: "mappings",
  array: "lists",
};

function asNode(value: unknown): SchemaNode | undefined {
  return value !== null && typeof value === "object" && !Array.isArray(value) ? (value as SchemaNode) : undefined;
}

/** Follows a local `$ref` ("#/definitions/duration"); keywords beside the `$ref` win (description, default). */
export function resolveRef(node: SchemaNode, root: SchemaNode): SchemaNode {
  let current = node;
  for (let depth = 0; depth < 16 && typeof current.$ref === "string"; depth++) {
    const ref = current.$ref as string;
    if (!ref.startsWith("#")) return current;
    let target: unknown = root;
    for (const raw of ref.slice(1).split("/").filter(Boolean)) {
      const key = decodeURIComponent(raw).replace(/~1/g, "/").replace(/~0/g, "~");
      target = asNode(target)?.[key];
    }
    const resolved = asNode(target);
    if (!resolved) return current;
    const { $ref: _ref, ...beside } = current;
    current = { ...resolved, ...beside };
  }
  return current;
}

/** The schema node that governs the value at `path`, or undefined when it cannot be told statically. */
export function schemaAt(root: SchemaNode, path: readonly PathSegment[]): SchemaNode | undefined {
  return walk(root, root, path, 0);
}

function walk(node: SchemaNode, root: SchemaNode, path: readonly PathSegment[], index: number): SchemaNode | undefined {
  const here = resolveRef(node, root);
  if (index === path.length) return here;
  const segment = path[index]!;
  const child = childSchema(here, segment);
  if (child) {
    const found = walk(child, root, path, index + 1);
    if (found) return found;
  }
  for (const keyword of ["anyOf", "oneOf", "allOf"]) {
    const branches = here[keyword];
    if (!Array.isArray(branches)) continue;
    for (const branch of branches) {
      const branchNode = asNode(branch);
      const found = branchNode && walk(branchNode, root, path, index);
      if (found) return found;
    }
  }
  return undefined;
}

function childSchema(node: SchemaNode, segment: PathSegment): SchemaNode | undefined {
  if (typeof segment === "number") {
    const items = node.items;
    if (Array.isArray(items)) return asNode(items[segment]) ?? asNode(node.additionalItems);
    return asNode(items);
  }
  const property = asNode(asNode(node.properties)?.[segment]);
  if (property) return property;
  const patterns = asNode(node.patternProperties);
  if (patterns) for (const [pattern, schema] of Object.entries(patterns)) if (new RegExp(pattern, "u").test(segment)) return asNode(schema);
  return asNode(node.additionalProperties);
}

/** "an integer ≥ 1", "one of "never", "on-failure", "always"", "a list of strings". */
export function describeSchema(node: SchemaNode, root: SchemaNode): string {
  const schema = resolveRef(node, root);
  if (typeof schema["x-expected"] === "string") return schema["x-expected"];
  if ("const" in schema) return JSON.stringify(schema.const);
  if (Array.isArray(schema.enum)) return oneOf(schema.enum.map((value) => JSON.stringify(value)));
  for (const keyword of ["anyOf", "oneOf"]) {
    const branches = schema[keyword];
    if (Array.isArray(branches)) {
      const words = branches.map((branch) => (asNode(branch) ? describeSchema(branch as SchemaNode, root) : "anything"));
      return alternatives(words);
    }
  }
  const types = typeof schema.type === "string" ? [schema.type] : Array.isArray(schema.type) ? (schema.type as string[]) : [];
  if (types.length === 0) return "a valid value";
  // "a string, a number, true or false" rather than "…, a number or true or false".
  const words = types.flatMap((type) => (type === "boolean" && types.length > 1 ? ["true", "false"] : [describeType(type, schema, root)]));
  return alternatives(words);
}

function describeType(type: string, schema: SchemaNode, root: SchemaNode): string {
  if (type === "integer" || type === "number") return `${TYPE_WORDS[type]}${bounds(schema)}`;
  if (type === "string") {
    if (typeof schema.format === "string") return `a string in ${schema.format} format`;
    if (typeof schema.pattern === "string") return `a string matching /${schema.pattern}/`;
    if (schema.minLength === 1) return "a non-empty string";
    return "a string";
  }
  if (type === "array") {
    const items = asNode(schema.items);
    if (!items) return "a list";
    const resolved = resolveRef(items, root);
    if (Array.isArray(resolved.enum)) return `a list of ${oneOf(resolved.enum.map((value) => JSON.stringify(value)))}`;
    const itemType = typeof resolved.type === "string" ? PLURAL_TYPE_WORDS[resolved.type] : undefined;
    return itemType && !resolved.pattern ? `a list of ${itemType}` : "a list";
  }
  return TYPE_WORDS[type] ?? `a ${type}`;
}

function bounds(schema: SchemaNode): string {
  const min = typeof schema.minimum === "number" ? schema.minimum : undefined;
  const max = typeof schema.maximum === "number" ? schema.maximum : undefined;
  const parts: string[] = [];
  if (min !== undefined && max !== undefined) return ` from ${min} to ${max}`;
  if (min !== undefined) parts.push(`≥ ${min}`);
  if (typeof schema.exclusiveMinimum === "number") parts.push(`> ${schema.exclusiveMinimum}`);
  if (max !== undefined) parts.push(`≤ ${max}`);
  if (typeof schema.exclusiveMaximum === "number") parts.push(`< ${schema.exclusiveMaximum}`);
  return parts.length ? ` ${parts.join(" and ")}` : "";
}

function oneOf(values: string[]): string {
  return values.length === 1 ? values[0]! : `one of ${values.join(", ")}`;
}

function alternatives(words: string[]): string {
  const unique = [...new Set(words)];
  if (unique.length <= 1) return unique[0] ?? "a valid value";
  return `${unique.slice(0, -1).join(", ")} or ${unique[unique.length - 1]}`;
}

/** The first sentence of a node's description, or "". */
export function descriptionSentence(node: SchemaNode | undefined, root: SchemaNode): string {
  if (!node) return "";
  const description = resolveRef(node, root).description;
  if (typeof description !== "string" || !description.trim()) return "";
  const text = description.trim().replace(/\s+/g, " ");
  const match = /^.*?(?<!\b(?:e\.g|i\.e))[.!?](?=\s|$)/.exec(text); // "e.g. 127.0.0.1:7433" goes on: cut there, a message ended in "e.g."
  const sentence = match ? match[0] : text;
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}

/** A value as a message shows it: quoted strings, "a list", "a mapping", "nothing". */
export function renderValue(value: unknown): string {
  if (value === undefined || value === null) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 37)}…` : value;
    return JSON.stringify(shown);
  }
  return String(value);
}
