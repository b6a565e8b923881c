// First use of APEX in a project of one's own, through the built CLI: the store never shows up
// in git, and a config whose agents cannot run is refused before anything starts.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { isolatedGit } from "./support/git.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const { git } = isolatedGit("apex-flow-first-use-git-");

const idleAgent = ["agents:", "  idle:", "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");

describe("the store in the user's git repository", () => {
  it("writes .apex/.gitignore when it creates the store; checkpoints of a clean tree are clean, and sync-git lists no .apex/", () => {
    project = new Project(`${idleAgent}\nplugins:\n  checkpoint: {}\n  git: {}\n`, "apex-first-use-");
    const dir = project.dir;
    git(dir, "init", "-q");
    git(dir, "add", "apex.config.yaml");
    git(dir, "commit", "-qm", "init");

    expect(project.apex(["memory", "set", "/notes/a", "1"]).status).toBe(0);
    expect(readFileSync(join(dir, ".apex/.gitignore"), "utf8")).toMatch(/^\*$/m);
    expect(git(dir, "status", "--porcelain")).toBe("");

    const ready = project.start();
    const gitState = (ref: string) => (JSON.parse(project!.apex(["checkpoint", "show", ref, "--json"]).stdout) as { git_state: { dirty: boolean } }).git_state;
    expect(project.apex(["checkpoint", "create", "clean"]).status).toBe(0);
    expect(gitState("latest")).toMatchObject({ branch: expect.any(String), dirty: false });

    // A store created before APEX wrote .gitignore: the git plugin still leaves it out.
    rmSync(join(dir, ".apex/.gitignore"));
    expect(git(dir, "status", "--porcelain")).toContain(".apex/");
    expect(project.apex(["checkpoint", "create", "store visible to git"]).status).toBe(0);
    expect(gitState("latest").dirty).toBe(false);
    const sync = project.apex(["session", "sync-git", ready.session_id, "--json"]);
    expect(sync.status, sync.stderr).toBe(0);
    expect(JSON.parse(sync.stdout).dirty_files).toEqual([]);
    expect(project.apex(["session", "sync-git", ready.session_id]).stdout).not.toContain(".apex");

    // A change of the project's own files is still dirty.
    writeFileSync(join(dir, "README.md"), "hello\n");
    expect(project.apex(["checkpoint", "create", "edited"]).status).toBe(0);
    expect(gitState("latest").dirty).toBe(true);
    expect(JSON.parse(project.apex(["session", "sync-git", ready.session_id, "--json"]).stdout).dirty_files).toEqual([{ status: "??", path: "README.md" }]);
  });

  it("an existing .apex/.gitignore is kept as it is", () => {
    project = new Project("", "apex-first-use-");
    mkdirSync(join(project.dir, ".apex"));
    writeFileSync(join(project.dir, ".apex/.gitignore"), "mine\n");
    expect(project.apex(["memory", "set", "/a", "1"]).status).toBe(0);
    expect(readFileSync(join(project.dir, ".apex/.gitignore"), "utf8")).toBe("mine\n");
  });
});

describe("agents whose program cannot be found", () => {
  const config = [
    "agents:",
    "  coder:",
    "    command: node",
    `    args: ["agents/coder.mjs"]`,
    "  reviewer:",
    "    command: no-such-program-for-apex",
    "  ok:",
    "    command: sh",
    `    args: ["-c", "sleep 1"]`,
    "plugins: {}",
    "",
  ].join("\n");

  it("config validate: exit 2, each agent named with the path it looked for and the line", () => {
    project = new Project(config, "apex-first-use-");
    const result = project.apex(["config", "validate"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`apex.config.yaml:4:12: agents.coder.args[0]: agent coder: the script agents/coder.mjs does not exist (looked for ${join(project.dir, "agents/coder.mjs")}).`);
    expect(result.stderr).toContain(`apex.config.yaml:6:14: agents.reviewer.command: agent reviewer: the program "no-such-program-for-apex" is not on PATH.`);
    expect(result.stderr).not.toContain("agents.ok");
    const json = JSON.parse(project.apex(["config", "validate", "--json"]).stdout) as { valid: boolean; errors: Array<{ path: string }> };
    expect(json.valid).toBe(false);
    expect(json.errors.map((error) => error.path)).toEqual(["agents.coder.args[0]", "agents.reviewer.command"]);
  });

  it("start: exit 2 before any process starts or anything is written", () => {
    project = new Project(config, "apex-first-use-");
    const result = project.apex(["start", "--task", "x"]);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain("error[APEX_E_CONFIG]");
    expect(result.stderr).toContain("agent coder: the script agents/coder.mjs does not exist");
    expect(existsSync(project.storeDir)).toBe(false);

    // Once the script is there (and the other agent fixed), the same config starts.
    mkdirSync(join(project.dir, "agents"));
    writeFileSync(join(project.dir, "agents/coder.mjs"), "setInterval(() => {}, 1000);\n");
    project.writeConfig(config.replace("no-such-program-for-apex", "sleep\n    args: [\"30\"]"));
    expect(project.apex(["config", "validate"]).status).toBe(0);
    const ready = project.start();
    expect(ready.agents.map((agent) => agent.status)).toEqual(["running", "running", "running"]);
  });

  it("an agent's env PATH is the PATH it runs with: a command found only there starts (APEX's own bin directories first)", async () => {
    project = new Project(["agents:", "  local:", "    command: own-agent", "    restart: never", "    env:", "      PATH: PLACEHOLDER", "plugins: {}", ""].join("\n"), "apex-first-use-");
    const bin = join(project.dir, "own-bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "own-agent"), `#!/bin/sh\necho "$PATH" > ${join(project.dir, "path.txt")}\nexec sleep 30\n`, { mode: 0o755 });
    project.writeConfig(readFileSync(join(project.dir, "apex.config.yaml"), "utf8").replace("PLACEHOLDER", `${bin}:/usr/bin:/bin`));
    const ready = project.start();
    expect(ready.agents).toEqual([expect.objectContaining({ name: "local", status: "running" })]);
    const path = await waitFor("the agent's PATH", () => existsSync(join(project!.dir, "path.txt")) && readFileSync(join(project!.dir, "path.txt"), "utf8").trim());
    expect(path.split(":").slice(-3)).toEqual([bin, "/usr/bin", "/bin"]);
    expect(path.split(":")[0]).toBe(join(project.storeDir, "bin"));
  });

  it("a command given as a path is resolved against the agent's cwd", () => {
    project = new Project(["agents:", "  local:", "    command: ./bin/agent.sh", "    cwd: work", "plugins: {}", ""].join("\n"), "apex-first-use-");
    const missingCwd = project.apex(["config", "validate"]);
    expect(missingCwd.status).toBe(2);
    expect(missingCwd.stderr).toContain(`agents.local.cwd: agent local: the working directory ${join(project.dir, "work")} does not exist.`);
    // A file where the directory should be is named as such, not as missing.
    writeFileSync(join(project.dir, "work"), "");
    const fileCwd = project.apex(["start", "--json"]);
    expect(fileCwd.status).toBe(2);
    expect(JSON.parse(fileCwd.stderr).error).toMatchObject({ code: "APEX_E_CONFIG" });
    expect(JSON.parse(fileCwd.stderr).error.message).toContain(`agents.local.cwd: agent local: the working directory ${join(project.dir, "work")} is a file, not a directory.`);
    rmSync(join(project.dir, "work"));
    mkdirSync(join(project.dir, "work/bin"), { recursive: true });
    const missing = project.apex(["config", "validate"]);
    expect(missing.stderr).toContain(`agents.local.command: agent local: the program ./bin/agent.sh does not exist (looked for ${join(project.dir, "work/bin/agent.sh")}).`);
    writeFileSync(join(project.dir, "work/bin/agent.sh"), "#!/bin/sh\nsleep 1\n", { mode: 0o755 });
    expect(project.apex(["config", "validate"]).status).toBe(0);
  });
});

describe("start-up", () => {
  it("the apex command and its supervisor keep compiled code in the user's cache directory on Node 22.1 and later, and write none elsewhere", () => {
    project = new Project(`${idleAgent}\nplugins: {}\n`, "apex-compile-cache-");
    const cache = join(project.dir, "xdg-cache");
    const run = (env: NodeJS.ProcessEnv) => project!.apex(["config", "validate"], { env: { XDG_CACHE_HOME: cache, NODE_COMPILE_CACHE: "", ...env } });
    expect(run({}).status).toBe(0);
    const kept = join(cache, "apex", "compile-cache");
    // The supervisor's modules go through the cache too (Node says so on stderr: its log): its dependencies
    // (LMDB's) through Node's, APEX's own (its bundle, cli/bundle.ts) through the bundle's code cache, on every Node.
    project.start(["--task", "t"], { XDG_CACHE_HOME: cache, NODE_COMPILE_CACHE: "", NODE_DEBUG_NATIVE: "COMPILE_CACHE" });
    expect(project.apex(["stop"]).status).toBe(0);
    const supervised = project.supervisorLog().split("\n").filter((line) => line.startsWith("[compile cache]") && line.includes("/node_modules/lmdb/"));
    expect(readdirSync(join(cache, "apex", "code-cache")).filter((name) => name.startsWith("supervisor-"))).toHaveLength(1);
    const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
    // (a test run on Node 20 checks the other side: no cache where Node has none)
    if (major > 22 || (major === 22 && minor >= 1)) {
      expect(supervised.length).toBeGreaterThan(0);
      expect(supervised.join("\n")).toContain(kept);
      expect(readdirSync(kept).length).toBeGreaterThan(0);
      // Turned off by Node's own switch: nothing new, in either.
      rmSync(join(cache, "apex"), { recursive: true });
      expect(run({ NODE_DISABLE_COMPILE_CACHE: "1" }).status).toBe(0);
      expect(existsSync(join(cache, "apex"))).toBe(false);
    } else {
      expect(supervised).toEqual([]);
      expect(existsSync(kept)).toBe(false);
    }
  });
});

describe("before the first session", () => {
  it("commands that need a session say to start one, not to continue 'the last one' there is not; agent list too (it printed an empty table)", () => {
    project = new Project(`${idleAgent}\nplugins: {}\n`, "apex-first-use-none-");
    const first = 'Start one with `apex start --task "…"`.';
    // No store yet, then a store (memory set made it) with no session.
    for (const prepare of [() => undefined, () => expect(project!.apex(["memory", "set", "/a", "1"]).status).toBe(0)]) {
      prepare();
      for (const args of [["stop"], ["pause"], ["task", "add", "x"], ["task", "list"], ["agent", "list"]]) {
        const result = project.apex([...args, "--json"]);
        expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(3);
        expect(JSON.parse(result.stderr).error, args.join(" ")).toEqual({ code: "APEX_E_NO_SESSION", message: "No session is active in this project.", exitCode: 3, exit_code: 3, hint: first });
      }
    }
    // Once a session has ended, continuing it is offered.
    project.start();
    expect(project.apex(["stop"]).status).toBe(0);
    expect(JSON.parse(project.apex(["task", "add", "x", "--json"]).stderr).error.hint).toBe('Start one with `apex start --task "…"`, or continue the last one with `apex start --continue last`.');
  });
});
