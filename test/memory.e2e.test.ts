import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { storeExists } from "../core/store/open.js";
import { parseImport } from "../cli/memory-actions.js";
import { parseLargeImport } from "../cli/memory-import-large.js";
import { APEX_BIN, cleanEnv, expectDiskFullReport, runApex, tempDir } from "./helpers/cli.js";
import { forEachBackend } from "./support/backends.js";
import { FIXTURES, Project, asleepInEventLoop, idleAgentConfig, isAlive, shellAgents, waitFor } from "./fixtures/agents/harness.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-memory-"));
});
afterEach(() => cleanup());

/**
 * The limits of a reply over the supervisor's socket, a 32nd of the real ones (256 MiB of JSON a line, a page of 64 MiB),
 * given to every command of a project and so to its supervisor: the tests of reading past them write values of a few MiB
 * where the real limits take hundreds, and cross the same boundaries.
 */
const MIB = 1024 * 1024;
const SMALL_LIMITS = { APEX_RPC_MAX_LINE_BYTES: String(8 * MIB), APEX_REPLY_CHARS: String(2 * MIB) };

/** `apex memory set PATH -` in PROJECT (with its environment) with the file FILE on stdin (a value of many MiB, no copy of it in a string here). */
function setFromFile(project: Project, path: string, file: string): void {
  const input = openSync(file, "r");
  try {
    const set = spawnSync(process.execPath, [APEX_BIN, "memory", "set", path, "-"], { cwd: project.dir, env: { ...cleanEnv(), ...project.env }, stdio: [input, "pipe", "pipe"], encoding: "utf8", timeout: 60_000 });
    expect(set.status, set.stderr).toBe(0);
  } finally {
    closeSync(input);
  }
}

/** `apex ARGS` in PROJECT with its stdout written to the file NAME there (many MiB: no string of it here), with PROJECT's environment and ENV besides. */
function apexToFile(project: Project, name: string, args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stderr: string; out: string } {
  const out = join(project.dir, name);
  const output = openSync(out, "w");
  try {
    const result = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: project.dir, env: { ...cleanEnv(), ...project.env, ...env }, stdio: ["ignore", output, "pipe"], encoding: "utf8", timeout: 120_000 });
    return { status: result.status, stderr: result.stderr, out };
  } finally {
    closeSync(output);
  }
}

forEachBackend((backend) => describe("apex memory (end to end)", () => {
  let env: Record<string, string>;
  beforeEach(async () => {
    env = await backend.env();
  });
  const apex = (args: string[], input?: string) => runApex(args, input === undefined ? { cwd: dir, env } : { cwd: dir, env, input });

  it("set, show, query, delete through the real CLI", () => {
    // Before anything is stored (no store yet, on LMDB): nothing is there to read, not an error.
    for (const args of [["memory", "show", "/notes/today"], ["memory", "query", "/notes/**", "--keys"]]) {
      const before = apex(args);
      expect([before.status, before.stderr], args.join(" ")).toEqual(args[1] === "show" ? [3, expect.stringContaining("Nothing is stored at /notes/today.")] : [0, ""]);
    }
    expect(apex(["memory", "set", "/notes/today", '{"todo": 3}']).status).toBe(0);
    expect(apex(["memory", "set", "/notes/😀/deep", '"astral"']).status).toBe(0);
    expect(apex(["memory", "set", "/other", "1"]).status).toBe(0);

    const shown = apex(["memory", "show", "/notes/today", "--json"]);
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual({ path: "/notes/today", value: { todo: 3 } });

    const queried = apex(["memory", "query", "/notes/**", "--json"]);
    expect(JSON.parse(queried.stdout)).toEqual({ "/notes/today": { todo: 3 }, "/notes/😀/deep": "astral" });
    expect(apex(["memory", "query", "/notes/*", "--keys"]).stdout).toBe("/notes/today\n");
    // --keys --json: the paths as a JSON array (it printed the values, ignoring --keys).
    expect(JSON.parse(apex(["memory", "query", "/notes/**", "--keys", "--json"]).stdout)).toEqual(["/notes/today", "/notes/😀/deep"]);
    expect(JSON.parse(apex(["memory", "query", "/none/**", "--keys", "--json"]).stdout)).toEqual([]);
    // The root holds no value: `show /` is everything below it (the session's records left out, as by query '/**').
    const everything = apex(["memory", "show", "/", "--json"]);
    expect(everything.status, everything.stderr).toBe(0);
    const children = JSON.parse(apex(["memory", "query", "/**", "--json"]).stdout) as Record<string, unknown>;
    expect(JSON.parse(everything.stdout)).toEqual({ path: "/", value: null, children_count: Object.keys(children).length, children_count_exact: true, children });
    expect(JSON.parse(everything.stdout).children).toMatchObject({ "/notes/today": { todo: 3 }, "/notes/😀/deep": "astral", "/other": 1 });

    // A plain path with a backslash (as `show` takes it) is itself to query and export; it found nothing.
    expect(apex(["memory", "set", "/win/C:\\dir/x", "1"]).status).toBe(0);
    expect(JSON.parse(apex(["memory", "query", "/win/C:\\dir", "--json"]).stdout)).toEqual({ "/win/C:\\dir/x": 1 });
    expect(JSON.parse(apex(["memory", "export", "/win/C:\\dir"]).stdout)).toEqual({ "/win/C:\\dir/x": 1 });
    expect(apex(["memory", "query", "/win/*\\dir/*", "--keys"]).stdout).toBe("/win/C:\\dir/x\n");
    expect(apex(["memory", "delete", "/win", "--recursive"]).status).toBe(0);

    expect(apex(["memory", "delete", "/notes", "--recursive", "--json"]).stdout).toContain('"deleted": 2');
    const missing = apex(["memory", "show", "/notes/today"]);
    expect(missing.status).toBe(3);
    expect(missing.stderr).toContain("error[APEX_E_NOT_FOUND]: Nothing is stored at /notes/today.");
  });

  it("query --limit N gives N entries when more match, with another session's working memory (left out) among the first N", () => {
    for (const path of ["/a", "/sessions/s1/memory/n1", "/sessions/s1/memory/n2", "/z"]) expect(apex(["memory", "set", path, "1"]).status).toBe(0);
    expect(apex(["memory", "query", "/**", "--keys"]).stdout).toBe("/a\n/z\n");
    // The limit counted the entries read, before the worktree memory was left out: `/a` alone.
    expect(apex(["memory", "query", "/**", "--keys", "--limit", "2"]).stdout).toBe("/a\n/z\n");
    expect(apex(["memory", "query", "/**", "--keys", "--limit", "1"]).stdout).toBe("/a\n");
    expect(apex(["memory", "query", "/sessions/**", "--keys", "--limit", "1"]).stdout).toBe("/sessions/s1/memory/n1\n");
  });

  it("memory delete that finds nothing says what was meant, not --recursive whatever the path", () => {
    expect(apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    expect(apex(["memory", "set", "/notes/b", "2"]).status).toBe(0);
    // A glob was answered "To delete a whole subtree, add --recursive", which deletes nothing either.
    const glob = apex(["memory", "delete", "/notes/*"]);
    expect(glob.status).toBe(3);
    expect(glob.stderr).toContain("hint: Delete takes a path, not a glob: * and ? are characters of /notes/*. List what the glob matches with apex memory query '/notes/*' --keys");
    expect(apex(["memory", "delete", "/notes/*", "--recursive"]).stderr).toContain("Delete takes a path, not a glob");
    // A path with nothing below it was given the same advice.
    const none = apex(["memory", "delete", "/nothing"]);
    expect(none.status).toBe(3);
    expect(none.stderr).toBe("error[APEX_E_NOT_FOUND]: Nothing is stored at /nothing.\n");
    // A path with something below it is told of it.
    expect(apex(["memory", "delete", "/notes"]).stderr).toContain("hint: /notes holds no value itself, but paths below it do: add --recursive to delete them.");
    expect(JSON.parse(apex(["memory", "query", "/notes", "--keys", "--json"]).stdout)).toEqual(["/notes/a", "/notes/b"]);
    // The root, as one clearing the whole memory types it: told how, not only that the root holds no value; nothing deleted.
    for (const args of [["/", "--recursive"], ["/"], ["/", "-r", "--json"]]) {
      const root = apex(["memory", "delete", ...args]);
      expect(root.status, args.join(" ")).toBe(2);
      const message = "The root '/' cannot be deleted: it holds no value of its own, and memory delete takes one path.";
      const hint = "Delete each top-level path with --recursive (`apex memory query / --keys` lists the paths; /sessions and /projects/config are APEX's own).";
      if (args.includes("--json")) expect(JSON.parse(root.stderr)).toEqual({ error: { code: "APEX_E_BAD_PATH", message, hint, exitCode: 2, exit_code: 2 } });
      else expect(root.stderr).toBe(`error[APEX_E_BAD_PATH]: ${message}\n  hint: ${hint}\n`);
    }
    expect(JSON.parse(apex(["memory", "query", "/notes", "--keys", "--json"]).stdout)).toEqual(["/notes/a", "/notes/b"]);
  });

  it("memory delete in a project with no store yet finds nothing (exit 3) and makes no store, as a read of it does", async () => {
    for (const args of [["/notes/a"], ["/notes", "--recursive"], ["/notes/a", "--json"], ["/notes/*"]]) {
      const result = apex(["memory", "delete", ...args]);
      expect(result.status, result.stderr).toBe(3);
      const message = `Nothing is stored at ${args[0]}${args.includes("--recursive") ? " or below it" : ""}.`;
      if (args.includes("--json")) expect(JSON.parse(result.stderr)).toEqual({ error: { code: "APEX_E_NOT_FOUND", message, exitCode: 3, exit_code: 3 } });
      else expect(result.stderr).toBe(`error[APEX_E_NOT_FOUND]: ${message}\n`);
      // It made the store (on LMDB .apex/ with store.mdb and a .gitignore) to find nothing in it.
      expect(existsSync(join(dir, ".apex")), args.join(" ")).toBe(false);
      expect(await storeExists(await backend.projectSpec(dir))).toBe(false);
    }
    // A config that would refuse a write refuses the delete too (exit 2), as it refuses `import {}`.
    writeFileSync(join(dir, "apex.config.yaml"), "plugins:\n  no-such-plugin: {}\n");
    const refused = apex(["memory", "delete", "/notes/a"]);
    expect(refused.status, refused.stderr).toBe(2);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("memory set - takes a value with a byte order mark, as import does", () => {
    // A file an editor saved with a BOM was refused: "Unexpected token '\ufeff'", the character invisible in the message.
    const set = apex(["memory", "set", "/bom", "-"], '\ufeff{"a": [1]}\n');
    expect(set.status, set.stderr).toBe(0);
    expect(JSON.parse(apex(["memory", "show", "/bom", "--json"]).stdout)).toEqual({ path: "/bom", value: { a: [1] } });
    // So does the argument (`"$(cat value.json)"`), where the same message stood.
    const argument = apex(["memory", "set", "/bom-argument", '\ufeff{"b": 2}']);
    expect(argument.status, argument.stderr).toBe(0);
    expect(JSON.parse(apex(["memory", "show", "/bom-argument", "--json"]).stdout)).toEqual({ path: "/bom-argument", value: { b: 2 } });
  });

  it("an integer past 2^53 written with a zero fraction (9007199254740993.0) is refused as the integer is, naming it; a fraction that only rounds is taken", () => {
    // It was stored as 9007199254740992 without a word, where 9007199254740993 was refused.
    for (const number of ["9007199254740993.0", "-9007199254740993.00"]) {
      const set = apex(["memory", "set", "/n", `{"id": ${number}}`, "--json"]);
      expect([set.status, JSON.parse(set.stderr).error]).toEqual([2, expect.objectContaining({ code: "APEX_E_BAD_INPUT", details: { number }, message: expect.stringContaining(`has the integer ${number}, past what a JSON number holds exactly`) })]);
    }
    expect(apex(["memory", "show", "/n"]).status).toBe(3);
    for (const number of ["9007199254740992.0", "9007199254740993.5", "12345678901234567000.0"]) expect(apex(["memory", "set", "/n", number]).status).toBe(0);
  });

  it("memory set - with nothing on stdin says stdin is empty (exit 2), not 'Unexpected end of JSON input', and writes nothing", () => {
    for (const [input, what] of [["", "empty"], ["\ufeff \n", "only whitespace"]] as const) {
      const set = apex(["memory", "set", "/bom", "-", "--json"], input);
      expect([set.status, JSON.parse(set.stderr).error]).toEqual([2, expect.objectContaining({ code: "APEX_E_BAD_INPUT", message: `stdin holds no value for /bom: it is ${what}.` })]);
    }
    expect(apex(["memory", "show", "/bom"]).status).toBe(3);
  });

  it("names, for a path that holds nothing, a query that runs as printed", () => {
    // A path with a quote gave `apex memory query '/it's/*'`, which a shell cannot run.
    expect(apex(["memory", "set", "/it's/there", "1"]).status).toBe(0);
    const missing = apex(["memory", "show", "/it's/gone"]);
    expect(missing.status).toBe(3);
    const command = /hint: List what exists with: (apex memory query .*)$/m.exec(missing.stderr)?.[1];
    expect(command, missing.stderr).toBeDefined();
    const words = spawnSync("sh", ["-c", `set -- ${command}; printf '%s' "$4"`], { encoding: "utf8" });
    expect(words.stdout).toBe("/it's/*");
    expect(apex(["memory", "query", words.stdout, "--keys"]).stdout).toBe("/it's/there\n");
  });

  it("for a LangGraph channel's path, which the live memory never holds, says where the values are", () => {
    for (const path of ["/langgraph/review-42/~/notes", "/langgraph"]) {
      const missing = apex(["memory", "show", path]);
      expect(missing.status).toBe(3);
      expect(missing.stderr).toContain("LangGraph's channel values are not in the live memory");
      expect(missing.stderr).toContain("apex checkpoint show latest");
    }
    expect(apex(["memory", "show", "/langgraphs/x"]).stderr).not.toContain("LangGraph");
  });

  it("finds paths holding a line or paragraph separator with every glob", () => {
    // U+2028 and U+2029 are no control characters: such a path was set and shown, but no query, export or watch matched it.
    const paths = ["/x/a\u2028b", "/x/\u2029/deep"];
    for (const path of paths) expect(apex(["memory", "set", path, "1"]).status).toBe(0);
    expect(JSON.parse(apex(["memory", "query", "/x/**", "--keys", "--json"]).stdout)).toEqual(paths);
    expect(JSON.parse(apex(["memory", "query", "/x/*", "--keys", "--json"]).stdout)).toEqual([paths[0]]);
    expect(JSON.parse(apex(["memory", "query", "/x/a?b", "--keys", "--json"]).stdout)).toEqual([paths[0]]);
    expect(Object.keys(JSON.parse(apex(["memory", "export", "/x"]).stdout))).toEqual(paths);
    expect(Object.keys(JSON.parse(apex(["memory", "show", "/x", "--json"]).stdout).children)).toEqual(paths);
    const watched = apex(["memory", "watch", "/x/**", "--json", "--timeout", "0.1"]);
    expect(watched.stdout.trim().split("\n").map((line) => JSON.parse(line).path)).toEqual(paths);
  });

  it.each([
    [["memory", "set", "relative", "1"], "APEX_E_BAD_PATH", `Invalid path "relative": it must start with '/'.`],
    [["memory", "set", "/a/../b", "1"], "APEX_E_BAD_PATH", `Invalid path "/a/../b": segment 2 is '..'.`],
    [["memory", "set", "/a", "{nope"], "APEX_E_BAD_JSON", "Invalid JSON value for /a"],
    [["memory", "set", "/a", "undefined"], "APEX_E_BAD_JSON", "Invalid JSON value for /a"],
    // A key given twice at any depth (however escaped): JSON.parse kept the last without a word.
    [["memory", "set", "/a", '{"a": 1, "b": [{"c": 1}, {"c": 1, "\\u0063": 2}], "s": "\\"c\\""}'], "APEX_E_BAD_INPUT", 'The value for /a has the key "c" twice, at /b/1/c in it; one of its values would be lost.'],
    // An integer past 2^53 was stored as the nearest double without a word (an id lost its last digits).
    [["memory", "set", "/id", '{"ids": [1, 12345678901234567891]}'], "APEX_E_BAD_INPUT", "The value for /id has the integer 12345678901234567891, past what a JSON number holds exactly: it would be stored as 12345678901234567000."],
    // A number past the range of a JSON number: 1e400 (read as Infinity) was refused as "the number Infinity"; 1e-400 was stored as 0 without a word.
    [["memory", "set", "/n", "1e400"], "APEX_E_BAD_INPUT", "The value for /n has the number 1e400, larger than a JSON number holds (about 1.8e308): it would be Infinity, which JSON cannot store."],
    [["memory", "set", "/n", "-1e99999999999999999999"], "APEX_E_BAD_INPUT", "The value for /n has the number -1e99999999999999999999, larger than a JSON number holds (about 1.8e308): it would be -Infinity"],
    [["memory", "set", "/n", "1e-400"], "APEX_E_BAD_INPUT", "The value for /n has the number 1e-400, nearer zero than a JSON number holds (about 5e-324): it would be stored as 0."],
    [["memory", "set", "/n", '{"a": [-1e-400]}'], "APEX_E_BAD_INPUT", "The value for /n has the number -1e-400, nearer zero"],
    [["memory", "set", "/n", "0.1e-400"], "APEX_E_BAD_INPUT", "The value for /n has the number 0.1e-400, nearer zero"],
    [["memory", "set", "/n", `0.${"0".repeat(400)}1`], "APEX_E_BAD_INPUT", `The value for /n has the number 0.${"0".repeat(38)}…0000000001 (403 characters), nearer zero`],
    [["memory", "query", "notes/*"], "APEX_E_BAD_GLOB", `Invalid glob "notes/*": it must start with '/'.`],
    // A directory, or a file that exists but does not read, is not "not found" (it was exit 3).
    [["memory", "import", "."], "APEX_E_BAD_INPUT", "Cannot read .: it is a directory (EISDIR)."],
    [["memory", "import", "/proc/self/mem"], "APEX_E_BAD_INPUT", "Cannot read /proc/self/mem: EIO."],
    // An empty file imported nothing and said "imported 0 entries (revision 0)", exit 0.
    [["memory", "import", "/dev/null"], "APEX_E_BAD_INPUT", "/dev/null holds no entries: it is empty."],
    // A plain path no record can have was watched (here: until the timeout; without one, forever).
    [["memory", "watch", "/a/../b", "--timeout", "2"], "APEX_E_BAD_PATH", `Invalid path "/a/../b": segment 2 is '..'.`],
    [["memory", "watch", "/a//b", "--timeout", "2"], "APEX_E_BAD_PATH", `Invalid path "/a//b": segment 2 is empty ('//').`],
    // "stop after 0 entries" printed every entry: the store reads a limit of 0 as none.
    [["memory", "query", "/**", "--limit", "0"], "APEX_E_USAGE", `--limit: Expected a whole number ≥ 1, got "0".`],
  ])("bad input %j exits 2 and writes nothing", async (args, code, message) => {
    const result = apex(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`error[${code}]: ${message}`);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
    expect(await storeExists(await backend.projectSpec(dir))).toBe(false);
  });

  it("--json errors are machine-readable", () => {
    const result = apex(["memory", "set", "bad", "1", "--json"]);
    expect(result.status).toBe(2);
    expect(JSON.parse(result.stderr)).toMatchObject({ error: { code: "APEX_E_BAD_PATH", exitCode: 2, exit_code: 2 } });
  });

  it("--force writes of APEX's paths with --json give the warning in the JSON's `warnings`, as config show --json does, not on stderr; without --json on stderr", () => {
    const warning = (command: string, path: string) => `${command} --force writes ${path} (`;
    const set = apex(["memory", "set", "/sessions/zz/x", "1", "--force", "--json"]);
    expect(set.status, set.stderr).toBe(0);
    expect(set.stderr).toBe("");
    expect(JSON.parse(set.stdout)).toEqual({ path: "/sessions/zz/x", revision: expect.any(Number), warnings: [expect.stringContaining(warning("memory set", "/sessions/zz/x"))] });
    const imported = apex(["memory", "import", "-", "--force", "--json"], JSON.stringify({ "/sessions/zz/y": 2, "/notes/n": 3 }));
    expect(imported.status, imported.stderr).toBe(0);
    expect(imported.stderr).toBe("");
    expect(JSON.parse(imported.stdout)).toEqual({ count: 2, revision: expect.any(Number), warnings: [expect.stringContaining(warning("memory import", "/sessions/zz/y"))] });
    const deleted = apex(["memory", "delete", "/sessions/zz/x", "--force", "--json"]);
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(deleted.stderr).toBe("");
    expect(JSON.parse(deleted.stdout)).toEqual({ path: "/sessions/zz/x", deleted: 1, revision: expect.any(Number), warnings: [expect.stringContaining(warning("memory delete", "/sessions/zz/x"))] });
    // A write of no path APEX owns has no `warnings`, as before.
    expect(JSON.parse(apex(["memory", "set", "/notes/n", "4", "--force", "--json"]).stdout)).toEqual({ path: "/notes/n", revision: expect.any(Number) });
    // Without --json: on stderr, as `warning: …`.
    const text = apex(["memory", "set", "/sessions/zz/x", "5", "--force"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stderr).toContain(`warning: ${warning("memory set", "/sessions/zz/x")}`);
  });

  it("a --force write of APEX's paths that fails, with --json, gives the warning it had in the error's JSON (`warnings`), as the text gives it on stderr before the error", () => {
    const warning = (command: string, path: string) => expect.stringContaining(`${command} --force writes ${path} (`);
    const deep = `${"[".repeat(600)}${"]".repeat(600)}`;
    const failures: Array<[string[], string, string, string | undefined]> = [
      [["memory", "set", "/sessions/zz/deep", deep, "--force", "--json"], "APEX_E_TOO_DEEP", "memory set", undefined],
      [["memory", "import", "-", "--force", "--json"], "APEX_E_TOO_DEEP", "memory import", JSON.stringify({ "/sessions/zz/deep": JSON.parse(deep) })],
      [["memory", "delete", "/sessions/zz/none", "--force", "--json"], "APEX_E_NOT_FOUND", "memory delete", undefined],
    ];
    for (const [args, code, command, input] of failures) {
      const failed = apex(args, input);
      expect(failed.stdout, command).toBe("");
      const path = command === "memory import" ? "/sessions/zz/deep" : args[2]!;
      expect(JSON.parse(failed.stderr), command).toEqual({ error: expect.objectContaining({ code }), warnings: [warning(command, path)] });
      // Without --json: the warning on stderr, then the error.
      const text = apex(args.filter((arg) => arg !== "--json"), input);
      expect(text.status, command).toBe(failed.status);
      expect(text.stderr, command).toMatch(new RegExp(`^warning: ${command} --force writes [^\\n]*\\nerror\\[${code}\\]`));
    }
    // A failure with no warning (no path of APEX's) has none in its JSON, as before.
    expect(JSON.parse(apex(["memory", "set", "/notes/deep", deep, "--force", "--json"]).stderr)).toEqual({ error: expect.objectContaining({ code: "APEX_E_TOO_DEEP" }) });
    expect(JSON.parse(apex(["memory", "show", "/sessions/zz/deep", "--json"]).stderr).error.code).toBe("APEX_E_NOT_FOUND");
  });

  it("export | import round-trips, and a bad import writes nothing", () => {
    apex(["memory", "set", "/a/b", '{"x": [1, 2, {"y": null}]}']);
    apex(["memory", "set", "/a/ü/c", '"ü"']);
    const exported = apex(["memory", "export"]).stdout;

    const other = tempDir("apex-memory-import-");
    try {
      const imported = runApex(["memory", "import", "-", "--json"], { cwd: other.dir, env, input: exported });
      expect(imported.status).toBe(0);
      expect(JSON.parse(imported.stdout)).toEqual({ count: 2, revision: 2 });
      expect(runApex(["memory", "export"], { cwd: other.dir, env }).stdout).toBe(exported);

      const bad = runApex(["memory", "import", "-"], {
        cwd: other.dir,
        env,
        input: '{"path": "/ok", "value": 1}\n{"path": "/fine", "value": 2}\n{"path": "nope", "value": 3}\n',
      });
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain(`stdin:3: invalid path "nope": it must start with '/'.`);
      expect(runApex(["memory", "show", "/ok"], { cwd: other.dir, env }).status).toBe(3);
      // In one object too, as in a file read an entry at a time (it named the file alone).
      const badKey = runApex(["memory", "import", "-"], { cwd: other.dir, env, input: '{\n  "/ok": 1,\n  "/bad/": 2\n}\n' });
      expect(badKey.status).toBe(2);
      expect(badKey.stderr).toContain(`stdin:3: invalid path "/bad/": it ends with '/' (empty last segment).`);
      expect(runApex(["memory", "show", "/ok"], { cwd: other.dir, env }).status).toBe(3);

      // An export cut short, or with a trailing comma, is named where it breaks: it was "stdin:1: … position 1"
      // with the NDJSON hint, as if its first line '{' were a line of its own.
      for (const [input, where] of [
        ['{\n  "/x": 1,\n  "/y": ', "stdin:3:8"],
        ['{\n  "/x": 1,\n}\n', "stdin:3:1"],
        // V8 names no position for an unexpected token: it was "stdin: invalid JSON: Unexpected token '}'".
        ['{\n  "/x": 1,\n  "/y": }\n', "stdin:3:9"],
      ] as const) {
        const broken = runApex(["memory", "import", "-", "--json"], { cwd: other.dir, env, input });
        expect(broken.status).toBe(2);
        expect(JSON.parse(broken.stderr).error).toMatchObject({ code: "APEX_E_BAD_JSON", message: expect.stringMatching(new RegExp(`^${where}: invalid JSON: `)), hint: expect.stringContaining("Nothing was imported") });
      }
      // A path given twice (hand-merged exports, NDJSON appended to): JSON.parse kept the last value and
      // the import said "imported 1 entry", the first lost without a word. Keys inside values may repeat.
      for (const [input, where, path, first] of [
        ['{\n  "/d": 1,\n  "/e": {"/d": 2, "s": "\\"/d\\""},\n  "/\\u0064": 3\n}\n', "stdin:4", "/d", 2],
        ['{"path": "/d", "value": 1}\n{"path": "/e", "value": 1}\n{"path": "/d", "value": 2}\n', "stdin:3", "/d", 1],
      ] as const) {
        const twice = runApex(["memory", "import", "-", "--json"], { cwd: other.dir, env, input });
        expect(twice.status, twice.stderr).toBe(2);
        expect(JSON.parse(twice.stderr).error).toMatchObject({
          code: "APEX_E_BAD_INPUT",
          message: `${where}: path "${path}" is given a second time (first on line ${first}); one of its values would be lost.`,
          hint: expect.stringContaining("Nothing was imported"),
        });
      }
      // So is a key given twice inside an entry's value (or an NDJSON line's own key), at any depth.
      for (const [input, message] of [
        ['{\n  "/d": 1,\n  "/e": {"x": {"y": 1, "y": 2}}\n}\n', 'stdin:3: the value of "/e" has the key "y" twice, at /x/y in it; one of its values would be lost.'],
        ['{"path": "/d", "value": 1}\n{"path": "/e", "value": [0, {"y": 1, "y": 2}]}\n', 'stdin:2: the value of "/e" has the key "y" twice, at /1/y in it; one of its values would be lost.'],
        ['{"path": "/d", "value": 1, "path": "/e"}\n{"path": "/f", "value": 1}\n', 'stdin:1: the line has the key "path" twice; one of its values would be lost.'],
      ] as const) {
        const twice = runApex(["memory", "import", "-", "--json"], { cwd: other.dir, env, input });
        expect(twice.status, twice.stderr).toBe(2);
        expect(JSON.parse(twice.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message, hint: expect.stringContaining("Nothing was imported") });
      }
      expect(runApex(["memory", "export"], { cwd: other.dir, env }).stdout).toBe(exported);
    } finally {
      other.cleanup();
    }
  });

  it("imports NDJSON files in one transaction", () => {
    const file = join(dir, "lines.ndjson");
    writeFileSync(file, '{"path": "/l/1", "value": 1}\n{"path": "/l/2", "value": {"two": 2}}\n');
    const result = apex(["memory", "import", file]);
    expect(result.stdout).toBe("imported 2 entries (revision 2)\n");
    expect(JSON.parse(apex(["memory", "export", "/l/*"]).stdout)).toEqual({ "/l/1": 1, "/l/2": { two: 2 } });
    // Blank lines only: no entries, refused. `{}` (an export of nothing) imports nothing, and says so.
    writeFileSync(file, "\n  \n");
    const blank = apex(["memory", "import", file]);
    expect([blank.status, blank.stderr]).toEqual([2, expect.stringContaining(`error[APEX_E_BAD_INPUT]: ${file} holds no entries: it is only whitespace.`)]);
    // An integer past 2^53 is refused (it would lose digits) unless written as JSON writes a double, as export writes it.
    writeFileSync(file, '{"path": "/l/3", "value": 3}\n{"path": "/l/4", "value": {"id": 98765432109876543210}}\n');
    expect(JSON.parse(apex(["memory", "import", file, "--json"]).stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: `${file}:2: the value of "/l/4" has the integer 98765432109876543210, past what a JSON number holds exactly: it would be stored as 98765432109876540000.` });
    // A line with a key besides path and value: refused, naming it (the key was dropped without a word; a file of one such line was refused as 'invalid path "path"').
    for (const [text, line] of [['{"path": "/l/3", "value": 3}\n{"path": "/l/4", "value": 4, "note": "x"}\n', 2], ['{"path": "/l/4", "value": 4, "note": "x"}', 1]] as const) {
      const extra = apex(["memory", "import", "-", "--json"], text);
      expect([extra.status, JSON.parse(extra.stderr).error]).toEqual([2, expect.objectContaining({ code: "APEX_E_BAD_INPUT", message: `stdin:${line}: the line has a key besides "path" and "value": "note"; it would not be imported.`, details: { keys: ["note"] } })]);
    }
    expect(apex(["memory", "show", "/l/3"]).status).toBe(3);
    // A file of one line whose path is not valid names that path, as on a later line (it said 'invalid path "path"').
    for (const [text, path, problem] of [['{"path": "/l/\\udc00", "value": 1}\n', "/l/\\udc00", "it contains an unpaired surrogate (not valid UTF-8)"], ['{"path": "l/5", "value": 5}', "l/5", "it must start with '/'"]] as const) {
      const bad = apex(["memory", "import", "-", "--json"], text);
      expect([bad.status, JSON.parse(bad.stderr).error]).toEqual([2, expect.objectContaining({ code: "APEX_E_BAD_PATH", message: `stdin:1: invalid path "${path}": ${problem}.` })]);
    }
    // A file of one line without its value is that, as on a later line (it said 'invalid path "path": it must start with '/''); nothing is written.
    for (const text of ['{"path": "/l/5"}\n', '{"path": "/l/5", "valeu": 5}']) {
      const missing = apex(["memory", "import", "-", "--json"], text);
      expect([missing.status, JSON.parse(missing.stderr).error]).toEqual([2, expect.objectContaining({ code: "APEX_E_BAD_INPUT", message: 'stdin:1: expected an object with "path" and "value".' })]);
    }
    expect(apex(["memory", "show", "/l/5"]).status).toBe(3);
    // So is a number past a JSON number's range, either way (1e-400 was imported as 0), naming its line; nothing is written.
    writeFileSync(file, '{"path": "/l/3", "value": 3}\n{"path": "/l/4", "value": {"tiny": 2e-999}}\n');
    expect(JSON.parse(apex(["memory", "import", file, "--json"]).stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: `${file}:2: the value of "/l/4" has the number 2e-999, nearer zero than a JSON number holds (about 5e-324): it would be stored as 0.`, hint: 'Nothing was written. Give it as a string to keep it as written: "2e-999".' });
    const huge = apex(["memory", "import", "-"], '{\n  "/l/3": 3,\n  "/l/4": [1E+400]\n}\n');
    expect([huge.status, huge.stderr]).toEqual([2, expect.stringContaining('error[APEX_E_BAD_INPUT]: stdin:3: a value has the number 1E+400, larger than a JSON number holds')]);
    expect(apex(["memory", "show", "/l/3"]).status).toBe(3);
    const doubles = apex(["memory", "import", "-", "--json"], '{\n  "/l/big": [98765432109876540000, 1152921504606846976, 9007199254740993.5, 5e-324, 0e-400, -0.0]\n}\n');
    expect(JSON.parse(doubles.stdout), doubles.stderr).toEqual({ count: 1, revision: 3 });
    expect(JSON.parse(apex(["memory", "export", "/l/big"]).stdout)).toEqual({ "/l/big": [98765432109876540000, 1152921504606846976, 9007199254740993.5, 5e-324, 0, 0] });
    const none = apex(["memory", "import", "-"], apex(["memory", "export", "/none/*"]).stdout);
    expect([none.status, none.stdout]).toEqual([0, "imported 0 entries: stdin is an empty object, nothing was written (revision 3)\n"]);
  });

  it("watch prints changes made by other processes as they happen", async () => {
    apex(["memory", "set", "/w/before", "0"]);
    const watcher = spawn(process.execPath, [APEX_BIN, "memory", "watch", "/w/**", "--changes-only", "--json", "--timeout", "50"], {
      cwd: dir,
      env: { ...cleanEnv(), NO_COLOR: "1", ...env },
    });
    let output = "";
    watcher.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    try {
      // Watching once a write it sees shows (a fixed 800 ms was too short on a loaded machine: the changes came before it watched).
      // Set again every 300 ms until it shows, looked for every 25 ms.
      const deadline = Date.now() + 15_000;
      for (let again = 0; !output.includes("/w/ready") && Date.now() < deadline; await new Promise((r) => setTimeout(r, 25))) {
        if (Date.now() < again) continue;
        apex(["memory", "set", "/w/ready", "true"]);
        again = Date.now() + 300;
      }
      const ready = output.trim().split("\n").length;
      const revision = (JSON.parse(apex(["memory", "set", "/w/one", '"1"', "--json"]).stdout) as { revision: number }).revision;
      apex(["memory", "set", "/elsewhere", "1"]);
      apex(["memory", "delete", "/w/before"]);
      const shown = Date.now() + 15_000;
      while (output.trim().split("\n").length < ready + 2 && Date.now() < shown) await new Promise((r) => setTimeout(r, 50));
      const events = output.trim().split("\n").slice(ready).map((line) => JSON.parse(line));
      expect(events.map((event) => [event.kind, event.path, event.value])).toEqual([
        ["put", "/w/one", "1"],
        ["delete", "/w/before", null],
      ]);
      expect(events[0].revision).toBe(revision);
    } finally {
      watcher.kill("SIGTERM");
    }
  });

  it("watch --since replays earlier changes and --timeout ends it", () => {
    apex(["memory", "set", "/r/a", "1"]);
    apex(["memory", "set", "/r/b", "2"]);
    apex(["memory", "set", "/r/b", "3"]);
    apex(["memory", "set", "/r/c", "4"]);
    apex(["memory", "delete", "/r/c"]);
    const result = apex(["memory", "watch", "/r/*", "--since", "1", "--timeout", "0.1", "--json"]);
    expect(result.status).toBe(0);
    // The log keeps no values: a put changed again since is said to be overwritten, never shown
    // with the later value (it was "put /r/b 3" for revision 2, and "put /r/c undefined" in text).
    expect(result.stdout.trim().split("\n").map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ revision: 2, kind: "put", path: "/r/b", value: null, overwritten: true }),
      expect.objectContaining({ revision: 3, kind: "put", path: "/r/b", value: 3 }),
      expect.objectContaining({ revision: 4, kind: "put", path: "/r/c", value: null, overwritten: true }),
      expect.objectContaining({ revision: 5, kind: "delete", path: "/r/c", value: null }),
    ]);
    const text = apex(["memory", "watch", "/r/*", "--since", "1", "--timeout", "0.1"]).stdout;
    expect(text.split("\n").filter((line) => line.includes(" put ")).map((line) => line.replace(/\s+user:\S+$/, "").trim().split(/\s+/).slice(2).join(" "))).toEqual([
      "/r/b (overwritten since)",
      "/r/b 3",
      "/r/c (overwritten since)",
    ]);
    // A plain path is it and everything below it, as for query and export: '/r/' watched nothing, ever, and '/r' only /r.
    apex(["memory", "set", "/rx/not-below", "9"]);
    const replay = (glob: string, ...more: string[]) => apex(["memory", "watch", glob, "--timeout", "0.1", "--json", ...more]).stdout.trim().split("\n").map((line) => JSON.parse(line));
    expect(replay("/r/", "--since", "1").map((event) => event.revision)).toEqual([2, 3, 4, 5]);
    expect(replay("/r").map((event) => [event.kind, event.path, event.value])).toEqual([["current", "/r/a", 1], ["current", "/r/b", 3]]);
    // A revision past the store's (from another store, or one made anew) showed nothing, and nothing up to it either, without a word.
    const ahead = apex(["memory", "watch", "/r/*", "--since", "99", "--timeout", "0.1", "--json"]);
    expect([ahead.status, ahead.stdout]).toEqual([0, ""]);
    expect(ahead.stderr).toBe("warning: --since 99 is past the store's latest revision, 6: the changes up to revision 99 will not be shown, only those after it (`--changes-only` shows every change from now on).\n");
    expect(apex(["memory", "watch", "/r/*", "--since", "6", "--timeout", "0.1"]).stderr).toBe("");
  });
}));

describe("apex memory globs that no path can match", () => {
  it("are APEX_E_BAD_GLOB (exit 2) naming the segment, for query, export and watch, rather than nothing, or a watch that never ends", () => {
    const apex = (args: string[]) => runApex(args, { cwd: dir, env: { NO_COLOR: "1" } });
    expect(apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    for (const [glob, problem] of [
      ["/notes//*", "segment 2 is empty ('//')"],
      ["/**//x", "segment 2 is empty ('//')"],
      ["/notes/*/", "it ends with '/' after a wildcard (empty last segment)"],
      ["/notes/./*", "segment 2 is '.'"],
      ["/notes/../**", "segment 2 is '..'"],
      ["/notes/\u0007*", "it contains the control character U+0007"],
    ]) {
      for (const args of [["memory", "query", glob], ["memory", "export", glob], ["memory", "watch", glob, "--timeout", "30"]]) {
        const result = apex(args);
        expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toContain(`error[APEX_E_BAD_GLOB]: Invalid glob ${JSON.stringify(glob)}: ${problem}; no path can match it.`);
      }
    }
    // Characters besides the wildcards longer than any path (1024 bytes; under /sessions/, 1152): an empty answer, a watch for ever.
    const long = `/notes/${"é".repeat(600)}*`;
    const shown = `${JSON.stringify(long.slice(0, 100))}… (${long.length} characters)`;
    for (const args of [["memory", "query", long], ["memory", "export", long], ["memory", "watch", long, "--timeout", "30"], ["memory", "query", `/sessions/${"a".repeat(1200)}?`]]) {
      const result = apex(args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      const message = args[2] === long ? `Invalid glob ${shown}: its characters besides * and ** come to 1207 bytes, more than a path holds (1024 bytes); no path can match it.` : "its characters besides * and ** come to 1211 bytes, more than a path holds (1152 bytes)";
      expect(result.stderr).toContain(args[2] === long ? `error[APEX_E_BAD_GLOB]: ${message}` : message);
    }
    expect(apex(["memory", "query", `/sessions/${"a".repeat(1100)}*`]).status).toBe(0);
    expect(apex(["memory", "query", `/notes/${"é".repeat(500)}*`]).status).toBe(0);
    // What a path may hold is no problem: a plain path with a trailing '/', a dot inside a segment, the root.
    expect(apex(["memory", "query", "/notes/", "--keys"]).stdout).toBe("/notes/a\n");
    expect(apex(["memory", "query", "/notes/.a*", "--keys"]).status).toBe(0);
    expect(apex(["memory", "query", "/", "--keys"]).stdout).toBe("/notes/a\n");
  });
});

describe("apex memory watch of a store made while it watches", () => {
  type Event = { revision: number; kind: string; path: string; value: unknown };
  /** The watch's --json lines so far (a line still being written is left for the next look). */
  const events = (output: string): Event[] => output.split("\n").slice(0, -1).map((line) => JSON.parse(line) as Event);
  /** Seen asleep in its event loop five times running, a tenth of a second apart: waiting for a store, not loading. */
  const settled = (pid: number) => waitFor("the watch to wait", async () => {
    for (let i = 0; i < 5; i++, await new Promise((r) => setTimeout(r, 100))) if (!asleepInEventLoop(pid)) return false;
    return true;
  });

  it("prints the first write to a store that was not there when it began as a change, as any later one (text and --json)", async () => {
    const project = new Project("plugins: {}\n", "apex-watch-new-");
    const json = project.apexAsync(["memory", "watch", "/w/**", "--json", "--timeout", "120"]);
    const text = project.apexAsync(["memory", "watch", "/w/**", "--timeout", "120"]);
    // With --changes-only, the first write was missed: the watch began at the revision of the store it found, made by that write.
    const changesOnly = project.apexAsync(["memory", "watch", "/w/**", "--json", "--changes-only", "--timeout", "120"]);
    await Promise.all([json, text, changesOnly].map((watch) => settled(watch.child.pid!)));
    expect(existsSync(join(project.dir, ".apex"))).toBe(false);
    expect(project.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/w/b", "2"]).status).toBe(0);
    await waitFor("both changes", () => events(json.output()).length >= 2 && events(changesOnly.output()).length >= 2 && text.output().split("\n").length > 2);
    // It was `{"revision":1,"kind":"current",...}`: the empty state had been seen, so the write is a change.
    for (const watch of [json, changesOnly]) expect(events(watch.output()).map((event) => [event.revision, event.kind, event.path, event.value])).toEqual([[1, "put", "/w/a", 1], [2, "put", "/w/b", 2]]);
    expect(text.output().split("\n").slice(0, 2).map((line) => line.trim().split(/\s+/).slice(0, 4).join(" "))).toEqual(["1 put /w/a 1", "2 put /w/b 2"]);
    for (const watch of [json, text, changesOnly]) watch.child.kill("SIGTERM");
    for (const watch of [json, text, changesOnly]) expect((await watch.done).stderr).toBe("");
  });

  it("follows a store removed and made anew under it, as `tail -F` a file: says so once each time, then prints the new store's changes", async () => {
    const project = new Project("plugins: {}\n", "apex-watch-new-");
    expect(project.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    const watch = project.apexAsync(["memory", "watch", "/w/**", "--json", "--timeout", "120"]);
    await waitFor("the current value", () => events(watch.output()).length >= 1);
    const warned = (count: number) => watch.errors().split("\n").filter((line) => line.startsWith("warning: the store in ")).length >= count;
    for (const [round, path] of [[1, "/w/b"], [2, "/w/c"]] as const) {
      rmSync(project.storeDir, { recursive: true, force: true });
      // Made anew before the watch looked, or after it saw the store gone: either way it follows the new one (it went deaf).
      if (round === 2) await waitFor("the watch to see the store removed", () => warned(2));
      expect(project.apex(["memory", "set", path, String(round + 1)]).status).toBe(0);
      await waitFor(`the change to ${path} in the new store`, () => events(watch.output()).some((event) => event.path === path));
    }
    expect(events(watch.output()).map((event) => [event.revision, event.kind, event.path, event.value])).toEqual([[1, "current", "/w/a", 1], [1, "put", "/w/b", 2], [1, "put", "/w/c", 3]]);
    const warnings = watch.errors().trim().split("\n");
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(new RegExp(`^warning: the store in ${project.storeDir} (was replaced by a new store|was removed): the values it held are gone with it\\. The watch goes on (with the new one|once a write makes a new one), printing every change made to it from its first revision \\(revisions start again at 1\\)\\.$`));
    expect(warnings[1]).toBe(`warning: the store in ${project.storeDir} was removed: the values it held are gone with it. The watch goes on once a write makes a new one, printing every change made to it from its first revision (revisions start again at 1).`);
    watch.child.kill("SIGTERM");
    expect((await watch.done).status).toBe(0);
  });
});

describe("apex memory watch and its reader", () => {
  /** Resolves with how the process ended, or with null when it is still running after `ms`. */
  const ended = (child: ChildProcess, ms: number) =>
    new Promise<{ code: number | null; signal: string | null } | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });

  it("ends once whoever reads its output has gone, with nothing written to the store (a pipe, as `| head -1`; a Node parent's socket)", async () => {
    const env = { ...cleanEnv(), NO_COLOR: "1" };
    expect(runApex(["memory", "set", "/w/a", "1"], { cwd: dir }).status).toBe(0);
    // A real pipe(2) (what a shell's `|` makes): head reads the current value and exits. apex's exit status goes to stderr.
    const shell = spawn("sh", ["-c", '{ "$0" "$1" memory watch "/w/**" --json; echo "apex exited $?" >&2; } | head -1', process.execPath, APEX_BIN], { cwd: dir, env, detached: true });
    // stdio "pipe" of a Node parent: a unix socket, closed once the first line came.
    const child = spawn(process.execPath, [APEX_BIN, "memory", "watch", "/w/**", "--json"], { cwd: dir, env, detached: true });
    let shellOut = "";
    let shellErr = "";
    shell.stdout.setEncoding("utf8").on("data", (chunk: string) => (shellOut += chunk));
    shell.stderr.setEncoding("utf8").on("data", (chunk: string) => (shellErr += chunk));
    child.stdout.once("data", () => child.stdout.destroy());
    try {
      const [piped, socket] = await Promise.all([ended(shell, 15_000), ended(child, 15_000)]);
      expect(piped, shellErr).toEqual({ code: 0, signal: null });
      expect(JSON.parse(shellOut)).toMatchObject({ kind: "current", path: "/w/a", value: 1 });
      expect(shellErr).toBe("apex exited 0\n");
      expect(socket).toEqual({ code: 0, signal: null });
      // Nothing was written meanwhile: the store is at the revision of the one set.
      const replay = runApex(["memory", "watch", "/**", "--since", "0", "--json", "--timeout", "0.2"], { cwd: dir });
      expect(replay.stdout.trim().split("\n").map((line) => JSON.parse(line).revision)).toEqual([1]);
    } finally {
      for (const process_ of [shell, child]) if (process_.exitCode === null && process_.signalCode === null) process.kill(-process_.pid!, "SIGKILL");
    }
  });
});

describe("apex memory input and output that cannot be read or written", () => {
  it("stdin that is a directory (`< dir`) is bad input (exit 2) named stdin, for set as for import; a file over 2 GiB is APEX_E_TOO_LARGE (exit 2); nothing is written", () => {
    const stdin = openSync(dir, "r");
    try {
      for (const args of [["memory", "set", "/s", "-"], ["memory", "import", "-"]]) {
        const result = spawnSync(process.execPath, [APEX_BIN, ...args], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" }, stdio: [stdin, "pipe", "pipe"], encoding: "utf8", timeout: 20_000 });
        // set: APEX_E_INTERNAL "EISDIR: illegal operation on a directory, read" (exit 1); import named it "-".
        expect([result.status, result.stderr]).toEqual([2, "error[APEX_E_BAD_INPUT]: Cannot read stdin: it is a directory (EISDIR).\n"]);
      }
    } finally {
      closeSync(stdin);
    }
    // A file over 2 GiB (sparse here: it takes no room) said only "Cannot read FILE: ERR_FS_FILE_TOO_LARGE.".
    const huge = join(dir, "huge.json");
    writeFileSync(huge, "");
    truncateSync(huge, 2 ** 31 + 1);
    const tooLarge = runApex(["memory", "import", huge], { cwd: dir });
    expect([tooLarge.status, tooLarge.stderr]).toEqual([2, `error[APEX_E_TOO_LARGE]: Cannot read ${huge}: it is larger than 2 GiB, the most APEX reads as one input.\n  hint: Nothing was written. Import it in parts (\`apex memory export GLOB\` writes a part).\n`]);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("to a full disk (`export > backup.json`) is APEX_E_DISK_FULL, exit 1, in the form of every error (--json too), not a stack trace", () => {
    expect(runApex(["memory", "set", "/f/a", '"x"'], { cwd: dir }).status).toBe(0);
    // It was Node's "Error: ENOSPC: no space left on device, write" with its stack.
    for (const args of [["memory", "export"], ["memory", "watch", "/f", "--timeout", "5"], ["memory", "show", "/f", "--json"]]) expectDiskFullReport(dir, args);
  });
});

describe("apex memory set through a running supervisor", () => {
  // Cleaned up after each test by the harness.
  let project: Project | undefined;

  it("refuses a value nested too deep to send as the store refuses it (exit 2, APEX_E_TOO_DEEP), not with a crash, and writes nothing", () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    project.start();
    const deep = `${"[".repeat(5000)}${"]".repeat(5000)}`;
    for (const json of [false, true]) {
      const result = project.apex(["memory", "set", "/deep", deep, ...(json ? ["--json"] : [])]);
      expect(result.status, result.stderr).toBe(2);
      expect(result.stderr).toContain("APEX_E_TOO_DEEP");
      expect(result.stderr).not.toContain("Maximum call stack");
      expect(result.stderr).not.toMatch(/\n\s+at /);
    }
    // Through the supervisor still: what the store keeps is unchanged, and the session runs on.
    expect(project.apex(["memory", "show", "/deep"]).status).toBe(3);
    expect(project.apex(["memory", "set", "/shallow", `${"[".repeat(100)}${"]".repeat(100)}`]).status).toBe(0);
    expect(project.status().session?.status).toBe("active");
  });

  it("a value nested too deep is refused alike through the supervisor and with no session running: naming its path, with the hint, set and import, any depth", () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    project.start();
    const nested = (levels: number) => `${"[".repeat(levels)}${"]".repeat(levels)}`;
    // 600: deep enough for the store to refuse; 20,000: too deep for JSON.stringify to send at all.
    for (const levels of [600, 20_000]) writeFileSync(join(project.dir, `deep-${levels}.json`), `{"/ok": 1, "/deep/b": ${nested(levels)}}`);
    const attempts = () =>
      [600, 20_000].flatMap((levels) => [
        project!.apex(["memory", "set", "/deep/a", nested(levels)]),
        project!.apex(["memory", "set", "/deep/a", nested(levels), "--json"]),
        project!.apex(["memory", "import", `deep-${levels}.json`]),
        project!.apex(["memory", "import", `deep-${levels}.json`, "--json"]),
      ]);
    const throughSupervisor = attempts();
    expect(project.apex(["stop"]).status).toBe(0);
    const direct = attempts();
    const hint = "Values may nest at most 512 levels; store deeper structures flattened, or split across paths.";
    for (const [i, result] of throughSupervisor.entries()) {
      const path = i % 4 < 2 ? "/deep/a" : "/deep/b";
      expect(result.status, result.stderr).toBe(2);
      if (i % 2 === 1) expect(JSON.parse(result.stderr).error).toEqual({ code: "APEX_E_TOO_DEEP", message: `${path}: The value nests arrays and objects more than 512 levels deep.`, exitCode: 2, exit_code: 2, hint, details: { path } });
      else expect(result.stderr).toBe(`error[APEX_E_TOO_DEEP]: ${path}: The value nests arrays and objects more than 512 levels deep.\n  hint: ${hint}\n`);
      // Through the supervisor (the value too deep to send said no path; one the store refused, no hint) as without it.
      expect([direct[i]!.status, direct[i]!.stderr]).toEqual([result.status, result.stderr]);
    }
    expect(project.apex(["memory", "query", "/**", "--keys"]).stdout).not.toMatch(/\/ok|\/deep/);
  });

  it("a write the supervisor does not answer in time says it was sent and may still land, and how to check (text and --json)", async () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    project.start();
    const pid = (project.status().session as { supervisor: { pid: number } }).supervisor.pid;
    process.kill(pid, "SIGSTOP");
    try {
      // Both at once: each waits on the stopped supervisor (~2 s) until it gives up, apart from the other.
      const [set, text] = await Promise.all([project.apexAsync(["memory", "set", "/notes/late", "1", "--json"]).done, project.apexAsync(["memory", "delete", "/notes/a b"]).done]);
      // It said only that the supervisor did not answer: a rerun could undo (delete) or redo (import) what then landed.
      expect(set.status, set.stderr).toBe(1);
      const error = JSON.parse(set.stderr).error;
      expect(error).toMatchObject({ code: "APEX_E_TIMEOUT", details: { sent: true, may_still_land: true, path: "/notes/late", check: "apex memory show /notes/late" } });
      expect(error.message).toMatch(/The write of \/notes\/late was sent and may still land\.$/);
      expect(error.hint).toMatch(/^Check with `apex memory show \/notes\/late` before writing it again\./);
      expect(text.status).toBe(1);
      expect(text.stderr).toContain("The delete of /notes/a b was sent and may still land.\n  hint: Check with `apex memory show '/notes/a b'` before writing it again.");
    } finally {
      process.kill(pid, "SIGCONT");
    }
    // It was sent: once the supervisor goes on, it lands.
    expect(project.apex(["memory", "show", "/notes/late"]).stdout).toBe("1\n");
  }, 30_000);

  it("a value one byte over 256 MiB of JSON is APEX_E_TOO_LARGE (exit 2) naming its size and the limit, the same through the supervisor, its socket and with no session; nothing is written", async () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    project.start();
    const file = join(project.dir, "big.json");
    const limit = 256 * 1024 * 1024;
    writeFileSync(file, `"${"x".repeat(limit - 1)}"`); // limit + 1 bytes of JSON
    const message = `The value for /big is ${limit + 1} bytes of JSON; a memory value may be at most ${limit} bytes (256 MiB) of JSON. Nothing was written.`;
    const setBig = () => {
      const input = openSync(file, "r");
      try {
        return spawnSync(process.execPath, [APEX_BIN, "memory", "set", "/big", "-", "--json"], { cwd: project!.dir, env: cleanEnv(), stdio: [input, "pipe", "pipe"], encoding: "utf8", timeout: 60_000 });
      } finally {
        closeSync(input);
      }
    };
    try {
      const result = setBig();
      expect(result.status, result.stderr).toBe(2);
      expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_TOO_LARGE", message, details: { path: "/big", bytes: limit + 1, limit_bytes: limit } });
      // A client of the socket other than the CLI: the supervisor took up to a read's chunk (~64 KiB) past the limit.
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(join(project!.dir, ".apex", "supervisor.sock"));
        let text = "";
        socket.setEncoding("utf8");
        socket.on("data", (data) => {
          text += data;
          if (text.includes("\n")) socket.end();
        });
        socket.on("close", () => resolve(text));
        socket.on("error", reject);
        socket.write('{"id":1,"method":"memory.set","params":{"path":"/big","actor":"user:test","value":');
        socket.write(readFileSync(file));
        socket.write("}}\n");
      });
      expect(JSON.parse(reply).error).toMatchObject({ code: "APEX_E_TOO_LARGE", message });
      expect(project.apex(["memory", "show", "/big"]).status).toBe(3);
      expect(project.status().session?.status).toBe("active");
      // With no session running, the store written directly: the same limit (there was none).
      expect(project.apex(["stop"]).status).toBe(0);
      const direct = setBig();
      expect(direct.status, direct.stderr).toBe(2);
      expect(JSON.parse(direct.stderr).error).toMatchObject({ code: "APEX_E_TOO_LARGE", message });
    } finally {
      truncateSync(file);
    }
    expect(project.apex(["memory", "show", "/big"]).status).toBe(3);
  }, 90_000);
});

describe("apex memory writes through a running supervisor and session_timeout", () => {
  // Cleaned up after each test by the harness.
  let project: Project | undefined;

  it("a delete that deletes nothing (APEX_E_NOT_FOUND) or an import of {} is no agent activity: an agent doing only that lets the session time out", async () => {
    // Every delete and import reset the idle timer, whether it changed anything or not: this session ran on for ever.
    const loop = "while true; do apex memory delete /nothing/here >/dev/null 2>&1; echo $? >> deletes.rc; echo '{}' | apex memory import - >/dev/null 2>&1; echo $? >> imports.rc; sleep 0.2; done";
    project = new Project(shellAgents({ deleter: loop }, "session:\n  session_timeout: 3\n"));
    const ready = project.start();
    await waitFor("the timeout to end the supervisor", () => !isAlive(ready.supervisor_pid), 20_000);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)[0]).toMatchObject({ session_id: ready.session_id, status: "stopped", outcome: "timed out: no agent activity for 3 s" });
    // The agent did delete, again and again, through the supervisor, finding nothing each time (exit 3).
    const codes = readFileSync(join(project.dir, "deletes.rc"), "utf8").trim().split("\n");
    expect(codes.filter((code) => code === "3").length, codes.join(" ")).toBeGreaterThanOrEqual(2);
    const imports = readFileSync(join(project.dir, "imports.rc"), "utf8").trim().split("\n");
    expect(imports.filter((code) => code === "0").length, imports.join(" ")).toBeGreaterThanOrEqual(2);
  });

  it("a set of the value its path already has is no agent activity either: an agent setting only that lets the session time out", async () => {
    // A set changed nothing when the value was the same (written in any key order), yet reset the idle timer: the session ran on for ever.
    // First 20 sets that change the value, over longer than the timeout: each is activity, the session runs on through them.
    const changing = `i=0; while [ $i -lt 20 ]; do apex memory set /same "{\\"a\\": $i}" >/dev/null 2>&1 || exit 1; i=$((i+1)); sleep 0.2; done; touch changed.done`;
    const same = `while true; do apex memory set /same '{"a": 1, "b": [2]}' >/dev/null 2>&1; echo $? >> sets.rc; apex memory set /same '{"b": [2], "a": 1}' >/dev/null 2>&1; echo $? >> sets.rc; sleep 0.2; done`;
    project = new Project(shellAgents({ setter: `${changing}; ${same}` }, "session:\n  session_timeout: 3\n"));
    const ready = project.start();
    await waitFor("the timeout to end the supervisor", () => !isAlive(ready.supervisor_pid), 40_000);
    expect(JSON.parse(project.apex(["session", "history", "--json"]).stdout)[0]).toMatchObject({ session_id: ready.session_id, status: "stopped", outcome: "timed out: no agent activity for 3 s" });
    expect(existsSync(join(project.dir, "changed.done")), "the session timed out while the agent changed the value").toBe(true);
    // Then the agent set the same value, again and again, through the supervisor, each set succeeding.
    const codes = readFileSync(join(project.dir, "sets.rc"), "utf8").trim().split("\n");
    expect(codes.filter((code) => code === "0").length, codes.join(" ")).toBeGreaterThanOrEqual(4);
  }, 90_000);
});

describe("apex memory watch through a supervisor whose session stops", () => {
  it("ends cleanly, exit 0, whether its process is in the agent's group, left it (setsid) or was never the agent's: the last says the session ended", async () => {
    const recorder = join(FIXTURES, "watch-recorder.mjs");
    // The group's leader (sh) ends at the stop's SIGTERM: its group is then signalled again, while the watches end.
    const project = new Project(shellAgents({ idle: `node ${recorder} in & node ${recorder} out & while true; do sleep 0.5; done` }));
    const started = project.start();
    expect(project.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    // One the stop does not signal: in a group of its own, without the agent's environment but what reaches the supervisor.
    const agent = { APEX_SOCKET: started.socket, APEX_SESSION_ID: started.session_id, APEX_AGENT: "idle" };
    const outside = project.apexAsync(["memory", "watch", "/w/**", "--json"], { env: agent });
    const shown = (output: string) => output.includes('"path":"/w/a"');
    await waitFor("every watch to print the value", () => shown(outside.output()) && ["in", "out"].every((tag) => existsSync(join(project.dir, `${tag}.out`)) && shown(readFileSync(join(project.dir, `${tag}.out`), "utf8"))));
    expect(project.apex(["stop"]).status).toBe(0);
    // It failed: `APEX_E_RPC: Cannot reach the supervisor at …: ENOENT.`, exit 1.
    expect(await outside.done).toMatchObject({ status: 0, stderr: "The session has ended: its memory changes no more, so the watch ends.\n" });
    // Those the stop signalled were killed by its second SIGTERM (exit 143) as often as not.
    const exits = await waitFor("the signalled watches to end", () => ["in", "out"].every((tag) => existsSync(join(project.dir, `${tag}.exit`))) && ["in", "out"].map((tag) => readFileSync(join(project.dir, `${tag}.exit`), "utf8")));
    expect(exits.map((exit) => JSON.parse(exit))).toEqual([{ code: 0, signal: null }, { code: 0, signal: null }]);
    for (const tag of ["in", "out"]) expect(readFileSync(join(project.dir, `${tag}.err`), "utf8")).toBe("");
  });
});

describe("apex memory watch --since through a running supervisor, far behind", () => {
  // Cleaned up after each test by the harness.
  let project: Project | undefined;

  it("never shows a put with a value written after it, when a later change of its path lies beyond the batch the supervisor sends (10,000 changes)", () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    const started = project.start();
    const first = JSON.parse(project.apex(["memory", "set", "/far/x", "\"old\"", "--json"]).stdout) as { revision: number };
    const file = join(project.dir, "bulk.json");
    writeFileSync(file, JSON.stringify(Object.fromEntries(Array.from({ length: 10_050 }, (_, i) => [`/bulk/k${i}`, i]))));
    expect(project.apex(["memory", "import", file]).status).toBe(0);
    project.apex(["memory", "set", "/far/x", "\"new\""]);
    // As an agent watches: through the supervisor's socket, which answers a batch at a time.
    const agent = { APEX_SOCKET: started.socket, APEX_SESSION_ID: started.session_id, APEX_AGENT: "idle" };
    const result = project.apex(["memory", "watch", "/far/*", "--since", String(first.revision - 1), "--timeout", "0.1", "--json"], { env: agent });
    expect(result.status, result.stderr).toBe(0);
    // The value "new" was shown for the put of "old", since the batch ended before the second put.
    expect(result.stdout.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>).map((event) => [event.kind, event.path, event.value, event.overwritten ?? false])).toEqual([
      ["put", "/far/x", null, true],
      ["put", "/far/x", "new", false],
    ]);
  });

  it("replays changes whose values together are more than one reply carries (SMALL_LIMITS: 8 MiB of JSON), as the store read directly prints them", () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }), "apex-session-", SMALL_LIMITS);
    const started = project.start();
    const first = JSON.parse(project.apex(["memory", "set", "/big/marker", "0", "--json"]).stdout) as { revision: number };
    const file = join(project.dir, "value.json");
    // Each value alone is within the limit; the two together are not (under the real limits: two of 150 MiB).
    const BIG = 4.5 * MIB;
    writeFileSync(file, `"${"v".repeat(BIG)}"`);
    for (const path of ["/big/a", "/big/b"]) setFromFile(project, path, file);
    truncateSync(file);
    const agent = { APEX_SOCKET: started.socket, APEX_SESSION_ID: started.session_id, APEX_AGENT: "idle" };
    const watch = (name: string, env: NodeJS.ProcessEnv) => apexToFile(project!, name, ["memory", "watch", "/big/**", "--since", String(first.revision), "--timeout", "0.1", "--json"], env);
    // As an agent watches, through the supervisor's socket: the reply holding both was APEX_E_TOO_LARGE, exit 2,
    // its hint to ask for less (the watch cannot) or to run with no session running.
    const throughSupervisor = watch("through-supervisor.ndjson", agent);
    expect([throughSupervisor.status, throughSupervisor.stderr]).toEqual([0, ""]);
    const direct = watch("direct.ndjson", {});
    expect([direct.status, direct.stderr]).toEqual([0, ""]);
    const lines = (path: string) => {
      const text = readFileSync(path);
      const found: Array<{ revision: number; path: string; length: number }> = [];
      for (let start = 0; start < text.length; ) {
        const end = text.indexOf(10, start);
        const line = JSON.parse(text.subarray(start, end).toString("utf8")) as { revision: number; path: string; value: string };
        found.push({ revision: line.revision, path: line.path, length: line.value.length });
        start = end + 1;
      }
      return found;
    };
    const printed = lines(throughSupervisor.out);
    expect(printed).toEqual([
      { revision: first.revision + 1, path: "/big/a", length: BIG },
      { revision: first.revision + 2, path: "/big/b", length: BIG },
    ]);
    expect(readFileSync(throughSupervisor.out).equals(readFileSync(direct.out))).toBe(true);
  }, 180_000);

  it("replays every change up to where the watch began, however short --timeout is, as with no session running", () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    const started = project.start();
    const file = join(project.dir, "bulk.json");
    writeFileSync(file, JSON.stringify(Object.fromEntries(Array.from({ length: 25_000 }, (_, i) => [`/bulk/k${i}`, i]))));
    const imported = JSON.parse(project.apex(["memory", "import", file, "--json"]).stdout) as { revision: number };
    const agent = { APEX_SOCKET: started.socket, APEX_SESSION_ID: started.session_id, APEX_AGENT: "idle" };
    // It printed what came in the time given (a batch of 10,000 or two, or none), then ended with exit 0 as if that were all.
    const result = project.apex(["memory", "watch", "/bulk/**", "--since", String(imported.revision - 25_000), "--timeout", "0.1", "--json"], { env: agent });
    expect(result.status, result.stderr).toBe(0);
    const revisions = result.stdout.trim().split("\n").map((line) => (JSON.parse(line) as { revision: number }).revision);
    expect(revisions.length).toBe(25_000);
    expect(revisions.at(-1)).toBe(imported.revision);
  }, 60_000);
});

describe("apex memory query, show and export through a running supervisor, of more than one reply carries (SMALL_LIMITS: 8 MiB of JSON)", () => {
  // Made once for the tests below, and cleaned up after them.
  let project: Project;
  /** The environment of a command run in the session's agent: it reads through the supervisor's socket. */
  let agent: NodeJS.ProcessEnv;
  const BIG = (90 * MIB) / 32;

  // The memory read: /big/a, /big/b and /big/c of 2.8 MiB each (a page is 2 MiB of JSON), 8.4 MiB together, past what one
  // reply carries; and 140 values of 16 KiB under /many, 2.2 MiB: a page ends among them. Under the real limits: 90 MiB
  // each, and 140 values of 512 KiB.
  beforeAll(() => {
    project = new Project(idleAgentConfig(), "apex-session-", SMALL_LIMITS);
    const started = project.start();
    agent = { APEX_SOCKET: started.socket, APEX_SESSION_ID: started.session_id, APEX_AGENT: "idle" };
    const file = join(project.dir, "value.json");
    try {
      writeFileSync(file, `"${"v".repeat(BIG)}"`);
      for (const path of ["/big/a", "/big/b", "/big/c"]) setFromFile(project, path, file);
      writeFileSync(file, JSON.stringify(Object.fromEntries(Array.from({ length: 140 }, (_, i) => [`/many/k${String(i).padStart(3, "0")}`, "m".repeat(16 * 1024)]))));
      expect(project.apex(["memory", "import", file]).status).toBe(0);
    } finally {
      rmSync(file, { force: true });
    }
  }, 120_000);
  afterAll(() => project?.cleanup());

  /** `apex ARGS` (with ENV) as apexToFile runs it: its exit, stderr, and its output's size and SHA-256 (the file is removed). */
  const printed = (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const result = apexToFile(project, "printed.out", args, env);
    try {
      const bytes = readFileSync(result.out);
      return { status: result.status, stderr: result.stderr, bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") };
    } finally {
      rmSync(result.out, { force: true });
    }
  };

  it("prints, as an agent runs them, what the store read directly prints, byte for byte: text and --json, --limit across pages, show / and export of the whole memory", () => {
    for (const args of [
      ["memory", "query", "/big"],
      ["memory", "show", "/", "--json"],
      ["memory", "export"],
      ["memory", "query", "/many", "--limit", "130", "--json"],
      ["memory", "show", "/many"],
      ["memory", "export", "/many"],
    ]) {
      // Through the supervisor's socket, the reply holding all of /big was APEX_E_TOO_LARGE, exit 2, nothing printed.
      const throughSupervisor = printed(args, agent);
      expect([throughSupervisor.status, throughSupervisor.stderr], args.join(" ")).toEqual([0, ""]);
      // The store read in this process, as with no session running.
      expect(printed(args), args.join(" ")).toEqual(throughSupervisor);
      expect(throughSupervisor.bytes, args.join(" ")).toBeGreaterThan(args.some((arg) => arg.startsWith("/many")) ? 2 * MIB : 3 * BIG);
    }
  }, 600_000);

  it("memory watch prints the current values first, as an agent runs it, as the store read directly prints them", () => {
    const args = ["memory", "watch", "/big", "--timeout", "0.1", "--json"];
    // Its current values were one memory.query through the supervisor: APEX_E_TOO_LARGE, exit 2, before any change was watched.
    const throughSupervisor = printed(args, agent);
    expect([throughSupervisor.status, throughSupervisor.stderr]).toEqual([0, ""]);
    expect(throughSupervisor.bytes).toBeGreaterThan(3 * BIG);
    expect(printed(args)).toEqual(throughSupervisor);
  }, 300_000);

  it("through a supervisor of an older APEX, without memory.page, asks memory.query as before: its answer, or its APEX_E_TOO_LARGE", async () => {
    const older = await withoutMemoryPage(String(agent.APEX_SOCKET), join(project.dir, "older.sock"));
    try {
      const env = { ...agent, APEX_SOCKET: join(project.dir, "older.sock") };
      const many = await project.apexAsync(["memory", "query", "/many", "--json"], { env }).done;
      expect([many.status, many.stderr]).toEqual([0, ""]);
      const direct = printed(["memory", "query", "/many", "--json"]);
      expect({ bytes: Buffer.byteLength(many.stdout), sha256: createHash("sha256").update(many.stdout).digest("hex") }).toEqual({ bytes: direct.bytes, sha256: direct.sha256 });
      const big = await project.apexAsync(["memory", "query", "/big"], { env }).done;
      expect([big.status, big.stdout]).toEqual([2, ""]);
      expect(big.stderr).toContain("error[APEX_E_TOO_LARGE]: The answer is larger than one reply over the supervisor's socket carries (8 MiB of JSON).");
      // Each command asked memory.page first, and went on with memory.query.
      expect(older.refused()).toBe(2);
    } finally {
      await older.close();
    }
  }, 300_000);
});

/**
 * A socket standing in for the supervisor at SOCKET as an APEX without memory.page serves it: that
 * method is answered as one nobody serves (details.unknown_method), every other request is passed on.
 */
async function withoutMemoryPage(socket: string, path: string): Promise<{ refused: () => number; close: () => Promise<void> }> {
  let refused = 0;
  const server = createServer((client) => {
    const upstream = connect(socket);
    upstream.pipe(client);
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    client.on("close", () => upstream.destroy());
    let pending = "";
    client.setEncoding("utf8").on("data", (chunk: string) => {
      pending += chunk;
      for (let end = pending.indexOf("\n"); end !== -1; end = pending.indexOf("\n")) {
        const line = pending.slice(0, end + 1);
        pending = pending.slice(end + 1);
        const request = JSON.parse(line) as { id: number; method: string };
        if (request.method !== "memory.page") upstream.write(line);
        else {
          refused += 1;
          client.write(`${JSON.stringify({ id: request.id, error: { code: "APEX_E_RPC", message: 'Unknown method "memory.page".', details: { unknown_method: "memory.page" } } })}\n`);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { refused: () => refused, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe("apex memory import of a file longer than V8's longest string (an export of large values)", () => {
  // Such a file (over 512 MiB) failed with APEX_E_INTERNAL "Cannot create a string longer than 0x1fffffe8
  // characters", so `export | import` lost a large memory. It is read an entry (or an NDJSON line) at a time, with the
  // checks of a smaller file; here on small files, the one reader a 512 MiB file would take.
  const read = (text: string) => parseLargeImport(Buffer.from(text), "big.json");
  const refusal = (text: string) => {
    try {
      read(text);
    } catch (error) {
      return { code: (error as { code: string }).code, message: (error as Error).message };
    }
    throw new Error(`read ${JSON.stringify(text)} without an error`);
  };

  it("reads what the smaller reader reads: an export's layout, one line, NDJSON, {}", () => {
    for (const text of [
      '{\n  "/a": {"x": [1, 2, {"y": null}]},\n  "/a/ü/c": "ü \\" \\\\ }",\n  "/\\u0062": -1.5e3,\n  "/t": true,\n  "/n": null\n}\n',
      '  {"/a":1,"/b":[],"/c":{},"/d":"{[\\"]}"}',
      '{"path": "/l/1", "value": 1}\n{"path": "/l/2", "value": {"two": 2}}\n\n',
      "{}\n",
      '\ufeff{\n  "/bom": 1\n}\n',
    ]) expect(read(text), text).toEqual(parseImport(text, "big.json"));
  });

  it("refuses what the smaller reader refuses, naming the line; a path or a key given twice, a bad path, bad JSON or UTF-8", () => {
    expect(refusal('{\n  "/d": 1,\n  "/e": 2,\n  "/\\u0064": 3\n}\n')).toEqual({ code: "APEX_E_BAD_INPUT", message: 'big.json:4: path "/d" is given a second time (first on line 2); one of its values would be lost.' });
    expect(refusal('{\n  "/d": 1,\n  "/e": {"x": {"y": 1,\n "y": 2}}\n}\n')).toEqual({ code: "APEX_E_BAD_INPUT", message: 'big.json:4: the value of "/e" has the key "y" twice, at /x/y in it; one of its values would be lost.' });
    expect(refusal('{\n  "/d": 1,\n  "d": 2\n}\n')).toEqual({ code: "APEX_E_BAD_PATH", message: `big.json:3: invalid path "d": it must start with '/'.` });
    expect(refusal('{\n  "/d": 1,\n  "/e": tru\n}\n')).toMatchObject({ code: "APEX_E_BAD_JSON", message: expect.stringMatching(/^big\.json:3: invalid JSON: /) });
    expect(refusal('{\n  "/d": 1,\n}\n')).toEqual({ code: "APEX_E_BAD_JSON", message: `big.json:3: invalid JSON: expected a path in double quotes, found "}".` });
    expect(refusal('{\n  "/d": 1,\n  "/e": [1, 2\n')).toEqual({ code: "APEX_E_BAD_JSON", message: "big.json:4: invalid JSON: expected the end of the value that starts on line 3, found the end of the file." });
    expect(refusal('{"/d": 1} {"/e": 2}')).toEqual({ code: "APEX_E_BAD_JSON", message: `big.json:1: invalid JSON: expected the end of the file after the object, found "{".` });
    expect(refusal('[{"/d": 1}]')).toMatchObject({ code: "APEX_E_BAD_INPUT", message: expect.stringContaining("expected a JSON object of path -> value") });
    expect(refusal('{"path": "/l/1", "value": 1}\n{"path": "/l/1", "value": 2}\n')).toMatchObject({ code: "APEX_E_BAD_INPUT", message: expect.stringMatching(/^big\.json:2: path "\/l\/1" is given a second time/) });
    expect(refusal('{\n  "/d": 1,\n  "/e": {"a": "12345678901234567891",\n "b": 12345678901234567891}\n}\n')).toEqual({ code: "APEX_E_BAD_INPUT", message: 'big.json:4: the value of "/e" has the integer 12345678901234567891, past what a JSON number holds exactly: it would be stored as 12345678901234567000.' });
    expect(refusal('{\n  "/d": 1,\n  "/e": {"a": "1e-999",\n "b": 1e-999}\n}\n')).toEqual({ code: "APEX_E_BAD_INPUT", message: 'big.json:4: the value of "/e" has the number 1e-999, nearer zero than a JSON number holds (about 5e-324): it would be stored as 0.' });
    expect(() => parseLargeImport(Buffer.concat([Buffer.from('{\n  "/d": "'), Buffer.from([0xff]), Buffer.from('"\n}\n')]), "big.json")).toThrow("big.json:2: not valid UTF-8.");
  });
});

describe("apex memory import of a value over 256 MiB of JSON, with no session running", () => {
  it("is APEX_E_TOO_LARGE (exit 2) naming the entry's path, line, size and the limit, for an object, NDJSON and a file read an entry at a time; nothing is imported", () => {
    const limit = 256 * 1024 * 1024;
    const big = `"${"x".repeat(limit - 1)}"`; // limit + 1 bytes of JSON
    const details = { path: "/big", bytes: limit + 1, limit_bytes: limit };
    const message = (where: string) => `${where}: the value for /big is ${limit + 1} bytes of JSON; a memory value may be at most ${limit} bytes (256 MiB) of JSON. Nothing was imported.`;
    const file = join(dir, "big.json");
    try {
      for (const [text, where] of [
        [`{\n  "/a": 1,\n  "/big": ${big}\n}\n`, "big.json:3"],
        [`{"path": "/a", "value": 1}\n{"path": "/big", "value": ${big}}\n`, "big.json:2"],
      ] as const) {
        writeFileSync(file, text);
        const result = runApex(["memory", "import", "big.json", "--json"], { cwd: dir, timeout: 60_000 });
        expect(result.status, result.stderr).toBe(2);
        expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_TOO_LARGE", message: message(where), details });
        expect(runApex(["memory", "show", "/a"], { cwd: dir }).status).toBe(3);
      }
      // A file longer than a string (read an entry at a time) is checked the same way.
      expect(() => parseLargeImport(Buffer.from(`{\n  "/a": 1,\n\n  "/big": ${big}\n}\n`), "big.json")).toThrow(message("big.json:4"));
    } finally {
      truncateSync(file);
    }
  }, 90_000);
});

describe("apex memory --session of a session that does not hold the project's memory", () => {
  // Cleaned up after each test by the harness.
  let project: Project | undefined;

  it("watch answers or refuses a plain path as query does: /sessions is APEX's records, read; /notes is the memory, refused", () => {
    project = new Project(shellAgents({ idle: "while true; do sleep 0.5; done" }));
    const old = project.start(["--task", "first"]).session_id;
    expect(project.apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    project.start(["--task", "second"]);
    // `watch /sessions` was compiled to the glob `/sessions**`, which the check for APEX's records did not take for them: refused, where query answered.
    for (const path of ["/sessions", "/sessions/", `/sessions/${old}`, "/notes", "/notes/a", "/sessions**"]) {
      const query = project.apex(["--session", old, "memory", "query", path, "--keys", "--json"]);
      const watch = project.apex(["--session", old, "memory", "watch", path, "--timeout", "1", "--json"]);
      expect([watch.status, JSON.parse(watch.stderr || "{}").error?.code], path).toEqual([query.status, JSON.parse(query.stderr || "{}").error?.code]);
      expect(query.status, path).toBe(path.startsWith("/notes") || path === "/sessions**" ? 4 : 0);
      if (query.status === 0) {
        const watched = watch.stdout.trim().split("\n").map((line) => JSON.parse(line) as { path: string }).map((change) => change.path);
        expect(watched, path).toEqual(expect.arrayContaining(JSON.parse(query.stdout) as string[]));
      }
    }
  });
});
