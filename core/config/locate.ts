import { statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
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
    if (!isFile(configPath)) {
      const source = options.configFlag ? "--config" : "APEX_CONFIG";
      throw new ApexError("APEX_E_CONFIG_NOT_FOUND", `The config file ${configPath} (from ${source}) does not exist.`, {
        hint: "Pass the path of an apex.config.yaml, or drop the option to search from the current directory.",
      });
    }
  } else {
    configPath = findUp(cwd, CONFIG_FILE_NAME);
  }
  const projectDir = configPath ? dirname(configPath) : cwd;
  const storeDir = env.APEX_HOME ? resolve(cwd, env.APEX_HOME) : join(projectDir, STORE_DIR_NAME);
  return { configPath, projectDir, storeDir };
}

function findUp(start: string, name: string): string | undefined {
  let dir = start;
  for (;;) {
    const candidate = join(dir, name);
    if (isFile(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
