// Import cycles among APEX's modules: the static imports of every .ts file under core/, cli/,
// plugins/, integrations/ and agents/ (type-only imports and dynamic import() left out: they
// do not run at load time), read with the TypeScript compiler's parser, and the strongly
// connected components of that graph (Tarjan). Prints {files, cycles: [[file, …], …]} as JSON;
// with --through DIR, only the cycles that contain a file under DIR, and exits 1 if any.
// --dynamic counts import() with a literal specifier too, --types type-only imports.
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROOTS = ["core", "cli", "plugins", "integrations", "agents"];
/**
 * The built-in registry: core loads plugins (and storage backends) through it, by design, and
 * plugins build on core; the edges from core into it are the one sanctioned way in, and are
 * left out (--with-registry keeps them).
 */
const REGISTRY = join(root, "plugins", "index.ts");

function sourceFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** The file a relative specifier names: "./x.js" is x.ts (or x/index.ts). */
function resolveSpecifier(from, specifier) {
  if (!specifier.startsWith(".")) return undefined;
  const base = resolve(dirname(from), specifier);
  for (const candidate of [base.replace(/\.js$/, ".ts"), `${base}.ts`, join(base, "index.ts")]) if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  return undefined;
}

function isTypeOnly(node) {
  if (ts.isImportDeclaration(node)) {
    const clause = node.importClause;
    if (!clause) return false; // import "./x.js": runs it
    if (clause.isTypeOnly) return true;
    if (clause.name) return false;
    const bindings = clause.namedBindings;
    if (!bindings) return false;
    if (ts.isNamespaceImport(bindings)) return false;
    return bindings.elements.length > 0 && bindings.elements.every((element) => element.isTypeOnly);
  }
  if (ts.isExportDeclaration(node)) {
    if (node.isTypeOnly) return true;
    const clause = node.exportClause;
    return clause !== undefined && ts.isNamedExports(clause) && clause.elements.length > 0 && clause.elements.every((element) => element.isTypeOnly);
  }
  return false;
}

export function importGraph(options = {}) {
  const files = ROOTS.flatMap((dir) => sourceFiles(join(root, dir)));
  const graph = new Map();
  for (const file of files) {
    const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.ES2022, false);
    const targets = new Set();
    for (const statement of source.statements) {
      if (!(ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) || !statement.moduleSpecifier) continue;
      if (!options.types && isTypeOnly(statement)) continue;
      const target = resolveSpecifier(file, statement.moduleSpecifier.text);
      if (target) targets.add(target);
    }
    if (options.dynamic) {
      const visitNode = (node) => {
        if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])) {
          const target = resolveSpecifier(file, node.arguments[0].text);
          if (target) targets.add(target);
        }
        ts.forEachChild(node, visitNode);
      };
      visitNode(source);
    }
    if (!options.registry && relative(root, file).startsWith("core/")) targets.delete(REGISTRY);
    graph.set(file, [...targets]);
  }
  return graph;
}

/** Strongly connected components with more than one file (or a file importing itself). */
export function cycles(graph) {
  let index = 0;
  const indexOf = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const out = [];
  const visit = (node) => {
    // Iterative Tarjan: the graph is a few hundred files, but recursion depth is not bounded by it.
    const work = [[node, 0]];
    indexOf.set(node, index);
    low.set(node, index++);
    stack.push(node);
    onStack.add(node);
    while (work.length > 0) {
      const frame = work[work.length - 1];
      const [current, i] = frame;
      const edges = graph.get(current) ?? [];
      if (i < edges.length) {
        frame[1]++;
        const next = edges[i];
        if (!indexOf.has(next)) {
          indexOf.set(next, index);
          low.set(next, index++);
          stack.push(next);
          onStack.add(next);
          work.push([next, 0]);
        } else if (onStack.has(next)) low.set(current, Math.min(low.get(current), indexOf.get(next)));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(current)));
      }
      if (low.get(current) === indexOf.get(current)) {
        const component = [];
        let member;
        do {
          member = stack.pop();
          onStack.delete(member);
          component.push(member);
        } while (member !== current);
        if (component.length > 1 || (graph.get(current) ?? []).includes(current)) out.push(component.map((file) => relative(root, file)).sort());
      }
    }
  };
  for (const node of graph.keys()) if (!indexOf.has(node)) visit(node);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const throughAt = process.argv.indexOf("--through");
  const through = throughAt > 0 ? process.argv[throughAt + 1] : undefined;
  const graph = importGraph({ dynamic: process.argv.includes("--dynamic"), types: process.argv.includes("--types"), registry: process.argv.includes("--with-registry") });
  let found = cycles(graph);
  if (through) found = found.filter((component) => component.some((file) => file === through || file.startsWith(`${through.replace(/\/$/, "")}/`)));
  process.stdout.write(`${JSON.stringify({ files: graph.size, cycles: found }, null, 2)}\n`);
  if (through && found.length > 0) process.exitCode = 1;
}
