// A supervisor exiting (its session stopped) answers the requests it is serving, end to end with the
// built CLI and real processes: a milestone held in its afterMilestone hook while `apex stop` runs is
// answered once the hook lets go; a request that comes meanwhile is refused, nothing of it done
// (APEX_E_SESSION_STOPPING, exit 4); one still running after the grace (APEX_SHUTDOWN_GRACE_MS) is
// answered that its outcome is not known. Before, the exit closed every connection unanswered: the
// milestone, recorded, was reported "closed the connection before answering", and the late request
// could not reach the socket at all.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAlive, waitFor, type Project } from "./fixtures/agents/harness.js";
import { slowHooksProject } from "./support/slow-hooks.js";

type ErrorJson = { error: { code: string; message: string; hint?: string; details: Record<string, unknown> } };

const milestones = (project: Project) => JSON.parse(project.apex(["milestone", "--session", "last", "--json"]).stdout) as Array<{ text: string }>;

/** A session whose milestone is held in afterMilestone until the project's `release` exists, and an `apex stop` sent meanwhile, once its supervisor is exiting. */
async function stopWhileHeld(env: NodeJS.ProcessEnv = {}) {
  const project = slowHooksProject({ coder: "sleep 1000" });
  const ready = project.start([], env);
  writeFileSync(join(project.dir, "afterMilestone"), "wait release");
  const milestone = project.apexAsync(["milestone", "Shipped", "--json"]);
  await waitFor("the afterMilestone hook to begin", () => existsSync(join(project.dir, "afterMilestone.began")));
  const stop = project.apexAsync(["stop", "--json"]);
  // Its runtime file goes as it begins to exit, the session recorded stopped: from then on it takes no new request.
  await waitFor("the supervisor to be exiting", () => !existsSync(join(project.storeDir, "run", `${ready.session_id}.json`)));
  return { project, ready, milestone, stop };
}

describe("a supervisor that exits as its session stops", () => {
  it("answers a request under way once it is done, and refuses one that comes meanwhile, nothing of it done", async () => {
    const { project, ready, milestone, stop } = await stopWhileHeld();
    // A caller that found the supervisor just before (an agent's command, through its socket).
    const late = project.apex(["memory", "set", "/late", "1", "--json"], { env: { APEX_SOCKET: ready.socket } });
    expect(late.status, late.stderr).toBe(4);
    const refused = JSON.parse(late.stderr) as ErrorJson;
    expect(refused.error.code).toBe("APEX_E_SESSION_STOPPING");
    expect(refused.error.message).toBe("The session is stopping: its supervisor takes no new request, and did nothing of memory.set.");
    expect(refused.error.details).toEqual({ status: "stopping", method: "memory.set", grace_left_ms: expect.any(Number) });
    // What is left of the drain (5 s), for a caller to know how long to wait.
    expect(refused.error.details.grace_left_ms).toBeLessThanOrEqual(5000);
    expect(isAlive(ready.supervisor_pid)).toBe(true);

    writeFileSync(join(project.dir, "release"), "");
    const answered = await milestone.done;
    expect(answered.status, answered.stderr).toBe(0);
    expect(JSON.parse(answered.stdout)).toMatchObject({ n: 1, text: "Shipped" });
    expect(answered.stderr).toBe("");
    const stopped = await stop.done;
    expect(stopped.status, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ session_id: ready.session_id, status: "stopped" });
    await waitFor("the supervisor to exit", () => !isAlive(ready.supervisor_pid));
    expect(milestones(project).map(({ text }) => text)).toEqual(["Shipped"]);
    // Nothing of the refused request was done.
    expect(project.apex(["memory", "show", "/late"]).status).toBe(3);
  }, 60_000);

  it("answers a request still running after its grace that whether it was done is not known, and exits", async () => {
    const { project, ready, milestone, stop } = await stopWhileHeld({ APEX_SHUTDOWN_GRACE_MS: "1000" });
    const answered = await milestone.done;
    expect(answered.status).toBe(1);
    expect(answered.stdout).toBe("");
    const { error } = JSON.parse(answered.stderr) as ErrorJson;
    expect(error.code).toBe("APEX_E_RPC");
    expect(error.message).toBe("The supervisor is exiting, its session ended, and milestone.add, under way, did not finish within the 1 s it is given: whether it was done is not known.");
    expect(error.details).toEqual({ connection: "closed", outcome: "unknown", method: "milestone.add" });
    const stopped = await stop.done;
    expect(stopped.status, stopped.stderr).toBe(0);
    await waitFor("the supervisor to exit", () => !isAlive(ready.supervisor_pid));
    rmSync(join(project.dir, "afterMilestone"));
  }, 60_000);
});
