import { spawnSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { APEX_BIN, cleanEnv, runApex, tempDir } from "./helpers/cli.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-input-"));
});
afterEach(() => cleanup());

const apex = (args: string[], input?: string) => runApex(args, input === undefined ? { cwd: dir } : { cwd: dir, input });

/** Everything in the keyspace. */
const keyspace = () => JSON.parse(apex(["memory", "export"]).stdout) as Record<string, unknown>;

/** `levels` arrays inside each other around 1, as JSON text. */
const nestedJson = (levels: number) => `${"[".repeat(levels)}1${"]".repeat(levels)}`;

/**
 * Runs apex with arguments given as raw bytes (Node's spawn only passes strings, as UTF-8): a
 * shell builds each argument with printf from octal escapes.
 */
function apexWithBytes(args: Buffer[], stdin?: Buffer): { status: number; stdout: string; stderr: string } {
  const octal = (bytes: Buffer) => [...bytes].map((byte) => `\\${byte.toString(8).padStart(3, "0")}`).join("");
  const script = `exec "${process.execPath}" "${APEX_BIN}" ${args.map((arg) => `"$(printf '${octal(arg)}')"`).join(" ")}`;
  const result = spawnSync("/bin/sh", ["-c", script], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" }, input: stdin, encoding: "utf8" });
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

describe("nesting depth at the CLI", () => {
  it("refuses a value deeper than 512 levels with exit 2 and writes nothing; one at 512 reads, exports and imports back", () => {
    for (const levels of [513, 4_000]) {
      const refused = apex(["memory", "set", "/deep", "-"], nestedJson(levels));
      expect(refused.status).toBe(2);
      expect(refused.stderr).toContain("error[APEX_E_TOO_DEEP]: /deep: The value nests arrays and objects more than 512 levels deep.");
      expect(keyspace()).toEqual({});
    }
    writeFileSync(join(dir, "deep.json"), JSON.stringify({ "/a": 1, "/b": JSON.parse(nestedJson(513)) }));
    const importRefused = apex(["memory", "import", "deep.json"]);
    expect(importRefused.status).toBe(2);
    expect(importRefused.stderr).toContain("error[APEX_E_TOO_DEEP]: /b:");
    expect(keyspace()).toEqual({});

    expect(apex(["memory", "set", "/deep", "-"], nestedJson(512)).status).toBe(0);
    const shown = apex(["memory", "show", "/deep", "--json"]);
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout).value).toEqual(JSON.parse(nestedJson(512)));
    const exported = apex(["memory", "export"]);
    expect(exported.status).toBe(0);
    expect(apex(["memory", "delete", "/deep"]).status).toBe(0);
    expect(apex(["memory", "import", "-"], exported.stdout).status).toBe(0);
    expect(JSON.parse(apex(["memory", "show", "/deep", "--json"]).stdout).value).toEqual(JSON.parse(nestedJson(512)));
  });
});

describe("invalid UTF-8", () => {
  const latin1 = Buffer.from([0x2f, 0x63, 0x61, 0x66, 0xe9]); // "/café" in Latin-1

  it("in a path argument: exit 2, nothing written", () => {
    const result = apexWithBytes([Buffer.from("memory"), Buffer.from("set"), latin1, Buffer.from("1")]);
    expect(result.stderr).toContain('error[APEX_E_BAD_INPUT]: Argument 3 is not valid UTF-8: "/caf\\xe9".');
    expect(result.status).toBe(2);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("in a value argument and on stdin: exit 2, nothing written", () => {
    const value = Buffer.concat([Buffer.from('"'), latin1, Buffer.from('"')]);
    const asArgument = apexWithBytes([Buffer.from("memory"), Buffer.from("set"), Buffer.from("/a"), value]);
    expect(asArgument.status).toBe(2);
    expect(asArgument.stderr).toContain("error[APEX_E_BAD_INPUT]: Argument 4 is not valid UTF-8");
    const onStdin = apexWithBytes([Buffer.from("memory"), Buffer.from("set"), Buffer.from("/a"), Buffer.from("-")], value);
    expect(onStdin.status).toBe(2);
    expect(onStdin.stderr).toContain('error[APEX_E_BAD_INPUT]: stdin:1: not valid UTF-8: "\\"/caf\\xe9\\"".');
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("in an import file: exit 2, the line named, nothing written", () => {
    writeFileSync(join(dir, "in.ndjson"), Buffer.concat([Buffer.from('{"path": "/ok", "value": 1}\n{"path": "'), latin1, Buffer.from('", "value": 2}\n')]));
    const result = apex(["memory", "import", "in.ndjson"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('error[APEX_E_BAD_INPUT]: in.ndjson:2: not valid UTF-8: "{\\"path\\": \\"/caf\\xe9\\", \\"value\\": 2}".');
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("keeps a U+FFFD that was really given (the bytes EF BF BD)", () => {
    const path = Buffer.from("/r\ufffdsum\u00e9");
    const result = apexWithBytes([Buffer.from("memory"), Buffer.from("set"), path, Buffer.from('"\ufffd"')]);
    expect(result.stderr).toBe("");
    expect(result.status).toBe(0);
    expect(JSON.parse(apex(["memory", "query", "/**", "--json"]).stdout)).toEqual({ "/r\ufffdsumé": "\ufffd" });
  });
});

describe("a plugin file that exists but does not load", () => {
  it.each([
    ["a syntax error", "export default { name: 'bad', apply( { oops", "could not be loaded"],
    ["a throw at load", "throw new Error('boom at load');", "could not be loaded: boom at load"],
    ["no plugin exported", "export default 42;", "does not export a valid APEX plugin"],
  ])("(%s) blocks direct writes with exit 2, as config validate does", (_name, source, message) => {
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  ./my-plugin.mjs: {}\n");
    writeFileSync(join(dir, "my-plugin.mjs"), source);
    const validate = apex(["config", "validate"]);
    expect(validate.status).toBe(2);
    expect(validate.stderr).toContain(message);
    for (const args of [["memory", "set", "/a", "1"], ["memory", "import", "-"]]) {
      const result = apex(args, '{"/a": 1}');
      expect(result.status).toBe(2);
      expect(result.stderr).toContain("error[APEX_E_PLUGIN_INVALID]");
      expect(result.stderr).toContain(message);
    }
    expect(existsSync(join(dir, ".apex"))).toBe(false);
    writeFileSync(join(dir, "my-plugin.mjs"), "export default { name: 'mine', apply() {} };");
    expect(apex(["memory", "set", "/a", "1"]).status).toBe(0);
  });
});

describe("usage errors the argument parser finds", () => {
  it("are one JSON line on stderr with --json (APEX_E_USAGE, exit 2), the text otherwise; nothing is written", () => {
    const cases: Array<[string[], RegExp]> = [
      [["checkpoint", "show", "--json"], /missing required argument 'checkpoint'/],
      [["memory", "set", "/x", "--json"], /missing required argument 'json'/],
      [["checkpoint", "list", "--bogus", "--json"], /unknown option '--bogus'/],
      [["memory", "show", "/a", "/b", "--json"], /too many arguments/],
      [["store", "migrate", "--json"], /required option '--to <url>' not specified/],
      [["session", "frobnicate", "--json"], /unknown command 'frobnicate'/],
      [["memory", "query", "/**", "--limit", "--json"], /argument missing|--limit/],
    ];
    for (const [args, message] of cases) {
      const result = apex(args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      const lines = result.stderr.trim().split("\n");
      expect(lines, args.join(" ")).toHaveLength(1);
      const error = JSON.parse(lines[0]!).error;
      expect(error).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2 });
      expect(error.message).toMatch(message);
      expect(error.message).not.toMatch(/^error:/);
      expect(result.stdout).toBe("");
      const text = apex(args.filter((arg) => arg !== "--json"));
      expect(text.status).toBe(2);
      expect(text.stderr).toMatch(message);
      // In the form of every other error, with its code.
      expect(text.stderr).toMatch(/^error\[APEX_E_USAGE\]: /);
    }
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("a session named as an argument of stop, pause, resume or status is answered with how to name it (--session)", () => {
    for (const command of ["stop", "pause", "resume", "status"]) {
      const text = apex([command, "feat"]);
      expect(text.status).toBe(2);
      expect(text.stderr).toContain(`hint: A session is named with --session: apex ${command} --session feat`);
      const json = apex([command, "feat", "--json"]);
      expect(json.status).toBe(2);
      expect(JSON.parse(json.stderr.trim()).error).toMatchObject({ code: "APEX_E_USAGE", hint: `A session is named with --session: apex ${command} --session feat` });
    }
    // `session metrics` takes no ID either (history, report and sync-git beside it do).
    const metrics = apex(["session", "metrics", "feat", "--json"]);
    expect(metrics.status).toBe(2);
    expect(JSON.parse(metrics.stderr.trim()).error).toMatchObject({ code: "APEX_E_USAGE", hint: "A session is named with --session: apex session metrics --session feat" });
    // Other commands keep the general hint.
    expect(JSON.parse(apex(["memory", "show", "/a", "/b", "--json"]).stderr.trim()).error.hint).toBe("Run the command with --help for its usage.");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("a group's command given at the top level (apex report) is answered with the group it is in, plugin groups included", () => {
    // `report` is added to `session` by the history plugin, and `agent` has a `report` of its own.
    const json = apex(["report", "--json"]);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stderr.trim()).error).toMatchObject({ code: "APEX_E_USAGE", hint: "Did you mean apex agent report, apex session report?" });
    const text = apex(["create"]);
    expect(text.status).toBe(2);
    expect(text.stderr).toContain("hint: Did you mean apex checkpoint create? (`apex checkpoint --help` lists that group's commands)");
    // Commander's guess at the top level knew no subcommands ("report": "Did you mean memory?"); it is not printed.
    expect(apex(["report"]).stderr).not.toContain("memory");
    expect(apex(["statuss"]).stderr).toContain("hint: Did you mean apex status?");
    // A subcommand's typo keeps commander's suggestion within its group.
    expect(apex(["session", "reprot"]).stderr).toContain("(Did you mean report?)");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("a word other tools use for a memory or checkpoint command is answered with APEX's command, not the nearest spelling", () => {
    // `memory get` was answered "(Did you mean set?)", a write; `checkpoint restore` with nothing.
    const get = apex(["memory", "get", "/notes/today"]);
    expect(get.status).toBe(2);
    expect(get.stderr).toContain("error[APEX_E_USAGE]: unknown command 'get'");
    expect(get.stderr).not.toContain("set");
    expect(get.stderr).toContain("hint: Did you mean apex memory show?");
    const restore = apex(["checkpoint", "restore", "checkpoint-002", "--json"]);
    expect(restore.status).toBe(2);
    expect(JSON.parse(restore.stderr.trim()).error).toMatchObject({
      code: "APEX_E_USAGE",
      message: "unknown command 'restore'.",
      hint: "A checkpoint is restored by apex start --continue checkpoint-002, which first saves the state it replaces (`apex session branch checkpoint-002 NAME` tries it beside the current session).",
    });
    expect(apex(["checkpoint", "rm", "latest"]).stderr).toContain("hint: Did you mean apex checkpoint delete?");
    // A typo still gets commander's guess within its group.
    expect(apex(["memory", "qeury", "/a"]).stderr).toContain("(Did you mean query?)");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });
});

describe("a project without a store", () => {
  it("session cleanup, compress and archive (dry run or not) have nothing to do and create no store", () => {
    // Before, each opened the store for writing and so created .apex/store.mdb, a dry run too.
    for (const args of [
      ["session", "cleanup", "--dry-run"],
      ["session", "cleanup", "--json"],
      ["session", "compress", "--dry-run"],
      ["session", "compress", "--json"],
      ["session", "archive", "--older-than", "1d", "--dry-run", "--json"],
    ]) {
      const result = apex(args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      if (args.includes("--json")) expect(JSON.parse(result.stdout)).toMatchObject({ dry_run: args.includes("--dry-run") });
      expect(existsSync(join(dir, ".apex")), args.join(" ")).toBe(false);
    }
    expect(apex(["session", "cleanup", "--json"]).stdout).toContain('"sessions": []');
    // A level out of range: the hint is a command line that works (it was "e.g. --level (gzip) 9").
    const level = apex(["session", "compress", "--algorithm", "gzip", "--level", "10", "--json"]);
    expect(level.status).toBe(2);
    expect(JSON.parse(level.stderr.trim()).error).toMatchObject({ code: "APEX_E_USAGE", hint: "e.g. --level 9: gzip levels go from 0 to 9." });
    const named = apex(["session", "compress", "3f2a9c1e", "--json"]);
    expect(named.status).toBe(3);
    expect(JSON.parse(named.stderr.trim()).error.code).toBe("APEX_E_NO_SESSION");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("memory import of an empty object writes nothing and makes no store; one with entries makes it", () => {
    writeFileSync(join(dir, "empty.json"), "{}\n");
    const text = apex(["memory", "import", "empty.json"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toBe("imported 0 entries: empty.json is an empty object, nothing was written (revision 0)\n");
    const json = apex(["memory", "import", "-", "--json"], "{}");
    expect(JSON.parse(json.stdout)).toEqual({ count: 0, revision: 0 });
    // It made .apex/store.mdb while saying nothing was written.
    expect(existsSync(join(dir, ".apex"))).toBe(false);
    expect(apex(["memory", "import", "-"], '{"/a": 1}').status).toBe(0);
    expect(keyspace()).toEqual({ "/a": 1 });
    // With the store there, an empty import reports its revision as before.
    expect(JSON.parse(apex(["memory", "import", "empty.json", "--json"]).stdout)).toMatchObject({ count: 0 });
  });

  it("start --continue has nothing to continue: refused as on an empty store, with no supervisor launched and no store made", () => {
    // Before, a supervisor was launched, created .apex/store.mdb and supervisor.log, and only then found nothing to continue.
    writeFileSync(join(dir, "apex.config.yaml"), 'agents:\n  a: {command: sleep, args: ["1000"]}\n');
    const refusals: Array<[string, string, number, string]> = [
      ["last", "APEX_E_NO_SESSION", 3, "There is no session to continue."],
      ["3f2a9c1e", "APEX_E_NOT_FOUND", 3, 'No session or checkpoint "3f2a9c1e".'],
      ["checkpoint-001", "APEX_E_NOT_FOUND", 3, 'No session or checkpoint "checkpoint-001".'],
      ["a/b/c", "APEX_E_USAGE", 2, '"a/b/c" is not a checkpoint reference: it has more than one "/".'],
    ];
    for (const [ref, code, exitCode, message] of refusals) {
      const result = apex(["start", "--continue", ref, "--json"]);
      expect(result.status, `${ref}: ${result.stderr}`).toBe(exitCode);
      expect(result.stdout).toBe("");
      expect(JSON.parse(result.stderr.trim()).error).toMatchObject({ code, exitCode, message });
      expect(existsSync(join(dir, ".apex")), ref).toBe(false);
    }
  });
});

describe("option and argument values", () => {
  // Every plugin with commands that take values, so their options are checked too.
  const CONFIG = "plugins:\n  checkpoint: {}\n  retention: {}\n  history: {}\n  compression: {}\n  archive: {}\n";
  const MAX = String(Number.MAX_SAFE_INTEGER);

  it.each([
    // Numbers: digits only, exact (a safe integer), within the option's range; Number() would take each of these.
    [["checkpoint", "list", "--limit", "1e20"], `--limit: Expected a whole number ≥ 1, got "1e20".`],
    [["checkpoint", "list", "--limit", "99999999999999999"], `--limit: Expected a whole number from 1 to ${MAX}, got "99999999999999999".`],
    [["checkpoint", "list", "--offset", "0x10"], `--offset: Expected a whole number ≥ 0, got "0x10".`],
    [["checkpoint", "show", "latest", "--keys-limit", "2.0"], `--keys-limit: Expected a whole number ≥ 0, got "2.0".`],
    [["memory", "query", "/a", "--limit", " 5"], `--limit: Expected a whole number ≥ 1, got " 5".`],
    [["memory", "watch", "/a", "--since", "-1"], `--since: Expected a whole number ≥ 0, got "-1".`],
    [["logs", "-n", "Infinity"], `--lines: Expected a whole number ≥ 0, got "Infinity".`],
    [["session", "compress", "--after", "1e3"], `--after: Expected a whole number ≥ 0, got "1e3".`],
    [["session", "compress", "--level", "12"], `--level (brotli): Expected a whole number from 0 to 11, got "12".`],
    [["stop", "--grace", "2h"], `--grace: "2h" is longer than the longest allowed, 3600 seconds.`],
    // Empty and blank values: a usage error naming the option, never "as if it were not given".
    [["session", "reconstruct", "3f2a9c1e", "--as", ""], `--as: Expected a value, got "".`],
    // A session id or name a user chooses: one check (plugins/checkpoint/session-name.ts) wherever one is taken; `--as "x y"` was taken.
    [["session", "reconstruct", "3f2a9c1e", "--as", "x y"], `Invalid session id "x y": use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or a digit.`],
    [["session", "reconstruct", "3f2a9c1e", "--as", "a/b"], `Invalid session id "a/b": use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or a digit.`],
    [["session", "reconstruct", "3f2a9c1e", "--as", "bell\u0007"], `Invalid session id "bell\\u0007": use 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or a digit.`],
    [["session", "branch", "latest", "x y"], `Invalid session name "x y": use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter.`],
    [["start", "--task", ""], `--task: Expected a value, got "".`],
    [["start", "--task", "   "], `--task: Expected a value, got "   ".`],
    [["task", "list", "--session", ""], `--session: Expected a value, got "".`],
    [["--session", "", "task", "list"], `--session: Expected a value, got "".`],
    [["task", "list", "--session="], `--session: Expected a value, got "".`],
    [["task", "add", "x", "--assign", ""], `--assign: Expected a value, got "".`],
    [["agent", "report", "--agent", "a", "--task", ""], `--task: Expected a value, got "".`],
    [["session", "report", "-o", ""], `--output: Expected a value, got "".`],
    [["session", "branch", "latest", "try", "--worktree", ""], `--worktree: Expected a value, got "".`],
    [["--config", "", "status"], `--config: Expected a value, got "".`],
    [["--remote", " ", "status"], `--remote: Expected a value, got " ".`],
    // An empty argument, which plugins read as "no argument": compress and cleanup then took every session.
    [["session", "compress", ""], `ID: Expected a value, got "".`],
    [["session", "cleanup", "", "--dry-run"], `ID: Expected a value, got "".`],
    [["session", "report", ""], `ID: Expected a value, got "".`],
    [["memory", "watch", ""], `GLOB: Expected a value, got "".`],
    [["checkpoint", "show", " "], `CHECKPOINT: Expected a value, got " ".`],
  ])("%j: exit 2, APEX_E_USAGE naming the value, nothing written", (args, message) => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    const result = apex(args);
    expect(result.status, result.stderr).toBe(2);
    expect(result.stderr).toContain(`error[APEX_E_USAGE]: ${message}`);
    expect(result.stdout).toBe("");
    const json = apex([...args, "--json"]);
    expect(json.status).toBe(2);
    expect(JSON.parse(json.stderr.trim()).error).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2, message });
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("an empty optional argument's hint points at the command's help, not at a default it may not have", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    // `apex milestone` without TEXT lists the milestones: "leave TEXT out for its default" promised a default milestone.
    const result = apex(["milestone", ""]);
    expect(result.status).toBe(2);
    expect(result.stderr).toBe('error[APEX_E_USAGE]: TEXT: Expected a value, got "".\n  hint: Give a value, or leave TEXT out (`apex milestone --help` says what that does).\n');
  });

  it("an empty option's hint offers leaving it out only where the command allows it, and a default only where it has one", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    const hints: Array<[string[], string]> = [
      // `task fail` requires --reason: "leave --reason out for its default" led to `required option '--reason <text>' not specified`.
      [["task", "fail", "t-0001", "--reason", ""], "Give a value: --reason is required (`apex task fail --help` says what it takes)."],
      // Left out, --continue does not continue with a default: a new session starts.
      [["start", "--continue", ""], "Give a value, or leave --continue out (`apex start --help` says what that does)."],
      [["start", "--task", " "], "Give a value, or leave --task out (`apex start --help` says what that does)."],
      // An option with a declared default keeps saying so, as does a global flag.
      [["session", "merge", "a", "b", "--strategy", ""], "Give a value, or leave --strategy out for its default."],
      [["--config", "", "status"], "Give a value, or leave --config out for its default."],
    ];
    for (const [args, hint] of hints) {
      const result = apex(args);
      expect(result.status, args.join(" ")).toBe(2);
      expect(result.stderr).toContain(`\n  hint: ${hint}\n`);
      const json = apex([...args, "--json"]);
      expect(JSON.parse(json.stderr.trim()).error).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2, hint });
    }
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("an empty value's hint says to leave the option out when it takes a value, and to give it alone only when its value is optional", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    // `--listen <host[:port]>` needs its value (`--listen` alone is "argument missing"): the brackets inside it said it did not.
    const listen = apex(["serve", "--listen", ""]);
    expect(listen.status).toBe(2);
    expect(listen.stderr).toBe('error[APEX_E_USAGE]: --listen: Expected a value, got "".\n  hint: Give a value, or leave --listen out for its default.\n');
    expect(apex(["serve", "--listen"]).stderr).toContain("argument missing");
    // `--worktree [dir]` alone is a worktree where its default puts it.
    const worktree = apex(["session", "branch", "latest", "try", "--worktree", ""]);
    expect(worktree.stderr).toContain("hint: Give a value, or --worktree alone for its default.");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("the largest exact number and the longest grace are taken", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    expect(apex(["memory", "set", "/a", "1"]).status).toBe(0);
    const all = apex(["memory", "query", "/**", "--limit", MAX, "--json"]);
    expect(all.status, all.stderr).toBe(0);
    expect(JSON.parse(all.stdout)).toEqual({ "/a": 1 });
    // No session: the grace is read, then stop says there is nothing to stop (3, not 2).
    expect(apex(["stop", "--grace", "1h"]).status).toBe(3);
  });

  it("stop --force with --grace is refused (exit 2) before anything is asked: --force gives no grace, and the grace was ignored without a word", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    const refused = apex(["stop", "--force", "--grace", "30s"]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain("error[APEX_E_USAGE]: --force and --grace do not go together");
    // Alone, each is read: with no session, nothing to stop (3).
    expect(apex(["stop", "--force"]).status).toBe(3);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("task claim without an agent names no agent the project may not have", () => {
    writeFileSync(join(dir, "apex.config.yaml"), CONFIG);
    const result = apex(["task", "claim"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("hint: apex task claim --agent NAME, NAME one of the session's agents");
    expect(result.stderr).not.toContain("--agent coder");
  });
});
