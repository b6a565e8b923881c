// session.plugin_timeout and session.plugin_timeouts, end to end with the built CLI: a third-party plugin's onStart tap that
// sleeps 1.5 s (test/fixtures/plugins/slow-hooks.mjs) fails the start with APEX_E_PLUGIN_TIMEOUT under a short timeout, for
// every plugin or for it alone, and runs to its end under a longer one of its own. Before, the 30 s were fixed.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { slowHooksProject } from "./support/slow-hooks.js";

describe("the plugin tap timeout", () => {
  it("is session.plugin_timeout for every plugin, session.plugin_timeouts for one: a slow tap fails under a short one, passes under a longer", () => {
    const project = slowHooksProject({ worker: "while true; do sleep 0.5; done" });
    const config = readFileSync(join(project.dir, "apex.config.yaml"), "utf8");
    writeFileSync(join(project.dir, "onStart"), "sleep 1500");
    for (const session of ["session:\n  plugin_timeout: 0.3\n", "session:\n  plugin_timeouts: {slow-hooks: 0.3s}\n"]) {
      project.writeConfig(session + config);
      const refused = project.apex(["start", "--task", "never", "--json"]);
      expect(refused.status, session).toBe(1);
      const error = (JSON.parse(refused.stderr) as { error: { code: string; message: string; details: Record<string, unknown> } }).error;
      expect(error).toMatchObject({ code: "APEX_E_PLUGIN_TIMEOUT", details: { plugin: "slow-hooks", hook: "onStart", timeoutMs: 300 } });
      expect(error.message).toContain("did not finish onStart within 300 ms");
    }
    // Its own timeout wins over every plugin's.
    project.writeConfig("session:\n  plugin_timeout: 0.3\n  plugin_timeouts: {slow-hooks: 10s}\n" + config);
    const started = project.start(["--task", "slow start"]);
    expect(started.status).toBe("active");
    expect(project.apex(["stop"]).status).toBe(0);
  });

  it("a session.plugin_timeouts key no enabled plugin has is a warning of validate and start, naming the plugins there are", () => {
    const project = slowHooksProject({ worker: "sleep 1" }, ["checkpoint"]);
    const config = readFileSync(join(project.dir, "apex.config.yaml"), "utf8");
    // Before, a timeout under the plugin's key (a path) or a misspelt name applied to no plugin, without a word.
    project.writeConfig("session:\n  plugin_timeouts: {slow-hook: 5m, slow-hooks: 1m, checkpoint: 2m, ./slow-hooks.mjs: 1m}\n" + config);
    const report = project.apex(["config", "validate", "--json"]);
    expect(report.status, report.stderr).toBe(0);
    const warnings = (JSON.parse(report.stdout) as { warnings: Array<{ path: string; message: string }> }).warnings;
    expect(warnings.map((warning) => warning.path)).toEqual(["session.plugin_timeouts.slow-hook", 'session.plugin_timeouts["./slow-hooks.mjs"]']);
    expect(warnings[0]!.message).toBe("names no enabled plugin, so it applies to none: the enabled plugins are checkpoint, slow-hooks (as `apex plugins list` names them).");
  });
});
