// `apex store migrate --json` prints the keys its --help lists (`warnings` only when there are): `project` too, null for an LMDB target (a directory has
// no project id). Through the built CLI, with real LMDB stores in a temp directory.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { runApex, tempDir } from "./helpers/cli.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** The top-level keys of the `{…}` the --json option's help prints: nested objects dropped, each `key` or `key: value`. */
function helpKeys(help: string): string[] {
  const flat = help.replace(/\s+/g, " ");
  let text = flat.slice(flat.indexOf("{", flat.indexOf("--json")) + 1);
  for (let inner = /\{[^{}]*\}/; inner.test(text); ) text = text.replace(inner, "");
  return text.slice(0, text.indexOf("}")).split(",").map((part) => /^\s*(\w+)/.exec(part)![1]!);
}

describe("apex store migrate --json", () => {
  it("prints every key --help lists, project null for an LMDB target", () => {
    const { dir, cleanup } = tempDir("apex-migrate-json-");
    cleanups.push(cleanup);
    writeFileSync(join(dir, "apex.config.yaml"), "agents: {}\n");
    expect(runApex(["memory", "set", "/x", "1"], { cwd: dir }).status).toBe(0);
    const help = runApex(["store", "migrate", "--help"], { cwd: dir }).stdout;
    const listed = helpKeys(help);
    // warnings too, printed only when there are (a session interrupted on another host, copied as it is): --help did not mention it.
    expect(listed).toEqual(["source", "target", "project", "revision", "changes", "records", "tables", "checkpoints", "verified", "switch", "warnings"]);
    expect(help.replace(/\s+/g, " ")).toContain("warnings: [text] (only when there are: sessions interrupted on another host and copied as they are)");
    const result = runApex(["store", "migrate", "--to", `lmdb:${join(dir, "copy")}`, "--json"], { cwd: dir });
    expect(result.status, result.stderr).toBe(0);
    const printed = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(Object.keys(printed)).toEqual(listed.filter((key) => key !== "warnings"));
    expect(printed.project).toBeNull();
  });
});
