/**
 * The full CLI, loaded from its one-file bundle (dist/bundle/cli.cjs, scripts/bundle.mjs) with a
 * V8 code cache kept between runs, or from its ES modules (dist/cli/main.js) when there is no
 * bundle; the fast paths of `apex status` and of `apex pause`/`resume` the same way, from bundles
 * of their own (status.cjs, lifecycle.cjs: status-main.js, lifecycle-main.js and what they
 * import), and the supervisor (supervisor.cjs: core/session/supervisor-main.js), which this module
 * runs when it is run as a program. Node 20 keeps no compiled code of ES modules between runs:
 * compiling APEX's own modules was most of a command's start-up (`apex config validate`: ~280 ms of a core, ~170 with the
 * bundle and its cache). Node 22 and later have a compile cache of their own (core/compile-cache.ts),
 * and run the bundle the same way, which keeps one path for every version.
 *
 * The cache is V8's own (vm.Script's cachedData), one file per command group (`checkpoint`,
 * `memory`…: the functions a command compiled are what its cache holds), in the user's cache
 * directory beside Node's compile cache, named by the bundle's hash (its first line) and path, Node's
 * version and the group. V8 checks it against its own version and flags and refuses one that
 * does not fit; it is then written anew. A cache that cannot be read or written changes nothing
 * but the time. APEX_BUNDLE=0 loads the ES modules, as does a bundle older than the modules, and
 * APEX_DEBUG (whose stacks then name the modules' files).
 */
import { isAscii } from "node:buffer";
import { mkdirSync, readdirSync, readFile, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import vm from "node:vm";

/** Each entry of the CLI with its modules, loaded as they are when there is no bundle. */
const MODULES = {
  cli: () => import("./main.js"),
  status: () => import("./status-main.js"),
  lifecycle: () => import("./lifecycle-main.js"),
  supervisor: () => import("../core/session/supervisor-main.js"),
};
type Entry = keyof typeof MODULES;
type Loaded<E extends Entry> = Awaited<ReturnType<(typeof MODULES)[E]>>;

const BUNDLES = fileURLToPath(new URL("../bundle/", import.meta.url));
/** Written by every tsc build of dist/ (tsconfig.json's tsBuildInfoFile), before scripts/bundle.mjs makes the bundle. */
const BUILD_INFO = fileURLToPath(new URL("../.tsbuildinfo", import.meta.url));
/** Cache files kept in the directory (the oldest go first): groups × the builds and Node versions in use. */
const MAX_CACHE_FILES = 64;
/** The share of the runs that used a cache which make it again as they end, keeping it if it grew (APEX_CODE_CACHE_REFRESH). */
const REFRESH_SHARE = 1 / 8;

/**
 * A bundle's text. scripts/bundle.mjs makes each one ASCII only, which decodes as Latin-1 to the
 * same string in ~1 ms, where decoding 2.7 MB as UTF-8 took ~13 ms of every command on Node 20
 * (V8's decoder, not Node's fast path). A bundle with other bytes is decoded as UTF-8.
 */
function textOf(bytes: Buffer): string {
  return isAscii(bytes) ? bytes.toString("latin1") : bytes.toString("utf8");
}

/** The full CLI (commander's program and every command). */
export function loadCli(argv: readonly string[] = process.argv): Promise<Loaded<"cli">> {
  return load("cli", commandGroup(argv));
}

/** The fast path of `apex status [--json]`, or of `apex pause|resume [--json]` (bin/apex.js says which command lines take them). */
export function loadFastPath<E extends "status" | "lifecycle">(entry: E): Promise<Loaded<E>> {
  return load(entry, entry);
}

/** Each entry loaded once per process: a fast path may take several modules from the CLI's bundle. */
const loading = new Map<Entry, Promise<unknown>>();

// Run as a program (`node dist/cli/bundle.cjs REQUEST`, as cli/session/launch.ts starts the supervisor): the supervisor, from its
// bundle (its start compiled ~200 modules, of APEX's and their plugins', every time on Node 20).
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) void load("supervisor", "supervisor");

function load<E extends Entry>(entry: E, group: string): Promise<Loaded<E>> {
  if (!loading.has(entry)) loading.set(entry, loadEntry(entry, group));
  return loading.get(entry) as Promise<Loaded<E>>;
}

async function loadEntry<E extends Entry>(entry: E, group: string): Promise<Loaded<E>> {
  const modules = MODULES[entry] as () => Promise<Loaded<E>>;
  // APEX_DEBUG too: the stacks it prints (cli/output.ts) then name the modules' files, not the bundle's lines.
  const debug = process.env.APEX_DEBUG;
  if (process.env.APEX_BUNDLE === "0" || (debug !== undefined && debug !== "" && debug !== "0")) return modules();
  const bundle = join(BUNDLES, `${entry}.cjs`);
  let source: string;
  try {
    // A bundle older than tsc's last build of the modules (`tsc -b` run alone, not `npm run build`) is stale: the modules then.
    if (statSync(bundle).mtimeMs < (statSync(BUILD_INFO, { throwIfNoEntry: false })?.mtimeMs ?? 0)) return modules();
    // Read without blocking the event loop: a Ctrl-C meanwhile is bin/apex.js's, before the command runs ("nothing was done").
    source = textOf(await new Promise<Buffer>((resolve, reject) => readFile(bundle, (error, bytes) => (error ? reject(error) : resolve(bytes)))));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return modules();
    throw error;
  }
  const hash = /^\/\/ apex-bundle ([0-9a-f]{16})/.exec(source)?.[1];
  // NODE_DISABLE_COMPILE_CACHE, Node's switch for its own cache, turns this one off too.
  // And by where the bundle is: V8's cache keeps the file name it was made with, which stack traces then gave
  // (another checkout's path, the same bundle built there).
  const cacheFile = hash === undefined || process.env.NODE_DISABLE_COMPILE_CACHE ? undefined : join(cacheDirectory(), `${entry}-${hash}-${pathTag(bundle)}-${process.version}-${process.arch}-${group}.bin`);
  let cachedData: Buffer | undefined;
  try {
    if (cacheFile) cachedData = readFileSync(cacheFile);
  } catch {
    /* none yet */
  }
  // On the bundle's first line, so that its line numbers are the file's in a stack trace.
  const wrapped = `(function (exports, require, module, __filename, __dirname, __apexModuleUrl, __apexImport, __apexFromCli) {${source}\n})`;
  const script = new vm.Script(wrapped, { filename: bundle, ...(cachedData ? { cachedData } : {}) });
  const module = { exports: {} as Loaded<E> };
  const dir = dirname(bundle);
  const moduleUrl = (from: string) => pathToFileURL(join(dir, from)).href;
  // A script's own import() needs a loader Node 20 gives only as an experiment (with a warning, and
  // lost with a code cache): the bundle's one import() of a file, a plugin's, is made here instead.
  const importFile = (url: string): Promise<unknown> => import(url);
  // A module a fast path's bundle does not hold (`key`, its dist/ path): the CLI's bundle's copy, compiled with a cache of the
  // fast path's own (the config's check of a status with no session running), else its ES module (`url`).
  const fromCli = async (key: string, url: string): Promise<unknown> => {
    const handedOut = ((await load("cli", entry)) as { bundledModules?: Record<string, () => Promise<unknown>> }).bundledModules?.[key];
    return handedOut ? handedOut() : import(url);
  };
  (script.runInThisContext() as (...args: unknown[]) => void)(module.exports, createRequire(bundle), module, bundle, dir, moduleUrl, importFile, fromCli);
  // Written as the process ends, with what the command compiled by then (a cache made before it
  // ran would hold little more than the bundle's top level); only by a command that succeeded: a
  // mistyped word (`apex statsu`) is no group to keep a cache for, and an error compiled little.
  // A cache holds what the run that wrote it compiled: `apex status` with no session running, or `checkpoint list`, leaves
  // out what a running session's status, or `checkpoint show`, runs. A share of the runs that used one (REFRESH_SHARE) makes
  // it again as they end, with what it held and what they compiled besides, and keeps it if it grew: V8 says nothing of
  // what a run compiled, and making a cache at every exit would cost ~1 ms (the CLI's bundle: ~4).
  const fresh = !cachedData || script.cachedDataRejected;
  if (cacheFile && (fresh || Math.random() < refreshShare())) {
    process.once("exit", (code) => {
      if (code !== 0) return;
      const data = script.createCachedData();
      if (fresh || data.length > cachedData!.length * 1.02) saveCache(data, cacheFile);
    });
  }
  return module.exports;
}

/** The share of the runs with a cache that make it again as they end: APEX_CODE_CACHE_REFRESH, a number from 0 to 1 (default 1/8). */
function refreshShare(): number {
  const share = Number(process.env.APEX_CODE_CACHE_REFRESH || NaN);
  return share >= 0 && share <= 1 ? share : REFRESH_SHARE;
}

/** A short tag of a path (FNV-1a, 32 bits, in hex): cheaper at start-up than loading node:crypto. */
export function pathTag(path: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) hash = Math.imul(hash ^ path.charCodeAt(i), 0x01000193) >>> 0;
  return hash.toString(16).padStart(8, "0");
}

function cacheDirectory(): string {
  return join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "apex", "code-cache");
}

/** The command's group (its first word, when it is one), which names its cache; "cli" for anything else. */
function commandGroup(argv: readonly string[]): string {
  const first = argv.slice(2).find((arg) => !arg.startsWith("-"));
  // A global option's value (`--session NAME`) may come first: only a word like a command's names a cache.
  return first !== undefined && /^[a-z][a-z-]{0,23}$/.test(first) ? first : "cli";
}

function saveCache(data: Buffer, file: string): void {
  try {
    const dir = dirname(file);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const temporary = `${file}.${process.pid}.tmp`;
    writeFileSync(temporary, data, { mode: 0o600 });
    renameSync(temporary, file);
    pruneCaches(dir);
  } catch {
    /* no cache: the next command compiles again */
  }
}

/** The oldest cache files past MAX_CACHE_FILES removed (other builds', other Node versions'), and temporary files a killed process left. */
function pruneCaches(dir: string): void {
  const files = readdirSync(dir).flatMap((name) => {
    try {
      return [{ path: join(dir, name), name, at: statSync(join(dir, name)).mtimeMs }];
    } catch {
      return [];
    }
  });
  const stale = Date.now() - 60_000;
  for (const file of files) if (file.name.endsWith(".tmp") && file.at < stale) rmSync(file.path, { force: true });
  const caches = files.filter((file) => file.name.endsWith(".bin")).sort((a, b) => b.at - a.at);
  for (const file of caches.slice(MAX_CACHE_FILES)) rmSync(file.path, { force: true });
}
