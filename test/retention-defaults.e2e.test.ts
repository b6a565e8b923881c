// Issue 12 through the built CLI: the shipped retention policy with frequent event checkpoints
// never removes a manual checkpoint, the checkpoint a session was restored from, or the state a
// restore replaced; compression and archive work with the default config; one duration grammar
// in the config and on the command line. Real supervisor and agent processes in temporary
// projects, ended by pid or process group in afterEach.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, REPO_ROOT, type CliResult } from "./fixtures/agents/harness.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

/** The plugins section of the apex.config.yaml APEX ships, verbatim. */
function shippedPlugins(): string {
  const text = readFileSync(join(REPO_ROOT, "apex.config.yaml"), "utf8");
  return text.slice(text.indexOf("\nplugins:\n") + 1);
}

/** The shipped config with one idle agent instead of the reference agents (which would take their own checkpoints). */
const SHIPPED_WITH_IDLE_AGENT = [
  "session:",
  "  auto_recovery: false",
  "agents:",
  "  worker:",
  "    command: sh",
  `    args: ["-c", "while true; do sleep 0.2; done"]`,
  shippedPlugins(),
].join("\n");

function ok(args: string[]): any {
  const result = project!.apex(args);
  if (result.status !== 0) throw new Error(`apex ${args.join(" ")} exited ${result.status}: ${result.stderr}\n${result.stdout}`);
  return args.includes("--json") ? JSON.parse(result.stdout) : result.stdout;
}

interface Listed {
  id: string;
  name: string;
  trigger: string;
  description: string;
  kept_by: string[] | null;
}

function listed(): { total: number; taken: number; items: Listed[] } {
  return ok(["checkpoint", "list", "--limit", "1000", "--json"]);
}

/** `count` tasks added and claimed: each claim takes a beforeTask checkpoint, and retention runs after it. */
function burstOfTasks(count: number, label: string): void {
  for (let i = 0; i < count; i++) {
    ok(["task", "add", `${label} ${i}`]);
    ok(["task", "claim", "--agent", "worker"]);
  }
}

describe("retention with the shipped config (issue 12)", () => {
  it("keeps a manual checkpoint through a burst of event checkpoints, continues from it, and keeps what it restored from and replaced", async () => {
    expect(shippedPlugins()).toMatch(/retention:\n {4}keep_last: 5\n[\s\S]*auto_cleanup: true/);
    project = new Project(SHIPPED_WITH_IDLE_AGENT, "apex-retention-defaults-");
    const ready = project.start(["--task", "retention must never surprise"]);
    const sessionId = ready.session_id;
    ok(["memory", "set", "/notes/plan", '"before the refactoring"']);
    const manual = ok(["checkpoint", "create", "Before major refactoring", "--json"]) as { id: string; name: string };
    ok(["memory", "set", "/notes/plan", '"refactoring"']);

    burstOfTasks(9, "burst");
    let page = listed();
    const beforeTask = page.items.filter((item) => item.trigger === "beforeTask");
    // Retention ran: of the 9 beforeTask checkpoints it kept the last 5 (the newest is also the day's and the week's).
    expect(beforeTask).toHaveLength(5);
    expect(page.taken).toBeGreaterThan(page.total);
    const survivor = page.items.find((item) => item.id === manual.id);
    expect(survivor).toMatchObject({ trigger: "manual", description: "Before major refactoring", kept_by: ["manual"] });
    expect(ok(["checkpoint", "list"])).toMatch(new RegExp(`${manual.name} .*manual +manual +Before major refactoring`));

    // The dry run agrees: nothing of the session would go now.
    const dry = ok(["session", "cleanup", "--dry-run", "--json"]) as { sessions: Array<{ session_id: string; removed: number }> };
    expect(dry.sessions.find((session) => session.session_id === sessionId)).toMatchObject({ removed: 0 });

    ok(["stop"]);
    const continued = ok(["start", "--continue", manual.id, "--json"]);
    project.remember();
    expect(continued).toMatchObject({ session_id: sessionId, continued: true, restored_from: manual.id });
    expect(ok(["memory", "show", "/notes/plan", "--json"]).value).toBe("before the refactoring");

    burstOfTasks(7, "after the restore");
    page = listed();
    expect(page.items.find((item) => item.id === manual.id)?.kept_by).toEqual(["manual", `base of ${sessionId}`]);
    // The state the restore replaced (the refactoring in progress) is kept, whatever keep_last says.
    const replaced = page.items.filter((item) => item.trigger === "beforeRestore");
    expect(replaced).toHaveLength(1);
    expect(replaced[0]!.kept_by).toEqual(["before restore"]);
    expect(page.items.filter((item) => item.trigger === "beforeTask")).toHaveLength(5);

    // Continued from an event checkpoint: that one stays while it is the session's base, through
    // a burst that would otherwise push it out of keep_last.
    const base = page.items.filter((item) => item.trigger === "beforeTask").at(-1)!;
    ok(["stop"]);
    expect(ok(["start", "--continue", base.id, "--json"])).toMatchObject({ restored_from: base.id });
    project.remember();
    burstOfTasks(7, "from an event checkpoint");
    page = listed();
    expect(page.items.find((item) => item.id === base.id)?.kept_by).toEqual([`base of ${sessionId}`]);
    // The manual checkpoint is no longer the base, and is still kept as a manual one.
    expect(page.items.find((item) => item.id === manual.id)?.kept_by).toEqual(["manual"]);
    ok(["stop"]);
  }, 240_000);
});

describe("every command of the flow works with the default config (issue 12)", () => {
  function fails(args: string[], code: number): CliResult {
    const result = project!.apex(args);
    expect(result.status, `apex ${args.join(" ")}: ${result.stdout}${result.stderr}`).toBe(code);
    return result;
  }

  it("session compress and session archive --older-than 30days run without a config file", () => {
    project = new Project("", "apex-defaults-");
    rmSync(join(project.dir, "apex.config.yaml")); // no config file: the shipped defaults apply
    expect(ok(["session", "compress", "--dry-run", "--json"])).toMatchObject({ dry_run: true });
    expect(ok(["session", "archive", "--older-than", "30days", "--dry-run", "--json"])).toMatchObject({ dry_run: true });
    expect(ok(["session", "archive", "--older-than", "90", "--dry-run", "--json"])).toMatchObject({ dry_run: true });
    const { plugins } = ok(["plugins", "list", "--json"]) as { plugins: Array<{ name: string; enabled: boolean }> };
    expect(plugins.filter((plugin) => plugin.enabled).map((plugin) => plugin.name)).toEqual(["checkpoint", "retention", "git", "metrics", "history", "compression", "archive"]);
  });

  it("a command of a disabled plugin says which plugin provides it and how to enable it", () => {
    project = new Project("plugins:\n  checkpoint: {}\n  compression: false\n", "apex-defaults-");
    const off = fails(["session", "compress", "--json"], 2);
    expect(JSON.parse(off.stderr).error).toMatchObject({
      code: "APEX_E_PLUGIN_DISABLED",
      message: "`apex session compress` is a command of the compression plugin, which is turned off (`compression: false`) in apex.config.yaml.",
      details: { command: "session compress", plugin: "compression" },
    });
    const missing = fails(["session", "archive", "--older-than", "30days"], 2);
    expect(missing.stderr).toContain("error[APEX_E_PLUGIN_DISABLED]: `apex session archive` is a command of the archive plugin, which is not enabled in apex.config.yaml.");
    expect(missing.stderr).toContain("put `archive: {}` in the plugins: section of apex.config.yaml");
    expect(fails(["backup"], 2).stderr).toContain("is a command of the archive plugin");
    // A command no plugin has stays commander's usage error.
    expect(fails(["session", "frobnicate"], 2).stderr).toContain("unknown command 'frobnicate'");
    // Its --help teaches it all the same, with the plugin's state and how to turn it on (it was the refusal, exit 2).
    for (const args of [["session", "compress", "--help"], ["help", "session", "compress"], ["backup", "-h"]]) {
      const help = project.apex(args);
      expect(help.status, `${args.join(" ")}: ${help.stderr}`).toBe(0);
      expect(help.stdout).toMatch(args.includes("backup") ? /^Usage: apex backup \[options\]/ : /^Usage: apex session compress \[options\]/);
      expect(help.stdout.replace(/\s+/g, " ")).toContain(args.includes("backup") ? "is a command of the archive plugin, which is not enabled in apex.config.yaml. Enable it: put `archive: {}` in the plugins: section" : "is a command of the compression plugin, which is turned off (`compression: false`) in apex.config.yaml.");
      expect(help.stdout).toContain("Options:");
    }
  });

  it("a command of a plugin listed but idle (enabled: false) says so and how to turn it on, not 'unknown command'", () => {
    project = new Project("plugins:\n  checkpoint: {}\n  metrics: {enabled: false}\n  history:\n    enabled: false\n", "apex-defaults-");
    // It said "unknown command 'report' (Did you mean one of export, import?)", exit 2, APEX_E_USAGE.
    const report = fails(["session", "report", "--json"], 2);
    expect(JSON.parse(report.stderr).error).toMatchObject({
      code: "APEX_E_PLUGIN_DISABLED",
      message: "`apex session report` is a command of the history plugin, which is listed but idle (`enabled: false` under plugins.history) in apex.config.yaml.",
      hint: "Turn it on: remove `enabled: false` from plugins.history in apex.config.yaml (or set it to true), then run the command again.",
      details: { command: "session report", plugin: "history" },
    });
    expect(fails(["session", "metrics"], 2).stderr).toContain("error[APEX_E_PLUGIN_DISABLED]: `apex session metrics` is a command of the metrics plugin, which is listed but idle");
    expect(existsSync(join(project.dir, ".apex"))).toBe(false);
  });

  it("a plugin enabled while a session runs: its command, which runs in that session's supervisor, says to restart the session", () => {
    project = new Project('agents:\n  w:\n    command: sleep\n    args: ["60"]\nplugins:\n  checkpoint: {}\n', "apex-defaults-");
    project.start();
    project.writeConfig('agents:\n  w:\n    command: sleep\n    args: ["60"]\nplugins:\n  checkpoint: {}\n  retention: {}\n');
    // Before: "No plugin provides the command 'session cleanup'" (APEX_E_USAGE, exit 2), with the plugin enabled.
    const refused = fails(["session", "cleanup", "--dry-run", "--json"], 4);
    expect(JSON.parse(refused.stderr).error).toMatchObject({
      code: "APEX_E_SESSION_STATE",
      message: "`apex session cleanup` runs in the running session's supervisor, which was started without the retention plugin (enabled in the config since).",
      details: { command: "session cleanup", plugin: "retention" },
    });
    expect(JSON.parse(refused.stderr).error.hint).toContain("`apex stop`, then `apex start --continue last`");
    expect(project.apex(["stop"]).status).toBe(0);
    const ran = project.apex(["session", "cleanup", "--dry-run"]);
    expect(ran.status, ran.stderr).toBe(0);
  });

  it("the config takes the command line's durations, and the command line the config's", () => {
    project = new Project(
      [
        "session:",
        '  session_timeout: "30days"',
        "plugins:",
        "  checkpoint: {}",
        "  retention:",
        '    keep_within: "90"',
        "    by_trigger:",
        "      beforeRestore: {keep_within: 4w}",
        "      manual: {keep_within: 2h30m}",
        "  archive:",
        "    older_than: 7d",
        "",
      ].join("\n"),
      "apex-defaults-",
    );
    expect(ok(["config", "validate"])).toMatch(/is valid/);
    const shown = ok(["config", "show", "--json"]) as { session: { session_timeout: number } };
    expect(shown.session.session_timeout).toBe(30 * 86_400);
    ok(["memory", "set", "/notes/x", "1"]);
    // `--timeout` takes a duration: "1s" and a bare "1" are both a second.
    for (const timeout of ["1s", "1"]) expect(project.apex(["memory", "watch", "/nothing/**", "--timeout", timeout]).status).toBe(0);
    const bad = fails(["memory", "watch", "/nothing/**", "--timeout", "1 fortnight"], 2);
    expect(bad.stderr).toContain('--timeout: Expected a duration, got "1 fortnight".');
  });
});
