// Which store a spec names (`storeIdentity`): what a supervisor records in its runtime file and a
// command compares with the store it names (core/session/client.ts `onNamedStore`), as tables.
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ApexError } from "../core/errors.js";
import { onNamedStore } from "../core/session/client.js";
import type { SupervisorRuntime } from "../core/session/runtime.js";
import { resolveStoreSpec, storeIdentity, storeSourceDigest } from "../core/store/open.js";
import { tempDir } from "./helpers/cli.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function project(config?: string): { projectDir: string; storeDir: string; configPath: string | undefined } {
  const { dir, cleanup } = tempDir("apex-store-identity-");
  cleanups.push(cleanup);
  if (config !== undefined) writeFileSync(join(dir, "apex.config.yaml"), config);
  return { projectDir: dir, storeDir: join(dir, ".apex"), configPath: config === undefined ? undefined : join(dir, "apex.config.yaml") };
}

async function identityOf(location: ReturnType<typeof project>, url?: string): Promise<string> {
  return storeIdentity(await resolveStoreSpec(location, url === undefined ? {} : { APEX_STORE_URL: url }));
}

const PG = { backend: "postgres", dir: "/nowhere/.apex", project: "p" };

describe("which store a spec names", () => {
  it.each([
    ["only the password differs", "postgres://apex:one@db.example:5432/apex", "postgres://apex:two@db.example:5432/apex"],
    ["the parameters' order differs", "postgres://apex@db.example/apex?sslmode=require&application_name=a", "postgres://apex@db.example/apex?application_name=a&sslmode=require"],
    ["postgresql:// for postgres://, the host's case, the default port spelled out", "postgresql://apex@DB.Example/apex", "postgres://apex@db.example:5432/apex"],
    ["another user of the same database", "postgres://alice:x@db.example/apex", "postgres://bob:y@db.example/apex"],
    ["the database left out is the user's", "postgres://apex@db.example", "postgres://apex@db.example/apex"],
  ])("PostgreSQL: the same store when %s", async (_case, a, b) => {
    expect(await storeIdentityPg(a)).toBe(await storeIdentityPg(b));
  });

  it.each([
    ["another host", "postgres://apex@db1.example/apex", "postgres://apex@db2.example/apex"],
    ["another port", "postgres://apex@db.example:5432/apex", "postgres://apex@db.example:5433/apex"],
    ["another database", "postgres://apex@db.example/apex", "postgres://apex@db.example/other"],
    ["a unix-socket directory whose name differs in case", "postgres:///apex?host=/run/PG", "postgres:///apex?host=/run/pg"],
    ["a socket directory in the host part whose name differs in case", "postgres://%2Frun%2FPG/apex", "postgres://%2Frun%2Fpg/apex"],
  ])("PostgreSQL: another store with %s", async (_case, a, b) => {
    expect(await storeIdentityPg(a)).not.toBe(await storeIdentityPg(b));
  });

  it("PostgreSQL: the project id is part of the store, the password never is", async () => {
    const url = "postgres://apex:s3cret@db.example/apex";
    const one = await storeIdentity({ ...PG, url, project: "one" });
    expect(one).toBe("postgres://db.example:5432/apex (project one)");
    expect(await storeIdentity({ ...PG, url, project: "two" })).not.toBe(one);
    expect(one).not.toContain("s3cret");
  });

  it("LMDB: a relative path, a trailing slash and a symlink name the directory they lead to", async () => {
    const location = project("store:\n  backend: lmdb\n  url: data\n");
    mkdirSync(join(location.projectDir, "data"));
    symlinkSync(join(location.projectDir, "data"), join(location.projectDir, "link"));
    const canonical = await identityOf(location);
    expect(canonical).toMatch(/^lmdb:\//);
    for (const url of [`lmdb:${join(location.projectDir, "data")}`, `lmdb:${join(location.projectDir, "data")}/`, "lmdb:data/", "lmdb:./data", `lmdb:${join(location.projectDir, "link")}/`]) {
      expect(await identityOf(location, url), url).toBe(canonical);
    }
    expect(await identityOf(location, "lmdb:elsewhere")).not.toBe(canonical);
    // The default store (.apex/), spelled out or not.
    const plain = project();
    expect(await identityOf(plain)).toBe(await identityOf(plain, `lmdb:${plain.storeDir}/`));
    expect(await identityOf(plain)).not.toBe(await identityOf(location));
  });
});

function storeIdentityPg(url: string): Promise<string> {
  return storeIdentity({ ...PG, url });
}

describe("whether a live supervisor serves the store a command names", () => {
  function runtime(extra: Partial<SupervisorRuntime>): SupervisorRuntime {
    return { pid: 4242, start_time: 1, socket: "/nowhere.sock", session_id: "s-1", started_at: "", log: "", ...extra };
  }

  const withEnv = async <T>(url: string | undefined, fn: () => Promise<T>): Promise<T> => {
    const before = process.env.APEX_STORE_URL;
    if (url === undefined) delete process.env.APEX_STORE_URL;
    else process.env.APEX_STORE_URL = url;
    try {
      return await fn();
    } finally {
      if (before === undefined) delete process.env.APEX_STORE_URL;
      else process.env.APEX_STORE_URL = before;
    }
  };

  it("the same store: the supervisor; another: none, or with refuse APEX_E_STORE_MISMATCH (exit 4) naming both", async () => {
    const location = project();
    const own = runtime({ store: await identityOf(location), store_source: "recorded elsewhere" });
    await withEnv(undefined, async () => expect(await onNamedStore(location, own)).toBe(own));
    await withEnv(`lmdb:${location.storeDir}/`, async () => expect(await onNamedStore(location, own, true)).toBe(own));
    const other = join(location.projectDir, "other");
    await withEnv(`lmdb:${other}`, async () => {
      expect(await onNamedStore(location, own)).toBeUndefined();
      const error = await onNamedStore(location, own, true).then(() => undefined, (caught: unknown) => caught);
      expect(error).toBeInstanceOf(ApexError);
      expect((error as ApexError).code).toBe("APEX_E_STORE_MISMATCH");
      expect((error as ApexError).exitCode).toBe(4);
      expect((error as ApexError).message).toContain(own.store);
      expect((error as ApexError).message).toContain(`lmdb:${other}`);
    });
  });

  it("a runtime file without `store` (an older APEX) serves whatever the command names, as before", async () => {
    const location = project();
    const old = runtime({});
    await withEnv(`lmdb:${join(location.projectDir, "other")}`, async () => expect(await onNamedStore(location, old, true)).toBe(old));
  });

  it("an equal source digest decides without reading the config; a password alone does not change it", async () => {
    const location = project("store:\n  backend: postgres\n  url: postgres://apex@db.example/apex\n");
    const one = storeSourceDigest(location, { APEX_STORE_URL: "postgres://apex:one@db.example/apex" });
    expect(storeSourceDigest(location, { APEX_STORE_URL: "postgres://apex:two@db.example/apex" })).toBe(one);
    // Nor its absence: an agent's URL, which has none, decides as fast as its supervisor's.
    expect(storeSourceDigest(location, { APEX_STORE_URL: "postgres://apex@db.example/apex?password=three" })).toBe(one);
    expect(storeSourceDigest(location, { APEX_STORE_URL: "postgres://apex@db.example/apex" })).toBe(one);
    expect(storeSourceDigest(location, {})).not.toBe(one);
    // A runtime whose recorded store cannot be this one is still taken when the digests match: nothing is parsed.
    const recorded = runtime({ store: "lmdb:/recorded", store_source: storeSourceDigest(location, {}) });
    await withEnv(undefined, async () => expect(await onNamedStore(location, recorded, true)).toBe(recorded));
    // The config edited: the store is resolved again, and it is not the recorded one.
    writeFileSync(location.configPath!, "store:\n  backend: postgres\n  url: postgres://apex@db.example/other\n");
    await withEnv(undefined, async () => expect(await onNamedStore(location, recorded)).toBeUndefined());
  });
});
