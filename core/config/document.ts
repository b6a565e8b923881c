/**
 * One config file through the checks: YAML with positions → the document schema → each
 * built-in plugin's options schema (filling defaults). Every problem is collected; nothing
 * is written anywhere.
 */
import { constants } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { ApexError, withDetail } from "../errors.js";
import { builtinPluginSchema, configSchema, isBuiltinPlugin } from "./schemas.js";
import type { Alias } from "yaml";
import { displayPath, parseSource, positionAtOffset, yaml } from "./source.js";
import { configNotFound, MAX_CONFIG_BYTES, pipedConfigBytes } from "./locate.js";
import type { ConfigIssue, ConfigSource } from "./types.js";
import { configError, documentValidator, validateOptions, validateWith } from "./validate.js";

/** The document after its checks, with schema defaults filled in. */
export interface CheckedDocument {
  source: ConfigSource;
  data: Record<string, unknown>;
  /** Sections the file does not have: the built-in defaults fill them. */
  omitted: { agents: boolean; plugins: boolean };
  issues: ConfigIssue[];
}

export { MAX_CONFIG_BYTES };

const tooLargeHint = "Keep data out of apex.config.yaml (project memory holds it: apex memory import), or point --config at the right file.";

export async function readConfigText(file: string): Promise<string> {
  // Each refusal is an issue too (line 0: the whole file), which `apex config validate --json` lists as it lists the others.
  const refuse = (what: string, hint: string, at = { line: 0, col: 0 }, cause?: unknown) =>
    new ApexError("APEX_E_CONFIG", `The config file ${file} ${what}`, { hint, cause, details: { errors: [{ file: displayPath(file), ...at, path: "", message: `The file ${what} ${hint}` }] } });
  let bytes: Buffer;
  let handle: FileHandle | undefined;
  try {
    // A pipe this process was given (`--config <(…)`, APEX_CONFIG=/dev/stdin): read once, to its end (or one byte past the limit).
    const piped = pipedConfigBytes(file);
    if (piped && piped.length > MAX_CONFIG_BYTES) throw refuse(`is more than ${MAX_CONFIG_BYTES} bytes; a config file is at most ${MAX_CONFIG_BYTES} (256 KiB).`, tooLargeHint);
    if (piped) return configText(piped, refuse);
    // O_NONBLOCK: a named pipe is not waited on; it and a device (/dev/zero was read into memory without end) are refused unread.
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = await handle.stat();
    if (stat.isDirectory()) throw Object.assign(new Error(), { code: "EISDIR" });
    if (!stat.isFile()) throw refuse(`is ${stat.isFIFO() ? "a named pipe" : stat.isSocket() ? "a socket" : "a device"}, not a regular file; the config is a YAML file.`, "Point --config at the file.");
    if (stat.size > MAX_CONFIG_BYTES) throw refuse(`is ${stat.size} bytes; a config file is at most ${MAX_CONFIG_BYTES} (256 KiB).`, tooLargeHint);
    bytes = await handle.readFile();
  } catch (error) {
    if (error instanceof ApexError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ELOOP") throw configNotFound(file);
    if (code === "EISDIR") throw refuse("is a directory; the config is a YAML file.", "Move the directory away, or point --config at the file.", undefined, error);
    throw refuse(withDetail(`cannot be read`, (error as Error).message), "Check its permissions, or point --config at another file.", undefined, error);
  } finally {
    await handle?.close();
  }
  if (bytes.length > MAX_CONFIG_BYTES) throw refuse(`is ${bytes.length} bytes; a config file is at most ${MAX_CONFIG_BYTES} (256 KiB).`, tooLargeHint);
  return configText(bytes, refuse);
}

/** The config's bytes as text, refused when they are no UTF-8. */
function configText(bytes: Buffer, refuse: (what: string, hint: string, at?: { line: number; col: number }) => ApexError): string {
  const text = bytes.toString("utf8");
  // Saved as UTF-16 or UTF-32 (Windows editors: with a byte order mark), read as UTF-8 it was "must be a mapping"; Latin-1's bytes were read as U+FFFD, changing a path or an argument unsaid.
  const wide = bytes.length >= 4 && [0xfffe0000, 0xfeff].includes(bytes.readUInt32BE(0)) ? "is UTF-32 text" : (bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff) ? "is UTF-16 text" : bytes.includes(0) ? "has NUL bytes (UTF-16 or UTF-32 text, or no text)" : undefined;
  const saveAs = "Save it as UTF-8 (the encoding choice of the editor's Save As).";
  if (wide) throw refuse(`${wide}; APEX reads its config as UTF-8.`, saveAs);
  const bad = Buffer.from(text, "utf8").findIndex((byte, index) => byte !== bytes[index]);
  const before = bad < 0 ? undefined : bytes.subarray(0, bad).toString("utf8").split("\n");
  if (before) throw refuse(`is not UTF-8 text: line ${before.length} has the byte 0x${bytes[bad]!.toString(16)} (Latin-1 or another encoding?); APEX reads its config as UTF-8.`, saveAs, { line: before.length, col: before.at(-1)!.length + 1 });
  return text;
}

/**
 * Parses and checks a config text. YAML syntax errors are thrown at once (APEX_E_YAML: the
 * rest cannot be checked); schema problems come back in `issues`.
 */
export function checkDocument(text: string, file: string, cwd?: string): CheckedDocument {
  const { source, syntaxIssues } = parseSource(text, file, cwd);
  if (syntaxIssues.length > 0) throw configError(syntaxIssues, "APEX_E_YAML");
  const parsed = toData(source);
  const isMapping = parsed !== null && typeof parsed === "object" && !Array.isArray(parsed);
  const omitted = { agents: isMapping && !("agents" in parsed), plugins: isMapping && !("plugins" in parsed) };
  const issues = validateWith(documentValidator(), parsed, { source, path: [], schema: configSchema(), noun: "key" });
  if (isMapping) issues.push(...checkBuiltinOptions(parsed as Record<string, unknown>, source));
  const data = isMapping ? (parsed as Record<string, unknown>) : {};
  return { source, data, omitted, issues: sortByPosition(issues) };
}

/**
 * The most values a document may stand for with its aliases expanded. yaml bounds how many
 * aliases expand, not how much each one holds: 900 aliases of a list of 40,000 numbers (110 KB)
 * had every command check 36 million values, for half a minute.
 */
export const MAX_EXPANDED_VALUES = 1_000_000;

/** Counts the values aliases expand to, without expanding them; refuses an alias inside the node it names (its value never ends: it overflowed the stack). */
function checkAliases(source: ConfigSource): void {
  // What each alias names: the last node anchored so before it (yaml's resolve() searches the whole document for each alias).
  const [sizes, anchors, targets] = [new Map<unknown, number>(), new Map<string, unknown>(), new Map<Alias, unknown>()];
  const { isAlias, isMap, isPair, isSeq, visit } = yaml();
  visit(source.doc, { Node: (_, node) => void (isAlias(node) ? targets.set(node, anchors.get(node.source)) : node.anchor && anchors.set(node.anchor, node)) });
  let widest: { alias: Alias; size: number } | undefined;
  const refuse = (alias: Alias, message: string) => configError([{ ...positionAtOffset(source, alias.range?.[0] ?? 0), path: "", message }], "APEX_E_YAML");
  const size = (node: unknown): number => {
    if (isAlias(node)) {
      const target = targets.get(node), known = sizes.get(target);
      if (known === -1) throw refuse(node, `The alias *${node.source} is inside the node &${node.source} it names: its value would never end.`);
      const count = known ?? size(target);
      if (!widest || count > widest.size) widest = { alias: node, size: count };
      return count;
    }
    sizes.set(node, -1); // being counted: an alias to it from inside is a cycle (a node is reached again only through an alias)
    const count = isPair(node) ? 1 + size(node.key) + size(node.value) : isMap(node) || isSeq(node) ? node.items.reduce((sum: number, item) => sum + size(item), 1) : 1;
    return sizes.set(node, count), count;
  };
  if (size(source.doc.contents) > MAX_EXPANDED_VALUES && widest) {
    throw refuse(widest.alias, `Its aliases expand the file to more than the ${MAX_EXPANDED_VALUES} values APEX reads, as a "billion laughs" file does (*${widest.alias.source} here alone stands for ${widest.size}).`);
  }
}

/** The document as plain data; an empty document is an empty mapping. */
function toData(source: ConfigSource): unknown {
  checkAliases(source);
  try {
    return source.doc.toJS({ maxAliasCount: 1000 }) ?? {};
  } catch (error) {
    // yaml's bound on how often aliases expand, which it words as "Excessive alias count indicates a resource exhaustion attack"
    const message = /alias count/i.test(String(error)) ? "Its aliases are expanded more than 1000 times in all, the most APEX expands: give the values themselves, or fewer aliases." : error instanceof Error ? error.message : String(error);
    throw configError([{ file: source.displayFile, line: 1, col: 1, path: "", message }], "APEX_E_YAML");
  }
}

/** Checks the options of each built-in plugin against its schema, filling in its defaults. */
function checkBuiltinOptions(data: Record<string, unknown>, source: ConfigSource): ConfigIssue[] {
  const plugins = data.plugins;
  if (plugins === null || typeof plugins !== "object" || Array.isArray(plugins)) return [];
  const entries = plugins as Record<string, unknown>;
  const issues: ConfigIssue[] = [];
  for (const [name, value] of Object.entries(entries)) {
    if (!isBuiltinPlugin(name) || value === false) continue;
    if (value === true || value === null) entries[name] = {};
    else if (typeof value !== "object" || Array.isArray(value)) continue; // the document schema reported it
    issues.push(...validateOptions(builtinPluginSchema(name), entries[name], { source, path: ["plugins", name] }, { trusted: true }));
  }
  return issues;
}

function sortByPosition(issues: ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.col - b.col);
}
