// Ctrl-C on `apex start` calls the start off at every instant, end to end with the built CLI and real
// processes: before the supervisor is launched (nothing is launched), before the supervisor claims a session
// (it claims none), and while the claimed session starts (it is stopped once started: no agent is left, the
// session is recorded stopped). Each says so (APEX_E_INTERRUPTED, exit 130; in JSON with --json). Before,
// the first exited 130 without a word, and the others left the session starting in the background.
import { chmodSync, existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FIXTURES, Project, isAlive, shellAgents, waitFor } from "./fixtures/agents/harness.js";
import { isolatedGit } from "./support/git.js";

const AGENTS = shellAgents({ alpha: "sleep 1000", beta: "sleep 1000" });
const { git } = isolatedGit("apex-call-off-git-");

// Blocks its process in apply for the milliseconds in block-cli (in `apex start`) or block-supervisor (in the supervisor), once began-… is written;
// a block file saying "release" holds it until release-… is there.
const SLOW_APPLY = `import { existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
export default {
  name: "slow-apply",
  apply() {
    const where = process.title === "apex-supervisor" ? "supervisor" : "cli";
    const file = new URL("./block-" + where, import.meta.url);
    if (!existsSync(file)) return;
    writeFileSync(new URL("./began-" + where, import.meta.url), String(process.pid));
    const block = readFileSync(file, "utf8");
    const end = Date.now() + Number(block);
    const released = new URL("./release-" + where, import.meta.url);
    while (block === "release" ? !existsSync(released) : Date.now() < end) if (block === "release") Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  },
};
`;

function slowApplyProject(): Project {
  const project = new Project(AGENTS.replace("plugins: {}\n", "plugins:\n  ./slow-apply.mjs: {}\n"), "apex-call-off-");
  writeFileSync(join(project.dir, "slow-apply.mjs"), SLOW_APPLY);
  return project;
}

/** Processes (other than `except`) whose working directory is the project's: what a start left running. */
function leftIn(dir: string): number[] {
  return readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number).filter((pid) => {
    try {
      return readlinkSync(`/proc/${pid}/cwd`) === dir;
    } catch {
      return false;
    }
  });
}

function history(project: Project): Array<{ session_id: string; status: string; outcome: string }> {
  return JSON.parse(project.apex(["session", "history", "--json"]).stdout) as Array<{ session_id: string; status: string; outcome: string }>;
}

describe("Ctrl-C on apex start", () => {
  it("before the supervisor is launched: nothing is launched, and it says no session was started (it exited 130 without a word)", async () => {
    const project = slowApplyProject();
    writeFileSync(join(project.dir, "block-cli"), "1000");
    const start = project.apexAsync(["start", "--task", "t", "--json"]);
    await waitFor("apply in apex start", () => existsSync(join(project.dir, "began-cli")));
    start.child.kill("SIGINT");
    const result = await start.done;
    expect(result.status).toBe(130);
    expect(result.stdout).toBe("");
    const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; details: Record<string, unknown> } };
    expect(error.code).toBe("APEX_E_INTERRUPTED");
    expect(error.message).toBe("Start called off (Ctrl-C): no session was started.");
    expect(error.details).toEqual({ session_id: null });
    // Not even the store was made.
    expect(existsSync(project.storeDir)).toBe(false);
  });

  it("before the supervisor claims a session: it claims none and exits, and that is said", async () => {
    const project = slowApplyProject();
    writeFileSync(join(project.dir, "block-supervisor"), "1000");
    const start = project.apexAsync(["start", "--task", "t"]);
    const pid = Number(await waitFor("apply in the supervisor", () => existsSync(join(project.dir, "began-supervisor")) && readFileSync(join(project.dir, "began-supervisor"), "utf8")));
    start.child.kill("SIGINT");
    const result = await start.done;
    expect(result.status).toBe(130);
    expect(result.stderr).toContain(`Calling the start off: its supervisor (pid ${pid}) claims no session`);
    expect(result.stderr).toContain(`error[APEX_E_INTERRUPTED]: Start called off (Ctrl-C): no session was started (its supervisor, pid ${pid}, claimed none and exited).`);
    expect(isAlive(pid)).toBe(false);
    expect(history(project)).toEqual([]);
    expect(project.status().session).toBeNull();
    expect(leftIn(project.dir)).toEqual([]);
  });

  it("while the claimed session starts (onStart runs): it is stopped once started, no agent is left, and the history says stopped", async () => {
    const project = new Project(AGENTS, "apex-call-off-");
    const hooks = join(project.dir, "hooks.jsonl");
    project.writeConfig(AGENTS.replace("plugins: {}\n", `plugins:\n  ${JSON.stringify(join(FIXTURES, "hook-recorder.mjs"))}:\n    file: ${JSON.stringify(hooks)}\n    start_delay_ms: 800\n`));
    const start = project.apexAsync(["start", "--task", "t", "--json"]);
    await waitFor("onStart", () => existsSync(hooks) && readFileSync(hooks, "utf8").includes('"onStart"'), 30_000);
    project.remember();
    start.child.kill("SIGINT");
    const result = await start.done;
    expect(result.status).toBe(130);
    expect(result.stdout).toBe("");
    const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; details: { session_id: string; status: string; supervisor_pid: number } } };
    expect(error.code).toBe("APEX_E_INTERRUPTED");
    const [ended] = history(project);
    expect(ended).toMatchObject({ status: "stopped" });
    expect(error.message).toBe(`Start called off (Ctrl-C): session ${ended!.session_id.slice(0, 8)} was stopped as it started; none of its agents runs.`);
    expect(error.details).toMatchObject({ session_id: ended!.session_id, status: "stopped" });
    expect(isAlive(error.details.supervisor_pid)).toBe(false);
    expect(project.status().session).toBeNull();
    expect(leftIn(project.dir)).toEqual([]);
  });
});

describe("apex stop while start --continue is under way, before its supervisor claims the session", () => {
  it("wins: the session stays stopped, and the start says it is not continued (it continued the session the stop had said it stopped)", async () => {
    const project = slowApplyProject();
    const ready = project.start();
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(ready.supervisor_pid));
    // The continue's supervisor is held in apply, before its claim, until the stop below has returned: the race, made certain.
    writeFileSync(join(project.dir, "block-supervisor"), "release");
    const start = project.apexAsync(["start", "--continue", "last", "--json"]);
    const began = join(project.dir, "began-supervisor");
    const pid = Number(await waitFor("apply in the new supervisor", () => existsSync(began) && readFileSync(began, "utf8")));
    const stopped = project.apex(["stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(new RegExp(`^Stopped session ${ready.session_id.slice(0, 8)} `));
    writeFileSync(join(project.dir, "release-supervisor"), "");
    const result = await start.done;
    expect(result.status, result.stdout).toBe(4);
    expect(result.stdout).toBe("");
    const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; details: Record<string, unknown> } };
    expect(error).toMatchObject({ code: "APEX_E_SESSION_STATE", details: { session_id: ready.session_id, status: "stopped" } });
    expect(error.message).toMatch(new RegExp(`^Session ${ready.session_id} was stopped \\(.*\\) while this start was continuing it, before it claimed it: it is not continued\\.$`));
    await waitFor("the continue's supervisor to exit", () => !isAlive(pid));
    expect(project.status().session).toBeNull();
    expect(history(project)).toEqual([expect.objectContaining({ session_id: ready.session_id, status: "stopped" })]);
    expect(leftIn(project.dir)).toEqual([]);
  });

  it("wins as well while `apex start` itself is still at work, before it launches the supervisor (its git checkout)", async () => {
    const project = new Project(AGENTS.replace("plugins: {}\n", "plugins: {checkpoint: {}, git: {}}\n"), "apex-call-off-");
    git(project.dir, "init", "-q", "-b", "main");
    git(project.dir, "add", "apex.config.yaml");
    git(project.dir, "commit", "-qm", "A");
    const ready = project.start();
    const saved = JSON.parse(project.apex(["checkpoint", "create", "at A", "--json"]).stdout) as { name: string };
    process.kill(ready.supervisor_pid, "SIGKILL");
    await waitFor("the supervisor to die", () => !isAlive(ready.supervisor_pid));
    // The checkout `--git-checkout` makes is held by its post-checkout hook until the stop below has returned.
    const hook = join(project.dir, ".git", "hooks", "post-checkout");
    writeFileSync(hook, `#!/bin/sh\necho $$ > "${project.dir}/began-checkout"\nwhile [ ! -e "${project.dir}/release-checkout" ]; do sleep 0.02; done\n`);
    chmodSync(hook, 0o755);
    const start = project.apexAsync(["start", "--continue", saved.name, "--git-checkout", "--json"]);
    await waitFor("the checkout", () => existsSync(join(project.dir, "began-checkout")));
    const stopped = project.apex(["stop"]);
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(stopped.stdout).toMatch(new RegExp(`^Stopped session ${ready.session_id.slice(0, 8)} `));
    writeFileSync(join(project.dir, "release-checkout"), "");
    const result = await start.done;
    expect(result.status, result.stdout).toBe(4);
    const { error } = JSON.parse(result.stderr) as { error: { code: string; message: string; details: { git_checkout: { branch: string; commit: string } } } };
    expect(error).toMatchObject({ code: "APEX_E_SESSION_STATE", details: { session_id: ready.session_id, status: "stopped" } });
    // The checkout it made is kept, and said so (it went unsaid, the working tree left on a new branch).
    const branch = git(project.dir, "branch", "--show-current");
    expect(error.details.git_checkout).toMatchObject({ branch, commit: git(project.dir, "rev-parse", "HEAD") });
    expect(error.message).toMatch(new RegExp(`it is not continued\\. The checkout of [0-9a-f]{12} on the new branch ${branch} in ${project.dir} is kept\\.$`));
    expect(project.status().session).toBeNull();
    expect(history(project)).toEqual([expect.objectContaining({ session_id: ready.session_id, status: "stopped" })]);
    expect(leftIn(project.dir)).toEqual([]);
  });
});
