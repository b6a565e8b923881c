/**
 * Turns ajv's error list into one issue per problem, in words people use: "unknown option",
 * "must be an integer ≥ 1 (got "soon")", with the schema's description and a "did you mean".
 * anyOf/oneOf noise is folded away: when the value has the type one branch expects, only that
 * branch's complaints are kept; otherwise one "must be X or Y" message is given.
 */
import type { ErrorObject } from "ajv";
import { didYouMean } from "../suggest.js";
import { describeSchema, descriptionSentence, renderValue, resolveRef, schemaAt, type SchemaNode } from "./describe.js";
import { formatPath, pointerSegments, positionOf, type PathSegment } from "./source.js";
import type { ConfigIssue, ConfigSource } from "./types.js";

export interface ExplainContext {
  source: ConfigSource;
  /** Where the validated value sits in the document (["plugins", "retention"] for its options). */
  base: readonly PathSegment[];
  /** The schema the value was validated against. */
  schema: SchemaNode;
  /** The validated value. */
  data: unknown;
  /** What a key of this value is called in messages. */
  noun: "key" | "option";
}

/** Keywords about the value itself: several at one path become a single "must be …" message. */
const VALUE_KEYWORDS = new Set([
  "type", "const", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
  "pattern", "format", "minLength", "maxLength", "anyOf", "oneOf",
]);
/** Keywords a value of the wrong type fails with, in the branches of anyOf/oneOf that do not fit it. */
const TYPE_KEYWORDS = new Set(["type", "const", "enum"]);
/** Wrappers whose detail is in the errors of their sub-schemas. */
const WRAPPER_KEYWORDS = new Set(["if", "$ref"]);

export function explainErrors(errors: readonly ErrorObject[], context: ExplainContext): ConfigIssue[] {
  const relevant = errors.filter((error) => !(error.propertyName !== undefined && error.keyword !== "propertyNames"));
  const kept = foldComposites(relevant, context.schema);
  const issues: ConfigIssue[] = [];
  const valueGroups = new Map<string, ErrorObject[]>();
  for (const error of kept) {
    if (WRAPPER_KEYWORDS.has(error.keyword)) continue;
    if (VALUE_KEYWORDS.has(error.keyword)) {
      const group = valueGroups.get(error.instancePath) ?? [];
      group.push(error);
      valueGroups.set(error.instancePath, group);
      continue;
    }
    const issue = structuralIssue(error, context);
    if (issue) issues.push(issue);
  }
  for (const group of valueGroups.values()) issues.push(valueIssue(group, context));
  return sortIssues(issues);
}

/** Sorts issues in document order and drops repeats. */
export function sortIssues(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const sorted = [...issues].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col || a.path.localeCompare(b.path));
  const same = (a: ConfigIssue, b: ConfigIssue) => (["file", "line", "col", "path", "message"] as const).every((key) => a[key] === b[key]);
  return sorted.filter((issue, index) => sorted.findIndex((other) => same(issue, other)) === index);
}

function foldComposites(errors: ErrorObject[], root: SchemaNode): ErrorObject[] {
  let remaining = [...errors];
  const composites = errors.filter((error) => error.keyword === "anyOf" || error.keyword === "oneOf");
  // Outer composites first, so an inner one is judged only among what the outer one kept.
  composites.sort((a, b) => a.instancePath.length - b.instancePath.length);
  for (const composite of composites) {
    if (!remaining.includes(composite)) continue;
    const branches = Array.isArray(composite.schema) ? (composite.schema as unknown[]) : [];
    const fits = branches.some((branch) => branchFits(branch, composite.data, root));
    if (!fits) continue;
    const at = composite.instancePath;
    const rest = remaining.filter(
      (error) => error !== composite && !(error.instancePath === at && TYPE_KEYWORDS.has(error.keyword)),
    );
    // Keep the composite itself when the fitting branch left nothing to say.
    const saysSomething = rest.some((error) => error.instancePath === at || error.instancePath.startsWith(`${at}/`));
    if (saysSomething) remaining = rest;
  }
  return remaining;
}

function branchFits(branch: unknown, data: unknown, root: SchemaNode): boolean {
  if (branch === true) return true;
  if (branch === null || typeof branch !== "object") return false;
  const schema = resolveRef(branch as SchemaNode, root);
  const type = schema.type;
  if (type === undefined) return !("const" in schema) && !Array.isArray(schema.enum);
  const types = Array.isArray(type) ? type : [type];
  return types.some((name) => jsonTypeMatches(name, data));
}

function jsonTypeMatches(type: unknown, data: unknown): boolean {
  switch (type) {
    case "null":
      return data === null;
    case "array":
      return Array.isArray(data);
    case "object":
      return data !== null && typeof data === "object" && !Array.isArray(data);
    case "integer":
      return Number.isInteger(data);
    case "number":
      return typeof data === "number" && Number.isFinite(data);
    default:
      return typeof data === type;
  }
}

function segmentsOf(pointer: string, context: ExplainContext): PathSegment[] {
  return pointerSegments(pointer, context.data);
}

function issueAt(
  context: ExplainContext,
  relative: PathSegment[],
  target: "key" | "value",
  message: string,
  extra: { expected?: string; suggestion?: string } = {},
): ConfigIssue {
  const full = [...context.base, ...relative];
  const position = positionOf(context.source, full, target);
  return { ...position, path: formatPath(full), message, ...extra };
}

function structuralIssue(error: ErrorObject, context: ExplainContext): ConfigIssue | undefined {
  const at = segmentsOf(error.instancePath, context);
  const parent = (error.parentSchema ?? {}) as SchemaNode;
  switch (error.keyword) {
    case "additionalProperties": {
      const key = String(error.params.additionalProperty);
      return unknownKeyIssue(key, at, parent, context);
    }
    case "required": {
      const key = String(error.params.missingProperty);
      const schema = schemaAt(context.schema, [...at, key]);
      const expected = schema ? describeSchema(schema, context.schema) : undefined;
      const description = descriptionSentence(schema, context.schema);
      const message = `required ${context.noun} is missing.${expected ? ` Expected ${expected}.` : ""}${description ? ` ${description}` : ""}`;
      const issue = issueAt(context, at, "key", message, expected ? { expected } : {});
      return { ...issue, path: formatPath([...context.base, ...at, key]) };
    }
    case "propertyNames": {
      const name = String(error.params.propertyName);
      const namesSchema = (error.schema ?? {}) as SchemaNode;
      const expected = describeSchema(namesSchema, context.schema);
      return issueAt(context, [...at, name], "key", `invalid name. Expected ${expected}.`, { expected });
    }
    case "minItems":
      return countIssue(error, at, context, `must list at least ${plural(Number(error.params.limit), "item")}`);
    case "maxItems":
      return countIssue(error, at, context, `must list at most ${plural(Number(error.params.limit), "item")}`);
    case "uniqueItems":
      return countIssue(error, at, context, `lists the same item twice (items ${error.params.j} and ${error.params.i})`);
    case "minProperties":
      return countIssue(error, at, context, `must have at least ${plural(Number(error.params.limit), context.noun)}`);
    case "maxProperties":
      return countIssue(error, at, context, `must have at most ${plural(Number(error.params.limit), context.noun)}`);
    default:
      return countIssue(error, at, context, error.message ?? `fails the "${error.keyword}" rule`);
  }
}

function countIssue(error: ErrorObject, at: PathSegment[], context: ExplainContext, text: string): ConfigIssue {
  const description = descriptionSentence(schemaAt(context.schema, at) ?? (error.parentSchema as SchemaNode), context.schema);
  return issueAt(context, at, "value", `${text}.${description ? ` ${description}` : ""}`);
}

function unknownKeyIssue(key: string, at: PathSegment[], parent: SchemaNode, context: ExplainContext): ConfigIssue {
  const allowed = Object.keys((resolveRef(parent, context.schema).properties as SchemaNode | undefined) ?? {});
  const suggestion = didYouMean(key, allowed) ?? nestedHome(key, at, allowed, context);
  const expected = allowed.length ? `one of ${allowed.join(", ")}` : undefined;
  const noun = context.noun;
  let message = `unknown ${noun}.`;
  message += expected ? ` Expected ${expected}.` : ` No ${noun}s are accepted here.`;
  if (suggestion) message += ` Did you mean "${suggestion}"?`;
  return issueAt(context, [...at, key], "key", message, {
    ...(expected ? { expected } : {}),
    ...(suggestion ? { suggestion } : {}),
  });
}

/** A key written one level too high (`retention:` at the top) belongs under a sibling: "plugins.retention". */
function nestedHome(key: string, at: PathSegment[], allowed: string[], context: ExplainContext): string | undefined {
  for (const sibling of allowed) {
    const schema = schemaAt(context.schema, [...at, sibling]);
    const properties = schema && (resolveRef(schema, context.schema).properties as SchemaNode | undefined);
    if (properties && Object.hasOwn(properties, key)) return formatPath([...at, sibling, key]);
  }
  return undefined;
}

function valueIssue(group: ErrorObject[], context: ExplainContext): ConfigIssue {
  const first = group[0]!;
  const at = segmentsOf(first.instancePath, context);
  const schema = schemaAt(context.schema, at) ?? ((first.parentSchema ?? {}) as SchemaNode);
  const expected = describeSchema(schema, context.schema);
  const value = first.data;
  // A list item rarely has its own description; the list's says what the items are for.
  const description =
    descriptionSentence(schema, context.schema) ||
    (typeof at[at.length - 1] === "number" ? descriptionSentence(schemaAt(context.schema, at.slice(0, -1)), context.schema) : "");
  const suggestion = suggestValue(value, resolveRef(schema, context.schema));
  let message = `must be ${expected} (got ${renderValue(value)}).`;
  if (description) message += ` ${description}`;
  if (suggestion !== undefined) message += ` Did you mean ${JSON.stringify(suggestion)}?`;
  return issueAt(context, at, "value", message, { expected, ...(suggestion !== undefined ? { suggestion: String(suggestion) } : {}) });
}

const YAML_1_1_BOOLEANS: Record<string, boolean> = { yes: true, no: false, on: true, off: false, y: true, n: false, true: true, false: false };

/** "on_failure" → "on-failure"; "yes" → true (YAML 1.2 reads `yes` as a string). */
function suggestValue(value: unknown, schema: SchemaNode): string | boolean | undefined {
  if (typeof value !== "string") return undefined;
  if (Array.isArray(schema.enum)) {
    const strings = schema.enum.filter((item): item is string => typeof item === "string");
    return didYouMean(value, strings);
  }
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  if (types.includes("boolean")) return YAML_1_1_BOOLEANS[value.toLowerCase()];
  return undefined;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
