// A CLI write that meets a supervisor as it stops, end to end with the built CLI and real processes.
// `apex stop` ends with a drain (APEX_SHUTDOWN_GRACE_MS): the supervisor finishes the requests under
// way and refuses every new one (APEX_E_SESSION_STOPPING, nothing done). Its runtime file goes as the
// drain begins, so a command that starts then goes to the store; one that read the file just before
// reached the draining supervisor and was refused, exit 4, though a moment later the store was free.
// That command is played here by writing the runtime files back once the drain has begun (they name
// the same, still live, supervisor: what a command that read them just before holds), while a
// milestone held in its afterMilestone hook makes the drain last. The write now waits for the
// supervisor to exit and is made once more where a command goes then: the store, or the supervisor
// of a `start --continue` made meanwhile.
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { type Project, waitFor } from "./fixtures/agents/harness.js";
import { slowHooksProject } from "./support/slow-hooks.js";

/** Holds a command before its first call to a supervisor (HOLD_MODULE), until told to go on. */
const HOLD = fileURLToPath(new URL("./helpers/hold-cli-load.mjs", import.meta.url));

/**
 * `project` started, `before` run, then its supervisor draining (a milestone held in its hook, an
 * `apex stop` under way) with its runtime files written back as a command read them before.
 */
async function drainingWithRuntime(project: Project, before?: (project: Project) => void) {
  // A drain that lasts until the held milestone is let go, however slow the machine (5 s by default).
  const ready = project.start([], { APEX_SHUTDOWN_GRACE_MS: "60000" });
  before?.(project);
  // The runtime files as a command reads them while the session runs.
  const runDir = join(project.storeDir, "run");
  const files = [join(project.storeDir, "supervisor.json"), ...readdirSync(runDir).filter((name) => name.endsWith(".json")).map((name) => join(runDir, name))];
  const runtime = new Map(files.map((file) => [file, readFileSync(file, "utf8")]));
  writeFileSync(join(project.dir, "afterMilestone"), "wait release");
  const milestone = project.apexAsync(["milestone", "Shipped", "--json"]);
  await waitFor("the afterMilestone hook to begin", () => existsSync(join(project.dir, "afterMilestone.began")));
  const stop = project.apexAsync(["stop", "--json"]);
  await waitFor("the supervisor to be draining", () => !existsSync(join(runDir, `${ready.session_id}.json`)));
  for (const [file, text] of runtime) writeFileSync(file, text);
  return { project, ready, runtime, milestone, stop };
}

describe("a CLI write refused by a supervisor that is stopping", () => {
  it("waits for it to exit, then is made on the store (or through the supervisor started meanwhile); a read during the drain reads the store", async () => {
    const { project, ready, runtime, milestone, stop } = await drainingWithRuntime(slowHooksProject({ coder: "sleep 1000" }));

    const set = project.apexAsync(["memory", "set", "/x", "1"]);
    const add = project.apexAsync(["task", "add", "after the stop"]);
    // Up to what is left of the drain and 10 s more.
    const waiting = (run: { errors(): string }) => new RegExp(`is stopping and its supervisor \\(pid ${ready.supervisor_pid}\\) takes no new request: waiting up to \\d+ s for it to exit`).test(run.errors());
    await waitFor("the memory write to wait for the supervisor", () => waiting(set));
    await waitFor("the task command to wait for the supervisor", () => waiting(add));
    // One that found its socket gone (the supervisor closed it, not yet exited): nothing was sent, and it waits too. As it
    // was: it read the runtime files (here naming a socket that is gone) before the drain began, and calls once they are
    // gone too (held before its call, while they are removed): a supervisor its runtime file still names is not stopping.
    for (const [file, text] of runtime) writeFileSync(file, JSON.stringify({ ...JSON.parse(text), socket: join(project.dir, "gone.sock") }));
    const mark = join(project.dir, "unsent.hold");
    const unsent = project.apexAsync(["memory", "set", "/y", "2"], { env: { NODE_OPTIONS: `--import ${pathToFileURL(HOLD).href}`, HOLD_MARK: mark, HOLD_MODULE: "/dist/core/rpc/call.js", APEX_BUNDLE: "0" } });
    await waitFor("the write to have found the supervisor, before its call", () => existsSync(mark));
    for (const file of runtime.keys()) rmSync(file);
    writeFileSync(`${mark}.release`, "");
    await waitFor("the write that found no socket to wait for the supervisor", () => waiting(unsent));
    for (const [file, text] of runtime) writeFileSync(file, text);
    // Ctrl-C while one waits: nothing was done, and that is what it says (a command that waits on hooks said the supervisor got the request).
    const late = project.apexAsync(["milestone", "Late"]);
    await waitFor("the milestone to wait for the supervisor", () => waiting(late));
    late.child.kill("SIGINT");
    const interrupted = await late.done;
    expect(interrupted.status).toBe(130);
    expect(interrupted.stderr).toContain(`error[APEX_E_INTERRUPTED]: Interrupted while waiting for session ${ready.session_id.slice(0, 8)}'s supervisor (pid ${ready.supervisor_pid}) to exit: nothing was done, as it refused the request while stopping.`);
    // A read meanwhile: refused by the draining supervisor, it reads the store.
    const status = project.apex(["status", "--json"]);
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ session: null, last_session: { session_id: ready.session_id, status: "stopped" } });
    // The task command is held until another supervisor runs, as if `start --continue` came before it went on.
    add.child.kill("SIGSTOP");
    expect(project.alive(ready.supervisor_pid)).toBe(true);

    writeFileSync(join(project.dir, "release"), "");
    expect((await milestone.done).status).toBe(0);
    expect((await stop.done).status).toBe(0);
    const written = await set.done;
    expect(written.status, written.stderr).toBe(0);
    expect(project.alive(ready.supervisor_pid)).toBe(false);
    expect(written.stdout).toMatch(/^set \/x \(revision \d+\)\n$/);
    expect(written.stderr).toMatch(/^note: session \S+ is stopping and its supervisor \(pid \d+\) takes no new request: waiting up to \d+ s for it to exit, then the command acts on the store\.\nnote: session \S+ was stopping; written to the store once it had stopped\.\n$/);
    expect(project.apex(["memory", "show", "/x"]).stdout).toBe("1\n");
    const second = await unsent.done;
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).toContain("was stopping; written to the store once it had stopped.");
    expect(project.apex(["memory", "show", "/y"]).stdout).toBe("2\n");

    const continued = project.start(["--continue", "last"]);
    add.child.kill("SIGCONT");
    const added = await add.done;
    expect(added.status, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^added t-\d+ pending: after the stop\n$/);
    expect(added.stderr).toContain(`was stopping; sent to the supervisor that runs now (pid ${continued.supervisor_pid}) once it had stopped.`);
    const tasks = JSON.parse(project.apex(["task", "list", "--json"]).stdout) as Array<{ title: string }>;
    expect(tasks.map((task) => task.title)).toContain("after the stop");
    expect(project.apex(["stop"]).status).toBe(0);
  }, 60_000);
});

describe("a checkpoint command refused by a supervisor that is stopping", () => {
  it("waits for it to exit, then is made on the store: a pin is made there; a create finds the session stopped, and says so; a plugin's command runs here", async () => {
    const { project, ready, milestone, stop } = await drainingWithRuntime(slowHooksProject({ coder: "sleep 1000" }, ["checkpoint", "retention"]), (started) => {
      expect(started.apex(["checkpoint", "create", "-m", "before"]).status).toBe(0);
    });

    // (it was refused, exit 4: "the session is stopping")
    const pin = project.apexAsync(["checkpoint", "pin", "checkpoint-002", "--session", ready.session_id]);
    const create = project.apexAsync(["checkpoint", "create", "-m", "during the stop"]);
    const branch = project.apexAsync(["session", "branch", `${ready.session_id}/checkpoint-002`, "exp"]);
    const waiting = (run: { errors(): string }) => run.errors().includes(`(pid ${ready.supervisor_pid}) takes no new request: waiting up to`);
    await waitFor("the pin to wait for the supervisor", () => waiting(pin));
    await waitFor("the checkpoint create to wait for the supervisor", () => waiting(create));
    await waitFor("the branch to wait for the supervisor", () => waiting(branch));
    // A plugin's command, forwarded to the supervisor (it was refused, exit 4, as the others).
    const cleanup = project.apexAsync(["session", "cleanup", "--dry-run", "--json"]);
    const text = project.apexAsync(["session", "cleanup", "--dry-run"]);
    await waitFor("the cleanup to wait for the supervisor", () => waiting(text));
    writeFileSync(join(project.dir, "release"), "");
    expect((await milestone.done).status).toBe(0);
    expect((await stop.done).status).toBe(0);

    const pinned = await pin.done;
    expect(pinned.status, pinned.stderr).toBe(0);
    expect(pinned.stderr).toMatch(/note: session \S+ was stopping; the command was made once it had stopped\.\n$/);
    const items = (JSON.parse(project.apex(["checkpoint", "list", "--session", ready.session_id, "--json"]).stdout) as { items: Array<{ name: string; pinned: boolean }> }).items;
    expect(items.find((item) => item.name === "checkpoint-002")?.pinned).toBe(true);
    // A branch (session branch and merge go by their own path): made on the store, once.
    const branched = await branch.done;
    expect(branched.status, branched.stderr).toBe(0);
    expect(branched.stderr).toMatch(/note: session \S+ was stopping; the command was made once it had stopped\.\n$/);
    expect((JSON.parse(project.apex(["session", "list", "--json"]).stdout) as Array<{ name?: string }>).filter((session) => session.name === "exp")).toHaveLength(1);
    // The cleanup ran here, on the store, once the supervisor had gone: its whole answer (in JSON, with no note).
    const cleaned = await cleanup.done;
    expect(cleaned.status, cleaned.stderr).toBe(0);
    expect(cleaned.stderr).toBe("");
    const report = JSON.parse(cleaned.stdout) as { dry_run: boolean; sessions: Array<{ session_id: string; checkpoints: unknown[] }> };
    expect(report.dry_run).toBe(true);
    expect(report.sessions.find((session) => session.session_id === ready.session_id)?.checkpoints.length).toBeGreaterThan(0);
    const said = await text.done;
    expect(said.status, said.stderr).toBe(0);
    expect(said.stderr).toMatch(/note: session \S+ was stopping; the command was run once it had stopped\.\n$/);
    // The session has stopped (its last checkpoint taken as it did): no checkpoint of it is made now, as after any stop.
    const created = await create.done;
    expect(created.status).toBe(3);
    expect(created.stderr).toContain("was stopping; once it had stopped, the command was made again:\nerror[APEX_E_NO_SESSION]: There is no current session.");
  }, 60_000);
});
