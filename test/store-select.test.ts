import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ApexError } from "../core/errors.js";
import { backendFactory, redactUrl, resolveStoreSpec } from "../core/store/open.js";
import { runApex, tempDir } from "./helpers/cli.js";
import { createSharedDatabase } from "./support/postgres.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function project(config?: string): string {
  const { dir, cleanup } = tempDir("apex-store-select-");
  cleanups.push(cleanup);
  if (config !== undefined) writeFileSync(join(dir, "apex.config.yaml"), config);
  return dir;
}

function storage(dir: string, env: NodeJS.ProcessEnv = {}): { backend: string; location: string } {
  const result = runApex(["plugins", "list", "--json"], { cwd: dir, env });
  expect(result.status, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as { storage: { backend: string; location: string } }).storage;
}

describe("which store a project uses", () => {
  it("LMDB in .apex/ by default, and `apex plugins list` says so", () => {
    const dir = project();
    expect(storage(dir)).toEqual({ backend: "lmdb", location: join(dir, ".apex") });
    const text = runApex(["plugins", "list"], { cwd: dir });
    expect(text.stdout.trimEnd().split("\n").at(-1)).toBe(`storage: lmdb (${join(dir, ".apex")})`);
    expect(runApex(["memory", "set", "/a", "1"], { cwd: dir }).status).toBe(0);
    expect(existsSync(join(dir, ".apex", "store.mdb"))).toBe(true);
  });

  it("the config's store: section puts LMDB elsewhere; APEX_STORE_URL overrides it", () => {
    const dir = project("store:\n  backend: lmdb\n  url: data\n");
    expect(storage(dir)).toEqual({ backend: "lmdb", location: join(dir, "data") });
    expect(runApex(["memory", "set", "/a", "1"], { cwd: dir }).status).toBe(0);
    expect(existsSync(join(dir, "data", "store.mdb"))).toBe(true);
    expect(existsSync(join(dir, ".apex", "store.mdb"))).toBe(false);
    expect(runApex(["memory", "show", "/a"], { cwd: dir }).stdout.trim()).toBe("1");

    const env = { APEX_STORE_URL: `lmdb:${join(dir, "elsewhere")}` };
    expect(storage(dir, env)).toEqual({ backend: "lmdb", location: join(dir, "elsewhere") });
    expect(runApex(["memory", "set", "/b", "2"], { cwd: dir, env }).status).toBe(0);
    expect(existsSync(join(dir, "elsewhere", "store.mdb"))).toBe(true);
    // /a is in the config's store, not in the one APEX_STORE_URL names.
    expect(runApex(["memory", "show", "/a"], { cwd: dir, env }).status).toBe(3);
  });

  it("shows a PostgreSQL store without its password, from the config or APEX_STORE_URL", () => {
    const dir = project("store:\n  backend: postgres\n  url: postgres://apex:s3cret@db.example:5432/apex\n  project: team-a\n");
    expect(storage(dir)).toEqual({ backend: "postgres", location: "postgres://apex:***@db.example:5432/apex" });
    const env = { APEX_STORE_URL: "postgresql://ops:hunter2@other:5433/x" };
    expect(storage(dir, env)).toEqual({ backend: "postgres", location: "postgresql://ops:***@other:5433/x" });
    const text = runApex(["plugins", "list"], { cwd: dir, env });
    expect(text.stdout).toContain("storage: postgres (postgresql://ops:***@other:5433/x)");
    expect(text.stdout).not.toContain("hunter2");
  });

  it("resolves the spec: project id from the section (else the directory's name), env over config", async () => {
    const dir = project("store:\n  backend: postgres\n  url: postgres://h/db\n  project: team-a\n");
    const location = { configPath: join(dir, "apex.config.yaml"), projectDir: dir, storeDir: join(dir, ".apex") };
    expect(await resolveStoreSpec(location, {})).toEqual({ backend: "postgres", dir: location.storeDir, url: "postgres://h/db", project: "team-a" });
    expect(await resolveStoreSpec(location, { APEX_STORE_URL: "lmdb:/tmp/x" })).toEqual({ backend: "lmdb", dir: location.storeDir, url: "lmdb:/tmp/x" });
    const bare = project();
    expect(await resolveStoreSpec({ configPath: undefined, projectDir: bare, storeDir: join(bare, ".apex") }, { APEX_STORE_URL: "postgres://h/db" })).toMatchObject({ project: bare.split("/").pop() });
    expect(redactUrl("postgres://u:p@h/db")).toBe("postgres://u:***@h/db");
    expect(redactUrl("postgres://h/db?user=u&password=p&sslpassword=k&sslmode=require")).toBe("postgres://h/db?user=u&password=***&sslpassword=***&sslmode=require");
    // "" drops them (the URL an agent is given), parameters and all.
    expect(redactUrl("postgres://u:p@h/db?password=p&sslpassword=k&sslmode=require", "")).toBe("postgres://u@h/db?sslmode=require");
    // A URL that does not parse: everything from the user's colon to the last "@" goes.
    for (const url of ["postgres://u:p/w@h/db", "postgres://u:p#w@h/db", "postgres://u:p?w@h/db", "postgres://u:p@w@[h/db"]) expect(redactUrl(url)).toMatch(/^postgres:\/\/u:\*\*\*@(h|\[h)\/db$/);
  });

  it("a project id taken from the directory's name can be written in store.project: the line store migrate prints works as it is", async () => {
    const parent = project();
    const name = "My App ✓ it's \"quoted\": #1";
    const dir = join(parent, name);
    mkdirSync(dir);
    expect(runApex(["memory", "set", "/a", '"from lmdb"'], { cwd: dir }).status).toBe(0);
    const url = await createSharedDatabase("odd_id");
    const migrated = runApex(["store", "migrate", "--to", url, "--json"], { cwd: dir });
    expect(migrated.status, migrated.stderr).toBe(0);
    const report = JSON.parse(migrated.stdout) as { project: string; switch: { config: string } };
    expect(report.project).toBe(name);
    // The printed line (its password put back) is the whole config: it validates and names the copy.
    const password = new URL(url).password;
    writeFileSync(join(dir, "apex.config.yaml"), `${report.switch.config.replace(":***@", `:${encodeURIComponent(password)}@`)}\n`);
    const valid = runApex(["config", "validate"], { cwd: dir });
    expect(valid.status, valid.stderr + valid.stdout).toBe(0);
    expect(await resolveStoreSpec({ configPath: join(dir, "apex.config.yaml"), projectDir: dir, storeDir: join(dir, ".apex") }, {})).toMatchObject({ backend: "postgres", project: name });
    const read = runApex(["memory", "show", "/a"], { cwd: dir });
    expect(read.status, read.stderr).toBe(0);
    expect(read.stdout.trim()).toBe('"from lmdb"');
    // What no directory can be called stays a config error.
    for (const bad of ['"a/b"', '"line\\nbreak"', '""', JSON.stringify("x".repeat(256))]) {
      const refused = project(`store:\n  backend: postgres\n  url: postgres://h/db\n  project: ${bad}\n`);
      const result = runApex(["memory", "set", "/a", "1"], { cwd: refused });
      expect(result.status, bad).toBe(2);
      expect(result.stderr).toMatch(/APEX_E_CONFIG.*store\.project/);
      expect(existsSync(join(refused, ".apex"))).toBe(false);
    }
  });

  it("a bad store: section is a config error (exit 2) naming the line, and nothing is written", () => {
    const dir = project("session:\n  max_checkpoints: 5\nstore:\n  backend: postgress\n  urll: x\n");
    const result = runApex(["memory", "set", "/a", "1"], { cwd: dir });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("APEX_E_CONFIG");
    expect(result.stderr).toMatch(/apex\.config\.yaml:4:\d+: store\.backend/);
    expect(result.stderr).toMatch(/apex\.config\.yaml:5:\d+: store\.urll: unknown key/);
    expect(existsSync(join(dir, ".apex"))).toBe(false);

    const noUrl = project("store:\n  backend: postgres\n");
    const missing = runApex(["memory", "set", "/a", "1"], { cwd: noUrl });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/store\.url: required key is missing/);
    expect(existsSync(join(noUrl, ".apex"))).toBe(false);
  });

  it("an APEX_STORE_URL that names no backend is a config error (exit 2), and nothing is written", () => {
    const dir = project();
    const result = runApex(["memory", "set", "/a", "1"], { cwd: dir, env: { APEX_STORE_URL: "mysql://u:pw@h/db" } });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("APEX_STORE_URL must be postgres://… or lmdb:PATH");
    expect(result.stderr).not.toContain(":pw@");
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("a store URL no backend can use is a config error (exit 2) naming it, and nothing is written: a bad port, an LMDB directory that is a file", () => {
    const dir = project();
    for (const url of ["postgres://u:pw@127.0.0.1:99999/db", "postgres://u:pw@127.0.0.1:abc/db", "postgres://u:pw@127.0.0.1:0/db"]) {
      const result = runApex(["memory", "set", "/a", "1", "--json"], { cwd: dir, env: { APEX_STORE_URL: url } });
      expect(result.status, result.stderr).toBe(2);
      const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
      expect(error.code).toBe("APEX_E_CONFIG");
      expect(error.message).toMatch(/bad port "(99999|abc|0)"/);
      expect(result.stderr).not.toContain(":pw@");
    }
    writeFileSync(join(dir, "notes.txt"), "a file\n");
    for (const url of ["lmdb:notes.txt", "lmdb:notes.txt/store"]) {
      for (const args of [["memory", "set", "/a", "1", "--json"], ["memory", "import", "-", "--json"]]) {
        const result = runApex(args, { cwd: dir, env: { APEX_STORE_URL: url }, input: JSON.stringify({ "/a": 1 }) });
        expect(result.status, `${url} ${args[1]}: ${result.stderr}`).toBe(2);
        const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error;
        expect(error.code).toBe("APEX_E_CONFIG");
        expect(error.message).toContain(`${join(dir, "notes.txt")} is a file`);
      }
    }
    expect(existsSync(join(dir, ".apex"))).toBe(false);
  });

  it("apex config validate refuses the store URLs opening the store refuses (exit 2, at store.url or APEX_STORE_URL), writing nothing", () => {
    const refused = (dir: string, env: NodeJS.ProcessEnv = {}) => {
      const text = runApex(["config", "validate"], { cwd: dir, env });
      expect(text.status, text.stdout + text.stderr).toBe(2);
      const json = runApex(["config", "validate", "--json"], { cwd: dir, env });
      expect(json.status, json.stderr).toBe(2);
      const report = JSON.parse(json.stdout) as { valid: boolean; errors: Array<{ file: string; line: number; col: number; path: string; message: string }> };
      expect(report.valid).toBe(false);
      expect(existsSync(join(dir, ".apex"))).toBe(false);
      return { stderr: text.stderr, errors: report.errors };
    };
    for (const port of ["99999", "abc", "0"]) {
      const dir = project(`store:\n  backend: postgres\n  url: "postgres://u:pw@localhost:${port}/db"\n`);
      const { stderr, errors } = refused(dir);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ file: "apex.config.yaml", line: 3, col: 8, path: "store.url" });
      expect(errors[0]!.message).toContain(`has a bad port "${port}"`);
      expect(stderr).toContain(`apex.config.yaml:3:8: store.url: The PostgreSQL store URL`);
      expect(stderr).not.toContain(":pw@");
      // The same refusal, word for word, as a command that opens the store.
      const opened = runApex(["memory", "set", "/a", "1", "--json"], { cwd: dir });
      expect(opened.status).toBe(2);
      const error = JSON.parse(opened.stderr.trim().split("\n").at(-1)!).error as { code: string; message: string };
      expect(error.code).toBe("APEX_E_CONFIG");
      expect(errors[0]!.message.startsWith(error.message)).toBe(true);
    }
    // APEX_STORE_URL is what commands open, so validate checks it too: a bad port, a scheme no backend has, an LMDB directory that is a file.
    const dir = project("session:\n  max_checkpoints: 10\n");
    writeFileSync(join(dir, "notes.txt"), "a file\n");
    const cases: Array<[string, string]> = [
      ["postgres://u@localhost:99999/db", 'bad port "99999"'],
      ["mysql://u@h/db", "APEX_STORE_URL must be postgres://… or lmdb:PATH"],
      ["lmdb:notes.txt", `${join(dir, "notes.txt")} is a file`],
    ];
    for (const [url, problem] of cases) {
      const { stderr, errors } = refused(dir, { APEX_STORE_URL: url });
      expect(errors).toEqual([expect.objectContaining({ file: "environment", path: "APEX_STORE_URL", message: expect.stringContaining(problem) })]);
      expect(stderr).toContain(`environment: APEX_STORE_URL: `);
    }
    // A good URL passes without a server to connect to: validate makes no connection.
    const good = project(`store:\n  backend: postgres\n  url: "postgres://u@127.0.0.1:1/db"\n`);
    const valid = runApex(["config", "validate"], { cwd: good });
    expect(valid.status, valid.stderr).toBe(0);
    expect(runApex(["config", "validate"], { cwd: dir, env: { APEX_STORE_URL: `lmdb:${join(dir, "data")}` } }).status).toBe(0);
  });

  it("a store URL of the other backend is a config error at store.url (exit 2), writing nothing: an LMDB url that is a postgres:// URL (its password never printed), a PostgreSQL url that is no postgres:// URL", () => {
    // backend: lmdb with a PostgreSQL URL was a directory `postgres:/u:s3cret@host:5432/db` made under the project, its password printed by config show, config path and plugins list.
    for (const [config, env, problem] of [
      ["store:\n  backend: lmdb\n  url: postgres://u:s3cret@127.0.0.1:5432/db\n", {}, "The LMDB store's url is a PostgreSQL URL"],
      ["store:\n  backend: lmdb\n  url: data\n", { APEX_STORE_URL: "lmdb:postgresql://u:s3cret@127.0.0.1:5432/db" }, "The LMDB store's url is a PostgreSQL URL"],
      // backend: postgres with `lmdb:PATH` (or http://…) was taken as a server on localhost:5432: "Cannot reach PostgreSQL at lmdb:/…" (exit 1).
      ["store:\n  backend: postgres\n  url: lmdb:/tmp/elsewhere\n", {}, "The PostgreSQL store URL lmdb:/tmp/elsewhere is not a postgres:// (or postgresql://) URL"],
      ["store:\n  backend: postgres\n  url: http://u:s3cret@127.0.0.1:1/db\n", {}, "The PostgreSQL store URL http://u@127.0.0.1:1/db is not a postgres:// (or postgresql://) URL"],
    ] as Array<[string, NodeJS.ProcessEnv, string]>) {
      const dir = project(config);
      const validate = runApex(["config", "validate"], { cwd: dir, env });
      expect(validate.status, validate.stdout + validate.stderr).toBe(2);
      expect(validate.stderr).toContain(env.APEX_STORE_URL ? `environment: APEX_STORE_URL: ${problem}` : `apex.config.yaml:3:8: store.url: ${problem}`);
      // plugins list names an LMDB store by its path, which held the password: refused as the store is.
      const lmdb = problem.startsWith("The LMDB");
      // The reads too (status, session list, task list, …): they answered "no session" from a store looked for at that path, as if the config were fine.
      const reads = [["status", "--json"], ["session", "list", "--json"], ["task", "list", "--json"], ["memory", "show", "/a", "--json"], ["checkpoint", "list", "--json"], ["session", "history", "--json"], ["logs", "--json"], ["stop", "--json"]];
      for (const args of [["memory", "set", "/a", "1", "--json"], ...(lmdb ? [["plugins", "list", "--json"], ...reads] : [])]) {
        const result = runApex(args, { cwd: dir, env });
        expect(result.status, `${args[0]}: ${result.stderr}`).toBe(2);
        const error = JSON.parse(result.stderr.trim().split("\n").at(-1)!).error as { code: string; message: string };
        expect(error).toMatchObject({ code: "APEX_E_CONFIG", message: expect.stringContaining(problem) });
      }
      if (lmdb) {
        // In text as well: the same error as `config validate`'s, not "No session is active".
        for (const args of [["status"], ["session", "list"]]) {
          const result = runApex(args, { cwd: dir, env });
          expect(result.status, `${args.join(" ")}: ${result.stdout}${result.stderr}`).toBe(2);
          expect(result.stdout).toBe("");
          expect(result.stderr).toContain(`error[APEX_E_CONFIG]: ${problem}`);
        }
      }
      const show = runApex(["config", "show"], { cwd: dir, env });
      expect(show.status).toBe(0);
      const path = runApex(["config", "path"], { cwd: dir, env });
      expect(path.status).toBe(0);
      for (const result of [validate, show, path]) expect(result.stdout + result.stderr).not.toContain("s3cret");
      expect(readdirSync(dir)).toEqual(["apex.config.yaml"]);
    }
  });

  it("settings of the backend not in use are warned of by config show and config validate (exit 0): an LMDB store: section APEX_STORE_URL puts a PostgreSQL store over, store.project of an LMDB store", () => {
    // They were shown (config show) or passed (validate) without a word, as if they applied.
    const postgres = { APEX_STORE_URL: "postgres://u@127.0.0.1:1/db" };
    for (const [config, env, path, line, problem] of [
      ["store:\n  backend: lmdb\n  url: data\n", postgres, "store", 1, "has no effect: APEX_STORE_URL names the store, a PostgreSQL one, so this LMDB section (its url data) is not used. Unset APEX_STORE_URL to use it, or remove the section."],
      ["store:\n  backend: lmdb\n  url: data\n  project: team-a\n", {}, "store.project", 4, "has no effect: it is the project id a PostgreSQL store keys its data by, and the store is LMDB. Remove it, or set backend: postgres with the server's url."],
      ["store:\n  backend: postgres\n  url: postgres://u@127.0.0.1:1/db\n  project: team-a\n", { APEX_STORE_URL: "lmdb:elsewhere" }, "store", 1, "has no effect: APEX_STORE_URL names the store, an LMDB one, so this PostgreSQL section (its url postgres://u@127.0.0.1:1/db, project team-a) is not used. Unset APEX_STORE_URL to use it, or remove the section."],
    ] as Array<[string, NodeJS.ProcessEnv, string, number, string]>) {
      const dir = project(config);
      const where = `apex.config.yaml:${line}:${path === "store" ? 1 : 3}: ${path}: `;
      const show = runApex(["config", "show"], { cwd: dir, env });
      expect(show.status, show.stderr).toBe(0);
      expect(show.stderr).toContain(`warning: ${where}${problem}`);
      const shown = runApex(["config", "show", "--json"], { cwd: dir, env });
      expect(shown.status, shown.stderr).toBe(0);
      expect((JSON.parse(shown.stdout) as { warnings?: string[] }).warnings).toContain(`${where}${problem}`);
      const validate = runApex(["config", "validate", "--json"], { cwd: dir, env });
      expect(validate.status, validate.stderr).toBe(0);
      expect(JSON.parse(validate.stdout)).toMatchObject({ valid: true, warnings: [{ file: "apex.config.yaml", line, path, message: problem }] });
      expect(readdirSync(dir)).toEqual(["apex.config.yaml"]);
    }
    // Settings of the backend in use are not warned of.
    for (const [config, env] of [
      ["store:\n  backend: postgres\n  url: postgres://u@127.0.0.1:1/db\n  project: team-a\n", {}],
      ["store:\n  backend: lmdb\n  url: data\n", {}],
      ["store:\n  backend: lmdb\n  url: data\n", { APEX_STORE_URL: "lmdb:elsewhere" }],
      ["store:\n  backend: postgres\n  url: postgres://u@127.0.0.1:1/db\n", postgres],
    ] as Array<[string, NodeJS.ProcessEnv]>) {
      const dir = project(config);
      for (const args of [["config", "show"], ["config", "validate"]]) {
        const result = runApex(args, { cwd: dir, env });
        expect([result.status, result.stderr], `${args.join(" ")} of ${config}`).toEqual([0, ""]);
      }
      expect((JSON.parse(runApex(["config", "show", "--json"], { cwd: dir, env }).stdout) as { warnings?: string[] }).warnings).toBeUndefined();
    }
  });

  it("plugins: with a storage backend's name (an lmdb: section left beside a PostgreSQL store) is said to be a backend, not a plugin: config validate refuses it (exit 2), config show warns of it", () => {
    // It was an unknown plugin to install from npm (`npm install lmdb`), or, where APEX's own lmdb package resolves, a module that is no APEX plugin.
    const dir = project("store:\n  backend: postgres\n  url: postgres://u@127.0.0.1:1/db\nplugins:\n  lmdb:\n    map_size: 1073741824\n");
    const message = "'lmdb' at apex.config.yaml:5:3 is a storage backend, not a plugin: the store: section chooses the backend (store: {backend: lmdb, …}), and plugins.lmdb does nothing: remove it.";
    const validate = runApex(["config", "validate", "--json"], { cwd: dir });
    expect(validate.status, validate.stderr).toBe(2);
    expect(JSON.parse(validate.stdout)).toMatchObject({ valid: false, errors: [{ line: 5, path: "plugins.lmdb", code: "APEX_E_PLUGIN_UNKNOWN", message: expect.stringContaining(message) }] });
    const show = runApex(["config", "show", "--json"], { cwd: dir });
    expect(show.status, show.stderr).toBe(0);
    expect((JSON.parse(show.stdout) as { warnings: string[] }).warnings).toEqual([expect.stringContaining(message)]);
    const text = runApex(["config", "show"], { cwd: dir });
    expect(text.stderr).toContain(message);
    // Turned off (false), it is listed and passes, as any plugin turned off.
    const off = project("store:\n  backend: postgres\n  url: postgres://u@127.0.0.1:1/db\nplugins:\n  lmdb: false\n");
    expect(runApex(["config", "validate"], { cwd: off }).status).toBe(0);
    expect(readdirSync(dir)).toEqual(["apex.config.yaml"]);
  });

  it("a backend that is not there is APEX_E_BACKEND_UNAVAILABLE (exit 2)", async () => {
    const error = await backendFactory("nosuch").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApexError);
    expect((error as ApexError).code).toBe("APEX_E_BACKEND_UNAVAILABLE");
    expect((error as ApexError).exitCode).toBe(2);
  });
});
