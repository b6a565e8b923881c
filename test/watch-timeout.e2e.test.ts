// What `apex memory watch` says of its waiting for a store or server out of reach, when its
// --timeout ends the watch first: through the built CLI, against addresses nothing listens on.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { expectWatchEnds, firstPlan } from "./helpers/watch-timeout.js";

/** Holds the CLI at the load of one of its modules (HOLD_MODULE) until told to go on (test/helpers/hold-cli-load.mjs). */
const HOLD = fileURLToPath(new URL("./helpers/hold-cli-load.mjs", import.meta.url));

const TOKEN = `apx_${"0".repeat(16)}_${"A".repeat(43)}`;

/** Where a warning says PostgreSQL could not be reached ("Cannot reach PostgreSQL at WHERE. Waiting …"). */
const postgresAt = (line: string | undefined) => /^warning: Cannot reach PostgreSQL at (.*?)\. Waiting for it;/.exec(line ?? "")?.[1] ?? "(no such warning)";

describe("memory watch --timeout with nothing to reach", () => {
  it("through --remote, promises no try and no wait past the --timeout: the wait that would pass it is said as the watch's end", () => {
    const p = new Project("plugins:\n  checkpoint: {}\n", "apex-watch-timeout-");
    const result = p.apex(["--remote", `127.0.0.1:9/${"a".repeat(8)}`, "memory", "watch", "/w/**", "--timeout", "2.5"], { env: { APEX_TOKEN: TOKEN } });
    expect(result.status, result.stderr).toBe(1);
    const lines = result.stderr.trim().split("\n");
    // Not "(up to every 16 s), and giving up if the server has not answered for 5 min".
    const first = firstPlan(lines[0], "warning: Cannot reach http://127.0.0.1:9: ECONNREFUSED. Still watching;", "retrying in 1 s, then less and less often, until", 2.5);
    // After the first try (1 s), the next wait would be 2 s: less than 1.5 s is left, so each wait it says is the watch's
    // end, in less time than the line before said was left (it said "retrying in 2 s"). How many there are is the load's:
    // none when the --timeout passed before the second try failed.
    expectWatchEnds(lines.slice(1, -2), "Cannot reach http://127.0.0.1:9: ECONNREFUSED", first);
    expect(result.stderr).not.toMatch(/retrying in 2 s|16 s|5 min/);
    // The error names the --timeout that ended the wait (it was the connection's error alone, as if the watch had not waited).
    expect(lines.at(-2)).toBe("error[APEX_E_RPC]: Cannot reach http://127.0.0.1:9: ECONNREFUSED. The watch gave up after its --timeout (2.5 s): it was still out of reach.");
  });

  it("on a store server out of reach, says the --timeout ends the watch rather than that it retries every second, when less than that is left", () => {
    const p = new Project("plugins:\n  checkpoint: {}\n", "apex-watch-timeout-");
    const unreachable = { APEX_STORE_URL: "postgres://apex@127.0.0.1:9/apex" };
    const short = p.apex(["memory", "watch", "/w/**", "--timeout", "0.5"], { env: unreachable });
    expect(short.status, short.stderr).toBe(1);
    const shortLines = short.stderr.split("\n");
    expect(firstPlan(shortLines[0], `warning: Cannot reach PostgreSQL at ${postgresAt(shortLines[0])}. Waiting for it;`, "retrying every 1 s until", 0.5)).toBeLessThanOrEqual(0.5);
    expect(shortLines[1]).toMatch(/^error\[APEX_E_STORE_UNREACHABLE\]/);
    expect(short.stderr).not.toContain("retrying every");
    const longer = p.apex(["memory", "watch", "/w/**", "--timeout", "2"], { env: unreachable });
    expect(longer.status, longer.stderr).toBe(1);
    const longerLines = longer.stderr.split("\n");
    // With more than a second left, "retrying every 1 s until …"; a loaded machine may have left it less by then.
    firstPlan(longerLines[0], `warning: Cannot reach PostgreSQL at ${postgresAt(longerLines[0])}. Waiting for it;`, "retrying every 1 s until", 2);
    // The error says the watch gave up after its --timeout, with the code and details it had (--json too: details.timeout_seconds).
    expect(longer.stderr).toMatch(/\nerror\[APEX_E_STORE_UNREACHABLE\]: Cannot reach PostgreSQL at [^\n]*\. The watch gave up after its --timeout \(2 s\): it was still out of reach\.\n {2}hint: /);
    const json = p.apex(["memory", "watch", "/w/**", "--timeout", "0.5", "--json"], { env: unreachable });
    expect(json.status, json.stderr).toBe(1);
    const { error } = JSON.parse(json.stderr.trim().split("\n").at(-1)!) as { error: { code: string; message: string; details: Record<string, unknown> } };
    expect(error).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE", message: expect.stringMatching(/ The watch gave up after its --timeout \(0\.5 s\): it was still out of reach\.$/), details: { code: "ECONNREFUSED", timeout_seconds: 0.5 } });
  });

  it("counts its --timeout from the watch's start: what the watch itself takes is counted, the CLI's start before it is not", async () => {
    const p = new Project("plugins:\n  checkpoint: {}\n", "apex-watch-timeout-");
    // Each held at one module's load for 2 s at least (HOLD_MODULE), as a loaded machine can hold it: the remote client's,
    // which the watch loads once begun, and the watch's own, which the command loads before the watch begins.
    const held = async (module: string, name: string) => {
      const mark = join(p.dir, `${name}.hold`);
      // (APEX_BUNDLE=0: the CLI's modules, each loaded from its own file, which the hook can hold; the bundle is one file)
      const env = { APEX_TOKEN: TOKEN, NODE_OPTIONS: `--import ${pathToFileURL(HOLD).href}`, HOLD_MARK: mark, HOLD_MODULE: module, APEX_BUNDLE: "0" };
      const watch = p.apexAsync(["--remote", `127.0.0.1:9/${"a".repeat(8)}`, "memory", "watch", "/w/**", "--timeout", "2.5"], { env });
      await waitFor(`the watch to load ${module}`, () => existsSync(mark), 30_000);
      await sleep(2000);
      writeFileSync(`${mark}.release`, "");
      const released = Date.now();
      const result = await watch.done;
      return { ...result, after: Date.now() - released };
    };
    const [within, before] = await Promise.all([held("/dist/plugins/sharing/remote.js", "within"), held("/dist/cli/memory-watch.js", "before")]);
    for (const result of [within, before]) {
      expect(result.status, result.stderr).toBe(1);
      expect(result.stderr).toContain("The watch gave up after its --timeout (2.5 s): it was still out of reach.");
    }
    // Held within the watch: of its 2.5 s, 0.5 s at most were left by its first try, which says so; no try is promised.
    const [first] = within.stderr.split("\n");
    expect(firstPlan(first, "warning: Cannot reach http://127.0.0.1:9: ECONNREFUSED. Still watching;", "retrying in 1 s, then less and less often, until", 2.5)).toBeLessThanOrEqual(0.5);
    expect(within.stderr).not.toContain("retrying");
    // Held before it: the whole 2.5 s were the watch's once it began (it had ended at once had they counted from the CLI's start).
    expect(before.after).toBeGreaterThanOrEqual(2500);
    firstPlan(before.stderr.split("\n")[0], "warning: Cannot reach http://127.0.0.1:9: ECONNREFUSED. Still watching;", "retrying in 1 s, then less and less often, until", 2.5);
  });

  it("on a store removed while it watched and not made anew, fails at its --timeout as for a store out of reach (it ended with exit 0, saying nothing), text and --json", async () => {
    const p = new Project("plugins: {}\n", "apex-watch-timeout-");
    expect(p.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    for (const json of [false, true]) {
      // Long enough for the watch to start and print on a loaded machine; the removal comes once it has printed.
      const watch = p.apexAsync(["memory", "watch", "/w/**", "--timeout", "15", ...(json ? ["--json"] : [])]);
      await waitFor("the current value", () => watch.output().includes("/w/a"), 30_000);
      rmSync(p.storeDir, { recursive: true, force: true });
      const result = await watch.done;
      expect(result.status, result.stderr).toBe(3);
      const lines = result.stderr.trim().split("\n");
      expect(lines[0]).toBe(`warning: the store in ${p.storeDir} was removed: the values it held are gone with it. The watch goes on once a write makes a new one, printing every change made to it from its first revision (revisions start again at 1).`);
      const message = `The store in ${p.storeDir} was removed while the watch ran, and no write has made a new one since. The watch gave up after its --timeout (15 s): it was still out of reach.`;
      if (json) {
        expect(JSON.parse(lines.at(-1)!)).toEqual({ error: expect.objectContaining({ code: "APEX_E_NO_STORE", message, exit_code: 3, details: { store: p.storeDir, timeout_seconds: 15 } }) });
      } else {
        expect(lines[1]).toBe(`error[APEX_E_NO_STORE]: ${message}`);
        expect(lines[2]).toMatch(/^ {2}hint: /);
      }
      expect(p.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    }
  });
});
