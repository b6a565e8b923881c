import { afterEach, describe, expect, it } from "vitest";
import { openStore } from "../core/store/open.js";
import { checkPath, pathProblem, prefixRange, subtreeRange } from "../core/store/paths.js";
import { compileGlob } from "../core/store/glob.js";
import { ApexError } from "../core/errors.js";
import { tempDir } from "./helpers/cli.js";
import { forEachBackend } from "./support/backends.js";

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("paths", () => {
  it.each([
    ["", "it is empty"],
    ["a/b", "it must start with '/'"],
    ["/", "the root '/' cannot hold a value"],
    ["/a/", "it ends with '/' (empty last segment)"],
    ["/a//b", "segment 2 is empty ('//')"],
    ["/a/./b", "segment 2 is '.'"],
    ["/a/../b", "segment 2 is '..'"],
    ["/a\nb", "it contains the control character U+000a"],
    ["/a\u0000", "it contains the control character U+0000"],
    [`/${"x".repeat(1024)}`, "it is longer than 1024 bytes"],
    ["/\ud800x", "it contains an unpaired surrogate (not valid UTF-8)"],
  ])("refuses %j: %s", (path, problem) => {
    expect(pathProblem(path)).toBe(problem);
    expect(() => checkPath(path)).toThrowError(ApexError);
  });

  it.each(["/a", "/a/b.c/d-e", "/ünï/cödé", "/emoji/😀", "/x/...", `/${"é".repeat(511)}`])("accepts %j", (path) => {
    expect(pathProblem(path)).toBeUndefined();
  });

  it("names a too-long path by its start, so the message stays one readable line", () => {
    const path = `/${"x".repeat(5000)}`;
    expect(() => checkPath(path)).toThrowError(`Invalid path "/${"x".repeat(99)}"… (5001 characters): it is longer than 1024 bytes.`);
  });

  it("bad paths exit with the usage code", () => {
    try {
      checkPath("relative");
      expect.unreachable();
    } catch (error) {
      expect((error as ApexError).exitCode).toBe(2);
      expect((error as ApexError).code).toBe("APEX_E_BAD_PATH");
    }
  });

  it("ranges are exact for characters beyond the BMP", () => {
    expect(subtreeRange("/a")).toEqual({ start: "/a/", end: "/a0" });
    expect(prefixRange("/a/\u{10ffff}")).toEqual({ start: "/a/\u{10ffff}", end: "/a0" });
    expect(prefixRange("/a\ud7ff")).toEqual({ start: "/a\ud7ff", end: "/a\ue000" });
  });
});

describe("globs", () => {
  it.each([
    ["/a/*", "/a/b", true],
    ["/a/*", "/a/b/c", false],
    ["/a/**", "/a/b/c", true],
    ["/a/**", "/a", false],
    ["/a/**/z", "/a/z", true],
    ["/a/**/z", "/a/b/c/z", true],
    ["/a/?", "/a/b", true],
    ["/a/?", "/a/bc", false],
    ["/a/?", "/a/😀", true],
    ["/**", "/anything/at/all", true],
    ["/a/b*", "/a/bcd", true],
    ["/a/\\*", "/a/*", true],
    ["/a/\\*", "/a/b", false],
    // A backslash before anything but a wildcard or itself is the path's own character (it was dropped: /e/a\b matched /e/ab).
    ["/e/a\\b", "/e/a\\b", true],
    ["/e/a\\b", "/e/ab", false],
    ["/e/a\\\\b", "/e/a\\b", true],
    ["/e/x\\", "/e/x\\", true],
    ["/e/a\\b/*", "/e/a\\b/c", true],
    // A line or paragraph separator is a character of a path like any other (`.` in the pattern skipped it: /x/a\u2028b was set and shown, never queried, exported or watched).
    ["/x/*", "/x/a\u2028b", true],
    ["/x/**", "/x/a\u2029b/c", true],
    ["/x/**/c", "/x/\u2028/c", true],
    ["/x/a?b", "/x/a\u2028b", true],
  ])("%s matches %s: %s", (glob, path, expected) => {
    expect(compileGlob(glob).matches(path)).toBe(expected);
  });

  it("scans only the literal prefix", () => {
    const glob = compileGlob("/a/b/*/c");
    expect(glob.prefix).toBe("/a/b/");
    expect(glob.literal).toBe(false);
    expect(compileGlob("/a/b").literal).toBe(true);
    expect(compileGlob("/e/a\\b")).toMatchObject({ literal: true, prefix: "/e/a\\b" });
    expect(compileGlob("/e/st\\*r")).toMatchObject({ literal: true, prefix: "/e/st*r" });
  });
});

forEachBackend((backend) => describe("store", () => {
  const freshStore = () => backend.fresh();
  it("stores JSON values and counts revisions", async () => {
    const store = await freshStore();
    expect(store.revision()).toBe(0);
    expect(await store.set("/a", { x: [1, "two", null, true] })).toBe(1);
    expect(await store.set("/b", "text")).toBe(2);
    expect(store.get("/a")).toEqual({ x: [1, "two", null, true] });
    expect(store.revision()).toBe(2);
  });

  it("logs every change with its actor, kind and revision", async () => {
    const store = await freshStore();
    await store.set("/a", 1);
    await store.set("/a/b", 2, "agent:coder");
    await store.delete("/a", { recursive: true });
    const changes = Array.from(store.changesSince(0)).map(({ revision, path, kind, actor }) => ({ revision, path, kind, actor }));
    expect(changes).toEqual([
      { revision: 1, path: "/a", kind: "put", actor: "user:test" },
      { revision: 2, path: "/a/b", kind: "put", actor: "agent:coder" },
      { revision: 3, path: "/a", kind: "delete", actor: "user:test" },
      { revision: 4, path: "/a/b", kind: "delete", actor: "user:test" },
    ]);
    expect(Array.from(store.changesSince(3)).map((change) => change.revision)).toEqual([4]);
  });

  it("prefix scans see every UTF-8 path, including astral characters", async () => {
    const store = await freshStore();
    const paths = ["/a/b", "/a/\uffff", "/a/\u{10000}", "/a/😀/deep", "/a/\u{10ffff}", "/a-sibling", "/a0", "/b"];
    await store.batch((batch) => {
      for (const path of paths) batch.set(path, path);
    });
    expect(Array.from(store.query("/a/**")).map((entry) => entry.path).sort()).toEqual(
      ["/a/b", "/a/\uffff", "/a/\u{10000}", "/a/😀/deep", "/a/\u{10ffff}"].sort(),
    );
    expect(Array.from(store.keysBelow("/a"))).toHaveLength(5);
  });

  it("recursive delete removes only the subtree", async () => {
    const store = await freshStore();
    await store.batch((batch) => {
      for (const path of ["/a", "/a/b", "/a/b/c", "/ab", "/a-b"]) batch.set(path, 1);
    });
    const { deleted } = await store.delete("/a", { recursive: true });
    expect(deleted).toBe(3);
    expect(Array.from(store.query("/**")).map((entry) => entry.path)).toEqual(["/a-b", "/ab"]);
  });

  it("a batch is all or nothing", async () => {
    const store = await freshStore();
    await store.set("/keep", 1);
    await expect(
      store.batch((batch) => {
        batch.set("/new", 1);
        batch.set("not a path", 2);
      }),
    ).rejects.toThrow(/must start with '\/'/);
    expect(store.get("/new")).toBeUndefined();
    expect(store.revision()).toBe(1);
  });

  it("read-only opens fail clearly when there is no store", async () => {
    const { dir, cleanup } = tempDir();
    cleanups.push(cleanup);
    await expect(openStore(await backend.spec(dir), { readOnly: true })).rejects.toThrowError(expect.objectContaining({ code: "APEX_E_NO_STORE", message: expect.stringMatching(/No APEX store/) }));
  });

  it("a read-only store sees writes committed by another handle", async () => {
    const store = await freshStore();
    await store.set("/x", 1);
    const reader = await backend.reopen(store, { readOnly: true });
    expect(reader.get("/x")).toBe(1);
    await store.set("/x", 2);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(reader.get("/x")).toBe(2);
    expect(reader.revision()).toBe(2);
  });
}));
