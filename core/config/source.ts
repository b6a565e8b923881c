import { isAbsolute, relative } from "node:path";
import { createRequire } from "node:module";
import type * as Yaml from "yaml";
import type { Node, YAMLMap } from "yaml";
import type { ConfigIssue, ConfigSource, SourcePosition } from "./types.js";

/**
 * yaml, at its first use (a supervisor handed its config, handoff.ts, parses nothing unless a
 * message needs a position), from the one file the build bundles it into (dist/vendor/yaml.cjs,
 * scripts/bundle.mjs): Node loads the package's 73 files in ~70 ms of a core, the bundle in ~15,
 * and most commands read a config. The package itself when there is no bundle, or when it was
 * made from another version of yaml than the one installed (a dependency updated, not rebuilt).
 */
let loaded: typeof Yaml | undefined;
export function yaml(): typeof Yaml {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  let vendored: { yaml: typeof Yaml; version: string } | undefined;
  try {
    vendored = require("../../vendor/yaml.cjs") as { yaml: typeof Yaml; version: string };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "MODULE_NOT_FOUND") throw error;
  }
  const installed = vendored ? (require("yaml/package.json") as { version: string }).version : undefined;
  return (loaded = vendored && vendored.version === installed ? vendored.yaml : (require("yaml") as typeof Yaml));
}

export type PathSegment = string | number;

/** Names a file for messages: relative to `cwd` when inside it, else absolute. */
export function displayPath(file: string, cwd: string = process.cwd()): string {
  const fromCwd = relative(cwd, file);
  return fromCwd && !fromCwd.startsWith("..") && !isAbsolute(fromCwd) ? fromCwd : file;
}

/**
 * Parses YAML keeping source positions. Syntax errors come back as issues (never thrown),
 * so a caller can report them the same way as schema errors.
 */
export function parseSource(text: string, file: string, cwd?: string): { source: ConfigSource; syntaxIssues: ConfigIssue[] } {
  const lineCounter = new (yaml().LineCounter)();
  // `merge` lets agents share settings with `<<: *defaults`, as in YAML 1.1. logLevel "error": yaml's warnings went to stderr
  // as Node process warnings ("(node:123) Warning: Keys with collection values will be stringified…"); the checks say what is wrong.
  const doc = yaml().parseDocument(text, { lineCounter, prettyErrors: false, merge: true, logLevel: "error" });
  const source: ConfigSource = { file, displayFile: displayPath(file, cwd), text, doc, lineCounter };
  // A stack overflow (deep nesting) is reported once, not again at every level it unwound through.
  const syntaxIssues = doc.errors.filter((error, index, all) => !/call stack size/i.test(error.message) || all.findIndex((each) => /call stack size/i.test(each.message)) === index).map((error) => ({
    ...positionAtOffset(source, error.pos[0]),
    path: "",
    // yaml's own advice for a second document ("please use YAML.parseAllDocuments()") is its API's, not the user's.
    message: error.code === "MULTIPLE_DOCS" ? "A second YAML document starts here (`---`); a config file is one document: merge the two, or remove the second." : syntaxMessage(error.message),
    ...(error.code === "DUPLICATE_KEY" ? duplicateKey(source, error.pos[0]) : {}),
  }));
  return { source, syntaxIssues };
}

/** yaml says only "Map keys must be unique": the key given twice, its path and the line of the first. */
function duplicateKey(source: ConfigSource, offset: number): { path: string; message: string } | undefined {
  let twice: { path: PathSegment[]; first: number } | undefined;
  const walk = (node: unknown, path: PathSegment[]): void => {
    if (yaml().isSeq(node)) node.items.forEach((item, index) => walk(item, [...path, index]));
    for (const pair of yaml().isMap(node) ? node.items : []) {
      const [key, first] = [pair.key as Node, (node as YAMLMap).items.find((other) => keyText(other.key) === keyText(pair.key))!.key as Node];
      if (key.range?.[0] === offset && first !== key) twice = { path: [...path, keyText(key)], first: first.range?.[0] ?? 0 };
      walk(pair.value, [...path, keyText(key)]);
    }
  };
  walk(source.doc.contents, []);
  return twice && { path: formatPath(twice.path), message: `given twice (first at line ${positionAtOffset(source, twice.first).line}); YAML would keep only one of the two. Remove or merge one.` };
}

/** yaml's messages end with " at line 3, column 1:" and a code excerpt; we give the position ourselves. The engine's stack overflow (deep nesting) is said in APEX's words. */
function syntaxMessage(message: string): string {
  const firstLine = message.split("\n", 1)[0]!.replace(/ at line \d+, column \d+:?$/, "").trim();
  return /call stack size/i.test(firstLine) ? "Nested too deep: its mappings and lists go more levels down than APEX reads." : /[.!?]$/.test(firstLine) ? firstLine : `${firstLine}.`;
}

export function positionAtOffset(source: ConfigSource, offset: number): SourcePosition {
  const { line, col } = source.lineCounter.linePos(offset);
  return { file: source.displayFile, line: Math.max(line, 1), col: Math.max(col, 1) };
}

/**
 * Where `path` is written. "key" points at the last key (`keep_lst:`), "value" at its value.
 * A path that is not in the document (a default, a missing key) falls back to the deepest
 * part that is, so every issue has a position.
 */
export function positionOf(source: ConfigSource, path: readonly PathSegment[], target: "key" | "value" = "value"): SourcePosition {
  let node: unknown = source.doc.contents;
  let keyNode: Node | undefined;
  let best: Node | undefined = isNode(node) ? node : undefined;
  for (let i = 0; i < path.length; i++) {
    if (yaml().isAlias(node)) node = node.resolve(source.doc);
    const segment = path[i]!;
    const last = i === path.length - 1;
    if (yaml().isMap(node)) {
      const pair = node.items.find((item) => yaml().isPair(item) && keyText(item.key) === String(segment));
      if (!pair) break;
      keyNode = isNode(pair.key) ? pair.key : undefined;
      node = pair.value;
      best = (last && target === "key" ? keyNode : isNode(node) ? node : keyNode) ?? best;
    } else if (yaml().isSeq(node) && typeof segment === "number") {
      node = node.items[segment];
      if (!isNode(node)) break;
      keyNode = undefined;
      best = node;
    } else {
      break;
    }
  }
  const offset = best?.range?.[0];
  return offset === undefined ? { file: source.displayFile, line: 1, col: 1 } : positionAtOffset(source, offset);
}

function isNode(value: unknown): value is Node {
  return yaml().isScalar(value) || yaml().isMap(value) || yaml().isSeq(value) || yaml().isAlias(value);
}

function keyText(key: unknown): string {
  return yaml().isScalar(key) ? String(key.value) : String(key);
}

/** `plugins.retention.keep_last`, `agents.coder.args[0]`, `plugins["./my-plugin.js"].level`. */
export function formatPath(path: readonly PathSegment[]): string {
  let text = "";
  for (const segment of path) {
    if (typeof segment === "number") text += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) text += text ? `.${segment}` : segment;
    else text += `[${JSON.stringify(segment)}]`;
  }
  return text;
}

/** Splits an ajv instance path ("/agents/coder/args/0") into segments, with numbers for list indices. */
export function pointerSegments(pointer: string, data: unknown): PathSegment[] {
  if (!pointer) return [];
  const segments: PathSegment[] = [];
  let value = data;
  for (const raw of pointer.slice(1).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (Array.isArray(value)) {
      const index = Number(key);
      segments.push(index);
      value = value[index];
    } else {
      segments.push(key);
      value = value !== null && typeof value === "object" ? (value as Record<string, unknown>)[key] : undefined;
    }
  }
  return segments;
}
