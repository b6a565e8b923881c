// What `apex memory watch` says of its waiting for a store or server out of reach, when its
// --timeout ends the watch first: through the built CLI, against addresses nothing listens on.
import { rmSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";

const TOKEN = `apx_${"0".repeat(16)}_${"A".repeat(43)}`;

describe("memory watch --timeout with nothing to reach", () => {
  it("through --remote, promises no try and no wait past the --timeout: the wait that would pass it is said as the watch's end", () => {
    const p = new Project("plugins:\n  checkpoint: {}\n", "apex-watch-timeout-");
    const result = p.apex(["--remote", `127.0.0.1:9/${"a".repeat(8)}`, "memory", "watch", "/w/**", "--timeout", "2.5"], { env: { APEX_TOKEN: TOKEN } });
    expect(result.status, result.stderr).toBe(1);
    const lines = result.stderr.trim().split("\n");
    // Not "(up to every 16 s), and giving up if the server has not answered for 5 min".
    expect(lines[0]).toMatch(/^warning: Cannot reach http:\/\/127\.0\.0\.1:9: ECONNREFUSED\. Still watching; retrying in 1 s, then less and less often, until the --timeout ends the watch in 2(\.\d)? s \(Ctrl-C ends\)\.$/);
    // After the first try (1 s), the next wait would be 2 s: 1.5 s are left, so it says the watch ends then (it said "retrying in 2 s").
    const waits = lines.filter((line) => line.startsWith("warning: the server has not answered for"));
    expect(waits.length).toBeGreaterThanOrEqual(1);
    for (const line of waits) expect(line).toMatch(/; the --timeout ends the watch in [01](\.\d)? s\.$/);
    expect(result.stderr).not.toMatch(/retrying in 2 s|16 s|5 min/);
    // The error names the --timeout that ended the wait (it was the connection's error alone, as if the watch had not waited).
    expect(lines.at(-2)).toBe("error[APEX_E_RPC]: Cannot reach http://127.0.0.1:9: ECONNREFUSED. The watch gave up after its --timeout (2.5 s): it was still out of reach.");
  });

  it("on a store server out of reach, says the --timeout ends the watch rather than that it retries every second, when less than that is left", () => {
    const p = new Project("plugins:\n  checkpoint: {}\n", "apex-watch-timeout-");
    const unreachable = { APEX_STORE_URL: "postgres://apex@127.0.0.1:9/apex" };
    const short = p.apex(["memory", "watch", "/w/**", "--timeout", "0.5"], { env: unreachable });
    expect(short.status, short.stderr).toBe(1);
    expect(short.stderr).toMatch(/^warning: Cannot reach PostgreSQL at [^\n]*\. Waiting for it; the --timeout ends the watch (in 0(\.\d)? s|now) \(Ctrl-C ends\)\.\nerror\[APEX_E_STORE_UNREACHABLE\]/);
    expect(short.stderr).not.toContain("retrying every");
    const longer = p.apex(["memory", "watch", "/w/**", "--timeout", "2"], { env: unreachable });
    expect(longer.status, longer.stderr).toBe(1);
    expect(longer.stderr).toMatch(/^warning: Cannot reach PostgreSQL at [^\n]*\. Waiting for it; retrying every 1 s until the --timeout ends the watch in [12](\.\d)? s \(Ctrl-C ends\)\.\n/);
    // The error says the watch gave up after its --timeout, with the code and details it had (--json too: details.timeout_seconds).
    expect(longer.stderr).toMatch(/\nerror\[APEX_E_STORE_UNREACHABLE\]: Cannot reach PostgreSQL at [^\n]*\. The watch gave up after its --timeout \(2 s\): it was still out of reach\.\n {2}hint: /);
    const json = p.apex(["memory", "watch", "/w/**", "--timeout", "0.5", "--json"], { env: unreachable });
    expect(json.status, json.stderr).toBe(1);
    const { error } = JSON.parse(json.stderr.trim().split("\n").at(-1)!) as { error: { code: string; message: string; details: Record<string, unknown> } };
    expect(error).toMatchObject({ code: "APEX_E_STORE_UNREACHABLE", message: expect.stringMatching(/ The watch gave up after its --timeout \(0\.5 s\): it was still out of reach\.$/), details: { code: "ECONNREFUSED", timeout_seconds: 0.5 } });
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
