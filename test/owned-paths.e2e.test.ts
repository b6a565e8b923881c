// APEX's own records (/sessions/…, /projects/config) are refused to `apex memory set|delete|import`
// (APEX_E_RESERVED_PATH, exit 4, nothing written) unless --force, while the paths agents and users
// are told to write stay writable. The rule's table (plugins/owned-paths.ts), then the built CLI:
// writes with no supervisor on each backend (the direct writer checks too), writes through a running
// supervisor from the user's terminal, from an agent's `apex` and over the raw control socket.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { callSupervisor } from "../dist/core/rpc/call.js";
import { locateProject } from "../dist/core/config/locate.js";
import { openSessionClient } from "../dist/core/session/client.js";
import { ownerOf } from "../plugins/owned-paths.js";
import { checkRemoteWrite } from "../plugins/sharing/scope.js";
import { APEX_BIN, Project, cleanEnv, shellAgents, waitFor, type CliResult } from "./fixtures/agents/harness.js";
import { forEachBackend } from "./support/backends.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const SID = "3f2a9c1e-0000-4000-8000-000000000001";

describe("which paths APEX owns", () => {
  it.each([
    ["/projects/config", false, "the project's id record"],
    ["/projects", true, "the subtree holding /projects/config"],
    ["/sessions", false, "the sessions' records"],
    ["/sessions/current", false, "the record of the session active in this working tree"],
    ["/sessions/current/metrics", false, "and its metrics"],
    ["/sessions/active", false, "the list of the sessions not ended"],
    [`/sessions/history/${SID}`, false, "the records of ended sessions"],
    [`/sessions/history/${SID}/metrics-input/issues_found`, false, "the records of ended sessions"],
    [`/sessions/${SID}`, false, `session ${SID}'s record`],
    [`/sessions/${SID}/tasks/t-0001`, false, `session ${SID}'s tasks`],
    [`/sessions/${SID}/agents/coder.context`, false, "agent records"],
    [`/sessions/${SID}/events/00000001`, false, "audit trail"],
    [`/sessions/${SID}/checkpoint-001`, false, "checkpoint manifests"],
    [`/sessions/${SID}/grants/abc`, false, "share grants"],
    [`/sessions/${SID}/metrics`, false, "metrics (metrics plugin)"],
    [`/sessions/${SID}/git`, false, "git state"],
    [`/sessions/${SID}/langgraph-heads`, false, "LangGraph thread heads"],
    [`/sessions/${SID}/langgraph-heads/a%2Fb/~`, false, "LangGraph thread heads"],
    [`/sessions/${SID}/something-new`, false, `session ${SID}'s records`],
  ])("%s (recursive: %s) is APEX's: %s", (path, recursive, owner) => {
    expect(ownerOf(path, recursive)).toContain(owner);
  });

  it.each([
    ["/notes/today", true],
    ["/projects", false],
    ["/projects/mem", true],
    ["/projects/config/mine", true],
    ["/sessionsx", true],
    ["/agents/coder/progress", false],
    ["/review/stats", false],
    [`/sessions/${SID}/metrics-input/issues_found`, false],
    [`/sessions/${SID}/metrics-input`, true],
    [`/sessions/${SID}/memory/notes/x`, false],
  ])("%s (recursive: %s) is memory anyone may write", (path, recursive) => {
    expect(ownerOf(path, recursive)).toBeUndefined();
  });

  it("apex serve refuses what the rule refuses, and every other path under /sessions (a grant's write does not say whose area it is)", () => {
    for (const [method, params] of [
      ["memory.set", { path: "/sessions/current", value: 1, force: true }],
      ["memory.set", { path: `/sessions/${SID}/metrics-input/issues_found`, value: 1 }],
      ["memory.set", { path: `/sessions/${SID}/memory/notes/x`, value: 1 }],
      ["memory.delete", { path: "/projects", recursive: true }],
      ["memory.import", { entries: [{ path: "/notes/a", value: 1 }, { path: "/projects/config", value: {} }] }],
    ] as const) {
      expect(() => checkRemoteWrite(method, params), `${method} ${JSON.stringify(params)}`).toThrow(expect.objectContaining({ code: "APEX_E_FORBIDDEN" }));
    }
    expect(() => checkRemoteWrite("memory.set", { path: "/notes/a", value: 1 })).not.toThrow();
    expect(() => checkRemoteWrite("memory.delete", { path: "/projects/mem", recursive: true })).not.toThrow();
  });
});

function refused(result: CliResult, command: string, path: string): void {
  expect(result.status, result.stderr).toBe(4);
  expect(result.stderr).toContain(`error[APEX_E_RESERVED_PATH]: ${command} of ${path}`);
  expect(result.stderr).toContain("Nothing was written.");
  expect(result.stdout).toBe("");
}

const IDLE = shellAgents({ idle: "while true; do sleep 0.2; done" });

forEachBackend((backend) =>
  describe("memory writes with no supervisor running", () => {
    it("refuse APEX's records (set, delete, delete --recursive, import) and write nothing; metrics-input and the documented paths stay writable; --force writes with a warning", async () => {
      project = new Project(IDLE, "apex-owned-", await backend.env());
      const sid = project.start().session_id;
      expect(project.apex(["task", "add", "keep me"]).status).toBe(0);
      expect(project.apex(["stop"]).status).toBe(0);
      const everything = () => {
        const result = project!.apex(["memory", "export"]);
        expect(result.status, result.stderr).toBe(0);
        return JSON.parse(result.stdout) as Record<string, unknown>;
      };
      const before = everything();
      expect(Object.keys(before)).toContain(`/sessions/history/${sid}`);
      expect(Object.keys(before)).toContain("/projects/config");

      refused(project.apex(["memory", "set", "/sessions/current", '"x"']), "memory set", "/sessions/current");
      refused(project.apex(["memory", "set", `/sessions/history/${sid}`, "{}"]), "memory set", `/sessions/history/${sid}`);
      refused(project.apex(["memory", "set", "/projects/config", "{}"]), "memory set", "/projects/config");
      refused(project.apex(["memory", "delete", "/sessions", "--recursive"]), "memory delete", "/sessions");
      refused(project.apex(["memory", "delete", "/projects", "-r"]), "memory delete", "/projects");
      refused(project.apex(["memory", "delete", `/sessions/${sid}/tasks/t-0001`]), "memory delete", `/sessions/${sid}/tasks/t-0001`);
      const batch = JSON.stringify({ "/notes/one": 1, [`/sessions/${sid}/tasks/t-0001`]: { title: "forged" }, "/notes/two": 2 });
      refused(spawnImport(project, batch), "memory import", `/sessions/${sid}/tasks/t-0001`);
      // --json: the error as JSON, with its code and exit code.
      const asJson = project.apex(["memory", "set", "/sessions/active", "{}", "--json"]);
      expect(asJson.status).toBe(4);
      expect(JSON.parse(asJson.stderr)).toMatchObject({ error: { code: "APEX_E_RESERVED_PATH", exitCode: 4 } });
      expect(everything()).toEqual(before);

      // What agents and users are told to write (README, `apex memory --help`).
      const documented: Array<[string, string]> = [
        ["/notes/today", '{"todo": 3}'],
        ["/notes/title", '"Sprint 4"'],
        ["/parser/strategy", '"pratt"'],
        ["/review/stats", '{"issues": 2}'],
        ["/agents/coder/progress", '{"step": 1}'],
        [`/sessions/${sid}/metrics-input/issues_found`, "3"],
      ];
      for (const [path, value] of documented) {
        const result = project.apex(["memory", "set", path, value]);
        expect(result.status, `${path}: ${result.stderr}`).toBe(0);
        expect(result.stderr).toBe("");
      }
      const exported = project.apex(["memory", "export", "/notes"]).stdout;
      expect(project.apex(["memory", "delete", "/notes", "--recursive"]).status).toBe(0);
      expect(spawnImport(project, exported).status).toBe(0);
      expect(JSON.parse(project.apex(["memory", "show", `/sessions/${sid}/metrics-input/issues_found`, "--json"]).stdout).value).toBe(3);
      expect(project.apex(["memory", "delete", `/sessions/${sid}/metrics-input`, "--recursive"]).status).toBe(0);

      // --force: an operator's repair, with a warning; set, import and delete each write.
      const config = JSON.stringify(before["/projects/config"]);
      const forcedSet = project.apex(["memory", "set", "--force", "/projects/config", config]);
      expect(forcedSet.status, forcedSet.stderr).toBe(0);
      expect(forcedSet.stderr).toMatch(/^warning: memory set --force writes \/projects\/config \(the project's id record/);
      const repair = `/sessions/${sid}/repair-note`;
      const forcedImport = spawnImport(project, JSON.stringify({ [repair]: "by hand", "/notes/three": 3 }), ["--force"]);
      expect(forcedImport.status, forcedImport.stderr).toBe(0);
      expect(forcedImport.stderr).toContain(`warning: memory import --force writes ${repair}`);
      expect(JSON.parse(project.apex(["memory", "show", repair, "--json"]).stdout).value).toBe("by hand");
      const forcedDelete = project.apex(["memory", "delete", repair, "--force"]);
      expect(forcedDelete.status, forcedDelete.stderr).toBe(0);
      expect(forcedDelete.stderr).toContain(`warning: memory delete --force writes ${repair}`);
      expect(project.apex(["memory", "show", repair]).status).toBe(3);

      // The records are as they were: the session still lists, with its task.
      const after = everything();
      for (const path of Object.keys(before).filter((key) => key.startsWith("/sessions/") || key === "/projects/config")) expect(after[path], path).toEqual(before[path]);
      expect(JSON.parse(project.apex(["task", "list", "--json"]).stdout)).toMatchObject([{ title: "keep me" }]);
    });
  }),
);

function spawnImport(p: Project, input: string, extra: string[] = []): CliResult {
  const result = spawnSync(process.execPath, [APEX_BIN, "memory", "import", "-", ...extra], { cwd: p.dir, env: { ...cleanEnv(), ...p.env }, input, encoding: "utf8", timeout: 60_000 });
  return { status: result.status ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

// The agent tries APEX's record and its metrics input with its own `apex` (through the supervisor:
// APEX_SOCKET is set), and leaves each exit code and stderr beside the project's config.
const AGENT = shellAgents({
  writer:
    'apex memory set /sessions/current \'"x"\' 2>refused.err; echo $? > refused.rc; ' +
    "apex memory set /sessions/$APEX_SESSION_ID/metrics-input/issues_found 5 2>allowed.err; echo $? > allowed.rc; " +
    "while true; do sleep 0.2; done",
});

describe("memory writes through a running supervisor", () => {
  it("are refused to an agent's apex, to the user's terminal and over the raw control socket; metrics-input and --force go through", async () => {
    project = new Project(AGENT, "apex-owned-live-");
    const ready = project.start();
    const sid = ready.session_id;
    const file = (name: string) => join(project!.dir, name);
    await waitFor("the agent's two writes", () => existsSync(file("allowed.rc")) && readFileSync(file("allowed.rc"), "utf8").trim() !== "");
    expect(readFileSync(file("refused.rc"), "utf8").trim()).toBe("4");
    expect(readFileSync(file("refused.err"), "utf8")).toContain("error[APEX_E_RESERVED_PATH]: memory set of /sessions/current refused");
    expect(readFileSync(file("allowed.rc"), "utf8").trim(), readFileSync(file("allowed.err"), "utf8")).toBe("0");
    expect(JSON.parse(project.apex(["memory", "show", `/sessions/${sid}/metrics-input/issues_found`, "--json"]).stdout).value).toBe(5);

    const current = () => JSON.parse(project!.apex(["memory", "show", "/sessions/current", "--json"]).stdout).value as { session_id?: unknown };
    expect(current().session_id).toBe(sid);
    // The user's terminal: the writes go over the socket.
    refused(project.apex(["memory", "delete", `/sessions/${sid}`, "--recursive"]), "memory delete", `/sessions/${sid}`);
    refused(spawnImport(project, JSON.stringify({ "/notes/live": 1, "/sessions/active": {} })), "memory import", "/sessions/active");
    expect(project.apex(["memory", "show", "/notes/live"]).status).toBe(3);

    // A program on the socket that is not the CLI (an agent speaking the protocol itself).
    const socket = (method: string, params: Record<string, unknown>) => callSupervisor(ready.socket, method, { ...params, actor: "agent:writer" });
    await expect(socket("memory.set", { path: "/sessions/current", value: "x" })).rejects.toMatchObject({ code: "APEX_E_RESERVED_PATH", exitCode: 4 });
    await expect(socket("memory.delete", { path: "/sessions", recursive: true })).rejects.toMatchObject({ code: "APEX_E_RESERVED_PATH" });
    await expect(socket("memory.import", { entries: [{ path: "/notes/raw", value: 1 }, { path: `/sessions/${sid}/tasks/t-0001`, value: {} }] })).rejects.toMatchObject({
      code: "APEX_E_RESERVED_PATH",
      message: expect.stringContaining(`/sessions/${sid}/tasks/t-0001`),
    });
    expect(project.apex(["memory", "show", "/notes/raw"]).status).toBe(3);
    await socket("memory.set", { path: `/sessions/${sid}/metrics-input/reviews`, value: 2 });
    await socket("memory.set", { path: `/sessions/${sid}/repair-note`, value: "forced", force: true });
    expect(JSON.parse(project.apex(["memory", "show", `/sessions/${sid}/repair-note`, "--json"]).stdout).value).toBe("forced");
    const forced = project.apex(["memory", "delete", "--force", `/sessions/${sid}/repair-note`]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stderr).toContain("warning: memory delete --force writes");

    // Nothing of the session was touched: its record, status and stop work as before.
    expect(current().session_id).toBe(sid);
    const status = project.apex(["status"]);
    expect(status.stdout).toContain(`Session ${sid}`);
    expect(project.apex(["stop"]).status).toBe(0);
  });
});

describe("records written by hand (--force) that lack their fields", () => {
  it("are listed with '-' or 'unknown' in place of what is missing, never 'undefined', and no listing fails", async () => {
    project = new Project(IDLE, "apex-owned-malformed-");
    const sid = project.start().session_id;
    expect(project.apex(["task", "add", "a real task"]).status).toBe(0);
    expect(project.apex(["milestone", "a real milestone"]).status).toBe(0);
    const forged = { [`/sessions/${sid}/tasks/t-0009`]: { x: 1 }, [`/sessions/${sid}/agents/ghost`]: { y: 2 }, [`/sessions/${sid}/milestones/0009`]: {}, [`/sessions/${sid}/events/00000999`]: { z: 1 } };
    expect(spawnImport(project, JSON.stringify(forged), ["--force"]).status).toBe(0);
    const reads = [["task", "list"], ["task", "show", "t-0009"], ["agent", "list"], ["milestone"], ["session", "history", sid], ["status"]];
    const check = () => {
      for (const args of reads) {
        const result = project!.apex(args);
        expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
        expect(result.stdout, args.join(" ")).not.toContain("undefined");
      }
    };
    check();
    expect(project.apex(["task", "list"]).stdout).toContain("a real task");
    expect(project.apex(["task", "show", "t-0009"]).stdout).toContain("unknown");
    expect(project.apex(["session", "history", sid]).stdout).toContain('unknown event {"z":1}');
    expect(project.apex(["stop"]).status).toBe(0);
    check();
  });
});

describe("a session record written by hand (--force) without its fields", () => {
  it("still gives a session report, with unknown for what is missing", async () => {
    project = new Project(IDLE.replace("plugins: {}\n", "plugins:\n  history: {}\n"), "apex-owned-report-");
    const sid = project.start().session_id;
    expect(project.apex(["memory", "set", "--force", `/sessions/${sid}`, '{"x": 1}']).status).toBe(0);
    // It was: APEX_E_PLUGIN_FAILED "Cannot read properties of undefined (reading 'join')".
    const report = project.apex(["session", "report", "--format", "md"]);
    expect(report.status, report.stderr).toBe(0);
    expect(report.stdout).toContain("# Session report: unknown");
    expect(report.stdout).toContain("| Status | unknown |");
    expect(report.stdout).not.toContain("undefined");
  });
});

describe("the direct writer (no supervisor) as a library calls it", () => {
  it("checks the same rule as the CLI: refused without force, nothing of a batch written; force writes", async () => {
    project = new Project("plugins: {}\n", "apex-owned-direct-");
    expect(project.apex(["memory", "set", "/notes/seed", "1"]).status).toBe(0);
    const client = await openSessionClient(locateProject({ cwd: project.dir, env: { ...cleanEnv() } }), "write", { direct: "store" });
    try {
      expect(client.via).toBe("store");
      await expect(client.call("memory.set", { path: "/sessions/current", value: "x" })).rejects.toMatchObject({ code: "APEX_E_RESERVED_PATH", exitCode: 4 });
      await expect(client.call("memory.delete", { path: "/projects", recursive: true })).rejects.toMatchObject({ code: "APEX_E_RESERVED_PATH" });
      await expect(client.call("memory.import", { entries: [{ path: "/notes/batch", value: 1 }, { path: "/projects/config", value: {} }] })).rejects.toMatchObject({ code: "APEX_E_RESERVED_PATH" });
      await client.call("memory.set", { path: "/sessions/abc/metrics-input/n", value: 1 });
      await client.call("memory.set", { path: "/sessions/abc/by-hand", value: 2, force: true });
    } finally {
      await client.close();
    }
    expect(JSON.parse(project.apex(["memory", "export"]).stdout)).toEqual({ "/notes/seed": 1, "/sessions/abc/metrics-input/n": 1, "/sessions/abc/by-hand": 2 });
  });
});
