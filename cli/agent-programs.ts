/**
 * Can every agent's program be found? Checked by `apex config validate` and before `apex start`
 * launches anything, so that a config copied into another project (whose `args` name scripts
 * that are not there) fails with the agent and the path instead of a session whose agents all
 * crash at once.
 *
 * What is checked, for each agent:
 *  - its working directory exists;
 *  - its command resolves: a name is looked up on PATH (the agent's `env.PATH` if it sets one),
 *    a path (with a `/`) relative to the agent's working directory; a command line run through
 *    the shell (no `args`, shell syntax in `command`) is the shell's business and not checked;
 *  - its script: the first argument that is not an option, when it is a file name ending in a
 *    script extension (`agents/coder.mjs`, `./run.py`), must exist relative to the working
 *    directory. Other arguments are the program's business.
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { formatPath, positionOf } from "../core/config/source.js";
import type { AgentConfig, Config, ConfigIssue, SourcePosition } from "../core/config/types.js";
import { configError } from "../core/config/validate.js";

const SCRIPT_EXTENSION = /\.(?:[cm]?js|[cm]?ts|py|rb|sh|pl|php)$/;
const SHELL_SYNTAX = /[\s|&;<>()$`"'*?~\\]/;
/** Commands APEX puts on every agent's PATH itself. */
const PROVIDED_COMMANDS = new Set(["apex"]);

/** Every agent whose program cannot be found, as config issues (file:line:col of the setting). */
export function agentProgramIssues(config: Config): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const [name, spec] of Object.entries(config.agents)) {
    const issue = agentIssue(config, name, spec);
    if (issue) issues.push(issue);
  }
  return issues;
}

/** Throws APEX_E_CONFIG (exit 2) naming each agent whose program cannot be found. */
export function assertAgentProgramsExist(config: Config): void {
  const issues = agentProgramIssues(config);
  if (issues.length > 0) throw configError(issues);
}

function agentIssue(config: Config, name: string, spec: AgentConfig): ConfigIssue | undefined {
  const at = (path: Array<string | number>, message: string): ConfigIssue => ({
    ...where(config, ["agents", name, ...path]),
    path: formatPath(["agents", name, ...path]),
    message,
  });
  const cwd = resolve(config.projectDir, spec.cwd || ".");
  if (!isDirectory(cwd)) return at(["cwd"], `agent ${name}: the working directory ${cwd} does not exist.`);
  if (spec.args.length === 0 && SHELL_SYNTAX.test(spec.command)) return undefined;
  if (!commandResolves(spec.command, cwd, spec.env.PATH ?? process.env.PATH ?? "")) {
    return spec.command.includes("/")
      ? at(["command"], `agent ${name}: the program ${spec.command} does not exist (looked for ${resolve(cwd, spec.command)}).`)
      : at(["command"], `agent ${name}: the program "${spec.command}" is not on PATH.`);
  }
  const index = spec.args.findIndex((arg) => !arg.startsWith("-"));
  const script = index >= 0 ? spec.args[index]! : undefined;
  if (script !== undefined && SCRIPT_EXTENSION.test(script) && !/\s/.test(script)) {
    const file = resolve(cwd, script);
    if (!isFile(file)) {
      return at(["args", index], `agent ${name}: the script ${script} does not exist (looked for ${file}).${isAbsolute(script) ? "" : " Relative paths are relative to the agent's cwd (the project directory by default)."}`);
    }
  }
  return undefined;
}

function where(config: Config, path: Array<string | number>): SourcePosition {
  if (config.source) return positionOf(config.source, path);
  return { file: config.configPath ?? "apex.config.yaml", line: 0, col: 0 };
}

function commandResolves(command: string, cwd: string, searchPath: string): boolean {
  if (command.includes("/")) return isExecutable(resolve(cwd, command));
  if (PROVIDED_COMMANDS.has(command)) return true;
  return searchPath.split(delimiter).some((dir) => dir !== "" && isExecutable(join(resolve(cwd, dir), command)));
}

function isExecutable(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function isFile(file: string): boolean {
  try {
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function isDirectory(dir: string): boolean {
  try {
    return statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
