// Files written where the user says (-o FILE), through the built CLI: `apex session report -o`
// follows the rule `apex session export -o` follows. An existing FILE is refused without --force
// (APEX_E_CONFLICT, exit 4, the file untouched), a missing directory is exit 3, a directory exit 2,
// each before any work; and the report is written whole or not at all: a write that fails half
// way (the process's file size limit, `ulimit -f`, makes it fail with EFBIG after 1 KiB) leaves
// the old FILE as it was and no temporary file behind.
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APEX_BIN, Project, cleanEnv, shellAgents } from "./fixtures/agents/harness.js";

let project: Project;
let sessionId: string;

beforeAll(() => {
  project = new Project(shellAgents({ loop: "while true; do sleep 0.2; done" }).replace("plugins: {}\n", "plugins:\n  checkpoint: {}\n  history: {}\n  archive: {}\n"), "apex-output-");
  sessionId = project.start(["--task", "report me"]).session_id;
  const stopped = project.apex(["stop"]);
  expect(stopped.status, stopped.stderr).toBe(0);
}, 120_000);
afterAll(() => project?.cleanup());

function errorOf(stderr: string): { code: string; message: string; exitCode: number } {
  return JSON.parse(stderr.trim().split("\n").at(-1)!).error;
}

describe("-o FILE", () => {
  it("session report: an existing FILE is kept without --force (exit 4), replaced with it; a missing directory, a directory and --force alone are refused", () => {
    const file = join(project.dir, "report.md");
    const first = project.apex(["session", "report", "-o", "report.md"]);
    expect(first.status, first.stderr).toBe(0);
    const written = readFileSync(file, "utf8");
    expect(written).toMatch(new RegExp(`^# Session report: ${sessionId}`));

    writeFileSync(file, "my notes\n");
    for (const args of [["session", "report", "-o", "report.md", "--json"], ["session", "report", sessionId, "--output", file, "--format", "json", "--json"]]) {
      const refused = project.apex(args);
      expect(refused.status, refused.stderr).toBe(4);
      expect(errorOf(refused.stderr)).toMatchObject({ code: "APEX_E_CONFLICT", message: `${file} already exists; not overwriting it.` });
      expect(refused.stdout).toBe("");
      expect(readFileSync(file, "utf8")).toBe("my notes\n");
    }
    // The same refusal, word for word, as export's.
    writeFileSync(join(project.dir, "bundle.apexbundle"), "mine\n");
    const exported = project.apex(["session", "export", sessionId, "-o", "bundle.apexbundle", "--json"]);
    expect(exported.status).toBe(4);
    expect(errorOf(exported.stderr)).toMatchObject({ code: "APEX_E_CONFLICT", message: `${join(project.dir, "bundle.apexbundle")} already exists; not overwriting it.` });

    const forced = project.apex(["session", "report", "-o", "report.md", "--force", "--json"]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(JSON.parse(forced.stdout)).toMatchObject({ session_id: sessionId, format: "json", file });
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ session: { session_id: sessionId } });
    // No temporary file is left beside it.
    expect(readdirSync(project.dir).filter((name) => name.includes(".partial-"))).toEqual([]);
    // One a write killed before its rename left (kill -9 while it wrote or synced a large bundle)
    // is removed by the next write of that file: it stayed, hidden, as large as the file. One whose
    // process runs is another write going on, and is left alone.
    const dead = spawnSync("true").pid!;
    const abandoned = join(project.dir, `.report.md.partial-${dead}-0be86e09`);
    const running = join(project.dir, `.report.md.partial-${process.pid}-00000000`);
    for (const partial of [abandoned, running]) writeFileSync(partial, "cut short");
    expect(project.apex(["session", "report", "-o", "report.md", "--force"]).status).toBe(0);
    expect(readdirSync(project.dir).filter((name) => name.includes(".partial-"))).toEqual([`.report.md.partial-${process.pid}-00000000`]);
    unlinkSync(running);

    mkdirSync(join(project.dir, "reports"));
    for (const [args, code, exit] of [
      [["session", "report", "-o", "missing/report.md", "--json"], "APEX_E_NOT_FOUND", 3],
      [["session", "report", "-o", "reports", "--force", "--json"], "APEX_E_USAGE", 2],
      [["session", "report", "--force", "--json"], "APEX_E_USAGE", 2],
      // `-o -` made a file named "-" (standard output to most tools).
      [["session", "report", "-o", "-", "--json"], "APEX_E_USAGE", 2],
      [["session", "export", sessionId, "-o", "-", "--json"], "APEX_E_USAGE", 2],
      // `-o --json` wrote a file named "--json" (exit 0, no JSON on stdout).
      [["session", "report", "-o", "--json"], "APEX_E_USAGE", 2],
      [["session", "export", sessionId, "-o", "--force", "--json"], "APEX_E_USAGE", 2],
    ] as const) {
      const refused = project.apex([...args]);
      expect(refused.status, `${args.join(" ")}: ${refused.stderr}`).toBe(exit);
      expect(errorOf(refused.stderr).code).toBe(code);
      expect(refused.stdout).toBe("");
    }
    expect(readdirSync(join(project.dir, "reports"))).toEqual([]);
    expect(existsSync(join(project.dir, "-"))).toBe(false);
    expect(readdirSync(project.dir).filter((name) => name.startsWith("--"))).toEqual([]);
  });

  it("never writes among APEX's own files (.apex/store.mdb, supervisor.json, …) however the path is spelled, --force or not; the backup directory is allowed", () => {
    // Before, `session export ID -o .apex/store.mdb --force` renamed the bundle over the store: every later command said APEX_E_STORE_DAMAGED.
    const store = join(project.dir, ".apex", "store.mdb");
    const before = { ino: statSync(store).ino, bytes: readFileSync(store) };
    symlinkSync(join(project.dir, ".apex"), join(project.dir, "state-link"));
    mkdirSync(join(project.dir, "sub"), { recursive: true });
    for (const args of [
      ["session", "export", sessionId, "-o", ".apex/store.mdb", "--force", "--json"],
      ["session", "export", sessionId, "-o", "state-link/store.mdb", "--force", "--json"],
      ["session", "export", sessionId, "-o", "sub/../.apex/new.apexbundle", "--json"],
      ["session", "report", "-o", ".apex/store.mdb-lock", "--force", "--json"],
      ["session", "report", "-o", "state-link/notes.md", "--json"],
    ]) {
      const refused = project.apex(args);
      expect(refused.status, `${args.join(" ")}: ${refused.stderr}`).toBe(4);
      expect(errorOf(refused.stderr)).toMatchObject({ code: "APEX_E_RESERVED_PATH", exitCode: 4 });
      expect(errorOf(refused.stderr).message).toContain(`is in ${join(project.dir, ".apex")}, where APEX keeps the project's store`);
      expect(refused.stdout).toBe("");
    }
    expect(statSync(store).ino).toBe(before.ino);
    expect(readFileSync(store).equals(before.bytes)).toBe(true);
    expect(existsSync(join(project.dir, ".apex", "new.apexbundle"))).toBe(false);
    expect(existsSync(join(project.dir, ".apex", "notes.md"))).toBe(false);
    // session.backup_location (.apex/backups) lies inside .apex/ and is where bundles belong.
    mkdirSync(join(project.dir, ".apex", "backups"), { recursive: true });
    const backup = project.apex(["session", "export", sessionId, "-o", ".apex/backups/kept.apexbundle", "--json"]);
    expect(backup.status, backup.stderr).toBe(0);
    expect(project.apex(["session", "list", "--json"]).status).toBe(0);
  });

  it("never writes inside the repository's git directory (.git/config, .git/hooks/…), --force or not", () => {
    // Before, `session report -o .git/config --force` replaced the repository's config by the report.
    const repo = join(project.dir, "repo");
    mkdirSync(repo);
    expect(spawnSync("git", ["init", "-q", repo]).status).toBe(0);
    const config = readFileSync(join(repo, ".git", "config"));
    symlinkSync(join(repo, ".git"), join(project.dir, "git-link"));
    for (const args of [
      ["session", "report", "-o", "repo/.git/config", "--force", "--json"],
      ["session", "report", "-o", "repo/.git/hooks/pre-commit", "--json"],
      ["session", "export", sessionId, "-o", "git-link/bundle.apexbundle", "--json"],
    ]) {
      const refused = project.apex(args);
      expect(refused.status, `${args.join(" ")}: ${refused.stderr}`).toBe(4);
      expect(errorOf(refused.stderr)).toMatchObject({ code: "APEX_E_RESERVED_PATH", exitCode: 4 });
      expect(errorOf(refused.stderr).message).toContain(`is in ${join(repo, ".git")}, the git repository's own directory`);
      expect(refused.stdout).toBe("");
    }
    expect(readFileSync(join(repo, ".git", "config")).equals(config)).toBe(true);
    expect(existsSync(join(repo, ".git", "hooks", "pre-commit"))).toBe(false);
    expect(existsSync(join(repo, ".git", "bundle.apexbundle"))).toBe(false);
    // A file beside .git, in the working tree, is the user's to write.
    const kept = project.apex(["session", "report", "-o", "repo/report.md", "--json"]);
    expect(kept.status, kept.stderr).toBe(0);
  });

  it("a FILE that is a device, a named pipe or a link to one is refused (exit 2), --force or not, and left as it was", () => {
    // Before, --force renamed the bundle over it: `-o /dev/null --force` run as root made /dev/null a regular file.
    const pipe = join(project.dir, "pipe");
    expect(spawnSync("mkfifo", [pipe]).status).toBe(0);
    symlinkSync("/dev/null", join(project.dir, "devnull"));
    for (const [args, name, kind] of [
      [["session", "export", sessionId, "-o", "pipe", "--force", "--json"], "pipe", "a named pipe"],
      [["session", "report", "-o", "pipe", "--json"], "pipe", "a named pipe"],
      [["session", "export", sessionId, "-o", "devnull", "--force", "--json"], "devnull", "a character device"],
      [["session", "report", "-o", "devnull", "--force", "--json"], "devnull", "a character device"],
    ] as const) {
      const refused = project.apex([...args]);
      expect(refused.status, `${args.join(" ")}: ${refused.stderr}`).toBe(2);
      expect(errorOf(refused.stderr)).toMatchObject({ code: "APEX_E_USAGE", message: expect.stringContaining(`-o ${join(project.dir, name)} is ${kind}, not a regular file`) });
      expect(refused.stdout).toBe("");
    }
    expect(statSync(pipe).isFIFO()).toBe(true);
    expect(lstatSync(join(project.dir, "devnull")).isSymbolicLink()).toBe(true);
    expect(readdirSync(project.dir).filter((name) => name.includes(".partial-"))).toEqual([]);
  });

  it("session report --force: a write that fails half way leaves the old FILE whole and no temporary file", () => {
    const file = join(project.dir, "kept.json");
    writeFileSync(file, '{"old": true}\n');
    const before = statSync(file);
    // The report (several KiB of JSON) is larger than the 1 KiB the process may write to a file.
    const full = project.apex(["session", "report", "--format", "json"]);
    expect(Buffer.byteLength(full.stdout)).toBeGreaterThan(2048);
    const limited = spawnSync("bash", ["-c", `ulimit -f 1; exec "${process.execPath}" "${APEX_BIN}" session report --format json -o kept.json --force --json`], {
      cwd: project.dir,
      env: { ...cleanEnv(), NO_COLOR: "1" },
      encoding: "utf8",
      timeout: 60_000,
    });
    // The write failed (EFBIG), or the process died of SIGXFSZ: either way not a success.
    expect(limited.status === 0, limited.stderr).toBe(false);
    expect(readFileSync(file, "utf8")).toBe('{"old": true}\n');
    expect(statSync(file).ino).toBe(before.ino);
    if (limited.signal === null) {
      // EFBIG is a size limit, not a full disk: said so, with no free-space figure.
      expect(errorOf(limited.stderr).code).toBe("APEX_E_FILE_TOO_LARGE");
      expect(limited.stderr).toContain("largest file size allowed");
      expect(readdirSync(project.dir).filter((name) => name.includes(".partial-"))).toEqual([]);
    }
  });
});
