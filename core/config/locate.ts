import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readFileSync, readSync, readlinkSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { ApexError } from "../errors.js";

export const CONFIG_FILE_NAME = "apex.config.yaml";
export const STORE_DIR_NAME = ".apex";

/** Where the project's config and store are. Cheap: touches the file system only with stat. */
export interface ProjectLocation {
  /** The config file in force, or undefined when none was found (built-in defaults apply). */
  configPath: string | undefined;
  /** The directory the project lives in: the config file's directory, else the working directory. */
  projectDir: string;
  /** The store directory: `.apex/` beside the config file, or APEX_HOME. */
  storeDir: string;
}

export interface LocateOptions {
  cwd?: string;
  /** The `--config PATH` flag. */
  configFlag?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

/**
 * Finds apex.config.yaml the way git finds .git: the current directory, then each parent.
 * `--config PATH` wins over APEX_CONFIG, which wins over the search. APEX_HOME moves the store.
 */
export function locateProject(options: LocateOptions = {}): ProjectLocation {
  const env = options.env ?? process.env;
  const cwd = resolve(options.cwd ?? process.cwd());
  const explicit = options.configFlag ?? env.APEX_CONFIG;
  let configPath: string | undefined;
  if (explicit) {
    configPath = resolve(cwd, explicit);
    if (!existsSync(configPath)) throw configNotFound(configPath, ` (from ${options.configFlag ? "--config" : "APEX_CONFIG"})`, options.configFlag ? "Pass the path of an apex.config.yaml, or drop the option to search from the current directory." : "Set APEX_CONFIG to the path of an apex.config.yaml, or unset it to search from the current directory.");
  } else {
    configPath = findUp(cwd, CONFIG_FILE_NAME);
  }
  // A config given as a descriptor (`--config <(…)`, /dev/stdin) has no directory of its own: the project is the working directory.
  const projectDir = configPath && ownDescriptor(configPath) === undefined ? dirname(configPath) : cwd;
  const storeDir = env.APEX_HOME ? resolve(cwd, env.APEX_HOME) : join(projectDir, STORE_DIR_NAME);
  if (!explicit && !env.APEX_HOME && !isDirectory(storeDir)) {
    // In a branch session's git worktree (`apex session branch --worktree`), which has no store of
    // its own: the project is the main working tree's, whose store binds the worktree to its session.
    const main = projectOfWorktree(cwd, env);
    if (main) return main;
  }
  return { configPath, projectDir, storeDir };
}

function projectOfWorktree(cwd: string, env: NodeJS.ProcessEnv): ProjectLocation | undefined {
  const worktree = linkedWorktreeOf(cwd);
  // The project may be a subdirectory of its repository: the same subdirectory of the tree it is in (the main one, or a linked worktree of its own).
  for (const tree of worktree ? projectTreesOf(worktree) : []) {
    for (let dir = resolve(cwd); ; dir = dirname(dir)) {
      const projectDir = join(tree, relative(worktree!, dir));
      const configPath = join(projectDir, CONFIG_FILE_NAME);
      if (isDirectory(join(projectDir, STORE_DIR_NAME)) || inDatabase(configPath, env)) return { configPath: isFile(configPath) ? configPath : undefined, projectDir, storeDir: join(projectDir, STORE_DIR_NAME) };
      if (dir === worktree || dirname(dir) === dir) break;
    }
  }
  return undefined;
}

/**
 * True when the project at `configPath` keeps its store in PostgreSQL, where its main tree need
 * not have a `.apex/` (only logs and sockets live there): a worktree's project is still the main
 * tree's. A rough test of the text (the store section is checked where it is opened).
 */
function inDatabase(configPath: string, env: NodeJS.ProcessEnv): boolean {
  const text = configTextSync(configPath) ?? ""; // none there (or unreadable): not the project
  return text !== "" && (/^postgres(ql)?:\/\//.test(env.APEX_STORE_URL ?? "") || (/^store[ \t]*:/m.test(text) && /\bbackend[ \t]*:[ \t]*["']?postgres/.test(text)));
}

/**
 * The top of the linked git worktree `dir` is in (where `.git` is a file, `gitdir: …/worktrees/NAME`),
 * or undefined in a main working tree or outside git. Stats only, no git process.
 */
export function linkedWorktreeOf(dir: string): string | undefined {
  let current = resolve(dir);
  for (;;) {
    const marker = join(current, ".git");
    try {
      const stat = statSync(marker);
      if (stat.isDirectory()) return undefined;
      // A submodule's `.git` file (gitdir …/modules/NAME) is no worktree: the tree it is in decides (a branch's worktree, or the main one).
      if (stat.isFile() && mainWorktreeOf(current)) return current;
    } catch {
      // not here: go up
    }
    const parent = dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
}

/** The main working tree of the linked worktree at `worktree`, from its `.git` file. */
export function mainWorktreeOf(worktree: string): string | undefined {
  const gitdir = gitdirOf(worktree);
  return gitdir && basename(dirname(gitdir)) === "worktrees" && basename(dirname(dirname(gitdir))) === ".git" ? dirname(dirname(dirname(gitdir))) : undefined;
}

/** The branch checked out in the linked worktree at `worktree` (`apex/NAME`), from its git directory's HEAD; undefined when detached or unreadable. */
export function worktreeBranchOf(worktree: string): string | undefined {
  try { return /^ref: refs\/heads\/(.+)$/m.exec(readFileSync(join(gitdirOf(worktree)!, "HEAD"), "utf8"))?.[1]?.trim(); } catch { return undefined; }
}

/**
 * The working trees a linked worktree's project may be in: the one `session branch --worktree` made it from
 * (`apex-project` in its git directory: a project in a linked worktree of its own), then the main one.
 */
export function projectTreesOf(worktree: string): string[] {
  const [gitdir, main] = [gitdirOf(worktree), mainWorktreeOf(worktree)];
  let noted = "";
  try { noted = readFileSync(join(gitdir!, "apex-project"), "utf8").trim(); } catch { /* not made by APEX, or before it noted the tree */ }
  return gitdir && main ? [...new Set([noted, main])].filter((tree) => isAbsolute(tree) && resolve(tree) !== resolve(worktree)) : [];
}

/** The git directory of the linked worktree at `worktree` (`<main>/.git/worktrees/NAME`), from its `.git` file. */
function gitdirOf(worktree: string): string | undefined {
  try { const match = /^gitdir:\s*(.+)$/m.exec(readFileSync(join(worktree, ".git"), "utf8")); return match ? resolve(worktree, match[1]!.trim()) : undefined; } catch { return undefined; }
}



function findUp(start: string, name: string): string | undefined {
  let dir = start;
  for (;;) {
    const candidate = join(dir, name);
    // Whatever is there (a directory, a dangling link) is this project's config, refused as such when read, not passed for a parent's.
    if (isPresent(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * APEX_E_CONFIG_NOT_FOUND for `file`: a symbolic link whose target is missing (after every link
 * of a chain) is named as one, with that target: the file is there, what it points at is not.
 */
export function configNotFound(file: string, from = "", hint?: string): ApexError {
  let target = file;
  const chain = [file];
  for (let hops = 0; hops < 40; hops++) {
    try { target = resolve(dirname(target), readlinkSync(target)); } catch { break; }
    // Links in a loop were "does not exist", or "a link to" one of them "which does not exist".
    if (chain.includes(target)) return new ApexError("APEX_E_CONFIG_NOT_FOUND", `The config file ${file}${from} is a symbolic link in a loop (${[...chain, target].join(" -> ")}).`, { hint: `Point the link at a config file (ln -sfn FILE ${JSON.stringify(file)}), or remove it.`, details: { file, target } });
    chain.push(target);
  }
  const link = target === file ? undefined : { hint: `Restore ${target}, or point the link at a config file (ln -sfn FILE ${JSON.stringify(file)}), or remove it.`, details: { file, target } };
  return new ApexError("APEX_E_CONFIG_NOT_FOUND", `The config file ${file}${from} ${link ? `is a symbolic link to ${target}, which does not exist` : "does not exist"}.`, link ?? { hint });
}

/** Whether anything is at `path`, a dangling symbolic link too. */
function isPresent(path: string): boolean { try { return Boolean(lstatSync(path)); } catch { return false; } }

/** Whether `path` is a directory (a symlink is followed); false where it cannot be stat'ed (missing, no permission). */
export function isDirectory(path: string): boolean { try { return statSync(path).isDirectory(); } catch { return false; } }

/**
 * A config is a few kilobytes, and every command reads it: parsing YAML with positions grows
 * faster than the text (800 KB took 8 s, 18 MB over ten minutes and 2 GB), so a larger file is
 * refused before it is parsed.
 */
export const MAX_CONFIG_BYTES = 256 * 1024;

/** The bytes of each config read from a pipe, by descriptor: a pipe is read once, whoever asks again. */
const pipedConfigs = new Map<number, Buffer>();

/**
 * The descriptor of this process's own that `path` names (`/dev/fd/N`, `/proc/self/fd/N`,
 * `/dev/stdin`): what the shell gives for `--config <(…)`, or `--config /dev/stdin < FILE`.
 * Such a path has no directory of its own that could be the project's.
 */
function ownDescriptor(path: string): number | undefined {
  const match = /^\/(?:dev\/fd|proc\/(?:self|thread-self|(\d+))\/fd)\/(\d+)$/.exec(path);
  if (match?.[1] !== undefined && Number(match[1]) !== process.pid) return undefined;
  return path === "/dev/stdin" ? 0 : match ? Number(match[2]) : undefined;
}

/**
 * The descriptor of this process's own that `path` names, when it is a pipe (`--config <(…)`,
 * APEX_CONFIG=/dev/stdin in a pipeline). A named pipe given by its own path is none (it would be waited on).
 */
function pipedDescriptor(path: string): number | undefined {
  const fd = ownDescriptor(path);
  if (fd === undefined) return undefined;
  if (pipedConfigs.has(fd)) return fd;
  try {
    return fstatSync(fd).isFIFO() ? fd : undefined;
  } catch {
    return undefined; // not open in this process
  }
}

/** Whether `path` names one of this process's own descriptors (`/dev/fd/N`, `/dev/stdin`), which no other process can read. */
export function namesOwnDescriptor(path: string): boolean {
  return ownDescriptor(path) !== undefined;
}

/**
 * The bytes of a config that is a pipe this process was given (`--config <(…)`), read to its end
 * the first time (a pipe cannot be read again: the store section and the loader read one copy),
 * up to one byte past MAX_CONFIG_BYTES: a writer without end (`<(yes)`) is not read without end.
 * Undefined for any other path.
 */
export function pipedConfigBytes(path: string): Buffer | undefined {
  const fd = pipedDescriptor(path);
  if (fd === undefined) return undefined;
  const known = pipedConfigs.get(fd);
  if (known) return known;
  const buffer = Buffer.alloc(MAX_CONFIG_BYTES + 1);
  let length = 0;
  while (length < buffer.length) {
    // A pipe set non-blocking by whoever shares it, its writer not done yet: waited for, as a blocking read waits.
    const read = readWaiting(fd, buffer, length, buffer.length - length);
    if (read === 0) break;
    length += read;
  }
  const bytes = buffer.subarray(0, length);
  pipedConfigs.set(fd, bytes);
  return bytes;
}

/**
 * readSync of what `fd` has, up to `length` bytes at `offset`; 0 at its end. A non-blocking one
 * (standard input may be) with nothing in it yet is waited for, as a blocking read would; a
 * terminal closed under the read (EOF) is its end.
 */
export function readWaiting(fd: number, buffer: Buffer, offset: number, length: number): number {
  for (;;) {
    try {
      return readSync(fd, buffer, offset, length, null);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EOF") return 0;
      if (code !== "EAGAIN") throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

/**
 * A config file's text, or undefined when it cannot be read or is no regular file: a named pipe
 * was waited on for ever, and /dev/zero read until memory ran out (the loader says what it is).
 * A pipe this process was given (`--config <(…)`) is read once (pipedConfigBytes).
 */
export function configTextSync(path: string): string | undefined {
  let fd: number | undefined;
  try {
    const piped = pipedConfigBytes(path);
    if (piped) return piped.length > MAX_CONFIG_BYTES ? undefined : piped.toString("utf8");
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    return fstatSync(fd).isFile() ? readFileSync(fd, "utf8") : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function isFile(path: string | URL): boolean { try { return statSync(path).isFile(); } catch { return false; } }
