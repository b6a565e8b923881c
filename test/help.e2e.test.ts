// Help that teaches, checked on the built CLI: every command's --help has an example and says
// what --json prints; `apex session --help` lists what plugins add; and no hint names an
// option its command does not have.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../core/errors.js";
import { APEX_BIN, REPO_ROOT, cleanEnv } from "./helpers/cli.js";
import { Project, shellAgents, waitFor } from "./fixtures/agents/harness.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "apex-help-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function apex(args: string[], cwd = dir, env: NodeJS.ProcessEnv = {}): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd, env: { ...cleanEnv(), NO_COLOR: "1", COLUMNS: "100", ...env }, encoding: "utf8", timeout: 60_000 });
  return { status: result.status ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** The subcommand names a help text lists under "Commands:". */
function subcommands(help: string): string[] {
  const start = help.indexOf("\nCommands:\n");
  if (start < 0) return [];
  const names: string[] = [];
  for (const line of help.slice(start + "\nCommands:\n".length).split("\n")) {
    if (line === "" || /^\S/.test(line)) break;
    const match = /^ {2}(\S+)/.exec(line);
    if (match && match[1] !== "help") names.push(match[1]!);
  }
  return names;
}

interface HelpPage {
  words: string[];
  text: string;
  group: boolean;
}

/** Every command's help page of the built CLI (plugin commands included), for the project in `cwd`. */
function walk(cwd: string): HelpPage[] {
  const result = spawnSync(process.execPath, [join(REPO_ROOT, "test/fixtures/help-pages.mjs")], { cwd, env: { ...cleanEnv(), NO_COLOR: "1" }, encoding: "utf8", timeout: 60_000 });
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as HelpPage[];
}

/** The option lines of a help text, each with its wrapped continuation joined. */
function optionBlocks(help: string): Map<string, string> {
  const blocks = new Map<string, string>();
  let current: string | undefined;
  for (const line of help.split("\n")) {
    const option = /^ {2}(-\w, )?(--[\w-]+)/.exec(line);
    if (option) {
      current = option[2]!;
      blocks.set(current, line.trim());
    } else if (current && /^ {10,}\S/.test(line)) blocks.set(current, `${blocks.get(current)} ${line.trim()}`);
    else current = undefined;
  }
  return blocks;
}

const everyPlugin = ["plugins:", "  checkpoint: {}", "  retention: {}", "  git: {}", "  metrics: {}", "  history: {}", "  compression: {}", "  archive: {}", ""].join("\n");

describe("help that teaches", () => {
  for (const [name, config] of [
    ["the default config", undefined],
    ["every built-in plugin", everyPlugin],
  ] as const) {
    it(`every command's --help has an example and says what --json prints (${name})`, () => {
      const project = mkdtempSync(join(dir, "project-"));
      if (config) writeFileSync(join(project, "apex.config.yaml"), config);
      const pages = walk(project);
      expect(pages.length).toBeGreaterThan(30);
      const problems: string[] = [];
      for (const page of pages) {
        const command = `apex ${page.words.join(" ")}`;
        if (!/\nExamples?:\n {2}(\S+=\S+ )?apex /.test(page.text)) problems.push(`${command}: no example`);
        if (!page.text.includes("--session")) problems.push(`${command}: does not name --session`);
        // Descriptions read as the rest of a line after the command, lowercase, as commander's own ("display help for command"); the git plugin's were capitalised.
        const description = page.text.split("\n")[2] ?? "";
        if (!/^[a-z]/.test(description)) problems.push(`${command}: description starts "${description.slice(0, 20)}"`);
        if (page.group) continue;
        const json = optionBlocks(page.text).get("--json");
        if (!json) problems.push(`${command}: no --json`);
        else if (!/[{[]/.test(json)) problems.push(`${command}: --json does not say what it prints ("${json}")`);
      }
      expect(problems).toEqual([]);
    });
  }

  it("every example line of every --help is a shell command as written (start's had a comment in parentheses, a syntax error when pasted)", () => {
    const project = mkdtempSync(join(dir, "project-"));
    writeFileSync(join(project, "apex.config.yaml"), everyPlugin);
    const pages = [{ words: [] as string[], text: apex(["--help"], project).stdout }, ...walk(project)];
    const problems: string[] = [];
    let lines = 0;
    for (const page of pages) {
      const start = page.text.search(/\nExamples?:\n/);
      if (start < 0) continue;
      for (const line of page.text.slice(start).split("\n").slice(2)) {
        if (!/^ {2}\S/.test(line)) break;
        lines += 1;
        const check = spawnSync("bash", ["-n", "-c", line.trim()], { encoding: "utf8" });
        if (check.status !== 0) problems.push(`apex ${page.words.join(" ")}: ${line.trim()}: ${check.stderr.trim()}`);
      }
    }
    expect(lines).toBeGreaterThan(100);
    expect(problems).toEqual([]);
  });

  it("apex --help and README list the same exit codes, every one APEX has (--help left out 130)", () => {
    const codes = (text: string) => [...text.matchAll(/\*{0,2}(\d+)\*{0,2} (?:ok|failure|usage|not found|conflict|interrupted)/g)].map((match) => Number(match[1]));
    const help = /Exit codes: ([^]*?)\nExamples/.exec(apex(["--help"]).stdout)?.[1] ?? "";
    const readme = /Exit codes: ([^]*?)interrupted/.exec(readFileSync(join(REPO_ROOT, "README.md"), "utf8"))?.[0] ?? "";
    const all = [...new Set(Object.values(ExitCode))].sort((a, b) => a - b);
    expect(codes(help)).toEqual(all);
    expect(codes(readme)).toEqual(all);
  });

  it("every option that takes a duration says so in its --help, that units may be given, with an example in units (every built-in plugin)", () => {
    const project = mkdtempSync(join(dir, "project-"));
    writeFileSync(join(project, "apex.config.yaml"), everyPlugin);
    const found: string[] = [];
    const problems: string[] = [];
    for (const page of walk(project)) {
      for (const [long, block] of optionBlocks(page.text)) {
        const placeholder = /^(?:-\w, )?--[\w-]+ <([^>]+)>/.exec(block)?.[1];
        const option = `apex ${page.words.join(" ")} ${long}`;
        // An option of time by its name or its placeholder (`--timeout <seconds>` said "this many seconds", nothing of 30s or 5m).
        const timed = /timeout|grace|older|expires|interval|ttl|delay|within/.test(long) || /^(seconds|ms|time|secs|minutes)$/.test(placeholder ?? "");
        if (placeholder === "duration") found.push(option);
        else if (timed) problems.push(`${option}: takes <${placeholder}>, not <duration>`);
        if (placeholder !== "duration") continue;
        if (!/a duration, e\.g\. \d+[smhdw]\b(, \d+\w+)*/.test(block)) problems.push(`${option}: no example in units ("${block}")`);
        if (!block.includes("(a number alone is seconds; units s, m, h, d, w)")) problems.push(`${option}: does not say what a number alone is, nor the units ("${block}")`);
      }
    }
    expect(problems).toEqual([]);
    expect(found.sort()).toEqual(["apex memory watch --timeout", "apex session archive --older-than", "apex session compress --older-than", "apex session share --expires", "apex stop --grace"]);
  });

  it("README documents every command and option --help lists (the options by their long or short name)", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const missing: string[] = [];
    for (const page of walk(mkdtempSync(join(dir, "project-")))) {
      if (page.group) continue;
      const command = `apex ${page.words.join(" ")}`;
      // `apex task done ID` / `fail ID --reason R`: a row names further commands of its group after a slash.
      const named = readme.includes(command) || (page.words.length > 1 && readme.includes(`/ \`${page.words.at(-1)} `));
      if (!named) missing.push(command);
      for (const [, short, long] of page.text.matchAll(/^ {2}(?:-(\w), )?(--[\w-]+)/gm)) {
        if (long === "--help" || long === "--json" || long === "--session") continue;
        if (!readme.includes(long!) && !(short && new RegExp(`[\\s\\[\`]-${short}[\\s\\]\`]`).test(readme))) missing.push(`${command} ${long}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("apex session --help (and apex help session) lists the commands plugins add", () => {
    const project = mkdtempSync(join(dir, "project-"));
    writeFileSync(join(project, "apex.config.yaml"), everyPlugin);
    for (const args of [["session", "--help"], ["help", "session"], ["session", "-h"]]) {
      const names = subcommands(apex(args, project).stdout);
      expect(names).toEqual(expect.arrayContaining(["list", "validate", "cleanup", "sync-git", "metrics", "report", "compress", "archive", "unarchive"]));
    }
    // With the defaults too, and the top-level help lists the plugins' top-level commands.
    const defaults = mkdtempSync(join(dir, "project-"));
    expect(subcommands(apex(["session", "--help"], defaults).stdout)).toEqual(expect.arrayContaining(["cleanup", "metrics", "report"]));
    expect(subcommands(apex(["--help"], defaults).stdout)).toContain("git");
    // A broken config does not break help: the core commands, and why the others are missing.
    const broken = mkdtempSync(join(dir, "project-"));
    writeFileSync(join(broken, "apex.config.yaml"), "plugins:\n  nosuchplugin: {}\n");
    const help = apex(["session", "--help"], broken);
    expect(help.status).toBe(0);
    expect(subcommands(help.stdout)).toContain("validate");
    expect(help.stdout).toContain("Commands added by plugins are not listed");
  });

  it("apex help A B is apex A B --help, a plugin's command's too; help on a command no group has is exit 2, APEX_E_USAGE", () => {
    const project = mkdtempSync(join(dir, "project-"));
    writeFileSync(join(project, "apex.config.yaml"), everyPlugin);
    // Before, `apex help git` printed APEX's own help on stderr (exit 0), `apex help session cleanup` the session group's.
    for (const [asked, usage] of [
      [["help", "git"], "Usage: apex git [options] [command] [git-args...]"],
      [["help", "backup"], "Usage: apex backup [options]"],
      [["help", "session", "cleanup"], "Usage: apex session cleanup [options] [id]"],
      [["session", "help", "report"], "Usage: apex session report [options] [id]"],
      [["help", "task", "add"], "Usage: apex task add [options] <title>"],
    ] as const) {
      const help = apex([...asked], project);
      expect({ asked, status: help.status, stderr: help.stderr, first: help.stdout.split("\n")[0] }).toEqual({ asked, status: 0, stderr: "", first: usage });
      expect(help.stdout).toBe(apex([...asked.filter((word) => word !== "help"), "--help"], project).stdout);
    }
    // `apex logs help`: the logs of an agent named help, not help on logs.
    expect(apex(["logs", "help"], project).stderr).not.toContain("Usage:");
    // Before, each printed the program's or the group's help and exited 0, as if the command existed.
    for (const asked of [["help", "statsu"], ["statsu", "--help"], ["session", "nonsense", "-h"], ["help", "task", "clam"]]) {
      const help = apex(asked, project);
      expect(help.status, asked.join(" ")).toBe(2);
      expect(help.stdout, asked.join(" ")).toBe("");
      expect(help.stderr, asked.join(" ")).toMatch(/^error\[APEX_E_USAGE\]: unknown command '(statsu|nonsense|clam)'\n/);
      const json = apex([...asked, "--json"], project);
      expect(json.status).toBe(2);
      expect(JSON.parse(json.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringMatching(/^unknown command/) });
    }
    expect(apex(["statsu", "--help"], project).stderr).toContain("hint: Did you mean apex status?");
  });

  it("the parallel-tracks and sharing pages say what the commands accept today", () => {
    const project = mkdtempSync(join(dir, "project-"));
    const page = (...words: string[]) => apex([...words, "--help"], project).stdout.replace(/\s+/g, " ");
    const branch = page("session", "branch");
    // Sessions run side by side: a branch with a worktree does not stop the project's session.
    expect(branch).not.toContain("one session is active at a time");
    expect(branch).toContain("beside the project's session");
    expect(branch).toMatch(/not only a-f, digits and '-'/);
    expect(branch).toContain("Exit codes: 2 a bad NAME or DIR, 3 no such checkpoint");
    const merge = page("session", "merge");
    expect(merge).toMatch(/dst +the session merged into \(id, name, unique id prefix,\s+or current\); left out, the one --session names: one\s+of the two is needed/);
    // Examples run as written in a new project: its first session has no name such as "main".
    expect(merge).not.toMatch(/apex session merge \S+ main\b/);
    expect(merge).toContain("apex session merge experimental-feature current --dry-run");
    expect(merge).toContain("checkpoint it first");
    expect(page("session", "tree")).toContain("One line per checkpoint that shapes the graph");
    for (const words of [["session", "share"], ["session", "unshare"], ["session", "shares"]]) expect(page(...words), words.join(" ")).toMatch(/session +the session: .*name/);
    expect(page("connect")).toContain("branch name");
    // Every session argument and --session reads a branch's name too (their help said "id or unique prefix").
    writeFileSync(join(project, "apex.config.yaml"), everyPlugin);
    for (const words of [["session", "history"], ["session", "validate"], ["session", "reconstruct"], ["session", "cleanup"], ["session", "compress"], ["session", "export"], ["session", "sync-git"], ["task", "list"], ["task", "show"], ["milestone"], ["agent", "list"]]) {
      expect(page(...words), words.join(" ")).toContain("a branch's name");
    }
    // What an operator may do, as the role table says: continue too, and of tasks only add and reopen
    // ("tasks" read as every task command; claim, done and fail need owner).
    expect(page("session", "share")).toContain("operator (also pause, resume, continue, checkpoint create, task add and reopen, memory set)");
    // The memory is where `store:` puts it (it said "in LMDB", on PostgreSQL too).
    expect(page("memory")).toContain("in LMDB or PostgreSQL as `store:` says");
  });

  it("apex serve, connect and login refuse --session, which would choose nothing (exit 2: nothing served, sent or saved), and their help says so", async () => {
    const project = mkdtempSync(join(dir, "project-"));
    // A port in use: before, `serve --session X` went on to listen (here: exit 4) as if it served X alone.
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as AddressInfo).port;
    const credentials = join(project, "credentials.json");
    const env = { APEX_TOKEN: `apx_0123456789abcdef_${"A".repeat(43)}`, APEX_CREDENTIALS: credentials };
    try {
      for (const [command, args] of [
        ["serve", ["serve", "--session", "feature", "--listen", `127.0.0.1:${port}`, "--json"]],
        ["connect", ["--session", "feature", "connect", `127.0.0.1:${port}/feature`, "--json"]],
        ["login", ["login", "127.0.0.1:7433", "--session=feature", "--json"]],
      ] as const) {
        const result = apex([...args], project, env);
        expect(result.status, `${command}: ${result.stderr}`).toBe(2);
        expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringContaining(`does not work with \`apex ${command}\``) });
        expect(apex([command, "--help"], project).stdout).toContain("--session is refused here");
      }
      expect(existsSync(credentials)).toBe(false);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it("no hint names an option its command does not have", () => {
    const project = mkdtempSync(join(dir, "project-"));
    const pages = new Map(walk(project).map((page) => [page.words.join(" "), page]));
    const helpOptions = (words: string[]): Set<string> => new Set(optionBlocks(pages.get(words.join(" "))?.text ?? "").keys());
    const isCommand = (words: string[]) => pages.has(words.join(" "));
    const situations: string[][] = [
      ["checkpoint", "create", "x"],
      ["checkpoint", "show", "latest"],
      ["checkpoint", "list"],
      ["checkpoint", "diff", "checkpoint-001", "latest"],
      ["checkpoint", "pin", "latest"],
      ["task", "list"],
      ["task", "add", "x"],
      ["task", "claim"],
      ["milestone", "x"],
      ["agent", "report", "--status", "x"],
      ["agent", "list"],
      ["pause"],
      ["resume"],
      ["stop"],
      ["logs"],
      ["memory", "show", "/nothing"],
      ["session", "validate"],
      ["session", "repair"],
      ["session", "reconstruct", "nope"],
      ["session", "sync-git"],
      ["session", "metrics"],
      ["session", "report"],
      ["session", "cleanup"],
      ["start", "--continue", "last"],
    ];
    const problems: string[] = [];
    let hints = 0;
    const check = (args: string[], line: string) => {
      const own = args.filter((arg) => !arg.startsWith("-")).slice(0, 2);
      while (own.length > 1 && !isCommand(own)) own.pop();
      // Each `apex …` command a hint names: its options must be that command's.
      let rest = line;
      for (const match of line.matchAll(/apex ((?:[a-z][\w-]* ?)+)([^`]*)/g)) {
        rest = rest.replace(match[0], "");
        const words = match[1]!.trim().split(" ");
        while (words.length > 0 && !isCommand(words)) words.pop();
        if (words.length === 0) continue;
        for (const flag of match[2]!.matchAll(/--[a-z][\w-]*/g)) {
          if (!helpOptions(words).has(flag[0])) problems.push(`apex ${args.join(" ")}: its hint names ${flag[0]}, which apex ${words.join(" ")} does not have: ${line.trim()}`);
        }
      }
      // Any other option it names: the failing command's own.
      for (const flag of rest.matchAll(/--[a-z][\w-]*/g)) {
        if (!helpOptions(own).has(flag[0])) problems.push(`apex ${args.join(" ")}: its hint names ${flag[0]}, which it does not have: ${line.trim()}`);
      }
    };
    // A fresh project (no store), then one with a store but no session.
    for (const prepare of [() => undefined, () => expect(apex(["memory", "set", "/notes/a", "1"], project).status).toBe(0)]) {
      prepare();
      for (const args of situations) {
        const result = apex(args, project);
        for (const line of result.stderr.split("\n").filter((text) => text.includes("hint:"))) {
          hints += 1;
          check(args, line);
        }
      }
    }
    expect(hints).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });
});

describe("what agents are given, as README and --help say", () => {
  it("the APEX_* variables an agent gets are the ones `apex start --help` and README name (README left out APEX_SUPERVISOR_PID)", async () => {
    const project = new Project(shellAgents({ w: "env | grep -o '^APEX_[A-Z_]*=' | sort | tr '\\n' ' '; echo; while true; do sleep 0.5; done" }));
    try {
      project.start();
      const given = await waitFor("the agent's environment in its log", () => {
        const line = project.apex(["logs", "w", "--json"]).stdout.split("\n").find((text) => text.includes("APEX_SESSION_ID"));
        return line ? ((JSON.parse(line) as { line: string }).line.match(/APEX_[A-Z_]+/g) ?? undefined) : undefined;
      });
      // APEX_AGENT_NONCE is APEX's proof that a process is its own, for APEX alone (README: The keyspace), not for agents to use.
      given!.splice(given!.indexOf("APEX_AGENT_NONCE"), 1);
      // Those given when continued only (APEX_RESUME_*), and APEX_CONFIG (set with a config file, as here), are named too.
      const listed = (text: string) => new Set(/Agents get ([^]*?)(?:\.\s|, and an `apex`)/.exec(text)?.[1]?.match(/APEX_[A-Z_]+/g) ?? []);
      const help = listed(project.apex(["start", "--help"]).stdout);
      const readme = listed(readFileSync(join(REPO_ROOT, "README.md"), "utf8"));
      expect(help.size).toBeGreaterThan(5);
      expect([...given!].filter((name) => !help.has(name))).toEqual([]);
      expect([...given!].filter((name) => !readme.has(name))).toEqual([]);
      expect([...help].filter((name) => !readme.has(name))).toEqual([]);
      expect([...readme].filter((name) => !help.has(name))).toEqual([]);
    } finally {
      project.cleanup();
    }
  }, 60_000);
});

describe("what --json prints, named in --help", () => {
  it("each key a command's --json prints is one its --help names: every key for the commands whose help gives the whole shape (session cleanup printed time_zone, skipped, sweep_error … unnamed), the top level for the others (session list and history: test/session-bound-reads.e2e.test.ts)", async () => {
    // quick ends (exit 0: not restarted) once told to, leaving a task assigned to it stranded: status --json then has stranded_tasks.
    const project = new Project(`${shellAgents({ w: "while true; do sleep 0.5; done", quick: "until [ -e go ]; do sleep 0.1; done" })}`.replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n  retention: { keep_last: 1 }\n  archive: {}\n  metrics: {}\n"));
    try {
      const ready = project.start();
      expect(project.apex(["task", "add", "for quick", "--assign", "quick"]).status).toBe(0);
      writeFileSync(join(project.dir, "go"), "");
      await waitFor("quick to end", () => project.status().agents.find((agent) => agent.name === "quick")?.status === "exited");
      writeFileSync(join(project.dir, "import.json"), '{"/i": 1}');
      /** Each key of VALUE with its depth: an array's items' keys are at its own depth. */
      const keys = (value: unknown, depth = 0, out: Array<[string, number]> = []): Array<[string, number]> => {
        if (Array.isArray(value)) for (const item of value) keys(item, depth, out);
        else if (value !== null && typeof value === "object") for (const [key, child] of Object.entries(value)) out.push([key, depth], ...keys(child, depth + 1));
        return out;
      };
      const problems: string[] = [];
      // start printed log, reconciled, checkpoint and event_seq, none of them named.
      const startHelp = optionBlocks(project.apex(["start", "--help"], { env: { COLUMNS: "100" } }).stdout).get("--json") ?? "";
      for (const [key, depth] of new Map(keys(ready))) {
        if (!new RegExp(`[{ [(]${key}([,}:\\] )?]|$)`).test(startHelp)) problems.push(`start --json prints ${key} (depth ${depth}), its --help does not name it`);
      }
      // "whole": every key, at any depth, is named (the help gives the whole shape); "top": the keys at the top (or of an array's items);
      // a number: the keys down to that depth (below it: records of the store, as they are); "run": a step.
      for (const [args, check] of [
        // status printed recover_with, connected and stranded_tasks unnamed, and named 5 of its session's 17 keys and 8 of an agent's
        // 17 (then "…"); the task commands completed_by and failed_by; session archive skipped, sweep and sweep_error (behind "…").
        [["status"], "whole"],
        [["task", "add", "one"], "whole"],
        [["task", "claim", "--agent", "w"], "whole"],
        [["task", "done", "t-0002"], "whole"],
        [["task", "add", "two"], "whole"],
        [["task", "fail", "t-0003", "--reason", "no"], "whole"],
        [["task", "reopen", "t-0003"], "whole"],
        [["task", "show", "t-0002"], "whole"],
        [["task", "list"], "whole"],
        [["checkpoint", "create", "two"], "top"],
        [["agent", "list"], "whole"],
        // session metrics named 9 of its 30 keys (then "…"), agent report 8 of 15; checkpoint diff's from and to left out
        // sessionId (printed beside session_id as it was before), backup the shape of its validation.
        [["agent", "report", "--agent", "w", "--status", "busy"], "whole"],
        [["session", "metrics"], "whole"],
        [["checkpoint", "diff", "checkpoint-001", "latest"], 1],
        [["backup", "--to", "backups"], "whole"],
        [["config", "path"], "whole"],
        [["plugins", "list"], 1],
        [["pause"], "whole"],
        [["resume"], "whole"],
        [["milestone", "half way"], "whole"],
        [["stop"], "run"],
        [["session", "archive", "--older-than", "0s", "--dry-run"], "whole"],
        [["session", "cleanup", "--dry-run"], "whole"],
        [["session", "cleanup"], "whole"],
        [["checkpoint", "list"], "whole"],
        [["session", "validate"], "whole"],
        [["session", "tree"], "whole"],
        [["session", "export", "last", "-o", "last.apexbundle"], "whole"],
        [["checkpoint", "pin", "latest"], "top"],
        [["checkpoint", "unpin", "latest"], "top"],
        [["checkpoint", "show", "latest"], "top"],
        [["checkpoint", "delete", "latest"], "top"],
        [["memory", "set", "/k", "2"], "whole"],
        [["memory", "import", "import.json"], "whole"],
        [["memory", "delete", "/k"], "whole"],
        // Last: it starts the session again (README: `recovery` in `--json`, which its --help did not name).
        [["start", "--force-recovery", "checkpoint-001"], "top"],
      ] as Array<[string[], "whole" | "top" | "run" | number]>) {
        if (check === "run") {
          expect(project.apex(args).status, args.join(" ")).toBe(0);
          continue;
        }
        const words = args[0] === "start" ? ["start"] : args.slice(0, 2).filter((word, at) => !args.slice(0, at + 1).some((arg) => arg.startsWith("-")));
        const help = optionBlocks(project.apex([...words, "--help"], { env: { COLUMNS: "100" } }).stdout).get("--json") ?? "";
        const result = project.apex([...args, "--json"]);
        expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
        for (const [key, depth] of new Map(keys(JSON.parse(result.stdout)).filter(([, depth]) => check === "whole" || depth <= (check === "top" ? 0 : check)))) {
          // An agent's name is a key of the data (session metrics' {AGENT: …}), not of the shape.
          if (["w", "quick"].includes(key)) continue;
          if (!new RegExp(`[{ [(]${key}([,}:\\] )?]|$)`).test(help)) problems.push(`${args.join(" ")} --json prints ${key} (depth ${depth}), its --help does not name it`);
        }
      }
      expect(problems).toEqual([]);
    } finally {
      project.cleanup();
    }
  }, 90_000);
});
