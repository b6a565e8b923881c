// Ended sessions stay readable, and memory paths mean subtrees, through the built CLI.
import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { APEX_BIN, Project, cleanEnv, waitFor } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const config = [
  "agents:",
  "  worker:",
  "    command: sh",
  `    args: ["-c", "echo worker says hello; while true; do sleep 0.5; done"]`,
  "plugins:",
  "  checkpoint: {}",
  "",
].join("\n");

describe("after a session ended", () => {
  it("task list, task show, milestone, agent list, logs and checkpoint list read the last session, or the one --session names", () => {
    project = new Project(config, "apex-flow-ended-");
    const first = project.start(["--task", "first"]);
    expect(project.apex(["task", "add", "first task"]).status).toBe(0);
    expect(project.apex(["milestone", "first milestone"]).status).toBe(0);
    expect(project.apex(["checkpoint", "create", "first checkpoint"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["status", "--json"]).stdout).toContain('"session": null');

    // No session is active: each read defaults to the one that ended last.
    expect(json<Array<{ title: string }>>(project.apex(["task", "list", "--json"])).map((task) => task.title)).toEqual(["first task"]);
    expect(project.apex(["task", "list"]).stdout).toContain("first task");
    expect(json<{ title: string }>(project.apex(["task", "show", "t-0001", "--json"])).title).toBe("first task");
    expect(json<Array<{ text: string }>>(project.apex(["milestone", "--json"])).map((m) => m.text)).toContain("first milestone");
    const agents = json<Array<{ name: string; status: string; alive: boolean }>>(project.apex(["agent", "list", "--json"]));
    expect(agents).toEqual([expect.objectContaining({ name: "worker", status: "stopped", alive: false })]);
    expect(project.apex(["logs", "worker"]).stdout).toContain("worker | worker says hello");
    expect(json<{ session_id: string; items: Array<{ description: string }> }>(project.apex(["checkpoint", "list", "--json"]))).toMatchObject({
      session_id: first.session_id,
      items: expect.arrayContaining([expect.objectContaining({ description: "first checkpoint" })]),
    });

    // A second session: the defaults move to it, --session (an id prefix too) reads the first.
    project.start(["--task", "second"]);
    expect(project.apex(["task", "add", "second task"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    const prefix = first.session_id.slice(0, 8);
    expect(json<Array<{ title: string }>>(project.apex(["task", "list", "--json"])).map((task) => task.title)).toEqual(["second task"]);
    expect(json<Array<{ title: string }>>(project.apex(["task", "list", "--session", prefix, "--json"])).map((task) => task.title)).toEqual(["first task"]);
    expect(json<{ title: string }>(project.apex(["task", "show", "t-0001", "--session", first.session_id, "--json"])).title).toBe("first task");
    expect(json<Array<{ text: string }>>(project.apex(["milestone", "--session", prefix, "--json"])).map((m) => m.text)).toContain("first milestone");
    expect(json<Array<{ text: string }>>(project.apex(["milestone", "--json"])).map((m) => m.text)).not.toContain("first milestone");
    expect(json<Array<{ name: string }>>(project.apex(["agent", "list", "--session", prefix, "--json"]))[0]!.name).toBe("worker");
    expect(project.apex(["logs", "--session", first.session_id]).stdout).toContain("worker says hello");
    expect(project.apex(["logs", "--session", prefix]).stdout).toContain("worker says hello");
    expect(project.apex(["logs", "--session", "nosuchsession"]).status).toBe(3);
    expect(json<{ session_id: string }>(project.apex(["checkpoint", "list", "--session", prefix, "--json"])).session_id).toBe(first.session_id);

    const unknown = project.apex(["task", "list", "--session", "no-such-session"]);
    expect(unknown.status).toBe(3);
    expect(unknown.stderr).toContain('No session "no-such-session"');

    // With another session active, stopping or pausing the ended one says it ended (not that no session is active) and leaves the active one alone.
    const third = project.start(["--task", "third"]);
    for (const action of ["stop", "pause"]) {
      const refused = project.apex(["--session", prefix, action]);
      expect(refused.status, refused.stderr).toBe(4);
      expect(refused.stderr).toContain(`error[APEX_E_SESSION_STATE]: Cannot ${action}: session ${first.session_id} has ended (stopped).`);
    }
    // Commands that write to a running session say the same (exit 4), not that it is not found (3), and write nothing.
    for (const args of [["checkpoint", "create", "late"], ["task", "add", "late task"]]) {
      const refused = project.apex(["--session", prefix, ...args]);
      expect(refused.status, refused.stderr).toBe(4);
      expect(refused.stderr).toContain(`error[APEX_E_SESSION_STATE]: Session ${first.session_id} has ended (stopped); this acts on a running session.`);
      expect(refused.stderr).toContain(`apex start --continue ${first.session_id}`);
    }
    expect(json<Array<{ title: string }>>(project.apex(["task", "list", "--session", prefix, "--json"])).map((task) => task.title)).toEqual(["first task"]);
    expect(json<{ items: Array<{ description: string }> }>(project.apex(["checkpoint", "list", "--session", prefix, "--json"])).items.map((item) => item.description)).not.toContain("late");
    expect(json<{ session: { session_id: string; status: string } }>(project.apex(["status", "--json"])).session).toMatchObject({ session_id: third.session_id, status: "active" });
    expect(project.apex(["stop"]).status).toBe(0);
  });

  it("--session last and --session current name the same session for every command that takes --session, inside an agent too", async () => {
    project = new Project(
      [
        "agents:",
        "  worker:",
        "    command: sh",
        `    args: ["-c", "until [ -e go ]; do sleep 0.1; done; apex task list --session last --json > agent.part && mv agent.part agent.json; while true; do sleep 0.5; done"]`,
        "plugins:",
        "  checkpoint: {}",
        "  metrics: {}",
        "  archive: {}",
        "  retention: {}",
        "  compression: {}",
        "  history: {}",
        "",
      ].join("\n"),
      "apex-flow-ended-",
    );
    const none = project.apex(["task", "list", "--session", "last", "--json"]);
    expect(none.status).toBe(3);
    expect(JSON.parse(none.stderr).error).toMatchObject({ code: "APEX_E_NO_SESSION", message: "--session last: this project has no session yet." });
    const ready = project.start(["--task", "words"]);
    expect(project.apex(["task", "add", "a task"]).status).toBe(0);
    expect(project.apex(["checkpoint", "create", "mine"]).status).toBe(0);
    writeFileSync(join(project.dir, "go"), "");
    const read = (args: string[], word: string) => {
      const result = project!.apex([...args, "--session", word, "--json"]);
      expect(result.status, `${args.join(" ")} --session ${word}: ${result.stderr}`).toBe(0);
      return JSON.parse(result.stdout) as Record<string, unknown> & Array<Record<string, unknown>>;
    };
    // Each command once, with one word or the other.
    const reads = (words: string[]) => {
      const word = (i: number) => words[i % words.length]!;
      expect((read(["status"], word(0)).session as { session_id: string }).session_id).toBe(ready.session_id);
      expect(read(["task", "list"], word(1)).map((task) => task.title)).toEqual(["a task"]);
      expect(read(["task", "show", "t-1"], word(2)).title).toBe("a task");
      expect(read(["agent", "list"], word(3)).map((agent) => agent.name)).toEqual(["worker"]);
      expect(read(["milestone"], word(4))).toEqual([]);
      expect(read(["checkpoint", "list"], word(5)).session_id).toBe(ready.session_id);
      expect(read(["session", "metrics"], word(6)).session_id).toBe(ready.session_id);
    };
    reads(["last", "current"]);
    // Inside an agent: its own session.
    const inAgent = await waitFor("the agent's list", () => existsSync(join(project!.dir, "agent.json")) && readFileSync(join(project!.dir, "agent.json"), "utf8"));
    expect((JSON.parse(inAgent) as Array<{ title: string }>).map((task) => task.title)).toEqual(["a task"]);
    expect(project.apex(["stop"]).status).toBe(0);
    // Ended: `last` is the one that ended last; `current` is none.
    expect(read(["status"], "last").session).toMatchObject({ session_id: ready.session_id, status: "stopped" });
    expect(read(["task", "list"], "last").map((task) => task.title)).toEqual(["a task"]);
    expect(read(["session", "metrics"], "last").session_id).toBe(ready.session_id);
    // session history takes the session as its argument, and as --session too (the list of ended sessions before: the flag unread).
    expect(read(["session", "history"], "last")).toMatchObject({ session_id: ready.session_id, status: "stopped" });
    const current = project.apex(["status", "--session", "current"]);
    expect(current.status).toBe(3);
    expect(current.stderr).toContain("error[APEX_E_NO_SESSION]: --session current: no session is running in this project.");
    // A session given as the argument takes the words too (each command answered 'No session "last"', exit 3).
    const given = (args: string[]) => {
      const result = project!.apex([...args, "--json"]);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(0);
      return JSON.parse(result.stdout) as Record<string, any>;
    };
    expect(given(["session", "export", "last", "-o", join(project.dir, "last.bundle")]).session_id).toBe(ready.session_id);
    expect(given(["session", "validate", "last"]).ok).toBe(true);
    expect(given(["session", "report", "last"]).session.session_id).toBe(ready.session_id);
    expect(given(["session", "compress", "last", "--dry-run"]).session_id).toBe(ready.session_id);
    expect(given(["session", "cleanup", "last", "--dry-run"]).sessions.map((session: { session_id: string }) => session.session_id)).toEqual([ready.session_id]);
    expect(given(["session", "branch", "last/latest", "from-last"]).parent_checkpoint.session_id).toBe(ready.session_id);
    const archived = project.apex(["session", "archive", "current"]);
    expect([archived.status, archived.stderr]).toEqual([3, "error[APEX_E_NO_SESSION]: No session is current in this project.\n  hint: `last` names the one that ended last; `apex session list` shows them all.\n"]);
  });
});

describe("memory paths mean subtrees", () => {
  it("memory export PATH and memory query PATH (no wildcard) mean the path and everything below it", () => {
    project = new Project("plugins: {}\n", "apex-flow-memory-");
    for (const [path, value] of [["/projects/mem", '"root"'], ["/projects/mem/a", "1"], ["/projects/mem/b/c", "2"], ["/projects/memo", "3"], ["/other", "4"]]) {
      expect(project.apex(["memory", "set", path!, value!]).status).toBe(0);
    }
    const subtree = { "/projects/mem": "root", "/projects/mem/a": 1, "/projects/mem/b/c": 2 };
    expect(json(project.apex(["memory", "export", "/projects/mem"]))).toEqual(subtree);
    expect(json(project.apex(["memory", "export", "/projects/mem/"]))).toEqual(subtree);
    expect(json(project.apex(["memory", "query", "/projects/mem", "--json"]))).toEqual(subtree);
    expect(project.apex(["memory", "query", "/projects/mem", "--keys"]).stdout).toBe("/projects/mem\n/projects/mem/a\n/projects/mem/b/c\n");
    expect(project.apex(["memory", "query", "/projects/mem", "--keys", "--limit", "2"]).stdout).toBe("/projects/mem\n/projects/mem/a\n");
    // A subtree with no value at its root, and a path with nothing at all.
    expect(json(project.apex(["memory", "export", "/projects/mem/b"]))).toEqual({ "/projects/mem/b/c": 2 });
    expect(json(project.apex(["memory", "export", "/nothing/here"]))).toEqual({});
    // Globs keep their meaning.
    expect(json(project.apex(["memory", "export", "/projects/*"]))).toEqual({ "/projects/mem": "root", "/projects/memo": 3 });
    // Export of a subtree imports back.
    const exported = project.apex(["memory", "export", "/projects/mem"]).stdout;
    expect(project.apex(["memory", "delete", "/projects/mem", "--recursive"]).status).toBe(0);
    expect(project.apex(["memory", "export", "/projects/mem"]).stdout).toBe("{}\n");
    expect(spawnSync(process.execPath, [APEX_BIN, "memory", "import", "-"], { cwd: project.dir, env: cleanEnv(), input: exported }).status).toBe(0);
    expect(json(project.apex(["memory", "export", "/projects/mem"]))).toEqual(subtree);
  });

  it("memory watch prints the current values first, then changes; --changes-only only changes", async () => {
    project = new Project("plugins: {}\n", "apex-flow-memory-");
    expect(project.apex(["memory", "set", "/w/a", "1"]).status).toBe(0);
    expect(project.apex(["memory", "set", "/w/b/c", '"x"']).status).toBe(0);
    expect(project.apex(["memory", "set", "/elsewhere", "0"]).status).toBe(0);

    const watch = startWatch(project, ["/w/**", "--json", "--timeout", "20"]);
    const changesOnly = startWatch(project, ["/w/**", "--changes-only", "--json", "--timeout", "20"]);
    try {
      await until(() => watch.lines().length >= 2);
      // --changes-only prints nothing until a change: it watches once a write it sees shows, the
      // write left out below (a fixed 0.5 s was a window a loaded machine missed: the change came before it watched).
      for (let tries = 0; !changesOnly.lines().some((line) => line.includes('"/w/ready"')); tries++) {
        if (tries === 50) throw new Error("--changes-only never showed a write");
        expect(project.apex(["memory", "set", "/w/ready", "true"]).status).toBe(0);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      expect(project.apex(["memory", "set", "/w/a", "2"]).status).toBe(0);
      type Event = { kind: string; path: string; value: unknown; revision: number };
      // (A line still being written is left for the next look.)
      const parsed = (line: string): Event[] => {
        try {
          return [JSON.parse(line) as Event];
        } catch {
          return [];
        }
      };
      const shown = (lines: string[]) => lines.flatMap(parsed).filter((event) => event.path !== "/w/ready");
      await until(() => shown(watch.lines()).length >= 3 && shown(changesOnly.lines()).length >= 1);
      const seen = shown(watch.lines());
      expect(seen.map((event) => [event.kind, event.path, event.value])).toEqual([
        ["current", "/w/a", 1],
        ["current", "/w/b/c", "x"],
        ["put", "/w/a", 2],
      ]);
      expect(seen[0]!.revision).toBe(3);
      expect(shown(changesOnly.lines()).map((event) => [event.kind, event.path])).toEqual([["put", "/w/a"]]);
    } finally {
      watch.stop();
      changesOnly.stop();
    }
    const text = project.apex(["memory", "watch", "/w/**", "--timeout", "0.3"]);
    expect(text.stdout).toMatch(/current \/w\/a {2}2/);
    // --since replays changes instead of printing the current values.
    const replay = project.apex(["memory", "watch", "/w/**", "--since", "3", "--timeout", "0.3", "--json"]);
    expect(replay.stdout.trim().split("\n").map((line) => JSON.parse(line)).filter((event) => event.path !== "/w/ready").map((event) => event.kind)).toEqual(["put"]);
  });
});

function startWatch(p: Project, args: string[]) {
  const child = spawn(process.execPath, [APEX_BIN, "memory", "watch", ...args], { cwd: p.dir, env: cleanEnv() });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  return {
    lines: () => output.split("\n").filter(Boolean),
    stop: () => child.kill("SIGTERM"),
  };
}

async function until(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
