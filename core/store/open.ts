/**
 * The one way to open a project's store. openStore() resolves which backend holds it (a
 * StoreSpec: APEX_STORE_URL, else the config's `store:` section, else LMDB in the store
 * directory) and asks that backend's factory, found in one registry: the built-in plugin
 * registry (plugins/index.ts), which loads a backend (LMDB, PostgreSQL) only when it is used.
 */
import { createHash } from "node:crypto";
import { basename, resolve } from "node:path";
import { configTextSync, linkedWorktreeOf, mainWorktreeOf } from "../config/locate.js";
import { ApexError } from "../errors.js";
import type { BackendInfo, StorageBackend, StorageBackendFactory, StoreOpenOptions, StoreSpec } from "./port.js";
import { lmdbDataDir, lmdbStoreExists } from "./store.js";

/** Where a project is: its config file (if any), its directory and its store directory. */
export interface StoreLocation {
  configPath?: string | undefined;
  projectDir?: string;
  storeDir: string;
}

/** What openStore accepts: a project location (its config and environment decide), a resolved spec, or an LMDB store directory. */
export type StoreTarget = StoreLocation | StoreSpec | string;

/** The config's `store:` section (schemas/apex.config.schema.json). */
interface StoreSection {
  backend: "lmdb" | "postgres";
  url?: string;
  project?: string;
}

const factories = new Map<string, StorageBackendFactory>();

/** The factory of a backend, from the built-in registry (plugins/index.ts), loaded on first use. */
export async function backendFactory(name: string): Promise<StorageBackendFactory> {
  const known = factories.get(name);
  if (known) return known;
  const { builtinStorageBackends } = await import("../../plugins/index.js");
  const load = builtinStorageBackends[name];
  if (!load) {
    throw new ApexError("APEX_E_BACKEND_UNAVAILABLE", `There is no storage backend '${name}'.`, { hint: `Built-in backends: ${Object.keys(builtinStorageBackends).join(", ")}.` });
  }
  let factory: StorageBackendFactory;
  try {
    factory = await load();
  } catch (error) {
    if (error instanceof ApexError) throw error;
    const message = (error as Error).message;
    const ownModule = /Cannot find (module|package) '[^']*\/backend\.js'/.test(message);
    throw new ApexError("APEX_E_BACKEND_UNAVAILABLE", `The ${name} storage backend cannot be loaded: ${message}`, {
      hint: ownModule
        ? `This APEX is built without the ${name} backend. Use the default LMDB store (drop \`store:\` and APEX_STORE_URL).`
        : `Install its driver beside APEX${name === "postgres" ? " (`npm install pg`)" : ""}, or use the default LMDB store (drop \`store:\` and APEX_STORE_URL).`,
      cause: error,
    });
  }
  if (!factory || typeof factory.open !== "function" || typeof factory.exists !== "function") {
    throw new ApexError("APEX_E_BACKEND_UNAVAILABLE", `The ${name} storage backend does not export a factory (open, exists).`);
  }
  factories.set(name, factory);
  return factory;
}

/** Which backend holds the store of `target`. Reads the config only when its text has a top-level `store:` key. */
export async function resolveStoreSpec(target: StoreTarget, env: NodeJS.ProcessEnv = process.env): Promise<StoreSpec> {
  if (typeof target === "string") return { backend: "lmdb", dir: resolve(target) };
  if ("backend" in target) return target;
  const dir = target.storeDir;
  const projectDir = projectDirOf(target);
  const section = target.configPath ? await readStoreSection(target.configPath) : undefined;
  // A shared database's project id when `store.project` sets none (worked out for PostgreSQL only):
  // the project directory's name, the main working tree's when the directory is the top of a linked
  // git worktree (a branch's `--worktree`), so commands in the worktree and its agents reach the
  // project's data, not a project named after the worktree (with APEX_HOME set, say).
  const project = () => section?.project ?? basename((linkedWorktreeOf(projectDir) === resolve(projectDir) && mainWorktreeOf(projectDir)) || projectDir);
  const fromEnv = env.APEX_STORE_URL;
  if (fromEnv !== undefined && fromEnv !== "") return specOfUrl(fromEnv, dir, project, projectDir);
  if (!section) return { backend: "lmdb", dir };
  if (section.backend === "lmdb") return section.url ? { backend: "lmdb", dir, url: `lmdb:${resolve(projectDir, section.url)}` } : { backend: "lmdb", dir };
  return { backend: section.backend, dir, url: section.url!, project: project() };
}

function projectDirOf(target: StoreLocation): string {
  return target.projectDir ?? (target.configPath ? resolve(target.configPath, "..") : process.cwd());
}

/** APEX_STORE_URL: postgres://… (or postgresql://…) for PostgreSQL, lmdb:PATH for LMDB at PATH. */
function specOfUrl(url: string, dir: string, project: () => string, cwd: string): StoreSpec {
  if (/^postgres(ql)?:\/\//.test(url)) return { backend: "postgres", dir, url, project: project() };
  if (url.startsWith("lmdb:") && url.length > "lmdb:".length) return { backend: "lmdb", dir, url: `lmdb:${resolve(cwd, url.slice("lmdb:".length))}` };
  throw new ApexError("APEX_E_CONFIG", `APEX_STORE_URL must be postgres://… or lmdb:PATH, not ${JSON.stringify(redactUrl(url))}.`, { hint: "Unset it to use the config's store: section (or LMDB in .apex/)." });
}

const sections = new Map<string, StoreSection | undefined>();

/**
 * The `store:` section of a config file. Commands that only stat files must not parse YAML
 * (CLI start-up is benchmarked): the text is parsed, and the whole document checked, only
 * when it has a top-level `store:` key. Problems under `store` (and YAML syntax errors) are
 * config errors; the rest of the document is the config loader's business.
 */
async function readStoreSection(configPath: string): Promise<StoreSection | undefined> {
  const text = configTextSync(configPath);
  if (text === undefined) return undefined; // the config loader reports an unreadable config
  if (!/^store[ \t]*:/m.test(text)) return undefined;
  const key = `${configPath}\0${text}`;
  if (sections.has(key)) return sections.get(key);
  const [{ checkDocument }, { configError }] = await Promise.all([import("../config/document.js"), import("../config/validate.js")]);
  const checked = checkDocument(text, configPath);
  const issues = checked.issues.filter((issue) => issue.path === "store" || issue.path.startsWith("store."));
  if (issues.length > 0) throw configError(issues);
  const section = checked.data.store as StoreSection | undefined;
  sections.set(key, section);
  return section;
}

/** Opens the project's store (creating it unless read-only). */
export async function openStore(target: StoreTarget, options: StoreOpenOptions = {}): Promise<StorageBackend> {
  const spec = await resolveStoreSpec(target);
  const store = await (await backendFactory(spec.backend)).open(spec, options);
  store.spec = spec;
  return store;
}

/** True when the project's store exists (for LMDB one stat, without loading lmdb). */
export async function storeExists(target: StoreTarget): Promise<boolean> {
  const spec = await resolveStoreSpec(target);
  return spec.backend === "lmdb" ? lmdbStoreExists(spec) : (await backendFactory(spec.backend)).exists(spec);
}

/** What `apex plugins list` shows of the store in use, without opening it: the backend and where its data is (no password). */
export function describeStore(spec: StoreSpec): BackendInfo {
  if (spec.backend === "lmdb") return { backend: "lmdb", location: lmdbDataDir(spec) };
  return { backend: spec.backend, location: spec.url ? redactUrl(spec.url) : spec.dir };
}

/** Which store a spec names, as one string without a password (the backend's `builtinStoreIdentities`): equal strings, one store. */
export async function storeIdentity(spec: StoreSpec): Promise<string> {
  const load = (await import("../../plugins/index.js")).builtinStoreIdentities[spec.backend];
  return load ? (await load())(spec) : `${spec.backend}:${describeStore(spec).location}`;
}

/**
 * What resolveStoreSpec reads (APEX_STORE_URL without its password, the config's text, the
 * directories), as a digest: two processes with equal digests name the same store, known
 * without parsing YAML (a command routed to a supervisor need not parse the config).
 */
export function storeSourceDigest(target: StoreLocation, env: NodeJS.ProcessEnv = process.env): string {
  const text = (target.configPath && configTextSync(target.configPath)) || ""; // as resolveStoreSpec: no config text
  const parts = [env.APEX_STORE_URL ? redactUrl(env.APEX_STORE_URL, "") : "", text, target.configPath ?? "", projectDirOf(target), target.storeDir];
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
}

/**
 * A URL with its password replaced by `mask` ("***"; "" drops it, with its colon and its
 * parameters: the URL an agent is given), wherever it is: the user info, and `password=` or
 * `sslpassword=` parameters. A URL that does not parse (a password with an unencoded `/`, `?` or
 * `#`) is cut by text from the user's colon to the last `@`.
 */
export function redactUrl(url: string, mask = "***"): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = mask;
    for (const name of [...parsed.searchParams.keys()]) if (/^(?:ssl)?password$/i.test(name)) mask ? parsed.searchParams.set(name, mask) : parsed.searchParams.delete(name);
    return parsed.toString();
  } catch {
    return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):.*@/is, mask ? `$1:${mask}@` : "$1@").replace(/([?&](?:ssl)?password=)[^&#]*/gi, `$1${mask}`);
  }
}
