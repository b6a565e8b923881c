// The store is private (issue 11, section 3): `.apex/` and everything APEX puts in it is
// owner-only (0700 directories, 0600 files) whatever the umask, and another local user can
// read neither the store, nor the logs, nor connect to the socket. The read attempts run as
// `nobody` (root bypasses file modes, so the check must not run as root). Switching to another
// user takes root: .ci/run runs as root, so there these tests always run; without root they are
// skipped (no unprivileged stand-in for a second user exists).
import { spawnSync } from "node:child_process";
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, REPO_ROOT, isAlive, waitFor } from "./fixtures/agents/harness.js";
import { APEX_BIN } from "./helpers/cli.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

/** Runs `fn` with the process umask set to `mask` (children spawned meanwhile inherit it). */
function withUmask<T>(mask: number, fn: () => T): T {
  const previous = process.umask(mask);
  try {
    return fn();
  } finally {
    process.umask(previous);
  }
}

/** Every entry below `dir` with its type and permission bits. */
function modes(dir: string): Array<{ path: string; type: "dir" | "file" | "socket" | "other"; mode: number }> {
  const out: Array<{ path: string; type: "dir" | "file" | "socket" | "other"; mode: number }> = [];
  const visit = (path: string) => {
    const stat = lstatSync(path);
    const type = stat.isDirectory() ? "dir" : stat.isFile() ? "file" : stat.isSocket() ? "socket" : "other";
    out.push({ path, type, mode: stat.mode & 0o777 });
    if (stat.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
  };
  visit(dir);
  return out;
}

/** Runs a command as the unprivileged user `nobody`. */
function asNobody(command: string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync("runuser", ["-u", "nobody", "--", ...command], { encoding: "utf8", timeout: 20_000 });
  if (result.error) throw result.error;
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

const CONNECT = "const s=require('net').connect(process.argv[1]);s.on('connect',()=>{console.log('connected');process.exit(0)});s.on('error',(e)=>{console.log(e.code);process.exit(3)})";

const root = process.getuid?.() === 0;

describe.runIf(root)("the store is private", () => {
  it("everything under .apex is owner-only even with umask 000, and nobody can read the store, the logs or the socket", async () => {
    project = new Project(
      ["agents:", "  worker:", "    command: sh", `    args: ["-c", "echo working on a secret; exec sleep 600"]`, "plugins:", "  checkpoint: {}", "  archive: {}", ""].join("\n"),
      "apex-privacy-",
    );
    const dir = project.dir;
    // The project directory itself is open to everyone (mkdtemp makes it 0700): only .apex may keep others out.
    chmodSync(dir, 0o755);
    chmodSync(join(dir, "apex.config.yaml"), 0o644);

    const ready = withUmask(0o000, () => {
      expect(project!.apex(["memory", "set", "/secret", '"the launch codes"']).status).toBe(0);
      return project!.start(["--task", "keep it secret"]);
    });
    const worker = ready.agents[0]!;
    const log = join(project.storeDir, "logs", ready.session_id, "worker.log");
    await waitFor("the agent's output", () => spawnSync("cat", [log], { encoding: "utf8" }).stdout.includes("working on a secret"));
    expect(ready.socket.startsWith(project.storeDir)).toBe(true);

    const entries = modes(project.storeDir);
    const kinds = new Set(entries.map((entry) => entry.type));
    expect(kinds).toEqual(new Set(["dir", "file", "socket"]));
    for (const entry of entries) {
      const expected = entry.type === "dir" || entry.path.endsWith("/bin/apex") ? 0o700 : 0o600;
      expect(`${entry.path} ${entry.mode.toString(8)}`).toBe(`${entry.path} ${expected.toString(8)}`);
    }
    expect(entries.map((entry) => entry.path)).toEqual(
      expect.arrayContaining([join(project.storeDir, "store.mdb"), join(project.storeDir, "store.mdb-lock"), join(project.storeDir, "supervisor.log"), join(project.storeDir, "supervisor.json"), log, ready.socket]),
    );

    // The control: nobody can read a file of the project outside .apex, so the refusals below are the modes'.
    expect(asNobody(["cat", join(dir, "apex.config.yaml")]).status).toBe(0);
    for (const file of [join(project.storeDir, "store.mdb"), log, join(project.storeDir, "supervisor.log"), join(project.storeDir, "supervisor.json")]) {
      const read = asNobody(["cat", file]);
      expect(read.status, `nobody read ${file}`).not.toBe(0);
      expect(read.stderr).toContain("Permission denied");
      expect(read.stdout).toBe("");
    }
    expect(asNobody(["ls", project.storeDir]).stderr).toContain("Permission denied");
    const connect = asNobody([process.execPath, "-e", CONNECT, ready.socket]);
    expect(connect.stdout.trim()).toBe("EACCES");
    // The owner gets in.
    expect(spawnSync(process.execPath, ["-e", CONNECT, ready.socket], { encoding: "utf8" }).stdout.trim()).toBe("connected");

    // Bundles and backups APEX writes are private too.
    const stop = project.apex(["stop", "--json"]);
    expect(stop.status, stop.stderr).toBe(0);
    await waitFor("the agent's end", () => !isAlive(worker.pid!));
    const bundle = join(dir, "exported.apexbundle");
    withUmask(0o000, () => {
      expect(project!.apex(["session", "export", ready.session_id, "-o", bundle]).status).toBe(0);
      expect(project!.apex(["backup"]).status).toBe(0);
      const archived = project!.apex(["session", "archive", ready.session_id, "--json"]);
      expect(archived.status, archived.stderr).toBe(0);
    });
    expect(statSync(bundle).mode & 0o777).toBe(0o600);
    expect(asNobody(["cat", bundle]).stderr).toContain("Permission denied");
    const after = modes(project.storeDir);
    expect(after.some((entry) => entry.path.endsWith(".apexbundle"))).toBe(true);
    expect(after.some((entry) => /backups\/store-[^/]+\/store\.mdb$/.test(entry.path))).toBe(true);
    for (const entry of after) expect(`${entry.path} ${entry.mode.toString(8)}`).toBe(`${entry.path} ${(entry.type === "dir" || entry.path.endsWith("/bin/apex") ? 0o700 : 0o600).toString(8)}`);
  });

  it("another user's commands are refused (APEX_E_FORBIDDEN, exit 4), not answered as if the project had no store", () => {
    project = new Project("plugins:\n  checkpoint: {}\n  archive: {}\n", "apex-privacy-");
    chmodSync(project.dir, 0o755);
    chmodSync(join(project.dir, "apex.config.yaml"), 0o644);
    expect(project.apex(["memory", "set", "/secret", '"hidden"']).status).toBe(0);
    const config = join(project.dir, "apex.config.yaml");
    // `session list` said "No sessions yet" (exit 0), `checkpoint list` "No session in this project yet", `memory set` APEX_E_INTERNAL.
    for (const args of [["session", "list"], ["status"], ["checkpoint", "list"], ["memory", "show", "/secret"], ["memory", "set", "/y", "1"], ["session", "export", "x", "-o", "/tmp/never.apexbundle"]]) {
      const result = asNobody([process.execPath, APEX_BIN, "--config", config, ...args, "--json"]);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(4);
      expect(JSON.parse(result.stderr).error).toMatchObject({ code: "APEX_E_FORBIDDEN", message: `This user may not read the store at ${project.storeDir} (EACCES).` });
      expect(result.stdout).toBe("");
    }
    // A store this user may read but not write (another user's, opened to others by hand): reads
    // answer, and a write is refused as such, naming the owner. It was APEX_E_STORE "Permission
    // denied: Attempting to setup locks" (exit 1), and for start APEX_E_INTERNAL "EACCES: … open
    // …/supervisor.log".
    expect(spawnSync("chmod", ["-R", "go+rX", project.storeDir]).status).toBe(0);
    expect(asNobody([process.execPath, APEX_BIN, "--config", config, "memory", "show", "/secret"]).stdout.trim()).toBe('"hidden"');
    for (const args of [["memory", "set", "/y", "1"], ["start", "--task", "t"], ["task", "add", "t"]]) {
      const result = asNobody([process.execPath, APEX_BIN, "--config", config, ...args, "--json"]);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(4);
      expect(JSON.parse(result.stderr).error).toMatchObject({
        code: "APEX_E_FORBIDDEN",
        message: `This user may not write the store at ${project.storeDir} (EACCES); ${project.storeDir} belongs to uid 0 (mode 0755) and this user is uid 65534. Nothing was written.`,
      });
    }
    expect(project.apex(["memory", "show", "/secret"]).stdout.trim()).toBe('"hidden"');
    expect(project.apex(["session", "list", "--json"]).stdout.trim()).toBe("[]");

    // This user's own store, made read-only (0500): a write keeps that mode (it was made 0700
    // again), and what must create a file there is refused, saying how to make it writable.
    const own = mkdtempSync(join(tmpdir(), "apex-privacy-own-"));
    try {
      spawnSync("chown", ["nobody", own]);
      const ownApex = (...args: string[]) => asNobody(["sh", "-c", `cd "$0" && exec "$@"`, own, process.execPath, APEX_BIN, ...args]);
      expect(ownApex("memory", "set", "/a", "1").status).toBe(0);
      chmodSync(join(own, ".apex"), 0o500);
      expect(ownApex("memory", "set", "/a", "2").status).toBe(0);
      expect((statSync(join(own, ".apex")).mode & 0o777).toString(8)).toBe("500");
      const start = ownApex("start", "--task", "t", "--json");
      expect(start.status, start.stderr).toBe(4);
      expect(JSON.parse(start.stderr).error).toMatchObject({ code: "APEX_E_FORBIDDEN", hint: expect.stringContaining(`It is this user's, made read-only: \`chmod u+rwx "${join(own, ".apex")}"\``) });
      expect((statSync(join(own, ".apex")).mode & 0o777).toString(8)).toBe("500");
    } finally {
      rmSync(own, { recursive: true, force: true });
    }
  });

  it("a store made open to others is tightened when it is next opened, with a notice", () => {
    project = new Project("plugins: {}\n", "apex-privacy-");
    chmodSync(project.dir, 0o755);
    expect(project.apex(["memory", "set", "/secret", '"hidden"']).status).toBe(0);
    // As a store made before stores were private: everything readable (and writable) by all.
    for (const entry of modes(project.storeDir)) chmodSync(entry.path, entry.type === "dir" ? 0o777 : 0o666);
    expect(asNobody(["cat", join(project.storeDir, "store.mdb")]).status).toBe(0); // the control: it was readable

    const show = project.apex(["memory", "show", "/secret"]);
    expect(show.status).toBe(0);
    expect(show.stdout.trim()).toBe('"hidden"');
    expect(show.stderr).toMatch(/^notice: .*\.apex could be read by other users; \d+ entries were made owner-only \(directories 0700, files 0600\)\.\n$/);
    for (const entry of modes(project.storeDir)) expect(entry.mode & 0o077, entry.path).toBe(0);
    expect(asNobody(["cat", join(project.storeDir, "store.mdb")]).stderr).toContain("Permission denied");
    // Once private, no more notices.
    expect(project.apex(["memory", "show", "/secret"]).stderr).toBe("");
  });
});

describe("a store directory given as a relative path", () => {
  it("is made owner-only without touching the directories above the ones it created (the working directory and its parents keep their modes)", () => {
    const parent = mkdtempSync(join(tmpdir(), "apex-relative-"));
    try {
      const cwd = join(parent, "project");
      mkdirSync(cwd, { mode: 0o755 });
      chmodSync(parent, 0o755);
      chmodSync(cwd, 0o755);
      const script = `import(${JSON.stringify(join(REPO_ROOT, "dist/plugins/lmdb/backend.js"))}).then(async ({ LmdbStore }) => { const store = LmdbStore.open("nested/.apex"); await store.set("/a", 1); await store.close(); })`;
      const result = spawnSync(process.execPath, ["-e", script], { cwd, encoding: "utf8" });
      expect(result.status, result.stderr).toBe(0);
      expect(statSync(join(cwd, "nested/.apex")).mode & 0o777).toBe(0o700);
      expect(statSync(join(cwd, "nested")).mode & 0o777).toBe(0o700);
      expect(statSync(cwd).mode & 0o777).toBe(0o755);
      expect(statSync(parent).mode & 0o777).toBe(0o755);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  });
});

describe("making directories private only tightens", () => {
  it("takes group and other bits away from an existing directory and keeps an owner's stricter mode (0500: read-only); what it makes is 0700 whatever the umask", async () => {
    const { makePrivate, makePrivateDir } = await import("../core/store/private.js");
    const { tightenStoreDir } = await import("../plugins/lmdb/tighten.js");
    const parent = mkdtempSync(join(tmpdir(), "apex-tighten-"));
    try {
      // It set 0700 on each of them: a directory its owner made read-only was writable again.
      for (const [before, after] of [[0o500, 0o500], [0o550, 0o500], [0o750, 0o700], [0o777, 0o700], [0o700, 0o700], [0o300, 0o300]] as const) {
        const dir = join(parent, `d${before.toString(8)}`);
        mkdirSync(dir);
        chmodSync(dir, before);
        makePrivateDir(dir);
        expect((statSync(dir).mode & 0o777).toString(8), dir).toBe(after.toString(8));
      }
      withUmask(0o277, () => makePrivateDir(join(parent, "new/deeper")));
      for (const dir of ["new", "new/deeper"]) expect((statSync(join(parent, dir)).mode & 0o777).toString(8), dir).toBe("700");
      // A store made before stores were private: a read-only directory and file stay read-only (they became 0700 and 0600).
      const store = join(parent, "store");
      mkdirSync(join(store, "kept"), { recursive: true });
      writeFileSync(join(store, "kept/notes"), "n");
      writeFileSync(join(store, "one"), "1");
      chmodSync(join(store, "kept/notes"), 0o444);
      chmodSync(join(store, "kept"), 0o555);
      chmodSync(join(store, "one"), 0o644);
      chmodSync(store, 0o755);
      expect(tightenStoreDir(store)).toHaveLength(4);
      expect(modes(store).map((entry) => [entry.path.slice(store.length), entry.mode.toString(8)])).toEqual([["", "700"], ["/kept", "500"], ["/kept/notes", "400"], ["/one", "600"]]);
      chmodSync(join(store, "one"), 0o444);
      makePrivate(join(store, "one"));
      expect((statSync(join(store, "one")).mode & 0o777).toString(8)).toBe("400");
    } finally {
      // Without root, the entries of a read-only directory cannot be removed until it is writable.
      spawnSync("chmod", ["-R", "u+rwx", parent]);
      rmSync(parent, { recursive: true, force: true });
    }
  });
});
