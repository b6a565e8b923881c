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
import { BUILTIN_PLUGIN_NAMES, configSchema, precompiledSchemas, precompiledValidator } from "./schemas.js";
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


/**
 * Compiles a JSON Schema (draft-07), caching by object identity. Throws
 * ApexError("APEX_E_PLUGIN_SCHEMA") when the schema itself is broken (not a valid JSON Schema,
 * or a `$ref` that does not resolve): that is the schema author's fault, not the user's.
 */
export function compileSchema(schema: object, options: { trusted?: boolean } = {}): ValidateFunction {
  // APEX's own schemas come with a validator built beforehand from exactly their text (schemas.ts).
  const cached = compiled.get(schema) ?? precompiledSchemas.get(schema);
  if (cached) return cached;
  const ajv = options.trusted ? (trustedAjv ??= createAjv({ trusted: true })) : (sharedAjv ??= createAjv());
  if (!options.trusted && !ajv.validateSchema(schema)) {
    const problems = (ajv.errors ?? []).map((error) => `${error.instancePath || "/"} ${error.message ?? "is invalid"}`);
    throw new ApexError("APEX_E_PLUGIN_SCHEMA", `The options schema is not a valid JSON Schema: ${[...new Set(problems)].join("; ")}.`, { details: { errors: ajv.errors ?? [] } });
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

let configValidator: ValidateFunction | undefined;

/**
 * The validator of the document's shape. The built-in plugins' options are `$ref`s to their
 * own schemas so that editors complete them; here they resolve to "any mapping", because the
 * options are checked in a second step, against the plugin's schema, with their own messages.
 */
export function documentValidator(): ValidateFunction {
  if (configValidator) return configValidator;
  const validate = precompiledValidator("apex.config.schema.json");
  if (validate) return (configValidator = validate);
  return (configValidator = documentAjv().compile(configSchema()));
}

/**
 * The ajv instance the document validator is compiled with (`source`: keeping the code, for
 * precompiling): the built-in plugins' `$ref`s resolve to "any mapping" (see documentValidator).
 */
export function documentAjv(options: { source?: boolean } = {}): AjvInstance {
  const ajv = createAjv({ trusted: true, ...options });
  for (const name of BUILTIN_PLUGIN_NAMES) {
    // The schemas' $ids are relative so that editors resolve the $refs next to the local file.
    ajv.addSchema({ $id: `plugins/${name}.schema.json`, type: "object" });
  }
  return ajv;
}
