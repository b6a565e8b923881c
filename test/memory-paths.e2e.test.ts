// `apex memory show` and `apex memory delete` of a path that has entries below it, and of a path
// written with a trailing '/', through the built CLI on a real store: what is below is said (on
// stderr, so that stdout stays the value; counted in --json), and `/notes/` is /notes for show and
// delete as it is for query, export and watch; `delete /notes/` without --recursive is /notes alone.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runApex, tempDir } from "./helpers/cli.js";

let dir: string;
let cleanup: () => void;
beforeEach(() => {
  ({ dir, cleanup } = tempDir("apex-memory-paths-"));
});
afterEach(() => cleanup());

const apex = (args: string[]) => runApex(args, { cwd: dir });

function seed(entries: Record<string, unknown>): void {
  writeFileSync(join(dir, "seed.json"), JSON.stringify(entries));
  const imported = apex(["memory", "import", "seed.json"]);
  expect(imported.status, imported.stderr).toBe(0);
}

describe("apex memory show and delete of a path that has entries below it", () => {
  it("prints the value as before and says how many entries are below and how to list them (stderr; children_count in --json)", () => {
    seed({ "/notes": { title: "notes" }, "/notes/a": 1, "/notes/b/c": 2, "/notes/b/d": 3, "/notesx": 4, "/leaf": "x" });
    const text = apex(["memory", "show", "/notes"]);
    expect(text.status, text.stderr).toBe(0);
    // stdout is the value alone, as a script piping it to jq reads it.
    expect(JSON.parse(text.stdout)).toEqual({ title: "notes" });
    expect(text.stderr).toBe("note: /notes also has 3 entries below it, not shown: `apex memory query /notes` lists them with /notes.\n");
    // The command it names lists them.
    expect(apex(["memory", "query", "/notes", "--keys"]).stdout).toBe("/notes\n/notes/a\n/notes/b/c\n/notes/b/d\n");

    const json = apex(["memory", "show", "/notes", "--json"]);
    expect(json.status, json.stderr).toBe(0);
    expect(json.stderr).toBe("");
    expect(JSON.parse(json.stdout)).toEqual({ path: "/notes", value: { title: "notes" }, children_count: 3, children_count_exact: true });
    // A path with nothing below: no note, and --json as it was (no count: existing readers of {path, value} see no change).
    const leaf = apex(["memory", "show", "/leaf"]);
    expect([leaf.status, leaf.stdout, leaf.stderr]).toEqual([0, '"x"\n', ""]);
    expect(JSON.parse(apex(["memory", "show", "/leaf", "--json"]).stdout)).toEqual({ path: "/leaf", value: "x" });
    // A path with entries below only: the subtree, as before, with the count too.
    expect(JSON.parse(apex(["memory", "show", "/notes/b", "--json"]).stdout)).toEqual({ path: "/notes/b", value: null, children_count: 2, children_count_exact: true, children: { "/notes/b/c": 2, "/notes/b/d": 3 } });
  });

  it("counts up to 1000 entries below, then says more than 1000 (children_count_exact: false)", () => {
    const entries: Record<string, unknown> = { "/big": "root" };
    for (let i = 0; i < 1001; i++) entries[`/big/k${String(i).padStart(4, "0")}`] = i;
    seed(entries);
    const text = apex(["memory", "show", "/big"]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toBe('"root"\n');
    expect(text.stderr).toBe("note: /big also has more than 1000 entries below it, not shown: `apex memory query /big` lists them with /big.\n");
    expect(JSON.parse(apex(["memory", "show", "/big", "--json"]).stdout)).toEqual({ path: "/big", value: "root", children_count: 1000, children_count_exact: false });
    // One entry fewer: counted exactly.
    expect(apex(["memory", "delete", "/big/k1000"]).status).toBe(0);
    expect(JSON.parse(apex(["memory", "show", "/big", "--json"]).stdout)).toMatchObject({ children_count: 1000, children_count_exact: true });
  });

  it("delete without --recursive deletes the path alone and says what it kept below it", () => {
    seed({ "/notes": "top", "/notes/a": 1, "/notes/b": 2 });
    const deleted = apex(["memory", "delete", "/notes"]);
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(deleted.stdout).toMatch(/^deleted 1 entry \(revision \d+\)\n$/);
    expect(deleted.stderr).toBe("note: only /notes was deleted; 2 entries below it are kept: `apex memory delete /notes --recursive` deletes them too.\n");
    seed({ "/k": 1, "/k/x": 2 });
    expect(apex(["memory", "show", "/k"]).stderr).toBe("note: /k also has 1 entry below it, not shown: `apex memory query /k` lists it with /k.\n");
    const one = apex(["memory", "delete", "/k"]);
    expect(one.stderr).toBe("note: only /k was deleted; 1 entry below it is kept: `apex memory delete /k --recursive` deletes it too.\n");
    seed({ "/k": 1 });
    expect(JSON.parse(apex(["memory", "delete", "/k", "--json"]).stdout)).toMatchObject({ path: "/k", deleted: 1, children_count: 1, children_count_exact: true });
    expect(JSON.parse(apex(["memory", "delete", "/notes", "--recursive", "--json"]).stdout)).toEqual({ path: "/notes", deleted: 2, revision: expect.any(Number) });
  });
});

describe("a trailing '/' on a plain path", () => {
  it("is read by show and delete as by query and export: /notes/ is /notes; delete /notes/ deletes /notes alone, and says what it kept", () => {
    seed({ "/notes": "top", "/notes/a": 1, "/notes/b": 2, "/other": 3 });
    // query and export always took it.
    expect(apex(["memory", "query", "/notes/", "--keys"]).stdout).toBe("/notes\n/notes/a\n/notes/b\n");
    expect(JSON.parse(apex(["memory", "export", "/notes/"]).stdout)).toEqual({ "/notes": "top", "/notes/a": 1, "/notes/b": 2 });
    // show and delete refused it (APEX_E_BAD_PATH, exit 2).
    for (const given of ["/notes/", "/notes//"]) {
      const shown = apex(["memory", "show", given, "--json"]);
      expect(shown.status, shown.stderr).toBe(0);
      expect(JSON.parse(shown.stdout)).toEqual({ path: "/notes", value: "top", children_count: 2, children_count_exact: true });
    }
    expect(JSON.parse(apex(["memory", "show", "/notes/a/", "--json"]).stdout)).toMatchObject({ path: "/notes/a", value: 1 });

    // Without --recursive: /notes only; what is below is kept, and said to be.
    const deleted = apex(["memory", "delete", "/notes/"]);
    expect(deleted.status, deleted.stderr).toBe(0);
    expect(deleted.stdout).toMatch(/^deleted 1 entry \(revision \d+\)\n$/);
    expect(deleted.stderr).toBe("note: only /notes was deleted; 2 entries below it are kept: `apex memory delete /notes --recursive` deletes them too.\n");
    expect(apex(["memory", "query", "/**", "--keys"]).stdout).toBe("/notes/a\n/notes/b\n/other\n");
    // Again: nothing is at /notes itself, with the hint that paths lie below it.
    const again = apex(["memory", "delete", "/notes/"]);
    expect(again.status).toBe(3);
    expect(again.stderr).toContain("hint: /notes holds no value itself, but paths below it do: add --recursive to delete them.");
    // --recursive says the subtree: deleted, nothing kept (no count).
    const recursive = apex(["memory", "delete", "/notes/", "--recursive", "--json"]);
    expect(recursive.status, recursive.stderr).toBe(0);
    expect(JSON.parse(recursive.stdout)).toEqual({ path: "/notes", deleted: 2, revision: expect.any(Number) });
    expect(apex(["memory", "query", "/**", "--keys"]).stdout).toBe("/other\n");
    // --json of a delete that kept entries below counts them.
    seed({ "/k": 1, "/k/x": 2 });
    expect(JSON.parse(apex(["memory", "delete", "/k/", "--json"]).stdout)).toMatchObject({ path: "/k", deleted: 1, children_count: 1, children_count_exact: true });

    // set took it alone as no path (APEX_E_BAD_PATH, exit 2): /k/ is /k, and says so.
    const set = apex(["memory", "set", "/k/", '{"n": 5}', "--json"]);
    expect(set.status, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toMatchObject({ path: "/k", revision: expect.any(Number) });
    expect(apex(["memory", "set", "/k//", "6"]).stdout).toMatch(/^set \/k \(revision \d+\)\n$/);
    expect(apex(["memory", "export", "/k"]).stdout).toBe(JSON.stringify({ "/k": 6, "/k/x": 2 }, null, 2) + "\n");
  });

  it("does not make a path of slashes alone: '//' is APEX_E_BAD_PATH (exit 2) naming the empty segment for show, set, delete, query, export and watch alike", () => {
    seed({ "/a": 1 });
    for (const args of [["memory", "show", "//"], ["memory", "set", "//", "1"], ["memory", "delete", "//"], ["memory", "delete", "//", "--recursive"], ["memory", "query", "//"], ["memory", "export", "//"], ["memory", "watch", "//", "--timeout", "5s"]]) {
      const result = apex(args);
      expect([result.status, result.stdout], args.join(" ")).toEqual([2, ""]);
      expect(result.stderr, args.join(" ")).toContain(`error[APEX_E_BAD_PATH]: Invalid path "//": segment 1 is empty ('//').`);
    }
    expect(apex(["memory", "query", "/**", "--keys"]).stdout).toBe("/a\n");
  });
});
