// A session reference (an id, a prefix, a branch's name, `current`) read the same way by every command,
// through the built CLI: the same session found, the same error when it names several or none.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { Project } from "./fixtures/agents/harness.js";

const config = [
  "agents:",
  "  worker:",
  "    command: sh",
  `    args: ["-c", "echo worker says hello; while true; do sleep 0.5; done"]`,
  "plugins:",
  "  checkpoint: {}",
  "  archive: {}",
  "  retention: {}",
  "  compression: {}",
  "  history: {}",
  "",
].join("\n");

let project: Project;
let first: string; // ended, with logs and a checkpoint
let rebuilt: string; // `<first>-r1`: its id starts with the first one's, so a prefix of both names two sessions
let branch: string; // the branch `exp`, run once (it has logs)

beforeAll(() => {
  project = new Project(config, "apex-session-refs-");
  first = project.start(["--task", "first"]).session_id;
  expect(project.apex(["stop"]).status).toBe(0);
  const reconstructed = project.apex(["session", "reconstruct", first, "--json"]);
  expect(reconstructed.status, reconstructed.stderr).toBe(0);
  rebuilt = (JSON.parse(reconstructed.stdout) as { session_id: string }).session_id;
  expect(rebuilt.startsWith(first)).toBe(true);
  const branched = project.apex(["session", "branch", `${first}/latest`, "exp", "--json"]);
  expect(branched.status, branched.stderr).toBe(0);
  branch = (JSON.parse(branched.stdout) as { session_id: string }).session_id;
  project.start(["--continue", "exp"]);
  expect(project.apex(["stop"]).status).toBe(0);
  project.start(["--continue", first]); // running: the runtime files know it, /sessions/active lists it
}, 60_000);

afterAll(() => project?.cleanup());

/** Runs each command line at once (they only read, or are refused before they write); their exit codes and stderr. */
async function answers(lines: string[][]): Promise<Array<{ args: string; status: number; stderr: string }>> {
  return Promise.all(lines.map(async (args) => ({ args: args.join(" "), ...(await project.apexAsync(args).done) }))).then((all) => all.map(({ args, status, stderr }) => ({ args, status, stderr })));
}

/** A command for each way sessions were looked up: core's, logs', session history's, the archive's, retention's, the checkpoint plugin's, --continue's. */
const commands = (ref: string): string[][] => [
  ["task", "list", "--session", ref],
  ["logs", "--session", ref],
  ["session", "history", ref],
  ["session", "export", ref, "-o", join(project.dir, "never.apexbundle")],
  ["session", "cleanup", ref, "--dry-run"],
  ["checkpoint", "list", "--session", ref],
  ["start", "--continue", ref],
];

describe("session references", () => {
  it("a prefix of two sessions is refused alike by every command (exit 2, APEX_E_AMBIGUOUS naming both), a running one's stop and logs included", async () => {
    const prefix = first.slice(0, 8);
    const expected = `error[APEX_E_AMBIGUOUS]: ${JSON.stringify(prefix)} matches 2 sessions: ${first}, ${rebuilt}.\n  hint: Give more characters of the session id (\`apex session list\`).\n`;
    // With the first one running: stop found it by the runtime files and stopped it, task add wrote to it, logs showed its
    // logs (the only one of the two with logs); the others said it their own ways, some without the candidates.
    const got = await answers([...commands(prefix), ["--session", prefix, "task", "add", "never written"], ["--session", prefix, "stop"]]);
    expect(got).toEqual(got.map(({ args }) => ({ args, status: 2, stderr: expected })));
    expect(project.status().session?.status).toBe("active");
    const json = project.apex(["checkpoint", "list", "--session", prefix, "--json"]);
    expect(JSON.parse(json.stderr).error).toMatchObject({ code: "APEX_E_AMBIGUOUS", details: { candidates: [first, rebuilt] } });
  });

  it("names no session for /sessions/active, the running sessions' list (a task was added under it)", async () => {
    const expected = 'error[APEX_E_NO_SESSION]: No session "acti" in this project.\n  hint: See `apex session list`.\n';
    const got = await answers([["task", "add", "lost task", "--session", "acti"], ["task", "list", "--session", "acti"]]);
    expect(got).toEqual(got.map(({ args }) => ({ args, status: 3, stderr: expected })));
    expect(project.apex(["memory", "query", "/sessions/active/**"]).stdout).not.toContain("tasks");
  });

  it("a branch's name and a unique prefix, in either case as a uuid is, name the same session for every command", async () => {
    // In capitals (3F2A…, the whole id too) it was "No session": uuids are read whatever their case, as checkpoint ids are.
    // The prefix in capitals runs on to the id's first letter: 8 digits (one uuid in 43) read the same in either case.
    const inCapitals = branch.slice(0, Math.max(8, branch.search(/[a-f]/) + 1)).toUpperCase();
    for (const [round, ref] of ["exp", branch.slice(0, 8), inCapitals, branch.toUpperCase()].entries()) {
      // A bundle of its own each round: named after the reference, an 8-digit prefix's second export (its "capitals")
      // found the first one's file there and was refused, APEX_E_CONFLICT (exit 4), as an existing -o FILE is.
      const bundle = join(project.dir, `branch-ref-${round}.apexbundle`);
      const lines = [["logs", "--session", ref], ["checkpoint", "list", "--session", ref, "--json"], ["session", "cleanup", ref, "--dry-run", "--json"], ["session", "export", ref, "-o", bundle, "--json"]];
      const got = await Promise.all(lines.map((args) => project.apexAsync(args).done));
      expect(got.map((result) => result.status), got.map((result) => result.stderr).join("")).toEqual([0, 0, 0, 0]);
      expect(got[0]!.stdout).toContain("worker | worker says hello");
      for (const result of got.slice(1)) expect(result.stdout).toContain(branch);
    }
  });

  it("a session never run has no logs, said as such; one unknown, or `current` with none running, is said alike by every command", async () => {
    const logs = project.apex(["logs", "--session", rebuilt]);
    expect([logs.status, logs.stderr.split("\n")[0]]).toEqual([3, `error[APEX_E_NO_SESSION]: Session ${rebuilt} has no logs in this project: its agents never ran here.`]);
    // One that names none: the same words from each (logs said it had no logs, export another hint).
    const unknown = 'error[APEX_E_NO_SESSION]: No session "nosuch" in this project.\n  hint: See `apex session list`.\n';
    const got = await answers(commands("nosuch").slice(0, 4));
    expect(got).toEqual(got.map(({ args }) => ({ args, status: 3, stderr: unknown })));
    // `current` with none running: the same words from each (export, archive, cleanup and compress said 'No session "current"').
    expect(project.apex(["stop"]).status).toBe(0);
    const none = "error[APEX_E_NO_SESSION]: No session is current in this project.\n  hint: `last` names the one that ended last; `apex session list` shows them all.\n";
    const current = await answers([["session", "history", "current"], ["session", "export", "current", "-o", join(project.dir, "c.apexbundle")], ["session", "archive", "current"], ["session", "compress", "current"]]);
    expect(current).toEqual(current.map(({ args }) => ({ args, status: 3, stderr: none })));
  });
  it("a session given where a checkpoint is asked for (its name, or its id as status prints it) is not found, with its newest checkpoint in the hint", () => {
    // A name of 1 to 3 characters an id prefix could have (`fe`) was "too short a checkpoint id prefix" (exit 2), with no word of the session.
    expect(project.apex(["session", "branch", `${first}/latest`, "fe"]).status).toBe(0);
    for (const ref of ["exp", branch.slice(0, 8), "fe"]) {
      for (const args of [["checkpoint", "show", ref], ["checkpoint", "diff", "latest", ref]]) {
        const result = project.apex(args);
        expect(result.status, args.join(" ")).toBe(3);
        expect(result.stderr).toContain("APEX_E_CHECKPOINT_NOT_FOUND");
        expect(result.stderr).toContain(`hint: "${ref}" is a session, not a checkpoint: its newest checkpoint is \`${ref}/latest\``);
      }
      expect(project.apex(["checkpoint", "show", `${ref}/latest`]).status).toBe(0);
    }
    // A reference that names no session keeps the general hint.
    expect(project.apex(["checkpoint", "show", "nosuch"]).stderr).toContain("hint: Refer to a checkpoint by id");
  });
  it("start --continue of a deleted checkpoint, or of a number not taken yet, says so as checkpoint show does, and leaves the running session running", () => {
    // It was "No session or checkpoint \"checkpoint-002\"", as for a word that names nothing at all.
    project.start(["--continue", first]); // stopped by the test of `current` above
    const created = JSON.parse(project.apex(["checkpoint", "create", "to delete", "--json"]).stdout) as { name: string; sequence: number };
    expect(project.apex(["checkpoint", "delete", created.name]).status).toBe(0);
    const deleted = `error[APEX_E_CHECKPOINT_NOT_FOUND]: ${created.name} of session ${first} was deleted (\`apex checkpoint delete\`, retention or repair); its number is not reused.\n`;
    for (const ref of [created.name, `${first}/${created.name}`, created.name.toUpperCase()]) {
      const result = project.apex(["start", "--continue", ref]);
      expect([result.status, result.stderr.split("  hint:")[0]], ref).toEqual([3, deleted]);
    }
    const later = project.apex(["start", "--continue", "checkpoint-999", "--json"]);
    expect([later.status, JSON.parse(later.stderr).error.message]).toEqual([3, `No checkpoint-999 in session ${first} (its latest number is ${created.name}).`]);
    // A word that could be a session keeps the general answer.
    expect(project.apex(["start", "--continue", "nosuch"]).stderr).toContain('No session or checkpoint "nosuch".');
    expect(project.status().session).toMatchObject({ session_id: first, status: "active" });
  });
});
