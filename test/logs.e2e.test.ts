// `apex logs` end to end with the built CLI, on log files as the supervisor writes them: lines cut
// at 64 KiB, bytes that are no UTF-8, followed logs.
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";

let project: Project | undefined;
afterEach(() => {
  project?.cleanup();
  project = undefined;
});

const SESSION = "0f0e0d0c-aaaa-4bbb-8ccc-0000000000a1";

/** A project with no agents and the log directory of SESSION, made by hand. */
function logDir(): string {
  project = new Project("agents: {}\nplugins: {}\n", "apex-logs-");
  const dir = join(project.storeDir, "logs", SESSION);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function jsonLines(stdout: string): Array<{ agent: string; stream: string; line: string; line_base64?: string }> {
  return stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { agent: string; stream: string; line: string; line_base64?: string });
}

describe("a line over 64 KiB", () => {
  // 65,535 ASCII bytes, then characters of 2, 3 and 4 bytes: the first goes across the 64 KiB mark.
  const long = Buffer.concat([Buffer.from("x".repeat(65_535)), Buffer.from("é€😀")]);

  it("is cut where a character ends, not inside one (no U+FFFD), saying how many bytes are left out", () => {
    const dir = logDir();
    writeFileSync(join(dir, "beta.log"), Buffer.concat([long, Buffer.from("\nnext\n")]));
    const shown = project!.apex(["logs", "--session", SESSION, "--json"]);
    expect(shown.status, shown.stderr).toBe(0);
    const lines = jsonLines(shown.stdout);
    expect(lines.map((line) => line.line)).toEqual([`${"x".repeat(65_535)} … (9 more bytes)`, "next"]);
    expect(lines[0]).not.toHaveProperty("line_base64");
    const text = project!.apex(["logs", "--session", SESSION]);
    expect(text.stdout).not.toContain("\uFFFD");
  });

  it("with -f too", async () => {
    const dir = logDir();
    const log = join(dir, "beta.log");
    writeFileSync(log, "first\n");
    const follow = project!.apexAsync(["logs", "--session", SESSION, "-f", "-n", "1", "--json"]);
    try {
      await waitFor("the follower's first line", () => follow.output().includes('"first"'), 30_000);
      appendFileSync(log, Buffer.concat([long, Buffer.from("\nnext\n")]));
      const lines = await waitFor("the lines", () => {
        const shown = jsonLines(follow.output()).map((line) => line.line);
        return shown.includes("next") ? shown : undefined;
      });
      expect(lines).toEqual(["first", `${"x".repeat(65_535)} … (9 more bytes)`, "next"]);
    } finally {
      follow.child.kill("SIGINT");
      await follow.done;
    }
  });
});
