// The session-management flow's paths and record shapes, through the built CLI: what
// /sessions/current, a checkpoint and the metrics hold, as `memory show` and `checkpoint show`
// print them, and how `checkpoint create` counts agents.
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";
import { json } from "./helpers/cli.js";
import { isolatedGit } from "./support/git.js";

// A project made in a test is cleaned up after it (fixtures/agents/harness.ts), its processes ended by pid or process group.
let project: Project | undefined;

const loop = (name: string) => [`  ${name}:`, "    command: sh", `    args: ["-c", "while true; do sleep 0.5; done"]`].join("\n");
const config = ["agents:", loop("coder"), loop("adversary"), "plugins:", "  checkpoint: {}", "  git: {}", "  metrics: {}", ""].join("\n");

const { git } = isolatedGit("apex-flow-shapes-git-");

function gitRepo(dir: string): void {
  git(dir, "init", "-q");
  git(dir, "add", "apex.config.yaml");
  git(dir, "commit", "-qm", "init");
}

describe("the flow's paths and shapes", () => {
  it("/sessions/current holds the active session's information and follows its status", () => {
    project = new Project(config, "apex-flow-shapes-");
    const ready = project.start(["--task", "Implement user authentication"]);
    const current = () => json<{ value: Record<string, unknown> }>(project!.apex(["memory", "show", "/sessions/current", "--json"])).value;
    const shown = current();
    expect(shown).toEqual({
      session_id: ready.session_id,
      project_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      status: "active",
      agents: ["coder", "adversary"],
      initial_task: "Implement user authentication",
    });
    expect(shown.project_id).toBe(json<{ value: { project_id: string } }>(project.apex(["memory", "show", "/projects/config", "--json"])).value.project_id);
    expect(project.apex(["pause"]).status).toBe(0);
    expect(current()).toMatchObject({ session_id: ready.session_id, status: "paused" });
    expect(project.apex(["resume"]).status).toBe(0);
    expect(current()).toMatchObject({ status: "active" });
    // Readers that need only the id still find the session.
    expect(json<{ session: { session_id: string } }>(project.apex(["status", "--json"])).session.session_id).toBe(ready.session_id);
    expect(project.apex(["task", "add", "first"]).status).toBe(0);
    expect(project.apex(["stop"]).status).toBe(0);
    expect(project.apex(["memory", "show", "/sessions/current"]).status).toBe(3);
  });

  it("checkpoint records carry checkpoint_id, agent_states, memory_keys and git_state, in checkpoint show --json and memory show (checkpoint-latest too)", () => {
    project = new Project(config, "apex-flow-shapes-");
    gitRepo(project.dir);
    const ready = project.start(["--task", "shapes"]);
    const sid = ready.session_id;
    for (const [path, value] of [["/notes/a", "1"], ["/notes/b/c", '"x"'], ["/notes/d", "true"], ["/plan", "[1]"], ["/z", "null"]]) {
      expect(project.apex(["memory", "set", path!, value!]).status).toBe(0);
    }
    expect(project.apex(["task", "add", "Design the user model", "--assign", "coder"]).status).toBe(0);
    // t-1 is t-0001, recorded so (agent_states below); a task the session does not have is refused, and nothing of the report written.
    expect(project.apex(["agent", "report", "--agent", "coder", "--status", "working", "--task", "t-1", "--context", '{"step": 2}']).status).toBe(0);
    const coder = () => project!.apex(["memory", "show", `/sessions/${sid}/agents/coder`, "--json"]).stdout;
    const reported = coder();
    const unknown = project.apex(["agent", "report", "--agent", "coder", "--status", "elsewhere", "--task", "t-0099", "--context", "{}", "--json"]);
    expect(unknown.status).toBe(3);
    expect(JSON.parse(unknown.stderr).error).toMatchObject({ code: "APEX_E_TASK_NOT_FOUND", message: `No task t-0099 in session ${sid}.` });
    expect(coder()).toBe(reported);
    // A context with a key given twice loses one of its values: refused (JSON.parse kept the last), nothing written.
    const twice = project.apex(["agent", "report", "--agent", "coder", "--context", '{"step": 3, "plan": {"a": 1, "a": 2}}', "--json"]);
    expect(twice.status).toBe(2);
    expect(JSON.parse(twice.stderr).error).toMatchObject({ code: "APEX_E_BAD_INPUT", message: '--context has the key "a" twice, at /plan/a in it; one of its values would be lost.' });
    expect(coder()).toBe(reported);

    const created = project.apex(["checkpoint", "create", "Before major refactoring"]);
    expect(created.status, created.stderr).toBe(0);
    // Two agents, one of them with a saved context: never "4 agent records".
    expect(created.stdout).toContain("2 agents (1 with its context): adversary, coder");
    expect(created.stdout).not.toContain("agent records");

    type Record = {
      checkpoint_id: string;
      session_id: string;
      created_at: string;
      description: string;
      agent_states: { [agent: string]: { status: string; current_task: string | null; context?: unknown; pid?: number } };
      memory_keys: string[];
      memory_keys_count: number;
      memory_keys_next_offset: number | null;
      git_state: { branch: string; commit: string; dirty: boolean };
      manifest: { id: string; name: string };
    };
    const shown = json<Record>(project.apex(["checkpoint", "show", "latest", "--json"]));
    expect(shown).toMatchObject({
      checkpoint_id: shown.manifest.id,
      session_id: sid,
      created_at: expect.stringMatching(/^\d{4}-/),
      description: "Before major refactoring",
      agent_states: {
        coder: { status: "running", current_task: "t-0001", context: { step: 2 }, pid: expect.any(Number) },
        adversary: { status: "running", current_task: null },
      },
      memory_keys: expect.arrayContaining(["/notes/a", "/notes/b/c", "/notes/d", "/plan", "/z"]),
      memory_keys_next_offset: null,
      git_state: { branch: expect.any(String), commit: expect.stringMatching(/^[0-9a-f]{40}$/), dirty: false },
    });
    expect(Object.keys(shown.agent_states).sort()).toEqual(["adversary", "coder"]);
    expect(shown.memory_keys_count).toBe(shown.memory_keys.length);

    // The same record at the manifest's path, and at checkpoint-latest.
    const latest = json<{ path: string; value: Record }>(project.apex(["memory", "show", `/sessions/${sid}/checkpoint-latest`, "--json"]));
    expect(latest.value).toEqual(shown);
    const byName = json<{ value: Record }>(project.apex(["memory", "show", `/sessions/${sid}/${shown.manifest.name}`, "--json"]));
    expect(byName.value.checkpoint_id).toBe(shown.checkpoint_id);
    expect(project.apex(["memory", "show", `/sessions/${sid}/checkpoint-latest`]).stdout).toContain(`"checkpoint_id": "${shown.checkpoint_id}"`);
    // `current` names the running session there too, as `checkpoint show current/latest` takes it (it was "Nothing is stored").
    expect(json<{ value: Record }>(project.apex(["memory", "show", "/sessions/current/checkpoint-latest", "--json"])).value).toEqual(shown);
    // The glob over manifests keeps listing the stored manifests (and no checkpoint-latest).
    const keys = project.apex(["memory", "query", `/sessions/${sid}/checkpoint-*`, "--keys"]).stdout.trim().split("\n");
    expect(keys).toContain(`/sessions/${sid}/${shown.manifest.name}`);
    expect(keys.every((key) => /\/checkpoint-\d{3,}$/.test(key))).toBe(true);

    // memory_keys is paged, with the count beside it.
    const first = json<Record>(project.apex(["checkpoint", "show", "latest", "--keys-limit", "2", "--json"]));
    expect(first.memory_keys).toEqual(shown.memory_keys.slice(0, 2));
    expect(first).toMatchObject({ memory_keys_count: shown.memory_keys_count, memory_keys_next_offset: 2 });
    const rest = json<Record>(project.apex(["checkpoint", "show", "latest", "--keys-offset", "2", "--keys-limit", "100", "--json"]));
    expect([...first.memory_keys, ...rest.memory_keys]).toEqual(shown.memory_keys);
    expect(rest.memory_keys_next_offset).toBeNull();
    expect(project.apex(["checkpoint", "show", "latest", "--keys-limit", "2"]).stdout).toContain(`more (--keys-offset 2)`);
    // Past the last page, it says so (it printed no memory keys line at all).
    expect(project.apex(["checkpoint", "show", "latest", "--keys-offset", "100000"]).stdout).toContain(`  memory keys (${shown.memory_keys_count}): none past offset 100000\n`);
  });

  it("metrics carry the flow's names and forms next to the numbers", async () => {
    project = new Project(config, "apex-flow-shapes-");
    gitRepo(project.dir);
    const ready = project.start(["--task", "metrics"]);
    expect(project.apex(["agent", "report", "--agent", "coder", "--status", "working"]).status).toBe(0);
    expect(project.apex(["task", "add", "one"]).status).toBe(0);
    type Metrics = {
      session_duration: string;
      session_duration_seconds: number;
      tasks_completed: number;
      commits_made: number;
      issues_found: number;
      lines_of_code: number;
      lines_added: number;
      lines_removed: number;
      agent_utilization: { [agent: string]: string };
      agent_utilization_detail: { [agent: string]: { share: number } };
      tasks_total: number;
    };
    const metrics = await waitFor("a metrics sample with the task", () => {
      const result = project!.apex(["memory", "show", `/sessions/${ready.session_id}/metrics`, "--json"]);
      const value = result.status === 0 ? (JSON.parse(result.stdout) as { value: Metrics }).value : undefined;
      return value && value.tasks_total === 1 ? value : undefined;
    });
    expect(metrics).toMatchObject({
      session_duration: expect.stringMatching(/^(\d+(\.\d)?s|\d+m \d\ds|\d+h \d\dm)$/),
      session_duration_seconds: expect.any(Number),
      tasks_completed: 0,
      commits_made: 0,
      issues_found: 0,
      lines_of_code: 0,
      lines_added: 0,
      lines_removed: 0,
    });
    expect(Object.keys(metrics.agent_utilization).sort()).toEqual(["adversary", "coder"]);
    for (const [agent, share] of Object.entries(metrics.agent_utilization)) {
      expect(share).toMatch(/^\d{1,3}%$/);
      expect(share).toBe(`${Math.round(metrics.agent_utilization_detail[agent]!.share * 100)}%`);
    }
  });
});
