// `--session` inside an agent: an agent's commands act on its own session (core/session/binding.ts:
// the agent's session comes before --session), and a --session naming another session is refused by
// every command alike (APEX_E_USAGE, exit 2, nothing run). Before, `apex status --session OTHER`
// showed the agent's own session as if it were OTHER while `apex checkpoint list --session OTHER`
// showed OTHER. Through the built CLI, with a real supervisor, a real agent and LMDB.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Project, waitFor } from "./fixtures/agents/harness.js";

// Each line: what the agent runs (sh words; $O is the other session's id, $ME its own).
const commands = [
  "status --session $O --json",
  "checkpoint list --session $O",
  "task list --session $O",
  "agent list --session $O",
  "memory show /sessions/current --session $O",
  "logs -n 1 --session $O",
  "task add sneaked --session $O",
  "--session $(echo $O | cut -c1-8) status",
  "status --session $ME --json",
  "checkpoint list --session last --json",
  "checkpoint list --session $(echo $ME | cut -c1-8) --json",
  "session history $O --json",
];
const OTHER = 8; // commands[0..OTHER) name the other session with --session

const script = [
  "until [ -s go ]; do sleep 0.1; done",
  "O=$(cat go); ME=$APEX_SESSION_ID",
  ...commands.map((words, n) => `apex ${words} > out/${n}.out 2> out/${n}.err; echo $? > out/${n}.rc`),
  "touch out/done",
  "while true; do sleep 0.5; done",
].join("; ");

describe("--session inside an agent", () => {
  it("names the agent's own session (its id, a prefix, last) or is refused, exit 2, by every command alike; a session argument is read as named", async () => {
    const project = new Project(["agents:", "  probe:", "    command: sh", `    args: ["-c", ${JSON.stringify(script)}]`, "plugins:", "  checkpoint: {}", "  history: {}", ""].join("\n"), "apex-agent-session-");
    mkdirSync(join(project.dir, "out"));
    const other = project.start(["--task", "the other"]).session_id;
    expect(project.apex(["stop"]).status).toBe(0);
    const own = project.start(["--task", "the agent's"]).session_id;
    writeFileSync(join(project.dir, "go"), other);
    await waitFor("the agent's commands", () => existsSync(join(project.dir, "out/done")), 60_000);
    const ran = (n: number) => ({
      rc: Number(readFileSync(join(project.dir, `out/${n}.rc`), "utf8")),
      out: readFileSync(join(project.dir, `out/${n}.out`), "utf8"),
      err: readFileSync(join(project.dir, `out/${n}.err`), "utf8"),
    });

    const refusal = `--session ${other} does not work inside an agent: its commands act on the agent's own session, ${own.slice(0, 8)} (APEX_SESSION_ID), and --session names another, ${other.slice(0, 8)}.`;
    for (let n = 0; n < OTHER; n++) {
      const { rc, out, err } = ran(n);
      expect([rc, out], commands[n]).toEqual([2, ""]);
      if (commands[n]!.includes("--json")) {
        expect(JSON.parse(err).error, commands[n]).toMatchObject({ code: "APEX_E_USAGE", exitCode: 2, details: { session_id: own, named: other } });
      } else if (commands[n]!.includes("cut -c1-8")) {
        expect(err, commands[n]).toContain(`error[APEX_E_USAGE]: --session ${other.slice(0, 8)} does not work inside an agent`);
      } else {
        expect(err, commands[n]).toContain(`error[APEX_E_USAGE]: ${refusal}`);
      }
    }
    // The agent's own session, however named: answered for it.
    expect((JSON.parse(ran(OTHER).out) as { session: { session_id: string } }).session.session_id).toBe(own);
    for (const n of [OTHER + 1, OTHER + 2]) expect([ran(n).rc, (JSON.parse(ran(n).out) as { session_id: string }).session_id, ran(n).err], commands[n]).toEqual([0, own, ""]);
    // A session named as the command's argument is that session.
    expect([ran(OTHER + 3).rc, (JSON.parse(ran(OTHER + 3).out) as { session_id: string }).session_id]).toEqual([0, other]);
    // The refused write wrote nothing, in either session.
    for (const session of [other, own]) expect(JSON.parse(project.apex(["task", "list", "--session", session, "--json"]).stdout)).toEqual([]);
    // Outside an agent, --session names any session, as before.
    expect(JSON.parse(project.apex(["status", "--session", other, "--json"]).stdout).session.session_id).toBe(other);
    expect(project.apex(["stop"]).status).toBe(0);
  }, 90_000);
});
