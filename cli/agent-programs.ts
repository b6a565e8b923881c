/**
 * Can every agent's program be found? Checked by `apex config validate` and before `apex start`
 * launches anything, so that a config copied into another project (whose `args` name scripts
 * that are not there) fails with the agent and the path instead of a session whose agents all
 * crash at once.
 *
 * What is checked, for each agent:
 *  - no command, cwd, argument or env value holds a NUL byte (no process can be given one);
 *  - its working directory exists;
 *  - its command resolves: a name is looked up on PATH (the agent's `env.PATH` if it sets one),
 *    a path (with a `/`) relative to the agent's working directory; a command line run through
 *    the shell (no `args`, shell syntax in `command`) is the shell's business and not checked;
 *  - its script: the first argument that is not an option, when it is a file name ending in a
 *    script extension (`agents/coder.mjs`, `./run.py`), must exist relative to the working
 *    directory. Other arguments are the program's business.
 */
import { accessSync, closeSync, constants, openSync, readSync, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { formatPath, positionOf } from "../core/config/source.js";
import { isDirectory, isFile } from "../core/config/locate.js";
import type { AgentConfig, Config, ConfigIssue, SourcePosition } from "../core/config/types.js";
import { configError } from "../core/config/validate.js";
import { agentNameClashes } from "./agent-names.js";

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

/** Throws APEX_E_CONFIG (exit 2) naming each agent whose program cannot be found, and agents whose files would be one (cli/agent-names.ts). */
export function assertAgentProgramsExist(config: Config): void {
  const issues = [...agentProgramIssues(config), ...agentNameClashes(config)];
  if (issues.length > 0) throw configError(issues);
}

function agentIssue(config: Config, name: string, spec: AgentConfig): ConfigIssue | undefined {
  const at = (path: Array<string | number>, message: string): ConfigIssue => ({
    ...where(config, ["agents", name, ...path]),
    path: formatPath(["agents", name, ...path]),
    message,
  });
  // A NUL byte cannot be passed to a process (the OS ends the string there): every start would fail.
  const nul = [["command"], ["cwd"], ...spec.args.map((_, index) => ["args", index]), ...Object.keys(spec.env).map((key) => ["env", key])].find((path) => {
    const value = path.length === 1 ? spec[path[0] as "command" | "cwd"] : path[0] === "args" ? spec.args[path[1] as number] : spec.env[path[1] as string];
    return typeof value === "string" && value.includes("\0");
  });
  if (nul) return at(nul as Array<string | number>, `agent ${name}: contains a NUL byte (\\0), which no program can be given.`);
  // Only blanks: run through the shell, which did nothing and exited 0 (with args: a program "  " not found).
  if (spec.command.trim() === "") return at(["command"], `agent ${name}: the command is only blanks (${JSON.stringify(spec.command)}): there is no program to run.`);
  const cwd = resolve(config.projectDir, spec.cwd || ".");
  if (!isDirectory(cwd)) return at(["cwd"], `agent ${name}: the working directory ${cwd} ${isFile(cwd) ? "is a file, not a directory" : "does not exist"}.`);
  if (spec.args.length === 0 && SHELL_SYNTAX.test(spec.command)) return undefined;
  const program = resolveCommand(spec.command, cwd, spec.env.PATH ?? process.env.PATH ?? "");
  if (program.problem) return at(["command"], `agent ${name}: ${program.problem}`);
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

/**
 * Where the command is, or why it cannot run: missing, a directory, not executable, or a script
 * whose `#!` interpreter does not exist (spawn then fails with ENOENT, which reads as if the
 * script itself were missing).
 */
function resolveCommand(command: string, cwd: string, searchPath: string): { problem?: string } {
  if (command.includes("/")) {
    const file = resolve(cwd, command);
    const problem = whyNotRunnable(file);
    return problem === undefined ? {} : { problem: `the program ${command} ${problem === "does not exist" ? `does not exist (looked for ${file})` : problem}.` };
  }
  if (PROVIDED_COMMANDS.has(command)) return {};
  for (const dir of searchPath.split(delimiter)) {
    if (dir === "") continue;
    const file = join(resolve(cwd, dir), command);
    const problem = whyNotRunnable(file);
    if (problem === undefined) return {};
    if (problem.startsWith("runs through")) return { problem: `the program "${command}" (${file}) ${problem}.` };
  }
  return { problem: `the program "${command}" is not on PATH.` };
}

function whyNotRunnable(file: string, followShebang = true): string | undefined {
  try {
    if (statSync(file).isDirectory()) return `is a directory (${file})`;
  } catch {
    return "does not exist";
  }
  try {
    accessSync(file, constants.X_OK);
  } catch {
    return `is not executable (${file}): make it executable (chmod +x), or make its interpreter the command`;
  }
  const interpreter = followShebang ? shebangInterpreter(file) : undefined;
  const problem = interpreter === undefined ? undefined : whyNotRunnable(interpreter, false);
  return problem === undefined ? undefined : `runs through ${interpreter} (its #! line), which ${problem}`;
}

/** The program a script's `#!` line names, when it is an absolute path. */
function shebangInterpreter(file: string): string | undefined {
  let head = "";
  try {
    const fd = openSync(file, "r");
    try {
      const buffer = Buffer.alloc(256);
      head = buffer.toString("latin1", 0, readSync(fd, buffer, 0, buffer.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const match = /^#!\s*(\/\S+)/.exec(head);
  return match?.[1];
}
