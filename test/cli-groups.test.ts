// The CLI loads only the command groups a command line names (`apex status` is benchmarked
// against `node -e 0`): each group's list of top-level commands must be what it registers, or a
// command would go missing when its group is loaded alone.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMAND_GROUPS, groupsFor, loadGroups } from "../cli/commands.js";
import { buildProgram } from "../cli/main.js";
import { APEX_BIN, REPO_ROOT, cleanEnv, runApex } from "./helpers/cli.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "apex-cli-groups-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("command groups loaded by the command line", () => {
  it("each group lists the top-level commands it registers, and all of them make the whole program", async () => {
    for (const group of COMMAND_GROUPS) {
      const program = new Command("apex");
      (await group.load())(program);
      expect(program.commands.map((command) => command.name()).sort(), group.name).toEqual([...group.commands].sort());
      for (const command of program.commands) expect(command.aliases(), `${group.name}: ${command.name()}`).toEqual([]);
    }
    const whole = buildProgram(await loadGroups());
    const listed = new Set(COMMAND_GROUPS.flatMap((group) => group.commands));
    expect(whole.commands.map((command) => command.name()).sort()).toEqual([...listed].sort());
    // A group loaded alone for its word is the same command as in the whole program (`apex session …`: every group that adds to it).
    for (const word of listed) {
      const alone = buildProgram(await loadGroups(groupsFor(word))).commands.find((command) => command.name() === word)!;
      const full = whole.commands.find((command) => command.name() === word)!;
      expect(alone.helpInformation(), word).toBe(full.helpInformation());
    }
    expect(groupsFor(undefined)).toBe(COMMAND_GROUPS);
    expect(groupsFor("help")).toBe(COMMAND_GROUPS);
    expect(groupsFor("hello")).toBe(COMMAND_GROUPS); // a plugin's command: every group
  });

  it("the full CLI for `apex status` (any flag more than --json) loads the lifecycle group's module and no other group's (a new process, the built CLI)", () => {
    writeFileSync(join(dir, "apex.config.yaml"), "plugins: {}\n");
    const loaded = loadedModules(["status", "--json", "--config", "apex.config.yaml"]);
    expect(loaded).toContain("cli/main.js");
    expect(loaded).toContain("cli/lifecycle.js");
    expect(loaded.filter((file) => GROUP_MODULES.includes(file))).toEqual([]);
  });

  it("`apex status` and `apex status --json` take their fast path: neither commander's program (cli/main.js) nor any group's module", () => {
    for (const args of [["status"], ["status", "--json"]]) {
      const loaded = loadedModules(args);
      expect(loaded, args.join(" ")).toContain("cli/status-main.js");
      expect(loaded.filter((file) => file === "cli/main.js" || file === "cli/lifecycle.js" || GROUP_MODULES.includes(file)), args.join(" ")).toEqual([]);
    }
    // Anything else, help included, is the full CLI's.
    for (const args of [["status", "--help"], ["status", "--json", "--json"], ["--json", "status"], ["status", "-h"]]) expect(loadedModules(args, false), args.join(" ")).toContain("cli/main.js");
  });

  it("`apex pause` and `apex resume`, alone or with --json, take theirs (cli/lifecycle-main.js): neither commander's program nor any group's module", () => {
    for (const args of [["pause"], ["pause", "--json"], ["resume"], ["resume", "--json"]]) {
      // No session here: each fails (exit 3) as the full CLI does, having loaded only its fast path.
      const loaded = loadedModules(args, false);
      expect(loaded, args.join(" ")).toContain("cli/lifecycle-main.js");
      expect(loaded.filter((file) => file === "cli/main.js" || file === "cli/status-main.js" || file === "cli/lifecycle.js" || GROUP_MODULES.includes(file)), args.join(" ")).toEqual([]);
    }
    for (const args of [["pause", "--help"], ["pause", "--json", "--json"], ["--json", "resume"], ["resume", "-h"], ["pause", "--session", "x"]]) {
      const loaded = loadedModules(args, false);
      expect(loaded, args.join(" ")).toContain("cli/main.js");
      expect(loaded, args.join(" ")).not.toContain("cli/lifecycle-main.js");
    }
  });
});

describe("a command group named without one of its commands", () => {
  it("`apex GROUP` alone, for every group of the program that has commands and no action of its own, is a usage error (exit 2) with the group's help on stderr; --json gives the error's JSON; --help and `apex help GROUP` stay help (exit 0, stdout)", async () => {
    const groups: string[][] = [];
    const walk = (command: Command, words: string[]) => {
      for (const sub of command.commands) {
        const path = [...words, sub.name()];
        if (sub.commands.length > 0 && !(sub as unknown as { _actionHandler?: unknown })._actionHandler) groups.push(path);
        walk(sub, path);
      }
    };
    walk(buildProgram(await loadGroups()), []);
    expect(groups.map((words) => words.join(" "))).toEqual(expect.arrayContaining(["memory", "session", "checkpoint", "task", "config"]));
    writeFileSync(join(dir, "apex.config.yaml"), "plugins: {}\n");
    for (const words of groups) {
      const command = `apex ${words.join(" ")}`;
      const bare = runApex(words, { cwd: dir });
      expect(bare.status, `${command}: ${bare.stderr}`).toBe(2);
      expect(bare.stdout, command).toBe("");
      expect(bare.stderr, command).toContain(`Usage: apex ${words.join(" ")} [options] [command]`);
      expect(bare.stderr, command).toMatch(new RegExp(`\\nerror\\[APEX_E_USAGE\\]: ${command} needs one of its commands: \\w`));
      const asJson = runApex([...words, "--json"], { cwd: dir });
      expect(asJson.status, `${command} --json: ${asJson.stderr}`).toBe(2);
      expect(asJson.stdout, command).toBe("");
      expect(JSON.parse(asJson.stderr), command).toEqual({ error: expect.objectContaining({ code: "APEX_E_USAGE", message: expect.stringMatching(/ needs one of its commands: /), hint: expect.stringContaining(`${command} --help`) }) });
      for (const help of [[...words, "--help"], ["help", ...words]]) {
        const shown = runApex(help, { cwd: dir });
        expect(shown.status, `apex ${help.join(" ")}: ${shown.stderr}`).toBe(0);
        expect(shown.stdout, help.join(" ")).toContain(`Usage: apex ${words.join(" ")} [options] [command]`);
      }
    }
  });

  it("`apex` alone is the same usage error (exit 2, APEX_E_USAGE, the program's help on stderr; --json: the error's JSON alone); `apex --help` and `apex help` stay help (exit 0, stdout)", () => {
    writeFileSync(join(dir, "apex.config.yaml"), "plugins: {}\n");
    for (const args of [[], ["--config", join(dir, "apex.config.yaml")]]) {
      const bare = runApex(args, { cwd: dir });
      expect(bare.status, `apex ${args.join(" ")}: ${bare.stderr}`).toBe(2);
      expect(bare.stdout).toBe("");
      expect(bare.stderr).toContain("Usage: apex [options] [command]");
      expect(bare.stderr).toMatch(/\nerror\[APEX_E_USAGE\]: apex needs one of its commands: start, status, /);
      expect(bare.stderr).toContain("hint: Run `apex COMMAND`; `apex --help` says what each does.");
    }
    const asJson = runApex(["--json"], { cwd: dir });
    expect(asJson.status, asJson.stderr).toBe(2);
    expect(asJson.stdout).toBe("");
    expect(JSON.parse(asJson.stderr)).toEqual({ error: expect.objectContaining({ code: "APEX_E_USAGE", message: expect.stringMatching(/^apex needs one of its commands: start, /), hint: "Run `apex COMMAND`; `apex --help` says what each does." }) });
    for (const help of [["--help"], ["help"], ["-h"]]) {
      const shown = runApex(help, { cwd: dir });
      expect(shown.status, `apex ${help.join(" ")}: ${shown.stderr}`).toBe(0);
      expect(shown.stderr).toBe("");
      expect(shown.stdout).toContain("Usage: apex [options] [command]");
    }
  });
});

const GROUP_MODULES = ["cli/agent.js", "cli/config.js", "cli/memory.js", "cli/plugins.js", "cli/session.js", "cli/task.js", "plugins/checkpoint/cli.js", "plugins/checkpoint/branch-commands.js", "plugins/postgres/cli.js", "plugins/sharing/remote-cli.js"];

/** The modules under dist/ that `apex ARGS` loads in `dir` (no session there: status says so), in a new process of the built CLI. */
function loadedModules(args: string[], succeeds = true): string[] {
  // A loader hook reports every module the process loads (writeSync: the hooks run on their own thread).
  const hook = `data:text/javascript,${encodeURIComponent('import { register } from "node:module"; register("data:text/javascript," + encodeURIComponent("import { writeSync } from \\"node:fs\\"; export async function load(url, context, next) { writeSync(2, \\"LOADED \\" + url + \\"\\\\n\\"); return next(url, context); }"));')}`;
  // APEX_BUNDLE=0: the CLI's modules, as Node loads them without the one-file bundle (cli/bundle.ts), which holds them all in one file.
  const result = spawnSync(process.execPath, ["--import", hook, APEX_BIN, ...args], { cwd: dir, env: { ...cleanEnv(), NO_COLOR: "1", APEX_BUNDLE: "0" }, encoding: "utf8" });
  if (succeeds) {
    expect(result.status, result.stderr).toBe(0);
    if (args.includes("--json")) expect(JSON.parse(result.stdout)).toMatchObject({ session: null });
  }
  return result.stderr.split("\n").filter((line) => line.startsWith("LOADED file:")).map((line) => relative(join(REPO_ROOT, "dist"), new URL(line.slice(7)).pathname));
}
