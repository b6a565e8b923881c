/**
 * Schema checks with positions: the one place that runs ajv. Used for apex.config.yaml, the
 * built-in plugins' options, and (by the plugin loader) third-party plugins' options.
 */
import { createRequire } from "node:module";
import type AjvModule from "ajv";
import type { ValidateFunction } from "ajv";
import { ApexError, withDetail } from "../errors.js";
import type { SchemaNode } from "./describe.js";
import { explainErrors } from "./explain.js";
import type { PathSegment } from "./source.js";
import type { ConfigIssue, ConfigSource } from "./types.js";

export type { ConfigIssue, ConfigSource } from "./types.js";

type AjvClass = typeof AjvModule.default;
type AjvInstance = InstanceType<AjvClass>;

// ajv is loaded only when a schema has to be compiled: APEX's own schemas come precompiled
// (see schemas.ts), and loading ajv costs a command ~50 ms.
let AjvLoaded: AjvClass | undefined;
function ajvClass(): AjvClass {
  AjvLoaded ??= (createRequire(import.meta.url)("ajv") as { default: AjvClass }).default;
  return AjvLoaded;
}

/**
 * Options every APEX schema is compiled with: all errors (not just the first), schema
 * `default`s filled in, no type coercion ("5" stays a string and is reported), unknown
 * keywords and formats tolerated (no format is checked), nothing logged. `trusted`: the
 * schema itself is not checked against the meta-schema (APEX's own schemas). `source`: keep
 * the generated code, for precompiling (scripts/compile-schemas.mjs).
 */
export function createAjv(options: { trusted?: boolean; source?: boolean } = {}): AjvInstance {
  const Ajv = ajvClass();
  return new Ajv({
    // APEX's own schemas are checked against the draft-07 meta-schema by the test suite;
    // compiling the meta-schema on every command would cost more than the rest of the config.
    validateSchema: !options.trusted,
    allErrors: true,
    verbose: true,
    useDefaults: true,
    coerceTypes: false,
    // YAML reads `.inf`, `.nan` and `1e400` as numbers; no option means them (a timer of Infinity fires at once).
    strictNumbers: true,
    strict: false,
    allowUnionTypes: true,
    logger: false,
    ...(options.source ? { code: { source: true } } : {}),
  });
}

let sharedAjv: AjvInstance | undefined;
let trustedAjv: AjvInstance | undefined;
const compiled = new WeakMap<object, ValidateFunction>();

/** Uses `validate`, compiled beforehand from exactly this schema, instead of compiling it. */
export function usePrecompiled(schema: object, validate: ValidateFunction): void {
  compiled.set(schema, validate);
}

/**
 * Compiles a JSON Schema (draft-07), caching by object identity. Throws
 * ApexError("APEX_E_PLUGIN_SCHEMA") when the schema itself is broken (not a valid JSON Schema,
 * or a `$ref` that does not resolve): that is the schema author's fault, not the user's.
 */
export function compileSchema(schema: object, options: { trusted?: boolean } = {}): ValidateFunction {
  const cached = compiled.get(schema);
  if (cached) return cached;
  const ajv = options.trusted ? (trustedAjv ??= createAjv({ trusted: true })) : (sharedAjv ??= createAjv());
  if (!options.trusted && !ajv.validateSchema(schema)) {
    const problems = (ajv.errors ?? []).map((error) => `${error.instancePath || "/"} ${error.message ?? "is invalid"}`);
    throw new ApexError("APEX_E_PLUGIN_SCHEMA", `The options schema is not a valid JSON Schema: ${[...new Set(problems)].join("; ")}.`, {
      details: { errors: ajv.errors ?? [] },
    });
  }
  // Two schema objects may carry the same $id (a schema read twice); the newest one wins.
  const id = (schema as { $id?: unknown }).$id;
  if (typeof id === "string") ajv.removeSchema(id);
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ApexError("APEX_E_PLUGIN_SCHEMA", withDetail(`The options schema cannot be compiled`, reason), { cause: error });
  }
  compiled.set(schema, validate);
  return validate;
}

/**
 * Checks `options` against `schema` and returns every problem, positioned in the config file
 * (`at.path` is where the options sit, e.g. ["plugins", "my-plugin"]). Schema defaults are
 * filled into `options` in place, unless it is frozen (as the options in a loaded Config are):
 * then a copy is checked; use `resolveOptions` to get that copy with its defaults.
 */
export function validateOptions(schema: object, options: unknown, at: { source: ConfigSource; path: (string | number)[] }, compile: { trusted?: boolean } = {}): ConfigIssue[] {
  const validate = compileSchema(schema, compile);
  // Filling a default into a frozen object would throw; check a copy instead.
  const data = containsFrozen(options) ? structuredClone(options) : options;
  if (validate(data)) return [];
  return explainErrors(validate.errors ?? [], { source: at.source, base: at.path, schema: schema as SchemaNode, data, noun: "option" });
}

/** Like validateOptions, and returns a copy of `options` with the schema's defaults filled in. */
export function resolveOptions<T = Record<string, unknown>>(schema: object, options: unknown, at: { source: ConfigSource; path: (string | number)[] }): { options: T; issues: ConfigIssue[] } {
  const copy = options === undefined ? {} : structuredClone(options);
  return { options: copy as T, issues: validateOptions(schema, copy, at) };
}

/** Validates a whole document (or a section of it) against an already compiled validator. */
export function validateWith(
  validate: ValidateFunction,
  data: unknown,
  at: { source: ConfigSource; path: PathSegment[]; schema: object; noun: "key" | "option" },
): ConfigIssue[] {
  if (validate(data)) return [];
  return explainErrors(validate.errors ?? [], { source: at.source, base: at.path, schema: at.schema as SchemaNode, data, noun: at.noun });
}

function containsFrozen(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  return Object.isFrozen(value) || Object.values(value).some(containsFrozen);
}

/** One line per issue: `apex.config.yaml:7:5: plugins.retention.keep_lst: unknown option. …` */
export function formatIssues(issues: ConfigIssue[]): string {
  return issues
    .map((issue) => {
      const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.col}` : issue.file;
      return `${where}: ${issue.path ? `${issue.path}: ` : ""}${issue.message}`;
    })
    .join("\n");
}

/** The error to throw for config issues: all of them in the message, and as data in `details.errors`. */
export function configError(issues: ConfigIssue[], code: "APEX_E_CONFIG" | "APEX_E_YAML" = "APEX_E_CONFIG"): ApexError {
  return new ApexError(code, formatIssues(issues), { details: { errors: issues } });
}
