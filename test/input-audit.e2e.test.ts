import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readlinkSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "./fixtures/agents/harness.js";
import { APEX_BIN, cleanEnv, runApex, tempDir } from "./helpers/cli.js";
import { registerProcess } from "./support/process-registry.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-input-audit-"));
});
afterEach(() => cleanup());

/** A run that should be over in a moment: one that waits or reads without end fails here, not at vitest's timeout. */
const apex = (args: string[], options: { input?: string; env?: NodeJS.ProcessEnv } = {}) => runApex(args, { cwd: dir, timeout: 10_000, ...options });

/** apex with stdin taken from FILE (a device or a named pipe), through the shell. */
function apexWithStdin(args: string[], file: string) {
  const result = spawnSync("/bin/sh", ["-c", `exec "${process.execPath}" "${APEX_BIN}" "$@" < "${file}"`, "sh", ...args], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" }, encoding: "utf8", timeout: 10_000 });
  return { status: result.status ?? -1, stderr: result.stderr };
}

const mkfifo = (name: string) => expect(spawnSync("mkfifo", [join(dir, name)]).status).toBe(0);

/** The commands a test runs in the background: ended (SIGKILL, by pid) after it, should it fail before they exit. */
const running = new Set<ChildProcess>();
afterEach(() => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  running.clear();
});

/** apex in the background, in the test's directory: its exit (status, or the signal that ended it) and output once it ends. */
function apexAsync(args: string[]) {
  const child = spawn(process.execPath, [APEX_BIN, ...args], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1" } });
  registerProcess(child.pid);
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const done = new Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => child.on("close", (status, signal) => resolve({ status, signal, stdout, stderr })));
  return { child, done };
}

/** True once process `pid` has the named pipe `name` (of the test's directory) open: the command reads it, waiting for a writer. */
function hasOpen(pid: number, name: string): boolean {
  const fds = `/proc/${pid}/fd`;
  try {
    return readdirSync(fds).some((fd) => {
      try {
        return readlinkSync(join(fds, fd)) === join(dir, name);
      } catch {
        return false; // closed meanwhile
      }
    });
  } catch {
    return false; // exited
  }
}

/** Opens the named pipe `name` for writing (its reader is there: no wait), writes `text` (none: writes nothing), and closes it. */
function writePipe(name: string, text?: string): void {
  const fd = openSync(join(dir, name), "w");
  try {
    if (text !== undefined) writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

describe("input files that are no regular file", () => {
  it("memory import of a device is refused at once (/dev/zero was read without end: 16 GB in two minutes); /dev/null is empty input", () => {
    expect(apex(["memory", "set", "/kept", "1"]).status).toBe(0);
    const device = apex(["memory", "import", "/dev/zero", "--json"]);
    expect(device.status, device.stderr).toBe(2);
    expect(JSON.parse(device.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: "Cannot read /dev/zero: it is a device, not a file or a pipe." });
    const stdin = apexWithStdin(["memory", "set", "/x", "-"], "/dev/zero");
    expect([stdin.status, stdin.stderr]).toEqual([2, expect.stringContaining("error[APEX_E_BAD_INPUT]: Cannot read stdin: it is a device, not a file or a pipe.")]);
    const empty = apex(["memory", "import", "/dev/null"]);
    expect([empty.status, empty.stderr]).toEqual([2, expect.stringContaining("error[APEX_E_BAD_INPUT]: /dev/null holds no entries: it is empty.")]);
    // A pipe with a writer is read as it was (`apex memory import <(…)`, /dev/stdin).
    const piped = spawnSync("/bin/sh", ["-c", `printf '{"/piped": 2}' | "${process.execPath}" "${APEX_BIN}" memory import /dev/stdin`], { cwd: dir, env: cleanEnv(), encoding: "utf8", timeout: 10_000 });
    expect(piped.status, piped.stderr).toBe(0);
    expect(JSON.parse(apex(["memory", "export"]).stdout)).toEqual({ "/kept": 1, "/piped": 2 });
  });

  it("memory import of a named pipe waits for its writer, as cat does, and reads what it writes to the end (it read empty input at once, missing a writer a moment later)", async () => {
    mkfifo("pipe");
    const late = apexAsync(["memory", "import", "pipe"]);
    await waitFor("the import to have the pipe open, its writer not there yet", () => hasOpen(late.child.pid!, "pipe"));
    // The writer comes after the command started, in two writes.
    const fd = openSync(join(dir, "pipe"), "w");
    writeSync(fd, '{"/late": 1,');
    writeSync(fd, ' "/later": [2]}');
    closeSync(fd);
    const imported = await late.done;
    expect([imported.status, imported.stderr]).toEqual([0, ""]);
    expect(imported.stdout).toBe("imported 2 entries (revision 2)\n");
    expect(JSON.parse(apex(["memory", "export"]).stdout)).toEqual({ "/late": 1, "/later": [2] });

    // A writer that opens it and writes nothing gives empty input, as to cat: refused, nothing written.
    const nothing = apexAsync(["memory", "import", "pipe"]);
    await waitFor("the import to have the pipe open", () => hasOpen(nothing.child.pid!, "pipe"));
    writePipe("pipe");
    const empty = await nothing.done;
    expect([empty.status, empty.stderr]).toEqual([2, expect.stringContaining("error[APEX_E_BAD_INPUT]: pipe holds no entries: it is empty.")]);

    // Waiting, it is ended by Ctrl-C as cat is (not held in a blocking open), nothing written.
    const waiting = apexAsync(["memory", "import", "pipe"]);
    await waitFor("the import to have the pipe open", () => hasOpen(waiting.child.pid!, "pipe"));
    waiting.child.kill("SIGINT");
    const interrupted = await waiting.done;
    expect(interrupted.status === 130 || interrupted.signal === "SIGINT", JSON.stringify(interrupted)).toBe(true);
    expect(JSON.parse(apex(["memory", "export"]).stdout)).toEqual({ "/late": 1, "/later": [2] });
  });

  it("an apex.config.yaml that is a named pipe or a device is refused as such, not waited for or read without end, and nothing is written", () => {
    mkdirSync(join(dir, "app"));
    mkfifo("app/apex.config.yaml");
    const write = runApex(["memory", "set", "/a", "1", "--json"], { cwd: join(dir, "app"), timeout: 10_000 });
    expect(write.status, write.stderr).toBe(2);
    expect(JSON.parse(write.stderr).error).toMatchObject({ code: "APEX_E_CONFIG", message: `The config file ${join(dir, "app/apex.config.yaml")} is a named pipe, not a regular file; the config is a YAML file.` });
    const validate = runApex(["config", "validate", "--json"], { cwd: join(dir, "app"), timeout: 10_000 });
    expect(validate.status).toBe(2);
    expect(JSON.parse(validate.stdout)).toMatchObject({ valid: false, errors: [{ line: 0, path: "", message: expect.stringContaining("is a named pipe") }] });
    const device = apex(["--config", "/dev/zero", "memory", "set", "/a", "1"]);
    expect([device.status, device.stderr]).toEqual([2, expect.stringContaining("error[APEX_E_CONFIG]: The config file /dev/zero is a device, not a regular file")]);
    expect(existsSync(join(dir, "app/.apex"))).toBe(false);
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\n");
    expect(apex(["config", "validate"]).status).toBe(0);
  });

  it("a config given as a pipe the shell opened (--config <(…), APEX_CONFIG=/dev/stdin) is read once, to its end: its store: section and the rest alike; the project is the working directory", () => {
    // It was refused as a named pipe (exit 2). Read twice (the store section, then the loader), the second read found the pipe empty.
    const bash = (line: string, env: NodeJS.ProcessEnv = {}) => {
      const result = spawnSync("bash", ["-c", line], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1", APEX: `${process.execPath} ${APEX_BIN}`, ...env }, encoding: "utf8", timeout: 20_000 });
      return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
    };
    const config = "store:\\n  backend: lmdb\\n  url: data\\nsession:\\n  max_checkpoints: 7\\n";
    const shown = bash(`$APEX --config <(printf '${config}') config show --json`);
    expect(shown.status, shown.stderr).toBe(0);
    expect(shown.stderr).toBe("");
    const effective = JSON.parse(shown.stdout) as { session: { max_checkpoints: number }; store: { backend: string; url: string }; projectDir: string; storeDir: string; configPath: string };
    expect(effective).toMatchObject({ session: { max_checkpoints: 7 }, store: { backend: "lmdb", url: join(dir, "data") }, projectDir: dir, storeDir: join(dir, ".apex"), configPath: expect.stringMatching(/^\/dev\/fd\/\d+$/) });
    const valid = bash(`$APEX --config <(printf '${config}') config validate`);
    expect([valid.status, valid.stderr]).toEqual([0, ""]);
    expect(valid.stdout).toMatch(/^\/dev\/fd\/\d+ is valid \(/);
    // A write: the store section says where (data/ under the working directory), read from the same pipe as the rest.
    const write = bash(`$APEX --config <(printf '${config}') memory set /a 1`);
    expect([write.status, write.stderr]).toEqual([0, ""]);
    expect(existsSync(join(dir, "data", "store.mdb"))).toBe(true);
    expect(existsSync(join(dir, ".apex", "store.mdb"))).toBe(false);
    const read = bash(`$APEX --config <(printf '${config}') memory show /a`);
    expect([read.status, read.stdout.trim()]).toEqual([0, "1"]);
    // stdin as the config, through APEX_CONFIG.
    const stdin = bash(`printf '${config}' | $APEX config show --json`, { APEX_CONFIG: "/dev/stdin" });
    expect(stdin.status, stdin.stderr).toBe(0);
    expect(JSON.parse(stdin.stdout)).toMatchObject({ session: { max_checkpoints: 7 }, projectDir: dir });
    // stdin that is a file: read as a file is, the project the working directory too (it was /dev, the store /dev/.apex).
    writeFileSync(join(dir, "stdin.yaml"), "session:\n  max_checkpoints: 9\n");
    const redirected = bash(`$APEX --config /dev/stdin config show --json < stdin.yaml`);
    rmSync(join(dir, "stdin.yaml"));
    expect(redirected.status, redirected.stderr).toBe(0);
    expect(JSON.parse(redirected.stdout)).toMatchObject({ session: { max_checkpoints: 9 }, projectDir: dir, storeDir: join(dir, ".apex") });
    // What it says is checked as a file's text is: a problem at its line.
    const bad = bash(`$APEX --config <(printf 'session:\\n  max_checkpoints: 0\\n') config validate`);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^\/dev\/fd\/\d+:2:20: session\.max_checkpoints: /);
    // A session outlives the command: its supervisor and agents (APEX_CONFIG) would read a pipe that is gone. Refused, nothing started or written.
    rmSync(join(dir, "data"), { recursive: true });
    const start = bash(`$APEX --config <(printf 'agents:\\n  w: {command: sleep, args: ["60"]}\\n') start --task t --json`);
    expect(start.status, start.stderr).toBe(2);
    expect(JSON.parse(start.stderr).error).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringMatching(/^A session cannot run on a config read from a pipe or this command's input \(\/dev\/fd\/\d+\): /) });
    writeFileSync(join(dir, "stdin.yaml"), "agents:\n  w: {command: sleep, args: [\"60\"]}\n");
    const startStdin = bash(`$APEX --config /dev/stdin start --task t < stdin.yaml`);
    expect(startStdin.status, startStdin.stderr).toBe(2);
    expect(startStdin.stderr).toContain("error[APEX_E_USAGE]: A session cannot run on a config read from a pipe or this command's input (/dev/stdin)");
    rmSync(join(dir, "stdin.yaml"));
    expect(readdirSync(dir)).toEqual([]);
    // A pipe that never ends is read up to the size a config may have, then refused (exit 2), not read without end.
    const endless = bash(`$APEX --config <(yes '# more') config show`);
    expect(endless.status).toBe(2);
    expect(endless.stderr).toMatch(/^error\[APEX_E_CONFIG\]: The config file \/dev\/fd\/\d+ is more than 262144 bytes; a config file is at most 262144 \(256 KiB\)\./);
  });
});

describe("bundle files", () => {
  it("session import of a directory, a device or a named pipe is bad input (exit 2, it was 'not found', exit 3), said as what it is, and writes nothing", () => {
    mkfifo("pipe");
    mkdirSync(join(dir, "folder.apexbundle"));
    for (const [file, kind] of [["folder.apexbundle", "a directory"], ["/dev/zero", "a device"], ["pipe", "a named pipe"]]) {
      const result = apex(["session", "import", file!, "--json"]);
      expect(result.status, result.stderr).toBe(2);
      expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: `${file!.startsWith("/") ? file : join(dir, file!)} is ${kind}, not a bundle file.` });
    }
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });
});

describe("--token-file", () => {
  it("a named pipe is waited for until its writer opens it, as cat does, and its first line is read (it was read as empty at once, missing a writer a moment later)", async () => {
    mkfifo("token");
    for (const args of [["--token-file", "token", "--remote", "127.0.0.1:1/s", "status"], ["login", "127.0.0.1:1", "--token-file", "token"]]) {
      const late = apexAsync(args);
      await waitFor("the command to have the pipe open, its writer not there yet", () => hasOpen(late.child.pid!, "token"));
      writePipe("token", "not-a-token\n");
      // Read: the token's form is checked (there is no server to reach).
      const read = await late.done;
      expect([read.status, read.stderr], args.join(" ")).toEqual([2, expect.stringContaining("is not an APEX token")]);
      // A writer that writes nothing: no token.
      const nothing = apexAsync(args);
      await waitFor("the command to have the pipe open", () => hasOpen(nothing.child.pid!, "token"));
      writePipe("token");
      const empty = await nothing.done;
      expect([empty.status, empty.stderr], args.join(" ")).toEqual([2, expect.stringContaining('error[APEX_E_USAGE]: --token-file "token" holds no token (it is empty).')]);
    }
    // As `--token-file <(pass show apex)` is: the token is read (and its form checked). The shell holds the pipe open (3<>) as its writer.
    const piped = spawnSync("/bin/sh", ["-c", `exec 3<>token; printf 'not-a-token\\n' >&3; exec "${process.execPath}" "${APEX_BIN}" --token-file token --remote 127.0.0.1:1/s status`], { cwd: dir, env: cleanEnv(), encoding: "utf8", timeout: 10_000 });
    expect([piped.status, piped.stderr]).toEqual([2, expect.stringContaining("is not an APEX token")]);
    // Waiting for its writer, Ctrl-C ends the command, which says that nothing was done.
    const waiting = apexAsync(["--token-file", "token", "--remote", "127.0.0.1:1/s", "status"]);
    await waitFor("the command to have the pipe open", () => hasOpen(waiting.child.pid!, "token"));
    waiting.child.kill("SIGINT");
    const interrupted = await waiting.done;
    expect([interrupted.status, interrupted.stderr]).toEqual([130, "error[APEX_E_INTERRUPTED]: Interrupted (Ctrl-C) before the command started: nothing was done.\n"]);
  });
});

describe("paths in the config", () => {
  it("a NUL byte in session.backup_location or store.url is a config error at its line (exit 2), not a failure of the archive plugin (exit 1) or APEX_E_INTERNAL, and nothing is written", () => {
    for (const [yaml, path, line, args] of [
      ['session:\n  backup_location: "bk\\0up"\n', "session.backup_location", 2, ["backup"]],
      ['store:\n  backend: lmdb\n  url: "data\\0dir"\n', "store.url", 3, ["memory", "set", "/a", "1"]],
    ] as const) {
      writeFileSync(join(dir, "apex.config.yaml"), yaml);
      const validate = apex(["config", "validate", "--json"]);
      expect(validate.status).toBe(2);
      expect(JSON.parse(validate.stdout).errors).toEqual([expect.objectContaining({ line, path, message: expect.stringContaining("contains a NUL byte (\\0), which no path") })]);
      const write = apex([...args, "--json"]);
      expect(write.status, write.stderr).toBe(2);
      expect(JSON.parse(write.stderr).error).toMatchObject({ code: "APEX_E_CONFIG", message: expect.stringContaining(`apex.config.yaml:${line}:`) });
      expect(existsSync(join(dir, ".apex"))).toBe(false);
    }
  });

  it("an agent command of only blanks is refused by validate and start (exit 2), writing nothing: the shell ran it, doing nothing, and the session ended at once as completed", () => {
    writeFileSync(join(dir, "apex.config.yaml"), 'agents:\n  coder:\n    command: " \\t "\n');
    const message = 'apex.config.yaml:3:14: agents.coder.command: agent coder: the command is only blanks (" \\t "): there is no program to run.';
    expect(apex(["config", "validate"]).stderr.split("\n", 1)[0]).toBe(message);
    const start = apex(["start", "--task", "t", "--json"]);
    expect(start.status, start.stderr).toBe(2);
    expect(JSON.parse(start.stderr).error).toMatchObject({ code: "APEX_E_CONFIG", message });
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("an agent name longer than 64 characters is refused by the config (exit 2), not taken and then unknown to every command naming it", () => {
    const name = `a${"b".repeat(64)}`;
    writeFileSync(join(dir, "apex.config.yaml"), `agents:\n  ${name}: {command: sh}\n  ${name.slice(0, 64)}: {command: sh}\n`);
    const result = apex(["config", "validate"]);
    expect([result.status, result.stderr]).toEqual([2, `apex.config.yaml:2:3: agents.${name}: invalid name. Expected a name of at most 64 letters, digits, ".", "_" and "-" that starts with a letter or digit.\napex.config.yaml is invalid (1 problem).\n`]);
    expect(apex(["start", "--task", "t"]).status).toBe(2);
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("a key that is a list or mapping is said by APEX's checks at its line, without a Node warning on stderr", () => {
    writeFileSync(join(dir, "apex.config.yaml"), "agents:\n  ? [coder]\n  : {command: sh}\n");
    const result = apex(["config", "validate"]);
    expect([result.status, result.stderr]).toEqual([2, 'apex.config.yaml:2:3: agents["[ coder ]"]: invalid name. Expected a name of at most 64 letters, digits, ".", "_" and "-" that starts with a letter or digit.\napex.config.yaml is invalid (1 problem).\n']);
  });
});
